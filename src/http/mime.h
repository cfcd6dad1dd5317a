/* MIME types by file extension: Unit's default table, extended by
 * settings.http.static.mime_types. */
#ifndef WF_HTTP_MIME_H
#define WF_HTTP_MIME_H

#include "core/pool.h"
#include "core/str.h"

typedef struct wf_mime_table wf_mime_table_t;

/* Creates a table holding Unit's defaults, allocated in a (which owns it). */
wf_mime_table_t *wf_mime_table_create(wf_arena_t *a);

/* Maps extension ext (with its leading dot, e.g. ".html"; matched
 * case-insensitively) to type; a later mapping of the same extension
 * replaces the earlier one.  Both strings are copied into a.  Returns WF_OK,
 * or WF_ERROR when out of memory. */
int wf_mime_table_add(wf_mime_table_t *t, wf_arena_t *a, wf_str_t type,
                      wf_str_t ext);

/* Returns the type for the extension of path (after its last '.' in the
 * last segment), or a zero-length string when unknown.  Never allocates.
 * As in Unit, a last segment without a dot is looked up whole, so a mapping
 * added for "README" (no leading dot) matches a file named README. */
wf_str_t wf_mime_lookup(const wf_mime_table_t *t, wf_str_t path);

#endif
