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

/* Percent-encodes a rendered Location as Unit does: when loc[0..len) holds
 * a byte that must not appear raw (controls, SP, '"', '%', '<', '>', '\\',
 * '^', '`', '{', '|', '}', DEL, bytes >= 0x80, a '?' after the first '?' or
 * after a '#', a '#' after the first '#') other than a valid "%XX", every
 * such byte is written as "%XX" (a '%' too); otherwise loc is copied as it
 * is.  Writes at most cap bytes to out (a prefix when it does not fit; out
 * may be NULL when cap is 0) and returns the full length. */
size_t wf_uri_encode_location(const char *loc, size_t len, char *out,
                              size_t cap);

#endif
