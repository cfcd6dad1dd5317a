/* Request fields as Unit's routes and variables see them: arguments and
 * cookies split without allocating, header names compared the way $header_
 * variables compare them, percent-decoding, addresses as text.
 *
 * Everything here reads the request (wf_route_req_t, wf_h1_head_t) and
 * writes only into buffers the caller passes. */
#ifndef WF_HTTP_VAR_H
#define WF_HTTP_VAR_H

#include <stdbool.h>
#include <stddef.h>

#include "core/str.h"
#include "http/h1_parse.h"
#include "http/route.h"

/* A name and a value as they appear in the request (not decoded). */
typedef struct wf_var_pair {
    wf_str_t name;
    wf_str_t value;
} wf_var_pair_t;

/* Percent-decodes src[0..n) into dst, which has room for n bytes (decoding
 * never grows); '+' becomes ' ' when plus.  A '%' not followed by two hex
 * digits is kept as it is, as Unit does with request bytes.  Returns the
 * decoded length. */
size_t wf_var_decode(char *dst, const char *src, size_t n, bool plus);

/* As wf_var_decode() but writes at most cap bytes (a prefix); returns the
 * full decoded length. */
size_t wf_var_decode_n(char *dst, size_t cap, const char *src, size_t n,
                       bool plus);

/* As wf_var_decode() but for config patterns: a bad escape is an error.
 * Returns false then; *len is the decoded length on success. */
bool wf_var_decode_strict(char *dst, const char *src, size_t n, bool plus,
                          size_t *len);

/* True when raw, decoded with '+' as ' ', equals want byte for byte. */
bool wf_var_decoded_eq(wf_str_t raw, wf_str_t want);

/* Steps through the arguments of a query ("a=1&b&=c"), Unit's way: '&'
 * separates, the first '=' ends the name, an argument with neither name nor
 * value is skipped, "b" is the name "b" with an empty value.  Start with
 * *pos = 0; returns false after the last one.  arg gets raw slices. */
bool wf_var_arg_next(wf_str_t query, size_t *pos, wf_var_pair_t *arg);

/* Steps through the cookies of every Cookie field ("a=1; b=2"), Unit's
 * way: ';' separates, spaces before a name and after a value are dropped,
 * a piece without '=' is ignored.  Start with *field = *pos = 0. */
bool wf_var_cookie_next(const wf_h1_head_t *h, unsigned *field, size_t *pos,
                        wf_var_pair_t *cookie);

/* True when the field name equals the variable suffix name ("user_agent"
 * for User-Agent): case-insensitive, '_' in name matches '-'. */
bool wf_var_header_name_eq(wf_str_t field, wf_str_t name);

/* Writes the address of sa ("192.0.2.1", "2001:db8::1", "unix:") into
 * buf[0..cap) (cap >= 64).  Returns its length; 0 when sa is NULL. */
size_t wf_var_addr_text(const wf_sockaddr_t *sa, char *buf, size_t cap);

/* Wharf's TLS variables ($tls_protocol, $tls_cipher, $tls_sni,
 * $tls_client_verify, $tls_client_verified, $tls_client_subject,
 * $tls_client_issuer, $tls_client_serial, $tls_client_fingerprint; see
 * net/tls.h): the index of name[0..len) among them, or -1. */
int wf_var_tls_find(const char *name, size_t len);

/* Sets *v to the value of TLS variable idx (from wf_var_tls_find()) for
 * rq's connection; false when it has none (a plain connection, no client
 * certificate...). */
bool wf_var_tls_get(const wf_route_req_t *rq, int idx, wf_str_t *v);

/* The fields proxy_settings' "forward_client_cert" sends a backend, as
 * "Name: value" CRLF lines into buf[0..cap): X-Client-Verify (whenever the
 * connection is TLS), X-Client-Subject, -Issuer, -Serial and -Fingerprint
 * (when the client sent a certificate and the listener asked for one); a
 * field that does not fit whole is left out.  Returns the bytes
 * written. */
size_t wf_var_tls_client_fields(const wf_route_req_t *rq, char *buf,
                                size_t cap);

/* Whether name is one of those fields (the client's own are dropped). */
bool wf_var_tls_is_client_field(wf_str_t name);

#endif
