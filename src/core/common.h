/* Definitions every Wharf source file may include: return codes, helpers for
 * containers and unused parameters, assertions. */
#ifndef WF_CORE_COMMON_H
#define WF_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define WF_OK       0
#define WF_ERROR    -1 /* already logged */
#define WF_AGAIN    -2 /* would block, or needs more input */
#define WF_DECLINED -3 /* not mine, try the next */

#define wf_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define wf_unused(x) ((void)(x))

#define wf_nitems(a) (sizeof(a) / sizeof((a)[0]))

#define wf_likely(x)   __builtin_expect(!!(x), 1)
#define wf_unlikely(x) __builtin_expect(!!(x), 0)

#define wf_min(a, b) ((a) < (b) ? (a) : (b))
#define wf_max(a, b) ((a) > (b) ? (a) : (b))

#ifdef WF_DEBUG_ASSERT
#include <stdio.h>
#include <stdlib.h>
#define WF_ASSERT(cond)                                                   \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: assertion \"%s\" failed\n", __FILE__, \
                    __LINE__, #cond);                                     \
            abort();                                                      \
        }                                                                 \
    } while (0)
#else
#define WF_ASSERT(cond) ((void)0)
#endif

/* Allocation for start-up code: logs and exits when memory is exhausted. */
void *wf_xalloc(size_t size);
void *wf_xcalloc(size_t n, size_t size);
char *wf_xstrdup(const char *s);

#endif
