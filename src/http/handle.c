/* Request handling: routing, the options every action has (rewrite,
 * response_headers) and the actions that need no module of their own
 * (pass, return). */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "http/app_desc.h"
#include "http/metrics.h"
#include "http/proxy.h"
#include "http/req.h"
#include "http/respond.h"
#include "http/route.h"
#include "http/static.h"
#include "http/tpl.h"
#include "http/upstream.h"
#include "http/uri.h"
#include "net/acme_chal.h"

#define HANDLE_PASS_MAX 512 /* a rendered "pass" value, at most */

/* The router's application manager, installed once at start before any
 * thread serves requests (so read without a lock). */
static wf_http_app_fn handle_app_fn;
static wf_http_app_release_fn handle_app_release_fn;

void
wf_http_app_set_handler(wf_http_app_fn fn)
{
    handle_app_fn = fn;
}

void
wf_http_app_set_release(wf_http_app_release_fn fn)
{
    handle_app_release_fn = fn;
}

/* An "applications/NAME[/TARGET]" pass: the application manager takes r,
 * or 503 when there is none (a process that serves no applications). */
static void
handle_app(wf_req_t *r, const wf_app_desc_t *app, unsigned target)
{
    if (handle_app_fn == NULL || app == NULL) {
        wf_req_respond_error(r, 503);
        return;
    }
    handle_app_fn(r, app, target);
}

static const wf_action_t *
handle_match(wf_req_t *r, const wf_route_t *route)
{
    return r->hc->log_route ? wf_route_match_log(route, &r->rq)
                            : wf_route_match(route, &r->rq);
}

/* Makes r->uri hold n bytes.  Returns WF_OK or WF_ERROR (out of memory). */
static int
handle_uri_reserve(wf_req_t *r, size_t n)
{
    char *uri;

    if (n <= r->uri_cap) {
        return WF_OK;
    }
    uri = malloc(n);
    if (uri == NULL) {
        return WF_ERROR;
    }
    if (r->uri != r->uri_inline) {
        free(r->uri);
    }
    r->uri = uri;
    r->uri_cap = n;
    return WF_OK;
}

/* Sets the rewritten path (still encoded) with the request's own query in
 * r->target, for the log and a share's directory redirect; $request_uri and
 * $request_line keep the target received, as in Unit. */
static int
handle_set_target(wf_req_t *r, const char *path, size_t plen)
{
    wf_h1_head_t *h = &r->head;
    size_t n = plen + (h->has_query ? 1 + h->query.len : 0);
    char *t = malloc(n + 1); /* + 1: n may be 0 */

    if (t == NULL) {
        return WF_ERROR;
    }
    memcpy(t, path, plen);
    if (h->has_query) {
        t[plen] = '?';
        memcpy(t + plen + 1, h->query.data, h->query.len);
    }
    free(r->target);
    r->target = t;
    h->path = wf_str_make(t, plen);
    if (r->hc->log_route) {
        wf_log_notice(0, "URI rewritten to \"%.*s\"", (int)n, t);
    }
    return WF_OK;
}

/* Decodes and normalises the rewritten path buf[0..plen) into r->uri and
 * r->rq.uri.  An empty path stays empty, as in Unit: "$uri" is then "" and
 * a share of "/www$uri" names the directory itself. */
static int
handle_set_uri(wf_req_t *r, const char *buf, size_t plen)
{
    size_t len = 0;

    if (plen != 0
        && (buf[0] != '/' || handle_uri_reserve(r, plen) != WF_OK
            || wf_uri_normalize(buf, plen, r->uri, &len) != WF_OK)) {
        return WF_ERROR;
    }
    r->rq.uri = wf_str_make(r->uri, len);
    return WF_OK;
}

/* Unit's "rewrite": the rendered value's path (what precedes '?') becomes
 * the request's path, decoded and normalised for $uri and routing; the
 * query stays the request's own (a query in the value is ignored, as in
 * Unit 1.35).  The value is rendered into a buffer of its own.  Returns
 * WF_OK or WF_ERROR (the caller answers 500, as Unit). */
static int
handle_rewrite(wf_req_t *r, const wf_tpl_t *tpl)
{
    size_t n = wf_tpl_render(tpl, &r->rq, NULL, 0);
    char *buf = malloc(n + 1);
    const char *q;
    size_t plen;
    int rc;

    if (buf == NULL) {
        return WF_ERROR;
    }
    wf_tpl_render(tpl, &r->rq, buf, n + 1);
    q = memchr(buf, '?', n);
    plen = q != NULL ? (size_t)(q - buf) : n;
    rc = handle_set_uri(r, buf, plen);
    if (rc == WF_OK) {
        rc = handle_set_target(r, buf, plen);
    }
    free(buf);
    return rc;
}

/* Renders the Location of a return action into r->loc, percent-encoded as
 * Unit encodes it (wf_uri_encode_location()). */
static int
handle_render_location(wf_req_t *r, const wf_tpl_t *tpl)
{
    size_t n = wf_tpl_render(tpl, &r->rq, NULL, 0);
    char *raw = malloc(n + 1);
    size_t len;

    if (raw == NULL) {
        return WF_ERROR;
    }
    wf_tpl_render(tpl, &r->rq, raw, n + 1);
    len = wf_uri_encode_location(raw, n, NULL, 0);
    r->loc = malloc(len + 1);
    if (r->loc == NULL) {
        free(raw);
        return WF_ERROR;
    }
    wf_uri_encode_location(raw, n, r->loc, len);
    free(raw);
    r->resp.location = wf_str_make(r->loc, len);
    return WF_OK;
}

static void
handle_return(wf_req_t *r, const wf_action_t *a)
{
    wf_resp_t *resp = &r->resp;

    if (a->location != NULL
        && handle_render_location(r, a->location) != WF_OK) {
        wf_req_respond_error(r, 503);
        return;
    }
    resp->status = a->status;
    if (a->status >= 400) {
        /* Error statuses get Unit's error page, as Unit's return does. */
        wf_resp_set_error_page(resp, a->status);
    }
    wf_req_respond(r);
}

/* A "pass" named by variables ("routes/$host", "applications/$x",
 * "upstreams/$x"), rendered and looked up in the request's snapshot: a
 * route (*app and *up NULL), an application (*app set), an upstream (*up
 * set), or none (404). */
static const wf_route_t *
handle_pass_find(const wf_req_t *r, const wf_action_t *a,
                 const wf_app_desc_t **app, unsigned *target,
                 wf_upstream_t **up)
{
    static const char prefix[] = "applications/";
    static const char uprefix[] = "upstreams/";
    char buf[HANDLE_PASS_MAX];
    size_t n;

    *app = NULL;
    *up = NULL;
    n = wf_tpl_render(a->pass, &r->rq, buf, sizeof(buf));
    if (n >= sizeof(buf)) {
        return NULL;
    }
    if (n >= sizeof(prefix) - 1
        && memcmp(buf, prefix, sizeof(prefix) - 1) == 0) {
        *app = wf_app_desc_find_pass(a->apps, a->napps, wf_str_make(buf, n),
                                     target);
        return NULL;
    }
    if (n >= sizeof(uprefix) - 1
        && memcmp(buf, uprefix, sizeof(uprefix) - 1) == 0) {
        *up = wf_upstream_find(
            a->upstreams, a->nupstreams,
            wf_str_make(buf + sizeof(uprefix) - 1, n - (sizeof(uprefix) - 1)));
        return NULL;
    }
    return wf_route_find(a->routes, a->nroutes, a->routes_is_array,
                         wf_str_make(buf, n));
}

static void
handle_pass(wf_req_t *r, const wf_action_t *a)
{
    const wf_app_desc_t *app = NULL;
    wf_upstream_t *up = NULL;
    unsigned target = 0;
    const wf_route_t *route =
        a->pass == NULL ? a->route : handle_pass_find(r, a, &app, &target, &up);
    const wf_action_t *next;

    if (++r->passes > WF_REQ_MAX_PASSES) {
        /* Routes that pass to each other in a loop. */
        wf_req_respond_error(r, 500);
        return;
    }
    if (app != NULL) {
        handle_app(r, app, target);
        return;
    }
    if (up != NULL) {
        wf_proxy_run(r, up);
        return;
    }
    next = route != NULL ? handle_match(r, route) : NULL;
    if (next == NULL) {
        wf_req_respond_error(r, 404);
        return;
    }
    wf_http_run_action(r, next);
}

void
wf_http_run_action(wf_req_t *r, const wf_action_t *a)
{
    r->last = a; /* the last action's response_headers count */
    if (wf_unlikely(a->rewrite != NULL)
        && handle_rewrite(r, a->rewrite) != WF_OK) {
        wf_req_respond_error(r, 500);
        return;
    }
    switch (a->type) {
    case WF_ACTION_SHARE:
        wf_static_serve(r, a);
        return;
    case WF_ACTION_RETURN:
        handle_return(r, a);
        return;
    case WF_ACTION_PASS:
        handle_pass(r, a);
        return;
    case WF_ACTION_APP:
        handle_app(r, a->app, a->app_target);
        return;
    case WF_ACTION_PROXY:
        wf_proxy_run(r, a->upstream);
        return;
    case WF_ACTION_METRICS:
        wf_metrics_serve(r);
        return;
    case WF_ACTION_NTYPES:
        break;
    }
    wf_req_respond_error(r, 500);
}

void
wf_http_thread_start(wf_loop_t *loop)
{
    wf_static_thread_start(loop);
}

void
wf_http_thread_exit(void)
{
    wf_static_thread_exit();
    wf_proxy_thread_exit();
}

void
wf_http_req_release(wf_req_t *r)
{
    if (r->app != NULL && handle_app_release_fn != NULL) {
        handle_app_release_fn(r);
        r->app = NULL;
    }
    wf_static_req_release(r);
    wf_proxy_req_release(r);
    wf_metrics_req_release(r);
}

/* HTTP-01 (RFC 8555 8.3): a pending token's key authorization, before
 * routes, on every listener.  r->loc (freed with r) holds the body.
 * Returns whether it answered. */
static bool
handle_acme(wf_req_t *r)
{
    static const size_t n = sizeof(WF_ACME_CHAL_PREFIX) - 1;
    wf_str_t path = r->head.path;

    if ((r->head.method_id != WF_HTTP_GET && r->head.method_id != WF_HTTP_HEAD)
        || path.len <= n || memcmp(path.data, WF_ACME_CHAL_PREFIX, n) != 0
        || r->loc != NULL) {
        return false;
    }
    r->loc = wf_acme_chal_http(path.data + n, path.len - n);
    if (r->loc == NULL) {
        return false;
    }
    r->resp.status = 200;
    r->resp.content_type = wf_string("text/plain");
    r->resp.body = wf_str_make(r->loc, strlen(r->loc));
    r->resp.content_length = r->resp.body.len;
    wf_req_respond(r);
    return true;
}

void
wf_http_handle(wf_req_t *r)
{
    const wf_action_t *a;

    if (wf_unlikely(wf_acme_chal_any()) && handle_acme(r)) {
        return;
    }
    a = r->root != NULL ? handle_match(r, r->root) : NULL;
    if (a == NULL) {
        wf_req_respond_error(r, 404);
        return;
    }
    wf_http_run_action(r, a);
}
