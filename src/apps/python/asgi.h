/* What the ASGI files of the Python module share (asgi.c: detection, the
 * event loop of each worker, dispatch; asgi_http.c, asgi_ws.c,
 * asgi_lifespan.c: one scope type each).  docs/internals/apps.md, "The
 * Python module: ASGI, WebSocket, lifespan".
 *
 * Every function here runs on a worker's thread with the GIL held. */
#ifndef WF_APPS_PYTHON_ASGI_H
#define WF_APPS_PYTHON_ASGI_H

#include "apps/python/py_app.h"

/* Requests at once per worker (rt->set_concurrency()). */
#define WF_ASGI_CONCURRENCY 128

/* Client and server addresses of recent requests (asgi_addr_new()). */
#define WF_ASGI_ADDRS 64

typedef struct wf_asgi_addr {
    PyObject *tuple; /* owned; (host, port); NULL: empty */
    unsigned port;
    size_t len;
    char addr[48];
} wf_asgi_addr_t;

/* One worker: its asyncio loop and the requests it serves. */
typedef struct wf_asgi_worker {
    wf_py_app_t *app;      /* borrowed */
    const wf_app_rt_t *rt; /* borrowed: app->rt */
    wf_app_worker_t *w;    /* borrowed: rt->worker(app, i) */
    unsigned index;
    int fd;                     /* rt->worker_fd(); -1 before */
    PyObject *loop;             /* new reference */
    PyObject *create_future;    /* loop.create_future, bound */
    PyObject *create_task;      /* loop.create_task, bound */
    PyObject *call_soon;        /* loop.call_soon, bound */
    PyObject *call_later;       /* loop.call_later, bound */
    PyObject *task_type;        /* asyncio.Task */
    PyObject *enter_task;       /* asyncio.tasks._enter_task; NULL: no eager
                                   steps (asgi_task.c) */
    PyObject *leave_task;       /* asyncio.tasks._leave_task */
    PyObject *get_task_factory; /* loop.get_task_factory, bound */
    PyObject *step_catch;       /* stands for loop.call_soon while a Task
                                   is made (asgi_task.c) */
    PyObject *step;             /* the Task's first step, caught; or NULL */
    PyObject *step_ctx;         /* its context */
    PyObject *dispatch;         /* a callable running asgi_dispatch(self) */
    PyObject *quit;             /* a Future done when the worker is done */
    PyObject **lifespans;       /* ntargets lifespan objects, or NULL */
    unsigned active;            /* requests taken and not ended */
    int done;                   /* rt->dispatch() said WF_APP_DONE */
    int dispatch_soon;          /* a dispatch is scheduled (call_soon) */
    int in_dispatch;            /* within rt->dispatch() */
    wf_asgi_addr_t addrs[WF_ASGI_ADDRS]; /* recent (host, port) tuples */
    int eager; /* requests of this dispatch() start eagerly:
                  the loop has no task factory */
} wf_asgi_worker_t;

/* Interned strings, created once by wf_py_asgi_detect() or run(). */
typedef struct wf_asgi_strs {
    PyObject *type, *asgi, *version, *spec_version, *v3_0, *v2_0, *v2_1, *v2_3,
        *http_version, *v1_0, *v1_1, *v2, *method, *scheme, *http, *https, *ws,
        *wss, *path, *raw_path, *query_string, *root_path, *headers, *client,
        *server, *state, *extensions, *subprotocols, *subprotocol, *body,
        *more_body, *status, *code, *reason, *bytes, *text, *message,
        *http_request, *http_disconnect, *http_response_start,
        *http_response_body, *http_response_pathsend, *websocket,
        *websocket_connect, *websocket_accept, *websocket_receive,
        *websocket_send, *websocket_close, *websocket_disconnect, *lifespan,
        *lifespan_startup, *lifespan_shutdown, *lifespan_startup_complete,
        *lifespan_startup_failed, *lifespan_shutdown_complete,
        *lifespan_shutdown_failed, *set_result, *set_exception, *result, *done,
        *cancel, *add_done_callback, *receive, *send, *on_done, *empty;
} wf_asgi_strs_t;

extern wf_asgi_strs_t wf_asgi_str;

/* An awaitable that is already complete (its result is None): what
 * send() returns when the bytes went out at once.  Borrowed; INCREF it
 * before returning it. */
extern PyObject *wf_asgi_ready;

/* Sets up the interned strings and the types; 0, or -1 with a Python
 * exception set.  Idempotent. */
int wf_asgi_init(void);

/* Readies the type of each scope (asgi_http.c, asgi_ws.c,
 * asgi_lifespan.c); 0 or -1 with a Python exception. */
int wf_asgi_http_init(void);
int wf_asgi_ws_init(void);
int wf_asgi_lifespan_init(void);

/* A new message dict {"type": type}; NULL with an exception set. */
PyObject *wf_asgi_msg_new(PyObject *type);

/* A new scope dict with "type" and "asgi" (version "3.0" and
 * spec_version); NULL with an exception set. */
PyObject *wf_asgi_scope_new(PyObject *type, PyObject *spec_version);

/* A new Future of the worker's loop, or NULL with an exception set. */
PyObject *wf_asgi_future_new(wf_asgi_worker_t *wk);

/* Completes fut with result (borrowed) unless it is done or cancelled;
 * steals the reference to fut.  Logs a failure. */
void wf_asgi_future_resolve(wf_asgi_worker_t *wk, PyObject *fut,
                            PyObject *result);

/* Completes fut with the exception exc_type(text) unless it is done;
 * steals the reference to fut. */
void wf_asgi_future_fail(wf_asgi_worker_t *wk, PyObject *fut,
                         PyObject *exc_type, const char *text);

/* How wf_asgi_app_call() starts the coroutine. */
typedef enum wf_asgi_start {
    WF_ASGI_START_TASK = 0, /* a Task whose first step the loop runs */
    WF_ASGI_START_EAGER,    /* a Task whose first step runs now (the loop
                               must be running: called from dispatch()) */
} wf_asgi_start_t;

/* Calls the target's application with (scope, receive, send) of obj
 * (an object with receive, send and _done methods), as ASGI 3 or, for
 * t->asgi_legacy, ASGI 2, and runs the coroutine in a Task of the loop
 * (wf_asgi_task_start()); obj._done(x) is called when it ends, x.result()
 * giving its outcome.  Returns 0, or -1 after logging what and the
 * traceback at level (the exception is cleared).  Borrows everything. */
int wf_asgi_app_call(wf_asgi_worker_t *wk, wf_py_target_t *t, PyObject *scope,
                     PyObject *obj, wf_app_log_level_t level, const char *what,
                     wf_asgi_start_t how);

/* asyncio.CancelledError (wf_asgi_task_init()). */
extern PyObject *wf_asgi_cancelled;

/* Readies the coroutine wrapper type (asgi_task.c); 0 or -1 with an
 * exception set. */
int wf_asgi_task_init(void);

/* The worker's handles on asyncio's tasks (task_type, enter_task,
 * leave_task, get_task_factory), after wk->loop is made; 0 or -1 with an
 * exception set.  fini drops them. */
int wf_asgi_task_loop_init(wf_asgi_worker_t *wk);
void wf_asgi_task_loop_fini(wf_asgi_worker_t *wk);

/* Sets wk->eager for the dispatch() about to run: whether the loop has
 * no task factory (an app may set one at any time; it applies from the
 * next dispatch() on). */
void wf_asgi_task_eager_check(wf_asgi_worker_t *wk);

/* Runs coro (the app's) in a Task of the worker's loop, wrapped so that
 * obj._done(wrapper) is called the moment it ends (wrapper.result() is
 * its outcome; CancelledError, SystemExit and KeyboardInterrupt still
 * reach the Task).  eager: its first step runs now, in the new Task made
 * current, as Python 3.12's eager tasks run (not when the app set a task
 * factory: wk->eager, or the Task cannot be made current).  0, or -1 with an
 * exception set (nothing started).  Borrows coro and obj. */
int wf_asgi_task_start(wf_asgi_worker_t *wk, PyObject *coro, PyObject *obj,
                       bool eager);

/* Runs rt->dispatch() on the next loop iteration (once, however often it
 * is asked).  Called after reading body bytes outside dispatch(): the
 * runtime may batch the acknowledgement they cause until its next
 * dispatch(), and the router sends nothing more until it has it. */
void wf_asgi_dispatch_soon(wf_asgi_worker_t *wk);

/* Ends req (rt->end()) and accounts for it in the worker. */
void wf_asgi_req_end(wf_asgi_worker_t *wk, wf_app_req_t *req, int ok);

/* Drops the worker's cached address tuples. */
void wf_asgi_addrs_clear(wf_asgi_worker_t *wk);

/* The state dict requests of target ti start from (a copy is made per
 * request): the lifespan's, or NULL without one.  Borrowed. */
PyObject *wf_asgi_lifespan_state(wf_asgi_worker_t *wk, unsigned ti);

/* Starts an HTTP request (asgi_http.c) or a WebSocket (asgi_ws.c):
 * builds the scope, calls the application.  On a failure the request is
 * ended (503 from the router) and the failure logged. */
void wf_asgi_http_start(wf_asgi_worker_t *wk, wf_app_req_t *req,
                        wf_py_target_t *t, unsigned ti);
void wf_asgi_ws_start(wf_asgi_worker_t *wk, wf_app_req_t *req,
                      wf_py_target_t *t, unsigned ti);

/* The scope's keys common to http and websocket (http_version, scheme,
 * path, raw_path, query_string, root_path, headers, client, server,
 * state) into scope.  0 or -1 with an exception set. */
int wf_asgi_scope_fill(wf_asgi_worker_t *wk, PyObject *scope,
                       const wf_app_head_t *h, wf_py_target_t *t, unsigned ti,
                       PyObject *scheme);

/* The rt->dispatch() events of each kind of request object; the module's
 * per-request data (rt->data()) is the Python object, whose first field
 * after PyObject_HEAD is a wf_asgi_req_ops_t pointer. */
typedef struct wf_asgi_req_ops {
    void (*on_readable)(PyObject *self);
    void (*on_writable)(PyObject *self);
    void (*on_abort)(PyObject *self);
} wf_asgi_req_ops_t;

typedef struct wf_asgi_req_obj {
    PyObject_HEAD const wf_asgi_req_ops_t *ops;
} wf_asgi_req_obj_t;

/* Lifespan (asgi_lifespan.c): runs "lifespan.startup" for every target
 * on the worker's loop; 0, or -1 when one failed (logged): the worker
 * must not serve.  Apps without lifespan support are tolerated as Unit
 * tolerates them. */
int wf_asgi_lifespan_startup(wf_asgi_worker_t *wk);

/* Runs "lifespan.shutdown" for every target that took part. */
void wf_asgi_lifespan_shutdown(wf_asgi_worker_t *wk);

#endif
