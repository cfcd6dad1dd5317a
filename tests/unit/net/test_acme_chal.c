/* net/acme_chal.h: the router's ACME challenge set: HTTP-01 lookups by
 * token, a malformed set refused with the old one kept, and TLS-ALPN-01
 * through net/tls.c's ALPN callback over a real socketpair against an
 * OpenSSL client: only an offer of exactly "acme-tls/1" for a pending
 * domain gets the challenge's certificate (with its acmeIdentifier) and
 * the protocol; anything else gets the listener's certificate and no
 * protocol. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control/acme_crypto.h"
#include "core/common.h"
#include "net/acme_chal.h"
#include "net/tls.h"
#include "net/xprt.h"
#include "unit.h"

static void
test_http_tokens(void **state)
{
    static const char set[] =
        "{\"http\": {\"tok-1\": \"tok-1.thumb\"}, \"alpn\": {}}";
    char *v;

    wf_unused(state);
    assert_int_equal(wf_acme_chal_set("{}", 2), WF_OK);
    assert_false(wf_acme_chal_any());
    assert_int_equal(wf_acme_chal_set(set, strlen(set)), WF_OK);
    assert_true(wf_acme_chal_any());
    v = wf_acme_chal_http("tok-1", 5);
    assert_string_equal(v, "tok-1.thumb");
    free(v);
    assert_null(wf_acme_chal_http("tok-", 4));
    assert_null(wf_acme_chal_http("tok-2", 5));
    /* A set that does not parse leaves the old one. */
    assert_int_equal(wf_acme_chal_set("{\"alpn\": {\"x\": \"junk\"}}", 23),
                     WF_ERROR);
    assert_int_equal(wf_acme_chal_set("[", 1), WF_ERROR);
    v = wf_acme_chal_http("tok-1", 5);
    assert_non_null(v);
    free(v);
    wf_acme_chal_clear();
    assert_false(wf_acme_chal_any());
    assert_null(wf_acme_chal_http("tok-1", 5));
}

typedef struct chal_pair {
    int fds[2];
    wf_xprt_t x;
    wf_tls_srv_t *t;
    SSL_CTX *cctx;
    SSL *client;
} chal_pair_t;

/* A listener with one certificate (listener.test) and a client offering
 * alpn[0..alpnlen) for servername. */
static void
chal_pair_open(chal_pair_t *p, const char *listener_pem, const char *sni,
               const unsigned char *alpn, unsigned alpnlen)
{
    json_t *tls = json_pack("{s:s}", "certificate", "l");
    json_t *pems = json_pack("{s:s}", "l", listener_pem);
    bool server_done = false;
    bool client_done = false;
    char why[256];

    memset(p, 0, sizeof(*p));
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fds), 0);
    p->t = wf_tls_srv_create(tls, pems, why, sizeof(why));
    assert_non_null(p->t);
    json_decref(tls);
    json_decref(pems);
    assert_int_equal(wf_tls_open(&p->x, p->t, p->fds[0]), WF_OK);
    p->cctx = SSL_CTX_new(TLS_client_method());
    p->client = SSL_new(p->cctx);
    SSL_set_fd(p->client, p->fds[1]);
    SSL_set_tlsext_host_name(p->client, sni);
    assert_int_equal(SSL_set_alpn_protos(p->client, alpn, alpnlen), 0);
    SSL_set_connect_state(p->client);
    for (int i = 0; i < 100 && !(server_done && client_done); i++) {
        uint32_t events = 0;

        if (!server_done) {
            int rc = wf_tls_handshake(&p->x, &events);

            assert_true(rc == WF_OK || rc == WF_AGAIN);
            server_done = rc == WF_OK;
        }
        if (!client_done) {
            client_done = SSL_do_handshake(p->client) == 1;
        }
    }
    assert_true(server_done && client_done);
}

static void
chal_pair_close(chal_pair_t *p)
{
    wf_xprt_close(&p->x);
    SSL_free(p->client);
    SSL_CTX_free(p->cctx);
    wf_tls_srv_destroy(p->t);
    close(p->fds[0]);
    close(p->fds[1]);
    ERR_clear_error();
}

/* The CN of the certificate the client got, and whether it carries the
 * acmeIdentifier; the protocol selected (NULL: none). */
static void
chal_pair_peer(chal_pair_t *p, char *cn, size_t size, bool *acme_id,
               const char **proto)
{
    X509 *peer = SSL_get1_peer_certificate(p->client);
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    const unsigned char *data;
    unsigned len;
    static char buf[32];

    assert_non_null(peer);
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                              (int)size);
    *acme_id = X509_get_ext_by_OBJ(peer, oid, -1) >= 0;
    SSL_get0_alpn_selected(p->client, &data, &len);
    *proto = NULL;
    if (len > 0 && len < sizeof(buf)) {
        memcpy(buf, data, len);
        buf[len] = '\0';
        *proto = buf;
    }
    ASN1_OBJECT_free(oid);
    X509_free(peer);
}

static void
test_tls_alpn(void **state)
{
    static const unsigned char acme[] = "\x0a"
                                        "acme-tls/1";
    static const unsigned char both[] = "\x0a"
                                        "acme-tls/1"
                                        "\x08"
                                        "http/1.1";
    EVP_PKEY *k = wf_acme_key_create(WF_ACME_KEY_P256);
    json_t *ln = json_pack("[s]", "listener.test");
    json_t *cn = json_pack("[s]", "c.test");
    char *listener = wf_acme_self_signed(k, ln, NULL, 30);
    char *chal = wf_acme_self_signed(k, cn, "tok.thumb", 7);
    json_t *set = json_pack("{s:{}, s:{s:s}}", "http", "alpn", "c.test", chal);
    char *text = json_dumps(set, JSON_COMPACT);
    static const struct {
        const char *sni;
        const unsigned char *alpn;
        unsigned alpnlen;
        const char *cn;
        bool acme;
        const char *proto; /* without acme: what ALPN selects, or NULL */
    } cases[] = {
        {"c.test", acme, sizeof(acme) - 1, "c.test", true, NULL},
        {"C.Test", acme, sizeof(acme) - 1, "c.test", true, NULL},
        {"d.test", acme, sizeof(acme) - 1, "listener.test", false, NULL},
        /* Not only acme-tls/1: HTTP, and http/1.1 is selected (net/tls.c
         * prefers h2, then http/1.1). */
        {"c.test", both, sizeof(both) - 1, "listener.test", false, "http/1.1"},
    };

    wf_unused(state);
    assert_int_equal(wf_acme_chal_set(text, strlen(text)), WF_OK);
    for (size_t i = 0; i <= wf_nitems(cases); i++) {
        bool last = i == wf_nitems(cases); /* the first case, withdrawn */
        size_t c = last ? 0 : i;
        chal_pair_t p;
        char got[64];
        bool acme_id;
        const char *proto;

        if (last) {
            wf_acme_chal_clear();
        }
        chal_pair_open(&p, listener, cases[c].sni, cases[c].alpn,
                       cases[c].alpnlen);
        chal_pair_peer(&p, got, sizeof(got), &acme_id, &proto);
        if (last) {
            assert_string_equal(got, "listener.test");
            assert_false(acme_id);
            assert_null(proto);
        } else {
            assert_string_equal(got, cases[c].cn);
            assert_int_equal(acme_id, cases[c].acme);
            if (cases[c].acme) {
                assert_string_equal(proto, "acme-tls/1");
            } else if (cases[c].proto != NULL) {
                assert_string_equal(proto, cases[c].proto);
            } else {
                assert_null(proto);
            }
        }
        chal_pair_close(&p);
    }
    free(text);
    json_decref(set);
    free(chal);
    free(listener);
    json_decref(cn);
    json_decref(ln);
    EVP_PKEY_free(k);
}

int
wf_test_acme_chal(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_tokens),
        cmocka_unit_test(test_tls_alpn),
    };

    return cmocka_run_group_tests_name("acme_chal", tests, NULL, NULL);
}
