/* sumtree.c — see sumtree.h. */
#include "core/sumtree.h"
#include "core/status.h"

void lmf_sumtree_reset(lmf_sumtree *t, int n) {
    LMF_CHECK(n >= 1);
    t->n = n, t->count = 0, t->depth = 0;
}

/* Whether [a, c) is a node of the tree over [0, n) whose halves meet at b. */
static int halves(int n, int a, int b, int c) {
    for (int lo = 0, hi = n; hi - lo > 1;) {
        int mid = lo + (hi - lo + 1) / 2;
        if (lo == a && hi == c) return mid == b;
        if (c <= mid) hi = mid;
        else if (a >= mid) lo = mid;
        else return 0;
    }
    return 0;
}

int lmf_sumtree_push(lmf_sumtree *t, int id, int into_new, lmf_sumtree_add add, void *ctx) {
    LMF_CHECK(t->count < t->n && t->depth < LMF_SUMTREE_MAX);
    int d = t->depth++;
    t->lo[d] = t->count, t->hi[d] = ++t->count, t->id[d] = id;
    while (t->depth >= 2) {
        int r = t->depth - 1, l = r - 1;
        if (!halves(t->n, t->lo[l], t->lo[r], t->hi[r])) break;
        if (into_new) {
            add(ctx, t->id[r], t->id[l]);
            t->id[l] = t->id[r];
        } else {
            add(ctx, t->id[l], t->id[r]);
        }
        t->hi[l] = t->hi[r], t->depth--;
    }
    return t->id[t->depth - 1];
}

static void no_add(void *ctx, int dst, int src) { (void)ctx, (void)dst, (void)src; }

int lmf_sumtree_most(int n) {
    lmf_sumtree t;
    lmf_sumtree_reset(&t, n);
    int most = 0;
    for (int q = 0; q < n; q++) {
        most = t.depth + 1 > most ? t.depth + 1 : most;
        lmf_sumtree_push(&t, q, 0, no_add, NULL);
    }
    return most;
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
    lmf_sumtree_reset(&t, n);
    int total = 0;
    for (int q = 0; q < n; q++) total = lmf_sumtree_push(&t, q, 0, add_block, &c);
    return total;
}
