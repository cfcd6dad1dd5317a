#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"

static const char *const log_level_names[WF_LOG_NLEVELS] = {
    [WF_LOG_ALERT] = "alert", [WF_LOG_ERR] = "error",
    [WF_LOG_WARN] = "warn",   [WF_LOG_NOTICE] = "notice",
    [WF_LOG_INFO] = "info",   [WF_LOG_DEBUG] = "debug",
};

static int log_fd = STDERR_FILENO;
static char *log_path;
static wf_log_level_t log_max_level = WF_LOG_INFO;

int
wf_log_open(const char *path)
{
    int fd;

    if (path == NULL) {
        log_fd = STDERR_FILENO;
        return WF_OK;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        fprintf(stderr, "wharf: cannot open log \"%s\": %s\n", path,
                strerror(errno));
        return WF_ERROR;
    }
    free(log_path);
    log_path = strdup(path);
    if (log_fd != STDERR_FILENO) {
        close(log_fd);
    }
    log_fd = fd;
    return WF_OK;
}

int
wf_log_fd(void)
{
    return log_fd;
}

int
wf_log_reopen(void)
{
    int fd;

    if (log_path == NULL) {
        return WF_OK;
    }
    fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        wf_log_alert(errno, "open(\"%s\") failed", log_path);
        return WF_ERROR;
    }
    /* dup2 swaps the file under concurrent writers without a gap. */
    dup2(fd, log_fd);
    close(fd);
    return WF_OK;
}

int
wf_log_redirect(int fd)
{
    int rc = WF_OK;

    /* dup2 swaps the file under concurrent writers without a gap. */
    if (log_fd != STDERR_FILENO && dup2(fd, log_fd) == -1) {
        rc = WF_ERROR;
        wf_log_alert(errno, "dup2(%d, %d) failed", fd, log_fd);
    }
    close(fd);
    return rc;
}

void
wf_log_set_level(wf_log_level_t level)
{
    log_max_level = level;
}

void
wf_log(wf_log_level_t level, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    wf_log_v(level, err, fmt, ap);
    va_end(ap);
}

void
wf_log_v(wf_log_level_t level, int err, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int rc;

    if (level > log_max_level) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S", &tm);
    rc = snprintf(line + n, sizeof(line) - n, " [%s] %d#%ld ",
                  log_level_names[level], (int)getpid(),
                  (long)syscall(SYS_gettid));
    n += (size_t)wf_max(rc, 0);
    rc = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    n = wf_min(n + (size_t)wf_max(rc, 0), sizeof(line) - 1);
    if (err != 0 && n < sizeof(line) - 1) {
        rc = snprintf(line + n, sizeof(line) - n, " (%d: %s)", err,
                      strerror(err));
        n = wf_min(n + (size_t)wf_max(rc, 0), sizeof(line) - 1);
    }
    line[n++] = '\n';
    if (write(log_fd, line, n) < 0) {
        /* Nowhere left to report it. */
    }
}

void *
wf_xalloc(size_t size)
{
    void *p = malloc(size);

    if (p == NULL) {
        wf_log_alert(errno, "malloc(%zu) failed", size);
        exit(EXIT_FAILURE);
    }
    return p;
}

void *
wf_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);

    if (p == NULL) {
        wf_log_alert(errno, "calloc(%zu, %zu) failed", n, size);
        exit(EXIT_FAILURE);
    }
    return p;
}

char *
wf_xstrdup(const char *s)
{
    char *p = strdup(s);

    if (p == NULL) {
        wf_log_alert(errno, "strdup() failed");
        exit(EXIT_FAILURE);
    }
    return p;
}
