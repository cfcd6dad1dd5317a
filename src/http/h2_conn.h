/* HTTP/2 client connections: a second mux beside h1 (http/mux.h), one
 * exchange per stream, on libnghttp2.  An h1 connection hands itself over
 * when TLS negotiated "h2" (ALPN) or when a listener with "h2c" sees the
 * client preface.  See docs/internals/h2.md. */
#ifndef WF_HTTP_H2_CONN_H
#define WF_HTTP_H2_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/loop.h"
#include "http/h1_conn.h"
#include "net/xprt.h"

#define WF_H2_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define WF_H2_PREFACE_LEN 24

/* The nghttp2 session's role, apart from who sends the preface: reverse
 * HTTP (issue 13) dials out, sends the client preface and serves
 * requests. */
typedef enum wf_h2_role {
    WF_H2_SERVER = 0, /* serves the peer's requests */
    WF_H2_CLIENT,     /* sends requests (reserved: the back side) */
} wf_h2_role_t;

/* What a reverse connection's owner (http/rhttp.c) is told. */
typedef enum wf_h2_event {
    WF_H2_EV_SETTINGS = 0, /* the peer's first SETTINGS: reversed */
    WF_H2_EV_CLOSE,        /* the connection closed (its fd is gone) */
} wf_h2_event_t;

/* What a connection starts from.  The connection takes over fd, xp and
 * the listener's connection count (wf_listen_conn_release() on close);
 * it takes references of its own to srv and site->snap. */
typedef struct wf_h2_start {
    int fd;
    wf_xprt_t xp; /* the transport, moved (plain, or TLS after "h2") */
    wf_loop_t *loop;
    wf_h1_server_t *srv;
    const wf_h1_site_t *site;
    const wf_sockaddr_t *remote;
    const wf_sockaddr_t *local;
    const char *pre; /* bytes already read from the peer (copied) */
    size_t npre;
    wf_h2_role_t role;
    bool recv_preface; /* the peer starts with the client preface */
    bool send_preface; /* we send the client preface first */
    /* NULL, or told of the events above on the connection's thread;
     * never calls into the connection (it may be closing). */
    void (*on_event)(void *arg, wf_h2_event_t ev);
    void *arg;
} wf_h2_start_t;

/* Starts an HTTP/2 connection on s->loop's thread.  Returns WF_OK, or
 * WF_ERROR after closing the fd and releasing what it took over (with
 * on_event, WF_H2_EV_CLOSE was told then too). */
int wf_h2_conn_start(const wf_h2_start_t *s);

/* Whether p[0..n) is the client preface (WF_OK), a prefix of it
 * (WF_AGAIN: wait for more), or something else (WF_DECLINED). */
int wf_h2_preface_check(const char *p, size_t n);

/* A stop of the loop: a graceful one sends GOAWAY and lets open streams
 * finish; else every connection closes.  Called by h1's stop hook. */
void wf_h2_on_stop(wf_loop_t *loop, bool graceful);

/* As wf_h1_sweep_removed(), for this thread's h2 connections: those of a
 * removed listener send GOAWAY and close once their streams are done. */
void wf_h2_sweep_removed(void);

/* Frees the thread's h2 objects (at thread exit). */
void wf_h2_thread_exit(void);

#endif
