/* WSGI's parts inside the Python module: the per-worker state that wsgi.c
 * (the request loop, environ, start_response, the response) and
 * wsgi_io.c (wsgi.input, wsgi.errors, wsgi.file_wrapper) share.  Not seen
 * by the rest of the module (py_app.h is). */
#ifndef WF_APPS_PYTHON_WSGI_H
#define WF_APPS_PYTHON_WSGI_H

#include "apps/python/py_app.h"

#include <stdint.h>

/* A str cached by its bytes: reused while the next value is the same. */
typedef struct wf_py_wsgi_cstr {
    PyObject *obj; /* owned; NULL when empty */
} wf_py_wsgi_cstr_t;

#define WF_PY_WSGI_NAME_MAX 32 /* longer names are not cached */

/* A header field's environ key ("HTTP_X_FOO") cached by the name as
 * received (its bytes, so that a client repeating its names costs a
 * memcmp), and its last value. */
typedef struct wf_py_wsgi_key {
    PyObject *key;         /* owned; NULL when the slot is free */
    wf_py_wsgi_cstr_t val; /* the last value seen under this name */
    size_t name_len;
    char name[WF_PY_WSGI_NAME_MAX]; /* the name as received */
} wf_py_wsgi_key_t;

#define WF_PY_WSGI_NKEYS 64 /* header name cache slots (a power of 2) */

/* Per-request cached values, in wsgi.c's order. */
enum {
    WF_PY_WSGI_C_METHOD = 0,
    WF_PY_WSGI_C_URI,
    WF_PY_WSGI_C_PATH,
    WF_PY_WSGI_C_QUERY,
    WF_PY_WSGI_C_VERSION,
    WF_PY_WSGI_C_REMOTE,
    WF_PY_WSGI_C_LOCAL,
    WF_PY_WSGI_C_SERVER,
    WF_PY_WSGI_C_PORT,
    WF_PY_WSGI_NCACHE
};

/* One worker: a Python object (it is the worker's wsgi.input too, as in
 * Unit), used only by the worker's thread, GIL held. */
typedef struct wf_py_wsgi {
    PyObject_HEAD

        wf_py_app_t *app;  /* borrowed */
    const wf_app_rt_t *rt; /* borrowed */
    wf_app_worker_t *w;    /* borrowed: rt->worker(app, index) */
    unsigned index;
    wf_app_req_t *req;         /* the request served; NULL between */
    const wf_app_head_t *head; /* req's head; NULL between */

    PyObject *template;   /* owned: the environ's constant part */
    PyObject *environ;    /* owned: a fresh copy of template for the next
                             request; NULL after a failed copy */
    PyObject *start_resp; /* owned: start_response bound to this */
    PyObject *write;      /* owned: write() bound to this */

    /* The response, from start_response(). */
    unsigned status;         /* 0 until start_response() */
    int head_sent;           /* respond() was called */
    int complete;            /* the last body byte went with last != 0 */
    uint64_t content_length; /* the app's Content-Length; UINT64_MAX */
    uint64_t sent;           /* body bytes sent */
    size_t nfields;
    size_t fields_cap;
    wf_app_field_t *fields; /* owned; point into field_refs' objects */
    PyObject **field_refs;  /* owned references: the header tuples and the
                               latin-1 bytes made from non-latin-1-kind
                               strs; nrefs entries */
    size_t nrefs;
    size_t refs_cap;

    /* wsgi.input: bytes read ahead by readline(), [ipos, ilen) of ibuf */
    char *ibuf; /* owned; NULL until a readline() */
    size_t ipos;
    size_t ilen;
    int ieof;          /* rt->read() said 0: the body is complete */
    uint64_t consumed; /* body bytes given to the app */

    wf_py_wsgi_cstr_t cache[WF_PY_WSGI_NCACHE];
    wf_py_wsgi_key_t keys[WF_PY_WSGI_NKEYS];
} wf_py_wsgi_t;

/* wsgi_io.c: the worker's type (its wsgi.input methods) and
 * wsgi.file_wrapper's (the environ holds the type itself). */
extern PyTypeObject wf_py_wsgi_type;
extern PyTypeObject wf_py_wsgi_file_type;

/* A new wsgi.errors: its lines go to the error log (rt->log(), [error]).
 * Returns a new reference, or NULL with an exception set. */
PyObject *wf_py_wsgi_errors_create(wf_py_app_t *app);

/* Makes the types ready; 0 or -1 with a Python exception set. */
int wf_py_wsgi_io_init(void);

/* Resets the input state for a new request. */
void wf_py_wsgi_input_reset(wf_py_wsgi_t *ww);

/* For a wsgi.file_wrapper response: the file's fd and the byte range to
 * send from it ([*off, *off + *len), *len capped at what the
 * Content-Length still allows), when it wraps a regular file with a
 * fileno(); 0 then, else -1 (iterate it instead).  No exception is left
 * set. */
int wf_py_wsgi_file_range(wf_py_wsgi_t *ww, PyObject *file, int *fd, off_t *off,
                          off_t *len);

#endif
