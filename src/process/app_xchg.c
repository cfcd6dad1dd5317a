/* The exchange with an app process, on the request's I/O thread.  See
 * app_xchg.h and docs/internals/apps.md. */
#include "process/app_xchg.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "http/app_desc.h"
#include "http/exchange.h"
#include "http/var.h"
#include "process/app_types.h"

#define XCHG_ADDR_MAX       64 /* an address as text, NUL included */
#define XCHG_MEM_MIN        1024
#define XCHG_FILE_PIECE_MAX (8u << 20) /* a file piece read into a stream */

/* Per thread: request heads and body pieces are built here, then copied
 * by the port; a head that does not fit is built in a malloc'd buffer. */
static __thread char xchg_scratch[WF_APP_MAX_SIZE];

static void xchg_pump_body(app_xchg_t *x);

/* Per thread: the app ports corked in this tick (heads queue there and go
 * at the tick's end, several with one sendmmsg(): an app process woken by
 * the first head finds the next ones queued behind it, instead of
 * preempting this thread after each). */
#define XCHG_CORK_MAX 16
static __thread wf_port_t *xchg_corked[XCHG_CORK_MAX];
static __thread unsigned xchg_ncorked;
static __thread wf_task_t xchg_uncork_task;

static void
xchg_uncork_all(wf_task_t *task)
{
    wf_unused(task);
    for (unsigned i = 0; i < xchg_ncorked; i++) {
        wf_port_uncork(xchg_corked[i]);
        wf_port_unref(xchg_corked[i]);
    }
    xchg_ncorked = 0;
}

/* Corks p until the end of this tick (if room is left to remember it). */
static void
xchg_cork(wf_loop_t *loop, wf_port_t *p)
{
    for (unsigned i = 0; i < xchg_ncorked; i++) {
        if (xchg_corked[i] == p) {
            return;
        }
    }
    if (xchg_ncorked == XCHG_CORK_MAX) {
        return;
    }
    if (xchg_ncorked == 0) {
        xchg_uncork_task.handler = xchg_uncork_all;
        wf_task_defer(loop, &xchg_uncork_task);
    }
    wf_port_ref(p);
    wf_port_cork(p);
    xchg_corked[xchg_ncorked++] = p;
}

/* ---- Encoding ------------------------------------------------------ */

static size_t
xchg_str_size(size_t n)
{
    return 4 + ((n + 1 + 3) & ~(size_t)3);
}

static char *
xchg_str_put(char *p, const char *s, size_t n)
{
    uint32_t len = (uint32_t)n;
    size_t pad = ((n + 1 + 3) & ~(size_t)3) - n;

    memcpy(p, &len, 4);
    if (n > 0) {
        memcpy(p + 4, s, n);
    }
    memset(p + 4 + n, 0, pad);
    return p + 4 + n + pad;
}

/* addr as text ("127.0.0.1", "::1"; "" for a unix socket) and its port. */
static size_t
xchg_addr_text(const wf_sockaddr_t *sa, char *buf, uint16_t *port)
{
    *port = 0;
    buf[0] = '\0';
    if (sa == NULL) {
        return 0;
    }
    if (sa->sa.sa_family == AF_INET) {
        *port = ntohs(sa->sin.sin_port);
        return wf_var_addr_text(sa, buf, XCHG_ADDR_MAX); /* no sprintf() */
    }
    if (sa->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &sa->sin6.sin6_addr, buf, XCHG_ADDR_MAX);
        *port = ntohs(sa->sin6.sin6_port);
    }
    return strlen(buf);
}

bool
wf_app_str_get(const unsigned char *msg, size_t len, size_t *off,
               const char **s, uint32_t *slen)
{
    uint32_t n;

    if (len - *off < 4) {
        return false;
    }
    memcpy(&n, msg + *off, 4);
    if (n > len || xchg_str_size(n) > len - *off) {
        return false;
    }
    *s = (const char *)msg + *off + 4;
    *slen = n;
    *off += xchg_str_size(n);
    return true;
}

size_t
wf_app_req_encode(const wf_req_t *r, unsigned target, uint32_t flags,
                  const char *body, uint32_t body_size, char *out, size_t cap)
{
    const wf_h1_head_t *h = &r->head;
    char remote[XCHG_ADDR_MAX];
    char local[XCHG_ADDR_MAX];
    wf_app_req_hdr_t hdr = {.flags = flags, .target = (uint16_t)target};
    wf_str_t strs[WF_APP_REQ_NSTR];
    size_t need = sizeof(hdr) + body_size;
    unsigned nfields = wf_min(h->nheaders, (unsigned)WF_APP_MAX_FIELDS);
    char *p = out;

    strs[WF_APP_STR_METHOD] = h->method;
    strs[WF_APP_STR_TARGET] = h->target;
    strs[WF_APP_STR_PATH] = r->rq.uri;
    strs[WF_APP_STR_QUERY] = h->query;
    strs[WF_APP_STR_VERSION] =
        h->version == 10 ? wf_string("HTTP/1.0") : wf_string("HTTP/1.1");
    strs[WF_APP_STR_HOST] = h->host;
    strs[WF_APP_STR_REMOTE] = wf_str_make(
        remote, xchg_addr_text(r->rq.remote, remote, &hdr.remote_port));
    strs[WF_APP_STR_LOCAL] =
        wf_str_make(local, xchg_addr_text(r->rq.local, local, &hdr.local_port));
    /* Unit's SERVER_NAME without a Host (nxt_http_application_handler) */
    strs[WF_APP_STR_SERVER] =
        r->rq.host.len > 0 ? r->rq.host : wf_string("localhost");
    hdr.nfields = (uint16_t)nfields;
    hdr.content_length = h->content_length >= 0 && !h->chunked
                             ? (uint64_t)h->content_length
                             : WF_APP_LEN_NONE;
    if (flags & WF_APP_REQ_UPGRADE) {
        hdr.content_length = 0; /* a handshake has no body; see app_proto.h */
    }
    hdr.body_size = body_size;
    for (unsigned i = 0; i < WF_APP_REQ_NSTR; i++) {
        need += xchg_str_size(strs[i].len);
    }
    for (unsigned i = 0; i < nfields; i++) {
        need += xchg_str_size(h->headers[i].name.len)
                + xchg_str_size(h->headers[i].value.len);
    }
    if (need > cap) {
        return need;
    }
    memcpy(p, &hdr, sizeof(hdr));
    p += sizeof(hdr);
    for (unsigned i = 0; i < WF_APP_REQ_NSTR; i++) {
        p = xchg_str_put(p, strs[i].data, strs[i].len);
    }
    for (unsigned i = 0; i < nfields; i++) {
        p = xchg_str_put(p, h->headers[i].name.data, h->headers[i].name.len);
        p = xchg_str_put(p, h->headers[i].value.data, h->headers[i].value.len);
    }
    if (body != NULL && body_size > 0) {
        memcpy(p, body, body_size); /* NULL: the caller puts it there */
    }
    return need;
}

/* ---- Life of an exchange ------------------------------------------- */

static void
xchg_free(app_xchg_t *x)
{
    free(x->coll);
    if (x->file_fd >= 0) {
        close(x->file_fd);
    }
    wf_timer_stop(x->loop, &x->timer);
    free(x->mem);
    free(x);
}

/* Every entry point (a callback from the mux, the loop, the port or the
 * manager) brackets its work with these: answering r may free r at once,
 * and x with it, so x is freed only once the entry is done with it. */
static void
xchg_enter(app_xchg_t *x)
{
    x->busy = true;
}

/* Frees x if neither side needs it any more: r is gone and the app's side
 * is over (or never began). */
static void
xchg_leave(app_xchg_t *x)
{
    x->busy = false;
    if (x->r == NULL && (x->state == APP_X_DONE || x->state == APP_X_NEW)) {
        xchg_free(x);
    }
}

/* Sends a message about x on its socket (no fds).  A closed socket is
 * noticed by its on_close, which fails x. */
static void
xchg_send(app_xchg_t *x, uint32_t type, const void *data, size_t len)
{
    if (x->sock->port != NULL) {
        wf_port_send(x->sock->port, type, x->stream, data, len, NULL, 0);
    }
}

/* May r still be touched: not freed, and not handed back to the mux. */
static bool
xchg_has_r(const app_xchg_t *x)
{
    return x->r != NULL && (!x->responded || x->streaming);
}

/* Answers r with an error page, if nothing was answered yet; a stream
 * under way is cut (its length cannot be kept). */
static void
xchg_fail(app_xchg_t *x, unsigned status)
{
    if (!xchg_has_r(x)) {
        return;
    }
    if (x->streaming) {
        x->streaming = false;
        wf_chan_abort(&x->r->resp_body);
        return;
    }
    x->responded = true;
    wf_req_respond_error(x->r, status);
}

static void
xchg_abort_app(app_xchg_t *x)
{
    if (x->state == APP_X_SENT && !x->abort_sent) {
        x->abort_sent = true;
        xchg_send(x, WF_APP_MSG_REQ_ABORT, NULL, 0);
    }
}

static void
xchg_on_timer(wf_timer_t *t)
{
    app_xchg_t *x = wf_container_of(t, app_xchg_t, timer);

    if (x->state == APP_X_QUEUED) {
        if (wf_app_queue_del(x)) {
            /* queue.timeout: no process became free in time. */
            x->state = APP_X_NEW;
            xchg_fail(x, 503);
        }
        return;
    }
    if (x->state == APP_X_SENT && x->in_app_queue) {
        /* queue.timeout, waiting in the app behind another request. */
        x->timed_out = true;
        xchg_fail(x, 503);
        xchg_abort_app(x);
        return;
    }
    if (x->state == APP_X_SENT) {
        /* limits.timeout: the app took too long on this request. */
        wf_log_warn(0, "application \"%s\": request timed out", x->app->name);
        x->timed_out = true;
        xchg_fail(x, 503);
        xchg_abort_app(x);
    }
}

/* Takes the first n body bytes queued in ch (at most cap) into out. */
static size_t
xchg_body_take(wf_chan_t *ch, char *out, size_t cap)
{
    size_t got = 0;

    while (got < cap) {
        const char *p;
        size_t n = wf_min(wf_chan_peek(ch, &p), cap - got);

        if (n == 0) {
            break;
        }
        memcpy(out + got, p, n);
        wf_chan_consume(ch, n);
        got += n;
    }
    return got;
}

/* ---- Collected bodies ----------------------------------------------
 * With settings.http.chunked_transform, Unit reads a chunked request body
 * whole and gives the app a Content-Length (nxt_http_request_chunked_
 * transform(): the Transfer-Encoding field is dropped, a Content-Length
 * field added last).  Here the body is drained from r->req_body into
 * x->coll as it arrives (the mux bounds it by max_body_size: 413), and
 * the head goes once it is complete.  Without the setting a chunked body
 * is streamed to the app without a Content-Length (Wharf's extension;
 * Unit answers 411). */

/* Is r's body one to collect first? */
static bool
xchg_collects(const wf_req_t *r)
{
    return r->head.chunked && r->hc->chunked_transform && !r->websocket;
}

/* r's head as Unit passes a collected body: no Transfer-Encoding field, a
 * Content-Length one last, and the length in the head. */
static void
xchg_collect_head(app_xchg_t *x)
{
    wf_h1_head_t *h = &x->r->head;
    unsigned n = 0;

    for (unsigned i = 0; i < h->nheaders; i++) {
        if (!wf_str_eq_nocase(h->headers[i].name,
                              wf_string("Transfer-Encoding"))) {
            h->headers[n++] = h->headers[i];
        }
    }
    /* The parser set chunked for one Transfer-Encoding field at least:
     * there is room for the new field. */
    if (n < WF_H1_MAX_HEADERS) {
        int len = snprintf(x->coll_cl, sizeof(x->coll_cl), "%zu", x->coll_len);

        h->headers[n].name = wf_string("Content-Length");
        h->headers[n].value = wf_str_make(x->coll_cl, (size_t)len);
        n++;
    }
    h->nheaders = n;
    h->chunked = false;
    h->content_length = (int64_t)x->coll_len;
}

/* Drains r->req_body into x->coll.  Returns WF_OK once the body is whole,
 * WF_AGAIN for more, WF_ERROR when out of memory (answered 503). */
static int
xchg_collect(app_xchg_t *x)
{
    wf_chan_t *ch = &x->r->req_body;

    for (;;) {
        const char *p;
        size_t n = wf_chan_peek(ch, &p);

        if (n == 0) {
            break;
        }
        if (x->coll_len + n > x->coll_cap) {
            size_t cap = wf_max(x->coll_cap * 2, x->coll_len + n);
            char *coll = realloc(x->coll, wf_max(cap, (size_t)4096));

            if (coll == NULL) {
                xchg_fail(x, 503);
                return WF_ERROR;
            }
            x->coll = coll;
            x->coll_cap = wf_max(cap, (size_t)4096);
        }
        memcpy(x->coll + x->coll_len, p, n);
        x->coll_len += n;
        wf_chan_consume(ch, n);
    }
    if (!wf_chan_is_done(ch)) {
        return WF_AGAIN;
    }
    x->collecting = false;
    x->collected = true;
    xchg_collect_head(x);
    return WF_OK;
}

/* The next request body bytes to send (at most cap), from coll or from
 * the channel. */
static size_t
xchg_body_next(app_xchg_t *x, char *out, size_t cap)
{
    size_t n;

    if (!x->collected) {
        return xchg_body_take(&x->r->req_body, out, cap);
    }
    n = wf_min(cap, x->coll_len - x->coll_sent);
    if (n == 0) {
        return 0; /* coll may be NULL: an empty body */
    }
    memcpy(out, x->coll + x->coll_sent, n);
    x->coll_sent += n;
    return n;
}

/* Has every body byte been handed to xchg_body_next()'s caller? */
static bool
xchg_body_is_done(app_xchg_t *x)
{
    if (!x->collected) {
        return wf_chan_is_done(&x->r->req_body);
    }
    return x->coll_sent == x->coll_len;
}

/* How much of the body goes with the head: all of it when it is read
 * already and small (the head then says BODY_END), else none. */
static uint32_t
xchg_head_body(app_xchg_t *x, uint32_t *flags)
{
    wf_chan_t *ch = &x->r->req_body;

    if (!x->body) {
        *flags |= WF_APP_REQ_BODY_END;
        return 0;
    }
    if (x->collected) {
        if (x->coll_len <= WF_APP_MAX_SIZE / 2) {
            *flags |= WF_APP_REQ_BODY_END;
            return (uint32_t)x->coll_len;
        }
        return 0;
    }
    if (ch->state == WF_CHAN_EOF && wf_chan_queued(ch) <= WF_APP_MAX_SIZE / 2) {
        *flags |= WF_APP_REQ_BODY_END;
        return (uint32_t)wf_chan_queued(ch);
    }
    return 0;
}

/* Sends the head (one message, with the body when it is small and read
 * already), then puts x on its socket. */
static void
xchg_send_head(app_xchg_t *x)
{
    wf_req_t *r = x->r;
    uint32_t flags = r->rq.tls ? WF_APP_REQ_TLS : 0;
    uint32_t body_size;
    size_t need;
    char *buf = xchg_scratch;

    if (x->sock->port == NULL || wf_port_is_closed(x->sock->port)) {
        /* The process went between the slot and now. */
        x->state = APP_X_DONE;
        wf_app_slot_put(x);
        xchg_fail(x, 503);
        return;
    }
    x->upgrade = r->websocket;
    if (x->upgrade) {
        flags |= WF_APP_REQ_UPGRADE; /* the body is the tunnel's, later */
        body_size = 0;
    } else {
        body_size = xchg_head_body(x, &flags);
    }
    need = wf_app_req_encode(r, x->target, flags, NULL, body_size, buf,
                             sizeof(xchg_scratch));
    if (need > sizeof(xchg_scratch)) {
        buf = malloc(need);
        if (buf == NULL) {
            x->state = APP_X_DONE;
            wf_app_slot_put(x);
            xchg_fail(x, 503);
            return;
        }
        wf_app_req_encode(r, x->target, flags, NULL, body_size, buf, need);
    }
    if (body_size > 0) {
        xchg_body_next(x, buf + need - body_size, body_size);
    }
    x->req_end_sent = (flags & WF_APP_REQ_BODY_END) != 0;
    x->req_sent = body_size;
    x->stream = wf_port_stream_new();
    x->state = APP_X_SENT;
    x->in_app_queue = !wf_list_is_empty(&x->sock->xchgs)
                      && x->proc->slots[x->slot].queued > 0;
    wf_list_add_tail(&x->sock->xchgs, &x->link);
    xchg_cork(x->loop, x->sock->port);
    wf_port_send(x->sock->port, WF_APP_MSG_REQ_HEAD, x->stream, buf, need, NULL,
                 0);
    if (buf != xchg_scratch) {
        free(buf);
    }
    if (x->in_app_queue) {
        /* Waiting behind another request, as it would in the router's
         * queue: queue.timeout bounds that. */
        wf_timer_set(x->loop, &x->timer, x->app->queue_timeout_ms);
    } else if (x->app->timeout_ms > 0) {
        wf_timer_set(x->loop, &x->timer, x->app->timeout_ms);
    }
    if (!x->req_end_sent) {
        xchg_pump_body(x);
    }
}

static void
xchg_dispatch(app_xchg_t *x)
{
    int rc = wf_app_slot_get(x);

    if (rc == WF_OK) {
        xchg_send_head(x);
        return;
    }
    if (rc == WF_AGAIN) {
        wf_timer_set(x->loop, &x->timer, x->app->queue_timeout_ms);
        return;
    }
    wf_log_warn(0, "application \"%s\": queue is full", x->app->name);
    xchg_fail(x, 503);
}

void
wf_app_xchg_assigned(wf_task_t *task)
{
    app_xchg_t *x = wf_container_of(task, app_xchg_t, assign);

    xchg_enter(x);
    wf_timer_stop(x->loop, &x->timer);
    if (x->proc == NULL) {
        /* No process can serve the app (it failed to start or left). */
        x->state = APP_X_NEW;
        xchg_fail(x, 503);
    } else if (x->r == NULL) {
        x->state = APP_X_DONE;
        wf_app_slot_put(x);
    } else {
        xchg_send_head(x);
    }
    xchg_leave(x);
}

/* Streams the request body within the window. */
static void
xchg_pump_body(app_xchg_t *x)
{
    wf_chan_t *ch;

    if (x->state != APP_X_SENT || x->req_end_sent || x->abort_sent
        || (x->responded && !x->tunnel) || x->r == NULL) {
        return;
    }
    ch = &x->r->req_body;
    if (wf_chan_is_aborted(ch)) {
        /* The mux answers the error (400, 408, 413) itself. */
        x->responded = true;
        xchg_abort_app(x);
        return;
    }
    while (x->req_sent - x->req_acked < WF_APP_WINDOW) {
        size_t room =
            wf_min((size_t)(WF_APP_WINDOW - (x->req_sent - x->req_acked)),
                   sizeof(xchg_scratch));
        size_t n = xchg_body_next(x, xchg_scratch, room);

        if (n == 0) {
            break;
        }
        xchg_send(x, WF_APP_MSG_REQ_BODY, xchg_scratch, n);
        x->req_sent += n;
    }
    if (xchg_body_is_done(x)) {
        x->req_end_sent = true;
        xchg_send(x, WF_APP_MSG_REQ_END, NULL, 0);
    }
}

static void
xchg_on_req_body(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, req_body);
    app_xchg_t *x = r->app;

    xchg_enter(x);
    if (x->state == APP_X_NEW && !x->responded) {
        if (wf_chan_is_aborted(ch)) {
            x->responded = true; /* the mux answers */
        } else if (!x->collecting || xchg_collect(x) == WF_OK) {
            xchg_dispatch(x); /* the first bytes (or all) are here */
        }
    } else {
        xchg_pump_body(x);
    }
    xchg_leave(x);
}

static void
xchg_on_handle(wf_req_t *r, const wf_app_desc_t *desc, unsigned target)
{
    app_xchg_t *x;

    if (desc->live == NULL) {
        wf_req_respond_error(r, 503);
        return;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        wf_req_respond_error(r, 503);
        return;
    }
    x->r = r;
    x->app = desc->live;
    x->loop = r->loop;
    x->target = target;
    x->resp_len = WF_APP_LEN_NONE;
    x->file_fd = -1;
    wf_timer_init(&x->timer, xchg_on_timer);
    x->assign.handler = wf_app_xchg_assigned;
    wf_list_init(&x->link);
    r->app = x;
    x->body = wf_xchg_has_body(r);
    x->collecting = x->body && xchg_collects(r);
    xchg_enter(x);
    if (x->body) {
        /* Dispatched on the first bytes, so that a small body goes with
         * the head. */
        x->body_started = true;
        wf_xchg_body_read(r, xchg_on_req_body);
    } else {
        xchg_dispatch(x);
    }
    xchg_leave(x);
}

/* The mux frees r. */
static void
xchg_on_release(wf_req_t *r)
{
    app_xchg_t *x = r->app;

    x->r = NULL;
    switch (x->state) {
    case APP_X_QUEUED:
        if (!wf_app_queue_del(x)) {
            return; /* assigned meanwhile: the task frees x */
        }
        x->state = APP_X_NEW;
        break;
    case APP_X_ASSIGNED:
        return; /* the task frees x */
    case APP_X_SENT:
        if (!x->responded || x->streaming) {
            /* The client left before the response was out. */
            wf_timer_stop(x->loop, &x->timer);
            xchg_abort_app(x);
        }
        return; /* RESP_END frees x */
    case APP_X_NEW:
    case APP_X_DONE:
    case APP_X_NSTATES:
        break;
    }
    if (!x->busy) {
        xchg_free(x);
    }
}

void
wf_app_xchg_sock_lost(app_xchg_t *x)
{
    xchg_enter(x);
    x->state = APP_X_DONE;
    wf_timer_stop(x->loop, &x->timer);
    wf_app_slot_put(x);
    if (xchg_has_r(x)) {
        wf_log_error(0,
                     "application \"%s\": process exited with a request "
                     "in progress",
                     x->app->name);
    }
    xchg_fail(x, 502);
    xchg_leave(x);
}

/* ---- The response ---------------------------------------------------- */

/* Fields the router writes itself or that are hop-by-hop: never passed
 * from the app as they are. */
#define XCHG_FIELD(s)    \
    {                    \
        sizeof(s) - 1, s \
    }
static const wf_str_t xchg_skip_fields[] = {
    XCHG_FIELD("Connection"),        XCHG_FIELD("Date"),
    XCHG_FIELD("Keep-Alive"),        XCHG_FIELD("Server"),
    XCHG_FIELD("Transfer-Encoding"),
};

static bool
xchg_field_skipped(const char *name, uint32_t n)
{
    for (size_t i = 0; i < wf_nitems(xchg_skip_fields); i++) {
        if (xchg_skip_fields[i].len == n
            && strncasecmp(xchg_skip_fields[i].data, name, n) == 0) {
            return true;
        }
    }
    return false;
}

static bool
xchg_field_ok(const char *s, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') {
            return false;
        }
    }
    return true;
}

/* Parses a uint64 Content-Length; false when it is not one. */
static bool
xchg_parse_length(const char *s, uint32_t n, uint64_t *v)
{
    *v = 0;
    if (n == 0 || n > 19) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        *v = *v * 10 + (uint64_t)(s[i] - '0');
    }
    return true;
}

static int
xchg_mem_reserve(app_xchg_t *x, size_t n)
{
    if (n <= x->mem_cap) {
        return WF_OK;
    }
    free(x->mem);
    x->mem = malloc(wf_max(n, (size_t)XCHG_MEM_MIN));
    x->mem_cap = x->mem != NULL ? wf_max(n, (size_t)XCHG_MEM_MIN) : 0;
    return x->mem != NULL ? WF_OK : WF_ERROR;
}

/* Renders the app's fields as "Name: value\r\n" lines into x->mem
 * (followed by room for body_size bytes) and notes its Content-Length.
 * Returns the offset of the body in x->mem, or -1 on bad input. */
static ssize_t
xchg_resp_fields(app_xchg_t *x, const unsigned char *m, size_t len, size_t *off,
                 unsigned nfields, uint32_t body_size)
{
    size_t start = *off;
    size_t need = body_size;
    char *p;

    for (unsigned i = 0; i < 2 * nfields; i++) {
        const char *sv;
        uint32_t n;

        if (!wf_app_str_get(m, len, off, &sv, &n)) {
            return -1;
        }
        need += n + 2;
    }
    if (xchg_mem_reserve(x, need) != WF_OK) {
        return -1;
    }
    p = x->mem;
    *off = start;
    for (unsigned i = 0; i < nfields; i++) {
        const char *name;
        const char *value;
        uint32_t nlen;
        uint32_t vlen;

        wf_app_str_get(m, len, off, &name, &nlen);
        wf_app_str_get(m, len, off, &value, &vlen);
        if (nlen == 14 && strncasecmp(name, "Content-Length", 14) == 0) {
            if (!xchg_parse_length(value, vlen, &x->resp_len)) {
                return -1;
            }
            continue;
        }
        if (nlen == 0 || xchg_field_skipped(name, nlen)
            || !xchg_field_ok(name, nlen) || !xchg_field_ok(value, vlen)) {
            continue;
        }
        memcpy(p, name, nlen);
        p += nlen;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, value, vlen);
        p += vlen;
        *p++ = '\r';
        *p++ = '\n';
    }
    return p - x->mem;
}

/* Acknowledges the body bytes the client took since the last ack, once
 * they are half a window; else asks to be woken when it takes more. */
static void
xchg_resp_ack(app_xchg_t *x)
{
    wf_chan_t *ch = &x->r->resp_body;
    uint64_t taken = x->resp_got - wf_chan_queued(ch);
    uint64_t n = taken > x->resp_acked ? taken - x->resp_acked : 0;

    if (n >= WF_APP_WINDOW / 2) {
        x->resp_acked = taken;
        xchg_send(x, WF_APP_MSG_RESP_ACK, &n, sizeof(n));
        return;
    }
    if (x->resp_got - x->resp_acked >= WF_APP_WINDOW / 2) {
        wf_chan_wait_room(ch);
    }
}

static void
xchg_on_resp_room(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, resp_body);
    app_xchg_t *x = r->app;

    xchg_enter(x);
    if (x->streaming && !wf_chan_is_aborted(ch)) {
        xchg_resp_ack(x);
    }
    xchg_leave(x);
}

/* Writes body bytes of the app into the response channel, holding the
 * app to its Content-Length.  Bytes for a client that is gone are
 * acknowledged at once, so that the app never waits on them. */
static void
xchg_resp_write(app_xchg_t *x, const char *p, size_t n)
{
    wf_chan_t *ch;
    ssize_t k;

    if (n == 0) {
        return;
    }
    if (!xchg_has_r(x) || !x->streaming) {
        uint64_t v = n;

        xchg_send(x, WF_APP_MSG_RESP_ACK, &v, sizeof(v));
        return;
    }
    ch = &x->r->resp_body;
    if (x->resp_len != WF_APP_LEN_NONE && n > x->resp_len - x->resp_got) {
        wf_log_error(0,
                     "application \"%s\" sent more than its "
                     "Content-Length",
                     x->app->name);
        xchg_fail(x, 502);
        xchg_abort_app(x);
        return;
    }
    k = wf_chan_write(ch, p, n);
    if (k != (ssize_t)n) {
        /* Over the window, or the client is gone. */
        xchg_fail(x, 502);
        xchg_abort_app(x);
        return;
    }
    x->resp_got += n;
    xchg_resp_ack(x);
}

/* Sends a file piece inside a stream: read into the channel (the window
 * does not count it; it is acknowledged as if taken).  A big piece there
 * is refused rather than held in memory: the whole body as one file is
 * the sendfile() path. */
static void
xchg_stream_file(app_xchg_t *x, int fd, uint64_t off, uint64_t len)
{
    wf_chan_t *ch = &x->r->resp_body;

    if (len > XCHG_FILE_PIECE_MAX
        || (x->resp_len != WF_APP_LEN_NONE
            && len > x->resp_len - x->resp_got)) {
        wf_log_error(0,
                     "application \"%s\": a file piece of %llu bytes "
                     "inside a streamed body is not supported",
                     x->app->name, (unsigned long long)len);
        xchg_fail(x, 502);
        xchg_abort_app(x);
        return;
    }
    ch->limit += len;
    while (len > 0 && xchg_has_r(x) && x->streaming) {
        ssize_t n = pread(fd, xchg_scratch,
                          (size_t)wf_min(len, (uint64_t)sizeof(xchg_scratch)),
                          (off_t)off);

        if (n <= 0 || wf_chan_write(ch, xchg_scratch, (size_t)n) != n) {
            xchg_fail(x, 502);
            xchg_abort_app(x);
            return;
        }
        off += (uint64_t)n;
        len -= (uint64_t)n;
        x->resp_got += (uint64_t)n;
        x->resp_acked += (uint64_t)n;
    }
}

/* Starts the streamed response held since RESP_HEAD (the body comes in
 * pieces), with a file piece held meanwhile first. */
static void
xchg_stream_begin(app_xchg_t *x)
{
    wf_resp_t *resp;

    if (!x->head_pending) {
        return;
    }
    x->head_pending = false;
    if (!xchg_has_r(x)) {
        return;
    }
    resp = &x->r->resp;
    if (x->resp_len != WF_APP_LEN_NONE) {
        resp->stream_length = true;
        resp->content_length = x->resp_len;
    }
    x->r->resp_body.limit = WF_APP_WINDOW;
    x->responded = true;
    x->streaming = true;
    wf_xchg_stream_start(x->r, xchg_on_resp_room);
    if (x->file_fd >= 0) {
        xchg_stream_file(x, x->file_fd, x->file_off, x->file_len);
        close(x->file_fd);
        x->file_fd = -1;
    }
}

/* The whole body is one file: the simple object the I/O thread pumps
 * with sendfile().  The app's Content-Length must be the file's. */
static void
xchg_resp_file(app_xchg_t *x)
{
    wf_resp_t *resp = &x->r->resp;
    wf_file_t *f;

    if (x->resp_len != WF_APP_LEN_NONE && x->resp_len != x->file_len
        && !resp->head_only) {
        wf_log_error(0,
                     "application \"%s\" sent a file of %llu bytes for "
                     "a Content-Length of %llu",
                     x->app->name, (unsigned long long)x->file_len,
                     (unsigned long long)x->resp_len);
        xchg_fail(x, 502);
        return;
    }
    f = wf_file_from_fd(x->file_fd);
    if (f == NULL) {
        xchg_fail(x, 503);
        return;
    }
    x->file_fd = -1;
    resp->file = f;
    resp->file_off = x->file_off;
    resp->content_length =
        x->resp_len != WF_APP_LEN_NONE ? x->resp_len : x->file_len;
    x->responded = true;
    wf_req_respond(x->r);
}

static void
xchg_on_resp_file(app_xchg_t *x, wf_port_msg_t *msg)
{
    wf_app_resp_file_t rf;
    int fd = wf_port_msg_take_fd(msg, 0);

    if (fd < 0 || msg->size != sizeof(rf) || !x->resp_head) {
        if (fd >= 0) {
            close(fd);
        }
        xchg_fail(x, 502);
        xchg_abort_app(x);
        return;
    }
    memcpy(&rf, wf_port_msg_flatten(msg), sizeof(rf));
    if (x->head_pending && x->file_fd < 0) {
        /* Maybe the whole body: RESP_END will tell. */
        x->file_fd = fd;
        x->file_off = rf.offset;
        x->file_len = rf.length;
        return;
    }
    xchg_stream_begin(x);
    if (xchg_has_r(x) && x->streaming) {
        xchg_stream_file(x, fd, rf.offset, rf.length);
    }
    close(fd);
}

/* RESP_HEAD with the whole body: a memory response.  The app's
 * Content-Length must be the body's (or it is a HEAD). */
static void
xchg_resp_simple(app_xchg_t *x, char *body, uint32_t body_size)
{
    wf_resp_t *resp = &x->r->resp;

    resp->body = wf_str_make(body, body_size);
    resp->content_length = body_size;
    if (x->resp_len != WF_APP_LEN_NONE && x->resp_len != body_size) {
        if (!resp->head_only) {
            wf_log_error(0,
                         "application \"%s\" sent %u bytes for a "
                         "Content-Length of %llu",
                         x->app->name, body_size,
                         (unsigned long long)x->resp_len);
            xchg_fail(x, 502);
            return;
        }
        resp->content_length = x->resp_len;
    }
    x->responded = true;
    wf_req_respond(x->r);
}

/* The app accepted a WebSocket handshake: the exchange becomes a tunnel
 * (client bytes as REQ_BODY, RESP_BODY out raw), which no
 * limits.timeout bounds. */
static void
xchg_tunnel_begin(app_xchg_t *x, const char *body, uint32_t body_size)
{
    wf_timer_stop(x->loop, &x->timer);
    x->r->resp_body.limit = WF_APP_WINDOW;
    x->responded = x->streaming = x->tunnel = true;
    if (wf_xchg_tunnel_start(x->r, xchg_on_req_body, xchg_on_resp_room)
        != WF_OK) {
        x->responded = x->streaming = x->tunnel = false;
        xchg_fail(x, 502);
        xchg_abort_app(x);
        return;
    }
    xchg_resp_write(x, body, body_size);
}

/* The status of an answer to a handshake: a 101 only for one, and never
 * complete; any other answer ends the body the app may wait for. */
static bool
xchg_upgrade_check(app_xchg_t *x, const wf_app_resp_hdr_t *hdr)
{
    if (hdr->status == 101) {
        return x->upgrade && !(hdr->flags & WF_APP_RESP_END);
    }
    if (x->upgrade && !x->req_end_sent) {
        x->req_end_sent = true;
        xchg_send(x, WF_APP_MSG_REQ_END, NULL, 0);
    }
    return true;
}

static void
xchg_resp_head(app_xchg_t *x, wf_port_msg_t *msg)
{
    const unsigned char *m = wf_port_msg_flatten(msg);
    wf_app_resp_hdr_t hdr;
    size_t off = sizeof(hdr);
    ssize_t boff;
    wf_resp_t *resp;

    if (m == NULL || msg->size < sizeof(hdr) || x->resp_head) {
        xchg_fail(x, 502);
        xchg_abort_app(x);
        return;
    }
    memcpy(&hdr, m, sizeof(hdr));
    x->resp_head = true;
    if (!xchg_has_r(x) || x->responded) {
        return; /* answered already (a timeout): the app finishes */
    }
    boff = xchg_resp_fields(x, m, msg->size, &off, hdr.nfields, hdr.body_size);
    if (boff < 0 || hdr.status < 100 || hdr.status > 999
        || msg->size - off != hdr.body_size || !xchg_upgrade_check(x, &hdr)) {
        wf_log_error(0, "application \"%s\" sent a bad response head",
                     x->app->name);
        xchg_fail(x, 502);
        xchg_abort_app(x);
        return;
    }
    if (hdr.body_size > 0) { /* x->mem is NULL for an empty response */
        memcpy(x->mem + boff, m + off, hdr.body_size);
    }
    resp = &x->r->resp;
    resp->status = hdr.status;
    resp->raw_fields = wf_str_make(x->mem, (size_t)boff);
    if (wf_unlikely(hdr.status == 101)) {
        xchg_tunnel_begin(x, x->mem + boff, hdr.body_size);
        return;
    }
    if (hdr.flags & WF_APP_RESP_END) {
        wf_timer_stop(x->loop, &x->timer); /* only RESP_END is to come */
        xchg_resp_simple(x, x->mem + boff, hdr.body_size);
        return;
    }
    x->head_pending = true;
    if (hdr.body_size > 0) {
        xchg_stream_begin(x);
        xchg_resp_write(x, x->mem + boff, hdr.body_size);
    }
}

/* The request is over on the app's side; cut: RESP_END's payload. */
/* The request after x on its socket, if it waited in the app behind x
 * (READY's queued), is served now: its limits.timeout starts, as it
 * would have had the router held it in its queue until x ended. */
static void
xchg_next_in_line(app_xchg_t *x)
{
    app_xchg_t *next;

    if (wf_list_is_empty(&x->sock->xchgs)) {
        return;
    }
    next = wf_container_of(x->sock->xchgs.next, app_xchg_t, link);
    if (!next->in_app_queue) {
        return;
    }
    next->in_app_queue = false;
    if (next->timed_out) {
        return; /* answered already; the app ends it */
    }
    if (next->app->timeout_ms > 0) {
        wf_timer_set(next->loop, &next->timer, next->app->timeout_ms);
    } else {
        wf_timer_stop(next->loop, &next->timer);
    }
}

static void
xchg_resp_end(app_xchg_t *x, uint32_t cut)
{
    wf_list_del(&x->link);
    wf_list_init(&x->link);
    xchg_next_in_line(x);
    x->state = APP_X_DONE;
    wf_timer_stop(x->loop, &x->timer);
    wf_app_slot_put(x);
    if (x->head_pending && cut == 0 && xchg_has_r(x)) {
        /* The body was one file, or nothing. */
        x->head_pending = false;
        if (x->file_fd >= 0) {
            xchg_resp_file(x);
        } else {
            xchg_resp_simple(x, NULL, 0);
        }
    } else if (x->streaming && xchg_has_r(x)) {
        if (cut != 0
            || (x->resp_len != WF_APP_LEN_NONE && x->resp_got != x->resp_len)) {
            xchg_fail(x, 502);
        } else {
            x->streaming = false;
            wf_chan_close(&x->r->resp_body);
        }
    } else if (!x->responded) {
        xchg_fail(x, 502);
    }
    if (wf_list_is_empty(&x->sock->xchgs) && x->sock->port != NULL) {
        /* Nothing more to hear on the socket until the next head. */
        wf_port_read_yield(x->sock->port);
    }
    wf_app_sock_idle(x->sock);
}

static void
xchg_on_resp_end(app_xchg_t *x, wf_port_msg_t *msg)
{
    uint32_t cut = 1;

    if (msg->size == sizeof(cut)) {
        memcpy(&cut, wf_port_msg_flatten(msg), sizeof(cut));
    }
    xchg_resp_end(x, cut);
}

/* RESP_HEAD, and the request's end with it when WF_APP_RESP_DONE says so
 * (a DONE without END is a head cut short). */
static void
xchg_on_resp_head(app_xchg_t *x, wf_port_msg_t *msg)
{
    const unsigned char *m = wf_port_msg_flatten(msg);
    uint32_t flags = 0;

    if (m != NULL && msg->size >= sizeof(wf_app_resp_hdr_t)) {
        memcpy(&flags, m + offsetof(wf_app_resp_hdr_t, flags), sizeof(flags));
    }
    xchg_resp_head(x, msg);
    if (flags & WF_APP_RESP_DONE) {
        xchg_resp_end(x, (flags & WF_APP_RESP_END) ? 0 : 1);
    }
}

static app_xchg_t *
xchg_find(app_sock_t *s, uint64_t stream)
{
    wf_list_for_each(l, &s->xchgs)
    {
        app_xchg_t *x = wf_container_of(l, app_xchg_t, link);

        if (x->stream == stream) {
            return x;
        }
    }
    return NULL;
}

void
wf_app_xchg_on_msg(app_sock_t *s, wf_port_msg_t *msg)
{
    app_xchg_t *x = xchg_find(s, msg->stream);
    uint64_t v;

    if (x == NULL) {
        return; /* a request that ended here already */
    }
    xchg_enter(x);
    x->in_app_queue = false; /* the app is at it */
    if (x->app->timeout_ms > 0 && !x->timed_out && !x->tunnel) {
        /* limits.timeout bounds the app's silence, as in Unit. */
        wf_timer_set(x->loop, &x->timer, x->app->timeout_ms);
    }
    switch (msg->type) {
    case WF_APP_MSG_RESP_HEAD:
        xchg_on_resp_head(x, msg);
        break;
    case WF_APP_MSG_RESP_BODY:
        if (!x->resp_head) {
            xchg_fail(x, 502);
            xchg_abort_app(x);
            break;
        }
        xchg_stream_begin(x);
        xchg_resp_write(x, (const char *)wf_port_msg_flatten(msg), msg->size);
        break;
    case WF_APP_MSG_RESP_FILE:
        xchg_on_resp_file(x, msg);
        break;
    case WF_APP_MSG_RESP_END:
        xchg_on_resp_end(x, msg);
        break;
    case WF_APP_MSG_REQ_ACK:
        if (msg->size == sizeof(v)) {
            memcpy(&v, wf_port_msg_flatten(msg), sizeof(v));
            x->req_acked += wf_min(v, x->req_sent - x->req_acked);
            xchg_pump_body(x);
        }
        break;
    default:
        wf_log_error(0, "application \"%s\": unexpected message %u",
                     x->app->name, (unsigned)msg->type);
        break;
    }
    xchg_leave(x);
}

void
wf_app_xchg_install(void)
{
    wf_http_app_set_handler(xchg_on_handle);
    wf_http_app_set_release(xchg_on_release);
}
