#include "http/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"
#include "core/list.h"
#include "core/log.h"

/* How lines travel, and why: docs/internals/access_log.md. */

#define ALOG_BUF_SIZE  (64 * 1024) /* one thread's batch of lines */
#define ALOG_MAX_BUFS  64          /* buffers in use at once: the bound */
#define ALOG_KEEP_FREE 8           /* free buffers kept for reuse */
#define ALOG_LINE_ROOM 1024        /* less room than this: hand over */
#define ALOG_SCRATCH   8192        /* one JSON value, at most */
#define ALOG_LINE_MAX  16384       /* longer lines are cut */
#define ALOG_IOV       64          /* buffers per writev() */
#define ALOG_WARN_MS   1000        /* a drop warning per thread, at most */
#define ALOG_EXIT_MS   5000        /* the wait for the writer at exit */

/* An open log file, shared by every access log of its path and by the
 * buffers that hold lines for it. */
typedef struct alog_file {
    wf_list_t link; /* in alog.files */
    _Atomic unsigned refs;
    int fd;        /* replaced in place (dup3) on reopen, by the writer
                      only; -1 until wf_access_log_set_fd() when deferred */
    int reopen_fd; /* given by wf_access_log_reopen_fd(), for the writer to
                      put in place of fd; -1: none (guarded by alog.mu) */
    char path[];   /* NUL-terminated */
} alog_file_t;

struct wf_access_log {
    alog_file_t *file; /* a reference */
    wf_access_log_spec_t spec;
};

typedef struct alog_buf {
    wf_list_t link;    /* in alog.queue, alog.free or the writer's batch */
    alog_file_t *file; /* a reference; NULL while free */
    size_t len;
    unsigned lines;
    char data[ALOG_BUF_SIZE];
} alog_buf_t;

/* The writer and what it shares with the I/O threads.  An I/O thread takes
 * mu once per buffer (to get one, to queue one), never per line; the
 * writer never holds it across a syscall that can block. */
static struct {
    pthread_mutex_t mu;  /* guards the lists, nbufs and the flags */
    pthread_cond_t cv;   /* the writer waits here for work */
    pthread_cond_t gone; /* alog_on_exit() waits here for the writer */
    wf_list_t queue;     /* full buffers, oldest first */
    wf_list_t free;      /* at most ALOG_KEEP_FREE */
    size_t nfree;
    size_t nbufs; /* allocated: queued, free, being filled or written */
    wf_list_t files;
    bool ready; /* the lists are initialised */
    bool started;
    bool stop;
    bool exited;
    bool reopen;       /* reopen every file by its path */
    bool reopen_given; /* some file has a reopen_fd */
    bool deferred;     /* files are opened by someone else (main) */
    pthread_t tid;
    _Atomic uint64_t written; /* lines, since start */
    _Atomic uint64_t dropped;
    _Atomic unsigned holding; /* threads whose buffers hold waiting lines */
} alog = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .gone = PTHREAD_COND_INITIALIZER,
};

/* An I/O thread's buffer and its flush timer. */
static __thread struct {
    alog_buf_t *buf; /* being filled; NULL: none */
    wf_timer_t timer;
    wf_loop_t *loop; /* the timer's; NULL before the first line */
    uint64_t handed; /* loop ms of the last hand-over */
    uint64_t warned; /* loop ms of the last drop warning */
    bool holding;    /* counted in alog.holding */
} alog_thr;

static bool alog_start_locked(void);

/* Called with alog.mu held. */
static void
alog_init_locked(void)
{
    if (!alog.ready) {
        wf_list_init(&alog.queue);
        wf_list_init(&alog.free);
        wf_list_init(&alog.files);
        alog.ready = true;
    }
}

/* ---- files ------------------------------------------------------------- */

static void
alog_file_unref(alog_file_t *f)
{
    if (f == NULL || atomic_fetch_sub(&f->refs, 1) != 1) {
        return;
    }
    pthread_mutex_lock(&alog.mu);
    wf_list_del(&f->link);
    pthread_mutex_unlock(&alog.mu);
    if (f->fd != -1) {
        close(f->fd);
    }
    if (f->reopen_fd != -1) {
        close(f->reopen_fd);
    }
    free(f);
}

static int
alog_open(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* Returns a new reference to the open file of path.  Called with alog.mu
 * held. */
static alog_file_t *
alog_file_get_locked(const char *path, char *err, size_t errlen)
{
    alog_file_t *f;

    alog_init_locked();
    wf_list_for_each(l, &alog.files)
    {
        f = wf_container_of(l, alog_file_t, link);
        if (strcmp(f->path, path) == 0) {
            atomic_fetch_add(&f->refs, 1);
            return f;
        }
    }
    f = malloc(sizeof(*f) + strlen(path) + 1);
    if (f == NULL) {
        snprintf(err, errlen, "Out of memory.");
        return NULL;
    }
    f->reopen_fd = -1;
    f->fd = alog.deferred ? -1 : alog_open(path);
    if (f->fd == -1 && !alog.deferred) {
        snprintf(err, errlen, "Failed to open the access log \"%.200s\": %s.",
                 path, strerror(errno));
        free(f);
        return NULL;
    }
    strcpy(f->path, path);
    atomic_init(&f->refs, 1);
    wf_list_add_tail(&alog.files, &f->link);
    return f;
}

wf_access_log_t *
wf_access_log_create(wf_arena_t *a, const wf_access_log_spec_t *spec, char *err,
                     size_t errlen)
{
    wf_access_log_t *al = wf_arena_calloc(a, sizeof(*al));

    if (al == NULL) {
        snprintf(err, errlen, "Out of memory.");
        return NULL;
    }
    al->spec = *spec;
    pthread_mutex_lock(&alog.mu);
    al->file = alog_file_get_locked(spec->path, err, errlen);
    pthread_mutex_unlock(&alog.mu);
    return al->file != NULL ? al : NULL;
}

void
wf_access_log_destroy(wf_access_log_t *al)
{
    if (al != NULL) {
        alog_file_unref(al->file);
        al->file = NULL;
    }
}

void
wf_access_log_defer_open(bool on)
{
    pthread_mutex_lock(&alog.mu);
    alog.deferred = on;
    pthread_mutex_unlock(&alog.mu);
}

const char *
wf_access_log_needs_fd(const wf_access_log_t *al)
{
    bool needs;

    if (al == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&alog.mu);
    needs = al->file->fd == -1;
    pthread_mutex_unlock(&alog.mu);
    return needs ? al->file->path : NULL;
}

void
wf_access_log_set_fd(wf_access_log_t *al, int fd)
{
    pthread_mutex_lock(&alog.mu);
    if (al->file->fd == -1) {
        al->file->fd = fd;
        fd = -1;
    }
    pthread_mutex_unlock(&alog.mu);
    if (fd != -1) {
        close(fd); /* the file got one meanwhile */
    }
}

void
wf_access_log_each_path(void (*fn)(const char *path, void *arg), void *arg)
{
    pthread_mutex_lock(&alog.mu);
    alog_init_locked();
    wf_list_for_each(l, &alog.files)
    {
        alog_file_t *f = wf_container_of(l, alog_file_t, link);

        if (f->fd != -1) {
            fn(f->path, arg);
        }
    }
    pthread_mutex_unlock(&alog.mu);
}

void
wf_access_log_reopen_fd(const char *path, int fd)
{
    alog_file_t *f = NULL;

    pthread_mutex_lock(&alog.mu);
    alog_init_locked();
    wf_list_for_each(l, &alog.files)
    {
        alog_file_t *one = wf_container_of(l, alog_file_t, link);

        if (one->fd != -1 && strcmp(one->path, path) == 0) {
            f = one;
            break;
        }
    }
    if (f != NULL && alog_start_locked()) {
        if (f->reopen_fd != -1) {
            close(f->reopen_fd); /* two USR1 in a row: the newer wins */
        }
        f->reopen_fd = fd;
        fd = -1;
        alog.reopen_given = true;
        pthread_cond_signal(&alog.cv);
    }
    pthread_mutex_unlock(&alog.mu);
    if (fd != -1) {
        close(fd); /* no longer logged to: nothing to reopen */
    }
}

/* Puts fd (taken; -1: open f's path anew) in place of f's descriptor, so
 * that buffers in flight need not know.  On the writer thread, which alone
 * writes to f->fd. */
static void
alog_file_reopen(alog_file_t *f, int fd)
{
    if (fd == -1) {
        fd = alog_open(f->path);
    }
    if (fd == -1) {
        wf_log_alert(errno, "open(\"%s\") failed", f->path);
        return;
    }
    if (dup3(fd, f->fd, O_CLOEXEC) == -1) {
        wf_log_alert(errno, "dup3(%d, %d) failed", fd, f->fd);
    }
    close(fd);
}

/* Reopens the files: those given a descriptor, and every other one by
 * its path when by_path.  open() may block on a stalled file system, so it
 * runs without alog.mu: the files are pinned by references taken under
 * it. */
static void
alog_reopen_all(bool by_path)
{
    alog_file_t **files = NULL;
    int *fds = NULL;
    size_t n = 0;
    size_t cap = 0;

    pthread_mutex_lock(&alog.mu);
    wf_list_for_each(l, &alog.files)
    {
        cap++;
    }
    files = cap > 0 ? malloc(cap * sizeof(*files)) : NULL;
    fds = cap > 0 ? malloc(cap * sizeof(*fds)) : NULL;
    wf_list_for_each(l, &alog.files)
    {
        alog_file_t *f = wf_container_of(l, alog_file_t, link);

        if (files == NULL || fds == NULL) {
            break;
        }
        if (f->fd == -1 || (f->reopen_fd == -1 && !by_path)) {
            continue;
        }
        files[n] = f;
        fds[n] = f->reopen_fd;
        f->reopen_fd = -1;
        atomic_fetch_add(&f->refs, 1);
        n++;
    }
    pthread_mutex_unlock(&alog.mu);
    if ((files == NULL || fds == NULL) && cap > 0) {
        wf_log_alert(ENOMEM, "cannot reopen the access logs");
        free(files);
        free(fds);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        alog_file_reopen(files[i], fds[i]);
        alog_file_unref(files[i]);
    }
    free(files);
    free(fds);
}

void
wf_access_log_reopen(void)
{
    pthread_mutex_lock(&alog.mu);
    alog_init_locked();
    if (!wf_list_is_empty(&alog.files) && alog_start_locked()) {
        alog.reopen = true;
        pthread_cond_signal(&alog.cv);
    }
    pthread_mutex_unlock(&alog.mu);
}

uint64_t
wf_access_log_dropped(void)
{
    return atomic_load(&alog.dropped);
}

uint64_t
wf_access_log_written(void)
{
    return atomic_load(&alog.written);
}

/* ---- formatting -------------------------------------------------------- */

bool
wf_access_log_wants(const wf_access_log_t *al, const wf_route_req_t *rq)
{
    if (al->spec.cond == NULL) {
        return true;
    }
    return wf_tpl_is_true(al->spec.cond, rq) != al->spec.negate;
}

/* Bytes that a line never holds as they are: control bytes but HTAB (which
 * Unit's formats may hold), and DEL. */
static bool
alog_is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* Appends s to out[*n..cap), escaped: for JSON, '"' and '\\' get a
 * backslash and control bytes become \u00XX; otherwise the bytes of
 * alog_is_ctl() become \xXX.  Stops (without a partial escape) when out is
 * full, and then sets *n to cap. */
static void
alog_put_escaped(char *out, size_t cap, size_t *n, wf_str_t s, bool json)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        char e[8];
        size_t k = 0;

        if (alog_is_ctl(c) || (json && c == '\t')) {
            memcpy(e, json ? "\\u00" : "\\x", json ? 4 : 2);
            k = json ? 4 : 2;
            e[k++] = hex[c >> 4];
            e[k++] = hex[c & 0xf];
        } else if (json && (c == '"' || c == '\\')) {
            e[k++] = '\\';
            e[k++] = (char)c;
        } else {
            e[k++] = (char)c;
        }
        if (*n + k > cap) {
            *n = cap;
            return;
        }
        memcpy(out + *n, e, k);
        *n += k;
    }
}

static void
alog_put(char *out, size_t cap, size_t *n, wf_str_t s)
{
    size_t k = wf_min(s.len, cap - *n);

    memcpy(out + *n, s.data, k);
    *n += k;
}

static void
alog_put_value(char *out, size_t cap, size_t *n, const wf_tpl_t *t,
               const wf_route_req_t *rq)
{
    static __thread char scratch[ALOG_SCRATCH];
    size_t len = wf_tpl_render_log(t, rq, scratch, sizeof(scratch));

    alog_put_escaped(out, cap, n,
                     wf_str_make(scratch, wf_min(len, sizeof(scratch))), true);
}

/* The offset of the first byte of s[0..n) that alog_is_ctl(), or n.  Eight
 * bytes at a time (this scan runs over every line): a word is looked at
 * byte by byte only when it holds a byte below 0x20 or a DEL. */
static size_t
alog_find_ctl(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u;
    const uint64_t highs = 0x8080808080808080u;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        uint64_t del;

        memcpy(&w, s + i, 8);
        del = w ^ (ones * 0x7f);
        if ((((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & highs) {
            break;
        }
    }
    for (; i < n; i++) {
        if (alog_is_ctl((unsigned char)s[i])) {
            return i;
        }
    }
    return n;
}

/* The string form: rendered in place, then escaped only if it must be (the
 * rare case: a decoded $arg_NAME, say). */
static size_t
alog_render_text(const wf_tpl_t *t, const wf_route_req_t *rq, char *out,
                 size_t cap, bool *cut)
{
    static __thread char copy[ALOG_LINE_MAX];
    size_t body = cap - 1; /* room for the '\n' */
    size_t need = wf_tpl_render_log(t, rq, out, body);
    size_t n = wf_min(need, body);
    size_t i = alog_find_ctl(out, n);

    *cut = need > body;
    if (i < n) {
        size_t len = wf_min(n, sizeof(copy));

        memcpy(copy, out, len);
        n = i;
        alog_put_escaped(out, body, &n, wf_str_make(copy + i, len - i), false);
        *cut = *cut || n == body;
    }
    out[n++] = '\n';
    return n;
}

static size_t
alog_render_json(const wf_access_log_spec_t *s, const wf_route_req_t *rq,
                 char *out, size_t cap, bool *cut)
{
    size_t body = cap - 1;
    size_t n = 0;

    alog_put(out, body, &n, wf_string("{"));
    for (size_t i = 0; i < s->nfields; i++) {
        alog_put(out, body, &n, i == 0 ? wf_string("\"") : wf_string(",\""));
        alog_put_escaped(out, body, &n, s->keys[i], true);
        alog_put(out, body, &n, wf_string("\":\""));
        alog_put_value(out, body, &n, s->values[i], rq);
        alog_put(out, body, &n, wf_string("\""));
    }
    alog_put(out, body, &n, wf_string("}"));
    *cut = n == body; /* or it just fitted: the caller only retries */
    out[n++] = '\n';
    return n;
}

/* Renders rq's line, '\n' included, into out[0..cap) (cap >= 2); *cut is
 * set when it may not have fitted whole. */
static size_t
alog_render(const wf_access_log_t *al, const wf_route_req_t *rq, char *out,
            size_t cap, bool *cut)
{
    if (al->spec.format != NULL) {
        return alog_render_text(al->spec.format, rq, out, cap, cut);
    }
    return alog_render_json(&al->spec, rq, out, cap, cut);
}

size_t
wf_access_log_format(const wf_access_log_t *al, const wf_route_req_t *rq,
                     char *out, size_t cap)
{
    bool cut;

    return alog_render(al, rq, out, cap, &cut);
}

/* ---- the writer thread ------------------------------------------------- */

/* Says that writing to f failed, at most once per ALOG_WARN_MS (the
 * writer's own clock): a full disk must not flood the error log. */
static void
alog_write_failed(alog_file_t *f, int err)
{
    static uint64_t last;
    struct timespec ts;
    uint64_t now;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (last != 0 && now < last + ALOG_WARN_MS) {
        return;
    }
    last = now;
    wf_log_alert(err, "writev(\"%s\") failed: its lines are dropped", f->path);
}

/* Writes iov[0..n) (all for f) in as few writev() calls as it takes.
 * Returns false when the file refused them. */
static bool
alog_writev(alog_file_t *f, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t k = writev(f->fd, iov, n);

        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            alog_write_failed(f, errno);
            return false;
        }
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return true;
}

/* Writes the buffers of batch in order; consecutive buffers of one file go
 * out in one writev().  Lines that a file refused count as dropped. */
static void
alog_write_batch(wf_list_t *batch)
{
    struct iovec iov[ALOG_IOV];
    wf_list_t *l = batch->next;

    while (l != batch) {
        alog_buf_t *first = wf_container_of(l, alog_buf_t, link);
        uint64_t lines = 0;
        int n = 0;

        for (; l != batch && n < ALOG_IOV; l = l->next) {
            alog_buf_t *b = wf_container_of(l, alog_buf_t, link);

            if (b->file != first->file) {
                break;
            }
            iov[n].iov_base = b->data;
            iov[n].iov_len = b->len;
            lines += b->lines;
            n++;
        }
        if (alog_writev(first->file, iov, n)) {
            atomic_fetch_add(&alog.written, lines);
        } else {
            atomic_fetch_add(&alog.dropped, lines);
        }
    }
}

/* Drops the batch's file references (which may close files: without
 * alog.mu), then returns its buffers to the free list or frees them. */
static void
alog_recycle_batch(wf_list_t *batch)
{
    wf_list_t spare;

    wf_list_for_each(l, batch)
    {
        alog_buf_t *b = wf_container_of(l, alog_buf_t, link);

        alog_file_unref(b->file);
        b->file = NULL;
    }
    wf_list_init(&spare);
    pthread_mutex_lock(&alog.mu);
    while (!wf_list_is_empty(batch)) {
        wf_list_t *l = batch->next;

        wf_list_del(l);
        if (alog.nfree < ALOG_KEEP_FREE) {
            wf_list_add_tail(&alog.free, l);
            alog.nfree++;
        } else {
            wf_list_add_tail(&spare, l);
            alog.nbufs--;
        }
    }
    pthread_mutex_unlock(&alog.mu);
    while (!wf_list_is_empty(&spare)) {
        wf_list_t *l = spare.next;

        wf_list_del(l);
        free(wf_container_of(l, alog_buf_t, link));
    }
}

/* Moves every queued buffer to batch; called with alog.mu held. */
static void
alog_take_queue_locked(wf_list_t *batch)
{
    wf_list_init(batch);
    while (!wf_list_is_empty(&alog.queue)) {
        wf_list_t *l = alog.queue.next;

        wf_list_del(l);
        wf_list_add_tail(batch, l);
    }
}

static void *
alog_writer(void *arg)
{
    wf_list_t batch;

    wf_unused(arg);
    pthread_mutex_lock(&alog.mu);
    for (;;) {
        if (!wf_list_is_empty(&alog.queue)) {
            /* What is queued goes out first, so a USR1 reopen sends every
             * line queued before it to the old file. */
            alog_take_queue_locked(&batch);
            pthread_mutex_unlock(&alog.mu);
            alog_write_batch(&batch);
            alog_recycle_batch(&batch);
            pthread_mutex_lock(&alog.mu);
            continue;
        }
        if (alog.reopen || alog.reopen_given) {
            bool by_path = alog.reopen;

            alog.reopen = false;
            alog.reopen_given = false;
            pthread_mutex_unlock(&alog.mu);
            alog_reopen_all(by_path);
            pthread_mutex_lock(&alog.mu);
            continue;
        }
        if (alog.stop) {
            break;
        }
        pthread_cond_wait(&alog.cv, &alog.mu);
    }
    alog.exited = true;
    pthread_cond_broadcast(&alog.gone);
    pthread_mutex_unlock(&alog.mu);
    return NULL;
}

/* Writes what is queued when the process exits, waiting at most
 * ALOG_EXIT_MS for a writer stuck on a stalled file system. */
static void
alog_on_exit(void)
{
    struct timespec ts;
    bool exited;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ALOG_EXIT_MS / 1000;
    pthread_mutex_lock(&alog.mu);
    alog.stop = true;
    pthread_cond_signal(&alog.cv);
    while (!alog.exited
           && pthread_cond_timedwait(&alog.gone, &alog.mu, &ts) == 0) {
        /* until the writer is gone or the time is up */
    }
    exited = alog.exited;
    pthread_mutex_unlock(&alog.mu);
    if (exited) {
        pthread_join(alog.tid, NULL);
        return;
    }
    wf_log_warn(0,
                "the access log writer is still blocked after %d ms: "
                "lines not yet written are lost",
                ALOG_EXIT_MS);
}

/* Starts the writer on first use; called with alog.mu held. */
static bool
alog_start_locked(void)
{
    if (alog.started) {
        return true;
    }
    if (pthread_create(&alog.tid, NULL, alog_writer, NULL) != 0) {
        return false;
    }
    alog.started = true;
    atexit(alog_on_exit);
    return true;
}

/* ---- I/O threads ------------------------------------------------------- */

/* Counts n lost lines, and says so in the error log at most once per
 * ALOG_WARN_MS on this thread. */
static void
alog_drop(unsigned n)
{
    uint64_t total = atomic_fetch_add(&alog.dropped, n) + n;
    uint64_t now = alog_thr.loop != NULL ? alog_thr.loop->now : 0;

    if (alog_thr.warned != 0 && now < alog_thr.warned + ALOG_WARN_MS) {
        return;
    }
    alog_thr.warned = now != 0 ? now : 1;
    wf_log_warn(0,
                "access log: %llu lines dropped since start: the writer is "
                "behind (a slow or stalled file system?)",
                (unsigned long long)total);
}

/* Queues the thread's buffer for the writer (one lock, one wake-up per
 * buffer). */
static void
alog_handoff(void)
{
    alog_buf_t *b = alog_thr.buf;
    bool queued = false;

    alog_thr.buf = NULL;
    if (b == NULL) {
        return;
    }
    alog_thr.handed = alog_thr.loop != NULL ? alog_thr.loop->now : 0;
    if (alog_thr.holding) {
        alog_thr.holding = false;
        atomic_fetch_sub_explicit(&alog.holding, 1, memory_order_relaxed);
    }
    pthread_mutex_lock(&alog.mu);
    if (b->len > 0 && alog_start_locked()) {
        wf_list_add_tail(&alog.queue, &b->link);
        pthread_cond_signal(&alog.cv);
        queued = true;
    }
    pthread_mutex_unlock(&alog.mu);
    if (!queued) {
        wf_list_t one;

        if (b->lines > 0) {
            alog_drop(b->lines); /* no writer thread */
        }
        wf_list_init(&one);
        wf_list_add_tail(&one, &b->link);
        alog_recycle_batch(&one);
    }
}

static void
alog_on_timer(wf_timer_t *t)
{
    wf_unused(t);
    alog_handoff();
}

/* A buffer for lines of file f (which it references), or NULL when
 * ALOG_MAX_BUFS are in use: the writer is that far behind. */
static alog_buf_t *
alog_buf_get(alog_file_t *f)
{
    alog_buf_t *b = NULL;

    pthread_mutex_lock(&alog.mu);
    alog_init_locked();
    if (alog.nfree > 0) {
        b = wf_container_of(alog.free.next, alog_buf_t, link);
        wf_list_del(&b->link);
        alog.nfree--;
    } else if (alog.nbufs < ALOG_MAX_BUFS) {
        alog.nbufs++; /* reserved; malloc() runs without the lock */
    } else {
        pthread_mutex_unlock(&alog.mu);
        return NULL;
    }
    pthread_mutex_unlock(&alog.mu);
    if (b == NULL) {
        b = malloc(sizeof(*b));
    }
    if (b == NULL) {
        pthread_mutex_lock(&alog.mu);
        alog.nbufs--;
        pthread_mutex_unlock(&alog.mu);
        return NULL;
    }
    wf_list_init(&b->link);
    b->len = 0;
    b->lines = 0;
    b->file = f;
    atomic_fetch_add(&f->refs, 1);
    return b;
}

/* The thread's buffer for f with room for a line, or NULL. */
static alog_buf_t *
alog_thr_buf(alog_file_t *f)
{
    alog_buf_t *b = alog_thr.buf;

    if (b != NULL
        && (b->file != f || ALOG_BUF_SIZE - b->len < ALOG_LINE_ROOM)) {
        alog_handoff();
        b = NULL;
    }
    if (b == NULL) {
        b = alog_thr.buf = alog_buf_get(f);
    }
    return b;
}

/* Renders rq's line at the end of the thread's buffer.  A line that did
 * not fit whole in a part-filled buffer is rendered again in a new one. */
static bool
alog_append(wf_access_log_t *al, const wf_route_req_t *rq)
{
    alog_buf_t *b = alog_thr_buf(al->file);
    size_t n;
    bool cut;

    if (b == NULL) {
        return false;
    }
    n = alog_render(al, rq, b->data + b->len,
                    wf_min(ALOG_BUF_SIZE - b->len, ALOG_LINE_MAX), &cut);
    if (cut && b->len > 0) {
        alog_handoff();
        b = alog_thr_buf(al->file);
        if (b == NULL) {
            return false;
        }
        n = alog_render(al, rq, b->data, ALOG_LINE_MAX, &cut);
    }
    b->len += n;
    b->lines++;
    return true;
}

/* True when the line just added, the first in the thread's buffer, should
 * go to the writer at once: the thread was quiet for an interval and no
 * thread holds lines back, so nothing logged earlier can be overtaken. */
static bool
alog_is_quiet(const wf_loop_t *loop)
{
    return alog_thr.buf->lines == 1
           && loop->now >= alog_thr.handed + WF_ACCESS_LOG_FLUSH_MS
           && atomic_load_explicit(&alog.holding, memory_order_relaxed) == 0;
}

void
wf_access_log_write(wf_access_log_t *al, const wf_route_req_t *rq,
                    wf_loop_t *loop)
{
    if (!wf_access_log_wants(al, rq)) {
        return;
    }
    if (alog_thr.loop == NULL) {
        alog_thr.loop = loop;
        wf_timer_init(&alog_thr.timer, alog_on_timer);
    }
    if (!alog_append(al, rq)) {
        alog_drop(1);
        return;
    }
    /* The writer wakes once per full buffer, or at most twice per interval
     * for a quiet thread: never per line.  The first line of a quiet
     * thread goes at once, which keeps the lines of a lightly loaded server
     * in the order their requests ended, across threads. */
    if (ALOG_BUF_SIZE - alog_thr.buf->len < ALOG_LINE_ROOM
        || alog_is_quiet(loop)) {
        alog_handoff();
        return;
    }
    if (!alog_thr.holding) {
        alog_thr.holding = true;
        atomic_fetch_add_explicit(&alog.holding, 1, memory_order_relaxed);
    }
    if (!wf_timer_is_armed(&alog_thr.timer)) {
        wf_timer_set(alog_thr.loop, &alog_thr.timer, WF_ACCESS_LOG_FLUSH_MS);
    }
}

void
wf_access_log_thread_exit(void)
{
    if (alog_thr.loop != NULL) {
        wf_timer_stop(alog_thr.loop, &alog_thr.timer);
        alog_thr.loop = NULL;
    }
    alog_handoff();
}
