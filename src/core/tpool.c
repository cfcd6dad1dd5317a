#include "core/tpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/list.h"
#include "core/log.h"

static pthread_mutex_t tpool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tpool_cond = PTHREAD_COND_INITIALIZER;
static wf_list_t tpool_queue = {&tpool_queue, &tpool_queue}; /* of jobs */
static bool tpool_stopping;
static pthread_t *tpool_threads;
static unsigned tpool_nthreads;

static void *
tpool_thread(void *arg)
{
    wf_unused(arg);
    pthread_mutex_lock(&tpool_lock);
    for (;;) {
        wf_job_t *job;

        while (wf_list_is_empty(&tpool_queue) && !tpool_stopping) {
            pthread_cond_wait(&tpool_cond, &tpool_lock);
        }
        if (wf_list_is_empty(&tpool_queue)) {
            break;
        }
        job = wf_container_of(tpool_queue.next, wf_job_t, done.link);
        wf_list_del(&job->done.link);
        pthread_mutex_unlock(&tpool_lock);
        job->work(job);
        wf_task_post(job->loop, &job->done);
        pthread_mutex_lock(&tpool_lock);
    }
    pthread_mutex_unlock(&tpool_lock);
    return NULL;
}

int
wf_tpool_start(unsigned n)
{
    tpool_threads = calloc(n, sizeof(*tpool_threads));
    if (tpool_threads == NULL) {
        return WF_ERROR;
    }
    for (unsigned i = 0; i < n; i++) {
        int rc = pthread_create(&tpool_threads[i], NULL, tpool_thread, NULL);

        if (rc != 0) {
            wf_log_alert(rc, "pthread_create(helper) failed");
            return WF_ERROR;
        }
        tpool_nthreads++;
    }
    return WF_OK;
}

void
wf_tpool_stop(void)
{
    pthread_mutex_lock(&tpool_lock);
    tpool_stopping = true;
    pthread_cond_broadcast(&tpool_cond);
    pthread_mutex_unlock(&tpool_lock);
    for (unsigned i = 0; i < tpool_nthreads; i++) {
        pthread_join(tpool_threads[i], NULL);
    }
    free(tpool_threads);
    tpool_threads = NULL;
    tpool_nthreads = 0;
}

void
wf_tpool_submit(wf_job_t *job)
{
    pthread_mutex_lock(&tpool_lock);
    wf_list_add_tail(&tpool_queue, &job->done.link);
    pthread_cond_signal(&tpool_cond);
    pthread_mutex_unlock(&tpool_lock);
}
