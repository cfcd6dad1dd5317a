/* The control API: routes, methods, status codes and the exact reply bodies
 * of Unit, and the text they are sent as. */
#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/api.h"
#include "core/common.h"
#include "unit.h"

#define API_BASE                                                    \
    "{\"listeners\": {\"127.0.0.1:8080\": {\"pass\": \"routes\"}}," \
    " \"routes\": [{\"action\": {\"return\": 200}}]}"

#define API_STATUS                                                        \
    "{\"modules\": {}, \"connections\": {\"accepted\": 0, \"active\": 0," \
    " \"idle\": 0, \"closed\": 0}, \"requests\": {\"total\": 0},"         \
    " \"applications\": {}}"

#define API_DONE   "{\"success\": \"Reconfiguration done.\"}"
#define API_ERR(t) "{\"error\": \"" t "\"}"
#define API_CONF(d) \
    "{\"error\": \"Invalid configuration.\", \"detail\": \"" d "\"}"
#define API_NOT_FOUND   API_ERR("Value doesn't exist.")
#define API_NOT_ALLOWED API_ERR("Method isn't allowed.")
#define API_BAD_METHOD  API_ERR("Invalid method.")

static void
api_expect(const char *what, json_t *got, const char *want)
{
    json_t *w = wf_test_json_parse(want);

    if (got == NULL || !json_equal(got, w)) {
        char *text = got != NULL ? json_dumps(got, JSON_ENCODE_ANY) : NULL;

        print_message("%s:\n  got  %s\n  want %s\n", what,
                      text != NULL ? text : "(none)", want);
        free(text);
        fail();
    }
    json_decref(w);
}

static const struct {
    const char *method;
    const char *target;
    const char *body; /* NULL: none */
    unsigned status;
    const char *reply; /* the reply body, as JSON */
    const char *conf;  /* the config to apply, NULL: none */
} api_rows[] = {
    /* "/" */
    {"GET", "/", NULL, 200,
     "{\"certificates\": {}, \"config\": " API_BASE ", \"status\": " API_STATUS
     "}",
     NULL},
    {"GET", "/?a=b", NULL, 200,
     "{\"certificates\": {}, \"config\": " API_BASE ", \"status\": " API_STATUS
     "}",
     NULL},
    {"PUT", "/", "{}", 405, API_BAD_METHOD, NULL},
    {"DELETE", "/", NULL, 405, API_BAD_METHOD, NULL},
    {"HEAD", "/", NULL, 405, API_BAD_METHOD, NULL},
    /* unknown */
    {"GET", "/nope", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "/configx", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "/statusx", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "config", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "//", NULL, 200, NULL, NULL}, /* Unit: one trailing slash goes */
    {"PUT", "/nope", "1", 404, API_NOT_FOUND, NULL},
    /* GET /config */
    {"GET", "/config", NULL, 200, API_BASE, NULL},
    {"GET", "/config/", NULL, 200, API_BASE, NULL},
    {"GET", "/config?x", NULL, 200, API_BASE, NULL},
    {"GET", "/config/listeners/127.0.0.1%3A8080/pass", NULL, 200, "\"routes\"",
     NULL},
    {"GET", "/config/listeners/127.0.0.1:8080/pass/", NULL, 200, "\"routes\"",
     NULL},
    {"GET", "/config/routes/0/action", NULL, 200, "{\"return\": 200}", NULL},
    {"GET", "/config/routes/1", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "/config/routes/x", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "/config/nope", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "/config/listeners/127.0.0.1:8080/pass/x", NULL, 404, API_NOT_FOUND,
     NULL},
    /* methods on /config */
    {"PATCH", "/config", "{}", 405, API_NOT_ALLOWED, NULL},
    {"get", "/config", NULL, 405, API_NOT_ALLOWED, NULL},
    {"POST", "/config", "[]", 405, API_NOT_ALLOWED, NULL},
    {"POST", "/config/", "{", 405, API_NOT_ALLOWED, NULL},
    {"POST", "/config/listeners", "{}", 405, API_NOT_ALLOWED, NULL},
    {"POST", "/config/nope", "{}", 404, API_NOT_FOUND, NULL},
    /* bodies */
    {"PUT", "/config", "{", 400,
     "{\"error\": \"Invalid JSON.\", \"detail\": \"string or '}' expected "
     "near end of file\", \"location\": {\"offset\": 1, \"line\": 1, "
     "\"column\": 2}}",
     NULL},
    {"PUT", "/config", "{\n  \"a\": 1,\n  \"a\": 2\n}", 400,
     "{\"error\": \"Invalid JSON.\", \"detail\": \"duplicate object key "
     "near '\\\"a\\\"'\", \"location\": {\"offset\": 14, \"line\": 3, "
     "\"column\": 3}}",
     NULL},
    {"PUT", "/config", "", 400,
     "{\"error\": \"Invalid JSON.\", \"detail\": \"An empty JSON payload "
     "isn't allowed.  It must be either a literal (null, true, or false), a "
     "number, a string (in double quotes \\\"\\\"), an array (with brackets "
     "[]), or an object (with braces {}).\", \"location\": {\"offset\": 0, "
     "\"line\": 1, \"column\": 1}}",
     NULL},
    {"PUT", "/config", " \r\n\t", 400, NULL, NULL},
    {"PUT", "/config/nope/x", "{", 400, NULL, NULL},
    {"PUT", "/config/nope/x", "1", 404, API_NOT_FOUND, NULL},
    /* validation of the whole result */
    {"PUT", "/config", "{\"x\": 1}", 400,
     API_CONF("Unknown parameter \\\"x\\\"."), NULL},
    {"PUT", "/config/listeners/127.0.0.1:8080/pass", "\"routes/y\"", 400,
     API_CONF("Request \\\"pass\\\" points to invalid location "
              "\\\"routes/y\\\"."),
     NULL},
    {"DELETE", "/config/routes", NULL, 400,
     API_CONF("Request \\\"pass\\\" points to invalid location "
              "\\\"routes\\\"."),
     NULL},
    {"PUT", "/config/listeners", "[]", 400,
     API_CONF("The \\\"listeners\\\" value must be an object, but not an "
              "array."),
     NULL},
    {"PUT", "/config", "[]", 400,
     API_CONF("The configuration must be an object, but not an array."), NULL},
    /* no module list from main yet: every type is refused, as Unit's */
    {"PUT", "/config/applications",
     "{\"app\": {\"type\": \"python\", \"module\": \"m\"}}", 400,
     API_CONF("The module to run \\\"python\\\" is not found among the "
              "available application modules."),
     NULL},
    /* accepted changes */
    {"PUT", "/config", "{}", 200, API_DONE, "{}"},
    {"PUT", "/config/", "// Unit's lenient JSON\n{\"listeners\": {},}", 200,
     API_DONE, "{\"listeners\": {}}"},
    {"DELETE", "/config", NULL, 200, API_DONE, "{}"},
    {"DELETE", "/config/", NULL, 200, API_DONE, "{}"},
    {"DELETE", "/config/listeners/127.0.0.1%3A8080", NULL, 200, API_DONE,
     "{\"listeners\": {}, \"routes\": [{\"action\": {\"return\": 200}}]}"},
    {"DELETE", "/config/nope", NULL, 404, API_NOT_FOUND, NULL},
    {"DELETE", "/config/routes/1", NULL, 404, API_NOT_FOUND, NULL},
    {"PUT", "/config/routes/0/action/return", "404", 200, API_DONE,
     "{\"listeners\": {\"127.0.0.1:8080\": {\"pass\": \"routes\"}},"
     " \"routes\": [{\"action\": {\"return\": 404}}]}"},
    {"POST", "/config/routes", "{\"action\": {\"return\": 204}}", 200, API_DONE,
     "{\"listeners\": {\"127.0.0.1:8080\": {\"pass\": \"routes\"}},"
     " \"routes\": [{\"action\": {\"return\": 200}},"
     " {\"action\": {\"return\": 204}}]}"},
    {"PUT", "/config/routes/1", "{\"action\": {\"return\": 204}}", 200,
     API_DONE,
     "{\"listeners\": {\"127.0.0.1:8080\": {\"pass\": \"routes\"}},"
     " \"routes\": [{\"action\": {\"return\": 200}},"
     " {\"action\": {\"return\": 204}}]}"},
    {"PUT", "/config/routes/2", "{\"action\": {\"return\": 204}}", 404,
     API_NOT_FOUND, NULL},
    {"PUT", "/config/listeners/*:8081", "{\"pass\": \"routes\"}", 200, API_DONE,
     "{\"listeners\": {\"127.0.0.1:8080\": {\"pass\": \"routes\"},"
     " \"*:8081\": {\"pass\": \"routes\"}},"
     " \"routes\": [{\"action\": {\"return\": 200}}]}"},
    /* changes that change nothing are done, with nothing to apply */
    {"PUT", "/config", API_BASE, 200, API_DONE, NULL},
    {"PUT", "/config/routes/0/action/return", "200", 200, API_DONE, NULL},
    /* an empty "applications" is accepted (Unit's initial config) */
    {"PUT", "/config/applications", "{}", 200, API_DONE,
     "{\"listeners\": {\"127.0.0.1:8080\": {\"pass\": \"routes\"}},"
     " \"routes\": [{\"action\": {\"return\": 200}}], \"applications\": {}}"},
    /* /status */
    {"GET", "/status", NULL, 200, API_STATUS, NULL},
    {"GET", "/status/", NULL, 200, API_STATUS, NULL},
    {"GET", "/status/connections/accepted", NULL, 200, "0", NULL},
    {"GET", "/status/nope", NULL, 404, API_ERR("Invalid path."), NULL},
    {"GET", "/status/requests/total/x", NULL, 404, API_ERR("Invalid path."),
     NULL},
    {"PUT", "/status", "{}", 405, API_BAD_METHOD, NULL},
    {"POST", "/status/connections", "{}", 405, API_BAD_METHOD, NULL},
    {"DELETE", "/status/nope", NULL, 405, API_BAD_METHOD, NULL},
    /* /certificates */
    {"GET", "/certificates", NULL, 200, "{}", NULL},
    {"GET", "/certificates/", NULL, 200, "{}", NULL},
    {"GET", "/certificates/bundle", NULL, 404,
     API_ERR("Certificate doesn't exist."), NULL},
    {"GET", "/certificates/bundle/key", NULL, 404,
     API_ERR("Certificate doesn't exist."), NULL},
    {"PUT", "/certificates/bundle", "-----BEGIN CERTIFICATE-----", 400,
     "{\"error\": \"Invalid certificate.\", \"detail\": \"the PEM text is "
     "malformed\"}",
     NULL},
    {"PUT", "/certificates/bundle", "no PEM here", 400,
     "{\"error\": \"Invalid certificate.\", \"detail\": \"no key found\"}",
     NULL},
    {"PUT", "/certificates/bundle", "", 400,
     "{\"error\": \"Invalid certificate.\", \"detail\": \"the body is "
     "empty\"}",
     NULL},
    {"PUT", "/certificates/.hidden", "x", 400,
     API_ERR("Invalid certificate name."), NULL},
    {"PUT", "/certificates/a%2Fb", "x", 400,
     API_ERR("Invalid certificate name."), NULL},
    {"DELETE", "/certificates", NULL, 400, API_ERR("Invalid certificate name."),
     NULL},
    {"PUT", "/certificates", "x", 400, API_ERR("Invalid certificate name."),
     NULL},
    {"PUT", "/certificates/a/b", "x", 400, API_ERR("Invalid certificate name."),
     NULL},
    {"POST", "/certificates", "x", 400, API_ERR("Invalid certificate name."),
     NULL},
    {"DELETE", "/certificates/bundle", NULL, 404,
     API_ERR("Certificate doesn't exist."), NULL},
    {"POST", "/certificates/bundle", "x", 405, API_BAD_METHOD, NULL},
    /* /control */
    {"GET", "/control/applications/app/restart", NULL, 404, API_NOT_FOUND,
     NULL},
    {"GET", "/control/applications/restart", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "/control/applications/app", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "/control/", NULL, 404, API_NOT_FOUND, NULL},
    {"GET", "/control", NULL, 404, API_NOT_FOUND, NULL},
    {"POST", "/control", NULL, 404, API_NOT_FOUND, NULL},
    {"POST", "/control/applications/app/restart", NULL, 405, API_NOT_ALLOWED,
     NULL},
};

static void
api_run_row(json_t *conf, size_t i)
{
    wf_api_reply_t reply;
    const char *m = api_rows[i].method;
    const char *t = api_rows[i].target;
    const char *b = api_rows[i].body;
    char what[256];

    snprintf(what, sizeof(what), "row %zu: %s %s", i, m, t);
    wf_api_handle(conf, NULL, wf_str_make(m, strlen(m)),
                  wf_str_make(t, strlen(t)), b, b != NULL ? strlen(b) : 0,
                  &reply);
    if (reply.status != api_rows[i].status) {
        print_message("%s: status %u, want %u\n", what, reply.status,
                      api_rows[i].status);
        fail();
    }
    if (api_rows[i].reply != NULL) {
        api_expect(what, reply.body, api_rows[i].reply);
    }
    if (api_rows[i].conf == NULL) {
        if (reply.conf != NULL) {
            print_message("%s: unexpected new config\n", what);
        }
        assert_null(reply.conf);
    } else {
        api_expect(what, reply.conf, api_rows[i].conf);
    }
    assert_null(reply.restart);
    wf_api_reply_fini(&reply);
}

static void
test_rows(void **state)
{
    json_t *conf = wf_test_json_parse(API_BASE);
    json_t *pristine = wf_test_json_parse(API_BASE);

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(api_rows); i++) {
        api_run_row(conf, i);
        assert_true(json_equal(conf, pristine)); /* never modified */
    }
    json_decref(pristine);
    json_decref(conf);
}

static void
api_call(json_t *conf, json_t *status, const char *m, const char *t,
         const char *body, size_t len, wf_api_reply_t *reply)
{
    wf_api_handle(conf, status, wf_str_make(m, strlen(m)),
                  wf_str_make(t, strlen(t)), body, len, reply);
}

/* A body over the limit is refused before it is parsed. */
static void
test_body_limit(void **state)
{
    json_t *conf = wf_test_json_parse(API_BASE);
    size_t len = WF_API_BODY_MAX + 1;
    char *big = malloc(len);
    wf_api_reply_t reply;

    wf_unused(state);
    assert_non_null(big);
    memset(big, ' ', len);
    big[0] = '{';
    big[len - 1] = '}';
    api_call(conf, NULL, "PUT", "/config", big, len, &reply);
    assert_int_equal(reply.status, WF_API_TOO_LARGE);
    api_expect("too large", reply.body,
               "{\"error\": \"Request body is too large.\", \"detail\": "
               "\"The request body exceeds the limit of 8388608 bytes.\"}");
    assert_null(reply.conf);
    wf_api_reply_fini(&reply);
    /* exactly at the limit it is parsed */
    api_call(conf, NULL, "PUT", "/config", big, len - 1, &reply);
    assert_int_equal(reply.status, 400);
    wf_api_reply_fini(&reply);
    /* a GET ignores its body */
    api_call(conf, NULL, "GET", "/config/routes", big, len, &reply);
    assert_int_equal(reply.status, 200);
    wf_api_reply_fini(&reply);
    free(big);
    json_decref(conf);
}

/* The caller's status object is served as is; a NULL config reads as {}. */
static void
test_status_and_null_conf(void **state)
{
    json_t *status = wf_test_json_parse("{\"connections\": {\"accepted\": 7}}");
    wf_api_reply_t reply;

    wf_unused(state);
    api_call(NULL, status, "GET", "/status/connections/accepted", NULL, 0,
             &reply);
    assert_int_equal(reply.status, 200);
    api_expect("status", reply.body, "7");
    wf_api_reply_fini(&reply);
    api_call(NULL, status, "GET", "/", NULL, 0, &reply);
    api_expect("root", reply.body,
               "{\"certificates\": {}, \"config\": {}, \"status\": "
               "{\"connections\": {\"accepted\": 7}}}");
    wf_api_reply_fini(&reply);
    api_call(NULL, NULL, "PUT", "/config/listeners", "{}", 2, &reply);
    assert_int_equal(reply.status, 200);
    api_expect("put", reply.conf, "{\"listeners\": {}}");
    wf_api_reply_fini(&reply);
    api_call(NULL, NULL, "DELETE", "/config", NULL, 0, &reply);
    assert_int_equal(reply.status, 200);
    assert_null(reply.conf); /* {} was already the config */
    wf_api_reply_fini(&reply);
    wf_api_reply_fini(&reply); /* twice is harmless */
    json_decref(status);
}

/* ---- the reply text ---------------------------------------------------- */

static const struct {
    const char *json;
    const char *text;
} api_texts[] = {
    {"{\"success\": \"Reconfiguration done.\"}",
     "{\r\n\t\"success\": \"Reconfiguration done.\"\r\n}\r\n"},
    {"{\"error\": \"Invalid JSON.\", \"detail\": \"x\", \"location\": "
     "{\"offset\": 1, \"line\": 1, \"column\": 2}}",
     "{\r\n\t\"error\": \"Invalid JSON.\",\r\n\t\"detail\": \"x\",\r\n"
     "\t\"location\": {\r\n\t\t\"offset\": 1,\r\n\t\t\"line\": 1,\r\n"
     "\t\t\"column\": 2\r\n\t}\r\n}\r\n"},
    /* an empty line after members whose value was an object or array */
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\"}}, \"routes\": "
     "[{\"action\": {\"return\": 200}}, 1], \"x\": {}, \"y\": true}",
     "{\r\n\t\"listeners\": {\r\n\t\t\"*:80\": {\r\n\t\t\t\"pass\": "
     "\"routes\"\r\n\t\t}\r\n\t},\r\n\r\n\t\"routes\": [\r\n\t\t{\r\n"
     "\t\t\t\"action\": {\r\n\t\t\t\t\"return\": 200\r\n\t\t\t}\r\n\t\t},\r\n"
     "\t\t1\r\n\t],\r\n\r\n\t\"x\": {},\r\n\t\"y\": true\r\n}\r\n"},
    {"{}", "{}\r\n"},
    {"[]", "[]\r\n"},
    {"\"a\\\"b\\\\c\\n\\u0001\\u001f/\\u00e9\"",
     "\"a\\\"b\\\\c\\n\\u0001\\u001F/\xc3\xa9\"\r\n"},
    {"-42", "-42\r\n"},
    {"null", "null\r\n"},
    {"[false, null]", "[\r\n\tfalse,\r\n\tnull\r\n]\r\n"},
};

static void
test_text(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(api_texts); i++) {
        json_t *v = wf_test_json_parse(api_texts[i].json);
        wf_api_reply_t reply = {.status = 200, .body = v};
        size_t len = 0;
        char *text = wf_api_reply_text(&reply, &len);

        assert_non_null(text);
        if (strcmp(text, api_texts[i].text) != 0) {
            print_message("row %zu: got\n%s\n", i, text);
            fail();
        }
        assert_int_equal(len, strlen(text));
        free(text);
        json_decref(v);
    }
    assert_null(wf_api_json_text(NULL, NULL));
    assert_string_equal(wf_api_status_text(405), "Method Not Allowed");
    assert_string_equal(wf_api_status_text(500), "Internal Server Error");
    assert_string_equal(wf_api_status_text(599), "Internal Server Error");
}

/* ---- shared/unit-configs ----------------------------------------------- */

static void
api_put_config(const char *name, const char *text, size_t len)
{
    json_t *conf =
        wf_test_json_parse("{\"listeners\": {}, \"applications\": {}}");
    wf_api_reply_t reply;
    json_t *detail;

    api_call(conf, NULL, "PUT", "/config", text, len, &reply);
    detail = json_object_get(reply.body, "detail");
    print_message("%s: %u %s\n", name, reply.status,
                  detail != NULL ? json_string_value(detail) : "");
    if (reply.status == 200) {
        assert_non_null(reply.conf);
    } else {
        assert_int_equal(reply.status, 400);
        assert_string_equal(
            json_string_value(json_object_get(reply.body, "error")),
            "Invalid configuration.");
        assert_non_null(strstr(json_string_value(detail), "not supported yet"));
    }
    wf_api_reply_fini(&reply);
    json_decref(conf);
}

/* With the modules main found, applications are accepted when their
 * type names one; "GET /control/applications/NAME/restart" asks the router
 * for a restart of an existing NAME. */
static void
test_applications(void **state)
{
    static const char app[] =
        "{\"type\": \"python 3.11\", \"module\": \"wsgi\"}";
    json_t *modules = wf_test_json_parse(
        "[{\"type\": \"python\", \"version\": \"3.11.2\", \"file\": \"/m\"}]");
    json_t *conf = wf_test_json_parse(
        "{\"listeners\": {\"127.0.0.1:8080\": {\"pass\": "
        "\"applications/a b\"}}, \"applications\": {\"a b\": {\"type\": "
        "\"python\", \"module\": \"wsgi\"}}}");
    wf_api_reply_t reply;

    wf_unused(state);
    wf_api_modules_set(modules);
    api_call(conf, NULL, "PUT", "/config/applications/c", app, strlen(app),
             &reply);
    assert_int_equal(reply.status, 200);
    api_expect("put app", reply.body, API_DONE);
    assert_non_null(
        json_object_get(json_object_get(reply.conf, "applications"), "c"));
    wf_api_reply_fini(&reply);
    api_call(conf, NULL, "PUT", "/config/applications/a%20b/type",
             "\"python 3.9\"", 12, &reply);
    assert_int_equal(reply.status, 400);
    api_expect("absent version", reply.body,
               API_CONF("The module to run \\\"python 3.9\\\" is not found "
                        "among the available application modules."));
    wf_api_reply_fini(&reply);
    api_call(conf, NULL, "GET", "/control/applications/a%20b/restart", NULL, 0,
             &reply);
    assert_int_equal(reply.status, 200);
    api_expect("restart", reply.body, "{\"success\": \"Ok\"}");
    assert_string_equal(reply.restart, "a b");
    assert_null(reply.conf);
    wf_api_reply_fini(&reply);
    assert_null(reply.restart);
    api_call(conf, NULL, "GET", "/control/applications/a%20b/restart/?x", NULL,
             0, &reply);
    assert_string_equal(reply.restart, "a b");
    wf_api_reply_fini(&reply);
    api_call(conf, NULL, "GET", "/control/applications/ab/restart", NULL, 0,
             &reply);
    assert_int_equal(reply.status, 404);
    api_expect("unknown app", reply.body, API_NOT_FOUND);
    assert_null(reply.restart);
    wf_api_reply_fini(&reply);
    api_call(conf, NULL, "PUT", "/control/applications/a%20b/restart", NULL, 0,
             &reply);
    assert_int_equal(reply.status, 405);
    api_expect("put restart", reply.body, API_NOT_ALLOWED);
    assert_null(reply.restart);
    wf_api_reply_fini(&reply);
    api_call(conf, NULL, "GET", "/control/applications/a%20b/restartx", NULL, 0,
             &reply);
    assert_int_equal(reply.status, 404);
    wf_api_reply_fini(&reply);
    wf_api_modules_set(NULL);
    api_call(conf, NULL, "PUT", "/config/applications/c", app, strlen(app),
             &reply);
    assert_int_equal(reply.status, 400);
    wf_api_reply_fini(&reply);
    json_decref(modules);
    json_decref(conf);
}

static void
test_unit_configs(void **state)
{
    char dir[PATH_MAX];
    char path[PATH_MAX + 256];
    struct dirent *de;
    unsigned seen = 0;
    DIR *d = NULL;

    wf_unused(state);
    json_t *modules =
        wf_test_json_parse("[{\"type\": \"python\", \"version\": \"3.12.1\"},"
                           " {\"type\": \"python\", \"version\": \"3.11.2\"},"
                           " {\"type\": \"php\", \"version\": \"8.2.7\"}]");

    if (!wf_test_unit_configs_dir(dir, sizeof(dir))
        || (d = opendir(dir)) == NULL) {
        json_decref(modules);
        skip();
    }
    wf_api_modules_set(modules);
    json_decref(modules);
    while ((de = readdir(d)) != NULL) {
        size_t nlen = strlen(de->d_name);
        size_t len = 0;
        char *text;

        if (nlen < 5 || strcmp(de->d_name + nlen - 5, ".json") != 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        text = wf_test_read_file(path, &len);
        assert_non_null(text);
        api_put_config(de->d_name, text, len);
        free(text);
        seen++;
    }
    closedir(d);
    wf_api_modules_set(NULL);
    assert_true(seen > 0);
}

int
wf_test_api(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_status_and_null_conf),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_applications),
        cmocka_unit_test(test_unit_configs),
    };

    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
