/* libFuzzer target for route patterns and templates: the input is a JSON
 * "match" object (or a pattern) and, after the first NUL, bytes used as the
 * request's host, uri, query, a header and a cookie.  Compiling anything
 * and matching anything must never crash, leak or read out of bounds. */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "http/route.h"
#include "http/tpl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_request(wf_route_req_t *rq, wf_h1_head_t *h, wf_sockaddr_t *sa,
             const char *s, size_t n)
{
    size_t third = n / 3;

    memset(h, 0, sizeof(*h));
    memset(rq, 0, sizeof(*rq));
    memset(sa, 0, sizeof(*sa));
    h->method = wf_string("GET");
    h->target = wf_str_make(s, n);
    h->query = wf_str_make(s + third, third);
    h->version = 11;
    h->nheaders = 3;
    h->headers[0] = (wf_h1_header_t){wf_string("Cookie"), wf_str_make(s, n)};
    h->headers[1] =
        (wf_h1_header_t){wf_string("X-A"), wf_str_make(s + third, n - third)};
    h->headers[2] =
        (wf_h1_header_t){wf_string("Cookie"), wf_str_make(s, third)};
    sa->sin.sin_family = n % 3 == 0 ? AF_INET : n % 3 == 1 ? AF_INET6 : AF_UNIX;
    if (n >= 16) {
        memcpy(&sa->sin6.sin6_addr, s, 16);
    }
    rq->method = wf_string("GET");
    rq->host = wf_str_make(s, third);
    rq->uri = wf_str_make(s + 2 * third, n - 2 * third);
    rq->head = h;
    rq->remote = sa;
    rq->local = sa;
    rq->tls = n % 2 == 1;
}

static void
fuzz_route(wf_arena_t *a, json_t *m, const wf_route_req_t *rq)
{
    static const wf_action_t act = {.type = WF_ACTION_RETURN, .status = 204};
    wf_route_t *r = wf_route_create(a, "fuzz");
    char err[512];

    if (r == NULL) {
        return;
    }
    /* Twice, so that the index has two steps with the same keys. */
    for (int i = 0; i < 2; i++) {
        if (wf_route_add_step(r, a, m, &act, err, sizeof(err)) != WF_OK) {
            return;
        }
    }
    (void)wf_route_match(r, rq);
}

static void
fuzz_patterns(wf_arena_t *a, json_t *m, const wf_route_req_t *rq)
{
    char err[512];
    wf_pattern_set_t *ps = wf_pattern_set_compile(a, m, false, err, 512);

    if (ps != NULL) {
        (void)wf_pattern_set_match(ps, rq->uri);
        (void)wf_pattern_set_match(ps, rq->host);
    }
}

static void
fuzz_tpl(wf_arena_t *a, const char *s, size_t n, const wf_route_req_t *rq)
{
    char err[512];
    char out[64];
    wf_tpl_t *t = wf_tpl_compile(a, s, n, err, sizeof(err));

    if (t != NULL) {
        /* Lengths do not depend on the buffer ($request_id and the clock
         * variables have fixed widths). */
        if (wf_tpl_render(t, rq, out, sizeof(out))
            != wf_tpl_render(t, rq, NULL, 0)) {
            abort();
        }
        (void)wf_tpl_is_true(t, rq);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t jn = nul != NULL ? (size_t)(nul - s) : size;
    const char *rest = nul != NULL ? nul + 1 : s + size;
    size_t rn = size - jn - (nul != NULL);
    wf_arena_t *a = wf_arena_create(4096);
    static wf_h1_head_t h;
    wf_route_req_t rq;
    wf_sockaddr_t sa;
    json_t *m;

    if (a == NULL) {
        return 0;
    }
    fuzz_request(&rq, &h, &sa, rest, rn);
    m = json_loadb(s, jn, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (m != NULL) {
        fuzz_route(a, m, &rq);
        fuzz_patterns(a, m, &rq);
        json_decref(m);
    }
    fuzz_tpl(a, s, jn, &rq);
    wf_arena_destroy(a);
    return 0;
}
