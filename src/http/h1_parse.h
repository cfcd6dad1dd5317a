/* Strict HTTP/1.x request parser (RFC 9112), parsing in place.
 *
 * The head parser is restartable rather than incremental: call it again on the
 * same (grown) buffer when it returns WF_AGAIN.  It only scans for the end of
 * the head (an empty line) from where the previous call stopped, so a client
 * that trickles bytes costs O(n) in total, and the fields are parsed once, when
 * the head is complete.  All wf_str_t results point into the caller's buffer.
 */
#ifndef WF_HTTP_H1_PARSE_H
#define WF_HTTP_H1_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/str.h"

#define WF_H1_MAX_HEADERS 100 /* more fields: 431, as HAProxy's maxhdr */

typedef enum wf_http_method {
    WF_HTTP_OTHER = 0, /* a valid token we do not know */
    WF_HTTP_GET,
    WF_HTTP_HEAD,
    WF_HTTP_POST,
    WF_HTTP_PUT,
    WF_HTTP_DELETE,
    WF_HTTP_CONNECT,
    WF_HTTP_OPTIONS,
    WF_HTTP_TRACE,
    WF_HTTP_PATCH,
    WF_HTTP_NMETHODS /* must stay last */
} wf_http_method_t;

typedef struct wf_h1_header {
    wf_str_t name;  /* as received (case preserved) */
    wf_str_t value; /* leading and trailing OWS removed */
} wf_h1_header_t;

typedef struct wf_h1_limits {
    size_t max_request_line;    /* longer request line: 414 */
    size_t max_field;           /* longer header line: 431 */
    size_t max_head;            /* longer head in total: 431 */
    bool discard_unsafe_fields; /* drop fields whose names are not
                                   [A-Za-z0-9-] (Unit's default) */
} wf_h1_limits_t;

typedef struct wf_h1_head {
    /* Set by the parser when it returns WF_OK. */
    wf_str_t method;
    wf_http_method_t method_id;
    wf_str_t target;        /* the whole request-target, raw */
    wf_str_t path;          /* raw path of the target: origin-form up to '?';
                               for absolute-form the part after the authority
                               ("/" when empty); for "*" (OPTIONS) "*"; len 0
                               for CONNECT (authority-form) */
    wf_str_t query;         /* after '?', raw; len 0 when none */
    bool has_query;         /* a '?' was present (even with empty query) */
    wf_str_t authority;     /* host[:port] of an absolute-form target, or the
                               whole authority-form target of CONNECT; len 0
                               otherwise */
    unsigned version;       /* 10 for HTTP/1.0, 11 for HTTP/1.1 and any
                               higher 1.x */
    wf_str_t host;          /* Host field value, or authority when
                               absolute-form (RFC 9112 3.2.2; the Host field
                               is still required in HTTP/1.1, but may be
                               empty); len 0 when none or empty */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked (last coding) */
    bool keep_alive;        /* connection persists after this request:
                               1.1 without "close", 1.0 with "keep-alive" */
    bool expect_continue;   /* Expect: 100-continue */
    unsigned nheaders;
    wf_h1_header_t headers[WF_H1_MAX_HEADERS];
    size_t head_len; /* bytes of the head, final empty line included */

    /* Set by the parser when it returns WF_ERROR. */
    unsigned status; /* 400, 414, 431, 501 or 505 */

    /* Parser state between calls; zero it with wf_h1_head_init(). */
    size_t scanned;    /* bytes already searched for the end of the head */
    size_t line_start; /* offset of the first line not yet ended by LF */
} wf_h1_head_t;

/* Prepares h for a new request.  Cheap: the headers[] array is not cleared. */
void wf_h1_head_init(wf_h1_head_t *h);

/* Parses the request head at buf[0..len).  Leading empty lines before the
 * request line are skipped, and a line may end in CRLF or a bare LF, as
 * RFC 9112 section 2.2 allows.  A fragment ("#...") after the request-target
 * is dropped: h->target stops before the '#'.
 * Returns WF_OK when the head is complete and valid (h filled, h->head_len
 * set), WF_AGAIN when more bytes are needed (h->scanned updated; call again
 * with the same buffer, grown), or WF_ERROR with h->status set when the
 * request must be rejected; the connection is then closed.  Checks, among
 * others: request line syntax (400), version (505 for HTTP/2+, 400 for
 * garbage), line lengths (414/431), obs-fold, bare CR, NUL and CTL
 * bytes (400), missing Host in HTTP/1.1 or several Host fields (400),
 * invalid or duplicate Content-Length (400), Content-Length together with
 * Transfer-Encoding (400), a transfer coding other than chunked (501).
 * Limit errors (414, 431) are found while scanning for the end of the head,
 * before any syntax check, so the result does not depend on how the bytes
 * were split between calls.  The buffer may move between calls (h keeps
 * offsets only), and lim is borrowed for the call.  An Expect value other
 * than 100-continue is ignored (no 417). */
int wf_h1_parse_head(wf_h1_head_t *h, const char *buf, size_t len,
                     const wf_h1_limits_t *lim);

/* The buffer holding a parsed head moved from old to new (realloc): moves
 * every string of h along. */
void wf_h1_head_rebase(wf_h1_head_t *h, const char *old, const char *new);

/* Finds a field by name, case-insensitively; NULL when absent. */
const wf_h1_header_t *wf_h1_head_find(const wf_h1_head_t *h, wf_str_t name);

/* Decoder for a chunked request body.  Chunk extensions and trailer fields
 * are parsed and discarded. */
typedef struct wf_h1_chunked {
    int state;       /* private */
    uint64_t size;   /* bytes left in the current chunk */
    size_t line_len; /* bytes of the current size/trailer line so far */
} wf_h1_chunked_t;

void wf_h1_chunked_init(wf_h1_chunked_t *ch);

/* Decodes in[0..len): copies the body bytes to out, which has room for len
 * bytes (out may equal in: the output never overtakes the input), and sets
 * *used to the input bytes consumed and *out_len to the body bytes written.
 * Returns WF_AGAIN when it needs more input (all of in was then consumed),
 * WF_OK when the last chunk and the trailers have been read
 * (*used then stops right after them: what follows is the next request), or
 * WF_ERROR on malformed input (400).  Lines longer than 4096 bytes and sizes
 * that overflow 63 bits are errors. */
int wf_h1_chunked_decode(wf_h1_chunked_t *ch, const char *in, size_t len,
                         size_t *used, char *out, size_t *out_len);

/* Validates a Host value (or absolute-form authority) p[0..n), writes it
 * lowercased to out (n bytes at least), and sets *name to the host there
 * without its port and one trailing dot, as Unit's $host gives it; an empty
 * value gives an empty name.  p is left as received: applications get the
 * Host field as the client sent it (HTTP_HOST), as Unit gives it.  Any
 * reg-name is accepted, a leading dot included (".localhost"); returns
 * WF_ERROR for a byte outside reg-name, IP-literal and port ('#', '?', '/',
 * '\\', ...) or for "..", so that "$host" in a share cannot climb or add
 * segments.  *name points into out. */
int wf_h1_host_name(const char *p, size_t n, char *out, wf_str_t *name);

/* Method id of a method token (case-sensitive, as RFC 9110 says). */
wf_http_method_t wf_http_method_id(wf_str_t method);

#endif
