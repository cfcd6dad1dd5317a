/* The control API's logic, without sockets: Unit's routes ("/", "/config",
 * "/status", "/certificates", "/control"), methods, status codes and reply
 * bodies.  The controller feeds it requests and sends the replies; a new
 * config it returns is applied by the router before the reply goes out. */
#ifndef WF_CONTROL_API_H
#define WF_CONTROL_API_H

#include <jansson.h>
#include <stddef.h>

#include "core/str.h"

/* Bodies larger than this are refused with WF_API_TOO_LARGE before parsing.
 * Unit has no limit; 8 MiB is far above any real config.  The HTTP layer
 * may refuse such a Content-Length early with the same reply
 * (wf_api_reply_set(r, WF_API_TOO_LARGE, WF_API_TOO_LARGE_TITLE, NULL)). */
#define WF_API_BODY_MAX        (8u * 1024 * 1024)
#define WF_API_TOO_LARGE       413
#define WF_API_TOO_LARGE_TITLE "Request body is too large."

/* Title of a reply to a change that was applied. */
#define WF_API_DONE "Reconfiguration done."

typedef struct wf_api_reply {
    unsigned status; /* 200, 400, 404, 405, 413 or 500 */
    json_t *body;    /* owned; never NULL after wf_api_handle() */
    json_t *conf;    /* owned; the config to apply, or NULL when nothing
                        changes.  With conf set, body is {"success":
                        WF_API_DONE}: send it only once the router applied
                        conf, else reply 500 "Failed to apply new
                        configuration." */
    char *restart;   /* owned (malloc); the application to restart, or
                        NULL.  With restart set, body is {"success": "Ok"}:
                        send it only once the router answered that new
                        processes serve it (WF_MSG_APP_RESTART), else
                        reply 500 WF_API_RESTART_FAILED. */
    char *cert_name; /* owned (malloc); the certificate to store (with
                        cert_pem) or delete (cert_pem NULL), or NULL.
                        With it set, body is the success reply: send it
                        only once main wrote the store (STATEDIR/certs)
                        and the change is in wf_cert_store_*(), else
                        reply 500 WF_API_CERT_FAILED. */
    char *cert_pem;  /* owned (malloc); the bundle, cert_len bytes */
    size_t cert_len;
    json_t *cert_info; /* owned; the bundle's description */
    json_t *acme;      /* owned; with cert_pem, the state of an ACME entry
                          (control/acme.h): main stores both
                          (WF_MSG_ACME_STORE), then wf_acme_entry_add() */
    char *text;        /* owned (malloc); a body that is not JSON (GET
                          /status?format=prometheus: Prometheus text, of type
                          WF_METRICS_CONTENT_TYPE), sent instead of body; or
                          NULL */
} wf_api_reply_t;

/* Unit's title of a certificate change main could not store. */
#define WF_API_CERT_FAILED "Failed to store certificate."

/* Unit's title of a restart the router did not confirm. */
#define WF_API_RESTART_FAILED "Failed to restart app."

/* Handles one control request.  conf (borrowed; NULL reads as {}) is the
 * current config tree; status (borrowed; NULL: Unit's shape with zeros) is
 * the /status object; method is the request method as sent ("GET", ...);
 * target is the raw request target (path, optional "?query", ignored);
 * body[0..len) is the request body (may be NULL when len is 0).  Fills
 * *reply, which the caller frees with wf_api_reply_fini().  Never calls
 * back; never modifies conf. */
void wf_api_handle(json_t *conf, json_t *status, wf_str_t method,
                   wf_str_t target, const char *body, size_t len,
                   wf_api_reply_t *reply);

/* Sets the language modules main found (the WF_MSG_MODULES array; takes
 * a reference, NULL drops it): a change is accepted only if every
 * application's "type" names one of them.  Until the first call no module
 * is known, so every application is refused, as Unit refuses a type it has
 * no module for.  A config loaded at start is not checked against it. */
void wf_api_modules_set(json_t *modules);

/* Sets *reply (whose body and conf must be NULL or already released) to
 * Unit's {"success": title} for status < 400, else {"error": title} plus
 * "detail" when detail is not NULL. */
void wf_api_reply_set(wf_api_reply_t *reply, unsigned status, const char *title,
                      const char *detail);

/* Releases reply's body, conf, restart and cert_* and sets them to NULL.
 * Accepts a reply that was never filled if it was zeroed. */
void wf_api_reply_fini(wf_api_reply_t *reply);

/* Serialises v the way Unit's controller does: tab indentation, CRLF line
 * ends, an empty line after each object member whose value is a non-empty
 * object or array, then a final CRLF.  Returns a malloc()ed NUL-terminated
 * string (length in *len when len is not NULL) or NULL when out of memory. */
char *wf_api_json_text(const json_t *v, size_t *len);

/* wf_api_json_text() of reply->body. */
char *wf_api_reply_text(const wf_api_reply_t *reply, size_t *len);

/* Unit's reason phrase for a reply status ("Bad Request", ...). */
const char *wf_api_status_text(unsigned status);

#endif
