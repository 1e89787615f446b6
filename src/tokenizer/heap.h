/* heap.h — a binary min-heap over items of one size, ordered by a `before` callback: the BPE encoder's merge queue
 * and the trainer's pair queue. static inline, so each caller's copy is compiled for its own item size and
 * comparator (a constant size and a known callback: plain moves and an inlined compare in the hot loops). */
#ifndef LMF_TOKENIZER_HEAP_H
#define LMF_TOKENIZER_HEAP_H

#include <stddef.h>
#include <string.h>

typedef int (*lmf_heap_before)(const void *a, const void *b); /* nonzero: a comes out before b */

/* Adds *item to the n items of heap (room for one more is the caller's). */
static inline void lmf_heap_push(void *heap, size_t *n, size_t size, const void *item, lmf_heap_before before) {
    char *h = heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(item, h + p * size)) break;
        memcpy(h + i * size, h + p * size, size);
        i = p;
    }
    memcpy(h + i * size, item, size);
}

/* Takes the first of the n (> 0) items into *top. */
static inline void lmf_heap_pop(void *heap, size_t *n, size_t size, void *top, lmf_heap_before before) {
    char *h = heap;
    memcpy(top, h, size);
    size_t len = --*n, i = 0;
    const char *last = h + len * size; /* stays put: the sift below writes only below len */
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const char *best = last;
        if (l < len && before(h + l * size, best)) m = l, best = h + l * size;
        if (r < len && before(h + r * size, best)) m = r;
        if (m == i) break;
        memcpy(h + i * size, h + m * size, size);
        i = m;
    }
    if (len) memcpy(h + i * size, last, size);
}

#endif
