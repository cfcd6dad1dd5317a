/* Consistent hashing on a template ("hash_key"): weighted rendezvous
 * (highest random weight) hashing.  Each server scores
 * weight / -ln(h(key, server)) with h uniform in (0, 1); the highest
 * wins.  When a server leaves (removed, down, full), only the keys it won
 * move, each to its next best server; the others keep theirs.  O(n) per
 * pick, no state, no lock. */
#include "http/upstream_lb.h"

#include <math.h>

/* splitmix64's finaliser: a bijective 64-bit mix. */
static uint64_t
hash_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static double
hash_score(const wf_upstream_server_t *s, uint64_t key)
{
    uint64_t h = hash_mix(key ^ hash_mix(s->hash));
    /* 53 bits into (0, 1): never 0 nor 1, so the log is finite and < 0. */
    double x = ((double)(h >> 11) + 0.5) * 0x1p-53;

    return (double)s->weight / -log(x);
}

static wf_upstream_server_t *
hash_pick(wf_upstream_t *u, uint64_t key, uint64_t now)
{
    wf_upstream_server_t *best = NULL;
    double best_score = 0.0;

    for (size_t i = 0; i < u->nservers; i++) {
        wf_upstream_server_t *s = &u->servers[i];
        double score;

        if (!wf_upstream_usable(s, now)) {
            continue;
        }
        score = hash_score(s, key);
        if (best == NULL || score > best_score) {
            best = s;
            best_score = score;
        }
    }
    return best;
}

const wf_upstream_lb_t wf_upstream_lb_hash = {"hash", hash_pick};
