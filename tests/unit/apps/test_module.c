/* A small language module for the runtime's tests (built as
 * build/tests-modules/test.wharf.so, never installed): it sees only
 * app_api.h, as a real module does.  Each of conf->threads workers pulls
 * requests and answers them:
 *   GET  /       200 "hello" in one respond(..., last = 1)
 *   POST /echo   200 with the request body, streamed with write()
 *   GET  /slow   sleeps 300 ms, then 200 "slow" (for graceful stops)
 * setup() fails when the config has "fail": true, as a module whose
 * application does not load. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/app_api.h"

static const wf_app_rt_t *tm_rt;

static int
tm_setup(const wf_app_rt_t *rt, wf_app_t *app, const wf_app_conf_t *conf,
         void **app_data)
{
    tm_rt = rt;
    *app_data = app;
    if (strstr(conf->json, "\"fail\": true") != NULL) {
        rt->log(WF_APP_LOG_ALERT, "test module: failing as asked");
        return WF_APP_ERROR;
    }
    rt->log(WF_APP_LOG_INFO, "test module: \"%s\" with %u threads", conf->name,
            conf->threads);
    return WF_APP_OK;
}

static int
tm_path_is(const wf_app_head_t *h, const char *path)
{
    return h->path.len == strlen(path)
           && memcmp(h->path.data, path, h->path.len) == 0;
}

static void
tm_echo(wf_app_req_t *req)
{
    char buf[16384];
    ssize_t n;
    int ok = 1;

    if (tm_rt->respond(req, 200, NULL, 0, NULL, 0, 0) != WF_APP_OK) {
        tm_rt->end(req, 0);
        return;
    }
    while ((n = tm_rt->read(req, buf, sizeof(buf))) > 0) {
        if (tm_rt->write(req, buf, (size_t)n) != n) {
            ok = 0;
            break;
        }
    }
    tm_rt->end(req, ok && n == 0);
}

static void
tm_serve(wf_app_req_t *req)
{
    static const wf_app_field_t ct[] = {
        {{"Content-Type", 12}, {"text/plain", 10}}};
    const wf_app_head_t *h = tm_rt->head(req);

    if (tm_path_is(h, "/echo")) {
        tm_echo(req);
        return;
    }
    if (tm_path_is(h, "/slow")) {
        usleep(300 * 1000);
        tm_rt->end(req,
                   tm_rt->respond(req, 200, ct, 1, "slow", 4, 1) == WF_APP_OK);
        return;
    }
    tm_rt->end(req,
               tm_rt->respond(req, 200, ct, 1, "hello", 5, 1) == WF_APP_OK);
}

static void *
tm_worker(void *arg)
{
    wf_app_worker_t *w = arg;
    wf_app_req_t *req;

    while (tm_rt->next(w, &req, -1) == WF_APP_OK) {
        tm_serve(req);
    }
    return NULL;
}

static int
tm_run(wf_app_t *app, void *app_data)
{
    pthread_t th[64];
    unsigned n = 0;

    (void)app_data;
    while (n < 64 && tm_rt->worker(app, n) != NULL) {
        if (pthread_create(&th[n], NULL, tm_worker, tm_rt->worker(app, n))
            != 0) {
            break;
        }
        n++;
    }
    for (unsigned i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
    }
    return 0;
}

const wf_app_module_t wf_app_module = {
    .abi = WF_APP_ABI,
    .type = "test",
    .version = "1.0",
    .setup = tm_setup,
    .run = tm_run,
};
