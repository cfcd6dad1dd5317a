/* The ACME client's HTTPS: one blocking HTTP/1.1 exchange per connection
 * (Connection: close) over an OpenSSL BIO, with send and receive timeouts,
 * for the ACME thread only (never an I/O thread).  The server's
 * certificate is verified against the entry's CA bundle and its name
 * (host name or IP address).  See docs/internals/acme.md. */
#ifndef WF_CONTROL_ACME_HTTP_H
#define WF_CONTROL_ACME_HTTP_H

#include <openssl/ssl.h>
#include <stddef.h>

#define WF_ACME_HTTP_TIMEOUT_MS 10000 /* connect, each send, each receive */
#define WF_ACME_HTTP_BODY_MAX   (1024u * 1024)

typedef struct wf_acme_resp {
    int status;         /* the HTTP status */
    char *location;     /* owned; Location, or NULL */
    char *nonce;        /* owned; Replay-Nonce, or NULL */
    char *content_type; /* owned; or NULL */
    long retry_after;   /* Retry-After in seconds, -1 when absent */
    char *body;         /* owned; NUL-terminated, len bytes */
    size_t len;
} wf_acme_resp_t;

/* A client context trusting the certificates of ca_pem (NUL-terminated
 * PEM text; NULL: the system's trust store): a new context, or NULL with
 * a sentence in why. */
SSL_CTX *wf_acme_http_ctx_create(const char *ca_pem, char *why, size_t whysize);

/* Sends method url (https://HOST[:PORT]/PATH) with body (NULL: none; else
 * NUL-terminated, Content-Type ctype) and reads the whole response into
 * *resp (zeroed by this call; free with wf_acme_resp_fini()).  Returns
 * WF_OK (any status) or WF_ERROR with a sentence in why (connect, TLS,
 * verification, timeout, a malformed or too large response).  Blocks. */
int wf_acme_http_send(SSL_CTX *ctx, const char *method, const char *url,
                      const char *ctype, const char *body, wf_acme_resp_t *resp,
                      char *why, size_t whysize);

/* Parses a whole HTTP/1.x response buf[0..n) (buf[n] must be '\0': the
 * caller allocated n + 1 bytes) into *resp (zeroed first): the status,
 * Location, Replay-Nonce, Content-Type, Retry-After (delta-seconds), and
 * the body by Content-Length, chunked, or to the end.  Takes buf: it
 * becomes resp->body, or is freed on error.  Returns WF_OK, or WF_ERROR
 * with a sentence in why (not HTTP, a malformed chunked body).  The
 * bytes are the ACME server's: anything must be safe. */
int wf_acme_resp_parse(char *buf, size_t n, wf_acme_resp_t *resp, char *why,
                       size_t whysize);

/* Frees what resp owns; accepts a zeroed resp. */
void wf_acme_resp_fini(wf_acme_resp_t *resp);

/* Splits url into host (at most hsize - 1 bytes, without brackets), port
 * (443 when absent) and path ("/" when absent).  Returns WF_OK, or
 * WF_ERROR when url is not an https URL. */
int wf_acme_url_parse(const char *url, char *host, size_t hsize, unsigned *port,
                      const char **path);

#endif
