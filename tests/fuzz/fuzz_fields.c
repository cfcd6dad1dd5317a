/* libFuzzer target for the small parsers of untrusted request fields: the
 * request path (wf_uri_normalize), Range, HTTP dates, If-None-Match,
 * If-Range, X-Forwarded-For addresses and WebSocket frame heads.  The
 * first byte picks the parser; each call also checks the invariants the
 * callers rely on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/cond.h"
#include "http/forwarded.h"
#include "http/range.h"
#include "http/uri.h"
#include "http/ws_scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A normalised path starts with '/', holds no NUL and no ".." segment:
 * appended to a share root it cannot leave the root. */
static void
fuzz_uri(const char *p, size_t n)
{
    char *out = malloc(n + 1);
    size_t len = 0;

    if (out == NULL || n == 0 || p[0] != '/') {
        free(out);
        return;
    }
    if (wf_uri_normalize(p, n, out, &len) == WF_OK) {
        if (len == 0 || len > n || out[0] != '/' || memchr(out, 0, len)) {
            abort();
        }
        for (size_t i = 0; i + 2 <= len; i++) {
            bool seg_start = out[i] == '/';
            bool dotdot = i + 3 <= len && out[i + 1] == '.' && out[i + 2] == '.'
                          && (i + 3 == len || out[i + 3] == '/');

            if (seg_start && dotdot) {
                abort();
            }
        }
    }
    free(out);
}

static void
fuzz_range(const char *p, size_t n)
{
    uint64_t size = n > 0 ? (uint64_t)(uint8_t)p[0] * 977 : 0;
    wf_range_t r;

    if (wf_range_parse(wf_str_make(p, n), size, &r) == WF_OK
        && (r.start > r.end || r.end >= size)) {
        abort(); /* a 206 must name bytes that exist */
    }
}

static void
fuzz_validators(const char *p, size_t n)
{
    static const char etag[] = "\"5f3a1b2c-400\"";
    wf_str_t s = wf_str_make(p, n);
    wf_str_t tag = wf_str_make(etag, sizeof(etag) - 1);
    time_t t;

    if (wf_http_date_parse(s, &t) == WF_OK) {
        char buf[WF_HTTP_DATE_LEN];

        wf_http_date_format(t, buf);
    }
    (void)wf_etag_list_match(s, tag);
    (void)wf_if_range_ok(s, tag, 0x5f3a1b2c);
    (void)wf_cond_not_modified(s, s, tag, 0x5f3a1b2c);
}

static void
fuzz_forwarded(const char *p, size_t n)
{
    wf_sockaddr_t sa;

    if (wf_forwarded_addr_parse(wf_str_make(p, n), &sa)
        && sa.sa.sa_family != AF_INET && sa.sa.sa_family != AF_INET6) {
        abort();
    }
}

/* WebSocket frame scanning (the tunnel's): the same stream cut anywhere
 * finds the same Close, at the same point. */
static void
fuzz_ws_scan(const char *p, size_t n)
{
    wf_ws_scan_t whole;
    wf_ws_scan_t cut;
    size_t at = n > 0 ? (uint8_t)p[0] % (n + 1) : 0;

    wf_ws_scan_init(&whole);
    wf_ws_scan_init(&cut);
    (void)wf_ws_scan(&whole, p, n);
    (void)wf_ws_scan(&cut, p, at);
    (void)wf_ws_scan(&cut, p + at, n - at);
    if (whole.closed != cut.closed || whole.skip != cut.skip
        || whole.hlen != cut.hlen || whole.hlen > sizeof(whole.hdr)) {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static void (*const parsers[])(const char *, size_t) = {
        fuzz_uri, fuzz_range, fuzz_validators, fuzz_forwarded, fuzz_ws_scan};

    if (size == 0) {
        return 0;
    }
    parsers[data[0] % wf_nitems(parsers)]((const char *)data + 1, size - 1);
    return 0;
}
