/* Reverse HTTP, the public side (issue 13): a listener with "reverse"
 * turns each HTTP/2 connection it accepts into a tunnel: an idle backend
 * connection (http/proxy_h2.c's client session, without the client
 * magic) of a named upstream, under a name rendered from the connection
 * (its client certificate's CN, say).  A request to that upstream picks
 * the tunnels of the name its "select" template renders, or gets 503.
 * See docs/internals/rhttp.md. */
#ifndef WF_HTTP_RHTTP_PUB_H
#define WF_HTTP_RHTTP_PUB_H

#include <jansson.h>
#include <stdbool.h>

#include "http/h2_conn.h"
#include "http/route.h"
#include "http/upstream.h"

#define WF_RHTTP_NAME_MAX 100 /* bytes of a tunnel's name */

/* A listener's "reverse" object, compiled; lives in the config's arena. */
typedef struct wf_rhttp_attach {
    const char *upstream;      /* the upstream the tunnels serve */
    const struct wf_tpl *name; /* the tunnel's name, rendered at attach */
    bool insecure;             /* no verified client certificate needed */
    unsigned max_per_name;     /* tunnels under one name at most */
    unsigned max_total;        /* tunnels of this listener at most */
} wf_rhttp_attach_t;

/* Takes s's connection (as wf_h2_conn_start() would) for s->site->attach:
 * checks its client certificate, renders its name, waits for the
 * private side's client preface, then makes it a tunnel in this thread's
 * pool.  A refused one is closed.  Never calls back. */
void wf_rhttp_pub_attach(const wf_h2_start_t *s);

/* The tunnel server of the name u->rhttp_select renders for rq, with one
 * slot taken (wf_upstream_done() gives it back), when this thread holds
 * one of its tunnels; NULL otherwise (503). */
wf_upstream_server_t *wf_rhttp_pub_pick(wf_upstream_t *u,
                                        const wf_route_req_t *rq);

/* /status: {"UPSTREAM/NAME": {"tunnels": n, "threads": [..]}}. */
json_t *wf_rhttp_pub_status_json(void);

#endif
