#include "process/ctl_acme.h"

#include <stdlib.h>
#include <string.h>

#include "control/cert.h"
#include "core/common.h"
#include "core/log.h"
#include "process/controller.h"
#include "process/port.h"
#include "process/port_msg_types.h"

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

void
wf_ctl_acme_call(wf_acme_call_t *call)
{
    char *payload;
    size_t len;
    int rc;

    if (call->kind == WF_ACME_CALL_TOKENS) {
        rc = ctl_acme_send(call, wf_ctl_router_port(), WF_MSG_ACME_TOKENS,
                           call->tokens, strlen(call->tokens));
    } else if (!wf_acme_entry_exists(call->name, strlen(call->name))) {
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
