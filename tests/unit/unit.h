/* The unit-test groups; each file under tests/unit/ defines one or more. A
 * group runs its cmocka tests and returns the number of failures. */
#ifndef WF_TESTS_UNIT_H
#define WF_TESTS_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdbool.h>

/* Parses test JSON (any value); fails the test when it does not parse. */
json_t *wf_test_json_parse(const char *text);

/* Finds shared/unit-configs (WF_UNIT_CONFIGS overrides).  Returns false
 * when it is not there; the caller skips. */
bool wf_test_unit_configs_dir(char *dir, size_t cap);

/* Reads a whole file into a malloc'd buffer, or returns NULL. */
char *wf_test_read_file(const char *path, size_t *len);

/* A key and a certificate made with OpenSSL, with their PEM texts. */
typedef struct wf_test_cert {
    struct evp_pkey_st *key;
    struct x509_st *x;
    char key_pem[8192];
    char x_pem[8192];
} wf_test_cert_t;

/* Makes c: an EC P-256 (ec) or RSA 2048 key and a certificate for cn (SAN
 * san as in openssl.cnf, e.g. "DNS:a,DNS:b", or NULL) signed by issuer
 * (NULL: self-signed), valid from days_from to days_to from now. */
void wf_test_cert_make(wf_test_cert_t *c, bool ec, const char *cn,
                       const char *san, wf_test_cert_t *issuer, long days_from,
                       long days_to);
void wf_test_cert_free(wf_test_cert_t *c);

int wf_test_json(void);
int wf_test_pool(void);
int wf_test_timer(void);
int wf_test_cond(void);
int wf_test_exchange(void);
int wf_test_h1_parse(void);
int wf_test_h1_stream(void);
int wf_test_mime(void);
int wf_test_proxy_parse(void);
int wf_test_range(void);
int wf_test_route(void);
int wf_test_uri(void);
int wf_test_ws_scan(void);
int wf_test_conf(void);
int wf_test_conf_app(void);
int wf_test_conf_store(void);
int wf_test_api(void);
int wf_test_cert(void);
int wf_test_acme(void);
int wf_test_acme_chal(void);
int wf_test_tls(void);
int wf_test_tpl(void);
int wf_test_port(void);
int wf_test_main_apps(void);
int wf_test_cred(void);
int wf_test_forwarded(void);
int wf_test_h2_map(void);
int wf_test_proxy_h2_map(void);
int wf_test_upstream(void);
int wf_test_access_log(void);
int wf_test_app_xchg(void);
int wf_test_app_rt(void);
int wf_test_ws_frame(void);
int wf_test_php_path(void);
int wf_test_py_wsgi(void);

#endif
