/* head_loss.h — the training head's cross-entropy without N x V logits (lmf_model_set_fused_loss).
 *
 * The head's product runs over vocabulary slabs (lmf_block_linear_slabs) with an online log-sum-exp, as flash
 * attention runs its softmax. The loss's gradient with respect to the final norm's output row x is
 * sum_v (p_v - [v = t]) c'_v W_v: an attention output whose keys and values are both the head's rows, summed in
 * the same pass (rescaled as the log-sum-exp grows), so a frozen head (LoRA) costs the products the kept logits do
 * (forward, input gradient) and N x slab floats instead of N x V. A trained head's gradient needs the whole row's
 * log-sum-exp first: its backward makes each slab's logits once more (one more product). Rows whose target is
 * ignored (-1: prompt, padding) are left out of the products altogether. */
#ifndef LMF_HEAD_LOSS_H
#define LMF_HEAD_LOSS_H

#include "lmforge.h"
#include "model/weights.h"

typedef struct lmf_head_loss {
    int max_rows, C, slab; /* rows of a forward at most; the head's width; vocabulary rows per slab */
    int n;                 /* the last forward's rows with a target */
    int grad;              /* d holds their d(loss) / d(x), unscaled */
    int32_t *rows, *t;     /* (n) their rows in the batch and their targets */
    float *x;              /* (n, C) their final-norm outputs */
    float *d;              /* (n, C) d(sum of their losses) / d(x) */
    float *out;            /* (n, slab) a slab's logits */
    float *dq;             /* (slab, C) a slab dequantized (a head not in F32) */
    float *lse, *tz;       /* (n) the rows' log-sum-exps and their target's (capped) logit */
    void *mem;
    size_t bytes;
} lmf_head_loss;

/* The bytes lmf_head_loss_create allocates for N rows of a forward of cfg's head (quantized: not in F32). */
double lmf_head_loss_bytes(const lmf_model_config *cfg, double N, int quantized);
lmf_head_loss *lmf_head_loss_create(const lmf_model_config *cfg, int max_rows, int quantized);
void lmf_head_loss_free(lmf_head_loss *h);
/* The losses of N rows x (N x C) through head W (V x C, any type) into losses (N; 0 where targets[i] < 0), cap: the
 * logits' soft-cap or 0; grad: also d(loss) / d(x) for lmf_head_loss_dinput / _dweight. Returns the targets. */
int lmf_head_loss_forward(lmf_head_loss *h, const lmf_wtensor *W, const float *x, const int32_t *targets, int N,
                          float cap, int bf16, int grad, float *losses);
/* dx (N x C) = d(scale x the losses' sum) / d(x) of the last forward (grad), zero for rows without a target. */
void lmf_head_loss_dinput(const lmf_head_loss *h, float *dx, int N, float scale);
/* dW (V x C) = beta dW + d(scale x the losses' sum) / d(W) of the last forward, W the F32 head it ran through. */
void lmf_head_loss_dweight(lmf_head_loss *h, const lmf_wtensor *W, float *dW, float beta, float cap, int bf16,
                           float scale);

#endif
