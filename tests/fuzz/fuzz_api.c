/* libFuzzer target for the control API: the first byte picks the method,
 * the bytes up to the first NUL are the request target, the rest is the
 * body.  Every request runs against a fixed valid config; a new config the
 * API returns must compile, and every reply must serialise.  Must never
 * crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/api.h"
#include "control/conf.h"
#include "core/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_conf_text[] =
    "{\"listeners\": {\"127.0.0.1:8080\": {\"pass\": \"routes/main\"},"
    "  \"unix:/tmp/a/b\": {\"pass\": \"routes/main\"}},"
    " \"routes\": {\"main\": [{\"match\": {\"uri\": \"/static/*\"},"
    "   \"action\": {\"share\": \"/srv$uri\", \"fallback\": {\"return\": "
    "404}}},"
    "  {\"action\": {\"return\": 301, \"location\": \"/\"}}]},"
    " \"settings\": {\"http\": {\"idle_timeout\": 30}}}";

static const char *const fuzz_methods[] = {"GET",    "PUT",   "POST",
                                           "DELETE", "PATCH", ""};

static json_t *fuzz_conf;

static void
fuzz_check(const wf_api_reply_t *reply)
{
    wf_conf_error_t err;
    wf_conf_t *snap;
    char *text = wf_api_reply_text(reply, NULL);

    if (reply->body == NULL || text == NULL) {
        abort();
    }
    free(text);
    if (reply->conf == NULL) {
        return;
    }
    if (reply->status != 200 || json_equal(reply->conf, fuzz_conf)) {
        abort(); /* a change to apply is always a real, accepted change */
    }
    snap = wf_conf_compile(reply->conf, &err);
    if (snap == NULL) {
        abort();
    }
    wf_conf_destroy(snap);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *method;
    const uint8_t *nul;
    size_t tlen;
    wf_api_reply_t reply;

    if (fuzz_conf == NULL) {
        fuzz_conf = json_loads(fuzz_conf_text, 0, NULL);
        if (fuzz_conf == NULL) {
            abort();
        }
    }
    if (size == 0) {
        return 0;
    }
    method = fuzz_methods[data[0] % wf_nitems(fuzz_methods)];
    data++;
    size--;
    nul = memchr(data, '\0', size);
    tlen = nul != NULL ? (size_t)(nul - data) : size;
    wf_api_handle(fuzz_conf, NULL, wf_str_make(method, strlen(method)),
                  wf_str_make((const char *)data, tlen),
                  (const char *)data + tlen + (nul != NULL),
                  size - tlen - (nul != NULL), &reply);
    fuzz_check(&reply);
    wf_api_reply_fini(&reply);
    return 0;
}
