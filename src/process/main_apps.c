/* App processes, main's side: forked on the router's WF_MSG_APP_START with
 * the app's user, group, environment, working directory and stdout/stderr
 * (Unit's order), reaped on SIGCHLD with WF_MSG_APP_EXIT to the router
 * that started them, killed with their router.  App processes are
 * children of main, so nothing outlives main (docs/internals/processes.md,
 * "App processes"). */
#include "process/main_apps.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apps/app_main.h"
#include "apps/app_proto.h"
#include "control/app_type.h"
#include "core/common.h"
#include "core/log.h"
#include "process/cred.h"
#include "process/port_msg_types.h"

_Static_assert(WF_APP_MAX_FDS <= WF_PORT_MAX_FDS,
               "an app process's sockets travel in one message");

#define APPS_DEFAULT_USER  "nobody"      /* Unit's default --user */
#define APPS_WHY           512           /* a WF_MSG_FAIL text */
#define APPS_LOG_PIPE_SIZE (1024 * 1024) /* bytes; best effort */

/* Who an app process runs as.  Resolved in main, so that a bad name fails
 * the start with Unit's text instead of a silent exit. */
typedef struct apps_cred {
    bool apply;   /* main is root: set these in the child */
    wf_cred_t id; /* owned */
} apps_cred_t;

/* One app process not yet reaped. */
typedef struct apps_proc {
    pid_t pid;
    unsigned gen; /* the router generation that started it */
    bool killed;  /* we sent SIGKILL: its signal exit is expected */
    char *name;   /* owned */
} apps_proc_t;

/* What one WF_MSG_APP_START asks for; borrows from the parsed JSON. */
typedef struct apps_req {
    json_t *root; /* owned by the handler */
    const char *name;
    const json_t *conf;
    unsigned slots;
    unsigned router_threads;
    const char *module_file;
} apps_req_t;

static struct {
    const wf_opts_t *opts;
    const json_t *modules; /* borrowed */
    bool privileged;       /* euid 0: creds are applied */
    const char *user;      /* --user, or "nobody" */
    const char *group;     /* --group, or NULL: the user's primary group */
    wf_port_t *router;     /* the current router's port; NULL when gone */
    unsigned gen;          /* bumped at each router start */
    bool stopping;
    pid_t main_pid;
    int log_pipe[2]; /* the apps' error log and stderr; 0 (never the pipe:
                        fd 0 is stdin or /dev/null) or -1: none */
    apps_proc_t *procs;
    unsigned nprocs;
    unsigned cap;
} apps;

/* Fills c for user and group (NULL: the user's primary group). */
static int
apps_cred_get(const char *user, const char *group, apps_cred_t *c, char *why,
              size_t whylen)
{
    c->apply = true;
    return wf_cred_get(user, group, &c->id, why, whylen);
}

/* The app's user and group as Unit picks them: the app's own, else
 * --user/--group.  An app that names a user but no group gets that
 * user's primary group.  Unprivileged, main can only run apps as itself:
 * naming another user or group fails as in Unit. */
static int
apps_cred_resolve(const apps_req_t *rq, apps_cred_t *c, char *why,
                  size_t whylen)
{
    const char *user = json_string_value(json_object_get(rq->conf, "user"));
    const char *group = json_string_value(json_object_get(rq->conf, "group"));

    if (!apps.privileged) {
        *c = (apps_cred_t){.apply = false};
        if (user != NULL && strcmp(user, apps.user) != 0) {
            snprintf(why, whylen,
                     "cannot set user \"%s\" for app \"%s\": missing "
                     "capabilities",
                     user, rq->name);
            return WF_ERROR;
        }
        if (group != NULL && group[0] != '\0'
            && (apps.group == NULL || strcmp(group, apps.group) != 0)) {
            snprintf(why, whylen,
                     "cannot set group \"%s\" for app \"%s\": missing "
                     "capabilities",
                     group, rq->name);
            return WF_ERROR;
        }
        return WF_OK;
    }
    if (group == NULL && user == NULL) {
        group = apps.group;
    }
    return apps_cred_get(user != NULL ? user : apps.user, group, c, why,
                         whylen);
}

/* App processes write their error log and their stderr into a pipe that
 * main copies into its own log: after USR1 main reopens the log, and what
 * apps write goes to the new file, as on Unit (which sends the new fd to
 * every process).  An app running as another user could not reopen a
 * root's log itself.  Without the pipe apps share main's log file
 * description, as before. */
static void
apps_log_pipe_open(void)
{
    if (apps.log_pipe[0] > 0 || wf_log_fd() < 0) {
        return;
    }
    if (pipe2(apps.log_pipe, O_CLOEXEC) == -1) {
        wf_log_warn(errno, "pipe2() failed; app processes keep the log "
                           "file they started with");
        apps.log_pipe[0] = apps.log_pipe[1] = -1;
        return;
    }
    fcntl(apps.log_pipe[0], F_SETFL, O_NONBLOCK);
    /* Room for bursts (a traceback per worker) while main is busy. */
    (void)fcntl(apps.log_pipe[1], F_SETPIPE_SZ, APPS_LOG_PIPE_SIZE);
}

int
wf_main_apps_log_fd(void)
{
    return apps.log_pipe[0] > 0 ? apps.log_pipe[0] : -1;
}

void
wf_main_apps_log_drain(void)
{
    char buf[16384];
    ssize_t n;

    if (apps.log_pipe[0] <= 0) {
        return;
    }
    /* Writes of up to PIPE_BUF bytes (every log line) come out whole. */
    while ((n = read(apps.log_pipe[0], buf, sizeof(buf))) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(wf_log_fd(), buf + off, (size_t)(n - off));

            if (w <= 0) {
                break; /* the log is gone: nowhere to say so */
            }
            off += w;
        }
    }
}

/* In the child: the log fd and stderr (unless "stderr" names a file,
 * applied after this) become the pipe's write end. */
static void
apps_child_log(void)
{
    int w = apps.log_pipe[1];

    if (w <= 0) {
        return;
    }
    if (wf_log_fd() != STDERR_FILENO) {
        dup2(w, wf_log_fd());
    }
    dup2(w, STDERR_FILENO);
}

int
wf_main_apps_init(const wf_opts_t *opts, const json_t *modules)
{
    apps_cred_t c;
    char why[APPS_WHY];

    apps.opts = opts;
    apps.modules = modules;
    apps_log_pipe_open();
    apps.privileged = geteuid() == 0;
    apps.main_pid = getpid();
    apps.user = opts->user != NULL ? opts->user : APPS_DEFAULT_USER;
    apps.group = opts->group;
    if (!apps.privileged) {
        return WF_OK;
    }
    if (apps_cred_get(apps.user, apps.group, &c, why, sizeof(why)) != WF_OK) {
        wf_log_alert(0, "%s", why);
        return WF_ERROR;
    }
    wf_cred_fini(&c.id);
    return WF_OK;
}

/* Parses WF_MSG_APP_START's payload (port_msg_types.h). */
static int
apps_req_parse(wf_port_msg_t *msg, apps_req_t *rq, char *why, size_t whylen)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);
    json_int_t slots, threads;
    const char *type;
    int idx;

    rq->root = text != NULL ? json_loads(text, 0, NULL) : NULL;
    rq->name = json_string_value(json_object_get(rq->root, "name"));
    rq->conf = json_object_get(rq->root, "conf");
    slots = json_integer_value(json_object_get(rq->root, "slots"));
    threads = json_integer_value(json_object_get(rq->root, "router_threads"));
    type = json_string_value(json_object_get(rq->conf, "type"));
    if (rq->name == NULL || !json_is_object(rq->conf) || type == NULL
        || slots < 1 || threads < 1 || slots > WF_APP_MAX_FDS
        || threads > WF_APP_MAX_FDS || slots * threads > WF_APP_MAX_FDS
        || msg->nfds != (unsigned)(slots * threads)) {
        snprintf(why, whylen, "invalid application start request");
        return WF_ERROR;
    }
    rq->slots = (unsigned)slots;
    rq->router_threads = (unsigned)threads;
    idx = wf_app_type_find(apps.modules, type);
    if (idx < 0) {
        snprintf(why, whylen, "unknown application type: \"%s\"", type);
        return WF_ERROR;
    }
    rq->module_file = json_string_value(
        json_object_get(json_array_get(apps.modules, (size_t)idx), "file"));
    return rq->module_file != NULL ? WF_OK : WF_ERROR;
}

static apps_proc_t *
apps_proc_find(pid_t pid)
{
    for (unsigned i = 0; i < apps.nprocs; i++) {
        if (apps.procs[i].pid == pid) {
            return &apps.procs[i];
        }
    }
    return NULL;
}

/* Makes room for one more record before forking, so that a forked child
 * always gets one. */
static int
apps_proc_reserve(void)
{
    apps_proc_t *grown;
    unsigned cap;

    if (apps.nprocs < apps.cap) {
        return WF_OK;
    }
    cap = apps.cap == 0 ? 16 : apps.cap * 2;
    grown = realloc(apps.procs, sizeof(*grown) * cap);
    if (grown == NULL) {
        return WF_ERROR;
    }
    apps.procs = grown;
    apps.cap = cap;
    return WF_OK;
}

void
wf_main_apps_router_set(wf_port_t *p)
{
    apps.router = p;
    apps.gen++;
}

void
wf_main_apps_router_lost(void)
{
    apps.router = NULL;
    if (apps.stopping) {
        return; /* they got QUIT or TERM and the stop bound */
    }
    for (unsigned i = 0; i < apps.nprocs; i++) {
        apps_proc_t *a = &apps.procs[i];

        if (a->gen == apps.gen && !a->killed) {
            kill(a->pid, SIGKILL);
            a->killed = true;
        }
    }
}

void
wf_main_apps_stop(int sig)
{
    apps.stopping = true;
    for (unsigned i = 0; i < apps.nprocs; i++) {
        kill(apps.procs[i].pid, sig);
        apps.procs[i].killed = apps.procs[i].killed || sig == SIGKILL;
    }
}

unsigned
wf_main_apps_count(void)
{
    return apps.nprocs;
}

/* ---- the new app process ---------------------------------------------- */

/* What the child needs, prepared in main before fork(). */
typedef struct apps_child {
    const apps_req_t *rq;
    apps_cred_t cred;
    int fds[WF_APP_MAX_FDS]; /* the app's sockets, taken from the msg */
    unsigned nfds;
} apps_child_t;

/* Closes every fd but 0-2, the log and the app's sockets, so that no
 * port, listening socket or signalfd of main lives on in the app. */
static void
apps_child_close_fds(const apps_child_t *ch)
{
    int keep[WF_APP_MAX_FDS + 1];
    unsigned n = 0;
    unsigned from = STDERR_FILENO + 1;

    for (unsigned i = 0; i < ch->nfds; i++) {
        keep[n++] = ch->fds[i];
    }
    if (wf_log_fd() > STDERR_FILENO) {
        keep[n++] = wf_log_fd();
    }
    /* Insertion sort: n is at most 65. */
    for (unsigned i = 1; i < n; i++) {
        for (unsigned k = i; k > 0 && keep[k - 1] > keep[k]; k--) {
            int t = keep[k];

            keep[k] = keep[k - 1];
            keep[k - 1] = t;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        if ((unsigned)keep[i] > from) {
            close_range(from, (unsigned)keep[i] - 1, 0);
        }
        from = (unsigned)keep[i] + 1;
    }
    close_range(from, ~0u, 0);
}

static void
apps_child_signals(void)
{
    sigset_t all;

    for (int sig = 1; sig < NSIG; sig++) {
        signal(sig, SIG_DFL); /* fails harmlessly for KILL, STOP, RT */
    }
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
}

/* The app's user and group, then the parent-death signal (which a change
 * of credentials clears), and a check that main did not go first. */
static int
apps_child_creds(const apps_cred_t *c)
{
    if (c->apply) {
        return wf_cred_apply(&c->id, apps.main_pid);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    return getppid() == apps.main_pid ? WF_OK : WF_ERROR;
}

/* "stdout" and "stderr": opened as the app's user, appending (Unit's
 * nxt_app_set_logs(), which Wharf honours with --no-daemon too). */
static int
apps_child_output(const json_t *conf, const char *key, int target)
{
    const char *path = json_string_value(json_object_get(conf, key));
    int fd;

    if (path == NULL) {
        return WF_OK;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd == -1) {
        wf_log_alert(errno, "open(\"%s\") failed", path);
        return WF_ERROR;
    }
    if (dup2(fd, target) == -1) {
        wf_log_alert(errno, "dup2(%d, %d) failed", fd, target);
        close(fd);
        return WF_ERROR;
    }
    close(fd);
    return WF_OK;
}

/* "environment": added to the inherited environment, replacing variables
 * of the same name (Unit's putenv()). */
static int
apps_child_environment(const json_t *conf)
{
    const json_t *env = json_object_get(conf, "environment");
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)env, key, v)
    {
        const char *value = json_string_value(v);

        if (value != NULL && setenv(key, value, 1) == -1) {
            wf_log_alert(errno, "failed to set environment");
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static int
apps_child_chdir(const json_t *conf)
{
    const char *dir =
        json_string_value(json_object_get(conf, "working_directory"));

    if (dir != NULL && dir[0] != '\0' && chdir(dir) == -1) {
        wf_log_warn(errno, "chdir(%s) failed", dir);
        return WF_ERROR;
    }
    return WF_OK;
}

/* In the forked child: becomes the app process and never returns. */
static void __attribute__((noreturn)) apps_child_run(const apps_child_t *ch)
{
    const apps_req_t *rq = ch->rq;
    wf_app_start_t st = {
        .name = rq->name,
        .module_file = rq->module_file,
        .tmpdir = apps.opts->tmpdir != NULL ? apps.opts->tmpdir : "/tmp",
        .slots = rq->slots,
        .router_threads = rq->router_threads,
        .fds = ch->fds,
    };
    char *conf_json;

    apps_child_signals();
    apps_child_log();
    apps_child_close_fds(ch);
    wf_proc_title_set(apps.opts->argv, "%s: \"%s\" application", wf_proc_name(),
                      rq->name);
    if (apps_child_creds(&ch->cred) != WF_OK) {
        _exit(1);
    }
    conf_json = json_dumps(rq->conf, JSON_COMPACT);
    if (conf_json == NULL || apps_child_output(rq->conf, "stdout", 1) != WF_OK
        || apps_child_output(rq->conf, "stderr", 2) != WF_OK
        || apps_child_environment(rq->conf) != WF_OK
        || apps_child_chdir(rq->conf) != WF_OK) {
        _exit(1);
    }
    st.conf_json = conf_json;
    _exit(wf_app_main(&st));
}

/* ---- main's handlers -------------------------------------------------- */

static void
apps_child_fini(apps_child_t *ch)
{
    for (unsigned i = 0; i < ch->nfds; i++) {
        close(ch->fds[i]);
    }
    ch->nfds = 0;
    wf_cred_fini(&ch->cred.id);
}

/* Forks the app; returns its pid, or -1 with why filled. */
static pid_t
apps_fork(apps_child_t *ch, char *why, size_t whylen)
{
    pid_t pid;

    if (apps_proc_reserve() != WF_OK) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    pid = fork();
    if (pid == -1) {
        snprintf(why, whylen, "fork() failed (%d: %s)", errno, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        apps_child_run(ch);
    }
    apps.procs[apps.nprocs++] = (apps_proc_t){
        .pid = pid, .gen = apps.gen, .name = wf_xstrdup(ch->rq->name)};
    return pid;
}

void
wf_main_app_on_start(wf_port_t *p, wf_port_msg_t *msg)
{
    apps_req_t rq = {0};
    apps_child_t ch = {.rq = &rq};
    char why[APPS_WHY] = "main is stopping";
    char text[32];
    pid_t pid = -1;

    for (unsigned i = 0; i < msg->nfds && i < WF_APP_MAX_FDS; i++) {
        ch.fds[ch.nfds++] = wf_port_msg_take_fd(msg, i);
    }
    if (!apps.stopping && p == apps.router
        && apps_req_parse(msg, &rq, why, sizeof(why)) == WF_OK
        && apps_cred_resolve(&rq, &ch.cred, why, sizeof(why)) == WF_OK) {
        pid = apps_fork(&ch, why, sizeof(why));
    }
    apps_child_fini(&ch);
    if (pid > 0) {
        wf_log_info("\"%s\" application started as process %d", rq.name,
                    (int)pid);
        snprintf(text, sizeof(text), "%d", (int)pid);
        wf_port_reply(p, msg, WF_MSG_APP_PID, text, strlen(text));
    } else {
        /* Unit's alert for bad names; a stopping main is no fault. */
        wf_log(apps.stopping ? WF_LOG_INFO : WF_LOG_ALERT, 0, "%s", why);
        wf_port_reply(p, msg, WF_MSG_FAIL, why, strlen(why));
    }
    json_decref(rq.root);
}

void
wf_main_app_on_kill(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);
    char *end;
    long pid;
    apps_proc_t *a;

    if (text == NULL) {
        return;
    }
    pid = strtol(text, &end, 10);
    a = *end == '\0' && pid > 0 ? apps_proc_find((pid_t)pid) : NULL;
    if (a == NULL || p != apps.router || a->gen != apps.gen) {
        wf_log_warn(0, "app process \"%s\" to kill is not the router's", text);
        return;
    }
    kill(a->pid, SIGKILL);
    a->killed = true;
}

/* Tells the router that started a (if it still runs). */
static void
apps_report_exit(const apps_proc_t *a, int status)
{
    json_t *o;
    char *text;

    if (apps.router == NULL || a->gen != apps.gen) {
        return;
    }
    o = WIFSIGNALED(status)
            ? json_pack("{s:i, s:s, s:i}", "pid", (int)a->pid, "name", a->name,
                        "signal", WTERMSIG(status))
            : json_pack("{s:i, s:s, s:i}", "pid", (int)a->pid, "name", a->name,
                        "code", WEXITSTATUS(status));
    text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text != NULL) {
        wf_port_send(apps.router, WF_MSG_APP_EXIT, 0, text, strlen(text), NULL,
                     0);
    }
    free(text);
    json_decref(o);
}

bool
wf_main_apps_reap(pid_t pid, int status)
{
    apps_proc_t *a = apps_proc_find(pid);

    if (a == NULL) {
        return false;
    }
    if (WIFSIGNALED(status)) {
        /* A crash is an alert, as in Unit; a kill we sent is not. */
        wf_log(a->killed || apps.stopping ? WF_LOG_NOTICE : WF_LOG_ALERT, 0,
               "app process %d exited on signal %d%s", (int)pid,
               WTERMSIG(status), WCOREDUMP(status) ? " (core dumped)" : "");
    } else {
        wf_log_notice(0, "app process %d exited with code %d", (int)pid,
                      WEXITSTATUS(status));
    }
    apps_report_exit(a, status);
    free(a->name);
    *a = apps.procs[--apps.nprocs];
    return true;
}
