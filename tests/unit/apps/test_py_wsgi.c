/* The Python module's WSGI side in a real app process: a child runs
 * wf_app_main() with build/modules/python3.11.wharf.so and an app of
 * tests/integration/apps/wsgi/, and the test holds the router's ends of
 * the sockets and speaks apps/app_proto.h by hand.  What the module's own
 * tests (test_wsgi_module.py) cannot see: the messages a response becomes
 * (a hello world is one RESP_HEAD with RESP_END set, then RESP_END), a
 * body streamed with acks, a file sent as an fd, the GIL released while a
 * worker waits (two slots serve at once), and the process's exit. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apps/app_main.h"
#include "apps/app_proto.h"
#include "apps/app_rt.h"
#include "core/common.h"
#include "process/port.h"
#include "unit.h"

#ifdef WF_PY_MODULE

#define WAIT_MS 20000 /* a generous bound: Python starts in the child */

typedef struct pmsg {
    uint32_t type;
    uint64_t stream;
    size_t size;
    unsigned char *data; /* malloc'd */
    int fd;              /* received fd or -1 */
} pmsg_t;

typedef struct pchild {
    pid_t pid;
    int router[4];
    unsigned n;
} pchild_t;

static void
py_send(int fd, uint32_t type, uint64_t stream, const void *data, size_t len)
{
    wf_port_hdr_t h = {
        .stream = stream,
        .type = type,
        .size = (uint32_t)len,
        .total = (uint32_t)len,
        .version = WF_PORT_VERSION,
    };
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)data, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};

    assert_true(len <= WF_APP_MAX_SIZE);
    assert_int_equal(sendmsg(fd, &mh, MSG_NOSIGNAL), sizeof(h) + len);
}

/* One whole message (reassembled), with its fd if one came. */
static void
py_recv(int fd, pmsg_t *m)
{
    size_t cap = WF_APP_MAX_SIZE * 4, got = 0;
    bool more = true;

    memset(m, 0, sizeof(*m));
    m->fd = -1;
    m->data = malloc(cap + 1);
    while (more) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } cbuf;
        wf_port_hdr_t h;
        struct iovec iov[2] = {{&h, sizeof(h)},
                               {m->data + got, WF_APP_MAX_SIZE}};
        struct msghdr mh = {.msg_iov = iov,
                            .msg_iovlen = 2,
                            .msg_control = cbuf.buf,
                            .msg_controllen = sizeof(cbuf.buf)};
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        n = recvmsg(fd, &mh, 0);
        assert_true(n >= (ssize_t)sizeof(h));
        if (got == 0) {
            m->type = h.type;
            m->stream = h.stream;
        }
        if (mh.msg_controllen > 0) {
            memcpy(&m->fd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
        }
        got += h.size;
        more = (h.flags & WF_PORT_HDR_MORE) != 0;
        assert_true(!more || got + WF_APP_MAX_SIZE <= cap);
    }
    m->size = got;
}

static void
py_msg_free(pmsg_t *m)
{
    free(m->data);
    if (m->fd != -1) {
        close(m->fd);
    }
}

/* The next message that is not a REQ_ACK (the app acknowledging body). */
static void
py_recv_skip_acks(int fd, pmsg_t *m)
{
    for (;;) {
        py_recv(fd, m);
        if (m->type != WF_APP_MSG_REQ_ACK) {
            return;
        }
        py_msg_free(m);
    }
}

static unsigned char *
py_put_str(unsigned char *p, const char *s)
{
    uint32_t l = (uint32_t)strlen(s);
    size_t padded = (l + 1 + 3) & ~(size_t)3;

    memcpy(p, &l, 4);
    memcpy(p + 4, s, l);
    memset(p + 4 + l, 0, padded - l);
    return p + 4 + padded;
}

/* A REQ_HEAD for method path (with a query after '?') and its fields
 * (name, value pairs, NULL-ended), the whole body or none of it. */
static void
py_send_head(int fd, uint64_t stream, const char *method, const char *target,
             const char *const *fields, const char *body, uint64_t cl)
{
    unsigned char buf[4096];
    char path[256];
    const char *q = strchr(target, '?');
    unsigned nfields = 0;
    unsigned char *p;

    snprintf(path, sizeof(path), "%.*s",
             (int)(q != NULL ? (size_t)(q - target) : strlen(target)), target);
    while (fields != NULL && fields[2 * nfields] != NULL) {
        nfields++;
    }
    const char *strs[WF_APP_REQ_NSTR] = {
        [WF_APP_STR_METHOD] = method,      [WF_APP_STR_TARGET] = target,
        [WF_APP_STR_PATH] = path,          [WF_APP_STR_QUERY] = q ? q + 1 : "",
        [WF_APP_STR_VERSION] = "HTTP/1.1", [WF_APP_STR_HOST] = "h:80",
        [WF_APP_STR_REMOTE] = "127.0.0.1", [WF_APP_STR_LOCAL] = "127.0.0.1",
        [WF_APP_STR_SERVER] = "h",
    };
    wf_app_req_hdr_t hdr = {
        .flags = body != NULL ? WF_APP_REQ_BODY_END : 0,
        .nfields = (uint16_t)nfields,
        .content_length = cl,
        .body_size = body != NULL ? (uint32_t)strlen(body) : 0,
        .remote_port = 4242,
        .local_port = 80,
    };

    memcpy(buf, &hdr, sizeof(hdr));
    p = buf + sizeof(hdr);
    for (unsigned i = 0; i < WF_APP_REQ_NSTR; i++) {
        p = py_put_str(p, strs[i]);
    }
    for (unsigned i = 0; i < 2 * nfields; i++) {
        p = py_put_str(p, fields[i]);
    }
    if (body != NULL) {
        memcpy(p, body, hdr.body_size);
        p += hdr.body_size;
    }
    py_send(fd, WF_APP_MSG_REQ_HEAD, stream, buf, (size_t)(p - buf));
}

static void
py_start(pchild_t *c, unsigned slots, const char *app_json)
{
    int app_fds[4];

    memset(c, 0, sizeof(*c));
    c->n = slots;
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
        wf_app_start_t st = {.name = "py",
                             .conf_json = app_json,
                             .module_file = WF_PY_MODULE,
                             .tmpdir = "/tmp",
                             .slots = slots,
                             .router_threads = 1,
                             .fds = app_fds};

        for (unsigned i = 0; i < c->n; i++) {
            close(c->router[i]);
        }
        _exit(wf_app_main(&st));
    }
    for (unsigned i = 0; i < c->n; i++) {
        close(app_fds[i]);
    }
}

/* Closes the router's ends (the process then stops) and returns the exit
 * status; kills the child and fails after WAIT_MS. */
static int
py_stop(pchild_t *c)
{
    int status;

    for (unsigned k = 0; k < c->n; k++) {
        if (c->router[k] != -1) {
            close(c->router[k]);
        }
    }
    for (int i = 0; i < WAIT_MS / 10; i++) {
        if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
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
py_expect_ready(int fd)
{
    wf_app_ready_t rd;
    pmsg_t m;

    py_recv(fd, &m);
    assert_int_equal(m.type, WF_APP_MSG_READY);
    memcpy(&rd, m.data, sizeof(rd));
    /* A pull worker: one at a time, the next one queued behind it. */
    assert_int_equal(rd.concurrency, 1 + WF_APP_RT_QUEUED);
    assert_int_equal(rd.queued, WF_APP_RT_QUEUED);
    py_msg_free(&m);
}

static void
py_expect_end(int fd, uint64_t stream, uint32_t code)
{
    uint32_t v;
    pmsg_t m;

    py_recv_skip_acks(fd, &m);
    assert_int_equal(m.type, WF_APP_MSG_RESP_END);
    assert_int_equal(m.stream, stream);
    memcpy(&v, m.data, sizeof(v));
    assert_int_equal(v, code);
    py_msg_free(&m);
}

/* The RESP_HEAD of stream: its status, flags and body (in m). */
static wf_app_resp_hdr_t
py_expect_head(int fd, uint64_t stream, pmsg_t *m)
{
    wf_app_resp_hdr_t rh;

    py_recv_skip_acks(fd, m);
    assert_int_equal(m->type, WF_APP_MSG_RESP_HEAD);
    assert_int_equal(m->stream, stream);
    memcpy(&rh, m->data, sizeof(rh));
    return rh;
}

static const char *
py_body(const pmsg_t *m, const wf_app_resp_hdr_t *rh)
{
    m->data[m->size] = '\0';
    return (const char *)m->data + m->size - rh->body_size;
}

#define PY_APP(extra) \
    "{\"type\": \"python\", \"path\": \"" WF_PY_APPS "\", " extra "}"

/* A hello world is one RESP_HEAD carrying its body with RESP_END and
 * RESP_DONE set (no RESP_END message); the process serves the next one
 * and stops with 0. */
static void
test_py_hello(void **state)
{
    pchild_t c;

    wf_unused(state);
    py_start(&c, 1, PY_APP("\"module\": \"hello\""));
    py_expect_ready(c.router[0]);
    for (uint64_t s = 1; s <= 3; s++) {
        wf_app_resp_hdr_t rh;
        pmsg_t m;

        py_send_head(c.router[0], s, "GET", "/", NULL, "", 0);
        rh = py_expect_head(c.router[0], s, &m);
        assert_int_equal(rh.status, 200);
        assert_int_equal(rh.flags, WF_APP_RESP_END | WF_APP_RESP_DONE);
        assert_int_equal(rh.nfields, 1);
        assert_string_equal(py_body(&m, &rh), "Hello, World!");
        py_msg_free(&m);
    }
    assert_int_equal(py_stop(&c), 0);
}

/* A body in pieces after the head, read with readline(). */
static void
test_py_body_pieces(void **state)
{
    static const char *const fields[] = {"Content-Length", "12", NULL};
    wf_app_resp_hdr_t rh;
    pchild_t c;
    pmsg_t m;

    wf_unused(state);
    py_start(&c, 1, PY_APP("\"module\": \"body\""));
    py_expect_ready(c.router[0]);
    py_send_head(c.router[0], 7, "POST", "/readline", fields, NULL, 12);
    py_send(c.router[0], WF_APP_MSG_REQ_BODY, 7, "one\ntw", 6);
    py_send(c.router[0], WF_APP_MSG_REQ_BODY, 7, "o\nend", 5);
    py_send(c.router[0], WF_APP_MSG_REQ_BODY, 7, "!", 1);
    py_send(c.router[0], WF_APP_MSG_REQ_END, 7, NULL, 0);
    rh = py_expect_head(c.router[0], 7, &m);
    assert_int_equal(rh.status, 200);
    assert_string_equal(py_body(&m, &rh), "[\"one\\n\", \"two\\n\", \"end!\"]");
    assert_int_equal(rh.flags, WF_APP_RESP_END | WF_APP_RESP_DONE);
    py_msg_free(&m);
    assert_int_equal(py_stop(&c), 0);
}

/* A generator's pieces: the head with the first, then RESP_BODY each. */
static void
test_py_stream(void **state)
{
    wf_app_resp_hdr_t rh;
    pchild_t c;
    pmsg_t m;

    wf_unused(state);
    py_start(&c, 1, PY_APP("\"module\": \"stream\""));
    py_expect_ready(c.router[0]);
    py_send_head(c.router[0], 2, "GET", "/?n=3&size=5", NULL, "", 0);
    rh = py_expect_head(c.router[0], 2, &m);
    assert_int_equal(rh.flags, 0);
    assert_string_equal(py_body(&m, &rh), "00000");
    py_msg_free(&m);
    for (int i = 1; i < 3; i++) {
        char want[6];

        py_recv(c.router[0], &m);
        assert_int_equal(m.type, WF_APP_MSG_RESP_BODY);
        memset(want, '0' + i, 5);
        assert_int_equal(m.size, 5);
        assert_memory_equal(m.data, want, 5);
        py_msg_free(&m);
    }
    py_expect_end(c.router[0], 2, 0);
    assert_int_equal(py_stop(&c), 0);
}

/* wsgi.file_wrapper over a file: the head, then the fd itself. */
static void
test_py_file_fd(void **state)
{
    char path[] = "/tmp/wf-py-file-XXXXXX";
    const char *fields[] = {"X-File", path, NULL};
    wf_app_resp_file_t rf;
    wf_app_resp_hdr_t rh;
    char data[5000], back[5000];
    pchild_t c;
    pmsg_t m;
    int fd;

    wf_unused(state);
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (char)(i * 7);
    }
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, sizeof(data)), sizeof(data));
    close(fd);

    py_start(&c, 1, PY_APP("\"module\": \"files\""));
    py_expect_ready(c.router[0]);
    py_send_head(c.router[0], 3, "GET", "/offset", fields, "", 0);
    rh = py_expect_head(c.router[0], 3, &m);
    assert_int_equal(rh.status, 200);
    assert_int_equal(rh.flags, 0);
    assert_int_equal(rh.body_size, 0);
    py_msg_free(&m);
    py_recv(c.router[0], &m);
    assert_int_equal(m.type, WF_APP_MSG_RESP_FILE);
    assert_true(m.fd >= 0);
    memcpy(&rf, m.data, sizeof(rf));
    assert_int_equal(rf.offset, 10);
    assert_int_equal(rf.length, sizeof(data) - 10);
    assert_int_equal(pread(m.fd, back, rf.length, (off_t)rf.offset),
                     sizeof(data) - 10);
    assert_memory_equal(back, data + 10, sizeof(data) - 10);
    py_msg_free(&m);
    py_expect_end(c.router[0], 3, 0);
    assert_int_equal(py_stop(&c), 0);
    unlink(path);
}

/* An exception: a whole 500 before any head; the worker goes on. */
static void
test_py_raises_500(void **state)
{
    wf_app_resp_hdr_t rh;
    pchild_t c;
    pmsg_t m;

    wf_unused(state);
    py_start(&c, 1, PY_APP("\"module\": \"bad\", \"callable\": \"raises\""));
    py_expect_ready(c.router[0]);
    for (uint64_t s = 1; s <= 2; s++) {
        py_send_head(c.router[0], s, "GET", "/", NULL, "", 0);
        rh = py_expect_head(c.router[0], s, &m);
        assert_int_equal(rh.status, 500);
        assert_int_equal(rh.flags, WF_APP_RESP_END | WF_APP_RESP_DONE);
        py_msg_free(&m);
    }
    assert_int_equal(py_stop(&c), 0);
}

/* Two slots: each worker waits for the other inside the app (a barrier
 * of 2), so both must run Python at once: the GIL is not held across
 * rt->next() or a blocked read. */
static void
test_py_two_threads(void **state)
{
    static const char *const fields[] = {"X-Parties", "2", NULL};
    wf_app_resp_hdr_t rh;
    pchild_t c;
    pmsg_t m;

    wf_unused(state);
    py_start(&c, 2, PY_APP("\"module\": \"threads\", \"threads\": 2"));
    py_expect_ready(c.router[0]);
    py_expect_ready(c.router[1]);
    py_send_head(c.router[0], 1, "GET", "/", fields, "", 0);
    py_send_head(c.router[1], 2, "GET", "/", fields, "", 0);
    for (unsigned k = 0; k < 2; k++) {
        rh = py_expect_head(c.router[k], k + 1, &m);
        assert_int_equal(rh.status, 200);
        assert_int_equal(rh.flags, WF_APP_RESP_END | WF_APP_RESP_DONE);
        py_msg_free(&m);
    }
    assert_int_equal(py_stop(&c), 0);
}

/* An application that does not import: exit status 1, no READY. */
static void
test_py_import_fails(void **state)
{
    pchild_t c;
    char b;

    wf_unused(state);
    py_start(&c, 1, PY_APP("\"module\": \"broken_import\""));
    assert_int_equal(recv(c.router[0], &b, 1, 0), 0);
    assert_int_equal(py_stop(&c), 1);
}

int
wf_test_py_wsgi(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_py_hello),
        cmocka_unit_test(test_py_body_pieces),
        cmocka_unit_test(test_py_stream),
        cmocka_unit_test(test_py_file_fd),
        cmocka_unit_test(test_py_raises_500),
        cmocka_unit_test(test_py_two_threads),
        cmocka_unit_test(test_py_import_fails),
    };

    return cmocka_run_group_tests_name("py_wsgi", tests, NULL, NULL);
}

#else

int
wf_test_py_wsgi(void)
{
    return 0; /* built without python3-embed: no module to test */
}

#endif
