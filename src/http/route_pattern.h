/* Route internals shared by route.c and route_pattern.c: compiling string
 * patterns with the options of each match key, and address patterns
 * ("source", "destination").  Not for other modules: they use route.h. */
#ifndef WF_HTTP_ROUTE_PATTERN_H
#define WF_HTTP_ROUTE_PATTERN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/pool.h"
#include "core/str.h"
#include "http/route.h"

#define WF_PAT_CASELESS 0x1u /* compare ASCII letters caselessly */
#define WF_PAT_DECODE   0x2u /* pieces are percent-decoded ("uri") */
#define WF_PAT_PLUS     0x4u /* and '+' is a space ("query", "arguments") */
#define WF_PAT_UPPER    0x8u /* pieces are upper-cased ("method") */

typedef struct wf_addr_set wf_addr_set_t;

/* Compiles a string or an array of strings for match key `key` (used in
 * Unit's messages).  flags: WF_PAT_*.  Returns NULL with the message in
 * err. */
wf_pattern_set_t *wf_pattern_set_compile_key(wf_arena_t *a, const json_t *v,
                                             unsigned flags, const char *key,
                                             char *err, size_t errlen);

/* If ps is exactly one or more positive literal patterns (no '*', no regex,
 * no '!'), returns how many and, when out is not NULL, stores them (in
 * the compiled form: lower-cased when caseless) in out[0..max). */
size_t wf_pattern_set_literals(const wf_pattern_set_t *ps, wf_str_t *out,
                               size_t max);

/* Compiles "source"/"destination" patterns ("10.0.0.0/8", "!unix",
 * "[::1]:80", "*:8000-8080").  Returns NULL with Unit's message in err. */
wf_addr_set_t *wf_addr_set_compile(wf_arena_t *a, const json_t *v, char *err,
                                   size_t errlen);

/* True when sa matches: some positive pattern (or there is none) and no
 * negative one.  A NULL sa matches nothing. */
bool wf_addr_set_match(const wf_addr_set_t *as, const wf_sockaddr_t *sa);

#endif
