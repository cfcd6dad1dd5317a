/* HTTP/1.x client connections: the connection state machine, request
 * bodies, keep-alive, pipelining and the response writer (sendmsg and
 * sendfile). */
#ifndef WF_HTTP_H1_CONN_H
#define WF_HTTP_H1_CONN_H

#include "core/listen.h"
#include "http/http_conf.h"
#include "http/route.h"

/* A listening socket serving HTTP/1.x: what its connections route through.
 * Borrows root and hc; they must outlive the listener and its connections. */
typedef struct wf_h1_server {
    wf_listener_t listener;
    const wf_route_t *root;
    const wf_http_conf_t *hc;
} wf_h1_server_t;

/* Sets srv's accept callback.  Call before wf_listener_start(). */
void wf_h1_server_init(wf_h1_server_t *srv, const wf_route_t *root,
                       const wf_http_conf_t *hc);

/* Installs the loop hooks that close idle connections on a graceful stop
 * and free per-thread objects at thread exit. */
void wf_h1_init(void);

#endif
