#include "core/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"

#define WF_LISTEN_MAX 64 /* listeners in one process */

typedef struct listen_handoff {
    wf_task_t task;
    wf_listener_t *listener;
    int fd;
    socklen_t peerlen;
    struct sockaddr_storage peer;
} listen_handoff_t;

static unsigned listen_maxconn;
static unsigned listen_maxaccept = 64;
static _Atomic unsigned listen_nconn; /* connections open, all loops */
static _Atomic bool listen_full;      /* listeners unregistered */
static pthread_mutex_t listen_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_listener_t *listen_all[WF_LISTEN_MAX]; /* under listen_lock */
static unsigned listen_count;

static unsigned
listen_default_maxconn(void)
{
    struct rlimit rl;
    rlim_t n;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        return 1024;
    }
    n = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
    /* Keep room for listeners, cached files, logs and helpers. */
    return n > 2048 ? (unsigned)(n - 1024) : (unsigned)(n / 2);
}

void
wf_listen_set_limits(unsigned maxconn, unsigned maxaccept)
{
    listen_maxconn = maxconn != 0 ? maxconn : listen_default_maxconn();
    if (maxaccept != 0) {
        listen_maxaccept = maxaccept;
    }
}

unsigned
wf_listen_maxconn(void)
{
    return listen_maxconn;
}

static int
listen_socket_options(int fd, int family)
{
    int one = 1;

    if (family == AF_UNIX) {
        return WF_OK;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1) {
        wf_log_error(errno, "setsockopt(SO_REUSEADDR) failed");
        return WF_ERROR;
    }
    if (family == AF_INET6
        && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1) {
        wf_log_error(errno, "setsockopt(IPV6_V6ONLY) failed");
        return WF_ERROR;
    }
    /* Wake a loop only when the request has arrived. */
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof(one));
    /* Accepted sockets inherit it: a streamed response (a proxied or an
     * application's body) is written as several sends, and Nagle would
     * hold each one after the first until the client's delayed ACK. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return WF_OK;
}

int
wf_listener_open(wf_listener_t *l)
{
    int family = l->addr.ss_family;
    int fd;

    l->io.fd = -1;
    l->io.events = 0;
    l->started = false;
    if (family == AF_UNIX) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&l->addr;

        if (sun->sun_path[0] != '\0') {
            unlink(sun->sun_path);
        }
    }
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        wf_log_error(errno, "socket(%s) failed", l->name);
        return WF_ERROR;
    }
    if (listen_socket_options(fd, family) != WF_OK) {
        goto fail_close;
    }
    if (bind(fd, (struct sockaddr *)&l->addr, l->addrlen) == -1) {
        wf_log_error(errno, "bind(%s) failed", l->name);
        goto fail_close;
    }
    if (listen(fd, WF_LISTEN_BACKLOG) == -1) {
        wf_log_error(errno, "listen(%s) failed", l->name);
        goto fail_close;
    }
    l->io.fd = fd;
    return WF_OK;

fail_close:
    close(fd);
    return WF_ERROR;
}

static int
listen_poll_all(wf_listener_t *l, int op)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE,
                             .data.fd = l->io.fd};

    for (unsigned i = 0; i < wf_loops_count(); i++) {
        if (epoll_ctl(wf_loop_get(i)->epfd, op, l->io.fd,
                      op == EPOLL_CTL_DEL ? NULL : &ev)
                == -1
            && op != EPOLL_CTL_DEL) {
            wf_log_error(errno, "epoll_ctl(%s) failed", l->name);
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static void listen_on_accept(wf_io_t *io, uint32_t events);

int
wf_listener_start(wf_listener_t *l)
{
    int rc = WF_OK;

    l->io.handler = listen_on_accept;
    if (wf_io_table_set(&l->io) != WF_OK) {
        return WF_ERROR;
    }
    pthread_mutex_lock(&listen_lock);
    if (listen_count == WF_LISTEN_MAX) {
        wf_log_error(0, "too many listeners");
        rc = WF_ERROR;
    } else {
        listen_all[listen_count++] = l;
        l->started = true;
        if (!atomic_load(&listen_full)) {
            rc = listen_poll_all(l, EPOLL_CTL_ADD);
        }
    }
    pthread_mutex_unlock(&listen_lock);
    return rc;
}

void
wf_listener_close(wf_listener_t *l)
{
    if (l->io.fd == -1) {
        return;
    }
    pthread_mutex_lock(&listen_lock);
    if (l->started) {
        listen_poll_all(l, EPOLL_CTL_DEL);
        for (unsigned i = 0; i < listen_count; i++) {
            if (listen_all[i] == l) {
                listen_all[i] = listen_all[--listen_count];
                break;
            }
        }
        l->started = false;
    }
    pthread_mutex_unlock(&listen_lock);
    wf_io_table_clear(&l->io);
    close(l->io.fd);
    l->io.fd = -1;
}

/* Stops polling every listener: maxconn is reached. */
static void
listen_pause(void)
{
    pthread_mutex_lock(&listen_lock);
    if (!atomic_load(&listen_full)
        && atomic_load(&listen_nconn) >= listen_maxconn) {
        atomic_store(&listen_full, true);
        for (unsigned i = 0; i < listen_count; i++) {
            listen_poll_all(listen_all[i], EPOLL_CTL_DEL);
        }
    }
    pthread_mutex_unlock(&listen_lock);
}

static void
listen_resume(void)
{
    pthread_mutex_lock(&listen_lock);
    if (atomic_load(&listen_full)
        && atomic_load(&listen_nconn) < listen_maxconn) {
        atomic_store(&listen_full, false);
        for (unsigned i = 0; i < listen_count; i++) {
            listen_poll_all(listen_all[i], EPOLL_CTL_ADD);
        }
    }
    pthread_mutex_unlock(&listen_lock);
}

void
wf_listen_conn_add(wf_loop_t *loop)
{
    atomic_fetch_add(&loop->nconn, 1);
    atomic_fetch_add(&listen_nconn, 1);
}

void
wf_listen_conn_release(wf_loop_t *loop)
{
    atomic_fetch_sub(&loop->nconn, 1);
    atomic_fetch_sub(&listen_nconn, 1);
    if (wf_unlikely(atomic_load(&listen_full))) {
        listen_resume();
    }
}

/* Returns the loop that should own a new connection: this one, unless
 * another holds clearly fewer (a fifth fewer and at least two). */
static wf_loop_t *
listen_pick_loop(wf_loop_t *self)
{
    unsigned mine = atomic_load(&self->nconn);
    wf_loop_t *best = self;
    unsigned least = mine;

    for (unsigned i = 0; i < wf_loops_count(); i++) {
        wf_loop_t *loop = wf_loop_get(i);
        unsigned n = atomic_load(&loop->nconn);

        if (n < least) {
            least = n;
            best = loop;
        }
    }
    if (best != self && mine - least >= 2 && least * 5 < mine * 4) {
        return best;
    }
    return self;
}

static void
listen_on_handoff(wf_task_t *task)
{
    listen_handoff_t *h = wf_container_of(task, listen_handoff_t, task);
    wf_loop_t *loop = wf_loop_current();

    h->listener->on_accept(h->listener, loop, h->fd,
                           (struct sockaddr *)&h->peer, h->peerlen);
    free(h);
}

static void
listen_dispatch(wf_listener_t *l, wf_loop_t *self, int fd,
                const struct sockaddr_storage *peer, socklen_t peerlen)
{
    wf_loop_t *target = listen_pick_loop(self);
    listen_handoff_t *h;

    atomic_fetch_add(&target->nconn, 1);
    if (target == self) {
        l->on_accept(l, self, fd, (const struct sockaddr *)peer, peerlen);
        return;
    }
    h = malloc(sizeof(*h));
    if (h == NULL) {
        atomic_fetch_sub(&target->nconn, 1);
        atomic_fetch_add(&self->nconn, 1);
        l->on_accept(l, self, fd, (const struct sockaddr *)peer, peerlen);
        return;
    }
    h->task.handler = listen_on_handoff;
    h->listener = l;
    h->fd = fd;
    h->peer = *peer;
    h->peerlen = peerlen;
    wf_task_post(target, &h->task);
}

static void
listen_on_accept(wf_io_t *io, uint32_t events)
{
    wf_listener_t *l = wf_container_of(io, wf_listener_t, io);
    wf_loop_t *self = wf_loop_current();

    wf_unused(events);
    for (unsigned i = 0; i < listen_maxaccept; i++) {
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof(peer);
        int fd;

        if (atomic_fetch_add(&listen_nconn, 1) >= listen_maxconn) {
            atomic_fetch_sub(&listen_nconn, 1);
            listen_pause();
            return;
        }
        fd = accept4(io->fd, (struct sockaddr *)&peer, &peerlen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            int err = errno;

            atomic_fetch_sub(&listen_nconn, 1);
            if (err == EAGAIN || err == EINTR || err == ECONNABORTED) {
                return;
            }
            /* EMFILE and friends: the socket stays readable, so the next
             * wake-up retries once a connection has closed. */
            wf_log_error(err, "accept4(%s) failed", l->name);
            return;
        }
        listen_dispatch(l, self, fd, &peer, peerlen);
    }
}

bool
wf_sockaddr_eq(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family) {
        return false;
    }
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;

        return x->sin_port == y->sin_port
               && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;

        return x->sin6_port == y->sin6_port
               && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr))
                      == 0;
    }
    if (a->sa_family == AF_UNIX) {
        const struct sockaddr_un *x = (const struct sockaddr_un *)a;
        const struct sockaddr_un *y = (const struct sockaddr_un *)b;

        /* Abstract names start with a NUL: compare the whole path. */
        return memcmp(x->sun_path, y->sun_path, sizeof(x->sun_path)) == 0;
    }
    return false;
}
