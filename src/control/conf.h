/* Configuration snapshots: Unit's JSON config, validated and compiled into
 * the immutable structures the router reads.  One arena owns everything a
 * snapshot holds. */
#ifndef WF_CONTROL_CONF_H
#define WF_CONTROL_CONF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/json.h"
#include "core/pool.h"
#include "http/app_desc.h"
#include "http/http_conf.h"
#include "http/route.h"
#include "net/tls.h"

typedef struct wf_conf_listener {
    const char *name;             /* as in the config: "127.0.0.1:8080" */
    struct sockaddr_storage addr; /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t addrlen;
    const wf_route_t *pass; /* the route it passes to */
    wf_tls_srv_t *tls;      /* owned; NULL: plain */
    bool h2c;               /* "h2c": HTTP/2 with prior knowledge */
    /* "rhttp@NAME": dials out (issue 13; http/rhttp.h); NULL: a socket */
    struct wf_rhttp_conf *reverse;
    /* "reverse" of a socket listener: its h2 connections become tunnels
     * (http/rhttp_pub.h); NULL: none */
    struct wf_rhttp_attach *attach;
} wf_conf_listener_t;

typedef struct wf_conf {
    wf_arena_t *arena; /* owns everything below */
    wf_conf_listener_t *listeners;
    size_t nlisteners;
    wf_http_conf_t http;
    wf_route_t **routes; /* every route, in config order; the
                            array form is one route named "" */
    size_t nroutes;
    wf_app_desc_t *apps; /* "applications", in config order; NULL when
                            napps is 0.  The router sets each live
                            before it publishes the snapshot, and
                            reconciles its applications by name and
                            json text across snapshots. */
    unsigned napps;
    struct wf_upstream *upstreams; /* "upstreams", in config order */
    size_t nupstreams;
    struct wf_upstream *upstream_all; /* every upstream, named or a
                                         "proxy" action's (their next) */
    json_t *json;                     /* the source tree; a reference */
    struct wf_tls_cli **tls_clis;     /* TLS to backends, one per upstream
                                         that speaks it; owned */
    size_t ntls_clis;
} wf_conf_t;

/* Validation or parse failure, in the shape of Unit's control API errors. */
typedef struct wf_conf_error {
    char error[128];      /* e.g. "Invalid configuration." */
    char detail[512];     /* e.g. 'Unknown parameter "x".' */
    wf_json_error_t json; /* location, when has_location */
    int has_location;
} wf_conf_error_t;

/* Parses text[0..len) as lenient JSON, then compiles it.  Returns a new
 * snapshot or NULL with err filled. */
wf_conf_t *wf_conf_load(const char *text, size_t len, wf_conf_error_t *err);

/* Validates and compiles a config tree (borrowed; the snapshot takes a
 * reference).  Anything not supported yet (TLS, ...) is
 * rejected with a detail that says so.  Application types are checked
 * against the languages Wharf knows, not against the modules installed
 * (see wf_conf_check()).  Returns a new snapshot or NULL with err
 * filled. */
wf_conf_t *wf_conf_compile(json_t *root, wf_conf_error_t *err);

/* Validates root (borrowed) as the controller must before it accepts a
 * change: wf_conf_compile()'s checks, and each application's "type"
 * against modules, the WF_MSG_MODULES array (borrowed; NULL: none known
 * yet, so every type is refused with Unit's "The module to run ... is not
 * found" message).  Returns WF_OK, or WF_ERROR with err filled. */
int wf_conf_check(json_t *root, const json_t *modules, wf_conf_error_t *err);

/* Returns the route that a "pass" of "routes" (name "") or "routes/NAME"
 * reaches, or NULL when conf has none of that name. */
const wf_route_t *wf_conf_route(const wf_conf_t *conf, const char *name);

/* Parses a listener address as the config writes it ("127.0.0.1:80",
 * "[::1]:80", "*:80", "unix:/path", "unix:@abstract") into ss/len.
 * Returns false when it is not one. */
bool wf_conf_addr_parse(const char *name, struct sockaddr_storage *ss,
                        socklen_t *len);

/* Frees a snapshot.  Accepts NULL. */
void wf_conf_destroy(wf_conf_t *conf);

#endif
