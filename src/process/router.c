/* The router's configuration life cycle; see router.h and
 * docs/internals/reconfiguration.md. */
#include "process/router.h"

#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/conf.h"
#include "core/common.h"
#include "core/list.h"
#include "core/listen.h"
#include "core/log.h"
#include "core/tpool.h"
#include "http/access_log.h"
#include "http/h1_conn.h"
#include "http/rhttp.h"
#include "http/rhttp_pub.h"
#include "http/upstream_dns.h"
#include "http/upstream_health.h"
#include "http/upstream_peer.h"
#include "process/app_mgr.h"

#define ROUTER_FD_KEEP (-2) /* the listener exists already */
#define ROUTER_FD_NONE (-3) /* an "rhttp@" listener: no socket */
/* The stream of a configuration the router applies again by itself
 * (upstream host names resolved to new addresses): nobody waits for its
 * answer. */
#define ROUTER_STREAM_SELF UINT64_MAX

/* A compiled configuration, counted by the router (while current) and by
 * every connection that uses it. */
typedef struct router_snap {
    wf_h1_snap_t h1;
    wf_conf_t *conf;
    wf_h1_site_t *sites; /* one per conf->listeners[] */
} router_snap_t;

/* A listening socket; it stays while configurations keep its address. */
typedef struct router_listener {
    wf_h1_server_t srv;
    wf_list_t link; /* in rt->listeners, then in rt->retiring */
    bool keep;      /* scratch while committing */
    char *name;     /* owned */
} router_listener_t;

/* A configuration waiting to be applied. */
typedef struct router_job {
    wf_list_t link;
    uint64_t stream;
    size_t len;
    char text[];
} router_job_t;

/* A configuration being compiled on a helper thread. */
typedef struct router_compile {
    wf_job_t job;
    wf_router_t *rt;
    router_job_t *rj; /* owned */
    wf_conf_t *conf;  /* the result; NULL: err says why */
    wf_conf_error_t err;
} router_compile_t;

struct wf_router {
    const wf_router_ops_t *ops;
    wf_loop_t *loop;
    wf_list_t listeners; /* of router_listener_t */
    router_snap_t *current;
    wf_list_t queue; /* of router_job_t */

    /* The configuration being applied. */
    bool busy;
    router_compile_t *compiling; /* on a helper thread; NULL when not */
    uint64_t stream;
    uint32_t generation; /* tells stale socket answers apart */
    router_snap_t *next;
    int *fds;         /* per listener of next: fd, -1 or ROUTER_FD_KEEP */
    unsigned pending; /* socket answers awaited */
    char error[700];  /* first failure; "" when none */
    wf_sync_t sync;
    router_snap_t *retire; /* old snapshot, dropped after the sync */
    wf_list_t retiring;    /* removed listeners, dropped after the sync */
};

static void router_next_job(wf_router_t *rt);
static void router_on_visit(wf_sync_t *sync);

static void
router_snap_release(wf_h1_snap_t *h1)
{
    router_snap_t *snap = wf_container_of(h1, router_snap_t, h1);

    wf_app_mgr_release(snap->conf->apps, snap->conf->napps);
    wf_conf_destroy(snap->conf);
    free(snap->sites);
    free(snap);
}

static router_snap_t *
router_snap_create(wf_conf_t *conf)
{
    router_snap_t *snap = calloc(1, sizeof(*snap));

    if (snap == NULL) {
        return NULL;
    }
    snap->sites = calloc(conf->nlisteners + 1, sizeof(*snap->sites));
    if (snap->sites == NULL) {
        free(snap);
        return NULL;
    }
    snap->conf = conf;
    atomic_store(&snap->h1.refs, 1); /* the router's */
    snap->h1.release = router_snap_release;
    for (size_t i = 0; i < conf->nlisteners; i++) {
        snap->sites[i].root = conf->listeners[i].pass;
        snap->sites[i].hc = &conf->http;
        snap->sites[i].snap = &snap->h1;
        snap->sites[i].tls = conf->listeners[i].tls;
        snap->sites[i].h2c = conf->listeners[i].h2c;
        snap->sites[i].attach = conf->listeners[i].attach;
    }
    return snap;
}

static void
router_listener_release(wf_h1_server_t *srv)
{
    router_listener_t *l = wf_container_of(srv, router_listener_t, srv);

    free(l->name);
    free(l);
}

static router_listener_t *
router_listener_find(wf_router_t *rt, const wf_conf_listener_t *cl)
{
    wf_list_for_each(l, &rt->listeners)
    {
        router_listener_t *rl = wf_container_of(l, router_listener_t, link);

        if (wf_sockaddr_eq((const struct sockaddr *)&rl->srv.listener.addr,
                           (const struct sockaddr *)&cl->addr)) {
            return rl;
        }
    }
    return NULL;
}

wf_router_t *
wf_router_create(const wf_router_ops_t *ops, wf_loop_t *loop)
{
    wf_router_t *rt = calloc(1, sizeof(*rt));

    if (rt == NULL) {
        return NULL;
    }
    rt->ops = ops;
    rt->loop = loop;
    wf_list_init(&rt->listeners);
    wf_list_init(&rt->queue);
    wf_list_init(&rt->retiring);
    rt->sync.visit = router_on_visit;
    return rt;
}

void
wf_router_apply(wf_router_t *rt, const char *text, size_t len, uint64_t stream)
{
    router_job_t *job = malloc(sizeof(*job) + len);

    if (job == NULL) {
        rt->ops->applied(rt, stream, "Out of memory.");
        return;
    }
    job->stream = stream;
    job->len = len;
    memcpy(job->text, text, len);
    wf_list_add_tail(&rt->queue, &job->link);
    if (!rt->busy) {
        router_next_job(rt);
    }
}

/* Ends the configuration being applied; error == NULL: it was applied. */
static void
router_finish(wf_router_t *rt, const char *error)
{
    free(rt->fds);
    rt->fds = NULL;
    rt->next = NULL;
    rt->busy = false;
    if (rt->stream != ROUTER_STREAM_SELF) {
        rt->ops->applied(rt, rt->stream, error);
    }
    router_next_job(rt);
}

static void
router_abort(wf_router_t *rt)
{
    size_t n = rt->next->conf->nlisteners;

    for (size_t i = 0; i < n; i++) {
        if (rt->fds[i] >= 0) {
            /* main opened it for this configuration only: its copy goes
             * too, or a refused configuration would leave it open. */
            close(rt->fds[i]);
            rt->ops->socket_release(rt, rt->next->conf->listeners[i].name);
        }
    }
    wf_h1_snap_unref(&rt->next->h1);
    wf_log_error(0, "reconfiguration failed: %s", rt->error);
    router_finish(rt, rt->error);
}

/* On each I/O thread, once the new listeners are committed. */
static void
router_on_visit(wf_sync_t *sync)
{
    wf_unused(sync);
    wf_h1_sweep_removed();
    wf_rhttp_sweep();
}

static void
router_on_synced(wf_sync_t *sync)
{
    wf_router_t *rt = wf_container_of(sync, wf_router_t, sync);

    /* No thread can still be loading the old sites: drop them. */
    if (rt->retire != NULL) {
        wf_h1_snap_unref(&rt->retire->h1);
        rt->retire = NULL;
    }
    while (!wf_list_is_empty(&rt->retiring)) {
        wf_list_t *l = rt->retiring.next;

        wf_list_del(l);
        wf_h1_server_unref(&wf_container_of(l, router_listener_t, link)->srv);
    }
    router_finish(rt, NULL);
}

static router_listener_t *
router_listener_add(wf_router_t *rt, const wf_conf_listener_t *cl,
                    const wf_h1_site_t *site, int fd)
{
    router_listener_t *rl = calloc(1, sizeof(*rl));

    if (rl == NULL || (rl->name = strdup(cl->name)) == NULL) {
        free(rl);
        close(fd);
        return NULL;
    }
    memcpy(&rl->srv.listener.addr, &cl->addr, cl->addrlen);
    rl->srv.listener.addrlen = cl->addrlen;
    rl->srv.listener.name = rl->name;
    rl->srv.listener.io.fd = fd;
    wf_h1_server_init(&rl->srv, site, router_listener_release);
    if (wf_listener_start(&rl->srv.listener) != WF_OK) {
        wf_listener_close(&rl->srv.listener);
        wf_h1_server_unref(&rl->srv);
        return NULL;
    }
    wf_list_add_tail(&rt->listeners, &rl->link);
    return rl;
}

/* Host names of the current snapshot resolve to new addresses: the
 * same configuration is compiled again (router_start_job() takes the
 * current one's text then, so a newer one applied meanwhile wins). */
static void
router_on_names(void *arg)
{
    wf_router_t *rt = arg;
    router_job_t *job = malloc(sizeof(*job));

    if (job == NULL) {
        return;
    }
    job->stream = ROUTER_STREAM_SELF;
    job->len = 0;
    wf_list_add_tail(&rt->queue, &job->link);
    if (!rt->busy) {
        router_next_job(rt);
    }
}

/* Every socket is there: switch the listeners to the new snapshot. */
static void
router_commit(wf_router_t *rt)
{
    router_snap_t *snap = rt->next;
    wf_conf_t *conf = snap->conf;

    wf_list_for_each(l, &rt->listeners)
    {
        wf_container_of(l, router_listener_t, link)->keep = false;
    }
    wf_rhttp_commit_begin();
    for (size_t i = 0; i < conf->nlisteners; i++) {
        const wf_conf_listener_t *cl = &conf->listeners[i];
        router_listener_t *rl;

        if (cl->reverse != NULL) {
            wf_rhttp_commit_one(cl->reverse, &snap->sites[i]);
            continue;
        }
        if (rt->fds[i] == ROUTER_FD_KEEP) {
            rl = router_listener_find(rt, cl);
            wf_h1_server_set_site(&rl->srv, &snap->sites[i]);
        } else {
            rl = router_listener_add(rt, cl, &snap->sites[i], rt->fds[i]);
            rt->fds[i] = -1;
        }
        if (rl != NULL) {
            rl->keep = true;
        }
    }
    wf_rhttp_commit_end();
    for (wf_list_t *l = rt->listeners.next, *next; l != &rt->listeners;
         l = next) {
        router_listener_t *rl = wf_container_of(l, router_listener_t, link);

        next = l->next;
        if (!rl->keep) {
            wf_listener_close(&rl->srv.listener);
            wf_h1_server_remove(&rl->srv); /* idle ones go at the visit */
            wf_list_del(l);
            wf_list_add_tail(&rt->retiring, l);
            rt->ops->socket_release(rt, rl->name);
        }
    }
    rt->retire = rt->current;
    rt->current = snap;
    wf_upstream_health_publish(conf->upstream_all);
    wf_upstream_status_publish(conf->upstream_all);
    wf_upstream_dns_publish(conf->upstream_all, rt->loop, router_on_names, rt);
    if (wf_loops_sync(&rt->sync, rt->loop, router_on_synced) != WF_OK) {
        /* Out of memory: keep the old snapshot; it is only a leak. */
        rt->retire = NULL;
        router_finish(rt, NULL);
    }
}

/* The current snapshot's applications (none before the first). */
static void
router_apps_rollback(wf_router_t *rt)
{
    if (rt->current != NULL) {
        wf_app_mgr_rollback(rt->current->conf->apps, rt->current->conf->napps);
    } else {
        wf_app_mgr_rollback(NULL, 0);
    }
}

/* The new and changed applications have their first process ready, or
 * one failed: the configuration is applied or refused, as in Unit. */
static void
router_on_apps_settled(void *arg, const char *error)
{
    wf_router_t *rt = arg;

    if (error != NULL) {
        snprintf(rt->error, sizeof(rt->error), "%s", error);
        router_apps_rollback(rt);
        router_abort(rt);
        return;
    }
    wf_app_mgr_commit(rt->next->conf->apps, rt->next->conf->napps);
    router_commit(rt);
}

static void
router_check_done(wf_router_t *rt)
{
    int rc;

    if (rt->pending > 0) {
        return;
    }
    if (rt->error[0] != '\0') {
        router_abort(rt);
        return;
    }
    rc = wf_app_mgr_reconcile(rt->next->conf->apps, rt->next->conf->napps,
                              router_on_apps_settled, rt);
    if (rc == WF_AGAIN) {
        return; /* router_on_apps_settled() follows */
    }
    if (rc != WF_OK) {
        snprintf(rt->error, sizeof(rt->error), "Out of memory.");
        router_apps_rollback(rt);
        router_abort(rt);
        return;
    }
    wf_app_mgr_commit(rt->next->conf->apps, rt->next->conf->napps);
    router_commit(rt);
}

void
wf_router_access_log_done(wf_router_t *rt, uint32_t cookie, int fd,
                          const char *error)
{
    wf_access_log_t *al;

    if (!rt->busy || cookie != (rt->generation & 0xffff)) {
        /* An answer to a configuration that was given up. */
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    al = rt->next->conf->http.access_log;
    if (fd >= 0) {
        wf_access_log_set_fd(al, fd);
    } else if (rt->error[0] == '\0') {
        snprintf(rt->error, sizeof(rt->error), "%s",
                 error != NULL ? error : "access log failed");
    }
    rt->pending--;
    router_check_done(rt);
}

void
wf_router_socket_done(wf_router_t *rt, uint32_t cookie, int fd,
                      const char *error)
{
    uint32_t generation = cookie >> 16;
    uint32_t i = cookie & 0xffff;

    if (!rt->busy || generation != (rt->generation & 0xffff)
        || i >= rt->next->conf->nlisteners || rt->fds[i] != -1) {
        /* An answer to a configuration that was given up. */
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    if (fd >= 0) {
        rt->fds[i] = fd;
    } else if (rt->error[0] == '\0') {
        snprintf(rt->error, sizeof(rt->error), "%s",
                 error != NULL ? error : "socket failed");
    }
    rt->pending--;
    router_check_done(rt);
}

/* Asks for the sockets the new snapshot needs and are not open yet, and
 * for its access log file when no live access log has it open. */
static void
router_request_sockets(wf_router_t *rt)
{
    wf_conf_t *conf = rt->next->conf;
    const char *alog = wf_access_log_needs_fd(conf->http.access_log);

    rt->generation++;
    rt->pending = 1; /* held until every request went out */
    if (alog != NULL) {
        rt->pending++;
        rt->ops->access_log_open(rt, alog, rt->generation & 0xffff);
    }
    for (size_t i = 0; i < conf->nlisteners; i++) {
        const wf_conf_listener_t *cl = &conf->listeners[i];

        if (cl->reverse != NULL) {
            rt->fds[i] = ROUTER_FD_NONE;
            continue;
        }
        if (router_listener_find(rt, cl) != NULL) {
            rt->fds[i] = ROUTER_FD_KEEP;
            continue;
        }
        rt->fds[i] = -1;
        rt->pending++;
        rt->ops->socket_open(rt, cl->name, (const struct sockaddr *)&cl->addr,
                             cl->addrlen,
                             ((rt->generation & 0xffff) << 16) | (uint32_t)i);
    }
    rt->pending--;
    router_check_done(rt);
}

/* Compiling parses certificates and keys (and regexes): on a helper
 * thread, never on loop 0, an I/O thread (DESIGN.md section 3). */
static void
router_on_compile(wf_job_t *job)
{
    router_compile_t *c = wf_container_of(job, router_compile_t, job);

    c->conf = wf_conf_load(c->rj->text, c->rj->len, &c->err);
}

static void
router_on_compiled(wf_task_t *task)
{
    router_compile_t *c = wf_container_of(task, router_compile_t, job.done);
    wf_router_t *rt = c->rt;
    wf_conf_t *conf = c->conf;

    rt->compiling = NULL;
    if (conf == NULL) {
        snprintf(rt->error, sizeof(rt->error), "%s %s", c->err.error,
                 c->err.detail);
    }
    free(c->rj);
    free(c);
    if (conf == NULL) {
        router_finish(rt, rt->error);
        return;
    }
    rt->next = router_snap_create(conf);
    rt->fds = calloc(conf->nlisteners + 1, sizeof(*rt->fds));
    if (rt->next == NULL || rt->fds == NULL) {
        if (rt->next == NULL) {
            wf_conf_destroy(conf);
        } else {
            wf_h1_snap_unref(&rt->next->h1);
        }
        router_finish(rt, "Out of memory.");
        return;
    }
    router_request_sockets(rt);
}

/* A ROUTER_STREAM_SELF job gets the current configuration's text. */
static router_job_t *
router_job_self(wf_router_t *rt, router_job_t *job)
{
    char *text = rt->current != NULL
                     ? json_dumps(rt->current->conf->json, JSON_COMPACT)
                     : NULL;
    size_t len = text != NULL ? strlen(text) : 0;
    router_job_t *self = text != NULL ? malloc(sizeof(*self) + len) : NULL;

    free(job);
    if (self != NULL) {
        self->stream = ROUTER_STREAM_SELF;
        self->len = len;
        memcpy(self->text, text, len);
    }
    free(text);
    return self;
}

static void
router_start_job(wf_router_t *rt, router_job_t *job)
{
    router_compile_t *c;

    if (job->stream == ROUTER_STREAM_SELF
        && (job = router_job_self(rt, job)) == NULL) {
        router_next_job(rt);
        return;
    }
    c = calloc(1, sizeof(*c));

    rt->busy = true;
    rt->stream = job->stream;
    rt->error[0] = '\0';
    if (c == NULL) {
        free(job);
        router_finish(rt, "Out of memory.");
        return;
    }
    c->rt = rt;
    c->rj = job;
    c->job.loop = rt->loop;
    c->job.work = router_on_compile;
    c->job.done.handler = router_on_compiled;
    rt->compiling = c;
    wf_tpool_submit(&c->job);
}

static void
router_next_job(wf_router_t *rt)
{
    if (rt->busy || wf_list_is_empty(&rt->queue)) {
        return;
    }
    wf_list_t *l = rt->queue.next;

    wf_list_del(l);
    router_start_job(rt, wf_container_of(l, router_job_t, link));
}

void
wf_router_stop_listening(wf_router_t *rt)
{
    wf_list_for_each(l, &rt->listeners)
    {
        wf_listener_close(
            &wf_container_of(l, router_listener_t, link)->srv.listener);
    }
}

void
wf_router_destroy(wf_router_t *rt)
{
    if (rt == NULL) {
        return;
    }
    wf_rhttp_commit_begin(); /* none kept: every reverse listener stops */
    wf_rhttp_commit_end();
    while (!wf_list_is_empty(&rt->listeners)) {
        wf_list_t *l = rt->listeners.next;
        router_listener_t *rl = wf_container_of(l, router_listener_t, link);

        wf_list_del(l);
        wf_listener_close(&rl->srv.listener);
        wf_h1_server_unref(&rl->srv);
    }
    while (!wf_list_is_empty(&rt->queue)) {
        wf_list_t *l = rt->queue.next;

        wf_list_del(l);
        free(wf_container_of(l, router_job_t, link));
    }
    if (rt->compiling != NULL) {
        /* The helpers are stopped: the job ran, its answer never will. */
        wf_conf_destroy(rt->compiling->conf);
        free(rt->compiling->rj);
        free(rt->compiling);
        rt->compiling = NULL;
    }
    if (rt->retire != NULL) {
        wf_h1_snap_unref(&rt->retire->h1); /* committed, not yet synced */
    }
    if (rt->next != NULL && rt->next != rt->current) {
        /* Stopped while a change was being applied: what it got so far
         * goes with it (main closes its own copies of the sockets). */
        for (size_t i = 0; i < rt->next->conf->nlisteners; i++) {
            if (rt->fds != NULL && rt->fds[i] >= 0) {
                close(rt->fds[i]);
            }
        }
        wf_h1_snap_unref(&rt->next->h1);
    }
    if (rt->current != NULL) {
        wf_h1_snap_unref(&rt->current->h1);
    }
    free(rt->fds);
    free(rt);
}

static json_t *router_modules; /* Unit's "modules" object; loop 0 */

/* Unit's shape: {"python": {"version": V, "lib": FILE}}, an array of
 * such objects when one type has several versions. */
void
wf_router_modules_set(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *list = json_loadb(text, len, 0, &jerr);
    json_t *mods = json_object();
    size_t i;
    json_t *m;

    json_array_foreach(list, i, m)
    {
        const char *type = json_string_value(json_object_get(m, "type"));
        json_t *one =
            json_pack("{s:O?,s:O?}", "version", json_object_get(m, "version"),
                      "lib", json_object_get(m, "file"));
        json_t *prev;

        if (type == NULL || one == NULL) {
            json_decref(one);
            continue;
        }
        prev = json_object_get(mods, type);
        if (prev == NULL) {
            json_object_set_new(mods, type, one);
        } else if (json_is_array(prev)) {
            json_array_append_new(prev, one);
        } else {
            json_object_set_new(mods, type, json_pack("[O,o]", prev, one));
        }
    }
    json_decref(list);
    json_decref(router_modules);
    router_modules = mods;
}

/* Unit puts "modules" first. */
static json_t *
router_status_modules_first(json_t *root)
{
    json_t *ordered = json_object();

    if (ordered == NULL) {
        return root;
    }
    if (router_modules != NULL) {
        json_object_set(ordered, "modules", router_modules);
    } else {
        json_object_set_new(ordered, "modules", json_object());
    }
    json_object_update(ordered, root);
    json_decref(root);
    return ordered;
}

char *
wf_router_status_json(void)
{
    wf_h1_stats_t st;
    json_t *root;
    char *text;

    wf_h1_stats_get(&st);
    root = json_pack("{s:{s:I,s:I,s:I,s:I},s:{s:I},s:{}}", "connections",
                     "accepted", (json_int_t)st.accepted, "active",
                     (json_int_t)st.active, "idle", (json_int_t)st.idle,
                     "closed", (json_int_t)st.closed, "requests", "total",
                     (json_int_t)st.requests, "applications");
    if (root == NULL) {
        return NULL;
    }
    wf_app_mgr_status(json_object_get(root, "applications"));
    root = router_status_modules_first(root);
    /* Wharf's key: access-log lines written, and dropped (the writer was
     * stuck behind a stalled file system, or a write failed). */
    json_object_set_new(
        root, "access_log",
        json_pack("{s:I,s:I}", "written", (json_int_t)wf_access_log_written(),
                  "dropped", (json_int_t)wf_access_log_dropped()));
    /* Wharf's key: upstreams and their servers (issue 10). */
    json_object_set_new(root, "upstreams", wf_upstream_status_json());
    /* Wharf's key: reverse HTTP listeners (issue 13). */
    json_object_set_new(root, "rhttp", wf_rhttp_status_json());
    json_object_set_new(json_object_get(root, "rhttp"), "tunnels",
                        wf_rhttp_pub_status_json());
    text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(root);
    return text;
}
