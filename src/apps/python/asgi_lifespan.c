/* ASGI "lifespan" scopes: one per target and worker, run on the worker's
 * loop before it serves ("lifespan.startup") and after it stopped
 * ("lifespan.shutdown").  Unit's tolerance: an app that raises before it
 * answered startup (it does not support lifespan) is served without
 * lifespan; an app that sends "lifespan.startup.failed" fails the start.
 * The scope's "state" dict is copied into every request's scope. */
#include "apps/python/asgi.h"

#include <stdlib.h>
#include <string.h>

typedef enum asgi_ls_sent {
    ASGI_LS_NONE = 0,
    ASGI_LS_COMPLETE,
    ASGI_LS_FAILED,
} asgi_ls_sent_t;

typedef struct asgi_lifespan {
    PyObject_HEAD wf_asgi_worker_t *wk; /* borrowed */
    int disabled;          /* the app does not take part (any more) */
    int startup_received;  /* receive() gave lifespan.startup */
    int shutdown_called;   /* the worker is shutting down */
    int shutdown_received; /* receive() gave lifespan.shutdown */
    asgi_ls_sent_t startup_sent;
    asgi_ls_sent_t shutdown_sent;
    PyObject *startup_future;  /* owned; done when startup is answered */
    PyObject *shutdown_future; /* owned; done when shutdown is answered */
    PyObject *receive_future;  /* owned; a receive() that waits */
    PyObject *state;           /* owned; the scope's "state" */
} asgi_lifespan_t;

static PyTypeObject asgi_lifespan_type;

/* Completes *pfut (if any) with None. */
static void
lifespan_wake(asgi_lifespan_t *ls, PyObject **pfut)
{
    PyObject *fut = *pfut;

    if (fut != NULL) {
        *pfut = NULL;
        wf_asgi_future_resolve(ls->wk, fut, Py_None);
    }
}

static PyObject *
lifespan_disable(asgi_lifespan_t *ls)
{
    ls->wk->rt->log(WF_APP_LOG_WARN,
                    "Got invalid state transition on lifespan protocol");
    ls->disabled = 1;
    return PyErr_Format(PyExc_AssertionError,
                        "Got invalid state transition on lifespan protocol");
}

static PyObject *
lifespan_receive(PyObject *self, PyObject *noargs)
{
    asgi_lifespan_t *ls = (asgi_lifespan_t *)self;
    PyObject *fut, *msg = NULL;

    (void)noargs;
    fut = wf_asgi_future_new(ls->wk);
    if (fut == NULL) {
        return NULL;
    }
    if (!ls->startup_received) {
        ls->startup_received = 1;
        msg = wf_asgi_msg_new(wf_asgi_str.lifespan_startup);
    } else if (ls->shutdown_called && !ls->shutdown_received) {
        ls->shutdown_received = 1;
        msg = wf_asgi_msg_new(wf_asgi_str.lifespan_shutdown);
    } else {
        Py_XDECREF(ls->receive_future);
        Py_INCREF(fut);
        ls->receive_future = fut;
        return fut;
    }
    if (msg == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    Py_INCREF(fut);
    wf_asgi_future_resolve(ls->wk, fut, msg);
    Py_DECREF(msg);
    return fut;
}

/* lifespan.startup.* or lifespan.shutdown.*: records the answer once. */
static PyObject *
lifespan_answer(asgi_lifespan_t *ls, asgi_ls_sent_t *sent, PyObject **pfut,
                asgi_ls_sent_t v)
{
    if (*sent != ASGI_LS_NONE) {
        return lifespan_disable(ls);
    }
    *sent = v;
    lifespan_wake(ls, pfut);
    Py_INCREF(wf_asgi_ready);
    return wf_asgi_ready;
}

static PyObject *
lifespan_send(PyObject *self, PyObject *msg)
{
    asgi_lifespan_t *ls = (asgi_lifespan_t *)self;
    PyObject *type, *text;

    type = PyDict_Check(msg) ? PyDict_GetItemWithError(msg, wf_asgi_str.type)
                             : NULL;
    if (type == NULL || !PyUnicode_Check(type)) {
        return PyErr_Format(PyExc_TypeError, "'type' is not a unicode string");
    }
    if (PyUnicode_Compare(type, wf_asgi_str.lifespan_startup_complete) == 0) {
        return lifespan_answer(ls, &ls->startup_sent, &ls->startup_future,
                               ASGI_LS_COMPLETE);
    }
    if (PyUnicode_Compare(type, wf_asgi_str.lifespan_startup_failed) == 0) {
        ls->wk->rt->log(WF_APP_LOG_ERR, "Application startup failed");
        text = PyDict_GetItemWithError(msg, wf_asgi_str.message);
        if (text != NULL && PyUnicode_Check(text)) {
            ls->wk->rt->log(WF_APP_LOG_ERR, "%s", PyUnicode_AsUTF8(text));
        }
        return lifespan_answer(ls, &ls->startup_sent, &ls->startup_future,
                               ASGI_LS_FAILED);
    }
    if (PyUnicode_Compare(type, wf_asgi_str.lifespan_shutdown_complete) == 0) {
        return lifespan_answer(ls, &ls->shutdown_sent, &ls->shutdown_future,
                               ASGI_LS_COMPLETE);
    }
    if (PyUnicode_Compare(type, wf_asgi_str.lifespan_shutdown_failed) == 0) {
        return lifespan_answer(ls, &ls->shutdown_sent, &ls->shutdown_future,
                               ASGI_LS_FAILED);
    }
    return lifespan_disable(ls);
}

/* The task ended: an app that raised before answering startup does not
 * support lifespan (logged at info level, as Unit logs it). */
static PyObject *
lifespan_done(PyObject *self, PyObject *task)
{
    asgi_lifespan_t *ls = (asgi_lifespan_t *)self;
    PyObject *res;

    if (ls->startup_sent == ASGI_LS_NONE) {
        ls->disabled = 1;
    }
    res = PyObject_CallMethodNoArgs(task, wf_asgi_str.result);
    if (res == NULL) {
        wf_py_log_exception(ls->wk->app, WF_APP_LOG_INFO,
                            "ASGI Lifespan processing exception");
    }
    Py_XDECREF(res);
    lifespan_wake(ls, &ls->startup_future);
    lifespan_wake(ls, &ls->shutdown_future);
    Py_RETURN_NONE;
}

static void
lifespan_dealloc(PyObject *self)
{
    asgi_lifespan_t *ls = (asgi_lifespan_t *)self;

    Py_CLEAR(ls->startup_future);
    Py_CLEAR(ls->shutdown_future);
    Py_CLEAR(ls->receive_future);
    Py_CLEAR(ls->state);
    PyObject_Free(self);
}

static PyMethodDef asgi_lifespan_methods[] = {
    {"receive", lifespan_receive, METH_NOARGS, NULL},
    {"send", lifespan_send, METH_O, NULL},
    {"_done", lifespan_done, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject asgi_lifespan_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wharf.asgi_lifespan",
    .tp_basicsize = sizeof(asgi_lifespan_t),
    .tp_dealloc = lifespan_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = asgi_lifespan_methods,
};

int
wf_asgi_lifespan_init(void)
{
    return PyType_Ready(&asgi_lifespan_type);
}

/* Runs the loop until fut is done. */
static int
lifespan_run_until(asgi_lifespan_t *ls, PyObject *fut)
{
    PyObject *res =
        PyObject_CallMethod(ls->wk->loop, "run_until_complete", "O", fut);

    if (res == NULL) {
        wf_py_log_exception(ls->wk->app, WF_APP_LOG_ALERT,
                            "Python failed to call loop.run_until_complete");
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* The lifespan of one target: a new reference, or NULL when its startup
 * failed (logged). */
static asgi_lifespan_t *
lifespan_target_startup(wf_asgi_worker_t *wk, wf_py_target_t *t)
{
    asgi_lifespan_t *ls;
    PyObject *scope = NULL, *fut;
    int rc = -1;

    ls = PyObject_New(asgi_lifespan_t, &asgi_lifespan_type);
    if (ls == NULL) {
        return NULL;
    }
    memset((char *)ls + sizeof(PyObject), 0, sizeof(*ls) - sizeof(PyObject));
    ls->wk = wk;
    ls->state = PyDict_New();
    ls->startup_future = wf_asgi_future_new(wk);
    if (ls->state != NULL && ls->startup_future != NULL) {
        scope = wf_asgi_scope_new(wf_asgi_str.lifespan, wf_asgi_str.v2_0);
    }
    if (scope == NULL
        || PyDict_SetItem(scope, wf_asgi_str.state, ls->state) != 0) {
        wf_py_log_exception(wk->app, WF_APP_LOG_ALERT,
                            "Python failed to create the lifespan scope");
        goto done;
    }
    if (wf_asgi_app_call(wk, t, scope, (PyObject *)ls,
                         t->asgi_legacy ? WF_APP_LOG_INFO : WF_APP_LOG_ERR,
                         t->asgi_legacy
                             ? "ASGI Lifespan processing exception"
                             : "Python failed to call the application",
                         WF_ASGI_START_TASK)
        != 0) {
        /* An ASGI 2 app that raised at once: no lifespan (Unit). */
        ls->disabled = t->asgi_legacy;
        rc = ls->disabled ? 0 : -1;
        goto done;
    }
    fut = ls->startup_future;
    Py_INCREF(fut);
    rc = lifespan_run_until(ls, fut);
    Py_DECREF(fut);
    if (rc == 0 && ls->startup_sent != ASGI_LS_COMPLETE && !ls->disabled) {
        rc = -1; /* startup failed */
    }

done:
    Py_XDECREF(scope);
    Py_CLEAR(ls->startup_future);
    if (rc != 0) {
        Py_DECREF(ls);
        return NULL;
    }
    return ls;
}

int
wf_asgi_lifespan_startup(wf_asgi_worker_t *wk)
{
    unsigned n = wk->app->ntargets;

    wk->lifespans = calloc(n, sizeof(*wk->lifespans));
    if (wk->lifespans == NULL) {
        wk->rt->log(WF_APP_LOG_ALERT, "Failed to allocate lifespan data");
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        wk->lifespans[i] =
            (PyObject *)lifespan_target_startup(wk, &wk->app->targets[i]);
        if (wk->lifespans[i] == NULL) {
            wf_asgi_lifespan_shutdown(wk);
            return -1;
        }
    }
    return 0;
}

PyObject *
wf_asgi_lifespan_state(wf_asgi_worker_t *wk, unsigned ti)
{
    asgi_lifespan_t *ls;

    if (wk->lifespans == NULL || wk->lifespans[ti] == NULL) {
        return NULL;
    }
    ls = (asgi_lifespan_t *)wk->lifespans[ti];
    return ls->state;
}

static void
lifespan_target_shutdown(asgi_lifespan_t *ls)
{
    PyObject *fut, *msg;

    if (ls->disabled) {
        return;
    }
    ls->shutdown_called = 1;
    if (ls->receive_future != NULL) {
        fut = ls->receive_future;
        ls->receive_future = NULL;
        ls->shutdown_received = 1;
        msg = wf_asgi_msg_new(wf_asgi_str.lifespan_shutdown);
        if (msg != NULL) {
            wf_asgi_future_resolve(ls->wk, fut, msg);
            Py_DECREF(msg);
        } else {
            Py_DECREF(fut);
        }
    }
    if (ls->shutdown_sent != ASGI_LS_NONE || ls->disabled) {
        return;
    }
    ls->shutdown_future = wf_asgi_future_new(ls->wk);
    if (ls->shutdown_future == NULL) {
        wf_py_log_exception(ls->wk->app, WF_APP_LOG_ALERT,
                            "Python failed to create a Future");
        return;
    }
    fut = ls->shutdown_future;
    Py_INCREF(fut);
    lifespan_run_until(ls, fut);
    Py_DECREF(fut);
    Py_CLEAR(ls->shutdown_future);
}

void
wf_asgi_lifespan_shutdown(wf_asgi_worker_t *wk)
{
    if (wk->lifespans == NULL) {
        return;
    }
    for (unsigned i = 0; i < wk->app->ntargets; i++) {
        if (wk->lifespans[i] != NULL) {
            lifespan_target_shutdown((asgi_lifespan_t *)wk->lifespans[i]);
            Py_CLEAR(wk->lifespans[i]);
        }
    }
    free(wk->lifespans);
    wk->lifespans = NULL;
}
