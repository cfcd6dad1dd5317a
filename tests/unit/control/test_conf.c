/* Config snapshots: Unit configs that compile, the messages of those that
 * do not, defaults, and the real-world configs in shared/unit-configs. */
#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/conf.h"
#include "core/common.h"
#include "http/mime.h"
#include "unit.h"

static wf_conf_t *
conf_text(const char *text, wf_conf_error_t *err)
{
    return wf_conf_load(text, strlen(text), err);
}

static wf_conf_t *
conf_ok(const char *text)
{
    wf_conf_error_t err;
    wf_conf_t *conf = conf_text(text, &err);

    if (conf == NULL) {
        print_message("unexpected error: %s %s\n", err.error, err.detail);
    }
    assert_non_null(conf);
    return conf;
}

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

static void
test_empty(void **state)
{
    wf_conf_t *conf;

    wf_unused(state);
    conf = conf_ok("{}");
    assert_int_equal(conf->nlisteners, 0);
    assert_int_equal(conf->nroutes, 0);
    assert_non_null(conf->json);
    assert_non_null(conf->http.mime);
    wf_conf_destroy(conf);
    wf_conf_destroy(NULL);
    /* Unit's initial config */
    conf = conf_ok("{\"listeners\": {}, \"routes\": [], \"applications\": {}}");
    assert_int_equal(conf->nlisteners, 0);
    assert_int_equal(conf->nroutes, 1);
    wf_conf_destroy(conf);
}

static void
test_defaults(void **state)
{
    wf_conf_t *conf;

    wf_unused(state);
    conf = conf_ok("{\"settings\": {\"http\": {}}}");
    assert_int_equal(conf->http.header_read_timeout_ms, 30000);
    assert_int_equal(conf->http.body_read_timeout_ms, 30000);
    assert_int_equal(conf->http.send_timeout_ms, 30000);
    assert_int_equal(conf->http.idle_timeout_ms, 180000);
    assert_int_equal(conf->http.max_body_size, 8388608);
    assert_int_equal(conf->http.body_buffer_size, 16384);
    assert_int_equal(conf->http.large_header_buffer_size, 8192);
    assert_int_equal(conf->http.large_header_buffers, 4);
    assert_true(conf->http.discard_unsafe_fields);
    assert_true(conf->http.server_version);
    wf_conf_destroy(conf);
}

static void
test_settings(void **state)
{
    wf_conf_t *conf;
    static const char text[] =
        "{\"settings\": {\"http\": {"
        "\"header_read_timeout\": 1, \"body_read_timeout\": 2,"
        "\"send_timeout\": 3, \"idle_timeout\": 0,"
        "\"max_body_size\": 22020096, \"body_buffer_size\": 1,"
        "\"large_header_buffer_size\": 4096, \"large_header_buffers\": 8,"
        "\"discard_unsafe_fields\": false, \"server_version\": false,"
        "\"static\": {\"mime_types\": {"
        "  \"text/x-foo\": \".foo\","
        "  \"text/x-bar\": [\".bar\", \".baz\"],"
        "  \"text/plain\": [\"README\"]}}}}}";

    wf_unused(state);
    conf = conf_ok(text);
    assert_int_equal(conf->http.header_read_timeout_ms, 1000);
    assert_int_equal(conf->http.body_read_timeout_ms, 2000);
    assert_int_equal(conf->http.send_timeout_ms, 3000);
    assert_int_equal(conf->http.idle_timeout_ms, 0);
    assert_int_equal(conf->http.max_body_size, 22020096);
    assert_int_equal(conf->http.body_buffer_size, 1);
    assert_int_equal(conf->http.large_header_buffer_size, 4096);
    assert_int_equal(conf->http.large_header_buffers, 8);
    assert_false(conf->http.discard_unsafe_fields);
    assert_false(conf->http.server_version);
    assert_int_equal(wf_mime_lookup(conf->http.mime, wf_string("/a.foo")).len,
                     strlen("text/x-foo"));
    assert_memory_equal(
        wf_mime_lookup(conf->http.mime, wf_string("/x/a.baz")).data,
        "text/x-bar", 10);
    wf_conf_destroy(conf);
    conf = conf_ok("{\"settings\": {\"http\": {\"idle_timeout\": 2147483}}}");
    assert_int_equal(conf->http.idle_timeout_ms, 2147483000u);
    wf_conf_destroy(conf);
}

static void
test_listeners(void **state)
{
    static const char text[] =
        "{\"listeners\": {"
        "  \"127.0.0.1:8080\": {\"pass\": \"routes\"},"
        "  \"*:80\": {\"pass\": \"routes\"},"
        "  \"[::1]:8443\": {\"pass\": \"routes\"},"
        "  \"[::]:81\": {\"pass\": \"routes\"},"
        "  \"unix:/run/wharf.sock\": {\"pass\": \"routes\"},"
        "  \"unix:@wharf\": {\"pass\": \"routes\"}"
        "}, \"routes\": []}";
    wf_conf_t *conf;
    const struct sockaddr_in *sin;
    const struct sockaddr_in6 *sin6;
    const struct sockaddr_un *sun;

    wf_unused(state);
    conf = conf_ok(text);
    assert_int_equal(conf->nlisteners, 6);
    for (size_t i = 0; i < conf->nlisteners; i++) {
        assert_ptr_equal(conf->listeners[i].pass, wf_conf_route(conf, ""));
    }
    assert_string_equal(conf->listeners[0].name, "127.0.0.1:8080");
    sin = (const struct sockaddr_in *)&conf->listeners[0].addr;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 8080);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(conf->listeners[0].addrlen, sizeof(*sin));
    sin = (const struct sockaddr_in *)&conf->listeners[1].addr;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 80);
    assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
    sin6 = (const struct sockaddr_in6 *)&conf->listeners[2].addr;
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(sin6->sin6_port), 8443);
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    assert_int_equal(conf->listeners[2].addrlen, sizeof(*sin6));
    sin6 = (const struct sockaddr_in6 *)&conf->listeners[3].addr;
    assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
    sun = (const struct sockaddr_un *)&conf->listeners[4].addr;
    assert_int_equal(sun->sun_family, AF_UNIX);
    assert_string_equal(sun->sun_path, "/run/wharf.sock");
    sun = (const struct sockaddr_un *)&conf->listeners[5].addr;
    assert_int_equal(sun->sun_path[0], '\0');
    assert_memory_equal(sun->sun_path + 1, "wharf", 5);
    assert_int_equal(conf->listeners[5].addrlen,
                     offsetof(struct sockaddr_un, sun_path) + 6);
    wf_conf_destroy(conf);
}

/* Passes resolve whatever the declaration order; actions compile. */
static void
test_routes(void **state)
{
    static const char text[] =
        "{\"listeners\": {\"*:8080\": {\"pass\": \"routes/main\"}},"
        " \"routes\": {"
        "  \"main\": ["
        "   {\"match\": {\"uri\": \"/old/*\"},"
        "    \"action\": {\"return\": 301, \"location\": "
        "\"https://$host$uri\"}},"
        "   {\"match\": {\"host\": \"api.*\"}, \"action\": {\"pass\": "
        "\"routes/api\"}},"
        "   {\"action\": {\"share\": [\"/srv/a$uri\", \"/srv/b$uri\"],"
        "                \"index\": \"default.htm\","
        "                \"types\": [\"text/*\", \"!text/x-*\"],"
        "                \"fallback\": {\"share\": \"/srv/c$uri\","
        "                              \"fallback\": {\"return\": 404}}}}],"
        "  \"api\": [{\"action\": {\"return\": 204}}]"
        " }}";
    wf_conf_t *conf;
    const wf_route_t *main_route, *api;
    const wf_action_t *act;
    wf_route_req_t rq;
    char buf[128];

    wf_unused(state);
    conf = conf_ok(text);
    assert_int_equal(conf->nroutes, 2);
    main_route = wf_conf_route(conf, "main");
    api = wf_conf_route(conf, "api");
    assert_non_null(main_route);
    assert_non_null(api);
    assert_null(wf_conf_route(conf, ""));
    assert_ptr_equal(conf->listeners[0].pass, main_route);

    rq = req_make("GET", "example.com", "/old/page");
    act = wf_route_match(main_route, &rq);
    assert_int_equal(act->type, WF_ACTION_RETURN);
    assert_int_equal(act->status, 301);
    buf[wf_tpl_render(act->location, &rq, buf, sizeof(buf))] = '\0';
    assert_string_equal(buf, "https://example.com/old/page");

    rq = req_make("GET", "API.example.com", "/v1");
    act = wf_route_match(main_route, &rq);
    assert_int_equal(act->type, WF_ACTION_PASS);
    assert_ptr_equal(act->route, api);
    assert_int_equal(wf_route_match(act->route, &rq)->status, 204);

    rq = req_make("GET", "example.com", "/x.html");
    act = wf_route_match(main_route, &rq);
    assert_int_equal(act->type, WF_ACTION_SHARE);
    assert_int_equal(act->nshares, 2);
    buf[wf_tpl_render(act->shares[1], &rq, buf, sizeof(buf))] = '\0';
    assert_string_equal(buf, "/srv/b/x.html");
    assert_true(act->index.len == 11
                && memcmp(act->index.data, "default.htm", 11) == 0);
    assert_true(wf_pattern_set_match(act->types, wf_string("TEXT/HTML")));
    assert_false(wf_pattern_set_match(act->types, wf_string("text/x-c")));
    assert_non_null(act->fallback);
    assert_int_equal(act->fallback->type, WF_ACTION_SHARE);
    assert_true(act->fallback->index.len == 10);
    assert_null(act->fallback->types);
    assert_int_equal(act->fallback->fallback->type, WF_ACTION_RETURN);
    assert_int_equal(act->fallback->fallback->status, 404);
    assert_null(act->fallback->fallback->fallback);
    wf_conf_destroy(conf);
}

/* A route may pass to itself or to a route that passes back: Unit accepts
 * it; the router bounds the chain at run time. */
static void
test_route_cycles(void **state)
{
    wf_conf_t *conf;

    wf_unused(state);
    conf =
        conf_ok("{\"routes\": {\"a\": [{\"action\": {\"pass\": \"routes/b\"}}],"
                " \"b\": [{\"action\": {\"pass\": \"routes/a\"}}]}}");
    wf_conf_destroy(conf);
    conf = conf_ok("{\"routes\": [{\"action\": {\"pass\": \"routes\"}}]}");
    wf_conf_destroy(conf);
}

static const struct {
    const char *text;
    const char *error;
    const char *detail; /* substring */
} bad_rows[] = {
    /* JSON */
    {"{", "Invalid JSON.", "expected"},
    {"{\"a\": 1, \"a\": 2}", "Invalid JSON.", "duplicate"},
    {"/* open", "Invalid JSON.", "comment"},
    /* root */
    {"[]", "Invalid configuration.",
     "The configuration must be an object, but not an array."},
    {"\"x\"", "Invalid configuration.", "must be an object, but not a string"},
    {"{\"listener\": {}}", "Invalid configuration.",
     "Unknown parameter \"listener\"."},
    {"{\"listeners\": []}", "Invalid configuration.",
     "The \"listeners\" value must be an object, but not an array."},
    {"{\"routes\": 1}", "Invalid configuration.",
     "The \"routes\" value must be either an array or an object, but not an "
     "integer number."},
    {"{\"settings\": null}", "Invalid configuration.",
     "The \"settings\" value must be an object, but not a null."},
    /* not supported yet */
    {"{\"applications\": {\"a\": {\"type\": \"python\"}}}",
     "Invalid configuration.", "Required parameter \"module\" is missing."},
    {"{\"upstreams\": {\"u\": {}}}", "Invalid configuration.",
     "The \"u\" upstream must contain \"servers\" object value."},
    /* access_log */
    {"{\"access_log\": {\"format\": \"x\"}}", "Invalid configuration.",
     "The \"path\" string must not be empty."},
    {"{\"access_log\": {\"path\": \"\"}}", "Invalid configuration.",
     "The \"path\" string must not be empty."},
    {"{\"access_log\": \"\"}", "Invalid configuration.",
     "The \"access_log\" path must not be empty."},
    {"{\"access_log\": {\"path\": \"/tmp/wf-al\", \"x\": 1}}",
     "Invalid configuration.", "Unknown parameter \"x\"."},
    {"{\"access_log\": {\"path\": \"/tmp/wf-al\", \"format\": 1}}",
     "Invalid configuration.",
     "The \"format\" value must be either a string or an object"},
    {"{\"access_log\": {\"path\": \"/tmp/wf-al\", \"format\": "
     "{\"\": \"$uri\"}}}",
     "Invalid configuration.",
     "In the access log format, the name must not be empty."},
    {"{\"access_log\": {\"path\": \"/tmp/wf-al\", \"format\": "
     "{\"a\": 1}}}",
     "Invalid configuration.",
     "In the access log format, the value must be a string."},
    {"{\"access_log\": {\"path\": \"/tmp/wf-al\", \"format\": "
     "\"$nope\"}}",
     "Invalid configuration.", "Unknown variable \"nope\""},
    {"{\"access_log\": {\"path\": \"/tmp/wf-al\", \"if\": \"$nope\"}}",
     "Invalid configuration.", "Unknown variable \"nope\""},
    {"{\"access_log\": {\"path\": \"/tmp/wf-al\", \"if\": 1}}",
     "Invalid configuration.", "The \"if\" value must be a string"},
    {"{\"access_log\": \"/nonexistent-wharf-dir/a.log\"}",
     "Invalid configuration.", "Failed to open the access log"},
    {"{\"access_log\": 1}", "Invalid configuration.",
     "must be either a string or an object"},
    {"{\"settings\": {\"listen_threads\": 2}}", "Invalid configuration.",
     "The \"listen_threads\" option is not supported yet."},
    {"{\"settings\": {\"js_module\": \"m\"}}", "Invalid configuration.",
     "not supported yet"},
    {"{\"settings\": {\"http\": {\"log_route\": 1}}}", "Invalid configuration.",
     "The \"log_route\" value must be a boolean"},
    {"{\"settings\": {\"http\": {\"chunked_transform\": \"y\"}}}",
     "Invalid configuration.",
     "The \"chunked_transform\" value must be a boolean"},
    {"{\"settings\": {\"http\": {\"websocket\": {\"max_frame_size\": "
     "30}}}}",
     "Invalid configuration.",
     "The \"max_frame_size\" option is not supported yet."},
    {"{\"settings\": {\"http\": {\"websocket\": {\"read_timeout\": -1}}}}",
     "Invalid configuration.",
     "The \"read_timeout\" number must not be negative."},
    {"{\"settings\": {\"http\": {\"body_temp_path\": \"/tmp\"}}}",
     "Invalid configuration.", "not supported yet"},
    {"{\"settings\": {\"http\": {\"compression\": {}}}}",
     "Invalid configuration.", "not supported yet"},
    /* settings */
    {"{\"settings\": {\"http\": {\"idle_timeout\": -1}}}",
     "Invalid configuration.",
     "The \"idle_timeout\" number must not be negative."},
    {"{\"settings\": {\"http\": {\"idle_timeout\": 2147484}}}",
     "Invalid configuration.",
     "The \"idle_timeout\" number must not exceed 2147483."},
    {"{\"settings\": {\"http\": {\"send_timeout\": 1.5}}}",
     "Invalid configuration.",
     "The \"send_timeout\" value must be an integer number, but not a "
     "fractional number."},
    {"{\"settings\": {\"http\": {\"header_read_timeout\": \"30\"}}}",
     "Invalid configuration.", "must be an integer number, but not a string"},
    {"{\"settings\": {\"http\": {\"max_body_size\": -5}}}",
     "Invalid configuration.", "\"max_body_size\" number must not be negative"},
    {"{\"settings\": {\"http\": {\"large_header_buffers\": 0}}}",
     "Invalid configuration.",
     "The \"large_header_buffers\" number must be equal to or greater than 1."},
    {"{\"settings\": {\"http\": {\"body_buffer_size\": 4294967296}}}",
     "Invalid configuration.", "\"body_buffer_size\" number must not exceed"},
    {"{\"settings\": {\"http\": {\"server_version\": 1}}}",
     "Invalid configuration.",
     "The \"server_version\" value must be a boolean, but not an integer "
     "number."},
    {"{\"settings\": {\"http\": {\"idle_timeouts\": 1}}}",
     "Invalid configuration.", "Unknown parameter \"idle_timeouts\"."},
    {"{\"settings\": {\"htttp\": {}}}", "Invalid configuration.",
     "Unknown parameter \"htttp\"."},
    {"{\"settings\": {\"http\": {\"static\": {\"mime_types\": {\"a/b\": 1}}}}}",
     "Invalid configuration.",
     "The \"a/b\" value must be either a string or an array, but not an "
     "integer number."},
    {"{\"settings\": {\"http\": {\"static\": {\"mime_types\": "
     "{\"a/b\": [1]}}}}}",
     "Invalid configuration.",
     "The \"a/b\" MIME type array must contain only strings."},
    {"{\"settings\": {\"http\": {\"static\": {\"mime_types\": "
     "{\"a/b\": \"\"}}}}}",
     "Invalid configuration.",
     "An empty file extension for the \"a/b\" MIME "
     "type."},
    {"{\"settings\": {\"http\": {\"static\": {\"mime_types\": "
     "{\"a/b\": \".x\", \"c/d\": [\".y\", \".X\"]}}}}}",
     "Invalid configuration.",
     "The \".X\" file extension has been declared for \"a/b\" and \"c/d\" "
     "MIME types at the same time."},
    {"{\"settings\": {\"http\": {\"static\": {\"types\": {}}}}}",
     "Invalid configuration.", "Unknown parameter \"types\"."},
    /* listeners */
    {"{\"listeners\": {\"127.0.0.1\": {\"pass\": \"routes\"}}, \"routes\": []}",
     "Invalid configuration.",
     "The listener address \"127.0.0.1\" is invalid."},
    {"{\"listeners\": {\"127.0.0.1:0\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "listener address \"127.0.0.1:0\" is invalid"},
    {"{\"listeners\": {\"127.0.0.1:65536\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"127.0.0.1:80x\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"127.0.0:80\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"localhost:80\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"::1:80\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"[::1]\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"[::g]:80\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"*:\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"unix:\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"unix:@\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "is invalid"},
    {"{\"listeners\": {\"\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.", "The listener address \"\" is invalid."},
    {"{\"listeners\": {\"*:80\": \"routes\"}}", "Invalid configuration.",
     "The \"*:80\" value must be an object, but not a string."},
    {"{\"listeners\": {\"*:80\": {}}}", "Invalid configuration.",
     "The listener \"*:80\" must have either \"pass\" or \"application\" "
     "option set."},
    {"{\"listeners\": {\"*:80\": {\"pass\": 1}}}", "Invalid configuration.",
     "The \"pass\" value must be a string, but not an integer number."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"x\": 1}}, "
     "\"routes\": []}",
     "Invalid configuration.", "Unknown parameter \"x\"."},
    /* tls (Unit's messages; a compiled one: tests/unit/net/test_tls.c) */
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"certificate\": \"c\"}}}, \"routes\": []}",
     "Invalid configuration.", "Certificate \"c\" is not found."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{}}}, \"routes\": []}",
     "Invalid configuration.",
     "Required parameter \"certificate\" is missing."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"certificate\": []}}}, \"routes\": []}",
     "Invalid configuration.",
     "The \"certificate\" array must contain at least one element."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"certificate\": [1]}}}, \"routes\": []}",
     "Invalid configuration.",
     "The \"certificate\" array must contain only string values."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"certificate\": 1}}}, \"routes\": []}",
     "Invalid configuration.", "The \"certificate\" value must be"},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"x\": 1}}}, \"routes\": []}",
     "Invalid configuration.", "Unknown parameter \"x\"."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"conf_commands\": {\"a\": 1}}}}, \"routes\": []}",
     "Invalid configuration.", "The \"a\" value must be"},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"session\": {\"cache_size\": -1}}}}, \"routes\": []}",
     "Invalid configuration.",
     "The \"cache_size\" number must not be negative."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"session\": {\"timeout\": 0}}}}, \"routes\": []}",
     "Invalid configuration.",
     "The \"timeout\" number must be greater than zero."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"session\": {\"tickets\": \"%%%\"}}}}, \"routes\": []}",
     "Invalid configuration.",
     "Invalid Base64 format for the ticket key \"%%%\"."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"session\": {\"tickets\": [\"YWJj\"]}}}}, \"routes\": []}",
     "Invalid configuration.",
     "Invalid length 3 of the ticket key \"YWJj\".  Must be 48 or 80 bytes."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"session\": {\"tickets\": [1]}}}}, \"routes\": []}",
     "Invalid configuration.",
     "The \"key\" array must contain only string values."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
     "{\"session\": {\"x\": 1}}}}, \"routes\": []}",
     "Invalid configuration.", "Unknown parameter \"x\"."},
    /* forwarded, client_ip */
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"forwarded\": "
     "{\"source\": \"10.0.0.0/8\"}}}, \"routes\": []}",
     "Invalid configuration.",
     "The \"forwarded\" object must have either \"client_ip\" or "
     "\"protocol\" option set."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"forwarded\": "
     "{\"client_ip\": \"X-Forwarded-For\"}}}, \"routes\": []}",
     "Invalid configuration.", "Required parameter \"source\" is missing."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"forwarded\": "
     "{\"protocol\": \"X\", \"source\": \"10.0.0.0/8\", \"recursive\": "
     "1}}}, \"routes\": []}",
     "Invalid configuration.", "The \"recursive\" value must be a boolean"},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"forwarded\": "
     "{\"protocol\": 1, \"source\": \"10.0.0.0/8\"}}}, \"routes\": []}",
     "Invalid configuration.", "The \"protocol\" value must be a string"},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"forwarded\": "
     "{\"protocol\": \"X\", \"source\": \"10.0.0.0/99\"}}}, "
     "\"routes\": []}",
     "Invalid configuration.", "address"},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"forwarded\": "
     "{\"protocol\": \"X\", \"source\": \"1.1.1.1\", \"y\": 1}}}, "
     "\"routes\": []}",
     "Invalid configuration.", "Unknown parameter \"y\"."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"client_ip\": "
     "{\"source\": \"1.1.1.1\"}}}, \"routes\": []}",
     "Invalid configuration.", "Required parameter \"header\" is missing."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"backlog\": 10}}, "
     "\"routes\": []}",
     "Invalid configuration.", "\"backlog\" option is not supported yet"},
    {"{\"listeners\": {\"*:80\": {\"application\": \"a\"}}}",
     "Invalid configuration.",
     "Listening socket is assigned for a non existing application \"a\"."},
    /* passes */
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\"}}}",
     "Invalid configuration.",
     "Request \"pass\" points to invalid location \"routes\"."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes/y\"}}, "
     "\"routes\": {\"x\": []}}",
     "Invalid configuration.",
     "Request \"pass\" points to invalid location \"routes/y\"."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes/x\"}}, \"routes\": []}",
     "Invalid configuration.", "points to invalid location \"routes/x\""},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes\"}}, "
     "\"routes\": {\"x\": []}}",
     "Invalid configuration.", "points to invalid location \"routes\""},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes/x/y\"}}, "
     "\"routes\": {\"x\": []}}",
     "Invalid configuration.", "points to invalid location \"routes/x/y\""},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes/a/b/c\"}}}",
     "Invalid configuration.",
     "Request \"pass\" value \"routes/a/b/c\" is invalid."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"applications/app\"}}}",
     "Invalid configuration.",
     "Request \"pass\" points to invalid location \"applications/app\"."},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"applications/app\"}}, "
     "\"applications\": {}}",
     "Invalid configuration.", "points to invalid location"},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"upstreams/u\"}}}",
     "Invalid configuration.", "points to invalid location \"upstreams/u\""},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"routes/$nope\"}}}",
     "Invalid configuration.", "Unknown variable \"nope\""},
    {"{\"routes\": [{\"action\": {\"pass\": \"routes/${host\"}}]}",
     "Invalid configuration.", "in the \"pass\" value"},
    {"{\"listeners\": {\"*:80\": {\"pass\": \"nowhere\"}}}",
     "Invalid configuration.", "points to invalid location \"nowhere\""},
    {"{\"routes\": [{\"action\": {\"pass\": \"routes/nope\"}}]}",
     "Invalid configuration.", "points to invalid location \"routes/nope\""},
    /* routes and steps */
    {"{\"routes\": [1]}", "Invalid configuration.",
     "The \"routes\" array must contain only object values."},
    {"{\"routes\": {\"a\": {}}}", "Invalid configuration.",
     "The \"a\" value must be an array, but not an object."},
    {"{\"routes\": [{}]}", "Invalid configuration.",
     "Required parameter \"action\" is missing."},
    {"{\"routes\": [{\"match\": {}}]}", "Invalid configuration.",
     "Required parameter \"action\" is missing."},
    {"{\"routes\": [{\"action\": {}, \"x\": 1}]}", "Invalid configuration.",
     "Unknown parameter \"x\"."},
    {"{\"routes\": [{\"match\": [], \"action\": {\"return\": 200}}]}",
     "Invalid configuration.",
     "The \"match\" value must be an object, but not an array."},
    {"{\"routes\": [{\"match\": {\"url\": \"/\"}, \"action\": "
     "{\"return\": 200}}]}",
     "Invalid configuration.", "Unknown parameter \"url\"."},
    {"{\"routes\": [{\"match\": {\"uri\": 5}, \"action\": {\"return\": 200}}]}",
     "Invalid configuration.",
     "The \"uri\" value must be either a string or an array, but not an "
     "integer number."},
    /* actions */
    {"{\"routes\": [{\"action\": {}}]}", "Invalid configuration.",
     "The \"action\" object must have either \"pass\", \"return\", "
     "\"share\", or \"proxy\" option set."},
    {"{\"routes\": [{\"action\": {\"return\": 200, \"share\": \"/x\"}}]}",
     "Invalid configuration.",
     "The \"action\" object must have just one of \"pass\", \"return\", "
     "\"share\", or \"proxy\" options set."},
    {"{\"routes\": [{\"action\": {\"return\": 1000}}]}",
     "Invalid configuration.",
     "The \"return\" value is out of allowed HTTP status code range 0-999."},
    {"{\"routes\": [{\"action\": {\"return\": -1}}]}", "Invalid configuration.",
     "out of allowed HTTP status code range 0-999"},
    {"{\"routes\": [{\"action\": {\"return\": \"200\"}}]}",
     "Invalid configuration.",
     "The \"return\" value must be an integer number, but not a string."},
    {"{\"routes\": [{\"action\": {\"return\": 301, \"location\": 1}}]}",
     "Invalid configuration.",
     "The \"location\" value must be a string, but not an integer number."},
    {"{\"routes\": [{\"action\": {\"return\": 301, \"location\": \"$nope\"}}]}",
     "Invalid configuration.",
     "Unknown variable \"nope\" in the \"location\" value."},
    {"{\"routes\": [{\"action\": {\"return\": 301, \"index\": \"x\"}}]}",
     "Invalid configuration.", "Unknown parameter \"index\"."},
    {"{\"routes\": [{\"action\": {\"share\": \"/x\", \"location\": \"/\"}}]}",
     "Invalid configuration.", "Unknown parameter \"location\"."},
    {"{\"routes\": [{\"action\": {\"pass\": \"routes\", \"fallback\": "
     "{\"return\": 404}}}]}",
     "Invalid configuration.", "Unknown parameter \"fallback\"."},
    {"{\"routes\": [{\"action\": {\"share\": []}}]}", "Invalid configuration.",
     "The \"share\" array must contain at least one element."},
    {"{\"routes\": [{\"action\": {\"share\": [\"/a\", 1]}}]}",
     "Invalid configuration.",
     "The \"share\" array must contain only string values."},
    {"{\"routes\": [{\"action\": {\"share\": {}}}]}", "Invalid configuration.",
     "The \"share\" value must be either a string or an array, but not an "
     "object."},
    {"{\"routes\": [{\"action\": {\"share\": \"/srv$url\"}}]}",
     "Invalid configuration.",
     "Unknown variable \"url\" in the \"share\" value."},
    {"{\"routes\": [{\"action\": {\"share\": \"/x\", \"index\": 1}}]}",
     "Invalid configuration.", "The \"index\" value must be a string"},
    {"{\"routes\": [{\"action\": {\"share\": \"/x\", \"types\": [1]}}]}",
     "Invalid configuration.", "must be strings"},
    {"{\"routes\": [{\"action\": {\"share\": \"/x\", \"fallback\": {}}}]}",
     "Invalid configuration.", "must have either \"pass\""},
    {"{\"routes\": [{\"action\": {\"share\": \"/x\", \"fallback\": "
     "{\"share\": \"/y\", \"fallback\": {\"proxy\": "
     "\"http://127.0.0.1\"}}}}]}",
     "Invalid configuration.",
     "The \"proxy\" address is invalid \"127.0.0.1\""},
    {"{\"routes\": [{\"action\": {\"share\": \"/x\", \"chroot\": 1}}]}",
     "Invalid configuration.", "The \"chroot\" value must be a string"},
    {"{\"routes\": [{\"action\": {\"share\": \"/x\", \"chroot\": "
     "\"/$nope\"}}]}",
     "Invalid configuration.", "Unknown variable \"nope\""},
    {"{\"routes\": [{\"action\": {\"share\": \"/x\", \"follow_symlinks\": "
     "\"no\"}}]}",
     "Invalid configuration.",
     "The \"follow_symlinks\" value must be a boolean"},
    {"{\"routes\": [{\"action\": {\"share\": \"/x\", \"traverse_mounts\": "
     "0}}]}",
     "Invalid configuration.",
     "The \"traverse_mounts\" value must be a boolean"},
    {"{\"routes\": [{\"action\": {\"return\": 200, \"chroot\": \"/\"}}]}",
     "Invalid configuration.", "Unknown parameter \"chroot\"."},
    /* Wharf takes host names (issue 10); not one is Unit's error. */
    {"{\"routes\": [{\"action\": {\"proxy\": \"http://bad_host:8000\"}}]}",
     "Invalid configuration.",
     "The \"proxy\" address is invalid \"bad_host:8000\""},
    /* response_headers, rewrite */
    {"{\"routes\": [{\"action\": {\"return\": 200, \"response_headers\": "
     "[]}}]}",
     "Invalid configuration.",
     "The \"response_headers\" value must be an object"},
    {"{\"routes\": [{\"action\": {\"return\": 200, \"response_headers\": "
     "{\"\": \"a\"}}}]}",
     "Invalid configuration.", "The response header name must not be empty."},
    {"{\"routes\": [{\"action\": {\"return\": 200, \"response_headers\": "
     "{\"Content-Length\": \"1\"}}}]}",
     "Invalid configuration.",
     "The \"Content-Length\" response header value is not supported"},
    {"{\"routes\": [{\"action\": {\"return\": 200, \"response_headers\": "
     "{\"X-A\": 1}}}]}",
     "Invalid configuration.",
     "The \"X-A\" response header value must either be a string or a null"},
    {"{\"routes\": [{\"action\": {\"return\": 200, \"response_headers\": "
     "{\"X-A\": \"$nope\"}}}]}",
     "Invalid configuration.", "Unknown variable \"nope\""},
    {"{\"routes\": [{\"action\": {\"pass\": \"routes\", \"rewrite\": "
     "1}}]}",
     "Invalid configuration.", "The \"rewrite\" value must be a string"},
    {"{\"routes\": [{\"action\": {\"return\": 204, \"rewrite\": "
     "\"/$nope\"}}]}",
     "Invalid configuration.", "Unknown variable \"nope\""},
    {"{\"routes\": [{\"action\": {\"pass\": \"applications/a/t\"}}]}",
     "Invalid configuration.", "points to invalid location"},
};

/* A "pass" of "routes" alone: its route name is empty (NULL data), which
 * the lookup must not hand to memchr() (UBSan in build-san).  It names the
 * routes array, and nothing when "routes" is an object. */
static void
test_pass_routes_alone(void **state)
{
    static const char *const bad[] = {
        "{\"listeners\": {\"*:80\": {\"pass\": \"routes\"}},"
        " \"routes\": {\"main\": []}}",
        "{\"listeners\": {\"*:80\": {\"pass\": \"routes/main\"}},"
        " \"routes\": []}",
    };
    wf_conf_error_t err;
    wf_conf_t *conf;

    wf_unused(state);
    conf = conf_ok("{\"listeners\": {\"*:80\": {\"pass\": \"routes\"}},"
                   " \"routes\": [{\"action\": {\"return\": 204}}]}");
    assert_non_null(wf_conf_route(conf, ""));
    assert_ptr_equal(conf->listeners[0].pass, wf_conf_route(conf, ""));
    wf_conf_destroy(conf);
    for (size_t i = 0; i < wf_nitems(bad); i++) {
        assert_null(conf_text(bad[i], &err));
        assert_non_null(strstr(err.detail, "points to invalid location"));
    }
}

static void
test_errors(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(bad_rows); i++) {
        wf_conf_error_t err;
        wf_conf_t *conf = conf_text(bad_rows[i].text, &err);

        if (conf != NULL || strcmp(err.error, bad_rows[i].error) != 0
            || strstr(err.detail, bad_rows[i].detail) == NULL) {
            print_message("row %zu: %s -> %s %s\n", i, bad_rows[i].text,
                          conf != NULL ? "compiled" : err.error, err.detail);
        }
        assert_null(conf);
        assert_string_equal(err.error, bad_rows[i].error);
        assert_non_null(strstr(err.detail, bad_rows[i].detail));
    }
}

static void
test_json_location(void **state)
{
    wf_conf_error_t err;

    wf_unused(state);
    assert_null(conf_text("{\n  // fine\n  \"listeners\": {},\n  x\n}", &err));
    assert_string_equal(err.error, "Invalid JSON.");
    assert_true(err.has_location);
    assert_int_equal(err.json.line, 4);
    assert_int_equal(err.json.column, 3);
    assert_null(conf_text("{\"x\": 1}", &err));
    assert_false(err.has_location);
}

/* A fallback chain is bounded. */
static void
test_fallback_depth(void **state)
{
    char text[8192];
    size_t n = 0;
    wf_conf_error_t err;
    wf_conf_t *conf;

    wf_unused(state);
    for (int depth = 30; depth <= 40; depth += 10) {
        n = (size_t)snprintf(text, sizeof(text), "{\"routes\": [{\"action\": ");
        for (int i = 0; i < depth; i++) {
            n += (size_t)snprintf(text + n, sizeof(text) - n,
                                  "{\"share\": \"/x\", \"fallback\": ");
        }
        n += (size_t)snprintf(text + n, sizeof(text) - n, "{\"return\": 404}");
        for (int i = 0; i < depth; i++) {
            text[n++] = '}';
        }
        n += (size_t)snprintf(text + n, sizeof(text) - n, "}]}");
        conf = wf_conf_load(text, n, &err);
        if (depth == 30) {
            assert_non_null(conf);
        } else {
            assert_null(conf);
            assert_non_null(strstr(err.detail, "nested"));
        }
        wf_conf_destroy(conf);
    }
}

/* ---- keys Unit knows ---------------------------------------------------- */

/* Every key of Unit's schema either compiles or is refused as "not
 * supported yet": a key Unit knows is never an "Unknown parameter", so that
 * a config moved from Unit says what is missing. */
static const char *const conf_unit_keys[] = {
    "{\"routes\": [{\"match\": {\"scheme\": \"https\", \"source\": "
    "\"10.0.0.0/8\", \"destination\": \"*:80\"}, \"action\": {\"return\": "
    "200}}]}",
    "{\"routes\": [{\"match\": {\"arguments\": {\"a\": \"b\"}, \"query\": "
    "\"a\", \"cookies\": {\"c\": \"d\"}, \"headers\": {\"e\": \"f\"}}, "
    "\"action\": {\"return\": 200}}]}",
    "{\"routes\": [{\"match\": {\"if\": \"`${1}`\"}, \"action\": {\"return\": "
    "200}}]}",
    "{\"routes\": [{\"action\": {\"share\": \"/x\", \"chroot\": \"/\"}}]}",
    "{\"routes\": [{\"action\": {\"share\": \"/x\", \"follow_symlinks\": "
    "false}}]}",
    "{\"routes\": [{\"action\": {\"share\": \"/x\", \"traverse_mounts\": "
    "false}}]}",
    "{\"routes\": [{\"action\": {\"proxy\": \"http://127.0.0.1:1\"}}]}",
    "{\"routes\": [{\"action\": {\"return\": 200, \"rewrite\": \"/a\"}}]}",
    "{\"routes\": [{\"action\": {\"return\": 200, \"response_headers\": "
    "{\"a\": \"b\"}}}]}",
    "{\"settings\": {\"telemetry\": {}}}",
    "{\"settings\": {\"listen_threads\": 2}}",
    "{\"settings\": {\"js_module\": [\"m\"]}}",
    "{\"settings\": {\"http\": {\"body_min_rate\": 1}}}",
    "{\"settings\": {\"http\": {\"send_min_rate\": 1}}}",
    "{\"settings\": {\"http\": {\"websocket\": {\"read_timeout\": 1}}}}",
    "{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"client_ip\": "
    "{\"header\": \"X\", \"source\": \"1.1.1.1\"}}}, \"routes\": []}",
    "{\"listeners\": {\"*:80\": {\"pass\": \"routes\", \"tls\": "
    "{\"certificate\": \"c\"}}}, \"routes\": []}",
    "{\"listeners\": {\"*:80\": {\"application\": \"a\"}}, "
    "\"applications\": {\"a\": {\"type\": \"python\", \"module\": \"m\"}}}",
    "{\"access_log\": {\"path\": \"/tmp/wf-unit-keys.log\", \"format\": "
    "\"f\", \"if\": \"a\"}}",
    "{\"upstreams\": {\"u\": {\"servers\": {\"127.0.0.1:1\": {}}}}}",
    "{\"applications\": {\"a\": {\"type\": \"python\", \"module\": \"m\"}}}",
};

static void
test_unit_keys(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(conf_unit_keys); i++) {
        wf_conf_error_t err;
        wf_conf_t *conf = conf_text(conf_unit_keys[i], &err);

        /* tls needs a certificate in the store (tests/unit/net/test_tls.c
         * compiles one). */
        if (conf == NULL && strstr(err.detail, "not supported yet") == NULL
            && strstr(err.detail, "Certificate \"c\" is not found.") == NULL) {
            print_message("row %zu: %s\n", i, err.detail);
            fail();
        }
        wf_conf_destroy(conf);
    }
}

/* ---- shared/unit-configs ----------------------------------------------- */

/* Each real-world config compiles, or is refused only for something Wharf
 * does not support yet: never for a key Unit knows. */
static void
test_unit_configs(void **state)
{
    char dir[PATH_MAX];
    char path[PATH_MAX + 256];
    struct dirent *de;
    unsigned seen = 0;
    DIR *d = NULL;

    wf_unused(state);
    if (!wf_test_unit_configs_dir(dir, sizeof(dir))
        || (d = opendir(dir)) == NULL) {
        skip();
    }
    while ((de = readdir(d)) != NULL) {
        size_t nlen = strlen(de->d_name);
        wf_conf_error_t err;
        wf_conf_t *conf;
        size_t len = 0;
        char *text;

        if (nlen < 5 || strcmp(de->d_name + nlen - 5, ".json") != 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        text = wf_test_read_file(path, &len);
        assert_non_null(text);
        conf = wf_conf_load(text, len, &err);
        print_message("%s: %s\n", de->d_name,
                      conf != NULL ? "compiles" : err.detail);
        if (conf == NULL) {
            assert_string_equal(err.error, "Invalid configuration.");
            assert_non_null(strstr(err.detail, "not supported yet"));
            assert_null(strstr(err.detail, "Unknown parameter"));
        }
        wf_conf_destroy(conf);
        free(text);
        seen++;
    }
    closedir(d);
    assert_true(seen > 0);
}

int
wf_test_conf(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_listeners),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_route_cycles),
        cmocka_unit_test(test_pass_routes_alone),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_json_location),
        cmocka_unit_test(test_fallback_depth),
        cmocka_unit_test(test_unit_keys),
        cmocka_unit_test(test_unit_configs),
    };

    return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
