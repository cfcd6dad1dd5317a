/* PHP's start and end under the module's own SAPI: the sapi_module_struct
 * (its request callbacks are in php_req.c), the ini file and defaults,
 * options.admin and options.user, the "wharf" extension
 * (fastcgi_finish_request(), the chdir() hook) and the limits.timeout
 * watchdog.  docs/internals/php.md. */
#include "apps/php/php_sapi.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The SAPI's name: Unit's, so that code that looks at PHP_SAPI and
 * OPcache (which runs for "cli-server" with opcache.enable, not only with
 * opcache.enable_cli) see what they see under Unit. */
#define PHP_SAPI_NAME   "cli-server"
#define PHP_SAPI_PRETTY "wharf"

/* A log line holds about 2 KiB (Wharf's log): a longer PHP message goes
 * in several lines, cut at line ends where it can be. */
#define PHP_LOG_PIECE 1536

/* The module's state for PHP's callbacks, which get no context pointer. */
wf_php_app_t *wf_php_app;

static zif_handler php_chdir_handler;
static void (*php_interrupt_prev)(zend_execute_data *ex);

/* ---- logging ------------------------------------------------------------ */

void
wf_php_log_text(wf_app_log_level_t level, const char *prefix, const char *text)
{
    size_t n = strlen(text);

    while (n > 0 && text[n - 1] == '\n') {
        n--;
    }
    do {
        size_t take = n;

        if (take > PHP_LOG_PIECE) {
            take = PHP_LOG_PIECE;
            while (take > 1 && text[take - 1] != '\n') {
                take--;
            }
            if (take <= 1) {
                take = PHP_LOG_PIECE;
            }
        }
        wf_php_app->rt->log(
            level, "%s%.*s", prefix,
            (int)(take > 0 && text[take - 1] == '\n' ? take - 1 : take), text);
        text += take;
        n -= take;
        prefix = "";
    } while (n > 0);
}

/* log_message: PHP's error log lines (log_errors without error_log), at
 * Unit's level and with Unit's prefix. */
static void
php_log_message(const char *message, int syslog_type)
{
    (void)syslog_type;
    wf_php_log_text(WF_APP_LOG_NOTICE, "php message: ", message);
}

/* ---- the "wharf" extension ---------------------------------------------- */

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_fastcgi_finish_request, 0, 0,
                                        _IS_BOOL, 0)
ZEND_END_ARG_INFO()

/* fastcgi_finish_request(): the response ends here (what is buffered is
 * sent, the request is ended complete) and the script goes on; its later
 * output is dropped, as in PHP-FPM and Unit. */
static ZEND_FUNCTION(fastcgi_finish_request)
{
    ZEND_PARSE_PARAMETERS_NONE();
    if (!wf_php_req_finish_early()) {
        RETURN_FALSE;
    }
    RETURN_TRUE;
}

/* chdir() from a script: the next request changes to its own script's
 * directory again (the module skips a chdir() to where it already is). */
static ZEND_NAMED_FUNCTION(php_chdir_hook)
{
    wf_php_app->cwd[0] = '\0';
    php_chdir_handler(INTERNAL_FUNCTION_PARAM_PASSTHRU);
}

static const zend_function_entry php_ext_functions[] = {ZEND_FE(
    fastcgi_finish_request, arginfo_fastcgi_finish_request) ZEND_FE_END};

static PHP_MINIT_FUNCTION(wharf)
{
    zend_function *f;

    (void)type;
    (void)module_number;
    f = zend_hash_str_find_ptr(CG(function_table), "chdir", 5);
    if (f == NULL) {
        return FAILURE;
    }
    php_chdir_handler = f->internal_function.handler;
    f->internal_function.handler = php_chdir_hook;
    return SUCCESS;
}

static zend_module_entry php_ext_module = {
    STANDARD_MODULE_HEADER,
    "wharf",
    php_ext_functions,
    PHP_MINIT(wharf),
    NULL,
    NULL,
    NULL,
    NULL,
    WF_VERSION_STRING,
    STANDARD_MODULE_PROPERTIES,
};

/* ---- limits.timeout ------------------------------------------------------ */

/* limits.timeout bounds a request in the router, which answers 503 and
 * aborts the request; the script would go on until it next writes.  A
 * timer of the module's own (CLOCK_MONOTONIC, so a sleep() counts, unlike
 * max_execution_time's CPU clock) makes the engine stop the script at the
 * next VM interrupt check with a fatal error, so that the process serves
 * the next request.  It fires a little after the router's timer. */
#define PHP_TIMEOUT_SIGNAL (SIGRTMIN + 4)
#define PHP_TIMEOUT_GRACE  250 /* ms after the router's limits.timeout */

static timer_t php_timer;
static bool php_timer_made;
static volatile sig_atomic_t php_timed_out;

static void
php_on_timeout_signal(int sig)
{
    (void)sig;
    php_timed_out = 1;
    zend_atomic_bool_store_ex(&EG(vm_interrupt), true);
}

/* The engine's interrupt hook: runs on the script's stack, between
 * opcodes, where a fatal error is as safe as max_execution_time's. */
static void
php_interrupt(zend_execute_data *ex)
{
    if (php_timed_out) {
        php_timed_out = 0;
        zend_error_noreturn(E_ERROR,
                            "The request exceeded limits.timeout (%u ms)",
                            wf_php_app->timeout_ms);
    }
    if (php_interrupt_prev != NULL) {
        php_interrupt_prev(ex);
    }
}

static int
php_timer_create(wf_php_app_t *app)
{
    struct sigevent sev;
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = php_on_timeout_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = PHP_TIMEOUT_SIGNAL;
    if (sigaction(PHP_TIMEOUT_SIGNAL, &sa, NULL) == -1
        || timer_create(CLOCK_MONOTONIC, &sev, &php_timer) == -1) {
        app->rt->log(WF_APP_LOG_ALERT, "timer_create() failed: %s",
                     strerror(errno));
        return -1;
    }
    php_timer_made = true;
    php_interrupt_prev = zend_interrupt_function;
    zend_interrupt_function = php_interrupt;
    return 0;
}

void
wf_php_timer_arm(bool on)
{
    struct itimerspec its;
    unsigned ms = wf_php_app->timeout_ms + PHP_TIMEOUT_GRACE;

    if (!php_timer_made) {
        return;
    }
    memset(&its, 0, sizeof(its));
    if (on) {
        its.it_value.tv_sec = ms / 1000;
        its.it_value.tv_nsec = (long)(ms % 1000) * 1000000;
    } else {
        php_timed_out = 0;
    }
    timer_settime(php_timer, 0, &its, NULL);
}

/* ---- ini ----------------------------------------------------------------- */

/* Before php.ini is read: the module's defaults, which php.ini and the
 * options override.  Uploads go under --tmpdir (the rule; PHP's
 * own default is the system's temporary directory). */
static void
php_ini_defaults(HashTable *h)
{
    const char *tmpdir = wf_php_app->conf->tmpdir;
    zval v;

    if (tmpdir == NULL || tmpdir[0] == '\0') {
        return;
    }
    ZVAL_NEW_STR(&v, zend_string_init(tmpdir, strlen(tmpdir), 1));
    zend_hash_str_update(h, "upload_tmp_dir", sizeof("upload_tmp_dir") - 1, &v);
}

/* Sets an ini entry for good, as if php.ini had it, at level type
 * (ZEND_INI_SYSTEM: the script cannot change it; ZEND_INI_USER: it can,
 * with ini_set(), until the request ends).  Unit's way: the entry's value
 * and its modifiable level are replaced once, outside any request. */
static int
php_ini_alter(const char *name, const char *value, int type)
{
    zend_ini_entry *e;
    zend_string *zs;

    e = zend_hash_str_find_ptr(EG(ini_directives), name, strlen(name));
    if (e == NULL) {
        return -1;
    }
    zs = zend_string_init(value, strlen(value), 1);
    if (e->on_modify != NULL
        && e->on_modify(e, zs, e->mh_arg1, e->mh_arg2, e->mh_arg3,
                        ZEND_INI_STAGE_ACTIVATE)
               != SUCCESS) {
        zend_string_release(zs);
        return -1;
    }
    e->value = zs;
    e->modifiable = (uint8_t)type;
    return 0;
}

/* disable_classes="a, b": each class, as PHP does at startup. */
static void
php_ini_disable_classes(wf_php_app_t *app, const char *list)
{
    const char *p = list;

    while (*p != '\0') {
        size_t n;

        p += strspn(p, " ,");
        n = strcspn(p, " ,");
        if (n > 0 && zend_disable_class(p, n) != SUCCESS) {
            app->rt->log(WF_APP_LOG_ERR,
                         "PHP: failed to disable \"%.*s\": no such class",
                         (int)n, p);
        }
        p += n;
    }
}

static void
php_ini_options(wf_php_app_t *app, const json_t *o, int type)
{
    const char *name;
    json_t *v;

    json_object_foreach((json_t *)o, name, v)
    {
        const char *value = json_string_value(v);

        if (value == NULL || php_ini_alter(name, value, type) != 0) {
            app->rt->log(WF_APP_LOG_ERR, "setting PHP option \"%s: %s\" failed",
                         name, value != NULL ? value : "");
            continue;
        }
        if (strcmp(name, "disable_functions") == 0) {
            zend_disable_functions(value);
        } else if (strcmp(name, "disable_classes") == 0) {
            php_ini_disable_classes(app, value);
        }
    }
}

/* ---- start and stop ------------------------------------------------------ */

static int
php_sapi_startup(sapi_module_struct *m)
{
    return php_module_startup(m, &php_ext_module);
}

static sapi_module_struct php_sapi = {
    .name = (char *)PHP_SAPI_NAME,
    .pretty_name = (char *)PHP_SAPI_PRETTY,
    .startup = php_sapi_startup,
    .shutdown = php_module_shutdown_wrapper,
    .ub_write = wf_php_ub_write,
    .flush = wf_php_flush,
    .sapi_error = php_error,
    .send_headers = wf_php_send_headers,
    .read_post = wf_php_read_post,
    .read_cookies = wf_php_read_cookies,
    .register_server_variables = wf_php_register_variables,
    .log_message = php_log_message,
    .php_ini_ignore_cwd = 1,
    .ini_defaults = php_ini_defaults,
};

int
wf_php_sapi_start(wf_php_app_t *app, const json_t *options)
{
    wf_php_app = app;
#ifdef ZEND_SIGNALS
    zend_signal_startup();
#endif
    sapi_startup(&php_sapi);
    php_sapi.php_ini_path_override = app->ini_file;

    if (php_sapi.startup(&php_sapi) == FAILURE) {
        app->rt->log(WF_APP_LOG_ALERT,
                     "failed to initialize SAPI module and extension");
        return -1;
    }
    if (options != NULL) {
        php_ini_options(app, json_object_get(options, "admin"),
                        ZEND_INI_SYSTEM);
        php_ini_options(app, json_object_get(options, "user"), ZEND_INI_USER);
    }
    if (app->timeout_ms > 0 && php_timer_create(app) != 0) {
        return -1;
    }
    return 0;
}

void
wf_php_sapi_stop(wf_php_app_t *app)
{
    (void)app;
    if (php_timer_made) {
        timer_delete(php_timer);
        php_timer_made = false;
    }
    php_sapi.shutdown(&php_sapi);
    sapi_shutdown();
}
