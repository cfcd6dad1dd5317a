/* The balancing algorithms behind wf_upstream_pick(), one file each
 * (upstream_rr.c, upstream_lc.c, upstream_p2c.c, upstream_hash.c). */
#ifndef WF_HTTP_UPSTREAM_LB_H
#define WF_HTTP_UPSTREAM_LB_H

#include <stdbool.h>
#include <stdint.h>

#include "http/upstream.h"

typedef struct wf_upstream_lb {
    const char *name; /* the "balance" value */
    /* Chooses among the servers for which wf_upstream_usable() holds at
     * now; key: the request's wf_upstream_key().  NULL when none is.  Does
     * not take the server's active count. */
    wf_upstream_server_t *(*pick)(wf_upstream_t *u, uint64_t key, uint64_t now);
} wf_upstream_lb_t;

extern const wf_upstream_lb_t wf_upstream_lb_rr;
extern const wf_upstream_lb_t wf_upstream_lb_lc;
extern const wf_upstream_lb_t wf_upstream_lb_p2c;
extern const wf_upstream_lb_t wf_upstream_lb_hash;

/* May s take a request at now: a weight, up, below its max_conns? */
bool wf_upstream_usable(const wf_upstream_server_t *s, uint64_t now);

/* s's active connections (all threads). */
int32_t wf_upstream_active(const wf_upstream_server_t *s);

/* Is a's load (active / weight) below b's? */
bool wf_upstream_less_loaded(const wf_upstream_server_t *a,
                             const wf_upstream_server_t *b);

/* Smooth weighted round robin among the servers i for which
 * in[i] is true (Unit's algorithm); under u->lock.  NULL when none. */
wf_upstream_server_t *wf_upstream_rr_among(wf_upstream_t *u, const bool *in);

/* A thread-local pseudo-random 64-bit number (xorshift64*). */
uint64_t wf_upstream_random(void);

#endif
