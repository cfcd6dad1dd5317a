/* The HTTP/1.x connection state machine.  One table says what each state
 * does on input and which timeout guards it; h1_set_state() is the only
 * place that changes state.  See docs/internals/h1_conn.md. */
#include "http/h1_conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/pool.h"
#include "http/access_log.h"
#include "http/forwarded.h"
#include "http/h1_conn_types.h"
#include "http/req.h"
#include "http/respond.h"
#include "http/static.h"
#include "http/uri.h"

#define H1_RBUF_SIZE      4096 /* pooled read buffers; heads grow beyond */
#define H1_LINGER_MS      2000 /* bound on draining input before close */
#define H1_PIPELINE_BURST 16   /* pipelined requests served per wake-up */
#define H1_SENDFILE_MAX   (1u << 30)
#define H1_BIG_FILE       (1u << 20) /* bodies from here get H1_BIG_SNDBUF */
#define H1_BIG_SNDBUF     (4 << 20)

struct wf_h1_conn {
    wf_io_t io;
    wf_timer_t timer;
    wf_task_t resume;    /* serves buffered (pipelined) input */
    wf_task_t free_task; /* frees c at the end of the tick */
    wf_list_t link;      /* in the thread's list of connections */
    wf_loop_t *loop;
    wf_h1_server_t *srv;       /* a reference */
    const wf_h1_site_t *site;  /* holds a reference to site->snap */
    const wf_forwarded_t *fwd; /* the listener's, in site's snapshot; NULL:
                                  none */
    wf_h1_state_t state;
    bool keep_alive;
    bool job_pending; /* a helper job holds c->req */
    bool big_sndbuf;  /* SO_SNDBUF raised for big files */
    unsigned burst;   /* requests served since the last poll */

    char *rbuf; /* owned; NULL while idle */
    uint32_t rcap;
    uint32_t rstart; /* first unconsumed byte */
    uint32_t rend;   /* end of the bytes read */
    uint32_t rkeep;  /* rbuf[0..rkeep) holds the parsed head of c->req,
                        which must not move while the request lives */

    wf_req_t *req; /* owned; NULL while idle */

    /* Request body being dropped. */
    bool body_chunked;
    uint64_t body_left; /* Content-Length bytes still to read */
    uint64_t body_seen; /* decoded bytes, for max_body_size */
    wf_h1_chunked_t chunked;

    /* Response being written. */
    size_t out_len; /* head bytes in req->hbuf */
    size_t out_sent;
    wf_str_t body; /* memory body */
    size_t body_sent;
    wf_file_t *file; /* borrowed from req->resp */
    off_t file_off;
    uint64_t file_left;

    wf_sockaddr_t remote; /* the client */
    wf_sockaddr_t local;  /* the address it connected to */
};

typedef void (*h1_input_cb)(wf_h1_conn_t *c);

static void h1_read_head(wf_h1_conn_t *c);
static void h1_read_body(wf_h1_conn_t *c);
static void h1_ignore_input(wf_h1_conn_t *c);
static void h1_send(wf_h1_conn_t *c);
static void h1_linger_read(wf_h1_conn_t *c);
static void h1_close(wf_h1_conn_t *c);
static void h1_access_log(wf_h1_conn_t *c);

/* Which field of wf_http_conf_t bounds each state (none for 0). */
typedef enum h1_timeout {
    H1_TIMEOUT_NONE = 0,
    H1_TIMEOUT_IDLE,
    H1_TIMEOUT_HEADER,
    H1_TIMEOUT_BODY,
    H1_TIMEOUT_SEND,
    H1_TIMEOUT_LINGER,
} h1_timeout_t;

static const struct {
    const char *name;
    h1_input_cb on_input; /* readable (or writable in SEND) */
    h1_timeout_t timeout;
    bool restart_on_progress; /* an interval, not a deadline */
} h1_states[WF_H1_NSTATES] = {
    [WF_H1_IDLE] = {"IDLE", h1_read_head, H1_TIMEOUT_IDLE, false},
    [WF_H1_HEAD] = {"HEAD", h1_read_head, H1_TIMEOUT_HEADER, false},
    [WF_H1_BODY] = {"BODY", h1_read_body, H1_TIMEOUT_BODY, true},
    [WF_H1_RESPOND] = {"RESPOND", h1_ignore_input, H1_TIMEOUT_NONE, false},
    [WF_H1_SEND] = {"SEND", h1_send, H1_TIMEOUT_SEND, true},
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
        wf_fpool_init(&h1_thr.reqs, sizeof(wf_req_t), 64);
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

static void
h1_poll(wf_h1_conn_t *c, uint32_t events)
{
    if (wf_io_mod(c->loop, &c->io, events) != WF_OK) {
        h1_close(c);
    }
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
    n = recv(c->io.fd, c->rbuf + c->rend, c->rcap - c->rend, 0);
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
    wf_req_t *r = wf_fpool_get(&h1_thread()->reqs);

    if (r == NULL) {
        return NULL;
    }
    wf_h1_head_init(&r->head);
    memset(&r->rq, 0, sizeof(r->rq));
    memset(&r->resp, 0, sizeof(r->resp));
    r->conn = c;
    r->hc = c->site->hc;
    r->root = c->site->root;
    r->loop = c->loop;
    r->passes = 0;
    r->action = NULL;
    r->last = NULL;
    r->open_mode = 0;
    r->uri_cap = sizeof(r->uri_inline);
    r->target = NULL;
    r->rq.start_ns = c->loop->now * 1000000u;
    r->share_index = 0;
    r->trying_index = false;
    r->job_done = NULL;
    r->job_fd = -1;
    r->job_errno = 0;
    r->uri = r->uri_inline;
    r->loc = NULL;
    r->hbuf = r->hbuf_inline;
    r->path_len = 0;
    return r;
}

static void
h1_req_destroy(wf_h1_conn_t *c)
{
    wf_req_t *r = c->req;

    if (r == NULL) {
        return;
    }
    wf_file_unref(r->resp.file);
    if (r->uri != r->uri_inline) {
        free(r->uri);
    }
    if (r->hbuf != r->hbuf_inline) {
        free(r->hbuf);
    }
    free(r->loc);
    free(r->target);
    wf_fpool_put(&h1_thread()->reqs, r);
    c->req = NULL;
    c->rkeep = 0;
    c->file = NULL;
}

static void
h1_on_free(wf_task_t *task)
{
    wf_h1_conn_t *c = wf_container_of(task, wf_h1_conn_t, free_task);

    h1_req_destroy(c);
    h1_rbuf_free(c);
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
    if (c->state == WF_H1_SEND) {
        h1_access_log(c); /* the client went away mid-response */
    }
    wf_timer_stop(c->loop, &c->timer);
    wf_io_del(c->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    if (c->state == WF_H1_IDLE) {
        h1_stat_add(&h1_stats_cell(c)->idle, -1);
    }
    h1_stat_add(&h1_stats_cell(c)->closed, 1);
    c->state = WF_H1_CLOSING;
    wf_list_del(&c->resume.link);
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
    if (shutdown(c->io.fd, SHUT_WR) == -1) {
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
        ssize_t n = recv(c->io.fd, buf, sizeof(buf), 0);

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

    if ((c->state == WF_H1_HEAD || c->state == WF_H1_BODY) && c->req != NULL) {
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

/* Bytes a host name may hold (RFC 3986 reg-name, IP literals, a port);
 * '/' and '\\' never, so that "$host" in a share cannot add path segments. */
static const uint8_t h1_host_chars[256] = {
    ['-'] = 1, ['.'] = 1,  ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1,
    ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1,
    [','] = 1, [';'] = 1,  ['='] = 1, ['%'] = 1, [':'] = 1, ['['] = 1,
    [']'] = 1, ['0'] = 1,  ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1, ['9'] = 1, ['a'] = 1,
    ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1,  ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1,  ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,
    ['t'] = 1, ['u'] = 1,  ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1,
    ['z'] = 1, ['A'] = 1,  ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1,  ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,
    ['R'] = 1, ['S'] = 1,  ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1,  ['Z'] = 1,
};

/* Validates the Host value in place and returns the name without its port
 * and trailing dot, lower-cased (as Unit's $host).  Returns WF_ERROR for a
 * host that holds forbidden bytes, starts with a dot or has "..". */
static int
h1_host_name(char *p, size_t n, wf_str_t *name)
{
    size_t len = n;

    if (n == 0) {
        *name = wf_null_str; /* HTTP/1.0 may omit Host */
        return WF_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (h1_host_chars[(uint8_t)p[i]] == 0
            || (p[i] == '.' && (i == 0 || p[i - 1] == '.'))) {
            return WF_ERROR;
        }
        p[i] = wf_lower(p[i]);
    }
    if (n > 0 && p[0] == '[') {
        const char *end = memchr(p, ']', n);

        len = end != NULL ? (size_t)(end - p) + 1 : n;
    } else {
        const char *colon = memchr(p, ':', n);

        len = colon != NULL ? (size_t)(colon - p) : n;
    }
    if (len > 0 && p[len - 1] == '.') {
        len--;
    }
    *name = wf_str_make(p, len);
    return WF_OK;
}

/* Applies the listener's "forwarded": the client address and scheme that
 * a trusted proxy reports replace the connection's. */
static void
h1_req_forwarded(wf_req_t *r, const wf_forwarded_t *fwd)
{
    wf_forwarded_result_t res;

    wf_forwarded_apply(fwd, &r->head, &r->conn->remote, &res);
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
    if (h1_host_name((char *)h->host.data, h->host.len, &r->rq.host) != WF_OK) {
        return 400;
    }
    r->rq.uri = wf_str_make(r->uri, len);
    r->rq.head = h;
    r->rq.remote = &r->conn->remote;
    r->rq.local = &r->conn->local;
    r->resp.head_only = h->method_id == WF_HTTP_HEAD;
    if (r->conn->fwd != NULL) {
        h1_req_forwarded(r, r->conn->fwd);
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
    ssize_t n = send(c->io.fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL);

    return n == (ssize_t)(sizeof(cont) - 1) ? WF_OK : WF_ERROR;
}

static void
h1_dispatch(wf_h1_conn_t *c)
{
    h1_set_state(c, WF_H1_RESPOND);
    wf_http_handle(c->req); /* the handler now owns c->req */
}

/* Starts on the body of a parsed head, or dispatches a request without. */
static void
h1_start_body(wf_h1_conn_t *c)
{
    wf_h1_head_t *h = &c->req->head;

    c->body_chunked = h->chunked;
    c->body_left = h->content_length > 0 ? (uint64_t)h->content_length : 0;
    c->body_seen = 0;
    if (!c->body_chunked && c->body_left == 0) {
        h1_dispatch(c);
        return;
    }
    if (c->body_left > c->site->hc->max_body_size) {
        c->keep_alive = false;
        wf_req_respond_error(c->req, 413);
        return;
    }
    wf_h1_chunked_init(&c->chunked);
    if (h->expect_continue && c->rstart == c->rend
        && h1_send_continue(c) != WF_OK) {
        h1_close(c);
        return;
    }
    h1_set_state(c, WF_H1_BODY);
    h1_read_body(c);
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
    h1_begin(c);
}

/* Drops buffered body bytes.  Returns WF_OK when the body is complete,
 * WF_AGAIN when more is needed, or WF_ERROR with a response sent. */
static int
h1_body_consume(wf_h1_conn_t *c)
{
    char *p = c->rbuf + c->rstart;
    size_t avail = c->rend - c->rstart;
    size_t used;
    size_t out;
    int rc;

    if (!c->body_chunked) {
        used = (size_t)wf_min((uint64_t)avail, c->body_left);
        c->rstart += (uint32_t)used;
        c->body_left -= used;
        return c->body_left == 0 ? WF_OK : WF_AGAIN;
    }
    rc = wf_h1_chunked_decode(&c->chunked, p, avail, &used, p, &out);
    c->rstart += (uint32_t)used;
    c->body_seen += out;
    if (rc == WF_ERROR) {
        c->keep_alive = false;
        wf_req_respond_error(c->req, 400);
        return WF_ERROR;
    }
    if (c->body_seen > c->site->hc->max_body_size) {
        c->keep_alive = false;
        wf_req_respond_error(c->req, 413);
        return WF_ERROR;
    }
    return rc;
}

static void
h1_read_body(wf_h1_conn_t *c)
{
    for (unsigned i = 0; i < 64; i++) {
        ssize_t n;
        int rc = h1_body_consume(c);

        if (rc == WF_OK) {
            h1_dispatch(c);
            return;
        }
        if (rc == WF_ERROR) {
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
    r->rq.body_bytes_sent = c->body_sent;
    if (c->file != NULL) {
        r->rq.body_bytes_sent += r->resp.content_length - c->file_left;
    }
    if (r->rq.head == NULL) {
        /* A head that did not parse: its fields are not valid, so only the
         * addresses are logged ("-" for the rest, as Unit). */
        r->rq.remote = &c->remote;
        r->rq.local = &c->local;
    }
    wf_access_log_write(al, &r->rq, c->loop);
}

/* The response is out: start on the next request, or close. */
static void
h1_request_done(wf_h1_conn_t *c)
{
    bool more;

    h1_access_log(c);
    h1_req_destroy(c);
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
    struct iovec iov[2];
    struct msghdr msg = {.msg_iov = iov};
    int flags = MSG_NOSIGNAL;
    ssize_t n;

    while (c->out_sent < c->out_len || c->body_sent < c->body.len) {
        size_t head_left = c->out_len - c->out_sent;

        msg.msg_iovlen = 0;
        if (head_left > 0) {
            iov[msg.msg_iovlen++] =
                (struct iovec){c->req->hbuf + c->out_sent, head_left};
        }
        if (c->body_sent < c->body.len) {
            iov[msg.msg_iovlen++] =
                (struct iovec){(char *)c->body.data + c->body_sent,
                               c->body.len - c->body_sent};
        }
        if (c->file_left > 0) {
            flags |= MSG_MORE; /* one segment with the file's first bytes */
        }
        n = sendmsg(c->io.fd, &msg, flags);
        if (n < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        if ((size_t)n >= head_left) {
            c->out_sent = c->out_len;
            c->body_sent += (size_t)n - head_left;
        } else {
            c->out_sent += (size_t)n;
        }
        h1_progress(c);
    }
    return WF_OK;
}

static int
h1_send_file(wf_h1_conn_t *c)
{
    while (c->file_left > 0) {
        size_t chunk = (size_t)wf_min(c->file_left, (uint64_t)H1_SENDFILE_MAX);
        ssize_t n =
            sendfile(c->io.fd, wf_file_fd(c->file), &c->file_off, chunk);

        if (n < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        if (n == 0) {
            /* The file shrank under us: the promised length cannot be
             * kept, so the connection must end. */
            wf_log_warn(0, "file shrank while being sent");
            return WF_ERROR;
        }
        c->file_left -= (uint64_t)n;
        h1_progress(c);
        if ((size_t)n < chunk) {
            /* The socket buffer is full: asking again would only earn an
             * EAGAIN, so wait for the poll (it fires at once if wrong). */
            return c->file_left > 0 ? WF_AGAIN : WF_OK;
        }
    }
    return WF_OK;
}

static void
h1_send(wf_h1_conn_t *c)
{
    int rc = h1_send_head(c);

    if (rc == WF_OK) {
        rc = h1_send_file(c);
    }
    if (rc == WF_AGAIN) {
        if (c->io.events != EPOLLOUT) {
            h1_poll(c, EPOLLOUT);
        }
        return;
    }
    if (rc == WF_ERROR) {
        h1_close(c);
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

void
wf_req_respond(wf_req_t *r)
{
    wf_h1_conn_t *c = r->conn;
    wf_resp_t *resp = &r->resp;
    size_t need = wf_resp_head_size(resp);

    if (resp->close) {
        c->keep_alive = false;
    }
    if (wf_unlikely(r->last != NULL && r->last->nresp_fields > 0)
        && resp->status >= 200 && resp->status < 400) {
        resp->fields = r->last;
        resp->fields_rq = &r->rq;
        need = wf_resp_head_size(resp);
    }
    if (need > sizeof(r->hbuf_inline)) {
        r->hbuf = malloc(need);
        if (r->hbuf == NULL) {
            r->hbuf = r->hbuf_inline;
            h1_close(c);
            return;
        }
    }
    c->out_len = wf_resp_head_write(r->hbuf, need, resp, c->loop, c->keep_alive,
                                    r->head.version == 10 ? 10 : 11,
                                    c->site->hc->server_version);
    c->out_sent = 0;
    c->body = resp->head_only ? wf_null_str : resp->body;
    c->body_sent = 0;
    c->file = resp->head_only ? NULL : resp->file;
    c->file_off = (off_t)resp->file_off;
    c->file_left = c->file != NULL ? resp->content_length : 0;
    if (c->file_left >= H1_BIG_FILE && !c->big_sndbuf) {
        h1_big_sndbuf(c);
    }
    h1_set_state(c, WF_H1_SEND);
    h1_send(c);
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
    wf_req_respond(r);
}

static void
h1_on_job_done(wf_task_t *task)
{
    wf_req_t *r = wf_container_of(task, wf_req_t, job.done);
    wf_h1_conn_t *c = r->conn;

    c->job_pending = false;
    if (c->state == WF_H1_CLOSING) {
        if (r->job_fd >= 0) {
            close(r->job_fd);
        }
        wf_task_defer(c->loop, &c->free_task);
        return;
    }
    r->job_done(r);
}

void
wf_req_run_job(wf_req_t *r, wf_job_cb work, wf_req_job_cb done)
{
    wf_h1_conn_t *c = r->conn;

    /* Input stays buffered in the kernel until the response is out. */
    h1_poll(c, 0);
    if (c->state == WF_H1_CLOSING) {
        return;
    }
    c->job_pending = true;
    r->job_done = done;
    r->job.loop = c->loop;
    r->job.work = work;
    r->job.done.handler = h1_on_job_done;
    wf_tpool_submit(&r->job);
}

static void
h1_on_io(wf_io_t *io, uint32_t events)
{
    wf_h1_conn_t *c = wf_container_of(io, wf_h1_conn_t, io);

    wf_unused(events);
    c->burst = 0;
    h1_states[c->state].on_input(c);
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
    c->io.fd = fd;
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
    c->free_task.handler = h1_on_free;
    wf_list_add_tail(&thr->all, &c->link);
    if (wf_io_add(loop, &c->io, EPOLLIN) != WF_OK) {
        c->state = WF_H1_HEAD; /* any state but CLOSING */
        h1_close(c);
        return;
    }
    /* The first request gets header_read_timeout from the accept on. */
    h1_set_state(c, WF_H1_HEAD);
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
    wf_list_t *next;

    if (!h1_thr.ready) {
        return;
    }
    for (wf_list_t *l = h1_thr.all.next; l != &h1_thr.all; l = next) {
        wf_h1_conn_t *c = wf_container_of(l, wf_h1_conn_t, link);

        next = l->next;
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
    wf_list_t *l;
    wf_list_t *next;

    wf_unused(loop);
    if (!h1_thr.ready) {
        return;
    }
    for (l = h1_thr.all.next; l != &h1_thr.all; l = next) {
        wf_h1_conn_t *c = wf_container_of(l, wf_h1_conn_t, link);

        next = l->next;
        if (!graceful || c->state == WF_H1_IDLE) {
            h1_close(c);
        } else {
            c->keep_alive = false;
        }
    }
}

static void
h1_on_exit(wf_loop_t *loop)
{
    wf_unused(loop);
    if (!h1_thr.ready) {
        return;
    }
    /* Connections whose helper job is still out are leaked on purpose: the
     * job may still write into them. */
    wf_static_thread_exit();
    wf_access_log_thread_exit();
    wf_fpool_fini(&h1_thr.conns);
    wf_fpool_fini(&h1_thr.reqs);
    wf_fpool_fini(&h1_thr.rbufs);
    h1_thr.ready = false;
}

void
wf_h1_init(void)
{
    wf_loop_on_stop = h1_on_stop;
    wf_loop_on_exit = h1_on_exit;
}
