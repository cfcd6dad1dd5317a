/* The router process: I/O threads serving requests, ports to main (for
 * listening sockets) and to the controller (for configurations). */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/conf_tls.h"
#include "core/common.h"
#include "core/listen.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/tpool.h"
#include "http/access_log.h"
#include "http/h1_conn.h"
#include "http/metrics.h"
#include "http/rhttp.h"
#include "net/acme_chal.h"
#include "process/app_mgr.h"
#include "process/port.h"
#include "process/port_msg_types.h"
#include "process/process.h"
#include "process/router.h"

#define ROUTER_HELPER_THREADS 2
#define ROUTER_GRACE_MS       10000 /* QUIT: bound on finishing requests */
#define ROUTER_MAX_THREADS    256

typedef struct router_proc {
    wf_port_owner_t main_owner;
    wf_port_owner_t ctrl_owner;
    wf_port_t *main_port; /* NULL once main is gone */
    wf_port_t *ctrl_port; /* NULL while the controller restarts */
    wf_router_t *rt;
} router_proc_t;

/* A listening socket asked of main. */
typedef struct router_sock_req {
    wf_port_request_t req;
    wf_router_t *rt;
    uint32_t cookie;
} router_sock_req_t;

/* An access log file asked of main: for a configuration (reopen false)
 * or after USR1. */
typedef struct router_alog_req {
    wf_port_request_t req;
    wf_router_t *rt;
    uint32_t cookie;
    bool reopen;
    char path[]; /* NUL-terminated */
} router_alog_req_t;

static router_proc_t rproc;

static void router_on_conf_apply(wf_port_t *p, wf_port_msg_t *msg);
static void router_on_status_get(wf_port_t *p, wf_port_msg_t *msg);
static void router_on_peer_port(wf_port_t *p, wf_port_msg_t *msg);
static void router_on_app_exit(wf_port_t *p, wf_port_msg_t *msg);
static void router_on_modules(wf_port_t *p, wf_port_msg_t *msg);
static void router_on_app_restart(wf_port_t *p, wf_port_msg_t *msg);
static void router_on_log_reopen(wf_port_t *p, wf_port_msg_t *msg);
static void router_on_certs(wf_port_t *p, wf_port_msg_t *msg);
static void router_on_acme_tokens(wf_port_t *p, wf_port_msg_t *msg);

/* Sorted by type.  Types only this process sends have the reply handler:
 * the senders mask keeps the peer from ever sending them. */
static const wf_port_type_t router_main_types[] = {
    {WF_MSG_FAIL, "fail", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_SOCKET_OPEN, "socket_open", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_SOCKET, "socket", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_MAIN),
     1},
    {WF_MSG_SOCKET_RELEASE, "socket_release", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_PEER_PORT, "peer_port", router_on_peer_port,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
    {WF_MSG_APP_START, "app_start", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_ROUTER), WF_PORT_MAX_FDS},
    {WF_MSG_APP_PID, "app_pid", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_APP_EXIT, "app_exit", router_on_app_exit,
     WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_APP_KILL, "app_kill", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_MODULES, "modules", router_on_modules, WF_PORT_FROM(WF_PORT_MAIN),
     0},
    {WF_MSG_ACCESS_LOG_OPEN, "access_log_open", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_ACCESS_LOG, "access_log", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
    {WF_MSG_LOG_REOPEN, "log_reopen", router_on_log_reopen,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
};

static const wf_port_type_t router_ctrl_types[] = {
    {WF_MSG_OK, "ok", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_FAIL, "fail", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_ROUTER),
     0},
    {WF_MSG_CONF_APPLY, "conf_apply", router_on_conf_apply,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_STATUS_GET, "status_get", router_on_status_get,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_APP_RESTART, "app_restart", router_on_app_restart,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_CERTS, "certs", router_on_certs, WF_PORT_FROM(WF_PORT_CONTROLLER),
     0},
    {WF_MSG_ACME_TOKENS, "acme_tokens", router_on_acme_tokens,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
};

static void
router_on_sock_reply(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    router_sock_req_t *sr = wf_container_of(req, router_sock_req_t, req);
    const char *error = "main process is gone";
    int fd = -1;

    if (status == WF_OK && msg->type == WF_MSG_SOCKET) {
        fd = wf_port_msg_take_fd(msg, 0);
    } else if (status == WF_OK) {
        error = (const char *)wf_port_msg_flatten(msg);
    }
    wf_router_socket_done(sr->rt, sr->cookie, fd,
                          fd >= 0 ? NULL : (error != NULL ? error : "?"));
    free(sr);
}

static void
router_socket_open(wf_router_t *rt, const char *name,
                   const struct sockaddr *addr, socklen_t len, uint32_t cookie)
{
    router_sock_req_t *sr = calloc(1, sizeof(*sr));
    size_t nlen = strlen(name);

    wf_unused(addr);
    wf_unused(len);
    if (sr == NULL) {
        wf_router_socket_done(rt, cookie, -1, "out of memory");
        return;
    }
    sr->rt = rt;
    sr->cookie = cookie;
    sr->req.handler = router_on_sock_reply;
    if (rproc.main_port == NULL
        || wf_port_request_add(rproc.main_port, &sr->req) != WF_OK) {
        free(sr);
        wf_router_socket_done(rt, cookie, -1, "main process is gone");
        return;
    }
    if (wf_port_send(rproc.main_port, WF_MSG_SOCKET_OPEN, sr->req.stream, name,
                     nlen, NULL, 0)
        != WF_OK) {
        /* The close of the port fails the request and frees sr. */
        wf_log_error(0, "cannot ask main for \"%s\"", name);
    }
}

static void
router_socket_release(wf_router_t *rt, const char *name)
{
    wf_unused(rt);
    if (rproc.main_port != NULL) {
        wf_port_send(rproc.main_port, WF_MSG_SOCKET_RELEASE, 0, name,
                     strlen(name), NULL, 0);
    }
}

static void
router_on_alog_reply(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    router_alog_req_t *ar = wf_container_of(req, router_alog_req_t, req);
    const char *error = "main process is gone";
    int fd = -1;

    if (status == WF_OK && msg->type == WF_MSG_ACCESS_LOG) {
        fd = wf_port_msg_take_fd(msg, 0);
    } else if (status == WF_OK) {
        error = (const char *)wf_port_msg_flatten(msg);
        error = error != NULL ? error : "?";
    }
    if (!ar->reopen) {
        wf_router_access_log_done(ar->rt, ar->cookie, fd,
                                  fd >= 0 ? NULL : error);
    } else if (fd >= 0) {
        wf_access_log_reopen_fd(ar->path, fd);
    } else {
        wf_log_error(0, "access log \"%s\" not reopened: %s", ar->path, error);
    }
    free(ar);
}

/* Asks main to open path (WF_MSG_ACCESS_LOG_OPEN).  Returns WF_ERROR
 * when it could not be asked (then nothing calls back). */
static int
router_alog_ask(wf_router_t *rt, const char *path, uint32_t cookie, bool reopen)
{
    size_t len = strlen(path);
    router_alog_req_t *ar = calloc(1, sizeof(*ar) + len + 1);

    if (ar == NULL) {
        return WF_ERROR;
    }
    ar->rt = rt;
    ar->cookie = cookie;
    ar->reopen = reopen;
    memcpy(ar->path, path, len + 1);
    ar->req.handler = router_on_alog_reply;
    if (rproc.main_port == NULL
        || wf_port_request_add(rproc.main_port, &ar->req) != WF_OK) {
        free(ar);
        return WF_ERROR;
    }
    if (wf_port_send(rproc.main_port, WF_MSG_ACCESS_LOG_OPEN, ar->req.stream,
                     path, len, NULL, 0)
        != WF_OK) {
        /* The close of the port fails the request and frees ar. */
        wf_log_error(0, "cannot ask main for \"%s\"", path);
    }
    return WF_OK;
}

static void
router_access_log_open(wf_router_t *rt, const char *path, uint32_t cookie)
{
    if (router_alog_ask(rt, path, cookie, false) != WF_OK) {
        wf_router_access_log_done(rt, cookie, -1, "main process is gone");
    }
}

static void
router_alog_reopen_one(const char *path, void *arg)
{
    wf_unused(arg);
    if (router_alog_ask(rproc.rt, path, 0, true) != WF_OK) {
        wf_log_error(0, "access log \"%s\" not reopened", path);
    }
}

/* main got USR1: the error log it reopened comes with the message, and
 * the access logs are asked for anew (Unit's router does the same). */
static void
router_on_log_reopen(wf_port_t *p, wf_port_msg_t *msg)
{
    int fd = wf_port_msg_take_fd(msg, 0);

    wf_unused(p);
    if (fd != -1) {
        wf_log_redirect(fd);
    }
    wf_access_log_each_path(router_alog_reopen_one, NULL);
}

static void
router_applied(wf_router_t *rt, uint64_t stream, const char *error)
{
    wf_unused(rt);
    if (rproc.ctrl_port == NULL) {
        return; /* the controller restarts and will send it again */
    }
    if (error == NULL) {
        wf_port_send(rproc.ctrl_port, WF_MSG_OK, stream, NULL, 0, NULL, 0);
    } else {
        wf_port_send(rproc.ctrl_port, WF_MSG_FAIL, stream, error, strlen(error),
                     NULL, 0);
    }
}

static const wf_router_ops_t router_proc_ops = {
    .socket_open = router_socket_open,
    .socket_release = router_socket_release,
    .access_log_open = router_access_log_open,
    .applied = router_applied,
};

static int
router_app_start(wf_port_request_t *req, const char *payload, size_t len,
                 const int *fds, unsigned nfds)
{
    if (rproc.main_port == NULL
        || wf_port_request_add(rproc.main_port, req) != WF_OK) {
        return WF_ERROR;
    }
    if (wf_port_send(rproc.main_port, WF_MSG_APP_START, req->stream, payload,
                     len, fds, nfds)
        != WF_OK) {
        /* The request stays registered: the port's close fails it. */
        wf_port_request_del(rproc.main_port, req);
        return WF_ERROR;
    }
    return WF_OK;
}

static void
router_app_kill(pid_t pid)
{
    char text[24];
    int n = snprintf(text, sizeof(text), "%d", (int)pid);

    if (rproc.main_port != NULL) {
        wf_port_send(rproc.main_port, WF_MSG_APP_KILL, 0, text, (size_t)n, NULL,
                     0);
    }
}

static void
router_app_restarted(uint64_t stream, const char *error)
{
    if (rproc.ctrl_port == NULL) {
        return;
    }
    if (error == NULL) {
        wf_port_send(rproc.ctrl_port, WF_MSG_OK, stream, NULL, 0, NULL, 0);
    } else {
        wf_port_send(rproc.ctrl_port, WF_MSG_FAIL, stream, error, strlen(error),
                     NULL, 0);
    }
}

static const wf_app_mgr_ops_t router_app_ops = {
    .start = router_app_start,
    .kill = router_app_kill,
    .restarted = router_app_restarted,
};

/* {"pid": P, "name": NAME, "code": C} or {..., "signal": S} */
static void
router_on_app_exit(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);
    json_int_t pid = 0;
    json_int_t code = 0;
    json_int_t signo = 0;
    json_error_t jerr;
    json_t *root = text != NULL ? json_loads(text, 0, &jerr) : NULL;

    wf_unused(p);
    if (root == NULL
        || json_unpack(root, "{s:I,s?I,s?I}", "pid", &pid, "code", &code,
                       "signal", &signo)
               != 0) {
        wf_log_error(0, "bad app exit message from main");
        json_decref(root);
        return;
    }
    json_decref(root);
    wf_app_mgr_on_exit((pid_t)pid, (int)code, (int)signo);
}

static void
router_on_modules(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);

    wf_unused(p);
    if (text != NULL) {
        wf_router_modules_set(text, msg->size);
    }
}

static void
router_on_app_restart(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *name = (const char *)wf_port_msg_flatten(msg);

    wf_unused(p);
    if (name == NULL) {
        router_app_restarted(msg->stream, "Out of memory.");
        return;
    }
    wf_app_mgr_restart(name, msg->stream);
}

static void
router_on_conf_apply(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);

    if (text == NULL) {
        wf_port_reply(p, msg, WF_MSG_FAIL, "out of memory", 13);
        return;
    }
    wf_router_apply(rproc.rt, text, msg->size, msg->stream);
}

/* The certificates the next config names (control/conf_tls.h).  A
 * payload that is not a JSON object leaves none: the config then fails
 * with "Certificate ... is not found.". */
static void
router_on_certs(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);
    json_t *pems = text != NULL ? json_loadb(text, msg->size, 0, NULL) : NULL;

    wf_unused(p);
    if (!json_is_object(pems)) {
        wf_log_error(0, "the certificates from the controller are not a "
                        "JSON object");
        json_decref(pems);
        pems = NULL;
    }
    wf_conf_tls_pems_set(pems);
}

/* The ACME challenges to answer (net/acme_chal.h), parsed on a helper
 * thread: they hold certificates. */
typedef struct router_acme_job {
    wf_job_t job;
    uint64_t stream;
    int rc;
    size_t len;
    char text[];
} router_acme_job_t;

static void
router_on_acme_parse(wf_job_t *job)
{
    router_acme_job_t *j = wf_container_of(job, router_acme_job_t, job);

    j->rc = wf_acme_chal_set(j->text, j->len);
}

/* Answers on the controller's port of now: a restarted controller drops a
 * stale stream. */
static void
router_on_acme_parsed(wf_task_t *task)
{
    router_acme_job_t *j = wf_container_of(task, router_acme_job_t, job.done);

    if (rproc.ctrl_port != NULL) {
        wf_port_send(rproc.ctrl_port, j->rc == WF_OK ? WF_MSG_OK : WF_MSG_FAIL,
                     j->stream, NULL, 0, NULL, 0);
    }
    free(j);
}

static void
router_on_acme_tokens(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text = (const char *)wf_port_msg_flatten(msg);
    router_acme_job_t *j =
        text != NULL ? malloc(sizeof(*j) + msg->size + 1) : NULL;

    if (j == NULL) {
        wf_port_reply(p, msg, WF_MSG_FAIL, NULL, 0);
        return;
    }
    memcpy(j->text, text, msg->size);
    j->text[msg->size] = '\0';
    j->len = msg->size;
    j->stream = msg->stream;
    j->job.loop = wf_loop_current();
    j->job.work = router_on_acme_parse;
    j->job.done.handler = router_on_acme_parsed;
    wf_tpool_submit(&j->job);
}

static void
router_on_status_get(wf_port_t *p, wf_port_msg_t *msg)
{
    char *text = wf_router_status_json();

    if (text == NULL) {
        wf_port_reply(p, msg, WF_MSG_FAIL, "out of memory", 13);
        return;
    }
    wf_port_reply(p, msg, WF_MSG_OK, text, strlen(text));
    free(text);
}

static void
router_on_ctrl_close(wf_port_t *p)
{
    wf_proc_port_lost(&rproc.ctrl_port, p, false);
}

static void
router_on_main_close(wf_port_t *p)
{
    /* Without main nobody restarts us or opens sockets. */
    wf_proc_port_lost(&rproc.main_port, p, true);
}

/* A new controller: its port arrives from main. */
static void
router_on_peer_port(wf_port_t *p, wf_port_msg_t *msg)
{
    wf_unused(p);
    wf_proc_port_replace(&rproc.ctrl_port, msg, WF_PORT_ROUTER,
                         WF_PORT_CONTROLLER, router_ctrl_types,
                         wf_nitems(router_ctrl_types), &rproc.ctrl_owner);
}

static unsigned
router_threads(const wf_opts_t *opts)
{
    long n = opts->threads != 0 ? (long)opts->threads
                                : sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : (unsigned)wf_min(n, ROUTER_MAX_THREADS);
}

static int
router_start(const wf_opts_t *opts, int main_fd, int ctrl_fd)
{
    /* Everything that needs root comes from main: listening sockets and
     * access log files; so the router drops first, as Unit's does. */
    if (wf_proc_drop_privileges(opts) != WF_OK) {
        return WF_ERROR;
    }
    wf_access_log_defer_open(true);
    wf_listen_set_limits(opts->maxconn, opts->maxaccept);
    wf_h1_init();
    wf_rhttp_init(); /* chains h1's loop hooks */
    if (wf_loops_create(router_threads(opts)) != WF_OK
        || wf_tpool_start(ROUTER_HELPER_THREADS) != WF_OK) {
        return WF_ERROR;
    }
    rproc.main_owner.on_close = router_on_main_close;
    rproc.ctrl_owner.on_close = router_on_ctrl_close;
    wf_app_mgr_init(&router_app_ops);
    rproc.rt = wf_router_create(&router_proc_ops, wf_loop_get(0));
    wf_metrics_status_source = wf_router_status_json; /* loop 0's */
    rproc.main_port = wf_proc_port_open(
        main_fd, WF_PORT_ROUTER, WF_PORT_MAIN, router_main_types,
        wf_nitems(router_main_types), &rproc.main_owner);
    rproc.ctrl_port = wf_proc_port_open(
        ctrl_fd, WF_PORT_ROUTER, WF_PORT_CONTROLLER, router_ctrl_types,
        wf_nitems(router_ctrl_types), &rproc.ctrl_owner);
    if (rproc.rt == NULL || rproc.main_port == NULL
        || rproc.ctrl_port == NULL) {
        return WF_ERROR;
    }
    return wf_loops_start();
}

int
wf_router_main(const wf_opts_t *opts, int main_fd, int ctrl_fd)
{
    bool graceful;

    wf_proc_title_set(opts->argv, "%s: router", wf_proc_name());
    if (router_start(opts, main_fd, ctrl_fd) != WF_OK) {
        return EXIT_FAILURE;
    }
    wf_log_info("router started");
    graceful = wf_proc_wait_stop();
    /* Stop accepting first: a graceful stop only finishes what started. */
    wf_router_stop_listening(rproc.rt);
    wf_loops_stop(graceful, ROUTER_GRACE_MS);
    wf_loops_join();
    wf_tpool_stop();
    /* The loop threads are gone: their objects can be freed from here. */
    wf_port_destroy(rproc.main_port);
    wf_port_destroy(rproc.ctrl_port);
    wf_router_destroy(rproc.rt);
    wf_app_mgr_shutdown(); /* after the snapshots' references went */
    wf_loops_destroy();
    wf_conf_tls_pems_set(NULL);
    wf_acme_chal_clear();
    return EXIT_SUCCESS;
}
