/* Smooth weighted round robin (Unit's default, and nginx's): each pick
 * adds every candidate's weight to its current weight, takes the highest
 * and subtracts the candidates' total from it.  A server that is down or
 * full is no candidate and its state does not move, so with every server
 * usable the sequence is Unit's. */
#include "http/upstream_lb.h"

#include <stdlib.h>

wf_upstream_server_t *
wf_upstream_rr_among(wf_upstream_t *u, const bool *in)
{
    wf_upstream_server_t *best = NULL;
    int32_t total = 0;

    pthread_mutex_lock(&u->lock);
    for (size_t i = 0; i < u->nservers; i++) {
        wf_upstream_server_t *s = &u->servers[i];

        if (!in[i]) {
            continue;
        }
        s->current += s->effective;
        total += s->effective;
        if (s->effective < s->weight) {
            s->effective++;
        }
        if (best == NULL || s->current > best->current) {
            best = s;
        }
    }
    if (best != NULL && total != 0) {
        best->current -= total;
    } else {
        best = NULL;
    }
    pthread_mutex_unlock(&u->lock);
    return best;
}

static wf_upstream_server_t *
rr_pick(wf_upstream_t *u, uint64_t key, uint64_t now)
{
    bool one[1] = {false};
    bool *in = u->nservers <= 1 ? one : malloc(u->nservers * sizeof(bool));
    wf_upstream_server_t *s;

    (void)key;
    if (in == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < u->nservers; i++) {
        in[i] = wf_upstream_usable(&u->servers[i], now);
    }
    s = wf_upstream_rr_among(u, in);
    if (in != one) {
        free(in);
    }
    return s;
}

const wf_upstream_lb_t wf_upstream_lb_rr = {"round_robin", rr_pick};
