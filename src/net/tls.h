/* TLS for client connections with OpenSSL 3: a listener's contexts (one
 * SSL_CTX per certificate, SNI picking among them as Unit does) and the
 * transport ops (net/xprt.h) a connection uses once it accepted.  See
 * docs/internals/tls.md. */
#ifndef WF_NET_TLS_H
#define WF_NET_TLS_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"
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

/* As wf_tls_bundle_read(), but a bundle without a key is accepted too: a
 * CA bundle (certificates in any order, for client verification only).
 * A bundle with a key gets wf_tls_bundle_read()'s checks and messages. */
int wf_tls_bundle_read_any(wf_tls_bundle_t *b, const char *pem, size_t len,
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
 * the last of an array encrypting, every one decrypting; client_certificate:
 * an object with "mode" a wf_tls_verify_mode() name, "ca" a name or an
 * array of names, "depth" 0..100).  pems (borrowed) maps each certificate
 * and CA name to its PEM bundle.  Returns a new object, or NULL with
 * a sentence in why (a bundle that does not load, a command SSL_CONF_cmd()
 * refuses).  Parses keys and certificates: not for an I/O thread. */
wf_tls_srv_t *wf_tls_srv_create(const json_t *tls, const json_t *pems,
                                char *why, size_t whysize);

/* Client certificate modes ("client_certificate": {"mode": ...}). */
typedef enum wf_tls_verify {
    WF_TLS_VERIFY_OFF = 0,
    WF_TLS_VERIFY_REQUIRED,          /* a valid one, or the handshake fails */
    WF_TLS_VERIFY_OPTIONAL,          /* none, or a valid one */
    WF_TLS_VERIFY_OPTIONAL_NO_VERIFY /* any or none; the result is only told
                                        ($tls_client_verify) */
} wf_tls_verify_t;

/* The mode called name ("required", "optional", "optional_no_verify"), or
 * WF_TLS_VERIFY_OFF when there is none of that name. */
wf_tls_verify_t wf_tls_verify_mode(const char *name);

/* Frees t (accepts NULL).  Connections it accepted keep working. */
void wf_tls_srv_destroy(wf_tls_srv_t *t);

/* Starts the server side of TLS on fd for x (x must be plain).  t must
 * outlive the handshake.  Returns WF_OK or WF_ERROR (out of memory). */
int wf_tls_open(wf_xprt_t *x, wf_tls_srv_t *t, int fd);

/* Advances x's handshake.  Returns WF_OK once done, WF_AGAIN with *events
 * set to what to poll for (EPOLLIN or EPOLLOUT), or WF_ERROR (the client
 * failed it or went away; logged at info level as Unit logs it). */
int wf_tls_handshake(wf_xprt_t *x, uint32_t *events);

/* Whether the handshake of x selected "h2" by ALPN (then the connection
 * speaks HTTP/2: http/h2_conn.c). */
bool wf_tls_alpn_h2(const wf_xprt_t *x);

/* The index (in "certificate" order) of the certificate SNI picks for
 * servername (NULL: none sent), as Unit picks it: the leaf's DNS alt names
 * (else its common name), lower-cased; an exact name first, then "*.b.c"
 * for "a.b.c"; a name two certificates share goes to the first; no match:
 * 0, the default. */
size_t wf_tls_srv_pick(const wf_tls_srv_t *t, const char *servername);

/* The transport calls both sides of TLS share: listeners' connections here,
 * backends' in net/tls_client.c (x->tls an SSL).
 * wf_tls_xprt_error(): what an SSL call that failed with rc means, as a
 * socket call's result: -1 with errno EAGAIN when it would block (wants
 * read or write), 0 for the peer's close_notify or EOF, else -1 with errno
 * (ECONNRESET for a protocol error); OpenSSL's error queue is cleared.
 * wf_tls_xprt_sendmsg(): msg's iovecs encrypted and written, one record at
 * a time and at most 256 KiB a call (fairness between connections), as
 * sendmsg() does: the bytes written, or -1 with errno (EAGAIN: none could
 * be; EPIPE: the peer closed).  A retry after EAGAIN must offer the same
 * bytes again (SSL_write()'s rule). */
ssize_t wf_tls_xprt_error(wf_xprt_t *x, int rc);
ssize_t wf_tls_xprt_sendmsg(wf_xprt_t *x, const struct msghdr *msg);

/* What a TLS connection tells its requests (Wharf's $tls_* variables). */
typedef enum wf_tls_var {
    WF_TLS_VAR_PROTOCOL = 0,       /* "TLSv1.3" */
    WF_TLS_VAR_CIPHER,             /* "TLS_AES_256_GCM_SHA384" */
    WF_TLS_VAR_SNI,                /* the server name the client sent */
    WF_TLS_VAR_CLIENT_VERIFY,      /* "SUCCESS", "FAILED:reason", "NONE" */
    WF_TLS_VAR_CLIENT_VERIFIED,    /* "true" when SUCCESS, else "false" */
    WF_TLS_VAR_CLIENT_SUBJECT,     /* RFC 2253, as nginx's $ssl_client_s_dn */
    WF_TLS_VAR_CLIENT_ISSUER,      /* RFC 2253 */
    WF_TLS_VAR_CLIENT_SERIAL,      /* hex, upper case */
    WF_TLS_VAR_CLIENT_FINGERPRINT, /* SHA-256 of the DER, lower-case hex */
    WF_TLS_VAR_CLIENT_CN,          /* the subject's (first) common name, UTF-8:
                                      reverse HTTP's tunnel names */
    WF_TLS_VAR_N
} wf_tls_var_t;

/* Sets *v to the value of var for x's connection (borrowed from x, valid
 * while x is open) and returns true; false when it has none: a plain
 * connection, no SNI sent, no client certificate (the client_* values;
 * CLIENT_VERIFY and CLIENT_VERIFIED exist wherever the listener asks for
 * client certificates).  The client's facts are read once, when the
 * handshake ends, and only on listeners with "client_certificate". */
bool wf_tls_var_get(const wf_xprt_t *x, wf_tls_var_t var, wf_str_t *v);

#endif
