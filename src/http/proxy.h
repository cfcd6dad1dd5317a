/* The proxy endpoint: a request sent to a backend server over HTTP/1.1 and
 * its response streamed back (Unit's "proxy" action and "upstreams").  See
 * docs/internals/proxy.md. */
#ifndef WF_HTTP_PROXY_H
#define WF_HTTP_PROXY_H

#include "http/req.h"
#include "http/route.h"

#define WF_PROXY_CONNECT_MS (60 * 1000) /* Unit's proxy_timeout */
#define WF_PROXY_READ_MS    (60 * 1000) /* Unit's, for the head and body */
#define WF_PROXY_SEND_MS    (30 * 1000) /* Unit's proxy_send_timeout */
#define WF_PROXY_HEAD_MAX   (16 * 1024) /* longest backend response head */

/* Runs a WF_ACTION_PROXY action: picks a server of a->upstream, connects,
 * sends the re-serialised request head and streams the body, then relays
 * the response.  502 when no server can be reached or the response is
 * invalid, 504 on a timeout before the response head; after the head, a
 * failure ends the client connection.  Takes over r. */
void wf_proxy_run(wf_req_t *r, const wf_action_t *a);

/* Frees the proxy state of r (closing the backend connection if still
 * open).  Called when r is destroyed; never calls back. */
void wf_proxy_req_release(wf_req_t *r);

#endif
