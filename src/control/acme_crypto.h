/* The cryptography of an ACME client (RFC 8555, RFC 8737) on OpenSSL 3:
 * keys, the account's JWK and thumbprint, JWS ES256 requests, the CSR of
 * an order, and the self-signed certificates Wharf serves before a
 * certificate is issued and to answer TLS-ALPN-01.  No I/O; every
 * function is thread-safe and clears the OpenSSL error queue it fills.
 * See docs/internals/acme.md. */
#ifndef WF_CONTROL_ACME_CRYPTO_H
#define WF_CONTROL_ACME_CRYPTO_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>

typedef enum wf_acme_key_type {
    WF_ACME_KEY_P256 = 0, /* "ecdsa-p256" (and every account key) */
    WF_ACME_KEY_RSA2048,  /* "rsa-2048" */
} wf_acme_key_type_t;

/* base64url without padding (RFC 7515 2) of d[0..n): a new string to
 * free(), or NULL when out of memory. */
char *wf_acme_b64url(const unsigned char *d, size_t n);

/* A new key of type t, or NULL (logged). */
EVP_PKEY *wf_acme_key_create(wf_acme_key_type_t t);

/* k as an unencrypted PKCS#8 PEM block: a new string to free(), or NULL. */
char *wf_acme_key_pem(EVP_PKEY *k);

/* The first private key in pem (NUL-terminated), or NULL. */
EVP_PKEY *wf_acme_key_read(const char *pem);

/* The base64url SHA-256 of k's JWK (RFC 7638), k a P-256 key: a new
 * string to free(), or NULL. */
char *wf_acme_thumbprint(EVP_PKEY *k);

/* A flattened JWS (RFC 7515 7.2.2, RFC 8555 6.2) signed with k (a P-256
 * key, ES256): the protected header carries "jwk" when kid is NULL, else
 * "kid"; payload NULL is the empty payload of a POST-as-GET.  A new JSON
 * text to free(), or NULL. */
char *wf_acme_jws(EVP_PKEY *k, const char *kid, const char *nonce,
                  const char *url, const char *payload);

/* The base64url DER of a CSR signed by k (SHA-256) for domains (a
 * non-empty array of strings: the first is the subject's CN, every one a
 * DNS alt name): a new string to free(), or NULL. */
char *wf_acme_csr(EVP_PKEY *k, const json_t *domains);

/* A PEM bundle (k's key, then a self-signed certificate for domains,
 * valid for days days) as the certificate store takes it.  With keyauth
 * not NULL, the certificate also carries RFC 8737's critical
 * acmeIdentifier extension: the SHA-256 of keyauth.  A new string to
 * free(), or NULL. */
char *wf_acme_self_signed(EVP_PKEY *k, const json_t *domains,
                          const char *keyauth, int days);

#endif
