#include "http/forwarded.h"

#include <arpa/inet.h>
#include <string.h>

#include "core/common.h"
#include "http/route_pattern.h"

static bool
fwd_is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t';
}

/* Copies s into a NUL-terminated buf; false when it does not fit. */
static bool
fwd_cstr(wf_str_t s, char *buf, size_t cap)
{
    if (s.len == 0 || s.len >= cap) {
        return false;
    }
    memcpy(buf, s.data, s.len);
    buf[s.len] = '\0';
    return true;
}

/* True when s is a decimal port, 0..65535. */
static bool
fwd_port_ok(const char *s)
{
    unsigned long v = 0;

    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9'
            || (v = v * 10 + (unsigned)(*s - '0')) > 65535) {
            return false;
        }
    }
    return true;
}

static bool
fwd_parse_v6(char *buf, wf_sockaddr_t *sa)
{
    char *p = buf;
    char *end;

    if (buf[0] == '[') {
        end = strchr(buf, ']');
        if (end == NULL
            || (end[1] != '\0' && (end[1] != ':' || !fwd_port_ok(end + 2)))) {
            return false;
        }
        *end = '\0';
        p = buf + 1;
    }
    sa->sin6.sin6_family = AF_INET6;
    return inet_pton(AF_INET6, p, &sa->sin6.sin6_addr) == 1;
}

bool
wf_forwarded_addr_parse(wf_str_t s, wf_sockaddr_t *sa)
{
    char buf[64];
    char *colon;

    memset(sa, 0, sizeof(*sa));
    if (!fwd_cstr(s, buf, sizeof(buf))) {
        return false;
    }
    colon = strchr(buf, ':');
    if (buf[0] == '[' || (colon != NULL && strchr(colon + 1, ':') != NULL)) {
        return fwd_parse_v6(buf, sa);
    }
    if (colon != NULL) {
        if (!fwd_port_ok(colon + 1)) {
            return false;
        }
        *colon = '\0';
    }
    sa->sin.sin_family = AF_INET;
    return inet_pton(AF_INET, buf, &sa->sin.sin_addr) == 1;
}

/* Walks v from its end: the next address token left of *end, or false when
 * none is left. */
static bool
fwd_prev_token(wf_str_t v, size_t *end, wf_str_t *tok)
{
    size_t e = *end;
    size_t b;

    while (e > 0 && fwd_is_sep(v.data[e - 1])) {
        e--;
    }
    if (e == 0) {
        *end = 0;
        return false;
    }
    b = e;
    while (b > 0 && !fwd_is_sep(v.data[b - 1])) {
        b--;
    }
    *tok = wf_str_make(v.data + b, e - b);
    *end = b;
    return true;
}

/* Walks one field right to left.  Returns true when the walk must stop
 * (an untrusted or unparsable address, or not recursive). */
static bool
fwd_walk_field(const wf_forwarded_t *f, wf_str_t v, wf_forwarded_result_t *out)
{
    size_t end = v.len;
    wf_str_t tok;
    wf_sockaddr_t sa;

    while (fwd_prev_token(v, &end, &tok)) {
        if (!wf_forwarded_addr_parse(tok, &sa)) {
            return true;
        }
        out->remote = sa;
        out->has_remote = true;
        if (!f->recursive || !wf_addr_set_match(f->source, &sa)) {
            return true;
        }
    }
    return false;
}

static void
fwd_client_ip(const wf_forwarded_t *f, const wf_h1_head_t *h,
              wf_forwarded_result_t *out)
{
    for (unsigned i = h->nheaders; i > 0; i--) {
        const wf_h1_header_t *field = &h->headers[i - 1];

        if (!wf_str_eq_nocase(field->name, f->client_ip)) {
            continue;
        }
        if (fwd_walk_field(f, field->value, out) || !f->recursive) {
            return;
        }
    }
}

static void
fwd_protocol(const wf_forwarded_t *f, const wf_h1_head_t *h,
             wf_forwarded_result_t *out)
{
    for (unsigned i = h->nheaders; i > 0; i--) {
        const wf_h1_header_t *field = &h->headers[i - 1];

        if (!wf_str_eq_nocase(field->name, f->protocol)) {
            continue;
        }
        if (wf_str_eq_nocase(field->value, wf_string("http"))) {
            out->has_scheme = true;
            out->tls = false;
        } else if (wf_str_eq_nocase(field->value, wf_string("https"))
                   || wf_str_eq_nocase(field->value, wf_string("on"))) {
            out->has_scheme = true;
            out->tls = true;
        }
        return;
    }
}

void
wf_forwarded_apply(const wf_forwarded_t *f, const wf_h1_head_t *h,
                   const wf_sockaddr_t *peer, wf_forwarded_result_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!wf_addr_set_match(f->source, peer)) {
        return;
    }
    if (f->client_ip.len > 0) {
        fwd_client_ip(f, h, out);
    }
    if (f->protocol.len > 0) {
        fwd_protocol(f, h, out);
    }
}
