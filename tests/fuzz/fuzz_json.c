/* libFuzzer target for the config path: the lenient-JSON pre-pass, jansson,
 * the validators and the route compiler, then matching on what compiled.
 * Must never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/conf.h"
#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The pre-pass only turns bytes into spaces and never touches newlines, so
 * that jansson's offsets stay those of the input. */
static void
fuzz_prepass(const uint8_t *data, size_t size)
{
    wf_json_error_t err;
    char *buf = malloc(size + 1);

    if (buf == NULL) {
        return;
    }
    memcpy(buf, data, size);
    if (wf_json_prepass(buf, size, &err) == 0) {
        for (size_t i = 0; i < size; i++) {
            if (buf[i] != (char)data[i] && (buf[i] != ' ' || data[i] == '\n')) {
                abort();
            }
        }
    } else if (err.offset > size) {
        abort();
    }
    free(buf);
}

static void
fuzz_match(const wf_conf_t *conf)
{
    static const char *const uris[] = {"/", "/index.php", "/static/a.css", ""};
    char out[64];

    for (size_t r = 0; r < conf->nroutes; r++) {
        for (size_t u = 0; u < sizeof(uris) / sizeof(uris[0]); u++) {
            wf_route_req_t rq = {
                .method = wf_string("GET"),
                .host = wf_string("Example.com."),
                .uri = wf_str_make(uris[u], strlen(uris[u])),
            };
            const wf_action_t *act = wf_route_match(conf->routes[r], &rq);

            for (; act != NULL; act = act->fallback) {
                for (size_t i = 0; i < act->nshares; i++) {
                    wf_tpl_render(act->shares[i], &rq, out, sizeof(out));
                }
                if (act->location != NULL) {
                    wf_tpl_render(act->location, &rq, out, sizeof(out));
                }
            }
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wf_conf_error_t err;
    wf_conf_t *conf;

    fuzz_prepass(data, size);
    conf = wf_conf_load((const char *)data, size, &err);
    if (conf != NULL) {
        fuzz_match(conf);
    }
    wf_conf_destroy(conf);
    return 0;
}
