/* Least connections: the usable server with the fewest active
 * connections (all threads) per unit of weight; ties go by smooth
 * weighted round robin, so that servers that are all idle still share
 * requests by weight. */
#include "http/upstream_lb.h"

#include <stdlib.h>

static wf_upstream_server_t *
lc_pick(wf_upstream_t *u, uint64_t key, uint64_t now)
{
    bool one[1] = {false};
    bool *in = u->nservers <= 1 ? one : malloc(u->nservers * sizeof(bool));
    wf_upstream_server_t *best = NULL;
    wf_upstream_server_t *s;

    (void)key;
    if (in == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < u->nservers; i++) {
        s = &u->servers[i];
        in[i] = wf_upstream_usable(s, now);
        if (in[i] && (best == NULL || wf_upstream_less_loaded(s, best))) {
            best = s;
        }
    }
    for (size_t i = 0; best != NULL && i < u->nservers; i++) {
        s = &u->servers[i];
        /* Keep only the servers as loaded as the best one. */
        in[i] = in[i] && !wf_upstream_less_loaded(best, s);
    }
    s = best != NULL ? wf_upstream_rr_among(u, in) : NULL;
    if (in != one) {
        free(in);
    }
    return s;
}

const wf_upstream_lb_t wf_upstream_lb_lc = {"least_conn", lc_pick};
