/* The part of a config snapshot that the HTTP layer reads: Unit's
 * settings.http.  Filled by control/conf.c; immutable once published. */
#ifndef WF_HTTP_HTTP_CONF_H
#define WF_HTTP_HTTP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wf_mime_table wf_mime_table_t;
typedef struct wf_forwarded wf_forwarded_t;
typedef struct wf_access_log wf_access_log_t;

typedef struct wf_http_conf {
    uint32_t header_read_timeout_ms; /* default 30 s */
    uint32_t body_read_timeout_ms;   /* default 30 s */
    uint32_t send_timeout_ms;        /* default 30 s */
    uint32_t idle_timeout_ms;        /* default 180 s */
    uint32_t ws_read_timeout_ms;     /* websocket.read_timeout: a tunnel
                                        closes after this long without
                                        client bytes; default 60 s, 0:
                                        never */
    uint32_t ws_keepalive_ms;        /* websocket.keepalive_interval: a
                                        Ping to a client silent this
                                        long; default 30 s, 0: none */
    uint64_t max_body_size;          /* bytes; default 8 MiB */
    size_t body_buffer_size;         /* bytes; default 16 KiB */
    size_t large_header_buffer_size; /* bytes; default 8 KiB */
    unsigned large_header_buffers;   /* default 4 */
    bool discard_unsafe_fields;      /* default true */
    bool server_version;             /* default true */
    bool log_route;                  /* default false */
    bool chunked_transform;          /* default false; true: a chunked
                                        request body for an application
                                        is read whole and passed with a
                                        Content-Length (Unit) */
    /* settings.http.h2 (Wharf extensions): what each HTTP/2 connection
     * advertises and enforces (http/h2_conn.c). */
    uint32_t h2_max_concurrent_streams; /* default 128 */
    uint32_t h2_initial_window_size;    /* per stream; default 65535 */
    uint32_t h2_max_frame_size;         /* default 16384 */
    uint32_t h2_header_table_size;      /* HPACK table; default 4096 */
    uint32_t h2_max_header_list_size;   /* 0 (default): large_header_
                                           buffer_size x large_header_
                                           buffers, as h1's bound */
    const wf_mime_table_t *mime;        /* owned by the snapshot */

    /* The listeners' "forwarded" (or "client_ip") objects, each with its
     * listener's address; nfwd 0: none, and no request pays for them. */
    const wf_forwarded_t *fwd;
    size_t nfwd;

    /* "access_log"; NULL: none.  Owned by the snapshot. */
    wf_access_log_t *access_log;
} wf_http_conf_t;

#endif
