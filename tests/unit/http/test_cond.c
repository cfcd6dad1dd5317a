/* HTTP dates, ETags and the conditional-request predicates. */
#include "unit.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "http/cond.h"

#define S(lit) wf_str_make((lit), strlen(lit))

typedef struct date_case {
    const char *in;
    int rc;
    int64_t t; /* expected on WF_OK */
} date_case_t;

static const date_case_t date_parse_cases[] = {
    /* The three forms of RFC 9110's example. */
    {"Sun, 06 Nov 1994 08:49:37 GMT", WF_OK, 784111777},
    {"Sunday, 06-Nov-94 08:49:37 GMT", WF_OK, 784111777},
    {"Sun Nov  6 08:49:37 1994", WF_OK, 784111777},
    {"Sun Nov 06 08:49:37 1994", WF_OK, 784111777},
    {"Thu, 01 Jan 1970 00:00:00 GMT", WF_OK, 0},
    {"Wed, 31 Dec 1969 23:59:59 GMT", WF_OK, -1},
    {"Tue, 19 Jan 2038 03:14:08 GMT", WF_OK, INT64_C(2147483648)},
    {"Fri, 31 Dec 9999 23:59:59 GMT", WF_OK, INT64_C(253402300799)},
    {"Tue, 29 Feb 2000 12:00:00 GMT", WF_OK, 951825600},
    {"Thu, 29 Feb 2024 00:00:00 GMT", WF_OK, 1709164800},
    {"Sat, 31 Dec 2016 23:59:60 GMT", WF_OK, 1483228800}, /* leap second */
    {"Thursday, 01-Jan-70 00:00:00 GMT", WF_OK, 0},
    {"Saturday, 01-Jan-00 00:00:00 GMT", WF_OK, 946684800},
    {"Wednesday, 31-Dec-69 00:00:00 GMT", WF_OK, 3155673600},
    {"Thu Jan  1 00:00:00 1970", WF_OK, 0},
    {" Sun, 06 Nov 1994 08:49:37 GMT\t", WF_OK, 784111777},
    /* The day name is checked for form, not against the date. */
    {"Mon, 06 Nov 1994 08:49:37 GMT", WF_OK, 784111777},

    {"", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 08:49:37", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 08:49:37 UTC", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 08:49:37 gmt", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 08:49:37 GMT ", WF_OK, 784111777},
    {"Sun, 06 Nov 1994 08:49:37 GMTx", WF_ERROR, 0},
    {"sun, 06 Nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 06 nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 6 Nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun,  6 Nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 06 Nov 94 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 8:49:37 GMT", WF_ERROR, 0},
    {"Sun, 06-Nov-1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun 06 Nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sunday, 06 Nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 06-Nov-94 08:49:37 GMT", WF_ERROR, 0},
    {"Sunday, 06-Nov-94 08:49:37", WF_ERROR, 0},
    {"Sun Nov 6 08:49:37 1994", WF_ERROR, 0},
    {"Sun Nov  6 08:49:37 1994 GMT", WF_ERROR, 0},
    {"Sun Nov  6 08:49:37 94", WF_ERROR, 0},
    {"Xyz, 06 Nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 06 Foo 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 00 Nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 31 Nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 32 Dec 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 29 Feb 1900 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 29 Feb 2023 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 24:00:00 GMT", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 08:60:37 GMT", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 08:49:61 GMT", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 08:49:3a GMT", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 08-49-37 GMT", WF_ERROR, 0},
    {"Sun, -6 Nov 1994 08:49:37 GMT", WF_ERROR, 0},
    {"Sun, 06 Nov 1994 08:49:37 GMT; length=12", WF_ERROR, 0},
    {"784111777", WF_ERROR, 0},
};

static void
test_cond_date_parse(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(date_parse_cases); i++) {
        const date_case_t *c = &date_parse_cases[i];
        time_t t = 12345;
        int rc = wf_http_date_parse(S(c->in), &t);

        if (rc != c->rc || (rc == WF_OK && (int64_t)t != c->t)) {
            print_message("parse \"%s\": rc %d t %lld\n", c->in, rc,
                          (long long)t);
            fail();
        }
    }
}

static void
test_cond_date_format(void **state)
{
    static const struct {
        int64_t t;
        const char *out;
    } cases[] = {
        {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
        {784111777, "Sun, 06 Nov 1994 08:49:37 GMT"},
        {951825600, "Tue, 29 Feb 2000 12:00:00 GMT"},
        {1709164800, "Thu, 29 Feb 2024 00:00:00 GMT"},
        {-1, "Wed, 31 Dec 1969 23:59:59 GMT"},
        {INT64_C(2147483648), "Tue, 19 Jan 2038 03:14:08 GMT"},
        {INT64_C(253402300799), "Fri, 31 Dec 9999 23:59:59 GMT"},
        {INT64_C(253402300800), "Fri, 31 Dec 9999 23:59:59 GMT"}, /* clamped */
        {INT64_MAX, "Fri, 31 Dec 9999 23:59:59 GMT"},
        {INT64_MIN, "Sat, 01 Jan 0000 00:00:00 GMT"},
    };
    char out[WF_HTTP_DATE_LEN + 1];
    time_t back;

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        memset(out, '#', sizeof(out));
        wf_http_date_format((time_t)cases[i].t, out);
        assert_int_equal(out[WF_HTTP_DATE_LEN], '#');
        out[WF_HTTP_DATE_LEN] = '\0';
        assert_string_equal(out, cases[i].out);
    }
    /* Round trips over a spread of instants, every weekday and month. */
    for (int64_t t = -86400 * 400; t < INT64_C(4102444800); t += 7919 * 61) {
        wf_http_date_format((time_t)t, out);
        assert_int_equal(wf_http_date_parse(wf_str_make(out, 29), &back),
                         WF_OK);
        assert_int_equal((int64_t)back, t);
    }
}

static void
test_cond_etag_format(void **state)
{
    static const struct {
        int64_t mtime;
        uint64_t size;
        const char *out;
    } cases[] = {
        {0x5f3a1b2c, 0x400, "\"5f3a1b2c-400\""},
        {0, 0, "\"0-0\""},
        {1, 1, "\"1-1\""},
        {0xabcdef, 0xfedcba, "\"abcdef-fedcba\""},
        {INT64_MAX, UINT64_MAX, "\"7fffffffffffffff-ffffffffffffffff\""},
        {-1, 10, "\"-1-a\""},
        {INT64_MIN, 16, "\"-8000000000000000-10\""},
    };
    char out[WF_ETAG_MAX + 1];

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        size_t n;

        memset(out, '#', sizeof(out));
        n = wf_etag_format(out, (time_t)cases[i].mtime, cases[i].size);
        assert_true(n <= WF_ETAG_MAX);
        assert_int_equal(out[n], '#');
        assert_int_equal(n, strlen(cases[i].out));
        assert_memory_equal(out, cases[i].out, n);
    }
}

typedef struct match_case {
    const char *field;
    const char *etag;
    bool match;
} match_case_t;

static const match_case_t etag_list_cases[] = {
    {"\"5f-400\"", "\"5f-400\"", true},
    {"W/\"5f-400\"", "\"5f-400\"", true},
    {"\"5f-400\"", "W/\"5f-400\"", true},
    {"\"a\", \"5f-400\"", "\"5f-400\"", true},
    {"\"a\",\"5f-400\"", "\"5f-400\"", true},
    {"\"a\" , W/\"5f-400\" , \"b\"", "\"5f-400\"", true},
    {", ,\"5f-400\",", "\"5f-400\"", true},
    {" \"5f-400\" ", "\"5f-400\"", true},
    {"*", "\"5f-400\"", true},
    {" * ", "\"5f-400\"", true},
    {"*", "", true},
    {"\"5f-401\"", "\"5f-400\"", false},
    {"\"5F-400\"", "\"5f-400\"", false},
    {"5f-400", "\"5f-400\"", false},
    {"\"5f-400", "\"5f-400\"", false},
    {"w/\"5f-400\"", "\"5f-400\"", false},
    {"\"a\" \"5f-400\"", "\"5f-400\"", false},
    {"\"a\"x, \"5f-400\"", "\"5f-400\"", false},
    {"\"a b\", \"5f-400\"", "\"5f-400\"", false},
    {"\"\"", "\"5f-400\"", false},
    {"\"\"", "\"\"", true},
    {"*, \"5f-400\"", "\"5f-400\"", false},
    {"\"a\", *", "\"5f-400\"", false},
    {",", "\"5f-400\"", false},
    {"\"5f-400\"", "", false},
};

static void
test_cond_etag_list(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(etag_list_cases); i++) {
        const match_case_t *c = &etag_list_cases[i];

        if (wf_etag_list_match(S(c->field), S(c->etag)) != c->match) {
            print_message("If-None-Match %s vs %s\n", c->field, c->etag);
            fail();
        }
    }
}

#define MTIME 784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */

static const match_case_t if_range_cases[] = {
    {"\"5f-400\"", "\"5f-400\"", true},
    {" \"5f-400\" ", "\"5f-400\"", true},
    {"\"5f-401\"", "\"5f-400\"", false},
    {"W/\"5f-400\"", "\"5f-400\"", false},
    {"\"5f-400\"", "W/\"5f-400\"", false},
    {"\"5f-400\", \"x\"", "\"5f-400\"", false},
    {"\"5f-400\"", "", false},
    {"Sun, 06 Nov 1994 08:49:37 GMT", "\"5f-400\"", true},
    {"Sunday, 06-Nov-94 08:49:37 GMT", "\"5f-400\"", true},
    {"Sun Nov  6 08:49:37 1994", "\"5f-400\"", true},
    {"Sun, 06 Nov 1994 08:49:38 GMT", "\"5f-400\"", false},
    {"Sun, 06 Nov 1994 08:49:36 GMT", "\"5f-400\"", false},
    {"Sun, 06 Nov 1994 08:49:37", "\"5f-400\"", false},
    {"garbage", "\"5f-400\"", false},
    {"*", "\"5f-400\"", false},
    {"", "\"5f-400\"", true}, /* absent */
};

static void
test_cond_if_range(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(if_range_cases); i++) {
        const match_case_t *c = &if_range_cases[i];

        if (wf_if_range_ok(S(c->field), S(c->etag), MTIME) != c->match) {
            print_message("If-Range %s vs %s\n", c->field, c->etag);
            fail();
        }
    }
}

static const struct {
    const char *inm, *ims;
    bool not_modified;
} not_modified_cases[] = {
    {"", "", false},
    {"\"5f-400\"", "", true},
    {"W/\"5f-400\"", "", true},
    {"\"other\"", "", false},
    {"*", "", true},
    {"", "Sun, 06 Nov 1994 08:49:37 GMT", true},
    {"", "Sun, 06 Nov 1994 08:49:38 GMT", true},
    {"", "Sun, 06 Nov 1994 08:49:36 GMT", false},
    {"", "Sunday, 06-Nov-94 08:49:37 GMT", true},
    {"", "Sun Nov  6 08:49:37 1994", true},
    {"", "garbage", false},
    {"", "Sun, 06 Nov 1994 08:49:37 GMT; length=1024", false},
    /* If-None-Match wins over If-Modified-Since. */
    {"\"other\"", "Sun, 06 Nov 1994 08:49:37 GMT", false},
    {"\"5f-400\"", "Sun, 06 Nov 1994 08:49:36 GMT", true},
    {"\"5f-400\"", "garbage", true},
};

static void
test_cond_not_modified(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(not_modified_cases); i++) {
        bool got = wf_cond_not_modified(S(not_modified_cases[i].inm),
                                        S(not_modified_cases[i].ims),
                                        S("\"5f-400\""), MTIME);

        if (got != not_modified_cases[i].not_modified) {
            print_message("INM \"%s\" IMS \"%s\"\n", not_modified_cases[i].inm,
                          not_modified_cases[i].ims);
            fail();
        }
    }
}

int
wf_test_cond(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cond_date_parse),
        cmocka_unit_test(test_cond_date_format),
        cmocka_unit_test(test_cond_etag_format),
        cmocka_unit_test(test_cond_etag_list),
        cmocka_unit_test(test_cond_if_range),
        cmocka_unit_test(test_cond_not_modified),
    };

    return cmocka_run_group_tests_name("cond", tests, NULL, NULL);
}
