/* TLS to backends (the client side, OpenSSL 3): one context per proxy
 * action or upstream that speaks https, with its verification (a CA
 * bundle from the certificate store or a file, else the system's), an
 * optional client certificate, and the sessions of its servers kept for
 * resumption.  Connections use the transport ops (net/xprt.h), so the
 * proxy reads and writes them as it does a plain socket.  See
 * docs/internals/proxy.md, "TLS to backends". */
#ifndef WF_NET_TLS_CLIENT_H
#define WF_NET_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/xprt.h"

typedef struct wf_tls_cli wf_tls_cli_t;

/* What a "tls" object (or an https:// proxy) asks for.  Strings are
 * borrowed until wf_tls_cli_build(). */
typedef struct wf_tls_cli_conf {
    bool verify;        /* verify the server's chain (and its name) */
    const char *ca_pem; /* CA certificates (PEM); NULL: see ca_file */
    size_t ca_len;
    const char *ca_file;  /* a PEM file of CA certificates; NULL with
                             ca_pem NULL: the system's default paths */
    const char *cert_pem; /* a client certificate bundle (key and chain,
                             as the store keeps it); NULL: none */
    size_t cert_len;
} wf_tls_cli_conf_t;

/* Builds the context for c.  Reads files and parses PEM: not for an I/O
 * thread.  Returns a new object, or NULL with a sentence in why. */
wf_tls_cli_t *wf_tls_cli_create(const wf_tls_cli_conf_t *c, char *why,
                                size_t whysize);

/* Frees t and the sessions it kept (accepts NULL).  Connections it opened
 * keep working: each SSL holds a reference on the context. */
void wf_tls_cli_destroy(wf_tls_cli_t *t);

/* A number no other context of this process has had: the keep-alive
 * pools tell connections of different contexts apart by it. */
uint64_t wf_tls_cli_id(const wf_tls_cli_t *t);

/* Starts the client side of TLS on the connected fd for x (plain before).
 * sni: the server name to send and, when verifying, to check the
 * certificate against (NULL or "": none sent, and the address addr is
 * checked instead).  A session kept for addr (and sni) is offered for
 * resumption.  Returns WF_OK or WF_ERROR (out of memory). */
int wf_tls_cli_open(wf_xprt_t *x, wf_tls_cli_t *t, int fd, const char *sni,
                    const struct sockaddr *addr, socklen_t addrlen);

/* Offers ALPN "h2" (only) on x, opened by wf_tls_cli_open() and before
 * its handshake: HTTP/2 to a backend (http/proxy_h2.c), which then checks
 * wf_tls_alpn_h2().  Returns WF_OK or WF_ERROR. */
int wf_tls_cli_alpn_h2(wf_xprt_t *x);

/* Advances x's handshake.  Returns WF_OK once done, WF_AGAIN with *events
 * set to what to poll for (EPOLLIN or EPOLLOUT), or WF_ERROR with the
 * reason in why (OpenSSL's, and the verification result when that
 * failed). */
int wf_tls_cli_handshake(wf_xprt_t *x, uint32_t *events, char *why,
                         size_t whysize);

/* Did x's handshake resume a session? */
bool wf_tls_cli_resumed(const wf_xprt_t *x);

#endif
