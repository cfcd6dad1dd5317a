/* Process-wide state of backend servers and upstreams, which outlives
 * configuration snapshots (docs/internals/proxy.md, "Health", "Metrics").
 *
 * A peer is one server address (as the keep-alive pools key them): its
 * connections in use (for least_conn, random_two and max_conns), its
 * health (passive and active), its counters.  An upstream's stats are its
 * counters, by name.  Both are created on first use and never freed
 * before the process exits, so a snapshot, a check or a pooled connection
 * may keep a pointer without a reference count, and counters stay
 * monotonic across reconfigurations.  Their number is bounded by the
 * distinct addresses and names ever configured. */
#ifndef WF_HTTP_UPSTREAM_PEER_H
#define WF_HTTP_UPSTREAM_PEER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http/upstream.h"

#define WF_UPSTREAM_CELLS 16 /* counter cells: one per thread, modulo */

/* Counters one thread adds to (relaxed atomics); readers sum the cells. */
typedef struct wf_upstream_cell {
    _Atomic uint64_t requests; /* picked for a request */
    _Atomic uint64_t failures; /* failed (connect, timeout, bad response) */
    _Atomic uint64_t queued;   /* requests that waited in the queue */
    _Atomic uint64_t rejected; /* 503: down, or the queue full/timed out */
} __attribute__((aligned(64))) wf_upstream_cell_t;

/* Summed counters. */
typedef struct wf_upstream_count {
    uint64_t requests;
    uint64_t failures;
    uint64_t queued;
    uint64_t rejected;
} wf_upstream_count_t;

typedef enum wf_upstream_health {
    WF_UPSTREAM_UP = 0,
    WF_UPSTREAM_DOWN_PASSIVE, /* max_fails within fail_window */
    WF_UPSTREAM_DOWN_ACTIVE,  /* the health check failed fall times */
} wf_upstream_health_t;

typedef struct wf_upstream_peer {
    struct wf_upstream_peer *next; /* in the table */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    _Atomic int32_t active;       /* connections in use, all threads */
    _Atomic int32_t idle;         /* in the keep-alive pools, all threads */
    _Atomic uint64_t down_until;  /* passive: monotonic ms; 0: up */
    _Atomic bool check_down;      /* the active check's verdict */
    _Atomic uint64_t check_total; /* health checks run */
    pthread_mutex_t lock;         /* guards fails[] */
    uint64_t fails[WF_UPSTREAM_FAILS_MAX]; /* ring of failure times */
    unsigned nfails;
    unsigned fail_head;
    struct wf_upstream_check *check; /* router loop 0 only (health.c) */
    wf_upstream_cell_t cells[WF_UPSTREAM_CELLS];
} wf_upstream_peer_t;

typedef struct wf_upstream_stats {
    struct wf_upstream_stats *next; /* in the table */
    char *name;                     /* owned */
    bool action;                    /* a "proxy" action's own, by URL */
    _Atomic int32_t waiting;        /* requests in the queue now */
    wf_upstream_cell_t cells[WF_UPSTREAM_CELLS];
} wf_upstream_stats_t;

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t wf_upstream_now_ms(void);

/* The peer of addr, created on first use.  NULL when out of memory.  Any
 * thread (the table is locked). */
wf_upstream_peer_t *wf_upstream_peer_get(const struct sockaddr *addr,
                                         socklen_t len);

/* The stats of the upstream named name (action: of the "proxy" actions
 * whose URL is name, apart from a named upstream of the same name),
 * created on first use.  NULL when out of memory.  Any thread. */
wf_upstream_stats_t *wf_upstream_stats_get(const char *name, bool action);

/* The calling thread's cell of cells. */
wf_upstream_cell_t *wf_upstream_cell(wf_upstream_cell_t *cells);

/* Adds 1 to a counter of the calling thread's cell. */
void wf_upstream_count(_Atomic uint64_t *counter);

/* Sums cells into out. */
void wf_upstream_cells_sum(const wf_upstream_cell_t *cells,
                           wf_upstream_count_t *out);

/* p's health now (now: wf_upstream_now_ms()). */
wf_upstream_health_t wf_upstream_peer_health(const wf_upstream_peer_t *p,
                                             uint64_t now);

/* Records a failure of p at now; with ps->max_fails failures within
 * ps->window_ms, p is down for ps->down_ms.  Returns true when this one
 * marked it down.  Any thread. */
bool wf_upstream_peer_fail(wf_upstream_peer_t *p,
                           const wf_upstream_passive_t *ps, uint64_t now);

/* The name of health h ("up", "down"). */
const char *wf_upstream_health_name(wf_upstream_health_t h);

struct json_t;

/* The snapshot whose upstreams are all (linked by next) is the current
 * one: /status shows its upstreams (named ones, and each "proxy" action's
 * own by its URL) and their servers from now on.
 * On the router's main loop. */
void wf_upstream_status_publish(wf_upstream_t *all);

/* /status's "upstreams" (Wharf's key): a new object, {NAME or URL: {"requests",
 * "failures", "queued", "rejected", "queue", "servers": {ADDR:
 * {"requests", "failures", "active", "idle", "health", "checks"}}}}.
 * Counters are sums of the threads' cells, monotonic across
 * reconfigurations.  Any thread; NULL when out of memory. */
struct json_t *wf_upstream_status_json(void);

#endif
