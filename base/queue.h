/* queue.h -- intrusive, sentinel-headed circular doubly linked lists, as in
 * libuv's queue.h: a node lives inside its owner, no allocation per node. */
#ifndef PP_QUEUE_H
#define PP_QUEUE_H

#include <stddef.h>

typedef struct pp__queue {
  struct pp__queue *next;
  struct pp__queue *prev;
} pp__queue_t;

#define pp__container_of(ptr, type, field)                                     \
  ((type *)((char *)(ptr)-offsetof(type, field)))

static inline void pp__queue_init(pp__queue_t *q) { q->next = q->prev = q; }
static inline int pp__queue_empty(const pp__queue_t *q) { return q->next == q; }

static inline void pp__queue_insert_tail(pp__queue_t *h, pp__queue_t *q) {
  q->next = h;
  q->prev = h->prev;
  h->prev->next = q;
  h->prev = q;
}

static inline void pp__queue_insert_head(pp__queue_t *h, pp__queue_t *q) {
  q->next = h->next;
  q->prev = h;
  h->next->prev = q;
  h->next = q;
}

/* Remove q from whatever list holds it and leave it self-linked, so a
 * second remove is harmless. */
static inline void pp__queue_remove(pp__queue_t *q) {
  q->prev->next = q->next;
  q->next->prev = q->prev;
  q->next = q->prev = q;
}

#define pp__queue_foreach(q, h)                                                \
  for ((q) = (h)->next; (q) != (h); (q) = (q)->next)

#endif
