/* main's side of applications: the language modules it discovers at start
 * (main_modules.c) and the app processes it forks for the router and reaps
 * (main_apps.c).  docs/internals/processes.md has the picture.  Everything
 * here runs on main's only thread. */
#ifndef WF_PROCESS_MAIN_APPS_H
#define WF_PROCESS_MAIN_APPS_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "process/port.h"
#include "process/process.h"

/* Finds the language modules in dir: every "*.wharf.so" is loaded in a
 * short-lived child (dlopen, WF_APP_MODULE_SYMBOL, abi check), so that no
 * language runtime is ever loaded into main.  Logs one line per module in
 * Unit's form (module: python 3.11.2 "/path") and one per module that
 * fails.  Returns a new reference to the WF_MSG_MODULES array, sorted by
 * type, then version descending (may be empty); NULL only when out of
 * memory (logged).  Blocks until every child exited. */
json_t *wf_main_modules_discover(const char *dir);

/* Reads the user and group of unprivileged processes from opts (--user,
 * --group; defaults "nobody" and that user's primary group, as Unit) and
 * keeps the module list (borrowed; it must outlive the apps).  Returns
 * WF_ERROR with Unit's wording logged when --user or --group names nobody
 * and main runs as root. */
int wf_main_apps_init(const wf_opts_t *opts, const json_t *modules);

/* The router's WF_MSG_APP_START: forks the app process (a child of main)
 * and answers WF_MSG_APP_PID, or WF_MSG_FAIL with the reason.  p is the
 * current router's port; the app belongs to that router. */
void wf_main_app_on_start(wf_port_t *p, wf_port_msg_t *msg);

/* The router's WF_MSG_APP_KILL: SIGKILL to the pid if it is one of p's
 * router's app processes; ignored otherwise. */
void wf_main_app_on_kill(wf_port_t *p, wf_port_msg_t *msg);

/* A new router took over (p, its port to main): apps started from now on
 * belong to it.  Apps of an earlier router must be gone already
 * (wf_main_apps_router_lost()). */
void wf_main_apps_router_set(wf_port_t *p);

/* The router is gone (its port closed, or it was reaped; calling it
 * twice is harmless): stop telling it about exits and, unless main is
 * stopping (the apps then have their own bound), SIGKILL every app
 * process it started, which would be orphans. */
void wf_main_apps_router_lost(void);

/* SIGCHLD: if pid is an app process, logs its end as Unit does, tells the
 * router that started it (WF_MSG_APP_EXIT, when that router still runs)
 * and returns true; false for any other pid. */
bool wf_main_apps_reap(pid_t pid, int status);

/* main is stopping: refuses WF_MSG_APP_START from now on and sends sig
 * to every app process (QUIT: graceful stop; TERM: fast stop; KILL: past
 * the stop bound).  Apps still loading get it too. */
void wf_main_apps_stop(int sig);

/* App processes not yet reaped. */
unsigned wf_main_apps_count(void);

/* The read end of the pipe that carries the app processes' error log and
 * stderr (made by wf_main_apps_init()), for main's poll(); -1: none. */
int wf_main_apps_log_fd(void);

/* Copies what app processes wrote into the pipe to main's current log
 * (wf_log_fd()), without blocking on the pipe.  Never calls back. */
void wf_main_apps_log_drain(void);

#endif
