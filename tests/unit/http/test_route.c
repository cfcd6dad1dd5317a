/* Route matching: Unit's patterns, match fields, step order, templates. */
#include <stdio.h>
#include <string.h>

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
    {"$response_header_x", NULL, "not supported yet", false},
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
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_template_truncation),
    };

    return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
