/* The Python module's shared state: what python_module.c (setup, options,
 * threads), wsgi.c and asgi.c all see.  The module includes apps/app_api.h
 * and nothing else of Wharf's (docs/internals/apps.md, "The Python
 * module").
 *
 * Threads and the GIL.  setup() runs on the process's main thread and ends
 * holding the GIL.  run() starts the workers with wf_py_workers_run():
 * each worker thread holds the GIL while it runs Python code and releases
 * it (Py_BEGIN_ALLOW_THREADS) around every runtime call that can block
 * (rt->next(), rt->read(), rt->write(), rt->dispatch() is non-blocking and
 * may keep it). */
#ifndef WF_APPS_PYTHON_PY_APP_H
#define WF_APPS_PYTHON_PY_APP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stddef.h>

#include "apps/app_api.h"

typedef enum wf_py_proto {
    WF_PY_PROTO_WSGI = 0,
    WF_PY_PROTO_ASGI,
} wf_py_proto_t;

/* One entry of "targets", or the app itself without "targets". */
typedef struct wf_py_target {
    char *name;          /* owned; the target's name; "" without targets */
    char *module;        /* owned; "module" */
    char *callable_name; /* owned; "callable" ("application" by default) */
    PyObject *callable;  /* new reference; the application (the factory's
                            result when "factory" is true) */
    PyObject *prefix;    /* new reference (str); NULL without "prefix" */
    char *prefix_data;   /* owned; "prefix" without its trailing '/'; NULL
                            without one (or for "" and "/") */
    size_t prefix_len;
    int asgi_legacy; /* asgi.c's: 1 for an ASGI 2 (double callable)
                        application; 0 otherwise */
} wf_py_target_t;

/* The module's state for the process: wf_app_module_t.setup()'s
 * *app_data.  Lives until the process exits. */
typedef struct wf_py_app {
    const wf_app_rt_t *rt;     /* borrowed: the runtime */
    wf_app_t *app;             /* borrowed: the runtime's application */
    const wf_app_conf_t *conf; /* borrowed; outlives the app */
    wf_py_proto_t protocol;    /* "protocol", or detected */
    unsigned threads;          /* worker threads (conf->threads, >= 1) */
    size_t thread_stack_size;  /* bytes; 0: the default */
    unsigned ntargets;         /* >= 1; conf->ntargets when "targets" */
    wf_py_target_t *targets;   /* owned; ntargets entries, indexed by
                                  wf_app_head_t.target_index */
} wf_py_app_t;

/* A worker's body: serves rt->worker(app->app, i) until it is done and
 * returns 0 (or a non-zero exit status after a fatal error).  Called with
 * the GIL held, on its own thread (worker 0 on the thread that called
 * wf_py_workers_run()). */
typedef int (*wf_py_worker_fn)(wf_py_app_t *app, unsigned i);

/* Runs fn for workers 0..app->threads-1, each on its own thread (stack of
 * app->thread_stack_size bytes when set), and returns once every one
 * returned: 0 when all returned 0, else the first non-zero status.  Called
 * and returns with the GIL held.  A thread that cannot be created is
 * logged and its worker is not run (the others go on). */
int wf_py_workers_run(wf_py_app_t *app, wf_py_worker_fn fn);

/* Logs the pending Python exception with its traceback at level, after
 * the line what (a printf format), and clears it.  Needs the GIL.  Does
 * nothing more than logging what when no exception is set. */
void wf_py_log_exception(wf_py_app_t *app, wf_app_log_level_t level,
                         const char *what, ...)
    __attribute__((format(printf, 3, 4)));

/* Implemented in wsgi.c: prepares the WSGI state (interned strings, the
 * environ template) and returns 0, or -1 after logging why.  Called by
 * setup() with the GIL held. */
int wf_py_wsgi_init(wf_py_app_t *app);

/* Implemented in wsgi.c: runs the WSGI workers; returns the process's
 * exit status. */
int wf_py_wsgi_run(wf_py_app_t *app);

/* Implemented in asgi.c (the asgi part of the module).  As Unit detects an
 * ASGI application: 1 when callable is ASGI, 0 when WSGI, -1 on an error
 * (a Python exception is set).  Needs the GIL. */
int wf_py_asgi_detect(PyObject *callable);

/* Implemented in asgi.c: runs the ASGI workers (lifespan, event loops);
 * returns the process's exit status.  Called with the GIL held. */
int wf_py_asgi_run(wf_py_app_t *app);

#endif
