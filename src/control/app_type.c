/* Application types: a language name and an optional version prefix. */
#include <stdlib.h>
#include <string.h>

#include "control/app_type.h"
#include "core/common.h"

/* Languages that have (or will have) a module.  Unit also knows "perl",
 * "ruby", "java", "wasm" and "external"; Wharf has no module for them. */
static const char *const app_type_langs[] = {"python", "php"};

/* Splits "python 3.11" or "python3.11" into the language length and the
 * version that follows (possibly ""). */
static size_t
app_type_split(const char *type, const char **version)
{
    size_t n = strcspn(type, " 0123456789");

    *version = type[n] == ' ' ? type + n + 1 : type + n;
    return n;
}

static bool
app_type_lang_is(const char *lang, const char *type, size_t n)
{
    return strlen(lang) == n && strncmp(lang, type, n) == 0;
}

const char *
wf_app_type_lang(const char *type)
{
    const char *version;
    size_t n = app_type_split(type, &version);

    for (size_t i = 0; i < wf_nitems(app_type_langs); i++) {
        if (app_type_lang_is(app_type_langs[i], type, n)) {
            return app_type_langs[i];
        }
    }
    return NULL;
}

bool
wf_app_type_known(const char *type)
{
    return wf_app_type_lang(type) != NULL;
}

static bool
app_type_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Unit's nxt_strvers_match(): want is a prefix of have that ends at a
 * version part boundary, where a digit meets a non-digit.  "3.11" matches
 * "3.11" and "3.11.2", "3." matches "3.11.2", "3.1" does not match "3.11";
 * "" matches all. */
static bool
app_type_version_match(const char *have, const char *want)
{
    size_t n = strlen(want);

    if (n == 0) {
        return true;
    }
    if (strncmp(have, want, n) != 0) {
        return false;
    }
    return have[n] == '\0'
           || app_type_is_digit(have[n - 1]) != app_type_is_digit(have[n]);
}

/* Compares dotted versions numerically, component by component. */
static int
app_type_version_cmp(const char *a, const char *b)
{
    while (*a != '\0' || *b != '\0') {
        char *ea, *eb;
        unsigned long x = strtoul(a, &ea, 10);
        unsigned long y = strtoul(b, &eb, 10);

        if (x != y) {
            return x < y ? -1 : 1;
        }
        if (ea == a && eb == b) {
            break; /* neither moved: not numbers */
        }
        a = *ea == '.' ? ea + 1 : ea;
        b = *eb == '.' ? eb + 1 : eb;
    }
    return 0;
}

int
wf_app_type_find(const json_t *modules, const char *type)
{
    const char *want;
    size_t n = app_type_split(type, &want);
    const char *best_version = NULL;
    size_t i;
    json_t *m;
    int best = -1;

    json_array_foreach(modules, i, m)
    {
        const char *lang = json_string_value(json_object_get(m, "type"));
        const char *have = json_string_value(json_object_get(m, "version"));

        if (lang == NULL || have == NULL || !app_type_lang_is(lang, type, n)
            || !app_type_version_match(have, want)) {
            continue;
        }
        if (best < 0 || app_type_version_cmp(have, best_version) > 0) {
            best = (int)i;
            best_version = have;
        }
    }
    return best;
}
