/* Helpers the unit-test groups share. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

json_t *
wf_test_json_parse(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);

    if (v == NULL) {
        print_message("bad test JSON %s: %s\n", text, err.text);
    }
    assert_non_null(v);
    return v;
}

/* shared/unit-configs beside the source tree: found by walking up from the
 * test binary (the source tree is /work/main with /work/shared beside it;
 * build directories nest one or two levels).  WF_UNIT_CONFIGS overrides. */
bool
wf_test_unit_configs_dir(char *dir, size_t cap)
{
    char path[PATH_MAX / 2]; /* leaves room in dir for the suffixes */
    ssize_t n;
    char *slash;

    if (getenv("WF_UNIT_CONFIGS") != NULL) {
        snprintf(dir, cap, "%s", getenv("WF_UNIT_CONFIGS"));
        return true;
    }
    n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n <= 0) {
        return false;
    }
    path[n] = '\0';
    while ((slash = strrchr(path, '/')) != NULL && slash != path) {
        *slash = '\0';
        snprintf(dir, cap, "%s/shared/unit-configs", path);
        if (access(dir, R_OK) == 0) {
            return true;
        }
        snprintf(dir, cap, "%s/../shared/unit-configs", path);
        if (access(dir, R_OK) == 0) {
            return true;
        }
    }
    return false;
}

char *
wf_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long size;

    if (f == NULL) {
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0
        && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size + 1))
        && fread(buf, 1, (size_t)size, f) == (size_t)size) {
        *len = (size_t)size;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}
