/* Wharf's entry point and the main process: Unit's command line, then the
 * supervisor that forks the controller and the router, opens listening
 * sockets for the router, restarts a child that dies and owns the signals
 * (DESIGN.md section 2, docs/internals/processes.md). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apps/app_proto.h"
#include "control/cert.h"
#include "control/conf.h"
#include "control/conf_tls.h"
#include "core/common.h"
#include "core/listen.h"
#include "core/log.h"
#include "process/control_http.h"
#include "process/cred.h"
#include "process/main_apps.h"
#include "process/port.h"
#include "process/port_msg_types.h"
#include "process/process.h"
#include "process/statedir.h"

#define WF_DEFAULT_STATEDIR "/usr/local/var/lib/wharf"
#define WF_DEFAULT_PID      "/usr/local/var/run/wharf/wharf.pid"
#define WF_DEFAULT_CONTROL  "unix:/usr/local/var/run/wharf/control.wharf.sock"
#define WF_DEFAULT_LOG      "/usr/local/var/log/wharf/wharf.log"
#ifndef WF_MODULESDIR
#define WF_MODULESDIR "/usr/local/lib/wharf/modules" /* meson sets it */
#endif
#define MAIN_STOP_MS      15000    /* children get this long to exit */
#define MAIN_RESTART_MS   100      /* at least this between two starts */
#define MAIN_MAX_SOCKETS  256      /* listening sockets kept for the router */
#define MAIN_DEFAULT_USER "nobody" /* Unit's default --user */

typedef wf_opts_t main_opts_t;

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

/* A daemon lets go of the caller's terminal or pipes: a caller that waits
 * for its output (out=$(wharf ...)) must not wait for Wharf to exit.  The
 * log is a file in daemon mode. */
static void
main_detach_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (fd == -1) {
        return;
    }
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
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
    main_detach_stdio();
    return WF_OK;
}

static void
main_report_ready(int *ready_fd, bool ok)
{
    char c = ok ? 0 : 1;

    if (*ready_fd == -1) {
        return;
    }
    if (write(*ready_fd, &c, 1) != 1) {
        /* The parent is gone; nothing to tell. */
    }
    close(*ready_fd);
    *ready_fd = -1;
}

/* A child process and main's port to it. */
typedef struct main_child {
    wf_port_owner_t owner;
    wf_port_role_t role;
    const char *name;
    pid_t pid;        /* 0 when not running */
    wf_port_t *port;  /* NULL when closed */
    int fd;           /* the port's socket, for poll() */
    uint64_t started; /* ms, monotonic */
} main_child_t;

/* A listening socket main opened for the router; kept so that a restarted
 * router gets the same socket (with its backlog) back. */
typedef struct main_socket {
    char *name;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int fd;
} main_socket_t;

typedef struct main_state {
    wf_opts_t *opts;
    main_child_t ctrl;
    main_child_t router;
    int sigfd;
    bool stopping;
    bool graceful;
    main_socket_t sockets[MAIN_MAX_SOCKETS];
    unsigned nsockets;
    json_t *modules;       /* WF_MSG_MODULES's list, found at start */
    char *modules_text;    /* its JSON text, sent to every new child */
    wf_listener_t control; /* the control socket, kept for controllers */
    wf_cred_t cred;        /* --user/--group when root (opts->cred) */
} main_state_t;

static main_state_t mst;

static void main_on_socket_open(wf_port_t *p, wf_port_msg_t *msg);
static void main_on_socket_release(wf_port_t *p, wf_port_msg_t *msg);
static void main_on_access_log_open(wf_port_t *p, wf_port_msg_t *msg);
static void main_on_conf_store(wf_port_t *p, wf_port_msg_t *msg);
static void main_on_cert_store(wf_port_t *p, wf_port_msg_t *msg);
static void main_on_cert_delete(wf_port_t *p, wf_port_msg_t *msg);
static void main_on_acme_store(wf_port_t *p, wf_port_msg_t *msg);

/* Sorted by type; types main only sends have the reply handler. */
static const wf_port_type_t main_router_types[] = {
    {WF_MSG_FAIL, "fail", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_SOCKET_OPEN, "socket_open", main_on_socket_open,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_SOCKET, "socket", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_MAIN),
     1},
    {WF_MSG_SOCKET_RELEASE, "socket_release", main_on_socket_release,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_PEER_PORT, "peer_port", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
    {WF_MSG_APP_START, "app_start", wf_main_app_on_start,
     WF_PORT_FROM(WF_PORT_ROUTER), WF_APP_MAX_FDS},
    {WF_MSG_APP_PID, "app_pid", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_APP_EXIT, "app_exit", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_APP_KILL, "app_kill", wf_main_app_on_kill,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_MODULES, "modules", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_ACCESS_LOG_OPEN, "access_log_open", main_on_access_log_open,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_ACCESS_LOG, "access_log", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
    {WF_MSG_LOG_REOPEN, "log_reopen", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
};

static const wf_port_type_t main_ctrl_types[] = {
    {WF_MSG_OK, "ok", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_FAIL, "fail", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_PEER_PORT, "peer_port", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
    {WF_MSG_MODULES, "modules", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_CONF_STORE, "conf_store", main_on_conf_store,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_LOG_REOPEN, "log_reopen", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
    {WF_MSG_CERT_STORE, "cert_store", main_on_cert_store,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_CERT_DELETE, "cert_delete", main_on_cert_delete,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_ACME_STORE, "acme_store", main_on_acme_store,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
};

static uint64_t
main_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static main_socket_t *
main_socket_find(const struct sockaddr *addr)
{
    for (unsigned i = 0; i < mst.nsockets; i++) {
        if (wf_sockaddr_eq((struct sockaddr *)&mst.sockets[i].addr, addr)) {
            return &mst.sockets[i];
        }
    }
    return NULL;
}

/* Opens a listening socket, or finds the one opened before.  Returns the
 * socket, or NULL with why filled. */
static main_socket_t *
main_socket_get(const char *name, char *why, size_t whylen)
{
    wf_listener_t l = {.name = name};
    main_socket_t *s;

    if (!wf_conf_addr_parse(name, &l.addr, &l.addrlen)) {
        snprintf(why, whylen, "invalid listener address \"%s\"", name);
        return NULL;
    }
    s = main_socket_find((struct sockaddr *)&l.addr);
    if (s != NULL) {
        return s;
    }
    if (mst.nsockets == MAIN_MAX_SOCKETS) {
        snprintf(why, whylen, "too many listeners");
        return NULL;
    }
    errno = 0;
    if (wf_listener_open(&l) != WF_OK) {
        snprintf(why, whylen, "cannot listen on \"%s\" (%d: %s)", name, errno,
                 strerror(errno));
        return NULL;
    }
    s = &mst.sockets[mst.nsockets];
    s->name = wf_xstrdup(name);
    s->addr = l.addr;
    s->addrlen = l.addrlen;
    s->fd = l.io.fd;
    if (s->name == NULL) {
        close(s->fd);
        return NULL;
    }
    mst.nsockets++;
    return s;
}

static void
main_on_socket_open(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *name = (const char *)wf_port_msg_flatten(msg);
    char why[256] = "out of memory";
    main_socket_t *s =
        name != NULL ? main_socket_get(name, why, sizeof(why)) : NULL;

    if (s == NULL) {
        wf_log_error(0, "%s", why);
        wf_port_reply(p, msg, WF_MSG_FAIL, why, strlen(why));
        return;
    }
    wf_port_send(p, WF_MSG_SOCKET, msg->stream, NULL, 0, &s->fd, 1);
}

static void
main_socket_close(main_socket_t *s)
{
    if (s->addr.ss_family == AF_UNIX) {
        const char *path = ((struct sockaddr_un *)&s->addr)->sun_path;

        if (path[0] != '\0') {
            unlink(path);
        }
    }
    close(s->fd);
    free(s->name);
    *s = mst.sockets[--mst.nsockets];
}

static void
main_on_socket_release(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *name = (const char *)wf_port_msg_flatten(msg);
    struct sockaddr_storage ss;
    socklen_t len;
    main_socket_t *s;

    wf_unused(p);
    if (name == NULL || !wf_conf_addr_parse(name, &ss, &len)) {
        return;
    }
    s = main_socket_find((struct sockaddr *)&ss);
    if (s != NULL) {
        main_socket_close(s);
    }
}

/* The router's access log files are opened here, as root when main is
 * (Unit's nxt_main_port_access_log_handler()): the router may not be
 * allowed to. */
static void
main_on_access_log_open(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *path = (const char *)wf_port_msg_flatten(msg);
    char why[300];
    int fd;

    if (path == NULL || path[0] == '\0' || strlen(path) != msg->size) {
        wf_port_reply(p, msg, WF_MSG_FAIL, "Invalid access log path.", 24);
        return;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        int n = snprintf(why, sizeof(why),
                         "Failed to open the access log \"%.200s\": %s.", path,
                         strerror(errno));

        wf_log_error(errno, "open(\"%s\") failed", path);
        wf_port_reply(p, msg, WF_MSG_FAIL, why, (size_t)n);
        return;
    }
    wf_port_send(p, WF_MSG_ACCESS_LOG, msg->stream, NULL, 0, &fd, 1);
    close(fd); /* the port sent a duplicate */
}

/* The controller's config, stored as STATEDIR/conf.json (Unit's
 * nxt_main_port_conf_store_handler()), with the atomic write of
 * statedir.c: the controller needs no right on the state directory. */
static void
main_on_conf_store(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);
    static const char fail[] = "Failed to store the configuration.";

    if (text == NULL
        || wf_statedir_store_text(mst.opts->statedir, text, msg->size)
               != WF_OK) {
        wf_port_reply(p, msg, WF_MSG_FAIL, fail, sizeof(fail) - 1);
        return;
    }
    wf_port_reply(p, msg, WF_MSG_OK, NULL, 0);
}

/* The controller's certificate, stored as STATEDIR/certs/NAME (Unit's
 * nxt_cert_store_get_handler() opens the file for the controller).  The
 * name is checked again: main trusts no path from a child. */
static void
main_on_cert_store(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);
    const char *nul = text != NULL ? memchr(text, '\0', msg->size) : NULL;
    static const char fail[] = "Failed to store certificate.";
    size_t n = nul != NULL ? (size_t)(nul - text) : 0;

    if (nul == NULL || !wf_cert_name_is_valid(text, n)
        || wf_statedir_store_cert(mst.opts->statedir, text, nul + 1,
                                  msg->size - n - 1)
               != WF_OK) {
        wf_port_reply(p, msg, WF_MSG_FAIL, fail, sizeof(fail) - 1);
        return;
    }
    wf_port_reply(p, msg, WF_MSG_OK, NULL, 0);
}

static void
main_on_cert_delete(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *name = (const char *)wf_port_msg_flatten(msg);
    static const char fail[] = "Failed to delete certificate.";

    /* An ACME entry's state goes with its certificate. */
    if (name == NULL || !wf_cert_name_is_valid(name, msg->size)
        || wf_statedir_delete_acme(mst.opts->statedir, name) != WF_OK
        || wf_statedir_delete_cert(mst.opts->statedir, name) != WF_OK) {
        wf_port_reply(p, msg, WF_MSG_FAIL, fail, sizeof(fail) - 1);
        return;
    }
    wf_port_reply(p, msg, WF_MSG_OK, NULL, 0);
}

/* An ACME entry (docs/internals/acme.md): NAME, NUL, the state, then
 * optionally NUL and the key and chain.  The state goes first: a crash
 * between the two leaves the new state with the old certificate, which
 * the next attempt replaces. */
static void
main_on_acme_store(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);
    const char *nul = text != NULL ? memchr(text, '\0', msg->size) : NULL;
    const char *state = nul != NULL ? nul + 1 : NULL;
    const char *end = text != NULL ? text + msg->size : NULL;
    const char *pem =
        state != NULL ? memchr(state, '\0', (size_t)(end - state)) : NULL;
    static const char fail[] = "Failed to store certificate.";
    const char *st = mst.opts->statedir;
    size_t n = nul != NULL ? (size_t)(nul - text) : 0;

    if (nul == NULL || !wf_cert_name_is_valid(text, n)
        || wf_statedir_store_acme(st, text, state,
                                  (size_t)((pem != NULL ? pem : end) - state))
               != WF_OK
        || (pem != NULL
            && wf_statedir_store_cert(st, text, pem + 1,
                                      (size_t)(end - pem - 1))
                   != WF_OK)) {
        wf_port_reply(p, msg, WF_MSG_FAIL, fail, sizeof(fail) - 1);
        return;
    }
    wf_port_reply(p, msg, WF_MSG_OK, NULL, 0);
}

static void
main_on_port_close(wf_port_t *p)
{
    main_child_t *child =
        wf_container_of(wf_port_get_owner(p), main_child_t, owner);

    /* The child is exiting; SIGCHLD does the rest.  The port goes now:
     * nothing may send on it. */
    if (child->role == WF_PORT_ROUTER) {
        wf_main_apps_router_lost();
    }
    child->port = NULL;
    child->fd = -1;
    wf_port_destroy(p);
}

static int
main_child_port(main_child_t *child, int fd)
{
    const wf_port_type_t *types =
        child->role == WF_PORT_ROUTER ? main_router_types : main_ctrl_types;
    size_t n = child->role == WF_PORT_ROUTER ? wf_nitems(main_router_types)
                                             : wf_nitems(main_ctrl_types);

    child->owner.on_close = main_on_port_close;
    child->port =
        wf_port_create(fd, WF_PORT_MAIN, child->role, types, n, &child->owner);
    if (child->port == NULL) {
        close(fd);
        child->fd = -1;
        return WF_ERROR;
    }
    child->fd = fd;
    return WF_OK;
}

/* In the new child: close every descriptor but its two ports, the log
 * and keep3 (the controller's control socket; -1: none), so that no other
 * process keeps a port or a socket alive. */
static void
main_child_cleanup(int keep1, int keep2, int keep3)
{
    int log_fd = wf_log_fd();
    int max = (int)sysconf(_SC_OPEN_MAX);

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (int fd = STDERR_FILENO + 1; fd < max && fd < 65536; fd++) {
        if (fd != keep1 && fd != keep2 && fd != keep3 && fd != log_fd) {
            close(fd);
        }
    }
}

/* Forks child with its ends of its port to main (child_fd) and of the
 * controller-router port (peer_fd).  Both are closed in main. */
static int
main_child_fork(main_child_t *child, int main_fd, int child_fd, int peer_fd)
{
    pid_t pid;

    if (main_child_port(child, main_fd) != WF_OK) {
        goto fail;
    }
    child->started = main_now_ms();
    pid = fork();
    if (pid == -1) {
        wf_log_alert(errno, "fork() failed");
        goto fail;
    }
    if (pid == 0) {
        if (child->role == WF_PORT_ROUTER) {
            main_child_cleanup(child_fd, peer_fd, -1);
            exit(wf_router_main(mst.opts, child_fd, peer_fd));
        }
        main_child_cleanup(child_fd, peer_fd, mst.control.io.fd);
        exit(
            wf_controller_main(mst.opts, child_fd, peer_fd, mst.control.io.fd));
    }
    child->pid = pid;
    close(child_fd);
    close(peer_fd);
    if (child->role == WF_PORT_ROUTER) {
        wf_main_apps_router_set(child->port);
    }
    wf_port_send(child->port, WF_MSG_MODULES, 0, mst.modules_text,
                 strlen(mst.modules_text), NULL, 0);
    return WF_OK;

fail:
    close(child_fd);
    close(peer_fd);
    return WF_ERROR;
}

/* Starts child; a new controller-router port is made, and the other child,
 * when running, gets its end through WF_MSG_PEER_PORT. */
static int
main_child_start(main_child_t *child, main_child_t *other)
{
    int mainp[2];
    int peer[2];
    int other_end;
    int child_end;

    if (wf_port_pair(mainp) != WF_OK) {
        return WF_ERROR;
    }
    if (wf_port_pair(peer) != WF_OK) {
        close(mainp[0]);
        close(mainp[1]);
        return WF_ERROR;
    }
    /* peer[0] is the controller's end, peer[1] the router's. */
    child_end = child->role == WF_PORT_ROUTER ? peer[1] : peer[0];
    other_end = child->role == WF_PORT_ROUTER ? peer[0] : peer[1];
    if (other->port != NULL) {
        wf_port_send(other->port, WF_MSG_PEER_PORT, 0, NULL, 0, &other_end, 1);
        wf_port_flush(other->port);
    }
    close(other_end);
    return main_child_fork(child, mainp[0], mainp[1], child_end);
}

/* Both children at start; they get each other's port directly. */
static int
main_children_start(void)
{
    int ctrlp[2];
    int routp[2];
    int peer[2];

    if (wf_port_pair(ctrlp) != WF_OK || wf_port_pair(routp) != WF_OK
        || wf_port_pair(peer) != WF_OK) {
        return WF_ERROR;
    }
    if (main_child_fork(&mst.ctrl, ctrlp[0], ctrlp[1], peer[0]) != WF_OK) {
        return WF_ERROR;
    }
    return main_child_fork(&mst.router, routp[0], routp[1], peer[1]);
}

static void
main_signal_children(int sig)
{
    if (mst.ctrl.pid > 0) {
        kill(mst.ctrl.pid, sig);
    }
    if (mst.router.pid > 0) {
        kill(mst.router.pid, sig);
    }
}

static void
main_child_exited(main_child_t *child, int status)
{
    if (WIFSIGNALED(status)) {
        wf_log(mst.stopping ? WF_LOG_INFO : WF_LOG_ALERT, 0,
               "process %d exited on signal %d", (int)child->pid,
               WTERMSIG(status));
    } else {
        wf_log(mst.stopping || WEXITSTATUS(status) == 0 ? WF_LOG_INFO
                                                        : WF_LOG_ALERT,
               0, "process %d exited with code %d", (int)child->pid,
               WEXITSTATUS(status));
    }
    child->pid = 0;
    if (child->role == WF_PORT_ROUTER) {
        /* Its app processes would be orphans: kill them before a new
         * router starts (DESIGN.md section 2). */
        wf_main_apps_router_lost();
    }
    if (child->port != NULL) {
        wf_port_destroy(child->port);
        child->port = NULL;
        child->fd = -1;
    }
}

/* Restarts the children that died, no faster than MAIN_RESTART_MS. */
static void
main_restart(void)
{
    main_child_t *kids[2] = {&mst.router, &mst.ctrl};

    for (int i = 0; i < 2 && !mst.stopping; i++) {
        main_child_t *child = kids[i];
        main_child_t *other = kids[1 - i];
        uint64_t since = main_now_ms() - child->started;

        if (child->pid != 0) {
            continue;
        }
        if (since < MAIN_RESTART_MS) {
            usleep((useconds_t)(MAIN_RESTART_MS - since) * 1000);
        }
        wf_log_notice(0, "restarting the %s", child->name);
        /* --config seeds the first start only; later the controller
         * resumes from what it stored in STATEDIR. */
        free((char *)mst.opts->config);
        mst.opts->config = NULL;
        if (main_child_start(child, other) != WF_OK) {
            wf_log_alert(0, "cannot restart the %s", child->name);
        }
    }
}

static void
main_reap(void)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);

        if (pid <= 0) {
            return;
        }
        if (pid == mst.ctrl.pid) {
            main_child_exited(&mst.ctrl, status);
        } else if (pid == mst.router.pid) {
            main_child_exited(&mst.router, status);
        } else {
            wf_main_apps_reap(pid, status);
        }
    }
}

/* Stops the children; the listening sockets close at once, so that no
 * new client waits in a backlog nobody will serve. */
static void
main_stop(bool graceful)
{
    mst.stopping = true;
    mst.graceful = graceful;
    while (mst.nsockets > 0) {
        main_socket_close(&mst.sockets[0]);
    }
    main_signal_children(graceful ? SIGQUIT : SIGTERM);
    wf_main_apps_stop(graceful ? SIGQUIT : SIGTERM);
}

/* USR1: main reopens the error log and hands it to the children, which
 * may not be allowed to open it (Unit's NXT_PORT_MSG_CHANGE_FILE); the
 * router then asks for its access logs anew. */
static void
main_reopen_logs(void)
{
    main_child_t *kids[2] = {&mst.ctrl, &mst.router};
    int fd = wf_log_fd();
    unsigned nfds = fd != STDERR_FILENO ? 1 : 0;

    wf_log_notice(0, "signal %d (SIGUSR1) received, log files rotation",
                  SIGUSR1);
    wf_log_reopen();
    for (int i = 0; i < 2; i++) {
        if (kids[i]->port != NULL) {
            wf_port_send(kids[i]->port, WF_MSG_LOG_REOPEN, 0, NULL, 0, &fd,
                         nfds);
        }
    }
}

static void
main_on_signal(void)
{
    struct signalfd_siginfo si;

    while (read(mst.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGCHLD:
            main_reap();
            main_restart();
            break;
        case SIGQUIT:
            wf_log_notice(0, "SIGQUIT received, stopping gracefully");
            main_stop(true);
            break;
        case SIGTERM:
        case SIGINT:
            wf_log_notice(0, "signal %u received, exiting",
                          (unsigned)si.ssi_signo);
            main_stop(false);
            break;
        case SIGUSR1:
            main_reopen_logs();
            break;
        default:
            break;
        }
    }
}

static void
main_port_io(main_child_t *child, short revents)
{
    if (child->port == NULL) {
        return;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        while (child->port != NULL
               && wf_port_on_readable(child->port) == WF_OK) {
        }
    }
    if (child->port != NULL) {
        wf_port_flush(child->port);
    }
}

/* main's loop: signals and the two ports, until every child (app
 * processes too) is gone after a stop. */
static void
main_loop(void)
{
    uint64_t deadline = 0;

    while (!mst.stopping || mst.ctrl.pid != 0 || mst.router.pid != 0
           || wf_main_apps_count() > 0) {
        struct pollfd pfd[4] = {
            {mst.sigfd, POLLIN, 0},
            {mst.ctrl.fd, POLLIN, 0},
            {mst.router.fd, POLLIN, 0},
            {wf_main_apps_log_fd(), POLLIN, 0}, /* what apps log */
        };

        if (mst.stopping && deadline == 0) {
            deadline = main_now_ms() + MAIN_STOP_MS;
        }
        if (mst.stopping && main_now_ms() >= deadline) {
            wf_log_alert(0, "children did not stop in time, killing them");
            main_signal_children(SIGKILL);
            wf_main_apps_stop(SIGKILL);
            deadline = main_now_ms() + MAIN_STOP_MS;
        }
        if (poll(pfd, 4, 1000) < 0 && errno != EINTR) {
            wf_log_alert(errno, "poll() failed");
            return;
        }
        if (pfd[3].revents != 0) {
            wf_main_apps_log_drain(); /* before a USR1 reopens the log */
        }
        if (pfd[0].revents != 0) {
            main_on_signal();
        }
        /* The router's port first: what it sent before it told the
         * controller a change is applied (a socket released) is done
         * before the controller's store of that change, and so before
         * the client hears 200. */
        main_port_io(&mst.router, pfd[2].revents);
        main_port_io(&mst.ctrl, pfd[1].revents);
    }
    wf_main_apps_log_drain(); /* the last lines of the last apps */
}

static int
main_signals_open(void)
{
    sigset_t set;

    wf_proc_signals_block();
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    mst.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (mst.sigfd == -1) {
        wf_log_alert(errno, "signalfd() failed");
        return WF_ERROR;
    }
    return WF_OK;
}

static void
main_version(void)
{
    printf("wharf version: " WF_VERSION "\n"
           "configured as ./configure --pcre2 --threads\n");
}

/* The title shows the command line, as Unit's main process does. */
static void
main_set_title(const wf_opts_t *opts, int argc, char **argv)
{
    char cmd[2048];
    size_t n = 0;

    cmd[0] = '\0';
    for (int i = 0; i < argc && n < sizeof(cmd) - 1; i++) {
        int w = snprintf(cmd + n, sizeof(cmd) - n, "%s%s", i > 0 ? " " : "",
                         argv[i]);

        n += w > 0 ? (size_t)w : 0;
    }
    if (wf_proc_is_unit()) {
        wf_proc_title_set(opts->argv, "unit: main v" WF_UNIT_VERSION " [%s]",
                          cmd);
        return;
    }
    wf_proc_title_set(opts->argv, "wharf: main v" WF_VERSION " [%s]", cmd);
}

/* The option strings of opts, to copy or free them together. */
static void
main_opts_strings(main_opts_t *opts, const char **strs[12])
{
    const char **all[12] = {
        &opts->control,       &opts->control_mode, &opts->control_user,
        &opts->control_group, &opts->statedir,     &opts->log,
        &opts->pid,           &opts->user,         &opts->group,
        &opts->tmpdir,        &opts->modulesdir,   &opts->config,
    };

    memcpy(strs, all, sizeof(all));
}

/* The option strings point into argv, which the process title will
 * overwrite: copy them first. */
static void
main_opts_dup(main_opts_t *opts)
{
    const char **strs[12];

    main_opts_strings(opts, strs);
    for (size_t i = 0; i < wf_nitems(strs); i++) {
        if (*strs[i] != NULL) {
            *strs[i] = wf_xstrdup(*strs[i]);
        }
    }
}

static void
main_opts_free(main_opts_t *opts)
{
    const char **strs[12];

    main_opts_strings(opts, strs);
    for (size_t i = 0; i < wf_nitems(strs); i++) {
        free((char *)*strs[i]);
        *strs[i] = NULL;
    }
}

/* --config FILE is checked here, before any child starts: its listeners
 * may name certificates of STATEDIR/certs. */
static json_t *
main_check_config(const main_opts_t *opts)
{
    char dir[4096];
    json_t *conf;

    snprintf(dir, sizeof(dir), "%s/certs", opts->statedir);
    wf_cert_store_load(dir);
    wf_conf_tls_pems_set(wf_cert_store_pems_all());
    conf = wf_statedir_load_conf(opts->config, true);
    wf_conf_tls_pems_set(NULL);
    wf_cert_store_clear();
    return conf;
}

static int
main_prepare(main_opts_t *opts)
{
    if (opts->config != NULL) {
        json_t *conf = main_check_config(opts);

        if (conf == NULL) {
            return WF_ERROR;
        }
        json_decref(conf);
    }
    if (opts->pid == NULL && opts->daemon) {
        opts->pid = WF_DEFAULT_PID;
    }
    if (opts->pid != NULL
        && (wf_mkdir_parents(opts->pid) != WF_OK
            || main_write_pid(opts->pid) != WF_OK)) {
        return WF_ERROR;
    }
    return WF_OK;
}

/* Discovers the language modules (before any child starts, as Unit), so
 * that every child gets the list in its first message. */
static int
main_modules_load(const main_opts_t *opts)
{
    const char *dir =
        opts->modulesdir != NULL ? opts->modulesdir : WF_MODULESDIR;
    /* App processes may chdir() before they load a module: absolute. */
    char *abs = realpath(dir, NULL);

    mst.modules = wf_main_modules_discover(abs != NULL ? abs : dir);
    free(abs);
    if (mst.modules == NULL) {
        return WF_ERROR;
    }
    mst.modules_text = json_dumps(mst.modules, JSON_COMPACT);
    if (mst.modules_text == NULL) {
        wf_log_alert(ENOMEM, "no memory for the module list");
        return WF_ERROR;
    }
    return wf_main_apps_init(opts, mst.modules);
}

/* What the controller and the router need root for is done by main: the
 * control socket (here), listening sockets, access log files and the
 * state directory (on their request); they then run as --user/--group,
 * as Unit's do.  Unprivileged, everyone stays as they are. */
static int
main_privileges_prepare(main_opts_t *opts)
{
    char why[512];

    if (wf_ctl_http_open(&mst.control, opts) != WF_OK) {
        return WF_ERROR;
    }
    wf_statedir_store_version(opts->statedir);
    if (geteuid() != 0) {
        /* Unit's warning, word for word but the name. */
        wf_log_warn(0,
                    "%s is running unprivileged, then it cannot use "
                    "arbitrary user and group.",
                    wf_proc_is_unit() ? "Unit" : "Wharf");
        return WF_OK;
    }
    if (wf_cred_get(opts->user != NULL ? opts->user : MAIN_DEFAULT_USER,
                    opts->group, &mst.cred, why, sizeof(why))
        != WF_OK) {
        wf_log_alert(0, "%s", why);
        return WF_ERROR;
    }
    opts->cred = &mst.cred;
    return WF_OK;
}

static void
main_cleanup(main_opts_t *opts)
{
    while (mst.nsockets > 0) {
        main_socket_close(&mst.sockets[0]);
    }
    wf_ctl_http_close(&mst.control, opts);
    opts->cred = NULL;
    wf_cred_fini(&mst.cred);
    close(mst.sigfd);
    if (opts->pid != NULL) {
        unlink(opts->pid);
    }
    free(mst.modules_text);
    mst.modules_text = NULL;
    json_decref(mst.modules);
    mst.modules = NULL;
}

int
main(int argc, char **argv)
{
    main_opts_t opts = {.daemon = true,
                        .statedir = WF_DEFAULT_STATEDIR,
                        .control = WF_DEFAULT_CONTROL,
                        .argv = argv};
    main_action_t action;
    int ready_fd = -1;

    if (main_parse_args(&opts, argc, argv, &action) != WF_OK) {
        return EXIT_FAILURE;
    }
    if (action != MAIN_RUN) {
        action == MAIN_VERSION ? main_version() : main_usage();
        return EXIT_SUCCESS;
    }
    if (opts.daemon && opts.log == NULL) {
        opts.log = WF_DEFAULT_LOG; /* stderr goes away with the terminal */
    }
    main_opts_dup(&opts);
    wf_proc_title_init(argv);
    if ((opts.log != NULL && wf_mkdir_parents(opts.log) != WF_OK)
        || wf_log_open(opts.log) != WF_OK) {
        return EXIT_FAILURE;
    }
    if ((opts.daemon && main_daemonize(&ready_fd) != WF_OK)
        || main_prepare(&opts) != WF_OK || main_signals_open() != WF_OK) {
        main_report_ready(&ready_fd, false);
        return EXIT_FAILURE;
    }
    mst.opts = &opts;
    mst.ctrl = (main_child_t){
        .role = WF_PORT_CONTROLLER, .name = "controller", .fd = -1};
    mst.router =
        (main_child_t){.role = WF_PORT_ROUTER, .name = "router", .fd = -1};
    mst.control.io.fd = -1;
    if (main_modules_load(&opts) != WF_OK
        || main_privileges_prepare(&opts) != WF_OK) {
        wf_ctl_http_close(&mst.control, &opts); /* no stale socket file */
        main_report_ready(&ready_fd, false);
        return EXIT_FAILURE;
    }
    wf_log_info("wharf " WF_VERSION " started");
    if (main_children_start() != WF_OK) {
        wf_ctl_http_close(&mst.control, &opts);
        main_report_ready(&ready_fd, false);
        return EXIT_FAILURE;
    }
    main_set_title(&opts, argc, argv);
    main_report_ready(&ready_fd, true);
    main_loop();
    main_cleanup(&opts);
    wf_log_info("wharf " WF_VERSION " exited");
    main_opts_free(&opts);
    return EXIT_SUCCESS;
}
