/* Keep-alive connections to backend servers, per thread (Wharf's
 * "idle_connections" and "idle_timeout"; see docs/internals/proxy.md).
 *
 * A pool belongs to the thread that calls it and is never locked.  Idle
 * connections are keyed by the server's address, not by a snapshot's
 * server object, so that they outlive a reconfiguration that keeps the
 * server and can never be handed to a server whose address differs.  An
 * idle connection is polled for input: the server closing it (or sending
 * anything unasked) closes it at once. */
#ifndef WF_HTTP_PROXY_POOL_H
#define WF_HTTP_PROXY_POOL_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/loop.h"

/* Takes the most recently idle connection to addr out of the calling
 * thread's pool.  Returns its fd (now the caller's: not polled, no timer)
 * or -1 when there is none. */
int wf_proxy_pool_get(wf_loop_t *loop, const struct sockaddr *addr,
                      socklen_t len);

/* Gives fd, connected to addr and no longer polled by the caller, to the
 * calling thread's pool for at most idle_ms; when max connections to addr
 * are idle already (or out of memory), the oldest one is closed.  Takes
 * ownership of fd in every case. */
void wf_proxy_pool_put(wf_loop_t *loop, int fd, const struct sockaddr *addr,
                       socklen_t len, unsigned max, uint32_t idle_ms);

/* Idle connections of the calling thread (for tests and /status). */
unsigned wf_proxy_pool_count(void);

/* Closes every idle connection of the calling thread (at thread exit). */
void wf_proxy_pool_thread_exit(void);

#endif
