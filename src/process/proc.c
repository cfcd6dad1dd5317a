/* Helpers every Wharf process uses: the title and the signals. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "process/process.h"

void
wf_proc_title_set(char **argv, const char *fmt, ...)
{
    char title[256];
    size_t room;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(title, sizeof(title), fmt, ap);
    va_end(ap);
    prctl(PR_SET_NAME, title, 0, 0, 0);
    if (argv == NULL || argv[0] == NULL) {
        return;
    }
    /* The title replaces the arguments, which lie end to end. */
    room = 0;
    for (char **a = argv; *a != NULL; a++) {
        if (a != argv && *a != argv[0] + room) {
            break;
        }
        room += strlen(*a) + 1;
    }
    memset(argv[0], 0, room);
    snprintf(argv[0], room, "%s", title);
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
wf_proc_wait_stop(void (*reopen)(void))
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
        case SIGUSR1:
            wf_log_reopen();
            if (reopen != NULL) {
                reopen();
            }
            break;
        default:
            /* SIGHUP is reserved; SIGCHLD is main's; EINTR retries. */
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
