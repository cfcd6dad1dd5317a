/* wf_mime_table_create(), wf_mime_table_add() and wf_mime_lookup(). */
#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/pool.h"
#include "http/mime.h"

typedef struct mime_case {
    const char *path;
    const char *type; /* "" when unknown */
} mime_case_t;

/* Unit's defaults. */
static const mime_case_t mime_default_cases[] = {
    {"/index.html", "text/html"},
    {"/a/b.htm", "text/html"},
    {"/INDEX.HTML", "text/html"},
    {"/x.HtMl", "text/html"},
    {"/s.css", "text/css"},
    {"/app.js", "application/javascript"},
    {"/d.json", "application/json"},
    {"/f.xml", "application/xml"},
    {"/i.svg", "image/svg+xml"},
    {"/i.png", "image/png"},
    {"/i.apng", "image/apng"},
    {"/i.jpg", "image/jpeg"},
    {"/i.JPEG", "image/jpeg"},
    {"/i.gif", "image/gif"},
    {"/favicon.ico", "image/x-icon"},
    {"/i.webp", "image/webp"},
    {"/i.avif", "image/avif"},
    {"/i.avifs", "image/avif-sequence"},
    {"/f.woff", "font/woff"},
    {"/f.woff2", "font/woff2"},
    {"/f.ttf", "font/ttf"},
    {"/f.otf", "font/otf"},
    {"/r.txt", "text/plain"},
    {"/r.md", "text/markdown"},
    {"/r.rst", "text/x-rst"},
    {"/feed.rss", "application/rss+xml"},
    {"/feed.atom", "application/atom+xml"},
    {"/d.pdf", "application/pdf"},
    {"/a.zip", "application/zip"},
    {"/s.mp3", "audio/mpeg"},
    {"/s.ogg", "audio/ogg"},
    {"/s.mid", "audio/midi"},
    {"/s.midi", "audio/midi"},
    {"/s.flac", "audio/flac"},
    {"/s.aac", "audio/aac"},
    {"/s.wav", "audio/wav"},
    {"/v.mp4", "video/mp4"},
    {"/v.webm", "video/webm"},
    {"/v.mpeg", "video/mpeg"},
    {"/v.mpg", "video/mpeg"},
    {"/v.avi", "video/x-msvideo"},
    {"/setup.exe", "application/octet-stream"},
    {"/x.bin", "application/octet-stream"},
    {"/x.deb", "application/octet-stream"},
    {"/x.php", "application/x-httpd-php"},
    /* The extension is after the last '.' of the last segment. */
    {"/archive.tar.gz", ""},
    {"/a.html.txt", "text/plain"},
    {"/a.txt.html", "text/html"},
    {"/dir.html/file", ""},
    {"/dir.html/", ""},
    {"/.html", "text/html"},
    {"/a.", ""},
    {"/", ""},
    {"", ""},
    {"index.html", "text/html"},
    {"/README", ""},
    {"/x.wasm", ""},
    {"/x.mjs", ""},
    {"/x.htmlx", ""},
    {"/x.htm l", ""},
};

/* After the additions made in test_mime_add. */
static const mime_case_t mime_added_cases[] = {
    {"/a.log", "text/x-log"},
    {"/A.LOG", "text/x-log"},
    {"/x.wasm", "application/wasm"},
    {"/a.html", "text/html; charset=utf-8"},
    {"/a.HTM", "text/html"},
    {"/README", "text/plain"},
    {"/docs/README", "text/plain"},
    {"/readme", "text/plain"},
    {"/a.README", ""},
    {"/a.css", "text/css"},
};

static void
mime_check(const wf_mime_table_t *t, const mime_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wf_str_t got, path = wf_str_make(cases[i].path, strlen(cases[i].path));

        got = wf_mime_lookup(t, path);
        if (got.len != strlen(cases[i].type)
            || memcmp(got.data, cases[i].type, got.len) != 0) {
            print_message("lookup \"%s\": \"%.*s\", want \"%s\"\n",
                          cases[i].path, (int)got.len, got.data, cases[i].type);
            fail();
        }
    }
}

static void
test_mime_defaults(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    wf_mime_table_t *t;

    wf_unused(state);
    assert_non_null(a);
    t = wf_mime_table_create(a);
    assert_non_null(t);
    mime_check(t, mime_default_cases, wf_nitems(mime_default_cases));
    wf_arena_destroy(a);
}

static void
test_mime_add(void **state)
{
    static const struct {
        const char *type, *ext;
    } adds[] = {
        {"text/x-log", ".log"},
        {"application/wasm", ".WASM"},
        {"text/html; charset=utf-8", ".html"}, /* replaces the default */
        {"text/plain", "README"},
        {"text/x-other", ""}, /* ignored: nothing can match it */
    };
    wf_arena_t *a = wf_arena_create(4096);
    wf_mime_table_t *t;
    char type[32], ext[32];

    wf_unused(state);
    t = wf_mime_table_create(a);
    assert_non_null(t);
    for (size_t i = 0; i < wf_nitems(adds); i++) {
        /* Copies are taken: scribble over the caller's buffers after. */
        snprintf(type, sizeof(type), "%s", adds[i].type);
        snprintf(ext, sizeof(ext), "%s", adds[i].ext);
        assert_int_equal(wf_mime_table_add(t, a,
                                           wf_str_make(type, strlen(type)),
                                           wf_str_make(ext, strlen(ext))),
                         WF_OK);
        memset(type, 'x', sizeof(type));
        memset(ext, 'x', sizeof(ext));
    }
    mime_check(t, mime_added_cases, wf_nitems(mime_added_cases));
    wf_arena_destroy(a);
}

/* Many additions make the table grow; every mapping must survive. */
static void
test_mime_grow(void **state)
{
    wf_arena_t *a = wf_arena_create(4096);
    wf_mime_table_t *t;
    char ext[16], type[32], path[32];
    wf_str_t got;

    wf_unused(state);
    t = wf_mime_table_create(a);
    assert_non_null(t);
    for (int i = 0; i < 1000; i++) {
        int el = snprintf(ext, sizeof(ext), ".e%d", i);
        int tl = snprintf(type, sizeof(type), "x/type-%d", i);

        assert_int_equal(wf_mime_table_add(t, a, wf_str_make(type, (size_t)tl),
                                           wf_str_make(ext, (size_t)el)),
                         WF_OK);
    }
    for (int i = 0; i < 1000; i++) {
        int pl = snprintf(path, sizeof(path), "/d/f.E%d", i);
        int tl = snprintf(type, sizeof(type), "x/type-%d", i);

        got = wf_mime_lookup(t, wf_str_make(path, (size_t)pl));
        assert_int_equal(got.len, (size_t)tl);
        assert_memory_equal(got.data, type, got.len);
    }
    mime_check(t, mime_default_cases, wf_nitems(mime_default_cases));
    wf_arena_destroy(a);
}

int
wf_test_mime(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mime_defaults),
        cmocka_unit_test(test_mime_add),
        cmocka_unit_test(test_mime_grow),
    };

    return cmocka_run_group_tests_name("mime", tests, NULL, NULL);
}
