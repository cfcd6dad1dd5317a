/* Credentials (process/cred.c): names resolved with Unit's wording, and a
 * real switch in a forked child, checked with getresuid()/getgroups(). */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "process/cred.h"
#include "unit.h"

static void
test_cred_unknown_names(void **state)
{
    wf_cred_t c;
    char why[256];

    wf_unused(state);
    assert_int_equal(wf_cred_get("wf-no-such-user", NULL, &c, why, sizeof(why)),
                     WF_ERROR);
    assert_string_equal(why, "getpwnam(\"wf-no-such-user\") failed, user "
                             "\"wf-no-such-user\" not found");
    assert_null(c.groups);
    assert_int_equal(
        wf_cred_get("root", "wf-no-such-group", &c, why, sizeof(why)),
        WF_ERROR);
    assert_string_equal(why, "getgrnam(\"wf-no-such-group\") failed, group "
                             "\"wf-no-such-group\" not found");
    wf_cred_fini(&c);
}

static void
test_cred_primary_group_and_groups(void **state)
{
    struct passwd *pw = getpwnam("root");
    wf_cred_t c;
    char why[256];
    bool has_primary = false;

    wf_unused(state);
    assert_non_null(pw);
    assert_int_equal(wf_cred_get("root", "", &c, why, sizeof(why)), WF_OK);
    assert_int_equal(c.uid, pw->pw_uid);
    assert_int_equal(c.gid, pw->pw_gid);
    assert_true(c.ngroups >= 1);
    for (int i = 0; i < c.ngroups; i++) {
        has_primary |= c.groups[i] == c.gid;
    }
    assert_true(has_primary); /* getgrouplist() includes it */
    wf_cred_fini(&c);
    assert_null(c.groups);
}

/* In a child, as root only: after wf_cred_apply() every id is nobody's
 * and root's groups are gone. */
static void
test_cred_apply_in_child(void **state)
{
    struct passwd *pw = getpwnam("nobody");
    wf_cred_t c;
    char why[256];
    pid_t parent = getpid();
    pid_t pid;
    int status;

    wf_unused(state);
    if (geteuid() != 0 || pw == NULL) {
        skip();
    }
    assert_int_equal(wf_cred_get("nobody", NULL, &c, why, sizeof(why)), WF_OK);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uid_t r, e, s;
        gid_t gr, ge, gs;
        gid_t groups[64];
        int n;

        if (wf_cred_apply(&c, parent) != WF_OK) {
            _exit(2);
        }
        getresuid(&r, &e, &s);
        getresgid(&gr, &ge, &gs);
        n = getgroups(64, groups);
        for (int i = 0; i < n; i++) {
            if (groups[i] == 0) {
                _exit(3);
            }
        }
        _exit(r == pw->pw_uid && e == r && s == r && gr == pw->pw_gid
                      && ge == gr && gs == gr && n == c.ngroups
                  ? 0
                  : 4);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    wf_cred_fini(&c);
}

int
wf_test_cred(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cred_unknown_names),
        cmocka_unit_test(test_cred_primary_group_and_groups),
        cmocka_unit_test(test_cred_apply_in_child),
    };

    return cmocka_run_group_tests_name("cred", tests, NULL, NULL);
}
