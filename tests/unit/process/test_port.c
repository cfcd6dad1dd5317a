/* Ports: framing, fragmentation and reassembly, fd passing, the write queue
 * under a full socket, senders on several threads, garbage from the peer,
 * type and direction checks, request streams, and one run on a real loop.
 * Most tests drive both ends by hand (manual mode) over a real socketpair,
 * in one thread, so that they are deterministic. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"
#include "process/port.h"
#include "unit.h"

enum {
    T_PING = 1,        /* main or router; recorded */
    T_FDS = 2,         /* from main only, up to 4 fds; recorded */
    T_ROUTER_ONLY = 3, /* from the router only; recorded */
    T_REPLY = 4,       /* either way; goes to the pending request */
    T_ECHO = 5,        /* either way; answered with T_REPLY, same bytes */
};

#define MAX_RECS 4096
#define M        1024 /* max_size in most tests, to keep packets small */

typedef struct rec {
    uint32_t type;
    uint64_t stream;
    size_t size;
    unsigned char *data; /* malloc'd copy of the payload */
    unsigned nfds;
    int fd; /* fds[0] when the side takes fds, else -1 */
} rec_t;

/* One end of a test pair; the port's owner, found with container_of. */
typedef struct side {
    wf_port_owner_t owner;
    wf_port_t *port;
    int raw_fd; /* the socket, for poll() */
    int nclosed;
    bool take_fds;
    _Atomic unsigned nrecs;
    rec_t *recs;
} side_t;

static void test_on_msg(wf_port_t *p, wf_port_msg_t *msg);
static void test_on_echo(wf_port_t *p, wf_port_msg_t *msg);

#define FROM_BOTH (WF_PORT_FROM(WF_PORT_MAIN) | WF_PORT_FROM(WF_PORT_ROUTER))

static const wf_port_type_t test_types[] = {
    {T_PING, "ping", test_on_msg, FROM_BOTH, 0},
    {T_FDS, "fds", test_on_msg, WF_PORT_FROM(WF_PORT_MAIN), WF_PORT_MAX_FDS},
    {T_ROUTER_ONLY, "router-only", test_on_msg, WF_PORT_FROM(WF_PORT_ROUTER),
     0},
    {T_REPLY, "reply", wf_port_reply_handler, FROM_BOTH, 0},
    {T_ECHO, "echo", test_on_echo, FROM_BOTH, 0},
};

static side_t *
test_side(wf_port_t *p)
{
    return wf_container_of(wf_port_get_owner(p), side_t, owner);
}

static void
test_on_msg(wf_port_t *p, wf_port_msg_t *msg)
{
    side_t *s = test_side(p);
    unsigned i = atomic_load(&s->nrecs);
    rec_t *r = &s->recs[i];
    size_t sum = 0;
    unsigned char *flat;

    assert_true(i < MAX_RECS);
    wf_list_for_each(l, &msg->chain)
    {
        sum += wf_container_of(l, wf_port_buf_t, link)->size;
    }
    assert_int_equal(sum, msg->size);
    flat = wf_port_msg_flatten(msg);
    assert_non_null(flat);
    assert_int_equal(flat[msg->size], 0);
    r->type = msg->type;
    r->stream = msg->stream;
    r->size = msg->size;
    r->data = malloc(msg->size + 1);
    memcpy(r->data, flat, msg->size);
    r->nfds = msg->nfds;
    r->fd = s->take_fds ? wf_port_msg_take_fd(msg, 0) : -1;
    atomic_store(&s->nrecs, i + 1);
}

static void
test_on_echo(wf_port_t *p, wf_port_msg_t *msg)
{
    unsigned char *flat = wf_port_msg_flatten(msg);

    assert_non_null(flat);
    assert_int_equal(wf_port_reply(p, msg, T_REPLY, flat, msg->size), WF_OK);
}

static void
test_on_close(wf_port_t *p)
{
    test_side(p)->nclosed++;
}

static void
side_init(side_t *s, int fd, wf_port_role_t self, wf_port_role_t peer)
{
    memset(s, 0, sizeof(*s));
    s->owner.on_close = test_on_close;
    s->raw_fd = fd;
    s->recs = calloc(MAX_RECS, sizeof(*s->recs));
    assert_non_null(s->recs);
    s->port = wf_port_create(fd, self, peer, test_types, wf_nitems(test_types),
                             &s->owner);
    assert_non_null(s->port);
}

static void
side_fini(side_t *s)
{
    wf_port_destroy(s->port);
    s->port = NULL;
    for (unsigned i = 0; i < atomic_load(&s->nrecs); i++) {
        free(s->recs[i].data);
        if (s->recs[i].fd != -1) {
            close(s->recs[i].fd);
        }
    }
    free(s->recs);
    s->recs = NULL;
}

/* a is main, b is the router, both with max_size (0: the default). */
static void
pair_open(side_t *a, side_t *b, size_t max_size)
{
    int fds[2];

    assert_int_equal(wf_port_pair(fds), WF_OK);
    side_init(a, fds[0], WF_PORT_MAIN, WF_PORT_ROUTER);
    side_init(b, fds[1], WF_PORT_ROUTER, WF_PORT_MAIN);
    if (max_size != 0) {
        assert_int_equal(wf_port_set_max_size(a->port, max_size), WF_OK);
        assert_int_equal(wf_port_set_max_size(b->port, max_size), WF_OK);
    }
}

/* Flushes and reads s once; true if there may be more to do. */
static bool
side_is_busy(side_t *s)
{
    struct pollfd pfd = {.fd = s->raw_fd, .events = POLLIN};
    int rc;

    if (s->port == NULL || wf_port_is_closed(s->port)) {
        return false;
    }
    rc = wf_port_flush(s->port);
    wf_port_on_readable(s->port);
    if (wf_port_is_closed(s->port)) {
        return false;
    }
    return rc == WF_AGAIN || poll(&pfd, 1, 0) == 1;
}

/* Moves data both ways until neither side has anything left to do. */
static void
pump(side_t *a, side_t *b)
{
    for (int i = 0; i < 1000000; i++) {
        bool busy_a = side_is_busy(a);
        bool busy_b = side_is_busy(b);

        /* b may have answered a in this round. */
        if (!busy_a && !busy_b && !side_is_busy(a)) {
            return;
        }
    }
    fail_msg("pump: no progress");
}

static void
fill_pattern(unsigned char *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        buf[i] = (unsigned char)(i * 31 + seed + (i >> 8));
    }
}

/* ---- framing ------------------------------------------------------------ */

static void
test_port_small_messages(void **state)
{
    static const struct {
        uint32_t type;
        uint64_t stream;
        const char *data;
    } cases[] = {
        {T_PING, 0, "hello"},
        {T_PING, 7, ""},
        {T_PING, UINT64_MAX, "{\"listeners\":{}}"},
        {T_FDS, 42, "x"},
    };
    side_t a, b;

    (void)state;
    pair_open(&a, &b, 0);
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        assert_int_equal(wf_port_send(a.port, cases[i].type, cases[i].stream,
                                      cases[i].data, strlen(cases[i].data),
                                      NULL, 0),
                         WF_OK);
    }
    pump(&a, &b);
    assert_int_equal(atomic_load(&b.nrecs), wf_nitems(cases));
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        rec_t *r = &b.recs[i];

        assert_int_equal(r->type, cases[i].type);
        assert_true(r->stream == cases[i].stream);
        assert_int_equal(r->size, strlen(cases[i].data));
        assert_memory_equal(r->data, cases[i].data, r->size);
        assert_int_equal(r->nfds, 0);
    }
    assert_int_equal(a.nclosed + b.nclosed, 0);
    side_fini(&a);
    side_fini(&b);
}

/* Each length arrives as one message, whole, with the handler called once;
 * at both the default and the smallest max_size. */
static void
test_port_fragment_boundaries(void **state)
{
    static const size_t max_sizes[] = {WF_PORT_MAX_SIZE_DEFAULT, M};

    (void)state;
    for (size_t k = 0; k < wf_nitems(max_sizes); k++) {
        size_t ms = max_sizes[k];
        size_t lens[] = {0, 1, ms - 1, ms, ms + 1, 3 * ms, 1 << 20};
        unsigned char *buf = malloc(1 << 20);
        side_t a, b;

        pair_open(&a, &b, ms);
        for (size_t i = 0; i < wf_nitems(lens); i++) {
            rec_t *r;

            fill_pattern(buf, lens[i], (unsigned)i);
            assert_int_equal(
                wf_port_send(a.port, T_PING, i, buf, lens[i], NULL, 0), WF_OK);
            pump(&a, &b);
            assert_int_equal(atomic_load(&b.nrecs), i + 1);
            r = &b.recs[i];
            assert_int_equal(r->size, lens[i]);
            assert_true(r->stream == i);
            assert_memory_equal(r->data, buf, lens[i]);
        }
        assert_int_equal(a.nclosed + b.nclosed, 0);
        free(buf);
        side_fini(&a);
        side_fini(&b);
    }
}

/* What max_size + 1 bytes look like on the wire: a full first fragment with
 * MORE, then a continuation of one byte. */
static void
test_port_wire_format(void **state)
{
    unsigned char buf[M + 1], in[sizeof(wf_port_hdr_t) + M];
    wf_port_hdr_t h;
    wf_port_t *p;
    int fds[2];
    ssize_t n;

    (void)state;
    assert_int_equal(wf_port_pair(fds), WF_OK);
    p = wf_port_create(fds[0], WF_PORT_MAIN, WF_PORT_ROUTER, test_types,
                       wf_nitems(test_types), NULL);
    assert_non_null(p);
    assert_int_equal(wf_port_set_max_size(p, M), WF_OK);
    fill_pattern(buf, sizeof(buf), 3);
    assert_int_equal(wf_port_send(p, T_PING, 9, buf, sizeof(buf), NULL, 0),
                     WF_OK);

    n = recv(fds[1], in, sizeof(in), 0);
    assert_int_equal(n, sizeof(h) + M);
    memcpy(&h, in, sizeof(h));
    assert_true(h.stream == 9);
    assert_int_equal(h.type, T_PING);
    assert_int_equal(h.size, M);
    assert_int_equal(h.total, M + 1);
    assert_int_equal(h.flags, WF_PORT_HDR_MORE);
    assert_int_equal(h.nfds, 0);
    assert_int_equal(h.version, WF_PORT_VERSION);
    assert_memory_equal(in + sizeof(h), buf, M);

    n = recv(fds[1], in, sizeof(in), 0);
    assert_int_equal(n, sizeof(h) + 1);
    memcpy(&h, in, sizeof(h));
    assert_int_equal(h.flags, WF_PORT_HDR_CONT);
    assert_int_equal(h.size, 1);
    assert_int_equal(h.total, M + 1);
    assert_int_equal(in[sizeof(h)], buf[M]);

    wf_port_destroy(p);
    close(fds[1]);
}

/* Messages of mixed sizes, fragmented or not, arrive in the order sent. */
static void
test_port_order(void **state)
{
    unsigned char buf[40000];
    side_t a, b;

    (void)state;
    pair_open(&a, &b, M);
    for (unsigned i = 0; i < 300; i++) {
        size_t n = 4 + (i * 997) % (sizeof(buf) - 4);

        fill_pattern(buf, n, i);
        memcpy(buf, &i, sizeof(i));
        assert_int_equal(wf_port_send(a.port, T_PING, 0, buf, n, NULL, 0),
                         WF_OK);
    }
    pump(&a, &b);
    assert_int_equal(atomic_load(&b.nrecs), 300);
    for (unsigned i = 0; i < 300; i++) {
        size_t n = 4 + (i * 997) % (sizeof(buf) - 4);

        fill_pattern(buf, n, i);
        memcpy(buf, &i, sizeof(i));
        assert_int_equal(b.recs[i].size, n);
        assert_memory_equal(b.recs[i].data, buf, n);
    }
    side_fini(&a);
    side_fini(&b);
}

/* ---- fd passing --------------------------------------------------------- */

static bool
pipe_is_closed(int rfd)
{
    char c;

    return read(rfd, &c, 1) == 0; /* EOF: no write end is left open */
}

static void
test_port_fd_passing(void **state)
{
    int pipefd[2], fds[3];
    char c = 0;
    side_t a, b;

    (void)state;
    pair_open(&a, &b, 0);

    /* The handler keeps the read end; data written here comes out there. */
    b.take_fds = true;
    assert_int_equal(pipe2(pipefd, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(wf_port_send(a.port, T_FDS, 0, "r", 1, &pipefd[0], 1),
                     WF_OK);
    close(pipefd[0]); /* the port sent a duplicate */
    pump(&a, &b);
    assert_int_equal(atomic_load(&b.nrecs), 1);
    assert_int_equal(b.recs[0].nfds, 1);
    assert_true(b.recs[0].fd >= 0);
    assert_int_equal(write(pipefd[1], "z", 1), 1);
    assert_int_equal(read(b.recs[0].fd, &c, 1), 1);
    assert_int_equal(c, 'z');
    close(pipefd[1]);

    /* fds the handler does not take are closed after it returns; several
     * fds in one message, with a fragmented payload. */
    b.take_fds = false;
    assert_int_equal(pipe2(pipefd, O_CLOEXEC | O_NONBLOCK), 0);
    fds[0] = fds[1] = fds[2] = pipefd[1];
    {
        unsigned char big[WF_PORT_MAX_SIZE_DEFAULT * 2 + 5];

        fill_pattern(big, sizeof(big), 1);
        assert_int_equal(
            wf_port_send(a.port, T_FDS, 0, big, sizeof(big), fds, 3), WF_OK);
    }
    close(pipefd[1]);
    pump(&a, &b);
    assert_int_equal(atomic_load(&b.nrecs), 2);
    assert_int_equal(b.recs[1].nfds, 3);
    assert_true(pipe_is_closed(pipefd[0]));
    close(pipefd[0]);

    /* More fds than the type allows is refused at the sender. */
    assert_int_equal(wf_port_send(a.port, T_PING, 0, "", 0, fds, 1), WF_ERROR);
    assert_int_equal(a.nclosed + b.nclosed, 0);
    side_fini(&a);
    side_fini(&b);
}

/* An app process's sockets travel in one message (WF_APP_MAX_FDS of
 * them, process/port_msg_types.h): every one of the WF_PORT_MAX_FDS fds
 * arrives, in order, and one more is refused at the sender. */
static void
test_port_many_fds(void **state)
{
    side_t a, b;
    int fds[WF_PORT_MAX_FDS + 1];
    int pipes[WF_PORT_MAX_FDS][2];

    (void)state;
    assert_true(WF_PORT_MAX_FDS >= 64);
    pair_open(&a, &b, 0);
    for (unsigned i = 0; i < WF_PORT_MAX_FDS; i++) {
        assert_int_equal(pipe2(pipes[i], O_CLOEXEC | O_NONBLOCK), 0);
        fds[i] = pipes[i][1];
    }
    fds[WF_PORT_MAX_FDS] = pipes[0][1];
    assert_int_equal(
        wf_port_send(a.port, T_FDS, 0, NULL, 0, fds, WF_PORT_MAX_FDS + 1),
        WF_ERROR);
    assert_int_equal(
        wf_port_send(a.port, T_FDS, 0, "many", 4, fds, WF_PORT_MAX_FDS), WF_OK);
    pump(&a, &b);
    assert_int_equal(atomic_load(&b.nrecs), 1);
    assert_int_equal(b.recs[0].nfds, WF_PORT_MAX_FDS);
    /* The received duplicates were closed after the handler: once our
     * write ends close too, every reader sees EOF (none leaked). */
    for (unsigned i = 0; i < WF_PORT_MAX_FDS; i++) {
        close(pipes[i][1]);
        assert_true(pipe_is_closed(pipes[i][0]));
        close(pipes[i][0]);
    }
    assert_int_equal(a.nclosed + b.nclosed, 0);
    side_fini(&a);
    side_fini(&b);
}

/* ---- the write queue ---------------------------------------------------- */

/* Fill the socket until it refuses, queue more, then drain as the peer
 * reads: nothing is lost, nothing reordered. */
static void
test_port_full_socket(void **state)
{
    unsigned char buf[8000];
    unsigned n = 0;
    side_t a, b;

    (void)state;
    pair_open(&a, &b, M);
    while (wf_port_flush(a.port) == WF_OK) {
        assert_true(n < 100000);
        memcpy(buf, &n, sizeof(n));
        assert_int_equal(
            wf_port_send(a.port, T_PING, 0, buf, sizeof(buf), NULL, 0), WF_OK);
        n++;
    }
    for (unsigned i = 0; i < 20; i++, n++) {
        memcpy(buf, &n, sizeof(n));
        assert_int_equal(
            wf_port_send(a.port, T_PING, 0, buf, sizeof(buf), NULL, 0), WF_OK);
    }
    assert_int_equal(wf_port_flush(a.port), WF_AGAIN);
    pump(&a, &b);
    assert_int_equal(wf_port_flush(a.port), WF_OK);
    assert_int_equal(atomic_load(&b.nrecs), n);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(b.recs[i].size, sizeof(buf));
        assert_memory_equal(b.recs[i].data, &i, sizeof(i));
    }
    side_fini(&a);
    side_fini(&b);
}

#define NTHREADS   4
#define PER_THREAD 300

typedef struct sender {
    pthread_t tid;
    unsigned id;
    wf_port_t *port;
} sender_t;

static size_t
sender_len(unsigned id, unsigned seq)
{
    return 8 + (id * 1000 + seq * 137) % 5000;
}

static void *
sender_run(void *arg)
{
    sender_t *s = arg;
    unsigned char buf[8 + 5000];

    for (unsigned seq = 0; seq < PER_THREAD; seq++) {
        size_t n = sender_len(s->id, seq);

        fill_pattern(buf, n, s->id * 7 + seq);
        memcpy(buf, &s->id, 4);
        memcpy(buf + 4, &seq, 4);
        if (wf_port_send(s->port, T_PING, 0, buf, n, NULL, 0) != WF_OK) {
            return (void *)1;
        }
    }
    return NULL;
}

/* Threads send at once while this thread reads; each thread's messages
 * arrive whole and in its order. */
static void
test_port_threads(void **state)
{
    sender_t senders[NTHREADS];
    unsigned next[NTHREADS] = {0};
    unsigned char buf[8 + 5000];
    side_t a, b;

    (void)state;
    pair_open(&a, &b, M);
    for (unsigned i = 0; i < NTHREADS; i++) {
        senders[i] = (sender_t){.id = i, .port = a.port};
        assert_int_equal(
            pthread_create(&senders[i].tid, NULL, sender_run, &senders[i]), 0);
    }
    while (atomic_load(&b.nrecs) < NTHREADS * PER_THREAD) {
        wf_port_flush(a.port);
        wf_port_on_readable(b.port);
    }
    for (unsigned i = 0; i < NTHREADS; i++) {
        void *ret;

        pthread_join(senders[i].tid, &ret);
        assert_null(ret);
    }
    for (unsigned i = 0; i < NTHREADS * PER_THREAD; i++) {
        rec_t *r = &b.recs[i];
        unsigned id, seq;

        memcpy(&id, r->data, 4);
        memcpy(&seq, r->data + 4, 4);
        assert_true(id < NTHREADS);
        assert_int_equal(seq, next[id]);
        next[id]++;
        assert_int_equal(r->size, sender_len(id, seq));
        fill_pattern(buf, r->size, id * 7 + seq);
        assert_memory_equal(r->data + 8, buf + 8, r->size - 8);
    }
    assert_int_equal(a.nclosed + b.nclosed, 0);
    side_fini(&a);
    side_fini(&b);
}

/* ---- garbage from the peer ---------------------------------------------- */

typedef struct raw_pkt {
    wf_port_hdr_t h;
    size_t n;      /* payload bytes sent (h.size unless lying) */
    unsigned nfds; /* pipe write ends attached */
    size_t cut;    /* if not 0, send only this many bytes in all */
} raw_pkt_t;

#define HDR(t, st, sz, tot, fl, nf)                                \
    {                                                              \
        .stream = (st), .type = (t), .size = (sz), .total = (tot), \
        .flags = (fl), .nfds = (nf), .version = WF_PORT_VERSION    \
    }
#define PKT(t, st, sz, tot, fl)                    \
    {                                              \
        .h = HDR(t, st, sz, tot, fl, 0), .n = (sz) \
    }

#define MORE WF_PORT_HDR_MORE
#define CONT WF_PORT_HDR_CONT

/* Sends pkt raw on fd, attaching pkt->nfds copies of wfd. */
static void
raw_send(int fd, const raw_pkt_t *pkt, int wfd)
{
    static unsigned char out[sizeof(wf_port_hdr_t) + 2 * M];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * (WF_PORT_MAX_FDS + 1))];
    } cbuf;
    struct iovec iov = {.iov_base = out};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    int fds[WF_PORT_MAX_FDS + 1];

    assert_true(pkt->n <= 2 * M);
    memcpy(out, &pkt->h, sizeof(pkt->h));
    fill_pattern(out + sizeof(pkt->h), pkt->n, 0);
    iov.iov_len = pkt->cut != 0 ? pkt->cut : sizeof(pkt->h) + pkt->n;
    if (pkt->nfds > 0) {
        struct cmsghdr *cm;

        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * pkt->nfds);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * pkt->nfds);
        for (unsigned i = 0; i < pkt->nfds; i++) {
            fds[i] = wfd;
        }
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * pkt->nfds);
    }
    assert_int_equal(sendmsg(fd, &mh, 0), (ssize_t)iov.iov_len);
}

typedef struct raw_case {
    const char *name;
    bool closes; /* the port must close; else it must stay open */
    unsigned npkts;
    raw_pkt_t pkts[3];
} raw_case_t;

static const raw_case_t raw_cases[] = {
    {"short header", true, 1, {{.h = HDR(T_PING, 0, 0, 0, 0, 0), .cut = 10}}},
    {"bad version",
     true,
     1,
     {{.h = {.type = T_PING, .size = 1, .total = 1, .version = 2}, .n = 1}}},
    {"unknown flags", true, 1, {PKT(T_PING, 0, 1, 1, 0x4)}},
    {"length mismatch", true, 1, {{.h = HDR(T_PING, 0, 10, 10, 0, 0), .n = 5}}},
    {"continuation without a start", true, 1, {PKT(T_PING, 0, 5, 5, CONT)}},
    {"new message inside a fragmented one",
     true,
     2,
     {PKT(T_PING, 1, M, 2 * M, MORE), PKT(T_PING, 2, M, M, 0)}},
    {"fragment of another stream",
     true,
     2,
     {PKT(T_PING, 1, M, 2 * M, MORE), PKT(T_PING, 2, M, 2 * M, CONT)}},
    {"fragment of another type",
     true,
     2,
     {PKT(T_PING, 1, M, 2 * M, MORE), PKT(T_ECHO, 1, M, 2 * M, CONT)}},
    {"fragments exceed the total",
     true,
     2,
     {PKT(T_PING, 1, M, M + 5, MORE), PKT(T_PING, 1, 10, M + 5, CONT)}},
    {"fragments short of the total", true, 1, {PKT(T_PING, 0, 5, 10, 0)}},
    {"message too large",
     true,
     1,
     {PKT(T_PING, 0, M, WF_PORT_MSG_MAX + 1u, MORE)}},
    {"short non-final fragment", true, 1, {PKT(T_PING, 0, 10, 20, MORE)}},
    {"fragment larger than max_size",
     true,
     1,
     {PKT(T_PING, 0, M + 1, M + 1, 0)}},
    {"fds where none are allowed",
     true,
     1,
     {{.h = HDR(T_PING, 0, 1, 1, 0, 1), .n = 1, .nfds = 1}}},
    {"fd count mismatch", true, 1, {{.h = HDR(T_FDS, 0, 1, 1, 0, 1), .n = 1}}},
    {"too many fds",
     true,
     1,
     {{.h = HDR(T_FDS, 0, 1, 1, 0, WF_PORT_MAX_FDS + 1),
       .n = 1,
       .nfds = WF_PORT_MAX_FDS + 1}}},
    {"fds on a continuation",
     true,
     2,
     {PKT(T_FDS, 1, M, 2 * M, MORE),
      {.h = HDR(T_FDS, 1, M, 2 * M, CONT, 1), .n = M, .nfds = 1}}},
    {"unknown type, with an fd",
     false,
     1,
     {{.h = HDR(99, 0, 3, 3, 0, 1), .n = 3, .nfds = 1}}},
    {"unknown type, fragmented",
     false,
     2,
     {PKT(99, 1, M, M + 1, MORE), PKT(99, 1, 1, M + 1, CONT)}},
    {"type the peer may not send", false, 1, {PKT(T_ROUTER_ONLY, 0, 4, 4, 0)}},
    {"stale reply", false, 1, {PKT(T_REPLY, 424242, 2, 2, 0)}},
};

/* Each case goes to a fresh port (router <- main, max_size M).  Garbage
 * closes it, once, with every fd it carried; the rest is dropped and a
 * good message still gets through. */
static void
test_port_garbage(void **state)
{
    (void)state;
    for (size_t i = 0; i < wf_nitems(raw_cases); i++) {
        const raw_case_t *c = &raw_cases[i];
        int fds[2], pipefd[2];
        raw_pkt_t good = PKT(T_PING, 5, 2, 2, 0);
        side_t b;
        int rc;

        print_message("  raw: %s\n", c->name);
        assert_int_equal(wf_port_pair(fds), WF_OK);
        assert_int_equal(pipe2(pipefd, O_CLOEXEC | O_NONBLOCK), 0);
        side_init(&b, fds[1], WF_PORT_ROUTER, WF_PORT_MAIN);
        assert_int_equal(wf_port_set_max_size(b.port, M), WF_OK);
        for (unsigned k = 0; k < c->npkts; k++) {
            raw_send(fds[0], &c->pkts[k], pipefd[1]);
        }
        close(pipefd[1]);
        if (!c->closes) {
            raw_send(fds[0], &good, -1);
        }
        do {
            rc = wf_port_on_readable(b.port);
        } while (rc == WF_OK);

        assert_true(pipe_is_closed(pipefd[0]));
        if (c->closes) {
            assert_int_equal(rc, WF_ERROR);
            assert_int_equal(b.nclosed, 1);
            assert_true(wf_port_is_closed(b.port));
            assert_int_equal(atomic_load(&b.nrecs), 0);
            assert_int_equal(wf_port_on_readable(b.port), WF_ERROR);
            assert_int_equal(b.nclosed, 1);
        } else {
            assert_int_equal(rc, WF_AGAIN);
            assert_int_equal(b.nclosed, 0);
            assert_int_equal(atomic_load(&b.nrecs), 1);
            assert_true(b.recs[0].stream == 5);
        }
        close(pipefd[0]);
        close(fds[0]);
        side_fini(&b);
    }
}

/* The sender refuses what the receiver would drop. */
static void
test_port_send_checks(void **state)
{
    side_t a, b;

    (void)state;
    pair_open(&a, &b, 0);
    assert_int_equal(wf_port_send(a.port, T_ROUTER_ONLY, 0, "x", 1, NULL, 0),
                     WF_ERROR);
    assert_int_equal(wf_port_send(a.port, 99, 0, "x", 1, NULL, 0), WF_ERROR);
    assert_int_equal(wf_port_send(a.port, T_PING, 0, NULL, 1, NULL, 0),
                     WF_ERROR);
    assert_int_equal(
        wf_port_send(a.port, T_PING, 0, "x", WF_PORT_MSG_MAX + 1u, NULL, 0),
        WF_ERROR);
    assert_int_equal(wf_port_send(b.port, T_ROUTER_ONLY, 0, "x", 1, NULL, 0),
                     WF_OK);
    assert_int_equal(wf_port_set_max_size(a.port, M - 1), WF_ERROR);
    assert_int_equal(wf_port_set_max_size(a.port, WF_PORT_MAX_SIZE_MAX + 1),
                     WF_ERROR);
    pump(&a, &b);
    assert_int_equal(atomic_load(&a.nrecs), 1);
    side_fini(&a);
    side_fini(&b);
}

static void
test_port_bad_table(void **state)
{
    static const wf_port_type_t unsorted[] = {
        {2, "b", test_on_msg, FROM_BOTH, 0},
        {1, "a", test_on_msg, FROM_BOTH, 0},
    };
    static const wf_port_type_t no_handler[] = {{1, "a", NULL, FROM_BOTH, 0}};
    int fds[2];

    (void)state;
    assert_int_equal(wf_port_pair(fds), WF_OK);
    assert_null(wf_port_create(fds[0], WF_PORT_MAIN, WF_PORT_ROUTER, unsorted,
                               2, NULL));
    assert_null(wf_port_create(fds[0], WF_PORT_MAIN, WF_PORT_ROUTER, no_handler,
                               1, NULL));
    assert_null(wf_port_create(fds[0], WF_PORT_MAIN, WF_PORT_NROLES, test_types,
                               wf_nitems(test_types), NULL));
    close(fds[0]);
    close(fds[1]);
}

/* ---- streams and requests ----------------------------------------------- */

typedef struct test_req {
    wf_port_request_t req;
    int ncalls;
    int status;
    char data[16];
} test_req_t;

static void
test_on_reply(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    test_req_t *t = wf_container_of(req, test_req_t, req);

    t->ncalls++;
    t->status = status;
    if (msg != NULL) {
        unsigned char *flat = wf_port_msg_flatten(msg);

        assert_true(msg->size < sizeof(t->data));
        memcpy(t->data, flat, msg->size + 1);
    }
}

static void
test_port_stream_ids(void **state)
{
    uint64_t last = wf_port_stream_new();

    (void)state;
    assert_true(last != 0);
    for (int i = 0; i < 10000; i++) {
        uint64_t id = wf_port_stream_new();

        assert_true(id > last);
        last = id;
    }
}

static void
test_port_requests(void **state)
{
    test_req_t r[40];
    side_t a, b;

    (void)state;
    memset(r, 0, sizeof(r));
    pair_open(&a, &b, 0);

    /* Many requests at once (the table grows), each matched by its reply. */
    for (int i = 0; i < 40; i++) {
        char s[16];
        int n = snprintf(s, sizeof(s), "req%d", i);

        r[i].req.handler = test_on_reply;
        assert_int_equal(wf_port_request_add(a.port, &r[i].req), WF_OK);
        assert_int_equal(
            wf_port_send(a.port, T_ECHO, r[i].req.stream, s, n, NULL, 0),
            WF_OK);
    }
    pump(&a, &b);
    for (int i = 0; i < 40; i++) {
        char s[16];

        snprintf(s, sizeof(s), "req%d", i);
        assert_int_equal(r[i].ncalls, 1);
        assert_int_equal(r[i].status, WF_OK);
        assert_string_equal(r[i].data, s);
        assert_false(wf_port_request_del(a.port, &r[i].req));
    }

    /* A cancelled request is not called back; its late reply is dropped. */
    memset(r, 0, sizeof(r));
    r[0].req.handler = test_on_reply;
    assert_int_equal(wf_port_request_add(a.port, &r[0].req), WF_OK);
    assert_true(wf_port_request_del(a.port, &r[0].req));
    assert_false(wf_port_request_del(a.port, &r[0].req));
    assert_int_equal(
        wf_port_send(a.port, T_ECHO, r[0].req.stream, "late", 4, NULL, 0),
        WF_OK);
    pump(&a, &b);
    assert_int_equal(r[0].ncalls, 0);
    assert_null(wf_port_request_take(a.port, r[0].req.stream));

    /* The peer goes away: on_close once, pending requests failed. */
    for (int i = 1; i < 4; i++) {
        r[i].req.handler = test_on_reply;
        assert_int_equal(wf_port_request_add(a.port, &r[i].req), WF_OK);
    }
    wf_port_destroy(b.port);
    b.port = NULL;
    pump(&a, &b);
    assert_int_equal(a.nclosed, 1);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(r[i].ncalls, 1);
        assert_int_equal(r[i].status, WF_ERROR);
    }
    assert_int_equal(wf_port_request_add(a.port, &r[0].req), WF_ERROR);
    assert_int_equal(wf_port_send(a.port, T_PING, 0, "x", 1, NULL, 0),
                     WF_ERROR);
    assert_int_equal(wf_port_flush(a.port), WF_ERROR);
    assert_int_equal(a.nclosed, 1);
    assert_int_equal(b.nclosed, 0); /* destroy never calls on_close */
    side_fini(&a);
    side_fini(&b);
}

/* A write error (the peer is gone) is reported by the next flush, not by
 * the send that met it. */
static void
test_port_write_error(void **state)
{
    side_t a, b;

    (void)state;
    pair_open(&a, &b, 0);
    wf_port_destroy(b.port);
    b.port = NULL;
    assert_int_equal(wf_port_send(a.port, T_PING, 0, "x", 1, NULL, 0), WF_OK);
    assert_int_equal(a.nclosed, 0);
    assert_int_equal(wf_port_flush(a.port), WF_ERROR);
    assert_int_equal(a.nclosed, 1);
    side_fini(&a);
    side_fini(&b);
}

/* ---- on a real loop ----------------------------------------------------- */

typedef struct loop_test {
    wf_task_t post_task;
    wf_task_t destroy_task;
    wf_port_t *port;
    wf_loop_t *loop;
    _Atomic int ran_on_owner; /* 0 not yet, 1 on the owner, -1 elsewhere */
} loop_test_t;

static void
loop_on_post(wf_task_t *task)
{
    loop_test_t *t = wf_container_of(task, loop_test_t, post_task);

    atomic_store(&t->ran_on_owner, wf_loop_current() == t->loop ? 1 : -1);
}

static void
loop_on_destroy(wf_task_t *task)
{
    loop_test_t *t = wf_container_of(task, loop_test_t, destroy_task);

    wf_port_destroy(t->port);
}

static void
wait_readable(side_t *s)
{
    struct pollfd pfd = {.fd = s->raw_fd, .events = POLLIN};

    assert_true(poll(&pfd, 1, 5000) == 1);
}

/* a is started on a loop thread; this thread sends through it (so the
 * loop must flush on EPOLLOUT) and drives b by hand. */
static void
test_port_on_loop(void **state)
{
    static unsigned char buf[20000];
    loop_test_t t = {0};
    test_req_t r = {0};
    side_t a, b;
    int rc;

    (void)state;
    assert_int_equal(wf_loops_create(1), WF_OK);
    t.loop = wf_loop_get(0);
    assert_int_equal(wf_loops_start(), WF_OK);
    pair_open(&a, &b, 0);
    t.port = a.port;
    assert_int_equal(wf_port_start(a.port, t.loop), WF_OK);

    for (unsigned i = 0; i < 500; i++) {
        memcpy(buf, &i, sizeof(i));
        assert_int_equal(
            wf_port_send(a.port, T_PING, 0, buf, sizeof(buf), NULL, 0), WF_OK);
    }
    while (atomic_load(&b.nrecs) < 500) {
        wait_readable(&b);
        assert_int_not_equal(wf_port_on_readable(b.port), WF_ERROR);
    }
    for (unsigned i = 0; i < 500; i++) {
        assert_memory_equal(b.recs[i].data, &i, sizeof(i));
    }

    /* A request answered by a handler on the loop thread. */
    r.req.handler = test_on_reply;
    assert_int_equal(wf_port_request_add(b.port, &r.req), WF_OK);
    assert_int_equal(
        wf_port_send(b.port, T_ECHO, r.req.stream, "ok", 2, NULL, 0), WF_OK);
    while (r.ncalls == 0) {
        wait_readable(&b);
        assert_int_not_equal(wf_port_on_readable(b.port), WF_ERROR);
    }
    assert_string_equal(r.data, "ok");

    t.post_task.handler = loop_on_post;
    assert_int_equal(wf_port_post(a.port, &t.post_task), WF_OK);
    t.destroy_task.handler = loop_on_destroy;
    assert_int_equal(wf_port_post(a.port, &t.destroy_task), WF_OK);
    a.port = NULL;
    do {
        wait_readable(&b);
        rc = wf_port_on_readable(b.port);
    } while (rc != WF_ERROR);
    assert_int_equal(b.nclosed, 1);
    assert_int_equal(atomic_load(&t.ran_on_owner), 1);

    wf_loops_stop(false, 0);
    wf_loops_join();
    wf_loops_destroy(); /* later groups create loops of their own */
    side_fini(&a);
    side_fini(&b);
    wf_loops_destroy(); /* later groups create loops of their own */
}

int
wf_test_port(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_port_small_messages),
        cmocka_unit_test(test_port_fragment_boundaries),
        cmocka_unit_test(test_port_wire_format),
        cmocka_unit_test(test_port_order),
        cmocka_unit_test(test_port_fd_passing),
        cmocka_unit_test(test_port_many_fds),
        cmocka_unit_test(test_port_full_socket),
        cmocka_unit_test(test_port_threads),
        cmocka_unit_test(test_port_garbage),
        cmocka_unit_test(test_port_send_checks),
        cmocka_unit_test(test_port_bad_table),
        cmocka_unit_test(test_port_stream_ids),
        cmocka_unit_test(test_port_requests),
        cmocka_unit_test(test_port_write_error),
        cmocka_unit_test(test_port_on_loop),
    };
    int failed;

    /* The garbage tests log errors on purpose. */
    wf_log_set_level(getenv("PORT_DEBUG") ? WF_LOG_DEBUG : WF_LOG_ALERT);
    failed = cmocka_run_group_tests_name("port", tests, NULL, NULL);
    wf_log_set_level(WF_LOG_INFO);
    return failed;
}
