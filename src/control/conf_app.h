/* "applications": Unit's validation of each application object (its common
 * options, then the options of its language: python, php) plus Wharf's
 * "queue", compiled into the snapshot's wf_app_desc_t array.  The
 * messages are Unit 1.35's (nxt_conf_validation.c). */
#ifndef WF_CONTROL_CONF_APP_H
#define WF_CONTROL_CONF_APP_H

#include <jansson.h>
#include <stddef.h>

#include "core/pool.h"
#include "http/app_desc.h"

/* Bounds of Wharf's "queue" extension (docs/compatibility.md). */
#define WF_CONF_APP_QUEUE_LENGTH  1024  /* requests, by default */
#define WF_CONF_APP_QUEUE_TIMEOUT 30000 /* ms, by default */

/* Validates apps (the "applications" object; borrowed) and compiles it
 * into a: *out gets an array of *n descriptors, one per application in
 * config order (NULL when there is none).  Each "type" must name a
 * language Wharf knows; with modules (the WF_MSG_MODULES array, borrowed)
 * it must also match one of them, else Unit's 'The module to run "T" is
 * not found among the available application modules.'  modules NULL skips
 * that check: the router only ever gets configs the controller checked,
 * and a stored config is loaded before main sends the list.  Returns WF_OK,
 * or WF_ERROR with Unit's message in err[0..errlen). */
int wf_conf_apps_compile(wf_arena_t *a, const json_t *apps,
                         const json_t *modules, wf_app_desc_t **out,
                         unsigned *n, char *err, size_t errlen);

/* The canonical text of an application object, as wf_app_desc_t.json
 * holds it: compact, object keys sorted (so that equal objects give equal
 * texts) except the members of "targets", which keep their config order
 * (a target's index is its position there).  Returns a malloc()ed string
 * or NULL when out of memory. */
char *wf_conf_app_json(const json_t *app);

#endif
