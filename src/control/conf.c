#include "control/conf.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "control/conf_app.h"
#include "control/conf_tls.h"
#include "core/common.h"
#include "core/log.h"
#include "http/access_log.h"
#include "http/app_desc.h"
#include "http/forwarded.h"
#include "http/mime.h"
#include "http/rhttp.h"
#include "http/rhttp_pub.h"
#include "http/route_pattern.h"
#include "http/upstream.h"
#include "http/upstream_dns.h"
#include "net/tls_client.h"

/* Validation and compilation are one walk over the tree: every object is
 * checked against a table of its members (conf_member_t), and each member's
 * handler compiles what it accepts into the snapshot.  Routes are created
 * before any step is compiled, so a "pass" may name a route declared later;
 * see wf_conf_compile() for the order. */

#define CONF_REQUIRED    0x1u /* missing: 'Required parameter "x" ...' */
#define CONF_UNSUPPORTED 0x2u /* Unit has it; Wharf not yet */
#define CONF_IF_NONEMPTY 0x4u /* with CONF_UNSUPPORTED: "" / {} / [] pass */

/* Bounds the recursion of "fallback" (Unit has no limit; a chain this long
 * has no use, and the stack stays small). */
#define CONF_MAX_FALLBACKS 32

typedef struct conf_ctx conf_ctx_t;

typedef int (*conf_handler)(conf_ctx_t *cx, const char *key, json_t *value,
                            const void *data);

typedef struct conf_member {
    const char *name;     /* NULL ends a table */
    unsigned types;       /* WF_JSON_* mask */
    conf_handler handler; /* NULL: the type check is all */
    const void *data;     /* the handler's argument */
    unsigned flags;       /* CONF_* */
} conf_member_t;

/* A numeric setting of settings.http: where it goes and its range. */
typedef struct conf_num {
    size_t offset; /* in wf_http_conf_t */
    unsigned size; /* bytes of the field: 4 or 8 */
    int64_t min;
    int64_t max;
    uint32_t scale; /* 1000 for seconds stored as milliseconds */
} conf_num_t;

/* An extension already mapped by this config's mime_types. */
typedef struct conf_ext {
    const char *ext;
    const char *type;
} conf_ext_t;

struct conf_ctx {
    wf_conf_t *conf;
    wf_arena_t *a;
    json_t *root;
    const json_t *modules; /* WF_MSG_MODULES to check types against; NULL:
                              no check (wf_conf_compile()) */
    wf_conf_error_t *err;
    json_t **route_json;          /* the steps array of conf->routes[i] */
    bool routes_is_array;         /* "routes" is the array form */
    const char **pass;            /* the "pass" of conf->listeners[i] */
    const char **lapp;            /* its "application" (Unit's older form) */
    wf_action_t *action;          /* the action being compiled */
    wf_upstream_t *upstream;      /* the upstream being compiled, or NULL */
    wf_upstream_server_t *server; /* its server being compiled, or NULL */
    json_t *step_match;           /* members of the step being compiled */
    json_t *step_action;
    unsigned depth;        /* "fallback" nesting of the current action */
    const char *mime_type; /* the type whose extensions are checked */
    conf_ext_t *exts;
    size_t nexts;
    wf_forwarded_t *fwd;        /* the listener's "forwarded" being compiled */
    wf_forwarded_t *fwds;       /* one per listener at most */
    size_t fwd_owner;           /* listener index + 1 of the last fwds entry */
    wf_access_log_spec_t alog;  /* "access_log" being compiled */
    struct conf_px_tls *px_tls; /* TLS to backends, built at the end */
    struct conf_px_tls *px_tls_cur; /* the "tls" object being checked */
};

static int conf_object(conf_ctx_t *cx, json_t *obj,
                       const conf_member_t *members);
static wf_action_t *conf_action(conf_ctx_t *cx, json_t *obj);

/* ---- errors ------------------------------------------------------------ */

static int conf_fail(conf_ctx_t *cx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
conf_fail(conf_ctx_t *cx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cx->err->detail, sizeof(cx->err->detail), fmt, ap);
    va_end(ap);
    return WF_ERROR;
}

static int
conf_nomem(conf_ctx_t *cx)
{
    return conf_fail(cx, "Out of memory.");
}

static bool
conf_is_empty(const json_t *v)
{
    return (json_is_string(v) && json_string_length(v) == 0)
           || (json_is_object(v) && json_object_size(v) == 0)
           || (json_is_array(v) && json_array_size(v) == 0);
}

static char *
conf_strdup(conf_ctx_t *cx, const json_t *s)
{
    return wf_arena_strndup(cx->a, json_string_value(s), json_string_length(s));
}

/* ---- generic object walk ----------------------------------------------- */

static const conf_member_t *
conf_member_find(const conf_member_t *members, const char *key)
{
    for (const conf_member_t *m = members; m->name != NULL; m++) {
        if (strcmp(m->name, key) == 0) {
            return m;
        }
    }
    return NULL;
}

static int
conf_member(conf_ctx_t *cx, const conf_member_t *m, const char *key,
            json_t *value)
{
    if (!wf_json_type_check(value, m->types, key, cx->err->detail,
                            sizeof(cx->err->detail))) {
        return WF_ERROR;
    }
    if ((m->flags & CONF_UNSUPPORTED) != 0) {
        if ((m->flags & CONF_IF_NONEMPTY) != 0 && conf_is_empty(value)) {
            return WF_OK;
        }
        return conf_fail(cx, "The \"%s\" option is not supported yet.", key);
    }
    return m->handler != NULL ? m->handler(cx, key, value, m->data) : WF_OK;
}

/* Checks obj's members against the table, calling each handler. */
static int
conf_object(conf_ctx_t *cx, json_t *obj, const conf_member_t *members)
{
    const char *key;
    json_t *value;

    json_object_foreach(obj, key, value)
    {
        const conf_member_t *m = conf_member_find(members, key);

        if (m == NULL) {
            return conf_fail(cx, "Unknown parameter \"%.200s\".", key);
        }
        if (conf_member(cx, m, key, value) != WF_OK) {
            return WF_ERROR;
        }
    }
    for (const conf_member_t *m = members; m->name != NULL; m++) {
        if ((m->flags & CONF_REQUIRED) != 0
            && json_object_get(obj, m->name) == NULL) {
            return conf_fail(cx, "Required parameter \"%s\" is missing.",
                             m->name);
        }
    }
    return WF_OK;
}

static int
conf_nested(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_unused(key);
    return conf_object(cx, value, data);
}

/* ---- settings ---------------------------------------------------------- */

static int
conf_number(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    const conf_num_t *num = data;
    json_int_t v = json_integer_value(value);
    char *field = (char *)&cx->conf->http + num->offset;

    if (v < num->min) {
        return num->min == 0
                   ? conf_fail(cx, "The \"%s\" number must not be negative.",
                               key)
                   : conf_fail(cx,
                               "The \"%s\" number must be equal to or "
                               "greater than %lld.",
                               key, (long long)num->min);
    }
    if (v > num->max) {
        return conf_fail(cx, "The \"%s\" number must not exceed %lld.", key,
                         (long long)num->max);
    }
    if (num->size == sizeof(uint32_t)) {
        uint32_t u = (uint32_t)v * num->scale;

        memcpy(field, &u, sizeof(u));
    } else {
        uint64_t u = (uint64_t)v * num->scale;

        memcpy(field, &u, sizeof(u));
    }
    return WF_OK;
}

static int
conf_bool(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    bool *field = (bool *)((char *)&cx->conf->http + *(const size_t *)data);

    wf_unused(key);
    *field = json_is_true(value);
    return WF_OK;
}

/* Unit refuses one extension mapped to two types in the same config. */
static int
conf_mime_ext(conf_ctx_t *cx, json_t *ext)
{
    wf_mime_table_t *mime = (wf_mime_table_t *)cx->conf->http.mime;
    const char *e = json_string_value(ext);

    if (!json_is_string(ext)) {
        return conf_fail(cx,
                         "The \"%.200s\" MIME type array must contain only "
                         "strings.",
                         cx->mime_type);
    }
    if (json_string_length(ext) == 0) {
        return conf_fail(cx,
                         "An empty file extension for the \"%.200s\" MIME "
                         "type.",
                         cx->mime_type);
    }
    for (size_t i = 0; i < cx->nexts; i++) {
        if (strcasecmp(cx->exts[i].ext, e) == 0) {
            return conf_fail(cx,
                             "The \"%.100s\" file extension has been declared "
                             "for \"%.100s\" and \"%.100s\" MIME types at the "
                             "same time.",
                             e, cx->exts[i].type, cx->mime_type);
        }
    }
    cx->exts[cx->nexts++] = (conf_ext_t){e, cx->mime_type};
    return wf_mime_table_add(mime, cx->a,
                             wf_str_make(cx->mime_type, strlen(cx->mime_type)),
                             wf_str_make(e, json_string_length(ext)))
                   == WF_OK
               ? WF_OK
               : conf_nomem(cx);
}

static size_t
conf_count_exts(json_t *types)
{
    const char *key;
    json_t *value;
    size_t n = 0;

    json_object_foreach(types, key, value)
    {
        n += json_is_array(value) ? json_array_size(value) : 1;
    }
    return n;
}

static int
conf_mime_types(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    const char *type;
    json_t *exts;

    wf_unused(key);
    wf_unused(data);
    cx->exts = wf_arena_alloc(cx->a, (conf_count_exts(value) + 1)
                                         * sizeof(conf_ext_t));
    if (cx->exts == NULL) {
        return conf_nomem(cx);
    }
    json_object_foreach(value, type, exts)
    {
        if (!wf_json_type_check(exts, WF_JSON_STRING | WF_JSON_ARRAY, type,
                                cx->err->detail, sizeof(cx->err->detail))) {
            return WF_ERROR;
        }
        cx->mime_type = type;
        for (size_t i = 0;
             i < (json_is_array(exts) ? json_array_size(exts) : 1); i++) {
            json_t *e = json_is_array(exts) ? json_array_get(exts, i) : exts;

            if (conf_mime_ext(cx, e) != WF_OK) {
                return WF_ERROR;
            }
        }
    }
    return WF_OK;
}

#define CONF_SECONDS(field)                                     \
    (&(const conf_num_t){offsetof(wf_http_conf_t, field), 4, 0, \
                         INT32_MAX / 1000, 1000})
#define CONF_SIZE(field, lo, hi)                          \
    (&(const conf_num_t){offsetof(wf_http_conf_t, field), \
                         sizeof(((wf_http_conf_t *)0)->field), lo, hi, 1})
#define CONF_OFFSET(field) (&(const size_t){offsetof(wf_http_conf_t, field)})

static const conf_member_t conf_static_members[] = {
    {"mime_types", WF_JSON_OBJECT, conf_mime_types, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

/* settings.http.websocket: the tunnel's timers.  Frames are the
 * module's, which holds max_frame_size at Unit's default (1 MiB). */
static const conf_member_t conf_websocket_members[] = {
    {"read_timeout", WF_JSON_INTEGER, conf_number,
     CONF_SECONDS(ws_read_timeout_ms), 0},
    {"keepalive_interval", WF_JSON_INTEGER, conf_number,
     CONF_SECONDS(ws_keepalive_ms), 0},
    {"max_frame_size", WF_JSON_INTEGER, NULL, NULL, CONF_UNSUPPORTED},
    {NULL, 0, NULL, NULL, 0},
};

/* settings.http.h2 (Wharf extensions), bounded by RFC 9113 6.5.2. */
static const conf_member_t conf_h2_members[] = {
    {"max_concurrent_streams", WF_JSON_INTEGER, conf_number,
     CONF_SIZE(h2_max_concurrent_streams, 1, 100000), 0},
    {"initial_window_size", WF_JSON_INTEGER, conf_number,
     CONF_SIZE(h2_initial_window_size, 1024, INT32_MAX), 0},
    {"max_frame_size", WF_JSON_INTEGER, conf_number,
     CONF_SIZE(h2_max_frame_size, 16384, 16777215), 0},
    {"header_table_size", WF_JSON_INTEGER, conf_number,
     CONF_SIZE(h2_header_table_size, 0, 65536), 0},
    {"max_header_list_size", WF_JSON_INTEGER, conf_number,
     CONF_SIZE(h2_max_header_list_size, 1024, INT32_MAX), 0},
    {NULL, 0, NULL, NULL, 0},
};

static const conf_member_t conf_http_members[] = {
    {"header_read_timeout", WF_JSON_INTEGER, conf_number,
     CONF_SECONDS(header_read_timeout_ms), 0},
    {"body_read_timeout", WF_JSON_INTEGER, conf_number,
     CONF_SECONDS(body_read_timeout_ms), 0},
    {"send_timeout", WF_JSON_INTEGER, conf_number,
     CONF_SECONDS(send_timeout_ms), 0},
    {"idle_timeout", WF_JSON_INTEGER, conf_number,
     CONF_SECONDS(idle_timeout_ms), 0},
    {"max_body_size", WF_JSON_INTEGER, conf_number,
     CONF_SIZE(max_body_size, 0, INT64_MAX), 0},
    {"body_buffer_size", WF_JSON_INTEGER, conf_number,
     CONF_SIZE(body_buffer_size, 1, INT32_MAX), 0},
    {"large_header_buffer_size", WF_JSON_INTEGER, conf_number,
     CONF_SIZE(large_header_buffer_size, 1, INT32_MAX), 0},
    {"large_header_buffers", WF_JSON_INTEGER, conf_number,
     CONF_SIZE(large_header_buffers, 1, INT32_MAX), 0},
    {"discard_unsafe_fields", WF_JSON_BOOLEAN, conf_bool,
     CONF_OFFSET(discard_unsafe_fields), 0},
    {"server_version", WF_JSON_BOOLEAN, conf_bool, CONF_OFFSET(server_version),
     0},
    {"static", WF_JSON_OBJECT, conf_nested, conf_static_members, 0},
    {"body_temp_path", WF_JSON_STRING, NULL, NULL, CONF_UNSUPPORTED},
    {"websocket", WF_JSON_OBJECT, conf_nested, conf_websocket_members, 0},
    {"h2", WF_JSON_OBJECT, conf_nested, conf_h2_members, 0},
    {"log_route", WF_JSON_BOOLEAN, conf_bool, CONF_OFFSET(log_route), 0},
    {"chunked_transform", WF_JSON_BOOLEAN, conf_bool,
     CONF_OFFSET(chunked_transform), 0},
    {"compression", WF_JSON_OBJECT, NULL, NULL, CONF_UNSUPPORTED},
    {"body_min_rate", WF_JSON_INTEGER, NULL, NULL, CONF_UNSUPPORTED},
    {"send_min_rate", WF_JSON_INTEGER, NULL, NULL, CONF_UNSUPPORTED},
    {NULL, 0, NULL, NULL, 0},
};

static const conf_member_t conf_settings_members[] = {
    {"http", WF_JSON_OBJECT, conf_nested, conf_http_members, 0},
    {"listen_threads", WF_JSON_INTEGER, NULL, NULL, CONF_UNSUPPORTED},
    {"js_module", WF_JSON_STRING | WF_JSON_ARRAY, NULL, NULL, CONF_UNSUPPORTED},
    {"telemetry", WF_JSON_OBJECT, NULL, NULL, CONF_UNSUPPORTED},
    {NULL, 0, NULL, NULL, 0},
};

static void
conf_http_defaults(wf_http_conf_t *http)
{
    http->header_read_timeout_ms = 30 * 1000;
    http->body_read_timeout_ms = 30 * 1000;
    http->send_timeout_ms = 30 * 1000;
    http->idle_timeout_ms = 180 * 1000;
    http->ws_read_timeout_ms = 60 * 1000;
    http->ws_keepalive_ms = 30 * 1000;
    http->max_body_size = 8 * 1024 * 1024;
    http->body_buffer_size = 16 * 1024;
    http->large_header_buffer_size = 8 * 1024;
    http->large_header_buffers = 4;
    http->discard_unsafe_fields = true;
    http->server_version = true;
    http->h2_max_concurrent_streams = 128;
    http->h2_initial_window_size = 65535;
    http->h2_max_frame_size = 16384;
    http->h2_header_table_size = 4096;
}

/* ---- listeners --------------------------------------------------------- */

static bool
conf_port_parse(const char *s, in_port_t *port)
{
    unsigned long v = 0;

    if (*s == '\0' || strlen(s) > 5) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        v = v * 10 + (unsigned long)(*s - '0');
    }
    *port = htons((uint16_t)v);
    return v >= 1 && v <= 65535;
}

/* "unix:/path" or Linux's abstract "unix:@name". */
static bool
conf_addr_unix(const char *path, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)ss;
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(sun->sun_path) || (path[0] == '@' && n == 1)) {
        return false;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@') {
        sun->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return true;
    }
    *len = (socklen_t)sizeof(*sun);
    return true;
}

static bool
conf_addr_inet6(char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    char *end = strstr(s, "]:");

    if (end == NULL) {
        return false;
    }
    *end = '\0';
    sin6->sin6_family = AF_INET6;
    *len = sizeof(*sin6);
    return inet_pton(AF_INET6, s + 1, &sin6->sin6_addr) == 1
           && conf_port_parse(end + 2, &sin6->sin6_port);
}

/* "ADDR:PORT" with ADDR an IPv4 address or "*" (every IPv4 address). */
static bool
conf_addr_inet(char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    char *colon = strrchr(s, ':');

    if (colon == NULL) {
        return false;
    }
    *colon = '\0';
    sin->sin_family = AF_INET;
    *len = sizeof(*sin);
    if (strcmp(s, "*") == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, s, &sin->sin_addr) != 1) {
        return false;
    }
    return conf_port_parse(colon + 1, &sin->sin_port);
}

bool
wf_conf_addr_parse(const char *name, struct sockaddr_storage *ss,
                   socklen_t *len)
{
    char buf[128];

    memset(ss, 0, sizeof(*ss));
    if (strncmp(name, "unix:", 5) == 0) {
        return conf_addr_unix(name + 5, ss, len);
    }
    if (strlen(name) >= sizeof(buf)) {
        return false;
    }
    strcpy(buf, name);
    return buf[0] == '[' ? conf_addr_inet6(buf, ss, len)
                         : conf_addr_inet(buf, ss, len);
}

static int
conf_listener_pass(conf_ctx_t *cx, const char *key, json_t *value,
                   const void *data)
{
    wf_unused(key);
    wf_unused(data);
    cx->pass[cx->conf->nlisteners] = conf_strdup(cx, value);
    return cx->pass[cx->conf->nlisteners] != NULL ? WF_OK : conf_nomem(cx);
}

/* "application": NAME, the form before "pass" (Unit 1.8); a "pass" beside
 * it wins, but the name must exist all the same, as in Unit. */
static int
conf_listener_app(conf_ctx_t *cx, const char *key, json_t *value,
                  const void *data)
{
    json_t *apps = json_object_get(cx->root, "applications");

    wf_unused(key);
    wf_unused(data);
    if (json_object_getn(apps, json_string_value(value),
                         json_string_length(value))
        == NULL) {
        return conf_fail(cx,
                         "Listening socket is assigned for a non existing "
                         "application \"%.200s\".",
                         json_string_value(value));
    }
    cx->lapp[cx->conf->nlisteners] = conf_strdup(cx, value);
    return cx->lapp[cx->conf->nlisteners] != NULL ? WF_OK : conf_nomem(cx);
}

/* ---- forwarded --------------------------------------------------------- */

static int
conf_fwd_source(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    wf_unused(key);
    wf_unused(data);
    cx->fwd->source = wf_addr_set_compile(cx->a, value, cx->err->detail,
                                          sizeof(cx->err->detail));
    return cx->fwd->source != NULL ? WF_OK : WF_ERROR;
}

/* "client_ip" and "protocol" of "forwarded", "header" of "client_ip". */
static int
conf_fwd_field(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    char *s = conf_strdup(cx, value);
    wf_str_t *field =
        strcmp(key, "protocol") == 0 ? &cx->fwd->protocol : &cx->fwd->client_ip;

    wf_unused(data);
    if (s == NULL) {
        return conf_nomem(cx);
    }
    *field = wf_str_make(s, json_string_length(value));
    return WF_OK;
}

static int
conf_fwd_recursive(conf_ctx_t *cx, const char *key, json_t *value,
                   const void *data)
{
    wf_unused(key);
    wf_unused(data);
    cx->fwd->recursive = json_is_true(value);
    return WF_OK;
}

static const conf_member_t conf_forwarded_members[] = {
    {"client_ip", WF_JSON_STRING, conf_fwd_field, NULL, 0},
    {"protocol", WF_JSON_STRING, conf_fwd_field, NULL, 0},
    {"source", WF_JSON_STRING | WF_JSON_ARRAY, conf_fwd_source, NULL,
     CONF_REQUIRED},
    {"recursive", WF_JSON_BOOLEAN, conf_fwd_recursive, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

/* The form before Unit 1.28. */
static const conf_member_t conf_client_ip_members[] = {
    {"header", WF_JSON_STRING, conf_fwd_field, NULL, CONF_REQUIRED},
    {"source", WF_JSON_STRING | WF_JSON_ARRAY, conf_fwd_source, NULL,
     CONF_REQUIRED},
    {"recursive", WF_JSON_BOOLEAN, conf_fwd_recursive, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

/* Keeps fwd for the listener being compiled: a second object for the same
 * listener replaces the first only when it is the modern form. */
static void
conf_fwd_store(conf_ctx_t *cx, const wf_forwarded_t *fwd, bool modern)
{
    wf_http_conf_t *http = &cx->conf->http;

    if (cx->fwd_owner == cx->conf->nlisteners + 1) {
        if (modern) {
            cx->fwds[http->nfwd - 1] = *fwd;
        }
        return;
    }
    cx->fwds[http->nfwd++] = *fwd;
    cx->fwd_owner = cx->conf->nlisteners + 1;
}

/* Compiles "forwarded" or "client_ip" of the listener being compiled; with
 * both, "forwarded" wins (the router reads it first, as Unit's does). */
static int
conf_listener_forwarded(conf_ctx_t *cx, const char *key, json_t *value,
                        const void *data)
{
    wf_conf_listener_t *l = &cx->conf->listeners[cx->conf->nlisteners];
    bool modern = strcmp(key, "forwarded") == 0;
    wf_forwarded_t fwd;

    wf_unused(data);
    memset(&fwd, 0, sizeof(fwd));
    cx->fwd = &fwd;
    if (conf_object(cx, value,
                    modern ? conf_forwarded_members : conf_client_ip_members)
        != WF_OK) {
        return WF_ERROR;
    }
    if (modern && json_object_get(value, "client_ip") == NULL
        && json_object_get(value, "protocol") == NULL) {
        return conf_fail(cx, "The \"forwarded\" object must have either "
                             "\"client_ip\" or \"protocol\" option set.");
    }
    memcpy(&fwd.addr, &l->addr, l->addrlen);
    conf_fwd_store(cx, &fwd, modern);
    return WF_OK;
}

/* "tls": control/conf_tls.c validates it and builds its contexts. */
static int
conf_listener_tls(conf_ctx_t *cx, const char *key, json_t *value,
                  const void *data)
{
    wf_conf_listener_t *l = &cx->conf->listeners[cx->conf->nlisteners];

    wf_unused(key);
    wf_unused(data);
    l->tls =
        wf_conf_tls_compile(value, cx->err->detail, sizeof(cx->err->detail));
    return l->tls != NULL ? WF_OK : WF_ERROR;
}

/* "h2c" (a Wharf extension): HTTP/2 with prior knowledge on a plain
 * listener (http/h2_conn.c); a TLS one negotiates h2 by ALPN. */
static int
conf_listener_h2c(conf_ctx_t *cx, const char *key, json_t *value,
                  const void *data)
{
    wf_conf_listener_t *l = &cx->conf->listeners[cx->conf->nlisteners];

    wf_unused(key);
    wf_unused(data);
    l->h2c = json_is_true(value);
    return WF_OK;
}

/* ---- reverse HTTP, the private side (issue 13) ------------------------- */

/* "HOST:PORT": an address, else a name resolved now (the compile runs on a
 * helper thread, never on an I/O thread). */
static int
conf_rhttp_connect(conf_ctx_t *cx, const char *key, json_t *value,
                   const void *data)
{
    wf_rhttp_conf_t *rc = cx->conf->listeners[cx->conf->nlisteners].reverse;
    const char *v = json_string_value(value);
    const char *colon = strrchr(v, ':');
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char host[256];

    wf_unused(key);
    wf_unused(data);
    rc->connect = conf_strdup(cx, value);
    if (rc->connect == NULL) {
        return conf_nomem(cx);
    }
    if (strncmp(v, "unix:", 5) != 0 && colon != NULL && v[0] != '['
        && strcmp(v, "*") != 0 && (size_t)(colon - v) < sizeof(host)) {
        memcpy(host, v, (size_t)(colon - v));
        host[colon - v] = '\0';
        if (inet_pton(AF_INET, host, &(struct in_addr){0}) != 1
            && getaddrinfo(host, colon + 1, &hints, &res) == 0) {
            memcpy(&rc->addr, res->ai_addr, res->ai_addrlen);
            rc->addrlen = res->ai_addrlen;
            freeaddrinfo(res);
            return WF_OK;
        }
    }
    if (strchr(v, '*') != NULL
        || !wf_conf_addr_parse(v, &rc->addr, &rc->addrlen)) {
        return conf_fail(cx, "The \"connect\" address \"%.200s\" is invalid.",
                         v);
    }
    return WF_OK;
}

static int
conf_rhttp_connections(conf_ctx_t *cx, const char *key, json_t *value,
                       const void *data)
{
    wf_rhttp_conf_t *rc = cx->conf->listeners[cx->conf->nlisteners].reverse;
    json_int_t n = json_integer_value(value);

    wf_unused(key);
    wf_unused(data);
    if (n < 1 || n > WF_RHTTP_CONNS_MAX) {
        return conf_fail(cx,
                         "The \"connections\" number must be between 1 and "
                         "%d.",
                         WF_RHTTP_CONNS_MAX);
    }
    rc->connections = (unsigned)n;
    return WF_OK;
}

static int
conf_rhttp_h2c(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_unused(key);
    wf_unused(data);
    cx->conf->listeners[cx->conf->nlisteners].reverse->h2c =
        json_is_true(value);
    return WF_OK;
}

static int
conf_rhttp_sni(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_rhttp_conf_t *rc = cx->conf->listeners[cx->conf->nlisteners].reverse;

    wf_unused(data);
    if (json_string_length(value) == 0) {
        return conf_fail(cx, "The \"%s\" value must be a non-empty string.",
                         key);
    }
    rc->sni = conf_strdup(cx, value);
    return rc->sni != NULL ? WF_OK : conf_nomem(cx);
}

static const conf_member_t conf_rhttp_tls_members[] = {
    {"certificate", WF_JSON_STRING, NULL, NULL, 0},
    {"ca", WF_JSON_STRING, NULL, NULL, 0},
    {"ca_file", WF_JSON_STRING, NULL, NULL, 0},
    {"verify", WF_JSON_BOOLEAN, NULL, NULL, 0},
    {"sni", WF_JSON_STRING, conf_rhttp_sni, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

/* "tls": the client side's context (control/conf_tls.c), ALPN h2. */
static int
conf_rhttp_tls(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_rhttp_conf_t *rc = cx->conf->listeners[cx->conf->nlisteners].reverse;
    char why[256];

    wf_unused(key);
    wf_unused(data);
    if (conf_object(cx, value, conf_rhttp_tls_members) != WF_OK) {
        return WF_ERROR;
    }
    rc->tls = wf_conf_tls_cli_compile(value, why, sizeof(why));
    if (rc->tls == NULL) {
        return conf_fail(cx, "The reverse listener's \"tls\": %s.", why);
    }
    return WF_OK;
}

static const conf_member_t conf_rhttp_members[] = {
    {"connect", WF_JSON_STRING, conf_rhttp_connect, NULL, CONF_REQUIRED},
    {"connections", WF_JSON_INTEGER, conf_rhttp_connections, NULL, 0},
    {"tls", WF_JSON_OBJECT, conf_rhttp_tls, NULL, 0},
    {"h2c", WF_JSON_BOOLEAN, conf_rhttp_h2c, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

/* ---- reverse HTTP, the public side (issue 13) -------------------------- */

static int conf_tpl_str(conf_ctx_t *cx, const char *key, const char *s,
                        size_t len, wf_tpl_t **out);

static int
conf_attach_upstream(conf_ctx_t *cx, const char *key, json_t *value,
                     const void *data)
{
    wf_rhttp_attach_t *a = cx->conf->listeners[cx->conf->nlisteners].attach;
    json_t *u = json_object_get(json_object_get(cx->root, "upstreams"),
                                json_string_value(value));

    wf_unused(key);
    wf_unused(data);
    if (json_object_get(u, "reverse") == NULL) {
        return conf_fail(cx,
                         "The listener's \"reverse\" names \"%.200s\", "
                         "which is not an upstream with \"reverse\".",
                         json_string_value(value));
    }
    a->upstream = conf_strdup(cx, value);
    return a->upstream != NULL ? WF_OK : conf_nomem(cx);
}

static int
conf_attach_name(conf_ctx_t *cx, const char *key, json_t *value,
                 const void *data)
{
    wf_rhttp_attach_t *a = cx->conf->listeners[cx->conf->nlisteners].attach;

    wf_unused(data);
    return conf_tpl_str(cx, key, json_string_value(value),
                        json_string_length(value), (wf_tpl_t **)&a->name);
}

static int
conf_attach_insecure(conf_ctx_t *cx, const char *key, json_t *value,
                     const void *data)
{
    wf_unused(key);
    wf_unused(data);
    cx->conf->listeners[cx->conf->nlisteners].attach->insecure =
        json_is_true(value);
    return WF_OK;
}

/* "max_per_name" and "max_total". */
static int
conf_attach_max(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    wf_rhttp_attach_t *a = cx->conf->listeners[cx->conf->nlisteners].attach;
    json_int_t n = json_integer_value(value);

    wf_unused(data);
    if (n < 1 || n > 1000000) {
        return conf_fail(cx,
                         "The \"%s\" number must be between 1 and "
                         "1000000.",
                         key);
    }
    if (strcmp(key, "max_total") == 0) {
        a->max_total = (unsigned)n;
    } else {
        a->max_per_name = (unsigned)n;
    }
    return WF_OK;
}

static const conf_member_t conf_attach_members[] = {
    {"upstream", WF_JSON_STRING, conf_attach_upstream, NULL, CONF_REQUIRED},
    {"name", WF_JSON_STRING, conf_attach_name, NULL, 0},
    {"insecure", WF_JSON_BOOLEAN, conf_attach_insecure, NULL, 0},
    {"max_per_name", WF_JSON_INTEGER, conf_attach_max, NULL, 0},
    {"max_total", WF_JSON_INTEGER, conf_attach_max, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

/* "reverse" of a socket listener: its h2 connections become tunnels of
 * an upstream (http/rhttp_pub.h).  Client certificates are required
 * unless "insecure"; a plain listener then takes the h2c preface. */
static int
conf_listener_attach(conf_ctx_t *cx, wf_conf_listener_t *l, json_t *value)
{
    wf_rhttp_attach_t *a = wf_arena_calloc(cx->a, sizeof(*a));
    json_t *tls = json_object_get(
        json_object_get(json_object_get(cx->root, "listeners"), l->name),
        "tls");

    if (a == NULL) {
        return conf_nomem(cx);
    }
    l->attach = a;
    a->max_per_name = 16;
    a->max_total = 1024;
    if (conf_object(cx, value, conf_attach_members) != WF_OK) {
        return WF_ERROR;
    }
    if (a->name == NULL
        && conf_tpl_str(cx, "name", "$tls_client_cn", 14, (wf_tpl_t **)&a->name)
               != WF_OK) {
        return WF_ERROR;
    }
    if (!a->insecure && json_object_get(tls, "client_certificate") == NULL) {
        return conf_fail(cx,
                         "The listener \"%.200s\" attaches reverse tunnels: "
                         "it needs \"tls\" with \"client_certificate\" "
                         "(or \"insecure\": true).",
                         l->name);
    }
    if (tls == NULL) {
        l->h2c = true; /* the private side's client preface */
    }
    return WF_OK;
}

/* "reverse" of an "rhttp@NAME" listener: whom to dial, how many; of a
 * socket listener: the tunnels it attaches. */
static int
conf_listener_reverse(conf_ctx_t *cx, const char *key, json_t *value,
                      const void *data)
{
    wf_conf_listener_t *l = &cx->conf->listeners[cx->conf->nlisteners];
    wf_rhttp_conf_t *rc;

    wf_unused(key);
    wf_unused(data);
    if (strncmp(l->name, WF_RHTTP_PREFIX, WF_RHTTP_PREFIX_LEN) != 0) {
        return conf_listener_attach(cx, l, value);
    }
    rc = wf_arena_calloc(cx->a, sizeof(*rc));
    if (rc == NULL) {
        return conf_nomem(cx);
    }
    l->reverse = rc;
    rc->name = l->name + WF_RHTTP_PREFIX_LEN;
    rc->connections = 1;
    rc->json = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
    if (rc->json == NULL) {
        return conf_nomem(cx);
    }
    if (conf_object(cx, value, conf_rhttp_members) != WF_OK) {
        return WF_ERROR;
    }
    if (rc->tls != NULL && rc->h2c) {
        return conf_fail(cx,
                         "The reverse listener \"%.200s\" has both "
                         "\"tls\" and \"h2c\".",
                         l->name);
    }
    if (rc->tls == NULL && !rc->h2c) {
        return conf_fail(cx,
                         "The reverse listener \"%.200s\" needs \"tls\" "
                         "(or \"h2c\": true for plain HTTP/2).",
                         l->name);
    }
    return WF_OK;
}

/* An "rhttp@NAME" listener has no socket: its "reverse" says whom to
 * dial. */
static int
conf_listener_rhttp(conf_ctx_t *cx, const char *name, json_t *value)
{
    const char *n = name + WF_RHTTP_PREFIX_LEN;

    if (*n == '\0' || strlen(n) > 128) {
        return conf_fail(cx, "The listener name \"%.200s\" is invalid.", name);
    }
    if (!json_is_object(value) || json_object_get(value, "reverse") == NULL) {
        return conf_fail(cx,
                         "The reverse listener \"%.200s\" must have a "
                         "\"reverse\" object.",
                         name);
    }
    if (json_object_get(value, "tls") != NULL
        || json_object_get(value, "h2c") != NULL) {
        return conf_fail(cx,
                         "The reverse listener \"%.200s\" takes \"tls\" and "
                         "\"h2c\" inside \"reverse\".",
                         name);
    }
    return WF_OK;
}

static const conf_member_t conf_listener_members[] = {
    {"pass", WF_JSON_STRING, conf_listener_pass, NULL, 0},
    {"application", WF_JSON_STRING, conf_listener_app, NULL, 0},
    {"tls", WF_JSON_OBJECT, conf_listener_tls, NULL, 0},
    {"forwarded", WF_JSON_OBJECT, conf_listener_forwarded, NULL, 0},
    {"client_ip", WF_JSON_OBJECT, conf_listener_forwarded, NULL, 0},
    {"h2c", WF_JSON_BOOLEAN, conf_listener_h2c, NULL, 0},
    {"reverse", WF_JSON_OBJECT, conf_listener_reverse, NULL, 0},
    {"backlog", WF_JSON_INTEGER, NULL, NULL, CONF_UNSUPPORTED},
    {NULL, 0, NULL, NULL, 0},
};

static int
conf_listener(conf_ctx_t *cx, const char *name, json_t *value)
{
    wf_conf_listener_t *l = &cx->conf->listeners[cx->conf->nlisteners];

    if (strncmp(name, WF_RHTTP_PREFIX, WF_RHTTP_PREFIX_LEN) == 0) {
        if (conf_listener_rhttp(cx, name, value) != WF_OK) {
            return WF_ERROR;
        }
    } else if (!wf_conf_addr_parse(name, &l->addr, &l->addrlen)) {
        return conf_fail(cx, "The listener address \"%.200s\" is invalid.",
                         name);
    }
    if (!wf_json_type_check(value, WF_JSON_OBJECT, name, cx->err->detail,
                            sizeof(cx->err->detail))) {
        return WF_ERROR;
    }
    if (json_object_get(value, "pass") == NULL
        && json_object_get(value, "application") == NULL) {
        return conf_fail(cx,
                         "The listener \"%.200s\" must have either \"pass\" "
                         "or \"application\" option set.",
                         name);
    }
    l->name = wf_arena_strndup(cx->a, name, strlen(name));
    if (l->name == NULL) {
        return conf_nomem(cx);
    }
    if (conf_object(cx, value, conf_listener_members) != WF_OK) {
        return WF_ERROR;
    }
    cx->conf->nlisteners++;
    return WF_OK;
}

static int
conf_listeners(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    size_t n = json_object_size(value) + 1;
    const char *name;
    json_t *l;

    wf_unused(key);
    wf_unused(data);
    cx->conf->listeners =
        wf_arena_calloc(cx->a, n * sizeof(wf_conf_listener_t));
    cx->pass = wf_arena_calloc(cx->a, n * sizeof(const char *));
    cx->lapp = wf_arena_calloc(cx->a, n * sizeof(const char *));
    cx->fwds = wf_arena_calloc(cx->a, n * sizeof(wf_forwarded_t));
    if (cx->conf->listeners == NULL || cx->pass == NULL || cx->lapp == NULL
        || cx->fwds == NULL) {
        return conf_nomem(cx);
    }
    cx->conf->http.fwd = cx->fwds;
    json_object_foreach(value, name, l)
    {
        if (conf_listener(cx, name, l) != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

/* ---- passes ------------------------------------------------------------ */

static const wf_route_t *
conf_route_lookup(conf_ctx_t *cx, wf_str_t name, bool array)
{
    if (array != cx->routes_is_array || (!array && name.len == 0)
        || (name.len > 0 && memchr(name.data, '\0', name.len) != NULL)) {
        return NULL;
    }
    /* NUL-ended by the split; "routes" alone names the array, route "" */
    return wf_conf_route(cx->conf, name.len > 0 ? name.data : "");
}

static int conf_tpl_str(conf_ctx_t *cx, const char *key, const char *s,
                        size_t len, wf_tpl_t **out);
static bool conf_has_var(const char *s);

/* A "pass" with variables: compiled, and resolved per request against
 * the snapshot's routes and applications (an unknown one then answers 404,
 * as Unit). */
static int
conf_pass_var(conf_ctx_t *cx, const char *pass, wf_action_t *act)
{
    wf_tpl_t *t;

    if (strchr(pass, '`') != NULL) {
        return conf_fail(cx,
                         "Template literals (\"%.200s\") are not "
                         "supported yet.",
                         pass);
    }
    if (conf_tpl_str(cx, "pass", pass, strlen(pass), &t) != WF_OK) {
        return WF_ERROR;
    }
    act->type = WF_ACTION_PASS;
    act->pass = t;
    act->routes = cx->conf->routes;
    act->nroutes = cx->conf->nroutes;
    act->routes_is_array = cx->routes_is_array;
    act->apps = cx->conf->apps;
    act->napps = cx->conf->napps;
    act->upstreams = cx->conf->upstreams;
    act->nupstreams = cx->conf->nupstreams;
    return WF_OK;
}

/* "applications/NAME[/TARGET]": an application action.  Without TARGET an
 * application with targets runs its first one, as in Unit. */
static bool
conf_pass_app(conf_ctx_t *cx, const wf_str_t seg[3], wf_action_t *act)
{
    const wf_app_desc_t *app =
        wf_app_desc_find(cx->conf->apps, cx->conf->napps, seg[1]);
    int target =
        app != NULL && seg[2].len > 0 ? wf_app_desc_target(app, seg[2]) : 0;

    if (app == NULL || target < 0) {
        return false;
    }
    act->type = WF_ACTION_APP;
    act->app = app;
    act->app_target = (unsigned)target;
    return true;
}

/* Resolves a fixed "pass" value into act: a route (WF_ACTION_PASS), an
 * application (WF_ACTION_APP) or an upstream (WF_ACTION_PROXY). */
static int
conf_pass_resolve(conf_ctx_t *cx, const char *pass, wf_action_t *act)
{
    size_t len = strlen(pass);
    char *buf = wf_arena_alloc(cx->a, len + 1);
    wf_str_t seg[3];

    if (buf == NULL) {
        return conf_nomem(cx);
    }
    if (wf_app_desc_pass_split(wf_str_make(pass, len), buf, len + 1, seg)
        != WF_OK) {
        return conf_fail(cx, "Request \"pass\" value \"%.200s\" is invalid.",
                         pass);
    }
    if (wf_str_eq(seg[0], wf_string("routes")) && seg[2].len == 0) {
        act->type = WF_ACTION_PASS;
        act->route = conf_route_lookup(cx, seg[1], seg[1].len == 0);
        if (act->route != NULL) {
            return WF_OK;
        }
    } else if (wf_str_eq(seg[0], wf_string("applications")) && seg[1].len > 0) {
        if (conf_pass_app(cx, seg, act)) {
            return WF_OK;
        }
    } else if (wf_str_eq(seg[0], wf_string("upstreams")) && seg[2].len == 0) {
        act->upstream =
            wf_upstream_find(cx->conf->upstreams, cx->conf->nupstreams, seg[1]);
        if (act->upstream != NULL) {
            act->type = WF_ACTION_PROXY;
            return WF_OK;
        }
    }
    return conf_fail(
        cx, "Request \"pass\" points to invalid location \"%.200s\".", pass);
}

/* Compiles a "pass" value into act, whatever it reaches. */
static int
conf_pass_compile(conf_ctx_t *cx, const char *pass, wf_action_t *act)
{
    if (conf_has_var(pass)) {
        return conf_pass_var(cx, pass, act);
    }
    return conf_pass_resolve(cx, pass, act);
}

/* ---- actions ----------------------------------------------------------- */

static int
conf_tpl_str(conf_ctx_t *cx, const char *key, const char *s, size_t len,
             wf_tpl_t **out)
{
    char msg[256];

    *out = wf_tpl_compile(cx->a, s, len, msg, sizeof(msg));
    if (*out == NULL) {
        return conf_fail(cx, "%s in the \"%s\" value.", msg, key);
    }
    return WF_OK;
}

static int
conf_tpl(conf_ctx_t *cx, const char *key, json_t *s, wf_tpl_t **out)
{
    return conf_tpl_str(cx, key, json_string_value(s), json_string_length(s),
                        out);
}

static bool
conf_has_var(const char *s)
{
    return strchr(s, '$') != NULL || strchr(s, '`') != NULL;
}

static int
conf_share(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    size_t n = json_is_array(value) ? json_array_size(value) : 1;
    wf_action_t *act = cx->action;

    wf_unused(data);
    if (n == 0) {
        return conf_fail(cx, "The \"share\" array must contain at least one "
                             "element.");
    }
    act->shares = wf_arena_calloc(cx->a, n * sizeof(wf_tpl_t *));
    if (act->shares == NULL) {
        return conf_nomem(cx);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(value) ? json_array_get(value, i) : value;

        if (!json_is_string(s)) {
            return conf_fail(cx, "The \"share\" array must contain only "
                                 "string values.");
        }
        if (conf_tpl(cx, key, s, &act->shares[i]) != WF_OK) {
            return WF_ERROR;
        }
    }
    act->nshares = n;
    return WF_OK;
}

static int
conf_index(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    char *s = conf_strdup(cx, value);

    wf_unused(key);
    wf_unused(data);
    if (s == NULL) {
        return conf_nomem(cx);
    }
    cx->action->index = wf_str_make(s, json_string_length(value));
    return WF_OK;
}

static int
conf_types(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_unused(key);
    wf_unused(data);
    cx->action->types = wf_pattern_set_compile(
        cx->a, value, false, cx->err->detail, sizeof(cx->err->detail));
    return cx->action->types != NULL ? WF_OK : WF_ERROR;
}

static int
conf_fallback(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_action_t *act = cx->action;

    wf_unused(key);
    wf_unused(data);
    if (cx->depth == CONF_MAX_FALLBACKS) {
        return conf_fail(cx,
                         "The \"fallback\" actions are nested more than "
                         "%d deep.",
                         CONF_MAX_FALLBACKS);
    }
    cx->depth++;
    act->fallback = conf_action(cx, value);
    cx->depth--;
    cx->action = act;
    return act->fallback != NULL ? WF_OK : WF_ERROR;
}

static int
conf_return(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    json_int_t status = json_integer_value(value);

    wf_unused(key);
    wf_unused(data);
    if (status < 0 || status > 999) {
        return conf_fail(cx, "The \"return\" value is out of allowed HTTP "
                             "status code range 0-999.");
    }
    cx->action->status = (unsigned)status;
    return WF_OK;
}

static int
conf_location(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_tpl_t *t;

    wf_unused(data);
    if (conf_tpl(cx, key, value, &t) != WF_OK) {
        return WF_ERROR;
    }
    cx->action->location = t;
    return WF_OK;
}

static int
conf_action_pass(conf_ctx_t *cx, const char *key, json_t *value,
                 const void *data)
{
    const char *pass = json_string_value(value);

    wf_unused(key);
    wf_unused(data);
    return conf_pass_compile(cx, pass, cx->action);
}

static int
conf_rewrite(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_tpl_t *t;

    wf_unused(data);
    if (conf_tpl(cx, key, value, &t) != WF_OK) {
        return WF_ERROR;
    }
    cx->action->rewrite = t;
    return WF_OK;
}

static int
conf_chroot(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_tpl_t *t;

    wf_unused(data);
    if (conf_tpl(cx, key, value, &t) != WF_OK) {
        return WF_ERROR;
    }
    cx->action->chroot = t;
    return WF_OK;
}

static int
conf_share_flag(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    wf_unused(data);
    if (strcmp(key, "follow_symlinks") == 0) {
        cx->action->follow_symlinks = json_is_true(value);
    } else {
        cx->action->traverse_mounts = json_is_true(value);
    }
    return WF_OK;
}

/* Fields Wharf writes itself that "response_headers" may replace or
 * delete, and those it must leave alone (0: framing and identity). */
static const struct {
    const char *name;
    unsigned bit;
} conf_resp_builtins[] = {
    {"Content-Type", WF_RESP_F_CONTENT_TYPE},
    {"Last-Modified", WF_RESP_F_LAST_MODIFIED},
    {"ETag", WF_RESP_F_ETAG},
    {"Accept-Ranges", WF_RESP_F_ACCEPT_RANGES},
    {"Content-Range", WF_RESP_F_CONTENT_RANGE},
    {"Location", WF_RESP_F_LOCATION},
    {"Date", 0},
    {"Server", 0},
    {"Connection", 0},
    {"Transfer-Encoding", 0},
};

/* Returns the row of conf_resp_builtins for name, or -1. */
static int
conf_resp_builtin(const char *name)
{
    for (size_t i = 0; i < wf_nitems(conf_resp_builtins); i++) {
        if (strcasecmp(conf_resp_builtins[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* One member of "response_headers", with Unit's checks. */
static int
conf_resp_field(conf_ctx_t *cx, const char *name, json_t *value,
                wf_resp_field_t *f)
{
    wf_tpl_t *t = NULL;

    if (name[0] == '\0') {
        return conf_fail(cx, "The response header name must not be empty.");
    }
    if (strcasecmp(name, "Content-Length") == 0) {
        return conf_fail(cx, "The \"Content-Length\" response header value "
                             "is not supported");
    }
    if (!json_is_string(value) && !json_is_null(value)) {
        return conf_fail(cx,
                         "The \"%.200s\" response header value must either "
                         "be a string or a null",
                         name);
    }
    if (json_is_string(value) && conf_tpl(cx, name, value, &t) != WF_OK) {
        return WF_ERROR;
    }
    f->name =
        wf_str_make(wf_arena_strndup(cx->a, name, strlen(name)), strlen(name));
    f->value = t;
    return f->name.data != NULL ? WF_OK : conf_nomem(cx);
}

static int
conf_resp_headers(conf_ctx_t *cx, const char *key, json_t *value,
                  const void *data)
{
    wf_action_t *act = cx->action;
    wf_resp_field_t *fields;
    const char *name;
    json_t *v;
    size_t n = 0;

    wf_unused(key);
    wf_unused(data);
    fields =
        wf_arena_calloc(cx->a, (json_object_size(value) + 1) * sizeof(*fields));
    if (fields == NULL) {
        return conf_nomem(cx);
    }
    json_object_foreach(value, name, v)
    {
        int row = conf_resp_builtin(name);

        if (conf_resp_field(cx, name, v, &fields[n]) != WF_OK) {
            return WF_ERROR;
        }
        if (row >= 0 && conf_resp_builtins[row].bit == 0) {
            continue; /* never changed; see docs/compatibility.md */
        }
        act->resp_builtin |= row >= 0 ? conf_resp_builtins[row].bit : 0;
        n++;
    }
    act->resp_fields = fields;
    act->nresp_fields = n;
    return WF_OK;
}

#define CONF_ACTION_COMMON                                                \
    {"rewrite", WF_JSON_STRING, conf_rewrite, NULL, 0},                   \
        {"response_headers", WF_JSON_OBJECT, conf_resp_headers, NULL, 0}, \
    {                                                                     \
        NULL, 0, NULL, NULL, 0                                            \
    }

static const conf_member_t conf_share_members[] = {
    {"share", WF_JSON_STRING | WF_JSON_ARRAY, conf_share, NULL, 0},
    {"index", WF_JSON_STRING, conf_index, NULL, 0},
    {"types", WF_JSON_STRING | WF_JSON_ARRAY, conf_types, NULL, 0},
    {"fallback", WF_JSON_OBJECT, conf_fallback, NULL, 0},
    {"chroot", WF_JSON_STRING, conf_chroot, NULL, 0},
    {"follow_symlinks", WF_JSON_BOOLEAN, conf_share_flag, NULL, 0},
    {"traverse_mounts", WF_JSON_BOOLEAN, conf_share_flag, NULL, 0},
    CONF_ACTION_COMMON,
};

static const conf_member_t conf_return_members[] = {
    {"return", WF_JSON_INTEGER, conf_return, NULL, 0},
    {"location", WF_JSON_STRING, conf_location, NULL, 0},
    CONF_ACTION_COMMON,
};

static const conf_member_t conf_pass_members[] = {
    {"pass", WF_JSON_STRING, conf_action_pass, NULL, 0},
    CONF_ACTION_COMMON,
};

/* Is s "HOSTNAME:PORT" (Wharf's: resolved when the router compiles the
 * snapshot, http/upstream_dns.h)? */
static bool
conf_is_host(const char *s)
{
    size_t n;
    uint16_t port;

    return wf_upstream_dns_parse(s, &n, &port) == WF_OK;
}

/* s as an address into srv; false (and no address: addrlen 0) when it
 * is none. */
static bool
conf_server_addr(const char *s, wf_upstream_server_t *srv)
{
    if (wf_conf_addr_parse(s, &srv->addr, &srv->addrlen)) {
        return true;
    }
    srv->addrlen = 0;
    return false;
}

/* The upstream the proxy options being compiled go into: the named
 * upstream being compiled, else the proxy action's own one (created by
 * whichever of its members comes first). */
static wf_upstream_t *
conf_proxy_upstream(conf_ctx_t *cx)
{
    wf_upstream_t *u;

    if (cx->upstream != NULL) {
        return cx->upstream;
    }
    if (cx->action->upstream == NULL) {
        u = wf_arena_calloc(cx->a, sizeof(*u));
        if (u == NULL) {
            return NULL;
        }
        wf_upstream_init(u);
        cx->action->upstream = u;
    }
    return cx->action->upstream;
}

static struct conf_px_tls *conf_px_tls_of(conf_ctx_t *cx, wf_upstream_t *u);

/* The schemes of "proxy": Unit's http://, and Wharf's https:// (TLS),
 * h2c:// (HTTP/2 with prior knowledge) and h2:// (HTTP/2 over TLS, ALPN
 * h2; docs/internals/proxy.md, "HTTP/2 to backends"). */
static const struct {
    wf_str_t prefix;
    bool tls;
    bool h2;
} conf_proxy_schemes[] = {
    {wf_string("http://"), false, false},
    {wf_string("https://"), true, false},
    {wf_string("h2c://"), false, true},
    {wf_string("h2://"), true, true},
};

/* The index of s's scheme in conf_proxy_schemes, or -1. */
static int
conf_proxy_scheme(const char *s)
{
    for (size_t i = 0; i < wf_nitems(conf_proxy_schemes); i++) {
        wf_str_t p = conf_proxy_schemes[i].prefix;

        if (strncmp(s, p.data, p.len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* "proxy": "http://ADDR", ADDR as a listener's ("IP:PORT", "[IPv6]:PORT",
 * "unix:PATH"): an upstream of its own with one server. */
static int
conf_proxy(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    const char *s = json_string_value(value);
    int k = conf_proxy_scheme(s);
    bool http = k >= 0;
    bool https = http && conf_proxy_schemes[k].tls;
    size_t skip = http ? conf_proxy_schemes[k].prefix.len : 0;
    wf_upstream_t *u = conf_proxy_upstream(cx);
    wf_upstream_server_t *srv = wf_arena_calloc(cx->a, sizeof(*srv));

    wf_unused(key);
    wf_unused(data);
    if (u == NULL || srv == NULL) {
        return conf_nomem(cx);
    }
    if (!http || strlen(s) != json_string_length(value)
        || (!conf_server_addr(s + skip, srv) && !conf_is_host(s + skip))) {
        return conf_fail(cx, "The \"proxy\" address is invalid \"%.200s\"",
                         http ? s + skip : s);
    }
    if (https && conf_px_tls_of(cx, u) == NULL) {
        return conf_nomem(cx);
    }
    u->h2 |= conf_proxy_schemes[k].h2;
    srv->name = conf_strdup(cx, value);
    if (srv->name == NULL) {
        return conf_nomem(cx);
    }
    u->url = srv->name; /* its name in /status */
    srv->name += skip;
    srv->host = srv->addrlen == 0 ? srv->name : NULL;
    srv->wconf = 1.0;
    srv->weight = srv->effective = 1;
    u->servers = srv;
    u->nservers = 1;
    return WF_OK;
}

/* A timeout of Wharf's proxy options: seconds (a fraction is allowed),
 * more than 0, stored in ms at data's offset in wf_upstream_t. */
static int
conf_proxy_timeout(conf_ctx_t *cx, const char *key, json_t *value,
                   const void *data)
{
    double v = json_number_value(value);
    wf_upstream_t *u = conf_proxy_upstream(cx);

    if (u == NULL) {
        return conf_nomem(cx);
    }
    if (!(v * 1000 >= 1) || v > INT32_MAX / 1000) {
        return conf_fail(cx,
                         "The \"%s\" number must be greater than 0 and at "
                         "most %d.",
                         key, INT32_MAX / 1000);
    }
    *(uint32_t *)((char *)u + *(const size_t *)data) = (uint32_t)(v * 1000);
    return WF_OK;
}

/* Wharf's "protocol": "http/1.1" (the default) or "h2" (HTTP/2 to the
 * servers: h2c, or over TLS with ALPN h2 when "tls" is set). */
static int
conf_proxy_protocol(conf_ctx_t *cx, const char *key, json_t *value,
                    const void *data)
{
    static const struct {
        const char *name;
        bool h2;
    } protos[] = {{"http/1.1", false}, {"h2", true}};
    const char *s = json_string_value(value);
    wf_upstream_t *u = conf_proxy_upstream(cx);

    wf_unused(data);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    for (size_t i = 0; i < wf_nitems(protos); i++) {
        if (strcmp(s, protos[i].name) == 0) {
            u->h2 = protos[i].h2;
            return WF_OK;
        }
    }
    return conf_fail(cx, "The \"%s\" value must be \"http/1.1\" or \"h2\".",
                     key);
}

static int
conf_proxy_flag(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);

    wf_unused(key);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    *(bool *)((char *)u + *(const size_t *)data) = json_is_true(value);
    return WF_OK;
}

static int
conf_proxy_trusted(conf_ctx_t *cx, const char *key, json_t *value,
                   const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);

    wf_unused(key);
    wf_unused(data);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    u->trusted = wf_addr_set_compile(cx->a, value, cx->err->detail,
                                     sizeof(cx->err->detail));
    return u->trusted != NULL ? WF_OK : WF_ERROR;
}

static int
conf_proxy_host(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);
    wf_tpl_t *t;

    wf_unused(data);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    if (json_string_length(value) == 0) {
        return conf_fail(cx, "The \"host\" value must not be empty.");
    }
    if (conf_tpl_str(cx, key, json_string_value(value),
                     json_string_length(value), &t)
        != WF_OK) {
        return WF_ERROR;
    }
    u->host = t;
    return WF_OK;
}

static int
conf_proxy_idle(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    json_int_t v = json_integer_value(value);
    wf_upstream_t *u = conf_proxy_upstream(cx);

    wf_unused(data);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    if (v < 0 || v > WF_UPSTREAM_IDLE_MAX) {
        return conf_fail(cx, "The \"%s\" number must be between 0 and %d.", key,
                         WF_UPSTREAM_IDLE_MAX);
    }
    u->idle_max = (unsigned)v;
    return WF_OK;
}

/* ---- TLS to backends (issue 11): "https://", and "tls" in proxy_settings
 * or an upstream's settings.  The objects are checked as they come and
 * the contexts built once the whole config compiled (conf_px_tls_build()),
 * so that the order of "proxy" and "proxy_settings" does not matter. */

typedef struct conf_px_tls {
    wf_upstream_t *u;
    json_t *obj; /* the "tls" object (borrowed from root); NULL: defaults */
    struct conf_px_tls *next;
} conf_px_tls_t;

static conf_px_tls_t *
conf_px_tls_of(conf_ctx_t *cx, wf_upstream_t *u)
{
    conf_px_tls_t *t;

    for (t = cx->px_tls; t != NULL; t = t->next) {
        if (t->u == u) {
            return t;
        }
    }
    t = wf_arena_calloc(cx->a, sizeof(*t));
    if (t != NULL) {
        t->u = u;
        t->next = cx->px_tls;
        cx->px_tls = t;
        cx->conf->ntls_clis++;
    }
    return t;
}

static int
conf_px_tls_string(conf_ctx_t *cx, const char *key, json_t *value,
                   const void *data)
{
    wf_unused(data);
    if (json_string_length(value) == 0
        || strlen(json_string_value(value)) != json_string_length(value)) {
        return conf_fail(cx, "The \"%s\" value must be a non-empty string.",
                         key);
    }
    if (strcmp(key, "sni") == 0) {
        cx->px_tls_cur->u->sni = conf_strdup(cx, value);
        return cx->px_tls_cur->u->sni != NULL ? WF_OK : conf_nomem(cx);
    }
    return WF_OK;
}

static const conf_member_t conf_px_tls_members[] = {
    {"verify", WF_JSON_BOOLEAN, NULL, NULL, 0},
    {"ca_file", WF_JSON_STRING, conf_px_tls_string, NULL, 0},
    {"ca", WF_JSON_STRING, conf_px_tls_string, NULL, 0},
    {"certificate", WF_JSON_STRING, conf_px_tls_string, NULL, 0},
    {"sni", WF_JSON_STRING, conf_px_tls_string, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

static int
conf_proxy_tls(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);
    conf_px_tls_t *t = u != NULL ? conf_px_tls_of(cx, u) : NULL;

    wf_unused(key);
    wf_unused(data);
    if (t == NULL) {
        return conf_nomem(cx);
    }
    t->obj = value;
    cx->px_tls_cur = t;
    return conf_object(cx, value, conf_px_tls_members);
}

/* Builds the contexts (loads the CA file, the store's CA bundle and client
 * certificate: control/conf_tls.c): the config is valid so far. */
static int
conf_px_tls_build(conf_ctx_t *cx)
{
    wf_conf_t *conf = cx->conf;
    char why[256];
    size_t i = 0;

    if (conf->ntls_clis == 0) {
        return WF_OK;
    }
    conf->tls_clis =
        wf_arena_calloc(cx->a, conf->ntls_clis * sizeof(*conf->tls_clis));
    if (conf->tls_clis == NULL) {
        return conf_nomem(cx);
    }
    for (conf_px_tls_t *t = cx->px_tls; t != NULL; t = t->next, i++) {
        conf->tls_clis[i] = wf_conf_tls_cli_compile(t->obj, why, sizeof(why));
        if (conf->tls_clis[i] == NULL) {
            return conf_fail(cx, "The proxy's \"tls\": %s.", why);
        }
        t->u->tls = conf->tls_clis[i];
    }
    return WF_OK;
}

static void
conf_px_tls_destroy(wf_conf_t *conf)
{
    for (size_t i = 0; conf->tls_clis != NULL && i < conf->ntls_clis; i++) {
        wf_tls_cli_destroy(conf->tls_clis[i]);
    }
}

#define CONF_UP_OFFSET(field) (&(const size_t){offsetof(wf_upstream_t, field)})

/* ---- balancing, health, limits (issue 10) ------------------------------ */

/* An integer key of an upstream (or, with flag, of one of its servers):
 * where it goes and its range. */
typedef struct conf_lb_int {
    size_t offset; /* in wf_upstream_t, or wf_upstream_server_t */
    unsigned min;
    unsigned max;
    unsigned flag; /* server keys: its WF_UPSTREAM_SET_* bit */
} conf_lb_int_t;

static int
conf_lb_balance(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);
    wf_upstream_balance_t b = wf_upstream_balance_find(
        wf_str_make(json_string_value(value), json_string_length(value)));

    wf_unused(key);
    wf_unused(data);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    if (b == WF_UPSTREAM_NBALANCE) {
        return conf_fail(cx, "The \"balance\" value must be \"round_robin\", "
                             "\"least_conn\", \"random_two\" or \"hash\".");
    }
    u->balance = b;
    return WF_OK;
}

static int
conf_lb_hash_key(conf_ctx_t *cx, const char *key, json_t *value,
                 const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);
    wf_tpl_t *t;

    wf_unused(data);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    if (conf_tpl_str(cx, key, json_string_value(value),
                     json_string_length(value), &t)
        != WF_OK) {
        return WF_ERROR;
    }
    u->hash_key = t;
    return WF_OK;
}

/* An integer in [min, max] at data's offset: in the server being compiled
 * when there is one (its flag set), else in the upstream. */
static int
conf_lb_int(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    const conf_lb_int_t *d = data;
    json_int_t v = json_integer_value(value);
    char *base = cx->server != NULL ? (char *)cx->server
                                    : (char *)conf_proxy_upstream(cx);

    if (base == NULL) {
        return conf_nomem(cx);
    }
    if (v < d->min || v > d->max) {
        return conf_fail(cx, "The \"%s\" number must be between %u and %u.",
                         key, d->min, d->max);
    }
    *(unsigned *)(base + d->offset) = (unsigned)v;
    if (cx->server != NULL) {
        cx->server->passive_set |= d->flag;
        cx->server->max_conns_set |= strcmp(key, "max_conns") == 0;
    }
    return WF_OK;
}

/* Seconds (a fraction allowed, > 0) at data's offset, in ms: in the
 * server being compiled when there is one, else in the upstream. */
static int
conf_lb_secs(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    const conf_lb_int_t *d = data;
    double v = json_number_value(value);
    char *base = cx->server != NULL ? (char *)cx->server
                                    : (char *)conf_proxy_upstream(cx);

    if (base == NULL) {
        return conf_nomem(cx);
    }
    if (!(v * 1000 >= 1) || v > INT32_MAX / 1000) {
        return conf_fail(cx,
                         "The \"%s\" number must be greater than 0 and at "
                         "most %d.",
                         key, INT32_MAX / 1000);
    }
    *(uint32_t *)(base + d->offset) = (uint32_t)(v * 1000);
    if (cx->server != NULL) {
        cx->server->passive_set |= d->flag;
    }
    return WF_OK;
}

#define CONF_LB_UP(field, lo, hi) \
    (&(const conf_lb_int_t){offsetof(wf_upstream_t, field), lo, hi, 0})
#define CONF_LB_SRV(field, lo, hi, flag)                                   \
    (&(const conf_lb_int_t){offsetof(wf_upstream_server_t, field), lo, hi, \
                            flag})

static int
conf_check_path(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);
    const char *s = json_string_value(value);
    char **dst = (char **)((char *)u + *(const size_t *)data);

    if (u == NULL) {
        return conf_nomem(cx);
    }
    if (strlen(s) != json_string_length(value) || s[0] == '\0'
        || strpbrk(s, " \r\n\t") != NULL
        || (strcmp(key, "path") == 0 && s[0] != '/')) {
        return conf_fail(cx,
                         "The \"%s\" value of \"health_check\" is "
                         "invalid.",
                         key);
    }
    *dst = conf_strdup(cx, value);
    return *dst != NULL ? WF_OK : conf_nomem(cx);
}

/* "status": one code, or [first, last]. */
static int
conf_check_status(conf_ctx_t *cx, const char *key, json_t *value,
                  const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);
    json_int_t lo, hi;

    wf_unused(key);
    wf_unused(data);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    if (json_is_integer(value)) {
        lo = hi = json_integer_value(value);
    } else if (json_array_size(value) == 2
               && json_is_integer(json_array_get(value, 0))
               && json_is_integer(json_array_get(value, 1))) {
        lo = json_integer_value(json_array_get(value, 0));
        hi = json_integer_value(json_array_get(value, 1));
    } else {
        lo = hi = 0;
    }
    if (lo < 100 || hi > 599 || lo > hi) {
        return conf_fail(cx, "The \"status\" of \"health_check\" must be a "
                             "status code or [first, last].");
    }
    u->check.status_min = (unsigned)lo;
    u->check.status_max = (unsigned)hi;
    return WF_OK;
}

static const conf_member_t conf_check_members[] = {
    {"path", WF_JSON_STRING, conf_check_path, CONF_UP_OFFSET(check.path), 0},
    {"host", WF_JSON_STRING, conf_check_path, CONF_UP_OFFSET(check.host), 0},
    {"interval", WF_JSON_NUMBER, conf_lb_secs,
     CONF_LB_UP(check.interval_ms, 0, 0), 0},
    {"timeout", WF_JSON_NUMBER, conf_lb_secs,
     CONF_LB_UP(check.timeout_ms, 0, 0), 0},
    {"status", WF_JSON_INTEGER | WF_JSON_ARRAY, conf_check_status, NULL, 0},
    {"rise", WF_JSON_INTEGER, conf_lb_int, CONF_LB_UP(check.rise, 1, 100), 0},
    {"fall", WF_JSON_INTEGER, conf_lb_int, CONF_LB_UP(check.fall, 1, 100), 0},
    {NULL, 0, NULL, NULL, 0},
};

/* "health_check": {"path": "/health", ...}; the path is "/" unless set. */
static int
conf_lb_check(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);

    wf_unused(key);
    wf_unused(data);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    u->check.path = "/";
    return conf_object(cx, value, conf_check_members);
}

/* "resolver": "IP:PORT" of the DNS server for the host names. */
static int
conf_lb_resolver(conf_ctx_t *cx, const char *key, json_t *value,
                 const void *data)
{
    wf_upstream_t *u = conf_proxy_upstream(cx);
    struct sockaddr_storage ss;
    socklen_t len;

    wf_unused(data);
    if (u == NULL) {
        return conf_nomem(cx);
    }
    if (!wf_conf_addr_parse(json_string_value(value), &ss, &len)
        || ss.ss_family == AF_UNIX) {
        return conf_fail(cx, "The \"%s\" value must be \"IP:PORT\".", key);
    }
    u->resolver = conf_strdup(cx, value);
    return u->resolver != NULL ? WF_OK : conf_nomem(cx);
}

/* An upstream is complete (a named one, or a "proxy" action's own): its
 * defaults resolved, it joins the snapshot's list and finds its peers. */
/* The addresses of the host-name server s, as servers into out (room for
 * WF_UPSTREAM_DNS_MAX); returns how many.  Only the router resolves
 * (cx->modules is NULL there); the controller's check takes none. */
static size_t
conf_server_resolve(conf_ctx_t *cx, wf_upstream_t *u,
                    const wf_upstream_server_t *s, wf_upstream_server_t *out)
{
    wf_upstream_addrs_t as;
    char err[300], text[INET6_ADDRSTRLEN + 8];
    size_t namelen;
    uint16_t port;

    if (cx->modules != NULL
        || wf_upstream_dns_parse(s->host, &namelen, &port) != WF_OK) {
        return 0;
    }
    if (wf_upstream_dns_resolve(s->host, namelen, port, u->resolver, 5000, &as,
                                err, sizeof(err))
        == 0) {
        wf_log_warn(0, "upstream server %s", err);
        return 0;
    }
    if (as.ttl > 0 && (u->ttl_ms == 0 || as.ttl * 1000 < u->ttl_ms)) {
        u->ttl_ms = as.ttl * 1000;
    }
    for (size_t i = 0; i < as.n; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&as.addr[i];
        const void *ip =
            sa->sa_family == AF_INET
                ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        char buf[INET6_ADDRSTRLEN];

        out[i] = *s;
        memcpy(&out[i].addr, &as.addr[i], as.len[i]);
        out[i].addrlen = as.len[i];
        inet_ntop(sa->sa_family, ip, buf, sizeof(buf));
        snprintf(text, sizeof(text),
                 sa->sa_family == AF_INET ? "%s:%u" : "[%s]:%u", buf, port);
        out[i].name = wf_arena_strndup(cx->a, text, strlen(text));
        if (out[i].name == NULL) {
            return 0;
        }
    }
    return as.n;
}

/* Replaces u's host-name servers by one server per address (each with
 * the configured weight), then scales the weights again. */
static int
conf_upstream_resolve(conf_ctx_t *cx, wf_upstream_t *u)
{
    wf_upstream_server_t *all;
    double *w;
    size_t n = 0, names = 0;

    for (size_t i = 0; i < u->nservers; i++) {
        names += u->servers[i].host != NULL;
    }
    if (names == 0) {
        return WF_OK;
    }
    all = wf_arena_calloc(cx->a, (u->nservers + names * WF_UPSTREAM_DNS_MAX + 1)
                                     * sizeof(*all));
    u->hosts = wf_arena_calloc(cx->a, (names + 1) * sizeof(char *));
    if (all == NULL || u->hosts == NULL) {
        return conf_nomem(cx);
    }
    for (size_t i = 0; i < u->nservers; i++) {
        if (u->servers[i].host == NULL) {
            all[n++] = u->servers[i];
        } else {
            u->hosts[u->nhosts++] = u->servers[i].host;
            n += conf_server_resolve(cx, u, &u->servers[i], &all[n]);
        }
    }
    w = wf_arena_calloc(cx->a, (n + 1) * sizeof(double));
    if (w == NULL) {
        return conf_nomem(cx);
    }
    for (size_t i = 0; i < n; i++) {
        w[i] = all[i].wconf;
    }
    u->servers = all;
    u->nservers = n;
    wf_upstream_weights(u, w);
    return WF_OK;
}

static int
conf_upstream_finish(conf_ctx_t *cx, wf_upstream_t *u)
{
    if (conf_upstream_resolve(cx, u) != WF_OK) {
        return WF_ERROR;
    }
    if (u->balance == WF_UPSTREAM_HASH && u->hash_key == NULL) {
        wf_tpl_t *t;

        if (conf_tpl_str(cx, "hash_key", "$remote_addr", 12, &t) != WF_OK) {
            return WF_ERROR;
        }
        u->hash_key = t;
    }
    u->next = cx->conf->upstream_all;
    cx->conf->upstream_all = u;
    return wf_upstream_compile(u) == WF_OK ? WF_OK : conf_nomem(cx);
}


/* Wharf's options of a proxy (docs/internals/proxy.md): "proxy_settings"
 * beside a "proxy", "settings" beside an upstream's "servers". */
static const conf_member_t conf_proxy_settings_members[] = {
    {"connect_timeout", WF_JSON_NUMBER, conf_proxy_timeout,
     CONF_UP_OFFSET(connect_ms), 0},
    {"send_timeout", WF_JSON_NUMBER, conf_proxy_timeout,
     CONF_UP_OFFSET(send_ms), 0},
    {"header_read_timeout", WF_JSON_NUMBER, conf_proxy_timeout,
     CONF_UP_OFFSET(head_ms), 0},
    {"body_read_timeout", WF_JSON_NUMBER, conf_proxy_timeout,
     CONF_UP_OFFSET(read_ms), 0},
    {"x_forwarded", WF_JSON_BOOLEAN, conf_proxy_flag,
     CONF_UP_OFFSET(x_forwarded), 0},
    {"forwarded", WF_JSON_BOOLEAN, conf_proxy_flag, CONF_UP_OFFSET(forwarded),
     0},
    {"forward_client_cert", WF_JSON_BOOLEAN, conf_proxy_flag,
     CONF_UP_OFFSET(client_cert), 0},
    {"trusted_sources", WF_JSON_STRING | WF_JSON_ARRAY, conf_proxy_trusted,
     NULL, 0},
    {"host", WF_JSON_STRING, conf_proxy_host, NULL, 0},
    {"idle_connections", WF_JSON_INTEGER, conf_proxy_idle, NULL, 0},
    {"idle_timeout", WF_JSON_NUMBER, conf_proxy_timeout,
     CONF_UP_OFFSET(idle_ms), 0},
    /* balancing, health, limits, host names (issue 10) */
    {"balance", WF_JSON_STRING, conf_lb_balance, NULL, 0},
    {"hash_key", WF_JSON_STRING, conf_lb_hash_key, NULL, 0},
    {"max_fails", WF_JSON_INTEGER, conf_lb_int,
     CONF_LB_UP(passive.max_fails, 0, WF_UPSTREAM_FAILS_MAX), 0},
    {"fail_window", WF_JSON_NUMBER, conf_lb_secs,
     CONF_LB_UP(passive.window_ms, 0, 0), 0},
    {"fail_timeout", WF_JSON_NUMBER, conf_lb_secs,
     CONF_LB_UP(passive.down_ms, 0, 0), 0},
    {"max_conns", WF_JSON_INTEGER, conf_lb_int,
     CONF_LB_UP(max_conns, 0, 1000000), 0},
    {"queue", WF_JSON_INTEGER, conf_lb_int,
     CONF_LB_UP(queue_max, 0, WF_UPSTREAM_QUEUE_MAX), 0},
    {"queue_timeout", WF_JSON_NUMBER, conf_lb_secs, CONF_LB_UP(queue_ms, 0, 0),
     0},
    {"health_check", WF_JSON_OBJECT, conf_lb_check, NULL, 0},
    {"resolver", WF_JSON_STRING, conf_lb_resolver, NULL, 0},
    {"resolve_interval", WF_JSON_NUMBER, conf_lb_secs,
     CONF_LB_UP(resolve_ms, 0, 0), 0},
    {"tunnel_timeout", WF_JSON_NUMBER, conf_proxy_timeout,
     CONF_UP_OFFSET(tunnel_ms), 0},
    {"tls", WF_JSON_OBJECT, conf_proxy_tls, NULL, 0},
    {"protocol", WF_JSON_STRING, conf_proxy_protocol, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

static const conf_member_t conf_proxy_members[] = {
    {"proxy", WF_JSON_STRING, conf_proxy, NULL, 0},
    {"proxy_settings", WF_JSON_OBJECT, conf_nested, conf_proxy_settings_members,
     0},
    CONF_ACTION_COMMON,
};

/* Wharf's "metrics": "prometheus" (http/metrics.h): /status as
 * Prometheus text, behind the route's own "match". */
static int
conf_metrics(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_unused(data);
    if (strcmp(json_string_value(value), "prometheus") != 0) {
        return conf_fail(cx, "The \"%s\" value must be \"prometheus\".", key);
    }
    return WF_OK;
}

static const conf_member_t conf_metrics_members[] = {
    {"metrics", WF_JSON_STRING, conf_metrics, NULL, 0},
    CONF_ACTION_COMMON,
};

/* The action kinds: the member that selects one, and its members. */
static const struct {
    const char *name;
    wf_action_type_t type;
    const conf_member_t *members;
} conf_actions[] = {
    {"pass", WF_ACTION_PASS, conf_pass_members},
    {"return", WF_ACTION_RETURN, conf_return_members},
    {"share", WF_ACTION_SHARE, conf_share_members},
    {"proxy", WF_ACTION_PROXY, conf_proxy_members},
    {"metrics", WF_ACTION_METRICS, conf_metrics_members},
};

/* Compiles an "action" (or "fallback") object into a new action. */
static wf_action_t *
conf_action(conf_ctx_t *cx, json_t *obj)
{
    size_t kind = wf_nitems(conf_actions);
    wf_action_t *act;

    for (size_t i = 0; i < wf_nitems(conf_actions); i++) {
        if (json_object_get(obj, conf_actions[i].name) == NULL) {
            continue;
        }
        if (kind != wf_nitems(conf_actions)) {
            conf_fail(cx, "The \"action\" object must have just one of "
                          "\"pass\", \"return\", \"share\", or \"proxy\" "
                          "options set.");
            return NULL;
        }
        kind = i;
    }
    if (kind == wf_nitems(conf_actions)) {
        conf_fail(cx, "The \"action\" object must have either \"pass\", "
                      "\"return\", \"share\", or \"proxy\" option set.");
        return NULL;
    }
    act = wf_arena_calloc(cx->a, sizeof(*act));
    if (act == NULL) {
        conf_nomem(cx);
        return NULL;
    }
    act->type = conf_actions[kind].type;
    act->index = wf_string("index.html");
    act->follow_symlinks = true;
    act->traverse_mounts = true;
    cx->action = act;
    if (conf_object(cx, obj, conf_actions[kind].members) != WF_OK) {
        return NULL;
    }
    /* A "proxy" action's own upstream (a "pass" to upstreams/NAME points
     * to a named one, finished with the upstreams). */
    if (act->upstream != NULL && act->upstream->name == NULL
        && conf_upstream_finish(cx, act->upstream) != WF_OK) {
        return NULL;
    }
    return act;
}

/* ---- routes ------------------------------------------------------------ */

static int
conf_route_new(conf_ctx_t *cx, const char *name, json_t *steps)
{
    wf_route_t *r = wf_route_create(cx->a, name);

    if (r == NULL) {
        return conf_nomem(cx);
    }
    cx->route_json[cx->conf->nroutes] = steps;
    cx->conf->routes[cx->conf->nroutes++] = r;
    return WF_OK;
}

/* First pass: creates every route, so that passes can be resolved in any
 * order when the steps are compiled (conf_routes_compile()). */
static int
conf_routes(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    size_t n = json_is_array(value) ? 1 : json_object_size(value);
    const char *name;
    json_t *steps;

    wf_unused(key);
    wf_unused(data);
    cx->conf->routes = wf_arena_calloc(cx->a, (n + 1) * sizeof(wf_route_t *));
    cx->route_json = wf_arena_calloc(cx->a, (n + 1) * sizeof(json_t *));
    if (cx->conf->routes == NULL || cx->route_json == NULL) {
        return conf_nomem(cx);
    }
    if (json_is_array(value)) {
        cx->routes_is_array = true;
        return conf_route_new(cx, "", value);
    }
    json_object_foreach(value, name, steps)
    {
        if (!wf_json_type_check(steps, WF_JSON_ARRAY, name, cx->err->detail,
                                sizeof(cx->err->detail))
            || conf_route_new(cx, name, steps) != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static int
conf_step_member(conf_ctx_t *cx, const char *key, json_t *value,
                 const void *data)
{
    wf_unused(data);
    if (strcmp(key, "match") == 0) {
        cx->step_match = value;
    } else {
        cx->step_action = value;
    }
    return WF_OK;
}

static const conf_member_t conf_step_members[] = {
    {"match", WF_JSON_OBJECT, conf_step_member, NULL, 0},
    {"action", WF_JSON_OBJECT, conf_step_member, NULL, CONF_REQUIRED},
    {NULL, 0, NULL, NULL, 0},
};

static int
conf_step(conf_ctx_t *cx, wf_route_t *route, json_t *step)
{
    wf_action_t *act;

    if (!json_is_object(step)) {
        return conf_fail(cx, "The \"routes\" array must contain only object "
                             "values.");
    }
    cx->step_match = NULL;
    cx->step_action = NULL;
    if (conf_object(cx, step, conf_step_members) != WF_OK) {
        return WF_ERROR;
    }
    act = conf_action(cx, cx->step_action);
    if (act == NULL) {
        return WF_ERROR;
    }
    return wf_route_add_step(route, cx->a, cx->step_match, act, cx->err->detail,
                             sizeof(cx->err->detail));
}

static int
conf_routes_compile(conf_ctx_t *cx)
{
    for (size_t i = 0; i < cx->conf->nroutes; i++) {
        json_t *steps = cx->route_json[i];

        for (size_t k = 0; k < json_array_size(steps); k++) {
            if (conf_step(cx, cx->conf->routes[i], json_array_get(steps, k))
                != WF_OK) {
                return WF_ERROR;
            }
        }
    }
    return WF_OK;
}

/* A listener whose "pass" is not a fixed route (it has variables, or it
 * names an application) routes through a route of its own with one
 * unconditional step: that action. */
static int
conf_listener_route(conf_ctx_t *cx, const wf_action_t *act,
                    const wf_route_t **out)
{
    wf_route_t *route = wf_route_create(cx->a, "");

    if (route == NULL) {
        return conf_nomem(cx);
    }
    if (wf_route_add_step(route, cx->a, NULL, act, cx->err->detail,
                          sizeof(cx->err->detail))
        != WF_OK) {
        return WF_ERROR;
    }
    *out = route;
    return WF_OK;
}

/* Compiles listener i's "pass" (or "application") into its route. */
static int
conf_listener_resolve(conf_ctx_t *cx, size_t i)
{
    wf_action_t *act = wf_arena_calloc(cx->a, sizeof(*act));
    const char *name = cx->lapp[i];
    int rc;

    if (act == NULL) {
        return conf_nomem(cx);
    }
    act->follow_symlinks = true;
    act->traverse_mounts = true;
    if (cx->pass[i] != NULL) {
        rc = conf_pass_compile(cx, cx->pass[i], act);
    } else {
        /* conf_listener_app() found it in the tree: it is compiled. */
        act->type = WF_ACTION_APP;
        act->app = wf_app_desc_find(cx->conf->apps, cx->conf->napps,
                                    wf_str_make(name, strlen(name)));
        rc = act->app != NULL
                 ? WF_OK
                 : conf_fail(cx,
                             "Listening socket is assigned for a non "
                             "existing application \"%.200s\".",
                             name);
    }
    if (rc != WF_OK) {
        return WF_ERROR;
    }
    if (act->type == WF_ACTION_PASS && act->pass == NULL) {
        cx->conf->listeners[i].pass = act->route;
        return WF_OK;
    }
    return conf_listener_route(cx, act, &cx->conf->listeners[i].pass);
}

static int
conf_listeners_resolve(conf_ctx_t *cx)
{
    for (size_t i = 0; i < cx->conf->nlisteners; i++) {
        if (conf_listener_resolve(cx, i) != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

/* ---- access log -------------------------------------------------------- */

static int
conf_alog_path(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_unused(key);
    wf_unused(data);
    cx->alog.path = conf_strdup(cx, value);
    return cx->alog.path != NULL ? WF_OK : conf_nomem(cx);
}

/* One member of a "format" object: a JSON key and its template. */
static int
conf_alog_field(conf_ctx_t *cx, size_t i, const char *name, json_t *value)
{
    wf_tpl_t *t;

    if (name[0] == '\0') {
        return conf_fail(cx, "In the access log format, the name must not "
                             "be empty.");
    }
    if (!json_is_string(value)) {
        return conf_fail(cx, "In the access log format, the value must be a "
                             "string.");
    }
    if (conf_tpl(cx, name, value, &t) != WF_OK) {
        return WF_ERROR;
    }
    ((wf_str_t *)cx->alog.keys)[i] =
        wf_str_make(wf_arena_strndup(cx->a, name, strlen(name)), strlen(name));
    cx->alog.values[i] = t;
    return cx->alog.keys[i].data != NULL ? WF_OK : conf_nomem(cx);
}

static int
conf_alog_format(conf_ctx_t *cx, const char *key, json_t *value,
                 const void *data)
{
    size_t n = json_is_object(value) ? json_object_size(value) : 0;
    const char *name;
    json_t *v;
    size_t i = 0;
    wf_tpl_t *t;

    wf_unused(data);
    if (json_is_string(value)) {
        if (conf_tpl(cx, key, value, &t) != WF_OK) {
            return WF_ERROR;
        }
        cx->alog.format = t;
        return WF_OK;
    }
    cx->alog.format = NULL;
    cx->alog.keys = wf_arena_calloc(cx->a, (n + 1) * sizeof(wf_str_t));
    cx->alog.values = wf_arena_calloc(cx->a, (n + 1) * sizeof(wf_tpl_t *));
    if (cx->alog.keys == NULL || cx->alog.values == NULL) {
        return conf_nomem(cx);
    }
    json_object_foreach(value, name, v)
    {
        if (conf_alog_field(cx, i++, name, v) != WF_OK) {
            return WF_ERROR;
        }
    }
    cx->alog.nfields = n;
    return WF_OK;
}

/* "if": a template, negated by a leading '!'. */
static int
conf_alog_if(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    const char *s = json_string_value(value);
    size_t len = json_string_length(value);
    bool negate = len > 0 && s[0] == '!';
    wf_tpl_t *t;

    wf_unused(data);
    if (conf_tpl_str(cx, key, s + negate, len - negate, &t) != WF_OK) {
        return WF_ERROR;
    }
    cx->alog.cond = t;
    cx->alog.negate = negate;
    return WF_OK;
}

static const conf_member_t conf_alog_members[] = {
    {"path", WF_JSON_STRING, conf_alog_path, NULL, 0},
    {"format", WF_JSON_STRING | WF_JSON_OBJECT, conf_alog_format, NULL, 0},
    {"if", WF_JSON_STRING, conf_alog_if, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

/* "access_log": a path, or {path, format, if}.  The file is opened here,
 * while the snapshot is compiled (on the router's first loop: one open()
 * per reconfiguration, and none when the path stays the same). */
static int
conf_access_log(conf_ctx_t *cx, const char *key, json_t *value,
                const void *data)
{
    wf_access_log_spec_t *al = &cx->alog;
    wf_tpl_t *t;

    wf_unused(key);
    wf_unused(data);
    if (conf_tpl_str(cx, "format", WF_ACCESS_LOG_COMBINED,
                     sizeof(WF_ACCESS_LOG_COMBINED) - 1, &t)
        != WF_OK) {
        return WF_ERROR;
    }
    al->format = t;
    if (json_is_string(value)) {
        al->path = conf_strdup(cx, value);
    } else if (conf_object(cx, value, conf_alog_members) != WF_OK) {
        return WF_ERROR;
    }
    if (al->path == NULL || al->path[0] == '\0') {
        return json_is_string(value)
                   ? conf_fail(cx, "The \"access_log\" path must not be "
                                   "empty.")
                   : conf_fail(cx, "The \"path\" string must not be empty.");
    }
    if (strlen(al->path)
        != (json_is_string(value) ? json_string_length(value)
                                  : strlen(al->path))) {
        return conf_fail(cx, "The \"access_log\" value must not contain "
                             "null character.");
    }
    cx->conf->http.access_log = wf_access_log_create(cx->a, al, cx->err->detail,
                                                     sizeof(cx->err->detail));
    return cx->conf->http.access_log != NULL ? WF_OK : WF_ERROR;
}

/* ---- root -------------------------------------------------------------- */

/* "applications": see control/conf_app.c.  Compiled during the walk of the
 * root, so before any step or listener "pass" resolves against them. */
static int
conf_applications(conf_ctx_t *cx, const char *key, json_t *value,
                  const void *data)
{
    wf_unused(key);
    wf_unused(data);
    return wf_conf_apps_compile(cx->a, value, cx->modules, &cx->conf->apps,
                                &cx->conf->napps, cx->err->detail,
                                sizeof(cx->err->detail));
}

/* ---- upstreams --------------------------------------------------------- */

static int
conf_server_weight(conf_ctx_t *cx, const char *key, json_t *value,
                   const void *data)
{
    double w = json_number_value(value);

    wf_unused(key);
    wf_unused(data);
    if (w < 0) {
        return conf_fail(cx, "The \"weight\" number must be positive.");
    }
    if (w > 1000000) {
        return conf_fail(cx, "The \"weight\" number must not exceed "
                             "1,000,000");
    }
    return WF_OK;
}

static const conf_member_t conf_server_members[] = {
    {"weight", WF_JSON_NUMBER, conf_server_weight, NULL, 0},
    {"max_conns", WF_JSON_INTEGER, conf_lb_int,
     CONF_LB_SRV(max_conns, 0, 1000000, 0), 0},
    {"max_fails", WF_JSON_INTEGER, conf_lb_int,
     CONF_LB_SRV(passive.max_fails, 0, WF_UPSTREAM_FAILS_MAX,
                 WF_UPSTREAM_SET_FAILS),
     0},
    {"fail_window", WF_JSON_NUMBER, conf_lb_secs,
     CONF_LB_SRV(passive.window_ms, 0, 0, WF_UPSTREAM_SET_WINDOW), 0},
    {"fail_timeout", WF_JSON_NUMBER, conf_lb_secs,
     CONF_LB_SRV(passive.down_ms, 0, 0, WF_UPSTREAM_SET_DOWN), 0},
    {NULL, 0, NULL, NULL, 0},
};

/* One member of "servers": its address and weight into srv, w. */
static int
conf_server(conf_ctx_t *cx, const char *name, json_t *value,
            wf_upstream_server_t *srv, double *w)
{
    json_t *weight;
    int rc;

    if (!wf_json_type_check(value, WF_JSON_OBJECT, name, cx->err->detail,
                            sizeof(cx->err->detail))) {
        return WF_ERROR;
    }
    if (!conf_server_addr(name, srv) && !conf_is_host(name)) {
        return conf_fail(cx, "The \"%.200s\" is not valid server address.",
                         name);
    }
    cx->server = srv;
    rc = conf_object(cx, value, conf_server_members);
    cx->server = NULL;
    if (rc != WF_OK) {
        return WF_ERROR;
    }
    srv->name = wf_arena_strndup(cx->a, name, strlen(name));
    srv->host = srv->addrlen == 0 ? srv->name : NULL;
    weight = json_object_get(value, "weight");
    *w = weight != NULL ? json_number_value(weight) : 1.0;
    srv->wconf = *w;
    return srv->name != NULL ? WF_OK : conf_nomem(cx);
}

static int
conf_servers(conf_ctx_t *cx, wf_upstream_t *u, json_t *servers)
{
    size_t n = json_object_size(servers);
    double *w = wf_arena_calloc(cx->a, (n + 1) * sizeof(double));
    const char *name;
    json_t *v;

    u->servers = wf_arena_calloc(cx->a, (n + 1) * sizeof(*u->servers));
    if (w == NULL || u->servers == NULL) {
        return conf_nomem(cx);
    }
    json_object_foreach(servers, name, v)
    {
        if (conf_server(cx, name, v, &u->servers[u->nservers], &w[u->nservers])
            != WF_OK) {
            return WF_ERROR;
        }
        u->nservers++;
    }
    wf_upstream_weights(u, w);
    return WF_OK;
}

static int
conf_upstream_servers(conf_ctx_t *cx, const char *key, json_t *value,
                      const void *data)
{
    wf_unused(key);
    wf_unused(data);
    return conf_servers(cx, cx->upstream, value);
}

/* "reverse": {"select": TEMPLATE}: the servers are reverse tunnels
 * attached under names (http/rhttp_pub.h); a request takes those of the
 * name its "select" renders ($host by default). */
static int
conf_upstream_reverse(conf_ctx_t *cx, const char *key, json_t *value,
                      const void *data)
{
    wf_upstream_t *u = cx->upstream;
    json_t *sel = json_object_get(value, "select");
    const char *k;
    json_t *v;
    wf_tpl_t *t;

    wf_unused(key);
    wf_unused(data);
    json_object_foreach(value, k, v)
    {
        if (strcmp(k, "select") != 0 || !json_is_string(v)) {
            return conf_fail(cx, "The upstream's \"reverse\" takes only "
                                 "\"select\", a string.");
        }
    }
    if (conf_tpl_str(cx, "select",
                     sel != NULL ? json_string_value(sel) : "$host",
                     sel != NULL ? json_string_length(sel) : 5, &t)
        != WF_OK) {
        return WF_ERROR;
    }
    u->rhttp_select = t;
    u->h2 = true;
    return WF_OK;
}

static const conf_member_t conf_upstream_members[] = {
    {"servers", WF_JSON_OBJECT, conf_upstream_servers, NULL, 0},
    {"reverse", WF_JSON_OBJECT, conf_upstream_reverse, NULL, 0},
    {"settings", WF_JSON_OBJECT, conf_nested, conf_proxy_settings_members, 0},
    {NULL, 0, NULL, NULL, 0},
};

/* One member of "upstreams", into the next slot of conf->upstreams. */
static int
conf_upstream(conf_ctx_t *cx, const char *name, json_t *value)
{
    wf_upstream_t *u = &cx->conf->upstreams[cx->conf->nupstreams];
    int rc;

    if (!wf_json_type_check(value, WF_JSON_OBJECT, name, cx->err->detail,
                            sizeof(cx->err->detail))) {
        return WF_ERROR;
    }
    wf_upstream_init(u);
    u->name = wf_arena_strndup(cx->a, name, strlen(name));
    if (u->name == NULL) {
        return conf_nomem(cx);
    }
    cx->upstream = u;
    rc = conf_object(cx, value, conf_upstream_members);
    cx->upstream = NULL;
    if (rc != WF_OK) {
        return WF_ERROR;
    }
    if (json_object_get(value, "servers") == NULL && u->rhttp_select == NULL) {
        return conf_fail(cx,
                         "The \"%.200s\" upstream must contain \"servers\" "
                         "object value.",
                         name);
    }
    if (conf_upstream_finish(cx, u) != WF_OK) {
        return WF_ERROR;
    }
    cx->conf->nupstreams++;
    return WF_OK;
}

/* "upstreams": compiled during the walk of the root, before any step or
 * listener "pass" resolves against them. */
static int
conf_upstreams(conf_ctx_t *cx, const char *key, json_t *value, const void *data)
{
    const char *name;
    json_t *v;

    wf_unused(key);
    wf_unused(data);
    cx->conf->upstreams = wf_arena_calloc(cx->a, (json_object_size(value) + 1)
                                                     * sizeof(wf_upstream_t));
    if (cx->conf->upstreams == NULL) {
        return conf_nomem(cx);
    }
    json_object_foreach(value, name, v)
    {
        if (conf_upstream(cx, name, v) != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static const conf_member_t conf_root_members[] = {
    {"settings", WF_JSON_OBJECT, conf_nested, conf_settings_members, 0},
    {"listeners", WF_JSON_OBJECT, conf_listeners, NULL, 0},
    {"routes", WF_JSON_ARRAY | WF_JSON_OBJECT, conf_routes, NULL, 0},
    {"applications", WF_JSON_OBJECT, conf_applications, NULL, 0},
    {"upstreams", WF_JSON_OBJECT, conf_upstreams, NULL, 0},
    {"access_log", WF_JSON_STRING | WF_JSON_OBJECT, conf_access_log, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

static int
conf_root(conf_ctx_t *cx)
{
    if (cx->root == NULL) {
        return conf_fail(cx, "The configuration is missing.");
    }
    if (!wf_json_type_check(cx->root, WF_JSON_OBJECT, NULL, cx->err->detail,
                            sizeof(cx->err->detail))) {
        return WF_ERROR;
    }
    if (conf_object(cx, cx->root, conf_root_members) != WF_OK
        || conf_routes_compile(cx) != WF_OK
        || conf_listeners_resolve(cx) != WF_OK) {
        return WF_ERROR;
    }
    return WF_OK;
}

static wf_conf_t *
conf_compile(json_t *root, const json_t *modules, wf_conf_error_t *err)
{
    conf_ctx_t cx;
    wf_arena_t *a;
    wf_conf_t *conf;

    memset(err, 0, sizeof(*err));
    snprintf(err->error, sizeof(err->error), "Invalid configuration.");
    a = wf_arena_create(8192);
    conf = a != NULL ? wf_arena_calloc(a, sizeof(*conf)) : NULL;
    if (conf == NULL) {
        snprintf(err->detail, sizeof(err->detail), "Out of memory.");
        wf_arena_destroy(a);
        return NULL;
    }
    conf->arena = a;
    conf_http_defaults(&conf->http);
    conf->http.mime = wf_mime_table_create(a);
    memset(&cx, 0, sizeof(cx));
    cx = (conf_ctx_t){
        .conf = conf, .a = a, .root = root, .modules = modules, .err = err};
    if (conf->http.mime == NULL) {
        conf_nomem(&cx);
        goto fail;
    }
    if (conf_root(&cx) != WF_OK || conf_px_tls_build(&cx) != WF_OK) {
        goto fail;
    }
    conf->json = json_incref(root);
    err->error[0] = '\0';
    return conf;

fail:
    wf_conf_destroy(conf); /* what compiled so far: listeners' TLS too */
    return NULL;
}

wf_conf_t *
wf_conf_compile(json_t *root, wf_conf_error_t *err)
{
    return conf_compile(root, NULL, err);
}

int
wf_conf_check(json_t *root, const json_t *modules, wf_conf_error_t *err)
{
    json_t *none = modules == NULL ? json_array() : NULL;
    wf_conf_t *conf;

    if (modules == NULL && none == NULL) {
        memset(err, 0, sizeof(*err));
        snprintf(err->error, sizeof(err->error), "Invalid configuration.");
        snprintf(err->detail, sizeof(err->detail), "Out of memory.");
        return WF_ERROR;
    }
    conf = conf_compile(root, modules != NULL ? modules : none, err);
    json_decref(none);
    wf_conf_destroy(conf);
    return conf != NULL ? WF_OK : WF_ERROR;
}

wf_conf_t *
wf_conf_load(const char *text, size_t len, wf_conf_error_t *err)
{
    json_t *root;
    wf_conf_t *conf;

    memset(err, 0, sizeof(*err));
    root = wf_json_parse(text, len, &err->json);
    if (root == NULL) {
        snprintf(err->error, sizeof(err->error), "Invalid JSON.");
        snprintf(err->detail, sizeof(err->detail), "%s", err->json.detail);
        err->has_location = 1;
        return NULL;
    }
    conf = wf_conf_compile(root, err);
    json_decref(root);
    return conf;
}

const wf_route_t *
wf_conf_route(const wf_conf_t *conf, const char *name)
{
    for (size_t i = 0; i < conf->nroutes; i++) {
        if (strcmp(wf_route_name(conf->routes[i]), name) == 0) {
            return conf->routes[i];
        }
    }
    return NULL;
}

void
wf_conf_destroy(wf_conf_t *conf)
{
    if (conf == NULL) {
        return;
    }
    json_decref(conf->json);
    for (wf_upstream_t *u = conf->upstream_all; u != NULL; u = u->next) {
        wf_upstream_fini(u);
    }
    wf_access_log_destroy(conf->http.access_log);
    /* A listener that failed to compile may hold one past nlisteners. */
    for (size_t i = 0; conf->listeners != NULL && i <= conf->nlisteners; i++) {
        wf_tls_srv_destroy(conf->listeners[i].tls);
        if (conf->listeners[i].reverse != NULL) {
            wf_rhttp_conf_fini(conf->listeners[i].reverse);
        }
    }
    conf_px_tls_destroy(conf);
    wf_arena_destroy(conf->arena);
}
