/* model.h — the transformer's internals: parameter table, activation buffers, forward and backward.
 *
 * Parameters live in ONE flat fp32 buffer carved by a fixed table of 25 named tensors (layer tensors stacked over
 * layers, llm.c style), so AdamW, gradient clipping, checkpointing and later allreduce/ZeRO work on flat ranges.
 * Tensors a family does not use have size 0. Both families share the table:
 *
 *   wte (V,C)  wpe (maxT,C)  ln1_w/ln1_b (L,C)  qkv_w (L,QD+2KV,C)  qkv_b (L,QD+2KV)  attn_proj_w (L,C,QD)
 *   attn_proj_b (L,C)  ln2_w/ln2_b (L,C)  fc_w (L,F,C) gpt2 | (L,2F,C) llama: gate rows then up rows
 *   fc_b (L,F)  fc_proj_w (L,C,F)  fc_proj_b (L,C)  lnf_w/lnf_b (C)  lm_head (V,C) only when untied
 *   mixture of experts (n_expert E > 0; fc_w and fc_proj_w are then absent, F is each expert's hidden size):
 *   router_w (L,E,C)  exp_fc_w (L,E*2F,C): per expert its gate rows then its up rows  exp_proj_w (L,E*C,F)
 *   sh_fc_w (L,2Fs,C)  sh_proj_w (L,C,Fs): the shared expert (Fs = shared_ffn_dim)
 *   sh_gate_w (L,C): the shared expert's sigmoid gate (cfg.shared_gate: Qwen2-MoE's shared_expert_gate)
 * The MoE tensors come after the dense ones, so a dense model's layout (and its checkpoints) did not change; the
 * same for sh_gate_w after them. qkv_b exists with cfg.bias or cfg.qkv_bias (qwen2: q, k and v biases only).
 *   q_norm_w (L,hs)  k_norm_w (L,hs): cfg.qk_norm per head (qwen3), after everything else for the same reason;
 *   (L,QD) and (L,KV) with the full-width norm (olmoe).
 *   post_attn_norm_w (L,C)  post_ffn_norm_w (L,C): cfg.post_norms (gemma3), after those.
 * QD = n_head hs and KV = n_kv_head hs, hs the head size (lmf_head_size: cfg.head_dim, or C / n_head when it is 0).
 *
 * Which tensors exist follows the config's knobs: wpe with learned positions (max_seq_len + pos_offset rows), ln*_b
 * with LayerNorm, the linear biases with cfg.bias, fc_w's gate rows with SwiGLU; absent ones have size 0. gpt2 uses
 * all but lm_head; llama has no wpe and no biases (ln*_w are RMSNorm weights). Linear weights are (out, in) as in
 * torch.nn.Linear: y = x W^T.
 *
 * The forward and backward are the block library's (block.h) over F32 views of these buffers (lmf_params_view):
 * the same lmf_weights the inference executor runs, so a session can sample from the live training parameters. */
#ifndef LMF_MODEL_MODEL_H
#define LMF_MODEL_MODEL_H

#include "lmforge.h"
#include "core/alloc.h"
#include "model/moe.h"
#include "model/weights.h"

#include <stddef.h>

enum {
    LMF_P_WTE, LMF_P_WPE, LMF_P_LN1W, LMF_P_LN1B, LMF_P_QKVW, LMF_P_QKVB, LMF_P_ATTPROJW, LMF_P_ATTPROJB,
    LMF_P_LN2W, LMF_P_LN2B, LMF_P_FCW, LMF_P_FCB, LMF_P_FCPROJW, LMF_P_FCPROJB, LMF_P_LNFW, LMF_P_LNFB,
    LMF_P_LMHEAD, LMF_P_ROUTER, LMF_P_EXPFC, LMF_P_EXPPROJ, LMF_P_SHFC, LMF_P_SHPROJ, LMF_P_SHGATE,
    LMF_P_QNORM, LMF_P_KNORM, LMF_P_POSTATTNW, LMF_P_POSTFFNW, LMF_NUM_PARAM_TENSORS
};

extern const char *const lmf_param_names[LMF_NUM_PARAM_TENSORS];

/* A segment [lo, hi) of the flat layout stored from float `at` of a buffer of its own (lmf_model_pack_tp). */
typedef struct {
    size_t lo, hi, at;
} lmf_seg;

/* Activations kept from forward for backward. Layer buffers are stacked over L with per-layer strides sized for
 * the largest batch (maxB x maxT), so smaller batches use a prefix of each layer's slab. */
typedef struct {
    float *encoded;                    /* (N,C) embeddings = input of layer 0 */
    float *ln1, *ln1_mean, *ln1_rstd;  /* (L,N,C), (L,N), (L,N) */
    float *qkv;                        /* (L,N,S) S = QD + 2 KV, q and k after RoPE */
    float *att;                        /* attention scratch, shared by the layers (lmf_attention_scratch_floats) */
    float *atty;                       /* (L,N,QD) attention output before the projection */
    float *res2;                       /* (L,N,C) residual stream after attention */
    float *ln2, *ln2_mean, *ln2_rstd;  /* (L,N,C), (L,N), (L,N) */
    float *fch;                        /* (L,N,FF) FF = F (gpt2) or 2F (llama: gate|up) */
    float *fcact;                      /* (L,N,F) after GELU / SwiGLU */
    float *res3;                       /* (L,N,C) residual stream after the MLP = layer output */
    float *lnf, *lnf_mean, *lnf_rstd;  /* (N,C), (N), (N) */
    float *logits;                     /* (N,V); overwritten by d(logits) in backward */
    float *losses;                     /* (N) */
    float *lse;                        /* (N) the logits' log-sum-exp per row, for the cross-entropy's backward */
    float *qk, *qk_rstd;               /* cfg.qk_norm: (L,N,QD+KV) q|k before their norm, (L,N,NH+NKV) per head */
    float *post1, *post1_rstd;         /* cfg.post_norms: (L,N,C) attention's output before its norm, (L,N) */
    float *post2, *post2_rstd;         /* and the FFN's */
    /* bf16 training (lmf_model_set_bf16): the inputs of the linear products that nothing but products reads (ln1,
     * atty, ln2 unless a mixture of experts routes on it, fcact) are kept per layer in bf16 here, rounded as the
     * products round them; ln1, ln2 (but a MoE's) and fcact above are then NULL (the norms and the activation write
     * bf16 rows), and atty is one layer's fp32 scratch (attention's output before it is rounded). NULL: in fp32 */
    uint16_t *ln1_16, *atty_16, *ln2_16, *fcact_16;
    uint16_t *qkv_16; /* and q|k|v after RoPE (attention's products read nothing else); qkv: one layer's scratch.
                       * bf16 LoRA keeps this one alone (its adapters read the others in fp32) */
    /* LoRA: the fp32 inputs no adapter reads in the backward (a frozen base's input gradients never need them) are
     * one layer's scratch, rewritten by each layer's forward: LMF_KEEP_* bits of the inputs kept per layer */
    int kept;
} lmf_acts;
enum { LMF_KEEP_LN1 = 1, LMF_KEEP_ATTY = 2, LMF_KEEP_LN2 = 4, LMF_KEEP_FCACT = 8, LMF_KEEP_ALL = 15 };

/* One layer's worth of backward scratch (backward walks the layers one at a time). */
typedef struct {
    float *dres;   /* (N,C) gradient of the residual stream */
    float *dbuf;   /* (N,C) gradient of a norm output or of the attention output */
    float *dqkv;   /* (N,S) */
    float *dfch;   /* (N,FF) */
    float *dfcact; /* (N,F) */
    float *dnorm;  /* (2C) parameter gradients of a frozen norm, discarded */
} lmf_grad_scratch;

/* The router of the last forward of a mixture-of-experts model (moe.h), over all its layers: the two losses before
 * their coefficients, each expert's share of the top-k choices and the slots dropped over capacity. */
typedef struct {
    double aux, z, dropped;
    double load[LMF_MAX_EXPERT];
} lmf_moe_stats;

struct lmf_model {
    lmf_model_config cfg;
    size_t param_sizes[LMF_NUM_PARAM_TENSORS];
    size_t param_offsets[LMF_NUM_PARAM_TENSORS];
    size_t num_params;
    float *params;
    float *grads; /* NULL unless created for training */
    float *ptr[LMF_NUM_PARAM_TENSORS];  /* views into params */
    float *gptr[LMF_NUM_PARAM_TENSORS]; /* views into grads */

    int max_batch, max_seq;
    size_t layer_stride_nc; /* per-layer stride of the stacked activations */
    lmf_acts acts;
    float *acts_memory;
    float *inputs_memory; /* acts' ln1, atty, ln2, fcact and their bf16 copies (carve_inputs) */
    size_t inputs_bytes;
    lmf_grad_scratch gs;
    float *gs_memory;
    float *rope; /* (max_seq_len, hs): lmf_rope_table rows; RoPE models only */
    float *rope_swa; /* the windowed layers' (cfg.rope_theta_swa), or NULL */
    lmf_weights *w;  /* F32 views of params (lmf_params_view) */
    int32_t *pos;      /* (N) lmf_model_set_positions's copy, used while use_pos */
    int use_pos;
    size_t work_bytes; /* activations and scratch allocated for forward / backward (not params, grads or base) */
    int bf16;        /* mixed precision: every linear product, the head's included, in bf16 (lmf_block_ctx.bf16);
                      * set by lmf_model_set_bf16; params, grads, AdamW and activations stay fp32, but for the
                      * products' inputs kept in bf16 (lmf_acts) */
    lmf_weights *gw; /* the same views of grads; NULL unless training */
    /* LoRA (lmf_model_create_lora): w is the frozen base (borrowed, any weight type), params/grads are NULL and
     * the adapters hold what trains */
    struct lmf_lora *lora;
    float *lora_t;   /* (L, maxB x maxT x r x modules) the adapters' saved values */
    float *lora_x;   /* maxB x maxT x (r + max(C, F)) adapter scratch */
    float *dq;       /* the base's dequantization slab: dq_floats */
    size_t dq_floats;

    /* mixture of experts: per layer moe_stride kept floats (moe.h), scratch shared by the layers */
    float *moe, *moe_scratch, *moe_mem;
    size_t moe_stride;
    lmf_moe_stats moe_stats;
    lmf_moe_sums moe_sums; /* the router statistics of the last forward, over layers [0, l1) */
    int shared;            /* params and grads are another model's (lmf_model_create_shared) */
    /* tensor parallelism (lmf_block_ctx.tp), NULL: none. Training sets it for its steps; a forward run by one rank
     * alone (validation, the sample) clears it, as every rank holds all the parameters. */
    struct lmf_block_tp *tp;
    float *tp_buf;         /* the vocabulary-parallel cross-entropy's exchange (N x (tp size + 1)) and its rows'
                            * log-sum-exp kept for the backward (N), allocated at the first such forward */
    size_t tp_cap;
    /* partitioned (lmf_model_partition: a pipeline stage): the sorted, disjoint ranges of params and grads this
     * model holds; the rest of both buffers is never written (nor read) and costs no memory. NULL: all of them. */
    lmf_range *held;
    int n_held;
    /* of those, the ones its backward writes (lmf_model_set_written: a stage's spans without its ZeRO shard, which
     * only the reduction writes); NULL: all held. Zeroing and the micro-batches' sums cover these only. */
    lmf_range *written;
    int n_written;
    /* tensor-parallel rank's row-parallel shares (lmf_model_pack_tp): this rank's columns of o, down and the experts'
     * downs, compact ([layer][row][cols / t], the views' leading dimension), each row a segment of the flat layout */
    float *packed_p, *packed_g;
    size_t packed_n;
    lmf_seg *packed;       /* sorted by lo; at: the row's first float in packed_p / packed_g */
    int n_packed;
    int l0, l1;            /* the layers of the last forward (lmf_model_forward_layers) */
    int act_l0, act_l1;    /* the layers whose activations it keeps: all, or a pipeline stage's (create_shared) */
    int act_tp;            /* 1, or the tensor-parallel group size whose share of each layer's rows it keeps */

    /* called after each layer's backward with the layer (lmf_model_backward_layers, not for LoRA), when the step's
     * gradients of that layer are final: the trainer's overlapped reduction (dist/zero.h); NULL: none */
    void (*layer_done)(void *ctx, int layer);
    void *layer_done_ctx;
    int fresh_grads;   /* lmf_model_zero_grad_lazy left the tensors the next backward writes whole unwritten */

    /* the head's loss over vocabulary slabs instead of N x V logits (lmf_model_set_fused_loss; head_loss.h), or
     * NULL; fused: the last forward's losses came from it (no logits kept) */
    struct lmf_head_loss *hl;
    int fused;
    int no_grad;       /* lmf_model_eval_loss's forward: no backward follows */
    float *logits_memory;
    size_t logits_bytes;

    int B, T;          /* shape of the last forward */
    int32_t *tokens;   /* (maxB*maxT) copies of the last forward's inputs */
    int32_t *targets;
    int has_targets;
    int num_targets;   /* non-ignored targets in the last forward */
};

/* The number of parameters of cfg, and the bytes lmf_model_create(cfg, max_batch, max_seq, training) allocates
 * (parameters, gradients, activations, scratch), computed in floating point so that hostile sizes cannot wrap:
 * for checking a config from a file or flags against what a file holds or what the machine has, before
 * allocating. cfg must have passed lmf_model_config_validate. */
double lmf_param_count(const lmf_model_config *cfg);
double lmf_model_bytes(const lmf_model_config *cfg, int max_batch, int max_seq, int training);
/* Sizes of the parameter tensors for cfg (0 for unused ones), and their shapes for printing/serialising. */
void lmf_param_sizes(const lmf_model_config *cfg, size_t sizes[LMF_NUM_PARAM_TENSORS]);
/* Writes the shape of tensor i (up to 3 dims) and returns its rank (0 if the tensor is absent). */
int lmf_param_shape(const lmf_model_config *cfg, int i, int shape[3]);
/* Fills w's config and tensors with F32 views into params, a flat buffer laid out by the table above (w->layers is
 * allocated when NULL). q|k|v are row ranges of qkv_w, gate|up of fc_w: the block library runs each as one product. */
void lmf_params_view(lmf_weights *w, const lmf_model_config *cfg, const float *params);
/* The model's parameters as inference weights (views: they change as training updates the parameters). */
/* Packed rows: the next forward and backward (until called with NULL) see token t of row b at position pos[b*T+t]
 * of its own example (0 where an example starts, then +1 a token) and attending only inside it. */
void lmf_model_set_positions(lmf_model *m, const int32_t *pos, int B, int T);
const lmf_weights *lmf_model_weights(const lmf_model *m);
/* A model (training model layout, fp32) holding w's weights, any dtype dequantized; Q/K rows in llama.cpp's
 * interleaved order go back to rotate_half order (pos becomes LMF_POS_ROPE_HALF). max_seq is capped at the model's
 * max_seq_len. LMF_ERR_MISMATCH / LMF_ERR_FORMAT name the tensor at fault. */
lmf_status lmf_model_from_weights(const lmf_weights *w, int max_batch, int max_seq, int training, lmf_model **out);
/* lmf_model_create for a model made from weights fw: LongRoPE's factors (cfg's rope_scaling LONGROPE) come from fw,
 * which lmf_model_create refuses without */
lmf_model *lmf_model_create_factors(const lmf_model_config *cfg, const lmf_weights *fw, int max_batch, int max_seq,
                                    int training);
/* A model that trains LoRA adapters on a frozen base of any weight type (QLoRA when it is quantized: the base's
 * products run through fp32 slabs of at most 8 MiB, never an fp32 copy). base and lora must outlive the model;
 * forward and backward as for any model; the model's params / grads / num_params are the adapters' (enabled here),
 * so AdamW (train/optim.h), the training step and checkpoints train them and nothing else. */
lmf_status lmf_model_create_lora(const lmf_weights *base, struct lmf_lora *lora, int max_batch, int max_seq,
                                 lmf_model **out);
/* The router statistics of the last forward (all zero for a dense model). The training loss of a MoE model is the
 * forward's cross-entropy + router_aux_coef x aux + router_z_coef x z; the backward adds the gradients of all
 * three. */
const lmf_moe_stats *lmf_model_moe_stats(const lmf_model *m);
/* Pipeline stages (train/pipeline.h). A model whose parameters and gradients are owner's (a training model of its
 * own, not LoRA), with activations and scratch of its own for layers [l0, l1) only (the stage's: the final norm's,
 * the logits and the losses when l1 is the last layer; its forwards must stay inside the range) and for owner's
 * tensor-parallel share: a stage keeps one per micro-batch in flight, all adding into owner's gradients, in owner's
 * precision (bf16) and tensor parallelism as they are when called. Free it before owner. lmf_model_shared_bytes is what one allocates (as lmf_model_bytes). */
lmf_model *lmf_model_create_shared(lmf_model *owner, int l0, int l1);
/* Mixed precision on (bf16 products, lmf_model.bf16) or off. A training model's products' inputs are then kept for
 * the backward in bf16 (lmf_acts: the same results, as each product rounds them so, in half the memory); LoRA
 * models keep them in fp32. Call it between steps (it re-allocates those activations), before creating shared
 * models, which follow their owner's precision. */
void lmf_model_set_bf16(lmf_model *m, int on);
/* A training model (parameters and gradients of its own, all of them) keeping activations for layers [l0, l1)
 * only, as create_shared, and with tp > 1 a tensor-parallel rank's share of each layer's q|k|v, attention and FFN
 * rows and of the logits (its forwards then need the group: m->tp of that size): the model of a rank that never
 * runs the whole model alone. sparse: params and grads are mapped without memory (lmf_alloc_big_sparse) until
 * lmf_model_partition commits the ranges the model holds. */
lmf_model *lmf_model_create_stage(const lmf_model_config *cfg, int max_batch, int max_seq, int l0, int l1, int tp,
                                  int sparse);
/* The ranges of the flat buffer a pipeline stage of layers [l0, l1) computes with: its layers' slice of every
 * stacked tensor, the embeddings when l0 == 0, the final norm and the head when l1 == n_layer (a tied wte on both
 * ends). Sorted, adjacent ones merged; at most LMF_NUM_PARAM_TENSORS; returns how many. */
int lmf_model_stage_spans(const lmf_model_config *cfg, int l0, int l1, lmf_range *out);
/* Tensor parallelism: the ranges rank r of a group of t computes with in a stage of layers [l0, l1), as stage_spans
 * but only its share of the sharded tensors: its rows of q|k|v, gate|up (every expert's and the shared expert's)
 * and their biases, its vocabulary rows of an untied head, and (rows != 0) its columns of every row of o, down
 * and the experts' downs (one range a row: these are what lmf_model_pack_tp stores apart); the replicated tensors
 * (norms, the row-parallel biases, the router, the embeddings, a tied wte) whole. Sorted, disjoint, adjacent ones
 * merged; *out is allocated (free it); returns how many. t == 1: the stage spans. */
int lmf_model_group_spans(const lmf_model_config *cfg, int l0, int l1, int r, int t, int rows, lmf_range **out);
/* A tensor-parallel rank (r of t) of the layers [l0, l1) keeps its columns of the row-parallel matrices (o, down,
 * the experts' and the shared expert's downs) in compact buffers of their own instead of the flat layout, where a
 * row's share is less than a page and would map every page: its views of those tensors become (rows, cols / t)
 * matrices there (a leading dimension of cols / t; block.c reads the share's offset from the view). Call it on a
 * partitioned (sparse) stage model before the pipeline's in-flight sets are made (they copy the views), then
 * lmf_model_partition with the in-place spans (group_spans with rows == 0, and the ZeRO shard). */
void lmf_model_pack_tp(lmf_model *m, int r, int t, int l0, int l1);
/* Where flat index lo lives when it is a packed row's (its params, or with grads its gradient), else NULL. */
float *lmf_model_packed_at(const lmf_model *m, size_t lo, int grads);
/* From now on m holds only the union of spans (any order, may overlap; a copy is kept): those ranges of params and
 * grads are committed (pre-touched), the rest is never written by the functions below (zero_grad, init_weights,
 * zero_replicated_grads, the forward and backward of m's stage) nor by the training step's ZeRO exchange. */
void lmf_model_partition(lmf_model *m, const lmf_range *spans, int n);
/* After lmf_model_partition: the spans among the held ones that m's backward writes (the stage's or the
 * tensor-parallel share's, without the ZeRO shard: what lies only in the shard is written by the reduction before
 * anything reads it), so that zeroing the gradients and the micro-batches' sums (train/grad_sum.h) skip the rest. */
void lmf_model_set_written(lmf_model *m, const lmf_range *spans, int n);
/* Floats of params m holds (num_params when not partitioned; packed rows included). */
size_t lmf_model_held_floats(const lmf_model *m);
/* Copies src (num_params floats: a checkpoint's) into the parameters m holds (packed rows included). */
void lmf_model_copy_held(lmf_model *m, const float *src);
/* Calls fn for each piece of grads[at, at + len) that m holds (its stage's spans and shard; a packed row's share where
 * it is kept): g its floats, v its place in a buffer of lmf_model_grad_extent floats laid out as the flat gradient
 * followed by the packed rows' (the same for every call, so another buffer can mirror m's gradient piece by piece). */
typedef void (*lmf_grad_piece_fn)(void *ctx, float *g, size_t v, size_t n);
void lmf_model_grad_pieces(const lmf_model *m, size_t at, size_t len, lmf_grad_piece_fn fn, void *ctx);
static inline size_t lmf_model_grad_extent(const lmf_model *m) { return m->num_params + m->packed_n; }
/* Whether m's gradients are one flat buffer of its own that lmf_model_swap_grads may replace (a whole model's or a
 * pipeline stage's; not packed rows, tensor parallelism, LoRA, or a model sharing another's). */
int lmf_model_grads_swappable(const lmf_model *m);
/* Points m's gradient views at g (num_params floats, holding at least m's pieces: a stage's spans) and those of the
 * n models sharing them (a pipeline's in-flight sets, lmf_model_create_shared), and returns the buffer they pointed
 * at, which stays the caller's to give back before lmf_model_free (it frees what m->grads points at then). */
float *lmf_model_swap_grads(lmf_model *m, float *g, lmf_model *const *sharers, int n);
/* Zeroes grads[at, at + len) where m holds them. */
void lmf_model_zero_grads_range(lmf_model *m, size_t at, size_t len);
/* lmf_model_zero_grad for a step whose next backward is m's own (not a pipeline's in-flight copies'): on a whole
 * model trained by this rank alone (no pipeline stage, tensor parallelism or LoRA) it leaves the tensors that the
 * backward's products write whole (the dense layers' q|k|v, o, fc and down, and the head) for that backward to
 * overwrite (lmf_block_ctx.fresh_grads), which saves a pass over most of the gradients and the products' reads of
 * them; nothing may read the gradients in between. Elsewhere it zeroes them all. */
void lmf_model_zero_grad_lazy(lmf_model *m);
/* Bytes of params and grads outside the ranges m holds that are resident (lmf_resident_bytes): 0 unless something
 * wrote (or read) there. *first gets the first such float's index in the flat buffer (grads' counted after params'). */
size_t lmf_model_stray_bytes(const lmf_model *m, size_t *first);
/* tp: the tensor-parallel share whose rows it keeps (create_stage's), 1 for all of them. */
double lmf_model_shared_bytes(const lmf_model_config *cfg, int max_batch, int max_seq, int l0, int l1, int tp);
/* The forward of layers [l0, l1) only. l0 == 0 embeds tokens; otherwise x_in (B x T x C) is the input of layer l0
 * (the previous stage's output). l1 == n_layer runs the final norm, the head and (targets) the loss, returned as
 * lmf_model_forward's; before it, returns 0 and the output is lmf_model_layer_output(m, l1 - 1). Mixture of experts:
 * sums holds the router statistics of layers [0, l0) (the previous stage's; unused when l0 == 0) and gets those of
 * [0, l1) (moe.h); NULL for dense models. lmf_model_forward is this over [0, n_layer). */
float lmf_model_forward_layers(lmf_model *m, const int32_t *tokens, const int32_t *targets, int B, int T, int l0,
                               int l1, const float *x_in, lmf_moe_sums *sums);
/* The backward of the last lmf_model_forward_layers's range, adding into the gradients of its layers (the
 * embeddings when it began at 0; the final norm and head when it ended at n_layer). Before the last layer, dx_out
 * (B x T x C) is d(loss) / d(output) from the next stage and totals the router sums over all layers (MoE only);
 * both are ignored on the last stage. After a range that began past 0, lmf_model_input_grad holds d(input). */
void lmf_model_backward_layers(lmf_model *m, float loss_scale, const float *dx_out, const lmf_moe_sums *totals);
static inline const float *lmf_model_layer_output(const lmf_model *m, int l) {
    return m->acts.res3 + (size_t)(l - m->act_l0) * m->layer_stride_nc;
}
static inline const float *lmf_model_input_grad(const lmf_model *m) { return m->gs.dres; }

/* Whether AdamW's weight decay applies to tensor i by default: matrices yes; embeddings, norms, biases no. */
int lmf_param_decays(int i);
/* Tensor parallelism (lmf_block_ctx.tp): whether each rank of a tensor-parallel group computes only its share of
 * tensor i's gradient (q|k|v and gate|up rows with their biases, o and down columns, the same of every expert and
 * of the shared expert, the head's vocabulary rows; the embeddings' lookups on the group's first rank alone), or all
 * of it (the rest: norms, the row-parallel layers' biases and the router, the same values on every rank of the
 * group). */
int lmf_param_tp_sharded(int i);
/* Whether tensor i is stacked over the layers ((L, ...): layer l's slice is the l-th of L equal parts), or not (the
 * embeddings, the final norm, the head). */
int lmf_param_per_layer(int i);
/* Zeroes the gradients (those m holds) of the tensors that are not tensor-parallel shares: on every rank of a tensor-parallel group
 * but its first, before the job's gradient sum, which would otherwise count them once per rank. */
void lmf_model_zero_replicated_grads(lmf_model *m);

#endif
