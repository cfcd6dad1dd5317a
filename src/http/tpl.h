/* Strings with variables ("/srv/www$uri", "https://${host}/x"), compiled once
 * per config.  Unit's variables: $uri, $host, $method, $request_uri,
 * $request_line, $remote_addr, $status, $body_bytes_sent, $request_time,
 * $time_local, $request_id, $dollar, $header_NAME (caseless, '_' matches
 * '-'), $arg_NAME (decoded; the last one), $cookie_NAME; ${name} is the
 * same as $name.  Rendering never allocates. */
#ifndef WF_HTTP_TPL_H
#define WF_HTTP_TPL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/pool.h"
#include "core/str.h"

typedef struct wf_route_req wf_route_req_t;
typedef struct wf_tpl wf_tpl_t;

/* Compiles s[0..len) into a, which owns the result.  Returns NULL and writes
 * Unit's message (e.g. 'Unknown variable "foo"') to err on failure. */
wf_tpl_t *wf_tpl_compile(wf_arena_t *a, const char *s, size_t len, char *err,
                         size_t errlen);

/* True when the template has no variables (its text is then constant). */
bool wf_tpl_is_const(const wf_tpl_t *t);

/* Renders t for rq into out[0..cap).  Returns the length the full result
 * needs (which may exceed cap; then out holds a truncated prefix).  out may
 * be NULL when cap is 0.  Never allocates.  $request_id and the clock
 * variables may differ between two calls. */
size_t wf_tpl_render(const wf_tpl_t *t, const wf_route_req_t *rq, char *out,
                     size_t cap);

/* As wf_tpl_render(), but a variable whose value is empty renders as "-",
 * as in Unit's access log. */
size_t wf_tpl_render_log(const wf_tpl_t *t, const wf_route_req_t *rq, char *out,
                         size_t cap);

/* Unit's truth of a condition ("if"): false when t renders to "", "0",
 * "false", "null" or "undefined"; true otherwise.  Never allocates. */
bool wf_tpl_is_true(const wf_tpl_t *t, const wf_route_req_t *rq);

#endif
