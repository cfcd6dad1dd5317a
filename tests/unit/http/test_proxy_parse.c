/* Tests of the proxy's message syntax (http/proxy_parse.h): the response
 * head parser (a table of accepted and refused heads, each also fed one
 * byte at a time) and the request head serialiser (client heads parsed by
 * the real request parser, then written for a backend). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/h1_parse.h"
#include "http/proxy_parse.h"
#include "unit.h"

#define IN(s) .in = (s), .len = sizeof(s) - 1

typedef struct pp_case {
    const char *name;
    const char *in;
    size_t len;
    int rc;
    unsigned status;
    unsigned version;
    int64_t cl; /* checked when rc is WF_OK */
    bool chunked;
    bool keep_alive;
    unsigned nheaders;
} pp_case_t;

static const pp_case_t pp_cases[] = {
    {"ok", IN("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"), WF_OK, 200, 11,
     2, false, true, 1},
    {"no_reason", IN("HTTP/1.1 204\r\n\r\n"), WF_OK, 204, 11, -1, false, true,
     0},
    {"empty_reason", IN("HTTP/1.1 404 \r\n\r\n"), WF_OK, 404, 11, -1, false,
     true, 0},
    {"http10", IN("HTTP/1.0 200 OK\r\n\r\n"), WF_OK, 200, 10, -1, false, false,
     0},
    {"http10_keep_alive",
     IN("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n"), WF_OK, 200, 10,
     -1, false, true, 1},
    {"close", IN("HTTP/1.1 200 OK\r\nConnection: x, close\r\n\r\n"), WF_OK, 200,
     11, -1, false, false, 1},
    {"chunked", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"),
     WF_OK, 200, 11, -1, true, true, 1},
    {"same_lengths",
     IN("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
     WF_OK, 200, 11, 5, false, true, 2},
    {"bare_lf", IN("HTTP/1.1 200 OK\nA: b\n\n"), WF_OK, 200, 11, -1, false,
     true, 1},
    {"ows_trimmed", IN("HTTP/1.1 200 OK\r\nA:  \t b \t\r\n\r\n"), WF_OK, 200,
     11, -1, false, true, 1},
    {"obs_text", IN("HTTP/1.1 200 \xc3\xa9\r\nA: \xff\r\n\r\n"), WF_OK, 200, 11,
     -1, false, true, 1},
    {"status_999", IN("HTTP/1.1 999 X\r\n\r\n"), WF_OK, 999, 11, -1, false,
     true, 0},
    {"interim", IN("HTTP/1.1 100 Continue\r\n\r\n"), WF_OK, 100, 11, -1, false,
     true, 0},
    {"partial", IN("HTTP/1.1 200 OK\r\nA: b\r\n"), WF_AGAIN},
    {"garbage", IN("garbage\r\n\r\n"), WF_ERROR},
    {"http2", IN("HTTP/2.0 200 OK\r\n\r\n"), WF_ERROR},
    {"lower_http", IN("http/1.1 200 OK\r\n\r\n"), WF_ERROR},
    {"status_099", IN("HTTP/1.1 099 X\r\n\r\n"), WF_ERROR},
    {"status_2_digits", IN("HTTP/1.1 20 X\r\n\r\n"), WF_ERROR},
    {"status_4_digits", IN("HTTP/1.1 2000 X\r\n\r\n"), WF_ERROR},
    {"no_space", IN("HTTP/1.1200 OK\r\n\r\n"), WF_ERROR},
    {"no_colon", IN("HTTP/1.1 200 OK\r\nBad Field\r\n\r\n"), WF_ERROR},
    {"space_before_colon", IN("HTTP/1.1 200 OK\r\nA : b\r\n\r\n"), WF_ERROR},
    {"empty_name", IN("HTTP/1.1 200 OK\r\n: b\r\n\r\n"), WF_ERROR},
    {"obs_fold", IN("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"), WF_ERROR},
    {"bare_cr", IN("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n"), WF_ERROR},
    {"nul", IN("HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n"), WF_ERROR},
    {"cr_in_reason", IN("HTTP/1.1 200 O\rK\r\n\r\n"), WF_ERROR},
    {"cr_in_name", IN("HTTP/1.1 200 OK\r\nA\rB: c\r\n\r\n"), WF_ERROR},
    {"cr_line", IN("HTTP/1.1 200 OK\r\n\r\r\n\r\n"), WF_ERROR},
    {"nul_in_name", IN("HTTP/1.1 200 OK\r\nA\0: c\r\n\r\n"), WF_ERROR},
    {"ctl", IN("HTTP/1.1 200 OK\r\nA: b\x01\r\n\r\n"), WF_ERROR},
    {"two_lengths",
     IN("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
     WF_ERROR},
    {"length_list", IN("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n"),
     WF_ERROR},
    {"length_sign", IN("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n"),
     WF_ERROR},
    {"length_huge",
     IN("HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n"),
     WF_ERROR},
    {"te_and_cl",
     IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        "Content-Length: 1\r\n\r\n"),
     WF_ERROR},
    {"te_gzip", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
     WF_ERROR},
    {"te_gzip_chunked",
     IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
     WF_ERROR},
    {"te_twice",
     IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"),
     WF_ERROR},
};

static void
pp_check(const pp_case_t *c, const wf_proxy_resp_t *h, int rc)
{
    if (rc != c->rc) {
        fail_msg("%s: rc %d, expected %d", c->name, rc, c->rc);
    }
    if (rc != WF_OK) {
        return;
    }
    assert_int_equal(h->status, c->status);
    assert_int_equal(h->version, c->version);
    assert_int_equal(h->content_length, c->cl);
    assert_int_equal(h->chunked, c->chunked);
    assert_int_equal(h->keep_alive, c->keep_alive);
    assert_int_equal(h->nheaders, c->nheaders);
    assert_int_equal(h->head_len, c->len);
}

static void
pp_test_table(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(pp_cases); i++) {
        const pp_case_t *c = &pp_cases[i];
        wf_proxy_resp_t h;
        int rc = WF_AGAIN;

        memset(&h, 0, sizeof(h));
        pp_check(c, &h, wf_proxy_resp_parse(&h, c->in, c->len, 16384));
        /* The same bytes arriving one at a time. */
        memset(&h, 0, sizeof(h));
        for (size_t n = 1; n <= c->len && rc == WF_AGAIN; n++) {
            rc = wf_proxy_resp_parse(&h, c->in, n, 16384);
        }
        pp_check(c, &h, rc);
    }
}

static void
pp_test_fields_and_body_start(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\n"
                             "Set-Cookie: b=2\r\nX-A:v\r\n\r\nBODY";
    wf_proxy_resp_t h;

    wf_unused(state);
    memset(&h, 0, sizeof(h));
    assert_int_equal(wf_proxy_resp_parse(&h, in, sizeof(in) - 1, 16384), WF_OK);
    assert_int_equal(h.nheaders, 3);
    assert_true(wf_str_eq(h.headers[1].value, wf_string("b=2")));
    assert_true(wf_str_eq(h.headers[2].name, wf_string("X-A")));
    assert_true(wf_str_eq(h.headers[2].value, wf_string("v")));
    assert_string_equal(in + h.head_len, "BODY");
}

static void
pp_test_limits(void **state)
{
    char big[512];
    wf_proxy_resp_t h;
    size_t n;

    wf_unused(state);
    n = (size_t)snprintf(big, sizeof(big),
                         "HTTP/1.1 200 OK\r\nA: %0300d\r\n\r\n", 0);
    memset(&h, 0, sizeof(h));
    assert_int_equal(wf_proxy_resp_parse(&h, big, n, 256), WF_ERROR);
    memset(&h, 0, sizeof(h));
    assert_int_equal(wf_proxy_resp_parse(&h, big, 200, 256), WF_AGAIN);
    memset(&h, 0, sizeof(h));
    assert_int_equal(wf_proxy_resp_parse(&h, big, n, 512), WF_OK);
}

static void
pp_test_too_many_fields(void **state)
{
    size_t cap = 32 + (WF_H1_MAX_HEADERS + 1) * 8;
    char *in = malloc(cap);
    size_t n = (size_t)sprintf(in, "HTTP/1.1 200 OK\r\n");
    wf_proxy_resp_t h;

    wf_unused(state);
    for (int i = 0; i < WF_H1_MAX_HEADERS; i++) {
        n += (size_t)sprintf(in + n, "A: b\r\n");
    }
    memcpy(in + n, "\r\n", 2);
    memset(&h, 0, sizeof(h));
    assert_int_equal(wf_proxy_resp_parse(&h, in, n + 2, 16384), WF_OK);
    n += (size_t)sprintf(in + n, "A: b\r\n\r\n");
    memset(&h, 0, sizeof(h));
    assert_int_equal(wf_proxy_resp_parse(&h, in, n, 16384), WF_ERROR);
    free(in);
}

static void
pp_test_hop_by_hop(void **state)
{
    wf_str_t conn[] = {wf_string("keep-alive, X-Private"), wf_string("y")};

    wf_unused(state);
    assert_true(wf_proxy_hop_by_hop(wf_string("Connection"), NULL, 0));
    assert_true(wf_proxy_hop_by_hop(wf_string("KEEP-ALIVE"), NULL, 0));
    assert_true(wf_proxy_hop_by_hop(wf_string("te"), NULL, 0));
    assert_true(wf_proxy_hop_by_hop(wf_string("Upgrade"), NULL, 0));
    assert_true(wf_proxy_hop_by_hop(wf_string("Transfer-Encoding"), NULL, 0));
    assert_true(wf_proxy_hop_by_hop(wf_string("x-private"), conn, 2));
    assert_true(wf_proxy_hop_by_hop(wf_string("Y"), conn, 2));
    assert_false(wf_proxy_hop_by_hop(wf_string("X-Private"), NULL, 0));
    assert_false(wf_proxy_hop_by_hop(wf_string("Cookie"), conn, 2));
    assert_false(
        wf_proxy_hop_by_hop(wf_string("Proxy-Authorization"), conn, 2));
}

/* ---- the request serialiser --------------------------------------------- */

static const wf_h1_limits_t pp_lim = {8192, 8192, 65536, false};

/* Parses client request in, writes it for a backend with o; returns the
 * malloc'd head (NUL-terminated). */
static char *
pp_write(const char *in, const wf_proxy_req_opts_t *o)
{
    static wf_h1_head_t h;
    size_t cap, n;
    char *out;

    wf_h1_head_init(&h);
    assert_int_equal(wf_h1_parse_head(&h, in, strlen(in), &pp_lim), WF_OK);
    cap = wf_proxy_req_head_size(&h, o);
    out = malloc(cap + 1);
    n = wf_proxy_req_head_write(out, &h, o);
    assert_true(n <= cap);
    out[n] = '\0';
    return out;
}

typedef struct pp_req_case {
    const char *name;
    const char *in;
    wf_proxy_req_opts_t o;
    const char *out;
} pp_req_case_t;

static const pp_req_case_t pp_req_cases[] = {
    {"websocket_upgrade",
     "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
     "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: k\r\n"
     "Sec-WebSocket-Version: 13\r\n\r\n",
     {.keep_alive = false, .upgrade = true},
     "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n"
     "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
     "Connection: upgrade\r\n\r\n"},
    {"simple",
     "GET /a?b HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n",
     {.keep_alive = false},
     "GET /a?b HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nConnection: close\r\n\r\n"},
    {"keep_alive",
     "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
     {.keep_alive = true},
     "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
    {"hop_by_hop",
     "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-P\r\n"
     "X-P: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\n"
     "Proxy-Connection: x\r\nExpect: 100-continue\r\nX-K: k\r\n\r\n",
     {.keep_alive = false},
     "GET / HTTP/1.1\r\nHost: h\r\nX-K: k\r\nConnection: close\r\n\r\n"},
    {"content_length",
     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0004\r\n\r\n",
     {.keep_alive = true},
     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n"},
    {"chunked",
     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
     {.keep_alive = true},
     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"absolute_form",
     "GET http://auth:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
     {.keep_alive = true},
     "GET /p?q HTTP/1.1\r\nHost: auth:81\r\n\r\n"},
    {"no_host_http10",
     "GET / HTTP/1.0\r\n\r\n",
     {.keep_alive = true},
     "GET / HTTP/1.1\r\nHost: \r\n\r\n"},
    {"host_override",
     "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
     {.host = wf_string("b.internal"), .keep_alive = true},
     "GET / HTTP/1.1\r\nHost: b.internal\r\n\r\n"},
    {"forwarding_dropped",
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n"
     "forwarded: for=x\r\nX-Forwarded-Proto: https\r\n"
     "X-Forwarded-Host: e\r\n\r\n",
     {.drop_forwarding = true,
      .keep_alive = true,
      .extra = wf_string("X-Forwarded-For: 127.0.0.1\r\n")},
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n"},
    {"forwarding_kept",
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
     {.keep_alive = true, .extra = wf_string("X-Forwarded-For: 127.0.0.1\r\n")},
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n"
     "X-Forwarded-For: 127.0.0.1\r\n\r\n"},
    {"options_star",
     "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
     {.keep_alive = true},
     "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"},
};

/* A 101's Upgrade, as the tunnel checks it. */
static void
pp_test_resp_token(void **state)
{
    static const char in[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: foo, WebSocket\r\nConnection: x\r\n\r\n";
    wf_proxy_resp_t h = {0};

    wf_unused(state);
    assert_int_equal(wf_proxy_resp_parse(&h, in, sizeof(in) - 1, 4096), WF_OK);
    assert_true(wf_proxy_resp_has_token(&h, wf_string("upgrade"),
                                        wf_string("websocket")));
    assert_false(wf_proxy_resp_has_token(&h, wf_string("connection"),
                                         wf_string("upgrade")));
    assert_false(
        wf_proxy_resp_has_token(&h, wf_string("upgrade"), wf_string("h2c")));
}

static void
pp_test_request_heads(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(pp_req_cases); i++) {
        const pp_req_case_t *c = &pp_req_cases[i];
        char *out = pp_write(c->in, &c->o);

        if (strcmp(out, c->out) != 0) {
            fail_msg("%s: wrote\n%s\nexpected\n%s", c->name, out, c->out);
        }
        free(out);
    }
}

/* What the serialiser writes, the request parser reads back as the same
 * request (so a backend with Wharf's parser sees no ambiguity). */
static void
pp_test_request_round_trip(void **state)
{
    static const char in[] = "PUT /x%20y?q=1 HTTP/1.1\r\nHost: h:8\r\n"
                             "Content-Length: 3\r\nA: 1\r\nA: 2\r\n\r\n";
    wf_proxy_req_opts_t o = {.keep_alive = false};
    char *out = pp_write(in, &o);
    wf_h1_head_t h;

    wf_unused(state);
    wf_h1_head_init(&h);
    assert_int_equal(wf_h1_parse_head(&h, out, strlen(out), &pp_lim), WF_OK);
    assert_true(wf_str_eq(h.method, wf_string("PUT")));
    assert_true(wf_str_eq(h.path, wf_string("/x%20y")));
    assert_true(wf_str_eq(h.query, wf_string("q=1")));
    assert_int_equal(h.content_length, 3);
    assert_false(h.keep_alive);
    assert_int_equal(h.nheaders, 5);
    free(out);
}

int
wf_test_proxy_parse(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(pp_test_table),
        cmocka_unit_test(pp_test_fields_and_body_start),
        cmocka_unit_test(pp_test_limits),
        cmocka_unit_test(pp_test_too_many_fields),
        cmocka_unit_test(pp_test_hop_by_hop),
        cmocka_unit_test(pp_test_request_heads),
        cmocka_unit_test(pp_test_resp_token),
        cmocka_unit_test(pp_test_request_round_trip),
    };

    return cmocka_run_group_tests_name("proxy_parse", tests, NULL, NULL);
}
