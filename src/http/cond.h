/* Validators and conditional requests (RFC 9110 sections 8.8 and 13):
 * HTTP dates, ETags, If-None-Match, If-Modified-Since. */
#ifndef WF_HTTP_COND_H
#define WF_HTTP_COND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/str.h"

#define WF_HTTP_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define WF_ETAG_MAX      48

/* Writes t as an IMF-fixdate into out (WF_HTTP_DATE_LEN bytes, no NUL).
 * Times outside years 0000-9999 are clamped to them. */
void wf_http_date_format(time_t t, char *out);

/* Parses an HTTP date in any of the three forms RFC 9110 names.  Returns
 * WF_OK with *t set, or WF_ERROR.  Names are case-sensitive and every field
 * is range-checked; the day name is not checked against the date.  Two-digit
 * years (RFC 850) 70-99 are 19xx, 00-69 are 20xx.  OWS around is ignored. */
int wf_http_date_parse(wf_str_t s, time_t *t);

/* Writes a strong ETag for a file, quotes included ("5f3a1b2c-400"), into
 * out (WF_ETAG_MAX bytes, no NUL) and returns its length.  As in Unit, both
 * numbers are lower-case hex, and a negative mtime has a '-' sign. */
size_t wf_etag_format(char *out, time_t mtime, uint64_t size);

/* True when the If-None-Match value list matches etag (weak comparison;
 * "*" matches any, but only as the whole value).  A malformed list never
 * matches. */
bool wf_etag_list_match(wf_str_t if_none_match, wf_str_t etag);

/* True when the If-Range value allows the range: a strong ETag equal to
 * etag, or an HTTP date equal to mtime.  A zero-length value means the field
 * is absent and also returns true. */
bool wf_if_range_ok(wf_str_t if_range, wf_str_t etag, time_t mtime);

/* True when a GET or HEAD for a resource with (etag, mtime) gets 304:
 * If-None-Match is evaluated when present (If-Modified-Since is then
 * ignored), otherwise If-Modified-Since (mtime <= date).  Zero-length
 * strings mean the field is absent. */
bool wf_cond_not_modified(wf_str_t if_none_match, wf_str_t if_modified_since,
                          wf_str_t etag, time_t mtime);

#endif
