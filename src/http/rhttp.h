/* Reverse HTTP, the private side (issue 13): a listener without a socket
 * ("rhttp@NAME") whose connections are dialed out to a public server.
 * Each dialed connection starts as an HTTP/2 server session that sends
 * the client preface, is reversed on the peer's first SETTINGS, then
 * serves the listener's "pass" as an accepted one would.  The dials are
 * balanced across the I/O threads as HAProxy's rhttp does it (see
 * docs/internals/rhttp.md). */
#ifndef WF_HTTP_RHTTP_H
#define WF_HTTP_RHTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "http/h1_conn.h"
#include "net/tls_client.h"

#define WF_RHTTP_PREFIX     "rhttp@"
#define WF_RHTTP_PREFIX_LEN 6
#define WF_RHTTP_CONNS_MAX  1024

/* A listener's "reverse" object, compiled (control/conf.c); lives in the
 * config's arena. */
typedef struct wf_rhttp_conf {
    const char *name;    /* NAME of "rhttp@NAME" */
    const char *connect; /* "HOST:PORT" as written, for logs */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned connections; /* to keep established */
    bool h2c;             /* plain h2 (explicit: tests, benchmarks) */
    wf_tls_cli_t *tls;    /* NULL with h2c; the listener object takes
                             it over (wf_rhttp_commit_one()) */
    const char *sni;      /* NULL: none */
    char *json;           /* the object's canonical text (malloc'd):
                             a change restarts the listener */
} wf_rhttp_conf_t;

/* Reconciles the active listeners with a new configuration, on the
 * router's loop: begin, then one call per "rhttp@" listener, then end.
 * A listener whose "reverse" object is unchanged keeps its connections
 * and only gets the new site; a new or changed one starts dialing; one
 * no longer named stops (its connections send GOAWAY at the visit of
 * wf_rhttp_sweep()).  commit_one() may take rc->tls over. */
void wf_rhttp_commit_begin(void);
void wf_rhttp_commit_one(wf_rhttp_conf_t *rc, const wf_h1_site_t *site);
void wf_rhttp_commit_end(void);

/* On each I/O thread after a commit (the router's visit): dials of
 * stopped listeners waiting on this thread end.  Never calls back. */
void wf_rhttp_sweep(void);

/* Installs the loop hooks (after wf_h1_init(), whose hooks it chains):
 * a stop ends the dials waiting on each thread. */
void wf_rhttp_init(void);

/* /status: {"listeners": {NAME: {state, connections, established,
 * threads: [..]}}, "threads": [per-thread reverse connections]}. */
json_t *wf_rhttp_status_json(void);

/* Frees rc's own memory (not the arena's): its text and TLS context. */
void wf_rhttp_conf_fini(wf_rhttp_conf_t *rc);

#endif
