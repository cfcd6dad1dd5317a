/* One RFC 8555 issue, start to end, blocking, on the ACME thread: the
 * directory, a nonce, the account (newAccount, found again by its key),
 * newOrder, each authorization's challenge (HTTP-01 or TLS-ALPN-01,
 * answered by the router once handed the token set), polling bounded by
 * Retry-After and a limit, finalize with a CSR, and the chain as PEM.
 * badNonce answers are retried with the nonce they carry.  See
 * docs/internals/acme.md. */
#ifndef WF_CONTROL_ACME_CLIENT_H
#define WF_CONTROL_ACME_CLIENT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <time.h>

#define WF_ACME_POLL_MAX      60 /* polls of one authorization or order */
#define WF_ACME_NONCE_RETRIES 5  /* badNonce retries of one request */

typedef struct wf_acme_order wf_acme_order_t;

struct wf_acme_order {
    /* in */
    const json_t *conf;    /* the entry's validated "acme" object */
    const char *ca_pem;    /* trusted for the directory's TLS */
    EVP_PKEY *account_key; /* a P-256 key; borrowed */
    char *account_url;     /* owned; NULL: found or created, then set */
    /* Hands the router the challenges to answer (tokens: JSON text as
     * WF_ACME_CALL_TOKENS; "{}" withdraws them); WF_OK once it has them. */
    int (*challenges)(wf_acme_order_t *o, const char *tokens);
    /* Waits ms; false when the thread is stopping. */
    bool (*sleep)(wf_acme_order_t *o, unsigned ms);
    void *data; /* the caller's */
    /* out */
    char *bundle;     /* owned; the new key and the chain, as PEM */
    time_t not_after; /* the leaf's */
};

/* Runs one issue for o.  Returns WF_OK with o->bundle and o->not_after
 * set, or WF_ERROR with a sentence in why (what failed: the step, the
 * server's problem type and detail).  The challenges handed to the
 * router are withdrawn before it returns.  Blocks. */
int wf_acme_order_run(wf_acme_order_t *o, char *why, size_t whysize);

/* The notAfter of the first certificate in pem, or 0. */
time_t wf_acme_pem_not_after(const char *pem);

#endif
