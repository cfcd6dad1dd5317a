#include "http/tpl.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "http/route.h"

typedef wf_str_t (*tpl_getter)(const wf_route_req_t *rq);

/* One piece of a template: literal text (get == NULL) or a variable. */
typedef struct tpl_part {
    tpl_getter get;
    wf_str_t text; /* the literal; in the arena */
} tpl_part_t;

struct wf_tpl {
    tpl_part_t *parts;
    size_t nparts;
    bool is_const;
};

static wf_str_t
tpl_get_uri(const wf_route_req_t *rq)
{
    return rq->uri;
}

static wf_str_t
tpl_get_host(const wf_route_req_t *rq)
{
    return rq->host;
}

static wf_str_t
tpl_get_method(const wf_route_req_t *rq)
{
    return rq->method;
}

static wf_str_t
tpl_get_request_uri(const wf_route_req_t *rq)
{
    return rq->head != NULL ? rq->head->target : wf_string("");
}

static wf_str_t
tpl_get_dollar(const wf_route_req_t *rq)
{
    wf_unused(rq);
    return wf_string("$");
}

/* The variables we know.  A row with get == NULL is a variable Unit has
 * that Wharf does not have yet: it is refused with a message that says so
 * rather than Unit's "Unknown variable". */
static const struct {
    const char *name;
    tpl_getter get;
} tpl_vars[] = {
    {"uri", tpl_get_uri},        {"host", tpl_get_host},
    {"method", tpl_get_method},  {"request_uri", tpl_get_request_uri},
    {"dollar", tpl_get_dollar},  {"remote_addr", NULL},
    {"time_local", NULL},        {"request_line", NULL},
    {"request_id", NULL},        {"status", NULL},
    {"body_bytes_sent", NULL},   {"header_referer", NULL},
    {"header_user_agent", NULL},
};

static const char *const tpl_unit_prefixes[] = {
    "header_",
    "arg_",
    "cookie_",
    "response_header_",
};

static bool
tpl_var_is_unit_prefix(const char *name, size_t len)
{
    for (size_t i = 0; i < wf_nitems(tpl_unit_prefixes); i++) {
        size_t n = strlen(tpl_unit_prefixes[i]);

        if (len > n && memcmp(name, tpl_unit_prefixes[i], n) == 0) {
            return true;
        }
    }
    return false;
}

static bool
tpl_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_';
}

/* Looks name up; on failure writes Unit's message and returns false. */
static bool
tpl_var_find(const char *name, size_t len, tpl_getter *get, char *err,
             size_t errlen)
{
    bool known = tpl_var_is_unit_prefix(name, len);

    for (size_t i = 0; i < wf_nitems(tpl_vars) && !known; i++) {
        if (strlen(tpl_vars[i].name) == len
            && memcmp(tpl_vars[i].name, name, len) == 0) {
            *get = tpl_vars[i].get;
            known = true;
        }
    }
    if (!known) {
        snprintf(err, errlen, "Unknown variable \"%.*s\"", (int)len, name);
        return false;
    }
    if (*get == NULL) {
        snprintf(err, errlen, "The variable \"%.*s\" is not supported yet",
                 (int)len, name);
        return false;
    }
    return true;
}

/* Parses the variable whose '$' is at s[i]; sets *name and returns the
 * offset after it, or 0 with err written. */
static size_t
tpl_scan_var(const char *s, size_t len, size_t i, wf_str_t *name, char *err,
             size_t errlen)
{
    size_t start = i + 1;
    size_t end;
    bool braced = start < len && s[start] == '{';

    if (braced) {
        start++;
    }
    for (end = start; end < len && tpl_is_name_char(s[end]); end++) {
        /* the name */
    }
    if (end == start || (braced && (end == len || s[end] != '}'))) {
        snprintf(err, errlen, "Invalid variable at position %zu", i);
        return 0;
    }
    *name = wf_str_make(s + start, end - start);
    return braced ? end + 1 : end;
}

static size_t
tpl_count_parts(const char *s, size_t len)
{
    size_t n = 1;

    for (size_t i = 0; i < len; i++) {
        n += s[i] == '$' ? 2 : 0;
    }
    return n;
}

static void
tpl_add_text(wf_tpl_t *t, const char *s, size_t from, size_t to)
{
    if (to > from) {
        t->parts[t->nparts++] =
            (tpl_part_t){NULL, wf_str_make(s + from, to - from)};
    }
}

wf_tpl_t *
wf_tpl_compile(wf_arena_t *a, const char *s, size_t len, char *err,
               size_t errlen)
{
    wf_tpl_t *t;
    const char *copy;
    size_t lit = 0;
    size_t i = 0;

    if (len > 0 && s[0] == '`') {
        snprintf(err, errlen, "JavaScript templates are not supported yet");
        return NULL;
    }
    t = wf_arena_calloc(a, sizeof(*t));
    copy = wf_arena_strndup(a, s, len);
    if (t == NULL || copy == NULL) {
        snprintf(err, errlen, "Out of memory");
        return NULL;
    }
    t->parts = wf_arena_alloc(a, tpl_count_parts(s, len) * sizeof(tpl_part_t));
    if (t->parts == NULL) {
        snprintf(err, errlen, "Out of memory");
        return NULL;
    }
    t->is_const = true;
    while (i < len) {
        wf_str_t name;
        tpl_getter get = NULL;
        size_t next;

        if (copy[i] != '$') {
            i++;
            continue;
        }
        next = tpl_scan_var(copy, len, i, &name, err, errlen);
        if (next == 0
            || !tpl_var_find(name.data, name.len, &get, err, errlen)) {
            return NULL;
        }
        tpl_add_text(t, copy, lit, i);
        t->parts[t->nparts++] = (tpl_part_t){get, name};
        t->is_const = false;
        i = lit = next;
    }
    tpl_add_text(t, copy, lit, len);
    return t;
}

bool
wf_tpl_is_const(const wf_tpl_t *t)
{
    return t->is_const;
}

size_t
wf_tpl_render(const wf_tpl_t *t, const wf_route_req_t *rq, char *out,
              size_t cap)
{
    size_t need = 0;

    for (size_t i = 0; i < t->nparts; i++) {
        const tpl_part_t *part = &t->parts[i];
        wf_str_t v = part->get == NULL ? part->text : part->get(rq);

        if (need < cap && v.len > 0) {
            memcpy(out + need, v.data, wf_min(v.len, cap - need));
        }
        need += v.len;
    }
    return need;
}
