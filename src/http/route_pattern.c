/* Unit's match patterns: literals with '*' wildcards, '!' negation, '~'
 * regular expressions (PCRE2), and address patterns.  Compiled once per
 * config; matching never allocates (see route_regex_match()). */
#include "http/route_pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <arpa/inet.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/var.h"

/* One compiled pattern.  "a*b*c" is head "a", mids {"b"}, tail "c"; a
 * pattern without '*' is head only (wild == false). */
typedef struct route_pattern {
    bool negative;        /* a leading '!' */
    bool wild;            /* at least one '*' */
    const pcre2_code *re; /* '~' patterns; NULL otherwise */
    wf_str_t head;        /* before the first '*'; all of it when !wild */
    wf_str_t tail;        /* after the last '*' */
    wf_str_t *mids;       /* non-empty pieces between '*'s, in order */
    size_t nmids;
    size_t min_len; /* bytes a value needs: head + mids + tail */
} route_pattern_t;

struct wf_pattern_set {
    route_pattern_t *pats;
    size_t n;
    size_t npositive;
    bool caseless;
};

/* ---- regular expressions ----------------------------------------------- */

/* Each compiled expression belongs to the arena of the config that compiled
 * it: a cleanup hook on that arena frees the PCRE2 code (and its JIT code,
 * which is not arena memory) when the snapshot's last reference goes, so a
 * reconfiguration leaves nothing behind.  Match data does not refer to any
 * code (see route_regex_match()), so freeing code never leaves it dangling.
 * docs/internals/reconfiguration.md, "What a snapshot owns". */

/* Per thread: the match data for every expression (one ovector pair is
 * enough, since only "did it match" is asked).  It is created with
 * pcre2_match_data_create(), not from a code, and matching uses PCRE2's
 * default JIT stack, so it outlives every expression safely. */
static pthread_key_t route_md_key;
static pthread_once_t route_md_once = PTHREAD_ONCE_INIT;
static __thread pcre2_match_data *route_md;

static void
route_md_free(void *md)
{
    pcre2_match_data_free(md);
}

static void
route_md_key_create(void)
{
    (void)pthread_key_create(&route_md_key, route_md_free);
}

static pcre2_code *
route_re_new(const char *s, size_t n, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;
    PCRE2_UCHAR msg[160];
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)s, n, 0, &code, &off, NULL);

    if (re == NULL) {
        pcre2_get_error_message(code, msg, sizeof(msg));
        if (off < n) {
            snprintf(err, errlen, "Invalid regular expression: %s at offset %d",
                     (char *)msg, (int)off);
        } else {
            snprintf(err, errlen, "Invalid regular expression: %s",
                     (char *)msg);
        }
        return NULL;
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreted if not */
    return re;
}

static void
route_re_free(void *re)
{
    pcre2_code_free(re);
}

/* Returns the compiled form of s[0..n), owned by a: freed with it. */
static const pcre2_code *
route_re_get(wf_arena_t *a, const char *s, size_t n, char *err, size_t errlen)
{
    pcre2_code *re = route_re_new(s, n, err, errlen);

    if (re == NULL) {
        return NULL;
    }
    if (wf_arena_cleanup_add(a, route_re_free, re) != WF_OK) {
        pcre2_code_free(re);
        snprintf(err, errlen, "Out of memory.");
        return NULL;
    }
    return re;
}

/* The first call on a thread allocates its match data; later calls do
 * not allocate.  Out of memory: no match. */
static bool
route_regex_match(const pcre2_code *re, wf_str_t s)
{
    if (wf_unlikely(route_md == NULL)) {
        pthread_once(&route_md_once, route_md_key_create);
        route_md = pcre2_match_data_create(1, NULL);
        if (route_md == NULL) {
            return false;
        }
        (void)pthread_setspecific(route_md_key, route_md);
    }
    return pcre2_match(re, (PCRE2_SPTR)(s.data != NULL ? s.data : ""), s.len, 0,
                       0, route_md, NULL)
           >= 0;
}

/* ---- matching ---------------------------------------------------------- */

static bool
route_mem_eq(const char *v, wf_str_t p, bool caseless)
{
    if (!caseless) {
        return p.len == 0 || memcmp(v, p.data, p.len) == 0;
    }
    for (size_t i = 0; i < p.len; i++) {
        if (wf_lower(v[i]) != p.data[i]) {
            return false;
        }
    }
    return true;
}

/* Returns the offset of the leftmost needle in hay[0..n), or SIZE_MAX. */
static size_t
route_mem_find(const char *hay, size_t n, wf_str_t needle, bool caseless)
{
    if (needle.len > n) {
        return SIZE_MAX;
    }
    if (!caseless) {
        const char *at = memmem(hay, n, needle.data, needle.len);

        return at != NULL ? (size_t)(at - hay) : SIZE_MAX;
    }
    for (size_t i = 0; i + needle.len <= n; i++) {
        if (route_mem_eq(hay + i, needle, caseless)) {
            return i;
        }
    }
    return SIZE_MAX;
}

static bool
route_pattern_match(const route_pattern_t *p, wf_str_t s, bool caseless)
{
    size_t pos, end;

    if (p->re != NULL) {
        return route_regex_match(p->re, s);
    }
    if (!p->wild) {
        return s.len == p->head.len && route_mem_eq(s.data, p->head, caseless);
    }
    if (s.len < p->min_len || !route_mem_eq(s.data, p->head, caseless)
        || !route_mem_eq(s.data + s.len - p->tail.len, p->tail, caseless)) {
        return false;
    }
    /* Leftmost matching of each middle piece is optimal: any later
     * placement leaves less room for the pieces that follow. */
    pos = p->head.len;
    end = s.len - p->tail.len;
    for (size_t i = 0; i < p->nmids; i++) {
        size_t at =
            route_mem_find(s.data + pos, end - pos, p->mids[i], caseless);

        if (at == SIZE_MAX) {
            return false;
        }
        pos += at + p->mids[i].len;
    }
    return true;
}

bool
wf_pattern_set_match(const wf_pattern_set_t *ps, wf_str_t s)
{
    bool positive = false;

    if (s.data == NULL) {
        s = wf_string("");
    }
    for (size_t i = 0; i < ps->n; i++) {
        const route_pattern_t *p = &ps->pats[i];

        if (!route_pattern_match(p, s, ps->caseless)) {
            continue;
        }
        if (p->negative) {
            return false;
        }
        positive = true;
    }
    return positive || ps->npositive == 0;
}

size_t
wf_pattern_set_literals(const wf_pattern_set_t *ps, wf_str_t *out, size_t max)
{
    if (ps->n == 0) {
        return 0;
    }
    for (size_t i = 0; i < ps->n; i++) {
        const route_pattern_t *p = &ps->pats[i];

        if (p->negative || p->wild || p->re != NULL) {
            return 0;
        }
    }
    for (size_t i = 0; out != NULL && i < ps->n && i < max; i++) {
        out[i] = ps->pats[i].head;
    }
    return ps->n;
}

/* ---- compiling --------------------------------------------------------- */

/* Copies s[0..n) into a, decoding and changing case as flags say.  Returns
 * false on bad percent-encoding; out->data is NULL when out of memory. */
static bool
route_piece(wf_arena_t *a, const char *s, size_t n, unsigned flags,
            wf_str_t *out)
{
    char *d = wf_arena_alloc(a, n + 1);
    size_t len = n;

    *out = wf_str_make(d, 0);
    if (d == NULL) {
        return true;
    }
    if ((flags & (WF_PAT_DECODE | WF_PAT_PLUS)) != 0) {
        if (!wf_var_decode_strict(d, s, n, (flags & WF_PAT_PLUS) != 0, &len)) {
            return false;
        }
    } else if (n > 0) {
        memcpy(d, s, n);
    }
    for (size_t i = 0; i < len; i++) {
        if ((flags & WF_PAT_CASELESS) != 0) {
            d[i] = wf_lower(d[i]);
        } else if ((flags & WF_PAT_UPPER) != 0 && d[i] >= 'a' && d[i] <= 'z') {
            d[i] = (char)(d[i] - 'a' + 'A');
        }
    }
    out->len = len;
    return true;
}

static size_t
route_count_stars(const char *s, size_t n)
{
    size_t stars = 0;

    for (size_t i = 0; i < n; i++) {
        stars += s[i] == '*';
    }
    return stars;
}

/* Stores piece number `piece` of `stars + 1` in p. */
static void
route_pattern_put(route_pattern_t *p, wf_str_t w, size_t piece, size_t stars)
{
    if (piece == 0) {
        p->head = w;
    } else if (piece == stars) {
        p->tail = w;
    } else if (w.len > 0) {
        p->mids[p->nmids++] = w;
    }
    p->min_len += w.len;
}

/* Splits s[0..n) at '*' into p's pieces.  Returns WF_OK or WF_ERROR with
 * err written. */
static int
route_pattern_split(route_pattern_t *p, wf_arena_t *a, const char *s, size_t n,
                    unsigned flags, const char *key, char *err, size_t errlen)
{
    size_t stars = route_count_stars(s, n);
    size_t start = 0;
    size_t piece = 0;

    p->wild = stars > 0;
    p->mids =
        stars > 1 ? wf_arena_alloc(a, (stars - 1) * sizeof(wf_str_t)) : NULL;
    for (size_t i = 0; i <= n; i++) {
        wf_str_t w;

        if (i < n && s[i] != '*') {
            continue;
        }
        if (!route_piece(a, s + start, i - start, flags, &w)) {
            snprintf(err, errlen,
                     "The \"match\" pattern for \"%s\" is encoded but is "
                     "invalid.",
                     key);
            return WF_ERROR;
        }
        if (w.data == NULL || (stars > 1 && p->mids == NULL)) {
            snprintf(err, errlen, "Out of memory.");
            return WF_ERROR;
        }
        route_pattern_put(p, w, piece++, stars);
        start = i + 1;
    }
    return WF_OK;
}

static int
route_pattern_compile(route_pattern_t *p, wf_arena_t *a, const json_t *v,
                      unsigned flags, const char *key, char *err, size_t errlen)
{
    const char *s;
    size_t n;

    if (!json_is_string(v)) {
        snprintf(err, errlen, "The \"match\" pattern for \"%s\" must be %s.",
                 key,
                 (flags & (WF_PAT_DECODE | WF_PAT_PLUS)) != 0 ? "a string"
                                                              : "strings");
        return WF_ERROR;
    }
    s = json_string_value(v);
    n = json_string_length(v);
    memset(p, 0, sizeof(*p));
    if (n > 0 && s[0] == '!') {
        p->negative = true;
        s++;
        n--;
    }
    if (n > 0 && s[0] == '~') {
        p->re = route_re_get(a, s + 1, n - 1, err, errlen);
        return p->re != NULL ? WF_OK : WF_ERROR;
    }
    if (n > 1 && memmem(s, n, "**", 2) != NULL) {
        snprintf(err, errlen,
                 "The \"match\" pattern must not contain double \"*\" "
                 "markers.");
        return WF_ERROR;
    }
    return route_pattern_split(p, a, s, n, flags, key, err, errlen);
}

wf_pattern_set_t *
wf_pattern_set_compile_key(wf_arena_t *a, const json_t *value, unsigned flags,
                           const char *key, char *err, size_t errlen)
{
    wf_pattern_set_t *ps;
    size_t n = json_is_array(value) ? json_array_size(value) : 1;

    ps = wf_arena_calloc(a, sizeof(*ps));
    if (ps == NULL
        || (ps->pats = wf_arena_calloc(a, (n + 1) * sizeof(route_pattern_t)))
               == NULL) {
        snprintf(err, errlen, "Out of memory.");
        return NULL;
    }
    ps->caseless = (flags & WF_PAT_CASELESS) != 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v =
            json_is_array(value) ? json_array_get(value, i) : value;

        if (route_pattern_compile(&ps->pats[i], a, v, flags, key, err, errlen)
            != WF_OK) {
            return NULL;
        }
        ps->npositive += !ps->pats[i].negative;
    }
    ps->n = n;
    return ps;
}

wf_pattern_set_t *
wf_pattern_set_compile(wf_arena_t *a, const json_t *value, bool case_sensitive,
                       char *err, size_t errlen)
{
    return wf_pattern_set_compile_key(
        a, value, case_sensitive ? 0 : WF_PAT_CASELESS, "types", err, errlen);
}

/* ---- address patterns -------------------------------------------------- */

typedef enum route_addr_type {
    ROUTE_ADDR_ANY = 0, /* any address of the family (port may matter) */
    ROUTE_ADDR_EXACT,
    ROUTE_ADDR_RANGE, /* start..end inclusive, compared as bytes */
    ROUTE_ADDR_CIDR   /* (addr & end) == start */
} route_addr_type_t;

typedef struct route_addr {
    bool negative;
    int family; /* AF_UNSPEC ("*:port"), AF_INET, AF_INET6 or AF_UNIX */
    route_addr_type_t type;
    unsigned char start[16]; /* network order; 4 bytes used for IPv4 */
    unsigned char end[16];
    unsigned port_lo, port_hi;
} route_addr_t;

struct wf_addr_set {
    route_addr_t *pats;
    size_t n;
    size_t npositive;
};

static const char *const route_addr_errors[] = {
    "The \"match\" pattern for \"address\" must be a string.",
    "The \"address\" is too short.",
    "The \"address\" format is invalid.",
    "The \"address\" range is overlapping.",
    "The \"address\" has an invalid CIDR prefix.",
    "The \"address\" port an invalid port.",
};

enum {
    ROUTE_ADDR_OK = -1,
    ROUTE_ADDR_E_TYPE = 0,
    ROUTE_ADDR_E_SHORT,
    ROUTE_ADDR_E_FORMAT,
    ROUTE_ADDR_E_OVERLAP,
    ROUTE_ADDR_E_CIDR,
    ROUTE_ADDR_E_PORT,
};

/* Parses decimal digits s[0..n); -1 when empty, not digits, or > 65535
 * (enough for ports and prefixes). */
static long
route_num(const char *s, size_t n)
{
    long v = 0;

    if (n == 0 || n > 5) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v <= 65535 ? v : -1;
}

static bool
route_ip_parse(int family, const char *s, size_t n, unsigned char *out)
{
    char buf[64];

    if (n == 0 || n >= sizeof(buf) || memchr(s, '\0', n) != NULL) {
        return false;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(family, buf, out) == 1;
}

/* "80" or "8000-8080"; a NULL port means any. */
static int
route_addr_port(route_addr_t *p, const char *port, size_t n)
{
    const char *dash;
    long lo, hi;

    p->port_lo = 0;
    p->port_hi = 65535;
    if (port == NULL) {
        return ROUTE_ADDR_OK;
    }
    if (n == 0) {
        return ROUTE_ADDR_E_FORMAT;
    }
    dash = memchr(port, '-', n - 1);
    lo = route_num(port, dash != NULL ? (size_t)(dash - port) : n);
    hi = dash != NULL ? route_num(dash + 1, n - (size_t)(dash - port) - 1) : lo;
    if (lo < 0 || hi < lo) {
        return ROUTE_ADDR_E_PORT;
    }
    p->port_lo = (unsigned)lo;
    p->port_hi = (unsigned)hi;
    return ROUTE_ADDR_OK;
}

/* Sets p->end to a mask of `bits` leading ones and masks p->start. */
static void
route_addr_mask(route_addr_t *p, long bits, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++) {
        long b = bits - (long)i * 8;

        p->end[i] = b >= 8   ? 0xFF
                    : b <= 0 ? 0
                             : (unsigned char)(0xFF << (8 - b));
        p->start[i] &= p->end[i];
    }
}

/* The address part of a pattern: "a", "a-b" or "a/len". */
static int
route_addr_ip(route_addr_t *p, const char *s, size_t n, long maxbits)
{
    size_t bytes = p->family == AF_INET ? 4 : 16;
    const char *dash = memchr(s, '-', n);
    const char *slash = memchr(s, '/', n);

    if (dash != NULL) {
        size_t k = (size_t)(dash - s);

        if (!route_ip_parse(p->family, s, k, p->start)
            || !route_ip_parse(p->family, dash + 1, n - k - 1, p->end)) {
            return ROUTE_ADDR_E_FORMAT;
        }
        p->type = ROUTE_ADDR_RANGE;
        return memcmp(p->start, p->end, bytes) > 0 ? ROUTE_ADDR_E_OVERLAP
                                                   : ROUTE_ADDR_OK;
    }
    if (slash != NULL) {
        size_t k = (size_t)(slash - s);
        long bits = route_num(slash + 1, n - k - 1);

        if (bits < 0 || bits > maxbits) {
            return ROUTE_ADDR_E_CIDR;
        }
        if (!route_ip_parse(p->family, s, k, p->start)) {
            return ROUTE_ADDR_E_FORMAT;
        }
        p->type = bits == 0         ? ROUTE_ADDR_ANY
                  : bits == maxbits ? ROUTE_ADDR_EXACT
                                    : ROUTE_ADDR_CIDR;
        route_addr_mask(p, bits, bytes);
        return ROUTE_ADDR_OK;
    }
    p->type = ROUTE_ADDR_EXACT;
    return route_ip_parse(p->family, s, n, p->start) ? ROUTE_ADDR_OK
                                                     : ROUTE_ADDR_E_FORMAT;
}

/* Unit tells IPv6 from IPv4 by a second ':'. */
static bool
route_addr_is_v6(const char *s, size_t n)
{
    const char *c = memchr(s, ':', n);

    return c != NULL && memchr(c + 1, ':', n - (size_t)(c - s) - 1) != NULL;
}

static int
route_addr_v6(route_addr_t *p, const char *s, size_t n)
{
    const char *port = NULL;
    size_t plen = 0;
    int rc;

    p->family = AF_INET6;
    if (s[0] == '[') {
        const char *end = s + n;
        const char *q = NULL;

        for (const char *x = s + 1; x + 1 < end; x++) {
            q = (x[0] == ']' && x[1] == ':') ? x : q;
        }
        if (q == NULL) {
            return ROUTE_ADDR_E_FORMAT;
        }
        port = q + 2;
        plen = (size_t)(end - port);
        s++;
        n = (size_t)(q - s);
    }
    rc = route_addr_ip(p, s, n, 128);
    return rc != ROUTE_ADDR_OK ? rc : route_addr_port(p, port, plen);
}

static int
route_addr_v4(route_addr_t *p, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    const char *port = colon != NULL ? colon + 1 : NULL;
    size_t plen = colon != NULL ? n - (size_t)(colon - s) - 1 : 0;
    int rc;

    p->family = AF_INET;
    rc = route_addr_ip(p, s, colon != NULL ? (size_t)(colon - s) : n, 32);
    return rc != ROUTE_ADDR_OK ? rc : route_addr_port(p, port, plen);
}

static int
route_addr_parse(route_addr_t *p, const json_t *v)
{
    const char *s;
    size_t n;

    if (!json_is_string(v)) {
        return ROUTE_ADDR_E_TYPE;
    }
    s = json_string_value(v);
    n = json_string_length(v);
    memset(p, 0, sizeof(*p));
    if (n > 0 && s[0] == '!') {
        p->negative = true;
        s++;
        n--;
    }
    if (n == 4 && memcmp(s, "unix", 4) == 0) {
        p->family = AF_UNIX;
        return ROUTE_ADDR_OK;
    }
    if (n < 2) {
        return ROUTE_ADDR_E_SHORT;
    }
    if (s[0] == '*' && s[1] == ':') {
        p->family = AF_UNSPEC;
        return route_addr_port(p, s + 2, n - 2);
    }
    return route_addr_is_v6(s, n) ? route_addr_v6(p, s, n)
                                  : route_addr_v4(p, s, n);
}

wf_addr_set_t *
wf_addr_set_compile(wf_arena_t *a, const json_t *v, char *err, size_t errlen)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    wf_addr_set_t *as = wf_arena_calloc(a, sizeof(*as));

    if (as == NULL
        || (as->pats = wf_arena_calloc(a, (n + 1) * sizeof(route_addr_t)))
               == NULL) {
        snprintf(err, errlen, "Out of memory.");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        int rc = route_addr_parse(&as->pats[i], e);

        if (rc != ROUTE_ADDR_OK) {
            snprintf(err, errlen, "%s", route_addr_errors[rc]);
            return NULL;
        }
        as->npositive += !as->pats[i].negative;
    }
    as->n = n;
    return as;
}

static bool
route_addr_bytes_match(const route_addr_t *p, const unsigned char *a,
                       size_t bytes)
{
    switch (p->type) {
    case ROUTE_ADDR_ANY:
        return true;
    case ROUTE_ADDR_EXACT:
        return memcmp(a, p->start, bytes) == 0;
    case ROUTE_ADDR_RANGE:
        return memcmp(a, p->start, bytes) >= 0 && memcmp(a, p->end, bytes) <= 0;
    case ROUTE_ADDR_CIDR:
        for (size_t i = 0; i < bytes; i++) {
            if ((a[i] & p->end[i]) != p->start[i]) {
                return false;
            }
        }
        return true;
    }
    return false;
}

static bool
route_addr_match(const route_addr_t *p, const wf_sockaddr_t *sa)
{
    int family = sa->sa.sa_family;
    const unsigned char *a;
    unsigned port;

    if (family == AF_UNIX || p->family == AF_UNIX) {
        return family == p->family;
    }
    if (family != AF_INET && family != AF_INET6) {
        return false;
    }
    if (p->family != AF_UNSPEC && p->family != family) {
        return false;
    }
    a = family == AF_INET ? (const unsigned char *)&sa->sin.sin_addr
                          : (const unsigned char *)&sa->sin6.sin6_addr;
    port = ntohs(family == AF_INET ? sa->sin.sin_port : sa->sin6.sin6_port);
    if (port < p->port_lo || port > p->port_hi) {
        return false;
    }
    return route_addr_bytes_match(p, a, family == AF_INET ? 4 : 16);
}

bool
wf_addr_set_match(const wf_addr_set_t *as, const wf_sockaddr_t *sa)
{
    bool positive = false;

    if (sa == NULL || as->n == 0) {
        return false; /* Unit: an empty array matches nothing */
    }
    for (size_t i = 0; i < as->n; i++) {
        if (!route_addr_match(&as->pats[i], sa)) {
            continue;
        }
        if (as->pats[i].negative) {
            return false;
        }
        positive = true;
    }
    return positive || as->npositive == 0;
}
