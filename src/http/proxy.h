/* The proxy endpoint: a request sent to a backend server over HTTP/1.1 and
 * its response streamed back (Unit's "proxy" action and "upstreams").  See
 * docs/internals/proxy.md. */
#ifndef WF_HTTP_PROXY_H
#define WF_HTTP_PROXY_H

#include "http/req.h"

#define WF_PROXY_HEAD_MAX (16 * 1024) /* longest backend response head */

/* Runs a proxy action: picks a server of u (a->upstream, or the upstream
 * a variable "pass" named; u gives the options too), connects,
 * sends the re-serialised request head and streams the body, then relays
 * the response.  502 when no server can be reached or the response is
 * invalid, 504 on a timeout before the response head; after the head, a
 * failure ends the client connection.  Takes over r. */
void wf_proxy_run(wf_req_t *r, struct wf_upstream *u);

/* Frees the proxy state of r (closing the backend connection if still
 * open).  Called when r is destroyed; never calls back. */
void wf_proxy_req_release(wf_req_t *r);

/* Closes the calling thread's idle backend connections and frees its
 * pools (at I/O thread exit). */
void wf_proxy_thread_exit(void);

#endif
