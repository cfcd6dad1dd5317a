#include "control/api.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/acme.h"
#include "control/cert.h"
#include "control/conf.h"
#include "control/conf_store.h"
#include "control/conf_tls.h"
#include "core/common.h"
#include "core/json.h"
#include "http/metrics.h"
#include "http/var.h"

/* Routes and messages follow Unit's nxt_controller.c: a request path loses
 * its query and one trailing slash, then the first route whose prefix
 * matches (followed by the end or '/') handles it.  Each handler checks the
 * method first, as Unit does, so e.g. PUT /status is 405 whatever follows. */

/* Unit's titles, reused by several routes. */
#define API_NOT_FOUND      "Value doesn't exist."
#define API_NOT_ALLOWED    "Method isn't allowed."
#define API_INVALID_METHOD "Invalid method."
#define API_NOMEM          "Memory allocation failed."
#define API_EMPTY_JSON                                                   \
    "An empty JSON payload isn't allowed.  It must be either a literal " \
    "(null, true, or false), a number, a string (in double quotes "      \
    "\"\"), an array (with brackets []), or an object (with braces {})."

typedef struct api_req {
    json_t *conf;   /* borrowed; the current tree */
    json_t *status; /* borrowed; may be NULL */
    wf_conf_op_t op;
    wf_str_t sub;    /* path below the route's prefix: "/" or "/a/b" */
    bool prometheus; /* the query asks for format=prometheus */
    const char *body;
    size_t len;
    wf_api_reply_t *reply;
} api_req_t;

/* The WF_MSG_MODULES list (a reference), NULL until main sent it.  The
 * controller runs one thread. */
static json_t *api_modules;

void
wf_api_modules_set(json_t *modules)
{
    json_decref(api_modules);
    api_modules = json_incref(modules);
}

/* ---- replies ----------------------------------------------------------- */

void
wf_api_reply_set(wf_api_reply_t *reply, unsigned status, const char *title,
                 const char *detail)
{
    json_t *body = json_object();

    json_object_set_new(body, status < 400 ? "success" : "error",
                        json_string(title));
    if (detail != NULL) {
        json_object_set_new(body, "detail", json_string(detail));
    }
    reply->status = status;
    reply->body = body;
}

void
wf_api_reply_fini(wf_api_reply_t *reply)
{
    json_decref(reply->body);
    reply->body = NULL;
    json_decref(reply->conf);
    reply->conf = NULL;
    free(reply->restart);
    reply->restart = NULL;
    free(reply->cert_name);
    reply->cert_name = NULL;
    free(reply->cert_pem);
    reply->cert_pem = NULL;
    reply->cert_len = 0;
    json_decref(reply->cert_info);
    reply->cert_info = NULL;
    json_decref(reply->acme);
    reply->acme = NULL;
    free(reply->text);
    reply->text = NULL;
}

/* A 200 whose body is a value of the tree (borrowed here). */
static void
api_reply_value(wf_api_reply_t *reply, json_t *value)
{
    reply->status = 200;
    reply->body = json_incref(value);
}

static const struct {
    unsigned status;
    const char *text;
} api_reasons[] = {
    {200, "OK"},
    {400, "Bad Request"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {WF_API_TOO_LARGE, "Payload Too Large"},
};

const char *
wf_api_status_text(unsigned status)
{
    for (size_t i = 0; i < wf_nitems(api_reasons); i++) {
        if (api_reasons[i].status == status) {
            return api_reasons[i].text;
        }
    }
    return "Internal Server Error"; /* Unit: every other status is a 500 */
}

/* ---- Unit's JSON printer ----------------------------------------------- */

typedef struct api_out {
    char *p;
    size_t len;
    size_t cap;
    bool nomem;
    unsigned level;  /* indentation, in tabs */
    bool more_space; /* Unit's flag: a composite value just closed */
} api_out_t;

static void
out_bytes(api_out_t *o, const char *s, size_t n)
{
    if (o->nomem) {
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = wf_max(o->cap * 2, o->len + n + 256);
        char *p = realloc(o->p, cap);

        if (p == NULL) {
            o->nomem = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void
out_newline(api_out_t *o)
{
    out_bytes(o, "\r\n", 2);
}

static void
out_indent(api_out_t *o)
{
    for (unsigned i = 0; i < o->level; i++) {
        out_bytes(o, "\t", 1);
    }
}

/* Unit escapes '"', '\\' and control bytes only; UTF-8 passes as is. */
static void
out_string(api_out_t *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";

    out_bytes(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};

        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            break;
        }
        if (esc != NULL) {
            out_bytes(o, esc, 2);
        } else if (c < 0x20) {
            out_bytes(o, u, sizeof(u));
        } else {
            out_bytes(o, &s[i], 1);
        }
    }
    out_bytes(o, "\"", 1);
}

static void out_value(api_out_t *o, const json_t *v);

static void
out_array(api_out_t *o, const json_t *v)
{
    size_t n = json_array_size(v);

    out_bytes(o, "[", 1);
    if (n != 0) {
        out_newline(o);
        o->level++;
        for (size_t i = 0; i < n; i++) {
            if (i != 0) {
                out_bytes(o, ",", 1);
                out_newline(o);
                o->more_space = false;
            }
            out_indent(o);
            out_value(o, json_array_get(v, i));
        }
        out_newline(o);
        o->level--;
        out_indent(o);
        o->more_space = true;
    }
    out_bytes(o, "]", 1);
}

static void
out_object(api_out_t *o, const json_t *v)
{
    const char *key;
    size_t klen;
    json_t *member;
    bool first = true;

    out_bytes(o, "{", 1);
    if (json_object_size(v) == 0) {
        out_bytes(o, "}", 1);
        return;
    }
    out_newline(o);
    o->level++;
    json_object_keylen_foreach((json_t *)v, key, klen, member)
    {
        if (!first) {
            out_bytes(o, ",", 1);
            out_newline(o);
            if (o->more_space) {
                o->more_space = false;
                out_newline(o);
            }
        }
        first = false;
        out_indent(o);
        out_string(o, key, klen);
        out_bytes(o, ": ", 2);
        out_value(o, member);
    }
    out_newline(o);
    o->level--;
    out_indent(o);
    o->more_space = true;
    out_bytes(o, "}", 1);
}

static void
out_scalar(api_out_t *o, const json_t *v)
{
    char num[32];
    char *real;

    switch (json_typeof(v)) {
    case JSON_STRING:
        out_string(o, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        out_bytes(o, num, strlen(num));
        return;
    case JSON_TRUE:
        out_bytes(o, "true", 4);
        return;
    case JSON_FALSE:
        out_bytes(o, "false", 5);
        return;
    case JSON_REAL:
        real = json_dumps(v, JSON_ENCODE_ANY);
        o->nomem = o->nomem || real == NULL;
        out_bytes(o, real != NULL ? real : "", real != NULL ? strlen(real) : 0);
        free(real);
        return;
    default:
        out_bytes(o, "null", 4);
        return;
    }
}

static void
out_value(api_out_t *o, const json_t *v)
{
    if (json_is_object(v)) {
        out_object(o, v);
    } else if (json_is_array(v)) {
        out_array(o, v);
    } else {
        out_scalar(o, v);
    }
}

char *
wf_api_json_text(const json_t *v, size_t *len)
{
    api_out_t o;

    memset(&o, 0, sizeof(o));
    if (v == NULL) {
        return NULL;
    }
    out_value(&o, v);
    out_newline(&o);
    if (o.nomem) {
        free(o.p);
        return NULL;
    }
    if (len != NULL) {
        *len = o.len;
    }
    return o.p;
}

char *
wf_api_reply_text(const wf_api_reply_t *reply, size_t *len)
{
    if (reply->text != NULL) {
        *len = strlen(reply->text);
        return strdup(reply->text);
    }
    return wf_api_json_text(reply->body, len);
}

/* ---- /config ----------------------------------------------------------- */

static bool
api_is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') {
            return false;
        }
    }
    return true;
}

static void
api_invalid_json(wf_api_reply_t *reply, const wf_json_error_t *err)
{
    json_t *loc =
        json_pack("{s:I, s:i, s:i}", "offset", (json_int_t)err->offset, "line",
                  err->line, "column", err->column);

    wf_api_reply_set(reply, 400, "Invalid JSON.", err->detail);
    json_object_set_new(reply->body, "location", loc);
}

/* Parses the body of a PUT or POST; NULL when *reply was set. */
static json_t *
api_body(api_req_t *rq)
{
    wf_json_error_t err;
    json_t *value;

    if (rq->len > WF_API_BODY_MAX) {
        char detail[96];

        snprintf(detail, sizeof(detail),
                 "The request body exceeds the limit of %u bytes.",
                 WF_API_BODY_MAX);
        wf_api_reply_set(rq->reply, WF_API_TOO_LARGE, WF_API_TOO_LARGE_TITLE,
                         detail);
        return NULL;
    }
    if (api_is_blank(rq->body, rq->len)) {
        memset(&err, 0, sizeof(err));
        snprintf(err.detail, sizeof(err.detail), "%s", API_EMPTY_JSON);
        err.line = 1;
        err.column = 1;
        api_invalid_json(rq->reply, &err);
        return NULL;
    }
    value = wf_json_parse(rq->body != NULL ? rq->body : "", rq->len, &err);
    if (value == NULL) {
        api_invalid_json(rq->reply, &err);
    }
    return value;
}

/* Validates next (taken) as the whole config and makes it the reply. */
static void
api_commit(api_req_t *rq, json_t *next)
{
    wf_conf_error_t err;

    /* Listeners name certificates of the store (Unit's order: the name is
     * looked up as written, then without case). */
    wf_conf_tls_pems_set(wf_cert_store_pems(next));
    if (wf_conf_check(next, api_modules, &err) != WF_OK) {
        wf_api_reply_set(rq->reply, 400,
                         err.error[0] != '\0' ? err.error
                                              : "Invalid configuration.",
                         err.detail);
        json_decref(next);
        return;
    }
    wf_api_reply_set(rq->reply, 200, WF_API_DONE, NULL);
    if (json_equal(next, rq->conf)) {
        json_decref(next); /* Unit: a change that changes nothing is done */
        return;
    }
    rq->reply->conf = next;
}

static void
api_store_fail(wf_api_reply_t *reply, wf_conf_store_rc_t rc)
{
    static const struct {
        unsigned status;
        const char *title;
    } fails[] = {
        [WF_CONF_STORE_NOT_FOUND] = {404, API_NOT_FOUND},
        [WF_CONF_STORE_NOT_ALLOWED] = {405, API_NOT_ALLOWED},
        [WF_CONF_STORE_NOMEM] = {500, API_NOMEM},
    };

    wf_api_reply_set(reply, fails[rc].status, fails[rc].title, NULL);
}

static void
api_config(api_req_t *rq)
{
    bool root = rq->sub.len == 1;
    json_t *value = NULL;
    json_t *next;
    wf_conf_store_rc_t rc;

    if (rq->op == WF_CONF_NOPS || (rq->op == WF_CONF_OP_POST && root)) {
        wf_api_reply_set(rq->reply, 405, API_NOT_ALLOWED, NULL);
        return;
    }
    if (rq->op == WF_CONF_OP_PUT || rq->op == WF_CONF_OP_POST) {
        value = api_body(rq);
        if (value == NULL) {
            return;
        }
    }
    rc = wf_conf_store_apply(rq->conf, rq->op, rq->sub.data, rq->sub.len, value,
                             &next);
    json_decref(value);
    if (rc != WF_CONF_STORE_OK) {
        api_store_fail(rq->reply, rc);
        return;
    }
    if (rq->op == WF_CONF_OP_GET) {
        api_reply_value(rq->reply, next);
        json_decref(next);
        return;
    }
    api_commit(rq, next);
}

/* ---- /status, /, /certificates, /control ------------------------------- */

static json_t *
api_status_empty(void)
{
    return json_pack("{s:{}, s:{s:i, s:i, s:i, s:i}, s:{s:i}, s:{}}", "modules",
                     "connections", "accepted", 0, "active", 0, "idle", 0,
                     "closed", 0, "requests", "total", 0, "applications");
}

/* Wharf's GET /status?format=prometheus: all of /status as Prometheus
 * text (http/metrics.h). */
static void
api_status_prometheus(api_req_t *rq, const json_t *status)
{
    size_t len;

    rq->reply->text = wf_metrics_render(status, &len);
    if (rq->reply->text == NULL) {
        wf_api_reply_set(rq->reply, 500, API_NOMEM, NULL);
        return;
    }
    rq->reply->status = 200;
    rq->reply->body = json_null(); /* never NULL; text is what is sent */
}

static void
api_status(api_req_t *rq)
{
    json_t *status;
    json_t *value;

    if (rq->op != WF_CONF_OP_GET) {
        wf_api_reply_set(rq->reply, 405, API_INVALID_METHOD, NULL);
        return;
    }
    status = rq->status != NULL ? json_incref(rq->status) : api_status_empty();
    value = wf_conf_store_get(status, rq->sub.data, rq->sub.len);
    if (value != NULL && rq->prometheus && json_is_object(value)
        && rq->sub.len == 1) {
        api_status_prometheus(rq, value);
    } else if (value == NULL) {
        wf_api_reply_set(rq->reply, 404, "Invalid path.", NULL);
    } else {
        api_reply_value(rq->reply, value);
    }
    json_decref(status);
}

static void
api_root(api_req_t *rq)
{
    json_t *status;
    json_t *certs;

    if (rq->op != WF_CONF_OP_GET) {
        wf_api_reply_set(rq->reply, 405, API_INVALID_METHOD, NULL);
        return;
    }
    status = rq->status != NULL ? json_incref(rq->status) : api_status_empty();
    rq->reply->status = 200;
    certs = wf_cert_store_infos();
    wf_acme_cert_infos(certs);
    rq->reply->body = json_pack("{s:o?, s:O, s:o}", "certificates", certs,
                                "config", rq->conf, "status", status);
}

/* GET /certificates[/NAME[/path]]: Unit's descriptions (control/cert.h). */
static void
api_cert_get(api_req_t *rq, const char *name, size_t n, wf_str_t path)
{
    json_t *info;

    if (n == 0) {
        info = wf_cert_store_infos();
        if (info != NULL) {
            wf_acme_cert_infos(info);
            api_reply_value(rq->reply, info);
            json_decref(info);
        }
        return; /* NULL: wf_api_handle() answers 500 */
    }
    info = wf_cert_store_info(name, n);
    if (info == NULL) {
        wf_api_reply_set(rq->reply, 404, "Certificate doesn't exist.", NULL);
        return;
    }
    info = wf_acme_cert_info(name, info); /* with its "acme" state */
    if (path.len > 0) {
        json_t *v = wf_conf_store_get(info, path.data, path.len);

        if (v == NULL) {
            json_decref(info);
            wf_api_reply_set(rq->reply, 404, "Invalid path.", NULL);
            return;
        }
        api_reply_value(rq->reply, v);
        json_decref(info);
        return;
    }
    api_reply_value(rq->reply, info);
    json_decref(info);
}

/* PUT /certificates/NAME with {"acme": {...}} (control/acme.h): the
 * placeholder bundle and the entry's state go to main together. */
static bool
api_acme_put(api_req_t *rq, char *name)
{
    char error[64];
    char detail[256];
    char why[256];
    char *pem;
    json_t *info;
    json_t *state = wf_acme_put(name, rq->body, rq->len, &pem, error,
                                sizeof(error), detail, sizeof(detail));

    if (state == NULL) {
        wf_api_reply_set(rq->reply, 400, error,
                         detail[0] != '\0' ? detail : NULL);
        return false;
    }
    if (wf_cert_parse(pem, strlen(pem), &info, why, sizeof(why)) != WF_OK) {
        free(pem);
        json_decref(state);
        return false; /* wf_api_handle() answers 500 */
    }
    rq->reply->cert_pem = pem;
    rq->reply->cert_len = strlen(pem);
    rq->reply->cert_info = info;
    rq->reply->cert_name = name;
    rq->reply->acme = state;
    wf_api_reply_set(rq->reply, 200, "ACME entry stored.", NULL);
    return true;
}

/* PUT /certificates/NAME: parsed and checked here; main stores the file
 * (reply->cert_name), and the reply waits for it.  Returns whether the
 * reply took name. */
static bool
api_cert_put(api_req_t *rq, char *name, size_t n)
{
    char why[256];
    json_t *info;

    if (wf_cert_store_info(name, n) != NULL) {
        wf_api_reply_set(rq->reply, 400, "Certificate already exists.", NULL);
        return false;
    }
    if (wf_acme_body_is_acme(rq->body, rq->len)) {
        return api_acme_put(rq, name);
    }
    if (wf_cert_parse(rq->body, rq->len, &info, why, sizeof(why)) != WF_OK) {
        wf_api_reply_set(rq->reply, 400, "Invalid certificate.", why);
        return false;
    }
    rq->reply->cert_pem = malloc(rq->len > 0 ? rq->len : 1);
    if (rq->reply->cert_pem == NULL) {
        json_decref(info);
        return false; /* wf_api_handle() answers 500 */
    }
    memcpy(rq->reply->cert_pem, rq->body, rq->len);
    rq->reply->cert_len = rq->len;
    rq->reply->cert_info = info;
    rq->reply->cert_name = name;
    wf_api_reply_set(rq->reply, 200, "Certificate chain uploaded.", NULL);
    return true;
}

/* Returns whether the reply took name. */
static bool
api_cert_delete(api_req_t *rq, char *name, size_t n)
{
    if (wf_cert_is_used(rq->conf, name, n)) {
        wf_api_reply_set(rq->reply, 400,
                         "Certificate is used in the configuration.", NULL);
        return false;
    }
    if (wf_cert_store_info(name, n) == NULL) {
        wf_api_reply_set(rq->reply, 404, "Certificate doesn't exist.", NULL);
        return false;
    }
    rq->reply->cert_name = name;
    wf_api_reply_set(rq->reply, 200, "Certificate deleted.", NULL);
    return true;
}

/* Unit's nxt_controller_process_cert(): its order of checks and messages.
 * NAME is percent-decoded, as Unit's parser decodes the path. */
static void
api_certificates(api_req_t *rq)
{
    const char *slash = memchr(rq->sub.data + 1, '/', rq->sub.len - 1);
    size_t raw =
        slash != NULL ? (size_t)(slash - rq->sub.data - 1) : rq->sub.len - 1;
    wf_str_t path =
        slash != NULL ? wf_str_make(slash, rq->sub.len - 1 - raw) : wf_null_str;
    char *name = malloc(raw + 1);
    size_t n;

    if (name == NULL) {
        return; /* wf_api_handle() answers 500 */
    }
    n = wf_var_decode(name, rq->sub.data + 1, raw, false);
    name[n] = '\0';
    if (rq->op == WF_CONF_OP_GET) {
        api_cert_get(rq, name, n, path);
    } else if (n == 0 || path.len > 0 || !wf_cert_name_is_valid(name, n)) {
        wf_api_reply_set(rq->reply, 400, "Invalid certificate name.", NULL);
    } else if (rq->op == WF_CONF_OP_PUT) {
        if (api_cert_put(rq, name, n)) {
            return;
        }
    } else if (rq->op == WF_CONF_OP_DELETE) {
        if (api_cert_delete(rq, name, n)) {
            return;
        }
    } else {
        wf_api_reply_set(rq->reply, 405, API_INVALID_METHOD, NULL);
    }
    free(name);
}

static bool
api_has_prefix(wf_str_t s, const char *prefix)
{
    size_t n = strlen(prefix);

    return s.len >= n && memcmp(s.data, prefix, n) == 0;
}

/* "/control/certificates/NAME/renew": the ACME entry's next attempt now
 * (control/acme.h; a Wharf extension).  Returns false when s is not of
 * that shape. */
static bool
api_control_renew(api_req_t *rq, wf_str_t s)
{
    static const char certs[] = "/certificates/";
    static const char renew[] = "/renew";
    size_t head = sizeof(certs) - 1;
    size_t tail = sizeof(renew) - 1;
    char name[256];
    size_t n;

    if (!api_has_prefix(s, certs) || s.len <= head + tail
        || s.len - head - tail >= sizeof(name)
        || memcmp(s.data + s.len - tail, renew, tail) != 0) {
        return false;
    }
    n = wf_var_decode(name, s.data + head, s.len - head - tail, false);
    if (!wf_acme_renew(name, n)) {
        wf_api_reply_set(rq->reply, 404, API_NOT_FOUND, NULL);
        return true;
    }
    wf_api_reply_set(rq->reply, 200, "Renewal scheduled.", NULL);
    return true;
}

/* "/control/applications/NAME/restart" (NAME percent-decoded, as Unit's
 * parser decodes the path): the router restarts NAME, and the reply waits
 * for it.  Unit's order: the method, the path's shape, then the name. */
static void
api_control(api_req_t *rq)
{
    static const char apps[] = "/applications/";
    static const char restart[] = "/restart";
    wf_str_t s = rq->sub;
    size_t head = sizeof(apps) - 1;
    size_t tail = sizeof(restart) - 1;
    size_t n;
    char *name;

    if (rq->op != WF_CONF_OP_GET) {
        wf_api_reply_set(rq->reply, 405, API_NOT_ALLOWED, NULL);
        return;
    }
    if (api_control_renew(rq, s)) {
        return;
    }
    if (!api_has_prefix(s, apps) || s.len < head + tail
        || memcmp(s.data + s.len - tail, restart, tail) != 0) {
        wf_api_reply_set(rq->reply, 404, API_NOT_FOUND, NULL);
        return;
    }
    name = malloc(s.len - head - tail + 1);
    if (name == NULL) {
        return; /* wf_api_handle() answers 500 */
    }
    n = wf_var_decode(name, s.data + head, s.len - head - tail, false);
    name[n] = '\0';
    if (json_object_getn(json_object_get(rq->conf, "applications"), name, n)
        == NULL) {
        free(name);
        wf_api_reply_set(rq->reply, 404, API_NOT_FOUND, NULL);
        return;
    }
    wf_api_reply_set(rq->reply, 200, "Ok", NULL);
    rq->reply->restart = name;
}

/* ---- dispatch ---------------------------------------------------------- */

static const struct {
    const char *prefix;
    bool exact;    /* handles the prefix alone */
    bool subpaths; /* handles prefix + "/..." */
    void (*handler)(api_req_t *rq);
} api_routes[] = {
    {"/config", true, true, api_config},
    {"/status", true, true, api_status},
    {"/certificates", true, true, api_certificates},
    {"/control", false, true, api_control}, /* Unit: "/control/" only */
    {"/", true, false, api_root},
};

static const struct {
    wf_str_t name;
    wf_conf_op_t op;
} api_methods[] = {
    {wf_string("GET"), WF_CONF_OP_GET},
    {wf_string("PUT"), WF_CONF_OP_PUT},
    {wf_string("POST"), WF_CONF_OP_POST},
    {wf_string("DELETE"), WF_CONF_OP_DELETE},
};

static wf_conf_op_t
api_method(wf_str_t method)
{
    for (size_t i = 0; i < wf_nitems(api_methods); i++) {
        if (wf_str_eq(method, api_methods[i].name)) {
            return api_methods[i].op;
        }
    }
    return WF_CONF_NOPS;
}

/* The path of target: no query, and no trailing slash unless it is "/". */
static wf_str_t
api_path(wf_str_t target)
{
    const char *q =
        target.len > 0 ? memchr(target.data, '?', target.len) : NULL;
    wf_str_t path = target;

    if (q != NULL) {
        path.len = (size_t)(q - target.data);
    }
    if (path.len > 1 && path.data[path.len - 1] == '/') {
        path.len--;
    }
    return path;
}

/* Finds the route of path and sets rq->sub to the rest ("/" for none);
 * returns its index or wf_nitems(api_routes). */
static size_t
api_route(wf_str_t path, api_req_t *rq)
{
    for (size_t i = 0; i < wf_nitems(api_routes); i++) {
        size_t n = strlen(api_routes[i].prefix);

        if (!api_has_prefix(path, api_routes[i].prefix)) {
            continue;
        }
        if (path.len == n && api_routes[i].exact) {
            rq->sub = wf_string("/");
            return i;
        }
        if (path.len > n && api_routes[i].subpaths && path.data[n] == '/') {
            rq->sub = wf_str_make(path.data + n, path.len - n);
            return i;
        }
    }
    return wf_nitems(api_routes);
}

void
wf_api_handle(json_t *conf, json_t *status, wf_str_t method, wf_str_t target,
              const char *body, size_t len, wf_api_reply_t *reply)
{
    json_t *empty = conf == NULL ? json_object() : NULL;
    api_req_t rq = {
        .conf = conf != NULL ? conf : empty,
        .status = status,
        .op = api_method(method),
        .body = body,
        .len = len,
        .reply = reply,
    };
    size_t route = api_route(api_path(target), &rq);
    const char *q = memchr(target.data, '?', target.len);

    rq.prometheus = q != NULL
                    && memmem(q, target.len - (size_t)(q - target.data),
                              "format=prometheus", 17)
                           != NULL;

    memset(reply, 0, sizeof(*reply));
    if (rq.conf == NULL) {
        wf_api_reply_set(reply, 500, API_NOMEM, NULL);
    } else if (route == wf_nitems(api_routes)) {
        wf_api_reply_set(reply, 404, API_NOT_FOUND, NULL);
    } else {
        api_routes[route].handler(&rq);
    }
    if (reply->body == NULL) {
        wf_api_reply_fini(reply);
        wf_api_reply_set(reply, 500, API_NOMEM, NULL);
    }
    json_decref(empty);
}
