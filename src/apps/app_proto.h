/* The application protocol: what the router and an app process say to each
 * other over the app process's sockets, and what main and the router say
 * to start one.  Both ends are the same build on the same host, so numbers
 * are in host byte order.  docs/internals/apps.md has the picture.
 *
 * Sockets.  For an app process with T worker slots (the app's "threads")
 * serving a router with N I/O threads, the router creates N * T
 * SOCK_SEQPACKET socketpairs (wf_port_pair()).  Socket (slot k, router
 * thread t) is number k * N + t.  The router keeps its ends, each a
 * wf_port_t started on thread t's loop; the app process gets the others
 * through main (WF_MSG_APP_START).  A slot serves one request at a time
 * (WSGI) or up to the concurrency it announced (ASGI), and only the router
 * thread that sent a request hears its answer, on the same socket: no
 * message ever crosses router threads.
 *
 * Framing is the port's (process/port.h: 24-byte header, fragments of at
 * most WF_APP_MAX_SIZE, reassembled).  The header's stream field carries
 * the request id, chosen by the router (wf_port_stream_new()), unique for
 * the router's life; 0 for the messages that are not about one request.
 *
 * Flow control.  Each direction of each request has a window of
 * WF_APP_WINDOW bytes of body: a sender never has more than that sent and
 * not acknowledged.  The receiver acknowledges (WF_APP_MSG_REQ_ACK,
 * WF_APP_MSG_RESP_ACK) once its consumer took at least half the window
 * since its last acknowledgement, so a small exchange needs no ack at all.
 * Body bytes carried in REQ_HEAD or RESP_HEAD count against the window like
 * those of REQ_BODY/RESP_BODY (so a head carries at most WF_APP_WINDOW of
 * body), and acknowledgements count them too.
 * Nothing else may make a reader stop reading its socket. */
#ifndef WF_APPS_APP_PROTO_H
#define WF_APPS_APP_PROTO_H

#include <stdint.h>

#define WF_APP_MAX_SIZE   (64 * 1024)  /* wf_port_set_max_size() on both ends */
#define WF_APP_WINDOW     (256 * 1024) /* body bytes in flight per direction */
#define WF_APP_MAX_FDS    64           /* N * T sockets of one app process */
#define WF_APP_LEN_NONE   UINT64_MAX   /* no Content-Length (chunked, none) */
#define WF_APP_MAX_FIELDS 1024         /* header fields per head, each way */

/* Message types on an app socket (their own table; numbers kept apart
 * from process/port_msg_types.h so that logs are never ambiguous). */
enum {
    /* app -> router, stream 0, on every socket once the app is loaded.
     * Payload: wf_app_ready_t.  Before it the router sends nothing. */
    WF_APP_MSG_READY = 100,
    /* router -> app: a new request.  Payload: wf_app_req_hdr_t, strings,
     * then body_size bytes of body (possibly the whole body). */
    WF_APP_MSG_REQ_HEAD,
    /* router -> app: the next piece of the request body (1..MAX_SIZE). */
    WF_APP_MSG_REQ_BODY,
    /* router -> app: the request body is complete.  No payload. */
    WF_APP_MSG_REQ_END,
    /* router -> app: the client is gone or the request timed out; stop
     * it.  No payload.  The app still ends the request (RESP_END). */
    WF_APP_MSG_REQ_ABORT,
    /* app -> router: the module consumed this many more request body
     * bytes.  Payload: uint64_t. */
    WF_APP_MSG_REQ_ACK,
    /* app -> router: the response head.  Payload: wf_app_resp_hdr_t,
     * strings, then body_size bytes of body. */
    WF_APP_MSG_RESP_HEAD,
    /* app -> router: the next piece of the response body. */
    WF_APP_MSG_RESP_BODY,
    /* app -> router: one fd (a regular file open for reading) to send as
     * the next piece of the body.  Payload: wf_app_resp_file_t. */
    WF_APP_MSG_RESP_FILE,
    /* app -> router: the request is over on the app's side (the response
     * is complete, or abandoned after an abort or an error); the slot's
     * capacity is free again.  Payload: uint32_t, 0 when the response is
     * complete, 1 when it was cut short (the router then ends the client
     * connection, or answers 503/502 if no head was sent). */
    WF_APP_MSG_RESP_END,
    /* router -> app: the client took this many more response body bytes.
     * Payload: uint64_t. */
    WF_APP_MSG_RESP_ACK,
};

/* WF_APP_MSG_READY's payload. */
typedef struct wf_app_ready {
    uint32_t concurrency; /* requests at once on this socket's slot, >= 1 */
    uint32_t pid;
} wf_app_ready_t;

/* wf_app_req_hdr_t.flags */
#define WF_APP_REQ_BODY_END                                           \
    0x1                    /* no REQ_BODY/REQ_END follow: the body in \
                              this message is all of it (maybe 0) */
#define WF_APP_REQ_TLS 0x2 /* arrived over TLS (scheme https) */
#define WF_APP_REQ_UPGRADE                            \
    0x4 /* a WebSocket handshake (RFC 6455 4.1 was    \
           checked by the router); a 101 answer turns \
           the exchange into a two-way byte tunnel:   \
           client bytes come as REQ_BODY, bytes the   \
           app sends as RESP_BODY go out raw */
/* With WF_APP_REQ_UPGRADE the head has content_length 0 (a handshake has
 * no body) and never BODY_END: after a 101 (a RESP_HEAD without
 * WF_APP_RESP_END) client bytes come as REQ_BODY and the client's EOF as
 * REQ_END; after any other answer the router sends REQ_END at once.  The
 * tunnel ends with the app's RESP_END (the router closes the connection
 * once the bytes are out) or the client's going (REQ_ABORT); no
 * limits.timeout bounds it. */

/* WF_APP_MSG_REQ_HEAD's fixed part, followed by WF_APP_REQ_NSTR strings and
 * then 2 * nfields strings (name, value), in the order below.  A string
 * is a uint32_t length, the bytes, and a NUL that the length does not
 * count, padded with NULs to a multiple of 4 bytes, so that the receiver
 * can point into the message.  Then body_size bytes of body. */
typedef struct wf_app_req_hdr {
    uint32_t flags;          /* WF_APP_REQ_* */
    uint16_t target;         /* index in the app's "targets"; 0 without */
    uint16_t nfields;        /* header fields as received, in order */
    uint64_t content_length; /* WF_APP_LEN_NONE when absent or chunked */
    uint32_t body_size;      /* body bytes at the end of this message */
    uint16_t remote_port;
    uint16_t local_port;
} wf_app_req_hdr_t;

/* The strings of a request head, in wire order. */
enum {
    WF_APP_STR_METHOD = 0, /* "GET" */
    WF_APP_STR_TARGET,     /* the original request-target, no fragment:
                              "/a%20b?x=1" ($request_uri) */
    WF_APP_STR_PATH,       /* the decoded, normalised path: "/a b" */
    WF_APP_STR_QUERY,      /* the query without '?': "x=1" ("" if none) */
    WF_APP_STR_VERSION,    /* "HTTP/1.1" */
    WF_APP_STR_HOST,       /* the Host field as received ("" if none) */
    WF_APP_STR_REMOTE,     /* client address text: "127.0.0.1", "::1" */
    WF_APP_STR_LOCAL,      /* the listener's address text */
    WF_APP_STR_SERVER,     /* the server name: Host without port, or
                              "localhost" when Host is absent or empty */
    WF_APP_REQ_NSTR
};

/* wf_app_resp_hdr_t.flags */
#define WF_APP_RESP_END                              \
    0x1 /* the body in this message is all of it: no \
           RESP_BODY/RESP_FILE follow (RESP_END does) */

/* WF_APP_MSG_RESP_HEAD's fixed part, followed by 2 * nfields strings
 * (encoded as above) and body_size bytes of body.  The router adds
 * Content-Length when RESP_END is set and the app sent none; otherwise
 * it streams (chunked on HTTP/1.1).  It never lets a body differ from a
 * Content-Length the app sent: on a mismatch the connection ends. */
typedef struct wf_app_resp_hdr {
    uint16_t status;
    uint16_t nfields;
    uint32_t flags; /* WF_APP_RESP_* */
    uint32_t body_size;
    uint32_t reserved; /* 0 */
} wf_app_resp_hdr_t;

/* WF_APP_MSG_RESP_FILE's payload; the fd travels with the message.  The
 * router sends [offset, offset + length) with sendfile(); the window does
 * not count file bytes (they stay in the page cache, not in a buffer). */
typedef struct wf_app_resp_file {
    uint64_t offset;
    uint64_t length;
} wf_app_resp_file_t;

#endif
