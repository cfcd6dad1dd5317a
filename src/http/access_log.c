#include "http/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"
#include "core/list.h"
#include "core/log.h"

#define ALOG_BUF_SIZE (64 * 1024) /* one thread's batch of lines */
#define ALOG_QUEUE    64          /* buffers waiting for the writer */
#define ALOG_MAX_BUFS 256         /* buffers ever allocated */
#define ALOG_SCRATCH  8192        /* one rendered value, at most */
#define ALOG_LINE_MAX 16384       /* longer lines are cut */

/* An open log file, shared by every access log of its path and by the
 * buffers that hold lines for it. */
typedef struct alog_file {
    wf_list_t link; /* in alog.files */
    _Atomic unsigned refs;
    int fd;
    char path[]; /* NUL-terminated */
} alog_file_t;

struct wf_access_log {
    alog_file_t *file; /* a reference */
    wf_access_log_spec_t spec;
};

typedef struct alog_buf {
    alog_file_t *file; /* a reference; NULL while empty */
    size_t len;
    unsigned lines;
    char data[ALOG_BUF_SIZE];
} alog_buf_t;

/* The writer and what it shares with the I/O threads. */
static struct {
    pthread_mutex_t mu; /* guards everything below but dropped/reopen */
    pthread_cond_t cv;
    alog_buf_t *queue[ALOG_QUEUE];
    size_t qhead;
    size_t qlen;
    alog_buf_t *free[ALOG_MAX_BUFS];
    size_t nfree;
    size_t nbufs; /* allocated so far */
    bool started;
    bool stop;
    pthread_t tid;
    wf_list_t files;
    bool files_ready;
    _Atomic size_t queued; /* qlen, for readers without the mutex */
    _Atomic uint64_t dropped;
    _Atomic bool reopen;
} alog = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
};

/* An I/O thread's buffer and its flush timer. */
static __thread struct {
    alog_buf_t *buf;
    wf_timer_t timer;
    wf_loop_t *loop;
} alog_thr;

static bool alog_start_locked(void);

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
    close(f->fd);
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

    if (!alog.files_ready) {
        wf_list_init(&alog.files);
        alog.files_ready = true;
    }
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
    f->fd = alog_open(path);
    if (f->fd == -1) {
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

/* Reopens every file by its path and puts the new file in place of the old
 * descriptor, so that buffers in flight need not know. */
static void
alog_reopen_all(void)
{
    pthread_mutex_lock(&alog.mu);
    wf_list_for_each(l, &alog.files)
    {
        alog_file_t *f = wf_container_of(l, alog_file_t, link);
        int fd = alog_open(f->path);

        if (fd == -1) {
            wf_log_alert(errno, "open(\"%s\") failed", f->path);
            continue;
        }
        if (dup3(fd, f->fd, O_CLOEXEC) == -1) {
            wf_log_alert(errno, "dup3(%d, %d) failed", fd, f->fd);
        }
        close(fd);
    }
    pthread_mutex_unlock(&alog.mu);
}

void
wf_access_log_reopen(void)
{
    atomic_store(&alog.reopen, true);
    pthread_mutex_lock(&alog.mu);
    if (alog.files_ready && !wf_list_is_empty(&alog.files)
        && alog_start_locked()) {
        pthread_cond_signal(&alog.cv);
    }
    pthread_mutex_unlock(&alog.mu);
}

uint64_t
wf_access_log_dropped(void)
{
    return atomic_load(&alog.dropped);
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

/* Appends s to out[*n..cap), escaped: for JSON, '"' and '\\' get a
 * backslash and control bytes become \u00XX; otherwise control bytes but
 * HTAB (which Unit's formats may hold) become \xXX.  Stops (without a
 * partial escape) when out is full. */
static void
alog_put_escaped(char *out, size_t cap, size_t *n, wf_str_t s, bool json)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        char e[8];
        size_t k = 0;

        if ((c < 0x20 && (json || c != '\t')) || c == 0x7f) {
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
               const wf_route_req_t *rq, bool json)
{
    static __thread char scratch[ALOG_SCRATCH];
    size_t len = wf_tpl_render_log(t, rq, scratch, sizeof(scratch));

    alog_put_escaped(out, cap, n,
                     wf_str_make(scratch, wf_min(len, sizeof(scratch))), json);
}

size_t
wf_access_log_format(const wf_access_log_t *al, const wf_route_req_t *rq,
                     char *out, size_t cap)
{
    const wf_access_log_spec_t *s = &al->spec;
    size_t body = cap - 1; /* room for the '\n' */
    size_t n = 0;

    if (s->format != NULL) {
        alog_put_value(out, body, &n, s->format, rq, false);
        out[n++] = '\n';
        return n;
    }
    alog_put(out, body, &n, wf_string("{"));
    for (size_t i = 0; i < s->nfields; i++) {
        alog_put(out, body, &n, i == 0 ? wf_string("\"") : wf_string(",\""));
        alog_put_escaped(out, body, &n, s->keys[i], true);
        alog_put(out, body, &n, wf_string("\":\""));
        alog_put_value(out, body, &n, s->values[i], rq, true);
        alog_put(out, body, &n, wf_string("\""));
    }
    alog_put(out, body, &n, wf_string("}"));
    out[n++] = '\n';
    return n;
}

/* ---- the writer thread ------------------------------------------------- */

static void
alog_write_buf(alog_buf_t *b)
{
    size_t off = 0;

    while (off < b->len) {
        ssize_t n = write(b->file->fd, b->data + off, b->len - off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            wf_log_alert(errno, "write(\"%s\") failed", b->file->path);
            break;
        }
        off += (size_t)n;
    }
}

/* Returns b to the free list; called with alog.mu held. */
static void
alog_buf_recycle_locked(alog_buf_t *b)
{
    b->len = 0;
    b->lines = 0;
    alog.free[alog.nfree++] = b;
}

static void *
alog_writer(void *arg)
{
    struct timespec ts;

    wf_unused(arg);
    pthread_mutex_lock(&alog.mu);
    for (;;) {
        alog_buf_t *b;
        alog_file_t *f;

        if (atomic_exchange(&alog.reopen, false)) {
            pthread_mutex_unlock(&alog.mu);
            alog_reopen_all();
            pthread_mutex_lock(&alog.mu);
        }
        if (alog.qlen == 0) {
            if (alog.stop) {
                break;
            }
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += WF_ACCESS_LOG_FLUSH_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&alog.cv, &alog.mu, &ts);
            continue;
        }
        b = alog.queue[alog.qhead];
        alog.qhead = (alog.qhead + 1) % ALOG_QUEUE;
        alog.qlen--;
        atomic_store_explicit(&alog.queued, alog.qlen, memory_order_relaxed);
        pthread_mutex_unlock(&alog.mu);
        alog_write_buf(b);
        f = b->file;
        b->file = NULL;
        alog_file_unref(f);
        pthread_mutex_lock(&alog.mu);
        alog_buf_recycle_locked(b);
    }
    pthread_mutex_unlock(&alog.mu);
    return NULL;
}

/* Writes what is queued when the process exits normally. */
static void
alog_on_exit(void)
{
    pthread_mutex_lock(&alog.mu);
    alog.stop = true;
    pthread_cond_signal(&alog.cv);
    pthread_mutex_unlock(&alog.mu);
    pthread_join(alog.tid, NULL);
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

/* Queues the thread's buffer for the writer, or drops its lines when the
 * queue is full. */
static void
alog_handoff(void)
{
    alog_buf_t *b = alog_thr.buf;
    alog_file_t *f = NULL;

    alog_thr.buf = NULL;
    if (b == NULL) {
        return;
    }
    pthread_mutex_lock(&alog.mu);
    if (alog.qlen < ALOG_QUEUE && alog_start_locked()) {
        alog.queue[(alog.qhead + alog.qlen) % ALOG_QUEUE] = b;
        alog.qlen++;
        atomic_store_explicit(&alog.queued, alog.qlen, memory_order_relaxed);
        pthread_cond_signal(&alog.cv);
        b = NULL;
    } else {
        atomic_fetch_add(&alog.dropped, b->lines);
        f = b->file;
        b->file = NULL;
        alog_buf_recycle_locked(b);
    }
    pthread_mutex_unlock(&alog.mu);
    if (f != NULL) {
        alog_file_unref(f); /* the last one takes alog.mu itself */
    }
}

static void
alog_on_timer(wf_timer_t *t)
{
    wf_unused(t);
    alog_handoff();
}

/* A free buffer for file f (a new reference is taken), or NULL. */
static alog_buf_t *
alog_buf_get(alog_file_t *f)
{
    alog_buf_t *b = NULL;

    pthread_mutex_lock(&alog.mu);
    if (alog.nfree > 0) {
        b = alog.free[--alog.nfree];
    } else if (alog.nbufs < ALOG_MAX_BUFS) {
        /* Once per buffer, never per line: buffers are recycled. */
        b = malloc(sizeof(*b));
        alog.nbufs += b != NULL;
    }
    pthread_mutex_unlock(&alog.mu);
    if (b != NULL) {
        b->len = 0;
        b->lines = 0;
        b->file = f;
        atomic_fetch_add(&f->refs, 1);
    }
    return b;
}

void
wf_access_log_write(wf_access_log_t *al, const wf_route_req_t *rq,
                    wf_loop_t *loop)
{
    char line[ALOG_LINE_MAX];
    size_t n;

    if (!wf_access_log_wants(al, rq)) {
        return;
    }
    n = wf_access_log_format(al, rq, line, sizeof(line));
    if (alog_thr.buf != NULL
        && (alog_thr.buf->file != al->file
            || ALOG_BUF_SIZE - alog_thr.buf->len < n)) {
        alog_handoff();
    }
    if (alog_thr.buf == NULL
        && (alog_thr.buf = alog_buf_get(al->file)) == NULL) {
        atomic_fetch_add(&alog.dropped, 1);
        return;
    }
    memcpy(alog_thr.buf->data + alog_thr.buf->len, line, n);
    alog_thr.buf->len += n;
    alog_thr.buf->lines++;
    if (alog_thr.loop == NULL) {
        alog_thr.loop = loop;
        wf_timer_init(&alog_thr.timer, alog_on_timer);
    }
    /* While the writer keeps up, a line goes out at once, so requests are
     * logged in the order they ended even across threads; when it falls
     * behind, lines wait for a full buffer or the timer, and fewer, larger
     * writes catch up. */
    if (atomic_load_explicit(&alog.queued, memory_order_relaxed)
        < ALOG_QUEUE / 8) {
        alog_handoff();
        return;
    }
    if (!wf_timer_is_armed(&alog_thr.timer)) {
        wf_timer_set(loop, &alog_thr.timer, WF_ACCESS_LOG_FLUSH_MS);
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
