/* The application manager: live applications, their processes and
 * sockets, the queue and scaling.  See app_mgr.h, app_types.h and
 * docs/internals/apps.md. */
#include "process/app_mgr.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/app_proto.h"
#include "core/common.h"
#include "core/log.h"
#include "process/app_types.h"
#include "process/app_xchg.h"
#include "process/port_msg_types.h"

#define APP_TICK_MS 500 /* idle checks, kill bounds, cleanup */
#define APP_KILL_MS                                      \
    5000 /* after its sockets closed, a process has this \
            long to exit before WF_MSG_APP_KILL */
#define APP_STATUS_MAX 64

/* A restart waiting for a process of generation gen to be ready. */
typedef struct app_restart {
    wf_list_t link; /* in app->restarts */
    uint64_t stream;
    unsigned gen;
} app_restart_t;

#define APP_SETTLE_MS                                \
    60000 /* a configuration waits this long at most \
             for its new processes */

static struct {
    const wf_app_mgr_ops_t *ops;
    wf_list_t apps; /* wf_app_t, loop 0 */
    wf_timer_t tick;
    bool ticking;
    bool inited;

    /* The configuration waiting for its applications (loop 0). */
    bool settling;
    wf_app_mgr_settled_cb settle_cb;
    void *settle_arg;
    char settle_error[256]; /* "" while none failed */
    wf_timer_t settle_timer;
    wf_task_t settle_task; /* posted by a READY on any thread */
    _Atomic bool settle_posted;
} app_mgr;

static void app_settle_check(void);

/* A process of generation gen failed to start: a configuration waiting
 * for it fails.  Loop 0, under app->lock. */
static void
app_settle_fail(wf_app_t *app, unsigned gen, const char *why)
{
    if (!app->settling || gen != app->settle_gen || app->settle_failed) {
        return;
    }
    app->settle_failed = true;
    if (app_mgr.settle_error[0] == '\0') {
        snprintf(app_mgr.settle_error, sizeof(app_mgr.settle_error),
                 "application \"%s\" failed to start: %s", app->name, why);
    }
}

static void app_sock_on_msg(wf_port_t *p, wf_port_msg_t *msg);
static void app_scale(wf_app_t *app);

/* Router-sent types never arrive (their senders mask says so), but the
 * port wants a handler for every row. */
static const wf_port_type_t app_sock_types[] = {
    {WF_APP_MSG_READY, "ready", app_sock_on_msg, WF_PORT_FROM(WF_PORT_APP), 0},
    {WF_APP_MSG_REQ_HEAD, "req_head", app_sock_on_msg,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_APP_MSG_REQ_BODY, "req_body", app_sock_on_msg,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_APP_MSG_REQ_END, "req_end", app_sock_on_msg,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_APP_MSG_REQ_ABORT, "req_abort", app_sock_on_msg,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_APP_MSG_REQ_ACK, "req_ack", app_sock_on_msg, WF_PORT_FROM(WF_PORT_APP),
     0},
    {WF_APP_MSG_RESP_HEAD, "resp_head", app_sock_on_msg,
     WF_PORT_FROM(WF_PORT_APP), 0},
    {WF_APP_MSG_RESP_BODY, "resp_body", app_sock_on_msg,
     WF_PORT_FROM(WF_PORT_APP), 0},
    {WF_APP_MSG_RESP_FILE, "resp_file", app_sock_on_msg,
     WF_PORT_FROM(WF_PORT_APP), 1},
    {WF_APP_MSG_RESP_END, "resp_end", app_sock_on_msg,
     WF_PORT_FROM(WF_PORT_APP), 0},
    {WF_APP_MSG_RESP_ACK, "resp_ack", app_sock_on_msg,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
};

static uint64_t
app_now(void)
{
    wf_loop_t *loop = wf_loop_current();

    return loop != NULL ? loop->now : wf_loop_get(0)->now;
}

/* ---- References ---------------------------------------------------- */

static void
app_ref(wf_app_t *app)
{
    atomic_fetch_add(&app->refs, 1);
}

static void
app_unref(wf_app_t *app)
{
    if (app == NULL || atomic_fetch_sub(&app->refs, 1) != 1) {
        return;
    }
    while (!wf_list_is_empty(&app->restarts)) {
        wf_list_t *l = app->restarts.next;

        wf_list_del(l);
        free(wf_container_of(l, app_restart_t, link));
    }
    pthread_mutex_destroy(&app->lock);
    free(app->name);
    free(app->json);
    free(app);
}

/* Copies what the manager reads of desc.  Under app->lock (or before the
 * app is shared). */
static int
app_settings_set(wf_app_t *app, const wf_app_desc_t *desc)
{
    char *json = strdup(desc->json != NULL ? desc->json : "{}");

    if (json == NULL) {
        return WF_ERROR;
    }
    free(app->json);
    app->json = json;
    app->max_processes = wf_max(desc->max_processes, 1u);
    app->spare_processes = wf_min(desc->spare_processes, app->max_processes);
    app->idle_timeout_ms = desc->idle_timeout_ms;
    app->timeout_ms = desc->timeout_ms;
    app->max_requests = desc->max_requests;
    app->queue_length = desc->queue_length;
    app->queue_timeout_ms = desc->queue_timeout_ms;
    app->threads = wf_max(desc->threads, 1u);
    return WF_OK;
}

static wf_app_t *
app_create(const wf_app_desc_t *desc)
{
    wf_app_t *app = calloc(1, sizeof(*app));

    if (app == NULL) {
        return NULL;
    }
    app->name = strndup(desc->name.data, desc->name.len);
    if (app->name == NULL || app_settings_set(app, desc) != WF_OK) {
        free(app->name);
        free(app->json);
        free(app);
        return NULL;
    }
    pthread_mutex_init(&app->lock, NULL);
    atomic_store(&app->refs, 1); /* the manager's list */
    wf_list_init(&app->procs);
    wf_list_init(&app->queue);
    wf_list_init(&app->restarts);
    return app;
}

static wf_app_t *
app_find(const char *name, size_t len)
{
    wf_list_for_each(l, &app_mgr.apps)
    {
        wf_app_t *app = wf_container_of(l, wf_app_t, link);

        if (strlen(app->name) == len && memcmp(app->name, name, len) == 0) {
            return app;
        }
    }
    return NULL;
}

/* ---- Processes ----------------------------------------------------- */

/* Frees proc once nothing can reach it: every socket closed, its exit
 * known, no task of its posted.  Under app->lock; returns true when the
 * caller must free it after unlocking (proc_free()). */
static bool
proc_unlink_if_done(app_proc_t *proc)
{
    if (proc->nopen > 0 || !proc->exited || proc->ntasks > 0) {
        return false;
    }
    wf_list_del(&proc->link);
    return true;
}

static void
proc_free(app_proc_t *proc)
{
    wf_app_t *app = proc->app;

    free(proc->slots);
    free(proc);
    app_unref(app);
}

/* Runs task on loop: in this tick when loop is the calling thread's own
 * (no eventfd write and wake-up, as for every request of a busy app on
 * one router thread), else posted to it. */
static void
app_task_run(wf_loop_t *loop, wf_task_t *task)
{
    if (loop == wf_loop_current()) {
        wf_task_schedule(loop, task);
    } else {
        wf_task_post(loop, task);
    }
}

static void
app_post_scale(wf_app_t *app)
{
    bool expected = false;

    if (atomic_compare_exchange_strong(&app->scale_posted, &expected, true)) {
        app_ref(app);
        app_task_run(wf_loop_get(0), &app->scale);
    }
}

/* Stops proc taking requests; each socket closes once idle.  Under
 * app->lock. */
static void
proc_stop(app_proc_t *proc)
{
    unsigned n = proc->nslots * proc->nthreads;

    if (proc->state == APP_PROC_STOPPING) {
        return;
    }
    proc->state = APP_PROC_STOPPING;
    proc->stop_at = app_now();
    for (unsigned i = 0; i < n; i++) {
        app_sock_t *s = &proc->socks[i];

        if (s->loop != NULL) {
            proc->ntasks++;
            wf_task_post(s->loop, &s->close);
        }
    }
}

/* Queued requests get their answer (503) when the application can serve
 * nothing: no process runs or starts.  Under app->lock. */
static void
app_queue_fail_if_hopeless(wf_app_t *app)
{
    wf_list_for_each(l, &app->procs)
    {
        app_proc_t *proc = wf_container_of(l, app_proc_t, link);

        if (proc->state != APP_PROC_STOPPING) {
            return;
        }
    }
    while (!wf_list_is_empty(&app->queue)) {
        app_xchg_t *x = wf_container_of(app->queue.next, app_xchg_t, link);

        wf_list_del(&x->link);
        app->nqueued--;
        x->state = APP_X_ASSIGNED;
        x->proc = NULL; /* the assign task answers 503 */
        app_task_run(x->loop, &x->assign);
    }
}

/* Replies to the restarts that proc (ready or failed) settles.  Under
 * app->lock; the replies are sent from here (any thread may send). */
static void
app_restarts_settle(wf_app_t *app, unsigned gen, const char *error)
{
    for (wf_list_t *l = app->restarts.next, *next; l != &app->restarts;
         l = next) {
        app_restart_t *rs = wf_container_of(l, app_restart_t, link);

        next = l->next;
        if (rs->gen > gen) {
            continue;
        }
        wf_list_del(l);
        app_mgr.ops->restarted(rs->stream, error);
        free(rs);
    }
}

/* A socket's READY.  Thread of s. */
static void
proc_on_ready(app_sock_t *s, wf_port_msg_t *msg)
{
    app_proc_t *proc = s->proc;
    wf_app_t *app = proc->app;
    wf_app_ready_t rd;

    if (msg->size != sizeof(rd) || s->ready) {
        wf_log_error(0, "application \"%s\": bad READY", app->name);
        return;
    }
    memcpy(&rd, wf_port_msg_flatten(msg), sizeof(rd));
    pthread_mutex_lock(&app->lock);
    s->ready = true;
    if (proc->slots[s->slot].cap == 0) {
        proc->slots[s->slot].cap = wf_max(rd.concurrency, 1u);
        proc->slots[s->slot].queued =
            wf_min(rd.queued, proc->slots[s->slot].cap - 1);
    }
    if (proc->pid == 0) {
        proc->pid = (pid_t)rd.pid;
    }
    if (++proc->nready == proc->nslots * proc->nthreads
        && proc->state == APP_PROC_STARTING) {
        proc->state = APP_PROC_RUNNING;
        proc->was_ready = true;
        proc->idle_since = app_now();
        app->nfailed = 0;
        if (proc->gen == app->gen) {
            /* A restart's new process: the old ones finish and go. */
            wf_list_for_each(l, &app->procs)
            {
                app_proc_t *old = wf_container_of(l, app_proc_t, link);

                if (old->gen != app->gen) {
                    proc_stop(old);
                }
            }
            app_restarts_settle(app, proc->gen, NULL);
        }
        if (app->settling && proc->gen == app->settle_gen) {
            bool expected = false;

            atomic_store(&app->settle_ready, true);
            if (atomic_compare_exchange_strong(&app_mgr.settle_posted,
                                               &expected, true)) {
                wf_task_post(wf_loop_get(0), &app_mgr.settle_task);
            }
        }
        wf_app_queue_drain(app);
    }
    pthread_mutex_unlock(&app->lock);
    app_post_scale(app);
}

/* s's port is closed (by us or by the peer).  Thread of s. */
static void
sock_closed(app_sock_t *s)
{
    app_proc_t *proc = s->proc;
    wf_app_t *app = proc->app;
    bool done;

    wf_port_destroy(s->port);
    s->port = NULL;
    pthread_mutex_lock(&app->lock);
    proc->nopen--;
    if (proc->nopen == 0) {
        proc->stop_at = app_now(); /* from now it must exit soon */
    }
    done = proc_unlink_if_done(proc);
    pthread_mutex_unlock(&app->lock);
    if (done) {
        proc_free(proc);
    }
}

/* The app process closed its end: it is gone (or going).  Its requests
 * fail; the others are not affected.  Thread of s. */
static void
sock_on_close(wf_port_t *p)
{
    app_sock_t *s = wf_container_of(wf_port_get_owner(p), app_sock_t, owner);
    app_proc_t *proc = s->proc;
    wf_app_t *app = proc->app;
    bool early = false;

    pthread_mutex_lock(&app->lock);
    proc_stop(proc);
    if (!proc->was_ready && !proc->died_early) {
        /* Dead before READY: that start failed (main's APP_EXIT may come
         * later); no spare is started again until one succeeds. */
        proc->died_early = true;
        app->nfailed++;
        early = app->settling && proc->gen == app->settle_gen;
    }
    pthread_mutex_unlock(&app->lock);
    if (early) {
        bool expected = false;

        atomic_store(&app->settle_dead, true);
        if (atomic_compare_exchange_strong(&app_mgr.settle_posted, &expected,
                                           true)) {
            wf_task_post(wf_loop_get(0), &app_mgr.settle_task);
        }
    }
    while (!wf_list_is_empty(&s->xchgs)) {
        app_xchg_t *x = wf_container_of(s->xchgs.next, app_xchg_t, link);

        wf_list_del(&x->link);
        wf_list_init(&x->link);
        wf_app_xchg_sock_lost(x);
    }
    sock_closed(s);
    app_post_scale(app);
}

static void
app_sock_on_msg(wf_port_t *p, wf_port_msg_t *msg)
{
    app_sock_t *s = wf_container_of(wf_port_get_owner(p), app_sock_t, owner);

    if (msg->type == WF_APP_MSG_READY) {
        proc_on_ready(s, msg);
        return;
    }
    if (!s->ready) {
        wf_log_error(0, "application \"%s\": message before READY",
                     s->proc->app->name);
        return;
    }
    wf_app_xchg_on_msg(s, msg);
}

void
wf_app_sock_idle(app_sock_t *s)
{
    if (s->closing && s->port != NULL && wf_list_is_empty(&s->xchgs)) {
        sock_closed(s);
    }
}

static void
sock_on_start(wf_task_t *task)
{
    app_sock_t *s = wf_container_of(task, app_sock_t, start);

    if (wf_port_start(s->port, s->loop) != WF_OK) {
        sock_on_close(s->port);
    }
}

static void
sock_on_close_task(wf_task_t *task)
{
    app_sock_t *s = wf_container_of(task, app_sock_t, close);
    app_proc_t *proc = s->proc;
    bool done;

    pthread_mutex_lock(&proc->app->lock);
    proc->ntasks--;
    done = s->port == NULL && proc_unlink_if_done(proc);
    pthread_mutex_unlock(&proc->app->lock);
    if (done) {
        proc_free(proc);
        return;
    }
    if (s->port == NULL) {
        return;
    }
    s->closing = true;
    wf_app_sock_idle(s);
}

/* main's answer to WF_MSG_APP_START.  Loop 0. */
static void
proc_on_start_reply(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    app_proc_t *proc = wf_container_of(req, app_proc_t, start_req);
    wf_app_t *app = proc->app;
    const char *text =
        msg != NULL ? (const char *)wf_port_msg_flatten(msg) : NULL;
    bool done;

    pthread_mutex_lock(&app->lock);
    if (status == WF_OK && msg->type == WF_MSG_APP_PID && text != NULL) {
        if (proc->pid == 0) {
            proc->pid = (pid_t)strtol(text, NULL, 10);
        }
        pthread_mutex_unlock(&app->lock);
        return;
    }
    wf_log_error(0, "failed to start application \"%s\": %s", app->name,
                 status != WF_OK ? "main process is gone"
                 : text != NULL  ? text
                                 : "unknown error");
    proc->exited = true;
    if (!proc->died_early) {
        proc->died_early = true;
        app->nfailed++;
    }
    proc_stop(proc);
    app_queue_fail_if_hopeless(app);
    if (proc->gen == app->gen) {
        app_restarts_settle(app, proc->gen, "Failed to start application.");
    }
    app_settle_fail(app, proc->gen,
                    status != WF_OK ? "main process is gone" : "not started");
    done = proc_unlink_if_done(proc);
    pthread_mutex_unlock(&app->lock);
    if (done) {
        proc_free(proc);
    }
    app_settle_check();
}

/* {"name": NAME, "conf": {...}, "slots": T, "router_threads": N} */
static char *
proc_start_payload(wf_app_t *app, unsigned slots, unsigned nthreads)
{
    json_error_t jerr;
    json_t *conf = json_loads(app->json, 0, &jerr);
    json_t *root;
    char *text;

    if (conf == NULL) {
        return NULL;
    }
    root =
        json_pack("{s:s,s:o,s:I,s:I}", "name", app->name, "conf", conf, "slots",
                  (json_int_t)slots, "router_threads", (json_int_t)nthreads);
    if (root == NULL) {
        return NULL;
    }
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

static app_proc_t *
proc_create(wf_app_t *app, unsigned nslots, unsigned nthreads)
{
    unsigned n = nslots * nthreads;
    app_proc_t *proc = calloc(1, sizeof(*proc) + n * sizeof(app_sock_t));

    if (proc == NULL) {
        return NULL;
    }
    proc->slots = calloc(nslots, sizeof(*proc->slots));
    if (proc->slots == NULL) {
        free(proc);
        return NULL;
    }
    proc->app = app;
    proc->nslots = nslots;
    proc->nthreads = nthreads;
    proc->start_req.handler = proc_on_start_reply;
    for (unsigned i = 0; i < n; i++) {
        app_sock_t *s = &proc->socks[i];

        s->owner.on_close = sock_on_close;
        s->proc = proc;
        s->slot = i / nthreads;
        s->thread = i % nthreads;
        wf_list_init(&s->xchgs);
        s->start.handler = sock_on_start;
        s->close.handler = sock_on_close_task;
    }
    return proc;
}

/* Creates the sockets' router ends; app_fds gets the app ends. */
static int
proc_sockets_open(app_proc_t *proc, int *app_fds)
{
    unsigned n = proc->nslots * proc->nthreads;

    for (unsigned i = 0; i < n; i++) {
        app_sock_t *s = &proc->socks[i];
        int fds[2];

        if (wf_port_pair(fds) != WF_OK) {
            return WF_ERROR;
        }
        s->port =
            wf_port_create(fds[0], WF_PORT_ROUTER, WF_PORT_APP, app_sock_types,
                           wf_nitems(app_sock_types), &s->owner);
        if (s->port == NULL) {
            close(fds[0]);
            close(fds[1]);
            return WF_ERROR;
        }
        app_fds[i] = fds[1];
        proc->nopen++;
        wf_port_set_max_size(s->port, WF_APP_MAX_SIZE);
        s->loop = wf_loop_get(s->thread);
    }
    return WF_OK;
}

static void
proc_discard(app_proc_t *proc, int *app_fds)
{
    unsigned n = proc->nslots * proc->nthreads;

    for (unsigned i = 0; i < n; i++) {
        wf_port_destroy(proc->socks[i].port);
        if (app_fds[i] >= 0) {
            close(app_fds[i]);
        }
    }
    free(proc->slots);
    free(proc);
}

/* Starts one process of app (generation app->gen).  Loop 0, without
 * app->lock. */
static void
proc_start(wf_app_t *app, unsigned gen)
{
    unsigned nthreads = wf_loops_count();
    unsigned nslots = app->threads;
    int app_fds[WF_APP_MAX_FDS];
    app_proc_t *proc;
    char *payload;
    int rc;

    if (nslots * nthreads > WF_APP_MAX_FDS) {
        nslots = wf_max(WF_APP_MAX_FDS / nthreads, 1u);
        wf_log_warn(0, "application \"%s\": %u threads at most", app->name,
                    nslots);
    }
    for (unsigned i = 0; i < WF_APP_MAX_FDS; i++) {
        app_fds[i] = -1;
    }
    proc = proc_create(app, nslots, nthreads);
    if (proc == NULL) {
        wf_log_error(0, "application \"%s\": out of memory", app->name);
        return;
    }
    proc->gen = gen;
    payload = proc_start_payload(app, nslots, nthreads);
    if (payload == NULL || proc_sockets_open(proc, app_fds) != WF_OK) {
        wf_log_error(0, "application \"%s\": cannot create its sockets",
                     app->name);
        free(payload);
        proc_discard(proc, app_fds);
        return;
    }
    app_ref(app);
    pthread_mutex_lock(&app->lock);
    wf_list_add_tail(&app->procs, &proc->link);
    pthread_mutex_unlock(&app->lock);
    rc = app_mgr.ops->start(&proc->start_req, payload, strlen(payload), app_fds,
                            nslots * nthreads);
    free(payload);
    for (unsigned i = 0; i < nslots * nthreads; i++) {
        close(app_fds[i]); /* main has its copies, or none: EOF follows */
        wf_task_post(proc->socks[i].loop, &proc->socks[i].start);
    }
    if (rc != WF_OK) {
        proc_on_start_reply(&proc->start_req, NULL, WF_ERROR);
    }
}

/* ---- Slots and the queue (any I/O thread) ---------------------------- */

/* A free slot of a running process, preferring the current generation:
 * the first that serves a request at once. */
static app_proc_t *
app_free_slot_now(wf_app_t *app, unsigned *slot)
{
    app_proc_t *fallback = NULL;
    unsigned fslot = 0;

    wf_list_for_each(l, &app->procs)
    {
        app_proc_t *proc = wf_container_of(l, app_proc_t, link);

        if (proc->state != APP_PROC_RUNNING) {
            continue;
        }
        for (unsigned k = 0; k < proc->nslots; k++) {
            const app_slot_t *sl = &proc->slots[k];

            if (sl->busy + sl->queued >= sl->cap) {
                continue;
            }
            if (proc->gen == app->gen) {
                *slot = k;
                return proc;
            }
            if (fallback == NULL) {
                fallback = proc;
                fslot = k;
            }
            break;
        }
    }
    *slot = fslot;
    return fallback;
}

/* The slot of a running process of the current generation with the
 * fewest requests waiting in it, room left for one more.  Only with one
 * router thread: a worker then serves its one socket in order, so the
 * request after x starts when x ends (xchg_next_in_line() restarts its
 * limits.timeout then); with several, requests of other threads' sockets
 * would come between.  Under app->lock. */
static app_proc_t *
app_free_slot_queued(wf_app_t *app, unsigned *slot)
{
    app_proc_t *best = NULL;
    unsigned least = UINT32_MAX;

    wf_list_for_each(l, &app->procs)
    {
        app_proc_t *proc = wf_container_of(l, app_proc_t, link);

        if (proc->state != APP_PROC_RUNNING || proc->gen != app->gen
            || proc->nthreads != 1
            || (app->max_requests > 0
                && proc->served + proc->active >= app->max_requests)) {
            continue; /* (limits.requests: no more than it may serve) */
        }
        for (unsigned k = 0; k < proc->nslots; k++) {
            const app_slot_t *sl = &proc->slots[k];

            if (sl->busy < sl->cap && sl->busy < least) {
                least = sl->busy;
                best = proc;
                *slot = k;
            }
        }
    }
    return best;
}

static void app_count(wf_app_t *app, unsigned *total, unsigned *starting,
                      unsigned *idle);

/* A free slot: one that serves the request at once; else, once no process
 * can start any more (the app is at its max and none is starting), one
 * where it waits behind the request being served (a WSGI worker's next
 * request, read without a sleep).  Under app->lock. */
static app_proc_t *
app_free_slot(wf_app_t *app, unsigned *slot)
{
    app_proc_t *proc = app_free_slot_now(app, slot);
    unsigned total;
    unsigned starting;
    unsigned idle;

    if (proc != NULL) {
        return proc;
    }
    app_count(app, &total, &starting, &idle);
    if (starting > 0 || total < app->max_processes) {
        return NULL;
    }
    return app_free_slot_queued(app, slot);
}

static void
app_slot_take(app_xchg_t *x, app_proc_t *proc, unsigned slot)
{
    proc->slots[slot].busy++;
    proc->active++;
    x->proc = proc;
    x->slot = slot;
    x->sock = &proc->socks[slot * proc->nthreads + x->loop->id];
}

/* Idle running processes of the current generation, and starting ones.
 * Under app->lock. */
static void
app_count(wf_app_t *app, unsigned *total, unsigned *starting, unsigned *idle)
{
    *total = *starting = *idle = 0;
    wf_list_for_each(l, &app->procs)
    {
        app_proc_t *proc = wf_container_of(l, app_proc_t, link);

        if (proc->gen != app->gen || proc->state == APP_PROC_STOPPING) {
            continue;
        }
        (*total)++;
        *starting += proc->state == APP_PROC_STARTING;
        *idle += proc->state == APP_PROC_RUNNING && proc->active == 0;
    }
}

int
wf_app_slot_get(app_xchg_t *x)
{
    wf_app_t *app = x->app;
    unsigned slot;
    app_proc_t *proc;
    unsigned total;
    unsigned starting;
    unsigned idle;
    bool scale;

    pthread_mutex_lock(&app->lock);
    proc = app->removed ? NULL : app_free_slot(app, &slot);
    if (proc != NULL) {
        app_slot_take(x, proc, slot);
        app_count(app, &total, &starting, &idle);
        scale = idle + starting < app->spare_processes;
        pthread_mutex_unlock(&app->lock);
        if (scale) {
            app_post_scale(app);
        }
        return WF_OK;
    }
    if (app->removed || app->nqueued >= app->queue_length) {
        pthread_mutex_unlock(&app->lock);
        return WF_DECLINED;
    }
    x->state = APP_X_QUEUED;
    wf_list_add_tail(&app->queue, &x->link);
    app->nqueued++;
    pthread_mutex_unlock(&app->lock);
    app_post_scale(app);
    return WF_AGAIN;
}

void
wf_app_queue_drain(wf_app_t *app)
{
    while (!wf_list_is_empty(&app->queue)) {
        app_xchg_t *x = wf_container_of(app->queue.next, app_xchg_t, link);
        unsigned slot;
        app_proc_t *proc = app_free_slot(app, &slot);

        if (proc == NULL) {
            return;
        }
        wf_list_del(&x->link);
        app->nqueued--;
        app_slot_take(x, proc, slot);
        x->state = APP_X_ASSIGNED;
        app_task_run(x->loop, &x->assign);
    }
}

void
wf_app_slot_put(app_xchg_t *x)
{
    app_proc_t *proc = x->proc;
    wf_app_t *app = x->app;
    bool recycle = false;

    if (proc == NULL) {
        return;
    }
    x->proc = NULL;
    pthread_mutex_lock(&app->lock);
    proc->slots[x->slot].busy--;
    if (--proc->active == 0) {
        proc->idle_since = app_now();
    }
    proc->served++;
    if (app->max_requests > 0 && proc->served >= app->max_requests
        && proc->state == APP_PROC_RUNNING) {
        /* limits.requests: finish what it has, then go; a new one
         * starts in its place. */
        proc_stop(proc);
        recycle = true;
    }
    wf_app_queue_drain(app);
    pthread_mutex_unlock(&app->lock);
    if (recycle) {
        app_post_scale(app);
    }
}

bool
wf_app_queue_del(app_xchg_t *x)
{
    wf_app_t *app = x->app;
    bool queued;

    pthread_mutex_lock(&app->lock);
    queued = x->state == APP_X_QUEUED;
    if (queued) {
        wf_list_del(&x->link);
        wf_list_init(&x->link);
        app->nqueued--;
    }
    pthread_mutex_unlock(&app->lock);
    return queued;
}

/* ---- Scaling (loop 0) ------------------------------------------------ */

/* How many processes to start now, as Unit's "processes" says: spare
 * idle ones, more on demand up to max, at most spare (or 1) starting at
 * once.  Under app->lock. */
static unsigned
app_scale_need(wf_app_t *app)
{
    unsigned total;
    unsigned starting;
    unsigned idle;
    unsigned max_starting = wf_max(app->spare_processes, 1u);
    unsigned need = 0;

    if (app->removed) {
        return 0;
    }
    app_count(app, &total, &starting, &idle);
    if (app->nfailed == 0 && idle + starting < app->spare_processes) {
        need = app->spare_processes - idle - starting;
    }
    if (app->nqueued > starting * app->threads) {
        need = wf_max(need, 1u);
    }
    if (!wf_list_is_empty(&app->restarts) && total == 0) {
        need = wf_max(need, 1u);
    }
    if (starting >= max_starting || total >= app->max_processes) {
        return 0;
    }
    need = wf_min(need, max_starting - starting);
    return wf_min(need, app->max_processes - total);
}

/* Stops idle processes above spare after idle_timeout, and kills those
 * that do not exit in time.  Under app->lock. */
static void
app_reap(wf_app_t *app, uint64_t now)
{
    unsigned total;
    unsigned starting;
    unsigned idle;

    app_count(app, &total, &starting, &idle);
    wf_list_for_each(l, &app->procs)
    {
        app_proc_t *proc = wf_container_of(l, app_proc_t, link);

        if (proc->state == APP_PROC_RUNNING && proc->gen == app->gen
            && proc->active == 0 && idle > app->spare_processes
            && now >= proc->idle_since + app->idle_timeout_ms) {
            proc_stop(proc);
            idle--;
        }
        if (proc->state == APP_PROC_STOPPING && proc->nopen == 0
            && !proc->exited && !proc->kill_sent && proc->pid > 0
            && now >= proc->stop_at + APP_KILL_MS) {
            wf_log_warn(0,
                        "application \"%s\": process %d did not exit, "
                        "killing it",
                        app->name, (int)proc->pid);
            proc->kill_sent = true;
            app_mgr.ops->kill(proc->pid);
        }
    }
}

static void
app_scale(wf_app_t *app)
{
    unsigned need;
    unsigned gen;

    pthread_mutex_lock(&app->lock);
    app_reap(app, wf_loop_get(0)->now);
    need = app_scale_need(app);
    gen = app->gen;
    pthread_mutex_unlock(&app->lock);
    while (need-- > 0) {
        proc_start(app, gen);
    }
}

static void
app_on_scale(wf_task_t *task)
{
    wf_app_t *app = wf_container_of(task, wf_app_t, scale);

    atomic_store(&app->scale_posted, false);
    app_scale(app);
    app_unref(app);
}

/* A removed application whose processes are all gone leaves the list. */
static void
app_mgr_on_tick(wf_timer_t *t)
{
    for (wf_list_t *l = app_mgr.apps.next, *next; l != &app_mgr.apps;
         l = next) {
        wf_app_t *app = wf_container_of(l, wf_app_t, link);
        bool gone;

        next = l->next;
        app_scale(app);
        pthread_mutex_lock(&app->lock);
        gone = app->removed && wf_list_is_empty(&app->procs);
        pthread_mutex_unlock(&app->lock);
        if (gone) {
            wf_list_del(l);
            app_unref(app);
        }
    }
    if (!wf_list_is_empty(&app_mgr.apps)) {
        wf_timer_set(wf_loop_get(0), t, APP_TICK_MS);
    } else {
        app_mgr.ticking = false;
    }
}

/* ---- Life cycle (loop 0) --------------------------------------------- */

static void
app_remove(wf_app_t *app)
{
    pthread_mutex_lock(&app->lock);
    app->removed = true;
    wf_list_for_each(l, &app->procs)
    {
        proc_stop(wf_container_of(l, app_proc_t, link));
    }
    app_queue_fail_if_hopeless(app);
    app_restarts_settle(app, UINT32_MAX, "Application was removed.");
    pthread_mutex_unlock(&app->lock);
}

static bool
app_in(const wf_app_t *app, const wf_app_desc_t *apps, size_t napps)
{
    for (size_t i = 0; i < napps; i++) {
        if (apps[i].name.len == strlen(app->name)
            && memcmp(apps[i].name.data, app->name, apps[i].name.len) == 0) {
            return true;
        }
    }
    return false;
}

/* Makes desc live: an existing application of its name (restarted if its
 * config changed) or a new one.  A new or changed one with spare
 * processes makes the configuration wait for its first one. */
static int
app_attach(wf_app_desc_t *desc)
{
    wf_app_t *app = app_find(desc->name.data, desc->name.len);
    int rc = WF_OK;

    if (app == NULL) {
        app = app_create(desc);
        if (app == NULL) {
            return WF_ERROR;
        }
        app->scale.handler = app_on_scale;
        wf_list_add_tail(&app_mgr.apps, &app->link);
        app->settle_new = true;
        app->settling = app->spare_processes > 0;
    } else {
        pthread_mutex_lock(&app->lock);
        if (app->removed || strcmp(app->json, desc->json) != 0) {
            app->prev_gen = app->gen;
            rc = app_settings_set(app, desc);
            app->gen++;
            app->removed = false;
            app->nfailed = 0;
            app->settling = app->spare_processes > 0;
        }
        pthread_mutex_unlock(&app->lock);
    }
    app->settle_gen = app->gen;
    app->settle_failed = false;
    atomic_store(&app->settle_ready, false);
    atomic_store(&app->settle_dead, false);
    app_ref(app);
    desc->live = app;
    return rc;
}

/* Ends the wait of the configuration once every application settled. */
static void
app_settle_check(void)
{
    wf_app_mgr_settled_cb cb = app_mgr.settle_cb;

    if (!app_mgr.settling) {
        return;
    }
    wf_list_for_each(l, &app_mgr.apps)
    {
        wf_app_t *app = wf_container_of(l, wf_app_t, link);

        if (app->settling && atomic_load(&app->settle_dead)) {
            pthread_mutex_lock(&app->lock);
            app_settle_fail(app, app->settle_gen, "its process exited");
            pthread_mutex_unlock(&app->lock);
        }
    }
    wf_list_for_each(l, &app_mgr.apps)
    {
        wf_app_t *app = wf_container_of(l, wf_app_t, link);

        if (app->settling && !app->settle_failed
            && !atomic_load(&app->settle_ready)
            && app_mgr.settle_error[0] == '\0') {
            return; /* still starting */
        }
    }
    app_mgr.settling = false;
    wf_timer_stop(wf_loop_get(0), &app_mgr.settle_timer);
    cb(app_mgr.settle_arg,
       app_mgr.settle_error[0] != '\0' ? app_mgr.settle_error : NULL);
}

static void
app_on_settle_task(wf_task_t *task)
{
    wf_unused(task);
    atomic_store(&app_mgr.settle_posted, false);
    app_settle_check();
}

static void
app_on_settle_timer(wf_timer_t *t)
{
    wf_unused(t);
    if (app_mgr.settle_error[0] == '\0') {
        snprintf(app_mgr.settle_error, sizeof(app_mgr.settle_error),
                 "applications did not start in time");
    }
    app_settle_check();
}

int
wf_app_mgr_reconcile(wf_app_desc_t *apps, size_t napps,
                     wf_app_mgr_settled_cb cb, void *arg)
{
    bool wait = false;

    if (!app_mgr.inited) {
        return WF_OK; /* no manager (tests of the router alone): 503 */
    }
    wf_list_for_each(l, &app_mgr.apps)
    {
        wf_container_of(l, wf_app_t, link)->settling = false;
    }
    for (size_t i = 0; i < napps; i++) {
        if (app_attach(&apps[i]) != WF_OK) {
            wf_log_error(0, "application \"%.*s\": out of memory",
                         (int)apps[i].name.len, apps[i].name.data);
            return WF_ERROR;
        }
        wait |= ((wf_app_t *)apps[i].live)->settling;
    }
    app_mgr.settle_error[0] = '\0';
    app_mgr.settle_cb = cb;
    app_mgr.settle_arg = arg;
    app_mgr.settling = false; /* no callback from inside this call */
    for (size_t i = 0; i < napps; i++) {
        app_scale(apps[i].live);
    }
    if (!app_mgr.ticking) {
        app_mgr.ticking = true;
        wf_timer_set(wf_loop_get(0), &app_mgr.tick, APP_TICK_MS);
    }
    if (!wait) {
        return WF_OK;
    }
    app_mgr.settling = true;
    wf_timer_set(wf_loop_get(0), &app_mgr.settle_timer, APP_SETTLE_MS);
    /* A start may have failed already: look on the next tick. */
    atomic_store(&app_mgr.settle_posted, true);
    wf_task_post(wf_loop_get(0), &app_mgr.settle_task);
    return WF_AGAIN;
}

static void
app_settle_clear(void)
{
    wf_list_for_each(l, &app_mgr.apps)
    {
        wf_app_t *app = wf_container_of(l, wf_app_t, link);

        app->settling = false;
        app->settle_new = false;
        app->prev_gen = app->gen;
    }
}

void
wf_app_mgr_commit(const wf_app_desc_t *apps, size_t napps)
{
    if (!app_mgr.inited) {
        return;
    }
    wf_list_for_each(l, &app_mgr.apps)
    {
        wf_app_t *app = wf_container_of(l, wf_app_t, link);

        if (!app->removed && !app_in(app, apps, napps)) {
            app_remove(app);
        }
    }
    app_settle_clear();
}

static const wf_app_desc_t *
app_desc_of(const wf_app_t *app, const wf_app_desc_t *descs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name.len == strlen(app->name)
            && memcmp(descs[i].name.data, app->name, descs[i].name.len) == 0) {
            return &descs[i];
        }
    }
    return NULL;
}

void
wf_app_mgr_rollback(const wf_app_desc_t *old, size_t nold)
{
    if (!app_mgr.inited) {
        return;
    }
    app_mgr.settling = false;
    wf_timer_stop(wf_loop_get(0), &app_mgr.settle_timer);
    wf_list_for_each(l, &app_mgr.apps)
    {
        wf_app_t *app = wf_container_of(l, wf_app_t, link);
        const wf_app_desc_t *desc = app_desc_of(app, old, nold);

        if (app->settle_new || desc == NULL) {
            if (app->settle_new) {
                app_remove(app);
            }
            continue;
        }
        pthread_mutex_lock(&app->lock);
        if (app->gen != app->prev_gen) {
            /* Back to the running config: the new processes go. */
            app_settings_set(app, desc);
            app->gen = app->prev_gen;
            app->nfailed = 0; /* the failures were the refused config's */
            wf_list_for_each(pl, &app->procs)
            {
                app_proc_t *proc = wf_container_of(pl, app_proc_t, link);

                if (proc->gen > app->gen) {
                    proc_stop(proc);
                }
            }
        }
        pthread_mutex_unlock(&app->lock);
    }
    app_settle_clear();
}

void
wf_app_mgr_release(wf_app_desc_t *apps, size_t napps)
{
    for (size_t i = 0; i < napps; i++) {
        app_unref(apps[i].live);
        apps[i].live = NULL;
    }
}

void
wf_app_mgr_on_exit(pid_t pid, int code, int signo)
{
    wf_list_for_each(l, &app_mgr.apps)
    {
        wf_app_t *app = wf_container_of(l, wf_app_t, link);

        pthread_mutex_lock(&app->lock);
        wf_list_for_each(pl, &app->procs)
        {
            app_proc_t *proc = wf_container_of(pl, app_proc_t, link);
            bool crashed;
            bool done;

            if (proc->pid != pid || proc->exited) {
                continue;
            }
            proc->exited = true;
            if (!proc->was_ready) {
                if (!proc->died_early) {
                    proc->died_early = true;
                    app->nfailed++;
                }
                wf_log_error(0,
                             "application \"%s\" failed to start: process "
                             "%d exited %s %d",
                             app->name, (int)pid,
                             signo != 0 ? "on signal" : "with code",
                             signo != 0 ? signo : code);
                if (proc->gen == app->gen) {
                    app_restarts_settle(app, proc->gen,
                                        "Failed to start application.");
                }
                app_settle_fail(app, proc->gen, "its process exited");
            }
            proc_stop(proc);
            crashed = proc->was_ready;
            if (!crashed) {
                app_queue_fail_if_hopeless(app); /* it never started */
            }
            done = proc_unlink_if_done(proc);
            pthread_mutex_unlock(&app->lock);
            if (done) {
                proc_free(proc);
            }
            /* A refused configuration first goes back to the old
             * settings: no new process of the refused one starts. */
            app_settle_check();
            app_scale(app);
            if (crashed) {
                /* A process that served and died is replaced: the queue
                 * waits for the new one, unless none could start. */
                pthread_mutex_lock(&app->lock);
                app_queue_fail_if_hopeless(app);
                pthread_mutex_unlock(&app->lock);
            }
            return;
        }
        pthread_mutex_unlock(&app->lock);
    }
}

void
wf_app_mgr_restart(const char *name, uint64_t stream)
{
    wf_app_t *app = app_find(name, strlen(name));
    app_restart_t *rs;

    if (app == NULL || app->removed) {
        app_mgr.ops->restarted(stream, "Application not found.");
        return;
    }
    rs = calloc(1, sizeof(*rs));
    if (rs == NULL) {
        app_mgr.ops->restarted(stream, "Out of memory.");
        return;
    }
    rs->stream = stream;
    pthread_mutex_lock(&app->lock);
    rs->gen = ++app->gen;
    app->nfailed = 0;
    wf_list_add_tail(&app->restarts, &rs->link);
    pthread_mutex_unlock(&app->lock);
    app_scale(app);
}

void
wf_app_mgr_status(json_t *obj)
{
    if (!app_mgr.inited || obj == NULL) {
        return;
    }
    wf_list_for_each(l, &app_mgr.apps)
    {
        wf_app_t *app = wf_container_of(l, wf_app_t, link);
        json_int_t running = 0;
        json_int_t starting = 0;
        json_int_t idle = 0;
        json_int_t active = 0;

        pthread_mutex_lock(&app->lock);
        if (app->removed) {
            pthread_mutex_unlock(&app->lock);
            continue;
        }
        wf_list_for_each(pl, &app->procs)
        {
            app_proc_t *proc = wf_container_of(pl, app_proc_t, link);

            running += proc->state == APP_PROC_RUNNING;
            starting += proc->state == APP_PROC_STARTING;
            idle += proc->state == APP_PROC_RUNNING && proc->active == 0;
            active += proc->active;
        }
        active += app->nqueued;
        pthread_mutex_unlock(&app->lock);
        json_object_set_new(obj, app->name,
                            json_pack("{s:{s:I,s:I,s:I},s:{s:I}}", "processes",
                                      "running", running, "starting", starting,
                                      "idle", idle, "requests", "active",
                                      active));
    }
}

void
wf_app_mgr_init(const wf_app_mgr_ops_t *ops)
{
    app_mgr.ops = ops;
    wf_list_init(&app_mgr.apps);
    wf_timer_init(&app_mgr.tick, app_mgr_on_tick);
    wf_timer_init(&app_mgr.settle_timer, app_on_settle_timer);
    app_mgr.settle_task.handler = app_on_settle_task;
    app_mgr.inited = true;
    wf_app_xchg_install();
}

void
wf_app_mgr_shutdown(void)
{
    if (!app_mgr.inited) {
        return;
    }
    while (!wf_list_is_empty(&app_mgr.apps)) {
        wf_app_t *app = wf_container_of(app_mgr.apps.next, wf_app_t, link);

        wf_list_del(&app->link);
        while (!wf_list_is_empty(&app->procs)) {
            app_proc_t *proc =
                wf_container_of(app->procs.next, app_proc_t, link);
            unsigned n = proc->nslots * proc->nthreads;

            wf_list_del(&proc->link);
            for (unsigned i = 0; i < n; i++) {
                wf_port_destroy(proc->socks[i].port);
            }
            proc_free(proc);
        }
        app_unref(app);
    }
}
