/* wf_uri_normalize() and wf_uri_decode(): every traversal trick we know of
 * must end in WF_ERROR or in a path that stays under the root. */
#include "unit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/uri.h"

typedef struct uri_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int rc;
    const char *out; /* expected on WF_OK */
} uri_case_t;

static const uri_case_t uri_normalize_cases[] = {
    /* Fast path: copied as is. */
    {"/", 0, WF_OK, "/"},
    {"/index.html", 0, WF_OK, "/index.html"},
    {"/a/b/c.txt", 0, WF_OK, "/a/b/c.txt"},
    {"/a/b/", 0, WF_OK, "/a/b/"},
    {"/a.b/c..d/e.", 0, WF_OK, "/a.b/c..d/e."},
    {"/a/b...", 0, WF_OK, "/a/b..."},
    {"/a+b c", 0, WF_OK, "/a+b c"},

    /* Merged slashes. */
    {"//", 0, WF_OK, "/"},
    {"//a", 0, WF_OK, "/a"},
    {"/a//b", 0, WF_OK, "/a/b"},
    {"/a///b//", 0, WF_OK, "/a/b/"},
    {"/a/%2f/b", 0, WF_OK, "/a/b"},

    /* Dot segments. */
    {"/.", 0, WF_OK, "/"},
    {"/./", 0, WF_OK, "/"},
    {"/a/.", 0, WF_OK, "/a/"},
    {"/a/./b", 0, WF_OK, "/a/b"},
    {"/a/..", 0, WF_OK, "/"},
    {"/a/../", 0, WF_OK, "/"},
    {"/a/b/..", 0, WF_OK, "/a/"},
    {"/a/b/../c", 0, WF_OK, "/a/c"},
    {"/a/b/../../c", 0, WF_OK, "/c"},
    {"/a/./../b/./c/..", 0, WF_OK, "/b/"},
    {"/.hidden", 0, WF_OK, "/.hidden"},
    {"/.well-known/x", 0, WF_OK, "/.well-known/x"},
    {"/a/...", 0, WF_OK, "/a/..."},
    {"/a/..b", 0, WF_OK, "/a/..b"},
    {"/a/.b./", 0, WF_OK, "/a/.b./"},
    {"/abc/def/../../x", 0, WF_OK, "/x"},
    {"/a/%2e", 0, WF_OK, "/a/"},
    {"/a/%2E%2e", 0, WF_OK, "/"},
    {"/a/b/.%2e/c", 0, WF_OK, "/a/c"},

    /* Decoding. */
    {"/%41%62c", 0, WF_OK, "/Abc"},
    {"/a%20b", 0, WF_OK, "/a b"},
    {"/%25", 0, WF_OK, "/%"},
    {"/%252e%252e/", 0, WF_OK, "/%2e%2e/"},
    {"/a%2Fb", 0, WF_OK, "/a/b"},
    {"/%c3%a9", 0, WF_OK, "/\xc3\xa9"},
    {"/caf%C3%A9.txt", 0, WF_OK, "/caf\xc3\xa9.txt"},

    /* Escaping the root. */
    {"/..", 0, WF_ERROR, NULL},
    {"/../", 0, WF_ERROR, NULL},
    {"/../etc/passwd", 0, WF_ERROR, NULL},
    {"/%2e%2e/", 0, WF_ERROR, NULL},
    {"/%2e%2e", 0, WF_ERROR, NULL},
    {"/%2E%2e%2f..", 0, WF_ERROR, NULL},
    {"/.%2e/x", 0, WF_ERROR, NULL},
    {"/%2e./x", 0, WF_ERROR, NULL},
    {"/a/%2f../..", 0, WF_ERROR, NULL},
    {"/a%2f..%2f..", 0, WF_ERROR, NULL},
    {"//..", 0, WF_ERROR, NULL},
    {"//../x", 0, WF_ERROR, NULL},
    {"/./..", 0, WF_ERROR, NULL},
    {"/a/../..", 0, WF_ERROR, NULL},
    {"/a/b/../../..", 0, WF_ERROR, NULL},
    {"/a/b/../../../etc", 0, WF_ERROR, NULL},
    {"/a/./../../b", 0, WF_ERROR, NULL},
    {"/%2f%2e%2e", 0, WF_ERROR, NULL},

    /* NUL, raw or encoded. */
    {"/%00", 0, WF_ERROR, NULL},
    {"/a%00.html", 0, WF_ERROR, NULL},
    {"/a\0b", 4, WF_ERROR, NULL},
    {"/\0", 2, WF_ERROR, NULL},

    /* Bad escapes. */
    {"/%", 0, WF_ERROR, NULL},
    {"/a%", 0, WF_ERROR, NULL},
    {"/%2", 0, WF_ERROR, NULL},
    {"/%g1", 0, WF_ERROR, NULL},
    {"/%1g", 0, WF_ERROR, NULL},
    {"/%%41", 0, WF_ERROR, NULL},
    {"/% 1", 0, WF_ERROR, NULL},
    {"/%-1", 0, WF_ERROR, NULL},

    /* Not origin-form. */
    {"", 0, WF_ERROR, NULL},
    {"a/b", 0, WF_ERROR, NULL},
    {"%2fa", 0, WF_ERROR, NULL},
    {"../a", 0, WF_ERROR, NULL},
};

static const uri_case_t uri_decode_cases[] = {
    {"", 0, WF_OK, ""},
    {"abc", 0, WF_OK, "abc"},
    {"a%20b", 0, WF_OK, "a b"},
    {"%41%42%43", 0, WF_OK, "ABC"},
    {"%2e%2E/..", 0, WF_OK, "../.."},
    {"%2F", 0, WF_OK, "/"},
    {"%25%32%35", 0, WF_OK, "%25"},
    {"x%fF", 0, WF_OK, "x\xff"},
    {"%", 0, WF_ERROR, NULL},
    {"ab%4", 0, WF_ERROR, NULL},
    {"%zz", 0, WF_ERROR, NULL},
    {"a%G0", 0, WF_ERROR, NULL},
};

/* The output is meant to be appended to a root: it must start with '/', and
 * hold no NUL and no ".." segment. */
static void
uri_assert_safe(const char *p, size_t n)
{
    assert_true(n > 0);
    assert_int_equal(p[0], '/');
    assert_null(memchr(p, '\0', n));
    for (size_t i = 0; i + 2 <= n; i++) {
        if (p[i] == '/' && p[i + 1] == '.' && i + 2 < n && p[i + 2] == '.') {
            assert_false(i + 3 == n || p[i + 3] == '/');
        }
    }
}

static void
test_uri_normalize_table(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(uri_normalize_cases); i++) {
        const uri_case_t *t = &uri_normalize_cases[i];
        size_t len = t->len != 0 ? t->len : strlen(t->in);
        char *out = malloc(len + 1); /* exact room, so ASan sees overruns */
        size_t n = 0;
        int rc;

        rc = wf_uri_normalize(t->in, len, out, &n);
        if (rc != t->rc) {
            print_message("normalize \"%s\": rc %d\n", t->in, rc);
        }
        assert_int_equal(rc, t->rc);
        if (rc == WF_OK) {
            assert_true(n <= len);
            assert_int_equal(n, strlen(t->out));
            assert_memory_equal(out, t->out, n);
            uri_assert_safe(out, n);
        }
        free(out);
    }
}

static void
test_uri_decode_table(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(uri_decode_cases); i++) {
        const uri_case_t *t = &uri_decode_cases[i];
        size_t len = strlen(t->in);
        char *out = malloc(len + 1);
        size_t n = 0;
        int rc;

        rc = wf_uri_decode(t->in, len, out, &n);
        assert_int_equal(rc, t->rc);
        if (rc == WF_OK) {
            assert_int_equal(n, strlen(t->out));
            assert_memory_equal(out, t->out, n);
        }
        free(out);
    }
}

/* A slow model of wf_uri_normalize(): decode everything, then resolve the
 * segments with a stack. */
static int
uri_model(const char *in, size_t len, char *out, size_t *out_len)
{
    char dec[64];
    size_t dn, i = 1, o = 0, starts[64], lens[64];
    int depth = 0;
    bool trailing = false;

    if (len == 0 || in[0] != '/' || wf_uri_decode(in, len, dec, &dn) != WF_OK
        || memchr(dec, '\0', dn) != NULL) {
        return WF_ERROR;
    }
    for (;;) {
        const char *slash = memchr(dec + i, '/', dn - i);
        size_t j = slash != NULL ? (size_t)(slash - dec) : dn;
        size_t sl = j - i;

        trailing = true;
        if (sl == 2 && dec[i] == '.' && dec[i + 1] == '.') {
            if (depth == 0) {
                return WF_ERROR;
            }
            depth--;
        } else if (sl > 0 && !(sl == 1 && dec[i] == '.')) {
            starts[depth] = i;
            lens[depth++] = sl;
            trailing = false;
        }
        if (j == dn) {
            break;
        }
        i = j + 1;
    }
    for (int k = 0; k < depth; k++) {
        out[o++] = '/';
        memcpy(out + o, dec + starts[k], lens[k]);
        o += lens[k];
    }
    if (trailing || o == 0) {
        out[o++] = '/';
    }
    *out_len = o;
    return WF_OK;
}

/* Random paths made of tokens rich in slashes, dots and escapes: whatever
 * comes back must be safe and agree with the model. */
static void
test_uri_normalize_random(void **state)
{
    static const char *const tokens[] = {
        "/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%00", "%", "a", "bc",
    };
    char in[64], out[64], want[64];
    unsigned seed = 12345;

    wf_unused(state);
    for (int round = 0; round < 200000; round++) {
        size_t len = 1, n, wn;
        int rc;

        in[0] = '/';
        for (;;) {
            const char *tok;

            seed = seed * 1103515245u + 12345u;
            tok = tokens[(seed >> 16) % wf_nitems(tokens)];
            if (len + strlen(tok) > sizeof(in) || (seed >> 8) % 9 == 0) {
                break;
            }
            memcpy(in + len, tok, strlen(tok));
            len += strlen(tok);
        }
        rc = wf_uri_normalize(in, len, out, &n);
        assert_int_equal(rc, uri_model(in, len, want, &wn));
        if (rc == WF_OK) {
            assert_true(n <= len);
            uri_assert_safe(out, n);
            assert_int_equal(n, wn);
            assert_memory_equal(out, want, n);
        }
    }
}

/* Unit 1.35's Location for each value (checked against unitd). */
static const struct {
    const char *in, *want;
} uri_loc_cases[] = {
    {"/a?b?c", "/a?b%3Fc"},
    {"/a#b#c", "/a#b%23c"},
    {"/a#b?c", "/a#b%3Fc"},
    {"/a?b#c?d#e", "/a?b#c%3Fd%23e"},
    {"/a|b", "/a%7Cb"},
    {"/a%20b", "/a%20b"},
    {"/a%2", "/a%252"},
    {"/a%20b c", "/a%2520b%20c"},
    {"/q\"<>\\^`{}", "/q%22%3C%3E%5C%5E%60%7B%7D"},
    {"/\xc3\xbc", "/%C3%BC"},
    {"/a\x7f\x01", "/a%7F%01"},
    {"/%41?x#y", "/%41?x#y"},
    {"/a?b%", "/a?b%25"},
    {"/a~!&'()*+,;=:@[]", "/a~!&'()*+,;=:@[]"},
    {"", ""},
};

static void
test_uri_encode_location(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(uri_loc_cases); i++) {
        const char *in = uri_loc_cases[i].in;
        const char *want = uri_loc_cases[i].want;
        char out[64];
        size_t n = wf_uri_encode_location(in, strlen(in), NULL, 0);

        assert_int_equal(n, strlen(want));
        assert_int_equal(wf_uri_encode_location(in, strlen(in), out, n), n);
        assert_memory_equal(out, want, n);
        /* A short buffer gets a prefix and the same length. */
        if (n > 2) {
            memset(out, 'Z', sizeof(out));
            assert_int_equal(wf_uri_encode_location(in, strlen(in), out, 2), n);
            assert_memory_equal(out, want, 2);
            assert_int_equal(out[2], 'Z');
        }
    }
}

int
wf_test_uri(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri_normalize_table),
        cmocka_unit_test(test_uri_decode_table),
        cmocka_unit_test(test_uri_normalize_random),
        cmocka_unit_test(test_uri_encode_location),
    };

    return cmocka_run_group_tests_name("uri", tests, NULL, NULL);
}
