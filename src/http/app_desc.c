/* Looking applications up by the names a "pass" gives, for the controller
 * (fixed passes, checked once) and the router (passes with variables,
 * resolved per request). */
#include "http/app_desc.h"

#include <string.h>

#include "core/common.h"
#include "http/var.h"

#define APP_PASS_MAX 1024 /* a rendered "pass" resolved per request */

int
wf_app_desc_pass_split(wf_str_t pass, char *buf, size_t cap, wf_str_t seg[3])
{
    const char *p = pass.data;
    const char *end = pass.data + pass.len;
    size_t used = 0;

    memset(seg, 0, 3 * sizeof(seg[0]));
    if (pass.len == 0 || cap < pass.len + 1) {
        return WF_DECLINED; /* an empty value is one empty segment */
    }
    for (unsigned k = 0;; k++) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash != NULL ? slash : end;
        size_t len;

        if (k == 3 || stop == p
            || !wf_var_decode_strict(buf + used, p, (size_t)(stop - p), false,
                                     &len)) {
            return WF_DECLINED;
        }
        buf[used + len] = '\0';
        seg[k] = wf_str_make(buf + used, len);
        used += len + 1;
        if (slash == NULL) {
            return WF_OK;
        }
        p = slash + 1;
    }
}

const wf_app_desc_t *
wf_app_desc_find(const wf_app_desc_t *apps, unsigned n, wf_str_t name)
{
    for (unsigned i = 0; i < n; i++) {
        if (wf_str_eq(apps[i].name, name)) {
            return &apps[i];
        }
    }
    return NULL;
}

int
wf_app_desc_target(const wf_app_desc_t *app, wf_str_t target)
{
    for (unsigned i = 0; i < app->ntargets; i++) {
        if (wf_str_eq(app->targets[i], target)) {
            return (int)i;
        }
    }
    return -1;
}

const wf_app_desc_t *
wf_app_desc_find_pass(const wf_app_desc_t *apps, unsigned n, wf_str_t pass,
                      unsigned *target)
{
    char buf[APP_PASS_MAX + 1];
    wf_str_t seg[3];
    const wf_app_desc_t *app;
    int t = 0;

    if (pass.len > APP_PASS_MAX
        || wf_app_desc_pass_split(pass, buf, sizeof(buf), seg) != WF_OK
        || !wf_str_eq(seg[0], wf_string("applications")) || seg[1].len == 0) {
        return NULL;
    }
    app = wf_app_desc_find(apps, n, seg[1]);
    if (app != NULL && seg[2].len > 0) {
        t = wf_app_desc_target(app, seg[2]);
    }
    if (app == NULL || t < 0) {
        return NULL;
    }
    *target = (unsigned)t;
    return app;
}
