/* States of an HTTP/1.x client connection (see h1_conn.c for the table of
 * what each state does). */
#ifndef WF_HTTP_H1_CONN_TYPES_H
#define WF_HTTP_H1_CONN_TYPES_H

typedef enum wf_h1_state {
    WF_H1_IDLE = 0, /* between requests; c->req == NULL, no unread bytes */
    WF_H1_TLS,      /* the TLS handshake runs; c->req == NULL */
    WF_H1_HEAD,     /* a head is expected or arriving in c->rbuf; c->req
                       set once bytes came (a new connection has none) */
    WF_H1_BODY,     /* head parsed; the body is being read and dropped */
    WF_H1_RESPOND,  /* a handler owns c->req; input is not polled */
    WF_H1_SEND,     /* the response is being written */
    WF_H1_TUNNEL,   /* after a 101: raw bytes both ways between the
                       socket and c->req's channels */
    WF_H1_WS_CLOSE, /* the tunnel's endpoint is done and out; the
                       client's WebSocket Close is awaited */
    WF_H1_LINGER,   /* our side is shut; input is read and dropped */
    WF_H1_CLOSING,  /* fd closed; memory freed at the end of this tick */
    WF_H1_NSTATES   /* must stay last */
} wf_h1_state_t;

#endif
