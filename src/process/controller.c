/* The controller process: Unit's control API on the control socket, the
 * config store in STATEDIR, and the router's configuration.  One loop
 * thread runs everything here.  See docs/internals/control.md. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/acme.h"
#include "control/api.h"
#include "control/cert.h"
#include "control/conf.h"
#include "control/conf_store.h"
#include "control/conf_tls.h"
#include "core/common.h"
#include "core/json.h"
#include "core/listen.h"
#include "core/log.h"
#include "core/loop.h"
#include "http/access_log.h"
#include "http/h1_parse.h"
#include "http/respond.h"
#include "process/control_http.h"
#include "process/controller.h"
#include "process/ctl_acme.h"
#include "process/port.h"
#include "process/port_msg_types.h"
#include "process/process.h"
#include "process/statedir.h"

typedef struct ctl_proc {
    wf_port_owner_t main_owner;
    wf_port_owner_t router_owner;
    wf_port_t *main_port;
    wf_port_t *router_port; /* NULL while the router restarts */
    const wf_opts_t *opts;
    json_t *conf;            /* the applied config; owned */
    json_t *pending_conf;    /* being applied; owned; NULL when none */
    wf_ctl_conn_t *applying; /* the request waiting for the router */
    wf_list_t waiting;       /* requests queued behind it */
    wf_port_request_t apply_req;
    wf_port_request_t store_req; /* WF_MSG_CONF_STORE to main */
    bool apply_busy;
    bool resend;           /* a new router waits for the config */
    bool persist;          /* store the config once applied */
    wf_listener_t control; /* the control socket */
} ctl_proc_t;

static ctl_proc_t ctl;

static void ctl_on_peer_port(wf_port_t *p, wf_port_msg_t *msg);
static void ctl_on_modules(wf_port_t *p, wf_port_msg_t *msg);
static void ctl_on_log_reopen(wf_port_t *p, wf_port_msg_t *msg);
static void ctl_apply_next(void);
static void ctl_router_ready(void);

static const wf_port_type_t ctl_main_types[] = {
    {WF_MSG_OK, "ok", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_FAIL, "fail", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_PEER_PORT, "peer_port", ctl_on_peer_port,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
    {WF_MSG_MODULES, "modules", ctl_on_modules, WF_PORT_FROM(WF_PORT_MAIN), 0},
    {WF_MSG_CONF_STORE, "conf_store", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_LOG_REOPEN, "log_reopen", ctl_on_log_reopen,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
    {WF_MSG_CERT_STORE, "cert_store", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_CERT_DELETE, "cert_delete", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_ACME_STORE, "acme_store", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
};

static const wf_port_type_t ctl_router_types[] = {
    {WF_MSG_OK, "ok", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_ROUTER), 0},
    {WF_MSG_FAIL, "fail", wf_port_reply_handler, WF_PORT_FROM(WF_PORT_ROUTER),
     0},
    {WF_MSG_CONF_APPLY, "conf_apply", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_STATUS_GET, "status_get", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_APP_RESTART, "app_restart", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_CERTS, "certs", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
    {WF_MSG_ACME_TOKENS, "acme_tokens", wf_port_reply_handler,
     WF_PORT_FROM(WF_PORT_CONTROLLER), 0},
};

/* Sends the config to the router; the answer comes to ctl_on_applied(). */
static void ctl_on_applied(wf_port_request_t *req, wf_port_msg_t *msg,
                           int status);

/* The certificates conf names go first (WF_MSG_CERTS): the router compiles
 * the config with them, so a certificate replaced under the same name
 * serves from this config on. */
static int
ctl_send_certs(const json_t *conf)
{
    json_t *pems = wf_cert_store_pems(conf);
    char *text = pems != NULL ? json_dumps(pems, JSON_COMPACT) : NULL;
    int rc = WF_ERROR;

    if (text != NULL) {
        rc = wf_port_send(ctl.router_port, WF_MSG_CERTS, 0, text, strlen(text),
                          NULL, 0);
    }
    free(text);
    json_decref(pems);
    return rc;
}

static int
ctl_send_conf(json_t *conf)
{
    char *text = json_dumps(conf, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc;

    if (text == NULL || ctl.router_port == NULL) {
        free(text);
        return WF_ERROR;
    }
    if (ctl_send_certs(conf) != WF_OK) {
        free(text);
        return WF_ERROR;
    }
    ctl.apply_req.handler = ctl_on_applied;
    rc = wf_port_request_add(ctl.router_port, &ctl.apply_req);
    if (rc == WF_OK) {
        rc = wf_port_send(ctl.router_port, WF_MSG_CONF_APPLY,
                          ctl.apply_req.stream, text, strlen(text), NULL, 0);
    }
    free(text);
    return rc;
}

/* The change is over: reply (error NULL: done) and go on. */
static void
ctl_apply_done(const char *error)
{
    wf_ctl_conn_t *conn = ctl.applying;

    ctl.apply_busy = false;
    ctl.applying = NULL;
    if (conn != NULL) {
        wf_ctl_conn_applied(conn, error);
    }
    if (ctl.resend) {
        ctl.resend = false;
        ctl_router_ready();
    }
    ctl_apply_next();
}

/* main stored the config (or could not, or went away). */
static void
ctl_on_stored(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    wf_unused(req);
    if (status != WF_OK || msg->type != WF_MSG_OK) {
        /* Live but not stored: a restart would bring back the old one,
         * so the client must not hear "done". */
        wf_log_error(0, "configuration applied but not stored");
        ctl_apply_done("Failed to store the configuration.");
        return;
    }
    ctl_apply_done(NULL);
}

/* main writes STATEDIR/conf.json (Unit's NXT_PORT_MSG_CONF_STORE): the
 * controller may run as a user with no right on the state directory. */
static int
ctl_store(const json_t *conf)
{
    char *text = wf_statedir_conf_text(conf);
    int rc = WF_ERROR;

    if (text != NULL && ctl.main_port != NULL) {
        ctl.store_req.handler = ctl_on_stored;
        rc = wf_port_request_add(ctl.main_port, &ctl.store_req);
    }
    if (rc == WF_OK
        && wf_port_send(ctl.main_port, WF_MSG_CONF_STORE, ctl.store_req.stream,
                        text, strlen(text), NULL, 0)
               != WF_OK) {
        wf_port_request_del(ctl.main_port, &ctl.store_req);
        rc = WF_ERROR;
    }
    free(text);
    return rc;
}

/* The router answered (or went away): store, reply, go on. */
static void
ctl_on_applied(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    bool ok = status == WF_OK && msg->type == WF_MSG_OK;

    wf_unused(req);
    if (ok) {
        json_decref(ctl.conf);
        ctl.conf = ctl.pending_conf;
        ctl.pending_conf = NULL;
        if (!ctl.persist) {
            ctl_apply_done(NULL);
        } else if (ctl_store(ctl.conf) != WF_OK) {
            ctl_apply_done("Failed to store the configuration.");
        }
    } else {
        const char *why = status == WF_OK
                              ? (const char *)wf_port_msg_flatten(msg)
                              : "the router is gone";

        wf_log_error(0, "configuration not applied: %s",
                     why != NULL ? why : "?");
        json_decref(ctl.pending_conf);
        ctl.pending_conf = NULL;
        ctl_apply_done("Failed to apply new configuration.");
    }
}

/* Starts the next queued change, if the router is there to take it. */
static void
ctl_apply_next(void)
{
    while (!ctl.apply_busy && ctl.router_port != NULL
           && !wf_list_is_empty(&ctl.waiting)) {
        wf_ctl_conn_t *conn = wf_ctl_conn_from_link(ctl.waiting.next);

        wf_list_del(ctl.waiting.next);
        ctl.pending_conf = wf_ctl_conn_take_conf(conn);
        ctl.applying = conn;
        ctl.persist = true;
        ctl.apply_busy = true;
        if (ctl_send_conf(ctl.pending_conf) != WF_OK) {
            ctl.apply_busy = false;
            ctl.applying = NULL;
            json_decref(ctl.pending_conf);
            ctl.pending_conf = NULL;
            wf_ctl_conn_applied(conn, "Failed to apply new configuration.");
        }
    }
}

void
wf_ctl_apply(wf_list_t *link)
{
    wf_list_add_tail(&ctl.waiting, link);
    ctl_apply_next();
}

json_t *
wf_ctl_conf(void)
{
    return ctl.conf;
}

wf_port_t *
wf_ctl_main_port(void)
{
    return ctl.main_port;
}

wf_port_t *
wf_ctl_router_port(void)
{
    return ctl.router_port;
}

/* A (re)started router gets the current config before any change. */
static void
ctl_router_ready(void)
{
    if (ctl.apply_busy) {
        /* A change is being stored: the router that applied it is gone,
         * and this one gets the config once main stored it. */
        ctl.resend = true;
        return;
    }
    ctl.pending_conf = json_incref(ctl.conf);
    ctl.applying = NULL;
    ctl.persist = false;
    ctl.apply_busy = true;
    if (ctl_send_conf(ctl.pending_conf) != WF_OK) {
        ctl.apply_busy = false;
        json_decref(ctl.pending_conf);
        ctl.pending_conf = NULL;
    }
}

void
wf_ctl_conf_resend(void)
{
    ctl_router_ready();
}

static void
ctl_on_router_close(wf_port_t *p)
{
    wf_proc_port_lost(&ctl.router_port, p, false);
}

static void
ctl_on_main_close(wf_port_t *p)
{
    wf_proc_port_lost(&ctl.main_port, p, true);
}

static void
ctl_on_peer_port(wf_port_t *p, wf_port_msg_t *msg)
{
    wf_unused(p);
    if (wf_proc_port_replace(&ctl.router_port, msg, WF_PORT_CONTROLLER,
                             WF_PORT_ROUTER, ctl_router_types,
                             wf_nitems(ctl_router_types), &ctl.router_owner)) {
        ctl_router_ready();
        wf_ctl_acme_router_ready();
        ctl_apply_next();
    }
}

/* The language modules main found, for validating application types.  A
 * list that is not an array is logged and ignored (the last good one
 * stays). */
static void
ctl_on_modules(wf_port_t *p, wf_port_msg_t *msg)
{
    const char *text =
        msg->size > 0 ? (const char *)wf_port_msg_flatten(msg) : "[]";
    json_t *modules = text != NULL ? json_loads(text, 0, NULL) : NULL;

    wf_unused(p);
    if (!json_is_array(modules)) {
        wf_log_error(0, "the module list from main is not a JSON array");
        json_decref(modules);
        return;
    }
    wf_api_modules_set(modules);
    json_decref(modules);
}

/* main reopened the error log (USR1) and sent it: this process may not be
 * allowed to open it. */
static void
ctl_on_log_reopen(wf_port_t *p, wf_port_msg_t *msg)
{
    int fd = wf_port_msg_take_fd(msg, 0);

    wf_unused(p);
    if (fd != -1) {
        wf_log_redirect(fd);
    }
}

/* The config at start: --config FILE, else STATEDIR/conf.json; without
 * one (or with an invalid one, logged), Unit's default, which is not
 * stored until the first change (nxt_controller_conf_default()). */
static json_t *
ctl_initial_conf(const wf_opts_t *opts, bool *from_file)
{
    static const char unit_default[] =
        "{\"listeners\": {}, \"routes\": [], \"applications\": {}}";
    json_t *conf = NULL;

    *from_file = false;
    if (opts->config != NULL) {
        conf = wf_statedir_load_conf(opts->config, true);
        *from_file = conf != NULL;
    } else {
        conf = wf_statedir_load_stored(opts->statedir);
    }
    return conf != NULL ? conf : json_loads(unit_default, 0, NULL);
}

/* STATEDIR/certs/ into the store (Unit's nxt_cert_store_load()). */
static void
ctl_certs_load(const wf_opts_t *opts)
{
    char dir[4096];

    snprintf(dir, sizeof(dir), "%s/certs", opts->statedir);
    wf_cert_store_load(dir);
    snprintf(dir, sizeof(dir), "%s/acme", opts->statedir);
    wf_acme_load(dir);
    /* The stored config is validated against them. */
    wf_conf_tls_pems_set(wf_cert_store_pems_all());
}

static int
ctl_start(const wf_opts_t *opts, int main_fd, int router_fd, int control_fd)
{
    bool from_file;

    ctl.opts = opts;
    wf_list_init(&ctl.waiting);
    /* Validating opens no access log: the router gets them from main. */
    wf_access_log_defer_open(true);
    /* Read as root (Unit's controller prefork): conf.json and certs/ are
     * main's. */
    ctl_certs_load(opts);
    ctl.conf = ctl_initial_conf(opts, &from_file);
    if (wf_proc_drop_privileges(opts) != WF_OK) {
        return WF_ERROR;
    }
    wf_listen_set_limits(0, 0);
    if (wf_loops_create(1) != WF_OK) {
        return WF_ERROR;
    }
    ctl.main_owner.on_close = ctl_on_main_close;
    ctl.router_owner.on_close = ctl_on_router_close;
    ctl.main_port = wf_proc_port_open(main_fd, WF_PORT_CONTROLLER, WF_PORT_MAIN,
                                      ctl_main_types, wf_nitems(ctl_main_types),
                                      &ctl.main_owner);
    ctl.router_port = wf_proc_port_open(
        router_fd, WF_PORT_CONTROLLER, WF_PORT_ROUTER, ctl_router_types,
        wf_nitems(ctl_router_types), &ctl.router_owner);
    if (ctl.main_port == NULL || ctl.router_port == NULL
        || wf_ctl_http_start(&ctl.control, opts, control_fd) != WF_OK
        || wf_acme_start(wf_loop_get(0), wf_ctl_acme_call) != WF_OK) {
        return WF_ERROR;
    }
    ctl_router_ready();
    wf_ctl_acme_router_ready();
    ctl.persist = from_file;
    return wf_loops_start();
}

int
wf_controller_main(const wf_opts_t *opts, int main_fd, int router_fd,
                   int control_fd)
{
    bool graceful;

    wf_proc_title_set(opts->argv, "%s: controller", wf_proc_name());
    if (ctl_start(opts, main_fd, router_fd, control_fd) != WF_OK) {
        return EXIT_FAILURE;
    }
    wf_log_info("controller started");
    graceful = wf_proc_wait_stop();
    /* While the loop runs: the ACME thread may wait for it. */
    wf_ctl_acme_stop();
    wf_acme_stop();
    wf_loops_stop(graceful, 1000);
    wf_loops_join();
    /* The socket stays main's (its file too) for the next controller. */
    wf_listener_close(&ctl.control);
    wf_port_destroy(ctl.main_port);
    wf_port_destroy(ctl.router_port);
    json_decref(ctl.conf);
    json_decref(ctl.pending_conf);
    wf_api_modules_set(NULL);
    wf_cert_store_clear();
    wf_conf_tls_pems_set(NULL);
    wf_loops_destroy();
    return EXIT_SUCCESS;
}
