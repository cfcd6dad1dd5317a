/* net/tls.h and net/xprt.h: SNI picking (names, wildcards, the default,
 * the first certificate winning a shared name), building contexts and their
 * errors, and the transport over a real socketpair against an OpenSSL
 * client: the non-blocking handshake, sendmsg with many iovecs, sendfile,
 * reads that leave plaintext pending, and close_notify. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "net/tls.h"
#include "net/tls_ocsp.h"
#include "net/xprt.h"
#include "unit.h"

static wf_test_cert_t tls_a, tls_w, tls_cn, tls_dup;

static int
tls_setup(void **state)
{
    wf_unused(state);
    wf_test_cert_make(&tls_a, true, "a.test", "DNS:a.test,DNS:www.a.test", NULL,
                      -1, 30);
    wf_test_cert_make(&tls_w, true, "*.w.test", "DNS:*.w.test,DNS:*x.test",
                      NULL, -1, 30);
    wf_test_cert_make(&tls_cn, true, "CN.Test", NULL, NULL, -1, 30);
    wf_test_cert_make(&tls_dup, true, "dup", "DNS:a.test,DNS:dup.test", NULL,
                      -1, 30);
    return 0;
}

static int
tls_teardown(void **state)
{
    wf_unused(state);
    wf_test_cert_free(&tls_a);
    wf_test_cert_free(&tls_w);
    wf_test_cert_free(&tls_cn);
    wf_test_cert_free(&tls_dup);
    return 0;
}

static json_t *
tls_pems(void)
{
    json_t *pems = json_object();
    const struct {
        const char *name;
        wf_test_cert_t *c;
    } all[] = {
        {"a", &tls_a}, {"w", &tls_w}, {"cn", &tls_cn}, {"dup", &tls_dup}};

    for (size_t i = 0; i < wf_nitems(all); i++) {
        char buf[16384];

        snprintf(buf, sizeof(buf), "%s%s", all[i].c->x_pem, all[i].c->key_pem);
        json_object_set_new(pems, all[i].name, json_string(buf));
    }
    return pems;
}

static wf_tls_srv_t *
tls_srv(const char *tls_text, char *why, size_t whysize)
{
    json_t *tls = wf_test_json_parse(tls_text);
    json_t *pems = tls_pems();
    wf_tls_srv_t *t = wf_tls_srv_create(tls, pems, why, whysize);

    json_decref(tls);
    json_decref(pems);
    return t;
}

static void
test_pick(void **state)
{
    static const struct {
        const char *name;
        size_t idx;
    } rows[] = {
        {"a.test", 0},     {"WWW.A.TEST", 0}, {"x.w.test", 1}, {"w.test", 0},
        {"y.x.w.test", 0}, {"cn.test", 2},    {"dup.test", 3}, {"nothing", 0},
        {NULL, 0},         {"", 0},           {".w.test", 0},  {"a.xx.test", 0},
    };
    char why[256];
    wf_tls_srv_t *t = tls_srv(
        "{\"certificate\": [\"a\", \"w\", \"cn\", \"dup\"]}", why, sizeof(why));

    wf_unused(state);
    assert_non_null(t);
    for (size_t i = 0; i < wf_nitems(rows); i++) {
        size_t got = wf_tls_srv_pick(t, rows[i].name);

        if (got != rows[i].idx) {
            print_message("row %zu (%s): got %zu\n", i,
                          rows[i].name != NULL ? rows[i].name : "NULL", got);
        }
        assert_int_equal(got, rows[i].idx);
    }
    wf_tls_srv_destroy(t);
}

static void
test_create_errors(void **state)
{
    static const struct {
        const char *tls;
        const char *why; /* a prefix */
    } rows[] = {
        {"{\"certificate\": \"missing\"}", "Certificate \"missing\" is not "
                                           "found."},
        {"{\"certificate\": \"a\", \"conf_commands\": {\"Nope\": \"1\"}}",
         "SSL_CONF_cmd(\"Nope\", \"1\") failed."},
        {"{\"certificate\": \"a\", \"conf_commands\": {\"MinProtocol\": "
         "\"TLSv9\"}}",
         "SSL_CONF_cmd(\"MinProtocol\", \"TLSv9\") failed."},
    };

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(rows); i++) {
        char why[256] = "";
        wf_tls_srv_t *t = tls_srv(rows[i].tls, why, sizeof(why));

        assert_null(t);
        assert_string_equal(why, rows[i].why);
    }
    assert_int_equal(ERR_peek_error(), 0);
}

/* ---- the transport against a client ----------------------------------- */

typedef struct tls_pair {
    int fds[2]; /* [0] server, [1] client */
    wf_xprt_t x;
    SSL_CTX *cctx;
    SSL *client;
    wf_tls_srv_t *t;
} tls_pair_t;

static void
tls_pair_open(tls_pair_t *p, const char *servername)
{
    char why[256];
    bool server_done = false;
    bool client_done = false;

    memset(p, 0, sizeof(*p));
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fds), 0);
    p->t = tls_srv("{\"certificate\": [\"a\", \"cn\"]}", why, sizeof(why));
    assert_non_null(p->t);
    assert_int_equal(wf_tls_open(&p->x, p->t, p->fds[0]), WF_OK);
    assert_true(wf_xprt_is_tls(&p->x));
    p->cctx = SSL_CTX_new(TLS_client_method());
    p->client = SSL_new(p->cctx);
    SSL_set_fd(p->client, p->fds[1]);
    SSL_set_tlsext_host_name(p->client, servername);
    SSL_set_connect_state(p->client);
    for (int i = 0; i < 100 && !(server_done && client_done); i++) {
        uint32_t events = 0;

        if (!server_done) {
            int rc = wf_tls_handshake(&p->x, &events);

            assert_true(rc == WF_OK || rc == WF_AGAIN);
            server_done = rc == WF_OK;
            if (rc == WF_AGAIN) {
                assert_true(events == EPOLLIN || events == EPOLLOUT);
            }
        }
        if (!client_done) {
            int rc = SSL_do_handshake(p->client);

            client_done = rc == 1;
            assert_true(rc == 1
                        || SSL_get_error(p->client, rc) == SSL_ERROR_WANT_READ);
        }
    }
    assert_true(server_done && client_done);
}

static void
tls_pair_close(tls_pair_t *p)
{
    wf_xprt_close(&p->x);
    assert_false(wf_xprt_is_tls(&p->x));
    SSL_free(p->client);
    SSL_CTX_free(p->cctx);
    wf_tls_srv_destroy(p->t);
    close(p->fds[0]);
    close(p->fds[1]);
    ERR_clear_error();
}

/* Reads what the client can into buf (appending at *got). */
static void
tls_client_drain(tls_pair_t *p, char *buf, size_t cap, size_t *got)
{
    size_t n;

    while (*got < cap
           && SSL_read_ex(p->client, buf + *got, cap - *got, &n) == 1) {
        *got += n;
    }
    ERR_clear_error();
}

static void
test_handshake_and_sni(void **state)
{
    tls_pair_t p;
    X509 *peer;
    char cn[64];

    wf_unused(state);
    tls_pair_open(&p, "cn.test");
    peer = SSL_get1_peer_certificate(p.client);
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                              sizeof(cn));
    assert_string_equal(cn, "CN.Test");
    X509_free(peer);
    tls_pair_close(&p);
}

/* The $tls_* facts: what the handshake agreed, and nothing about the
 * client where the listener asks for no certificate. */
static void
test_vars(void **state)
{
    wf_xprt_t plain = {0};
    tls_pair_t p;
    wf_str_t v;

    wf_unused(state);
    assert_false(wf_tls_var_get(&plain, WF_TLS_VAR_PROTOCOL, &v));
    tls_pair_open(&p, "www.a.test");
    assert_true(wf_tls_var_get(&p.x, WF_TLS_VAR_PROTOCOL, &v));
    assert_true(wf_str_eq(v, wf_string("TLSv1.3")));
    assert_true(wf_tls_var_get(&p.x, WF_TLS_VAR_SNI, &v));
    assert_true(wf_str_eq(v, wf_string("www.a.test")));
    assert_true(wf_tls_var_get(&p.x, WF_TLS_VAR_CIPHER, &v));
    assert_true(v.len > 4 && memcmp(v.data, "TLS_", 4) == 0);
    for (int i = WF_TLS_VAR_CLIENT_VERIFY; i <= WF_TLS_VAR_N; i++) {
        assert_false(wf_tls_var_get(&p.x, (wf_tls_var_t)i, &v));
    }
    tls_pair_close(&p);
}

/* When the refresher fetches a certificate's OCSP response again. */
static void
test_ocsp_next(void **state)
{
    const struct {
        time_t next_update;
        unsigned failures;
        time_t want; /* from now = 1000 */
    } rows[] = {
        {0, 0, 3600},             /* no nextUpdate: hourly */
        {1600, 0, 300},           /* halfway to nextUpdate */
        {1004, 0, 5},             /* at least 5 s */
        {900, 0, 5},              /* already out of date */
        {1000 + 100000, 0, 3600}, /* at most an hour */
        {1600, 1, 2},             /* failures: 2 s doubled */
        {1600, 2, 4},
        {1600, 3, 8},
        {0, 10, 300}, /* at most 5 minutes */
        {0, 100, 300},
    };

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(rows); i++) {
        time_t got =
            wf_tls_ocsp_next(1000, rows[i].next_update, rows[i].failures);

        if (got != 1000 + rows[i].want) {
            print_message("row %zu: %lld\n", i, (long long)got);
        }
        assert_int_equal(got, 1000 + rows[i].want);
    }
}

static void
test_verify_modes(void **state)
{
    char why[256];
    wf_tls_srv_t *t;

    wf_unused(state);
    assert_int_equal(wf_tls_verify_mode("required"), WF_TLS_VERIFY_REQUIRED);
    assert_int_equal(wf_tls_verify_mode("optional"), WF_TLS_VERIFY_OPTIONAL);
    assert_int_equal(wf_tls_verify_mode("optional_no_verify"),
                     WF_TLS_VERIFY_OPTIONAL_NO_VERIFY);
    assert_int_equal(wf_tls_verify_mode("on"), WF_TLS_VERIFY_OFF);
    assert_int_equal(wf_tls_verify_mode(NULL), WF_TLS_VERIFY_OFF);
    t = tls_srv("{\"certificate\": \"a\", \"client_certificate\": "
                "{\"ca\": \"nope\"}}",
                why, sizeof(why));
    assert_null(t);
    assert_string_equal(why, "Certificate \"nope\" is not found.");
    t = tls_srv("{\"certificate\": \"a\", \"client_certificate\": "
                "{\"ca\": [\"w\", \"cn\"], \"mode\": \"optional\"}}",
                why, sizeof(why));
    assert_non_null(t);
    wf_tls_srv_destroy(t);
}

static void
test_sendmsg_many_iovecs(void **state)
{
    enum { NIOV = 64, PIECE = 3000 };
    static char data[NIOV * PIECE];
    static char got_buf[NIOV * PIECE];
    struct iovec iov[NIOV];
    tls_pair_t p;
    size_t sent = 0;
    size_t got = 0;

    wf_unused(state);
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (char)(i * 7 + i / 251);
    }
    tls_pair_open(&p, "a.test");
    while (sent < sizeof(data)) {
        struct msghdr msg = {.msg_iov = iov};
        size_t skip = sent;
        ssize_t n;

        /* the caller's retry: the iovecs of what is left */
        for (size_t i = 0; i < NIOV; i++) {
            size_t off = i * PIECE;

            if (skip >= off + PIECE) {
                continue;
            }
            iov[msg.msg_iovlen].iov_base = data + wf_max(off, skip);
            iov[msg.msg_iovlen].iov_len = off + PIECE - wf_max(off, skip);
            msg.msg_iovlen++;
        }
        n = wf_xprt_sendmsg(&p.x, p.fds[0], &msg, MSG_NOSIGNAL);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
        } else {
            sent += (size_t)n;
        }
        tls_client_drain(&p, got_buf, sizeof(got_buf), &got);
    }
    while (got < sizeof(data)) {
        tls_client_drain(&p, got_buf, sizeof(got_buf), &got);
    }
    assert_memory_equal(got_buf, data, sizeof(data));
    tls_pair_close(&p);
}

static void
test_sendfile(void **state)
{
    enum { SIZE = 700 * 1000 + 17 };
    static char data[SIZE];
    static char got_buf[SIZE];
    char path[] = "/tmp/wf-test-tls-XXXXXX";
    int fd = mkstemp(path);
    tls_pair_t p;
    off_t off = 0;
    size_t got = 0;

    wf_unused(state);
    assert_true(fd >= 0);
    unlink(path);
    for (size_t i = 0; i < SIZE; i++) {
        data[i] = (char)(i % 253);
    }
    assert_int_equal(write(fd, data, SIZE), SIZE);
    tls_pair_open(&p, "a.test");
    while ((size_t)off < SIZE) {
        ssize_t n =
            wf_xprt_sendfile(&p.x, p.fds[0], fd, &off, SIZE - (size_t)off);

        assert_true(n > 0 || (n == -1 && errno == EAGAIN));
        tls_client_drain(&p, got_buf, sizeof(got_buf), &got);
    }
    while (got < SIZE) {
        tls_client_drain(&p, got_buf, sizeof(got_buf), &got);
    }
    assert_memory_equal(got_buf, data, SIZE);
    close(fd);
    tls_pair_close(&p);
}

static void
test_recv_pending_and_close_notify(void **state)
{
    static char data[10000];
    char buf[100];
    tls_pair_t p;
    size_t total = 0;
    size_t w;
    ssize_t n;

    wf_unused(state);
    memset(data, 'q', sizeof(data));
    tls_pair_open(&p, "a.test");
    /* nothing yet: EAGAIN, nothing pending */
    n = wf_xprt_recv(&p.x, p.fds[0], buf, sizeof(buf));
    assert_int_equal(n, -1);
    assert_int_equal(errno, EAGAIN);
    assert_false(wf_xprt_pending(&p.x));
    /* one record, read 100 bytes at a time: the rest waits in OpenSSL */
    assert_int_equal(SSL_write_ex(p.client, data, sizeof(data), &w), 1);
    n = wf_xprt_recv(&p.x, p.fds[0], buf, sizeof(buf));
    assert_int_equal(n, sizeof(buf));
    assert_true(wf_xprt_pending(&p.x));
    total = (size_t)n;
    while (wf_xprt_pending(&p.x)) {
        n = wf_xprt_recv(&p.x, p.fds[0], buf, sizeof(buf));
        assert_true(n > 0);
        total += (size_t)n;
    }
    assert_int_equal(total, sizeof(data));
    /* the client says goodbye: EOF */
    SSL_shutdown(p.client);
    assert_int_equal(wf_xprt_recv(&p.x, p.fds[0], buf, sizeof(buf)), 0);
    /* and ours reaches the client */
    assert_int_equal(wf_xprt_shutdown(&p.x, p.fds[0]), 0);
    assert_int_equal(SSL_read_ex(p.client, buf, sizeof(buf), &w), 0);
    assert_int_equal(SSL_get_error(p.client, 0), SSL_ERROR_ZERO_RETURN);
    tls_pair_close(&p);
}

/* A client that sends garbage fails the handshake; nothing is left in the
 * thread's error queue. */
static void
test_handshake_garbage(void **state)
{
    int fds[2];
    char why[256];
    wf_xprt_t x = {0};
    wf_tls_srv_t *t;
    uint32_t events;

    wf_unused(state);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds),
                     0);
    t = tls_srv("{\"certificate\": \"a\"}", why, sizeof(why));
    assert_int_equal(wf_tls_open(&x, t, fds[0]), WF_OK);
    assert_int_equal(wf_tls_handshake(&x, &events), WF_AGAIN);
    assert_int_equal(events, EPOLLIN);
    assert_int_equal(write(fds[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
    assert_int_equal(wf_tls_handshake(&x, &events), WF_ERROR);
    assert_int_equal(ERR_peek_error(), 0);
    wf_xprt_close(&x);
    wf_tls_srv_destroy(t);
    close(fds[0]);
    close(fds[1]);
}

int
wf_test_tls(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_handshake_and_sni),
        cmocka_unit_test(test_sendmsg_many_iovecs),
        cmocka_unit_test(test_sendfile),
        cmocka_unit_test(test_recv_pending_and_close_notify),
        cmocka_unit_test(test_handshake_garbage),
        cmocka_unit_test(test_vars),
        cmocka_unit_test(test_verify_modes),
        cmocka_unit_test(test_ocsp_next),
    };

    return cmocka_run_group_tests_name("tls", tests, tls_setup, tls_teardown);
}
