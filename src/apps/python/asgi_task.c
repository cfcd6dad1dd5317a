/* How an ASGI request's coroutine runs: inside an asyncio Task (so that
 * asyncio.current_task(), cancellation and contextvars behave as in any
 * server), wrapped in a small C coroutine that
 *   - ends the request the moment the app's coroutine ends (it calls the
 *     request object's _done at once: no done callback, no loop round
 *     trip), and
 *   - lets the first step run eagerly, inside dispatch(), as Python
 *     3.12's eager tasks do: the Task is created and made current, the
 *     app's coroutine runs until it first waits, and the Task's own first
 *     step hands on what it waits for.  An app that answers without
 *     waiting (a hello world, a cached page) is served within dispatch(),
 *     and the runtime sends its answer with the others of the batch.
 * docs/internals/apps.md, "The Python module: ASGI" and "Measured costs". */
#include "apps/python/asgi.h"

#include <string.h>

/* ---- the wrapper -------------------------------------------------------- */

typedef struct asgi_coro {
    PyObject_HEAD PyObject *inner; /* owned; the app's coroutine; NULL once
                                      it ended */
    PyObject *obj;                 /* owned; the request object (_done) */
    PyObject *first;               /* owned; what the eager step waits for */
    PyObject *value;               /* owned; the app's result once it ended */
    PyObject *exc_type; /* owned; what it raised (with exc_value, exc_tb) */
    PyObject *exc_value;
    PyObject *exc_tb;
    unsigned eager : 1;   /* first is to be handed to the Task */
    unsigned reraise : 1; /* the exception goes on to the Task */
    unsigned handed : 1;  /* the Task was told the end */
} asgi_coro_t;

static PyTypeObject asgi_coro_type;

/* The app's coroutine ended (res: its value, or NULL with the exception
 * set): keeps the outcome and calls obj._done(self), whose result() gives
 * it.  CancelledError, SystemExit and KeyboardInterrupt go on to the
 * Task, as asyncio's own tasks pass them on; anything else was the app's
 * failure, logged by _done, and the Task ends with None. */
static void
coro_finish(asgi_coro_t *c, PyObject *res)
{
    PyObject *r;

    Py_CLEAR(c->inner);
    if (res != NULL) {
        c->value = res;
    } else {
        PyErr_Fetch(&c->exc_type, &c->exc_value, &c->exc_tb);
        PyErr_NormalizeException(&c->exc_type, &c->exc_value, &c->exc_tb);
        if (c->exc_tb != NULL && c->exc_value != NULL) {
            PyException_SetTraceback(c->exc_value, c->exc_tb);
        }
        c->reraise =
            c->exc_type != NULL
            && (PyErr_GivenExceptionMatches(c->exc_type, PyExc_SystemExit)
                || PyErr_GivenExceptionMatches(c->exc_type,
                                               PyExc_KeyboardInterrupt)
                || PyErr_GivenExceptionMatches(c->exc_type, wf_asgi_cancelled));
    }
    r = PyObject_CallMethodOneArg(c->obj, wf_asgi_str.on_done, (PyObject *)c);
    if (r == NULL) {
        PyErr_WriteUnraisable(c->obj);
    }
    Py_XDECREF(r);
}

/* What the Task is told once the app's coroutine ended. */
static PySendResult
coro_end_result(asgi_coro_t *c, PyObject **presult)
{
    if (c->handed) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot reuse already awaited coroutine");
        *presult = NULL;
        return PYGEN_ERROR;
    }
    c->handed = 1;
    if (c->reraise) {
        Py_XINCREF(c->exc_type);
        Py_XINCREF(c->exc_value);
        Py_XINCREF(c->exc_tb);
        PyErr_Restore(c->exc_type, c->exc_value, c->exc_tb);
        *presult = NULL;
        return PYGEN_ERROR;
    }
    Py_INCREF(Py_None);
    *presult = Py_None;
    return PYGEN_RETURN;
}

/* After a step of the app's coroutine (r, res as PyIter_Send gives them). */
static PySendResult
coro_after(asgi_coro_t *c, PySendResult r, PyObject *res, PyObject **presult)
{
    if (r == PYGEN_NEXT) {
        *presult = res;
        return PYGEN_NEXT;
    }
    coro_finish(c, r == PYGEN_RETURN ? res : NULL);
    return coro_end_result(c, presult);
}

static PySendResult
coro_am_send(PyObject *self, PyObject *arg, PyObject **presult)
{
    asgi_coro_t *c = (asgi_coro_t *)self;
    PyObject *res = NULL;
    PySendResult r;

    if (c->eager) {
        c->eager = 0;
        *presult = c->first;
        c->first = NULL;
        return PYGEN_NEXT;
    }
    if (c->inner == NULL) {
        return coro_end_result(c, presult);
    }
    r = PyIter_Send(c->inner, arg, &res);
    return coro_after(c, r, res, presult);
}

/* A PySendResult as the iterator and method protocols say it. */
static PyObject *
coro_send_value(PySendResult r, PyObject *res)
{
    if (r == PYGEN_RETURN) {
        if (res == Py_None) {
            PyErr_SetNone(PyExc_StopIteration);
        } else {
            _PyGen_SetStopIterationValue(res);
        }
        Py_DECREF(res);
        return NULL;
    }
    return res; /* a value yielded, or NULL with the exception */
}

static PyObject *
coro_iternext(PyObject *self)
{
    PyObject *res = NULL;
    PySendResult r = coro_am_send(self, Py_None, &res);

    return coro_send_value(r, res);
}

static PyObject *
coro_send(PyObject *self, PyObject *arg)
{
    PyObject *res = NULL;
    PySendResult r = coro_am_send(self, arg, &res);

    return coro_send_value(r, res);
}

static PyObject *
coro_throw(PyObject *self, PyObject *args)
{
    asgi_coro_t *c = (asgi_coro_t *)self;
    PyObject *meth, *res = NULL;
    PySendResult r;

    if (c->eager) {
        /* Thrown in before the Task saw what the eager step waits for:
         * the app's coroutine takes it where it waits. */
        c->eager = 0;
        Py_CLEAR(c->first);
    }
    if (c->inner == NULL) {
        /* As a finished coroutine does: the exception comes back out. */
        c->handed = 1;
        if (PyTuple_GET_SIZE(args) >= 1) {
            PyObject *t = PyTuple_GET_ITEM(args, 0);
            PyObject *v =
                PyTuple_GET_SIZE(args) >= 2 ? PyTuple_GET_ITEM(args, 1) : NULL;

            if (PyExceptionInstance_Check(t)) {
                PyErr_SetObject((PyObject *)Py_TYPE(t), t);
            } else {
                PyErr_SetObject(t, v);
            }
        } else {
            PyErr_SetString(PyExc_TypeError, "throw expected an exception");
        }
        return NULL;
    }
    meth = PyObject_GetAttrString(c->inner, "throw");
    if (meth == NULL) {
        return NULL;
    }
    res = PyObject_Call(meth, args, NULL);
    Py_DECREF(meth);
    if (res != NULL) {
        return res; /* it waits again */
    }
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        if (_PyGen_FetchStopIterationValue(&res) != 0) {
            return NULL;
        }
        coro_finish(c, res);
    } else {
        coro_finish(c, NULL);
    }
    r = coro_end_result(c, &res);
    return coro_send_value(r, res);
}

static PyObject *
coro_close(PyObject *self, PyObject *noargs)
{
    asgi_coro_t *c = (asgi_coro_t *)self;
    PyObject *inner = c->inner, *res;

    (void)noargs;
    Py_CLEAR(c->first);
    c->eager = 0;
    if (inner == NULL) {
        Py_RETURN_NONE;
    }
    c->inner = NULL;
    res = PyObject_CallMethod(inner, "close", NULL);
    Py_DECREF(inner);
    return res;
}

/* result(): what the request object's _done asks, as of a Task. */
static PyObject *
coro_result(PyObject *self, PyObject *noargs)
{
    asgi_coro_t *c = (asgi_coro_t *)self;

    (void)noargs;
    if (c->exc_type != NULL) {
        Py_INCREF(c->exc_type);
        Py_XINCREF(c->exc_value);
        Py_XINCREF(c->exc_tb);
        PyErr_Restore(c->exc_type, c->exc_value, c->exc_tb);
        return NULL;
    }
    if (c->value == NULL) {
        return PyErr_Format(PyExc_RuntimeError, "Result is not set.");
    }
    Py_INCREF(c->value);
    return c->value;
}

/* cr_frame: the app's, so that task.get_stack() and tracebacks see it. */
static PyObject *
coro_get_frame(PyObject *self, void *closure)
{
    asgi_coro_t *c = (asgi_coro_t *)self;

    (void)closure;
    if (c->inner == NULL) {
        Py_RETURN_NONE;
    }
    return PyObject_GetAttrString(c->inner, "cr_frame");
}

static PyObject *
coro_await(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static int
coro_traverse(PyObject *self, visitproc visit, void *arg)
{
    asgi_coro_t *c = (asgi_coro_t *)self;

    Py_VISIT(c->inner);
    Py_VISIT(c->obj);
    Py_VISIT(c->first);
    Py_VISIT(c->value);
    Py_VISIT(c->exc_type);
    Py_VISIT(c->exc_value);
    Py_VISIT(c->exc_tb);
    return 0;
}

static int
coro_clear(PyObject *self)
{
    asgi_coro_t *c = (asgi_coro_t *)self;

    Py_CLEAR(c->inner);
    Py_CLEAR(c->obj);
    Py_CLEAR(c->first);
    Py_CLEAR(c->value);
    Py_CLEAR(c->exc_type);
    Py_CLEAR(c->exc_value);
    Py_CLEAR(c->exc_tb);
    return 0;
}

static void
coro_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    coro_clear(self);
    PyObject_GC_Del(self);
}

static PyAsyncMethods asgi_coro_async = {
    .am_await = coro_await,
    .am_send = coro_am_send,
};

static PyMethodDef asgi_coro_methods[] = {
    {"send", coro_send, METH_O, NULL},
    {"throw", coro_throw, METH_VARARGS, NULL},
    {"close", coro_close, METH_NOARGS, NULL},
    {"result", coro_result, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef asgi_coro_getset[] = {
    {"cr_frame", coro_get_frame, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject asgi_coro_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wharf.asgi_request",
    .tp_basicsize = sizeof(asgi_coro_t),
    .tp_dealloc = coro_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = coro_traverse,
    .tp_clear = coro_clear,
    .tp_as_async = &asgi_coro_async,
    .tp_iter = coro_await,
    .tp_iternext = coro_iternext,
    .tp_methods = asgi_coro_methods,
    .tp_getset = asgi_coro_getset,
};

PyObject *wf_asgi_cancelled;

int
wf_asgi_task_init(void)
{
    PyObject *asyncio;

    if (PyType_Ready(&asgi_coro_type) != 0) {
        return -1;
    }
    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return -1;
    }
    wf_asgi_cancelled = PyObject_GetAttrString(asyncio, "CancelledError");
    Py_DECREF(asyncio);
    return wf_asgi_cancelled == NULL ? -1 : 0;
}

/* ---- starting a request's task ------------------------------------------ */

static PyObject *str_call_soon, *str_context;

/* loop.call_soon(callback, context=ctx) as the Task's __init__ calls it,
 * while an eager Task is made (an instance attribute of the loop for that
 * moment): the first step is kept in wk->step, so that a coroutine that
 * ended in its eager step ends its Task now, with no Handle and no loop
 * round trip (as Python 3.12's eager tasks), and one that waits has the
 * step scheduled by the loop's own call_soon after all.  Anything but
 * that one call goes to the loop's own call_soon. */
static PyObject *
task_step_catch(PyObject *self, PyObject *const *args, size_t nargsf,
                PyObject *kwnames)
{
    wf_asgi_worker_t *wk = PyCapsule_GetPointer(self, NULL);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *ctx = NULL;

    if (wk == NULL) {
        return NULL;
    }
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) == 1
        && PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), str_context) == 0) {
        ctx = args[nargs];
    }
    if (wk->step != NULL || nargs != 1 || ctx == NULL
        || !PyContext_CheckExact(ctx)) {
        return PyObject_Vectorcall(wk->call_soon, args, nargsf, kwnames);
    }
    Py_INCREF(args[0]);
    wk->step = args[0];
    Py_INCREF(ctx);
    wk->step_ctx = ctx;
    Py_RETURN_NONE;
}

static PyMethodDef task_step_catch_def = {
    "call_soon", (PyCFunction)(void (*)(void))task_step_catch,
    METH_FASTCALL | METH_KEYWORDS, NULL};

/* The caught first step: run now when the coroutine has ended (the Task
 * takes its end), else given to the loop's call_soon. */
static void
task_step_release(wf_asgi_worker_t *wk, asgi_coro_t *c)
{
    PyObject *step = wk->step, *ctx = wk->step_ctx, *res;

    wk->step = wk->step_ctx = NULL;
    if (step == NULL) {
        return;
    }
    if (c->inner == NULL && !c->eager) {
        if (PyContext_Enter(ctx) == 0) {
            res = PyObject_CallNoArgs(step);
            if (res == NULL) {
                PyErr_WriteUnraisable(step);
            }
            Py_XDECREF(res);
            PyContext_Exit(ctx);
        } else {
            PyErr_WriteUnraisable(step);
        }
    } else {
        static PyObject *kwnames;
        PyObject *args[2] = {step, ctx};

        if (kwnames == NULL) {
            kwnames = PyTuple_Pack(1, str_context);
        }
        res = kwnames == NULL
                  ? NULL
                  : PyObject_Vectorcall(wk->call_soon, args, 1, kwnames);
        if (res == NULL) {
            PyErr_WriteUnraisable(step);
        }
        Py_XDECREF(res);
    }
    Py_DECREF(step);
    Py_DECREF(ctx);
}

int
wf_asgi_task_loop_init(wf_asgi_worker_t *wk)
{
    PyObject *asyncio, *tasks;

    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return -1;
    }
    wk->task_type = PyObject_GetAttrString(asyncio, "Task");
    tasks = PyObject_GetAttrString(asyncio, "tasks");
    Py_DECREF(asyncio);
    if (wk->task_type == NULL || tasks == NULL) {
        Py_XDECREF(tasks);
        return -1;
    }
    wk->enter_task = PyObject_GetAttrString(tasks, "_enter_task");
    wk->leave_task = PyObject_GetAttrString(tasks, "_leave_task");
    Py_DECREF(tasks);
    wk->get_task_factory = PyObject_GetAttrString(wk->loop, "get_task_factory");
    if (str_call_soon == NULL) {
        str_call_soon = PyUnicode_InternFromString("call_soon");
        str_context = PyUnicode_InternFromString("context");
    }
    if (str_call_soon != NULL && str_context != NULL
        && PyObject_HasAttrString(wk->loop, "__dict__")) {
        PyObject *capsule = PyCapsule_New(wk, NULL, NULL);

        if (capsule != NULL) {
            wk->step_catch = PyCFunction_New(&task_step_catch_def, capsule);
            Py_DECREF(capsule);
        }
        PyErr_Clear(); /* no catch: the Task's step goes through the loop */
    }
    if (wk->enter_task == NULL || wk->leave_task == NULL
        || wk->get_task_factory == NULL) {
        /* No eager steps then (another asyncio): tasks as usual. */
        PyErr_Clear();
        Py_CLEAR(wk->enter_task);
        Py_CLEAR(wk->leave_task);
        Py_CLEAR(wk->get_task_factory);
    }
    return 0;
}

void
wf_asgi_task_loop_fini(wf_asgi_worker_t *wk)
{
    Py_CLEAR(wk->task_type);
    Py_CLEAR(wk->enter_task);
    Py_CLEAR(wk->leave_task);
    Py_CLEAR(wk->get_task_factory);
    Py_CLEAR(wk->step_catch);
}

/* Calls f(loop, task); 0, or -1 with the exception set. */
static int
task_call2(PyObject *f, PyObject *loop, PyObject *task)
{
    PyObject *args[2] = {loop, task};
    PyObject *res = PyObject_Vectorcall(f, args, 2, NULL);

    Py_XDECREF(res);
    return res == NULL ? -1 : 0;
}

/* The first step of c's coroutine, now, as a step of task (current for
 * the loop, in ctx).  Where it cannot be made current (a task already
 * runs), the step is left to the Task. */
static void
task_eager_step(wf_asgi_worker_t *wk, asgi_coro_t *c, PyObject *task,
                PyObject *ctx)
{
    PyObject *res = NULL, *et, *ev, *tb;
    PySendResult r;

    if (PyContext_Enter(ctx) != 0) {
        PyErr_Clear();
        return;
    }
    if (task_call2(wk->enter_task, wk->loop, task) != 0) {
        PyErr_Clear();
        PyContext_Exit(ctx);
        return;
    }
    r = PyIter_Send(c->inner, Py_None, &res);
    PyErr_Fetch(&et, &ev, &tb);
    if (task_call2(wk->leave_task, wk->loop, task) != 0) {
        PyErr_WriteUnraisable(task);
    }
    if (PyContext_Exit(ctx) != 0) {
        PyErr_WriteUnraisable(task);
    }
    PyErr_Restore(et, ev, tb);
    if (r == PYGEN_NEXT) {
        c->first = res;
        c->eager = 1;
        return;
    }
    coro_finish(c, r == PYGEN_RETURN ? res : NULL);
}

void
wf_asgi_task_eager_check(wf_asgi_worker_t *wk)
{
    PyObject *factory;

    wk->eager = 0;
    if (wk->get_task_factory == NULL) {
        return;
    }
    factory = PyObject_CallNoArgs(wk->get_task_factory);
    if (factory == NULL) {
        PyErr_Clear();
        return;
    }
    wk->eager = factory == Py_None;
    Py_DECREF(factory);
}

/* A Task of the loop for c: asyncio.Task(c, loop=, context=ctx) for an
 * eager start (the loop has no task factory: wk->eager), else
 * loop.create_task(c).  New reference or NULL. */
static PyObject *
task_new(wf_asgi_worker_t *wk, PyObject *c, PyObject *ctx, bool eager)
{
    static PyObject *kwnames;
    PyObject *args[3] = {c, wk->loop, ctx};

    if (!eager) {
        return PyObject_CallOneArg(wk->create_task, c);
    }
    PyObject *task;
    bool caught;

    if (kwnames == NULL) {
        kwnames = Py_BuildValue("(ss)", "loop", "context");
        if (kwnames == NULL) {
            return NULL;
        }
    }
    caught = wk->step_catch != NULL
             && PyObject_SetAttr(wk->loop, str_call_soon, wk->step_catch) == 0;
    PyErr_Clear();
    task = PyObject_Vectorcall(wk->task_type, args, 1, kwnames);
    if (caught && PyObject_DelAttr(wk->loop, str_call_soon) != 0) {
        PyErr_WriteUnraisable(wk->loop);
    }
    if (task == NULL) {
        Py_CLEAR(wk->step);
        Py_CLEAR(wk->step_ctx);
    }
    return task;
}

int
wf_asgi_task_start(wf_asgi_worker_t *wk, PyObject *coro, PyObject *obj,
                   bool eager)
{
    asgi_coro_t *c;
    PyObject *task, *ctx = NULL;
    int rc = -1;

    c = PyObject_GC_New(asgi_coro_t, &asgi_coro_type);
    if (c == NULL) {
        return -1;
    }
    memset((char *)c + sizeof(PyObject), 0, sizeof(*c) - sizeof(PyObject));
    Py_INCREF(coro);
    c->inner = coro;
    Py_INCREF(obj);
    c->obj = obj;
    PyObject_GC_Track((PyObject *)c);
    eager = eager && wk->eager && wk->enter_task != NULL;
    if (eager) {
        ctx = PyContext_CopyCurrent();
        if (ctx == NULL) {
            goto done;
        }
    }
    task = task_new(wk, (PyObject *)c, ctx, eager);
    if (task == NULL) {
        goto done;
    }
    if (eager) {
        task_eager_step(wk, c, task, ctx);
        task_step_release(wk, c);
    }
    Py_DECREF(task); /* the loop holds it while it runs */
    rc = 0;

done:
    Py_XDECREF(ctx);
    Py_DECREF(c);
    return rc;
}
