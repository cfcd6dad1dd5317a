/* TLS to backends (see net/tls_client.h). */
#include "net/tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/common.h"
#include "net/tls.h"

#define CLI_WBUF      16384        /* one record's plaintext */
#define CLI_WRITE_MAX (256 * 1024) /* bytes written per call */
#define CLI_SLOTS     64           /* servers whose session is kept */
#define CLI_SNI_MAX   256

/* One server's last session: the key is its address and the name sent. */
typedef struct cli_slot {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char sni[CLI_SNI_MAX];
    SSL_SESSION *sess; /* a reference; NULL: none yet */
} cli_slot_t;

/* The sessions, owned by the SSL_CTX (its ex_data, freed with it), so a
 * connection that outlives its config still has somewhere to put one. */
typedef struct cli_cache {
    pthread_mutex_t lock;
    cli_slot_t slots[CLI_SLOTS];
    unsigned next; /* the slot a new server takes when all are used */
} cli_cache_t;

struct wf_tls_cli {
    SSL_CTX *ctx;
    uint64_t id;
};

static _Atomic uint64_t cli_ids;
static int cli_ctx_idx = -1; /* SSL_CTX ex_data: cli_cache_t */
static int cli_ssl_idx = -1; /* SSL ex_data: slot number + 1 */
static pthread_once_t cli_once = PTHREAD_ONCE_INIT;
static _Thread_local unsigned char cli_wbuf[CLI_WBUF];

static int cli_fail(char *why, size_t whysize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
cli_fail(char *why, size_t whysize, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, whysize, fmt, ap);
    va_end(ap);
    return WF_ERROR;
}

/* OpenSSL's first queued reason, or fallback. */
static const char *
cli_reason(const char *fallback)
{
    unsigned long e = ERR_peek_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    return r != NULL ? r : fallback;
}

static void
cli_cache_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
               void *argp)
{
    cli_cache_t *c = ptr;

    wf_unused(parent);
    wf_unused(ad);
    wf_unused(idx);
    wf_unused(argl);
    wf_unused(argp);
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < CLI_SLOTS; i++) {
        SSL_SESSION_free(c->slots[i].sess);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void
cli_init_once(void)
{
    cli_ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, cli_cache_free);
    cli_ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* A new session from the server (TLS 1.3: a ticket after the handshake):
 * kept in the connection's slot, replacing the one before. */
static int
cli_on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    cli_cache_t *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), cli_ctx_idx);
    uintptr_t slot = (uintptr_t)SSL_get_ex_data(ssl, cli_ssl_idx);
    SSL_SESSION *old;

    if (c == NULL || slot == 0 || slot > CLI_SLOTS) {
        return 0;
    }
    pthread_mutex_lock(&c->lock);
    old = c->slots[slot - 1].sess;
    c->slots[slot - 1].sess = sess;
    pthread_mutex_unlock(&c->lock);
    SSL_SESSION_free(old);
    return 1; /* the reference is ours now */
}

/* Loads CA certificates from PEM text into the context's store. */
static int
cli_load_ca_pem(SSL_CTX *ctx, const char *pem, size_t len, char *why,
                size_t whysize)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = len <= INT_MAX ? BIO_new_mem_buf(pem, (int)len) : NULL;
    unsigned n = 0;
    X509 *x;

    if (bio == NULL) {
        return cli_fail(why, whysize, "out of memory");
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1) {
            n++;
        }
        X509_free(x);
    }
    BIO_free(bio);
    ERR_clear_error(); /* the end of the text, or a key block skipped */
    if (n == 0) {
        return cli_fail(why, whysize, "the CA bundle holds no certificate");
    }
    return WF_OK;
}

/* The client certificate: a store bundle (key and chain, leaf first). */
static int
cli_load_cert(SSL_CTX *ctx, const char *pem, size_t len, char *why,
              size_t whysize)
{
    wf_tls_bundle_t b = {0};
    int rc = WF_OK;

    if (wf_tls_bundle_read(&b, pem, len, why, whysize) != WF_OK) {
        return WF_ERROR;
    }
    if (SSL_CTX_use_certificate(ctx, b.chain[0]) != 1
        || SSL_CTX_use_PrivateKey(ctx, b.key) != 1) {
        rc = cli_fail(why, whysize, "the client certificate: %s",
                      cli_reason("refused"));
    }
    for (size_t i = 1; rc == WF_OK && i < b.count; i++) {
        if (SSL_CTX_add1_chain_cert(ctx, b.chain[i]) != 1) {
            rc = cli_fail(why, whysize, "the client certificate's chain: %s",
                          cli_reason("refused"));
        }
    }
    wf_tls_bundle_fini(&b);
    ERR_clear_error();
    return rc;
}

/* Verification: a CA bundle (text or file) or the system's paths. */
static int
cli_load_verify(SSL_CTX *ctx, const wf_tls_cli_conf_t *c, char *why,
                size_t whysize)
{
    if (!c->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return WF_OK;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (c->ca_pem != NULL) {
        return cli_load_ca_pem(ctx, c->ca_pem, c->ca_len, why, whysize);
    }
    if (c->ca_file != NULL) {
        if (SSL_CTX_load_verify_file(ctx, c->ca_file) != 1) {
            cli_fail(why, whysize, "cannot load the CA file \"%s\": %s",
                     c->ca_file, cli_reason("unreadable"));
            ERR_clear_error();
            return WF_ERROR;
        }
        return WF_OK;
    }
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ERR_clear_error();
        return cli_fail(why, whysize, "no system CA certificates");
    }
    return WF_OK;
}

static SSL_CTX *
cli_ctx_new(char *why, size_t whysize)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    cli_cache_t *cache = calloc(1, sizeof(*cache));

    if (ctx == NULL || cache == NULL
        || SSL_CTX_set_ex_data(ctx, cli_ctx_idx, cache) != 1) {
        SSL_CTX_free(ctx);
        free(cache);
        cli_fail(why, whysize, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&cache->lock, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                              | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                              | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                                 | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT
                                            | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, cli_on_new_session);
    return ctx;
}

wf_tls_cli_t *
wf_tls_cli_create(const wf_tls_cli_conf_t *c, char *why, size_t whysize)
{
    wf_tls_cli_t *t = calloc(1, sizeof(*t));

    pthread_once(&cli_once, cli_init_once);
    if (t == NULL) {
        cli_fail(why, whysize, "out of memory");
        return NULL;
    }
    t->ctx = cli_ctx_new(why, whysize);
    if (t->ctx == NULL || cli_load_verify(t->ctx, c, why, whysize) != WF_OK
        || (c->cert_pem != NULL
            && cli_load_cert(t->ctx, c->cert_pem, c->cert_len, why, whysize)
                   != WF_OK)) {
        wf_tls_cli_destroy(t);
        return NULL;
    }
    t->id = atomic_fetch_add(&cli_ids, 1) + 1;
    return t;
}

void
wf_tls_cli_destroy(wf_tls_cli_t *t)
{
    if (t != NULL) {
        SSL_CTX_free(t->ctx);
        free(t);
    }
}

uint64_t
wf_tls_cli_id(const wf_tls_cli_t *t)
{
    return t->id;
}

/* ---- the transport ------------------------------------------------------ */

static ssize_t
cli_io_error(SSL *ssl, int rc)
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

static ssize_t
cli_recv(wf_xprt_t *x, int fd, void *buf, size_t n)
{
    size_t got = 0;

    wf_unused(fd);
    errno = 0;
    if (SSL_read_ex(x->tls, buf, n, &got) == 1) {
        return (ssize_t)got;
    }
    return cli_io_error(x->tls, 0);
}

/* Stages at most one record of msg's bytes from offset skip. */
static size_t
cli_stage(const struct msghdr *msg, size_t skip)
{
    size_t n = 0;

    for (size_t i = 0; i < (size_t)msg->msg_iovlen && n < CLI_WBUF; i++) {
        const struct iovec *v = &msg->msg_iov[i];
        size_t k;

        if (skip >= v->iov_len) {
            skip -= v->iov_len;
            continue;
        }
        k = wf_min(v->iov_len - skip, (size_t)(CLI_WBUF - n));
        memcpy(cli_wbuf + n, (const char *)v->iov_base + skip, k);
        n += k;
        skip = 0;
    }
    return n;
}

static ssize_t
cli_sendmsg(wf_xprt_t *x, int fd, const struct msghdr *msg, int flags)
{
    size_t done = 0;

    wf_unused(fd);
    wf_unused(flags);
    while (done < CLI_WRITE_MAX) {
        size_t n = cli_stage(msg, done), w = 0;
        ssize_t rc;

        if (n == 0) {
            break;
        }
        errno = 0;
        if (SSL_write_ex(x->tls, cli_wbuf, n, &w) == 1) {
            done += w;
            continue;
        }
        rc = cli_io_error(x->tls, 0);
        if (rc == 0) {
            errno = EPIPE;
        }
        if (done > 0 && errno == EAGAIN) {
            break;
        }
        return -1;
    }
    if (done == 0) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)done;
}

static ssize_t
cli_sendfile(wf_xprt_t *x, int fd, int in_fd, off_t *off, size_t n)
{
    wf_unused(x);
    wf_unused(fd);
    wf_unused(in_fd);
    wf_unused(off);
    wf_unused(n);
    errno = EOPNOTSUPP; /* the proxy sends no file */
    return -1;
}

static int
cli_shutdown(wf_xprt_t *x, int fd)
{
    SSL_shutdown(x->tls); /* close_notify; its answer is not awaited */
    ERR_clear_error();
    return shutdown(fd, SHUT_WR);
}

static bool
cli_pending(const wf_xprt_t *x)
{
    return SSL_pending(x->tls) > 0;
}

static void
cli_close(wf_xprt_t *x)
{
    /* The connection is over: its session stays resumable (OpenSSL
     * spoils one whose SSL is freed without a shutdown noted). */
    if (SSL_is_init_finished(x->tls)) {
        SSL_set_shutdown(x->tls, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    }
    SSL_free(x->tls);
    x->tls = NULL;
}

static const wf_xprt_ops_t cli_ops = {
    .name = "tls-client",
    .recv = cli_recv,
    .sendmsg = cli_sendmsg,
    .sendfile = cli_sendfile,
    .shutdown = cli_shutdown,
    .pending = cli_pending,
    .close = cli_close,
};

/* ---- connections -------------------------------------------------------- */

static bool
cli_slot_is(const cli_slot_t *s, const struct sockaddr *addr, socklen_t len,
            const char *sni)
{
    return s->addrlen == len && memcmp(&s->addr, addr, len) == 0
           && strcmp(s->sni, sni) == 0;
}

/* The slot of (addr, sni), taken if new; offers its session to ssl. */
static void
cli_session_attach(SSL *ssl, cli_cache_t *c, const struct sockaddr *addr,
                   socklen_t len, const char *sni)
{
    size_t i;

    if (len > sizeof(c->slots[0].addr) || strlen(sni) >= CLI_SNI_MAX) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    for (i = 0; i < CLI_SLOTS; i++) {
        if (c->slots[i].addrlen == 0
            || cli_slot_is(&c->slots[i], addr, len, sni)) {
            break;
        }
    }
    if (i == CLI_SLOTS) {
        i = c->next++ % CLI_SLOTS;
        SSL_SESSION_free(c->slots[i].sess);
        c->slots[i].sess = NULL;
    }
    if (c->slots[i].addrlen == 0
        || !cli_slot_is(&c->slots[i], addr, len, sni)) {
        memcpy(&c->slots[i].addr, addr, len);
        c->slots[i].addrlen = len;
        snprintf(c->slots[i].sni, CLI_SNI_MAX, "%s", sni);
    }
    if (c->slots[i].sess != NULL) {
        SSL_set_session(ssl, c->slots[i].sess);
    }
    pthread_mutex_unlock(&c->lock);
    SSL_set_ex_data(ssl, cli_ssl_idx, (void *)(uintptr_t)(i + 1));
}

/* The name or address the server's certificate must match. */
static int
cli_verify_name(SSL *ssl, const char *sni, const struct sockaddr *addr)
{
    char ip[INET6_ADDRSTRLEN];
    const void *a = NULL;

    if (SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE) {
        return WF_OK;
    }
    if (sni[0] != '\0') {
        return SSL_set1_host(ssl, sni) == 1 ? WF_OK : WF_ERROR;
    }
    if (addr->sa_family == AF_INET) {
        a = &((const struct sockaddr_in *)addr)->sin_addr;
    } else if (addr->sa_family == AF_INET6) {
        a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
    }
    if (a == NULL || inet_ntop(addr->sa_family, a, ip, sizeof(ip)) == NULL) {
        return WF_OK; /* a unix socket: the chain only */
    }
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) == 1
               ? WF_OK
               : WF_ERROR;
}

int
wf_tls_cli_open(wf_xprt_t *x, wf_tls_cli_t *t, int fd, const char *sni,
                const struct sockaddr *addr, socklen_t addrlen)
{
    SSL *ssl = SSL_new(t->ctx);

    sni = sni != NULL ? sni : "";
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1
        || (sni[0] != '\0' && SSL_set_tlsext_host_name(ssl, sni) != 1)
        || cli_verify_name(ssl, sni, addr) != WF_OK) {
        SSL_free(ssl);
        ERR_clear_error();
        return WF_ERROR;
    }
    SSL_set_connect_state(ssl);
    cli_session_attach(ssl, SSL_CTX_get_ex_data(t->ctx, cli_ctx_idx), addr,
                       addrlen, sni);
    x->ops = &cli_ops;
    x->tls = ssl;
    return WF_OK;
}

int
wf_tls_cli_alpn_h2(wf_xprt_t *x)
{
    static const unsigned char h2[] = {2, 'h', '2'};

    /* SSL_set_alpn_protos() returns 0 on success. */
    return SSL_set_alpn_protos(x->tls, h2, sizeof(h2)) == 0 ? WF_OK : WF_ERROR;
}

int
wf_tls_cli_handshake(wf_xprt_t *x, uint32_t *events, char *why, size_t whysize)
{
    SSL *ssl = x->tls;
    int rc, e;
    long v;

    errno = 0;
    rc = SSL_do_handshake(ssl);
    if (rc == 1) {
        return WF_OK;
    }
    e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        return WF_AGAIN;
    }
    v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        cli_fail(why, whysize, "certificate verify failed (%s)",
                 X509_verify_cert_error_string(v));
    } else if (e == SSL_ERROR_SYSCALL || ERR_peek_error() == 0) {
        cli_fail(why, whysize, "the server closed the connection (%s)",
                 errno != 0 ? strerror(errno) : "EOF");
    } else {
        cli_fail(why, whysize, "%s", cli_reason("a protocol error"));
    }
    ERR_clear_error();
    return WF_ERROR;
}

bool
wf_tls_cli_resumed(const wf_xprt_t *x)
{
    return x->tls != NULL && SSL_session_reused(x->tls) == 1;
}
