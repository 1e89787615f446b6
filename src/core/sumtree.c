/* sumtree.c — see sumtree.h. */
#include "core/sumtree.h"
#include "core/status.h"

#include <stddef.h>

int lmf_sumtree_push(lmf_sumtree *t, int id, int last, int into_new, lmf_sumtree_add add, void *ctx) {
    int cur = id, size = 1;
    while (t->depth > 0 && (last || t->size[t->depth - 1] == size)) {
        int older = t->id[--t->depth];
        if (into_new) {
            add(ctx, cur, older);
        } else {
            add(ctx, older, cur);
            cur = older;
        }
        size += t->size[t->depth];
    }
    if (!last) {
        LMF_CHECK(t->depth < LMF_SUMTREE_MAX);
        t->id[t->depth] = cur, t->size[t->depth++] = size;
    }
    return cur;
}

int lmf_sumtree_held(const lmf_sumtree *t, int *out) {
    for (int i = 0; i < t->depth; i++) out[i] = t->id[i];
    return t->depth;
}

typedef struct {
    float *ops;
    size_t len;
} blocks;

static void add_block(void *ctx, int dst, int src) {
    const blocks *b = ctx;
    float *d = b->ops + (size_t)dst * b->len;
    const float *s = b->ops + (size_t)src * b->len;
    for (size_t i = 0; i < b->len; i++) d[i] += s[i];
}

int lmf_sumtree_blocks(float *ops, size_t len, int n) {
    blocks c = {ops, len};
    lmf_sumtree t;
    lmf_sumtree_reset(&t);
    int total = 0;
    for (int q = 0; q < n; q++) total = lmf_sumtree_push(&t, q, q == n - 1, 0, add_block, &c);
    return total;
}
