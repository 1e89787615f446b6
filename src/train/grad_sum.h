/* grad_sum.h — a step's micro-batch gradients added in core/sumtree.h's order.
 *
 * Each micro-batch's backward writes its gradient into zeroed gradients (as if it were the step's only one), and
 * the step adds those gradients in sumtree's fixed tree (halves of halves, each pair added as soon as both exist).
 * A data-parallel run adds its ranks' sums in the same tree (comm.h), so one process and d ranks taking k / d
 * consecutive micro-batches each add the same numbers in the same order whenever d is a power of two: the same
 * bits, in bf16 too. Accumulating every micro-batch into one buffer (each product adding to what the previous
 * micro-batches left) would make one process's sum ((g0 + g1) + g2) + g3 term by term inside the products, and no
 * split of the work over ranks could repeat it.
 *
 * Cost: lmf_sumtree_most(k) - 1 buffers (at most ceil(log2 k)) the size of the gradients this rank holds
 * (committed at init, a pipeline stage's or a tensor-parallel rank's pieces only), one addition over the gradients
 * per tree node, and the gradients zeroed before every micro-batch instead of once a step. A micro-batch's gradient
 * that waits for its sibling stays in its buffer while the model's gradient views (and a pipeline's in-flight
 * sets') move to a free one (lmf_model_swap_grads), or, where they cannot (packed rows, tensor parallelism, LoRA),
 * is copied out. A partitioned rank's sums cover the spans its backward writes (lmf_model_set_written). With k = 1
 * nothing. */
#ifndef LMF_TRAIN_GRAD_SUM_H
#define LMF_TRAIN_GRAD_SUM_H

#include "core/sumtree.h"
#include "model/model.h"

#define LMF_GRAD_SUM_BUFS 33 /* the tree's waiting sums for any int k, and the model's own */

typedef struct lmf_grad_sum {
    lmf_model *m;   /* the model whose gradients the micro-batches' backward writes (a pipeline's owner) */
    int k, nbuf;    /* micro-batches a step; buffers of ours: lmf_sumtree_most(k) - 1 */
    float *buf[LMF_GRAD_SUM_BUFS]; /* ours, then [nbuf]: the model's own gradient buffer, given back at free */
    lmf_sumtree t;  /* ids: buffer indices; m's gradients are one of them */
    size_t at, len; /* the range the additions in progress cover */
    lmf_model *const *sharers; /* models sharing m's gradient views (a pipeline's in-flight sets), moved with them */
    int n_sharers;
} lmf_grad_sum;

/* Commits its buffers (none for k = 1). Free it before the model (it gives the model its own gradient buffer
 * back). */
void lmf_grad_sum_init(lmf_grad_sum *s, lmf_model *m, int k);
void lmf_grad_sum_free(lmf_grad_sum *s);
/* The models that share m's gradient views (a pipeline's in-flight sets: lmf_pipeline.slots + 1); they must outlive
 * s's last step and its free. */
void lmf_grad_sum_share(lmf_grad_sum *s, lmf_model *const *sharers, int n);
/* Bytes it may commit: its buffers x held floats. */
double lmf_grad_sum_bytes(int k, double held_floats);
/* Micro-batch a (0 .. k-1) of the step has left its gradient in m's gradients. Before the last, its share of the
 * sum moves to the buffers and the caller zeroes m's gradients before the next backward (m->grads may then be
 * another buffer); after the last, m's gradients hold the step's sum, unless deferred: then the caller sums range
 * by range with lmf_grad_sum_range (the overlapped reduction, which sends each layer as soon as it is final),
 * covering every held float once. */
void lmf_grad_sum_add(lmf_grad_sum *s, int a, int deferred);
/* The deferred sum of grads[at, at + len) (flat indices; packed rows' pieces in it included) into m's gradients. */
void lmf_grad_sum_range(lmf_grad_sum *s, size_t at, size_t len);

#endif
