/* Applications as the router's snapshot describes them, and the hook
 * through which a "pass" to "applications/NAME[/TARGET]" reaches the
 * router's application manager (which lives above the http layer). */
#ifndef WF_HTTP_APP_DESC_H
#define WF_HTTP_APP_DESC_H

#include <stdint.h>

#include "core/str.h"

typedef struct wf_req wf_req_t;

/* One entry of "applications", compiled into the snapshot's arena.  Two
 * snapshots' entries with the same name and the same json text are the
 * same application (its processes carry over); a changed json text
 * restarts it gracefully. */
typedef struct wf_app_desc {
    wf_str_t name;
    const char *json; /* the app object, compact JSON text, NUL-ended:
                         keys sorted, except the members of "targets",
                         which keep config order (wf_conf_app_json()) */
    const char *type; /* as configured: "python 3.11" */

    /* "processes": an integer n is {max: n, spare: n}. */
    unsigned max_processes;
    unsigned spare_processes;
    uint64_t idle_timeout_ms; /* default 15 s, as Unit */

    /* "limits" */
    uint64_t timeout_ms;   /* 0: none */
    uint64_t max_requests; /* 0: none */

    /* "queue" (Wharf): requests waiting for a free process. */
    unsigned queue_length;     /* default 1024 */
    uint64_t queue_timeout_ms; /* default 30 s */

    unsigned threads; /* worker slots per process ("threads", default 1) */
    unsigned ntargets;
    const wf_str_t *targets; /* names of "targets", in config order */

    /* Set by the router once, before the snapshot is published: its live
     * application object.  The http layer never reads it. */
    void *live;
} wf_app_desc_t;

/* Splits a "pass" value into Unit's segments (nxt_http_pass_segments()):
 * at most three, none empty, each percent-decoded strictly into buf
 * (cap >= pass.len + 1; each segment NUL-ended there).  Unused segments
 * get len 0.  Returns WF_OK, or WF_DECLINED when pass is not a valid
 * value (Unit's 'Request "pass" value "..." is invalid.'). */
int wf_app_desc_pass_split(wf_str_t pass, char *buf, size_t cap,
                           wf_str_t seg[3]);

/* The application named name (decoded bytes) in apps[0..n), or NULL. */
const wf_app_desc_t *wf_app_desc_find(const wf_app_desc_t *apps, unsigned n,
                                      wf_str_t name);

/* The index of target in app->targets, or -1. */
int wf_app_desc_target(const wf_app_desc_t *app, wf_str_t target);

/* Resolves a rendered "pass" ("applications/NAME" or
 * "applications/NAME/TARGET", segments percent-decoded) against
 * apps[0..n): returns the application and sets *target (0 without a
 * TARGET segment, as Unit), or NULL when pass names no application or
 * target there (the caller answers 404).  Does not allocate. */
const wf_app_desc_t *wf_app_desc_find_pass(const wf_app_desc_t *apps,
                                           unsigned n, wf_str_t pass,
                                           unsigned *target);

/* Serves r with app (target: index in app->targets, 0 without).  Takes
 * over r like every action.  Installed by the router at start; NULL (the
 * default) answers 503. */
typedef void (*wf_http_app_fn)(wf_req_t *r, const wf_app_desc_t *app,
                               unsigned target);

void wf_http_app_set_handler(wf_http_app_fn fn);

/* Called on r's loop when the mux frees a request whose r->app is set (the
 * application endpoint's exchange); never calls back into r.  Installed
 * with the handler. */
typedef void (*wf_http_app_release_fn)(wf_req_t *r);

void wf_http_app_set_release(wf_http_app_release_fn fn);

#endif
