/* ACME certificate entries (RFC 8555): a /certificates entry PUT as
 * {"acme": {...}} instead of a PEM bundle is obtained and renewed from an
 * ACME server by the controller's ACME thread.  This module keeps the
 * entries (their settings and state), validates the PUT body, describes
 * them for GET, and runs the thread; what needs another process (main
 * writes the state and the certificate, the router answers challenges)
 * goes through wf_acme_ops_t, run on the controller's loop thread.
 * See docs/internals/acme.md. */
#ifndef WF_CONTROL_ACME_H
#define WF_CONTROL_ACME_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/loop.h"

/* A request of the ACME thread to the controller's loop thread. */
typedef enum wf_acme_call_kind {
    /* Store the entry's state (and, with pem, its new key and chain) */
    WF_ACME_CALL_STORE = 0,
    /* Hand the router the challenges to answer (tokens: JSON text
     * {"http": {TOKEN: KEYAUTH}, "alpn": {DOMAIN: PEM bundle}}) */
    WF_ACME_CALL_TOKENS,
} wf_acme_call_kind_t;

typedef struct wf_acme_call {
    wf_task_t task; /* posted to the controller's loop */
    wf_acme_call_kind_t kind;
    const char *name;   /* STORE: the entry */
    const char *state;  /* STORE: the state's JSON text */
    const char *pem;    /* STORE: the issued bundle, or NULL */
    const char *tokens; /* TOKENS */
    int rc;             /* set by wf_acme_call_done() */
    bool done;          /* under the module's lock */
} wf_acme_call_t;

/* Runs on the loop thread for each call; must end, now or later (on that
 * thread or any other), with wf_acme_call_done(). */
typedef void (*wf_acme_call_cb)(wf_acme_call_t *call);

/* Ends call with rc (WF_OK or WF_ERROR); wakes the ACME thread. */
void wf_acme_call_done(wf_acme_call_t *call, int rc);

/* The STORE payload main takes (WF_MSG_ACME_STORE): name, NUL, the state
 * text, then NUL and pem when pem is not NULL.  A new buffer (length in
 * *len) to free(), or NULL. */
char *wf_acme_store_payload(const char *name, const char *state,
                            const char *pem, size_t *len);

/* Whether body[0..len) is meant as an ACME entry (a JSON object) rather
 * than a PEM bundle: its first non-blank byte is '{'. */
bool wf_acme_body_is_acme(const char *body, size_t len);

/* Validates an ACME PUT body for the entry name.  On success returns a
 * new entry state (a reference) with a fresh account key, and sets *pem
 * to the placeholder bundle (a new key and a self-signed certificate for
 * the domains, malloc()ed) the store serves until the first issue.  On
 * error returns NULL with Unit-style error and detail texts in error and
 * detail (detail may be empty).  Loop thread. */
json_t *wf_acme_put(const char *name, const char *body, size_t len, char **pem,
                    char *error, size_t esize, char *detail, size_t dsize);

/* The state's JSON text as main stores it (STATEDIR/acme/NAME): a new
 * string, or NULL. */
char *wf_acme_state_text(const json_t *state);

/* Adds the entry name (stored by main) with state (takes the reference)
 * and wakes the thread: its first attempt starts at once.  Loop thread. */
void wf_acme_entry_add(const char *name, json_t *state);

/* Drops the entry name if it is one (compared without case); an attempt
 * in flight is abandoned when it ends.  Loop thread. */
void wf_acme_entry_del(const char *name);

/* Whether name is an ACME entry. */
bool wf_acme_entry_exists(const char *name, size_t len);

/* Schedules the entry's next attempt now (GET
 * /control/certificates/NAME/renew).  Returns false when name is not an
 * ACME entry. */
bool wf_acme_renew(const char *name, size_t len);

/* info (the store's description of the certificate called name) with the
 * entry's "acme" object when name is an ACME entry: a new reference. */
json_t *wf_acme_cert_info(const char *name, json_t *info);

/* Replaces each ACME entry's description in infos ({NAME: info}) by
 * wf_acme_cert_info()'s. */
void wf_acme_cert_infos(json_t *infos);

/* Reads the entries in dir (STATEDIR/acme) whose certificate is in the
 * store (wf_cert_store_load() ran first); others are logged and skipped.
 * Before privileges drop.  Returns the number loaded. */
size_t wf_acme_load(const char *dir);

/* Starts the ACME thread: calls go to loop through fn.  Returns WF_OK or
 * WF_ERROR (logged). */
int wf_acme_start(wf_loop_t *loop, wf_acme_call_cb fn);

/* Stops and joins the thread (an exchange in flight ends within its
 * timeout) and drops every entry.  The loop must still run.  Accepts a
 * module never started. */
void wf_acme_stop(void);

#endif
