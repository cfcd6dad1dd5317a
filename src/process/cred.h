/* Who the unprivileged processes run as: Unit's nxt_credential (the user
 * and group of --user/--group, resolved in main, applied in a child). */
#ifndef WF_PROCESS_CRED_H
#define WF_PROCESS_CRED_H

#include <stddef.h>
#include <sys/types.h>

/* A resolved user and group, with the supplementary groups initgroups()
 * would set for the user. */
typedef struct wf_cred {
    uid_t uid;
    gid_t gid;
    int ngroups;
    gid_t *groups; /* owned; ngroups entries */
} wf_cred_t;

/* Fills c for user and group (NULL or "": the user's primary group), as
 * Unit's nxt_credential_get().  Returns WF_OK, or WF_ERROR with Unit's
 * wording in why (e.g. 'getpwnam("x") failed, user "x" not found'); c then
 * holds nothing to free. */
int wf_cred_get(const char *user, const char *group, wf_cred_t *c, char *why,
                size_t whylen);

/* Switches the calling process to c: setgroups, setgid, setuid (Unit's
 * nxt_credential_setgids() and nxt_credential_setuid()).  Call it before
 * any thread starts.  The kernel clears the parent-death signal on a
 * change of credentials: this sets it again (SIGKILL) and fails when the
 * parent, parent_pid, went first.  Returns WF_OK or WF_ERROR (logged). */
int wf_cred_apply(const wf_cred_t *c, pid_t parent_pid);

/* Frees c's groups.  Accepts c with no groups. */
void wf_cred_fini(wf_cred_t *c);

#endif
