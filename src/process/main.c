/* Wharf's entry point: Unit's command line, the config at start, the I/O
 * threads and the signals.  Until the control plane lands, one process does
 * everything. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/conf.h"
#include "core/common.h"
#include "core/listen.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/tpool.h"
#include "http/h1_conn.h"
#include "process/router.h"

#define WF_VERSION          "0.1.0"
#define WF_DEFAULT_STATEDIR "/usr/local/var/lib/wharf"
#define WF_DEFAULT_PID      "/usr/local/var/run/wharf/wharf.pid"
#define WF_DEFAULT_CONTROL  "unix:/usr/local/var/run/wharf/control.wharf.sock"
#define WF_HELPER_THREADS   2
#define WF_GRACE_MS         10000 /* QUIT: bound on finishing requests */
#define WF_CONF_MAX         (64 * 1024 * 1024)

typedef struct main_opts {
    bool daemon;
    const char *control;
    const char *control_mode;
    const char *control_user;
    const char *control_group;
    const char *statedir;
    const char *log;
    const char *pid;
    const char *user;
    const char *group;
    const char *tmpdir;
    const char *modulesdir;
    const char *config;
    unsigned threads;
    unsigned maxconn;
    unsigned maxaccept;
} main_opts_t;

typedef enum main_arg {
    MAIN_ARG_NONE = 0, /* a flag */
    MAIN_ARG_STR,      /* a string value */
    MAIN_ARG_UINT,     /* a positive integer value */
} main_arg_t;

typedef enum main_action {
    MAIN_RUN = 0,
    MAIN_VERSION,
    MAIN_HELP,
} main_action_t;

typedef struct main_opt {
    const char *name;
    main_arg_t arg;
    size_t offset; /* of the field in main_opts_t */
    const char *help;
} main_opt_t;

#define OPT_STR(name, field, help)                             \
    {                                                          \
        name, MAIN_ARG_STR, offsetof(main_opts_t, field), help \
    }
#define OPT_UINT(name, field, help)                             \
    {                                                           \
        name, MAIN_ARG_UINT, offsetof(main_opts_t, field), help \
    }

static const main_opt_t main_opts_table[] = {
    {"--no-daemon", MAIN_ARG_NONE, 0, "run in the foreground"},
    OPT_STR("--control", control, "control API socket: unix:PATH or IP:PORT"),
    OPT_STR("--control-mode", control_mode, "control socket mode (octal)"),
    OPT_STR("--control-user", control_user, "control socket owner"),
    OPT_STR("--control-group", control_group, "control socket group"),
    OPT_STR("--statedir", statedir, "state directory (conf.json)"),
    OPT_STR("--state", statedir, NULL),
    OPT_STR("--log", log, "error log file (default: stderr)"),
    OPT_STR("--pid", pid, "pid file"),
    OPT_STR("--user", user, "user of unprivileged processes"),
    OPT_STR("--group", group, "group of unprivileged processes"),
    OPT_STR("--tmpdir", tmpdir, "directory for temporary files"),
    OPT_STR("--tmp", tmpdir, NULL),
    OPT_STR("--modulesdir", modulesdir, "language modules directory"),
    OPT_STR("--modules", modulesdir, NULL),
    OPT_STR("--config", config, "config file to apply at start (Wharf)"),
    OPT_UINT("--threads", threads, "I/O threads (default: CPUs) (Wharf)"),
    OPT_UINT("--maxconn", maxconn, "open client connections at most (Wharf)"),
    OPT_UINT("--maxaccept", maxaccept, "accepts per wake-up (Wharf)"),
};

static void
main_usage(void)
{
    printf("wharf " WF_VERSION "\n\nUsage: wharf [options]\n\n");
    for (size_t i = 0; i < wf_nitems(main_opts_table); i++) {
        const main_opt_t *o = &main_opts_table[i];

        if (o->help != NULL) {
            printf("  %-18s %s%s\n", o->name,
                   o->arg == MAIN_ARG_NONE ? "" : "VALUE  ", o->help);
        }
    }
    printf("  %-18s %s\n  %-18s %s\n", "--version", "print the version",
           "--help", "print this help");
}

static int
main_set_opt(main_opts_t *opts, const main_opt_t *o, const char *value)
{
    char *end;
    unsigned long v;

    if (o->arg == MAIN_ARG_STR) {
        *(const char **)(void *)((char *)opts + o->offset) = value;
        return WF_OK;
    }
    errno = 0;
    v = strtoul(value, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > 1000000) {
        fprintf(stderr, "wharf: invalid value \"%s\" for %s\n", value, o->name);
        return WF_ERROR;
    }
    *(unsigned *)(void *)((char *)opts + o->offset) = (unsigned)v;
    return WF_OK;
}

static int
main_parse_opt(main_opts_t *opts, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];

    for (size_t k = 0; k < wf_nitems(main_opts_table); k++) {
        const main_opt_t *o = &main_opts_table[k];

        if (strcmp(arg, o->name) != 0) {
            continue;
        }
        if (o->arg == MAIN_ARG_NONE) {
            opts->daemon = false;
            return WF_OK;
        }
        if (*i + 1 >= argc) {
            fprintf(stderr, "wharf: option \"%s\" requires a value\n", arg);
            return WF_ERROR;
        }
        return main_set_opt(opts, o, argv[++*i]);
    }
    fprintf(stderr, "wharf: unknown option \"%s\" (see --help)\n", arg);
    return WF_ERROR;
}

static int
main_parse_args(main_opts_t *opts, int argc, char **argv, main_action_t *action)
{
    *action = MAIN_RUN;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            *action = MAIN_VERSION;
            return WF_OK;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *action = MAIN_HELP;
            return WF_OK;
        }
        if (main_parse_opt(opts, argc, argv, &i) != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

/* Reads a whole file into a malloc'd buffer.  Returns NULL on failure
 * (logged); a missing file sets *missing instead of logging. */
static char *
main_read_file(const char *path, size_t *len, bool *missing)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;

    *missing = fp == NULL && errno == ENOENT;
    if (fp == NULL) {
        if (!*missing) {
            wf_log_alert(errno, "fopen(\"%s\") failed", path);
        }
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            char *nb = cap < WF_CONF_MAX ? realloc(buf, cap + 65536) : NULL;

            if (nb == NULL) {
                wf_log_alert(0, "\"%s\" is too large or memory is short", path);
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = nb;
            cap += 65536;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);

        n += got;
        if (got == 0) {
            break;
        }
    }
    fclose(fp);
    *len = n;
    return buf;
}

static wf_conf_t *
main_load_conf(const main_opts_t *opts)
{
    char path[4096];
    wf_conf_error_t err;
    wf_conf_t *conf;
    bool missing;
    size_t len = 0;
    char *text;

    if (opts->config != NULL) {
        snprintf(path, sizeof(path), "%s", opts->config);
    } else {
        snprintf(path, sizeof(path), "%s/conf.json", opts->statedir);
    }
    text = main_read_file(path, &len, &missing);
    if (text == NULL && !(missing && opts->config == NULL)) {
        if (missing) {
            wf_log_alert(ENOENT, "config file \"%s\" not found", path);
        }
        return NULL;
    }
    conf = text != NULL ? wf_conf_load(text, len, &err)
                        : wf_conf_load("{}", 2, &err);
    free(text);
    if (conf == NULL) {
        if (err.has_location) {
            wf_log_alert(0, "\"%s\": %s %s (line %d, column %d)", path,
                         err.error, err.detail, err.json.line, err.json.column);
        } else {
            wf_log_alert(0, "\"%s\": %s %s", path, err.error, err.detail);
        }
    }
    return conf;
}

static int
main_write_pid(const char *path)
{
    char tmp[4096];
    char buf[32];
    int fd;
    int n;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        wf_log_alert(errno, "open(\"%s\") failed", tmp);
        return WF_ERROR;
    }
    n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (write(fd, buf, (size_t)n) != n || close(fd) == -1
        || rename(tmp, path) == -1) {
        wf_log_alert(errno, "writing pid file \"%s\" failed", path);
        unlink(tmp);
        return WF_ERROR;
    }
    return WF_OK;
}

/* Forks; the parent exits once the child reports through the pipe that it
 * started (status 0) or failed. */
static int
main_daemonize(int *ready_fd)
{
    int fds[2];
    pid_t pid;
    char c = 1;

    if (pipe2(fds, O_CLOEXEC) == -1) {
        wf_log_alert(errno, "pipe2() failed");
        return WF_ERROR;
    }
    pid = fork();
    if (pid == -1) {
        wf_log_alert(errno, "fork() failed");
        return WF_ERROR;
    }
    if (pid > 0) {
        close(fds[1]);
        if (read(fds[0], &c, 1) != 1) {
            c = 1;
        }
        _exit(c == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
    }
    close(fds[0]);
    setsid();
    *ready_fd = fds[1];
    return WF_OK;
}

static void
main_report_ready(int *ready_fd, bool ok)
{
    char c = ok ? 0 : 1;
    int fd;

    if (*ready_fd == -1) {
        return;
    }
    if (write(*ready_fd, &c, 1) != 1) {
        /* The parent is gone; nothing to tell. */
    }
    close(*ready_fd);
    *ready_fd = -1;
    fd = open("/dev/null", O_RDWR);
    if (ok && fd != -1) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
    }
    if (fd > STDERR_FILENO) {
        close(fd);
    }
}

static unsigned
main_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 && n < 1024 ? (unsigned)n : 1;
}

/* Waits for signals in the main thread; the I/O threads block them all.
 * Returns when a stop has been requested. */
static void
main_wait_signals(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig = sigwaitinfo(&set, NULL);

        switch (sig) {
        case SIGTERM:
        case SIGINT:
            wf_log_notice(0, "signal %d received, exiting", sig);
            wf_loops_stop(false, 0);
            return;
        case SIGQUIT:
            wf_log_notice(0, "SIGQUIT received, stopping gracefully");
            wf_loops_stop(true, WF_GRACE_MS);
            return;
        case SIGUSR1:
            wf_log_reopen();
            break;
        default:
            /* SIGHUP is reserved; EINTR retries. */
            break;
        }
    }
}

static void
main_block_signals(void)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Until the control plane runs in its own process, main plays its part
 * for the router: it opens listening sockets itself and waits for the
 * first configuration to be applied. */
typedef struct main_state {
    wf_router_t *router;
    wf_task_t apply;
    const char *text;
    size_t len;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool applied;
    bool ok;
} main_state_t;

static main_state_t main_st = {.lock = PTHREAD_MUTEX_INITIALIZER,
                               .cond = PTHREAD_COND_INITIALIZER};

static void
main_socket_open(wf_router_t *rt, const char *name, const struct sockaddr *addr,
                 socklen_t len, uint32_t cookie)
{
    wf_listener_t l = {.name = name, .addrlen = len};

    memcpy(&l.addr, addr, len);
    if (wf_listener_open(&l) != WF_OK) {
        wf_router_socket_done(rt, cookie, -1, "cannot listen (see the log)");
        return;
    }
    wf_router_socket_done(rt, cookie, l.io.fd, NULL);
}

static void
main_socket_release(wf_router_t *rt, const char *name)
{
    wf_unused(rt);
    wf_unused(name);
}

static void
main_applied(wf_router_t *rt, uint32_t stream, const char *error)
{
    wf_unused(rt);
    wf_unused(stream);
    pthread_mutex_lock(&main_st.lock);
    main_st.applied = true;
    main_st.ok = error == NULL;
    pthread_cond_signal(&main_st.cond);
    pthread_mutex_unlock(&main_st.lock);
}

static const wf_router_ops_t main_router_ops = {
    .socket_open = main_socket_open,
    .socket_release = main_socket_release,
    .applied = main_applied,
};

static void
main_on_apply(wf_task_t *task)
{
    wf_unused(task);
    wf_router_apply(main_st.router, main_st.text, main_st.len, 0);
}

static int
main_start(const main_opts_t *opts, const char *text, size_t len)
{
    unsigned threads =
        opts->threads != 0 ? opts->threads : main_default_threads();

    wf_listen_set_limits(opts->maxconn, opts->maxaccept);
    wf_h1_init();
    if (wf_loops_create(threads) != WF_OK
        || wf_tpool_start(WF_HELPER_THREADS) != WF_OK) {
        return WF_ERROR;
    }
    main_st.router = wf_router_create(&main_router_ops, wf_loop_get(0));
    if (main_st.router == NULL || wf_loops_start() != WF_OK) {
        return WF_ERROR;
    }
    main_st.text = text;
    main_st.len = len;
    main_st.apply.handler = main_on_apply;
    wf_task_post(wf_loop_get(0), &main_st.apply);
    pthread_mutex_lock(&main_st.lock);
    while (!main_st.applied) {
        pthread_cond_wait(&main_st.cond, &main_st.lock);
    }
    pthread_mutex_unlock(&main_st.lock);
    if (!main_st.ok) {
        return WF_ERROR;
    }
    wf_log_notice(0, "wharf " WF_VERSION " started (%u threads, maxconn %u)",
                  threads, wf_listen_maxconn());
    return WF_OK;
}

static void
main_stop(void)
{
    wf_loops_join();
    wf_tpool_stop();
    wf_router_destroy(main_st.router);
}

int
main(int argc, char **argv)
{
    main_opts_t opts = {.daemon = true,
                        .statedir = WF_DEFAULT_STATEDIR,
                        .control = WF_DEFAULT_CONTROL};
    main_action_t action;
    wf_conf_t *conf;
    int ready_fd = -1;
    size_t len;
    char *text;

    if (main_parse_args(&opts, argc, argv, &action) != WF_OK) {
        return EXIT_FAILURE;
    }
    if (action == MAIN_VERSION) {
        printf("wharf version: " WF_VERSION "\n");
        return EXIT_SUCCESS;
    }
    if (action == MAIN_HELP) {
        main_usage();
        return EXIT_SUCCESS;
    }
    if (wf_log_open(opts.log) != WF_OK) {
        return EXIT_FAILURE;
    }
    conf = main_load_conf(&opts);
    if (conf == NULL) {
        return EXIT_FAILURE;
    }
    text = json_dumps(conf->json, JSON_COMPACT | JSON_PRESERVE_ORDER);
    wf_conf_destroy(conf);
    if (text == NULL) {
        return EXIT_FAILURE;
    }
    len = strlen(text);
    if (opts.daemon && main_daemonize(&ready_fd) != WF_OK) {
        return EXIT_FAILURE;
    }
    if (opts.pid == NULL && opts.daemon) {
        opts.pid = WF_DEFAULT_PID;
    }
    main_block_signals();
    if ((opts.pid != NULL && main_write_pid(opts.pid) != WF_OK)
        || main_start(&opts, text, len) != WF_OK) {
        main_report_ready(&ready_fd, false);
        return EXIT_FAILURE;
    }
    main_report_ready(&ready_fd, true);
    main_wait_signals();
    main_stop();
    free(text);
    if (opts.pid != NULL) {
        unlink(opts.pid);
    }
    wf_log_notice(0, "wharf " WF_VERSION " exited");
    return EXIT_SUCCESS;
}
