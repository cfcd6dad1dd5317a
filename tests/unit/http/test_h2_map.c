/* HTTP/2 header lists to the exchange's head and back (http/h2_map.c):
 * one row per request list (pseudo-headers, cookies, Host against
 * :authority, what RFC 9113 section 8 calls malformed), one per rendered
 * response head (connection-specific fields dropped, names lowercased). */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/h1_parse.h"
#include "http/h2_map.h"
#include "unit.h"

#define MAP_MAX_FIELDS 8

static const struct {
    const char *fields[MAP_MAX_FIELDS][2]; /* name, value; NULL ends */
    int field_rc; /* the first non-OK rc of a field, or OK */
    int head_rc;
    const char *head; /* the head written, when OK */
} req_rows[] = {
    {{{":method", "GET"},
      {":scheme", "https"},
      {":authority", "a.test"},
      {":path", "/x?y"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_OK,
     "GET /x?y HTTP/1.1\r\nHost: a.test\r\n\r\n"},
    /* Cookies split across fields are joined with "; " (8.2.3). */
    {{{":method", "GET"},
      {":scheme", "http"},
      {":path", "/"},
      {":authority", "h"},
      {"cookie", "a=1"},
      {"accept", "*/*"},
      {"cookie", "b=2"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_OK,
     "GET / HTTP/1.1\r\nHost: h\r\naccept: */*\r\ncookie: a=1; b=2\r\n\r\n"},
    /* :authority wins; the Host field is dropped (8.3.1). */
    {{{":method", "GET"},
      {":scheme", "http"},
      {":path", "/"},
      {":authority", "auth"},
      {"host", "other"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_OK,
     "GET / HTTP/1.1\r\nHost: auth\r\n\r\n"},
    /* Without :authority, Host is kept. */
    {{{":method", "POST"},
      {":scheme", "http"},
      {":path", "/p"},
      {"host", "h2.test"},
      {"content-length", "3"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_OK,
     "POST /p HTTP/1.1\r\nhost: h2.test\r\ncontent-length: 3\r\n\r\n"},
    /* CONNECT: :authority only. */
    {{{":method", "CONNECT"}, {":authority", "a:443"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_OK,
     "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"},
    {{{":method", "CONNECT"}, {":authority", "a:443"}, {":path", "/"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_INVALID,
     NULL},
    /* Missing :path, :method, :scheme. */
    {{{":method", "GET"}, {":scheme", "http"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_INVALID,
     NULL},
    {{{":scheme", "http"}, {":path", "/"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_INVALID,
     NULL},
    {{{":method", "GET"}, {":path", "/"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_INVALID,
     NULL},
    /* An empty :path. */
    {{{":method", "GET"}, {":scheme", "http"}, {":path", ""}},
     WF_H2_MAP_OK,
     WF_H2_MAP_INVALID,
     NULL},
    /* :protocol without CONNECT. */
    {{{":method", "GET"},
      {":scheme", "http"},
      {":path", "/"},
      {":protocol", "websocket"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_INVALID,
     NULL},
    /* Repeated, unknown and late pseudo-headers. */
    {{{":method", "GET"}, {":method", "GET"}}, WF_H2_MAP_INVALID, 0, NULL},
    {{{":method", "GET"}, {":status", "200"}}, WF_H2_MAP_INVALID, 0, NULL},
    {{{":method", "GET"}, {"accept", "*"}, {":path", "/"}},
     WF_H2_MAP_INVALID,
     0,
     NULL},
    /* Connection-specific fields (8.2.2), TE other than trailers. */
    {{{"connection", "keep-alive"}}, WF_H2_MAP_INVALID, 0, NULL},
    {{{"keep-alive", "5"}}, WF_H2_MAP_INVALID, 0, NULL},
    {{{"transfer-encoding", "chunked"}}, WF_H2_MAP_INVALID, 0, NULL},
    {{{"upgrade", "websocket"}}, WF_H2_MAP_INVALID, 0, NULL},
    {{{"proxy-connection", "x"}}, WF_H2_MAP_INVALID, 0, NULL},
    {{{"te", "gzip"}}, WF_H2_MAP_INVALID, 0, NULL},
    {{{":method", "GET"},
      {":scheme", "http"},
      {":path", "/"},
      {":authority", "a"},
      {"te", "trailers"}},
     WF_H2_MAP_OK,
     WF_H2_MAP_OK,
     "GET / HTTP/1.1\r\nHost: a\r\nte: trailers\r\n\r\n"},
    /* Uppercase names, CR/LF in values. */
    {{{"Accept", "*"}}, WF_H2_MAP_INVALID, 0, NULL},
    {{{"x", "a\r\nInjected: 1"}}, WF_H2_MAP_INVALID, 0, NULL},
};

/* Every row through one map, reset between them as a connection does
 * (wf_h2_map_req_reset() keeps the buffers, not what they held). */
static void
test_h2_map_req_rows(void **state)
{
    wf_h2_map_req_t m;

    wf_unused(state);
    wf_h2_map_req_init(&m, 16384);
    for (size_t i = 0; i < wf_nitems(req_rows); i++) {
        int rc = WF_H2_MAP_OK;
        char *out = NULL;
        size_t len = 0;

        wf_h2_map_req_reset(&m, 16384);
        for (size_t k = 0; k < MAP_MAX_FIELDS && req_rows[i].fields[k][0];
             k++) {
            const char *n = req_rows[i].fields[k][0];
            const char *v = req_rows[i].fields[k][1];

            rc = wf_h2_map_req_field(&m, (const uint8_t *)n, strlen(n),
                                     (const uint8_t *)v, strlen(v));
            if (rc != WF_H2_MAP_OK) {
                break;
            }
        }
        assert_int_equal(rc, req_rows[i].field_rc);
        if (rc == WF_H2_MAP_OK) {
            rc = wf_h2_map_req_head(&m, &out, &len);
            assert_int_equal(rc, req_rows[i].head_rc);
        }
        if (rc == WF_H2_MAP_OK) {
            assert_int_equal(len, strlen(req_rows[i].head));
            assert_memory_equal(out, req_rows[i].head, len);
        }
        free(out);
    }
    wf_h2_map_req_fini(&m);
}

/* Extended CONNECT (RFC 8441): the :protocol read back, and for
 * "websocket" the HTTP/1.1 handshake head, with the mux's key and no key
 * of the client's. */
static const struct {
    const char *fields[MAP_MAX_FIELDS][2];
    const char *protocol; /* wf_h2_map_req_protocol(), "" for none */
    int head_rc;
    const char *head; /* wf_h2_map_req_head_ws() with key "KEY" */
} ws_rows[] = {
    {{{":method", "CONNECT"},
      {":protocol", "websocket"},
      {":scheme", "https"},
      {":path", "/chat?x"},
      {":authority", "a.test"},
      {"sec-websocket-version", "13"},
      {"sec-websocket-key", "client-key"},
      {"origin", "o"}},
     "websocket",
     WF_H2_MAP_OK,
     "GET /chat?x HTTP/1.1\r\nHost: a.test\r\nsec-websocket-version: "
     "13\r\norigin: o\r\nUpgrade: websocket\r\nConnection: "
     "Upgrade\r\nSec-WebSocket-Key: KEY\r\n\r\n"},
    /* :protocol needs :scheme and :path (RFC 8441 4). */
    {{{":method", "CONNECT"},
      {":protocol", "websocket"},
      {":authority", "a.test"}},
     "websocket",
     WF_H2_MAP_INVALID,
     NULL},
    /* Only with CONNECT. */
    {{{":method", "GET"},
      {":protocol", "websocket"},
      {":scheme", "http"},
      {":path", "/"},
      {":authority", "a"}},
     "websocket",
     WF_H2_MAP_INVALID,
     NULL},
    /* A plain request has none. */
    {{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}},
     "",
     WF_H2_MAP_OK,
     "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: "
     "Upgrade\r\nSec-WebSocket-Key: KEY\r\n\r\n"},
};

static void
test_h2_map_req_ws_rows(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(ws_rows); i++) {
        wf_h2_map_req_t m;
        wf_str_t proto;
        char *out = NULL;
        size_t len = 0;
        int rc;

        wf_h2_map_req_init(&m, 16384);
        for (size_t k = 0; k < MAP_MAX_FIELDS && ws_rows[i].fields[k][0]; k++) {
            const char *n = ws_rows[i].fields[k][0];
            const char *v = ws_rows[i].fields[k][1];

            assert_int_equal(wf_h2_map_req_field(&m, (const uint8_t *)n,
                                                 strlen(n), (const uint8_t *)v,
                                                 strlen(v)),
                             WF_H2_MAP_OK);
        }
        proto = wf_h2_map_req_protocol(&m);
        assert_int_equal(proto.len, strlen(ws_rows[i].protocol));
        assert_memory_equal(proto.data != NULL ? proto.data : "",
                            ws_rows[i].protocol, proto.len);
        rc = wf_h2_map_req_head_ws(&m, wf_str_make("KEY", 3), &out, &len);
        assert_int_equal(rc, ws_rows[i].head_rc);
        if (rc == WF_H2_MAP_OK) {
            assert_int_equal(len, strlen(ws_rows[i].head));
            assert_memory_equal(out, ws_rows[i].head, len);
        }
        free(out);
        wf_h2_map_req_fini(&m);
    }
}

/* The head parses into what routes read, with $host from :authority. */
static void
test_h2_map_req_parses(void **state)
{
    static const char *f[][2] = {
        {":method", "GET"},  {":scheme", "http"}, {":authority", "A.test:8"},
        {":path", "/p?q=1"}, {"cookie", "a=1"},   {"cookie", "b=2"}};
    wf_h1_limits_t lim = {8192, 8192, 32768, true};
    wf_h1_head_t h;
    wf_h2_map_req_t m;
    char *out = NULL;
    size_t len = 0;

    wf_unused(state);
    wf_h2_map_req_init(&m, 16384);
    for (size_t i = 0; i < wf_nitems(f); i++) {
        assert_int_equal(
            wf_h2_map_req_field(&m, (const uint8_t *)f[i][0], strlen(f[i][0]),
                                (const uint8_t *)f[i][1], strlen(f[i][1])),
            WF_H2_MAP_OK);
    }
    assert_int_equal(wf_h2_map_req_head(&m, &out, &len), WF_H2_MAP_OK);
    wf_h1_head_init(&h);
    assert_int_equal(wf_h1_parse_head(&h, out, len, &lim), WF_OK);
    assert_int_equal(h.method_id, WF_HTTP_GET);
    assert_int_equal(h.path.len, 2);
    assert_int_equal(h.query.len, 3);
    assert_int_equal(h.host.len, 8);
    assert_memory_equal(h.host.data, "A.test:8", 8);
    assert_non_null(wf_h1_head_find(&h, wf_string("Cookie")));
    assert_int_equal(h.content_length, -1);
    free(out);
    wf_h2_map_req_fini(&m);
}

/* A list over max (names + values + 32 each): WF_H2_MAP_TOO_BIG. */
static void
test_h2_map_req_too_big(void **state)
{
    char v[200];
    wf_h2_map_req_t m;
    int rc = WF_H2_MAP_OK;
    unsigned n = 0;

    wf_unused(state);
    memset(v, 'v', sizeof(v));
    wf_h2_map_req_init(&m, 4096);
    while (rc == WF_H2_MAP_OK && n < 100) {
        rc = wf_h2_map_req_field(&m, (const uint8_t *)"x-a", 3,
                                 (const uint8_t *)v, sizeof(v));
        n++;
    }
    assert_int_equal(rc, WF_H2_MAP_TOO_BIG);
    assert_int_equal(n, 4096 / (3 + 200 + 32) + 1);
    wf_h2_map_req_fini(&m);
}

static const struct {
    const char *head;
    const char *fields[MAP_MAX_FIELDS][2]; /* expected, in order */
} resp_rows[] = {
    {"HTTP/1.1 200 OK\r\nServer: Wharf\r\nContent-Length: 5\r\n"
     "Connection: keep-alive\r\n\r\n",
     {{":status", "200"}, {"server", "Wharf"}, {"content-length", "5"}}},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: t=5\r\n"
     "Upgrade: h2c\r\nX-A:  b \r\n\r\n",
     {{":status", "200"}, {"x-a", "b"}}},
    {"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n",
     {{":status", "304"}, {"etag", "\"e\""}}},
};

static void
test_h2_map_resp_rows(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(resp_rows); i++) {
        char *head = strdup(resp_rows[i].head);
        size_t len = strlen(head);
        wf_h2_map_field_t f[MAP_MAX_FIELDS + 2];
        size_t cap = wf_h2_map_resp_count(head, len) + 1;
        size_t n = 0;

        assert_true(cap <= wf_nitems(f));
        n = wf_h2_map_resp(head, len, f, cap);
        for (size_t k = 0; k < MAP_MAX_FIELDS && resp_rows[i].fields[k][0];
             k++) {
            assert_true(k < n);
            assert_int_equal(f[k].nlen, strlen(resp_rows[i].fields[k][0]));
            assert_memory_equal(f[k].name, resp_rows[i].fields[k][0],
                                f[k].nlen);
            assert_int_equal(f[k].vlen, strlen(resp_rows[i].fields[k][1]));
            assert_memory_equal(f[k].value, resp_rows[i].fields[k][1],
                                f[k].vlen);
            if (k + 1 == MAP_MAX_FIELDS || !resp_rows[i].fields[k + 1][0]) {
                assert_int_equal(n, k + 1);
            }
        }
        free(head);
    }
    assert_int_equal(wf_h2_map_resp((char[]){"garbage\r\n"}, 9, NULL, 0), 0);
}

int
wf_test_h2_map(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h2_map_req_rows),
        cmocka_unit_test(test_h2_map_req_ws_rows),
        cmocka_unit_test(test_h2_map_req_parses),
        cmocka_unit_test(test_h2_map_req_too_big),
        cmocka_unit_test(test_h2_map_resp_rows),
    };

    return cmocka_run_group_tests_name("h2_map", tests, NULL, NULL);
}
