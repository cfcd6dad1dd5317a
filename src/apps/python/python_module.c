/* The Python language module: its wf_app_module_t, the app's options as
 * Unit reads them (path, home, module, callable, factory, prefix,
 * protocol, threads, thread_stack_size, targets), the interpreter's
 * start and end, and the worker threads.  WSGI is in wsgi.c, ASGI in
 * asgi.c.  docs/internals/apps.md, "The Python module". */
#include "apps/python/py_app.h"

#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* asgi.c is a part of its own: without it this module serves WSGI only
 * (the references below are then NULL). */
#pragma weak wf_py_asgi_detect
#pragma weak wf_py_asgi_run

static int python_setup(const wf_app_rt_t *rt, wf_app_t *app,
                        const wf_app_conf_t *conf, void **app_data);
static int python_run(wf_app_t *app, void *app_data);

__attribute__((visibility("default"))) const wf_app_module_t wf_app_module = {
    .abi = WF_APP_ABI,
    .type = "python",
    .version = PY_VERSION,
    .setup = python_setup,
    .run = python_run,
};

/* traceback.format_exception, for wf_py_log_exception(). */
static PyObject *python_format_exception;

/* A log line holds about 2 KiB (core/log.c): a longer traceback goes in
 * several, cut at line ends. */
#define PYTHON_LOG_PIECE 1536

/* Logs what, then the n bytes of text below it (several calls when
 * long). */
static void
python_log_text(wf_py_app_t *app, wf_app_log_level_t level, const char *what,
                const char *text, size_t n)
{
    int first = 1;

    do {
        size_t take = n, shown;

        if (take > PYTHON_LOG_PIECE) {
            /* Cut after the last '\n' that fits, if there is one. */
            while (take > PYTHON_LOG_PIECE
                   || (take > 1 && text[take - 1] != '\n')) {
                take--;
            }
            if (take <= 1) {
                take = PYTHON_LOG_PIECE;
            }
        }
        shown = take > 0 && text[take - 1] == '\n' ? take - 1 : take;
        if (first) {
            app->rt->log(level, "%s\n%.*s", what, (int)shown, text);
            first = 0;
        } else {
            app->rt->log(level, "%.*s", (int)shown, text);
        }
        text += take;
        n -= take;
    } while (n > 0);
}

void
wf_py_log_exception(wf_py_app_t *app, wf_app_log_level_t level,
                    const char *what, ...)
{
    PyObject *type, *value, *tb, *lines, *text;
    const char *s;
    char line[1024];
    va_list ap;
    size_t n;

    va_start(ap, what);
    vsnprintf(line, sizeof(line), what, ap);
    va_end(ap);

    if (PyErr_Occurred() == NULL) {
        app->rt->log(level, "%s", line);
        return;
    }

    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }

    text = NULL;
    lines = NULL;
    if (python_format_exception != NULL) {
        lines = PyObject_CallFunctionObjArgs(python_format_exception, type,
                                             value != NULL ? value : Py_None,
                                             tb != NULL ? tb : Py_None, NULL);
    }
    if (lines != NULL) {
        PyObject *empty = PyUnicode_FromStringAndSize("", 0);

        if (empty != NULL) {
            text = PyUnicode_Join(empty, lines);
            Py_DECREF(empty);
        }
        Py_DECREF(lines);
    }
    if (text == NULL && value != NULL) {
        PyErr_Clear();
        text = PyObject_Str(value);
    }

    s = text != NULL ? PyUnicode_AsUTF8(text) : NULL;
    if (s == NULL) {
        PyErr_Clear();
        app->rt->log(level, "%s", line);
    } else {
        /* Unit's log shows the traceback as Python prints it, below the
         * line that says what failed. */
        n = strlen(s);
        while (n > 0 && s[n - 1] == '\n') {
            n--;
        }
        python_log_text(app, level, line, s, n);
    }

    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* ---- options ---------------------------------------------------------- */

/* A string member of o as a new malloc()ed copy: NULL when absent (or not
 * a string: the controller validated the config). */
static char *
python_conf_str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_string(v)) {
        return NULL;
    }
    return strdup(json_string_value(v));
}

/* Reads a target's own options from o (the app object without
 * "targets", or one entry of it) into t and loads its callable. */
static int python_target_load(wf_py_app_t *app, wf_py_target_t *t,
                              const json_t *o);

static int
python_target_prefix(wf_py_app_t *app, wf_py_target_t *t, const json_t *o)
{
    const json_t *v = json_object_get(o, "prefix");
    const char *s;
    size_t len;

    if (!json_is_string(v)) {
        return 0;
    }
    s = json_string_value(v);
    len = json_string_length(v);
    /* As Unit: a trailing '/' is not part of the prefix, and "" or "/"
     * is no prefix at all. */
    if (len > 0 && s[len - 1] == '/') {
        len--;
    }
    if (len == 0) {
        return 0;
    }

    t->prefix_data = strndup(s, len);
    t->prefix = PyUnicode_DecodeLatin1(s, (Py_ssize_t)len, "strict");
    if (t->prefix_data == NULL || t->prefix == NULL) {
        wf_py_log_exception(app, WF_APP_LOG_ALERT,
                            "Python failed to allocate target prefix string");
        return -1;
    }
    t->prefix_len = len;
    return 0;
}

/* Calls the factory obj (borrowed) for the application: a new reference,
 * or NULL after logging. */
static PyObject *
python_target_factory(wf_py_app_t *app, wf_py_target_t *t, PyObject *obj)
{
    PyObject *res;

    if (PyCallable_Check(obj) == 0) {
        app->rt->log(WF_APP_LOG_ALERT,
                     "factory \"%s\" in module \"%s\" "
                     "can not be called to fetch callable",
                     t->callable_name, t->module);
        return NULL;
    }

    res = PyObject_CallNoArgs(obj);
    if (res == NULL) {
        wf_py_log_exception(app, WF_APP_LOG_ALERT,
                            "factory \"%s\" in module \"%s\" "
                            "did not return callable object",
                            t->callable_name, t->module);
        return NULL;
    }
    if (PyCallable_Check(res) == 0) {
        app->rt->log(WF_APP_LOG_ALERT,
                     "factory \"%s\" in module \"%s\" "
                     "did not return callable object",
                     t->callable_name, t->module);
        Py_DECREF(res);
        return NULL;
    }
    return res;
}

static int
python_target_load(wf_py_app_t *app, wf_py_target_t *t, const json_t *o)
{
    PyObject *module, *obj;

    t->module = python_conf_str(o, "module");
    t->callable_name = python_conf_str(o, "callable");
    if (t->callable_name == NULL) {
        t->callable_name = strdup("application");
    }
    if (t->module == NULL || t->callable_name == NULL) {
        app->rt->log(WF_APP_LOG_ALERT, "Python: no \"module\" to import");
        return -1;
    }

    module = PyImport_ImportModule(t->module);
    if (module == NULL) {
        wf_py_log_exception(app, WF_APP_LOG_ALERT,
                            "Python failed to import module \"%s\"", t->module);
        return -1;
    }

    obj = PyDict_GetItemString(PyModule_GetDict(module), t->callable_name);
    if (obj == NULL) {
        app->rt->log(WF_APP_LOG_ALERT,
                     "Python failed to get \"%s\" from module \"%s\"",
                     t->callable_name, t->module);
        goto fail_module;
    }

    if (json_is_true(json_object_get(o, "factory"))) {
        t->callable = python_target_factory(app, t, obj);
        if (t->callable == NULL) {
            goto fail_module;
        }
    } else if (PyCallable_Check(obj) == 0) {
        app->rt->log(WF_APP_LOG_ALERT,
                     "\"%s\" in module \"%s\" is not a callable object",
                     t->callable_name, t->module);
        goto fail_module;
    } else {
        Py_INCREF(obj);
        t->callable = obj;
    }
    Py_DECREF(module);

    return python_target_prefix(app, t, o);

fail_module:
    Py_DECREF(module);
    return -1;
}

/* The targets: conf->targets' entries of "targets" in their order (the
 * order of wf_app_head_t.target_index), or the app object itself. */
static int
python_targets_load(wf_py_app_t *app, const json_t *root)
{
    const json_t *targets = json_object_get(root, "targets");
    unsigned n = json_is_object(targets) ? app->conf->ntargets : 1;

    if (n == 0) {
        n = 1;
        targets = NULL;
    }
    app->targets = calloc(n, sizeof(wf_py_target_t));
    if (app->targets == NULL) {
        app->rt->log(WF_APP_LOG_ALERT, "Could not allocate targets");
        return -1;
    }
    app->ntargets = n;

    for (unsigned i = 0; i < n; i++) {
        wf_py_target_t *t = &app->targets[i];
        const json_t *o = root;

        if (json_is_object(targets)) {
            o = json_object_get(targets, app->conf->targets[i]);
            t->name = strdup(app->conf->targets[i]);
        } else {
            t->name = strdup("");
        }
        if (t->name == NULL || !json_is_object(o)) {
            app->rt->log(WF_APP_LOG_ALERT, "Python: target #%u is missing", i);
            return -1;
        }
        if (python_target_load(app, t, o) != 0) {
            return -1;
        }
    }
    return 0;
}

/* "path": a string or an array, put in front of sys.path in its order. */
static int
python_path_set(wf_py_app_t *app, const json_t *root)
{
    const json_t *v = json_object_get(root, "path");
    PyObject *sys_path;
    size_t n;

    if (v == NULL) {
        return 0;
    }
    sys_path = PySys_GetObject("path"); /* borrowed */
    if (sys_path == NULL) {
        app->rt->log(WF_APP_LOG_ALERT, "Python failed to get \"sys.path\" "
                                       "list");
        return -1;
    }

    n = json_is_array(v) ? json_array_size(v) : 1;
    while (n-- > 0) {
        const json_t *e = json_is_array(v) ? json_array_get(v, n) : v;
        PyObject *s;
        int rc;

        if (!json_is_string(e)) {
            continue;
        }
        s = PyUnicode_DecodeFSDefaultAndSize(json_string_value(e),
                                             (Py_ssize_t)json_string_length(e));
        rc = s != NULL ? PyList_Insert(sys_path, 0, s) : -1;
        Py_XDECREF(s);
        if (rc != 0) {
            wf_py_log_exception(app, WF_APP_LOG_ALERT,
                                "Python failed to insert \"%s\" into "
                                "\"sys.path\"",
                                json_string_value(e));
            return -1;
        }
    }
    return 0;
}

/* ---- the interpreter ---------------------------------------------------- */

/* An app process dlopen()s this module with the runtime's flags; C
 * extension modules (lib-dynload/NAME.so) then need libpython's symbols in
 * the global scope, as in a python3 binary: make them global. */
static void
python_lib_global(void)
{
    Dl_info info;

    if (dladdr((void *)Py_InitializeEx, &info) != 0 && info.dli_fname != NULL) {
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
    }
}

/* Without "home": Py_InitializeEx(0)'s legacy config, but with the
 * program set to the interpreter of the libpython this module was built
 * against (WF_PY_PROGRAM, from its pkg-config prefix and version).  Left
 * unset, Python searches PATH for "python3" and takes its prefix from what
 * it finds there: a pyenv or /usr/local python3 first in PATH gave the app
 * that interpreter's stdlib and sys.executable under Debian's libpython
 * (Unit does the same; Wharf differs on purpose).  PYTHONHOME still wins,
 * as it does for python3 itself. */
#ifndef WF_PY_PROGRAM
static int
python_interp_start_default(void)
{
    Py_InitializeEx(0); /* no pkg-config prefix: Python's own search */
    return 0;
}
#else
static int
python_interp_start_default(void)
{
    PyPreConfig pre;
    PyConfig config;
    PyStatus st;

    if (access(WF_PY_PROGRAM, X_OK) != 0) {
        Py_InitializeEx(0); /* moved away: Python's own search */
        return 0;
    }
    /* What Py_InitializeEx() presets (the "compat" config, which is not
     * public): no locale coercion or UTF-8 mode, no argv parsing, the C
     * stdio left alone, no Python signal handlers. */
    PyPreConfig_InitPythonConfig(&pre);
    pre.parse_argv = 0;
    pre.utf8_mode = 0;
    pre.coerce_c_locale = 0;
    pre.coerce_c_locale_warn = 0;
    st = Py_PreInitialize(&pre);
    if (PyStatus_Exception(st)) {
        return -1;
    }
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;
    config.configure_c_stdio = 0;
    config.install_signal_handlers = 0;
    st = PyConfig_SetBytesString(&config, &config.program_name, WF_PY_PROGRAM);
    if (!PyStatus_Exception(st)) {
        st = Py_InitializeFromConfig(&config);
    }
    PyConfig_Clear(&config);
    return PyStatus_Exception(st) ? -1 : 0;
}
#endif

/* Starts the interpreter as Unit does: with "home", an isolated config
 * whose program is HOME/bin/python when HOME is a virtual environment
 * (PEP 405: it has pyvenv.cfg), else whose home is HOME; without, the
 * default config (python_interp_start_default()). */
static int
python_interp_start(wf_py_app_t *app, const char *home)
{
    PyPreConfig pre;
    PyConfig config;
    PyStatus st;
    char *buf;
    int venv;

    if (home == NULL) {
        if (python_interp_start_default() != 0) {
            app->rt->log(WF_APP_LOG_ALERT, "Failed to initialise config");
            return -1;
        }
        return 0;
    }

    buf = malloc(strlen(home) + sizeof("/pyvenv.cfg"));
    if (buf == NULL) {
        app->rt->log(WF_APP_LOG_ALERT, "Failed to allocate memory");
        return -1;
    }
    sprintf(buf, "%s/pyvenv.cfg", home);
    venv = access(buf, R_OK) == 0;
    if (venv) {
        sprintf(buf, "%s/bin/python", home);
    } else {
        strcpy(buf, home);
    }

    PyPreConfig_InitIsolatedConfig(&pre);
    pre.utf8_mode = -1; /* from LC_CTYPE, as Unit */
    st = Py_PreInitialize(&pre);
    if (PyStatus_Exception(st)) {
        goto fail;
    }

    PyConfig_InitIsolatedConfig(&config);
    st = PyConfig_SetBytesString(
        &config, venv ? &config.program_name : &config.home, buf);
    if (!PyStatus_Exception(st)) {
        st = Py_InitializeFromConfig(&config);
    }
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        goto fail;
    }
    free(buf);
    return 0;

fail:
    free(buf);
    app->rt->log(WF_APP_LOG_ALERT, "Failed to initialise config");
    return -1;
}

/* After Py_Initialize: sys.argv as Unit sets it, and the traceback
 * formatter. */
static int
python_interp_prepare(wf_py_app_t *app)
{
    PyObject *argv, *tb;

    argv = Py_BuildValue("[s]", "unit");
    if (argv == NULL || PySys_SetObject("argv", argv) != 0) {
        Py_XDECREF(argv);
        wf_py_log_exception(app, WF_APP_LOG_ALERT,
                            "Python failed to set the \"sys.argv\" list");
        return -1;
    }
    Py_DECREF(argv);

    tb = PyImport_ImportModule("traceback");
    if (tb != NULL) {
        python_format_exception =
            PyObject_GetAttrString(tb, "format_exception");
        Py_DECREF(tb);
    }
    if (python_format_exception == NULL) {
        /* Tracebacks are then logged as the exception's text only. */
        PyErr_Clear();
    }
    return 0;
}

/* "protocol", or Unit's detection: every target must agree. */
static int
python_protocol_set(wf_py_app_t *app, const json_t *root)
{
    const char *proto = json_string_value(json_object_get(root, "protocol"));
    int asgi = 0;

    if (proto != NULL) {
        app->protocol =
            strcmp(proto, "asgi") == 0 ? WF_PY_PROTO_ASGI : WF_PY_PROTO_WSGI;
        return 0;
    }
    if (wf_py_asgi_detect == NULL) {
        app->protocol = WF_PY_PROTO_WSGI;
        return 0;
    }

    for (unsigned i = 0; i < app->ntargets; i++) {
        int rc = wf_py_asgi_detect(app->targets[i].callable);

        if (rc < 0) {
            wf_py_log_exception(app, WF_APP_LOG_ALERT,
                                "Python failed to detect the protocol of "
                                "\"%s\"",
                                app->targets[i].callable_name);
            return -1;
        }
        if (i == 0) {
            asgi = rc;
        } else if (rc != asgi) {
            app->rt->log(WF_APP_LOG_ALERT,
                         "A mix of ASGI & WSGI targets is forbidden, "
                         "specify protocol in config if incorrect");
            return -1;
        }
    }
    app->protocol = asgi ? WF_PY_PROTO_ASGI : WF_PY_PROTO_WSGI;
    return 0;
}

static void
python_app_free(wf_py_app_t *app)
{
    for (unsigned i = 0; app->targets != NULL && i < app->ntargets; i++) {
        wf_py_target_t *t = &app->targets[i];

        if (Py_IsInitialized()) {
            Py_CLEAR(t->callable);
            Py_CLEAR(t->prefix);
        }
        free(t->name);
        free(t->module);
        free(t->callable_name);
        free(t->prefix_data);
    }
    free(app->targets);
    free(app);
}

/* Loads what the config names, the interpreter running. */
static int
python_app_load(wf_py_app_t *app, const json_t *root)
{
    if (python_interp_prepare(app) != 0 || python_path_set(app, root) != 0
        || python_targets_load(app, root) != 0
        || python_protocol_set(app, root) != 0) {
        return -1;
    }

    if (app->protocol == WF_PY_PROTO_ASGI) {
        if (wf_py_asgi_run == NULL) {
            app->rt->log(WF_APP_LOG_ALERT,
                         "Python: ASGI is not available in this module "
                         "(\"%s\" is an ASGI application)",
                         app->conf->name);
            return -1;
        }
        return 0;
    }
    return wf_py_wsgi_init(app);
}

static int
python_setup(const wf_app_rt_t *rt, wf_app_t *app, const wf_app_conf_t *conf,
             void **app_data)
{
    wf_py_app_t *a;
    json_error_t jerr;
    json_t *root;
    const json_t *v;
    int rc;

    root = json_loads(conf->json, 0, &jerr);
    if (!json_is_object(root)) {
        rt->log(WF_APP_LOG_ALERT, "Python: bad application config: %s",
                jerr.text);
        json_decref(root);
        return WF_APP_ERROR;
    }

    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        rt->log(WF_APP_LOG_ALERT, "Failed to allocate memory");
        json_decref(root);
        return WF_APP_ERROR;
    }
    a->rt = rt;
    a->app = app;
    a->conf = conf;
    a->threads = conf->threads > 0 ? conf->threads : 1;
    v = json_object_get(root, "thread_stack_size");
    a->thread_stack_size = json_is_integer(v) && json_integer_value(v) > 0
                               ? (size_t)json_integer_value(v)
                               : 0;

    python_lib_global();
    rc = python_interp_start(a,
                             json_string_value(json_object_get(root, "home")));
    if (rc == 0) {
        rc = python_app_load(a, root);
    }
    json_decref(root);

    if (rc != 0) {
        python_app_free(a);
        return WF_APP_ERROR;
    }
    *app_data = a;
    return WF_APP_OK;
}

static int
python_run(wf_app_t *app, void *app_data)
{
    wf_py_app_t *a = app_data;
    int status;

    (void)app;
    if (a->protocol == WF_PY_PROTO_ASGI) {
        status = wf_py_asgi_run(a);
    } else {
        status = wf_py_wsgi_run(a);
    }

    /* As Unit: the app's atexit handlers run, then the process exits. */
    Py_CLEAR(python_format_exception);
    python_app_free(a);
    if (Py_FinalizeEx() < 0 && status == 0) {
        status = 120; /* as python3 exits when flushing fails */
    }
    return status;
}

/* ---- worker threads ----------------------------------------------------- */

typedef struct python_worker {
    wf_py_app_t *app;
    wf_py_worker_fn fn;
    unsigned i;
    int status;
    pthread_t tid;
    int started;
} python_worker_t;

static void *
python_worker_main(void *arg)
{
    python_worker_t *w = arg;
    PyGILState_STATE g;

    g = PyGILState_Ensure();
    w->status = w->fn(w->app, w->i);
    PyGILState_Release(g);
    return NULL;
}

/* Starts workers 1..threads-1 (logged and skipped when one cannot be
 * created); the GIL is held. */
static void
python_workers_start(wf_py_app_t *app, python_worker_t *w)
{
    pthread_attr_t attr;
    pthread_attr_t *pattr = NULL;
    int err;

    if (app->thread_stack_size > 0) {
        pthread_attr_init(&attr);
        err = pthread_attr_setstacksize(&attr, app->thread_stack_size);
        if (err != 0) {
            app->rt->log(WF_APP_LOG_ALERT,
                         "thread attr set stack size failed: %s (%d)",
                         strerror(err), err);
        } else {
            pattr = &attr;
        }
    }

    for (unsigned i = 1; i < app->threads; i++) {
        err = pthread_create(&w[i].tid, pattr, python_worker_main, &w[i]);
        if (err != 0) {
            app->rt->log(WF_APP_LOG_ALERT, "thread #%u create failed: %s (%d)",
                         i, strerror(err), err);
            continue;
        }
        w[i].started = 1;
    }

    if (app->thread_stack_size > 0) {
        pthread_attr_destroy(&attr);
    }
}

int
wf_py_workers_run(wf_py_app_t *app, wf_py_worker_fn fn)
{
    python_worker_t *w;
    int status = 0;

    w = calloc(app->threads, sizeof(*w));
    if (w == NULL) {
        app->rt->log(WF_APP_LOG_ALERT, "Failed to allocate thread info "
                                       "array");
        return 1;
    }
    for (unsigned i = 0; i < app->threads; i++) {
        w[i].app = app;
        w[i].fn = fn;
        w[i].i = i;
    }

    python_workers_start(app, w);
    w[0].status = fn(app, 0);

    Py_BEGIN_ALLOW_THREADS;
    for (unsigned i = 1; i < app->threads; i++) {
        if (w[i].started) {
            pthread_join(w[i].tid, NULL);
        }
    }
    Py_END_ALLOW_THREADS;

    for (unsigned i = 0; i < app->threads; i++) {
        if (status == 0 && w[i].status != 0) {
            status = w[i].status;
        }
    }
    free(w);
    return status;
}
