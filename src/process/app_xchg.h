/* One request's exchange with an app process: the request head as one
 * message (with the body when it is small and already read), the body in
 * windows, the response back to the client (a memory body, or streamed
 * with back-pressure).  See apps/app_proto.h and docs/internals/apps.md
 * ("The exchange with an app process"). */
#ifndef WF_PROCESS_APP_XCHG_H
#define WF_PROCESS_APP_XCHG_H

#include <stddef.h>
#include <stdint.h>

#include "apps/app_proto.h"
#include "http/req.h"

/* Installs the http layer's application hooks (wf_http_app_set_handler(),
 * wf_http_app_set_release()).  Once, at start. */
void wf_app_xchg_install(void);

/* Encodes r's head as a WF_APP_MSG_REQ_HEAD payload into out[0..cap),
 * followed by body[0..body_size) (body NULL: the caller writes those last
 * body_size bytes itself) and with flags (WF_APP_REQ_*).  Returns the
 * length; when it is larger than cap nothing was written and the caller
 * retries with a buffer that large.  Never allocates. */
size_t wf_app_req_encode(const wf_req_t *r, unsigned target, uint32_t flags,
                         const char *body, uint32_t body_size, char *out,
                         size_t cap);

/* Reads string i (encoded as app_proto.h says) at *off in msg[0..len);
 * advances *off.  Returns false when the bytes do not hold one. */
bool wf_app_str_get(const unsigned char *msg, size_t len, size_t *off,
                    const char **s, uint32_t *slen);

#endif
