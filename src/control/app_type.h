/* Application types as Unit reads them: "python", "python 3",
 * "python 3.11", "python3.11" pick a language module by name and version
 * prefix; the highest matching version wins. */
#ifndef WF_CONTROL_APP_TYPE_H
#define WF_CONTROL_APP_TYPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Finds the module for type in modules, the WF_MSG_MODULES array
 * ([{"type", "version", "file"}], any order).  The version prefix matches
 * as Unit's does: it must end where a digit meets a non-digit ("3" and
 * "3." match "3.11.2"; "3.1" does not).  Returns the index of the highest
 * matching version, or -1 when none matches (the language is unknown, or
 * no module has that version). */
int wf_app_type_find(const json_t *modules, const char *type);

/* The language type names ("python" for "python 3.11"), as a static
 * string, or NULL when Wharf knows no such language (whatever its
 * version). */
const char *wf_app_type_lang(const char *type);

/* True when type names a language Wharf knows (whatever its version). */
bool wf_app_type_known(const char *type);

#endif
