/* sumtree.h — the one order in which lmforge adds a run of operands that arrive one after another: the micro-batches'
 * gradients of a step, and the data-parallel ranks' contributions to a reduction.
 *
 * The order is a fixed tree over the n operands: [lo, hi) is the sum of [lo, mid) and [mid, hi), mid = lo +
 * ceil((hi - lo) / 2), each half the same way down to single operands. Operands arrive in index order; two sums
 * that are a node's halves are added as soon as both exist (the left one, older, on the left), so at most about
 * log2 n partial sums wait at any time.
 *
 * Why this tree: halving only depends on a range's length, so a single process's step of k micro-batches and a
 * data-parallel run of d ranks taking k / d consecutive micro-batches each add the same numbers in the same order
 * whenever d is a power of two (any k / d), or d = k: each rank's run is a whole subtree of the process's tree and
 * the ranks' sums, added in the same tree over ranks, are its top. Floating-point addition commutes but does not
 * associate, so that equality of order is what makes such runs bit-identical to one process (docs/distributed.md),
 * in bf16 too, where an ulp can move a product's rounding.
 *
 * The additions are the caller's (add(ctx, dst, src): dst = dst + src over whatever the ids name); since a + b is
 * b + a bit for bit, which of the two operands receives a sum is free, and push lets the caller choose. */
#ifndef LMF_CORE_SUMTREE_H
#define LMF_CORE_SUMTREE_H

#include <stddef.h>

#define LMF_SUMTREE_MAX 64 /* partial sums waiting: at most one per level of the tree */

typedef void (*lmf_sumtree_add)(void *ctx, int dst, int src);

typedef struct {
    int n, count; /* operands in all; arrived so far */
    int lo[LMF_SUMTREE_MAX], hi[LMF_SUMTREE_MAX], id[LMF_SUMTREE_MAX]; /* the waiting sums, oldest first */
    int depth;
} lmf_sumtree;

/* Starts a run of n operands. */
void lmf_sumtree_reset(lmf_sumtree *t, int n);
/* The next operand arrives, held where id says. Runs the additions now due and returns the id that holds the newest
 * sum: an older sum's id when it took the additions (into_new 0), else id (into_new 1 puts every sum in id). After
 * the n-th operand the returned id holds the total and nothing waits. */
int lmf_sumtree_push(lmf_sumtree *t, int id, int into_new, lmf_sumtree_add add, void *ctx);
/* The most sums that wait at once, the newest operand included, over a run of n. */
int lmf_sumtree_most(int n);
/* Sums n blocks of len floats (block q at ops + q * len) in place in that order; returns the block holding the
 * total. */
int lmf_sumtree_blocks(float *ops, size_t len, int n);

#endif
