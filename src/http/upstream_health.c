/* Active health checks (see upstream_health.h).
 *
 * A check's states, on its owner loop:
 *   WAIT     no socket; the timer runs until the next probe (interval)
 *   CONNECT  connect() in progress (EPOLLOUT); the timer is the timeout
 *   SEND     the request is being written (EPOLLOUT)
 *   READ     reading up to the end of the status line (EPOLLIN)
 * A probe ends in a success (a status in [status_min, status_max]) or a
 * failure (refused, reset, timed out, not HTTP); rise successes in a row
 * bring the server up, fall failures in a row take it down.
 *
 * Ownership: the router's main loop creates and stops checks
 * (wf_upstream_health_publish()); it hands each to its owner loop with
 * the start task and takes it back with the stop task, which frees it.
 * In between only the owner loop touches the check's socket and timer. */
#include "http/upstream_health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"
#include "http/upstream_peer.h"

#define CHECK_BUF 1024 /* the request out, then the status line in */

typedef enum check_state {
    CHECK_WAIT = 0,
    CHECK_CONNECT,
    CHECK_SEND,
    CHECK_READ,
} check_state_t;

typedef struct wf_upstream_check {
    wf_list_t link; /* in check_all (main loop) */
    unsigned gen;   /* the last publish that wanted it (main loop) */
    wf_upstream_peer_t *peer;
    char *name;                    /* owned: the server's name, for the log */
    wf_upstream_check_conf_t conf; /* path and host owned */
    wf_loop_t *loop;               /* the owner */
    wf_task_t start;
    wf_task_t stop;
    wf_timer_t timer;
    wf_io_t io;
    check_state_t state;
    char buf[CHECK_BUF];
    size_t len; /* request bytes, then status bytes read */
    size_t off; /* request bytes sent */
    unsigned ok_run;
    unsigned fail_run;
} wf_upstream_check_t;

static wf_list_t check_all = {&check_all, &check_all};
static unsigned check_gen;

static void check_on_io(wf_io_t *io, uint32_t events);

static void
check_close(wf_upstream_check_t *c)
{
    if (c->io.fd >= 0) {
        wf_io_del(c->loop, &c->io);
        close(c->io.fd);
        c->io.fd = -1;
    }
}

/* One probe is over: the verdict, then wait for the next one. */
static void
check_result(wf_upstream_check_t *c, bool ok, const char *why)
{
    wf_upstream_peer_t *p = c->peer;
    bool down = atomic_load(&p->check_down);

    check_close(c);
    atomic_fetch_add_explicit(&p->check_total, 1, memory_order_relaxed);
    if (ok) {
        c->fail_run = 0;
        c->ok_run++;
        if (down && c->ok_run >= c->conf.rise) {
            atomic_store(&p->check_down, false);
            wf_log_notice(0, "health check of \"%s\": up", c->name);
        }
    } else {
        c->ok_run = 0;
        c->fail_run++;
        if (!down && c->fail_run >= c->conf.fall) {
            atomic_store(&p->check_down, true);
            wf_log_warn(0, "health check of \"%s\": down (%s)", c->name, why);
        }
    }
    c->state = CHECK_WAIT;
    wf_timer_set(c->loop, &c->timer, c->conf.interval_ms);
}

/* "HTTP/1.x SSS" at the start of buf[0..len), once a line ended. */
static void
check_status(wf_upstream_check_t *c, bool eof)
{
    unsigned status;
    char *eol = memchr(c->buf, '\n', c->len);

    if (eol == NULL && !eof && c->len < sizeof(c->buf) - 1) {
        return; /* more to read */
    }
    c->buf[c->len] = '\0';
    if (c->len < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0
        || sscanf(c->buf + 9, "%3u", &status) != 1) {
        check_result(c, false, "not an HTTP response");
        return;
    }
    check_result(c,
                 status >= c->conf.status_min && status <= c->conf.status_max,
                 "unexpected status");
}

static void
check_read(wf_upstream_check_t *c)
{
    ssize_t n = recv(c->io.fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);

    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n < 0) {
        check_result(c, false, strerror(errno));
        return;
    }
    c->len += (size_t)n;
    check_status(c, n == 0);
}

static void
check_send(wf_upstream_check_t *c)
{
    while (c->off < c->len) {
        ssize_t n =
            send(c->io.fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        if (n < 0) {
            check_result(c, false, strerror(errno));
            return;
        }
        c->off += (size_t)n;
    }
    c->state = CHECK_READ;
    c->len = 0;
    wf_io_mod(c->loop, &c->io, EPOLLIN | EPOLLRDHUP);
}

static void
check_on_io(wf_io_t *io, uint32_t events)
{
    wf_upstream_check_t *c = wf_container_of(io, wf_upstream_check_t, io);
    int err = 0;
    socklen_t len = sizeof(err);

    wf_unused(events);
    if (c->state == CHECK_CONNECT) {
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0
            || err != 0) {
            check_result(c, false, strerror(err != 0 ? err : errno));
            return;
        }
        c->state = CHECK_SEND;
    }
    if (c->state == CHECK_SEND) {
        check_send(c);
        return;
    }
    if (c->state == CHECK_READ) {
        check_read(c);
    }
}

/* Starts a probe: a new connection, the request staged. */
static void
check_probe(wf_upstream_check_t *c)
{
    const wf_upstream_peer_t *p = c->peer;
    int fd = socket(p->addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        check_result(c, false, strerror(errno));
        return;
    }
    c->io.fd = fd;
    c->io.events = 0;
    c->io.handler = check_on_io;
    if ((connect(fd, (const struct sockaddr *)&p->addr, p->addrlen) != 0
         && errno != EINPROGRESS)
        || wf_io_add(c->loop, &c->io, EPOLLOUT) != WF_OK) {
        int e = errno;

        close(fd);
        c->io.fd = -1;
        check_result(c, false, strerror(e));
        return;
    }
    c->len = (size_t)snprintf(c->buf, sizeof(c->buf),
                              "GET %s HTTP/1.1\r\nHost: %s\r\n"
                              "User-Agent: wharf-health-check\r\n"
                              "Connection: close\r\n\r\n",
                              c->conf.path, c->conf.host);
    c->off = 0;
    c->state = CHECK_CONNECT;
    wf_timer_set(c->loop, &c->timer, c->conf.timeout_ms);
}

static void
check_on_timer(wf_timer_t *t)
{
    wf_upstream_check_t *c = wf_container_of(t, wf_upstream_check_t, timer);

    if (c->state == CHECK_WAIT) {
        check_probe(c);
    } else {
        check_result(c, false, "timed out");
    }
}

static void
check_on_start(wf_task_t *task)
{
    wf_upstream_check_t *c = wf_container_of(task, wf_upstream_check_t, start);

    check_probe(c);
}

static void
check_on_stop(wf_task_t *task)
{
    wf_upstream_check_t *c = wf_container_of(task, wf_upstream_check_t, stop);

    check_close(c);
    wf_timer_stop(c->loop, &c->timer);
    free(c->name);
    free((char *)c->conf.path);
    free((char *)c->conf.host);
    free(c);
}

static bool
check_same(const wf_upstream_check_conf_t *a, const wf_upstream_check_conf_t *b,
           const char *host)
{
    return strcmp(a->path, b->path) == 0 && strcmp(a->host, host) == 0
           && a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms
           && a->status_min == b->status_min && a->status_max == b->status_max
           && a->rise == b->rise && a->fall == b->fall;
}

/* The Host a check of s sends: the configured one, else the server's
 * address ("localhost" for a unix socket). */
static const char *
check_host(const wf_upstream_t *u, const wf_upstream_server_t *s)
{
    if (u->check.host != NULL) {
        return u->check.host;
    }
    return strncmp(s->name, "unix:", 5) == 0 ? "localhost" : s->name;
}

static wf_upstream_check_t *
check_create(const wf_upstream_t *u, const wf_upstream_server_t *s)
{
    wf_upstream_check_t *c = calloc(1, sizeof(*c));
    uint64_t h = wf_upstream_key_hash((const char *)&s->addr, s->addrlen);

    if (c == NULL) {
        return NULL;
    }
    c->peer = s->peer;
    c->conf = u->check;
    c->name = strdup(s->name);
    c->conf.path = strdup(u->check.path);
    c->conf.host = strdup(check_host(u, s));
    if (c->name == NULL || c->conf.path == NULL || c->conf.host == NULL) {
        free(c->name);
        free((char *)c->conf.path);
        free((char *)c->conf.host);
        free(c);
        return NULL;
    }
    c->loop = wf_loop_get((unsigned)(h % wf_loops_count()));
    c->io.fd = -1;
    c->start.handler = check_on_start;
    c->stop.handler = check_on_stop;
    wf_timer_init(&c->timer, check_on_timer);
    return c;
}

/* Makes sure s is checked with u's settings in this publish. */
static void
check_want(const wf_upstream_t *u, const wf_upstream_server_t *s)
{
    wf_upstream_peer_t *p = s->peer;
    wf_upstream_check_t *c = p->check;

    if (c != NULL && c->gen != check_gen
        && check_same(&c->conf, &u->check, check_host(u, s))) {
        c->gen = check_gen; /* kept, with its state */
        return;
    }
    if (c != NULL && c->gen == check_gen) {
        return; /* another upstream of this snapshot checks it already */
    }
    if (c != NULL) {
        wf_list_del(&c->link);
        wf_task_post(c->loop, &c->stop);
        p->check = NULL;
    }
    c = check_create(u, s);
    if (c == NULL) {
        wf_log_error(0, "health check of \"%s\": out of memory", s->name);
        return;
    }
    c->gen = check_gen;
    wf_list_add_tail(&check_all, &c->link);
    p->check = c;
    wf_task_post(c->loop, &c->start);
}

void
wf_upstream_health_publish(wf_upstream_t *all)
{
    if (wf_loops_count() == 0) {
        return;
    }
    check_gen++;
    for (wf_upstream_t *u = all; u != NULL; u = u->next) {
        for (size_t i = 0; u->check.path != NULL && i < u->nservers; i++) {
            check_want(u, &u->servers[i]);
        }
    }
    for (wf_list_t *l = check_all.next, *next; l != &check_all; l = next) {
        wf_upstream_check_t *c = wf_container_of(l, wf_upstream_check_t, link);

        next = l->next;
        if (c->gen != check_gen) {
            wf_list_del(l);
            c->peer->check = NULL;
            atomic_store(&c->peer->check_down, false);
            wf_task_post(c->loop, &c->stop);
        }
    }
}
