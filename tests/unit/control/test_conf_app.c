/* "applications": each validation rule with the message Unit 1.35 gives
 * (each row was checked against a running Unit with its python3.11
 * module, except the php rows, read from nxt_conf_validation.c since
 * Unit's php module is not installed here), the compiled descriptors,
 * passes to applications, and the type lookup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/app_type.h"
#include "control/conf.h"
#include "control/conf_app.h"
#include "core/common.h"
#include "http/app_desc.h"
#include "unit.h"

/* What main sends when it found Debian's python3.11 module (and, for the
 * php rows, a php module that does not exist yet). */
#define APP_MODULES                                                         \
    "[{\"type\": \"python\", \"version\": \"3.11.2\", \"file\": \"/m/p\"}," \
    " {\"type\": \"php\", \"version\": \"8.2.7\", \"file\": \"/m/php\"}]"

#define PY "\"type\": \"python\", \"module\": \"wsgi\""

static json_t *
app_modules(void)
{
    return wf_test_json_parse(APP_MODULES);
}

/* Checks text (a whole config) as the controller does. */
static int
app_check(const char *text, const json_t *modules, wf_conf_error_t *err)
{
    json_t *root = wf_test_json_parse(text);
    int rc = wf_conf_check(root, modules, err);

    json_decref(root);
    return rc;
}

static const struct {
    const char *apps;   /* the "applications" object */
    const char *detail; /* NULL: accepted */
} app_rows[] = {
    {"[]", "The \"applications\" value must be an object, but not an array."},
    {"{\"a\": 1}", "The \"a\" value must be an object, but not an integer "
                   "number."},
    {"{\"a\": {}}", "Application must have the \"type\" property set."},
    {"{\"a\": {\"module\": \"w\"}}",
     "Application must have the \"type\" property set."},
    {"{\"a\": {\"type\": 1}}",
     "The \"type\" value must be a string, but not an integer number."},
    /* type first, then the required members, then the others in order */
    {"{\"a\": {\"type\": \"python\"}}", "Required parameter \"module\" is "
                                        "missing."},
    {"{\"a\": {\"type\": \"python\", \"bogus\": 1}}",
     "Required parameter \"module\" is missing."},
    {"{\"a\": {" PY ", \"bogus\": 1}}", "Unknown parameter \"bogus\"."},
    {"{\"a\": {\"type\": \"foo\"}}",
     "The module to run \"foo\" is not found among the available "
     "application modules."},
    {"{\"a\": {\"type\": \"perl\", \"script\": \"/x\"}}",
     "The module to run \"perl\" is not found among the available "
     "application modules."},
    {"{\"a\": {\"type\": \"python 2\", \"module\": \"w\"}}",
     "The module to run \"python 2\" is not found among the available "
     "application modules."},
    {"{\"a\": {\"type\": \"python 3.1\", \"module\": \"w\"}}",
     "The module to run \"python 3.1\" is not found among the available "
     "application modules."},
    {"{\"a\": {\"type\": \"python  3\", \"module\": \"w\"}}",
     "The module to run \"python  3\" is not found among the available "
     "application modules."},
    {"{\"a\": {\"type\": \"Python\", \"module\": \"w\"}}",
     "The module to run \"Python\" is not found among the available "
     "application modules."},
    {"{\"a\": {\"type\": \"\", \"module\": \"w\"}}",
     "The module to run \"\" is not found among the available application "
     "modules."},
    {"{\"a\": {\"type\": \"python 3\", \"module\": \"w\"}}", NULL},
    {"{\"a\": {\"type\": \"python 3.\", \"module\": \"w\"}}", NULL},
    {"{\"a\": {\"type\": \"python 3.11\", \"module\": \"w\"}}", NULL},
    {"{\"a\": {\"type\": \"python3.11\", \"module\": \"w\"}}", NULL},
    {"{\"a\": {\"type\": \"python 3.11.2\", \"module\": \"w\"}}", NULL},
    /* processes */
    {"{\"a\": {" PY ", \"processes\": 0}}",
     "The \"processes\" number must be equal to or greater than 1."},
    {"{\"a\": {" PY ", \"processes\": -1}}",
     "The \"processes\" number must be equal to or greater than 1."},
    {"{\"a\": {" PY ", \"processes\": 2147483648}}",
     "The \"processes\" number must not exceed 2147483647."},
    {"{\"a\": {" PY ", \"processes\": \"1\"}}",
     "The \"processes\" value must be either an integer number or an "
     "object, but not a string."},
    {"{\"a\": {" PY ", \"processes\": 1.5}}",
     "The \"processes\" value must be either an integer number or an "
     "object, but not a fractional number."},
    {"{\"a\": {" PY ", \"processes\": {}}}", NULL},
    {"{\"a\": {" PY ", \"processes\": {\"max\": 0}}}",
     "The \"max\" number must be equal to or greater than 1."},
    {"{\"a\": {" PY ", \"processes\": {\"max\": 2147483648}}}",
     "The \"max\" number must not exceed 2147483647."},
    {"{\"a\": {" PY ", \"processes\": {\"spare\": -1}}}",
     "The \"spare\" number must not be negative."},
    {"{\"a\": {" PY ", \"processes\": {\"spare\": 2147483648}}}",
     "The \"spare\" number must not exceed 2147483647."},
    {"{\"a\": {" PY ", \"processes\": {\"spare\": 3, \"max\": 2}}}",
     "The \"spare\" number must be less than or equal to \"max\"."},
    {"{\"a\": {" PY ", \"processes\": {\"spare\": 2}}}",
     "The \"spare\" number must be less than or equal to \"max\"."},
    {"{\"a\": {" PY ", \"processes\": {\"idle_timeout\": -1}}}",
     "The \"idle_timeout\" number must not be negative."},
    {"{\"a\": {" PY ", \"processes\": {\"idle_timeout\": 2147484}}}",
     "The \"idle_timeout\" number must not exceed 2147483."},
    {"{\"a\": {" PY ", \"processes\": {\"idle_timeout\": 2147483}}}", NULL},
    {"{\"a\": {" PY ", \"processes\": {\"idle_timeout\": 1.5}}}",
     "The \"idle_timeout\" value must be an integer number, but not a "
     "fractional number."},
    {"{\"a\": {" PY ", \"processes\": {\"x\": 1}}}",
     "Unknown parameter \"x\"."},
    {"{\"a\": {" PY ", \"processes\": {\"max\": \"2\"}}}",
     "The \"max\" value must be an integer number, but not a string."},
    /* limits (negative values: Wharf's check) */
    {"{\"a\": {" PY ", \"limits\": 1}}",
     "The \"limits\" value must be an object, but not an integer number."},
    {"{\"a\": {" PY ", \"limits\": {\"timeout\": \"1\"}}}",
     "The \"timeout\" value must be an integer number, but not a string."},
    {"{\"a\": {" PY ", \"limits\": {\"timeout\": 1.5}}}",
     "The \"timeout\" value must be an integer number, but not a "
     "fractional number."},
    {"{\"a\": {" PY ", \"limits\": {\"x\": 1}}}", "Unknown parameter \"x\"."},
    {"{\"a\": {" PY ", \"limits\": {\"timeout\": -1}}}",
     "The \"timeout\" number must not be negative."},
    {"{\"a\": {" PY ", \"limits\": {\"requests\": -1}}}",
     "The \"requests\" number must not be negative."},
    {"{\"a\": {" PY ", \"limits\": {\"timeout\": 2147484}}}",
     "The \"timeout\" number must not exceed 2147483."},
    {"{\"a\": {" PY ", \"limits\": {\"timeout\": 0, \"requests\": 0, "
     "\"shm\": 1}}}",
     NULL},
    /* strings */
    {"{\"a\": {" PY ", \"user\": 1}}",
     "The \"user\" value must be a string, but not an integer number."},
    {"{\"a\": {" PY ", \"group\": 1}}",
     "The \"group\" value must be a string, but not an integer number."},
    {"{\"a\": {" PY ", \"working_directory\": 1}}",
     "The \"working_directory\" value must be a string, but not an integer "
     "number."},
    {"{\"a\": {" PY ", \"stdout\": 1}}",
     "The \"stdout\" value must be a string, but not an integer number."},
    {"{\"a\": {" PY ", \"stderr\": 1}}",
     "The \"stderr\" value must be a string, but not an integer number."},
    {"{\"a\": {" PY ", \"user\": \"nobody\", \"group\": \"nogroup\", "
     "\"working_directory\": \"/\", \"stdout\": \"/dev/null\", "
     "\"stderr\": \"/dev/null\"}}",
     NULL},
    /* environment */
    {"{\"a\": {" PY ", \"environment\": 1}}",
     "The \"environment\" value must be an object, but not an integer "
     "number."},
    {"{\"a\": {" PY ", \"environment\": {\"\": \"x\"}}}",
     "The environment name must not be empty."},
    {"{\"a\": {" PY ", \"environment\": {\"A=B\": \"x\"}}}",
     "The environment name must not contain '=' character."},
    {"{\"a\": {" PY ", \"environment\": {\"A\": 1}}}",
     "The \"A\" environment value must be a string."},
    {"{\"a\": {" PY ", \"environment\": {\"A\": null}}}",
     "The \"A\" environment value must be a string."},
    {"{\"a\": {" PY ", \"environment\": {\"A\": \"1\", \"B\": \"\"}}}", NULL},
    /* isolation: Wharf refuses it unless empty */
    {"{\"a\": {" PY ", \"isolation\": 1}}",
     "The \"isolation\" value must be an object, but not an integer number."},
    {"{\"a\": {" PY ", \"isolation\": {}}}", NULL},
    {"{\"a\": {" PY ", \"isolation\": {\"namespaces\": {\"credential\": "
     "true}}}}",
     "The \"isolation\" option is not supported yet."},
    /* queue (Wharf) */
    {"{\"a\": {" PY ", \"queue\": 1}}",
     "The \"queue\" value must be an object, but not an integer number."},
    {"{\"a\": {" PY ", \"queue\": {\"x\": 1}}}", "Unknown parameter \"x\"."},
    {"{\"a\": {" PY ", \"queue\": {\"length\": 0}}}",
     "The \"length\" number must be equal to or greater than 1."},
    {"{\"a\": {" PY ", \"queue\": {\"length\": 2147483648}}}",
     "The \"length\" number must not exceed 2147483647."},
    {"{\"a\": {" PY ", \"queue\": {\"length\": 1.5}}}",
     "The \"length\" value must be an integer number, but not a fractional "
     "number."},
    {"{\"a\": {" PY ", \"queue\": {\"timeout\": 0}}}",
     "The \"timeout\" number must be greater than 0."},
    {"{\"a\": {" PY ", \"queue\": {\"timeout\": -0.5}}}",
     "The \"timeout\" number must be greater than 0."},
    {"{\"a\": {" PY ", \"queue\": {\"timeout\": 2147484}}}",
     "The \"timeout\" number must not exceed 2147483."},
    {"{\"a\": {" PY ", \"queue\": {\"timeout\": \"1\"}}}",
     "The \"timeout\" value must be either an integer number or a "
     "fractional number, but not a string."},
    {"{\"a\": {" PY ", \"queue\": {\"length\": 1, \"timeout\": 0.25}}}", NULL},
    /* python */
    {"{\"a\": {" PY ", \"path\": 1}}",
     "The \"path\" value must be either a string or an array, but not an "
     "integer number."},
    {"{\"a\": {" PY ", \"path\": [1]}}",
     "The \"path\" array must contain only string values."},
    {"{\"a\": {" PY ", \"path\": []}}", NULL},
    {"{\"a\": {" PY ", \"path\": [\"/a\", \"/b\"], \"home\": \"/v\"}}", NULL},
    {"{\"a\": {" PY ", \"home\": 1}}",
     "The \"home\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"python\", \"module\": 1}}",
     "The \"module\" value must be a string, but not an integer number."},
    {"{\"a\": {" PY ", \"callable\": 1}}",
     "The \"callable\" value must be a string, but not an integer number."},
    {"{\"a\": {" PY ", \"factory\": 1}}",
     "The \"factory\" value must be a boolean, but not an integer number."},
    {"{\"a\": {" PY ", \"factory\": \"true\"}}",
     "The \"factory\" value must be a boolean, but not a string."},
    {"{\"a\": {" PY ", \"prefix\": 1}}",
     "The \"prefix\" value must be a string, but not an integer number."},
    {"{\"a\": {" PY ", \"prefix\": \"a\"}}",
     "The \"prefix\" must be a string beginning with \"/\"."},
    {"{\"a\": {" PY ", \"prefix\": \"\"}}",
     "The \"prefix\" must be a string beginning with \"/\"."},
    {"{\"a\": {" PY ", \"prefix\": \"/a/\", \"callable\": \"app\", "
     "\"factory\": true}}",
     NULL},
    {"{\"a\": {" PY ", \"protocol\": \"x\"}}",
     "The \"protocol\" can either be \"wsgi\" or \"asgi\"."},
    {"{\"a\": {" PY ", \"protocol\": \"WSGI\"}}",
     "The \"protocol\" can either be \"wsgi\" or \"asgi\"."},
    {"{\"a\": {" PY ", \"protocol\": 1}}",
     "The \"protocol\" value must be a string, but not an integer number."},
    {"{\"a\": {" PY ", \"protocol\": \"asgi\"}}", NULL},
    {"{\"a\": {" PY ", \"threads\": 0}}",
     "The \"threads\" number must be equal to or greater than 1."},
    {"{\"a\": {" PY ", \"threads\": 2147483648}}",
     "The \"threads\" number must not exceed 2147483647."},
    {"{\"a\": {" PY ", \"threads\": \"1\"}}",
     "The \"threads\" value must be an integer number, but not a string."},
    {"{\"a\": {" PY ", \"thread_stack_size\": \"1\"}}",
     "The \"thread_stack_size\" value must be an integer number, but not a "
     "string."},
    /* targets */
    {"{\"a\": {\"type\": \"python\", \"targets\": 1}}",
     "The \"targets\" value must be an object, but not an integer number."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {}}}", NULL},
    {"{\"a\": {\"type\": \"python\", \"module\": \"w\", \"targets\": {}}}",
     "The \"module\" option is mutually exclusive with the \"targets\" "
     "object."},
    {"{\"a\": {\"type\": \"python\", \"module\": 1, \"targets\": {}}}",
     "The \"module\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {}, \"callable\": \"x\"}}",
     "The \"callable\" option is mutually exclusive with the \"targets\" "
     "object."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {}, \"factory\": true}}",
     "The \"factory\" option is mutually exclusive with the \"targets\" "
     "object."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {}, \"prefix\": \"/x\"}}",
     "The \"prefix\" option is mutually exclusive with the \"targets\" "
     "object."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"\": {}}}}",
     "The target name must not be empty."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": 1}}}",
     "The \"t\" target must be an object."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": {}}}}",
     "Required parameter \"module\" is missing."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": {\"module\": 1}}}}",
     "The \"module\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": {\"module\": "
     "\"w\", \"x\": 1}}}}",
     "Unknown parameter \"x\"."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": {\"module\": "
     "\"w\", \"prefix\": \"x\"}}}}",
     "The \"prefix\" must be a string beginning with \"/\"."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": {\"module\": "
     "\"w\", \"prefix\": 1}}}}",
     "The \"prefix\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": {\"module\": "
     "\"w\", \"factory\": 1}}}}",
     "The \"factory\" value must be a boolean, but not an integer number."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": {\"module\": "
     "\"w\", \"callable\": 1}}}}",
     "The \"callable\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": {\"module\": "
     "\"w\", \"threads\": 1}}}}",
     "Unknown parameter \"threads\"."},
    {"{\"a\": {\"type\": \"python\", \"targets\": {\"t\": {\"module\": "
     "\"w\"}}, \"bogus\": 1}}",
     "Unknown parameter \"bogus\"."},
    {"{\"a\": {\"type\": \"python\", \"threads\": 4, \"targets\": {\"t\": "
     "{\"module\": \"w\", \"callable\": \"c\", \"factory\": false, "
     "\"prefix\": \"/t\"}}}}",
     NULL},
    /* php (from Unit's source) */
    {"{\"a\": {\"type\": \"php\"}}", "Required parameter \"root\" is "
                                     "missing."},
    {"{\"a\": {\"type\": \"php\", \"root\": 1}}",
     "The \"root\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"script\": 1}}",
     "The \"script\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"index\": 1}}",
     "The \"index\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"options\": 1}}",
     "The \"options\" value must be an object, but not an integer number."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"options\": {\"x\": 1}}}",
     "Unknown parameter \"x\"."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"options\": {\"file\": "
     "1}}}",
     "The \"file\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"options\": {\"admin\": "
     "{\"\": \"x\"}}}}",
     "The PHP option name must not be empty."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"options\": {\"admin\": "
     "{\"a\": 1}}}}",
     "The \"a\" PHP option must be a string."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"options\": {\"user\": "
     "1}}}",
     "The \"user\" value must be an object, but not an integer number."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"threads\": 2}}",
     "Unknown parameter \"threads\"."},
    {"{\"a\": {\"type\": \"php\", \"module\": \"x\", \"root\": \"/\"}}",
     "Unknown parameter \"module\"."},
    {"{\"a\": {\"type\": \"php\", \"targets\": {\"t\": {}}}}",
     "Required parameter \"root\" is missing."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/\", \"targets\": {}}}",
     "The \"root\" option is mutually exclusive with the \"targets\" "
     "object."},
    {"{\"a\": {\"type\": \"php\", \"index\": 1, \"targets\": {}}}",
     "The \"index\" option is mutually exclusive with the \"targets\" "
     "object."},
    {"{\"a\": {\"type\": \"php\", \"targets\": {\"t\": {\"root\": \"/\", "
     "\"x\": 1}}}}",
     "Unknown parameter \"x\"."},
    {"{\"a\": {\"type\": \"php\", \"targets\": {\"t\": {\"root\": \"/\", "
     "\"script\": 1}}}}",
     "The \"script\" value must be a string, but not an integer number."},
    {"{\"a\": {\"type\": \"php\", \"root\": \"/srv\", \"script\": \"i.php\", "
     "\"index\": \"i.php\", \"options\": {\"file\": \"/p.ini\", \"admin\": "
     "{\"memory_limit\": \"256M\"}, \"user\": {\"x\": \"1\"}}}}",
     NULL},
    {"{\"a\": {\"type\": \"php\", \"targets\": {\"t\": {\"root\": \"/\", "
     "\"script\": \"s\", \"index\": \"i\"}}, \"options\": {}}}",
     NULL},
    /* the first failing application is reported */
    {"{\"a\": {" PY "}, \"b\": {" PY ", \"x\": 1}}",
     "Unknown parameter \"x\"."},
};

static void
test_app_validation(void **state)
{
    json_t *modules = app_modules();

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(app_rows); i++) {
        char text[4096];
        wf_conf_error_t err;
        int rc;

        snprintf(text, sizeof(text), "{\"applications\": %s}",
                 app_rows[i].apps);
        rc = app_check(text, modules, &err);
        if (app_rows[i].detail == NULL
                ? rc != WF_OK
                : rc == WF_OK || strcmp(err.detail, app_rows[i].detail) != 0) {
            print_message(
                "row %zu %s:\n  got  %s %s\n  want %s\n", i, app_rows[i].apps,
                rc == WF_OK ? "OK" : "error", rc == WF_OK ? "" : err.detail,
                app_rows[i].detail != NULL ? app_rows[i].detail : "OK");
            fail();
        }
        if (rc != WF_OK) {
            assert_string_equal(err.error, "Invalid configuration.");
        }
    }
    json_decref(modules);
}

/* Unit's limits come from the system: the minimum thread stack and the
 * page size. */
static void
test_app_thread_stack_size(void **state)
{
    long min = sysconf(_SC_THREAD_STACK_MIN);
    long page = sysconf(_SC_PAGESIZE);
    json_t *modules = app_modules();
    char text[256];
    char want[160];
    wf_conf_error_t err;

    wf_unused(state);
    snprintf(text, sizeof(text),
             "{\"applications\": {\"a\": {" PY
             ", \"thread_stack_size\": %ld}}}",
             min - 1);
    snprintf(want, sizeof(want),
             "The \"thread_stack_size\" number must be equal to or greater "
             "than %ld.",
             min);
    assert_int_equal(app_check(text, modules, &err), WF_ERROR);
    assert_string_equal(err.detail, want);
    snprintf(text, sizeof(text),
             "{\"applications\": {\"a\": {" PY
             ", \"thread_stack_size\": %ld}}}",
             min + page + 1);
    snprintf(want, sizeof(want),
             "The \"thread_stack_size\" number must be a multiple of the "
             "system page size (%ld).",
             page);
    assert_int_equal(app_check(text, modules, &err), WF_ERROR);
    assert_string_equal(err.detail, want);
    snprintf(text, sizeof(text),
             "{\"applications\": {\"a\": {" PY
             ", \"thread_stack_size\": %ld}}}",
             ((min + page - 1) / page + 16) * page);
    assert_int_equal(app_check(text, modules, &err), WF_OK);
    json_decref(modules);
}

static const struct {
    const char *modules;
    const char *type;
    int index; /* -1: none */
} type_rows[] = {
    {"[]", "python", -1},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python", 0},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python 3", 0},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python 3.", 0},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python3", 0},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python3.11", 0},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python 3.11.2", 0},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python 3.1", -1},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python 3.11.", 0},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python 3.11.20", -1},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "python  3", -1},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "pythonx", -1},
    {"[{\"type\": \"python\", \"version\": \"3.11.2\"}]", "php", -1},
    /* the highest matching version wins, whatever the list's order */
    {"[{\"type\": \"python\", \"version\": \"3.9.1\"},"
     " {\"type\": \"python\", \"version\": \"3.11.2\"},"
     " {\"type\": \"python\", \"version\": \"2.7.18\"}]",
     "python", 1},
    {"[{\"type\": \"python\", \"version\": \"3.9.1\"},"
     " {\"type\": \"python\", \"version\": \"3.11.2\"}]",
     "python 3.9", 0},
    {"[{\"type\": \"python\", \"version\": \"3.9.1\"},"
     " {\"type\": \"python\", \"version\": \"2.7.18\"}]",
     "python 2", 1},
};

static void
test_app_type(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(type_rows); i++) {
        json_t *m = wf_test_json_parse(type_rows[i].modules);
        int got = wf_app_type_find(m, type_rows[i].type);

        if (got != type_rows[i].index) {
            print_message("row %zu: %s in %s: got %d, want %d\n", i,
                          type_rows[i].type, type_rows[i].modules, got,
                          type_rows[i].index);
            fail();
        }
        json_decref(m);
    }
    assert_string_equal(wf_app_type_lang("python 3.11"), "python");
    assert_string_equal(wf_app_type_lang("php"), "php");
    assert_null(wf_app_type_lang("ruby"));
    assert_true(wf_app_type_known("python3"));
    assert_false(wf_app_type_known("go"));
}

/* Until main sends WF_MSG_MODULES, the controller knows no module: every
 * type is refused.  Compiling without a list (the router, a stored
 * config) checks only that the language is one Wharf knows. */
static void
test_app_no_modules(void **state)
{
    const char *text = "{\"applications\": {\"a\": {" PY "}}}";
    json_t *empty = wf_test_json_parse("[]");
    json_t *root = wf_test_json_parse(text);
    wf_conf_error_t err;
    wf_conf_t *conf;

    wf_unused(state);
    assert_int_equal(app_check(text, NULL, &err), WF_ERROR);
    assert_string_equal(err.detail,
                        "The module to run \"python\" is not found among the "
                        "available application modules.");
    assert_int_equal(app_check(text, empty, &err), WF_ERROR);
    conf = wf_conf_compile(root, &err);
    assert_non_null(conf);
    assert_int_equal(conf->napps, 1);
    wf_conf_destroy(conf);
    json_decref(root);
    root = wf_test_json_parse(
        "{\"applications\": {\"a\": {\"type\": \"ruby\", \"script\": \"x\"}}}");
    assert_null(wf_conf_compile(root, &err));
    assert_string_equal(err.detail,
                        "The module to run \"ruby\" is not found among the "
                        "available application modules.");
    json_decref(root);
    json_decref(empty);
}

static wf_conf_t *
app_compile_ok(const char *text)
{
    json_t *root = wf_test_json_parse(text);
    wf_conf_error_t err;
    wf_conf_t *conf = wf_conf_compile(root, &err);

    if (conf == NULL) {
        print_message("unexpected error: %s\n", err.detail);
    }
    assert_non_null(conf);
    json_decref(root);
    return conf;
}

static void
test_app_desc(void **state)
{
    wf_conf_t *conf;
    const wf_app_desc_t *d;

    wf_unused(state);
    conf = app_compile_ok(
        "{\"applications\": {"
        " \"plain\": {\"type\": \"python 3\", \"module\": \"wsgi\"},"
        " \"int\": {" PY ", \"processes\": 4, \"threads\": 8,"
        "   \"limits\": {\"timeout\": 10, \"requests\": 1000},"
        "   \"queue\": {\"length\": 5, \"timeout\": 1.5}},"
        " \"obj\": {" PY ", \"processes\": {\"max\": 6, \"spare\": 2,"
        "   \"idle_timeout\": 20}},"
        " \"empty\": {" PY ", \"processes\": {}},"
        " \"tg\": {\"type\": \"python\", \"targets\": {"
        "   \"zeta\": {\"module\": \"z\"}, \"alpha\": {\"module\": \"a\"}}}}}");
    assert_int_equal(conf->napps, 5);
    d = &conf->apps[0];
    assert_int_equal(d->name.len, 5);
    assert_memory_equal(d->name.data, "plain", 5);
    assert_string_equal(d->type, "python 3");
    assert_int_equal(d->max_processes, 1);
    assert_int_equal(d->spare_processes, 1);
    assert_int_equal(d->idle_timeout_ms, 15000);
    assert_int_equal(d->timeout_ms, 0);
    assert_int_equal(d->max_requests, 0);
    assert_int_equal(d->queue_length, 1024);
    assert_int_equal(d->queue_timeout_ms, 30000);
    assert_int_equal(d->threads, 1);
    assert_int_equal(d->ntargets, 0);
    assert_null(d->live);
    d = &conf->apps[1];
    assert_int_equal(d->max_processes, 4);
    assert_int_equal(d->spare_processes, 4);
    assert_int_equal(d->threads, 8);
    assert_int_equal(d->timeout_ms, 10000);
    assert_int_equal(d->max_requests, 1000);
    assert_int_equal(d->queue_length, 5);
    assert_int_equal(d->queue_timeout_ms, 1500);
    d = &conf->apps[2];
    assert_int_equal(d->max_processes, 6);
    assert_int_equal(d->spare_processes, 2);
    assert_int_equal(d->idle_timeout_ms, 20000);
    d = &conf->apps[3];
    assert_int_equal(d->max_processes, 1);
    assert_int_equal(d->spare_processes, 0);
    assert_int_equal(d->idle_timeout_ms, 15000);
    d = &conf->apps[4];
    assert_int_equal(d->ntargets, 2);
    assert_memory_equal(d->targets[0].data, "zeta", 4);
    assert_memory_equal(d->targets[1].data, "alpha", 5);
    /* sorted keys, but the targets keep their order */
    assert_string_equal(d->json, "{\"targets\":{\"zeta\":{\"module\":\"z\"},"
                                 "\"alpha\":{\"module\":\"a\"}},"
                                 "\"type\":\"python\"}");
    wf_conf_destroy(conf);
}

/* Equal objects in another order give the same text; nested objects and
 * arrays are canonical too. */
static void
test_app_json(void **state)
{
    json_t *a = wf_test_json_parse(
        "{\"type\": \"python\", \"module\": \"m\", \"environment\": "
        "{\"B\": \"2\", \"A\": \"1\"}, \"path\": [\"/x\", \"/y\"], "
        "\"processes\": {\"spare\": 1, \"max\": 2}, \"queue\": "
        "{\"timeout\": 2.5}}");
    json_t *b = wf_test_json_parse(
        "{\"queue\": {\"timeout\": 2.5}, \"processes\": {\"max\": 2, "
        "\"spare\": 1}, \"path\": [\"/x\", \"/y\"], \"environment\": "
        "{\"A\": \"1\", \"B\": \"2\"}, \"module\": \"m\", \"type\": "
        "\"python\"}");
    json_t *c = wf_test_json_parse(
        "{\"type\": \"python\", \"targets\": {\"b\": {\"module\": \"x\", "
        "\"callable\": \"c\"}, \"a\": {\"module\": \"y\"}}}");
    char *ta = wf_conf_app_json(a);
    char *tb = wf_conf_app_json(b);
    char *tc = wf_conf_app_json(c);

    wf_unused(state);
    assert_string_equal(ta, tb);
    assert_string_equal(
        ta, "{\"environment\":{\"A\":\"1\",\"B\":\"2\"},\"module\":\"m\","
            "\"path\":[\"/x\",\"/y\"],\"processes\":{\"max\":2,\"spare\":1},"
            "\"queue\":{\"timeout\":2.5},\"type\":\"python\"}");
    assert_string_equal(tc, "{\"targets\":{\"b\":{\"callable\":\"c\","
                            "\"module\":\"x\"},\"a\":{\"module\":\"y\"}},"
                            "\"type\":\"python\"}");
    free(ta);
    free(tb);
    free(tc);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

#define APPS                                                              \
    "\"applications\": {\"a\": {" PY "}, \"a/b\": {" PY "}, \"t\": "      \
    "{\"type\": \"python\", \"targets\": {\"one\": {\"module\": \"m\"}, " \
    "\"two words\": {\"module\": \"m\"}}}}"

static const struct {
    const char *pass;
    const char *detail; /* NULL: accepted */
    const char *app;    /* the application it reaches */
    unsigned target;
} pass_rows[] = {
    {"applications/a", NULL, "a", 0},
    {"applications/a%2Fb", NULL, "a/b", 0},
    {"applications/t", NULL, "t", 0},
    {"applications/t/one", NULL, "t", 0},
    {"applications/t/two%20words", NULL, "t", 1},
    {"applications/b",
     "Request \"pass\" points to invalid location "
     "\"applications/b\".",
     NULL, 0},
    {"applications",
     "Request \"pass\" points to invalid location "
     "\"applications\".",
     NULL, 0},
    {"applications/", "Request \"pass\" value \"applications/\" is invalid.",
     NULL, 0},
    {"applications/a/",
     "Request \"pass\" value \"applications/a/\" is "
     "invalid.",
     NULL, 0},
    {"applications/a/t",
     "Request \"pass\" points to invalid location "
     "\"applications/a/t\".",
     NULL, 0},
    {"applications/t/three",
     "Request \"pass\" points to invalid location "
     "\"applications/t/three\".",
     NULL, 0},
    {"applications/a/t/u",
     "Request \"pass\" value \"applications/a/t/u\" "
     "is invalid.",
     NULL, 0},
    {"applications/x%2",
     "Request \"pass\" value \"applications/x%2\" is "
     "invalid.",
     NULL, 0},
    {"applications/a%00",
     "Request \"pass\" points to invalid location "
     "\"applications/a%00\".",
     NULL, 0},
    {"applications/a b",
     "Request \"pass\" points to invalid location "
     "\"applications/a b\".",
     NULL, 0},
};

static void
test_app_pass(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(pass_rows); i++) {
        char text[1024];
        json_t *root;
        wf_conf_error_t err;
        wf_conf_t *conf;
        const wf_action_t *act;
        wf_route_req_t rq;

        snprintf(
            text, sizeof(text),
            "{\"listeners\": {\"127.0.0.1:80\": {\"pass\": \"%s\"}}, "
            "\"routes\": {\"r\": [{\"action\": {\"pass\": \"%s\"}}]}, " APPS
            "}",
            pass_rows[i].pass, pass_rows[i].pass);
        root = wf_test_json_parse(text);
        conf = wf_conf_compile(root, &err);
        json_decref(root);
        if (pass_rows[i].detail != NULL) {
            if (conf != NULL || strcmp(err.detail, pass_rows[i].detail) != 0) {
                print_message("row %zu: got %s, want %s\n", i,
                              conf != NULL ? "OK" : err.detail,
                              pass_rows[i].detail);
                fail();
            }
            continue;
        }
        assert_non_null(conf);
        memset(&rq, 0, sizeof(rq));
        rq.method = wf_string("GET");
        rq.uri = wf_string("/");
        /* the listener's own route and the route's step reach it alike */
        for (int k = 0; k < 2; k++) {
            act = wf_route_match(
                k == 0 ? conf->listeners[0].pass : conf->routes[0], &rq);
            assert_non_null(act);
            assert_int_equal(act->type, WF_ACTION_APP);
            assert_int_equal(act->app->name.len, strlen(pass_rows[i].app));
            assert_memory_equal(act->app->name.data, pass_rows[i].app,
                                act->app->name.len);
            assert_ptr_equal(act->app, wf_app_desc_find(conf->apps, conf->napps,
                                                        act->app->name));
            assert_int_equal(act->app_target, pass_rows[i].target);
        }
        wf_conf_destroy(conf);
    }
}

/* A "pass" with variables carries the snapshot's applications, which the
 * router resolves per request with wf_app_desc_find_pass(). */
static void
test_app_pass_var(void **state)
{
    static const struct {
        const char *pass;
        const char *app; /* NULL: none */
        unsigned target;
    } rows[] = {
        {"applications/a", "a", 0},
        {"applications/a%2Fb", "a/b", 0},
        {"applications/t/two%20words", "t", 1},
        {"applications/t", "t", 0},
        {"applications/t/nope", NULL, 0},
        {"applications/a/one", NULL, 0},
        {"applications/zz", NULL, 0},
        {"applications/", NULL, 0},
        {"applications", NULL, 0},
        {"routes/a", NULL, 0},
        {"applications/a/b/c", NULL, 0},
        {"applications/%zz", NULL, 0},
    };
    wf_conf_t *conf = app_compile_ok("{\"listeners\": {\"127.0.0.1:80\": "
                                     "{\"pass\": \"applications/$host\"}}, "
                                     "\"routes\": [{\"action\": {\"pass\": "
                                     "\"$host\"}}], " APPS "}");
    const wf_action_t *act;
    wf_route_req_t rq;

    wf_unused(state);
    memset(&rq, 0, sizeof(rq));
    rq.method = wf_string("GET");
    rq.uri = wf_string("/");
    act = wf_route_match(conf->listeners[0].pass, &rq);
    assert_non_null(act);
    assert_int_equal(act->type, WF_ACTION_PASS);
    assert_non_null(act->pass);
    assert_ptr_equal(act->apps, conf->apps);
    assert_int_equal(act->napps, 3);
    act = wf_route_match(conf->routes[0], &rq);
    assert_ptr_equal(act->apps, conf->apps);
    for (size_t i = 0; i < wf_nitems(rows); i++) {
        unsigned target = 99;
        const wf_app_desc_t *app = wf_app_desc_find_pass(
            conf->apps, conf->napps,
            wf_str_make(rows[i].pass, strlen(rows[i].pass)), &target);

        if (rows[i].app == NULL) {
            assert_null(app);
            continue;
        }
        assert_non_null(app);
        assert_int_equal(app->name.len, strlen(rows[i].app));
        assert_memory_equal(app->name.data, rows[i].app, app->name.len);
        assert_int_equal(target, rows[i].target);
    }
    wf_conf_destroy(conf);
}

/* The listener's "application", Unit's form before "pass". */
static void
test_app_listener_application(void **state)
{
    json_t *modules = app_modules();
    wf_conf_error_t err;
    wf_conf_t *conf;
    const wf_action_t *act;
    wf_route_req_t rq;

    wf_unused(state);
    assert_int_equal(
        app_check("{\"listeners\": {\"127.0.0.1:80\": {\"application\": "
                  "\"b\"}}}",
                  modules, &err),
        WF_ERROR);
    assert_string_equal(err.detail, "Listening socket is assigned for a non "
                                    "existing application \"b\".");
    /* checked even beside a "pass", which wins */
    assert_int_equal(
        app_check("{\"listeners\": {\"127.0.0.1:80\": {\"pass\": "
                  "\"applications/a\", \"application\": \"zz\"}}, " APPS "}",
                  modules, &err),
        WF_ERROR);
    assert_string_equal(err.detail, "Listening socket is assigned for a non "
                                    "existing application \"zz\".");
    assert_int_equal(
        app_check("{\"listeners\": {\"127.0.0.1:80\": {\"application\": 1}}}",
                  modules, &err),
        WF_ERROR);
    assert_string_equal(err.detail, "The \"application\" value must be a "
                                    "string, but not an integer number.");
    memset(&rq, 0, sizeof(rq));
    rq.method = wf_string("GET");
    rq.uri = wf_string("/");
    conf = app_compile_ok("{\"listeners\": {\"127.0.0.1:80\": "
                          "{\"application\": \"a/b\"}, \"127.0.0.1:81\": "
                          "{\"application\": \"a/b\", \"pass\": "
                          "\"applications/a\"}}, " APPS "}");
    act = wf_route_match(conf->listeners[0].pass, &rq);
    assert_int_equal(act->type, WF_ACTION_APP);
    assert_memory_equal(act->app->name.data, "a/b", 3);
    act = wf_route_match(conf->listeners[1].pass, &rq);
    assert_int_equal(act->app->name.len, 1);
    wf_conf_destroy(conf);
    json_decref(modules);
}

/* Unit's chunked_transform: accepted either way, the router acts on it. */
static void
test_app_chunked_transform(void **state)
{
    wf_conf_t *conf;

    wf_unused(state);
    conf = app_compile_ok(
        "{\"settings\": {\"http\": {\"chunked_transform\": true}}}");
    assert_true(conf->http.chunked_transform);
    wf_conf_destroy(conf);
    conf = app_compile_ok("{}");
    assert_false(conf->http.chunked_transform);
    assert_int_equal(conf->napps, 0);
    assert_null(conf->apps);
    wf_conf_destroy(conf);
}

static void
test_app_pass_split(void **state)
{
    char buf[64];
    wf_str_t seg[3];

    wf_unused(state);
    assert_int_equal(
        wf_app_desc_pass_split(wf_string("a/b%41/c"), buf, sizeof(buf), seg),
        WF_OK);
    assert_int_equal(seg[0].len, 1);
    assert_string_equal(seg[1].data, "bA");
    assert_string_equal(seg[2].data, "c");
    assert_int_equal(
        wf_app_desc_pass_split(wf_string("routes"), buf, sizeof(buf), seg),
        WF_OK);
    assert_int_equal(seg[1].len, 0);
    assert_int_equal(
        wf_app_desc_pass_split(wf_string(""), buf, sizeof(buf), seg),
        WF_DECLINED);
    assert_int_equal(
        wf_app_desc_pass_split(wf_string("/a"), buf, sizeof(buf), seg),
        WF_DECLINED);
    assert_int_equal(
        wf_app_desc_pass_split(wf_string("a//b"), buf, sizeof(buf), seg),
        WF_DECLINED);
    assert_int_equal(
        wf_app_desc_pass_split(wf_string("a/b/c/d"), buf, sizeof(buf), seg),
        WF_DECLINED);
    assert_int_equal(wf_app_desc_pass_split(wf_string("abc"), buf, 3, seg),
                     WF_DECLINED);
    assert_int_equal(wf_app_desc_pass_split(wf_string("abc"), buf, 4, seg),
                     WF_OK);
}

int
wf_test_conf_app(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_app_validation),
        cmocka_unit_test(test_app_thread_stack_size),
        cmocka_unit_test(test_app_type),
        cmocka_unit_test(test_app_no_modules),
        cmocka_unit_test(test_app_desc),
        cmocka_unit_test(test_app_json),
        cmocka_unit_test(test_app_pass),
        cmocka_unit_test(test_app_pass_var),
        cmocka_unit_test(test_app_listener_application),
        cmocka_unit_test(test_app_chunked_transform),
        cmocka_unit_test(test_app_pass_split),
    };

    return cmocka_run_group_tests_name("conf_app", tests, NULL, NULL);
}
