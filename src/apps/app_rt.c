/* The app process runtime (app_rt.h; design and costs in
 * docs/internals/apps.md, "The app process").
 *
 * Framing is the port's (process/port.h): the header is included from
 * there so that both ends can never disagree on it, but none of the port's
 * machinery is used.  The app side is a small blocking framer instead: a
 * worker is one thread that either waits for its next request or serves
 * one, so a blocking recvmsg() on the request's socket and a blocking
 * sendmsg() (or sendmmsg() for a batch) are the whole I/O path, with no
 * queue, no lock and no thread hand-off. */
#include "apps/app_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "apps/app_proto.h"
#include "core/common.h"
#include "core/list.h"
#include "core/log.h"
#include "process/port.h"

#define RT_EVENTS     16 /* epoll events per wait */
#define RT_BATCH      32 /* packets per sendmmsg() */
#define RT_IOV        8  /* iovecs per packet, the header's included */
#define RT_READ_MAX   64 /* messages per socket per dispatch() */
#define RT_OBUF_SIZE  (WF_APP_MAX_SIZE + 4096) /* encoded heads and acks */
#define RT_RBUF_SIZE  (WF_APP_MAX_SIZE + 1)    /* a fragment and a NUL */
#define RT_HALF       (WF_APP_WINDOW / 2)
#define RT_RING       16                          /* packets per recvmmsg() */
#define RT_CMSG_SPACE CMSG_SPACE(sizeof(int) * 4) /* fds to close */

_Static_assert(sizeof(wf_app_req_hdr_t) == 24, "no padding on the wire");
_Static_assert(sizeof(wf_app_resp_hdr_t) == 16, "no padding on the wire");

typedef enum rt_quit {
    RT_RUN = 0,
    RT_QUIT, /* graceful: no new requests, in-flight ones finish */
    RT_TERM, /* fast: waits end, in-flight requests fail */
} rt_quit_t;

/* How rt_recv() waits: see there. */
typedef enum rt_how {
    RT_WAIT,
    RT_TRY,
    RT_POLL,
} rt_how_t;

/* One packet of a socket's receive ring, as recvmmsg() left it. */
typedef struct rt_slot {
    wf_port_hdr_t hdr;
    unsigned char *buf; /* owned, cap >= RT_RBUF_SIZE: the payload */
    size_t cap;
    ssize_t n;         /* bytes with the header; 0: EOF */
    int mflags;        /* msg_flags */
    size_t controllen; /* msg_controllen (fds were closed) */
} rt_slot_t;

typedef struct rt_sock {
    int fd;          /* blocking; -1 once the router closed it */
    unsigned index;  /* k * N + t */
    unsigned active; /* requests on this socket not ended */
    wf_app_worker_t *w;
    rt_slot_t *ring;       /* RT_RING, owned; made at the first fetch */
    unsigned rpos, rcount; /* packets [rpos, rcount) not yet handled */
    bool drained;          /* the last fetch emptied the socket's queue */
} rt_sock_t;

/* One received message; data points into w->rbuf until the next receive. */
typedef struct rt_msg {
    uint32_t type;
    uint64_t stream;
    unsigned char *data; /* NUL-terminated at size */
    size_t size;
} rt_msg_t;

/* One packet waiting in a worker's output batch. */
typedef struct rt_pkt {
    wf_port_hdr_t hdr;
    struct iovec iov[RT_IOV]; /* iov[0] is hdr */
    unsigned niov;
    int fd; /* one SCM_RIGHTS fd (borrowed), or -1 */
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } cmsg;
} rt_pkt_t;

struct wf_app_req {
    wf_list_t link; /* in w->reqs while active, w->idle when cached */
    wf_app_worker_t *w;
    rt_sock_t *s;
    uint64_t stream;

    unsigned char *hbuf; /* owned: the REQ_HEAD message, head points in */
    size_t hcap;
    wf_app_head_t head;
    wf_app_field_t *fields; /* owned, fcap entries */
    size_t fcap;

    const unsigned char *hbody; /* body bytes of REQ_HEAD not yet read */
    size_t hbody_len;
    unsigned char *bbuf; /* owned: REQ_BODY bytes [bpos, blen) unread */
    size_t bcap, bpos, blen;
    uint64_t in_flight;  /* body bytes received and not acked */
    uint64_t in_read;    /* of which read by the module */
    uint64_t out_flight; /* response body bytes sent and not acked */

    bool body_end;       /* REQ_END seen (or WF_APP_REQ_BODY_END) */
    bool aborted;        /* REQ_ABORT, EOF, TERM, or the worker broke */
    bool abort_told;     /* on_abort was called */
    bool responded;      /* respond() done */
    bool want_write;     /* write_nb() said AGAIN: on_writable is owed */
    unsigned char *held; /* its complete RESP_HEAD in the unsent batch */
    unsigned held_flush; /* w->nflush when held was queued */
    wf_list_t qlink;     /* in w->ready until the module is given it */
    void *data;
};

struct wf_app_worker {
    wf_app_t *app;
    unsigned index;
    unsigned concurrency; /* announced in READY */
    unsigned queued;      /* of which wait behind the one served (READY) */
    bool announced;
    bool broken;      /* garbage from the router: every socket closed */
    rt_sock_t *socks; /* N, owned */
    unsigned nsocks;
    unsigned nopen; /* sockets not at EOF */
    int epfd;       /* the sockets and wakefd */
    int wakefd;     /* eventfd: a stop request, or DONE is due */
    struct epoll_event evs[RT_EVENTS];
    int nev, evpos; /* events of the last wait not yet handled */

    unsigned char *rbuf; /* receive buffer, rcap >= RT_RBUF_SIZE */
    size_t rcap;
    rt_msg_t msg; /* the last message received */

    wf_list_t reqs;  /* active requests */
    wf_list_t ready; /* active requests not yet given to the module */
    wf_list_t idle;  /* ended requests kept for reuse (buffers) */
    unsigned nactive;
    unsigned nidle;
    bool dispatching;   /* the module uses dispatch(), not next() */
    bool in_dispatch;   /* within dispatch(): ends wait for its flush */
    bool abort_pending; /* some request is aborted and not yet told */

    /* Output batch: packets for one socket, sent by rt_out_flush(). */
    rt_sock_t *osock;
    rt_pkt_t out[RT_BATCH];
    unsigned nout;
    unsigned char *obuf; /* RT_OBUF_SIZE: encoded heads, acks, ends */
    size_t olen;
    unsigned nflush; /* rt_out_flush() calls: a held head is still unsent
                        while this is unchanged */
};

struct wf_app {
    wf_app_conf_t conf;
    unsigned nworkers;
    unsigned router_threads;
    wf_app_worker_t *workers; /* nworkers */
    _Atomic int quit;         /* rt_quit_t */
    uint32_t pid;
};

static void rt_sock_close(rt_sock_t *s);
static int rt_handle(wf_app_worker_t *w, rt_sock_t *s, wf_app_req_t **newreq);

/* ---- logging ------------------------------------------------------------ */

static void
rt_vlog(wf_app_log_level_t level, const char *fmt, va_list ap)
{
    if ((unsigned)level > WF_APP_LOG_DEBUG) {
        level = WF_APP_LOG_ERR;
    }
    /* wf_app_log_level_t mirrors wf_log_level_t value for value. */
    wf_log_v((wf_log_level_t)level, 0, fmt, ap);
}

static void
rt_log(wf_app_log_level_t level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rt_vlog(level, fmt, ap);
    va_end(ap);
}

/* ---- output ------------------------------------------------------------- */

/* Sends the batch with one sendmmsg() (more only if interrupted).  A
 * socket at EOF drops it.  Returns WF_OK or WF_ERROR (the socket is then
 * closed: the router is gone). */
static int
rt_out_flush(wf_app_worker_t *w)
{
    struct mmsghdr mm[RT_BATCH];
    rt_sock_t *s = w->osock;
    unsigned done = 0, n = w->nout;

    w->nout = 0;
    w->olen = 0;
    w->osock = NULL;
    w->nflush++;
    if (n == 0 || s == NULL || s->fd == -1) {
        return s == NULL || s->fd != -1 ? WF_OK : WF_ERROR;
    }
    memset(mm, 0, sizeof(mm[0]) * n);
    for (unsigned i = 0; i < n; i++) {
        rt_pkt_t *pkt = &w->out[i];
        struct msghdr *mh = &mm[i].msg_hdr;

        mh->msg_iov = pkt->iov;
        mh->msg_iovlen = pkt->niov;
        if (pkt->fd != -1) {
            struct cmsghdr *cm;

            mh->msg_control = pkt->cmsg.buf;
            mh->msg_controllen = sizeof(pkt->cmsg.buf);
            cm = CMSG_FIRSTHDR(mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &pkt->fd, sizeof(int));
        }
    }
    while (done < n) {
        int rc = sendmmsg(s->fd, mm + done, n - done, MSG_NOSIGNAL);

        if (rc == -1 && errno == EINTR) {
            continue;
        }
        if (rc == -1) {
            wf_log(errno == EPIPE || errno == ECONNRESET ? WF_LOG_INFO
                                                         : WF_LOG_ERR,
                   errno, "app: sendmmsg() to the router failed");
            rt_sock_close(s);
            return WF_ERROR;
        }
        done += (unsigned)rc; /* a SEQPACKET send is all or nothing */
    }
    return WF_OK;
}

/* Reserves n bytes of w->obuf for a packet to s; flushes first when the
 * batch is for another socket or full.  Returns NULL when the batch
 * cannot be flushed. */
static unsigned char *
rt_out_reserve(wf_app_worker_t *w, rt_sock_t *s, size_t n)
{
    unsigned char *p;

    if ((w->osock != NULL && w->osock != s) || w->nout == RT_BATCH
        || w->olen + n > RT_OBUF_SIZE) {
        if (rt_out_flush(w) != WF_OK) {
            return NULL;
        }
    }
    w->osock = s;
    p = w->obuf + w->olen;
    w->olen += n;
    return p;
}

/* Adds packets for one message whose payload is iov[0..niov) (total
 * bytes), cut in fragments of WF_APP_MAX_SIZE as the port does.  The
 * payload memory must stay valid until the batch is flushed.  fd, or -1,
 * rides on the first fragment. */
static int
rt_out_msg(wf_app_worker_t *w, rt_sock_t *s, uint32_t type, uint64_t stream,
           const struct iovec *iov, unsigned niov, size_t total, int fd)
{
    size_t off = 0, ioff = 0; /* bytes sent; offset into iov[i] */
    unsigned i = 0;

    if (total > WF_PORT_MSG_MAX) {
        wf_log_error(0, "app: message of %zu bytes too large", total);
        return WF_ERROR;
    }
    do {
        size_t n = wf_min((size_t)WF_APP_MAX_SIZE, total - off), left = n;
        rt_pkt_t *pkt;

        if ((w->osock != NULL && w->osock != s) || w->nout == RT_BATCH) {
            if (rt_out_flush(w) != WF_OK) {
                return WF_ERROR;
            }
        }
        w->osock = s;
        pkt = &w->out[w->nout++];
        pkt->hdr = (wf_port_hdr_t){
            .stream = stream,
            .type = type,
            .size = (uint32_t)n,
            .total = (uint32_t)total,
            .flags = (uint16_t)((off == 0 ? 0 : WF_PORT_HDR_CONT)
                                | (off + n < total ? WF_PORT_HDR_MORE : 0)),
            .nfds = (uint8_t)(off == 0 && fd != -1 ? 1 : 0),
            .version = WF_PORT_VERSION,
        };
        pkt->fd = pkt->hdr.nfds != 0 ? fd : -1;
        pkt->iov[0] = (struct iovec){&pkt->hdr, sizeof(pkt->hdr)};
        pkt->niov = 1;
        while (left > 0) {
            size_t k;

            if (i == niov || pkt->niov == RT_IOV) {
                wf_log_alert(0, "app: bad pieces for one packet");
                w->nout--;
                return WF_ERROR;
            }
            k = wf_min(left, iov[i].iov_len - ioff);
            if (k > 0) {
                pkt->iov[pkt->niov++] =
                    (struct iovec){(char *)iov[i].iov_base + ioff, k};
            }
            left -= k;
            ioff += k;
            if (ioff == iov[i].iov_len) {
                i++;
                ioff = 0;
            }
        }
        off += n;
    } while (off < total);
    return WF_OK;
}

/* A message with a small payload, copied into the batch. */
static int
rt_out_small(wf_app_worker_t *w, rt_sock_t *s, uint32_t type, uint64_t stream,
             const void *data, size_t len)
{
    unsigned char *p = rt_out_reserve(w, s, len);
    struct iovec iov;

    if (p == NULL) {
        return WF_ERROR;
    }
    memcpy(p, data, len);
    iov = (struct iovec){p, len};
    return rt_out_msg(w, s, type, stream, &iov, 1, len, -1);
}

/* ---- sockets and input -------------------------------------------------- */

static void
rt_worker_wake(wf_app_worker_t *w)
{
    uint64_t one = 1;

    if (write(w->wakefd, &one, sizeof(one)) < 0) {
        /* Already readable (counter full): nothing is lost. */
    }
}

/* The router closed s (or it broke): its requests are aborted. */
static void
rt_sock_close(rt_sock_t *s)
{
    wf_app_worker_t *w = s->w;
    int fd;

    if (s->fd == -1) {
        return;
    }
    fd = s->fd;
    __atomic_store_n(&s->fd, -1, __ATOMIC_RELAXED); /* before the close:
                                                       wf_app_rt_stop() */
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    w->nopen--;
    s->rpos = s->rcount = 0; /* what the ring held is moot */
    if (w->osock == s) {
        w->nout = 0;
        w->olen = 0;
        w->osock = NULL;
    }
    wf_list_for_each(l, &w->reqs)
    {
        wf_app_req_t *r = wf_container_of(l, wf_app_req_t, link);

        if (r->s == s) {
            r->aborted = true;
            w->abort_pending = true;
        }
    }
    if (w->nopen == 0) {
        rt_worker_wake(w); /* dispatch() must see DONE */
    }
}

/* Garbage from the router: log, and end the worker (the router sees its
 * sockets close and fails what it sent). */
static int
rt_garbage(wf_app_worker_t *w, rt_sock_t *s, const char *why)
{
    wf_log_error(0, "app: worker %u, socket %u: %s; worker stopped", w->index,
                 s->index, why);
    w->broken = true;
    for (unsigned i = 0; i < w->nsocks; i++) {
        rt_sock_close(&w->socks[i]);
    }
    return WF_ERROR;
}

/* Checks one packet as port.c checks it on the router's side. */
static const char *
rt_check_packet(const wf_port_hdr_t *h, ssize_t n, int mflags,
                size_t controllen)
{
    if ((mflags & MSG_CTRUNC) != 0 || controllen != 0) {
        return "unexpected control data";
    }
    if ((mflags & MSG_TRUNC) != 0) {
        return "fragment larger than max_size";
    }
    if ((size_t)n < sizeof(*h)) {
        return "short header";
    }
    if (h->version != WF_PORT_VERSION) {
        return "unknown protocol version";
    }
    if ((h->flags & ~WF_PORT_HDR_FLAGS) != 0) {
        return "unknown flags";
    }
    if (h->size != (size_t)n - sizeof(*h)) {
        return "length mismatch";
    }
    if (h->nfds != 0) {
        return "file descriptors from the router";
    }
    if (h->total > WF_PORT_MSG_MAX) {
        return "message too large";
    }
    if ((h->flags & WF_PORT_HDR_MORE) != 0 && h->size < WF_PORT_MAX_SIZE_MIN) {
        return "short non-final fragment";
    }
    return NULL;
}

/* Closes the fds of every SCM_RIGHTS block of mh (the router sends none:
 * the packet is garbage).  Returns the packet's length as rt_check_packet()
 * takes it: n, or 1 for an fd with no bytes (flagged MSG_CTRUNC). */
static ssize_t
rt_cmsg_drop(struct msghdr *mh, ssize_t n)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL;
         cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

            for (size_t i = 0; i < k; i++) {
                int fd;

                memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                close(fd);
            }
        }
    }
    if (n == 0 && mh->msg_controllen != 0) {
        mh->msg_flags |= MSG_CTRUNC;
        return 1; /* garbage, not EOF */
    }
    return n;
}

/* One recvmsg() into w->rbuf + off.  Returns bytes, 0 on EOF, WF_AGAIN,
 * or WF_ERROR after logging.  Control data is closed and flagged. */
static ssize_t
rt_recv_packet(wf_app_worker_t *w, rt_sock_t *s, wf_port_hdr_t *h, size_t off,
               int flags, struct msghdr *mh)
{
    union {
        struct cmsghdr align;
        char buf[RT_CMSG_SPACE];
    } cbuf;
    struct iovec iov[2] = {
        {h, sizeof(*h)},
        {w->rbuf + off, WF_APP_MAX_SIZE},
    };
    ssize_t n;

    *mh = (struct msghdr){.msg_iov = iov,
                          .msg_iovlen = 2,
                          .msg_control = cbuf.buf,
                          .msg_controllen = sizeof(cbuf.buf)};
    do {
        n = recvmsg(s->fd, mh, flags | MSG_CMSG_CLOEXEC);
    } while (n == -1 && errno == EINTR);
    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return WF_AGAIN;
        }
        if (errno == ECONNRESET) {
            return 0; /* the router closed with our data unread: EOF */
        }
        wf_log_error(errno, "app: recvmsg() from the router failed");
        return WF_ERROR;
    }
    return rt_cmsg_drop(mh, n);
}

/* The ring's slots and buffers, made at the socket's first fetch. */
static int
rt_ring_alloc(rt_sock_t *s)
{
    if (s->ring == NULL) {
        s->ring = calloc(RT_RING, sizeof(*s->ring));
        if (s->ring == NULL) {
            return WF_ERROR;
        }
    }
    for (unsigned i = 0; i < RT_RING; i++) {
        if (s->ring[i].buf == NULL) {
            s->ring[i].buf = malloc(RT_RBUF_SIZE);
            if (s->ring[i].buf == NULL) {
                return WF_ERROR;
            }
            s->ring[i].cap = RT_RBUF_SIZE;
        }
    }
    return WF_OK;
}

/* Fills s's empty ring with one recvmmsg(): the packets the router queued
 * (up to RT_RING), so that a batch of requests costs one system call, not
 * one each.  flags: MSG_DONTWAIT, or MSG_WAITFORONE to wait for the first.
 * Returns WF_OK (s->rcount > 0), WF_AGAIN, or WF_DECLINED (EOF or an
 * error: the caller closes s).  An EOF is kept as a slot of length 0
 * after the packets before it. */
static int
rt_ring_fill(rt_sock_t *s, int flags)
{
    struct mmsghdr mm[RT_RING];
    struct iovec iov[RT_RING][2];
    union {
        struct cmsghdr align;
        char buf[RT_CMSG_SPACE];
    } cbuf[RT_RING];
    int rc;

    if (rt_ring_alloc(s) != WF_OK) {
        wf_log_error(errno, "app: no memory for the receive ring");
        return WF_DECLINED;
    }
    for (unsigned i = 0; i < RT_RING; i++) {
        rt_slot_t *sl = &s->ring[i];

        iov[i][0] = (struct iovec){&sl->hdr, sizeof(sl->hdr)};
        iov[i][1] = (struct iovec){sl->buf, WF_APP_MAX_SIZE};
        mm[i] = (struct mmsghdr){
            .msg_hdr = {.msg_iov = iov[i],
                        .msg_iovlen = 2,
                        .msg_control = cbuf[i].buf,
                        .msg_controllen = sizeof(cbuf[i].buf)}};
    }
    do {
        rc = recvmmsg(s->fd, mm, RT_RING, flags | MSG_CMSG_CLOEXEC, NULL);
    } while (rc == -1 && errno == EINTR);
    if (rc == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->drained = true;
            return WF_AGAIN;
        }
        if (errno != ECONNRESET) {
            wf_log_error(errno, "app: recvmmsg() from the router failed");
        }
        return WF_DECLINED;
    }
    s->rpos = 0;
    s->rcount = 0;
    for (int i = 0; i < rc; i++) {
        rt_slot_t *sl = &s->ring[i];
        struct msghdr *mh = &mm[i].msg_hdr;

        sl->n = rt_cmsg_drop(mh, (ssize_t)mm[i].msg_len);
        sl->mflags = mh->msg_flags;
        sl->controllen = mh->msg_controllen;
        s->rcount++;
        if (sl->n == 0) {
            break; /* EOF: what follows repeats it */
        }
    }
    /* Fewer than asked: the queue was empty; epoll says when it is not. */
    s->drained = rc < RT_RING;
    return WF_OK;
}

static bool
rt_ring_has(const rt_sock_t *s)
{
    return s->rpos < s->rcount;
}

/* Takes s's next packet: its payload becomes w->rbuf + off (the slot's
 * buffer itself when off is 0, else a copy); *h, the result as
 * rt_check_packet() takes it. */
static ssize_t
rt_ring_take(wf_app_worker_t *w, rt_sock_t *s, wf_port_hdr_t *h, size_t off,
             int *mflags, size_t *controllen)
{
    rt_slot_t *sl = &s->ring[s->rpos++];

    *h = sl->hdr;
    *mflags = sl->mflags;
    *controllen = sl->controllen;
    if (sl->n > (ssize_t)sizeof(*h) && off == 0) {
        unsigned char *b = w->rbuf;
        size_t cap = w->rcap;

        w->rbuf = sl->buf;
        w->rcap = sl->cap;
        sl->buf = b;
        sl->cap = cap;
    } else if (sl->n > (ssize_t)sizeof(*h)) {
        memcpy(w->rbuf + off, sl->buf,
               wf_min((size_t)sl->n - sizeof(*h), (size_t)WF_APP_MAX_SIZE));
    }
    return sl->n;
}

/* Makes room for a message of total payload bytes (plus a fragment and a
 * NUL) in w->rbuf, keeping the first got bytes. */
static int
rt_rbuf_grow(wf_app_worker_t *w, size_t need)
{
    unsigned char *p;

    if (need <= w->rcap) {
        return WF_OK;
    }
    p = realloc(w->rbuf, need);
    if (p == NULL) {
        wf_log_error(errno, "app: realloc(%zu) failed", need);
        return WF_ERROR;
    }
    w->rbuf = p;
    w->rcap = need;
    return WF_OK;
}

/* Reads the rest of a fragmented message; the router sends all fragments
 * of a message back to back, so this takes them from s's ring, then waits
 * on s alone. */
static int
rt_recv_rest(wf_app_worker_t *w, rt_sock_t *s, const wf_port_hdr_t *first)
{
    size_t got = first->size;

    if (rt_rbuf_grow(w, (size_t)first->total + RT_RBUF_SIZE) != WF_OK) {
        return rt_garbage(w, s, "no memory for a message");
    }
    while (got < first->total) {
        wf_port_hdr_t h;
        struct msghdr mh = {0};
        int mflags;
        size_t controllen;
        ssize_t n;
        const char *err;

        if (rt_ring_has(s)) {
            n = rt_ring_take(w, s, &h, got, &mflags, &controllen);
        } else {
            n = rt_recv_packet(w, s, &h, got, 0, &mh);
            mflags = mh.msg_flags;
            controllen = mh.msg_controllen;
        }
        if (n == 0 || n == WF_ERROR) {
            rt_sock_close(s);
            return WF_ERROR;
        }
        err = rt_check_packet(&h, n, mflags, controllen);
        if (err == NULL
            && ((h.flags & WF_PORT_HDR_CONT) == 0 || h.type != first->type
                || h.stream != first->stream || h.total != first->total)) {
            err = "fragment of another message";
        }
        if (err == NULL && h.size > first->total - got) {
            err = "fragments exceed the total";
        }
        if (err == NULL && (h.flags & WF_PORT_HDR_MORE) == 0
            && got + h.size != first->total) {
            err = "fragments short of the total";
        }
        if (err != NULL) {
            return rt_garbage(w, s, err);
        }
        got += h.size;
    }
    return WF_OK;
}

/* Receives one whole message from s into w->msg, from s's ring (refilled
 * by one recvmmsg() when empty).  how: RT_WAIT waits for it; RT_POLL does
 * not, and trusts epoll for a socket drained by the last fill (no
 * system call then); RT_TRY does not wait but asks the socket.  Returns
 * WF_OK, WF_AGAIN (nothing there), or WF_DECLINED when s reached EOF
 * (closed here), WF_ERROR on garbage (the worker is broken). */
static int
rt_recv(wf_app_worker_t *w, rt_sock_t *s, rt_how_t how)
{
    wf_port_hdr_t h;
    int mflags, rc;
    size_t controllen;
    ssize_t n;
    const char *err;

    if (s->fd == -1) {
        return WF_DECLINED;
    }
    if (!rt_ring_has(s)) {
        if (how == RT_POLL && s->drained) {
            return WF_AGAIN;
        }
        rc = rt_ring_fill(s, how == RT_WAIT ? MSG_WAITFORONE : MSG_DONTWAIT);
        if (rc == WF_AGAIN) {
            return WF_AGAIN;
        }
        if (rc != WF_OK) {
            rt_sock_close(s);
            return WF_DECLINED;
        }
    }
    n = rt_ring_take(w, s, &h, 0, &mflags, &controllen);
    if (n == 0) {
        rt_sock_close(s);
        return WF_DECLINED;
    }
    err = rt_check_packet(&h, n, mflags, controllen);
    if (err == NULL && (h.flags & WF_PORT_HDR_CONT) != 0) {
        err = "continuation without a first fragment";
    }
    if (err == NULL && (h.flags & WF_PORT_HDR_MORE) == 0 && h.size != h.total) {
        err = "fragments short of the total";
    }
    if (err != NULL) {
        return rt_garbage(w, s, err);
    }
    if ((h.flags & WF_PORT_HDR_MORE) != 0 && rt_recv_rest(w, s, &h) != WF_OK) {
        return WF_ERROR;
    }
    w->msg = (rt_msg_t){
        .type = h.type, .stream = h.stream, .data = w->rbuf, .size = h.total};
    w->rbuf[h.total] = '\0';
    return WF_OK;
}

/* ---- requests ------------------------------------------------------------ */

static wf_app_req_t *
rt_req_find(wf_app_worker_t *w, rt_sock_t *s, uint64_t stream)
{
    wf_list_for_each(l, &w->reqs)
    {
        wf_app_req_t *r = wf_container_of(l, wf_app_req_t, link);

        if (r->stream == stream && r->s == s) {
            return r;
        }
    }
    return NULL;
}

/* Reads one wire string at *off of msg (size bytes); see app_proto.h. */
static bool
rt_str_decode(const unsigned char *msg, size_t size, size_t *off,
              wf_app_str_t *out)
{
    uint32_t len;
    size_t padded;

    if (size - *off < sizeof(len)) {
        return false;
    }
    memcpy(&len, msg + *off, sizeof(len));
    *off += sizeof(len);
    padded = ((size_t)len + 1 + 3) & ~(size_t)3;
    if (len >= size || size - *off < padded || msg[*off + len] != '\0') {
        return false;
    }
    out->data = (const char *)msg + *off;
    out->len = len;
    *off += padded;
    return true;
}

static int
rt_fields_reserve(wf_app_req_t *r, size_t n)
{
    wf_app_field_t *f;

    if (n <= r->fcap) {
        return WF_OK;
    }
    f = realloc(r->fields, n * sizeof(*f));
    if (f == NULL) {
        wf_log_error(errno, "app: realloc(fields) failed");
        return WF_ERROR;
    }
    r->fields = f;
    r->fcap = n;
    return WF_OK;
}

/* Decodes r->hbuf (size bytes) into r->head.  Returns NULL or what is
 * wrong with it. */
static const char *
rt_head_decode(wf_app_req_t *r, size_t size)
{
    wf_app_str_t strs[WF_APP_REQ_NSTR];
    wf_app_req_hdr_t hdr;
    wf_app_head_t *hd = &r->head;
    size_t off = sizeof(hdr);

    if (size < sizeof(hdr)) {
        return "short request head";
    }
    memcpy(&hdr, r->hbuf, sizeof(hdr));
    if ((hdr.flags
         & ~(uint32_t)(WF_APP_REQ_BODY_END | WF_APP_REQ_TLS
                       | WF_APP_REQ_UPGRADE))
            != 0
        || hdr.nfields > WF_APP_MAX_FIELDS) {
        return "bad request head flags or field count";
    }
    for (unsigned i = 0; i < WF_APP_REQ_NSTR; i++) {
        if (!rt_str_decode(r->hbuf, size, &off, &strs[i])) {
            return "bad string in request head";
        }
    }
    if (rt_fields_reserve(r, hdr.nfields == 0 ? 1 : hdr.nfields) != WF_OK) {
        return "no memory for the fields";
    }
    for (unsigned i = 0; i < hdr.nfields; i++) {
        if (!rt_str_decode(r->hbuf, size, &off, &r->fields[i].name)
            || !rt_str_decode(r->hbuf, size, &off, &r->fields[i].value)) {
            return "bad field in request head";
        }
    }
    if (size - off != hdr.body_size || hdr.body_size > WF_APP_WINDOW) {
        return "request head body size mismatch";
    }
    *hd = (wf_app_head_t){
        .method = strs[WF_APP_STR_METHOD],
        .target = strs[WF_APP_STR_TARGET],
        .path = strs[WF_APP_STR_PATH],
        .query = strs[WF_APP_STR_QUERY],
        .version = strs[WF_APP_STR_VERSION],
        .host = strs[WF_APP_STR_HOST],
        .remote = strs[WF_APP_STR_REMOTE],
        .local = strs[WF_APP_STR_LOCAL],
        .server = strs[WF_APP_STR_SERVER],
        .remote_port = hdr.remote_port,
        .local_port = hdr.local_port,
        .tls = (hdr.flags & WF_APP_REQ_TLS) != 0,
        .upgrade = (hdr.flags & WF_APP_REQ_UPGRADE) != 0,
        .target_index = hdr.target,
        .content_length = hdr.content_length,
        .nfields = hdr.nfields,
        .fields = r->fields,
    };
    r->hbody = r->hbuf + off;
    r->hbody_len = hdr.body_size;
    r->in_flight = hdr.body_size;
    r->body_end = (hdr.flags & WF_APP_REQ_BODY_END) != 0;
    return NULL;
}

static wf_app_req_t *
rt_req_get(wf_app_worker_t *w)
{
    wf_app_req_t *r;

    if (!wf_list_is_empty(&w->idle)) {
        r = wf_container_of(w->idle.next, wf_app_req_t, link);
        wf_list_del(&r->link);
        w->nidle--;
        return r;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        wf_log_error(errno, "app: calloc(request) failed");
        return NULL;
    }
    wf_list_init(&r->link);
    wf_list_init(&r->qlink);
    return r;
}

static void
rt_req_free(wf_app_req_t *r)
{
    if (r == NULL) {
        return;
    }
    free(r->hbuf);
    free(r->bbuf);
    free(r->fields);
    free(r);
}

/* REQ_HEAD: a new request; the message buffer becomes the request's (the
 * request's old buffer becomes the worker's receive buffer: no copy). */
static int
rt_on_head(wf_app_worker_t *w, rt_sock_t *s, wf_app_req_t **newreq)
{
    rt_msg_t *m = &w->msg;
    wf_app_req_t *r;
    unsigned char *b;
    size_t cap;
    const char *err;

    if (m->stream == 0 || rt_req_find(w, s, m->stream) != NULL) {
        return rt_garbage(w, s, "request head on a used stream");
    }
    if (s->active >= w->concurrency) {
        return rt_garbage(w, s, "more requests than the concurrency");
    }
    r = rt_req_get(w);
    if (r == NULL) {
        return rt_garbage(w, s, "no memory for a request");
    }
    if (r->hbuf == NULL || r->hcap < RT_RBUF_SIZE) {
        free(r->hbuf);
        r->hbuf = malloc(RT_RBUF_SIZE);
        r->hcap = RT_RBUF_SIZE;
        if (r->hbuf == NULL) {
            rt_req_free(r);
            return rt_garbage(w, s, "no memory for a request");
        }
    }
    b = r->hbuf;
    cap = r->hcap;
    r->hbuf = w->rbuf;
    r->hcap = w->rcap;
    w->rbuf = b;
    w->rcap = cap;
    r->w = w;
    r->s = s;
    r->stream = m->stream;
    r->bpos = r->blen = 0;
    r->in_read = r->out_flight = 0;
    r->aborted = r->abort_told = r->responded = r->want_write = false;
    r->data = NULL;
    err = rt_head_decode(r, m->size);
    if (err != NULL) {
        wf_list_add_tail(&w->idle, &r->link); /* never active */
        w->nidle++;
        return rt_garbage(w, s, err);
    }
    wf_list_add_tail(&w->reqs, &r->link);
    s->active++;
    w->nactive++;
    *newreq = r;
    return WF_OK;
}

/* Appends a REQ_BODY piece, w->msg, to r's queue (the module reads it
 * from there).  An empty queue takes the receive buffer itself and gives
 * its own in exchange, so the usual piece is never copied here. */
static int
rt_body_queue(wf_app_worker_t *w, wf_app_req_t *r)
{
    const unsigned char *p = w->msg.data;
    size_t n = w->msg.size;

    if (r->bpos == r->blen) {
        r->bpos = r->blen = 0;
        if (r->bbuf == NULL) {
            r->bbuf = malloc(RT_RBUF_SIZE);
            r->bcap = r->bbuf != NULL ? RT_RBUF_SIZE : 0;
        }
        if (r->bcap >= RT_RBUF_SIZE && p == w->rbuf) {
            unsigned char *b = r->bbuf;
            size_t cap = r->bcap;

            r->bbuf = w->rbuf;
            r->bcap = w->rcap;
            r->blen = n;
            w->rbuf = b;
            w->rcap = cap;
            w->msg.data = NULL; /* it is the request's now */
            return WF_OK;
        }
    }
    if (r->blen + n > r->bcap && r->bpos > 0) {
        memmove(r->bbuf, r->bbuf + r->bpos, r->blen - r->bpos);
        r->blen -= r->bpos;
        r->bpos = 0;
    }
    if (r->blen + n > r->bcap) {
        size_t cap = wf_max(r->bcap * 2, (size_t)WF_APP_MAX_SIZE);
        unsigned char *b;

        cap = wf_max(cap, r->blen + n);
        b = realloc(r->bbuf, cap);
        if (b == NULL) {
            wf_log_error(errno, "app: realloc(body) failed");
            return WF_ERROR;
        }
        r->bbuf = b;
        r->bcap = cap;
    }
    memcpy(r->bbuf + r->blen, p, n);
    r->blen += n;
    return WF_OK;
}

/* Handles w->msg, just received on s.  A new request is returned in
 * *newreq (REQ_HEAD); events owed to the module are flagged on the
 * request.  Messages about a stream that already ended are dropped: they
 * crossed our RESP_END.  Returns WF_OK or WF_ERROR (garbage). */
static int
rt_handle(wf_app_worker_t *w, rt_sock_t *s, wf_app_req_t **newreq)
{
    rt_msg_t *m = &w->msg;
    wf_app_req_t *r;
    uint64_t ack;

    if (m->type == WF_APP_MSG_REQ_HEAD) {
        return rt_on_head(w, s, newreq);
    }
    if (m->type < WF_APP_MSG_REQ_BODY || m->type > WF_APP_MSG_RESP_ACK
        || (m->type > WF_APP_MSG_REQ_ABORT && m->type != WF_APP_MSG_RESP_ACK)) {
        return rt_garbage(w, s, "unexpected message type");
    }
    r = rt_req_find(w, s, m->stream);
    if (r == NULL) {
        wf_log_debug("app: message %" PRIu32 " for ended stream %" PRIu64
                     " dropped",
                     m->type, m->stream);
        return WF_OK;
    }
    switch (m->type) {
    case WF_APP_MSG_REQ_BODY:
        if (m->size == 0 || m->size > WF_APP_MAX_SIZE || r->body_end
            || r->in_flight + m->size > WF_APP_WINDOW) {
            return rt_garbage(w, s, "request body beyond the window");
        }
        if (rt_body_queue(w, r) != WF_OK) {
            return rt_garbage(w, s, "no memory for the request body");
        }
        r->in_flight += m->size;
        return WF_OK;
    case WF_APP_MSG_REQ_END:
        if (m->size != 0 || r->body_end) {
            return rt_garbage(w, s, "bad request body end");
        }
        r->body_end = true;
        return WF_OK;
    case WF_APP_MSG_REQ_ABORT:
        r->aborted = true;
        w->abort_pending = true;
        return WF_OK;
    default: /* WF_APP_MSG_RESP_ACK */
        if (m->size != sizeof(ack)) {
            return rt_garbage(w, s, "bad response ack");
        }
        memcpy(&ack, m->data, sizeof(ack));
        if (ack == 0 || ack > r->out_flight) {
            return rt_garbage(w, s, "response ack beyond what was sent");
        }
        r->out_flight -= ack;
        return WF_OK;
    }
}

/* ---- waiting --------------------------------------------------------------
 * Pull mode: a worker waits for its next request with epoll_wait() over its
 * sockets, then reads the ready ones without blocking; inside a request it
 * reads that request's socket with a blocking recvmsg(): one syscall per
 * message, nothing else. */

static void
rt_req_make_ready(wf_app_worker_t *w, wf_app_req_t *r)
{
    wf_list_add_tail(&w->ready, &r->qlink);
    if (w->dispatching) {
        rt_worker_wake(w); /* a dispatch()ing module must come back for it */
    }
}

/* Flushes the output batch and handles the next message from r's socket,
 * waiting for it.  Returns WF_OK, or WF_ERROR when r can go no further
 * (aborted: the socket closed or the worker broke). */
static int
rt_req_wait(wf_app_req_t *r)
{
    wf_app_worker_t *w = r->w;
    wf_app_req_t *newreq = NULL;
    int rc;

    if (rt_out_flush(w) != WF_OK || r->aborted) {
        return WF_ERROR;
    }
    rc = rt_recv(w, r->s, RT_WAIT);
    if (rc == WF_OK) {
        rc = rt_handle(w, r->s, &newreq);
    }
    if (newreq != NULL) {
        rt_req_make_ready(w, newreq);
    }
    if (w->dispatching && !w->in_dispatch && rt_ring_has(r->s)) {
        rt_worker_wake(w); /* epoll cannot see what the ring holds */
    }
    return rc == WF_OK ? WF_OK : WF_ERROR;
}

static void
rt_announce(wf_app_worker_t *w)
{
    wf_app_ready_t rd;

    if (w->announced) {
        return;
    }
    w->announced = true;
    if (!w->dispatching && w->concurrency == 1) {
        /* A pull worker serves one request at a time, but takes the next
         * one queued behind it: it finds it there when it asks, without
         * a sleep and a wake-up between the two. */
        w->concurrency = 1 + WF_APP_RT_QUEUED;
        w->queued = WF_APP_RT_QUEUED;
    }
    rd = (wf_app_ready_t){
        .concurrency = w->concurrency, .pid = w->app->pid, .queued = w->queued};
    for (unsigned i = 0; i < w->nsocks; i++) {
        if (w->socks[i].fd != -1) {
            rt_out_small(w, &w->socks[i], WF_APP_MSG_READY, 0, &rd, sizeof(rd));
        }
    }
    rt_out_flush(w);
}

static bool
rt_worker_is_stopping(wf_app_worker_t *w)
{
    return atomic_load(&w->app->quit) != RT_RUN || w->broken || w->nopen == 0;
}

static void
rt_wake_drain(wf_app_worker_t *w)
{
    uint64_t v;

    if (read(w->wakefd, &v, sizeof(v)) < 0) {
        /* EAGAIN: already drained. */
    }
}

/* Reads what is there on the sockets of the last wait, without blocking,
 * until a new request comes.  Returns it, or NULL. */
static wf_app_req_t *
rt_next_from_events(wf_app_worker_t *w)
{
    while (w->evpos < w->nev) {
        struct epoll_event *ev = &w->evs[w->evpos];
        rt_sock_t *s = ev->data.ptr;
        wf_app_req_t *newreq = NULL;

        if (s == NULL) {
            rt_wake_drain(w);
            w->evpos++;
            continue;
        }
        if (rt_recv(w, s, RT_POLL) != WF_OK) {
            w->evpos++; /* drained, closed, or garbage */
            continue;
        }
        if (rt_handle(w, s, &newreq) != WF_OK) {
            return NULL; /* the worker is broken */
        }
        if (newreq != NULL) {
            /* One request per socket per round: fairness.  With one
             * socket there is no one to be fair to: the next call reads
             * it again before any epoll_wait() (a request queued behind
             * this one is there, or EAGAIN ends the round). */
            w->evpos += w->nsocks > 1;
            return newreq;
        }
    }
    return NULL;
}

/* Events for the sockets whose ring holds packets (epoll cannot see
 * them), in w->evs.  Returns how many. */
static int
rt_ring_events(wf_app_worker_t *w)
{
    int n = 0;

    for (unsigned i = 0; i < w->nsocks && n < RT_EVENTS; i++) {
        if (w->socks[i].fd != -1 && rt_ring_has(&w->socks[i])) {
            w->evs[n++] = (struct epoll_event){.events = EPOLLIN,
                                               .data.ptr = &w->socks[i]};
        }
    }
    return n;
}

/* epoll_wait() on the worker's sockets; the ones it reports may have
 * packets again. */
static int
rt_epoll_wait(wf_app_worker_t *w, int timeout_ms)
{
    int n = epoll_wait(w->epfd, w->evs, RT_EVENTS, timeout_ms);

    for (int i = 0; i < n; i++) {
        rt_sock_t *s = w->evs[i].data.ptr;

        if (s != NULL) {
            s->drained = false;
        }
    }
    return n;
}

static int
rt_next(wf_app_worker_t *w, wf_app_req_t **req, int timeout_ms)
{
    *req = NULL;
    rt_announce(w);
    for (;;) {
        wf_app_req_t *r;
        int n;

        if (!wf_list_is_empty(&w->ready)) {
            r = wf_container_of(w->ready.next, wf_app_req_t, qlink);
            wf_list_del(&r->qlink);
            *req = r;
            return WF_APP_OK;
        }
        if (rt_worker_is_stopping(w)) {
            return WF_APP_DONE;
        }
        r = rt_next_from_events(w);
        if (r != NULL) {
            *req = r;
            return WF_APP_OK;
        }
        if (w->broken || rt_out_flush(w) != WF_OK) {
            continue;
        }
        n = rt_ring_events(w);
        if (n > 0) {
            w->nev = n;
            w->evpos = 0;
            continue;
        }
        n = rt_epoll_wait(w, timeout_ms);
        if (n == -1 && errno != EINTR) {
            wf_log_alert(errno, "app: epoll_wait() failed");
            return WF_APP_DONE;
        }
        if (n == 0) {
            return WF_APP_AGAIN;
        }
        w->nev = wf_max(n, 0);
        w->evpos = 0;
    }
}

/* ---- events -------------------------------------------------------------- */

static void
rt_fire_aborts(wf_app_worker_t *w, const wf_app_events_t *ev, void *ctx)
{
    bool again = w->abort_pending;

    /* A callback may end any request: rescan after each one. */
    w->abort_pending = false;
    while (again) {
        again = false;
        wf_list_for_each(l, &w->reqs)
        {
            wf_app_req_t *r = wf_container_of(l, wf_app_req_t, link);

            if (r->aborted && !r->abort_told && r->qlink.next == &r->qlink) {
                r->abort_told = true;
                ev->on_abort(ctx, r);
                again = true;
                break;
            }
        }
    }
}

/* Calls the module about the message just handled (type, stream on s). */
static void
rt_fire(wf_app_worker_t *w, rt_sock_t *s, uint32_t type, uint64_t stream,
        const wf_app_events_t *ev, void *ctx)
{
    wf_app_req_t *r = rt_req_find(w, s, stream);

    if (r == NULL || r->qlink.next != &r->qlink) {
        return; /* ended, or not yet given to the module */
    }
    switch (type) {
    case WF_APP_MSG_REQ_BODY:
    case WF_APP_MSG_REQ_END:
        if (!r->aborted) {
            ev->on_readable(ctx, r);
        }
        break;
    case WF_APP_MSG_RESP_ACK:
        if (r->want_write && !r->aborted && r->out_flight < WF_APP_WINDOW) {
            r->want_write = false;
            ev->on_writable(ctx, r);
        }
        break;
    default:
        break; /* aborts: rt_fire_aborts() */
    }
}

static void
rt_dispatch_sock(wf_app_worker_t *w, rt_sock_t *s, const wf_app_events_t *ev,
                 void *ctx)
{
    for (unsigned i = 0; i < RT_READ_MAX && s->fd != -1; i++) {
        wf_app_req_t *newreq = NULL;
        uint32_t type;
        uint64_t stream;

        if (rt_recv(w, s, RT_POLL) != WF_OK) {
            return;
        }
        type = w->msg.type;
        stream = w->msg.stream;
        if (rt_handle(w, s, &newreq) != WF_OK) {
            return;
        }
        if (newreq != NULL) {
            ev->on_request(ctx, newreq);
        } else {
            rt_fire(w, s, type, stream, ev, ctx);
        }
        rt_fire_aborts(w, ev, ctx);
    }
}

static int
rt_dispatch(wf_app_worker_t *w, const wf_app_events_t *ev, void *ctx)
{
    int n;

    w->dispatching = true;
    w->in_dispatch = true;
    rt_announce(w);
    while (!wf_list_is_empty(&w->ready)) {
        wf_app_req_t *r = wf_container_of(w->ready.next, wf_app_req_t, qlink);

        wf_list_del(&r->qlink);
        w->abort_pending = w->abort_pending || r->aborted;
        ev->on_request(ctx, r);
    }
    n = rt_epoll_wait(w, 0);
    for (int i = 0; i < n; i++) {
        rt_sock_t *s = w->evs[i].data.ptr;

        if (s == NULL) {
            rt_wake_drain(w);
        } else if (s->fd != -1) {
            rt_dispatch_sock(w, s, ev, ctx);
        }
    }
    /* Packets a blocking read left in a ring, or beyond RT_READ_MAX. */
    for (unsigned i = 0; i < w->nsocks; i++) {
        if (w->socks[i].fd != -1 && rt_ring_has(&w->socks[i])) {
            rt_dispatch_sock(w, &w->socks[i], ev, ctx);
        }
    }
    w->nev = w->evpos = 0;
    if (atomic_load(&w->app->quit) == RT_TERM) {
        wf_list_for_each(l, &w->reqs)
        {
            wf_container_of(l, wf_app_req_t, link)->aborted = true;
        }
        w->abort_pending = true;
    }
    rt_fire_aborts(w, ev, ctx);
    w->in_dispatch = false;
    rt_out_flush(w);
    if (rt_ring_events(w) > 0) {
        rt_worker_wake(w); /* the loop must call dispatch() again */
    }
    if (rt_worker_is_stopping(w) && w->nactive == 0) {
        return WF_APP_DONE;
    }
    return WF_APP_OK;
}

static int
rt_worker_fd(wf_app_worker_t *w)
{
    return w->epfd;
}

/* ---- request body ----------------------------------------------------------
 */

/* The module took n more body bytes: acknowledge every half window. */
static void
rt_body_consumed(wf_app_req_t *r, size_t n)
{
    uint64_t ack;

    r->in_read += n;
    if (r->in_read < RT_HALF || r->body_end || r->aborted) {
        return;
    }
    ack = r->in_read;
    if (rt_out_small(r->w, r->s, WF_APP_MSG_REQ_ACK, r->stream, &ack,
                     sizeof(ack))
        == WF_OK) {
        r->in_flight -= ack;
        r->in_read = 0;
    }
    /* A pull worker sends it before its next wait; an event worker may
     * read from a task outside dispatch() and then wait in its loop for
     * bytes that only this ack lets the router send: send it now. */
    if (r->w->dispatching) {
        rt_out_flush(r->w);
    }
}

/* Copies buffered body bytes out; returns how many (0: none buffered). */
static size_t
rt_body_take(wf_app_req_t *r, void *buf, size_t len)
{
    size_t n;

    if (r->hbody_len > 0) {
        n = wf_min(len, r->hbody_len);
        memcpy(buf, r->hbody, n);
        r->hbody += n;
        r->hbody_len -= n;
    } else if (r->blen > r->bpos) {
        n = wf_min(len, r->blen - r->bpos);
        memcpy(buf, r->bbuf + r->bpos, n);
        r->bpos += n;
    } else {
        return 0;
    }
    rt_body_consumed(r, n);
    return n;
}

static ssize_t
rt_read_common(wf_app_req_t *r, void *buf, size_t len, bool block)
{
    for (;;) {
        size_t n;

        if (r->aborted) {
            return WF_APP_ERROR;
        }
        if (len == 0) {
            return 0;
        }
        n = rt_body_take(r, buf, len);
        if (n > 0) {
            return (ssize_t)n;
        }
        if (r->body_end) {
            return 0;
        }
        if (!block && r->w->dispatching) {
            return WF_APP_AGAIN; /* dispatch() reads and calls back */
        }
        if (!block) {
            wf_app_req_t *newreq = NULL;
            int rc;

            rt_out_flush(r->w);
            rc = rt_recv(r->w, r->s, RT_TRY);
            if (rc == WF_AGAIN) {
                return WF_APP_AGAIN;
            }
            if (rc == WF_OK) {
                rt_handle(r->w, r->s, &newreq);
            }
            if (newreq != NULL) {
                rt_req_make_ready(r->w, newreq);
            }
            continue;
        }
        rt_req_wait(r);
    }
}

static ssize_t
rt_read(wf_app_req_t *r, void *buf, size_t len)
{
    return rt_read_common(r, buf, len, true);
}

static ssize_t
rt_read_nb(wf_app_req_t *r, void *buf, size_t len)
{
    return rt_read_common(r, buf, len, false);
}

/* ---- response ------------------------------------------------------------ */

static size_t
rt_str_size(size_t len)
{
    return sizeof(uint32_t) + ((len + 1 + 3) & ~(size_t)3);
}

static unsigned char *
rt_str_encode(unsigned char *p, const char *data, size_t len)
{
    uint32_t l = (uint32_t)len;
    size_t padded = (len + 1 + 3) & ~(size_t)3;

    memcpy(p, &l, sizeof(l));
    p += sizeof(l);
    if (len > 0) {
        memcpy(p, data, len);
    }
    memset(p + len, 0, padded - len);
    return p + padded;
}

/* Bytes of RESP_HEAD's payload before the body, or 0 if a field is too
 * large to encode. */
static size_t
rt_resp_head_size(const wf_app_field_t *fields, size_t nfields)
{
    size_t n = sizeof(wf_app_resp_hdr_t);

    for (size_t i = 0; i < nfields; i++) {
        if (fields[i].name.len > UINT32_MAX / 2
            || fields[i].value.len > UINT32_MAX / 2) {
            return 0;
        }
        n += rt_str_size(fields[i].name.len) + rt_str_size(fields[i].value.len);
    }
    return n;
}

static void
rt_resp_head_encode(unsigned char *p, unsigned status,
                    const wf_app_field_t *fields, size_t nfields,
                    uint32_t flags, size_t body_size)
{
    wf_app_resp_hdr_t hdr = {.status = (uint16_t)status,
                             .nfields = (uint16_t)nfields,
                             .flags = flags,
                             .body_size = (uint32_t)body_size};

    memcpy(p, &hdr, sizeof(hdr));
    p += sizeof(hdr);
    for (size_t i = 0; i < nfields; i++) {
        p = rt_str_encode(p, fields[i].name.data, fields[i].name.len);
        p = rt_str_encode(p, fields[i].value.data, fields[i].value.len);
    }
}

/* Marks an encoded head WF_APP_RESP_DONE. */
static void
rt_resp_head_done(unsigned char *p)
{
    uint32_t flags;

    memcpy(&flags, p + offsetof(wf_app_resp_hdr_t, flags), sizeof(flags));
    flags |= WF_APP_RESP_DONE;
    memcpy(p + offsetof(wf_app_resp_hdr_t, flags), &flags, sizeof(flags));
}

/* Queues RESP_BODY pieces for what the window allows, then flushes (the
 * data is borrowed).  Returns bytes taken, WF_APP_AGAIN (!block, window
 * full) or WF_APP_ERROR. */
static ssize_t
rt_write_common(wf_app_req_t *r, const void *data, size_t len, bool block)
{
    const unsigned char *p = data;
    size_t done = 0;

    if (r->aborted || !r->responded || r->s->fd == -1) {
        return WF_APP_ERROR;
    }
    while (done < len) {
        size_t room = WF_APP_WINDOW - r->out_flight;
        size_t n = wf_min(wf_min(room, len - done), (size_t)WF_APP_MAX_SIZE);
        struct iovec iov = {(void *)(p + done), n};

        if (n == 0 && !block) {
            break;
        }
        if (n == 0) {
            if (rt_req_wait(r) != WF_OK) {
                return WF_APP_ERROR;
            }
            continue;
        }
        if (rt_out_msg(r->w, r->s, WF_APP_MSG_RESP_BODY, r->stream, &iov, 1, n,
                       -1)
            != WF_OK) {
            return WF_APP_ERROR;
        }
        r->out_flight += n;
        done += n;
    }
    if (rt_out_flush(r->w) != WF_OK) {
        return WF_APP_ERROR;
    }
    if (done == 0 && len > 0) {
        r->want_write = true;
        return WF_APP_AGAIN;
    }
    return (ssize_t)done;
}

static ssize_t
rt_write(wf_app_req_t *r, const void *data, size_t len)
{
    return rt_write_common(r, data, len, true);
}

static ssize_t
rt_write_nb(wf_app_req_t *r, const void *data, size_t len)
{
    return rt_write_common(r, data, len, false);
}

/* A complete response that fits one fragment: copied into the batch and
 * held there, so that end() sends it as the whole exchange (with
 * WF_APP_RESP_DONE) or with RESP_END, in one system call. */
static int
rt_respond_held(wf_app_req_t *r, unsigned status, const wf_app_field_t *fields,
                size_t nfields, size_t hlen, const void *body, size_t len)
{
    unsigned char *p = rt_out_reserve(r->w, r->s, hlen + len);
    struct iovec iov;

    if (p == NULL) {
        return WF_APP_ERROR;
    }
    rt_resp_head_encode(p, status, fields, nfields, WF_APP_RESP_END, len);
    if (len > 0) {
        memcpy(p + hlen, body, len);
    }
    iov = (struct iovec){p, hlen + len};
    r->out_flight += len;
    if (rt_out_msg(r->w, r->s, WF_APP_MSG_RESP_HEAD, r->stream, &iov, 1,
                   hlen + len, -1)
        != WF_OK) {
        return WF_APP_ERROR;
    }
    r->held = p;
    r->held_flush = r->w->nflush;
    return WF_APP_OK;
}

/* Any other head goes now, with up to a window of body referenced in
 * place (it is borrowed: flushed before returning). */
static int
rt_respond_now(wf_app_req_t *r, unsigned status, const wf_app_field_t *fields,
               size_t nfields, size_t hlen, const void *body, size_t len,
               bool end)
{
    unsigned char *p, *heap = NULL;
    struct iovec iov[2];
    int rc;

    /* A head larger than the batch buffer (huge fields) is rare. */
    p = hlen <= RT_OBUF_SIZE ? rt_out_reserve(r->w, r->s, hlen)
                             : (heap = malloc(hlen));
    if (p == NULL) {
        return WF_APP_ERROR;
    }
    rt_resp_head_encode(p, status, fields, nfields, end ? WF_APP_RESP_END : 0,
                        len);
    iov[0] = (struct iovec){p, hlen};
    iov[1] = (struct iovec){(void *)body, len};
    rc = rt_out_msg(r->w, r->s, WF_APP_MSG_RESP_HEAD, r->stream, iov, 2,
                    hlen + len, -1);
    if (rc == WF_OK) {
        rc = rt_out_flush(r->w);
    }
    free(heap);
    if (rc != WF_OK) {
        return WF_APP_ERROR;
    }
    r->out_flight += len;
    return WF_APP_OK;
}

static int
rt_respond(wf_app_req_t *r, unsigned status, const wf_app_field_t *fields,
           size_t nfields, const void *body, size_t len, int last)
{
    size_t hlen = rt_resp_head_size(fields, nfields);
    size_t inbody = wf_min(len, (size_t)WF_APP_WINDOW);
    bool end = last != 0 && inbody == len;

    if (r->responded || r->aborted || r->s->fd == -1) {
        return WF_APP_ERROR;
    }
    if (status < 100 || status > 999 || nfields > WF_APP_MAX_FIELDS || hlen == 0
        || (len > 0 && body == NULL) || (nfields > 0 && fields == NULL)) {
        wf_log_error(0, "app: bad response head (status %u, %zu fields)",
                     status, nfields);
        return WF_APP_ERROR;
    }
    r->responded = true;
    if (end && hlen + len <= WF_APP_MAX_SIZE) {
        return rt_respond_held(r, status, fields, nfields, hlen, body, len);
    }
    if (rt_respond_now(r, status, fields, nfields, hlen, body, inbody, end)
        != WF_APP_OK) {
        return WF_APP_ERROR;
    }
    /* More than a window: the rest streams, blocking on acks. */
    if (len > inbody
        && rt_write(r, (const unsigned char *)body + inbody, len - inbody)
               < 0) {
        return WF_APP_ERROR;
    }
    return WF_APP_OK;
}

static int
rt_send_file(wf_app_req_t *r, int fd, off_t off, off_t len)
{
    wf_app_resp_file_t f = {.offset = (uint64_t)off, .length = (uint64_t)len};
    unsigned char *p;
    struct iovec iov;

    if (r->aborted || !r->responded || r->s->fd == -1 || fd < 0 || off < 0
        || len < 0) {
        return WF_APP_ERROR;
    }
    if (len == 0) {
        return WF_APP_OK;
    }
    p = rt_out_reserve(r->w, r->s, sizeof(f));
    if (p == NULL) {
        return WF_APP_ERROR;
    }
    memcpy(p, &f, sizeof(f));
    iov = (struct iovec){p, sizeof(f)};
    /* The fd is borrowed: send it before returning. */
    if (rt_out_msg(r->w, r->s, WF_APP_MSG_RESP_FILE, r->stream, &iov, 1,
                   sizeof(f), fd)
            != WF_OK
        || rt_out_flush(r->w) != WF_OK) {
        return WF_APP_ERROR;
    }
    return WF_APP_OK;
}

/* An ended request's last packet goes now, or, within dispatch(), with
 * the batch dispatch() sends as it returns (the answers to the requests
 * it handed out that the module served at once: one sendmmsg()). */
static void
rt_end_flush(wf_app_worker_t *w)
{
    if (!w->in_dispatch) {
        rt_out_flush(w);
    }
}

#define RT_IDLE_MAX 8 /* request objects kept per worker */
#define RT_KEEP_MAX (WF_APP_WINDOW + RT_RBUF_SIZE) /* buffer kept with one */

static void
rt_end(wf_app_req_t *r, int ok)
{
    wf_app_worker_t *w = r->w;
    rt_sock_t *s = r->s;
    uint32_t code = ok != 0 && r->responded && !r->aborted ? 0 : 1;

    if (s->fd != -1 && code == 0 && r->held != NULL
        && r->held_flush == w->nflush) {
        /* The complete head is still in the batch: it says DONE. */
        rt_resp_head_done(r->held);
        rt_end_flush(w);
    } else if (s->fd != -1
               && rt_out_small(w, s, WF_APP_MSG_RESP_END, r->stream, &code,
                               sizeof(code))
                      == WF_OK) {
        rt_end_flush(w);
    }
    r->held = NULL;
    wf_list_del(&r->link);
    wf_list_del(&r->qlink);
    s->active--;
    w->nactive--;
    if (w->nidle < RT_IDLE_MAX) {
        /* Keep the usual buffers, not those one huge message grew. */
        if (r->hcap > RT_KEEP_MAX) {
            free(r->hbuf);
            r->hbuf = NULL;
            r->hcap = 0;
        }
        if (r->bcap > RT_KEEP_MAX) {
            free(r->bbuf);
            r->bbuf = NULL;
            r->bcap = 0;
        }
        wf_list_add_tail(&w->idle, &r->link);
        w->nidle++;
    } else {
        rt_req_free(r);
    }
    if (w->nactive == 0 && w->dispatching && rt_worker_is_stopping(w)) {
        rt_worker_wake(w); /* dispatch() returns DONE now */
    }
}

/* ---- the table --------------------------------------------------------------
 */

static wf_app_worker_t *
rt_worker(wf_app_t *app, unsigned i)
{
    return i < app->nworkers ? &app->workers[i] : NULL;
}

static void
rt_set_concurrency(wf_app_worker_t *w, unsigned n)
{
    if (w->announced) {
        wf_log_warn(0, "app: set_concurrency() after the worker started");
        return;
    }
    w->concurrency = n == 0 ? 1 : n;
}

static const wf_app_head_t *
rt_head(wf_app_req_t *r)
{
    return &r->head;
}

static void
rt_set_data(wf_app_req_t *r, void *data)
{
    r->data = data;
}

static void *
rt_data(wf_app_req_t *r)
{
    return r->data;
}

static const wf_app_rt_t rt_table = {
    .abi = WF_APP_ABI,
    .log = rt_log,
    .vlog = rt_vlog,
    .worker = rt_worker,
    .set_concurrency = rt_set_concurrency,
    .next = rt_next,
    .worker_fd = rt_worker_fd,
    .dispatch = rt_dispatch,
    .head = rt_head,
    .read = rt_read,
    .read_nb = rt_read_nb,
    .respond = rt_respond,
    .write = rt_write,
    .write_nb = rt_write_nb,
    .send_file = rt_send_file,
    .end = rt_end,
    .set_data = rt_set_data,
    .data = rt_data,
};

const wf_app_rt_t *
wf_app_rt_table(void)
{
    return &rt_table;
}

/* ---- life ------------------------------------------------------------------
 */

static int
rt_worker_init(wf_app_t *app, wf_app_worker_t *w, unsigned k)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};

    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    w->rbuf = malloc(RT_RBUF_SIZE);
    w->rcap = RT_RBUF_SIZE;
    w->obuf = malloc(RT_OBUF_SIZE);
    if (w->epfd == -1 || w->wakefd == -1 || w->rbuf == NULL
        || w->obuf == NULL) {
        wf_log_alert(errno, "app: worker %u: no epoll, eventfd or memory", k);
        return WF_ERROR;
    }
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) == -1) {
        wf_log_alert(errno, "app: epoll_ctl() failed");
        return WF_ERROR;
    }
    for (unsigned t = 0; t < w->nsocks; t++) {
        rt_sock_t *s = &w->socks[t];
        int flags = fcntl(s->fd, F_GETFL);
        int sndbuf = WF_APP_WINDOW + WF_APP_MAX_SIZE;

        ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = s};
        if (flags == -1 || fcntl(s->fd, F_SETFL, flags & ~O_NONBLOCK) == -1
            || epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->fd, &ev) == -1) {
            wf_log_alert(errno, "app: socket %u is unusable", s->index);
            return WF_ERROR;
        }
        /* Best effort: a window of body fits without blocking. */
        setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    }
    wf_unused(app);
    return WF_OK;
}

/* The fields every later step (and destroy()) relies on. */
static void
rt_worker_preset(wf_app_t *app, wf_app_worker_t *w, unsigned k, unsigned n)
{
    *w = (wf_app_worker_t){.app = app,
                           .index = k,
                           .concurrency = 1,
                           .epfd = -1,
                           .wakefd = -1,
                           .nsocks = n,
                           .nopen = n};
    wf_list_init(&w->reqs);
    wf_list_init(&w->ready);
    wf_list_init(&w->idle);
}

wf_app_t *
wf_app_rt_create(const wf_app_conf_t *conf, unsigned slots,
                 unsigned router_threads, const int *fds)
{
    unsigned nfds = slots * router_threads;
    wf_app_t *app = NULL;

    if (slots == 0 || router_threads == 0 || nfds > WF_APP_MAX_FDS) {
        wf_log_alert(0, "app: %u slots of %u sockets: out of range", slots,
                     router_threads);
        goto fail_fds;
    }
    app = calloc(1, sizeof(*app));
    if (app == NULL
        || (app->workers = calloc(slots, sizeof(*app->workers))) == NULL) {
        wf_log_alert(errno, "app: calloc() failed");
        goto fail_fds;
    }
    app->conf = *conf;
    app->conf.threads = slots;
    app->nworkers = slots;
    app->router_threads = router_threads;
    app->pid = (uint32_t)getpid();
    atomic_init(&app->quit, RT_RUN);
    for (unsigned k = 0; k < slots; k++) {
        rt_worker_preset(app, &app->workers[k], k, router_threads);
    }
    for (unsigned k = 0; k < slots; k++) {
        wf_app_worker_t *w = &app->workers[k];

        w->socks = calloc(router_threads, sizeof(*w->socks));
        if (w->socks == NULL) {
            wf_log_alert(errno, "app: calloc() failed");
            goto fail_fds;
        }
        for (unsigned t = 0; t < router_threads; t++) {
            w->socks[t] = (rt_sock_t){.fd = fds[k * router_threads + t],
                                      .index = k * router_threads + t,
                                      .w = w};
        }
    }
    /* Every fd is owned by a socket now: destroy() closes them. */
    for (unsigned k = 0; k < slots; k++) {
        if (rt_worker_init(app, &app->workers[k], k) != WF_OK) {
            wf_app_rt_destroy(app);
            return NULL;
        }
    }
    return app;

fail_fds:
    /* Close the fds that no socket took yet. */
    for (unsigned i = 0; i < nfds && i < WF_APP_MAX_FDS; i++) {
        unsigned k = i / wf_max(router_threads, 1u);

        if (app == NULL || app->workers == NULL || k >= slots
            || app->workers[k].socks == NULL) {
            close(fds[i]);
        }
    }
    wf_app_rt_destroy(app);
    return NULL;
}

static void
rt_reqs_free(wf_list_t *list)
{
    while (!wf_list_is_empty(list)) {
        wf_app_req_t *r = wf_container_of(list->next, wf_app_req_t, link);

        wf_list_del(&r->link);
        rt_req_free(r);
    }
}

void
wf_app_rt_destroy(wf_app_t *app)
{
    if (app == NULL) {
        return;
    }
    for (unsigned k = 0; app->workers != NULL && k < app->nworkers; k++) {
        wf_app_worker_t *w = &app->workers[k];

        for (unsigned t = 0; w->socks != NULL && t < w->nsocks; t++) {
            if (w->socks[t].fd != -1) {
                close(w->socks[t].fd);
            }
        }
        if (w->epfd != -1) {
            close(w->epfd);
        }
        if (w->wakefd != -1) {
            close(w->wakefd);
        }
        rt_reqs_free(&w->reqs);
        rt_reqs_free(&w->idle);
        for (unsigned t = 0; w->socks != NULL && t < w->nsocks; t++) {
            rt_slot_t *ring = w->socks[t].ring;

            for (unsigned i = 0; ring != NULL && i < RT_RING; i++) {
                free(ring[i].buf);
            }
            free(ring);
        }
        free(w->socks);
        free(w->rbuf);
        free(w->obuf);
    }
    free(app->workers);
    free(app);
}

void
wf_app_rt_stop(wf_app_t *app, bool graceful)
{
    int want = graceful ? RT_QUIT : RT_TERM;
    int cur = atomic_load(&app->quit);

    /* TERM overrides QUIT; nothing goes back to running. */
    while (cur < want
           && !atomic_compare_exchange_weak(&app->quit, &cur, want)) {
    }
    for (unsigned k = 0; k < app->nworkers; k++) {
        wf_app_worker_t *w = &app->workers[k];

        rt_worker_wake(w);
        if (graceful) {
            continue;
        }
        /* A thread blocked in recvmsg() inside a request is not woken by
         * the eventfd: shutting the sockets down makes that wait an EOF,
         * so its request fails and the worker ends.  (A socket closed
         * meanwhile by its worker leaves -1 here first; the window where
         * its number is reused by another fd is the price of a fast
         * stop.) */
        for (unsigned t = 0; t < w->nsocks; t++) {
            int fd = __atomic_load_n(&w->socks[t].fd, __ATOMIC_RELAXED);

            if (fd != -1) {
                shutdown(fd, SHUT_RDWR);
            }
        }
    }
}
