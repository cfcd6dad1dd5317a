/* Unit's lenient JSON: "//" and block comments, a UTF-8 BOM and trailing
 * commas are accepted; duplicate object keys are rejected.  A pre-pass
 * replaces comments, the BOM and trailing commas by spaces (newlines are
 * kept), so offsets, lines and columns that jansson reports stay those of
 * the original text. */
#ifndef WF_CORE_JSON_H
#define WF_CORE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct wf_json_error {
    char detail[256]; /* human-readable, e.g. "'}' expected" */
    size_t offset;    /* byte offset of the error in the original text */
    int line;         /* 1-based */
    int column;       /* 1-based, in bytes */
} wf_json_error_t;

/* Blanks comments, the BOM and trailing commas of buf[0..len) in place.
 * Returns WF_OK, or WF_ERROR with err filled for an unterminated comment. */
int wf_json_prepass(char *buf, size_t len, wf_json_error_t *err);

/* Parses text[0..len) (copied; text is not modified) as lenient JSON.
 * Returns a new reference, or NULL with err filled. */
json_t *wf_json_parse(const char *text, size_t len, wf_json_error_t *err);

/* JSON value types as Unit's validator names them, for type masks. */
#define WF_JSON_NULL     0x01u
#define WF_JSON_BOOLEAN  0x02u
#define WF_JSON_INTEGER  0x04u
#define WF_JSON_FRACTION 0x08u /* a real that is not an integer */
#define WF_JSON_NUMBER   (WF_JSON_INTEGER | WF_JSON_FRACTION)
#define WF_JSON_STRING   0x10u
#define WF_JSON_ARRAY    0x20u
#define WF_JSON_OBJECT   0x40u

/* Returns the WF_JSON_* bit of v's type (v must not be NULL). */
unsigned wf_json_type_bit(const json_t *v);

/* Returns Unit's name of v's type: "a null", "an integer number", ... */
const char *wf_json_type_name(const json_t *v);

/* Checks that v's type is in mask.  Otherwise writes Unit's message to
 * err[0..errlen) ('The "name" value must be either a string or an array,
 * but not an object.'; with name NULL: 'The configuration must be ...') and
 * returns false. */
bool wf_json_type_check(const json_t *v, unsigned mask, const char *name,
                        char *err, size_t errlen);

#endif
