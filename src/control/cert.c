#include "control/cert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/str.h"
#include "net/tls.h"

#define CERT_NAME_MAX 255

/* {NAME: {"pem": PEM, "info": {...}}}: the controller's store. */
static json_t *cert_store;

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
    X509_NAME *name =
        issuer ? X509_get_issuer_name(x) : X509_get_subject_name(x);
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
cert_chain_info(wf_tls_bundle_t *b)
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
    wf_tls_bundle_t b = {0};

    *info = NULL;
    if (len == 0 || len > WF_CERT_PEM_MAX) {
        snprintf(why, whysize, "%s",
                 len == 0 ? "the body is empty" : "the bundle is too large");
        return WF_ERROR;
    }
    if (wf_tls_bundle_read_any(&b, pem, len, why, whysize) != WF_OK) {
        return WF_ERROR;
    }
    /* A bundle without a key is CA certificates (client_certificate's
     * "ca"): described without "key". */
    *info = json_pack("{s:o*, s:o?}", "key",
                      b.key != NULL ? cert_key_info(b.key) : NULL, "chain",
                      cert_chain_info(&b));
    wf_tls_bundle_fini(&b);
    if (*info == NULL) {
        snprintf(why, whysize, "out of memory");
        return WF_ERROR;
    }
    return WF_OK;
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

    json_object_foreach(cert_store, key, v)
    {
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

    return key != NULL
               ? json_object_get(json_object_get(cert_store, key), "info")
               : NULL;
}

json_t *
wf_cert_store_infos(void)
{
    json_t *all = json_object();
    const char *key;
    json_t *v;

    json_object_foreach(cert_store, key, v)
    {
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
cert_store_load_one(const char *dir, const char *name, void *arg)
{
    char why[256];
    json_t *info;
    size_t len;
    char *pem;
    bool ok = false;

    wf_unused(arg);
    pem = cert_file_read(dir, name, &len);
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
wf_cert_dir_walk(const char *dir, wf_cert_dir_cb fn, void *arg)
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
        if (wf_cert_name_is_valid(de->d_name, strlen(de->d_name))
            && fn(dir, de->d_name, arg)) {
            n++;
        }
    }
    closedir(d);
    return n;
}

size_t
wf_cert_store_load(const char *dir)
{
    return wf_cert_dir_walk(dir, cert_store_load_one, NULL);
}

/* Calls fn on c's name(s) (a string or an array of strings) until it
 * returns false; returns false if fn did. */
static bool
cert_foreach_in(const json_t *c, bool (*fn)(const char *, void *), void *arg)
{
    size_t i;
    json_t *e;

    if (json_is_string(c) && !fn(json_string_value(c), arg)) {
        return false;
    }
    json_array_foreach(c, i, e)
    {
        if (json_is_string(e) && !fn(json_string_value(e), arg)) {
            return false;
        }
    }
    return true;
}

/* Calls fn on the names a backend's "tls" object gives ("ca" and
 * "certificate"); returns false if fn did. */
static bool
cert_foreach_in_backend(const json_t *tls, bool (*fn)(const char *, void *),
                        void *arg)
{
    return cert_foreach_in(json_object_get(tls, "ca"), fn, arg)
           && cert_foreach_in(json_object_get(tls, "certificate"), fn, arg);
}

/* Calls fn on the backend names of every "proxy_settings" under v (the
 * routes: steps, actions, "fallback"s at any depth). */
static bool
cert_foreach_in_routes(const json_t *v, bool (*fn)(const char *, void *),
                       void *arg)
{
    const char *key;
    size_t i;
    json_t *e;

    json_object_foreach((json_t *)v, key, e)
    {
        if (strcmp(key, "proxy_settings") == 0
            && !cert_foreach_in_backend(json_object_get(e, "tls"), fn, arg)) {
            return false;
        }
        if (!cert_foreach_in_routes(e, fn, arg)) {
            return false;
        }
    }
    json_array_foreach(v, i, e)
    {
        if (!cert_foreach_in_routes(e, fn, arg)) {
            return false;
        }
    }
    return true;
}

/* Calls fn on each certificate name conf gives: its listeners'
 * "certificate" and "client_certificate"'s "ca", an rhttp@ listener's
 * "reverse" "tls", and the backends'
 * "tls" ("ca", "certificate") of routes and upstreams, until it returns
 * false; returns false if fn did. */
static bool
cert_foreach_name(const json_t *conf, bool (*fn)(const char *, void *),
                  void *arg)
{
    const char *lname;
    json_t *l;

    if (!cert_foreach_in_routes(json_object_get(conf, "routes"), fn, arg)) {
        return false;
    }
    json_object_foreach(json_object_get(conf, "upstreams"), lname, l)
    {
        json_t *settings = json_object_get(l, "settings");

        if (!cert_foreach_in_backend(json_object_get(settings, "tls"), fn,
                                     arg)) {
            return false;
        }
    }

    json_object_foreach(json_object_get(conf, "listeners"), lname, l)
    {
        json_t *tls = json_object_get(l, "tls");
        json_t *cc = json_object_get(tls, "client_certificate");

        if (!cert_foreach_in(json_object_get(tls, "certificate"), fn, arg)
            || !cert_foreach_in(json_object_get(cc, "ca"), fn, arg)
            /* a reverse listener's own "tls" (rhttp@NAME, issue 13) */
            || !cert_foreach_in_backend(
                json_object_get(json_object_get(l, "reverse"), "tls"), fn,
                arg)) {
            return false;
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

json_t *
wf_cert_store_pems_all(void)
{
    json_t *pems = json_object();
    const char *key;
    json_t *v;

    json_object_foreach(cert_store, key, v)
    {
        if (pems != NULL
            && json_object_set(pems, key, json_object_get(v, "pem")) != 0) {
            json_decref(pems);
            pems = NULL;
        }
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
