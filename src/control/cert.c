#include "control/cert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/str.h"

#define CERT_NAME_MAX  255
#define CERT_CHAIN_MAX 32 /* certificates in one bundle */

typedef struct cert_bundle {
    EVP_PKEY *key;
    X509 *chain[CERT_CHAIN_MAX];
    size_t count;
    char *why; /* where the reason goes */
    size_t whysize;
} cert_bundle_t;

/* {NAME: {"pem": PEM, "info": {...}}}: the controller's store. */
static json_t *cert_store;

static int
cert_fail(cert_bundle_t *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(b->why, b->whysize, fmt, ap);
    va_end(ap);
    return WF_ERROR;
}

static void
cert_bundle_fini(cert_bundle_t *b)
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
cert_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t k = strlen(suffix);

    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* One private key block: "PRIVATE KEY" (PKCS#8) or "<ALG> PRIVATE KEY"
 * (PKCS#1, SEC1, ...); d2i_AutoPrivateKey() tells them apart. */
static int
cert_add_key(cert_bundle_t *b, const char *header, const unsigned char *data,
             long length)
{
    const unsigned char *p = data;
    EVP_PKEY *key;

    if (strstr(header, "ENCRYPTED") != NULL) {
        return cert_fail(b, "encrypted PEM isn't supported");
    }
    if (b->key != NULL) {
        return cert_fail(b, "multiple private keys in PEM");
    }
    key = d2i_AutoPrivateKey(NULL, &p, length);
    if (key == NULL) {
        return cert_fail(b, "the private key cannot be decoded");
    }
    b->key = key;
    return WF_OK;
}

static int
cert_add_x509(cert_bundle_t *b, const unsigned char *data, long length,
              bool trusted)
{
    const unsigned char *p = data;
    X509 *x;

    if (b->count == CERT_CHAIN_MAX) {
        return cert_fail(b, "more than %d certificates in PEM",
                         CERT_CHAIN_MAX);
    }
    x = trusted ? d2i_X509_AUX(NULL, &p, length) : d2i_X509(NULL, &p, length);
    if (x == NULL) {
        return cert_fail(b, "certificate %zu cannot be decoded", b->count + 1);
    }
    b->chain[b->count++] = x;
    return WF_OK;
}

/* One PEM block, by its type (Unit's nxt_cert_bio()).  "EC PARAMETERS",
 * which `openssl ecparam -genkey` writes before the key, is skipped. */
static int
cert_add_block(cert_bundle_t *b, const char *type, const char *header,
               const unsigned char *data, long length)
{
    if (strcmp(type, PEM_STRING_X509) == 0
        || strcmp(type, PEM_STRING_X509_OLD) == 0) {
        return cert_add_x509(b, data, length, false);
    }
    if (strcmp(type, PEM_STRING_X509_TRUSTED) == 0) {
        return cert_add_x509(b, data, length, true);
    }
    if (strcmp(type, PEM_STRING_PKCS8) == 0) {
        return cert_fail(b, "PEM PKCS8 isn't supported");
    }
    if (strcmp(type, PEM_STRING_PKCS8INF) == 0
        || cert_has_suffix(type, " " PEM_STRING_PKCS8INF)) {
        return cert_add_key(b, header, data, length);
    }
    if (strcmp(type, PEM_STRING_ECPARAMETERS) == 0) {
        return WF_OK;
    }
    return cert_fail(b, "unsupported PEM type: \"%.64s\"", type);
}

static int
cert_read_blocks(cert_bundle_t *b, BIO *bio)
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
            return cert_fail(b, "the PEM text is malformed");
        }
        rc = cert_add_block(b, type, header, data, length);
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
cert_check(cert_bundle_t *b)
{
    if (b->key == NULL) {
        return cert_fail(b, "no key found");
    }
    if (b->count == 0) {
        return cert_fail(b, "no certificates found");
    }
    if (X509_check_private_key(b->chain[0], b->key) != 1) {
        return cert_fail(b, "the private key does not match the first "
                            "certificate");
    }
    for (size_t i = 1; i < b->count; i++) {
        if (X509_check_issued(b->chain[i], b->chain[i - 1]) != X509_V_OK) {
            return cert_fail(b,
                             "certificate %zu is not the issuer of "
                             "certificate %zu",
                             i + 1, i);
        }
    }
    return WF_OK;
}

static json_t *
cert_key_info(EVP_PKEY *key)
{
    char buf[64];

    switch (EVP_PKEY_base_id(key)) {
    case EVP_PKEY_RSA:
        snprintf(buf, sizeof(buf), "RSA (%d bits)", EVP_PKEY_bits(key));
        return json_string(buf);
    case EVP_PKEY_DH:
        snprintf(buf, sizeof(buf), "DH (%d bits)", EVP_PKEY_bits(key));
        return json_string(buf);
    case EVP_PKEY_EC:
        return json_string("ECDH");
    default:
        return json_string("unknown");
    }
}

/* The DNS names of x's subject (or issuer) alternative names, or NULL
 * when it has none. */
static json_t *
cert_alt_names(X509 *x, bool issuer)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(
        x, issuer ? NID_issuer_alt_name : NID_subject_alt_name, NULL, NULL);
    json_t *a;

    if (names == NULL) {
        return NULL;
    }
    a = json_array();
    for (int i = 0; a != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *n = sk_GENERAL_NAME_value(names, i);

        if (n->type != GEN_DNS) {
            continue;
        }
        json_array_append_new(
            a, json_stringn((const char *)ASN1_STRING_get0_data(n->d.dNSName),
                            (size_t)ASN1_STRING_length(n->d.dNSName)));
    }
    GENERAL_NAMES_free(names);
    return a;
}

/* Unit's nxt_cert_name_details(): the fields in this order, and
 * "alt_names" right after "common_name". */
static json_t *
cert_name_info(X509 *x, bool issuer)
{
    static const struct {
        int nid;
        const char *key;
    } nids[] = {
        {NID_commonName, "common_name"},
        {NID_countryName, "country"},
        {NID_stateOrProvinceName, "state_or_province"},
        {NID_localityName, "locality"},
        {NID_organizationName, "organization"},
        {NID_organizationalUnitName, "department"},
    };
    X509_NAME *name = issuer ? X509_get_issuer_name(x) : X509_get_subject_name(x);
    json_t *alt = cert_alt_names(x, issuer);
    json_t *o = json_object();
    char buf[256];

    for (size_t i = 0; o != NULL && i < wf_nitems(nids); i++) {
        int n;

        if (i == 1 && alt != NULL) {
            json_object_set_new(o, "alt_names", alt);
            alt = NULL;
        }
        n = X509_NAME_get_text_by_NID(name, nids[i].nid, buf, sizeof(buf));
        if (n >= 0) {
            json_object_set_new(o, nids[i].key, json_stringn(buf, (size_t)n));
        }
    }
    json_decref(alt);
    return o;
}

static json_t *
cert_time(const ASN1_TIME *t)
{
    BIO *bio = BIO_new(BIO_s_mem());
    json_t *s = NULL;
    char *p;
    long n;

    if (bio != NULL && ASN1_TIME_print(bio, t) == 1) {
        n = BIO_get_mem_data(bio, &p);
        s = json_stringn(p, (size_t)n);
    }
    BIO_free(bio);
    return s;
}

static json_t *
cert_chain_info(cert_bundle_t *b)
{
    json_t *chain = json_array();

    for (size_t i = 0; chain != NULL && i < b->count; i++) {
        X509 *x = b->chain[i];
        json_t *e = json_pack("{s:o?, s:o?, s:{s:o?, s:o?}}", "subject",
                              cert_name_info(x, false), "issuer",
                              cert_name_info(x, true), "validity", "since",
                              cert_time(X509_get0_notBefore(x)), "until",
                              cert_time(X509_get0_notAfter(x)));

        if (e == NULL || json_array_append_new(chain, e) != 0) {
            json_decref(chain);
            chain = NULL;
        }
    }
    return chain;
}

int
wf_cert_parse(const char *pem, size_t len, json_t **info, char *why,
              size_t whysize)
{
    cert_bundle_t b = {.why = why, .whysize = whysize};
    BIO *bio;
    int rc;

    *info = NULL;
    if (len == 0 || len > WF_CERT_PEM_MAX) {
        return cert_fail(&b, len == 0 ? "the body is empty"
                                      : "the bundle is too large");
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        return cert_fail(&b, "out of memory");
    }
    rc = cert_read_blocks(&b, bio);
    BIO_free(bio);
    if (rc == WF_OK) {
        rc = cert_check(&b);
    }
    if (rc == WF_OK) {
        *info = json_pack("{s:o?, s:o?}", "key", cert_key_info(b.key), "chain",
                          cert_chain_info(&b));
        if (*info == NULL) {
            rc = cert_fail(&b, "out of memory");
        }
    }
    ERR_clear_error();
    cert_bundle_fini(&b);
    return rc;
}

bool
wf_cert_name_is_valid(const char *name, size_t len)
{
    return len > 0 && len <= CERT_NAME_MAX && name[0] != '.'
           && memchr(name, '/', len) == NULL && memchr(name, '\0', len) == NULL;
}

/* ---- the store ---------------------------------------------------------- */

/* The store's key for name (case-insensitive), or NULL. */
static const char *
cert_store_key(const char *name, size_t len)
{
    const char *key;
    json_t *v;

    json_object_foreach(cert_store, key, v) {
        if (wf_str_eq_nocase(wf_str_make(key, strlen(key)),
                             wf_str_make(name, len))) {
            return key;
        }
    }
    return NULL;
}

json_t *
wf_cert_store_info(const char *name, size_t len)
{
    const char *key = cert_store_key(name, len);

    return key != NULL ? json_object_get(json_object_get(cert_store, key),
                                         "info")
                       : NULL;
}

json_t *
wf_cert_store_infos(void)
{
    json_t *all = json_object();
    const char *key;
    json_t *v;

    json_object_foreach(cert_store, key, v) {
        if (all != NULL
            && json_object_set(all, key, json_object_get(v, "info")) != 0) {
            json_decref(all);
            all = NULL;
        }
    }
    return all;
}

int
wf_cert_store_set(const char *name, const char *pem, size_t len, json_t *info)
{
    json_t *e = json_pack("{s:s%, s:o}", "pem", pem, len, "info", info);

    if (cert_store == NULL) {
        cert_store = json_object();
    }
    if (e == NULL || cert_store == NULL) {
        json_decref(e);
        return WF_ERROR;
    }
    wf_cert_store_del(name);
    return json_object_set_new(cert_store, name, e) == 0 ? WF_OK : WF_ERROR;
}

void
wf_cert_store_del(const char *name)
{
    const char *key = cert_store_key(name, strlen(name));

    if (key != NULL) {
        json_object_del(cert_store, key);
    }
}

void
wf_cert_store_clear(void)
{
    json_decref(cert_store);
    cert_store = NULL;
}

/* Reads dir/name (at most WF_CERT_PEM_MAX bytes) into a new buffer. */
static char *
cert_file_read(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    struct stat st;
    char *buf = NULL;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1) {
        wf_log_error(errno, "open(\"%s\") failed", path);
        return NULL;
    }
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0
        && (size_t)st.st_size <= WF_CERT_PEM_MAX) {
        buf = malloc((size_t)st.st_size);
    }
    if (buf != NULL && read(fd, buf, (size_t)st.st_size) != st.st_size) {
        free(buf);
        buf = NULL;
    }
    if (buf == NULL) {
        wf_log_error(errno, "\"%s\" cannot be read", path);
    }
    *len = buf != NULL ? (size_t)st.st_size : 0;
    close(fd);
    return buf;
}

static bool
cert_store_load_one(const char *dir, const char *name)
{
    char why[256];
    json_t *info;
    size_t len;
    char *pem = cert_file_read(dir, name, &len);
    bool ok = false;

    if (pem == NULL) {
        return false;
    }
    if (wf_cert_parse(pem, len, &info, why, sizeof(why)) != WF_OK) {
        wf_log_error(0, "certificate \"%s\" in \"%s\" is not loaded: %s", name,
                     dir, why);
    } else {
        ok = wf_cert_store_set(name, pem, len, info) == WF_OK;
    }
    free(pem);
    return ok;
}

size_t
wf_cert_store_load(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    if (d == NULL) {
        if (errno != ENOENT) {
            wf_log_error(errno, "opendir(\"%s\") failed", dir);
        }
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);

        if (wf_cert_name_is_valid(de->d_name, len)
            && cert_store_load_one(dir, de->d_name)) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* Calls fn on each certificate name conf's listeners give, until it
 * returns false; returns false if fn did. */
static bool
cert_foreach_name(const json_t *conf, bool (*fn)(const char *, void *),
                  void *arg)
{
    const char *lname;
    json_t *l;

    json_object_foreach(json_object_get(conf, "listeners"), lname, l) {
        json_t *c = json_object_get(json_object_get(l, "tls"), "certificate");
        size_t i;
        json_t *e;

        if (json_is_string(c) && !fn(json_string_value(c), arg)) {
            return false;
        }
        json_array_foreach(c, i, e) {
            if (json_is_string(e) && !fn(json_string_value(e), arg)) {
                return false;
            }
        }
    }
    return true;
}

static bool
cert_add_pem(const char *name, void *arg)
{
    const char *key = cert_store_key(name, strlen(name));
    json_t *pem;

    if (key == NULL) {
        return true;
    }
    pem = json_object_get(json_object_get(cert_store, key), "pem");
    return json_object_set(arg, name, pem) == 0;
}

json_t *
wf_cert_store_pems(const json_t *conf)
{
    json_t *pems = json_object();

    if (pems != NULL && !cert_foreach_name(conf, cert_add_pem, pems)) {
        json_decref(pems);
        pems = NULL;
    }
    return pems;
}

static bool
cert_differs(const char *name, void *arg)
{
    const wf_str_t *s = arg;

    return !wf_str_eq_nocase(wf_str_make(name, strlen(name)), *s);
}

bool
wf_cert_is_used(const json_t *conf, const char *name, size_t len)
{
    wf_str_t s = wf_str_make(name, len);

    return !cert_foreach_name(conf, cert_differs, &s);
}
