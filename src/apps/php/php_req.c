/* One request through PHP: the script's route (php_path.c), the request
 * state PHP reads (SG(request_info), $_SERVER, cookies, the body), the
 * response (the head PHP sends, the body it writes, buffered until a
 * flush or the end) and php_request_startup() / php_execute_script() /
 * php_request_shutdown(), so that each request starts clean.
 * docs/internals/php.md, "A request". */
#include "apps/php/php_sapi.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ext/standard/head.h>
#include <main/php_output.h>

/* Body bytes held before they go to the router: a response smaller than
 * this leaves in one message with its head, and flush() or a larger body
 * sends what is held. */
#define PHP_OUT_CAP (32 * 1024)

#define PHP_SOFTWARE "Wharf/" WF_VERSION_STRING

/* The request being served: one at a time (one PHP per process).  The
 * buffers are kept from one request to the next. */
typedef struct php_req {
    wf_php_app_t *app;
    wf_app_req_t *req;         /* NULL when no request, or once it was ended
                                  (fastcgi_finish_request()) */
    const wf_app_head_t *head; /* valid while req is set */
    const wf_php_target_t *t;
    wf_php_route_t route;
    unsigned status;        /* the head's status, from send_headers */
    bool head_ready;        /* send_headers ran: fields and status are set */
    bool head_sent;         /* rt->respond() was called */
    bool failed;            /* a send failed: the client is gone */
    char *cookie;           /* NUL-terminated; into head or cbuf; NULL */
    wf_app_field_t *fields; /* the head's fields, into hbuf */
    size_t nfields, fields_cap;
    char *hbuf; /* the fields' bytes, copied from PHP's list */
    size_t hcap;
    char *out; /* PHP_OUT_CAP bytes: the body not sent yet */
    size_t out_len;
    char *vbuf; /* a $_SERVER name and value being made */
    size_t vcap;
    char *cbuf; /* the Cookie fields joined */
    size_t ccap;
    char *keep; /* copies of what SG(request_info) points to, once the
                   request ended early */
    size_t kcap;
    char path[PATH_MAX + 1]; /* the script's file name */
} php_req_t;

static php_req_t php_r;

/* Grows *p (of *cap bytes) to hold need bytes; 0 or -1. */
static int
php_grow(void **p, size_t *cap, size_t need)
{
    void *np;
    size_t n = *cap > 0 ? *cap : 256;

    if (need <= *cap) {
        return 0;
    }
    while (n < need) {
        n *= 2;
    }
    np = realloc(*p, n);
    if (np == NULL) {
        return -1;
    }
    *p = np;
    *cap = n;
    return 0;
}

/* The field named name (case-insensitive), or NULL. */
static const wf_app_field_t *
php_field(const wf_app_head_t *h, const char *name, size_t len)
{
    for (size_t i = 0; i < h->nfields; i++) {
        const wf_app_field_t *f = &h->fields[i];

        if (f->name.len == len && strncasecmp(f->name.data, name, len) == 0) {
            return f;
        }
    }
    return NULL;
}

/* ---- the response ---------------------------------------------------------
 */

static void
php_send_failed(php_req_t *r)
{
    r->failed = true;
}

/* Sends the head (with the body held so far) when it is ready, else what
 * is held.  0, or -1 once a send failed. */
static int
php_out_flush(php_req_t *r)
{
    const wf_app_rt_t *rt = r->app->rt;

    if (r->failed) {
        return -1;
    }
    if (r->req == NULL || !r->head_ready) {
        return 0;
    }
    wf_php_timer_arm(true); /* limits.timeout bounds the app's silence */
    if (!r->head_sent) {
        r->head_sent = true;
        if (rt->respond(r->req, r->status, r->fields, r->nfields, r->out,
                        r->out_len, 0)
            != WF_APP_OK) {
            php_send_failed(r);
            return -1;
        }
        r->out_len = 0;
        return 0;
    }
    if (r->out_len > 0 && rt->write(r->req, r->out, r->out_len) < 0) {
        php_send_failed(r);
        return -1;
    }
    r->out_len = 0;
    return 0;
}

static int
php_out_add(php_req_t *r, const char *s, size_t len)
{
    if (r->failed) {
        return -1;
    }
    if (r->out_len + len <= PHP_OUT_CAP) {
        memcpy(r->out + r->out_len, s, len);
        r->out_len += len;
        return 0;
    }
    if (php_out_flush(r) != 0) {
        return -1;
    }
    if (len >= PHP_OUT_CAP) {
        if (r->app->rt->write(r->req, s, len) < 0) {
            php_send_failed(r);
            return -1;
        }
        return 0;
    }
    memcpy(r->out, s, len);
    r->out_len = len;
    return 0;
}

size_t
wf_php_ub_write(const char *str, size_t len)
{
    php_req_t *r = &php_r;

    if (r->req == NULL) {
        return len; /* after fastcgi_finish_request(): dropped */
    }
    if (php_out_add(r, str, len) != 0) {
        php_handle_aborted_connection(); /* may not return */
        return 0;
    }
    return len;
}

void
wf_php_flush(void *server_context)
{
    php_req_t *r = &php_r;

    (void)server_context;
    if (r->req != NULL && php_out_flush(r) != 0) {
        php_handle_aborted_connection();
    }
}

/* Copies PHP's header list: "Name: value" lines. */
int
wf_php_send_headers(sapi_headers_struct *sh)
{
    php_req_t *r = &php_r;
    zend_llist_position pos;
    sapi_header_struct *h;
    size_t total = 0, count, off = 0;

    if (r->req == NULL) {
        return SAPI_HEADER_SENT_SUCCESSFULLY;
    }
    r->status =
        sh->http_response_code > 0 ? (unsigned)sh->http_response_code : 200;
    r->nfields = 0;
    r->head_ready = true;
    if (SG(request_info).no_headers == 1) {
        r->status = 200;
        return SAPI_HEADER_SENT_SUCCESSFULLY;
    }

    count = zend_llist_count(&sh->headers);
    for (h = zend_llist_get_first_ex(&sh->headers, &pos); h != NULL;
         h = zend_llist_get_next_ex(&sh->headers, &pos)) {
        total += h->header_len + 2;
    }
    if (php_grow((void **)&r->hbuf, &r->hcap, total) != 0
        || php_grow((void **)&r->fields, &r->fields_cap,
                    count * sizeof(wf_app_field_t))
               != 0) {
        return SAPI_HEADER_SEND_FAILED;
    }

    for (h = zend_llist_get_first_ex(&sh->headers, &pos); h != NULL;
         h = zend_llist_get_next_ex(&sh->headers, &pos)) {
        const char *colon = memchr(h->header, ':', h->header_len);
        const char *v, *end = h->header + h->header_len;
        wf_app_field_t *f;

        if (colon == NULL) {
            r->app->rt->log(WF_APP_LOG_WARN, "colon not found in header '%.*s'",
                            (int)h->header_len, h->header);
            continue;
        }
        for (v = colon + 1; v < end && isspace((unsigned char)*v); v++) {
        }
        f = &r->fields[r->nfields++];
        f->name.data = r->hbuf + off;
        f->name.len = (size_t)(colon - h->header);
        memcpy(r->hbuf + off, h->header, f->name.len);
        off += f->name.len;
        r->hbuf[off++] = '\0';
        f->value.data = r->hbuf + off;
        f->value.len = (size_t)(end - v);
        memcpy(r->hbuf + off, v, f->value.len);
        off += f->value.len;
        r->hbuf[off++] = '\0';
    }
    return SAPI_HEADER_SENT_SUCCESSFULLY;
}

/* Ends the request: what is held goes with the head or after it. */
static void
php_req_end(php_req_t *r)
{
    const wf_app_rt_t *rt = r->app->rt;
    wf_app_req_t *req = r->req;
    int ok = !r->failed;

    if (req == NULL) {
        return;
    }
    if (ok && !r->head_sent) {
        if (!r->head_ready) {
            r->status = 500; /* PHP never sent its head: it failed */
            r->nfields = 0;
            r->out_len = 0;
        }
        ok = rt->respond(req, r->status, r->fields, r->nfields, r->out,
                         r->out_len, 1)
             == WF_APP_OK;
    } else if (ok && r->out_len > 0) {
        ok = rt->write(req, r->out, r->out_len) >= 0;
    }
    r->out_len = 0;
    r->req = NULL;
    rt->end(req, ok);
}

/* Points s (NUL-terminated or NULL) into r->keep at *off. */
static void
php_keep(php_req_t *r, char **s, size_t *off)
{
    size_t n;

    if (*s == NULL) {
        return;
    }
    n = strlen(*s) + 1;
    memcpy(r->keep + *off, *s, n);
    *s = r->keep + *off;
    *off += n;
}

/* The strings of SG(request_info) point into the request's head, which
 * rt->end() frees: they move to a copy of the module's. */
static int
php_keep_request_info(php_req_t *r)
{
    sapi_request_info *ri = &SG(request_info);
    char **strs[] = {(char **)&ri->request_method, &ri->request_uri,
                     &ri->query_string, (char **)&ri->content_type};
    size_t need = 0, off = 0;

    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        need += *strs[i] != NULL ? strlen(*strs[i]) + 1 : 0;
    }
    if (php_grow((void **)&r->keep, &r->kcap, need) != 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        php_keep(r, strs[i], &off);
    }
    r->cookie = NULL;
    return 0;
}

bool
wf_php_req_finish_early(void)
{
    php_req_t *r = &php_r;
    zend_auto_global *ag;

    if (r->req == NULL) {
        return false;
    }
    php_output_end_all();
    php_header();

    /* $_SERVER is made on first use from the head: make it now, while
     * the head exists. */
    ag = zend_hash_str_find_ptr(CG(auto_globals), "_SERVER", 7);
    if (ag != NULL && ag->armed) {
        ag->armed = ag->auto_global_callback(ag->name);
    }
    if (php_keep_request_info(r) != 0) {
        return false;
    }
    php_req_end(r);

    PG(connection_status) = PHP_CONNECTION_ABORTED;
    php_output_set_status(PHP_OUTPUT_DISABLED);
    return true;
}

/* ---- the request ----------------------------------------------------------
 */

size_t
wf_php_read_post(char *buf, size_t len)
{
    php_req_t *r = &php_r;
    size_t got = 0;

    /* PHP takes a short read for the end of the body: fill buf. */
    while (r->req != NULL && got < len) {
        ssize_t n = r->app->rt->read(r->req, buf + got, len - got);

        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    return got;
}

char *
wf_php_read_cookies(void)
{
    return php_r.cookie;
}

/* The Cookie fields, joined with "; " when there are several. */
static void
php_cookie_set(php_req_t *r)
{
    const wf_app_head_t *h = r->head;
    size_t need = 0, n = 0, off = 0;
    const wf_app_field_t *one = NULL;

    r->cookie = NULL;
    for (size_t i = 0; i < h->nfields; i++) {
        const wf_app_field_t *f = &h->fields[i];

        if (f->name.len == 6 && strncasecmp(f->name.data, "Cookie", 6) == 0) {
            need += f->value.len + 2;
            one = f;
            n++;
        }
    }
    if (n == 1) {
        r->cookie = (char *)one->value.data;
    }
    if (n <= 1 || php_grow((void **)&r->cbuf, &r->ccap, need + 1) != 0) {
        return;
    }
    for (size_t i = 0; i < h->nfields; i++) {
        const wf_app_field_t *f = &h->fields[i];

        if (f->name.len == 6 && strncasecmp(f->name.data, "Cookie", 6) == 0) {
            if (off > 0) {
                memcpy(r->cbuf + off, "; ", 2);
                off += 2;
            }
            memcpy(r->cbuf + off, f->value.data, f->value.len);
            off += f->value.len;
        }
    }
    r->cbuf[off] = '\0';
    r->cookie = r->cbuf;
}

/* A value from the request, through PHP's input filter (as Unit). */
static void
php_var(const char *name, const char *value, size_t len, zval *tv)
{
    char *v = (char *)value;
    size_t n;

    if (sapi_module.input_filter(PARSE_SERVER, name, &v, len, &n) != 0) {
        php_register_variable_safe(name, v, n, tv);
    }
}

static void
php_var_str(const char *name, const wf_app_str_t *s, zval *tv)
{
    php_var(name, s->data, s->len, tv);
}

/* A value of the module's own: no filter. */
static void
php_var_own(const char *name, const char *value, size_t len, zval *tv)
{
    php_register_variable_safe(name, value, len, tv);
}

static bool
php_field_name_eq(const wf_app_str_t *a, const wf_app_str_t *b)
{
    return a->len == b->len && strncasecmp(a->data, b->data, a->len) == 0;
}

/* HTTP_<NAME> for the field at i, its value joined with those of the
 * later fields of the same name (", "), as Unit's router prepares them
 * for PHP; a field already joined to an earlier one is skipped. */
static void
php_var_field(php_req_t *r, size_t i, zval *tv)
{
    const wf_app_head_t *h = r->head;
    const wf_app_field_t *f = &h->fields[i];
    size_t need = 5 + f->name.len + 1, off, start;

    for (size_t j = 0; j < i; j++) {
        if (php_field_name_eq(&h->fields[j].name, &f->name)) {
            return;
        }
    }
    for (size_t j = i; j < h->nfields; j++) {
        if (php_field_name_eq(&h->fields[j].name, &f->name)) {
            need += h->fields[j].value.len + 2;
        }
    }
    if (php_grow((void **)&r->vbuf, &r->vcap, need + 1) != 0) {
        return;
    }
    memcpy(r->vbuf, "HTTP_", 5);
    for (off = 0; off < f->name.len; off++) {
        char c = f->name.data[off];

        r->vbuf[5 + off] = c == '-' ? '_' : (char)toupper((unsigned char)c);
    }
    off += 5;
    r->vbuf[off++] = '\0';
    start = off;
    for (size_t j = i; j < h->nfields; j++) {
        const wf_app_field_t *g = &h->fields[j];

        if (!php_field_name_eq(&g->name, &f->name)) {
            continue;
        }
        if (off > start) {
            memcpy(r->vbuf + off, ", ", 2);
            off += 2;
        }
        memcpy(r->vbuf + off, g->value.data, g->value.len);
        off += g->value.len;
    }
    r->vbuf[off] = '\0';
    php_var(r->vbuf, r->vbuf + start, off - start, tv);
}

/* $_SERVER, with Unit's keys in Unit's order. */
void
wf_php_register_variables(zval *tv)
{
    php_req_t *r = &php_r;
    const wf_app_head_t *h = r->head;
    const wf_app_field_t *f;
    char port[16];
    int n;

    if (r->req == NULL) {
        return;
    }
    php_var_own("SERVER_SOFTWARE", PHP_SOFTWARE, sizeof(PHP_SOFTWARE) - 1, tv);
    php_var_str("SERVER_PROTOCOL", &h->version, tv);
    if (r->route.path_info.len > 0) {
        php_var_str("PHP_SELF", &h->path, tv);
        php_var("PATH_INFO", r->route.path_info.data, r->route.path_info.len,
                tv);
    } else {
        php_var_own("PHP_SELF", r->route.script_name.data,
                    r->route.script_name.len, tv);
    }
    php_var_own("SCRIPT_NAME", r->route.script_name.data,
                r->route.script_name.len, tv);
    php_var_own("SCRIPT_FILENAME", r->route.script_filename,
                r->route.script_filename_len, tv);
    php_var_own("DOCUMENT_ROOT", r->t->root, r->t->root_len, tv);
    php_var_str("REQUEST_METHOD", &h->method, tv);
    php_var_str("REQUEST_URI", &h->target, tv);
    php_var_str("QUERY_STRING", &h->query, tv);
    php_var_str("REMOTE_ADDR", &h->remote, tv);
    php_var_str("SERVER_ADDR", &h->local, tv);
    php_var_str("SERVER_NAME", &h->server, tv);
    n = snprintf(port, sizeof(port), "%u", h->local_port);
    php_var("SERVER_PORT", port, (size_t)n, tv);
    if (h->tls) {
        php_var_own("HTTPS", "on", 2, tv);
    }
    for (size_t i = 0; i < h->nfields; i++) {
        php_var_field(r, i, tv);
    }
    f = php_field(h, "Content-Length", 14);
    if (f != NULL) {
        php_var_str("CONTENT_LENGTH", &f->value, tv);
    }
    f = php_field(h, "Content-Type", 12);
    if (f != NULL) {
        php_var_str("CONTENT_TYPE", &f->value, tv);
    }
}

/* ---- serving ----------------------------------------------------------------
 */

/* Unit's 301 for a directory: to the path with a '/', on the request's
 * scheme, server name and port (unless it is the scheme's default). */
static void
php_redirect(php_req_t *r)
{
    const wf_app_head_t *h = r->head;
    const wf_app_rt_t *rt = r->app->rt;
    wf_app_field_t loc = {{"Location", 8}, {NULL, 0}};
    char port[16] = "";
    size_t need;
    int n;

    if (h->local_port != (h->tls ? 443u : 80u)) {
        snprintf(port, sizeof(port), ":%u", h->local_port);
    }
    need =
        8 + h->server.len + strlen(port) + h->path.len + 2 + h->query.len + 1;
    if (php_grow((void **)&r->vbuf, &r->vcap, need) != 0) {
        rt->end(r->req, 0);
        return;
    }
    n = snprintf(r->vbuf, r->vcap, "%s%.*s%s%.*s/%s%.*s",
                 h->tls ? "https://" : "http://", (int)h->server.len,
                 h->server.data, port, (int)h->path.len, h->path.data,
                 h->query.len > 0 ? "?" : "", (int)h->query.len, h->query.data);
    loc.value.data = r->vbuf;
    loc.value.len = (size_t)n;
    rt->end(r->req, rt->respond(r->req, 301, &loc, 1, NULL, 0, 1) == WF_APP_OK);
}

static void
php_answer(php_req_t *r, unsigned status)
{
    const wf_app_rt_t *rt = r->app->rt;

    static const char page[] = "<!DOCTYPE html><title>Error 503</title>"
                               "<p>Error 503.\r\n";
    static const wf_app_field_t page_fields[] = {
        {{"Content-Type", 12}, {"text/html", 9}},
    };

    if (status == 0) {
        /* Unit ends such a request with an error, which its router
         * answers with its 503 page; a module's error gets a 502 here. */
        rt->end(r->req, rt->respond(r->req, 503, page_fields, 1, page,
                                    sizeof(page) - 1, 1)
                            == WF_APP_OK);
        return;
    }
    rt->end(r->req,
            rt->respond(r->req, status, NULL, 0, NULL, 0, 1) == WF_APP_OK);
}

/* SG(request_info) from the head, before php_request_startup(). */
static void
php_request_info_set(php_req_t *r)
{
    const wf_app_head_t *h = r->head;
    sapi_request_info *ri = &SG(request_info);
    const wf_app_field_t *f;

    SG(server_context) = r;
    SG(options) |= SAPI_OPTION_NO_CHDIR;
    ri->request_uri = (char *)h->target.data;
    ri->request_method = h->method.data;
    ri->proto_num =
        h->version.len == 8 && memcmp(h->version.data, "HTTP/1.0", 8) == 0
            ? 1000
            : 1001;
    ri->query_string = h->query.len > 0 ? (char *)h->query.data : NULL;
    ri->content_length =
        h->content_length == UINT64_MAX ? 0 : (zend_long)h->content_length;
    f = php_field(h, "Content-Type", 12);
    ri->content_type = f != NULL ? f->value.data : NULL;
    ri->path_translated = NULL;
    php_cookie_set(r);

    f = php_field(h, "Authorization", 13);
    if (f != NULL) {
        php_handle_auth_data(f->value.data);
    } else {
        ri->auth_digest = NULL;
        ri->auth_user = NULL;
        ri->auth_password = NULL;
    }
    SG(sapi_headers).http_response_code = 200;
}

/* Changes to the script's directory, as Unit does before every script,
 * unless the process is there already: the module's own last chdir(),
 * forgotten when a script calls chdir() (Unit also skips it for a
 * "script" target that ran last). */
static void
php_chdir(php_req_t *r)
{
    wf_php_app_t *app = r->app;
    const char *dir = r->t->script_dirname;
    char *slash = NULL, saved = '\0';

    if (r->route.chdir) {
        slash = strrchr(r->route.script_filename, '/');
        saved = slash[1];
        slash[1] = '\0';
        dir = r->route.script_filename;
    }
    if (strcmp(dir, app->cwd) != 0) {
        if (VCWD_CHDIR(dir) != 0) {
            app->rt->log(WF_APP_LOG_ALERT, "VCWD_CHDIR(%s) failed (%d: %s)",
                         dir, errno, strerror(errno));
            app->cwd[0] = '\0';
        } else if (strlen(dir) < sizeof(app->cwd)) {
            strcpy(app->cwd, dir);
        }
    }
    if (slash != NULL) {
        slash[1] = saved;
    }
}

static void
php_execute(php_req_t *r)
{
    zend_file_handle fh;

    php_request_info_set(r);
    wf_php_timer_arm(true);
    if (php_request_startup() == FAILURE) {
        r->app->rt->log(WF_APP_LOG_ERR, "php_request_startup() failed");
        wf_php_timer_arm(false);
        r->failed = true;
        php_req_end(r);
        return;
    }
    /* The engine's signal handlers are in place after the first
     * request: re-installing them costs 8 system calls a request (PHP-FPM
     * does the same; pcntl restores its own handlers at shutdown). */
#ifdef ZEND_SIGNALS
    SIGG(reset) = false;
#endif
    php_chdir(r);

    zend_stream_init_filename(&fh, r->route.script_filename);
    fh.primary_script = 1;
    php_execute_script(&fh);
    zend_destroy_file_handle(&fh);

    /* The body the script did not read stays unread (rt->end() drops
     * it): PHP must not read it at shutdown. */
    SG(post_read) = 1;
    php_request_shutdown(NULL);
    wf_php_timer_arm(false);
    php_req_end(r);
}

void
wf_php_request_serve(wf_php_app_t *app, wf_app_req_t *req)
{
    php_req_t *r = &php_r;
    const wf_app_head_t *h = app->rt->head(req);
    unsigned target = h->target_index < app->ntargets ? h->target_index : 0;

    if (r->out == NULL) {
        r->out = malloc(PHP_OUT_CAP);
        if (r->out == NULL) {
            app->rt->end(req, 0);
            return;
        }
    }
    r->app = app;
    r->req = req;
    r->head = h;
    r->t = &app->targets[target]; /* zeroed when there are no targets */
    r->status = 200;
    r->head_ready = false;
    r->head_sent = false;
    r->failed = false;
    r->nfields = 0;
    r->out_len = 0;

    wf_php_route_find(r->t, h->path.data, h->path.len, r->path, sizeof(r->path),
                      &r->route);
    switch (r->route.kind) {
    case WF_PHP_ROUTE_REDIRECT:
        php_redirect(r);
        break;
    case WF_PHP_ROUTE_STATUS:
    case WF_PHP_ROUTE_FAIL:
        php_answer(r, r->route.status);
        break;
    case WF_PHP_ROUTE_SCRIPT:
        if (access(r->route.script_filename, R_OK) != 0) {
            php_answer(r, wf_php_fs_status(errno));
            break;
        }
        php_execute(r);
        break;
    }
    r->req = NULL;
    r->head = NULL;
}
