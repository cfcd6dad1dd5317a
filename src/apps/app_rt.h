/* The app process runtime: the wf_app_rt_t table that app_api.h promises a
 * module, over the sockets and the wire protocol of app_proto.h.  Used by
 * app_main.c (and the unit tests); a module never sees this header.
 * docs/internals/apps.md ("The app process") has the design and its costs.
 *
 * Threads.  Worker k (0 <= k < slots) owns sockets k * N .. k * N + N - 1,
 * one per router thread, an epoll fd over them and an eventfd that wakes
 * it.  Only the thread serving a worker touches it and its requests;
 * wf_app_rt_stop() may be called from any thread or a signal handler. */
#ifndef WF_APPS_APP_RT_H
#define WF_APPS_APP_RT_H

#include <stdbool.h>

#include "apps/app_api.h"

/* A pull worker (next()) that set no concurrency announces 1 +
 * WF_APP_RT_QUEUED: it serves one request at a time and takes this many
 * queued behind it, in order (READY's queued; docs/internals/apps.md,
 * "Measured costs", for the depth). */
#define WF_APP_RT_QUEUED 31

/* Creates the runtime of one app process: conf is copied shallowly (its
 * strings and targets are borrowed and must outlive the app); takes the
 * slots * router_threads fds, in app_proto.h's order, and makes them
 * blocking (every non-blocking call passes MSG_DONTWAIT).  Returns NULL
 * on a bad argument or out of memory (logged); the fds are then closed. */
wf_app_t *wf_app_rt_create(const wf_app_conf_t *conf, unsigned slots,
                           unsigned router_threads, const int *fds);

/* Closes what is left and frees app.  Every worker must be idle (no
 * thread inside the runtime).  Accepts NULL. */
void wf_app_rt_destroy(wf_app_t *app);

/* The function table handed to the module (static; never NULL). */
const wf_app_rt_t *wf_app_rt_table(void);

/* Asks every worker to stop: graceful (QUIT) stops taking requests and
 * lets the in-flight ones finish; otherwise (TERM) blocked waits in
 * next()/dispatch() end at once and in-flight requests fail.  Async-
 * signal-safe; any thread. */
void wf_app_rt_stop(wf_app_t *app, bool graceful);

#endif
