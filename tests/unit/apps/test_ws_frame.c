/* WebSocket framing (apps/python/ws_frame.c): frame heads, masking, the
 * checks of RFC 6455 section 5, UTF-8, close payloads, message assembly
 * from fragments and the handshake's accept value. */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/python/ws_frame.h"
#include "core/common.h"

/* Builds a masked client frame into out; returns its length. */
static size_t
ws_client_frame(uint8_t *out, uint8_t b0, const void *payload, size_t len)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t n = wf_ws_frame_head(out, true, 0, len);

    out[0] = b0;
    out[1] |= 0x80;
    memcpy(out + n, key, 4);
    n += 4;
    for (size_t i = 0; i < len; i++) {
        out[n + i] = ((const uint8_t *)payload)[i] ^ key[i & 3];
    }
    return n + len;
}

static void
test_ws_accept_rfc(void **state)
{
    char out[WF_WS_ACCEPT_LEN + 1];

    (void)state;
    /* RFC 6455 section 1.3. */
    wf_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* Another key, checked with Python's hashlib and base64. */
    wf_ws_accept("x3JJHMbDL1EzLkh9GBhXDw==", 24, out);
    assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void
test_ws_parse_rfc_hello(void **state)
{
    /* RFC 6455 section 5.7: a masked "Hello". */
    uint8_t f1[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                    0x7f, 0x9f, 0x4d, 0x51, 0x58};
    wf_ws_frame_t f;
    size_t need;

    (void)state;
    for (size_t n = 0; n < sizeof(f1); n++) {
        assert_int_equal(wf_ws_frame_parse(f1, n, 125, &f, &need), 0);
        assert_int_equal(need, n >= 6 ? sizeof(f1) : 0);
    }
    assert_int_equal(wf_ws_frame_parse(f1, sizeof(f1), 125, &f, &need),
                     sizeof(f1));
    assert_true(f.fin);
    assert_int_equal(f.opcode, WF_WS_OP_TEXT);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.payload, "Hello", 5);
}

typedef struct ws_bad_case {
    const char *what;
    uint8_t bytes[14];
    size_t n;
    size_t max;
    ssize_t rc;
} ws_bad_case_t;

static const ws_bad_case_t ws_bad_cases[] = {
    {"unmasked",
     {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'},
     7,
     125,
     -WF_WS_CLOSE_PROTOCOL},
    {"rsv1", {0xc1, 0x80, 1, 2, 3, 4}, 6, 125, -WF_WS_CLOSE_PROTOCOL},
    {"rsv2", {0xa1, 0x80, 1, 2, 3, 4}, 6, 125, -WF_WS_CLOSE_PROTOCOL},
    {"rsv3", {0x91, 0x80, 1, 2, 3, 4}, 6, 125, -WF_WS_CLOSE_PROTOCOL},
    {"opcode 3", {0x83, 0x80, 1, 2, 3, 4}, 6, 125, -WF_WS_CLOSE_PROTOCOL},
    {"opcode 7", {0x87, 0x80, 1, 2, 3, 4}, 6, 125, -WF_WS_CLOSE_PROTOCOL},
    {"opcode 0xb", {0x8b, 0x80, 1, 2, 3, 4}, 6, 125, -WF_WS_CLOSE_PROTOCOL},
    {"opcode 0xf", {0x8f, 0x80, 1, 2, 3, 4}, 6, 125, -WF_WS_CLOSE_PROTOCOL},
    {"fragmented ping",
     {0x09, 0x80, 1, 2, 3, 4},
     6,
     125,
     -WF_WS_CLOSE_PROTOCOL},
    {"fragmented close",
     {0x08, 0x80, 1, 2, 3, 4},
     6,
     125,
     -WF_WS_CLOSE_PROTOCOL},
    {"ping of 126",
     {0x89, 0xfe, 0, 126, 1, 2, 3, 4},
     8,
     1000,
     -WF_WS_CLOSE_PROTOCOL},
    {"pong of 126",
     {0x8a, 0xfe, 0, 126, 1, 2, 3, 4},
     8,
     1000,
     -WF_WS_CLOSE_PROTOCOL},
    {"64-bit top bit",
     {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4},
     14,
     SIZE_MAX,
     -WF_WS_CLOSE_PROTOCOL},
    {"over the frame limit",
     {0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4},
     8,
     255,
     -WF_WS_CLOSE_TOO_BIG},
    {"64-bit over the limit",
     {0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4},
     14,
     WF_WS_MAX_FRAME,
     -WF_WS_CLOSE_TOO_BIG},
    {"at the limit, incomplete",
     {0x82, 0xfe, 0x00, 0xff, 1, 2, 3, 4},
     8,
     255,
     0},
};

static void
test_ws_parse_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < wf_nitems(ws_bad_cases); i++) {
        const ws_bad_case_t *c = &ws_bad_cases[i];
        uint8_t buf[14];
        wf_ws_frame_t f;

        memcpy(buf, c->bytes, c->n);
        if (wf_ws_frame_parse(buf, c->n, c->max, &f, NULL) != c->rc) {
            fail_msg("case \"%s\"", c->what);
        }
    }
}

static void
test_ws_parse_lengths(void **state)
{
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    uint8_t *buf = malloc(70000 + WF_WS_MAX_HEAD);
    uint8_t *payload = malloc(70000);

    (void)state;
    assert_non_null(buf);
    assert_non_null(payload);
    for (size_t i = 0; i < 70000; i++) {
        payload[i] = (uint8_t)(i * 7);
    }
    for (size_t i = 0; i < wf_nitems(lens); i++) {
        size_t n = ws_client_frame(buf, 0x82, payload, lens[i]);
        size_t head = n - lens[i];
        wf_ws_frame_t f;
        size_t need;

        assert_int_equal(head, lens[i] < 126 ? 6 : lens[i] < 65536 ? 8 : 14);
        assert_int_equal(
            wf_ws_frame_parse(buf, n - 1 + (lens[i] == 0), 70000, &f, &need),
            lens[i] == 0 ? (ssize_t)n : 0);
        if (lens[i] > 0) {
            assert_int_equal(need, n);
        }
        assert_int_equal(wf_ws_frame_parse(buf, n, 70000, &f, &need), n);
        assert_int_equal(f.len, lens[i]);
        assert_memory_equal(f.payload, payload, lens[i]);
    }
    free(buf);
    free(payload);
}

static void
test_ws_frame_head(void **state)
{
    static const struct {
        uint64_t len;
        size_t n;
        uint8_t head[10];
    } cases[] = {
        {0, 2, {0x82, 0}},
        {125, 2, {0x82, 125}},
        {126, 4, {0x82, 126, 0, 126}},
        {65535, 4, {0x82, 126, 0xff, 0xff}},
        {65536, 10, {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
        {0x0102030405060708ULL, 10, {0x82, 127, 1, 2, 3, 4, 5, 6, 7, 8}},
    };
    uint8_t out[WF_WS_MAX_HEAD];

    (void)state;
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        assert_int_equal(
            wf_ws_frame_head(out, true, WF_WS_OP_BINARY, cases[i].len),
            cases[i].n);
        assert_memory_equal(out, cases[i].head, cases[i].n);
    }
    assert_int_equal(wf_ws_frame_head(out, false, WF_WS_OP_TEXT, 3), 2);
    assert_int_equal(out[0], 0x01);
}

typedef struct ws_utf8_case {
    const char *bytes;
    bool valid;
} ws_utf8_case_t;

static const ws_utf8_case_t ws_utf8_cases[] = {
    {"", true},
    {"hello, world and some more ASCII to pass eight bytes", true},
    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true}, /* kosme */
    {"\x7f", true},
    {"\xc2\x80", true},
    {"\xdf\xbf", true},
    {"\xe0\xa0\x80", true},
    {"\xed\x9f\xbf", true}, /* U+D7FF */
    {"\xee\x80\x80", true}, /* U+E000 */
    {"\xef\xbf\xbf", true}, /* U+FFFF */
    {"\xf0\x90\x80\x80", true},
    {"\xf4\x8f\xbf\xbf", true}, /* U+10FFFF */
    {"\x80", false},            /* lone continuation */
    {"\xbf", false},
    {"\xc0\xaf", false}, /* overlong '/' */
    {"\xc1\xbf", false},
    {"\xe0\x80\xaf", false}, /* overlong */
    {"\xe0\x9f\xbf", false},
    {"\xed\xa0\x80", false}, /* U+D800, a surrogate */
    {"\xed\xbf\xbf", false},
    {"\xf0\x8f\xbf\xbf", false}, /* overlong */
    {"\xf4\x90\x80\x80", false}, /* above U+10FFFF */
    {"\xf5\x80\x80\x80", false},
    {"\xff", false},
    {"\xfe", false},
    {"abc\xc2", false}, /* truncated: incomplete, checked below */
    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
     "edited",
     false},
};

static void
test_ws_utf8(void **state)
{
    (void)state;
    for (size_t i = 0; i < wf_nitems(ws_utf8_cases); i++) {
        const ws_utf8_case_t *c = &ws_utf8_cases[i];
        size_t n = strlen(c->bytes);
        const uint8_t *p = (const uint8_t *)c->bytes;

        /* Whole, and split at every position (as in two fragments). */
        for (size_t cut = 0; cut <= n; cut++) {
            wf_ws_utf8_t u = {0};
            bool ok;

            ok = wf_ws_utf8_feed(&u, p, cut)
                 && wf_ws_utf8_feed(&u, p + cut, n - cut)
                 && wf_ws_utf8_is_complete(&u);
            if (ok != c->valid) {
                fail_msg("case %zu cut %zu", i, cut);
            }
        }
    }
}

static void
test_ws_close_parse(void **state)
{
    static const struct {
        const char *payload;
        size_t n;
        int rc;
        unsigned code;
    } cases[] = {
        {"", 0, 0, 1005},
        {"\x03\xe8", 2, 0, 1000},
        {"\x03\xe8ok", 4, 0, 1000},
        {"\x03\xe9", 2, 0, 1001},
        {"\x03\xeb", 2, 0, 1003},
        {"\x03\xef", 2, 0, 1007},
        {"\x03\xf6", 2, 0, 1014},
        {"\x0b\xb8", 2, 0, 3000},
        {"\x13\x87", 2, 0, 4999},
        {"\x03", 1, -WF_WS_CLOSE_PROTOCOL, 0},
        {"\x00\x00", 2, -WF_WS_CLOSE_PROTOCOL, 0},
        {"\x03\xe7", 2, -WF_WS_CLOSE_PROTOCOL, 0}, /* 999 */
        {"\x03\xec", 2, -WF_WS_CLOSE_PROTOCOL, 0}, /* 1004 */
        {"\x03\xed", 2, -WF_WS_CLOSE_PROTOCOL, 0}, /* 1005 */
        {"\x03\xee", 2, -WF_WS_CLOSE_PROTOCOL, 0}, /* 1006 */
        {"\x03\xf7", 2, -WF_WS_CLOSE_PROTOCOL, 0}, /* 1015 */
        {"\x07\xd0", 2, -WF_WS_CLOSE_PROTOCOL, 0}, /* 2000 */
        {"\x0b\xb7", 2, -WF_WS_CLOSE_PROTOCOL, 0}, /* 2999 */
        {"\x13\x88", 2, -WF_WS_CLOSE_PROTOCOL, 0}, /* 5000 */
        {"\x03\xe8\xff", 3, -WF_WS_CLOSE_BAD_DATA, 0},
        {"\x03\xe8\xce", 3, -WF_WS_CLOSE_BAD_DATA, 0},
    };

    (void)state;
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        unsigned code = 0;
        int rc = wf_ws_close_parse((const uint8_t *)cases[i].payload,
                                   cases[i].n, &code);

        if (rc != cases[i].rc || (rc == 0 && code != cases[i].code)) {
            fail_msg("case %zu: rc %d code %u", i, rc, code);
        }
    }
}

/* Feeds wire bytes to a reader in pieces of step bytes and collects the
 * events as "T:text|B:2|P:ping|C:1000|" or the error as "E:1002". */
static void
ws_reader_run(const uint8_t *wire, size_t n, size_t step, size_t max_frame,
              size_t max_message, char *out, size_t cap)
{
    wf_ws_reader_t r;
    size_t off = 0, used = 0;

    wf_ws_reader_init(&r, max_frame, max_message);
    out[0] = '\0';
    for (;;) {
        wf_ws_event_t ev;
        int rc = wf_ws_reader_next(&r, &ev);

        if (rc < 0) {
            snprintf(out + used, cap - used, "E:%d", -rc);
            break;
        }
        if (rc == 1) {
            static const char names[16] = {
                [1] = 'T', [2] = 'B', [8] = 'C', [9] = 'P', [10] = 'O'};

            if (ev.opcode == WF_WS_OP_CLOSE) {
                used +=
                    (size_t)snprintf(out + used, cap - used, "C:%u|", ev.code);
            } else if (ev.opcode == WF_WS_OP_BINARY || ev.len > 40) {
                used += (size_t)snprintf(out + used, cap - used, "%c:%zu|",
                                         names[ev.opcode], ev.len);
            } else {
                used += (size_t)snprintf(out + used, cap - used, "%c:%.*s|",
                                         names[ev.opcode], (int)ev.len,
                                         (const char *)ev.data);
            }
            continue;
        }
        if (off == n) {
            break;
        }

        size_t room;
        uint8_t *p = wf_ws_reader_space(&r, &room);

        assert_non_null(p);
        assert_true(room > 0);
        if (room > step) {
            room = step;
        }
        if (room > n - off) {
            room = n - off;
        }
        memcpy(p, wire + off, room);
        wf_ws_reader_commit(&r, room);
        off += room;
    }
    wf_ws_reader_fini(&r);
}

static void
test_ws_reader_messages(void **state)
{
    static const size_t steps[] = {1, 2, 3, 7, 100, 1 << 20};
    uint8_t wire[512];
    size_t n = 0;
    char got[256];

    (void)state;
    /* Empty fragments before any buffer exists: nothing is kept until "z"
     * (UBSan saw a memcpy from no buffer). */
    n += ws_client_frame(wire + n, 0x01, "", 0);
    n += ws_client_frame(wire + n, 0x00, "", 0);
    n += ws_client_frame(wire + n, 0x80, "z", 1);
    n += ws_client_frame(wire + n, 0x81, "one", 3);
    /* "two" in three fragments with a ping and a pong between them. */
    n += ws_client_frame(wire + n, 0x01, "t", 1);
    n += ws_client_frame(wire + n, 0x89, "ping", 4);
    n += ws_client_frame(wire + n, 0x00, "w", 1);
    n += ws_client_frame(wire + n, 0x8a, "pong", 4);
    n += ws_client_frame(wire + n, 0x80, "o", 1);
    n += ws_client_frame(wire + n, 0x82, "\x00\x01", 2);
    /* A text whose code point spans two fragments. */
    n += ws_client_frame(wire + n, 0x01, "\xce", 1);
    n += ws_client_frame(wire + n, 0x80, "\xba", 1);
    n += ws_client_frame(wire + n, 0x81, "", 0);
    n += ws_client_frame(wire + n, 0x88,
                         "\x03\xe8"
                         "bye",
                         5);
    for (size_t i = 0; i < wf_nitems(steps); i++) {
        ws_reader_run(wire, n, steps[i], 1024, 1024, got, sizeof(got));
        assert_string_equal(got, "T:z|T:one|P:ping|O:pong|T:two|B:2|"
                                 "T:\xce\xba|T:|C:1000|");
    }
}

typedef struct ws_reader_case {
    const char *what;
    uint8_t frames[4][10]; /* b0, payload length, payload */
    const char *expect;
} ws_reader_case_t;

static const ws_reader_case_t ws_reader_cases[] = {
    {"lone continuation", {{0x80, 1, 'x'}}, "E:1002"},
    {"text inside a fragmented text",
     {{0x01, 1, 'a'}, {0x81, 1, 'b'}},
     "E:1002"},
    {"binary inside a fragmented text",
     {{0x01, 1, 'a'}, {0x82, 1, 'b'}},
     "E:1002"},
    {"bad utf-8 in the first fragment: fails before the end",
     {{0x01, 1, 0xff}},
     "E:1007"},
    {"truncated utf-8 at the end of a message", {{0x81, 1, 0xce}}, "E:1007"},
    {"utf-8 of binary is not checked", {{0x82, 1, 0xff}}, "B:1|"},
    {"close with one byte", {{0x88, 1, 0x03}}, "E:1002"},
    {"close with code 1005", {{0x88, 2, 0x03, 0xed}}, "E:1002"},
    {"close with a bad reason", {{0x88, 3, 0x03, 0xe8, 0xff}}, "E:1007"},
    {"empty close", {{0x88, 0}}, "C:1005|"},
    {"message over the limit in fragments",
     {{0x02, 5, 1, 2, 3, 4, 5}, {0x00, 5, 1, 2, 3, 4, 5}, {0x80, 1, 1}},
     "E:1009"},
    {"message at the limit in fragments",
     {{0x02, 5, 1, 2, 3, 4, 5}, {0x00, 5, 1, 2, 3, 4, 5}, {0x80, 0}},
     "B:10|"},
    {"frame over the frame limit", {{0x82, 7, 1, 2, 3, 4, 5, 6, 7}}, "E:1009"},
};

static void
test_ws_reader_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < wf_nitems(ws_reader_cases); i++) {
        const ws_reader_case_t *c = &ws_reader_cases[i];
        uint8_t wire[128];
        char got[64];
        size_t n = 0;

        for (size_t k = 0;
             k < 4 && (c->frames[k][0] != 0 || c->frames[k][1] != 0); k++) {
            n += ws_client_frame(wire + n, c->frames[k][0], &c->frames[k][2],
                                 c->frames[k][1]);
        }
        ws_reader_run(wire, n, 3, 6, 10, got, sizeof(got));
        if (strcmp(got, c->expect) != 0) {
            fail_msg("case \"%s\": got \"%s\"", c->what, got);
        }
    }
}

static void
test_ws_reader_large(void **state)
{
    /* A frame at Unit's 1 MiB limit passes, one byte more is refused; the
     * buffer grows from 8 KiB to the frame's size as bytes arrive. */
    size_t len = WF_WS_MAX_FRAME;
    uint8_t *payload = calloc(1, len + 1);
    uint8_t *wire = malloc(len + 1 + WF_WS_MAX_HEAD);
    char got[64];
    size_t n;

    (void)state;
    assert_non_null(payload);
    assert_non_null(wire);
    n = ws_client_frame(wire, 0x82, payload, len);
    ws_reader_run(wire, n, 65536, WF_WS_MAX_FRAME, WF_WS_MAX_MESSAGE, got,
                  sizeof(got));
    assert_string_equal(got, "B:1048576|");
    n = ws_client_frame(wire, 0x82, payload, len + 1);
    ws_reader_run(wire, n, 65536, WF_WS_MAX_FRAME, WF_WS_MAX_MESSAGE, got,
                  sizeof(got));
    assert_string_equal(got, "E:1009");
    free(payload);
    free(wire);
}

int
wf_test_ws_frame(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_accept_rfc),
        cmocka_unit_test(test_ws_parse_rfc_hello),
        cmocka_unit_test(test_ws_parse_bad),
        cmocka_unit_test(test_ws_parse_lengths),
        cmocka_unit_test(test_ws_frame_head),
        cmocka_unit_test(test_ws_utf8),
        cmocka_unit_test(test_ws_close_parse),
        cmocka_unit_test(test_ws_reader_messages),
        cmocka_unit_test(test_ws_reader_errors),
        cmocka_unit_test(test_ws_reader_large),
    };

    return cmocka_run_group_tests_name("ws_frame", tests, NULL, NULL);
}
