/* The exchange layer: what endpoints call, turned into mux operations, and
 * the protocol-independent parts of a response.  See
 * docs/internals/exchange.md. */
#include "http/exchange.h"

#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "http/mux.h"
#include "http/respond.h"

void
wf_xchg_init(wf_req_t *r, wf_mux_t *mux, wf_loop_t *loop)
{
    r->mux = mux;
    r->body_wanted = false;
    r->websocket = false;
    r->on_abort = NULL;
    r->app = NULL;
    r->proxy = NULL;
    r->proxy_h2 = NULL;
    r->metrics = NULL;
    wf_chan_init(&r->req_body, loop, WF_XCHG_CHAN_LIMIT);
    wf_chan_init(&r->resp_body, loop, WF_XCHG_CHAN_LIMIT);
}

void
wf_xchg_fini(wf_req_t *r)
{
    wf_file_unref(r->resp.file);
    r->resp.file = NULL;
    wf_chan_fini(&r->req_body);
    wf_chan_fini(&r->resp_body);
}

bool
wf_xchg_has_body(const wf_req_t *r)
{
    return r->head.chunked || r->head.content_length > 0;
}

void
wf_xchg_body_read(wf_req_t *r, wf_chan_cb on_readable)
{
    wf_chan_set_readable(&r->req_body, on_readable);
    r->body_wanted = true;
    if (!wf_xchg_has_body(r)) {
        wf_chan_close(&r->req_body);
        return;
    }
    r->mux->ops->body_start(r);
}

void
wf_xchg_stream_start(wf_req_t *r, wf_chan_cb on_writable)
{
    wf_chan_set_writable(&r->resp_body, on_writable);
    r->resp.stream = true;
    if (!r->resp.stream_length) {
        r->resp.content_length = 0;
    }
    wf_req_respond(r);
}

/* Does the comma-separated list of every field named name hold token
 * (case-insensitive, OWS around elements ignored)? */
static bool
xchg_field_has_token(const wf_h1_head_t *h, const char *name, size_t nlen,
                     const char *token)
{
    size_t tlen = strlen(token);

    for (unsigned i = 0; i < h->nheaders; i++) {
        const wf_str_t *v = &h->headers[i].value;
        size_t pos = 0;

        if (h->headers[i].name.len != nlen
            || strncasecmp(h->headers[i].name.data, name, nlen) != 0) {
            continue;
        }
        while (pos < v->len) {
            size_t start;
            size_t end;

            while (pos < v->len
                   && (v->data[pos] == ' ' || v->data[pos] == '\t'
                       || v->data[pos] == ',')) {
                pos++;
            }
            start = pos;
            while (pos < v->len && v->data[pos] != ',') {
                pos++;
            }
            end = pos;
            while (end > start
                   && (v->data[end - 1] == ' ' || v->data[end - 1] == '\t')) {
                end--;
            }
            if (end - start == tlen
                && strncasecmp(v->data + start, token, tlen) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* The only field named name, or NULL when there is none or several. */
static const wf_str_t *
xchg_field_one(const wf_h1_head_t *h, const char *name, size_t nlen)
{
    const wf_str_t *found = NULL;

    for (unsigned i = 0; i < h->nheaders; i++) {
        if (h->headers[i].name.len == nlen
            && strncasecmp(h->headers[i].name.data, name, nlen) == 0) {
            if (found != NULL) {
                return NULL;
            }
            found = &h->headers[i].value;
        }
    }
    return found;
}

/* A Sec-WebSocket-Key: the base64 of 16 bytes is 22 characters, the last
 * of which carries 2 bits (so its low 4 bits are 0), then "==". */
static bool
xchg_ws_key_ok(const wf_str_t *key)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    if (key == NULL || key->len != 24 || key->data[22] != '='
        || key->data[23] != '=') {
        return false;
    }
    for (size_t i = 0; i < 22; i++) {
        const char *c = memchr(b64, key->data[i], 64);

        if (c == NULL || (i == 21 && ((c - b64) & 0xf) != 0)) {
            return false;
        }
    }
    return true;
}

unsigned
wf_xchg_ws_check(const wf_req_t *r)
{
    const wf_h1_head_t *h = &r->head;
    const wf_str_t *version;

    if (!xchg_field_has_token(h, "Upgrade", 7, "websocket")
        || !xchg_field_has_token(h, "Connection", 10, "upgrade")) {
        return WF_OK;
    }
    if (h->method_id != WF_HTTP_GET || h->version != 11 || wf_xchg_has_body(r)
        || !xchg_ws_key_ok(xchg_field_one(h, "Sec-WebSocket-Key", 17))) {
        return 400;
    }
    version = xchg_field_one(h, "Sec-WebSocket-Version", 21);
    if (version == NULL || version->len != 2
        || memcmp(version->data, "13", 2) != 0) {
        return 426;
    }
    return WF_XCHG_WS;
}

int
wf_xchg_tunnel_start(wf_req_t *r, wf_chan_cb on_readable,
                     wf_chan_cb on_writable)
{
    if (!r->websocket || r->body_wanted || r->mux->ops->ctl == NULL
        || r->mux->ops->ctl(r->mux, MUX_CTL_TUNNEL, r) != WF_OK) {
        return WF_DECLINED;
    }
    wf_chan_set_readable(&r->req_body, on_readable);
    wf_chan_set_writable(&r->resp_body, on_writable);
    r->body_wanted = true; /* the endpoint reads the client's bytes */
    wf_req_respond(r);
    return WF_OK;
}

int
wf_xchg_ctl(wf_req_t *r, int op, void *arg)
{
    if (op < 0 || op >= MUX_CTL_NOPS || r->mux->ops->ctl == NULL) {
        return WF_DECLINED;
    }
    return r->mux->ops->ctl(r->mux, (wf_mux_ctl_t)op, arg);
}

void
wf_req_respond(wf_req_t *r)
{
    wf_resp_t *resp = &r->resp;

    if (wf_unlikely(r->last != NULL && r->last->nresp_fields > 0)
        && resp->status >= 200 && resp->status < 400) {
        resp->fields = r->last;
        resp->fields_rq = &r->rq;
    }
    r->mux->ops->respond(r);
}

void
wf_req_respond_error(wf_req_t *r, unsigned status)
{
    wf_resp_t *resp = &r->resp;

    wf_file_unref(resp->file);
    memset(resp, 0, sizeof(*resp));
    resp->status = status;
    resp->head_only = r->head.method_id == WF_HTTP_HEAD;
    wf_resp_set_error_page(resp, status);
    r->mux->ops->respond(r);
}

void
wf_req_run_job(wf_req_t *r, wf_job_cb work, wf_req_job_cb done)
{
    r->job_done = done;
    r->job.work = work;
    r->mux->ops->job_start(r);
}
