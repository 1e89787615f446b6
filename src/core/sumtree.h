/* sumtree.h — the one order in which lmforge adds a run of operands that arrive one after another: the micro-batches'
 * gradients of a step, and the data-parallel ranks' contributions to a reduction.
 *
 * The order is the binary counter's: each operand joins the newest block; two blocks of the same size (a power of
 * two) are added as soon as both exist, the older on the left; at the end the blocks left (sizes falling) are
 * added from the right. Over n operands that is the tree that splits [0, n) at the largest power of two below n.
 *
 * Why this tree: a single process's step of k micro-batches and a data-parallel run of d ranks taking k / d
 * consecutive micro-batches each add the same numbers in the same order whenever k / d is a power of two (one
 * micro-batch a rank included): each rank's run is a whole subtree of the process's tree, and the ranks' sums form
 * its top. Floating-point addition commutes but does not associate, so that equality of order is what makes such
 * runs bit-identical to one process (docs/distributed.md), in bf16 too, where an ulp can move a product's rounding.
 *
 * The additions are the caller's (add(ctx, dst, src): dst = dst + src over whatever the ids name); since a + b is
 * b + a bit for bit, which of the two operands receives a sum is free, and push lets the caller choose. */
#ifndef LMF_CORE_SUMTREE_H
#define LMF_CORE_SUMTREE_H

#include <stddef.h>

#define LMF_SUMTREE_MAX 64 /* blocks: one per bit of the operand count */

typedef void (*lmf_sumtree_add)(void *ctx, int dst, int src);

typedef struct {
    int id[LMF_SUMTREE_MAX], size[LMF_SUMTREE_MAX];
    int depth;
} lmf_sumtree;

static inline void lmf_sumtree_reset(lmf_sumtree *t) { t->depth = 0; }

/* Operand id arrives (held where id says). Runs the additions now due and returns the id that holds the newest
 * block: an older block's id when it took the sum (into_new 0), else id. With last, the run ends: every block left is
 * added and the returned id holds the total. into_new 1 puts every sum in id (the caller's newest buffer), so the
 * total lands where the last operand was. */
int lmf_sumtree_push(lmf_sumtree *t, int id, int last, int into_new, lmf_sumtree_add add, void *ctx);
/* The ids of the blocks it still holds (the others are free), into out (room for LMF_SUMTREE_MAX); returns how many. */
int lmf_sumtree_held(const lmf_sumtree *t, int *out);
/* Sums n blocks of len floats (block q at ops + q * len) in place in that order; returns the block holding the
 * total. */
int lmf_sumtree_blocks(float *ops, size_t len, int n);

#endif
