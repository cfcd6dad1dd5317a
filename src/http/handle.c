/* Request handling: routing and the actions that need no module of their
 * own (pass, return). */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/req.h"
#include "http/respond.h"
#include "http/route.h"
#include "http/static.h"
#include "http/tpl.h"

/* Renders the Location of a return action into r->loc. */
static int
handle_render_location(wf_req_t *r, const wf_tpl_t *tpl)
{
    size_t n = wf_tpl_render(tpl, &r->rq, NULL, 0);

    r->loc = malloc(n + 1);
    if (r->loc == NULL) {
        return WF_ERROR;
    }
    wf_tpl_render(tpl, &r->rq, r->loc, n + 1);
    r->resp.location = wf_str_make(r->loc, n);
    return WF_OK;
}

static void
handle_return(wf_req_t *r, const wf_action_t *a)
{
    wf_resp_t *resp = &r->resp;

    if (a->location != NULL
        && handle_render_location(r, a->location) != WF_OK) {
        wf_req_respond_error(r, 503);
        return;
    }
    resp->status = a->status;
    if (a->status >= 400) {
        /* Error statuses get Unit's error page, as Unit's return does. */
        wf_resp_set_error_page(resp, a->status);
    }
    wf_req_respond(r);
}

static void
handle_pass(wf_req_t *r, const wf_action_t *a)
{
    const wf_action_t *next;

    if (++r->passes > WF_REQ_MAX_PASSES) {
        /* Routes that pass to each other in a loop. */
        wf_req_respond_error(r, 500);
        return;
    }
    next = wf_route_match(a->route, &r->rq);
    if (next == NULL) {
        wf_req_respond_error(r, 404);
        return;
    }
    wf_http_run_action(r, next);
}

void
wf_http_run_action(wf_req_t *r, const wf_action_t *a)
{
    switch (a->type) {
    case WF_ACTION_SHARE:
        wf_static_serve(r, a);
        return;
    case WF_ACTION_RETURN:
        handle_return(r, a);
        return;
    case WF_ACTION_PASS:
        handle_pass(r, a);
        return;
    case WF_ACTION_NTYPES:
        break;
    }
    wf_req_respond_error(r, 500);
}

void
wf_http_handle(wf_req_t *r)
{
    const wf_action_t *a =
        r->root != NULL ? wf_route_match(r->root, &r->rq) : NULL;

    if (a == NULL) {
        wf_req_respond_error(r, 404);
        return;
    }
    wf_http_run_action(r, a);
}
