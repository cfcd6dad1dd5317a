/* Routes: Unit's match keys as (compile, match) rows, steps in order, and a
 * hash index over literal host/uri patterns so that a route with many steps
 * is not scanned step by step.  Patterns themselves are in
 * route_pattern.c. */
#include "http/route.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/json.h"
#include "core/log.h"
#include "http/route_pattern.h"
#include "http/var.h"

typedef struct route_cond route_cond_t;
typedef bool (*route_match_fn)(const route_cond_t *c, const wf_route_req_t *rq);
typedef wf_str_t (*route_getter)(const wf_route_req_t *rq);

/* One member of a "headers"/"arguments"/"cookies" object. */
typedef struct route_rule {
    wf_str_t name; /* decoded for arguments */
    const wf_pattern_set_t *ps;
} route_rule_t;

/* One object: all of its rules must hold. */
typedef struct route_ruleset {
    route_rule_t *rules;
    size_t n;
} route_ruleset_t;

struct route_cond {
    route_match_fn match;
    route_getter get;           /* host, uri, method */
    const wf_pattern_set_t *ps; /* host, uri, method, query */
    route_ruleset_t *sets;      /* headers, arguments, cookies: any set */
    size_t nsets;
    const wf_addr_set_t *addrs; /* source, destination */
    bool https;                 /* scheme */
    const wf_tpl_t *tpl;        /* if */
    bool negate;                /* if: a leading '!' */
};

typedef struct route_step {
    route_cond_t *conds; /* all must match; none: always */
    size_t nconds;
    const wf_action_t *action;
} route_step_t;

/* Index keys.  A step is in the buckets of one kind only (see
 * route_index_step()), so a step appears at most once in a lookup. */
typedef enum route_key_kind {
    ROUTE_KEY_HOST_URI = 0,
    ROUTE_KEY_HOST,
    ROUTE_KEY_URI,
    ROUTE_KEY_NKINDS /* must stay last */
} route_key_kind_t;

#define ROUTE_INDEX_MAX_KEYS 16 /* more host x uri literals: host only */

typedef struct route_bucket {
    struct route_bucket *next;
    uint64_t hash;
    route_key_kind_t kind;
    wf_str_t host;   /* lower case; len 0 for ROUTE_KEY_URI */
    wf_str_t uri;    /* len 0 for ROUTE_KEY_HOST */
    uint32_t *steps; /* ascending step numbers */
    uint32_t n, cap;
} route_bucket_t;

typedef struct route_list {
    uint32_t *v; /* ascending */
    uint32_t n, cap;
} route_list_t;

struct wf_route {
    const char *name; /* "" for the unnamed array route */
    route_step_t *steps;
    size_t nsteps;
    size_t cap;

    route_bucket_t **buckets; /* NULL until a step is indexed */
    size_t nbuckets;          /* a power of 2 */
    size_t nkeys;
    unsigned kinds;     /* 1 << kind for each kind in the index */
    route_list_t plain; /* steps not in the index */
};

/* ---- per-thread decoding buffer ---------------------------------------- */

static pthread_key_t route_buf_key;
static pthread_once_t route_buf_once = PTHREAD_ONCE_INIT;
static __thread char *route_buf;
static __thread size_t route_buf_cap;

static void
route_buf_key_create(void)
{
    (void)pthread_key_create(&route_buf_key, free);
}

/* Returns a buffer of n bytes owned by the thread, valid until the next
 * call; NULL when out of memory.  Grows only: no allocation in steady
 * state. */
static char *
route_scratch(size_t n)
{
    char *b;

    if (wf_likely(n <= route_buf_cap)) {
        return route_buf;
    }
    pthread_once(&route_buf_once, route_buf_key_create);
    b = realloc(route_buf, n);
    if (b == NULL) {
        return NULL;
    }
    route_buf = b;
    route_buf_cap = n;
    (void)pthread_setspecific(route_buf_key, b);
    return b;
}

/* Matches ps against raw decoded with '+' as ' ' (query, arguments). */
static bool
route_match_decoded(const wf_pattern_set_t *ps, wf_str_t raw)
{
    char *d;

    if (raw.len == 0
        || (memchr(raw.data, '%', raw.len) == NULL
            && memchr(raw.data, '+', raw.len) == NULL)) {
        return wf_pattern_set_match(ps, raw);
    }
    d = route_scratch(raw.len);
    if (d == NULL) {
        return false;
    }
    return wf_pattern_set_match(
        ps, wf_str_make(d, wf_var_decode(d, raw.data, raw.len, true)));
}

/* ---- match functions --------------------------------------------------- */

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

static bool
route_match_string(const route_cond_t *c, const wf_route_req_t *rq)
{
    return wf_pattern_set_match(c->ps, c->get(rq));
}

/* The whole query, decoded; no query is the empty string. */
static bool
route_match_query(const route_cond_t *c, const wf_route_req_t *rq)
{
    wf_str_t q = rq->head != NULL ? rq->head->query : wf_null_str;

    return route_match_decoded(c->ps, q);
}

static bool
route_match_scheme(const route_cond_t *c, const wf_route_req_t *rq)
{
    return rq->tls == c->https;
}

static bool
route_match_source(const route_cond_t *c, const wf_route_req_t *rq)
{
    return wf_addr_set_match(c->addrs, rq->remote);
}

static bool
route_match_destination(const route_cond_t *c, const wf_route_req_t *rq)
{
    return wf_addr_set_match(c->addrs, rq->local);
}

static bool
route_match_if(const route_cond_t *c, const wf_route_req_t *rq)
{
    return wf_tpl_is_true(c->tpl, rq) != c->negate;
}

/* Unit's rule for a named field: it must be present, and every occurrence
 * must match. */
static bool
route_rule_header(const route_rule_t *rule, const wf_route_req_t *rq)
{
    bool seen = false;

    for (unsigned i = 0; rq->head != NULL && i < rq->head->nheaders; i++) {
        const wf_h1_header_t *f = &rq->head->headers[i];

        if (!wf_str_eq_nocase(f->name, rule->name)) {
            continue;
        }
        if (!wf_pattern_set_match(rule->ps, f->value)) {
            return false;
        }
        seen = true;
    }
    return seen;
}

static bool
route_rule_argument(const route_rule_t *rule, const wf_route_req_t *rq)
{
    wf_str_t q = rq->head != NULL ? rq->head->query : wf_null_str;
    wf_var_pair_t arg;
    size_t pos = 0;
    bool seen = false;

    while (wf_var_arg_next(q, &pos, &arg)) {
        if (!wf_var_decoded_eq(arg.name, rule->name)) {
            continue;
        }
        if (!route_match_decoded(rule->ps, arg.value)) {
            return false;
        }
        seen = true;
    }
    return seen;
}

static bool
route_rule_cookie(const route_rule_t *rule, const wf_route_req_t *rq)
{
    wf_var_pair_t ck;
    unsigned field = 0;
    size_t pos = 0;
    bool seen = false;

    while (wf_var_cookie_next(rq->head, &field, &pos, &ck)) {
        if (!wf_str_eq(ck.name, rule->name)) {
            continue;
        }
        if (!wf_pattern_set_match(rule->ps, ck.value)) {
            return false;
        }
        seen = true;
    }
    return seen;
}

typedef bool (*route_rule_fn)(const route_rule_t *rule,
                              const wf_route_req_t *rq);

/* Any set whose rules all hold (an empty array or object matches). */
static bool
route_match_sets(const route_cond_t *c, const wf_route_req_t *rq,
                 route_rule_fn rule_fn)
{
    for (size_t i = 0; i < c->nsets; i++) {
        const route_ruleset_t *set = &c->sets[i];
        size_t k = 0;

        while (k < set->n && rule_fn(&set->rules[k], rq)) {
            k++;
        }
        if (k == set->n) {
            return true;
        }
    }
    return c->nsets == 0;
}

static bool
route_match_headers(const route_cond_t *c, const wf_route_req_t *rq)
{
    return route_match_sets(c, rq, route_rule_header);
}

static bool
route_match_arguments(const route_cond_t *c, const wf_route_req_t *rq)
{
    return route_match_sets(c, rq, route_rule_argument);
}

static bool
route_match_cookies(const route_cond_t *c, const wf_route_req_t *rq)
{
    return route_match_sets(c, rq, route_rule_cookie);
}

/* ---- compiling conditions ---------------------------------------------- */

typedef struct route_field route_field_t;
typedef int (*route_compile_fn)(route_cond_t *c, wf_arena_t *a,
                                const route_field_t *f, const json_t *v,
                                char *err, size_t errlen);

struct route_field {
    const char *name;
    unsigned types; /* WF_JSON_* the value may have */
    route_compile_fn compile;
    route_match_fn match;
    route_getter get; /* host, uri, method */
    unsigned flags;   /* WF_PAT_* */
};

static int
route_compile_string(route_cond_t *c, wf_arena_t *a, const route_field_t *f,
                     const json_t *v, char *err, size_t errlen)
{
    c->ps = wf_pattern_set_compile_key(a, v, f->flags, f->name, err, errlen);
    return c->ps != NULL ? WF_OK : WF_ERROR;
}

static int
route_rule_compile(route_rule_t *rule, wf_arena_t *a, const route_field_t *f,
                   const char *name, const json_t *v, char *err, size_t errlen)
{
    size_t n = strlen(name);
    char *d = wf_arena_alloc(a, n + 1);

    if (n == 0) {
        snprintf(err, errlen,
                 "The \"match\" pattern objects must not "
                 "contain empty member names.");
        return WF_ERROR;
    }
    if (d == NULL) {
        snprintf(err, errlen, "Out of memory.");
        return WF_ERROR;
    }
    memcpy(d, name, n);
    if ((f->flags & WF_PAT_PLUS) != 0
        && !wf_var_decode_strict(d, name, n, true, &n)) {
        snprintf(err, errlen,
                 "The \"match\" pattern for \"%s\" is encoded "
                 "but is invalid.",
                 f->name);
        return WF_ERROR;
    }
    rule->name = wf_str_make(d, n);
    rule->ps = wf_pattern_set_compile_key(a, v, f->flags, f->name, err, errlen);
    return rule->ps != NULL ? WF_OK : WF_ERROR;
}

static int
route_set_compile(route_ruleset_t *set, wf_arena_t *a, const route_field_t *f,
                  const json_t *obj, char *err, size_t errlen)
{
    const char *name;
    json_t *v;

    if (!json_is_object(obj)) {
        if ((f->flags & WF_PAT_PLUS) != 0) {
            snprintf(err, errlen,
                     "The \"match\" pattern for \"%s\" must be "
                     "an object.",
                     f->name);
        } else {
            snprintf(err, errlen,
                     "The \"match\" patterns for \"%s\" must be "
                     "objects.",
                     f->name);
        }
        return WF_ERROR;
    }
    set->rules =
        wf_arena_calloc(a, (json_object_size(obj) + 1) * sizeof(route_rule_t));
    if (set->rules == NULL) {
        snprintf(err, errlen, "Out of memory.");
        return WF_ERROR;
    }
    json_object_foreach((json_t *)obj, name, v)
    {
        if (route_rule_compile(&set->rules[set->n], a, f, name, v, err, errlen)
            != WF_OK) {
            return WF_ERROR;
        }
        set->n++;
    }
    return WF_OK;
}

static int
route_compile_sets(route_cond_t *c, wf_arena_t *a, const route_field_t *f,
                   const json_t *v, char *err, size_t errlen)
{
    size_t n = json_is_array(v) ? json_array_size(v) : 1;

    c->sets = wf_arena_calloc(a, (n + 1) * sizeof(route_ruleset_t));
    if (c->sets == NULL) {
        snprintf(err, errlen, "Out of memory.");
        return WF_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *obj = json_is_array(v) ? json_array_get(v, i) : v;

        if (route_set_compile(&c->sets[i], a, f, obj, err, errlen) != WF_OK) {
            return WF_ERROR;
        }
    }
    c->nsets = n;
    return WF_OK;
}

static int
route_compile_scheme(route_cond_t *c, wf_arena_t *a, const route_field_t *f,
                     const json_t *v, char *err, size_t errlen)
{
    wf_str_t s = wf_str_make(json_string_value(v), json_string_length(v));

    wf_unused(a);
    wf_unused(f);
    if (!wf_str_eq_nocase(s, wf_string("http"))
        && !wf_str_eq_nocase(s, wf_string("https"))) {
        snprintf(err, errlen,
                 "The \"scheme\" can either be \"http\" or \"https\".");
        return WF_ERROR;
    }
    c->https = s.len == 5;
    return WF_OK;
}

static int
route_compile_addr(route_cond_t *c, wf_arena_t *a, const route_field_t *f,
                   const json_t *v, char *err, size_t errlen)
{
    wf_unused(f);
    c->addrs = wf_addr_set_compile(a, v, err, errlen);
    return c->addrs != NULL ? WF_OK : WF_ERROR;
}

/* "if": a template, false when it renders to "", "0", "false", "null" or
 * "undefined"; a leading '!' negates. */
static int
route_compile_if(route_cond_t *c, wf_arena_t *a, const route_field_t *f,
                 const json_t *v, char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    wf_unused(f);
    c->negate = n > 0 && s[0] == '!';
    c->tpl = wf_tpl_compile(a, s + c->negate, n - c->negate, err, errlen);
    return c->tpl != NULL ? WF_OK : WF_ERROR;
}

#define ROUTE_STRINGS (WF_JSON_STRING | WF_JSON_ARRAY)
#define ROUTE_OBJECTS (WF_JSON_OBJECT | WF_JSON_ARRAY)

/* Unit's match keys, with each key's case and encoding rules (Unit 1.35
 * nxt_http_route.c): host caseless; method upper-cased patterns; uri
 * percent-decoded; query and arguments decoded with '+' as ' '; header
 * values caseless; cookies exact. */
static const route_field_t route_fields[] = {
    {"host", ROUTE_STRINGS, route_compile_string, route_match_string,
     route_get_host, WF_PAT_CASELESS},
    {"uri", ROUTE_STRINGS, route_compile_string, route_match_string,
     route_get_uri, WF_PAT_DECODE},
    {"method", ROUTE_STRINGS, route_compile_string, route_match_string,
     route_get_method, WF_PAT_UPPER},
    {"query", ROUTE_STRINGS, route_compile_string, route_match_query, NULL,
     WF_PAT_PLUS},
    {"headers", ROUTE_OBJECTS, route_compile_sets, route_match_headers, NULL,
     WF_PAT_CASELESS},
    {"arguments", ROUTE_OBJECTS, route_compile_sets, route_match_arguments,
     NULL, WF_PAT_PLUS},
    {"cookies", ROUTE_OBJECTS, route_compile_sets, route_match_cookies, NULL,
     0},
    {"scheme", WF_JSON_STRING, route_compile_scheme, route_match_scheme, NULL,
     0},
    {"source", ROUTE_STRINGS, route_compile_addr, route_match_source, NULL, 0},
    {"destination", ROUTE_STRINGS, route_compile_addr, route_match_destination,
     NULL, 0},
    {"if", WF_JSON_STRING, route_compile_if, route_match_if, NULL, 0},
};

/* Compiles one "match" member into c.  Returns WF_OK or WF_ERROR. */
static int
route_cond_compile(route_cond_t *c, wf_arena_t *a, const char *key,
                   const json_t *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < wf_nitems(route_fields); i++) {
        const route_field_t *f = &route_fields[i];

        if (strcmp(f->name, key) != 0) {
            continue;
        }
        if (!wf_json_type_check(value, f->types, key, err, errlen)) {
            return WF_ERROR;
        }
        c->match = f->match;
        c->get = f->get;
        return f->compile(c, a, f, value, err, errlen);
    }
    snprintf(err, errlen, "Unknown parameter \"%.200s\".", key);
    return WF_ERROR;
}

/* ---- the step index ---------------------------------------------------- */

static uint64_t
route_key_hash(route_key_kind_t kind, wf_str_t host, wf_str_t uri)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;

    for (size_t i = 0; i < host.len; i++) {
        h = (h ^ (unsigned char)wf_lower(host.data[i])) * 1099511628211ull;
    }
    h = (h ^ 0xFF) * 1099511628211ull;
    for (size_t i = 0; i < uri.len; i++) {
        h = (h ^ (unsigned char)uri.data[i]) * 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static route_bucket_t *
route_bucket_find(const wf_route_t *route, route_key_kind_t kind, wf_str_t host,
                  wf_str_t uri, uint64_t hash)
{
    route_bucket_t *b = route->buckets[hash & (route->nbuckets - 1)];

    for (; b != NULL; b = b->next) {
        if (b->hash == hash && b->kind == kind && wf_str_eq(b->uri, uri)
            && wf_str_eq_nocase(b->host, host)) {
            return b;
        }
    }
    return NULL;
}

/* Doubles the bucket array (or creates it).  Returns WF_OK or WF_ERROR. */
static int
route_index_grow(wf_route_t *route, wf_arena_t *a)
{
    size_t n = route->nbuckets == 0 ? 64 : route->nbuckets * 2;
    route_bucket_t **t = wf_arena_calloc(a, n * sizeof(*t));

    if (t == NULL) {
        return WF_ERROR;
    }
    for (size_t i = 0; i < route->nbuckets; i++) {
        route_bucket_t *b = route->buckets[i];

        while (b != NULL) {
            route_bucket_t *next = b->next;

            b->next = t[b->hash & (n - 1)];
            t[b->hash & (n - 1)] = b;
            b = next;
        }
    }
    route->buckets = t;
    route->nbuckets = n;
    return WF_OK;
}

/* Appends step number k to an ascending list (k is never below its last
 * entry: steps are added in order). */
static int
route_list_add(uint32_t **v, uint32_t *n, uint32_t *cap, wf_arena_t *a,
               uint32_t k)
{
    if (*n > 0 && (*v)[*n - 1] == k) {
        return WF_OK; /* ["/a", "/a"] */
    }
    if (*n == *cap) {
        uint32_t c = *cap == 0 ? 2 : *cap * 2;
        uint32_t *nv = wf_arena_alloc(a, c * sizeof(uint32_t));

        if (nv == NULL) {
            return WF_ERROR;
        }
        if (*n > 0) {
            memcpy(nv, *v, *n * sizeof(uint32_t));
        }
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = k;
    return WF_OK;
}

static int
route_index_add(wf_route_t *route, wf_arena_t *a, route_key_kind_t kind,
                wf_str_t host, wf_str_t uri, uint32_t k)
{
    uint64_t hash = route_key_hash(kind, host, uri);
    route_bucket_t *b;

    if (route->nkeys >= route->nbuckets / 2
        && route_index_grow(route, a) != WF_OK) {
        return WF_ERROR;
    }
    b = route_bucket_find(route, kind, host, uri, hash);
    if (b == NULL) {
        b = wf_arena_calloc(a, sizeof(*b));
        if (b == NULL) {
            return WF_ERROR;
        }
        *b = (route_bucket_t){
            .hash = hash, .kind = kind, .host = host, .uri = uri};
        b->next = route->buckets[hash & (route->nbuckets - 1)];
        route->buckets[hash & (route->nbuckets - 1)] = b;
        route->nkeys++;
        route->kinds |= 1u << kind;
    }
    return route_list_add(&b->steps, &b->n, &b->cap, a, k);
}

/* Literal patterns of the step's host and uri conditions, if any. */
static size_t
route_step_literals(const route_step_t *step, route_getter get, wf_str_t *out)
{
    for (size_t i = 0; i < step->nconds; i++) {
        if (step->conds[i].get == get) {
            return wf_pattern_set_literals(step->conds[i].ps, out,
                                           ROUTE_INDEX_MAX_KEYS);
        }
    }
    return 0;
}

/* Puts step k under its literal host and uri values: (host, uri) pairs when
 * both are literal and few, else host, else uri; other steps go to the
 * plain list that every lookup merges in. */
static int
route_index_step(wf_route_t *route, wf_arena_t *a, uint32_t k)
{
    const route_step_t *step = &route->steps[k];
    wf_str_t hosts[ROUTE_INDEX_MAX_KEYS], uris[ROUTE_INDEX_MAX_KEYS];
    size_t nh = route_step_literals(step, route_get_host, hosts);
    size_t nu = route_step_literals(step, route_get_uri, uris);
    int rc = WF_OK;

    if (nh > ROUTE_INDEX_MAX_KEYS || nu > ROUTE_INDEX_MAX_KEYS) {
        nh = nh > ROUTE_INDEX_MAX_KEYS ? 0 : nh;
        nu = nu > ROUTE_INDEX_MAX_KEYS ? 0 : nu;
    }
    if (nh > 0 && nu > 0 && nh * nu <= ROUTE_INDEX_MAX_KEYS) {
        for (size_t i = 0; i < nh * nu && rc == WF_OK; i++) {
            rc = route_index_add(route, a, ROUTE_KEY_HOST_URI, hosts[i / nu],
                                 uris[i % nu], k);
        }
        return rc;
    }
    for (size_t i = 0; i < nh && rc == WF_OK; i++) {
        rc =
            route_index_add(route, a, ROUTE_KEY_HOST, hosts[i], wf_null_str, k);
    }
    for (size_t i = 0; nh == 0 && i < nu && rc == WF_OK; i++) {
        rc = route_index_add(route, a, ROUTE_KEY_URI, wf_null_str, uris[i], k);
    }
    if (nh == 0 && nu == 0) {
        rc = route_list_add(&route->plain.v, &route->plain.n, &route->plain.cap,
                            a, k);
    }
    return rc;
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

static int
route_step_compile(route_step_t *step, wf_arena_t *a, const json_t *match,
                   char *err, size_t errlen)
{
    const char *key;
    json_t *value;

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
        if (route_cond_compile(&step->conds[step->nconds], a, key, value, err,
                               errlen)
            != WF_OK) {
            return WF_ERROR;
        }
        step->nconds++;
    }
    return WF_OK;
}

int
wf_route_add_step(wf_route_t *route, wf_arena_t *a, const json_t *match,
                  const wf_action_t *action, char *err, size_t errlen)
{
    route_step_t *step = route_step_append(route, a);

    if (step == NULL || route->nsteps >= UINT32_MAX) {
        snprintf(err, errlen, "Out of memory.");
        return WF_ERROR;
    }
    memset(step, 0, sizeof(*step));
    step->action = action;
    if (match != NULL
        && route_step_compile(step, a, match, err, errlen) != WF_OK) {
        return WF_ERROR;
    }
    if (route_index_step(route, a, (uint32_t)route->nsteps) != WF_OK) {
        snprintf(err, errlen, "Out of memory.");
        return WF_ERROR;
    }
    route->nsteps++;
    return WF_OK;
}

static bool
route_step_match(const route_step_t *step, const wf_route_req_t *rq)
{
    for (size_t i = 0; i < step->nconds; i++) {
        const route_cond_t *c = &step->conds[i];

        if (!c->match(c, rq)) {
            return false;
        }
    }
    return true;
}

/* The candidate lists of a lookup: up to one bucket per key kind and the
 * plain steps, each ascending. */
typedef struct route_cands {
    const uint32_t *v[ROUTE_KEY_NKINDS + 1];
    uint32_t n[ROUTE_KEY_NKINDS + 1];
    uint32_t pos[ROUTE_KEY_NKINDS + 1];
} route_cands_t;

static void
route_cands_probe(const wf_route_t *route, route_cands_t *cs,
                  route_key_kind_t kind, wf_str_t host, wf_str_t uri)
{
    const route_bucket_t *b;

    if ((route->kinds & (1u << kind)) == 0) {
        return;
    }
    b = route_bucket_find(route, kind, host, uri,
                          route_key_hash(kind, host, uri));
    if (b != NULL) {
        cs->v[kind] = b->steps;
        cs->n[kind] = b->n;
    }
}

/* Returns the lowest step number left in cs and consumes it, or
 * UINT32_MAX when none is left. */
static uint32_t
route_cands_next(route_cands_t *cs)
{
    size_t best = SIZE_MAX;
    uint32_t k = UINT32_MAX;

    for (size_t i = 0; i < wf_nitems(cs->v); i++) {
        if (cs->pos[i] < cs->n[i] && cs->v[i][cs->pos[i]] < k) {
            k = cs->v[i][cs->pos[i]];
            best = i;
        }
    }
    if (best != SIZE_MAX) {
        cs->pos[best]++;
    }
    return k;
}

/* Steps are tried in config order among the candidates: the index only
 * leaves out steps whose literal host/uri cannot match, so "first matching
 * step wins" holds as in a linear scan. */
const wf_action_t *
wf_route_match(const wf_route_t *route, const wf_route_req_t *rq)
{
    route_cands_t cs = {0};
    wf_str_t host = route_get_host(rq);
    uint32_t k;

    if (route->nkeys > 0) {
        route_cands_probe(route, &cs, ROUTE_KEY_HOST_URI, host, rq->uri);
        route_cands_probe(route, &cs, ROUTE_KEY_HOST, host, wf_null_str);
        route_cands_probe(route, &cs, ROUTE_KEY_URI, wf_null_str, rq->uri);
    }
    cs.v[ROUTE_KEY_NKINDS] = route->plain.v;
    cs.n[ROUTE_KEY_NKINDS] = route->plain.n;
    while ((k = route_cands_next(&cs)) != UINT32_MAX) {
        if (route_step_match(&route->steps[k], rq)) {
            return route->steps[k].action;
        }
    }
    return NULL;
}

const char *
wf_route_name(const wf_route_t *route)
{
    return route->name;
}

/* Unit names a step "routes/k" in the array form, "routes/NAME/k" else. */
const wf_action_t *
wf_route_match_log(const wf_route_t *route, const wf_route_req_t *rq)
{
    const char *sep = route->name[0] != '\0' ? "/" : "";

    for (size_t k = 0; k < route->nsteps; k++) {
        if (route_step_match(&route->steps[k], rq)) {
            wf_log_notice(0, "\"routes%s%s/%zu\" selected", sep, route->name,
                          k);
            return route->steps[k].action;
        }
        wf_log_info("\"routes%s%s/%zu\" discarded", sep, route->name, k);
    }
    return NULL;
}

/* Unit percent-decodes the segments of a rendered "pass". */
const wf_route_t *
wf_route_find(wf_route_t *const *routes, size_t n, bool is_array, wf_str_t pass)
{
    char buf[512];
    wf_str_t name;

    if (pass.len < 6 || memcmp(pass.data, "routes", 6) != 0) {
        return NULL;
    }
    if (pass.len == 6) {
        return is_array && n > 0 ? routes[0] : NULL;
    }
    if (pass.data[6] != '/' || is_array) {
        return NULL;
    }
    if (pass.len - 7 > sizeof(buf)) {
        return NULL;
    }
    name = wf_str_make(buf,
                       wf_var_decode(buf, pass.data + 7, pass.len - 7, false));
    for (size_t i = 0; i < n; i++) {
        const char *rn = routes[i]->name;

        if (name.len > 0 && strlen(rn) == name.len
            && memcmp(rn, name.data, name.len) == 0) {
            return routes[i];
        }
    }
    return NULL;
}
