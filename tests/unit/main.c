/* One runner for every unit-test group: `unit-tests [--tap] [FILTER]` runs
 * the groups whose names contain FILTER. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

static const struct {
    const char *name;
    int (*run)(void);
} unit_groups[] = {
    {"json", wf_test_json},
    {"pool", wf_test_pool},
    {"timer", wf_test_timer},
    {"cond", wf_test_cond},
    {"exchange", wf_test_exchange},
    {"h1_parse", wf_test_h1_parse},
    {"h1_stream", wf_test_h1_stream},
    {"mime", wf_test_mime},
    {"proxy_parse", wf_test_proxy_parse},
    {"range", wf_test_range},
    {"route", wf_test_route},
    {"uri", wf_test_uri},
    {"ws_scan", wf_test_ws_scan},
    {"conf", wf_test_conf},
    {"conf_app", wf_test_conf_app},
    {"conf_store", wf_test_conf_store},
    {"api", wf_test_api},
    {"cert", wf_test_cert},
    {"acme", wf_test_acme},
    {"acme_chal", wf_test_acme_chal},
    {"tls", wf_test_tls},
    {"tpl", wf_test_tpl},
    {"port", wf_test_port},
    {"main_apps", wf_test_main_apps},
    {"cred", wf_test_cred},
    {"forwarded", wf_test_forwarded},
    {"h2_map", wf_test_h2_map},
    {"proxy_h2_map", wf_test_proxy_h2_map},
    {"upstream", wf_test_upstream},
    {"access_log", wf_test_access_log},
    {"app_xchg", wf_test_app_xchg},
    {"app_rt", wf_test_app_rt},
    {"ws_frame", wf_test_ws_frame},
    {"py_wsgi", wf_test_py_wsgi},
    {"php_path", wf_test_php_path},
};

int
main(int argc, char **argv)
{
    const char *filters[64];
    int nfilters = 0;
    int failed = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tap") == 0) {
            cmocka_set_message_output(CM_OUTPUT_TAP);
        } else if (nfilters < 64) {
            filters[nfilters++] = argv[i];
        }
    }
    for (size_t i = 0; i < sizeof(unit_groups) / sizeof(unit_groups[0]); i++) {
        bool run = nfilters == 0;

        for (int f = 0; f < nfilters && !run; f++) {
            run = strstr(unit_groups[i].name, filters[f]) != NULL;
        }
        if (run) {
            failed += unit_groups[i].run();
        }
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
