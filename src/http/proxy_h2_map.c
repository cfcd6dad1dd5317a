/* The back side's h1 <-> h2 mapping (see http/proxy_h2_map.h). */
#include "http/proxy_h2_map.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

/* Fields that never go into an h2 request (RFC 9113 8.2.2), and Host,
 * which becomes :authority. */
static const wf_str_t pxm_req_drop[] = {
    wf_string("connection"),
    wf_string("keep-alive"),
    wf_string("proxy-connection"),
    wf_string("transfer-encoding"),
    wf_string("upgrade"),
    wf_string("http2-settings"),
    wf_string("host"),
};

/* Fields of a backend's response the client's mux does not get: hop by
 * hop (an h2 peer must not send them, one that does is not believed),
 * and those Wharf writes itself. */
static const wf_str_t pxm_resp_drop[] = {
    wf_string("connection"),
    wf_string("keep-alive"),
    wf_string("proxy-connection"),
    wf_string("transfer-encoding"),
    wf_string("upgrade"),
    wf_string("server"),
    wf_string("date"),
    wf_string("content-length"),
};

static bool
pxm_in(wf_str_t name, const wf_str_t *set, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (wf_str_eq_nocase(name, set[i])) {
            return true;
        }
    }
    return false;
}

static void
pxm_nv(nghttp2_nv *nv, const char *name, size_t nlen, const char *value,
       size_t vlen)
{
    nv->name = (uint8_t *)name;
    nv->namelen = nlen;
    nv->value = (uint8_t *)value;
    nv->valuelen = vlen;
    nv->flags = NGHTTP2_NV_FLAG_NONE;
}

/* The next line of p..last without its CRLF; *next after it.  Returns
 * false at the empty line or the end. */
static bool
pxm_line(char *p, char *last, wf_str_t *line, char **next)
{
    char *e = memchr(p, '\n', (size_t)(last - p));

    if (e == NULL) {
        return false;
    }
    *next = e + 1;
    if (e > p && e[-1] == '\r') {
        e--;
    }
    *line = wf_str_make(p, (size_t)(e - p));
    return line->len > 0;
}

/* "METHOD TARGET HTTP/1.1" into :method and :path (nv[0], nv[3]). */
static int
pxm_req_line(wf_str_t line, nghttp2_nv *nv)
{
    const char *sp1 = memchr(line.data, ' ', line.len);
    const char *sp2;

    if (sp1 == NULL || sp1 == line.data) {
        return WF_ERROR;
    }
    sp2 = memchr(sp1 + 1, ' ', (size_t)(line.data + line.len - sp1 - 1));
    if (sp2 == NULL || sp2 == sp1 + 1) {
        return WF_ERROR;
    }
    pxm_nv(&nv[0], ":method", 7, line.data, (size_t)(sp1 - line.data));
    pxm_nv(&nv[3], ":path", 5, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    return WF_OK;
}

/* One "Name: value" field line: lowercased in place and added to nv,
 * unless dropped; Host gives :authority (nv[2]).  Returns the entries
 * added (0 or 1), or -1 when it is no field line. */
static int
pxm_req_field(wf_str_t line, nghttp2_nv *nv, nghttp2_nv *out, bool *host)
{
    char *colon = memchr(line.data, ':', line.len);
    const char *v, *end = line.data + line.len;
    wf_str_t name;

    if (colon == NULL || colon == line.data) {
        return -1;
    }
    name = wf_str_make(line.data, (size_t)(colon - line.data));
    for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++) {
    }
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    if (wf_str_eq_nocase(name, wf_string("host"))) {
        pxm_nv(&nv[2], ":authority", 10, v, (size_t)(end - v));
        *host = true;
        return 0;
    }
    if (pxm_in(name, pxm_req_drop, wf_nitems(pxm_req_drop))
        || (wf_str_eq_nocase(name, wf_string("te"))
            && !wf_str_eq_nocase(wf_str_make(v, (size_t)(end - v)),
                                 wf_string("trailers")))) {
        return 0;
    }
    for (char *c = colon - name.len; c < colon; c++) {
        *c = (char)tolower((unsigned char)*c);
    }
    pxm_nv(out, name.data, name.len, v, (size_t)(end - v));
    return 1;
}

int
wf_proxy_h2_req_map(char *head, size_t len, bool tls, nghttp2_nv *nv,
                    size_t max)
{
    char *p = head, *last = head + len, *next;
    wf_str_t line;
    size_t n = 4;
    bool host = false;

    if (max < 4 || !pxm_line(p, last, &line, &next)
        || pxm_req_line(line, nv) != WF_OK) {
        return -1;
    }
    pxm_nv(&nv[1], ":scheme", 7, tls ? "https" : "http", tls ? 5 : 4);
    for (p = next; pxm_line(p, last, &line, &next); p = next) {
        int k;

        if (n == max) {
            return -1;
        }
        k = pxm_req_field(line, nv, &nv[n], &host);
        if (k < 0) {
            return -1;
        }
        n += (size_t)k;
    }
    return host ? (int)n : -1;
}

static int
pxm_append(wf_proxy_h2_fields_t *f, wf_str_t name, wf_str_t value)
{
    size_t need = f->len + name.len + value.len + 4;

    if (need > f->cap) {
        size_t cap = wf_max(need, f->cap * 2);
        char *d = realloc(f->data, wf_max(cap, (size_t)256));

        if (d == NULL) {
            return WF_ERROR;
        }
        f->data = d;
        f->cap = wf_max(cap, (size_t)256);
    }
    memcpy(f->data + f->len, name.data, name.len);
    f->len += name.len;
    memcpy(f->data + f->len, ": ", 2);
    f->len += 2;
    memcpy(f->data + f->len, value.data, value.len);
    f->len += value.len;
    memcpy(f->data + f->len, "\r\n", 2);
    f->len += 2;
    return WF_OK;
}

static int
pxm_status(wf_proxy_h2_fields_t *f, wf_str_t v)
{
    unsigned s = 0;

    if (v.len != 3 || f->status != 0) {
        return WF_ERROR;
    }
    for (size_t i = 0; i < 3; i++) {
        if (!isdigit((unsigned char)v.data[i])) {
            return WF_ERROR;
        }
        s = s * 10 + (unsigned)(v.data[i] - '0');
    }
    if (s < 100) {
        return WF_ERROR;
    }
    f->status = s;
    return WF_OK;
}

static int
pxm_length(wf_proxy_h2_fields_t *f, wf_str_t v)
{
    int64_t n = 0;

    if (v.len == 0 || v.len > 18) {
        return WF_ERROR;
    }
    for (size_t i = 0; i < v.len; i++) {
        if (!isdigit((unsigned char)v.data[i])) {
            return WF_ERROR;
        }
        n = n * 10 + (v.data[i] - '0');
    }
    if (f->content_length >= 0 && f->content_length != n) {
        return WF_ERROR;
    }
    f->content_length = n;
    return WF_OK;
}

int
wf_proxy_h2_resp_field(wf_proxy_h2_fields_t *f, wf_str_t name, wf_str_t value,
                       bool trailer, const wf_str_t *drop, size_t ndrop)
{
    if (name.len > 0 && name.data[0] == ':') {
        if (trailer || !wf_str_eq_nocase(name, wf_string(":status"))) {
            return WF_ERROR;
        }
        return pxm_status(f, value);
    }
    if (!trailer && wf_str_eq_nocase(name, wf_string("content-length"))
        && pxm_length(f, value) != WF_OK) {
        return WF_ERROR;
    }
    if (pxm_in(name, pxm_resp_drop, wf_nitems(pxm_resp_drop))
        || pxm_in(name, drop, ndrop)) {
        return WF_OK;
    }
    return pxm_append(f, name, value);
}

void
wf_proxy_h2_fields_fini(wf_proxy_h2_fields_t *f)
{
    free(f->data);
    *f = (wf_proxy_h2_fields_t){.content_length = -1};
}
