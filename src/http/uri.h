/* Request-target paths: percent-decoding and dot-segment removal, so that a
 * path can be appended to a share root without ever escaping it. */
#ifndef WF_HTTP_URI_H
#define WF_HTTP_URI_H

#include <stddef.h>

/* Decodes the raw path in[0..len) (origin-form, starts with '/') into out,
 * which has room for len bytes (the result is never longer):
 * - "%XX" is decoded; a '%' not followed by two hex digits is an error;
 * - a decoded NUL is an error;
 * - a decoded '/' ("%2F") is a separator like '/';
 * - "." and ".." segments (also when encoded, "%2e%2E") are removed as in
 *   RFC 3986 section 5.2.4; a ".." above the root is an error;
 * - repeated slashes are merged.
 * The result starts with '/' and keeps a trailing slash.  Returns WF_OK with
 * *out_len set, or WF_ERROR (the caller answers 400). */
int wf_uri_normalize(const char *in, size_t len, char *out, size_t *out_len);

/* Decodes "%XX" sequences of in[0..len) into out (room for len bytes) without
 * touching dot-segments.  Returns WF_OK with *out_len set, or WF_ERROR for a
 * bad escape. */
int wf_uri_decode(const char *in, size_t len, char *out, size_t *out_len);

#endif
