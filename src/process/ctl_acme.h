/* The controller's side of the ACME thread's calls (control/acme.h): it
 * stores entries through main and hands challenges to the router.  Loop
 * thread.  See docs/internals/acme.md. */
#ifndef WF_PROCESS_CTL_ACME_H
#define WF_PROCESS_CTL_ACME_H

#include "control/acme.h"

/* The wf_acme_call_cb of the controller: WF_ACME_CALL_STORE sends
 * WF_MSG_ACME_STORE to main and, once stored, puts an issued bundle in
 * the certificate store and resends the config when a listener names it;
 * WF_ACME_CALL_TOKENS sends WF_MSG_ACME_TOKENS to the router, and keeps
 * the set for a router that restarts.  Ends each call with
 * wf_acme_call_done() when the peer answered: a STORE call whose main is
 * gone fails; a TOKENS call whose router is gone waits up to 10 s for the
 * next router and then fails. */
void wf_ctl_acme_call(wf_acme_call_t *call);

/* A router (the first, or one main restarted) is there: it gets the
 * current challenge set ("{}" when none; so a restarted controller also
 * withdraws what its predecessor handed out). */
void wf_ctl_acme_router_ready(void);

/* The controller stops: a TOKENS call waiting for a router fails now, not
 * after 10 s (the ACME thread is joined next).  Any thread; the loop must
 * still run. */
void wf_ctl_acme_stop(void);

#endif
