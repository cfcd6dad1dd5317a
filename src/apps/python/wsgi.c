/* WSGI (PEP 3333) over the pull interface: each worker thread takes a
 * request with rt->next(), builds the environ from its template copy,
 * calls the application and sends what it returns.  The hello-world path
 * is one rt->next(), one rt->respond(..., last = 1) and one rt->end().
 * docs/internals/apps.md, "The Python module: WSGI". */
#include "apps/python/wsgi.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef WF_VERSION_STRING
#define WF_VERSION_STRING "0"
#endif

#define WSGI_JOIN_MAX   (16 * 1024) /* list items joined into one message */
#define WSGI_JOIN_ITEMS 32

/* The environ's keys and other constant strings, interned at init. */
enum {
    WSGI_S_REQUEST_METHOD = 0,
    WSGI_S_REQUEST_URI,
    WSGI_S_PATH_INFO,
    WSGI_S_QUERY_STRING,
    WSGI_S_SERVER_PROTOCOL,
    WSGI_S_REMOTE_ADDR,
    WSGI_S_SERVER_ADDR,
    WSGI_S_SERVER_NAME,
    WSGI_S_SERVER_PORT,
    WSGI_S_SCRIPT_NAME,
    WSGI_S_CONTENT_TYPE,
    WSGI_S_CONTENT_LENGTH,
    WSGI_S_HTTP_CONTENT_TYPE,
    WSGI_S_HTTP_CONTENT_LENGTH,
    WSGI_S_URL_SCHEME,
    WSGI_S_INPUT,
    WSGI_S_HTTP,
    WSGI_S_HTTPS,
    WSGI_S_CLOSE,
    WSGI_NSTR
};

static const char *const wsgi_str_text[WSGI_NSTR] = {
    [WSGI_S_REQUEST_METHOD] = "REQUEST_METHOD",
    [WSGI_S_REQUEST_URI] = "REQUEST_URI",
    [WSGI_S_PATH_INFO] = "PATH_INFO",
    [WSGI_S_QUERY_STRING] = "QUERY_STRING",
    [WSGI_S_SERVER_PROTOCOL] = "SERVER_PROTOCOL",
    [WSGI_S_REMOTE_ADDR] = "REMOTE_ADDR",
    [WSGI_S_SERVER_ADDR] = "SERVER_ADDR",
    [WSGI_S_SERVER_NAME] = "SERVER_NAME",
    [WSGI_S_SERVER_PORT] = "SERVER_PORT",
    [WSGI_S_SCRIPT_NAME] = "SCRIPT_NAME",
    [WSGI_S_CONTENT_TYPE] = "CONTENT_TYPE",
    [WSGI_S_CONTENT_LENGTH] = "CONTENT_LENGTH",
    [WSGI_S_HTTP_CONTENT_TYPE] = "HTTP_CONTENT_TYPE",
    [WSGI_S_HTTP_CONTENT_LENGTH] = "HTTP_CONTENT_LENGTH",
    [WSGI_S_URL_SCHEME] = "wsgi.url_scheme",
    [WSGI_S_INPUT] = "wsgi.input",
    [WSGI_S_HTTP] = "http",
    [WSGI_S_HTTPS] = "https",
    [WSGI_S_CLOSE] = "close",
};

static PyObject *wsgi_str[WSGI_NSTR];

/* The environ's constant part, shared by the workers' templates. */
static PyObject *wsgi_template;

/* A header name's byte as an environ key's: upper case, '-' as '_'. */
static unsigned char wsgi_key_map[256];

/* 1 for the bytes of an RFC 9110 token (a field name). */
static unsigned char wsgi_tchar[256];

static PyObject *wsgi_start_response(PyObject *self, PyObject *const *args,
                                     Py_ssize_t nargs);
static PyObject *wsgi_write(PyObject *self, PyObject *data);

static PyMethodDef wsgi_start_response_def = {
    "start_response", (PyCFunction)(void (*)(void))wsgi_start_response,
    METH_FASTCALL, NULL};

static PyMethodDef wsgi_write_def = {"write", wsgi_write, METH_O, NULL};

/* ---- init --------------------------------------------------------------- */

static int
wsgi_template_add(PyObject *d, const char *key, PyObject *value)
{
    int rc;

    if (value == NULL) {
        return -1;
    }
    rc = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return rc;
}

static int
wsgi_template_create(wf_py_app_t *app)
{
    PyObject *d = PyDict_New();
    PyObject *errors;

    if (d == NULL) {
        return -1;
    }
    errors = wf_py_wsgi_errors_create(app);
    if (wsgi_template_add(d, "SERVER_SOFTWARE",
                          PyUnicode_FromString("Wharf/" WF_VERSION_STRING))
            != 0
        || wsgi_template_add(d, "SCRIPT_NAME", PyUnicode_FromString("")) != 0
        || wsgi_template_add(d, "wsgi.version", Py_BuildValue("(ii)", 1, 0))
               != 0
        || wsgi_template_add(d, "wsgi.multithread",
                             PyBool_FromLong(app->threads > 1))
               != 0
        || wsgi_template_add(d, "wsgi.multiprocess", PyBool_FromLong(1)) != 0
        || wsgi_template_add(d, "wsgi.run_once", PyBool_FromLong(0)) != 0
        /* wsgi.input ends with the body, whether its length is known or
         * not (chunked): frameworks (Werkzeug) then read a body without
         * CONTENT_LENGTH instead of taking it as empty. */
        || wsgi_template_add(d, "wsgi.input_terminated", PyBool_FromLong(1))
               != 0
        || wsgi_template_add(d, "wsgi.errors", errors) != 0
        || PyDict_SetItemString(d, "wsgi.file_wrapper",
                                (PyObject *)&wf_py_wsgi_file_type)
               != 0) {
        Py_DECREF(d);
        return -1;
    }
    wsgi_template = d;
    return 0;
}

int
wf_py_wsgi_init(wf_py_app_t *app)
{
    /* ASCII only, whatever locale Python's start set (Unit maps a-z). */
    for (unsigned c = 0; c < 256; c++) {
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

        wsgi_key_map[c] = c == '-'                 ? '_'
                          : (c >= 'a' && c <= 'z') ? (unsigned char)(c - 32)
                                                   : (unsigned char)c;
        wsgi_tchar[c] =
            alpha || (c >= '0' && c <= '9')
            || (c != 0 && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL);
    }
    for (int i = 0; i < WSGI_NSTR; i++) {
        wsgi_str[i] = PyUnicode_InternFromString(wsgi_str_text[i]);
        if (wsgi_str[i] == NULL) {
            goto fail;
        }
    }
    if (wf_py_wsgi_io_init() != 0 || wsgi_template_create(app) != 0) {
        goto fail;
    }
    return 0;

fail:
    wf_py_log_exception(app, WF_APP_LOG_ALERT,
                        "Python failed to prepare the WSGI environ");
    return -1;
}

/* ---- environ ------------------------------------------------------------ */

/* c's str when it holds data, else a new one that c keeps: borrowed. */
static PyObject *
wsgi_cstr_get(wf_py_wsgi_cstr_t *c, const char *data, size_t len)
{
    PyObject *o = c->obj;

    /* Latin-1 strs are 1 byte a character, equal to the bytes decoded. */
    if (o != NULL && (size_t)PyUnicode_GET_LENGTH(o) == len
        && memcmp(PyUnicode_DATA(o), data, len) == 0) {
        return o;
    }
    o = PyUnicode_DecodeLatin1(data, (Py_ssize_t)len, NULL);
    if (o == NULL) {
        return NULL;
    }
    Py_XSETREF(c->obj, o);
    return o;
}

static int
wsgi_env_cached(wf_py_wsgi_t *ww, PyObject *env, int key, int slot,
                const char *data, size_t len)
{
    PyObject *v = wsgi_cstr_get(&ww->cache[slot], data, len);

    if (v == NULL) {
        return -1;
    }
    return PyDict_SetItem(env, wsgi_str[key], v);
}

/* A cache slot for a name: from its length and a few of its bytes, case
 * folded (most fields differ there; a collision only costs a new key). */
static unsigned
wsgi_key_slot(const char *name, size_t len)
{
    unsigned h = (unsigned)len * 7;

    if (len > 0) {
        h ^= ((unsigned char)name[0] | 0x20) << 1;
        h ^= ((unsigned char)name[len - 1] | 0x20) << 2;
        h ^= ((unsigned char)name[len / 2] | 0x20) * 3;
    }
    return h & (WF_PY_WSGI_NKEYS - 1);
}

/* The key for a header field name: borrowed from the worker's cache
 * (names longer than WF_PY_WSGI_NAME_MAX get a new key each time, kept
 * in the slot until the next one). */
static wf_py_wsgi_key_t *
wsgi_key_get(wf_py_wsgi_t *ww, const char *name, size_t len)
{
    wf_py_wsgi_key_t *k = &ww->keys[wsgi_key_slot(name, len)];
    PyObject *key;
    Py_UCS1 *p;

    if (k->key != NULL && k->name_len == len && len <= WF_PY_WSGI_NAME_MAX
        && memcmp(k->name, name, len) == 0) {
        return k;
    }

    key = PyUnicode_New((Py_ssize_t)len + 5, 255);
    if (key == NULL) {
        return NULL;
    }
    p = PyUnicode_1BYTE_DATA(key);
    memcpy(p, "HTTP_", 5);
    for (size_t i = 0; i < len; i++) {
        p[5 + i] = wsgi_key_map[(unsigned char)name[i]];
    }
    Py_XSETREF(k->key, key);
    Py_CLEAR(k->val.obj);
    k->name_len = len <= WF_PY_WSGI_NAME_MAX ? len : SIZE_MAX;
    if (len <= WF_PY_WSGI_NAME_MAX) {
        memcpy(k->name, name, len);
    }
    return k;
}

/* Adds one field; a repeated name gets its values joined with ", " as
 * Unit joins them. */
static int
wsgi_env_field(wf_py_wsgi_t *ww, PyObject *env, const wf_app_field_t *f)
{
    wf_py_wsgi_key_t *k;
    PyObject *v, *old, *joined;
    Py_ssize_t before;

    k = wsgi_key_get(ww, f->name.data, f->name.len);
    if (k == NULL) {
        return -1;
    }
    v = wsgi_cstr_get(&k->val, f->value.data, f->value.len);
    if (v == NULL) {
        return -1;
    }

    before = PyDict_GET_SIZE(env);
    old = PyDict_SetDefault(env, k->key, v);
    if (old == NULL) {
        return -1;
    }
    if (PyDict_GET_SIZE(env) != before) {
        return 0;
    }
    joined = PyUnicode_FromFormat("%U, %U", old, v);
    if (joined == NULL) {
        return -1;
    }
    before = PyDict_SetItem(env, k->key, joined);
    Py_DECREF(joined);
    return (int)before;
}

/* HTTP_* for every field, and CONTENT_TYPE/CONTENT_LENGTH from theirs. */
static int
wsgi_env_fields(wf_py_wsgi_t *ww, PyObject *env)
{
    const wf_app_head_t *h = ww->head;
    int ct = 0, cl = 0;
    PyObject *v;

    for (size_t i = 0; i < h->nfields; i++) {
        const wf_app_field_t *f = &h->fields[i];

        if (wsgi_env_field(ww, env, f) != 0) {
            return -1;
        }
        if (f->name.len == 12
            && strncasecmp(f->name.data, "content-type", 12) == 0) {
            ct = 1;
        } else if (f->name.len == 14
                   && strncasecmp(f->name.data, "content-length", 14) == 0) {
            cl = 1;
        }
    }

    if (ct) {
        v = PyDict_GetItemWithError(env, wsgi_str[WSGI_S_HTTP_CONTENT_TYPE]);
        if (v == NULL
            || PyDict_SetItem(env, wsgi_str[WSGI_S_CONTENT_TYPE], v) != 0) {
            return -1;
        }
    }
    if (cl) {
        v = PyDict_GetItemWithError(env, wsgi_str[WSGI_S_HTTP_CONTENT_LENGTH]);
        if (v == NULL
            || PyDict_SetItem(env, wsgi_str[WSGI_S_CONTENT_LENGTH], v) != 0) {
            return -1;
        }
    }
    return 0;
}

/* A port's decimal text in buf (8 bytes); its length.  No printf: it
 * shows in a hello world's profile. */
static int
wsgi_port_text(char *buf, unsigned port)
{
    char tmp[8];
    int n = 0, len;

    port &= 0xffff;
    do {
        tmp[n++] = (char)('0' + port % 10);
        port /= 10;
    } while (port > 0);
    len = n;
    for (int i = 0; i < len; i++) {
        buf[i] = tmp[--n];
    }
    return len;
}

/* The request's environ: a new reference, or NULL with an exception. */
static PyObject *
wsgi_environ(wf_py_wsgi_t *ww, const wf_py_target_t *t)
{
    const wf_app_head_t *h = ww->head;
    const char *path = h->path.data;
    size_t path_len = h->path.len;
    char port[8];
    int port_len;
    PyObject *env;

    env = ww->environ;
    ww->environ = NULL;
    if (env == NULL) {
        env = PyDict_Copy(ww->template);
        if (env == NULL) {
            return NULL;
        }
    }

    /* As Unit: the prefix is SCRIPT_NAME when the path is it or starts
     * with it and a '/'; PATH_INFO is the rest. */
    if (t->prefix != NULL && path_len >= t->prefix_len
        && (path_len == t->prefix_len || path[t->prefix_len] == '/')
        && memcmp(path, t->prefix_data, t->prefix_len) == 0) {
        if (PyDict_SetItem(env, wsgi_str[WSGI_S_SCRIPT_NAME], t->prefix) != 0) {
            goto fail;
        }
        path += t->prefix_len;
        path_len -= t->prefix_len;
    }

    port_len = wsgi_port_text(port, h->local_port);

    if (wsgi_env_cached(ww, env, WSGI_S_REQUEST_METHOD, WF_PY_WSGI_C_METHOD,
                        h->method.data, h->method.len)
            != 0
        || wsgi_env_cached(ww, env, WSGI_S_REQUEST_URI, WF_PY_WSGI_C_URI,
                           h->target.data, h->target.len)
               != 0
        || wsgi_env_cached(ww, env, WSGI_S_QUERY_STRING, WF_PY_WSGI_C_QUERY,
                           h->query.data, h->query.len)
               != 0
        || wsgi_env_cached(ww, env, WSGI_S_PATH_INFO, WF_PY_WSGI_C_PATH, path,
                           path_len)
               != 0
        || wsgi_env_cached(ww, env, WSGI_S_REMOTE_ADDR, WF_PY_WSGI_C_REMOTE,
                           h->remote.data, h->remote.len)
               != 0
        || wsgi_env_cached(ww, env, WSGI_S_SERVER_ADDR, WF_PY_WSGI_C_LOCAL,
                           h->local.data, h->local.len)
               != 0
        || wsgi_env_cached(ww, env, WSGI_S_SERVER_PORT, WF_PY_WSGI_C_PORT, port,
                           (size_t)port_len)
               != 0
        || wsgi_env_cached(ww, env, WSGI_S_SERVER_PROTOCOL,
                           WF_PY_WSGI_C_VERSION, h->version.data,
                           h->version.len)
               != 0
        || wsgi_env_cached(ww, env, WSGI_S_SERVER_NAME, WF_PY_WSGI_C_SERVER,
                           h->server.data, h->server.len)
               != 0
        || PyDict_SetItem(env, wsgi_str[WSGI_S_URL_SCHEME],
                          wsgi_str[h->tls ? WSGI_S_HTTPS : WSGI_S_HTTP])
               != 0
        || wsgi_env_fields(ww, env) != 0) {
        goto fail;
    }
    return env;

fail:
    Py_DECREF(env);
    return NULL;
}

/* ---- start_response ------------------------------------------------------ */

static void
wsgi_fields_clear(wf_py_wsgi_t *ww)
{
    for (size_t i = 0; i < ww->nrefs; i++) {
        Py_DECREF(ww->field_refs[i]);
    }
    ww->nrefs = 0;
    ww->nfields = 0;
}

static int
wsgi_grow(void **p, size_t *cap, size_t need, size_t size)
{
    size_t n = *cap > 0 ? *cap : 16;
    void *q;

    if (need <= *cap) {
        return 0;
    }
    while (n < need) {
        n *= 2;
    }
    q = realloc(*p, n * size);
    if (q == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

static int
wsgi_ref_keep(wf_py_wsgi_t *ww, PyObject *o)
{
    if (wsgi_grow((void **)&ww->field_refs, &ww->refs_cap, ww->nrefs + 1,
                  sizeof(PyObject *))
        != 0) {
        return -1;
    }
    Py_INCREF(o);
    ww->field_refs[ww->nrefs++] = o;
    return 0;
}

/* A native string's bytes (latin-1), or a bytes object's; the data stays
 * valid while the worker keeps its references. */
static int
wsgi_str_bytes(wf_py_wsgi_t *ww, PyObject *o, wf_app_str_t *s)
{
    PyObject *b;

    if (PyUnicode_Check(o)) {
        if (PyUnicode_KIND(o) == PyUnicode_1BYTE_KIND) {
            s->data = (const char *)PyUnicode_1BYTE_DATA(o);
            s->len = (size_t)PyUnicode_GET_LENGTH(o);
            return 0;
        }
        b = PyUnicode_AsLatin1String(o); /* fails: not latin-1 */
        if (b == NULL) {
            return -1;
        }
        if (wsgi_ref_keep(ww, b) != 0) {
            Py_DECREF(b);
            return -1;
        }
        Py_DECREF(b);
        o = b;
    } else if (!PyBytes_Check(o)) {
        return 1;
    }
    s->data = PyBytes_AS_STRING(o);
    s->len = (size_t)PyBytes_GET_SIZE(o);
    return 0;
}

/* RFC 9110 5.1 token characters, and field-value bytes (5.5: no CR, LF,
 * NUL or other controls but HTAB), so that no header can split the
 * response. */
static bool
wsgi_field_ok(const wf_app_str_t *name, const wf_app_str_t *value)
{
    if (name->len == 0) {
        return false;
    }
    for (size_t i = 0; i < name->len; i++) {
        if (!wsgi_tchar[(unsigned char)name->data[i]]) {
            return false;
        }
    }
    for (size_t i = 0; i < value->len; i++) {
        unsigned char c = (unsigned char)value->data[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Reads header i of the list into ww->fields[i]. */
static int
wsgi_header_add(wf_py_wsgi_t *ww, PyObject *item, Py_ssize_t i)
{
    wf_app_field_t *f = &ww->fields[ww->nfields];
    int rc;

    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "each header must be a tuple of two items");
        return -1;
    }
    if (wsgi_ref_keep(ww, item) != 0) {
        return -1;
    }
    rc = wsgi_str_bytes(ww, PyTuple_GET_ITEM(item, 0), &f->name);
    if (rc != 0) {
        if (rc > 0) {
            PyErr_Format(PyExc_TypeError, "header #%d name is not a string",
                         (int)i);
        }
        return -1;
    }
    rc = wsgi_str_bytes(ww, PyTuple_GET_ITEM(item, 1), &f->value);
    if (rc != 0) {
        if (rc > 0) {
            PyErr_Format(PyExc_TypeError, "header #%d value is not a string",
                         (int)i);
        }
        return -1;
    }
    if (!wsgi_field_ok(&f->name, &f->value)) {
        PyErr_Format(PyExc_ValueError,
                     "header #%d has a character that is not allowed", (int)i);
        return -1;
    }

    if (f->name.len == 14
        && strncasecmp(f->name.data, "content-length", 14) == 0) {
        char *end;
        unsigned long long n;

        errno = 0;
        n = strtoull(f->value.data, &end, 10);
        if (errno == 0 && end != f->value.data
            && end == f->value.data + f->value.len
            && isdigit((unsigned char)f->value.data[0])) {
            ww->content_length = n;
        }
    }
    ww->nfields++;
    return 0;
}

/* "200 OK": the code, 100..999, or 0. */
static unsigned
wsgi_status_parse(const wf_app_str_t *s)
{
    unsigned code = 0;
    size_t i = 0;

    while (i < s->len && i < 4 && isdigit((unsigned char)s->data[i])) {
        code = code * 10 + (unsigned)(s->data[i] - '0');
        i++;
    }
    if (i != 3 || (i < s->len && s->data[i] != ' ') || code < 100) {
        return 0;
    }
    return code;
}

/* start_response(status, headers, exc_info=None), PEP 3333: the head is
 * kept until the first body byte (or the end); called again before that
 * it replaces the head, after that with exc_info it raises exc_info. */
static int
wsgi_start_check(wf_py_wsgi_t *ww, PyObject *const *args, Py_ssize_t nargs)
{
    if (ww->req == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response() is called outside of WSGI "
                        "request processing");
        return -1;
    }
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "invalid number of arguments");
        return -1;
    }
    if (nargs == 3 && args[2] != Py_None && ww->head_sent) {
        PyObject *exc = args[2];

        if (!PyTuple_Check(exc) || PyTuple_GET_SIZE(exc) != 3) {
            PyErr_SetString(PyExc_TypeError,
                            "exc_info must be a tuple of three items");
            return -1;
        }
        PyObject *type = PyTuple_GET_ITEM(exc, 0);
        PyObject *value = PyTuple_GET_ITEM(exc, 1);
        PyObject *tb = PyTuple_GET_ITEM(exc, 2);

        Py_INCREF(type);
        Py_INCREF(value);
        if (tb == Py_None) {
            tb = NULL;
        } else {
            Py_INCREF(tb);
        }
        PyErr_Restore(type, value, tb);
        return -1;
    }
    if (ww->head_sent) {
        PyErr_SetString(PyExc_RuntimeError,
                        "start_response() is called after the response "
                        "head was sent");
        return -1;
    }
    return 0;
}

static PyObject *
wsgi_start_response(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    wf_py_wsgi_t *ww = (wf_py_wsgi_t *)self;
    PyObject *headers;
    wf_app_str_t st;
    Py_ssize_t n;
    unsigned code;

    if (wsgi_start_check(ww, args, nargs) != 0) {
        return NULL;
    }
    wsgi_fields_clear(ww);
    ww->status = 0;
    ww->content_length = UINT64_MAX;

    if (wsgi_str_bytes(ww, args[0], &st) != 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError,
                        "failed to write first argument (not a string?)");
        return NULL;
    }
    code = wsgi_status_parse(&st);
    if (code == 0) {
        PyErr_SetString(PyExc_TypeError, "failed to parse status code");
        return NULL;
    }

    headers = args[1];
    if (!PyList_Check(headers)) {
        PyErr_SetString(PyExc_TypeError,
                        "the second argument is not a response headers list");
        return NULL;
    }
    n = PyList_GET_SIZE(headers);
    if (wsgi_grow((void **)&ww->fields, &ww->fields_cap, (size_t)n,
                  sizeof(wf_app_field_t))
        != 0) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (wsgi_header_add(ww, PyList_GET_ITEM(headers, i), i) != 0) {
            wsgi_fields_clear(ww);
            return NULL;
        }
    }
    ww->status = code;

    Py_INCREF(ww->write);
    return ww->write;
}

/* ---- the response ------------------------------------------------------- */

/* Sends len bytes of body (the head first if not sent yet); last: nothing
 * follows.  Never sends past the app's Content-Length (PEP 3333): the
 * bytes that reach it complete the response.  0, or -1 with a Python
 * exception set. */
static int
wsgi_body_send(wf_py_wsgi_t *ww, const char *data, size_t len, int last)
{
    const wf_app_rt_t *rt = ww->rt;
    ssize_t n = 0;
    int rc = WF_APP_OK;

    if (ww->status == 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the application did not call start_response()");
        return -1;
    }
    if (ww->complete) {
        return len == 0 ? 0 : 1;
    }
    if (ww->content_length != UINT64_MAX
        && len >= ww->content_length - ww->sent) {
        len = (size_t)(ww->content_length - ww->sent);
        last = 1;
    }
    if (len == 0 && !last) {
        return 0; /* PEP 3333: no head before the first body byte */
    }

    if (!ww->head_sent) {
        Py_BEGIN_ALLOW_THREADS;
        rc = rt->respond(ww->req, ww->status, ww->fields, ww->nfields, data,
                         len, last);
        Py_END_ALLOW_THREADS;
        ww->head_sent = 1;
        wsgi_fields_clear(ww);
        if (rc == WF_APP_OK) {
            ww->sent += len;
            len = 0;
        }
    }
    while (rc == WF_APP_OK && len > 0) {
        Py_BEGIN_ALLOW_THREADS;
        n = rt->write(ww->req, data, len);
        Py_END_ALLOW_THREADS;
        if (n <= 0) {
            rc = WF_APP_ERROR;
            break;
        }
        ww->sent += (uint64_t)n;
        data += n;
        len -= (size_t)n;
    }
    if (rc != WF_APP_OK) {
        PyErr_SetString(PyExc_OSError, "failed to send the response (the "
                                       "request was aborted)");
        return -1;
    }
    ww->complete = last;
    return 0;
}

/* write(data), as start_response() returns it. */
static PyObject *
wsgi_write(PyObject *self, PyObject *data)
{
    wf_py_wsgi_t *ww = (wf_py_wsgi_t *)self;
    int rc;

    if (ww->req == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "write() is called outside of "
                                            "WSGI request processing");
        return NULL;
    }
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "the argument is not a bytestring");
        return NULL;
    }
    rc = wsgi_body_send(ww, PyBytes_AS_STRING(data),
                        (size_t)PyBytes_GET_SIZE(data), 0);
    if (rc < 0) {
        return NULL;
    }
    if (rc > 0) {
        PyErr_Format(PyExc_RuntimeError, "content length %" PRIu64 " exceeded",
                     ww->content_length);
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
wsgi_item_check(PyObject *item)
{
    if (!PyBytes_Check(item)) {
        PyErr_SetString(PyExc_TypeError,
                        "the application returned not a bytestring object");
        return -1;
    }
    return 0;
}

/* A list or tuple: small ones go as one message. */
static int
wsgi_send_seq(wf_py_wsgi_t *ww, PyObject *seq)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    char buf[WSGI_JOIN_MAX];
    size_t total = 0;

    for (Py_ssize_t i = 0; i < n; i++) {
        if (wsgi_item_check(items[i]) != 0) {
            return -1;
        }
        total += (size_t)PyBytes_GET_SIZE(items[i]);
    }

    if (n > 1 && n <= WSGI_JOIN_ITEMS && total <= sizeof(buf)) {
        char *p = buf;

        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(p, PyBytes_AS_STRING(items[i]),
                   (size_t)PyBytes_GET_SIZE(items[i]));
            p += PyBytes_GET_SIZE(items[i]);
        }
        return wsgi_body_send(ww, buf, total, 1) < 0 ? -1 : 0;
    }

    /* While a write waits (the GIL released), another of the app's
     * threads may change a list: read it afresh and hold each item. */
    for (Py_ssize_t i = 0; !ww->complete; i++) {
        PyObject *item;
        int rc;

        n = PySequence_Fast_GET_SIZE(seq);
        if (i >= n) {
            break;
        }
        item = PySequence_Fast_GET_ITEM(seq, i);
        if (wsgi_item_check(item) != 0) {
            return -1;
        }
        Py_INCREF(item);
        rc = wsgi_body_send(ww, PyBytes_AS_STRING(item),
                            (size_t)PyBytes_GET_SIZE(item), i == n - 1);
        Py_DECREF(item);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

static int
wsgi_send_iter(wf_py_wsgi_t *ww, PyObject *resp)
{
    PyObject *it, *item;
    int rc = 0;

    it = PyObject_GetIter(resp);
    if (it == NULL) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError,
                        "the application returned not an iterable object");
        return -1;
    }
    while (rc == 0 && !ww->complete && (item = PyIter_Next(it)) != NULL) {
        rc = wsgi_item_check(item);
        if (rc == 0) {
            rc = wsgi_body_send(ww, PyBytes_AS_STRING(item),
                                (size_t)PyBytes_GET_SIZE(item), 0);
        }
        Py_DECREF(item);
    }
    Py_DECREF(it);
    return rc < 0 || PyErr_Occurred() != NULL ? -1 : 0;
}

/* A wsgi.file_wrapper over a regular file: its bytes go as an fd, after
 * the head. */
static int
wsgi_send_file(wf_py_wsgi_t *ww, int fd, off_t off, off_t len)
{
    int rc;

    if (len == 0) {
        return wsgi_body_send(ww, NULL, 0, 1);
    }
    Py_BEGIN_ALLOW_THREADS;
    rc = ww->rt->respond(ww->req, ww->status, ww->fields, ww->nfields, NULL, 0,
                         0);
    if (rc == WF_APP_OK) {
        rc = ww->rt->send_file(ww->req, fd, off, len);
    }
    Py_END_ALLOW_THREADS;
    ww->head_sent = 1;
    wsgi_fields_clear(ww);
    if (rc != WF_APP_OK) {
        PyErr_SetString(PyExc_OSError, "failed to send the response (the "
                                       "request was aborted)");
        return -1;
    }
    ww->sent += (uint64_t)len;
    ww->complete =
        ww->content_length != UINT64_MAX && ww->sent >= ww->content_length;
    return 0;
}

/* Sends what the application returned.  0, or -1 with an exception. */
static int
wsgi_response_send(wf_py_wsgi_t *ww, PyObject *resp)
{
    if (PyBytes_Check(resp)) {
        /* As Unit: bytes are the whole body, not an iterable of ints. */
        return wsgi_body_send(ww, PyBytes_AS_STRING(resp),
                              (size_t)PyBytes_GET_SIZE(resp), 1)
                       < 0
                   ? -1
                   : 0;
    }
    if (PyList_CheckExact(resp) || PyTuple_CheckExact(resp)) {
        return wsgi_send_seq(ww, resp);
    }
    if (Py_IS_TYPE(resp, &wf_py_wsgi_file_type) && ww->status != 0) {
        int fd;
        off_t off, len;

        if (wf_py_wsgi_file_range(ww, resp, &fd, &off, &len) == 0) {
            return wsgi_send_file(ww, fd, off, len);
        }
    }
    return wsgi_send_iter(ww, resp);
}

/* PEP 3333: the iterable's close() is called whatever happened. */
static void
wsgi_response_close(wf_py_wsgi_t *ww, PyObject *resp)
{
    PyObject *close, *res;

    if (PyBytes_CheckExact(resp) || PyList_CheckExact(resp)
        || PyTuple_CheckExact(resp)) {
        return; /* none has a close() */
    }
    close = PyObject_GetAttr(resp, wsgi_str[WSGI_S_CLOSE]);
    if (close == NULL) {
        PyErr_Clear();
        return;
    }
    res = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    if (res == NULL) {
        wf_py_log_exception(ww->app, WF_APP_LOG_ERR,
                            "Python failed to call the close() method of "
                            "the application response");
        return;
    }
    Py_DECREF(res);
}

/* Ends the request: complete, or with a 500 when nothing was sent yet,
 * or cut short. */
static void
wsgi_finish(wf_py_wsgi_t *ww, int rc)
{
    static const char page[] = "<!DOCTYPE html><title>Error 500</title>"
                               "<p>Error 500.\r\n";
    static const wf_app_field_t page_fields[] = {
        {{"Content-Type", 12}, {"text/html", 9}},
    };
    const wf_app_rt_t *rt = ww->rt;
    int ok = 1;

    if (rc == 0 && !ww->head_sent) {
        if (wsgi_body_send(ww, NULL, 0, 1) < 0) {
            wf_py_log_exception(ww->app, WF_APP_LOG_ERR,
                                "Python failed to send the response");
            rc = -1;
        }
    }

    Py_BEGIN_ALLOW_THREADS;
    if (rc != 0 && !ww->head_sent) {
        ok =
            rt->respond(ww->req, 500, page_fields, 1, page, sizeof(page) - 1, 1)
            == WF_APP_OK;
    } else if (rc != 0) {
        ok = 0;
    }
    rt->end(ww->req, ok);
    Py_END_ALLOW_THREADS;
}

/* Serves one request, from the environ to rt->end(). */
static void
wsgi_serve(wf_py_wsgi_t *ww, wf_app_req_t *req)
{
    const wf_py_target_t *t;
    PyObject *args[2], *resp;
    int rc = -1;

    ww->req = req;
    ww->head = ww->rt->head(req);
    ww->status = 0;
    ww->head_sent = 0;
    ww->complete = 0;
    ww->content_length = UINT64_MAX;
    ww->sent = 0;
    wf_py_wsgi_input_reset(ww);

    t = &ww->app->targets[ww->head->target_index < ww->app->ntargets
                              ? ww->head->target_index
                              : 0];

    args[0] = wsgi_environ(ww, t);
    if (args[0] == NULL) {
        wf_py_log_exception(ww->app, WF_APP_LOG_ERR,
                            "Python failed to create the environ");
        goto done;
    }
    args[1] = ww->start_resp;
    resp = PyObject_Vectorcall(t->callable, args, 2, NULL);
    Py_DECREF(args[0]);
    if (resp == NULL) {
        wf_py_log_exception(ww->app, WF_APP_LOG_ERR,
                            "Python failed to call the application");
        goto done;
    }

    rc = wsgi_response_send(ww, resp);
    if (rc != 0) {
        wf_py_log_exception(ww->app, WF_APP_LOG_ERR,
                            "Python failed to send the application "
                            "response");
    }
    wsgi_response_close(ww, resp);
    Py_DECREF(resp);

done:
    wsgi_finish(ww, rc);
    wsgi_fields_clear(ww);
    ww->req = NULL;
    ww->head = NULL;

    /* The next request's environ, made while no request waits on it. */
    ww->environ = PyDict_Copy(ww->template);
    if (ww->environ == NULL) {
        PyErr_Clear();
    }
}

/* ---- workers ------------------------------------------------------------ */

static wf_py_wsgi_t *
wsgi_worker_create(wf_py_app_t *app, unsigned i)
{
    wf_py_wsgi_t *ww;

    ww = PyObject_New(wf_py_wsgi_t, &wf_py_wsgi_type);
    if (ww == NULL) {
        return NULL;
    }
    memset((char *)ww + sizeof(PyObject), 0, sizeof(*ww) - sizeof(PyObject));
    ww->app = app;
    ww->rt = app->rt;
    ww->index = i;
    ww->w = app->rt->worker(app->app, i);
    ww->content_length = UINT64_MAX;

    ww->template = PyDict_Copy(wsgi_template);
    if (ww->template == NULL
        || PyDict_SetItem(ww->template, wsgi_str[WSGI_S_INPUT], (PyObject *)ww)
               != 0) {
        goto fail;
    }
    ww->start_resp = PyCFunction_New(&wsgi_start_response_def, (PyObject *)ww);
    ww->write = PyCFunction_New(&wsgi_write_def, (PyObject *)ww);
    ww->environ = PyDict_Copy(ww->template);
    if (ww->start_resp == NULL || ww->write == NULL || ww->environ == NULL) {
        goto fail;
    }
    return ww;

fail:
    wf_py_log_exception(app, WF_APP_LOG_ALERT,
                        "Python failed to create WSGI worker #%u", i);
    /* The template refers to ww, and start_resp and write hold it. */
    if (ww->template != NULL) {
        PyDict_Clear(ww->template);
    }
    Py_CLEAR(ww->start_resp);
    Py_CLEAR(ww->write);
    Py_DECREF(ww);
    return NULL;
}

static void
wsgi_worker_destroy(wf_py_wsgi_t *ww)
{
    /* Break the cycles through ww (template -> wsgi.input, the bound
     * functions' self) so that ww is freed. */
    PyDict_Clear(ww->template);
    Py_CLEAR(ww->environ);
    Py_CLEAR(ww->start_resp);
    Py_CLEAR(ww->write);
    Py_DECREF(ww);
}

static int
wsgi_worker_main(wf_py_app_t *app, unsigned i)
{
    const wf_app_rt_t *rt = app->rt;
    wf_py_wsgi_t *ww;
    wf_app_req_t *req;
    int rc, status = 0;

    ww = wsgi_worker_create(app, i);
    if (ww == NULL) {
        return 1;
    }

    for (;;) {
        req = NULL;
        Py_BEGIN_ALLOW_THREADS;
        rc = rt->next(ww->w, &req, -1);
        Py_END_ALLOW_THREADS;
        if (rc == WF_APP_OK) {
            wsgi_serve(ww, req);
        } else if (rc == WF_APP_DONE) {
            break;
        } else if (rc != WF_APP_AGAIN) {
            status = 1;
            break;
        }
    }

    wsgi_worker_destroy(ww);
    return status;
}

int
wf_py_wsgi_run(wf_py_app_t *app)
{
    int status = wf_py_workers_run(app, wsgi_worker_main);

    for (int i = 0; i < WSGI_NSTR; i++) {
        Py_CLEAR(wsgi_str[i]);
    }
    Py_CLEAR(wsgi_template);
    return status;
}
