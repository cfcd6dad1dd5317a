#include "net/acme_chal.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "net/tls.h"

/* One TLS-ALPN-01 certificate. */
typedef struct acme_alpn {
    char *domain;
    EVP_PKEY *key;
    X509 *cert;
} acme_alpn_t;

typedef struct acme_set {
    json_t *http; /* {TOKEN: KEYAUTH} */
    acme_alpn_t *alpn;
    size_t nalpn;
} acme_set_t;

atomic_uint wf_acme_chal_count;

static pthread_mutex_t chal_lock = PTHREAD_MUTEX_INITIALIZER;
static acme_set_t *chal_set; /* under chal_lock; NULL: none */

static void
chal_set_free(acme_set_t *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->nalpn; i++) {
        free(s->alpn[i].domain);
        EVP_PKEY_free(s->alpn[i].key);
        X509_free(s->alpn[i].cert);
    }
    free(s->alpn);
    json_decref(s->http);
    free(s);
}

static int
chal_alpn_add(acme_set_t *s, const char *domain, const char *pem)
{
    wf_tls_bundle_t b = {0};
    char why[128];
    acme_alpn_t *a = &s->alpn[s->nalpn];

    if (pem == NULL
        || wf_tls_bundle_read(&b, pem, strlen(pem), why, sizeof(why))
               != WF_OK) {
        return WF_ERROR;
    }
    a->domain = strdup(domain);
    if (a->domain == NULL) {
        wf_tls_bundle_fini(&b);
        return WF_ERROR;
    }
    a->key = b.key;
    a->cert = b.chain[0];
    b.key = NULL;
    b.chain[0] = NULL;
    wf_tls_bundle_fini(&b);
    s->nalpn++;
    return WF_OK;
}

static acme_set_t *
chal_set_parse(const char *text, size_t len)
{
    json_t *root = json_loadb(text, len, 0, NULL);
    json_t *http = json_object_get(root, "http");
    json_t *alpn = json_object_get(root, "alpn");
    acme_set_t *s = calloc(1, sizeof(*s));
    const char *key;
    json_t *v;

    if (s == NULL || !json_is_object(root)) {
        goto fail;
    }
    s->http = json_is_object(http) ? json_incref(http) : json_object();
    s->alpn = calloc(json_object_size(alpn) + 1, sizeof(*s->alpn));
    if (s->http == NULL || s->alpn == NULL) {
        goto fail;
    }
    json_object_foreach(alpn, key, v)
    {
        if (chal_alpn_add(s, key, json_string_value(v)) != WF_OK) {
            goto fail;
        }
    }
    json_decref(root);
    return s;

fail:
    chal_set_free(s);
    json_decref(root);
    return NULL;
}

int
wf_acme_chal_set(const char *text, size_t len)
{
    acme_set_t *s = chal_set_parse(text, len);
    acme_set_t *old;

    if (s == NULL) {
        return WF_ERROR;
    }
    pthread_mutex_lock(&chal_lock);
    old = chal_set;
    chal_set = s;
    atomic_store(&wf_acme_chal_count,
                 (unsigned)(json_object_size(s->http) + s->nalpn));
    pthread_mutex_unlock(&chal_lock);
    chal_set_free(old);
    return WF_OK;
}

char *
wf_acme_chal_http(const char *token, size_t len)
{
    const char *v;
    char *out = NULL;

    pthread_mutex_lock(&chal_lock);
    v = chal_set != NULL
            ? json_string_value(json_object_getn(chal_set->http, token, len))
            : NULL;
    if (v != NULL) {
        out = strdup(v);
    }
    pthread_mutex_unlock(&chal_lock);
    return out;
}

/* Whether the ALPN list in[0..inlen) is exactly "acme-tls/1" (RFC 8737 3:
 * the validation offers no other protocol). */
static bool
chal_offers_only_acme(const unsigned char *in, unsigned inlen)
{
    size_t n = sizeof(WF_ACME_TLS_ALPN) - 1;

    return inlen == n + 1 && in[0] == n
           && memcmp(in + 1, WF_ACME_TLS_ALPN, n) == 0;
}

bool
wf_acme_chal_alpn(SSL *ssl, const unsigned char *in, unsigned inlen)
{
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    bool done = false;

    if (sni == NULL || !chal_offers_only_acme(in, inlen)) {
        return false;
    }
    pthread_mutex_lock(&chal_lock);
    for (size_t i = 0; chal_set != NULL && i < chal_set->nalpn; i++) {
        acme_alpn_t *a = &chal_set->alpn[i];

        if (strcasecmp(a->domain, sni) == 0) {
            /* Only this certificate: the listener's could be picked
             * for another key type. */
            SSL_certs_clear(ssl);
            done = SSL_use_certificate(ssl, a->cert) == 1
                   && SSL_use_PrivateKey(ssl, a->key) == 1;
            break;
        }
    }
    pthread_mutex_unlock(&chal_lock);
    return done;
}

void
wf_acme_chal_clear(void)
{
    pthread_mutex_lock(&chal_lock);
    chal_set_free(chal_set);
    chal_set = NULL;
    atomic_store(&wf_acme_chal_count, 0);
    pthread_mutex_unlock(&chal_lock);
}
