#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

/* Pre-pass state: the byte offsets of the last two significant bytes (not
 * whitespace, not comment) seen outside strings; SIZE_MAX when none. */
typedef struct json_scan {
    char *buf;
    size_t len;
    size_t sig;  /* last significant byte */
    size_t prev; /* the significant byte before sig */
} json_scan_t;

static void
json_blank(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            p[i] = ' ';
        }
    }
}

static void
json_error_at(wf_json_error_t *err, const char *buf, size_t off,
              const char *detail)
{
    int line = 1;
    size_t bol = 0;

    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            line++;
            bol = i + 1;
        }
    }
    snprintf(err->detail, sizeof(err->detail), "%s", detail);
    err->offset = off;
    err->line = line;
    err->column = (int)(off - bol) + 1;
}

/* Skips a string starting at the '"' at i; returns the offset after its
 * closing quote (or len when it is unterminated: jansson reports that). */
static size_t
json_skip_string(const char *buf, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (buf[i] == '\\') {
            i++;
        } else if (buf[i] == '"') {
            return i + 1;
        }
    }
    return len;
}

/* Blanks the comment starting at the '/' at i.  Returns the offset after
 * it, or SIZE_MAX when a block comment is unterminated. */
static size_t
json_skip_comment(char *buf, size_t len, size_t i)
{
    size_t end;

    if (buf[i + 1] == '/') {
        for (end = i + 2; end < len && buf[end] != '\n'; end++) {
            /* the newline itself stays */
        }
        json_blank(buf + i, end - i);
        return end;
    }
    for (end = i + 2; end + 1 < len; end++) {
        if (buf[end] == '*' && buf[end + 1] == '/') {
            json_blank(buf + i, end + 2 - i);
            return end + 2;
        }
    }
    return SIZE_MAX;
}

/* A '}' or ']' at i: blank a comma right before it, unless the comma
 * itself starts the text or follows an opening bracket or another comma
 * ("[,]" stays an error). */
static void
json_close(json_scan_t *s, size_t i)
{
    char before;

    if (s->sig != SIZE_MAX && s->buf[s->sig] == ',' && s->prev != SIZE_MAX) {
        before = s->buf[s->prev];
        if (before != '[' && before != '{' && before != ',') {
            s->buf[s->sig] = ' ';
            s->sig = s->prev;
        }
    }
    s->prev = s->sig;
    s->sig = i;
}

static void
json_significant(json_scan_t *s, size_t i)
{
    s->prev = s->sig;
    s->sig = i;
}

int
wf_json_prepass(char *buf, size_t len, wf_json_error_t *err)
{
    json_scan_t s = {buf, len, SIZE_MAX, SIZE_MAX};
    size_t i = 0;
    size_t next;

    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
        json_blank(buf, 3);
        i = 3;
    }
    while (i < len) {
        char c = buf[i];

        if (c == '"') {
            json_significant(&s, i);
            i = json_skip_string(buf, len, i);
            continue;
        }
        if (c == '/' && i + 1 < len
            && (buf[i + 1] == '/' || buf[i + 1] == '*')) {
            next = json_skip_comment(buf, len, i);
            if (next == SIZE_MAX) {
                json_error_at(err, buf, i,
                              "Unexpected end of JSON payload: the "
                              "multi-line comment that starts here is "
                              "not closed.");
                return WF_ERROR;
            }
            i = next;
            continue;
        }
        if (c == '}' || c == ']') {
            json_close(&s, i);
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            json_significant(&s, i);
        }
        i++;
    }
    return WF_OK;
}

/* jansson's position is just past the token it complains about ("near
 * '\"b\"'"); move it back to the token's first byte when the text names a
 * token that ends there, so that the location points at the culprit. */
static size_t
json_token_start(const char *buf, size_t pos, const char *text)
{
    const char *near = strstr(text, " near '");
    size_t n;

    if (near == NULL) {
        return pos;
    }
    near += strlen(" near '");
    n = strlen(near);
    if (n == 0 || near[n - 1] != '\'') {
        return pos;
    }
    n--;
    if (n == 0 || n > pos || memcmp(buf + pos - n, near, n) != 0) {
        return pos;
    }
    return pos - n;
}

json_t *
wf_json_parse(const char *text, size_t len, wf_json_error_t *err)
{
    json_error_t jerr;
    json_t *root;
    char *copy;

    memset(err, 0, sizeof(*err));
    copy = malloc(len + 1);
    if (copy == NULL) {
        snprintf(err->detail, sizeof(err->detail), "Out of memory.");
        return NULL;
    }
    if (len > 0) {
        memcpy(copy, text, len);
    }
    copy[len] = '\0';

    if (wf_json_prepass(copy, len, err) != WF_OK) {
        free(copy);
        return NULL;
    }
    root =
        json_loadb(copy, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        /* jansson counts columns in characters; recompute both from the
         * byte offset so that they agree with "offset" and the header. */
        size_t pos = wf_min((size_t)jerr.position, len);

        json_error_at(err, copy, json_token_start(copy, pos, jerr.text),
                      jerr.text);
    }
    free(copy);
    return root;
}

unsigned
wf_json_type_bit(const json_t *v)
{
    static const unsigned bits[] = {
        [JSON_OBJECT] = WF_JSON_OBJECT, [JSON_ARRAY] = WF_JSON_ARRAY,
        [JSON_STRING] = WF_JSON_STRING, [JSON_INTEGER] = WF_JSON_INTEGER,
        [JSON_REAL] = WF_JSON_FRACTION, [JSON_TRUE] = WF_JSON_BOOLEAN,
        [JSON_FALSE] = WF_JSON_BOOLEAN, [JSON_NULL] = WF_JSON_NULL,
    };

    return bits[json_typeof(v)];
}

/* Unit's names, in the order of the WF_JSON_* bits. */
static const char *const json_type_names[] = {
    "a null",   "a boolean", "an integer number", "a fractional number",
    "a string", "an array",  "an object",
};

static const char *
json_bit_name(unsigned bit)
{
    return json_type_names[__builtin_ctz(bit)];
}

const char *
wf_json_type_name(const json_t *v)
{
    return json_bit_name(wf_json_type_bit(v));
}

/* Writes "a string", "either a string or an array", "either a null, a
 * boolean, or an object" for mask into buf. */
static void
json_describe(unsigned mask, char *buf, size_t cap)
{
    unsigned n = (unsigned)__builtin_popcount(mask);
    size_t used = 0;

    buf[0] = '\0';
    if (n > 1) {
        used += (size_t)snprintf(buf, cap, "either ");
    }
    for (unsigned left = n; mask != 0 && used < cap; left--) {
        unsigned bit = mask & -mask;
        const char *sep = "";

        mask &= ~bit;
        if (left > 2) {
            sep = ", ";
        } else if (left == 2) {
            sep = n > 2 ? ", or " : " or ";
        }
        used += (size_t)snprintf(buf + used, cap - used, "%s%s",
                                 json_bit_name(bit), sep);
    }
}

bool
wf_json_type_check(const json_t *v, unsigned mask, const char *name, char *err,
                   size_t errlen)
{
    char expected[160];

    if ((wf_json_type_bit(v) & mask) != 0) {
        return true;
    }
    json_describe(mask, expected, sizeof(expected));
    if (name == NULL) {
        snprintf(err, errlen, "The configuration must be %s, but not %s.",
                 expected, wf_json_type_name(v));
    } else {
        snprintf(err, errlen, "The \"%s\" value must be %s, but not %s.", name,
                 expected, wf_json_type_name(v));
    }
    return false;
}
