/* Unit's "share" action: static files with index, fallback and types,
 * conditional requests and ranges, served with sendfile.
 *
 * open() and fstat() never run on an I/O thread: they go to the helper
 * thread pool, because a cold disk or a network file system can block them
 * for a long time.  To keep that hop off the hot path, each I/O thread keeps
 * a small cache of open files, each entry trusted for WF_FILE_VALID_MS
 * after it was opened (then re-opened, so a replaced file is seen within
 * that time). */
#ifndef WF_HTTP_STATIC_H
#define WF_HTTP_STATIC_H

#include "http/req.h"
#include "http/route.h"

#define WF_FILE_VALID_MS 1000

/* Serves r from share action a (GET and HEAD; other methods get 405).
 * Takes over r. */
void wf_static_serve(wf_req_t *r, const wf_action_t *a);

/* Drops a reference to an open file.  Accepts NULL. */
void wf_file_unref(wf_file_t *f);

/* The descriptor of an open file, for sendfile(). */
int wf_file_fd(const wf_file_t *f);

/* Closes the calling thread's cached files (at thread exit). */
void wf_static_thread_exit(void);

#endif
