#include "control/acme.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control/acme_client.h"
#include "control/acme_crypto.h"
#include "control/cert.h"
#include "core/common.h"
#include "core/log.h"
#include "core/str.h"

#define ACME_DOMAINS_MAX 100
#define ACME_PLACEHOLDER 30   /* days a placeholder certificate is valid */
#define ACME_RENEW_MIN_S 3600 /* the least time between two issues */
#define ACME_CA_MAX      (1024 * 1024)
#define ACME_ERROR       "Invalid ACME entry."

/* {NAME: state}: under acme_lock (the loop thread reads and changes the
 * set, the ACME thread the states' fields). */
static json_t *acme_entries;
static pthread_mutex_t acme_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t acme_cond = PTHREAD_COND_INITIALIZER; /* the thread */
static pthread_cond_t acme_call_cond = PTHREAD_COND_INITIALIZER;
static bool acme_stopping;
static bool acme_running;
static pthread_t acme_thread;
static wf_loop_t *acme_loop;
static wf_acme_call_cb acme_call_fn;

/* ---- the PUT body ------------------------------------------------------- */

typedef int (*acme_check_fn)(const json_t *v, char *detail, size_t dsize);

static int
acme_check_url(const json_t *v, char *detail, size_t dsize)
{
    if (strncmp(json_string_value(v), "https://", 8) != 0) {
        snprintf(detail, dsize,
                 "The \"directory\" value must be an https "
                 "URL.");
        return WF_ERROR;
    }
    return WF_OK;
}

static bool
acme_domain_is_valid(const char *d, size_t n)
{
    if (n == 0 || n > 253 || d[0] == '.' || d[0] == '-' || d[n - 1] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = d[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'
              || (ch == '.' && d[i - 1] != '.'))) {
            return false;
        }
    }
    return true;
}

static int
acme_check_domains(const json_t *v, char *detail, size_t dsize)
{
    size_t i;
    json_t *d;

    if (json_array_size(v) == 0 || json_array_size(v) > ACME_DOMAINS_MAX) {
        snprintf(detail, dsize,
                 "The \"domains\" array must hold 1 to %d names.",
                 ACME_DOMAINS_MAX);
        return WF_ERROR;
    }
    json_array_foreach(v, i, d)
    {
        if (!json_is_string(d)
            || !acme_domain_is_valid(json_string_value(d),
                                     json_string_length(d))) {
            snprintf(detail, dsize,
                     "The \"domains\" array must hold lower-case DNS names "
                     "(no wildcards).");
            return WF_ERROR;
        }
        for (size_t j = 0; j < i; j++) {
            if (json_equal(json_array_get(v, j), d)) {
                snprintf(detail, dsize,
                         "The \"domains\" array holds \"%s\" "
                         "twice.",
                         json_string_value(d));
                return WF_ERROR;
            }
        }
    }
    return WF_OK;
}

static int
acme_check_choice(const json_t *v, const char *key, const char *a,
                  const char *b, char *detail, size_t dsize)
{
    const char *s = json_string_value(v);

    if (strcmp(s, a) != 0 && strcmp(s, b) != 0) {
        snprintf(detail, dsize, "The \"%s\" value must be \"%s\" or \"%s\".",
                 key, a, b);
        return WF_ERROR;
    }
    return WF_OK;
}

static int
acme_check_key_type(const json_t *v, char *detail, size_t dsize)
{
    return acme_check_choice(v, "key_type", "ecdsa-p256", "rsa-2048", detail,
                             dsize);
}

static int
acme_check_challenge(const json_t *v, char *detail, size_t dsize)
{
    return acme_check_choice(v, "challenge", "http-01", "tls-alpn-01", detail,
                             dsize);
}

static int
acme_check_email(const json_t *v, char *detail, size_t dsize)
{
    const char *s = json_string_value(v);

    if (strchr(s, '@') == NULL || strpbrk(s, " ,<>\"") != NULL
        || strlen(s) > 254) {
        snprintf(detail, dsize, "The \"email\" value must be an address.");
        return WF_ERROR;
    }
    return WF_OK;
}

static const struct {
    const char *key;
    json_type type;
    bool required;
    json_int_t min; /* integers */
    json_int_t max;
    const char *def; /* the default as JSON text, or NULL */
    acme_check_fn check;
} acme_keys[] = {
    {"directory", JSON_STRING, true, 0, 0, NULL, acme_check_url},
    {"domains", JSON_ARRAY, true, 0, 0, NULL, acme_check_domains},
    {"email", JSON_STRING, false, 0, 0, NULL, acme_check_email},
    {"ca_bundle", JSON_STRING, false, 0, 0, NULL, NULL},
    {"key_type", JSON_STRING, false, 0, 0, "\"ecdsa-p256\"",
     acme_check_key_type},
    {"challenge", JSON_STRING, false, 0, 0, "\"http-01\"",
     acme_check_challenge},
    {"renew_before_days", JSON_INTEGER, false, 1, 3650, "30", NULL},
    {"retry_min_seconds", JSON_INTEGER, false, 1, 86400, "60", NULL},
    {"retry_max_seconds", JSON_INTEGER, false, 1, 604800, "86400", NULL},
};

static const char *
acme_type_name(json_type t)
{
    return t == JSON_STRING  ? "a string"
           : t == JSON_ARRAY ? "an array"
                             : "an integer";
}

/* Checks one member of the "acme" object. */
static int
acme_check_member(const char *key, const json_t *v, char *detail, size_t dsize)
{
    for (size_t i = 0; i < wf_nitems(acme_keys); i++) {
        if (strcmp(acme_keys[i].key, key) != 0) {
            continue;
        }
        if (json_typeof(v) != acme_keys[i].type) {
            snprintf(detail, dsize, "The \"%s\" value must be %s.", key,
                     acme_type_name(acme_keys[i].type));
            return WF_ERROR;
        }
        if (acme_keys[i].type == JSON_INTEGER
            && (json_integer_value(v) < acme_keys[i].min
                || json_integer_value(v) > acme_keys[i].max)) {
            snprintf(detail, dsize,
                     "The \"%s\" value must be between %lld and %lld.", key,
                     (long long)acme_keys[i].min, (long long)acme_keys[i].max);
            return WF_ERROR;
        }
        return acme_keys[i].check != NULL ? acme_keys[i].check(v, detail, dsize)
                                          : WF_OK;
    }
    snprintf(detail, dsize, "Unknown parameter \"%s\".", key);
    return WF_ERROR;
}

/* Checks the "acme" object and fills in the defaults. */
static int
acme_conf_check(json_t *conf, char *detail, size_t dsize)
{
    const char *key;
    json_t *v;

    json_object_foreach(conf, key, v)
    {
        if (acme_check_member(key, v, detail, dsize) != WF_OK) {
            return WF_ERROR;
        }
    }
    for (size_t i = 0; i < wf_nitems(acme_keys); i++) {
        if (json_object_get(conf, acme_keys[i].key) != NULL) {
            continue;
        }
        if (acme_keys[i].required) {
            snprintf(detail, dsize, "Required parameter \"%s\" is missing.",
                     acme_keys[i].key);
            return WF_ERROR;
        }
        if (acme_keys[i].def != NULL) {
            json_object_set_new(
                conf, acme_keys[i].key,
                json_loads(acme_keys[i].def, JSON_DECODE_ANY, NULL));
        }
    }
    if (json_integer_value(json_object_get(conf, "retry_max_seconds"))
        < json_integer_value(json_object_get(conf, "retry_min_seconds"))) {
        snprintf(detail, dsize,
                 "The \"retry_max_seconds\" value must not be "
                 "less than \"retry_min_seconds\".");
        return WF_ERROR;
    }
    return WF_OK;
}

/* The certificates of a file (read with the controller's rights), as
 * text. */
static char *
acme_ca_file(const char *path, char *detail, size_t dsize)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;

    if (fd != -1 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0
        && st.st_size <= ACME_CA_MAX) {
        buf = malloc((size_t)st.st_size + 1);
        if (buf != NULL && read(fd, buf, (size_t)st.st_size) != st.st_size) {
            free(buf);
            buf = NULL;
        }
        if (buf != NULL) {
            buf[st.st_size] = '\0';
        }
    }
    if (fd != -1) {
        close(fd);
    }
    if (buf == NULL) {
        snprintf(detail, dsize,
                 "The \"ca_bundle\" file \"%s\" cannot be "
                 "read.",
                 path);
    }
    return buf;
}

/* The CA bundle's text: a file (an absolute path) or a store entry's
 * certificates; NULL without ca_bundle (the system's store). */
static int
acme_ca_resolve(const json_t *conf, json_t *state, char *detail, size_t dsize)
{
    const char *ca = json_string_value(json_object_get(conf, "ca_bundle"));
    json_t *pems;
    json_t *pem;
    char *text;

    if (ca == NULL) {
        return WF_OK;
    }
    if (ca[0] == '/') {
        text = acme_ca_file(ca, detail, dsize);
        if (text == NULL) {
            return WF_ERROR;
        }
        json_object_set_new(state, "ca_pem", json_string(text));
        free(text);
        return WF_OK;
    }
    pems = wf_cert_store_pems_all();
    pem = NULL;
    if (wf_cert_store_info(ca, strlen(ca)) != NULL) {
        const char *k;
        json_t *v;

        json_object_foreach(pems, k, v)
        {
            if (wf_str_eq_nocase(wf_str_make(k, strlen(k)),
                                 wf_str_make(ca, strlen(ca)))) {
                pem = v;
            }
        }
    }
    if (pem == NULL) {
        snprintf(detail, dsize, "Certificate \"%s\" is not found.", ca);
        json_decref(pems);
        return WF_ERROR;
    }
    json_object_set(state, "ca_pem", pem);
    json_decref(pems);
    return WF_OK;
}

bool
wf_acme_body_is_acme(const char *body, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r'
            && body[i] != '\n') {
            return body[i] == '{';
        }
    }
    return false;
}

/* The fresh state of a validated conf: an account key, no attempt yet. */
static json_t *
acme_state_create(json_t *conf, char **pem)
{
    EVP_PKEY *account = wf_acme_key_create(WF_ACME_KEY_P256);
    EVP_PKEY *k = wf_acme_key_create(WF_ACME_KEY_P256);
    char *apem = account != NULL ? wf_acme_key_pem(account) : NULL;
    json_t *state = NULL;

    *pem = k != NULL ? wf_acme_self_signed(k, json_object_get(conf, "domains"),
                                           NULL, ACME_PLACEHOLDER)
                     : NULL;
    if (apem != NULL && *pem != NULL) {
        state = json_pack("{s:O, s:s, s:s, s:i, s:i, s:i, s:i, s:s}", "acme",
                          conf, "account_key", apem, "state", "pending",
                          "failures", 0, "last_attempt", 0, "next_attempt", 0,
                          "expires", 0, "last_error", "");
    }
    if (state == NULL) {
        free(*pem);
        *pem = NULL;
    }
    free(apem);
    EVP_PKEY_free(account);
    EVP_PKEY_free(k);
    return state;
}

json_t *
wf_acme_put(const char *name, const char *body, size_t len, char **pem,
            char *error, size_t esize, char *detail, size_t dsize)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    json_t *conf = json_object_get(root, "acme");
    json_t *state = NULL;

    wf_unused(name);
    *pem = NULL;
    snprintf(error, esize, "%s", ACME_ERROR);
    detail[0] = '\0';
    if (root == NULL) {
        snprintf(error, esize, "Invalid JSON.");
        snprintf(detail, dsize, "%s", jerr.text);
    } else if (!json_is_object(root) || json_object_size(root) != 1
               || !json_is_object(conf)) {
        snprintf(detail, dsize,
                 "The body must be {\"acme\": {...}} or a PEM "
                 "bundle.");
    } else {
        conf = json_deep_copy(conf);
        if (conf != NULL && acme_conf_check(conf, detail, dsize) == WF_OK) {
            state = acme_state_create(conf, pem);
            if (state != NULL
                && acme_ca_resolve(conf, state, detail, dsize) != WF_OK) {
                json_decref(state);
                state = NULL;
                free(*pem);
                *pem = NULL;
            }
        }
        json_decref(conf);
    }
    json_decref(root);
    return state;
}

char *
wf_acme_state_text(const json_t *state)
{
    return json_dumps(state, JSON_INDENT(2) | JSON_SORT_KEYS);
}

char *
wf_acme_store_payload(const char *name, const char *state, const char *pem,
                      size_t *len)
{
    size_t n = strlen(name);
    size_t s = strlen(state);
    size_t p = pem != NULL ? strlen(pem) : 0;
    char *buf;

    *len = n + 1 + s + (pem != NULL ? 1 + p : 0);
    buf = malloc(*len + 1);
    if (buf == NULL) {
        return NULL;
    }
    memcpy(buf, name, n + 1);
    memcpy(buf + n + 1, state, s);
    if (pem != NULL) {
        buf[n + 1 + s] = '\0';
        memcpy(buf + n + 2 + s, pem, p);
    }
    return buf;
}

/* ---- the entries ---------------------------------------------------------
 */

/* The key of the entry name (without case), or NULL.  Under acme_lock. */
static const char *
acme_key(const char *name, size_t len)
{
    const char *key;
    json_t *v;

    json_object_foreach(acme_entries, key, v)
    {
        if (wf_str_eq_nocase(wf_str_make(key, strlen(key)),
                             wf_str_make(name, len))) {
            return key;
        }
    }
    return NULL;
}

void
wf_acme_entry_add(const char *name, json_t *state)
{
    pthread_mutex_lock(&acme_lock);
    if (acme_entries == NULL) {
        acme_entries = json_object();
    }
    if (acme_key(name, strlen(name)) != NULL) {
        json_object_del(acme_entries, acme_key(name, strlen(name)));
    }
    json_object_set_new(acme_entries, name, state);
    pthread_cond_signal(&acme_cond);
    pthread_mutex_unlock(&acme_lock);
}

void
wf_acme_entry_del(const char *name)
{
    const char *key;

    pthread_mutex_lock(&acme_lock);
    key = acme_key(name, strlen(name));
    if (key != NULL) {
        json_object_del(acme_entries, key);
    }
    pthread_mutex_unlock(&acme_lock);
}

bool
wf_acme_entry_exists(const char *name, size_t len)
{
    bool found;

    pthread_mutex_lock(&acme_lock);
    found = acme_key(name, len) != NULL;
    pthread_mutex_unlock(&acme_lock);
    return found;
}

bool
wf_acme_renew(const char *name, size_t len)
{
    const char *key;

    pthread_mutex_lock(&acme_lock);
    key = acme_key(name, len);
    if (key != NULL) {
        json_object_set_new(json_object_get(acme_entries, key), "next_attempt",
                            json_integer(0));
        pthread_cond_signal(&acme_cond);
    }
    pthread_mutex_unlock(&acme_lock);
    return key != NULL;
}

static json_t *
acme_time(json_int_t t)
{
    char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;

    if (t <= 0 || gmtime_r(&tt, &tm) == NULL) {
        return json_null();
    }
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

static json_int_t
acme_int(const json_t *state, const char *key)
{
    return json_integer_value(json_object_get(state, key));
}

/* The "acme" object GET shows.  Under acme_lock. */
static json_t *
acme_describe(const json_t *state)
{
    const json_t *conf = json_object_get(state, "acme");
    const char *err = json_string_value(json_object_get(state, "last_error"));
    json_t *d = json_deep_copy(conf);

    if (d == NULL) {
        return NULL;
    }
    json_object_set(d, "state", json_object_get(state, "state"));
    json_object_set_new(d, "expires", acme_time(acme_int(state, "expires")));
    json_object_set_new(d, "last_attempt",
                        acme_time(acme_int(state, "last_attempt")));
    json_object_set_new(d, "next_attempt",
                        acme_time(acme_int(state, "next_attempt")));
    json_object_set_new(d, "failures",
                        json_integer(acme_int(state, "failures")));
    json_object_set_new(d, "last_error",
                        err != NULL && err[0] != '\0' ? json_string(err)
                                                      : json_null());
    return d;
}

json_t *
wf_acme_cert_info(const char *name, json_t *info)
{
    const char *key;
    json_t *out = NULL;

    pthread_mutex_lock(&acme_lock);
    key = acme_key(name, strlen(name));
    if (key != NULL && (out = json_copy(info)) != NULL) {
        json_object_set_new(out, "acme",
                            acme_describe(json_object_get(acme_entries, key)));
    }
    pthread_mutex_unlock(&acme_lock);
    return out != NULL ? out : json_incref(info);
}

void
wf_acme_cert_infos(json_t *infos)
{
    const char *name;
    json_t *info;

    json_object_foreach(infos, name, info)
    {
        json_object_set_new(infos, name, wf_acme_cert_info(name, info));
    }
}

/* ---- persistence ---------------------------------------------------------
 */

static bool
acme_load_one(const char *dir, const char *name, void *arg)
{
    char path[4096];
    json_t *state;
    const char *st;

    wf_unused(arg);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    state = json_load_file(path, 0, NULL);
    st = json_string_value(json_object_get(state, "state"));
    if (!json_is_object(json_object_get(state, "acme")) || st == NULL
        || json_string_value(json_object_get(state, "account_key")) == NULL) {
        wf_log_error(0,
                     "acme entry \"%s\" in \"%s\" is not loaded: it is "
                     "not a valid state",
                     name, dir);
        json_decref(state);
        return false;
    }
    if (wf_cert_store_info(name, strlen(name)) == NULL) {
        wf_log_error(0,
                     "acme entry \"%s\" in \"%s\" is not loaded: its "
                     "certificate is not in the store",
                     name, dir);
        json_decref(state);
        return false;
    }
    if (strcmp(st, "renewing") == 0) {
        /* Stopped mid-attempt: it runs again. */
        json_object_set_new(state, "state", json_string("valid"));
    }
    wf_acme_entry_add(name, state);
    return true;
}

size_t
wf_acme_load(const char *dir)
{
    return wf_cert_dir_walk(dir, acme_load_one, NULL);
}

/* ---- the thread ------------------------------------------------------------
 */

static void
acme_on_call(wf_task_t *task)
{
    wf_acme_call_t *call = wf_container_of(task, wf_acme_call_t, task);

    acme_call_fn(call);
}

void
wf_acme_call_done(wf_acme_call_t *call, int rc)
{
    pthread_mutex_lock(&acme_lock);
    call->rc = rc;
    call->done = true;
    pthread_cond_broadcast(&acme_call_cond);
    pthread_mutex_unlock(&acme_lock);
}

/* Runs call on the loop thread and waits for it.  Not under acme_lock. */
static int
acme_call(wf_acme_call_t *call)
{
    call->done = false;
    call->rc = WF_ERROR;
    call->task.handler = acme_on_call;
    wf_task_post(acme_loop, &call->task);
    pthread_mutex_lock(&acme_lock);
    while (!call->done) {
        pthread_cond_wait(&acme_call_cond, &acme_lock);
    }
    pthread_mutex_unlock(&acme_lock);
    return call->rc;
}

static int
acme_on_challenges(wf_acme_order_t *o, const char *tokens)
{
    wf_acme_call_t call = {.kind = WF_ACME_CALL_TOKENS, .tokens = tokens};

    wf_unused(o);
    return acme_call(&call);
}

static bool
acme_on_sleep(wf_acme_order_t *o, unsigned ms)
{
    struct timespec ts;
    bool stopping;

    wf_unused(o);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&acme_lock);
    while (!acme_stopping
           && pthread_cond_timedwait(&acme_cond, &acme_lock, &ts) == 0) {
    }
    stopping = acme_stopping;
    pthread_mutex_unlock(&acme_lock);
    return !stopping;
}

/* An issue into the state (a copy) and the log. */
static void
acme_outcome_issued(const char *name, json_t *st, time_t not_after)
{
    const json_t *conf = json_object_get(st, "acme");
    time_t renew =
        not_after - (time_t)acme_int(conf, "renew_before_days") * 86400;
    char buf[32];
    struct tm tm;

    gmtime_r(&not_after, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    wf_log_notice(0, "acme \"%s\": certificate issued, expires %s", name, buf);
    json_object_set_new(st, "state", json_string("valid"));
    json_object_set_new(st, "failures", json_integer(0));
    json_object_set_new(st, "expires", json_integer(not_after));
    /* At least an hour: a window longer than the validity cannot loop. */
    json_object_set_new(
        st, "next_attempt",
        json_integer(wf_max(renew, time(NULL) + ACME_RENEW_MIN_S)));
    json_object_set_new(st, "last_error", json_string(""));
}

/* A failed attempt into the state (a copy) and the log: the back-off
 * doubles from retry_min_seconds up to retry_max_seconds. */
static void
acme_outcome_failed(const char *name, json_t *st, const char *why)
{
    const json_t *conf = json_object_get(st, "acme");
    json_int_t failures = acme_int(st, "failures");
    json_int_t max = acme_int(conf, "retry_max_seconds");
    json_int_t delay = acme_int(conf, "retry_min_seconds");

    for (json_int_t i = 0; i < failures && delay < max; i++) {
        delay *= 2;
    }
    delay = wf_min(delay, max);
    failures++;
    wf_log_warn(0,
                "acme \"%s\": attempt %lld failed: %s; next attempt in "
                "%lld s",
                name, (long long)failures, why, (long long)delay);
    json_object_set_new(st, "state", json_string("failed"));
    json_object_set_new(st, "failures", json_integer(failures));
    json_object_set_new(st, "next_attempt", json_integer(time(NULL) + delay));
    json_object_set_new(st, "last_error", json_string(why));
}

/* Stores the state (and pem) through the loop thread. */
static int
acme_store(const char *name, const json_t *st, const char *pem)
{
    wf_acme_call_t call = {.kind = WF_ACME_CALL_STORE, .name = name};
    char *text = wf_acme_state_text(st);
    int rc = WF_ERROR;

    if (text != NULL) {
        call.state = text;
        call.pem = pem;
        rc = acme_call(&call);
    }
    free(text);
    return rc;
}

/* One attempt on a copy of the entry's state; stores the outcome. */
static void
acme_attempt(const char *name, json_t *st)
{
    const char *url = json_string_value(json_object_get(st, "account_url"));
    wf_acme_order_t o = {
        .conf = json_object_get(st, "acme"),
        .ca_pem = json_string_value(json_object_get(st, "ca_pem")),
        .account_key = wf_acme_key_read(
            json_string_value(json_object_get(st, "account_key"))),
        .account_url = url != NULL ? strdup(url) : NULL,
        .challenges = acme_on_challenges,
        .sleep = acme_on_sleep,
    };
    char why[512] = "the account key does not load";
    int rc = WF_ERROR;

    if (o.account_key != NULL) {
        rc = wf_acme_order_run(&o, why, sizeof(why));
    }
    if (o.account_url != NULL) {
        json_object_set_new(st, "account_url", json_string(o.account_url));
    }
    if (rc == WF_OK) {
        json_t *prev = json_deep_copy(st);

        acme_outcome_issued(name, st, o.not_after);
        if (acme_store(name, st, o.bundle) != WF_OK) {
            /* Not stored, not served: it counts as a failure. */
            json_object_update(st, prev);
            rc = WF_ERROR;
            snprintf(why, sizeof(why), "the certificate could not be stored");
        }
        json_decref(prev);
    }
    if (rc != WF_OK) {
        acme_outcome_failed(name, st, why);
        if (acme_store(name, st, NULL) != WF_OK) {
            wf_log_info("acme \"%s\": the state was not stored", name);
        }
    }
    free(o.bundle);
    free(o.account_url);
    EVP_PKEY_free(o.account_key);
}

/* The entry due first (its key) and when; NULL when there is none.
 * Under acme_lock. */
static const char *
acme_next_due(json_int_t *when)
{
    const char *best = NULL;
    const char *key;
    json_t *st;

    json_object_foreach(acme_entries, key, st)
    {
        json_int_t t = acme_int(st, "next_attempt");

        if (best == NULL || t < *when) {
            best = key;
            *when = t;
        }
    }
    return best;
}

/* Runs the due entry.  Called and returns under acme_lock. */
static void
acme_run_one(const char *key)
{
    json_t *st = json_object_get(acme_entries, key);
    char *name = strdup(key);
    json_t *copy = json_deep_copy(st);

    json_incref(st);
    json_object_set_new(
        st, "state",
        json_string(acme_int(st, "expires") > 0 ? "renewing" : "pending"));
    json_object_set_new(st, "last_attempt", json_integer(time(NULL)));
    /* Not due again while it runs. */
    json_object_set_new(st, "next_attempt", json_integer(INT64_MAX / 2));
    pthread_mutex_unlock(&acme_lock);
    if (name != NULL && copy != NULL) {
        json_object_set(copy, "last_attempt",
                        json_object_get(st, "last_attempt"));
        acme_attempt(name, copy);
    }
    pthread_mutex_lock(&acme_lock);
    if (copy != NULL && name != NULL
        && json_object_get(acme_entries, name) == st) {
        json_object_update(st, copy);
    }
    json_decref(st);
    json_decref(copy);
    free(name);
}

static void *
acme_thread_main(void *arg)
{
    wf_unused(arg);
    pthread_mutex_lock(&acme_lock);
    while (!acme_stopping) {
        json_int_t when = 0;
        const char *key = acme_next_due(&when);
        time_t now = time(NULL);

        if (key != NULL && when <= now) {
            acme_run_one(key);
            continue;
        }
        if (key == NULL) {
            pthread_cond_wait(&acme_cond, &acme_lock);
        } else {
            struct timespec ts = {.tv_sec = (time_t)wf_min(when, now + 3600)};

            pthread_cond_timedwait(&acme_cond, &acme_lock, &ts);
        }
    }
    pthread_mutex_unlock(&acme_lock);
    return NULL;
}

int
wf_acme_start(wf_loop_t *loop, wf_acme_call_cb fn)
{
    int err;

    acme_loop = loop;
    acme_call_fn = fn;
    acme_stopping = false;
    err = pthread_create(&acme_thread, NULL, acme_thread_main, NULL);
    if (err != 0) {
        wf_log_alert(err, "pthread_create() failed");
        return WF_ERROR;
    }
    acme_running = true;
    return WF_OK;
}

void
wf_acme_stop(void)
{
    pthread_mutex_lock(&acme_lock);
    acme_stopping = true;
    pthread_cond_broadcast(&acme_cond);
    pthread_mutex_unlock(&acme_lock);
    if (acme_running) {
        pthread_join(acme_thread, NULL);
        acme_running = false;
    }
    json_decref(acme_entries);
    acme_entries = NULL;
}
