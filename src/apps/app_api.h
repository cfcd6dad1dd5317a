/* The language module interface: all that a module (a shared object such
 * as build/modules/python3.11.wharf.so) sees of Wharf.  A module includes
 * this header and libc's, nothing else of Wharf's, and links nothing of
 * Wharf's: the app process hands it a table of functions (wf_app_rt_t).
 *
 * Life of an app process (docs/internals/apps.md):
 *   1. main forks it (user, group, environment, working directory and
 *      stdout/stderr already applied) and the runtime dlopen()s the module
 *      named by the app's "type", then looks up the symbol
 *      WF_APP_MODULE_SYMBOL, a const wf_app_module_t.
 *   2. The runtime calls module->setup(): the module reads the app's
 *      config and loads the application (imports it).  A failure is logged
 *      by the module with rt->log() and the process exits with status 1;
 *      the router reports the start as failed.
 *   3. The runtime calls module->run(): the module starts conf->threads
 *      worker threads (or runs one itself), each serving requests of its
 *      worker (rt->worker(app, i)), and returns when every worker saw
 *      WF_APP_DONE.  Then the runtime exits the process.
 *
 * Requests.  A worker serves requests either by pulling (rt->next() blocks
 * until a request arrives: WSGI) or by events (rt->worker_fd() is
 * readable when messages wait, rt->dispatch() handles them without
 * blocking and calls the module's wf_app_events_t: ASGI under an event
 * loop).  A request (wf_app_req_t) belongs to its worker: only the thread
 * serving that worker calls functions on it, and it is freed by
 * rt->end().
 *
 * Return values: WF_APP_OK (0), WF_APP_ERROR (-1: the request or the
 * worker is broken; log and give up), WF_APP_AGAIN (-2: a non-blocking
 * call cannot go on now; an event follows when it can), WF_APP_DONE (-3:
 * the worker is stopping: no more requests). */
#ifndef WF_APPS_APP_API_H
#define WF_APPS_APP_API_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WF_APP_ABI           1 /* bump on any change to this file */
#define WF_APP_MODULE_SYMBOL "wf_app_module"

#define WF_APP_OK    0
#define WF_APP_ERROR -1
#define WF_APP_AGAIN -2
#define WF_APP_DONE  -3

/* Log levels, as in the error log ("[alert]" ... "[debug]"). */
typedef enum wf_app_log_level {
    WF_APP_LOG_ALERT = 0,
    WF_APP_LOG_ERR,
    WF_APP_LOG_WARN,
    WF_APP_LOG_NOTICE,
    WF_APP_LOG_INFO,
    WF_APP_LOG_DEBUG,
} wf_app_log_level_t;

typedef struct wf_app wf_app_t;               /* the process's application */
typedef struct wf_app_worker wf_app_worker_t; /* one worker slot */
typedef struct wf_app_req wf_app_req_t;       /* one request */

/* A string that points into the request's message: NUL-terminated at
 * len, valid until rt->end(). */
typedef struct wf_app_str {
    const char *data;
    size_t len;
} wf_app_str_t;

typedef struct wf_app_field {
    wf_app_str_t name; /* as the client sent it (any case) */
    wf_app_str_t value;
} wf_app_field_t;

/* What the module knows of its process, from the config. */
typedef struct wf_app_conf {
    const char *name;     /* the application's name in the config */
    const char *json;     /* the application's config object, JSON text
                             as validated by the controller */
    unsigned threads;     /* worker slots: rt->worker(app, 0..threads-1) */
    const char *tmpdir;   /* --tmpdir */
    unsigned ntargets;    /* entries of "targets"; 0 without */
    const char **targets; /* their names, in the order of
                             wf_app_head_t.target */
} wf_app_conf_t;

/* A request head, as the router received it. */
typedef struct wf_app_head {
    wf_app_str_t method;
    wf_app_str_t target;  /* original request-target ($request_uri) */
    wf_app_str_t path;    /* decoded, normalised path ($uri) */
    wf_app_str_t query;   /* without '?'; "" when none */
    wf_app_str_t version; /* "HTTP/1.1" */
    wf_app_str_t host;    /* the Host field; "" when none */
    wf_app_str_t remote;  /* client address */
    wf_app_str_t local;   /* the listener's address */
    wf_app_str_t server;  /* server name (Host without port) */
    unsigned remote_port;
    unsigned local_port;
    int tls;                 /* 1: https */
    int upgrade;             /* 1: a WebSocket handshake (see app_proto.h) */
    unsigned target_index;   /* index in wf_app_conf_t.targets; 0 without */
    uint64_t content_length; /* UINT64_MAX when absent or chunked */
    size_t nfields;
    const wf_app_field_t *fields;
} wf_app_head_t;

/* Events for event-driven workers (rt->dispatch()).  Each is called on
 * the worker's thread, from inside rt->dispatch(). */
typedef struct wf_app_events {
    /* A new request.  The module takes it: it must end it with rt->end()
     * eventually. */
    void (*on_request)(void *ctx, wf_app_req_t *req);
    /* More request body (or its end, or an abort) can be read with
     * rt->read_nb(). */
    void (*on_readable)(void *ctx, wf_app_req_t *req);
    /* rt->write_nb() that returned WF_APP_AGAIN can go on. */
    void (*on_writable)(void *ctx, wf_app_req_t *req);
    /* The router aborted the request (client gone, timeout).  Reads and
     * writes fail from now on; the module still calls rt->end(). */
    void (*on_abort)(void *ctx, wf_app_req_t *req);
} wf_app_events_t;

/* What the runtime offers the module.  Every function is thread-safe in
 * the sense given in the header comment. */
typedef struct wf_app_rt {
    unsigned abi; /* WF_APP_ABI */

    /* Writes one error-log line in Wharf's (Unit's) format. */
    void (*log)(wf_app_log_level_t level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
    void (*vlog)(wf_app_log_level_t level, const char *fmt, va_list ap);

    /* Worker i (0 <= i < conf->threads). */
    wf_app_worker_t *(*worker)(wf_app_t *app, unsigned i);

    /* Tells the router that worker w can serve up to n requests at once
     * (default 1).  Call before w's first next() or dispatch(). */
    void (*set_concurrency)(wf_app_worker_t *w, unsigned n);

    /* Pull: blocks until a request arrives (WF_APP_OK, *req set) or the
     * worker stops (WF_APP_DONE).  timeout_ms < 0: no timeout; on one,
     * WF_APP_AGAIN.  The first call announces the worker ready. */
    int (*next)(wf_app_worker_t *w, wf_app_req_t **req, int timeout_ms);

    /* Events: a descriptor that is readable when dispatch() has work;
     * dispatch() handles what is there without blocking and returns
     * WF_APP_OK, or WF_APP_DONE once the worker stops (after every request
     * of the worker ended).  The first call announces the worker ready. */
    int (*worker_fd)(wf_app_worker_t *w);
    int (*dispatch)(wf_app_worker_t *w, const wf_app_events_t *ev, void *ctx);

    const wf_app_head_t *(*head)(wf_app_req_t *req);

    /* Request body.  read() blocks until at least one byte, the end (0)
     * or an abort/error (WF_APP_ERROR); read_nb() returns WF_APP_AGAIN
     * instead of blocking.  Both return at most len bytes. */
    ssize_t (*read)(wf_app_req_t *req, void *buf, size_t len);
    ssize_t (*read_nb)(wf_app_req_t *req, void *buf, size_t len);

    /* Response head.  fields are copied.  body/len: the first body bytes
     * (may be 0); last != 0: that is the whole body (the response is
     * complete; call end()).  Once per request. */
    int (*respond)(wf_app_req_t *req, unsigned status,
                   const wf_app_field_t *fields, size_t nfields,
                   const void *body, size_t len, int last);

    /* Response body after respond().  write() blocks while the window is
     * full; write_nb() takes what fits and returns the bytes taken (> 0)
     * or WF_APP_AGAIN.  Both WF_APP_ERROR after an abort. */
    ssize_t (*write)(wf_app_req_t *req, const void *data, size_t len);
    ssize_t (*write_nb)(wf_app_req_t *req, const void *data, size_t len);

    /* Sends [off, off + len) of fd (a regular file; the caller keeps fd)
     * as the next body bytes: the router sends it with sendfile(). */
    int (*send_file)(wf_app_req_t *req, int fd, off_t off, off_t len);

    /* Ends req and frees it: complete (ok != 0) or cut short (ok == 0:
     * after an error; the router answers 503/502 if no head was sent,
     * else ends the connection).  Every request ends exactly once. */
    void (*end)(wf_app_req_t *req, int ok);

    /* Per-request pointer for the module's own state. */
    void (*set_data)(wf_app_req_t *req, void *data);
    void *(*data)(wf_app_req_t *req);
} wf_app_rt_t;

/* The one symbol a module exports (WF_APP_MODULE_SYMBOL). */
typedef struct wf_app_module {
    unsigned abi;        /* WF_APP_ABI */
    const char *type;    /* "python", "php" */
    const char *version; /* the language's full version: "3.11.2" */

    /* In the app process, before any request: reads conf, loads the
     * application.  Returns WF_APP_OK, or WF_APP_ERROR after logging why
     * (Unit's wording where Unit has one).  *app_data: the module's own. */
    int (*setup)(const wf_app_rt_t *rt, wf_app_t *app,
                 const wf_app_conf_t *conf, void **app_data);

    /* Serves requests until every worker is done; returns the process's
     * exit status (0 on a normal stop). */
    int (*run)(wf_app_t *app, void *app_data);
} wf_app_module_t;

#endif
