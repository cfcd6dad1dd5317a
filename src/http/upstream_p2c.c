/* Power of two random choices: two distinct usable servers drawn at
 * random in proportion to their weights; the less loaded one (active
 * connections per unit of weight) wins.  No lock: weights are
 * immutable and the counts are atomic. */
#include "http/upstream_lb.h"

/* A usable server drawn by weight, other than not (may be NULL). */
static wf_upstream_server_t *
p2c_draw(wf_upstream_t *u, uint64_t now, const wf_upstream_server_t * not )
{
    uint64_t total = 0;
    uint64_t x;

    for (size_t i = 0; i < u->nservers; i++) {
        const wf_upstream_server_t *s = &u->servers[i];

        if (s != not &&wf_upstream_usable(s, now)) {
            total += (uint64_t)s->weight;
        }
    }
    if (total == 0) {
        return NULL;
    }
    x = wf_upstream_random() % total;
    for (size_t i = 0; i < u->nservers; i++) {
        wf_upstream_server_t *s = &u->servers[i];

        if (s == not || !wf_upstream_usable(s, now)) {
            continue;
        }
        if (x < (uint64_t)s->weight) {
            return s;
        }
        x -= (uint64_t)s->weight;
    }
    return NULL; /* one went down meanwhile */
}

static wf_upstream_server_t *
p2c_pick(wf_upstream_t *u, uint64_t key, uint64_t now)
{
    wf_upstream_server_t *a = p2c_draw(u, now, NULL);
    wf_upstream_server_t *b;

    (void)key;
    if (a == NULL) {
        return NULL;
    }
    b = p2c_draw(u, now, a);
    return b != NULL && wf_upstream_less_loaded(b, a) ? b : a;
}

const wf_upstream_lb_t wf_upstream_lb_p2c = {"random_two", p2c_pick};
