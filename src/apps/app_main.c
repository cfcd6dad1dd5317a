/* The app process's entry point (app_main.h): loads the language module,
 * builds the module's view of its config, and runs it over the runtime of
 * app_rt.c.  docs/internals/apps.md, "The app process". */
#include "apps/app_main.h"

#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/app_api.h"
#include "apps/app_rt.h"
#include "core/common.h"
#include "core/log.h"

/* For the signal handlers: the runtime, once it exists, and whether the
 * module is serving (a TERM before that ends the process at once). */
static wf_app_t *app_main_app;
static atomic_bool app_main_running;

static void
app_main_on_signal(int signo)
{
    wf_app_t *app = app_main_app;

    /* Still loading: nothing is in flight, so every stop ends the process
     * now.  A QUIT must not wait for the load either: a module's setup
     * may take minutes (a Python import) and may not return early on a
     * signal (Python resumes an interrupted sleep, PEP 475), and main
     * would kill us after MAIN_STOP_MS.  QUIT is a clean stop (code 0);
     * TERM and INT (^C with --no-daemon, DESIGN.md §2) are fast ones. */
    if (!atomic_load(&app_main_running)) {
        _exit(signo == SIGQUIT ? 0 : 1);
    }
    if (app != NULL) {
        wf_app_rt_stop(app, signo == SIGQUIT);
    }
}

static int
app_main_signals(void)
{
    struct sigaction sa;
    sigset_t set;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = app_main_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* waits are woken by the runtime's eventfd */
    if (sigaction(SIGQUIT, &sa, NULL) == -1
        || sigaction(SIGTERM, &sa, NULL) == -1
        || sigaction(SIGINT, &sa, NULL) == -1) {
        wf_log_alert(errno, "app: sigaction() failed");
        return WF_ERROR;
    }
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    return WF_OK;
}

/* The config's "targets" names, in the config's order (jansson keeps
 * insertion order), which is the order of wf_app_head_t.target_index.
 * The strings live as long as the process. */
static int
app_main_conf(const wf_app_start_t *st, wf_app_conf_t *conf)
{
    json_error_t err;
    json_t *root, *targets, *threads;
    const char *key;
    json_t *v;
    unsigned i = 0;

    *conf = (wf_app_conf_t){.name = st->name,
                            .json = st->conf_json,
                            .threads = st->slots,
                            .tmpdir = st->tmpdir};
    root = json_loads(st->conf_json, 0, &err);
    if (root == NULL || !json_is_object(root)) {
        wf_log_alert(0, "app \"%s\": bad config JSON: %s", st->name,
                     root == NULL ? err.text : "not an object");
        json_decref(root);
        return WF_ERROR;
    }
    threads = json_object_get(root, "threads");
    if (threads != NULL
        && (!json_is_integer(threads)
            || json_integer_value(threads) != (json_int_t)st->slots)) {
        wf_log_warn(0,
                    "app \"%s\": \"threads\" differs from the %u slots "
                    "the router made; using %u",
                    st->name, st->slots, st->slots);
    }
    targets = json_object_get(root, "targets");
    if (json_is_object(targets) && json_object_size(targets) > 0) {
        conf->ntargets = (unsigned)json_object_size(targets);
        conf->targets = wf_xcalloc(conf->ntargets, sizeof(char *));
        json_object_foreach(targets, key, v)
        {
            conf->targets[i++] = wf_xstrdup(key);
        }
    }
    json_decref(root);
    return WF_OK;
}

static const wf_app_module_t *
app_main_module_load(const char *file)
{
    const wf_app_module_t *m;
    void *h;

    /* RTLD_GLOBAL: the language's own extension modules (Python's .so
     * files) find the interpreter's symbols through the module's
     * dependencies. */
    h = dlopen(file, RTLD_NOW | RTLD_GLOBAL);
    if (h == NULL) {
        wf_log_alert(0, "app: dlopen(\"%s\") failed: %s", file, dlerror());
        return NULL;
    }
    m = dlsym(h, WF_APP_MODULE_SYMBOL);
    if (m == NULL) {
        wf_log_alert(0, "app: \"%s\" has no %s symbol", file,
                     WF_APP_MODULE_SYMBOL);
        return NULL;
    }
    if (m->abi != WF_APP_ABI || m->setup == NULL || m->run == NULL) {
        wf_log_alert(0, "app: \"%s\" has module ABI %u, not %u", file, m->abi,
                     WF_APP_ABI);
        return NULL;
    }
    return m;
}

/* App processes run SCHED_BATCH (every thread they make inherits it): a
 * request the router hands over does not preempt the router on its CPU,
 * so the router finishes its round and the app then serves the whole
 * batch, instead of two context switches per handover.  The app keeps
 * its fair share of CPU; only wake-up preemption is given up (see
 * docs/internals/apps.md, "Measured costs"). */
static void
app_main_sched(void)
{
    struct sched_param sp = {.sched_priority = 0};

    if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0) {
        wf_log(WF_LOG_INFO, errno, "app: sched_setscheduler() failed");
    }
}

int
wf_app_main(const wf_app_start_t *st)
{
    const wf_app_module_t *m;
    wf_app_conf_t conf;
    void *app_data = NULL;
    wf_app_t *app;
    int status;

    if (app_main_conf(st, &conf) != WF_OK) {
        for (unsigned i = 0; i < st->slots * st->router_threads; i++) {
            close(st->fds[i]);
        }
        return 1;
    }
    app = wf_app_rt_create(&conf, st->slots, st->router_threads, st->fds);
    if (app == NULL) {
        return 1;
    }
    app_main_app = app;
    app_main_sched();
    if (app_main_signals() != WF_OK) {
        return 1;
    }
    m = app_main_module_load(st->module_file);
    if (m == NULL) {
        return 1;
    }
    if (m->setup(wf_app_rt_table(), app, &conf, &app_data) != WF_APP_OK) {
        wf_log_debug("app \"%s\": setup failed", st->name);
        return 1;
    }
    atomic_store(&app_main_running, true);
    status = m->run(app, app_data);
    wf_log_debug("app \"%s\": stopped with status %d", st->name, status);
    return status;
}
