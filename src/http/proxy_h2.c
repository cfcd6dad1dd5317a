/* HTTP/2 to backends (see http/proxy_h2.h and docs/internals/proxy.md,
 * "HTTP/2 to backends").
 *
 * A connection (wf_proxy_h2_conn_t) is one nghttp2 client session on a
 * socket, in the calling thread's pool.  A request (pxh_t, r->proxy_h2)
 * is one stream on it.  nghttp2 owns framing, HPACK, stream states and
 * flow control; this file moves bytes between the socket and the session
 * and between the streams and the exchanges' channels:
 *   - the request body is read from r->req_body by the stream's data
 *     source only when the peer's window lets nghttp2 ask for it;
 *   - the response body goes into r->resp_body; what does not fit waits
 *     in the stream's pend buffer, and the stream's window is given back
 *     (nghttp2_session_consume_stream()) only as bytes enter the channel,
 *     so a slow client holds its backend stream back, bounded by the
 *     window, and never the others (the connection's window is given
 *     back at once).
 *
 * Connection states:
 *   CONNECT  connect() in progress (EPOLLOUT), connect timeout
 *   TLS      the handshake (ALPN h2), connect timeout
 *   READY    streams run; idle timeout while none does
 *   CLOSED   the socket is closed; freed at the end of the tick
 * Streams submitted while connecting are queued by nghttp2 and leave once
 * READY.
 *
 * Lifetimes: nghttp2 is never freed or re-entered from its own callbacks
 * (a close inside one only marks the connection; the session is deleted
 * at the end of the tick), and a pxh_t released by its request is freed
 * at the end of the tick too, so no callback frame outlives its object. */
#include "http/proxy_h2.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/list.h"
#include "core/log.h"
#include "http/exchange.h"
#include "http/proxy_h2_map.h"
#include "http/route.h"
#include "http/upstream.h"
#include "http/upstream_peer.h"
#include "net/tls.h"
#include "net/tls_client.h"

#define PXH_RBUF         16384 /* bytes read from the socket at once */
#define PXH_READ_BURST   8     /* reads per wake-up */
#define PXH_OBUF         32768 /* output gathered before a write */
#define PXH_WINDOW       65535 /* our SETTINGS_INITIAL_WINDOW_SIZE */
#define PXH_CONN_WINDOW  (16 * 1024 * 1024) /* the connection's window */
#define PXH_PEER_STREAMS 100 /* assumed until the peer's SETTINGS came */
#define PXH_NAME_MAX     128

typedef enum pxh_cstate {
    PXH_CONNECT = 0,
    PXH_TLS,
    PXH_READY,
    PXH_CLOSED,
} pxh_cstate_t;

struct wf_proxy_h2_conn {
    wf_io_t io;
    wf_xprt_t xp;
    wf_loop_t *loop;
    wf_timer_t timer;    /* connect, then idle */
    wf_task_t kick;      /* reads what the TLS transport holds */
    wf_task_t free_task; /* the session and c go at the end of the tick */
    nghttp2_session *ng;
    wf_list_t link;    /* in the thread's connections */
    wf_list_t streams; /* pxh_t.link */
    wf_proxy_h2_key_t key;
    wf_proxy_h2_conn_opts_t o;
    pxh_cstate_t state;
    bool pooled;
    bool goaway;   /* the peer's GOAWAY came, or ours went: no new stream */
    bool blocked;  /* the socket would block a write */
    bool flushing; /* in nghttp2 (recv or send): no nested flush */
    unsigned nstreams;
    unsigned idle_max; /* stream-less connections kept for the key */
    uint32_t connect_ms;
    char *obuf;
    size_t olen;
    size_t ooff;
    size_t ocap;
    char name[PXH_NAME_MAX]; /* the server's, for log lines */
};

/* One proxied request: a stream. */
typedef struct pxh {
    wf_req_t *r; /* NULL once r may not be touched */
    wf_loop_t *loop;
    wf_upstream_t *u;
    wf_upstream_server_t *srv; /* its slot held while srv_held */
    bool srv_held;
    bool failed;           /* counts towards the server's passive health */
    wf_proxy_h2_conn_t *c; /* NULL when not on a connection */
    int32_t id;
    wf_list_t link; /* in c->streams */
    wf_timer_t timer;
    wf_task_t free_task;
    char *head; /* the mapped request head nv points into */
    nghttp2_nv *nv;
    size_t nnv;
    wf_proxy_h2_fields_t resp;
    wf_proxy_h2_fields_t trl;
    bool bad;       /* the response's header list was refused */
    bool head_done; /* the final response head came */
    bool in_eof;    /* the backend's END_STREAM came */
    bool req_body;  /* the request has a body */
    bool body_asked;
    bool body_taken; /* request body bytes went to nghttp2 */
    bool req_eof;    /* the request ended (END_STREAM queued) */
    bool deferred;   /* the data source said DEFERRED */
    bool retried;
    bool freeing;
    char *pend; /* response body bytes waiting for room */
    size_t pend_len;
    size_t pend_cap;
} pxh_t;

typedef struct pxh_thread {
    bool ready;
    wf_list_t conns;
    unsigned count;
} pxh_thread_t;

static __thread pxh_thread_t pxh_thr;
static __thread char pxh_rbuf[PXH_RBUF];

static void pxh_conn_flush(wf_proxy_h2_conn_t *c);
static void pxh_conn_close(wf_proxy_h2_conn_t *c);
static void pxh_conn_fail(wf_proxy_h2_conn_t *c, unsigned status,
                          const char *why);
static void pxh_conn_idle(wf_proxy_h2_conn_t *c);
static void pxh_fail(pxh_t *h, unsigned status, const char *why);
static int pxh_submit(pxh_t *h);

static pxh_thread_t *
pxh_thread(void)
{
    if (!pxh_thr.ready) {
        wf_list_init(&pxh_thr.conns);
        pxh_thr.ready = true;
    }
    return &pxh_thr;
}

/* ---- the stream's end -------------------------------------------------- */

static void
pxh_slot_done(pxh_t *h)
{
    if (h->srv_held) {
        h->srv_held = false;
        wf_upstream_done(h->u, h->srv, h->failed);
    }
}

/* Takes h off its connection: its stream is reset when still open and
 * rst (the client went, or the exchange failed), and its slot goes back. */
static void
pxh_unlink(pxh_t *h, bool rst)
{
    wf_proxy_h2_conn_t *c = h->c;

    wf_timer_stop(h->loop, &h->timer);
    if (c != NULL) {
        h->c = NULL;
        wf_list_del(&h->link);
        c->nstreams--;
        if (h->id > 0 && c->state != PXH_CLOSED) {
            nghttp2_session_set_stream_user_data(c->ng, h->id, NULL);
            if (rst && !(h->in_eof && h->req_eof)) {
                nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, h->id,
                                          NGHTTP2_CANCEL);
            }
            pxh_conn_flush(c);
        }
        pxh_conn_idle(c);
    }
    pxh_slot_done(h);
}

/* The request failed: an error status while nothing was sent to the
 * client, else the client's response is cut (the channel aborts). */
static void
pxh_fail(pxh_t *h, unsigned status, const char *why)
{
    wf_req_t *r = h->r;

    wf_log_error(0, "proxy to \"%s\" (h2): %s", h->srv->name, why);
    h->failed = status == 502 || status == 504;
    pxh_unlink(h, true);
    if (r == NULL) {
        return;
    }
    h->r = NULL;
    r->on_abort = NULL;
    if (h->head_done) {
        wf_chan_abort(&r->resp_body);
        return;
    }
    if (h->body_asked) {
        wf_chan_abort(&r->req_body); /* the mux drains the rest */
    }
    wf_req_respond_error(r, status);
}

static void
pxh_on_timer(wf_timer_t *t)
{
    pxh_t *h = wf_container_of(t, pxh_t, timer);

    pxh_fail(h, 504, h->head_done ? "timed out reading the body" : "timed out");
}

static void
pxh_on_abort(wf_req_t *r)
{
    pxh_t *h = r->proxy_h2;

    h->r = NULL;
    pxh_unlink(h, true);
}

/* ---- the request ------------------------------------------------------- */

/* nghttp2 asks for request body bytes (the peer's window has room). */
static ssize_t
pxh_on_req_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                uint32_t *flags, nghttp2_data_source *src, void *user)
{
    pxh_t *h = src->ptr;
    wf_chan_t *ch;
    size_t n = 0;

    wf_unused(ng);
    wf_unused(id);
    wf_unused(user);
    if (h == NULL || h->r == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
    }
    if (!h->body_asked) {
        h->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    ch = &h->r->req_body;
    while (n < len) {
        const char *p;
        size_t k = wf_chan_peek(ch, &p);

        if (k == 0) {
            break;
        }
        k = wf_min(k, len - n);
        memcpy(buf + n, p, k);
        wf_chan_consume(ch, k);
        n += k;
        h->body_taken = true;
    }
    if (wf_chan_is_done(ch)) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        h->req_eof = true;
        return (ssize_t)n;
    }
    if (wf_chan_is_aborted(ch)) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (n == 0) {
        h->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void
pxh_resume(pxh_t *h)
{
    if (h->deferred && h->c != NULL && h->c->state != PXH_CLOSED) {
        h->deferred = false;
        nghttp2_session_resume_data(h->c->ng, h->id);
        pxh_conn_flush(h->c);
    }
}

static void
pxh_on_req_body(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, req_body);
    pxh_t *h = r->proxy_h2;

    if (h == NULL || h->r == NULL) {
        return;
    }
    if (wf_chan_is_aborted(ch)) {
        /* The mux answers (400, 408, 413) or the client is gone. */
        h->r = NULL;
        r->on_abort = NULL;
        pxh_unlink(h, true);
        return;
    }
    pxh_resume(h);
}

/* Asks the mux for the body once the connection is up (a client that
 * waits for 100 Continue gets it only then). */
static void
pxh_ask_body(pxh_t *h)
{
    if (h->req_body && !h->body_asked && h->r != NULL) {
        h->body_asked = true;
        wf_xchg_body_read(h->r, pxh_on_req_body);
        pxh_resume(h);
    }
}

/* "te: trailers" when the client said it (gRPC servers want it; proxy.c's
 * head drops TE as hop-by-hop). */
static bool
pxh_te_trailers(const wf_req_t *r)
{
    for (unsigned i = 0; i < r->head.nheaders; i++) {
        const wf_h1_header_t *f = &r->head.headers[i];

        if (wf_str_eq_nocase(f->name, wf_string("te"))
            && memmem(f->value.data, f->value.len, "trailers", 8) != NULL) {
            return true;
        }
    }
    return false;
}

/* Maps proxy.c's request head to h's header list. */
static int
pxh_map(pxh_t *h, const char *head, size_t len)
{
    nghttp2_nv nv[WF_PROXY_H2_NV_MAX + 1];
    int n;

    h->head = malloc(len);
    if (h->head == NULL) {
        return WF_ERROR;
    }
    memcpy(h->head, head, len);
    /* Reverse tunnels carry :scheme https, as HAProxy's. */
    n = wf_proxy_h2_req_map(h->head, len,
                            h->u->tls != NULL || h->u->rhttp_select != NULL, nv,
                            WF_PROXY_H2_NV_MAX);
    if (n < 0) {
        return WF_ERROR;
    }
    if (pxh_te_trailers(h->r)) {
        nv[n++] = (nghttp2_nv){(uint8_t *)"te", (uint8_t *)"trailers", 2, 8,
                               NGHTTP2_NV_FLAG_NONE};
    }
    h->nv = malloc(sizeof(nghttp2_nv) * (size_t)n);
    if (h->nv == NULL) {
        return WF_ERROR;
    }
    memcpy(h->nv, nv, sizeof(nghttp2_nv) * (size_t)n);
    h->nnv = (size_t)n;
    return WF_OK;
}

/* ---- the response ------------------------------------------------------ */

/* Does the action's "response_headers" replace the field name?  (2xx and
 * 3xx, as in Unit and proxy.c.) */
static bool
pxh_overridden(const pxh_t *h, wf_str_t name)
{
    const wf_action_t *a = h->r != NULL ? h->r->last : NULL;

    if (a == NULL || h->resp.status < 200 || h->resp.status >= 400) {
        return false;
    }
    for (size_t i = 0; i < a->nresp_fields; i++) {
        if (wf_str_eq_nocase(a->resp_fields[i].name, name)) {
            return true;
        }
    }
    return false;
}

static void pxh_on_resp_room(wf_chan_t *ch);

/* The final response head came (end: it ended the stream). */
static void
pxh_respond(pxh_t *h, bool end)
{
    wf_req_t *r = h->r;
    wf_resp_t *resp = &r->resp;
    int64_t cl = h->resp.content_length;
    unsigned s = h->resp.status;

    h->head_done = true;
    resp->status = s;
    resp->raw_fields = wf_str_make(h->resp.data, h->resp.len);
    if (end || r->head.method_id == WF_HTTP_HEAD || s == 204 || s == 304
        || cl == 0) {
        resp->content_length = cl > 0 ? (uint64_t)cl : 0;
        wf_timer_stop(h->loop, &h->timer);
        h->r = NULL;
        r->on_abort = NULL;
        if (!end) {
            pxh_unlink(h, true); /* the rest is not wanted */
        }
        wf_req_respond(r);
        return;
    }
    resp->stream = true;
    if (cl > 0) {
        resp->stream_length = true;
        resp->content_length = (uint64_t)cl;
    }
    wf_timer_set(h->loop, &h->timer, h->u->read_ms);
    wf_xchg_stream_start(r, pxh_on_resp_room);
}

/* The body and the trailers are all in the channel: it ends. */
static void
pxh_finish(pxh_t *h)
{
    wf_req_t *r = h->r;

    wf_timer_stop(h->loop, &h->timer);
    if (h->trl.len > 0) {
        r->resp.trailers = wf_str_make(h->trl.data, h->trl.len);
    }
    h->r = NULL;
    r->on_abort = NULL;
    wf_chan_close(&r->resp_body);
}

static void
pxh_consume(pxh_t *h, size_t n)
{
    if (n > 0 && h->c != NULL && h->c->state != PXH_CLOSED) {
        nghttp2_session_consume_stream(h->c->ng, h->id, n);
    }
}

/* Response body bytes: into the channel while it has room, the rest into
 * pend (bounded by the stream's window, which is not given back for
 * them). */
static int
pxh_body_put(pxh_t *h, const uint8_t *d, size_t len)
{
    wf_chan_t *ch = &h->r->resp_body;
    size_t n = 0;

    while (h->pend_len == 0 && n < len) {
        ssize_t w = wf_chan_write(ch, d + n, len - n);

        if (w == WF_AGAIN) {
            break;
        }
        if (w < 0) {
            return WF_ERROR;
        }
        n += (size_t)w;
    }
    pxh_consume(h, n);
    if (n < len) {
        size_t need = h->pend_len + len - n;

        if (need > h->pend_cap) {
            char *p = realloc(h->pend, wf_max(need, (size_t)PXH_WINDOW));

            if (p == NULL) {
                return WF_ERROR;
            }
            h->pend = p;
            h->pend_cap = wf_max(need, (size_t)PXH_WINDOW);
        }
        memcpy(h->pend + h->pend_len, d + n, len - n);
        h->pend_len += len - n;
        wf_timer_stop(h->loop, &h->timer); /* the client's to time now */
    } else {
        wf_timer_set(h->loop, &h->timer, h->u->read_ms);
    }
    return WF_OK;
}

static void
pxh_on_resp_room(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, resp_body);
    pxh_t *h = r->proxy_h2;
    size_t n = 0;

    if (h == NULL || h->r == NULL) {
        return;
    }
    while (n < h->pend_len) {
        ssize_t w = wf_chan_write(ch, h->pend + n, h->pend_len - n);

        if (w < 0) {
            break;
        }
        n += (size_t)w;
    }
    memmove(h->pend, h->pend + n, h->pend_len - n);
    h->pend_len -= n;
    pxh_consume(h, n);
    if (h->pend_len == 0 && h->in_eof) {
        pxh_finish(h);
        return;
    }
    if (h->pend_len == 0 && h->c != NULL) {
        wf_timer_set(h->loop, &h->timer, h->u->read_ms);
    }
    if (h->c != NULL) {
        pxh_conn_flush(h->c);
    }
}

/* ---- nghttp2's callbacks ------------------------------------------------ */

static pxh_t *
pxh_of(nghttp2_session *ng, int32_t id)
{
    return id > 0 ? nghttp2_session_get_stream_user_data(ng, id) : NULL;
}

static int
pxh_on_header(nghttp2_session *ng, const nghttp2_frame *frame,
              const uint8_t *name, size_t namelen, const uint8_t *value,
              size_t valuelen, uint8_t flags, void *user)
{
    pxh_t *h = pxh_of(ng, frame->hd.stream_id);
    wf_str_t n = wf_str_make((const char *)name, namelen);
    wf_str_t v = wf_str_make((const char *)value, valuelen);
    bool trailer;

    wf_unused(flags);
    wf_unused(user);
    if (h == NULL || frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    trailer = h->head_done;
    if (!trailer && pxh_overridden(h, n)) {
        return 0;
    }
    if (wf_proxy_h2_resp_field(trailer ? &h->trl : &h->resp, n, v, trailer,
                               NULL, 0)
        != WF_OK) {
        h->bad = true;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

/* The stream's data ended (END_STREAM on DATA or on the trailers). */
static void
pxh_on_eof(pxh_t *h)
{
    h->in_eof = true;
    if (h->r != NULL && h->head_done && h->pend_len == 0) {
        pxh_finish(h);
    }
}

static void
pxh_on_headers(pxh_t *h, const nghttp2_frame *frame)
{
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    if (h->head_done) {
        if (end) {
            pxh_on_eof(h); /* the trailers */
        }
        return;
    }
    if (h->resp.status >= 100 && h->resp.status < 200) {
        wf_proxy_h2_fields_fini(&h->resp); /* interim: skipped */
        return;
    }
    if (h->r == NULL) {
        return;
    }
    free(h->nv); /* no retry after a response */
    h->nv = NULL;
    if (end) {
        h->in_eof = true;
    }
    pxh_respond(h, end);
}

static int
pxh_on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    wf_proxy_h2_conn_t *c = user;
    pxh_t *h;

    if (frame->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true; /* nghttp2 refuses the streams past its last */
        return 0;
    }
    h = pxh_of(ng, frame->hd.stream_id);
    if (h == NULL) {
        return 0;
    }
    if (frame->hd.type == NGHTTP2_HEADERS) {
        pxh_on_headers(h, frame);
    } else if (frame->hd.type == NGHTTP2_DATA
               && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        pxh_on_eof(h);
    }
    return 0;
}

static int
pxh_on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
            size_t len, void *user)
{
    pxh_t *h = pxh_of(ng, id);

    wf_unused(flags);
    wf_unused(user);
    nghttp2_session_consume_connection(ng, len);
    if (h == NULL || h->r == NULL || !h->head_done) {
        nghttp2_session_consume_stream(ng, id, len);
        return 0;
    }
    if (pxh_body_put(h, data, len) != WF_OK) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

/* May the request go again on another connection?  Only a stream the
 * server refused (REFUSED_STREAM, or past a GOAWAY's last stream: it was
 * not processed, RFC 9113 8.7) whose body nobody has read yet. */
static bool
pxh_can_retry(const pxh_t *h, uint32_t error)
{
    return error == NGHTTP2_REFUSED_STREAM && !h->head_done && !h->retried
           && !h->body_taken && h->r != NULL && h->nv != NULL;
}

static int
pxh_on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error, void *user)
{
    pxh_t *h = pxh_of(ng, id);
    char why[96];

    wf_unused(user);
    if (h == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    h->id = 0;
    if (pxh_can_retry(h, error)) {
        wf_proxy_h2_conn_t *c = h->c;

        h->retried = true;
        wf_list_del(&h->link);
        c->nstreams--;
        h->c = NULL;
        pxh_conn_idle(c);
        if (pxh_submit(h) != WF_OK) {
            pxh_fail(h, 502, strerror(errno));
        }
        return 0;
    }
    if (h->in_eof && !h->bad) {
        pxh_unlink(h, false); /* done: the channel ends when drained */
        return 0;
    }
    if (h->bad) {
        snprintf(why, sizeof(why), "invalid response head");
    } else {
        snprintf(why, sizeof(why), "stream closed: %s",
                 nghttp2_http2_strerror(error));
    }
    pxh_fail(h, 502, why);
    return 0;
}

/* ---- the connection's I/O ---------------------------------------------- */

static void
pxh_conn_poll(wf_proxy_h2_conn_t *c)
{
    uint32_t ev = EPOLLIN | EPOLLRDHUP | (c->blocked ? EPOLLOUT : 0);

    if (c->state == PXH_READY && ev != c->io.events) {
        wf_io_mod(c->loop, &c->io, ev);
    }
}

/* Gathers nghttp2's frames into obuf. */
static int
pxh_conn_gather(wf_proxy_h2_conn_t *c)
{
    c->ooff = c->olen = 0;
    while (c->olen < PXH_OBUF) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->ng, &d);

        if (n < 0) {
            return WF_ERROR;
        }
        if (n == 0 || c->state == PXH_CLOSED) {
            break;
        }
        if (c->olen + (size_t)n > c->ocap) {
            size_t cap = wf_max(c->olen + (size_t)n, (size_t)PXH_OBUF);
            char *b = realloc(c->obuf, cap);

            if (b == NULL) {
                return WF_ERROR;
            }
            c->obuf = b;
            c->ocap = cap;
        }
        memcpy(c->obuf + c->olen, d, (size_t)n);
        c->olen += (size_t)n;
    }
    return WF_OK;
}

/* Sends what nghttp2 has; stops at a full socket (EPOLLOUT resumes). */
static int
pxh_conn_write(wf_proxy_h2_conn_t *c)
{
    for (;;) {
        ssize_t n;

        if (c->ooff == c->olen) {
            if (pxh_conn_gather(c) != WF_OK) {
                return WF_ERROR;
            }
            if (c->olen == 0 || c->state == PXH_CLOSED) {
                return WF_OK;
            }
        }
        n = wf_xprt_send(&c->xp, c->io.fd, c->obuf + c->ooff, c->olen - c->ooff,
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                c->blocked = true;
                return WF_OK;
            }
            return WF_ERROR;
        }
        c->ooff += (size_t)n;
    }
}

static void
pxh_conn_flush(wf_proxy_h2_conn_t *c)
{
    int rc;

    if (c->state != PXH_READY || c->flushing || c->blocked) {
        return;
    }
    c->flushing = true;
    rc = pxh_conn_write(c);
    c->flushing = false;
    if (rc != WF_OK) {
        pxh_conn_fail(c, 502, "send failed");
        return;
    }
    if (c->state != PXH_READY) {
        return;
    }
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng)
        && c->ooff == c->olen) {
        pxh_conn_fail(c, 502, "connection ended");
        return;
    }
    pxh_conn_poll(c);
}

static void
pxh_on_kick(wf_task_t *t)
{
    wf_proxy_h2_conn_t *c = wf_container_of(t, wf_proxy_h2_conn_t, kick);

    c->io.handler(&c->io, EPOLLIN);
}

/* Feeds n bytes to the session.  Returns WF_OK, or WF_ERROR once c
 * failed. */
static int
pxh_conn_recv(wf_proxy_h2_conn_t *c, const char *buf, size_t n)
{
    ssize_t rv;

    c->flushing = true;
    rv = nghttp2_session_mem_recv(c->ng, (const uint8_t *)buf, n);
    c->flushing = false;
    if (c->state == PXH_CLOSED) {
        return WF_ERROR;
    }
    if (rv < 0) {
        char why[128];

        snprintf(why, sizeof(why), "protocol error: %s",
                 nghttp2_strerror((int)rv));
        pxh_conn_fail(c, 502, why);
        return WF_ERROR;
    }
    return WF_OK;
}

static void
pxh_conn_read(wf_proxy_h2_conn_t *c)
{
    for (int i = 0; i < PXH_READ_BURST; i++) {
        ssize_t n = wf_xprt_recv(&c->xp, c->io.fd, pxh_rbuf, sizeof(pxh_rbuf));

        if (n == 0) {
            pxh_conn_fail(c, 502, "the server closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }
            pxh_conn_fail(c, 502, "recv failed");
            return;
        }
        if (pxh_conn_recv(c, pxh_rbuf, (size_t)n) != WF_OK) {
            return;
        }
        if ((size_t)n < sizeof(pxh_rbuf) && !wf_xprt_pending(&c->xp)) {
            break;
        }
    }
    if (wf_xprt_pending(&c->xp)) {
        wf_task_schedule(c->loop, &c->kick);
    }
}

/* The session is up (TCP, and TLS with h2): queued streams leave. */
static void
pxh_conn_ready(wf_proxy_h2_conn_t *c)
{
    wf_list_t *l;

    c->state = PXH_READY;
    wf_timer_stop(c->loop, &c->timer);
    wf_io_mod(c->loop, &c->io, EPOLLIN | EPOLLRDHUP);
    for (l = c->streams.next; l != &c->streams;) {
        pxh_t *h = wf_container_of(l, pxh_t, link);

        l = l->next;
        pxh_ask_body(h);
    }
    pxh_conn_flush(c);
    if (c->state == PXH_READY) {
        pxh_conn_idle(c);
    }
}

static void
pxh_conn_tls_step(wf_proxy_h2_conn_t *c)
{
    uint32_t ev = 0;
    char why[256], msg[300];
    int rc = wf_tls_cli_handshake(&c->xp, &ev, why, sizeof(why));

    if (rc == WF_AGAIN) {
        if (ev != c->io.events) {
            wf_io_mod(c->loop, &c->io, ev);
        }
        return;
    }
    if (rc != WF_OK) {
        snprintf(msg, sizeof(msg), "TLS handshake failed: %s", why);
        pxh_conn_fail(c, 502, msg);
        return;
    }
    if (!wf_tls_alpn_h2(&c->xp)) {
        pxh_conn_fail(c, 502, "TLS: the server did not select h2 (ALPN)");
        return;
    }
    pxh_conn_ready(c);
}

static void
pxh_conn_on_connect(wf_proxy_h2_conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0
        || err != 0) {
        pxh_conn_fail(c, 502, "connect failed");
        return;
    }
    if (wf_xprt_is_tls(&c->xp)) {
        c->state = PXH_TLS;
        pxh_conn_tls_step(c);
        return;
    }
    pxh_conn_ready(c);
}

static void
pxh_conn_on_io(wf_io_t *io, uint32_t events)
{
    wf_proxy_h2_conn_t *c = wf_container_of(io, wf_proxy_h2_conn_t, io);

    switch (c->state) {
    case PXH_CONNECT:
        pxh_conn_on_connect(c);
        return;
    case PXH_TLS:
        pxh_conn_tls_step(c);
        return;
    case PXH_READY:
        break;
    case PXH_CLOSED:
        return;
    }
    if ((events & EPOLLOUT) != 0) {
        c->blocked = false;
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
        pxh_conn_read(c);
    }
    pxh_conn_flush(c);
}

static void
pxh_conn_on_timer(wf_timer_t *t)
{
    wf_proxy_h2_conn_t *c = wf_container_of(t, wf_proxy_h2_conn_t, timer);

    if (c->state != PXH_READY) {
        pxh_conn_fail(c, 504, "connect timed out");
        return;
    }
    if (c->nstreams == 0) {
        /* Idle: a GOAWAY if it goes out at once, then the close. */
        nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR);
        pxh_conn_flush(c);
        pxh_conn_close(c);
    }
}

/* ---- the connection's life --------------------------------------------- */

static void
pxh_conn_on_free(wf_task_t *t)
{
    wf_proxy_h2_conn_t *c = wf_container_of(t, wf_proxy_h2_conn_t, free_task);

    nghttp2_session_del(c->ng);
    free(c->obuf);
    free(c);
}

/* Closes the socket; c is freed at the end of the tick.  Its streams must
 * be gone (pxh_conn_fail() fails them first). */
static void
pxh_conn_close(wf_proxy_h2_conn_t *c)
{
    if (c->state == PXH_CLOSED) {
        return;
    }
    c->state = PXH_CLOSED;
    wf_io_del(c->loop, &c->io);
    wf_xprt_close(&c->xp);
    close(c->io.fd);
    c->io.fd = -1;
    wf_timer_stop(c->loop, &c->timer);
    wf_list_del(&c->kick.link);
    wf_list_init(&c->kick.link);
    wf_list_del(&c->link);
    pxh_thread()->count--;
    if (c->o.conns != NULL) {
        atomic_fetch_sub_explicit(c->o.conns, 1, memory_order_relaxed);
    }
    if (c->o.on_close != NULL) {
        c->o.on_close(c, c->o.data);
    }
    wf_task_defer(c->loop, &c->free_task);
}

/* The connection died: each of its streams fails (502 before its head,
 * a cut response after), then it closes. */
static void
pxh_conn_fail(wf_proxy_h2_conn_t *c, unsigned status, const char *why)
{
    if (c->state == PXH_CLOSED) {
        return;
    }
    c->goaway = true;
    if (wf_list_is_empty(&c->streams)) {
        wf_log_info("proxy to \"%s\" (h2): %s", c->name, why);
    }
    while (!wf_list_is_empty(&c->streams)) {
        pxh_t *h = wf_container_of(c->streams.next, pxh_t, link);

        h->id = 0; /* no RST: the session is over */
        pxh_fail(h, status, why);
    }
    pxh_conn_close(c);
}

/* Without a stream, c is kept for idle_ms, unless idle_max stream-less
 * connections to the same key are kept already or it cannot take new
 * streams any more. */
static void
pxh_conn_idle(wf_proxy_h2_conn_t *c)
{
    unsigned idle = 0;

    if (c->state != PXH_READY) {
        return;
    }
    if (c->nstreams > 0) {
        wf_timer_stop(c->loop, &c->timer);
        return;
    }
    if (c->goaway) {
        pxh_conn_close(c);
        return;
    }
    wf_list_for_each(l, &pxh_thread()->conns)
    {
        wf_proxy_h2_conn_t *o = wf_container_of(l, wf_proxy_h2_conn_t, link);

        if (o != c && o->nstreams == 0 && o->state == PXH_READY
            && o->key.tag == c->key.tag && o->key.addrlen == c->key.addrlen
            && memcmp(&o->key.addr, &c->key.addr, c->key.addrlen) == 0) {
            idle++;
        }
    }
    if (idle >= c->idle_max) {
        pxh_conn_close(c);
        return;
    }
    if (c->o.idle_ms > 0) {
        wf_timer_set(c->loop, &c->timer, c->o.idle_ms);
    }
}

static const nghttp2_session_callbacks *
pxh_callbacks(void)
{
    static __thread nghttp2_session_callbacks *cbs;

    if (cbs == NULL && nghttp2_session_callbacks_new(&cbs) == 0) {
        nghttp2_session_callbacks_set_on_header_callback(cbs, pxh_on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
                                                             pxh_on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                                  pxh_on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(
            cbs, pxh_on_stream_close);
    }
    return cbs;
}

static int
pxh_session_new(wf_proxy_h2_conn_t *c)
{
    const nghttp2_session_callbacks *cbs = pxh_callbacks();
    nghttp2_option *opt;
    nghttp2_settings_entry set[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, PXH_WINDOW},
    };
    int rc;

    if (cbs == NULL || nghttp2_option_new(&opt) != 0) {
        return WF_ERROR;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, PXH_PEER_STREAMS);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    rc = nghttp2_session_client_new2(&c->ng, cbs, c, opt);
    nghttp2_option_del(opt);
    if (rc != 0) {
        c->ng = NULL;
        return WF_ERROR;
    }
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, set, wf_nitems(set))
            != 0
        || nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
                                                 PXH_CONN_WINDOW)
               != 0) {
        nghttp2_session_del(c->ng);
        c->ng = NULL;
        return WF_ERROR;
    }
    return WF_OK;
}

static wf_proxy_h2_conn_t *
pxh_conn_alloc(wf_loop_t *loop, int fd, const wf_proxy_h2_conn_opts_t *o)
{
    wf_proxy_h2_conn_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    if (pxh_session_new(c) != WF_OK) {
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->io.fd = fd;
    c->io.handler = pxh_conn_on_io;
    c->o = *o;
    c->idle_max = o->idle_max > 0 ? o->idle_max : 1;
    wf_timer_init(&c->timer, pxh_conn_on_timer);
    c->kick.handler = pxh_on_kick;
    wf_list_init(&c->kick.link);
    c->free_task.handler = pxh_conn_on_free;
    wf_list_init(&c->free_task.link);
    wf_list_init(&c->streams);
    wf_list_init(&c->link);
    snprintf(c->name, sizeof(c->name), "%s", "reverse");
    return c;
}

/* Counts c as open on this thread (and in its counter). */
static void
pxh_conn_track(wf_proxy_h2_conn_t *c)
{
    pxh_thread_t *t = pxh_thread();

    wf_list_add_tail(&t->conns, &c->link);
    t->count++;
    if (c->o.conns != NULL) {
        atomic_fetch_add_explicit(c->o.conns, 1, memory_order_relaxed);
    }
}

wf_proxy_h2_conn_t *
wf_proxy_h2_conn_create(wf_loop_t *loop, int fd, wf_xprt_t *xp, bool registered,
                        const char *rbuf, size_t n,
                        const wf_proxy_h2_conn_opts_t *o)
{
    wf_proxy_h2_conn_t *c = pxh_conn_alloc(loop, fd, o);

    if (c == NULL) {
        return NULL;
    }
    if (o->no_preface) {
        const uint8_t *d;

        /* nghttp2 gives a client session's magic alone, first. */
        if (nghttp2_session_mem_send(c->ng, &d) != 24) {
            nghttp2_session_del(c->ng);
            free(c);
            return NULL;
        }
    }
    c->io.events = EPOLLIN | EPOLLRDHUP;
    if ((registered ? wf_io_table_set(&c->io) : WF_OK) != WF_OK
        || (registered ? wf_io_mod(loop, &c->io, c->io.events)
                       : wf_io_add(loop, &c->io, c->io.events))
               != WF_OK) {
        nghttp2_session_del(c->ng);
        free(c);
        return NULL;
    }
    c->xp = *xp;
    *xp = (wf_xprt_t){0};
    c->state = PXH_READY;
    pxh_conn_track(c);
    if (n > 0 && pxh_conn_recv(c, rbuf, n) != WF_OK) {
        return c; /* failed: closed, freed at the end of the tick */
    }
    pxh_conn_flush(c);
    return c;
}

int
wf_proxy_h2_pool_add(wf_proxy_h2_conn_t *c, const wf_proxy_h2_key_t *key)
{
    if (c->pooled) {
        return WF_ERROR;
    }
    c->key = *key;
    c->pooled = true;
    pxh_conn_idle(c);
    return WF_OK;
}

void
wf_proxy_h2_conn_shutdown(wf_proxy_h2_conn_t *c)
{
    if (c->state == PXH_CLOSED || c->goaway) {
        return;
    }
    c->goaway = true;
    nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(c->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    pxh_conn_flush(c);
    pxh_conn_idle(c);
}

unsigned
wf_proxy_h2_conn_streams(const wf_proxy_h2_conn_t *c)
{
    return c->nstreams;
}

bool
wf_proxy_h2_conn_has_room(const wf_proxy_h2_conn_t *c)
{
    uint32_t max;

    if (c->state == PXH_CLOSED || c->goaway || !c->pooled) {
        return false;
    }
    max = nghttp2_session_get_remote_settings(
        c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return c->nstreams < max;
}

unsigned
wf_proxy_h2_pool_count(void)
{
    return pxh_thread()->count;
}

void
wf_proxy_h2_thread_exit(void)
{
    pxh_thread_t *t = pxh_thread();

    while (!wf_list_is_empty(&t->conns)) {
        wf_proxy_h2_conn_t *c =
            wf_container_of(t->conns.next, wf_proxy_h2_conn_t, link);

        pxh_conn_fail(c, 502, "the thread exits");
        wf_list_del(&c->free_task.link);
        pxh_conn_on_free(&c->free_task);
    }
}

/* ---- dialing ------------------------------------------------------------ */

static void
pxh_key_of(const pxh_t *h, wf_proxy_h2_key_t *k)
{
    memset(k, 0, sizeof(*k));
    memcpy(&k->addr, &h->srv->addr, h->srv->addrlen);
    k->addrlen = h->srv->addrlen;
    k->tag = h->u->tls != NULL ? wf_tls_cli_id(h->u->tls) : 0;
}

/* The matching connection with room and the fewest streams; it moves
 * to the list's end, so that equal ones take turns (reverse tunnels of
 * one name spread their requests). */
static wf_proxy_h2_conn_t *
pxh_pool_find(const wf_proxy_h2_key_t *k)
{
    pxh_thread_t *t = pxh_thread();
    wf_proxy_h2_conn_t *best = NULL;

    wf_list_for_each(l, &t->conns)
    {
        wf_proxy_h2_conn_t *c = wf_container_of(l, wf_proxy_h2_conn_t, link);

        if (c->key.tag == k->tag && c->key.addrlen == k->addrlen
            && memcmp(&c->key.addr, &k->addr, k->addrlen) == 0
            && wf_proxy_h2_conn_has_room(c)
            && (best == NULL || c->nstreams < best->nstreams)) {
            best = c;
        }
    }
    if (best != NULL) {
        wf_list_del(&best->link);
        wf_list_add_tail(&t->conns, &best->link);
    }
    return best;
}

/* The name sent in SNI and verified (as proxy.c's px_tls_name()). */
static const char *
pxh_tls_name(const pxh_t *h, char *buf, size_t size)
{
    const char *host = h->srv->host;
    const char *colon = host != NULL ? strrchr(host, ':') : NULL;
    size_t len = colon != NULL ? (size_t)(colon - host) : 0;

    if (h->u->sni != NULL || len == 0 || len >= size) {
        return h->u->sni;
    }
    memcpy(buf, host, len);
    buf[len] = '\0';
    return buf;
}

/* TLS is opened at once (the SSL holds its context, which the snapshot
 * may drop before the TCP connect ends); the handshake follows it. */
static int
pxh_dial_tls(wf_proxy_h2_conn_t *c, const pxh_t *h)
{
    char name[256];
    const wf_upstream_server_t *s = h->srv;

    if (wf_tls_cli_open(&c->xp, h->u->tls, c->io.fd,
                        pxh_tls_name(h, name, sizeof(name)),
                        (const struct sockaddr *)&s->addr, s->addrlen)
        != WF_OK) {
        return WF_ERROR;
    }
    return wf_tls_cli_alpn_h2(&c->xp);
}

/* Opens a connection to h's server and puts it in the pool.  NULL with
 * errno set on failure. */
static wf_proxy_h2_conn_t *
pxh_dial(const pxh_t *h, const wf_proxy_h2_key_t *k)
{
    const wf_upstream_server_t *s = h->srv;
    wf_proxy_h2_conn_opts_t o = {.idle_ms = h->u->idle_ms};
    wf_proxy_h2_conn_t *c;
    int fd;

    if (s->addr.ss_family == AF_UNSPEC) {
        errno = ENOTCONN; /* reverse: never dialed */
        return NULL;
    }
    fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0) {
        return NULL;
    }
    if (s->addr.ss_family != AF_UNIX) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    }
    c = pxh_conn_alloc(h->loop, fd, &o);
    if (c == NULL
        || (connect(fd, (const struct sockaddr *)&s->addr, s->addrlen) != 0
            && errno != EINPROGRESS)) {
        goto fail;
    }
    if ((h->u->tls != NULL && pxh_dial_tls(c, h) != WF_OK)
        || wf_io_add(h->loop, &c->io, EPOLLOUT) != WF_OK) {
        goto fail;
    }
    snprintf(c->name, sizeof(c->name), "%s", s->name);
    c->idle_max = wf_max(h->u->idle_max, 1u);
    c->state = PXH_CONNECT;
    c->key = *k;
    c->pooled = true;
    pxh_conn_track(c);
    wf_timer_set(h->loop, &c->timer, h->u->connect_ms);
    return c;

fail:
    if (c != NULL) {
        int e = errno;

        wf_xprt_close(&c->xp);
        nghttp2_session_del(c->ng);
        free(c);
        errno = e;
    }
    close(fd);
    return NULL;
}

/* Sends h's request as a stream on a pooled connection with room, or on
 * a new one.  Returns WF_OK, or WF_ERROR with errno set. */
static int
pxh_submit(pxh_t *h)
{
    nghttp2_data_provider prd = {.source.ptr = h,
                                 .read_callback = pxh_on_req_read};
    wf_proxy_h2_key_t k;
    wf_proxy_h2_conn_t *c;
    int32_t id;

    pxh_key_of(h, &k);
    c = pxh_pool_find(&k);
    if (c == NULL) {
        c = pxh_dial(h, &k);
        if (c == NULL) {
            return WF_ERROR;
        }
    }
    id = nghttp2_submit_request(c->ng, NULL, h->nv, h->nnv,
                                h->req_body ? &prd : NULL, h);
    if (id < 0) {
        errno = EPROTO;
        pxh_conn_idle(c);
        return WF_ERROR;
    }
    h->req_eof = !h->req_body;
    h->c = c;
    h->id = id;
    wf_list_add_tail(&c->streams, &h->link);
    c->nstreams++;
    wf_timer_set(h->loop, &h->timer, h->u->head_ms);
    if (c->state == PXH_READY) {
        wf_timer_stop(c->loop, &c->timer);
        pxh_ask_body(h);
        pxh_conn_flush(c);
    }
    return WF_OK;
}

/* ---- the endpoint ------------------------------------------------------- */

static void
pxh_on_free(wf_task_t *t)
{
    pxh_t *h = wf_container_of(t, pxh_t, free_task);

    wf_proxy_h2_fields_fini(&h->resp);
    wf_proxy_h2_fields_fini(&h->trl);
    free(h->pend);
    free(h->nv);
    free(h->head);
    free(h);
}

void
wf_proxy_h2_run(wf_req_t *r, struct wf_upstream *u,
                struct wf_upstream_server *s, const char *head, size_t len)
{
    pxh_t *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        wf_upstream_done(u, s, false);
        wf_req_respond_error(r, 500);
        return;
    }
    r->proxy_h2 = h;
    h->r = r;
    h->loop = r->loop;
    h->u = u;
    h->srv = s;
    h->srv_held = true;
    h->resp.content_length = h->trl.content_length = -1;
    wf_list_init(&h->link);
    wf_timer_init(&h->timer, pxh_on_timer);
    h->free_task.handler = pxh_on_free;
    wf_list_init(&h->free_task.link);
    if (r->websocket) {
        pxh_fail(h, 502, "WebSocket is not proxied over HTTP/2");
        return;
    }
    if (pxh_map(h, head, len) != WF_OK) {
        pxh_fail(h, 500, "out of memory, or an invalid request head");
        return;
    }
    h->req_body = wf_xchg_has_body(r);
    r->on_abort = pxh_on_abort;
    if (pxh_submit(h) != WF_OK) {
        pxh_fail(h, 502, strerror(errno));
    }
}

void
wf_proxy_h2_req_release(wf_req_t *r)
{
    pxh_t *h = r->proxy_h2;

    if (h == NULL) {
        return;
    }
    r->proxy_h2 = NULL;
    h->r = NULL;
    pxh_unlink(h, true);
    wf_task_defer(h->loop, &h->free_task);
}
