#include "control/conf_tls.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "core/json.h"

typedef struct conf_tls_ctx {
    char *detail;
    size_t size;
    json_t *pems; /* a reference, for this compile */
} conf_tls_ctx_t;

typedef int (*conf_tls_check)(conf_tls_ctx_t *cx, const char *key,
                              const json_t *value);

typedef struct conf_tls_member {
    const char *name; /* NULL ends a table */
    unsigned types;   /* WF_JSON_* */
    conf_tls_check check;
    bool required;
} conf_tls_member_t;

/* The router sets them on loop 0 and compiles on a helper thread: the
 * lock guards the pointer; a compile holds its own reference. */
static json_t *conf_tls_pems;
static pthread_mutex_t conf_tls_lock = PTHREAD_MUTEX_INITIALIZER;

void
wf_conf_tls_pems_set(json_t *pems)
{
    json_t *old;

    pthread_mutex_lock(&conf_tls_lock);
    old = conf_tls_pems;
    conf_tls_pems = pems;
    pthread_mutex_unlock(&conf_tls_lock);
    json_decref(old);
}

static json_t *
conf_tls_pems_ref(void)
{
    json_t *pems;

    pthread_mutex_lock(&conf_tls_lock);
    pems = json_incref(conf_tls_pems);
    pthread_mutex_unlock(&conf_tls_lock);
    return pems;
}

static int conf_tls_fail(conf_tls_ctx_t *cx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
conf_tls_fail(conf_tls_ctx_t *cx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cx->detail, cx->size, fmt, ap);
    va_end(ap);
    return WF_ERROR;
}

static int
conf_tls_object(conf_tls_ctx_t *cx, const json_t *obj,
                const conf_tls_member_t *members)
{
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)obj, key, value)
    {
        const conf_tls_member_t *m = members;

        while (m->name != NULL && strcmp(m->name, key) != 0) {
            m++;
        }
        if (m->name == NULL) {
            return conf_tls_fail(cx, "Unknown parameter \"%.200s\".", key);
        }
        if (!wf_json_type_check(value, m->types, key, cx->detail, cx->size)
            || (m->check != NULL && m->check(cx, key, value) != WF_OK)) {
            return WF_ERROR;
        }
    }
    for (const conf_tls_member_t *m = members; m->name != NULL; m++) {
        if (m->required && json_object_get(obj, m->name) == NULL) {
            return conf_tls_fail(cx, "Required parameter \"%s\" is missing.",
                                 m->name);
        }
    }
    return WF_OK;
}

/* The PEM of the certificate called name, compared without case as the
 * store compares names (borrowed), or NULL. */
static json_t *
conf_tls_pem(const json_t *all, const char *name)
{
    json_t *pem = json_object_get(all, name);
    const char *key;
    json_t *v;

    if (pem != NULL) {
        return pem;
    }
    json_object_foreach((json_t *)all, key, v)
    {
        if (strcasecmp(key, name) == 0) {
            return v;
        }
    }
    return NULL;
}

/* Unit's nxt_conf_vldt_certificate_element(). */
static int
conf_tls_cert_name(conf_tls_ctx_t *cx, const json_t *v)
{
    if (!json_is_string(v)) {
        return conf_tls_fail(cx, "The \"certificate\" array must contain "
                                 "only string values.");
    }
    if (conf_tls_pem(cx->pems, json_string_value(v)) == NULL) {
        return conf_tls_fail(cx, "Certificate \"%.200s\" is not found.",
                             json_string_value(v));
    }
    return WF_OK;
}

static int
conf_tls_certificate(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    size_t i;
    json_t *e;

    wf_unused(key);
    if (!json_is_array(value)) {
        return conf_tls_cert_name(cx, value);
    }
    if (json_array_size(value) == 0) {
        return conf_tls_fail(cx, "The \"certificate\" array must contain at "
                                 "least one element.");
    }
    json_array_foreach(value, i, e)
    {
        if (conf_tls_cert_name(cx, e) != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static int
conf_tls_commands(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    const char *name;
    json_t *v;

    wf_unused(key);
    json_object_foreach((json_t *)value, name, v)
    {
        if (!wf_json_type_check(v, WF_JSON_STRING, name, cx->detail,
                                cx->size)) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static int
conf_tls_cache_size(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    wf_unused(key);
    if (json_integer_value(value) < 0) {
        return conf_tls_fail(cx, "The \"cache_size\" number must not be "
                                 "negative.");
    }
    return WF_OK;
}

static int
conf_tls_timeout(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    wf_unused(key);
    if (json_integer_value(value) <= 0) {
        return conf_tls_fail(cx, "The \"timeout\" number must be greater "
                                 "than zero.");
    }
    return WF_OK;
}

/* Unit's nxt_conf_vldt_ticket_key_element(): Base64 of 48 or 80 bytes. */
static int
conf_tls_ticket_key(conf_tls_ctx_t *cx, const json_t *v)
{
    unsigned char out[128];
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    size_t pad = 0;
    int n;

    if (!json_is_string(v)) {
        return conf_tls_fail(cx, "The \"key\" array must contain only "
                                 "string values.");
    }
    if (len % 4 != 0 || len > 4 * sizeof(out) / 3
        || (n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len)) < 0) {
        return conf_tls_fail(cx,
                             "Invalid Base64 format for the ticket key "
                             "\"%.200s\".",
                             s);
    }
    while (pad < 2 && pad < len && s[len - 1 - pad] == '=') {
        pad++;
    }
    if (n - (int)pad != 48 && n - (int)pad != 80) {
        return conf_tls_fail(cx,
                             "Invalid length %d of the ticket key \"%.200s\".  "
                             "Must be 48 or 80 bytes.",
                             n - (int)pad, s);
    }
    return WF_OK;
}

static int
conf_tls_tickets(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    size_t i;
    json_t *e;

    wf_unused(key);
    if (json_is_boolean(value)) {
        return WF_OK;
    }
    if (json_is_string(value) && conf_tls_ticket_key(cx, value) != WF_OK) {
        return WF_ERROR;
    }
    json_array_foreach(value, i, e)
    {
        if (conf_tls_ticket_key(cx, e) != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static const conf_tls_member_t conf_tls_session_members[] = {
    {"cache_size", WF_JSON_INTEGER, conf_tls_cache_size, false},
    {"timeout", WF_JSON_INTEGER, conf_tls_timeout, false},
    {"tickets", WF_JSON_STRING | WF_JSON_ARRAY | WF_JSON_BOOLEAN,
     conf_tls_tickets, false},
    {NULL, 0, NULL, false},
};

static int
conf_tls_session(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    wf_unused(key);
    return conf_tls_object(cx, value, conf_tls_session_members);
}

/* ---- "client_certificate" (Wharf's) ------------------------------------ */

static int
conf_tls_ca_name(conf_tls_ctx_t *cx, const json_t *v)
{
    if (!json_is_string(v)) {
        return conf_tls_fail(cx, "The \"ca\" array must contain only string "
                                 "values.");
    }
    if (conf_tls_pem(cx->pems, json_string_value(v)) == NULL) {
        return conf_tls_fail(cx, "Certificate \"%.200s\" is not found.",
                             json_string_value(v));
    }
    return WF_OK;
}

static int
conf_tls_ca(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    size_t i;
    json_t *e;

    wf_unused(key);
    if (!json_is_array(value)) {
        return conf_tls_ca_name(cx, value);
    }
    if (json_array_size(value) == 0) {
        return conf_tls_fail(cx, "The \"ca\" array must contain at least "
                                 "one element.");
    }
    json_array_foreach(value, i, e)
    {
        if (conf_tls_ca_name(cx, e) != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static int
conf_tls_mode(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    wf_unused(key);
    if (wf_tls_verify_mode(json_string_value(value)) == WF_TLS_VERIFY_OFF) {
        return conf_tls_fail(cx, "The \"mode\" must be \"required\", "
                                 "\"optional\" or \"optional_no_verify\".");
    }
    return WF_OK;
}

static int
conf_tls_depth(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    wf_unused(key);
    if (json_integer_value(value) < 0 || json_integer_value(value) > 100) {
        return conf_tls_fail(cx, "The \"depth\" number must be between 0 "
                                 "and 100.");
    }
    return WF_OK;
}

static const conf_tls_member_t conf_tls_client_members[] = {
    {"ca", WF_JSON_STRING | WF_JSON_ARRAY, conf_tls_ca, false},
    {"mode", WF_JSON_STRING, conf_tls_mode, false},
    {"depth", WF_JSON_INTEGER, conf_tls_depth, false},
    {NULL, 0, NULL, false},
};

/* Only optional_no_verify may go without a CA: it checks nothing. */
static int
conf_tls_client(conf_tls_ctx_t *cx, const char *key, const json_t *value)
{
    wf_unused(key);
    if (conf_tls_object(cx, value, conf_tls_client_members) != WF_OK) {
        return WF_ERROR;
    }
    if (json_object_get(value, "ca") == NULL
        && wf_tls_verify_mode(json_string_value(json_object_get(value, "mode")))
               != WF_TLS_VERIFY_OPTIONAL_NO_VERIFY) {
        return conf_tls_fail(cx, "Required parameter \"ca\" is missing.");
    }
    return WF_OK;
}

static const conf_tls_member_t conf_tls_members[] = {
    {"certificate", WF_JSON_STRING | WF_JSON_ARRAY, conf_tls_certificate, true},
    {"conf_commands", WF_JSON_OBJECT, conf_tls_commands, false},
    {"session", WF_JSON_OBJECT, conf_tls_session, false},
    {"client_certificate", WF_JSON_OBJECT, conf_tls_client, false},
    {"ocsp_stapling", WF_JSON_BOOLEAN, NULL, false},
    {NULL, 0, NULL, false},
};

/* Adds name's PEM (from all, without case) to pems under name. */
static void
conf_tls_pem_add(json_t *pems, const json_t *all, const json_t *name)
{
    if (json_is_string(name)) {
        json_object_set(pems, json_string_value(name),
                        conf_tls_pem(all, json_string_value(name)));
    }
}

wf_tls_srv_t *
wf_conf_tls_compile(const json_t *tls, char *detail, size_t size)
{
    conf_tls_ctx_t cx = {detail, size, conf_tls_pems_ref()};
    json_t *cert = json_object_get(tls, "certificate");
    json_t *ca =
        json_object_get(json_object_get(tls, "client_certificate"), "ca");
    json_t *pems = NULL;
    wf_tls_srv_t *t = NULL;
    size_t i;
    json_t *e;

    if (conf_tls_object(&cx, tls, conf_tls_members) != WF_OK) {
        goto done;
    }
    /* Each name as the config spells it, to its PEM. */
    pems = json_object();
    conf_tls_pem_add(pems, cx.pems, cert);
    json_array_foreach(cert, i, e)
    {
        conf_tls_pem_add(pems, cx.pems, e);
    }
    conf_tls_pem_add(pems, cx.pems, ca);
    json_array_foreach(ca, i, e)
    {
        conf_tls_pem_add(pems, cx.pems, e);
    }
    t = wf_tls_srv_create(tls, pems, detail, size);

done:
    json_decref(pems);
    json_decref(cx.pems);
    return t;
}

/* ---- TLS to backends: "ca" and "certificate" from the store ------------ */

/* The PEM text of the store entry key names in pems, or NULL with why. */
static const char *
conf_tls_cli_pem(const json_t *pems, const json_t *tls, const char *key,
                 size_t *len, char *why, size_t whysize)
{
    const char *name = json_string_value(json_object_get(tls, key));
    json_t *pem = name != NULL ? conf_tls_pem(pems, name) : NULL;

    *len = 0;
    if (name == NULL) {
        return NULL;
    }
    if (!json_is_string(pem)) {
        snprintf(why, whysize, "Certificate \"%.200s\" is not found", name);
        return NULL;
    }
    *len = json_string_length(pem);
    return json_string_value(pem);
}

wf_tls_cli_t *
wf_conf_tls_cli_compile(const json_t *tls, char *why, size_t whysize)
{
    json_t *pems = conf_tls_pems_ref();
    json_t *verify = json_object_get(tls, "verify");
    wf_tls_cli_conf_t c = {
        .verify = verify == NULL || json_is_true(verify),
        .ca_file = json_string_value(json_object_get(tls, "ca_file")),
    };
    wf_tls_cli_t *t = NULL;

    why[0] = '\0';
    c.ca_pem = conf_tls_cli_pem(pems, tls, "ca", &c.ca_len, why, whysize);
    if (why[0] == '\0') {
        c.cert_pem = conf_tls_cli_pem(pems, tls, "certificate", &c.cert_len,
                                      why, whysize);
    }
    if (why[0] == '\0' && c.ca_pem != NULL && c.ca_file != NULL) {
        snprintf(why, whysize, "\"ca\" and \"ca_file\" cannot both be set");
    }
    if (why[0] == '\0') {
        t = wf_tls_cli_create(&c, why, whysize);
    }
    json_decref(pems);
    return t;
}
