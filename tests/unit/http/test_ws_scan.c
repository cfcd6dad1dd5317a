/* wf_ws_scan(): the tunnel finds the client's Close frame wherever the
 * stream is cut, past frames of every length form, masked or not. */
#include "unit.h"

#include <string.h>

#include "core/common.h"
#include "http/ws_scan.h"

typedef struct ws_scan_case {
    const char *name;
    const char *bytes;
    size_t len;
    bool closed;
} ws_scan_case_t;

#define WS_CASE(name, lit, closed)         \
    {                                      \
        name, lit, sizeof(lit) - 1, closed \
    }

static const ws_scan_case_t ws_scan_cases[] = {
    WS_CASE("empty", "", false),
    WS_CASE("close alone", "\x88\x80mask", true),
    WS_CASE("text then close",
            "\x81\x83mask"
            "abc"
            "\x88\x82mask"
            "\x03\xe8",
            true),
    /* A payload byte 0x88 is data, not a frame head. */
    WS_CASE("0x88 inside a payload",
            "\x82\x82mask"
            "\x88\x88",
            false),
    /* 16-bit length: 126 bytes of payload, then a Close. */
    WS_CASE("16-bit length",
            "\x82\xfe\x00\x7e"
            "mask"
            "0123456789012345678901234567890123456789012345678901234567890123"
            "45678901234567890123456789012345678901234567890123456789012345"
            "\x88\x80mask",
            true),
    /* 64-bit length: a head only; its payload is still to come. */
    WS_CASE("64-bit length, payload pending",
            "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00mask\x88", false),
    WS_CASE("unmasked ping then close", "\x89\x00\x88\x00", true),
    WS_CASE("fragment and continuation",
            "\x01\x81mask"
            "a\x80\x81mask"
            "b",
            false),
};

static void
test_ws_scan_table(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(ws_scan_cases); i++) {
        const ws_scan_case_t *t = &ws_scan_cases[i];

        /* Whole, then cut at every point, then byte by byte. */
        for (size_t cut = 0; cut <= t->len; cut++) {
            wf_ws_scan_t s;

            wf_ws_scan_init(&s);
            wf_ws_scan(&s, t->bytes, cut);
            wf_ws_scan(&s, t->bytes + cut, t->len - cut);
            if (s.closed != t->closed) {
                fail_msg("%s, cut at %zu: closed %d", t->name, cut, s.closed);
            }
        }
        {
            wf_ws_scan_t s;

            wf_ws_scan_init(&s);
            for (size_t k = 0; k < t->len; k++) {
                wf_ws_scan(&s, t->bytes + k, 1);
            }
            assert_int_equal(s.closed, t->closed);
        }
    }
}

static void
test_ws_scan_payload_left(void **state)
{
    wf_ws_scan_t s;

    wf_unused(state);
    wf_ws_scan_init(&s);
    /* 64-bit length 0x1_0000_0000: the scanner counts it down. */
    assert_false(
        wf_ws_scan(&s, "\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 10));
    assert_true(s.skip == 0x100000000ull);
    assert_int_equal(s.hlen, 0);
}

int
wf_test_ws_scan(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_scan_table),
        cmocka_unit_test(test_ws_scan_payload_left),
    };

    return cmocka_run_group_tests_name("ws_scan", tests, NULL, NULL);
}
