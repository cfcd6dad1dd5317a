/* Per-thread event loops.
 *
 * Each I/O thread owns one wf_loop_t: an epoll instance, timers, a run queue
 * of tasks, and a queue of tasks posted by other threads (woken through an
 * eventfd).  A thread touches another thread's objects only by posting it a
 * task.  File descriptors are registered in one process-wide table indexed by
 * fd; each entry is a wf_io_t embedded in its owner, whose typed callback gets
 * the owner back with wf_container_of(). */
#ifndef WF_CORE_LOOP_H
#define WF_CORE_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <time.h>

#include "core/list.h"
#include "core/timer.h"

typedef struct wf_loop wf_loop_t;
typedef struct wf_io wf_io_t;
typedef struct wf_task wf_task_t;

typedef void (*wf_io_cb)(wf_io_t *io, uint32_t events);
typedef void (*wf_task_cb)(wf_task_t *task);

struct wf_io {
    int fd;
    uint32_t events; /* EPOLL* bits currently polled; 0 when not polled */
    wf_io_cb handler;
};

struct wf_task {
    wf_list_t link; /* in a run queue while scheduled */
    wf_task_cb handler;
};

struct wf_loop {
    unsigned id; /* 0..n-1 */
    int epfd;
    uint64_t now;   /* ms, monotonic, updated once per wake-up */
    time_t now_sec; /* wall clock seconds, same moment */
    wf_timers_t timers;
    wf_list_t runq; /* tasks to run in this tick */
    wf_list_t late; /* tasks to run at the end of this tick (frees) */
    wf_io_t wake;   /* eventfd: tasks posted from other threads */
    pthread_mutex_t posted_lock;
    wf_list_t posted;       /* under posted_lock */
    _Atomic unsigned nconn; /* client connections owned (load balance) */
    _Atomic int stop;       /* WF_LOOP_RUNNING, _GRACEFUL or _FAST */
    pthread_t thread;
};

enum {
    WF_LOOP_RUNNING = 0,
    WF_LOOP_GRACEFUL, /* stop accepting; exit once no connection is left */
    WF_LOOP_FAST,     /* exit at the end of this tick */
};

/* Called on each loop's thread when it starts, before its first wait; the
 * HTTP layer creates its per-thread objects here.  Set before the loops
 * start. */
extern void (*wf_loop_on_start)(wf_loop_t *loop);

/* Called on each loop's thread when a stop is requested; the HTTP layer
 * closes its idle connections here.  Set before the loops start. */
extern void (*wf_loop_on_stop)(wf_loop_t *loop, bool graceful);

/* Called on each loop's thread just before it exits; the HTTP layer frees
 * its per-thread objects here.  Set before the loops start. */
extern void (*wf_loop_on_exit)(wf_loop_t *loop);

/* Creates n loops (not started).  Returns WF_OK or WF_ERROR. */
int wf_loops_create(unsigned n);

unsigned wf_loops_count(void);
wf_loop_t *wf_loop_get(unsigned i);

/* The loop of the calling thread; NULL on a thread that runs no loop. */
wf_loop_t *wf_loop_current(void);

/* Starts one thread per loop.  Returns WF_OK or WF_ERROR. */
int wf_loops_start(void);

/* Asks every loop to stop (any thread); graceful waits for connections to
 * end, at most grace_ms. */
void wf_loops_stop(bool graceful, uint64_t grace_ms);

/* Waits for every loop thread to exit.  The loops stay allocated, so that
 * objects registered with them can still be unregistered. */
void wf_loops_join(void);

/* Frees the loops and the fd table (after wf_loops_join()). */
void wf_loops_destroy(void);

/* Registers io->fd in loop's epoll for events.  Returns WF_OK/WF_ERROR. */
int wf_io_add(wf_loop_t *loop, wf_io_t *io, uint32_t events);

/* Changes the polled events (0 is allowed and keeps the registration). */
int wf_io_mod(wf_loop_t *loop, wf_io_t *io, uint32_t events);

/* Removes io from loop's epoll and from the fd table. */
void wf_io_del(wf_loop_t *loop, wf_io_t *io);

/* Records io in the fd table without polling it in this loop (a listening
 * socket shared by all loops). */
int wf_io_table_set(wf_io_t *io);
void wf_io_table_clear(wf_io_t *io);

/* Runs task later in the current tick; on loop's own thread only. */
void wf_task_schedule(wf_loop_t *loop, wf_task_t *task);

/* Runs task at the end of the current tick, after all I/O: the place for
 * frees.  On loop's own thread only. */
void wf_task_defer(wf_loop_t *loop, wf_task_t *task);

/* Queues task to run on loop's thread; callable from any thread. */
void wf_task_post(wf_loop_t *loop, wf_task_t *task);

/* A barrier across every loop: each loop runs the barrier's task at a tick
 * boundary (a safe point: no handler is running there), and when the last
 * one has, done runs on the loop given to wf_loops_sync().  Used to retire
 * a config snapshot once no thread can still be reading the old one. */
typedef struct wf_sync wf_sync_t;
typedef void (*wf_sync_cb)(wf_sync_t *sync);

struct wf_sync {
    wf_sync_cb done;
    wf_loop_t *origin;
    _Atomic unsigned left;
    wf_task_t finish; /* posted to origin */
    void *visits;     /* owned by loop.c: one task per loop */
    wf_sync_cb visit; /* optional (NULL): runs on each loop, at its safe
                         point, before that loop arrives */
};

/* Starts sync (caller-owned, alive until done ran).  Returns WF_OK or
 * WF_ERROR when out of memory (done is then never called). */
int wf_loops_sync(wf_sync_t *sync, wf_loop_t *origin, wf_sync_cb done);

/* Arms timer t on loop to fire ms from now (ms == 0 disarms it). */
void wf_timer_set(wf_loop_t *loop, wf_timer_t *t, uint64_t ms);
void wf_timer_stop(wf_loop_t *loop, wf_timer_t *t);

#endif
