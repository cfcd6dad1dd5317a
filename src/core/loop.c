#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"

#define WF_LOOP_MAX_EVENTS  256
#define WF_LOOP_MAX_TIMERS  1024 /* timer handlers per tick */
#define WF_LOOP_MAX_WAIT_MS 1000

void (*wf_loop_on_start)(wf_loop_t *loop);
void (*wf_loop_on_stop)(wf_loop_t *loop, bool graceful);
void (*wf_loop_on_exit)(wf_loop_t *loop);

static wf_loop_t **loops;
static unsigned nloops;
static __thread wf_loop_t *loop_current;
static _Atomic uint64_t loops_grace_deadline; /* monotonic ms */

/* The fd table: one slot per possible fd of the process. */
static wf_io_t **fd_table;
static size_t fd_table_size;

static uint64_t
loop_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
loop_update_time(wf_loop_t *loop)
{
    loop->now = loop_clock_ms();
    loop->now_sec = time(NULL);
}

static int
loop_fd_table_create(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        wf_log_alert(errno, "getrlimit(RLIMIT_NOFILE) failed");
        return WF_ERROR;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        /* Connections are bounded by maxconn, not by a low soft limit. */
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    fd_table_size = rl.rlim_cur == RLIM_INFINITY ? 1048576 : rl.rlim_cur;
    if (fd_table_size > 1048576) {
        fd_table_size = 1048576;
    }
    fd_table = calloc(fd_table_size, sizeof(*fd_table));
    if (fd_table == NULL) {
        wf_log_alert(errno, "calloc(fd table) failed");
        return WF_ERROR;
    }
    return WF_OK;
}

int
wf_io_table_set(wf_io_t *io)
{
    if (io->fd < 0 || (size_t)io->fd >= fd_table_size) {
        wf_log_error(0, "fd %d beyond the fd table", io->fd);
        return WF_ERROR;
    }
    fd_table[io->fd] = io;
    return WF_OK;
}

void
wf_io_table_clear(wf_io_t *io)
{
    if (io->fd >= 0 && (size_t)io->fd < fd_table_size
        && fd_table[io->fd] == io) {
        fd_table[io->fd] = NULL;
    }
}

int
wf_io_add(wf_loop_t *loop, wf_io_t *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = io->fd};

    if (wf_io_table_set(io) != WF_OK) {
        return WF_ERROR;
    }
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) == -1) {
        wf_log_error(errno, "epoll_ctl(ADD, %d) failed", io->fd);
        wf_io_table_clear(io);
        return WF_ERROR;
    }
    io->events = events;
    return WF_OK;
}

int
wf_io_mod(wf_loop_t *loop, wf_io_t *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = io->fd};

    if (events == io->events) {
        return WF_OK;
    }
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) == -1) {
        wf_log_error(errno, "epoll_ctl(MOD, %d) failed", io->fd);
        return WF_ERROR;
    }
    io->events = events;
    return WF_OK;
}

void
wf_io_del(wf_loop_t *loop, wf_io_t *io)
{
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    wf_io_table_clear(io);
    io->events = 0;
}

void
wf_task_schedule(wf_loop_t *loop, wf_task_t *task)
{
    wf_list_add_tail(&loop->runq, &task->link);
}

void
wf_task_defer(wf_loop_t *loop, wf_task_t *task)
{
    wf_list_add_tail(&loop->late, &task->link);
}

void
wf_task_post(wf_loop_t *loop, wf_task_t *task)
{
    uint64_t one = 1;
    bool was_empty;

    pthread_mutex_lock(&loop->posted_lock);
    was_empty = wf_list_is_empty(&loop->posted);
    wf_list_add_tail(&loop->posted, &task->link);
    pthread_mutex_unlock(&loop->posted_lock);
    if (was_empty && write(loop->wake.fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is already non-zero, the loop will wake. */
    }
}

void
wf_timer_set(wf_loop_t *loop, wf_timer_t *t, uint64_t ms)
{
    if (ms == 0) {
        wf_timers_del(&loop->timers, t);
        return;
    }
    if (wf_timers_add(&loop->timers, t, loop->now + ms) != WF_OK) {
        wf_log_alert(ENOMEM, "timer heap growth failed");
    }
}

void
wf_timer_stop(wf_loop_t *loop, wf_timer_t *t)
{
    wf_timers_del(&loop->timers, t);
}

static void
loop_on_wake(wf_io_t *io, uint32_t events)
{
    wf_loop_t *loop = wf_container_of(io, wf_loop_t, wake);
    uint64_t n;

    wf_unused(events);
    if (read(io->fd, &n, sizeof(n)) < 0) {
        /* EAGAIN: another wake-up consumed it. */
    }
    pthread_mutex_lock(&loop->posted_lock);
    while (!wf_list_is_empty(&loop->posted)) {
        wf_list_t *l = loop->posted.next;

        wf_list_del(l);
        wf_list_add_tail(&loop->runq, l);
    }
    pthread_mutex_unlock(&loop->posted_lock);
}

static wf_loop_t *
loop_create(unsigned id)
{
    wf_loop_t *loop = calloc(1, sizeof(*loop));

    if (loop == NULL) {
        wf_log_alert(errno, "calloc(loop) failed");
        return NULL;
    }
    loop->id = id;
    wf_timers_init(&loop->timers);
    wf_list_init(&loop->runq);
    wf_list_init(&loop->late);
    wf_list_init(&loop->posted);
    pthread_mutex_init(&loop->posted_lock, NULL);
    loop_update_time(loop);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd == -1) {
        wf_log_alert(errno, "epoll_create1() failed");
        goto fail_free;
    }
    loop->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake.fd == -1) {
        wf_log_alert(errno, "eventfd() failed");
        goto fail_epoll;
    }
    loop->wake.handler = loop_on_wake;
    if (wf_io_add(loop, &loop->wake, EPOLLIN) != WF_OK) {
        goto fail_eventfd;
    }
    return loop;

fail_eventfd:
    close(loop->wake.fd);
fail_epoll:
    close(loop->epfd);
fail_free:
    free(loop);
    return NULL;
}

static void
loop_destroy(wf_loop_t *loop)
{
    wf_io_del(loop, &loop->wake);
    close(loop->wake.fd);
    close(loop->epfd);
    wf_timers_fini(&loop->timers);
    pthread_mutex_destroy(&loop->posted_lock);
    free(loop);
}

int
wf_loops_create(unsigned n)
{
    if (loop_fd_table_create() != WF_OK) {
        return WF_ERROR;
    }
    loops = calloc(n, sizeof(*loops));
    if (loops == NULL) {
        return WF_ERROR;
    }
    for (unsigned i = 0; i < n; i++) {
        loops[i] = loop_create(i);
        if (loops[i] == NULL) {
            return WF_ERROR;
        }
        nloops++;
    }
    return WF_OK;
}

unsigned
wf_loops_count(void)
{
    return nloops;
}

wf_loop_t *
wf_loop_get(unsigned i)
{
    return loops[i];
}

wf_loop_t *
wf_loop_current(void)
{
    return loop_current;
}

static void
loop_run_list(wf_list_t *list)
{
    /* Tasks added while running go to the same list and run in this pass;
     * a bound keeps a task that re-schedules itself from starving I/O. */
    for (unsigned n = 0; n < 4096 && !wf_list_is_empty(list); n++) {
        wf_list_t *l = list->next;
        wf_task_t *task = wf_container_of(l, wf_task_t, link);

        wf_list_del(l);
        task->handler(task);
    }
}

static void
loop_dispatch(struct epoll_event *events, int n)
{
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        wf_io_t *io = fd_table[fd];

        /* An fd closed earlier in this batch has no entry any more. */
        if (io != NULL) {
            io->handler(io, events[i].events);
        }
    }
}

static bool
loop_should_exit(wf_loop_t *loop, int *stop_seen)
{
    int stop = atomic_load(&loop->stop);

    if (stop != *stop_seen) {
        *stop_seen = stop;
        if (wf_loop_on_stop != NULL) {
            wf_loop_on_stop(loop, stop == WF_LOOP_GRACEFUL);
        }
    }
    if (stop == WF_LOOP_FAST) {
        return true;
    }
    if (stop == WF_LOOP_GRACEFUL) {
        return atomic_load(&loop->nconn) == 0
               || loop->now >= atomic_load(&loops_grace_deadline);
    }
    return false;
}

static void *
loop_thread(void *arg)
{
    wf_loop_t *loop = arg;
    struct epoll_event events[WF_LOOP_MAX_EVENTS];
    int stop_seen = WF_LOOP_RUNNING;

    loop_current = loop;
    if (wf_loop_on_start != NULL) {
        wf_loop_on_start(loop);
    }
    while (!loop_should_exit(loop, &stop_seen)) {
        int timeout = wf_list_is_empty(&loop->runq) ? wf_timers_wait_ms(
                          &loop->timers, loop->now, WF_LOOP_MAX_WAIT_MS)
                                                    : 0;
        int n = epoll_wait(loop->epfd, events, WF_LOOP_MAX_EVENTS, timeout);

        if (n == -1 && errno != EINTR) {
            wf_log_alert(errno, "epoll_wait() failed");
            break;
        }
        loop_update_time(loop);
        loop_dispatch(events, n > 0 ? n : 0);
        wf_timers_run(&loop->timers, loop->now, WF_LOOP_MAX_TIMERS);
        loop_run_list(&loop->runq);
        loop_run_list(&loop->late);
    }
    /* Close what is left, run the deferred frees, then free per-thread
     * objects. */
    if (stop_seen != WF_LOOP_FAST && wf_loop_on_stop != NULL) {
        wf_loop_on_stop(loop, false);
    }
    loop_run_list(&loop->runq);
    loop_run_list(&loop->late);
    if (wf_loop_on_exit != NULL) {
        wf_loop_on_exit(loop);
    }
    return NULL;
}

int
wf_loops_start(void)
{
    for (unsigned i = 0; i < nloops; i++) {
        int rc = pthread_create(&loops[i]->thread, NULL, loop_thread, loops[i]);

        if (rc != 0) {
            wf_log_alert(rc, "pthread_create() failed");
            return WF_ERROR;
        }
    }
    return WF_OK;
}

void
wf_loops_stop(bool graceful, uint64_t grace_ms)
{
    uint64_t one = 1;

    atomic_store(&loops_grace_deadline, loop_clock_ms() + grace_ms);
    for (unsigned i = 0; i < nloops; i++) {
        int stop = graceful ? WF_LOOP_GRACEFUL : WF_LOOP_FAST;

        if (atomic_load(&loops[i]->stop) < stop) {
            atomic_store(&loops[i]->stop, stop);
        }
        if (write(loops[i]->wake.fd, &one, sizeof(one)) < 0) {
            /* The counter is already non-zero. */
        }
    }
}

void
wf_loops_join(void)
{
    for (unsigned i = 0; i < nloops; i++) {
        pthread_join(loops[i]->thread, NULL);
    }
}

void
wf_loops_destroy(void)
{
    for (unsigned i = 0; i < nloops; i++) {
        loop_destroy(loops[i]);
    }
    free(loops);
    loops = NULL;
    nloops = 0;
    free(fd_table);
    fd_table = NULL;
    fd_table_size = 0;
}

typedef struct loop_sync_visit {
    wf_task_t task;
    wf_sync_t *sync;
} loop_sync_visit_t;

static void
loop_sync_finish(wf_task_t *task)
{
    wf_sync_t *sync = wf_container_of(task, wf_sync_t, finish);

    free(sync->visits);
    sync->visits = NULL;
    sync->done(sync);
}

/* Runs on each loop at a tick boundary. */
static void
loop_sync_arrive(wf_task_t *task)
{
    loop_sync_visit_t *v = wf_container_of(task, loop_sync_visit_t, task);
    wf_sync_t *sync = v->sync;

    if (sync->visit != NULL) {
        sync->visit(sync);
    }
    if (atomic_fetch_sub(&sync->left, 1) == 1) {
        wf_task_post(sync->origin, &sync->finish);
    }
}

int
wf_loops_sync(wf_sync_t *sync, wf_loop_t *origin, wf_sync_cb done)
{
    loop_sync_visit_t *visits = calloc(nloops, sizeof(*visits));

    if (visits == NULL) {
        return WF_ERROR;
    }
    sync->done = done;
    sync->origin = origin;
    sync->visits = visits;
    sync->finish.handler = loop_sync_finish;
    atomic_store(&sync->left, nloops);
    for (unsigned i = 0; i < nloops; i++) {
        visits[i].task.handler = loop_sync_arrive;
        visits[i].sync = sync;
        wf_task_post(loops[i], &visits[i].task);
    }
    return WF_OK;
}
