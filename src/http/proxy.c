/* The proxy endpoint (see http/proxy.h and docs/internals/proxy.md).
 *
 * One px_t per request, owned by r (r->proxy) and freed with it.  The
 * backend socket is polled on r's loop; what it reads goes into
 * r->resp_body only while the channel has room, and the request body is
 * taken from r->req_body only while the socket takes it, so neither side
 * can make the proxy buffer more than its channel and one staging buffer.
 *
 * States (their invariants: docs/internals/proxy.md):
 *   CONNECT  connect() in progress (EPOLLOUT), connect timeout
 *   TLS      the handshake of an https backend, connect timeout
 *   SEND     sending the head and the body; the response head may arrive
 *            meanwhile (EPOLLIN too)
 *   HEAD     reading the response head
 *   BODY     relaying the response body
 *   TUNNEL   after a 101 to a WebSocket handshake: bytes both ways
 *   DONE     backend connection closed or pooled; r no longer touched */
#include "http/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/pool.h"
#include "http/exchange.h"
#include "http/proxy_h2.h"
#include "http/proxy_parse.h"
#include "http/proxy_pool.h"
#include "http/rhttp_pub.h"
#include "http/route_pattern.h"
#include "http/tpl.h"
#include "http/upstream.h"
#include "http/upstream_peer.h"
#include "http/var.h"
#include "net/tls_client.h"
#include "net/xprt.h"

#define PX_STAGE    (16 * 1024)     /* request bytes staged for the backend */
#define PX_OUT_SIZE (PX_STAGE + 32) /* with a chunk's framing */
#define PX_FWD_MAX  4096            /* Wharf's forwarding fields, at most */
/* Response bytes read at once: the head (WF_PROXY_HEAD_MAX at most) and
 * what follows it must fit in a fresh response channel. */
#define PX_IN_SIZE WF_XCHG_CHAN_LIMIT
/* Read at once for the head: a whole head, and a small body with it (one
 * write to the client, px_respond_whole()); the rest of a bigger body is
 * read into the channel, or spliced, without passing through px->in. */
#define PX_HEAD_READ    WF_PROXY_HEAD_MAX
#define PX_HOST_MAX     1024 /* a rendered "host", at most */
#define PX_UPGRADE      "Upgrade: websocket\r\n"
#define PX_TUNNEL_BURST 16 /* backend reads per wake-up in a tunnel */
#define PX_EOF          1  /* px_tunnel_down(): the backend closed */
/* Channel buffers filled by one read of the body. */
#define PX_IOV (PX_IN_SIZE / WF_CHAN_SEG_SIZE + 1)

typedef enum px_state {
    PX_CONNECT = 0,
    PX_TLS, /* the TLS handshake with the backend */
    PX_SEND,
    PX_HEAD,
    PX_BODY,
    PX_TUNNEL,
    PX_DONE,
} px_state_t;

typedef enum px_body {
    PX_BODY_NONE = 0,
    PX_BODY_LENGTH, /* Content-Length: exactly remaining more bytes */
    PX_BODY_CHUNKED,
    PX_BODY_CLOSE, /* until the backend closes */
} px_body_t;

typedef struct px {
    wf_req_t *r; /* NULL once r may not be touched */
    wf_loop_t *loop;
    wf_io_t io;
    wf_xprt_t xp;   /* plain, or TLS to an https backend */
    wf_task_t kick; /* reads what the TLS layer holds (px_poll()) */
    wf_timer_t timer;
    wf_upstream_t *u;
    wf_upstream_server_t *srv; /* its active count held while srv_held */
    wf_upstream_wait_t *wait;  /* queued for a server (max_conns) */
    bool srv_held;
    bool srv_failed; /* counts towards the server's passive health */
    px_state_t state;
    bool req_chunked; /* the body goes to the backend chunked */
    bool req_body;    /* a body is read from r->req_body */
    bool body_asked;  /* wf_xchg_body_read() was called */
    bool req_eof;     /* the whole request was staged */
    bool body_taken;  /* request body bytes were taken from r->req_body */
    bool reused;      /* the connection came from the keep-alive pool */
    bool extra;       /* the backend sent bytes past the response */
    bool in_held;     /* px->in holds the body r->resp.body points to */
    bool busy;        /* a callback of ours is running (px_enter()) */
    bool in_event;    /* px_on_io() runs: the socket polled readable */
    bool upgrade;     /* the request is a WebSocket handshake, forwarded */
    bool up_shut;     /* TUNNEL: the client's EOF was passed on (SHUT_WR) */
    bool released;    /* r let px go while busy: px_leave() frees it */
    bool pipe_full;   /* BODY: the channel's pipe took no more; until the
                         mux takes its bytes (px_on_resp_room()) */
    char *out;        /* staged request bytes: out[out_off..out_len) */
    bool out_big;     /* out was malloc()ed for a head over PX_OUT_SIZE */
    size_t out_off;
    size_t out_len;
    char *in;      /* response head, then body bytes read */
    size_t in_off; /* BODY: body bytes read with the head are */
    size_t in_len; /* in[in_off..in_len) */
    px_body_t body;
    uint64_t remaining;
    wf_h1_chunked_t dec;
    wf_proxy_resp_t resp;
    char *fields; /* raw_fields for the client */
} px_t;

static void px_on_io(wf_io_t *io, uint32_t events);

/* The thread's free lists: px_t, and the PX_IN_SIZE read buffers (DESIGN
 * 3: hot fixed-size objects come from per-thread pools). */
static __thread wf_fpool_t px_pool;
static __thread wf_fpool_t px_in_pool;
static __thread wf_fpool_t px_out_pool;
static __thread bool px_pool_ready;

static void
px_pools_init(void)
{
    if (!px_pool_ready) {
        wf_fpool_init(&px_pool, sizeof(px_t), 256);
        wf_fpool_init(&px_in_pool, PX_IN_SIZE, 16);
        wf_fpool_init(&px_out_pool, PX_OUT_SIZE, 16);
        px_pool_ready = true;
    }
}

static char *
px_in_get(void)
{
    px_pools_init();
    return wf_fpool_get(&px_in_pool);
}

static void
px_in_put(char *in)
{
    if (in != NULL) {
        wf_fpool_put(&px_in_pool, in);
    }
}

/* The staging buffer for a request head of n bytes (and the body after
 * it): from the thread's free list unless the head is bigger. */
static char *
px_out_get(px_t *px, size_t n)
{
    px->out_big = n > PX_OUT_SIZE;
    return px->out_big ? malloc(n) : wf_fpool_get(&px_out_pool);
}

static void
px_out_put(px_t *px)
{
    if (px->out != NULL && px->out_big) {
        free(px->out);
    } else if (px->out != NULL) {
        wf_fpool_put(&px_out_pool, px->out);
    }
    px->out = NULL;
}

static void px_pump(px_t *px);
static void px_tunnel_end(px_t *px);

/* The timeout that runs in the current state, in ms; 0 while the proxy
 * waits on the client (a body byte to send, room in the response
 * channel), which is the mux's to time. */
static uint32_t
px_timeout(const px_t *px)
{
    switch (px->state) {
    case PX_CONNECT:
    case PX_TLS:
        return px->u->connect_ms;
    case PX_SEND:
        return px->out_off < px->out_len ? px->u->send_ms : 0;
    case PX_HEAD:
        return px->u->head_ms;
    case PX_BODY:
        return wf_chan_room(&px->r->resp_body) > 0 ? px->u->read_ms : 0;
    case PX_TUNNEL:
        return px->u->tunnel_ms > 0 ? px->u->tunnel_ms : WF_UPSTREAM_TUNNEL_MS;
    case PX_DONE:
        break;
    }
    return 0;
}

/* Decrypted bytes wait in the TLS layer while EPOLLIN is wanted: no poll
 * announces them, so a task reads them (px_on_kick()). */
static void
px_kick_pending(px_t *px, uint32_t ev)
{
    if (wf_unlikely(wf_xprt_pending(&px->xp)) && (ev & EPOLLIN) != 0
        && wf_list_is_empty(&px->kick.link)) {
        wf_task_schedule(px->loop, &px->kick);
    }
}

/* Polls what the state needs and arms its timeout (progress re-arms it
 * where it happens).  A full response channel drops EPOLLIN lazily: the
 * mux's write is due in this tick and makes room before the next poll,
 * so the poll set stays as it is (two epoll_ctl fewer per channel-full)
 * unless the socket polls readable while the channel is still full. */
static void
px_poll(px_t *px)
{
    uint32_t ev = 0;
    uint32_t ms = px_timeout(px);

    if (px->state == PX_TUNNEL) {
        return; /* px_tunnel_pump() polls */
    }
    if (px->state == PX_TLS) {
        return; /* px_tls_step() polls */
    }
    if (px->state == PX_CONNECT
        || (px->state == PX_SEND && px->out_off < px->out_len)) {
        ev |= EPOLLOUT;
    }
    if (px->state == PX_SEND || px->state == PX_HEAD
        || (px->state == PX_BODY && !px->pipe_full
            && wf_chan_room(&px->r->resp_body) > 0)
        || (px->state == PX_BODY && !px->in_event
            && px->io.events == (EPOLLIN | EPOLLRDHUP))) {
        ev |= EPOLLIN | EPOLLRDHUP;
    }
    if (ev != px->io.events) {
        wf_io_mod(px->loop, &px->io, ev);
    }
    if (ms == 0) {
        wf_timer_stop(px->loop, &px->timer);
    } else if (!wf_timer_is_armed(&px->timer)) {
        wf_timer_set(px->loop, &px->timer, ms);
    }
    px_kick_pending(px, ev);
}

/* Closes the backend side: socket, timer, staging buffers; the server's
 * slot goes back (with the outcome) or the queued wait is withdrawn. */
static void
px_close(px_t *px)
{
    if (px->srv_held) {
        px->srv_held = false;
        wf_upstream_done(px->u, px->srv, px->srv_failed);
    }
    if (px->wait != NULL) {
        wf_upstream_wait_cancel(px->wait);
        px->wait = NULL;
    }
    if (px->io.fd >= 0) {
        wf_io_del(px->loop, &px->io);
        wf_xprt_close(&px->xp);
        close(px->io.fd);
        px->io.fd = -1;
    }
    wf_list_del(&px->kick.link);
    wf_timer_stop(px->loop, &px->timer);
    px_out_put(px);
    if (!px->in_held) {
        px_in_put(px->in);
        px->in = NULL;
    }
    px->state = PX_DONE;
}

/* May the backend connection serve another request?  Both sides must have
 * agreed to keep it (HTTP/1.1, no "close"), the request must be sent
 * whole and the response read to its exact end. */
static bool
px_reusable(const px_t *px)
{
    return px->u->idle_max > 0 && px->io.fd >= 0 && !wf_xprt_pending(&px->xp)
           && px->resp.keep_alive && px->resp.version == 11 && px->req_eof
           && px->out_off == px->out_len && !px->extra
           && px->body != PX_BODY_CLOSE;
}

/* Which idle connections to the server may carry px's request: plain
 * ones, or those of its TLS context (same verification, same name). */
static uint64_t
px_pool_tag(const px_t *px)
{
    return px->u->tls != NULL ? wf_tls_cli_id(px->u->tls) : 0;
}

/* The exchange with the backend is over: its connection goes to the
 * thread's keep-alive pool when it can serve again, else it is closed. */
static void
px_close_or_keep(px_t *px)
{
    if (px_reusable(px)) {
        wf_proxy_pool_put(px->loop, &px->io, &px->xp,
                          (const struct sockaddr *)&px->srv->addr,
                          px->srv->addrlen, px_pool_tag(px), px->u->idle_max,
                          px->u->idle_ms, &px->srv->peer->idle);
        px->io.fd = -1;
        px->io.events = 0;
    }
    px_close(px);
}

/* The request failed: an error status while nothing was sent to the
 * client, else the client connection ends (the channel aborts). */
static void
px_fail(px_t *px, unsigned status, const char *why)
{
    wf_req_t *r = px->r;

    if (px->srv != NULL) {
        wf_log_error(0, "proxy to \"%s\": %s", px->srv->name, why);
        px->srv_failed = status == 502 || status == 504;
    }
    px_close(px);
    if (r == NULL) {
        return;
    }
    px->r = NULL;
    r->on_abort = NULL;
    if (px->resp.head_len > 0 && px->body != PX_BODY_NONE) {
        wf_chan_abort(&r->resp_body);
        return;
    }
    if (px->body_asked) {
        wf_chan_abort(&r->req_body); /* the mux drains the rest */
    }
    wf_req_respond_error(r, status);
}

/* Every entry point (event callbacks, wf_proxy_run()) brackets its work
 * with px_enter() and px_leave(): answering the client may destroy r at
 * once, and with it px (wf_proxy_req_release()); px then lives on until
 * px_leave(), its last access. */
static void
px_enter(px_t *px)
{
    px->busy = true;
}

static void px_free(px_t *px);

static void
px_leave(px_t *px)
{
    px->busy = false;
    if (px->released) {
        px_free(px);
    }
}

static void
px_on_timer(wf_timer_t *t)
{
    px_t *px = wf_container_of(t, px_t, timer);

    px_enter(px);
    if (px->state == PX_TUNNEL) {
        wf_log_info("proxy to \"%s\": tunnel idle, closed", px->srv->name);
        px_tunnel_end(px);
    } else {
        px_fail(px, 504, "timed out");
    }
    px_leave(px);
}

static void
px_on_abort(wf_req_t *r)
{
    px_t *px = r->proxy;

    px->r = NULL;
    px_close(px);
}

/* ---- the request head -------------------------------------------------- */

static char *
px_put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Does the client's head carry a field named name? */
static bool
px_has_field(const wf_h1_head_t *h, wf_str_t name)
{
    for (unsigned i = 0; i < h->nheaders; i++) {
        if (wf_str_eq_nocase(h->headers[i].name, name)) {
            return true;
        }
    }
    return false;
}

/* The client's address as text ("192.0.2.1", "2001:db8::1"); false for a
 * unix socket client. */
static bool
px_client_ip(const wf_req_t *r, char *buf, size_t cap)
{
    const wf_sockaddr_t *sa = r->rq.remote;

    if (sa == NULL) {
        return false;
    }
    if (sa->sa.sa_family == AF_INET) {
        return inet_ntop(AF_INET, &sa->sin.sin_addr, buf, (socklen_t)cap)
               != NULL;
    }
    if (sa->sa.sa_family == AF_INET6) {
        return inet_ntop(AF_INET6, &sa->sin6.sin6_addr, buf, (socklen_t)cap)
               != NULL;
    }
    return false;
}

/* Is host a token (RFC 7230 tchar), or does Forwarded need it quoted? */
static bool
px_is_token(wf_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c))) {
            return false;
        }
    }
    return s.len > 0;
}

/* The forwarding fields Wharf adds (u->x_forwarded, u->forwarded), into
 * buf (PX_FWD_MAX bytes).  From a trusted source (u->trusted) the client's
 * own fields stay and ours follow them (X-Forwarded-Proto and -Host only
 * when it sent none); from any other, the client's are dropped. */
static size_t
px_forwarding(const px_t *px, char *buf, bool trusted)
{
    const wf_req_t *r = px->r;
    const wf_h1_head_t *h = &r->head;
    const char *proto = r->rq.tls ? "https" : "http";
    char ip[INET6_ADDRSTRLEN];
    bool has_ip = px_client_ip(r, ip, sizeof(ip));
    bool v6 = has_ip && strchr(ip, ':') != NULL;
    /* (a host Forwarded could not quote is left out of both) */
    bool host_ok = h->host.len <= 255
                   && memchr(h->host.data, '"', h->host.len) == NULL
                   && memchr(h->host.data, '\\', h->host.len) == NULL;
    wf_str_t host = host_ok ? h->host : wf_str_make("", 0);
    char *p = buf;

    if (px->u->x_forwarded) {
        if (has_ip) {
            p += sprintf(p, "X-Forwarded-For: %s\r\n", ip);
        }
        if (!trusted || !px_has_field(h, wf_string("x-forwarded-proto"))) {
            p += sprintf(p, "X-Forwarded-Proto: %s\r\n", proto);
        }
        if (host.len > 0
            && (!trusted || !px_has_field(h, wf_string("x-forwarded-host")))) {
            p += sprintf(p, "X-Forwarded-Host: %.*s\r\n", (int)host.len,
                         host.data);
        }
    }
    if (px->u->forwarded) {
        p += has_ip ? sprintf(
                 p, v6 ? "Forwarded: for=\"[%s]\"" : "Forwarded: for=%s", ip)
                    : sprintf(p, "Forwarded: for=unknown");
        p += sprintf(p, ";proto=%s", proto);
        if (host.len > 0) {
            p += sprintf(p, px_is_token(host) ? ";host=%.*s" : ";host=\"%.*s\"",
                         (int)host.len, host.data);
        }
        p = px_put(p, "\r\n", 2);
    }
    return (size_t)(p - buf);
}

/* Re-serialises the request head into px->out (http/proxy_parse.h), with
 * Wharf's Host and forwarding fields when configured. */
static int
px_head_build(px_t *px)
{
    const wf_upstream_t *u = px->u;
    wf_req_t *r = px->r;
    char fwd[PX_FWD_MAX], host[PX_HOST_MAX];
    bool forwarding = u->x_forwarded || u->forwarded;
    bool trusted = forwarding && u->trusted != NULL && r->rq.remote != NULL
                   && wf_addr_set_match(u->trusted, r->rq.remote);
    wf_proxy_req_opts_t o = {
        .drop_forwarding = forwarding && !trusted,
        .keep_alive = u->idle_max > 0,
        .upgrade = r->websocket,
    };
    size_t n;

    if (u->host != NULL) {
        n = wf_tpl_render(u->host, &r->rq, host, sizeof(host));
        o.host = wf_str_make(host, wf_min(n, sizeof(host) - 1));
    }
    if (forwarding) {
        o.extra = wf_str_make(fwd, px_forwarding(px, fwd, trusted));
    }
    if (u->client_cert) { /* "forward_client_cert" (net/tls.h) */
        o.drop_client = true;
        o.extra.data = fwd;
        o.extra.len += wf_var_tls_client_fields(&r->rq, fwd + o.extra.len,
                                                sizeof(fwd) - o.extra.len);
    }
    n = wf_proxy_req_head_size(&r->head, &o);
    px_pools_init();
    px->out = px_out_get(px, n);
    if (px->out == NULL) {
        return WF_ERROR;
    }
    px->out_len = wf_proxy_req_head_write(px->out, &r->head, &o);
    px->req_chunked = r->head.chunked;
    px->upgrade = r->websocket;
    return WF_OK;
}

/* Stages the next request body bytes (chunk-framed when chunked) from
 * r->req_body into the empty px->out. */
static void
px_stage_body(px_t *px)
{
    wf_chan_t *ch = &px->r->req_body;
    const char *d;
    size_t n = wf_min(wf_chan_peek(ch, &d), (size_t)PX_STAGE);
    char *p = px->out;

    px->out_off = 0;
    px->out_len = 0;
    if (n > 0) {
        if (px->req_chunked) {
            p += sprintf(p, "%zx\r\n", n);
        }
        p = px_put(p, d, n);
        if (px->req_chunked) {
            p = px_put(p, "\r\n", 2);
        }
        wf_chan_consume(ch, n);
        px->body_taken = true;
    } else if (wf_chan_is_done(ch)) {
        if (px->req_chunked) {
            p = px_put(p, "0\r\n\r\n", 5);
        }
        px->req_eof = true;
    }
    px->out_len = (size_t)(p - px->out);
}

/* Writes what is staged; stages more.  Returns WF_OK, or WF_ERROR when the
 * backend refused the bytes. */
static int
px_send(px_t *px)
{
    for (;;) {
        ssize_t n;

        if (px->out_off == px->out_len) {
            if (px->req_eof || !px->req_body) {
                px->req_eof = true;
                return WF_OK;
            }
            px_stage_body(px);
            if (px->out_len == 0 && !px->req_eof) {
                return WF_OK; /* on_readable of req_body follows */
            }
            continue;
        }
        n = wf_xprt_send(&px->xp, px->io.fd, px->out + px->out_off,
                         px->out_len - px->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_OK : WF_ERROR;
        }
        px->out_off += (size_t)n;
        wf_timer_set(px->loop, &px->timer, px->u->send_ms);
    }
}

static void
px_on_req_body(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, req_body);
    px_t *px = r->proxy;

    if (wf_chan_is_aborted(ch)) {
        /* The mux answers (400, 408, 413) or the client is gone. */
        px->r = NULL;
        r->on_abort = NULL;
        px_close(px);
        return;
    }
    if (px->state == PX_SEND) {
        px_enter(px);
        px_pump(px);
        px_leave(px);
    }
}

/* ---- the response ------------------------------------------------------ */

/* Does the action's "response_headers" set or delete the field named
 * name on this response?  (They apply to 2xx and 3xx, as in Unit, and
 * replace the backend's field of that name.) */
static bool
px_overridden(const px_t *px, wf_str_t name)
{
    const wf_action_t *a = px->r->last;

    if (a == NULL || px->resp.status < 200 || px->resp.status >= 400) {
        return false;
    }
    for (size_t i = 0; i < a->nresp_fields; i++) {
        if (wf_str_eq_nocase(a->resp_fields[i].name, name)) {
            return true;
        }
    }
    return false;
}

/* Renders the backend's end-to-end fields for the client, without those
 * Wharf writes itself (Server, Date, framing) and those "response_headers"
 * replace. */
static int
px_fields_build(px_t *px)
{
    const wf_proxy_resp_t *h = &px->resp;
    wf_str_t conn[WF_H1_MAX_HEADERS];
    size_t nconn = 0, size = 1;
    char *p;

    for (unsigned i = 0; i < h->nheaders; i++) {
        size += h->headers[i].name.len + h->headers[i].value.len + 4;
        if (wf_str_eq_nocase(h->headers[i].name, wf_string("connection"))) {
            conn[nconn++] = h->headers[i].value;
        }
    }
    px->fields = malloc(size + sizeof(PX_UPGRADE));
    if (px->fields == NULL) {
        return WF_ERROR;
    }
    p = px->fields;
    for (unsigned i = 0; i < h->nheaders; i++) {
        const wf_h1_header_t *f = &h->headers[i];

        if (wf_proxy_hop_by_hop(f->name, conn, nconn)
            || wf_str_eq_nocase(f->name, wf_string("content-length"))
            || wf_str_eq_nocase(f->name, wf_string("server"))
            || wf_str_eq_nocase(f->name, wf_string("date"))
            || px_overridden(px, f->name)) {
            continue;
        }
        p = px_put(p, f->name.data, f->name.len);
        p = px_put(p, ": ", 2);
        p = px_put(p, f->value.data, f->value.len);
        p = px_put(p, "\r\n", 2);
    }
    if (h->status == 101) {
        /* Hop-by-hop, and said again on the client's connection; the mux
         * adds "Connection: Upgrade". */
        p = px_put(p, PX_UPGRADE, sizeof(PX_UPGRADE) - 1);
    }
    px->r->resp.raw_fields = wf_str_make(px->fields, (size_t)(p - px->fields));
    return WF_OK;
}

static bool
px_no_body(const px_t *px)
{
    unsigned s = px->resp.status;

    return px->r->head.method_id == WF_HTTP_HEAD || s == 204 || s == 304
           || (s >= 100 && s < 200);
}

static void px_on_resp_room(wf_chan_t *ch);
static int px_body_bytes(px_t *px, char *d, size_t n);
static ssize_t px_recv_direct(px_t *px, size_t room);

/* A Content-Length body that came whole with the head (a small response)
 * goes to the client as a memory body, written with the head in one
 * writev: no channel, no second send.  px->in stays until r is released.
 * Returns false when the body is not all there. */
static bool
px_respond_whole(px_t *px)
{
    wf_req_t *r = px->r;
    const wf_proxy_resp_t *h = &px->resp;
    size_t have = px->in_len - h->head_len;

    if (h->chunked || h->content_length <= 0
        || have < (uint64_t)h->content_length) {
        return false;
    }
    r->resp.body = wf_str_make(px->in + h->head_len, (size_t)h->content_length);
    r->resp.content_length = (uint64_t)h->content_length;
    px->body = PX_BODY_NONE;
    px->extra |= have > (uint64_t)h->content_length;
    px->in_held = true;
    px_close_or_keep(px);
    px->r = NULL;
    r->on_abort = NULL;
    wf_req_respond(r);
    return true;
}

/* The response head is in px->in[0..head_len): answer the client. */
static void
px_respond(px_t *px)
{
    wf_req_t *r = px->r;
    wf_resp_t *resp = &r->resp;
    const wf_proxy_resp_t *h = &px->resp;

    if (px_fields_build(px) != WF_OK) {
        px_fail(px, 500, "out of memory");
        return;
    }
    resp->status = h->status;
    if (px_no_body(px) || h->content_length == 0) {
        resp->content_length =
            h->content_length > 0 ? (uint64_t)h->content_length : 0;
        px->body = PX_BODY_NONE;
        px->extra |= px->in_len > h->head_len;
        px_close_or_keep(px);
        px->r = NULL;
        r->on_abort = NULL;
        wf_req_respond(r);
        return;
    }
    if (px_respond_whole(px)) {
        return;
    }
    resp->stream = true;
    if (h->chunked) {
        px->body = PX_BODY_CHUNKED;
        wf_h1_chunked_init(&px->dec);
    } else if (h->content_length > 0) {
        px->body = PX_BODY_LENGTH;
        px->remaining = (uint64_t)h->content_length;
        resp->stream_length = true;
        resp->content_length = px->remaining;
    } else {
        px->body = PX_BODY_CLOSE;
    }
    px->state = PX_BODY;
    wf_timer_set(px->loop, &px->timer, px->u->read_ms);
    px->in_off = h->head_len;
    if (px->body != PX_BODY_CHUNKED) {
        /* The body bytes read with the head (fewer than announced, or
         * px_respond_whole() had taken them; they fit in the fresh
         * channel) are queued first: the head leaves with them, in one
         * write. */
        px_body_bytes(px, px->in + px->in_off, px->in_len - px->in_off);
        px->in_off = px->in_len = 0;
    }
    wf_xchg_stream_start(r, px_on_resp_room);
}

/* ---- the tunnel --------------------------------------------------------
 * After the backend's 101 to a WebSocket handshake, the mux joins the
 * client's socket to r's channels (wf_xchg_tunnel_start()) and the proxy
 * becomes a byte pump on its backend socket: r->req_body's bytes are
 * written to it (gathered, consumed as they leave), and its bytes are
 * read straight into r->resp_body while there is room.  Each direction
 * stops on its own back-pressure.  The client's EOF is passed on as a
 * half close (SHUT_WR); the backend's EOF closes r->resp_body, after
 * which the mux ends the connection.  tunnel_timeout without a byte
 * either way ends the tunnel the same way. */

static void px_tunnel_pump(px_t *px);

/* The tunnel is over from the backend's side (EOF, idle): the client's
 * connection closes once resp_body's bytes are out. */
static void
px_tunnel_end(px_t *px)
{
    wf_req_t *r = px->r;

    px_close(px);
    px->r = NULL;
    r->on_abort = NULL;
    wf_chan_close(&r->resp_body);
}

static void
px_tunnel_activity(px_t *px)
{
    wf_timer_set(px->loop, &px->timer, px_timeout(px));
}

/* Client bytes to the backend.  Returns WF_AGAIN (the socket is full),
 * WF_DECLINED (waiting for the client, or its EOF was passed on) or
 * WF_ERROR. */
static int
px_tunnel_up(px_t *px)
{
    wf_chan_t *ch = &px->r->req_body;

    for (;;) {
        struct iovec iov[PX_IOV];
        struct msghdr msg = {.msg_iov = iov};
        size_t n;
        ssize_t k;

        msg.msg_iovlen = wf_chan_peekv(ch, iov, PX_IOV, &n);
        if (n == 0) {
            if (wf_chan_is_aborted(ch)) {
                return WF_ERROR;
            }
            if (wf_chan_is_done(ch) && !px->up_shut) {
                px->up_shut = true;
                wf_xprt_shutdown(&px->xp, px->io.fd);
            }
            return WF_DECLINED;
        }
        k = wf_xprt_sendmsg(&px->xp, px->io.fd, &msg, MSG_NOSIGNAL);
        if (k < 0) {
            return errno == EAGAIN || errno == EINTR ? WF_AGAIN : WF_ERROR;
        }
        wf_chan_consume(ch, (size_t)k);
        px_tunnel_activity(px);
        if ((size_t)k < n) {
            return WF_AGAIN;
        }
    }
}

/* Backend bytes to the client, read into r->resp_body.  Returns
 * WF_AGAIN (nothing to read), WF_DECLINED (no room: on_writable
 * follows), PX_EOF (the backend's EOF) or WF_ERROR. */
static int
px_tunnel_down(px_t *px)
{
    for (unsigned i = 0; i < PX_TUNNEL_BURST; i++) {
        size_t room = wf_chan_room(&px->r->resp_body);
        ssize_t k;

        if (room == 0) {
            wf_chan_wait_room(&px->r->resp_body);
            return WF_DECLINED;
        }
        k = px_recv_direct(px, room);
        if (k == 0) {
            return PX_EOF;
        }
        if (k < 0) {
            return k == WF_AGAIN ? WF_AGAIN : WF_ERROR;
        }
        px_tunnel_activity(px);
    }
    return WF_AGAIN; /* more may be there: the poll says so */
}

/* Runs both directions and polls for what they wait on. */
static void
px_tunnel_pump(px_t *px)
{
    int up = px_tunnel_up(px);
    int down = up == WF_ERROR ? WF_ERROR : px_tunnel_down(px);
    uint32_t ev;

    if (px->r == NULL) {
        return; /* px_recv_direct() failed it */
    }
    if (up == WF_ERROR || down == WF_ERROR) {
        px_fail(px, 502, "tunnel I/O failed");
        return;
    }
    if (down == PX_EOF) {
        px_tunnel_end(px);
        return;
    }
    ev = (up == WF_AGAIN ? EPOLLOUT : 0)
         | (down == WF_AGAIN ? EPOLLIN | EPOLLRDHUP : 0);
    if (ev != px->io.events) {
        wf_io_mod(px->loop, &px->io, ev);
    }
    px_kick_pending(px, ev);
}

/* Client bytes, its EOF or its going away (req_body), or room in
 * resp_body. */
static void
px_on_tunnel_req(wf_chan_t *ch)
{
    px_t *px = wf_container_of(ch, wf_req_t, req_body)->proxy;

    if (px->state == PX_TUNNEL && px->r != NULL) {
        px_enter(px);
        px_tunnel_pump(px);
        px_leave(px);
    }
}

static void
px_on_tunnel_room(wf_chan_t *ch)
{
    px_t *px = wf_container_of(ch, wf_req_t, resp_body)->proxy;

    if (px->state == PX_TUNNEL && px->r != NULL) {
        px_enter(px);
        px_tunnel_pump(px);
        px_leave(px);
    }
}

/* The backend accepted the handshake: its 101 goes to the client with
 * its end-to-end fields (Sec-WebSocket-Accept, -Protocol, -Extensions),
 * then the bytes that came after the head. */
static void
px_tunnel_begin(px_t *px)
{
    wf_req_t *r = px->r;
    const wf_proxy_resp_t *h = &px->resp;
    size_t rest = px->in_len - h->head_len;

    if (!wf_proxy_resp_has_token(h, wf_string("upgrade"),
                                 wf_string("websocket"))) {
        px->resp.head_len = 0;
        px_fail(px, 502, "101 without \"Upgrade: websocket\"");
        return;
    }
    if (px_fields_build(px) != WF_OK) {
        px->resp.head_len = 0;
        px_fail(px, 500, "out of memory");
        return;
    }
    r->resp.status = 101;
    px->state = PX_TUNNEL;
    px->body = PX_BODY_CLOSE; /* px_recv_direct() reads what comes */
    px->extra = true;         /* never pooled */
    if (wf_xchg_tunnel_start(r, px_on_tunnel_req, px_on_tunnel_room) != WF_OK) {
        px->state = PX_HEAD;
        px->body = PX_BODY_NONE;
        px->resp.head_len = 0;
        px_fail(px, 502, "the client's connection cannot carry a tunnel");
        return;
    }
    if (rest > 0) {
        /* A fresh channel holds them (the head and they fit in px->in). */
        wf_chan_write(&r->resp_body, px->in + h->head_len, rest);
    }
    px->in_len = 0;
    wf_io_mod(px->loop, &px->io, 0);
    px_tunnel_activity(px);
    px_tunnel_pump(px);
}

/* Parses what px->in holds; skips interim 1xx heads. */
static void
px_head(px_t *px)
{
    for (;;) {
        int rc = wf_proxy_resp_parse(&px->resp, px->in, px->in_len,
                                     WF_PROXY_HEAD_MAX);

        if (rc == WF_AGAIN) {
            return;
        }
        if (rc == WF_OK && px->resp.status == 101 && px->upgrade) {
            px_tunnel_begin(px);
            return;
        }
        if (rc != WF_OK || px->resp.status == 101) {
            px->resp.head_len = 0;
            px_fail(px, 502,
                    rc != WF_OK ? "invalid response head"
                                : "101 to a request that asked no upgrade");
            return;
        }
        if (px->resp.status >= 200) {
            px_respond(px);
            return;
        }
        memmove(px->in, px->in + px->resp.head_len,
                px->in_len - px->resp.head_len);
        px->in_len -= px->resp.head_len;
        memset(&px->resp, 0, sizeof(px->resp));
    }
}

static int px_connect(px_t *px, bool pooled);

/* A reused connection failed before any response byte: the server had
 * closed it while it was idle (the request never reached it, or it was
 * not processed).  Only an idempotent request whose body was not taken
 * yet is sent again, on a new connection (RFC 9110 9.2.2). */
static bool
px_can_retry(const px_t *px)
{
    static const bool idempotent[WF_HTTP_NMETHODS] = {
        [WF_HTTP_GET] = true,     [WF_HTTP_HEAD] = true,
        [WF_HTTP_PUT] = true,     [WF_HTTP_DELETE] = true,
        [WF_HTTP_OPTIONS] = true, [WF_HTTP_TRACE] = true,
    };

    return px->reused && px->in_len == 0 && !px->body_taken
           && idempotent[px->r->head.method_id];
}

/* Returns WF_OK (a new connection is under way) or WF_ERROR (failed). */
static int
px_retry(px_t *px)
{
    wf_io_del(px->loop, &px->io);
    wf_xprt_close(&px->xp);
    close(px->io.fd);
    px->io.fd = -1;
    px_out_put(px);
    px->out_off = 0;
    px->req_eof = false;
    px->reused = false;
    px->state = PX_CONNECT;
    wf_timer_stop(px->loop, &px->timer);
    if (px_head_build(px) != WF_OK || px_connect(px, false) != WF_OK) {
        px_fail(px, 502, "retry failed");
        return WF_ERROR;
    }
    return WF_OK;
}

/* Reads the response head.  Returns WF_OK or WF_ERROR (failed). */
static int
px_read_head(px_t *px)
{
    ssize_t n;

    if (px->in == NULL) {
        px->in = px_in_get();
        if (px->in == NULL) {
            px_fail(px, 500, "out of memory");
            return WF_ERROR;
        }
    }
    n = wf_xprt_recv(&px->xp, px->io.fd, px->in + px->in_len,
                     wf_min(PX_IN_SIZE - px->in_len, (size_t)PX_HEAD_READ));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return WF_OK;
    }
    if (n <= 0 && px_can_retry(px)) {
        return px_retry(px);
    }
    if (n <= 0) {
        px_fail(px, 502,
                n == 0 ? "closed before the response head" : "read failed");
        return WF_ERROR;
    }
    px->in_len += (size_t)n;
    wf_timer_set(px->loop, &px->timer, px->u->head_ms);
    px_head(px);
    return WF_OK;
}

/* The response body is complete: the channel closes, the backend
 * connection is kept or closed. */
static void
px_finish(px_t *px)
{
    wf_req_t *r = px->r;

    px_close_or_keep(px);
    px->r = NULL;
    r->on_abort = NULL;
    wf_chan_close(&r->resp_body);
}

/* Writes body bytes d[0..n) (already decoded) into the channel; the
 * caller made sure they fit. */
static void
px_emit(px_t *px, const char *d, size_t n)
{
    if (n > 0 && wf_chan_write(&px->r->resp_body, d, n) != (ssize_t)n) {
        px_fail(px, 502, "channel refused the body");
    }
}

/* Moves n read body bytes at d (in px->in) into the channel.  Returns
 * WF_OK, or WF_DECLINED once the body is complete (or failed). */
static int
px_body_bytes(px_t *px, char *d, size_t n)
{
    size_t used, out;
    int rc;

    if (px->body == PX_BODY_CHUNKED) {
        rc = wf_h1_chunked_decode(&px->dec, d, n, &used, d, &out);
        if (rc == WF_ERROR) {
            px_fail(px, 502, "invalid chunked body");
            return WF_DECLINED;
        }
        px_emit(px, d, out);
        px->extra |= rc == WF_OK && used < n;
        if (rc == WF_OK && px->r != NULL) {
            px_finish(px);
        }
        return px->r != NULL ? WF_OK : WF_DECLINED;
    }
    if (px->body == PX_BODY_LENGTH) {
        px->extra |= n > px->remaining;
        n = (size_t)wf_min((uint64_t)n, px->remaining);
        px->remaining -= n;
    }
    px_emit(px, d, n);
    if (px->r != NULL && px->body == PX_BODY_LENGTH && px->remaining == 0) {
        px_finish(px);
    }
    return px->r != NULL ? WF_OK : WF_DECLINED;
}

/* readv() through the transport: TLS fills the pieces one by one and
 * stops at the first short one. */
static ssize_t
px_readv(px_t *px, struct iovec *iov, size_t n)
{
    ssize_t got = 0;

    if (!wf_xprt_is_tls(&px->xp)) {
        return readv(px->io.fd, iov, (int)n);
    }
    for (size_t i = 0; i < n; i++) {
        ssize_t k =
            wf_xprt_recv(&px->xp, px->io.fd, iov[i].iov_base, iov[i].iov_len);

        if (k <= 0) {
            return got > 0 ? got : k;
        }
        got += k;
        if ((size_t)k < iov[i].iov_len) {
            break;
        }
    }
    return got;
}

/* Reads a Content-Length or close-delimited body straight into the
 * channel's buffers (one readv, no copy), never past the announced
 * length: a byte past it, read into a probe, marks the connection as not
 * reusable.  Returns the bytes read (> 0), 0 at EOF, WF_AGAIN, or
 * WF_ERROR (errno set; px failed when the channel refused). */
static ssize_t
px_recv_direct(px_t *px, size_t room)
{
    wf_chan_t *ch = &px->r->resp_body;
    struct iovec iov[PX_IOV + 1];
    char probe;
    size_t want = wf_min(room, (size_t)PX_IN_SIZE), len;
    ssize_t k, n;
    bool last = false;

    if (px->body == PX_BODY_LENGTH && px->remaining <= want) {
        want = (size_t)px->remaining;
        last = true;
    }
    k = wf_chan_reserve(ch, want, iov, PX_IOV, &len);
    if (k < 0) {
        if (k == WF_ERROR) {
            px_fail(px, 502, "channel refused the body");
        }
        return k;
    }
    if (last && len == want) {
        iov[k++] = (struct iovec){&probe, 1};
    }
    n = px_readv(px, iov, (size_t)k);
    if (n > (ssize_t)len) {
        px->extra = true;
        n = (ssize_t)len;
    }
    if (n > 0) {
        wf_chan_commit(ch, (size_t)n);
    }
    return n < 0 && (errno == EAGAIN || errno == EINTR) ? WF_AGAIN : n;
}

/* Moves the next bytes of a Content-Length body through the response
 * channel's pipe (splice(2), socket to socket: no copy), never past the
 * announced length.  With the last byte in, a peek tells whether the
 * backend sent bytes past the response (not reusable, as in
 * px_recv_direct()).  first: the first read of this wake-up; a socket
 * that polled readable yet gave nothing means the pipe is full.  Returns
 * as px_recv_direct(). */
static ssize_t
px_splice_in(px_t *px, size_t room, bool first)
{
    wf_chan_t *ch = &px->r->resp_body;
    size_t want = (size_t)wf_min((uint64_t)room, px->remaining);
    ssize_t n = wf_chan_splice_in(ch, px->io.fd, want);
    char probe;

    if (n == WF_AGAIN && first && px->in_event && wf_chan_piped(ch) > 0) {
        px->pipe_full = true; /* px_poll() drops EPOLLIN meanwhile */
    }
    if (n > 0 && (uint64_t)n == px->remaining
        && recv(px->io.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
        px->extra = true;
    }
    return n;
}

/* Whether the body goes through the channel's pipe: a Content-Length
 * body, plain on both sides (the mux gave the channel a pipe). */
static bool
px_splices(px_t *px)
{
    return px->body == PX_BODY_LENGTH && !wf_xprt_is_tls(&px->xp)
           && wf_chan_can_splice(&px->r->resp_body);
}

/* Reads the next body bytes: through the channel's pipe, into the
 * channel directly, or (a chunked body, decoded in place) into px->in, no
 * more than the room so that the channel's bound holds.  Returns WF_OK to
 * go on, WF_DECLINED to stop. */
static int
px_read_more(px_t *px, size_t room, bool first)
{
    ssize_t k;

    if (px_splices(px)) {
        k = px_splice_in(px, room, first);
    } else if (px->body == PX_BODY_CHUNKED) {
        k = wf_xprt_recv(&px->xp, px->io.fd, px->in,
                         wf_min(room, (size_t)PX_IN_SIZE));
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
            k = WF_AGAIN;
        }
    } else {
        k = px_recv_direct(px, room);
    }
    if (k == WF_AGAIN || px->r == NULL) {
        return WF_DECLINED;
    }
    if (k <= 0) {
        if (k == 0 && px->body == PX_BODY_CLOSE) {
            px_finish(px);
        } else {
            px_fail(px, 502, "response body cut short");
        }
        return WF_DECLINED;
    }
    wf_timer_set(px->loop, &px->timer, px->u->read_ms);
    if (px->body == PX_BODY_CHUNKED) {
        return px_body_bytes(px, px->in, (size_t)k);
    }
    if (px->body == PX_BODY_LENGTH) {
        px->remaining -= (uint64_t)k;
        if (px->remaining == 0) {
            px_finish(px);
            return WF_DECLINED;
        }
    }
    return WF_OK;
}

/* Relays the response body while the channel has room. */
static void
px_read_body(px_t *px)
{
    bool first = true;

    while (px->r != NULL) {
        size_t room = wf_chan_room(&px->r->resp_body);

        if (px->in_off < px->in_len) {
            /* Bytes read with the head: they fit in a fresh channel. */
            char *d = px->in + px->in_off;
            size_t n = px->in_len - px->in_off;

            px->in_off = px->in_len = 0;
            if (px_body_bytes(px, d, n) != WF_OK) {
                return;
            }
            continue;
        }
        if (room == 0) {
            wf_chan_wait_room(&px->r->resp_body);
            return;
        }
        if (px_read_more(px, room, first) != WF_OK) {
            return;
        }
        first = false;
    }
}

static void
px_on_resp_room(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, resp_body);
    px_t *px = r->proxy;

    if (px->state == PX_BODY && px->r != NULL) {
        px_enter(px);
        px->pipe_full = false;
        px_pump(px);
        px_leave(px);
    }
}

/* ---- the connection ---------------------------------------------------- */

/* The backend refused request bytes (a reset, or it closed after an early
 * answer): a reused connection may be retried; otherwise the response it
 * may have sent is still read, and the rest of the request is given up. */
static int
px_send_failed(px_t *px)
{
    if (px_can_retry(px)) {
        return px_retry(px);
    }
    px->req_eof = true;
    px->out_off = px->out_len;
    px->extra = true; /* half closed: never pooled */
    shutdown(px->io.fd, SHUT_WR);
    return WF_OK;
}

/* Runs the state machine as far as the socket lets it. */
static void
px_pump(px_t *px)
{
    if (px->state == PX_SEND && px_send(px) != WF_OK
        && px_send_failed(px) != WF_OK) {
        return;
    }
    if (px->state == PX_SEND && px->req_eof && px->out_off == px->out_len) {
        px->state = PX_HEAD;
        wf_timer_set(px->loop, &px->timer, px->u->head_ms);
    }
    if (px->state == PX_BODY) {
        px_read_body(px);
    }
    if (px->state != PX_DONE) {
        px_poll(px);
    }
}

/* Asks the mux for the request body once a connection to the backend
 * is there: a client that sent "Expect: 100-continue" gets its 100 only
 * then, and a backend that cannot be reached answers 502 before the body
 * was sent for nothing. */
static void
px_ask_body(px_t *px)
{
    if (px->req_body && !px->body_asked) {
        px->body_asked = true;
        wf_xchg_body_read(px->r, px_on_req_body);
    }
}

static void px_sending(px_t *px);

/* Advances the TLS handshake; polls what it waits for. */
static void
px_tls_step(px_t *px)
{
    uint32_t ev = 0;
    char why[256];
    int rc = wf_tls_cli_handshake(&px->xp, &ev, why, sizeof(why));

    if (rc == WF_AGAIN) {
        if (ev != px->io.events) {
            wf_io_mod(px->loop, &px->io, ev);
        }
        return;
    }
    if (rc != WF_OK) {
        char msg[300];

        snprintf(msg, sizeof(msg), "TLS handshake failed: %s", why);
        px_fail(px, 502, msg);
        return;
    }
    px_sending(px);
}

/* The name sent in SNI and verified: the "sni" option, else the host name
 * of a server given by name ("NAME:PORT"), else none (the address is
 * verified).  buf holds a copied name. */
static const char *
px_tls_name(const px_t *px, char *buf, size_t size)
{
    const char *host = px->srv->host;
    const char *colon = host != NULL ? strrchr(host, ':') : NULL;
    size_t len = colon != NULL ? (size_t)(colon - host) : 0;

    if (px->u->sni != NULL || len == 0 || len >= size) {
        return px->u->sni;
    }
    memcpy(buf, host, len);
    buf[len] = '\0';
    return buf;
}

static void
px_tls_start(px_t *px)
{
    const wf_upstream_server_t *s = px->srv;
    char name[256];

    if (wf_tls_cli_open(&px->xp, px->u->tls, px->io.fd,
                        px_tls_name(px, name, sizeof(name)),
                        (const struct sockaddr *)&s->addr, s->addrlen)
        != WF_OK) {
        px_fail(px, 502, "TLS: out of memory");
        return;
    }
    px->state = PX_TLS;
    px_tls_step(px);
}

static void
px_on_connect(px_t *px)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(px->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0
        || err != 0) {
        px_fail(px, 502, "connect failed");
        return;
    }
    if (px->u->tls != NULL) {
        px_tls_start(px);
        return;
    }
    px_sending(px);
}

/* Connected (and TLS done): the request goes out. */
static void
px_sending(px_t *px)
{
    px->state = PX_SEND;
    wf_timer_set(px->loop, &px->timer, px->u->send_ms);
    px_ask_body(px);
    px_pump(px);
}

static void
px_io(px_t *px, uint32_t events)
{
    if (px->state == PX_CONNECT) {
        px_on_connect(px);
        return;
    }
    if (px->state == PX_TLS) {
        px_tls_step(px);
        return;
    }
    if (px->state == PX_TUNNEL) {
        px_tunnel_pump(px);
        return;
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0
        && (px->state == PX_SEND || px->state == PX_HEAD)) {
        if (px_read_head(px) != WF_OK || px->state == PX_DONE) {
            return;
        }
    }
    if (px->state != PX_DONE) {
        px_pump(px);
    }
}

static void
px_on_io(wf_io_t *io, uint32_t events)
{
    px_t *px = wf_container_of(io, px_t, io);

    px_enter(px);
    px->in_event = true;
    px_io(px, events);
    px->in_event = false;
    px_leave(px);
}

/* Takes an idle connection to the server from the thread's pool; the
 * caller sends the request at once (such a socket is writable). */
static bool
px_connect_pooled(px_t *px)
{
    const wf_upstream_server_t *s = px->srv;

    if (px->u->idle_max == 0
        || !wf_proxy_pool_get(px->loop, (const struct sockaddr *)&s->addr,
                              s->addrlen, px_pool_tag(px), &px->io, &px->xp)) {
        return false;
    }
    px->io.handler = px_on_io;
    px->reused = true;
    px->state = PX_SEND;
    wf_timer_set(px->loop, &px->timer, px->u->send_ms);
    return true;
}

/* Opens the backend socket and starts connecting, or reuses an idle
 * connection when pooled.  Returns WF_OK or WF_ERROR (errno set). */
static int
px_connect(px_t *px, bool pooled)
{
    const wf_upstream_server_t *s = px->srv;
    int fd;

    if (pooled && px_connect_pooled(px)) {
        return WF_OK;
    }
    fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0) {
        return WF_ERROR;
    }
    px->io.fd = fd;
    px->io.handler = px_on_io;
    px->io.events = 0;
    if (s->addr.ss_family != AF_UNIX) {
        /* The head and the body go out as separate sends. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    }
    if (connect(fd, (const struct sockaddr *)&s->addr, s->addrlen) != 0
        && errno != EINPROGRESS) {
        close(fd);
        px->io.fd = -1;
        return WF_ERROR;
    }
    if (wf_io_add(px->loop, &px->io, EPOLLOUT) != WF_OK) {
        close(fd);
        px->io.fd = -1;
        return WF_ERROR;
    }
    wf_timer_set(px->loop, &px->timer, px->u->connect_ms);
    return WF_OK;
}

static px_t *
px_alloc(void)
{
    px_t *px;

    px_pools_init();
    px = wf_fpool_get(&px_pool);
    if (px != NULL) {
        memset(px, 0, sizeof(*px));
    }
    return px;
}

void
wf_proxy_thread_exit(void)
{
    wf_proxy_pool_thread_exit();
    wf_proxy_h2_thread_exit();
    if (px_pool_ready) {
        wf_fpool_fini(&px_pool);
        wf_fpool_fini(&px_in_pool);
        wf_fpool_fini(&px_out_pool);
        px_pool_ready = false;
    }
}

static void px_start(px_t *px);

static void
px_on_kick(wf_task_t *task)
{
    px_t *px = wf_container_of(task, px_t, kick);

    px_enter(px);
    px->in_event = true;
    px_io(px, EPOLLIN);
    px->in_event = false;
    px_leave(px);
}

void
wf_proxy_run(wf_req_t *r, wf_upstream_t *u)
{
    px_t *px;

    if (r->head.method_id == WF_HTTP_CONNECT || r->head.path.len == 0) {
        wf_req_respond_error(r, 501);
        return;
    }
    px = px_alloc();
    if (px == NULL) {
        wf_req_respond_error(r, 500);
        return;
    }
    r->proxy = px;
    px->r = r;
    px->u = u;
    px->loop = r->loop;
    px->io.fd = -1;
    px->kick.handler = px_on_kick;
    wf_list_init(&px->kick.link);
    wf_timer_init(&px->timer, px_on_timer);
    px_enter(px);
    px_start(px);
    px_leave(px);
}

static void px_begin(px_t *px);

/* A server below max_conns was handed over, or the wait timed out. */
static void
px_on_wait(wf_upstream_wait_t *w, wf_upstream_server_t *s)
{
    px_t *px = w->data;

    px->wait = NULL;
    px_enter(px);
    if (s == NULL) {
        wf_upstream_reject(px->u);
        px_fail(px, 503, "queue timed out");
    } else {
        px->srv = s;
        px->srv_held = true;
        px_begin(px);
    }
    px_leave(px);
}

/* Picks the server (http/upstream.h): none has a weight is Unit's 502;
 * all down, or all full with no room in the queue, is a 503 at once. */
static void
px_start(px_t *px)
{
    wf_upstream_none_t why = 0;
    uint64_t key;

    if (px->u->rhttp_select != NULL) {
        /* Reverse HTTP: the tunnels of the request's name, or 503. */
        px->srv = wf_rhttp_pub_pick(px->u, &px->r->rq);
        if (px->srv == NULL) {
            wf_upstream_reject(px->u);
            px_fail(px, 503, "no reverse tunnel for the name");
            return;
        }
        px->srv_held = true;
        px_begin(px);
        return;
    }
    key = wf_upstream_key(px->u, &px->r->rq);
    px->srv = wf_upstream_pick(px->u, key, &why);
    if (px->srv != NULL) {
        px->srv_held = true;
        px_begin(px);
        return;
    }
    if (why == WF_UPSTREAM_NO_WEIGHT) {
        px_fail(px, 502, "no server");
        return;
    }
    if (why == WF_UPSTREAM_ALL_FULL) {
        px->wait = wf_upstream_wait(px->u, key, px->loop, px_on_wait, px);
    }
    if (px->wait == NULL) {
        wf_upstream_reject(px->u);
        px_fail(px, 503,
                why == WF_UPSTREAM_ALL_DOWN ? "all servers down" : "all full");
        return;
    }
    px->r->on_abort = px_on_abort;
}

/* Builds the head, connects, asks for the body. */
static void
px_begin(px_t *px)
{
    wf_req_t *r = px->r;

    if (px_head_build(px) != WF_OK) {
        px_fail(px, 500, "out of memory");
        return;
    }
    if (px->u->h2) {
        /* HTTP/2 to the server: http/proxy_h2.c takes r, the server's
         * slot and a copy of the head; px ends at px_leave(). */
        px->srv_held = false;
        r->proxy = NULL;
        px->r = NULL;
        px->released = true;
        wf_proxy_h2_run(r, px->u, px->srv, px->out, px->out_len);
        px_close(px);
        return;
    }
    px->req_body = wf_xchg_has_body(r);
    if (px_connect(px, true) != WF_OK) {
        px_fail(px, 502, strerror(errno));
        return;
    }
    r->on_abort = px_on_abort;
    if (px->state == PX_SEND) {
        /* A pooled connection: no need to wait for EPOLLOUT. */
        px_ask_body(px);
        px_pump(px);
    }
}

void
wf_proxy_req_release(wf_req_t *r)
{
    px_t *px = r->proxy;

    wf_proxy_h2_req_release(r);
    if (px == NULL) {
        return;
    }
    r->proxy = NULL;
    px->r = NULL;
    px_close(px);
    if (px->busy) {
        px->released = true; /* px_leave() frees it */
        return;
    }
    px_free(px);
}

static void
px_free(px_t *px)
{
    free(px->fields);
    px_in_put(px->in);
    wf_fpool_put(&px_pool, px);
}
