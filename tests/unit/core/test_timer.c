/* The timer heap, including lazily pushed-back deadlines. */
#include <stdint.h>

#include "core/timer.h"
#include "unit.h"

#define NT 64

static int fired_order[NT * 2];
static int nfired;
static wf_timer_t timers[NT];

static void
on_timer(wf_timer_t *t)
{
    fired_order[nfired++] = (int)(t - timers);
}

static void
test_timers_fire_in_deadline_order(void **state)
{
    wf_timers_t ts;

    (void)state;
    nfired = 0;
    wf_timers_init(&ts);
    for (int i = 0; i < NT; i++) {
        wf_timer_init(&timers[i], on_timer);
        /* A scrambled order of distinct deadlines 1..NT. */
        assert_int_equal(
            wf_timers_add(&ts, &timers[i], (uint64_t)((i * 37) % NT) + 1), 0);
    }
    assert_int_equal(wf_timers_wait_ms(&ts, 0, 1000), 1);
    assert_int_equal(wf_timers_run(&ts, NT, 1000), NT);
    for (int k = 1; k < NT; k++) {
        int a = fired_order[k - 1];
        int b = fired_order[k];

        assert_true((a * 37) % NT < (b * 37) % NT);
    }
    assert_int_equal(wf_timers_wait_ms(&ts, 0, 500), 500);
    wf_timers_fini(&ts);
}

static void
test_timer_push_back_is_lazy_but_exact(void **state)
{
    wf_timers_t ts;

    (void)state;
    nfired = 0;
    wf_timers_init(&ts);
    wf_timer_init(&timers[0], on_timer);
    wf_timers_add(&ts, &timers[0], 10);
    wf_timers_add(&ts, &timers[0], 50); /* pushed back */
    assert_int_equal(wf_timers_run(&ts, 10, 10), 0);
    assert_int_equal(nfired, 0);
    assert_true(wf_timer_is_armed(&timers[0]));
    assert_int_equal(wf_timers_wait_ms(&ts, 10, 1000), 40);
    assert_int_equal(wf_timers_run(&ts, 49, 10), 0);
    assert_int_equal(wf_timers_run(&ts, 50, 10), 1);
    assert_false(wf_timer_is_armed(&timers[0]));
    wf_timers_fini(&ts);
}

static void
test_timer_earlier_and_delete(void **state)
{
    wf_timers_t ts;

    (void)state;
    nfired = 0;
    wf_timers_init(&ts);
    for (int i = 0; i < 3; i++) {
        wf_timer_init(&timers[i], on_timer);
        wf_timers_add(&ts, &timers[i], 100 + (uint64_t)i);
    }
    wf_timers_add(&ts, &timers[2], 5); /* brought forward */
    wf_timers_del(&ts, &timers[0]);
    wf_timers_del(&ts, &timers[0]); /* twice is harmless */
    assert_int_equal(wf_timers_run(&ts, 5, 10), 1);
    assert_int_equal(fired_order[0], 2);
    assert_int_equal(wf_timers_run(&ts, 1000, 10), 1);
    assert_int_equal(fired_order[1], 1);
    assert_int_equal(ts.n, 0);
    wf_timers_fini(&ts);
}

static void
test_timers_run_is_bounded(void **state)
{
    wf_timers_t ts;

    (void)state;
    nfired = 0;
    wf_timers_init(&ts);
    for (int i = 0; i < 10; i++) {
        wf_timer_init(&timers[i], on_timer);
        wf_timers_add(&ts, &timers[i], 1);
    }
    assert_int_equal(wf_timers_run(&ts, 1, 4), 4);
    assert_int_equal(wf_timers_run(&ts, 1, 100), 6);
    wf_timers_fini(&ts);
}

int
wf_test_timer(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_timer_push_back_is_lazy_but_exact),
        cmocka_unit_test(test_timer_earlier_and_delete),
        cmocka_unit_test(test_timers_run_is_bounded),
    };

    return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
