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

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/loop.h"
#include "net/xprt.h"

/* Takes the most recently idle connection to addr out of the calling
 * thread's pool into io: io->fd and io->events are set and the fd table
 * points to io (the caller sets io->handler before the loop runs again;
 * the fd stays registered in loop's epoll, polled for EPOLLIN and
 * EPOLLRDHUP, so that taking it costs no system call), and *xp gets its
 * transport (plain, or its TLS session).  tag tells connections to the
 * same address apart (0: plain; a TLS context's wf_tls_cli_id()): only one
 * put with the same tag is taken.  Returns false when there is none. */
bool wf_proxy_pool_get(wf_loop_t *loop, const struct sockaddr *addr,
                       socklen_t len, uint64_t tag, wf_io_t *io, wf_xprt_t *xp);

/* Gives io's connection (to addr, registered in loop's epoll) to the
 * calling thread's pool for at most idle_ms; the caller forgets io's fd
 * (io is not touched again) and its transport *xp, which is
 * plain afterwards.  When max connections to addr are idle
 * already, the oldest one is closed; when out of memory, this one is.
 * idle (NULL: none) counts the connection while it is idle, for /status;
 * it must outlive the pool (a server's process-wide peer does). */
void wf_proxy_pool_put(wf_loop_t *loop, wf_io_t *io, wf_xprt_t *xp,
                       const struct sockaddr *addr, socklen_t len, uint64_t tag,
                       unsigned max, uint32_t idle_ms, _Atomic int32_t *idle);

/* Idle connections of the calling thread (for tests and /status). */
unsigned wf_proxy_pool_count(void);

/* Closes every idle connection of the calling thread (at thread exit). */
void wf_proxy_pool_thread_exit(void);

#endif
