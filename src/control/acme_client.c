#include "control/acme_client.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/acme_crypto.h"
#include "control/acme_http.h"
#include "core/common.h"

#define ACME_JOSE       "application/jose+json"
#define ACME_POLL_MS    1000 /* between polls without Retry-After */
#define ACME_POLL_MAX_S 10   /* the longest Retry-After honoured */
#define ACME_ALPN_DAYS  7    /* a TLS-ALPN-01 certificate's validity */

/* One run of wf_acme_order_run(). */
typedef struct acme_run {
    wf_acme_order_t *o;
    SSL_CTX *ctx;
    json_t *dir;     /* the directory object */
    char *nonce;     /* the next request's, or NULL */
    char *thumb;     /* the account key's thumbprint */
    json_t *tokens;  /* {"http": {}, "alpn": {}} handed to the router */
    json_t *authzs;  /* the order's authorization URLs */
    char *order_url; /* owned */
    char *finalize;  /* owned */
    char *why;
    size_t whysize;
} acme_run_t;

/* A problem document's "type" and "detail" (RFC 8555 6.7), when body is
 * one. */
static void
acme_problem(const char *body, size_t len, char *buf, size_t size)
{
    json_t *p = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
    const char *type = json_string_value(json_object_get(p, "type"));
    const char *detail = json_string_value(json_object_get(p, "detail"));

    if (type != NULL || detail != NULL) {
        snprintf(buf, size, ": %s: %s", type != NULL ? type : "?",
                 detail != NULL ? detail : "");
    } else {
        buf[0] = '\0';
    }
    json_decref(p);
}

static int
acme_fail(acme_run_t *r, const char *step, const wf_acme_resp_t *resp)
{
    char problem[512];

    acme_problem(resp->body, resp->len, problem, sizeof(problem));
    snprintf(r->why, r->whysize, "%s: HTTP %d%s", step, resp->status, problem);
    return WF_ERROR;
}

static bool
acme_is_bad_nonce(const wf_acme_resp_t *resp)
{
    static const char bad[] = "urn:ietf:params:acme:error:badNonce";

    return resp->status == 400 && resp->body != NULL
           && strstr(resp->body, bad) != NULL;
}

/* Sends a request of the run; on a transport error why says which step. */
static int
acme_http(acme_run_t *r, const char *step, const char *method, const char *url,
          const char *body, wf_acme_resp_t *resp)
{
    char why[384];

    if (wf_acme_http_send(r->ctx, method, url, ACME_JOSE, body, resp, why,
                          sizeof(why))
        != WF_OK) {
        snprintf(r->why, r->whysize, "%s: %s", step, why);
        return WF_ERROR;
    }
    return WF_OK;
}

static const char *
acme_dir_url(acme_run_t *r, const char *key)
{
    return json_string_value(json_object_get(r->dir, key));
}

static int
acme_new_nonce(acme_run_t *r)
{
    const char *url = acme_dir_url(r, "newNonce");
    wf_acme_resp_t resp;

    if (url == NULL) {
        snprintf(r->why, r->whysize, "the directory has no newNonce");
        return WF_ERROR;
    }
    if (acme_http(r, "newNonce", "HEAD", url, NULL, &resp) != WF_OK) {
        return WF_ERROR;
    }
    if (resp.nonce == NULL) {
        acme_fail(r, "newNonce", &resp);
        wf_acme_resp_fini(&resp);
        return WF_ERROR;
    }
    r->nonce = resp.nonce;
    resp.nonce = NULL;
    wf_acme_resp_fini(&resp);
    return WF_OK;
}

/* A signed POST (payload NULL: POST-as-GET), with the account's kid
 * unless jwk, retried on badNonce with the nonce the error carried. */
static int
acme_post(acme_run_t *r, const char *step, const char *url, const char *payload,
          bool jwk, wf_acme_resp_t *resp)
{
    for (unsigned i = 0; i <= WF_ACME_NONCE_RETRIES; i++) {
        char *jws;
        int rc;

        if (r->nonce == NULL && acme_new_nonce(r) != WF_OK) {
            return WF_ERROR;
        }
        jws = wf_acme_jws(r->o->account_key, jwk ? NULL : r->o->account_url,
                          r->nonce, url, payload);
        free(r->nonce);
        r->nonce = NULL;
        if (jws == NULL) {
            snprintf(r->why, r->whysize, "%s: signing failed", step);
            return WF_ERROR;
        }
        rc = acme_http(r, step, "POST", url, jws, resp);
        free(jws);
        if (rc != WF_OK) {
            return WF_ERROR;
        }
        r->nonce = resp->nonce;
        resp->nonce = NULL;
        if (!acme_is_bad_nonce(resp)) {
            return WF_OK;
        }
        wf_acme_resp_fini(resp);
    }
    snprintf(r->why, r->whysize, "%s: badNonce %d times", step,
             WF_ACME_NONCE_RETRIES + 1);
    return WF_ERROR;
}

/* A POST whose answer must be a JSON object with an expected status. */
static json_t *
acme_post_json(acme_run_t *r, const char *step, const char *url,
               const char *payload, bool jwk, char **location)
{
    wf_acme_resp_t resp;
    json_t *v = NULL;

    if (acme_post(r, step, url, payload, jwk, &resp) != WF_OK) {
        return NULL;
    }
    if (resp.status < 200 || resp.status > 299) {
        acme_fail(r, step, &resp);
    } else if (!json_is_object(v = json_loadb(resp.body, resp.len, 0, NULL))) {
        json_decref(v);
        v = NULL;
        snprintf(r->why, r->whysize, "%s: the answer is not a JSON object",
                 step);
    } else if (location != NULL) {
        *location = resp.location;
        resp.location = NULL;
    }
    wf_acme_resp_fini(&resp);
    return v;
}

static int
acme_directory(acme_run_t *r)
{
    const char *url =
        json_string_value(json_object_get(r->o->conf, "directory"));
    wf_acme_resp_t resp;

    if (acme_http(r, "directory", "GET", url, NULL, &resp) != WF_OK) {
        return WF_ERROR;
    }
    if (resp.status != 200) {
        acme_fail(r, "directory", &resp);
    } else {
        r->dir = json_loadb(resp.body, resp.len, 0, NULL);
    }
    wf_acme_resp_fini(&resp);
    if (r->dir == NULL || acme_dir_url(r, "newAccount") == NULL
        || acme_dir_url(r, "newOrder") == NULL) {
        if (r->why[0] == '\0') {
            snprintf(r->why, r->whysize, "directory: not an ACME directory");
        }
        return WF_ERROR;
    }
    return WF_OK;
}

/* newAccount: created, or found again by its key (200). */
static int
acme_account(acme_run_t *r)
{
    const char *email = json_string_value(json_object_get(r->o->conf, "email"));
    json_t *p = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    char *payload;
    char *loc = NULL;
    json_t *acct;

    if (email != NULL) {
        char contact[320];

        snprintf(contact, sizeof(contact), "mailto:%s", email);
        json_object_set_new(p, "contact", json_pack("[s]", contact));
    }
    payload = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    acct = payload != NULL
               ? acme_post_json(r, "newAccount", acme_dir_url(r, "newAccount"),
                                payload, true, &loc)
               : NULL;
    free(payload);
    json_decref(acct);
    if (acct != NULL && loc == NULL) {
        snprintf(r->why, r->whysize, "newAccount: no Location");
    }
    if (loc == NULL) {
        return WF_ERROR;
    }
    free(r->o->account_url);
    r->o->account_url = loc;
    return WF_OK;
}

static int
acme_new_order(acme_run_t *r)
{
    json_t *ids = json_array();
    const json_t *domains = json_object_get(r->o->conf, "domains");
    size_t i;
    json_t *d;
    json_t *p;
    char *payload;
    json_t *order;

    json_array_foreach(domains, i, d)
    {
        json_array_append_new(
            ids, json_pack("{s:s, s:O}", "type", "dns", "value", d));
    }
    p = json_pack("{s:o}", "identifiers", ids);
    payload = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    order = payload != NULL
                ? acme_post_json(r, "newOrder", acme_dir_url(r, "newOrder"),
                                 payload, false, &r->order_url)
                : NULL;
    free(payload);
    if (order == NULL) {
        if (r->why[0] == '\0') {
            snprintf(r->why, r->whysize, "finalize: no CSR");
        }
        return WF_ERROR;
    }
    r->authzs = json_incref(json_object_get(order, "authorizations"));
    r->finalize =
        json_string_value(json_object_get(order, "finalize")) != NULL
            ? strdup(json_string_value(json_object_get(order, "finalize")))
            : NULL;
    json_decref(order);
    if (!json_is_array(r->authzs) || r->finalize == NULL
        || r->order_url == NULL) {
        snprintf(r->why, r->whysize, "newOrder: a malformed order");
        return WF_ERROR;
    }
    return WF_OK;
}

/* The challenge of authz whose type the entry answers, or NULL. */
static json_t *
acme_challenge_find(acme_run_t *r, json_t *authz)
{
    const char *want =
        json_string_value(json_object_get(r->o->conf, "challenge"));
    size_t i;
    json_t *c;

    json_array_foreach(json_object_get(authz, "challenges"), i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));

        if (type != NULL && strcmp(type, want) == 0) {
            return c;
        }
    }
    return NULL;
}

/* TLS-ALPN-01's answer for domain: a self-signed certificate of a new
 * key carrying the key authorization's digest (RFC 8737 3). */
static int
acme_token_alpn(acme_run_t *r, const char *domain, const char *keyauth)
{
    EVP_PKEY *k = wf_acme_key_create(WF_ACME_KEY_P256);
    json_t *names = json_pack("[s]", domain);
    char *pem = k != NULL && names != NULL
                    ? wf_acme_self_signed(k, names, keyauth, ACME_ALPN_DAYS)
                    : NULL;
    int rc = WF_ERROR;

    if (pem != NULL
        && json_object_set_new(json_object_get(r->tokens, "alpn"), domain,
                               json_string(pem))
               == 0) {
        rc = WF_OK;
    }
    free(pem);
    json_decref(names);
    EVP_PKEY_free(k);
    if (rc != WF_OK) {
        snprintf(r->why, r->whysize, "tls-alpn-01: no certificate");
    }
    return rc;
}

/* Adds the answer to c (for domain) to r->tokens. */
static int
acme_token_add(acme_run_t *r, const json_t *c, const char *domain)
{
    static const char b64url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *token = json_string_value(json_object_get(c, "token"));
    const char *type = json_string_value(json_object_get(c, "type"));
    char keyauth[512];

    /* The token ends up in a path and a file name: base64url only. */
    if (token == NULL || token[0] == '\0' || strlen(token) > 256
        || strspn(token, b64url) != strlen(token)) {
        snprintf(r->why, r->whysize, "authorization: a malformed token");
        return WF_ERROR;
    }
    snprintf(keyauth, sizeof(keyauth), "%s.%s", token, r->thumb);
    if (strcmp(type, "tls-alpn-01") == 0) {
        return acme_token_alpn(r, domain, keyauth);
    }
    if (json_object_set_new(json_object_get(r->tokens, "http"), token,
                            json_string(keyauth))
        != 0) {
        snprintf(r->why, r->whysize, "out of memory");
        return WF_ERROR;
    }
    return WF_OK;
}

/* Reads each authorization and collects the answers; *chals gets the
 * challenge URLs to respond to (empty when all are valid already). */
static int
acme_authz_collect(acme_run_t *r, json_t *chals)
{
    size_t i;
    json_t *u;

    json_array_foreach(r->authzs, i, u)
    {
        json_t *a = acme_post_json(r, "authorization", json_string_value(u),
                                   NULL, false, NULL);
        const char *st = json_string_value(json_object_get(a, "status"));
        const char *domain = json_string_value(
            json_object_get(json_object_get(a, "identifier"), "value"));
        json_t *c = a != NULL ? acme_challenge_find(r, a) : NULL;
        int rc = WF_OK;

        if (a != NULL && st != NULL && strcmp(st, "valid") == 0) {
            json_decref(a);
            continue;
        }
        if (a == NULL || c == NULL || domain == NULL) {
            if (a != NULL) {
                snprintf(r->why, r->whysize,
                         "authorization: no %s challenge offered",
                         json_string_value(
                             json_object_get(r->o->conf, "challenge")));
            }
            rc = WF_ERROR;
        } else {
            rc = acme_token_add(r, c, domain);
            if (rc == WF_OK) {
                json_array_append(chals, json_object_get(c, "url"));
            }
        }
        json_decref(a);
        if (rc != WF_OK) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static unsigned
acme_poll_ms(const wf_acme_resp_t *resp)
{
    if (resp->retry_after > 0) {
        return (unsigned)wf_min(resp->retry_after, ACME_POLL_MAX_S) * 1000;
    }
    return ACME_POLL_MS;
}

/* POST-as-GET url until its "status" leaves pending/processing (or
 * "ready" when ready_ok): returns the object, or NULL. */
static json_t *
acme_poll(acme_run_t *r, const char *step, const char *url, bool ready_ok)
{
    for (unsigned i = 0; i < WF_ACME_POLL_MAX; i++) {
        wf_acme_resp_t resp;
        json_t *v;
        const char *st;
        unsigned ms;

        if (acme_post(r, step, url, NULL, false, &resp) != WF_OK) {
            return NULL;
        }
        if (resp.status != 200) {
            acme_fail(r, step, &resp);
            wf_acme_resp_fini(&resp);
            return NULL;
        }
        v = json_loadb(resp.body, resp.len, 0, NULL);
        ms = acme_poll_ms(&resp);
        wf_acme_resp_fini(&resp);
        st = json_string_value(json_object_get(v, "status"));
        if (st == NULL) {
            snprintf(r->why, r->whysize, "%s: an answer without a status",
                     step);
            json_decref(v);
            return NULL;
        }
        if ((strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0
             && (ready_ok || strcmp(st, "ready") != 0))) {
            return v;
        }
        json_decref(v);
        if (!r->o->sleep(r->o, ms)) {
            snprintf(r->why, r->whysize, "%s: stopped", step);
            return NULL;
        }
    }
    snprintf(r->why, r->whysize, "%s: still pending after %d polls", step,
             WF_ACME_POLL_MAX);
    return NULL;
}

/* The challenge's error of an invalid authorization, for the log. */
static void
acme_authz_invalid(acme_run_t *r, json_t *a)
{
    const char *domain = json_string_value(
        json_object_get(json_object_get(a, "identifier"), "value"));
    json_t *c = acme_challenge_find(r, a);
    json_t *err = json_object_get(c, "error");
    const char *detail = json_string_value(json_object_get(err, "detail"));

    snprintf(r->why, r->whysize, "challenge for \"%s\" failed: %s",
             domain != NULL ? domain : "?",
             detail != NULL ? detail : "the authorization is invalid");
}

/* Responds to each challenge, then waits for every authorization. */
static int
acme_authorize(acme_run_t *r, json_t *chals)
{
    size_t i;
    json_t *u;

    json_array_foreach(chals, i, u)
    {
        json_t *c = acme_post_json(r, "challenge", json_string_value(u), "{}",
                                   false, NULL);

        if (c == NULL) {
            return WF_ERROR;
        }
        json_decref(c);
    }
    json_array_foreach(r->authzs, i, u)
    {
        json_t *a = acme_poll(r, "authorization", json_string_value(u), true);
        const char *st = json_string_value(json_object_get(a, "status"));
        bool valid = st != NULL && strcmp(st, "valid") == 0;

        if (a != NULL && !valid) {
            acme_authz_invalid(r, a);
        }
        json_decref(a);
        if (!valid) {
            return WF_ERROR;
        }
    }
    return WF_OK;
}

static int
acme_challenges(acme_run_t *r)
{
    json_t *chals = json_array();
    char *text;
    int rc;

    r->tokens = json_pack("{s:{}, s:{}}", "http", "alpn");
    if (chals == NULL || r->tokens == NULL
        || acme_authz_collect(r, chals) != WF_OK) {
        json_decref(chals);
        return WF_ERROR;
    }
    if (json_array_size(chals) == 0) {
        json_decref(chals);
        return WF_OK;
    }
    text = json_dumps(r->tokens, JSON_COMPACT);
    rc = text != NULL ? r->o->challenges(r->o, text) : WF_ERROR;
    free(text);
    if (rc != WF_OK) {
        snprintf(r->why, r->whysize, "the router did not take the challenges");
    } else {
        rc = acme_authorize(r, chals);
    }
    r->o->challenges(r->o, "{}");
    json_decref(chals);
    return rc;
}

/* finalize with a CSR of a new key, wait for the order, then download. */
static int
acme_finalize(acme_run_t *r, EVP_PKEY *k, char **chain)
{
    json_t *domains = json_object_get(r->o->conf, "domains");
    char *csr = wf_acme_csr(k, domains);
    json_t *p = csr != NULL ? json_pack("{s:s}", "csr", csr) : NULL;
    char *payload = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
    json_t *order = payload != NULL ? acme_post_json(r, "finalize", r->finalize,
                                                     payload, false, NULL)
                                    : NULL;
    const char *url;
    wf_acme_resp_t resp;

    free(csr);
    json_decref(p);
    free(payload);
    if (order == NULL) {
        if (r->why[0] == '\0') {
            snprintf(r->why, r->whysize, "finalize: no CSR");
        }
        return WF_ERROR;
    }
    json_decref(order);
    order = acme_poll(r, "order", r->order_url, false);
    url = json_string_value(json_object_get(order, "certificate"));
    if (url == NULL) {
        if (order != NULL) {
            snprintf(r->why, r->whysize, "order: status \"%s\"",
                     json_string_value(json_object_get(order, "status")));
        }
        json_decref(order);
        return WF_ERROR;
    }
    if (acme_post(r, "certificate", url, NULL, false, &resp) != WF_OK) {
        json_decref(order);
        return WF_ERROR;
    }
    json_decref(order);
    if (resp.status != 200 || resp.body == NULL) {
        acme_fail(r, "certificate", &resp);
        wf_acme_resp_fini(&resp);
        return WF_ERROR;
    }
    *chain = resp.body;
    resp.body = NULL;
    wf_acme_resp_fini(&resp);
    return WF_OK;
}

static wf_acme_key_type_t
acme_key_type(const json_t *conf)
{
    const char *t = json_string_value(json_object_get(conf, "key_type"));

    return t != NULL && strcmp(t, "rsa-2048") == 0 ? WF_ACME_KEY_RSA2048
                                                   : WF_ACME_KEY_P256;
}

static int
acme_issue(acme_run_t *r)
{
    EVP_PKEY *k = wf_acme_key_create(acme_key_type(r->o->conf));
    char *keypem = k != NULL ? wf_acme_key_pem(k) : NULL;
    char *chain = NULL;
    int rc = WF_ERROR;

    if (keypem == NULL) {
        snprintf(r->why, r->whysize, "no certificate key");
    } else if (acme_finalize(r, k, &chain) == WF_OK) {
        size_t n = strlen(keypem) + strlen(chain) + 1;

        r->o->bundle = malloc(n);
        if (r->o->bundle != NULL) {
            snprintf(r->o->bundle, n, "%s%s", keypem, chain);
            r->o->not_after = wf_acme_pem_not_after(chain);
            rc = WF_OK;
        }
    }
    free(chain);
    free(keypem);
    EVP_PKEY_free(k);
    return rc;
}

int
wf_acme_order_run(wf_acme_order_t *o, char *why, size_t whysize)
{
    acme_run_t r = {.o = o, .why = why, .whysize = whysize};
    const char *ca = o->ca_pem;
    int rc = WF_ERROR;

    why[0] = '\0';
    r.ctx = wf_acme_http_ctx_create(ca, why, whysize);
    r.thumb = wf_acme_thumbprint(o->account_key);
    if (r.ctx != NULL && r.thumb != NULL
        && acme_directory(&r) == WF_OK
        /* newAccount each time: it finds the account again by its key,
         * also after the server forgot it (pebble keeps no state). */
        && acme_account(&r) == WF_OK && acme_new_order(&r) == WF_OK
        && acme_challenges(&r) == WF_OK) {
        rc = acme_issue(&r);
    }
    if (rc != WF_OK && why[0] == '\0') {
        snprintf(why, whysize, "out of memory");
    }
    SSL_CTX_free(r.ctx);
    json_decref(r.dir);
    json_decref(r.tokens);
    json_decref(r.authzs);
    free(r.nonce);
    free(r.thumb);
    free(r.order_url);
    free(r.finalize);
    return rc;
}

time_t
wf_acme_pem_not_after(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    struct tm tm;
    time_t t = 0;

    if (x != NULL && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
        t = timegm(&tm);
    }
    X509_free(x);
    BIO_free(bio);
    ERR_clear_error();
    return t;
}
