/* wf_range_parse(): one byte range, clamped to the representation. */
#include "unit.h"

#include <string.h>

#include "core/common.h"
#include "http/range.h"

typedef struct range_case {
    const char *value;
    uint64_t size;
    int rc;
    uint64_t start, end; /* expected on WF_OK */
} range_case_t;

static const range_case_t range_cases[] = {
    /* int-range */
    {"bytes=0-0", 1000, WF_OK, 0, 0},
    {"bytes=0-499", 1000, WF_OK, 0, 499},
    {"bytes=500-999", 1000, WF_OK, 500, 999},
    {"bytes=500-1000", 1000, WF_OK, 500, 999},
    {"bytes=0-18446744073709551615", 1000, WF_OK, 0, 999},
    {"bytes=999-999", 1000, WF_OK, 999, 999},
    {"bytes=0-", 1000, WF_OK, 0, 999},
    {"bytes=999-", 1000, WF_OK, 999, 999},
    {"bytes=0000000000000000000000001-2", 1000, WF_OK, 1, 2},
    {"bytes=0-0", 1, WF_OK, 0, 0},
    /* suffix-range */
    {"bytes=-1", 1000, WF_OK, 999, 999},
    {"bytes=-500", 1000, WF_OK, 500, 999},
    {"bytes=-1000", 1000, WF_OK, 0, 999},
    {"bytes=-5000", 1000, WF_OK, 0, 999},
    {"bytes=-18446744073709551615", 1000, WF_OK, 0, 999},
    /* Spelling: unit case, OWS, empty list elements. */
    {"BYTES=1-2", 1000, WF_OK, 1, 2},
    {"Bytes=1-2", 1000, WF_OK, 1, 2},
    {"bytes =1-2", 1000, WF_OK, 1, 2},
    {"bytes= 1-2", 1000, WF_OK, 1, 2},
    {" bytes = 1-2 ", 1000, WF_OK, 1, 2},
    {"bytes=1-2,", 1000, WF_OK, 1, 2},
    {"bytes=, 1-2 ,,", 1000, WF_OK, 1, 2},
    {"bytes=\t1-2\t", 1000, WF_OK, 1, 2},

    /* Unsatisfiable: 416. */
    {"bytes=1000-", 1000, WF_ERROR, 0, 0},
    {"bytes=1000-1000", 1000, WF_ERROR, 0, 0},
    {"bytes=5000-6000", 1000, WF_ERROR, 0, 0},
    {"bytes=-0", 1000, WF_ERROR, 0, 0},
    {"bytes=-00", 1000, WF_ERROR, 0, 0},
    {"bytes=-0", 0, WF_ERROR, 0, 0},
    {"bytes=1-", 1, WF_ERROR, 0, 0},
    {"bytes=18446744073709551615-", 1000, WF_ERROR, 0, 0},

    /* Empty representation: the whole (empty) body, never 206 or 416. */
    {"bytes=0-", 0, WF_DECLINED, 0, 0},
    {"bytes=0-10", 0, WF_DECLINED, 0, 0},
    {"bytes=-10", 0, WF_DECLINED, 0, 0},
    {"bytes=5-", 0, WF_DECLINED, 0, 0},

    /* Several ranges: served whole. */
    {"bytes=0-1,3-4", 1000, WF_DECLINED, 0, 0},
    {"bytes=0-1, -5", 1000, WF_DECLINED, 0, 0},
    {"bytes=5000-, 0-1", 1000, WF_DECLINED, 0, 0},
    {"bytes=0-1,0-1", 1000, WF_DECLINED, 0, 0},

    /* Malformed: ignored. */
    {"", 1000, WF_DECLINED, 0, 0},
    {"bytes", 1000, WF_DECLINED, 0, 0},
    {"bytes=", 1000, WF_DECLINED, 0, 0},
    {"bytes=,", 1000, WF_DECLINED, 0, 0},
    {"bytes=-", 1000, WF_DECLINED, 0, 0},
    {"bytes=--1", 1000, WF_DECLINED, 0, 0},
    {"bytes=1", 1000, WF_DECLINED, 0, 0},
    {"bytes=a-b", 1000, WF_DECLINED, 0, 0},
    {"bytes=1-a", 1000, WF_DECLINED, 0, 0},
    {"bytes=1-2x", 1000, WF_DECLINED, 0, 0},
    {"bytes=1 -2", 1000, WF_DECLINED, 0, 0},
    {"bytes=1- 2", 1000, WF_DECLINED, 0, 0},
    {"bytes=+1-2", 1000, WF_DECLINED, 0, 0},
    {"bytes=1-2-3", 1000, WF_DECLINED, 0, 0},
    {"bytes=1-2 3-4", 1000, WF_DECLINED, 0, 0},
    {"bytes=5-4", 1000, WF_DECLINED, 0, 0},
    {"bytes=5000-4", 1000, WF_DECLINED, 0, 0},
    {"bytes:0-1", 1000, WF_DECLINED, 0, 0},
    {"byte=0-1", 1000, WF_DECLINED, 0, 0},
    {"bytesx=0-1", 1000, WF_DECLINED, 0, 0},
    {"items=0-1", 1000, WF_DECLINED, 0, 0},
    {"0-1", 1000, WF_DECLINED, 0, 0},
    {"bytes=0x10-", 1000, WF_DECLINED, 0, 0},
    /* Over 64 bits. */
    {"bytes=18446744073709551616-", 1000, WF_DECLINED, 0, 0},
    {"bytes=0-18446744073709551616", 1000, WF_DECLINED, 0, 0},
    {"bytes=-18446744073709551616", 1000, WF_DECLINED, 0, 0},
    {"bytes=99999999999999999999999999999-", 1000, WF_DECLINED, 0, 0},
};

static void
test_range_table(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(range_cases); i++) {
        const range_case_t *c = &range_cases[i];
        wf_range_t r = {77, 77};
        int rc;

        rc = wf_range_parse(wf_str_make(c->value, strlen(c->value)), c->size,
                            &r);
        if (rc != c->rc
            || (rc == WF_OK && (r.start != c->start || r.end != c->end))) {
            print_message("\"%s\" size %llu: rc %d [%llu, %llu]\n", c->value,
                          (unsigned long long)c->size, rc,
                          (unsigned long long)r.start,
                          (unsigned long long)r.end);
            fail();
        }
        if (rc == WF_OK) {
            assert_true(r.start <= r.end && r.end < c->size);
        }
    }
}

/* The value is not NUL-terminated: a digit just past its end must not be
 * read. */
static void
test_range_bounded(void **state)
{
    static const char buf[] = "bytes=1-23";
    wf_range_t r;

    wf_unused(state);
    assert_int_equal(wf_range_parse(wf_str_make(buf, 9), 1000, &r), WF_OK);
    assert_int_equal(r.start, 1);
    assert_int_equal(r.end, 2);
    assert_int_equal(wf_range_parse(wf_str_make(buf, 7), 1000, &r),
                     WF_DECLINED);
}

int
wf_test_range(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_table),
        cmocka_unit_test(test_range_bounded),
    };

    return cmocka_run_group_tests_name("range", tests, NULL, NULL);
}
