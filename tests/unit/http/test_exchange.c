/* Exchanges and channels, driven by a scripted client side (a test mux
 * that implements wf_mux_ops_t) and a scripted endpoint, on a loop whose
 * run queue the test runs by hand. */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/chan.h"
#include "http/exchange.h"
#include "http/mux.h"
#include "unit.h"

/* Runs the loop's run queue until it is empty (at most max tasks). */
static unsigned
xt_run(wf_loop_t *loop, unsigned max)
{
    unsigned n = 0;

    while (!wf_list_is_empty(&loop->runq) && n < max) {
        wf_list_t *l = loop->runq.next;
        wf_task_t *t = wf_container_of(l, wf_task_t, link);

        wf_list_del(l);
        t->handler(t);
        n++;
    }
    return n;
}

static void
xt_loop_init(wf_loop_t *loop)
{
    memset(loop, 0, sizeof(*loop));
    wf_list_init(&loop->runq);
    wf_list_init(&loop->late);
}

static uint8_t
xt_byte(size_t i)
{
    return (uint8_t)(i * 7 + i / 251);
}

/* ---- channel ------------------------------------------------------------ */

static unsigned xt_readable_calls;
static unsigned xt_writable_calls;

static void
xt_on_readable(wf_chan_t *ch)
{
    wf_unused(ch);
    xt_readable_calls++;
}

static void
xt_on_writable(wf_chan_t *ch)
{
    wf_unused(ch);
    xt_writable_calls++;
}

static void
test_chan_bounds(void **state)
{
    wf_loop_t loop;
    wf_chan_t ch;
    char buf[10000];
    const char *p;
    size_t n;

    wf_unused(state);
    xt_loop_init(&loop);
    memset(buf, 'x', sizeof(buf));
    wf_chan_init(&ch, &loop, 6000);
    wf_chan_set_readable(&ch, xt_on_readable);
    wf_chan_set_writable(&ch, xt_on_writable);
    xt_readable_calls = xt_writable_calls = 0;

    /* At most the room left is taken; then WF_AGAIN. */
    assert_int_equal(wf_chan_write(&ch, buf, 5000), 5000);
    assert_int_equal(wf_chan_write(&ch, buf, 5000), 1000);
    assert_int_equal(wf_chan_write(&ch, buf, 1), WF_AGAIN);
    assert_int_equal(wf_chan_queued(&ch), 6000);
    assert_int_equal(wf_chan_room(&ch), 0);
    /* Wake-ups run from the run queue, once per tick at most. */
    assert_int_equal(xt_readable_calls, 0);
    assert_int_equal(xt_run(&loop, 100), 1);
    assert_int_equal(xt_readable_calls, 1);

    /* Contiguous pieces span segments of WF_CHAN_SEG_SIZE bytes. */
    n = wf_chan_peek(&ch, &p);
    assert_int_equal(n, WF_CHAN_SEG_SIZE);
    wf_chan_consume(&ch, 100);
    assert_int_equal(xt_run(&loop, 100), 1);
    assert_int_equal(xt_writable_calls, 1); /* the producer was stopped */
    wf_chan_consume(&ch, 100);
    assert_int_equal(xt_run(&loop, 100), 0); /* it was told already */
    n = wf_chan_peek(&ch, &p);
    assert_int_equal(n, WF_CHAN_SEG_SIZE - 200);
    wf_chan_consume(&ch, n + 10);
    n = wf_chan_peek(&ch, &p);
    assert_int_equal(n, 6000 - WF_CHAN_SEG_SIZE - 10);

    /* EOF: queued bytes stay readable, writes fail. */
    wf_chan_close(&ch);
    assert_int_equal(ch.state, WF_CHAN_EOF);
    assert_int_equal(wf_chan_write(&ch, buf, 1), WF_ERROR);
    assert_false(wf_chan_is_done(&ch));
    wf_chan_consume(&ch, n);
    assert_true(wf_chan_is_done(&ch));
    assert_int_equal(wf_chan_peek(&ch, &p), 0);
    wf_chan_fini(&ch);
    xt_run(&loop, 100);
}

/* Gathered reads and writes: wf_chan_peekv() returns every queued byte
 * in order, one entry per buffer; wf_chan_reserve()/wf_chan_commit() fill
 * the channel in place, within the limit, and queue only what was
 * committed. */
static void
test_chan_gather(void **state)
{
    wf_loop_t loop;
    wf_chan_t ch;
    struct iovec iov[40];
    char buf[20000], out[20000];
    size_t len, got = 0;
    ssize_t k;

    wf_unused(state);
    xt_loop_init(&loop);
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (char)('a' + i % 23);
    }
    wf_chan_init(&ch, &loop, 16384);
    wf_chan_set_readable(&ch, xt_on_readable);
    wf_chan_set_writable(&ch, xt_on_writable);
    xt_readable_calls = xt_writable_calls = 0;
    assert_int_equal(wf_chan_peekv(&ch, iov, 40, &len), 0);
    assert_int_equal(len, 0);

    /* 100 bytes written, then 10000 read in place after them: the tail's
     * room first, then new buffers. */
    assert_int_equal(wf_chan_write(&ch, buf, 100), 100);
    k = wf_chan_reserve(&ch, 10000, iov, 40, &len);
    assert_int_equal(k, 3);
    assert_int_equal(len, 10000);
    assert_int_equal(iov[0].iov_len, WF_CHAN_SEG_SIZE - 100);
    for (ssize_t i = 0, off = 100; i < k; off += (ssize_t)iov[i].iov_len, i++) {
        memcpy(iov[i].iov_base, buf + off, iov[i].iov_len);
    }
    assert_int_equal(wf_chan_queued(&ch), 100); /* nothing yet */
    wf_chan_commit(&ch, 7000);                  /* a short read */
    assert_int_equal(wf_chan_queued(&ch), 7100);

    /* No more than the room is reserved; then WF_AGAIN stops the
     * producer. */
    k = wf_chan_reserve(&ch, 20000, iov, 40, &len);
    assert_true(k > 0);
    assert_int_equal(len, 16384 - 7100);
    for (ssize_t i = 0, off = 7100; i < k;
         off += (ssize_t)iov[i].iov_len, i++) {
        memcpy(iov[i].iov_base, buf + off, iov[i].iov_len);
    }
    wf_chan_commit(&ch, len);
    assert_int_equal(wf_chan_room(&ch), 0);
    assert_int_equal(wf_chan_reserve(&ch, 1, iov, 40, &len), WF_AGAIN);

    /* Everything queued comes back in order in one gathered peek. */
    k = (ssize_t)wf_chan_peekv(&ch, iov, 40, &len);
    assert_int_equal(len, 16384);
    assert_int_equal(k, 16384 / WF_CHAN_SEG_SIZE);
    for (ssize_t i = 0; i < k; i++) {
        memcpy(out + got, iov[i].iov_base, iov[i].iov_len);
        got += iov[i].iov_len;
    }
    assert_memory_equal(out, buf, 16384);
    /* A peek limited in entries says so by its count. */
    assert_int_equal(wf_chan_peekv(&ch, iov, 2, &len), 2);
    assert_int_equal(len, 2 * WF_CHAN_SEG_SIZE);
    wf_chan_consume(&ch, 5000);
    assert_int_equal(xt_run(&loop, 100), 2); /* readable, then writable */
    assert_int_equal(xt_writable_calls, 1);
    k = (ssize_t)wf_chan_peekv(&ch, iov, 40, &len);
    assert_int_equal(len, 16384 - 5000);
    assert_memory_equal(iov[0].iov_base, buf + 5000, iov[0].iov_len);

    /* Consumed buffers are reused, and never beyond the limit. */
    assert_true(ch.nspare * (size_t)WF_CHAN_SEG_SIZE + ch.queued <= ch.limit);
    wf_chan_close(&ch);
    assert_int_equal(wf_chan_reserve(&ch, 1, iov, 40, &len), WF_ERROR);
    wf_chan_consume(&ch, len);
    assert_true(wf_chan_is_done(&ch));
    wf_chan_fini(&ch);
    xt_run(&loop, 100);
}

/* Abort in each state: queued bytes go, both sides are woken, nothing
 * flows afterwards, and a second abort changes nothing. */
static const struct {
    const char *name;
    size_t queued; /* bytes written before */
    bool eof;      /* closed before */
    bool full;     /* producer stopped before */
} xt_abort_cases[] = {
    {"open_empty", 0, false, false},  {"open_data", 3000, false, false},
    {"open_full", 8192, false, true}, {"eof_data", 100, true, false},
    {"eof_empty", 0, true, false},
};

static void
test_chan_abort_each_state(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(xt_abort_cases); i++) {
        wf_loop_t loop;
        wf_chan_t ch;
        char buf[9000] = {0};
        const char *p;

        xt_loop_init(&loop);
        wf_chan_init(&ch, &loop, 8192);
        wf_chan_set_readable(&ch, xt_on_readable);
        wf_chan_set_writable(&ch, xt_on_writable);
        if (xt_abort_cases[i].queued > 0) {
            wf_chan_write(&ch, buf, xt_abort_cases[i].queued);
        }
        if (xt_abort_cases[i].full) {
            assert_int_equal(wf_chan_write(&ch, buf, 1), WF_AGAIN);
        }
        if (xt_abort_cases[i].eof) {
            wf_chan_close(&ch);
        }
        xt_run(&loop, 100);
        xt_readable_calls = xt_writable_calls = 0;
        wf_chan_abort(&ch);
        wf_chan_abort(&ch);
        assert_true(wf_chan_is_aborted(&ch));
        assert_int_equal(wf_chan_queued(&ch), 0);
        assert_int_equal(wf_chan_peek(&ch, &p), 0);
        assert_int_equal(wf_chan_write(&ch, buf, 1), WF_ERROR);
        assert_int_equal(wf_chan_room(&ch), 0);
        assert_false(wf_chan_is_done(&ch));
        wf_chan_close(&ch); /* no way back to EOF */
        assert_true(wf_chan_is_aborted(&ch));
        assert_int_equal(xt_run(&loop, 100), 2);
        if (xt_readable_calls != 1 || xt_writable_calls != 1) {
            fail_msg("%s: woken %u/%u", xt_abort_cases[i].name,
                     xt_readable_calls, xt_writable_calls);
        }
        wf_chan_fini(&ch);
    }
}

/* A channel freed with wake-ups pending never calls back. */
static void
test_chan_fini_cancels(void **state)
{
    wf_loop_t loop;
    wf_chan_t ch;

    wf_unused(state);
    xt_loop_init(&loop);
    wf_chan_init(&ch, &loop, 100);
    wf_chan_set_readable(&ch, xt_on_readable);
    xt_readable_calls = 0;
    assert_int_equal(wf_chan_write(&ch, "abc", 3), 3);
    wf_chan_fini(&ch);
    assert_int_equal(xt_run(&loop, 100), 0);
    assert_int_equal(xt_readable_calls, 0);
}

/* ---- exchange: a scripted mux and a scripted endpoint ---------------------
 */

typedef struct xt_case {
    const char *name;
    size_t body_len;     /* request body bytes (0: none) */
    size_t feed;         /* mux: bytes offered per write */
    size_t ep_step;      /* endpoint: bytes consumed per wake (slow) */
    size_t resp_len;     /* endpoint: streamed response bytes */
    size_t mux_step;     /* mux: response bytes sent per wake */
    size_t client_close; /* mux: client goes away after this many body
                            bytes were delivered (0: never) */
    size_t resp_abort;   /* mux: client goes away after this many response
                            bytes (0: never) */
    bool expect_stops;   /* back-pressure must be observed */
} xt_case_t;

typedef struct xt_mux {
    wf_mux_t mux;
    wf_loop_t *loop;
    wf_req_t *r;
    const xt_case_t *tc;
    size_t fed;       /* request body bytes written into req_body */
    unsigned stops;   /* writes that met a full channel */
    unsigned resumes; /* on_writable calls */
    unsigned responds;
    unsigned body_starts;
    unsigned jobs;
    size_t got;      /* response bytes the mux consumed */
    bool resp_done;  /* the response channel ended */
    bool aborted;    /* the client went away */
    unsigned status; /* of the response */
} xt_mux_t;

typedef struct xt_ep {
    size_t got; /* request body bytes */
    bool eof;
    bool saw_abort;
    unsigned on_abort_calls;
    size_t sent; /* response bytes */
    unsigned stops;
    unsigned resumes;
    bool closed;
    bool bad_byte;
} xt_ep_t;

static xt_mux_t *xt_m;
static xt_ep_t xt_e;

static void
xt_mux_feed(xt_mux_t *m)
{
    uint8_t buf[5000];

    while (m->fed < m->tc->body_len && !m->aborted) {
        size_t n = wf_min(m->tc->feed, m->tc->body_len - m->fed);
        ssize_t k;

        n = wf_min(n, sizeof(buf));
        for (size_t i = 0; i < n; i++) {
            buf[i] = xt_byte(m->fed + i);
        }
        k = wf_chan_write(&m->r->req_body, buf, n);
        if (k == WF_AGAIN) {
            m->stops++;
            return; /* a real mux stops reading its socket here */
        }
        assert_true(k > 0);
        m->fed += (size_t)k;
    }
    if (m->fed == m->tc->body_len && !m->aborted) {
        wf_chan_close(&m->r->req_body);
    }
}

static void
xt_mux_on_room(wf_chan_t *ch)
{
    wf_unused(ch);
    xt_m->resumes++;
    xt_mux_feed(xt_m);
}

/* The client goes away: what a mux does on a socket error. */
static void
xt_mux_client_gone(xt_mux_t *m)
{
    wf_req_t *r = m->r;
    void (*cb)(wf_req_t * r) = r->on_abort;

    m->aborted = true;
    wf_chan_abort(&r->req_body);
    wf_chan_abort(&r->resp_body);
    r->on_abort = NULL;
    if (cb != NULL) {
        cb(r);
    }
}

static void
xt_mux_on_resp(wf_chan_t *ch)
{
    xt_mux_t *m = xt_m;
    const char *p;
    size_t n;

    if (m->aborted) {
        return;
    }
    if (wf_chan_is_aborted(ch) || wf_chan_is_done(ch)) {
        m->resp_done = true;
        return;
    }
    /* A slow client: mux_step bytes per wake, then wait for the next. */
    n = wf_chan_peek(ch, &p);
    n = wf_min(n, m->tc->mux_step);
    for (size_t i = 0; i < n; i++) {
        if ((uint8_t)p[i] != xt_byte(m->got + i)) {
            fail_msg("response byte %zu differs", m->got + i);
        }
    }
    wf_chan_consume(ch, n);
    m->got += n;
    if (m->tc->resp_abort > 0 && m->got >= m->tc->resp_abort) {
        xt_mux_client_gone(m);
        return;
    }
    if (wf_chan_is_done(ch)) {
        m->resp_done = true;
        return;
    }
    if (wf_chan_queued(ch) > 0) {
        /* More is queued: come back next tick, as a socket poll would. */
        wf_task_schedule(m->loop, &ch->readable);
    }
}

static void
xt_op_respond(wf_req_t *r)
{
    xt_m->responds++;
    xt_m->status = r->resp.status;
    if (r->resp.stream) {
        wf_chan_set_readable(&r->resp_body, xt_mux_on_resp);
    }
}

static void
xt_op_body_start(wf_req_t *r)
{
    xt_m->body_starts++;
    wf_chan_set_writable(&r->req_body, xt_mux_on_room);
    xt_mux_feed(xt_m);
}

static void
xt_op_job_start(wf_req_t *r)
{
    wf_unused(r);
    xt_m->jobs++;
}

static int
xt_op_ctl(wf_mux_t *m, wf_mux_ctl_t op, void *arg)
{
    wf_unused(m);
    wf_unused(arg);
    return op == MUX_CTL_GET_MAXSTRM ? 7 : WF_DECLINED;
}

static const wf_mux_ops_t xt_ops = {
    .name = "test",
    .respond = xt_op_respond,
    .body_start = xt_op_body_start,
    .job_start = xt_op_job_start,
    .ctl = xt_op_ctl,
};

static void
xt_ep_on_abort(wf_req_t *r)
{
    wf_unused(r);
    xt_e.on_abort_calls++;
}

static void
xt_ep_write(wf_req_t *r)
{
    uint8_t buf[3000];

    while (xt_e.sent < xt_m->tc->resp_len) {
        size_t n = wf_min(sizeof(buf), xt_m->tc->resp_len - xt_e.sent);
        ssize_t k;

        for (size_t i = 0; i < n; i++) {
            buf[i] = xt_byte(xt_e.sent + i);
        }
        k = wf_chan_write(&r->resp_body, buf, n);
        if (k == WF_AGAIN) {
            xt_e.stops++;
            return;
        }
        if (k == WF_ERROR) {
            xt_e.saw_abort = true;
            return;
        }
        xt_e.sent += (size_t)k;
    }
    wf_chan_close(&r->resp_body);
    xt_e.closed = true;
}

static void
xt_ep_on_room(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, resp_body);

    if (wf_chan_is_aborted(ch)) {
        xt_e.saw_abort = true;
        return;
    }
    xt_e.resumes++;
    xt_ep_write(r);
}

/* The endpoint: reads the body slowly, then streams its response. */
static void
xt_ep_on_body(wf_chan_t *ch)
{
    wf_req_t *r = wf_container_of(ch, wf_req_t, req_body);
    const char *p;
    size_t n;

    if (wf_chan_is_aborted(ch)) {
        xt_e.saw_abort = true;
        return;
    }
    n = wf_min(wf_chan_peek(ch, &p), xt_m->tc->ep_step);
    for (size_t i = 0; i < n; i++) {
        if ((uint8_t)p[i] != xt_byte(xt_e.got + i)) {
            xt_e.bad_byte = true;
        }
    }
    wf_chan_consume(ch, n);
    xt_e.got += n;
    if (xt_m->tc->client_close > 0 && xt_e.got >= xt_m->tc->client_close) {
        xt_mux_client_gone(xt_m); /* the peer resets mid-body */
        return;
    }
    if (wf_chan_queued(ch) > 0) {
        wf_task_schedule(r->req_body.loop, &ch->readable); /* next tick */
        return;
    }
    if (wf_chan_is_done(ch) && !xt_e.eof) {
        xt_e.eof = true;
        r->resp.status = 200;
        wf_xchg_stream_start(r, xt_ep_on_room);
        xt_ep_write(r);
    }
}

static const xt_case_t xt_cases[] = {
    /* name, body, feed, ep_step, resp, mux_step, close, resp_abort, stops */
    {"no_body", 0, 1000, 1000, 100, 1000, 0, 0, false},
    {"small", 100, 1000, 1000, 100, 1000, 0, 0, false},
    {"bigger_than_buffers", 1 << 20, 4096, 65536, 300000, 65536, 0, 0, true},
    {"slow_consumer", 200000, 5000, 100, 1000, 7, 0, 0, true},
    {"slow_client", 10, 10, 10, 200000, 333, 0, 0, true},
    {"client_close_mid_body", 500000, 4096, 1000, 0, 1, 150000, 0, true},
    {"client_close_mid_resp", 10, 10, 10, 500000, 4096, 0, 200000, true},
};

static void
xt_req_init(wf_req_t *r, wf_loop_t *loop, xt_mux_t *m, const xt_case_t *tc)
{
    memset(r, 0, sizeof(*r));
    wf_h1_head_init(&r->head);
    r->head.content_length = (int64_t)tc->body_len;
    r->loop = loop;
    memset(m, 0, sizeof(*m));
    m->mux.ops = &xt_ops;
    m->loop = loop;
    m->r = r;
    m->tc = tc;
    wf_xchg_init(r, &m->mux, loop);
}

static void
test_exchange_table(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(xt_cases); i++) {
        const xt_case_t *tc = &xt_cases[i];
        wf_req_t *r = calloc(1, sizeof(*r));
        wf_loop_t loop;
        xt_mux_t m;
        bool gone = tc->client_close > 0 || tc->resp_abort > 0;

        assert_non_null(r);
        xt_loop_init(&loop);
        xt_req_init(r, &loop, &m, tc);
        xt_m = &m;
        memset(&xt_e, 0, sizeof(xt_e));
        r->on_abort = xt_ep_on_abort;

        assert_int_equal(wf_xchg_has_body(r), tc->body_len > 0);
        wf_xchg_body_read(r, xt_ep_on_body);
        assert_int_equal(m.body_starts, tc->body_len > 0 ? 1 : 0);
        xt_run(&loop, 10000000);

        if (xt_e.bad_byte) {
            fail_msg("%s: body bytes out of order", tc->name);
        }
        if (tc->expect_stops
            && (m.stops + xt_e.stops == 0 || m.resumes + xt_e.resumes == 0)) {
            fail_msg("%s: no back-pressure (stops %u/%u, resumes %u/%u)",
                     tc->name, m.stops, xt_e.stops, m.resumes, xt_e.resumes);
        }
        if (!gone) {
            assert_true(xt_e.eof);
            assert_int_equal(xt_e.got, tc->body_len);
            assert_int_equal(m.responds, 1);
            assert_int_equal(m.status, 200);
            assert_true(xt_e.closed);
            assert_true(m.resp_done);
            assert_int_equal(m.got, tc->resp_len);
            assert_int_equal(xt_e.on_abort_calls, 0);
            /* Never more queued than the bound, in either direction. */
            assert_true(wf_chan_queued(&r->req_body) <= WF_XCHG_CHAN_LIMIT);
        } else {
            /* The endpoint was told once and saw the abort; nothing went on
             * flowing afterwards. */
            assert_int_equal(xt_e.on_abort_calls, 1);
            assert_true(m.aborted);
            assert_true(wf_chan_is_aborted(&r->req_body));
            assert_true(wf_chan_is_aborted(&r->resp_body));
            if (tc->client_close > 0) {
                assert_false(xt_e.eof);
                assert_true(m.fed < tc->body_len);
            } else {
                assert_false(xt_e.closed);
                assert_true(xt_e.saw_abort);
                assert_true(xt_e.sent < tc->resp_len);
            }
        }
        wf_xchg_fini(r);
        assert_int_equal(xt_run(&loop, 100), 0);
        free(r);
    }
}

/* The wrappers endpoints already use go to the mux: errors with Unit's
 * page, jobs, ctl. */
static void
test_exchange_wrappers(void **state)
{
    wf_req_t *r = calloc(1, sizeof(*r));
    wf_loop_t loop;
    xt_mux_t m;

    wf_unused(state);
    assert_non_null(r);
    xt_loop_init(&loop);
    xt_req_init(r, &loop, &m, &xt_cases[0]);
    xt_m = &m;
    wf_req_respond_error(r, 404);
    assert_int_equal(m.responds, 1);
    assert_int_equal(m.status, 404);
    assert_true(r->resp.body.len > 0);
    assert_false(r->resp.stream);
    wf_req_run_job(r, NULL, NULL);
    assert_int_equal(m.jobs, 1);
    assert_int_equal(wf_xchg_ctl(r, MUX_CTL_GET_MAXSTRM, NULL), 7);
    assert_int_equal(wf_xchg_ctl(r, MUX_CTL_REVERSE_CONN, NULL), WF_DECLINED);
    assert_int_equal(wf_xchg_ctl(r, -1, NULL), WF_DECLINED);
    assert_int_equal(wf_xchg_ctl(r, MUX_CTL_NOPS, NULL), WF_DECLINED);
    wf_xchg_fini(r);
    free(r);
}

int
wf_test_exchange(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chan_bounds),
        cmocka_unit_test(test_chan_gather),
        cmocka_unit_test(test_chan_abort_each_state),
        cmocka_unit_test(test_chan_fini_cancels),
        cmocka_unit_test(test_exchange_table),
        cmocka_unit_test(test_exchange_wrappers),
    };

    return cmocka_run_group_tests_name("exchange", tests, NULL, NULL);
}
