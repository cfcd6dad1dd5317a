#include "process/ctl_acme.h"

#include <stdlib.h>
#include <string.h>

#include "control/cert.h"
#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"
#include "process/controller.h"
#include "process/port.h"
#include "process/port_msg_types.h"

#define CTL_CHAL_WAIT_MS 10000 /* how long a call waits for a new router */

/* One call waiting for its peer's answer. */
typedef struct ctl_acme_req {
    wf_port_request_t req;
    wf_acme_call_t *call;
} ctl_acme_req_t;

/* An issued bundle into the store; the router gets it with the config
 * when a listener names it. */
static int
ctl_acme_cert_set(const wf_acme_call_t *call)
{
    char why[256];
    json_t *info;
    size_t len = strlen(call->pem);

    if (wf_cert_parse(call->pem, len, &info, why, sizeof(why)) != WF_OK) {
        wf_log_warn(0, "acme \"%s\": the issued certificate is refused: %s",
                    call->name, why);
        return WF_ERROR;
    }
    if (wf_cert_store_set(call->name, call->pem, len, info) != WF_OK) {
        return WF_ERROR;
    }
    if (wf_cert_is_used(wf_ctl_conf(), call->name, strlen(call->name))) {
        wf_ctl_conf_resend();
    }
    return WF_OK;
}

static void
ctl_acme_on_reply(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    ctl_acme_req_t *ar = wf_container_of(req, ctl_acme_req_t, req);
    wf_acme_call_t *call = ar->call;
    int rc = status == WF_OK && msg->type == WF_MSG_OK ? WF_OK : WF_ERROR;

    free(ar);
    /* Deleted while main wrote it: the DELETE removed the files after. */
    if (rc == WF_OK && call->kind == WF_ACME_CALL_STORE && call->pem != NULL
        && wf_acme_entry_exists(call->name, strlen(call->name))) {
        rc = ctl_acme_cert_set(call);
    }
    wf_acme_call_done(call, rc);
}

/* Sends the call's message on p as a request. */
static int
ctl_acme_send(wf_acme_call_t *call, wf_port_t *p, uint32_t type,
              const char *payload, size_t len)
{
    ctl_acme_req_t *ar = calloc(1, sizeof(*ar));

    if (ar == NULL || p == NULL) {
        free(ar);
        return WF_ERROR;
    }
    ar->call = call;
    ar->req.handler = ctl_acme_on_reply;
    if (wf_port_request_add(p, &ar->req) != WF_OK) {
        free(ar);
        return WF_ERROR;
    }
    if (wf_port_send(p, type, ar->req.stream, payload, len, NULL, 0) != WF_OK) {
        wf_port_request_del(p, &ar->req);
        free(ar);
        return WF_ERROR;
    }
    return WF_OK;
}

/* ---- the router's challenge set -------------------------------------
 * The controller owns it (docs/internals/acme.md): the router holds a
 * copy, and a router main restarted gets it again, so an order in flight
 * survives.  One WF_MSG_ACME_TOKENS is in flight at a time (the router
 * parses each on a thread pool: two could swap).  Loop thread. */
static struct {
    char *text;            /* the set last handed out; NULL: none ("{}") */
    wf_acme_call_t *call;  /* the TOKENS call waiting for a router */
    wf_acme_call_t *sent;  /* the call req answers; NULL: a resend */
    wf_port_request_t req; /* registered while busy */
    wf_timer_t wait;       /* bounds call's wait for a router */
    bool busy;
    bool stale;     /* the router may not hold text */
    bool ready;     /* wait is initialised */
    bool stopping;  /* no router comes back: calls fail at once */
    wf_task_t stop; /* posted by wf_ctl_acme_stop() */
} ctl_chal;

static void ctl_chal_flush(void);
static void ctl_chal_on_wait(wf_timer_t *t);

static void
ctl_chal_init(void)
{
    if (!ctl_chal.ready) {
        wf_timer_init(&ctl_chal.wait, ctl_chal_on_wait);
        ctl_chal.ready = true;
    }
}

/* Ends the waiting call with rc. */
static void
ctl_chal_end(int rc)
{
    wf_acme_call_t *call = ctl_chal.call;

    ctl_chal_init();
    ctl_chal.call = NULL;
    if (ctl_chal.sent == call) {
        ctl_chal.sent = NULL; /* a late answer ends nothing */
    }
    wf_timer_stop(wf_loop_get(0), &ctl_chal.wait);
    if (call != NULL) {
        wf_acme_call_done(call, rc);
    }
}

/* No router came back in time: the attempt fails (and backs off). */
static void
ctl_chal_on_wait(wf_timer_t *t)
{
    wf_unused(t);
    wf_log_warn(0, "acme: no router took the challenges in %d ms",
                CTL_CHAL_WAIT_MS);
    ctl_chal_end(WF_ERROR);
}

/* The router is gone: the waiting call waits for the next one. */
static void
ctl_chal_wait(void)
{
    if (ctl_chal.stopping) {
        ctl_chal_end(WF_ERROR);
    } else if (ctl_chal.call != NULL) {
        wf_timer_set(wf_loop_get(0), &ctl_chal.wait, CTL_CHAL_WAIT_MS);
    }
}

static void
ctl_chal_on_reply(wf_port_request_t *req, wf_port_msg_t *msg, int status)
{
    wf_unused(req);
    ctl_chal.busy = false;
    if (status != WF_OK) {
        /* The router went away: its successor gets the set. */
        ctl_chal.stale = true;
        ctl_chal_wait();
        return;
    }
    if (ctl_chal.sent != NULL && ctl_chal.sent == ctl_chal.call) {
        ctl_chal_end(msg->type == WF_MSG_OK ? WF_OK : WF_ERROR);
    } else if (msg->type != WF_MSG_OK) {
        wf_log_warn(0, "acme: the router refused the challenge set");
    }
    ctl_chal.sent = NULL;
    ctl_chal_flush();
}

/* Sends the set when the router may not hold it and nothing is in flight;
 * with no router, the call waits for one (at most CTL_CHAL_WAIT_MS). */
static void
ctl_chal_flush(void)
{
    wf_port_t *p = wf_ctl_router_port();
    const char *text = ctl_chal.text != NULL ? ctl_chal.text : "{}";

    if (ctl_chal.busy || !ctl_chal.stale) {
        return;
    }
    ctl_chal.req.handler = ctl_chal_on_reply;
    if (p == NULL || wf_port_request_add(p, &ctl_chal.req) != WF_OK) {
        ctl_chal_wait();
        return;
    }
    if (wf_port_send(p, WF_MSG_ACME_TOKENS, ctl_chal.req.stream, text,
                     strlen(text), NULL, 0)
        != WF_OK) {
        wf_port_request_del(p, &ctl_chal.req);
        ctl_chal_wait(); /* the port is closing: the next router gets it */
        return;
    }
    ctl_chal.busy = true;
    ctl_chal.stale = false;
    ctl_chal.sent = ctl_chal.call;
}

/* A TOKENS call: the new set, answered once the router holds it. */
static void
ctl_chal_set(wf_acme_call_t *call)
{
    char *text = strdup(call->tokens);

    if (text == NULL) {
        wf_acme_call_done(call, WF_ERROR);
        return;
    }
    ctl_chal_init();
    free(ctl_chal.text);
    ctl_chal.text = text;
    ctl_chal.call = call;
    ctl_chal.stale = true;
    ctl_chal_flush();
}

void
wf_ctl_acme_router_ready(void)
{
    ctl_chal_init();
    wf_timer_stop(wf_loop_get(0), &ctl_chal.wait);
    ctl_chal.stale = true;
    ctl_chal_flush();
}

static void
ctl_chal_on_stop(wf_task_t *task)
{
    wf_unused(task);
    ctl_chal.stopping = true;
    if (!ctl_chal.busy) {
        ctl_chal_end(WF_ERROR); /* it may wait for a router */
    }
}

void
wf_ctl_acme_stop(void)
{
    ctl_chal.stop.handler = ctl_chal_on_stop;
    wf_task_post(wf_loop_get(0), &ctl_chal.stop);
}

void
wf_ctl_acme_call(wf_acme_call_t *call)
{
    char *payload;
    size_t len;
    int rc;

    if (call->kind == WF_ACME_CALL_TOKENS) {
        ctl_chal_set(call);
        return;
    }
    if (!wf_acme_entry_exists(call->name, strlen(call->name))) {
        rc = WF_ERROR; /* deleted meanwhile: nothing is stored again */
    } else {
        payload =
            wf_acme_store_payload(call->name, call->state, call->pem, &len);
        rc = payload != NULL ? ctl_acme_send(call, wf_ctl_main_port(),
                                             WF_MSG_ACME_STORE, payload, len)
                             : WF_ERROR;
        free(payload);
    }
    if (rc != WF_OK) {
        wf_acme_call_done(call, WF_ERROR);
    }
}
