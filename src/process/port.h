/* Ports: framed, fragmented IPC between Wharf processes.
 *
 * A port is one end of an AF_UNIX SOCK_SEQPACKET socketpair.  Each packet is
 * a wf_port_hdr_t and a payload fragment, optionally with file descriptors
 * (SCM_RIGHTS).  Messages larger than the port's max_size travel in several
 * fragments and reach the handler once, as a chain of buffers.  Any thread
 * may send; reading, callbacks and closing happen on the thread that owns
 * the port.  The wire protocol, the validation rules and the ownership rules
 * are in docs/internals/ipc.md.
 *
 * The structs below are read or embedded by the port's users, so they live
 * here rather than in a port_types.h: this header includes only libc and
 * core headers, so it cannot take part in an include cycle. */
#ifndef WF_PROCESS_PORT_H
#define WF_PROCESS_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/list.h"
#include "core/loop.h"

#define WF_PORT_VERSION          1
#define WF_PORT_MAX_FDS          64 /* per message: WF_APP_MAX_FDS app sockets */
#define WF_PORT_MAX_SIZE_DEFAULT (16 * 1024)        /* payload per fragment */
#define WF_PORT_MAX_SIZE_MIN     1024               /* non-final fragments */
#define WF_PORT_MAX_SIZE_MAX     (64 * 1024)        /* fits any SO_SNDBUF */
#define WF_PORT_MSG_MAX          (64 * 1024 * 1024) /* reassembled payload */

/* Wire flags (wf_port_hdr_t.flags); any other bit is a protocol error. */
#define WF_PORT_HDR_MORE  0x0001 /* more fragments of this message follow */
#define WF_PORT_HDR_CONT  0x0002 /* not the first fragment of its message */
#define WF_PORT_HDR_FLAGS (WF_PORT_HDR_MORE | WF_PORT_HDR_CONT)

/* The header that starts every packet, in host byte order (both ends run on
 * the same host).  24 bytes, no padding. */
typedef struct wf_port_hdr {
    uint64_t stream; /* 0: no stream; else pairs a request with replies */
    uint32_t type;   /* index into nothing: looked up in the type table */
    uint32_t size;   /* payload bytes in this packet */
    uint32_t total;  /* payload bytes of the whole message, every fragment */
    uint16_t flags;  /* WF_PORT_HDR_* */
    uint8_t nfds;    /* fds attached to this packet; first fragment only */
    uint8_t version; /* WF_PORT_VERSION */
} wf_port_hdr_t;

/* The process roles; a message type says which roles may send it. */
typedef enum wf_port_role {
    WF_PORT_MAIN = 0,
    WF_PORT_CONTROLLER,
    WF_PORT_ROUTER,
    WF_PORT_APP,
    WF_PORT_NROLES /* must stay last */
} wf_port_role_t;

#define WF_PORT_FROM(role) (1u << (role)) /* bit in wf_port_type_t.senders */

typedef struct wf_port wf_port_t;
typedef struct wf_port_msg wf_port_msg_t;
typedef struct wf_port_owner wf_port_owner_t;
typedef struct wf_port_request wf_port_request_t;

/* One received payload piece; data[size..cap) is unused. */
typedef struct wf_port_buf {
    wf_list_t link; /* in wf_port_msg_t.chain */
    size_t size;    /* bytes of payload in data */
    size_t cap;     /* bytes allocated for data */
    unsigned char data[];
} wf_port_buf_t;

/* A reassembled message, as a handler sees it.  Everything in it is freed or
 * closed when the handler returns, except the fds it took. */
struct wf_port_msg {
    uint64_t stream;
    uint32_t type;
    unsigned nfds;            /* received fds, 0..WF_PORT_MAX_FDS */
    size_t size;              /* payload bytes, the sum over chain */
    wf_list_t chain;          /* wf_port_buf_t in order; empty if size 0 */
    int fds[WF_PORT_MAX_FDS]; /* owned by the msg; -1 once taken */
};

/* Runs on the owner thread once per complete message of its type.  May
 * send, close or destroy the port. */
typedef void (*wf_port_handler_cb)(wf_port_t *p, wf_port_msg_t *msg);

/* One entry of a port's type table.  The table is sorted by type, types are
 * unique, and it must outlive every port that uses it. */
typedef struct wf_port_type {
    uint32_t type;
    const char *name;           /* for logs */
    wf_port_handler_cb handler; /* never NULL */
    unsigned senders;           /* WF_PORT_FROM() bits: who may send it */
    unsigned max_fds;           /* more fds than this: protocol error */
} wf_port_type_t;

/* Embedded by the port's user in its own object (e.g. the record of a child
 * process); callbacks reach that object with wf_port_get_owner() and
 * wf_container_of().  Borrowed by the port: it must outlive the port. */
struct wf_port_owner {
    /* Called once on the owner thread when the port closes itself: peer
     * EOF or reset, a socket error, or garbage from the peer.  Pending
     * requests have already been failed.  May destroy the port.  NULL: no
     * call.  Never called for wf_port_close()/wf_port_destroy(). */
    void (*on_close)(wf_port_t *p);
};

/* Called on the owner thread when the request ends: status WF_OK with the
 * reply msg (see wf_port_reply_handler()), or WF_ERROR with msg NULL when the
 * port closed first.  The request is no longer registered; the callee may
 * free it. */
typedef void (*wf_port_request_cb)(wf_port_request_t *req, wf_port_msg_t *msg,
                                   int status);

/* A pending request, embedded in the requester's object. */
struct wf_port_request {
    wf_list_t link;             /* in the port's table while pending */
    uint64_t stream;            /* set by wf_port_request_add() */
    wf_port_request_cb handler; /* set by the caller before adding */
};

/* Creates a connected SOCK_SEQPACKET socketpair, close-on-exec and
 * non-blocking, in fds.  Returns WF_OK or WF_ERROR. */
int wf_port_pair(int fds[2]);

/* Creates a port on fd, which it takes ownership of, talking as self to a
 * process of role peer.  types (ntypes entries) and owner are borrowed and
 * must outlive the port; owner may be NULL.  The port is in manual mode
 * until wf_port_start(): the caller drives it with wf_port_on_readable() and
 * wf_port_flush().  Returns NULL on a bad table (logged) or out of memory;
 * fd is then left open. */
wf_port_t *wf_port_create(int fd, wf_port_role_t self, wf_port_role_t peer,
                          const wf_port_type_t *types, size_t ntypes,
                          wf_port_owner_t *owner);

/* Sets the payload bytes per fragment, both sent and accepted (a larger
 * fragment from the peer is a protocol error, so both ends must agree).
 * size must be in [WF_PORT_MAX_SIZE_MIN, WF_PORT_MAX_SIZE_MAX].  Call before
 * the first send or receive.  Returns WF_OK or WF_ERROR. */
int wf_port_set_max_size(wf_port_t *p, size_t size);

/* Registers p's socket with loop, whose thread becomes p's owner thread:
 * from then on reading, callbacks, wf_port_close() and wf_port_destroy()
 * happen on that thread only.  Call it before loop runs or on its thread.
 * Returns WF_OK or WF_ERROR. */
int wf_port_start(wf_port_t *p, wf_loop_t *loop);

/* Closes p: unregisters and closes the socket, drops unsent and partly
 * received messages, and fails pending requests (their callbacks run before
 * this returns).  Never calls owner->on_close.  Idempotent.  Owner thread. */
void wf_port_close(wf_port_t *p);

/* Closes p and drops the caller's reference; p is freed once no callback or
 * posted task still uses it.  Accepts NULL.  Owner thread. */
void wf_port_destroy(wf_port_t *p);

/* Reference counting for threads that send to a port they do not own: a
 * reference keeps the memory, not the socket.  Any thread. */
void wf_port_ref(wf_port_t *p);
void wf_port_unref(wf_port_t *p);

/* True once p is closed; sends then fail.  Any thread. */
bool wf_port_is_closed(wf_port_t *p);

wf_port_role_t wf_port_peer(const wf_port_t *p);
wf_port_owner_t *wf_port_get_owner(const wf_port_t *p);
const char *wf_port_role_name(wf_port_role_t role);

/* Queues one message and writes as much of the queue as the socket takes,
 * from the calling thread; the rest is written by the owner thread when the
 * socket is writable.  Any thread; never blocks and never calls back.
 * Copies data (len bytes, at most WF_PORT_MSG_MAX); borrows fds (at most
 * WF_PORT_MAX_FDS): the port sends duplicates, so the caller keeps its fds.
 * type must be in the table and sendable by this process's role.  stream is
 * 0 or an id from wf_port_stream_new() or a received message.  Returns WF_OK
 * once queued, WF_ERROR (logged) if p is closed or on a bad argument or out
 * of memory.  A message queued before the port closes may still be lost. */
int wf_port_send(wf_port_t *p, uint32_t type, uint64_t stream, const void *data,
                 size_t len, const int *fds, unsigned nfds);

/* Sends a reply to msg on its stream, without fds. */
static inline int
wf_port_reply(wf_port_t *p, const wf_port_msg_t *msg, uint32_t type,
              const void *data, size_t len)
{
    return wf_port_send(p, type, msg->stream, data, len, NULL, 0);
}

/* Runs task on p's owner thread (wf_task_post()).  Returns WF_ERROR if p is
 * not started.  Any thread. */
int wf_port_post(wf_port_t *p, wf_task_t *task);

/* Cork: messages sent meanwhile only queue; wf_port_uncork() sends them
 * (packets without fds with one sendmmsg()) and returns as
 * wf_port_flush().  A peer woken by the first message of a batch then
 * finds the others there too.  Owner thread. */
void wf_port_cork(wf_port_t *p);
int wf_port_uncork(wf_port_t *p);

/* Reads and dispatches up to a batch of packets.  Returns WF_AGAIN when the
 * socket is drained, WF_OK when the batch ended first (call again), or
 * WF_ERROR once p is closed (a protocol error or EOF calls owner->on_close;
 * a handler may also have closed p).  Owner thread; in manual mode, the
 * thread that drives the port. */
int wf_port_on_readable(wf_port_t *p);

/* From a message handler, on the owner thread: the handler expects
 * nothing more on p for now, so the read batch ends after this message
 * instead of with a recvmsg() that says EAGAIN.  A wrong guess costs
 * nothing: what is queued keeps the socket readable for the next wait. */
void wf_port_read_yield(wf_port_t *p);

/* Writes queued packets.  Returns WF_OK when the queue is empty, WF_AGAIN
 * when the socket is full (a started port then polls for EPOLLOUT), or
 * WF_ERROR when p is closed (a write error calls owner->on_close).  Owner
 * thread, or the driving thread in manual mode. */
int wf_port_flush(wf_port_t *p);

/* Returns a new stream id, unique in this process: a 64-bit counter that
 * starts at 1 and cannot wrap in the life of a process.  Any thread. */
uint64_t wf_port_stream_new(void);

/* Gives req a new stream id (req->stream) and registers it on p until a
 * reply arrives or p closes; req->handler must be set.  Send the request
 * with req->stream after this.  Returns WF_ERROR if p is closed or out of
 * memory.  Any thread. */
int wf_port_request_add(wf_port_t *p, wf_port_request_t *req);

/* Unregisters req (e.g. on a timeout) without calling it back.  Returns
 * false if req was no longer registered: its callback has run or is
 * running.  Any thread. */
bool wf_port_request_del(wf_port_t *p, wf_port_request_t *req);

/* Unregisters and returns the request waiting on stream, or NULL. */
wf_port_request_t *wf_port_request_take(wf_port_t *p, uint64_t stream);

/* A ready-made handler for reply types: passes msg to the request waiting on
 * msg->stream, or drops it with a debug line (stale or unknown stream). */
void wf_port_reply_handler(wf_port_t *p, wf_port_msg_t *msg);

/* Makes msg's payload contiguous (at most one copy, kept in msg) and returns
 * it, NUL-terminated after size bytes; valid until the handler returns.
 * Returns NULL when out of memory (logged). */
unsigned char *wf_port_msg_flatten(wf_port_msg_t *msg);

/* Takes ownership of received fd i; returns it, or -1 if there is none. */
int wf_port_msg_take_fd(wf_port_msg_t *msg, unsigned i);

#endif
