#include "http/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/loop.h"
#include "http/req.h"

char *(*wf_metrics_status_source)(void);

typedef struct mt_buf {
    char *p;
    size_t len;
    size_t cap;
    bool failed;
} mt_buf_t;

static void mt_printf(mt_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
mt_printf(mt_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        if (b->failed) {
            return;
        }
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        char *p = n < 0 ? NULL : realloc(b->p, b->cap * 2 + (size_t)n);

        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = b->cap * 2 + (size_t)n;
    }
}

/* A label value with \, " and newline escaped (exposition format). */
static void
mt_label(mt_buf_t *b, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"') {
            mt_printf(b, "\\%c", *v);
        } else if (*v == '\n') {
            mt_printf(b, "\\n");
        } else {
            mt_printf(b, "%c", *v);
        }
    }
}

static void
mt_family(mt_buf_t *b, const char *name, const char *type, const char *help)
{
    mt_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static double
mt_num(const json_t *obj, const char *path)
{
    char key[64];
    const char *dot = strchr(path, '.');

    if (dot == NULL) {
        return json_number_value(json_object_get(obj, path));
    }
    snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
    return mt_num(json_object_get(obj, key), dot + 1);
}

/* ---- the fixed figures -------------------------------------------------- */

typedef struct mt_metric {
    const char *path; /* in the object the table is applied to */
    const char *name;
    const char *type; /* "counter", "gauge" */
    const char *help;
} mt_metric_t;

static const mt_metric_t mt_root[] = {
    {"connections.accepted", "wharf_connections_accepted_total", "counter",
     "Client connections accepted."},
    {"connections.active", "wharf_connections_active", "gauge",
     "Client connections with a request in progress."},
    {"connections.idle", "wharf_connections_idle", "gauge",
     "Client connections waiting for a request."},
    {"connections.closed", "wharf_connections_closed_total", "counter",
     "Client connections closed."},
    {"requests.total", "wharf_requests_total", "counter", "Requests received."},
    {"access_log.written", "wharf_access_log_lines_written_total", "counter",
     "Access log lines written."},
    {"access_log.dropped", "wharf_access_log_lines_dropped_total", "counter",
     "Access log lines dropped (stalled or failed writes)."},
};

static const mt_metric_t mt_app[] = {
    {"processes.running", "wharf_application_processes_running", "gauge",
     "Application processes running."},
    {"processes.starting", "wharf_application_processes_starting", "gauge",
     "Application processes starting."},
    {"processes.idle", "wharf_application_processes_idle", "gauge",
     "Application processes without a request."},
    {"requests.active", "wharf_application_requests_active", "gauge",
     "Requests in an application (running or queued)."},
};

static const mt_metric_t mt_upstream[] = {
    {"requests", "wharf_upstream_requests_total", "counter",
     "Requests proxied to a server of the upstream."},
    {"failures", "wharf_upstream_failures_total", "counter",
     "Proxied requests that failed (connect, timeout, invalid response)."},
    {"queued", "wharf_upstream_queued_total", "counter",
     "Requests that waited in the upstream's queue (max_conns)."},
    {"rejected", "wharf_upstream_rejected_total", "counter",
     "Requests answered 503 (all servers down, queue full or timed out)."},
    {"queue", "wharf_upstream_queue_length", "gauge",
     "Requests in the upstream's queue now."},
};

static const mt_metric_t mt_server[] = {
    {"requests", "wharf_upstream_server_requests_total", "counter",
     "Requests proxied to the server."},
    {"failures", "wharf_upstream_server_failures_total", "counter",
     "Requests to the server that failed."},
    {"active", "wharf_upstream_server_active_connections", "gauge",
     "Connections to the server in use (all threads)."},
    {"idle", "wharf_upstream_server_idle_connections", "gauge",
     "Keep-alive connections to the server that are idle."},
    {"checks", "wharf_upstream_server_health_checks_total", "counter",
     "Active health checks run against the server."},
};

static void
mt_fixed(mt_buf_t *b, const json_t *status)
{
    for (size_t i = 0; i < wf_nitems(mt_root); i++) {
        const mt_metric_t *m = &mt_root[i];

        mt_family(b, m->name, m->type, m->help);
        mt_printf(b, "%s %.17g\n", m->name, mt_num(status, m->path));
    }
}

static void
mt_apps(mt_buf_t *b, const json_t *apps)
{
    for (size_t i = 0; i < wf_nitems(mt_app); i++) {
        const mt_metric_t *m = &mt_app[i];
        const char *name;
        json_t *app;

        mt_family(b, m->name, m->type, m->help);
        json_object_foreach((json_t *)apps, name, app)
        {
            mt_printf(b, "%s{application=\"", m->name);
            mt_label(b, name);
            mt_printf(b, "\"} %.17g\n", mt_num(app, m->path));
        }
    }
}

static void
mt_upstreams(mt_buf_t *b, const json_t *ups)
{
    const char *name, *srv;
    json_t *u, *s;

    for (size_t i = 0; i < wf_nitems(mt_upstream); i++) {
        mt_family(b, mt_upstream[i].name, mt_upstream[i].type,
                  mt_upstream[i].help);
        json_object_foreach((json_t *)ups, name, u)
        {
            mt_printf(b, "%s{upstream=\"", mt_upstream[i].name);
            mt_label(b, name);
            mt_printf(b, "\"} %.17g\n", mt_num(u, mt_upstream[i].path));
        }
    }
    for (size_t i = 0; i <= wf_nitems(mt_server); i++) {
        bool up = i == wf_nitems(mt_server); /* the health, last */
        const char *fam = up ? "wharf_upstream_server_up" : mt_server[i].name;

        mt_family(b, fam, up ? "gauge" : mt_server[i].type,
                  up ? "1 when the server may take requests, 0 when it is "
                       "down (passive or active health)."
                     : mt_server[i].help);
        json_object_foreach((json_t *)ups, name, u)
        {
            json_object_foreach(json_object_get(u, "servers"), srv, s)
            {
                const char *h = json_string_value(json_object_get(s, "health"));

                mt_printf(b, "%s{upstream=\"", fam);
                mt_label(b, name);
                mt_printf(b, "\",server=\"");
                mt_label(b, srv);
                mt_printf(b, "\"} %.17g\n",
                          up ? (double)(h != NULL && strcmp(h, "up") == 0)
                             : mt_num(s, mt_server[i].path));
            }
        }
    }
}

static void
mt_modules(mt_buf_t *b, const json_t *mods)
{
    const char *name;
    json_t *m;

    mt_family(b, "wharf_module_info", "gauge",
              "Language modules loaded (the value is always 1).");
    json_object_foreach((json_t *)mods, name, m)
    {
        size_t n = json_is_array(m) ? json_array_size(m) : 1;

        for (size_t i = 0; i < n; i++) {
            const json_t *one = json_is_array(m) ? json_array_get(m, i) : m;
            const char *v = json_string_value(json_object_get(one, "version"));

            mt_printf(b, "wharf_module_info{module=\"");
            mt_label(b, name);
            mt_printf(b, "\",version=\"");
            mt_label(b, v != NULL ? v : "");
            mt_printf(b, "\"} 1\n");
        }
    }
}

/* ---- keys added later ---------------------------------------------------- */

static const char *const mt_known[] = {
    "modules",      "connections", "requests",
    "applications", "access_log",  "upstreams",
};

/* prefix + "_" + key, with what a metric name cannot hold as '_'. */
static void
mt_name(char *out, size_t cap, const char *prefix, const char *key)
{
    size_t n = (size_t)snprintf(out, cap, "%s_", prefix);

    for (const char *k = key; *k != '\0' && n < cap - 1; k++) {
        bool ok = (*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z')
                  || (*k >= '0' && *k <= '9');

        out[n++] = ok ? *k : '_';
    }
    out[wf_min(n, cap - 1)] = '\0';
}

/* The numeric leaves of v as prefix_..., untyped: a /status key this file
 * does not map yet still reaches the scraper. */
static void
mt_generic(mt_buf_t *b, const json_t *v, const char *prefix)
{
    const char *key;
    json_t *sub;
    char name[256];

    if (json_is_number(v)) {
        mt_family(b, prefix, "untyped", "A /status figure.");
        mt_printf(b, "%s %.17g\n", prefix, json_number_value(v));
        return;
    }
    json_object_foreach((json_t *)v, key, sub)
    {
        mt_name(name, sizeof(name), prefix, key);
        mt_generic(b, sub, name);
    }
}

char *
wf_metrics_render(const json_t *status, size_t *len)
{
    mt_buf_t b = {.p = malloc(8192), .cap = 8192};
    const char *key;
    json_t *v;

    if (b.p == NULL) {
        return NULL;
    }
    mt_fixed(&b, status);
    mt_apps(&b, json_object_get(status, "applications"));
    mt_upstreams(&b, json_object_get(status, "upstreams"));
    mt_modules(&b, json_object_get(status, "modules"));
    json_object_foreach((json_t *)status, key, v)
    {
        bool known = false;
        char name[256];

        for (size_t i = 0; i < wf_nitems(mt_known); i++) {
            known |= strcmp(key, mt_known[i]) == 0;
        }
        if (!known) {
            mt_name(name, sizeof(name), "wharf", key);
            mt_generic(&b, v, name);
        }
    }
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* ---- the "metrics" route action ----------------------------------------- */

typedef struct mt_job {
    wf_task_t to_main; /* rendering, on loop 0 */
    wf_task_t back;    /* answering, on loop */
    wf_loop_t *loop;   /* r's */
    wf_req_t *r;       /* NULL once r went away */
    char *text;        /* owned; r's body once answered */
    size_t len;
    bool inflight; /* a task is on its way: back frees a job without r */
} mt_job_t;

static void
mt_job_free(mt_job_t *job)
{
    free(job->text);
    free(job);
}

static void
mt_on_back(wf_task_t *task)
{
    mt_job_t *job = wf_container_of(task, mt_job_t, back);
    wf_req_t *r = job->r;

    job->inflight = false;
    if (r == NULL) {
        mt_job_free(job);
        return;
    }
    r->on_abort = NULL;
    if (job->text == NULL) {
        wf_req_respond_error(r, 500);
        return;
    }
    r->resp.status = 200;
    r->resp.content_type = wf_string(WF_METRICS_CONTENT_TYPE);
    r->resp.body = wf_str_make(job->text, job->len);
    r->resp.content_length = job->len;
    wf_req_respond(r);
}

static void
mt_on_main(wf_task_t *task)
{
    mt_job_t *job = wf_container_of(task, mt_job_t, to_main);
    char *text = wf_metrics_status_source();
    json_t *status = text != NULL ? json_loads(text, 0, NULL) : NULL;

    free(text);
    if (status != NULL) {
        job->text = wf_metrics_render(status, &job->len);
        json_decref(status);
    }
    wf_task_post(job->loop, &job->back);
}

static void
mt_on_abort(wf_req_t *r)
{
    mt_job_t *job = r->metrics;

    r->metrics = NULL;
    job->r = NULL; /* the back task frees it */
}

void
wf_metrics_serve(wf_req_t *r)
{
    mt_job_t *job;

    if (wf_metrics_status_source == NULL || wf_loops_count() == 0) {
        wf_req_respond_error(r, 503);
        return;
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL) {
        wf_req_respond_error(r, 500);
        return;
    }
    job->loop = r->loop;
    job->r = r;
    job->inflight = true;
    job->to_main.handler = mt_on_main;
    job->back.handler = mt_on_back;
    r->metrics = job;
    r->on_abort = mt_on_abort;
    wf_task_post(wf_loop_get(0), &job->to_main);
}

void
wf_metrics_req_release(wf_req_t *r)
{
    mt_job_t *job = r->metrics;

    if (job == NULL) {
        return;
    }
    r->metrics = NULL;
    if (job->inflight) {
        job->r = NULL; /* released without an abort: back frees it */
        return;
    }
    mt_job_free(job);
}
