/* The router's application manager and exchange, end to end inside one
 * process: real loops (two I/O threads), a real h1 listener on 127.0.0.1,
 * a route whose action is an application, and a scripted app process: a
 * thread that gets the app ends of the sockets from the manager's start
 * operation and speaks apps/app_proto.h over them with real ports (manual
 * mode).  A client on the test thread sends real HTTP/1.1.
 *
 * The app answers by path: /hello (a memory response in one message),
 * /echo (the body back, streamed, with the app's Content-Length),
 * /upload (counts and checks a large body, acking as it consumes),
 * /download?N (N bytes streamed within the window), /crash (the process
 * goes away mid-request), /slow (never answers until aborted), /nolen
 * (a stream without a Content-Length: chunked), /short (claims more than
 * it sends). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "apps/app_proto.h"
#include "core/common.h"
#include "core/listen.h"
#include "core/log.h"
#include "core/loop.h"
#include "http/app_desc.h"
#include "http/h1_conn.h"
#include "http/route.h"
#include "process/app_mgr.h"
#include "process/app_xchg.h"
#include "process/port.h"
#include "unit.h"

#define TA_MAX_SOCKS 8
#define TA_PID_BASE  900000
#define TA_FILE_SIZE (1u << 20) /* the file the app sends as an fd */

static uint8_t
ta_byte(uint64_t i)
{
    return (uint8_t)('a' + (i * 7 + i / 97) % 26);
}

/* ---- The scripted app process ---------------------------------------- */

typedef struct ta_req {
    bool used;
    uint64_t stream;
    unsigned sock;
    char path[64];
    char query[32];
    uint64_t body_got;
    uint64_t body_unacked;
    bool body_bad;
    bool body_end;
    uint64_t to_send; /* /download, /echo: bytes left to stream */
    uint64_t sent;
    uint64_t acked;
    char *echo; /* /echo: the body */
    size_t echo_len;
    bool slow;
} ta_req_t;

typedef struct ta_app {
    wf_port_owner_t owner;
    wf_port_t *ports[TA_MAX_SOCKS];
    int fds[TA_MAX_SOCKS];
    unsigned n;
    int pid;
    bool crash;
    unsigned open;
    ta_req_t reqs[16];
    pthread_t thread;
    wf_task_t exit; /* main's APP_EXIT, posted to loop 0 */
} ta_app_t;

static struct {
    wf_app_desc_t desc;
    _Atomic unsigned starts;
    _Atomic unsigned exits;
    _Atomic unsigned heads; /* REQ_HEAD messages */
    _Atomic unsigned heads_with_body;
    _Atomic unsigned aborts;
    ta_app_t *apps[64];
    unsigned napps;
    pthread_mutex_t lock;
    int port;    /* the listener's */
    int file_fd; /* TA_FILE_SIZE pattern bytes */
} ta;

static ta_app_t *
ta_app_of(wf_port_t *p, unsigned *idx)
{
    ta_app_t *app = wf_container_of(wf_port_get_owner(p), ta_app_t, owner);

    for (unsigned i = 0; i < app->n; i++) {
        if (app->ports[i] == p) {
            *idx = i;
        }
    }
    return app;
}

static ta_req_t *
ta_req_find(ta_app_t *app, uint64_t stream)
{
    for (size_t i = 0; i < wf_nitems(app->reqs); i++) {
        if (app->reqs[i].used && app->reqs[i].stream == stream) {
            return &app->reqs[i];
        }
    }
    return NULL;
}

static size_t
ta_put_str(char *p, const char *s, size_t n)
{
    uint32_t len = (uint32_t)n;
    size_t padded = (n + 1 + 3) & ~(size_t)3;

    memcpy(p, &len, 4);
    memcpy(p + 4, s, n);
    memset(p + 4 + n, 0, padded - n);
    return 4 + padded;
}

/* RESP_HEAD with fields "X-App: yes" and, unless len is NONE,
 * Content-Length: len; body[0..body_size) follows. */
static void
ta_send_head_flags(ta_app_t *app, ta_req_t *rq, uint16_t status, uint64_t len,
                   uint32_t flags, const char *body, uint32_t body_size)
{
    static char buf[WF_APP_MAX_SIZE + 4096];
    wf_app_resp_hdr_t hdr = {
        .status = status, .flags = flags, .body_size = body_size};
    char num[24];
    size_t n = sizeof(hdr);

    n += ta_put_str(buf + n, "X-App", 5);
    n += ta_put_str(buf + n, "yes", 3);
    hdr.nfields = 1;
    if (len != WF_APP_LEN_NONE) {
        int k = snprintf(num, sizeof(num), "%llu", (unsigned long long)len);

        n += ta_put_str(buf + n, "Content-Length", 14);
        n += ta_put_str(buf + n, num, (size_t)k);
        hdr.nfields = 2;
    }
    memcpy(buf, &hdr, sizeof(hdr));
    if (body_size > 0) {
        memcpy(buf + n, body, body_size);
    }
    n += body_size;
    wf_port_send(app->ports[rq->sock], WF_APP_MSG_RESP_HEAD, rq->stream, buf, n,
                 NULL, 0);
}

static void
ta_send_head(ta_app_t *app, ta_req_t *rq, uint16_t status, uint64_t len,
             bool end, const char *body, uint32_t body_size)
{
    ta_send_head_flags(app, rq, status, len, end ? WF_APP_RESP_END : 0, body,
                       body_size);
}

/* The head says DONE: the request is over without a RESP_END. */
static void
ta_send_done(ta_app_t *app, ta_req_t *rq, uint32_t flags)
{
    ta_send_head_flags(app, rq, 200, WF_APP_LEN_NONE, flags, "done", 4);
    free(rq->echo);
    memset(rq, 0, sizeof(*rq));
}

static void
ta_send_end(ta_app_t *app, ta_req_t *rq, uint32_t cut)
{
    wf_port_send(app->ports[rq->sock], WF_APP_MSG_RESP_END, rq->stream, &cut,
                 sizeof(cut), NULL, 0);
    free(rq->echo);
    memset(rq, 0, sizeof(*rq));
}

/* Streams what the window allows. */
static void
ta_pump(ta_app_t *app, ta_req_t *rq)
{
    static char buf[WF_APP_MAX_SIZE];

    while (rq->to_send > 0 && rq->sent - rq->acked < WF_APP_WINDOW) {
        size_t n = wf_min(wf_min(rq->to_send, (uint64_t)sizeof(buf)),
                          WF_APP_WINDOW - (rq->sent - rq->acked));

        for (size_t i = 0; i < n; i++) {
            buf[i] = rq->echo != NULL ? rq->echo[rq->sent + i]
                                      : (char)ta_byte(rq->sent + i);
        }
        wf_port_send(app->ports[rq->sock], WF_APP_MSG_RESP_BODY, rq->stream,
                     buf, n, NULL, 0);
        rq->sent += n;
        rq->to_send -= n;
    }
    if (rq->to_send == 0) {
        ta_send_end(app, rq, 0);
    }
}

/* The whole request is in: answer by path. */
static void
ta_answer(ta_app_t *app, ta_req_t *rq)
{
    char text[64];
    int n;

    if (strcmp(rq->path, "/hello") == 0) {
        ta_send_head(app, rq, 200, WF_APP_LEN_NONE, true, "hello", 5);
        ta_send_end(app, rq, 0);
    } else if (strcmp(rq->path, "/done") == 0) {
        ta_send_done(app, rq, WF_APP_RESP_END | WF_APP_RESP_DONE);
    } else if (strcmp(rq->path, "/donecut") == 0) {
        ta_send_done(app, rq, WF_APP_RESP_DONE); /* DONE without END */
    } else if (strcmp(rq->path, "/upload") == 0) {
        n = snprintf(text, sizeof(text), "%llu %s",
                     (unsigned long long)rq->body_got,
                     rq->body_bad ? "bad" : "good");
        ta_send_head(app, rq, 200, WF_APP_LEN_NONE, true, text, (uint32_t)n);
        ta_send_end(app, rq, 0);
    } else if (strcmp(rq->path, "/echo") == 0) {
        rq->to_send = rq->echo_len;
        ta_send_head(app, rq, 200, rq->echo_len, false, NULL, 0);
        ta_pump(app, rq);
    } else if (strcmp(rq->path, "/download") == 0
               || strcmp(rq->path, "/nolen") == 0) {
        rq->to_send = strtoull(rq->query, NULL, 10);
        ta_send_head(app, rq, 200,
                     rq->path[1] == 'd' ? rq->to_send : WF_APP_LEN_NONE, false,
                     NULL, 0);
        ta_pump(app, rq);
    } else if (strcmp(rq->path, "/file") == 0
               || strcmp(rq->path, "/filepiece") == 0) {
        bool piece = rq->path[5] == 'p';
        wf_app_resp_file_t rf = {.offset = piece ? 3 : 0,
                                 .length = TA_FILE_SIZE - (piece ? 3 : 0)};

        ta_send_head(app, rq, 200, TA_FILE_SIZE, false, NULL, 0);
        if (piece) {
            char first[3] = {(char)ta_byte(0), (char)ta_byte(1),
                             (char)ta_byte(2)};

            wf_port_send(app->ports[rq->sock], WF_APP_MSG_RESP_BODY, rq->stream,
                         first, 3, NULL, 0);
        }
        wf_port_send(app->ports[rq->sock], WF_APP_MSG_RESP_FILE, rq->stream,
                     &rf, sizeof(rf), &ta.file_fd, 1);
        ta_send_end(app, rq, 0);
    } else if (strcmp(rq->path, "/short") == 0) {
        ta_send_head(app, rq, 200, 100, false, "abc", 3);
        ta_send_end(app, rq, 0);
    } else if (strcmp(rq->path, "/crash") == 0) {
        app->crash = true;
    } else if (strcmp(rq->path, "/slow") == 0) {
        rq->slow = true;
    } else {
        ta_send_head(app, rq, 404, WF_APP_LEN_NONE, true, "no", 2);
        ta_send_end(app, rq, 0);
    }
}

static void
ta_take_body(ta_app_t *app, ta_req_t *rq, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rq->body_bad |= p[i] != ta_byte(rq->body_got + i);
    }
    if (strcmp(rq->path, "/echo") == 0) {
        rq->echo = realloc(rq->echo, rq->echo_len + n);
        memcpy(rq->echo + rq->echo_len, p, n);
        rq->echo_len += n;
    }
    rq->body_got += n;
    rq->body_unacked += n;
    if (rq->body_unacked >= WF_APP_WINDOW / 2) {
        uint64_t v = rq->body_unacked;

        rq->body_unacked = 0;
        wf_port_send(app->ports[rq->sock], WF_APP_MSG_REQ_ACK, rq->stream, &v,
                     sizeof(v), NULL, 0);
    }
}

static void
ta_on_head(ta_app_t *app, unsigned sock, wf_port_msg_t *msg)
{
    const unsigned char *m = wf_port_msg_flatten(msg);
    wf_app_req_hdr_t hdr;
    size_t off = sizeof(hdr);
    ta_req_t *rq = NULL;
    const char *s[WF_APP_REQ_NSTR];
    uint32_t len[WF_APP_REQ_NSTR];

    memcpy(&hdr, m, sizeof(hdr));
    for (unsigned i = 0; i < WF_APP_REQ_NSTR; i++) {
        assert_true(wf_app_str_get(m, msg->size, &off, &s[i], &len[i]));
    }
    for (unsigned i = 0; i < 2u * hdr.nfields; i++) {
        const char *f;
        uint32_t flen;

        assert_true(wf_app_str_get(m, msg->size, &off, &f, &flen));
    }
    assert_int_equal(msg->size - off, hdr.body_size);
    for (size_t i = 0; i < wf_nitems(app->reqs) && rq == NULL; i++) {
        if (!app->reqs[i].used) {
            rq = &app->reqs[i];
        }
    }
    assert_non_null(rq);
    rq->used = true;
    rq->stream = msg->stream;
    rq->sock = sock;
    snprintf(rq->path, sizeof(rq->path), "%.*s", (int)len[WF_APP_STR_PATH],
             s[WF_APP_STR_PATH]);
    snprintf(rq->query, sizeof(rq->query), "%.*s", (int)len[WF_APP_STR_QUERY],
             s[WF_APP_STR_QUERY]);
    atomic_fetch_add(&ta.heads, 1);
    if (hdr.body_size > 0) {
        atomic_fetch_add(&ta.heads_with_body, 1);
    }
    ta_take_body(app, rq, m + off, hdr.body_size);
    if (hdr.flags & WF_APP_REQ_BODY_END) {
        rq->body_end = true;
        ta_answer(app, rq);
    }
}

static void
ta_on_msg(wf_port_t *p, wf_port_msg_t *msg)
{
    unsigned sock = 0;
    ta_app_t *app = ta_app_of(p, &sock);
    ta_req_t *rq;
    uint64_t v;

    if (msg->type == WF_APP_MSG_REQ_HEAD) {
        ta_on_head(app, sock, msg);
        return;
    }
    rq = ta_req_find(app, msg->stream);
    if (rq == NULL) {
        return;
    }
    switch (msg->type) {
    case WF_APP_MSG_REQ_BODY:
        ta_take_body(app, rq, wf_port_msg_flatten(msg), msg->size);
        return;
    case WF_APP_MSG_REQ_END:
        rq->body_end = true;
        ta_answer(app, rq);
        return;
    case WF_APP_MSG_REQ_ABORT:
        atomic_fetch_add(&ta.aborts, 1);
        ta_send_end(app, rq, 1);
        return;
    case WF_APP_MSG_RESP_ACK:
        memcpy(&v, wf_port_msg_flatten(msg), sizeof(v));
        rq->acked += v;
        ta_pump(app, rq);
        return;
    default:
        return;
    }
}

#define TA_FROM_ROUTER WF_PORT_FROM(WF_PORT_ROUTER)
#define TA_FROM_APP    WF_PORT_FROM(WF_PORT_APP)

static const wf_port_type_t ta_types[] = {
    {WF_APP_MSG_READY, "ready", ta_on_msg, TA_FROM_APP, 0},
    {WF_APP_MSG_REQ_HEAD, "req_head", ta_on_msg, TA_FROM_ROUTER, 0},
    {WF_APP_MSG_REQ_BODY, "req_body", ta_on_msg, TA_FROM_ROUTER, 0},
    {WF_APP_MSG_REQ_END, "req_end", ta_on_msg, TA_FROM_ROUTER, 0},
    {WF_APP_MSG_REQ_ABORT, "req_abort", ta_on_msg, TA_FROM_ROUTER, 0},
    {WF_APP_MSG_REQ_ACK, "req_ack", ta_on_msg, TA_FROM_APP, 0},
    {WF_APP_MSG_RESP_HEAD, "resp_head", ta_on_msg, TA_FROM_APP, 0},
    {WF_APP_MSG_RESP_BODY, "resp_body", ta_on_msg, TA_FROM_APP, 0},
    {WF_APP_MSG_RESP_FILE, "resp_file", ta_on_msg, TA_FROM_APP, 1},
    {WF_APP_MSG_RESP_END, "resp_end", ta_on_msg, TA_FROM_APP, 0},
    {WF_APP_MSG_RESP_ACK, "resp_ack", ta_on_msg, TA_FROM_ROUTER, 0},
};

static void
ta_on_close(wf_port_t *p)
{
    unsigned sock = 0;
    ta_app_t *app = ta_app_of(p, &sock);

    app->open--;
}

static void
ta_on_exit_task(wf_task_t *task)
{
    ta_app_t *app = wf_container_of(task, ta_app_t, exit);

    wf_app_mgr_on_exit(app->pid, 0, 0);
    atomic_fetch_add(&ta.exits, 1);
}

/* The app process: READY on every socket, then serve until every socket
 * closed (or a crash). */
static void *
ta_app_run(void *arg)
{
    ta_app_t *app = arg;
    wf_app_ready_t rd = {.concurrency = 1, .pid = (uint32_t)app->pid};

    app->owner.on_close = ta_on_close;
    for (unsigned i = 0; i < app->n; i++) {
        app->ports[i] =
            wf_port_create(app->fds[i], WF_PORT_APP, WF_PORT_ROUTER, ta_types,
                           wf_nitems(ta_types), &app->owner);
        wf_port_set_max_size(app->ports[i], WF_APP_MAX_SIZE);
        wf_port_send(app->ports[i], WF_APP_MSG_READY, 0, &rd, sizeof(rd), NULL,
                     0);
        wf_port_flush(app->ports[i]);
    }
    app->open = app->n;
    while (app->open > 0 && !app->crash) {
        struct pollfd pfd[TA_MAX_SOCKS];

        for (unsigned i = 0; i < app->n; i++) {
            pfd[i].fd = wf_port_is_closed(app->ports[i]) ? -1 : app->fds[i];
            pfd[i].events = POLLIN;
        }
        poll(pfd, app->n, 100);
        for (unsigned i = 0; i < app->n; i++) {
            if (!wf_port_is_closed(app->ports[i])) {
                while (wf_port_on_readable(app->ports[i]) == WF_OK) {
                }
            }
            if (!wf_port_is_closed(app->ports[i])) {
                while (wf_port_flush(app->ports[i]) == WF_AGAIN) {
                    struct pollfd w = {.fd = app->fds[i], .events = POLLOUT};

                    poll(&w, 1, 100);
                    wf_port_on_readable(app->ports[i]);
                }
            }
        }
    }
    for (unsigned i = 0; i < app->n; i++) {
        wf_port_destroy(app->ports[i]);
        app->ports[i] = NULL;
    }
    for (size_t i = 0; i < wf_nitems(app->reqs); i++) {
        free(app->reqs[i].echo);
    }
    app->exit.handler = ta_on_exit_task;
    wf_task_post(wf_loop_get(0), &app->exit);
    return NULL;
}

/* The manager's start operation: "main" forks the scripted app. */
static int
ta_start(wf_port_request_t *req, const char *payload, size_t len,
         const int *fds, unsigned nfds)
{
    ta_app_t *app = calloc(1, sizeof(*app));

    wf_unused(req);
    wf_unused(payload);
    wf_unused(len);
    assert_non_null(app);
    assert_true(nfds <= TA_MAX_SOCKS);
    assert_non_null(strstr(payload, "\"router_threads\":2"));
    app->n = nfds;
    for (unsigned i = 0; i < nfds; i++) {
        app->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
    }
    pthread_mutex_lock(&ta.lock);
    app->pid = TA_PID_BASE + (int)ta.napps;
    ta.apps[ta.napps++] = app;
    pthread_mutex_unlock(&ta.lock);
    atomic_fetch_add(&ta.starts, 1);
    pthread_create(&app->thread, NULL, ta_app_run, app);
    return WF_OK;
}

static void
ta_kill(pid_t pid)
{
    wf_unused(pid);
}

static void
ta_restarted(uint64_t stream, const char *error)
{
    wf_unused(stream);
    wf_unused(error);
}

static const wf_app_mgr_ops_t ta_ops = {
    .start = ta_start,
    .kill = ta_kill,
    .restarted = ta_restarted,
};

/* ---- The client ------------------------------------------------------ */

typedef struct ta_resp {
    unsigned status;
    char head[4096];
    bool chunked;
    long long length; /* Content-Length, -1 when none */
    uint64_t body_len;
    bool pattern_ok; /* every body byte is ta_byte(i) */
    char body[4096]; /* the first bytes */
    bool eof;        /* the connection closed after (or during) the body */
    bool complete;
} ta_resp_t;

static int
ta_connect(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)ta.port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 30};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static void
ta_send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

        assert_true(k > 0);
        p += k;
        n -= (size_t)k;
    }
}

/* Sends a request whose body is body_len pattern bytes. */
static void
ta_send_req(int fd, const char *method, const char *target, uint64_t body_len)
{
    char head[512];
    static char buf[65536];
    int n =
        snprintf(head, sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: t\r\nContent-Length: %llu\r\n\r\n",
                 method, target, (unsigned long long)body_len);

    ta_send_all(fd, head, (size_t)n);
    for (uint64_t off = 0; off < body_len;) {
        size_t k = (size_t)wf_min(body_len - off, (uint64_t)sizeof(buf));

        for (size_t i = 0; i < k; i++) {
            buf[i] = (char)ta_byte(off + i);
        }
        ta_send_all(fd, buf, k);
        off += k;
    }
}

typedef struct ta_rbuf {
    int fd;
    char data[65536];
    size_t start;
    size_t end;
    bool eof;
} ta_rbuf_t;

static bool
ta_fill(ta_rbuf_t *rb)
{
    ssize_t n;

    if (rb->start == rb->end) {
        rb->start = rb->end = 0;
    }
    if (rb->end == sizeof(rb->data)) {
        memmove(rb->data, rb->data + rb->start, rb->end - rb->start);
        rb->end -= rb->start;
        rb->start = 0;
    }
    n = recv(rb->fd, rb->data + rb->end, sizeof(rb->data) - rb->end, 0);
    if (n <= 0) {
        rb->eof = true;
        return false;
    }
    rb->end += (size_t)n;
    return true;
}

static void
ta_body_take(ta_resp_t *rs, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((uint8_t)p[i] != ta_byte(rs->body_len + i)) {
            rs->pattern_ok = false;
        }
        if (rs->body_len + i < sizeof(rs->body) - 1) {
            rs->body[rs->body_len + i] = p[i];
        }
    }
    rs->body_len += n;
}

/* Reads n body bytes (UINT64_MAX: to EOF).  False on an early EOF. */
static bool
ta_read_body(ta_rbuf_t *rb, ta_resp_t *rs, uint64_t n)
{
    while (n > 0) {
        size_t k;

        if (rb->start == rb->end && !ta_fill(rb)) {
            return n == UINT64_MAX;
        }
        k = (size_t)wf_min((uint64_t)(rb->end - rb->start), n);
        ta_body_take(rs, rb->data + rb->start, k);
        rb->start += k;
        if (n != UINT64_MAX) {
            n -= k;
        }
    }
    return true;
}

static bool
ta_read_line(ta_rbuf_t *rb, char *line, size_t cap)
{
    for (;;) {
        char *lf = memchr(rb->data + rb->start, '\n', rb->end - rb->start);

        if (lf != NULL) {
            size_t n = (size_t)(lf - (rb->data + rb->start)) + 1;

            snprintf(line, cap, "%.*s", (int)n, rb->data + rb->start);
            rb->start += n;
            return true;
        }
        if (!ta_fill(rb)) {
            return false;
        }
    }
}

static void
ta_read_chunked(ta_rbuf_t *rb, ta_resp_t *rs)
{
    char line[64];

    while (ta_read_line(rb, line, sizeof(line))) {
        unsigned long long k = strtoull(line, NULL, 16);

        if (k == 0) {
            rs->complete = ta_read_line(rb, line, sizeof(line));
            return;
        }
        if (!ta_read_body(rb, rs, k) || !ta_read_line(rb, line, sizeof(line))) {
            return;
        }
    }
}

static void
ta_read_resp(int fd, ta_resp_t *rs)
{
    static ta_rbuf_t rb;
    char *end;
    char *cl;
    size_t hlen;

    memset(&rb, 0, sizeof(rb));
    memset(rs, 0, sizeof(*rs));
    rb.fd = fd;
    rs->pattern_ok = true;
    rs->length = -1;
    while ((end = memmem(rb.data, rb.end, "\r\n\r\n", 4)) == NULL) {
        if (!ta_fill(&rb)) {
            return;
        }
    }
    hlen = (size_t)(end - rb.data) + 4;
    snprintf(rs->head, sizeof(rs->head), "%.*s", (int)hlen, rb.data);
    rb.start = hlen;
    rs->status = (unsigned)atoi(rs->head + 9);
    rs->chunked = strstr(rs->head, "Transfer-Encoding: chunked") != NULL;
    cl = strstr(rs->head, "Content-Length: ");
    if (cl != NULL) {
        rs->length = atoll(cl + 16);
    }
    if (rs->chunked) {
        ta_read_chunked(&rb, rs);
    } else if (rs->length >= 0) {
        rs->complete = ta_read_body(&rb, rs, (uint64_t)rs->length);
    } else {
        ta_read_body(&rb, rs, UINT64_MAX);
    }
    rs->eof = rb.eof;
}

static void
ta_request(const char *method, const char *target, uint64_t body_len,
           ta_resp_t *rs)
{
    int fd = ta_connect();

    ta_send_req(fd, method, target, body_len);
    ta_read_resp(fd, rs);
    close(fd);
}

/* ---- Cases ------------------------------------------------------------ */

static void
test_app_hello(void **state)
{
    ta_resp_t rs;
    int fd = ta_connect();

    wf_unused(state);
    /* Two on one connection: keep-alive survives an app response. */
    for (int i = 0; i < 2; i++) {
        ta_send_req(fd, "GET", "/hello", 0);
        ta_read_resp(fd, &rs);
        assert_int_equal(rs.status, 200);
        assert_true(rs.complete);
        assert_string_equal(rs.body, "hello");
        assert_int_equal(rs.length, 5);
        assert_non_null(strstr(rs.head, "\r\nX-App: yes\r\n"));
        assert_null(strstr(rs.head, "Connection: close"));
    }
    close(fd);
}

/* A head that says DONE ends the request: the one slot is free for the
 * next request at once (else it would wait in the queue); a DONE
 * without END is a response cut short (the stream it began is cut), and
 * frees the slot too. */
static void
test_app_resp_done(void **state)
{
    ta_resp_t rs;
    int fd = ta_connect();

    wf_unused(state);
    for (int i = 0; i < 3; i++) {
        ta_send_req(fd, "GET", "/done", 0);
        ta_read_resp(fd, &rs);
        assert_int_equal(rs.status, 200);
        assert_true(rs.complete);
        assert_string_equal(rs.body, "done");
    }
    close(fd);
    ta_request("GET", "/donecut", 0, &rs);
    assert_int_equal(rs.status, 200);
    assert_false(rs.complete);
    ta_request("GET", "/hello", 0, &rs);
    assert_int_equal(rs.status, 200);
    assert_string_equal(rs.body, "hello");
}

static void
test_app_small_body_in_head(void **state)
{
    unsigned before = atomic_load(&ta.heads_with_body);
    ta_resp_t rs;

    wf_unused(state);
    ta_request("POST", "/upload", 1000, &rs);
    assert_int_equal(rs.status, 200);
    assert_string_equal(rs.body, "1000 good");
    assert_int_equal(atomic_load(&ta.heads_with_body), before + 1);
}

static void
test_app_big_upload(void **state)
{
    ta_resp_t rs;

    wf_unused(state);
    ta_request("POST", "/upload", 20u << 20, &rs);
    assert_int_equal(rs.status, 200);
    assert_string_equal(rs.body, "20971520 good");
}

static void
test_app_echo_with_length(void **state)
{
    ta_resp_t rs;

    wf_unused(state);
    ta_request("POST", "/echo", 300000, &rs);
    assert_int_equal(rs.status, 200);
    assert_false(rs.chunked);
    assert_int_equal(rs.length, 300000);
    assert_true(rs.complete);
    assert_int_equal(rs.body_len, 300000);
    assert_true(rs.pattern_ok);
}

static void
test_app_big_download(void **state)
{
    ta_resp_t rs;

    wf_unused(state);
    ta_request("GET", "/download?52428800", 0, &rs);
    assert_int_equal(rs.status, 200);
    assert_int_equal(rs.length, 52428800);
    assert_true(rs.complete);
    assert_int_equal(rs.body_len, 52428800);
    assert_true(rs.pattern_ok);
}

static void
test_app_stream_without_length(void **state)
{
    ta_resp_t rs;

    wf_unused(state);
    ta_request("GET", "/nolen?100000", 0, &rs);
    assert_int_equal(rs.status, 200);
    assert_true(rs.chunked);
    assert_true(rs.complete);
    assert_int_equal(rs.body_len, 100000);
    assert_true(rs.pattern_ok);
}

/* RESP_FILE as the whole body: the simple object, sent with sendfile();
 * as a piece after body bytes: inside the stream.  Either way the bytes
 * and the app's Content-Length arrive. */
static void
test_app_file_whole_and_piece(void **state)
{
    ta_resp_t rs;

    wf_unused(state);
    ta_request("GET", "/file", 0, &rs);
    assert_int_equal(rs.status, 200);
    assert_int_equal(rs.length, TA_FILE_SIZE);
    assert_true(rs.complete);
    assert_true(rs.pattern_ok);
    assert_int_equal(rs.body_len, TA_FILE_SIZE);
    ta_request("GET", "/filepiece", 0, &rs);
    assert_int_equal(rs.status, 200);
    assert_false(rs.chunked);
    assert_int_equal(rs.length, TA_FILE_SIZE);
    assert_true(rs.complete);
    assert_true(rs.pattern_ok);
}

static void
test_app_short_body_cut(void **state)
{
    ta_resp_t rs;

    wf_unused(state);
    ta_request("GET", "/short", 0, &rs);
    assert_int_equal(rs.status, 200);
    assert_int_equal(rs.length, 100);
    assert_false(rs.complete); /* never a body shorter than announced */
    assert_true(rs.eof);
}

static void
test_app_crash_502_then_replaced(void **state)
{
    unsigned starts = atomic_load(&ta.starts);
    ta_resp_t rs;

    wf_unused(state);
    ta_request("GET", "/crash", 0, &rs);
    assert_int_equal(rs.status, 502);
    for (int i = 0; i < 100 && atomic_load(&ta.starts) == starts; i++) {
        usleep(50000);
    }
    assert_true(atomic_load(&ta.starts) > starts);
    ta_request("GET", "/hello", 0, &rs);
    assert_int_equal(rs.status, 200);
    assert_string_equal(rs.body, "hello");
}

/* limits.timeout answers 503 and aborts the app's request; while the only
 * slot is busy, one request waits in the queue (length 1) and the next
 * gets 503 at once; the queued one is served once the slot frees. */
static void
test_app_timeout_and_queue(void **state)
{
    unsigned aborts = atomic_load(&ta.aborts);
    int slow = ta_connect();
    int queued;
    ta_resp_t rs;

    wf_unused(state);
    ta_send_req(slow, "GET", "/slow", 0);
    usleep(200000); /* the slow one holds the slot */
    queued = ta_connect();
    ta_send_req(queued, "GET", "/hello", 0);
    usleep(200000);
    ta_request("GET", "/hello", 0, &rs);
    assert_int_equal(rs.status, 503); /* over queue.length */
    ta_read_resp(slow, &rs);
    assert_int_equal(rs.status, 503); /* limits.timeout */
    for (int i = 0; i < 200 && atomic_load(&ta.aborts) == aborts; i++) {
        usleep(20000);
    }
    assert_int_equal(atomic_load(&ta.aborts), aborts + 1);
    ta_read_resp(queued, &rs);
    assert_int_equal(rs.status, 200);
    assert_string_equal(rs.body, "hello");
    close(slow);
    close(queued);
}

/* The figures of "t" (read from the test thread: they are under the
 * app's lock); active: requests.active. */
static json_int_t
ta_status(json_t **obj, const char *key)
{
    json_t *st;

    json_decref(*obj);
    *obj = json_object();
    wf_app_mgr_status(*obj);
    st = json_object_get(*obj, "t");
    assert_non_null(st);
    if (strcmp(key, "active") == 0) {
        return json_integer_value(
            json_object_get(json_object_get(st, "requests"), "active"));
    }
    return json_integer_value(
        json_object_get(json_object_get(st, "processes"), key));
}

static void
test_app_status(void **state)
{
    json_t *obj = NULL;
    json_t *st;

    wf_unused(state);
    /* The last RESP_END may still be on its way after the response. */
    for (int i = 0; i < 250 && ta_status(&obj, "active") != 0; i++) {
        usleep(20000);
    }
    st = json_object_get(obj, "t");
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(st, "processes"), "running")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(st, "requests"), "active")),
                     0);
    json_decref(obj);
}

/* ---- Setup ------------------------------------------------------------ */

static struct {
    wf_arena_t *arena;
    wf_http_conf_t hc;
    wf_h1_snap_t snap;
    wf_h1_site_t site;
    wf_h1_server_t srv;
    wf_action_t act;
    sem_t done;
    wf_task_t task;
} tas;

static void
ta_release_snap(wf_h1_snap_t *snap)
{
    wf_unused(snap);
}

static void
ta_release_srv(wf_h1_server_t *srv)
{
    wf_unused(srv);
}

static void
ta_on_settled(void *arg, const char *error)
{
    wf_unused(arg);
    assert_null(error);
    wf_app_mgr_commit(&ta.desc, 1);
    sem_post(&tas.done);
}

static void
ta_on_reconcile(wf_task_t *task)
{
    wf_unused(task);
    /* spare 1: the configuration waits for the first READY. */
    assert_int_equal(wf_app_mgr_reconcile(&ta.desc, 1, ta_on_settled, NULL),
                     WF_AGAIN);
}

static int
ta_setup(void **state)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&tas.srv.listener.addr;
    socklen_t len = sizeof(*sin);
    char err[256];
    wf_route_t *route;

    static char data[TA_FILE_SIZE];
    char path[] = "/tmp/wharf-test-app-XXXXXX";

    wf_unused(state);
    pthread_mutex_init(&ta.lock, NULL);
    ta.file_fd = mkstemp(path);
    assert_true(ta.file_fd >= 0);
    unlink(path);
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (char)ta_byte(i);
    }
    assert_int_equal(write(ta.file_fd, data, sizeof(data)), sizeof(data));
    ta.desc = (wf_app_desc_t){.name = wf_string("t"),
                              .json = "{\"type\":\"test\"}",
                              .type = "test",
                              .max_processes = 1,
                              .spare_processes = 1,
                              .idle_timeout_ms = 15000,
                              .timeout_ms = 2000,
                              .queue_length = 1,
                              .queue_timeout_ms = 20000,
                              .threads = 1};
    tas.hc = (wf_http_conf_t){.header_read_timeout_ms = 30000,
                              .body_read_timeout_ms = 30000,
                              .send_timeout_ms = 30000,
                              .idle_timeout_ms = 30000,
                              .max_body_size = 1u << 30,
                              .large_header_buffer_size = 8192,
                              .large_header_buffers = 4,
                              .discard_unsafe_fields = true};
    tas.arena = wf_arena_create(4096);
    route = wf_route_create(tas.arena, "");
    tas.act.type = WF_ACTION_APP;
    tas.act.app = &ta.desc;
    assert_int_equal(
        wf_route_add_step(route, tas.arena, NULL, &tas.act, err, sizeof(err)),
        WF_OK);
    tas.snap.release = ta_release_snap;
    atomic_store(&tas.snap.refs, 1);
    tas.site = (wf_h1_site_t){.root = route, .hc = &tas.hc, .snap = &tas.snap};
    /* No connection bound: test_h1_stream's connections, handed to h1
     * without the listener, release counts they never took, which leaves
     * the listener's global count off by that much in this process. */
    wf_listen_set_limits(UINT_MAX, 0);
    wf_h1_init();
    assert_int_equal(wf_loops_create(2), WF_OK);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    tas.srv.listener.addrlen = sizeof(*sin);
    tas.srv.listener.name = "127.0.0.1:0";
    assert_int_equal(wf_listener_open(&tas.srv.listener), WF_OK);
    getsockname(tas.srv.listener.io.fd, (struct sockaddr *)sin, &len);
    ta.port = ntohs(sin->sin_port);
    wf_h1_server_init(&tas.srv, &tas.site, ta_release_srv);
    assert_int_equal(wf_listener_start(&tas.srv.listener), WF_OK);
    wf_app_mgr_init(&ta_ops);
    assert_int_equal(wf_loops_start(), WF_OK);
    sem_init(&tas.done, 0, 0);
    tas.task.handler = ta_on_reconcile;
    wf_task_post(wf_loop_get(0), &tas.task);
    sem_wait(&tas.done);
    return 0;
}

static int
ta_teardown(void **state)
{
    wf_unused(state);
    wf_listener_close(&tas.srv.listener);
    wf_loops_stop(false, 0);
    wf_loops_join();
    wf_app_mgr_release(&ta.desc, 1);
    wf_app_mgr_shutdown(); /* closes the sockets: the app threads end */
    for (unsigned i = 0; i < ta.napps; i++) {
        pthread_join(ta.apps[i]->thread, NULL);
        free(ta.apps[i]);
    }
    wf_loops_destroy();
    wf_arena_destroy(tas.arena);
    close(ta.file_fd);
    return 0;
}

int
wf_test_app_xchg(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_app_hello),
        cmocka_unit_test(test_app_resp_done),
        cmocka_unit_test(test_app_small_body_in_head),
        cmocka_unit_test(test_app_big_upload),
        cmocka_unit_test(test_app_echo_with_length),
        cmocka_unit_test(test_app_big_download),
        cmocka_unit_test(test_app_stream_without_length),
        cmocka_unit_test(test_app_file_whole_and_piece),
        cmocka_unit_test(test_app_short_body_cut),
        cmocka_unit_test(test_app_timeout_and_queue),
        cmocka_unit_test(test_app_crash_502_then_replaced),
        cmocka_unit_test(test_app_status),
    };

    return cmocka_run_group_tests_name("app_xchg", tests, ta_setup,
                                       ta_teardown);
}
