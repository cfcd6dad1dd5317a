/* The HTTP/2 mux: one nghttp2 session per connection, one exchange per
 * stream.  nghttp2 owns framing, HPACK, the stream states and flow
 * control; this file moves bytes between the socket and the session
 * (mem_recv/mem_send), maps each stream to an exchange (http/h2_map.c)
 * and pumps bodies through the exchange channels under back-pressure.
 * See docs/internals/h2.md. */
#include "http/h2_conn.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/listen.h"
#include "core/log.h"
#include "http/access_log.h"
#include "http/exchange.h"
#include "http/forwarded.h"
#include "http/h2_map.h"
#include "http/mux.h"
#include "http/req.h"
#include "http/respond.h"
#include "http/uri.h"

#define H2_RBUF_SIZE     16384 /* bytes read from the socket at once */
#define H2_READ_BURST    8     /* reads per wake-up */
#define H2_OBUF_SIZE     32768 /* output gathered before a write */
#define H2_RESETS_MAX    200   /* peer RST_STREAMs per interval, then */
#define H2_RESETS_MS     1000  /* GOAWAY ENHANCE_YOUR_CALM */
#define H2_GOAWAY_LINGER 2000  /* after our GOAWAY, before closing */

typedef struct h2_conn h2_conn_t;

/* Where a stream's request body goes (as h1's body modes). */
typedef enum h2_body_mode {
    H2_BODY_PENDING = 0, /* the endpoint has not asked: bytes are held */
    H2_BODY_STREAM,      /* into req->req_body */
    H2_BODY_DROP,        /* the endpoint answered: bytes are dropped */
} h2_body_mode_t;

/* RFC 6455 4.1: the base64 of 16 bytes; 4.2.2: of a SHA-1 (20 bytes). */
#define H2_WS_KEY_LEN    24
#define H2_WS_ACCEPT_LEN 28

/* One stream: the exchange endpoints see and what the mux keeps. */
typedef struct h2_stream {
    wf_req_t req;
    h2_conn_t *c;
    int32_t id;
    wf_list_t link;      /* in c->streams */
    wf_task_t free_task; /* frees the stream at the end of the tick */
    wf_h1_snap_t *snap;  /* r->hc and r->root live in it (counted) */
    char *head;          /* the mapped HTTP/1.1 head r->head points in */
    bool dispatched;     /* the endpoint owns req */
    bool responded;      /* the response is submitted */
    bool closed;         /* nghttp2 closed the stream */
    bool job_pending;    /* a helper job holds req */
    bool in_eof;         /* the client's END_STREAM came */
    bool deferred;       /* the data source said DEFERRED */
    bool free_pending;   /* freed once its file bytes are out */
    bool logged;
    bool ws;     /* an extended CONNECT for "websocket" (RFC 8441) */
    bool tunnel; /* MUX_CTL_TUNNEL accepted it: a 101 comes */
    h2_body_mode_t body_mode;
    uint64_t body_seen;
    char *pend; /* request body bytes waiting for room (malloc'd) */
    size_t pend_len;
    size_t pend_cap;

    /* Response body: memory, file, or the channel. */
    wf_str_t body;
    size_t body_off;
    wf_file_t *file;
    uint64_t file_off;
    uint64_t file_left;
    uint64_t nc_off;           /* the no-copy frame's first file byte */
    uint64_t sent;             /* body bytes out, for the access log */
    wf_h2_map_field_t *fields; /* h2_thr's, while submitted */
    nghttp2_nv *nv;
    char ws_key[H2_WS_KEY_LEN + 1]; /* the Sec-WebSocket-Key we made */
} h2_stream_t;

struct h2_conn {
    wf_mux_t mux; /* ops: h2_mux_ops */
    wf_io_t io;
    wf_timer_t timer;
    wf_task_t free_task;
    wf_task_t kick; /* reads what the TLS transport holds */
    wf_list_t link; /* in the thread's connections */
    wf_list_t streams;
    wf_h2_map_req_t map; /* the header list arriving (HEADERS and their
                            CONTINUATIONs never interleave, RFC 9113
                            6.10): its buffers serve every stream */
    wf_xprt_t xp;
    wf_loop_t *loop;
    wf_h1_server_t *srv;
    const wf_h1_site_t *site;
    const wf_forwarded_t *fwd;
    nghttp2_session *ng;
    wf_sockaddr_t remote;
    wf_sockaddr_t local;
    unsigned nstreams; /* streams with an exchange */
    unsigned jobs;     /* helper jobs out */
    unsigned nreqs;    /* requests not yet added to the h1 counters */
    bool closing;      /* fd closed; freed when jobs is 0 */
    bool goaway;       /* our GOAWAY is queued or out */
    bool blocked;      /* the socket would block a write */
    bool flushing;     /* in h2_flush(): no nested sends */
    bool reversed;     /* a reverse connection got the peer's SETTINGS */
    void (*on_event)(void *arg, wf_h2_event_t ev); /* reverse HTTP */
    void *event_arg;
    wf_mux_exit_status_t exit_status;
    unsigned resets;       /* peer resets this interval */
    uint64_t resets_start; /* the interval's start (ms) */
    char *obuf;            /* output not yet written (malloc'd) */
    size_t olen;
    size_t ooff;
    size_t ocap;

    /* A DATA frame's file bytes, sent after obuf (no-copy path): its
     * stream stays allocated until they are out. */
    h2_stream_t *sf_stream; /* NULL: none */
    off_t sf_off;
    uint64_t sf_left;
};

/* Freed streams kept for reuse: a stream (about 7.7 KiB, most of it
 * wf_req_t's inline buffers) is larger than malloc's per-thread caches
 * take, and every request makes one.  Up to as many as a loaded thread
 * has in flight (100 connections x 10 streams: 1000), kept only while the
 * thread has an h2 connection (about 8 MiB at most). */
#define H2_SPARE_MAX 1024

typedef struct h2_thread {
    bool ready;
    wf_list_t all;
    wf_list_t spare; /* freed streams, by link */
    unsigned nspare;
    /* A response's header list while it is submitted (nghttp2 copies the
     * array; names and values stay in r->hbuf): grown, never shrunk. */
    wf_h2_map_field_t *fields;
    nghttp2_nv *nv;
    size_t ncap;
} h2_thread_t;

static __thread h2_thread_t h2_thr;

static void h2_close(h2_conn_t *c);
static void h2_flush(h2_conn_t *c);
static void h2_stream_release(h2_stream_t *s);
static void h2_timer_update(h2_conn_t *c);

static h2_thread_t *
h2_thread(void)
{
    if (!h2_thr.ready) {
        wf_list_init(&h2_thr.all);
        wf_list_init(&h2_thr.spare);
        h2_thr.ready = true;
    }
    return &h2_thr;
}

int
wf_h2_preface_check(const char *p, size_t n)
{
    size_t k = wf_min(n, (size_t)WF_H2_PREFACE_LEN);

    if (memcmp(p, WF_H2_PREFACE, k) != 0) {
        return WF_DECLINED;
    }
    return n >= WF_H2_PREFACE_LEN ? WF_OK : WF_AGAIN;
}

static h2_stream_t *
h2_stream_of(const wf_req_t *r)
{
    return wf_container_of(r, h2_stream_t, req);
}

static h2_stream_t *
h2_stream_get(h2_conn_t *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->ng, id);
}

/* ---- streams ---------------------------------------------------------- */

/* The bound on a request's header list (RFC 9113 6.5.2's measure). */
static uint32_t
h2_header_list_max(const wf_http_conf_t *hc)
{
    size_t h1 = hc->large_header_buffer_size * hc->large_header_buffers;

    return hc->h2_max_header_list_size != 0
               ? hc->h2_max_header_list_size
               : (uint32_t)wf_min(h1, (size_t)UINT32_MAX);
}

/* Keeps a freed stream for the next one, or frees it. */
static void
h2_stream_put(h2_stream_t *s)
{
    h2_thread_t *t = &h2_thr;

    if (!t->ready || t->nspare >= H2_SPARE_MAX || wf_list_is_empty(&t->all)) {
        free(s); /* after wf_h2_thread_exit() too */
        return;
    }
    wf_list_add_tail(&t->spare, &s->link);
    t->nspare++;
}

/* Frees the spare streams (no h2 connection left, or the thread ends). */
static void
h2_spares_free(h2_thread_t *t)
{
    while (t->nspare > 0) {
        h2_stream_t *s = wf_container_of(t->spare.next, h2_stream_t, link);

        wf_list_del(&s->link);
        t->nspare--;
        free(s);
    }
}

/* A zeroed stream: a spare one, else a new one. */
static h2_stream_t *
h2_stream_get_new(void)
{
    h2_thread_t *t = h2_thread();
    h2_stream_t *s;

    if (t->nspare == 0) {
        return calloc(1, sizeof(h2_stream_t));
    }
    s = wf_container_of(t->spare.prev, h2_stream_t, link); /* warmest */
    wf_list_del(&s->link);
    t->nspare--;
    memset(s, 0, sizeof(*s));
    return s;
}

static void
h2_stream_free(wf_task_t *task)
{
    h2_stream_t *s = wf_container_of(task, h2_stream_t, free_task);
    wf_req_t *r = &s->req;

    if (s->c->sf_stream == s && !s->c->closing) {
        s->free_pending = true; /* h2_write() frees it */
        return;
    }
    wf_xchg_fini(r);
    wf_http_req_release(r);
    if (r->uri != r->uri_inline) {
        free(r->uri);
    }
    if (r->hbuf != r->hbuf_inline) {
        free(r->hbuf);
    }
    if (r->host != r->host_inline) {
        free(r->host);
    }
    free(r->loc);
    free(r->target);
    free(s->head);
    free(s->pend);
    wf_h1_snap_unref(s->snap); /* before the stream is reused */
    s->snap = NULL;
    h2_stream_put(s);
}

static h2_stream_t *
h2_stream_new(h2_conn_t *c, int32_t id)
{
    h2_stream_t *s = h2_stream_get_new();
    wf_req_t *r;
    size_t max;

    if (s == NULL) {
        return NULL;
    }
    r = &s->req;
    s->c = c;
    s->id = id;
    s->free_task.handler = h2_stream_free;
    max = h2_header_list_max(c->site->hc);
    wf_h2_map_req_reset(&c->map, max);
    wf_h1_head_init(&r->head);
    wf_xchg_init(r, &c->mux, c->loop);
    r->hc = c->site->hc;
    r->root = c->site->root;
    s->snap = c->site->snap;
    wf_h1_snap_ref(s->snap);
    r->loop = c->loop;
    r->uri_cap = sizeof(r->uri_inline);
    r->uri = r->uri_inline;
    r->hbuf = r->hbuf_inline;
    r->host = r->host_inline;
    r->rq.start_ns = c->loop->now * 1000000u;
    wf_list_add_tail(&c->streams, &s->link);
    c->nstreams++;
    c->nreqs++; /* counted at the next flush: one atomic add per batch */
    return s;
}

/* Tells an endpoint that holds the stream's exchange that it is gone. */
static void
h2_endpoint_abort(h2_stream_t *s)
{
    wf_req_t *r = &s->req;
    void (*on_abort)(wf_req_t * r);

    wf_chan_abort(&r->req_body);
    wf_chan_abort(&r->resp_body);
    on_abort = r->on_abort;
    r->on_abort = NULL;
    if (on_abort != NULL) {
        on_abort(r);
    }
}

static void
h2_access_log(h2_stream_t *s)
{
    wf_access_log_t *al = s->c->site->hc->access_log;
    wf_req_t *r = &s->req;

    if (al == NULL || s->logged || r->resp.status == 0 || r->rq.head == NULL) {
        return;
    }
    s->logged = true;
    r->rq.status = r->resp.status;
    r->rq.body_bytes_sent = s->sent;
    wf_access_log_write(al, &r->rq, s->c->loop);
}

/* The stream ended (closed by nghttp2, or its connection closed).  The
 * exchange is freed once no endpoint or job holds it. */
static void
h2_stream_release(h2_stream_t *s)
{
    h2_conn_t *c = s->c;

    if (s->closed) {
        return;
    }
    s->closed = true;
    if (c->ng != NULL) {
        nghttp2_session_set_stream_user_data(c->ng, s->id, NULL);
    }
    wf_list_del(&s->link);
    c->nstreams--;
    if (s->dispatched && !s->responded) {
        h2_endpoint_abort(s); /* the client reset it before the answer */
    } else if (s->req.resp.stream) {
        h2_endpoint_abort(s);
    }
    h2_access_log(s);
    if (s->job_pending) {
        return; /* freed when the job comes back */
    }
    wf_task_defer(c->loop, &s->free_task);
}

/* ---- request ---------------------------------------------------------- */

static void
h2_req_forwarded(h2_stream_t *s)
{
    wf_forwarded_result_t res;
    wf_req_t *r = &s->req;

    wf_forwarded_apply(s->c->fwd, &r->head, &s->c->remote, &res);
    if (res.has_remote) {
        r->fwd_remote = res.remote;
        r->rq.remote = &r->fwd_remote;
    }
    if (res.has_scheme) {
        r->rq.tls = res.tls;
    }
}

/* Fills what routes read, as h1 does.  Returns WF_OK or a status. */
static unsigned
h2_req_prepare(h2_stream_t *s)
{
    wf_req_t *r = &s->req;
    wf_h1_head_t *h = &r->head;
    size_t len = h->path.len;

    if (len == 0 || h->path.data[0] != '/') {
        return h->method_id == WF_HTTP_OPTIONS ? 404 : 405;
    }
    if (len > sizeof(r->uri_inline)) {
        r->uri = malloc(len);
        if (r->uri == NULL) {
            r->uri = r->uri_inline;
            return 503;
        }
        r->uri_cap = len;
    }
    if (wf_uri_normalize(h->path.data, len, r->uri, &len) != WF_OK) {
        return 400;
    }
    if (h->host.len > sizeof(r->host_inline)) {
        r->host = malloc(h->host.len);
        if (r->host == NULL) {
            r->host = r->host_inline;
            return 503;
        }
    }
    if (wf_h1_host_name(h->host.data, h->host.len, r->host, &r->rq.host)
        != WF_OK) {
        return 400;
    }
    r->rq.method_id = h->method_id;
    r->rq.method = h->method;
    r->rq.uri = wf_str_make(r->uri, len);
    r->rq.head = h;
    r->rq.remote = &s->c->remote;
    r->rq.local = &s->c->local;
    r->rq.tls = wf_xprt_is_tls(&s->c->xp);
    r->rq.xp = &s->c->xp;
    r->resp.head_only = h->method_id == WF_HTTP_HEAD;
    if (s->c->fwd != NULL) {
        h2_req_forwarded(s);
    }
    return WF_OK;
}

/* A new Sec-WebSocket-Key: the base64 of 16 random bytes. */
static int
h2_ws_key(char out[H2_WS_KEY_LEN + 1])
{
    unsigned char raw[16];

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return WF_ERROR;
    }
    return EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw))
                   == H2_WS_KEY_LEN
               ? WF_OK
               : WF_ERROR;
}

/* The Sec-WebSocket-Accept that answers key (RFC 6455 4.2.2). */
static void
h2_ws_accept(const char *key, char out[H2_WS_ACCEPT_LEN + 1])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char in[H2_WS_KEY_LEN + sizeof(guid) - 1];
    unsigned char md[20];
    unsigned int mdlen = 0;

    memcpy(in, key, H2_WS_KEY_LEN);
    memcpy(in + H2_WS_KEY_LEN, guid, sizeof(guid) - 1);
    if (EVP_Digest(in, sizeof(in), md, &mdlen, EVP_sha1(), NULL) != 1
        || mdlen != sizeof(md)) {
        out[0] = '\0'; /* matches no accept */
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, md, sizeof(md));
}

/* Maps the header list to a head (RFC 8441 4, 5): an extended CONNECT for
 * "websocket" becomes the HTTP/1.1 opening handshake with a key of ours,
 * which routes and endpoints handle as on h1; another :protocol is
 * answered 501 (*status).  Returns WF_H2_MAP_*. */
static int
h2_req_map(h2_stream_t *s, size_t *len, unsigned *status)
{
    wf_h2_map_req_t *m = &s->c->map;
    wf_str_t proto = wf_h2_map_req_protocol(m);

    *status = WF_OK;
    if (proto.len == 0) {
        return wf_h2_map_req_head(m, &s->head, len);
    }
    if (proto.len != 9 || memcmp(proto.data, "websocket", 9) != 0) {
        *status = 501; /* a protocol we do not implement */
        return wf_h2_map_req_head(m, &s->head, len);
    }
    if (h2_ws_key(s->ws_key) != WF_OK) {
        return WF_H2_MAP_NOMEM;
    }
    s->ws = true;
    return wf_h2_map_req_head_ws(m, wf_str_make(s->ws_key, H2_WS_KEY_LEN),
                                 &s->head, len);
}

/* The handshake's own checks, as h1 makes them (wf_xchg_ws_check(): one
 * Sec-WebSocket-Version, 13).  Returns WF_OK or the status to answer. */
static unsigned
h2_ws_check(h2_stream_t *s)
{
    unsigned ws = wf_xchg_ws_check(&s->req);

    if (ws != WF_XCHG_WS) {
        return ws == WF_OK ? 400 : ws;
    }
    s->req.websocket = true;
    return WF_OK;
}

/* The header list is complete: map it to a head, parse it, route it. */
static void
h2_req_start(h2_stream_t *s, bool end_stream)
{
    const wf_http_conf_t *hc = s->c->site->hc;
    wf_h1_limits_t lim = {
        .max_request_line = hc->large_header_buffer_size * 4,
        .max_field = hc->large_header_buffer_size * 4,
        .max_head = hc->large_header_buffer_size * hc->large_header_buffers * 4,
        .discard_unsafe_fields = hc->discard_unsafe_fields,
    };
    wf_req_t *r = &s->req;
    size_t len = 0;
    unsigned status;
    int rc = h2_req_map(s, &len, &status);

    s->in_eof = end_stream;
    s->dispatched = true;
    if (rc == WF_H2_MAP_OK && status == 501) {
        wf_req_respond_error(r, status); /* before the parser's 400 */
        return;
    }
    if (rc != WF_H2_MAP_OK) {
        nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id,
                                  rc == WF_H2_MAP_NOMEM
                                      ? NGHTTP2_INTERNAL_ERROR
                                      : NGHTTP2_PROTOCOL_ERROR);
        s->responded = true;
        return;
    }
    if (wf_h1_parse_head(&r->head, s->head, len, &lim) != WF_OK) {
        wf_req_respond_error(r, r->head.status);
        return;
    }
    if (status == WF_OK && s->ws) {
        status = h2_ws_check(s);
    }
    if (status != WF_OK) {
        wf_req_respond_error(r, status);
        return;
    }
    r->head.version = 20;
    r->head.keep_alive = true;
    if (!end_stream && r->head.content_length < 0 && !s->ws) {
        /* DATA frames carry a body of unknown length: as chunked. */
        r->head.chunked = true;
    }
    if (r->head.content_length > 0
        && (uint64_t)r->head.content_length > hc->max_body_size) {
        wf_req_respond_error(r, 413);
        return;
    }
    status = h2_req_prepare(s);
    if (status != WF_OK) {
        wf_req_respond_error(r, status);
        return;
    }
    wf_http_handle(r); /* the endpoint now owns r */
}

/* Moves held body bytes into the endpoint's channel and gives their
 * window back (the stream's: the connection's went back on arrival). */
static void
h2_body_flush(h2_stream_t *s)
{
    wf_req_t *r = &s->req;
    size_t done = 0;

    while (done < s->pend_len) {
        ssize_t n =
            wf_chan_write(&r->req_body, s->pend + done, s->pend_len - done);

        if (n <= 0) {
            break;
        }
        done += (size_t)n;
    }
    if (done > 0) {
        memmove(s->pend, s->pend + done, s->pend_len - done);
        s->pend_len -= done;
        nghttp2_session_consume_stream(s->c->ng, s->id, done);
    }
    if (s->pend_len == 0 && s->in_eof) {
        wf_chan_close(&r->req_body);
    }
}

static void
h2_on_body_room(wf_chan_t *ch)
{
    h2_stream_t *s = wf_container_of(ch, h2_stream_t, req.req_body);

    if (s->closed || s->body_mode != H2_BODY_STREAM) {
        return;
    }
    h2_body_flush(s);
    h2_flush(s->c); /* the WINDOW_UPDATE */
}

/* A body beyond max_body_size: 413 if not answered yet, else a reset. */
static void
h2_body_too_big(h2_stream_t *s)
{
    s->body_mode = H2_BODY_DROP;
    s->pend_len = 0;
    if (s->dispatched && !s->responded) {
        h2_endpoint_abort(s);
        wf_req_respond_error(&s->req, 413);
        return;
    }
    nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id,
                              NGHTTP2_CANCEL);
}

static int
h2_body_hold(h2_stream_t *s, const uint8_t *data, size_t len)
{
    if (s->pend_len + len > s->pend_cap) {
        size_t cap = wf_max(s->pend_cap * 2, s->pend_len + len);
        char *p = realloc(s->pend, cap);

        if (p == NULL) {
            return WF_ERROR;
        }
        s->pend = p;
        s->pend_cap = cap;
    }
    memcpy(s->pend + s->pend_len, data, len);
    s->pend_len += len;
    return WF_OK;
}

/* ---- nghttp2 callbacks ------------------------------------------------ */

/* The listener's "forwarded" in c->site, if any. */
static void
h2_fwd_find(h2_conn_t *c)
{
    c->fwd = NULL;
    for (size_t i = 0; i < c->site->hc->nfwd; i++) {
        if (wf_sockaddr_eq((const struct sockaddr *)&c->site->hc->fwd[i].addr,
                           (const struct sockaddr *)&c->srv->listener.addr)) {
            c->fwd = &c->site->hc->fwd[i];
            break;
        }
    }
}

/* A new stream starts on the listener's current site, as h1's next
 * request does: a reconfiguration reaches long-lived connections (reverse
 * tunnels above all).  Open streams keep theirs (h2_stream_t.snap). */
static void
h2_site_refresh(h2_conn_t *c)
{
    const wf_h1_site_t *site = atomic_load(&c->srv->site);

    if (site == c->site) {
        return;
    }
    wf_h1_snap_ref(site->snap);
    wf_h1_snap_unref(c->site->snap);
    c->site = site;
    h2_fwd_find(c);
}

static int
h2_on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    h2_conn_t *c = user;
    h2_stream_t *s;

    if (frame->hd.type != NGHTTP2_HEADERS
        || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    if (c->goaway || atomic_load(&c->srv->removed)) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    h2_site_refresh(c);
    s = h2_stream_new(c, frame->hd.stream_id);
    if (s == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, s);
    return 0;
}

static int
h2_on_header(nghttp2_session *ng, const nghttp2_frame *frame,
             const uint8_t *name, size_t nlen, const uint8_t *value,
             size_t vlen, uint8_t flags, void *user)
{
    h2_stream_t *s = h2_stream_get(user, frame->hd.stream_id);
    int rc;

    wf_unused(flags);
    if (s == NULL || s->dispatched || frame->hd.type != NGHTTP2_HEADERS) {
        return 0; /* trailers, or a refused stream: ignored */
    }
    rc = wf_h2_map_req_field(&s->c->map, name, nlen, value, vlen);
    if (rc == WF_H2_MAP_OK) {
        return 0;
    }
    /* Malformed, or over max_header_list_size: a stream error
     * (RST_STREAM), as RFC 9113 8.1.1 allows. */
    wf_unused(ng);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int
h2_on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    h2_conn_t *c = user;
    h2_stream_t *s;

    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        if (c->loop->now - c->resets_start > H2_RESETS_MS) {
            c->resets_start = c->loop->now;
            c->resets = 0;
        }
        if (++c->resets > H2_RESETS_MAX) {
            /* CVE-2023-44487: a rapid reset flood. */
            c->exit_status = MUX_ES_INVALID_ERR;
            return nghttp2_session_terminate_session(ng,
                                                     NGHTTP2_ENHANCE_YOUR_CALM);
        }
        return 0;
    }
    if (frame->hd.type == NGHTTP2_SETTINGS && c->on_event != NULL
        && !c->reversed && (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
        /* Reverse HTTP reverses here, without waiting for our ACK. */
        c->reversed = true;
        c->on_event(c->event_arg, WF_H2_EV_SETTINGS);
        return 0;
    }
    s = h2_stream_get(c, frame->hd.stream_id);
    if (s == NULL) {
        return 0;
    }
    if (frame->hd.type == NGHTTP2_HEADERS && !s->dispatched
        && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        h2_req_start(s, (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
        return 0;
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0
        && (frame->hd.type == NGHTTP2_DATA
            || frame->hd.type == NGHTTP2_HEADERS)) {
        s->in_eof = true;
        if (s->body_mode == H2_BODY_STREAM) {
            h2_body_flush(s);
        }
    }
    return 0;
}

static int
h2_on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
           size_t len, void *user)
{
    h2_conn_t *c = user;
    h2_stream_t *s = h2_stream_get(c, id);

    wf_unused(flags);
    /* The connection's window goes back at once: each stream's bounds
     * what it may hold, so a slow stream never stalls the others. */
    nghttp2_session_consume_connection(ng, len);
    if (s == NULL || s->body_mode == H2_BODY_DROP) {
        nghttp2_session_consume_stream(ng, id, len);
        return 0;
    }
    s->body_seen += len;
    if (s->body_seen > c->site->hc->max_body_size && !s->ws) {
        nghttp2_session_consume_stream(ng, id, len);
        h2_body_too_big(s);
        return 0;
    }
    if (h2_body_hold(s, data, len) != WF_OK) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (s->body_mode == H2_BODY_STREAM) {
        h2_body_flush(s);
    }
    return 0;
}

/* Our response ended the stream while the client's body still comes:
 * RST_STREAM NO_ERROR tells it to stop (RFC 9113 8.1), and the stream
 * does not hold a concurrency slot for a body nobody reads. */
static int
h2_on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    h2_stream_t *s;

    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0
        || (frame->hd.type != NGHTTP2_DATA
            && frame->hd.type != NGHTTP2_HEADERS)) {
        return 0;
    }
    s = h2_stream_get(user, frame->hd.stream_id);
    if (s != NULL && s->tunnel && s->body_mode == H2_BODY_STREAM) {
        /* The endpoint closed its side of the tunnel (and let r go): the
         * client's last bytes are dropped until its END_STREAM, as a
         * TCP peer's after a FIN (RFC 8441 5). */
        s->body_mode = H2_BODY_DROP;
        nghttp2_session_consume_stream(ng, s->id, s->pend_len);
        s->pend_len = 0;
        return 0;
    }
    if (s != NULL && !s->in_eof && !s->tunnel) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id,
                                  NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int
h2_on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error, void *user)
{
    h2_stream_t *s = h2_stream_get(user, id);

    wf_unused(ng);
    wf_unused(error);
    if (s != NULL) {
        h2_stream_release(s);
    }
    return 0;
}

/* ---- responses -------------------------------------------------------- */

/* Submits r->resp.trailers ("name: value\r\n" lines) as the stream's
 * last HEADERS (RFC 9113 8.1): names lowercased, connection-specific
 * fields dropped (wf_h2_map_resp()'s rules, which want a status line
 * first).  nghttp2 copies the list.  WF_OK, or WF_ERROR (a reset). */
static int
h2_trailers_submit(h2_stream_t *s)
{
    static const char status[] = "HTTP/1.1 200 \r\n";
    const wf_str_t *t = &s->req.resp.trailers;
    size_t len = sizeof(status) - 1 + t->len + 2;
    char *head = malloc(len);
    size_t cap;
    wf_h2_map_field_t *f;
    nghttp2_nv *nv;
    size_t n;
    int rc = WF_ERROR;

    if (head == NULL) {
        return WF_ERROR;
    }
    memcpy(head, status, sizeof(status) - 1);
    memcpy(head + sizeof(status) - 1, t->data, t->len);
    memcpy(head + len - 2, "\r\n", 2);
    cap = wf_h2_map_resp_count(head, len) + 1;
    f = malloc(cap * sizeof(*f));
    nv = malloc(cap * sizeof(*nv));
    n = f != NULL && nv != NULL ? wf_h2_map_resp(head, len, f, cap) : 0;
    for (size_t i = 1; i < n; i++) { /* [0] is ":status" */
        nv[i - 1] = (nghttp2_nv){(uint8_t *)f[i].name, (uint8_t *)f[i].value,
                                 f[i].nlen, f[i].vlen, NGHTTP2_NV_FLAG_NONE};
    }
    if (n > 0 && nghttp2_submit_trailer(s->c->ng, s->id, nv, n - 1) == 0) {
        rc = WF_OK;
    }
    free(nv);
    free(f);
    free(head);
    return rc;
}

static ssize_t
h2_read_stream(h2_stream_t *s, uint8_t *buf, size_t len, uint32_t *flags)
{
    wf_chan_t *ch = &s->req.resp_body;
    const char *p;
    size_t n = 0;

    while (n < len) {
        size_t k = wf_chan_peek(ch, &p);

        if (k == 0) {
            break;
        }
        k = wf_min(k, len - n);
        memcpy(buf + n, p, k);
        wf_chan_consume(ch, k);
        n += k;
    }
    if (wf_chan_is_done(ch)) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->req.resp.trailers.len > 0 && !s->tunnel) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (h2_trailers_submit(s) != WF_OK) {
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
        }
        return (ssize_t)n;
    }
    if (wf_chan_is_aborted(ch)) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
    }
    if (n == 0) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* A file body goes out without a copy (NGHTTP2_DATA_FLAG_NO_COPY):
 * h2_on_send_data() queues the frame's bytes for sendfile(), or the TLS
 * transport's own file write. */
static ssize_t
h2_read_file(h2_stream_t *s, uint8_t *buf, size_t len, uint32_t *flags)
{
    size_t n = (size_t)wf_min((uint64_t)len, s->file_left);

    wf_unused(buf);
    s->nc_off = s->file_off;
    s->file_off += n;
    s->file_left -= n;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (s->file_left == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

/* nghttp2 sends a no-copy DATA frame: its header joins obuf, its bytes
 * become the pending file segment; mem_send() pauses so that no later
 * frame is gathered before them. */
static int
h2_on_send_data(nghttp2_session *ng, nghttp2_frame *frame,
                const uint8_t *framehd, size_t length, nghttp2_data_source *src,
                void *user)
{
    h2_conn_t *c = user;
    h2_stream_t *s = src->ptr;

    wf_unused(ng);
    if (frame->data.padlen > 0 || c->sf_stream != NULL) {
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* we never pad */
    }
    if (c->olen + 9 > c->ocap) {
        size_t cap = wf_max(c->olen + 9, (size_t)H2_OBUF_SIZE);
        char *b = realloc(c->obuf, cap);

        if (b == NULL) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        c->obuf = b;
        c->ocap = cap;
    }
    memcpy(c->obuf + c->olen, framehd, 9);
    c->olen += 9;
    if (length > 0) {
        c->sf_stream = s;
        c->sf_off = (off_t)s->nc_off;
        c->sf_left = length;
    }
    return NGHTTP2_ERR_PAUSE;
}

static ssize_t
h2_on_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
           uint32_t *flags, nghttp2_data_source *src, void *user)
{
    h2_stream_t *s = src->ptr;
    ssize_t n;

    wf_unused(ng);
    wf_unused(id);
    wf_unused(user);
    if (s->req.resp.stream) {
        n = h2_read_stream(s, buf, len, flags);
    } else if (s->file != NULL) {
        n = h2_read_file(s, buf, len, flags);
    } else {
        size_t k = wf_min(len, s->body.len - s->body_off);

        memcpy(buf, s->body.data + s->body_off, k);
        s->body_off += k;
        if (s->body_off == s->body.len) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        }
        n = (ssize_t)k;
    }
    if (n > 0) {
        s->sent += (uint64_t)n;
    }
    return n;
}

/* The endpoint wrote into the streamed body (or closed it). */
static void
h2_on_resp_data(wf_chan_t *ch)
{
    h2_stream_t *s = wf_container_of(ch, h2_stream_t, req.resp_body);

    if (s->closed || !s->deferred) {
        return;
    }
    s->deferred = false;
    nghttp2_session_resume_data(s->c->ng, s->id);
    h2_flush(s->c);
}

/* Makes the thread's header list scratch hold cap entries. */
static int
h2_nv_room(h2_thread_t *t, size_t cap)
{
    wf_h2_map_field_t *f;
    nghttp2_nv *nv;

    if (cap <= t->ncap) {
        return WF_OK;
    }
    cap = wf_max(cap, (size_t)32);
    f = realloc(t->fields, cap * sizeof(*f));
    if (f == NULL) {
        return WF_ERROR;
    }
    t->fields = f;
    nv = realloc(t->nv, cap * sizeof(*nv));
    if (nv == NULL) {
        return WF_ERROR;
    }
    t->nv = nv;
    t->ncap = cap;
    return WF_OK;
}

/* Renders r->resp as h1 does, then maps it to a header list. */
static int
h2_resp_fields(h2_stream_t *s, size_t *nfields)
{
    wf_req_t *r = &s->req;
    size_t need = wf_resp_head_size(&r->resp);
    size_t len;
    size_t cap;

    if (need > sizeof(r->hbuf_inline)) {
        r->hbuf = malloc(need);
        if (r->hbuf == NULL) {
            r->hbuf = r->hbuf_inline;
            return WF_ERROR;
        }
    }
    len = wf_resp_head_write(r->hbuf, need, &r->resp, s->c->loop, true, 11,
                             s->c->site->hc->server_version);
    r->rq.resp_head = wf_str_make(r->hbuf, len);
    cap = wf_h2_map_resp_count(r->hbuf, len) + 1;
    if (h2_nv_room(h2_thread(), cap) != WF_OK) {
        return WF_ERROR;
    }
    s->fields = h2_thr.fields;
    s->nv = h2_thr.nv;
    *nfields = wf_h2_map_resp(r->hbuf, len, s->fields, cap);
    for (size_t i = 0; i < *nfields; i++) {
        s->nv[i] = (nghttp2_nv){
            (uint8_t *)s->fields[i].name, (uint8_t *)s->fields[i].value,
            s->fields[i].nlen, s->fields[i].vlen,
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    }
    return *nfields > 0 ? WF_OK : WF_ERROR;
}

/* Takes the accept out of the header list and checks it against our key
 * (RFC 6455 4.2.2; h2 carries none, RFC 8441 5).  WF_OK when it matched. */
static int
h2_ws_accept_take(h2_stream_t *s, size_t *n)
{
    char want[H2_WS_ACCEPT_LEN + 1];
    bool ok = false;
    size_t k = 0;

    h2_ws_accept(s->ws_key, want);
    for (size_t i = 0; i < *n; i++) {
        const nghttp2_nv *nv = &s->nv[i];

        if (nv->namelen == 20
            && memcmp(nv->name, "sec-websocket-accept", 20) == 0) {
            ok = nv->valuelen == H2_WS_ACCEPT_LEN
                 && memcmp(nv->value, want, H2_WS_ACCEPT_LEN) == 0;
            continue;
        }
        s->nv[k++] = *nv;
    }
    *n = k;
    return ok ? WF_OK : WF_ERROR;
}

/* The tunnel's 101 (MUX_CTL_TUNNEL): a 200 without the accept opens the
 * stream as the tunnel (RFC 8441 5); client DATA goes into req_body, what
 * the endpoint writes into resp_body goes out as DATA; the endpoint's
 * close is END_STREAM, the client's END_STREAM closes req_body, and a
 * reset either way aborts both channels.  A 101 whose accept does not
 * answer our key (a backend's mistake) is a 502, and the endpoint is
 * stopped. */
static void
h2_tunnel_respond(h2_stream_t *s)
{
    static uint8_t ok_status[] = "200";
    static uint8_t bad_status[] = "502";
    wf_req_t *r = &s->req;
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = h2_on_read};
    size_t n = 0;
    nghttp2_nv bad = {(uint8_t *)":status", bad_status, 7, 3,
                      NGHTTP2_NV_FLAG_NO_COPY_NAME
                          | NGHTTP2_NV_FLAG_NO_COPY_VALUE};

    s->responded = true;
    if (h2_resp_fields(s, &n) != WF_OK || h2_ws_accept_take(s, &n) != WF_OK) {
        wf_log_error(0, "h2: a WebSocket 101 without the accept of its key");
        /* The endpoint is inside wf_xchg_tunnel_start(): it hears of it
         * from the run queue (the channels), and its on_abort runs when
         * the stream closes (resp.stream). */
        wf_chan_abort(&r->req_body);
        wf_chan_abort(&r->resp_body);
        r->resp.stream = true;
        r->resp.status = 502;
        nghttp2_submit_response(s->c->ng, s->id, &bad, 1, NULL);
        return;
    }
    s->nv[0].value = ok_status; /* ":status" comes first */
    s->nv[0].valuelen = 3;
    r->resp.status = 200;
    r->resp.stream = true; /* the data source reads resp_body */
    s->body_mode = H2_BODY_STREAM;
    wf_chan_set_writable(&r->req_body, h2_on_body_room);
    wf_chan_set_readable(&r->resp_body, h2_on_resp_data);
    h2_body_flush(s);
    if (nghttp2_submit_response(s->c->ng, s->id, s->nv, n, &dp) != 0) {
        nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id,
                                  NGHTTP2_INTERNAL_ERROR);
    }
}

static void
h2_respond(h2_stream_t *s)
{
    wf_req_t *r = &s->req;
    wf_resp_t *resp = &r->resp;
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = h2_on_read};
    bool body;
    size_t n = 0;

    s->responded = true;
    /* A streamed response to an endpoint that reads the body streaming
     * (the proxy: gRPC's bidirectional calls) is full duplex: the body
     * keeps coming.  Otherwise what is left is given up, as h1 does. */
    if ((s->body_mode != H2_BODY_STREAM || !s->in_eof)
        && !(resp->stream && s->body_mode == H2_BODY_STREAM)) {
        if (s->body_mode == H2_BODY_STREAM) {
            wf_chan_abort(&r->req_body); /* given up, as h1 does */
        }
        s->body_mode = H2_BODY_DROP; /* what is left is not read */
        nghttp2_session_consume_stream(s->c->ng, s->id, s->pend_len);
        s->pend_len = 0;
    }
    if (resp->stream) {
        wf_chan_set_readable(&r->resp_body, h2_on_resp_data);
    }
    s->body = resp->body;
    s->file = resp->file;
    s->file_off = resp->file_off;
    s->file_left = resp->file != NULL ? resp->content_length : 0;
    body = !resp->head_only
           && (resp->stream || s->file_left > 0 || resp->body.len > 0);
    if (h2_resp_fields(s, &n) != WF_OK
        || nghttp2_submit_response(s->c->ng, s->id, s->nv, n, body ? &dp : NULL)
               != 0) {
        nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id,
                                  NGHTTP2_INTERNAL_ERROR);
    }
    if (resp->head_only && resp->stream) {
        wf_chan_abort(&r->resp_body); /* HEAD: the body is not wanted */
    }
}

/* mux op: r->resp is final. */
static void
h2_mux_respond(wf_req_t *r)
{
    h2_stream_t *s = h2_stream_of(r);

    if (s->closed) {
        /* The client went away (the endpoint was told): its stream is
         * freed already or when its job returns. */
        s->responded = true;
        return;
    }
    if (wf_unlikely(s->ws)) {
        if (s->tunnel) {
            h2_tunnel_respond(s);
            h2_flush(s->c);
            return;
        }
        if (r->resp.status >= 200 && r->resp.status < 300) {
            /* A 2xx would open the tunnel (RFC 8441 5): an endpoint
             * that answers a handshake as a plain request cannot. */
            if (r->resp.stream) {
                wf_chan_abort(&r->resp_body);
            }
            wf_req_respond_error(r, 501);
            return;
        }
    }
    h2_respond(s);
    h2_flush(s->c);
}

/* mux op: the endpoint reads the body. */
static void
h2_mux_body_start(wf_req_t *r)
{
    h2_stream_t *s = h2_stream_of(r);

    if (s->closed || s->body_mode != H2_BODY_PENDING) {
        return;
    }
    s->body_mode = H2_BODY_STREAM;
    wf_chan_set_writable(&r->req_body, h2_on_body_room);
    h2_body_flush(s);
    h2_flush(s->c);
}

static void
h2_on_job_done(wf_task_t *task)
{
    wf_req_t *r = wf_container_of(task, wf_req_t, job.done);
    h2_stream_t *s = h2_stream_of(r);
    h2_conn_t *c = s->c;

    s->job_pending = false;
    c->jobs--;
    if (s->closed) {
        wf_task_defer(c->loop, &s->free_task);
        if (c->closing && c->jobs == 0) {
            wf_task_defer(c->loop, &c->free_task);
        }
        return;
    }
    r->job_done(r);
}

/* mux op: a helper job for r; the body (if any) is held or dropped by
 * the flow-control window meanwhile. */
static void
h2_mux_job_start(wf_req_t *r)
{
    h2_stream_t *s = h2_stream_of(r);

    s->job_pending = true;
    s->c->jobs++;
    r->job.loop = s->c->loop;
    r->job.done.handler = h2_on_job_done;
    wf_tpool_submit(&r->job);
}

/* MUX_CTL_TUNNEL: r, an extended CONNECT for "websocket" not answered
 * yet, whose body was not asked for and whose answer is a 101, becomes a
 * tunnel when it is sent (h2_tunnel_respond()). */
static int
h2_tunnel_ok(wf_req_t *r)
{
    h2_stream_t *s;

    if (r == NULL) {
        return WF_DECLINED;
    }
    s = h2_stream_of(r);
    if (!s->ws || s->closed || s->responded || s->job_pending
        || s->body_mode != H2_BODY_PENDING || r->resp.stream
        || r->resp.status != 101) {
        return WF_DECLINED;
    }
    s->tunnel = true;
    return WF_OK;
}

static int
h2_mux_ctl(wf_mux_t *m, wf_mux_ctl_t op, void *arg)
{
    h2_conn_t *c = wf_container_of(m, h2_conn_t, mux);

    switch (op) {
    case MUX_CTL_STATUS:
        return c->closing || c->goaway ? 0 : MUX_STATUS_READY;
    case MUX_CTL_EXIT_STATUS:
        return (int)c->exit_status;
    case MUX_CTL_GET_NBSTRM:
        return (int)c->nstreams;
    case MUX_CTL_GET_MAXSTRM:
        return (int)c->site->hc->h2_max_concurrent_streams;
    case MUX_CTL_TUNNEL:
        return h2_tunnel_ok(arg);
    case MUX_CTL_REVERSE_CONN:
        return c->reversed ? 1 : 0;
    case MUX_CTL_NOPS:
        break;
    }
    return WF_DECLINED;
}

static const wf_mux_ops_t h2_mux_ops = {
    .name = "h2",
    .respond = h2_mux_respond,
    .body_start = h2_mux_body_start,
    .job_start = h2_mux_job_start,
    .ctl = h2_mux_ctl,
};

/* ---- I/O -------------------------------------------------------------- */

static void
h2_poll(h2_conn_t *c, uint32_t events)
{
    if (c->io.events != events && wf_io_mod(c->loop, &c->io, events) != WF_OK) {
        h2_close(c);
    }
}

/* Writes c->obuf.  Returns WF_OK when all is out, WF_AGAIN, WF_ERROR. */
static int
h2_write(h2_conn_t *c)
{
    while (c->ooff < c->olen) {
        ssize_t n =
            wf_xprt_send(&c->xp, c->io.fd, c->obuf + c->ooff, c->olen - c->ooff,
                         MSG_NOSIGNAL | (c->sf_stream != NULL ? MSG_MORE : 0));

        if (n < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        c->ooff += (size_t)n;
    }
    c->ooff = c->olen = 0;
    while (c->sf_stream != NULL) {
        h2_stream_t *s = c->sf_stream;
        ssize_t n = wf_xprt_sendfile(&c->xp, c->io.fd, wf_file_fd(s->file),
                                     &c->sf_off, (size_t)c->sf_left);

        if (n < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        if (n == 0) {
            return WF_ERROR; /* the file shrank */
        }
        c->sf_left -= (uint64_t)n;
        if (c->sf_left == 0) {
            c->sf_stream = NULL;
            if (s->free_pending) {
                wf_task_defer(c->loop, &s->free_task);
            }
        }
    }
    return WF_OK;
}

/* Gathers what the session has to send into obuf, up to its size. */
static int
h2_gather(h2_conn_t *c)
{
    while (c->olen < H2_OBUF_SIZE && c->sf_stream == NULL) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->ng, &p);

        if (n < 0) {
            return WF_ERROR;
        }
        if (n == 0) {
            break;
        }
        if (c->olen + (size_t)n > c->ocap) {
            size_t cap = wf_max(c->olen + (size_t)n, (size_t)H2_OBUF_SIZE);
            char *b = realloc(c->obuf, cap);

            if (b == NULL) {
                return WF_ERROR;
            }
            c->obuf = b;
            c->ocap = cap;
        }
        memcpy(c->obuf + c->olen, p, (size_t)n);
        c->olen += (size_t)n;
    }
    return WF_OK;
}

/* Sends what the session has, until the socket blocks; then closes if
 * the session is over. */
static void
h2_flush(h2_conn_t *c)
{
    int rc = WF_OK;

    if (c->closing || c->flushing) {
        return;
    }
    if (c->nreqs > 0) {
        wf_h1_stats_h2(c->loop, 0, c->nreqs);
        c->nreqs = 0;
    }
    c->flushing = true;
    while (rc == WF_OK) {
        rc = h2_write(c);
        if (rc != WF_OK) {
            break;
        }
        if (!nghttp2_session_want_write(c->ng)) {
            break;
        }
        rc = h2_gather(c);
        if (rc == WF_OK && c->olen == 0) {
            break;
        }
    }
    c->flushing = false;
    if (rc == WF_ERROR) {
        h2_close(c);
        return;
    }
    c->blocked = rc == WF_AGAIN;
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng)
        && c->olen == 0) {
        h2_close(c);
        return;
    }
    if (c->goaway && c->nstreams == 0 && c->olen == 0) {
        h2_close(c);
        return;
    }
    h2_poll(c, EPOLLIN | (c->blocked ? EPOLLOUT : 0));
    h2_timer_update(c);
}

/* Feeds the session bytes the peer sent. */
static int
h2_feed(h2_conn_t *c, const char *p, size_t n)
{
    ssize_t used;

    /* No send from inside nghttp2's callbacks: h2_flush() waits. */
    c->flushing = true;
    used = nghttp2_session_mem_recv(c->ng, (const uint8_t *)p, n);
    c->flushing = false;

    if (used < 0) {
        wf_log_debug("h2: %s", nghttp2_strerror((int)used));
        c->exit_status = MUX_ES_INVALID_ERR;
        return WF_ERROR;
    }
    return WF_OK;
}

static void
h2_read(h2_conn_t *c)
{
    char buf[H2_RBUF_SIZE];

    for (unsigned i = 0; i < H2_READ_BURST && !c->closing; i++) {
        ssize_t n = wf_xprt_recv(&c->xp, c->io.fd, buf, sizeof(buf));

        if (n == 0) {
            if (c->exit_status == MUX_ES_UNKNOWN) {
                c->exit_status =
                    c->nstreams == 0 ? MUX_ES_SUCCESS : MUX_ES_IO_ERR;
            }
            h2_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }
            c->exit_status = MUX_ES_IO_ERR;
            h2_close(c);
            return;
        }
        if (h2_feed(c, buf, (size_t)n) != WF_OK) {
            /* Let nghttp2's GOAWAY out, then close. */
            h2_flush(c);
            h2_close(c);
            return;
        }
    }
    if (wf_xprt_pending(&c->xp) && wf_list_is_empty(&c->kick.link)) {
        wf_task_schedule(c->loop, &c->kick);
    }
}

static void
h2_on_io(wf_io_t *io, uint32_t events)
{
    h2_conn_t *c = wf_container_of(io, h2_conn_t, io);

    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
        h2_read(c);
    }
    if (!c->closing) {
        h2_flush(c);
    }
}

static void
h2_on_kick(wf_task_t *task)
{
    h2_conn_t *c = wf_container_of(task, h2_conn_t, kick);

    if (!c->closing) {
        h2_on_io(&c->io, EPOLLIN);
    }
}

/* idle_timeout with no stream; send_timeout while a write is blocked. */
static void
h2_timer_update(h2_conn_t *c)
{
    const wf_http_conf_t *hc = c->site->hc;
    uint64_t ms = 0;

    if (c->goaway) {
        ms = H2_GOAWAY_LINGER + hc->send_timeout_ms;
    } else if (c->blocked) {
        ms = hc->send_timeout_ms;
    } else if (c->nstreams == 0) {
        ms = hc->idle_timeout_ms;
    }
    wf_timer_set(c->loop, &c->timer, ms);
}

static void
h2_on_timer(wf_timer_t *t)
{
    h2_conn_t *c = wf_container_of(t, h2_conn_t, timer);

    if (c->blocked || c->goaway) {
        c->exit_status = MUX_ES_TOUT_ERR;
        h2_close(c);
        return;
    }
    if (c->nstreams == 0) {
        c->exit_status = MUX_ES_SUCCESS;
        nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR);
        c->goaway = true;
        h2_flush(c);
        if (!c->closing) {
            h2_close(c);
        }
    }
}

static void
h2_on_free(wf_task_t *task)
{
    h2_conn_t *c = wf_container_of(task, h2_conn_t, free_task);

    nghttp2_session_del(c->ng);
    free(c->obuf);
    wf_h2_map_req_fini(&c->map);
    wf_h1_snap_unref(c->site->snap);
    wf_h1_server_unref(c->srv);
    free(c);
}

static void
h2_close(h2_conn_t *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (c->exit_status == MUX_ES_UNKNOWN) {
        c->exit_status = c->nstreams == 0 ? MUX_ES_SUCCESS : MUX_ES_IO_ERR;
    }
    while (!wf_list_is_empty(&c->streams)) {
        h2_stream_release(wf_container_of(c->streams.next, h2_stream_t, link));
    }
    if (c->sf_stream != NULL && c->sf_stream->free_pending) {
        wf_task_defer(c->loop, &c->sf_stream->free_task);
    }
    c->sf_stream = NULL;
    wf_timer_stop(c->loop, &c->timer);
    wf_io_del(c->loop, &c->io);
    wf_xprt_close(&c->xp);
    close(c->io.fd);
    c->io.fd = -1;
    wf_list_del(&c->kick.link);
    wf_list_del(&c->link);
    if (wf_list_is_empty(&h2_thr.all)) {
        h2_spares_free(&h2_thr); /* the thread's h2 traffic is over */
    }
    wf_listen_conn_release(c->loop);
    wf_h1_stats_h2(c->loop, 1, c->nreqs);
    c->nreqs = 0;
    if (c->on_event != NULL) {
        c->on_event(c->event_arg, WF_H2_EV_CLOSE);
    }
    if (c->jobs == 0) {
        wf_task_defer(c->loop, &c->free_task);
    }
}

/* ---- session ---------------------------------------------------------- */

static nghttp2_session_callbacks *
h2_callbacks(void)
{
    static __thread nghttp2_session_callbacks *cbs;

    if (cbs == NULL && nghttp2_session_callbacks_new(&cbs) == 0) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(
            cbs, h2_on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
                                                             h2_on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                                  h2_on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(
            cbs, h2_on_stream_close);
        nghttp2_session_callbacks_set_send_data_callback(cbs, h2_on_send_data);
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs,
                                                             h2_on_frame_send);
    }
    return cbs;
}

/* Creates the session: the role and the preface are separate choices. */
static int
h2_session_new(h2_conn_t *c, const wf_h2_start_t *s)
{
    nghttp2_session_callbacks *cbs = h2_callbacks();
    nghttp2_option *opt;
    int rc;

    if (cbs == NULL || nghttp2_option_new(&opt) != 0) {
        return WF_ERROR;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_recv_client_magic(opt, !s->recv_preface);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    /* RFC 9113 5.3.2 deprecated RFC 7540's priority tree: no tree to
     * keep per stream, nor closed streams kept for it. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);

    rc = s->role == WF_H2_SERVER
             ? nghttp2_session_server_new2(&c->ng, cbs, c, opt)
             : nghttp2_session_client_new2(&c->ng, cbs, c, opt);
    nghttp2_option_del(opt);
    return rc == 0 ? WF_OK : WF_ERROR;
}

/* Queues our preface: the client magic when asked (a client, or a
 * reverse connection), then SETTINGS and the connection window. */
static int
h2_preface_send(h2_conn_t *c, const wf_h2_start_t *s)
{
    const wf_http_conf_t *hc = c->site->hc;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
         hc->h2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, hc->h2_initial_window_size},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, hc->h2_max_frame_size},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, hc->h2_header_table_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, h2_header_list_max(hc)},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1}, /* RFC 9218 2.1 */
        /* RFC 8441 3: WebSocket over extended CONNECT (a server's). */
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    /* Room for every stream's window: the connection's never closes
     * before theirs (see h2_on_data()). */
    uint64_t conn_window =
        (uint64_t)hc->h2_max_concurrent_streams * hc->h2_initial_window_size;

    if (s->send_preface && s->role == WF_H2_SERVER) {
        /* nghttp2 sends the magic itself for a client session only. */
        c->obuf = malloc(WF_H2_PREFACE_LEN);
        if (c->obuf == NULL) {
            return WF_ERROR;
        }
        memcpy(c->obuf, WF_H2_PREFACE, WF_H2_PREFACE_LEN);
        c->olen = c->ocap = WF_H2_PREFACE_LEN;
    }
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv,
                                wf_nitems(iv)
                                    - (s->role == WF_H2_SERVER ? 0 : 1))
            != 0
        || nghttp2_session_set_local_window_size(
               c->ng, NGHTTP2_FLAG_NONE, 0,
               (int32_t)wf_min(conn_window, (uint64_t)INT32_MAX))
               != 0) {
        return WF_ERROR;
    }
    return WF_OK;
}

static int
h2_conn_setup(h2_conn_t *c, const wf_h2_start_t *s)
{
    if (h2_session_new(c, s) != WF_OK || h2_preface_send(c, s) != WF_OK
        || wf_io_add(c->loop, &c->io, EPOLLIN) != WF_OK) {
        return WF_ERROR;
    }
    if (s->npre > 0 && h2_feed(c, s->pre, s->npre) != WF_OK) {
        return WF_ERROR;
    }
    return WF_OK;
}

int
wf_h2_conn_start(const wf_h2_start_t *s)
{
    h2_conn_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        wf_xprt_t xp = s->xp;

        wf_xprt_close(&xp);
        close(s->fd);
        wf_listen_conn_release(s->loop);
        return WF_ERROR;
    }
    c->mux.ops = &h2_mux_ops;
    c->on_event = s->on_event;
    c->event_arg = s->arg;
    c->io.fd = s->fd;
    c->io.handler = h2_on_io;
    c->xp = s->xp;
    c->loop = s->loop;
    c->srv = s->srv;
    atomic_fetch_add_explicit(&c->srv->refs, 1, memory_order_relaxed);
    c->site = s->site;
    wf_h1_snap_ref(c->site->snap);
    c->remote = *s->remote;
    c->local = *s->local;
    h2_fwd_find(c);
    wf_list_init(&c->streams);
    wf_list_init(&c->kick.link);
    c->kick.handler = h2_on_kick;
    c->free_task.handler = h2_on_free;
    wf_timer_init(&c->timer, h2_on_timer);
    wf_list_add_tail(&h2_thread()->all, &c->link);
    if (h2_conn_setup(c, s) != WF_OK) {
        c->exit_status = MUX_ES_INTERNAL_ERR;
        if (c->ng != NULL) {
            h2_flush(c);
        }
        h2_close(c);
        return WF_ERROR;
    }
    h2_flush(c);
    return WF_OK;
}

/* Sends GOAWAY: no new stream; the connection closes when its open ones
 * are done (or after the bound of h2_timer_update()). */
static void
h2_goaway(h2_conn_t *c)
{
    if (c->closing || c->goaway) {
        return;
    }
    c->goaway = true;
    nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(c->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_flush(c);
}

/* GOAWAY to every connection of the thread (removed_only: of a removed
 * listener), or closes them at once (!graceful). */
static void
h2_stop_each(bool graceful, bool removed_only)
{
    if (!h2_thr.ready) {
        return;
    }
    wf_list_for_each_safe(l, next, &h2_thr.all)
    {
        h2_conn_t *c = wf_container_of(l, h2_conn_t, link);

        if (removed_only && !atomic_load(&c->srv->removed)) {
            continue;
        }
        if (graceful) {
            h2_goaway(c);
        } else {
            h2_close(c);
        }
    }
}

void
wf_h2_on_stop(wf_loop_t *loop, bool graceful)
{
    wf_unused(loop);
    h2_stop_each(graceful, false);
}

void
wf_h2_sweep_removed(void)
{
    h2_stop_each(true, true);
}

void
wf_h2_thread_exit(void)
{
    if (!h2_thr.ready) {
        return;
    }
    h2_spares_free(&h2_thr);
    free(h2_thr.fields);
    free(h2_thr.nv);
    h2_thr.fields = NULL;
    h2_thr.nv = NULL;
    h2_thr.ncap = 0;
    h2_thr.ready = false;
}
