/* A request being served (an exchange), independent of the connection's
 * protocol, and the response it gets.  The client-side mux (r->mux) owns
 * the request from the end of the head until the response is sent;
 * handlers fill r->resp and call wf_req_respond() exactly once.  Streamed
 * bodies go through r->req_body and r->resp_body (http/exchange.h). */
#ifndef WF_HTTP_REQ_H
#define WF_HTTP_REQ_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "core/loop.h"
#include "core/tpool.h"
#include "http/chan_types.h"
#include "http/exchange_types.h"
#include "http/h1_parse.h"
#include "http/http_conf.h"
#include "http/route.h"

#define WF_REQ_URI_INLINE  2048 /* decoded paths up to this fit inline */
#define WF_REQ_HOST_INLINE 256  /* lowercased Host values up to this too */
#define WF_REQ_MAX_PASSES  16   /* route-to-route passes before a 500 */

typedef struct wf_file wf_file_t; /* an open file in the per-thread cache */
typedef struct wf_share_state wf_share_state_t; /* static.c's, per request */

typedef struct wf_resp {
    unsigned status;
    wf_str_t content_type; /* len 0: none */
    wf_str_t location;     /* len 0: none */
    wf_str_t etag;         /* len 0: none */
    time_t last_modified;  /* 0: none */
    bool accept_ranges;
    wf_str_t content_range; /* "bytes a-b/size" or "bytes STAR/size" */
    wf_str_t body;          /* a memory body (borrowed; must outlive r) */
    wf_file_t *file;        /* a file body (a reference, released with r) */
    uint64_t file_off;
    uint64_t content_length; /* body bytes (file or memory) */
    bool stream;             /* the body comes through r->resp_body, of
                                unknown length (content_length unused) */
    bool stream_length;      /* with stream: the body has content_length
                                bytes exactly, sent unframed after a
                                Content-Length (an application's) */
    wf_str_t raw_fields;     /* "Name: value\r\n" lines an endpoint (an
                                application) rendered, written as they
                                are; borrowed, must outlive r; len 0:
                                none */
    bool head_only;          /* HEAD: send the fields, not the body */
    wf_str_t trailers;       /* with stream: "name: value\r\n" lines (names
                                lowercase) sent after the body, set before
                                the channel's close; borrowed, must
                                outlive r; len 0: none.  The h2 mux sends
                                them as a trailer HEADERS frame; h1 drops
                                them */
    bool close;              /* close the connection after this response */

    /* "response_headers" of the last action, set by wf_req_respond() for
     * 2xx and 3xx responses (as Unit); NULL: none.  Both borrowed. */
    const struct wf_action *fields;
    const wf_route_req_t *fields_rq;
} wf_resp_t;

typedef struct wf_req wf_req_t;

#define WF_REQ_HEAD_INLINE 1024 /* response heads up to this fit inline */

/* Called on the request's loop when a helper job finished. */
typedef void (*wf_req_job_cb)(wf_req_t *r);

struct wf_req {
    wf_mux_t *mux;            /* the client side that owns r */
    wf_h1_head_t head;        /* points into the connection's read buffer */
    wf_route_req_t rq;        /* what routes and templates read */
    const wf_http_conf_t *hc; /* borrowed from the snapshot */
    const wf_route_t *root;   /* the listener's route */
    wf_loop_t *loop;
    wf_resp_t resp;
    wf_chan_t req_body;  /* request body; producer: mux, consumer: endpoint */
    wf_chan_t resp_body; /* streamed response body; the other way round */
    bool body_wanted;    /* the endpoint asked for the request body */
    bool websocket;      /* a valid WebSocket opening handshake (see
                            wf_xchg_ws_check()); set by the mux */

    /* Set by an endpoint that holds r while it waits on something of its
     * own (a backend, a stream): called once if the client side goes away
     * first; r must not be touched after it returns.  The endpoint sets it
     * back to NULL when it stops holding r.  NULL: none. */
    void (*on_abort)(wf_req_t *r);
    unsigned passes;         /* route passes so far */
    const wf_action_t *last; /* the last action run (response_headers) */
    wf_share_state_t *share; /* static.c's state; NULL unless a share ran */
    void *app; /* the application endpoint's exchange (process/app_xchg.c),
                  released through wf_http_req_release(); NULL: none */

    void *proxy;   /* the proxy endpoint's state (http/proxy.c), released
                      through wf_http_req_release(); NULL: none */
    void *metrics; /* the "metrics" action's job (http/metrics.c), released
                      through wf_http_req_release(); NULL: none */

    void *proxy_h2; /* its stream to an h2 backend (http/proxy_h2.c),
                       released with proxy; NULL: none */
    /* Blocking work on a helper thread (static.c's open()+fstat()). */
    wf_job_t job;
    wf_req_job_cb job_done;

    char *uri;                /* decoded path; uri_inline or malloc'd */
    size_t uri_cap;           /* bytes r->uri can hold */
    char *target;             /* malloc'd target after a rewrite, or NULL */
    wf_sockaddr_t fwd_remote; /* the client named by "forwarded" */
    char *loc;                /* malloc'd Location text, or NULL */
    char *hbuf;               /* response head: hbuf_inline or malloc'd */
    char *host;               /* lowercased Host (rq.host points in here):
                                 host_inline or malloc'd */
    char uri_inline[WF_REQ_URI_INLINE];
    char host_inline[WF_REQ_HOST_INLINE];
    char hbuf_inline[WF_REQ_HEAD_INLINE];
};

/* Sends r->resp.  Called once per request by whatever handles it; the
 * transport takes over r and frees it when the response is out. */
void wf_req_respond(wf_req_t *r);

/* Answers status with Unit's small HTML error page.  Takes over r. */
void wf_req_respond_error(wf_req_t *r, unsigned status);

/* Runs work(&r->job) on a helper thread (it may only touch what r->share
 * holds), then calls done(r) on r's loop.  The transport keeps r alive until
 * then even if the client goes away; if it went away, done is not called and
 * destroying r releases what work() left (wf_http_req_release()).  An
 * unread request body is drained first; if that fails (400, 408, 413), the
 * job never runs and r is answered with the error. */
void wf_req_run_job(wf_req_t *r, wf_job_cb work, wf_req_job_cb done);

/* Sets up the calling thread's objects of every endpoint (at thread
 * start, on the thread's loop). */
void wf_http_thread_start(wf_loop_t *loop);

/* Frees the calling thread's objects of every endpoint (at thread exit). */
void wf_http_thread_exit(void);

/* Releases what endpoints keep for r (static.c's share state).  Called by
 * the mux when it destroys r; never calls back. */
void wf_http_req_release(wf_req_t *r);

/* Routes r from its listener's route and runs the action.  Takes over r. */
void wf_http_handle(wf_req_t *r);

/* Runs action a for r (also used for a share's fallback).  Takes over r. */
void wf_http_run_action(wf_req_t *r, const wf_action_t *a);

#endif
