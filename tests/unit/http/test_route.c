/* Route matching: Unit's patterns, match fields, step order, templates. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "core/pool.h"
#include "http/route.h"
#include "http/tpl.h"
#include "unit.h"

#define CS true  /* case-sensitive, as for "uri" */
#define CI false /* case-insensitive, as for "host", "method", "types" */

/* pattern: JSON text (a string or an array of strings). */
static const struct {
    const char *pattern;
    bool cs;
    const char *value;
    bool match;
} pattern_rows[] = {
    /* exact */
    {"\"/\"", CS, "/", true},
    {"\"/\"", CS, "", false},
    {"\"/\"", CS, "//", false},
    {"\"/a\"", CS, "/a", true},
    {"\"/a\"", CS, "/a/", false},
    {"\"/a\"", CS, "/A", false},
    {"\"/a\"", CS, "/ab", false},
    {"\"/a\"", CS, "a", false},
    {"\"/index.html\"", CS, "/index.html", true},
    {"\"/index.html\"", CS, "/index.htm", false},
    {"\"/index.html\"", CS, "/index.html5", false},
    {"\"abc\"", CI, "ABC", true},
    {"\"abc\"", CI, "aBc", true},
    {"\"ABC\"", CI, "abc", true},
    {"\"ABC\"", CS, "abc", false},
    {"\"abc\"", CI, "abd", false},
    {"\"abc\"", CI, "ab", false},
    /* empty pattern: only the empty value */
    {"\"\"", CS, "", true},
    {"\"\"", CS, "a", false},
    {"\"\"", CI, "", true},
    {"\"\"", CI, " ", false},
    /* "*" matches anything, the empty value included */
    {"\"*\"", CS, "", true},
    {"\"*\"", CS, "/", true},
    {"\"*\"", CS, "anything at all", true},
    /* prefix */
    {"\"/static/*\"", CS, "/static/", true},
    {"\"/static/*\"", CS, "/static/a.css", true},
    {"\"/static/*\"", CS, "/static/a/b/c.js", true},
    {"\"/static/*\"", CS, "/static", false},
    {"\"/static/*\"", CS, "/Static/a", false},
    {"\"/static/*\"", CS, "/staticx/a", false},
    {"\"/static/*\"", CS, "x/static/a", false},
    {"\"/api*\"", CS, "/api", true},
    {"\"/api*\"", CS, "/apiv2", true},
    {"\"/api*\"", CS, "/ap", false},
    {"\"www.*\"", CI, "WWW.example.com", true},
    {"\"www.*\"", CI, "ww.example.com", false},
    /* suffix */
    {"\"*.php\"", CS, "/index.php", true},
    {"\"*.php\"", CS, ".php", true},
    {"\"*.php\"", CS, "/index.php5", false},
    {"\"*.php\"", CS, "/index.PHP", false},
    {"\"*.php\"", CS, "/index.php/x", false},
    {"\"*.php\"", CS, "php", false},
    {"\"*.example.com\"", CI, "www.example.com", true},
    {"\"*.example.com\"", CI, "a.b.EXAMPLE.com", true},
    {"\"*.example.com\"", CI, "example.com", false},
    {"\"*.example.com\"", CI, ".example.com", true},
    {"\"*.example.com\"", CI, "www.example.org", false},
    /* both ends */
    {"\"*.php/*\"", CS, "/index.php/", true},
    {"\"*.php/*\"", CS, "/index.php/x/y", true},
    {"\"*.php/*\"", CS, "/index.php", false},
    {"\"*/*.php\"", CS, "/a/b.php", true},
    {"\"*/*.php\"", CS, "b.php", false},
    {"\"*admin*\"", CS, "/admin", true},
    {"\"*admin*\"", CS, "/x/admin/y", true},
    {"\"*admin*\"", CS, "admin", true},
    {"\"*admin*\"", CS, "/adm/in", false},
    {"\"*admin*\"", CS, "/ADMIN", false},
    {"\"*admin*\"", CI, "/ADMIN", true},
    {"\"*text/html*\"", CI, "text/html,application/xhtml+xml", true},
    {"\"*text/html*\"", CI, "application/json", false},
    /* middle */
    {"\"/a*z\"", CS, "/az", true},
    {"\"/a*z\"", CS, "/abcz", true},
    {"\"/a*z\"", CS, "/a/z", true},
    {"\"/a*z\"", CS, "/a", false},
    {"\"/a*z\"", CS, "/z", false},
    {"\"/a*z\"", CS, "/azz", true},
    {"\"/a*z\"", CS, "/aza", false},
    {"\"/admin/*/index.html\"", CS, "/admin/x/index.html", true},
    {"\"/admin/*/index.html\"", CS, "/admin/x/y/index.html", true},
    {"\"/admin/*/index.html\"", CS, "/admin//index.html", true},
    {"\"/admin/*/index.html\"", CS, "/admin/index.html", false},
    {"\"/admin/*/index.html\"", CS, "/admin/x/index.htm", false},
    {"\"ab*ba\"", CS, "aba", false},
    {"\"ab*ba\"", CS, "abba", true},
    {"\"ab*ba\"", CS, "abxba", true},
    {"\"a*a\"", CS, "a", false},
    {"\"a*a\"", CS, "aa", true},
    /* several stars */
    {"\"/a/*/b/*\"", CS, "/a/x/b/y", true},
    {"\"/a/*/b/*\"", CS, "/a/x/b/", true},
    {"\"/a/*/b/*\"", CS, "/a//b/", true},
    {"\"/a/*/b/*\"", CS, "/a/b/", false},
    {"\"/a/*/b/*\"", CS, "/a/x/c/y", false},
    {"\"*a*b*c*\"", CS, "abc", true},
    {"\"*a*b*c*\"", CS, "xaybzc", true},
    {"\"*a*b*c*\"", CS, "cba", false},
    {"\"*a*b*c*\"", CS, "ab", false},
    {"\"*a*b*c*\"", CS, "aXbXcX", true},
    {"\"a*b*c\"", CS, "abc", true},
    {"\"a*b*c\"", CS, "abbc", true},
    {"\"a*b*c\"", CS, "acbc", true},
    {"\"a*b*c\"", CS, "ac", false},
    {"\"a*b*c\"", CS, "abcd", false},
    {"\"a*b*c\"", CS, "xabc", false},
    {"\"a*bc*bc\"", CS, "abcbc", true},
    {"\"a*bc*bc\"", CS, "abc", false},
    {"\"a*bc*bc\"", CS, "abcxbc", true},
    {"\"*x*x*x*\"", CS, "xx", false},
    {"\"*x*x*x*\"", CS, "xxx", true},
    {"\"*x*x*x*\"", CS, "axbxcxd", true},
    {"\"/*/*/*\"", CS, "/a/b/c", true},
    {"\"/*/*/*\"", CS, "///", true},
    {"\"/*/*/*\"", CS, "/a/b", false},
    {"\"*.*\"", CI, "a.b", true},
    {"\"*.*\"", CI, "ab", false},
    {"\"h*st*.c*m\"", CI, "HOST1.COM", true},
    {"\"h*st*.c*m\"", CI, "host.cm", true},
    {"\"h*st*.c*m\"", CI, "hs.com", false},
    /* negation */
    {"\"!/index.php\"", CS, "/index.php", false},
    {"\"!/index.php\"", CS, "/", true},
    {"\"!/index.php\"", CS, "/index.php5", true},
    {"\"!/index.php\"", CS, "", true},
    {"\"!*.php\"", CS, "/a.php", false},
    {"\"!*.php\"", CS, "/a.html", true},
    {"\"!/static/*\"", CS, "/static/x", false},
    {"\"!/static/*\"", CS, "/dynamic/x", true},
    {"\"!\"", CS, "", false},
    {"\"!\"", CS, "x", true},
    {"\"!*\"", CS, "", false},
    {"\"!*\"", CS, "x", false},
    {"\"!GET\"", CI, "get", false},
    {"\"!GET\"", CI, "POST", true},
    {"\"!*.example.com\"", CI, "WWW.EXAMPLE.COM", false},
    {"\"!*.example.com\"", CI, "example.com", true},
    /* "!" is only special first; '!' elsewhere is a literal */
    {"\"/a!\"", CS, "/a!", true},
    {"\"/a!\"", CS, "/a", false},
    {"\"!!\"", CS, "!", false},
    {"\"!!\"", CS, "x", true},
    /* arrays: any positive, and no negative */
    {"[]", CS, "", true},
    {"[]", CS, "/anything", true},
    {"[\"/a\"]", CS, "/a", true},
    {"[\"/a\"]", CS, "/b", false},
    {"[\"/a\", \"/b\"]", CS, "/a", true},
    {"[\"/a\", \"/b\"]", CS, "/b", true},
    {"[\"/a\", \"/b\"]", CS, "/c", false},
    {"[\"*.php\", \"*.php/*\"]", CS, "/index.php", true},
    {"[\"*.php\", \"*.php/*\"]", CS, "/index.php/path", true},
    {"[\"*.php\", \"*.php/*\"]", CS, "/index.phps", false},
    {"[\"*.php\", \"*.php/*\", \"/wp-admin/\"]", CS, "/wp-admin/", true},
    {"[\"*.php\", \"*.php/*\", \"/wp-admin/\"]", CS, "/wp-admin", false},
    {"[\"/static/*\", \"/favicon.ico\"]", CS, "/favicon.ico", true},
    {"[\"/static/*\", \"/favicon.ico\"]", CS, "/static/x.png", true},
    {"[\"/static/*\", \"/favicon.ico\"]", CS, "/favicon.ico2", false},
    {"[\"!/a\", \"!/b\"]", CS, "/a", false},
    {"[\"!/a\", \"!/b\"]", CS, "/b", false},
    {"[\"!/a\", \"!/b\"]", CS, "/c", true},
    {"[\"!/a\", \"!/b\"]", CS, "", true},
    {"[\"/api/*\", \"!/api/private/*\"]", CS, "/api/x", true},
    {"[\"/api/*\", \"!/api/private/*\"]", CS, "/api/private/x", false},
    {"[\"/api/*\", \"!/api/private/*\"]", CS, "/other", false},
    {"[\"!/api/private/*\", \"/api/*\"]", CS, "/api/x", true},
    {"[\"!/api/private/*\", \"/api/*\"]", CS, "/api/private/x", false},
    {"[\"!/api/private/*\", \"/api/*\"]", CS, "/other", false},
    {"[\"*.example.com\", \"!www.example.com\"]", CI, "a.example.com", true},
    {"[\"*.example.com\", \"!www.example.com\"]", CI, "WWW.example.com", false},
    {"[\"*.example.com\", \"!www.example.com\"]", CI, "example.com", false},
    {"[\"GET\", \"HEAD\"]", CI, "GET", true},
    {"[\"GET\", \"HEAD\"]", CI, "head", true},
    {"[\"GET\", \"HEAD\"]", CI, "POST", false},
    {"[\"\", \"/a\"]", CS, "", true},
    {"[\"\", \"/a\"]", CS, "/a", true},
    {"[\"\", \"/a\"]", CS, "/b", false},
    {"[\"!\", \"/a\"]", CS, "", false},
    {"[\"!\", \"/a\"]", CS, "/a", true},
    {"[\"!\", \"/a\"]", CS, "/b", false},
    {"[\"*\", \"!/secret\"]", CS, "/secret", false},
    {"[\"*\", \"!/secret\"]", CS, "/public", true},
    {"[\"!*\", \"*\"]", CS, "x", false},
    {"[\"/a\", \"/a\"]", CS, "/a", true},
    {"[\"/a\", \"!/a\"]", CS, "/a", false},
    {"[\"text/*\", \"!text/x-*\"]", CI, "TEXT/HTML", true},
    {"[\"text/*\", \"!text/x-*\"]", CI, "text/x-foo", false},
    {"[\"text/*\", \"!text/x-*\"]", CI, "image/png", false},
    /* from Unit's docs: hidden files, script types, API versions */
    {"\"!*/.*\"", CS, "/a/.git/config", false},
    {"\"!*/.*\"", CS, "/.env", false},
    {"\"!*/.*\"", CS, "/a/b.txt", true},
    {"[\"!*.php\", \"!*.inc\"]", CS, "/lib.inc", false},
    {"[\"!*.php\", \"!*.inc\"]", CS, "/x.php", false},
    {"[\"!*.php\", \"!*.inc\"]", CS, "/x.html", true},
    {"\"/v*/users\"", CS, "/v1/users", true},
    {"\"/v*/users\"", CS, "/v2beta/users", true},
    {"\"/v*/users\"", CS, "/v1/groups", false},
    {"\"example.*\"", CI, "example.org", true},
    {"\"example.*\"", CI, "Example.COM", true},
    {"\"example.*\"", CI, "www.example.org", false},
    {"[\"*.example.com\", \"example.com\"]", CI, "example.com", true},
    {"[\"*.example.com\", \"example.com\"]", CI, "x.example.com", true},
    {"[\"*.example.com\", \"example.com\"]", CI, "xexample.com", false},
    /* bytes beyond ASCII are compared as they are */
    {"\"/caf\xC3\xA9\"", CS, "/caf\xC3\xA9", true},
    {"\"/caf\xC3\xA9\"", CI, "/CAF\xC3\xA9", true},
    {"\"/caf\xC3\xA9\"", CS, "/cafe", false},
    {"\"*\xC3\xA9\"", CS, "x\xC3\xA9", true},
    /* '%' is a literal here (only "uri" decodes, below) */
    {"\"/a%20b\"", CS, "/a%20b", true},
    {"\"/a%20b\"", CS, "/a b", false},
    /* long values */
    {"\"/a*\"", CS, "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     true},
    {"\"*b\"", CS, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     false},
    {"\"*a*a*a*a*b\"", CS, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     false},
    {"\"*a*a*a*a*b\"", CS, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
     true},
};

static void
test_pattern_table(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(pattern_rows); i++) {
        json_error_t jerr;
        json_t *v = json_loads(pattern_rows[i].pattern, JSON_DECODE_ANY, &jerr);
        char err[256] = "";
        wf_pattern_set_t *ps;
        bool m;

        assert_non_null(v);
        ps = wf_pattern_set_compile(a, v, pattern_rows[i].cs, err, sizeof(err));
        if (ps == NULL) {
            print_message("row %zu: %s\n", i, err);
        }
        assert_non_null(ps);
        m = wf_pattern_set_match(
            ps,
            wf_str_make(pattern_rows[i].value, strlen(pattern_rows[i].value)));
        if (m != pattern_rows[i].match) {
            print_message("row %zu: %s vs \"%s\": %d\n", i,
                          pattern_rows[i].pattern, pattern_rows[i].value, m);
        }
        assert_int_equal(m, pattern_rows[i].match);
        json_decref(v);
    }
    wf_arena_destroy(a);
}

static const struct {
    const char *pattern;
    const char *err; /* substring */
} bad_pattern_rows[] = {
    {"1", "The \"match\" pattern for \"types\" must be strings."},
    {"null", "must be strings"},
    {"{}", "must be strings"},
    {"[\"a\", 1]", "must be strings"},
    {"[[\"a\"]]", "must be strings"},
    {"\"**\"", "must not contain double \"*\" markers"},
    {"\"/a/**\"", "must not contain double \"*\" markers"},
    {"\"!***\"", "must not contain double \"*\" markers"},
    {"\"~(\"", "Invalid regular expression: missing closing parenthesis"},
    {"\"!~[a\"", "Invalid regular expression: missing terminating ]"},
    {"\"~a{2,1}\"", "Invalid regular expression:"},
};

static void
test_pattern_errors(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(bad_pattern_rows); i++) {
        json_t *v =
            json_loads(bad_pattern_rows[i].pattern, JSON_DECODE_ANY, NULL);
        char err[256] = "";

        assert_non_null(v);
        assert_null(wf_pattern_set_compile(a, v, true, err, sizeof(err)));
        if (strstr(err, bad_pattern_rows[i].err) == NULL) {
            print_message("row %zu: %s\n", i, err);
        }
        assert_non_null(strstr(err, bad_pattern_rows[i].err));
        json_decref(v);
    }
    wf_arena_destroy(a);
}

/* ---- match fields ------------------------------------------------------ */

static wf_route_req_t
req_make(const char *method, const char *host, const char *uri)
{
    wf_route_req_t rq;

    memset(&rq, 0, sizeof(rq));
    rq.method = wf_str_make(method, strlen(method));
    rq.host = wf_str_make(host, strlen(host));
    rq.uri = wf_str_make(uri, strlen(uri));
    return rq;
}

/* One step with match (JSON text); does the request reach its action? */
static const struct {
    const char *match;
    const char *method;
    const char *host;
    const char *uri;
    bool match_ok;
} field_rows[] = {
    {"{}", "GET", "example.com", "/", true},
    {"{\"uri\": \"/\"}", "GET", "", "/", true},
    {"{\"uri\": \"/\"}", "GET", "", "/x", false},
    /* uri is case-sensitive */
    {"{\"uri\": \"/Admin\"}", "GET", "", "/Admin", true},
    {"{\"uri\": \"/Admin\"}", "GET", "", "/admin", false},
    {"{\"uri\": \"/static/*\"}", "GET", "", "/static/app.js", true},
    {"{\"uri\": \"/static/*\"}", "GET", "", "/STATIC/app.js", false},
    /* uri patterns are percent-decoded: they match the decoded path */
    {"{\"uri\": \"/a%20b\"}", "GET", "", "/a b", true},
    {"{\"uri\": \"/a%20b\"}", "GET", "", "/a%20b", false},
    {"{\"uri\": \"/caf%C3%A9/*\"}", "GET", "", "/caf\xC3\xA9/x", true},
    {"{\"uri\": \"/%2A\"}", "GET", "", "/*", true},
    {"{\"uri\": \"/%2A\"}", "GET", "", "/x", false},
    {"{\"uri\": \"*%2fx\"}", "GET", "", "/a/x", true},
    /* host is case-insensitive, without a trailing dot */
    {"{\"host\": \"example.com\"}", "GET", "example.com", "/", true},
    {"{\"host\": \"example.com\"}", "GET", "EXAMPLE.com", "/", true},
    {"{\"host\": \"Example.COM\"}", "GET", "example.com", "/", true},
    {"{\"host\": \"example.com\"}", "GET", "example.com.", "/", true},
    {"{\"host\": \"example.com\"}", "GET", "example.org", "/", false},
    {"{\"host\": \"example.com\"}", "GET", "", "/", false},
    {"{\"host\": \"\"}", "GET", "", "/", true},
    {"{\"host\": \"*.example.com\"}", "GET", "Www.Example.Com", "/", true},
    {"{\"host\": [\"*.example.com\", \"!www.example.com\"]}", "GET",
     "www.example.com", "/", false},
    {"{\"host\": [\"*.example.com\", \"!www.example.com\"]}", "GET",
     "api.example.com", "/", true},
    {"{\"host\": \"localhost\"}", "GET", "LOCALHOST", "/", true},
    /* method is case-insensitive */
    {"{\"method\": \"GET\"}", "GET", "", "/", true},
    {"{\"method\": \"get\"}", "GET", "", "/", true},
    {"{\"method\": \"GET\"}", "POST", "", "/", false},
    {"{\"method\": [\"GET\", \"HEAD\"]}", "HEAD", "", "/", true},
    {"{\"method\": [\"GET\", \"HEAD\"]}", "PUT", "", "/", false},
    {"{\"method\": \"!GET\"}", "POST", "", "/", true},
    {"{\"method\": \"!GET\"}", "GET", "", "/", false},
    {"{\"method\": \"P*\"}", "PATCH", "", "/", true},
    {"{\"method\": \"P*\"}", "DELETE", "", "/", false},
    /* every condition must hold */
    {"{\"method\": \"GET\", \"uri\": \"/a\"}", "GET", "", "/a", true},
    {"{\"method\": \"GET\", \"uri\": \"/a\"}", "POST", "", "/a", false},
    {"{\"method\": \"GET\", \"uri\": \"/a\"}", "GET", "", "/b", false},
    {"{\"host\": \"a.com\", \"method\": \"POST\", \"uri\": \"/api/*\"}", "POST",
     "A.COM", "/api/v1", true},
    {"{\"host\": \"a.com\", \"method\": \"POST\", \"uri\": \"/api/*\"}", "POST",
     "b.com", "/api/v1", false},
    /* laravel-fly: everything but the front controller tries the share */
    {"{\"uri\": \"!/index.php\"}", "GET", "", "/index.php", false},
    {"{\"uri\": \"!/index.php\"}", "GET", "", "/css/app.css", true},
    /* wordpress: PHP scripts and /wp-admin/ go to PHP directly */
    {"{\"uri\": [\"*.php\", \"*.php/*\", \"/wp-admin/\"]}", "GET", "",
     "/wp-login.php", true},
    {"{\"uri\": [\"*.php\", \"*.php/*\", \"/wp-admin/\"]}", "GET", "",
     "/index.php/2020/post", true},
    {"{\"uri\": [\"*.php\", \"*.php/*\", \"/wp-admin/\"]}", "GET", "",
     "/wp-admin/", true},
    {"{\"uri\": [\"*.php\", \"*.php/*\", \"/wp-admin/\"]}", "GET", "",
     "/wp-content/x.png", false},
};

static void
test_fields(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    static const wf_action_t act = {.type = WF_ACTION_RETURN, .status = 200};

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(field_rows); i++) {
        json_t *m = json_loads(field_rows[i].match, 0, NULL);
        wf_route_t *r = wf_route_create(a, "t");
        wf_route_req_t rq = req_make(field_rows[i].method, field_rows[i].host,
                                     field_rows[i].uri);
        char err[256] = "";
        const wf_action_t *got;

        assert_non_null(m);
        if (wf_route_add_step(r, a, m, &act, err, sizeof(err)) != WF_OK) {
            print_message("row %zu: %s\n", i, err);
            fail();
        }
        got = wf_route_match(r, &rq);
        if ((got != NULL) != field_rows[i].match_ok) {
            print_message("row %zu: %s %s %s %s\n", i, field_rows[i].match,
                          field_rows[i].method, field_rows[i].host,
                          field_rows[i].uri);
        }
        assert_int_equal(got != NULL, field_rows[i].match_ok);
        json_decref(m);
    }
    wf_arena_destroy(a);
}

static const struct {
    const char *match;
    const char *err;
} bad_match_rows[] = {
    {"{\"urii\": \"/\"}", "Unknown parameter \"urii\"."},
    {"{\"Uri\": \"/\"}", "Unknown parameter \"Uri\"."},
    {"{\"uri\": 1}", "The \"uri\" value must be either a string or an array, "
                     "but not an integer number."},
    {"{\"host\": {}}", "The \"host\" value must be either a string or an "
                       "array, but not an object."},
    {"{\"method\": [1]}",
     "The \"match\" pattern for \"method\" must be strings."},
    {"{\"host\": [\"a\", null]}",
     "The \"match\" pattern for \"host\" must be strings."},
    {"{\"uri\": [true]}",
     "The \"match\" pattern for \"uri\" must be a string."},
    {"{\"uri\": \"/a%zz\"}",
     "The \"match\" pattern for \"uri\" is encoded but is invalid."},
    {"{\"uri\": \"/a%2\"}", "is encoded but is invalid"},
    {"{\"uri\": \"~^/a(\"}", "Invalid regular expression"},
    {"{\"query\": \"a=%g0\"}",
     "The \"match\" pattern for \"query\" is encoded but is invalid."},
    {"{\"query\": 5}", "The \"query\" value must be either a string or an "
                       "array, but not an integer number."},
    {"{\"headers\": \"x\"}", "The \"headers\" value must be either an "
                             "array or an object, but not a string."},
    {"{\"headers\": [\"x\"]}",
     "The \"match\" patterns for \"headers\" must be objects."},
    {"{\"cookies\": [{}, 1]}",
     "The \"match\" patterns for \"cookies\" must be objects."},
    {"{\"arguments\": [1]}",
     "The \"match\" pattern for \"arguments\" must be an object."},
    {"{\"headers\": {\"\": \"x\"}}",
     "The \"match\" pattern objects must not contain empty member names."},
    {"{\"arguments\": {\"\": \"x\"}}", "must not contain empty member names"},
    {"{\"arguments\": {\"a%zz\": \"x\"}}",
     "The \"match\" pattern for \"arguments\" is encoded but is invalid."},
    {"{\"arguments\": {\"a\": \"%\"}}", "is encoded but is invalid"},
    {"{\"arguments\": {\"a\": 1}}",
     "The \"match\" pattern for \"arguments\" must be a string."},
    {"{\"headers\": {\"a\": {}}}",
     "The \"match\" pattern for \"headers\" must be strings."},
    {"{\"cookies\": {\"a\": \"x**\"}}", "double \"*\" markers"},
    {"{\"scheme\": \"ftp\"}",
     "The \"scheme\" can either be \"http\" or \"https\"."},
    {"{\"scheme\": [\"http\"]}", "The \"scheme\" value must be a string"},
    {"{\"source\": \"10.0.0.0/33\"}",
     "The \"address\" has an invalid CIDR prefix."},
    {"{\"source\": \"::/129\"}", "The \"address\" has an invalid CIDR prefix."},
    {"{\"source\": \"1\"}", "The \"address\" is too short."},
    {"{\"source\": \"!1\"}", "The \"address\" is too short."},
    {"{\"source\": \"10.0.0.300\"}", "The \"address\" format is invalid."},
    {"{\"source\": \"example.com\"}", "The \"address\" format is invalid."},
    {"{\"source\": \"10.0.0.9-10.0.0.1\"}",
     "The \"address\" range is overlapping."},
    {"{\"source\": \"::9-::1\"}", "The \"address\" range is overlapping."},
    {"{\"source\": \"10.0.0.1:65536\"}",
     "The \"address\" port an invalid port."},
    {"{\"source\": \"*:90-80\"}", "The \"address\" port an invalid port."},
    {"{\"source\": \"*:x\"}", "The \"address\" port an invalid port."},
    {"{\"source\": \"10.0.0.1:\"}", "The \"address\" format is invalid."},
    {"{\"source\": \"[::1]\"}", "The \"address\" format is invalid."},
    {"{\"destination\": [\"*:80\", 80]}",
     "The \"match\" pattern for \"address\" must be a string."},
    {"{\"destination\": {}}", "The \"destination\" value must be either a "
                              "string or an array, but not an object."},
    {"{\"if\": \"$x\"}", "Unknown variable \"x\""},
    {"{\"if\": \"!$\"}", "Invalid variable at position 0"},
    {"{\"if\": 1}", "The \"if\" value must be a string"},
    {"{\"if\": \"`${host}`\"}", "JavaScript templates are not supported yet"},
    {"[]", "The \"match\" value must be an object, but not an array."},
};

static void
test_match_errors(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    static const wf_action_t act = {.type = WF_ACTION_RETURN, .status = 200};

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(bad_match_rows); i++) {
        json_t *m = json_loads(bad_match_rows[i].match, 0, NULL);
        wf_route_t *r = wf_route_create(a, "t");
        char err[256] = "";

        assert_non_null(m);
        assert_int_equal(wf_route_add_step(r, a, m, &act, err, sizeof(err)),
                         WF_ERROR);
        if (strstr(err, bad_match_rows[i].err) == NULL) {
            print_message("row %zu: %s\n", i, err);
        }
        assert_non_null(strstr(err, bad_match_rows[i].err));
        json_decref(m);
    }
    wf_arena_destroy(a);
}

/* The first step that matches wins; later ones are not looked at. */
static void
test_step_order(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    wf_route_t *r = wf_route_create(a, "main");
    static const wf_action_t acts[5] = {
        {.status = 1}, {.status = 2}, {.status = 3},
        {.status = 4}, {.status = 5},
    };
    static const char *const matches[5] = {
        "{\"uri\": \"/a\"}",
        "{\"uri\": \"/a*\"}",
        "{\"method\": \"POST\"}",
        "{\"uri\": \"/a\"}",
        NULL,
    };
    static const struct {
        const char *method;
        const char *uri;
        unsigned status;
    } reqs[] = {
        {"GET", "/a", 1},  {"POST", "/a", 1}, {"GET", "/ab", 2},
        {"POST", "/b", 3}, {"GET", "/b", 5},  {"GET", "", 5},
    };

    wf_unused(state);
    assert_string_equal(wf_route_name(r), "main");
    assert_null(wf_route_match(r, &(wf_route_req_t){0}));
    for (size_t i = 0; i < 5; i++) {
        json_t *m = matches[i] != NULL ? json_loads(matches[i], 0, NULL) : NULL;
        char err[256];

        assert_int_equal(wf_route_add_step(r, a, m, &acts[i], err, sizeof(err)),
                         WF_OK);
        json_decref(m);
    }
    for (size_t i = 0; i < wf_nitems(reqs); i++) {
        wf_route_req_t rq = req_make(reqs[i].method, "", reqs[i].uri);
        const wf_action_t *got = wf_route_match(r, &rq);

        assert_non_null(got);
        assert_int_equal(got->status, reqs[i].status);
    }
    wf_arena_destroy(a);
}

/* Many steps: the step array grows. */
static void
test_many_steps(void **state)
{
    wf_arena_t *a = wf_arena_create(256);
    wf_route_t *r = wf_route_create(a, "");
    static wf_action_t acts[100];

    wf_unused(state);
    for (unsigned i = 0; i < 100; i++) {
        char text[64];
        char err[256];
        json_t *m;

        acts[i].status = i;
        snprintf(text, sizeof(text), "{\"uri\": \"/%u\"}", i);
        m = json_loads(text, 0, NULL);
        assert_int_equal(wf_route_add_step(r, a, m, &acts[i], err, sizeof(err)),
                         WF_OK);
        json_decref(m);
    }
    for (unsigned i = 0; i < 100; i++) {
        char uri[16];
        wf_route_req_t rq;

        snprintf(uri, sizeof(uri), "/%u", i);
        rq = req_make("GET", "", uri);
        assert_int_equal(wf_route_match(r, &rq)->status, i);
    }
    wf_arena_destroy(a);
}


/* ---- full requests ----------------------------------------------------- */

/* A request as a row describes it; NULL fields take the defaults of
 * treq_build(). */
typedef struct treq {
    const char *method;  /* "GET" */
    const char *host;    /* "example.com" */
    const char *uri;     /* "/" (decoded) */
    const char *query;   /* NULL: no '?' */
    const char *headers; /* "Name: value\n..." */
    const char *src;     /* "192.0.2.1:5000", "[2001:db8::1]:5000", "unix" */
    const char *dst;     /* "127.0.0.1:80" */
    bool tls;
} treq_t;

typedef struct treq_buf {
    wf_h1_head_t head;
    wf_sockaddr_t remote, local;
    char target[512];
    char hdrs[1024];
    wf_route_req_t rq;
} treq_buf_t;

static void
treq_addr(wf_sockaddr_t *sa, const char *text)
{
    char buf[128];
    char *port;

    memset(sa, 0, sizeof(*sa));
    if (strcmp(text, "unix") == 0) {
        sa->sa.sa_family = AF_UNIX;
        return;
    }
    snprintf(buf, sizeof(buf), "%s", text);
    port = strrchr(buf, ':');
    assert_non_null(port);
    *port++ = '\0';
    if (buf[0] == '[') {
        buf[strlen(buf) - 1] = '\0';
        sa->sin6.sin6_family = AF_INET6;
        sa->sin6.sin6_port = htons((uint16_t)atoi(port));
        assert_int_equal(inet_pton(AF_INET6, buf + 1, &sa->sin6.sin6_addr), 1);
        return;
    }
    sa->sin.sin_family = AF_INET;
    sa->sin.sin_port = htons((uint16_t)atoi(port));
    assert_int_equal(inet_pton(AF_INET, buf, &sa->sin.sin_addr), 1);
}

static void
treq_headers(treq_buf_t *b, const char *headers)
{
    char *p = b->hdrs;

    snprintf(b->hdrs, sizeof(b->hdrs), "%s", headers != NULL ? headers : "");
    while (*p != '\0' && b->head.nheaders < WF_H1_MAX_HEADERS) {
        char *nl = strchr(p, '\n');
        char *colon = strchr(p, ':');
        char *v;

        if (nl == NULL) {
            nl = p + strlen(p);
        }
        assert_true(colon != NULL && colon < nl);
        v = colon + 1;
        while (*v == ' ') {
            v++;
        }
        b->head.headers[b->head.nheaders++] =
            (wf_h1_header_t){wf_str_make(p, (size_t)(colon - p)),
                             wf_str_make(v, (size_t)(nl - v))};
        p = *nl == '\n' ? nl + 1 : nl;
    }
}

/* Fills b from t: target = uri [? query]. */
static void
treq_build(treq_buf_t *b, const treq_t *t)
{
    const char *m = t->method != NULL ? t->method : "GET";
    const char *uri = t->uri != NULL ? t->uri : "/";
    size_t ulen = strlen(uri);

    memset(b, 0, sizeof(*b));
    snprintf(b->target, sizeof(b->target), "%s%s%s", uri,
             t->query != NULL ? "?" : "", t->query != NULL ? t->query : "");
    b->head.method = wf_str_make(m, strlen(m));
    b->head.target = wf_str_make(b->target, strlen(b->target));
    b->head.path = wf_str_make(b->target, ulen);
    b->head.has_query = t->query != NULL;
    b->head.query = t->query != NULL
                        ? wf_str_make(b->target + ulen + 1, strlen(t->query))
                        : wf_str_make(b->target + ulen, 0);
    b->head.version = 11;
    treq_headers(b, t->headers);
    treq_addr(&b->remote, t->src != NULL ? t->src : "192.0.2.1:5000");
    treq_addr(&b->local, t->dst != NULL ? t->dst : "127.0.0.1:80");
    b->rq = req_make(m, t->host != NULL ? t->host : "example.com", uri);
    b->rq.head = &b->head;
    b->rq.remote = &b->remote;
    b->rq.local = &b->local;
    b->rq.tls = t->tls;
}

#define R(...) ((treq_t){__VA_ARGS__})

/* One step with match; does the request reach its action?  Among them,
 * every example of Unit's "Routes" / "Matching conditions" docs. */
static const struct {
    const char *match;
    treq_t req;
    bool ok;
} req_rows[] = {
    {"{\"host\": \"example.com\"}", R(.host = "example.com"), true},
    {"{\"host\": \"example.com\"}", R(.host = "EXAMPLE.COM"), true},
    {"{\"host\": \"example.com\"}", R(.host = "example.com."), true},
    {"{\"host\": \"example.com\"}", R(.host = "www.example.com"), false},
    {"{\"host\": \"example.com\"}", R(.host = "example.org"), false},
    {"{\"host\": \"example.com\"}", R(.host = ""), false},
    {"{\"host\": \"*.example.com\"}", R(.host = "www.example.com"), true},
    {"{\"host\": \"*.example.com\"}", R(.host = "a.b.example.com"), true},
    {"{\"host\": \"*.example.com\"}", R(.host = "example.com"), false},
    {"{\"host\": \"*.example.com\"}", R(.host = "wwwexample.com"), false},
    {"{\"host\": [\"*.example.com\", \"!www.example.com\"]}",
     R(.host = "www.example.com"), false},
    {"{\"host\": [\"*.example.com\", \"!www.example.com\"]}",
     R(.host = "api.example.com"), true},
    {"{\"host\": [\"*.example.com\", \"!www.example.com\"]}",
     R(.host = "example.com"), false},
    {"{\"host\": [\"localhost\", \"127.0.0.1\"]}", R(.host = "localhost"),
     true},
    {"{\"host\": [\"localhost\", \"127.0.0.1\"]}", R(.host = "127.0.0.1"),
     true},
    {"{\"host\": [\"localhost\", \"127.0.0.1\"]}", R(.host = "example.com"),
     false},
    {"{\"host\": \"~^(blog|shop)\\\\.example\\\\.com$\"}",
     R(.host = "blog.example.com"), true},
    {"{\"host\": \"~^(blog|shop)\\\\.example\\\\.com$\"}",
     R(.host = "shop.example.com"), true},
    {"{\"host\": \"~^(blog|shop)\\\\.example\\\\.com$\"}",
     R(.host = "example.com"), false},
    {"{\"host\": \"~^(blog|shop)\\\\.example\\\\.com$\"}",
     R(.host = "blog.example.org"), false},
    {"{\"host\": \"!~^www\\\\.\"}", R(.host = "www.example.com"), false},
    {"{\"host\": \"!~^www\\\\.\"}", R(.host = "api.example.com"), true},
    {"{\"uri\": \"/admin/*\"}", R(.uri = "/admin/"), true},
    {"{\"uri\": \"/admin/*\"}", R(.uri = "/admin/x/y"), true},
    {"{\"uri\": \"/admin/*\"}", R(.uri = "/Admin/x"), false},
    {"{\"uri\": \"/admin/*\"}", R(.uri = "/admin"), false},
    {"{\"uri\": \"/sample%20url\"}", R(.uri = "/sample url"), true},
    {"{\"uri\": \"/sample%20url\"}", R(.uri = "/sample%20url"), false},
    {"{\"uri\": \"/sample%20url\"}", R(.uri = "/sample+url"), false},
    {"{\"uri\": \"/a+b\"}", R(.uri = "/a+b"), true},
    {"{\"uri\": \"/a+b\"}", R(.uri = "/a b"), false},
    {"{\"uri\": \"/caf%C3%A9\"}",
     R(.uri = "/caf\xC3\xA9"
              ""),
     true},
    {"{\"uri\": \"~^/data/www/.*\\\\.(jpg|JPG|png|PNG)$\"}",
     R(.uri = "/data/www/a.jpg"), true},
    {"{\"uri\": \"~^/data/www/.*\\\\.(jpg|JPG|png|PNG)$\"}",
     R(.uri = "/data/www/x/b.PNG"), true},
    {"{\"uri\": \"~^/data/www/.*\\\\.(jpg|JPG|png|PNG)$\"}",
     R(.uri = "/data/www/a.gif"), false},
    {"{\"uri\": \"~^/data/www/.*\\\\.(jpg|JPG|png|PNG)$\"}",
     R(.uri = "/data/a.jpg"), false},
    {"{\"uri\": \"!~\\\\.php$\"}", R(.uri = "/a.php"), false},
    {"{\"uri\": \"!~\\\\.php$\"}", R(.uri = "/a.html"), true},
    {"{\"uri\": [\"~^/api/v[0-9]+/\", \"!~/internal/\"]}",
     R(.uri = "/api/v2/users"), true},
    {"{\"uri\": [\"~^/api/v[0-9]+/\", \"!~/internal/\"]}",
     R(.uri = "/api/v2/internal/x"), false},
    {"{\"uri\": [\"~^/api/v[0-9]+/\", \"!~/internal/\"]}",
     R(.uri = "/api/vx/users"), false},
    {"{\"uri\": \"~\"}", R(.uri = "/anything"), true},
    {"{\"uri\": \"~^/$\"}", R(.uri = "/"), true},
    {"{\"uri\": \"~^/$\"}", R(.uri = "/a"), false},
    {"{\"uri\": \"~(?i)^/ADMIN\"}", R(.uri = "/admin/x"), true},
    {"{\"uri\": \"!*/.*\"}", R(.uri = "/.git/config"), false},
    {"{\"uri\": \"!*/.*\"}", R(.uri = "/a/.env"), false},
    {"{\"uri\": \"!*/.*\"}", R(.uri = "/a/b.txt"), true},
    {"{\"uri\": [\"/v1/*\", \"/v2/*\", \"!/v2/private/*\"]}", R(.uri = "/v1/x"),
     true},
    {"{\"uri\": [\"/v1/*\", \"/v2/*\", \"!/v2/private/*\"]}",
     R(.uri = "/v2/private/x"), false},
    {"{\"uri\": [\"/v1/*\", \"/v2/*\", \"!/v2/private/*\"]}",
     R(.uri = "/v2/public"), true},
    {"{\"uri\": []}", R(.uri = "/x"), true},
    {"{\"method\": [\"GET\", \"HEAD\"]}", R(.method = "GET"), true},
    {"{\"method\": [\"GET\", \"HEAD\"]}", R(.method = "HEAD"), true},
    {"{\"method\": [\"GET\", \"HEAD\"]}", R(.method = "POST"), false},
    {"{\"method\": [\"GET\", \"HEAD\"]}", R(.method = "get"), false},
    {"{\"method\": \"get\"}", R(.method = "GET"), true},
    {"{\"method\": \"!GET\"}", R(.method = "POST"), true},
    {"{\"method\": \"!GET\"}", R(.method = "GET"), false},
    {"{\"method\": \"P*\"}", R(.method = "PUT"), true},
    {"{\"method\": \"p*\"}", R(.method = "PATCH"), true},
    {"{\"method\": \"~^(GET|HEAD)$\"}", R(.method = "HEAD"), true},
    {"{\"method\": \"~^(GET|HEAD)$\"}", R(.method = "POST"), false},
    {"{\"method\": \"PROPFIND\"}", R(.method = "PROPFIND"), true},
    {"{\"query\": \"a=1\"}", R(.query = "a=1"), true},
    {"{\"query\": \"a=1\"}", R(.query = "a=2"), false},
    {"{\"query\": \"a=1\"}", R(), false},
    {"{\"query\": \"\"}", R(), true},
    {"{\"query\": \"\"}", R(.query = ""), true},
    {"{\"query\": \"!\"}", R(), false},
    {"{\"query\": \"!\"}", R(.query = "x"), true},
    {"{\"query\": \"*\"}", R(), true},
    {"{\"query\": \"*\"}", R(.query = "anything"), true},
    {"{\"query\": \"*foo=bar*\"}", R(.query = "a=1&foo=bar&b=2"), true},
    {"{\"query\": \"*foo=bar*\"}", R(.query = "a=1&foo=baz"), false},
    {"{\"query\": \"name=John Doe\"}", R(.query = "name=John+Doe"), true},
    {"{\"query\": \"name=John Doe\"}", R(.query = "name=John%20Doe"), true},
    {"{\"query\": \"name=John+Doe\"}", R(.query = "name=John%20Doe"), true},
    {"{\"query\": \"name=John%20Doe\"}", R(.query = "name=John+Doe"), true},
    {"{\"query\": \"a=%26\"}", R(.query = "a=%26"), true},
    {"{\"query\": \"a=&\"}", R(.query = "a=%26"), true},
    {"{\"query\": \"A=1\"}", R(.query = "a=1"), false},
    {"{\"query\": [\"!utm_*\", \"*\"]}", R(.query = "page=2"), true},
    {"{\"query\": [\"!utm_*\", \"*\"]}", R(.query = "utm_source=x"), false},
    {"{\"query\": \"~^id=[0-9]+$\"}", R(.query = "id=42"), true},
    {"{\"query\": \"~^id=[0-9]+$\"}", R(.query = "id=4x"), false},
    {"{\"query\": \"x=%25\"}", R(.query = "x=%"), true},
    {"{\"query\": \"x=%25\"}", R(.query = "x=%25"), true},
    {"{\"arguments\": {\"mode\": \"strict\", \"access\": \"!full\"}}",
     R(.query = "mode=strict&access=partial"), true},
    {"{\"arguments\": {\"mode\": \"strict\", \"access\": \"!full\"}}",
     R(.query = "mode=strict&access=full"), false},
    {"{\"arguments\": {\"mode\": \"strict\", \"access\": \"!full\"}}",
     R(.query = "mode=strict"), false},
    {"{\"arguments\": {\"mode\": \"strict\", \"access\": \"!full\"}}",
     R(.query = "access=partial"), false},
    {"{\"arguments\": {\"mode\": \"strict\", \"access\": \"!full\"}}",
     R(.query = "mode=Strict&access=partial"), false},
    {"{\"arguments\": {\"mode\": \"strict\", \"access\": \"!full\"}}", R(),
     false},
    {"{\"arguments\": {\"mode\": \"strict\", \"access\": \"!full\"}}",
     R(.query = "access=partial&mode=strict&x=1"), true},
    {"{\"arguments\": {\"mode\": \"strict\", \"access\": \"!full\"}}",
     R(.query = "mode=strict&access=partial&mode=relaxed"), false},
    {"{\"arguments\": {\"mode\": \"strict\", \"access\": \"!full\"}}",
     R(.query = "mode=strict&mode=strict&access=none"), true},
    {"{\"arguments\": [{\"mode\": \"strict\", \"access\": \"!full\"}, "
     "{\"mode\": \"relaxed\"}]}",
     R(.query = "mode=relaxed"), true},
    {"{\"arguments\": [{\"mode\": \"strict\", \"access\": \"!full\"}, "
     "{\"mode\": \"relaxed\"}]}",
     R(.query = "mode=strict&access=partial"), true},
    {"{\"arguments\": [{\"mode\": \"strict\", \"access\": \"!full\"}, "
     "{\"mode\": \"relaxed\"}]}",
     R(.query = "mode=strict&access=full"), false},
    {"{\"arguments\": [{\"mode\": \"strict\", \"access\": \"!full\"}, "
     "{\"mode\": \"relaxed\"}]}",
     R(.query = "mode=other"), false},
    {"{\"arguments\": {\"id\": \"*\"}}", R(.query = "id="), true},
    {"{\"arguments\": {\"id\": \"*\"}}", R(.query = "id"), true},
    {"{\"arguments\": {\"id\": \"*\"}}", R(.query = "idx=1"), false},
    {"{\"arguments\": {\"id\": \"\"}}", R(.query = "id"), true},
    {"{\"arguments\": {\"id\": \"\"}}", R(.query = "id=1"), false},
    {"{\"arguments\": {\"id\": \"!\"}}", R(.query = "id=1"), true},
    {"{\"arguments\": {\"id\": \"!\"}}", R(.query = "x=1"), false},
    {"{\"arguments\": {\"name\": \"John Doe\"}}", R(.query = "name=John+Doe"),
     true},
    {"{\"arguments\": {\"name\": \"John Doe\"}}", R(.query = "name=John%20Doe"),
     true},
    {"{\"arguments\": {\"name\": \"John+Doe\"}}", R(.query = "name=John%20Doe"),
     true},
    {"{\"arguments\": {\"na me\": \"x\"}}", R(.query = "na+me=x"), true},
    {"{\"arguments\": {\"na%20me\": \"x\"}}", R(.query = "na%20me=x"), true},
    {"{\"arguments\": {\"na+me\": \"x\"}}", R(.query = "na%20me=x"), true},
    {"{\"arguments\": {\"a=b\": \"c\"}}", R(.query = "a%3Db=c"), true},
    {"{\"arguments\": {\"a\": \"b=c\"}}", R(.query = "a=b=c"), true},
    {"{\"arguments\": {\"a\": \"b&c\"}}", R(.query = "a=b%26c"), true},
    {"{\"arguments\": {\"a\": \"b&c\"}}", R(.query = "a=b&c"), false},
    {"{\"arguments\": {\"Mode\": \"x\"}}", R(.query = "mode=x"), false},
    {"{\"arguments\": {\"mode\": \"X\"}}", R(.query = "mode=x"), false},
    {"{\"arguments\": {\"mode\": \"~^[a-z]+$\"}}", R(.query = "mode=abc"),
     true},
    {"{\"arguments\": {\"mode\": \"~^[a-z]+$\"}}", R(.query = "mode=ab1"),
     false},
    {"{\"arguments\": {\"mode\": [\"strict\", \"relaxed\"]}}",
     R(.query = "mode=relaxed"), true},
    {"{\"arguments\": {\"mode\": [\"strict\", \"relaxed\"]}}",
     R(.query = "mode=x"), false},
    {"{\"arguments\": {\"mode\": \"*ict\"}}", R(.query = "mode=str%69ct"),
     true},
    {"{\"arguments\": {}}", R(.query = "a=1"), true},
    {"{\"arguments\": {}}", R(), true},
    {"{\"arguments\": []}", R(), true},
    {"{\"arguments\": {\"q\": \"x\"}}", R(.query = "=y&q=x"), true},
    {"{\"arguments\": {\"q\": \"x\"}}", R(.query = "&&q=x&&"), true},
    {"{\"arguments\": {\"q\": \"%25\"}}", R(.query = "q=%"), true},
    {"{\"arguments\": {\"q\": \"a%25b\"}}", R(.query = "q=a%b"), true},
    {"{\"headers\": [{\"Accept-Encoding\": \"*gzip*\", \"User-Agent\": "
     "\"Mozilla/5.0*\"}, {\"User-Agent\": \"curl*\"}]}",
     R(.headers =
           "Accept-Encoding: gzip, deflate\nUser-Agent: Mozilla/5.0 (X11)"),
     true},
    {"{\"headers\": [{\"Accept-Encoding\": \"*gzip*\", \"User-Agent\": "
     "\"Mozilla/5.0*\"}, {\"User-Agent\": \"curl*\"}]}",
     R(.headers = "Accept-Encoding: br\nUser-Agent: Mozilla/5.0 (X11)"), false},
    {"{\"headers\": [{\"Accept-Encoding\": \"*gzip*\", \"User-Agent\": "
     "\"Mozilla/5.0*\"}, {\"User-Agent\": \"curl*\"}]}",
     R(.headers = "User-Agent: curl/8.0"), true},
    {"{\"headers\": [{\"Accept-Encoding\": \"*gzip*\", \"User-Agent\": "
     "\"Mozilla/5.0*\"}, {\"User-Agent\": \"curl*\"}]}",
     R(.headers = "user-agent: CURL/8.0"), true},
    {"{\"headers\": [{\"Accept-Encoding\": \"*gzip*\", \"User-Agent\": "
     "\"Mozilla/5.0*\"}, {\"User-Agent\": \"curl*\"}]}",
     R(.headers = "User-Agent: wget"), false},
    {"{\"headers\": [{\"Accept-Encoding\": \"*gzip*\", \"User-Agent\": "
     "\"Mozilla/5.0*\"}, {\"User-Agent\": \"curl*\"}]}",
     R(), false},
    {"{\"headers\": {\"X-Forwarded-For\": \"*\"}}",
     R(.headers = "x-forwarded-for: 1.2.3.4"), true},
    {"{\"headers\": {\"X-Forwarded-For\": \"*\"}}",
     R(.headers = "X-Forwarded-Host: a"), false},
    {"{\"headers\": {\"X-Forwarded-For\": \"!*\"}}", R(), false},
    {"{\"headers\": {\"X-Debug\": \"!1\"}}", R(), false},
    {"{\"headers\": {\"X-Debug\": \"!1\"}}", R(.headers = "X-Debug: 0"), true},
    {"{\"headers\": {\"X-Debug\": \"!1\"}}", R(.headers = "X-Debug: 1"), false},
    {"{\"headers\": {\"X-A\": \"1\"}}", R(.headers = "X-A: 1\nX-A: 2"), false},
    {"{\"headers\": {\"X-A\": [\"1\", \"2\"]}}", R(.headers = "X-A: 1\nX-A: 2"),
     true},
    {"{\"headers\": {\"Accept\": \"*text/html*\"}}",
     R(.headers = "Accept: TEXT/HTML,application/xhtml+xml"), true},
    {"{\"headers\": {\"Accept\": \"text/html\"}}",
     R(.headers = "Accept: Text/Html"), true},
    {"{\"headers\": {\"x_a\": \"1\"}}", R(.headers = "X-A: 1"), false},
    {"{\"headers\": {\"Host\": \"example.com\"}}",
     R(.headers = "Host: example.com"), true},
    {"{\"headers\": {\"Content-Type\": \"~^application/json\"}}",
     R(.headers = "Content-Type: application/json; charset=utf-8"), true},
    {"{\"headers\": {\"Content-Type\": \"~^application/json\"}}",
     R(.headers = "Content-Type: Application/JSON"), false},
    {"{\"headers\": {\"A\": \"1\", \"B\": \"2\"}}", R(.headers = "B: 2\nA: 1"),
     true},
    {"{\"headers\": {\"A\": \"1\", \"B\": \"2\"}}", R(.headers = "A: 1"),
     false},
    {"{\"headers\": [{\"A\": \"1\"}, {\"B\": \"2\"}]}", R(.headers = "B: 2"),
     true},
    {"{\"headers\": []}", R(), true},
    {"{\"headers\": {}}", R(), true},
    {"{\"headers\": {\"A\": \"\"}}", R(.headers = "A: "), true},
    {"{\"headers\": {\"A\": \"%20\"}}", R(.headers = "A:  "), false},
    {"{\"headers\": {\"A\": \"%20\"}}", R(.headers = "A: %20"), true},
    {"{\"cookies\": {\"user_role\": \"admin\"}}",
     R(.headers = "Cookie: user_role=admin"), true},
    {"{\"cookies\": {\"user_role\": \"admin\"}}",
     R(.headers = "Cookie: user_role=Admin"), false},
    {"{\"cookies\": {\"user_role\": \"admin\"}}",
     R(.headers = "Cookie: User_Role=admin"), false},
    {"{\"cookies\": {\"user_role\": \"admin\"}}", R(), false},
    {"{\"cookies\": {\"user_role\": \"admin\"}}",
     R(.headers = "Cookie: a=1; user_role=admin; b=2"), true},
    {"{\"cookies\": {\"user_role\": \"admin\"}}",
     R(.headers = "Cookie: a=1\nCookie: user_role=admin"), true},
    {"{\"cookies\": {\"user_role\": \"admin\"}}",
     R(.headers = "Cookie: user_role=admin\nCookie: user_role=guest"), false},
    {"{\"cookies\": {\"user_role\": \"admin\"}}",
     R(.headers = "cookie:    user_role=admin   "), true},
    {"{\"cookies\": {\"user_role\": \"admin\"}}",
     R(.headers = "Cookie: user_role=admin;"), true},
    {"{\"cookies\": {\"user_role\": \"admin\"}}",
     R(.headers = "Cookie: user_role"), false},
    {"{\"cookies\": {\"s\": \"a=b\"}}", R(.headers = "Cookie: s=a=b"), true},
    {"{\"cookies\": {\"s\": \"a%20b\"}}", R(.headers = "Cookie: s=a%20b"),
     true},
    {"{\"cookies\": {\"s\": \"a b\"}}", R(.headers = "Cookie: s=a%20b"), false},
    {"{\"cookies\": [{\"session\": \"*\"}, {\"user\": \"guest\"}]}",
     R(.headers = "Cookie: session=xyz"), true},
    {"{\"cookies\": [{\"session\": \"*\"}, {\"user\": \"guest\"}]}",
     R(.headers = "Cookie: user=guest"), true},
    {"{\"cookies\": [{\"session\": \"*\"}, {\"user\": \"guest\"}]}",
     R(.headers = "Cookie: user=admin"), false},
    {"{\"cookies\": {\"session\": \"!\"}}", R(.headers = "Cookie: session=1"),
     true},
    {"{\"cookies\": {\"session\": \"!\"}}", R(.headers = "Cookie: session="),
     false},
    {"{\"cookies\": {\"id\": \"~^[0-9]+$\"}}", R(.headers = "Cookie: id=123"),
     true},
    {"{\"cookies\": {\"id\": \"~^[0-9]+$\"}}", R(.headers = "Cookie: id=12a"),
     false},
    {"{\"cookies\": {\"Cookie\": \"*\"}}", R(.headers = "Cookie: x=1"), false},
    {"{\"scheme\": \"http\"}", R(), true},
    {"{\"scheme\": \"http\"}", R(.tls = true), false},
    {"{\"scheme\": \"https\"}", R(.tls = true), true},
    {"{\"scheme\": \"https\"}", R(), false},
    {"{\"scheme\": \"HTTPS\"}", R(.tls = true), true},
    {"{\"scheme\": \"Http\"}", R(), true},
    {"{\"source\": [\"10.0.0.0/8\", \"10.0.0.0/7:1000\", "
     "\"10.0.0.0/32:8080-8090\"]}",
     R(.src = "10.1.2.3:5000"), true},
    {"{\"source\": [\"10.0.0.0/8\", \"10.0.0.0/7:1000\", "
     "\"10.0.0.0/32:8080-8090\"]}",
     R(.src = "11.0.0.1:1000"), true},
    {"{\"source\": [\"10.0.0.0/8\", \"10.0.0.0/7:1000\", "
     "\"10.0.0.0/32:8080-8090\"]}",
     R(.src = "11.0.0.1:1001"), false},
    {"{\"source\": [\"10.0.0.0/8\", \"10.0.0.0/7:1000\", "
     "\"10.0.0.0/32:8080-8090\"]}",
     R(.src = "192.168.0.1:8080"), false},
    {"{\"source\": [\"10.0.0.0/8\", \"10.0.0.0/7:1000\", "
     "\"10.0.0.0/32:8080-8090\"]}",
     R(.src = "[::1]:5000"), false},
    {"{\"source\": [\"10.0.0.0/8\", \"10.0.0.0/7:1000\", "
     "\"10.0.0.0/32:8080-8090\"]}",
     R(.src = "unix"), false},
    {"{\"source\": \"!192.168.1.1\"}", R(.src = "192.168.1.1:80"), false},
    {"{\"source\": \"!192.168.1.1\"}", R(.src = "192.168.1.2:80"), true},
    {"{\"source\": \"!192.168.1.1\"}", R(.src = "[::1]:80"), true},
    {"{\"source\": \"!192.168.1.1\"}", R(.src = "unix"), true},
    {"{\"source\": [\"!10.1.1.0/16\", \"10.1.1.0/8\"]}", R(.src = "10.1.2.3:1"),
     false},
    {"{\"source\": [\"!10.1.1.0/16\", \"10.1.1.0/8\"]}", R(.src = "10.2.0.1:1"),
     true},
    {"{\"source\": [\"!10.1.1.0/16\", \"10.1.1.0/8\"]}", R(.src = "11.0.0.1:1"),
     false},
    {"{\"source\": \"10.0.0.1-10.0.0.9\"}", R(.src = "10.0.0.1:1"), true},
    {"{\"source\": \"10.0.0.1-10.0.0.9\"}", R(.src = "10.0.0.5:1"), true},
    {"{\"source\": \"10.0.0.1-10.0.0.9\"}", R(.src = "10.0.0.9:1"), true},
    {"{\"source\": \"10.0.0.1-10.0.0.9\"}", R(.src = "10.0.0.10:1"), false},
    {"{\"source\": \"10.0.0.1-10.0.0.9\"}", R(.src = "10.0.0.0:1"), false},
    {"{\"source\": \"*:80-90\"}", R(.src = "1.2.3.4:85"), true},
    {"{\"source\": \"*:80-90\"}", R(.src = "[::1]:80"), true},
    {"{\"source\": \"*:80-90\"}", R(.src = "1.2.3.4:91"), false},
    {"{\"source\": \"*:80-90\"}", R(.src = "unix"), false},
    {"{\"source\": \"unix\"}", R(.src = "unix"), true},
    {"{\"source\": \"unix\"}", R(.src = "127.0.0.1:1"), false},
    {"{\"source\": \"!unix\"}", R(.src = "unix"), false},
    {"{\"source\": \"!unix\"}", R(.src = "127.0.0.1:1"), true},
    {"{\"source\": \"127.0.0.1\"}", R(.src = "127.0.0.1:9999"), true},
    {"{\"source\": \"127.0.0.1:80\"}", R(.src = "127.0.0.1:9999"), false},
    {"{\"source\": \"0.0.0.0/0\"}", R(.src = "8.8.8.8:1"), true},
    {"{\"source\": \"0.0.0.0/0\"}", R(.src = "[::1]:1"), false},
    {"{\"source\": \"1.2.3.4/32\"}", R(.src = "1.2.3.4:1"), true},
    {"{\"source\": \"1.2.3.4/32\"}", R(.src = "1.2.3.5:1"), false},
    {"{\"source\": \"1.2.3.77/24\"}", R(.src = "1.2.3.200:1"), true},
    {"{\"source\": \"1.2.3.77/25\"}", R(.src = "1.2.3.200:1"), false},
    {"{\"source\": \"::1\"}", R(.src = "[::1]:5"), true},
    {"{\"source\": \"::1\"}", R(.src = "127.0.0.1:5"), false},
    {"{\"source\": \"[::1]:80\"}", R(.src = "[::1]:80"), true},
    {"{\"source\": \"[::1]:80\"}", R(.src = "[::1]:81"), false},
    {"{\"source\": \"[::1]:80-81\"}", R(.src = "[::1]:81"), true},
    {"{\"source\": \"fe80::/10\"}", R(.src = "[fe80::1234]:1"), true},
    {"{\"source\": \"fe80::/10\"}", R(.src = "[febf::1]:1"), true},
    {"{\"source\": \"fe80::/10\"}", R(.src = "[fec0::1]:1"), false},
    {"{\"source\": \"2001:db8::/32\"}", R(.src = "[2001:db8:1::5]:1"), true},
    {"{\"source\": \"2001:db8::1-2001:db8::ff\"}", R(.src = "[2001:db8::80]:1"),
     true},
    {"{\"source\": \"2001:db8::1-2001:db8::ff\"}",
     R(.src = "[2001:db8::100]:1"), false},
    {"{\"source\": \"::/0\"}", R(.src = "[2001:db8::1]:1"), true},
    {"{\"source\": \"::/0\"}", R(.src = "10.0.0.1:1"), false},
    {"{\"source\": []}", R(.src = "10.0.0.1:1"), false},
    {"{\"source\": [\"!10.0.0.1\"]}", R(.src = "10.0.0.2:1"), true},
    {"{\"destination\": [\"10.0.0.0/8\", \"fe80::/10\", \"::1\", "
     "\"127.0.0.1:80\"]}",
     R(.dst = "127.0.0.1:80"), true},
    {"{\"destination\": [\"10.0.0.0/8\", \"fe80::/10\", \"::1\", "
     "\"127.0.0.1:80\"]}",
     R(.dst = "127.0.0.1:8080"), false},
    {"{\"destination\": [\"10.0.0.0/8\", \"fe80::/10\", \"::1\", "
     "\"127.0.0.1:80\"]}",
     R(.dst = "10.9.9.9:443"), true},
    {"{\"destination\": [\"10.0.0.0/8\", \"fe80::/10\", \"::1\", "
     "\"127.0.0.1:80\"]}",
     R(.dst = "[::1]:8080"), true},
    {"{\"destination\": [\"10.0.0.0/8\", \"fe80::/10\", \"::1\", "
     "\"127.0.0.1:80\"]}",
     R(.dst = "[fe80::1]:80"), true},
    {"{\"destination\": \"*:443\"}", R(.dst = "10.0.0.1:443"), true},
    {"{\"destination\": \"*:443\"}", R(.dst = "10.0.0.1:80"), false},
    {"{\"destination\": \"unix\"}", R(.dst = "unix"), true},
    {"{\"destination\": \"!*:8000-8999\"}", R(.dst = "1.1.1.1:80"), true},
    {"{\"destination\": \"!*:8000-8999\"}", R(.dst = "1.1.1.1:8080"), false},
    {"{\"if\": \"$arg_debug\"}", R(.query = "debug=1"), true},
    {"{\"if\": \"$arg_debug\"}", R(.query = "debug=0"), false},
    {"{\"if\": \"$arg_debug\"}", R(.query = "debug="), false},
    {"{\"if\": \"$arg_debug\"}", R(), false},
    {"{\"if\": \"$arg_debug\"}", R(.query = "debug=false"), false},
    {"{\"if\": \"$arg_debug\"}", R(.query = "debug=null"), false},
    {"{\"if\": \"$arg_debug\"}", R(.query = "debug=undefined"), false},
    {"{\"if\": \"$arg_debug\"}", R(.query = "debug=00"), true},
    {"{\"if\": \"$arg_debug\"}", R(.query = "debug=False"), true},
    {"{\"if\": \"$arg_debug\"}", R(.query = "debug=%20"), true},
    {"{\"if\": \"!$arg_debug\"}", R(), true},
    {"{\"if\": \"!$arg_debug\"}", R(.query = "debug=yes"), false},
    {"{\"if\": \"${cookie_session}\"}", R(.headers = "Cookie: session=abc"),
     true},
    {"{\"if\": \"${cookie_session}\"}", R(.headers = "Cookie: other=abc"),
     false},
    {"{\"if\": \"$header_x_api_key\"}", R(.headers = "X-Api-Key: k"), true},
    {"{\"if\": \"!$header_authorization\"}", R(), true},
    {"{\"if\": \"!$header_authorization\"}",
     R(.headers = "Authorization: Bearer x"), false},
    {"{\"if\": \"0\"}", R(), false},
    {"{\"if\": \"1\"}", R(), true},
    {"{\"if\": \"\"}", R(), false},
    {"{\"if\": \"!\"}", R(), true},
    {"{\"if\": \"!0\"}", R(), true},
    {"{\"if\": \"!1\"}", R(), false},
    {"{\"if\": \"false\"}", R(), false},
    {"{\"if\": \"$host\"}", R(), true},
    {"{\"if\": \"$host\"}", R(.host = ""), false},
    {"{\"if\": \"${arg_a}${arg_b}\"}", R(), false},
    {"{\"if\": \"${arg_a}${arg_b}\"}", R(.query = "b=x"), true},
    {"{\"if\": \"${arg_a}${arg_b}\"}", R(.query = "a=0"), false},
    {"{\"if\": \"${arg_a}${arg_b}\"}", R(.query = "a=0&b=0"), true},
    {"{\"if\": \"$dollar\"}", R(), true},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.host = "example.com", .uri = "/api/x", .query = "v=2",
       .headers = "Accept: application/json\nCookie: s=1"),
     true},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.host = "example.org", .uri = "/api/x", .query = "v=2",
       .headers = "Accept: application/json\nCookie: s=1"),
     false},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.host = "example.com", .uri = "/x", .query = "v=2",
       .headers = "Accept: application/json\nCookie: s=1"),
     false},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.method = "PUT", .host = "example.com", .uri = "/api/x", .query = "v=2",
       .headers = "Accept: application/json\nCookie: s=1"),
     false},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.host = "example.com", .uri = "/api/x", .query = "v=3",
       .headers = "Accept: application/json\nCookie: s=1"),
     false},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.host = "example.com", .uri = "/api/x", .query = "v=2",
       .headers = "Accept: text/html\nCookie: s=1"),
     false},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.host = "example.com", .uri = "/api/x", .query = "v=2",
       .headers = "Accept: application/json"),
     false},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.host = "example.com", .uri = "/api/x", .query = "v=2",
       .headers = "Accept: application/json\nCookie: s=1", .tls = true),
     false},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.host = "example.com", .uri = "/api/x", .query = "v=2",
       .headers = "Accept: application/json\nCookie: s=1",
       .src = "198.51.100.1:1"),
     false},
    {"{\"host\": \"example.com\", \"uri\": \"/api/*\", \"method\": [\"GET\", "
     "\"POST\"], \"query\": \"*\", \"headers\": {\"Accept\": \"*json*\"}, "
     "\"arguments\": {\"v\": \"2\"}, \"cookies\": {\"s\": \"*\"}, \"scheme\": "
     "\"http\", \"source\": \"192.0.2.0/24\", \"destination\": \"*:80\", "
     "\"if\": \"$arg_v\"}",
     R(.host = "example.com", .uri = "/api/x", .query = "v=2",
       .headers = "Accept: application/json\nCookie: s=1",
       .dst = "127.0.0.1:8080"),
     false},
};

static bool
match_one(wf_arena_t *a, const char *match, const treq_t *t, char *err,
          size_t errlen)
{
    static const wf_action_t act = {.type = WF_ACTION_RETURN, .status = 200};
    json_t *m = json_loads(match, 0, NULL);
    wf_route_t *r = wf_route_create(a, "t");
    treq_buf_t *b = malloc(sizeof(*b));
    bool ok;

    assert_non_null(m);
    assert_non_null(b);
    if (wf_route_add_step(r, a, m, &act, err, errlen) != WF_OK) {
        print_message("%s: %s\n", match, err);
        fail();
    }
    treq_build(b, t);
    ok = wf_route_match(r, &b->rq) != NULL;
    json_decref(m);
    free(b);
    return ok;
}

static void
test_requests(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(req_rows); i++) {
        char err[256] = "";
        bool ok =
            match_one(a, req_rows[i].match, &req_rows[i].req, err, sizeof(err));

        if (ok != req_rows[i].ok) {
            print_message("row %zu: %s -> %d\n", i, req_rows[i].match, ok);
        }
        assert_int_equal(ok, req_rows[i].ok);
    }
    wf_arena_destroy(a);
}

/* The index must give what a linear scan gives: for every request, the
 * first step whose own one-step route matches. */
static void
test_index_order(void **state)
{
    static const char *const matches[] = {
        "{\"host\": \"a.com\", \"uri\": \"/x\"}",
        "{\"uri\": \"/x\"}",
        "{\"host\": \"b.com\"}",
        "{\"method\": \"POST\"}",
        "{\"host\": [\"a.com\", \"c.com\"], \"uri\": [\"/y\", \"/x\"]}",
        "{\"host\": \"*.com\", \"uri\": \"/z\"}",
        "{\"host\": \"A.COM\"}",
        "{\"uri\": [\"/y\", \"/y\"]}",
        "{\"host\": \"c.com\", \"uri\": \"/x\", \"method\": \"PUT\"}",
        "{\"host\": \"b.com\", \"uri\": \"!/x\"}",
        "{\"uri\": \"/x\", \"host\": \"c.com\"}",
        "{\"host\": \"\"}",
        "{}",
    };
    static const char *const hosts[] = {"a.com", "A.com",  "b.com", "c.com",
                                        "d.com", "c.com.", ""};
    static const char *const uris[] = {"/x", "/y", "/z", "/", "/X"};
    static const char *const methods[] = {"GET", "POST", "PUT"};
    wf_arena_t *a = wf_arena_create(4096);
    static wf_action_t acts[wf_nitems(matches)];
    wf_route_t *all = wf_route_create(a, "all");
    wf_route_t *one[wf_nitems(matches)];
    char err[256];

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(matches); i++) {
        json_t *m = json_loads(matches[i], 0, NULL);

        acts[i].status = (unsigned)i;
        one[i] = wf_route_create(a, "one");
        assert_int_equal(wf_route_add_step(all, a, m, &acts[i], err, 256),
                         WF_OK);
        assert_int_equal(wf_route_add_step(one[i], a, m, &acts[i], err, 256),
                         WF_OK);
        json_decref(m);
    }
    for (size_t h = 0; h < wf_nitems(hosts); h++) {
        for (size_t u = 0; u < wf_nitems(uris); u++) {
            for (size_t k = 0; k < wf_nitems(methods); k++) {
                wf_route_req_t rq = req_make(methods[k], hosts[h], uris[u]);
                const wf_action_t *want = NULL;

                for (size_t i = 0; i < wf_nitems(matches) && want == NULL;
                     i++) {
                    want = wf_route_match(one[i], &rq);
                }
                assert_ptr_equal(wf_route_match(all, &rq), want);
            }
        }
    }
    wf_arena_destroy(a);
}

static double
bench_rate(const wf_route_t *r, const wf_route_req_t *rq, unsigned n)
{
    struct timespec t0, t1;
    volatile const wf_action_t *sink = NULL;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < n; i++) {
        sink = wf_route_match(r, rq);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null((const void *)sink);
    return n / ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}

/* 1000 steps on distinct host/uri literals: matching the last costs what
 * matching the first does.  Prints the rates; does not assert them. */
static void
test_bench_1000(void **state)
{
    wf_arena_t *a = wf_arena_create(65536);
    wf_route_t *r = wf_route_create(a, "");
    static wf_action_t acts[1000];
    char first_host[32], last_host[32];
    wf_route_req_t first, last;
    double rf, rl;

    wf_unused(state);
    for (unsigned i = 0; i < 1000; i++) {
        char text[128], err[256];
        json_t *m;

        acts[i].status = 204;
        snprintf(text, sizeof(text),
                 "{\"host\": \"h%u.example\", \"uri\": \"/p%u\"}", i, i);
        m = json_loads(text, 0, NULL);
        assert_int_equal(wf_route_add_step(r, a, m, &acts[i], err, 256), WF_OK);
        json_decref(m);
    }
    snprintf(first_host, sizeof(first_host), "h0.example");
    snprintf(last_host, sizeof(last_host), "h999.example");
    first = req_make("GET", first_host, "/p0");
    last = req_make("GET", last_host, "/p999");
    assert_ptr_equal(wf_route_match(r, &first), &acts[0]);
    assert_ptr_equal(wf_route_match(r, &last), &acts[999]);
    rf = bench_rate(r, &first, 200000);
    rl = bench_rate(r, &last, 200000);
    print_message("route bench: first %.0f/s, last %.0f/s, last/first %.2f\n",
                  rf, rl, rl / rf);
    wf_arena_destroy(a);
}

/* ---- templates --------------------------------------------------------- */

static const struct {
    const char *tpl;
    const char *out; /* NULL: compile error */
    const char *err; /* substring, when out is NULL */
    bool is_const;
} tpl_rows[] = {
    {"", "", NULL, true},
    {"/srv/www", "/srv/www", NULL, true},
    {"/srv/www$uri", "/srv/www/a/b.html", NULL, false},
    {"/srv/www${uri}", "/srv/www/a/b.html", NULL, false},
    {"/srv/${host}${uri}", "/srv/Example.com/a/b.html", NULL, false},
    {"/srv/$host/x", "/srv/Example.com/x", NULL, false},
    {"$uri", "/a/b.html", NULL, false},
    {"$uri$uri", "/a/b.html/a/b.html", NULL, false},
    {"https://${host}$uri?x", "https://Example.com/a/b.html?x", NULL, false},
    {"$method:$uri", "GET:/a/b.html", NULL, false},
    {"cost: $dollar5", NULL, "Unknown variable \"dollar5\"", false},
    {"cost: ${dollar}5", "cost: $5", NULL, false},
    {"$dollar$dollar", "$$", NULL, false},
    {"$request_uri", "", NULL, false},
    {"$foo", NULL, "Unknown variable \"foo\"", false},
    {"/a${bar}", NULL, "Unknown variable \"bar\"", false},
    {"$URI", NULL, "Unknown variable \"URI\"", false},
    {"$", NULL, "Invalid variable at position 0", false},
    {"/a$", NULL, "Invalid variable at position 2", false},
    {"/a$/b", NULL, "Invalid variable at position 2", false},
    {"${uri", NULL, "Invalid variable at position 0", false},
    {"${}", NULL, "Invalid variable at position 0", false},
    {"${u-ri}", NULL, "Invalid variable at position 0", false},
    {"$remote_addr", "", NULL, false},
    {"$header_accept", "", NULL, false},
    {"$arg_id", "", NULL, false},
    {"$cookie_sid", "", NULL, false},
    {"$response_header_x", "", NULL, false}, /* no response yet */
    {"`${uri}`", NULL, "not supported yet", false},
    {"$uri.bak", "/a/b.html.bak", NULL, false},
    {"$uri_x", NULL, "Unknown variable \"uri_x\"", false},
    {"${uri}_x", "/a/b.html_x", NULL, false},
};

static void
test_templates(void **state)
{
    wf_arena_t *a = wf_arena_create(1024);
    wf_route_req_t rq = req_make("GET", "Example.com", "/a/b.html");

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(tpl_rows); i++) {
        char err[256] = "";
        char out[256];
        wf_tpl_t *t = wf_tpl_compile(a, tpl_rows[i].tpl,
                                     strlen(tpl_rows[i].tpl), err, sizeof(err));
        size_t n;

        if (tpl_rows[i].out == NULL) {
            if (t != NULL || strstr(err, tpl_rows[i].err) == NULL) {
                print_message("row %zu: %s\n", i, err);
            }
            assert_null(t);
            assert_non_null(strstr(err, tpl_rows[i].err));
            continue;
        }
        if (t == NULL) {
            print_message("row %zu: %s\n", i, err);
        }
        assert_non_null(t);
        assert_int_equal(wf_tpl_is_const(t), tpl_rows[i].is_const);
        n = wf_tpl_render(t, &rq, out, sizeof(out));
        assert_int_equal(n, strlen(tpl_rows[i].out));
        out[n] = '\0';
        assert_string_equal(out, tpl_rows[i].out);
    }
    wf_arena_destroy(a);
}

/* A short buffer gets a prefix; the return value is the full length. */
static void
test_template_truncation(void **state)
{
    wf_arena_t *a = wf_arena_create(1024);
    wf_route_req_t rq = req_make("GET", "host", "/0123456789");
    char err[256];
    char out[8];
    wf_tpl_t *t = wf_tpl_compile(a, "/srv$uri", 8, err, sizeof(err));

    wf_unused(state);
    assert_non_null(t);
    memset(out, 'X', sizeof(out));
    assert_int_equal(wf_tpl_render(t, &rq, out, 6), 15);
    assert_memory_equal(out, "/srv/0XX", 8);
    assert_int_equal(wf_tpl_render(t, &rq, NULL, 0), 15);
    assert_int_equal(wf_tpl_render(t, &rq, out, 4), 15);
    assert_memory_equal(out, "/srv", 4);
    wf_arena_destroy(a);
}

int
wf_test_route(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_table),
        cmocka_unit_test(test_pattern_errors),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_match_errors),
        cmocka_unit_test(test_step_order),
        cmocka_unit_test(test_many_steps),
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_index_order),
        cmocka_unit_test(test_bench_1000),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_template_truncation),
    };

    return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
