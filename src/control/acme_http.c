#include "control/acme_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/common.h"

#define ACME_HTTP_HEAD_MAX 16384

static int
http_fail(char *why, size_t whysize, const char *fmt, const char *arg)
{
    snprintf(why, whysize, fmt, arg);
    ERR_clear_error();
    return WF_ERROR;
}

SSL_CTX *
wf_acme_http_ctx_create(const char *ca_pem, char *why, size_t whysize)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    BIO *bio = ca_pem != NULL ? BIO_new_mem_buf(ca_pem, -1) : NULL;
    X509_STORE *store = ctx != NULL ? SSL_CTX_get_cert_store(ctx) : NULL;
    X509 *x;
    int n = 0;

    if (ctx != NULL && ca_pem == NULL) {
        /* No ca_bundle: the system's trust store. */
        if (SSL_CTX_set_default_verify_paths(ctx) == 1) {
            n = 1;
        }
    }
    while (ca_pem != NULL && store != NULL && bio != NULL
           && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1) {
            n++;
        }
        X509_free(x);
    }
    BIO_free(bio);
    ERR_clear_error();
    if (n == 0) {
        SSL_CTX_free(ctx);
        http_fail(why, whysize, "%s", "the CA bundle holds no certificate");
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ctx;
}

int
wf_acme_url_parse(const char *url, char *host, size_t hsize, unsigned *port,
                  const char **path)
{
    const char *h = url + 8;
    const char *end;
    const char *colon;
    size_t n;

    if (strncasecmp(url, "https://", 8) != 0) {
        return WF_ERROR;
    }
    end = h + strcspn(h, "/?#");
    *path = *end == '/' ? end : "/";
    if (*h == '[') {
        colon = memchr(h, ']', (size_t)(end - h));
        if (colon == NULL) {
            return WF_ERROR;
        }
        n = (size_t)(colon - h - 1);
        h++;
        colon = colon[1] == ':' ? colon + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        n = (size_t)((colon != NULL ? colon : end) - h);
    }
    if (n == 0 || n >= hsize) {
        return WF_ERROR;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    *port = 443;
    if (colon != NULL) {
        char *e;
        unsigned long p = strtoul(colon + 1, &e, 10);

        if (e != end || p == 0 || p > 65535) {
            return WF_ERROR;
        }
        *port = (unsigned)p;
    }
    return WF_OK;
}

/* A connected TCP socket with send and receive timeouts, or -1. */
static int
http_connect(const char *host, unsigned port, char *why, size_t whysize)
{
    struct timeval tv = {WF_ACME_HTTP_TIMEOUT_MS / 1000, 0};
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    struct addrinfo *ai;
    char serv[8];
    int fd = -1;

    snprintf(serv, sizeof(serv), "%u", port);
    if (getaddrinfo(host, serv, &hints, &res) != 0) {
        http_fail(why, whysize, "cannot resolve \"%s\"", host);
        return -1;
    }
    for (ai = res; ai != NULL && fd == -1; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd == -1) {
            continue;
        }
        /* Linux bounds connect() by SO_SNDTIMEO too. */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
            snprintf(why, whysize, "connect() to %s:%u failed: %s", host, port,
                     strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* The TLS session on fd (taken: closed with the SSL), verified for host. */
static SSL *
http_tls(SSL_CTX *ctx, int fd, const char *host, char *why, size_t whysize)
{
    unsigned char ip[16];
    bool is_ip =
        inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    SSL *ssl = SSL_new(ctx);
    BIO *bio = BIO_new_socket(fd, BIO_CLOSE);
    long vr;

    if (ssl == NULL || bio == NULL) {
        SSL_free(ssl);
        BIO_free(bio);
        close(fd);
        http_fail(why, whysize, "%s", "out of memory");
        return NULL;
    }
    SSL_set_bio(ssl, bio, bio);
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    } else {
        SSL_set_tlsext_host_name(ssl, host);
        SSL_set1_host(ssl, host);
    }
    if (SSL_connect(ssl) == 1) {
        return ssl;
    }
    vr = SSL_get_verify_result(ssl);
    if (vr != X509_V_OK) {
        http_fail(why, whysize, "the server's certificate: %s",
                  X509_verify_cert_error_string(vr));
    } else {
        http_fail(why, whysize, "TLS handshake with %s failed", host);
    }
    SSL_free(ssl);
    return NULL;
}

static int
http_write_all(SSL *ssl, const char *p, size_t n)
{
    while (n > 0) {
        int w = SSL_write(ssl, p, (int)wf_min(n, (size_t)16384));

        if (w <= 0) {
            return WF_ERROR;
        }
        p += w;
        n -= (size_t)w;
    }
    return WF_OK;
}

/* Reads until the server closes, at most the head and body limits. */
static char *
http_read_all(SSL *ssl, size_t *len, char *why, size_t whysize)
{
    size_t cap = 8192;
    size_t n = 0;
    char *buf = malloc(cap + 1);

    while (buf != NULL) {
        int r;

        if (n == cap) {
            char *b = cap < WF_ACME_HTTP_BODY_MAX + ACME_HTTP_HEAD_MAX
                          ? realloc(buf, cap * 2 + 1)
                          : NULL;

            if (b == NULL) {
                free(buf);
                http_fail(why, whysize, "%s", "the response is too large");
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
        r = SSL_read(ssl, buf + n, (int)(cap - n));
        if (r > 0) {
            n += (size_t)r;
            continue;
        }
        if (SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN
            || (SSL_get_error(ssl, r) == SSL_ERROR_SYSCALL && errno == 0)
            || (SSL_get_error(ssl, r) == SSL_ERROR_SSL && n > 0)) {
            break;
        }
        free(buf);
        http_fail(why, whysize, "%s",
                  errno == EAGAIN ? "timed out reading the response"
                                  : "reading the response failed");
        return NULL;
    }
    if (buf != NULL) {
        buf[n] = '\0';
        *len = n;
    }
    ERR_clear_error();
    return buf;
}

static char *
http_strndup(const char *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* One header line name: value into resp; sets *chunked and *clen. */
static void
http_header(wf_acme_resp_t *resp, const char *p, size_t n, bool *chunked,
            long *clen)
{
    static const struct {
        const char *name;
        size_t off; /* of a char * in wf_acme_resp_t, or 0 */
    } hdrs[] = {
        {"location", offsetof(wf_acme_resp_t, location)},
        {"replay-nonce", offsetof(wf_acme_resp_t, nonce)},
        {"content-type", offsetof(wf_acme_resp_t, content_type)},
    };
    const char *colon = memchr(p, ':', n);
    const char *v;
    size_t nl;
    size_t vl;

    if (colon == NULL) {
        return;
    }
    nl = (size_t)(colon - p);
    for (v = colon + 1; v < p + n && (*v == ' ' || *v == '\t'); v++) {
    }
    vl = (size_t)(p + n - v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
        vl--;
    }
    for (size_t i = 0; i < wf_nitems(hdrs); i++) {
        char **slot = (char **)((char *)resp + hdrs[i].off);

        if (strlen(hdrs[i].name) == nl && strncasecmp(p, hdrs[i].name, nl) == 0
            && *slot == NULL) {
            *slot = http_strndup(v, vl);
            return;
        }
    }
    if (nl == 11 && strncasecmp(p, "retry-after", nl) == 0) {
        resp->retry_after = strtol(v, NULL, 10); /* delta-seconds only */
    } else if (nl == 14 && strncasecmp(p, "content-length", nl) == 0) {
        *clen = strtol(v, NULL, 10);
    } else if (nl == 17 && strncasecmp(p, "transfer-encoding", nl) == 0) {
        *chunked = vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0;
    }
}

/* Decodes a chunked body in place; returns its length or -1. */
static long
http_unchunk(char *b, size_t n)
{
    char *in = b;
    char *out = b;
    char *end = b + n;

    for (;;) {
        char *e;
        unsigned long sz = strtoul(in, &e, 16);
        char *crlf = memmem(e, (size_t)(end - e), "\r\n", 2);

        if (e == in || crlf == NULL) {
            return -1;
        }
        in = crlf + 2;
        if (sz == 0) {
            return out - b;
        }
        /* The data and its CRLF must be there. */
        if (sz > (size_t)(end - in) || (size_t)(end - in) - sz < 2
            || memcmp(in + sz, "\r\n", 2) != 0) {
            return -1;
        }
        memmove(out, in, sz);
        out += sz;
        in += sz + 2;
    }
}

int
wf_acme_resp_parse(char *buf, size_t n, wf_acme_resp_t *resp, char *why,
                   size_t whysize)
{
    char *end = memmem(buf, n, "\r\n\r\n", 4);
    char *p = buf;
    bool chunked = false;
    long clen = -1;
    size_t blen;
    char *body;

    memset(resp, 0, sizeof(*resp));
    resp->retry_after = -1;
    if (end == NULL || n < 12 || memcmp(buf, "HTTP/1.", 7) != 0) {
        free(buf);
        return http_fail(why, whysize, "%s", "the response is not HTTP");
    }
    resp->status = atoi(buf + 9);
    p = memmem(buf, (size_t)(end - buf) + 2, "\r\n", 2) + 2;
    while (p < end + 2) {
        char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);

        http_header(resp, p, (size_t)(eol - p), &chunked, &clen);
        p = eol + 2;
    }
    body = end + 4;
    blen = n - (size_t)(body - buf);
    if (chunked) {
        long l = http_unchunk(body, blen);

        if (l < 0) {
            free(buf);
            wf_acme_resp_fini(resp);
            return http_fail(why, whysize, "%s", "a malformed chunked body");
        }
        blen = (size_t)l;
    } else if (clen >= 0 && (size_t)clen > blen) {
        free(buf);
        wf_acme_resp_fini(resp);
        return http_fail(why, whysize, "%s", "the response ended early");
    } else if (clen >= 0) {
        blen = (size_t)clen;
    }
    memmove(buf, body, blen);
    buf[blen] = '\0';
    resp->body = buf;
    resp->len = blen;
    return WF_OK;
}

static char *
http_request_text(const char *method, const char *host, unsigned port,
                  const char *path, const char *ctype, const char *body,
                  size_t *len)
{
    size_t blen = body != NULL ? strlen(body) : 0;
    size_t cap = strlen(path) + strlen(host) + blen + 512;
    char *req = malloc(cap);
    int n;

    if (req == NULL) {
        return NULL;
    }
    n = snprintf(req, cap,
                 "%s %s HTTP/1.1\r\nHost: %s%s%s:%u\r\n"
                 "User-Agent: Wharf-ACME\r\n"
                 "Accept: */*\r\nConnection: close\r\n",
                 method, path, strchr(host, ':') != NULL ? "[" : "", host,
                 strchr(host, ':') != NULL ? "]" : "", port);
    if (body != NULL) {
        n += snprintf(req + n, cap - (size_t)n,
                      "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype,
                      blen);
    }
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body != NULL) {
        memcpy(req + n, body, blen);
    }
    *len = (size_t)n + blen;
    return req;
}

int
wf_acme_http_send(SSL_CTX *ctx, const char *method, const char *url,
                  const char *ctype, const char *body, wf_acme_resp_t *resp,
                  char *why, size_t whysize)
{
    char host[256];
    const char *path;
    unsigned port;
    size_t len;
    char *req;
    char *buf;
    SSL *ssl;
    int fd;

    memset(resp, 0, sizeof(*resp));
    resp->retry_after = -1;
    if (wf_acme_url_parse(url, host, sizeof(host), &port, &path) != WF_OK) {
        return http_fail(why, whysize, "\"%s\" is not an https URL", url);
    }
    fd = http_connect(host, port, why, whysize);
    if (fd == -1) {
        return WF_ERROR;
    }
    ssl = http_tls(ctx, fd, host, why, whysize);
    if (ssl == NULL) {
        return WF_ERROR;
    }
    req = http_request_text(method, host, port, path, ctype, body, &len);
    if (req == NULL || http_write_all(ssl, req, len) != WF_OK) {
        free(req);
        SSL_free(ssl);
        return http_fail(why, whysize, "sending to %s failed", host);
    }
    free(req);
    buf = http_read_all(ssl, &len, why, whysize);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ERR_clear_error();
    return buf != NULL ? wf_acme_resp_parse(buf, len, resp, why, whysize)
                       : WF_ERROR;
}

void
wf_acme_resp_fini(wf_acme_resp_t *resp)
{
    free(resp->location);
    free(resp->nonce);
    free(resp->content_type);
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}
