/* WebSocket framing (RFC 6455) for the server side of a connection: the
 * parsing of client frames, the assembly of messages from fragments with
 * the checks section 5 asks for (masking, control frames, opcodes, UTF-8
 * of text, close codes, size limits), the heads of the frames a server
 * sends, and the Sec-WebSocket-Accept value of the handshake.  Plain C
 * and libc only: the ASGI code (asgi_ws.c) and the unit tests
 * (tests/unit/apps/test_ws_frame.c) use it alike. */
#ifndef WF_APPS_PYTHON_WS_FRAME_H
#define WF_APPS_PYTHON_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WF_WS_MAX_HEAD   14 /* 2 + 8 (length) + 4 (mask) */
#define WF_WS_ACCEPT_LEN 28 /* base64 of a SHA-1 */

/* Defaults of the limits: Unit's settings.http.websocket.max_frame_size,
 * and uvicorn's ws_max_size for a whole message. */
#define WF_WS_MAX_FRAME   (1024 * 1024)
#define WF_WS_MAX_MESSAGE (16 * 1024 * 1024)

typedef enum wf_ws_op {
    WF_WS_OP_CONT = 0x0,
    WF_WS_OP_TEXT = 0x1,
    WF_WS_OP_BINARY = 0x2,
    WF_WS_OP_CLOSE = 0x8,
    WF_WS_OP_PING = 0x9,
    WF_WS_OP_PONG = 0xa,
} wf_ws_op_t;

/* Close codes (RFC 6455 7.4.1) that this code sends or reports. */
#define WF_WS_CLOSE_NORMAL    1000
#define WF_WS_CLOSE_AWAY      1001
#define WF_WS_CLOSE_PROTOCOL  1002
#define WF_WS_CLOSE_NO_STATUS 1005 /* reported, never sent */
#define WF_WS_CLOSE_ABNORMAL  1006 /* reported, never sent */
#define WF_WS_CLOSE_BAD_DATA  1007
#define WF_WS_CLOSE_TOO_BIG   1009
#define WF_WS_CLOSE_INTERNAL  1011

/* One parsed frame; payload points into the parsed bytes, unmasked. */
typedef struct wf_ws_frame {
    bool fin;
    unsigned opcode; /* wf_ws_op_t */
    size_t len;
    uint8_t *payload;
} wf_ws_frame_t;

/* Parses one client frame at p[0..n).  Returns the frame's whole length
 * (head and payload, <= n) with *f set and the payload unmasked in place;
 * 0 when the n bytes hold only part of a frame (*need, when not NULL: the
 * whole length when the head is complete, else 0); or minus a close code:
 * -WF_WS_CLOSE_PROTOCOL (reserved bits, unknown opcode, unmasked, a
 * fragmented or longer than 125 bytes control frame, a 64-bit length with
 * its top bit set) or -WF_WS_CLOSE_TOO_BIG (payload over max_payload). */
ssize_t wf_ws_frame_parse(uint8_t *p, size_t n, size_t max_payload,
                          wf_ws_frame_t *f, size_t *need);

/* Writes the head of an unmasked (server) frame of len payload bytes into
 * out (WF_WS_MAX_HEAD bytes at least) and returns its length (2..10). */
size_t wf_ws_frame_head(uint8_t *out, bool fin, unsigned opcode, uint64_t len);

/* UTF-8 validation that can be fed in pieces (a code point may span two
 * fragments).  Zero-initialise, then feed. */
typedef struct wf_ws_utf8 {
    uint8_t need;   /* continuation bytes still expected */
    uint8_t lo, hi; /* the range of the next continuation byte */
} wf_ws_utf8_t;

/* Feeds n bytes: false as soon as they cannot be part of valid UTF-8
 * (overlong forms, surrogates, above U+10FFFF). */
bool wf_ws_utf8_feed(wf_ws_utf8_t *u, const uint8_t *p, size_t n);

/* True when the bytes fed so far end on a whole code point. */
bool wf_ws_utf8_is_complete(const wf_ws_utf8_t *u);

/* True when code may appear in a close frame from a peer: 1000-1003,
 * 1007-1014 and 3000-4999 (1004-1006 and 1015 are reserved, RFC 6455
 * 7.4.1 and IANA's registry). */
bool wf_ws_close_code_is_valid(unsigned code);

/* Checks a received close payload: returns 0 with *code set (1005 when
 * the payload is empty), -WF_WS_CLOSE_PROTOCOL (1 byte, or a code that
 * is not valid) or -WF_WS_CLOSE_BAD_DATA (a reason that is not UTF-8). */
int wf_ws_close_parse(const uint8_t *p, size_t n, unsigned *code);

/* A message (or a control frame) out of wf_ws_reader_next(). */
typedef struct wf_ws_event {
    unsigned opcode;     /* TEXT, BINARY (a whole message), PING, PONG, CLOSE */
    const uint8_t *data; /* valid until the next call on the reader */
    size_t len;
    unsigned code; /* CLOSE: the peer's code, 1005 when it gave none */
} wf_ws_event_t;

/* The receiving side of a connection: an input buffer that grows up to
 * one largest frame, and the message being assembled from fragments. */
typedef struct wf_ws_reader {
    size_t max_frame;   /* payload bytes of one frame */
    size_t max_message; /* payload bytes of one (reassembled) message */
    uint8_t *in;        /* owned; input bytes, NULL until the first use */
    size_t in_start;    /* first byte not parsed yet */
    size_t in_end;      /* end of the bytes received */
    size_t in_cap;
    unsigned msg_op; /* TEXT or BINARY while fragments come; 0 */
    uint8_t *msg;    /* owned; the fragments so far */
    size_t msg_len;
    size_t msg_cap;
    wf_ws_utf8_t utf8; /* over the text message's fragments so far */
} wf_ws_reader_t;

/* In place; no allocation until the first wf_ws_reader_space(). */
void wf_ws_reader_init(wf_ws_reader_t *r, size_t max_frame, size_t max_message);

/* Frees the buffers; r may be reused after another init. */
void wf_ws_reader_fini(wf_ws_reader_t *r);

/* Returns where to put more input, with *room bytes free (> 0), or NULL
 * when memory is exhausted.  Call wf_ws_reader_next() until it returns 0
 * before asking for room: a whole frame is always parsed before the
 * buffer grows past the largest frame. */
uint8_t *wf_ws_reader_space(wf_ws_reader_t *r, size_t *room);

/* Accounts for n bytes written at wf_ws_reader_space()'s pointer. */
void wf_ws_reader_commit(wf_ws_reader_t *r, size_t n);

/* The next event from the input: 1 with *ev set; 0 when more input is
 * needed; or minus the close code to send when the peer broke the
 * protocol (WF_WS_CLOSE_PROTOCOL, _BAD_DATA, _TOO_BIG), after which the
 * reader must not be used again except for wf_ws_reader_fini(). */
int wf_ws_reader_next(wf_ws_reader_t *r, wf_ws_event_t *ev);

/* Writes Sec-WebSocket-Accept's value for the client's Sec-WebSocket-Key
 * (RFC 6455 4.2.2: base64(SHA-1(key + the GUID))) into out, NUL-ended. */
void wf_ws_accept(const char *key, size_t len, char out[WF_WS_ACCEPT_LEN + 1]);

#endif
