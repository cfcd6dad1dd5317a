/* Active health checks ("health_check" of an upstream): an HTTP request
 * to each server at an interval, off the request path.  Each check
 * belongs to one I/O thread (chosen by the server's address), whose loop
 * runs its socket and timers; its verdict goes to the server's peer
 * (http/upstream_peer.h), which every thread reads when it picks.  See
 * docs/internals/proxy.md, "Health". */
#ifndef WF_HTTP_UPSTREAM_HEALTH_H
#define WF_HTTP_UPSTREAM_HEALTH_H

#include "http/upstream.h"

/* The snapshot whose upstreams are all (linked by next) is now the
 * current one: its servers' checks start, or keep running when a check
 * with the same settings runs already (its state is kept); the checks of
 * servers it no longer checks stop, and those servers count as up for
 * the checks' part.  On the router's main loop only.  Does nothing when
 * no loops run. */
void wf_upstream_health_publish(wf_upstream_t *all);

#endif
