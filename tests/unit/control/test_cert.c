/* The certificate store's parser and checks (control/cert.h): bundles made
 * here with OpenSSL (RSA and EC keys, a CA and a leaf, a stranger), in
 * every order and with every defect Unit's users hit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/cert.h"
#include "core/common.h"
#include "unit.h"

static wf_test_cert_t cert_ca, cert_leaf, cert_ec, cert_other;

static int
cert_setup(void **state)
{
    wf_unused(state);
    wf_test_cert_make(&cert_ca, false, "Wharf Test CA", NULL, NULL, -1, 365);
    wf_test_cert_make(&cert_leaf, false, "example.com",
                      "DNS:example.com,DNS:*.example.com,IP:127.0.0.1",
                      &cert_ca, -1, 30);
    wf_test_cert_make(&cert_ec, true, "ec.example", NULL, NULL, -1, 30);
    wf_test_cert_make(&cert_other, true, "other", NULL, NULL, -1, 30);
    return 0;
}

static int
cert_teardown(void **state)
{
    wf_unused(state);
    wf_test_cert_free(&cert_ca);
    wf_test_cert_free(&cert_leaf);
    wf_test_cert_free(&cert_ec);
    wf_test_cert_free(&cert_other);
    wf_cert_store_clear();
    return 0;
}

/* Parses the concatenation of parts (NULL-terminated). */
static int
cert_parse_parts(const char *const *parts, json_t **info, char *why,
                 size_t whysize)
{
    static char buf[65536];
    size_t n = 0;

    for (size_t i = 0; parts[i] != NULL; i++) {
        size_t k = strlen(parts[i]);

        assert_true(n + k < sizeof(buf));
        memcpy(buf + n, parts[i], k);
        n += k;
    }
    return wf_cert_parse(buf, n, info, why, whysize);
}

static void
test_bundles(void **state)
{
    static const char ecparams[] = "-----BEGIN EC PARAMETERS-----\n"
                                   "BggqhkjOPQMBBw==\n"
                                   "-----END EC PARAMETERS-----\n";
    static const char unknown[] = "-----BEGIN FOO-----\n"
                                  "AAAA\n"
                                  "-----END FOO-----\n";
    const struct {
        const char *parts[5];
        const char *why; /* NULL: accepted */
    } rows[] = {
        {{cert_leaf.key_pem, cert_leaf.x_pem, NULL}, NULL},
        {{cert_leaf.x_pem, cert_leaf.key_pem, NULL}, NULL},
        {{cert_leaf.x_pem, cert_ca.x_pem, cert_leaf.key_pem, NULL}, NULL},
        {{cert_leaf.x_pem, cert_leaf.key_pem, cert_ca.x_pem, NULL}, NULL},
        {{ecparams, cert_ec.key_pem, cert_ec.x_pem, NULL}, NULL},
        /* without a key: a CA bundle, in any order */
        {{cert_leaf.x_pem, NULL}, NULL},
        {{cert_other.x_pem, cert_ca.x_pem, NULL}, NULL},
        {{"no PEM here", NULL}, "no key found"},
        {{cert_leaf.key_pem, NULL}, "no certificates found"},
        {{cert_leaf.key_pem, cert_ec.key_pem, cert_leaf.x_pem, NULL},
         "multiple private keys in PEM"},
        {{cert_other.key_pem, cert_leaf.x_pem, NULL},
         "the private key does not match the first certificate"},
        {{cert_ca.x_pem, cert_leaf.x_pem, cert_leaf.key_pem, NULL},
         "the private key does not match the first certificate"},
        {{cert_leaf.x_pem, cert_other.x_pem, cert_leaf.key_pem, NULL},
         "certificate 2 is not the issuer of certificate 1"},
        {{cert_leaf.key_pem, cert_leaf.x_pem, unknown, NULL},
         "unsupported PEM type: \"FOO\""},
        {{"-----BEGIN CERTIFICATE-----\nAAAA\n", NULL},
         "the PEM text is malformed"},
        {{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
          cert_leaf.key_pem, NULL},
         "certificate 1 cannot be decoded"},
    };

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(rows); i++) {
        char why[256] = "";
        json_t *info = NULL;
        int rc = cert_parse_parts(rows[i].parts, &info, why, sizeof(why));

        if (rows[i].why == NULL) {
            if (rc != WF_OK) {
                print_message("row %zu: refused: %s\n", i, why);
            }
            assert_int_equal(rc, WF_OK);
            assert_non_null(info);
        } else {
            if (rc == WF_OK || strcmp(why, rows[i].why) != 0) {
                print_message("row %zu: got \"%s\", want \"%s\"\n", i, why,
                              rows[i].why);
            }
            assert_int_equal(rc, WF_ERROR);
            assert_string_equal(why, rows[i].why);
            assert_null(info);
        }
        json_decref(info);
    }
}

/* Unit's description: key type and size, and per certificate the subject
 * with alt_names after common_name, the issuer and the validity. */
static void
test_info(void **state)
{
    const char *parts[] = {cert_leaf.key_pem, cert_leaf.x_pem, cert_ca.x_pem,
                           NULL};
    const char *ec_parts[] = {cert_ec.key_pem, cert_ec.x_pem, NULL};
    char why[256];
    json_t *info;
    json_t *want;
    json_t *chain;
    const char *first;
    void *it;

    wf_unused(state);
    assert_int_equal(cert_parse_parts(parts, &info, why, sizeof(why)), WF_OK);
    assert_string_equal(json_string_value(json_object_get(info, "key")),
                        "RSA (2048 bits)");
    chain = json_object_get(info, "chain");
    assert_int_equal(json_array_size(chain), 2);
    want = wf_test_json_parse(
        "{\"common_name\": \"example.com\", \"alt_names\": [\"example.com\","
        " \"*.example.com\"], \"country\": \"FR\", \"organization\": "
        "\"Wharf\"}");
    assert_true(
        json_equal(json_object_get(json_array_get(chain, 0), "subject"), want));
    it = json_object_iter(json_object_get(json_array_get(chain, 0), "subject"));
    first = json_object_iter_key(it);
    assert_string_equal(first, "common_name");
    assert_string_equal(
        json_object_iter_key(json_object_iter_next(
            json_object_get(json_array_get(chain, 0), "subject"), it)),
        "alt_names");
    json_decref(want);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(chain, 0), "issuer"),
                            "common_name")),
                        "Wharf Test CA");
    assert_non_null(strstr(
        json_string_value(json_object_get(
            json_object_get(json_array_get(chain, 1), "validity"), "until")),
        " GMT"));
    json_decref(info);

    assert_int_equal(cert_parse_parts(ec_parts, &info, why, sizeof(why)),
                     WF_OK);
    assert_string_equal(json_string_value(json_object_get(info, "key")),
                        "ECDH");
    json_decref(info);
}

static void
test_store(void **state)
{
    const char *parts[] = {cert_ec.key_pem, cert_ec.x_pem, NULL};
    json_t *conf = wf_test_json_parse(
        "{\"listeners\": {\"*:1\": {\"pass\": \"routes\", \"tls\": "
        "{\"certificate\": [\"x\", \"Bundle\"]}}, \"*:2\": {\"pass\": "
        "\"routes\", \"tls\": {\"certificate\": \"missing\"}}}}");
    char why[256];
    json_t *info;
    json_t *pems;

    wf_unused(state);
    assert_int_equal(cert_parse_parts(parts, &info, why, sizeof(why)), WF_OK);
    assert_int_equal(wf_cert_store_set("bundle", "PEM", 3, info), WF_OK);
    assert_ptr_equal(wf_cert_store_info("BUNDLE", 6), info);
    assert_null(wf_cert_store_info("bundl", 5));
    assert_true(wf_cert_is_used(conf, "bundle", 6));
    assert_true(wf_cert_is_used(conf, "missing", 7));
    assert_false(wf_cert_is_used(conf, "other", 5));
    pems = wf_cert_store_pems(conf);
    assert_non_null(pems);
    assert_int_equal(json_object_size(pems), 1);
    assert_string_equal(json_string_value(json_object_get(pems, "Bundle")),
                        "PEM");
    json_decref(pems);
    wf_cert_store_del("Bundle");
    assert_null(wf_cert_store_info("bundle", 6));
    json_decref(conf);

    assert_true(wf_cert_name_is_valid("a.pem", 5));
    assert_false(wf_cert_name_is_valid("", 0));
    assert_false(wf_cert_name_is_valid(".a", 2));
    assert_false(wf_cert_name_is_valid("a/b", 3));
    assert_false(wf_cert_name_is_valid("a\0b", 3));
}

/* Backends' "tls" names (routes at any depth, upstreams' settings) are
 * in use and go to the router, as listeners' names do. */
static void
test_backend_names(void **state)
{
    json_t *conf =
        json_loads("{\"listeners\": {\"*:1\": {\"pass\": \"routes/r\"}},"
                   " \"routes\": {\"r\": [{\"action\": {\"share\": \"/x\","
                   "  \"fallback\": {\"proxy\": \"https://127.0.0.1:1\","
                   "   \"proxy_settings\": {\"tls\": {\"ca\": \"CA1\"}}}}}]},"
                   " \"upstreams\": {\"u\": {\"servers\": {}, \"settings\":"
                   "  {\"tls\": {\"ca\": \"ca2\", \"certificate\": \"cl\"}}}}}",
                   0, NULL);
    json_t *pems;

    (void)state;
    assert_non_null(conf);
    assert_int_equal(wf_cert_store_set("ca1", "A", 1, json_object()), WF_OK);
    assert_int_equal(wf_cert_store_set("ca2", "B", 1, json_object()), WF_OK);
    assert_int_equal(wf_cert_store_set("cl", "C", 1, json_object()), WF_OK);
    assert_int_equal(wf_cert_store_set("free", "D", 1, json_object()), WF_OK);
    assert_true(wf_cert_is_used(conf, "ca1", 3));
    assert_true(wf_cert_is_used(conf, "CA2", 3));
    assert_true(wf_cert_is_used(conf, "cl", 2));
    assert_false(wf_cert_is_used(conf, "free", 4));
    pems = wf_cert_store_pems(conf);
    assert_non_null(pems);
    assert_int_equal(json_object_size(pems), 3);
    assert_string_equal(json_string_value(json_object_get(pems, "CA1")), "A");
    assert_string_equal(json_string_value(json_object_get(pems, "cl")), "C");
    json_decref(pems);
    wf_cert_store_clear();
    json_decref(conf);
}

int
wf_test_cert(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bundles),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_backend_names),
    };

    return cmocka_run_group_tests_name("cert", tests, cert_setup,
                                       cert_teardown);
}
