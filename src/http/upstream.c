#include "http/upstream.h"

#include <math.h>
#include <string.h>

void
wf_upstream_init(wf_upstream_t *u)
{
    pthread_mutex_init(&u->lock, NULL);
    u->connect_ms = WF_UPSTREAM_CONNECT_MS;
    u->head_ms = WF_UPSTREAM_HEAD_MS;
    u->send_ms = WF_UPSTREAM_SEND_MS;
    u->read_ms = WF_UPSTREAM_READ_MS;
    u->idle_ms = WF_UPSTREAM_IDLE_MS;
}

void
wf_upstream_weights(wf_upstream_t *u, const double *w)
{
    double total = 0.0;
    double k;

    for (size_t i = 0; i < u->nservers; i++) {
        total += w[i];
    }
    /* The sum of the scaled weights stays below INT32_MAX, so that
     * wf_upstream_pick() cannot overflow. */
    k = total == 0.0 ? 0.0 : (INT32_MAX / 2) / total;
    if (isinf(k)) {
        k = 1.0;
    }
    for (size_t i = 0; i < u->nservers; i++) {
        double s = k * w[i];
        int32_t wt = s > 1.0 || s == 0.0 ? (int32_t)(s + 0.5)
                                         : 1; /* round() without libm */

        u->servers[i].weight = wt;
        u->servers[i].effective = wt;
        u->servers[i].current = 0;
    }
}

const wf_upstream_server_t *
wf_upstream_pick(wf_upstream_t *u)
{
    wf_upstream_server_t *best = NULL;
    int32_t total = 0;

    pthread_mutex_lock(&u->lock);
    for (size_t i = 0; i < u->nservers; i++) {
        wf_upstream_server_t *s = &u->servers[i];

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

wf_upstream_t *
wf_upstream_find(wf_upstream_t *ups, size_t n, wf_str_t name)
{
    for (size_t i = 0; i < n; i++) {
        if (name.len > 0 && strlen(ups[i].name) == name.len
            && memcmp(ups[i].name, name.data, name.len) == 0) {
            return &ups[i];
        }
    }
    return NULL;
}
