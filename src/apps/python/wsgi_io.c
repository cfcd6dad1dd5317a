/* WSGI's file-like objects: wsgi.input (the worker object itself, as in
 * Unit: read, readline, readlines, iteration, streaming over rt->read()),
 * wsgi.errors (lines to the error log) and wsgi.file_wrapper (a regular
 * file's bytes go to the router as an fd). */
#include "apps/python/wsgi.h"

#include <structmember.h>
#include <sys/stat.h>
#include <unistd.h>

#define WSGI_IBUF_SIZE (64 * 1024) /* readline()'s read-ahead */
#define WSGI_READ_STEP (64 * 1024) /* read() of a body of unknown length */

/* ---- wsgi.input -----------------------------------------------------------
 */

void
wf_py_wsgi_input_reset(wf_py_wsgi_t *ww)
{
    ww->ipos = 0;
    ww->ilen = 0;
    ww->consumed = 0;
    ww->ieof = ww->head->content_length == 0;
}

static int
input_check(wf_py_wsgi_t *ww, const char *what)
{
    if (ww->req == NULL) {
        PyErr_Format(PyExc_RuntimeError,
                     "wsgi.input.%s() is called outside of WSGI request "
                     "processing",
                     what);
        return -1;
    }
    return 0;
}

/* rt->read() with the GIL released: bytes (0 at the end), or -1 with an
 * exception set. */
static Py_ssize_t
input_read_rt(wf_py_wsgi_t *ww, char *buf, size_t len)
{
    ssize_t n;

    if (ww->ieof) {
        return 0;
    }
    Py_BEGIN_ALLOW_THREADS;
    n = ww->rt->read(ww->req, buf, len);
    Py_END_ALLOW_THREADS;
    if (n < 0) {
        PyErr_SetString(PyExc_OSError, "failed to read the request body "
                                       "(the request was aborted)");
        return -1;
    }
    if (n == 0) {
        ww->ieof = 1;
    }
    return n;
}

/* Up to len body bytes into buf: read-ahead first, then rt->read() until
 * len or the end.  Bytes, or -1 with an exception set. */
static Py_ssize_t
input_fill(wf_py_wsgi_t *ww, char *buf, size_t len)
{
    size_t got = ww->ilen - ww->ipos;
    Py_ssize_t n;

    if (got > len) {
        got = len;
    }
    if (got > 0) {
        memcpy(buf, ww->ibuf + ww->ipos, got);
        ww->ipos += got;
    }

    while (got < len && !ww->ieof) {
        n = input_read_rt(ww, buf + got, len - got);
        if (n < 0) {
            return -1;
        }
        got += (size_t)n;
    }
    ww->consumed += got;
    return (Py_ssize_t)got;
}

/* What is left of a body of known length; -1 when it is unknown. */
static Py_ssize_t
input_left(wf_py_wsgi_t *ww)
{
    uint64_t cl = ww->head->content_length;

    if (cl == UINT64_MAX) {
        return -1;
    }
    return cl > ww->consumed ? (Py_ssize_t)(cl - ww->consumed) : 0;
}

/* read() of a body of unknown length (chunked): to its end. */
static PyObject *
input_read_all(wf_py_wsgi_t *ww)
{
    PyObject *b = NULL;
    size_t have = 0;
    Py_ssize_t n;

    for (;;) {
        size_t size = have + WSGI_READ_STEP;

        if (b == NULL) {
            b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
            if (b == NULL) {
                return NULL;
            }
        } else if (_PyBytes_Resize(&b, (Py_ssize_t)size) != 0) {
            return NULL;
        }
        n = input_fill(ww, PyBytes_AS_STRING(b) + have, WSGI_READ_STEP);
        if (n < 0) {
            Py_DECREF(b);
            return NULL;
        }
        have += (size_t)n;
        if ((size_t)n < WSGI_READ_STEP) {
            break;
        }
    }
    if (_PyBytes_Resize(&b, (Py_ssize_t)have) != 0) {
        return NULL;
    }
    return b;
}

static Py_ssize_t
input_size_arg(PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;

    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "invalid number of arguments");
        return -2;
    }
    if (nargs == 0 || args[0] == Py_None) {
        return -1;
    }
    size = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (size == -1 && PyErr_Occurred() != NULL) {
        return -2;
    }
    return size < 0 ? -1 : size;
}

/* read(size=-1) */
static PyObject *
input_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    wf_py_wsgi_t *ww = (wf_py_wsgi_t *)self;
    Py_ssize_t size, left, n;
    PyObject *b;

    if (input_check(ww, "read") != 0) {
        return NULL;
    }
    size = input_size_arg(args, nargs);
    if (size == -2) {
        return NULL;
    }
    left = input_left(ww);
    if (size < 0 && left < 0) {
        return input_read_all(ww);
    }
    if (size < 0 || (left >= 0 && size > left)) {
        size = left;
    }

    b = PyBytes_FromStringAndSize(NULL, size);
    if (b == NULL) {
        return NULL;
    }
    n = input_fill(ww, PyBytes_AS_STRING(b), (size_t)size);
    if (n < 0) {
        Py_DECREF(b);
        return NULL;
    }
    if (n < size && _PyBytes_Resize(&b, n) != 0) {
        return NULL;
    }
    return b;
}

/* More read-ahead: moves what is left to the start, reads after it.
 * 0, or -1 with an exception set. */
static int
input_more(wf_py_wsgi_t *ww)
{
    size_t avail = ww->ilen - ww->ipos;

    if (ww->ibuf == NULL) {
        ww->ibuf = PyMem_RawMalloc(WSGI_IBUF_SIZE);
        if (ww->ibuf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (ww->ipos > 0) {
        memmove(ww->ibuf, ww->ibuf + ww->ipos, avail);
        ww->ipos = 0;
        ww->ilen = avail;
    }
    Py_ssize_t n =
        input_read_rt(ww, ww->ibuf + ww->ilen, WSGI_IBUF_SIZE - ww->ilen);
    if (n < 0) {
        return -1;
    }
    ww->ilen += (size_t)n;
    return 0;
}

/* Takes n read-ahead bytes as (a part of) the line in *acc. */
static int
input_take(wf_py_wsgi_t *ww, size_t n, PyObject **acc)
{
    PyObject *part;

    part = PyBytes_FromStringAndSize(
        ww->ibuf != NULL ? ww->ibuf + ww->ipos : "", (Py_ssize_t)n);
    if (part == NULL) {
        return -1;
    }
    ww->ipos += n;
    ww->consumed += n;
    if (*acc == NULL) {
        *acc = part;
        return 0;
    }
    PyBytes_ConcatAndDel(acc, part);
    return *acc == NULL ? -1 : 0;
}

/* A line of at most limit bytes (limit < 0: any), with its '\n'; b"" at
 * the end of the body.  A new reference, or NULL with an exception. */
static PyObject *
input_line(wf_py_wsgi_t *ww, Py_ssize_t limit)
{
    PyObject *acc = NULL;

    for (;;) {
        size_t avail = ww->ilen - ww->ipos, want = avail;
        const char *nl = NULL;
        int done;

        if (limit >= 0 && (size_t)limit < want) {
            want = (size_t)limit;
        }
        if (want > 0) {
            nl = memchr(ww->ibuf + ww->ipos, '\n', want);
        }
        if (nl != NULL) {
            want = (size_t)(nl - (ww->ibuf + ww->ipos)) + 1;
        }
        done = nl != NULL || (limit >= 0 && want == (size_t)limit) || ww->ieof;

        if (done || avail == WSGI_IBUF_SIZE) {
            if (input_take(ww, want, &acc) != 0) {
                Py_XDECREF(acc);
                return NULL;
            }
            if (done) {
                return acc;
            }
            limit -= limit >= 0 ? (Py_ssize_t)want : 0;
            continue;
        }
        if (input_more(ww) != 0) {
            Py_XDECREF(acc);
            return NULL;
        }
    }
}

/* readline(size=-1) */
static PyObject *
input_readline(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    wf_py_wsgi_t *ww = (wf_py_wsgi_t *)self;
    Py_ssize_t size;

    if (input_check(ww, "readline") != 0) {
        return NULL;
    }
    size = input_size_arg(args, nargs);
    if (size == -2) {
        return NULL;
    }
    return input_line(ww, size);
}

/* readlines(hint=-1) */
static PyObject *
input_readlines(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    wf_py_wsgi_t *ww = (wf_py_wsgi_t *)self;
    Py_ssize_t hint, total = 0;
    PyObject *list, *line;

    if (input_check(ww, "readlines") != 0) {
        return NULL;
    }
    hint = input_size_arg(args, nargs);
    if (hint == -2) {
        return NULL;
    }
    list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (;;) {
        line = input_line(ww, -1);
        if (line == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        if (PyBytes_GET_SIZE(line) == 0) {
            Py_DECREF(line);
            return list;
        }
        total += PyBytes_GET_SIZE(line);
        if (PyList_Append(list, line) != 0) {
            Py_DECREF(line);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(line);
        if (hint > 0 && total >= hint) {
            return list;
        }
    }
}

static PyObject *
input_iter(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static PyObject *
input_next(PyObject *self)
{
    wf_py_wsgi_t *ww = (wf_py_wsgi_t *)self;
    PyObject *line;

    if (input_check(ww, "next") != 0) {
        return NULL;
    }
    line = input_line(ww, -1);
    if (line != NULL && PyBytes_GET_SIZE(line) == 0) {
        Py_DECREF(line);
        return NULL; /* StopIteration */
    }
    return line;
}

static void
input_dealloc(PyObject *self)
{
    wf_py_wsgi_t *ww = (wf_py_wsgi_t *)self;

    for (int i = 0; i < WF_PY_WSGI_NCACHE; i++) {
        Py_CLEAR(ww->cache[i].obj);
    }
    for (int i = 0; i < WF_PY_WSGI_NKEYS; i++) {
        Py_CLEAR(ww->keys[i].key);
        Py_CLEAR(ww->keys[i].val.obj);
    }
    for (size_t i = 0; i < ww->nrefs; i++) {
        Py_DECREF(ww->field_refs[i]);
    }
    free(ww->field_refs);
    free(ww->fields);
    PyMem_RawFree(ww->ibuf);
    Py_CLEAR(ww->template);
    Py_CLEAR(ww->environ);
    PyObject_Free(self);
}

static PyMethodDef input_methods[] = {
    {"read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL, NULL},
    {"readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL,
     NULL},
    {"readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL,
     NULL},
    {NULL, NULL, 0, NULL},
};

PyTypeObject wf_py_wsgi_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wharf.wsgi_input",
    .tp_basicsize = sizeof(wf_py_wsgi_t),
    .tp_dealloc = input_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.input: the request body",
    .tp_iter = input_iter,
    .tp_iternext = input_next,
    .tp_methods = input_methods,
};

/* ---- wsgi.errors ----------------------------------------------------------
 */

#define WSGI_ERR_LINE 4096 /* a longer line is logged in pieces */

typedef struct wsgi_errors {
    PyObject_HEAD

        wf_py_app_t *app; /* borrowed */
    size_t len;
    char buf[WSGI_ERR_LINE];
} wsgi_errors_t;

static void
errors_flush_buf(wsgi_errors_t *e)
{
    if (e->len > 0) {
        e->app->rt->log(WF_APP_LOG_ERR, "%.*s", (int)e->len, e->buf);
        e->len = 0;
    }
}

static void
errors_add(wsgi_errors_t *e, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl != NULL ? (size_t)(nl - p) : n;
        size_t room = sizeof(e->buf) - e->len;

        if (take > room) {
            take = room;
            nl = NULL;
        }
        memcpy(e->buf + e->len, p, take);
        e->len += take;
        p += take;
        n -= take;
        if (nl != NULL) {
            p++;
            n--;
            errors_flush_buf(e);
        } else if (e->len == sizeof(e->buf)) {
            errors_flush_buf(e);
        }
    }
}

static PyObject *
errors_write(PyObject *self, PyObject *s)
{
    wsgi_errors_t *e = (wsgi_errors_t *)self;
    const char *p;
    Py_ssize_t n;

    if (PyUnicode_Check(s)) {
        p = PyUnicode_AsUTF8AndSize(s, &n);
        if (p == NULL) {
            return NULL;
        }
    } else if (PyBytes_Check(s)) {
        p = PyBytes_AS_STRING(s);
        n = PyBytes_GET_SIZE(s);
    } else {
        PyErr_SetString(PyExc_TypeError, "write() argument must be str");
        return NULL;
    }
    errors_add(e, p, (size_t)n);
    return PyLong_FromSsize_t(PyUnicode_Check(s) ? PyUnicode_GET_LENGTH(s) : n);
}

static PyObject *
errors_writelines(PyObject *self, PyObject *lines)
{
    PyObject *it, *line, *r;

    it = PyObject_GetIter(lines);
    if (it == NULL) {
        return NULL;
    }
    while ((line = PyIter_Next(it)) != NULL) {
        r = errors_write(self, line);
        Py_DECREF(line);
        if (r == NULL) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred() != NULL) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
errors_flush(PyObject *self, PyObject *unused)
{
    (void)unused;
    errors_flush_buf((wsgi_errors_t *)self);
    Py_RETURN_NONE;
}

static void
errors_dealloc(PyObject *self)
{
    errors_flush_buf((wsgi_errors_t *)self);
    PyObject_Free(self);
}

static PyMethodDef errors_methods[] = {
    {"write", errors_write, METH_O, NULL},
    {"writelines", errors_writelines, METH_O, NULL},
    {"flush", errors_flush, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject wsgi_errors_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wharf.wsgi_errors",
    .tp_basicsize = sizeof(wsgi_errors_t),
    .tp_dealloc = errors_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.errors: lines to the error log",
    .tp_methods = errors_methods,
};

PyObject *
wf_py_wsgi_errors_create(wf_py_app_t *app)
{
    wsgi_errors_t *e = PyObject_New(wsgi_errors_t, &wsgi_errors_type);

    if (e == NULL) {
        return NULL;
    }
    e->app = app;
    e->len = 0;
    return (PyObject *)e;
}

/* ---- wsgi.file_wrapper ------------------------------------------------- */

typedef struct wsgi_file {
    PyObject_HEAD

        PyObject *filelike; /* owned */
    Py_ssize_t blksize;
} wsgi_file_t;

static int
file_init(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"filelike", "blksize", NULL};
    wsgi_file_t *f = (wsgi_file_t *)self;
    PyObject *filelike;
    Py_ssize_t blksize = 8192;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|n:file_wrapper", names,
                                     &filelike, &blksize)) {
        return -1;
    }
    if (blksize <= 0) {
        PyErr_SetString(PyExc_ValueError, "blksize must be positive");
        return -1;
    }
    Py_INCREF(filelike);
    Py_XSETREF(f->filelike, filelike);
    f->blksize = blksize;
    return 0;
}

static PyObject *
file_next(PyObject *self)
{
    wsgi_file_t *f = (wsgi_file_t *)self;
    PyObject *data;

    if (f->filelike == NULL) {
        return NULL;
    }
    data = PyObject_CallMethod(f->filelike, "read", "n", f->blksize);
    if (data == NULL) {
        return NULL;
    }
    if (PyObject_IsTrue(data) != 1) {
        Py_DECREF(data);
        return NULL; /* StopIteration (or the error IsTrue set) */
    }
    return data;
}

static PyObject *
file_close(PyObject *self, PyObject *unused)
{
    wsgi_file_t *f = (wsgi_file_t *)self;
    PyObject *close, *r;

    (void)unused;
    if (f->filelike == NULL) {
        Py_RETURN_NONE;
    }
    close = PyObject_GetAttrString(f->filelike, "close");
    if (close == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    r = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    return r;
}

static int
file_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((wsgi_file_t *)self)->filelike);
    return 0;
}

static int
file_clear(PyObject *self)
{
    Py_CLEAR(((wsgi_file_t *)self)->filelike);
    return 0;
}

static void
file_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    file_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *
file_iter(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static PyMethodDef file_methods[] = {
    {"close", file_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef file_members[] = {
    {"filelike", T_OBJECT, offsetof(wsgi_file_t, filelike), READONLY, NULL},
    {"blksize", T_PYSSIZET, offsetof(wsgi_file_t, blksize), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject wf_py_wsgi_file_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wharf.file_wrapper",
    .tp_basicsize = sizeof(wsgi_file_t),
    .tp_dealloc = file_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "wsgi.file_wrapper(filelike, blksize=8192)",
    .tp_traverse = file_traverse,
    .tp_clear = file_clear,
    .tp_iter = file_iter,
    .tp_iternext = file_next,
    .tp_methods = file_methods,
    .tp_members = file_members,
    .tp_init = file_init,
    .tp_new = PyType_GenericNew,
};

/* The file's current position, as the file object sees it (its read
 * buffer included): tell(), else the fd's. */
static off_t
file_pos(PyObject *filelike, int fd)
{
    PyObject *r = PyObject_CallMethod(filelike, "tell", NULL);
    off_t pos;

    if (r == NULL) {
        PyErr_Clear();
        return lseek(fd, 0, SEEK_CUR);
    }
    pos = (off_t)PyLong_AsLongLong(r);
    Py_DECREF(r);
    if (pos == -1 && PyErr_Occurred() != NULL) {
        PyErr_Clear();
    }
    return pos;
}

int
wf_py_wsgi_file_range(wf_py_wsgi_t *ww, PyObject *file, int *fd, off_t *off,
                      off_t *len)
{
    wsgi_file_t *f = (wsgi_file_t *)file;
    PyObject *r;
    struct stat st;
    long n;
    off_t pos;

    if (f->filelike == NULL) {
        return -1;
    }
    r = PyObject_CallMethod(f->filelike, "fileno", NULL);
    if (r == NULL) {
        PyErr_Clear();
        return -1;
    }
    n = PyLong_AsLong(r);
    Py_DECREF(r);
    if (n < 0 || n > INT32_MAX || fstat((int)n, &st) != 0
        || !S_ISREG(st.st_mode)) {
        PyErr_Clear();
        return -1;
    }
    pos = file_pos(f->filelike, (int)n);
    if (pos < 0) {
        return -1;
    }

    *fd = (int)n;
    *off = pos;
    *len = pos < st.st_size ? st.st_size - pos : 0;
    if (ww->content_length != UINT64_MAX
        && (uint64_t)*len > ww->content_length - ww->sent) {
        *len = (off_t)(ww->content_length - ww->sent);
    }
    return 0;
}

int
wf_py_wsgi_io_init(void)
{
    if (PyType_Ready(&wf_py_wsgi_type) != 0
        || PyType_Ready(&wsgi_errors_type) != 0
        || PyType_Ready(&wf_py_wsgi_file_type) != 0) {
        return -1;
    }
    return 0;
}
