/* A listener's "forwarded" object (and its older "client_ip" form): which
 * peers are trusted proxies, and the fields that carry the client's address
 * (X-Forwarded-For notation) and scheme (X-Forwarded-Proto notation). */
#ifndef WF_HTTP_FORWARDED_H
#define WF_HTTP_FORWARDED_H

#include <stdbool.h>
#include <sys/socket.h>

#include "core/str.h"
#include "http/h1_parse.h"
#include "http/route.h"

struct wf_addr_set;

struct wf_forwarded {
    struct sockaddr_storage addr; /* the listener it belongs to */
    const struct wf_addr_set *source;
    wf_str_t client_ip; /* field name; len 0: none */
    wf_str_t protocol;  /* field name; len 0: none */
    bool recursive;
};

typedef struct wf_forwarded wf_forwarded_t;

/* What a forwarded object makes of one request. */
typedef struct wf_forwarded_result {
    bool has_remote;      /* remote is set */
    wf_sockaddr_t remote; /* the client's address (port 0) */
    bool has_scheme;      /* tls is set */
    bool tls;             /* https */
} wf_forwarded_result_t;

/* Applies f to head h of a request that came from peer, as Unit does:
 * nothing unless peer matches f->source; then the rightmost address of the
 * last client_ip field (recursive: fields from last to first, each right to
 * left, up to the first untrusted address), and the last protocol field
 * ("http", "https" or "on", caseless).  Never allocates. */
void wf_forwarded_apply(const wf_forwarded_t *f, const wf_h1_head_t *h,
                        const wf_sockaddr_t *peer, wf_forwarded_result_t *out);

/* Parses one address of an X-Forwarded-For list ("192.0.2.1",
 * "2001:db8::1", "[2001:db8::1]", optionally with ":port").  Returns false
 * when s is not one. */
bool wf_forwarded_addr_parse(wf_str_t s, wf_sockaddr_t *sa);

#endif
