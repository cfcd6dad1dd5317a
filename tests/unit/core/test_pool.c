/* Arenas and fixed-size pools. */
#include <stdint.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "unit.h"

static void
test_arena_alignment_and_reuse(void **state)
{
    wf_arena_t *a = wf_arena_create(256);

    (void)state;
    assert_non_null(a);
    for (size_t n = 1; n < 100; n++) {
        char *p = wf_arena_alloc(a, n);

        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xAB, n); /* ASan checks the bounds */
    }
    wf_arena_reset(a);
    assert_non_null(wf_arena_alloc(a, 8));
    wf_arena_destroy(a);
}

static void
test_arena_large_and_strndup(void **state)
{
    wf_arena_t *a = wf_arena_create(128);
    char *small = wf_arena_strndup(a, "hello world", 5);
    char *big = wf_arena_calloc(a, 10000);
    char *after = wf_arena_strndup(a, "abc", 3);

    (void)state;
    assert_string_equal(small, "hello");
    assert_non_null(big);
    for (size_t i = 0; i < 10000; i++) {
        assert_int_equal(big[i], 0);
    }
    assert_string_equal(after, "abc");
    /* The small allocation survives the big one. */
    assert_string_equal(small, "hello");
    wf_arena_destroy(a);
    wf_arena_destroy(NULL);
}

static void
test_fpool_recycles_up_to_max(void **state)
{
    wf_fpool_t p;
    void *objs[8];

    (void)state;
    wf_fpool_init(&p, 48, 4);
    for (int i = 0; i < 8; i++) {
        objs[i] = wf_fpool_get(&p);
        assert_non_null(objs[i]);
        memset(objs[i], i, 48);
    }
    for (int i = 0; i < 8; i++) {
        wf_fpool_put(&p, objs[i]);
    }
#ifndef WF_POOL_DEBUG
    assert_int_equal(p.nfree, 4);
    /* The last object put back is the first one handed out. */
    assert_ptr_equal(wf_fpool_get(&p), objs[3]);
    assert_int_equal(p.nfree, 3);
    wf_fpool_put(&p, objs[3]);
#else
    assert_int_equal(p.nfree, 0);
#endif
    wf_fpool_put(&p, NULL);
    wf_fpool_fini(&p);
    assert_int_equal(p.nfree, 0);
    assert_null(p.free);
}

static void
test_fpool_minimum_size(void **state)
{
    wf_fpool_t p;
    void *o;

    (void)state;
    wf_fpool_init(&p, 1, 2);
    assert_true(p.size >= sizeof(void *));
    o = wf_fpool_get(&p);
    wf_fpool_put(&p, o);
    wf_fpool_fini(&p);
}

static void
pool_record(void *data)
{
    int *log = data;

    log[log[0]++ + 1] = log[9];
    log[9]++;
}

/* Hooks run newest first, once, on reset and on destroy; reset keeps none. */
static void
test_arena_cleanup_hooks(void **state)
{
    int a1[10] = {0}, a2[10] = {0};
    wf_arena_t *a = wf_arena_create(64);

    (void)state;
    assert_int_equal(wf_arena_cleanup_add(a, pool_record, a1), WF_OK);
    a2[9] = 100;
    assert_int_equal(wf_arena_cleanup_add(a, pool_record, a2), WF_OK);
    wf_arena_reset(a);
    assert_int_equal(a1[0], 1);
    assert_int_equal(a2[0], 1);
    assert_int_equal(a2[1], 100); /* a2 ran first (its count started at 100) */
    wf_arena_reset(a);
    assert_int_equal(a1[0], 1); /* not run again */
    for (int i = 0; i < 5; i++) {
        (void)wf_arena_alloc(a, 200); /* push the record into later blocks */
        assert_int_equal(wf_arena_cleanup_add(a, pool_record, a1), WF_OK);
    }
    wf_arena_destroy(a);
    assert_int_equal(a1[0], 6);
}

int
wf_test_pool(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alignment_and_reuse),
        cmocka_unit_test(test_arena_large_and_strndup),
        cmocka_unit_test(test_fpool_recycles_up_to_max),
        cmocka_unit_test(test_fpool_minimum_size),
        cmocka_unit_test(test_arena_cleanup_hooks),
    };

    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
