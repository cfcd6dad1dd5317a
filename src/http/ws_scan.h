/* A scanner of the frames a WebSocket client sends (RFC 6455 5.2), for a
 * tunnel that passes them on unchanged: it only finds where frames begin,
 * to see the client's Close (opcode 8).  Framing proper (masks, UTF-8,
 * limits) is the application module's. */
#ifndef WF_HTTP_WS_SCAN_H
#define WF_HTTP_WS_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wf_ws_scan {
    uint64_t skip;   /* payload bytes of the current frame still to come */
    uint8_t hdr[14]; /* the head being gathered: 2 bytes, 0/2/8 of length,
                        0/4 of mask */
    uint8_t hlen;    /* bytes in hdr */
    bool closed;     /* a Close frame's head was seen */
} wf_ws_scan_t;

/* Starts at the first byte of a frame (the first byte after the 101). */
void wf_ws_scan_init(wf_ws_scan_t *s);

/* Scans the next n bytes of the client's stream.  Returns s->closed: true
 * once a frame with opcode 8 began (what follows it is not scanned). */
bool wf_ws_scan(wf_ws_scan_t *s, const char *p, size_t n);

#endif
