/* Channels: bounded buffer chains with back-pressure (see http/chan.h). */
#include "http/chan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"

/* Buffers freed by the thread's channels, for the next ones (an exchange
 * that streams 100 KiB otherwise mallocs and frees 25 of them).  None
 * with WF_POOL_DEBUG, so that the sanitizers see every buffer's life. */
#ifdef WF_POOL_DEBUG
#define CHAN_CACHE_MAX 0
#else
#define CHAN_CACHE_MAX 256 /* 1 MiB per thread */
#endif

static __thread wf_chan_seg_t *chan_cache;
static __thread unsigned chan_cache_n;
static __thread bool chan_cache_off; /* the thread is exiting */

static wf_chan_seg_t *
chan_seg_alloc(void)
{
    wf_chan_seg_t *s = chan_cache;

    if (s != NULL) {
        chan_cache = s->next;
        chan_cache_n--;
        return s;
    }
    return malloc(sizeof(*s));
}

static void
chan_seg_free(wf_chan_seg_t *s)
{
    if (CHAN_CACHE_MAX == 0 || chan_cache_off
        || chan_cache_n == CHAN_CACHE_MAX) {
        free(s);
        return;
    }
    s->next = chan_cache;
    chan_cache = s;
    chan_cache_n++;
}

void
wf_chan_thread_exit(void)
{
    chan_cache_off = true;
    while (chan_cache != NULL) {
        wf_chan_seg_t *s = chan_cache;

        chan_cache = s->next;
        free(s);
    }
    chan_cache_n = 0;
}

static void
chan_on_readable(wf_task_t *task)
{
    wf_chan_t *ch = wf_container_of(task, wf_chan_t, readable);

    if (ch->on_readable != NULL) {
        ch->on_readable(ch);
    }
}

static void
chan_on_writable(wf_task_t *task)
{
    wf_chan_t *ch = wf_container_of(task, wf_chan_t, writable);

    if (ch->on_writable != NULL) {
        ch->on_writable(ch);
    }
}

/* Schedules a wake-up once: a task already in the run queue is linked. */
static void
chan_wake(wf_chan_t *ch, wf_task_t *task)
{
    if (wf_list_is_empty(&task->link)) {
        wf_task_schedule(ch->loop, task);
    }
}

void
wf_chan_init(wf_chan_t *ch, wf_loop_t *loop, size_t limit)
{
    memset(ch, 0, sizeof(*ch));
    ch->limit = limit > 0 ? limit : 1;
    ch->loop = loop;
    ch->state = WF_CHAN_OPEN;
    ch->readable.handler = chan_on_readable;
    ch->writable.handler = chan_on_writable;
    wf_list_init(&ch->readable.link);
    wf_list_init(&ch->writable.link);
}

static void
chan_free_list(wf_chan_seg_t *s)
{
    while (s != NULL) {
        wf_chan_seg_t *next = s->next;

        chan_seg_free(s);
        s = next;
    }
}

/* Bytes left in the pipe are dropped with it: closed, so the consumer's
 * next splice starts on an empty one. */
static void
chan_pipe_drop(wf_chan_t *ch)
{
    if (ch->piped > 0) {
        close(ch->pipe[0]);
        close(ch->pipe[1]);
        ch->pipe[0] = ch->pipe[1] = -1;
        ch->piped = 0;
    }
}

static void
chan_free_segs(wf_chan_t *ch)
{
    chan_pipe_drop(ch);
    chan_free_list(ch->head);
    chan_free_list(ch->spare);
    ch->head = ch->tail = ch->spare = NULL;
    ch->nspare = 0;
    ch->queued = 0;
}

/* An empty buffer: a spare one, else a new one.  NULL: out of memory. */
static wf_chan_seg_t *
chan_seg_get(wf_chan_t *ch)
{
    wf_chan_seg_t *s = ch->spare;

    if (s != NULL) {
        ch->spare = s->next;
        ch->nspare--;
    } else if ((s = chan_seg_alloc()) == NULL) {
        return NULL;
    }
    s->next = NULL;
    s->start = s->end = 0;
    return s;
}

/* A consumed buffer is kept for the next writes while the spares and the
 * queued bytes stay within the limit (a steady stream allocates nothing),
 * else freed. */
static void
chan_seg_put(wf_chan_t *ch, wf_chan_seg_t *s)
{
    if ((ch->nspare + 1) * (size_t)WF_CHAN_SEG_SIZE + ch->queued > ch->limit) {
        chan_seg_free(s);
        return;
    }
    s->next = ch->spare;
    ch->spare = s;
    ch->nspare++;
}

/* Links the empty buffer s at the tail of the chain. */
static void
chan_seg_append(wf_chan_t *ch, wf_chan_seg_t *s)
{
    if (ch->tail != NULL) {
        ch->tail->next = s;
    } else {
        ch->head = s;
    }
    ch->tail = s;
}

void
wf_chan_fini(wf_chan_t *ch)
{
    chan_free_segs(ch);
    wf_list_del(&ch->readable.link);
    wf_list_del(&ch->writable.link);
}

void
wf_chan_set_readable(wf_chan_t *ch, wf_chan_cb on_readable)
{
    ch->on_readable = on_readable;
}

void
wf_chan_set_writable(wf_chan_t *ch, wf_chan_cb on_writable)
{
    ch->on_writable = on_writable;
}

/* The tail segment if it has room, else a new one.  NULL: out of memory. */
static wf_chan_seg_t *
chan_tail_room(wf_chan_t *ch)
{
    wf_chan_seg_t *s = ch->tail;

    if (s != NULL && s->end < WF_CHAN_SEG_SIZE) {
        return s;
    }
    s = chan_seg_get(ch);
    if (s != NULL) {
        chan_seg_append(ch, s);
    }
    return s;
}

ssize_t
wf_chan_write(wf_chan_t *ch, const void *data, size_t n)
{
    const char *p = data;
    size_t take;
    size_t done = 0;

    if (ch->state != WF_CHAN_OPEN) {
        return WF_ERROR;
    }
    take = wf_min(n, wf_chan_room(ch));
    if (take == 0) {
        ch->producer_stopped = true;
        return WF_AGAIN;
    }
    while (done < take) {
        wf_chan_seg_t *s = chan_tail_room(ch);
        size_t k;

        if (s == NULL) {
            wf_chan_abort(ch);
            return WF_ERROR;
        }
        k = wf_min(take - done, (size_t)(WF_CHAN_SEG_SIZE - s->end));
        memcpy(s->data + s->end, p + done, k);
        s->end += (uint32_t)k;
        done += k;
    }
    ch->queued += take;
    if (take < n) {
        ch->producer_stopped = true; /* a partial write is a stop too */
    }
    chan_wake(ch, &ch->readable);
    return (ssize_t)take;
}

/* Makes sure the spare list holds buffers for need bytes past the tail's
 * room.  WF_ERROR: out of memory. */
static int
chan_spares_for(wf_chan_t *ch, size_t need)
{
    size_t have = ch->nspare * (size_t)WF_CHAN_SEG_SIZE;

    while (have < need) {
        wf_chan_seg_t *s = chan_seg_alloc();

        if (s == NULL) {
            return WF_ERROR;
        }
        s->next = ch->spare;
        ch->spare = s;
        ch->nspare++;
        have += WF_CHAN_SEG_SIZE;
    }
    return WF_OK;
}

ssize_t
wf_chan_reserve(wf_chan_t *ch, size_t n, struct iovec *iov, size_t max,
                size_t *len)
{
    wf_chan_seg_t *t = ch->tail;
    size_t tail_room = t != NULL ? WF_CHAN_SEG_SIZE - t->end : 0;
    size_t take, k = 0, got = 0;

    if (ch->state != WF_CHAN_OPEN || max == 0) {
        return WF_ERROR;
    }
    take = wf_min(n, wf_chan_room(ch));
    if (take == 0) {
        ch->producer_stopped = true;
        return WF_AGAIN;
    }
    if (take > tail_room && chan_spares_for(ch, take - tail_room) != WF_OK) {
        wf_chan_abort(ch);
        return WF_ERROR;
    }
    if (tail_room > 0) {
        got = wf_min(take, tail_room);
        iov[k++] = (struct iovec){t->data + t->end, got};
    }
    for (wf_chan_seg_t *s = ch->spare; s != NULL && k < max && got < take;
         s = s->next) {
        size_t m = wf_min(take - got, (size_t)WF_CHAN_SEG_SIZE);

        iov[k++] = (struct iovec){s->data, m};
        got += m;
    }
    if (got < n) {
        ch->producer_stopped = true; /* as a partial write */
    }
    *len = got;
    return (ssize_t)k;
}

void
wf_chan_commit(wf_chan_t *ch, size_t n)
{
    wf_chan_seg_t *t = ch->tail;

    if (n == 0 || ch->state != WF_CHAN_OPEN) {
        return;
    }
    ch->queued += n;
    if (t != NULL && t->end < WF_CHAN_SEG_SIZE) {
        size_t k = wf_min(n, (size_t)(WF_CHAN_SEG_SIZE - t->end));

        t->end += (uint32_t)k;
        n -= k;
    }
    while (n > 0) {
        wf_chan_seg_t *s = chan_seg_get(ch); /* a reserved spare */
        size_t k = wf_min(n, (size_t)WF_CHAN_SEG_SIZE);

        WF_ASSERT(s != NULL);
        s->end = (uint32_t)k;
        chan_seg_append(ch, s);
        n -= k;
    }
    chan_wake(ch, &ch->readable);
}

void
wf_chan_wait_room(wf_chan_t *ch)
{
    if (ch->state == WF_CHAN_OPEN) {
        ch->producer_stopped = true;
    }
}

void
wf_chan_close(wf_chan_t *ch)
{
    if (ch->state != WF_CHAN_OPEN) {
        return;
    }
    ch->state = WF_CHAN_EOF;
    chan_wake(ch, &ch->readable);
}

void
wf_chan_abort(wf_chan_t *ch)
{
    if (ch->state == WF_CHAN_ABORTED) {
        return;
    }
    ch->state = WF_CHAN_ABORTED;
    chan_free_segs(ch);
    ch->producer_stopped = false;
    chan_wake(ch, &ch->readable);
    chan_wake(ch, &ch->writable);
}

size_t
wf_chan_peek(wf_chan_t *ch, const char **p)
{
    wf_chan_seg_t *s = ch->head;

    if (s == NULL) {
        *p = NULL;
        return 0;
    }
    *p = s->data + s->start;
    return s->end - s->start;
}

size_t
wf_chan_peekv(const wf_chan_t *ch, struct iovec *iov, size_t max, size_t *len)
{
    size_t k = 0, got = 0;

    for (const wf_chan_seg_t *s = ch->head; s != NULL && k < max; s = s->next) {
        if (s->end > s->start) {
            iov[k++] =
                (struct iovec){(char *)s->data + s->start, s->end - s->start};
            got += s->end - s->start;
        }
    }
    *len = got;
    return k;
}

void
wf_chan_consume(wf_chan_t *ch, size_t n)
{
    WF_ASSERT(n <= ch->queued);
    ch->queued -= n;
    while (n > 0 && ch->head != NULL) {
        wf_chan_seg_t *s = ch->head;
        size_t k = wf_min(n, (size_t)(s->end - s->start));

        s->start += (uint32_t)k;
        n -= k;
        if (s->start == s->end) {
            ch->head = s->next;
            if (ch->head == NULL) {
                ch->tail = NULL;
            }
            chan_seg_put(ch, s);
        }
    }
    if (ch->producer_stopped && wf_chan_room(ch) > 0) {
        ch->producer_stopped = false;
        chan_wake(ch, &ch->writable);
    }
}

/* ---- splice -------------------------------------------------------------- */

void
wf_chan_set_pipe(wf_chan_t *ch, int *pipe)
{
    ch->pipe = pipe;
}

ssize_t
wf_chan_splice_in(wf_chan_t *ch, int fd, size_t n)
{
    ssize_t k;

    WF_ASSERT(wf_chan_can_splice(ch) && n > 0 && n <= wf_chan_room(ch));
    if (ch->pipe[0] < 0 && pipe2(ch->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        ch->pipe[0] = ch->pipe[1] = -1;
        return WF_ERROR;
    }
    k = splice(fd, NULL, ch->pipe[1], NULL, n,
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (k < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            return WF_ERROR;
        }
        if (ch->piped > 0) {
            ch->producer_stopped = true; /* maybe the pipe is full */
        }
        return WF_AGAIN;
    }
    if (k > 0) {
        ch->piped += (size_t)k;
        ch->queued += (size_t)k;
        if (wf_chan_room(ch) == 0) {
            ch->producer_stopped = true;
        }
        chan_wake(ch, &ch->readable);
    }
    return k;
}

ssize_t
wf_chan_splice_out(wf_chan_t *ch, int fd, size_t n)
{
    ssize_t k;

    WF_ASSERT(n > 0 && n <= ch->piped && ch->piped == ch->queued);
    k = splice(ch->pipe[0], NULL, fd, NULL, n,
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (k <= 0) {
        if (k == 0) {
            errno = EPIPE; /* the pipe had fewer bytes than counted */
        }
        return -1;
    }
    ch->piped -= (size_t)k;
    wf_chan_consume(ch, (size_t)k);
    return k;
}
