/* What the controller's control-socket connections ask of the controller
 * (controller.c).  Everything runs on the controller's one loop thread. */
#ifndef WF_PROCESS_CONTROLLER_H
#define WF_PROCESS_CONTROLLER_H

#include <jansson.h>

#include "core/list.h"
#include "process/port.h"

/* The applied config (borrowed). */
json_t *wf_ctl_conf(void);

/* The port to main (NULL once main is gone). */
wf_port_t *wf_ctl_main_port(void);

/* The port to the router, or NULL while it restarts. */
wf_port_t *wf_ctl_router_port(void);

/* Queues the connection whose link this is for applying its new config;
 * changes are applied one at a time, in order, and each connection hears
 * back through wf_ctl_conn_applied(). */
void wf_ctl_apply(wf_list_t *link);

/* Sends the applied config (and the certificates it names) to the router
 * again, after a certificate it names changed outside a config change (an
 * ACME issue): new handshakes use it from then on.  Queued behind a change
 * in flight. */
void wf_ctl_conf_resend(void);

#endif
