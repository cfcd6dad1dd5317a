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

#include "control/api.h"
#include "control/conf.h"
#include "control/conf_store.h"
#include "core/common.h"
#include "core/json.h"
#include "core/listen.h"
#include "core/log.h"
#include "core/loop.h"
#include "http/h1_parse.h"
#include "http/respond.h"
#include "process/control_http.h"
#include "process/controller.h"
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
    bool apply_busy;
    bool persist;          /* store the config once applied */
    wf_listener_t control; /* the control socket */
} ctl_proc_t;

static ctl_proc_t ctl;

static void ctl_on_peer_port(wf_port_t *p, wf_port_msg_t *msg);
static void ctl_on_modules(wf_port_t *p, wf_port_msg_t *msg);
static void ctl_apply_next(void);

static const wf_port_type_t ctl_main_types[] = {
    {WF_MSG_PEER_PORT, "peer_port", ctl_on_peer_port,
     WF_PORT_FROM(WF_PORT_MAIN), 1},
    {WF_MSG_MODULES, "modules", ctl_on_modules, WF_PORT_FROM(WF_PORT_MAIN), 0},
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
};

/* Sends the config to the router; the answer comes to ctl_on_applied(). */
static void ctl_on_applied(wf_port_request_t *req, wf_port_msg_t *msg,
                           int status);

static int
ctl_send_conf(json_t *conf)
{
    char *text = json_dumps(conf, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc;

    if (text == NULL || ctl.router_port == NULL) {
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

/* The router answered (or went away): store, reply, go on. */
static void
ctl_on_applied(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    wf_ctl_conn_t *conn = ctl.applying;
    bool ok = status == WF_OK && msg->type == WF_MSG_OK;
    const char *error = ok ? NULL : "Failed to apply new configuration.";

    wf_unused(req);
    ctl.apply_busy = false;
    ctl.applying = NULL;
    if (ok) {
        json_decref(ctl.conf);
        ctl.conf = ctl.pending_conf;
        ctl.pending_conf = NULL;
        if (ctl.persist
            && wf_statedir_store_conf(ctl.opts->statedir, ctl.conf) != WF_OK) {
            /* Live but not stored: a restart would bring back the old
             * one, so the client must not hear "done". */
            error = "Failed to store the configuration.";
        }
    } else {
        const char *why = status == WF_OK
                              ? (const char *)wf_port_msg_flatten(msg)
                              : "the router is gone";

        wf_log_error(0, "configuration not applied: %s",
                     why != NULL ? why : "?");
        json_decref(ctl.pending_conf);
        ctl.pending_conf = NULL;
    }
    if (conn != NULL) {
        wf_ctl_conn_applied(conn, error);
    }
    ctl_apply_next();
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
wf_ctl_router_port(void)
{
    return ctl.router_port;
}

/* A (re)started router gets the current config before any change. */
static void
ctl_router_ready(void)
{
    if (ctl.apply_busy) {
        return; /* the failed request re-queues nothing; it was answered */
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

static int
ctl_start(const wf_opts_t *opts, int main_fd, int router_fd)
{
    bool from_file;

    ctl.opts = opts;
    wf_list_init(&ctl.waiting);
    ctl.conf = ctl_initial_conf(opts, &from_file);
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
        || wf_ctl_http_open(&ctl.control, opts) != WF_OK) {
        return WF_ERROR;
    }
    ctl_router_ready();
    ctl.persist = from_file;
    wf_statedir_store_version(opts->statedir);
    return wf_loops_start();
}

int
wf_controller_main(const wf_opts_t *opts, int main_fd, int router_fd)
{
    bool graceful;

    wf_proc_title_set(opts->argv, "%s: controller", wf_proc_name());
    if (ctl_start(opts, main_fd, router_fd) != WF_OK) {
        return EXIT_FAILURE;
    }
    wf_log_info("controller started");
    graceful = wf_proc_wait_stop(NULL);
    wf_loops_stop(graceful, 1000);
    wf_loops_join();
    wf_ctl_http_close(&ctl.control, opts);
    wf_port_destroy(ctl.main_port);
    wf_port_destroy(ctl.router_port);
    json_decref(ctl.conf);
    json_decref(ctl.pending_conf);
    wf_api_modules_set(NULL);
    wf_loops_destroy();
    return EXIT_SUCCESS;
}
