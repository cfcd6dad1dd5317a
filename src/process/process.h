/* Wharf's processes: the command line every role shares and the entry
 * points of the roles main forks (DESIGN.md section 2). */
#ifndef WF_PROCESS_PROCESS_H
#define WF_PROCESS_PROCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "process/port.h"

struct wf_cred;

#define WF_VERSION "0.1.0"
#define WF_VERNUM  100 /* major * 10000 + minor * 100 + patch */

/* The Unit release whose behaviour Wharf reproduces; a Wharf invoked as
 * unitd shows it in its main title, as Unit does (docs/compatibility.md). */
#define WF_UNIT_VERSION "1.35.0"

/* Unit's command line, plus Wharf's own flags. */
typedef struct wf_opts {
    bool daemon;
    const char *control; /* "unix:PATH" or "IP:PORT" */
    const char *control_mode;
    const char *control_user;
    const char *control_group;
    const char *statedir;
    const char *log;
    const char *pid;
    const char *user;
    const char *group;
    const char *tmpdir;
    const char *modulesdir;
    const char *config; /* Wharf: a config to apply at start */
    unsigned threads;   /* Wharf: router I/O threads; 0: CPUs */
    unsigned maxconn;   /* Wharf */
    unsigned maxaccept; /* Wharf */
    char **argv;        /* for the process title */
    /* Set by main when it runs as root: the controller and the router
     * switch to it once main gave them what needs root (Unit's
     * nxt_process_core_setup()).  NULL: they stay as they are. */
    const struct wf_cred *cred;
} wf_opts_t;

/* Runs the controller: the control API on control_fd, the listening
 * control socket main opened (opts->control; borrowed: main keeps it across
 * controller restarts), and the config store in opts->statedir, which main
 * writes for it (WF_MSG_CONF_STORE).  main_fd and router_fd are its ports
 * (taken).  Returns the process exit status. */
int wf_controller_main(const wf_opts_t *opts, int main_fd, int router_fd,
                       int control_fd);

/* Switches a child of main to opts->cred (nothing when NULL), as Unit's
 * controller and router do after their prefork.  Before any thread
 * starts.  Returns WF_OK or WF_ERROR (logged). */
int wf_proc_drop_privileges(const wf_opts_t *opts);

/* Runs the router: I/O threads, listeners, requests.  main_fd and ctrl_fd
 * are its ports (taken).  Returns the process exit status. */
int wf_router_main(const wf_opts_t *opts, int main_fd, int ctrl_fd);

/* Creates a port on fd (taken; closed on failure) talking as self to
 * peer, started on loop 0.  Returns NULL on failure (logged). */
wf_port_t *wf_proc_port_open(int fd, wf_port_role_t self, wf_port_role_t peer,
                             const wf_port_type_t *types, size_t ntypes,
                             wf_port_owner_t *owner);

/* A port's peer went away: forgets it in *slot and destroys it.  fatal:
 * the peer is main, without which this process cannot go on; it stops. */
void wf_proc_port_lost(wf_port_t **slot, wf_port_t *p, bool fatal);

/* WF_MSG_PEER_PORT: replaces *slot by a port on the fd msg carries.
 * Returns true when the new port is up. */
bool wf_proc_port_replace(wf_port_t **slot, wf_port_msg_t *msg,
                          wf_port_role_t self, wf_port_role_t peer,
                          const wf_port_type_t *types, size_t ntypes,
                          wf_port_owner_t *owner);

/* Reads the program name (a basename of "unitd" makes this a Unit-named
 * process, see wf_proc_is_unit()) and makes room for long titles: the
 * environment strings that follow argv's move to the heap.  Call once in
 * main, before any thread starts and before argv's strings are overwritten
 * (after the options pointing into argv are copied). */
void wf_proc_title_init(char **argv);

/* True when invoked as unitd: titles read "unit: ...", as Unit's. */
bool wf_proc_is_unit(void);

/* The title prefix: "unit" when invoked as unitd, "wharf" otherwise. */
#define wf_proc_name() (wf_proc_is_unit() ? "unit" : "wharf")

/* Sets the process title shown by ps ("wharf: router"); argv is the
 * process's original argv, whose memory holds the title (with the room that
 * wf_proc_title_init() found).  Under the name wharf, also sets comm; as
 * unitd, comm stays "unitd" as Unit's does. */
void wf_proc_title_set(char **argv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Blocks the signals the roles wait for with wf_proc_wait_stop(), and
 * ignores SIGPIPE.  Call before any thread starts. */
void wf_proc_signals_block(void);

/* Waits for TERM, INT or QUIT; returns true for QUIT (graceful).  USR1
 * sent to a child is ignored, as in Unit: main reopens the log files (as
 * root) and hands the new descriptors over (WF_MSG_LOG_REOPEN). */
bool wf_proc_wait_stop(void);

#endif
