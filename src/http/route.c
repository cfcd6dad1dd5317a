#include "http/route.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/json.h"

#define ROUTE_PAT_CASELESS 0x1u /* host, method, MIME types */
#define ROUTE_PAT_URI      0x2u /* pieces are percent-decoded */

/* One compiled pattern.  "a*b*c" is head "a", mids {"b"}, tail "c"; a
 * pattern without '*' is head only (wild == false).  Caseless patterns are
 * stored in lower case. */
typedef struct route_pattern {
    bool negative;  /* a leading '!' */
    bool wild;      /* at least one '*' */
    wf_str_t head;  /* before the first '*'; the whole text when !wild */
    wf_str_t tail;  /* after the last '*' */
    wf_str_t *mids; /* non-empty pieces between '*'s, in order */
    size_t nmids;
    size_t min_len; /* bytes a value needs: head + mids + tail */
} route_pattern_t;

struct wf_pattern_set {
    route_pattern_t *pats;
    size_t n;
    size_t npositive;
    bool caseless;
};

typedef wf_str_t (*route_getter)(const wf_route_req_t *rq);

typedef struct route_cond {
    route_getter get;
    const wf_pattern_set_t *ps;
} route_cond_t;

typedef struct route_step {
    route_cond_t *conds; /* all must match; none: always */
    size_t nconds;
    const wf_action_t *action;
} route_step_t;

struct wf_route {
    const char *name; /* "" for the unnamed array route */
    route_step_t *steps;
    size_t nsteps;
    size_t cap;
};

#define ROUTE_PATTERN_TYPE_MSG                                              \
    "The \"match\" patterns for \"host\", \"uri\", and \"method\" must be " \
    "strings."

/* ---- matching ---------------------------------------------------------- */

static bool
route_mem_eq(const char *v, wf_str_t p, bool caseless)
{
    if (!caseless) {
        return p.len == 0 || memcmp(v, p.data, p.len) == 0;
    }
    for (size_t i = 0; i < p.len; i++) {
        if (wf_lower(v[i]) != p.data[i]) {
            return false;
        }
    }
    return true;
}

/* Returns the offset of the leftmost needle in hay[0..n), or SIZE_MAX. */
static size_t
route_mem_find(const char *hay, size_t n, wf_str_t needle, bool caseless)
{
    if (needle.len > n) {
        return SIZE_MAX;
    }
    for (size_t i = 0; i + needle.len <= n; i++) {
        if (route_mem_eq(hay + i, needle, caseless)) {
            return i;
        }
    }
    return SIZE_MAX;
}

static bool
route_pattern_match(const route_pattern_t *p, wf_str_t s, bool caseless)
{
    size_t pos, end;

    if (!p->wild) {
        return s.len == p->head.len && route_mem_eq(s.data, p->head, caseless);
    }
    if (s.len < p->min_len || !route_mem_eq(s.data, p->head, caseless)
        || !route_mem_eq(s.data + s.len - p->tail.len, p->tail, caseless)) {
        return false;
    }
    /* Leftmost matching of each middle piece is optimal: any later
     * placement leaves less room for the pieces that follow. */
    pos = p->head.len;
    end = s.len - p->tail.len;
    for (size_t i = 0; i < p->nmids; i++) {
        size_t at =
            route_mem_find(s.data + pos, end - pos, p->mids[i], caseless);

        if (at == SIZE_MAX) {
            return false;
        }
        pos += at + p->mids[i].len;
    }
    return true;
}

bool
wf_pattern_set_match(const wf_pattern_set_t *ps, wf_str_t s)
{
    bool positive = false;

    if (s.data == NULL) {
        s = wf_string("");
    }
    for (size_t i = 0; i < ps->n; i++) {
        const route_pattern_t *p = &ps->pats[i];

        if (!route_pattern_match(p, s, ps->caseless)) {
            continue;
        }
        if (p->negative) {
            return false;
        }
        positive = true;
    }
    return positive || ps->npositive == 0;
}

/* ---- compiling --------------------------------------------------------- */

static int
route_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = wf_lower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Copies s[0..n) into a, percent-decoding (uri) and lowering (caseless).
 * Returns false on bad percent-encoding; *out.data is NULL out of memory. */
static bool
route_piece(wf_arena_t *a, const char *s, size_t n, unsigned flags,
            wf_str_t *out)
{
    char *d = wf_arena_alloc(a, n + 1);
    size_t len = 0;

    *out = wf_str_make(d, 0);
    if (d == NULL) {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (c == '%' && (flags & ROUTE_PAT_URI) != 0) {
            int hi = i + 2 < n ? route_hex(s[i + 1]) : -1;
            int lo = i + 2 < n ? route_hex(s[i + 2]) : -1;

            if (hi < 0 || lo < 0) {
                return false;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        d[len++] = (flags & ROUTE_PAT_CASELESS) != 0 ? wf_lower(c) : c;
    }
    out->len = len;
    return true;
}

static size_t
route_count_stars(const char *s, size_t n)
{
    size_t stars = 0;

    for (size_t i = 0; i < n; i++) {
        stars += s[i] == '*';
    }
    return stars;
}

/* Splits s[0..n) at '*' into p's pieces.  Returns WF_OK or WF_ERROR with
 * err written. */
static int
route_pattern_split(route_pattern_t *p, wf_arena_t *a, const char *s, size_t n,
                    unsigned flags, char *err, size_t errlen)
{
    size_t stars = route_count_stars(s, n);
    size_t start = 0;
    size_t piece = 0;

    p->wild = stars > 0;
    p->mids =
        stars > 1 ? wf_arena_alloc(a, (stars - 1) * sizeof(wf_str_t)) : NULL;
    for (size_t i = 0; i <= n; i++) {
        wf_str_t w;

        if (i < n && s[i] != '*') {
            continue;
        }
        if (!route_piece(a, s + start, i - start, flags, &w)) {
            snprintf(err, errlen,
                     "The \"match\" pattern \"%.*s\" has invalid "
                     "percent-encoding.",
                     (int)wf_min(n, 200), s);
            return WF_ERROR;
        }
        if (w.data == NULL || (stars > 1 && p->mids == NULL)) {
            snprintf(err, errlen, "Out of memory.");
            return WF_ERROR;
        }
        if (piece == 0) {
            p->head = w;
        } else if (piece == stars) {
            p->tail = w;
        } else if (w.len > 0) {
            p->mids[p->nmids++] = w;
        }
        p->min_len += w.len;
        piece++;
        start = i + 1;
    }
    return WF_OK;
}

static int
route_pattern_compile(route_pattern_t *p, wf_arena_t *a, const json_t *v,
                      unsigned flags, char *err, size_t errlen)
{
    const char *s;
    size_t n;

    if (!json_is_string(v)) {
        snprintf(err, errlen, ROUTE_PATTERN_TYPE_MSG);
        return WF_ERROR;
    }
    s = json_string_value(v);
    n = json_string_length(v);
    memset(p, 0, sizeof(*p));
    if (n > 0 && s[0] == '!') {
        p->negative = true;
        s++;
        n--;
    }
    if (n > 0 && s[0] == '~') {
        snprintf(err, errlen,
                 "Regular expression patterns (\"~...\") are not supported "
                 "yet.");
        return WF_ERROR;
    }
    return route_pattern_split(p, a, s, n, flags, err, errlen);
}

static wf_pattern_set_t *
route_pattern_set_compile(wf_arena_t *a, const json_t *value, unsigned flags,
                          char *err, size_t errlen)
{
    wf_pattern_set_t *ps;
    size_t n = json_is_array(value) ? json_array_size(value) : 1;

    ps = wf_arena_calloc(a, sizeof(*ps));
    if (ps == NULL
        || (ps->pats = wf_arena_calloc(a, (n + 1) * sizeof(route_pattern_t)))
               == NULL) {
        snprintf(err, errlen, "Out of memory.");
        return NULL;
    }
    ps->caseless = (flags & ROUTE_PAT_CASELESS) != 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v =
            json_is_array(value) ? json_array_get(value, i) : value;

        if (route_pattern_compile(&ps->pats[i], a, v, flags, err, errlen)
            != WF_OK) {
            return NULL;
        }
        ps->npositive += !ps->pats[i].negative;
    }
    ps->n = n;
    return ps;
}

wf_pattern_set_t *
wf_pattern_set_compile(wf_arena_t *a, const json_t *value, bool case_sensitive,
                       char *err, size_t errlen)
{
    if (!json_is_string(value) && !json_is_array(value)) {
        snprintf(err, errlen, ROUTE_PATTERN_TYPE_MSG);
        return NULL;
    }
    return route_pattern_set_compile(
        a, value, case_sensitive ? 0 : ROUTE_PAT_CASELESS, err, errlen);
}

/* ---- match fields ------------------------------------------------------ */

/* Unit compares the host without its port and without a trailing dot
 * ("Example.COM." matches "example.com"). */
static wf_str_t
route_get_host(const wf_route_req_t *rq)
{
    wf_str_t h = rq->host;

    if (h.len > 0 && h.data[h.len - 1] == '.') {
        h.len--;
    }
    return h;
}

static wf_str_t
route_get_uri(const wf_route_req_t *rq)
{
    return rq->uri;
}

static wf_str_t
route_get_method(const wf_route_req_t *rq)
{
    return rq->method;
}

/* Unit's match keys.  A row with get == NULL is a key Unit has and Wharf
 * does not have yet; a new key is a new row with its getter. */
static const struct {
    const char *name;
    route_getter get;
    unsigned flags; /* ROUTE_PAT_* */
} route_fields[] = {
    {"host", route_get_host, ROUTE_PAT_CASELESS},
    {"uri", route_get_uri, ROUTE_PAT_URI},
    {"method", route_get_method, ROUTE_PAT_CASELESS},
    {"headers", NULL, 0},
    {"arguments", NULL, 0},
    {"cookies", NULL, 0},
    {"query", NULL, 0},
    {"scheme", NULL, 0},
    {"source", NULL, 0},
    {"destination", NULL, 0},
    {"if", NULL, 0},
};

/* Compiles one "match" member into c.  Returns WF_OK or WF_ERROR. */
static int
route_cond_compile(route_cond_t *c, wf_arena_t *a, const char *key,
                   const json_t *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < wf_nitems(route_fields); i++) {
        if (strcmp(route_fields[i].name, key) != 0) {
            continue;
        }
        if (route_fields[i].get == NULL) {
            snprintf(err, errlen,
                     "The \"%s\" match option is not supported yet.", key);
            return WF_ERROR;
        }
        if (!wf_json_type_check(value, WF_JSON_STRING | WF_JSON_ARRAY, key, err,
                                errlen)) {
            return WF_ERROR;
        }
        c->get = route_fields[i].get;
        c->ps = route_pattern_set_compile(a, value, route_fields[i].flags, err,
                                          errlen);
        return c->ps != NULL ? WF_OK : WF_ERROR;
    }
    snprintf(err, errlen, "Unknown parameter \"%.200s\".", key);
    return WF_ERROR;
}

/* ---- routes ------------------------------------------------------------ */

wf_route_t *
wf_route_create(wf_arena_t *a, const char *name)
{
    wf_route_t *r = wf_arena_calloc(a, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->name = wf_arena_strndup(a, name, strlen(name));
    return r->name != NULL ? r : NULL;
}

static route_step_t *
route_step_append(wf_route_t *route, wf_arena_t *a)
{
    if (route->nsteps == route->cap) {
        size_t cap = route->cap == 0 ? 4 : route->cap * 2;
        route_step_t *steps = wf_arena_alloc(a, cap * sizeof(*steps));

        if (steps == NULL) {
            return NULL;
        }
        if (route->nsteps > 0) {
            memcpy(steps, route->steps, route->nsteps * sizeof(*steps));
        }
        route->steps = steps;
        route->cap = cap;
    }
    return &route->steps[route->nsteps];
}

int
wf_route_add_step(wf_route_t *route, wf_arena_t *a, const json_t *match,
                  const wf_action_t *action, char *err, size_t errlen)
{
    route_step_t *step = route_step_append(route, a);
    const char *key;
    json_t *value;
    size_t n = 0;

    if (step == NULL) {
        snprintf(err, errlen, "Out of memory.");
        return WF_ERROR;
    }
    memset(step, 0, sizeof(*step));
    step->action = action;
    if (match != NULL) {
        if (!wf_json_type_check(match, WF_JSON_OBJECT, "match", err, errlen)) {
            return WF_ERROR;
        }
        step->conds = wf_arena_calloc(a, (json_object_size(match) + 1)
                                             * sizeof(route_cond_t));
        if (step->conds == NULL) {
            snprintf(err, errlen, "Out of memory.");
            return WF_ERROR;
        }
        json_object_foreach((json_t *)match, key, value)
        {
            if (route_cond_compile(&step->conds[n], a, key, value, err, errlen)
                != WF_OK) {
                return WF_ERROR;
            }
            n++;
        }
    }
    step->nconds = n;
    route->nsteps++;
    return WF_OK;
}

static bool
route_step_match(const route_step_t *step, const wf_route_req_t *rq)
{
    for (size_t i = 0; i < step->nconds; i++) {
        const route_cond_t *c = &step->conds[i];

        if (!wf_pattern_set_match(c->ps, c->get(rq))) {
            return false;
        }
    }
    return true;
}

const wf_action_t *
wf_route_match(const wf_route_t *route, const wf_route_req_t *rq)
{
    for (size_t i = 0; i < route->nsteps; i++) {
        if (route_step_match(&route->steps[i], rq)) {
            return route->steps[i].action;
        }
    }
    return NULL;
}

const char *
wf_route_name(const wf_route_t *route)
{
    return route->name;
}
