/* ASGI "websocket" scopes.  The router checked the client's handshake
 * (RFC 6455 4.1) and passes it with wf_app_head_t.upgrade; the module
 * answers websocket.accept with the 101 head (Sec-WebSocket-Accept
 * computed here), then the exchange carries raw bytes both ways: client
 * frames come in through rt->read_nb() and ws_frame.c, server frames go
 * out through rt->write_nb().  Input is read only while the app waits in
 * receive(): an app that does not read holds the client back through the
 * exchange's window.  After a close frame went out (the app's, an echo
 * of the client's, or one for a protocol error) the request ends and the
 * router closes the connection. */
#include "apps/python/asgi.h"

#include <stdlib.h>
#include <string.h>

#include "apps/python/ws_frame.h"

typedef enum asgi_ws_state {
    ASGI_WS_CONNECTING = 0, /* before websocket.accept; no frames */
    ASGI_WS_OPEN,           /* frames both ways */
    ASGI_WS_CLOSED,         /* a close frame is queued or out; no more
                               frames; the request ends once out is empty */
} asgi_ws_state_t;

typedef struct asgi_ws {
    PyObject_HEAD const wf_asgi_req_ops_t *ops;
    wf_asgi_worker_t *wk; /* borrowed */
    wf_app_req_t *req;    /* NULL once ended */
    asgi_ws_state_t state;
    unsigned connect_given : 1;    /* receive() gave websocket.connect */
    unsigned disconnect_given : 1; /* receive() gave websocket.disconnect */
    unsigned close_code;           /* for websocket.disconnect; 0 while open */
    PyObject *receive_future;      /* owned; the receive() that waits */
    PyObject *send_future;         /* owned; the send() that waits */
    wf_ws_reader_t reader;
    uint8_t *out; /* owned; frames not written yet */
    size_t out_start, out_end, out_cap;
} asgi_ws_t;

static PyTypeObject asgi_ws_type;

/* ---- output ------------------------------------------------------------- */

/* Queues one frame. */
static int
ws_frame_queue(asgi_ws_t *ws, unsigned op, const void *p, size_t n)
{
    size_t need = ws->out_end + WF_WS_MAX_HEAD + n;

    if (ws->out_start == ws->out_end) {
        ws->out_start = ws->out_end = 0;
        need = WF_WS_MAX_HEAD + n;
    }
    if (need > ws->out_cap) {
        size_t cap = ws->out_cap == 0 ? 4096 : ws->out_cap;
        uint8_t *out;

        while (cap < need) {
            cap *= 2;
        }
        out = realloc(ws->out, cap);
        if (out == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ws->out = out;
        ws->out_cap = cap;
    }
    ws->out_end += wf_ws_frame_head(ws->out + ws->out_end, true, op, n);
    if (n > 0) {
        memcpy(ws->out + ws->out_end, p, n);
    }
    ws->out_end += n;
    return 0;
}

/* Queues a close frame with code (and reason) and closes the state. */
static void
ws_close_queue(asgi_ws_t *ws, unsigned code, const char *reason, size_t len)
{
    uint8_t p[125];

    if (ws->state == ASGI_WS_CLOSED) {
        return;
    }
    ws->state = ASGI_WS_CLOSED;
    if (code == WF_WS_CLOSE_NO_STATUS) {
        if (ws_frame_queue(ws, WF_WS_OP_CLOSE, NULL, 0) != 0) {
            PyErr_Clear();
        }
        return;
    }
    if (len > sizeof(p) - 2) {
        len = sizeof(p) - 2;
    }
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (len > 0) {
        memcpy(p + 2, reason, len);
    }
    if (ws_frame_queue(ws, WF_WS_OP_CLOSE, p, len + 2) != 0) {
        PyErr_Clear();
    }
}

static void
ws_end(asgi_ws_t *ws, int ok)
{
    wf_app_req_t *req = ws->req;

    if (req == NULL) {
        return;
    }
    ws->req = NULL;
    wf_ws_reader_fini(&ws->reader);
    wf_asgi_req_end(ws->wk, req, ok); /* may drop the last reference */
}

/* Writes what is queued: 0 when all is out, 1 when the window is full
 * (on_writable follows), -1 when the exchange broke (the request ended). */
static int
ws_flush(asgi_ws_t *ws)
{
    while (ws->out_start < ws->out_end) {
        ssize_t n = ws->wk->rt->write_nb(ws->req, ws->out + ws->out_start,
                                         ws->out_end - ws->out_start);

        if (n == WF_APP_AGAIN) {
            return 1;
        }
        if (n < 0) {
            ws->state = ASGI_WS_CLOSED;
            ws->close_code = WF_WS_CLOSE_ABNORMAL;
            ws_end(ws, 0);
            return -1;
        }
        ws->out_start += (size_t)n;
    }
    if (ws->state == ASGI_WS_CLOSED) {
        ws_end(ws, 1);
    }
    return 0;
}

/* ---- input -------------------------------------------------------------- */

static PyObject *
ws_disconnect_msg(asgi_ws_t *ws)
{
    PyObject *msg = wf_asgi_msg_new(wf_asgi_str.websocket_disconnect);
    PyObject *code;

    if (msg == NULL) {
        return NULL;
    }
    code = PyLong_FromUnsignedLong(ws->close_code != 0 ? ws->close_code
                                                       : WF_WS_CLOSE_ABNORMAL);
    if (code == NULL || PyDict_SetItem(msg, wf_asgi_str.code, code) != 0) {
        Py_XDECREF(code);
        Py_DECREF(msg);
        return NULL;
    }
    Py_DECREF(code);
    ws->disconnect_given = 1;
    return msg;
}

/* A message for a data event: websocket.receive with text or bytes. */
static PyObject *
ws_receive_msg(const wf_ws_event_t *ev)
{
    PyObject *msg = wf_asgi_msg_new(wf_asgi_str.websocket_receive);
    PyObject *v;
    bool text = ev->opcode == WF_WS_OP_TEXT;

    if (msg == NULL) {
        return NULL;
    }
    v = text ? PyUnicode_DecodeUTF8((const char *)ev->data, (Py_ssize_t)ev->len,
                                    "strict")
             : PyBytes_FromStringAndSize((const char *)ev->data,
                                         (Py_ssize_t)ev->len);
    if (v == NULL
        || PyDict_SetItem(msg, text ? wf_asgi_str.text : wf_asgi_str.bytes, v)
               != 0) {
        Py_XDECREF(v);
        Py_DECREF(msg);
        return NULL;
    }
    Py_DECREF(v);
    return msg;
}

/* One event from the reader: a message (new reference), Py_None to go
 * on, or NULL with an exception. */
static PyObject *
ws_event(asgi_ws_t *ws, const wf_ws_event_t *ev)
{
    switch (ev->opcode) {
    case WF_WS_OP_TEXT:
    case WF_WS_OP_BINARY:
        return ws_receive_msg(ev);
    case WF_WS_OP_PING:
        if (ws_frame_queue(ws, WF_WS_OP_PONG, ev->data, ev->len) != 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    case WF_WS_OP_CLOSE:
        /* Echo the code (RFC 6455 5.5.1), then the request ends. */
        ws->close_code = ev->code;
        ws_close_queue(ws, ev->code, NULL, 0);
        return ws_disconnect_msg(ws);
    default: /* a pong */
        Py_RETURN_NONE;
    }
}

/* Reads until a message for the app is there: a new message, Py_None
 * (a new reference) when more input must come first, or NULL with an
 * exception.  Queued frames (pongs, a close) are flushed on the way. */
static PyObject *
ws_pump(asgi_ws_t *ws)
{
    PyObject *msg = NULL;

    while (ws->req != NULL && ws->state == ASGI_WS_OPEN) {
        wf_ws_event_t ev;
        size_t room;
        uint8_t *p;
        ssize_t n;
        int rc = wf_ws_reader_next(&ws->reader, &ev);

        if (rc == 1) {
            msg = ws_event(ws, &ev);
            if (msg != Py_None) {
                break;
            }
            Py_CLEAR(msg);
            continue;
        }
        if (rc < 0) {
            ws->close_code = (unsigned)-rc;
            ws_close_queue(ws, (unsigned)-rc, NULL, 0);
            msg = ws_disconnect_msg(ws);
            break;
        }
        p = wf_ws_reader_space(&ws->reader, &room);
        if (p == NULL) {
            return PyErr_NoMemory();
        }
        n = ws->wk->rt->read_nb(ws->req, p, room);
        if (n == WF_APP_AGAIN) {
            break;
        }
        if (n <= 0) { /* the client went away without a close frame */
            ws->state = ASGI_WS_CLOSED;
            ws->close_code = WF_WS_CLOSE_ABNORMAL;
            msg = ws_disconnect_msg(ws);
            break;
        }
        wf_ws_reader_commit(&ws->reader, (size_t)n);
        wf_asgi_dispatch_soon(ws->wk); /* the acknowledgement goes out */
    }
    if (ws->req != NULL && ws_flush(ws) < 0 && msg == NULL) {
        msg = ws_disconnect_msg(ws);
    }
    if (msg == NULL && !PyErr_Occurred()) {
        Py_RETURN_NONE;
    }
    return msg;
}

static PyObject *
ws_receive(PyObject *self, PyObject *noargs)
{
    asgi_ws_t *ws = (asgi_ws_t *)self;
    PyObject *msg, *fut;

    (void)noargs;
    if (ws->receive_future != NULL) {
        return PyErr_Format(PyExc_RuntimeError, "Concurrent receive");
    }
    if (!ws->connect_given) {
        ws->connect_given = 1;
        msg = wf_asgi_msg_new(wf_asgi_str.websocket_connect);
    } else if (ws->req == NULL || ws->state == ASGI_WS_CLOSED) {
        msg = ws_disconnect_msg(ws);
    } else if (ws->state == ASGI_WS_CONNECTING) {
        msg = Py_None; /* waits for accept */
        Py_INCREF(msg);
    } else {
        Py_INCREF(self);
        msg = ws_pump(ws);
        Py_DECREF(self);
    }
    if (msg == NULL) {
        return NULL;
    }
    fut = wf_asgi_future_new(ws->wk);
    if (fut != NULL) {
        Py_INCREF(fut);
        if (msg != Py_None) {
            wf_asgi_future_resolve(ws->wk, fut, msg);
        } else {
            ws->receive_future = fut;
        }
    }
    Py_DECREF(msg);
    return fut;
}

/* ---- send --------------------------------------------------------------- */

/* The client's Sec-WebSocket-Key, or NULL. */
static const wf_app_str_t *
ws_field_find(const wf_app_head_t *h, const char *name, size_t len)
{
    for (size_t i = 0; i < h->nfields; i++) {
        if (h->fields[i].name.len == len
            && strncasecmp(h->fields[i].name.data, name, len) == 0) {
            return &h->fields[i].value;
        }
    }
    return NULL;
}

/* Takes the app's extra headers of websocket.accept into f[*n...]; keep
 * holds the pairs until the head is sent. */
static int
ws_accept_headers(PyObject *headers, PyObject *keep, wf_app_field_t *f,
                  size_t *n, size_t max)
{
    PyObject *seq = PySequence_Fast(headers, "'headers' is not an iterable");

    if (seq == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *pair, *name, *value;

        pair = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, i),
                               "a 'headers' item is not a pair");
        if (pair == NULL || PyList_Append(keep, pair) != 0) {
            Py_XDECREF(pair);
            Py_DECREF(seq);
            return -1;
        }
        Py_DECREF(pair); /* keep holds it */
        if (PySequence_Fast_GET_SIZE(pair) != 2 || *n == max) {
            PyErr_Format(PyExc_TypeError, "'headers' item #%zd is not a pair",
                         i);
            Py_DECREF(seq);
            return -1;
        }
        name = PySequence_Fast_GET_ITEM(pair, 0);
        value = PySequence_Fast_GET_ITEM(pair, 1);
        if (!PyBytes_Check(name) || !PyBytes_Check(value)) {
            PyErr_Format(PyExc_TypeError,
                         "'headers' item #%zd is not a pair of byte strings",
                         i);
            Py_DECREF(seq);
            return -1;
        }
        f[*n].name.data = PyBytes_AS_STRING(name);
        f[*n].name.len = (size_t)PyBytes_GET_SIZE(name);
        f[*n].value.data = PyBytes_AS_STRING(value);
        f[*n].value.len = (size_t)PyBytes_GET_SIZE(value);
        (*n)++;
    }
    Py_DECREF(seq);
    return 0;
}

#define ASGI_WS_MAX_FIELDS 64

static PyObject *
ws_accept(asgi_ws_t *ws, PyObject *msg)
{
    const wf_app_head_t *h = ws->wk->rt->head(ws->req);
    const wf_app_str_t *key = ws_field_find(h, "sec-websocket-key", 17);
    PyObject *proto = PyDict_GetItemWithError(msg, wf_asgi_str.subprotocol);
    PyObject *headers = PyDict_GetItemWithError(msg, wf_asgi_str.headers);
    PyObject *keep;
    wf_app_field_t f[ASGI_WS_MAX_FIELDS];
    char accept[WF_WS_ACCEPT_LEN + 1];
    size_t n = 0;
    int rc;

    if (key == NULL) {
        return PyErr_Format(PyExc_RuntimeError, "no Sec-WebSocket-Key");
    }
    wf_ws_accept(key->data, key->len, accept);
    f[n++] = (wf_app_field_t){{"Upgrade", 7}, {"websocket", 9}};
    f[n++] = (wf_app_field_t){{"Connection", 10}, {"Upgrade", 7}};
    f[n++] = (wf_app_field_t){{"Sec-WebSocket-Accept", 20},
                              {accept, WF_WS_ACCEPT_LEN}};
    if (proto != NULL && proto != Py_None) {
        Py_ssize_t len;
        const char *p = PyUnicode_Check(proto)
                            ? PyUnicode_AsUTF8AndSize(proto, &len)
                            : NULL;

        if (p == NULL) {
            return PyErr_Format(PyExc_TypeError,
                                "'subprotocol' is not a string");
        }
        f[n++] =
            (wf_app_field_t){{"Sec-WebSocket-Protocol", 22}, {p, (size_t)len}};
    }
    keep = PyList_New(0);
    if (keep == NULL) {
        return NULL;
    }
    if (headers != NULL && headers != Py_None
        && ws_accept_headers(headers, keep, f, &n, ASGI_WS_MAX_FIELDS) != 0) {
        Py_DECREF(keep);
        return NULL;
    }
    rc = ws->wk->rt->respond(ws->req, 101, f, n, NULL, 0, 0);
    Py_DECREF(keep);
    if (rc != WF_APP_OK) {
        ws->state = ASGI_WS_CLOSED;
        ws->close_code = WF_WS_CLOSE_ABNORMAL;
        ws_end(ws, 0);
    } else {
        ws->state = ASGI_WS_OPEN;
        if (ws->receive_future != NULL) {
            ws->ops->on_readable((PyObject *)ws); /* it waited for accept */
        }
    }
    Py_INCREF(wf_asgi_ready);
    return wf_asgi_ready;
}

/* websocket.close before accept: 403, as Unit and uvicorn answer. */
static void
ws_refuse(asgi_ws_t *ws)
{
    int rc = ws->wk->rt->respond(ws->req, 403, NULL, 0, NULL, 0, 1);

    ws->state = ASGI_WS_CLOSED;
    ws->close_code = WF_WS_CLOSE_ABNORMAL;
    ws_end(ws, rc == WF_APP_OK);
}

/* websocket.close on an open connection: queues the close frame; 0, or
 * -1 with an exception set. */
static int
ws_close(asgi_ws_t *ws, PyObject *msg)
{
    PyObject *code_o = PyDict_GetItemWithError(msg, wf_asgi_str.code);
    PyObject *reason = PyDict_GetItemWithError(msg, wf_asgi_str.reason);
    long code = WF_WS_CLOSE_NORMAL;
    const char *r = NULL;
    Py_ssize_t rlen = 0;

    if (code_o != NULL && code_o != Py_None) {
        code = PyLong_AsLong(code_o);
        if (code == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (code < 1000 || code > 4999) {
        PyErr_Format(PyExc_ValueError, "close code %ld is not valid", code);
        return -1;
    }
    if (reason != NULL && reason != Py_None) {
        r = PyUnicode_Check(reason) ? PyUnicode_AsUTF8AndSize(reason, &rlen)
                                    : NULL;
        if (r == NULL) {
            PyErr_Format(PyExc_TypeError, "'reason' is not a string");
            return -1;
        }
    }
    ws->close_code = (unsigned)code;
    ws_close_queue(ws, (unsigned)code, r, (size_t)rlen);
    return 0;
}

/* websocket.send: queues the frame; 0, or -1 with an exception set. */
static int
ws_data(asgi_ws_t *ws, PyObject *msg)
{
    PyObject *b = PyDict_GetItemWithError(msg, wf_asgi_str.bytes);
    PyObject *t = PyDict_GetItemWithError(msg, wf_asgi_str.text);
    const char *p;
    Py_ssize_t len;
    unsigned op = WF_WS_OP_BINARY;

    if (b != NULL && b != Py_None) {
        if (!PyBytes_Check(b)) {
            PyErr_Format(PyExc_TypeError, "'bytes' is not bytes");
            return -1;
        }
        p = PyBytes_AS_STRING(b);
        len = PyBytes_GET_SIZE(b);
    } else if (t != NULL && t != Py_None) {
        p = PyUnicode_Check(t) ? PyUnicode_AsUTF8AndSize(t, &len) : NULL;
        if (p == NULL) {
            PyErr_Format(PyExc_TypeError, "'text' is not a string");
            return -1;
        }
        op = WF_WS_OP_TEXT;
    } else {
        PyErr_Format(PyExc_ValueError,
                     "websocket.send has neither 'bytes' nor 'text'");
        return -1;
    }
    return ws_frame_queue(ws, op, p, (size_t)len);
}

static PyObject *
ws_send(PyObject *self, PyObject *msg)
{
    asgi_ws_t *ws = (asgi_ws_t *)self;
    PyObject *type;
    int rc;

    type = PyDict_Check(msg) ? PyDict_GetItemWithError(msg, wf_asgi_str.type)
                             : NULL;
    if (type == NULL || !PyUnicode_Check(type)) {
        return PyErr_Format(PyExc_TypeError, "'type' is not a unicode string");
    }
    if (ws->send_future != NULL) {
        return PyErr_Format(PyExc_RuntimeError, "Concurrent send");
    }
    if (ws->req == NULL || ws->state == ASGI_WS_CLOSED) {
        return PyErr_Format(PyExc_OSError, "WebSocket is closed (code %u)",
                            ws->close_code);
    }
    if (ws->state == ASGI_WS_CONNECTING) {
        if (PyUnicode_Compare(type, wf_asgi_str.websocket_accept) == 0) {
            return ws_accept(ws, msg);
        }
        if (PyUnicode_Compare(type, wf_asgi_str.websocket_close) == 0) {
            ws_refuse(ws);
            Py_INCREF(wf_asgi_ready);
            return wf_asgi_ready;
        }
        return PyErr_Format(PyExc_RuntimeError,
                            "Expected ASGI message 'websocket.accept' or "
                            "'websocket.close', but got '%U'",
                            type);
    }
    if (PyUnicode_Compare(type, wf_asgi_str.websocket_send) == 0) {
        rc = ws_data(ws, msg);
    } else if (PyUnicode_Compare(type, wf_asgi_str.websocket_close) == 0) {
        rc = ws_close(ws, msg);
    } else {
        return PyErr_Format(PyExc_RuntimeError,
                            "Expected ASGI message 'websocket.send' or "
                            "'websocket.close', but got '%U'",
                            type);
    }
    if (rc != 0) {
        return NULL;
    }
    rc = ws_flush(ws);
    if (rc == 1) {
        ws->send_future = wf_asgi_future_new(ws->wk);
        if (ws->send_future == NULL) {
            return NULL;
        }
        Py_INCREF(ws->send_future);
        return ws->send_future;
    }
    if (rc < 0) {
        return PyErr_Format(PyExc_OSError, "WebSocket is closed (code %u)",
                            ws->close_code);
    }
    Py_INCREF(wf_asgi_ready);
    return wf_asgi_ready;
}

/* ---- events ------------------------------------------------------------- */

/* Completes a waiting receive() with msg (stolen); NULL: the exception
 * is logged. */
static void
ws_receive_complete(asgi_ws_t *ws, PyObject *msg)
{
    PyObject *fut = ws->receive_future;

    if (msg == NULL) {
        wf_py_log_exception(ws->wk->app, WF_APP_LOG_ERR,
                            "Python failed to read a WebSocket message");
        return;
    }
    if (msg != Py_None && fut != NULL) {
        ws->receive_future = NULL;
        wf_asgi_future_resolve(ws->wk, fut, msg);
    }
    Py_DECREF(msg);
}

static void
ws_on_readable(PyObject *self)
{
    asgi_ws_t *ws = (asgi_ws_t *)self;

    if (ws->receive_future == NULL || ws->state != ASGI_WS_OPEN) {
        return;
    }
    Py_INCREF(self);
    ws_receive_complete(ws, ws_pump(ws));
    Py_DECREF(self);
}

static void
ws_on_writable(PyObject *self)
{
    asgi_ws_t *ws = (asgi_ws_t *)self;
    PyObject *fut;

    if (ws->req == NULL) {
        return;
    }
    Py_INCREF(self);
    if (ws_flush(ws) != 1 && ws->send_future != NULL) {
        fut = ws->send_future;
        ws->send_future = NULL;
        wf_asgi_future_resolve(ws->wk, fut, Py_None);
    }
    Py_DECREF(self);
}

static void
ws_on_abort(PyObject *self)
{
    asgi_ws_t *ws = (asgi_ws_t *)self;
    PyObject *fut;

    Py_INCREF(self);
    ws->state = ASGI_WS_CLOSED;
    if (ws->close_code == 0) {
        ws->close_code = WF_WS_CLOSE_ABNORMAL;
    }
    ws_end(ws, 0);
    if (ws->receive_future != NULL) {
        ws_receive_complete(ws, ws_disconnect_msg(ws));
    }
    fut = ws->send_future;
    if (fut != NULL) {
        ws->send_future = NULL;
        wf_asgi_future_fail(ws->wk, fut, PyExc_OSError,
                            "WebSocket client disconnected");
    }
    Py_DECREF(self);
}

/* The task ended: an app that never accepted gets 403; an open
 * connection is closed with 1000, or 1011 when the app raised. */
static PyObject *
ws_done(PyObject *self, PyObject *task)
{
    asgi_ws_t *ws = (asgi_ws_t *)self;
    PyObject *res = PyObject_CallMethodNoArgs(task, wf_asgi_str.result);
    bool failed = res == NULL;

    if (failed) {
        wf_py_log_exception(ws->wk->app, WF_APP_LOG_ERR,
                            "Python failed to call the application");
    }
    Py_XDECREF(res);
    if (ws->req == NULL) {
        Py_RETURN_NONE;
    }
    if (ws->state == ASGI_WS_CONNECTING) {
        ws_refuse(ws);
        Py_RETURN_NONE;
    }
    ws_close_queue(ws, failed ? WF_WS_CLOSE_INTERNAL : WF_WS_CLOSE_NORMAL, NULL,
                   0);
    ws_flush(ws);
    Py_RETURN_NONE;
}

static void
ws_dealloc(PyObject *self)
{
    asgi_ws_t *ws = (asgi_ws_t *)self;

    Py_CLEAR(ws->receive_future);
    Py_CLEAR(ws->send_future);
    wf_ws_reader_fini(&ws->reader);
    free(ws->out);
    PyObject_Free(self);
}

static const wf_asgi_req_ops_t asgi_ws_ops = {
    .on_readable = ws_on_readable,
    .on_writable = ws_on_writable,
    .on_abort = ws_on_abort,
};

static PyMethodDef asgi_ws_methods[] = {
    {"receive", ws_receive, METH_NOARGS, NULL},
    {"send", ws_send, METH_O, NULL},
    {"_done", ws_done, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject asgi_ws_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wharf.asgi_websocket",
    .tp_basicsize = sizeof(asgi_ws_t),
    .tp_dealloc = ws_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = asgi_ws_methods,
};

int
wf_asgi_ws_init(void)
{
    return PyType_Ready(&asgi_ws_type);
}

/* Sec-WebSocket-Protocol's offers, as a list of str (every such field,
 * split at commas). */
static PyObject *
ws_subprotocols_new(const wf_app_head_t *h)
{
    PyObject *list = PyList_New(0);

    for (size_t i = 0; list != NULL && i < h->nfields; i++) {
        const wf_app_field_t *f = &h->fields[i];
        const char *p = f->value.data, *last = p + f->value.len;

        if (f->name.len != 22
            || strncasecmp(f->name.data, "sec-websocket-protocol", 22) != 0) {
            continue;
        }
        while (p < last) {
            const char *e = memchr(p, ',', (size_t)(last - p));
            const char *s = p, *t;
            PyObject *v;

            e = e == NULL ? last : e;
            t = e;
            while (s < t && (*s == ' ' || *s == '\t')) {
                s++;
            }
            while (t > s && (t[-1] == ' ' || t[-1] == '\t')) {
                t--;
            }
            p = e + 1;
            if (s == t) {
                continue;
            }
            v = PyUnicode_DecodeLatin1(s, t - s, NULL);
            if (v == NULL || PyList_Append(list, v) != 0) {
                Py_XDECREF(v);
                Py_CLEAR(list);
                break;
            }
            Py_DECREF(v);
        }
    }
    return list;
}

static PyObject *
ws_scope_new(asgi_ws_t *ws, const wf_app_head_t *h, wf_py_target_t *t,
             unsigned ti)
{
    PyObject *scope, *protos;

    scope = wf_asgi_scope_new(wf_asgi_str.websocket, wf_asgi_str.v2_3);
    if (scope == NULL) {
        return NULL;
    }
    protos = ws_subprotocols_new(h);
    if (protos == NULL
        || wf_asgi_scope_fill(ws->wk, scope, h, t, ti,
                              h->tls ? wf_asgi_str.wss : wf_asgi_str.ws)
               != 0
        || PyDict_SetItem(scope, wf_asgi_str.subprotocols, protos) != 0) {
        Py_XDECREF(protos);
        Py_DECREF(scope);
        return NULL;
    }
    Py_DECREF(protos);
    return scope;
}

void
wf_asgi_ws_start(wf_asgi_worker_t *wk, wf_app_req_t *req, wf_py_target_t *t,
                 unsigned ti)
{
    const wf_app_head_t *h = wk->rt->head(req);
    asgi_ws_t *ws;
    PyObject *scope;

    ws = PyObject_New(asgi_ws_t, &asgi_ws_type);
    if (ws == NULL) {
        wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                            "Python failed to create the WebSocket object");
        wf_asgi_req_end(wk, req, 0);
        return;
    }
    memset((char *)ws + sizeof(PyObject), 0, sizeof(*ws) - sizeof(PyObject));
    ws->ops = &asgi_ws_ops;
    ws->wk = wk;
    ws->req = req;
    wf_ws_reader_init(&ws->reader, WF_WS_MAX_FRAME, WF_WS_MAX_MESSAGE);
    wk->rt->set_data(req, ws); /* the runtime's reference, until the end */
    scope = ws_scope_new(ws, h, t, ti);
    if (scope == NULL) {
        wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                            "Python failed to create the 'scope' dict");
        ws_end(ws, 0);
        return;
    }
    if (wf_asgi_app_call(wk, t, scope, (PyObject *)ws, WF_APP_LOG_ERR,
                         "Python failed to call the application",
                         WF_ASGI_START_TASK)
        != 0) {
        ws_refuse(ws);
    }
    Py_DECREF(scope);
}
