/* sort.h — a (key, index) pair and its qsort comparator, for putting an array's items in the order of one number
 * each: by key, ties by index, so the order is the same on every libc. A descending key sorts as ~key. */
#ifndef LMF_CORE_SORT_H
#define LMF_CORE_SORT_H

#include <stdint.h>

typedef struct {
    uint64_t key;
    int64_t index;
} lmf_keyed;

int lmf_by_key(const void *a, const void *b); /* qsort comparator over lmf_keyed */

#endif
