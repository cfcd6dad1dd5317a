/* A channel: a bounded chain of buffers between one producer and one
 * consumer on the same loop, with back-pressure.  An exchange has two, the
 * request body and the response body.  See docs/internals/exchange.md.
 *
 * The producer's wf_chan_write() takes at most the room left and says
 * WF_AGAIN when there is none; the producer then stops reading its source
 * and is told by on_writable when room frees.  The consumer reads with
 * wf_chan_peek()/wf_chan_consume() and is told by on_readable when data,
 * EOF or an abort arrives.  Wake-ups run from the loop's run queue, never
 * inside the call that caused them, so neither side re-enters the other. */
#ifndef WF_HTTP_CHAN_H
#define WF_HTTP_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "http/chan_types.h"

/* Initialises ch empty and OPEN, holding at most limit bytes (at least
 * 1).  loop runs the wake-ups; the callbacks may be NULL (no wake-up).
 * No memory is allocated until the first write. */
void wf_chan_init(wf_chan_t *ch, wf_loop_t *loop, size_t limit);

/* Frees the queued buffers and cancels pending wake-ups.  ch may be
 * re-initialised afterwards.  Never calls back. */
void wf_chan_fini(wf_chan_t *ch);

/* Frees the thread's cache of buffers (kept across channels); channels
 * freed afterwards free theirs.  Called when an I/O thread exits. */
void wf_chan_thread_exit(void);

/* Sets who is told what (either may be NULL). */
void wf_chan_set_readable(wf_chan_t *ch, wf_chan_cb on_readable);
void wf_chan_set_writable(wf_chan_t *ch, wf_chan_cb on_writable);

/* Producer: copies up to n bytes of data (n > 0) into ch.  Returns the
 * bytes taken (1..n), WF_AGAIN when ch is full (on_writable follows when
 * room frees), or WF_ERROR when ch is not OPEN (EOF or aborted) or out of
 * memory (ch is then aborted).  Schedules on_readable. */
ssize_t wf_chan_write(wf_chan_t *ch, const void *data, size_t n);

/* Producer, for reading a source straight into ch: points iov[0..max)
 * at free space in ch for up to n bytes (n > 0, at most wf_chan_room())
 * and returns the entries filled (*len: their bytes, 1..n); nothing is
 * queued until wf_chan_commit().  WF_AGAIN when ch is full (the producer
 * is stopped: on_writable follows), WF_ERROR when ch is not OPEN or out
 * of memory (ch is then aborted).  Between the two calls the producer
 * makes no other call on ch. */
ssize_t wf_chan_reserve(wf_chan_t *ch, size_t n, struct iovec *iov, size_t max,
                        size_t *len);

/* Producer: queues the first n bytes (n <= the reserved *len) written
 * into the space wf_chan_reserve() gave, in order.  n == 0 queues nothing.
 * Schedules on_readable when n > 0. */
void wf_chan_commit(wf_chan_t *ch, size_t n);

/* Producer: asks for on_writable once room frees, without writing (for a
 * producer that found wf_chan_room() == 0). */
void wf_chan_wait_room(wf_chan_t *ch);

/* Producer: no more data (OPEN -> EOF).  Schedules on_readable.  Ignored
 * unless OPEN. */
void wf_chan_close(wf_chan_t *ch);

/* Either side: gives up (-> ABORTED); queued bytes are dropped and both
 * sides are woken.  Idempotent. */
void wf_chan_abort(wf_chan_t *ch);

/* Consumer: points *p at the first contiguous queued bytes and returns
 * their count; 0 when nothing is queued.  on_readable is scheduled on
 * every write, EOF and abort (once per tick at most).  Never copies. */
size_t wf_chan_peek(wf_chan_t *ch, const char **p);

/* Consumer: points iov[0..max) at the queued bytes in order, one entry
 * per buffer, and returns the entries filled (0 when nothing is queued);
 * *len gets their byte count (all queued bytes when max is enough: a
 * channel of limit L holds at most L / WF_CHAN_SEG_SIZE + 2 buffers).
 * For one gathered write of everything queued.  Never copies. */
size_t wf_chan_peekv(const wf_chan_t *ch, struct iovec *iov, size_t max,
                     size_t *len);

/* Consumer: drops the first n queued bytes (n <= wf_chan_peek()'s count).
 * Schedules on_writable if the producer was stopped. */
void wf_chan_consume(wf_chan_t *ch, size_t n);

/* ---- splice(2): bytes that pass through a pipe, never copied ----------
 * For a consumer and a producer that are both plain sockets and need not
 * see the bytes (the proxy relaying a Content-Length body to an h1
 * client).  The pipe's bytes count in wf_chan_queued() and the limit
 * like buffered ones; wf_chan_peek()/peekv() show only the buffered ones,
 * which come first. */

/* Consumer: bytes may reach it through pipe (its own, {read end, write
 * end}, both -1 until the first wf_chan_splice_in() creates it; the
 * consumer closes it when it is done with it); NULL (the default): no
 * splicing.  Set before the producer writes. */
void wf_chan_set_pipe(wf_chan_t *ch, int *pipe);

/* Producer: ch takes spliced bytes (wf_chan_splice_in()). */
static inline bool
wf_chan_can_splice(const wf_chan_t *ch)
{
    return ch->pipe != NULL && ch->state == WF_CHAN_OPEN;
}

/* Producer: moves up to n bytes (0 < n <= wf_chan_room()) from socket fd
 * into ch's pipe.  From the first splice on, the producer writes nothing
 * else into ch (a buffered byte would pass the piped ones).  Returns the
 * bytes moved (> 0; on_readable scheduled), 0 at fd's EOF, WF_AGAIN when
 * fd has nothing or the pipe is full (then wf_chan_piped() > 0, and the
 * producer is stopped: on_writable follows), or WF_ERROR (errno). */
ssize_t wf_chan_splice_in(wf_chan_t *ch, int fd, size_t n);

/* Bytes in the pipe.  The consumer splices them out once nothing is
 * buffered before them (wf_chan_piped() == wf_chan_queued()). */
static inline size_t
wf_chan_piped(const wf_chan_t *ch)
{
    return ch->piped;
}

/* Consumer: moves up to n (> 0, at most wf_chan_piped()) piped bytes to
 * socket fd, once nothing is buffered before them.  Returns the bytes
 * moved (consumed, as wf_chan_consume() does), or -1 with errno (EAGAIN:
 * fd is full). */
ssize_t wf_chan_splice_out(wf_chan_t *ch, int fd, size_t n);

/* Bytes queued. */
static inline size_t
wf_chan_queued(const wf_chan_t *ch)
{
    return ch->queued;
}

/* Room left for the producer. */
static inline size_t
wf_chan_room(const wf_chan_t *ch)
{
    return ch->state == WF_CHAN_OPEN && ch->queued < ch->limit
               ? ch->limit - ch->queued
               : 0;
}

/* The producer closed and every byte was consumed. */
static inline bool
wf_chan_is_done(const wf_chan_t *ch)
{
    return ch->state == WF_CHAN_EOF && ch->queued == 0;
}

static inline bool
wf_chan_is_aborted(const wf_chan_t *ch)
{
    return ch->state == WF_CHAN_ABORTED;
}

#endif
