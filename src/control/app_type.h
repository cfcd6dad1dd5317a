/* Application types as Unit reads them: "python", "python 3",
 * "python 3.11", "python3.11" pick a language module by name and version
 * prefix; the highest matching version wins. */
#ifndef WF_CONTROL_APP_TYPE_H
#define WF_CONTROL_APP_TYPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Finds the module for type in modules, the WF_MSG_MODULES array
 * ([{"type", "version", "file"}], any order).  A version prefix matches
 * whole components only ("3.1" does not match "3.11.2").  Returns the
 * index of the highest matching version, or -1 when none matches (the
 * language is unknown, or no module has that version). */
int wf_app_type_find(const json_t *modules, const char *type);

/* True when type names a language Wharf knows (whatever its version). */
bool wf_app_type_known(const char *type);

#endif
