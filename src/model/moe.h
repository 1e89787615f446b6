/* moe.h — the mixture-of-experts feed-forward of the block library (block.h): training, prefill and decode.
 *
 * One layer, over the N normalised rows x = norm2(res2) (N, C):
 *
 *   logits = x R^T (N, E)                       R: the router (E, C)
 *   p      = softmax(logits) in fp32
 *   top-k  : the k largest p of each row (ties to the lower expert index), weights w = p, or w = p / sum over the
 *            chosen when cfg.norm_topk_prob (Mixtral)
 *   out_i  = sum over the chosen experts e of w_ie * down_e(silu(gate_e x_i) * up_e x_i)  [+ shared expert(x_i)]
 *            the shared expert's term times sigmoid(x_i . g) with cfg.shared_gate (Qwen2-MoE; g: sh_gate_inp)
 *
 * Sparse from the start: the chosen slots are grouped by expert and each expert runs one product over just its rows
 * (gathered), through the same linear layers as dense FFNs (any weight type; fp32 slabs for quantized ones), so an
 * expert nobody chose is never read.
 *
 * Capacity (training, cfg.capacity_factor > 0, Switch Transformer): each expert takes at most ceil(factor x N x k /
 * E) slots; first choices are served before second choices (GShard's priority), tokens in order within a rank; a
 * slot over capacity is dropped (that expert's term is missing from out_i; the token keeps its residual and its
 * other experts) and counted.
 *
 * Router losses (training; the model sums them over the layers, lmf_moe_losses):
 *   aux = E * sum_e (n_e / LN) * (P_e / LN)     n_e: top-k choices of expert e, P_e: sum of p[:, e], both over
 *         every MoE layer's N rows (LN rows), as transformers' load_balancing_loss_func; times router_aux_coef
 *   z   = (1/LN) sum over the LN rows of logsumexp(logits)^2 (ST-MoE); times router_z_coef
 * The backward adds their gradients (lmf_moe_grad: the per-expert constant and the z factor) to the router's. */
#ifndef LMF_MODEL_MOE_H
#define LMF_MODEL_MOE_H

#include "model/block.h"

#include <stddef.h>
#include <stdint.h>

/* Statistics one layer's forward leaves at the end of its kept rows (for the losses, metrics and the twin). */
typedef struct {
    float *chosen;   /* (E) top-k choices of each expert, before capacity */
    float *kept;     /* (E) slots each expert ran */
    float *prob_sum; /* (E) sum over the rows of p[:, e] */
    float *z_sum;    /* (1) sum over the rows of logsumexp(logits)^2 */
} lmf_moe_stats_view;

/* Floats one layer's forward keeps for the backward (or uses as scratch in prefill) for N rows, and the scratch
 * shared by all layers (gathered rows; backward buffers when training). */
size_t lmf_moe_layer_floats(const lmf_model_config *c, int N);
size_t lmf_moe_scratch_floats(const lmf_model_config *c, int N, int training);
lmf_moe_stats_view lmf_moe_stats_of(const lmf_model_config *c, int N, float *kept);

/* The router-loss gradients the backward adds, from the whole forward's statistics (lmf_moe_losses). */
typedef struct lmf_moe_grad {
    float dprob[LMF_MAX_EXPERT]; /* d(loss)/d p[t, e] from aux, the same for every row of every layer */
    float dz;                    /* d(loss)/d logits[t, e] from z is dz * lse_t * p[t, e] */
} lmf_moe_grad;

/* Sums the layers' statistics (kept = L slabs of lmf_moe_layer_floats(c, N) floats) into the two losses (before
 * their coefficients), the load per expert (fraction of the LN k choices; may be NULL) and the dropped slots; with
 * g, the gradients for loss_scale x (aux_coef aux + z_coef z). */
void lmf_moe_losses(const lmf_model_config *c, int N, const float *kept, size_t layer_stride, double *aux, double *z,
                    double *load, double *dropped, float loss_scale, lmf_moe_grad *g);

/* lmf_moe_losses in two pieces, for a pipeline whose stages each hold some of the layers: aux is not a sum of
 * per-layer terms (it multiplies the choice and probability totals over all layers), so each stage adds its layers'
 * statistics to the running sums the previous stage sent (zeroed on the first stage) and passes them on; the last
 * stage's are the totals, from which every stage's backward needs the same gradient constants. Adding the layers
 * in order from zeroed sums gives the same bits as lmf_moe_losses. */
typedef struct {
    double chosen[LMF_MAX_EXPERT], prob[LMF_MAX_EXPERT], z, dropped;
} lmf_moe_sums;
/* Adds layers [l0, l1) of kept (slab l at kept + l x layer_stride) to s. */
void lmf_moe_sums_add(const lmf_model_config *c, int N, const float *kept, size_t layer_stride, int l0, int l1,
                      lmf_moe_sums *s);
/* lmf_moe_losses's outputs from the totals over all n_layer layers. */
void lmf_moe_losses_of(const lmf_model_config *c, int N, const lmf_moe_sums *s, double *aux, double *z, double *load,
                       double *dropped, float loss_scale, lmf_moe_grad *g);

/* LoRA (ctx->lora / d->lora, layer `layer`): the adapters on the router and the routed experts (PEFT's
 * target_parameters, lora.h) add s B A x to the router's logits before routing and, expert e's own s B_e A_e, to
 * its gate|up rows before the activation and to its down rows; the backward gives their A and B gradients (A x
 * recomputed) and passes the input gradients on. A shared expert's nn.Linear modules (gate_proj, up_proj, down_proj:
 * lora.h's LINEAR modules on matrices 4, 5, 6; shared_expert_gate, added to the gate's logit before its sigmoid)
 * work as the block's dense ones: dropout when training, their values saved in lora_t (the layer's
 * lmf_block_rows.lora_t; NULL outside training). No tensor parallelism with adapters.
 *
 * Forward of one layer's MoE FFN: x (N, C) normalised rows; out (N, C) gets the FFN's output (not the residual);
 * out may be x (prefill's scratch rows: every read of x comes before the first write of out).
 * kept: lmf_moe_layer_floats(c, N); scratch: lmf_moe_scratch_floats(c, N, 0) or more. Weights of any type. */
void lmf_moe_forward(const lmf_block_ctx *ctx, const lmf_layer_weights *L, int layer, const float *x, float *out,
                     float *kept, float *scratch, float *lora_t, int N);

/* Decode (inside lmf_block_decode's parallel region, thread tid of nth, N <= LMF_BLOCK_QMV_MAX rows): xn (N, C)
 * this thread's copy of the normalised rows. Thread 0 routes (the router by the quantized kernels), a barrier; each
 * thread makes its share of the F rows of the gate and up of every chosen expert over the rows that chose it (read
 * once per step however many rows chose it), a barrier, then its share of the C rows of the downs and the shared
 * expert, and adds the weighted sum into d->x for its columns. Never drops. Ends without a final barrier (the
 * caller's). */
void lmf_moe_decode(const lmf_block_decode_ctx *d, const lmf_layer_weights *L, int layer, const float *xn, int N,
                    char *qbuf, int tid, int nth);

/* Training backward: dout (N, C) = d(out); dx (N, C) += d(x); parameter gradients added into G (views of the
 * gradient buffer laid out as the training model's own F32 weights: fused gate|up per expert and shared), the
 * router losses' through mg. G NULL: the base is frozen (LoRA fine-tuning, weights of any type through dequantized
 * slabs): only d(x) flows, through the experts and through the routing weights into the router, and mg must be
 * NULL: the router losses train the router, which is frozen (transformers' Mixtral leaves them out by default too,
 * output_router_logits = False). */
void lmf_moe_backward(const lmf_block_ctx *ctx, const lmf_layer_weights *L, const lmf_layer_weights *G, int layer,
                      const lmf_moe_grad *mg, const float *x, const float *dout, float *dx, const float *kept,
                      float *scratch, float *lora_t, int N);

#endif
