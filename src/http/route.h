/* Routes: compiled match conditions and actions (Unit's "routes").
 *
 * A config's routes are compiled once (control/conf.c builds them with the
 * functions below); matching reads only the compiled form and never
 * allocates.  Each condition is a (field getter, pattern set) pair, so new
 * match keys are new rows in the field table of route.c. */
#ifndef WF_HTTP_ROUTE_H
#define WF_HTTP_ROUTE_H

#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/pool.h"
#include "core/str.h"
#include "http/h1_parse.h"
#include "http/tpl.h"

/* A connection's address: IPv4 or IPv6; for a unix socket only
 * sa.sa_family (AF_UNIX) is set, since paths are not needed for routing. */
typedef union wf_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
} wf_sockaddr_t;

/* What matching and templates read of a request.  The core fills it before
 * wf_route_match(); fields marked "later" are read only by templates
 * rendered after the response (access log), and are 0 until then. */
struct wf_route_req {
    wf_http_method_t method_id;
    wf_str_t method;          /* the method token */
    wf_str_t host;            /* Host: lower-cased, without port */
    wf_str_t uri;             /* decoded, normalised path (starts with '/') */
    const wf_h1_head_t *head; /* all fields (raw target, query, headers);
                                 NULL in some unit tests */
    const wf_sockaddr_t *remote; /* the client; NULL in some unit tests */
    const wf_sockaddr_t *local;  /* the address it connected to */
    bool tls;                    /* scheme https */
    const struct wf_xprt *xp;    /* the connection's transport, for the
                                    $tls_* variables; NULL: none known */
    uint64_t start_ns;        /* CLOCK_MONOTONIC when the request head arrived,
                                 for $request_time; 0: unknown */
    unsigned status;          /* later: response status, for $status */
    uint64_t body_bytes_sent; /* later: body bytes sent, $body_bytes_sent */
    wf_str_t resp_head;       /* the response head as written (status line
                                 to the empty line), for
                                 $response_header_NAME; len 0 until it is
                                 built; borrowed from the request */
    uint64_t request_id[2];   /* $request_id, drawn when first rendered so
                                 that it is the same everywhere in one
                                 request; both 0: not yet (zero it per
                                 request); written only by tpl.c */
};

typedef enum wf_action_type {
    WF_ACTION_SHARE = 0,
    WF_ACTION_RETURN,
    WF_ACTION_PASS,
    WF_ACTION_APP,     /* "pass": "applications/NAME[/TARGET]" */
    WF_ACTION_PROXY,   /* "proxy", or "pass": "upstreams/NAME" */
    WF_ACTION_METRICS, /* Wharf's "metrics": "prometheus" (http/metrics.h) */
    WF_ACTION_NTYPES   /* must stay last */
} wf_action_type_t;

typedef struct wf_pattern_set wf_pattern_set_t;
typedef struct wf_route wf_route_t;

/* Response fields an action sets ("response_headers"); value NULL deletes
 * the field. */
typedef struct wf_resp_field {
    wf_str_t name;
    const wf_tpl_t *value;
} wf_resp_field_t;

/* Fields that Wharf itself writes and "response_headers" may replace or
 * delete: the bits of wf_action_t.resp_builtin. */
#define WF_RESP_F_CONTENT_TYPE  0x01u
#define WF_RESP_F_LAST_MODIFIED 0x02u
#define WF_RESP_F_ETAG          0x04u
#define WF_RESP_F_ACCEPT_RANGES 0x08u
#define WF_RESP_F_CONTENT_RANGE 0x10u
#define WF_RESP_F_LOCATION      0x20u

typedef struct wf_action {
    wf_action_type_t type;

    /* Every kind.  rewrite: NULL when none.  resp_fields: the fields to set
     * or delete (nresp_fields 0: none), in config order; resp_builtin: the
     * WF_RESP_F_* fields they name. */
    const wf_tpl_t *rewrite;
    const wf_resp_field_t *resp_fields;
    size_t nresp_fields;
    unsigned resp_builtin;

    /* WF_ACTION_SHARE */
    wf_tpl_t **shares; /* tried in order; nshares >= 1 */
    size_t nshares;
    wf_str_t index;                   /* "index.html" by default */
    const wf_pattern_set_t *types;    /* MIME type filter; NULL: any */
    const struct wf_action *fallback; /* NULL: none */
    const wf_tpl_t *chroot;           /* NULL: none */
    bool follow_symlinks;             /* default true */
    bool traverse_mounts;             /* default true */

    /* WF_ACTION_RETURN */
    unsigned status;          /* 0..999 */
    const wf_tpl_t *location; /* NULL: no Location field */

    /* WF_ACTION_PASS: route, or a template resolved per request against
     * the snapshot's routes (routes[0..nroutes), the array form when
     * routes_is_array) and applications (apps[0..napps), with
     * wf_app_desc_find_pass(): an "applications/..." value that names
     * none answers 404). */
    const wf_route_t *route;
    const wf_tpl_t *pass;
    const struct wf_app_desc *apps;
    unsigned napps;
    wf_route_t *const *routes;
    size_t nroutes;
    bool routes_is_array;
    struct wf_upstream *upstreams; /* "upstreams/..." passes */
    size_t nupstreams;

    /* WF_ACTION_APP: the application (in the same snapshot) and the index
     * of the target in app->targets (0 without targets). */
    const struct wf_app_desc *app;
    unsigned app_target;

    /* WF_ACTION_PROXY: the upstream (in the same snapshot; a "proxy"
     * action's own one-server upstream with the action's options, or a
     * named one). */
    struct wf_upstream *upstream;
} wf_action_t;

/* Compiles a pattern set from a JSON string or array of strings (Unit's
 * pattern syntax: exact, '*' wildcards, '!' negation, '~' PCRE2 regular
 * expressions).  case_sensitive is false for MIME "types" (the only user
 * outside route.c; match keys get their own options in route.c).  Returns
 * NULL with Unit's message in err.  Borrows value; the result lives in a. */
wf_pattern_set_t *wf_pattern_set_compile(wf_arena_t *a, const json_t *value,
                                         bool case_sensitive, char *err,
                                         size_t errlen);

/* True when s matches the set: some positive pattern (or none exists) and no
 * negated pattern matches. */
bool wf_pattern_set_match(const wf_pattern_set_t *ps, wf_str_t s);

/* Creates an empty route owned by a. */
wf_route_t *wf_route_create(wf_arena_t *a, const char *name);

/* Appends a step: match (a JSON object or NULL for "always") and its action
 * (borrowed; must live in a too).  Every Unit match key is compiled: host,
 * uri, method, query, headers, arguments, cookies, scheme, source,
 * destination, if.  Steps with literal host and/or uri patterns are put in
 * a hash index so that wf_route_match() does not scan them.  Returns WF_OK
 * or WF_ERROR with Unit's message in err (e.g. 'Unknown parameter "x".'). */
int wf_route_add_step(wf_route_t *route, wf_arena_t *a, const json_t *match,
                      const wf_action_t *action, char *err, size_t errlen);

/* Returns the action of the first step whose match accepts rq, or NULL when
 * none does (the caller answers 404).  Does not allocate, except once per
 * thread (regex match data, a decoding buffer that grows to the longest
 * query seen); out of memory there makes the condition false. */
const wf_action_t *wf_route_match(const wf_route_t *route,
                                  const wf_route_req_t *rq);

const char *wf_route_name(const wf_route_t *route);

/* As wf_route_match(), but scans the steps in order and logs each one as
 * Unit's log_route does: '"routes/NAME/k" discarded' at [info] and
 * '... selected' at [notice].  For requests with log_route on only. */
const wf_action_t *wf_route_match_log(const wf_route_t *route,
                                      const wf_route_req_t *rq);

/* Finds the route that a rendered "pass" value names ("routes",
 * "routes/NAME", NAME percent-decoded as Unit does) among routes[0..n).
 * NULL when none. */
const wf_route_t *wf_route_find(wf_route_t *const *routes, size_t n,
                                bool is_array, wf_str_t pass);

#endif
