/* The app process's entry point: what main's forked child runs once the
 * process has its user, group, environment, working directory and
 * stdout/stderr (apps/app_api.h tells the rest of its life). */
#ifndef WF_APPS_APP_MAIN_H
#define WF_APPS_APP_MAIN_H

#include <stddef.h>

/* What main gives a new app process. */
typedef struct wf_app_start {
    const char *name;        /* the application's name */
    const char *conf_json;   /* its config object, JSON text */
    const char *module_file; /* the language module to dlopen() */
    const char *tmpdir;      /* --tmpdir */
    unsigned slots;          /* T: worker slots (the app's "threads") */
    unsigned router_threads; /* N */
    const int *fds;          /* N * T sockets, apps/app_proto.h's order */
} wf_app_start_t;

/* Loads the module and the application, serves requests until the
 * router closes every socket (or QUIT/TERM), and returns the process's
 * exit status: 0 on a normal stop, 1 when the module or the application
 * failed to load (logged).  Takes the fds. */
int wf_app_main(const wf_app_start_t *st);

#endif
