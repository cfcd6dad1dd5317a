#include "http/static.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/pool.h"
#include "http/cond.h"
#include "http/mime.h"
#include "http/range.h"
#include "http/respond.h"
#include "http/tpl.h"

#define STATIC_BUCKETS   256  /* per-thread cache hash buckets */
#define STATIC_MAX_FILES 1024 /* cached files per thread */
#define STATIC_MAX_FILLS 4096 /* fills between two watch resets */
#define STATIC_IDLE_MS   1000 /* an entry unused this long is closed */
#define STATIC_DATA_MAX  8192 /* files up to this are also kept in memory */
#define STATIC_DATA_POOL (2u << 20) /* bytes of file data per thread */
#define STATIC_RANGE_MAX sizeof(((wf_share_state_t *)0)->crange)

/* Events that make a cached file stale (docs/internals/static.md). */
#define STATIC_FILE_EVENTS                                                  \
    (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF \
     | IN_MASK_ADD)
#define STATIC_DIR_EVENTS                                                 \
    (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF \
     | IN_MOVE_SELF | IN_ATTRIB | IN_MASK_ADD)

/* Bits of wf_share_state_t.open_mode: how the share's path may be
 * resolved.  The chroot's length (a prefix of st->path) is kept above the
 * bits. */
#define STATIC_NO_SYMLINKS 0x1u
#define STATIC_NO_XDEV     0x2u
#define STATIC_CHROOT      0x4u
#define STATIC_ROOT_SHIFT  3

/* What a share action needs while it runs; one per request that reaches a
 * share, from a per-thread free list, released with the request. */
struct wf_share_state {
    const wf_action_t *action; /* the share being served */
    unsigned share_index;      /* which of action->shares */
    bool trying_index;         /* path has the index file appended */
    uint32_t open_mode;        /* chroot and resolve limits */

    /* The helper job: watches, open() and fstat() (static_open_work). */
    int ifd;        /* the I/O thread's inotify fd; -1: do not cache */
    uint64_t gen;   /* the cache's generation when the job was submitted */
    bool cacheable; /* result: no remote fs, every watch in place */
    int job_fd;     /* result: -1 on failure; closed on release if >= 0 */
    int job_errno;
    struct stat job_st;
    char *job_data; /* result: a small file's bytes (malloc'd), or NULL */

    wf_file_t *file; /* a reference for a memory body, or NULL */

    char crange[64]; /* Content-Range text */
    size_t path_len;
    char path[PATH_MAX]; /* file system path being served */
};

struct wf_file {
    struct wf_file *next; /* hash chain; NULL at the end */
    int fd;
    int refs;   /* the cache's (while in the table) + responses */
    char *data; /* size bytes (malloc'd) sent from memory; NULL: sendfile */
    uint32_t hash;
    uint32_t mode;      /* the open_mode it was opened with */
    uint64_t last_used; /* loop ms of the last hit */
    uint64_t size;
    time_t mtime;
    size_t etag_len;
    char etag[WF_ETAG_MAX];
    size_t path_len;
    char path[]; /* NUL-terminated */
};

/* An I/O thread's open files.  Entries are trusted until inotify reports a
 * change on the file or on a directory its path goes through; any event
 * flushes everything (docs/internals/static.md). */
typedef struct static_cache {
    wf_file_t *buckets[STATIC_BUCKETS];
    unsigned nfiles;
    unsigned fills;    /* entries added since the watches were reset */
    size_t data_bytes; /* file data held by cached entries */
    int ifd;           /* inotify, IN_NONBLOCK; -1: nothing is cached */
    uint64_t gen;      /* bumped by every flush */
    wf_timer_t sweep;
    wf_loop_t *loop;
} static_cache_t;

static __thread static_cache_t *static_cache;
static __thread wf_fpool_t static_states;
static __thread bool static_states_ready;

static void static_try_share(wf_req_t *r);

int
wf_file_fd(const wf_file_t *f)
{
    return f->fd;
}

wf_file_t *
wf_file_from_fd(int fd)
{
    wf_file_t *f = calloc(1, sizeof(*f) + 1);

    if (f == NULL) {
        return NULL;
    }
    f->fd = fd;
    f->refs = 1;
    return f;
}

void
wf_file_unref(wf_file_t *f)
{
    if (f == NULL || --f->refs > 0) {
        return;
    }
    close(f->fd);
    free(f->data);
    free(f);
}

static uint32_t
static_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    }
    return h;
}

/* Removes every entry (all) or those unused for STATIC_IDLE_MS. */
static void
static_cache_prune(static_cache_t *sc, bool all)
{
    for (size_t b = 0; b < STATIC_BUCKETS; b++) {
        wf_file_t **pp = &sc->buckets[b];

        while (*pp != NULL) {
            wf_file_t *f = *pp;

            if (all || f->last_used + STATIC_IDLE_MS <= sc->loop->now) {
                *pp = f->next;
                sc->nfiles--;
                sc->data_bytes -= f->data != NULL ? f->size : 0;
                wf_file_unref(f);
            } else {
                pp = &f->next;
            }
        }
    }
}

/* Replaces the inotify instance by an empty one under the same number, so
 * that every watch goes at once and the descriptor count stays.  A job
 * still adding watches to the old instance was submitted under an older
 * generation, so its file is not cached. */
static void
static_watch_reset(static_cache_t *sc)
{
    int fd;

    if (sc->ifd == -1) {
        return;
    }
    fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd == -1) {
        wf_log_warn(errno, "inotify_init1() failed");
        return;
    }
    if (dup3(fd, sc->ifd, O_CLOEXEC) == -1) {
        wf_log_warn(errno, "dup3() failed");
    }
    close(fd);
    sc->fills = 0;
}

/* Drops every entry and every watch: something changed. */
static void
static_cache_flush(static_cache_t *sc)
{
    static_cache_prune(sc, true);
    sc->gen++;
    static_watch_reset(sc);
}

/* Reads the pending inotify events, if any, without blocking, and flushes
 * the cache when there was one.  inotify queues an event before the
 * changing system call returns, so a change made before the request was
 * sent is always seen here. */
static void
static_cache_drain(static_cache_t *sc)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    if (sc->ifd == -1) {
        return;
    }
    n = read(sc->ifd, buf, sizeof(buf));
    if (n == -1 && errno == EAGAIN) {
        return;
    }
    static_cache_flush(sc); /* events, or an error: trust nothing */
}

/* Closes idle files so that descriptors do not outlive their use, and
 * drops the watches once nothing is cached or too many piled up. */
static void
static_on_sweep(wf_timer_t *t)
{
    static_cache_t *sc = wf_container_of(t, static_cache_t, sweep);

    static_cache_prune(sc, false);
    if (sc->nfiles == 0 || sc->fills > STATIC_MAX_FILLS) {
        static_cache_flush(sc);
    }
    if (sc->nfiles > 0) {
        wf_timer_set(sc->loop, &sc->sweep, STATIC_IDLE_MS);
    }
}

static static_cache_t *
static_cache_create(wf_loop_t *loop, bool watch)
{
    static_cache_t *sc = calloc(1, sizeof(*sc));

    if (sc == NULL) {
        return NULL;
    }
    sc->loop = loop;
    sc->ifd = watch ? inotify_init1(IN_NONBLOCK | IN_CLOEXEC) : -1;
    if (watch && sc->ifd == -1) {
        wf_log_warn(errno, "inotify_init1() failed, open files not cached");
    }
    wf_timer_init(&sc->sweep, static_on_sweep);
    return sc;
}

void
wf_static_thread_start(wf_loop_t *loop)
{
    if (static_cache == NULL) {
        static_cache = static_cache_create(loop, true);
    }
}

/* The thread's cache; a thread that never ran wf_static_thread_start()
 * gets one without inotify, which caches nothing. */
static static_cache_t *
static_cache_get(wf_loop_t *loop)
{
    if (static_cache == NULL) {
        static_cache = static_cache_create(loop, false);
    }
    return static_cache;
}

void
wf_static_thread_exit(void)
{
    if (static_states_ready) {
        wf_fpool_fini(&static_states);
        static_states_ready = false;
    }
    if (static_cache == NULL) {
        return;
    }
    static_cache_prune(static_cache, true);
    wf_timer_stop(static_cache->loop, &static_cache->sweep);
    if (static_cache->ifd != -1) {
        close(static_cache->ifd);
    }
    free(static_cache);
    static_cache = NULL;
}

static wf_share_state_t *
static_state_get(void)
{
    wf_share_state_t *st;

    if (!static_states_ready) {
        wf_fpool_init(&static_states, sizeof(wf_share_state_t), 64);
        static_states_ready = true;
    }
    st = wf_fpool_get(&static_states);
    if (st != NULL) {
        st->job_fd = -1;
        st->job_data = NULL;
        st->file = NULL;
        st->path_len = 0;
        st->open_mode = 0;
    }
    return st;
}

void
wf_static_req_release(wf_req_t *r)
{
    wf_share_state_t *st = r->share;

    if (st == NULL) {
        return;
    }
    if (st->job_fd >= 0) {
        close(st->job_fd); /* the client left while the job was out */
    }
    free(st->job_data);
    wf_file_unref(st->file);
    wf_fpool_put(&static_states, st);
    r->share = NULL;
}

/* Returns a new reference to the cached file at path, or NULL. */
static wf_file_t *
static_cache_find(static_cache_t *sc, const char *path, size_t len,
                  uint32_t mode)
{
    uint32_t h = static_hash(path, len);
    wf_file_t *f = sc->buckets[h % STATIC_BUCKETS];

    for (; f != NULL; f = f->next) {
        if (f->hash == h && f->path_len == len && f->mode == mode
            && memcmp(f->path, path, len) == 0) {
            f->last_used = sc->loop->now;
            f->refs++;
            return f;
        }
    }
    return NULL;
}

/* Wraps an open regular file in a response reference; when cache is true
 * and there is room, the cache keeps one more.  Returns the new reference,
 * or NULL with fd closed when out of memory. */
static wf_file_t *
static_cache_add(static_cache_t *sc, const wf_share_state_t *st, bool cache)
{
    wf_file_t *f = malloc(sizeof(*f) + st->path_len + 1);

    if (f == NULL) {
        close(st->job_fd);
        return NULL;
    }
    f->fd = st->job_fd;
    f->refs = 1;
    f->data = st->job_data;
    f->hash = static_hash(st->path, st->path_len);
    f->mode = st->open_mode;
    f->last_used = sc->loop->now;
    f->size = (uint64_t)st->job_st.st_size;
    f->mtime = st->job_st.st_mtime;
    f->etag_len = wf_etag_format(f->etag, f->mtime, f->size);
    f->path_len = st->path_len;
    memcpy(f->path, st->path, st->path_len);
    f->path[st->path_len] = '\0';
    cache = cache && sc->nfiles < STATIC_MAX_FILES;
    if (f->data != NULL
        && (!cache || sc->data_bytes + f->size > STATIC_DATA_POOL)) {
        free(f->data); /* sent with sendfile() */
        f->data = NULL;
    }
    if (cache) {
        wf_file_t **head = &sc->buckets[f->hash % STATIC_BUCKETS];

        f->next = *head;
        *head = f;
        f->refs++;
        sc->nfiles++;
        sc->fills++;
        sc->data_bytes += f->data != NULL ? f->size : 0;
        if (!wf_timer_is_armed(&sc->sweep)) {
            wf_timer_set(sc->loop, &sc->sweep, STATIC_IDLE_MS);
        }
    }
    return f;
}

/* The share failed with status (404 or 403): the next share, the fallback,
 * or the error.  As in Unit, a 403 moves on to the next share too. */
static void
static_fail(wf_req_t *r, unsigned status)
{
    wf_share_state_t *st = r->share;
    const wf_action_t *a = st->action;

    if (st->share_index + 1 < a->nshares) {
        st->share_index++;
        static_try_share(r);
        return;
    }
    if (a->fallback != NULL) {
        if (r->hc->log_route) {
            wf_log_notice(0, "\"fallback\" taken");
        }
        wf_http_run_action(r, a->fallback);
        return;
    }
    wf_req_respond_error(r, status);
}

/* As Unit maps open()'s errors; ENXIO is what a unix socket gives. */
static unsigned
static_errno_status(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
    case ENXIO:
    case ENODEV: /* a device without its driver */
        return 404;
    case EACCES:
    case EPERM:
    case ELOOP:
    case EXDEV: /* a mount point with traverse_mounts off */
        return 403;
    default:
        return 500;
    }
}

static wf_str_t
static_header(const wf_req_t *r, wf_str_t name)
{
    const wf_h1_header_t *h = wf_h1_head_find(&r->head, name);

    return h != NULL ? h->value : wf_null_str;
}

/* 301 to the same path with a slash: a directory was asked for as a file. */
static void
static_redirect_dir(wf_req_t *r)
{
    wf_str_t uri = r->head.path;
    wf_str_t query = r->head.query;
    size_t n = uri.len + 2 + query.len;

    r->loc = malloc(n);
    if (r->loc == NULL) {
        wf_req_respond_error(r, 503);
        return;
    }
    memcpy(r->loc, uri.data, uri.len);
    r->loc[uri.len] = '/';
    n = uri.len + 1;
    if (r->head.has_query) {
        r->loc[n++] = '?';
        memcpy(r->loc + n, query.data, query.len);
        n += query.len;
    }
    r->resp.status = 301;
    r->resp.location = wf_str_make(r->loc, n);
    wf_resp_set_error_page(&r->resp, 301);
    wf_req_respond(r);
}

/* Applies Range and If-Range to resp.  Returns WF_OK or WF_ERROR when the
 * response is a 416 already sent. */
static int
static_range(wf_req_t *r, wf_file_t *f, char *cr)
{
    wf_resp_t *resp = &r->resp;
    wf_str_t range = static_header(r, wf_string("Range"));
    wf_str_t if_range;
    wf_range_t rg;
    int n;

    if (range.len == 0) {
        return WF_OK;
    }
    if_range = static_header(r, wf_string("If-Range"));
    if (if_range.len > 0
        && !wf_if_range_ok(if_range, wf_str_make(f->etag, f->etag_len),
                           f->mtime)) {
        return WF_OK;
    }
    switch (wf_range_parse(range, f->size, &rg)) {
    case WF_OK:
        n = snprintf(cr, STATIC_RANGE_MAX, "bytes %llu-%llu/%llu",
                     (unsigned long long)rg.start, (unsigned long long)rg.end,
                     (unsigned long long)f->size);
        resp->status = 206;
        resp->file_off = rg.start;
        resp->content_length = rg.end - rg.start + 1;
        resp->content_range = wf_str_make(cr, (size_t)n);
        return WF_OK;
    case WF_ERROR:
        n = snprintf(cr, STATIC_RANGE_MAX, "bytes */%llu",
                     (unsigned long long)f->size);
        wf_file_unref(resp->file);
        resp->file = NULL;
        resp->status = 416;
        resp->etag = wf_null_str;
        resp->last_modified = 0;
        resp->content_range = wf_str_make(cr, (size_t)n);
        wf_resp_set_error_page(resp, 416);
        wf_req_respond(r);
        return WF_ERROR;
    default:
        return WF_OK;
    }
}

static void
static_respond_file(wf_req_t *r, wf_file_t *f)
{
    wf_share_state_t *st = r->share;
    wf_resp_t *resp = &r->resp;
    wf_str_t type =
        wf_mime_lookup(r->hc->mime, wf_str_make(st->path, st->path_len));

    resp->status = 200;
    resp->file = f;
    resp->file_off = 0;
    resp->content_length = f->size;
    resp->content_type =
        type.len > 0 ? type : wf_string("application/octet-stream");
    resp->etag = wf_str_make(f->etag, f->etag_len);
    resp->last_modified = f->mtime;
    resp->accept_ranges = true;
    if (wf_cond_not_modified(static_header(r, wf_string("If-None-Match")),
                             static_header(r, wf_string("If-Modified-Since")),
                             resp->etag, f->mtime)) {
        resp->status = 304;
        resp->content_type = wf_null_str;
        resp->content_length = 0;
        resp->head_only = true;
        wf_req_respond(r);
        return;
    }
    if (static_range(r, f, st->crange) != WF_OK) {
        return;
    }
    if (f->data != NULL) {
        /* A small file goes out in the head's write: one system call. */
        resp->body =
            wf_str_make(f->data + resp->file_off, resp->content_length);
        resp->file = NULL;
        st->file = f;
    }
    wf_req_respond(r);
}

/* Opens st->path under the share's restrictions with openat2(): inside the
 * chroot (absolute symlinks stay in it, ".." stops at it), without
 * following symlinks, without crossing mount points.  The restrictions
 * apply only below the chroot, as in Unit.  Returns a descriptor or -1. */
static int
static_open_restricted(const wf_share_state_t *st)
{
    struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC};
    const char *rel = st->path;
    char root[PATH_MAX];
    int dirfd = AT_FDCWD;
    int fd;

    how.resolve |=
        (st->open_mode & STATIC_NO_SYMLINKS) != 0 ? RESOLVE_NO_SYMLINKS : 0;
    how.resolve |= (st->open_mode & STATIC_NO_XDEV) != 0 ? RESOLVE_NO_XDEV : 0;
    if ((st->open_mode & STATIC_CHROOT) != 0) {
        size_t len = st->open_mode >> STATIC_ROOT_SHIFT;

        memcpy(root, st->path, len);
        root[len] = '\0';
        dirfd = open(len > 0 ? root : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd == -1) {
            return -1;
        }
        how.resolve |= RESOLVE_IN_ROOT;
        rel = st->path + len;
        while (*rel == '/') {
            rel++;
        }
    }
    fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (dirfd != AT_FDCWD) {
        int err = errno;

        close(dirfd);
        errno = err;
    }
    return fd;
}

static int
static_open(const wf_share_state_t *st)
{
    return st->open_mode == 0
               ? open(st->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
               : static_open_restricted(st);
}

/* File systems whose changes may come from another machine, where inotify
 * sees nothing: files on them are never cached. */
static bool
static_fs_is_local(int fd)
{
    static const long remote[] = {
        NFS_SUPER_MAGIC,        0xff534d42 /* CIFS */,   0xfe534d42 /* SMB2 */,
        SMB_SUPER_MAGIC,        FUSE_SUPER_MAGIC,        V9FS_MAGIC,
        CEPH_SUPER_MAGIC,       AFS_SUPER_MAGIC,         AFS_FS_MAGIC,
        CODA_SUPER_MAGIC,       0x0bd00bd0 /* Lustre */, 0x01161970 /* GFS2 */,
        0x7461636f /* OCFS2 */, 0x47504653 /* GPFS */,
    };
    struct statfs sfs;

    if (fstatfs(fd, &sfs) == -1) {
        return false;
    }
    for (size_t i = 0; i < wf_nitems(remote); i++) {
        if ((long)sfs.f_type == remote[i]) {
            return false;
        }
    }
    return true;
}

/* Watches every directory in path (len bytes, no symlinks in it): "/" or
 * ".", then each proper prefix that ends before a '/'.  Returns false when
 * a watch could not be added (ENOSPC, a missing directory): the file is
 * then served but not cached. */
static bool
static_watch_dirs(int ifd, const char *path, size_t len)
{
    char buf[PATH_MAX];

    if (len >= sizeof(buf)) {
        return false;
    }
    if (inotify_add_watch(ifd, path[0] == '/' ? "/" : ".", STATIC_DIR_EVENTS)
        == -1) {
        return false;
    }
    memcpy(buf, path, len);
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '/' || buf[i - 1] == '/') {
            continue;
        }
        buf[i] = '\0';
        if (inotify_add_watch(ifd, buf, STATIC_DIR_EVENTS) == -1) {
            return false;
        }
        buf[i] = '/';
    }
    return true;
}

/* A walk over the names the open will look up, symlinks followed as the
 * open follows them (absolute targets below the chroot), so that the
 * directory holding each symlink on the way is watched too. */
typedef struct static_walk {
    int ifd;
    size_t root_len; /* cur[0..root_len) is the chroot; 0: "/" */
    unsigned links;  /* symlinks followed so far */
    size_t len;      /* cur holds the resolved path so far, no symlinks */
    char cur[PATH_MAX];
} static_walk_t;

static bool static_walk(static_walk_t *w, const char *p, size_t n);

/* Moves w->cur to the directory it names, and watches it. */
static bool
static_walk_enter(static_walk_t *w)
{
    w->cur[w->len] = '\0';
    return inotify_add_watch(w->ifd, w->len > 0 ? w->cur : "/",
                             STATIC_DIR_EVENTS)
           != -1;
}

/* One name c (n bytes) looked up in w->cur. */
static bool
static_walk_name(static_walk_t *w, const char *c, size_t n)
{
    size_t parent = w->len;
    char target[PATH_MAX];
    struct stat sb;
    ssize_t t;

    if (n == 2 && c[0] == '.' && c[1] == '.') {
        while (w->len > w->root_len && w->cur[w->len - 1] != '/') {
            w->len--;
        }
        w->len -= w->len > w->root_len ? 1 : 0;
        return true;
    }
    if ((n == 1 && c[0] == '.') || n == 0) {
        return true;
    }
    if (w->len + 1 + n >= sizeof(w->cur)) {
        return false;
    }
    w->cur[w->len] = '/';
    memcpy(w->cur + w->len + 1, c, n);
    w->len += 1 + n;
    w->cur[w->len] = '\0';
    if (lstat(w->cur, &sb) == -1) {
        return false;
    }
    if (S_ISDIR(sb.st_mode)) {
        return static_walk_enter(w);
    }
    if (!S_ISLNK(sb.st_mode)) {
        return true; /* the file itself (or ENOTDIR for the open) */
    }
    t = readlink(w->cur, target, sizeof(target));
    if (++w->links > 40 || t <= 0 || (size_t)t >= sizeof(target)) {
        return false; /* ELOOP for the open, or an odd link */
    }
    w->len = target[0] == '/' ? w->root_len : parent;
    return static_walk(w, target, (size_t)t);
}

/* Walks the names of p (n bytes) from w->cur. */
static bool
static_walk(static_walk_t *w, const char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t j = i;

        while (j < n && p[j] != '/') {
            j++;
        }
        if (!static_walk_name(w, p + i, j - i)) {
            return false;
        }
        i = j + 1;
    }
    return true;
}

/* Watches every directory that resolving st->path looks a name up in,
 * from "/" (or the working directory for a relative share) down, through
 * every symlink on the way; under a chroot, the chroot's own path is
 * walked first (it is opened by name on every open).  Returns false when
 * a watch could not be added (ENOSPC, a missing directory): the file is
 * then served, not cached. */
static bool
static_watch_path(const wf_share_state_t *st, static_walk_t *w)
{
    bool chroot = (st->open_mode & STATIC_CHROOT) != 0;
    size_t root = chroot ? st->open_mode >> STATIC_ROOT_SHIFT : 0;

    w->ifd = st->ifd;
    w->links = 0;
    w->len = 0;
    w->root_len = 0;
    if (st->path[0] != '/') {
        if (getcwd(w->cur, sizeof(w->cur)) == NULL) {
            return false;
        }
        w->len = strlen(w->cur);
        w->len = w->len == 1 ? 0 : w->len; /* "/" */
    }
    if (!static_walk_enter(w) || !static_walk(w, st->path, root)) {
        return false;
    }
    w->root_len = chroot ? w->len : 0;
    return static_walk(w, st->path + root, st->path_len - root);
}

/* The file is open and regular: watches the inode itself.  The kernel's
 * name for it should be where the walk w ended; if not (a mount trick, a
 * race), the directories of that real path are watched too, after the
 * open, so the name is opened once more: a different inode means a change
 * came in between.  Returns whether the file may be cached. */
static bool
static_watch_file(wf_share_state_t *st, const static_walk_t *w)
{
    char real[PATH_MAX];
    char proc[32];
    struct stat again;
    ssize_t n;
    int fd;

    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", st->job_fd);
    n = readlink(proc, real, sizeof(real)); /* the kernel's name for it */
    if (n <= 0 || (size_t)n >= sizeof(real)
        || inotify_add_watch(st->ifd, proc, STATIC_FILE_EVENTS) == -1) {
        return false;
    }
    if ((size_t)n == w->len && memcmp(real, w->cur, w->len) == 0) {
        return true;
    }
    if (!static_watch_dirs(st->ifd, real, (size_t)n)) {
        return false;
    }
    fd = static_open(st);
    if (fd == -1) {
        return false;
    }
    if (fstat(fd, &again) == -1 || again.st_ino != st->job_st.st_ino
        || again.st_dev != st->job_st.st_dev) {
        close(fd);
        return false;
    }
    close(fd);
    return true;
}

/* Reads a small cacheable file whole (after the final fstat(): a later
 * change leaves an event).  On a short read the file is sent with
 * sendfile() instead. */
static void
static_read_data(wf_share_state_t *st)
{
    size_t size = (size_t)st->job_st.st_size;
    ssize_t n;

    if (!st->cacheable || size == 0 || size > STATIC_DATA_MAX) {
        return;
    }
    st->job_data = malloc(size);
    if (st->job_data == NULL) {
        return;
    }
    n = pread(st->job_fd, st->job_data, size, 0);
    if (n < 0 || (size_t)n != size) {
        free(st->job_data);
        st->job_data = NULL;
    }
}

/* On a helper thread: watch, open, stat.  The directories are watched
 * before the open and the file before the final fstat(), so a change at
 * any moment either shows in the result or leaves an event that stops
 * the result from being cached, or flushes it later. */
static void
static_open_work(wf_job_t *job)
{
    wf_req_t *r = wf_container_of(job, wf_req_t, job);
    wf_share_state_t *st = r->share;
    static_walk_t walk;

    st->cacheable = st->ifd != -1 && static_watch_path(st, &walk);
    st->job_fd = static_open(st);
    if (st->job_fd == -1) {
        st->job_errno = errno;
        return;
    }
    if (fstat(st->job_fd, &st->job_st) == -1) {
        goto fail;
    }
    if (!S_ISREG(st->job_st.st_mode) || !st->cacheable) {
        return;
    }
    st->cacheable =
        static_fs_is_local(st->job_fd) && static_watch_file(st, &walk);
    if (fstat(st->job_fd, &st->job_st) == -1) {
        goto fail;
    }
    static_read_data(st);
    return;

fail:
    st->job_errno = errno;
    close(st->job_fd);
    st->job_fd = -1;
}

static void
static_on_open(wf_req_t *r)
{
    wf_share_state_t *st = r->share;
    static_cache_t *sc;
    wf_file_t *f;

    if (st->job_fd == -1) {
        static_fail(r, static_errno_status(st->job_errno));
        return;
    }
    if (!S_ISREG(st->job_st.st_mode)) {
        close(st->job_fd);
        st->job_fd = -1;
        if (S_ISDIR(st->job_st.st_mode) && !st->trying_index) {
            static_redirect_dir(r);
            return;
        }
        static_fail(r, 404); /* as Unit: FIFOs, sockets, devices */
        return;
    }
    sc = static_cache_get(r->loop);
    if (sc == NULL) {
        close(st->job_fd);
        st->job_fd = -1;
        wf_req_respond_error(r, 503);
        return;
    }
    /* Any event since the submit may concern this file: not cached. */
    static_cache_drain(sc);
    f = static_cache_add(sc, st, st->cacheable && sc->gen == st->gen);
    st->job_fd = -1;
    if (f == NULL) {
        wf_req_respond_error(r, 503); /* st->job_data goes with st */
        return;
    }
    st->job_data = NULL;
    static_respond_file(r, f);
}

/* Squeezes runs of '/' in p (n bytes) into one; returns the new length. */
static size_t
static_squeeze_slashes(char *p, size_t n)
{
    size_t j = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '/' && j > 0 && p[j - 1] == '/') {
            continue;
        }
        p[j++] = p[i];
    }
    return j;
}

/* Renders the current share into st->path, with the index appended for a
 * path that ends in '/'.  Returns WF_OK or WF_DECLINED when too long. */
static int
static_render_path(wf_req_t *r)
{
    wf_share_state_t *st = r->share;
    const wf_action_t *a = st->action;
    size_t n = wf_tpl_render(a->shares[st->share_index], &r->rq, st->path,
                             sizeof(st->path));

    if (n >= sizeof(st->path)) {
        return WF_DECLINED;
    }
    n = static_squeeze_slashes(st->path, n);
    st->trying_index = n > 0 && st->path[n - 1] == '/';
    if (st->trying_index) {
        if (n + a->index.len >= sizeof(st->path)) {
            return WF_DECLINED;
        }
        memcpy(st->path + n, a->index.data, a->index.len);
        n += a->index.len;
    }
    if (n == 0 || memchr(st->path, '\0', n) != NULL) {
        return WF_DECLINED;
    }
    st->path[n] = '\0';
    st->path_len = n;
    return WF_OK;
}

/* Sets st->open_mode from the action's chroot, follow_symlinks and
 * traverse_mounts.  Returns WF_OK, or WF_DECLINED when st->path does not
 * lie below the chroot (Unit answers 403 and tries the next share).  An
 * empty chroot is no chroot, as in Unit. */
static int
static_resolve_mode(wf_req_t *r)
{
    wf_share_state_t *st = r->share;
    const wf_action_t *a = st->action;
    char root[PATH_MAX];
    size_t n;

    st->open_mode = (a->follow_symlinks ? 0 : STATIC_NO_SYMLINKS)
                    | (a->traverse_mounts ? 0 : STATIC_NO_XDEV);
    if (a->chroot == NULL) {
        return WF_OK;
    }
    n = wf_tpl_render(a->chroot, &r->rq, root, sizeof(root));
    if (n >= sizeof(root)) {
        return WF_DECLINED;
    }
    if (n == 0) {
        return WF_OK;
    }
    n = static_squeeze_slashes(root, n);
    while (n > 1 && root[n - 1] == '/') {
        n--;
    }
    n = n == 1 && root[0] == '/' ? 0 : n;
    /* The chroot must be a directory prefix of the path, and the path must
     * name something below it. */
    if (n > st->path_len || memcmp(root, st->path, n) != 0
        || (n > 0 && st->path[n] != '/') || st->path_len <= n + 1) {
        return WF_DECLINED;
    }
    st->open_mode |= STATIC_CHROOT | (uint32_t)(n << STATIC_ROOT_SHIFT);
    return WF_OK;
}

/* As Unit: "types" is checked on the requested name before the file is
 * opened, so a missing file of an excluded type is a 403; an index file
 * is served whatever its type. */
static bool
static_type_allowed(const wf_req_t *r)
{
    const wf_share_state_t *st = r->share;
    const wf_action_t *a = st->action;

    if (a->types == NULL || st->trying_index) {
        return true;
    }
    return wf_pattern_set_match(
        a->types,
        wf_mime_lookup(r->hc->mime, wf_str_make(st->path, st->path_len)));
}

static void
static_try_share(wf_req_t *r)
{
    wf_share_state_t *st = r->share;
    static_cache_t *sc;
    wf_file_t *f;

    if (static_render_path(r) != WF_OK) {
        static_fail(r, 404);
        return;
    }
    if (static_resolve_mode(r) != WF_OK || !static_type_allowed(r)) {
        static_fail(r, 403);
        return;
    }
    sc = static_cache_get(r->loop);
    if (sc == NULL) {
        wf_req_respond_error(r, 503);
        return;
    }
    if (sc->nfiles > 0) {
        static_cache_drain(sc);
        f = static_cache_find(sc, st->path, st->path_len, st->open_mode);
        if (f != NULL) {
            static_respond_file(r, f);
            return;
        }
    }
    st->ifd = sc->ifd;
    st->gen = sc->gen;
    wf_req_run_job(r, static_open_work, static_on_open);
}

void
wf_static_serve(wf_req_t *r, const wf_action_t *a)
{
    if (r->head.method_id != WF_HTTP_GET && r->head.method_id != WF_HTTP_HEAD) {
        /* As Unit: a share answers GET and HEAD; others take the
         * fallback when there is one. */
        if (a->fallback != NULL) {
            wf_http_run_action(r, a->fallback);
            return;
        }
        wf_req_respond_error(r, 405);
        return;
    }
    if (r->share == NULL) {
        r->share = static_state_get();
        if (r->share == NULL) {
            wf_req_respond_error(r, 503);
            return;
        }
    }
    r->share->action = a;
    r->share->share_index = 0;
    static_try_share(r);
}
