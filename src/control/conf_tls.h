/* A listener's "tls" object: Unit's validation (nxt_conf_vldt_tls_members)
 * with Unit's messages, then the contexts (net/tls.h).  Certificates come
 * from the PEM map set last with wf_conf_tls_pems_set(): the controller's
 * store, or what the controller sent the router for this config. */
#ifndef WF_CONTROL_CONF_TLS_H
#define WF_CONTROL_CONF_TLS_H

#include <jansson.h>
#include <stddef.h>

#include "net/tls.h"
#include "net/tls_client.h"

/* Sets the certificates configs are compiled with: {NAME: PEM} (takes a
 * reference; NULL: none).  Any thread; a compile already running keeps
 * the map it started with. */
void wf_conf_tls_pems_set(json_t *pems);

/* Validates tls (an object) and builds its contexts.  Returns a new object
 * (wf_tls_srv_destroy()), or NULL with Unit's message in detail. */
wf_tls_srv_t *wf_conf_tls_compile(const json_t *tls, char *detail, size_t size);

/* Builds the context of a backend's "tls" object (NULL: the defaults):
 * "verify", "ca_file", and "ca" and "certificate" named in the store,
 * looked up in the PEM map as listeners' names are.  Reads PEM and files:
 * not for an I/O thread.  Returns a new object (wf_tls_cli_destroy()), or
 * NULL with a sentence (no final period) in why. */
wf_tls_cli_t *wf_conf_tls_cli_compile(const json_t *tls, char *why,
                                      size_t whysize);

#endif
