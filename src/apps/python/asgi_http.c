/* ASGI "http" scopes: the scope, receive() streaming the request body,
 * send() streaming the response with back-pressure (rt->write_nb() and
 * on_writable), http.response.pathsend as rt->send_file(), and
 * http.disconnect. */
#include "apps/python/asgi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Body bytes that go with the response head in one message. */
#define ASGI_HTTP_INLINE (64 * 1024)
/* The most one http.request message carries. */
#define ASGI_HTTP_READ_MAX (1024 * 1024)
#define ASGI_HTTP_READ_DEF (64 * 1024) /* when the length is not known */

typedef struct asgi_http {
    PyObject_HEAD const wf_asgi_req_ops_t *ops;
    wf_asgi_worker_t *wk;     /* borrowed; outlives the object's use */
    wf_app_req_t *req;        /* NULL once ended */
    PyObject *receive_future; /* owned; the receive() that waits */
    PyObject *send_future;    /* owned; the send() that waits */
    PyObject *send_body;      /* owned (bytes); being written */
    Py_ssize_t send_off;      /* next byte of send_body to write */
    unsigned status;          /* from http.response.start */
    wf_app_field_t *fields;   /* owned; the response head's fields */
    size_t nfields;
    PyObject *keep;            /* owned; keeps the fields' bytes alive */
    uint64_t length;           /* the app's Content-Length; UINT64_MAX */
    uint64_t sent;             /* body bytes the app sent */
    uint64_t received;         /* request body bytes read */
    char length_buf[24];       /* a Content-Length the module adds */
    unsigned started : 1;      /* http.response.start seen */
    unsigned responded : 1;    /* the head went to the runtime */
    unsigned complete : 1;     /* the app sent its last body bytes */
    unsigned body_done : 1;    /* the whole request body was read */
    unsigned disconnected : 1; /* the client is gone (an abort) */
} asgi_http_t;

static PyTypeObject asgi_http_type;
static PyObject *http_pathsend_key; /* "http.response.pathsend" */

/* ---- ending ------------------------------------------------------------- */

/* Tells a waiting receive() the client is gone (or the exchange ended). */
static void
http_disconnect_emit(asgi_http_t *h)
{
    PyObject *fut = h->receive_future, *msg;

    if (fut == NULL) {
        return;
    }
    h->receive_future = NULL;
    msg = wf_asgi_msg_new(wf_asgi_str.http_disconnect);
    if (msg == NULL) {
        wf_py_log_exception(h->wk->app, WF_APP_LOG_ALERT,
                            "Python failed to create a message");
        Py_DECREF(fut);
        return;
    }
    wf_asgi_future_resolve(h->wk, fut, msg);
    Py_DECREF(msg);
}

static void
http_end(asgi_http_t *h, int ok)
{
    wf_app_req_t *req = h->req;

    if (req == NULL) {
        return;
    }
    h->req = NULL;
    free(h->fields);
    h->fields = NULL;
    Py_CLEAR(h->keep);
    http_disconnect_emit(h);
    wf_asgi_req_end(h->wk, req, ok); /* may drop the last reference */
}

/* ---- receive ------------------------------------------------------------ */

/* The next http.request message from the body bytes at hand: a new dict,
 * Py_None (a new reference) when none is there yet, or NULL with an
 * exception set. */
static PyObject *
http_read_msg(asgi_http_t *h)
{
    const wf_app_head_t *hd = h->wk->rt->head(h->req);
    uint64_t len = hd->content_length;
    size_t cap = ASGI_HTTP_READ_DEF, got = 0;
    bool end = false;
    PyObject *body, *msg;

    if (h->body_done) {
        Py_RETURN_NONE;
    }
    if (len != UINT64_MAX) {
        cap = len - h->received > ASGI_HTTP_READ_MAX
                  ? ASGI_HTTP_READ_MAX
                  : (size_t)(len - h->received);
        end = cap == 0;
    }
    body = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (body == NULL) {
        return NULL;
    }
    while (got < cap) {
        ssize_t n = h->wk->rt->read_nb(h->req, PyBytes_AS_STRING(body) + got,
                                       cap - got);

        if (n == WF_APP_AGAIN) {
            break;
        }
        if (n <= 0) {
            end = n == 0;
            if (n < 0) {
                h->disconnected = 1;
                Py_DECREF(body);
                return wf_asgi_msg_new(wf_asgi_str.http_disconnect);
            }
            break;
        }
        got += (size_t)n;
    }
    h->received += got;
    if (got > 0 && !end) {
        wf_asgi_dispatch_soon(h->wk); /* the acknowledgement goes out */
    }
    if (len != UINT64_MAX && h->received == len) {
        end = true; /* no need to wait for the end message */
    }
    if (got == 0 && !end) {
        Py_DECREF(body);
        Py_RETURN_NONE;
    }
    if (got < cap && _PyBytes_Resize(&body, (Py_ssize_t)got) != 0) {
        return NULL;
    }
    msg = wf_asgi_msg_new(wf_asgi_str.http_request);
    if (msg == NULL || PyDict_SetItem(msg, wf_asgi_str.body, body) != 0
        || PyDict_SetItem(msg, wf_asgi_str.more_body, end ? Py_False : Py_True)
               != 0) {
        Py_CLEAR(msg);
    }
    Py_DECREF(body);
    h->body_done = end;
    return msg;
}

static PyObject *
http_receive(PyObject *self, PyObject *noargs)
{
    asgi_http_t *h = (asgi_http_t *)self;
    PyObject *msg, *fut;

    (void)noargs;
    if (h->receive_future != NULL) {
        return PyErr_Format(PyExc_RuntimeError, "Concurrent receive");
    }
    if (h->req == NULL || h->disconnected || h->complete) {
        msg = wf_asgi_msg_new(wf_asgi_str.http_disconnect);
    } else {
        msg = http_read_msg(h);
    }
    if (msg == NULL) {
        return NULL;
    }
    fut = wf_asgi_future_new(h->wk);
    if (fut == NULL) {
        Py_DECREF(msg);
        return NULL;
    }
    if (msg != Py_None) {
        Py_INCREF(fut);
        wf_asgi_future_resolve(h->wk, fut, msg);
    } else {
        Py_INCREF(fut);
        h->receive_future = fut;
    }
    Py_DECREF(msg);
    return fut;
}

/* ---- send --------------------------------------------------------------- */

/* Parses a Content-Length value; false when it is not one. */
static bool
http_length_parse(const char *p, size_t n, uint64_t *v)
{
    *v = 0;
    if (n == 0 || n > 19) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        *v = *v * 10 + (uint64_t)(p[i] - '0');
    }
    return true;
}

/* Takes one header pair of http.response.start into h->fields. */
static int
http_field_add(asgi_http_t *h, PyObject *item, size_t i)
{
    PyObject *name, *value;
    wf_app_field_t *f = &h->fields[i];

    if (!PySequence_Check(item) || PySequence_Size(item) != 2) {
        PyErr_Format(PyExc_TypeError, "'headers' item #%zu is not a pair", i);
        return -1;
    }
    name = PySequence_GetItem(item, 0);
    value = name == NULL ? NULL : PySequence_GetItem(item, 1);
    if (value == NULL || !PyBytes_Check(name) || !PyBytes_Check(value)) {
        Py_XDECREF(name);
        Py_XDECREF(value);
        PyErr_Format(PyExc_TypeError,
                     "'headers' item #%zu is not a pair of byte strings", i);
        return -1;
    }
    f->name.data = PyBytes_AS_STRING(name);
    f->name.len = (size_t)PyBytes_GET_SIZE(name);
    f->value.data = PyBytes_AS_STRING(value);
    f->value.len = (size_t)PyBytes_GET_SIZE(value);
    if (PyList_Append(h->keep, name) != 0
        || PyList_Append(h->keep, value) != 0) {
        Py_DECREF(name);
        Py_DECREF(value);
        return -1;
    }
    Py_DECREF(name);
    Py_DECREF(value);
    if (f->name.len == 14
        && strncasecmp(f->name.data, "content-length", 14) == 0
        && !http_length_parse(f->value.data, f->value.len, &h->length)) {
        PyErr_Format(PyExc_ValueError, "Failed to parse Content-Length: '%s'",
                     f->value.data);
        return -1;
    }
    return 0;
}

static PyObject *
http_response_start(asgi_http_t *h, PyObject *msg)
{
    PyObject *status = PyDict_GetItemWithError(msg, wf_asgi_str.status);
    PyObject *headers = PyDict_GetItemWithError(msg, wf_asgi_str.headers);
    PyObject *seq;
    long st;

    if (status == NULL || !PyLong_Check(status)) {
        return PyErr_Format(PyExc_TypeError, "'status' is not an integer");
    }
    st = PyLong_AsLong(status);
    if (st < 100 || st > 999) {
        return PyErr_Format(PyExc_ValueError, "'status' %ld is not valid", st);
    }
    if (headers == NULL && PyErr_Occurred()) {
        return NULL;
    }
    seq = headers == NULL
              ? PyTuple_New(0)
              : PySequence_Fast(headers, "'headers' is not an iterable");
    if (seq == NULL) {
        return NULL;
    }
    h->nfields = (size_t)PySequence_Fast_GET_SIZE(seq);
    h->fields = calloc(h->nfields + 1, sizeof(*h->fields)); /* + length */
    h->keep = PyList_New(0);
    if (h->fields == NULL || h->keep == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (size_t i = 0; i < h->nfields; i++) {
        if (http_field_add(h, PySequence_Fast_GET_ITEM(seq, i), i) != 0) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    h->status = (unsigned)st;
    h->started = 1;
    Py_INCREF(wf_asgi_ready);
    return wf_asgi_ready;
}

/* Adds Content-Length: len when the app gave none. */
static void
http_length_add(asgi_http_t *h, uint64_t len)
{
    wf_app_field_t *f = &h->fields[h->nfields];
    int n;

    if (h->length != UINT64_MAX) {
        return;
    }
    n = snprintf(h->length_buf, sizeof(h->length_buf), "%llu",
                 (unsigned long long)len);
    f->name.data = "Content-Length";
    f->name.len = 14;
    f->value.data = h->length_buf;
    f->value.len = (size_t)n;
    h->nfields++;
    h->length = len;
}

/* Writes send_body from send_off: 0 when all went out, 1 when the window
 * is full (on_writable follows), -1 when the exchange is broken. */
static int
http_body_flush(asgi_http_t *h)
{
    const char *p = PyBytes_AS_STRING(h->send_body);
    Py_ssize_t len = PyBytes_GET_SIZE(h->send_body);

    while (h->send_off < len) {
        ssize_t n = h->wk->rt->write_nb(h->req, p + h->send_off,
                                        (size_t)(len - h->send_off));

        if (n == WF_APP_AGAIN) {
            return 1;
        }
        if (n < 0) {
            return -1;
        }
        h->send_off += n;
    }
    Py_CLEAR(h->send_body);
    return 0;
}

/* The head, with as much of body as goes with it; *off: bytes taken. */
static int
http_head_send(asgi_http_t *h, const char *body, Py_ssize_t len, bool more,
               Py_ssize_t *off)
{
    int last = !more && len <= ASGI_HTTP_INLINE;

    if (!more) {
        http_length_add(h, (uint64_t)len);
    }
    *off = len <= ASGI_HTTP_INLINE ? len : ASGI_HTTP_INLINE;
    h->responded = 1;
    return h->wk->rt->respond(h->req, h->status, h->fields, h->nfields, body,
                              (size_t)*off, last);
}

/* Ends the request when the app's last bytes are out. */
static void
http_complete_check(asgi_http_t *h)
{
    if (h->complete && h->send_body == NULL) {
        http_end(h, 1);
    }
}

static PyObject *
http_response_body(asgi_http_t *h, PyObject *msg)
{
    PyObject *body = PyDict_GetItemWithError(msg, wf_asgi_str.body);
    PyObject *more_o = PyDict_GetItemWithError(msg, wf_asgi_str.more_body);
    Py_ssize_t len = 0, off = 0;
    bool more = more_o != NULL && PyObject_IsTrue(more_o) == 1;
    int rc;

    if (body == NULL) {
        body = PyBytes_FromStringAndSize("", 0);
    } else if (PyByteArray_Check(body) || PyMemoryView_Check(body)) {
        body = PyBytes_FromObject(body); /* a copy the app cannot change */
    } else if (PyBytes_Check(body)) {
        Py_INCREF(body);
    } else {
        return PyErr_Format(PyExc_TypeError,
                            "'body' is not a byte string or bytearray");
    }
    if (body == NULL) {
        return NULL;
    }
    len = PyBytes_GET_SIZE(body);
    if (h->length != UINT64_MAX && h->sent + (uint64_t)len > h->length) {
        Py_DECREF(body);
        return PyErr_Format(PyExc_RuntimeError,
                            "Response content longer than Content-Length");
    }
    h->sent += (uint64_t)len;
    h->complete = !more;
    if (!h->responded) {
        rc = http_head_send(h, PyBytes_AS_STRING(body), len, more, &off);
        if (rc != WF_APP_OK) {
            Py_DECREF(body);
            h->disconnected = 1;
            http_end(h, 0);
            Py_INCREF(wf_asgi_ready);
            return wf_asgi_ready;
        }
    }
    h->send_body = body;
    h->send_off = off;
    rc = http_body_flush(h);
    if (rc < 0) {
        Py_CLEAR(h->send_body);
        h->disconnected = 1;
        http_end(h, 0);
    } else if (rc > 0) {
        h->send_future = wf_asgi_future_new(h->wk);
        if (h->send_future == NULL) {
            return NULL;
        }
        Py_INCREF(h->send_future);
        return h->send_future;
    }
    http_complete_check(h);
    Py_INCREF(wf_asgi_ready);
    return wf_asgi_ready;
}

static PyObject *
http_response_pathsend(asgi_http_t *h, PyObject *msg)
{
    PyObject *path = PyDict_GetItemWithError(msg, wf_asgi_str.path);
    const char *p;
    struct stat st;
    int fd, rc;

    if (path == NULL || !PyUnicode_Check(path)) {
        return PyErr_Format(PyExc_TypeError, "'path' is not a string");
    }
    p = PyUnicode_AsUTF8(path);
    if (p == NULL) {
        return NULL;
    }
    fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd == -1 || fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        if (fd != -1) {
            close(fd);
            errno = EISDIR;
        }
        return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
    }
    http_length_add(h, (uint64_t)st.st_size);
    h->responded = 1;
    h->complete = 1;
    rc = h->wk->rt->respond(h->req, h->status, h->fields, h->nfields, NULL, 0,
                            st.st_size == 0);
    if (rc == WF_APP_OK && st.st_size > 0) {
        rc = h->wk->rt->send_file(h->req, fd, 0, st.st_size);
    }
    close(fd);
    http_end(h, rc == WF_APP_OK);
    Py_INCREF(wf_asgi_ready);
    return wf_asgi_ready;
}

static PyObject *
http_send(PyObject *self, PyObject *msg)
{
    asgi_http_t *h = (asgi_http_t *)self;
    PyObject *type;

    if (!PyDict_Check(msg)) {
        return PyErr_Format(PyExc_TypeError, "the message is not a dict");
    }
    type = PyDict_GetItemWithError(msg, wf_asgi_str.type);
    if (type == NULL || !PyUnicode_Check(type)) {
        return PyErr_Format(PyExc_TypeError, "'type' is not a unicode string");
    }
    if (h->send_future != NULL) {
        return PyErr_Format(PyExc_RuntimeError, "Concurrent send");
    }
    if (h->complete) {
        return PyErr_Format(PyExc_RuntimeError,
                            "Unexpected ASGI message '%U' sent, after "
                            "response already completed",
                            type);
    }
    if (!h->started) {
        if (PyUnicode_Compare(type, wf_asgi_str.http_response_start) != 0) {
            return PyErr_Format(PyExc_RuntimeError,
                                "Expected ASGI message "
                                "'http.response.start', but got '%U'",
                                type);
        }
        return http_response_start(h, msg);
    }
    if (h->req == NULL) {
        /* The client went away: the bytes are dropped, as uvicorn drops
         * them; receive() says http.disconnect. */
        Py_INCREF(wf_asgi_ready);
        return wf_asgi_ready;
    }
    if (PyUnicode_Compare(type, wf_asgi_str.http_response_body) == 0) {
        return http_response_body(h, msg);
    }
    if (PyUnicode_Compare(type, wf_asgi_str.http_response_pathsend) == 0
        && !h->responded) {
        return http_response_pathsend(h, msg);
    }
    return PyErr_Format(PyExc_RuntimeError,
                        "Expected ASGI message 'http.response.body', but got "
                        "'%U'",
                        type);
}

/* ---- events ------------------------------------------------------------- */

static void
http_on_readable(PyObject *self)
{
    asgi_http_t *h = (asgi_http_t *)self;
    PyObject *msg, *fut;

    if (h->receive_future == NULL || h->req == NULL) {
        return;
    }
    msg = http_read_msg(h);
    if (msg == NULL) {
        wf_py_log_exception(h->wk->app, WF_APP_LOG_ERR,
                            "Python failed to read the request body");
        return;
    }
    if (msg != Py_None) {
        fut = h->receive_future;
        h->receive_future = NULL;
        wf_asgi_future_resolve(h->wk, fut, msg);
    }
    Py_DECREF(msg);
}

static void
http_on_writable(PyObject *self)
{
    asgi_http_t *h = (asgi_http_t *)self;
    PyObject *fut = h->send_future;
    int rc;

    if (h->send_body == NULL || h->req == NULL) {
        return;
    }
    rc = http_body_flush(h);
    if (rc > 0) {
        return;
    }
    h->send_future = NULL;
    Py_INCREF(self); /* http_end() may drop the runtime's reference */
    if (rc < 0) {
        Py_CLEAR(h->send_body);
        h->disconnected = 1;
        http_end(h, 0);
    } else {
        http_complete_check(h);
    }
    if (fut != NULL) {
        wf_asgi_future_resolve(h->wk, fut, Py_None);
    }
    Py_DECREF(self);
}

static void
http_on_abort(PyObject *self)
{
    asgi_http_t *h = (asgi_http_t *)self;
    PyObject *fut = h->send_future;

    Py_INCREF(self);
    h->disconnected = 1;
    h->send_future = NULL;
    Py_CLEAR(h->send_body);
    http_end(h, 0);
    if (fut != NULL) {
        wf_asgi_future_resolve(h->wk, fut, Py_None);
    }
    Py_DECREF(self);
}

/* The task's done callback: logs what the app raised; a request without
 * a response gets a 500, one with part of it is cut short. */
static PyObject *
http_done(PyObject *self, PyObject *task)
{
    asgi_http_t *h = (asgi_http_t *)self;
    PyObject *res = PyObject_CallMethodNoArgs(task, wf_asgi_str.result);
    bool failed = res == NULL;

    if (failed) {
        wf_py_log_exception(h->wk->app, WF_APP_LOG_ERR,
                            "Python failed to call the application");
    }
    Py_XDECREF(res);
    if (h->req == NULL) {
        Py_RETURN_NONE;
    }
    if (!h->responded) {
        if (!failed) {
            h->wk->rt->log(WF_APP_LOG_ERR, "ASGI callable returned without "
                                           "starting response");
        }
        h->responded = 1;
        h->complete = 1;
        if (h->wk->rt->respond(h->req, 500, NULL, 0, NULL, 0, 1) == WF_APP_OK) {
            http_end(h, 1);
            Py_RETURN_NONE;
        }
    } else if (!failed && !h->complete) {
        h->wk->rt->log(WF_APP_LOG_ERR, "ASGI callable returned without "
                                       "completing response");
    }
    http_end(h, h->complete && h->send_body == NULL);
    Py_RETURN_NONE;
}

static void
http_dealloc(PyObject *self)
{
    asgi_http_t *h = (asgi_http_t *)self;

    /* The runtime's reference is dropped only once the request ended. */
    Py_CLEAR(h->receive_future);
    Py_CLEAR(h->send_future);
    Py_CLEAR(h->send_body);
    Py_CLEAR(h->keep);
    free(h->fields);
    PyObject_Free(self);
}

static const wf_asgi_req_ops_t asgi_http_ops = {
    .on_readable = http_on_readable,
    .on_writable = http_on_writable,
    .on_abort = http_on_abort,
};

static PyMethodDef asgi_http_methods[] = {
    {"receive", http_receive, METH_NOARGS, NULL},
    {"send", http_send, METH_O, NULL},
    {"_done", http_done, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject asgi_http_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wharf.asgi_http",
    .tp_basicsize = sizeof(asgi_http_t),
    .tp_dealloc = http_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = asgi_http_methods,
};

/* The scope of an "http" request starts as a copy of this one: every key
 * there already (a copy of a dict of the final size never grows), the
 * constant values set. */
static PyObject *http_scope_template;
static PyObject *http_asgi_template; /* {"version": "3.0", "spec_version"} */

/* Methods as shared str objects (str is immutable). */
static PyObject *http_methods[8];
static const char *const http_method_names[8] = {
    "GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT",
};

int
wf_asgi_http_init(void)
{
    PyObject *ext_key;

    if (PyType_Ready(&asgi_http_type) != 0) {
        return -1;
    }
    for (size_t i = 0; i < 8; i++) {
        http_methods[i] = PyUnicode_InternFromString(http_method_names[i]);
        if (http_methods[i] == NULL) {
            return -1;
        }
    }
    http_asgi_template = PyDict_New();
    if (http_asgi_template == NULL
        || PyDict_SetItem(http_asgi_template, wf_asgi_str.version,
                          wf_asgi_str.v3_0)
               != 0
        || PyDict_SetItem(http_asgi_template, wf_asgi_str.spec_version,
                          wf_asgi_str.v2_1)
               != 0) {
        return -1;
    }
    ext_key = PyUnicode_InternFromString("http.response.pathsend");
    http_scope_template = PyDict_New();
    if (ext_key == NULL || http_scope_template == NULL) {
        Py_XDECREF(ext_key);
        return -1;
    }
    http_pathsend_key = ext_key;
    {
        PyObject *const keys[] = {
            wf_asgi_str.type,         wf_asgi_str.asgi,
            wf_asgi_str.http_version, wf_asgi_str.method,
            wf_asgi_str.scheme,       wf_asgi_str.path,
            wf_asgi_str.raw_path,     wf_asgi_str.query_string,
            wf_asgi_str.root_path,    wf_asgi_str.headers,
            wf_asgi_str.client,       wf_asgi_str.server,
            wf_asgi_str.extensions,
        };

        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            if (PyDict_SetItem(http_scope_template, keys[i], Py_None) != 0) {
                return -1;
            }
        }
    }
    return PyDict_SetItem(http_scope_template, wf_asgi_str.type,
                          wf_asgi_str.http);
}

/* {"http.response.pathsend": {}}: new, since an app may change it. */
static PyObject *
http_extensions_new(void)
{
    PyObject *ext = PyDict_New(), *inner = PyDict_New();

    if (ext == NULL || inner == NULL
        || PyDict_SetItem(ext, http_pathsend_key, inner) != 0) {
        Py_XDECREF(ext);
        Py_XDECREF(inner);
        return NULL;
    }
    Py_DECREF(inner);
    return ext;
}

static PyObject *
http_scope_new(asgi_http_t *h, const wf_app_head_t *hd, wf_py_target_t *t,
               unsigned ti)
{
    PyObject *scope, *asgi, *ext;

    scope = PyDict_Copy(http_scope_template);
    if (scope == NULL) {
        return NULL;
    }
    asgi = PyDict_Copy(http_asgi_template);
    ext = asgi == NULL ? NULL : http_extensions_new();
    if (ext == NULL || PyDict_SetItem(scope, wf_asgi_str.asgi, asgi) != 0
        || PyDict_SetItem(scope, wf_asgi_str.extensions, ext) != 0
        || wf_asgi_scope_fill(h->wk, scope, hd, t, ti,
                              hd->tls ? wf_asgi_str.https : wf_asgi_str.http)
               != 0) {
        Py_XDECREF(asgi);
        Py_XDECREF(ext);
        Py_DECREF(scope);
        return NULL;
    }
    Py_DECREF(asgi);
    Py_DECREF(ext);
    return scope;
}

static int
http_method_set(PyObject *scope, const wf_app_head_t *hd)
{
    PyObject *m = NULL;
    int rc;

    for (size_t i = 0; i < 8; i++) {
        if (strlen(http_method_names[i]) == hd->method.len
            && memcmp(http_method_names[i], hd->method.data, hd->method.len)
                   == 0) {
            m = http_methods[i];
            Py_INCREF(m);
            break;
        }
    }
    if (m == NULL) {
        m = PyUnicode_FromStringAndSize(hd->method.data,
                                        (Py_ssize_t)hd->method.len);
    }
    if (m == NULL) {
        return -1;
    }
    rc = PyDict_SetItem(scope, wf_asgi_str.method, m);
    Py_DECREF(m);
    return rc;
}

void
wf_asgi_http_start(wf_asgi_worker_t *wk, wf_app_req_t *req, wf_py_target_t *t,
                   unsigned ti)
{
    const wf_app_head_t *hd = wk->rt->head(req);
    asgi_http_t *h;
    PyObject *scope;

    h = PyObject_New(asgi_http_t, &asgi_http_type);
    if (h == NULL) {
        wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                            "Python failed to create the request object");
        wf_asgi_req_end(wk, req, 0);
        return;
    }
    memset((char *)h + sizeof(PyObject), 0, sizeof(*h) - sizeof(PyObject));
    h->ops = &asgi_http_ops;
    h->wk = wk;
    h->req = req;
    h->length = UINT64_MAX;
    wk->rt->set_data(req, h); /* the runtime's reference, until the end */
    scope = http_scope_new(h, hd, t, ti);
    if (scope == NULL || http_method_set(scope, hd) != 0) {
        wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                            "Python failed to create the 'scope' dict");
        Py_XDECREF(scope);
        http_end(h, 0);
        return;
    }
    if (wf_asgi_app_call(wk, t, scope, (PyObject *)h, WF_APP_LOG_ERR,
                         "Python failed to call the application",
                         WF_ASGI_START_EAGER)
        != 0) {
        h->responded = 1;
        if (wk->rt->respond(req, 500, NULL, 0, NULL, 0, 1) == WF_APP_OK) {
            h->complete = 1;
        }
        http_end(h, h->complete);
    }
    Py_DECREF(scope);
}
