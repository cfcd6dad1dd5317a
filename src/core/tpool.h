/* The helper thread pool: blocking work (open(), stat(), later DNS and
 * certificate loads) runs here so that an I/O thread never blocks.  A job's
 * work function runs on a helper thread; then its task is posted back to the
 * loop that submitted it. */
#ifndef WF_CORE_TPOOL_H
#define WF_CORE_TPOOL_H

#include "core/loop.h"

typedef struct wf_job wf_job_t;
typedef void (*wf_job_cb)(wf_job_t *job);

struct wf_job {
    wf_task_t done;  /* posted to loop when work() returned */
    wf_loop_t *loop; /* the submitting loop */
    wf_job_cb work;  /* runs on a helper thread; must not touch loop state */
};

/* Starts n helper threads.  Returns WF_OK or WF_ERROR. */
int wf_tpool_start(unsigned n);

/* Stops the helpers after the queued jobs ran; their done tasks are posted
 * but may never run if the loops are gone. */
void wf_tpool_stop(void);

/* Queues job; job->loop, job->work and job->done.handler must be set.  The
 * caller owns job and must keep it alive until its done task ran. */
void wf_tpool_submit(wf_job_t *job);

#endif
