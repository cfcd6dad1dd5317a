/* libFuzzer target for the ACME client's HTTP response parser
 * (control/acme_http.h): the input is what an ACME server sent.  An
 * accepted response has a NUL-terminated body of the length it reports;
 * a refused one says why.  Must never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/acme_http.h"
#include "core/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    wf_acme_resp_t resp;
    char why[128] = "";

    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);
    buf[size] = '\0';
    if (wf_acme_resp_parse(buf, size, &resp, why, sizeof(why)) != WF_OK) {
        if (why[0] == '\0' || resp.body != NULL) {
            abort();
        }
        return 0;
    }
    if (resp.body == NULL || resp.len > size || resp.body[resp.len] != '\0') {
        abort();
    }
    wf_acme_resp_fini(&resp);
    return 0;
}
