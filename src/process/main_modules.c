/* Language module discovery, as Unit does it at start: every module in the
 * modules directory is loaded once, in a child that only reports its type
 * and version, so that main never holds a language runtime (libpython
 * starts threads and handlers that a supervisor must not carry). */
#include "process/main_apps.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apps/app_api.h"
#include "control/app_type.h"
#include "core/common.h"
#include "core/log.h"

#define MODULES_SUFFIX   "*.wharf.so"
#define MODULES_MAX      64    /* modules kept; more are ignored (logged) */
#define MODULES_TEXT     256   /* type and version as the child reports them */
#define MODULES_PROBE_MS 10000 /* a probe that takes longer is killed */

typedef struct modules_entry {
    char type[32];
    char version[64];
    char *file; /* owned */
} modules_entry_t;

/* In the child: loads file and writes "TYPE\0VERSION\0" to fd.  Exits 0
 * when the module is usable, 1 after logging why not. */
static void __attribute__((noreturn))
modules_probe_child(const char *file, int fd)
{
    const wf_app_module_t *m;
    char buf[MODULES_TEXT];
    sigset_t all;
    void *dl;
    int n;

    /* A module loads with default signals, as in an app process; a
     * crash then ends the probe with its signal. */
    for (int sig = 1; sig < NSIG; sig++) {
        signal(sig, SIG_DFL);
    }
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    dl = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        wf_log_alert(0, "dlopen(\"%s\"), failed: \"%s\"", file, dlerror());
        _exit(1);
    }
    m = dlsym(dl, WF_APP_MODULE_SYMBOL);
    if (m == NULL) {
        wf_log_alert(
            0, "dlsym(\"%s\", \"" WF_APP_MODULE_SYMBOL "\") failed: \"%s\"",
            file, dlerror());
        _exit(1);
    }
    if (m->abi != WF_APP_ABI || m->type == NULL || m->version == NULL
        || m->setup == NULL || m->run == NULL) {
        wf_log_notice(0, "incompatible module %s", file);
        _exit(1);
    }
    n = snprintf(buf, sizeof(buf), "%s%c%s", m->type, '\0', m->version);
    if (n < 0 || (size_t)n >= sizeof(buf)
        || write(fd, buf, (size_t)n + 1) != n + 1) {
        _exit(1);
    }
    _exit(0);
}

/* Reads the child's report until EOF; returns the bytes read, or -1 on
 * an error or when the child takes longer than MODULES_PROBE_MS (a module
 * whose loading hangs must not hold main's start forever). */
static ssize_t
modules_read_report(int fd, char *buf, size_t size)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    size_t got = 0;

    while (got < size) {
        ssize_t n;
        int rc = poll(&pfd, 1, MODULES_PROBE_MS);

        if (rc == 0) {
            return -1;
        }
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        n = read(fd, buf + got, size - got);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Waits for the probe child; true when it exited 0. */
static bool
modules_wait(pid_t pid, const char *file)
{
    int status;

    while (waitpid(pid, &status, 0) == -1) {
        if (errno != EINTR) {
            wf_log_alert(errno, "waitpid() failed");
            return false;
        }
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL) {
        wf_log_alert(0, "module \"%s\" crashed its probe (signal %d)", file,
                     WTERMSIG(status));
    }
    if (WIFSIGNALED(status)) {
        return false;
    }
    return WEXITSTATUS(status) == 0;
}

/* Loads file in a child and fills e.  Returns WF_OK for a usable module. */
static int
modules_probe(const char *file, modules_entry_t *e)
{
    char buf[MODULES_TEXT + 1];
    int fds[2];
    ssize_t n;
    pid_t pid;
    bool ok;

    if (pipe2(fds, O_CLOEXEC) == -1) {
        wf_log_alert(errno, "pipe2() failed");
        return WF_ERROR;
    }
    pid = fork();
    if (pid == -1) {
        wf_log_alert(errno, "fork() failed");
        close(fds[0]);
        close(fds[1]);
        return WF_ERROR;
    }
    if (pid == 0) {
        close(fds[0]);
        modules_probe_child(file, fds[1]);
    }
    close(fds[1]);
    n = modules_read_report(fds[0], buf, MODULES_TEXT);
    close(fds[0]);
    if (n < 0) {
        wf_log_alert(0, "module \"%s\" did not load within %d s, skipped", file,
                     MODULES_PROBE_MS / 1000);
        kill(pid, SIGKILL);
    }
    ok = modules_wait(pid, file);
    if (!ok || n <= 0 || buf[n - 1] != '\0') {
        return WF_ERROR;
    }
    buf[n] = '\0';
    if (snprintf(e->type, sizeof(e->type), "%s", buf) >= (int)sizeof(e->type)
        || snprintf(e->version, sizeof(e->version), "%s", buf + strlen(buf) + 1)
               >= (int)sizeof(e->version)) {
        wf_log_notice(0, "incompatible module %s", file);
        return WF_ERROR;
    }
    return WF_OK;
}

/* Unit's checks on a loaded module against those kept so far. */
static bool
modules_is_new(const modules_entry_t *all, size_t n, const modules_entry_t *e,
               const char *file)
{
    if (!wf_app_type_known(e->type)) {
        wf_log_notice(0, "unknown module type %s", e->type);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(all[i].type, e->type) == 0
            && strcmp(all[i].version, e->version) == 0) {
            wf_log_notice(0,
                          "ignoring %s module with the same application "
                          "language version %s %s as in %s",
                          file, e->type, e->version, all[i].file);
            return false;
        }
    }
    return true;
}

/* By type, then the highest version first (Unit's order). */
static int
modules_cmp(const void *a, const void *b)
{
    const modules_entry_t *x = a;
    const modules_entry_t *y = b;
    int n = strcmp(x->type, y->type);

    return n != 0 ? n : -strverscmp(x->version, y->version);
}

static json_t *
modules_to_json(modules_entry_t *all, size_t n)
{
    json_t *arr = json_array();

    qsort(all, n, sizeof(*all), modules_cmp);
    for (size_t i = 0; arr != NULL && i < n; i++) {
        json_t *m = json_pack("{s:s, s:s, s:s}", "type", all[i].type, "version",
                              all[i].version, "file", all[i].file);

        if (m == NULL || json_array_append_new(arr, m) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (arr == NULL) {
        wf_log_alert(ENOMEM, "no memory for the module list");
    }
    return arr;
}

json_t *
wf_main_modules_discover(const char *dir)
{
    modules_entry_t all[MODULES_MAX];
    char pattern[4096];
    size_t n = 0;
    glob_t g;
    json_t *arr;

    snprintf(pattern, sizeof(pattern), "%s/" MODULES_SUFFIX, dir);
    wf_log_info("discovery started");
    if (glob(pattern, 0, NULL, &g) != 0) {
        wf_log_notice(0, "no modules matching: \"%s\" found", pattern);
        return json_array();
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        modules_entry_t *e = &all[n];

        if (n == MODULES_MAX) {
            wf_log_notice(0, "too many modules, \"%s\" ignored", g.gl_pathv[i]);
            continue;
        }
        if (modules_probe(g.gl_pathv[i], e) != WF_OK) {
            continue;
        }
        wf_log_notice(0, "module: %s %s \"%s\"", e->type, e->version,
                      g.gl_pathv[i]);
        if (modules_is_new(all, n, e, g.gl_pathv[i])) {
            e->file = wf_xstrdup(g.gl_pathv[i]);
            n++;
        }
    }
    globfree(&g);
    arr = modules_to_json(all, n);
    for (size_t i = 0; i < n; i++) {
        free(all[i].file);
    }
    return arr;
}
