/* Intrusive circular doubly linked lists. */
#ifndef WF_CORE_LIST_H
#define WF_CORE_LIST_H

#include <stdbool.h>

typedef struct wf_list {
    struct wf_list *next;
    struct wf_list *prev;
} wf_list_t;

static inline void
wf_list_init(wf_list_t *head)
{
    head->next = head;
    head->prev = head;
}

static inline bool
wf_list_is_empty(const wf_list_t *head)
{
    return head->next == head;
}

static inline void
wf_list_add_tail(wf_list_t *head, wf_list_t *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

static inline void
wf_list_del(wf_list_t *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->next = node;
    node->prev = node;
}

#define wf_list_for_each(pos, head) \
    for (wf_list_t *pos = (head)->next; pos != (head); pos = pos->next)

/* The same, where the body may unlink (or free) pos, and only pos: the
 * connection walks of a loop's stop and of a listener's removal. */
#define wf_list_for_each_safe(pos, next, head)                            \
    for (wf_list_t *pos = (head)->next, *next = pos->next; pos != (head); \
         pos = next, next = pos->next)

#endif
