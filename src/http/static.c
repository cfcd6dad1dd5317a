#include "http/static.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "http/cond.h"
#include "http/mime.h"
#include "http/range.h"
#include "http/respond.h"
#include "http/tpl.h"

#define STATIC_BUCKETS   256  /* per-thread cache hash buckets */
#define STATIC_MAX_FILES 1024 /* cached files per thread */
#define STATIC_RANGE_MAX sizeof(((wf_req_t *)0)->crange)

/* Bits of wf_req_t.open_mode: how the share's path may be resolved.  The
 * chroot's length (a prefix of r->path) is kept above the bits. */
#define STATIC_NO_SYMLINKS 0x1u
#define STATIC_NO_XDEV     0x2u
#define STATIC_CHROOT      0x4u
#define STATIC_ROOT_SHIFT  3

struct wf_file {
    struct wf_file *next; /* hash chain; NULL at the end */
    int fd;
    int refs; /* the cache's (while in the table) + responses */
    uint32_t hash;
    uint32_t mode;   /* the open_mode it was opened with */
    uint64_t expire; /* loop ms after which the entry is not trusted */
    uint64_t size;
    time_t mtime;
    size_t etag_len;
    char etag[WF_ETAG_MAX];
    size_t path_len;
    char path[]; /* NUL-terminated */
};

typedef struct static_cache {
    wf_file_t *buckets[STATIC_BUCKETS];
    unsigned nfiles;
    wf_timer_t sweep;
    wf_loop_t *loop;
} static_cache_t;

static __thread static_cache_t *static_cache;

static void static_try_share(wf_req_t *r);

int
wf_file_fd(const wf_file_t *f)
{
    return f->fd;
}

void
wf_file_unref(wf_file_t *f)
{
    if (f == NULL || --f->refs > 0) {
        return;
    }
    close(f->fd);
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

/* Removes every entry for which drop() is true from the table. */
static void
static_cache_prune(static_cache_t *sc, bool all)
{
    for (size_t b = 0; b < STATIC_BUCKETS; b++) {
        wf_file_t **pp = &sc->buckets[b];

        while (*pp != NULL) {
            wf_file_t *f = *pp;

            if (all || f->expire <= sc->loop->now) {
                *pp = f->next;
                sc->nfiles--;
                wf_file_unref(f);
            } else {
                pp = &f->next;
            }
        }
    }
}

/* Closes expired files so that descriptors do not outlive their use. */
static void
static_on_sweep(wf_timer_t *t)
{
    static_cache_t *sc = wf_container_of(t, static_cache_t, sweep);

    static_cache_prune(sc, false);
    if (sc->nfiles > 0) {
        wf_timer_set(sc->loop, &sc->sweep, WF_FILE_VALID_MS);
    }
}

static static_cache_t *
static_cache_get(wf_loop_t *loop)
{
    if (static_cache == NULL) {
        static_cache = calloc(1, sizeof(*static_cache));
        if (static_cache == NULL) {
            return NULL;
        }
        static_cache->loop = loop;
        wf_timer_init(&static_cache->sweep, static_on_sweep);
    }
    return static_cache;
}

void
wf_static_thread_exit(void)
{
    if (static_cache == NULL) {
        return;
    }
    static_cache_prune(static_cache, true);
    wf_timer_stop(static_cache->loop, &static_cache->sweep);
    free(static_cache);
    static_cache = NULL;
}

/* Returns a new reference to the fresh cached file at path, or NULL. */
static wf_file_t *
static_cache_find(static_cache_t *sc, const char *path, size_t len,
                  uint32_t mode)
{
    uint32_t h = static_hash(path, len);
    wf_file_t **pp = &sc->buckets[h % STATIC_BUCKETS];

    for (; *pp != NULL; pp = &(*pp)->next) {
        wf_file_t *f = *pp;

        if (f->hash != h || f->path_len != len || f->mode != mode
            || memcmp(f->path, path, len) != 0) {
            continue;
        }
        if (f->expire <= sc->loop->now) {
            *pp = f->next;
            sc->nfiles--;
            wf_file_unref(f);
            return NULL;
        }
        f->refs++;
        return f;
    }
    return NULL;
}

/* Wraps an open regular file in a cache entry (the cache keeps one
 * reference when there is room).  Returns a new reference, or NULL with fd
 * closed when out of memory. */
static wf_file_t *
static_cache_add(static_cache_t *sc, const char *path, size_t len,
                 uint32_t mode, int fd, const struct stat *st)
{
    wf_file_t *f = malloc(sizeof(*f) + len + 1);

    if (f == NULL) {
        close(fd);
        return NULL;
    }
    f->fd = fd;
    f->refs = 1;
    f->hash = static_hash(path, len);
    f->mode = mode;
    f->expire = sc->loop->now + WF_FILE_VALID_MS;
    f->size = (uint64_t)st->st_size;
    f->mtime = st->st_mtime;
    f->etag_len = wf_etag_format(f->etag, st->st_mtime, f->size);
    f->path_len = len;
    memcpy(f->path, path, len);
    f->path[len] = '\0';
    if (sc->nfiles < STATIC_MAX_FILES) {
        wf_file_t **head = &sc->buckets[f->hash % STATIC_BUCKETS];

        f->next = *head;
        *head = f;
        f->refs++;
        sc->nfiles++;
        if (!wf_timer_is_armed(&sc->sweep)) {
            wf_timer_set(sc->loop, &sc->sweep, WF_FILE_VALID_MS);
        }
    }
    return f;
}

/* The share failed with status (404 or 403): the next share, the fallback,
 * or the error. */
static void
static_fail(wf_req_t *r, unsigned status)
{
    const wf_action_t *a = r->action;

    if (status == 404 && r->share_index + 1 < a->nshares) {
        r->share_index++;
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

static unsigned
static_errno_status(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return 404;
    case EACCES:
    case EPERM:
    case ELOOP:
    case EXDEV: /* a mount point with traverse_mounts off */
    case ENXIO: /* a socket or a device without its driver */
    case ENODEV:
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
    const wf_action_t *a = r->action;
    wf_resp_t *resp = &r->resp;
    wf_str_t path = wf_str_make(r->path, r->path_len);
    wf_str_t type = wf_mime_lookup(r->hc->mime, path);

    if (a->types != NULL && !wf_pattern_set_match(a->types, type)) {
        wf_file_unref(f);
        static_fail(r, 403);
        return;
    }
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
    if (static_range(r, f, r->crange) == WF_OK) {
        wf_req_respond(r);
    }
}

/* Opens r->path under the share's restrictions with openat2(): inside the
 * chroot (absolute symlinks stay in it, ".." stops at it), without
 * following symlinks, without crossing mount points.  The restrictions
 * apply only below the chroot, as in Unit.  Returns a descriptor or -1. */
static int
static_open_restricted(const wf_req_t *r)
{
    struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC};
    const char *rel = r->path;
    char root[PATH_MAX];
    int dirfd = AT_FDCWD;
    int fd;

    how.resolve |=
        (r->open_mode & STATIC_NO_SYMLINKS) != 0 ? RESOLVE_NO_SYMLINKS : 0;
    how.resolve |= (r->open_mode & STATIC_NO_XDEV) != 0 ? RESOLVE_NO_XDEV : 0;
    if ((r->open_mode & STATIC_CHROOT) != 0) {
        size_t len = r->open_mode >> STATIC_ROOT_SHIFT;

        memcpy(root, r->path, len);
        root[len] = '\0';
        dirfd = open(len > 0 ? root : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd == -1) {
            return -1;
        }
        how.resolve |= RESOLVE_IN_ROOT;
        rel = r->path + len;
        while (*rel == '/') {
            rel++;
        }
        rel = *rel != '\0' ? rel : ".";
    }
    fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (dirfd != AT_FDCWD) {
        int err = errno;

        close(dirfd);
        errno = err;
    }
    return fd;
}

static void
static_open_work(wf_job_t *job)
{
    wf_req_t *r = wf_container_of(job, wf_req_t, job);

    r->job_fd = r->open_mode == 0
                    ? open(r->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
                    : static_open_restricted(r);
    if (r->job_fd == -1) {
        r->job_errno = errno;
        return;
    }
    if (fstat(r->job_fd, &r->job_st) == -1) {
        r->job_errno = errno;
        close(r->job_fd);
        r->job_fd = -1;
    }
}

static void
static_on_open(wf_req_t *r)
{
    int fd = r->job_fd;
    static_cache_t *sc;
    wf_file_t *f;

    r->job_fd = -1;
    if (fd == -1) {
        static_fail(r, static_errno_status(r->job_errno));
        return;
    }
    if (S_ISDIR(r->job_st.st_mode)) {
        close(fd);
        if (r->trying_index) {
            static_fail(r, 404);
        } else {
            static_redirect_dir(r);
        }
        return;
    }
    if (!S_ISREG(r->job_st.st_mode)) {
        close(fd);
        static_fail(r, 403);
        return;
    }
    sc = static_cache_get(r->loop);
    f = sc != NULL ? static_cache_add(sc, r->path, r->path_len, r->open_mode,
                                      fd, &r->job_st)
                   : NULL;
    if (f == NULL) {
        if (sc == NULL) {
            close(fd);
        }
        wf_req_respond_error(r, 503);
        return;
    }
    static_respond_file(r, f);
}

/* Renders the current share into r->path, with the index appended for a
 * path that ends in '/'.  Returns WF_OK or WF_DECLINED when too long. */
static int
static_render_path(wf_req_t *r)
{
    const wf_action_t *a = r->action;
    size_t n = wf_tpl_render(a->shares[r->share_index], &r->rq, r->path,
                             sizeof(r->path));

    if (n >= sizeof(r->path)) {
        return WF_DECLINED;
    }
    r->trying_index = n > 0 && r->path[n - 1] == '/';
    if (r->trying_index) {
        if (n + a->index.len >= sizeof(r->path)) {
            return WF_DECLINED;
        }
        memcpy(r->path + n, a->index.data, a->index.len);
        n += a->index.len;
    }
    if (memchr(r->path, '\0', n) != NULL) {
        return WF_DECLINED;
    }
    r->path[n] = '\0';
    r->path_len = n;
    return WF_OK;
}

/* Sets r->open_mode from the action's chroot, follow_symlinks and
 * traverse_mounts.  Returns WF_OK, or WF_DECLINED when r->path lies
 * outside the chroot (Unit answers 403). */
static int
static_resolve_mode(wf_req_t *r)
{
    const wf_action_t *a = r->action;
    char root[PATH_MAX];
    size_t n;

    r->open_mode = (a->follow_symlinks ? 0 : STATIC_NO_SYMLINKS)
                   | (a->traverse_mounts ? 0 : STATIC_NO_XDEV);
    if (a->chroot == NULL) {
        return WF_OK;
    }
    n = wf_tpl_render(a->chroot, &r->rq, root, sizeof(root));
    if (n >= sizeof(root)) {
        return WF_DECLINED;
    }
    while (n > 0 && root[n - 1] == '/') {
        n--;
    }
    /* The chroot must be a directory prefix of the path. */
    if (n > r->path_len || memcmp(root, r->path, n) != 0
        || (r->path[n] != '/' && r->path[n] != '\0')) {
        return WF_DECLINED;
    }
    r->open_mode |= STATIC_CHROOT | (uint32_t)(n << STATIC_ROOT_SHIFT);
    return WF_OK;
}

static void
static_try_share(wf_req_t *r)
{
    static_cache_t *sc;
    wf_file_t *f;

    if (static_render_path(r) != WF_OK) {
        static_fail(r, 404);
        return;
    }
    if (static_resolve_mode(r) != WF_OK) {
        static_fail(r, 403);
        return;
    }
    sc = static_cache_get(r->loop);
    f = sc != NULL ? static_cache_find(sc, r->path, r->path_len, r->open_mode)
                   : NULL;
    if (f != NULL) {
        static_respond_file(r, f);
        return;
    }
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
    r->action = a;
    r->share_index = 0;
    static_try_share(r);
}
