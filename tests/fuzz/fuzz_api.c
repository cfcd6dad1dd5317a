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
    " \"applications\": {\"app\": {\"type\": \"python 3\", \"module\": "
    "\"wsgi\", \"processes\": {\"max\": 4, \"spare\": 1}},"
    "  \"tg\": {\"type\": \"python\", \"targets\": {\"a\": {\"module\": "
    "\"m\"}, \"b b\": {\"module\": \"m\", \"prefix\": \"/b\"}}}},"
    " \"settings\": {\"http\": {\"idle_timeout\": 30}}}";

/* What main would send: application types are checked against it. */
static const char fuzz_modules_text[] =
    "[{\"type\": \"python\", \"version\": \"3.11.2\", \"file\": \"/p\"},"
    " {\"type\": \"php\", \"version\": \"8.2.7\", \"file\": \"/q\"}]";

static const char *const fuzz_methods[] = {"GET",    "PUT",   "POST",
                                           "DELETE", "PATCH", ""};

static json_t *fuzz_conf;
static json_t *fuzz_modules;

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
    if (reply->restart != NULL
        && (reply->status != 200 || reply->conf != NULL
            || json_object_get(json_object_get(fuzz_conf, "applications"),
                               reply->restart)
                   == NULL)) {
        abort(); /* a restart names an application of the config */
    }
    if (reply->conf == NULL) {
        return;
    }
    if (reply->status != 200 || json_equal(reply->conf, fuzz_conf)) {
        abort(); /* a change to apply is always a real, accepted change */
    }
    snap = wf_conf_compile(reply->conf, &err);
    if (snap == NULL
        || wf_conf_check(reply->conf, fuzz_modules, &err) != WF_OK) {
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
        fuzz_modules = json_loads(fuzz_modules_text, 0, NULL);
        if (fuzz_conf == NULL || fuzz_modules == NULL) {
            abort();
        }
        wf_api_modules_set(fuzz_modules);
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
