#include "http/upstream_peer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "core/loop.h"

/* Both tables are lists: a configuration names a few servers, they are
 * looked up when a snapshot is compiled, never per request. */
static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_upstream_peer_t *peer_list;
static wf_upstream_stats_t *stats_list;

uint64_t
wf_upstream_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

wf_upstream_peer_t *
wf_upstream_peer_get(const struct sockaddr *addr, socklen_t len)
{
    wf_upstream_peer_t *p;

    if (len > sizeof(p->addr)) {
        return NULL;
    }
    pthread_mutex_lock(&peer_lock);
    for (p = peer_list; p != NULL; p = p->next) {
        if (p->addrlen == len && memcmp(&p->addr, addr, len) == 0) {
            break;
        }
    }
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p != NULL) {
            memcpy(&p->addr, addr, len);
            p->addrlen = len;
            pthread_mutex_init(&p->lock, NULL);
            p->next = peer_list;
            peer_list = p;
        }
    }
    pthread_mutex_unlock(&peer_lock);
    return p;
}

wf_upstream_stats_t *
wf_upstream_stats_get(const char *name, bool action)
{
    wf_upstream_stats_t *s;

    pthread_mutex_lock(&peer_lock);
    for (s = stats_list; s != NULL; s = s->next) {
        if (s->action == action && strcmp(s->name, name) == 0) {
            break;
        }
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s != NULL && (s->name = strdup(name)) == NULL) {
            free(s);
            s = NULL;
        }
        if (s != NULL) {
            s->action = action;
            s->next = stats_list;
            stats_list = s;
        }
    }
    pthread_mutex_unlock(&peer_lock);
    return s;
}

wf_upstream_cell_t *
wf_upstream_cell(wf_upstream_cell_t *cells)
{
    wf_loop_t *loop = wf_loop_current();

    /* Cell 0 takes the threads without a loop (helpers, tests). */
    return &cells[loop != NULL ? (loop->id + 1) % WF_UPSTREAM_CELLS : 0];
}

void
wf_upstream_count(_Atomic uint64_t *counter)
{
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

void
wf_upstream_cells_sum(const wf_upstream_cell_t *cells, wf_upstream_count_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < WF_UPSTREAM_CELLS; i++) {
        const wf_upstream_cell_t *c = &cells[i];

        out->requests +=
            atomic_load_explicit(&c->requests, memory_order_relaxed);
        out->failures +=
            atomic_load_explicit(&c->failures, memory_order_relaxed);
        out->queued += atomic_load_explicit(&c->queued, memory_order_relaxed);
        out->rejected +=
            atomic_load_explicit(&c->rejected, memory_order_relaxed);
    }
}

wf_upstream_health_t
wf_upstream_peer_health(const wf_upstream_peer_t *p, uint64_t now)
{
    if (atomic_load_explicit(&p->check_down, memory_order_relaxed)) {
        return WF_UPSTREAM_DOWN_ACTIVE;
    }
    if (atomic_load_explicit(&p->down_until, memory_order_relaxed) > now) {
        return WF_UPSTREAM_DOWN_PASSIVE;
    }
    return WF_UPSTREAM_UP;
}

bool
wf_upstream_peer_fail(wf_upstream_peer_t *p, const wf_upstream_passive_t *ps,
                      uint64_t now)
{
    unsigned n = wf_min(ps->max_fails, (unsigned)WF_UPSTREAM_FAILS_MAX);
    bool down = false;

    if (n == 0) {
        return false;
    }
    pthread_mutex_lock(&p->lock);
    p->fails[p->fail_head] = now;
    p->fail_head = (p->fail_head + 1) % WF_UPSTREAM_FAILS_MAX;
    p->nfails = wf_min(p->nfails + 1, (unsigned)WF_UPSTREAM_FAILS_MAX);
    if (p->nfails >= n) {
        /* The n-th most recent failure: within the window, n failed. */
        unsigned i =
            (p->fail_head + WF_UPSTREAM_FAILS_MAX - n) % WF_UPSTREAM_FAILS_MAX;

        if (now - p->fails[i] <= ps->window_ms) {
            atomic_store(&p->down_until, now + ps->down_ms);
            p->nfails = 0; /* back up after down_ms, with a clean slate */
            down = true;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return down;
}

const char *
wf_upstream_health_name(wf_upstream_health_t h)
{
    static const char *const names[] = {
        [WF_UPSTREAM_UP] = "up",
        [WF_UPSTREAM_DOWN_PASSIVE] = "down",
        [WF_UPSTREAM_DOWN_ACTIVE] = "down",
    };

    return names[h];
}

/* ---- /status ------------------------------------------------------------ */

typedef struct status_server {
    char *name; /* owned */
    wf_upstream_peer_t *peer;
} status_server_t;

typedef struct status_upstream {
    wf_upstream_stats_t *stats;
    status_server_t *servers; /* owned */
    size_t n;
} status_upstream_t;

/* What /status shows: the current snapshot's upstreams, copied
 * (the snapshot may go while a thread reads this). */
typedef struct status_view {
    status_upstream_t *ups;
    size_t n;
} status_view_t;

static pthread_mutex_t status_lock = PTHREAD_MUTEX_INITIALIZER;
static status_view_t *status_view;

static void
status_view_free(status_view_t *v)
{
    for (size_t i = 0; v != NULL && i < v->n; i++) {
        for (size_t j = 0; j < v->ups[i].n; j++) {
            free(v->ups[i].servers[j].name);
        }
        free(v->ups[i].servers);
    }
    if (v != NULL) {
        free(v->ups);
    }
    free(v);
}

static int
status_upstream_copy(status_upstream_t *su, const wf_upstream_t *u)
{
    su->stats = u->stats;
    su->servers = calloc(u->nservers + 1, sizeof(*su->servers));
    if (su->servers == NULL) {
        return WF_ERROR;
    }
    for (size_t i = 0; i < u->nservers; i++) {
        su->servers[i].peer = u->servers[i].peer;
        su->servers[i].name = strdup(u->servers[i].name);
        if (su->servers[i].name == NULL) {
            return WF_ERROR;
        }
        su->n++;
    }
    return WF_OK;
}

void
wf_upstream_status_publish(wf_upstream_t *all)
{
    status_view_t *v = calloc(1, sizeof(*v));
    size_t n = 0;

    for (wf_upstream_t *u = all; u != NULL; u = u->next) {
        n += u->stats != NULL;
    }
    if (v == NULL || (v->ups = calloc(n + 1, sizeof(*v->ups))) == NULL) {
        free(v);
        return; /* out of memory: /status keeps the previous view */
    }
    /* all is in reverse config order (each upstream is pushed on it). */
    v->n = n;
    for (wf_upstream_t *u = all; u != NULL; u = u->next) {
        if (u->stats != NULL
            && status_upstream_copy(&v->ups[--n], u) != WF_OK) {
            status_view_free(v);
            return;
        }
    }
    pthread_mutex_lock(&status_lock);
    status_view_free(status_view);
    status_view = v;
    pthread_mutex_unlock(&status_lock);
}

static json_t *
status_server_json(const wf_upstream_peer_t *p, uint64_t now)
{
    wf_upstream_count_t c;

    wf_upstream_cells_sum(p->cells, &c);
    return json_pack("{s:I,s:I,s:I,s:I,s:s,s:I}", "requests",
                     (json_int_t)c.requests, "failures", (json_int_t)c.failures,
                     "active", (json_int_t)atomic_load(&p->active), "idle",
                     (json_int_t)atomic_load(&p->idle), "health",
                     wf_upstream_health_name(wf_upstream_peer_health(p, now)),
                     "checks", (json_int_t)atomic_load(&p->check_total));
}

static json_t *
status_upstream_json(const status_upstream_t *su, uint64_t now)
{
    wf_upstream_count_t c;
    json_t *servers = json_object();

    for (size_t i = 0; servers != NULL && i < su->n; i++) {
        json_object_set_new(servers, su->servers[i].name,
                            status_server_json(su->servers[i].peer, now));
    }
    wf_upstream_cells_sum(su->stats->cells, &c);
    return json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:o?}", "requests", (json_int_t)c.requests,
        "failures", (json_int_t)c.failures, "queued", (json_int_t)c.queued,
        "rejected", (json_int_t)c.rejected, "queue",
        (json_int_t)atomic_load(&su->stats->waiting), "servers", servers);
}

json_t *
wf_upstream_status_json(void)
{
    json_t *obj = json_object();
    uint64_t now = wf_upstream_now_ms();

    if (obj == NULL) {
        return NULL;
    }
    /* The "proxy" actions' own first, so that a named upstream whose name
     * is the same URL takes the key.  Actions with the same URL share
     * their stats and their server's peer: one entry. */
    pthread_mutex_lock(&status_lock);
    for (int named = 0; named < 2; named++) {
        for (size_t i = 0; status_view != NULL && i < status_view->n; i++) {
            const status_upstream_t *su = &status_view->ups[i];

            if (su->stats->action == !named) {
                json_object_set_new(obj, su->stats->name,
                                    status_upstream_json(su, now));
            }
        }
    }
    pthread_mutex_unlock(&status_lock);
    return obj;
}
