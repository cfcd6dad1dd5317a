/* Counted byte strings that point into buffers they do not own. */
#ifndef WF_CORE_STR_H
#define WF_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct wf_str {
    size_t len;
    const char *data; /* borrowed; not NUL-terminated */
} wf_str_t;

#define wf_string(s) ((wf_str_t){sizeof(s) - 1, (s)})
#define wf_null_str  ((wf_str_t){0, NULL})

static inline wf_str_t
wf_str_make(const char *data, size_t len)
{
    return (wf_str_t){len, data};
}

static inline bool
wf_str_eq(wf_str_t a, wf_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static inline char
wf_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c;
}

/* Case-insensitive comparison of ASCII strings. */
static inline bool
wf_str_eq_nocase(wf_str_t a, wf_str_t b)
{
    if (a.len != b.len) {
        return false;
    }
    for (size_t i = 0; i < a.len; i++) {
        if (wf_lower(a.data[i]) != wf_lower(b.data[i])) {
            return false;
        }
    }
    return true;
}

#endif
