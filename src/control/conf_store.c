#include "control/conf_store.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

/* A path is walked one decoded segment at a time.  Every operation but GET
 * first resolves the parent of the last segment in a deep copy of the tree,
 * then one handler per operation (store_ops[]) changes that parent. */

typedef struct store_seg {
    char *key; /* decoded, NUL-terminated; owned by the walk */
    size_t len;
} store_seg_t;

typedef struct store_walk {
    const char *p; /* the start of the next segment */
    const char *end;
    bool last; /* the segment decoded last ends the path */
    char *buf; /* len + 1 bytes: one decoded segment at a time */
} store_walk_t;

static int
store_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)(c | 0x20);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

long
wf_conf_store_decode(char *dst, const char *src, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int hi;
        int lo;

        if (src[i] != '%') {
            dst[n++] = src[i];
            continue;
        }
        if (len - i < 3) {
            return -1;
        }
        hi = store_hex(src[i + 1]);
        lo = store_hex(src[i + 2]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        dst[n++] = (char)(hi << 4 | lo);
        i += 2;
    }
    dst[n] = '\0';
    return (long)n;
}

/* "" and "/" name the root: no segment at all. */
static bool
store_is_root(const char *path, size_t len)
{
    return len == 0 || (len == 1 && path[0] == '/');
}

/* Decodes the next segment into seg.  Returns false at a bad escape. */
static bool
store_next(store_walk_t *w, store_seg_t *seg)
{
    const char *start = w->p;
    const char *q = start;
    long n;

    while (q < w->end && *q != '/') {
        q++;
    }
    w->last = q == w->end;
    w->p = w->last ? q : q + 1;
    n = wf_conf_store_decode(w->buf, start, (size_t)(q - start));
    seg->key = w->buf;
    seg->len = n < 0 ? 0 : (size_t)n;
    return n >= 0;
}

static bool
store_is_last(const store_walk_t *w)
{
    return w->last;
}

/* Unit's array index: decimal digits only, up to INT32_MAX. */
static bool
store_index(const store_seg_t *seg, size_t *index)
{
    uint64_t v = 0;

    if (seg->len == 0 || seg->len > 10) {
        return false;
    }
    for (size_t i = 0; i < seg->len; i++) {
        if (seg->key[i] < '0' || seg->key[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(seg->key[i] - '0');
    }
    *index = (size_t)v;
    return v <= INT32_MAX;
}

static json_t *
store_child(json_t *node, const store_seg_t *seg)
{
    size_t i;

    if (json_is_object(node)) {
        return json_object_getn(node, seg->key, seg->len);
    }
    if (json_is_array(node) && store_index(seg, &i)) {
        return json_array_get(node, i);
    }
    return NULL;
}

static bool
store_walk_init(store_walk_t *w, const char *path, size_t len)
{
    /* A path that does not start with '/' is read as if it did. */
    w->p = path[0] == '/' ? path + 1 : path;
    w->end = path + len;
    w->last = false;
    w->buf = malloc(len + 1);
    return w->buf != NULL;
}

json_t *
wf_conf_store_get(json_t *root, const char *path, size_t len)
{
    store_walk_t w;
    store_seg_t seg;
    json_t *node = root;

    if (store_is_root(path, len) || root == NULL) {
        return root;
    }
    if (!store_walk_init(&w, path, len)) {
        return NULL;
    }
    while (node != NULL) {
        if (!store_next(&w, &seg)) {
            node = NULL;
            break;
        }
        if (seg.len == 0) {
            /* Unit: "/a/" reads as "/a"; "/a//b" names nothing */
            node = store_is_last(&w) ? node : NULL;
            break;
        }
        node = store_child(node, &seg);
        if (store_is_last(&w)) {
            break;
        }
    }
    free(w.buf);
    return node;
}

/* ---- changes ----------------------------------------------------------- */

/* One change at the last segment: parent is in the copy, seg is decoded. */
typedef wf_conf_store_rc_t (*store_op_fn)(json_t *parent,
                                          const store_seg_t *seg,
                                          json_t *value);

static wf_conf_store_rc_t
store_rc(int jansson_rc)
{
    return jansson_rc == 0 ? WF_CONF_STORE_OK : WF_CONF_STORE_NOMEM;
}

static wf_conf_store_rc_t
store_put(json_t *parent, const store_seg_t *seg, json_t *value)
{
    size_t i;

    if (json_is_object(parent)) {
        /* jansson refuses keys that are not UTF-8: such a key can never
         * exist, so there is nowhere to put the value. */
        return json_object_setn(parent, seg->key, seg->len, value) == 0
                   ? WF_CONF_STORE_OK
                   : WF_CONF_STORE_NOT_FOUND;
    }
    if (!json_is_array(parent) || !store_index(seg, &i)
        || i > json_array_size(parent)) {
        return WF_CONF_STORE_NOT_FOUND;
    }
    if (i == json_array_size(parent)) {
        return store_rc(json_array_append(parent, value));
    }
    return store_rc(json_array_set(parent, i, value));
}

static wf_conf_store_rc_t
store_post(json_t *parent, const store_seg_t *seg, json_t *value)
{
    json_t *target = store_child(parent, seg);

    if (target == NULL) {
        return WF_CONF_STORE_NOT_FOUND;
    }
    if (!json_is_array(target)) {
        return WF_CONF_STORE_NOT_ALLOWED;
    }
    return store_rc(json_array_append(target, value));
}

static wf_conf_store_rc_t
store_delete(json_t *parent, const store_seg_t *seg, json_t *value)
{
    size_t i = 0;

    wf_unused(value);
    if (store_child(parent, seg) == NULL) {
        return WF_CONF_STORE_NOT_FOUND;
    }
    if (json_is_object(parent)) {
        return store_rc(json_object_deln(parent, seg->key, seg->len));
    }
    store_index(seg, &i); /* store_child() found it, so it parses */
    return store_rc(json_array_remove(parent, i));
}

/* What each operation does to the whole tree ("/"), and at a path. */
static wf_conf_store_rc_t store_root_get(json_t *root, json_t *value,
                                         json_t **out);
static wf_conf_store_rc_t store_root_put(json_t *root, json_t *value,
                                         json_t **out);
static wf_conf_store_rc_t store_root_post(json_t *root, json_t *value,
                                          json_t **out);
static wf_conf_store_rc_t store_root_delete(json_t *root, json_t *value,
                                            json_t **out);

static const struct {
    wf_conf_store_rc_t (*at_root)(json_t *root, json_t *value, json_t **out);
    store_op_fn at_path; /* NULL: read-only */
} store_ops[WF_CONF_NOPS] = {
    [WF_CONF_OP_GET] = {store_root_get, NULL},
    [WF_CONF_OP_PUT] = {store_root_put, store_put},
    [WF_CONF_OP_POST] = {store_root_post, store_post},
    [WF_CONF_OP_DELETE] = {store_root_delete, store_delete},
};

static wf_conf_store_rc_t
store_root_get(json_t *root, json_t *value, json_t **out)
{
    wf_unused(value);
    *out = json_incref(root);
    return root != NULL ? WF_CONF_STORE_OK : WF_CONF_STORE_NOT_FOUND;
}

static wf_conf_store_rc_t
store_root_put(json_t *root, json_t *value, json_t **out)
{
    wf_unused(root);
    *out = json_incref(value);
    return value != NULL ? WF_CONF_STORE_OK : WF_CONF_STORE_NOMEM;
}

static wf_conf_store_rc_t
store_root_post(json_t *root, json_t *value, json_t **out)
{
    wf_unused(root);
    wf_unused(value);
    wf_unused(out);
    return WF_CONF_STORE_NOT_ALLOWED; /* Unit: POST /config is 405 */
}

static wf_conf_store_rc_t
store_root_delete(json_t *root, json_t *value, json_t **out)
{
    wf_unused(root);
    wf_unused(value);
    *out = json_object();
    return *out != NULL ? WF_CONF_STORE_OK : WF_CONF_STORE_NOMEM;
}

/* Walks copy down to the parent of the last segment, leaving that segment
 * decoded in seg. */
static wf_conf_store_rc_t
store_parent(json_t *copy, store_walk_t *w, store_seg_t *seg, json_t **parent)
{
    json_t *node = copy;

    for (;;) {
        /* An empty segment names nothing, as for wf_conf_store_get(). */
        if (!store_next(w, seg) || seg->len == 0) {
            return WF_CONF_STORE_NOT_FOUND;
        }
        if (store_is_last(w)) {
            *parent = node;
            return WF_CONF_STORE_OK;
        }
        node = store_child(node, seg);
        if (node == NULL) {
            return WF_CONF_STORE_NOT_FOUND;
        }
    }
}

static wf_conf_store_rc_t
store_change(json_t *root, wf_conf_op_t op, store_walk_t *w, json_t *value,
             json_t **out)
{
    store_seg_t seg;
    json_t *parent;
    json_t *copy = json_deep_copy(root);
    wf_conf_store_rc_t rc;

    if (copy == NULL) {
        return WF_CONF_STORE_NOMEM;
    }
    rc = store_parent(copy, w, &seg, &parent);
    if (rc == WF_CONF_STORE_OK) {
        rc = store_ops[op].at_path(parent, &seg, value);
    }
    if (rc != WF_CONF_STORE_OK) {
        json_decref(copy);
        return rc;
    }
    *out = copy;
    return WF_CONF_STORE_OK;
}

wf_conf_store_rc_t
wf_conf_store_apply(json_t *root, wf_conf_op_t op, const char *path, size_t len,
                    json_t *value, json_t **out)
{
    store_walk_t w;
    wf_conf_store_rc_t rc;

    *out = NULL;
    if ((unsigned)op >= WF_CONF_NOPS) {
        return WF_CONF_STORE_NOT_ALLOWED;
    }
    if (store_is_root(path, len)) {
        return store_ops[op].at_root(root, value, out);
    }
    if (store_ops[op].at_path == NULL) {
        *out = json_incref(wf_conf_store_get(root, path, len));
        return *out != NULL ? WF_CONF_STORE_OK : WF_CONF_STORE_NOT_FOUND;
    }
    if ((op == WF_CONF_OP_PUT || op == WF_CONF_OP_POST) && value == NULL) {
        return WF_CONF_STORE_NOMEM;
    }
    if (root == NULL) {
        return WF_CONF_STORE_NOT_FOUND;
    }
    if (!store_walk_init(&w, path, len)) {
        return WF_CONF_STORE_NOMEM;
    }
    rc = store_change(root, op, &w, value, out);
    free(w.buf);
    return rc;
}
