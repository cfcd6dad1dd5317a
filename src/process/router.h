/* The router's configuration life cycle: compile a config into a snapshot,
 * get listening sockets for new addresses, publish the snapshot to every
 * listener, and retire the old one once every I/O thread passed a safe
 * point.  Where sockets come from and where results go is the caller's
 * business (main process over a port, or directly), through wf_router_ops_t.
 * All functions run on the router's control loop (loop 0). */
#ifndef WF_PROCESS_ROUTER_H
#define WF_PROCESS_ROUTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/loop.h"

typedef struct wf_router wf_router_t;

typedef struct wf_router_ops {
    /* Asks for a listening socket for name/addr; the answer must come back
     * through wf_router_socket_done() with the same cookie (possibly from
     * within this call). */
    void (*socket_open)(wf_router_t *rt, const char *name,
                        const struct sockaddr *addr, socklen_t len,
                        uint32_t cookie);
    /* The listener for name is gone from the configuration. */
    void (*socket_release)(wf_router_t *rt, const char *name);
    /* Asks for the access log file at path (the router may not be allowed
     * to open it); the answer must come back through
     * wf_router_access_log_done() with the same cookie (possibly from
     * within this call). */
    void (*access_log_open)(wf_router_t *rt, const char *path, uint32_t cookie);
    /* A configuration was applied (error == NULL) or refused. */
    void (*applied)(wf_router_t *rt, uint64_t stream, const char *error);
} wf_router_ops_t;

/* Creates the router state; ops is borrowed. */
wf_router_t *wf_router_create(const wf_router_ops_t *ops, wf_loop_t *loop);

/* Starts applying the configuration text[0..len) (JSON); the result is
 * reported through ops->applied(stream).  A configuration that arrives
 * while another is being applied waits for it. */
void wf_router_apply(wf_router_t *rt, const char *text, size_t len,
                     uint64_t stream);

/* The answer to ops->socket_open: fd >= 0 (the router takes it), or -1
 * with error text. */
void wf_router_socket_done(wf_router_t *rt, uint32_t cookie, int fd,
                           const char *error);

/* The answer to ops->access_log_open: fd >= 0 (the router takes it), or -1
 * with error text (the configuration is refused). */
void wf_router_access_log_done(wf_router_t *rt, uint32_t cookie, int fd,
                               const char *error);

/* Closes every listening socket (any thread, at stop: no reconfiguration
 * may run concurrently); connections go on. */
void wf_router_stop_listening(wf_router_t *rt);

/* Closes every listener and drops the current snapshot (at exit, after the
 * loops and the helper threads stopped: a config compiled on a helper is
 * freed here). */
void wf_router_destroy(wf_router_t *rt);

/* Keeps the language modules main found (WF_MSG_MODULES: a JSON array
 * of {"type", "version", "file"}) for /status.  Loop 0. */
void wf_router_modules_set(const char *text, size_t len);

/* Writes Unit's /status object as JSON text into a malloc'd string. */
char *wf_router_status_json(void);

#endif
