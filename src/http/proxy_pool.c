#include "http/proxy_pool.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/list.h"

typedef struct pool_conn {
    wf_list_t link; /* in pool_idle, oldest first */
    wf_io_t io;
    wf_timer_t timer;
    wf_loop_t *loop;
    struct sockaddr_storage addr;
    socklen_t len;
    uint64_t tag;          /* 0: plain; else the TLS context's id */
    wf_xprt_t xp;          /* its TLS session, if any */
    _Atomic int32_t *idle; /* the server's count of idle connections */
} pool_conn_t;

static __thread wf_list_t pool_idle;
static __thread bool pool_ready;
static __thread unsigned pool_n;

static wf_list_t *
pool_list(void)
{
    if (!pool_ready) {
        wf_list_init(&pool_idle);
        pool_ready = true;
    }
    return &pool_idle;
}

static void
pool_conn_unidle(pool_conn_t *pc)
{
    wf_list_del(&pc->link);
    pool_n--;
    if (pc->idle != NULL) {
        atomic_fetch_sub_explicit(pc->idle, 1, memory_order_relaxed);
    }
}

static void
pool_conn_close(pool_conn_t *pc)
{
    pool_conn_unidle(pc);
    wf_timer_stop(pc->loop, &pc->timer);
    wf_io_del(pc->loop, &pc->io);
    wf_xprt_close(&pc->xp);
    close(pc->io.fd);
    free(pc);
}

/* Input on an idle connection: the server closed it, or broke the
 * protocol by talking unasked.  Either way it cannot be reused. */
static void
pool_on_io(wf_io_t *io, uint32_t events)
{
    wf_unused(events);
    pool_conn_close(wf_container_of(io, pool_conn_t, io));
}

static void
pool_on_timer(wf_timer_t *t)
{
    pool_conn_close(wf_container_of(t, pool_conn_t, timer));
}

static bool
pool_same(const pool_conn_t *pc, const struct sockaddr *addr, socklen_t len,
          uint64_t tag)
{
    return pc->len == len && pc->tag == tag
           && memcmp(&pc->addr, addr, len) == 0;
}

bool
wf_proxy_pool_get(wf_loop_t *loop, const struct sockaddr *addr, socklen_t len,
                  uint64_t tag, wf_io_t *io, wf_xprt_t *xp)
{
    wf_list_t *head = pool_list();

    for (wf_list_t *l = head->prev; l != head; l = l->prev) {
        pool_conn_t *pc = wf_container_of(l, pool_conn_t, link);

        if (pc->loop != loop || !pool_same(pc, addr, len, tag)) {
            continue;
        }
        *xp = pc->xp;
        io->fd = pc->io.fd;
        io->events = pc->io.events;
        wf_io_table_set(io); /* cannot fail: the fd is in the table */
        pool_conn_unidle(pc);
        wf_timer_stop(loop, &pc->timer);
        free(pc);
        return true;
    }
    return false;
}

/* Closes the oldest idle connection to addr when max are idle already. */
static void
pool_trim(const struct sockaddr *addr, socklen_t len, uint64_t tag,
          unsigned max)
{
    pool_conn_t *oldest = NULL;
    unsigned n = 0;

    wf_list_for_each(l, pool_list())
    {
        pool_conn_t *pc = wf_container_of(l, pool_conn_t, link);

        if (pool_same(pc, addr, len, tag)) {
            oldest = oldest == NULL ? pc : oldest;
            n++;
        }
    }
    if (n >= max && oldest != NULL) {
        pool_conn_close(oldest);
    }
}

void
wf_proxy_pool_put(wf_loop_t *loop, wf_io_t *io, wf_xprt_t *xp,
                  const struct sockaddr *addr, socklen_t len, uint64_t tag,
                  unsigned max, uint32_t idle_ms, _Atomic int32_t *idle)
{
    pool_conn_t *pc = len <= sizeof(pc->addr) ? malloc(sizeof(*pc)) : NULL;

    if (pc == NULL) {
        wf_io_del(loop, io);
        wf_xprt_close(xp);
        close(io->fd);
        return;
    }
    pool_trim(addr, len, tag, max);
    pc->xp = *xp;
    *xp = (wf_xprt_t){0};
    pc->tag = tag;
    pc->loop = loop;
    pc->io.fd = io->fd;
    pc->io.events = io->events;
    pc->io.handler = pool_on_io;
    wf_io_table_set(&pc->io);
    memcpy(&pc->addr, addr, len);
    pc->len = len;
    if (wf_io_mod(loop, &pc->io, EPOLLIN | EPOLLRDHUP) != WF_OK) {
        wf_io_del(loop, &pc->io);
        wf_xprt_close(&pc->xp);
        close(pc->io.fd);
        free(pc);
        return;
    }
    wf_timer_init(&pc->timer, pool_on_timer);
    wf_timer_set(loop, &pc->timer, idle_ms);
    wf_list_add_tail(pool_list(), &pc->link);
    pool_n++;
    pc->idle = idle;
    if (idle != NULL) {
        atomic_fetch_add_explicit(idle, 1, memory_order_relaxed);
    }
}

unsigned
wf_proxy_pool_count(void)
{
    return pool_n;
}

void
wf_proxy_pool_thread_exit(void)
{
    wf_list_t *head = pool_list();

    while (!wf_list_is_empty(head)) {
        pool_conn_close(wf_container_of(head->next, pool_conn_t, link));
    }
}
