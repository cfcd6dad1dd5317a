/* Strict parser of a backend's HTTP/1.x response head (RFC 9112), the
 * proxy's counterpart of the request parser (http/h1_parse.h) with the
 * same rules for fields: token names, no space before the colon, no
 * obs-fold, no bare CR, NUL or other CTL in values.  Anything it refuses
 * is a 502 for the client.  Parses in place: strings point into the
 * caller's buffer. */
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

/* Hop-by-hop fields (RFC 9110 7.6.1) that the proxy never forwards in
 * either direction, and the names a Connection field lists: true when the
 * field named name must be dropped, given the Connection values conn[0..n). */
bool wf_proxy_hop_by_hop(wf_str_t name, const wf_str_t *conn, size_t n);

#endif
