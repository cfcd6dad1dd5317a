#include "http/tpl.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "http/route.h"
#include "http/var.h"

typedef struct tpl_part tpl_part_t;

#define TPL_ABSENT SIZE_MAX

/* Writes the part's value into out[0..cap) (a prefix when it does not fit)
 * and returns its full length, or TPL_ABSENT when the value does not exist
 * (a field, argument or cookie that the request lacks): it then renders as
 * "" in a template and as "-" in the access log, as in Unit, where an empty
 * value that exists stays "". */
typedef size_t (*tpl_render_fn)(const tpl_part_t *part,
                                const wf_route_req_t *rq, char *out,
                                size_t cap);

/* One piece of a template: literal text (render == NULL) or a variable. */
struct tpl_part {
    tpl_render_fn render;
    wf_str_t text; /* the literal, or the NAME of $header_NAME etc.; in the
                      arena */
    int idx;       /* a $tls_* variable's (http/var.h) */
};

struct wf_tpl {
    tpl_part_t *parts;
    size_t nparts;
    bool is_const;
};

static size_t
tpl_put(char *out, size_t cap, wf_str_t v)
{
    if (cap > 0 && v.len > 0) {
        memcpy(out, v.data, wf_min(v.len, cap));
    }
    return v.len;
}

/* As tpl_put(), for a value that an empty string means is unknown (no
 * method or target in a head that did not parse): TPL_ABSENT then. */
static size_t
tpl_put_known(char *out, size_t cap, wf_str_t v)
{
    return v.len == 0 ? TPL_ABSENT : tpl_put(out, cap, v);
}

/* ---- variables --------------------------------------------------------- */

static size_t
tpl_uri(const tpl_part_t *part, const wf_route_req_t *rq, char *out, size_t cap)
{
    wf_unused(part);
    return tpl_put_known(out, cap, rq->uri);
}

/* An HTTP/1.0 request without Host has none; an empty Host is "". */
static size_t
tpl_host(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
         size_t cap)
{
    wf_unused(part);
    if (rq->host.len == 0 && rq->head != NULL
        && wf_h1_head_find(rq->head, wf_string("host")) == NULL) {
        return TPL_ABSENT;
    }
    return tpl_put(out, cap, rq->host);
}

static size_t
tpl_method(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
           size_t cap)
{
    wf_unused(part);
    return tpl_put_known(out, cap, rq->method);
}

/* "https" over TLS (or as a trusted "forwarded" says), else "http"; a
 * Wharf variable (Unit 1.35 has none). */
static size_t
tpl_scheme(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
           size_t cap)
{
    wf_unused(part);
    return tpl_put_known(out, cap,
                         rq->tls ? wf_string("https") : wf_string("http"));
}

/* The target as received (without a fragment), also after a "rewrite". */
static size_t
tpl_request_uri(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
                size_t cap)
{
    wf_unused(part);
    return tpl_put_known(out, cap,
                         rq->head != NULL ? rq->head->target : wf_null_str);
}

static size_t
tpl_dollar(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
           size_t cap)
{
    wf_unused(part);
    wf_unused(rq);
    return tpl_put(out, cap, wf_string("$"));
}

/* Appends v at out[*n] within cap; *n grows by v.len even past cap. */
static void
tpl_append(char *out, size_t cap, size_t *n, wf_str_t v)
{
    if (*n < cap && v.len > 0) {
        memcpy(out + *n, v.data, wf_min(v.len, cap - *n));
    }
    *n += v.len;
}

/* The request line as received: the parser accepts exactly one SP between
 * its three parts, so it is rebuilt from them. */
static size_t
tpl_request_line(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
                 size_t cap)
{
    const wf_h1_head_t *h = rq->head;
    char ver[16];
    int vn;
    size_t n = 0;

    wf_unused(part);
    if (h == NULL || h->method.len == 0) {
        return TPL_ABSENT; /* a head that did not parse */
    }
    if (h->version < 100) { /* the common case, without snprintf() */
        memcpy(ver, " HTTP/1.1", 9);
        ver[6] = (char)('0' + h->version / 10);
        ver[8] = (char)('0' + h->version % 10);
        vn = 9;
    } else {
        vn = snprintf(ver, sizeof(ver), " HTTP/%u.%u", h->version / 10,
                      h->version % 10);
    }
    tpl_append(out, cap, &n, h->method);
    tpl_append(out, cap, &n, wf_string(" "));
    tpl_append(out, cap, &n, h->target);
    tpl_append(out, cap, &n, wf_str_make(ver, (size_t)vn));
    return n;
}

static size_t
tpl_remote_addr(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
                size_t cap)
{
    char buf[64];

    wf_unused(part);
    return tpl_put_known(
        out, cap,
        wf_str_make(buf, wf_var_addr_text(rq->remote, buf, sizeof(buf))));
}

/* v in decimal, zero-padded to width digits (an access log renders two
 * per line: no snprintf()). */
static size_t
tpl_put_u64(char *out, size_t cap, uint64_t v, size_t width)
{
    char buf[24];
    size_t i = sizeof(buf);

    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 || sizeof(buf) - i < width);
    return tpl_put(out, cap, wf_str_make(buf + i, sizeof(buf) - i));
}

static size_t
tpl_status(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
           size_t cap)
{
    wf_unused(part);
    return tpl_put_u64(out, cap, rq->status % 1000, 3);
}

static size_t
tpl_body_bytes_sent(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
                    size_t cap)
{
    wf_unused(part);
    return tpl_put_u64(out, cap, rq->body_bytes_sent, 1);
}

/* Seconds with milliseconds since the request began ("0.012"). */
static size_t
tpl_request_time(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
                 size_t cap)
{
    struct timespec ts;
    uint64_t now, ms = 0;
    char buf[48];
    int n;

    wf_unused(part);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (rq->start_ns != 0 && now > rq->start_ns) {
        ms = (now - rq->start_ns) / 1000000u;
    }
    n = snprintf(buf, sizeof(buf), "%llu.%03llu",
                 (unsigned long long)(ms / 1000),
                 (unsigned long long)(ms % 1000));
    return tpl_put(out, cap, wf_str_make(buf, (size_t)n));
}

/* Local time as in the common log format: "31/Dec/1986:19:40:00 +0300".
 * Formatted once per second per thread: an access log asks every line. */
static size_t
tpl_time_local(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
               size_t cap)
{
    static const char mon[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static __thread struct {
        time_t sec;
        int len; /* 0: not formatted yet */
        char text[64];
    } cache;
    time_t now = time(NULL);
    struct tm tm;
    long off;

    wf_unused(part);
    wf_unused(rq);
    if (cache.len == 0 || now != cache.sec) {
        localtime_r(&now, &tm);
        off = tm.tm_gmtoff / 60;
        cache.len =
            snprintf(cache.text, sizeof(cache.text),
                     "%02d/%s/%4d:%02d:%02d:%02d %c%02ld%02ld", tm.tm_mday,
                     mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+',
                     (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
        cache.sec = now;
    }
    return tpl_put(out, cap, wf_str_make(cache.text, (size_t)cache.len));
}

/* Draws 128 bits for rq->request_id (xorshift per thread: an id, not a
 * secret; never both words 0). */
static void
tpl_request_id_draw(uint64_t id[2], const void *salt)
{
    static __thread uint64_t s;

    if (s == 0) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        s = (((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)&s
             ^ (uint64_t)(uintptr_t)salt)
            | 1u;
    }
    for (size_t i = 0; i < 2; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        id[i] = s; /* s is never 0 */
    }
}

/* 32 hex digits, the same wherever one request renders it (Unit draws it
 * once per request too).  The id is drawn on first use and kept in rq:
 * rq is const for every other variable, and this cache is the one field
 * rendering writes. */
static size_t
tpl_request_id(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
               size_t cap)
{
    uint64_t *id = ((wf_route_req_t *)rq)->request_id;
    char buf[33];

    wf_unused(part);
    if (id[0] == 0 && id[1] == 0) {
        tpl_request_id_draw(id, rq);
    }
    snprintf(buf, sizeof(buf), "%016llx%016llx", (unsigned long long)id[0],
             (unsigned long long)id[1]);
    return tpl_put(out, cap, wf_str_make(buf, 32));
}

/* $header_NAME: the first field of that name. */
static size_t
tpl_header(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
           size_t cap)
{
    for (unsigned i = 0; rq->head != NULL && i < rq->head->nheaders; i++) {
        const wf_h1_header_t *f = &rq->head->headers[i];

        if (wf_var_header_name_eq(f->name, part->text)) {
            return tpl_put(out, cap, f->value);
        }
    }
    return TPL_ABSENT;
}

/* $arg_NAME: the last argument of that (decoded) name, decoded. */
static size_t
tpl_arg(const tpl_part_t *part, const wf_route_req_t *rq, char *out, size_t cap)
{
    wf_str_t q = rq->head != NULL ? rq->head->query : wf_null_str;
    wf_var_pair_t arg;
    wf_str_t last = wf_null_str;
    size_t pos = 0;
    bool found = false;

    while (wf_var_arg_next(q, &pos, &arg)) {
        if (wf_var_decoded_eq(arg.name, part->text)) {
            last = arg.value;
            found = true;
        }
    }
    if (!found) {
        return TPL_ABSENT;
    }
    if (last.len == 0) {
        return 0;
    }
    return wf_var_decode_n(out, cap, last.data, last.len, true);
}

/* $cookie_NAME: the first cookie of that name. */
static size_t
tpl_cookie(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
           size_t cap)
{
    wf_var_pair_t ck;
    unsigned field = 0;
    size_t pos = 0;

    while (wf_var_cookie_next(rq->head, &field, &pos, &ck)) {
        if (wf_str_eq(ck.name, part->text)) {
            return tpl_put(out, cap, ck.value);
        }
    }
    return TPL_ABSENT;
}

/* $response_header_NAME: the first field of that name in the response
 * head, once it is built (the access log); before that (response_headers,
 * a Location) the response has no fields yet and the value is absent. */
static size_t
tpl_response_header(const tpl_part_t *part, const wf_route_req_t *rq, char *out,
                    size_t cap)
{
    const char *p = rq->resp_head.data;
    const char *last = p + rq->resp_head.len;
    const char *eol;

    /* Skip the status line; each field is "Name: value" CRLF. */
    while (p != NULL && (eol = memchr(p, '\n', (size_t)(last - p))) != NULL) {
        const char *colon;

        p = eol + 1;
        eol = memchr(p, '\r', (size_t)(last - p));
        colon = eol != NULL ? memchr(p, ':', (size_t)(eol - p)) : NULL;
        if (colon == NULL) {
            break; /* the empty line */
        }
        if (wf_var_header_name_eq(wf_str_make(p, (size_t)(colon - p)),
                                  part->text)) {
            const char *v = colon + 1;

            while (v < eol && *v == ' ') {
                v++;
            }
            return tpl_put(out, cap, wf_str_make(v, (size_t)(eol - v)));
        }
    }
    return TPL_ABSENT;
}

/* $tls_protocol, $tls_client_subject... (http/var.h). */
static size_t
tpl_tls(const tpl_part_t *part, const wf_route_req_t *rq, char *out, size_t cap)
{
    wf_str_t v;

    return wf_var_tls_get(rq, part->idx, &v) ? tpl_put(out, cap, v)
                                             : TPL_ABSENT;
}

/* The variables we know.  A row with render == NULL is a variable Unit has
 * that Wharf does not have yet: it is refused with a message that says so
 * rather than Unit's "Unknown variable". */
static const struct {
    const char *name;
    tpl_render_fn render;
} tpl_vars[] = {
    {"uri", tpl_uri},
    {"host", tpl_host},
    {"method", tpl_method},
    {"scheme", tpl_scheme},
    {"request_uri", tpl_request_uri},
    {"request_line", tpl_request_line},
    {"remote_addr", tpl_remote_addr},
    {"status", tpl_status},
    {"body_bytes_sent", tpl_body_bytes_sent},
    {"request_time", tpl_request_time},
    {"time_local", tpl_time_local},
    {"request_id", tpl_request_id},
    {"dollar", tpl_dollar},
};

/* Variables whose name ends with a field name. */
static const struct {
    const char *prefix;
    tpl_render_fn render;
} tpl_prefixes[] = {
    {"header_", tpl_header},
    {"arg_", tpl_arg},
    {"cookie_", tpl_cookie},
    {"response_header_", tpl_response_header},
};

/* ---- compiling --------------------------------------------------------- */

/* Looks name up; sets part (the suffix of a prefixed name in part->text).
 * On failure writes Unit's message and returns false. */
static bool
tpl_var_find(const char *name, size_t len, tpl_part_t *part, char *err,
             size_t errlen)
{
    bool known = false;

    for (size_t i = 0; i < wf_nitems(tpl_vars) && !known; i++) {
        if (strlen(tpl_vars[i].name) == len
            && memcmp(tpl_vars[i].name, name, len) == 0) {
            part->render = tpl_vars[i].render;
            known = true;
        }
    }
    for (size_t i = 0; i < wf_nitems(tpl_prefixes) && !known; i++) {
        size_t n = strlen(tpl_prefixes[i].prefix);

        if (len > n && memcmp(name, tpl_prefixes[i].prefix, n) == 0) {
            part->render = tpl_prefixes[i].render;
            part->text = wf_str_make(name + n, len - n);
            known = true;
        }
    }
    if (!known && (part->idx = wf_var_tls_find(name, len)) >= 0) {
        part->render = tpl_tls;
        known = true;
    }
    if (!known) {
        snprintf(err, errlen, "Unknown variable \"%.*s\"", (int)len, name);
        return false;
    }
    if (part->render == NULL) {
        snprintf(err, errlen, "The variable \"%.*s\" is not supported yet",
                 (int)len, name);
        return false;
    }
    return true;
}

static bool
tpl_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_';
}

/* Parses the variable whose '$' is at s[i]; sets *name and returns the
 * offset after it, or 0 with err written. */
static size_t
tpl_scan_var(const char *s, size_t len, size_t i, wf_str_t *name, char *err,
             size_t errlen)
{
    size_t start = i + 1;
    size_t end;
    bool braced = start < len && s[start] == '{';

    if (braced) {
        start++;
    }
    for (end = start; end < len && tpl_is_name_char(s[end]); end++) {
        /* the name */
    }
    if (end == start || (braced && (end == len || s[end] != '}'))) {
        snprintf(err, errlen, "Invalid variable at position %zu", i);
        return 0;
    }
    *name = wf_str_make(s + start, end - start);
    return braced ? end + 1 : end;
}

static size_t
tpl_count_parts(const char *s, size_t len)
{
    size_t n = 1;

    for (size_t i = 0; i < len; i++) {
        n += s[i] == '$' ? 2 : 0;
    }
    return n;
}

static void
tpl_add_text(wf_tpl_t *t, const char *s, size_t from, size_t to)
{
    if (to > from) {
        t->parts[t->nparts++] =
            (tpl_part_t){NULL, wf_str_make(s + from, to - from), 0};
    }
}

/* Splits copy[0..len) into literal and variable parts.  Returns false with
 * err written. */
static bool
tpl_parse(wf_tpl_t *t, const char *copy, size_t len, char *err, size_t errlen)
{
    size_t lit = 0;
    size_t i = 0;

    while (i < len) {
        wf_str_t name;
        tpl_part_t part = {NULL, wf_null_str, 0};
        size_t next;

        if (copy[i] != '$') {
            i++;
            continue;
        }
        next = tpl_scan_var(copy, len, i, &name, err, errlen);
        if (next == 0
            || !tpl_var_find(name.data, name.len, &part, err, errlen)) {
            return false;
        }
        tpl_add_text(t, copy, lit, i);
        t->parts[t->nparts++] = part;
        t->is_const = false;
        i = lit = next;
    }
    tpl_add_text(t, copy, lit, len);
    return true;
}

wf_tpl_t *
wf_tpl_compile(wf_arena_t *a, const char *s, size_t len, char *err,
               size_t errlen)
{
    wf_tpl_t *t;
    const char *copy;

    if (len > 0 && s[0] == '`') {
        snprintf(err, errlen, "JavaScript templates are not supported yet");
        return NULL;
    }
    t = wf_arena_calloc(a, sizeof(*t));
    copy = wf_arena_strndup(a, s, len);
    if (t == NULL || copy == NULL) {
        snprintf(err, errlen, "Out of memory");
        return NULL;
    }
    t->parts = wf_arena_alloc(a, tpl_count_parts(s, len) * sizeof(tpl_part_t));
    if (t->parts == NULL) {
        snprintf(err, errlen, "Out of memory");
        return NULL;
    }
    t->is_const = true;
    return tpl_parse(t, copy, len, err, errlen) ? t : NULL;
}

bool
wf_tpl_is_const(const wf_tpl_t *t)
{
    return t->is_const;
}

/* Renders t; with dash, a variable whose value is absent renders as "-". */
static size_t
tpl_render(const wf_tpl_t *t, const wf_route_req_t *rq, char *out, size_t cap,
           bool dash)
{
    size_t need = 0;

    for (size_t i = 0; i < t->nparts; i++) {
        const tpl_part_t *part = &t->parts[i];
        size_t room = need < cap ? cap - need : 0;
        char *at = room > 0 ? out + need : NULL;
        size_t n = part->render == NULL ? tpl_put(at, room, part->text)
                                        : part->render(part, rq, at, room);

        if (n == TPL_ABSENT) {
            n = dash ? tpl_put(at, room, wf_string("-")) : 0;
        }
        need += n;
    }
    return need;
}

size_t
wf_tpl_render(const wf_tpl_t *t, const wf_route_req_t *rq, char *out,
              size_t cap)
{
    return tpl_render(t, rq, out, cap, false);
}

size_t
wf_tpl_render_log(const wf_tpl_t *t, const wf_route_req_t *rq, char *out,
                  size_t cap)
{
    return tpl_render(t, rq, out, cap, true);
}

bool
wf_tpl_is_true(const wf_tpl_t *t, const wf_route_req_t *rq)
{
    static const wf_str_t falsy[] = {
        wf_string(""),     wf_string("0"),         wf_string("false"),
        wf_string("null"), wf_string("undefined"),
    };
    char buf[16];
    size_t n = wf_tpl_render(t, rq, buf, sizeof(buf));

    for (size_t i = 0; i < wf_nitems(falsy); i++) {
        if (wf_str_eq(wf_str_make(buf, n), falsy[i])) {
            return false;
        }
    }
    return true;
}
