/* The control socket's HTTP/1.1 server: one request per connection, read
 * whole (head and body), answered by the control API (control/api.c),
 * then closed, as Unit's controller does. */
#ifndef WF_PROCESS_CONTROL_HTTP_H
#define WF_PROCESS_CONTROL_HTTP_H

#include <jansson.h>
#include <stdbool.h>

#include "core/list.h"
#include "core/listen.h"
#include "process/process.h"

typedef struct wf_ctl_conn wf_ctl_conn_t;

/* Creates the control socket named by opts->control ("unix:PATH", with
 * missing parent directories created, mode --control-mode, 0600 by
 * default, and owner --control-user/--control-group; or "IP:PORT"), not
 * yet accepting.  main does it, as root when it is, and keeps the socket
 * across controller restarts (as Unit's nxt_runtime_controller_socket()).
 * Returns WF_OK or WF_ERROR (logged). */
int wf_ctl_http_open(wf_listener_t *l, const wf_opts_t *opts);

/* In the controller: starts accepting on fd, the socket main opened with
 * wf_ctl_http_open() (the controller's copy, taken: wf_listener_close()
 * closes it).  Call before the loops start.  Returns WF_OK or WF_ERROR
 * (logged). */
int wf_ctl_http_start(wf_listener_t *l, const wf_opts_t *opts, int fd);

/* In main: closes the control socket and removes a unix socket's file. */
void wf_ctl_http_close(wf_listener_t *l, const wf_opts_t *opts);

/* The connection's config was applied and stored (error == NULL), or not:
 * send the reply (500 with error as its title). */
void wf_ctl_conn_applied(wf_ctl_conn_t *c, const char *error);

/* The connection queued with wf_ctl_apply(). */
wf_ctl_conn_t *wf_ctl_conn_from_link(wf_list_t *link);

/* Takes the config the connection's request produced (a new reference). */
json_t *wf_ctl_conn_take_conf(wf_ctl_conn_t *c);

#endif
