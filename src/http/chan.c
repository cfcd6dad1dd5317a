/* Channels: bounded buffer chains with back-pressure (see http/chan.h). */
#include "http/chan.h"

#include <stdlib.h>
#include <string.h>

#include "core/common.h"

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
chan_free_segs(wf_chan_t *ch)
{
    while (ch->head != NULL) {
        wf_chan_seg_t *s = ch->head;

        ch->head = s->next;
        free(s);
    }
    ch->tail = NULL;
    ch->queued = 0;
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
    s = malloc(sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->next = NULL;
    s->start = s->end = 0;
    if (ch->tail != NULL) {
        ch->tail->next = s;
    } else {
        ch->head = s;
    }
    ch->tail = s;
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
            free(s);
        }
    }
    if (ch->producer_stopped && wf_chan_room(ch) > 0) {
        ch->producer_stopped = false;
        chan_wake(ch, &ch->writable);
    }
}
