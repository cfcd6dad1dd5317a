#include "http/upstream.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/tpl.h"
#include "http/upstream_lb.h"
#include "http/upstream_peer.h"

/* The algorithms, by wf_upstream_balance_t (a table, not a switch). */
static const wf_upstream_lb_t *const upstream_lbs[WF_UPSTREAM_NBALANCE] = {
    [WF_UPSTREAM_ROUND_ROBIN] = &wf_upstream_lb_rr,
    [WF_UPSTREAM_LEAST_CONN] = &wf_upstream_lb_lc,
    [WF_UPSTREAM_RANDOM_TWO] = &wf_upstream_lb_p2c,
    [WF_UPSTREAM_HASH] = &wf_upstream_lb_hash,
};

/* A pick that lost the race for a server's last slot tries again, this
 * many times at most. */
#define UPSTREAM_PICK_TRIES 4

void
wf_upstream_init(wf_upstream_t *u)
{
    pthread_mutex_init(&u->lock, NULL);
    pthread_mutex_init(&u->qlock, NULL);
    wf_list_init(&u->queue);
    u->connect_ms = WF_UPSTREAM_CONNECT_MS;
    u->head_ms = WF_UPSTREAM_HEAD_MS;
    u->send_ms = WF_UPSTREAM_SEND_MS;
    u->read_ms = WF_UPSTREAM_READ_MS;
    u->idle_ms = WF_UPSTREAM_IDLE_MS;
    u->queue_ms = WF_UPSTREAM_QUEUE_MS;
    u->resolve_ms = WF_UPSTREAM_RESOLVE_MS;
    u->passive.window_ms = WF_UPSTREAM_FAIL_MS;
    u->passive.down_ms = WF_UPSTREAM_FAIL_MS;
    u->check.interval_ms = 5000;
    u->check.timeout_ms = 2000;
    u->check.status_min = 200;
    u->check.status_max = 399;
    u->check.rise = 2;
    u->check.fall = 3;
}

uint64_t
wf_upstream_key_hash(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ULL;
    }
    return h;
}

int
wf_upstream_compile(wf_upstream_t *u)
{
    for (size_t i = 0; i < u->nservers; i++) {
        wf_upstream_server_t *s = &u->servers[i];

        s->peer =
            wf_upstream_peer_get((const struct sockaddr *)&s->addr, s->addrlen);
        if (s->peer == NULL) {
            return WF_ERROR;
        }
        s->hash = wf_upstream_key_hash(s->name, strlen(s->name));
        if ((s->passive_set & WF_UPSTREAM_SET_FAILS) == 0) {
            s->passive.max_fails = u->passive.max_fails;
        }
        if ((s->passive_set & WF_UPSTREAM_SET_WINDOW) == 0) {
            s->passive.window_ms = u->passive.window_ms;
        }
        if ((s->passive_set & WF_UPSTREAM_SET_DOWN) == 0) {
            s->passive.down_ms = u->passive.down_ms;
        }
        if (!s->max_conns_set) {
            s->max_conns = u->max_conns;
        }
    }
    if (u->name != NULL || u->url != NULL) {
        u->stats = u->name != NULL ? wf_upstream_stats_get(u->name, false)
                                   : wf_upstream_stats_get(u->url, true);
        if (u->stats == NULL) {
            return WF_ERROR;
        }
    }
    u->compiled = true;
    return WF_OK;
}

void
wf_upstream_fini(wf_upstream_t *u)
{
    pthread_mutex_destroy(&u->lock);
    pthread_mutex_destroy(&u->qlock);
}

void
wf_upstream_weights(wf_upstream_t *u, const double *w)
{
    double total = 0.0;
    double k;

    for (size_t i = 0; i < u->nservers; i++) {
        total += w[i];
    }
    /* The sum of the scaled weights stays below INT32_MAX, so that
     * wf_upstream_pick() cannot overflow. */
    k = total == 0.0 ? 0.0 : (INT32_MAX / 2) / total;
    if (isinf(k)) {
        k = 1.0;
    }
    for (size_t i = 0; i < u->nservers; i++) {
        double s = k * w[i];
        int32_t wt = s > 1.0 || s == 0.0 ? (int32_t)(s + 0.5)
                                         : 1; /* round() without libm */

        u->servers[i].weight = wt;
        u->servers[i].effective = wt;
        u->servers[i].current = 0;
    }
}

wf_upstream_balance_t
wf_upstream_balance_find(wf_str_t name)
{
    for (unsigned i = 0; i < WF_UPSTREAM_NBALANCE; i++) {
        if (wf_str_eq(name, wf_str_make(upstream_lbs[i]->name,
                                        strlen(upstream_lbs[i]->name)))) {
            return (wf_upstream_balance_t)i;
        }
    }
    return WF_UPSTREAM_NBALANCE;
}

/* ---- picking ------------------------------------------------------------ */

int32_t
wf_upstream_active(const wf_upstream_server_t *s)
{
    return atomic_load_explicit(&s->peer->active, memory_order_relaxed);
}

bool
wf_upstream_usable(const wf_upstream_server_t *s, uint64_t now)
{
    return s->weight > 0
           && wf_upstream_peer_health(s->peer, now) == WF_UPSTREAM_UP
           && (s->max_conns == 0
               || wf_upstream_active(s) < (int32_t)s->max_conns);
}

bool
wf_upstream_less_loaded(const wf_upstream_server_t *a,
                        const wf_upstream_server_t *b)
{
    /* a.active / a.weight < b.active / b.weight, without division. */
    return (int64_t)wf_upstream_active(a) * b->weight
           < (int64_t)wf_upstream_active(b) * a->weight;
}

uint64_t
wf_upstream_random(void)
{
    static __thread uint64_t x;

    if (x == 0) {
        x = wf_upstream_now_ms() ^ (uint64_t)(uintptr_t)&x
            ^ 0x9e3779b97f4a7c15ULL;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 0x2545f4914f6cdd1dULL;
}

uint64_t
wf_upstream_key(const wf_upstream_t *u, const struct wf_route_req *rq)
{
    char buf[WF_UPSTREAM_KEY_MAX];
    size_t n;

    if (u->balance != WF_UPSTREAM_HASH || u->hash_key == NULL || rq == NULL) {
        return 0;
    }
    n = wf_tpl_render(u->hash_key, rq, buf, sizeof(buf));
    return wf_upstream_key_hash(buf, wf_min(n, sizeof(buf)));
}

/* Takes one of s's slots unless it is at max_conns (another thread may
 * have taken the last one since the algorithm looked). */
static bool
upstream_take(wf_upstream_server_t *s)
{
    _Atomic int32_t *active = &s->peer->active;
    int32_t n = atomic_load(active);

    do {
        if (s->max_conns != 0 && n >= (int32_t)s->max_conns) {
            return false;
        }
    } while (!atomic_compare_exchange_weak(active, &n, n + 1));
    return true;
}

static wf_upstream_none_t
upstream_why(const wf_upstream_t *u, uint64_t now)
{
    bool weighted = false;

    for (size_t i = 0; i < u->nservers; i++) {
        const wf_upstream_server_t *s = &u->servers[i];

        if (s->weight <= 0) {
            continue;
        }
        weighted = true;
        if (wf_upstream_peer_health(s->peer, now) == WF_UPSTREAM_UP) {
            return WF_UPSTREAM_ALL_FULL;
        }
    }
    return weighted ? WF_UPSTREAM_ALL_DOWN : WF_UPSTREAM_NO_WEIGHT;
}

wf_upstream_server_t *
wf_upstream_pick(wf_upstream_t *u, uint64_t key, wf_upstream_none_t *why)
{
    const wf_upstream_lb_t *lb = upstream_lbs[u->balance];
    uint64_t now = wf_upstream_now_ms();

    for (int i = 0; i < UPSTREAM_PICK_TRIES; i++) {
        wf_upstream_server_t *s = lb->pick(u, key, now);

        if (s == NULL) {
            break;
        }
        if (upstream_take(s)) {
            return s;
        }
    }
    *why = upstream_why(u, now);
    return NULL;
}

/* ---- the queue ---------------------------------------------------------- */

static void upstream_wait_hand(wf_upstream_t *u);

/* The queue's length changes by delta (under u->qlock). */
static void
upstream_queued(wf_upstream_t *u, int delta)
{
    u->queued = (unsigned)((int)u->queued + delta);
    if (u->stats != NULL) {
        atomic_fetch_add(&u->stats->waiting, delta);
    }
}

/* Gives back one of s's slots; a queued request may take it. */
static void
upstream_release(wf_upstream_t *u, wf_upstream_server_t *s)
{
    atomic_fetch_sub(&s->peer->active, 1);
    if (u->queue_max > 0) {
        upstream_wait_hand(u);
    }
}

void
wf_upstream_done(wf_upstream_t *u, wf_upstream_server_t *s, bool failed)
{
    uint64_t now = wf_upstream_now_ms();

    wf_upstream_count(&wf_upstream_cell(s->peer->cells)->requests);
    if (u->stats != NULL) {
        wf_upstream_count(&wf_upstream_cell(u->stats->cells)->requests);
    }
    if (failed) {
        wf_upstream_count(&wf_upstream_cell(s->peer->cells)->failures);
        if (u->stats != NULL) {
            wf_upstream_count(&wf_upstream_cell(u->stats->cells)->failures);
        }
        wf_upstream_peer_fail(s->peer, &s->passive, now);
    }
    upstream_release(u, s);
}

void
wf_upstream_reject(wf_upstream_t *u)
{
    if (u->stats != NULL) {
        wf_upstream_count(&wf_upstream_cell(u->stats->cells)->rejected);
    }
}

static void
upstream_on_wait_task(wf_task_t *task)
{
    wf_upstream_wait_t *w = wf_container_of(task, wf_upstream_wait_t, task);

    wf_timer_stop(w->loop, &w->timer);
    if (w->ready != NULL) {
        w->ready(w, w->srv);
    }
    free(w);
}

/* A slot was given back, or a server may be up again: the first queued
 * request that a server can take now gets it, on its own loop.  Not only
 * the head: with a hash key the head may want a server still full. */
static void
upstream_wait_hand(wf_upstream_t *u)
{
    wf_upstream_wait_t *w = NULL;
    wf_upstream_none_t why;

    pthread_mutex_lock(&u->qlock);
    wf_list_for_each(it, &u->queue)
    {
        wf_upstream_wait_t *c = wf_container_of(it, wf_upstream_wait_t, link);

        c->srv = wf_upstream_pick(u, c->key, &why);
        if (c->srv != NULL) {
            w = c;
            break;
        }
    }
    if (w != NULL) {
        wf_list_del(&w->link);
        upstream_queued(u, -1);
        w->queued = false;
        w->posted = true;
    }
    pthread_mutex_unlock(&u->qlock);
    if (w != NULL) {
        wf_task_post(w->loop, &w->task);
    }
}

static void
upstream_on_wait_timer(wf_timer_t *t)
{
    wf_upstream_wait_t *w = wf_container_of(t, wf_upstream_wait_t, timer);
    wf_upstream_t *u = w->u;
    uint64_t now = wf_upstream_now_ms();
    bool queued;

    if (now < w->deadline) {
        /* Re-armed first: a hand-over below posts the task, which stops
         * it (on this loop, so not before this returns). */
        wf_timer_set(
            w->loop, &w->timer,
            wf_min(w->deadline - now, (uint64_t)WF_UPSTREAM_RECHECK_MS));
        upstream_wait_hand(u);
        return;
    }
    pthread_mutex_lock(&u->qlock);
    queued = w->queued;
    if (queued) {
        wf_list_del(&w->link);
        upstream_queued(u, -1);
        w->queued = false;
    }
    pthread_mutex_unlock(&u->qlock);
    if (!queued) {
        return; /* handed a server meanwhile: its task follows */
    }
    w->ready(w, NULL);
    free(w);
}

wf_upstream_wait_t *
wf_upstream_wait(wf_upstream_t *u, uint64_t key, wf_loop_t *loop,
                 wf_upstream_wait_cb ready, void *data)
{
    wf_upstream_wait_t *w;

    if (u->queue_max == 0) {
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return NULL;
    }
    w->u = u;
    w->key = key;
    w->loop = loop;
    w->ready = ready;
    w->data = data;
    w->task.handler = upstream_on_wait_task;
    wf_timer_init(&w->timer, upstream_on_wait_timer);
    pthread_mutex_lock(&u->qlock);
    if (u->queued >= u->queue_max) {
        pthread_mutex_unlock(&u->qlock);
        free(w);
        return NULL;
    }
    wf_list_add_tail(&u->queue, &w->link);
    upstream_queued(u, 1);
    w->queued = true;
    pthread_mutex_unlock(&u->qlock);
    w->deadline = wf_upstream_now_ms() + u->queue_ms;
    wf_timer_set(loop, &w->timer,
                 wf_min(u->queue_ms, (uint64_t)WF_UPSTREAM_RECHECK_MS));
    if (u->stats != NULL) {
        wf_upstream_count(&wf_upstream_cell(u->stats->cells)->queued);
    }
    /* A slot may have been given back between the pick and now. */
    upstream_wait_hand(u);
    return w;
}

void
wf_upstream_wait_cancel(wf_upstream_wait_t *w)
{
    wf_upstream_t *u = w->u;
    bool queued;

    w->ready = NULL;
    wf_timer_stop(w->loop, &w->timer);
    pthread_mutex_lock(&u->qlock);
    queued = w->queued;
    if (queued) {
        wf_list_del(&w->link);
        upstream_queued(u, -1);
        w->queued = false;
    }
    pthread_mutex_unlock(&u->qlock);
    if (queued) {
        free(w);
        return;
    }
    /* A server was handed over and the task is posted: the slot goes back
     * now, while u is alive; the task only frees w. */
    upstream_release(u, w->srv);
}

wf_upstream_t *
wf_upstream_find(wf_upstream_t *ups, size_t n, wf_str_t name)
{
    for (size_t i = 0; i < n; i++) {
        if (name.len > 0 && strlen(ups[i].name) == name.len
            && memcmp(ups[i].name, name.data, name.len) == 0) {
            return &ups[i];
        }
    }
    return NULL;
}
