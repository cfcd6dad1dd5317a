/* Helpers the unit-test groups share. */
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

json_t *
wf_test_json_parse(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);

    if (v == NULL) {
        print_message("bad test JSON %s: %s\n", text, err.text);
    }
    assert_non_null(v);
    return v;
}

/* shared/unit-configs beside the source tree: found by walking up from the
 * test binary (the source tree is /work/main with /work/shared beside it;
 * build directories nest one or two levels).  WF_UNIT_CONFIGS overrides. */
bool
wf_test_unit_configs_dir(char *dir, size_t cap)
{
    char path[PATH_MAX / 2]; /* leaves room in dir for the suffixes */
    ssize_t n;
    char *slash;

    if (getenv("WF_UNIT_CONFIGS") != NULL) {
        snprintf(dir, cap, "%s", getenv("WF_UNIT_CONFIGS"));
        return true;
    }
    n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n <= 0) {
        return false;
    }
    path[n] = '\0';
    while ((slash = strrchr(path, '/')) != NULL && slash != path) {
        *slash = '\0';
        snprintf(dir, cap, "%s/shared/unit-configs", path);
        if (access(dir, R_OK) == 0) {
            return true;
        }
        snprintf(dir, cap, "%s/../shared/unit-configs", path);
        if (access(dir, R_OK) == 0) {
            return true;
        }
    }
    return false;
}

char *
wf_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long size;

    if (f == NULL) {
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0
        && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size + 1))
        && fread(buf, 1, (size_t)size, f) == (size_t)size) {
        *len = (size_t)size;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* ---- certificates --------------------------------------------------- */

static void
cert_pem_text(BIO *bio, char *out, size_t cap)
{
    char *p;
    long n = BIO_get_mem_data(bio, &p);

    assert_true(n > 0 && (size_t)n < cap);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    BIO_free(bio);
}

/* A certificate for cn (with SAN DNS names san, comma-separated, or NULL)
 * signed by issuer (NULL: self-signed), valid from days_from to days_to. */
void
wf_test_cert_make(wf_test_cert_t *c, bool ec, const char *cn, const char *san,
                  wf_test_cert_t *issuer, long days_from, long days_to)
{
    X509_NAME *name;
    BIO *bio;

    c->key = ec ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
    assert_non_null(c->key);
    c->x = X509_new();
    X509_set_version(c->x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c->x), (long)random());
    X509_gmtime_adj(X509_getm_notBefore(c->x), days_from * 86400);
    X509_gmtime_adj(X509_getm_notAfter(c->x), days_to * 86400);
    X509_set_pubkey(c->x, c->key);
    name = X509_get_subject_name(c->x);
    X509_NAME_add_entry_by_txt(name, "C", MBSTRING_ASC,
                               (const unsigned char *)"FR", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               (const unsigned char *)"Wharf", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c->x, issuer != NULL ? X509_get_subject_name(issuer->x)
                                              : name);
    if (san != NULL) {
        X509_EXTENSION *ext =
            X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);

        X509_add_ext(c->x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(
        X509_sign(c->x, issuer != NULL ? issuer->key : c->key, EVP_sha256())
        > 0);
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, c->key, NULL, NULL, 0, NULL, NULL);
    cert_pem_text(bio, c->key_pem, sizeof(c->key_pem));
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, c->x);
    cert_pem_text(bio, c->x_pem, sizeof(c->x_pem));
}

void
wf_test_cert_free(wf_test_cert_t *c)
{
    EVP_PKEY_free(c->key);
    X509_free(c->x);
}
