/* sort.c — see sort.h. */
#include "core/sort.h"

int lmf_by_key(const void *a, const void *b) {
    const lmf_keyed *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}
