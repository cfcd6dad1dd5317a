/* Reverse HTTP, the private side: dial tasks, their balancing across the
 * I/O threads, back-off and state logging.  See http/rhttp.h and
 * docs/internals/rhttp.md. */
#include "http/rhttp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/listen.h"
#include "core/log.h"
#include "http/h2_conn.h"

#define RHTTP_BACKOFF_MIN 250  /* ms after a first failure */
#define RHTTP_BACKOFF_MAX 5000 /* ms, the longest wait between dials */
#define RHTTP_SPACING_MIN 100  /* ms between two dials of one slot */
#define RHTTP_LIVED_OK    1000 /* ms: a tunnel that lived this long */
#define RHTTP_MAX_THREADS 256
#define RHTTP_ALPN        "\x02h2"

typedef struct rhttp_lsn rhttp_lsn_t;

/* A slot's life: one dialed connection at a time. */
typedef enum rhttp_slot_state {
    RHTTP_S_WAIT = 0, /* before a dial: timer or task pending */
    RHTTP_S_MOVING,   /* posted to another thread */
    RHTTP_S_CONNECT,  /* TCP connect in progress */
    RHTTP_S_TLS,      /* TLS handshake */
    RHTTP_S_H2,       /* the h2 connection waits for SETTINGS */
    RHTTP_S_LIVE,     /* reversed: serving */
    RHTTP_S_DEAD,     /* ended (its listener stopped) */
} rhttp_slot_state_t;

/* The listener's logged state (issue 13: each change logged once). */
typedef enum rhttp_state {
    RHTTP_STOPPED = 0,
    RHTTP_CONNECTING,
    RHTTP_ERROR,
    RHTTP_FULL,
} rhttp_state_t;

static const char *const rhttp_state_names[] = {
    [RHTTP_STOPPED] = "stopped",
    [RHTTP_CONNECTING] = "connecting",
    [RHTTP_ERROR] = "error",
    [RHTTP_FULL] = "full",
};

/* One wanted connection: its dial task and, once dialed, its connection.
 * Owned by the thread it is on (loop); it moves only between dials. */
typedef struct rhttp_slot {
    rhttp_lsn_t *l;
    wf_loop_t *loop;
    wf_list_t link; /* in the thread's slots, except while moving */
    wf_task_t task; /* wakes: decide, migrate or dial */
    wf_timer_t timer;
    wf_io_t io; /* while connecting; fd -1 otherwise */
    wf_xprt_t xp;
    rhttp_slot_state_t state;
    bool migrated; /* arrived by migration: no migration this wake-up */
    bool counted;  /* holds one of rhttp_nconns[loop->id] */
    uint64_t last_dial;
    uint64_t backoff;
    uint64_t live_since;
} rhttp_slot_t;

struct rhttp_lsn {
    wf_h1_server_t srv; /* no socket: its site and counts only */
    wf_list_t link;     /* in rhttp_all (under rhttp_lock) */
    wf_rhttp_conf_t rc; /* strings and tls owned */
    char *label;        /* "rhttp@NAME" */
    bool keep;          /* scratch while committing (router's loop) */
    _Atomic bool stopping;
    _Atomic int state;
    _Atomic unsigned nlive;
    _Atomic unsigned *live; /* per thread */
    unsigned nslots;
    rhttp_slot_t *slots;
};

/* Open reverse connections (and dials decided) per thread, across every
 * listener: HAProxy's nb_rhttp_conns. */
static _Atomic unsigned rhttp_nconns[RHTTP_MAX_THREADS];

static pthread_mutex_t rhttp_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_list_t rhttp_all = {&rhttp_all, &rhttp_all};

typedef struct rhttp_thread {
    bool ready;
    wf_list_t slots;
} rhttp_thread_t;

static __thread rhttp_thread_t rhttp_thr;

static void (*rhttp_prev_stop)(wf_loop_t *loop, bool graceful);
static void (*rhttp_prev_exit)(wf_loop_t *loop);

static void rhttp_slot_wake(rhttp_slot_t *s);

static wf_list_t *
rhttp_thread_slots(void)
{
    if (!rhttp_thr.ready) {
        wf_list_init(&rhttp_thr.slots);
        rhttp_thr.ready = true;
    }
    return &rhttp_thr.slots;
}

/* ---- state ------------------------------------------------------------ */

static void
rhttp_state_set(rhttp_lsn_t *l, rhttp_state_t st, const char *why)
{
    int old = atomic_exchange(&l->state, (int)st);

    if (old == (int)st) {
        return;
    }
    if (st == RHTTP_ERROR) {
        wf_log_warn(0, "%s: error: %s (retrying)", l->label, why);
        return;
    }
    wf_log_notice(0, "%s: %s (%u of %u connections to %s)", l->label,
                  rhttp_state_names[st], atomic_load(&l->nlive), l->nslots,
                  l->rc.connect);
}

static unsigned
rhttp_count_get(unsigned id)
{
    return atomic_load_explicit(&rhttp_nconns[id], memory_order_relaxed);
}

static void
rhttp_uncount(rhttp_slot_t *s)
{
    if (s->counted) {
        atomic_fetch_sub(&rhttp_nconns[s->loop->id], 1);
        s->counted = false;
    }
}

/* ---- slots ------------------------------------------------------------ */

static bool
rhttp_slot_ending(const rhttp_slot_t *s)
{
    return atomic_load(&s->l->stopping)
           || atomic_load(&s->loop->stop) != WF_LOOP_RUNNING;
}

/* Ends a slot that holds no h2 connection (on its thread). */
static void
rhttp_slot_kill(rhttp_slot_t *s)
{
    if (s->state == RHTTP_S_DEAD) {
        return;
    }
    wf_timer_stop(s->loop, &s->timer);
    wf_list_del(&s->task.link);
    if (s->io.fd >= 0) {
        wf_io_del(s->loop, &s->io);
        wf_xprt_close(&s->xp);
        close(s->io.fd);
        s->io.fd = -1;
        wf_listen_conn_release(s->loop);
    }
    rhttp_uncount(s);
    wf_list_del(&s->link);
    s->state = RHTTP_S_DEAD;
    wf_h1_server_unref(&s->l->srv);
}

/* Waits delay ms (0: this tick), then wakes on this thread. */
static void
rhttp_slot_wait(rhttp_slot_t *s, uint64_t delay)
{
    s->state = RHTTP_S_WAIT;
    if (delay == 0) {
        wf_task_schedule(s->loop, &s->task);
        return;
    }
    wf_timer_set(s->loop, &s->timer, delay);
}

/* The next dial: not before the back-off since the last one began. */
static void
rhttp_slot_retry(rhttp_slot_t *s)
{
    uint64_t spacing = wf_max(s->backoff, (uint64_t)RHTTP_SPACING_MIN);
    uint64_t at = s->last_dial + spacing;

    if (rhttp_slot_ending(s)) {
        rhttp_slot_kill(s);
        return;
    }
    rhttp_slot_wait(s, at > s->loop->now ? at - s->loop->now : 0);
}

static void
rhttp_backoff_grow(rhttp_slot_t *s)
{
    s->backoff = s->backoff == 0
                     ? RHTTP_BACKOFF_MIN
                     : wf_min(s->backoff * 2, (uint64_t)RHTTP_BACKOFF_MAX);
}

/* A dial failed before the connection was reversed. */
static void
rhttp_slot_fail(rhttp_slot_t *s, const char *what, int err)
{
    char why[256];

    if (s->io.fd >= 0) {
        wf_io_del(s->loop, &s->io);
        wf_xprt_close(&s->xp);
        close(s->io.fd);
        s->io.fd = -1;
        wf_listen_conn_release(s->loop);
    }
    rhttp_uncount(s);
    snprintf(why, sizeof(why), "%s %s%s%s", what, s->l->rc.connect,
             err != 0 ? ": " : "", err != 0 ? strerror(err) : "");
    if (atomic_load(&s->l->nlive) == 0) {
        rhttp_state_set(s->l, RHTTP_ERROR, why);
    }
    rhttp_backoff_grow(s);
    rhttp_slot_retry(s);
}

/* ---- the h2 connection ------------------------------------------------- */

static void
rhttp_on_h2_event(void *arg, wf_h2_event_t ev)
{
    rhttp_slot_t *s = arg;
    rhttp_lsn_t *l = s->l;

    if (ev == WF_H2_EV_SETTINGS) {
        unsigned n = atomic_fetch_add(&l->nlive, 1) + 1;

        s->state = RHTTP_S_LIVE;
        s->live_since = s->loop->now;
        atomic_fetch_add(&l->live[s->loop->id], 1);
        rhttp_state_set(l, n >= l->nslots ? RHTTP_FULL : RHTTP_CONNECTING,
                        NULL);
        return;
    }
    /* WF_H2_EV_CLOSE: the connection took its fd with it. */
    s->io.fd = -1;
    if (s->state != RHTTP_S_LIVE) {
        s->xp.ops = NULL; /* the connection released it */
        rhttp_slot_fail(s, "no SETTINGS from", 0);
        return;
    }
    atomic_fetch_sub(&l->live[s->loop->id], 1);
    atomic_fetch_sub(&l->nlive, 1);
    rhttp_uncount(s);
    if (s->loop->now - s->live_since >= RHTTP_LIVED_OK) {
        s->backoff = 0; /* an idle tunnel closed by the peer: at once */
    } else {
        rhttp_backoff_grow(s);
    }
    if (!rhttp_slot_ending(s) && atomic_load(&l->state) == RHTTP_FULL) {
        rhttp_state_set(l, RHTTP_CONNECTING, NULL);
    }
    rhttp_slot_retry(s);
}

/* The transport is up: the connection becomes an h2 server session that
 * sends the client preface (wf_h2_start_t separates the two). */
static void
rhttp_slot_h2(rhttp_slot_t *s)
{
    wf_sockaddr_t local;
    socklen_t len = sizeof(local);
    wf_h2_start_t st = {
        .fd = s->io.fd,
        .xp = s->xp,
        .loop = s->loop,
        .srv = &s->l->srv,
        .site = atomic_load(&s->l->srv.site),
        .remote = (const wf_sockaddr_t *)&s->l->rc.addr,
        .local = &local,
        .role = WF_H2_SERVER,
        .recv_preface = false,
        .send_preface = true,
        .on_event = rhttp_on_h2_event,
        .arg = s,
    };

    memset(&local, 0, sizeof(local));
    getsockname(s->io.fd, (struct sockaddr *)&local, &len);
    wf_io_del(s->loop, &s->io);
    s->state = RHTTP_S_H2;
    s->xp.ops = NULL; /* moved */
    s->xp.tls = NULL;
    if (wf_h2_conn_start(&st) != WF_OK && s->state == RHTTP_S_H2) {
        /* Failed before the connection existed: no event came. */
        s->io.fd = -1;
        rhttp_slot_fail(s, "out of memory for", 0);
    }
}

static bool
rhttp_alpn_is_h2(const wf_xprt_t *x)
{
    const unsigned char *p = NULL;
    unsigned n = 0;

    SSL_get0_alpn_selected(x->tls, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}

static void
rhttp_slot_handshake(rhttp_slot_t *s)
{
    char why[256];
    uint32_t events = 0;
    int rc = wf_tls_cli_handshake(&s->xp, &events, why, sizeof(why));

    if (rc == WF_AGAIN) {
        if (wf_io_mod(s->loop, &s->io, events) != WF_OK) {
            rhttp_slot_fail(s, "poll failed for", errno);
        }
        return;
    }
    if (rc != WF_OK) {
        wf_log_info("%s: TLS to %s: %s", s->l->label, s->l->rc.connect, why);
        rhttp_slot_fail(s, "TLS handshake failed with", 0);
        return;
    }
    if (!rhttp_alpn_is_h2(&s->xp)) {
        rhttp_slot_fail(s, "no ALPN h2 from", 0);
        return;
    }
    rhttp_slot_h2(s);
}

static void
rhttp_slot_connected(rhttp_slot_t *s)
{
    const wf_rhttp_conf_t *rc = &s->l->rc;

    if (rc->tls == NULL) {
        rhttp_slot_h2(s);
        return;
    }
    if (wf_tls_cli_open(&s->xp, rc->tls, s->io.fd, rc->sni,
                        (const struct sockaddr *)&rc->addr, rc->addrlen)
            != WF_OK
        || SSL_set_alpn_protos(s->xp.tls, (const unsigned char *)RHTTP_ALPN,
                               sizeof(RHTTP_ALPN) - 1)
               != 0) {
        rhttp_slot_fail(s, "TLS setup failed for", ENOMEM);
        return;
    }
    s->state = RHTTP_S_TLS;
    rhttp_slot_handshake(s);
}

static void
rhttp_on_io(wf_io_t *io, uint32_t events)
{
    rhttp_slot_t *s = wf_container_of(io, rhttp_slot_t, io);
    int err = 0;
    socklen_t len = sizeof(err);

    wf_unused(events);
    if (rhttp_slot_ending(s)) {
        rhttp_slot_kill(s);
        return;
    }
    if (s->state == RHTTP_S_TLS) {
        rhttp_slot_handshake(s);
        return;
    }
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err != 0) {
        rhttp_slot_fail(s, "connect to", err);
        return;
    }
    rhttp_slot_connected(s);
}

static void
rhttp_slot_dial(rhttp_slot_t *s)
{
    const wf_rhttp_conf_t *rc = &s->l->rc;
    int one = 1;
    int fd = socket(rc->addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    s->last_dial = s->loop->now;
    if (fd < 0) {
        rhttp_slot_fail(s, "socket() failed for", errno);
        return;
    }
    wf_listen_conn_add(s->loop); /* wf_listen_conn_release() on close */
    s->io.fd = fd;
    s->io.handler = rhttp_on_io;
    s->state = RHTTP_S_CONNECT;
    if (rc->addr.ss_family != AF_UNIX) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (connect(fd, (const struct sockaddr *)&rc->addr, rc->addrlen) == 0) {
        if (wf_io_add(s->loop, &s->io, EPOLLIN) != WF_OK) {
            rhttp_slot_fail(s, "poll failed for", errno);
            return;
        }
        rhttp_slot_connected(s);
        return;
    }
    if (errno != EINPROGRESS) {
        rhttp_slot_fail(s, "connect to", errno);
        return;
    }
    if (wf_io_add(s->loop, &s->io, EPOLLOUT) != WF_OK) {
        rhttp_slot_fail(s, "poll failed for", errno);
    }
}

/* ---- balancing -------------------------------------------------------- */

/* The thread with the fewest reverse connections; ties keep self. */
static unsigned
rhttp_least_loaded(unsigned self)
{
    unsigned n = wf_min(wf_loops_count(), (unsigned)RHTTP_MAX_THREADS);
    unsigned best = self;
    unsigned least = rhttp_count_get(self);

    for (unsigned i = 0; i < n; i++) {
        unsigned c = rhttp_count_get(i);

        if (c < least) {
            least = c;
            best = i;
        }
    }
    return best;
}

/* Before each dial (HAProxy's rhttp): a thread with fewer reverse
 * connections gets the dial; the slot migrates there, counted there at
 * once so that the next decision sees it.  A slot that arrived by
 * migration dials without looking again. */
static void
rhttp_slot_wake(rhttp_slot_t *s)
{
    unsigned self = s->loop->id;
    unsigned to;

    if (rhttp_slot_ending(s)) {
        rhttp_slot_kill(s);
        return;
    }
    if (!s->migrated) {
        to = rhttp_least_loaded(self);
        atomic_fetch_add(&rhttp_nconns[to], 1);
        s->counted = true;
        if (to != self) {
            wf_list_del(&s->link);
            s->state = RHTTP_S_MOVING;
            s->migrated = true;
            s->loop = wf_loop_get(to);
            wf_task_post(s->loop, &s->task);
            return;
        }
    }
    s->migrated = false;
    rhttp_slot_dial(s);
}

static void
rhttp_on_task(wf_task_t *task)
{
    rhttp_slot_t *s = wf_container_of(task, rhttp_slot_t, task);

    if (s->state == RHTTP_S_MOVING) {
        wf_list_add_tail(rhttp_thread_slots(), &s->link);
        s->state = RHTTP_S_WAIT;
    }
    rhttp_slot_wake(s);
}

static void
rhttp_on_timer(wf_timer_t *t)
{
    rhttp_slot_wake(wf_container_of(t, rhttp_slot_t, timer));
}

/* ---- listeners -------------------------------------------------------- */

void
wf_rhttp_conf_fini(wf_rhttp_conf_t *rc)
{
    wf_tls_cli_destroy(rc->tls);
    rc->tls = NULL;
    free(rc->json);
    rc->json = NULL;
}

static void
rhttp_lsn_release(wf_h1_server_t *srv)
{
    rhttp_lsn_t *l = wf_container_of(srv, rhttp_lsn_t, srv);

    wf_rhttp_conf_fini(&l->rc);
    free((char *)l->rc.name);
    free((char *)l->rc.connect);
    free((char *)l->rc.sni);
    free(l->label);
    free(l->live);
    free(l->slots);
    free(l);
}

static char *
rhttp_strdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* A copy of rc that owns its strings and takes rc's TLS context. */
static int
rhttp_lsn_conf(rhttp_lsn_t *l, wf_rhttp_conf_t *rc)
{
    size_t n = strlen(rc->name) + WF_RHTTP_PREFIX_LEN + 1;

    l->rc = *rc;
    l->rc.name = rhttp_strdup(rc->name);
    l->rc.connect = rhttp_strdup(rc->connect);
    l->rc.sni = rhttp_strdup(rc->sni);
    l->rc.json = rhttp_strdup(rc->json);
    l->rc.tls = NULL;
    l->label = malloc(n);
    if (l->rc.name == NULL || l->rc.connect == NULL || l->rc.json == NULL
        || (rc->sni != NULL && l->rc.sni == NULL) || l->label == NULL) {
        return WF_ERROR;
    }
    snprintf(l->label, n, "%s%s", WF_RHTTP_PREFIX, rc->name);
    l->rc.tls = rc->tls;
    rc->tls = NULL;
    return WF_OK;
}

static rhttp_lsn_t *
rhttp_lsn_new(wf_rhttp_conf_t *rc, const wf_h1_site_t *site)
{
    rhttp_lsn_t *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        return NULL;
    }
    wf_h1_server_init(&l->srv, site, rhttp_lsn_release);
    l->srv.listener.io.fd = -1;
    l->nslots = rc->connections;
    l->slots = calloc(l->nslots, sizeof(*l->slots));
    l->live = calloc(wf_loops_count(), sizeof(*l->live));
    if (l->slots == NULL || l->live == NULL || rhttp_lsn_conf(l, rc) != WF_OK) {
        wf_h1_server_unref(&l->srv);
        return NULL;
    }
    l->srv.listener.name = l->label;
    atomic_store(&l->state, RHTTP_STOPPED);
    return l;
}

/* Every slot starts on the first loop, which decides for each in turn:
 * the decisions are sequential, so the first round is balanced. */
static void
rhttp_lsn_start(rhttp_lsn_t *l)
{
    wf_loop_t *first = wf_loop_get(0);

    rhttp_state_set(l, RHTTP_CONNECTING, NULL);
    for (unsigned i = 0; i < l->nslots; i++) {
        rhttp_slot_t *s = &l->slots[i];

        s->l = l;
        s->loop = first;
        s->io.fd = -1;
        s->task.handler = rhttp_on_task;
        s->state = RHTTP_S_MOVING;
        wf_list_init(&s->link);
        wf_list_init(&s->task.link);
        wf_timer_init(&s->timer, rhttp_on_timer);
        atomic_fetch_add(&l->srv.refs, 1); /* the slot's */
        wf_task_post(first, &s->task);
    }
}

static void
rhttp_lsn_stop(rhttp_lsn_t *l)
{
    atomic_store(&l->stopping, true);
    wf_h1_server_remove(&l->srv); /* live ones: GOAWAY at the sweep */
    rhttp_state_set(l, RHTTP_STOPPED, NULL);
    wf_h1_server_unref(&l->srv);
}

void
wf_rhttp_commit_begin(void)
{
    pthread_mutex_lock(&rhttp_lock);
    wf_list_for_each(e, &rhttp_all)
    {
        wf_container_of(e, rhttp_lsn_t, link)->keep = false;
    }
    pthread_mutex_unlock(&rhttp_lock);
}

void
wf_rhttp_commit_one(wf_rhttp_conf_t *rc, const wf_h1_site_t *site)
{
    rhttp_lsn_t *l;

    pthread_mutex_lock(&rhttp_lock);
    wf_list_for_each(e, &rhttp_all)
    {
        l = wf_container_of(e, rhttp_lsn_t, link);
        if (!l->keep && strcmp(l->rc.name, rc->name) == 0
            && strcmp(l->rc.json, rc->json) == 0) {
            l->keep = true;
            pthread_mutex_unlock(&rhttp_lock);
            wf_h1_server_set_site(&l->srv, site);
            return;
        }
    }
    pthread_mutex_unlock(&rhttp_lock);
    l = rhttp_lsn_new(rc, site);
    if (l == NULL) {
        wf_log_error(ENOMEM, "%s%s: not started", WF_RHTTP_PREFIX, rc->name);
        return;
    }
    l->keep = true;
    pthread_mutex_lock(&rhttp_lock);
    wf_list_add_tail(&rhttp_all, &l->link);
    pthread_mutex_unlock(&rhttp_lock);
    rhttp_lsn_start(l);
}

void
wf_rhttp_commit_end(void)
{
    wf_list_t gone;

    wf_list_init(&gone);
    pthread_mutex_lock(&rhttp_lock);
    for (wf_list_t *e = rhttp_all.next, *next; e != &rhttp_all; e = next) {
        next = e->next;
        if (!wf_container_of(e, rhttp_lsn_t, link)->keep) {
            wf_list_del(e);
            wf_list_add_tail(&gone, e);
        }
    }
    pthread_mutex_unlock(&rhttp_lock);
    while (!wf_list_is_empty(&gone)) {
        wf_list_t *e = gone.next;

        wf_list_del(e);
        rhttp_lsn_stop(wf_container_of(e, rhttp_lsn_t, link));
    }
}

/* Ends this thread's slots that hold no h2 connection, of stopped
 * listeners (all: the loop stops). */
static void
rhttp_thread_end(bool all)
{
    wf_list_t *head;

    if (!rhttp_thr.ready) {
        return;
    }
    head = &rhttp_thr.slots;
    for (wf_list_t *e = head->next, *next; e != head; e = next) {
        rhttp_slot_t *s = wf_container_of(e, rhttp_slot_t, link);

        next = e->next;
        if ((all || atomic_load(&s->l->stopping)) && s->state != RHTTP_S_H2
            && s->state != RHTTP_S_LIVE) {
            rhttp_slot_kill(s);
        }
    }
}

void
wf_rhttp_sweep(void)
{
    /* h1's sweep skips h2's on a thread that never had an h1 connection,
     * as a thread with only tunnels is; twice is harmless. */
    wf_h2_sweep_removed();
    rhttp_thread_end(false);
}

static void
rhttp_on_stop(wf_loop_t *loop, bool graceful)
{
    if (rhttp_prev_stop != NULL) {
        rhttp_prev_stop(loop, graceful);
    }
    rhttp_thread_end(true);
}

static void
rhttp_on_exit(wf_loop_t *loop)
{
    rhttp_thread_end(true);
    if (rhttp_prev_exit != NULL) {
        rhttp_prev_exit(loop);
    }
    rhttp_thr.ready = false;
}

void
wf_rhttp_init(void)
{
    rhttp_prev_stop = wf_loop_on_stop;
    rhttp_prev_exit = wf_loop_on_exit;
    wf_loop_on_stop = rhttp_on_stop;
    wf_loop_on_exit = rhttp_on_exit;
}

/* ---- status ----------------------------------------------------------- */

static json_t *
rhttp_lsn_status(rhttp_lsn_t *l, unsigned nthreads)
{
    json_t *threads = json_array();

    for (unsigned i = 0; i < nthreads; i++) {
        json_array_append_new(threads, json_integer(atomic_load(&l->live[i])));
    }
    return json_pack("{s:s,s:s,s:I,s:I,s:o}", "state",
                     rhttp_state_names[atomic_load(&l->state)], "connect",
                     l->rc.connect, "connections", (json_int_t)l->nslots,
                     "established", (json_int_t)atomic_load(&l->nlive),
                     "threads", threads);
}

json_t *
wf_rhttp_status_json(void)
{
    unsigned n = wf_min(wf_loops_count(), (unsigned)RHTTP_MAX_THREADS);
    json_t *lsns = json_object();
    json_t *threads = json_array();

    pthread_mutex_lock(&rhttp_lock);
    wf_list_for_each(e, &rhttp_all)
    {
        rhttp_lsn_t *l = wf_container_of(e, rhttp_lsn_t, link);

        json_object_set_new(lsns, l->rc.name, rhttp_lsn_status(l, n));
    }
    pthread_mutex_unlock(&rhttp_lock);
    for (unsigned i = 0; i < n; i++) {
        json_array_append_new(threads, json_integer(rhttp_count_get(i)));
    }
    return json_pack("{s:o,s:o}", "listeners", lsns, "threads", threads);
}
