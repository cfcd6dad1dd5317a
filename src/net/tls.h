/* TLS for client connections with OpenSSL 3: a listener's contexts (one
 * SSL_CTX per certificate, SNI picking among them as Unit does) and the
 * transport ops (net/xprt.h) a connection uses once it accepted.  See
 * docs/internals/tls.md. */
#ifndef WF_NET_TLS_H
#define WF_NET_TLS_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "net/xprt.h"

#define WF_TLS_CHAIN_MAX 32 /* certificates in one bundle */

/* A PEM bundle read: the key and the chain, leaf first.  Owns them. */
typedef struct wf_tls_bundle {
    EVP_PKEY *key;
    X509 *chain[WF_TLS_CHAIN_MAX];
    size_t count;
} wf_tls_bundle_t;

/* Reads pem[0..len) (at most INT_MAX bytes) into b (zeroed by the caller):
 * the PEM blocks as Unit's nxt_cert_bio() reads them (private keys in
 * PKCS#1, SEC1 or unencrypted PKCS#8 form, certificates, "EC PARAMETERS"
 * skipped), then the checks: exactly one key, at least one certificate,
 * the key matching the first, each next certificate the issuer of the one
 * before.  Returns WF_OK, or WF_ERROR with a sentence in why (not logged;
 * b is then empty).  Clears the OpenSSL error queue.  Thread-safe. */
int wf_tls_bundle_read(wf_tls_bundle_t *b, const char *pem, size_t len,
                       char *why, size_t whysize);

/* Frees b's key and certificates; b is empty afterwards. */
void wf_tls_bundle_fini(wf_tls_bundle_t *b);

/* A listener's TLS: its certificates' contexts and the SNI table.  Lives in
 * a config snapshot; each SSL holds a reference on its SSL_CTX, so a
 * connection outlives the snapshot that accepted it. */
typedef struct wf_tls_srv wf_tls_srv_t;

/* Builds the contexts of a listener's "tls" object, validated by
 * control/conf_tls.c (certificate: a name or a non-empty array of names,
 * each in pems; conf_commands: an object of strings; session: cache_size
 * >= 0, timeout > 0, tickets a boolean or Base64 keys of 48 or 80 bytes,
 * the last of an array encrypting, every one decrypting).  pems (borrowed) maps
 * each certificate name to its PEM bundle.  Returns a new object, or NULL with
 * a sentence in why (a bundle that does not load, a command SSL_CONF_cmd()
 * refuses).  Parses keys and certificates: not for an I/O thread. */
wf_tls_srv_t *wf_tls_srv_create(const json_t *tls, const json_t *pems,
                                char *why, size_t whysize);

/* Frees t (accepts NULL).  Connections it accepted keep working. */
void wf_tls_srv_destroy(wf_tls_srv_t *t);

/* Starts the server side of TLS on fd for x (x must be plain).  t must
 * outlive the handshake.  Returns WF_OK or WF_ERROR (out of memory). */
int wf_tls_open(wf_xprt_t *x, wf_tls_srv_t *t, int fd);

/* Advances x's handshake.  Returns WF_OK once done, WF_AGAIN with *events
 * set to what to poll for (EPOLLIN or EPOLLOUT), or WF_ERROR (the client
 * failed it or went away; logged at info level as Unit logs it). */
int wf_tls_handshake(wf_xprt_t *x, uint32_t *events);

/* The index (in "certificate" order) of the certificate SNI picks for
 * servername (NULL: none sent), as Unit picks it: the leaf's DNS alt names
 * (else its common name), lower-cased; an exact name first, then "*.b.c"
 * for "a.b.c"; a name two certificates share goes to the first; no match:
 * 0, the default. */
size_t wf_tls_srv_pick(const wf_tls_srv_t *t, const char *servername);

#endif
