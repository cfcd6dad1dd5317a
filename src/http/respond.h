/* Serialising HTTP/1.1 responses: status lines, the per-thread Date, the
 * Server field and Unit's error pages. */
#ifndef WF_HTTP_RESPOND_H
#define WF_HTTP_RESPOND_H

#include <stdbool.h>
#include <stddef.h>

#include "core/loop.h"
#include "http/req.h"

/* Bytes of the head for resp at most (a bound for the buffer).  With
 * resp->fields set, renders their values once to measure them. */
size_t wf_resp_head_size(const wf_resp_t *resp);

/* Writes the status line and fields of resp, final CRLF included, into
 * out[0..cap) (cap: wf_resp_head_size()).  resp->fields replace, delete or
 * add fields; Date, Server, Content-Length, Connection and
 * Transfer-Encoding are never theirs to change.  resp->stream writes
 * Transfer-Encoding: chunked instead of Content-Length (nothing for
 * HTTP/1.0, whose body the close delimits), unless resp->stream_length
 * says the length is known.  resp->raw_fields go out as they are.  keep_alive
 * and the request's version (10 or 11) decide the Connection field;
 * server_version whether Server carries the version.  Returns the length. Never
 * allocates. */
size_t wf_resp_head_write(char *out, size_t cap, const wf_resp_t *resp,
                          wf_loop_t *loop, bool keep_alive, unsigned version,
                          bool server_version);

/* Unit's error page for status ("<!DOCTYPE html><title>Error 404</title>
 * <p>Error 404.\r\n"); a static string. */
wf_str_t wf_resp_error_page(unsigned status);

/* Makes resp's body Unit's error page for status (none for statuses
 * without one), with its Content-Type and Content-Length. */
void wf_resp_set_error_page(wf_resp_t *resp, unsigned status);

/* The reason phrase of status, or "" when it has none. */
wf_str_t wf_resp_reason(unsigned status);

#endif
