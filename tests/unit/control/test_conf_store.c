/* Path operations on config trees: Unit's segments, indexes, escapes, and
 * what each method may do where. */
#include <stdio.h>
#include <string.h>

#include "control/conf_store.h"
#include "core/common.h"
#include "unit.h"

static const char store_base[] =
    "{\"listeners\": {\"127.0.0.1:8080\": {\"pass\": \"routes\"},"
    "                 \"unix:/a/b\": {\"pass\": \"routes/x\"}},"
    " \"routes\": {\"x\": [{\"action\": {\"return\": 200}}], \"a/b\": []},"
    " \"arr\": [1, 2, 3], \"s\": \"str\", \"\": {\"e\": 1}}";

static void
store_expect(json_t *got, const char *want, const char *what)
{
    json_t *w;

    if (want == NULL) {
        if (got != NULL) {
            print_message("%s: expected nothing\n", what);
        }
        assert_null(got);
        return;
    }
    w = wf_test_json_parse(want);
    if (got == NULL || !json_equal(got, w)) {
        char *text = got != NULL ? json_dumps(got, JSON_ENCODE_ANY) : NULL;

        print_message("%s: got %s, want %s\n", what,
                      text != NULL ? text : "(none)", want);
        free(text);
        fail();
    }
    json_decref(w);
}

/* ---- GET --------------------------------------------------------------- */

static const struct {
    const char *path;
    const char *want; /* JSON, or NULL: no value */
} store_gets[] = {
    {"/arr", "[1, 2, 3]"},
    {"/listeners/127.0.0.1:8080/pass", "\"routes\""},
    {"/listeners/127.0.0.1%3A8080/pass", "\"routes\""},
    {"/listeners/127.0.0.1%3a8080/pass", "\"routes\""},
    {"/listeners/unix:%2Fa%2Fb/pass", "\"routes/x\""},
    {"/listeners/unix:/a/b", NULL},
    {"/routes/a%2fb", "[]"},
    {"/routes/x/0/action/return", "200"},
    {"/arr/0", "1"},
    {"/arr/2", "3"},
    {"/arr/01", "2"},
    {"/arr/3", NULL},
    {"/arr/-1", NULL},
    {"/arr/+1", NULL},
    {"/arr/1x", NULL},
    {"/arr/ 1", NULL},
    {"/arr/99999999999", NULL},
    {"/arr/4294967296", NULL},
    {"/arr/", "[1, 2, 3]"},
    {"/s", "\"str\""},
    {"/s/0", NULL},
    {"/s/x", NULL},
    {"/missing", NULL},
    {"/missing/x", NULL},
    {"/%zz", NULL},
    {"/%4", NULL},
    {"/%", NULL},
    {"//e", NULL},
    {"/%2F", NULL},
    {"/listeners/127.0.0.1:8080/pass/x", NULL},
    {"arr/1", "2"},
};

static void
test_get(void **state)
{
    json_t *root = wf_test_json_parse(store_base);

    wf_unused(state);
    store_expect(wf_conf_store_get(root, "/", 1), store_base, "/");
    store_expect(wf_conf_store_get(root, "", 0), store_base, "\"\"");
    for (size_t i = 0; i < wf_nitems(store_gets); i++) {
        const char *path = store_gets[i].path;

        store_expect(wf_conf_store_get(root, path, strlen(path)),
                     store_gets[i].want, path);
    }
    assert_null(wf_conf_store_get(NULL, "/a", 2));
    json_decref(root);
}

/* ---- changes ----------------------------------------------------------- */

static const struct {
    wf_conf_op_t op;
    const char *path;
    const char *value; /* JSON operand of PUT and POST */
    wf_conf_store_rc_t rc;
    const char *check;      /* after OK: a path of the new tree ... */
    const char *check_want; /* ... and its value, NULL: must be absent */
} store_changes[] = {
    /* PUT replaces or creates; the parent must exist */
    {WF_CONF_OP_PUT, "/s", "\"new\"", WF_CONF_STORE_OK, "/s", "\"new\""},
    {WF_CONF_OP_PUT, "/new", "{}", WF_CONF_STORE_OK, "/new", "{}"},
    {WF_CONF_OP_PUT, "/listeners/127.0.0.1%3A9090", "{\"pass\": \"routes\"}",
     WF_CONF_STORE_OK, "/listeners/127.0.0.1:9090/pass", "\"routes\""},
    {WF_CONF_OP_PUT, "/listeners/127.0.0.1:8080/pass", "\"routes/x\"",
     WF_CONF_STORE_OK, "/listeners/127.0.0.1:8080", "{\"pass\": \"routes/x\"}"},
    {WF_CONF_OP_PUT, "/routes/a%2Fb", "[1]", WF_CONF_STORE_OK, "/routes/a%2Fb",
     "[1]"},
    {WF_CONF_OP_PUT, "/routes/c%2Fd", "[]", WF_CONF_STORE_OK, "/routes/c%2Fd",
     "[]"},
    {WF_CONF_OP_PUT, "/routes/x/0/action/return", "404", WF_CONF_STORE_OK,
     "/routes/x/0/action", "{\"return\": 404}"},
    {WF_CONF_OP_PUT, "/%C3%A9", "1", WF_CONF_STORE_OK, "/\xc3\xa9", "1"},
    {WF_CONF_OP_PUT, "/missing/x", "1", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "/s/x", "1", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "/listeners/127.0.0.1:8080/pass/x", "1",
     WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "/%zz", "1", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "/%FF", "1", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "//e", "2", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "/arr/", "2", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_DELETE, "/arr/", NULL, WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    /* in arrays: replace, append at the length, nothing beyond */
    {WF_CONF_OP_PUT, "/arr/0", "9", WF_CONF_STORE_OK, "/arr", "[9, 2, 3]"},
    {WF_CONF_OP_PUT, "/arr/2", "[]", WF_CONF_STORE_OK, "/arr", "[1, 2, []]"},
    {WF_CONF_OP_PUT, "/arr/3", "4", WF_CONF_STORE_OK, "/arr", "[1, 2, 3, 4]"},
    {WF_CONF_OP_PUT, "/arr/4", "4", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "/arr/x", "4", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "/arr/-1", "4", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "/arr/99999999999", "4", WF_CONF_STORE_NOT_FOUND, NULL,
     NULL},
    {WF_CONF_OP_PUT, "/arr/3/x", "4", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_PUT, "/routes/x/1", "{\"action\": {\"return\": 204}}",
     WF_CONF_STORE_OK, "/routes/x/1/action/return", "204"},
    /* the whole tree */
    {WF_CONF_OP_PUT, "/", "{\"a\": 1}", WF_CONF_STORE_OK, "/", "{\"a\": 1}"},
    {WF_CONF_OP_PUT, "", "[]", WF_CONF_STORE_OK, "/", "[]"},
    /* POST appends to arrays only */
    {WF_CONF_OP_POST, "/arr", "4", WF_CONF_STORE_OK, "/arr", "[1, 2, 3, 4]"},
    {WF_CONF_OP_POST, "/routes/a%2Fb", "{}", WF_CONF_STORE_OK, "/routes/a%2Fb",
     "[{}]"},
    {WF_CONF_OP_POST, "/routes/x", "{\"action\": {\"return\": 204}}",
     WF_CONF_STORE_OK, "/routes/x/1/action/return", "204"},
    {WF_CONF_OP_POST, "/arr", "[5]", WF_CONF_STORE_OK, "/arr/3", "[5]"},
    {WF_CONF_OP_POST, "/s", "1", WF_CONF_STORE_NOT_ALLOWED, NULL, NULL},
    {WF_CONF_OP_POST, "/listeners", "1", WF_CONF_STORE_NOT_ALLOWED, NULL, NULL},
    {WF_CONF_OP_POST, "/arr/0", "1", WF_CONF_STORE_NOT_ALLOWED, NULL, NULL},
    {WF_CONF_OP_POST, "/missing", "1", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_POST, "/missing/x", "1", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_POST, "/arr/3", "1", WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_POST, "/", "1", WF_CONF_STORE_NOT_ALLOWED, NULL, NULL},
    /* DELETE needs the value */
    {WF_CONF_OP_DELETE, "/s", NULL, WF_CONF_STORE_OK, "/s", NULL},
    {WF_CONF_OP_DELETE, "/arr/1", NULL, WF_CONF_STORE_OK, "/arr", "[1, 3]"},
    {WF_CONF_OP_DELETE, "/arr/0", NULL, WF_CONF_STORE_OK, "/arr", "[2, 3]"},
    {WF_CONF_OP_DELETE, "/arr/3", NULL, WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_DELETE, "/arr/x", NULL, WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_DELETE, "/listeners/127.0.0.1%3A8080", NULL, WF_CONF_STORE_OK,
     "/listeners/127.0.0.1:8080", NULL},
    {WF_CONF_OP_DELETE, "/listeners/unix:%2Fa%2Fb", NULL, WF_CONF_STORE_OK,
     "/listeners", "{\"127.0.0.1:8080\": {\"pass\": \"routes\"}}"},
    {WF_CONF_OP_DELETE, "/routes/x/0/action", NULL, WF_CONF_STORE_OK,
     "/routes/x/0", "{}"},
    {WF_CONF_OP_DELETE, "/missing", NULL, WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_DELETE, "/missing/x", NULL, WF_CONF_STORE_NOT_FOUND, NULL,
     NULL},
    {WF_CONF_OP_DELETE, "/s/0", NULL, WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_DELETE, "/", NULL, WF_CONF_STORE_OK, "/", "{}"},
    /* GET through apply */
    {WF_CONF_OP_GET, "/arr/1", NULL, WF_CONF_STORE_OK, NULL, "2"},
    {WF_CONF_OP_GET, "/arr/9", NULL, WF_CONF_STORE_NOT_FOUND, NULL, NULL},
    {WF_CONF_OP_GET, "/", NULL, WF_CONF_STORE_OK, NULL, store_base},
};

static void
store_check_row(size_t i, json_t *out)
{
    const char *check = store_changes[i].check;
    char what[128];

    snprintf(what, sizeof(what), "row %zu %s", i, store_changes[i].path);
    if (store_changes[i].op == WF_CONF_OP_GET) {
        store_expect(out, store_changes[i].check_want, what);
        return;
    }
    store_expect(wf_conf_store_get(out, check, strlen(check)),
                 store_changes[i].check_want, what);
}

static void
test_changes(void **state)
{
    json_t *root = wf_test_json_parse(store_base);
    json_t *pristine = wf_test_json_parse(store_base);

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(store_changes); i++) {
        const char *path = store_changes[i].path;
        json_t *value = store_changes[i].value != NULL
                            ? wf_test_json_parse(store_changes[i].value)
                            : NULL;
        json_t *out = (json_t *)1;
        wf_conf_store_rc_t rc = wf_conf_store_apply(
            root, store_changes[i].op, path, strlen(path), value, &out);

        if (rc != store_changes[i].rc) {
            print_message("row %zu %s: rc %d, want %d\n", i, path, rc,
                          store_changes[i].rc);
            fail();
        }
        if (rc == WF_CONF_STORE_OK) {
            store_check_row(i, out);
        } else {
            assert_null(out);
        }
        /* the tree passed in is never touched */
        assert_true(json_equal(root, pristine));
        json_decref(out);
        json_decref(value);
    }
    json_decref(pristine);
    json_decref(root);
}

/* The new tree is a copy: changing it later leaves the old one alone. */
static void
test_copy(void **state)
{
    json_t *root = wf_test_json_parse(store_base);
    json_t *value = wf_test_json_parse("{\"pass\": \"routes\"}");
    json_t *out;

    wf_unused(state);
    assert_int_equal(wf_conf_store_apply(root, WF_CONF_OP_PUT,
                                         "/listeners/*:80", 15, value, &out),
                     WF_CONF_STORE_OK);
    json_object_set_new(json_object_get(out, "listeners"), "x", json_null());
    json_array_clear(json_object_get(out, "arr"));
    assert_null(wf_conf_store_get(root, "/listeners/*:80", 15));
    assert_int_equal(json_array_size(json_object_get(root, "arr")), 3);
    json_decref(out);
    assert_int_equal(
        wf_conf_store_apply(root, WF_CONF_NOPS, "/s", 2, NULL, &out),
        WF_CONF_STORE_NOT_ALLOWED);
    assert_int_equal(
        wf_conf_store_apply(root, WF_CONF_OP_PUT, "/s", 2, NULL, &out),
        WF_CONF_STORE_NOMEM);
    json_decref(value);
    json_decref(root);
}

static const struct {
    const char *in;
    const char *out; /* NULL: invalid */
} store_decodes[] = {
    {"", ""},         {"abc", "abc"}, {"a%2Fb", "a/b"}, {"a%2fb", "a/b"},
    {"%41%42", "AB"}, {"a+b", "a+b"}, {"%25", "%"},     {"%252F", "%2F"},
    {"%", NULL},      {"%4", NULL},   {"a%4", NULL},    {"%G1", NULL},
    {"%1G", NULL},
};

static void
test_decode(void **state)
{
    char buf[32];

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(store_decodes); i++) {
        const char *in = store_decodes[i].in;
        long n = wf_conf_store_decode(buf, in, strlen(in));

        if (store_decodes[i].out == NULL) {
            assert_int_equal(n, -1);
            continue;
        }
        assert_int_equal(n, strlen(store_decodes[i].out));
        assert_string_equal(buf, store_decodes[i].out);
    }
    /* an escaped NUL stays part of the key */
    assert_int_equal(wf_conf_store_decode(buf, "a%00b", 5), 3);
    assert_memory_equal(buf, "a\0b", 3);
}

int
wf_test_conf_store(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_changes),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_decode),
    };

    return cmocka_run_group_tests_name("conf_store", tests, NULL, NULL);
}
