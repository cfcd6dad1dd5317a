/* Listening sockets and the accept path.
 *
 * Every loop polls every listening socket with EPOLLEXCLUSIVE.  A loop
 * accepts at most maxaccept connections per wake-up and never beyond the
 * global maxconn: at the limit every listener stops being polled (it is
 * full) and resumes when a connection ends, so nothing is refused or reset;
 * clients wait in the kernel's backlog.  A loop that accepts while another
 * loop holds clearly fewer connections hands the new socket to that loop. */
#ifndef WF_CORE_LISTEN_H
#define WF_CORE_LISTEN_H

#include <stdbool.h>
#include <sys/socket.h>

#include "core/loop.h"

typedef struct wf_listener wf_listener_t;

/* Called on the loop that owns the new connection fd (which it must close
 * eventually, then call wf_listen_conn_release()); peer is the client's
 * address (borrowed for the call). */
typedef void (*wf_accept_cb)(wf_listener_t *l, wf_loop_t *loop, int fd,
                             const struct sockaddr *peer, socklen_t peerlen);

struct wf_listener {
    wf_io_t io; /* the listening socket; fd -1 when closed */
    wf_accept_cb on_accept;
    const char *name; /* borrowed, for logs */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool started; /* registered with the loops */
};

#define WF_LISTEN_BACKLOG 511

/* Sets the limits; call before the loops start.  0 keeps the default
 * (maxconn: from the fd limit; maxaccept: 64). */
void wf_listen_set_limits(unsigned maxconn, unsigned maxaccept);

unsigned wf_listen_maxconn(void);

/* Creates, binds and listens; a unix socket path is unlinked first.
 * Returns WF_OK or WF_ERROR (logged). */
int wf_listener_open(wf_listener_t *l);

/* Registers l with every loop (after wf_loops_create()).  l must stay alive
 * until wf_listener_close(). */
int wf_listener_start(wf_listener_t *l);

/* Unregisters l from every loop and closes its socket.  Accepts a listener
 * that is not open. */
void wf_listener_close(wf_listener_t *l);

/* Counts a connection that did not come through accept() (a socket handed
 * in, a test's socketpair) as if a listener had accepted it on loop, so
 * that its wf_listen_conn_release() balances.  Callable on loop's
 * thread, or before loop runs. */
void wf_listen_conn_add(wf_loop_t *loop);

/* A connection accepted through any listener ended; loop is its owner.
 * Resumes full listeners.  Callable on the owner's thread. */
void wf_listen_conn_release(wf_loop_t *loop);

/* True when a and b are the same listening address: family, address and
 * port, or unix path (both zero-filled past the path). */
bool wf_sockaddr_eq(const struct sockaddr *a, const struct sockaddr *b);

#endif
