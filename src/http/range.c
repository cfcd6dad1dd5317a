#include "http/range.h"

#include <stdbool.h>
#include <stdint.h>

#include "core/common.h"

/* One range-spec as written, before it meets the representation's size. */
typedef struct range_spec {
    bool suffix;    /* "-n": the last n bytes */
    bool has_last;  /* "a-b" rather than "a-" */
    uint64_t first; /* a, or n of a suffix */
    uint64_t last;  /* b when has_last */
} range_spec_t;

static bool
range_is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Reads 1*DIGIT at s[*i]; WF_DECLINED when there is none or it overflows
 * 64 bits (such a request is ignored rather than answered 416). */
static int
range_number(wf_str_t s, size_t *i, uint64_t *v)
{
    size_t start = *i;

    *v = 0;
    for (; *i < s.len; (*i)++) {
        unsigned d = (unsigned)(s.data[*i] - '0');

        if (d > 9) {
            break;
        }
        if (*v > (UINT64_MAX - d) / 10) {
            return WF_DECLINED;
        }
        *v = *v * 10 + d;
    }
    return *i > start ? WF_OK : WF_DECLINED;
}

/* Parses the range-spec that starts at s[*i] and ends at a ',', OWS or the
 * end: int-range ("a-" or "a-b") or suffix-range ("-n").  WF_DECLINED when
 * malformed, including b < a. */
static int
range_spec_parse(wf_str_t s, size_t *i, range_spec_t *sp)
{
    *sp = (range_spec_t){0};

    if (s.data[*i] == '-') {
        (*i)++;
        sp->suffix = true;
        return range_number(s, i, &sp->first);
    }
    if (range_number(s, i, &sp->first) != WF_OK) {
        return WF_DECLINED;
    }
    if (*i == s.len || s.data[*i] != '-') {
        return WF_DECLINED;
    }
    (*i)++;
    if (*i == s.len || s.data[*i] < '0' || s.data[*i] > '9') {
        return WF_OK; /* "a-" */
    }
    sp->has_last = true;
    if (range_number(s, i, &sp->last) != WF_OK || sp->last < sp->first) {
        return WF_DECLINED;
    }
    return WF_OK;
}

/* Parses the range-set (1#range-spec) from s[i] to its end into *sp.
 * Empty list elements and OWS around commas are allowed.  WF_DECLINED when
 * malformed, empty, or holding more than one range. */
static int
range_set_parse(wf_str_t s, size_t i, range_spec_t *sp)
{
    unsigned n = 0;

    while (i < s.len) {
        if (s.data[i] == ',' || range_is_ows(s.data[i])) {
            i++;
            continue;
        }
        if (n++ > 0 || range_spec_parse(s, &i, sp) != WF_OK) {
            return WF_DECLINED; /* we serve one range only */
        }
        while (i < s.len && range_is_ows(s.data[i])) {
            i++;
        }
        if (i < s.len && s.data[i] != ',') {
            return WF_DECLINED;
        }
    }
    return n == 1 ? WF_OK : WF_DECLINED;
}

/* Skips "bytes" (case-insensitively), then "=" with optional OWS around it,
 * and returns the index after them, or 0 when the unit is not "bytes". */
static size_t
range_skip_unit(wf_str_t s)
{
    static const char unit[] = "bytes";
    size_t i = 0;

    while (i < s.len && range_is_ows(s.data[i])) {
        i++;
    }
    if (s.len - i < sizeof(unit) - 1
        || !wf_str_eq_nocase(wf_str_make(s.data + i, sizeof(unit) - 1),
                             wf_string(unit))) {
        return 0;
    }
    i += sizeof(unit) - 1;
    while (i < s.len && range_is_ows(s.data[i])) {
        i++;
    }
    if (i == s.len || s.data[i] != '=') {
        return 0;
    }
    return i + 1;
}

int
wf_range_parse(wf_str_t value, uint64_t size, wf_range_t *r)
{
    range_spec_t sp;
    size_t i = range_skip_unit(value);

    if (i == 0 || range_set_parse(value, i, &sp) != WF_OK) {
        return WF_DECLINED;
    }
    if (sp.suffix && sp.first == 0) {
        return WF_ERROR; /* "-0" selects nothing of any representation */
    }
    if (size == 0) {
        /* A 206 cannot carry an empty range, and a suffix-range of an
         * empty representation is satisfiable (RFC 9110 section 14.1.1),
         * so 416 would be wrong too: send the whole, empty, body. */
        return WF_DECLINED;
    }
    if (sp.suffix) {
        r->start = sp.first >= size ? 0 : size - sp.first;
        r->end = size - 1;
        return WF_OK;
    }
    if (sp.first >= size) {
        return WF_ERROR;
    }
    r->start = sp.first;
    r->end = sp.has_last ? wf_min(sp.last, size - 1) : size - 1;
    return WF_OK;
}
