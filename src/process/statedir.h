/* The state directory: STATEDIR/conf.json (the last applied config),
 * STATEDIR/version and STATEDIR/certs/NAME (the certificate store), each
 * written atomically: a temporary file, fsync, rename over the old one, fsync
 * of the directory.  A crash at any point leaves either the old file or the new
 * one, never a mix. */
#ifndef WF_PROCESS_STATEDIR_H
#define WF_PROCESS_STATEDIR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Reads and validates the config file at path.  Returns a new reference,
 * or NULL with the reason logged (also when the file is missing). */
json_t *wf_statedir_load_conf(const char *path, bool must_exist);

/* STATEDIR/conf.json when it exists and is valid; NULL otherwise (an
 * invalid one is logged: Wharf then starts empty). */
json_t *wf_statedir_load_stored(const char *statedir);

/* Writes conf to STATEDIR/conf.json atomically.  Returns WF_OK or
 * WF_ERROR (logged; the previous file is intact). */
int wf_statedir_store_conf(const char *statedir, const json_t *conf);

/* conf as STATEDIR/conf.json holds it (indented, keys in order): a new
 * string to free(), or NULL when out of memory. */
char *wf_statedir_conf_text(const json_t *conf);

/* Writes text[0..len), a config from wf_statedir_conf_text(), to
 * STATEDIR/conf.json atomically: main does it for the controller
 * (WF_MSG_CONF_STORE).  Returns WF_OK or WF_ERROR (logged; the previous
 * file is intact). */
int wf_statedir_store_text(const char *statedir, const char *text, size_t len);

/* Writes pem[0..len) to STATEDIR/certs/name (mode 0600; the directory is
 * made 0700) atomically, through STATEDIR/certs/.name.tmp: main does it
 * for the controller (WF_MSG_CERT_STORE).  name must pass
 * wf_cert_name_is_valid().  Returns WF_OK or WF_ERROR (logged; the
 * previous file is intact). */
int wf_statedir_store_cert(const char *statedir, const char *name,
                           const char *pem, size_t len);

/* Removes STATEDIR/certs/name (a missing file is not an error).  Returns
 * WF_OK or WF_ERROR (logged). */
int wf_statedir_delete_cert(const char *statedir, const char *name);

/* Writes text[0..len) to STATEDIR/acme/name (an ACME entry's state; mode
 * 0600, the directory 0700) atomically.  name must pass
 * wf_cert_name_is_valid().  Returns WF_OK or WF_ERROR (logged). */
int wf_statedir_store_acme(const char *statedir, const char *name,
                           const char *text, size_t len);

/* Removes STATEDIR/acme/name (a missing file is not an error).  Returns
 * WF_OK or WF_ERROR (logged). */
int wf_statedir_delete_acme(const char *statedir, const char *name);

/* Writes STATEDIR/version atomically. */
int wf_statedir_store_version(const char *statedir);

/* Creates the missing parent directories of path (mode 0755). */
int wf_mkdir_parents(const char *path);

#endif
