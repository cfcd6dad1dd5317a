/* Access log lines rendered for a fake request: Unit's combined default,
 * custom formats, JSON objects, escaping, "if" and cut lines; and the
 * "pass" lookup by rendered name. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/pool.h"
#include "http/access_log.h"
#include "http/h1_parse.h"
#include "http/route.h"
#include "http/tpl.h"
#include "unit.h"

#define AL_PATH "/tmp/wharf-unit-access.log"

static const wf_h1_header_t al_headers[] = {
    {wf_string("Host"), wf_string("example.com")},
    {wf_string("User-Agent"), wf_string("curl/8.0")},
    {wf_string("X-Quote"), wf_string("a\"b\\c")},
};

static void
al_request(wf_route_req_t *rq, wf_h1_head_t *h, wf_sockaddr_t *sa)
{
    memset(h, 0, sizeof(*h));
    h->method = wf_string("GET");
    h->target = wf_string("/a?b=%0a");
    h->path = wf_string("/a");
    h->query = wf_string("b=%0a");
    h->has_query = true;
    h->version = 11;
    memcpy(h->headers, al_headers, sizeof(al_headers));
    h->nheaders = wf_nitems(al_headers);
    memset(sa, 0, sizeof(*sa));
    sa->sin.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.7", &sa->sin.sin_addr);
    memset(rq, 0, sizeof(*rq));
    rq->method = wf_string("GET");
    rq->uri = wf_string("/a");
    rq->head = h;
    rq->remote = sa;
    rq->status = 404;
    rq->body_bytes_sent = 54;
}

static const wf_tpl_t *
al_tpl(wf_arena_t *a, const char *s)
{
    char err[256];
    const wf_tpl_t *t = wf_tpl_compile(a, s, strlen(s), err, sizeof(err));

    assert_non_null(t);
    return t;
}

static void
al_expect(const wf_access_log_t *al, const wf_route_req_t *rq, const char *want)
{
    char out[512];
    size_t n = wf_access_log_format(al, rq, out, sizeof(out));

    out[n] = '\0';
    assert_string_equal(out, want);
}

/* Deferred (the router and the controller): nothing is opened; main's
 * descriptor comes through wf_access_log_set_fd() and is shared by every
 * later access log of the path. */
static void
test_access_log_deferred(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    wf_access_log_spec_t spec = {.path = AL_PATH ".deferred"};
    wf_access_log_spec_t bad = {.path = "/nonexistent-dir/x/a.log"};
    wf_access_log_t *al;
    wf_access_log_t *again;
    wf_access_log_t *nowhere;
    char err[256];
    int fd;

    wf_unused(state);
    unlink(spec.path);
    spec.format = al_tpl(a, "$uri");
    bad.format = spec.format;
    wf_access_log_defer_open(true);
    al = wf_access_log_create(a, &spec, err, sizeof(err));
    assert_non_null(al);
    assert_int_equal(access(spec.path, F_OK), -1); /* not created */
    assert_string_equal(wf_access_log_needs_fd(al), spec.path);
    /* a path this process could not open is main's business */
    nowhere = wf_access_log_create(a, &bad, err, sizeof(err));
    assert_non_null(nowhere);
    assert_string_equal(wf_access_log_needs_fd(nowhere), bad.path);
    fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    wf_access_log_set_fd(al, fd);
    assert_null(wf_access_log_needs_fd(al));
    again = wf_access_log_create(a, &spec, err, sizeof(err));
    assert_null(wf_access_log_needs_fd(again)); /* shares main's fd */
    assert_null(wf_access_log_needs_fd(NULL));
    wf_access_log_defer_open(false);
    assert_int_equal(access(spec.path, F_OK), -1);
    wf_access_log_destroy(again);
    wf_access_log_destroy(nowhere);
    wf_access_log_destroy(al);
    wf_arena_destroy(a);
}

static void
test_access_log_string(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    wf_access_log_spec_t spec = {.path = AL_PATH};
    wf_route_req_t rq;
    wf_h1_head_t h;
    wf_sockaddr_t sa;
    wf_access_log_t *al;
    char err[256];

    wf_unused(state);
    al_request(&rq, &h, &sa);
    spec.format =
        al_tpl(a, "$remote_addr \"$request_line\" $status $body_bytes_sent "
                  "\"$header_referer\" \"$header_user_agent\" $arg_b");
    al = wf_access_log_create(a, &spec, err, sizeof(err));
    assert_non_null(al);
    /* A decoded "\n" in a value cannot start a new line. */
    al_expect(al, &rq,
              "192.0.2.7 \"GET /a?b=%0a HTTP/1.1\" 404 54 \"-\" \"curl/8.0\" "
              "\\x0a\n");
    /* unix-socket clients */
    sa.sa.sa_family = AF_UNIX;
    spec.format = al_tpl(a, "$remote_addr");
    wf_access_log_destroy(al);
    al = wf_access_log_create(a, &spec, err, sizeof(err));
    al_expect(al, &rq, "unix:\n");
    wf_access_log_destroy(al);
    wf_arena_destroy(a);
    unlink(AL_PATH);
}

static void
test_access_log_combined(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    wf_access_log_spec_t spec = {.path = AL_PATH};
    wf_route_req_t rq;
    wf_h1_head_t h;
    wf_sockaddr_t sa;
    wf_access_log_t *al;
    char out[512];
    char err[256];
    size_t n;

    wf_unused(state);
    al_request(&rq, &h, &sa);
    spec.format = al_tpl(a, WF_ACCESS_LOG_COMBINED);
    al = wf_access_log_create(a, &spec, err, sizeof(err));
    n = wf_access_log_format(al, &rq, out, sizeof(out) - 1);
    out[n] = '\0';
    /* "192.0.2.7 - - [22/Nov/2026:00:47:22 +0000] ..." */
    assert_memory_equal(out, "192.0.2.7 - - [", 15);
    assert_non_null(strstr(out, "] \"GET /a?b=%0a HTTP/1.1\" 404 54 \"-\" "
                                "\"curl/8.0\"\n"));
    assert_int_equal(out[n - 1], '\n');
    wf_access_log_destroy(al);
    wf_arena_destroy(a);
    unlink(AL_PATH);
}

static void
test_access_log_json(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    const wf_str_t keys[] = {wf_string("remote"), wf_string("q\"k"),
                             wf_string("st")};
    const wf_tpl_t *values[3];
    wf_access_log_spec_t spec = {
        .path = AL_PATH, .keys = keys, .values = values, .nfields = 3};
    wf_route_req_t rq;
    wf_h1_head_t h;
    wf_sockaddr_t sa;
    wf_access_log_t *al;
    char err[256];

    wf_unused(state);
    al_request(&rq, &h, &sa);
    values[0] = al_tpl(a, "$remote_addr");
    values[1] = al_tpl(a, "$header_x_quote $arg_b");
    values[2] = al_tpl(a, "$status");
    al = wf_access_log_create(a, &spec, err, sizeof(err));
    al_expect(al, &rq,
              "{\"remote\":\"192.0.2.7\",\"q\\\"k\":\"a\\\"b\\\\c \\u000a\","
              "\"st\":\"404\"}\n");
    wf_access_log_destroy(al);
    wf_arena_destroy(a);
    unlink(AL_PATH);
}

static void
test_access_log_if(void **state)
{
    static const struct {
        const char *cond;
        bool negate;
        bool want;
    } conds[] = {
        {"$status", false, true},
        {"", false, false},
        {"0", false, false},
        {"false", false, false},
        {"null", false, false},
        {"undefined", false, false},
        {"$header_none", false, false},
        {"$header_none", true, true},
        {"$arg_b", false, true},
        {"$status", true, false},
    };
    wf_arena_t *a = wf_arena_create(4096);
    wf_route_req_t rq;
    wf_h1_head_t h;
    wf_sockaddr_t sa;
    char err[256];

    wf_unused(state);
    al_request(&rq, &h, &sa);
    for (size_t i = 0; i < wf_nitems(conds); i++) {
        wf_access_log_spec_t spec = {.path = AL_PATH,
                                     .format = al_tpl(a, "x"),
                                     .cond = al_tpl(a, conds[i].cond),
                                     .negate = conds[i].negate};
        wf_access_log_t *al = wf_access_log_create(a, &spec, err, sizeof(err));

        assert_int_equal(wf_access_log_wants(al, &rq), conds[i].want);
        wf_access_log_destroy(al);
    }
    wf_arena_destroy(a);
    unlink(AL_PATH);
}

/* A line longer than the room is cut, and still ends with '\n'. */
static void
test_access_log_cut(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    wf_access_log_spec_t spec = {.path = AL_PATH};
    wf_route_req_t rq;
    wf_h1_head_t h;
    wf_sockaddr_t sa;
    wf_access_log_t *al;
    char out[8];
    char err[256];

    wf_unused(state);
    al_request(&rq, &h, &sa);
    spec.format = al_tpl(a, "$request_line");
    al = wf_access_log_create(a, &spec, err, sizeof(err));
    assert_int_equal(wf_access_log_format(al, &rq, out, sizeof(out)), 8);
    assert_memory_equal(out, "GET /a?\n", 8);
    wf_access_log_destroy(al);
    spec.path = "/nonexistent-wharf-dir/x.log";
    assert_null(wf_access_log_create(a, &spec, err, sizeof(err)));
    assert_non_null(strstr(err, "Failed to open the access log"));
    wf_arena_destroy(a);
    unlink(AL_PATH);
}

/* Control bytes and DEL are escaped wherever they are in the line (the
 * scan reads 8 bytes at a time); HTAB and bytes >= 0x80 are kept. */
static void
test_access_log_escape_offsets(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    wf_access_log_spec_t spec = {.path = AL_PATH};
    wf_h1_header_t hdr[1] = {{wf_string("X-C"), wf_null_str}};
    wf_route_req_t rq;
    wf_h1_head_t h;
    wf_sockaddr_t sa;
    wf_access_log_t *al;
    char err[256];

    wf_unused(state);
    al_request(&rq, &h, &sa);
    memcpy(h.headers, hdr, sizeof(hdr));
    h.nheaders = 1;
    spec.format = al_tpl(a, "$header_x_c");
    al = wf_access_log_create(a, &spec, err, sizeof(err));
    assert_non_null(al);
    for (size_t at = 0; at < 20; at++) {
        static const unsigned char bad[] = {0x01, 0x1f, 0x7f, 0x0a};
        char value[32];
        char want[64];

        for (size_t k = 0; k < sizeof(bad); k++) {
            memset(value, 'v', 20);
            value[at] = (char)bad[k];
            h.headers[0].value = wf_str_make(value, 20);
            snprintf(want, sizeof(want), "%.*s\\x%02x%.*s\n", (int)at, value,
                     bad[k], (int)(19 - at), value + at + 1);
            al_expect(al, &rq, want);
        }
    }
    h.headers[0].value = wf_string("a\tb\xc3\xa9"
                                   "c\x80\xff"
                                   "~ 0123456789");
    al_expect(al, &rq,
              "a\tb\xc3\xa9"
              "c\x80\xff"
              "~ 0123456789\n");
    wf_access_log_destroy(al);
    wf_arena_destroy(a);
    unlink(AL_PATH);
}

/* $remote_addr for IPv4 (formatted without inet_ntop()) and IPv6. */
static void
test_access_log_remote_addr(void **state)
{
    static const char *addrs[] = {"0.0.0.0",    "255.255.255.255",
                                  "10.0.100.9", "1.20.3.40",
                                  "127.0.0.1",  "99.199.9.90"};
    wf_arena_t *a = wf_arena_create(4096);
    wf_access_log_spec_t spec = {.path = AL_PATH};
    wf_route_req_t rq;
    wf_h1_head_t h;
    wf_sockaddr_t sa;
    wf_access_log_t *al;
    char err[256];
    char want[64];

    wf_unused(state);
    al_request(&rq, &h, &sa);
    spec.format = al_tpl(a, "$remote_addr");
    al = wf_access_log_create(a, &spec, err, sizeof(err));
    assert_non_null(al);
    for (size_t i = 0; i < wf_nitems(addrs); i++) {
        assert_int_equal(inet_pton(AF_INET, addrs[i], &sa.sin.sin_addr), 1);
        snprintf(want, sizeof(want), "%s\n", addrs[i]);
        al_expect(al, &rq, want);
    }
    sa.sin6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", &sa.sin6.sin6_addr), 1);
    al_expect(al, &rq, "2001:db8::7\n");
    wf_access_log_destroy(al);
    wf_arena_destroy(a);
    unlink(AL_PATH);
}

/* "pass" values with variables are looked up once rendered. */
static void
test_route_find(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    wf_route_t *named[2] = {wf_route_create(a, "main"),
                            wf_route_create(a, "b")};
    wf_route_t *array[1] = {wf_route_create(a, "")};

    wf_unused(state);
    assert_ptr_equal(wf_route_find(named, 2, false, wf_string("routes/b")),
                     named[1]);
    assert_ptr_equal(wf_route_find(named, 2, false, wf_string("routes/main")),
                     named[0]);
    assert_null(wf_route_find(named, 2, false, wf_string("routes/ma")));
    assert_null(wf_route_find(named, 2, false, wf_string("routes/")));
    assert_null(wf_route_find(named, 2, false, wf_string("routes")));
    assert_null(wf_route_find(named, 2, false, wf_string("routesb")));
    assert_null(wf_route_find(named, 2, false, wf_string("applications/b")));
    assert_ptr_equal(wf_route_find(array, 1, true, wf_string("routes")),
                     array[0]);
    assert_null(wf_route_find(array, 1, true, wf_string("routes/x")));
    assert_null(wf_route_find(array, 0, true, wf_string("routes")));
    wf_arena_destroy(a);
}

int
wf_test_access_log(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access_log_string),
        cmocka_unit_test(test_access_log_combined),
        cmocka_unit_test(test_access_log_json),
        cmocka_unit_test(test_access_log_if),
        cmocka_unit_test(test_access_log_cut),
        cmocka_unit_test(test_access_log_escape_offsets),
        cmocka_unit_test(test_access_log_remote_addr),
        cmocka_unit_test(test_route_find),
        cmocka_unit_test(test_access_log_deferred),
    };

    return cmocka_run_group_tests_name("access_log", tests, NULL, NULL);
}
