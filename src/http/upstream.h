/* Upstreams: the backend servers a "proxy" action or a "pass" to
 * "upstreams/NAME" reaches (Unit's "upstreams", weighted round robin).
 *
 * A "proxy": "http://ADDR" action compiles into an upstream of its own
 * with one server of weight 1, so the engine (http/proxy.c) sees only
 * upstreams.  The server list is immutable in the snapshot; only the
 * round-robin weights move, under the upstream's lock. */
#ifndef WF_HTTP_UPSTREAM_H
#define WF_HTTP_UPSTREAM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/str.h"

typedef struct wf_upstream_server {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *name;  /* as configured ("127.0.0.1:8080", "unix:/p") */
    int32_t weight;    /* scaled as Unit scales it; 0: never chosen */
    int32_t effective; /* smooth round robin state (under lock) */
    int32_t current;
} wf_upstream_server_t;

typedef struct wf_upstream {
    const char *name; /* NULL for a "proxy" action's own upstream */
    wf_upstream_server_t *servers;
    size_t nservers;
    pthread_mutex_t lock; /* guards the round-robin state */

    /* Timeouts in ms (Unit's fixed ones unless configured): connecting
     * and waiting for the response head (Unit's proxy_timeout), sending
     * the request, reading the response body between two reads. */
    uint32_t connect_ms;
    uint32_t head_ms;
    uint32_t send_ms;
    uint32_t read_ms;
    uint32_t tunnel_ms; /* a WebSocket tunnel with no byte either way
                           (Wharf's "tunnel_timeout"; 0: the default) */

    /* Keep-alive (Wharf's): idle connections kept per thread and server
     * address (0: none, Unit's "Connection: close"), and for how long. */
    unsigned idle_max;
    uint32_t idle_ms;

    /* Forwarding (Wharf's "proxy_settings"): add X-Forwarded-For, -Proto
     * and -Host, and/or Forwarded (RFC 7239); the client's own ones are
     * kept only from a trusted source (NULL: none is).  host: the Host
     * sent, rendered per request (NULL: the client's).  All borrowed from
     * the snapshot. */
    bool x_forwarded;
    bool forwarded;
    const struct wf_addr_set *trusted;
    const struct wf_tpl *host;

    /* TLS to the servers (an "https://" proxy, or Wharf's "tls"): NULL
     * when plain; owned by the snapshot (wf_conf_t.tls_clis).  sni: the
     * name sent and verified (NULL: none; the address is verified). */
    struct wf_tls_cli *tls;
    const char *sni;
} wf_upstream_t;

#define WF_UPSTREAM_CONNECT_MS (60 * 1000) /* Unit's proxy_timeout */
#define WF_UPSTREAM_HEAD_MS    (60 * 1000) /* Unit's proxy_timeout */
#define WF_UPSTREAM_SEND_MS    (30 * 1000) /* Unit's proxy_send_timeout */
#define WF_UPSTREAM_READ_MS    (30 * 1000) /* Unit's proxy_read_timeout */
#define WF_UPSTREAM_IDLE_MS    (60 * 1000) /* "idle_timeout" by default */
#define WF_UPSTREAM_IDLE_MAX   1024        /* "idle_connections" at most */
#define WF_UPSTREAM_TUNNEL_MS  (60 * 1000) /* "tunnel_timeout" by default */

/* Sets u's defaults (Unit's timeouts) and its lock; u is zeroed. */
void wf_upstream_init(wf_upstream_t *u);

/* The upstream named name in ups[0..n), or NULL. */
wf_upstream_t *wf_upstream_find(wf_upstream_t *ups, size_t n, wf_str_t name);

/* Scales the configured weights w[0..n) (doubles, 0..1e6) into
 * servers[i].weight as Unit does: their sum is brought near INT32_MAX/2,
 * each non-zero weight stays at least 1. */
void wf_upstream_weights(wf_upstream_t *u, const double *w);

/* Picks a server by smooth weighted round robin (Unit's algorithm: each
 * pick adds every server's weight to its current weight, takes the
 * highest and subtracts the total from it).  Returns NULL when no server
 * has a weight (none configured, or all 0).  Any thread. */
const wf_upstream_server_t *wf_upstream_pick(wf_upstream_t *u);

#endif
