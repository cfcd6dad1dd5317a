/* The channel object, embedded in exchanges (see http/chan.h). */
#ifndef WF_HTTP_CHAN_TYPES_H
#define WF_HTTP_CHAN_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"

#define WF_CHAN_SEG_SIZE 4096 /* bytes of one buffer of the chain */

typedef struct wf_chan wf_chan_t;
typedef struct wf_chan_seg wf_chan_seg_t;

/* Called from the run queue; the owner gets itself back with
 * wf_container_of() on the embedded channel. */
typedef void (*wf_chan_cb)(wf_chan_t *ch);

typedef enum wf_chan_state {
    WF_CHAN_OPEN = 0, /* the producer may write; bytes may be queued */
    WF_CHAN_EOF,      /* the producer is done; queued bytes stay readable,
                         writes fail */
    WF_CHAN_ABORTED,  /* a side gave up; nothing queued, nothing flows */
    WF_CHAN_NSTATES   /* must stay last */
} wf_chan_state_t;

struct wf_chan_seg {
    wf_chan_seg_t *next; /* NULL at the tail */
    uint32_t start;      /* first unread byte of data */
    uint32_t end;        /* end of the written bytes */
    char data[WF_CHAN_SEG_SIZE];
};

struct wf_chan {
    wf_chan_seg_t *head; /* owned; NULL when nothing is queued */
    wf_chan_seg_t *tail;
    wf_chan_seg_t *spare; /* owned; empty segments kept for the next
                             writes (wf_chan_reserve(), consumed ones) */
    unsigned nspare;
    size_t queued; /* bytes in the chain, <= limit */
    size_t limit;
    wf_chan_state_t state;
    bool producer_stopped; /* a write met a full channel; cleared when
                              on_writable is scheduled */
    wf_loop_t *loop;
    wf_chan_cb on_readable; /* consumer's wake-up; NULL: none */
    wf_chan_cb on_writable; /* producer's wake-up; NULL: none */
    wf_task_t readable;     /* scheduled on_readable */
    wf_task_t writable;     /* scheduled on_writable */
    /* Spliced bytes (wf_chan_set_pipe()): the consumer's pipe, {read end,
     * write end}, -1 until the first splice creates it; NULL: none. */
    int *pipe;
    size_t piped; /* bytes in the pipe, behind the buffered ones; counted
                     in queued */
};

#endif
