/* The back side's h1 <-> h2 mapping (http/proxy_h2_map.c), table-driven:
 * one row per request head proxy.c may serialise (pseudo-headers, Host to
 * :authority, hop-by-hop fields and TE dropped, names lowercased, heads
 * that are none), one per backend response field list (:status,
 * content-length, fields Wharf writes itself or response_headers
 * replace, trailers). */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/proxy_h2_map.h"
#include "unit.h"

#define PXM_MAX 8

static const struct {
    const char *head;
    bool tls;
    int n; /* entries, or -1 */
    const char *nv[PXM_MAX][2];
} req_rows[] = {
    {"GET /x?y=1 HTTP/1.1\r\nHost: a.test\r\nX-Foo: Bar\r\n\r\n",
     false,
     5,
     {{":method", "GET"},
      {":scheme", "http"},
      {":authority", "a.test"},
      {":path", "/x?y=1"},
      {"x-foo", "Bar"}}},
    /* TLS: https; framing of a chunked body and connection fields go. */
    {"POST /p HTTP/1.1\r\nHost: h:8443\r\nTransfer-Encoding: chunked\r\n"
     "Connection: close\r\nKeep-Alive: 5\r\nUpgrade: foo\r\n"
     "Proxy-Connection: x\r\nHTTP2-Settings: AAA\r\n"
     "Content-Type: a/b\r\n\r\n",
     true,
     5,
     {{":method", "POST"},
      {":scheme", "https"},
      {":authority", "h:8443"},
      {":path", "/p"},
      {"content-type", "a/b"}}},
    /* TE: only "trailers" passes (RFC 9113 8.2.2); lengths pass. */
    {"PUT / HTTP/1.1\r\nhost: h\r\nTE: trailers\r\nContent-Length: 3\r\n"
     "\r\n",
     false,
     6,
     {{":method", "PUT"},
      {":scheme", "http"},
      {":authority", "h"},
      {":path", "/"},
      {"te", "trailers"},
      {"content-length", "3"}}},
    {"GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n",
     false,
     4,
     {{":method", "GET"},
      {":scheme", "http"},
      {":authority", "h"},
      {":path", "/"}}},
    /* Value whitespace is trimmed. */
    {"GET * HTTP/1.1\r\nHost:  h \r\nA:\t v \t\r\n\r\n",
     false,
     5,
     {{":method", "GET"},
      {":scheme", "http"},
      {":authority", "h"},
      {":path", "*"},
      {"a", "v"}}},
    /* Not heads: no Host, no request line, a line without ':'. */
    {"GET / HTTP/1.1\r\nX: y\r\n\r\n", false, -1, {{NULL, NULL}}},
    {"GET\r\nHost: h\r\n\r\n", false, -1, {{NULL, NULL}}},
    {"GET / HTTP/1.1\r\nHost: h\r\nbroken\r\n\r\n", false, -1, {{NULL, NULL}}},
    {"", false, -1, {{NULL, NULL}}},
};

static bool
nv_is(const nghttp2_nv *nv, const char *name, const char *value)
{
    return nv->namelen == strlen(name) && nv->valuelen == strlen(value)
           && memcmp(nv->name, name, nv->namelen) == 0
           && memcmp(nv->value, value, nv->valuelen) == 0;
}

static void
test_proxy_h2_req_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < wf_nitems(req_rows); i++) {
        char *head = strdup(req_rows[i].head);
        nghttp2_nv nv[PXM_MAX + 2];
        int n = wf_proxy_h2_req_map(head, strlen(head), req_rows[i].tls, nv,
                                    PXM_MAX);

        if (n != req_rows[i].n) {
            fail_msg("row %zu: %d entries, expected %d", i, n, req_rows[i].n);
        }
        for (int k = 0; k < n; k++) {
            if (!nv_is(&nv[k], req_rows[i].nv[k][0], req_rows[i].nv[k][1])) {
                fail_msg("row %zu entry %d: %.*s: %.*s", i, k,
                         (int)nv[k].namelen, nv[k].name, (int)nv[k].valuelen,
                         nv[k].value);
            }
        }
        free(head);
    }
}

static void
test_proxy_h2_req_too_many(void **state)
{
    char head[4096];
    size_t len = (size_t)sprintf(head, "GET / HTTP/1.1\r\nHost: h\r\n");
    nghttp2_nv nv[8];

    (void)state;
    for (int i = 0; i < 10; i++) {
        len += (size_t)sprintf(head + len, "F%d: v\r\n", i);
    }
    len += (size_t)sprintf(head + len, "\r\n");
    assert_int_equal(wf_proxy_h2_req_map(head, len, false, nv, 8), -1);
}

#define RESP_MAX 6

static const struct {
    bool trailer;
    const char *fields[RESP_MAX][2]; /* NULL ends */
    int rc;                          /* of the last field given */
    unsigned status;
    int64_t content_length;
    const char *lines;
} resp_rows[] = {
    {false,
     {{":status", "200"}, {"content-type", "a/b"}, {"x-y", "1"}},
     WF_OK,
     200,
     -1,
     "content-type: a/b\r\nx-y: 1\r\n"},
    /* Length taken, not rendered (the mux writes it); Server, Date and
     * hop-by-hop fields are Wharf's or nobody's; "x-drop" is replaced
     * by response_headers. */
    {false,
     {{":status", "404"},
      {"content-length", "12"},
      {"server", "s"},
      {"date", "d"},
      {"connection", "close"},
      {"x-drop", "1"}},
     WF_OK,
     404,
     12,
     ""},
    {false, {{":status", "20"}}, WF_ERROR, 0, -1, ""},
    {false, {{":status", "2x0"}}, WF_ERROR, 0, -1, ""},
    {false, {{":path", "/"}}, WF_ERROR, 0, -1, ""},
    {false,
     {{":status", "200"}, {"content-length", "1"}, {"content-length", "2"}},
     WF_ERROR,
     200,
     1,
     ""},
    {false,
     {{":status", "200"}, {"content-length", "-1"}},
     WF_ERROR,
     200,
     -1,
     ""},
    /* Trailers: rendered the same; no pseudo-header. */
    {true,
     {{"grpc-status", "0"}, {"grpc-message", "ok"}},
     WF_OK,
     0,
     -1,
     "grpc-status: 0\r\ngrpc-message: ok\r\n"},
    {true, {{":status", "200"}}, WF_ERROR, 0, -1, ""},
};

static void
test_proxy_h2_resp_rows(void **state)
{
    const wf_str_t drop[] = {wf_string("x-drop")};

    (void)state;
    for (size_t i = 0; i < wf_nitems(resp_rows); i++) {
        wf_proxy_h2_fields_t f = {.content_length = -1};
        int rc = WF_OK;

        for (size_t k = 0; k < RESP_MAX && resp_rows[i].fields[k][0] != NULL;
             k++) {
            const char *n = resp_rows[i].fields[k][0];
            const char *v = resp_rows[i].fields[k][1];

            rc = wf_proxy_h2_resp_field(&f, wf_str_make(n, strlen(n)),
                                        wf_str_make(v, strlen(v)),
                                        resp_rows[i].trailer, drop, 1);
        }
        if (rc != resp_rows[i].rc || f.status != resp_rows[i].status
            || f.content_length != resp_rows[i].content_length
            || f.len != strlen(resp_rows[i].lines)
            || (f.len > 0 && memcmp(f.data, resp_rows[i].lines, f.len) != 0)) {
            fail_msg("row %zu: rc %d status %u length %lld lines \"%.*s\"", i,
                     rc, f.status, (long long)f.content_length, (int)f.len,
                     f.data != NULL ? f.data : "");
        }
        wf_proxy_h2_fields_fini(&f);
    }
}

int
wf_test_proxy_h2_map(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_h2_req_rows),
        cmocka_unit_test(test_proxy_h2_req_too_many),
        cmocka_unit_test(test_proxy_h2_resp_rows),
    };

    return cmocka_run_group_tests_name("proxy_h2_map", tests, NULL, NULL);
}
