/* The client side of an exchange: a multiplexer (h1 today, h2 later) that
 * turns a connection's bytes into exchanges and sends their responses.
 * Only the exchange layer (http/exchange.c) calls these operations; an
 * endpoint never includes this header.  See docs/internals/exchange.md. */
#ifndef WF_HTTP_MUX_H
#define WF_HTTP_MUX_H

#include "http/req.h"

/* ctl operations.  Named as HAProxy names them (MUX_CTL_*, MUX_ES_*, and
 * no wf_ prefix) on purpose: the proxy and reverse-HTTP code ported from
 * its model reads the same. */
typedef enum wf_mux_ctl {
    MUX_CTL_STATUS = 0,   /* returns MUX_STATUS_* bits */
    MUX_CTL_EXIT_STATUS,  /* returns the MUX_ES_* the connection ended with */
    MUX_CTL_GET_NBSTRM,   /* returns the exchanges in progress */
    MUX_CTL_GET_MAXSTRM,  /* returns the exchanges allowed at once */
    MUX_CTL_REVERSE_CONN, /* 1 once a reverse connection was reversed (the
                             peer's first SETTINGS came), else 0 */
    MUX_CTL_TUNNEL,       /* arg: the request (wf_req_t *).  Marks it for a
                             two-way byte tunnel once its response head
                             (a 101) is out; WF_OK, or WF_DECLINED when the
                             mux cannot carry one.  wf_xchg_tunnel_start()
                             uses it. */
    MUX_CTL_NOPS          /* must stay last */
} wf_mux_ctl_t;

#define MUX_STATUS_READY 0x1 /* may start an exchange now */

typedef enum wf_mux_exit_status {
    MUX_ES_UNKNOWN = 0,  /* still running, or ended without a verdict */
    MUX_ES_SUCCESS,      /* ended between exchanges */
    MUX_ES_INVALID_ERR,  /* the peer sent what does not parse (400, 413) */
    MUX_ES_TOUT_ERR,     /* a timeout (408) */
    MUX_ES_NOTIMPL_ERR,  /* a feature we do not implement (501) */
    MUX_ES_INTERNAL_ERR, /* our fault (5xx, out of memory) */
    MUX_ES_IO_ERR,       /* the socket failed or the peer went away */
} wf_mux_exit_status_t;

struct wf_mux_ops {
    const char *name;

    /* r->resp is final: send its head, then its simple body (memory or
     * file) or, with r->resp.stream, what the endpoint writes to
     * r->resp_body.  Takes over r unless streaming (then r is shared
     * until the response channel ends). */
    void (*respond)(wf_req_t *r);

    /* The endpoint reads the request body: deliver it to r->req_body
     * (100 Continue first if the client waits for it). */
    void (*body_start)(wf_req_t *r);

    /* r->job is filled: submit it to the helper pool when the mux may
     * (after the request body was drained) and keep r alive until its
     * done task ran. */
    void (*job_start)(wf_req_t *r);

    /* One of MUX_CTL_*; returns its value, or WF_DECLINED when the mux
     * has no such operation.  Never calls back. */
    int (*ctl)(wf_mux_t *m, wf_mux_ctl_t op, void *arg);
};

#endif
