#include "core/pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

#define WF_ARENA_ALIGN 16

typedef struct wf_arena_block {
    struct wf_arena_block *next;
    char *pos;   /* next free byte */
    char *end;   /* end of this block */
    char data[]; /* aligned by the allocation below */
} wf_arena_block_t;

typedef struct wf_arena_cleanup {
    struct wf_arena_cleanup *next;
    wf_arena_cleanup_cb fn;
    void *data;
} wf_arena_cleanup_t;

struct wf_arena {
    size_t block_size;
    wf_arena_cleanup_t *cleanups; /* newest first; in the arena's blocks */
    wf_arena_block_t *head;       /* current block */
    wf_arena_block_t *first;      /* kept by wf_arena_reset(); NULL in debug */
};

static wf_arena_block_t *
arena_block_create(size_t size)
{
    wf_arena_block_t *blk;

    blk = malloc(sizeof(*blk) + size + WF_ARENA_ALIGN);
    if (blk == NULL) {
        return NULL;
    }
    blk->next = NULL;
    blk->pos = blk->data;
    blk->end = blk->data + size + WF_ARENA_ALIGN;
    return blk;
}

wf_arena_t *
wf_arena_create(size_t block_size)
{
    wf_arena_t *a;

    a = malloc(sizeof(*a));
    if (a == NULL) {
        return NULL;
    }
    a->block_size = block_size;
    a->cleanups = NULL;
#ifdef WF_POOL_DEBUG
    a->head = NULL;
#else
    a->head = arena_block_create(block_size);
    if (a->head == NULL) {
        free(a);
        return NULL;
    }
#endif
    a->first = a->head;
    return a;
}

/* Runs the cleanup hooks before the blocks that hold their records go. */
static void
arena_run_cleanups(wf_arena_t *a)
{
    while (a->cleanups != NULL) {
        wf_arena_cleanup_t *cl = a->cleanups;

        a->cleanups = cl->next;
        cl->fn(cl->data);
    }
}

/* Frees every block but keep (NULL: all of them). */
static void
arena_free_blocks(wf_arena_t *a, wf_arena_block_t *keep)
{
    wf_arena_block_t *blk;

    arena_run_cleanups(a);
    blk = a->head;

    while (blk != NULL) {
        wf_arena_block_t *next = blk->next;

        if (blk != keep) {
            free(blk);
        }
        blk = next;
    }
    a->head = keep;
    if (keep != NULL) {
        keep->next = NULL;
        keep->pos = keep->data;
    }
}

void
wf_arena_destroy(wf_arena_t *a)
{
    if (a == NULL) {
        return;
    }
    arena_free_blocks(a, NULL);
    free(a);
}

void
wf_arena_reset(wf_arena_t *a)
{
    arena_free_blocks(a, a->first);
}

static char *
arena_align(char *p)
{
    uintptr_t u = (uintptr_t)p;

    u = (u + WF_ARENA_ALIGN - 1) & ~(uintptr_t)(WF_ARENA_ALIGN - 1);
    return (char *)u;
}

void *
wf_arena_alloc(wf_arena_t *a, size_t n)
{
    wf_arena_block_t *blk;
    char *p;

#ifndef WF_POOL_DEBUG
    blk = a->head;
    p = arena_align(blk->pos);
    if (p <= blk->end && n <= (size_t)(blk->end - p)) {
        blk->pos = p + n;
        return p;
    }
    if (n <= a->block_size / 4) {
        /* Start a fresh standard block; the rest of the old one is lost. */
        blk = arena_block_create(a->block_size);
    } else {
        blk = arena_block_create(n);
    }
#else
    blk = arena_block_create(n);
#endif
    if (blk == NULL) {
        return NULL;
    }
    p = arena_align(blk->pos);
    blk->pos = p + n;
#ifndef WF_POOL_DEBUG
    if (n > a->block_size / 4) {
        /* A big block goes behind the current one, which stays in use. */
        blk->next = a->head->next;
        a->head->next = blk;
        return p;
    }
#endif
    blk->next = a->head;
    a->head = blk;
    return p;
}

void *
wf_arena_calloc(wf_arena_t *a, size_t n)
{
    void *p = wf_arena_alloc(a, n);

    if (p != NULL) {
        memset(p, 0, n);
    }
    return p;
}

char *
wf_arena_strndup(wf_arena_t *a, const char *s, size_t n)
{
    char *p = wf_arena_alloc(a, n + 1);

    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int
wf_arena_cleanup_add(wf_arena_t *a, wf_arena_cleanup_cb fn, void *data)
{
    wf_arena_cleanup_t *cl = wf_arena_alloc(a, sizeof(*cl));

    if (cl == NULL) {
        return WF_ERROR;
    }
    cl->fn = fn;
    cl->data = data;
    cl->next = a->cleanups;
    a->cleanups = cl;
    return WF_OK;
}

void
wf_fpool_init(wf_fpool_t *p, size_t size, unsigned max_free)
{
    p->size = wf_max(size, sizeof(void *));
    p->free = NULL;
    p->nfree = 0;
    p->max_free = max_free;
}

void
wf_fpool_fini(wf_fpool_t *p)
{
    while (p->free != NULL) {
        void *next = *(void **)p->free;

        free(p->free);
        p->free = next;
    }
    p->nfree = 0;
}

void *
wf_fpool_get(wf_fpool_t *p)
{
#ifndef WF_POOL_DEBUG
    if (p->free != NULL) {
        void *obj = p->free;

        p->free = *(void **)obj;
        p->nfree--;
        return obj;
    }
#endif
    return malloc(p->size);
}

void
wf_fpool_put(wf_fpool_t *p, void *obj)
{
    wf_unused(p); /* with WF_POOL_DEBUG every object goes back to free() */
    if (obj == NULL) {
        return;
    }
#ifndef WF_POOL_DEBUG
    if (p->nfree < p->max_free) {
        *(void **)obj = p->free;
        p->free = obj;
        p->nfree++;
        return;
    }
#endif
    free(obj);
}
