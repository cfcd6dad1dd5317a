/* "forwarded": which address and scheme a request gets behind trusted
 * proxies, one row per case of Unit's documentation and a few more. */
#include <arpa/inet.h>
#include <jansson.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "http/forwarded.h"
#include "http/route_pattern.h"
#include "unit.h"

#define FWD_MAX_FIELDS 4

static const struct {
    const char *source; /* JSON */
    const char *peer;
    bool recursive;
    const char *fields[FWD_MAX_FIELDS]; /* "Name: value" */
    const char *remote;                 /* NULL: unchanged */
    int tls;                            /* -1: unchanged */
} rows[] = {
    /* Unit's example: two X-Forwarded-For fields. */
    {"[\"192.0.2.0/24\", \"198.51.100.0/24\"]",
     "192.0.2.5",
     false,
     {"X-Forwarded-For: 192.0.2.18",
      "X-Forwarded-For: 203.0.113.195, 198.51.100.178"},
     "198.51.100.178",
     -1},
    {"[\"192.0.2.0/24\", \"198.51.100.0/24\"]",
     "192.0.2.5",
     true,
     {"X-Forwarded-For: 192.0.2.18",
      "X-Forwarded-For: 203.0.113.195, 198.51.100.178"},
     "203.0.113.195",
     -1},
    /* All trusted: the leftmost, across fields. */
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     true,
     {"X-Forwarded-For: 192.0.2.18", "X-Forwarded-For: 192.0.2.19"},
     "192.0.2.18",
     -1},
    /* An untrusted peer changes nothing. */
    {"\"10.0.0.0/8\"",
     "192.0.2.5",
     false,
     {"X-Forwarded-For: 1.2.3.4", "X-Forwarded-Proto: https"},
     NULL,
     -1},
    /* Negation in source. */
    {"[\"192.0.2.0/24\", \"!192.0.2.5\"]",
     "192.0.2.5",
     false,
     {"X-Forwarded-For: 1.2.3.4"},
     NULL,
     -1},
    /* Garbage: unchanged (not recursive), or the last good one. */
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     false,
     {"X-Forwarded-For: nope"},
     NULL,
     -1},
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     true,
     {"X-Forwarded-For: 8.8.8.8 junk, 192.0.2.9"},
     "192.0.2.9",
     -1},
    /* Separators, IPv6, brackets and ports. */
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     false,
     {"x-forwarded-for:  2001:db8::1 ,,"},
     "2001:db8::1",
     -1},
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     false,
     {"X-Forwarded-For: [2001:db8::2]:443"},
     "2001:db8::2",
     -1},
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     false,
     {"X-Forwarded-For: 203.0.113.7:8080"},
     "203.0.113.7",
     -1},
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     false,
     {"X-Forwarded-For: 203.0.113.7:99999"},
     NULL,
     -1},
    /* Protocol: http, https, on; caseless; the last field. */
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     false,
     {"X-Forwarded-Proto: https"},
     NULL,
     1},
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     false,
     {"X-Forwarded-Proto: ON"},
     NULL,
     1},
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     false,
     {"X-Forwarded-Proto: https", "X-Forwarded-Proto: http"},
     NULL,
     0},
    {"\"192.0.2.0/24\"",
     "192.0.2.5",
     false,
     {"X-Forwarded-Proto: ftp"},
     NULL,
     -1},
    /* "unix" trusts unix-socket peers. */
    {"\"unix\"", "unix", false, {"X-Forwarded-For: 1.2.3.4"}, "1.2.3.4", -1},
    {"\"unix\"", "192.0.2.5", false, {"X-Forwarded-For: 1.2.3.4"}, NULL, -1},
};

static void
fwd_addr(const char *text, wf_sockaddr_t *sa)
{
    memset(sa, 0, sizeof(*sa));
    if (strcmp(text, "unix") == 0) {
        sa->sa.sa_family = AF_UNIX;
        return;
    }
    assert_true(wf_forwarded_addr_parse(wf_str_make(text, strlen(text)), sa));
}

static void
fwd_head(wf_h1_head_t *h, const char *const *fields)
{
    memset(h, 0, sizeof(*h));
    for (size_t i = 0; i < FWD_MAX_FIELDS && fields[i] != NULL; i++) {
        const char *colon = strchr(fields[i], ':');
        const char *v = colon + 1;

        while (*v == ' ') {
            v++;
        }
        h->headers[h->nheaders].name =
            wf_str_make(fields[i], (size_t)(colon - fields[i]));
        h->headers[h->nheaders].value = wf_str_make(v, strlen(v));
        h->nheaders++;
    }
}

static void
test_forwarded_rows(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(rows); i++) {
        char err[256] = "";
        json_t *src = json_loads(rows[i].source, JSON_DECODE_ANY, NULL);
        wf_forwarded_t f = {.client_ip = wf_string("X-Forwarded-For"),
                            .protocol = wf_string("X-Forwarded-Proto"),
                            .recursive = rows[i].recursive};
        wf_forwarded_result_t res;
        wf_sockaddr_t peer;
        wf_sockaddr_t want;
        wf_h1_head_t h;

        f.source = wf_addr_set_compile(a, src, err, sizeof(err));
        json_decref(src);
        assert_non_null(f.source);
        fwd_addr(rows[i].peer, &peer);
        fwd_head(&h, rows[i].fields);
        wf_forwarded_apply(&f, &h, &peer, &res);
        print_message("row %zu\n", i);
        assert_int_equal(res.has_remote, rows[i].remote != NULL);
        if (rows[i].remote != NULL) {
            fwd_addr(rows[i].remote, &want);
            assert_memory_equal(&res.remote, &want, sizeof(want));
        }
        assert_int_equal(res.has_scheme, rows[i].tls >= 0);
        if (rows[i].tls >= 0) {
            assert_int_equal(res.tls, rows[i].tls == 1);
        }
    }
    wf_arena_destroy(a);
}

static void
test_forwarded_addr(void **state)
{
    static const struct {
        const char *in;
        bool ok;
    } addrs[] = {
        {"1.2.3.4", true},       {"1.2.3.4:0", true}, {"1.2.3", false},
        {"::1", true},           {"[::1]", true},     {"[::1]:80", true},
        {"[::1]x", false},       {"", false},         {"1.2.3.4:", false},
        {"1.2.3.4:80:1", false},
    };

    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(addrs); i++) {
        wf_sockaddr_t sa;
        wf_str_t s = wf_str_make(addrs[i].in, strlen(addrs[i].in));

        assert_int_equal(wf_forwarded_addr_parse(s, &sa), addrs[i].ok);
    }
}

int
wf_test_forwarded(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forwarded_rows),
        cmocka_unit_test(test_forwarded_addr),
    };

    return cmocka_run_group_tests_name("forwarded", tests, NULL, NULL);
}
