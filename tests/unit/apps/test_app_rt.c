/* The app process runtime (apps/app_rt.c) against a scripted router: the
 * test holds the router's end of real SOCK_SEQPACKET socketpairs and
 * speaks the wire format of apps/app_proto.h (the port's framing) by hand,
 * while the runtime's functions are called as a module would call them,
 * on a worker thread where the runtime must block. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apps/app_api.h"
#include "apps/app_main.h"
#include "apps/app_proto.h"
#include "apps/app_rt.h"
#include "core/common.h"
#include "process/port.h"
#include "unit.h"

#define WAIT_MS 10000 /* a generous bound for anything to arrive */

static const wf_app_rt_t *rt;

/* ---- the scripted router ------------------------------------------------ */

typedef struct rmsg {
    uint32_t type;
    uint64_t stream;
    size_t size;
    unsigned char *data; /* malloc'd, NUL-terminated */
    int fd;              /* received fd or -1 */
} rmsg_t;

static void
router_send_frag(int fd, uint32_t type, uint64_t stream, const void *data,
                 size_t len, size_t max)
{
    size_t off = 0;

    do {
        size_t n = wf_min(max, len - off);
        wf_port_hdr_t h = {
            .stream = stream,
            .type = type,
            .size = (uint32_t)n,
            .total = (uint32_t)len,
            .flags = (uint16_t)((off == 0 ? 0 : WF_PORT_HDR_CONT)
                                | (off + n < len ? WF_PORT_HDR_MORE : 0)),
            .version = WF_PORT_VERSION,
        };
        struct iovec iov[2] = {{&h, sizeof(h)}, {(char *)data + off, n}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};

        assert_int_equal(sendmsg(fd, &mh, MSG_NOSIGNAL), sizeof(h) + n);
        off += n;
    } while (off < len);
}

static void
router_send(int fd, uint32_t type, uint64_t stream, const void *data,
            size_t len)
{
    router_send_frag(fd, type, stream, data, len, WF_APP_MAX_SIZE);
}

static void
router_send_u64(int fd, uint32_t type, uint64_t stream, uint64_t v)
{
    router_send(fd, type, stream, &v, sizeof(v));
}

/* True when a packet arrives within ms. */
static bool
router_wait(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, ms) == 1;
}

/* Receives one whole message (reassembled); fails the test on EOF. */
static void
router_recv(int fd, rmsg_t *m)
{
    unsigned char *buf = malloc(WF_PORT_MSG_MAX / 64);
    size_t got = 0;
    bool more = true;

    memset(m, 0, sizeof(*m));
    m->fd = -1;
    while (more) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } cbuf;
        wf_port_hdr_t h;
        struct iovec iov[2] = {{&h, sizeof(h)}, {buf + got, WF_APP_MAX_SIZE}};
        struct msghdr mh = {.msg_iov = iov,
                            .msg_iovlen = 2,
                            .msg_control = cbuf.buf,
                            .msg_controllen = sizeof(cbuf.buf)};
        ssize_t n;

        assert_true(router_wait(fd, WAIT_MS));
        n = recvmsg(fd, &mh, 0);
        assert_true(n >= (ssize_t)sizeof(h));
        assert_int_equal(h.version, WF_PORT_VERSION);
        assert_int_equal(h.size, (size_t)n - sizeof(h));
        if (got == 0) {
            m->type = h.type;
            m->stream = h.stream;
        }
        if (mh.msg_controllen > 0) {
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

            memcpy(&m->fd, CMSG_DATA(cm), sizeof(int));
            assert_int_equal(h.nfds, 1);
        }
        got += h.size;
        more = (h.flags & WF_PORT_HDR_MORE) != 0;
        if (!more) {
            assert_int_equal(got, h.total);
        }
    }
    buf[got] = '\0';
    m->size = got;
    m->data = buf;
}

static void
rmsg_free(rmsg_t *m)
{
    free(m->data);
    if (m->fd != -1) {
        close(m->fd);
    }
}

/* Expects a message of type on stream; returns it (free with rmsg_free). */
static void
router_expect(int fd, uint32_t type, uint64_t stream, rmsg_t *m)
{
    router_recv(fd, m);
    assert_int_equal(m->type, type);
    assert_int_equal(m->stream, stream);
}

static pid_t ready_pid; /* the pid READY must carry; 0: ours */

#define RT_PULL (1 + WF_APP_RT_QUEUED) /* a pull worker's concurrency */

static void
router_expect_ready(int fd, unsigned concurrency)
{
    wf_app_ready_t rd;
    rmsg_t m;

    router_expect(fd, WF_APP_MSG_READY, 0, &m);
    assert_int_equal(m.size, sizeof(rd));
    memcpy(&rd, m.data, sizeof(rd));
    assert_int_equal(rd.concurrency, concurrency);
    assert_int_equal(rd.queued, concurrency == RT_PULL ? WF_APP_RT_QUEUED : 0);
    assert_int_equal(rd.pid, ready_pid != 0 ? ready_pid : getpid());
    rmsg_free(&m);
}

static void
router_expect_end(int fd, uint64_t stream, uint32_t code)
{
    uint32_t v;
    rmsg_t m;

    router_expect(fd, WF_APP_MSG_RESP_END, stream, &m);
    assert_int_equal(m.size, sizeof(v));
    memcpy(&v, m.data, sizeof(v));
    assert_int_equal(v, code);
    rmsg_free(&m);
}

static unsigned char *
put_str(unsigned char *p, const char *s, size_t len)
{
    uint32_t l = (uint32_t)len;
    size_t padded = (len + 1 + 3) & ~(size_t)3;

    memcpy(p, &l, 4);
    memcpy(p + 4, s, len);
    memset(p + 4 + len, 0, padded - len);
    return p + 4 + padded;
}

/* Encodes a REQ_HEAD: GET path, nfields fields "x-N: v-N" (name, value
 * from names/values when given), body bytes. */
static size_t
head_encode(unsigned char *buf, const char *method, const char *path,
            unsigned nfields, const char *const *names,
            const char *const *values, const void *body, size_t blen,
            uint32_t flags, uint64_t cl)
{
    const char *strs[WF_APP_REQ_NSTR] = {
        [WF_APP_STR_METHOD] = method,      [WF_APP_STR_TARGET] = path,
        [WF_APP_STR_PATH] = path,          [WF_APP_STR_QUERY] = "",
        [WF_APP_STR_VERSION] = "HTTP/1.1", [WF_APP_STR_HOST] = "h:80",
        [WF_APP_STR_REMOTE] = "127.0.0.1", [WF_APP_STR_LOCAL] = "127.0.0.1",
        [WF_APP_STR_SERVER] = "h",
    };
    wf_app_req_hdr_t hdr = {.flags = flags,
                            .target = 0,
                            .nfields = (uint16_t)nfields,
                            .content_length = cl,
                            .body_size = (uint32_t)blen,
                            .remote_port = 4242,
                            .local_port = 80};
    unsigned char *p = buf + sizeof(hdr);

    memcpy(buf, &hdr, sizeof(hdr));
    for (unsigned i = 0; i < WF_APP_REQ_NSTR; i++) {
        p = put_str(p, strs[i], strlen(strs[i]));
    }
    for (unsigned i = 0; i < nfields; i++) {
        char n[32], v[32];

        snprintf(n, sizeof(n), "x-%u", i);
        snprintf(v, sizeof(v), "v-%u", i);
        p = names != NULL ? put_str(p, names[i], strlen(names[i]))
                          : put_str(p, n, strlen(n));
        p = values != NULL ? put_str(p, values[i], strlen(values[i]))
                           : put_str(p, v, strlen(v));
    }
    if (blen > 0) {
        memcpy(p, body, blen);
    }
    return (size_t)(p - buf) + blen;
}

static void
router_send_get(int fd, uint64_t stream)
{
    unsigned char buf[1024];
    size_t n = head_encode(buf, "GET", "/", 0, NULL, NULL, NULL, 0,
                           WF_APP_REQ_BODY_END, WF_APP_LEN_NONE);

    router_send(fd, WF_APP_MSG_REQ_HEAD, stream, buf, n);
}

/* ---- fixtures ------------------------------------------------------------ */

typedef struct fix {
    wf_app_t *app;
    int router[WF_APP_MAX_FDS]; /* the router's ends */
    unsigned n;
    wf_app_conf_t conf;
} fix_t;

static void
fix_open(fix_t *f, unsigned slots, unsigned threads)
{
    int app_fds[WF_APP_MAX_FDS];

    memset(f, 0, sizeof(*f));
    f->n = slots * threads;
    f->conf = (wf_app_conf_t){.name = "t", .json = "{}", .threads = slots};
    for (unsigned i = 0; i < f->n; i++) {
        int sv[2];

        assert_int_equal(
            socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
                       0, sv),
            0);
        f->router[i] = sv[0];
        app_fds[i] = sv[1];
        /* The router's end blocks in these tests: they are scripts. */
        fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) & ~O_NONBLOCK);
    }
    f->app = wf_app_rt_create(&f->conf, slots, threads, app_fds);
    assert_non_null(f->app);
}

static void
fix_close(fix_t *f)
{
    wf_app_rt_destroy(f->app);
    for (unsigned i = 0; i < f->n; i++) {
        if (f->router[i] != -1) {
            close(f->router[i]);
        }
    }
}

static bool
str_is(wf_app_str_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.data, want, s.len) == 0
           && s.data[s.len] == '\0';
}

/* ---- tests -----------------------------------------------------------------
 */

static void
test_one_request(void **state)
{
    static const char *const names[] = {"Host", "Accept"};
    static const char *const values[] = {"h:80", "*/*"};
    wf_app_field_t resp[] = {{{"Content-Type", 12}, {"text/plain", 10}}};
    unsigned char buf[1024];
    wf_app_resp_hdr_t rh;
    const wf_app_head_t *hd;
    wf_app_worker_t *w;
    wf_app_req_t *req;
    uint32_t len;
    rmsg_t m;
    size_t n;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 1);
    w = rt->worker(f.app, 0);
    assert_non_null(w);
    assert_null(rt->worker(f.app, 1));
    n = head_encode(buf, "GET", "/a%20b", 2, names, values, NULL, 0,
                    WF_APP_REQ_BODY_END, WF_APP_LEN_NONE);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 7, buf, n);

    assert_int_equal(rt->next(w, &req, WAIT_MS), WF_APP_OK);
    router_expect_ready(f.router[0], RT_PULL);
    hd = rt->head(req);
    assert_true(str_is(hd->method, "GET"));
    assert_true(str_is(hd->target, "/a%20b"));
    assert_true(str_is(hd->version, "HTTP/1.1"));
    assert_true(str_is(hd->remote, "127.0.0.1"));
    assert_true(str_is(hd->server, "h"));
    assert_int_equal(hd->remote_port, 4242);
    assert_int_equal(hd->content_length, WF_APP_LEN_NONE);
    assert_int_equal(hd->nfields, 2);
    assert_true(str_is(hd->fields[1].name, "Accept"));
    assert_true(str_is(hd->fields[1].value, "*/*"));
    assert_int_equal(rt->read(req, buf, sizeof(buf)), 0);

    assert_int_equal(rt->respond(req, 200, resp, 1, "hello", 5, 1), WF_APP_OK);
    /* The complete response waits for end(): one message that says DONE
     * (no RESP_END follows). */
    assert_false(router_wait(f.router[0], 50));
    rt->end(req, 1);
    router_expect(f.router[0], WF_APP_MSG_RESP_HEAD, 7, &m);
    memcpy(&rh, m.data, sizeof(rh));
    assert_int_equal(rh.status, 200);
    assert_int_equal(rh.nfields, 1);
    assert_int_equal(rh.flags, WF_APP_RESP_END | WF_APP_RESP_DONE);
    assert_int_equal(rh.body_size, 5);
    memcpy(&len, m.data + sizeof(rh), 4);
    assert_int_equal(len, 12);
    assert_string_equal((char *)m.data + sizeof(rh) + 4, "Content-Type");
    assert_memory_equal(m.data + m.size - 5, "hello", 5);
    rmsg_free(&m);
    assert_false(router_wait(f.router[0], 50));
    fix_close(&f);
}

/* A pull worker takes requests queued behind the one it serves (READY
 * says how many) and hands them out in order, one per next(), each after
 * the previous one ended. */
static void
test_pull_queued_in_order(void **state)
{
    unsigned char buf[1024];
    wf_app_worker_t *w;
    wf_app_req_t *req;
    rmsg_t m;
    size_t n;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 1);
    w = rt->worker(f.app, 0);
    n = head_encode(buf, "GET", "/", 0, NULL, NULL, NULL, 0,
                    WF_APP_REQ_BODY_END, WF_APP_LEN_NONE);
    for (uint64_t st = 1; st <= 3; st++) {
        router_send(f.router[0], WF_APP_MSG_REQ_HEAD, st, buf, n);
    }
    for (uint64_t st = 1; st <= 3; st++) {
        assert_int_equal(rt->next(w, &req, WAIT_MS), WF_APP_OK);
        if (st == 1) {
            router_expect_ready(f.router[0], RT_PULL);
        }
        assert_int_equal(rt->respond(req, 200, NULL, 0, "ok", 2, 1), WF_APP_OK);
        rt->end(req, 1);
        router_expect(f.router[0], WF_APP_MSG_RESP_HEAD, st, &m);
        rmsg_free(&m);
    }
    assert_int_equal(rt->next(w, &req, 50), WF_APP_AGAIN);
    fix_close(&f);
}

/* Requests that one recvmmsg() took into a socket's ring while a
 * request read its body are served from the ring, though epoll sees
 * nothing on the socket any more (two sockets: the event that brought
 * them was used up by the first request). */
static void
test_pull_ring_served_without_poll(void **state)
{
    unsigned char buf[1024];
    char body[4];
    wf_app_worker_t *w;
    wf_app_req_t *req;
    rmsg_t m;
    size_t n;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 2);
    w = rt->worker(f.app, 0);
    n = head_encode(buf, "POST", "/", 0, NULL, NULL, NULL, 0, 0, 2);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 1, buf, n);
    router_send(f.router[0], WF_APP_MSG_REQ_BODY, 1, "ab", 2);
    router_send(f.router[0], WF_APP_MSG_REQ_END, 1, NULL, 0);
    n = head_encode(buf, "GET", "/", 0, NULL, NULL, NULL, 0,
                    WF_APP_REQ_BODY_END, WF_APP_LEN_NONE);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 2, buf, n);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 3, buf, n);
    assert_int_equal(rt->next(w, &req, WAIT_MS), WF_APP_OK);
    router_expect_ready(f.router[0], RT_PULL);
    router_expect_ready(f.router[1], RT_PULL);
    assert_int_equal(rt->read(req, body, sizeof(body)), 2);
    assert_memory_equal(body, "ab", 2);
    assert_int_equal(rt->read(req, body, sizeof(body)), 0);
    assert_int_equal(rt->respond(req, 200, NULL, 0, "ok", 2, 1), WF_APP_OK);
    rt->end(req, 1);
    router_expect(f.router[0], WF_APP_MSG_RESP_HEAD, 1, &m);
    rmsg_free(&m);
    for (uint64_t st = 2; st <= 3; st++) {
        assert_int_equal(rt->next(w, &req, WAIT_MS), WF_APP_OK);
        assert_int_equal(rt->respond(req, 200, NULL, 0, "ok", 2, 1), WF_APP_OK);
        rt->end(req, 1);
        router_expect(f.router[0], WF_APP_MSG_RESP_HEAD, st, &m);
        rmsg_free(&m);
    }
    assert_int_equal(rt->next(w, &req, 50), WF_APP_AGAIN);
    fix_close(&f);
}

/* A complete head that went out before end() (a blocking read flushed
 * it) cannot say DONE any more: end() sends RESP_END; and end() with a
 * failure never says DONE. */
static void
test_held_head_flushed(void **state)
{
    unsigned char buf[1024];
    wf_app_resp_hdr_t rh;
    wf_app_worker_t *w;
    wf_app_req_t *req;
    rmsg_t m;
    size_t n;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 1);
    w = rt->worker(f.app, 0);
    n = head_encode(buf, "POST", "/", 0, NULL, NULL, NULL, 0, 0, 2);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 8, buf, n);
    assert_int_equal(rt->next(w, &req, WAIT_MS), WF_APP_OK);
    router_expect_ready(f.router[0], RT_PULL);
    assert_int_equal(rt->respond(req, 200, NULL, 0, "ok", 2, 1), WF_APP_OK);
    router_send(f.router[0], WF_APP_MSG_REQ_BODY, 8, "xy", 2);
    router_send(f.router[0], WF_APP_MSG_REQ_END, 8, NULL, 0);
    assert_int_equal(rt->read(req, buf, sizeof(buf)), 2);
    router_expect(f.router[0], WF_APP_MSG_RESP_HEAD, 8, &m);
    memcpy(&rh, m.data, sizeof(rh));
    assert_int_equal(rh.flags, WF_APP_RESP_END);
    rmsg_free(&m);
    rt->end(req, 1);
    router_expect_end(f.router[0], 8, 0);

    n = head_encode(buf, "GET", "/", 0, NULL, NULL, NULL, 0,
                    WF_APP_REQ_BODY_END, WF_APP_LEN_NONE);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 9, buf, n);
    assert_int_equal(rt->next(w, &req, WAIT_MS), WF_APP_OK);
    assert_int_equal(rt->respond(req, 200, NULL, 0, "ok", 2, 1), WF_APP_OK);
    rt->end(req, 0);
    router_expect(f.router[0], WF_APP_MSG_RESP_HEAD, 9, &m);
    memcpy(&rh, m.data, sizeof(rh));
    assert_int_equal(rh.flags, WF_APP_RESP_END);
    rmsg_free(&m);
    router_expect_end(f.router[0], 9, 1);
    fix_close(&f);
}

/* A head of several fragments, many fields, and part of the body in it. */
static void
test_fragmented_head(void **state)
{
    unsigned char *buf = malloc(256 * 1024);
    unsigned char body[100];
    const wf_app_head_t *hd;
    wf_app_worker_t *w;
    wf_app_req_t *req;
    size_t n;
    fix_t f;

    wf_unused(state);
    memset(body, 'b', sizeof(body));
    fix_open(&f, 1, 1);
    w = rt->worker(f.app, 0);
    n = head_encode(buf, "POST", "/up", WF_APP_MAX_FIELDS, NULL, NULL, body,
                    sizeof(body), WF_APP_REQ_BODY_END | WF_APP_REQ_TLS, 100);
    router_send_frag(f.router[0], WF_APP_MSG_REQ_HEAD, 9, buf, n, 1024);
    assert_true(n > 3 * 1024);

    assert_int_equal(rt->next(w, &req, WAIT_MS), WF_APP_OK);
    hd = rt->head(req);
    assert_true(str_is(hd->method, "POST"));
    assert_int_equal(hd->tls, 1);
    assert_int_equal(hd->nfields, WF_APP_MAX_FIELDS);
    assert_true(str_is(hd->fields[1023].name, "x-1023"));
    assert_true(str_is(hd->fields[1023].value, "v-1023"));
    assert_int_equal(rt->read(req, buf, 60), 60);
    assert_int_equal(rt->read(req, buf + 60, 100), 40);
    assert_memory_equal(buf, body, 100);
    assert_int_equal(rt->read(req, buf, 100), 0);
    rt->end(req, 0);
    router_expect_ready(f.router[0], RT_PULL);
    router_expect_end(f.router[0], 9, 1);
    fix_close(&f);
    free(buf);
}

/* ---- a worker thread for the blocking tests --------------------------------
 */

typedef struct job {
    wf_app_worker_t *w;
    size_t body;     /* bytes read by the worker */
    uint64_t sum;    /* their checksum */
    ssize_t last_rc; /* the read or write that ended the loop */
    size_t write;    /* response bytes to write() */
    int next_rc;
} job_t;

static void *
job_read_body(void *arg)
{
    job_t *j = arg;
    unsigned char buf[7000]; /* not a divisor of anything in the test */
    wf_app_req_t *req;
    ssize_t n;

    j->next_rc = rt->next(j->w, &req, WAIT_MS);
    if (j->next_rc != WF_APP_OK) {
        return NULL;
    }
    while ((n = rt->read(req, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            j->sum = j->sum * 31 + buf[i];
        }
        j->body += (size_t)n;
    }
    j->last_rc = n;
    rt->end(req, n == 0);
    return NULL;
}

static uint64_t
pattern_sum(size_t n, size_t off, uint64_t sum)
{
    for (size_t i = 0; i < n; i++) {
        sum = sum * 31 + (unsigned char)((off + i) * 7);
    }
    return sum;
}

static void
pattern_fill(unsigned char *p, size_t n, size_t off)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)((off + i) * 7);
    }
}

/* The router sends a 1 MiB body in pieces, never more than the window
 * unacked; the app acknowledges every half window it consumed. */
static void
test_body_acks(void **state)
{
    const size_t total = 1024 * 1024, piece = WF_APP_MAX_SIZE;
    unsigned char *buf = malloc(piece + 1024);
    uint64_t unacked, sum = 0;
    size_t sent = 0, n;
    unsigned nacks = 0;
    pthread_t th;
    job_t j = {0};
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 1);
    j.w = rt->worker(f.app, 0);
    {
        unsigned char first[1000];

        pattern_fill(first, sizeof(first), 0);
        n = head_encode(buf, "POST", "/", 0, NULL, NULL, first, sizeof(first),
                        0, total);
    }
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 3, buf, n);
    sum = pattern_sum(1000, 0, 0);
    sent = unacked = 1000;
    pthread_create(&th, NULL, job_read_body, &j);
    router_expect_ready(f.router[0], RT_PULL);
    while (sent < total) {
        size_t k = wf_min(piece, total - sent);
        rmsg_t m;
        uint64_t ack;

        if (unacked + k <= WF_APP_WINDOW) {
            pattern_fill(buf, k, sent);
            sum = pattern_sum(k, sent, sum);
            router_send(f.router[0], WF_APP_MSG_REQ_BODY, 3, buf, k);
            sent += k;
            unacked += k;
            continue;
        }
        router_expect(f.router[0], WF_APP_MSG_REQ_ACK, 3, &m);
        assert_int_equal(m.size, sizeof(ack));
        memcpy(&ack, m.data, sizeof(ack));
        assert_true(ack >= WF_APP_WINDOW / 2 && ack <= unacked);
        unacked -= ack;
        nacks++;
        rmsg_free(&m);
    }
    router_send(f.router[0], WF_APP_MSG_REQ_END, 3, NULL, 0);
    pthread_join(th, NULL);
    assert_int_equal(j.next_rc, WF_APP_OK);
    assert_int_equal(j.last_rc, 0);
    assert_int_equal(j.body, total);
    assert_true(j.sum == sum);
    assert_true(nacks >= 2);
    /* Acks of the tail may precede RESP_END; nothing else may. */
    for (;;) {
        rmsg_t m;

        router_recv(f.router[0], &m);
        if (m.type == WF_APP_MSG_RESP_END) {
            rmsg_free(&m);
            break;
        }
        assert_int_equal(m.type, WF_APP_MSG_REQ_ACK);
        rmsg_free(&m);
    }
    fix_close(&f);
    free(buf);
}

static void *
job_write(void *arg)
{
    job_t *j = arg;
    unsigned char *buf = malloc(j->write);
    wf_app_req_t *req;

    j->next_rc = rt->next(j->w, &req, WAIT_MS);
    if (j->next_rc != WF_APP_OK) {
        free(buf);
        return NULL;
    }
    pattern_fill(buf, j->write, 0);
    /* last=1 with more than a window: the head takes a window's worth and
     * the rest blocks on acks. */
    j->last_rc = rt->respond(req, 200, NULL, 0, buf, j->write, 1);
    rt->end(req, j->last_rc == WF_APP_OK);
    free(buf);
    return NULL;
}

/* A 1 MiB response: the app stops at a window unacked and goes on only
 * when the router acknowledges. */
static void
test_response_window(void **state)
{
    const size_t total = 1024 * 1024;
    size_t got = 0, unacked = 0;
    uint64_t sum = 0, want;
    pthread_t th;
    job_t j = {0};
    bool saw_stall = false;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 1);
    j.w = rt->worker(f.app, 0);
    j.write = total;
    router_send_get(f.router[0], 5);
    pthread_create(&th, NULL, job_write, &j);
    router_expect_ready(f.router[0], RT_PULL);
    while (got < total) {
        const unsigned char *p;
        rmsg_t m;
        size_t k;

        if (unacked == WF_APP_WINDOW) {
            /* The window is full: nothing more until an ack. */
            assert_false(router_wait(f.router[0], 100));
            saw_stall = true;
            router_send_u64(f.router[0], WF_APP_MSG_RESP_ACK, 5, unacked);
            unacked = 0;
        }
        router_recv(f.router[0], &m);
        assert_int_equal(m.stream, 5);
        if (m.type == WF_APP_MSG_RESP_HEAD) {
            wf_app_resp_hdr_t rh;

            memcpy(&rh, m.data, sizeof(rh));
            assert_int_equal(rh.flags, 0); /* more than fits: streamed */
            p = m.data + sizeof(rh);
            k = rh.body_size;
            assert_int_equal(m.size, sizeof(rh) + k);
        } else {
            assert_int_equal(m.type, WF_APP_MSG_RESP_BODY);
            assert_true(m.size > 0 && m.size <= WF_APP_MAX_SIZE);
            p = m.data;
            k = m.size;
        }
        for (size_t i = 0; i < k; i++) {
            sum = sum * 31 + p[i];
        }
        got += k;
        unacked += k;
        assert_true(unacked <= WF_APP_WINDOW);
        rmsg_free(&m);
    }
    router_expect_end(f.router[0], 5, 0);
    pthread_join(th, NULL);
    want = pattern_sum(total, 0, 0);
    assert_true(sum == want);
    assert_true(saw_stall);
    assert_int_equal(j.last_rc, WF_APP_OK);
    fix_close(&f);
}

/* REQ_ABORT while the module waits for body: read() fails, end() still
 * sends RESP_END, cut short. */
static void
test_abort_mid_body(void **state)
{
    unsigned char buf[2048];
    pthread_t th;
    job_t j = {0};
    size_t n;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 1);
    j.w = rt->worker(f.app, 0);
    n = head_encode(buf, "POST", "/", 0, NULL, NULL, "abc", 3, 0, 100);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 11, buf, n);
    pthread_create(&th, NULL, job_read_body, &j);
    router_expect_ready(f.router[0], RT_PULL);
    router_send(f.router[0], WF_APP_MSG_REQ_BODY, 11, "defg", 4);
    usleep(20 * 1000); /* let it block in read() (either way is fine) */
    router_send(f.router[0], WF_APP_MSG_REQ_ABORT, 11, NULL, 0);
    pthread_join(th, NULL);
    assert_int_equal(j.last_rc, WF_APP_ERROR);
    assert_true(j.body <= 7);
    router_expect_end(f.router[0], 11, 1);
    /* A late message about the ended stream is dropped, not garbage. */
    router_send_u64(f.router[0], WF_APP_MSG_RESP_ACK, 11, 5);
    router_send_get(f.router[0], 12);
    {
        wf_app_req_t *req;

        assert_int_equal(rt->next(j.w, &req, WAIT_MS), WF_APP_OK);
        rt->end(req, 0);
        router_expect_end(f.router[0], 12, 1);
    }
    fix_close(&f);
}

/* ---- dispatch mode
 * ----------------------------------------------------------- */

typedef struct evlog {
    wf_app_req_t *reqs[4];
    unsigned nreqs;
    char body[4][64];
    size_t blen[4];
    bool ended[4];
    unsigned nreadable, naborted, nwritable;
} evlog_t;

static int
ev_index(evlog_t *e, wf_app_req_t *r)
{
    for (unsigned i = 0; i < e->nreqs; i++) {
        if (e->reqs[i] == r) {
            return (int)i;
        }
    }
    fail();
    return -1;
}

static void
ev_on_request(void *ctx, wf_app_req_t *r)
{
    evlog_t *e = ctx;

    e->reqs[e->nreqs++] = r;
}

static void
ev_on_readable(void *ctx, wf_app_req_t *r)
{
    evlog_t *e = ctx;
    int i = ev_index(e, r);
    ssize_t n;

    e->nreadable++;
    while ((n = rt->read_nb(r, e->body[i] + e->blen[i],
                            sizeof(e->body[i]) - 1 - e->blen[i]))
           > 0) {
        e->blen[i] += (size_t)n;
    }
    if (n == 0 && !e->ended[i]) {
        char out[80];
        int len =
            snprintf(out, sizeof(out), "got %.*s", (int)e->blen[i], e->body[i]);

        assert_int_equal(rt->respond(r, 200, NULL, 0, out, (size_t)len, 1),
                         WF_APP_OK);
        e->ended[i] = true;
        rt->end(r, 1);
    }
}

static void
ev_on_writable(void *ctx, wf_app_req_t *r)
{
    wf_unused(r);
    ((evlog_t *)ctx)->nwritable++;
}

static void
ev_on_abort(void *ctx, wf_app_req_t *r)
{
    evlog_t *e = ctx;
    int i = ev_index(e, r);

    e->naborted++;
    e->ended[i] = true;
    rt->end(r, 0);
}

static const wf_app_events_t ev_table = {ev_on_request, ev_on_readable,
                                         ev_on_writable, ev_on_abort};

static void
dispatch_until(wf_app_worker_t *w, evlog_t *e, bool (*done)(evlog_t *e))
{
    for (int i = 0; i < 1000 && !done(e); i++) {
        struct pollfd p = {.fd = rt->worker_fd(w), .events = POLLIN};

        poll(&p, 1, 10);
        assert_int_equal(rt->dispatch(w, &ev_table, e), WF_APP_OK);
    }
    assert_true(done(e));
}

static bool
two_requests(evlog_t *e)
{
    return e->nreqs == 2;
}

static bool
two_ended(evlog_t *e)
{
    return e->ended[0] && e->ended[1];
}

/* Two streams at once on one socket, bodies interleaved; each answer goes
 * to its own stream. */
static void
test_dispatch_two_streams(void **state)
{
    unsigned char buf[1024];
    wf_app_worker_t *w;
    evlog_t e = {0};
    bool seen[2] = {false, false};
    size_t n;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 2);
    w = rt->worker(f.app, 0);
    rt->set_concurrency(w, 2);
    assert_int_equal(rt->dispatch(w, &ev_table, &e), WF_APP_OK);
    router_expect_ready(f.router[0], 2);
    router_expect_ready(f.router[1], 2);
    n = head_encode(buf, "POST", "/", 0, NULL, NULL, "A1", 2, 0, 4);
    router_send(f.router[1], WF_APP_MSG_REQ_HEAD, 21, buf, n);
    n = head_encode(buf, "POST", "/", 0, NULL, NULL, "B1", 2, 0, 4);
    router_send(f.router[1], WF_APP_MSG_REQ_HEAD, 22, buf, n);
    dispatch_until(w, &e, two_requests);
    router_send(f.router[1], WF_APP_MSG_REQ_BODY, 22, "B2", 2);
    router_send(f.router[1], WF_APP_MSG_REQ_BODY, 21, "A2", 2);
    router_send(f.router[1], WF_APP_MSG_REQ_END, 22, NULL, 0);
    router_send(f.router[1], WF_APP_MSG_REQ_END, 21, NULL, 0);
    dispatch_until(w, &e, two_ended);
    for (int i = 0; i < 2; i++) {
        rmsg_t m;
        wf_app_resp_hdr_t rh;
        int k;

        router_recv(f.router[1], &m);
        assert_int_equal(m.type, WF_APP_MSG_RESP_HEAD);
        k = m.stream == 21 ? 0 : 1;
        assert_true(m.stream == 21 || m.stream == 22);
        memcpy(&rh, m.data, sizeof(rh));
        assert_int_equal(rh.body_size, 8);
        assert_memory_equal(m.data + sizeof(rh),
                            k == 0 ? "got A1A2" : "got B1B2", 8);
        assert_int_equal(rh.flags, WF_APP_RESP_END | WF_APP_RESP_DONE);
        seen[k] = true;
        rmsg_free(&m);
    }
    assert_true(seen[0] && seen[1]);
    /* EOF on every socket: the worker is done. */
    close(f.router[0]);
    close(f.router[1]);
    f.router[0] = f.router[1] = -1;
    assert_int_equal(rt->dispatch(w, &ev_table, &e), WF_APP_DONE);
    fix_close(&f);
}

/* An event module that answers in on_request: the answer is held until
 * dispatch() returns, so that the answers of one dispatch() leave in one
 * batch (ctx: the router's fd, checked for nothing arrived yet). */
static int batch_fd;
static unsigned batch_answered;

static void
ev_answer_at_once(void *ctx, wf_app_req_t *r)
{
    wf_unused(ctx);
    assert_int_equal(rt->respond(r, 200, NULL, 0, "hi", 2, 1), WF_APP_OK);
    rt->end(r, 1);
    batch_answered++;
    assert_false(router_wait(batch_fd, 0)); /* not sent yet */
}

static const wf_app_events_t ev_batch = {ev_answer_at_once, ev_on_readable,
                                         ev_on_writable, ev_on_abort};

static void
test_dispatch_batches_answers(void **state)
{
    wf_app_worker_t *w;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 1);
    w = rt->worker(f.app, 0);
    rt->set_concurrency(w, 8);
    assert_int_equal(rt->dispatch(w, &ev_batch, NULL), WF_APP_OK);
    router_expect_ready(f.router[0], 8);
    batch_fd = f.router[0];
    batch_answered = 0;
    for (uint64_t i = 0; i < 5; i++) {
        router_send_get(f.router[0], 40 + i);
    }
    for (int i = 0; i < 1000 && batch_answered < 5; i++) {
        struct pollfd p = {.fd = rt->worker_fd(w), .events = POLLIN};

        poll(&p, 1, 10);
        assert_int_equal(rt->dispatch(w, &ev_batch, NULL), WF_APP_OK);
    }
    assert_int_equal(batch_answered, 5);
    for (uint64_t i = 0; i < 5; i++) {
        wf_app_resp_hdr_t rh;
        rmsg_t m;

        router_expect(f.router[0], WF_APP_MSG_RESP_HEAD, 40 + i, &m);
        memcpy(&rh, m.data, sizeof(rh));
        assert_int_equal(rh.flags, WF_APP_RESP_END | WF_APP_RESP_DONE);
        assert_memory_equal(m.data + sizeof(rh), "hi", 2);
        rmsg_free(&m);
    }
    fix_close(&f);
}

static bool
one_aborted(evlog_t *e)
{
    return e->naborted == 1;
}

/* In dispatch mode an abort reaches on_abort; the router's EOF on a
 * socket with a request in flight aborts it too. */
static void
test_dispatch_abort(void **state)
{
    unsigned char buf[1024];
    wf_app_worker_t *w;
    evlog_t e = {0};
    size_t n;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 1);
    w = rt->worker(f.app, 0);
    rt->set_concurrency(w, 4);
    n = head_encode(buf, "POST", "/", 0, NULL, NULL, NULL, 0, 0, 10);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 31, buf, n);
    router_send(f.router[0], WF_APP_MSG_REQ_ABORT, 31, NULL, 0);
    dispatch_until(w, &e, one_aborted);
    router_expect_ready(f.router[0], 4);
    router_expect_end(f.router[0], 31, 1);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 32, buf, n);
    dispatch_until(w, &e, two_requests);
    close(f.router[0]);
    f.router[0] = -1;
    for (int i = 0; i < 100 && e.naborted < 2; i++) {
        rt->dispatch(w, &ev_table, &e);
    }
    assert_int_equal(e.naborted, 2);
    assert_int_equal(rt->dispatch(w, &ev_table, &e), WF_APP_DONE);
    fix_close(&f);
}

static void
ev_ignore(void *ctx, wf_app_req_t *r)
{
    wf_unused(ctx);
    wf_unused(r);
}

static const wf_app_events_t ev_record = {ev_on_request, ev_ignore, ev_ignore,
                                          ev_ignore};

/* An event module that reads body from a task, outside dispatch(): the
 * ack must reach the router without another dispatch() (the router sends
 * nothing more until it comes, so nothing would call dispatch()). */
static void
test_dispatch_ack_outside(void **state)
{
    unsigned char *buf = malloc(WF_APP_WINDOW);
    wf_app_worker_t *w;
    evlog_t e = {0};
    size_t n, got = 0;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 1, 1);
    w = rt->worker(f.app, 0);
    rt->set_concurrency(w, 2);
    n = head_encode(buf, "POST", "/", 0, NULL, NULL, NULL, 0, 0,
                    2 * WF_APP_WINDOW);
    router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 41, buf, n);
    for (int i = 0; i < 4; i++) {
        memset(buf, i, WF_APP_MAX_SIZE);
        router_send(f.router[0], WF_APP_MSG_REQ_BODY, 41, buf, WF_APP_MAX_SIZE);
    }
    for (int i = 0; i < 100 && e.nreqs == 0; i++) {
        struct pollfd p = {.fd = rt->worker_fd(w), .events = POLLIN};

        poll(&p, 1, 10);
        rt->dispatch(w, &ev_record, &e);
    }
    assert_int_equal(e.nreqs, 1);
    rt->dispatch(w, &ev_record, &e); /* the rest of the body, if any */
    router_expect_ready(f.router[0], 2);
    while (got < WF_APP_WINDOW) {
        ssize_t k = rt->read_nb(e.reqs[0], buf, WF_APP_WINDOW - got);

        if (k == WF_APP_AGAIN) {
            rt->dispatch(w, &ev_record, &e);
            continue;
        }
        assert_true(k > 0);
        got += (size_t)k;
    }
    /* No dispatch() after the last read: the ack is out already. */
    assert_true(router_wait(f.router[0], 2000));
    {
        rmsg_t m;
        uint64_t ack;

        router_expect(f.router[0], WF_APP_MSG_REQ_ACK, 41, &m);
        memcpy(&ack, m.data, sizeof(ack));
        assert_true(ack >= WF_APP_WINDOW / 2);
        rmsg_free(&m);
    }
    rt->end(e.reqs[0], 0);
    for (;;) {
        rmsg_t m;

        router_recv(f.router[0], &m);
        assert_int_equal(m.stream, 41);
        if (m.type == WF_APP_MSG_RESP_END) {
            rmsg_free(&m);
            break;
        }
        assert_int_equal(m.type, WF_APP_MSG_REQ_ACK); /* a later one */
        rmsg_free(&m);
    }
    fix_close(&f);
    free(buf);
}

/* ---- garbage and the end of a worker
 * -------------------------------------------- */

typedef struct garbage_case {
    const char *name;
    wf_port_hdr_t hdr; /* size is set from len */
    const char *payload;
    size_t len;
    bool with_fd;
    bool after_get; /* sent on stream 1 after a valid GET on stream 1 */
} garbage_case_t;

#define HDR(t, s, f)                                                         \
    {                                                                        \
        .stream = (s), .type = (t), .flags = (f), .version = WF_PORT_VERSION \
    }

static const garbage_case_t garbage_cases[] = {
    {"bad version",
     {.type = WF_APP_MSG_REQ_HEAD, .stream = 1, .version = 9},
     "",
     0,
     false,
     false},
    {"unknown flag", HDR(WF_APP_MSG_REQ_HEAD, 1, 0x80), "", 0, false, false},
    {"continuation first", HDR(WF_APP_MSG_REQ_BODY, 1, WF_PORT_HDR_CONT), "x",
     1, false, false},
    {"short non-final", HDR(WF_APP_MSG_REQ_HEAD, 1, WF_PORT_HDR_MORE), "x", 1,
     false, false},
    {"unknown type", HDR(77, 0, 0), "", 0, false, false},
    {"app's own type", HDR(WF_APP_MSG_RESP_HEAD, 1, 0), "", 0, false, false},
    {"fd attached", HDR(WF_APP_MSG_REQ_END, 1, 0), "", 0, true, false},
    {"short head", HDR(WF_APP_MSG_REQ_HEAD, 1, 0), "abc", 3, false, false},
    {"head on stream 0", HDR(WF_APP_MSG_REQ_HEAD, 0, 0), "", 0, false, false},
    {"truncated string", HDR(WF_APP_MSG_REQ_HEAD, 1, 0),
     "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
     "\x64\0\0\0abcd",
     32, false, false},
    {"second head, concurrency 1", HDR(WF_APP_MSG_REQ_HEAD, 2, 0), "", 0, false,
     true},
    {"empty body piece", HDR(WF_APP_MSG_REQ_BODY, 1, 0), "", 0, false, true},
    {"end with a payload", HDR(WF_APP_MSG_REQ_END, 1, 0), "x", 1, false, true},
    {"ack of nothing sent", HDR(WF_APP_MSG_RESP_ACK, 1, 0),
     "\x01\0\0\0\0\0\0\0", 8, false, true},
    {"short ack", HDR(WF_APP_MSG_RESP_ACK, 1, 0), "\x01", 1, false, true},
};

static void
garbage_send(int fd, const garbage_case_t *c)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } cbuf;
    wf_port_hdr_t h = c->hdr;
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)c->payload, c->len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

    h.size = (uint32_t)c->len;
    h.total = h.size;
    if (c->with_fd) {
        struct cmsghdr *cm;

        mh.msg_control = cbuf.buf;
        mh.msg_controllen = sizeof(cbuf.buf);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &devnull, sizeof(int));
        h.nfds = 1;
    }
    assert_true(sendmsg(fd, &mh, MSG_NOSIGNAL) > 0);
    close(devnull);
}

/* Each case: the worker logs, closes its sockets (the router sees EOF) and
 * next() says DONE. */
static void
test_garbage(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(garbage_cases); i++) {
        const garbage_case_t *c = &garbage_cases[i];
        wf_app_worker_t *w;
        wf_app_req_t *req = NULL;
        char b;
        fix_t f;

        fix_open(&f, 1, 1);
        w = rt->worker(f.app, 0);
        if (c->after_get) {
            /* A request with a body to come, then the garbage. */
            unsigned char buf[1024];
            size_t n =
                head_encode(buf, "POST", "/", 0, NULL, NULL, NULL, 0, 0, 10);

            router_send(f.router[0], WF_APP_MSG_REQ_HEAD, 1, buf, n);
        }
        garbage_send(f.router[0], c);
        if (c->after_get) {
            /* The module sees its request fail. */
            assert_int_equal(rt->next(w, &req, WAIT_MS), WF_APP_OK);
            if (rt->read(req, &b, 1) != WF_APP_ERROR) {
                fail_msg("case \"%s\": read() went on", c->name);
            }
            rt->end(req, 1);
        }
        if (rt->next(w, &req, WAIT_MS) != WF_APP_DONE) {
            fail_msg("case \"%s\": the worker went on", c->name);
        }
        /* Drain what the app sent, then the socket is at EOF. */
        while (recv(f.router[0], &b, 1, MSG_DONTWAIT) > 0) {
        }
        if (recv(f.router[0], &b, 1, MSG_DONTWAIT) != 0) {
            fail_msg("case \"%s\": the socket is still open", c->name);
        }
        fix_close(&f);
    }
}

/* The same garbage reaches an event worker: dispatch() says DONE (no
 * half-decoded request is left counted as active). */
static void
test_garbage_dispatch(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(garbage_cases); i++) {
        const garbage_case_t *c = &garbage_cases[i];
        wf_app_worker_t *w;
        evlog_t e = {0};
        int rc = WF_APP_OK;
        fix_t f;

        if (c->after_get) {
            continue;
        }
        fix_open(&f, 1, 1);
        w = rt->worker(f.app, 0);
        rt->set_concurrency(w, 8);
        garbage_send(f.router[0], c);
        for (int k = 0; k < 100 && rc == WF_APP_OK; k++) {
            struct pollfd p = {.fd = rt->worker_fd(w), .events = POLLIN};

            poll(&p, 1, 10);
            rc = rt->dispatch(w, &ev_table, &e);
        }
        if (rc != WF_APP_DONE || e.nreqs != 0) {
            fail_msg("case \"%s\": dispatch() went on", c->name);
        }
        fix_close(&f);
    }
}

/* The router closing every socket ends the worker; a stop request ends an
 * idle one at once. */
static void
test_eof_and_stop(void **state)
{
    wf_app_worker_t *w0, *w1;
    wf_app_req_t *req;
    fix_t f;

    wf_unused(state);
    fix_open(&f, 2, 2);
    w0 = rt->worker(f.app, 0);
    w1 = rt->worker(f.app, 1);
    /* Worker 1 owns sockets 2 and 3. */
    router_send_get(f.router[3], 40);
    assert_int_equal(rt->next(w1, &req, WAIT_MS), WF_APP_OK);
    rt->end(req, 0);
    router_expect_ready(f.router[2], RT_PULL);
    router_expect_ready(f.router[3], RT_PULL);
    router_expect_end(f.router[3], 40, 1);
    close(f.router[0]);
    assert_int_equal(rt->next(w0, &req, 50), WF_APP_AGAIN);
    close(f.router[1]);
    f.router[0] = f.router[1] = -1;
    assert_int_equal(rt->next(w0, &req, WAIT_MS), WF_APP_DONE);
    wf_app_rt_stop(f.app, true);
    assert_int_equal(rt->next(w1, &req, WAIT_MS), WF_APP_DONE);
    fix_close(&f);
}

/* ---- wf_app_main() with a real module, in a child process -----------------
 */

typedef struct child {
    pid_t pid;
    int router[WF_APP_MAX_FDS];
    unsigned n;
} child_t;

static void
child_start(child_t *c, unsigned slots, unsigned threads, const char *json,
            const char *module)
{
    int app_fds[WF_APP_MAX_FDS];

    memset(c, 0, sizeof(*c));
    c->n = slots * threads;
    for (unsigned i = 0; i < c->n; i++) {
        int sv[2];

        assert_int_equal(
            socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        c->router[i] = sv[0];
        app_fds[i] = sv[1];
    }
    c->pid = fork();
    assert_true(c->pid != -1);
    if (c->pid == 0) {
        wf_app_start_t st = {.name = "t",
                             .conf_json = json,
                             .module_file = module,
                             .tmpdir = "/tmp",
                             .slots = slots,
                             .router_threads = threads,
                             .fds = app_fds};

        for (unsigned i = 0; i < c->n; i++) {
            close(c->router[i]);
        }
        _exit(wf_app_main(&st));
    }
    for (unsigned i = 0; i < c->n; i++) {
        close(app_fds[i]);
    }
    ready_pid = c->pid;
}

/* Waits for the child's exit status; kills it and fails after WAIT_MS. */
static int
child_wait(child_t *c)
{
    int status;

    for (int i = 0; i < WAIT_MS / 10; i++) {
        pid_t p = waitpid(c->pid, &status, WNOHANG);

        if (p == c->pid) {
            for (unsigned k = 0; k < c->n; k++) {
                if (c->router[k] != -1) {
                    close(c->router[k]);
                }
            }
            ready_pid = 0;
            assert_true(WIFEXITED(status));
            return WEXITSTATUS(status);
        }
        usleep(10 * 1000);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &status, 0);
    fail_msg("the app process did not exit");
    return -1;
}

static void
expect_body(int fd, uint64_t stream, const char *body)
{
    wf_app_resp_hdr_t rh;
    rmsg_t m;

    router_expect(fd, WF_APP_MSG_RESP_HEAD, stream, &m);
    memcpy(&rh, m.data, sizeof(rh));
    assert_int_equal(rh.status, 200);
    assert_int_equal(rh.flags, WF_APP_RESP_END | WF_APP_RESP_DONE);
    assert_int_equal(rh.body_size, strlen(body));
    assert_memory_equal(m.data + m.size - rh.body_size, body, rh.body_size);
    rmsg_free(&m);
}

static void
send_path(int fd, uint64_t stream, const char *method, const char *path)
{
    unsigned char buf[1024];
    size_t n = head_encode(buf, method, path, 0, NULL, NULL, NULL, 0,
                           WF_APP_REQ_BODY_END, WF_APP_LEN_NONE);

    router_send(fd, WF_APP_MSG_REQ_HEAD, stream, buf, n);
}

/* 300 KiB through /echo: windows and acks both ways, between processes. */
static void
echo_big(int fd, uint64_t stream)
{
    const size_t total = 300 * 1024;
    unsigned char *buf = malloc(WF_APP_MAX_SIZE);
    size_t sent = 0, got = 0, req_unacked = 0, resp_unacked = 0;
    uint64_t sum_in = 0, sum_out = 0;
    bool ended = false, head = false;

    {
        unsigned char hbuf[1024];
        size_t n = head_encode(hbuf, "POST", "/echo", 0, NULL, NULL, NULL, 0, 0,
                               total);

        router_send(fd, WF_APP_MSG_REQ_HEAD, stream, hbuf, n);
    }
    while (!ended) {
        rmsg_t m;

        while (sent < total && req_unacked < WF_APP_WINDOW) {
            size_t k = wf_min(wf_min(total - sent, (size_t)WF_APP_MAX_SIZE),
                              WF_APP_WINDOW - req_unacked);

            pattern_fill(buf, k, sent);
            sum_in = pattern_sum(k, sent, sum_in);
            router_send(fd, WF_APP_MSG_REQ_BODY, stream, buf, k);
            sent += k;
            req_unacked += k;
            if (sent == total) {
                router_send(fd, WF_APP_MSG_REQ_END, stream, NULL, 0);
            }
        }
        router_recv(fd, &m);
        assert_int_equal(m.stream, stream);
        if (m.type == WF_APP_MSG_REQ_ACK) {
            uint64_t a;

            memcpy(&a, m.data, sizeof(a));
            assert_true(a <= req_unacked);
            req_unacked -= a;
        } else if (m.type == WF_APP_MSG_RESP_HEAD) {
            head = true;
        } else if (m.type == WF_APP_MSG_RESP_BODY) {
            assert_true(head);
            for (size_t i = 0; i < m.size; i++) {
                sum_out = sum_out * 31 + m.data[i];
            }
            got += m.size;
            resp_unacked += m.size;
            assert_true(resp_unacked <= WF_APP_WINDOW);
            if (resp_unacked >= WF_APP_WINDOW / 2) {
                router_send_u64(fd, WF_APP_MSG_RESP_ACK, stream, resp_unacked);
                resp_unacked = 0;
            }
        } else {
            uint32_t code;

            assert_int_equal(m.type, WF_APP_MSG_RESP_END);
            memcpy(&code, m.data, sizeof(code));
            assert_int_equal(code, 0);
            ended = true;
        }
        rmsg_free(&m);
    }
    assert_int_equal(got, total);
    assert_true(sum_in == sum_out);
    free(buf);
}

/* Two workers of two sockets each: READY on every socket, requests on
 * any of them, a body echoed both ways, then QUIT lets a slow request
 * finish before the process exits with 0. */
static void
test_app_main_serves(void **state)
{
    child_t c;

    wf_unused(state);
    child_start(&c, 2, 2, "{\"type\": \"test\", \"threads\": 2}",
                WF_TEST_MODULE);
    for (unsigned i = 0; i < c.n; i++) {
        router_expect_ready(c.router[i], RT_PULL);
    }
    send_path(c.router[3], 1, "GET", "/");
    expect_body(c.router[3], 1, "hello");
    send_path(c.router[0], 2, "GET", "/");
    expect_body(c.router[0], 2, "hello");
    echo_big(c.router[1], 3);
    send_path(c.router[2], 4, "GET", "/slow");
    usleep(50 * 1000);
    kill(c.pid, SIGQUIT);
    expect_body(c.router[2], 4, "slow");
    assert_int_equal(child_wait(&c), 0);
}

/* The router closing every socket ends the process, status 0. */
static void
test_app_main_eof(void **state)
{
    child_t c;

    wf_unused(state);
    child_start(&c, 1, 2, "{}", WF_TEST_MODULE);
    router_expect_ready(c.router[0], RT_PULL);
    router_expect_ready(c.router[1], RT_PULL);
    close(c.router[0]);
    close(c.router[1]);
    c.router[0] = c.router[1] = -1;
    assert_int_equal(child_wait(&c), 0);
}

/* TERM (and INT) stops an idle process at once. */
static void
test_app_main_term(void **state)
{
    static const int sigs[] = {SIGTERM, SIGINT};

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(sigs); i++) {
        child_t c;

        child_start(&c, 1, 1, "{}", WF_TEST_MODULE);
        router_expect_ready(c.router[0], RT_PULL);
        kill(c.pid, sigs[i]);
        assert_int_equal(child_wait(&c), 0);
    }
}

/* TERM while a worker waits inside a request (for body that never
 * comes): the request fails (cut short) and the process exits soon. */
static void
test_app_main_term_in_request(void **state)
{
    unsigned char buf[1024];
    size_t n;
    child_t c;

    wf_unused(state);
    child_start(&c, 1, 1, "{}", WF_TEST_MODULE);
    router_expect_ready(c.router[0], RT_PULL);
    n = head_encode(buf, "POST", "/echo", 0, NULL, NULL, NULL, 0, 0, 100);
    router_send(c.router[0], WF_APP_MSG_REQ_HEAD, 5, buf, n);
    {
        rmsg_t m;

        router_expect(c.router[0], WF_APP_MSG_RESP_HEAD, 5, &m);
        rmsg_free(&m);
    }
    kill(c.pid, SIGTERM);
    assert_int_equal(child_wait(&c), 0);
}

/* A module or an application that fails to load: status 1, and the
 * router never hears READY (its sockets just close). */
static void
test_app_main_load_fails(void **state)
{
    static const struct {
        const char *json, *module;
    } cases[] = {
        {"{\"fail\": true}", WF_TEST_MODULE},
        {"{}", "/nonexistent/module.wharf.so"},
        {"{}", "/dev/null"},
        {"[1]", WF_TEST_MODULE},
    };

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        child_t c;
        char b;

        child_start(&c, 1, 1, cases[i].json, cases[i].module);
        assert_int_equal(recv(c.router[0], &b, 1, 0), 0);
        assert_int_equal(child_wait(&c), 1);
    }
}

int
wf_test_app_rt(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_request),
        cmocka_unit_test(test_held_head_flushed),
        cmocka_unit_test(test_pull_queued_in_order),
        cmocka_unit_test(test_pull_ring_served_without_poll),
        cmocka_unit_test(test_fragmented_head),
        cmocka_unit_test(test_body_acks),
        cmocka_unit_test(test_response_window),
        cmocka_unit_test(test_abort_mid_body),
        cmocka_unit_test(test_dispatch_two_streams),
        cmocka_unit_test(test_dispatch_batches_answers),
        cmocka_unit_test(test_dispatch_abort),
        cmocka_unit_test(test_dispatch_ack_outside),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_garbage_dispatch),
        cmocka_unit_test(test_eof_and_stop),
        cmocka_unit_test(test_app_main_serves),
        cmocka_unit_test(test_app_main_eof),
        cmocka_unit_test(test_app_main_term),
        cmocka_unit_test(test_app_main_term_in_request),
        cmocka_unit_test(test_app_main_load_fails),
    };

    rt = wf_app_rt_table();
    return cmocka_run_group_tests_name("app_rt", tests, NULL, NULL);
}
