#include "http/uri.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/common.h"

/* Hex digit values with bit 4 set, so that 0 means "not a hex digit" and the
 * validity of two digits is one AND. */
static const uint8_t uri_hex[256] = {
    ['0'] = 0x10, ['1'] = 0x11, ['2'] = 0x12, ['3'] = 0x13, ['4'] = 0x14,
    ['5'] = 0x15, ['6'] = 0x16, ['7'] = 0x17, ['8'] = 0x18, ['9'] = 0x19,
    ['a'] = 0x1a, ['b'] = 0x1b, ['c'] = 0x1c, ['d'] = 0x1d, ['e'] = 0x1e,
    ['f'] = 0x1f, ['A'] = 0x1a, ['B'] = 0x1b, ['C'] = 0x1c, ['D'] = 0x1d,
    ['E'] = 0x1e, ['F'] = 0x1f,
};

/* Bytes that end the fast path of wf_uri_normalize(): an escape, a NUL, or a
 * slash (which only matters when "/" or "." follows it). */
static const bool uri_special[256] = {
    ['%'] = true,
    ['/'] = true,
    ['\0'] = true,
};

/* Decodes the escape at in[*i] (a '%') into *ch and advances *i past it.
 * Returns WF_ERROR when fewer than two hex digits follow. */
static int
uri_unescape(const char *in, size_t len, size_t *i, unsigned char *ch)
{
    uint8_t hi, lo;

    if (len - *i < 3) {
        return WF_ERROR;
    }
    hi = uri_hex[(unsigned char)in[*i + 1]];
    lo = uri_hex[(unsigned char)in[*i + 2]];
    if ((hi & lo & 0x10) == 0) {
        return WF_ERROR;
    }
    *ch = (unsigned char)((hi & 0x0f) << 4 | (lo & 0x0f));
    *i += 3;
    return WF_OK;
}

/* Ends the segment out[*seg..*o) at a separator or at the end of the input:
 * drops it when empty or ".", removes it and its parent when "..", otherwise
 * keeps it.  On return out[0..*o) ends with '/' and *seg == *o, except that
 * a kept last segment (at_end) gets no slash.  Returns WF_ERROR for a ".."
 * above the root. */
static int
uri_end_segment(char *out, size_t *o, size_t *seg, bool at_end)
{
    size_t n = *o - *seg;
    const char *s = out + *seg;

    if (n == 0 || (n == 1 && s[0] == '.')) {
        *o = *seg;
        return WF_OK;
    }
    if (n == 2 && s[0] == '.' && s[1] == '.') {
        if (*seg == 1) {
            return WF_ERROR;
        }
        /* out[*seg - 1] is the '/' before ".."; find the one before that. */
        *o = *seg - 1;
        while (out[*o - 1] != '/') {
            (*o)--;
        }
        *seg = *o;
        return WF_OK;
    }
    if (!at_end) {
        out[(*o)++] = '/';
        *seg = *o;
    }
    return WF_OK;
}

/* The general case of wf_uri_normalize(), entered at in[i] with out[0..i)
 * already normalised (it starts with '/') and seg the index in out just
 * after its last '/'. */
static int
uri_normalize_slow(const char *in, size_t len, size_t i, size_t seg, char *out,
                   size_t *out_len)
{
    size_t o = i;
    unsigned char ch;

    if (o == 0) {
        out[o++] = '/';
        seg = o;
        i = 1;
    }
    while (i < len) {
        ch = (unsigned char)in[i];
        if (ch == '%') {
            if (uri_unescape(in, len, &i, &ch) != WF_OK) {
                return WF_ERROR;
            }
        } else {
            i++;
        }
        if (ch == '\0') {
            return WF_ERROR;
        }
        if (ch != '/') {
            out[o++] = (char)ch;
            continue;
        }
        if (uri_end_segment(out, &o, &seg, false) != WF_OK) {
            return WF_ERROR;
        }
    }
    if (uri_end_segment(out, &o, &seg, true) != WF_OK) {
        return WF_ERROR;
    }
    *out_len = o;
    return WF_OK;
}

int
wf_uri_normalize(const char *in, size_t len, char *out, size_t *out_len)
{
    size_t i, seg = 0;
    unsigned char ch;

    if (len == 0 || in[0] != '/') {
        return WF_ERROR;
    }

    /* Most paths have no escape, no dot-segment and no "//": look for the
     * first place where one starts, copy what precedes it, and hand over
     * to the general case there.  Every segment begins after a '/' checked
     * here, so the copied prefix holds no dot-segment. */
    for (i = 0; i < len; i++) {
        ch = (unsigned char)in[i];
        if (wf_unlikely(uri_special[ch])) {
            if (ch != '/'
                || (i + 1 < len && (in[i + 1] == '/' || in[i + 1] == '.'))) {
                break;
            }
            seg = i + 1;
        }
    }
    memcpy(out, in, i);
    if (i < len) {
        return uri_normalize_slow(in, len, i, seg, out, out_len);
    }
    *out_len = len;
    return WF_OK;
}

int
wf_uri_decode(const char *in, size_t len, char *out, size_t *out_len)
{
    size_t i = 0, o = 0;
    unsigned char ch;
    const char *pct;

    if (len == 0) {
        *out_len = 0;
        return WF_OK;
    }
    pct = memchr(in, '%', len);
    if (pct == NULL) {
        memcpy(out, in, len);
        *out_len = len;
        return WF_OK;
    }
    i = (size_t)(pct - in);
    memcpy(out, in, i);
    o = i;
    while (i < len) {
        ch = (unsigned char)in[i];
        if (ch == '%') {
            if (uri_unescape(in, len, &i, &ch) != WF_OK) {
                return WF_ERROR;
            }
        } else {
            i++;
        }
        out[o++] = (char)ch;
    }
    *out_len = o;
    return WF_OK;
}

/* Bytes that a Location must not hold raw, as Unit's table (nxt_uri_escape):
 * controls, SP, '"', '#', '%', '<', '>', '?', '\\', '^', '`', '{', '|',
 * '}', DEL and every byte >= 0x80.  '#' and '?' are kept where they start
 * the fragment and the query (see uri_loc_reserved()). */
static bool
uri_loc_escapes(unsigned char c)
{
    static const uint32_t bits[8] = {
        0xffffffff, 0xd000002d, 0x50000000, 0xb8000001,
        0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
    };

    return (bits[c >> 5] >> (c & 0x1f) & 1) != 0;
}

/* Whether c, a byte that uri_loc_escapes(), may stay raw here: the first '?'
 * before any '#', and the first '#'.  *seen tracks them: 0 at the start,
 * 1 after the query's '?', 2 after the fragment's '#'. */
static bool
uri_loc_reserved(unsigned char c, unsigned *seen)
{
    if (c == '?' && *seen == 0) {
        *seen = 1;
        return true;
    }
    if (c == '#' && *seen < 2) {
        *seen = 2;
        return true;
    }
    return false;
}

/* True when loc[0..len) needs no encoding: each byte that must be escaped
 * is a valid "%XX" or a reserved '?' or '#'. */
static bool
uri_loc_is_encoded(const char *loc, size_t len)
{
    unsigned seen = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)loc[i];

        if (!uri_loc_escapes(c)) {
            continue;
        }
        if (c == '%') {
            unsigned char ch;
            size_t at = i;

            if (uri_unescape(loc, len, &at, &ch) != WF_OK) {
                return false;
            }
            i = at - 1;
            continue;
        }
        if (!uri_loc_reserved(c, &seen)) {
            return false;
        }
    }
    return true;
}

size_t
wf_uri_encode_location(const char *loc, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    bool keep = uri_loc_is_encoded(loc, len);
    unsigned seen = 0;
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)loc[i];

        char esc[3] = {'%', hex[c >> 4], hex[c & 0x0f]};
        bool raw = keep || !uri_loc_escapes(c) || uri_loc_reserved(c, &seen);

        if (raw) {
            esc[0] = (char)c;
        }
        for (size_t k = 0; k < (raw ? 1u : 3u); k++, n++) {
            if (n < cap) {
                out[n] = esc[k];
            }
        }
    }
    return n;
}
