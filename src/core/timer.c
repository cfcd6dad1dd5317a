#include "core/timer.h"

#include <stdlib.h>

#include "core/common.h"

void
wf_timers_init(wf_timers_t *ts)
{
    ts->heap = NULL;
    ts->n = 0;
    ts->cap = 0;
}

void
wf_timers_fini(wf_timers_t *ts)
{
    free(ts->heap);
    ts->heap = NULL;
    ts->n = 0;
    ts->cap = 0;
}

static void
timer_heap_place(wf_timers_t *ts, wf_timer_t *t, size_t i)
{
    ts->heap[i] = t;
    t->index = i;
}

static void
timer_sift_up(wf_timers_t *ts, size_t i)
{
    wf_timer_t *t = ts->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (ts->heap[parent]->key <= t->key) {
            break;
        }
        timer_heap_place(ts, ts->heap[parent], i);
        i = parent;
    }
    timer_heap_place(ts, t, i);
}

static void
timer_sift_down(wf_timers_t *ts, size_t i)
{
    wf_timer_t *t = ts->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;

        if (child >= ts->n) {
            break;
        }
        if (child + 1 < ts->n
            && ts->heap[child + 1]->key < ts->heap[child]->key) {
            child++;
        }
        if (t->key <= ts->heap[child]->key) {
            break;
        }
        timer_heap_place(ts, ts->heap[child], i);
        i = child;
    }
    timer_heap_place(ts, t, i);
}

static void
timer_heap_remove(wf_timers_t *ts, wf_timer_t *t)
{
    size_t i = t->index;
    wf_timer_t *last;

    t->index = SIZE_MAX;
    last = ts->heap[--ts->n];
    if (last == t) {
        return;
    }
    timer_heap_place(ts, last, i);
    timer_sift_up(ts, i);
    timer_sift_down(ts, last->index);
}

static int
timer_heap_insert(wf_timers_t *ts, wf_timer_t *t)
{
    if (ts->n == ts->cap) {
        size_t cap = ts->cap == 0 ? 64 : ts->cap * 2;
        wf_timer_t **heap = realloc(ts->heap, cap * sizeof(*heap));

        if (heap == NULL) {
            return WF_ERROR;
        }
        ts->heap = heap;
        ts->cap = cap;
    }
    timer_heap_place(ts, t, ts->n++);
    timer_sift_up(ts, t->index);
    return WF_OK;
}

int
wf_timers_add(wf_timers_t *ts, wf_timer_t *t, uint64_t expire)
{
    if (t->index != SIZE_MAX) {
        if (expire >= t->key) {
            /* Later than the filed key: re-filed lazily when it comes due. */
            t->expire = expire;
            return WF_OK;
        }
        timer_heap_remove(ts, t);
    }
    t->expire = expire;
    t->key = expire;
    return timer_heap_insert(ts, t);
}

void
wf_timers_del(wf_timers_t *ts, wf_timer_t *t)
{
    if (t->index != SIZE_MAX) {
        timer_heap_remove(ts, t);
    }
    t->expire = 0;
}

int
wf_timers_wait_ms(const wf_timers_t *ts, uint64_t now, int max_ms)
{
    uint64_t key;

    if (ts->n == 0) {
        return max_ms;
    }
    key = ts->heap[0]->key;
    if (key <= now) {
        return 0;
    }
    if (max_ms >= 0 && key - now > (uint64_t)max_ms) {
        return max_ms;
    }
    return (int)(key - now);
}

unsigned
wf_timers_run(wf_timers_t *ts, uint64_t now, unsigned max)
{
    unsigned ran = 0;

    while (ts->n > 0 && ran < max) {
        wf_timer_t *t = ts->heap[0];

        if (t->key > now) {
            break;
        }
        if (t->expire > now) {
            /* Pushed back since it was filed: file it under its deadline. */
            t->key = t->expire;
            timer_sift_down(ts, 0);
            continue;
        }
        timer_heap_remove(ts, t);
        t->expire = 0;
        ran++;
        t->handler(t);
    }
    return ran;
}
