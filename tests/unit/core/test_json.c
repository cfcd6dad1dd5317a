/* Lenient JSON: the pre-pass (comments, BOM, trailing commas) and the
 * parser's error reports. */
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/json.h"
#include "unit.h"

/* in: the text; out: what the pre-pass leaves (same length), or NULL when it
 * must fail at line:column. */
static const struct {
    const char *in;
    const char *out;
    int line;
    int column;
} prepass_rows[] = {
    /* nothing to do */
    {"{}", "{}", 0, 0},
    {"", "", 0, 0},
    {"[1, 2, 3]", "[1, 2, 3]", 0, 0},
    {"{\"a\": \"b\"}", "{\"a\": \"b\"}", 0, 0},
    /* comments inside strings are text */
    {"{\"a\": \"// no\"}", "{\"a\": \"// no\"}", 0, 0},
    {"{\"a\": \"/* no */\"}", "{\"a\": \"/* no */\"}", 0, 0},
    {"{\"//\": 1}", "{\"//\": 1}", 0, 0},
    {"[\"a\\\"// still a string\"]", "[\"a\\\"// still a string\"]", 0, 0},
    {"[\"\\\\\"// c\n]", "[\"\\\\\"    \n]", 0, 0},
    {"[\"/*\", \"*/\"]", "[\"/*\", \"*/\"]", 0, 0},
    /* line comments */
    {"// c\n{}", "    \n{}", 0, 0},
    {"{} // end", "{}       ", 0, 0},
    {"{\"a\": 1 // one\n}", "{\"a\": 1       \n}", 0, 0},
    {"{\"a\": 1 // one\r\n}", "{\"a\": 1        \n}", 0, 0},
    {"//", "  ", 0, 0},
    {"// /* not a block\n1", "                 \n1", 0, 0},
    /* block comments, newlines kept */
    {"/**/{}", "    {}", 0, 0},
    {"/* a\nb */{}", "    \n    {}", 0, 0},
    {"{/* x */\"a\":/**/1}", "{       \"a\":    1}", 0, 0},
    {"/* // */1", "        1", 0, 0},
    {"/***/1", "     1", 0, 0},
    {"/* a * / b */1", "             1", 0, 0},
    /* not nested: the first star-slash ends the comment */
    {"/* /* */ */", "         */", 0, 0},
    /* a lone slash is jansson's to refuse */
    {"1/2", "1/2", 0, 0},
    {"[/]", "[/]", 0, 0},
    /* BOM */
    {"\xEF\xBB\xBF{}", "   {}", 0, 0},
    {"\xEF\xBB\xBF", "   ", 0, 0},
    {"{\"\xEF\xBB\xBF\": 1}", "{\"\xEF\xBB\xBF\": 1}", 0, 0},
    /* trailing commas */
    {"[1,]", "[1 ]", 0, 0},
    {"[1, 2, ]", "[1, 2  ]", 0, 0},
    {"{\"a\": 1,}", "{\"a\": 1 }", 0, 0},
    {"{\"a\": [1,],}", "{\"a\": [1 ] }", 0, 0},
    {"[1,\n]", "[1 \n]", 0, 0},
    {"[1, // c\n]", "[1      \n]", 0, 0},
    {"[1, /* c */ ]", "[1          ]", 0, 0},
    {"[[],{},]", "[[],{} ]", 0, 0},
    {"[\"a\",]", "[\"a\" ]", 0, 0},
    {"{\"a,\": \",\",}", "{\"a,\": \",\" }", 0, 0},
    {"[\",]\"]", "[\",]\"]", 0, 0},
    /* commas that are errors stay */
    {"[,]", "[,]", 0, 0},
    {"{,}", "{,}", 0, 0},
    {"[1,,]", "[1,,]", 0, 0},
    {",]", ",]", 0, 0},
    /* unterminated block comments */
    {"/*", NULL, 1, 1},
    {"{\n  /* abc", NULL, 2, 3},
    {"[1,\n2]\n\n /* x\n", NULL, 4, 2},
    {"/*/", NULL, 1, 1},
    {"{} /* *", NULL, 1, 4},
};

static void
test_prepass_table(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(prepass_rows); i++) {
        char buf[256];
        size_t len = strlen(prepass_rows[i].in);
        wf_json_error_t err;
        int rc;

        memcpy(buf, prepass_rows[i].in, len + 1);
        rc = wf_json_prepass(buf, len, &err);
        if (prepass_rows[i].out == NULL) {
            assert_int_equal(rc, WF_ERROR);
            assert_int_equal(err.line, prepass_rows[i].line);
            assert_int_equal(err.column, prepass_rows[i].column);
            continue;
        }
        if (rc != WF_OK || strcmp(buf, prepass_rows[i].out) != 0) {
            print_message("row %zu: [%s] -> [%s]\n", i, prepass_rows[i].in,
                          buf);
        }
        assert_int_equal(rc, WF_OK);
        assert_string_equal(buf, prepass_rows[i].out);
    }
}

/* in: lenient JSON; ok: parses; else the error and its location. */
static const struct {
    const char *in;
    bool ok;
    const char *detail; /* substring */
    int line;
    int column;
    size_t offset;
} parse_rows[] = {
    {"{}", true, NULL, 0, 0, 0},
    {"\"any value\"", true, NULL, 0, 0, 0},
    {"42", true, NULL, 0, 0, 0},
    {"[1, 2,]", true, NULL, 0, 0, 0},
    {"// c\n{\"a\": /* one */ 1, /* two */ \"b\": 2,}\n", true, NULL, 0, 0, 0},
    {"\xEF\xBB\xBF{\"a\": 1}", true, NULL, 0, 0, 0},
    {"{\"a\": 1, \"a\": 2}", false, "duplicate", 1, 10, 9},
    {"{\"a\": {\"b\": 1, \"b\": 1}}", false, "duplicate", 1, 16, 15},
    {"// c\n{\n \"a\": 1\n \"b\": 2}", false, "'}' expected", 4, 2, 16},
    {"/* one\ntwo */ {\"a\" 1}", false, "':' expected", 2, 13, 19},
    {"{\"a\": 1} x", false, "end of file expected", 1, 10, 9},
    {"", false, "end of file", 1, 1, 0},
    {"{\n  /* open", false, "comment", 2, 3, 4},
    {"[,]", false, "unexpected token", 1, 2, 1},
    {"{\"\xC3\xA9\": x}", false, "invalid token", 1, 8, 7},
    {"[1 2]", false, "']' expected", 1, 4, 3},
    {"{\"a\": \"\\u0000\"}", false, "\\u0000", 0, 0, 0},
};

static void
test_parse_table(void **state)
{
    wf_unused(state);
    for (size_t i = 0; i < wf_nitems(parse_rows); i++) {
        wf_json_error_t err;
        json_t *v =
            wf_json_parse(parse_rows[i].in, strlen(parse_rows[i].in), &err);

        if (parse_rows[i].ok) {
            assert_non_null(v);
            json_decref(v);
            continue;
        }
        if (v != NULL || strstr(err.detail, parse_rows[i].detail) == NULL) {
            print_message("row %zu: %s\n", i,
                          v != NULL ? "parsed" : err.detail);
        }
        assert_null(v);
        assert_non_null(strstr(err.detail, parse_rows[i].detail));
        if (parse_rows[i].line == 0) {
            continue;
        }
        if (err.line != parse_rows[i].line || err.column != parse_rows[i].column
            || err.offset != parse_rows[i].offset) {
            print_message("row %zu: %d:%d @%zu\n", i, err.line, err.column,
                          err.offset);
        }
        assert_int_equal(err.line, parse_rows[i].line);
        assert_int_equal(err.column, parse_rows[i].column);
        assert_int_equal(err.offset, parse_rows[i].offset);
    }
}

/* The text is not modified, and a missing NUL terminator is fine. */
static void
test_parse_leaves_input(void **state)
{
    const char text[] = "[1,/*x*/]garbage";
    wf_json_error_t err;
    json_t *v;

    wf_unused(state);
    v = wf_json_parse(text, 9, &err);
    assert_non_null(v);
    assert_int_equal(json_array_size(v), 1);
    assert_string_equal(text, "[1,/*x*/]garbage");
    json_decref(v);
}

static void
test_type_messages(void **state)
{
    char err[256];
    json_t *v = json_integer(3);

    wf_unused(state);
    assert_true(wf_json_type_check(v, WF_JSON_INTEGER, "x", err, sizeof(err)));
    assert_false(wf_json_type_check(v, WF_JSON_STRING, "x", err, sizeof(err)));
    assert_string_equal(err, "The \"x\" value must be a string, but not an "
                             "integer number.");
    assert_false(wf_json_type_check(v, WF_JSON_STRING | WF_JSON_ARRAY, "uri",
                                    err, sizeof(err)));
    assert_string_equal(err, "The \"uri\" value must be either a string or an "
                             "array, but not an integer number.");
    assert_false(
        wf_json_type_check(v, WF_JSON_NULL | WF_JSON_STRING | WF_JSON_OBJECT,
                           "y", err, sizeof(err)));
    assert_string_equal(err, "The \"y\" value must be either a null, a "
                             "string, or an object, but not an integer "
                             "number.");
    json_decref(v);
    v = json_array();
    assert_false(wf_json_type_check(v, WF_JSON_OBJECT, NULL, err, sizeof(err)));
    assert_string_equal(err, "The configuration must be an object, but not an "
                             "array.");
    json_decref(v);
}

int
wf_test_json(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepass_table),
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_leaves_input),
        cmocka_unit_test(test_type_messages),
    };

    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
