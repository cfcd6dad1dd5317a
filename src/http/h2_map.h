/* The mapping between HTTP/2 header lists and what the exchange layer
 * reads and writes (RFC 9113 section 8): a request's header list becomes
 * the text of an HTTP/1.1 head that http/h1_parse.c parses into
 * wf_h1_head_t, so that routes, variables, "forwarded" and every endpoint
 * see an h2 request as they see an h1 one; a rendered response head
 * (http/respond.c) becomes a header list without the fields HTTP/2
 * forbids.  Table-driven; no connection state.  See docs/internals/h2.md. */
#ifndef WF_HTTP_H2_MAP_H
#define WF_HTTP_H2_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"

/* One request's header list being mapped.  text holds the head built so
 * far (owned, malloc'd); the pseudo-header values are copies in text too. */
/* The pseudo-headers a request may carry (RFC 9113 8.3.1, RFC 8441 4). */
typedef enum wf_h2_pseudo {
    WF_H2_PSEUDO_METHOD = 0,
    WF_H2_PSEUDO_SCHEME,
    WF_H2_PSEUDO_AUTHORITY,
    WF_H2_PSEUDO_PATH,
    WF_H2_PSEUDO_PROTOCOL,
    WF_H2_PSEUDO_N /* must stay last */
} wf_h2_pseudo_t;

typedef struct wf_h2_buf {
    char *data; /* owned, malloc'd; NULL when empty */
    size_t len;
    size_t cap;
} wf_h2_buf_t;

typedef struct wf_h2_map_req {
    wf_h2_buf_t fields; /* "name: value\r\n" lines of regular fields */
    wf_h2_buf_t pseudo; /* the pseudo-header values, back to back */
    wf_h2_buf_t cookie; /* "cookie" values joined with "; " */
    size_t max;         /* bound on the header list (names + values + 32
                           each, RFC 9113 6.5.2's measure) */
    size_t size;        /* the list's size by that measure so far */
    uint32_t poff[WF_H2_PSEUDO_N]; /* where each pseudo value is */
    uint32_t plen[WF_H2_PSEUDO_N];
    uint8_t seen;  /* bit per wf_h2_pseudo_t received */
    bool has_host; /* a "host" field came */
    bool regular;  /* a regular field came (pseudo ones must precede) */
} wf_h2_map_req_t;

#define WF_H2_MAP_OK      0
#define WF_H2_MAP_INVALID 1 /* malformed (RFC 9113 8.1.1): stream error */
#define WF_H2_MAP_TOO_BIG 2 /* over max: 431 */
#define WF_H2_MAP_NOMEM   3

/* Starts an empty list bounded by max bytes.  Never allocates. */
void wf_h2_map_req_init(wf_h2_map_req_t *m, size_t max);

/* Starts a new list in an initialised m, keeping its buffers (one
 * connection's lists, one after the other, without an allocation each). */
void wf_h2_map_req_reset(wf_h2_map_req_t *m, size_t max);

/* Frees what m holds; m may be initialised again. */
void wf_h2_map_req_fini(wf_h2_map_req_t *m);

/* Adds one field as HPACK decoded it (name lowercase, as RFC 9113 8.2.1
 * requires: an uppercase byte, an unknown or repeated pseudo-header, a
 * pseudo-header after a regular field, or a connection-specific field
 * (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade;
 * TE other than "trailers") is WF_H2_MAP_INVALID).  "cookie" fields are
 * joined (RFC 9113 8.2.3).  Returns WF_H2_MAP_*. */
int wf_h2_map_req_field(wf_h2_map_req_t *m, const uint8_t *name, size_t nlen,
                        const uint8_t *value, size_t vlen);

/* Ends the list: checks the pseudo-headers (:method; :scheme and :path
 * unless CONNECT; :authority or Host) and writes the head
 * "METHOD PATH HTTP/1.1\r\nHost: AUTHORITY\r\n...fields...\r\n" into a new
 * malloc'd buffer *out (*outlen bytes).  :authority wins over a Host field
 * (RFC 9113 8.3.1), which is then dropped.  Returns WF_H2_MAP_*. */
int wf_h2_map_req_head(wf_h2_map_req_t *m, char **out, size_t *outlen);

/* The :protocol value of an extended CONNECT (RFC 8441 4), or an empty
 * string (wf_null_str) when the list has none. */
wf_str_t wf_h2_map_req_protocol(const wf_h2_map_req_t *m);

/* As wf_h2_map_req_head(), for an extended CONNECT whose :protocol is
 * "websocket" (RFC 8441 5): the head is the HTTP/1.1 opening handshake
 * (RFC 6455 4.1) that the exchange layer and endpoints know:
 * "GET PATH HTTP/1.1", Host, the fields but any sec-websocket-key, then
 * "Upgrade: websocket", "Connection: Upgrade" and "Sec-WebSocket-Key: KEY"
 * (key: made by the mux, which checks the 101's accept against it). */
int wf_h2_map_req_head_ws(wf_h2_map_req_t *m, wf_str_t key, char **out,
                          size_t *outlen);

/* A response field as the header list carries it. */
typedef struct wf_h2_map_field {
    const uint8_t *name;
    size_t nlen;
    const uint8_t *value;
    size_t vlen;
} wf_h2_map_field_t;

/* Maps the HTTP/1.1 head at head[0..len) (a status line, fields, a final
 * CRLF, as wf_resp_head_write() writes it) into out[0..cap): ":status"
 * first, then every field with its name lowercased in place, except the
 * connection-specific ones (Connection, Keep-Alive, Proxy-Connection,
 * Transfer-Encoding, Upgrade), which HTTP/2 forbids.  The fields point into
 * head.  Returns the count, or 0 when head does not parse or cap is too
 * small. */
size_t wf_h2_map_resp(char *head, size_t len, wf_h2_map_field_t *out,
                      size_t cap);

/* Fields in head at most (a bound for wf_h2_map_resp()'s cap). */
size_t wf_h2_map_resp_count(const char *head, size_t len);

#endif
