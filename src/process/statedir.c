#include "process/statedir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/conf.h"
#include "core/common.h"
#include "core/json.h"
#include "core/log.h"
#include "process/process.h"

#define STATEDIR_CONF_MAX (64 * 1024 * 1024)

int
wf_mkdir_parents(const char *path)
{
    char dir[PATH_MAX];
    size_t n = strlen(path);

    if (n >= sizeof(dir)) {
        wf_log_alert(ENAMETOOLONG, "path \"%s\"", path);
        return WF_ERROR;
    }
    memcpy(dir, path, n + 1);
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
            wf_log_alert(errno, "mkdir(\"%s\") failed", dir);
            return WF_ERROR;
        }
        *p = '/';
    }
    return WF_OK;
}

static char *
statedir_read(const char *path, size_t *len, bool must_exist)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf;
    ssize_t n;

    if (fd == -1) {
        if (must_exist || errno != ENOENT) {
            wf_log_alert(errno, "open(\"%s\") failed", path);
        }
        return NULL;
    }
    if (fstat(fd, &st) == -1 || st.st_size > STATEDIR_CONF_MAX) {
        wf_log_alert(errno, "\"%s\" cannot be read or is too large", path);
        close(fd);
        return NULL;
    }
    buf = malloc((size_t)st.st_size + 1);
    n = buf != NULL ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (n != st.st_size) {
        wf_log_alert(errno, "read(\"%s\") failed", path);
        free(buf);
        return NULL;
    }
    *len = (size_t)n;
    return buf;
}

json_t *
wf_statedir_load_conf(const char *path, bool must_exist)
{
    wf_conf_error_t err;
    wf_conf_t *conf;
    json_t *json;
    size_t len = 0;
    char *text = statedir_read(path, &len, must_exist);

    if (text == NULL) {
        return NULL;
    }
    conf = wf_conf_load(text, len, &err);
    free(text);
    if (conf == NULL) {
        if (err.has_location) {
            wf_log_alert(0, "\"%s\": %s %s (line %d, column %d)", path,
                         err.error, err.detail, err.json.line, err.json.column);
        } else {
            wf_log_alert(0, "\"%s\": %s %s", path, err.error, err.detail);
        }
        return NULL;
    }
    json = json_incref(conf->json);
    wf_conf_destroy(conf);
    return json;
}

json_t *
wf_statedir_load_stored(const char *statedir)
{
    char path[PATH_MAX];
    json_t *conf;

    snprintf(path, sizeof(path), "%s/conf.json", statedir);
    if (access(path, F_OK) == -1) {
        return NULL;
    }
    conf = wf_statedir_load_conf(path, false);
    if (conf == NULL) {
        wf_log_alert(0, "the stored configuration is invalid; "
                        "starting with the default one");
    }
    return conf;
}

static int
statedir_fsync_dir(const char *statedir)
{
    int fd = open(statedir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd == -1) {
        return WF_ERROR;
    }
    fsync(fd);
    close(fd);
    return WF_OK;
}

/* Writes data to STATEDIR/name through STATEDIR/name.tmp (STATEDIR/.name.tmp
 * with hidden_tmp: a certificate's name may end in ".tmp"). */
static int
statedir_write_tmp(const char *statedir, const char *name, const char *data,
                   size_t len, bool hidden_tmp)
{
    char path[PATH_MAX];
    char tmp[PATH_MAX];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", statedir, name);
    snprintf(tmp, sizeof(tmp), "%s/%s%s.tmp", statedir, hidden_tmp ? "." : "",
             name);
    if (mkdir(statedir, hidden_tmp ? 0700 : 0755) == -1 && errno != EEXIST) {
        wf_log_alert(errno, "mkdir(\"%s\") failed", statedir);
        return WF_ERROR;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd == -1) {
        wf_log_alert(errno, "open(\"%s\") failed", tmp);
        return WF_ERROR;
    }
    if (write(fd, data, len) != (ssize_t)len || fsync(fd) == -1) {
        wf_log_alert(errno, "writing \"%s\" failed", tmp);
        goto fail_unlink;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) == -1) {
        wf_log_alert(errno, "rename(\"%s\", \"%s\") failed", tmp, path);
        goto fail_unlink;
    }
    statedir_fsync_dir(statedir);
    return WF_OK;

fail_unlink:
    if (fd != -1) {
        close(fd);
    }
    unlink(tmp);
    return WF_ERROR;
}

static int
statedir_write(const char *statedir, const char *name, const char *data,
               size_t len)
{
    return statedir_write_tmp(statedir, name, data, len, false);
}

/* Writes STATEDIR/sub/name through STATEDIR/sub/.name.tmp. */
static int
statedir_store_in(const char *statedir, const char *sub, const char *name,
                  const char *data, size_t len)
{
    char dir[PATH_MAX];

    snprintf(dir, sizeof(dir), "%s/%s", statedir, sub);
    if (mkdir(statedir, 0755) == -1 && errno != EEXIST) {
        wf_log_alert(errno, "mkdir(\"%s\") failed", statedir);
        return WF_ERROR;
    }
    return statedir_write_tmp(dir, name, data, len, true);
}

static int
statedir_delete_in(const char *statedir, const char *sub, const char *name)
{
    char path[PATH_MAX + 256];
    char dir[PATH_MAX];

    snprintf(dir, sizeof(dir), "%s/%s", statedir, sub);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (unlink(path) == -1 && errno != ENOENT) {
        wf_log_alert(errno, "unlink(\"%s\") failed", path);
        return WF_ERROR;
    }
    statedir_fsync_dir(dir);
    return WF_OK;
}

int
wf_statedir_store_acme(const char *statedir, const char *name, const char *text,
                       size_t len)
{
    return statedir_store_in(statedir, "acme", name, text, len);
}

int
wf_statedir_delete_acme(const char *statedir, const char *name)
{
    return statedir_delete_in(statedir, "acme", name);
}

int
wf_statedir_store_cert(const char *statedir, const char *name, const char *pem,
                       size_t len)
{
    char dir[PATH_MAX];

    snprintf(dir, sizeof(dir), "%s/certs", statedir);
    if (mkdir(statedir, 0755) == -1 && errno != EEXIST) {
        wf_log_alert(errno, "mkdir(\"%s\") failed", statedir);
        return WF_ERROR;
    }
    return statedir_write_tmp(dir, name, pem, len, true);
}

int
wf_statedir_delete_cert(const char *statedir, const char *name)
{
    return statedir_delete_in(statedir, "certs", name);
}

char *
wf_statedir_conf_text(const json_t *conf)
{
    return json_dumps(conf, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
}

int
wf_statedir_store_text(const char *statedir, const char *text, size_t len)
{
    return statedir_write(statedir, "conf.json", text, len);
}

int
wf_statedir_store_conf(const char *statedir, const json_t *conf)
{
    char *text = wf_statedir_conf_text(conf);
    int rc;

    if (text == NULL) {
        return WF_ERROR;
    }
    rc = wf_statedir_store_text(statedir, text, strlen(text));
    free(text);
    return rc;
}

int
wf_statedir_store_version(const char *statedir)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%d\n", WF_VERNUM);

    return statedir_write(statedir, "version", text, (size_t)n);
}
