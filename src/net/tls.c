#include "net/tls.h"

#include <errno.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "net/acme_chal.h"
#include "net/tls_ocsp.h"

#define TLS_WBUF      16384        /* one record's plaintext */
#define TLS_WRITE_MAX (256 * 1024) /* bytes written per call, for fairness */
#define TLS_NAME_MAX  256

/* One SNI name: lower-cased; a wildcard "*.b.c" is kept as ".b.c". */
typedef struct tls_name {
    char *name;
    size_t idx; /* in ctxs[] */
} tls_name_t;

struct wf_tls_srv {
    SSL_CTX **ctxs; /* one per certificate, in "certificate" order */
    size_t nctxs;
    tls_name_t *names;
    size_t nnames;
};

/* Plaintext staged for SSL_write(): the iovecs or the file piece of one
 * record.  A retried write stages the same bytes again (the caller did not
 * advance), as SSL_write() requires. */
static _Thread_local unsigned char tls_wbuf[TLS_WBUF];

/* ---- bundles ------------------------------------------------------------ */

static int tls_fail(char *why, size_t whysize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
tls_fail(char *why, size_t whysize, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, whysize, fmt, ap);
    va_end(ap);
    return WF_ERROR;
}

void
wf_tls_bundle_fini(wf_tls_bundle_t *b)
{
    EVP_PKEY_free(b->key);
    b->key = NULL;
    for (size_t i = 0; i < b->count; i++) {
        X509_free(b->chain[i]);
        b->chain[i] = NULL;
    }
    b->count = 0;
}

static bool
tls_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t k = strlen(suffix);

    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* "PRIVATE KEY" (PKCS#8) or "<ALG> PRIVATE KEY" (PKCS#1, SEC1, ...);
 * d2i_AutoPrivateKey() tells them apart. */
static int
tls_add_key(wf_tls_bundle_t *b, const char *header, const unsigned char *data,
            long length, char *why, size_t whysize)
{
    const unsigned char *p = data;

    if (strstr(header, "ENCRYPTED") != NULL) {
        return tls_fail(why, whysize, "encrypted PEM isn't supported");
    }
    if (b->key != NULL) {
        return tls_fail(why, whysize, "multiple private keys in PEM");
    }
    b->key = d2i_AutoPrivateKey(NULL, &p, length);
    if (b->key == NULL) {
        return tls_fail(why, whysize, "the private key cannot be decoded");
    }
    return WF_OK;
}

static int
tls_add_x509(wf_tls_bundle_t *b, const unsigned char *data, long length,
             bool trusted, char *why, size_t whysize)
{
    const unsigned char *p = data;
    X509 *x;

    if (b->count == WF_TLS_CHAIN_MAX) {
        return tls_fail(why, whysize, "more than %d certificates in PEM",
                        WF_TLS_CHAIN_MAX);
    }
    x = trusted ? d2i_X509_AUX(NULL, &p, length) : d2i_X509(NULL, &p, length);
    if (x == NULL) {
        return tls_fail(why, whysize, "certificate %zu cannot be decoded",
                        b->count + 1);
    }
    b->chain[b->count++] = x;
    return WF_OK;
}

/* One PEM block, by its type (Unit's nxt_cert_bio()).  "EC PARAMETERS",
 * which `openssl ecparam -genkey` writes before the key, is skipped. */
static int
tls_add_block(wf_tls_bundle_t *b, const char *type, const char *header,
              const unsigned char *data, long length, char *why, size_t whysize)
{
    if (strcmp(type, PEM_STRING_X509) == 0
        || strcmp(type, PEM_STRING_X509_OLD) == 0) {
        return tls_add_x509(b, data, length, false, why, whysize);
    }
    if (strcmp(type, PEM_STRING_X509_TRUSTED) == 0) {
        return tls_add_x509(b, data, length, true, why, whysize);
    }
    if (strcmp(type, PEM_STRING_PKCS8) == 0) {
        return tls_fail(why, whysize, "PEM PKCS8 isn't supported");
    }
    if (strcmp(type, PEM_STRING_PKCS8INF) == 0
        || tls_has_suffix(type, " " PEM_STRING_PKCS8INF)) {
        return tls_add_key(b, header, data, length, why, whysize);
    }
    if (strcmp(type, PEM_STRING_ECPARAMETERS) == 0) {
        return WF_OK;
    }
    return tls_fail(why, whysize, "unsupported PEM type: \"%.64s\"", type);
}

static int
tls_read_blocks(wf_tls_bundle_t *b, BIO *bio, char *why, size_t whysize)
{
    for (;;) {
        char *type = NULL;
        char *header = NULL;
        unsigned char *data = NULL;
        long length = 0;
        int rc;

        if (PEM_read_bio(bio, &type, &header, &data, &length) == 0) {
            unsigned long e = ERR_peek_last_error();

            if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                return WF_OK; /* the end: text after the last block */
            }
            return tls_fail(why, whysize, "the PEM text is malformed");
        }
        rc = tls_add_block(b, type, header, data, length, why, whysize);
        OPENSSL_free(data);
        OPENSSL_free(header);
        OPENSSL_free(type);
        if (rc != WF_OK) {
            return rc;
        }
    }
}

/* What Unit checks (a key, a certificate), then what a handshake would
 * find out too late: the key is the leaf's, and the chain is a chain. */
static int
tls_bundle_check(wf_tls_bundle_t *b, char *why, size_t whysize)
{
    if (b->key == NULL) {
        return tls_fail(why, whysize, "no key found");
    }
    if (b->count == 0) {
        return tls_fail(why, whysize, "no certificates found");
    }
    if (X509_check_private_key(b->chain[0], b->key) != 1) {
        return tls_fail(why, whysize,
                        "the private key does not match the first "
                        "certificate");
    }
    for (size_t i = 1; i < b->count; i++) {
        if (X509_check_issued(b->chain[i], b->chain[i - 1]) != X509_V_OK) {
            return tls_fail(why, whysize,
                            "certificate %zu is not the issuer of "
                            "certificate %zu",
                            i + 1, i);
        }
    }
    return WF_OK;
}

static int
tls_bundle_read(wf_tls_bundle_t *b, const char *pem, size_t len, bool keyless,
                char *why, size_t whysize)
{
    BIO *bio = len <= INT_MAX ? BIO_new_mem_buf(pem, (int)len) : NULL;
    int rc;

    if (bio == NULL) {
        return tls_fail(why, whysize, "the bundle cannot be read");
    }
    rc = tls_read_blocks(b, bio, why, whysize);
    BIO_free(bio);
    if (rc == WF_OK && (!keyless || b->key != NULL || b->count == 0)) {
        rc = tls_bundle_check(b, why, whysize);
    }
    ERR_clear_error();
    if (rc != WF_OK) {
        wf_tls_bundle_fini(b);
    }
    return rc;
}

int
wf_tls_bundle_read(wf_tls_bundle_t *b, const char *pem, size_t len, char *why,
                   size_t whysize)
{
    return tls_bundle_read(b, pem, len, false, why, whysize);
}

int
wf_tls_bundle_read_any(wf_tls_bundle_t *b, const char *pem, size_t len,
                       char *why, size_t whysize)
{
    return tls_bundle_read(b, pem, len, true, why, whysize);
}

/* ---- SNI ---------------------------------------------------------------- */

static bool
tls_name_known(const wf_tls_srv_t *t, const char *name)
{
    for (size_t i = 0; i < t->nnames; i++) {
        if (strcmp(t->names[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Adds one of certificate idx's names (Unit's
 * nxt_openssl_bundle_hash_insert()): a name already there stays the first
 * certificate's; "*x" without a dot is ignored. */
static int
tls_name_add(wf_tls_srv_t *t, const char *name, size_t len, size_t idx)
{
    char buf[TLS_NAME_MAX];
    tls_name_t *names;
    size_t off = 0;

    if (len == 0 || len >= sizeof(buf)) {
        return WF_OK;
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] =
            (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] | 0x20 : name[i]);
    }
    buf[len] = '\0';
    if (buf[0] == '*') {
        if (buf[1] != '.') {
            wf_log_warn(0,
                        "ignored invalid name \"%s\" in a certificate: "
                        "missing \".\" after wildcard symbol",
                        buf);
            return WF_OK;
        }
        off = 1;
    }
    if (tls_name_known(t, buf + off)) {
        return WF_OK;
    }
    names = realloc(t->names, (t->nnames + 1) * sizeof(*names));
    if (names == NULL) {
        return WF_ERROR;
    }
    t->names = names;
    names[t->nnames].name = strdup(buf + off);
    names[t->nnames].idx = idx;
    if (names[t->nnames].name == NULL) {
        return WF_ERROR;
    }
    t->nnames++;
    return WF_OK;
}

/* The leaf's DNS alt names, else its common name. */
static int
tls_names_add(wf_tls_srv_t *t, X509 *leaf, size_t idx)
{
    GENERAL_NAMES *alt =
        X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    char cn[TLS_NAME_MAX];
    int rc = WF_OK;
    int n;

    if (alt != NULL) {
        for (int i = 0; rc == WF_OK && i < sk_GENERAL_NAME_num(alt); i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(alt, i);

            if (g->type == GEN_DNS) {
                rc = tls_name_add(
                    t, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                    (size_t)ASN1_STRING_length(g->d.dNSName), idx);
            }
        }
        GENERAL_NAMES_free(alt);
        return rc;
    }
    n = X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName,
                                  cn, sizeof(cn));
    return n > 0 ? tls_name_add(t, cn, (size_t)n, idx) : WF_OK;
}

static const tls_name_t *
tls_name_find(const wf_tls_srv_t *t, const char *name)
{
    for (size_t i = 0; i < t->nnames; i++) {
        if (strcmp(t->names[i].name, name) == 0) {
            return &t->names[i];
        }
    }
    return NULL;
}

size_t
wf_tls_srv_pick(const wf_tls_srv_t *t, const char *servername)
{
    char buf[TLS_NAME_MAX];
    size_t len = servername != NULL ? strlen(servername) : 0;
    const tls_name_t *n;
    const char *dot;

    if (len == 0 || len >= sizeof(buf) || servername[0] == '.') {
        return 0;
    }
    for (size_t i = 0; i <= len; i++) {
        char ch = servername[i];

        buf[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
    }
    n = tls_name_find(t, buf);
    dot = strchr(buf + 1, '.');
    if (n == NULL && dot != NULL) {
        n = tls_name_find(t, dot); /* a wildcard's ".b.c" */
    }
    return n != NULL ? n->idx : 0;
}

/* The client's server name picks the context (Unit's
 * nxt_openssl_servername()).  Runs inside the handshake; t is alive: the
 * connection holds the snapshot that owns it. */
static int
tls_on_servername(SSL *ssl, int *alert, void *arg)
{
    const wf_tls_srv_t *t = arg;
    size_t idx =
        wf_tls_srv_pick(t, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));

    wf_unused(alert);
    if (SSL_get_SSL_CTX(ssl) != t->ctxs[idx]
        && SSL_set_SSL_CTX(ssl, t->ctxs[idx]) == NULL) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ---- contexts ----------------------------------------------------------- */

static int
tls_ctx_commands(SSL_CTX *ctx, const json_t *cmds, char *why, size_t whysize)
{
    SSL_CONF_CTX *cctx;
    const char *key;
    json_t *v;
    int rc = WF_OK;

    if (cmds == NULL) {
        return WF_OK;
    }
    cctx = SSL_CONF_CTX_new();
    if (cctx == NULL) {
        return tls_fail(why, whysize, "Out of memory.");
    }
    SSL_CONF_CTX_set_flags(cctx, SSL_CONF_FLAG_FILE | SSL_CONF_FLAG_SERVER
                                     | SSL_CONF_FLAG_CERTIFICATE
                                     | SSL_CONF_FLAG_SHOW_ERRORS);
    SSL_CONF_CTX_set_ssl_ctx(cctx, ctx);
    json_object_foreach((json_t *)cmds, key, v)
    {
        if (SSL_CONF_cmd(cctx, key, json_string_value(v)) <= 0) {
            rc = tls_fail(why, whysize,
                          "SSL_CONF_cmd(\"%.100s\", \"%.200s\") failed.", key,
                          json_string_value(v));
            break;
        }
    }
    if (rc == WF_OK && SSL_CONF_CTX_finish(cctx) != 1) {
        rc = tls_fail(why, whysize, "SSL_CONF_CTX_finish() failed.");
    }
    SSL_CONF_CTX_free(cctx);
    return rc;
}

/* ---- session ticket keys (Unit's nxt_tls_ticket_key_callback()) -------- */

typedef struct tls_ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    size_t size; /* 16: AES-128, 32: AES-256 (and the HMAC key's length) */
} tls_ticket_key_t;

/* Owned by the SSL_CTX (ex_data): it lives as long as any SSL uses it. */
typedef struct tls_tickets {
    size_t count;
    tls_ticket_key_t keys[]; /* [0] encrypts; all decrypt */
} tls_tickets_t;

static int tls_tickets_index = -1;
static int tls_peer_index = -1; /* SSL ex_data: tls_peer_t */
static pthread_once_t tls_tickets_once = PTHREAD_ONCE_INIT;

static void
tls_tickets_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                 long argl, void *argp)
{
    tls_tickets_t *tk = ptr;

    wf_unused(parent);
    wf_unused(ad);
    wf_unused(idx);
    wf_unused(argl);
    wf_unused(argp);
    if (tk != NULL) {
        OPENSSL_cleanse(tk->keys, tk->count * sizeof(tk->keys[0]));
        free(tk);
    }
}

static void tls_peer_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                          long argl, void *argp);

static void
tls_tickets_init(void)
{
    tls_tickets_index =
        SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_tickets_free);
    tls_peer_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_peer_free);
}

/* Sets the HMAC-SHA256 key of a ticket. */
static int
tls_ticket_mac(EVP_MAC_CTX *hctx, tls_ticket_key_t *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac, k->size),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };

    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/* Encrypts new tickets with the first key; decrypts with whichever key
 * named the ticket, and asks for a new ticket when that is not the first
 * (rotation). */
static int
tls_on_ticket_key(SSL *ssl, unsigned char *name, unsigned char *iv,
                  EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    tls_tickets_t *tk =
        SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_tickets_index);
    tls_ticket_key_t *k;
    size_t i = 0;

    if (tk == NULL || tk->count == 0) {
        return enc == 1 ? -1 : 0;
    }
    if (enc == 1) {
        k = &tk->keys[0];
        if (RAND_bytes(iv, 16) != 1
            || EVP_EncryptInit_ex(
                   ectx, k->size == 16 ? EVP_aes_128_cbc() : EVP_aes_256_cbc(),
                   NULL, k->aes, iv)
                   != 1) {
            return -1;
        }
        memcpy(name, k->name, 16);
        return tls_ticket_mac(hctx, k) == 0 ? 1 : -1;
    }
    while (i < tk->count && memcmp(name, tk->keys[i].name, 16) != 0) {
        i++;
    }
    if (i == tk->count) {
        return 0; /* an unknown key: a full handshake */
    }
    k = &tk->keys[i];
    if (EVP_DecryptInit_ex(
            ectx, k->size == 16 ? EVP_aes_128_cbc() : EVP_aes_256_cbc(), NULL,
            k->aes, iv)
            != 1
        || tls_ticket_mac(hctx, k) != 0) {
        return -1;
    }
    return i == 0 ? 1 : 2;
}

/* One Base64 key (validated by control/conf_tls.c): 48 bytes are name,
 * AES-128 key, HMAC key; 80 bytes are name, HMAC key, AES-256 key (Unit's
 * layouts). */
static bool
tls_ticket_key_parse(tls_ticket_key_t *k, const json_t *v)
{
    unsigned char buf[128];
    size_t len = json_string_length(v);
    int n;

    if (len == 0 || len % 4 != 0 || len > 4 * sizeof(buf) / 3) {
        return false;
    }
    n = EVP_DecodeBlock(buf, (const unsigned char *)json_string_value(v),
                        (int)len);
    n -= json_string_value(v)[len - 1] == '=';
    n -= len > 1 && json_string_value(v)[len - 2] == '=';
    memcpy(k->name, buf, 16);
    if (n == 48) {
        memcpy(k->aes, buf + 16, 16);
        memcpy(k->hmac, buf + 32, 16);
        k->size = 16;
    } else if (n == 80) {
        memcpy(k->hmac, buf + 16, 32);
        memcpy(k->aes, buf + 48, 32);
        k->size = 32;
    } else {
        return false;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return true;
}

/* "tickets" as a key or an array of keys; the last in the array encrypts,
 * as in Unit. */
static int
tls_ctx_ticket_keys(SSL_CTX *ctx, const json_t *tickets, char *why,
                    size_t whysize)
{
    size_t count = json_is_array(tickets) ? json_array_size(tickets) : 1;
    tls_tickets_t *tk = calloc(1, sizeof(*tk) + count * sizeof(tk->keys[0]));

    pthread_once(&tls_tickets_once, tls_tickets_init);
    if (tk == NULL || tls_tickets_index < 0) {
        free(tk);
        return tls_fail(why, whysize, "Out of memory.");
    }
    tk->count = count;
    for (size_t i = 0; i < count; i++) {
        const json_t *v = json_is_array(tickets)
                              ? json_array_get(tickets, count - 1 - i)
                              : tickets;

        if (!tls_ticket_key_parse(&tk->keys[i], v)) {
            tls_tickets_free(NULL, tk, NULL, 0, 0, NULL);
            return tls_fail(why, whysize, "Invalid ticket key.");
        }
    }
    if (SSL_CTX_set_ex_data(ctx, tls_tickets_index, tk) != 1) {
        tls_tickets_free(NULL, tk, NULL, 0, 0, NULL);
        return tls_fail(why, whysize, "Out of memory.");
    }
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_on_ticket_key);
    return WF_OK;
}

/* Unit's session defaults: no cache, a 300 s timeout, no tickets. */
static int
tls_ctx_session(SSL_CTX *ctx, const json_t *session, char *why, size_t whysize)
{
    json_t *size = json_object_get(session, "cache_size");
    json_t *timeout = json_object_get(session, "timeout");
    json_t *keys = json_object_get(session, "tickets");
    bool tickets = json_is_true(keys) || json_is_string(keys)
                   || (json_is_array(keys) && json_array_size(keys) > 0);
    json_int_t n = size != NULL ? json_integer_value(size) : 0;

    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"wharf", 5);
    SSL_CTX_set_timeout(ctx, timeout != NULL ? (long)json_integer_value(timeout)
                                             : 300);
    if (n > 0) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, (long)n);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (!tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        if (n == 0) {
            SSL_CTX_set_num_tickets(ctx, 0); /* nothing could resume */
        }
        return WF_OK;
    }
    return json_is_boolean(keys) ? WF_OK
                                 : tls_ctx_ticket_keys(ctx, keys, why, whysize);
}

/* ALPN: RFC 8737's "acme-tls/1" for a pending TLS-ALPN-01 challenge
 * (net/acme_chal.h) first; then "h2" (HTTP/2, http/h2_conn.c) in
 * preference to "http/1.1", whatever the client's order.  Any other offer
 * selects no protocol (HTTP/1.x follows), as without the callback. */
static const unsigned char tls_alpn_protos[] = "\x02h2\x08http/1.1";

static int
tls_on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
            const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *sel = NULL;
    unsigned char len = 0;

    wf_unused(arg);
    if (wf_acme_chal_any() && wf_acme_chal_alpn(ssl, in, inlen)) {
        *out = in + 1;
        *outlen = in[0];
        return SSL_TLSEXT_ERR_OK;
    }
    if (SSL_select_next_proto(&sel, &len, tls_alpn_protos,
                              sizeof(tls_alpn_protos) - 1, in, inlen)
        == OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        *outlen = len;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

bool
wf_tls_alpn_h2(const wf_xprt_t *x)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;

    if (x->tls == NULL) {
        return false;
    }
    SSL_get0_alpn_selected(x->tls, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}

/* Whether the kernel offers TLS (the tls module: /proc/net/tls_stat);
 * read once.  Said once at debug level, with what files go through. */
static bool tls_ktls;
static pthread_once_t tls_ktls_once = PTHREAD_ONCE_INIT;

static void
tls_ktls_probe(void)
{
    tls_ktls = access("/proc/net/tls_stat", F_OK) == 0;
    wf_log_debug("kTLS: %s",
                 tls_ktls ? "the kernel offers it: SSL_OP_ENABLE_KTLS, files "
                            "over TLS go through SSL_sendfile()"
                          : "the kernel has no TLS module (no "
                            "/proc/net/tls_stat): files over TLS go through "
                            "pread() and SSL_write()");
}

static SSL_CTX *
tls_ctx_create(const char *name, const char *pem, size_t len, const json_t *tls,
               char *why, size_t whysize)
{
    wf_tls_bundle_t b = {0};
    SSL_CTX *ctx;
    char reason[200];

    if (wf_tls_bundle_read(&b, pem, len, reason, sizeof(reason)) != WF_OK) {
        tls_fail(why, whysize, "Certificate \"%.100s\" cannot be loaded: %s.",
                 name, reason);
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_use_certificate(ctx, b.chain[0]) != 1
        || SSL_CTX_use_PrivateKey(ctx, b.key) != 1) {
        tls_fail(why, whysize, "Certificate \"%.100s\" cannot be used.", name);
        goto fail;
    }
    for (size_t i = 1; i < b.count; i++) {
        if (SSL_CTX_add1_chain_cert(ctx, b.chain[i]) != 1) {
            tls_fail(why, whysize, "Out of memory.");
            goto fail;
        }
    }
    /* Read ahead (as nginx): one read() per burst of records instead of
     * a header and a body read per record; tls_pending() covers the
     * records it leaves unprocessed. */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* Unit's options; partial and moving writes suit the retry rules of
     * net/xprt.h's callers. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION
                                 | SSL_OP_IGNORE_UNEXPECTED_EOF
                                 | SSL_OP_CIPHER_SERVER_PREFERENCE);
    pthread_once(&tls_ktls_once, tls_ktls_probe);
    if (tls_ktls) {
        SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
    }
    /* The bundle is the chain (Unit's model): no chain building per
     * handshake from the context's store, which with client_certificate
     * holds the client CAs, not the server's issuers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS
                              | SSL_MODE_ENABLE_PARTIAL_WRITE
                              | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_alpn_select_cb(ctx, tls_on_alpn, NULL);
    if (tls_ctx_session(ctx, json_object_get(tls, "session"), why, whysize)
        != WF_OK) {
        goto fail;
    }
    if (tls_ctx_commands(ctx, json_object_get(tls, "conf_commands"), why,
                         whysize)
        != WF_OK) {
        goto fail;
    }
    wf_tls_bundle_fini(&b);
    ERR_clear_error();
    return ctx;

fail:
    SSL_CTX_free(ctx);
    wf_tls_bundle_fini(&b);
    ERR_clear_error();
    return NULL;
}

/* ---- client certificates (Wharf's "client_certificate") -------------- */

#define TLS_VERIFY_DEPTH 1 /* nginx's ssl_verify_depth default */

static const struct {
    const char *name;
    wf_tls_verify_t mode;
    int flags; /* SSL_CTX_set_verify()'s */
} tls_verify_modes[] = {
    {"required", WF_TLS_VERIFY_REQUIRED,
     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT},
    {"optional", WF_TLS_VERIFY_OPTIONAL, SSL_VERIFY_PEER},
    {"optional_no_verify", WF_TLS_VERIFY_OPTIONAL_NO_VERIFY, SSL_VERIFY_PEER},
};

wf_tls_verify_t
wf_tls_verify_mode(const char *name)
{
    for (size_t i = 0; name != NULL && i < wf_nitems(tls_verify_modes); i++) {
        if (strcmp(tls_verify_modes[i].name, name) == 0) {
            return tls_verify_modes[i].mode;
        }
    }
    return WF_TLS_VERIFY_OFF;
}

/* optional_no_verify: every certificate passes; SSL_get_verify_result()
 * still says what the check found (the last error). */
static int
tls_on_verify_any(int ok, X509_STORE_CTX *store)
{
    wf_unused(ok);
    wf_unused(store);
    return 1;
}

/* What the listener's client verification needs, built once per srv and
 * shared by its contexts. */
typedef struct tls_verify_conf {
    wf_tls_verify_t mode;
    int depth;
    X509_STORE *store;
    STACK_OF(X509_NAME) * names; /* sent in the CertificateRequest */
    unsigned char sid[32];       /* session id context: a session resumes
                                    only where the same CAs verified it */
} tls_verify_conf_t;

static void
tls_verify_conf_fini(tls_verify_conf_t *vc)
{
    X509_STORE_free(vc->store);
    sk_X509_NAME_pop_free(vc->names, X509_NAME_free);
}

/* Adds the certificates of the CA bundle name (in pems) to vc. */
static int
tls_verify_add_ca(tls_verify_conf_t *vc, const char *name, const json_t *pems,
                  EVP_MD_CTX *md, char *why, size_t whysize)
{
    json_t *pem = json_object_get(pems, name);
    wf_tls_bundle_t b = {0};
    char reason[200];

    if (!json_is_string(pem)) {
        return tls_fail(why, whysize, "Certificate \"%.200s\" is not found.",
                        name);
    }
    if (wf_tls_bundle_read_any(&b, json_string_value(pem),
                               json_string_length(pem), reason, sizeof(reason))
        != WF_OK) {
        return tls_fail(why, whysize,
                        "CA certificate \"%.100s\" cannot be loaded: %s.", name,
                        reason);
    }
    EVP_DigestUpdate(md, json_string_value(pem), json_string_length(pem));
    for (size_t i = 0; i < b.count; i++) {
        X509_NAME *n = X509_NAME_dup(X509_get_subject_name(b.chain[i]));

        if (X509_STORE_add_cert(vc->store, b.chain[i]) != 1 || n == NULL
            || sk_X509_NAME_push(vc->names, n) == 0) {
            X509_NAME_free(n);
            wf_tls_bundle_fini(&b);
            return tls_fail(why, whysize, "Out of memory.");
        }
    }
    wf_tls_bundle_fini(&b);
    return WF_OK;
}

/* Reads "client_certificate" (validated) into vc. */
static int
tls_verify_conf_read(tls_verify_conf_t *vc, const json_t *cc,
                     const json_t *pems, char *why, size_t whysize)
{
    json_t *ca = json_object_get(cc, "ca");
    json_t *depth = json_object_get(cc, "depth");
    size_t n = json_is_array(ca) ? json_array_size(ca) : ca != NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = WF_OK;

    vc->mode =
        wf_tls_verify_mode(json_string_value(json_object_get(cc, "mode")));
    vc->mode =
        vc->mode != WF_TLS_VERIFY_OFF ? vc->mode : WF_TLS_VERIFY_REQUIRED;
    vc->depth =
        depth != NULL ? (int)json_integer_value(depth) : TLS_VERIFY_DEPTH;
    vc->store = X509_STORE_new();
    vc->names = sk_X509_NAME_new_null();
    if (md == NULL || vc->store == NULL || vc->names == NULL
        || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return tls_fail(why, whysize, "Out of memory.");
    }
    EVP_DigestUpdate(md, &vc->mode, sizeof(vc->mode));
    EVP_DigestUpdate(md, &vc->depth, sizeof(vc->depth));
    for (size_t i = 0; rc == WF_OK && i < n; i++) {
        json_t *e = json_is_array(ca) ? json_array_get(ca, i) : ca;

        rc =
            tls_verify_add_ca(vc, json_string_value(e), pems, md, why, whysize);
    }
    if (rc == WF_OK && EVP_DigestFinal_ex(md, vc->sid, NULL) != 1) {
        rc = tls_fail(why, whysize, "Out of memory.");
    }
    EVP_MD_CTX_free(md);
    return rc;
}

static int
tls_ctx_verify(SSL_CTX *ctx, const tls_verify_conf_t *vc)
{
    STACK_OF(X509_NAME) *names = SSL_dup_CA_list(vc->names);
    int flags = 0;

    for (size_t i = 0; i < wf_nitems(tls_verify_modes); i++) {
        if (tls_verify_modes[i].mode == vc->mode) {
            flags = tls_verify_modes[i].flags;
        }
    }
    if (names == NULL) {
        return WF_ERROR;
    }
    SSL_CTX_set1_cert_store(ctx, vc->store);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, flags,
                       vc->mode == WF_TLS_VERIFY_OPTIONAL_NO_VERIFY
                           ? tls_on_verify_any
                           : NULL);
    SSL_CTX_set_verify_depth(ctx, vc->depth);
    SSL_CTX_set_session_id_context(ctx, vc->sid, sizeof(vc->sid));
    return WF_OK;
}

/* Asks t's clients for certificates as "client_certificate" says. */
static int
tls_srv_verify(wf_tls_srv_t *t, const json_t *cc, const json_t *pems, char *why,
               size_t whysize)
{
    tls_verify_conf_t vc = {0};
    int rc;

    if (cc == NULL) {
        return WF_OK;
    }
    rc = tls_verify_conf_read(&vc, cc, pems, why, whysize);
    for (size_t i = 0; rc == WF_OK && i < t->nctxs; i++) {
        if (tls_ctx_verify(t->ctxs[i], &vc) != WF_OK) {
            rc = tls_fail(why, whysize, "Out of memory.");
        }
    }
    tls_verify_conf_fini(&vc);
    ERR_clear_error();
    return rc;
}

/* The client's facts (the client_* variables), read once when the
 * handshake ends; owned by the SSL (ex_data, freed with it). */
typedef struct tls_peer {
    size_t off[WF_TLS_VAR_N];
    size_t len[WF_TLS_VAR_N];
    bool has[WF_TLS_VAR_N];
    char text[]; /* every value, one after another */
} tls_peer_t;

static void
tls_peer_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
              void *argp)
{
    wf_unused(parent);
    wf_unused(ad);
    wf_unused(idx);
    wf_unused(argl);
    wf_unused(argp);
    free(ptr);
}

/* Ends the value var that started at start in bio. */
static void
tls_peer_mark(tls_peer_t *p, BIO *bio, wf_tls_var_t var, uint64_t start)
{
    p->off[var] = (size_t)start;
    p->len[var] = (size_t)(BIO_number_written(bio) - start);
    p->has[var] = true;
}

/* The subject's first common name (reverse HTTP names tunnels by it). */
static void
tls_peer_cn(tls_peer_t *p, BIO *bio, X509 *x)
{
    X509_NAME *name = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    uint64_t at = BIO_number_written(bio);
    unsigned char *u = NULL;
    int n;

    if (i < 0) {
        return;
    }
    n = ASN1_STRING_to_UTF8(
        &u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (n >= 0) {
        BIO_write(bio, u, n);
        tls_peer_mark(p, bio, WF_TLS_VAR_CLIENT_CN, at);
    }
    OPENSSL_free(u);
}

static void
tls_peer_cert(tls_peer_t *p, BIO *bio, X509 *x)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    uint64_t at = BIO_number_written(bio);
    BIGNUM *bn;
    char *hex;

    X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    tls_peer_mark(p, bio, WF_TLS_VAR_CLIENT_SUBJECT, at);
    at = BIO_number_written(bio);
    X509_NAME_print_ex(bio, X509_get_issuer_name(x), 0, XN_FLAG_RFC2253);
    tls_peer_mark(p, bio, WF_TLS_VAR_CLIENT_ISSUER, at);
    at = BIO_number_written(bio);
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL) {
        BIO_puts(bio, hex);
        tls_peer_mark(p, bio, WF_TLS_VAR_CLIENT_SERIAL, at);
    }
    OPENSSL_free(hex);
    BN_free(bn);
    at = BIO_number_written(bio);
    if (X509_digest(x, EVP_sha256(), md, &n) == 1) {
        for (unsigned i = 0; i < n; i++) {
            BIO_printf(bio, "%02x", md[i]);
        }
        tls_peer_mark(p, bio, WF_TLS_VAR_CLIENT_FINGERPRINT, at);
    }
    tls_peer_cn(p, bio, x);
}

/* The verify result as nginx's $ssl_client_verify says it. */
static void
tls_peer_verify(tls_peer_t *p, BIO *bio, SSL *ssl, X509 *x)
{
    long rc = SSL_get_verify_result(ssl);
    uint64_t at = BIO_number_written(bio);

    if (x == NULL) {
        BIO_puts(bio, "NONE");
    } else if (rc == X509_V_OK) {
        BIO_puts(bio, "SUCCESS");
    } else {
        BIO_printf(bio, "FAILED:%s", X509_verify_cert_error_string(rc));
    }
    tls_peer_mark(p, bio, WF_TLS_VAR_CLIENT_VERIFY, at);
    at = BIO_number_written(bio);
    BIO_puts(bio, x != NULL && rc == X509_V_OK ? "true" : "false");
    tls_peer_mark(p, bio, WF_TLS_VAR_CLIENT_VERIFIED, at);
}

/* Reads the client's facts into ssl's ex_data (nothing when out of
 * memory: the variables are then absent). */
static void
tls_peer_read(SSL *ssl)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    BIO *bio = BIO_new(BIO_s_mem());
    tls_peer_t head = {0};
    tls_peer_t *p = NULL;
    char *data;
    long n;

    if (bio == NULL) {
        return;
    }
    tls_peer_verify(&head, bio, ssl, x);
    if (x != NULL) {
        tls_peer_cert(&head, bio, x);
    }
    n = BIO_get_mem_data(bio, &data);
    if (n >= 0 && (p = malloc(sizeof(*p) + (size_t)n + 1)) != NULL) {
        *p = head;
        memcpy(p->text, data, (size_t)n);
        p->text[n] = '\0';
        if (SSL_set_ex_data(ssl, tls_peer_index, p) != 1) {
            free(p);
        }
    }
    BIO_free(bio);
    ERR_clear_error();
}

/* Adds certificate name's context and SNI names as t's next. */
static int
tls_srv_add(wf_tls_srv_t *t, const char *name, const json_t *pems,
            const json_t *tls, char *why, size_t whysize)
{
    json_t *pem = json_object_get(pems, name);
    SSL_CTX *ctx;

    if (!json_is_string(pem)) {
        return tls_fail(why, whysize, "Certificate \"%.200s\" is not found.",
                        name);
    }
    ctx = tls_ctx_create(name, json_string_value(pem), json_string_length(pem),
                         tls, why, whysize);
    if (ctx == NULL) {
        return WF_ERROR;
    }
    t->ctxs[t->nctxs++] = ctx;
    if (json_is_true(json_object_get(tls, "ocsp_stapling"))) {
        wf_tls_ocsp_attach(ctx, name);
    }
    if (tls_names_add(t, SSL_CTX_get0_certificate(ctx), t->nctxs - 1)
        != WF_OK) {
        return tls_fail(why, whysize, "Out of memory.");
    }
    return WF_OK;
}

wf_tls_srv_t *
wf_tls_srv_create(const json_t *tls, const json_t *pems, char *why,
                  size_t whysize)
{
    json_t *cert = json_object_get(tls, "certificate");
    size_t n = json_is_array(cert) ? json_array_size(cert) : 1;
    wf_tls_srv_t *t = calloc(1, sizeof(*t));

    pthread_once(&tls_tickets_once, tls_tickets_init);
    if (t == NULL || (t->ctxs = calloc(n, sizeof(*t->ctxs))) == NULL
        || tls_peer_index < 0) {
        free(t);
        tls_fail(why, whysize, "Out of memory.");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(cert) ? json_array_get(cert, i) : cert;

        if (tls_srv_add(t, json_string_value(e), pems, tls, why, whysize)
            != WF_OK) {
            wf_tls_srv_destroy(t);
            return NULL;
        }
    }
    if (tls_srv_verify(t, json_object_get(tls, "client_certificate"), pems, why,
                       whysize)
        != WF_OK) {
        wf_tls_srv_destroy(t);
        return NULL;
    }
    if (n > 1) {
        SSL_CTX_set_tlsext_servername_callback(t->ctxs[0], tls_on_servername);
        SSL_CTX_set_tlsext_servername_arg(t->ctxs[0], t);
    }
    return t;
}

void
wf_tls_srv_destroy(wf_tls_srv_t *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->nctxs; i++) {
        SSL_CTX_free(t->ctxs[i]); /* live SSLs keep their own reference */
    }
    for (size_t i = 0; i < t->nnames; i++) {
        free(t->names[i].name);
    }
    free(t->names);
    free(t->ctxs);
    free(t);
}

/* ---- the transport ------------------------------------------------------ */

/* errno for a failed SSL call; -1 with EAGAIN when it would block. */
static ssize_t
tls_io_error(SSL *ssl, int rc)
{
    int e = SSL_get_error(ssl, rc);

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0; /* close_notify, or an EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
    }
    if (e != SSL_ERROR_SYSCALL || errno == 0) {
        errno = ECONNRESET; /* a protocol error: as good as a reset */
    }
    ERR_clear_error();
    return -1;
}

ssize_t
wf_tls_xprt_error(wf_xprt_t *x, int rc)
{
    return tls_io_error(x->tls, rc);
}

/* x->state: the last read wanted more bytes from the socket, so what
 * OpenSSL holds unprocessed (read ahead) is an incomplete record, and the
 * socket will poll readable for the rest. */
#define TLS_X_READ_WANTS 0x1u

static ssize_t
tls_recv(wf_xprt_t *x, int fd, void *buf, size_t n)
{
    SSL *ssl = x->tls;
    size_t got = 0;
    int rc;

    wf_unused(fd);
    errno = 0;
    rc = SSL_read_ex(ssl, buf, n, &got);
    if (rc == 1) {
        x->state &= ~TLS_X_READ_WANTS;
        return (ssize_t)got;
    }
    if (SSL_get_error(ssl, rc) == SSL_ERROR_WANT_READ) {
        x->state |= TLS_X_READ_WANTS;
    }
    return tls_io_error(ssl, rc);
}

/* Stages the plaintext at offset skip of msg's iovecs (at most TLS_WBUF
 * bytes); returns the count. */
static size_t
tls_stage_iov(const struct msghdr *msg, size_t skip)
{
    size_t n = 0;

    for (size_t i = 0; i < (size_t)msg->msg_iovlen && n < TLS_WBUF; i++) {
        const struct iovec *v = &msg->msg_iov[i];
        size_t k;

        if (skip >= v->iov_len) {
            skip -= v->iov_len;
            continue;
        }
        k = wf_min(v->iov_len - skip, (size_t)(TLS_WBUF - n));
        memcpy(tls_wbuf + n, (const char *)v->iov_base + skip, k);
        n += k;
        skip = 0;
    }
    return n;
}

/* Writes what is staged; returns written bytes, 0 when it would block, or
 * -1 (errno set). */
static ssize_t
tls_write_staged(SSL *ssl, size_t n)
{
    size_t w = 0;
    int rc;

    errno = 0;
    rc = SSL_write_ex(ssl, tls_wbuf, n, &w);
    if (rc == 1) {
        return (ssize_t)w;
    }
    if (tls_io_error(ssl, rc) == 0) {
        errno = EPIPE; /* the peer said goodbye */
        return -1;
    }
    return errno == EAGAIN ? 0 : -1;
}

ssize_t
wf_tls_xprt_sendmsg(wf_xprt_t *x, const struct msghdr *msg)
{
    size_t done = 0;

    while (done < TLS_WRITE_MAX) {
        size_t n = tls_stage_iov(msg, done);
        ssize_t w;

        if (n == 0) {
            break;
        }
        w = tls_write_staged(x->tls, n);
        if (w < 0) {
            return -1;
        }
        if (w == 0) {
            break;
        }
        done += (size_t)w;
    }
    if (done == 0) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)done;
}

static ssize_t
tls_sendmsg(wf_xprt_t *x, int fd, const struct msghdr *msg, int flags)
{
    wf_unused(fd);
    wf_unused(flags);
    return wf_tls_xprt_sendmsg(x, msg);
}

/* With kTLS sending (the kernel encrypts): SSL_sendfile(), no copy. */
static ssize_t
tls_sendfile_ktls(SSL *ssl, int in_fd, off_t *off, size_t n)
{
    ossl_ssize_t w;

    errno = 0;
    w = SSL_sendfile(ssl, in_fd, *off, wf_min(n, (size_t)TLS_WRITE_MAX), 0);
    if (w > 0) {
        *off += (off_t)w;
        return (ssize_t)w;
    }
    if (tls_io_error(ssl, (int)w) == 0) {
        errno = EPIPE;
    }
    return -1;
}

/* Without kTLS the file goes through user space: pread() one record's
 * worth, encrypt, write. */
static ssize_t
tls_sendfile(wf_xprt_t *x, int fd, int in_fd, off_t *off, size_t n)
{
    size_t done = 0;

    wf_unused(fd);
    if (BIO_get_ktls_send(SSL_get_wbio(x->tls))) {
        return tls_sendfile_ktls(x->tls, in_fd, off, n);
    }
    while (done < n && done < TLS_WRITE_MAX) {
        ssize_t r =
            pread(in_fd, tls_wbuf, wf_min(n - done, (size_t)TLS_WBUF), *off);
        ssize_t w;

        if (r <= 0) {
            if (done > 0) {
                break;
            }
            return r;
        }
        w = tls_write_staged(x->tls, (size_t)r);
        if (w < 0) {
            return -1;
        }
        if (w == 0) {
            break;
        }
        *off += w;
        done += (size_t)w;
    }
    if (done == 0) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)done;
}

static int
tls_shutdown(wf_xprt_t *x, int fd)
{
    /* One try at close_notify: the socket is closed soon whatever comes. */
    SSL_shutdown(x->tls);
    ERR_clear_error();
    return shutdown(fd, SHUT_WR);
}

static void
tls_close(wf_xprt_t *x)
{
    SSL *ssl = x->tls;

    /* A close_notify, once, when the session is up and none went yet: a
     * keep-alive connection that times out ends cleanly for the client. */
    if (SSL_is_init_finished(ssl)
        && (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) == 0) {
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
    SSL_free(ssl);
    x->tls = NULL;
}

/* Decrypted bytes, or (read ahead) records not processed yet, unless the
 * last read found them incomplete. */
static bool
tls_pending(const wf_xprt_t *x)
{
    return SSL_pending(x->tls) > 0
           || ((x->state & TLS_X_READ_WANTS) == 0 && SSL_has_pending(x->tls));
}

static const wf_xprt_ops_t tls_ops = {
    .name = "tls",
    .recv = tls_recv,
    .sendmsg = tls_sendmsg,
    .sendfile = tls_sendfile,
    .shutdown = tls_shutdown,
    .pending = tls_pending,
    .close = tls_close,
};

int
wf_tls_open(wf_xprt_t *x, wf_tls_srv_t *t, int fd)
{
    SSL *ssl = SSL_new(t->ctxs[0]);

    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        wf_log_error(ENOMEM, "SSL_new() failed");
        return WF_ERROR;
    }
    SSL_set_accept_state(ssl);
    x->tls = ssl;
    x->state = 0;
    x->ops = &tls_ops;
    return WF_OK;
}

int
wf_tls_handshake(wf_xprt_t *x, uint32_t *events)
{
    SSL *ssl = x->tls;
    int rc;
    int e;

    errno = 0;
    rc = SSL_do_handshake(ssl);
    if (rc == 1) {
        if (SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE) {
            tls_peer_read(ssl); /* "client_certificate" listeners only */
        }
        if (tls_ktls) { /* the cipher decides whether the kernel takes it */
            wf_log_debug("kTLS send %s for %s",
                         BIO_get_ktls_send(SSL_get_wbio(ssl)) ? "on" : "off",
                         SSL_get_cipher_name(ssl));
        }
        return WF_OK;
    }
    e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        return WF_AGAIN;
    }
    if (e == SSL_ERROR_SSL) {
        char buf[256];

        ERR_error_string_n(ERR_peek_last_error(), buf, sizeof(buf));
        wf_log_info("SSL_do_handshake() failed: %s", buf);
    }
    ERR_clear_error();
    return WF_ERROR;
}

bool
wf_tls_var_get(const wf_xprt_t *x, wf_tls_var_t var, wf_str_t *v)
{
    SSL *ssl = x != NULL && x->ops == &tls_ops ? x->tls : NULL;
    const tls_peer_t *p;
    const char *s;

    if (ssl == NULL) {
        return false;
    }
    switch (var) {
    case WF_TLS_VAR_PROTOCOL:
        s = SSL_get_version(ssl);
        break;
    case WF_TLS_VAR_CIPHER:
        s = SSL_get_cipher_name(ssl);
        break;
    case WF_TLS_VAR_SNI:
        s = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        break;
    default:
        p = var < WF_TLS_VAR_N ? SSL_get_ex_data(ssl, tls_peer_index) : NULL;
        if (p == NULL || !p->has[var]) {
            return false;
        }
        *v = wf_str_make(p->text + p->off[var], p->len[var]);
        return true;
    }
    if (s == NULL) {
        return false;
    }
    *v = wf_str_make(s, strlen(s));
    return true;
}
