/* OCSP stapling for a listener's certificates (tls "ocsp_stapling"): the
 * response for each leaf whose certificate names an OCSP responder (AIA)
 * and whose issuer is in its chain is fetched by one thread of its own
 * ("the refresher", never an I/O thread), checked, kept, stapled by the
 * status callback, and fetched again before its nextUpdate.  See
 * docs/internals/tls.md. */
#ifndef WF_NET_TLS_OCSP_H
#define WF_NET_TLS_OCSP_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <time.h>

/* Staples for ctx (its certificate and chain set): when the leaf has an
 * OCSP URL (http://) and its issuer is the chain's next certificate, ctx
 * gets a status callback and an entry (its ex_data, freed with ctx).
 * Nothing is fetched until a client asks for a status (as nginx does), so
 * contexts built only to validate a config never reach the network.  name
 * is the certificate's, for the log.  Returns true when ctx staples. */
bool wf_tls_ocsp_attach(SSL_CTX *ctx, const char *name);

/* When to fetch next (seconds since the epoch): after a good response
 * (failures == 0) halfway to next_update (0: none, then an hour), at most
 * an hour and at least 5 s away; after failures failed fetches in a row,
 * 2 s doubled per failure, at most 5 minutes. */
time_t wf_tls_ocsp_next(time_t now, time_t next_update, unsigned failures);

#endif
