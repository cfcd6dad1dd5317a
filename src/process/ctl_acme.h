/* The controller's side of the ACME thread's calls (control/acme.h): it
 * stores entries through main and hands challenges to the router.  Loop
 * thread.  See docs/internals/acme.md. */
#ifndef WF_PROCESS_CTL_ACME_H
#define WF_PROCESS_CTL_ACME_H

#include "control/acme.h"

/* The wf_acme_call_cb of the controller: WF_ACME_CALL_STORE sends
 * WF_MSG_ACME_STORE to main and, once stored, puts an issued bundle in
 * the certificate store and resends the config when a listener names it;
 * WF_ACME_CALL_TOKENS sends WF_MSG_ACME_TOKENS to the router.  Ends each
 * call with wf_acme_call_done() when the peer answered (or is gone). */
void wf_ctl_acme_call(wf_acme_call_t *call);

#endif
