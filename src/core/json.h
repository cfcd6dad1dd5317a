/* Unit's lenient JSON: "//" and "/* */" comments, a UTF-8 BOM and trailing
 * commas are accepted; duplicate object keys are rejected.  A pre-pass
 * replaces comments, the BOM and trailing commas by spaces (newlines are
 * kept), so offsets, lines and columns that jansson reports stay those of
 * the original text. */
#ifndef WF_CORE_JSON_H
#define WF_CORE_JSON_H

#include <jansson.h>
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

#endif
