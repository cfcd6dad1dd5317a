/* Ports: see port.h for the API and docs/internals/ipc.md for the protocol
 * and the threading rules. */
#include "process/port.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"

#define PORT_READ_BATCH  64 /* packets per wf_port_on_readable() */
#define PORT_SEND_BATCH  16 /* packets per sendmmsg() */
#define PORT_BUCKETS_MIN 16 /* pending-request hash buckets */
#define PORT_CMSG_SPACE  CMSG_SPACE(sizeof(int) * WF_PORT_MAX_FDS)
#define PORT_RING        16 /* packets per recvmmsg() */

_Static_assert(sizeof(wf_port_hdr_t) == 24, "the header has no padding");

/* One outgoing packet: a header and one fragment of payload. */
typedef struct port_pkt {
    wf_list_t link; /* in wf_port_t.wq */
    wf_port_hdr_t hdr;
    int fds[WF_PORT_MAX_FDS]; /* hdr.nfds duplicates, owned */
    unsigned char data[];     /* hdr.size bytes */
} port_pkt_t;

struct wf_port {
    wf_io_t io; /* io.fd: the socket; -1 once closed */
    wf_port_role_t self;
    wf_port_role_t peer;
    const wf_port_type_t *types; /* borrowed, sorted by type */
    size_t ntypes;
    wf_port_owner_t *user; /* borrowed; may be NULL */
    size_t max_size;       /* payload bytes per fragment */
    _Atomic unsigned refs; /* the creator's, callbacks', posted task */
    wf_task_t write_task;  /* flushes on the owner thread */

    pthread_mutex_t lock; /* guards the fields down to nreqs */
    wf_loop_t *owner;     /* NULL in manual mode */
    bool closed;          /* written on the owner thread only */
    bool blocked;         /* sendmsg() said EAGAIN; owner flushes */
    bool task_posted;     /* write_task is queued on owner */
    bool corked;          /* wf_port_cork(): sends queue, none flushes */
    int werr;             /* errno of a failed sendmsg(), or 0 */
    wf_list_t wq;         /* port_pkt_t, oldest first */
    wf_list_t *buckets;   /* wf_port_request_t by stream; or NULL */
    size_t nbuckets;      /* a power of 2, or 0 */
    size_t nreqs;

    /* Receive side: the owner thread only. */
    wf_port_buf_t *rbuf;           /* spare buffer of max_size, or NULL */
    bool in_progress;              /* a fragmented message is open in `in` */
    const wf_port_type_t *in_type; /* NULL: the open message is dropped */
    uint32_t in_total;             /* its announced payload size */
    uint32_t in_got;               /* payload bytes received so far */
    bool read_yield;               /* wf_port_read_yield(): batch over */
    wf_port_msg_t in;
};

static _Atomic uint64_t port_stream_last;

static const char *const port_role_names[WF_PORT_NROLES] = {
    [WF_PORT_MAIN] = "main",
    [WF_PORT_CONTROLLER] = "controller",
    [WF_PORT_ROUTER] = "router",
    [WF_PORT_APP] = "app",
};

static void port_on_io(wf_io_t *io, uint32_t events);
static void port_on_write_task(wf_task_t *task);

const char *
wf_port_role_name(wf_port_role_t role)
{
    return (unsigned)role < WF_PORT_NROLES ? port_role_names[role] : "?";
}

wf_port_role_t
wf_port_peer(const wf_port_t *p)
{
    return p->peer;
}

wf_port_owner_t *
wf_port_get_owner(const wf_port_t *p)
{
    return p->user;
}

uint64_t
wf_port_stream_new(void)
{
    return atomic_fetch_add(&port_stream_last, 1) + 1;
}

static void
port_close_fds(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (fds[i] != -1) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

static wf_port_buf_t *
port_buf_alloc(size_t cap)
{
    wf_port_buf_t *b = malloc(sizeof(*b) + cap);

    if (b == NULL) {
        wf_log_error(errno, "port: malloc(%zu) failed", cap);
        return NULL;
    }
    wf_list_init(&b->link);
    b->size = 0;
    b->cap = cap;
    return b;
}

static void
port_chain_free(wf_list_t *chain)
{
    while (!wf_list_is_empty(chain)) {
        wf_port_buf_t *b = wf_container_of(chain->next, wf_port_buf_t, link);

        wf_list_del(&b->link);
        free(b);
    }
}

static void
port_msg_init(wf_port_msg_t *msg)
{
    memset(msg, 0, sizeof(*msg));
    wf_list_init(&msg->chain);
    for (unsigned i = 0; i < WF_PORT_MAX_FDS; i++) {
        msg->fds[i] = -1;
    }
}

/* Frees the payload and closes the fds nobody took. */
static void
port_msg_release(wf_port_msg_t *msg)
{
    port_close_fds(msg->fds, msg->nfds);
    port_chain_free(&msg->chain);
    port_msg_init(msg);
}

/* Moves src's contents to dst (the list head must be relinked). */
static void
port_msg_move(wf_port_msg_t *dst, wf_port_msg_t *src)
{
    *dst = *src;
    wf_list_init(&dst->chain);
    if (!wf_list_is_empty(&src->chain)) {
        dst->chain.next = src->chain.next;
        dst->chain.prev = src->chain.prev;
        dst->chain.next->prev = &dst->chain;
        dst->chain.prev->next = &dst->chain;
    }
    port_msg_init(src);
}

static void
port_pkt_free(port_pkt_t *pkt)
{
    port_close_fds(pkt->fds, pkt->hdr.nfds);
    free(pkt);
}

static void
port_pkts_free(wf_list_t *pkts)
{
    while (!wf_list_is_empty(pkts)) {
        port_pkt_t *pkt = wf_container_of(pkts->next, port_pkt_t, link);

        wf_list_del(&pkt->link);
        port_pkt_free(pkt);
    }
}

/* Appends all of src to the tail of dst, leaving src empty. */
static void
port_list_splice(wf_list_t *dst, wf_list_t *src)
{
    while (!wf_list_is_empty(src)) {
        wf_list_t *l = src->next;

        wf_list_del(l);
        wf_list_add_tail(dst, l);
    }
}

int
wf_port_pair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
                   fds)
        == -1) {
        wf_log_error(errno, "socketpair(AF_UNIX, SOCK_SEQPACKET) failed");
        return WF_ERROR;
    }
    return WF_OK;
}

static bool
port_types_are_valid(const wf_port_type_t *types, size_t ntypes)
{
    for (size_t i = 0; i < ntypes; i++) {
        if (types[i].handler == NULL || types[i].max_fds > WF_PORT_MAX_FDS
            || (i > 0 && types[i].type <= types[i - 1].type)) {
            wf_log_alert(0, "port: bad type table entry %zu (type %" PRIu32 ")",
                         i, types[i].type);
            return false;
        }
    }
    return true;
}

wf_port_t *
wf_port_create(int fd, wf_port_role_t self, wf_port_role_t peer,
               const wf_port_type_t *types, size_t ntypes,
               wf_port_owner_t *owner)
{
    wf_port_t *p;

    if ((unsigned)self >= WF_PORT_NROLES || (unsigned)peer >= WF_PORT_NROLES
        || !port_types_are_valid(types, ntypes)) {
        wf_log_alert(0, "port: bad arguments to wf_port_create()");
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        wf_log_error(errno, "port: calloc() failed");
        return NULL;
    }
    p->io.fd = fd;
    p->io.handler = port_on_io;
    p->self = self;
    p->peer = peer;
    p->types = types;
    p->ntypes = ntypes;
    p->user = owner;
    p->max_size = WF_PORT_MAX_SIZE_DEFAULT;
    atomic_init(&p->refs, 1);
    p->write_task.handler = port_on_write_task;
    wf_list_init(&p->write_task.link);
    pthread_mutex_init(&p->lock, NULL);
    wf_list_init(&p->wq);
    port_msg_init(&p->in);
    return p;
}

int
wf_port_set_max_size(wf_port_t *p, size_t size)
{
    if (size < WF_PORT_MAX_SIZE_MIN || size > WF_PORT_MAX_SIZE_MAX) {
        wf_log_error(0, "port: max_size %zu out of range", size);
        return WF_ERROR;
    }
    p->max_size = size;
    free(p->rbuf);
    p->rbuf = NULL;
    return WF_OK;
}

int
wf_port_start(wf_port_t *p, wf_loop_t *loop)
{
    bool post;

    pthread_mutex_lock(&p->lock);
    p->owner = loop; /* before the loop can see the fd */
    pthread_mutex_unlock(&p->lock);
    if (wf_io_add(loop, &p->io, EPOLLIN) != WF_OK) {
        pthread_mutex_lock(&p->lock);
        p->owner = NULL;
        pthread_mutex_unlock(&p->lock);
        return WF_ERROR;
    }
    pthread_mutex_lock(&p->lock);
    /* Sends made in manual mode may have left packets behind. */
    post = !wf_list_is_empty(&p->wq) && !p->task_posted;
    if (post) {
        p->task_posted = true;
        wf_port_ref(p);
    }
    pthread_mutex_unlock(&p->lock);
    if (post) {
        wf_task_post(loop, &p->write_task);
    }
    return WF_OK;
}

void
wf_port_ref(wf_port_t *p)
{
    atomic_fetch_add(&p->refs, 1);
}

static void
port_free(wf_port_t *p)
{
    WF_ASSERT(p->closed);
    port_msg_release(&p->in);
    free(p->rbuf);
    free(p->buckets);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void
wf_port_unref(wf_port_t *p)
{
    if (atomic_fetch_sub(&p->refs, 1) == 1) {
        port_free(p);
    }
}

bool
wf_port_is_closed(wf_port_t *p)
{
    bool closed;

    pthread_mutex_lock(&p->lock);
    closed = p->closed;
    pthread_mutex_unlock(&p->lock);
    return closed;
}

/* ---- pending requests ---------------------------------------------------
 * A chained hash table keyed by stream id, under p->lock. */

static int
port_buckets_grow(wf_port_t *p)
{
    size_t n = p->nbuckets == 0 ? PORT_BUCKETS_MIN : p->nbuckets * 2;
    wf_list_t *b = malloc(n * sizeof(*b));

    if (b == NULL) {
        wf_log_error(errno, "port: malloc(request table) failed");
        return WF_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        wf_list_init(&b[i]);
    }
    for (size_t i = 0; i < p->nbuckets; i++) {
        while (!wf_list_is_empty(&p->buckets[i])) {
            wf_port_request_t *req =
                wf_container_of(p->buckets[i].next, wf_port_request_t, link);

            wf_list_del(&req->link);
            wf_list_add_tail(&b[req->stream & (n - 1)], &req->link);
        }
    }
    free(p->buckets);
    p->buckets = b;
    p->nbuckets = n;
    return WF_OK;
}

int
wf_port_request_add(wf_port_t *p, wf_port_request_t *req)
{
    int rc = WF_OK;

    pthread_mutex_lock(&p->lock);
    if (p->closed) {
        wf_log_debug("port %s: closed, request refused",
                     wf_port_role_name(p->peer));
        rc = WF_ERROR;
    } else if (p->nreqs >= p->nbuckets && port_buckets_grow(p) != WF_OK) {
        rc = WF_ERROR;
    } else {
        req->stream = wf_port_stream_new();
        wf_list_add_tail(&p->buckets[req->stream & (p->nbuckets - 1)],
                         &req->link);
        p->nreqs++;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

bool
wf_port_request_del(wf_port_t *p, wf_port_request_t *req)
{
    bool pending;

    pthread_mutex_lock(&p->lock);
    pending = req->link.next != &req->link;
    if (pending) {
        wf_list_del(&req->link);
        p->nreqs--;
    }
    pthread_mutex_unlock(&p->lock);
    return pending;
}

wf_port_request_t *
wf_port_request_take(wf_port_t *p, uint64_t stream)
{
    wf_port_request_t *found = NULL;

    pthread_mutex_lock(&p->lock);
    if (p->nbuckets > 0) {
        wf_list_t *head = &p->buckets[stream & (p->nbuckets - 1)];

        wf_list_for_each(l, head)
        {
            wf_port_request_t *req =
                wf_container_of(l, wf_port_request_t, link);

            if (req->stream == stream) {
                found = req;
                break;
            }
        }
    }
    if (found != NULL) {
        wf_list_del(&found->link);
        p->nreqs--;
    }
    pthread_mutex_unlock(&p->lock);
    return found;
}

void
wf_port_reply_handler(wf_port_t *p, wf_port_msg_t *msg)
{
    wf_port_request_t *req = wf_port_request_take(p, msg->stream);

    if (req == NULL) {
        wf_log_debug("port %s: reply type %" PRIu32 " to unknown stream "
                     "%" PRIu64 " dropped",
                     wf_port_role_name(p->peer), msg->type, msg->stream);
        return;
    }
    req->handler(req, msg, WF_OK);
}

/* Moves every pending request to out; under p->lock. */
static void
port_requests_move(wf_port_t *p, wf_list_t *out)
{
    for (size_t i = 0; i < p->nbuckets; i++) {
        port_list_splice(out, &p->buckets[i]);
    }
    p->nreqs = 0;
}

static void
port_requests_fail(wf_list_t *reqs)
{
    while (!wf_list_is_empty(reqs)) {
        wf_port_request_t *req =
            wf_container_of(reqs->next, wf_port_request_t, link);

        wf_list_del(&req->link);
        req->handler(req, NULL, WF_ERROR);
    }
}

/* ---- closing ------------------------------------------------------------ */

/* Closes the socket and drops all state; returns false if p was already
 * closed.  Runs the failed requests' callbacks. */
static bool
port_shutdown(wf_port_t *p)
{
    wf_list_t pkts, reqs;
    int fd;

    wf_list_init(&pkts);
    wf_list_init(&reqs);
    pthread_mutex_lock(&p->lock);
    if (p->closed) {
        pthread_mutex_unlock(&p->lock);
        return false;
    }
    if (p->owner != NULL) {
        wf_io_del(p->owner, &p->io);
    }
    p->closed = true;
    fd = p->io.fd;
    p->io.fd = -1;
    port_list_splice(&pkts, &p->wq);
    port_requests_move(p, &reqs);
    pthread_mutex_unlock(&p->lock);

    close(fd);
    port_pkts_free(&pkts);
    port_msg_release(&p->in);
    p->in_progress = false;
    port_requests_fail(&reqs);
    return true;
}

void
wf_port_close(wf_port_t *p)
{
    wf_port_ref(p); /* a failed request's callback may destroy p */
    port_shutdown(p);
    wf_port_unref(p);
}

void
wf_port_destroy(wf_port_t *p)
{
    if (p == NULL) {
        return;
    }
    wf_port_close(p);
    wf_port_unref(p);
}

/* Closes p on its own initiative and tells the owner once.  err is an errno
 * to log, or 0. */
static void
port_fail(wf_port_t *p, wf_log_level_t level, int err, const char *reason)
{
    wf_port_ref(p);
    if (port_shutdown(p)) {
        wf_log(level, err, "port %s<-%s: %s; closed",
               wf_port_role_name(p->self), wf_port_role_name(p->peer), reason);
        if (p->user != NULL && p->user->on_close != NULL) {
            p->user->on_close(p);
        }
    }
    wf_port_unref(p);
}

/* ---- sending ------------------------------------------------------------ */

static int
port_fds_dup(int *dst, const int *fds, unsigned nfds)
{
    for (unsigned i = 0; i < nfds; i++) {
        dst[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
        if (dst[i] == -1) {
            wf_log_error(errno, "port: fcntl(%d, F_DUPFD_CLOEXEC) failed",
                         fds[i]);
            port_close_fds(dst, i);
            return WF_ERROR;
        }
    }
    return WF_OK;
}

/* Cuts a message into packets of at most max_size payload bytes, every one
 * but the last full.  The first packet carries the fds. */
static int
port_pkts_build(wf_port_t *p, wf_list_t *out, const wf_port_hdr_t *proto,
                const unsigned char *data, const int *fds)
{
    size_t off = 0;

    do {
        size_t n = wf_min(p->max_size, proto->total - off);
        port_pkt_t *pkt = malloc(sizeof(*pkt) + n);

        if (pkt == NULL) {
            wf_log_error(errno, "port: malloc(%zu) failed", n);
            goto fail;
        }
        pkt->hdr = *proto;
        pkt->hdr.size = (uint32_t)n;
        pkt->hdr.nfds = off == 0 ? proto->nfds : 0;
        pkt->hdr.flags = (off == 0 ? 0 : WF_PORT_HDR_CONT)
                         | (off + n < proto->total ? WF_PORT_HDR_MORE : 0);
        if (n > 0) {
            memcpy(pkt->data, data + off, n);
        }
        wf_list_add_tail(out, &pkt->link);
        if (off == 0 && port_fds_dup(pkt->fds, fds, pkt->hdr.nfds) != WF_OK) {
            pkt->hdr.nfds = 0;
            goto fail;
        }
        off += n;
    } while (off < proto->total);
    return WF_OK;

fail:
    port_pkts_free(out);
    return WF_ERROR;
}

/* Sends one packet.  Returns WF_OK, WF_AGAIN, or WF_ERROR with p->werr. */
static int
port_sendmsg(wf_port_t *p, port_pkt_t *pkt)
{
    union {
        struct cmsghdr align;
        char buf[PORT_CMSG_SPACE];
    } cbuf;
    struct iovec iov[2] = {
        {.iov_base = &pkt->hdr, .iov_len = sizeof(pkt->hdr)},
        {.iov_base = pkt->data, .iov_len = pkt->hdr.size},
    };
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t n;

    if (pkt->hdr.nfds > 0) {
        struct cmsghdr *cm;

        memset(&cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * pkt->hdr.nfds);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * pkt->hdr.nfds);
        memcpy(CMSG_DATA(cm), pkt->fds, sizeof(int) * pkt->hdr.nfds);
    }
    do {
        n = sendmsg(p->io.fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n == -1 && errno == EINTR);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return WF_AGAIN;
    }
    if (n == -1) {
        p->werr = errno;
        return WF_ERROR;
    }
    return WF_OK; /* a SEQPACKET send is all or nothing */
}

/* Sends the first packets of the queue that carry no fds, PORT_SEND_BATCH
 * at most, with one sendmmsg(), and frees those sent.  Returns WF_OK
 * (some sent), WF_AGAIN, or WF_ERROR with p->werr. */
static int
port_sendmmsg(wf_port_t *p)
{
    struct mmsghdr mm[PORT_SEND_BATCH];
    struct iovec iov[PORT_SEND_BATCH][2];
    port_pkt_t *pkts[PORT_SEND_BATCH];
    unsigned n = 0;
    int k;

    wf_list_for_each(l, &p->wq)
    {
        port_pkt_t *pkt = wf_container_of(l, port_pkt_t, link);

        if (n == PORT_SEND_BATCH || pkt->hdr.nfds > 0) {
            break;
        }
        iov[n][0] = (struct iovec){&pkt->hdr, sizeof(pkt->hdr)};
        iov[n][1] = (struct iovec){pkt->data, pkt->hdr.size};
        mm[n] =
            (struct mmsghdr){.msg_hdr = {.msg_iov = iov[n], .msg_iovlen = 2}};
        pkts[n++] = pkt;
    }
    do {
        k = sendmmsg(p->io.fd, mm, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (k == -1 && errno == EINTR);
    if (k == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return WF_AGAIN;
    }
    if (k == -1) {
        p->werr = errno;
        return WF_ERROR;
    }
    for (int i = 0; i < k; i++) {
        wf_list_del(&pkts[i]->link);
        port_pkt_free(pkts[i]);
    }
    return WF_OK;
}

/* Is there more than one packet queued, the first two without fds. */
static bool
port_wq_batchable(const wf_port_t *p)
{
    const port_pkt_t *a, *b;

    if (wf_list_is_empty(&p->wq) || p->wq.next->next == &p->wq) {
        return false;
    }
    a = wf_container_of(p->wq.next, port_pkt_t, link);
    b = wf_container_of(p->wq.next->next, port_pkt_t, link);
    return a->hdr.nfds == 0 && b->hdr.nfds == 0;
}

/* Writes the queue; under p->lock.  Runs of packets without fds go out
 * with one sendmmsg(). */
static int
port_flush_locked(wf_port_t *p)
{
    if (p->corked) {
        return WF_OK; /* wf_port_uncork() flushes */
    }
    while (!wf_list_is_empty(&p->wq)) {
        port_pkt_t *pkt = wf_container_of(p->wq.next, port_pkt_t, link);
        int rc;

        if (port_wq_batchable(p)) {
            rc = port_sendmmsg(p);
            if (rc != WF_OK) {
                p->blocked = rc == WF_AGAIN;
                return rc;
            }
            continue;
        }
        rc = port_sendmsg(p, pkt);
        if (rc != WF_OK) {
            p->blocked = rc == WF_AGAIN;
            return rc;
        }
        wf_list_del(&pkt->link);
        port_pkt_free(pkt);
    }
    p->blocked = false;
    return WF_OK;
}

void
wf_port_cork(wf_port_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->corked = true;
    pthread_mutex_unlock(&p->lock);
}

int
wf_port_uncork(wf_port_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->corked = false;
    pthread_mutex_unlock(&p->lock);
    return wf_port_flush(p);
}

static const wf_port_type_t *
port_type_find(const wf_port_t *p, uint32_t type)
{
    size_t lo = 0, hi = p->ntypes;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (p->types[mid].type == type) {
            return &p->types[mid];
        }
        if (p->types[mid].type < type) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static bool
port_send_is_valid(wf_port_t *p, uint32_t type, const void *data, size_t len,
                   const int *fds, unsigned nfds)
{
    const wf_port_type_t *t = port_type_find(p, type);

    if (t == NULL || (t->senders & WF_PORT_FROM(p->self)) == 0) {
        wf_log_error(0, "port %s->%s: type %" PRIu32 " not sendable",
                     wf_port_role_name(p->self), wf_port_role_name(p->peer),
                     type);
        return false;
    }
    if (len > WF_PORT_MSG_MAX || (len > 0 && data == NULL) || nfds > t->max_fds
        || (nfds > 0 && fds == NULL)) {
        wf_log_error(0, "port %s->%s: bad %s message (%zu bytes, %u fds)",
                     wf_port_role_name(p->self), wf_port_role_name(p->peer),
                     t->name, len, nfds);
        return false;
    }
    return true;
}

int
wf_port_send(wf_port_t *p, uint32_t type, uint64_t stream, const void *data,
             size_t len, const int *fds, unsigned nfds)
{
    wf_port_hdr_t proto = {.stream = stream,
                           .type = type,
                           .total = (uint32_t)len,
                           .nfds = (uint8_t)nfds,
                           .version = WF_PORT_VERSION};
    wf_list_t pkts;
    bool post = false;

    if (!port_send_is_valid(p, type, data, len, fds, nfds)) {
        return WF_ERROR;
    }
    wf_list_init(&pkts);
    if (port_pkts_build(p, &pkts, &proto, data, fds) != WF_OK) {
        return WF_ERROR;
    }
    pthread_mutex_lock(&p->lock);
    if (p->closed) {
        pthread_mutex_unlock(&p->lock);
        port_pkts_free(&pkts);
        wf_log_debug("port %s: closed, message dropped",
                     wf_port_role_name(p->peer));
        return WF_ERROR;
    }
    port_list_splice(&p->wq, &pkts); /* one message, never interleaved */
    if (!p->blocked && p->werr == 0) {
        port_flush_locked(p);
    }
    /* Only the owner polls for EPOLLOUT or reports errors: wake it. */
    if ((p->blocked || p->werr != 0) && p->owner != NULL && !p->task_posted) {
        p->task_posted = true;
        wf_port_ref(p);
        post = true;
    }
    pthread_mutex_unlock(&p->lock);
    if (post) {
        wf_task_post(p->owner, &p->write_task);
    }
    return WF_OK;
}

int
wf_port_post(wf_port_t *p, wf_task_t *task)
{
    wf_loop_t *owner;

    pthread_mutex_lock(&p->lock);
    owner = p->owner;
    pthread_mutex_unlock(&p->lock);
    if (owner == NULL) {
        wf_log_error(0, "port %s: post before start",
                     wf_port_role_name(p->peer));
        return WF_ERROR;
    }
    wf_task_post(owner, task);
    return WF_OK;
}

int
wf_port_flush(wf_port_t *p)
{
    wf_loop_t *owner;
    int rc, err;

    pthread_mutex_lock(&p->lock);
    if (p->closed) {
        pthread_mutex_unlock(&p->lock);
        return WF_ERROR;
    }
    rc = p->werr != 0 ? WF_ERROR : port_flush_locked(p);
    err = p->werr;
    owner = p->owner;
    pthread_mutex_unlock(&p->lock);

    if (rc == WF_ERROR) {
        port_fail(p,
                  err == EPIPE || err == ECONNRESET ? WF_LOG_INFO : WF_LOG_ERR,
                  err, "sendmsg() failed");
        return WF_ERROR;
    }
    if (owner != NULL) {
        /* EPOLLOUT is level-triggered: poll it only while blocked. */
        wf_io_mod(owner, &p->io, EPOLLIN | (rc == WF_AGAIN ? EPOLLOUT : 0));
    }
    return rc;
}

static void
port_on_write_task(wf_task_t *task)
{
    wf_port_t *p = wf_container_of(task, wf_port_t, write_task);

    pthread_mutex_lock(&p->lock);
    p->task_posted = false;
    pthread_mutex_unlock(&p->lock);
    wf_port_flush(p);
    wf_port_unref(p); /* taken when the task was posted */
}

/* ---- receiving ---------------------------------------------------------- */

/* Checks one packet on its own; returns why it is garbage, or NULL. */
static const char *
port_check_packet(const wf_port_hdr_t *h, size_t n, unsigned nfds, int mflags,
                  bool cmsg_bad)
{
    if ((mflags & MSG_CTRUNC) != 0 || cmsg_bad) {
        return "too many file descriptors or unexpected control data";
    }
    if ((mflags & MSG_TRUNC) != 0) {
        return "fragment larger than max_size";
    }
    if (n < sizeof(*h)) {
        return "short header";
    }
    if (h->version != WF_PORT_VERSION) {
        return "unknown protocol version";
    }
    if ((h->flags & ~WF_PORT_HDR_FLAGS) != 0) {
        return "unknown flags";
    }
    if (h->size != n - sizeof(*h)) {
        return "length mismatch";
    }
    if (h->nfds != nfds) {
        return "fd count mismatch";
    }
    if (h->total > WF_PORT_MSG_MAX) {
        return "message too large";
    }
    if ((h->flags & WF_PORT_HDR_MORE) != 0 && h->size < WF_PORT_MAX_SIZE_MIN) {
        return "short non-final fragment";
    }
    return NULL;
}

/* Checks a packet against the message being reassembled. */
static const char *
port_check_sequence(const wf_port_t *p, const wf_port_hdr_t *h)
{
    bool cont = (h->flags & WF_PORT_HDR_CONT) != 0;
    uint32_t got = p->in_progress ? p->in_got : 0;

    if (!p->in_progress && cont) {
        return "continuation without a first fragment";
    }
    if (p->in_progress && !cont) {
        return "new message inside a fragmented one";
    }
    if (p->in_progress
        && (h->type != p->in.type || h->stream != p->in.stream
            || h->total != p->in_total || h->nfds != 0)) {
        return "fragment of another message";
    }
    if (h->size > h->total - got) {
        return "fragments exceed the total";
    }
    if ((h->flags & WF_PORT_HDR_MORE) == 0 && got + h->size != h->total) {
        return "fragments short of the total";
    }
    return NULL;
}

/* Decides whether the message that h starts is wanted; moves the fds into
 * p->in (or closes them for a dropped one). */
static const char *
port_msg_begin(wf_port_t *p, const wf_port_hdr_t *h, int *fds)
{
    const wf_port_type_t *t = port_type_find(p, h->type);

    p->in_progress = true;
    p->in.type = h->type;
    p->in.stream = h->stream;
    p->in_total = h->total;
    p->in_got = 0;
    p->in_type = NULL;
    if (t == NULL) {
        wf_log_warn(0, "port %s<-%s: unknown message type %" PRIu32 " dropped",
                    wf_port_role_name(p->self), wf_port_role_name(p->peer),
                    h->type);
        return NULL; /* the caller closes the fds */
    }
    if ((t->senders & WF_PORT_FROM(p->peer)) == 0) {
        wf_log_warn(0, "port %s<-%s: %s may not come from %s, dropped",
                    wf_port_role_name(p->self), wf_port_role_name(p->peer),
                    t->name, wf_port_role_name(p->peer));
        return NULL;
    }
    if (h->nfds > t->max_fds) {
        return "more file descriptors than the type allows";
    }
    p->in_type = t;
    p->in.nfds = h->nfds;
    for (unsigned i = 0; i < h->nfds; i++) {
        p->in.fds[i] = fds[i];
        fds[i] = -1;
    }
    return NULL;
}

/* Keeps the payload of the packet just read into *rbuf.  A mostly full
 * buffer joins the chain as is (*rbuf becomes NULL); a small payload is
 * copied, so that memory stays proportional to the payload (one spare
 * byte lets wf_port_msg_flatten() add its NUL in place). */
static int
port_msg_append(wf_port_t *p, size_t size, wf_port_buf_t **rbuf)
{
    wf_port_buf_t *b = *rbuf;

    p->in_got += (uint32_t)size;
    if (size == 0 || p->in_type == NULL) {
        return WF_OK;
    }
    if (size * 2 >= b->cap) {
        *rbuf = NULL;
    } else {
        b = port_buf_alloc(size + 1);
        if (b == NULL) {
            return WF_ERROR;
        }
        memcpy(b->data, (*rbuf)->data, size);
    }
    b->size = size;
    wf_list_add_tail(&p->in.chain, &b->link);
    p->in.size += size;
    return WF_OK;
}

/* Hands the complete message to its handler, then frees what is left. */
static void
port_msg_deliver(wf_port_t *p)
{
    const wf_port_type_t *t = p->in_type;
    wf_port_msg_t msg;

    /* The handler may close p, which resets p->in: give it a copy. */
    port_msg_move(&msg, &p->in);
    p->in_progress = false;
    p->in_type = NULL;
    if (t != NULL) {
        t->handler(p, &msg);
    }
    port_msg_release(&msg);
}

/* Processes one received packet: header h, n bytes in all, the payload in
 * *rbuf (taken when kept whole), nfds received fds (closed here unless
 * kept). */
static int
port_input(wf_port_t *p, const wf_port_hdr_t *h, size_t n, int *fds,
           unsigned nfds, int mflags, bool cmsg_bad, wf_port_buf_t **rbuf)
{
    const char *err = port_check_packet(h, n, nfds, mflags, cmsg_bad);

    if (err == NULL) {
        err = port_check_sequence(p, h);
    }
    if (err == NULL && (h->flags & WF_PORT_HDR_CONT) == 0) {
        err = port_msg_begin(p, h, fds);
    }
    port_close_fds(fds, nfds);
    if (err != NULL) {
        port_fail(p, WF_LOG_ERR, 0, err);
        return WF_ERROR;
    }
    if (port_msg_append(p, h->size, rbuf) != WF_OK) {
        port_fail(p, WF_LOG_ERR, ENOMEM, "no memory for a message");
        return WF_ERROR;
    }
    if ((h->flags & WF_PORT_HDR_MORE) == 0) {
        port_msg_deliver(p);
    }
    return WF_OK;
}

/* Collects the fds of every SCM_RIGHTS block; *bad is set by anything
 * else, or by more fds than fit. */
static unsigned
port_cmsg_fds(struct msghdr *mh, int *fds, bool *bad)
{
    unsigned nfds = 0;

    *bad = false;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL;
         cm = CMSG_NXTHDR(mh, cm)) {
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
            *bad = true;
            continue;
        }
        for (size_t i = 0; i < k; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (nfds < WF_PORT_MAX_FDS) {
                fds[nfds++] = fd;
            } else {
                close(fd);
                *bad = true;
            }
        }
    }
    return nfds;
}

static int
port_recv_one(wf_port_t *p)
{
    union {
        struct cmsghdr align;
        char buf[PORT_CMSG_SPACE];
    } cbuf;
    wf_port_hdr_t h;
    struct iovec iov[2];
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    int fds[WF_PORT_MAX_FDS];
    unsigned nfds;
    bool cmsg_bad;
    ssize_t n;

    if (p->rbuf == NULL) {
        p->rbuf = port_buf_alloc(p->max_size);
        if (p->rbuf == NULL) {
            port_fail(p, WF_LOG_ERR, ENOMEM, "no receive buffer");
            return WF_ERROR;
        }
    }
    iov[0] = (struct iovec){.iov_base = &h, .iov_len = sizeof(h)};
    iov[1] = (struct iovec){.iov_base = p->rbuf->data, .iov_len = p->rbuf->cap};
    mh.msg_control = cbuf.buf;
    mh.msg_controllen = sizeof(cbuf.buf);
    n = recvmsg(p->io.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return errno == EINTR ? WF_OK : WF_AGAIN;
        }
        port_fail(p, errno == ECONNRESET ? WF_LOG_INFO : WF_LOG_ERR, errno,
                  "recvmsg() failed");
        return WF_ERROR;
    }
    nfds = port_cmsg_fds(&mh, fds, &cmsg_bad);
    if (n == 0 && nfds == 0 && !cmsg_bad) {
        port_fail(p, WF_LOG_INFO, 0, "peer closed");
        return WF_ERROR;
    }
    return port_input(p, &h, (size_t)n, fds, nfds, mh.msg_flags, cmsg_bad,
                      &p->rbuf);
}

/* A receive ring per thread (a port is read on its owner's thread only):
 * one recvmmsg() takes the packets queued on a port, so a batch of
 * answers from an app process costs one system call, not one each.
 * Buffers are WF_PORT_MAX_SIZE_MAX, made when first needed and again
 * after a message kept one. */
typedef struct port_ring {
    bool busy; /* a handler reads another port from inside one: it reads
                  packet by packet */
    wf_port_hdr_t hdr[PORT_RING];
    wf_port_buf_t *buf[PORT_RING];
    struct iovec iov[PORT_RING][2];
    struct mmsghdr mm[PORT_RING];
    union {
        struct cmsghdr align;
        char buf[PORT_CMSG_SPACE];
    } cbuf[PORT_RING];
} port_ring_t;

static __thread port_ring_t *port_ring;
static pthread_key_t port_ring_key;
static pthread_once_t port_ring_once = PTHREAD_ONCE_INIT;
static bool port_ring_keyed;

static void
port_ring_free(void *arg)
{
    port_ring_t *rg = arg;

    for (unsigned i = 0; i < PORT_RING; i++) {
        free(rg->buf[i]);
    }
    free(rg);
}

static void
port_ring_key_make(void)
{
    port_ring_keyed = pthread_key_create(&port_ring_key, port_ring_free) == 0;
}

/* The calling thread's ring, made at its first use and freed when the
 * thread ends; NULL without memory (the port then reads packet by
 * packet). */
static port_ring_t *
port_ring_get(void)
{
    if (port_ring != NULL) {
        return port_ring;
    }
    pthread_once(&port_ring_once, port_ring_key_make);
    if (!port_ring_keyed) {
        return NULL;
    }
    port_ring = calloc(1, sizeof(*port_ring));
    if (port_ring != NULL
        && pthread_setspecific(port_ring_key, port_ring) != 0) {
        free(port_ring);
        port_ring = NULL;
    }
    return port_ring;
}

/* Closes the fds that packets [from, n) of the ring carry (dropped). */
static void
port_ring_drop(port_ring_t *rg, int from, int n)
{
    for (int i = from; i < n; i++) {
        int fds[WF_PORT_MAX_FDS];
        bool bad;
        unsigned nfds = port_cmsg_fds(&rg->mm[i].msg_hdr, fds, &bad);

        port_close_fds(fds, nfds);
    }
}

/* One recvmmsg() of up to want packets into rg.  Returns how many, 0 when
 * none is there (WF_AGAIN in *rc), or -1 (*rc WF_ERROR: p failed). */
static int
port_ring_fill(wf_port_t *p, port_ring_t *rg, unsigned want, int *rc)
{
    int k;

    for (unsigned i = 0; i < want; i++) {
        if (rg->buf[i] == NULL
            && (rg->buf[i] = port_buf_alloc(WF_PORT_MAX_SIZE_MAX)) == NULL) {
            port_fail(p, WF_LOG_ERR, ENOMEM, "no receive buffer");
            *rc = WF_ERROR;
            return -1;
        }
        rg->iov[i][0] = (struct iovec){&rg->hdr[i], sizeof(rg->hdr[i])};
        rg->iov[i][1] = (struct iovec){rg->buf[i]->data, p->max_size};
        rg->mm[i] = (struct mmsghdr){
            .msg_hdr = {.msg_iov = rg->iov[i],
                        .msg_iovlen = 2,
                        .msg_control = rg->cbuf[i].buf,
                        .msg_controllen = sizeof(rg->cbuf[i].buf)}};
    }
    k = recvmmsg(p->io.fd, rg->mm, want, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
    if (k == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            *rc = errno == EINTR ? WF_OK : WF_AGAIN;
            return 0;
        }
        port_fail(p, errno == ECONNRESET ? WF_LOG_INFO : WF_LOG_ERR, errno,
                  "recvmmsg() failed");
        *rc = WF_ERROR;
        return -1;
    }
    return k;
}

/* Handles the k packets of rg in order; stops at EOF, an error, or a
 * handler that closed p (the rest is dropped). */
static int
port_ring_input(wf_port_t *p, port_ring_t *rg, int k)
{
    int rc = WF_OK;

    for (int i = 0; i < k; i++) {
        struct msghdr *mh = &rg->mm[i].msg_hdr;
        int fds[WF_PORT_MAX_FDS];
        bool cmsg_bad;
        unsigned nfds;
        size_t n = rg->mm[i].msg_len;

        if (p->closed) {
            port_ring_drop(rg, i, k);
            return WF_ERROR;
        }
        nfds = port_cmsg_fds(mh, fds, &cmsg_bad);
        if (n == 0 && nfds == 0 && !cmsg_bad) {
            port_fail(p, WF_LOG_INFO, 0, "peer closed");
            port_ring_drop(rg, i + 1, k);
            return WF_ERROR;
        }
        rc = port_input(p, &rg->hdr[i], n, fds, nfds, mh->msg_flags, cmsg_bad,
                        &rg->buf[i]);
        if (rc != WF_OK) {
            port_ring_drop(rg, i + 1, k);
            return rc;
        }
    }
    return p->closed ? WF_ERROR : WF_OK;
}

/* Reads up to PORT_READ_BATCH packets of p with recvmmsg(); a short batch
 * means the socket's queue was empty, so the loop does not ask again
 * (epoll says when there is more). */
static int
port_recv_batch(wf_port_t *p, port_ring_t *rg)
{
    unsigned left = PORT_READ_BATCH;
    int rc = WF_OK;

    while (left > 0 && rc == WF_OK && !p->closed && !p->read_yield) {
        unsigned want = wf_min(left, (unsigned)PORT_RING);
        int k = port_ring_fill(p, rg, want, &rc);

        if (k <= 0) {
            break;
        }
        left -= (unsigned)k;
        rc = port_ring_input(p, rg, k);
        if ((unsigned)k < want && rc == WF_OK) {
            rc = WF_AGAIN; /* drained */
        }
    }
    return rc;
}

void
wf_port_read_yield(wf_port_t *p)
{
    p->read_yield = true;
}

int
wf_port_on_readable(wf_port_t *p)
{
    port_ring_t *rg;
    int rc = WF_OK;

    wf_port_ref(p); /* a handler may destroy p */
    p->read_yield = false;
    rg = port_ring_get();
    if (rg != NULL && !rg->busy) {
        rg->busy = true;
        rc = p->closed ? WF_ERROR : port_recv_batch(p, rg);
        rg->busy = false;
    } else {
        for (unsigned i = 0;
             i < PORT_READ_BATCH && rc == WF_OK && !p->read_yield; i++) {
            rc = p->closed ? WF_ERROR : port_recv_one(p);
        }
    }
    p->read_yield = false;
    if (rc == WF_OK && p->closed) {
        rc = WF_ERROR;
    }
    wf_port_unref(p);
    return rc;
}

static void
port_on_io(wf_io_t *io, uint32_t events)
{
    wf_port_t *p = wf_container_of(io, wf_port_t, io);

    wf_port_ref(p);
    if ((events & EPOLLOUT) != 0) {
        wf_port_flush(p);
    }
    if (!p->closed && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
        wf_port_on_readable(p);
    }
    wf_port_unref(p);
}

/* ---- messages ----------------------------------------------------------- */

unsigned char *
wf_port_msg_flatten(wf_port_msg_t *msg)
{
    static unsigned char empty[1];
    wf_port_buf_t *first, *b;
    size_t off = 0;

    if (msg->size == 0) {
        empty[0] = '\0';
        return empty;
    }
    first = wf_container_of(msg->chain.next, wf_port_buf_t, link);
    if (first->size == msg->size && first->cap > first->size) {
        first->data[first->size] = '\0';
        return first->data;
    }
    b = port_buf_alloc(msg->size + 1);
    if (b == NULL) {
        return NULL;
    }
    wf_list_for_each(l, &msg->chain)
    {
        wf_port_buf_t *c = wf_container_of(l, wf_port_buf_t, link);

        memcpy(b->data + off, c->data, c->size);
        off += c->size;
    }
    b->size = off;
    b->data[off] = '\0';
    port_chain_free(&msg->chain);
    wf_list_add_tail(&msg->chain, &b->link);
    return b->data;
}

int
wf_port_msg_take_fd(wf_port_msg_t *msg, unsigned i)
{
    int fd;

    if (i >= msg->nfds) {
        return -1;
    }
    fd = msg->fds[i];
    msg->fds[i] = -1;
    return fd;
}
