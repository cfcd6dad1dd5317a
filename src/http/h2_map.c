/* HTTP/2 header lists to and from the exchange's HTTP/1.1 head text.  See
 * http/h2_map.h and docs/internals/h2.md. */
#include "http/h2_map.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"

#define H2_MAP_FIELD_OVERHEAD 32 /* RFC 9113 6.5.2 */

/* The pseudo-headers, by name. */
static const struct {
    const char *name;
    size_t len;
} h2_pseudo[WF_H2_PSEUDO_N] = {
    [WF_H2_PSEUDO_METHOD] = {":method", 7},
    [WF_H2_PSEUDO_SCHEME] = {":scheme", 7},
    [WF_H2_PSEUDO_AUTHORITY] = {":authority", 10},
    [WF_H2_PSEUDO_PATH] = {":path", 5},
    [WF_H2_PSEUDO_PROTOCOL] = {":protocol", 9},
};

/* Connection-specific fields (RFC 9113 8.2.2): malformed in a request,
 * dropped from a response. */
static const wf_str_t h2_conn_fields[] = {
    wf_string("connection"),       wf_string("keep-alive"),
    wf_string("proxy-connection"), wf_string("transfer-encoding"),
    wf_string("upgrade"),
};

static bool
h2_is_conn_field(const char *name, size_t len)
{
    for (size_t i = 0; i < wf_nitems(h2_conn_fields); i++) {
        if (h2_conn_fields[i].len == len
            && strncasecmp(h2_conn_fields[i].data, name, len) == 0) {
            return true;
        }
    }
    return false;
}

static int
h2_buf_add(wf_h2_buf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = wf_max(b->cap * 2, b->len + n + 256);
        char *d = realloc(b->data, cap);

        if (d == NULL) {
            return WF_H2_MAP_NOMEM;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return WF_H2_MAP_OK;
}

static void
h2_buf_free(wf_h2_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void
wf_h2_map_req_init(wf_h2_map_req_t *m, size_t max)
{
    memset(m, 0, sizeof(*m));
    m->max = max;
}

void
wf_h2_map_req_reset(wf_h2_map_req_t *m, size_t max)
{
    wf_h2_buf_t keep[3] = {m->fields, m->pseudo, m->cookie};

    memset(m, 0, sizeof(*m));
    m->max = max;
    m->fields = (wf_h2_buf_t){keep[0].data, 0, keep[0].cap};
    m->pseudo = (wf_h2_buf_t){keep[1].data, 0, keep[1].cap};
    m->cookie = (wf_h2_buf_t){keep[2].data, 0, keep[2].cap};
}

void
wf_h2_map_req_fini(wf_h2_map_req_t *m)
{
    h2_buf_free(&m->fields);
    h2_buf_free(&m->pseudo);
    h2_buf_free(&m->cookie);
}

static int
h2_map_pseudo(wf_h2_map_req_t *m, const uint8_t *name, size_t nlen,
              const uint8_t *value, size_t vlen)
{
    for (unsigned i = 0; i < WF_H2_PSEUDO_N; i++) {
        if (h2_pseudo[i].len != nlen
            || memcmp(h2_pseudo[i].name, name, nlen) != 0) {
            continue;
        }
        if (m->regular || (m->seen & (1u << i)) != 0) {
            return WF_H2_MAP_INVALID; /* RFC 9113 8.3 */
        }
        m->seen |= (uint8_t)(1u << i);
        m->poff[i] = (uint32_t)m->pseudo.len;
        m->plen[i] = (uint32_t)vlen;
        return vlen > 0 ? h2_buf_add(&m->pseudo, value, vlen) : WF_H2_MAP_OK;
    }
    return WF_H2_MAP_INVALID; /* an unknown pseudo-header */
}

/* A field name per RFC 9113 8.2.1: a token, no uppercase. */
static bool
h2_name_ok(const uint8_t *name, size_t nlen)
{
    if (nlen == 0) {
        return false;
    }
    for (size_t i = 0; i < nlen; i++) {
        if ((name[i] >= 'A' && name[i] <= 'Z') || name[i] <= 0x20
            || name[i] >= 0x7f || name[i] == ':') {
            return false;
        }
    }
    return true;
}

static int
h2_map_cookie(wf_h2_map_req_t *m, const uint8_t *value, size_t vlen)
{
    int rc = WF_H2_MAP_OK;

    if (m->cookie.len > 0) {
        rc = h2_buf_add(&m->cookie, "; ", 2);
    }
    return rc == WF_H2_MAP_OK ? h2_buf_add(&m->cookie, value, vlen) : rc;
}

int
wf_h2_map_req_field(wf_h2_map_req_t *m, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen)
{
    int rc;

    m->size += nlen + vlen + H2_MAP_FIELD_OVERHEAD;
    if (m->size > m->max) {
        return WF_H2_MAP_TOO_BIG;
    }
    if (nlen > 0 && name[0] == ':') {
        return h2_map_pseudo(m, name, nlen, value, vlen);
    }
    m->regular = true;
    if (!h2_name_ok(name, nlen) || h2_is_conn_field((const char *)name, nlen)
        || memchr(value, '\r', vlen) != NULL
        || memchr(value, '\n', vlen) != NULL) {
        return WF_H2_MAP_INVALID;
    }
    if (nlen == 2 && memcmp(name, "te", 2) == 0
        && (vlen != 8 || strncasecmp((const char *)value, "trailers", 8))) {
        return WF_H2_MAP_INVALID; /* RFC 9113 8.2.2 */
    }
    if (nlen == 6 && memcmp(name, "cookie", 6) == 0) {
        return h2_map_cookie(m, value, vlen);
    }
    if (nlen == 4 && memcmp(name, "host", 4) == 0) {
        m->has_host = true;
    }
    rc = h2_buf_add(&m->fields, name, nlen);
    if (rc == WF_H2_MAP_OK) {
        rc = h2_buf_add(&m->fields, ": ", 2);
    }
    if (rc == WF_H2_MAP_OK) {
        rc = h2_buf_add(&m->fields, value, vlen);
    }
    return rc == WF_H2_MAP_OK ? h2_buf_add(&m->fields, "\r\n", 2) : rc;
}

static wf_str_t
h2_pseudo_get(const wf_h2_map_req_t *m, wf_h2_pseudo_t p)
{
    return wf_str_make(m->pseudo.data + m->poff[p], m->plen[p]);
}

/* The pseudo-headers a request must have (RFC 9113 8.3.1; CONNECT:
 * 8.5; extended CONNECT: RFC 8441 4). */
static bool
h2_map_pseudo_ok(const wf_h2_map_req_t *m)
{
    uint8_t all = (1u << WF_H2_PSEUDO_METHOD) | (1u << WF_H2_PSEUDO_SCHEME)
                  | (1u << WF_H2_PSEUDO_PATH);
    wf_str_t method = h2_pseudo_get(m, WF_H2_PSEUDO_METHOD);
    bool connect = method.len == 7 && memcmp(method.data, "CONNECT", 7) == 0;

    if ((m->seen & (1u << WF_H2_PSEUDO_METHOD)) == 0 || method.len == 0) {
        return false;
    }
    if ((m->seen & (1u << WF_H2_PSEUDO_PROTOCOL)) != 0 && !connect) {
        return false;
    }
    if (connect && (m->seen & (1u << WF_H2_PSEUDO_PROTOCOL)) == 0) {
        /* Plain CONNECT: :authority only. */
        return m->seen
               == ((1u << WF_H2_PSEUDO_METHOD)
                   | (1u << WF_H2_PSEUDO_AUTHORITY));
    }
    return (m->seen & all) == all && m->plen[WF_H2_PSEUDO_PATH] > 0;
}

wf_str_t
wf_h2_map_req_protocol(const wf_h2_map_req_t *m)
{
    return (m->seen & (1u << WF_H2_PSEUDO_PROTOCOL)) != 0
               ? h2_pseudo_get(m, WF_H2_PSEUDO_PROTOCOL)
               : wf_null_str;
}

/* A field line of m->fields the head leaves out: Host when :authority
 * came, any Sec-WebSocket-Key of a WebSocket handshake (the mux makes
 * its own). */
static bool
h2_map_line_dropped(const char *p, size_t n, bool has_auth, bool ws)
{
    return (has_auth && n >= 5 && memcmp(p, "host:", 5) == 0)
           || (ws && n >= 18 && memcmp(p, "sec-websocket-key:", 18) == 0);
}

/* Writes the head; ws_key (NULL: none) makes it a WebSocket handshake. */
static int
h2_map_head_build(wf_h2_map_req_t *m, const wf_str_t *ws_key, char **out,
                  size_t *outlen)
{
    static const char ws_fields[] =
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
    wf_str_t method = h2_pseudo_get(m, WF_H2_PSEUDO_METHOD);
    wf_str_t path = h2_pseudo_get(m, WF_H2_PSEUDO_PATH);
    wf_str_t auth = h2_pseudo_get(m, WF_H2_PSEUDO_AUTHORITY);
    bool has_auth = (m->seen & (1u << WF_H2_PSEUDO_AUTHORITY)) != 0;
    wf_h2_buf_t b = {0};
    int rc = WF_H2_MAP_OK;

    if (!h2_map_pseudo_ok(m)) {
        return WF_H2_MAP_INVALID;
    }
    if (path.len == 0) {
        path = auth; /* CONNECT's authority-form */
    }
    if (ws_key != NULL) {
        method = wf_str_make("GET", 3);
    }
    rc |= h2_buf_add(&b, method.data, method.len);
    rc |= h2_buf_add(&b, " ", 1);
    rc |= h2_buf_add(&b, path.data, path.len);
    rc |= h2_buf_add(&b, " HTTP/1.1\r\n", 11);
    if (has_auth) {
        rc |= h2_buf_add(&b, "Host: ", 6);
        rc |= h2_buf_add(&b, auth.data, auth.len);
        rc |= h2_buf_add(&b, "\r\n", 2);
    }
    if (m->fields.len > 0) {
        /* With :authority, a Host field is dropped (RFC 9113 8.3.1). */
        const char *p = m->fields.data;
        const char *end = p + m->fields.len;

        while (p < end) {
            const char *eol = memchr(p, '\n', (size_t)(end - p)) + 1;

            if (!h2_map_line_dropped(p, (size_t)(eol - p), has_auth,
                                     ws_key != NULL)) {
                rc |= h2_buf_add(&b, p, (size_t)(eol - p));
            }
            p = eol;
        }
    }
    if (m->cookie.len > 0) {
        rc |= h2_buf_add(&b, "cookie: ", 8);
        rc |= h2_buf_add(&b, m->cookie.data, m->cookie.len);
        rc |= h2_buf_add(&b, "\r\n", 2);
    }
    if (ws_key != NULL) {
        rc |= h2_buf_add(&b, ws_fields, sizeof(ws_fields) - 1);
        rc |= h2_buf_add(&b, ws_key->data, ws_key->len);
        rc |= h2_buf_add(&b, "\r\n", 2);
    }
    rc |= h2_buf_add(&b, "\r\n", 2);
    if (rc != WF_H2_MAP_OK) {
        h2_buf_free(&b);
        return WF_H2_MAP_NOMEM;
    }
    *out = b.data;
    *outlen = b.len;
    return WF_H2_MAP_OK;
}

int
wf_h2_map_req_head(wf_h2_map_req_t *m, char **out, size_t *outlen)
{
    return h2_map_head_build(m, NULL, out, outlen);
}

int
wf_h2_map_req_head_ws(wf_h2_map_req_t *m, wf_str_t key, char **out,
                      size_t *outlen)
{
    return h2_map_head_build(m, &key, out, outlen);
}

size_t
wf_h2_map_resp_count(const char *head, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        n += head[i] == '\n';
    }
    return n;
}

/* One "Name: value\r\n" line at p[0..n) (CRLF excluded) into f, with its
 * name lowercased.  Returns false when it is not a field line. */
static bool
h2_map_resp_line(char *p, size_t n, wf_h2_map_field_t *f)
{
    char *colon = memchr(p, ':', n);
    char *v;
    char *end = p + n;

    if (colon == NULL || colon == p) {
        return false;
    }
    for (char *q = p; q < colon; q++) {
        if (*q >= 'A' && *q <= 'Z') {
            *q = (char)(*q + ('a' - 'A'));
        }
    }
    v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    *f = (wf_h2_map_field_t){(const uint8_t *)p, (size_t)(colon - p),
                             (const uint8_t *)v, (size_t)(end - v)};
    return true;
}

size_t
wf_h2_map_resp(char *head, size_t len, wf_h2_map_field_t *out, size_t cap)
{
    char *p = head;
    char *end = head + len;
    char *eol = memchr(p, '\n', len);
    size_t n = 0;

    /* "HTTP/1.1 200 OK": the status is the three digits after the space. */
    if (eol == NULL || len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || cap == 0) {
        return 0;
    }
    out[n++] = (wf_h2_map_field_t){(const uint8_t *)":status", 7,
                                   (const uint8_t *)p + 9, 3};
    for (p = eol + 1; p < end; p = eol + 1) {
        size_t line;

        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL) {
            return 0;
        }
        line = (size_t)(eol - p) - (eol > p && eol[-1] == '\r');
        if (line == 0) {
            break; /* the final CRLF */
        }
        if (n == cap || !h2_map_resp_line(p, line, &out[n])) {
            return 0;
        }
        if (!h2_is_conn_field((const char *)out[n].name, out[n].nlen)) {
            n++;
        }
    }
    return n;
}
