/* The HTTP/1.x connection state machine.  One table says what each state
 * does on input and which timeout guards it; h1_set_state() is the only
 * place that changes state.  See docs/internals/h1_conn.md. */
#include "http/h1_conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/pool.h"
#include "http/access_log.h"
#include "http/exchange.h"
#include "http/forwarded.h"
#include "http/h1_conn_types.h"
#include "http/h2_conn.h"
#include "http/mux.h"
#include "http/req.h"
#include "http/respond.h"
#include "http/rhttp_pub.h"
#include "http/uri.h"
#include "http/ws_scan.h"
#include "net/tls.h"
#include "net/xprt.h"

#define H1_RBUF_SIZE      4096 /* pooled read buffers; heads grow beyond */
#define H1_LINGER_MS      2000 /* bound on draining input before close */
#define H1_PIPELINE_BURST 16   /* pipelined requests served per wake-up */
#define H1_SENDFILE_MAX   (1u << 30)
#define H1_BIG_FILE       (1u << 20) /* bodies from here get H1_BIG_SNDBUF */
#define H1_BIG_SNDBUF     (4 << 20)
#define H1_TUNNEL_PIECE   (16 * 1024) /* client bytes read at once */
#define H1_STREAM_IOV     32          /* channel buffers gathered per write */
#define H1_TUNNEL_BURST   16          /* reads per wake-up */
#define H1_WS_CLOSE_MS    5000 /* bound on waiting for the client's Close */
#define H1_WS_PING        "\x89\x00" /* an empty unmasked Ping frame */

/* Who reads a request body (see docs/internals/h1_conn.md). */
typedef enum h1_body_mode {
    H1_BODY_NONE = 0, /* no body, or it was read, dropped or given up */
    H1_BODY_PENDING,  /* unread; the endpoint has not decided yet */
    H1_BODY_DRAIN,    /* read and dropped before a parked response/job */
    H1_BODY_STREAM,   /* read into c->req->req_body for the endpoint */
} h1_body_mode_t;

/* What waits for a drained body. */
typedef enum h1_parked {
    H1_PARKED_NONE = 0,
    H1_PARKED_RESPOND, /* c->req->resp is final */
    H1_PARKED_JOB,     /* c->req->job is filled, not submitted */
} h1_parked_t;

typedef struct wf_h1_conn wf_h1_conn_t;

struct wf_h1_conn {
    wf_mux_t mux; /* ops: h1_mux_ops */
    wf_io_t io;
    wf_timer_t timer;
    wf_task_t resume;    /* serves buffered (pipelined) input */
    wf_task_t free_task; /* frees c at the end of the tick */
    wf_list_t link;      /* in the thread's list of connections */
    wf_task_t xp_kick;   /* reads what the transport holds (h1_poll()) */
    wf_xprt_t xp;        /* plain, or TLS from the accept on */
    wf_loop_t *loop;
    wf_h1_server_t *srv;       /* a reference */
    const wf_h1_site_t *site;  /* holds a reference to site->snap */
    const wf_forwarded_t *fwd; /* the listener's, in site's snapshot; NULL:
                                  none */
    wf_h1_state_t state;
    bool keep_alive;
    bool job_pending; /* a helper job holds c->req */
    bool big_sndbuf;  /* SO_SNDBUF raised for big files */
    bool h2_checked;  /* the first bytes were told from an h2c preface */
    unsigned burst;   /* requests served since the last poll */
    wf_mux_exit_status_t exit_status;
    int pipe[2]; /* for spliced response bytes (wf_chan_set_pipe()): made
                    by the first splice, kept for the next responses */

    char *rbuf; /* owned; NULL while idle */
    uint32_t rcap;
    uint32_t rstart; /* first unconsumed byte */
    uint32_t rend;   /* end of the bytes read */
    uint32_t rkeep;  /* rbuf[0..rkeep) holds the parsed head of c->req,
                        which must not move while the request lives */

    wf_req_t *req; /* owned; NULL while idle */

    wf_sockaddr_t remote; /* the client */
    wf_sockaddr_t local;  /* the address it connected to */
};

/* One exchange of a connection: the request endpoints see, and what the
 * mux keeps about its body and its response.  Allocated per request from
 * the thread's pool, so an idle connection pays for none of it. */
typedef struct h1_xchg {
    wf_req_t req; /* c->req points here */

    /* Request body. */
    h1_body_mode_t body_mode;
    h1_parked_t parked;
    bool continue_sent; /* 100 Continue is out */
    bool body_ended;    /* STREAM: the last byte was decoded */
    uint32_t pend_off;  /* STREAM: decoded bytes rbuf[pend_off..+pend_len) */
    uint32_t pend_len;  /* wait for room in the endpoint's channel */
    bool body_chunked;
    uint64_t body_left; /* Content-Length bytes still to read */
    uint64_t body_seen; /* decoded bytes, for max_body_size */
    wf_h1_chunked_t chunked;
    bool input_done; /* the head and the whole body were read */

    /* Response being written. */
    size_t out_len; /* head bytes in req->hbuf */
    size_t out_sent;
    wf_str_t body; /* memory body */
    size_t body_sent;
    wf_file_t *file; /* borrowed from req->resp */
    off_t file_off;
    uint64_t file_left;

    /* Streamed response: one chunk is framed from the head of
     * req->resp_body at a time and consumed when it is out. */
    bool streaming;
    bool stream_chunked;    /* HTTP/1.1: chunk framing; else close-delimited */
    bool stream_last;       /* the frame being written ends the body */
    uint8_t chunk_hlen;     /* bytes in chunk_head */
    uint8_t chunk_tlen;     /* bytes of chunk_tail */
    size_t chunk_len;       /* data bytes of the frame being written */
    size_t chunk_off;       /* bytes of [head | data | tail] written */
    const char *chunk_tail; /* CRLF, and the last chunk when folded in */
    char chunk_head[20];

    /* Tunnel (MUX_CTL_TUNNEL): after the head, raw bytes both ways. */
    bool tunnel;
    bool tunnel_eof;     /* the client's EOF closed req->req_body */
    wf_ws_scan_t ws;     /* where the client's frames begin */
    wf_ws_scan_t ws_out; /* where the endpoint's frames begin */
    bool ws_pinged;      /* a keepalive ping went out since client bytes */
    uint8_t ping_off;    /* bytes of H1_WS_PING sent; 0: none pending */
    bool peer_bytes;     /* h1_watch_peer() found input pending: not again */
} h1_xchg_t;

/* The exchange of c; only while c->req != NULL. */
static inline h1_xchg_t *
h1_x(const wf_h1_conn_t *c)
{
    return wf_container_of(c->req, h1_xchg_t, req);
}

typedef void (*h1_input_cb)(wf_h1_conn_t *c);

static void h1_read_head(wf_h1_conn_t *c);
static void h1_read_body(wf_h1_conn_t *c);
static void h1_ignore_input(wf_h1_conn_t *c);
static void h1_send(wf_h1_conn_t *c);
static void h1_linger_read(wf_h1_conn_t *c);
static void h1_close(wf_h1_conn_t *c);
static void h1_access_log(wf_h1_conn_t *c);
static void h1_body_fail(wf_h1_conn_t *c, unsigned status);
static void h1_job_submit(wf_h1_conn_t *c);
static void h1_send_response(wf_h1_conn_t *c);
static void h1_tunnel_pump(wf_h1_conn_t *c);
static void h1_ws_close_read(wf_h1_conn_t *c);
static int h1_ping_send(wf_h1_conn_t *c);
static void h1_tunnel_timer(wf_h1_conn_t *c);
static void h1_tls_handshake(wf_h1_conn_t *c);

/* Which field of wf_http_conf_t bounds each state (none for 0). */
typedef enum h1_timeout {
    H1_TIMEOUT_NONE = 0,
    H1_TIMEOUT_IDLE,
    H1_TIMEOUT_HEADER,
    H1_TIMEOUT_BODY,
    H1_TIMEOUT_SEND,
    H1_TIMEOUT_LINGER,
    H1_TIMEOUT_TUNNEL,
    H1_TIMEOUT_WS_CLOSE,
} h1_timeout_t;

static const struct {
    const char *name;
    h1_input_cb on_input; /* readable (or writable in SEND) */
    h1_timeout_t timeout;
    bool restart_on_progress; /* an interval, not a deadline */
} h1_states[WF_H1_NSTATES] = {
    [WF_H1_IDLE] = {"IDLE", h1_read_head, H1_TIMEOUT_IDLE, false},
    [WF_H1_TLS] = {"TLS", h1_tls_handshake, H1_TIMEOUT_HEADER, false},
    [WF_H1_HEAD] = {"HEAD", h1_read_head, H1_TIMEOUT_HEADER, false},
    [WF_H1_BODY] = {"BODY", h1_read_body, H1_TIMEOUT_BODY, true},
    [WF_H1_RESPOND] = {"RESPOND", h1_ignore_input, H1_TIMEOUT_NONE, false},
    [WF_H1_SEND] = {"SEND", h1_send, H1_TIMEOUT_SEND, true},
    [WF_H1_TUNNEL] = {"TUNNEL", h1_tunnel_pump, H1_TIMEOUT_TUNNEL, true},
    [WF_H1_WS_CLOSE] = {"WS_CLOSE", h1_ws_close_read, H1_TIMEOUT_WS_CLOSE,
                        false},
    [WF_H1_LINGER] = {"LINGER", h1_linger_read, H1_TIMEOUT_LINGER, false},
    [WF_H1_CLOSING] = {"CLOSING", h1_ignore_input, H1_TIMEOUT_NONE, false},
};

/* Per-thread pools and the list of every connection of the thread. */
typedef struct h1_thread {
    bool ready;
    wf_fpool_t conns;
    wf_fpool_t reqs;
    wf_fpool_t rbufs;
    wf_list_t all;
} h1_thread_t;

static __thread h1_thread_t h1_thr;

#define H1_STATS_CELLS 256 /* I/O threads at most */

/* Each thread writes only its own cell; readers sum them. */
typedef struct h1_stats_cell {
    _Atomic uint64_t accepted;
    _Atomic uint64_t closed;
    _Atomic uint64_t idle;
    _Atomic uint64_t requests;
} h1_stats_cell_t;

static h1_stats_cell_t h1_stats[H1_STATS_CELLS];

static h1_stats_cell_t *
h1_stats_cell(const wf_h1_conn_t *c)
{
    return &h1_stats[c->loop->id % H1_STATS_CELLS];
}

static void
h1_stat_add(_Atomic uint64_t *counter, int64_t delta)
{
    atomic_fetch_add_explicit(counter, (uint64_t)delta, memory_order_relaxed);
}

void
wf_h1_stats_h2(wf_loop_t *loop, unsigned closed, unsigned requests)
{
    h1_stats_cell_t *cell = &h1_stats[loop->id % H1_STATS_CELLS];

    h1_stat_add(&cell->closed, closed);
    h1_stat_add(&cell->requests, requests);
}

void
wf_h1_stats_get(wf_h1_stats_t *out)
{
    uint64_t open = 0;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < H1_STATS_CELLS; i++) {
        h1_stats_cell_t *cell = &h1_stats[i];

        out->accepted +=
            atomic_load_explicit(&cell->accepted, memory_order_relaxed);
        out->closed +=
            atomic_load_explicit(&cell->closed, memory_order_relaxed);
        out->idle += atomic_load_explicit(&cell->idle, memory_order_relaxed);
        out->requests +=
            atomic_load_explicit(&cell->requests, memory_order_relaxed);
    }
    open = out->accepted >= out->closed ? out->accepted - out->closed : 0;
    out->idle = wf_min(out->idle, open);
    out->active = open - out->idle;
}

void
wf_h1_snap_unref(wf_h1_snap_t *snap)
{
    if (snap != NULL && atomic_fetch_sub(&snap->refs, 1) == 1) {
        snap->release(snap);
    }
}

void
wf_h1_server_unref(wf_h1_server_t *srv)
{
    if (atomic_fetch_sub(&srv->refs, 1) == 1) {
        srv->release(srv);
    }
}

void
wf_h1_server_set_site(wf_h1_server_t *srv, const wf_h1_site_t *site)
{
    atomic_store_explicit(&srv->site, site, memory_order_release);
}

static h1_thread_t *
h1_thread(void)
{
    if (!h1_thr.ready) {
        wf_fpool_init(&h1_thr.conns, sizeof(wf_h1_conn_t), 4096);
        wf_fpool_init(&h1_thr.reqs, sizeof(h1_xchg_t), 64);
        wf_fpool_init(&h1_thr.rbufs, H1_RBUF_SIZE, 256);
        wf_list_init(&h1_thr.all);
        h1_thr.ready = true;
    }
    return &h1_thr;
}

static uint64_t
h1_timeout_ms(const wf_h1_conn_t *c, h1_timeout_t which)
{
    const wf_http_conf_t *hc = c->site->hc;

    switch (which) {
    case H1_TIMEOUT_IDLE:
        return hc->idle_timeout_ms;
    case H1_TIMEOUT_HEADER:
        return hc->header_read_timeout_ms;
    case H1_TIMEOUT_BODY:
        return hc->body_read_timeout_ms;
    case H1_TIMEOUT_SEND:
        return hc->send_timeout_ms;
    case H1_TIMEOUT_LINGER:
        return H1_LINGER_MS;
    case H1_TIMEOUT_TUNNEL:
        return hc->ws_keepalive_ms > 0
                       && (hc->ws_keepalive_ms < hc->ws_read_timeout_ms
                           || hc->ws_read_timeout_ms == 0)
                   ? hc->ws_keepalive_ms
                   : hc->ws_read_timeout_ms;
    case H1_TIMEOUT_WS_CLOSE:
        return H1_WS_CLOSE_MS;
    case H1_TIMEOUT_NONE:
        break;
    }
    return 0;
}

/* Every transition goes through here.  Re-entering the current state keeps
 * its timer: a client trickling bytes must not push back its deadline. */
static void
h1_set_state(wf_h1_conn_t *c, wf_h1_state_t next)
{
    if (next == c->state) {
        return;
    }
    if (c->state == WF_H1_IDLE || next == WF_H1_IDLE) {
        h1_stat_add(&h1_stats_cell(c)->idle, next == WF_H1_IDLE ? 1 : -1);
    }
    c->state = next;
    wf_timer_set(c->loop, &c->timer, h1_timeout_ms(c, h1_states[next].timeout));
}

/* Restarts the timer of an interval state after progress. */
static void
h1_progress(wf_h1_conn_t *c)
{
    if (h1_states[c->state].restart_on_progress) {
        wf_timer_set(c->loop, &c->timer,
                     h1_timeout_ms(c, h1_states[c->state].timeout));
    }
}

/* Bytes a TLS transport decrypted ahead wake no poll: read them as if the
 * socket polled readable, later in this tick. */
static void
h1_xprt_kick(wf_h1_conn_t *c)
{
    if (wf_unlikely(wf_xprt_pending(&c->xp)) && (c->io.events & EPOLLIN) != 0
        && wf_list_is_empty(&c->xp_kick.link)) {
        wf_task_schedule(c->loop, &c->xp_kick);
    }
}

static void
h1_poll(wf_h1_conn_t *c, uint32_t events)
{
    if (wf_io_mod(c->loop, &c->io, events) != WF_OK) {
        h1_close(c);
        return;
    }
    h1_xprt_kick(c);
}

static void
h1_rbuf_free(wf_h1_conn_t *c)
{
    if (c->rbuf == NULL) {
        return;
    }
    if (c->rcap == H1_RBUF_SIZE) {
        wf_fpool_put(&h1_thread()->rbufs, c->rbuf);
    } else {
        free(c->rbuf);
    }
    c->rbuf = NULL;
    c->rcap = c->rstart = c->rend = 0;
}

/* Makes room at the end of rbuf: drops consumed bytes, then grows up to one
 * byte past the largest head allowed, so the parser can say 414 or 431.
 * Returns WF_OK, or WF_DECLINED when the buffer may not grow any more. */
static int
h1_rbuf_reserve(wf_h1_conn_t *c)
{
    const wf_http_conf_t *hc = c->site->hc;
    size_t limit = hc->large_header_buffer_size * hc->large_header_buffers + 1;
    size_t cap;
    char *b;

    if (c->rbuf == NULL) {
        c->rbuf = wf_fpool_get(&h1_thread()->rbufs);
        c->rcap = H1_RBUF_SIZE;
        c->rstart = c->rend = 0;
        return c->rbuf != NULL ? WF_OK : WF_ERROR;
    }
    if (c->rend < c->rcap) {
        return WF_OK;
    }
    if (c->rstart > c->rkeep) {
        memmove(c->rbuf + c->rkeep, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart - c->rkeep;
        c->rstart = c->rkeep;
        return WF_OK;
    }
    if (c->rcap >= limit) {
        return WF_DECLINED;
    }
    cap = wf_min((size_t)c->rcap * 2, limit);
    b = malloc(cap);
    if (b == NULL) {
        return WF_ERROR;
    }
    memcpy(b, c->rbuf, c->rend);
    if (c->rkeep > 0) {
        /* The parsed head moves with the bytes. */
        wf_h1_head_rebase(&c->req->head, c->rbuf, b);
    }
    if (c->rcap == H1_RBUF_SIZE) {
        wf_fpool_put(&h1_thread()->rbufs, c->rbuf);
    } else {
        free(c->rbuf);
    }
    c->rbuf = b;
    c->rcap = (uint32_t)cap;
    return WF_OK;
}

/* Reads what the socket has into rbuf.  Returns the byte count, 0 at EOF,
 * WF_AGAIN, WF_DECLINED when rbuf is full at its limit, or WF_ERROR. */
static ssize_t
h1_recv(wf_h1_conn_t *c)
{
    ssize_t n;
    int rc = h1_rbuf_reserve(c);

    if (rc != WF_OK) {
        return rc;
    }
    n = wf_xprt_recv(&c->xp, c->io.fd, c->rbuf + c->rend, c->rcap - c->rend);
    if (n > 0) {
        c->rend += (uint32_t)n;
        return n;
    }
    if (n == 0) {
        return 0;
    }
    if (errno == EAGAIN || errno == EINTR) {
        return WF_AGAIN;
    }
    return WF_ERROR;
}

static wf_req_t *
h1_req_create(wf_h1_conn_t *c)
{
    h1_xchg_t *x = wf_fpool_get(&h1_thread()->reqs);
    wf_req_t *r;

    if (x == NULL) {
        return NULL;
    }
    /* The mux's part: everything after the request. */
    memset((char *)x + sizeof(x->req), 0, sizeof(*x) - sizeof(x->req));
    r = &x->req;
    wf_h1_head_init(&r->head);
    memset(&r->rq, 0, sizeof(r->rq));
    memset(&r->resp, 0, sizeof(r->resp));
    wf_xchg_init(r, &c->mux, c->loop);
    r->hc = c->site->hc;
    r->root = c->site->root;
    r->loop = c->loop;
    r->passes = 0;
    r->last = NULL;
    r->share = NULL;
    r->uri_cap = sizeof(r->uri_inline);
    r->target = NULL;
    r->rq.start_ns = c->loop->now * 1000000u;
    r->job_done = NULL;
    r->uri = r->uri_inline;
    r->loc = NULL;
    r->hbuf = r->hbuf_inline;
    r->host = r->host_inline;
    return r;
}

static void
h1_req_destroy(wf_h1_conn_t *c)
{
    wf_req_t *r = c->req;

    if (r == NULL) {
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
    wf_fpool_put(&h1_thread()->reqs, h1_x(c));
    c->req = NULL;
    c->rkeep = 0;
}

static wf_h1_conn_t *
h1_conn_of(const wf_req_t *r)
{
    return wf_container_of(r->mux, wf_h1_conn_t, mux);
}

/* Tells an endpoint that holds r that the client side is gone, once. */
static void
h1_endpoint_abort(wf_h1_conn_t *c)
{
    wf_req_t *r = c->req;
    void (*on_abort)(wf_req_t * r);

    if (r == NULL) {
        return;
    }
    if (r->body_wanted || r->resp.stream) {
        wf_chan_abort(&r->req_body);
        wf_chan_abort(&r->resp_body);
    }
    on_abort = r->on_abort;
    r->on_abort = NULL;
    if (on_abort != NULL) {
        on_abort(r);
    }
}

static void
h1_on_free(wf_task_t *task)
{
    wf_h1_conn_t *c = wf_container_of(task, wf_h1_conn_t, free_task);

    h1_req_destroy(c);
    h1_rbuf_free(c);
    if (c->pipe[0] >= 0) {
        close(c->pipe[0]);
        close(c->pipe[1]);
    }
    wf_h1_snap_unref(c->site->snap);
    wf_h1_server_unref(c->srv);
    wf_fpool_put(&h1_thread()->conns, c);
}

/* Closes the socket and moves c to CLOSING; c is freed at the end of the
 * tick, or when its helper job comes back. */
static void
h1_close(wf_h1_conn_t *c)
{
    if (c->state == WF_H1_CLOSING) {
        return;
    }
    if (c->state == WF_H1_SEND || c->state == WF_H1_TUNNEL) {
        h1_access_log(c); /* the client went away mid-response */
    }
    if (c->exit_status == MUX_ES_UNKNOWN) {
        c->exit_status =
            c->state == WF_H1_IDLE ? MUX_ES_SUCCESS : MUX_ES_IO_ERR;
    }
    h1_endpoint_abort(c);
    wf_timer_stop(c->loop, &c->timer);
    wf_io_del(c->loop, &c->io);
    wf_xprt_close(&c->xp);
    close(c->io.fd);
    c->io.fd = -1;
    if (c->state == WF_H1_IDLE) {
        h1_stat_add(&h1_stats_cell(c)->idle, -1);
    }
    h1_stat_add(&h1_stats_cell(c)->closed, 1);
    c->state = WF_H1_CLOSING;
    wf_list_del(&c->resume.link);
    wf_list_del(&c->xp_kick.link);
    wf_list_del(&c->link);
    wf_listen_conn_release(c->loop);
    if (!c->job_pending) {
        wf_task_defer(c->loop, &c->free_task);
    }
}

/* Closes after a response the client may not have finished sending:
 * shutting our side and draining theirs keeps the kernel from resetting
 * the connection, which would destroy the response in flight. */
static void
h1_linger(wf_h1_conn_t *c)
{
    h1_req_destroy(c);
    h1_rbuf_free(c);
    if (wf_xprt_shutdown(&c->xp, c->io.fd) == -1) {
        h1_close(c);
        return;
    }
    h1_set_state(c, WF_H1_LINGER);
    h1_poll(c, EPOLLIN);
}

static void
h1_linger_read(wf_h1_conn_t *c)
{
    char buf[4096];

    for (unsigned i = 0; i < 16; i++) {
        ssize_t n = wf_xprt_recv(&c->xp, c->io.fd, buf, sizeof(buf));

        if (n > 0) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        break;
    }
    h1_close(c);
}

static void
h1_ignore_input(wf_h1_conn_t *c)
{
    wf_unused(c);
}

static void
h1_on_timer(wf_timer_t *t)
{
    wf_h1_conn_t *c = wf_container_of(t, wf_h1_conn_t, timer);

    if (c->state == WF_H1_TUNNEL) {
        h1_tunnel_timer(c);
        return;
    }
    if (c->state == WF_H1_BODY) {
        h1_body_fail(c, 408);
        return;
    }
    if (c->state == WF_H1_HEAD && c->req != NULL) {
        /* The client started a request and stalled: tell it why. */
        c->keep_alive = false;
        wf_req_respond_error(c->req, 408);
        return;
    }
    h1_close(c);
}

static void
h1_limits(const wf_http_conf_t *hc, wf_h1_limits_t *lim)
{
    lim->max_request_line = hc->large_header_buffer_size;
    lim->max_field = hc->large_header_buffer_size;
    lim->max_head = hc->large_header_buffer_size * hc->large_header_buffers;
    lim->discard_unsafe_fields = hc->discard_unsafe_fields;
}

/* Applies the listener's "forwarded": the client address and scheme that
 * a trusted proxy reports replace the connection's. */
static void
h1_req_forwarded(wf_req_t *r, const wf_forwarded_t *fwd)
{
    wf_forwarded_result_t res;

    wf_forwarded_apply(fwd, &r->head, &h1_conn_of(r)->remote, &res);
    if (res.has_remote) {
        r->fwd_remote = res.remote;
        r->rq.remote = &r->fwd_remote;
    }
    if (res.has_scheme) {
        r->rq.tls = res.tls;
    }
}

/* Fills what routes read.  Returns WF_OK or an HTTP status to answer. */
static unsigned
h1_req_prepare(wf_req_t *r)
{
    wf_h1_head_t *h = &r->head;
    size_t len = h->path.len;
    unsigned ws;

    if (len == 0 || h->path.data[0] != '/') {
        /* "*" (OPTIONS) or CONNECT's authority: nothing to serve here. */
        return h->method_id == WF_HTTP_OPTIONS ? 404 : 405;
    }
    if (len > sizeof(r->uri_inline)) {
        r->uri = malloc(len);
        if (r->uri == NULL) {
            return 503;
        }
        r->uri_cap = len;
    }
    if (wf_uri_normalize(h->path.data, len, r->uri, &len) != WF_OK) {
        return 400;
    }
    r->rq.method_id = h->method_id;
    r->rq.method = h->method;
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
    ws = wf_xchg_ws_check(r);
    if (ws != WF_OK && ws != WF_XCHG_WS) {
        return ws;
    }
    r->websocket = ws == WF_XCHG_WS;
    r->rq.uri = wf_str_make(r->uri, len);
    r->rq.head = h;
    r->rq.remote = &h1_conn_of(r)->remote;
    r->rq.local = &h1_conn_of(r)->local;
    r->resp.head_only = h->method_id == WF_HTTP_HEAD;
    r->rq.tls = wf_xprt_is_tls(&h1_conn_of(r)->xp);
    r->rq.xp = &h1_conn_of(r)->xp;
    if (h1_conn_of(r)->fwd != NULL) {
        h1_req_forwarded(r, h1_conn_of(r)->fwd);
    }
    if (r->hc->log_route) {
        wf_log_notice(0, "http request line \"%.*s %.*s HTTP/%u.%u\"",
                      (int)h->method.len, h->method.data, (int)h->target.len,
                      h->target.data, h->version / 10, h->version % 10);
    }
    return WF_OK;
}

/* Sends the interim 100 (Continue) before we read the body.  It is tiny and
 * the socket buffer is empty here, so a short write means a broken peer. */
static int
h1_send_continue(wf_h1_conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ssize_t n =
        wf_xprt_send(&c->xp, c->io.fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL);

    return n == (ssize_t)(sizeof(cont) - 1) ? WF_OK : WF_ERROR;
}

/* What to poll while the endpoint holds the request: nothing but the
 * client's close (EPOLLRDHUP, see h1_watch_peer()) when no body is to be
 * read; else nothing, and input waits in the kernel. */
static uint32_t
h1_hold_events(const wf_h1_conn_t *c)
{
    return c->req != NULL && h1_x(c)->body_mode == H1_BODY_NONE
                   && !h1_x(c)->peer_bytes
               ? EPOLLRDHUP
               : 0;
}

/* The client shut its side while the endpoint holds the request (RESPOND,
 * or SEND waiting for the endpoint).  With no byte pending it is gone:
 * closing ends the exchange, so that the endpoint hears of it (an
 * application gets REQ_ABORT).  Pending bytes (a pipelined request) wait
 * in the kernel, unwatched. */
static void
h1_watch_peer(wf_h1_conn_t *c)
{
    char b;
    ssize_t n = recv(c->io.fd, &b, 1, MSG_PEEK);

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        h1_close(c);
        return;
    }
    if (c->req != NULL) {
        h1_x(c)->peer_bytes = true;
    }
    h1_poll(c, 0);
}

/* Is EPOLLIN standing for EPOLLRDHUP while the endpoint holds a request
 * without a body: the first readiness (the client's close, or a
 * pipelined request) is handled as an EPOLLRDHUP (h1_watch_peer()).  A
 * keep-alive client that waits for its answer sends nothing meanwhile,
 * so the poll set stays EPOLLIN from request to request: two epoll_ctl
 * fewer per request. */
static bool
h1_holds_lazily(const wf_h1_conn_t *c)
{
    return (c->state == WF_H1_RESPOND || c->state == WF_H1_SEND)
           && c->io.events == EPOLLIN && h1_hold_events(c) == EPOLLRDHUP;
}

static void
h1_dispatch(wf_h1_conn_t *c)
{
    h1_set_state(c, WF_H1_RESPOND);
    wf_http_handle(c->req); /* the handler now owns c->req */
    if (c->state == WF_H1_RESPOND && c->io.events != h1_hold_events(c)
        && !h1_holds_lazily(c)) {
        /* The endpoint holds the request: input (its unread body, a
         * pipelined request) waits in the kernel meanwhile. */
        h1_poll(c, h1_hold_events(c));
    }
}

/* Dispatches a parsed head.  A body is left unread: the endpoint asks for
 * it (h1_mux_body_start) or answers first, and then it is drained before
 * the answer goes out (h1_mux_respond, h1_mux_job_start). */
static void
h1_start_body(wf_h1_conn_t *c)
{
    h1_xchg_t *x = h1_x(c);
    wf_h1_head_t *h = &c->req->head;

    x->body_chunked = h->chunked;
    x->body_left = h->content_length > 0 ? (uint64_t)h->content_length : 0;
    x->body_seen = 0;
    if (!x->body_chunked && x->body_left == 0) {
        x->input_done = true;
        h1_dispatch(c);
        return;
    }
    if (x->body_left > c->site->hc->max_body_size) {
        c->keep_alive = false;
        wf_req_respond_error(c->req, 413);
        return;
    }
    wf_h1_chunked_init(&x->chunked);
    x->body_mode = H1_BODY_PENDING;
    h1_dispatch(c);
}

/* Starts reading the body in mode (DRAIN or STREAM).  The interim 100 goes
 * out first if the client waits for it: no final response has started,
 * since a streamed body ends before the response starts and a drained one
 * before the parked response is sent. */
static void
h1_body_begin(wf_h1_conn_t *c, h1_body_mode_t mode)
{
    h1_x(c)->body_mode = mode;
    if (c->req->head.expect_continue && !h1_x(c)->continue_sent
        && c->rstart == c->rend) {
        h1_x(c)->continue_sent = true;
        if (h1_send_continue(c) != WF_OK) {
            h1_close(c);
            return;
        }
    }
    h1_set_state(c, WF_H1_BODY);
    if (c->io.events != EPOLLIN) {
        h1_poll(c, EPOLLIN);
    }
    h1_read_body(c);
}

/* The body ended: hand EOF to the endpoint, or release what was parked. */
static void
h1_body_done(wf_h1_conn_t *c)
{
    h1_body_mode_t mode = h1_x(c)->body_mode;
    h1_parked_t parked = h1_x(c)->parked;

    h1_x(c)->body_mode = H1_BODY_NONE;
    h1_x(c)->parked = H1_PARKED_NONE;
    h1_x(c)->input_done = true;
    if (mode == H1_BODY_STREAM) {
        wf_chan_close(&c->req->req_body);
        h1_set_state(c, WF_H1_RESPOND);
        h1_poll(c, h1_hold_events(c));
        return;
    }
    if (parked == H1_PARKED_JOB) {
        h1_set_state(c, WF_H1_RESPOND);
        h1_job_submit(c);
        return;
    }
    h1_send_response(c);
}

/* A body that cannot be read to its end (bad framing, too large, too
 * slow): the endpoint that streams it sees an abort; the client gets
 * status and the connection closes. */
static void
h1_body_fail(wf_h1_conn_t *c, unsigned status)
{
    c->keep_alive = false;
    c->exit_status = status == 408 ? MUX_ES_TOUT_ERR : MUX_ES_INVALID_ERR;
    if (h1_x(c)->body_mode == H1_BODY_STREAM) {
        h1_endpoint_abort(c);
    }
    h1_x(c)->body_mode = H1_BODY_NONE;
    h1_x(c)->parked = H1_PARKED_NONE;
    wf_req_respond_error(c->req, status);
}

/* Parses the head buffered in rbuf (all of it, or what has come so far). */
static void
h1_parse(wf_h1_conn_t *c)
{
    wf_h1_limits_t lim;
    unsigned status;
    int rc;

    h1_limits(c->site->hc, &lim);
    rc = wf_h1_parse_head(&c->req->head, c->rbuf + c->rstart,
                          c->rend - c->rstart, &lim);
    if (rc == WF_AGAIN) {
        h1_set_state(c, WF_H1_HEAD);
        return;
    }
    if (rc != WF_OK) {
        c->keep_alive = false;
        wf_req_respond_error(c->req, c->req->head.status);
        return;
    }
    c->rstart += (uint32_t)c->req->head.head_len;
    c->rkeep = c->rstart;
    c->keep_alive = c->req->head.keep_alive;
    status = h1_req_prepare(c->req);
    if (status != WF_OK) {
        c->keep_alive = false;
        wf_req_respond_error(c->req, status);
        return;
    }
    h1_start_body(c);
}

/* The "forwarded" object of c's listener in c's site, or NULL.  Scans
 * only when the snapshot has some (rarely more than a few). */
static const wf_forwarded_t *
h1_fwd_find(const wf_h1_conn_t *c)
{
    const wf_http_conf_t *hc = c->site->hc;
    const wf_listener_t *l = &c->srv->listener;

    for (size_t i = 0; i < hc->nfwd; i++) {
        if (wf_sockaddr_eq((const struct sockaddr *)&hc->fwd[i].addr,
                           (const struct sockaddr *)&l->addr)) {
            return &hc->fwd[i];
        }
    }
    return NULL;
}

/* Moves c to its listener's current site: the safe point of a connection
 * is the start of a request. */
static void
h1_site_update(wf_h1_conn_t *c)
{
    const wf_h1_site_t *site =
        atomic_load_explicit(&c->srv->site, memory_order_acquire);

    if (wf_likely(site == c->site)) {
        return;
    }
    wf_h1_snap_ref(site->snap);
    wf_h1_snap_unref(c->site->snap);
    c->site = site;
    c->fwd = h1_fwd_find(c);
}

static void
h1_begin(wf_h1_conn_t *c)
{
    bool removed = atomic_load(&c->srv->removed);

    if (c->req == NULL) {
        if (!removed) {
            h1_site_update(c); /* a removed one's site may be gone */
        }
        h1_stat_add(&h1_stats_cell(c)->requests, 1);
        c->req = h1_req_create(c);
        if (c->req == NULL) {
            h1_close(c);
            return;
        }
        if (removed) {
            c->keep_alive = false; /* as Unit: 408, then close */
            wf_req_respond_error(c->req, 408);
            return;
        }
    }
    h1_parse(c);
}

/* Hands c's socket, transport and buffered bytes to an HTTP/2
 * connection (http/h2_conn.c), which also takes over the listener's
 * connection count; c is freed at the end of the tick. */
static void
h1_to_h2(wf_h1_conn_t *c)
{
    wf_h2_start_t s = {
        .fd = c->io.fd,
        .xp = c->xp,
        .loop = c->loop,
        .srv = c->srv,
        .site = c->site,
        .remote = &c->remote,
        .local = &c->local,
        .pre = c->rbuf != NULL ? c->rbuf + c->rstart : NULL,
        .npre = c->rbuf != NULL ? c->rend - c->rstart : 0,
        .role = WF_H2_SERVER,
        .recv_preface = true,
    };

    wf_timer_stop(c->loop, &c->timer);
    wf_io_del(c->loop, &c->io);
    c->xp = (wf_xprt_t){0};
    c->io.fd = -1;
    h1_req_destroy(c);
    if (c->state == WF_H1_IDLE) {
        h1_stat_add(&h1_stats_cell(c)->idle, -1);
    }
    c->state = WF_H1_CLOSING; /* still open for /status: h2 closes it */
    wf_list_del(&c->resume.link);
    wf_list_del(&c->xp_kick.link);
    wf_list_del(&c->link);
    if (c->site->attach != NULL) {
        wf_rhttp_pub_attach(&s); /* a reverse tunnel (issue 13) */
    } else {
        wf_h2_conn_start(&s); /* copies s.pre: rbuf is freed with c */
    }
    wf_task_defer(c->loop, &c->free_task);
}

/* On an "h2c" listener, the first bytes of a connection say h1 or h2. */
static int
h1_h2c_check(wf_h1_conn_t *c)
{
    int rc = wf_h2_preface_check(c->rbuf + c->rstart, c->rend - c->rstart);

    if (rc == WF_AGAIN) {
        return WF_AGAIN;
    }
    c->h2_checked = true;
    if (rc == WF_OK) {
        h1_to_h2(c);
        return WF_OK;
    }
    return WF_DECLINED;
}

static void
h1_read_head(wf_h1_conn_t *c)
{
    ssize_t n = h1_recv(c);

    if (n == WF_AGAIN) {
        return;
    }
    if (n == WF_DECLINED) {
        /* The parser said WF_AGAIN on a buffer at its limit: too large. */
        c->keep_alive = false;
        wf_req_respond_error(c->req, 431);
        return;
    }
    if (n <= 0) {
        h1_close(c);
        return;
    }
    if (wf_unlikely(c->site->h2c && !c->h2_checked)
        && h1_h2c_check(c) != WF_DECLINED) {
        return;
    }
    h1_begin(c);
}

/* Streams decoded body bytes waiting in rbuf (c->pend_*) into the
 * endpoint's channel.  Returns WF_OK when the body ended and all is out,
 * WF_AGAIN when everything is out, WF_DECLINED when the channel is full
 * (its on_writable follows). */
static int
h1_body_flush(wf_h1_conn_t *c)
{
    h1_xchg_t *x = h1_x(c);
    wf_chan_t *ch = &c->req->req_body;

    while (x->pend_len > 0) {
        size_t k = wf_min(x->pend_len, wf_chan_room(ch));

        if (k == 0) {
            wf_chan_wait_room(ch);
            return WF_DECLINED;
        }
        wf_chan_write(ch, c->rbuf + x->pend_off, k);
        x->pend_off += (uint32_t)k;
        x->pend_len -= (uint32_t)k;
    }
    return x->body_ended ? WF_OK : WF_AGAIN;
}

/* Consumes buffered body bytes: drops them, or streams them to the
 * endpoint.  Decoded bytes stay in rbuf, in the part already consumed,
 * until the channel takes them.  Returns WF_OK when the body is complete,
 * WF_AGAIN when more is needed, WF_DECLINED when the endpoint's channel is
 * full, or WF_ERROR with a response sent. */
static int
h1_body_consume(wf_h1_conn_t *c)
{
    h1_xchg_t *x = h1_x(c);
    char *p = c->rbuf + c->rstart;
    size_t avail = c->rend - c->rstart;
    size_t used;
    size_t out;
    int rc;

    if (x->pend_len > 0 || x->body_ended) {
        rc = h1_body_flush(c);
        if (rc != WF_AGAIN) {
            return rc;
        }
    }
    if (!x->body_chunked) {
        used = out = (size_t)wf_min((uint64_t)avail, x->body_left);
        c->rstart += (uint32_t)used;
        x->body_left -= used;
        rc = x->body_left == 0 ? WF_OK : WF_AGAIN;
    } else {
        rc = wf_h1_chunked_decode(&x->chunked, p, avail, &used, p, &out);
        c->rstart += (uint32_t)used;
        x->body_seen += out;
        if (rc == WF_ERROR) {
            h1_body_fail(c, 400);
            return WF_ERROR;
        }
        if (x->body_seen > c->site->hc->max_body_size) {
            h1_body_fail(c, 413);
            return WF_ERROR;
        }
    }
    if (x->body_mode != H1_BODY_STREAM) {
        return rc;
    }
    x->pend_off = (uint32_t)(p - c->rbuf);
    x->pend_len = (uint32_t)out;
    x->body_ended = rc == WF_OK;
    return h1_body_flush(c);
}

/* The endpoint consumed streamed body bytes: read on. */
static void
h1_on_body_room(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, req_body);
    wf_h1_conn_t *c = h1_conn_of(r);

    if (c->state != WF_H1_BODY || h1_x(c)->body_mode != H1_BODY_STREAM) {
        return;
    }
    h1_progress(c); /* the timer was paused while the endpoint was slow */
    if (c->io.events != EPOLLIN) {
        h1_poll(c, EPOLLIN);
    }
    h1_read_body(c);
}

static void
h1_read_body(wf_h1_conn_t *c)
{
    for (unsigned i = 0; i < 64; i++) {
        ssize_t n;
        int rc = h1_body_consume(c);

        if (rc == WF_OK) {
            h1_body_done(c);
            return;
        }
        if (rc == WF_ERROR) {
            return;
        }
        if (rc == WF_DECLINED) {
            /* Back-pressure: stop reading the socket until the endpoint
             * makes room; its slowness is not the client's timeout. */
            h1_poll(c, 0);
            wf_timer_stop(c->loop, &c->timer);
            return;
        }
        if (c->rstart == c->rend) {
            /* Dropped body bytes make room; the head stays. */
            c->rstart = c->rend = c->rkeep;
        }
        n = h1_recv(c);
        if (n == WF_AGAIN) {
            return;
        }
        if (n <= 0) {
            h1_close(c);
            return;
        }
        h1_progress(c);
    }
}

static void h1_on_resume(wf_task_t *task);

/* Logs c's request to the access log of its snapshot, if any, with the
 * status and the body bytes that went out. */
static void
h1_access_log(wf_h1_conn_t *c)
{
    wf_access_log_t *al = c->site->hc->access_log;
    wf_req_t *r = c->req;

    if (al == NULL || r == NULL || r->resp.status == 0) {
        return;
    }
    r->rq.status = r->resp.status;
    r->rq.body_bytes_sent = h1_x(c)->body_sent;
    if (h1_x(c)->file != NULL) {
        r->rq.body_bytes_sent += r->resp.content_length - h1_x(c)->file_left;
    }
    if (r->rq.head == NULL) {
        /* A head that did not parse: its fields are not valid, so only the
         * addresses are logged ("-" for the rest, as Unit). */
        r->rq.remote = &c->remote;
        r->rq.local = &c->local;
    }
    wf_access_log_write(al, &r->rq, c->loop);
}

/* Whether the close after this response can skip h1_linger(): the
 * client asked for it, its request was read to the end, and none of its
 * bytes wait unread (in rbuf, in OpenSSL, or in the kernel: one peek).
 * As nginx's lingering_close "on"; it saves a shutdown(), a wait and a
 * read() per "Connection: close" request. */
static bool
h1_input_done(wf_h1_conn_t *c)
{
    char b;

    return c->req != NULL && h1_x(c)->input_done && !c->req->head.keep_alive
           && (c->rbuf == NULL || c->rstart >= c->rend)
           && !wf_xprt_pending(&c->xp)
           && recv(c->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == -1
           && errno == EAGAIN;
}

/* The response is out: start on the next request, or close. */
static void
h1_request_done(wf_h1_conn_t *c)
{
    bool done = !c->keep_alive && h1_input_done(c);
    bool more;

    h1_access_log(c);
    h1_req_destroy(c);
    if (done) {
        h1_close(c);
        return;
    }
    if (!c->keep_alive) {
        h1_linger(c);
        return;
    }
    if (c->io.events != EPOLLIN) {
        h1_poll(c, EPOLLIN);
    }
    more = c->rbuf != NULL && c->rstart < c->rend;
    if (!more && atomic_load(&c->srv->removed)) {
        h1_close(c); /* the sweep has passed: it would stay idle */
        return;
    }
    if (!more) {
        h1_rbuf_free(c);
        h1_set_state(c, WF_H1_IDLE);
        return;
    }
    /* Pipelined bytes wait: serve them from the run queue, not from here,
     * so that responses never nest on the stack. */
    h1_set_state(c, WF_H1_HEAD);
    wf_task_schedule(c->loop, &c->resume);
}

static void
h1_on_resume(wf_task_t *task)
{
    wf_h1_conn_t *c = wf_container_of(task, wf_h1_conn_t, resume);

    if (c->state == WF_H1_RESPOND && c->req != NULL
        && h1_x(c)->body_mode == H1_BODY_PENDING && c->req->body_wanted) {
        h1_body_begin(c, H1_BODY_STREAM); /* see h1_mux_body_start() */
        return;
    }
    if (c->state != WF_H1_HEAD) {
        return;
    }
    if (++c->burst > H1_PIPELINE_BURST) {
        /* Let other connections have their turn; input is still buffered,
         * and a poll may never come for it. */
        c->burst = 0;
        wf_task_defer(c->loop, &c->resume);
        return;
    }
    h1_begin(c);
}

/* Writes the head and a memory body.  Returns WF_OK when both are out. */
static int
h1_send_head(wf_h1_conn_t *c)
{
    h1_xchg_t *x = h1_x(c);
    struct iovec iov[2];
    struct msghdr msg = {.msg_iov = iov};
    int flags = MSG_NOSIGNAL;
    ssize_t n;

    while (x->out_sent < x->out_len || x->body_sent < x->body.len) {
        size_t head_left = x->out_len - x->out_sent;

        msg.msg_iovlen = 0;
        if (head_left > 0) {
            iov[msg.msg_iovlen++] =
                (struct iovec){c->req->hbuf + x->out_sent, head_left};
        }
        if (x->body_sent < x->body.len) {
            iov[msg.msg_iovlen++] =
                (struct iovec){(char *)x->body.data + x->body_sent,
                               x->body.len - x->body_sent};
        }
        if (x->file_left > 0) {
            flags |= MSG_MORE; /* one segment with the file's first bytes */
        }
        n = wf_xprt_sendmsg(&c->xp, c->io.fd, &msg, flags);
        if (n < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        if ((size_t)n >= head_left) {
            x->out_sent = x->out_len;
            x->body_sent += (size_t)n - head_left;
        } else {
            x->out_sent += (size_t)n;
        }
        h1_progress(c);
    }
    return WF_OK;
}

static int
h1_send_file(wf_h1_conn_t *c)
{
    h1_xchg_t *x = h1_x(c);
    while (x->file_left > 0) {
        size_t chunk = (size_t)wf_min(x->file_left, (uint64_t)H1_SENDFILE_MAX);
        ssize_t n = wf_xprt_sendfile(&c->xp, c->io.fd, wf_file_fd(x->file),
                                     &x->file_off, chunk);

        if (n < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        if (n == 0) {
            /* The file shrank under us: the promised length cannot be
             * kept, so the connection must end. */
            wf_log_warn(0, "file shrank while being sent");
            return WF_ERROR;
        }
        x->file_left -= (uint64_t)n;
        h1_progress(c);
        if ((size_t)n < chunk) {
            /* The socket buffer is full: asking again would only earn an
             * EAGAIN, so wait for the poll (it fires at once if wrong). */
            return x->file_left > 0 ? WF_AGAIN : WF_OK;
        }
    }
    return WF_OK;
}

/* Frames everything queued in the response channel as one chunk (the
 * data are H1_STREAM_IOV buffers at most), with the last chunk folded in
 * when the endpoint closed the channel and all of it fits.  Returns WF_OK
 * with a frame to write, or WF_AGAIN when the channel is empty and open. */
static int
h1_stream_next(wf_h1_conn_t *c)
{
    static const char last[] = "\r\n0\r\n\r\n";
    h1_xchg_t *x = h1_x(c);
    wf_chan_t *ch = &c->req->resp_body;
    struct iovec iov[H1_STREAM_IOV];
    bool chunked = x->stream_chunked;

    x->chunk_off = 0;
    x->chunk_hlen = x->chunk_tlen = 0;
    wf_chan_peekv(ch, iov, H1_STREAM_IOV, &x->chunk_len);
    if (wf_chan_is_aborted(ch)) {
        return WF_ERROR;
    }
    x->stream_last =
        ch->state == WF_CHAN_EOF && x->chunk_len == wf_chan_queued(ch);
    if (x->chunk_len == 0 && !x->stream_last) {
        return WF_AGAIN;
    }
    if (chunked && x->chunk_len > 0) {
        x->chunk_hlen = (uint8_t)snprintf(x->chunk_head, sizeof(x->chunk_head),
                                          "%zx\r\n", x->chunk_len);
        x->chunk_tail = last;
        x->chunk_tlen = x->stream_last ? sizeof(last) - 1 : 2;
    } else if (chunked) {
        x->chunk_tail = last + 2;
        x->chunk_tlen = sizeof(last) - 3;
    }
    return WF_OK;
}

/* Points iov at the first want queued bytes of the response channel;
 * returns the entries. */
static size_t
h1_stream_iov(wf_h1_conn_t *c, struct iovec *iov, size_t want)
{
    size_t len;
    size_t k = wf_chan_peekv(&c->req->resp_body, iov, H1_STREAM_IOV, &len);
    size_t i = 0, got = 0;

    while (i < k && got + iov[i].iov_len < want) {
        got += iov[i++].iov_len;
    }
    if (i < k) {
        iov[i].iov_len = want - got;
        i++;
    }
    return i;
}

/* Writes the frame in one sendmsg() per try: the response head while it is
 * not out, [chunk head | data | tail] (only the data when not chunked).
 * Data bytes are consumed as they leave, so room frees at once.  Returns
 * WF_OK when it is all out. */
static int
h1_stream_write(wf_h1_conn_t *c)
{
    h1_xchg_t *x = h1_x(c);
    size_t hlen = x->chunk_hlen;
    size_t total = hlen + x->chunk_len + x->chunk_tlen;
    struct iovec iov[H1_STREAM_IOV + 3];
    struct msghdr msg = {.msg_iov = iov};

    for (;;) {
        size_t head_left = x->out_len - x->out_sent;
        size_t off = x->chunk_off;
        size_t dsent = off > hlen ? wf_min(off - hlen, x->chunk_len) : 0;
        size_t toff = off > hlen + x->chunk_len ? off - hlen - x->chunk_len : 0;
        size_t before = off < hlen ? hlen - off : 0, k = 0, d;
        ssize_t n;

        if (head_left == 0 && off == total) {
            return WF_OK;
        }
        if (head_left > 0) {
            iov[k++] = (struct iovec){c->req->hbuf + x->out_sent, head_left};
        }
        if (before > 0) {
            iov[k++] = (struct iovec){x->chunk_head + off, before};
        }
        if (dsent < x->chunk_len) {
            k += h1_stream_iov(c, iov + k, x->chunk_len - dsent);
        }
        if (toff < x->chunk_tlen) {
            iov[k++] = (struct iovec){(char *)x->chunk_tail + toff,
                                      x->chunk_tlen - toff};
        }
        msg.msg_iovlen = k;
        n = wf_xprt_sendmsg(&c->xp, c->io.fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        h1_progress(c);
        if ((size_t)n < head_left) {
            x->out_sent += (size_t)n;
            return WF_AGAIN; /* the socket is full */
        }
        x->out_sent = x->out_len;
        n -= (ssize_t)head_left;
        d = (size_t)n > before
                ? wf_min((size_t)n - before, x->chunk_len - dsent)
                : 0;
        wf_chan_consume(&c->req->resp_body, d);
        x->body_sent += d;
        x->chunk_off += (size_t)n;
        if (x->chunk_off < total) {
            return WF_AGAIN; /* the socket took less than offered */
        }
    }
}

/* Splices the piped bytes of the response channel to the socket (after
 * the head, alone: the buffered bytes before them went with it).
 * Returns WF_OK when the pipe is empty, WF_AGAIN when the socket is full,
 * WF_ERROR to close. */
static int
h1_stream_splice(wf_h1_conn_t *c)
{
    wf_chan_t *ch = &c->req->resp_body;
    int rc = h1_send_head(c);

    while (rc == WF_OK && wf_chan_piped(ch) > 0) {
        size_t want = wf_chan_piped(ch);
        ssize_t n = wf_chan_splice_out(ch, c->io.fd, want);

        if (n < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        h1_progress(c);
        h1_x(c)->body_sent += (size_t)n;
        if ((size_t)n < want) {
            return WF_AGAIN; /* the socket took less than offered */
        }
    }
    return rc;
}

/* Pumps the streamed body.  The head goes out with the first data (one
 * write), or alone when the endpoint has none yet.  Returns WF_OK when
 * the last chunk is out, WF_AGAIN when the socket is full, WF_DECLINED
 * when waiting for the endpoint, WF_ERROR to close. */
static int
h1_send_stream(wf_h1_conn_t *c)
{
    h1_xchg_t *x = h1_x(c);
    bool head_only = c->req->resp.head_only;

    for (;;) {
        const wf_chan_t *ch = &c->req->resp_body;
        int rc;

        if (x->chunk_off == 0 && x->chunk_len == 0 && wf_chan_piped(ch) > 0
            && wf_chan_piped(ch) == wf_chan_queued(ch)) {
            rc = h1_stream_splice(c);
            if (rc != WF_OK) {
                return rc;
            }
            continue;
        }
        if (x->chunk_off == 0 && x->chunk_len == 0 && !x->stream_last) {
            rc = h1_stream_next(c);
            if (rc == WF_AGAIN) {
                rc = h1_send_head(c);
                return rc == WF_OK ? WF_DECLINED : rc;
            }
            if (rc != WF_OK) {
                return rc;
            }
        }
        if (head_only) {
            wf_chan_consume(&c->req->resp_body, x->chunk_len);
            x->chunk_off = x->chunk_hlen + x->chunk_len + x->chunk_tlen;
        }
        rc = h1_stream_write(c);
        if (rc != WF_OK || x->stream_last) {
            return rc;
        }
        x->chunk_off = x->chunk_len = 0;
    }
}

/* The endpoint wrote or closed the response channel. */
static void
h1_on_resp_data(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, resp_body);
    wf_h1_conn_t *c = h1_conn_of(r);

    if (c->state == WF_H1_SEND && c->io.events != EPOLLOUT) {
        h1_progress(c); /* the timer waited while the endpoint was slow */
        h1_send(c);
    }
}

/* ---- Tunnel: after a 101, the socket and c->req's channels are joined:
 * client bytes go into req_body, resp_body's bytes go out as they are.
 * Each direction stops on its own back-pressure (a full req_body, a full
 * socket); the timer is settings.http.websocket.read_timeout, restarted
 * by client bytes. */

/* Passes n client bytes on to the endpoint, noting where the client's
 * WebSocket Close is. */
static void
h1_tunnel_put(wf_h1_conn_t *c, const char *p, size_t n)
{
    h1_x(c)->ws_pinged = false;
    wf_ws_scan(&h1_x(c)->ws, p, n);
    wf_chan_write(&c->req->req_body, p, n);
}

/* Moves client bytes into req_body: those read with the head first, then
 * the socket's.  Returns WF_AGAIN to wait for input, WF_DECLINED to wait
 * for room (or after EOF), WF_ERROR to close. */
static int
h1_tunnel_in(wf_h1_conn_t *c)
{
    wf_chan_t *ch = &c->req->req_body;
    char buf[H1_TUNNEL_PIECE];

    if (h1_x(c)->tunnel_eof) {
        return WF_DECLINED;
    }
    if (wf_chan_is_aborted(ch)) {
        return WF_ERROR;
    }
    while (c->rbuf != NULL && c->rstart < c->rend) {
        size_t k = wf_min((size_t)(c->rend - c->rstart), wf_chan_room(ch));

        if (k == 0) {
            wf_chan_wait_room(ch);
            return WF_DECLINED;
        }
        h1_tunnel_put(c, c->rbuf + c->rstart, k);
        c->rstart += (uint32_t)k;
    }
    for (unsigned i = 0; i < H1_TUNNEL_BURST; i++) {
        size_t room = wf_min(wf_chan_room(ch), sizeof(buf));
        ssize_t n;

        if (room == 0) {
            wf_chan_wait_room(ch);
            return WF_DECLINED;
        }
        n = wf_xprt_recv(&c->xp, c->io.fd, buf, room);
        if (n > 0) {
            h1_tunnel_put(c, buf, (size_t)n);
            h1_progress(c);
            continue;
        }
        if (n == 0) {
            h1_x(c)->tunnel_eof = true;
            wf_chan_close(ch);
            return WF_DECLINED;
        }
        return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
    }
    return WF_AGAIN; /* more may be there: the poll says so */
}

/* Sends what resp_body holds.  Returns WF_OK when the endpoint closed it
 * and all is out, WF_AGAIN when the socket is full, WF_DECLINED when
 * waiting for the endpoint, WF_ERROR to close. */
static int
h1_tunnel_out(wf_h1_conn_t *c)
{
    wf_chan_t *ch = &c->req->resp_body;

    if (wf_unlikely(h1_x(c)->ping_off > 0) && h1_ping_send(c) != WF_OK) {
        return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
    }
    for (;;) {
        struct iovec iov[H1_STREAM_IOV];
        struct msghdr msg = {.msg_iov = iov};
        size_t n;
        ssize_t k;

        msg.msg_iovlen = wf_chan_peekv(ch, iov, H1_STREAM_IOV, &n);
        if (n == 0) {
            if (wf_chan_is_aborted(ch)) {
                return WF_ERROR;
            }
            return wf_chan_is_done(ch) ? WF_OK : WF_DECLINED;
        }
        k = wf_xprt_sendmsg(&c->xp, c->io.fd, &msg, MSG_NOSIGNAL);
        if (k < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        for (size_t i = 0, left = (size_t)k; left > 0; i++) {
            size_t m = wf_min(left, iov[i].iov_len);

            wf_ws_scan(&h1_x(c)->ws_out, iov[i].iov_base, m);
            left -= m;
        }
        wf_chan_consume(ch, (size_t)k);
        h1_x(c)->body_sent += (size_t)k;
        if ((size_t)k < n) {
            return WF_AGAIN; /* the socket is full */
        }
    }
}

/* The Ping's rest.  WF_OK once it is all out, else WF_ERROR with errno. */
static int
h1_ping_send(wf_h1_conn_t *c)
{
    h1_xchg_t *x = h1_x(c);
    size_t left = sizeof(H1_WS_PING) - 1 - x->ping_off;
    ssize_t k = wf_xprt_send(&c->xp, c->io.fd, &H1_WS_PING[x->ping_off], left,
                             MSG_NOSIGNAL);

    if (k < 0) {
        return WF_ERROR;
    }
    x->ping_off = (size_t)k == left ? 0 : (uint8_t)(x->ping_off + k);
    if (x->ping_off > 0) {
        errno = EAGAIN;
        return WF_ERROR;
    }
    return WF_OK;
}

/* The tunnel's timer: after keepalive_interval without client bytes a
 * Ping goes to the client, as Unit sends one (its Pong is client bytes);
 * after read_timeout the tunnel closes.  The Ping goes only between the
 * endpoint's frames, with none waiting. */
static void
h1_tunnel_timer(wf_h1_conn_t *c)
{
    const wf_http_conf_t *hc = c->site->hc;
    h1_xchg_t *x = h1_x(c);
    const wf_ws_scan_t *o = &x->ws_out;
    const char *queued;

    if (x->ws_pinged || hc->ws_keepalive_ms == 0
        || (hc->ws_read_timeout_ms > 0
            && hc->ws_keepalive_ms >= hc->ws_read_timeout_ms)) {
        h1_close(c);
        return;
    }
    x->ws_pinged = true;
    if (o->hlen == 0 && o->skip == 0 && !o->closed
        && wf_chan_peek(&c->req->resp_body, &queued) == 0) {
        x->ping_off = 0;
        if (h1_ping_send(c) != WF_OK && errno != EAGAIN && errno != EINTR) {
            h1_close(c);
            return;
        }
        if (x->ping_off > 0) {
            h1_poll(c, c->io.events | EPOLLOUT);
        }
    }
    wf_timer_set(c->loop, &c->timer,
                 hc->ws_read_timeout_ms > 0
                     ? hc->ws_read_timeout_ms - hc->ws_keepalive_ms
                     : 0);
}

/* The endpoint's side is over and out: the tunnel is logged and the
 * connection closes once the client's Close came (RFC 6455 7.1.1: the
 * server closes the TCP connection first, once both Close frames were
 * exchanged).  Closing before a client sees our Close lets its stack
 * drop it, and the client reports an abnormal closure. */
static void
h1_tunnel_end(wf_h1_conn_t *c)
{
    h1_access_log(c);
    c->keep_alive = false;
    if (h1_x(c)->ws.closed || h1_x(c)->tunnel_eof) {
        h1_linger(c);
        return;
    }
    h1_set_state(c, WF_H1_WS_CLOSE);
    h1_poll(c, EPOLLIN);
}

/* WS_CLOSE: the client's bytes are dropped until its Close frame or its
 * EOF; H1_WS_CLOSE_MS bounds the wait. */
static void
h1_ws_close_read(wf_h1_conn_t *c)
{
    char buf[H1_TUNNEL_PIECE];

    for (unsigned i = 0; i < H1_TUNNEL_BURST; i++) {
        ssize_t n = wf_xprt_recv(&c->xp, c->io.fd, buf, sizeof(buf));

        if (n > 0 && !wf_ws_scan(&h1_x(c)->ws, buf, (size_t)n)) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        break; /* the Close, EOF or an error */
    }
    h1_linger(c);
}

/* Runs both directions and polls for what they wait on. */
static void
h1_tunnel_pump(wf_h1_conn_t *c)
{
    int out = h1_tunnel_out(c);
    int in = out == WF_ERROR ? WF_ERROR : h1_tunnel_in(c);
    uint32_t events;

    if (in == WF_ERROR || out == WF_ERROR) {
        h1_close(c);
        return;
    }
    if (out == WF_OK) {
        h1_tunnel_end(c);
        return;
    }
    events = (in == WF_AGAIN ? EPOLLIN : 0) | (out == WF_AGAIN ? EPOLLOUT : 0);
    if (c->io.events != events) {
        h1_poll(c, events);
    }
}

/* The endpoint wrote to resp_body, or made room in req_body. */
static void
h1_on_tunnel_resp(wf_chan_t *ch)
{
    wf_h1_conn_t *c = h1_conn_of(wf_container_of(ch, wf_req_t, resp_body));

    if (c->state == WF_H1_TUNNEL) {
        h1_tunnel_pump(c);
    }
}

static void
h1_on_tunnel_req(wf_chan_t *ch)
{
    wf_h1_conn_t *c = h1_conn_of(wf_container_of(ch, wf_req_t, req_body));

    if (c->state == WF_H1_TUNNEL) {
        h1_tunnel_pump(c);
    }
}

/* The 101 head is out: the connection becomes the tunnel. */
static void
h1_tunnel_begin(wf_h1_conn_t *c)
{
    wf_req_t *r = c->req;

    c->keep_alive = false;
    wf_chan_set_readable(&r->resp_body, h1_on_tunnel_resp);
    wf_chan_set_writable(&r->req_body, h1_on_tunnel_req);
    h1_set_state(c, WF_H1_TUNNEL);
    h1_tunnel_pump(c);
}

static void
h1_send(wf_h1_conn_t *c)
{
    int rc;

    if (h1_x(c)->streaming) {
        /* The head leaves with the first data (h1_stream_write()). */
        rc = h1_send_stream(c);
    } else {
        rc = h1_send_head(c);
        rc = rc == WF_OK ? h1_send_file(c) : rc;
    }
    if (rc == WF_AGAIN) {
        if (c->io.events != EPOLLOUT) {
            h1_poll(c, EPOLLOUT);
        }
        return;
    }
    if (rc == WF_DECLINED) {
        /* Waiting for the endpoint, not for the client (EPOLLIN left from
         * the request stands for the hold: h1_holds_lazily()). */
        if (c->io.events != h1_hold_events(c) && !h1_holds_lazily(c)) {
            h1_poll(c, h1_hold_events(c));
        }
        wf_timer_stop(c->loop, &c->timer);
        return;
    }
    if (rc == WF_ERROR) {
        h1_close(c);
        return;
    }
    if (wf_unlikely(h1_x(c)->tunnel)) {
        h1_tunnel_begin(c);
        return;
    }
    h1_request_done(c);
}

/* A big file goes out in fewer, larger writes with a send buffer above
 * what autotuning reaches (4 MiB here): measured on loopback, it halves the
 * wake-ups and cuts the CPU per megabyte by a fifth.  The kernel only uses
 * the memory while data is queued. */
static void
h1_big_sndbuf(wf_h1_conn_t *c)
{
    int size = H1_BIG_SNDBUF;

    c->big_sndbuf = true;
    setsockopt(c->io.fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

/* The verdict on a connection that closes after an error response. */
static wf_mux_exit_status_t
h1_exit_status_of(unsigned status)
{
    if (status == 408) {
        return MUX_ES_TOUT_ERR;
    }
    if (status == 501) {
        return MUX_ES_NOTIMPL_ERR;
    }
    return status >= 500 ? MUX_ES_INTERNAL_ERR : MUX_ES_INVALID_ERR;
}

/* Sets up the streamed body of r: chunked on HTTP/1.1, close-delimited
 * on HTTP/1.0. */
static void
h1_stream_setup(wf_h1_conn_t *c, wf_req_t *r)
{
    h1_x(c)->streaming = true;
    h1_x(c)->stream_chunked = r->head.version != 10 && !r->resp.stream_length;
    h1_x(c)->stream_last = false;
    h1_x(c)->chunk_len = h1_x(c)->chunk_off = 0;
    if (r->head.version == 10 && !r->resp.stream_length) {
        c->keep_alive = false;
    }
    wf_chan_set_readable(&r->resp_body, h1_on_resp_data);
    /* Bytes sent as they are, socket to socket: the endpoint may splice
     * them (h1_stream_splice()). */
    if (r->resp.stream_length && !r->resp.head_only
        && !wf_xprt_is_tls(&c->xp)) {
        wf_chan_set_pipe(&r->resp_body, c->pipe);
    }
}

/* Writes the head of c->req->resp and starts sending. */
static void
h1_send_response(wf_h1_conn_t *c)
{
    h1_xchg_t *x = h1_x(c);
    wf_req_t *r = c->req;
    wf_resp_t *resp = &r->resp;
    size_t need = wf_resp_head_size(resp) + 32; /* 32: a tunnel's field */

    if (resp->close) {
        c->keep_alive = false;
    }
    if (!c->keep_alive && resp->status >= 400
        && c->exit_status == MUX_ES_UNKNOWN) {
        c->exit_status = h1_exit_status_of(resp->status);
    }
    if (wf_unlikely(resp->stream)) {
        h1_stream_setup(c, r);
    }
    if (need > sizeof(r->hbuf_inline)) {
        r->hbuf = malloc(need);
        if (r->hbuf == NULL) {
            r->hbuf = r->hbuf_inline;
            h1_close(c);
            return;
        }
    }
    x->out_len = wf_resp_head_write(
        r->hbuf, need, resp, c->loop, c->keep_alive || x->tunnel,
        r->head.version == 10 ? 10 : 11, c->site->hc->server_version);
    if (wf_unlikely(x->tunnel)) {
        /* "Connection" is hop-by-hop: the mux says it (RFC 6455 4.2.2). */
        static const char conn[] = "Connection: Upgrade\r\n\r\n";

        memcpy(r->hbuf + x->out_len - 2, conn, sizeof(conn) - 1);
        x->out_len += sizeof(conn) - 3;
    }
    r->rq.resp_head = wf_str_make(r->hbuf, x->out_len); /* for templates */
    x->out_sent = 0;
    x->body = resp->head_only || resp->stream ? wf_null_str : resp->body;
    x->body_sent = 0;
    x->file = resp->head_only || resp->stream ? NULL : resp->file;
    x->file_off = (off_t)resp->file_off;
    x->file_left = x->file != NULL ? resp->content_length : 0;
    if (x->file_left >= H1_BIG_FILE && !c->big_sndbuf) {
        h1_big_sndbuf(c);
    }
    h1_set_state(c, WF_H1_SEND);
    h1_send(c);
}

/* mux op: r->resp is final.  An unread body is drained first (the
 * response waits, parked); a body being streamed to the endpoint is given
 * up, and the connection closes after the response. */
static void
h1_mux_respond(wf_req_t *r)
{
    wf_h1_conn_t *c = h1_conn_of(r);

    if (h1_x(c)->body_mode == H1_BODY_PENDING && !r->body_wanted) {
        h1_x(c)->parked = H1_PARKED_RESPOND;
        h1_body_begin(c, H1_BODY_DRAIN);
        return;
    }
    if (h1_x(c)->body_mode != H1_BODY_NONE) {
        /* Asked for and not read to its end: given up. */
        h1_x(c)->body_mode = H1_BODY_NONE;
        c->keep_alive = false;
        wf_chan_abort(&r->req_body);
    }
    h1_send_response(c);
}

/* mux op: the endpoint reads the body. */
static void
h1_mux_body_start(wf_req_t *r)
{
    wf_h1_conn_t *c = h1_conn_of(r);

    if (h1_x(c)->body_mode != H1_BODY_PENDING) {
        return; /* asked twice, or after answering */
    }
    wf_chan_set_writable(&r->req_body, h1_on_body_room);
    /* Start from the run queue: reading may fail the body at once (a bad
     * chunk already buffered), and answering that frees r, which the
     * endpoint still holds until it returns. */
    if (wf_list_is_empty(&c->resume.link)) {
        wf_task_schedule(c->loop, &c->resume);
    }
}

static void
h1_on_job_done(wf_task_t *task)
{
    wf_req_t *r = wf_container_of(task, wf_req_t, job.done);
    wf_h1_conn_t *c = h1_conn_of(r);

    c->job_pending = false;
    if (c->state == WF_H1_CLOSING) {
        wf_task_defer(c->loop, &c->free_task);
        return;
    }
    r->job_done(r);
}

static void
h1_job_submit(wf_h1_conn_t *c)
{
    wf_req_t *r = c->req;

    /* Input stays buffered in the kernel until the response is out. */
    h1_poll(c, 0);
    if (c->state == WF_H1_CLOSING) {
        return;
    }
    c->job_pending = true;
    r->job.loop = c->loop;
    r->job.done.handler = h1_on_job_done;
    wf_tpool_submit(&r->job);
}

/* mux op: a helper job for r.  An unread body is drained first. */
static void
h1_mux_job_start(wf_req_t *r)
{
    wf_h1_conn_t *c = h1_conn_of(r);

    if (h1_x(c)->body_mode == H1_BODY_PENDING && !r->body_wanted) {
        h1_x(c)->parked = H1_PARKED_JOB;
        h1_body_begin(c, H1_BODY_DRAIN);
        return;
    }
    h1_job_submit(c);
}

/* MUX_CTL_TUNNEL: r, the request being handled, may become a tunnel
 * once its response head is out (HTTP/1.1, no body read or pending, no
 * response started, no helper job). */
static int
h1_tunnel_ok(wf_h1_conn_t *c, const wf_req_t *r)
{
    if (r == NULL || r != c->req || c->state != WF_H1_RESPOND
        || r->head.version != 11 || h1_x(c)->body_mode != H1_BODY_NONE
        || c->job_pending || r->resp.stream || r->resp.status != 101) {
        return WF_DECLINED;
    }
    h1_x(c)->tunnel = true;
    return WF_OK;
}

static int
h1_mux_ctl(wf_mux_t *m, wf_mux_ctl_t op, void *arg)
{
    wf_h1_conn_t *c = wf_container_of(m, wf_h1_conn_t, mux);

    switch (op) {
    case MUX_CTL_STATUS:
        return c->state == WF_H1_CLOSING ? 0 : MUX_STATUS_READY;
    case MUX_CTL_EXIT_STATUS:
        return (int)c->exit_status;
    case MUX_CTL_GET_NBSTRM:
        return c->req != NULL && c->state != WF_H1_IDLE ? 1 : 0;
    case MUX_CTL_GET_MAXSTRM:
        return 1; /* HTTP/1.x: one exchange at a time */
    case MUX_CTL_TUNNEL:
        return h1_tunnel_ok(c, arg);
    case MUX_CTL_REVERSE_CONN:
    case MUX_CTL_NOPS:
        break;
    }
    return WF_DECLINED;
}

static const wf_mux_ops_t h1_mux_ops = {
    .name = "h1",
    .respond = h1_mux_respond,
    .body_start = h1_mux_body_start,
    .job_start = h1_mux_job_start,
    .ctl = h1_mux_ctl,
};

static void
h1_on_io(wf_io_t *io, uint32_t events)
{
    wf_h1_conn_t *c = wf_container_of(io, wf_h1_conn_t, io);

    c->burst = 0;
    if (wf_unlikely(c->io.events == EPOLLRDHUP || h1_holds_lazily(c))) {
        h1_watch_peer(c);
        return;
    }
    if (wf_unlikely(events & (EPOLLERR | EPOLLHUP))
        && c->state == WF_H1_TUNNEL) {
        h1_close(c); /* reset: a tunnel may poll for nothing else */
        return;
    }
    h1_states[c->state].on_input(c);
    if (c->state != WF_H1_CLOSING) {
        h1_xprt_kick(c);
    }
}

static void
h1_on_xprt_kick(wf_task_t *task)
{
    wf_h1_conn_t *c = wf_container_of(task, wf_h1_conn_t, xp_kick);

    if (c->state != WF_H1_CLOSING && (c->io.events & EPOLLIN) != 0) {
        h1_on_io(&c->io, EPOLLIN);
    }
}

/* The TLS handshake, before the first request; header_read_timeout bounds
 * it, and the request head gets its own from its end on. */
static void
h1_tls_handshake(wf_h1_conn_t *c)
{
    uint32_t events = EPOLLIN;
    int rc = wf_tls_handshake(&c->xp, &events);

    if (rc == WF_AGAIN) {
        h1_poll(c, events);
        return;
    }
    if (rc != WF_OK) {
        /* The alert is written; a TLS 1.3 client may have sent its first
         * request after its Finished already, and closing on those unread
         * bytes would reset the connection and destroy the alert: drain
         * them as plain bytes first. */
        wf_xprt_close(&c->xp);
        h1_linger(c);
        return;
    }
    if (wf_tls_alpn_h2(&c->xp)) {
        h1_to_h2(c);
        return;
    }
    h1_set_state(c, WF_H1_HEAD);
    h1_poll(c, EPOLLIN);
}

/* Copies an address for routing: IP addresses whole, unix sockets by
 * family only. */
static void
h1_addr_set(wf_sockaddr_t *dst, const struct sockaddr *sa, socklen_t len)
{
    memset(dst, 0, sizeof(*dst));
    if ((sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        && len <= sizeof(*dst)) {
        memcpy(dst, sa, len);
        return;
    }
    dst->sa.sa_family = sa->sa_family;
}

/* The local address: the listener's, unless it listens on a wildcard
 * address (then the kernel knows which one the client reached). */
static void
h1_local_addr(wf_h1_conn_t *c, const wf_listener_t *l)
{
    const struct sockaddr *sa = (const struct sockaddr *)&l->addr;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    bool wildcard =
        (sa->sa_family == AF_INET
         && ((const struct sockaddr_in *)sa)->sin_addr.s_addr == INADDR_ANY)
        || (sa->sa_family == AF_INET6
            && IN6_IS_ADDR_UNSPECIFIED(
                &((const struct sockaddr_in6 *)sa)->sin6_addr));

    if (wildcard && getsockname(c->io.fd, (struct sockaddr *)&ss, &len) == 0) {
        h1_addr_set(&c->local, (struct sockaddr *)&ss, len);
        return;
    }
    h1_addr_set(&c->local, sa, l->addrlen);
}

static void
h1_on_accept(wf_listener_t *l, wf_loop_t *loop, int fd,
             const struct sockaddr *peer, socklen_t peerlen)
{
    wf_h1_server_t *srv = wf_container_of(l, wf_h1_server_t, listener);
    h1_thread_t *thr = h1_thread();
    wf_h1_conn_t *c = wf_fpool_get(&thr->conns);

    if (c == NULL) {
        close(fd);
        wf_listen_conn_release(loop);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->mux.ops = &h1_mux_ops;
    c->io.fd = fd;
    c->pipe[0] = c->pipe[1] = -1;
    c->io.handler = h1_on_io;
    c->loop = loop;
    c->srv = srv;
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    c->site = atomic_load_explicit(&srv->site, memory_order_acquire);
    wf_h1_snap_ref(c->site->snap);
    c->fwd = h1_fwd_find(c);
    h1_stat_add(&h1_stats_cell(c)->accepted, 1);
    h1_addr_set(&c->remote, peer, peerlen);
    h1_local_addr(c, l);
    c->state = WF_H1_RESPOND; /* until h1_set_state() below: not idle */
    wf_timer_init(&c->timer, h1_on_timer);
    wf_list_init(&c->resume.link);
    c->resume.handler = h1_on_resume;
    wf_list_init(&c->xp_kick.link);
    c->xp_kick.handler = h1_on_xprt_kick;
    c->free_task.handler = h1_on_free;
    wf_list_add_tail(&thr->all, &c->link);
    if (wf_io_add(loop, &c->io, EPOLLIN) != WF_OK
        || (c->site->tls != NULL
            && wf_tls_open(&c->xp, c->site->tls, fd) != WF_OK)) {
        c->state = WF_H1_HEAD; /* any state but CLOSING */
        h1_close(c);
        return;
    }
    /* The first request gets header_read_timeout from the accept on (TLS:
     * the handshake does, then the head from the handshake's end). */
    h1_set_state(c, c->site->tls != NULL ? WF_H1_TLS : WF_H1_HEAD);
}

void
wf_h1_server_init(wf_h1_server_t *srv, const wf_h1_site_t *site,
                  void (*release)(wf_h1_server_t *srv))
{
    srv->listener.on_accept = h1_on_accept;
    atomic_store(&srv->site, site);
    atomic_store(&srv->refs, 1);
    atomic_store(&srv->removed, false);
    srv->release = release;
}

void
wf_h1_server_remove(wf_h1_server_t *srv)
{
    atomic_store(&srv->removed, true);
}

void
wf_h1_sweep_removed(void)
{
    wf_h2_sweep_removed(); /* also on a thread that never had h1 */
    if (!h1_thr.ready) {
        return;
    }
    wf_list_for_each_safe(l, next, &h1_thr.all)
    {
        wf_h1_conn_t *c = wf_container_of(l, wf_h1_conn_t, link);

        if (atomic_load(&c->srv->removed)
            && (c->state == WF_H1_IDLE
                || (c->state == WF_H1_HEAD && c->req == NULL))) {
            h1_close(c);
        }
    }
}

/* A graceful stop closes the connections that wait between requests; the
 * others close after their response (keep-alive is refused from now on). */
static void
h1_on_stop(wf_loop_t *loop, bool graceful)
{
    wf_h2_on_stop(loop, graceful);
    if (!h1_thr.ready) {
        return;
    }
    wf_list_for_each_safe(l, next, &h1_thr.all)
    {
        wf_h1_conn_t *c = wf_container_of(l, wf_h1_conn_t, link);

        if (!graceful || c->state == WF_H1_IDLE) {
            h1_close(c);
        } else {
            c->keep_alive = false;
        }
    }
}

static void
h1_on_start(wf_loop_t *loop)
{
    wf_http_thread_start(loop);
}

static void
h1_on_exit(wf_loop_t *loop)
{
    wf_unused(loop);
    /* Endpoints set up their thread state at loop start, so it exists even
     * on a thread that never accepted a connection. */
    wf_http_thread_exit();
    wf_access_log_thread_exit();
    wf_h2_thread_exit();
    wf_chan_thread_exit();
    if (!h1_thr.ready) {
        return;
    }
    /* Connections whose helper job is still out are leaked on purpose: the
     * job may still write into them. */
    wf_fpool_fini(&h1_thr.conns);
    wf_fpool_fini(&h1_thr.reqs);
    wf_fpool_fini(&h1_thr.rbufs);
    h1_thr.ready = false;
}

void
wf_h1_init(void)
{
    wf_loop_on_start = h1_on_start;
    wf_loop_on_stop = h1_on_stop;
    wf_loop_on_exit = h1_on_exit;
}
