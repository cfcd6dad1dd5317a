/* libFuzzer target for the HTTP/1 request parser.
 *
 * For each input it:
 * 1. parses the input whole;
 * 2. parses it again delivered in pieces (split points come from a hash of
 *    the input), calling wf_h1_parse_head() on each growing prefix as a
 *    server does, each prefix in its own copy so that ASan sees a read past
 *    the prefix, and aborts unless the outcome is the same;
 * 3. when the head is valid and the body chunked, decodes the body whole and
 *    in pieces, in place, and aborts unless the outcome is the same (when
 *    the input is not a valid head, the same is done on the raw input);
 * 4. runs llhttp (lenient flags off) on the head as a differential oracle:
 *    a head that Wharf accepts and llhttp rejects is printed to stderr after
 *    "DIFF:" (abort instead with WF_FUZZ_DIFF_ABORT=1).  Wharf rejecting
 *    what llhttp accepts is expected, as Wharf is the stricter parser.
 *
 * Known differences, filtered out because Wharf is right by RFC 9110/9112
 * (scripts/fuzz.sh collects the rest):
 * - Extension methods: any token is a valid method (RFC 9110 9.1), while
 *   llhttp knows a fixed list and answers HPE_INVALID_METHOD, or, for the
 *   RTSP methods it knows (SETUP, PLAY, ...), HPE_INVALID_CONSTANT because
 *   it then expects "RTSP/1.0".
 * - Bare LF line endings in the head: Wharf accepts them as RFC 9112 2.2
 *   allows (and Unit and nginx do); llhttp without lenient flags does not.
 * - A fragment: Wharf drops it, as Unit does; llhttp rejects some (after
 *   the authority of an absolute-form target) with HPE_INVALID_URL.
 * - HTTP/1.2 and higher minor versions: served as HTTP/1.1 (RFC 9110 2.5);
 *   llhttp answers HPE_INVALID_VERSION.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "core/common.h"
#include "http/h1_parse.h"

#define FUZZ_MAX_DIFFS 50 /* reports per llhttp error code */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Limits picked by the input hash: production-like ones, small ones that the
 * fuzzer can break, and a request-line limit above the head limit. */
static const wf_h1_limits_t fuzz_limits[] = {
    {8192, 8192, 65536, false},
    {64, 48, 256, true},
    {200, 100, 150, false},
    {32, 1000, 1000, true},
};

/* What must not depend on how the input was split. */
typedef struct fuzz_result {
    int rc;
    unsigned status;
    size_t head_len;
    wf_str_t method;
    wf_str_t path;
    wf_str_t host;
    unsigned nheaders;
    int64_t content_length;
    bool chunked;
    bool keep_alive;
    bool expect_continue;
} fuzz_result_t;

static uint64_t
fuzz_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * 0x100000001b3ULL;
    }
    return h;
}

static uint64_t
fuzz_next(uint64_t *s)
{
    /* xorshift64: the state must not be 0. */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Size of the next piece: often 1, sometimes large. */
static size_t
fuzz_piece(uint64_t *s)
{
    uint64_t r = fuzz_next(s);

    switch (r & 3) {
    case 0:
        return 1;
    case 1:
        return 1 + (size_t)((r >> 8) % 4);
    default:
        return 1 + (size_t)((r >> 8) % 64);
    }
}

static void
fuzz_result_get(fuzz_result_t *res, const wf_h1_head_t *h, int rc)
{
    memset(res, 0, sizeof(*res));
    res->rc = rc;
    if (rc == WF_ERROR) {
        res->status = h->status;
    }
    if (rc != WF_OK) {
        return;
    }
    res->head_len = h->head_len;
    res->method = h->method;
    res->path = h->path;
    res->host = h->host;
    res->nheaders = h->nheaders;
    res->content_length = h->content_length;
    res->chunked = h->chunked;
    res->keep_alive = h->keep_alive;
    res->expect_continue = h->expect_continue;
}

static void
fuzz_check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_h1_parse: %s\n", what);
        abort();
    }
}

static void
fuzz_result_compare(const fuzz_result_t *a, const fuzz_result_t *b)
{
    fuzz_check(a->rc == b->rc, "rc differs when split");
    fuzz_check(a->status == b->status, "status differs when split");
    fuzz_check(a->head_len == b->head_len, "head_len differs when split");
    fuzz_check(wf_str_eq(a->method, b->method), "method differs when split");
    fuzz_check(wf_str_eq(a->path, b->path), "path differs when split");
    fuzz_check(wf_str_eq(a->host, b->host), "host differs when split");
    fuzz_check(a->nheaders == b->nheaders, "nheaders differs when split");
    fuzz_check(a->content_length == b->content_length,
               "content_length differs when split");
    fuzz_check(a->chunked == b->chunked, "chunked differs when split");
    fuzz_check(a->keep_alive == b->keep_alive, "keep_alive differs");
    fuzz_check(a->expect_continue == b->expect_continue,
               "expect_continue differs when split");
}

/* Checks what a valid head promises. */
static void
fuzz_check_head(const wf_h1_head_t *h, const uint8_t *data, size_t size)
{
    const uint8_t *end = data + h->head_len;

    fuzz_check(h->head_len >= 4 && h->head_len <= size, "head_len range");
    fuzz_check(end[-1] == '\n'
                   && (end[-2] == '\n' || (end[-2] == '\r' && end[-3] == '\n')),
               "head does not end with an empty line");
    fuzz_check(h->nheaders <= WF_H1_MAX_HEADERS, "nheaders range");
    fuzz_check(h->version == 10 || h->version == 11, "version");
    fuzz_check(!h->chunked || h->content_length == -1, "chunked with length");
    fuzz_check(h->version == 10
                   || wf_h1_head_find(h, wf_string("host")) != NULL,
               "HTTP/1.1 without host");
}

static bool
fuzz_is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7F;
}

/* Checks the fields and the target with code independent of the parser's
 * character table and word-at-a-time scans. */
static void
fuzz_check_bytes(const wf_h1_head_t *h)
{
    for (size_t i = 0; i < h->target.len; i++) {
        unsigned char c = (unsigned char)h->target.data[i];

        fuzz_check(c > 0x20 && c < 0x7F && c != '#', "byte in target");
    }
    for (unsigned i = 0; i < h->nheaders; i++) {
        const wf_h1_header_t *f = &h->headers[i];
        size_t n = f->value.len;

        fuzz_check(f->name.len > 0, "empty field name");
        for (size_t j = 0; j < f->name.len; j++) {
            unsigned char c = (unsigned char)f->name.data[j];

            fuzz_check(c > 0x20 && c < 0x7F && c != ':', "byte in name");
        }
        for (size_t j = 0; j < n; j++) {
            fuzz_check(!fuzz_is_ctl((unsigned char)f->value.data[j]),
                       "control in value");
        }
        fuzz_check(n == 0
                       || (f->value.data[0] != ' ' && f->value.data[0] != '\t'
                           && f->value.data[n - 1] != ' '
                           && f->value.data[n - 1] != '\t'),
                   "OWS around value");
    }
}

/* Parses growing prefixes of data, each in its own buffer, as a server
 * whose read buffer grows (and may move) would. */
static void
fuzz_parse_pieces(const uint8_t *data, size_t size, const wf_h1_limits_t *lim,
                  uint64_t seed, const fuzz_result_t *whole)
{
    static wf_h1_head_t h;
    fuzz_result_t res;
    char *buf = NULL;
    size_t n = 0;
    int rc = WF_AGAIN;

    wf_h1_head_init(&h);
    while (rc == WF_AGAIN && n < size) {
        size_t step = fuzz_piece(&seed); /* wf_min() evaluates twice */

        n = wf_min(size, n + step);
        free(buf);
        buf = malloc(n);
        fuzz_check(buf != NULL, "out of memory");
        memcpy(buf, data, n);
        rc = wf_h1_parse_head(&h, buf, n, lim);
    }
    if (size == 0) {
        rc = wf_h1_parse_head(&h, "", 0, lim);
    }
    fuzz_result_get(&res, &h, rc);
    fuzz_result_compare(whole, &res);
    free(buf);
}

/* Decodes body[0..size) in place in pieces cut from the seed; any piece
 * size when seed is 0 (then it is decoded whole). */
static int
fuzz_chunked(const uint8_t *body, size_t size, uint64_t seed, char *out,
             size_t *out_len, size_t *used)
{
    wf_h1_chunked_t ch;
    char *buf = malloc(size + 1);
    size_t from = 0, o = 0;
    int rc = WF_AGAIN;

    fuzz_check(buf != NULL, "out of memory");
    memcpy(buf, body, size);
    wf_h1_chunked_init(&ch);
    while (rc == WF_AGAIN && from < size) {
        size_t step = seed == 0 ? size : fuzz_piece(&seed);
        size_t to = wf_min(size, from + step);
        size_t u, n;

        rc = wf_h1_chunked_decode(&ch, buf + from, to - from, &u, buf + from,
                                  &n);
        fuzz_check(u <= to - from && n <= u, "chunked counts");
        fuzz_check(rc != WF_AGAIN || u == to - from, "chunked AGAIN used");
        memcpy(out + o, buf + from, n);
        o += n;
        from += u;
    }
    free(buf);
    *out_len = o;
    *used = from;
    return rc;
}

static void
fuzz_compare_chunked(const uint8_t *body, size_t size, uint64_t seed)
{
    char *out1 = malloc(size + 1);
    char *out2 = malloc(size + 1);
    size_t len1, len2, used1, used2;
    int rc1, rc2;

    fuzz_check(out1 != NULL && out2 != NULL, "out of memory");
    rc1 = fuzz_chunked(body, size, 0, out1, &len1, &used1);
    rc2 = fuzz_chunked(body, size, seed | 1, out2, &len2, &used2);
    fuzz_check(rc1 == rc2, "chunked rc differs when split");
    if (rc1 != WF_ERROR) {
        fuzz_check(len1 == len2 && memcmp(out1, out2, len1) == 0,
                   "chunked body differs when split");
        fuzz_check(used1 == used2, "chunked used differs when split");
    }
    free(out1);
    free(out2);
}

static int
fuzz_on_headers_complete(llhttp_t *p)
{
    *(bool *)p->data = true;
    return 0;
}

/* Runs llhttp on the head; returns 0 when it accepts it, else its error. */
static llhttp_errno_t
fuzz_llhttp(const uint8_t *head, size_t len)
{
    static llhttp_settings_t settings;
    static bool ready;
    llhttp_t p;
    llhttp_errno_t err;
    bool done = false;

    if (!ready) {
        llhttp_settings_init(&settings);
        settings.on_headers_complete = fuzz_on_headers_complete;
        ready = true;
    }
    llhttp_init(&p, HTTP_REQUEST, &settings);
    p.data = &done;
    err = llhttp_execute(&p, (const char *)head, len);
    if (done && (err == HPE_OK || err == HPE_PAUSED_UPGRADE)) {
        return HPE_OK;
    }
    return err != HPE_OK ? err : HPE_INVALID_EOF_STATE;
}

/* True when some LF of the head is not preceded by a CR. */
static bool
fuzz_has_bare_lf(const uint8_t *head, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (head[i] == '\n' && (i == 0 || head[i - 1] != '\r')) {
            return true;
        }
    }
    return false;
}

/* True when the request line of head[0..len) names HTTP/1.x with x > 1. */
static bool
fuzz_has_high_minor(const wf_h1_head_t *h, const uint8_t *head, size_t len)
{
    const uint8_t *last = head + len;
    const uint8_t *v = (const uint8_t *)h->target.data + h->target.len;

    /* The version follows the target (and a dropped fragment) after SP. */
    v = memchr(v, ' ', (size_t)(last - v));
    return v != NULL && last - v > 9 && memcmp(v + 1, "HTTP/1.", 7) == 0
           && v[8] > '1';
}

/* Differences that are not findings; see the comment at the top. */
static bool
fuzz_diff_is_known(const wf_h1_head_t *h, const uint8_t *head, size_t len,
                   llhttp_errno_t err)
{
    if ((err == HPE_INVALID_METHOD || err == HPE_INVALID_CONSTANT)
        && h->method_id == WF_HTTP_OTHER) {
        return true;
    }
    if (err == HPE_INVALID_VERSION && fuzz_has_high_minor(h, head, len)) {
        return true;
    }
    if (err == HPE_INVALID_URL && h->target.data[h->target.len] == '#') {
        return true; /* the target ends where a dropped fragment starts */
    }
    return fuzz_has_bare_lf(head, len);
}

static void
fuzz_report_diff(const uint8_t *head, size_t len, llhttp_errno_t err)
{
    static unsigned reported[64];
    static int abort_on_diff = -1;

    if (abort_on_diff == -1) {
        const char *e = getenv("WF_FUZZ_DIFF_ABORT");

        abort_on_diff = e != NULL && strcmp(e, "1") == 0;
    }
    /* A difference is found again and again once the fuzzer knows it:
     * report each llhttp error a bounded number of times. */
    if ((unsigned)err >= wf_nitems(reported)) {
        err = HPE_INTERNAL;
    }
    if (++reported[err] > FUZZ_MAX_DIFFS && !abort_on_diff) {
        return;
    }
    fprintf(stderr, "DIFF: llhttp %s: ", llhttp_errno_name(err));
    for (size_t i = 0; i < len; i++) {
        if (head[i] >= 0x20 && head[i] < 0x7F && head[i] != '\\') {
            fputc(head[i], stderr);
        } else {
            fprintf(stderr, "\\x%02x", head[i]);
        }
    }
    fputc('\n', stderr);
    if (abort_on_diff) {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wf_h1_head_t h;
    uint64_t seed = fuzz_hash(data, size) | 1;
    const wf_h1_limits_t *lim = &fuzz_limits[seed >> 8 & 3];
    fuzz_result_t whole;
    llhttp_errno_t err;
    int rc;

    wf_h1_head_init(&h);
    rc = wf_h1_parse_head(&h, (const char *)data, size, lim);
    fuzz_check(rc == WF_OK || rc == WF_AGAIN || rc == WF_ERROR, "rc");
    fuzz_result_get(&whole, &h, rc);
    fuzz_parse_pieces(data, size, lim, seed, &whole);
    if (rc != WF_OK) {
        /* Not a head: give the chunked decoder the raw bytes instead. */
        fuzz_compare_chunked(data, size, seed);
        fuzz_check(rc != WF_ERROR || h.status == 400 || h.status == 414
                       || h.status == 431 || h.status == 501 || h.status == 505,
                   "status");
        return 0;
    }
    fuzz_check_head(&h, data, size);
    fuzz_check_bytes(&h);

    if (h.chunked) {
        fuzz_compare_chunked(data + h.head_len, size - h.head_len, seed);
    }

    err = fuzz_llhttp(data, h.head_len);
    if (err != HPE_OK && !fuzz_diff_is_known(&h, data, h.head_len, err)) {
        fuzz_report_diff(data, h.head_len, err);
    }
    return 0;
}
