/* Memory pools.
 *
 * wf_arena_t: a bump allocator for objects that die together (a request, a
 * config snapshot); everything is freed by wf_arena_destroy() or
 * wf_arena_reset(), which first run the cleanup hooks registered with
 * wf_arena_cleanup_add() for what the arena does not hold itself (PCRE2
 * code, JIT memory).
 * wf_fpool_t: a free list of fixed-size objects (connections, buffers), owned
 * by one thread and never locked.
 *
 * With WF_POOL_DEBUG every allocation is its own malloc() and every free a
 * free(), so AddressSanitizer sees overflows and use-after-free. */
#ifndef WF_CORE_POOL_H
#define WF_CORE_POOL_H

#include <stddef.h>

typedef struct wf_arena wf_arena_t;

/* Creates an arena whose blocks hold block_size bytes (larger requests get a
 * block of their own).  Returns NULL when out of memory. */
wf_arena_t *wf_arena_create(size_t block_size);

/* Runs a's cleanup hooks, newest first, then frees the arena and everything
 * allocated from it.  Accepts NULL. */
void wf_arena_destroy(wf_arena_t *a);

/* Runs a's cleanup hooks, newest first, then frees everything allocated
 * from a, keeping its first block for reuse. */
void wf_arena_reset(wf_arena_t *a);

/* Returns n bytes aligned to 16, or NULL when out of memory. */
void *wf_arena_alloc(wf_arena_t *a, size_t n);

/* As wf_arena_alloc(), zero-filled. */
void *wf_arena_calloc(wf_arena_t *a, size_t n);

/* Copies n bytes of s and a terminating NUL into a. */
char *wf_arena_strndup(wf_arena_t *a, const char *s, size_t n);

/* A cleanup hook: releases data, which the arena does not own. */
typedef void (*wf_arena_cleanup_cb)(void *data);

/* Registers fn(data) to run when a is destroyed or reset.  The record lives
 * in a.  Returns WF_OK, or WF_ERROR when out of memory: then fn has not been
 * registered, and the caller still owns data. */
int wf_arena_cleanup_add(wf_arena_t *a, wf_arena_cleanup_cb fn, void *data);

typedef struct wf_fpool {
    size_t size;       /* object size in bytes */
    void *free;        /* singly linked free objects; NULL if none */
    unsigned nfree;    /* objects on the free list */
    unsigned max_free; /* beyond this, freed objects go back to malloc */
} wf_fpool_t;

/* Initialises p for objects of size bytes (at least a pointer). */
void wf_fpool_init(wf_fpool_t *p, size_t size, unsigned max_free);

/* Frees the objects on the free list.  Objects still in use are the caller's
 * to free with free(). */
void wf_fpool_fini(wf_fpool_t *p);

/* Returns an uninitialised object, or NULL when out of memory. */
void *wf_fpool_get(wf_fpool_t *p);

/* Returns obj to p.  Accepts NULL. */
void wf_fpool_put(wf_fpool_t *p, void *obj);

#endif
