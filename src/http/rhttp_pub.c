/* Reverse HTTP, the public side: attaching tunnels, their names and
 * bounds, and the pick of a request's tunnel.  See http/rhttp_pub.h and
 * docs/internals/rhttp.md. */
#include "http/rhttp_pub.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/listen.h"
#include "core/log.h"
#include "http/proxy_h2.h"
#include "http/tpl.h"
#include "http/upstream_peer.h"
#include "net/tls.h"

#define RPUB_RBUF        16384 /* the peer's first bytes, at most */
#define RPUB_PREFACE_MS  10000 /* for the client preface to come */
#define RPUB_KEY_MAX     (sizeof(struct sockaddr_storage) - 2)
#define RPUB_THREADS_MAX 256

/* A name tunnels attach under, per upstream.  Never freed (requests in
 * flight point at srv); names are bounded by the tunnels' bounds. */
typedef struct rpub_name {
    struct rpub_name *next;
    wf_upstream_server_t srv; /* addr: AF_UNSPEC + "UPSTREAM\0NAME" */
    char label[2 * WF_RHTTP_NAME_MAX + 2]; /* "UPSTREAM/NAME" */
    _Atomic unsigned total;
    _Atomic unsigned threads[RPUB_THREADS_MAX];
} rpub_name_t;

/* An accepted connection on its way to be a tunnel, then the tunnel. */
typedef struct rpub_tun {
    wf_io_t io;
    wf_xprt_t xp;
    wf_loop_t *loop;
    wf_timer_t timer;
    rpub_name_t *name; /* reserved; NULL before */
    bool registered;   /* io is in the loop's epoll */
    bool placed;       /* counted in name->threads[loop->id] */
    wf_task_t move;    /* runs on the thread it moves to */
    size_t nbuf;
    char buf[RPUB_RBUF];
} rpub_tun_t;

static pthread_mutex_t rpub_lock = PTHREAD_MUTEX_INITIALIZER;
static rpub_name_t *rpub_names; /* under rpub_lock */
static _Atomic unsigned rpub_total;

/* ---- names ------------------------------------------------------------ */

static size_t
rpub_key(char *key, const char *upstream, const char *name, size_t nlen)
{
    size_t ulen = strlen(upstream);

    memcpy(key, upstream, ulen);
    key[ulen] = '\0';
    memcpy(key + ulen + 1, name, nlen);
    return ulen + 1 + nlen;
}

/* The entry of upstream/name; created when create is set.  Under the
 * lock. */
static rpub_name_t *
rpub_name_find(const char *upstream, const char *name, size_t nlen, bool create)
{
    char key[RPUB_KEY_MAX];
    size_t klen;
    rpub_name_t *n;

    if (strlen(upstream) > WF_RHTTP_NAME_MAX || nlen > WF_RHTTP_NAME_MAX) {
        return NULL;
    }
    klen = rpub_key(key, upstream, name, nlen);
    for (n = rpub_names; n != NULL; n = n->next) {
        if ((size_t)n->srv.addrlen == klen + 2
            && memcmp((char *)&n->srv.addr + 2, key, klen) == 0) {
            return n;
        }
    }
    if (!create || (n = calloc(1, sizeof(*n))) == NULL) {
        return NULL;
    }
    n->srv.addr.ss_family = AF_UNSPEC; /* never dialed (proxy_h2.c) */
    memcpy((char *)&n->srv.addr + 2, key, klen);
    n->srv.addrlen = (socklen_t)(klen + 2);
    snprintf(n->label, sizeof(n->label), "%s/%.*s", upstream, (int)nlen, name);
    n->srv.name = n->label;
    n->srv.weight = 1;
    n->srv.peer = wf_upstream_peer_get((const struct sockaddr *)&n->srv.addr,
                                       n->srv.addrlen);
    if (n->srv.peer == NULL) {
        free(n);
        return NULL;
    }
    n->next = rpub_names;
    rpub_names = n;
    return n;
}

/* Counts a tunnel under name within a's bounds.  NULL: refused. */
static rpub_name_t *
rpub_reserve(const wf_rhttp_attach_t *a, const char *name, size_t nlen,
             const char **why)
{
    rpub_name_t *n;

    pthread_mutex_lock(&rpub_lock);
    n = rpub_name_find(a->upstream, name, nlen, true);
    if (n == NULL) {
        *why = "out of memory";
    } else if (atomic_load(&n->total) >= a->max_per_name) {
        *why = "as many tunnels under that name as max_per_name";
        n = NULL;
    } else if (atomic_load(&rpub_total) >= a->max_total) {
        *why = "as many tunnels as max_total";
        n = NULL;
    } else {
        atomic_fetch_add(&n->total, 1);
        atomic_fetch_add(&rpub_total, 1);
    }
    pthread_mutex_unlock(&rpub_lock);
    return n;
}

static void
rpub_unreserve(rpub_name_t *n)
{
    atomic_fetch_sub(&n->total, 1);
    atomic_fetch_sub(&rpub_total, 1);
}

/* ---- attaching -------------------------------------------------------- */

/* Ends a connection that did not become a tunnel. */
static void
rpub_refuse(rpub_tun_t *t)
{
    if (t->registered) {
        wf_io_del(t->loop, &t->io);
    }
    wf_timer_stop(t->loop, &t->timer);
    wf_xprt_close(&t->xp);
    close(t->io.fd);
    if (t->placed) {
        atomic_fetch_sub(&t->name->threads[t->loop->id], 1);
    }
    if (t->name != NULL) {
        rpub_unreserve(t->name);
    }
    wf_listen_conn_release(t->loop);
    free(t);
}

static void
rpub_on_close(wf_proxy_h2_conn_t *c, void *data)
{
    rpub_tun_t *t = data;

    wf_unused(c);
    atomic_fetch_sub(&t->name->threads[t->loop->id], 1);
    rpub_unreserve(t->name);
    wf_log_info("reverse tunnel \"%s\" detached", t->name->label);
    wf_listen_conn_release(t->loop);
    free(t);
}

/* The private side's preface is in: the rest goes to a client session
 * that sends no magic, in this thread's pool under the name. */
static void
rpub_tunnel(rpub_tun_t *t)
{
    wf_proxy_h2_conn_opts_t o = {
        .on_close = rpub_on_close,
        .data = t,
        .no_preface = true,
        .idle_max = UINT32_MAX, /* every tunnel stays, idle or not */
    };
    wf_proxy_h2_key_t key;
    wf_proxy_h2_conn_t *c;

    if (memcmp(t->buf, WF_H2_PREFACE, WF_H2_PREFACE_LEN) != 0) {
        rpub_refuse(t);
        return;
    }
    wf_timer_stop(t->loop, &t->timer);
    memset(&key, 0, sizeof(key));
    memcpy(&key.addr, &t->name->srv.addr, t->name->srv.addrlen);
    key.addrlen = t->name->srv.addrlen;
    c = wf_proxy_h2_conn_create(t->loop, t->io.fd, &t->xp, t->registered,
                                t->buf + WF_H2_PREFACE_LEN,
                                t->nbuf - WF_H2_PREFACE_LEN, &o);
    if (c == NULL) {
        rpub_refuse(t);
        return;
    }
    wf_log_info("reverse tunnel \"%s\" attached", t->name->label);
    wf_proxy_h2_pool_add(c, &key); /* t is on_close's from now on */
}

static void
rpub_read(rpub_tun_t *t)
{
    while (t->nbuf < WF_H2_PREFACE_LEN) {
        ssize_t n = wf_xprt_recv(&t->xp, t->io.fd, t->buf + t->nbuf,
                                 sizeof(t->buf) - t->nbuf);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            rpub_refuse(t);
            return;
        }
        if (n < 0) {
            return;
        }
        t->nbuf += (size_t)n;
    }
    rpub_tunnel(t);
}

static void
rpub_on_io(wf_io_t *io, uint32_t events)
{
    wf_unused(events);
    rpub_read(wf_container_of(io, rpub_tun_t, io));
}

static void
rpub_on_timer(wf_timer_t *tm)
{
    rpub_refuse(wf_container_of(tm, rpub_tun_t, timer));
}

/* The tunnel's name; *len 0 when it renders empty or too long. */
static void
rpub_name_render(const wf_h2_start_t *s, const wf_rhttp_attach_t *a,
                 const wf_xprt_t *xp, char *out, size_t *len)
{
    wf_route_req_t rq = {
        .remote = s->remote,
        .local = s->local,
        .tls = wf_xprt_is_tls(xp),
        .xp = xp,
    };
    size_t n = wf_tpl_render(a->name, &rq, out, WF_RHTTP_NAME_MAX);

    *len = n <= WF_RHTTP_NAME_MAX ? n : 0;
}

/* A verified client certificate, unless "insecure". */
static bool
rpub_client_ok(const wf_rhttp_attach_t *a, const wf_xprt_t *xp)
{
    wf_str_t v;

    return a->insecure
           || (wf_tls_var_get(xp, WF_TLS_VAR_CLIENT_VERIFIED, &v)
               && wf_str_eq(v, wf_string("true")));
}

/* On the tunnel's thread: wait for the preface, or go on with it. */
static void
rpub_start(rpub_tun_t *t)
{
    if (t->nbuf >= WF_H2_PREFACE_LEN) {
        rpub_tunnel(t);
        return;
    }
    if (wf_io_add(t->loop, &t->io, EPOLLIN) != WF_OK) {
        rpub_refuse(t);
        return;
    }
    t->registered = true;
    wf_timer_set(t->loop, &t->timer, RPUB_PREFACE_MS);
    rpub_read(t); /* bytes the TLS transport holds already */
}

static void
rpub_on_move(wf_task_t *task)
{
    rpub_tun_t *t = wf_container_of(task, rpub_tun_t, move);

    wf_listen_conn_add(t->loop);
    rpub_start(t);
}

/* Requests only find the tunnels of their own thread: each new tunnel
 * goes to the thread with the fewest of its name (before its session
 * exists, only the fd and transport move), so that a name with as many
 * tunnels as threads has one on each. */
static void
rpub_place(rpub_tun_t *t)
{
    unsigned n = wf_min(wf_loops_count(), (unsigned)RPUB_THREADS_MAX);
    unsigned best = t->loop->id;
    unsigned least;

    pthread_mutex_lock(&rpub_lock);
    least = atomic_load(&t->name->threads[best]);
    for (unsigned i = 0; i < n; i++) {
        unsigned c = atomic_load(&t->name->threads[i]);

        if (c < least) {
            least = c;
            best = i;
        }
    }
    atomic_fetch_add(&t->name->threads[best], 1);
    pthread_mutex_unlock(&rpub_lock);
    t->placed = true;
    if (best == t->loop->id) {
        rpub_start(t);
        return;
    }
    wf_listen_conn_release(t->loop);
    t->loop = wf_loop_get(best);
    t->move.handler = rpub_on_move;
    wf_list_init(&t->move.link);
    wf_task_post(t->loop, &t->move);
}

void
wf_rhttp_pub_attach(const wf_h2_start_t *s)
{
    const wf_rhttp_attach_t *a = s->site->attach;
    rpub_tun_t *t = calloc(1, sizeof(*t));
    const char *why = "out of memory";
    char name[WF_RHTTP_NAME_MAX];
    size_t nlen = 0;

    if (t == NULL) {
        wf_xprt_t xp = s->xp;

        wf_xprt_close(&xp);
        close(s->fd);
        wf_listen_conn_release(s->loop);
        return;
    }
    t->io.fd = s->fd;
    t->io.handler = rpub_on_io;
    t->xp = s->xp;
    t->loop = s->loop;
    wf_timer_init(&t->timer, rpub_on_timer);
    if (!rpub_client_ok(a, &t->xp)) {
        why = "no verified client certificate";
    } else if (rpub_name_render(s, a, &t->xp, name, &nlen), nlen == 0) {
        why = "its name renders empty or too long";
    } else if (s->npre > sizeof(t->buf)) {
        why = "too many bytes before the tunnel";
    } else if ((t->name = rpub_reserve(a, name, nlen, &why)) != NULL) {
        memcpy(t->buf, s->pre, s->npre);
        t->nbuf = s->npre;
        rpub_place(t);
        return;
    }
    wf_log_info("reverse tunnel \"%.*s\" refused: %s", (int)nlen, name, why);
    rpub_refuse(t);
}

/* ---- requests --------------------------------------------------------- */

wf_upstream_server_t *
wf_rhttp_pub_pick(wf_upstream_t *u, const wf_route_req_t *rq)
{
    char name[WF_RHTTP_NAME_MAX + 1];
    size_t n = wf_tpl_render(u->rhttp_select, rq, name, sizeof(name));
    wf_loop_t *loop = wf_loop_current();
    rpub_name_t *e = NULL;

    if (n == 0 || n > WF_RHTTP_NAME_MAX || u->name == NULL || loop == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&rpub_lock);
    e = rpub_name_find(u->name, name, n, false);
    pthread_mutex_unlock(&rpub_lock);
    if (e == NULL || atomic_load(&e->threads[loop->id]) == 0) {
        return NULL; /* no tunnel of that name (on this thread) */
    }
    atomic_fetch_add(&e->srv.peer->active, 1); /* wf_upstream_done() */
    return &e->srv;
}

json_t *
wf_rhttp_pub_status_json(void)
{
    unsigned nt = wf_min(wf_loops_count(), (unsigned)RPUB_THREADS_MAX);
    json_t *o = json_object();

    pthread_mutex_lock(&rpub_lock);
    for (rpub_name_t *n = rpub_names; n != NULL; n = n->next) {
        json_t *threads = json_array();

        for (unsigned i = 0; i < nt; i++) {
            json_array_append_new(threads,
                                  json_integer(atomic_load(&n->threads[i])));
        }
        json_object_set_new(o, n->label,
                            json_pack("{s:I,s:o}", "tunnels",
                                      (json_int_t)atomic_load(&n->total),
                                      "threads", threads));
    }
    pthread_mutex_unlock(&rpub_lock);
    return o;
}
