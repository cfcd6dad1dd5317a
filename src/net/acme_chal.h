/* The ACME challenges the router answers (docs/internals/acme.md): the
 * HTTP-01 key authorizations by token (http/handle.c, before routes, on
 * every listener) and the TLS-ALPN-01 certificates by domain (net/tls.c's
 * ALPN callback, on TLS listeners).  The controller hands the whole set
 * at once (WF_MSG_ACME_TOKENS); lookups take a lock only while a set is
 * installed, so with none the cost is one atomic load. */
#ifndef WF_NET_ACME_CHAL_H
#define WF_NET_ACME_CHAL_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define WF_ACME_CHAL_PREFIX "/.well-known/acme-challenge/"
#define WF_ACME_TLS_ALPN    "acme-tls/1"

/* How many challenges are installed; read with wf_acme_chal_any(). */
extern atomic_uint wf_acme_chal_count;

static inline bool
wf_acme_chal_any(void)
{
    return atomic_load_explicit(&wf_acme_chal_count, memory_order_relaxed) != 0;
}

/* Replaces the set with text[0..len), JSON {"http": {TOKEN: KEYAUTH},
 * "alpn": {DOMAIN: PEM bundle}} (either may be absent; {} empties it).
 * Parses the bundles: not for an I/O thread.  Returns WF_OK, or WF_ERROR
 * when text is malformed (the old set stays).  Any thread. */
int wf_acme_chal_set(const char *text, size_t len);

/* The key authorization of token[0..len): a new string to free(), or
 * NULL when no such challenge is pending.  Any thread. */
char *wf_acme_chal_http(const char *token, size_t len);

/* RFC 8737 3: when the client offered only "acme-tls/1" (in, inlen: the
 * ALPN list) for a pending domain (the SNI), sets ssl's certificate and
 * key to the challenge's and returns true (the caller selects the
 * protocol); else false.  Runs in the handshake. */
bool wf_acme_chal_alpn(SSL *ssl, const unsigned char *in, unsigned inlen);

/* Drops the set (at exit). */
void wf_acme_chal_clear(void);

#endif
