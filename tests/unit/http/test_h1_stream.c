/* The h1 mux under the exchange layer, over a real socket pair: request
 * bodies streamed to an endpoint (chunked and Content-Length, with
 * back-pressure and 100-continue), streamed responses (chunked on
 * HTTP/1.1, close-delimited on HTTP/1.0) and body errors.  h1_conn.c is
 * included to reach its static handlers; wf_http_handle is renamed so that
 * its dispatch reaches the scripted endpoint below instead of the router,
 * and its public functions are renamed so they do not clash with the
 * library's copy. */
#define wf_http_handle        xt_h1_handle
#define wf_h1_stats_get       xt_h1_stats_get
#define wf_h1_snap_unref      xt_h1_snap_unref
#define wf_h1_server_unref    xt_h1_server_unref
#define wf_h1_server_set_site xt_h1_server_set_site
#define wf_h1_server_init     xt_h1_server_init
#define wf_h1_init            xt_h1_init
#define wf_h1_server_remove   xt_h1_server_remove
#define wf_h1_sweep_removed   xt_h1_sweep_removed
#define wf_h1_stats_h2        xt_h1_stats_h2
#include "http/h1_conn.c"

#include <fcntl.h>
#include <sys/un.h>

#include "unit.h"

typedef struct h1x_case {
    const char *name;
    const char *head;  /* request head, CRLFs included */
    size_t body_len;   /* body bytes (the pattern) */
    bool chunked;      /* sent chunked, in 1000-byte chunks */
    const char *bad;   /* sent instead of the rest after 10000 bytes */
    bool read_body;    /* the endpoint asks for the body */
    size_t ep_step;    /* endpoint: bytes consumed per wake */
    size_t resp_len;   /* endpoint: streamed response bytes */
    uint64_t max_body; /* max_body_size */
    bool wait_100;     /* the client waits for 100 Continue */
    unsigned status;   /* expected */
    bool resp_chunked; /* expected framing */
    bool keep_alive;   /* expected */
    bool ep_abort;     /* the endpoint must see an abort */
    bool paused;       /* h1 must stop reading the socket once */
    unsigned chunks;   /* chunks the response may take at most (0: any) */
} h1x_case_t;

#define H1X_POST11 "POST /x HTTP/1.1\r\nHost: t\r\n"

static const h1x_case_t h1x_cases[] = {
    {"chunked_slow_endpoint", H1X_POST11 "Transfer-Encoding: chunked\r\n\r\n",
     300000, true, NULL, true, 3000, 200000, 8 << 20, false, 200, true, true,
     false, true, 0},
    {"length_expect_100",
     H1X_POST11 "Content-Length: 200000\r\nExpect: 100-continue\r\n\r\n",
     200000, false, NULL, true, 50000, 1000, 8 << 20, true, 200, true, true,
     false, true, 0},
    {"http10_close_delimited",
     "POST /x HTTP/1.0\r\nContent-Length: 1000\r\n\r\n", 1000, false, NULL,
     true, 100000, 5000, 8 << 20, false, 200, false, false, false, false, 0},
    {"not_read_drained_expect_100",
     H1X_POST11 "Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n", 5000,
     false, NULL, false, 0, 0, 8 << 20, true, 204, false, true, false, false,
     0},
    {"bad_chunk", H1X_POST11 "Transfer-Encoding: chunked\r\n\r\n", 50000, true,
     "zz\r\n", true, 100000, 0, 8 << 20, false, 400, false, false, true, false,
     0},
    {"over_max_body", H1X_POST11 "Transfer-Encoding: chunked\r\n\r\n", 300000,
     true, NULL, true, 100000, 0, 100000, false, 413, false, false, true, false,
     0},
    /* A response queued whole leaves as one chunk (gathered write): */
    {"gathered_one_chunk", H1X_POST11 "Content-Length: 10\r\n\r\n", 10, false,
     NULL, true, 100000, 40000, 8 << 20, false, 200, true, true, false, false,
     1},
};

static const h1x_case_t *h1x_tc;

static struct {
    size_t got;
    bool bad_byte;
    bool eof;
    bool aborted;
    size_t sent;
} h1x_ep;

static uint8_t
h1x_byte(size_t i)
{
    return (uint8_t)('a' + (i * 7 + i / 97) % 26);
}

static void
h1x_ep_write(wf_req_t *r)
{
    char buf[7000];

    while (h1x_ep.sent < h1x_tc->resp_len) {
        size_t n = wf_min(sizeof(buf), h1x_tc->resp_len - h1x_ep.sent);
        ssize_t k;

        for (size_t i = 0; i < n; i++) {
            buf[i] = (char)h1x_byte(h1x_ep.sent + i);
        }
        k = wf_chan_write(&r->resp_body, buf, n);
        if (k < 0) {
            return; /* WF_AGAIN: on_writable follows */
        }
        h1x_ep.sent += (size_t)k;
    }
    wf_chan_close(&r->resp_body);
}

static void
h1x_ep_on_room(wf_chan_t *ch)
{
    if (!wf_chan_is_aborted(ch)) {
        h1x_ep_write(wf_container_of(ch, wf_req_t, resp_body));
    }
}

static void
h1x_ep_on_body(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, req_body);
    const char *p;
    size_t n;

    if (wf_chan_is_aborted(ch)) {
        h1x_ep.aborted = true;
        return;
    }
    n = wf_min(wf_chan_peek(ch, &p), h1x_tc->ep_step);
    for (size_t i = 0; i < n; i++) {
        h1x_ep.bad_byte |= (uint8_t)p[i] != h1x_byte(h1x_ep.got + i);
    }
    wf_chan_consume(ch, n);
    h1x_ep.got += n;
    if (wf_chan_queued(ch) > 0) {
        wf_task_schedule(ch->loop, &ch->readable); /* a slow endpoint */
        return;
    }
    if (wf_chan_is_done(ch) && !h1x_ep.eof) {
        h1x_ep.eof = true;
        r->resp.status = 200;
        wf_xchg_stream_start(r, h1x_ep_on_room);
        h1x_ep_write(r);
    }
}

static void
h1x_ep_abort(wf_req_t *r)
{
    wf_unused(r);
    h1x_ep.aborted = true;
}

/* The endpoint of every request of this file (see the #define above). */
void
xt_h1_handle(wf_req_t *r)
{
    r->on_abort = h1x_ep_abort;
    if (!h1x_tc->read_body) {
        r->resp.status = 204;
        wf_req_respond(r);
        return;
    }
    wf_xchg_body_read(r, h1x_ep_on_body);
    /* r is still the endpoint's after the call, even when the body is
     * already buffered and broken (the mux must not answer from inside). */
    r->on_abort = h1x_ep_abort;
}

/* The client's bytes: head, then the body, framed as the case says. */
static size_t
h1x_request(const h1x_case_t *tc, char *out, size_t cap, size_t *head_len)
{
    size_t n = strlen(tc->head);
    size_t i = 0;

    memcpy(out, tc->head, n);
    *head_len = n;
    while (i < tc->body_len) {
        size_t k = tc->chunked ? wf_min((size_t)1000, tc->body_len - i)
                               : tc->body_len - i;

        if (tc->bad != NULL && i >= 10000) {
            n += (size_t)snprintf(out + n, cap - n, "%s", tc->bad);
            return n;
        }
        if (tc->chunked) {
            n += (size_t)snprintf(out + n, cap - n, "%zx\r\n", k);
        }
        for (size_t j = 0; j < k; j++) {
            out[n++] = (char)h1x_byte(i + j);
        }
        if (tc->chunked) {
            out[n++] = '\r';
            out[n++] = '\n';
        }
        i += k;
    }
    if (tc->chunked) {
        n += (size_t)snprintf(out + n, cap - n, "0\r\n\r\n");
    }
    return n;
}

static unsigned
h1x_run_list(wf_list_t *list)
{
    unsigned n = 0;

    while (!wf_list_is_empty(list) && n < 100000) {
        wf_list_t *l = list->next;
        wf_task_t *t = wf_container_of(l, wf_task_t, link);

        wf_list_del(l);
        t->handler(t);
        n++;
    }
    return n;
}

/* The connection of this thread, or NULL once it closed. */
static wf_h1_conn_t *
h1x_conn(void)
{
    if (!h1_thr.ready || wf_list_is_empty(&h1_thr.all)) {
        return NULL;
    }
    return wf_container_of(h1_thr.all.next, wf_h1_conn_t, link);
}

static unsigned h1x_chunks; /* data chunks h1x_dechunk() saw */

/* Decodes a chunked body in place; returns its length or -1. */
static long
h1x_dechunk(char *p, size_t n, bool *complete)
{
    size_t in = 0;
    size_t out = 0;

    *complete = false;
    h1x_chunks = 0;
    while (in < n) {
        char *end;
        unsigned long k = strtoul(p + in, &end, 16);

        if (end == p + in || (size_t)(end - p) + 2 > n) {
            return (long)out;
        }
        in = (size_t)(end - p) + 2;
        if (k == 0) {
            *complete = n >= in + 2;
            return (long)out;
        }
        if (in + k + 2 > n) {
            return (long)out;
        }
        memmove(p + out, p + in, k);
        h1x_chunks++;
        out += k;
        in += k + 2;
    }
    return (long)out;
}

typedef struct h1x_client {
    int fd;
    char *req;
    size_t req_len;
    size_t head_len;
    size_t sent;
    char *resp;
    size_t resp_len;
    size_t resp_cap;
    bool eof;
} h1x_client_t;

static void
h1x_client_io(h1x_client_t *cl, bool got_100)
{
    size_t limit = h1x_tc->wait_100 && !got_100 ? cl->head_len : cl->req_len;

    while (cl->sent < limit) {
        ssize_t n = send(cl->fd, cl->req + cl->sent, limit - cl->sent, 0);

        if (n <= 0) {
            break;
        }
        cl->sent += (size_t)n;
    }
    while (!cl->eof && cl->resp_len < cl->resp_cap) {
        ssize_t n = recv(cl->fd, cl->resp + cl->resp_len,
                         cl->resp_cap - cl->resp_len, 0);

        if (n == 0) {
            cl->eof = true;
        }
        if (n <= 0) {
            break;
        }
        cl->resp_len += (size_t)n;
    }
}

static void
h1x_release_snap(wf_h1_snap_t *snap)
{
    wf_unused(snap);
}

static void
h1x_release_srv(wf_h1_server_t *srv)
{
    wf_unused(srv);
}

static const char h1x_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* Checks what the client received. */
static void
h1x_check_response(const h1x_case_t *tc, h1x_client_t *cl)
{
    char *p = cl->resp;
    size_t n = cl->resp_len;
    char status[16];
    char *end;
    size_t head;
    bool complete = true;
    long body;

    if (tc->wait_100) {
        assert_true(n >= sizeof(h1x_100) - 1);
        assert_memory_equal(p, h1x_100, sizeof(h1x_100) - 1);
        p += sizeof(h1x_100) - 1;
        n -= sizeof(h1x_100) - 1;
    }
    assert_true(n > 12);
    snprintf(status, sizeof(status), "HTTP/1.%c %u", p[7], tc->status);
    assert_memory_equal(p, status, strlen(status));
    end = memmem(p, n, "\r\n\r\n", 4);
    assert_non_null(end);
    head = (size_t)(end - p) + 4;
    *end = '\0';
    assert_int_equal(strstr(p, "Transfer-Encoding: chunked") != NULL,
                     tc->resp_chunked);
    assert_int_equal(strstr(p, "Connection: close") == NULL, tc->keep_alive);
    if (tc->status != 200) {
        return;
    }
    body = (long)(n - head);
    if (tc->resp_chunked) {
        body = h1x_dechunk(p + head, n - head, &complete);
    } else {
        assert_null(strstr(p, "Content-Length"));
        assert_true(cl->eof); /* close-delimited */
    }
    assert_true(complete);
    assert_int_equal(body, (long)tc->resp_len);
    if (tc->chunks > 0 && h1x_chunks > tc->chunks) {
        fail_msg("%s: %u chunks for a body queued whole", tc->name, h1x_chunks);
    }
    for (size_t i = 0; i < tc->resp_len; i++) {
        if ((uint8_t)p[head + i] != h1x_byte(i)) {
            fail_msg("%s: response byte %zu differs", tc->name, i);
        }
    }
}

static bool
h1x_response_ended(const h1x_case_t *tc, const h1x_client_t *cl)
{
    if (cl->eof) {
        return true;
    }
    if (tc->resp_chunked) {
        return cl->resp_len >= 5
               && memcmp(cl->resp + cl->resp_len - 5, "0\r\n\r\n", 5) == 0;
    }
    return tc->status == 204
           && memmem(cl->resp, cl->resp_len, "\r\n\r\n", 4) != NULL
           && (!tc->wait_100 || cl->resp_len > sizeof(h1x_100) + 4);
}

static void
h1x_run_case(const h1x_case_t *tc, wf_loop_t *loop)
{
    wf_http_conf_t hc = {.header_read_timeout_ms = 30000,
                         .body_read_timeout_ms = 30000,
                         .send_timeout_ms = 30000,
                         .idle_timeout_ms = 30000,
                         .max_body_size = tc->max_body,
                         .large_header_buffer_size = 8192,
                         .large_header_buffers = 4,
                         .discard_unsafe_fields = true};
    wf_h1_snap_t snap = {.release = h1x_release_snap};
    wf_h1_site_t site = {.hc = &hc, .snap = &snap};
    wf_h1_server_t srv;
    h1x_client_t cl = {0};
    struct sockaddr_un peer = {.sun_family = AF_UNIX};
    int sv[2];
    unsigned paused = 0;
    bool done = false;

    h1x_tc = tc;
    memset(&h1x_ep, 0, sizeof(h1x_ep));
    atomic_store(&snap.refs, 1);
    memset(&srv, 0, sizeof(srv));
    srv.listener.addr.ss_family = AF_UNIX;
    srv.listener.addrlen = sizeof(sa_family_t);
    xt_h1_server_init(&srv, &site, h1x_release_srv);
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
        0);
    cl.fd = sv[1];
    cl.req = malloc(2 * tc->body_len + 4096);
    cl.resp_cap = 2 * tc->resp_len + 65536;
    cl.resp = malloc(cl.resp_cap);
    assert_non_null(cl.req);
    assert_non_null(cl.resp);
    cl.req_len = h1x_request(tc, cl.req, 2 * tc->body_len + 4096, &cl.head_len);
    wf_listen_conn_add(loop); /* the connection's end releases it */
    srv.listener.on_accept(&srv.listener, loop, sv[0], (struct sockaddr *)&peer,
                           sizeof(sa_family_t));

    for (unsigned i = 0; i < 200000 && !done; i++) {
        wf_h1_conn_t *c = h1x_conn();
        bool got_100 = cl.resp_len >= sizeof(h1x_100) - 1;

        h1x_client_io(&cl, got_100);
        if (c != NULL && c->io.events != 0) {
            h1_on_io(&c->io, c->io.events);
            c = h1x_conn();
            if (c != NULL && c->state == WF_H1_BODY && c->io.events == 0) {
                paused++; /* stopped by a full channel */
            }
        }
        h1x_run_list(&loop->runq);
        h1x_run_list(&loop->late);
        c = h1x_conn();
        if (c != NULL && c->state == WF_H1_BODY && c->io.events == 0) {
            paused++;
        }
        done = h1x_response_ended(tc, &cl);
    }
    assert_true(done);
    if (h1x_ep.bad_byte) {
        fail_msg("%s: body bytes differ", tc->name);
    }
    if (tc->read_body && !tc->ep_abort) {
        assert_true(h1x_ep.eof);
        assert_int_equal(h1x_ep.got, tc->body_len);
    }
    if (h1x_ep.aborted != tc->ep_abort) {
        fail_msg("%s: endpoint abort %d", tc->name, h1x_ep.aborted);
    }
    if (tc->paused && paused == 0) {
        fail_msg("%s: h1 never stopped reading for a slow endpoint", tc->name);
    }
    h1x_check_response(tc, &cl);
    if (tc->keep_alive) {
        /* The exchange ended cleanly: the connection waits for the next. */
        assert_non_null(h1x_conn());
        assert_int_equal(h1x_conn()->state, WF_H1_IDLE);
        assert_int_equal(h1_mux_ctl(&h1x_conn()->mux, MUX_CTL_GET_NBSTRM, NULL),
                         0);
        h1_close(h1x_conn());
    } else if (h1x_conn() != NULL) {
        h1_close(h1x_conn());
    }
    h1x_run_list(&loop->runq);
    h1x_run_list(&loop->late);
    assert_null(h1x_conn());
    close(cl.fd);
    free(cl.req);
    free(cl.resp);
}

static void
test_h1_stream_table(void **state)
{
    wf_loop_t *loop;

    wf_unused(state);
    assert_int_equal(wf_loops_create(1), WF_OK);
    loop = wf_loop_get(0);
    for (size_t i = 0; i < wf_nitems(h1x_cases); i++) {
        h1x_run_case(&h1x_cases[i], loop);
    }
    h1_on_exit(loop);
    wf_loops_destroy();
}

int
wf_test_h1_stream(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h1_stream_table),
    };

    return cmocka_run_group_tests_name("h1_stream", tests, NULL, NULL);
}
