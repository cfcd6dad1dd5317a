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
 * whole body), or WF_ERROR when no range is satisfiable (answer 416). */
int wf_range_parse(wf_str_t value, uint64_t size, wf_range_t *r);

#endif
