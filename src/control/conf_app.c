#include "control/conf_app.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/app_type.h"
#include "core/common.h"
#include "core/json.h"

/* An application object is checked as Unit's nxt_conf_vldt_object() checks
 * one: first every required member of every table (so a missing "module"
 * is reported before an unknown key), then each member in config order
 * against the tables, type first, then its handler.  A language's tables
 * chain to the common ones, as Unit's NXT_CONF_VLDT_NEXT does. */

#define APP_REQUIRED 0x1u /* missing: 'Required parameter "x" is missing.' */

#define APP_ANY_TYPE                                                  \
    (WF_JSON_NULL | WF_JSON_BOOLEAN | WF_JSON_NUMBER | WF_JSON_STRING \
     | WF_JSON_ARRAY | WF_JSON_OBJECT)

#define APP_INT32_MAX   2147483647
#define APP_MAX_TARGETS 254 /* Unit's limit */

typedef struct app_cx app_cx_t;

typedef int (*app_handler)(app_cx_t *cx, const char *key, json_t *value,
                           const void *data);

typedef struct app_member {
    const char *name;    /* NULL ends a table */
    unsigned types;      /* WF_JSON_* mask */
    app_handler handler; /* NULL: the type check is all */
    const void *data;    /* the handler's argument */
    unsigned flags;      /* APP_* */
} app_member_t;

/* A NULL-ended list of member tables, searched in order. */
typedef const app_member_t *const app_tables_t[];

struct app_cx {
    wf_arena_t *a;
    wf_app_desc_t *desc; /* the application being compiled */
    char *err;
    size_t errlen;
    const app_member_t *const *target_tables; /* of the "targets" members */
};

static int app_object(app_cx_t *cx, json_t *obj,
                      const app_member_t *const *tables);

static int app_fail(app_cx_t *cx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
app_fail(app_cx_t *cx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cx->err, cx->errlen, fmt, ap);
    va_end(ap);
    return WF_ERROR;
}

static int
app_nomem(app_cx_t *cx)
{
    return app_fail(cx, "Out of memory.");
}

/* ---- the walk ---------------------------------------------------------- */

static const app_member_t *
app_member_find(const app_member_t *const *tables, const char *key)
{
    for (size_t t = 0; tables[t] != NULL; t++) {
        for (const app_member_t *m = tables[t]; m->name != NULL; m++) {
            if (strcmp(m->name, key) == 0) {
                return m;
            }
        }
    }
    return NULL;
}

static int
app_required(app_cx_t *cx, json_t *obj, const app_member_t *const *tables)
{
    for (size_t t = 0; tables[t] != NULL; t++) {
        for (const app_member_t *m = tables[t]; m->name != NULL; m++) {
            if ((m->flags & APP_REQUIRED) != 0
                && json_object_get(obj, m->name) == NULL) {
                return app_fail(cx, "Required parameter \"%s\" is missing.",
                                m->name);
            }
        }
    }
    return WF_OK;
}

static int
app_object(app_cx_t *cx, json_t *obj, const app_member_t *const *tables)
{
    const char *key;
    json_t *value;

    if (app_required(cx, obj, tables) != WF_OK) {
        return WF_ERROR;
    }
    json_object_foreach(obj, key, value)
    {
        const app_member_t *m = app_member_find(tables, key);

        if (m == NULL) {
            return app_fail(cx, "Unknown parameter \"%.200s\".", key);
        }
        if (!wf_json_type_check(value, m->types, key, cx->err, cx->errlen)) {
            return WF_ERROR;
        }
        if (m->handler != NULL
            && m->handler(cx, key, value, m->data) != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static int
app_nested(app_cx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_unused(key);
    return app_object(cx, value, data);
}

/* ---- numbers ----------------------------------------------------------- */

/* An integer member, in [min, max], stored (times scale) in the desc
 * field at offset, which is unsigned or uint64_t (size). */
typedef struct app_num {
    int64_t min;
    int64_t max;
    size_t offset; /* in wf_app_desc_t */
    unsigned size;
    unsigned scale; /* 1000 for seconds kept as ms */
} app_num_t;

#define APP_NUM(field, lo, hi, k)                               \
    (&(const app_num_t){lo, hi, offsetof(wf_app_desc_t, field), \
                        sizeof(((wf_app_desc_t *)0)->field), k})

/* Unit's wording: "must not be negative" for a minimum of 0, "must be
 * equal to or greater than N" otherwise. */
static int
app_range(app_cx_t *cx, const char *key, int64_t v, int64_t min, int64_t max)
{
    if (v < min) {
        return min == 0 ? app_fail(
                   cx, "The \"%s\" number must not be negative.", key)
                        : app_fail(cx,
                                   "The \"%s\" number must be equal to or "
                                   "greater than %lld.",
                                   key, (long long)min);
    }
    if (v > max) {
        return app_fail(cx, "The \"%s\" number must not exceed %lld.", key,
                        (long long)max);
    }
    return WF_OK;
}

static void
app_store(app_cx_t *cx, const app_num_t *num, uint64_t v)
{
    char *field = (char *)cx->desc + num->offset;

    if (num->size == sizeof(unsigned)) {
        unsigned u = (unsigned)v;

        memcpy(field, &u, sizeof(u));
    } else {
        memcpy(field, &v, sizeof(v));
    }
}

static int
app_number(app_cx_t *cx, const char *key, json_t *value, const void *data)
{
    const app_num_t *num = data;
    json_int_t v = json_integer_value(value);

    if (app_range(cx, key, v, num->min, num->max) != WF_OK) {
        return WF_ERROR;
    }
    app_store(cx, num, (uint64_t)v * num->scale);
    return WF_OK;
}

/* ---- common options ---------------------------------------------------- */

static const app_member_t app_processes_members[] = {
    {"spare", WF_JSON_INTEGER, NULL, NULL, 0},
    {"max", WF_JSON_INTEGER, NULL, NULL, 0},
    {"idle_timeout", WF_JSON_INTEGER, NULL, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

static app_tables_t app_processes_tables = {app_processes_members, NULL};

static json_int_t
app_int_member(json_t *obj, const char *name, json_int_t dflt)
{
    json_t *v = json_object_get(obj, name);

    return v != NULL ? json_integer_value(v) : dflt;
}

/* Unit's nxt_conf_vldt_processes(), in its order of checks.  An integer n
 * is {"max": n, "spare": n}; an object defaults to max 1, spare 0. */
static int
app_processes(app_cx_t *cx, const char *key, json_t *value, const void *data)
{
    json_int_t spare, max, idle;

    wf_unused(data);
    if (json_is_integer(value)) {
        max = json_integer_value(value);
        if (app_range(cx, key, max, 1, APP_INT32_MAX) != WF_OK) {
            return WF_ERROR;
        }
        cx->desc->max_processes = (unsigned)max;
        cx->desc->spare_processes = (unsigned)max;
        return WF_OK;
    }
    if (app_object(cx, value, app_processes_tables) != WF_OK) {
        return WF_ERROR;
    }
    spare = app_int_member(value, "spare", 0);
    max = app_int_member(value, "max", 1);
    idle = app_int_member(value, "idle_timeout", 15);
    if (app_range(cx, "spare", spare, 0, APP_INT32_MAX) != WF_OK
        || app_range(cx, "max", max, 1, APP_INT32_MAX) != WF_OK) {
        return WF_ERROR;
    }
    if (max < spare) {
        return app_fail(cx, "The \"spare\" number must be less than or equal "
                            "to \"max\".");
    }
    if (app_range(cx, "idle_timeout", idle, 0, APP_INT32_MAX / 1000) != WF_OK) {
        return WF_ERROR;
    }
    cx->desc->max_processes = (unsigned)max;
    cx->desc->spare_processes = (unsigned)spare;
    cx->desc->idle_timeout_ms = (uint64_t)idle * 1000;
    return WF_OK;
}

/* Unit checks only the types of "limits"; Wharf also refuses negative
 * values, which Unit turns into huge unsigned ones (docs/compatibility.md). */
static const app_member_t app_limits_members[] = {
    {"timeout", WF_JSON_INTEGER, app_number,
     APP_NUM(timeout_ms, 0, APP_INT32_MAX / 1000, 1000), 0},
    {"requests", WF_JSON_INTEGER, app_number,
     APP_NUM(max_requests, 0, APP_INT32_MAX, 1), 0},
    {"shm", WF_JSON_INTEGER, NULL, NULL, 0}, /* Unit's transport only */
    {NULL, 0, NULL, NULL, 0},
};

static app_tables_t app_limits_tables = {app_limits_members, NULL};

/* Wharf's "queue": {"length": n >= 1, "timeout": seconds > 0}. */
static int
app_queue_timeout(app_cx_t *cx, const char *key, json_t *value,
                  const void *data)
{
    double v = json_number_value(value);

    wf_unused(data);
    if (!(v > 0)) {
        return app_fail(cx, "The \"%s\" number must be greater than 0.", key);
    }
    if (v > APP_INT32_MAX / 1000) {
        return app_fail(cx, "The \"%s\" number must not exceed %d.", key,
                        APP_INT32_MAX / 1000);
    }
    cx->desc->queue_timeout_ms = (uint64_t)(v * 1000 + 0.5);
    if (cx->desc->queue_timeout_ms == 0) {
        cx->desc->queue_timeout_ms = 1; /* a bound below 1 ms is 1 ms */
    }
    return WF_OK;
}

static const app_member_t app_queue_members[] = {
    {"length", WF_JSON_INTEGER, app_number,
     APP_NUM(queue_length, 1, APP_INT32_MAX, 1), 0},
    {"timeout", WF_JSON_NUMBER, app_queue_timeout, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

static app_tables_t app_queue_tables = {app_queue_members, NULL};

/* Unit's nxt_conf_vldt_environment(), per member.  Names and values with a
 * NUL never get here: the JSON parser refuses "\u0000". */
static int
app_environment(app_cx_t *cx, const char *key, json_t *value, const void *data)
{
    const char *name;
    json_t *v;

    wf_unused(key);
    wf_unused(data);
    json_object_foreach(value, name, v)
    {
        if (name[0] == '\0') {
            return app_fail(cx, "The environment name must not be empty.");
        }
        if (strchr(name, '=') != NULL) {
            return app_fail(cx, "The environment name must not contain '=' "
                                "character.");
        }
        if (!json_is_string(v)) {
            return app_fail(cx,
                            "The \"%.200s\" environment value must be a "
                            "string.",
                            name);
        }
    }
    return WF_OK;
}

/* Isolation (namespaces, rootfs, cgroups) is not implemented: an empty
 * object, which asks for nothing, passes. */
static int
app_isolation(app_cx_t *cx, const char *key, json_t *value, const void *data)
{
    wf_unused(data);
    if (json_object_size(value) == 0) {
        return WF_OK;
    }
    return app_fail(cx, "The \"%s\" option is not supported yet.", key);
}

static const app_member_t app_common_members[] = {
    {"type", WF_JSON_STRING, NULL, NULL, 0},
    {"limits", WF_JSON_OBJECT, app_nested, app_limits_tables, 0},
    {"processes", WF_JSON_INTEGER | WF_JSON_OBJECT, app_processes, NULL, 0},
    {"user", WF_JSON_STRING, NULL, NULL, 0},
    {"group", WF_JSON_STRING, NULL, NULL, 0},
    {"working_directory", WF_JSON_STRING, NULL, NULL, 0},
    {"environment", WF_JSON_OBJECT, app_environment, NULL, 0},
    {"isolation", WF_JSON_OBJECT, app_isolation, NULL, 0},
    {"stdout", WF_JSON_STRING, NULL, NULL, 0},
    {"stderr", WF_JSON_STRING, NULL, NULL, 0},
    {"queue", WF_JSON_OBJECT, app_nested, app_queue_tables, 0}, /* Wharf */
    {NULL, 0, NULL, NULL, 0},
};

/* ---- targets ----------------------------------------------------------- */

/* A member that "targets" replaces: Unit refuses it next to "targets". */
static int
app_targets_exclusive(app_cx_t *cx, const char *key, json_t *value,
                      const void *data)
{
    wf_unused(value);
    wf_unused(data);
    return app_fail(cx,
                    "The \"%s\" option is mutually exclusive with the "
                    "\"targets\" object.",
                    key);
}

static int
app_target(app_cx_t *cx, const char *name, json_t *value, unsigned i)
{
    wf_str_t *targets = (wf_str_t *)cx->desc->targets;
    size_t len = strlen(name);

    if (len == 0) {
        return app_fail(cx, "The target name must not be empty.");
    }
    if (!json_is_object(value)) {
        return app_fail(cx, "The \"%.200s\" target must be an object.", name);
    }
    if (app_object(cx, value, cx->target_tables) != WF_OK) {
        return WF_ERROR;
    }
    targets[i] = wf_str_make(wf_arena_strndup(cx->a, name, len), len);
    return targets[i].data != NULL ? WF_OK : app_nomem(cx);
}

/* "targets": each member an object checked against data's tables; the
 * names go to desc->targets in config order. */
static int
app_targets(app_cx_t *cx, const char *key, json_t *value, const void *data)
{
    size_t n = json_object_size(value);
    const char *name;
    json_t *v;
    unsigned i = 0;

    wf_unused(key);
    if (n > APP_MAX_TARGETS) {
        return app_fail(cx,
                        "The \"targets\" object must not contain more than "
                        "%d members.",
                        APP_MAX_TARGETS);
    }
    cx->desc->targets = wf_arena_calloc(cx->a, (n + 1) * sizeof(wf_str_t));
    if (cx->desc->targets == NULL) {
        return app_nomem(cx);
    }
    cx->target_tables = data;
    json_object_foreach(value, name, v)
    {
        if (app_target(cx, name, v, i++) != WF_OK) {
            return WF_ERROR;
        }
    }
    cx->desc->ntargets = (unsigned)n;
    return WF_OK;
}

/* ---- python ------------------------------------------------------------ */

static int
app_python_path(app_cx_t *cx, const char *key, json_t *value, const void *data)
{
    size_t i;
    json_t *v;

    wf_unused(key);
    wf_unused(data);
    json_array_foreach(value, i, v)
    {
        if (!json_is_string(v)) {
            return app_fail(cx, "The \"path\" array must contain only string "
                                "values.");
        }
    }
    return WF_OK;
}

static int
app_python_protocol(app_cx_t *cx, const char *key, json_t *value,
                    const void *data)
{
    const char *proto = json_string_value(value);

    wf_unused(key);
    wf_unused(data);
    if (strcmp(proto, "wsgi") == 0 || strcmp(proto, "asgi") == 0) {
        return WF_OK;
    }
    return app_fail(cx, "The \"protocol\" can either be \"wsgi\" or "
                        "\"asgi\".");
}

/* Unit requires a leading '/'; its Python module drops one trailing '/'
 * itself, so "/app/" is accepted and means "/app". */
static int
app_python_prefix(app_cx_t *cx, const char *key, json_t *value,
                  const void *data)
{
    wf_unused(key);
    wf_unused(data);
    if (json_string_value(value)[0] != '/') {
        return app_fail(cx, "The \"prefix\" must be a string beginning with "
                            "\"/\".");
    }
    return WF_OK;
}

/* Unit's nxt_conf_vldt_thread_stack_size(): the system's minimum thread
 * stack, in whole pages. */
static int
app_thread_stack_size(app_cx_t *cx, const char *key, json_t *value,
                      const void *data)
{
    json_int_t size = json_integer_value(value);
    long min = sysconf(_SC_THREAD_STACK_MIN);
    long page = sysconf(_SC_PAGESIZE);

    wf_unused(data);
    if (size < min) {
        return app_fail(cx,
                        "The \"%s\" number must be equal to or greater than "
                        "%ld.",
                        key, min);
    }
    if (page > 0 && size % page != 0) {
        return app_fail(cx,
                        "The \"%s\" number must be a multiple of the system "
                        "page size (%ld).",
                        key, page);
    }
    return WF_OK;
}

static const app_member_t app_python_common_members[] = {
    {"home", WF_JSON_STRING, NULL, NULL, 0},
    {"path", WF_JSON_STRING | WF_JSON_ARRAY, app_python_path, NULL, 0},
    {"protocol", WF_JSON_STRING, app_python_protocol, NULL, 0},
    {"threads", WF_JSON_INTEGER, app_number,
     APP_NUM(threads, 1, APP_INT32_MAX, 1), 0},
    {"thread_stack_size", WF_JSON_INTEGER, app_thread_stack_size, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

/* The members of a python target, and of an application without targets. */
static const app_member_t app_python_target_members[] = {
    {"module", WF_JSON_STRING, NULL, NULL, APP_REQUIRED},
    {"callable", WF_JSON_STRING, NULL, NULL, 0},
    {"factory", WF_JSON_BOOLEAN, NULL, NULL, 0},
    {"prefix", WF_JSON_STRING, app_python_prefix, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

static app_tables_t app_python_target_tables = {app_python_target_members,
                                                NULL};

static const app_member_t app_python_targets_members[] = {
    {"module", WF_JSON_STRING, app_targets_exclusive, NULL, 0},
    {"callable", WF_JSON_STRING, app_targets_exclusive, NULL, 0},
    {"factory", WF_JSON_BOOLEAN, app_targets_exclusive, NULL, 0},
    {"prefix", WF_JSON_STRING, app_targets_exclusive, NULL, 0},
    {"targets", WF_JSON_OBJECT, app_targets, app_python_target_tables, 0},
    {NULL, 0, NULL, NULL, 0},
};

static app_tables_t app_python_tables = {app_python_target_members,
                                         app_python_common_members,
                                         app_common_members, NULL};

static app_tables_t app_python_targets_tables = {app_python_targets_members,
                                                 app_python_common_members,
                                                 app_common_members, NULL};

/* ---- php --------------------------------------------------------------- */

/* A member of "options.admin" or "options.user": a php.ini setting. */
static int
app_php_settings(app_cx_t *cx, const char *key, json_t *value, const void *data)
{
    const char *name;
    json_t *v;

    wf_unused(key);
    wf_unused(data);
    json_object_foreach(value, name, v)
    {
        if (name[0] == '\0') {
            return app_fail(cx, "The PHP option name must not be empty.");
        }
        if (!json_is_string(v)) {
            return app_fail(cx, "The \"%.200s\" PHP option must be a string.",
                            name);
        }
    }
    return WF_OK;
}

static const app_member_t app_php_options_members[] = {
    {"file", WF_JSON_STRING, NULL, NULL, 0},
    {"admin", WF_JSON_OBJECT, app_php_settings, NULL, 0},
    {"user", WF_JSON_OBJECT, app_php_settings, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

static app_tables_t app_php_options_tables = {app_php_options_members, NULL};

static const app_member_t app_php_common_members[] = {
    {"options", WF_JSON_OBJECT, app_nested, app_php_options_tables, 0},
    {NULL, 0, NULL, NULL, 0},
};

static const app_member_t app_php_target_members[] = {
    {"root", WF_JSON_STRING, NULL, NULL, APP_REQUIRED},
    {"script", WF_JSON_STRING, NULL, NULL, 0},
    {"index", WF_JSON_STRING, NULL, NULL, 0},
    {NULL, 0, NULL, NULL, 0},
};

static app_tables_t app_php_target_tables = {app_php_target_members, NULL};

/* Unit accepts any type here, so the message is always the exclusion. */
static const app_member_t app_php_targets_members[] = {
    {"root", APP_ANY_TYPE, app_targets_exclusive, NULL, 0},
    {"script", APP_ANY_TYPE, app_targets_exclusive, NULL, 0},
    {"index", APP_ANY_TYPE, app_targets_exclusive, NULL, 0},
    {"targets", WF_JSON_OBJECT, app_targets, app_php_target_tables, 0},
    {NULL, 0, NULL, NULL, 0},
};

static app_tables_t app_php_tables = {
    app_php_target_members, app_php_common_members, app_common_members, NULL};

static app_tables_t app_php_targets_tables = {
    app_php_targets_members, app_php_common_members, app_common_members, NULL};

/* ---- one application --------------------------------------------------- */

/* The languages with a validator; Unit's other languages are refused as a
 * type no module serves, since Wharf has no module for them. */
static const struct {
    const char *lang;
    const app_member_t *const *tables;         /* without "targets" */
    const app_member_t *const *targets_tables; /* with "targets" */
} app_langs[] = {
    {"python", app_python_tables, app_python_targets_tables},
    {"php", app_php_tables, app_php_targets_tables},
};

/* The tables for type, or NULL (with Unit's message set) when no module
 * serves it. */
static const app_member_t *const *
app_lang_tables(app_cx_t *cx, const char *type, const json_t *modules,
                bool targets)
{
    const char *lang = wf_app_type_lang(type);
    bool found = modules == NULL || wf_app_type_find(modules, type) >= 0;

    for (size_t i = 0; found && lang != NULL && i < wf_nitems(app_langs); i++) {
        if (strcmp(app_langs[i].lang, lang) == 0) {
            return targets ? app_langs[i].targets_tables : app_langs[i].tables;
        }
    }
    app_fail(cx,
             "The module to run \"%.200s\" is not found among the available "
             "application modules.",
             type);
    return NULL;
}

static void
app_defaults(wf_app_desc_t *d)
{
    /* No "processes" is Unit's "processes": 1, that is max 1, spare 1. */
    d->max_processes = 1;
    d->spare_processes = 1;
    d->idle_timeout_ms = 15 * 1000;
    d->queue_length = WF_CONF_APP_QUEUE_LENGTH;
    d->queue_timeout_ms = WF_CONF_APP_QUEUE_TIMEOUT;
    d->threads = 1;
}

/* The name, type and canonical text of d, copied into the arena. */
static int
app_desc_strings(app_cx_t *cx, const char *name, json_t *app, wf_app_desc_t *d)
{
    json_t *type = json_object_get(app, "type");
    char *text = wf_conf_app_json(app);
    size_t len = strlen(name);

    d->name = wf_str_make(wf_arena_strndup(cx->a, name, len), len);
    d->type = wf_arena_strndup(cx->a, json_string_value(type),
                               json_string_length(type));
    d->json = text != NULL ? wf_arena_strndup(cx->a, text, strlen(text)) : NULL;
    free(text);
    if (d->name.data == NULL || d->type == NULL || d->json == NULL) {
        return app_nomem(cx);
    }
    return WF_OK;
}

/* Unit's nxt_conf_vldt_app(): the object, its "type", then the members
 * of that type's language. */
static int
app_compile(app_cx_t *cx, const char *name, json_t *app, const json_t *modules)
{
    const app_member_t *const *tables;
    json_t *type;

    if (!wf_json_type_check(app, WF_JSON_OBJECT, name, cx->err, cx->errlen)) {
        return WF_ERROR;
    }
    type = json_object_get(app, "type");
    if (type == NULL) {
        return app_fail(cx, "Application must have the \"type\" property "
                            "set.");
    }
    if (!wf_json_type_check(type, WF_JSON_STRING, "type", cx->err,
                            cx->errlen)) {
        return WF_ERROR;
    }
    tables = app_lang_tables(cx, json_string_value(type), modules,
                             json_object_get(app, "targets") != NULL);
    if (tables == NULL) {
        return WF_ERROR;
    }
    app_defaults(cx->desc);
    if (app_object(cx, app, tables) != WF_OK) {
        return WF_ERROR;
    }
    return app_desc_strings(cx, name, app, cx->desc);
}

int
wf_conf_apps_compile(wf_arena_t *a, const json_t *apps, const json_t *modules,
                     wf_app_desc_t **out, unsigned *n, char *err, size_t errlen)
{
    size_t count = json_object_size(apps);
    app_cx_t cx = {.a = a, .err = err, .errlen = errlen};
    wf_app_desc_t *descs;
    const char *name;
    json_t *app;
    unsigned i = 0;

    *out = NULL;
    *n = 0;
    if (count == 0) {
        return WF_OK;
    }
    descs = wf_arena_calloc(a, count * sizeof(*descs));
    if (descs == NULL) {
        return app_nomem(&cx);
    }
    json_object_foreach((json_t *)apps, name, app)
    {
        cx.desc = &descs[i];
        if (app_compile(&cx, name, app, modules) != WF_OK) {
            return WF_ERROR;
        }
        i++;
    }
    *out = descs;
    *n = i;
    return WF_OK;
}

/* ---- canonical text ---------------------------------------------------- */

typedef enum app_json_mode {
    APP_JSON_SORT = 0, /* sort the keys of objects */
    APP_JSON_KEEP,     /* keep this object's order (its members are sorted) */
    APP_JSON_APP,      /* the application: sorted, but "targets" kept */
} app_json_mode_t;

static int
app_key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *app_canonical(const json_t *v, app_json_mode_t mode);

/* A copy of obj whose members are inserted in the order mode asks for
 * (jansson keeps insertion order, and json_dumps() follows it). */
static json_t *
app_canonical_object(const json_t *obj, app_json_mode_t mode)
{
    size_t n = json_object_size(obj);
    const char **keys = malloc((n + 1) * sizeof(*keys));
    json_t *copy = json_object();
    const char *key;
    json_t *value;
    size_t i = 0;

    if (keys == NULL || copy == NULL) {
        goto fail;
    }
    json_object_foreach((json_t *)obj, key, value)
    {
        keys[i++] = key;
    }
    if (mode != APP_JSON_KEEP) {
        qsort(keys, n, sizeof(*keys), app_key_cmp);
    }
    for (i = 0; i < n; i++) {
        bool keep = mode == APP_JSON_APP && strcmp(keys[i], "targets") == 0;
        json_t *member = app_canonical(json_object_get(obj, keys[i]),
                                       keep ? APP_JSON_KEEP : APP_JSON_SORT);

        if (member == NULL || json_object_set_new(copy, keys[i], member) != 0) {
            goto fail;
        }
    }
    free(keys);
    return copy;

fail:
    free(keys);
    json_decref(copy);
    return NULL;
}

static json_t *
app_canonical(const json_t *v, app_json_mode_t mode)
{
    json_t *copy;
    size_t i;
    json_t *e;

    if (json_is_object(v)) {
        return app_canonical_object(v, mode);
    }
    if (!json_is_array(v)) {
        return json_copy((json_t *)v);
    }
    copy = json_array();
    json_array_foreach(v, i, e)
    {
        if (copy == NULL
            || json_array_append_new(copy, app_canonical(e, APP_JSON_SORT))
                   != 0) {
            json_decref(copy);
            return NULL;
        }
    }
    return copy;
}

char *
wf_conf_app_json(const json_t *app)
{
    json_t *copy = app_canonical(app, APP_JSON_APP);
    char *text = copy != NULL ? json_dumps(copy, JSON_COMPACT) : NULL;

    json_decref(copy);
    return text;
}
