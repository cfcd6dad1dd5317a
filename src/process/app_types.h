/* The router's application objects, shared by the application manager
 * (app_mgr.c: processes, sockets, the queue, scaling) and the exchange
 * with an app process (app_xchg.c: one request).  Nothing else includes
 * this header.  docs/internals/apps.md ("The router's application
 * manager") draws the objects and their states.
 *
 * Threads.  A wf_app_t and its processes are shared by every I/O thread:
 * app->lock guards the process list, the slots' counters, the queue and
 * the settings.  Each socket (slot k, router thread t) is a port owned by
 * thread t, and so is every exchange sent on it (sock->xchgs): only thread
 * t reads, sends its requests or closes it.  Loop 0 (the router's control
 * loop, which owns the port to main) starts and stops processes. */
#ifndef WF_PROCESS_APP_TYPES_H
#define WF_PROCESS_APP_TYPES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/list.h"
#include "core/loop.h"
#include "core/timer.h"
#include "http/app_desc.h"
#include "process/port.h"

typedef struct wf_app wf_app_t;
typedef struct app_proc app_proc_t;
typedef struct app_sock app_sock_t;
typedef struct app_xchg app_xchg_t;

typedef enum app_proc_state {
    APP_PROC_STARTING = 0, /* asked main; READY not yet on every socket */
    APP_PROC_RUNNING,      /* READY everywhere; takes requests */
    APP_PROC_STOPPING,     /* takes no request; each socket closes once
                              its requests are over */
    APP_PROC_NSTATES       /* must stay last */
} app_proc_state_t;

/* A worker slot of a process (one of its "threads"). */
typedef struct app_slot {
    unsigned cap;  /* requests at once (READY's concurrency); 0 before */
    unsigned busy; /* requests in flight, on any router thread */
} app_slot_t;

/* The router's end of socket (slot, thread). */
struct app_sock {
    wf_port_owner_t owner; /* on_close: the app process is gone */
    wf_port_t *port;       /* owned by thread; NULL once closed */
    app_proc_t *proc;
    unsigned slot;
    unsigned thread;
    bool ready;      /* READY arrived on it */
    bool closing;    /* close once xchgs is empty (a graceful stop) */
    wf_list_t xchgs; /* app_xchg_t sent on it; thread only */
    wf_task_t start; /* posted to the thread: wf_port_start() */
    wf_task_t close; /* posted to the thread: a graceful stop */
    wf_loop_t *loop; /* the thread's */
};

struct app_proc {
    wf_list_t link; /* in app->procs (lock) */
    wf_app_t *app;  /* a reference */
    app_proc_state_t state;
    pid_t pid;         /* 0 until main told it */
    unsigned gen;      /* app->gen when it was started */
    unsigned nslots;   /* T */
    unsigned nthreads; /* N */
    unsigned nready;   /* sockets that sent READY */
    unsigned nopen;    /* sockets not closed yet */
    bool exited;       /* main reported the exit (or it never started) */
    bool was_ready;
    bool died_early;     /* its sockets closed before READY */
    unsigned active;     /* requests in flight, every slot */
    uint64_t served;     /* requests ended, for limits.requests */
    uint64_t idle_since; /* loop ms when active last dropped to 0 */
    uint64_t stop_at;    /* loop-0 ms of the graceful stop; 0: none */
    bool kill_sent;
    unsigned ntasks;             /* close tasks posted and not run yet */
    wf_port_request_t start_req; /* WF_MSG_APP_START to main */
    app_slot_t *slots;           /* nslots */
    app_sock_t socks[];          /* nslots * nthreads, app_proto.h order */
};

/* The live application, one per name across snapshots. */
struct wf_app {
    wf_list_t link;        /* in the manager's list (loop 0) */
    _Atomic unsigned refs; /* the manager's, one per snapshot, per proc */
    pthread_mutex_t lock;  /* everything below */
    char *name;            /* owned */
    char *json;            /* owned: the app's config object */
    unsigned max_processes;
    unsigned spare_processes;
    uint64_t idle_timeout_ms;
    uint64_t timeout_ms;
    uint64_t max_requests;
    unsigned queue_length;
    uint64_t queue_timeout_ms;
    unsigned threads;
    unsigned gen;    /* bumped by a restart or a changed config */
    bool removed;    /* gone from the config: starts nothing more */
    wf_list_t procs; /* app_proc_t */
    wf_list_t queue; /* app_xchg_t waiting for a slot, oldest first */
    unsigned nqueued;
    unsigned nfailed;   /* starts in a row that failed */
    wf_list_t restarts; /* app_restart_t waiting for a new process */

    /* A configuration being applied waits for this application's first
     * process of generation settle_gen (new or changed apps with spare
     * processes), as Unit does: loop 0, except settle_ready. */
    bool settling;
    bool settle_failed;
    _Atomic bool settle_ready; /* set by READY on any thread */
    _Atomic bool settle_dead;  /* a process of settle_gen closed its
                                  sockets before READY (any thread) */
    bool settle_new;           /* created by this configuration */
    unsigned settle_gen;
    unsigned prev_gen; /* the generation to go back to if it fails */
    wf_task_t scale;   /* posted to loop 0 */
    _Atomic bool scale_posted;
};

typedef enum app_xchg_state {
    APP_X_NEW = 0,  /* in handle; not queued, no slot */
    APP_X_QUEUED,   /* in app->queue (lock), timer: queue.timeout */
    APP_X_ASSIGNED, /* a slot is reserved; the assign task is posted */
    APP_X_SENT,     /* in sock->xchgs; the app owes a RESP_END */
    APP_X_DONE,     /* the app's side is over */
    APP_X_NSTATES   /* must stay last */
} app_xchg_state_t;

/* One request served by an application. */
struct app_xchg {
    wf_req_t *r; /* NULL once the mux freed r */
    wf_app_t *app;
    wf_loop_t *loop; /* r's */
    app_xchg_state_t state;
    wf_list_t link; /* in app->queue or sock->xchgs */
    app_proc_t *proc;
    unsigned slot;
    app_sock_t *sock;
    uint64_t stream; /* the request id on the app socket */
    unsigned target;
    wf_timer_t timer;   /* queue.timeout, then limits.timeout */
    wf_task_t assign;   /* a slot freed on another thread */
    bool body;          /* the request has a body */
    bool body_started;  /* wf_xchg_body_read() was called */
    bool req_end_sent;  /* REQ_END (or BODY_END in the head) is out */
    bool abort_sent;    /* REQ_ABORT is out */
    uint64_t req_sent;  /* request body bytes sent */
    uint64_t req_acked; /* ... acknowledged by REQ_ACK */
    bool resp_head;     /* RESP_HEAD arrived */
    bool responded;     /* r was handed to the mux (simple or stream) */
    bool streaming;     /* r->resp_body carries the body */
    bool timed_out;
    bool upgrade;        /* sent with WF_APP_REQ_UPGRADE */
    bool tunnel;         /* the app said 101: a two-way byte tunnel */
    bool busy;           /* in one of our entry points: a release that
                            happens meanwhile (a response sent at once)
                            leaves the free to the entry's end */
    uint64_t resp_len;   /* the app's Content-Length; WF_APP_LEN_NONE */
    uint64_t resp_got;   /* body bytes written to r->resp_body */
    uint64_t resp_acked; /* resp_got - queued at the last RESP_ACK */
    bool head_pending;   /* RESP_HEAD without END is held until the next
                            message says how the body comes */
    int file_fd;         /* a RESP_FILE held the same way; -1: none */
    uint64_t file_off;
    uint64_t file_len;
    char *mem; /* response fields and memory body */
    size_t mem_cap;

    /* chunked_transform (Unit's): a chunked request body is read whole
     * first, then goes with a Content-Length (app_xchg.c, "Collected
     * bodies").  coll is owned; NULL unless collecting or collected. */
    bool collecting; /* reading the body into coll; not dispatched */
    bool collected;  /* the body is all in coll: sent from there */
    char *coll;      /* the body, coll_len bytes (bounded by the mux's
                        max_body_size, past which it answers 413) */
    size_t coll_len;
    size_t coll_cap;
    size_t coll_sent; /* bytes of coll sent to the app */
    char coll_cl[24]; /* the Content-Length value the app is given */
};

/* app_mgr.c, for app_xchg.c.  All take the app's lock themselves. */

/* Reserves a slot for x on its thread, or queues x (the queue bound:
 * returns WF_DECLINED, x untouched).  WF_OK: x->proc, x->slot and
 * x->sock are set (send now).  WF_AGAIN: x is queued. */
int wf_app_slot_get(app_xchg_t *x);

/* x's request is over on the app's side (RESP_END, or its socket went):
 * frees its slot, which may go to a queued request. */
void wf_app_slot_put(app_xchg_t *x);

/* Takes x out of the queue (its client left, or its time in the queue
 * ran out).  Returns false if a slot was assigned meanwhile (x->assign is
 * posted or running). */
bool wf_app_queue_del(app_xchg_t *x);

/* Gives free slots to queued requests, oldest first.  Under app->lock. */
void wf_app_queue_drain(wf_app_t *app);

/* Closes s if a graceful stop waits for its last request to end.  Thread
 * of s. */
void wf_app_sock_idle(app_sock_t *s);

/* A socket's thread: its exchanges fail because the process is gone. */
void wf_app_xchg_sock_lost(app_xchg_t *x);

/* app_xchg.c, for app_mgr.c: a slot was assigned to queued x (runs on
 * x->loop) or x must be answered 503 (a failed start, app removal). */
void wf_app_xchg_assigned(wf_task_t *task);
void wf_app_xchg_on_msg(app_sock_t *s, wf_port_msg_t *msg);

#endif
