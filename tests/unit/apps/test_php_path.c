/* Which script a PHP request runs (apps/php/php_path.c): Unit's rules,
 * table-driven over a real directory tree (the routes that stat()). */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apps/php/php_app.h"

static char php_root[64];

static void
php_touch(const char *rel)
{
    char path[PATH_MAX];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", php_root, rel);
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    assert_true(fd >= 0);
    close(fd);
}

static int
php_tree_setup(void **state)
{
    char path[PATH_MAX];

    (void)state;
    snprintf(php_root, sizeof(php_root), "/tmp/wf-php-path-XXXXXX");
    assert_non_null(mkdtemp(php_root));
    snprintf(path, sizeof(path), "%s/dir", php_root);
    assert_int_equal(mkdir(path, 0755), 0);
    php_touch("a.php");
    php_touch("file.txt");
    php_touch("dir/index.php");
    return 0;
}

static int
php_tree_teardown(void **state)
{
    char cmd[PATH_MAX + 16];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", php_root);
    assert_int_equal(system(cmd), 0);
    return 0;
}

typedef struct {
    const char *path;
    wf_php_route_kind_t kind;
    unsigned status;
    const char *script_name; /* below the root */
    const char *path_info;   /* NULL: none */
    bool chdir;
} php_route_case_t;

static const php_route_case_t php_route_cases[] = {
    {"/a.php", WF_PHP_ROUTE_SCRIPT, 0, "/a.php", NULL, true},
    {"/missing.php", WF_PHP_ROUTE_SCRIPT, 0, "/missing.php", NULL, true},
    {"/", WF_PHP_ROUTE_SCRIPT, 0, "/index.php", NULL, true},
    {"/dir/", WF_PHP_ROUTE_SCRIPT, 0, "/dir/index.php", NULL, true},
    {"/a.php/x/y", WF_PHP_ROUTE_SCRIPT, 0, "/a.php", "/x/y", true},
    {"/a.php/", WF_PHP_ROUTE_SCRIPT, 0, "/a.php", "/", true},
    /* The first ".php/" splits, as in Unit (memmem). */
    {"/b.php/c.php/d", WF_PHP_ROUTE_SCRIPT, 0, "/b.php", "/c.php/d", true},
    {"/dir", WF_PHP_ROUTE_REDIRECT, 0, NULL, NULL, false},
    {"/file.txt", WF_PHP_ROUTE_FAIL, 0, NULL, NULL, false},
    {"/missing", WF_PHP_ROUTE_STATUS, 404, NULL, NULL, false},
    {"/file.txt/x", WF_PHP_ROUTE_STATUS, 404, NULL, NULL, false},
    {"/x.ph", WF_PHP_ROUTE_STATUS, 404, NULL, NULL, false},
    /* Never out of the root, whatever the router sent. */
    {"/../a.php", WF_PHP_ROUTE_STATUS, 404, NULL, NULL, false},
    {"/dir/../../a.php", WF_PHP_ROUTE_STATUS, 404, NULL, NULL, false},
    {"/dir/..", WF_PHP_ROUTE_STATUS, 404, NULL, NULL, false},
    {"a.php", WF_PHP_ROUTE_STATUS, 404, NULL, NULL, false},
    {"", WF_PHP_ROUTE_STATUS, 404, NULL, NULL, false},
    /* ".." inside a name is a name. */
    {"/..a.php", WF_PHP_ROUTE_SCRIPT, 0, "/..a.php", NULL, true},
};

static void
test_php_route_table(void **state)
{
    wf_php_target_t t = {0};
    char buf[PATH_MAX + 1];

    (void)state;
    t.root = php_root;
    t.root_len = strlen(php_root);
    t.index = "index.php";
    t.index_len = 9;
    for (size_t i = 0; i < sizeof(php_route_cases) / sizeof(php_route_cases[0]);
         i++) {
        const php_route_case_t *c = &php_route_cases[i];
        wf_php_route_t r;
        char want[PATH_MAX * 2];

        wf_php_route_find(&t, c->path, strlen(c->path), buf, sizeof(buf), &r);
        assert_int_equal(r.kind, c->kind);
        assert_int_equal(r.status, c->status);
        assert_int_equal(r.chdir, c->chdir);
        if (c->script_name == NULL) {
            continue;
        }
        snprintf(want, sizeof(want), "%s%s", php_root, c->script_name);
        assert_string_equal(r.script_filename, want);
        assert_int_equal(r.script_filename_len, strlen(want));
        assert_int_equal(r.script_name.len, strlen(c->script_name));
        assert_memory_equal(r.script_name.data, c->script_name,
                            r.script_name.len);
        if (c->path_info == NULL) {
            assert_int_equal(r.path_info.len, 0);
        } else {
            assert_int_equal(r.path_info.len, strlen(c->path_info));
            assert_memory_equal(r.path_info.data, c->path_info,
                                r.path_info.len);
        }
    }
}

static void
test_php_route_nul_and_long(void **state)
{
    wf_php_target_t t = {0};
    char buf[PATH_MAX + 1], *longp;
    wf_php_route_t r;

    (void)state;
    t.root = php_root;
    t.root_len = strlen(php_root);
    t.index = "index.php";
    t.index_len = 9;
    wf_php_route_find(&t, "/a.php\0x.php", 12, buf, sizeof(buf), &r);
    assert_int_equal(r.kind, WF_PHP_ROUTE_STATUS);
    assert_int_equal(r.status, 404);

    longp = malloc(PATH_MAX + 10);
    assert_non_null(longp);
    longp[0] = '/';
    memset(longp + 1, 'a', PATH_MAX + 4);
    memcpy(longp + PATH_MAX + 1, ".php", 4);
    wf_php_route_find(&t, longp, PATH_MAX + 5, buf, sizeof(buf), &r);
    assert_int_equal(r.kind, WF_PHP_ROUTE_STATUS);
    assert_int_equal(r.status, 404);
    free(longp);
}

static void
test_php_route_script_target(void **state)
{
    wf_php_target_t t = {0};
    char buf[PATH_MAX + 1];
    char file[] = "/srv/app/public/index.php";
    wf_php_route_t r;

    (void)state;
    t.root = "/srv/app/public";
    t.root_len = strlen(t.root);
    t.script_filename = file;
    t.script_filename_len = strlen(file);
    t.script_name = file + t.root_len;
    t.script_name_len = strlen(t.script_name);
    /* Every path runs the script, even one that names another file. */
    wf_php_route_find(&t, "/x/y.php/z", 10, buf, sizeof(buf), &r);
    assert_int_equal(r.kind, WF_PHP_ROUTE_SCRIPT);
    assert_ptr_equal(r.script_filename, file);
    assert_int_equal(r.path_info.len, 0);
    assert_false(r.chdir);
}

static void
test_php_fs_status(void **state)
{
    (void)state;
    assert_int_equal(wf_php_fs_status(ENOENT), 404);
    assert_int_equal(wf_php_fs_status(ENOTDIR), 404);
    assert_int_equal(wf_php_fs_status(ENAMETOOLONG), 404);
    assert_int_equal(wf_php_fs_status(EACCES), 403);
    assert_int_equal(wf_php_fs_status(ELOOP), 403);
    assert_int_equal(wf_php_fs_status(ENFILE), 403);
    assert_int_equal(wf_php_fs_status(EIO), 0);
}

int
wf_test_php_path(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_php_route_table),
        cmocka_unit_test(test_php_route_nul_and_long),
        cmocka_unit_test(test_php_route_script_target),
        cmocka_unit_test(test_php_fs_status),
    };

    return cmocka_run_group_tests_name("php_path", tests, php_tree_setup,
                                       php_tree_teardown);
}
