/* The PHP module's shared state: what php_module.c (setup, options, the
 * worker loop), php_sapi.c (PHP's SAPI callbacks and the request) and
 * php_path.c (which script a request runs) see.  The module includes
 * apps/app_api.h and PHP's headers, nothing else of Wharf's
 * (docs/internals/php.md).
 *
 * Threads.  Debian's libphp is built without ZTS: one PHP interpreter per
 * process, so the module serves one worker (rt->worker(app, 0)) on the
 * thread that calls run(), as Unit's PHP module does. */
#ifndef WF_APPS_PHP_PHP_APP_H
#define WF_APPS_PHP_PHP_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "apps/app_api.h"

/* One entry of "targets", or the app itself without "targets". */
typedef struct wf_php_target {
    char *root; /* owned; realpath() of "root", without a trailing '/' */
    size_t root_len;
    char *index; /* owned; "index" ("index.php"); unused with a script */
    size_t index_len;
    char *script_filename; /* owned; realpath() of root/script; NULL
                              without "script" */
    size_t script_filename_len;
    char *script_dirname;    /* owned; script_filename up to its last '/'
                                (kept); NULL without "script" */
    const char *script_name; /* into script_filename: the part below root
                                ("/index.php") */
    size_t script_name_len;
} wf_php_target_t;

/* The module's state for the process: setup()'s *app_data. */
typedef struct wf_php_app {
    const wf_app_rt_t *rt;     /* borrowed: the runtime */
    wf_app_t *app;             /* borrowed: the runtime's application */
    const wf_app_conf_t *conf; /* borrowed; outlives the app */
    unsigned ntargets;         /* 0 only for "targets": {} */
    wf_php_target_t *targets;  /* owned; by wf_app_head_t.target_index */
    unsigned timeout_ms;       /* limits.timeout; 0: none */
    char *ini_file;            /* owned; options.file made absolute; NULL */
    char cwd[4096 + 1];        /* the directory the module changed to
                                  last; "" when unknown (after a script's
                                  chdir()) */
} wf_php_app_t;

/* A string of the request: bytes, not NUL-terminated unless said. */
typedef struct wf_php_str {
    const char *data;
    size_t len;
} wf_php_str_t;

/* What php_path.c decides for a request. */
typedef enum wf_php_route_kind {
    WF_PHP_ROUTE_SCRIPT = 0, /* run script_filename */
    WF_PHP_ROUTE_REDIRECT,   /* 301 to the path with a '/' added */
    WF_PHP_ROUTE_STATUS,     /* answer status with an empty body */
    WF_PHP_ROUTE_FAIL,       /* end the request cut short (Unit's 503) */
} wf_php_route_kind_t;

typedef struct wf_php_route {
    wf_php_route_kind_t kind;
    unsigned status;            /* WF_PHP_ROUTE_STATUS */
    char *script_filename;      /* NUL-terminated; owned by the caller's
                                   buffer (see wf_php_route_find()) */
    size_t script_filename_len; /* bytes */
    wf_php_str_t script_name;   /* into script_filename, after the root */
    wf_php_str_t path_info;     /* into the request path; len 0: none */
    bool chdir;                 /* change to the script's directory */
} wf_php_route_t;

/* Decides what a request for path (the decoded, normalised path, len
 * bytes, starting with '/') runs under target t, as Unit's PHP module
 * does: a script target always runs its script; otherwise a path with
 * ".php/" in it runs the part up to ".php" with the rest as PATH_INFO, a
 * path ending in '/' runs its index, a path ending in ".php" runs that
 * file, and anything else answers 301 (a directory), 404/403 (stat()'s
 * error) or is cut short (an existing file that is not PHP).
 * buf/size: where the script's file name is built (PATH_MAX + 1 is
 * enough); the route points into it and into path.  Never touches PHP:
 * it only calls stat(). */
void wf_php_route_find(const wf_php_target_t *t, const char *path, size_t len,
                       char *buf, size_t size, wf_php_route_t *route);

/* The status for a file system errno as Unit answers it (403 for ELOOP,
 * EACCES and ENFILE; 404 for ENOENT, ENOTDIR and ENAMETOOLONG), or 0 for
 * another errno (the request is then cut short). */
unsigned wf_php_fs_status(int err);

/* php_sapi.c: PHP's start with the module's SAPI (the ini file, the
 * module's defaults, then options.admin and options.user of options, an
 * object or NULL).  Returns 0, or -1 after logging. */
int wf_php_sapi_start(wf_php_app_t *app, const json_t *options);

/* php_sapi.c: serves one request from rt->head() to rt->end(). */
void wf_php_request_serve(wf_php_app_t *app, wf_app_req_t *req);

/* php_sapi.c: PHP's module shutdown, at the end of run(). */
void wf_php_sapi_stop(wf_php_app_t *app);

#endif
