/* Exchanges as endpoints see them: a request head, a request body channel,
 * a response head and a response body (a simple object, or a channel).
 * Endpoints (share, return, and later application and proxy) include this
 * header and http/req.h, never a mux header.  See
 * docs/internals/exchange.md for states, ownership and back-pressure.
 *
 * Bodies of requests are pushed by the mux into r->req_body only once the
 * endpoint asked for them (wf_xchg_body_read()); an endpoint that answers
 * without asking gets the body drained for it (max_body_size, 413). */
#ifndef WF_HTTP_EXCHANGE_H
#define WF_HTTP_EXCHANGE_H

#include <stdbool.h>

#include "http/chan.h"
#include "http/req.h"

#define WF_XCHG_CHAN_LIMIT (64 * 1024) /* bytes queued per channel */

/* Prepares r's channels on loop for a new exchange driven by mux.  Called
 * by the mux when it creates r.  Never allocates. */
void wf_xchg_init(wf_req_t *r, wf_mux_t *mux, wf_loop_t *loop);

/* Releases what the exchange layer holds in r (channel buffers, the file
 * of a simple response).  Called by the mux when it frees r. */
void wf_xchg_fini(wf_req_t *r);

/* The request has a body (Content-Length > 0 or chunked). */
bool wf_xchg_has_body(const wf_req_t *r);

/* The endpoint reads the request body: decoded bytes arrive in
 * r->req_body, and on_readable(&r->req_body) is called from the run queue
 * when bytes, EOF (wf_chan_is_done()) or an abort (a bad chunk, a body
 * over max_body_size, a timeout, a client gone) arrive.  A request
 * without a body gets EOF at once.  Sends 100 Continue if the client
 * waits for it.  Call at most once, before wf_req_respond().  After an
 * abort the mux answers the error itself: the endpoint only stops.  The
 * mux may free r right after an abort, cancelling the wake-up: an
 * endpoint that must hear of it sets r->on_abort. */
void wf_xchg_body_read(wf_req_t *r, wf_chan_cb on_readable);

/* Starts a response whose body has unknown length: sends r->resp's head
 * (chunked on HTTP/1.1, close-delimited on HTTP/1.0), then what the
 * endpoint writes into r->resp_body.  on_writable(&r->resp_body) is called
 * when room frees after a write met a full channel.  The endpoint ends
 * with wf_chan_close() (or wf_chan_abort(), which closes the connection)
 * and must not touch r after that call. */
void wf_xchg_stream_start(wf_req_t *r, wf_chan_cb on_writable);

/* What the request's head says of WebSocket (RFC 6455 4.1, 4.2.1), as
 * Unit checks it: WF_OK when it asks for no upgrade ("Upgrade: websocket"
 * and "Connection: upgrade", tokens in any case, are not both there);
 * WF_XCHG_WS for a valid opening handshake (GET on HTTP/1.1 without a
 * body, one Sec-WebSocket-Key that is the base64 of 16 bytes, one
 * "Sec-WebSocket-Version: 13"); else the status to answer: 400, or 426
 * for another version. */
#define WF_XCHG_WS 101
unsigned wf_xchg_ws_check(const wf_req_t *r);

/* Turns the exchange into a two-way byte tunnel: sends r->resp's head
 * (a 101 whose raw_fields carry Upgrade and the accept key; the mux adds
 * "Connection: Upgrade"), then the client's bytes come into r->req_body
 * (on_readable; the client's EOF closes it) and what the endpoint writes
 * into r->resp_body goes out raw (on_writable when room frees).  The
 * endpoint ends with wf_chan_close(&r->resp_body): the connection closes
 * once the bytes are out, after a bounded wait for the client's own
 * close; wf_chan_abort() closes it at once.  A client that goes away
 * aborts both channels.  No HTTP timeout applies; the tunnel closes after
 * settings.http.websocket.read_timeout without client bytes, if set.
 * Only for a request with r->websocket and whose body
 * was not asked for; like wf_req_respond(), the endpoint must not touch r
 * after a failure.  Returns WF_OK, or WF_DECLINED when the mux cannot
 * carry a tunnel (nothing was sent: answer otherwise). */
int wf_xchg_tunnel_start(wf_req_t *r, wf_chan_cb on_readable,
                         wf_chan_cb on_writable);

/* Calls the mux's ctl operation op (MUX_CTL_* from http/mux.h as an int,
 * so that endpoints need not include it).  Returns its value, or
 * WF_DECLINED. */
int wf_xchg_ctl(wf_req_t *r, int op, void *arg);

/* The simple object "file" (implemented by the file cache, static.c):
 * its descriptor for sendfile(), and dropping a reference (accepts NULL). */
int wf_file_fd(const wf_file_t *f);
void wf_file_unref(wf_file_t *f);

/* A file object of its own around fd (taken; closed with the last
 * reference), outside the cache: an application's open file.  Returns a
 * new reference, or NULL when out of memory (fd is then left open). */
wf_file_t *wf_file_from_fd(int fd);

#endif
