/* libFuzzer target for the proxy's message syntax (http/proxy_parse.h).
 * The first byte picks the check:
 * - even: the input is a backend's response head; whatever the parser
 *   accepts must keep its invariants (a status in 100..999, fields inside
 *   the buffer with token names and no CR, LF or NUL in values, a head no
 *   longer than the input), and feeding the same bytes in two parts (split
 *   where the second byte says) must give the same answer;
 * - odd: the input is a client's request head; when the request parser
 *   accepts it, the head the proxy writes for a backend must parse again
 *   with the same method, path, query and framing (no request the proxy
 *   sends can be read two ways). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/h1_parse.h"
#include "http/proxy_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX 16384

static bool
fuzz_in(const char *buf, size_t len, wf_str_t s)
{
    return s.len == 0 || (s.data >= buf && s.data + s.len <= buf + len);
}

static void
fuzz_resp_check(const wf_proxy_resp_t *h, const char *buf, size_t len)
{
    if (h->status < 100 || h->status > 999 || h->head_len > len
        || h->nheaders > WF_H1_MAX_HEADERS
        || (h->chunked && h->content_length >= 0)) {
        abort();
    }
    for (unsigned i = 0; i < h->nheaders; i++) {
        const wf_h1_header_t *f = &h->headers[i];

        if (f->name.len == 0 || !fuzz_in(buf, len, f->name)
            || !fuzz_in(buf, len, f->value)
            || memchr(f->name.data, ':', f->name.len) != NULL
            || memchr(f->value.data, '\r', f->value.len) != NULL
            || memchr(f->value.data, '\n', f->value.len) != NULL
            || memchr(f->value.data, '\0', f->value.len) != NULL) {
            abort();
        }
    }
}

static void
fuzz_resp(const char *buf, size_t len, size_t split)
{
    wf_proxy_resp_t a, b;
    int rc, rc2;

    memset(&a, 0, sizeof(a));
    rc = wf_proxy_resp_parse(&a, buf, len, FUZZ_MAX);
    if (rc == WF_OK) {
        fuzz_resp_check(&a, buf, len);
    }
    memset(&b, 0, sizeof(b));
    split = split < len ? split : len;
    rc2 = wf_proxy_resp_parse(&b, buf, split, FUZZ_MAX);
    if (rc2 == WF_AGAIN) {
        rc2 = wf_proxy_resp_parse(&b, buf, len, FUZZ_MAX);
    } else if (rc2 == WF_OK) {
        return; /* a whole head before the split: a shorter message */
    }
    if (rc2 != rc
        || (rc == WF_OK
            && (a.status != b.status || a.head_len != b.head_len
                || a.nheaders != b.nheaders))) {
        abort();
    }
}

static void
fuzz_req(const char *buf, size_t len)
{
    static const wf_h1_limits_t lim = {8192, 8192, 65536, false};
    static wf_h1_head_t h, back;
    wf_proxy_req_opts_t o = {.keep_alive = (len & 1) != 0,
                             .drop_forwarding = (len & 2) != 0};
    char *out;
    size_t n;

    wf_h1_head_init(&h);
    /* (Host, the framing and Connection may add 3 fields: past the
     * parser's field limit the backend would answer 431, not misread.) */
    if (wf_h1_parse_head(&h, buf, len, &lim) != WF_OK
        || h.method_id == WF_HTTP_CONNECT
        || h.nheaders + 3 > WF_H1_MAX_HEADERS) {
        return;
    }
    out = malloc(wf_proxy_req_head_size(&h, &o));
    if (out == NULL) {
        return;
    }
    n = wf_proxy_req_head_write(out, &h, &o);
    wf_h1_head_init(&back);
    if (n > wf_proxy_req_head_size(&h, &o)
        || wf_h1_parse_head(&back, out, n, &lim) != WF_OK || back.head_len != n
        || !wf_str_eq(back.method, h.method) || !wf_str_eq(back.path, h.path)
        || back.has_query != h.has_query || !wf_str_eq(back.query, h.query)
        || back.chunked != h.chunked || back.content_length != h.content_length
        || back.keep_alive != o.keep_alive) {
        if (getenv("FUZZ_DEBUG") != NULL) {
            fprintf(stderr, "in:\n%.*s\nout:\n%.*s\n", (int)len, buf, (int)n,
                    out);
        }
        abort();
    }
    free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > FUZZ_MAX) {
        return 0;
    }
    if ((data[0] & 1) == 0) {
        fuzz_resp((const char *)data + 2, size - 2, data[1]);
    } else {
        fuzz_req((const char *)data + 2, size - 2);
    }
    return 0;
}
