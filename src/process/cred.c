#include "process/cred.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"

#define CRED_NGROUPS_MAX 65536 /* NGROUPS_MAX on Linux */

/* Unit's wording (nxt_credential_get()). */
static int
cred_names(const char *user, const char *group, wf_cred_t *c, char *why,
           size_t whylen)
{
    struct passwd *pw;
    struct group *gr;

    errno = 0;
    pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(why, whylen,
                 errno == 0 ? "getpwnam(\"%s\") failed, user \"%s\" not found"
                            : "getpwnam(\"%s\") failed (%s)",
                 user, errno == 0 ? user : strerror(errno));
        return WF_ERROR;
    }
    c->uid = pw->pw_uid;
    c->gid = pw->pw_gid;
    if (group == NULL || group[0] == '\0') {
        return WF_OK;
    }
    errno = 0;
    gr = getgrnam(group);
    if (gr == NULL) {
        snprintf(why, whylen,
                 errno == 0 ? "getgrnam(\"%s\") failed, group \"%s\" not found"
                            : "getgrnam(\"%s\") failed (%s)",
                 group, errno == 0 ? group : strerror(errno));
        return WF_ERROR;
    }
    c->gid = gr->gr_gid;
    return WF_OK;
}

int
wf_cred_get(const char *user, const char *group, wf_cred_t *c, char *why,
            size_t whylen)
{
    int n = 64;

    *c = (wf_cred_t){0};
    if (cred_names(user, group, c, why, whylen) != WF_OK) {
        return WF_ERROR;
    }
    for (;;) {
        int want = n;

        c->groups = malloc(sizeof(gid_t) * (size_t)n);
        if (c->groups == NULL) {
            snprintf(why, whylen, "out of memory");
            return WF_ERROR;
        }
        if (getgrouplist(user, c->gid, c->groups, &n) >= 0) {
            c->ngroups = n;
            return WF_OK;
        }
        free(c->groups);
        c->groups = NULL;
        /* n is now the size needed; a list that does not grow is an
         * error of its own. */
        if (n <= want || n > CRED_NGROUPS_MAX) {
            snprintf(why, whylen, "getgrouplist(\"%s\", %d) failed", user,
                     (int)c->gid);
            return WF_ERROR;
        }
    }
}

int
wf_cred_apply(const wf_cred_t *c, pid_t parent_pid)
{
    if (setgroups((size_t)c->ngroups, c->groups) == -1) {
        wf_log_alert(errno, "setgroups(%d) failed", c->ngroups);
        return WF_ERROR;
    }
    if (setgid(c->gid) == -1) {
        wf_log_alert(errno, "setgid(%d) failed", (int)c->gid);
        return WF_ERROR;
    }
    if (setuid(c->uid) == -1) {
        wf_log_alert(errno, "setuid(%d) failed", (int)c->uid);
        return WF_ERROR;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent_pid) {
        return WF_ERROR; /* main is gone: nobody to serve */
    }
    return WF_OK;
}

void
wf_cred_fini(wf_cred_t *c)
{
    free(c->groups);
    c->groups = NULL;
    c->ngroups = 0;
}
