/* app-harness: drives a language module through its real interface
 * (apps/app_api.h) without a router, for the module's tests
 * (tests/integration/test_wsgi_module.py).  It is the runtime's side of
 * the interface reduced to a scripted queue: it dlopen()s the module,
 * calls setup() and run(), hands out the requests of a JSON script to the
 * workers' next(), streams each body to read() in the pieces the script
 * gives, and prints what the module sent back (status, fields, body, how
 * each piece was sent) as JSON on stdout.
 *
 *   app-harness MODULE.so APP_CONF.json REQUESTS.json
 *
 * A request: {"method", "target", "path", "query", "version", "headers":
 * [[name, value]...], "body": [piece...] (strings, latin-1), "chunked":
 * bool (no Content-Length), "target_index", "tls", "remote", "local",
 * "server", "local_port", "abort_after": n (read() fails after n pieces),
 * "repeat": n (served n times; the last response is printed), "gone_after":
 * n (write() fails once n pieces were sent: the client left)}.
 * Exit status: run()'s, or 1 when setup() failed. */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/app_api.h"

#define HARNESS_MAX_WORKERS 64

struct wf_app_worker {
    unsigned index;
    int ready;
};

struct wf_app_req {
    size_t id;
    json_t *spec; /* borrowed from the script */
    wf_app_head_t head;
    wf_app_field_t *fields;
    char **field_bytes; /* owned: the fields' latin-1 bytes */
    char *strs[9];      /* owned copies of the head's strings */
    size_t piece;       /* next body piece */
    size_t piece_off;
    unsigned worker;
    json_t *out; /* the response record */
    char *body;
    size_t body_len;
    int responded;
    int ended;
};

struct wf_app {
    pthread_mutex_t lock;
    json_t *script;
    size_t next;
    size_t repeated; /* times script[next] was served */
    struct wf_app_worker workers[HARNESS_MAX_WORKERS];
    unsigned nworkers;
    json_t *results; /* array, by request index */
};

static struct wf_app harness_app = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const harness_levels[] = {"alert",  "error", "warn",
                                             "notice", "info",  "debug"};

static void
harness_vlog(wf_app_log_level_t level, const char *fmt, va_list ap)
{
    char line[65536];

    vsnprintf(line, sizeof(line), fmt, ap);
    fprintf(stderr, "[%s] %s\n", harness_levels[level], line);
}

static void
harness_log(wf_app_log_level_t level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    harness_vlog(level, fmt, ap);
    va_end(ap);
}

static wf_app_worker_t *
harness_worker(wf_app_t *app, unsigned i)
{
    return i < app->nworkers ? &app->workers[i] : NULL;
}

static void
harness_set_concurrency(wf_app_worker_t *w, unsigned n)
{
    (void)w;
    (void)n;
}

static const char *
harness_str(json_t *spec, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(spec, key));

    return s != NULL ? s : def;
}

/* The script's strings are JSON (UTF-8); on the wire a head's bytes are
 * latin-1 text: U+0000..U+00FF become one byte each. */
static char *
harness_latin1(const char *utf8, size_t len, size_t *out_len)
{
    char *out = malloc(len + 1);
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)utf8[i];

        if (c >= 0xc0 && c <= 0xc3 && i + 1 < len) {
            out[n++] = (char)(((c & 0x03) << 6) | (utf8[++i] & 0x3f));
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

/* Bytes as a JSON string: each byte is the code point of its value. */
static json_t *
harness_json_bytes(const char *data, size_t len)
{
    char *buf = malloc(2 * len + 1);
    size_t n = 0;
    json_t *j;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];

        if (c < 0x80) {
            buf[n++] = (char)c;
        } else {
            buf[n++] = (char)(0xc0 | (c >> 6));
            buf[n++] = (char)(0x80 | (c & 0x3f));
        }
    }
    j = json_stringn(buf, n);
    free(buf);
    return j;
}

static wf_app_str_t
harness_own(wf_app_req_t *r, int i, const char *s)
{
    r->strs[i] = strdup(s);
    return (wf_app_str_t){r->strs[i], strlen(s)};
}

static uint64_t
harness_body_len(json_t *spec)
{
    json_t *body = json_object_get(spec, "body");
    uint64_t n = 0;

    for (size_t i = 0; i < json_array_size(body); i++) {
        n += json_string_length(json_array_get(body, i));
    }
    return n;
}

static wf_app_req_t *
harness_req_create(wf_app_t *app, size_t id, unsigned worker)
{
    wf_app_req_t *r = calloc(1, sizeof(*r));
    json_t *spec = json_array_get(app->script, id);
    json_t *headers = json_object_get(spec, "headers");

    r->id = id;
    r->spec = spec;
    r->worker = worker;
    r->head.method = harness_own(r, 0, harness_str(spec, "method", "GET"));
    r->head.target = harness_own(r, 1, harness_str(spec, "target", "/"));
    r->head.path = harness_own(r, 2, harness_str(spec, "path", "/"));
    r->head.query = harness_own(r, 3, harness_str(spec, "query", ""));
    r->head.version =
        harness_own(r, 4, harness_str(spec, "version", "HTTP/1.1"));
    r->head.remote =
        harness_own(r, 5, harness_str(spec, "remote", "127.0.0.1"));
    r->head.local = harness_own(r, 6, harness_str(spec, "local", "127.0.0.1"));
    r->head.server =
        harness_own(r, 7, harness_str(spec, "server", "localhost"));
    r->head.host = harness_own(r, 8, harness_str(spec, "host", ""));
    r->head.local_port =
        (unsigned)json_integer_value(json_object_get(spec, "local_port"));
    r->head.remote_port = 40000;
    r->head.tls = json_is_true(json_object_get(spec, "tls"));
    r->head.target_index =
        (unsigned)json_integer_value(json_object_get(spec, "target_index"));
    r->head.content_length = json_is_true(json_object_get(spec, "chunked"))
                                 ? UINT64_MAX
                                 : harness_body_len(spec);

    r->fields = calloc(json_array_size(headers) + 1, sizeof(wf_app_field_t));
    r->field_bytes = calloc(2 * json_array_size(headers) + 1, sizeof(char *));
    for (size_t i = 0; i < json_array_size(headers); i++) {
        json_t *h = json_array_get(headers, i);
        json_t *n = json_array_get(h, 0), *v = json_array_get(h, 1);
        size_t len;

        r->field_bytes[2 * i] =
            harness_latin1(json_string_value(n), json_string_length(n), &len);
        r->fields[i].name = (wf_app_str_t){r->field_bytes[2 * i], len};
        r->field_bytes[2 * i + 1] =
            harness_latin1(json_string_value(v), json_string_length(v), &len);
        r->fields[i].value = (wf_app_str_t){r->field_bytes[2 * i + 1], len};
    }
    r->head.nfields = json_array_size(headers);
    r->head.fields = r->fields;

    r->out = json_pack("{s:I, s:i, s:[], s:[], s:b, s:b}", "id", (json_int_t)id,
                       "worker", (int)worker, "fields", "pieces", "responded",
                       0, "ok", 0);
    return r;
}

static int
harness_next(wf_app_worker_t *w, wf_app_req_t **req, int timeout_ms)
{
    wf_app_t *app = &harness_app;
    size_t id;

    (void)timeout_ms;
    pthread_mutex_lock(&app->lock);
    id = app->next;
    if (id < json_array_size(app->script)) {
        /* "repeat": n serves the same request n times (for profiling);
         * the last one's response is kept. */
        json_t *spec = json_array_get(app->script, id);
        json_int_t n = json_integer_value(json_object_get(spec, "repeat"));

        if (++app->repeated >= (size_t)(n > 1 ? n : 1)) {
            app->next++;
            app->repeated = 0;
        }
    }
    pthread_mutex_unlock(&app->lock);

    if (id >= json_array_size(app->script)) {
        return WF_APP_DONE;
    }
    *req = harness_req_create(app, id, w->index);
    return WF_APP_OK;
}

static int
harness_worker_fd(wf_app_worker_t *w)
{
    (void)w;
    return -1;
}

static int
harness_dispatch(wf_app_worker_t *w, const wf_app_events_t *ev, void *ctx)
{
    (void)w;
    (void)ev;
    (void)ctx;
    return WF_APP_ERROR; /* the harness serves pulling modules only */
}

static const wf_app_head_t *
harness_head(wf_app_req_t *req)
{
    return &req->head;
}

/* The body in the script's pieces: one read() never crosses a piece, as
 * one never crosses a message. */
static ssize_t
harness_read(wf_app_req_t *r, void *buf, size_t len)
{
    json_t *body = json_object_get(r->spec, "body");
    json_t *abort_after = json_object_get(r->spec, "abort_after");
    json_t *p;
    size_t n;

    while ((p = json_array_get(body, r->piece)) != NULL
           && r->piece_off == json_string_length(p)) {
        r->piece++;
        r->piece_off = 0;
    }
    if (json_is_integer(abort_after)
        && r->piece >= (size_t)json_integer_value(abort_after)) {
        return WF_APP_ERROR;
    }
    if (p == NULL) {
        return 0;
    }
    n = json_string_length(p) - r->piece_off;
    n = n < len ? n : len;
    memcpy(buf, json_string_value(p) + r->piece_off, n);
    r->piece_off += n;
    return (ssize_t)n;
}

static void
harness_body_add(wf_app_req_t *r, const char *how, const void *data, size_t len)
{
    r->body = realloc(r->body, r->body_len + len + 1);
    if (len > 0) {
        memcpy(r->body + r->body_len, data, len);
    }
    r->body_len += len;
    json_array_append_new(json_object_get(r->out, "pieces"),
                          json_pack("[s, I]", how, (json_int_t)len));
}

static int
harness_respond(wf_app_req_t *r, unsigned status, const wf_app_field_t *f,
                size_t n, const void *body, size_t len, int last)
{
    json_t *fields = json_object_get(r->out, "fields");

    if (r->responded) {
        harness_log(WF_APP_LOG_ALERT, "harness: respond() twice");
        return WF_APP_ERROR;
    }
    r->responded = 1;
    json_object_set_new(r->out, "status", json_integer(status));
    json_object_set_new(r->out, "responded", json_true());
    json_object_set_new(r->out, "last", json_boolean(last));
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(
            fields,
            json_pack("[o, o]",
                      harness_json_bytes(f[i].name.data, f[i].name.len),
                      harness_json_bytes(f[i].value.data, f[i].value.len)));
    }
    harness_body_add(r, "respond", body, len);
    return WF_APP_OK;
}

static ssize_t
harness_write(wf_app_req_t *r, const void *data, size_t len)
{
    if (!r->responded) {
        harness_log(WF_APP_LOG_ALERT, "harness: write() before respond()");
        return WF_APP_ERROR;
    }
    /* "gone_after": n: the client is gone after n writes. */
    json_t *gone = json_object_get(r->spec, "gone_after");

    if (json_is_integer(gone)
        && json_array_size(json_object_get(r->out, "pieces"))
               >= (size_t)json_integer_value(gone)) {
        return WF_APP_ERROR;
    }
    harness_body_add(r, "write", data, len);
    return (ssize_t)len;
}

static int
harness_send_file(wf_app_req_t *r, int fd, off_t off, off_t len)
{
    char *buf = malloc((size_t)len + 1);
    ssize_t n = pread(fd, buf, (size_t)len, off);

    if (!r->responded || n != (ssize_t)len) {
        harness_log(WF_APP_LOG_ALERT, "harness: bad send_file()");
        free(buf);
        return WF_APP_ERROR;
    }
    harness_body_add(r, "file", buf, (size_t)len);
    free(buf);
    return WF_APP_OK;
}

static void
harness_end(wf_app_req_t *r, int ok)
{
    wf_app_t *app = &harness_app;

    json_object_set_new(r->out, "ok", json_boolean(ok));
    json_object_set_new(
        r->out, "body",
        harness_json_bytes(r->body != NULL ? r->body : "", r->body_len));
    pthread_mutex_lock(&app->lock);
    json_array_set_new(app->results, r->id, r->out); /* frees an earlier */
    pthread_mutex_unlock(&app->lock);

    for (int i = 0; i < 9; i++) {
        free(r->strs[i]);
    }
    for (size_t i = 0; i < 2 * r->head.nfields; i++) {
        free(r->field_bytes[i]);
    }
    free(r->field_bytes);
    free(r->fields);
    free(r->body);
    free(r);
}

static void
harness_set_data(wf_app_req_t *r, void *data)
{
    (void)r;
    (void)data;
}

static void *
harness_data(wf_app_req_t *r)
{
    (void)r;
    return NULL;
}

static const wf_app_rt_t harness_rt = {
    .abi = WF_APP_ABI,
    .log = harness_log,
    .vlog = harness_vlog,
    .worker = harness_worker,
    .set_concurrency = harness_set_concurrency,
    .next = harness_next,
    .worker_fd = harness_worker_fd,
    .dispatch = harness_dispatch,
    .head = harness_head,
    .read = harness_read,
    .read_nb = harness_read,
    .respond = harness_respond,
    .write = harness_write,
    .write_nb = harness_write,
    .send_file = harness_send_file,
    .end = harness_end,
    .set_data = harness_set_data,
    .data = harness_data,
};

/* The conf as the runtime builds it: threads and the targets' names in
 * the config's order. */
static void
harness_conf(wf_app_conf_t *conf, json_t *app_conf, char *json)
{
    json_t *threads = json_object_get(app_conf, "threads");
    json_t *targets = json_object_get(app_conf, "targets");
    size_t i = 0;

    conf->name = "harness";
    conf->json = json;
    conf->threads =
        json_is_integer(threads) ? (unsigned)json_integer_value(threads) : 1;
    conf->tmpdir = "/tmp";
    conf->ntargets = (unsigned)json_object_size(targets);
    conf->targets = calloc(conf->ntargets + 1, sizeof(char *));
    for (void *it = json_object_iter(targets); it != NULL;
         it = json_object_iter_next(targets, it)) {
        conf->targets[i++] = json_object_iter_key(it);
    }
}

int
main(int argc, char **argv)
{
    const wf_app_module_t *m;
    wf_app_conf_t conf = {0};
    json_error_t err;
    json_t *app_conf;
    void *h, *data = NULL;
    char *json;
    int status;

    if (argc != 4) {
        fprintf(stderr, "usage: app-harness MODULE APP.json REQUESTS.json\n");
        return 2;
    }
    app_conf = json_load_file(argv[2], JSON_PRESERVE_ORDER, &err);
    harness_app.script = json_load_file(argv[3], 0, &err);
    if (app_conf == NULL || harness_app.script == NULL) {
        fprintf(stderr, "app-harness: %s\n", err.text);
        return 2;
    }
    h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    m = h != NULL ? dlsym(h, WF_APP_MODULE_SYMBOL) : NULL;
    if (m == NULL || m->abi != WF_APP_ABI) {
        fprintf(stderr, "app-harness: %s\n", h == NULL ? dlerror() : "abi");
        return 2;
    }
    printf("{\"type\": \"%s\", \"version\": \"%s\", ", m->type, m->version);
    fflush(stdout);

    json = json_dumps(app_conf, JSON_COMPACT | JSON_PRESERVE_ORDER);
    harness_conf(&conf, app_conf, json);
    harness_app.nworkers = conf.threads;
    for (unsigned i = 0; i < conf.threads && i < HARNESS_MAX_WORKERS; i++) {
        harness_app.workers[i].index = i;
    }
    harness_app.results = json_array();
    for (size_t i = 0; i < json_array_size(harness_app.script); i++) {
        json_array_append_new(harness_app.results, json_null());
    }

    if (m->setup(&harness_rt, &harness_app, &conf, &data) != WF_APP_OK) {
        printf("\"setup\": false}\n");
        return 1;
    }
    status = m->run(&harness_app, data);

    json = json_dumps(harness_app.results, JSON_COMPACT);
    printf("\"setup\": true, \"status\": %d, \"responses\": %s}\n", status,
           json);
    return status;
}
