/* The exchange layer: what endpoints call, turned into mux operations, and
 * the protocol-independent parts of a response.  See
 * docs/internals/exchange.md. */
#include "http/exchange.h"

#include <string.h>

#include "core/common.h"
#include "http/mux.h"
#include "http/respond.h"

void
wf_xchg_init(wf_req_t *r, wf_mux_t *mux, wf_loop_t *loop)
{
    r->mux = mux;
    r->body_wanted = false;
    r->on_abort = NULL;
    r->app = NULL;
    r->proxy = NULL;
    wf_chan_init(&r->req_body, loop, WF_XCHG_CHAN_LIMIT);
    wf_chan_init(&r->resp_body, loop, WF_XCHG_CHAN_LIMIT);
}

void
wf_xchg_fini(wf_req_t *r)
{
    wf_file_unref(r->resp.file);
    r->resp.file = NULL;
    wf_chan_fini(&r->req_body);
    wf_chan_fini(&r->resp_body);
}

bool
wf_xchg_has_body(const wf_req_t *r)
{
    return r->head.chunked || r->head.content_length > 0;
}

void
wf_xchg_body_read(wf_req_t *r, wf_chan_cb on_readable)
{
    wf_chan_set_readable(&r->req_body, on_readable);
    r->body_wanted = true;
    if (!wf_xchg_has_body(r)) {
        wf_chan_close(&r->req_body);
        return;
    }
    r->mux->ops->body_start(r);
}

void
wf_xchg_stream_start(wf_req_t *r, wf_chan_cb on_writable)
{
    wf_chan_set_writable(&r->resp_body, on_writable);
    r->resp.stream = true;
    if (!r->resp.stream_length) {
        r->resp.content_length = 0;
    }
    wf_req_respond(r);
}

int
wf_xchg_ctl(wf_req_t *r, int op, void *arg)
{
    if (op < 0 || op >= MUX_CTL_NOPS || r->mux->ops->ctl == NULL) {
        return WF_DECLINED;
    }
    return r->mux->ops->ctl(r->mux, (wf_mux_ctl_t)op, arg);
}

void
wf_req_respond(wf_req_t *r)
{
    wf_resp_t *resp = &r->resp;

    if (wf_unlikely(r->last != NULL && r->last->nresp_fields > 0)
        && resp->status >= 200 && resp->status < 400) {
        resp->fields = r->last;
        resp->fields_rq = &r->rq;
    }
    r->mux->ops->respond(r);
}

void
wf_req_respond_error(wf_req_t *r, unsigned status)
{
    wf_resp_t *resp = &r->resp;

    wf_file_unref(resp->file);
    memset(resp, 0, sizeof(*resp));
    resp->status = status;
    resp->head_only = r->head.method_id == WF_HTTP_HEAD;
    wf_resp_set_error_page(resp, status);
    r->mux->ops->respond(r);
}

void
wf_req_run_job(wf_req_t *r, wf_job_cb work, wf_req_job_cb done)
{
    r->job_done = done;
    r->job.work = work;
    r->mux->ops->job_start(r);
}
