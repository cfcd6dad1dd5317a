#include "http/mime.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/common.h"

/* An open-addressing hash table (linear probing) keyed by lower-cased
 * extensions.  Keys follow Unit: ".html" for a name with a dot, and the
 * whole name ("README") for a last segment without one. */

#define MIME_MIN_SLOTS 128 /* a power of two, over twice the defaults */

typedef struct mime_entry {
    wf_str_t ext;  /* lower-cased; len == 0 marks a free slot */
    wf_str_t type; /* static or in the table's arena */
} mime_entry_t;

struct wf_mime_table {
    mime_entry_t *slots; /* nslots entries, in the arena */
    size_t nslots;       /* a power of two */
    size_t nused;        /* kept at most nslots / 2 */
};

/* Unit's defaults, in the order of nxt_http_static_mtypes_init() in Unit's
 * src/nxt_http_static.c. */
static const struct {
    const char *ext;
    const char *type;
} mime_defaults[] = {
    {".html", "text/html"},
    {".htm", "text/html"},
    {".css", "text/css"},
    {".svg", "image/svg+xml"},
    {".webp", "image/webp"},
    {".png", "image/png"},
    {".apng", "image/apng"},
    {".jpeg", "image/jpeg"},
    {".jpg", "image/jpeg"},
    {".gif", "image/gif"},
    {".ico", "image/x-icon"},
    {".avif", "image/avif"},
    {".avifs", "image/avif-sequence"},
    {".woff", "font/woff"},
    {".woff2", "font/woff2"},
    {".otf", "font/otf"},
    {".ttf", "font/ttf"},
    {".txt", "text/plain"},
    {".md", "text/markdown"},
    {".rst", "text/x-rst"},
    {".js", "application/javascript"},
    {".json", "application/json"},
    {".xml", "application/xml"},
    {".rss", "application/rss+xml"},
    {".atom", "application/atom+xml"},
    {".pdf", "application/pdf"},
    {".zip", "application/zip"},
    {".mp3", "audio/mpeg"},
    {".ogg", "audio/ogg"},
    {".midi", "audio/midi"},
    {".mid", "audio/midi"},
    {".flac", "audio/flac"},
    {".aac", "audio/aac"},
    {".wav", "audio/wav"},
    {".mpeg", "video/mpeg"},
    {".mpg", "video/mpeg"},
    {".mp4", "video/mp4"},
    {".webm", "video/webm"},
    {".avi", "video/x-msvideo"},
    {".exe", "application/octet-stream"},
    {".bin", "application/octet-stream"},
    {".dll", "application/octet-stream"},
    {".iso", "application/octet-stream"},
    {".img", "application/octet-stream"},
    {".msi", "application/octet-stream"},
    {".deb", "application/octet-stream"},
    {".rpm", "application/octet-stream"},
    {".php", "application/x-httpd-php"},
};

/* FNV-1a over the lower-cased bytes. */
static size_t
mime_hash(wf_str_t key)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < key.len; i++) {
        h ^= (unsigned char)wf_lower(key.data[i]);
        h *= 16777619u;
    }
    return h;
}

/* Returns the slot holding key (matched case-insensitively against the
 * lower-cased stored keys), or the free slot where it belongs.  The table is
 * never full, so the probe ends. */
static mime_entry_t *
mime_find_slot(const wf_mime_table_t *t, wf_str_t key)
{
    size_t mask = t->nslots - 1;
    size_t i = mime_hash(key) & mask;

    for (;;) {
        mime_entry_t *e = &t->slots[i];

        if (e->ext.len == 0 || wf_str_eq_nocase(e->ext, key)) {
            return e;
        }
        i = (i + 1) & mask;
    }
}

/* Stores (ext, type) without growing; ext must already be lower-cased and
 * owned by the table. */
static void
mime_put(wf_mime_table_t *t, wf_str_t ext, wf_str_t type)
{
    mime_entry_t *e = mime_find_slot(t, ext);

    if (e->ext.len == 0) {
        e->ext = ext;
        t->nused++;
    }
    e->type = type;
}

/* Doubles the slot array when adding one more entry would pass half full.
 * The old array stays in the arena until it is destroyed. */
static int
mime_reserve(wf_mime_table_t *t, wf_arena_t *a)
{
    mime_entry_t *old = t->slots;
    size_t nold = t->nslots;

    if ((t->nused + 1) * 2 <= t->nslots) {
        return WF_OK;
    }
    t->slots = wf_arena_calloc(a, 2 * nold * sizeof(mime_entry_t));
    if (t->slots == NULL) {
        t->slots = old;
        return WF_ERROR;
    }
    t->nslots = 2 * nold;
    t->nused = 0;
    for (size_t i = 0; i < nold; i++) {
        if (old[i].ext.len != 0) {
            mime_put(t, old[i].ext, old[i].type);
        }
    }
    return WF_OK;
}

wf_mime_table_t *
wf_mime_table_create(wf_arena_t *a)
{
    wf_mime_table_t *t;

    t = wf_arena_calloc(a, sizeof(wf_mime_table_t));
    if (t == NULL) {
        return NULL;
    }
    t->nslots = MIME_MIN_SLOTS;
    t->slots = wf_arena_calloc(a, t->nslots * sizeof(mime_entry_t));
    if (t->slots == NULL) {
        return NULL;
    }
    /* The default keys are already lower-case, and static. */
    for (size_t i = 0; i < wf_nitems(mime_defaults); i++) {
        mime_put(
            t, wf_str_make(mime_defaults[i].ext, strlen(mime_defaults[i].ext)),
            wf_str_make(mime_defaults[i].type, strlen(mime_defaults[i].type)));
    }
    return t;
}

int
wf_mime_table_add(wf_mime_table_t *t, wf_arena_t *a, wf_str_t type,
                  wf_str_t ext)
{
    char *e, *ty;

    if (ext.len == 0) {
        return WF_OK; /* no path has an empty key: nothing could match */
    }
    if (mime_reserve(t, a) != WF_OK) {
        return WF_ERROR;
    }
    e = wf_arena_strndup(a, ext.data, ext.len);
    ty = wf_arena_strndup(a, type.data, type.len);
    if (e == NULL || ty == NULL) {
        return WF_ERROR;
    }
    for (size_t i = 0; i < ext.len; i++) {
        e[i] = wf_lower(e[i]);
    }
    mime_put(t, wf_str_make(e, ext.len), wf_str_make(ty, type.len));
    return WF_OK;
}

/* Unit's key for path: from the last '.' of the last segment (dot
 * included), or the whole last segment when it has no dot. */
static wf_str_t
mime_path_key(wf_str_t path)
{
    const char *last = path.data + path.len;
    const char *p = last;

    while (p > path.data) {
        p--;
        if (*p == '.') {
            return wf_str_make(p, (size_t)(last - p));
        }
        if (*p == '/') {
            p++;
            break;
        }
    }
    return wf_str_make(p, (size_t)(last - p));
}

wf_str_t
wf_mime_lookup(const wf_mime_table_t *t, wf_str_t path)
{
    wf_str_t key = mime_path_key(path);
    const mime_entry_t *e;

    if (key.len == 0) {
        return wf_string("");
    }
    e = mime_find_slot(t, key);
    if (e->ext.len == 0) {
        return wf_string("");
    }
    return e->type;
}
