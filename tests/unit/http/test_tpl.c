/* Templates: every variable Unit has, rendered for one full request. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/common.h"
#include "core/pool.h"
#include "http/h1_parse.h"
#include "http/route.h"
#include "http/tpl.h"
#include "unit.h"

static const char target[] = "/a%20b/c.html?x=1&name=John+Doe&x=2&e=%zz&"
                             "flag&=v&d%61t=%41";

static const wf_h1_header_t headers[] = {
    {wf_string("Host"), wf_string("Example.com:8080")},
    {wf_string("User-Agent"), wf_string("curl/8.0")},
    {wf_string("Referer"), wf_string("http://r.example/")},
    {wf_string("X-Forwarded-For"), wf_string("10.0.0.1")},
    {wf_string("x-forwarded-for"), wf_string("10.0.0.2")},
    {wf_string("Cookie"), wf_string("sid=abc; theme = dark ;empty=;sid=zzz")},
    {wf_string("Cookie"), wf_string("lang=en")},
    {wf_string("Accept"), wf_string("")},
};

/* tpl -> out; out NULL: compile error containing err. */
static const struct {
    const char *tpl;
    const char *out;
    const char *err;
} rows[] = {
    {"$uri", "/a b/c.html", NULL},
    {"${uri}", "/a b/c.html", NULL},
    {"$host", "example.com", NULL},
    {"$method", "GET", NULL},
    {"$scheme", "http", NULL},
    {"${scheme}s", "https", NULL},
    {"$request_uri",
     "/a%20b/c.html?x=1&name=John+Doe&x=2&e=%zz&flag&=v&"
     "d%61t=%41",
     NULL},
    {"$request_line",
     "GET /a%20b/c.html?x=1&name=John+Doe&x=2&e=%zz&flag&=v&"
     "d%61t=%41 HTTP/1.1",
     NULL},
    {"$remote_addr", "192.0.2.7", NULL},
    {"$status", "204", NULL},
    {"$body_bytes_sent", "1234", NULL},
    {"$dollar", "$", NULL},
    {"${dollar}{x}", "${x}", NULL},
    {"$header_user_agent", "curl/8.0", NULL},
    {"$header_User_Agent", "curl/8.0", NULL},
    {"$header_USER_AGENT", "curl/8.0", NULL},
    {"${header_referer}", "http://r.example/", NULL},
    {"$header_x_forwarded_for", "10.0.0.1", NULL},
    {"$header_host", "Example.com:8080", NULL},
    {"$header_accept", "", NULL},
    {"$header_missing", "", NULL},
    {"[$header_missing]", "[]", NULL},
    {"$header_useragent", "", NULL},
    {"$arg_x", "2", NULL},
    {"$arg_name", "John Doe", NULL},
    {"$arg_e", "%zz", NULL},
    {"$arg_flag", "", NULL},
    {"$arg_dat", "A", NULL},
    {"$arg_X", "", NULL},
    {"$arg_missing", "", NULL},
    {"$cookie_sid", "abc", NULL},
    {"$cookie_theme", "", NULL},
    {"$cookie_empty", "", NULL},
    {"$cookie_lang", "en", NULL},
    {"$cookie_SID", "", NULL},
    {"$cookie_missing", "", NULL},
    {"$host$uri", "example.com/a b/c.html", NULL},
    {"https://${host}${request_uri}",
     "https://example.com/a%20b/c.html?x=1&name=John+Doe&x=2&e=%zz&flag&=v&"
     "d%61t=%41",
     NULL},
    {"$remote_addr - - \"$request_line\" $status $body_bytes_sent "
     "\"$header_referer\" \"$header_user_agent\"",
     "192.0.2.7 - - \"GET /a%20b/c.html?x=1&name=John+Doe&x=2&e=%zz&flag&=v&"
     "d%61t=%41 HTTP/1.1\" 204 1234 \"http://r.example/\" \"curl/8.0\"",
     NULL},
    {"/srv/$arg_name/x", "/srv/John Doe/x", NULL},
    {"a$", NULL, "Invalid variable at position 1"},
    {"${", NULL, "Invalid variable at position 0"},
    {"${host", NULL, "Invalid variable at position 0"},
    {"$-", NULL, "Invalid variable at position 0"},
    {"$header_", NULL, "Unknown variable \"header_\""},
    {"$arg_", NULL, "Unknown variable \"arg_\""},
    {"$cookie_", NULL, "Unknown variable \"cookie_\""},
    {"$args", NULL, "Unknown variable \"args\""},
    {"$http_host", NULL, "Unknown variable \"http_host\""},
    {"$Host", NULL, "Unknown variable \"Host\""},
    {"[$response_header_content_type]", "[]", NULL}, /* no response yet */
    {"`${uri}`", NULL, "JavaScript templates are not supported yet"},
};

static void
tpl_req(wf_route_req_t *rq, wf_h1_head_t *h, wf_sockaddr_t *sa)
{
    const char *q = strchr(target, '?');

    memset(h, 0, sizeof(*h));
    memset(sa, 0, sizeof(*sa));
    memset(rq, 0, sizeof(*rq));
    h->method = wf_string("GET");
    h->target = wf_str_make(target, strlen(target));
    h->path = wf_str_make(target, (size_t)(q - target));
    h->query = wf_str_make(q + 1, strlen(q + 1));
    h->has_query = true;
    h->version = 11;
    h->nheaders = wf_nitems(headers);
    memcpy(h->headers, headers, sizeof(headers));
    sa->sin.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.7", &sa->sin.sin_addr);
    rq->method = wf_string("GET");
    rq->host = wf_string("example.com");
    rq->uri = wf_string("/a b/c.html");
    rq->head = h;
    rq->remote = sa;
    rq->local = sa;
    rq->status = 204;
    rq->body_bytes_sent = 1234;
}

static void
test_tpl_rows(void **state)
{
    static wf_h1_head_t h;
    wf_arena_t *a = wf_arena_create(4096);
    wf_route_req_t rq;
    wf_sockaddr_t sa;

    wf_unused(state);
    tpl_req(&rq, &h, &sa);
    for (size_t i = 0; i < wf_nitems(rows); i++) {
        char err[256] = "";
        char out[512];
        wf_tpl_t *t =
            wf_tpl_compile(a, rows[i].tpl, strlen(rows[i].tpl), err, 256);
        size_t n;

        if (rows[i].out == NULL) {
            if (t != NULL || strstr(err, rows[i].err) == NULL) {
                print_message("row %zu: %s: %s\n", i, rows[i].tpl, err);
            }
            assert_null(t);
            assert_non_null(strstr(err, rows[i].err));
            continue;
        }
        if (t == NULL) {
            print_message("row %zu: %s\n", i, err);
        }
        assert_non_null(t);
        n = wf_tpl_render(t, &rq, out, sizeof(out) - 1);
        assert_true(n < sizeof(out));
        out[n] = '\0';
        if (strcmp(out, rows[i].out) != 0) {
            print_message("row %zu: %s -> \"%s\"\n", i, rows[i].tpl, out);
        }
        assert_string_equal(out, rows[i].out);
        /* Every prefix length gives the same bytes and the same length. */
        for (size_t cap = 0; cap < n; cap++) {
            char part[512];

            memset(part, '#', sizeof(part));
            assert_int_equal(wf_tpl_render(t, &rq, cap > 0 ? part : NULL, cap),
                             n);
            assert_memory_equal(part, out, cap);
            assert_int_equal(part[cap], '#');
        }
    }
    wf_arena_destroy(a);
}

/* The access log's rendering: "-" only for a value that does not exist; a
 * field, argument or cookie that exists with an empty value stays "", as in
 * Unit (nxt_var.c writes '-' for a null value only). */
static const struct {
    const char *tpl;
    const char *out;
} log_rows[] = {
    {"[$header_accept]", "[]"},
    {"[$header_missing]", "[-]"},
    {"[$arg_flag]", "[]"},
    {"[$arg_missing]", "[-]"},
    {"[$cookie_empty]", "[]"},
    {"[$cookie_missing]", "[-]"},
    {"[$host]", "[example.com]"},
    {"\"$header_referer\" \"$header_x_none\"", "\"http://r.example/\" \"-\""},
};

static void
test_tpl_log_rows(void **state)
{
    static wf_h1_head_t h;
    wf_arena_t *a = wf_arena_create(4096);
    wf_route_req_t rq;
    wf_sockaddr_t sa;

    wf_unused(state);
    tpl_req(&rq, &h, &sa);
    for (size_t i = 0; i < wf_nitems(log_rows); i++) {
        char err[256] = "";
        char out[128];
        wf_tpl_t *t = wf_tpl_compile(a, log_rows[i].tpl,
                                     strlen(log_rows[i].tpl), err, 256);
        size_t n;

        assert_non_null(t);
        n = wf_tpl_render_log(t, &rq, out, sizeof(out) - 1);
        assert_true(n < sizeof(out));
        out[n] = '\0';
        if (strcmp(out, log_rows[i].out) != 0) {
            print_message("row %zu: %s -> \"%s\"\n", i, log_rows[i].tpl, out);
        }
        assert_string_equal(out, log_rows[i].out);
    }
    /* $response_header_NAME reads the response head once it is built. */
    rq.resp_head = wf_string("HTTP/1.1 200 OK\r\nServer: Wharf/0.1.0\r\n"
                             "X-Empty:\r\nContent-Length: 12\r\n"
                             "Content-Type: text/plain\r\n\r\n");
    {
        static const struct {
            const char *tpl, *out;
        } resp_rows[] = {
            {"[$response_header_content_length]", "[12]"},
            {"[$response_header_Content_Type]", "[text/plain]"},
            {"[$response_header_server]", "[Wharf/0.1.0]"},
            {"[$response_header_x_empty]", "[]"},
            {"[$response_header_x_missing]", "[-]"},
        };

        for (size_t i = 0; i < wf_nitems(resp_rows); i++) {
            const char *src = resp_rows[i].tpl;
            wf_tpl_t *t = wf_tpl_compile(a, src, strlen(src), NULL, 0);
            char out[64];
            size_t n;

            assert_non_null(t);
            n = wf_tpl_render_log(t, &rq, out, sizeof(out) - 1);
            out[n] = '\0';
            assert_string_equal(out, resp_rows[i].out);
        }
    }
    rq.resp_head = wf_null_str;

    /* Over TLS (or as a trusted "forwarded" says), $scheme is https. */
    rq.tls = true;
    {
        wf_tpl_t *t = wf_tpl_compile(a, "$scheme", 7, NULL, 0);
        char out[16];
        size_t n;

        assert_non_null(t);
        n = wf_tpl_render_log(t, &rq, out, sizeof(out));
        assert_int_equal(n, 5);
        assert_memory_equal(out, "https", 5);
    }
    rq.tls = false;

    /* An HTTP/1.0 request without Host has no $host; an empty Host has "". */
    h.nheaders = 0;
    rq.host = wf_null_str;
    {
        wf_tpl_t *t = wf_tpl_compile(a, "[$host]", 7, NULL, 0);
        char out[16];
        size_t n;

        assert_non_null(t);
        n = wf_tpl_render_log(t, &rq, out, sizeof(out));
        assert_int_equal(n, 3);
        assert_memory_equal(out, "[-]", 3);
        assert_int_equal(wf_tpl_render(t, &rq, out, sizeof(out)), 2);
    }
    wf_arena_destroy(a);
}

/* Values that depend on the clock or on chance: check their shape. */
static void
test_tpl_shapes(void **state)
{
    static wf_h1_head_t h;
    wf_arena_t *a = wf_arena_create(4096);
    wf_route_req_t rq;
    wf_sockaddr_t sa;
    char err[256], out[128], out2[128];
    wf_tpl_t *t;
    size_t n;
    int d, y, hh, mm, ss, z;
    char mon[4], sign;

    wf_unused(state);
    tpl_req(&rq, &h, &sa);
    t = wf_tpl_compile(a, "$time_local", 11, err, sizeof(err));
    assert_non_null(t);
    n = wf_tpl_render(t, &rq, out, sizeof(out));
    assert_int_equal(n, 26); /* "31/Dec/1986:19:40:00 +0300" */
    out[n] = '\0';
    assert_int_equal(sscanf(out, "%2d/%3s/%4d:%2d:%2d:%2d %c%4d", &d, mon, &y,
                            &hh, &mm, &ss, &sign, &z),
                     8);
    t = wf_tpl_compile(a, "$request_time", 13, err, sizeof(err));
    assert_non_null(t);
    n = wf_tpl_render(t, &rq, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "0.000"); /* start_ns 0: unknown */
    t = wf_tpl_compile(a, "$request_id", 11, err, sizeof(err));
    assert_non_null(t);
    assert_int_equal(wf_tpl_render(t, &rq, out, sizeof(out)), 32);
    assert_int_equal(wf_tpl_render(t, &rq, out2, sizeof(out2)), 32);
    /* The same within one request, in any template... */
    assert_memory_equal(out, out2, 32);
    t = wf_tpl_compile(a, "x${request_id}", 14, err, sizeof(err));
    assert_non_null(t);
    assert_int_equal(wf_tpl_render(t, &rq, out2, sizeof(out2)), 33);
    assert_memory_equal(out, out2 + 1, 32);
    out[32] = '\0'; /* render() does not terminate */
    assert_int_equal(strspn(out, "0123456789abcdef"), 32);
    /* ... and new for the next request (rq zeroed again). */
    memset(rq.request_id, 0, sizeof(rq.request_id));
    assert_int_equal(wf_tpl_render(t, &rq, out2, sizeof(out2)), 33);
    assert_true(memcmp(out, out2 + 1, 32) != 0);
    wf_arena_destroy(a);
}

/* Unix-socket clients are "unix:" in $remote_addr; IPv6 is bare text. */
static void
test_tpl_remote_addr(void **state)
{
    wf_arena_t *a = wf_arena_create(1024);
    wf_route_req_t rq = {0};
    wf_sockaddr_t sa = {0};
    char err[256], out[64];
    wf_tpl_t *t = wf_tpl_compile(a, "$remote_addr", 12, err, sizeof(err));

    wf_unused(state);
    assert_non_null(t);
    assert_int_equal(wf_tpl_render(t, &rq, out, sizeof(out)), 0);
    rq.remote = &sa;
    sa.sa.sa_family = AF_UNIX;
    assert_int_equal(wf_tpl_render(t, &rq, out, sizeof(out)), 5);
    assert_memory_equal(out, "unix:", 5);
    sa.sin6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", &sa.sin6.sin6_addr);
    assert_int_equal(wf_tpl_render(t, &rq, out, sizeof(out)), 11);
    assert_memory_equal(out, "2001:db8::1", 11);
    wf_arena_destroy(a);
}

int
wf_test_tpl(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tpl_rows),
        cmocka_unit_test(test_tpl_log_rows),
        cmocka_unit_test(test_tpl_shapes),
        cmocka_unit_test(test_tpl_remote_addr),
    };

    return cmocka_run_group_tests_name("tpl", tests, NULL, NULL);
}
