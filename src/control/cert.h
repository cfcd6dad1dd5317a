/* Unit's certificate store (/certificates): PEM bundles, each a private key
 * and a certificate chain in any order, validated and described the way
 * Unit's nxt_cert.c describes them.  The store itself lives in the
 * controller (one thread); main writes the files (STATEDIR/certs/NAME) and
 * the router gets the PEM text of the certificates a config names.
 * See docs/internals/tls.md. */
#ifndef WF_CONTROL_CERT_H
#define WF_CONTROL_CERT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The largest bundle accepted (Unit has no limit; a chain of a dozen 4096-bit
 * certificates is under 30 KiB). */
#define WF_CERT_PEM_MAX (1024u * 1024)

/* Parses and checks pem[0..len): exactly one private key (PKCS#1, SEC1 or
 * unencrypted PKCS#8), at least one certificate; the first certificate is
 * the leaf, and it must match the key; each next certificate must have
 * issued the one before it.  On success returns WF_OK and sets *info to a
 * new reference to Unit's description {"key": "RSA (2048 bits)" | "ECDH" |
 * ..., "chain": [{"subject": {...}, "issuer": {...}, "validity": {"since",
 * "until"}}]}.  Otherwise returns WF_ERROR with a sentence in why (never
 * logged: the input is the client's).  Never calls back; thread-safe. */
int wf_cert_parse(const char *pem, size_t len, json_t **info, char *why,
                  size_t whysize);

/* Whether name can name a certificate: not empty, no '/', no NUL, not
 * starting with '.' (the store's temporary files do), at most 255 bytes. */
bool wf_cert_name_is_valid(const char *name, size_t len);

/* The description of the stored certificate called name (compared without
 * case, as Unit does), borrowed, or NULL. */
json_t *wf_cert_store_info(const char *name, size_t len);

/* Every stored certificate's description, {NAME: info, ...}: a new
 * reference, or NULL when out of memory. */
json_t *wf_cert_store_infos(void);

/* Adds (or replaces) the certificate called name with the PEM text
 * pem[0..len) and its description info (takes the reference).  Returns
 * WF_OK or WF_ERROR (out of memory; info is released). */
int wf_cert_store_set(const char *name, const char *pem, size_t len,
                      json_t *info);

/* Removes the certificate called name (compared without case). */
void wf_cert_store_del(const char *name);

/* Empties the store. */
void wf_cert_store_clear(void);

/* Called by wf_cert_dir_walk() on one entry of dir; returns whether it
 * took the entry (it logs why not). */
typedef bool (*wf_cert_dir_cb)(const char *dir, const char *name, void *arg);

/* Calls fn on every entry of dir (the store's STATEDIR/certs, or the ACME
 * state beside it) whose name is a valid certificate name, in readdir()
 * order.  A missing dir has no entry; another opendir() failure is logged.
 * Returns the number of entries fn took. */
size_t wf_cert_dir_walk(const char *dir, wf_cert_dir_cb fn, void *arg);

/* Reads every certificate in dir (STATEDIR/certs) into the store; a file
 * that is not a valid bundle is logged and skipped, as is a missing dir.
 * Returns the number of certificates loaded. */
size_t wf_cert_store_load(const char *dir);

/* The PEM text of every certificate conf's listeners name:
 * {NAME: PEM, ...}, a new reference, or NULL when out of memory.  A name
 * not in the store is left out (validation refused it). */
json_t *wf_cert_store_pems(const json_t *conf);

/* Every stored certificate's PEM text, {NAME: PEM, ...}: a new reference,
 * or NULL when out of memory. */
json_t *wf_cert_store_pems_all(void);

/* Whether one of conf's listeners names the certificate called name
 * (compared without case). */
bool wf_cert_is_used(const json_t *conf, const char *name, size_t len);

#endif
