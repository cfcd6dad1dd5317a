/* WebSocket framing (RFC 6455); see ws_frame.h. */
#include "apps/python/ws_frame.h"

#include <stdlib.h>
#include <string.h>

#define WS_FIN     0x80
#define WS_RSV     0x70
#define WS_OPCODE  0x0f
#define WS_MASK    0x80
#define WS_LEN7    0x7f
#define WS_MAX_CTL 125

#define WS_MIN_ROOM 4096 /* smallest read a reader offers */

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Which opcodes exist (RFC 6455 5.2; 3-7 and 0xb-0xf are reserved). */
static const bool ws_op_known[16] = {
    [WF_WS_OP_CONT] = true,  [WF_WS_OP_TEXT] = true, [WF_WS_OP_BINARY] = true,
    [WF_WS_OP_CLOSE] = true, [WF_WS_OP_PING] = true, [WF_WS_OP_PONG] = true,
};

static void
ws_unmask(uint8_t *p, size_t n, const uint8_t key[4])
{
    uint64_t k8;
    size_t i = 0;

    /* Eight bytes at a time: a 1 MiB frame is unmasked in well under a
     * millisecond. */
    memcpy(&k8, key, 4);
    memcpy((uint8_t *)&k8 + 4, key, 4);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;

        memcpy(&w, p + i, 8);
        w ^= k8;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++) {
        p[i] ^= key[i & 3];
    }
}

ssize_t
wf_ws_frame_parse(uint8_t *p, size_t n, size_t max_payload, wf_ws_frame_t *f,
                  size_t *need)
{
    uint64_t len;
    size_t head = 2;
    unsigned op;

    if (need != NULL) {
        *need = 0;
    }
    if (n < 2) {
        return 0;
    }
    op = p[0] & WS_OPCODE;
    if ((p[0] & WS_RSV) != 0 || !ws_op_known[op] || (p[1] & WS_MASK) == 0) {
        return -WF_WS_CLOSE_PROTOCOL; /* no extension was negotiated */
    }
    len = p[1] & WS_LEN7;
    if (op >= WF_WS_OP_CLOSE && ((p[0] & WS_FIN) == 0 || len > WS_MAX_CTL)) {
        return -WF_WS_CLOSE_PROTOCOL; /* RFC 6455 5.5 */
    }
    if (len == 126) {
        head += 2;
    } else if (len == 127) {
        head += 8;
    }
    if (n < head + 4) {
        return 0;
    }
    if (len == 126) {
        len = (uint64_t)p[2] << 8 | p[3];
    } else if (len == 127) {
        len = 0;
        for (size_t i = 2; i < 10; i++) {
            len = len << 8 | p[i];
        }
        if ((len >> 63) != 0) {
            return -WF_WS_CLOSE_PROTOCOL;
        }
    }
    if (len > max_payload) {
        return -WF_WS_CLOSE_TOO_BIG;
    }
    head += 4;
    if (need != NULL) {
        *need = head + len;
    }
    if (n - head < len) {
        return 0;
    }
    ws_unmask(p + head, len, p + head - 4);
    f->fin = (p[0] & WS_FIN) != 0;
    f->opcode = op;
    f->len = len;
    f->payload = p + head;
    return (ssize_t)(head + len);
}

size_t
wf_ws_frame_head(uint8_t *out, bool fin, unsigned opcode, uint64_t len)
{
    out[0] = (uint8_t)((fin ? WS_FIN : 0) | (opcode & WS_OPCODE));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (size_t i = 0; i < 8; i++) {
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    }
    return 10;
}

/* The lead byte of a sequence: how many continuation bytes follow and the
 * range of the first one (which excludes overlong forms, surrogates and
 * code points above U+10FFFF; RFC 3629 section 4). */
static bool
ws_utf8_lead(wf_ws_utf8_t *u, uint8_t c)
{
    static const struct {
        uint8_t first, last, need, lo, hi;
    } leads[] = {
        {0xc2, 0xdf, 1, 0x80, 0xbf}, {0xe0, 0xe0, 2, 0xa0, 0xbf},
        {0xe1, 0xec, 2, 0x80, 0xbf}, {0xed, 0xed, 2, 0x80, 0x9f},
        {0xee, 0xef, 2, 0x80, 0xbf}, {0xf0, 0xf0, 3, 0x90, 0xbf},
        {0xf1, 0xf3, 3, 0x80, 0xbf}, {0xf4, 0xf4, 3, 0x80, 0x8f},
    };

    for (size_t i = 0; i < sizeof(leads) / sizeof(leads[0]); i++) {
        if (c >= leads[i].first && c <= leads[i].last) {
            u->need = leads[i].need;
            u->lo = leads[i].lo;
            u->hi = leads[i].hi;
            return true;
        }
    }
    return false;
}

bool
wf_ws_utf8_feed(wf_ws_utf8_t *u, const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = p[i];

        if (u->need > 0) {
            if (c < u->lo || c > u->hi) {
                return false;
            }
            u->need--;
            u->lo = 0x80;
            u->hi = 0xbf;
            i++;
            continue;
        }
        if (c < 0x80) {
            uint64_t w;

            /* ASCII runs, eight bytes at a time. */
            while (i + 8 <= n) {
                memcpy(&w, p + i, 8);
                if ((w & 0x8080808080808080ULL) != 0) {
                    break;
                }
                i += 8;
            }
            if (i < n && p[i] < 0x80) {
                i++;
            }
            continue;
        }
        if (!ws_utf8_lead(u, c)) {
            return false;
        }
        i++;
    }
    return true;
}

bool
wf_ws_utf8_is_complete(const wf_ws_utf8_t *u)
{
    return u->need == 0;
}

bool
wf_ws_close_code_is_valid(unsigned code)
{
    if (code >= 1000 && code <= 1003) {
        return true;
    }
    if (code >= 1007 && code <= 1014) {
        return true;
    }
    return code >= 3000 && code <= 4999;
}

int
wf_ws_close_parse(const uint8_t *p, size_t n, unsigned *code)
{
    wf_ws_utf8_t u = {0};

    if (n == 0) {
        *code = WF_WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (n == 1) {
        return -WF_WS_CLOSE_PROTOCOL;
    }
    *code = (unsigned)p[0] << 8 | p[1];
    if (!wf_ws_close_code_is_valid(*code)) {
        return -WF_WS_CLOSE_PROTOCOL;
    }
    if (!wf_ws_utf8_feed(&u, p + 2, n - 2) || !wf_ws_utf8_is_complete(&u)) {
        return -WF_WS_CLOSE_BAD_DATA;
    }
    return 0;
}

void
wf_ws_reader_init(wf_ws_reader_t *r, size_t max_frame, size_t max_message)
{
    memset(r, 0, sizeof(*r));
    r->max_frame = max_frame;
    r->max_message = max_message;
}

void
wf_ws_reader_fini(wf_ws_reader_t *r)
{
    free(r->in);
    r->in = NULL;
    free(r->msg);
    r->msg = NULL;
}

uint8_t *
wf_ws_reader_space(wf_ws_reader_t *r, size_t *room)
{
    size_t limit = r->max_frame + WF_WS_MAX_HEAD;

    if (r->in_start > 0) {
        memmove(r->in, r->in + r->in_start, r->in_end - r->in_start);
        r->in_end -= r->in_start;
        r->in_start = 0;
    }
    if (r->in_cap - r->in_end < WS_MIN_ROOM && r->in_cap < limit) {
        size_t cap = r->in_cap == 0 ? 2 * WS_MIN_ROOM : 2 * r->in_cap;
        uint8_t *in;

        if (cap > limit) {
            cap = limit;
        }
        if (cap < r->in_end + WS_MIN_ROOM && r->in_end + WS_MIN_ROOM <= limit) {
            cap = r->in_end + WS_MIN_ROOM;
        }
        in = realloc(r->in, cap);
        if (in == NULL) {
            return NULL;
        }
        r->in = in;
        r->in_cap = cap;
    }
    *room = r->in_cap - r->in_end;
    /* room == 0 only when the buffer holds a whole largest frame, which
     * wf_ws_reader_next() would have taken. */
    return r->in + r->in_end;
}

void
wf_ws_reader_commit(wf_ws_reader_t *r, size_t n)
{
    r->in_end += n;
}

/* Appends a fragment to the message being assembled. */
static int
ws_reader_append(wf_ws_reader_t *r, const wf_ws_frame_t *f)
{
    if (f->len > r->max_message - r->msg_len) {
        return -WF_WS_CLOSE_TOO_BIG;
    }
    if (f->len == 0) {
        return 0; /* nothing to keep; r->msg may not exist yet */
    }
    if (r->msg_len + f->len > r->msg_cap) {
        size_t cap = r->msg_cap == 0 ? 2 * WS_MIN_ROOM : r->msg_cap;
        uint8_t *msg;

        while (cap < r->msg_len + f->len) {
            cap *= 2;
        }
        if (cap > r->max_message) {
            cap = r->max_message;
        }
        msg = realloc(r->msg, cap);
        if (msg == NULL) {
            return -WF_WS_CLOSE_INTERNAL;
        }
        r->msg = msg;
        r->msg_cap = cap;
    }
    memcpy(r->msg + r->msg_len, f->payload, f->len);
    r->msg_len += f->len;
    return 0;
}

/* A data frame (TEXT, BINARY or CONT): 1 when it ends a message (*ev
 * set), 0 when more fragments must come, or minus a close code. */
static int
ws_reader_data(wf_ws_reader_t *r, const wf_ws_frame_t *f, wf_ws_event_t *ev)
{
    int rc;

    if ((f->opcode == WF_WS_OP_CONT) != (r->msg_op != 0)) {
        return -WF_WS_CLOSE_PROTOCOL; /* a lone CONT, or an interleaved
                                         new message */
    }
    if (f->opcode != WF_WS_OP_CONT) {
        r->msg_op = f->opcode;
        r->msg_len = 0;
        memset(&r->utf8, 0, sizeof(r->utf8));
    }
    if (r->msg_op == WF_WS_OP_TEXT) {
        if (!wf_ws_utf8_feed(&r->utf8, f->payload, f->len)
            || (f->fin && !wf_ws_utf8_is_complete(&r->utf8))) {
            return -WF_WS_CLOSE_BAD_DATA; /* fail fast (RFC 6455 8.1) */
        }
    }
    ev->opcode = r->msg_op;
    if (f->fin && f->opcode != WF_WS_OP_CONT) {
        /* Unfragmented: point into the input, no copy. */
        if (f->len > r->max_message) {
            return -WF_WS_CLOSE_TOO_BIG;
        }
        r->msg_op = 0;
        ev->data = f->payload;
        ev->len = f->len;
        return 1;
    }
    rc = ws_reader_append(r, f);
    if (rc != 0 || !f->fin) {
        return rc;
    }
    r->msg_op = 0;
    ev->data = r->msg;
    ev->len = r->msg_len;
    return 1;
}

int
wf_ws_reader_next(wf_ws_reader_t *r, wf_ws_event_t *ev)
{
    for (;;) {
        wf_ws_frame_t f;
        ssize_t n;
        int rc;

        n = wf_ws_frame_parse(r->in + r->in_start, r->in_end - r->in_start,
                              r->max_frame, &f, NULL);
        if (n <= 0) {
            return (int)n;
        }
        r->in_start += (size_t)n;
        if (f.opcode >= WF_WS_OP_CLOSE) {
            ev->opcode = f.opcode;
            ev->data = f.payload;
            ev->len = f.len;
            ev->code = 0;
            if (f.opcode == WF_WS_OP_CLOSE) {
                rc = wf_ws_close_parse(f.payload, f.len, &ev->code);
                if (rc != 0) {
                    return rc;
                }
            }
            return 1;
        }
        ev->code = 0;
        rc = ws_reader_data(r, &f, ev);
        if (rc != 0) {
            return rc;
        }
    }
}

/* SHA-1 (FIPS 180-4), just enough for the handshake's one short input. */
typedef struct ws_sha1 {
    uint32_t h[5];
    uint8_t block[64];
    size_t used;    /* bytes in block */
    uint64_t total; /* bytes hashed */
} ws_sha1_t;

static uint32_t
ws_rol(uint32_t x, unsigned n)
{
    return x << n | x >> (32 - n);
}

static void
ws_sha1_block(ws_sha1_t *s, const uint8_t *p)
{
    uint32_t w[80], a, b, c, d, e;

    for (size_t i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16
               | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (size_t i = 16; i < 80; i++) {
        w[i] = ws_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    a = s->h[0];
    b = s->h[1];
    c = s->h[2];
    d = s->h[3];
    e = s->h[4];
    for (size_t i = 0; i < 80; i++) {
        uint32_t f, k, t;

        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        t = ws_rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = ws_rol(b, 30);
        b = a;
        a = t;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
}

static void
ws_sha1_update(ws_sha1_t *s, const uint8_t *p, size_t n)
{
    s->total += n;
    while (n > 0) {
        size_t take = 64 - s->used;

        if (take > n) {
            take = n;
        }
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used == 64) {
            ws_sha1_block(s, s->block);
            s->used = 0;
        }
    }
}

static void
ws_sha1_final(ws_sha1_t *s, uint8_t out[20])
{
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = {0x80};
    uint8_t len[8];
    size_t npad = (s->used < 56 ? 56 : 120) - s->used;

    for (size_t i = 0; i < 8; i++) {
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    ws_sha1_update(s, pad, npad);
    ws_sha1_update(s, len, 8);
    for (size_t i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void
wf_ws_accept(const char *key, size_t len, char out[WF_WS_ACCEPT_LEN + 1])
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    ws_sha1_t s = {
        .h = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0}};
    uint8_t d[21];
    char *o = out;

    ws_sha1_update(&s, (const uint8_t *)key, len);
    ws_sha1_update(&s, (const uint8_t *)ws_guid, sizeof(ws_guid) - 1);
    ws_sha1_final(&s, d);
    d[20] = 0; /* 20 bytes: six whole groups of three, then two bytes */
    for (size_t i = 0; i < 21; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];

        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
        *o++ = b64[v >> 6 & 63];
        *o++ = i < 18 ? b64[v & 63] : '=';
    }
    out[WF_WS_ACCEPT_LEN] = '\0';
}
