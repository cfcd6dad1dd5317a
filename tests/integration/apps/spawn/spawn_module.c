/* A tiny language module for the tests of main's app processes
 * (test_app_spawn.py builds it with gcc; meson builds it for the unit
 * tests of process/main_apps.c).  It sees only app_api.h, as a real
 * module does, and declares itself "python" SPAWN_VERSION so that Unit's
 * type matching picks it.
 *
 * Its parameters are environment variables (the app's "environment").
 * setup() writes a report of the process it runs in to $SPAWN_REPORT
 * (written to PATH.tmp, then renamed), one "key=value" a line:
 *   uid, gid, groups (comma-separated), ppid, cwd,
 *   env:NAME for each NAME in $SPAWN_REPORT_ENV (comma-separated),
 *   fd:N (1: open, 0: closed) for N = $SPAWN_PROBE_FD,
 *   comm and cmdline (the title; NULs shown as spaces).
 * It also writes "spawn-stdout" to fd 1 and "spawn-stderr" to fd 2.  With
 * $SPAWN_SETUP_SLEEP_MS it then sleeps that long, signals or not (an app
 * that loads slowly); with SPAWN_FAIL=1 it fails.  Workers answer every request
 * with the pid. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apps/app_api.h"

#ifndef SPAWN_VERSION
#define SPAWN_VERSION "0.0.1"
#endif

static const wf_app_rt_t *sm_rt;

/* The test's parameters come in the app's "environment" (a key the
 * controller validates), so main's environment handling is on the path. */
static const char *
sm_param(const char *name)
{
    const char *v = getenv(name);

    return v != NULL ? v : "";
}

static long
sm_param_num(const char *name)
{
    const char *v = getenv(name);

    return v != NULL ? strtol(v, NULL, 10) : -1;
}

static void
sm_read_file(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, out, size - 1) : -1;

    out[n > 0 ? n : 0] = '\0';
    for (ssize_t i = 0; i < n; i++) {
        if (out[i] == '\0' || out[i] == '\n') {
            out[i] = ' ';
        }
    }
    if (fd >= 0) {
        close(fd);
    }
}

static void
sm_report_env(FILE *f)
{
    char names[1024];
    char *save = NULL;

    snprintf(names, sizeof(names), "%s", sm_param("SPAWN_REPORT_ENV"));
    for (char *name = strtok_r(names, ",", &save); name != NULL;
         name = strtok_r(NULL, ",", &save)) {
        const char *v = getenv(name);

        fprintf(f, "env:%s=%s\n", name, v != NULL ? v : "(unset)");
    }
}

static int
sm_report(void)
{
    char tmp[PATH_MAX + 8], cwd[PATH_MAX], buf[4096];
    const char *path = sm_param("SPAWN_REPORT");
    gid_t groups[256];
    int n = getgroups(256, groups);
    long probe = sm_param_num("SPAWN_PROBE_FD");
    FILE *f;

    if (path[0] == '\0') {
        return 0;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        sm_rt->log(WF_APP_LOG_ALERT, "spawn module: cannot write %s", tmp);
        return -1;
    }
    fprintf(f, "uid=%d\ngid=%d\ngroups=", (int)getuid(), (int)getgid());
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s%d", i > 0 ? "," : "", (int)groups[i]);
    }
    fprintf(f, "\nppid=%d\ncwd=%s\n", (int)getppid(),
            getcwd(cwd, sizeof(cwd)) != NULL ? cwd : "?");
    sm_report_env(f);
    if (probe >= 0) {
        fprintf(f, "fd:%ld=%d\n", probe, fcntl((int)probe, F_GETFD) != -1);
    }
    sm_read_file("/proc/self/comm", buf, sizeof(buf));
    fprintf(f, "comm=%s\n", buf);
    sm_read_file("/proc/self/cmdline", buf, sizeof(buf));
    fprintf(f, "cmdline=%s\n", buf);
    fclose(f);
    return rename(tmp, path);
}

/* Sleeps ms milliseconds whatever signals come, as a slow Python import
 * does (time.sleep() resumes after a signal, PEP 475): a stop must not
 * rely on the load returning early. */
static void
sm_sleep(long ms)
{
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
}

static int
sm_setup(const wf_app_rt_t *rt, wf_app_t *app, const wf_app_conf_t *conf,
         void **app_data)
{
    long sleep_ms = sm_param_num("SPAWN_SETUP_SLEEP_MS");

    sm_rt = rt;
    (void)conf;
    *app_data = app;
    if (write(1, "spawn-stdout\n", 13) != 13
        || write(2, "spawn-stderr\n", 13) != 13) {
        rt->log(WF_APP_LOG_WARN, "spawn module: stdout/stderr closed");
    }
    if (sm_report() != 0) {
        return WF_APP_ERROR;
    }
    if (sleep_ms > 0) {
        sm_sleep(sleep_ms);
    }
    if (sm_param_num("SPAWN_FAIL") == 1) {
        rt->log(WF_APP_LOG_ERR, "spawn module: failing as asked");
        return WF_APP_ERROR;
    }
    return WF_APP_OK;
}

static void *
sm_worker(void *arg)
{
    static const wf_app_field_t ct[] = {
        {{"Content-Type", 12}, {"text/plain", 10}}};
    wf_app_worker_t *w = arg;
    wf_app_req_t *req;
    char body[32];

    while (sm_rt->next(w, &req, -1) == WF_APP_OK) {
        int n = snprintf(body, sizeof(body), "%d", (int)getpid());

        sm_rt->end(req, sm_rt->respond(req, 200, ct, 1, body, (size_t)n, 1)
                            == WF_APP_OK);
    }
    return NULL;
}

static int
sm_run(wf_app_t *app, void *app_data)
{
    pthread_t th[64];
    unsigned n = 0;

    (void)app_data;
    while (n < 64 && sm_rt->worker(app, n) != NULL) {
        if (pthread_create(&th[n], NULL, sm_worker, sm_rt->worker(app, n))
            != 0) {
            break;
        }
        n++;
    }
    for (unsigned i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
    }
    return 0;
}

const wf_app_module_t wf_app_module = {
    .abi = WF_APP_ABI,
    .type = "python",
    .version = SPAWN_VERSION,
    .setup = sm_setup,
    .run = sm_run,
};
