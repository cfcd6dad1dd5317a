/* Unit's "access_log": one line per request, in the combined format by
 * default, a custom template, or JSON objects (a "format" object).
 *
 * Logging costs an I/O thread no lock, no syscall and no allocation per
 * line: each thread renders lines into its own 64 KiB batch buffer and
 * hands a full buffer, or every WF_ACCESS_LOG_FLUSH_MS what it holds, to
 * one writer thread, which alone calls write() (writev() of whole
 * buffers).  Memory is bounded: when every buffer waits for a writer that
 * is stuck (a stalled file system), further lines are dropped, counted
 * (wf_access_log_dropped(), "/status") and reported as a warning; the I/O
 * threads never wait.  Design notes: docs/internals/access_log.md. */
#ifndef WF_HTTP_ACCESS_LOG_H
#define WF_HTTP_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "core/pool.h"
#include "core/str.h"
#include "http/route.h"
#include "http/tpl.h"

#define WF_ACCESS_LOG_FLUSH_MS 100

/* Unit's default: the combined log format. */
#define WF_ACCESS_LOG_COMBINED                                  \
    "$remote_addr - - [$time_local] \"$request_line\" $status " \
    "$body_bytes_sent \"$header_referer\" \"$header_user_agent\""

typedef struct wf_access_log wf_access_log_t;

/* The compiled pieces of an "access_log" value. */
typedef struct wf_access_log_spec {
    const char *path;       /* NUL-terminated */
    const wf_tpl_t *format; /* the string form; NULL: JSON fields */
    const wf_str_t *keys;   /* the object form: keys[i] -> values[i] */
    const wf_tpl_t **values;
    size_t nfields;
    const wf_tpl_t *cond; /* "if"; NULL: log every request */
    bool negate;          /* "if" started with '!' */
} wf_access_log_spec_t;

/* Creates an access log in a (which must outlive it) and opens its file
 * (O_APPEND, created 0644), sharing the descriptor with any live access
 * log of the same path.  Returns NULL with the reason in err. */
wf_access_log_t *wf_access_log_create(wf_arena_t *a,
                                      const wf_access_log_spec_t *spec,
                                      char *err, size_t errlen);

/* on: from now on wf_access_log_create() opens no file; a file not
 * already open gets its descriptor later from wf_access_log_set_fd().
 * off (the default): it opens its file itself.  For processes that may not open
 * the files themselves: the router asks main for them (Unit's
 * NXT_PORT_MSG_ACCESS_LOG), and the controller, which only validates,
 * needs none. */
void wf_access_log_defer_open(bool on);

/* al's path when its file still needs a descriptor (deferred, and no live
 * access log of that path had one), else NULL (al NULL too).  The string
 * lives as long as al. */
const char *wf_access_log_needs_fd(const wf_access_log_t *al);

/* Gives al's file its descriptor fd (taken: O_APPEND, opened for this
 * process).  Before any line is written for al. */
void wf_access_log_set_fd(wf_access_log_t *al, int fd);

/* Calls fn(path, arg) for the path of every open access log file, with an
 * internal mutex held: fn must not call this module. */
void wf_access_log_each_path(void (*fn)(const char *path, void *arg),
                             void *arg);

/* Makes the writer thread put fd (taken; the file at path opened anew, by
 * main) in place of path's file, after it wrote every buffer already
 * queued (to the old file), as wf_access_log_reopen() does.  fd is closed
 * when no access log uses path any more.  Never blocks. */
void wf_access_log_reopen_fd(const char *path, int fd);

/* Drops al's file reference (the file closes when the writer has no more
 * lines for it).  Accepts NULL.  The memory belongs to the arena. */
void wf_access_log_destroy(wf_access_log_t *al);

/* True when rq is to be logged ("if").  Never allocates. */
bool wf_access_log_wants(const wf_access_log_t *al, const wf_route_req_t *rq);

/* Formats rq's line, '\n' included, into out[0..cap) (cap >= 2): the line
 * is cut to fit.  Control bytes in values are escaped ("\x0A"; in JSON
 * "\u000a").  Returns the length written.  Never allocates. */
size_t wf_access_log_format(const wf_access_log_t *al, const wf_route_req_t *rq,
                            char *out, size_t cap);

/* Logs rq (after its response), on loop's thread (an I/O thread): the line
 * is rendered into the thread's buffer.  Never blocks; takes a mutex and
 * may allocate only once per buffer (64 KiB), never per line. */
void wf_access_log_write(wf_access_log_t *al, const wf_route_req_t *rq,
                         wf_loop_t *loop);

/* Makes the writer thread reopen every access log file by its path
 * (USR1), after it wrote every buffer already queued (to the old file);
 * lines still in the threads' buffers go to the new one.  Takes a mutex:
 * call it from a thread, not from a signal handler.  Never blocks on the
 * file system (the writer opens). */
void wf_access_log_reopen(void);

/* Hands the calling I/O thread's buffer to the writer (at thread exit).
 * At process exit the writer writes what is queued, for at most 5 s. */
void wf_access_log_thread_exit(void);

/* Lines dropped since start: no free buffer (the writer fell behind) or a
 * write that failed. */
uint64_t wf_access_log_dropped(void);

/* Lines written to their files since start. */
uint64_t wf_access_log_written(void);

#endif
