#include "net/tls_ocsp.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"

#define OCSP_TIMEOUT_MS  10000       /* connect, send, receive: each */
#define OCSP_RESP_MAX    (64 * 1024) /* a response larger is refused */
#define OCSP_REFRESH_MAX 3600        /* seconds between good fetches */
#define OCSP_REFRESH_MIN 5
#define OCSP_RETRY_MIN   2 /* after a failure, doubled per failure */
#define OCSP_RETRY_MAX   300
#define OCSP_NAME_MAX    128

/* One certificate's stapling.  Owned by its SSL_CTX (ex_data) and, while
 * queued, by the refresher: refs counts both.  Every field below the lock
 * line is guarded by ocsp_lock. */
typedef struct tls_ocsp {
    X509 *leaf;
    X509 *issuer;
    STACK_OF(X509) * chain; /* the chain after the leaf (responder certs) */
    char *url;
    char name[OCSP_NAME_MAX];
    /* ---- ocsp_lock ---- */
    unsigned refs;
    bool started;        /* a client asked: the refresher keeps it */
    bool queued;         /* in ocsp_queue, waiting for due */
    bool dead;           /* its SSL_CTX is gone */
    time_t due;          /* next fetch */
    unsigned failures;   /* in a row */
    unsigned char *resp; /* the DER of the good response stapled */
    size_t resp_len;
    time_t resp_until; /* its nextUpdate; 0: none */
    struct tls_ocsp *next;
} tls_ocsp_t;

static pthread_mutex_t ocsp_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ocsp_cond = PTHREAD_COND_INITIALIZER;
static tls_ocsp_t *ocsp_queue;
static bool ocsp_thread_started;
static int ocsp_index = -1;
static pthread_once_t ocsp_once = PTHREAD_ONCE_INIT;

time_t
wf_tls_ocsp_next(time_t now, time_t next_update, unsigned failures)
{
    time_t wait;

    if (failures > 0) {
        wait = OCSP_RETRY_MIN;
        for (unsigned i = 1; i < failures && wait < OCSP_RETRY_MAX; i++) {
            wait *= 2;
        }
        return now + wf_min(wait, (time_t)OCSP_RETRY_MAX);
    }
    wait = next_update > now ? (next_update - now) / 2 : OCSP_REFRESH_MAX;
    if (next_update != 0 && next_update <= now) {
        wait = OCSP_REFRESH_MIN;
    }
    wait = wf_min(wait, (time_t)OCSP_REFRESH_MAX);
    return now + wf_max(wait, (time_t)OCSP_REFRESH_MIN);
}

/* Drops a reference (ocsp_lock held); frees o with the last. */
static void
ocsp_unref_locked(tls_ocsp_t *o)
{
    if (--o->refs > 0) {
        return;
    }
    X509_free(o->leaf);
    X509_free(o->issuer);
    sk_X509_pop_free(o->chain, X509_free);
    OPENSSL_free(o->url);
    free(o->resp);
    free(o);
}

static void
ocsp_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
             void *argp)
{
    tls_ocsp_t *o = ptr;

    wf_unused(parent);
    wf_unused(ad);
    wf_unused(idx);
    wf_unused(argl);
    wf_unused(argp);
    if (o == NULL) {
        return;
    }
    pthread_mutex_lock(&ocsp_lock);
    o->dead = true;
    ocsp_unref_locked(o);
    pthread_cond_signal(&ocsp_cond); /* the refresher drops it */
    pthread_mutex_unlock(&ocsp_lock);
}

static void
ocsp_init(void)
{
    ocsp_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ocsp_ex_free);
}

/* ---- fetching (the refresher's thread only) ---------------------------- */

static bool
ocsp_wait_fd(int fd, short events)
{
    struct pollfd p = {fd, events, 0};
    int rc;

    do {
        rc = poll(&p, 1, OCSP_TIMEOUT_MS);
    } while (rc == -1 && errno == EINTR);
    return rc == 1;
}

/* A connected socket to host:port, or -1. */
static int
ocsp_connect(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int fd = -1;

    if (getaddrinfo(host, port, &hints, &res) != 0) {
        return -1;
    }
    for (struct addrinfo *a = res; a != NULL && fd == -1; a = a->ai_next) {
        int err = 0;
        socklen_t len = sizeof(err);

        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    a->ai_protocol);
        if (fd == -1) {
            continue;
        }
        if ((connect(fd, a->ai_addr, a->ai_addrlen) == 0
             || (errno == EINPROGRESS && ocsp_wait_fd(fd, POLLOUT)
                 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0
                 && err == 0))) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static bool
ocsp_send_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w == -1 && errno == EAGAIN && ocsp_wait_fd(fd, POLLOUT)) {
            continue;
        } else if (w == -1 && errno == EINTR) {
            continue;
        } else {
            return false;
        }
    }
    return true;
}

/* Reads the whole HTTP/1.0 answer (until EOF) into buf; returns its
 * length or -1. */
static ssize_t
ocsp_recv_all(int fd, unsigned char *buf, size_t cap)
{
    size_t n = 0;

    for (;;) {
        ssize_t r = recv(fd, buf + n, cap - n, 0);

        if (r > 0) {
            n += (size_t)r;
            if (n == cap) {
                return -1; /* too large */
            }
        } else if (r == 0) {
            return (ssize_t)n;
        } else if (errno == EAGAIN && ocsp_wait_fd(fd, POLLIN)) {
            continue;
        } else if (errno != EINTR) {
            return -1;
        }
    }
}

/* The body of a "200" answer in buf[0..n), or NULL. */
static const unsigned char *
ocsp_http_body(const unsigned char *buf, size_t n, size_t *len)
{
    const unsigned char *end = memmem(buf, n, "\r\n\r\n", 4);

    if (end == NULL || n < 12 || memcmp(buf, "HTTP/1.", 7) != 0
        || memcmp(buf + 8, " 200", 4) != 0) {
        return NULL;
    }
    *len = n - (size_t)(end + 4 - buf);
    return end + 4;
}

/* POSTs req to o's responder (HTTP/1.0) and parses the answer; NULL with
 * why set on failure. */
static OCSP_RESPONSE *
ocsp_exchange(const tls_ocsp_t *o, OCSP_REQUEST *req, const char **why)
{
    char *host = NULL, *port = NULL, *path = NULL;
    unsigned char *der = NULL, *buf = NULL;
    const unsigned char *body;
    char head[1024];
    OCSP_RESPONSE *resp = NULL;
    int use_ssl = 0, fd = -1, hn, dn;
    ssize_t n;
    size_t blen = 0;

    *why = "the responder's URL is not http://";
    if (OCSP_parse_url(o->url, &host, &port, &path, &use_ssl) != 1 || use_ssl) {
        goto done;
    }
    *why = "out of memory";
    dn = i2d_OCSP_REQUEST(req, &der);
    buf = malloc(OCSP_RESP_MAX);
    if (dn <= 0 || buf == NULL) {
        goto done;
    }
    hn = snprintf(head, sizeof(head),
                  "POST %s HTTP/1.0\r\nHost: %s\r\n"
                  "Content-Type: application/ocsp-request\r\n"
                  "Content-Length: %d\r\n\r\n",
                  path, host, dn);
    *why = "the responder cannot be reached";
    if (hn <= 0 || (size_t)hn >= sizeof(head)
        || (fd = ocsp_connect(host, port)) == -1) {
        goto done;
    }
    *why = "the responder did not answer";
    if (!ocsp_send_all(fd, (unsigned char *)head, (size_t)hn)
        || !ocsp_send_all(fd, der, (size_t)dn)
        || (n = ocsp_recv_all(fd, buf, OCSP_RESP_MAX)) < 0) {
        goto done;
    }
    *why = "the responder's answer is not a 200 with a body";
    body = ocsp_http_body(buf, (size_t)n, &blen);
    if (body != NULL && blen <= LONG_MAX) {
        resp = d2i_OCSP_RESPONSE(NULL, &body, (long)blen);
        *why = resp == NULL ? "the response does not parse" : NULL;
    }

done:
    if (fd != -1) {
        close(fd);
    }
    OPENSSL_free(der);
    free(buf);
    OPENSSL_free(host);
    OPENSSL_free(port);
    OPENSSL_free(path);
    return resp;
}

/* Checks resp for o's leaf as nginx's stapling does: a successful,
 * signed (by the issuer or a responder it delegated to) answer that the
 * leaf is good, current.  Sets *until to its nextUpdate (0: none).
 * Returns NULL or why not. */
static const char *
ocsp_check(const tls_ocsp_t *o, OCSP_RESPONSE *resp, OCSP_CERTID *id,
           time_t *until)
{
    OCSP_BASICRESP *bs = NULL;
    X509_STORE *store = X509_STORE_new();
    ASN1_GENERALIZEDTIME *thisupd, *nextupd;
    const char *why = NULL;
    int status, reason;
    struct tm tm;

    if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        why = "the responder answered with an error status";
    } else if ((bs = OCSP_response_get1_basic(resp)) == NULL || store == NULL
               || X509_STORE_add_cert(store, o->issuer) != 1) {
        why = "the response has no basic response";
    } else if (OCSP_basic_verify(bs, o->chain, store, OCSP_TRUSTOTHER) != 1) {
        why = "the response's signature does not verify";
    } else if (OCSP_resp_find_status(bs, id, &status, &reason, NULL, &thisupd,
                                     &nextupd)
               != 1) {
        why = "the response is not about this certificate";
    } else if (status != V_OCSP_CERTSTATUS_GOOD) {
        why = status == V_OCSP_CERTSTATUS_REVOKED ? "the certificate is revoked"
                                                  : "the certificate's "
                                                    "status is unknown";
    } else if (OCSP_check_validity(thisupd, nextupd, 300, -1) != 1) {
        why = "the response is out of date";
    }
    *until = 0;
    if (why == NULL && nextupd != NULL && ASN1_TIME_to_tm(nextupd, &tm) == 1) {
        *until = timegm(&tm);
    }
    OCSP_BASICRESP_free(bs);
    X509_STORE_free(store);
    return why;
}

/* One fetch for o (no lock held; o is referenced).  On success sets *der
 * (malloc'd) and returns NULL; else returns why. */
static const char *
ocsp_fetch(const tls_ocsp_t *o, unsigned char **der, size_t *len, time_t *until)
{
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, o->leaf, o->issuer);
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_RESPONSE *resp = NULL;
    const char *why = "out of memory";
    unsigned char *p = NULL;
    int n;

    if (id == NULL || req == NULL
        || OCSP_request_add0_id(req, OCSP_CERTID_dup(id)) == NULL) {
        goto done;
    }
    resp = ocsp_exchange(o, req, &why);
    if (resp == NULL || (why = ocsp_check(o, resp, id, until)) != NULL) {
        goto done;
    }
    why = "out of memory";
    n = i2d_OCSP_RESPONSE(resp, &p);
    if (n > 0 && (*der = malloc((size_t)n)) != NULL) {
        memcpy(*der, p, (size_t)n);
        *len = (size_t)n;
        why = NULL;
    }

done:
    OPENSSL_free(p);
    OCSP_RESPONSE_free(resp);
    OCSP_REQUEST_free(req);
    OCSP_CERTID_free(id);
    ERR_clear_error();
    return why;
}

/* ---- the refresher ------------------------------------------------------ */

/* Takes the queued entry due first off the queue once it is due (waiting
 * for it); drops dead ones.  ocsp_lock held. */
static tls_ocsp_t *
ocsp_next_due(void)
{
    for (;;) {
        tls_ocsp_t **pp = &ocsp_queue, **first = NULL;
        struct timespec ts;

        while (*pp != NULL) {
            tls_ocsp_t *o = *pp;

            if (o->dead) {
                *pp = o->next;
                o->queued = false;
                ocsp_unref_locked(o);
                continue;
            }
            if (first == NULL || o->due < (*first)->due) {
                first = pp;
            }
            pp = &o->next;
        }
        if (first == NULL) {
            pthread_cond_wait(&ocsp_cond, &ocsp_lock);
            continue;
        }
        if ((*first)->due <= time(NULL)) {
            tls_ocsp_t *o = *first;

            *first = o->next;
            o->queued = false;
            return o;
        }
        ts.tv_sec = (*first)->due;
        ts.tv_nsec = 0;
        pthread_cond_timedwait(&ocsp_cond, &ocsp_lock, &ts);
    }
}

/* Keeps the outcome of o's fetch and queues its next one. */
static void
ocsp_store_locked(tls_ocsp_t *o, const char *why, unsigned char *der,
                  size_t len, time_t until)
{
    time_t now = time(NULL);

    if (why == NULL) {
        free(o->resp);
        o->resp = der;
        o->resp_len = len;
        o->resp_until = until;
        o->failures = 0;
    } else {
        o->failures++;
    }
    o->due = wf_tls_ocsp_next(now, until, o->failures);
    if (!o->dead) {
        o->queued = true;
        o->next = ocsp_queue;
        ocsp_queue = o;
        o->refs++;
    }
}

static void *
ocsp_thread(void *arg)
{
    wf_unused(arg);
    pthread_mutex_lock(&ocsp_lock);
    for (;;) {
        tls_ocsp_t *o = ocsp_next_due(); /* its queue reference is ours */
        unsigned char *der = NULL;
        size_t len = 0;
        time_t until = 0;
        const char *why;

        pthread_mutex_unlock(&ocsp_lock);
        why = ocsp_fetch(o, &der, &len, &until);
        if (why == NULL) {
            wf_log_info("OCSP response for certificate \"%s\" from \"%s\": "
                        "good, %zu bytes stapled",
                        o->name, o->url, len);
        } else {
            wf_log_warn(0, "OCSP stapling of certificate \"%s\" (\"%s\"): %s",
                        o->name, o->url, why);
        }
        pthread_mutex_lock(&ocsp_lock);
        ocsp_store_locked(o, why, der, len, until);
        ocsp_unref_locked(o);
    }
    return NULL;
}

/* Queues o's first fetch now and starts the refresher if it is not
 * running.  ocsp_lock held. */
static void
ocsp_start_locked(tls_ocsp_t *o)
{
    pthread_t t;
    pthread_attr_t attr;

    o->started = true;
    o->due = time(NULL);
    o->queued = true;
    o->next = ocsp_queue;
    ocsp_queue = o;
    o->refs++;
    if (!ocsp_thread_started && pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        ocsp_thread_started = pthread_create(&t, &attr, ocsp_thread, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    pthread_cond_signal(&ocsp_cond);
}

/* The status callback (any I/O thread, in a handshake whose client asked
 * for a status): a copy of the current response, if one is good now; the
 * first ask starts the fetching. */
static int
ocsp_on_status(SSL *ssl, void *arg)
{
    tls_ocsp_t *o = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ocsp_index);
    unsigned char *copy = NULL;
    size_t len = 0;

    wf_unused(arg);
    if (o == NULL) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    pthread_mutex_lock(&ocsp_lock);
    if (!o->started) {
        ocsp_start_locked(o);
    }
    if (o->resp != NULL && (o->resp_until == 0 || o->resp_until > time(NULL))
        && (copy = OPENSSL_malloc(o->resp_len)) != NULL) {
        memcpy(copy, o->resp, o->resp_len);
        len = o->resp_len;
    }
    pthread_mutex_unlock(&ocsp_lock);
    if (copy == NULL) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* The leaf's first OCSP URL (OPENSSL_malloc'd), or NULL. */
static char *
ocsp_url(X509 *leaf)
{
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(leaf);
    char *url = NULL;

    if (urls != NULL && sk_OPENSSL_STRING_num(urls) > 0) {
        url = OPENSSL_strdup(sk_OPENSSL_STRING_value(urls, 0));
    }
    X509_email_free(urls);
    return url;
}

bool
wf_tls_ocsp_attach(SSL_CTX *ctx, const char *name)
{
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    STACK_OF(X509) *chain = NULL;
    tls_ocsp_t *o;
    char *url;

    pthread_once(&ocsp_once, ocsp_init);
    SSL_CTX_get0_chain_certs(ctx, &chain);
    url = leaf != NULL ? ocsp_url(leaf) : NULL;
    if (url == NULL) {
        return false; /* the certificate names no responder */
    }
    if (sk_X509_num(chain) <= 0
        || X509_check_issued(sk_X509_value(chain, 0), leaf) != X509_V_OK) {
        wf_log_info("no OCSP stapling for certificate \"%s\": its issuer "
                    "is not in its bundle",
                    name);
        OPENSSL_free(url);
        return false;
    }
    o = calloc(1, sizeof(*o));
    if (o == NULL || ocsp_index < 0) {
        free(o);
        OPENSSL_free(url);
        return false;
    }
    X509_up_ref(leaf);
    o->leaf = leaf;
    o->issuer = sk_X509_value(chain, 0);
    X509_up_ref(o->issuer);
    o->chain = X509_chain_up_ref(chain);
    o->url = url;
    o->refs = 1;
    snprintf(o->name, sizeof(o->name), "%s", name);
    if (o->chain == NULL || SSL_CTX_set_ex_data(ctx, ocsp_index, o) != 1) {
        ocsp_unref_locked(o); /* not shared yet: no lock needed */
        return false;
    }
    SSL_CTX_set_tlsext_status_cb(ctx, ocsp_on_status);
    return true;
}
