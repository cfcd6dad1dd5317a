/* Range requests (RFC 9110 section 14): one byte range per request. */
#ifndef WF_HTTP_RANGE_H
#define WF_HTTP_RANGE_H

#include <stdint.h>

#include "core/str.h"

typedef struct wf_range {
    uint64_t start; /* first byte */
    uint64_t end;   /* last byte, inclusive */
} wf_range_t;

/* Parses a Range field value for a representation of size bytes.
 * Returns WF_OK with *r set (answer 206), WF_DECLINED when the field must be
 * ignored (not "bytes=", malformed, or several ranges: answer 200 with the
 * whole body), or WF_ERROR when no range is satisfiable (answer 416).
 * Details: the unit is matched case-insensitively and OWS is allowed around
 * "=" and the commas of the list (empty elements too); "a-b" with b past the
 * end is clamped; b < a, or a number over 64 bits, is malformed; "-0" and
 * a >= size are unsatisfiable; for size 0 every other range is declined,
 * as neither a 206 nor (for "-n") a 416 would be right. */
int wf_range_parse(wf_str_t value, uint64_t size, wf_range_t *r);

#endif
