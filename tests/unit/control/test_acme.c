/* The ACME client's pieces without a server (control/acme_crypto.h,
 * acme_http.h, acme.h): base64url, the JWS (verified here with the
 * account's public key), the thumbprint, the CSR, the TLS-ALPN-01
 * certificate's acmeIdentifier, URL splitting and the PUT body's
 * validation.  The flow itself runs against pebble in
 * tests/integration/test_acme.py. */
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/acme.h"
#include "control/acme_client.h"
#include "control/acme_crypto.h"
#include "control/acme_http.h"
#include "control/cert.h"
#include "core/common.h"
#include "unit.h"

static void
test_b64url(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"", ""},
        {"f", "Zg"},
        {"fo", "Zm8"},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg"},
        {"fooba", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy"},
        {"\xfb\xff", "-_8"},
    };

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        char *s = wf_acme_b64url((const unsigned char *)cases[i].in,
                                 strlen(cases[i].in));

        assert_string_equal(s, cases[i].out);
        free(s);
    }
}

/* Decodes base64url (for the checks only). */
static unsigned char *
test_unb64url(const char *s, size_t *n)
{
    size_t len = strlen(s);
    char *std = malloc(len + 4);
    unsigned char *out = malloc(len + 4);
    size_t i;
    int r;

    for (i = 0; i < len; i++) {
        std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    }
    while (i % 4 != 0) {
        std[i++] = '=';
    }
    std[i] = '\0';
    r = EVP_DecodeBlock(out, (unsigned char *)std, (int)i);
    assert_true(r >= 0);
    *n = (size_t)r - (len % 4 == 2 ? 2 : len % 4 == 3 ? 1 : 0);
    free(std);
    return out;
}

static bool
test_es256_verify(EVP_PKEY *k, const char *input, const unsigned char *rs)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    unsigned char *der = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int n;
    bool ok;

    ECDSA_SIG_set0(sig, BN_bin2bn(rs, 32, NULL), BN_bin2bn(rs + 32, 32, NULL));
    n = i2d_ECDSA_SIG(sig, &der);
    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1
         && EVP_DigestVerify(md, der, (size_t)n, (const unsigned char *)input,
                             strlen(input))
                == 1;
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    return ok;
}

static void
test_jws(void **state)
{
    EVP_PKEY *k = wf_acme_key_create(WF_ACME_KEY_P256);
    char *jws =
        wf_acme_jws(k, NULL, "nonce1", "https://a/new-acct", "{\"x\":1}");
    json_t *j = json_loads(jws, 0, NULL);
    const char *ph = json_string_value(json_object_get(j, "protected"));
    const char *pp = json_string_value(json_object_get(j, "payload"));
    const char *sig = json_string_value(json_object_get(j, "signature"));
    unsigned char *hdr;
    unsigned char *rs;
    char *input;
    json_t *h;
    size_t n;
    char *thumb;
    char *jwk;
    unsigned char md[SHA256_DIGEST_LENGTH];
    char *expect;

    wf_unused(state);
    assert_non_null(ph);
    assert_non_null(pp);
    assert_non_null(sig);
    assert_string_equal(pp, "eyJ4IjoxfQ");
    hdr = test_unb64url(ph, &n);
    h = json_loadb((char *)hdr, n, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(h, "nonce")),
                        "nonce1");
    assert_string_equal(json_string_value(json_object_get(h, "url")),
                        "https://a/new-acct");
    assert_null(json_object_get(h, "kid"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(h, "jwk"), "crv")),
        "P-256");
    rs = test_unb64url(sig, &n);
    assert_int_equal(n, 64);
    input = malloc(strlen(ph) + strlen(pp) + 2);
    sprintf(input, "%s.%s", ph, pp);
    assert_true(test_es256_verify(k, input, rs));
    rs[5] ^= 1;
    assert_false(test_es256_verify(k, input, rs));
    /* RFC 7638: the members in order, no blanks. */
    jwk = json_dumps(json_object_get(h, "jwk"), JSON_COMPACT | JSON_SORT_KEYS);
    SHA256((unsigned char *)jwk, strlen(jwk), md);
    expect = wf_acme_b64url(md, sizeof(md));
    thumb = wf_acme_thumbprint(k);
    assert_string_equal(thumb, expect);
    free(expect);
    free(thumb);
    free(jwk);
    free(input);
    free(rs);
    free(hdr);
    json_decref(h);
    json_decref(j);
    free(jws);
    /* With a kid, and the empty payload of a POST-as-GET. */
    jws = wf_acme_jws(k, "https://a/acct/1", "n2", "https://a/x", NULL);
    j = json_loads(jws, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "payload")), "");
    hdr = test_unb64url(json_string_value(json_object_get(j, "protected")), &n);
    h = json_loadb((char *)hdr, n, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(h, "kid")),
                        "https://a/acct/1");
    assert_null(json_object_get(h, "jwk"));
    json_decref(h);
    free(hdr);
    json_decref(j);
    free(jws);
    EVP_PKEY_free(k);
}

static void
test_csr(void **state)
{
    static const wf_acme_key_type_t types[] = {WF_ACME_KEY_P256,
                                               WF_ACME_KEY_RSA2048};
    json_t *domains = json_pack("[s, s]", "a.test", "b.test");

    wf_unused(state);
    for (size_t t = 0; t < wf_nitems(types); t++) {
        EVP_PKEY *k = wf_acme_key_create(types[t]);
        char *csr = wf_acme_csr(k, domains);
        size_t n;
        unsigned char *der;
        const unsigned char *p;
        X509_REQ *req;
        STACK_OF(X509_EXTENSION) * exts;
        GENERAL_NAMES *names;

        assert_non_null(csr);
        der = test_unb64url(csr, &n);
        p = der;
        req = d2i_X509_REQ(NULL, &p, (long)n);
        assert_non_null(req);
        assert_int_equal(X509_REQ_verify(req, k), 1);
        exts = X509_REQ_get_extensions(req);
        names = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
        assert_int_equal(sk_GENERAL_NAME_num(names), 2);
        GENERAL_NAMES_free(names);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        X509_REQ_free(req);
        free(der);
        free(csr);
        EVP_PKEY_free(k);
    }
    json_decref(domains);
}

static void
test_self_signed(void **state)
{
    EVP_PKEY *k = wf_acme_key_create(WF_ACME_KEY_P256);
    json_t *domains = json_pack("[s]", "c.test");
    char *pem = wf_acme_self_signed(k, domains, "tok.thumb", 7);
    unsigned char want[2 + SHA256_DIGEST_LENGTH] = {0x04, 32};
    json_t *info;
    char why[256];
    BIO *bio;
    X509 *x;
    int idx;
    X509_EXTENSION *ext;
    ASN1_OCTET_STRING *v;
    time_t na;
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);

    wf_unused(state);
    assert_non_null(pem);
    /* The store takes it as a bundle. */
    assert_int_equal(wf_cert_parse(pem, strlen(pem), &info, why, sizeof(why)),
                     WF_OK);
    json_decref(info);
    bio = BIO_new_mem_buf(pem, -1);
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    assert_non_null(x);
    idx = X509_get_ext_by_OBJ(x, oid, -1);
    assert_true(idx >= 0);
    ext = X509_get_ext(x, idx);
    assert_int_equal(X509_EXTENSION_get_critical(ext), 1);
    v = X509_EXTENSION_get_data(ext);
    SHA256((const unsigned char *)"tok.thumb", 9, want + 2);
    assert_int_equal(ASN1_STRING_length(v), sizeof(want));
    assert_memory_equal(ASN1_STRING_get0_data(v), want, sizeof(want));
    na = wf_acme_pem_not_after(pem);
    assert_true(na > time(NULL) + 6 * 86400 && na <= time(NULL) + 7 * 86400);
    X509_free(x);
    BIO_free(bio);
    free(pem);
    /* A placeholder has no acmeIdentifier. */
    pem = wf_acme_self_signed(k, domains, NULL, 30);
    bio = BIO_new_mem_buf(pem, -1);
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    assert_true(X509_get_ext_by_OBJ(x, oid, -1) < 0);
    ASN1_OBJECT_free(oid);
    X509_free(x);
    BIO_free(bio);
    free(pem);
    json_decref(domains);
    EVP_PKEY_free(k);
}

static void
test_url_parse(void **state)
{
    static const struct {
        const char *url;
        int rc;
        const char *host;
        unsigned port;
        const char *path;
    } cases[] = {
        {"https://127.0.0.1:14000/dir", WF_OK, "127.0.0.1", 14000, "/dir"},
        {"https://acme.test/dir", WF_OK, "acme.test", 443, "/dir"},
        {"https://acme.test", WF_OK, "acme.test", 443, "/"},
        {"https://[::1]:8443/x/y", WF_OK, "::1", 8443, "/x/y"},
        {"http://acme.test/dir", WF_ERROR, NULL, 0, NULL},
        {"https://:443/", WF_ERROR, NULL, 0, NULL},
        {"https://a:99999/", WF_ERROR, NULL, 0, NULL},
        {"https://a:x/", WF_ERROR, NULL, 0, NULL},
        {"https://[::1/", WF_ERROR, NULL, 0, NULL},
    };

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        char host[64];
        unsigned port;
        const char *path;
        int rc =
            wf_acme_url_parse(cases[i].url, host, sizeof(host), &port, &path);

        assert_int_equal(rc, cases[i].rc);
        if (rc == WF_OK) {
            assert_string_equal(host, cases[i].host);
            assert_int_equal(port, cases[i].port);
            assert_string_equal(path, cases[i].path);
        }
    }
}

static void
test_resp_parse(void **state)
{
    static const struct {
        const char *in;
        int rc;
        int status;
        const char *body;
        const char *nonce;
        const char *location;
        long retry_after;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", WF_OK, 200, "{}",
         NULL, NULL, -1},
        {"HTTP/1.1 201 Created\r\nreplay-nonce: abc \r\nLocation:"
         "https://a/o/1\r\nRetry-After: 3\r\n\r\nxyz",
         WF_OK, 201, "xyz", "abc", "https://a/o/1", 3},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
         WF_OK, 200, "abcde", NULL, NULL, -1},
        {"HTTP/1.1 204 No Content\r\n\r\n", WF_OK, 204, "", NULL, NULL, -1},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nabc", WF_OK, 200, "a",
         NULL, NULL, -1},
        {"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nReplay-Nonce: n\r\n\r\nabc",
         WF_ERROR, 0, NULL, NULL, NULL, -1},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         "9\r\nabc\r\n0\r\n\r\n",
         WF_ERROR, 0, NULL, NULL, NULL, -1},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX",
         WF_ERROR, 0, NULL, NULL, NULL, -1},
        {"HTTP/1.1 200 OK\r\nLocation: /x\r\nTransfer-Encoding: "
         "chunked\r\n\r\nzz\r\n",
         WF_ERROR, 0, NULL, NULL, NULL, -1},
        {"SSH-2.0-OpenSSH\r\n\r\n", WF_ERROR, 0, NULL, NULL, NULL, -1},
        {"HTTP/1.1 200 OK\r\n", WF_ERROR, 0, NULL, NULL, NULL, -1},
    };

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        size_t n = strlen(cases[i].in);
        char *buf = malloc(n + 1);
        wf_acme_resp_t resp;
        char why[128] = "";
        int rc;

        memcpy(buf, cases[i].in, n + 1);
        rc = wf_acme_resp_parse(buf, n, &resp, why, sizeof(why));
        assert_int_equal(rc, cases[i].rc);
        if (rc != WF_OK) {
            assert_true(why[0] != '\0');
            assert_null(resp.body);
            continue;
        }
        assert_int_equal(resp.status, cases[i].status);
        assert_string_equal(resp.body, cases[i].body);
        assert_int_equal(resp.len, strlen(cases[i].body));
        if (cases[i].nonce == NULL) {
            assert_null(resp.nonce);
        } else {
            assert_string_equal(resp.nonce, cases[i].nonce);
        }
        if (cases[i].location == NULL) {
            assert_null(resp.location);
        } else {
            assert_string_equal(resp.location, cases[i].location);
        }
        assert_int_equal(resp.retry_after, cases[i].retry_after);
        wf_acme_resp_fini(&resp);
    }
}

static void
test_put_body(void **state)
{
    static const struct {
        const char *body;
        const char *detail; /* NULL: accepted */
    } cases[] = {
        {"{\"acme\": {\"directory\": \"https://a/d\", \"domains\": "
         "[\"a.test\"]}}",
         NULL},
        {"{\"acme\": {\"directory\": \"https://a/d\", \"domains\": "
         "[\"a.test\"], \"challenge\": \"tls-alpn-01\", \"key_type\": "
         "\"rsa-2048\", \"renew_before_days\": 10, \"email\": \"x@a.test\"}}",
         NULL},
        {"{\"acme\": {\"directory\": \"https://a/d\"}}",
         "Required parameter \"domains\" is missing."},
        {"{\"acme\": {\"directory\": 1, \"domains\": [\"a.test\"]}}",
         "The \"directory\" value must be a string."},
        {"{\"acme\": {\"directory\": \"https://a/d\", \"domains\": "
         "[\"A.test\"]}}",
         "The \"domains\" array must hold lower-case DNS names (no "
         "wildcards)."},
        {"{\"acme\": {\"directory\": \"https://a/d\", \"domains\": "
         "[\"a..test\"]}}",
         "The \"domains\" array must hold lower-case DNS names (no "
         "wildcards)."},
        {"{\"acme\": {\"directory\": \"https://a/d\", \"domains\": "
         "[\"a.test\"], \"email\": \"nobody\"}}",
         "The \"email\" value must be an address."},
        {"{\"acme\": {\"directory\": \"https://a/d\", \"domains\": "
         "[\"a.test\"], \"renew_before_days\": \"30\"}}",
         "The \"renew_before_days\" value must be an integer."},
        {"[]", "The body must be {\"acme\": {...}} or a PEM bundle."},
    };

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        char error[64];
        char detail[256];
        char *pem;
        json_t *st =
            wf_acme_put("x", cases[i].body, strlen(cases[i].body), &pem, error,
                        sizeof(error), detail, sizeof(detail));

        if (cases[i].detail == NULL) {
            json_t *conf = json_object_get(st, "acme");

            assert_non_null(st);
            assert_non_null(pem);
            assert_non_null(json_object_get(conf, "challenge"));
            assert_non_null(json_object_get(conf, "renew_before_days"));
            assert_string_equal(json_string_value(json_object_get(st, "state")),
                                "pending");
            free(pem);
            json_decref(st);
            continue;
        }
        assert_null(st);
        assert_null(pem);
        assert_string_equal(error, "Invalid ACME entry.");
        assert_string_equal(detail, cases[i].detail);
    }
    assert_true(wf_acme_body_is_acme(" \n{", 3));
    assert_false(wf_acme_body_is_acme("-----BEGIN", 10));
}

int
wf_test_acme(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),    cmocka_unit_test(test_jws),
        cmocka_unit_test(test_csr),       cmocka_unit_test(test_self_signed),
        cmocka_unit_test(test_url_parse), cmocka_unit_test(test_resp_parse),
        cmocka_unit_test(test_put_body),
    };

    return cmocka_run_group_tests_name("acme", tests, NULL, NULL);
}
