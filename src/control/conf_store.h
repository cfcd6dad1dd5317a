/* Operations on a JSON config tree with the path semantics of Unit's control
 * API: "/listeners/127.0.0.1:8080/pass", "/routes/0/match".  Each segment
 * names an object member or, in an array, a decimal index; segments are
 * percent-decoded, so a key holding '/' is addressed as "%2F".  Changes are
 * made on a deep copy: the tree passed in is never modified. */
#ifndef WF_CONTROL_CONF_STORE_H
#define WF_CONTROL_CONF_STORE_H

#include <jansson.h>
#include <stddef.h>

typedef enum wf_conf_op {
    WF_CONF_OP_GET = 0,
    WF_CONF_OP_PUT,    /* replace or create the value at the path */
    WF_CONF_OP_POST,   /* append the value to the array at the path */
    WF_CONF_OP_DELETE, /* remove the value at the path */
    WF_CONF_NOPS       /* must stay last */
} wf_conf_op_t;

typedef enum wf_conf_store_rc {
    WF_CONF_STORE_OK = 0,
    WF_CONF_STORE_NOT_FOUND,   /* Unit: 404 "Value doesn't exist." */
    WF_CONF_STORE_NOT_ALLOWED, /* Unit: 405 "Method isn't allowed." */
    WF_CONF_STORE_NOMEM        /* Unit: 500 "Memory allocation failed." */
} wf_conf_store_rc_t;

/* Returns the value at path[0..len) in root (borrowed from root), or NULL
 * when there is none.  The path starts with '/'; "/" and "" name root.
 * An empty segment inside the path, an index that is not a plain decimal
 * number and a bad percent escape all make the value missing. */
json_t *wf_conf_store_get(json_t *root, const char *path, size_t len);

/* Applies op at path[0..len) to a deep copy of root (borrowed, unchanged)
 * and on WF_CONF_STORE_OK stores the resulting tree, a new reference, in
 * *out.  value (borrowed; the result takes a reference) is the operand of
 * PUT and POST and is ignored otherwise.  As in Unit:
 *   - PUT needs the parent of the last segment to exist; in an array the
 *     index may be the length (append) but not beyond; PUT "/" replaces
 *     the whole tree.
 *   - POST needs the path to name an array (else NOT_ALLOWED); POST "/" is
 *     NOT_ALLOWED.
 *   - DELETE needs the value to exist; DELETE "/" leaves {}.
 *   - GET returns a new reference to the value, like wf_conf_store_get().
 * Missing values are WF_CONF_STORE_NOT_FOUND. */
wf_conf_store_rc_t wf_conf_store_apply(json_t *root, wf_conf_op_t op,
                                       const char *path, size_t len,
                                       json_t *value, json_t **out);

/* Percent-decodes src[0..len) into dst (at least len + 1 bytes) and
 * NUL-terminates it.  Returns the decoded length, or -1 for a '%' not
 * followed by two hex digits.  '+' is kept as is. */
long wf_conf_store_decode(char *dst, const char *src, size_t len);

#endif
