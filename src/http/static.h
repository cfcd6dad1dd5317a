/* Unit's "share" action: static files with index, fallback and types,
 * conditional requests and ranges, served with sendfile.
 *
 * open() and fstat() never run on an I/O thread: they go to the helper
 * thread pool, because a cold disk or a network file system can block them
 * for a long time.  To keep that hop off the hot path, each I/O thread keeps
 * a small cache of open files, trusted until inotify reports a change to
 * the file or to a directory on its path (docs/internals/static.md). */
#ifndef WF_HTTP_STATIC_H
#define WF_HTTP_STATIC_H

#include "core/loop.h"
#include "http/req.h"
#include "http/route.h"

/* Serves r from share action a (GET and HEAD; other methods get 405).
 * Takes over r; the share's state hangs from r->share until
 * wf_static_req_release(). */
void wf_static_serve(wf_req_t *r, const wf_action_t *a);

/* Releases r->share (a descriptor a finished helper job left in it is
 * closed) and sets it to NULL.  Accepts r->share == NULL.  Call on the
 * thread that served r, when r is destroyed. */
void wf_static_req_release(wf_req_t *r);

/* Drops a reference to an open file.  Accepts NULL. */
void wf_file_unref(wf_file_t *f);

/* The descriptor of an open file, for sendfile(). */
int wf_file_fd(const wf_file_t *f);
wf_file_t *wf_file_from_fd(int fd); /* see http/exchange.h */

/* Creates the calling I/O thread's file cache and its inotify descriptor
 * (at thread start, so the descriptor count stays flat afterwards).  On
 * failure files are served uncached. */
void wf_static_thread_start(wf_loop_t *loop);

/* Closes the calling thread's cached files and inotify descriptor, and
 * frees its share states (at thread exit). */
void wf_static_thread_exit(void);

#endif
