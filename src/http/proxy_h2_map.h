/* The back side's mapping between HTTP/1.1 heads and HTTP/2 header
 * lists (apart from any socket, for table tests and the fuzzer): the
 * request head proxy.c serialised becomes the list of a client stream,
 * and a backend's response fields (and trailers) become "Name: value"
 * lines for the client's mux.  See docs/internals/proxy.md, "HTTP/2 to
 * backends". */
#ifndef WF_HTTP_PROXY_H2_MAP_H
#define WF_HTTP_PROXY_H2_MAP_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"

/* The fields of an HTTP/1.1 request head (as wf_proxy_req_head_write()
 * writes it) at most, plus the four pseudo-headers. */
#define WF_PROXY_H2_NV_MAX 260

/* Maps the request head head[0..len) ("METHOD TARGET HTTP/1.1", fields,
 * the empty line) in place: field names are lowercased in head, and
 * nv[0..) points into it (head must outlive the list).  :scheme is
 * "https" when tls, else "http"; :authority is the Host field's value;
 * hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection,
 * Transfer-Encoding, Upgrade, HTTP2-Settings, Host itself) and a TE other
 * than "trailers" are left out (RFC 9113 8.2.2).  Returns the entries
 * written (at most max), or -1 when the head is not one (no request
 * line, a field without ':', no Host, more than max entries). */
int wf_proxy_h2_req_map(char *head, size_t len, bool tls, nghttp2_nv *nv,
                        size_t max);

/* Rendered response fields ("Name: value\r\n" lines), grown as fields
 * arrive. */
typedef struct wf_proxy_h2_fields {
    char *data; /* malloc'd; NULL until the first field */
    size_t len;
    size_t cap;
    unsigned status;        /* ":status"; 0 until it came */
    int64_t content_length; /* -1: none */
} wf_proxy_h2_fields_t;

/* One field of a response's (trailer: of its trailers') header list, as
 * nghttp2 validated it (lowercase names, pseudo-headers first).  Takes
 * :status and content-length into f, drops hop-by-hop fields, Server and
 * Date (Wharf writes its own) and those named in drop[0..ndrop) (the
 * action's response_headers), renders the rest into f->data.  Returns
 * WF_OK, or WF_ERROR (an invalid :status or content-length, a pseudo
 * header other than :status, out of memory). */
int wf_proxy_h2_resp_field(wf_proxy_h2_fields_t *f, wf_str_t name,
                           wf_str_t value, bool trailer, const wf_str_t *drop,
                           size_t ndrop);

/* Frees f's lines; f is empty afterwards. */
void wf_proxy_h2_fields_fini(wf_proxy_h2_fields_t *f);

#endif
