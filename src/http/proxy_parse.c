#include "http/proxy_parse.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "http/var.h"

/* RFC 9110 5.6.2 tchar, as a table (a field name is checked byte by
 * byte on every response). */
#define PP_T(c) [(unsigned char)(c)] = true
static const bool pp_tchars[256] = {
    PP_T('!'), PP_T('#'), PP_T('$'), PP_T('%'), PP_T('&'), PP_T('\''),
    PP_T('*'), PP_T('+'), PP_T('-'), PP_T('.'), PP_T('^'), PP_T('_'),
    PP_T('`'), PP_T('|'), PP_T('~'), PP_T('0'), PP_T('1'), PP_T('2'),
    PP_T('3'), PP_T('4'), PP_T('5'), PP_T('6'), PP_T('7'), PP_T('8'),
    PP_T('9'), PP_T('a'), PP_T('b'), PP_T('c'), PP_T('d'), PP_T('e'),
    PP_T('f'), PP_T('g'), PP_T('h'), PP_T('i'), PP_T('j'), PP_T('k'),
    PP_T('l'), PP_T('m'), PP_T('n'), PP_T('o'), PP_T('p'), PP_T('q'),
    PP_T('r'), PP_T('s'), PP_T('t'), PP_T('u'), PP_T('v'), PP_T('w'),
    PP_T('x'), PP_T('y'), PP_T('z'), PP_T('A'), PP_T('B'), PP_T('C'),
    PP_T('D'), PP_T('E'), PP_T('F'), PP_T('G'), PP_T('H'), PP_T('I'),
    PP_T('J'), PP_T('K'), PP_T('L'), PP_T('M'), PP_T('N'), PP_T('O'),
    PP_T('P'), PP_T('Q'), PP_T('R'), PP_T('S'), PP_T('T'), PP_T('U'),
    PP_T('V'), PP_T('W'), PP_T('X'), PP_T('Y'), PP_T('Z'),
};
#undef PP_T

static inline bool
pp_tchar(unsigned char c)
{
    return pp_tchars[c];
}

/* field-vchar, SP, HTAB or obs-text. */
static bool
pp_fchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Finds the end of the head from h->scanned: returns the offset just past
 * the empty line, 0 when it is not there yet. */
static size_t
pp_head_end(wf_proxy_resp_t *h, const char *buf, size_t len)
{
    size_t i = h->scanned;

    for (; i < len; i++) {
        const char *nl = memchr(buf + i, '\n', len - i);

        if (nl == NULL) {
            break;
        }
        i = (size_t)(nl - buf);
        if (i >= 1 && buf[i - 1] == '\n') {
            return i + 1;
        }
        if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n') {
            return i + 1;
        }
    }
    h->scanned = len > 2 ? len - 2 : 0;
    return 0;
}

/* One line [p, e) without its line end; a CR before LF was stripped. */
static int
pp_status_line(wf_proxy_resp_t *h, const char *p, const char *e)
{
    if (e - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9'
        || p[8] != ' ') {
        return WF_ERROR;
    }
    h->version = p[7] == '0' ? 10 : 11;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return WF_ERROR;
        }
    }
    h->status =
        (unsigned)((p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0'));
    if (h->status < 100 || (e - p > 12 && p[12] != ' ')) {
        return WF_ERROR;
    }
    for (p += 12; p < e; p++) {
        if (!pp_fchar((unsigned char)*p)) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static bool
pp_digits(wf_str_t v, int64_t *out)
{
    int64_t n = 0;

    if (v.len == 0 || v.len > 18) {
        return false;
    }
    for (size_t i = 0; i < v.len; i++) {
        if (v.data[i] < '0' || v.data[i] > '9') {
            return false;
        }
        n = n * 10 + (v.data[i] - '0');
    }
    *out = n;
    return true;
}

/* Is the last element of a comma list "chunked"? (No other coding is
 * accepted: "gzip, chunked" is refused too, as the proxy would have to
 * pass the inner coding through, which Wharf does not do yet.) */
static bool
pp_chunked(wf_str_t v)
{
    return v.len == 7 && wf_str_eq_nocase(v, wf_string("chunked"));
}

/* Looks for token tok (lowercase) in a comma list. */
static bool
pp_list_has(wf_str_t v, wf_str_t tok)
{
    size_t i = 0;

    while (i < v.len) {
        size_t s, e;

        while (i < v.len
               && (v.data[i] == ' ' || v.data[i] == '\t' || v.data[i] == ',')) {
            i++;
        }
        s = i;
        while (i < v.len && v.data[i] != ',') {
            i++;
        }
        e = i;
        while (e > s && (v.data[e - 1] == ' ' || v.data[e - 1] == '\t')) {
            e--;
        }
        if (wf_str_eq_nocase(wf_str_make(v.data + s, e - s), tok)) {
            return true;
        }
    }
    return false;
}

/* The framing and persistence fields. */
static int
pp_field_meaning(wf_proxy_resp_t *h, const wf_h1_header_t *f, bool *te,
                 bool *ka, bool *close)
{
    int64_t n;

    if (wf_str_eq_nocase(f->name, wf_string("content-length"))) {
        if (!pp_digits(f->value, &n)
            || (h->content_length >= 0 && h->content_length != n)) {
            return WF_ERROR;
        }
        h->content_length = n;
    } else if (wf_str_eq_nocase(f->name, wf_string("transfer-encoding"))) {
        if (*te || !pp_chunked(f->value)) {
            return WF_ERROR;
        }
        *te = true;
    } else if (wf_str_eq_nocase(f->name, wf_string("connection"))) {
        *close |= pp_list_has(f->value, wf_string("close"));
        *ka |= pp_list_has(f->value, wf_string("keep-alive"));
    }
    return WF_OK;
}

static int
pp_field(wf_proxy_resp_t *h, const char *p, const char *e)
{
    const char *colon = p;
    wf_h1_header_t *f;

    while (colon < e && pp_tchar((unsigned char)*colon)) {
        colon++;
    }
    if (colon == p || colon == e || *colon != ':'
        || h->nheaders == WF_H1_MAX_HEADERS) {
        return WF_ERROR; /* also a space before ':' or obs-fold */
    }
    f = &h->headers[h->nheaders++];
    f->name = wf_str_make(p, (size_t)(colon - p));
    for (p = colon + 1; p < e; p++) {
        if (!pp_fchar((unsigned char)*p)) {
            return WF_ERROR;
        }
    }
    p = colon + 1;
    while (p < e && (*p == ' ' || *p == '\t')) {
        p++;
    }
    while (e > p && (e[-1] == ' ' || e[-1] == '\t')) {
        e--;
    }
    f->value = wf_str_make(p, (size_t)(e - p));
    return WF_OK;
}

int
wf_proxy_resp_parse(wf_proxy_resp_t *h, const char *buf, size_t len, size_t max)
{
    size_t end = pp_head_end(h, buf, len < max ? len : max);
    const char *p = buf;
    bool te = false, ka = false, close = false;

    if (end == 0) {
        return len >= max ? WF_ERROR : WF_AGAIN;
    }
    h->nheaders = 0;
    h->content_length = -1;
    for (bool first = true;; first = false) {
        const char *nl = memchr(p, '\n', (size_t)(buf + end - p));
        const char *e = nl > p && nl[-1] == '\r' ? nl - 1 : nl;

        /* (A CR or NUL inside [p, e) is refused by the checks of each
         * byte: tchar in names, field-vchar in values and the reason.) */
        if (e == p) {
            break; /* the empty line */
        }
        if (first ? pp_status_line(h, p, e) != WF_OK
                  : pp_field(h, p, e) != WF_OK
                        || pp_field_meaning(h, &h->headers[h->nheaders - 1],
                                            &te, &ka, &close)
                               != WF_OK) {
            return WF_ERROR;
        }
        p = nl + 1;
    }
    if (h->nheaders == 0 && p == buf) {
        return WF_ERROR;
    }
    if (te && h->content_length >= 0) {
        return WF_ERROR;
    }
    h->chunked = te;
    h->keep_alive = h->version == 10 ? ka && !close : !close;
    h->head_len = end;
    return WF_OK;
}

bool
wf_proxy_resp_has_token(const wf_proxy_resp_t *h, wf_str_t name, wf_str_t tok)
{
    for (unsigned i = 0; i < h->nheaders; i++) {
        if (wf_str_eq_nocase(h->headers[i].name, name)
            && pp_list_has(h->headers[i].value, tok)) {
            return true;
        }
    }
    return false;
}

static const wf_str_t pp_hop[] = {
    wf_string("connection"),       wf_string("keep-alive"),
    wf_string("proxy-connection"), wf_string("te"),
    wf_string("trailer"),          wf_string("transfer-encoding"),
    wf_string("upgrade"),
};

bool
wf_proxy_hop_by_hop(wf_str_t name, const wf_str_t *conn, size_t n)
{
    for (size_t i = 0; i < wf_nitems(pp_hop); i++) {
        if (wf_str_eq_nocase(name, pp_hop[i])) {
            return true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (pp_list_has(conn[i], name)) {
            return true;
        }
    }
    return false;
}

/* ---- the request head for a backend ------------------------------------ */

static const wf_str_t pp_forwarding[] = {
    wf_string("x-forwarded-for"),
    wf_string("x-forwarded-proto"),
    wf_string("x-forwarded-host"),
    wf_string("forwarded"),
};

bool
wf_proxy_is_forwarding(wf_str_t name)
{
    for (size_t i = 0; i < wf_nitems(pp_forwarding); i++) {
        if (wf_str_eq_nocase(name, pp_forwarding[i])) {
            return true;
        }
    }
    return false;
}

/* The values of h's Connection fields into conn[]; returns their count. */
static size_t
pp_connection(const wf_h1_head_t *h, wf_str_t *conn)
{
    size_t n = 0;

    for (unsigned i = 0; i < h->nheaders; i++) {
        if (wf_str_eq_nocase(h->headers[i].name, wf_string("connection"))) {
            conn[n++] = h->headers[i].value;
        }
    }
    return n;
}

/* Is the client's field f one the proxy does not copy? */
static bool
pp_req_skip(const wf_h1_header_t *f, const wf_str_t *conn, size_t nconn,
            const wf_proxy_req_opts_t *o)
{
    return wf_proxy_hop_by_hop(f->name, conn, nconn)
           || wf_str_eq_nocase(f->name, wf_string("content-length"))
           || wf_str_eq_nocase(f->name, wf_string("expect"))
           || wf_str_eq_nocase(f->name, wf_string("host"))
           || (o->drop_forwarding && wf_proxy_is_forwarding(f->name))
           || (o->drop_client && wf_var_tls_is_client_field(f->name));
}

size_t
wf_proxy_req_head_size(const wf_h1_head_t *h, const wf_proxy_req_opts_t *o)
{
    size_t n = h->method.len + h->path.len + h->query.len + h->host.len
               + o->host.len + o->extra.len + 128 + 48;

    for (unsigned i = 0; i < h->nheaders; i++) {
        n += h->headers[i].name.len + h->headers[i].value.len + 4;
    }
    return n;
}

static char *
pp_put(char *p, wf_str_t s)
{
    if (s.len == 0) {
        return p; /* s.data may be NULL */
    }
    memcpy(p, s.data, s.len);
    return p + s.len;
}

#define pp_put_lit(p, lit) pp_put((p), wf_string(lit))

/* The Host value to send: o->host, an absolute-form target's authority,
 * the client's Host field (as received, port included), or empty. */
static wf_str_t
pp_host(const wf_h1_head_t *h, const wf_proxy_req_opts_t *o)
{
    if (o->host.len > 0) {
        return o->host;
    }
    if (h->authority.len > 0) {
        return h->authority;
    }
    for (unsigned i = 0; i < h->nheaders; i++) {
        if (wf_str_eq_nocase(h->headers[i].name, wf_string("host"))) {
            return h->headers[i].value;
        }
    }
    return wf_str_make("", 0);
}

size_t
wf_proxy_req_head_write(char *out, const wf_h1_head_t *h,
                        const wf_proxy_req_opts_t *o)
{
    wf_str_t conn[WF_H1_MAX_HEADERS];
    size_t nconn = pp_connection(h, conn);
    char *p = pp_put(out, h->method);

    p = pp_put_lit(p, " ");
    p = pp_put(p, h->path);
    if (h->has_query) {
        p = pp_put_lit(p, "?");
        p = pp_put(p, h->query);
    }
    p = pp_put_lit(p, " HTTP/1.1\r\nHost: ");
    p = pp_put(p, pp_host(h, o));
    p = pp_put_lit(p, "\r\n");
    for (unsigned i = 0; i < h->nheaders; i++) {
        const wf_h1_header_t *f = &h->headers[i];

        if (pp_req_skip(f, conn, nconn, o)) {
            continue;
        }
        p = pp_put(p, f->name);
        p = pp_put_lit(p, ": ");
        p = pp_put(p, f->value);
        p = pp_put_lit(p, "\r\n");
    }
    if (h->chunked) {
        p = pp_put_lit(p, "Transfer-Encoding: chunked\r\n");
    } else if (h->content_length >= 0) {
        p += sprintf(p, "Content-Length: %lld\r\n",
                     (long long)h->content_length);
    }
    p = pp_put(p, o->extra);
    if (o->upgrade) {
        p = pp_put_lit(p, "Upgrade: websocket\r\nConnection: upgrade\r\n");
    } else if (!o->keep_alive) {
        p = pp_put_lit(p, "Connection: close\r\n");
    }
    p = pp_put_lit(p, "\r\n");
    return (size_t)(p - out);
}
