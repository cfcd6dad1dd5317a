/* The router's application manager: one live object per configured
 * application, its processes (started by main on our request) with their
 * sockets, the queue of requests waiting for a free slot, scaling as Unit
 * defines it, restarts and /status.  docs/internals/apps.md has the
 * objects, their states and the rules.
 *
 * Unless said otherwise, functions run on loop 0 (the router's control
 * loop, which owns the port to main). */
#ifndef WF_PROCESS_APP_MGR_H
#define WF_PROCESS_APP_MGR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/loop.h"
#include "http/app_desc.h"
#include "process/port.h"

/* How the manager reaches main (router_main.c over its port; a test's
 * script otherwise). */
typedef struct wf_app_mgr_ops {
    /* Sends WF_MSG_APP_START with payload[0..len) and fds (borrowed: the
     * caller closes its copies after the call) as req (its handler is
     * set).  The answer (WF_MSG_APP_PID or WF_MSG_FAIL) reaches
     * req->handler on loop 0, or status WF_ERROR if main is gone.
     * Returns WF_OK, or WF_ERROR when nothing was sent (req unused). */
    int (*start)(wf_port_request_t *req, const char *payload, size_t len,
                 const int *fds, unsigned nfds);
    /* Sends WF_MSG_APP_KILL for pid. */
    void (*kill)(pid_t pid);
    /* The answer to wf_app_mgr_restart(): error NULL for OK. */
    void (*restarted)(uint64_t stream, const char *error);
} wf_app_mgr_ops_t;

/* Sets up the manager (ops borrowed) and installs the http layer's
 * application hooks.  Call once at start, before the loops run. */
void wf_app_mgr_init(const wf_app_mgr_ops_t *ops);

/* The outcome of a reconciliation that had to wait: error NULL when
 * every new or changed application has a ready process, else the reason
 * one failed to start.  Loop 0. */
typedef void (*wf_app_mgr_settled_cb)(void *arg, const char *error);

/* Makes apps[0..napps) (a new snapshot's) live: each gets desc->live, a
 * new reference to the application of that name, created if new; a
 * changed json restarts it gracefully (new processes start, the old ones
 * serve until one is ready); spare processes start.  Returns WF_OK when
 * nothing needs waiting for, WF_AGAIN when cb(arg) will tell whether the
 * first process of each new or changed application (with spare
 * processes) became ready, as Unit waits before it confirms a
 * configuration, or WF_ERROR (out of memory, logged).  After WF_AGAIN
 * or WF_ERROR the caller ends with wf_app_mgr_commit() or
 * wf_app_mgr_rollback(). */
int wf_app_mgr_reconcile(wf_app_desc_t *apps, size_t napps,
                         wf_app_mgr_settled_cb cb, void *arg);

/* The snapshot of apps[0..napps) is published: applications not in it
 * stop (their processes finish their requests). */
void wf_app_mgr_commit(const wf_app_desc_t *apps, size_t napps);

/* The configuration was refused: the applications of this
 * reconciliation go back to their settings in old[0..nold) (the current
 * snapshot's), and new ones stop. */
void wf_app_mgr_rollback(const wf_app_desc_t *old, size_t nold);

/* Drops the references apps[0..napps) hold (a retired snapshot's).  Any
 * thread. */
void wf_app_mgr_release(wf_app_desc_t *apps, size_t napps);

/* main's answers: an app process ended (APP_EXIT). */
void wf_app_mgr_on_exit(pid_t pid, int code, int signo);

/* GET /control/applications/NAME/restart: new processes start, the old
 * ones finish their requests; ops->restarted(stream) once a new one is
 * ready (or with the reason it failed). */
void wf_app_mgr_restart(const char *name, uint64_t stream);

/* Adds "NAME": {"processes": {"running", "starting", "idle"},
 * "requests": {"active"}} to obj for every application (Unit's keys). */
void wf_app_mgr_status(json_t *obj);

/* At router exit (loops stopped): closes every socket and frees
 * everything; app processes see EOF and exit (main kills the rest). */
void wf_app_mgr_shutdown(void);

#endif
