#include "http/var.h"

#include <arpa/inet.h>
#include <string.h>

#include "core/common.h"
#include "net/tls.h"

static int
var_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Decodes the byte at src[*i] and advances *i past it; *bad is set on a '%'
 * without two hex digits (the '%' is then returned as it is). */
static char
var_decode_one(const char *src, size_t n, size_t *i, bool plus, bool *bad)
{
    char c = src[*i];

    (*i)++;
    if (c == '+' && plus) {
        return ' ';
    }
    if (c != '%') {
        return c;
    }
    if (*i + 1 < n && var_hex(src[*i]) >= 0 && var_hex(src[*i + 1]) >= 0) {
        c = (char)(var_hex(src[*i]) * 16 + var_hex(src[*i + 1]));
        *i += 2;
        return c;
    }
    *bad = true;
    return c;
}

size_t
wf_var_decode(char *dst, const char *src, size_t n, bool plus)
{
    return wf_var_decode_n(dst, n, src, n, plus);
}

size_t
wf_var_decode_n(char *dst, size_t cap, const char *src, size_t n, bool plus)
{
    size_t i = 0;
    size_t len = 0;
    bool bad = false;

    while (i < n) {
        char c = var_decode_one(src, n, &i, plus, &bad);

        if (len < cap) {
            dst[len] = c;
        }
        len++;
    }
    return len;
}

bool
wf_var_decode_strict(char *dst, const char *src, size_t n, bool plus,
                     size_t *len)
{
    size_t i = 0;
    bool bad = false;

    *len = 0;
    while (i < n && !bad) {
        dst[(*len)++] = var_decode_one(src, n, &i, plus, &bad);
    }
    return !bad;
}

bool
wf_var_decoded_eq(wf_str_t raw, wf_str_t want)
{
    size_t i = 0;
    size_t k = 0;
    bool bad = false;

    if (raw.len < want.len) {
        return false;
    }
    while (i < raw.len) {
        char c = var_decode_one(raw.data, raw.len, &i, true, &bad);

        if (k == want.len || c != want.data[k]) {
            return false;
        }
        k++;
    }
    return k == want.len;
}

bool
wf_var_arg_next(wf_str_t query, size_t *pos, wf_var_pair_t *arg)
{
    while (*pos < query.len) {
        const char *s = query.data + *pos;
        size_t n = query.len - *pos;
        const char *amp = memchr(s, '&', n);
        size_t seg = amp != NULL ? (size_t)(amp - s) : n;
        const char *eq = memchr(s, '=', seg);

        *pos += seg + (amp != NULL);
        if (eq == NULL) {
            arg->name = wf_str_make(s, seg);
            arg->value = wf_str_make(s + seg, 0);
        } else {
            arg->name = wf_str_make(s, (size_t)(eq - s));
            arg->value = wf_str_make(eq + 1, seg - (size_t)(eq - s) - 1);
        }
        if (seg > 0 && (arg->name.len > 0 || arg->value.len > 0)) {
            return true;
        }
    }
    return false;
}

/* Finds the next cookie in v[*pos..); false at the end of v. */
static bool
var_cookie_in(wf_str_t v, size_t *pos, wf_var_pair_t *cookie)
{
    while (*pos < v.len) {
        const char *s = v.data + *pos;
        size_t n = v.len - *pos;
        const char *semi = memchr(s, ';', n);
        size_t seg = semi != NULL ? (size_t)(semi - s) : n;
        const char *eq = memchr(s, '=', seg);
        const char *end = s + seg;

        *pos += seg + (semi != NULL);
        if (eq == NULL) {
            continue;
        }
        while (*s == ' ') {
            s++;
        }
        while (end > eq + 1 && end[-1] == ' ') {
            end--;
        }
        cookie->name = wf_str_make(s, (size_t)(eq - s));
        cookie->value = wf_str_make(eq + 1, (size_t)(end - eq - 1));
        return true;
    }
    return false;
}

bool
wf_var_cookie_next(const wf_h1_head_t *h, unsigned *field, size_t *pos,
                   wf_var_pair_t *cookie)
{
    if (h == NULL) {
        return false;
    }
    for (; *field < h->nheaders; (*field)++, *pos = 0) {
        const wf_h1_header_t *f = &h->headers[*field];

        if (!wf_str_eq_nocase(f->name, wf_string("Cookie"))) {
            continue;
        }
        if (var_cookie_in(f->value, pos, cookie)) {
            return true;
        }
    }
    return false;
}

bool
wf_var_header_name_eq(wf_str_t field, wf_str_t name)
{
    if (field.len != name.len) {
        return false;
    }
    for (size_t i = 0; i < name.len; i++) {
        char f = wf_lower(field.data[i]);
        char c = name.data[i] == '_' ? '-' : wf_lower(name.data[i]);

        if (f != c) {
            return false;
        }
    }
    return true;
}

/* An IPv4 address in dotted decimal, as inet_ntop() writes it but without
 * its sprintf(): the access log renders one per line. */
static size_t
var_ipv4_text(const struct in_addr *in, char *buf)
{
    const unsigned char *a = (const unsigned char *)&in->s_addr;
    size_t n = 0;

    for (size_t i = 0; i < 4; i++) {
        unsigned v = a[i];

        if (v >= 100) {
            buf[n++] = (char)('0' + v / 100);
        }
        if (v >= 10) {
            buf[n++] = (char)('0' + v / 10 % 10);
        }
        buf[n++] = (char)('0' + v % 10);
        buf[n++] = '.';
    }
    buf[--n] = '\0';
    return n;
}

size_t
wf_var_addr_text(const wf_sockaddr_t *sa, char *buf, size_t cap)
{
    const void *src;

    if (sa == NULL || cap < 64) {
        return 0;
    }
    switch (sa->sa.sa_family) {
    case AF_INET:
        return var_ipv4_text(&sa->sin.sin_addr, buf);
    case AF_INET6:
        src = &sa->sin6.sin6_addr;
        break;
    case AF_UNIX:
        memcpy(buf, "unix:", 5);
        return 5;
    default:
        return 0;
    }
    if (inet_ntop(sa->sa.sa_family, src, buf, (socklen_t)cap) == NULL) {
        return 0;
    }
    return strlen(buf);
}

/* ---- TLS variables ------------------------------------------------------ */

static const struct {
    const char *name;
    wf_tls_var_t var;
} var_tls[] = {
    {"tls_protocol", WF_TLS_VAR_PROTOCOL},
    {"tls_cipher", WF_TLS_VAR_CIPHER},
    {"tls_sni", WF_TLS_VAR_SNI},
    {"tls_client_verify", WF_TLS_VAR_CLIENT_VERIFY},
    {"tls_client_verified", WF_TLS_VAR_CLIENT_VERIFIED},
    {"tls_client_subject", WF_TLS_VAR_CLIENT_SUBJECT},
    {"tls_client_issuer", WF_TLS_VAR_CLIENT_ISSUER},
    {"tls_client_serial", WF_TLS_VAR_CLIENT_SERIAL},
    {"tls_client_fingerprint", WF_TLS_VAR_CLIENT_FINGERPRINT},
    {"tls_client_cn", WF_TLS_VAR_CLIENT_CN},
};

int
wf_var_tls_find(const char *name, size_t len)
{
    for (size_t i = 0; i < wf_nitems(var_tls); i++) {
        if (strlen(var_tls[i].name) == len
            && memcmp(var_tls[i].name, name, len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

bool
wf_var_tls_get(const wf_route_req_t *rq, int idx, wf_str_t *v)
{
    if (idx < 0 || (size_t)idx >= wf_nitems(var_tls) || rq->xp == NULL) {
        return false;
    }
    return wf_tls_var_get(rq->xp, var_tls[idx].var, v);
}

static const struct {
    wf_str_t field;
    wf_tls_var_t var;
} var_tls_fields[] = {
    {wf_string("X-Client-Verify"), WF_TLS_VAR_CLIENT_VERIFY},
    {wf_string("X-Client-Subject"), WF_TLS_VAR_CLIENT_SUBJECT},
    {wf_string("X-Client-Issuer"), WF_TLS_VAR_CLIENT_ISSUER},
    {wf_string("X-Client-Serial"), WF_TLS_VAR_CLIENT_SERIAL},
    {wf_string("X-Client-Fingerprint"), WF_TLS_VAR_CLIENT_FINGERPRINT},
};

/* Appends "field: v" CRLF at buf[*n] if it fits whole in cap; bytes that
 * could split a field (CR, LF, NUL) are left out (RFC 2253 text escapes
 * them anyway). */
static void
var_field_put(char *buf, size_t cap, size_t *n, wf_str_t field, wf_str_t v)
{
    size_t k = *n;

    if (k + field.len + v.len + 4 > cap) {
        return;
    }
    memcpy(buf + k, field.data, field.len);
    k += field.len;
    buf[k++] = ':';
    buf[k++] = ' ';
    for (size_t i = 0; i < v.len; i++) {
        if (v.data[i] != '\r' && v.data[i] != '\n' && v.data[i] != '\0') {
            buf[k++] = v.data[i];
        }
    }
    buf[k++] = '\r';
    buf[k++] = '\n';
    *n = k;
}

size_t
wf_var_tls_client_fields(const wf_route_req_t *rq, char *buf, size_t cap)
{
    size_t n = 0;
    wf_str_t v;

    for (size_t i = 0; rq->xp != NULL && i < wf_nitems(var_tls_fields); i++) {
        if (wf_tls_var_get(rq->xp, var_tls_fields[i].var, &v)) {
            var_field_put(buf, cap, &n, var_tls_fields[i].field, v);
        } else if (i == 0 && wf_xprt_is_tls(rq->xp)) {
            var_field_put(buf, cap, &n, var_tls_fields[i].field,
                          wf_string("NONE"));
        }
    }
    return n;
}

bool
wf_var_tls_is_client_field(wf_str_t name)
{
    for (size_t i = 0; i < wf_nitems(var_tls_fields); i++) {
        if (wf_str_eq_nocase(name, var_tls_fields[i].field)) {
            return true;
        }
    }
    return false;
}
