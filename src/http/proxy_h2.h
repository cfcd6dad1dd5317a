/* HTTP/2 to backends (issue 12, back side): proxied requests multiplexed
 * as streams on client-side nghttp2 sessions, h2c (prior knowledge) or h2
 * over TLS (ALPN), pooled per thread and server.  See
 * docs/internals/proxy.md, "HTTP/2 to backends".
 *
 * A connection (wf_proxy_h2_conn_t) is created from an already connected
 * fd and its transport, so that it does not care who connected it: the
 * proxy dials servers itself, and reverse HTTP (issue 13) turns an
 * accepted connection into one and adds it to a pool.  Every function is
 * called on the loop (thread) that owns the connection or the request. */
#ifndef WF_HTTP_PROXY_H2_H
#define WF_HTTP_PROXY_H2_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/loop.h"
#include "http/req.h"
#include "net/xprt.h"

struct wf_upstream;
struct wf_upstream_server;

typedef struct wf_proxy_h2_conn wf_proxy_h2_conn_t;

/* Which pool a connection is in: a server's address (or, for a server
 * that is never dialed, any bytes that name it: reverse HTTP's) and the
 * transport's tag (0: plain h2c; a TLS context's wf_tls_cli_id()). */
typedef struct wf_proxy_h2_key {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t tag;
} wf_proxy_h2_key_t;

typedef void (*wf_proxy_h2_close_cb)(wf_proxy_h2_conn_t *c, void *data);

typedef struct wf_proxy_h2_conn_opts {
    uint32_t idle_ms;              /* closed after this long without a stream
                                      (0: kept until the peer or GOAWAY ends it) */
    _Atomic int32_t *conns;        /* counts the connection while open (a peer's
                                      h2 counter, for /status); NULL: none */
    wf_proxy_h2_close_cb on_close; /* once, when the connection is gone
                                      (NULL: none) */
    void *data;                    /* on_close's */
    bool no_preface;               /* drop the client magic: the public side
                                      of reverse HTTP sends only SETTINGS */
    unsigned idle_max;             /* idle ones kept per key and thread before
                                      this one closes (0: 1) */
} wf_proxy_h2_conn_opts_t;

/* Creates the client side of HTTP/2 on the connected fd, whose transport
 * *xp is plain or a finished TLS handshake, on loop (the calling
 * thread's).  On success both are taken (the fd is closed and the
 * transport released with the connection; *xp is plain afterwards) and
 * the client preface and SETTINGS are queued.  rbuf[0..n): bytes already
 * read from the peer (its SETTINGS, if any; n may be 0).  registered: the
 * fd is already in loop's epoll (its wf_io_t is re-pointed with
 * wf_io_table_set()), else it is added.  Returns NULL when out of memory
 * (the fd and *xp are left to the caller). */
wf_proxy_h2_conn_t *wf_proxy_h2_conn_create(wf_loop_t *loop, int fd,
                                            wf_xprt_t *xp, bool registered,
                                            const char *rbuf, size_t n,
                                            const wf_proxy_h2_conn_opts_t *o);

/* Puts c in its thread's pool under key: proxied requests to a server
 * whose address and tag match are sent as streams on it while it has
 * room (the peer's SETTINGS_MAX_CONCURRENT_STREAMS).  The pool owns c
 * from now on (it ends by idle timeout, GOAWAY, the peer's close or the
 * thread's exit; on_close tells).  Returns WF_OK, or WF_ERROR when c is
 * in a pool already. */
int wf_proxy_h2_pool_add(wf_proxy_h2_conn_t *c, const wf_proxy_h2_key_t *key);

/* Sends GOAWAY: no new stream goes to c, those in flight finish, then it
 * closes.  Never calls back synchronously. */
void wf_proxy_h2_conn_shutdown(wf_proxy_h2_conn_t *c);

/* Streams in flight on c, and whether c takes another one now. */
unsigned wf_proxy_h2_conn_streams(const wf_proxy_h2_conn_t *c);
bool wf_proxy_h2_conn_has_room(const wf_proxy_h2_conn_t *c);

/* h2 connections open on the calling thread (tests, /status). */
unsigned wf_proxy_h2_pool_count(void);

/* Closes the calling thread's h2 connections (at I/O thread exit). */
void wf_proxy_h2_thread_exit(void);

/* ---- for http/proxy.c ---------------------------------------------------- */

/* Runs r's proxied exchange as a stream to s, a server of u whose slot
 * (wf_upstream_pick()) the call takes over: head[0..len) is the request
 * head proxy.c serialised for HTTP/1.1 (its Host, forwarding fields and
 * framing rules), mapped here to an h2 header list.  A pooled connection
 * with room carries it, else a new one is dialed.  502 when the server
 * cannot be reached or the stream fails before the response head, 504 on
 * a timeout before it; after it, the response channel aborts.  Takes over
 * r. */
void wf_proxy_h2_run(wf_req_t *r, struct wf_upstream *u,
                     struct wf_upstream_server *s, const char *head,
                     size_t len);

/* Frees r's h2 stream state (resetting its stream if still open); when r
 * is destroyed.  Never calls back.  Accepts an r that has none. */
void wf_proxy_h2_req_release(wf_req_t *r);

#endif
