/* The proxy's message syntax, apart from any socket (so that unit tests
 * and the fuzzer reach it):
 * - a strict parser of a backend's HTTP/1.x response head (RFC 9112), the
 *   counterpart of the request parser (http/h1_parse.h) with the same
 *   rules for fields: token names, no space before the colon, no
 *   obs-fold, no bare CR, NUL or other CTL in values.  Anything it
 *   refuses is a 502 for the client.  Parses in place: strings point into
 *   the caller's buffer;
 * - the serialiser of the request head sent to a backend (never the
 *   client's bytes forwarded raw). */
#ifndef WF_HTTP_PROXY_PARSE_H
#define WF_HTTP_PROXY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/h1_parse.h"

typedef struct wf_proxy_resp {
    /* Set when wf_proxy_resp_parse() returns WF_OK. */
    unsigned version;       /* 10 or 11 (any higher 1.x) */
    unsigned status;        /* 100..999 */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* 1.1 without "close", 1.0 with "keep-alive" */
    unsigned nheaders;
    wf_h1_header_t headers[WF_H1_MAX_HEADERS];
    size_t head_len; /* bytes of the head, final empty line included */

    size_t scanned; /* state between calls; 0 for a new head */
} wf_proxy_resp_t;

/* Parses the response head at buf[0..len), at most max bytes long.  Lines
 * end in CRLF or a bare LF.  Returns WF_OK (h filled), WF_AGAIN (call again
 * with the same buffer grown; h->scanned keeps the progress) or WF_ERROR:
 * a bad status line (not "HTTP/1.x NNN[ reason]"), a bad field, more than
 * WF_H1_MAX_HEADERS fields, a head longer than max, an invalid or
 * conflicting Content-Length, Transfer-Encoding with Content-Length, or a
 * transfer coding other than a final "chunked". */
int wf_proxy_resp_parse(wf_proxy_resp_t *h, const char *buf, size_t len,
                        size_t max);

/* Does a field named name (any case) of h list token tok (lowercase) in
 * its comma-separated value?  ("Upgrade: websocket" in a 101.) */
bool wf_proxy_resp_has_token(const wf_proxy_resp_t *h, wf_str_t name,
                             wf_str_t tok);

/* Hop-by-hop fields (RFC 9110 7.6.1) that the proxy never forwards in
 * either direction, and the names a Connection field lists: true when the
 * field named name must be dropped, given the Connection values conn[0..n). */
bool wf_proxy_hop_by_hop(wf_str_t name, const wf_str_t *conn, size_t n);

/* How the request head sent to a backend departs from the client's. */
typedef struct wf_proxy_req_opts {
    wf_str_t host;        /* Host to send instead of the client's; len 0:
                             the client's (the authority of an absolute-form
                             target, else its Host field, else empty) */
    bool drop_forwarding; /* drop the client's X-Forwarded-For, -Proto,
                             -Host and Forwarded fields */
    bool keep_alive;      /* HTTP/1.1 persistence: no "Connection: close" */
    bool drop_client;     /* drop the client's X-Client-* fields
                             (wf_var_tls_is_client_field()) */
    bool upgrade;         /* a WebSocket handshake: "Upgrade: websocket"
                             and "Connection: upgrade" are sent (and no
                             "Connection: close") */
    wf_str_t extra;       /* "Name: value\r\n" lines appended; borrowed */
} wf_proxy_req_opts_t;

/* The most bytes wf_proxy_req_head_write() writes for h and o. */
size_t wf_proxy_req_head_size(const wf_h1_head_t *h,
                              const wf_proxy_req_opts_t *o);

/* Writes the head of the request h (as parsed and possibly rewritten) for
 * a backend into out (wf_proxy_req_head_size() bytes of room): "METHOD
 * path[?query] HTTP/1.1", the client's end-to-end fields in their order
 * (hop-by-hop ones, Content-Length, Transfer-Encoding and Expect dropped,
 * see wf_proxy_hop_by_hop()), one Host, the framing of the body
 * (Transfer-Encoding: chunked for a chunked body, else Content-Length when
 * the client sent a body), o->extra and "Upgrade: websocket" with
 * "Connection: upgrade" when o->upgrade, else "Connection: close" unless
 * o->keep_alive.  Returns the bytes written. */
size_t wf_proxy_req_head_write(char *out, const wf_h1_head_t *h,
                               const wf_proxy_req_opts_t *o);

/* True for the fields that carry forwarding information: X-Forwarded-For,
 * X-Forwarded-Proto, X-Forwarded-Host and Forwarded. */
bool wf_proxy_is_forwarding(wf_str_t name);

#endif
