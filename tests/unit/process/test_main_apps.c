/* main's app processes (process/main_apps.c), driven as the router drives
 * them: WF_MSG_APP_START over a real port with real app sockets, a real
 * fork, the real runtime (wf_app_main) and a real module
 * (tests/integration/apps/spawn/spawn_module.c, which reports what its
 * process looks like).  The test plays the router and, for SIGCHLD,
 * main's loop (waitpid, then wf_main_apps_reap()). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apps/app_proto.h"
#include "core/common.h"
#include "process/main_apps.h"
#include "process/port.h"
#include "process/port_msg_types.h"
#include "unit.h"

#define TM_WAIT_MS 20000 /* for a child to report or exit; loaded machine */

typedef struct tm_rec {
    uint32_t type;
    char text[512];
} tm_rec_t;

static tm_rec_t tm_recs[64];
static unsigned tm_nrecs;

static void
tm_on_msg(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);

    wf_unused(p);
    assert_true(tm_nrecs < wf_nitems(tm_recs));
    tm_recs[tm_nrecs].type = msg->type;
    snprintf(tm_recs[tm_nrecs].text, sizeof(tm_recs[0].text), "%s",
             text != NULL ? text : "");
    tm_nrecs++;
}

#define FROM_MAIN   WF_PORT_FROM(WF_PORT_MAIN)
#define FROM_ROUTER WF_PORT_FROM(WF_PORT_ROUTER)

/* main's side, as main.c's router table has it. */
static const wf_port_type_t tm_main_types[] = {
    {WF_MSG_FAIL, "fail", wf_port_reply_handler, FROM_MAIN, 0},
    {WF_MSG_APP_START, "app_start", wf_main_app_on_start, FROM_ROUTER,
     WF_APP_MAX_FDS},
    {WF_MSG_APP_PID, "app_pid", wf_port_reply_handler, FROM_MAIN, 0},
    {WF_MSG_APP_EXIT, "app_exit", wf_port_reply_handler, FROM_MAIN, 0},
    {WF_MSG_APP_KILL, "app_kill", wf_main_app_on_kill, FROM_ROUTER, 0},
};

/* The router's side: records what main says. */
static const wf_port_type_t tm_router_types[] = {
    {WF_MSG_FAIL, "fail", tm_on_msg, FROM_MAIN, 0},
    {WF_MSG_APP_START, "app_start", tm_on_msg, FROM_ROUTER, WF_APP_MAX_FDS},
    {WF_MSG_APP_PID, "app_pid", tm_on_msg, FROM_MAIN, 0},
    {WF_MSG_APP_EXIT, "app_exit", tm_on_msg, FROM_MAIN, 0},
    {WF_MSG_APP_KILL, "app_kill", tm_on_msg, FROM_ROUTER, 0},
};

static struct {
    wf_port_t *main;
    wf_port_t *router;
    int main_fd;
    int router_fd;
    char dir[64];
    char *module;
    json_t *modules;
    wf_opts_t opts;
} tm;

static void
tm_pump(void)
{
    for (int i = 0; i < 4; i++) {
        wf_port_flush(tm.router);
        while (wf_port_on_readable(tm.main) == WF_OK) {
        }
        wf_port_flush(tm.main);
        while (wf_port_on_readable(tm.router) == WF_OK) {
        }
    }
}

static void
tm_ports_open(void)
{
    int fds[2];

    assert_int_equal(wf_port_pair(fds), WF_OK);
    tm.main = wf_port_create(fds[0], WF_PORT_MAIN, WF_PORT_ROUTER,
                             tm_main_types, wf_nitems(tm_main_types), NULL);
    tm.router =
        wf_port_create(fds[1], WF_PORT_ROUTER, WF_PORT_MAIN, tm_router_types,
                       wf_nitems(tm_router_types), NULL);
    assert_non_null(tm.main);
    assert_non_null(tm.router);
    tm.main_fd = fds[0];
    tm.router_fd = fds[1];
    wf_main_apps_router_set(tm.main);
}

static void
tm_ports_close(void)
{
    wf_port_destroy(tm.main);
    wf_port_destroy(tm.router);
    tm.main = tm.router = NULL;
}

static int
tm_group_setup(void **state)
{
    wf_unused(state);
    tm.module = realpath(WF_SPAWN_MODULE, NULL);
    assert_non_null(tm.module);
    tm.modules = json_pack("[{s:s, s:s, s:s}]", "type", "python", "version",
                           "0.0.1", "file", tm.module);
    snprintf(tm.dir, sizeof(tm.dir), "/tmp/wf-test-apps-XXXXXX");
    assert_non_null(mkdtemp(tm.dir));
    chmod(tm.dir, 0777); /* the app may run as nobody */
    tm.opts = (wf_opts_t){.user = "root", .group = "root"};
    assert_int_equal(wf_main_apps_init(&tm.opts, tm.modules), WF_OK);
    tm_ports_open();
    return 0;
}

static int
tm_group_teardown(void **state)
{
    char cmd[128];

    wf_unused(state);
    tm_ports_close();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tm.dir);
    assert_int_equal(system(cmd), 0);
    json_decref(tm.modules);
    free(tm.module);
    return 0;
}

/* Sends WF_MSG_APP_START for conf (JSON text) with nfds app sockets; the
 * router's ends go to rfds.  Returns the reply's record. */
static const tm_rec_t *
tm_start(const char *name, const char *conf, unsigned slots, unsigned threads,
         unsigned nfds, int *rfds)
{
    int afds[WF_APP_MAX_FDS];
    char payload[4096];
    unsigned before = tm_nrecs;

    for (unsigned i = 0; i < nfds; i++) {
        int pair[2];

        assert_int_equal(wf_port_pair(pair), WF_OK);
        rfds[i] = pair[0];
        afds[i] = pair[1];
    }
    snprintf(payload, sizeof(payload),
             "{\"name\": \"%s\", \"conf\": %s, \"slots\": %u, "
             "\"router_threads\": %u}",
             name, conf, slots, threads);
    assert_int_equal(wf_port_send(tm.router, WF_MSG_APP_START,
                                  wf_port_stream_new(), payload,
                                  strlen(payload), afds, nfds),
                     WF_OK);
    for (unsigned i = 0; i < nfds; i++) {
        close(afds[i]); /* main has them now */
    }
    tm_pump();
    assert_int_equal(tm_nrecs, before + 1);
    return &tm_recs[before];
}

static uint64_t
tm_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for pid as main's SIGCHLD handling would, and reaps it. */
static int
tm_wait(pid_t pid)
{
    uint64_t deadline = tm_now_ms() + TM_WAIT_MS;
    int status = 0;

    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);

        if (got == pid) {
            break;
        }
        assert_true(got == 0 && tm_now_ms() < deadline);
        usleep(10 * 1000);
    }
    assert_true(wf_main_apps_reap(pid, status));
    tm_pump();
    return status;
}

/* A whole file, NUL-terminated; NULL when it cannot be read. */
static char *
tm_read_file(const char *path)
{
    size_t len;
    char *text = wf_test_read_file(path, &len);
    char *copy = text != NULL ? malloc(len + 1) : NULL;

    if (copy != NULL) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    free(text);
    return copy;
}

/* The report file of the spawn module, once written. */
static char *
tm_report(const char *path)
{
    uint64_t deadline = tm_now_ms() + TM_WAIT_MS;
    char *text;

    while ((text = tm_read_file(path)) == NULL) {
        assert_true(tm_now_ms() < deadline);
        usleep(10 * 1000);
    }
    return text;
}

/* The router end of socket 0 gets READY from the app: wf_app_main() runs
 * with the sockets main passed. */
static void
tm_expect_ready(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    unsigned char buf[256];
    wf_port_hdr_t h;

    assert_int_equal(poll(&pfd, 1, TM_WAIT_MS), 1);
    assert_true(recv(fd, buf, sizeof(buf), 0) >= (ssize_t)sizeof(h));
    memcpy(&h, buf, sizeof(h));
    assert_int_equal(h.type, WF_APP_MSG_READY);
}

static void
tm_close_all(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        close(fds[i]);
    }
}

static void
tm_expect_file(const char *path, const char *needle)
{
    char *text = tm_read_file(path);

    assert_non_null(text);
    assert_non_null(strstr(text, needle));
    free(text);
}

/* The app's user, groups, environment, working directory, stdout/stderr,
 * title and fds; READY on its sockets; exit reported. */
static void
test_main_apps_start(void **state)
{
    char conf[2048], report[128], out[128], err[128], exit_text[128];
    int rfds[4];
    /* Not CLOEXEC, like any fd of main's; high, so that nothing the app
     * opens itself lands on that number. */
    int probe = fcntl(STDIN_FILENO, F_DUPFD, 900);
    const tm_rec_t *r;
    char *text;
    pid_t pid;

    wf_unused(state);
    if (geteuid() != 0) {
        close(probe);
        skip(); /* the credentials part needs root */
    }
    snprintf(report, sizeof(report), "%s/report", tm.dir);
    snprintf(out, sizeof(out), "%s/out.log", tm.dir);
    snprintf(err, sizeof(err), "%s/err.log", tm.dir);
    snprintf(conf, sizeof(conf),
             "{\"type\": \"python 0.0\", \"user\": \"nobody\", "
             "\"working_directory\": \"%s\", \"stdout\": \"%s\", "
             "\"stderr\": \"%s\", \"environment\": {\"SPAWN_REPORT\": "
             "\"%s\", \"SPAWN_REPORT_ENV\": \"FOO,HOME\", \"FOO\": \"bar\", "
             "\"SPAWN_PROBE_FD\": \"%d\"}}",
             tm.dir, out, err, report, probe);
    r = tm_start("a", conf, 2, 2, 4, rfds);
    assert_int_equal(r->type, WF_MSG_APP_PID);
    pid = (pid_t)atoi(r->text);
    assert_true(pid > 0);
    assert_int_equal(wf_main_apps_count(), 1);
    text = tm_report(report);
    /* nobody, with nobody's primary group (Unit's default). */
    assert_non_null(strstr(text, "uid=65534\n"));
    assert_non_null(strstr(text, "gid=65534\n"));
    assert_non_null(strstr(text, "groups=65534\n"));
    assert_non_null(strstr(text, "env:FOO=bar\n"));
    assert_non_null(strstr(text, "cwd="));
    assert_non_null(strstr(text, tm.dir));
    snprintf(exit_text, sizeof(exit_text), "fd:%d=0\n", probe);
    assert_non_null(strstr(text, exit_text)); /* closed in the app */
    assert_non_null(strstr(text, "comm=wharf: \"a\""));
    free(text);
    tm_expect_file(out, "spawn-stdout\n");
    tm_expect_file(err, "spawn-stderr\n");
    for (unsigned i = 0; i < 4; i++) {
        tm_expect_ready(rfds[i]);
    }
    /* The router closes the sockets: the app stops, and main says so. */
    tm_close_all(rfds, 4);
    assert_true(WIFEXITED(tm_wait(pid)));
    assert_int_equal(tm_recs[tm_nrecs - 1].type, WF_MSG_APP_EXIT);
    snprintf(exit_text, sizeof(exit_text),
             "{\"pid\":%d,\"name\":\"a\",\"code\":0}", (int)pid);
    assert_string_equal(tm_recs[tm_nrecs - 1].text, exit_text);
    assert_int_equal(wf_main_apps_count(), 0);
    close(probe);
}

/* Starts that fail get WF_MSG_FAIL with Unit's wording, and no process. */
static void
test_main_apps_refused(void **state)
{
    static const struct {
        const char *conf;
        unsigned nfds;
        const char *why;
    } cases[] = {
        {"{\"type\": \"python\", \"user\": \"wf-no-such-user\"}", 1,
         "getpwnam(\"wf-no-such-user\") failed, user \"wf-no-such-user\" not "
         "found"},
        {"{\"type\": \"python\", \"group\": \"wf-no-such-group\"}", 1,
         "getgrnam(\"wf-no-such-group\") failed, group \"wf-no-such-group\" "
         "not found"},
        {"{\"type\": \"python 3.99\"}", 1,
         "unknown application type: \"python 3.99\""},
        {"{\"type\": \"php\"}", 1, "unknown application type: \"php\""},
        {"{\"type\": \"python\"}", 2, "invalid application start request"},
        {"{\"user\": \"root\"}", 1, "invalid application start request"},
    };

    wf_unused(state);
    if (geteuid() != 0) {
        skip(); /* unprivileged, user and group fail differently */
    }
    for (size_t i = 0; i < wf_nitems(cases); i++) {
        int rfds[2];
        const tm_rec_t *r =
            tm_start("bad", cases[i].conf, 1, 1, cases[i].nfds, rfds);

        assert_int_equal(r->type, WF_MSG_FAIL);
        assert_string_equal(r->text, cases[i].why);
        assert_int_equal(wf_main_apps_count(), 0);
        tm_close_all(rfds, cases[i].nfds);
    }
}

/* WF_MSG_APP_KILL kills the router's app, and nothing else. */
static void
test_main_apps_kill(void **state)
{
    char text[32], want[128];
    int rfds[1];
    const tm_rec_t *r;
    pid_t pid, other;

    wf_unused(state);
    other = fork();
    assert_true(other >= 0);
    if (other == 0) {
        pause();
        _exit(0);
    }
    r = tm_start("k", "{\"type\": \"python\"}", 1, 1, 1, rfds);
    assert_int_equal(r->type, WF_MSG_APP_PID);
    pid = (pid_t)atoi(r->text);
    tm_expect_ready(rfds[0]);

    snprintf(text, sizeof(text), "%d", (int)other);
    wf_port_send(tm.router, WF_MSG_APP_KILL, 0, text, strlen(text), NULL, 0);
    snprintf(text, sizeof(text), "%d", (int)pid);
    wf_port_send(tm.router, WF_MSG_APP_KILL, 0, text, strlen(text), NULL, 0);
    tm_pump();
    {
        int status = tm_wait(pid);

        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }
    snprintf(want, sizeof(want), "{\"pid\":%d,\"name\":\"k\",\"signal\":9}",
             (int)pid);
    assert_string_equal(tm_recs[tm_nrecs - 1].text, want);
    assert_int_equal(waitpid(other, NULL, WNOHANG), 0); /* still alive */
    kill(other, SIGKILL);
    waitpid(other, NULL, 0);
    close(rfds[0]);
}

/* A router that dies takes its apps with it; the next router hears
 * nothing of them. */
static void
test_main_apps_router_lost(void **state)
{
    int rfds[1];
    const tm_rec_t *r;
    unsigned before;
    pid_t pid;
    int status;

    wf_unused(state);
    r = tm_start("o", "{\"type\": \"python\"}", 1, 1, 1, rfds);
    assert_int_equal(r->type, WF_MSG_APP_PID);
    pid = (pid_t)atoi(r->text);
    tm_expect_ready(rfds[0]);
    wf_main_apps_router_lost();
    tm_ports_close();
    tm_ports_open();
    before = tm_nrecs;
    status = tm_wait(pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(tm_nrecs, before);
    close(rfds[0]);
}

/* A stop that comes while the app still loads reaches it, and later
 * starts are refused.  Last: main stays stopping. */
static void
test_main_apps_stop_while_loading(void **state)
{
    char conf[512], report[128];
    int rfds[1];
    const tm_rec_t *r;
    pid_t pid;

    wf_unused(state);
    snprintf(report, sizeof(report), "%s/slow", tm.dir);
    snprintf(conf, sizeof(conf),
             "{\"type\": \"python\", \"environment\": {\"SPAWN_REPORT\": "
             "\"%s\", \"SPAWN_SETUP_SLEEP_MS\": \"60000\"}}",
             report);
    r = tm_start("s", conf, 1, 1, 1, rfds);
    assert_int_equal(r->type, WF_MSG_APP_PID);
    pid = (pid_t)atoi(r->text);
    free(tm_report(report)); /* now in setup() */
    wf_main_apps_stop(SIGQUIT);
    (void)tm_wait(pid); /* well before the 60 s of its setup */
    close(rfds[0]);
    r = tm_start("s", "{\"type\": \"python\"}", 1, 1, 1, rfds);
    assert_int_equal(r->type, WF_MSG_FAIL);
    assert_string_equal(r->text, "main is stopping");
    close(rfds[0]);
}

int
wf_test_main_apps(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_main_apps_start),
        cmocka_unit_test(test_main_apps_refused),
        cmocka_unit_test(test_main_apps_kill),
        cmocka_unit_test(test_main_apps_router_lost),
        cmocka_unit_test(test_main_apps_stop_while_loading),
    };

    return cmocka_run_group_tests_name("main_apps", tests, tm_group_setup,
                                       tm_group_teardown);
}
