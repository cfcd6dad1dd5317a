/* A connection's transport: what its reads and writes go through.  A plain
 * connection has none (ops == NULL: the socket calls, inline); a TLS one
 * has net/tls.c's ops.  Every function keeps the socket calls' contract:
 * a byte count, 0 at EOF (reads), or -1 with errno set (EAGAIN when the
 * transport would block, whatever direction it waits for). */
#ifndef WF_NET_XPRT_H
#define WF_NET_XPRT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct wf_xprt wf_xprt_t;

typedef struct wf_xprt_ops {
    const char *name;
    ssize_t (*recv)(wf_xprt_t *x, int fd, void *buf, size_t n);
    /* msg->msg_iov's bytes in order; flags as for sendmsg() (ignored by
     * transports that do not write the socket themselves). */
    ssize_t (*sendmsg)(wf_xprt_t *x, int fd, const struct msghdr *msg,
                       int flags);
    /* Up to n bytes of in_fd from *off; advances *off by the count. */
    ssize_t (*sendfile)(wf_xprt_t *x, int fd, int in_fd, off_t *off, size_t n);
    /* Says goodbye (TLS close_notify) and shuts the write side. */
    int (*shutdown)(wf_xprt_t *x, int fd);
    /* Whether read bytes wait in the transport: the socket will not poll
     * readable for them, so the caller must read again by itself. */
    bool (*pending)(const wf_xprt_t *x);
    /* Releases the transport's state; the fd stays open (the caller
     * closes it). */
    void (*close)(wf_xprt_t *x);
} wf_xprt_ops_t;

struct wf_xprt {
    const wf_xprt_ops_t *ops; /* NULL: plain socket */
    void *tls;                /* owned by ops (an SSL *); NULL when plain */
    unsigned state;           /* owned by ops (net/tls.c: TLS_X_*) */
};

static inline bool
wf_xprt_is_tls(const wf_xprt_t *x)
{
    return x->ops != NULL;
}

static inline ssize_t
wf_xprt_recv(wf_xprt_t *x, int fd, void *buf, size_t n)
{
    return x->ops == NULL ? recv(fd, buf, n, 0) : x->ops->recv(x, fd, buf, n);
}

static inline ssize_t
wf_xprt_sendmsg(wf_xprt_t *x, int fd, const struct msghdr *msg, int flags)
{
    return x->ops == NULL ? sendmsg(fd, msg, flags)
                          : x->ops->sendmsg(x, fd, msg, flags);
}

static inline ssize_t
wf_xprt_send(wf_xprt_t *x, int fd, const void *buf, size_t n, int flags)
{
    struct iovec iov = {(void *)buf, n};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

    return x->ops == NULL ? send(fd, buf, n, flags)
                          : x->ops->sendmsg(x, fd, &msg, flags);
}

/* sendfile() for a plain socket (net/xprt.c); the transport's otherwise. */
ssize_t wf_xprt_plain_sendfile(int fd, int in_fd, off_t *off, size_t n);

static inline ssize_t
wf_xprt_sendfile(wf_xprt_t *x, int fd, int in_fd, off_t *off, size_t n)
{
    return x->ops == NULL ? wf_xprt_plain_sendfile(fd, in_fd, off, n)
                          : x->ops->sendfile(x, fd, in_fd, off, n);
}

static inline int
wf_xprt_shutdown(wf_xprt_t *x, int fd)
{
    return x->ops == NULL ? shutdown(fd, SHUT_WR) : x->ops->shutdown(x, fd);
}

static inline bool
wf_xprt_pending(const wf_xprt_t *x)
{
    return x->ops != NULL && x->ops->pending(x);
}

/* Releases the transport (never the fd); x is plain afterwards. */
static inline void
wf_xprt_close(wf_xprt_t *x)
{
    if (x->ops != NULL) {
        x->ops->close(x);
        x->ops = NULL;
    }
}

#endif
