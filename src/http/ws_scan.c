/* Finding the client's Close frame in a tunnel (see http/ws_scan.h). */
#include "http/ws_scan.h"

#include <string.h>

#define WS_OP_CLOSE 0x8

void
wf_ws_scan_init(wf_ws_scan_t *s)
{
    memset(s, 0, sizeof(*s));
}

/* Bytes of a frame head whose first two bytes are b0 b1. */
static size_t
ws_head_size(uint8_t b1)
{
    size_t len7 = b1 & 0x7f;

    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

/* The payload length of a complete head. */
static uint64_t
ws_head_payload(const uint8_t *h)
{
    uint64_t len = h[1] & 0x7f;
    size_t ext = len == 126 ? 2 : len == 127 ? 8 : 0;

    if (ext == 0) {
        return len;
    }
    len = 0;
    for (size_t i = 0; i < ext; i++) {
        len = len << 8 | h[2 + i];
    }
    return len;
}

bool
wf_ws_scan(wf_ws_scan_t *s, const char *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;

    while (n > 0 && !s->closed) {
        if (s->skip > 0) {
            size_t k = s->skip < n ? (size_t)s->skip : n;

            s->skip -= k;
            b += k;
            n -= k;
            continue;
        }
        s->hdr[s->hlen++] = *b++;
        n--;
        if (s->hlen == 1 && (s->hdr[0] & 0x0f) == WS_OP_CLOSE) {
            s->closed = true;
        } else if (s->hlen >= 2 && s->hlen == ws_head_size(s->hdr[1])) {
            s->skip = ws_head_payload(s->hdr);
            s->hlen = 0;
        }
    }
    return s->closed;
}
