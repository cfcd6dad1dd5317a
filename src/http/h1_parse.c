/* Strict HTTP/1.x request parser (RFC 9112).
 *
 * wf_h1_parse_head() works in two phases.  The scan phase runs on every call
 * and only looks at the bytes that arrived since the previous call: it finds
 * each LF with memchr() and enforces the length limits,
 * so that a client cannot make us buffer more than the limits allow.  When
 * the scan finds the empty line that ends the head, the parse phase walks the
 * complete head once, byte by byte through the character table, and fills h.
 *
 * Every error is reported at the first byte position where it becomes
 * certain, and the parse phase only runs on a complete head, so the result is
 * the same however the bytes were split between calls (the fuzzer checks
 * this).
 *
 * A head line may end in CRLF or in a bare LF (RFC 9112 2.2 allows the
 * latter, and Unit and nginx accept it); a CR anywhere else is a 400.  The
 * chunked body keeps the strict CRLF framing. */
#include "http/h1_parse.h"

#include <string.h>

#include "core/common.h"

#define H1_MAX_EMPTY_LINES 8 /* empty lines skipped before the request line */
#define H1_CHUNK_MAX_LINE  4096 /* longest chunk-size or trailer line */

/* Character classes, one bit each, in h1_chars[]. */
#define H1_TCHAR  0x01 /* token character (RFC 9110 5.6.2) */
#define H1_FIELD  0x02 /* field-vchar, SP, HTAB or obs-text */
#define H1_TARGET 0x04 /* request-target byte: 0x21-0x7E except '#' */
#define H1_SAFE   0x08 /* [A-Za-z0-9-], a field name nobody can misread */
#define H1_REG    0x10 /* reg-name: unreserved, sub-delims and '%' */

/* The table is laid out 16 bytes a row so that a byte's row and column can be
 * read off its hex value; clang-format would bin-pack it. */
/* clang-format off */
static const uint8_t h1_chars[256] = {
    /* 00 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0,  0,  0,  0,  0,  0,
    /* 10 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 20 */  2, 23,  6,  3, 23, 23, 23, 23, 22, 22, 23, 23, 22, 31, 23,  6,
    /* 30 */ 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,  6, 22,  6, 22,  6,  6,
    /* 40 */  6, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    /* 50 */ 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,  6,  6,  6,  7, 23,
    /* 60 */  7, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    /* 70 */ 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,  6,  7,  6, 23,  0,
    /* 80 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* 90 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* a0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* b0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* c0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* d0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* e0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* f0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
};
/* clang-format on */

/* Value of a hex digit, or 0xFF. */
static inline unsigned
h1_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return 0xFF;
}

static inline bool
h1_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Compares a token with a lowercase name made of letters, digits and '-'.
 * OR-ing 0x20 maps an uppercase letter to its lowercase form and leaves the
 * other token characters that could match ('-' and digits) alone. */
static bool
h1_token_eq_lower(const unsigned char *p, size_t len, wf_str_t lower)
{
    if (len != lower.len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((p[i] | 0x20) != (unsigned char)lower.data[i]) {
            return false;
        }
    }
    return true;
}

/* SWAR tests on 8 bytes at once (Hacker's Delight 6-1): whether any byte
 * of x is below n (n <= 0x80), and whether any byte equals c.  Only the
 * answer being zero or not is exact, which is all the fast paths use. */
#define H1_ONES  UINT64_C(0x0101010101010101)
#define H1_HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t
h1_word_has_less(uint64_t x, unsigned n)
{
    return (x - H1_ONES * n) & ~x & H1_HIGHS;
}

static inline uint64_t
h1_word_has(uint64_t x, unsigned char c)
{
    return h1_word_has_less(x ^ (H1_ONES * c), 1);
}

/* Skips field-value bytes (H1_FIELD) from p; last bounds the reads.  Whole
 * words without a control byte or DEL go 8 bytes a step; HTAB, being a
 * control, leaves the fast path to the table loop, which is exact. */
static const unsigned char *
h1_skip_field_value(const unsigned char *p, const unsigned char *last)
{
    uint64_t x;

    while (last - p >= 8) {
        memcpy(&x, p, 8);
        if (h1_word_has_less(x, 0x20) != 0 || h1_word_has(x, 0x7F) != 0) {
            break;
        }
        p += 8;
    }
    while (h1_chars[*p] & H1_FIELD) {
        p++;
    }
    return p;
}

/* Skips request-target bytes (H1_TARGET) from p, as above. */
static const unsigned char *
h1_skip_target(const unsigned char *p, const unsigned char *last)
{
    uint64_t x;

    while (last - p >= 8) {
        memcpy(&x, p, 8);
        if (h1_word_has_less(x, 0x21) != 0 || (x & H1_HIGHS) != 0
            || h1_word_has(x, 0x7F) != 0 || h1_word_has(x, '#') != 0) {
            break;
        }
        p += 8;
    }
    while (h1_chars[*p] & H1_TARGET) {
        p++;
    }
    return p;
}

/* ---- Method ------------------------------------------------------------ */

static const struct {
    wf_str_t name;
    wf_http_method_t id;
} h1_methods[] = {
    /* Most frequent first. */
    {wf_string("GET"), WF_HTTP_GET},
    {wf_string("POST"), WF_HTTP_POST},
    {wf_string("HEAD"), WF_HTTP_HEAD},
    {wf_string("PUT"), WF_HTTP_PUT},
    {wf_string("DELETE"), WF_HTTP_DELETE},
    {wf_string("OPTIONS"), WF_HTTP_OPTIONS},
    {wf_string("PATCH"), WF_HTTP_PATCH},
    {wf_string("CONNECT"), WF_HTTP_CONNECT},
    {wf_string("TRACE"), WF_HTTP_TRACE},
};

wf_http_method_t
wf_http_method_id(wf_str_t method)
{
    for (size_t i = 0; i < wf_nitems(h1_methods); i++) {
        if (wf_str_eq(method, h1_methods[i].name)) {
            return h1_methods[i].id;
        }
    }
    return WF_HTTP_OTHER;
}

/* ---- Scan phase -------------------------------------------------------- */

void
wf_h1_head_init(wf_h1_head_t *h)
{
    h->nheaders = 0;
    h->content_length = -1;
    h->head_len = 0;
    h->status = 0;
    h->scanned = 0;
    h->line_start = 0;
}

/* Skips the empty lines allowed before the request line.  Returns the offset
 * of the request line, or sets *status (400) or returns len when more bytes
 * are needed (the caller then answers WF_AGAIN). */
static size_t
h1_skip_empty_lines(const char *buf, size_t len, unsigned *status)
{
    size_t i = 0;

    for (unsigned n = 0;; n++) {
        if (i == len) {
            return len;
        }
        if (buf[i] == '\n') {
            if (n == H1_MAX_EMPTY_LINES) {
                *status = 400;
                return 0;
            }
            i++; /* a bare LF */
            continue;
        }
        if (buf[i] != '\r') {
            return i;
        }
        if (i + 1 == len) {
            return len;
        }
        if (buf[i + 1] != '\n' || n == H1_MAX_EMPTY_LINES) {
            *status = 400;
            return 0;
        }
        i += 2;
    }
}

/* Returns the status when the bytes buf[start..at) already break a limit,
 * whatever follows them (at is a prefix length with no LF in the current
 * line), or 0.  A line may hold its limit plus the CR of its CRLF.  When the
 * request line and the head limits are both broken, the answer is the limit
 * that the growing prefix broke first, so it does not depend on the split. */
static unsigned
h1_prefix_status(const wf_h1_head_t *h, size_t start, size_t at,
                 const wf_h1_limits_t *lim)
{
    bool request_line = h->line_start == start;
    size_t max_line = request_line ? lim->max_request_line : lim->max_field;
    size_t pending = at - h->line_start;
    bool line_over = pending > 1 && pending - 1 > max_line;
    bool head_over = at - start > lim->max_head;

    if (!line_over && !head_over) {
        return 0;
    }
    if (!request_line || !line_over) {
        return 431;
    }
    if (!head_over) {
        return 414;
    }
    /* Thresholds: the line at start + max_line + 2, the head at start +
     * max_head + 1. */
    return max_line < lim->max_head ? 414 : 431;
}

static unsigned h1_check_request_line(wf_h1_head_t *h, const char *buf,
                                      size_t start, size_t end);

/* Searches buf[h->scanned..len) for the LF of the empty line that ends the
 * head.  Returns the head length, 0 when more bytes are needed, or sets
 * *status.  Each LF is checked where it stands (the CR before it may be in
 * older bytes), so unlike a search for "\r\n\r\n" nothing is rescanned. */
static size_t
h1_find_head_end(wf_h1_head_t *h, const char *buf, size_t len, size_t start,
                 const wf_h1_limits_t *lim, unsigned *status)
{
    const char *p, *lf;
    size_t at;

    if (h->line_start < start) {
        h->line_start = start;
    }
    p = buf + wf_max(h->scanned, start);

    while ((lf = memchr(p, '\n', (size_t)(buf + len - p))) != NULL) {
        at = (size_t)(lf - buf);
        *status = h1_prefix_status(h, start, at, lim);
        if (*status == 0 && h->line_start == start) {
            /* A bad request line is certain at its LF: answer now rather
             * than wait for a head that may never end ("GET /\n"). */
            *status = h1_check_request_line(h, buf, start, at + 1);
        }
        if (*status != 0) {
            return 0;
        }
        /* An empty line, "\n" or "\r\n", ends the head.  buf[start] is
         * neither CR nor LF, so at > start. */
        if (at == h->line_start
            || (at - h->line_start == 1 && buf[at - 1] == '\r')) {
            if (at + 1 - start > lim->max_head) {
                *status = 431;
                return 0;
            }
            return at + 1;
        }
        h->line_start = at + 1;
        p = lf + 1;
    }

    h->scanned = len;
    *status = h1_prefix_status(h, start, len, lim);
    return 0;
}

/* ---- Parse phase ------------------------------------------------------- */

/* What the parse phase learns from the fields, checked once all are read. */
typedef struct h1_fields {
    unsigned nfields;
    unsigned nhost;
    bool content_length;
    bool te;       /* a Transfer-Encoding field was present */
    bool te_other; /* ... naming a coding other than chunked */
    bool te_last_chunked;
    unsigned nchunked; /* chunked codings seen */
    bool conn_close;
    bool conn_keep_alive;
    wf_str_t raw; /* the current field value with its OWS */
} h1_fields_t;

typedef unsigned (*h1_field_handler)(wf_h1_head_t *h, h1_fields_t *f,
                                     wf_str_t value);

/* Checks host [":" port] (RFC 3986 authority without userinfo), as found in
 * the Host field and in absolute-form and authority-form targets.  The port
 * may be empty unless need_port. */
static bool
h1_authority_is_valid(wf_str_t a, bool need_port)
{
    const unsigned char *p = (const unsigned char *)a.data;
    const unsigned char *last = p + a.len;

    if (p == last) {
        return false;
    }
    if (*p == '[') {
        /* IP-literal: checked only for its character set. */
        for (p++; p < last && *p != ']'; p++) {
            if (h1_hex(*p) == 0xFF && *p != ':' && *p != '.' && *p != 'v'
                && *p != 'V') {
                return false;
            }
        }
        if (p == last) {
            return false;
        }
        p++;
    } else {
        const unsigned char *host = p;

        while (p < last && (h1_chars[*p] & H1_REG)) {
            p++;
        }
        if (p == host) {
            return false;
        }
    }
    if (p == last) {
        return !need_port;
    }
    if (*p != ':') {
        return false;
    }
    p++;
    if (need_port && p == last) {
        return false;
    }
    for (; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return true;
}

static unsigned
h1_on_host(wf_h1_head_t *h, h1_fields_t *f, wf_str_t value)
{
    if (++f->nhost > 1) {
        return 400;
    }
    if (value.len != 0 && !h1_authority_is_valid(value, false)) {
        return 400;
    }
    h->host = value;
    return 0;
}

/* HTAB is legal OWS, but llhttp rejects it after the value of the two
 * fields that frame the body; parsers that disagree on framing let requests
 * be smuggled, and no real client sends it, so those fields get a 400. */
static bool
h1_raw_has_htab(const h1_fields_t *f)
{
    return memchr(f->raw.data, '\t', f->raw.len) != NULL;
}

static unsigned
h1_on_content_length(wf_h1_head_t *h, h1_fields_t *f, wf_str_t value)
{
    int64_t n = 0;

    if (f->content_length || value.len == 0 || h1_raw_has_htab(f)) {
        return 400;
    }
    f->content_length = true;
    for (size_t i = 0; i < value.len; i++) {
        unsigned d = (unsigned char)value.data[i] - '0';

        if (d > 9 || n > (INT64_MAX - (int64_t)d) / 10) {
            return 400;
        }
        n = n * 10 + (int64_t)d;
    }
    h->content_length = n;
    return 0;
}

/* Calls fn for each element of a comma-separated list, with OWS trimmed,
 * empty ones included (an empty list has one); stops at the first non-zero
 * status. */
static unsigned
h1_list_each(wf_str_t list, h1_fields_t *f,
             unsigned (*fn)(h1_fields_t *f, wf_str_t elt))
{
    const char *p = list.data;
    const char *last = p + list.len;

    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(last - p));
        const char *e = comma != NULL ? comma : last;
        const char *next = e + 1;
        unsigned status;

        while (p < e && h1_is_ows((unsigned char)*p)) {
            p++;
        }
        while (e > p && h1_is_ows((unsigned char)e[-1])) {
            e--;
        }
        status = fn(f, wf_str_make(p, (size_t)(e - p)));
        if (status != 0 || comma == NULL) {
            return status;
        }
        p = next;
    }
}

/* An empty element is legal list syntax (RFC 9110 5.6.1), but parsers
 * disagree on whether "chunked," ends with chunked (llhttp says no), and a
 * disagreement on the body length is request smuggling: reject it. */
static unsigned
h1_on_coding(h1_fields_t *f, wf_str_t coding)
{
    if (coding.len == 0) {
        return 400;
    }
    if (h1_token_eq_lower((const unsigned char *)coding.data, coding.len,
                          wf_string("chunked"))) {
        f->nchunked++;
        f->te_last_chunked = true;
    } else {
        f->te_other = true;
        f->te_last_chunked = false;
    }
    return 0;
}

static unsigned
h1_on_transfer_encoding(wf_h1_head_t *h, h1_fields_t *f, wf_str_t value)
{
    wf_unused(h);
    f->te = true;
    if (h1_raw_has_htab(f)) {
        return 400;
    }
    return h1_list_each(value, f, h1_on_coding);
}

static unsigned
h1_on_connection_option(h1_fields_t *f, wf_str_t option)
{
    const unsigned char *p = (const unsigned char *)option.data;

    if (h1_token_eq_lower(p, option.len, wf_string("close"))) {
        f->conn_close = true;
    } else if (h1_token_eq_lower(p, option.len, wf_string("keep-alive"))) {
        f->conn_keep_alive = true;
    }
    return 0;
}

static unsigned
h1_on_connection(wf_h1_head_t *h, h1_fields_t *f, wf_str_t value)
{
    wf_unused(h);
    return h1_list_each(value, f, h1_on_connection_option);
}

static unsigned
h1_on_expect(wf_h1_head_t *h, h1_fields_t *f, wf_str_t value)
{
    wf_unused(f);
    if (h1_token_eq_lower((const unsigned char *)value.data, value.len,
                          wf_string("100-continue"))) {
        h->expect_continue = true;
    }
    return 0;
}

/* The fields the parser acts on, by name length; names are lowercase. */
static const struct {
    wf_str_t name;
    h1_field_handler handler;
} h1_known_fields[] = {
    {wf_string("host"), h1_on_host},
    {wf_string("expect"), h1_on_expect},
    {wf_string("connection"), h1_on_connection},
    {wf_string("content-length"), h1_on_content_length},
    {wf_string("transfer-encoding"), h1_on_transfer_encoding},
};

static h1_field_handler
h1_known_field(const unsigned char *name, size_t len)
{
    size_t i;

    switch (len) {
    case 4:
        i = 0;
        break;
    case 6:
        i = 1;
        break;
    case 10:
        i = 2;
        break;
    case 14:
        i = 3;
        break;
    case 17:
        i = 4;
        break;
    default:
        return NULL;
    }
    if (!h1_token_eq_lower(name, len, h1_known_fields[i].name)) {
        return NULL;
    }
    return h1_known_fields[i].handler;
}

/* Splits an origin-form or absolute-form path at '?'. */
static void
h1_split_query(wf_h1_head_t *h, const char *p, const char *last)
{
    const char *q = memchr(p, '?', (size_t)(last - p));

    if (q == NULL) {
        h->path = wf_str_make(p, (size_t)(last - p));
        return;
    }
    h->path = wf_str_make(p, (size_t)(q - p));
    h->has_query = true;
    h->query = wf_str_make(q + 1, (size_t)(last - q - 1));
}

/* Parses "http[s]://authority[/path][?query]". */
static unsigned
h1_parse_absolute(wf_h1_head_t *h, const char *p, const char *last)
{
    const char *a;

    if (last - p > 7
        && h1_token_eq_lower((const unsigned char *)p, 7,
                             wf_string("http://"))) {
        p += 7;
    } else if (last - p > 8
               && h1_token_eq_lower((const unsigned char *)p, 8,
                                    wf_string("https://"))) {
        p += 8;
    } else {
        return 400;
    }

    for (a = p; p < last && *p != '/' && *p != '?'; p++) {
        /* The authority ends at the path or the query. */
    }
    h->authority = wf_str_make(a, (size_t)(p - a));
    if (!h1_authority_is_valid(h->authority, false)) {
        return 400; /* also rejects userinfo and an empty host */
    }
    h1_split_query(h, p, last);
    if (h->path.len == 0) {
        h->path = wf_string("/");
    }
    return 0;
}

/* Splits h->target according to its form (RFC 9112 3.2). */
static unsigned
h1_parse_target(wf_h1_head_t *h)
{
    const char *p = h->target.data;
    const char *last = p + h->target.len;

    if (h->method_id == WF_HTTP_CONNECT) {
        if (!h1_authority_is_valid(h->target, true)) {
            return 400;
        }
        h->authority = h->target;
        return 0;
    }
    if (*p == '/') {
        h1_split_query(h, p, last);
        return 0;
    }
    if (*p == '*') {
        if (h->target.len != 1 || h->method_id != WF_HTTP_OPTIONS) {
            return 400;
        }
        h->path = h->target;
        return 0;
    }
    return h1_parse_absolute(h, p, last);
}

/* Returns the length of the line end at p: 2 for CRLF, 1 for a bare LF, or
 * 0 (a bare CR or any other byte). */
static size_t
h1_eol_len(const unsigned char *p)
{
    if (p[0] == '\n') {
        return 1;
    }
    return p[0] == '\r' && p[1] == '\n' ? 2 : 0;
}

/* Parses "HTTP/d.d" and its line end; *pp then points to the next line.
 * HTTP/1.2 and higher minor versions are served as HTTP/1.1 (RFC 9110
 * 2.5: a recipient uses the highest minor version it implements). */
static unsigned
h1_parse_version(wf_h1_head_t *h, const unsigned char **pp,
                 const unsigned char *last)
{
    const unsigned char *p = *pp;
    size_t eol;

    if (last - p < 9 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9'
        || p[6] != '.' || p[7] < '0' || p[7] > '9') {
        return 400;
    }
    eol = h1_eol_len(p + 8);
    if (eol == 0) {
        return 400;
    }
    if (p[5] >= '2') {
        return 505;
    }
    if (p[5] != '1') {
        return 400;
    }
    h->version = p[7] == '0' ? 10 : 11;
    *pp = p + 8 + eol;
    return 0;
}

/* Skips a fragment ("#" and what follows, up to SP): the client should not
 * send it (RFC 9112 3.2), but Unit and nginx drop it, so it is not part of
 * the target.  A '#' inside the fragment is tolerated as they do. */
static const unsigned char *
h1_skip_fragment(const unsigned char *p, const unsigned char *last)
{
    while (*p == '#') {
        p = h1_skip_target(p + 1, last);
    }
    return p;
}

/* Parses method SP request-target SP HTTP-version CRLF; *pp then points to
 * the next line. */
static unsigned
h1_parse_request_line(wf_h1_head_t *h, const unsigned char **pp,
                      const unsigned char *last)
{
    const unsigned char *p = *pp;
    const unsigned char *start = p;
    unsigned status;

    while (h1_chars[*p] & H1_TCHAR) {
        p++;
    }
    if (p == start || *p != ' ') {
        return 400;
    }
    h->method = wf_str_make((const char *)start, (size_t)(p - start));
    h->method_id = wf_http_method_id(h->method);

    start = ++p;
    p = h1_skip_target(p, last);
    if (p == start) {
        return 400; /* also a control, a byte >= 0x7F or a bare fragment */
    }
    h->target = wf_str_make((const char *)start, (size_t)(p - start));
    p = h1_skip_fragment(p, last);
    if (*p != ' ') {
        return 400;
    }

    p++;
    status = h1_parse_version(h, &p, last);
    if (status != 0) {
        return status;
    }
    *pp = p;
    return h1_parse_target(h);
}

/* Checks the complete request line buf[start..end) (end is after its LF)
 * as the parse phase will; returns its status or 0. */
static unsigned
h1_check_request_line(wf_h1_head_t *h, const char *buf, size_t start,
                      size_t end)
{
    const unsigned char *p = (const unsigned char *)buf + start;

    return h1_parse_request_line(h, &p, (const unsigned char *)buf + end);
}

/* Stores a field in h->headers[] unless it must be discarded. */
static void
h1_store_field(wf_h1_head_t *h, wf_str_t name, wf_str_t value, bool safe,
               const wf_h1_limits_t *lim)
{
    if (lim->discard_unsafe_fields && !safe) {
        return;
    }
    h->headers[h->nheaders].name = name;
    h->headers[h->nheaders].value = value;
    h->nheaders++;
}

/* Parses one field line at *pp (which is not the final empty line) and acts
 * on it; *pp then points to the next line. */
static unsigned
h1_parse_field(wf_h1_head_t *h, h1_fields_t *f, const unsigned char **pp,
               const unsigned char *last, const wf_h1_limits_t *lim)
{
    const unsigned char *p = *pp;
    const unsigned char *value, *end;
    unsigned classes = 0xFF;
    size_t eol;
    h1_field_handler handler;
    wf_str_t name;
    unsigned status;

    while (h1_chars[*p] & H1_TCHAR) {
        classes &= h1_chars[*p];
        p++;
    }
    /* An empty name also catches obs-fold (a line starting with SP or
     * HTAB); whitespace before ':' is rejected as RFC 9112 5.1 asks. */
    if (p == *pp || *p != ':') {
        return 400;
    }
    if (++f->nfields > WF_H1_MAX_HEADERS) {
        return 431;
    }
    name = wf_str_make((const char *)*pp, (size_t)(p - *pp));

    p++;
    while (h1_is_ows(*p)) {
        p++;
    }
    value = p;
    p = h1_skip_field_value(p, last);
    /* This rejects a bare CR, NUL and the other controls. */
    eol = h1_eol_len(p);
    if (eol == 0) {
        return 400;
    }
    for (end = p; end > value && h1_is_ows(end[-1]); end--) {
        /* Trailing OWS is not part of the value. */
    }
    *pp = p + eol;

    handler = h1_known_field((const unsigned char *)name.data, name.len);
    if (handler != NULL) {
        f->raw = wf_str_make((const char *)name.data + name.len + 1,
                             (size_t)(p - (const unsigned char *)name.data)
                                 - name.len - 1);
        status = handler(
            h, f, wf_str_make((const char *)value, (size_t)(end - value)));
        if (status != 0) {
            return status;
        }
    }
    h1_store_field(h, name,
                   wf_str_make((const char *)value, (size_t)(end - value)),
                   (classes & H1_SAFE) != 0, lim);
    return 0;
}

/* Checks what depends on several fields, once all have been read. */
static unsigned
h1_check_fields(wf_h1_head_t *h, const h1_fields_t *f)
{
    /* An empty Host is valid (RFC 9110 7.2); a missing one is not. */
    if (h->version == 11 && f->nhost == 0) {
        return 400;
    }
    if (f->te) {
        if (h->version == 10 || f->content_length) {
            return 400;
        }
        if (f->te_other) {
            return 501;
        }
        if (f->nchunked != 1 || !f->te_last_chunked) {
            return 400;
        }
        h->chunked = true;
    }
    if (h->version == 11) {
        h->keep_alive = !f->conn_close;
    } else {
        h->keep_alive = f->conn_keep_alive && !f->conn_close;
        h->expect_continue = false;
    }
    if (h->authority.len != 0 && h->method_id != WF_HTTP_CONNECT) {
        h->host = h->authority; /* RFC 9112 3.2.2 */
    }
    return 0;
}

/* Parses the complete head buf[start..end), which ends with an empty line
 * ("\n" or "\r\n") and whose lines are within the limits. */
static unsigned
h1_parse_complete(wf_h1_head_t *h, const char *buf, size_t start, size_t end,
                  const wf_h1_limits_t *lim)
{
    const unsigned char *p = (const unsigned char *)buf + start;
    const unsigned char *last = (const unsigned char *)buf + end;
    /* The final empty line is "\r\n" exactly when a CR precedes its LF:
     * otherwise last[-2] is the LF of the line before. */
    const unsigned char *fields_end = last[-2] == '\r' ? last - 2 : last - 1;
    h1_fields_t f = {0};
    unsigned status;

    h->query = wf_null_str;
    h->has_query = false;
    h->authority = wf_null_str;
    h->path = wf_null_str;
    h->host = wf_null_str;
    h->content_length = -1;
    h->chunked = false;
    h->keep_alive = false;
    h->expect_continue = false;
    h->nheaders = 0;

    status = h1_parse_request_line(h, &p, last);
    if (status != 0) {
        return status;
    }
    /* A line that starts with a bare CR is not the end: that is the empty
     * line at fields_end, which the scan phase found. */
    while (p != fields_end) {
        status = h1_parse_field(h, &f, &p, last, lim);
        if (status != 0) {
            return status;
        }
    }
    return h1_check_fields(h, &f);
}

int
wf_h1_parse_head(wf_h1_head_t *h, const char *buf, size_t len,
                 const wf_h1_limits_t *lim)
{
    unsigned status = 0;
    size_t start, end;

    start = h1_skip_empty_lines(buf, len, &status);
    if (status != 0) {
        goto fail;
    }
    if (start == len) {
        return WF_AGAIN;
    }
    end = h1_find_head_end(h, buf, len, start, lim, &status);
    if (status != 0) {
        goto fail;
    }
    if (end == 0) {
        return WF_AGAIN;
    }
    status = h1_parse_complete(h, buf, start, end, lim);
    if (status != 0) {
        goto fail;
    }
    h->head_len = end;
    return WF_OK;

fail:
    h->status = status;
    return WF_ERROR;
}

const wf_h1_header_t *
wf_h1_head_find(const wf_h1_head_t *h, wf_str_t name)
{
    for (unsigned i = 0; i < h->nheaders; i++) {
        if (wf_str_eq_nocase(h->headers[i].name, name)) {
            return &h->headers[i];
        }
    }
    return NULL;
}

/* ---- Host ------------------------------------------------------------- */

/* Bytes a host name may hold (RFC 3986 reg-name, IP literals, a port);
 * '/' and '\\' never, so that "$host" in a share cannot add path segments. */
static const uint8_t h1_host_chars[256] = {
    ['-'] = 1, ['.'] = 1,  ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1,
    ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1,
    [','] = 1, [';'] = 1,  ['='] = 1, ['%'] = 1, [':'] = 1, ['['] = 1,
    [']'] = 1, ['0'] = 1,  ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1, ['9'] = 1, ['a'] = 1,
    ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1,  ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1,  ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,
    ['t'] = 1, ['u'] = 1,  ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1,
    ['z'] = 1, ['A'] = 1,  ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1,  ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,
    ['R'] = 1, ['S'] = 1,  ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1,  ['Z'] = 1,
};

int
wf_h1_host_name(const char *in, size_t n, char *p, wf_str_t *name)
{
    size_t len = n;

    if (n == 0) {
        *name = wf_null_str; /* HTTP/1.0 may omit Host */
        return WF_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (h1_host_chars[(uint8_t)in[i]] == 0
            || (in[i] == '.' && i > 0 && in[i - 1] == '.')) {
            return WF_ERROR;
        }
        p[i] = wf_lower(in[i]);
    }
    if (n > 0 && p[0] == '[') {
        const char *end = memchr(p, ']', n);

        len = end != NULL ? (size_t)(end - p) + 1 : n;
    } else {
        const char *colon = memchr(p, ':', n);

        len = colon != NULL ? (size_t)(colon - p) : n;
    }
    if (len > 0 && p[len - 1] == '.') {
        len--;
    }
    *name = wf_str_make(p, len);
    return WF_OK;
}

/* ---- Chunked body ------------------------------------------------------ */

typedef enum h1_chunk_state {
    H1_CH_SIZE = 0,      /* at the first hex digit of a chunk-size line */
    H1_CH_SIZE_MORE,     /* after at least one hex digit; ch->size is set */
    H1_CH_SIZE_BWS,      /* BWS after the size: only ';' may follow */
    H1_CH_EXT,           /* in chunk extensions, skipped up to CR */
    H1_CH_SIZE_LF,       /* after the CR of the size line */
    H1_CH_DATA,          /* ch->size > 0 bytes of data left */
    H1_CH_DATA_CR,       /* the data ended; CRLF must follow */
    H1_CH_DATA_LF,       /* after the CR that ends the data */
    H1_CH_TRAILER,       /* at the start of a trailer line or the last CRLF */
    H1_CH_TRAILER_NAME,  /* in a trailer field name */
    H1_CH_TRAILER_VALUE, /* in a trailer field value, up to CR */
    H1_CH_TRAILER_LF,    /* after the CR of a trailer line */
    H1_CH_LAST_LF,       /* after the CR of the final empty line */
    H1_CH_DONE,          /* the body is complete */
    H1_CH_ERROR          /* the body was malformed; stays here */
} h1_chunk_state_t;

void
wf_h1_chunked_init(wf_h1_chunked_t *ch)
{
    ch->state = H1_CH_SIZE;
    ch->size = 0;
    ch->line_len = 0;
}

/* Adds a hex digit to the chunk size; false when it would need 64 bits. */
static bool
h1_chunk_size_add(wf_h1_chunked_t *ch, unsigned d)
{
    if (ch->size > (UINT64_C(1) << 59) - 1) {
        return false;
    }
    ch->size = ch->size << 4 | d;
    return true;
}

/* Steps the state machine of the size and trailer lines over one byte c.
 * Returns the next state. */
static h1_chunk_state_t
h1_chunk_line_byte(wf_h1_chunked_t *ch, h1_chunk_state_t state, unsigned char c)
{
    unsigned d;

    switch (state) {
    case H1_CH_SIZE:
    case H1_CH_SIZE_MORE:
        d = h1_hex(c);
        if (d != 0xFF) {
            return h1_chunk_size_add(ch, d) ? H1_CH_SIZE_MORE : H1_CH_ERROR;
        }
        if (state == H1_CH_SIZE) {
            return H1_CH_ERROR;
        }
        if (c == '\r') {
            return H1_CH_SIZE_LF;
        }
        if (c == ';') {
            return H1_CH_EXT;
        }
        return h1_is_ows(c) ? H1_CH_SIZE_BWS : H1_CH_ERROR;
    case H1_CH_SIZE_BWS:
        if (c == ';') {
            return H1_CH_EXT;
        }
        return h1_is_ows(c) ? H1_CH_SIZE_BWS : H1_CH_ERROR;
    case H1_CH_EXT:
        if (c == '\r') {
            return H1_CH_SIZE_LF;
        }
        return (h1_chars[c] & H1_FIELD) ? H1_CH_EXT : H1_CH_ERROR;
    case H1_CH_SIZE_LF:
        if (c != '\n') {
            return H1_CH_ERROR;
        }
        return ch->size == 0 ? H1_CH_TRAILER : H1_CH_DATA;
    case H1_CH_DATA_CR:
        return c == '\r' ? H1_CH_DATA_LF : H1_CH_ERROR;
    case H1_CH_DATA_LF:
        return c == '\n' ? H1_CH_SIZE : H1_CH_ERROR;
    case H1_CH_TRAILER:
        if (c == '\r') {
            return H1_CH_LAST_LF;
        }
        return (h1_chars[c] & H1_TCHAR) ? H1_CH_TRAILER_NAME : H1_CH_ERROR;
    case H1_CH_TRAILER_NAME:
        if (c == ':') {
            return H1_CH_TRAILER_VALUE;
        }
        return (h1_chars[c] & H1_TCHAR) ? H1_CH_TRAILER_NAME : H1_CH_ERROR;
    case H1_CH_TRAILER_VALUE:
        if (c == '\r') {
            return H1_CH_TRAILER_LF;
        }
        return (h1_chars[c] & H1_FIELD) ? H1_CH_TRAILER_VALUE : H1_CH_ERROR;
    case H1_CH_TRAILER_LF:
        return c == '\n' ? H1_CH_TRAILER : H1_CH_ERROR;
    case H1_CH_LAST_LF:
        return c == '\n' ? H1_CH_DONE : H1_CH_ERROR;
    default:
        return H1_CH_ERROR;
    }
}

int
wf_h1_chunked_decode(wf_h1_chunked_t *ch, const char *in, size_t len,
                     size_t *used, char *out, size_t *out_len)
{
    h1_chunk_state_t state = (h1_chunk_state_t)ch->state;
    size_t i = 0, o = 0;

    while (i < len && state != H1_CH_DONE && state != H1_CH_ERROR) {
        if (state == H1_CH_DATA) {
            size_t n = (size_t)wf_min(ch->size, (uint64_t)(len - i));

            /* out never overtakes in (o <= i), so an overlap is safe. */
            memmove(out + o, in + i, n);
            i += n;
            o += n;
            ch->size -= n;
            if (ch->size == 0) {
                state = H1_CH_DATA_CR;
            }
            continue;
        }
        if (state == H1_CH_SIZE || state == H1_CH_TRAILER) {
            ch->line_len = 0;
        }
        if (++ch->line_len > H1_CHUNK_MAX_LINE) {
            state = H1_CH_ERROR;
            break;
        }
        state = h1_chunk_line_byte(ch, state, (unsigned char)in[i]);
        i++;
    }

    ch->state = (int)state;
    *used = i;
    *out_len = o;
    if (state == H1_CH_ERROR) {
        return WF_ERROR;
    }
    return state == H1_CH_DONE ? WF_OK : WF_AGAIN;
}

static void
h1_str_rebase(wf_str_t *str, const char *old, const char *new)
{
    if (str->data != NULL) {
        str->data = new + (str->data - old);
    }
}

void
wf_h1_head_rebase(wf_h1_head_t *h, const char *old, const char *new)
{
    wf_str_t *strs[] = {&h->method, &h->target,    &h->path,
                        &h->query,  &h->authority, &h->host};

    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        h1_str_rebase(strs[i], old, new);
    }
    for (unsigned i = 0; i < h->nheaders; i++) {
        h1_str_rebase(&h->headers[i].name, old, new);
        h1_str_rebase(&h->headers[i].value, old, new);
    }
}
