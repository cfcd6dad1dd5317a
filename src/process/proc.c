/* Helpers every Wharf process uses: the title and the signals. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

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
        case SIGUSR1:
            wf_log_reopen();
            break;
        default:
            /* SIGHUP is reserved; SIGCHLD is main's; EINTR retries. */
            break;
        }
    }
}
