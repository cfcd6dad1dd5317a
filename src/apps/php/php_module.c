/* The PHP language module: its wf_app_module_t, the app's options as Unit
 * reads them (root, script, index, options, targets, limits.timeout),
 * PHP's start (php_sapi.c) and the worker loop.  docs/internals/php.md. */
#include "apps/php/php_sapi.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int php_setup(const wf_app_rt_t *rt, wf_app_t *app,
                     const wf_app_conf_t *conf, void **app_data);
static int php_run(wf_app_t *app, void *app_data);

__attribute__((visibility("default"))) const wf_app_module_t wf_app_module = {
    .abi = WF_APP_ABI,
    .type = "php",
    .version = PHP_VERSION,
    .setup = php_setup,
    .run = php_run,
};

/* ---- targets ------------------------------------------------------------- */

static void
php_trim_trailing_slashes(char *s, size_t *len)
{
    while (*len > 0 && s[*len - 1] == '/') {
        s[--*len] = '\0';
    }
}

/* "script": root/script made real, which must stay under root. */
static int
php_target_script(wf_php_app_t *app, wf_php_target_t *t, const char *script)
{
    char *tmp, *slash;

    script += strspn(script, "/");
    tmp = malloc(t->root_len + 1 + strlen(script) + 1);
    if (tmp == NULL) {
        return -1;
    }
    sprintf(tmp, "%s/%s", t->root, script);
    t->script_filename = realpath(tmp, NULL);
    if (t->script_filename == NULL) {
        app->rt->log(WF_APP_LOG_ALERT, "script realpath(%s) failed: %s", tmp,
                     strerror(errno));
        free(tmp);
        return -1;
    }
    free(tmp);
    t->script_filename_len = strlen(t->script_filename);
    if (t->script_filename_len <= t->root_len
        || strncmp(t->script_filename, t->root, t->root_len) != 0
        || t->script_filename[t->root_len] != '/') {
        app->rt->log(WF_APP_LOG_ALERT, "script is not under php root");
        return -1;
    }
    t->script_name = t->script_filename + t->root_len;
    t->script_name_len = t->script_filename_len - t->root_len;

    t->script_dirname = strdup(t->script_filename);
    if (t->script_dirname == NULL) {
        return -1;
    }
    slash = strrchr(t->script_dirname, '/');
    slash[1] = '\0';
    return 0;
}

/* A target's root, script and index from o (the app object without
 * "targets", or one entry of it). */
static int
php_target_set(wf_php_app_t *app, wf_php_target_t *t, const json_t *o)
{
    const char *root = json_string_value(json_object_get(o, "root"));
    const char *script = json_string_value(json_object_get(o, "script"));
    const char *index = json_string_value(json_object_get(o, "index"));

    if (root == NULL) {
        app->rt->log(WF_APP_LOG_ALERT, "PHP: no \"root\"");
        return -1;
    }
    t->root = realpath(root, NULL);
    if (t->root == NULL) {
        app->rt->log(WF_APP_LOG_ALERT, "root realpath(%s) failed: %s", root,
                     strerror(errno));
        return -1;
    }
    t->root_len = strlen(t->root);
    php_trim_trailing_slashes(t->root, &t->root_len);

    if (script != NULL) {
        return php_target_script(app, t, script);
    }
    t->index = strdup(index != NULL ? index : "index.php");
    if (t->index == NULL) {
        return -1;
    }
    t->index_len = strlen(t->index);
    return 0;
}

/* The targets in conf->targets' order (wf_app_head_t.target_index's), or
 * the app object itself. */
static int
php_targets_set(wf_php_app_t *app, const json_t *root)
{
    const json_t *targets = json_object_get(root, "targets");
    unsigned n = json_is_object(targets) ? app->conf->ntargets : 1;

    /* "targets": {} is valid (Unit starts such an app too); its requests
     * get 503 (wf_php_request_serve()). */
    app->ntargets = n;
    app->targets = calloc(n > 0 ? n : 1, sizeof(wf_php_target_t));
    if (app->targets == NULL) {
        app->rt->log(WF_APP_LOG_ALERT, "Failed to allocate memory");
        return -1;
    }
    if (!json_is_object(targets)) {
        return php_target_set(app, &app->targets[0], root);
    }
    for (unsigned i = 0; i < n; i++) {
        const json_t *o = json_object_get(targets, app->conf->targets[i]);

        if (!json_is_object(o)) {
            app->rt->log(WF_APP_LOG_ALERT, "PHP: target #%u is missing", i);
            return -1;
        }
        if (php_target_set(app, &app->targets[i], o) != 0) {
            return -1;
        }
    }
    return 0;
}

static void
php_app_free(wf_php_app_t *app)
{
    for (unsigned i = 0; app->targets != NULL && i < app->ntargets; i++) {
        wf_php_target_t *t = &app->targets[i];

        free(t->root);
        free(t->index);
        free(t->script_filename);
        free(t->script_dirname);
    }
    free(app->targets);
    free(app->ini_file);
    free(app);
}

/* ---- setup and run ------------------------------------------------------ */

/* Extensions that php.ini loads (mysqli.so...) resolve PHP's symbols from
 * the global scope, as in the php binary: make libphp's global whatever
 * flags the runtime loaded this module with. */
static void
php_lib_global(void)
{
    Dl_info info;

    if (dladdr((void *)php_request_startup, &info) != 0
        && info.dli_fname != NULL) {
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
    }
}

static void
php_conf_read(wf_php_app_t *app, const json_t *root)
{
    const json_t *limits = json_object_get(root, "limits");
    const json_t *timeout = json_object_get(limits, "timeout");
    const char *file;

    if (json_is_number(timeout) && json_number_value(timeout) > 0) {
        app->timeout_ms = (unsigned)(json_number_value(timeout) * 1000);
    }
    /* A relative options.file is relative to working_directory, which is
     * already the process's directory (Unit joins the two). */
    file = json_string_value(
        json_object_get(json_object_get(root, "options"), "file"));
    if (file != NULL) {
        app->ini_file = strdup(file);
    }
}

static int
php_setup(const wf_app_rt_t *rt, wf_app_t *app, const wf_app_conf_t *conf,
          void **app_data)
{
    wf_php_app_t *a;
    json_error_t jerr;
    json_t *root;

    root = json_loads(conf->json, 0, &jerr);
    if (!json_is_object(root)) {
        rt->log(WF_APP_LOG_ALERT, "PHP: bad application config: %s", jerr.text);
        json_decref(root);
        return WF_APP_ERROR;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        rt->log(WF_APP_LOG_ALERT, "Failed to allocate memory");
        json_decref(root);
        return WF_APP_ERROR;
    }
    a->rt = rt;
    a->app = app;
    a->conf = conf;
    php_conf_read(a, root);

    php_lib_global();
    if (php_targets_set(a, root) != 0
        || wf_php_sapi_start(a, json_object_get(root, "options")) != 0) {
        json_decref(root);
        php_app_free(a);
        return WF_APP_ERROR;
    }
    json_decref(root);
    *app_data = a;
    return WF_APP_OK;
}

/* One worker: Debian's libphp has no thread safety (no ZTS), so one
 * request at a time on this thread, as Unit's PHP module. */
static int
php_run(wf_app_t *app, void *app_data)
{
    wf_php_app_t *a = app_data;
    wf_app_worker_t *w = a->rt->worker(app, 0);
    int status = 0;

    for (;;) {
        wf_app_req_t *req = NULL;
        int rc = a->rt->next(w, &req, -1);

        if (rc == WF_APP_OK) {
            wf_php_request_serve(a, req);
        } else if (rc == WF_APP_DONE) {
            break;
        } else if (rc != WF_APP_AGAIN) {
            status = 1;
            break;
        }
    }
    wf_php_sapi_stop(a);
    php_app_free(a);
    return status;
}
