/* ASGI in the Python module: detection, one asyncio loop per worker
 * thread fed by rt->dispatch(), and what the scope types share.  Each
 * worker's loop watches rt->worker_fd() with loop.add_reader(); a
 * readable fd runs rt->dispatch(), whose events start requests (a task
 * per request) and wake the futures that receive() and send() returned.
 * docs/internals/apps.md, "The Python module: ASGI, WebSocket, lifespan". */
#include "apps/python/asgi.h"

#include <stdlib.h>
#include <string.h>

wf_asgi_strs_t wf_asgi_str;
PyObject *wf_asgi_ready;

static const struct {
    PyObject **p;
    const char *s;
} asgi_str_table[] = {
    {&wf_asgi_str.type, "type"},
    {&wf_asgi_str.asgi, "asgi"},
    {&wf_asgi_str.version, "version"},
    {&wf_asgi_str.spec_version, "spec_version"},
    {&wf_asgi_str.v3_0, "3.0"},
    {&wf_asgi_str.v2_0, "2.0"},
    {&wf_asgi_str.v2_1, "2.1"},
    {&wf_asgi_str.v2_3, "2.3"},
    {&wf_asgi_str.http_version, "http_version"},
    {&wf_asgi_str.v1_0, "1.0"},
    {&wf_asgi_str.v1_1, "1.1"},
    {&wf_asgi_str.v2, "2"},
    {&wf_asgi_str.method, "method"},
    {&wf_asgi_str.scheme, "scheme"},
    {&wf_asgi_str.http, "http"},
    {&wf_asgi_str.https, "https"},
    {&wf_asgi_str.ws, "ws"},
    {&wf_asgi_str.wss, "wss"},
    {&wf_asgi_str.path, "path"},
    {&wf_asgi_str.raw_path, "raw_path"},
    {&wf_asgi_str.query_string, "query_string"},
    {&wf_asgi_str.root_path, "root_path"},
    {&wf_asgi_str.headers, "headers"},
    {&wf_asgi_str.client, "client"},
    {&wf_asgi_str.server, "server"},
    {&wf_asgi_str.state, "state"},
    {&wf_asgi_str.extensions, "extensions"},
    {&wf_asgi_str.subprotocols, "subprotocols"},
    {&wf_asgi_str.subprotocol, "subprotocol"},
    {&wf_asgi_str.body, "body"},
    {&wf_asgi_str.more_body, "more_body"},
    {&wf_asgi_str.status, "status"},
    {&wf_asgi_str.code, "code"},
    {&wf_asgi_str.reason, "reason"},
    {&wf_asgi_str.bytes, "bytes"},
    {&wf_asgi_str.text, "text"},
    {&wf_asgi_str.message, "message"},
    {&wf_asgi_str.http_request, "http.request"},
    {&wf_asgi_str.http_disconnect, "http.disconnect"},
    {&wf_asgi_str.http_response_start, "http.response.start"},
    {&wf_asgi_str.http_response_body, "http.response.body"},
    {&wf_asgi_str.http_response_pathsend, "http.response.pathsend"},
    {&wf_asgi_str.websocket, "websocket"},
    {&wf_asgi_str.websocket_connect, "websocket.connect"},
    {&wf_asgi_str.websocket_accept, "websocket.accept"},
    {&wf_asgi_str.websocket_receive, "websocket.receive"},
    {&wf_asgi_str.websocket_send, "websocket.send"},
    {&wf_asgi_str.websocket_close, "websocket.close"},
    {&wf_asgi_str.websocket_disconnect, "websocket.disconnect"},
    {&wf_asgi_str.lifespan, "lifespan"},
    {&wf_asgi_str.lifespan_startup, "lifespan.startup"},
    {&wf_asgi_str.lifespan_shutdown, "lifespan.shutdown"},
    {&wf_asgi_str.lifespan_startup_complete, "lifespan.startup.complete"},
    {&wf_asgi_str.lifespan_startup_failed, "lifespan.startup.failed"},
    {&wf_asgi_str.lifespan_shutdown_complete, "lifespan.shutdown.complete"},
    {&wf_asgi_str.lifespan_shutdown_failed, "lifespan.shutdown.failed"},
    {&wf_asgi_str.set_result, "set_result"},
    {&wf_asgi_str.set_exception, "set_exception"},
    {&wf_asgi_str.result, "result"},
    {&wf_asgi_str.done, "done"},
    {&wf_asgi_str.cancel, "cancel"},
    {&wf_asgi_str.add_done_callback, "add_done_callback"},
    {&wf_asgi_str.receive, "receive"},
    {&wf_asgi_str.send, "send"},
    {&wf_asgi_str.on_done, "_done"},
    {&wf_asgi_str.empty, ""},
};

static int asgi_names_init(void);

/* ---- the completed awaitable -------------------------------------------- */

static PyObject *
asgi_ready_await(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

/* An iterator that stops at once: `await` yields None without a trip
 * through the loop. */
static PyObject *
asgi_ready_next(PyObject *self)
{
    (void)self;
    return NULL;
}

static PyAsyncMethods asgi_ready_async = {
    .am_await = asgi_ready_await,
};

static PyTypeObject asgi_ready_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wharf.asgi_ready",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_as_async = &asgi_ready_async,
    .tp_iter = asgi_ready_await,
    .tp_iternext = asgi_ready_next,
};

int
wf_asgi_init(void)
{
    if (wf_asgi_ready != NULL) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(asgi_str_table) / sizeof(asgi_str_table[0]);
         i++) {
        *asgi_str_table[i].p = PyUnicode_InternFromString(asgi_str_table[i].s);
        if (*asgi_str_table[i].p == NULL) {
            return -1;
        }
    }
    if (PyType_Ready(&asgi_ready_type) != 0 || asgi_names_init() != 0
        || wf_asgi_task_init() != 0 || wf_asgi_http_init() != 0
        || wf_asgi_ws_init() != 0 || wf_asgi_lifespan_init() != 0) {
        return -1;
    }
    wf_asgi_ready = PyObject_New(PyObject, &asgi_ready_type);
    return wf_asgi_ready == NULL ? -1 : 0;
}

/* ---- detection (Unit's rule) -------------------------------------------- */

/* The Python function behind callable: itself, a method's function, or
 * its __call__'s.  New reference; NULL (no exception) when there is
 * none. */
static PyObject *
asgi_func_get(PyObject *obj)
{
    PyObject *call, *f = NULL;

    if (PyFunction_Check(obj)) {
        Py_INCREF(obj);
        return obj;
    }
    if (PyMethod_Check(obj)) {
        f = PyMethod_GET_FUNCTION(obj);
        Py_INCREF(f);
        return f;
    }
    call = PyObject_GetAttrString(obj, "__call__");
    if (call == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (PyFunction_Check(call)) {
        return call;
    }
    if (PyMethod_Check(call) && PyFunction_Check(PyMethod_GET_FUNCTION(call))) {
        f = PyMethod_GET_FUNCTION(call);
        Py_INCREF(f);
    }
    Py_DECREF(call);
    return f;
}

/* As Unit: ASGI when the function is a coroutine function, or takes one
 * argument (an ASGI 2 application taking the scope). */
int
wf_py_asgi_detect(PyObject *callable)
{
    PyCodeObject *code;
    PyObject *f;
    int asgi;

    if (wf_asgi_init() != 0) {
        return -1;
    }
    f = asgi_func_get(callable);
    if (f == NULL) {
        return 0;
    }
    code = (PyCodeObject *)PyFunction_GET_CODE(f);
    asgi = (code->co_flags & CO_COROUTINE) != 0 || code->co_argcount == 1;
    Py_DECREF(f);
    return asgi;
}

/* ASGI 2 ("legacy") when the function is not a coroutine function. */
static void
asgi_legacy_set(wf_py_target_t *t)
{
    PyObject *f = asgi_func_get(t->callable);

    if (f == NULL) {
        return;
    }
    t->asgi_legacy =
        (((PyCodeObject *)PyFunction_GET_CODE(f))->co_flags & CO_COROUTINE)
        == 0;
    Py_DECREF(f);
}

/* ---- helpers of the scope types ----------------------------------------- */

PyObject *
wf_asgi_msg_new(PyObject *type)
{
    PyObject *msg = PyDict_New();

    if (msg != NULL && PyDict_SetItem(msg, wf_asgi_str.type, type) != 0) {
        Py_CLEAR(msg);
    }
    return msg;
}

PyObject *
wf_asgi_scope_new(PyObject *type, PyObject *spec_version)
{
    PyObject *scope, *asgi;

    scope = wf_asgi_msg_new(type);
    if (scope == NULL) {
        return NULL;
    }
    asgi = PyDict_New();
    if (asgi == NULL
        || PyDict_SetItem(asgi, wf_asgi_str.version, wf_asgi_str.v3_0) != 0
        || PyDict_SetItem(asgi, wf_asgi_str.spec_version, spec_version) != 0
        || PyDict_SetItem(scope, wf_asgi_str.asgi, asgi) != 0) {
        Py_XDECREF(asgi);
        Py_DECREF(scope);
        return NULL;
    }
    Py_DECREF(asgi);
    return scope;
}

PyObject *
wf_asgi_future_new(wf_asgi_worker_t *wk)
{
    return PyObject_CallNoArgs(wk->create_future);
}

/* True when fut can still take a result. */
static bool
asgi_future_is_pending(wf_asgi_worker_t *wk, PyObject *fut)
{
    PyObject *done = PyObject_CallMethodNoArgs(fut, wf_asgi_str.done);
    bool pending = done == Py_False;

    if (done == NULL) {
        wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                            "Python failed to call 'future.done'");
    }
    Py_XDECREF(done);
    return pending;
}

void
wf_asgi_future_resolve(wf_asgi_worker_t *wk, PyObject *fut, PyObject *result)
{
    PyObject *res;

    if (asgi_future_is_pending(wk, fut)) {
        res = PyObject_CallMethodOneArg(fut, wf_asgi_str.set_result, result);
        if (res == NULL) {
            wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                                "Python failed to call 'future.set_result'");
        }
        Py_XDECREF(res);
    }
    Py_DECREF(fut);
}

void
wf_asgi_future_fail(wf_asgi_worker_t *wk, PyObject *fut, PyObject *exc_type,
                    const char *text)
{
    PyObject *exc, *res = NULL;

    if (asgi_future_is_pending(wk, fut)) {
        exc = PyObject_CallFunction(exc_type, "s", text);
        if (exc != NULL) {
            res =
                PyObject_CallMethodOneArg(fut, wf_asgi_str.set_exception, exc);
            Py_DECREF(exc);
        }
        if (res == NULL) {
            wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                                "Python failed to call "
                                "'future.set_exception'");
        }
        Py_XDECREF(res);
    }
    Py_DECREF(fut);
}

/* The application's coroutine for scope: ASGI 3 app(scope, receive,
 * send), or ASGI 2 app(scope)(receive, send).  New reference or NULL. */
static PyObject *
asgi_app_coro(wf_py_target_t *t, PyObject *scope, PyObject *receive,
              PyObject *send)
{
    PyObject *stage2, *coro;

    if (!t->asgi_legacy) {
        return PyObject_CallFunctionObjArgs(t->callable, scope, receive, send,
                                            NULL);
    }
    stage2 = PyObject_CallOneArg(t->callable, scope);
    if (stage2 == NULL) {
        return NULL;
    }
    if (!PyCallable_Check(stage2)) {
        Py_DECREF(stage2);
        PyErr_SetString(PyExc_TypeError,
                        "Legacy ASGI application returns not a callable");
        return NULL;
    }
    coro = PyObject_CallFunctionObjArgs(stage2, receive, send, NULL);
    Py_DECREF(stage2);
    return coro;
}

int
wf_asgi_app_call(wf_asgi_worker_t *wk, wf_py_target_t *t, PyObject *scope,
                 PyObject *obj, wf_app_log_level_t level, const char *what,
                 wf_asgi_start_t how)
{
    PyObject *receive, *send = NULL, *coro = NULL;
    int rc = -1;

    receive = PyObject_GetAttr(obj, wf_asgi_str.receive);
    if (receive != NULL) {
        send = PyObject_GetAttr(obj, wf_asgi_str.send);
    }
    if (send != NULL) {
        coro = asgi_app_coro(t, scope, receive, send);
    }
    if (coro != NULL && !PyCoro_CheckExact(coro)) {
        PyErr_SetString(PyExc_TypeError,
                        "Application result type is not a coroutine");
        Py_CLEAR(coro);
    }
    if (coro != NULL) {
        rc = wf_asgi_task_start(wk, coro, obj, how == WF_ASGI_START_EAGER);
    }
    if (rc != 0) {
        wf_py_log_exception(wk->app, level, "%s", what);
    }
    Py_XDECREF(coro);
    Py_XDECREF(send);
    Py_XDECREF(receive);
    return rc;
}

/* Runs rt->dispatch() again on the next loop iteration: the runtime says
 * WF_APP_DONE only from dispatch(), and a worker that is stopping may see
 * no more readiness once its last request ended. */
void
wf_asgi_dispatch_soon(wf_asgi_worker_t *wk)
{
    PyObject *res;

    if (wk->done || wk->dispatch_soon || wk->in_dispatch) {
        return; /* within dispatch(), its own end says WF_APP_DONE */
    }
    wk->dispatch_soon = 1;
    res = PyObject_CallOneArg(wk->call_soon, wk->dispatch);
    if (res == NULL) {
        wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                            "Python failed to call 'loop.call_soon'");
    }
    Py_XDECREF(res);
}

void
wf_asgi_req_end(wf_asgi_worker_t *wk, wf_app_req_t *req, int ok)
{
    PyObject *obj = wk->rt->data(req);

    wk->rt->set_data(req, NULL);
    wk->rt->end(req, ok);
    wk->active--;
    Py_XDECREF(obj); /* the reference on_request gave the runtime */
    if (wk->active == 0) {
        wf_asgi_dispatch_soon(wk);
    }
}

/* ---- the scope's common keys -------------------------------------------- */

static PyObject *
asgi_addr_build(const wf_app_str_t *addr, unsigned port)
{
    if (addr->len >= 5 && memcmp(addr->data, "unix:", 5) == 0) {
        return Py_BuildValue("(s#O)", addr->data + 5,
                             (Py_ssize_t)(addr->len - 5), Py_None);
    }
    return Py_BuildValue("(s#I)", addr->data, (Py_ssize_t)addr->len, port);
}

/* (host, port) of a client or server: a tuple of immutable objects, so
 * the one made for the same address and port is handed out again (a
 * keep-alive connection's requests, every request's server). */
static PyObject *
asgi_addr_new(wf_asgi_worker_t *wk, const wf_app_str_t *addr, unsigned port)
{
    wf_asgi_addr_t *a = &wk->addrs[port % WF_ASGI_ADDRS];

    if (a->tuple == NULL || a->port != port || a->len != addr->len
        || addr->len > sizeof(a->addr)
        || memcmp(a->addr, addr->data, addr->len) != 0) {
        PyObject *t = asgi_addr_build(addr, port);

        if (t == NULL || addr->len > sizeof(a->addr)) {
            return t;
        }
        Py_XSETREF(a->tuple, t);
        a->port = port;
        a->len = addr->len;
        memcpy(a->addr, addr->data, addr->len);
    }
    Py_INCREF(a->tuple);
    return a->tuple;
}

void
wf_asgi_addrs_clear(wf_asgi_worker_t *wk)
{
    for (unsigned i = 0; i < WF_ASGI_ADDRS; i++) {
        Py_CLEAR(wk->addrs[i].tuple);
    }
}

/* Field names most requests carry, lower case: one bytes object each,
 * shared by every request (bytes are immutable). */
static const char *const asgi_common_names[] = {
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "content-type",
    "content-length",
    "cookie",
    "referer",
    "origin",
    "cache-control",
    "upgrade-insecure-requests",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-real-ip",
    "authorization",
    "if-none-match",
    "if-modified-since",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "pragma",
    "priority",
};

#define ASGI_NNAMES (sizeof(asgi_common_names) / sizeof(asgi_common_names[0]))

static PyObject *asgi_common_name_obj[ASGI_NNAMES];

static int
asgi_names_init(void)
{
    for (size_t i = 0; i < ASGI_NNAMES; i++) {
        asgi_common_name_obj[i] = PyBytes_FromString(asgi_common_names[i]);
        if (asgi_common_name_obj[i] == NULL) {
            return -1;
        }
    }
    return 0;
}

/* The field name lower (n bytes) as bytes: a shared one, or new. */
static PyObject *
asgi_name_new(const char *lower, size_t n)
{
    for (size_t i = 0; i < ASGI_NNAMES; i++) {
        PyObject *o = asgi_common_name_obj[i];

        if ((size_t)PyBytes_GET_SIZE(o) == n
            && memcmp(PyBytes_AS_STRING(o), lower, n) == 0) {
            Py_INCREF(o);
            return o;
        }
    }
    return PyBytes_FromStringAndSize(lower, (Py_ssize_t)n);
}

/* One (name, value) pair, the name in lower case. */
static PyObject *
asgi_header_new(const wf_app_field_t *f)
{
    char small[256], *lower;
    PyObject *pair, *name, *value;

    lower = f->name.len <= sizeof(small) ? small : malloc(f->name.len);
    if (lower == NULL) {
        return PyErr_NoMemory();
    }
    for (size_t k = 0; k < f->name.len; k++) {
        char c = f->name.data[k];

        lower[k] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
    }
    name = asgi_name_new(lower, f->name.len);
    if (lower != small) {
        free(lower);
    }
    value = name == NULL ? NULL
                         : PyBytes_FromStringAndSize(f->value.data,
                                                     (Py_ssize_t)f->value.len);
    pair = value == NULL ? NULL : PyTuple_New(2);
    if (pair == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(value);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, value);
    return pair;
}

/* [(name, value), ...] with names in lower case, as ASGI asks. */
static PyObject *
asgi_headers_new(const wf_app_head_t *h)
{
    PyObject *list = PyList_New((Py_ssize_t)h->nfields);

    for (size_t i = 0; list != NULL && i < h->nfields; i++) {
        PyObject *pair = asgi_header_new(&h->fields[i]);

        if (pair == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, pair);
    }
    return list;
}

/* "HTTP/1.1" -> "1.1", as the ASGI spec spells versions. */
static PyObject *
asgi_http_version(const wf_app_head_t *h)
{
    if (h->version.len == 8 && memcmp(h->version.data, "HTTP/1.0", 8) == 0) {
        return wf_asgi_str.v1_0;
    }
    if (h->version.len >= 6 && h->version.data[5] == '2') {
        return wf_asgi_str.v2;
    }
    return wf_asgi_str.v1_1;
}

/* Sets key to a new reference v (NULL: an exception is set). */
static int
asgi_dict_take(PyObject *d, PyObject *key, PyObject *v)
{
    int rc;

    if (v == NULL) {
        return -1;
    }
    rc = PyDict_SetItem(d, key, v);
    Py_DECREF(v);
    return rc;
}

int
wf_asgi_scope_fill(wf_asgi_worker_t *wk, PyObject *scope,
                   const wf_app_head_t *h, wf_py_target_t *t, unsigned ti,
                   PyObject *scheme)
{
    size_t raw_len = h->target.len;
    const char *q = memchr(h->target.data, '?', h->target.len);
    PyObject *state = wf_asgi_lifespan_state(wk, ti);
    PyObject *root = wf_asgi_str.empty;

    if (q != NULL) {
        raw_len = (size_t)(q - h->target.data);
    }
    /* root_path: the prefix, when the path is under it (Unit's rule). */
    if (t->prefix != NULL && t->prefix_len > 0 && h->path.len >= t->prefix_len
        && memcmp(h->path.data, t->prefix_data, t->prefix_len) == 0
        && (h->path.len == t->prefix_len
            || h->path.data[t->prefix_len] == '/')) {
        root = t->prefix;
    }
    if (PyDict_SetItem(scope, wf_asgi_str.http_version, asgi_http_version(h))
            != 0
        || PyDict_SetItem(scope, wf_asgi_str.scheme, scheme) != 0
        || asgi_dict_take(scope, wf_asgi_str.path,
                          PyUnicode_DecodeUTF8(
                              h->path.data, (Py_ssize_t)h->path.len, "replace"))
               != 0
        || asgi_dict_take(
               scope, wf_asgi_str.raw_path,
               PyBytes_FromStringAndSize(h->target.data, (Py_ssize_t)raw_len))
               != 0
        || asgi_dict_take(scope, wf_asgi_str.query_string,
                          PyBytes_FromStringAndSize(h->query.data,
                                                    (Py_ssize_t)h->query.len))
               != 0
        || PyDict_SetItem(scope, wf_asgi_str.root_path, root) != 0
        || asgi_dict_take(scope, wf_asgi_str.headers, asgi_headers_new(h)) != 0
        || asgi_dict_take(scope, wf_asgi_str.client,
                          asgi_addr_new(wk, &h->remote, h->remote_port))
               != 0
        || asgi_dict_take(scope, wf_asgi_str.server,
                          asgi_addr_new(wk, &h->local, h->local_port))
               != 0) {
        return -1;
    }
    if (state != NULL) {
        return asgi_dict_take(scope, wf_asgi_str.state, PyDict_Copy(state));
    }
    return 0;
}

/* ---- dispatch ----------------------------------------------------------- */

static void
asgi_on_request(void *ctx, wf_app_req_t *req)
{
    wf_asgi_worker_t *wk = ctx;
    const wf_app_head_t *h = wk->rt->head(req);
    unsigned ti = h->target_index;

    wk->active++;
    if (ti >= wk->app->ntargets) {
        wk->rt->log(WF_APP_LOG_ERR, "ASGI: no target #%u", ti);
        wf_asgi_req_end(wk, req, 0);
        return;
    }
    if (h->upgrade) {
        wf_asgi_ws_start(wk, req, &wk->app->targets[ti], ti);
    } else {
        wf_asgi_http_start(wk, req, &wk->app->targets[ti], ti);
    }
}

static wf_asgi_req_obj_t *
asgi_req_obj(wf_asgi_worker_t *wk, wf_app_req_t *req)
{
    return wk->rt->data(req);
}

static void
asgi_on_readable(void *ctx, wf_app_req_t *req)
{
    wf_asgi_req_obj_t *o = asgi_req_obj(ctx, req);

    if (o != NULL) {
        o->ops->on_readable((PyObject *)o);
    }
}

static void
asgi_on_writable(void *ctx, wf_app_req_t *req)
{
    wf_asgi_req_obj_t *o = asgi_req_obj(ctx, req);

    if (o != NULL) {
        o->ops->on_writable((PyObject *)o);
    }
}

static void
asgi_on_abort(void *ctx, wf_app_req_t *req)
{
    wf_asgi_req_obj_t *o = asgi_req_obj(ctx, req);

    if (o != NULL) {
        o->ops->on_abort((PyObject *)o);
    }
}

static const wf_app_events_t asgi_events = {
    .on_request = asgi_on_request,
    .on_readable = asgi_on_readable,
    .on_writable = asgi_on_writable,
    .on_abort = asgi_on_abort,
};

/* The loop's reader callback for the worker's fd (self: a capsule of the
 * worker). */
static PyObject *
asgi_dispatch(PyObject *self, PyObject *args)
{
    wf_asgi_worker_t *wk = PyCapsule_GetPointer(self, NULL);
    PyObject *res;
    int rc;

    (void)args;
    if (wk == NULL || wk->done) {
        Py_RETURN_NONE;
    }
    wk->dispatch_soon = 0;
    wf_asgi_task_eager_check(wk);
    wk->in_dispatch = 1;
    rc = wk->rt->dispatch(wk->w, &asgi_events, wk);
    wk->in_dispatch = 0;
    if (rc == WF_APP_OK) {
        Py_RETURN_NONE;
    }
    if (rc != WF_APP_DONE) {
        wk->rt->log(WF_APP_LOG_ALERT, "ASGI: worker %u failed", wk->index);
    }
    wk->done = 1;
    res = PyObject_CallMethod(wk->loop, "remove_reader", "i", wk->fd);
    Py_XDECREF(res);
    PyErr_Clear();
    Py_INCREF(wk->quit);
    wf_asgi_future_resolve(wk, wk->quit,
                           rc == WF_APP_DONE ? Py_True : Py_False);
    Py_RETURN_NONE;
}

static PyMethodDef asgi_dispatch_def = {"wharf_dispatch", asgi_dispatch,
                                        METH_NOARGS, NULL};

/* ---- workers ------------------------------------------------------------ */

static void
asgi_worker_fini(wf_asgi_worker_t *wk)
{
    PyObject *res;

    if (wk->loop != NULL) {
        res = PyObject_CallMethod(wk->loop, "close", NULL);
        Py_XDECREF(res);
        PyErr_Clear();
    }
    wf_asgi_task_loop_fini(wk);
    wf_asgi_addrs_clear(wk);
    Py_CLEAR(wk->quit);
    Py_CLEAR(wk->dispatch);
    Py_CLEAR(wk->call_later);
    Py_CLEAR(wk->call_soon);
    Py_CLEAR(wk->create_task);
    Py_CLEAR(wk->create_future);
    Py_CLEAR(wk->loop);
}

/* A new event loop for this thread, made current, and its bound methods. */
static int
asgi_worker_loop(wf_asgi_worker_t *wk)
{
    PyObject *asyncio, *res, *capsule;

    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return -1;
    }
    wk->loop = PyObject_CallMethod(asyncio, "new_event_loop", NULL);
    res = wk->loop == NULL
              ? NULL
              : PyObject_CallMethod(asyncio, "set_event_loop", "O", wk->loop);
    Py_DECREF(asyncio);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    wk->create_future = PyObject_GetAttrString(wk->loop, "create_future");
    wk->create_task = PyObject_GetAttrString(wk->loop, "create_task");
    wk->call_soon = PyObject_GetAttrString(wk->loop, "call_soon");
    wk->call_later = PyObject_GetAttrString(wk->loop, "call_later");
    if (wk->create_future == NULL || wk->create_task == NULL
        || wk->call_soon == NULL || wk->call_later == NULL
        || wf_asgi_task_loop_init(wk) != 0) {
        return -1;
    }
    capsule = PyCapsule_New(wk, NULL, NULL);
    if (capsule == NULL) {
        return -1;
    }
    wk->dispatch = PyCFunction_New(&asgi_dispatch_def, capsule);
    Py_DECREF(capsule);
    if (wk->dispatch == NULL) {
        return -1;
    }
    wk->quit = wf_asgi_future_new(wk);
    return wk->quit == NULL ? -1 : 0;
}

/* Serves the worker's requests until dispatch() says it is done. */
static int
asgi_worker_serve(wf_asgi_worker_t *wk)
{
    PyObject *res;

    wk->rt->set_concurrency(wk->w, WF_ASGI_CONCURRENCY);
    wk->fd = wk->rt->worker_fd(wk->w);
    if (wk->fd < 0) {
        wk->rt->log(WF_APP_LOG_ALERT, "ASGI: worker %u has no fd", wk->index);
        return -1;
    }
    res =
        PyObject_CallMethod(wk->loop, "add_reader", "iO", wk->fd, wk->dispatch);
    if (res == NULL) {
        wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                            "Python failed to call 'loop.add_reader'");
        return -1;
    }
    Py_DECREF(res);
    wf_asgi_dispatch_soon(wk); /* the first dispatch() announces readiness */
    res = PyObject_CallMethod(wk->loop, "run_until_complete", "O", wk->quit);
    if (res == NULL) {
        wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                            "Python failed to call loop.run_until_complete");
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static int
asgi_worker_run(wf_py_app_t *app, unsigned i)
{
    wf_asgi_worker_t wk = {
        .app = app,
        .rt = app->rt,
        .w = app->rt->worker(app->app, i),
        .index = i,
        .fd = -1,
    };
    int status = 1;

    if (asgi_worker_loop(&wk) != 0) {
        wf_py_log_exception(app, WF_APP_LOG_ALERT,
                            "Python failed to create the event loop");
        goto done;
    }
    if (wf_asgi_lifespan_startup(&wk) != 0) {
        goto done;
    }
    if (asgi_worker_serve(&wk) == 0) {
        status = 0;
    }
    wf_asgi_lifespan_shutdown(&wk);

done:
    asgi_worker_fini(&wk);
    return status;
}

int
wf_py_asgi_run(wf_py_app_t *app)
{
    if (wf_asgi_init() != 0) {
        wf_py_log_exception(app, WF_APP_LOG_ALERT,
                            "Python failed to initialise ASGI");
        return 1;
    }
    for (unsigned i = 0; i < app->ntargets; i++) {
        asgi_legacy_set(&app->targets[i]);
    }
    return wf_py_workers_run(app, asgi_worker_run);
}
