/* Per-thread timers: a binary min-heap ordered by deadline.
 *
 * Pushing a deadline back (the common case: a keep-alive connection that made
 * another request) only rewrites t->expire; the heap entry keeps its earlier
 * key and the timer is re-filed when that key comes due.  So a busy
 * connection costs no heap operations per request. */
#ifndef WF_CORE_TIMER_H
#define WF_CORE_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wf_timer wf_timer_t;
typedef void (*wf_timer_cb)(wf_timer_t *t);

struct wf_timer {
    uint64_t expire; /* ms on the loop clock; 0 when not armed */
    uint64_t key;    /* deadline the heap orders by; <= expire */
    size_t index;    /* position in the heap; SIZE_MAX when not in it */
    wf_timer_cb handler;
};

typedef struct wf_timers {
    wf_timer_t **heap; /* owned array */
    size_t n;
    size_t cap;
} wf_timers_t;

void wf_timers_init(wf_timers_t *ts);
void wf_timers_fini(wf_timers_t *ts);

static inline void
wf_timer_init(wf_timer_t *t, wf_timer_cb handler)
{
    t->expire = 0;
    t->key = 0;
    t->index = SIZE_MAX;
    t->handler = handler;
}

static inline bool
wf_timer_is_armed(const wf_timer_t *t)
{
    return t->expire != 0;
}

/* Arms t to fire at time expire (ms, > 0).  Returns WF_OK or WF_ERROR when
 * out of memory. */
int wf_timers_add(wf_timers_t *ts, wf_timer_t *t, uint64_t expire);

/* Disarms t.  Accepts a timer that is not armed. */
void wf_timers_del(wf_timers_t *ts, wf_timer_t *t);

/* Milliseconds until the earliest timer is due (from now), or -1 when none;
 * at most max_ms. */
int wf_timers_wait_ms(const wf_timers_t *ts, uint64_t now, int max_ms);

/* Calls the handlers of the timers due at now; each is disarmed before its
 * handler runs and may re-arm itself.  Runs at most max handlers, so a storm
 * of timers cannot starve I/O.  Returns the number run. */
unsigned wf_timers_run(wf_timers_t *ts, uint64_t now, unsigned max);

#endif
