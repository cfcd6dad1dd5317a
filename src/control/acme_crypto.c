#include "control/acme_crypto.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"

#define ACME_P256_LEN 32 /* bytes of a P-256 coordinate, and of r and s */

char *
wf_acme_b64url(const unsigned char *d, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5);
    char *p = out;
    size_t i = 0;

    if (out == NULL) {
        return NULL;
    }
    for (; i + 2 < n; i += 3) {
        *p++ = tab[d[i] >> 2];
        *p++ = tab[((d[i] & 3) << 4) | (d[i + 1] >> 4)];
        *p++ = tab[((d[i + 1] & 15) << 2) | (d[i + 2] >> 6)];
        *p++ = tab[d[i + 2] & 63];
    }
    if (i < n) {
        *p++ = tab[d[i] >> 2];
        if (i + 1 < n) {
            *p++ = tab[((d[i] & 3) << 4) | (d[i + 1] >> 4)];
            *p++ = tab[(d[i + 1] & 15) << 2];
        } else {
            *p++ = tab[(d[i] & 3) << 4];
        }
    }
    *p = '\0';
    return out;
}

static char *
acme_b64url_str(const char *s)
{
    return wf_acme_b64url((const unsigned char *)s, strlen(s));
}

EVP_PKEY *
wf_acme_key_create(wf_acme_key_type_t t)
{
    EVP_PKEY *k = t == WF_ACME_KEY_RSA2048
                      ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                      : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    if (k == NULL) {
        wf_log_error(0, "acme: key generation failed");
        ERR_clear_error();
    }
    return k;
}

/* The contents of a memory BIO as a new NUL-terminated string. */
static char *
acme_bio_text(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;

    if (s != NULL) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
    return s;
}

char *
wf_acme_key_pem(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s = NULL;

    if (bio != NULL
        && PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) == 1) {
        s = acme_bio_text(bio);
    }
    BIO_free(bio);
    ERR_clear_error();
    return s;
}

EVP_PKEY *
wf_acme_key_read(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = NULL;

    if (bio != NULL) {
        k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    }
    BIO_free(bio);
    ERR_clear_error();
    return k;
}

/* The base64url x and y of a P-256 key. */
static int
acme_ec_xy(EVP_PKEY *k, char **x, char **y)
{
    unsigned char bx[ACME_P256_LEN];
    unsigned char by[ACME_P256_LEN];
    BIGNUM *nx = NULL;
    BIGNUM *ny = NULL;
    int rc = WF_ERROR;

    *x = NULL;
    *y = NULL;
    if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &nx) == 1
        && EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &ny) == 1
        && BN_bn2binpad(nx, bx, sizeof(bx)) == ACME_P256_LEN
        && BN_bn2binpad(ny, by, sizeof(by)) == ACME_P256_LEN) {
        *x = wf_acme_b64url(bx, sizeof(bx));
        *y = wf_acme_b64url(by, sizeof(by));
        rc = *x != NULL && *y != NULL ? WF_OK : WF_ERROR;
    }
    if (rc != WF_OK) {
        free(*x);
        free(*y);
        *x = NULL;
        *y = NULL;
    }
    BN_free(nx);
    BN_free(ny);
    ERR_clear_error();
    return rc;
}

/* RFC 7638's form: the members in lexicographic order, no whitespace. */
static char *
acme_jwk_text(EVP_PKEY *k)
{
    char *x;
    char *y;
    char *s;
    int n;

    if (acme_ec_xy(k, &x, &y) != WF_OK) {
        return NULL;
    }
    n = snprintf(NULL, 0,
                 "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\","
                 "\"y\":\"%s\"}",
                 x, y);
    s = malloc((size_t)n + 1);
    if (s != NULL) {
        snprintf(s, (size_t)n + 1,
                 "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
                 x, y);
    }
    free(x);
    free(y);
    return s;
}

char *
wf_acme_thumbprint(EVP_PKEY *k)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    char *jwk = acme_jwk_text(k);

    if (jwk == NULL) {
        return NULL;
    }
    SHA256((const unsigned char *)jwk, strlen(jwk), md);
    free(jwk);
    return wf_acme_b64url(md, sizeof(md));
}

/* ES256 over in: the JWS form of the signature, r || s (RFC 7518 3.4). */
static char *
acme_es256(EVP_PKEY *k, const char *in)
{
    unsigned char der[128];
    unsigned char rs[2 * ACME_P256_LEN];
    size_t n = sizeof(der);
    const unsigned char *p = der;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ECDSA_SIG *sig = NULL;
    char *out = NULL;

    if (md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) == 1
        && EVP_DigestSign(md, der, &n, (const unsigned char *)in, strlen(in))
               == 1
        && (sig = d2i_ECDSA_SIG(NULL, &p, (long)n)) != NULL
        && BN_bn2binpad(ECDSA_SIG_get0_r(sig), rs, ACME_P256_LEN)
               == ACME_P256_LEN
        && BN_bn2binpad(ECDSA_SIG_get0_s(sig), rs + ACME_P256_LEN,
                        ACME_P256_LEN)
               == ACME_P256_LEN) {
        out = wf_acme_b64url(rs, sizeof(rs));
    }
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return out;
}

/* The protected header's JSON text. */
static char *
acme_jws_header(EVP_PKEY *k, const char *kid, const char *nonce,
                const char *url)
{
    char *jwk = kid == NULL ? acme_jwk_text(k) : NULL;
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", nonce,
                          "url", url);
    char *s = NULL;

    if (h != NULL && kid != NULL) {
        json_object_set_new(h, "kid", json_string(kid));
    } else if (h != NULL && jwk != NULL) {
        json_object_set_new(h, "jwk", json_loads(jwk, 0, NULL));
    }
    if (h != NULL && (kid != NULL || jwk != NULL)) {
        s = json_dumps(h, JSON_COMPACT);
    }
    json_decref(h);
    free(jwk);
    return s;
}

char *
wf_acme_jws(EVP_PKEY *k, const char *kid, const char *nonce, const char *url,
            const char *payload)
{
    char *header = acme_jws_header(k, kid, nonce, url);
    char *ph = header != NULL ? acme_b64url_str(header) : NULL;
    char *pp = acme_b64url_str(payload != NULL ? payload : "");
    char *input = NULL;
    char *sig = NULL;
    char *out = NULL;
    json_t *jws;

    if (ph != NULL && pp != NULL
        && (input = malloc(strlen(ph) + strlen(pp) + 2)) != NULL) {
        sprintf(input, "%s.%s", ph, pp);
        sig = acme_es256(k, input);
    }
    if (sig != NULL) {
        jws = json_pack("{s:s, s:s, s:s}", "protected", ph, "payload", pp,
                        "signature", sig);
        out = jws != NULL ? json_dumps(jws, JSON_COMPACT) : NULL;
        json_decref(jws);
    }
    free(header);
    free(ph);
    free(pp);
    free(input);
    free(sig);
    return out;
}

/* "DNS:a,DNS:b" for domains, for X509V3_EXT_conf_nid(). */
static char *
acme_san_value(const json_t *domains)
{
    size_t i;
    json_t *d;
    size_t len = 1;
    char *s;

    json_array_foreach(domains, i, d)
    {
        len += json_string_length(d) + 5;
    }
    s = malloc(len);
    if (s == NULL) {
        return NULL;
    }
    s[0] = '\0';
    json_array_foreach(domains, i, d)
    {
        strcat(s, i == 0 ? "DNS:" : ",DNS:");
        strcat(s, json_string_value(d));
    }
    return s;
}

static X509_EXTENSION *
acme_san_ext(const json_t *domains)
{
    char *san = acme_san_value(domains);
    X509_EXTENSION *ext =
        san != NULL ? X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san)
                    : NULL;

    free(san);
    return ext;
}

static int
acme_name_set(X509_NAME *name, const json_t *domains)
{
    const char *cn = json_string_value(json_array_get(domains, 0));

    return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                      (const unsigned char *)cn, -1, -1, 0)
                   == 1
               ? WF_OK
               : WF_ERROR;
}

/* The base64url DER of req. */
static char *
acme_req_der(X509_REQ *req)
{
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    char *s = n > 0 ? wf_acme_b64url(der, (size_t)n) : NULL;

    OPENSSL_free(der);
    return s;
}

char *
wf_acme_csr(EVP_PKEY *k, const json_t *domains)
{
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = acme_san_ext(domains);
    char *out = NULL;

    if (req != NULL && exts != NULL && san != NULL
        && sk_X509_EXTENSION_push(exts, san) > 0) {
        san = NULL; /* the stack's */
        if (X509_REQ_set_version(req, 0) == 1
            && acme_name_set(X509_REQ_get_subject_name(req), domains) == WF_OK
            && X509_REQ_add_extensions(req, exts) == 1
            && X509_REQ_set_pubkey(req, k) == 1
            && X509_REQ_sign(req, k, EVP_sha256()) > 0) {
            out = acme_req_der(req);
        }
    }
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    ERR_clear_error();
    return out;
}

/* RFC 8737 3: id-pe-acmeIdentifier, critical, an OCTET STRING holding the
 * SHA-256 of the key authorization. */
static int
acme_add_identifier(X509 *x, const char *keyauth)
{
    unsigned char der[2 + SHA256_DIGEST_LENGTH] = {0x04, SHA256_DIGEST_LENGTH};
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    int rc = WF_ERROR;

    SHA256((const unsigned char *)keyauth, strlen(keyauth), der + 2);
    if (oid != NULL && v != NULL
        && ASN1_OCTET_STRING_set(v, der, sizeof(der)) == 1) {
        ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, v);
    }
    if (ext != NULL && X509_add_ext(x, ext, -1) == 1) {
        rc = WF_OK;
    }
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(v);
    ASN1_OBJECT_free(oid);
    return rc;
}

static int
acme_x509_fill(X509 *x, EVP_PKEY *k, const json_t *domains, int days)
{
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    X509_EXTENSION *san = acme_san_ext(domains);
    int rc = WF_ERROR;

    if (san != NULL && RAND_bytes(serial, sizeof(serial)) == 1) {
        serial[0] &= 0x7f;
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
    }
    if (bn != NULL && X509_set_version(x, 2) == 1
        && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL
        && X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL
        && X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) != NULL
        && acme_name_set(X509_get_subject_name(x), domains) == WF_OK
        && X509_set_issuer_name(x, X509_get_subject_name(x)) == 1
        && X509_set_pubkey(x, k) == 1 && X509_add_ext(x, san, -1) == 1) {
        rc = WF_OK;
    }
    BN_free(bn);
    X509_EXTENSION_free(san);
    return rc;
}

char *
wf_acme_self_signed(EVP_PKEY *k, const json_t *domains, const char *keyauth,
                    int days)
{
    X509 *x = X509_new();
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;

    if (x != NULL && bio != NULL && acme_x509_fill(x, k, domains, days) == WF_OK
        && (keyauth == NULL || acme_add_identifier(x, keyauth) == WF_OK)
        && X509_sign(x, k, EVP_sha256()) > 0
        && PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) == 1
        && PEM_write_bio_X509(bio, x) == 1) {
        out = acme_bio_text(bio);
    }
    BIO_free(bio);
    X509_free(x);
    ERR_clear_error();
    return out;
}
