/* Upstreams: the backend servers a "proxy" action or a "pass" to
 * "upstreams/NAME" reaches (Unit's "upstreams", weighted round robin, and
 * Wharf's balancing, health and limits; docs/internals/proxy.md).
 *
 * A "proxy": "http://ADDR" action compiles into an upstream of its own
 * with one server of weight 1, so the engine (http/proxy.c) sees only
 * upstreams.  The server list is immutable in the snapshot; what moves
 * (round-robin weights, connection counts, health, counters) lives in
 * the upstream's lock or in the server's peer, a process-wide object
 * keyed by address (http/upstream_peer.h) that outlives snapshots. */
#ifndef WF_HTTP_UPSTREAM_H
#define WF_HTTP_UPSTREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/list.h"
#include "core/loop.h"
#include "core/str.h"

struct wf_route_req;
struct wf_tpl;
struct wf_upstream_peer;
struct wf_upstream_stats;

/* Passive health (Wharf's "max_fails", "fail_window", "fail_timeout"):
 * max_fails failures within window_ms mark the server down for down_ms.
 * max_fails == 0: off (Unit's behaviour). */
typedef struct wf_upstream_passive {
    unsigned max_fails;
    uint32_t window_ms;
    uint32_t down_ms;
} wf_upstream_passive_t;

#define WF_UPSTREAM_FAILS_MAX 100 /* "max_fails" at most */

/* Which of a server's passive keys it set itself. */
#define WF_UPSTREAM_SET_FAILS  0x1u
#define WF_UPSTREAM_SET_WINDOW 0x2u
#define WF_UPSTREAM_SET_DOWN   0x4u

typedef struct wf_upstream_server {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *name;  /* as configured ("127.0.0.1:8080", "unix:/p"); for
                          a host name, the address it resolved to */
    const char *host;  /* "NAME:PORT" as configured; NULL: an address */
    double wconf;      /* the configured weight (before scaling) */
    int32_t weight;    /* scaled as Unit scales it; 0: never chosen */
    int32_t effective; /* smooth round robin state (under lock) */
    int32_t current;
    uint64_t hash;                 /* of name, for "hash" balancing */
    struct wf_upstream_peer *peer; /* process-wide state; never NULL once
                                      compiled (wf_upstream_compile()) */
    unsigned max_conns;            /* "max_conns"; 0: no limit */
    bool max_conns_set;            /* its own, else the upstream's */
    wf_upstream_passive_t passive;
    unsigned passive_set; /* WF_UPSTREAM_SET_*: its own, else the upstream's */
} wf_upstream_server_t;

/* Balancing algorithms ("balance"); each is in its own file behind
 * wf_upstream_lb_t (upstream_lb.c). */
typedef enum wf_upstream_balance {
    WF_UPSTREAM_ROUND_ROBIN = 0, /* smooth weighted round robin (Unit's) */
    WF_UPSTREAM_LEAST_CONN,
    WF_UPSTREAM_RANDOM_TWO,
    WF_UPSTREAM_HASH,
    WF_UPSTREAM_NBALANCE
} wf_upstream_balance_t;

/* Why wf_upstream_pick() found no server. */
typedef enum wf_upstream_none {
    WF_UPSTREAM_NO_WEIGHT = 1, /* no server has a weight: 502 (Unit) */
    WF_UPSTREAM_ALL_DOWN,      /* every weighted server is down: 503 */
    WF_UPSTREAM_ALL_FULL,      /* up ones are at max_conns: queue or 503 */
} wf_upstream_none_t;

/* Active health check ("health_check"): GET path every interval_ms; a
 * status in [status_min, status_max] within timeout_ms is a success;
 * rise successes in a row bring a server up, fall failures down. */
typedef struct wf_upstream_check_conf {
    const char *path; /* NULL: no active check */
    const char *host; /* the Host field sent */
    uint32_t interval_ms;
    uint32_t timeout_ms;
    unsigned status_min;
    unsigned status_max;
    unsigned rise;
    unsigned fall;
} wf_upstream_check_conf_t;

typedef struct wf_upstream wf_upstream_t;

struct wf_upstream {
    const char *name; /* NULL for a "proxy" action's own upstream */
    const char *url;  /* a "proxy" action's own: its "proxy" string, the
                         name /status shows it by; NULL for a named one */
    wf_upstream_server_t *servers;
    size_t nservers;
    pthread_mutex_t lock;  /* guards the round-robin state */
    pthread_mutex_t qlock; /* guards the queue */
    wf_upstream_t *next;   /* every upstream of the snapshot (conf->all) */

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
    bool client_cert; /* "forward_client_cert": X-Client-* (http/var.h) */
    const struct wf_addr_set *trusted;
    const struct wf_tpl *host;

    /* Balancing: the algorithm, and for WF_UPSTREAM_HASH the key rendered
     * per request (borrowed from the snapshot). */
    wf_upstream_balance_t balance;
    const struct wf_tpl *hash_key;

    /* Health and limits: the defaults of the servers' own keys. */
    wf_upstream_passive_t passive;
    unsigned max_conns;
    wf_upstream_check_conf_t check;

    /* The queue of requests waiting for a server below max_conns
     * (wf_upstream_wait_t, under qlock): queue_max at most (0: no queue,
     * 503 at once), each for queue_ms at most. */
    unsigned queue_max;
    uint32_t queue_ms;
    wf_list_t queue;
    unsigned queued;

    /* Host names: resolved with resolver ("IP:PORT"; NULL: the system's)
     * when the snapshot is compiled, again after the answers' TTL, within
     * [1 s, resolve_ms]. */
    const char *resolver;
    uint32_t resolve_ms;
    const char **hosts; /* the configured "NAME:PORT"s, resolved or not */
    size_t nhosts;
    uint32_t ttl_ms; /* the smallest TTL of their answers; 0: none given */

    struct wf_upstream_stats *stats; /* process-wide, by name (a "proxy"
                                        action's: by url) */
    bool compiled;                   /* wf_upstream_compile() ran */

    /* TLS to the servers (an "https://" proxy, or Wharf's "tls"): NULL
     * when plain; owned by the snapshot (wf_conf_t.tls_clis).  sni: the
     * name sent and verified (NULL: none; the address is verified). */
    struct wf_tls_cli *tls;
    const char *sni;
    /* HTTP/2 to the servers (an "h2c://" or "h2://" proxy, or Wharf's
     * "protocol": "h2"): streams on pooled connections
     * (http/proxy_h2.c), over TLS with ALPN h2 when tls is set. */
    bool h2;
    /* Reverse HTTP (Wharf's "reverse", issue 13): the servers are the
     * tunnels attached under a name (http/rhttp_pub.c); each request
     * picks the name this template renders.  NULL: a usual upstream. */
    const struct wf_tpl *rhttp_select;
};

#define WF_UPSTREAM_CONNECT_MS (60 * 1000) /* Unit's proxy_timeout */
#define WF_UPSTREAM_HEAD_MS    (60 * 1000) /* Unit's proxy_timeout */
#define WF_UPSTREAM_SEND_MS    (30 * 1000) /* Unit's proxy_send_timeout */
#define WF_UPSTREAM_READ_MS    (30 * 1000) /* Unit's proxy_read_timeout */
#define WF_UPSTREAM_IDLE_MS    (60 * 1000) /* "idle_timeout" by default */
#define WF_UPSTREAM_IDLE_MAX   1024        /* "idle_connections" at most */
#define WF_UPSTREAM_QUEUE_MS   (10 * 1000) /* "queue_timeout" by default */
/* A queued request looks again this often: a server that came back up
 * (health check, fail_timeout over, DNS) frees no slot to wake it. */
#define WF_UPSTREAM_RECHECK_MS 100
#define WF_UPSTREAM_QUEUE_MAX  65536       /* "queue" at most */
#define WF_UPSTREAM_KEY_MAX    1024        /* a rendered "hash_key" */
#define WF_UPSTREAM_FAIL_MS    (10 * 1000) /* "fail_window", "fail_timeout" */
#define WF_UPSTREAM_RESOLVE_MS (30 * 1000) /* "resolve_interval" */
#define WF_UPSTREAM_TUNNEL_MS  (60 * 1000) /* "tunnel_timeout" by default */

/* Sets u's defaults (Unit's timeouts) and its lock; u is zeroed. */
void wf_upstream_init(wf_upstream_t *u);

/* Once u's servers and settings are all compiled: finds (or creates) each
 * server's process-wide peer and u's counters, hashes the names, starts
 * the active check (on an I/O thread, if loops run).  Returns WF_OK or
 * WF_ERROR (out of memory).  Any thread. */
int wf_upstream_compile(wf_upstream_t *u);

/* Undoes wf_upstream_compile() (the checks of a snapshot that goes); the
 * peers stay, with their health and counters.  u may be uncompiled. */
void wf_upstream_fini(wf_upstream_t *u);

/* The upstream named name in ups[0..n), or NULL. */
wf_upstream_t *wf_upstream_find(wf_upstream_t *ups, size_t n, wf_str_t name);

/* Scales the configured weights w[0..n) (doubles, 0..1e6) into
 * servers[i].weight as Unit does: their sum is brought near INT32_MAX/2,
 * each non-zero weight stays at least 1. */
void wf_upstream_weights(wf_upstream_t *u, const double *w);

/* The algorithm named name[0..len), or WF_UPSTREAM_NBALANCE. */
wf_upstream_balance_t wf_upstream_balance_find(wf_str_t name);

/* The hash of a "hash_key" value key[0..len). */
uint64_t wf_upstream_key_hash(const char *key, size_t len);

/* The balancing key of a request: u's "hash_key" rendered for rq and
 * hashed (0 when u has none). */
uint64_t wf_upstream_key(const wf_upstream_t *u, const struct wf_route_req *rq);

/* Picks a server for a request by u's algorithm, among the servers that
 * have a weight, are not down and are below their max_conns; key is the
 * request's wf_upstream_key().  On success the server's active count is
 * taken (given back by wf_upstream_done()).  Returns NULL and sets *why
 * when none is usable.  Any thread. */
wf_upstream_server_t *wf_upstream_pick(wf_upstream_t *u, uint64_t key,
                                       wf_upstream_none_t *why);

/* A request that wf_upstream_pick() gave s is over: s's active count is
 * given back (which may hand it to a queued request), the request is
 * counted, and a failure (a connect error, a timeout, an invalid
 * response) counts towards s's passive health.  Any thread. */
void wf_upstream_done(wf_upstream_t *u, wf_upstream_server_t *s, bool failed);

/* Counts a request u answered 503 (all down, queue full or timed out). */
void wf_upstream_reject(wf_upstream_t *u);

/* ---- the queue (max_conns) ---------------------------------------------- */

typedef struct wf_upstream_wait wf_upstream_wait_t;
typedef void (*wf_upstream_wait_cb)(wf_upstream_wait_t *w,
                                    wf_upstream_server_t *s);

/* A request waiting for a server below max_conns.  Created by
 * wf_upstream_wait(); ready runs on loop, once: with a server (whose
 * active count the request now holds) or with NULL (timed out, or the
 * upstream went). */
struct wf_upstream_wait {
    wf_list_t link; /* in u->queue while queued */
    wf_upstream_t *u;
    wf_loop_t *loop;
    wf_upstream_wait_cb ready; /* NULL once cancelled */
    void *data;                /* the caller's */
    wf_upstream_server_t *srv; /* handed over, while the task is posted */
    bool queued;               /* under u->qlock */
    bool posted;               /* the task is on its way to loop */
    uint64_t key;              /* the request's wf_upstream_key() */
    wf_task_t task;            /* posted to loop by the hand-over */
    wf_timer_t timer;          /* the next look, up to the deadline */
    uint64_t deadline;         /* monotonic ms: queue_ms after queuing */
};

/* Queues a request that found every usable server full (why was
 * WF_UPSTREAM_ALL_FULL); on loop's thread.  Returns NULL when the queue
 * is full or off (answer 503), or out of memory. */
wf_upstream_wait_t *wf_upstream_wait(wf_upstream_t *u, uint64_t key,
                                     wf_loop_t *loop, wf_upstream_wait_cb ready,
                                     void *data);

/* Withdraws w (the request went away); ready will not run.  On w's loop;
 * w is freed (now or once its posted task ran). */
void wf_upstream_wait_cancel(wf_upstream_wait_t *w);

#endif
