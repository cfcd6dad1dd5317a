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
    const char *json; /* the app object, compact JSON text, NUL-ended */
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
