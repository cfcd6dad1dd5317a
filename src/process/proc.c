/* Helpers every Wharf process uses: the title and the signals. */
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "process/cred.h"
#include "process/process.h"

/* The memory a title may fill: argv's strings, then the environment's
 * strings when they follow contiguously (Unit's and nginx's way to fit a long
 * title); see wf_proc_title_init(). */
static char *proc_title_start;
static size_t proc_title_room;
static bool proc_as_unit;

/* Returns the bytes of the strings that lie end to end from `from`. */
static size_t
proc_contiguous(char **strs, const char *from)
{
    size_t room = 0;

    for (char **a = strs; *a != NULL; a++) {
        if (*a != from + room) {
            break;
        }
        room += strlen(*a) + 1;
    }
    return room;
}

/* Moves the environment's strings to the heap so that their memory may
 * hold the title.  Returns the bytes freed for it, 0 on failure. */
static size_t
proc_environ_move(void)
{
    size_t room = proc_contiguous(environ, environ[0]);

    for (char **e = environ; *e != NULL; e++) {
        char *copy = strdup(*e);

        if (copy == NULL) {
            return 0; /* the copies made so far stay valid */
        }
        *e = copy;
    }
    return room;
}

void
wf_proc_title_init(char **argv)
{
    const char *base;
    size_t room;

    if (argv == NULL || argv[0] == NULL) {
        return;
    }
    base = strrchr(argv[0], '/');
    base = base != NULL ? base + 1 : argv[0];
    proc_as_unit = strcmp(base, "unitd") == 0;
    room = proc_contiguous(argv, argv[0]);
    if (environ != NULL && environ[0] != NULL && environ[0] == argv[0] + room) {
        room += proc_environ_move();
    }
    proc_title_start = argv[0];
    proc_title_room = room;
}

bool
wf_proc_is_unit(void)
{
    return proc_as_unit;
}

void
wf_proc_title_set(char **argv, const char *fmt, ...)
{
    char title[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(title, sizeof(title), fmt, ap);
    va_end(ap);
    if (!proc_as_unit) {
        /* Unit leaves comm alone: pgrep unitd finds every process. */
        prctl(PR_SET_NAME, title, 0, 0, 0);
    }
    if (argv == NULL || argv[0] == NULL) {
        return;
    }
    if (proc_title_start != argv[0]) {
        wf_proc_title_init(argv); /* main did not call it (unit tests) */
    }
    memset(proc_title_start, 0, proc_title_room);
    snprintf(proc_title_start, proc_title_room, "%s", title);
    argv[1] = NULL;
}

static void
proc_sigset(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGQUIT);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGCHLD);
}

void
wf_proc_signals_block(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    proc_sigset(&set);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

bool
wf_proc_wait_stop(void)
{
    sigset_t set;

    proc_sigset(&set);
    for (;;) {
        int sig = sigwaitinfo(&set, NULL);

        switch (sig) {
        case SIGTERM:
        case SIGINT:
            return false;
        case SIGQUIT:
            return true;
        default:
            /* USR1 is main's (it reopens the logs); SIGHUP is reserved;
             * SIGCHLD is main's; EINTR retries. */
            break;
        }
    }
}

wf_port_t *
wf_proc_port_open(int fd, wf_port_role_t self, wf_port_role_t peer,
                  const wf_port_type_t *types, size_t ntypes,
                  wf_port_owner_t *owner)
{
    wf_port_t *p = wf_port_create(fd, self, peer, types, ntypes, owner);

    if (p == NULL) {
        close(fd);
        return NULL;
    }
    if (wf_port_start(p, wf_loop_get(0)) != WF_OK) {
        wf_port_destroy(p);
        return NULL;
    }
    return p;
}

void
wf_proc_port_lost(wf_port_t **slot, wf_port_t *p, bool fatal)
{
    if (fatal) {
        wf_log_alert(0, "main process is gone, exiting");
    } else {
        wf_log_info("%s port closed", wf_port_role_name(wf_port_peer(p)));
    }
    if (*slot == p) {
        *slot = NULL;
    }
    wf_port_destroy(p);
    if (fatal) {
        kill(getpid(), SIGTERM);
    }
}

bool
wf_proc_port_replace(wf_port_t **slot, wf_port_msg_t *msg, wf_port_role_t self,
                     wf_port_role_t peer, const wf_port_type_t *types,
                     size_t ntypes, wf_port_owner_t *owner)
{
    int fd = wf_port_msg_take_fd(msg, 0);

    if (fd < 0) {
        return false;
    }
    wf_port_destroy(*slot);
    *slot = wf_proc_port_open(fd, self, peer, types, ntypes, owner);
    return *slot != NULL;
}

int
wf_proc_drop_privileges(const wf_opts_t *opts)
{
    pid_t parent = getppid();

    if (opts->cred == NULL) {
        return WF_OK;
    }
    return wf_cred_apply(opts->cred, parent);
}
