/* HTTP/1.x client connections: the connection state machine, request
 * bodies, keep-alive, pipelining and the response writer (sendmsg and
 * sendfile). */
#ifndef WF_HTTP_H1_CONN_H
#define WF_HTTP_H1_CONN_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/listen.h"
#include "http/http_conf.h"
#include "http/route.h"
#include "net/tls.h"

/* A config snapshot as the HTTP layer sees it, counted by the connections
 * that use it.  The process layer embeds it in its own snapshot object and
 * frees that in release(), which may run on any I/O thread. */
typedef struct wf_h1_snap wf_h1_snap_t;

struct wf_h1_snap {
    _Atomic unsigned refs;
    void (*release)(wf_h1_snap_t *snap); /* refs dropped to 0 */
};

static inline void
wf_h1_snap_ref(wf_h1_snap_t *snap)
{
    atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
}

/* Drops a reference; the last one calls snap->release().  Accepts NULL. */
void wf_h1_snap_unref(wf_h1_snap_t *snap);

/* What a listener's connections route through in one snapshot.  Lives in
 * the snapshot's memory. */
typedef struct wf_h1_site {
    const wf_route_t *root;
    const wf_http_conf_t *hc;
    wf_h1_snap_t *snap;
    wf_tls_srv_t *tls; /* the listener's TLS, in snap; NULL: plain */
    bool h2c;          /* the listener's "h2c": HTTP/2 with prior
                          knowledge on a plain listener (http/h2_conn.h) */
    const struct wf_rhttp_attach *attach; /* "reverse": its h2 connections
                          become reverse tunnels (http/rhttp_pub.h) */
} wf_h1_site_t;

/* A listening socket serving HTTP/1.x.  It outlives configurations that keep
 * its address: a reconfiguration only publishes a new site, and each
 * connection moves to it when its next request starts (a safe point).
 * Counted: the owner holds one reference, each connection another. */
typedef struct wf_h1_server wf_h1_server_t;

struct wf_h1_server {
    wf_listener_t listener;
    _Atomic(const wf_h1_site_t *) site; /* current; never NULL */
    _Atomic unsigned refs;
    void (*release)(wf_h1_server_t *srv); /* refs dropped to 0 */
    _Atomic bool removed; /* by a reconfiguration: no new request */
};

/* Sets srv's accept callback and first site; refs starts at 1 (the
 * caller's).  Call before wf_listener_start(). */
void wf_h1_server_init(wf_h1_server_t *srv, const wf_h1_site_t *site,
                       void (*release)(wf_h1_server_t *srv));

/* Publishes a new site for srv's connections (any thread).  Connections may
 * still load the old site until every loop passed a safe point: keep the old
 * snapshot referenced until wf_loops_sync() completes. */
void wf_h1_server_set_site(wf_h1_server_t *srv, const wf_h1_site_t *site);

/* Marks srv removed by a reconfiguration (any thread; its listener is
 * closed): its connections serve no new request.  One that starts a request
 * gets a 408 and closes, as in Unit; a request in progress finishes, then
 * its connection closes.  Idle ones close at wf_h1_sweep_removed(). */
void wf_h1_server_remove(wf_h1_server_t *srv);

/* Closes this thread's connections of removed servers that wait between
 * requests.  Call on each I/O thread at a safe point after
 * wf_h1_server_remove() (wf_sync_t's visit).  Never calls back. */
void wf_h1_sweep_removed(void);

/* Drops a reference; the last one calls srv->release(). */
void wf_h1_server_unref(wf_h1_server_t *srv);

/* Counters for /status, summed over every I/O thread. */
typedef struct wf_h1_stats {
    uint64_t accepted; /* connections accepted */
    uint64_t active;   /* open, with a request in progress */
    uint64_t idle;     /* open, between requests */
    uint64_t closed;   /* connections closed */
    uint64_t requests; /* requests started */
} wf_h1_stats_t;

/* Counts, for /status, what an HTTP/2 connection (http/h2_conn.c) that
 * took over an accepted connection does on loop's thread: its close
 * (closed) and its streams (requests). */
void wf_h1_stats_h2(wf_loop_t *loop, unsigned closed, unsigned requests);

/* Sums the counters of all threads (any thread; a racy but consistent
 * enough view, as Unit's). */
void wf_h1_stats_get(wf_h1_stats_t *out);

/* Installs the loop hooks that close idle connections on a graceful stop
 * and free per-thread objects at thread exit. */
void wf_h1_init(void);

#endif
