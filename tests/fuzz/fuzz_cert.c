/* libFuzzer target for the certificate store's parser (control/cert.h):
 * the input is a PUT /certificates/NAME body.  A bundle it accepts must
 * have a description that serialises with a key and a non-empty chain;
 * one it refuses must say why.  Must never crash or leak.  Seeds:
 * tests/fuzz/cert-seeds/ (scripts/fuzz.sh). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/cert.h"
#include "core/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256] = "";
    json_t *info = NULL;
    char *text;

    if (wf_cert_parse((const char *)data, size, &info, why, sizeof(why))
        != WF_OK) {
        if (info != NULL || why[0] == '\0') {
            abort();
        }
        return 0;
    }
    if (!json_is_string(json_object_get(info, "key"))
        || json_array_size(json_object_get(info, "chain")) == 0) {
        abort();
    }
    text = json_dumps(info, JSON_COMPACT);
    if (text == NULL) {
        abort();
    }
    free(text);
    json_decref(info);
    return 0;
}
