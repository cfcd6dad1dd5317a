/* /status as Prometheus text exposition (format 0.0.4), for the control
 * API's GET /status?format=prometheus and the "metrics" route action
 * (docs/internals/proxy.md, "Metrics"). */
#ifndef WF_HTTP_METRICS_H
#define WF_HTTP_METRICS_H

#include <jansson.h>
#include <stddef.h>

#define WF_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Renders status (a /status object, borrowed) as exposition text: every
 * figure under its wharf_* name with HELP and TYPE lines, counters
 * suffixed _total, maps (applications, upstreams, servers, modules) as
 * labels; a key this file does not know yet is exported untyped under
 * wharf_<path>.  Returns a malloc'd NUL-terminated text (*len bytes), or
 * NULL when out of memory. */
char *wf_metrics_render(const json_t *status, size_t *len);

/* Where the "metrics" route action gets /status: set by the router
 * before its loops start (it returns the JSON text, malloc'd, or NULL;
 * runs on the router's main loop). */
extern char *(*wf_metrics_status_source)(void);

struct wf_req;

/* The "metrics" route action ({"metrics": "prometheus"}): /status is
 * rendered on the router's main loop (which owns what /status reads),
 * then r is answered on its own loop.  The client may go first (r's
 * on_abort).  Never calls back into the caller. */
void wf_metrics_serve(struct wf_req *r);

/* Frees what wf_metrics_serve() left with r (its body); r is released. */
void wf_metrics_req_release(struct wf_req *r);

#endif
