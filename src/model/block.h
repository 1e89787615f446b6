/* block.h — the transformer block, written once for the three executors that run it.
 *
 * One pre-norm layer, as lmf_model_config describes it (weights.h: lmf_layer_weights, any weight dtype):
 *
 *   res2 = x + o(attention(rope(q, k), v))      q, k, v = linear(norm1(x)); q, k normalised first (cfg.qk_norm)
 *   res3 = res2 + down(act(gate/up(norm2(res2))))
 *
 * Three modes share the pieces below (norm, linear, RoPE, FFN activation, residual add):
 *  - training forward (model.c): B sequences of T positions; every intermediate is kept per layer for the backward
 *    (lmf_block_backward), attention over the batch's own keys (kernels/attention.c);
 *  - prefill (infer.c): N positions of one sequence; intermediates in reused scratch rows, K and V written to the
 *    session's cache and attention over everything cached so far;
 *  - decode (infer.c): a few positions, the whole step inside one parallel region; each thread makes its share of
 *    every product's rows (lmf_block_decode).
 * Training and prefill are the same function (lmf_block_forward); what differs is where the rows go (kept or
 * scratch) and which attention runs (ctx->kv set: the cache). LoRA (an adapter on any linear), mixture-of-experts
 * (the FFN: moe.h, when cfg->n_expert > 0) and tensor parallelism (row/column shares of the linears) plug in here,
 * once. */
#ifndef LMF_MODEL_BLOCK_H
#define LMF_MODEL_BLOCK_H

#include "core/barrier.h"
#include "model/lora.h"
#include "model/weights.h"

#include <stddef.h>

/* Positions per prefill micro-batch; rows the decode (matrix-vector) path takes at most (the server's batch of
 * decoding sequences) and the rows up to which a step picks it by itself (above, SGEMM over dequantized slabs is
 * faster: measured in bench_infer's prefill); queries per prefill attention block. */
#define LMF_BLOCK_NB 512
#define LMF_BLOCK_QMV_MAX 32
#define LMF_BLOCK_QMV_AUTO 8
#define LMF_BLOCK_QBLK 64

/* One linear layer of a group that reads the same input: out[i, :] = in[i, :] W^T + bias, out rows ldo apart. */
typedef struct {
    const lmf_wtensor *W;
    const float *bias;
    float *out;
    int ldo;
} lmf_lin;

/* The input rows: token embeddings (+ the learned position rows) of N tokens, token i at position pos[i] (pos NULL:
 * p0 + i % T), into x (N, C); any weight dtype. */
/* Row r of W (any type, R16 groups too) as W->cols floats. */
void lmf_block_weight_row(const lmf_wtensor *W, int r, float *out);
void lmf_block_embed(const lmf_weights *w, float *x, const int32_t *tok, int N, int T, int p0, const int32_t *pos);

/* Row norm (LayerNorm or RMSNorm by cfg->norm) of rows x (N, C) into out; mean (LayerNorm only) and rstd get the
 * per-row statistics the backward needs. Serial; lmf_block_norm_par spreads the rows over the OpenMP threads. */
void lmf_block_norm(const lmf_model_config *cfg, float *out, float *mean, float *rstd, const float *x,
                    const float *g, const float *b, int N);
void lmf_block_norm_par(const lmf_model_config *cfg, float *out, float *mean, float *rstd, const float *x,
                        const float *g, const float *b, int N);

/* The FFN's activation on hidden columns [lo, hi) of N rows: fch (N, FF) holds gate | up for SwiGLU (FF = 2F) or
 * the pre-activation (FF = F); fcact (N, F) = silu(gate) * up, gelu_tanh(h) or relu(h). */
void lmf_block_ffn_act(const lmf_model_config *cfg, float *fcact, const float *fch, int N, int lo, int hi);

/* The RoPE table (T, hs) of cfg (its theta and scaling: lmf_rope_freq_factors), the one that training and inference
 * both rotate by. */
void lmf_block_rope_table(const lmf_model_config *cfg, float *tab, int T);
/* Whether layer `layer` rotates q and k: RoPE positions, and not one of cfg.nope_interval's NoPE layers. */
int lmf_block_layer_rope(const lmf_model_config *cfg, int layer);
/* Layer `layer`'s attention window: cfg.sliding_window on a windowed layer (every one, or all but every
 * swa_pattern-th), else 0 (every earlier position). */
int lmf_block_layer_window(const lmf_model_config *cfg, int layer);
/* The windowed layers' RoPE table (cfg.rope_theta_swa, no scaling) into tab (T, hs); 0 when they share the main one. */
int lmf_block_rope_table_swa(const lmf_model_config *cfg, float *tab, int T);
/* The q.k scale: cfg.attn_scale, or 1 / sqrt(head size). */
float lmf_block_attn_scale(const lmf_model_config *cfg);
/* RoPE on layer `layer`'s rows (nothing where lmf_block_layer_rope says no): row i (ld floats apart) sits at position
 * pos[i] (pos NULL: p0 + i % T); its first nheads heads of hs dimensions are rotated (sign +1; -1 rotates back: the
 * backward). */
void lmf_block_rope(const lmf_model_config *cfg, int layer, const float *tab, float *x, int ld, int N, int T, int p0,
                    const int32_t *pos, int nheads, float sign);

/* Linear layers over N input rows (ldi apart): the fp32 SGEMM on F32 weights, on anything else through fp32 slabs
 * of at most dq_floats dequantized elements (R16 groups k-major, ggml rows row-major). Consecutive layers whose
 * F32 weights, biases and outputs are adjacent (a fused qkv or gate|up matrix cut into views) run as one product.
 * mode: LMF_LIN_BF16, the products through lmf_sgemm_bf16 (inputs rounded to bf16, fp32 sums); LMF_LIN_QINT
 * (inference only), R16 weights on a CPU with AMX-INT8 tiles take the decode path's integer products instead (the
 * rows converted to int16 blocks, kernels/quant.h): SmolLM2 pp512 1.4-1.7x the dequantized fp32 products, and a
 * row's result is the one decode would give it. dq then holds the converted rows (in chunks when they do not fit).
 * LMF_LIN_SPLIT (inference only): the dequantized slabs' products (F16, BF16, quantized weights off the integer
 * path; not F32 weights, which keep exact fp32) through lmf_sgemm_bf16x3, on AMX-BF16 tiles with nearly fp32
 * accuracy (each input as two bf16 parts, three products; lmf_sgemm without AMX): an F16 weight is exact as two
 * parts, the activations keep 16 significand bits. SmolLM2 F16 pp512 1.7-1.8x; logits within ~3e-5 of fp32's. */
#define LMF_LIN_BF16 1
#define LMF_LIN_QINT 2
#define LMF_LIN_SPLIT 4
void lmf_block_linear(const lmf_lin *o, int n, const float *in, int ldi, int N, float *dq, size_t dq_floats,
                      int mode);
/* The input gradient of the same layers: din (N, ldi apart) = beta din + sum over j of dout_j W_j, where o[j].out
 * points at d(out_j) (o[j].ldo apart) instead of the output; weights of any type (the same slabs). beta 0 where the
 * product is din's first writer: no zeroing pass, and the products do not read din back. */
void lmf_block_linear_dinput(const lmf_lin *o, int n, float *din, float beta, int ldi, int N, float *dq,
                             size_t dq_floats, int bf16);
/* The product of N input rows with W's rows, `slab` rows of W at a time (W of any type; dq: slab x W->cols floats
 * for a slab dequantized, unused on F32): out (N x nr, nr apart) = in W[r0, r0 + nr)^T, then visit(ctx, r0, nr, out)
 * may rewrite out, then with din: din (N x W->cols, ldd apart) += out W[r0, r0 + nr). Each slab is dequantized
 * once for both products. bf16: both through lmf_sgemm_bf16. The head's loss without N x V logits (head_loss.c). */
typedef void (*lmf_block_slab_fn)(void *ctx, int r0, int nr, float *out);
void lmf_block_linear_slabs(const lmf_wtensor *W, const float *in, int ldi, int N, float *out, int slab, float *dq,
                            float *din, int ldd, int bf16, lmf_block_slab_fn visit, void *ctx);

/* The KV cache of one sequence as prefill and decode see it: fixed-size blocks of a pool (paged), listed in the
 * sequence's block table. A block holds bs positions of the layers of one kind, transposed: (layers, KV, bs) elements
 * of K and the same of V; so position p of a layer at slot s of its kind, dimension d is at block blocks[p / bs],
 * ((s KV + d) bs + p % bs). Without windowed blocks there is one kind: every layer, slot = layer index. A pool that
 * splits (a model with sliding-window layers, infer.c) keeps the windowed layers in blocks of their own (wblocks, ids
 * from wid0 on, in wk / wv), which it hands back once every position in them is older than the window: their table
 * holds -1 there. The elements are fp32, or IEEE halves (f16: rounded to nearest even when written, widened to fp32
 * when read). */
typedef struct {
    void *k, *v;        /* the pool's full-attention blocks (every layer's when wblocks is NULL) */
    void *wk, *wv;      /* the windowed layers' blocks */
    const int *blocks;  /* the sequence's block table */
    const int *wblocks; /* its windowed layers' table, or NULL */
    const int *slot;    /* per layer: its index among the layers of its kind; NULL: the layer index */
    int layers, wlayers; /* layers of each kind */
    int wid0;           /* the windowed blocks' first id */
    int bs;             /* positions per block */
    int f16;            /* elements are halves */
} lmf_kv_view;

/* The rows of a step that belong to one sequence: n rows at positions p0.. with that sequence's cache. A step's
 * rows are its sequences' rows one sequence after the other. */
typedef struct {
    lmf_kv_view kv;
    int p0, n;
} lmf_block_seq;

/* Where lmf_block_forward puts one layer's rows. Training points each at that layer's kept slice; prefill at
 * scratch. res2 and res3 may be the layer input itself (added in place; proj then holds the product). */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd; /* (N,C) (N) (N) */
    float *qkv;                       /* (N,S), S = QD + 2 KV: q | k | v, q and k after RoPE (QD = n_head hs) */
    float *att;                       /* training: attention scratch (lmf_attention_scratch_floats) */
    float *atty;                      /* (N,QD) attention output before its projection */
    float *res2;                      /* (N,C) */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch;                       /* (N,FF) */
    float *fcact;                     /* (N,F) */
    float *res3;                      /* (N,C) */
    float *proj;                      /* (N,C) scratch, used when res2 or res3 is the input */
    float *lora_t;                    /* LoRA: the layer's saved adapter values (lmf_lora_t_floats) */
    float *moe, *moe_scratch;         /* mixture of experts (moe.h): the layer's kept rows, shared scratch */
    float *qk, *qk_rstd;              /* training with cfg.qk_norm: (N, CA + KVA) q | k before their norm, and
                                       * (N, nh + nkv) each head's rstd (NULL in prefill: nothing kept) */
    /* bf16 training: ln1, atty, ln2 and fcact kept in bf16 (rounded by lmf_sgemm_bf16_round) for the forward's
     * products and the backward's weight gradients; the norms and the activation then write these alone (ln1, ln2,
     * fcact unused), attention writes atty and the copy is made from it. NULL: in fp32 where ln1 etc. point */
    uint16_t *ln1_16, *atty_16, *ln2_16, *fcact_16;
    uint16_t *qkv_16; /* q|k|v after RoPE, for attention's products forward and backward (qkv: the fp32 rows) */
    float *post1, *post1_rstd;        /* training with cfg.post_norms: (N,C) attention's output before its norm, (N);
                                       * NULL in prefill (normalised in place) */
    float *post2, *post2_rstd;        /* the FFN's */
} lmf_block_rows;

/* A tensor-parallel group as the block library sees it (lmf_block_ctx.tp): this rank, the group's size, and the
 * in-place sum of a float buffer over the group's ranks, which every rank gets bit-identical (a communicator's
 * all-reduce in comm.h's order: train/ fills this from dist/comm.h). sum does not return when the exchange fails: it
 * ends the job, as a rank cannot go on alone while its partners wait in the same call. wait_s adds up the seconds
 * spent in sum (the step reports them as communication). */
typedef struct lmf_block_tp {
    int rank, size;
    void (*sum)(struct lmf_block_tp *tp, float *buf, size_t n);
    void *comm;
    double wait_s;
} lmf_block_tp;

/* Where a rank's n columns of the row-parallel matrix W start in W's rows: c0 in a whole matrix, 0 in a packed
 * share holding only those columns (its leading dimension: W->row_bytes). */
int lmf_block_share_col(const lmf_wtensor *W, int n, int c0);
/* tp->sum, its seconds counted in tp->wait_s. */
void lmf_block_tp_sum(lmf_block_tp *tp, float *buf, size_t n);

/* Where a forward's linear layers read their input rows (lmf_block_ctx.observe): the rows every matrix of that site
 * multiplies. An observer sees each site's rows once per step, before the products (lmforge imatrix: the inputs'
 * mean squares per column, llama-imatrix's statistics). */
typedef enum {
    LMF_OBS_ATTN_IN,     /* norm1 rows: q, k, v (gpt2: the fused qkv) */
    LMF_OBS_ATTN_OUT,    /* attention output rows: o */
    LMF_OBS_FFN_IN,      /* norm2 rows: gate and up of a dense FFN */
    LMF_OBS_FFN_DOWN,    /* activation rows: down */
    LMF_OBS_ROUTER,      /* MoE: norm2 rows, into the router */
    LMF_OBS_EXPERT_IN,   /* expert `expert`'s gathered rows: its gate and up */
    LMF_OBS_EXPERT_DOWN, /* expert `expert`'s activation rows: its down */
    LMF_OBS_SHARED_IN,   /* the shared expert's input (norm2 rows): its gate, up and the shared gate */
    LMF_OBS_SHARED_DOWN, /* the shared expert's activation rows: its down */
    LMF_OBS_OUTPUT       /* the final norm's rows that get logits, into the output head (layer -1) */
} lmf_obs_site;
/* N rows of `cols` floats, ldi apart, at site `site` of layer `layer` (expert: the expert, else -1). Called from
 * the forward's serial code (outside parallel regions). */
typedef void (*lmf_block_observe_fn)(void *user, int layer, lmf_obs_site site, int expert, const float *in, int ldi,
                                     int N, int cols);

typedef struct {
    const lmf_model_config *cfg;
    const float *rope;   /* kernels' lmf_rope_table rows (RoPE models) */
    const float *rope_swa; /* the windowed layers' table (cfg.rope_theta_swa; NULL: rope) */
    float *dq;           /* dequantization slab for non-F32 weights: dq_floats */
    size_t dq_floats;
    int B, T;            /* training: rows are B sequences of T positions from 0 (B x T = N) */
    const int32_t *pos;  /* training, packed rows: each token's position in its example (NULL: 0 .. T-1 per row) */
    /* prefill: the sequences the N = B x T rows belong to (NULL: training attention over the batch's own keys),
     * and per-thread score slabs of QBLK x the longest context */
    const lmf_block_seq *seqs;
    int n_seqs;
    float *scores;
    size_t scores_stride;
    float *kvbuf;        /* f16 caches: per-thread slabs of head_size x block floats (a block's K or V widened) */
    size_t kvbuf_stride;
    int nthreads;
    /* LoRA adapters on the layer's linears (NULL: none); training: dropout on, values saved in rows.lora_t;
     * lora_x: N x (r + the widest layer input) floats of scratch */
    struct lmf_lora *lora;
    int training;
    float *lora_x;
    /* mixed precision: every linear layer's products (forward, input and weight gradients) and attention's six
     * products in bf16 through lmf_sgemm_bf16 (inputs rounded to bf16 as they are packed, fp32 sums, fp32
     * outputs); norms, the softmax, activations, residuals and everything kept for backward stay fp32. A frozen base's products (LoRA) or a
     * trained model's (`--precision bf16`) */
    int bf16;
    const struct lmf_moe_grad *moe_grad; /* training backward of MoE layers: the router losses' gradients */
    /* tensor parallelism (Megatron-LM), NULL: none; training of a dense model's F32 weights only. This rank of
     * tp->size computes n_head / size query heads (n_kv_head / size KV heads) and ffn_dim / size FFN columns, rank r
     * the r-th share of each: q|k|v and gate|up are column-parallel (its rows of them, biases included), o and down
     * row-parallel (its columns), and their partial products are summed over the ranks before the bias and the
     * residual (the paper's g); backward, the input gradients of the column-parallel layers are summed before the
     * norm (f). Every rank keeps the whole residual stream, norms, embeddings and head (replicated: each computes
     * their gradients in full), and only its share of qkv, atty, fch and fcact (narrower rows). Weight gradients land
     * in this rank's slices of G; the rest of each tensor is left alone. */
    struct lmf_block_tp *tp;
    /* training backward: the dense linear layers' weight gradients (q|k|v, o, fc, down) hold nothing yet (the step's
     * first backward after lmf_model_zero_grad, which left them alone): their products write them instead of adding
     * to them, which saves zeroing them and reading them back */
    int fresh_grads;
    /* inference: every linear site's input rows go to observe first (NULL: none); fp32 inputs only */
    lmf_block_observe_fn observe;
    void *observe_user;
} lmf_block_ctx;
/* ctx->observe on N input rows of `cols` floats (nothing without an observer) */
void lmf_block_observe(const lmf_block_ctx *ctx, int layer, lmf_obs_site site, int expert, const float *in,
                       int ldi, int N, int cols);
/* lmf_block_linear's mode for ctx's layers: LMF_LIN_BF16 when ctx->bf16, LMF_LIN_QINT | LMF_LIN_SPLIT unless
 * ctx->training. */
int lmf_block_lin_mode(const lmf_block_ctx *ctx);

/* buf becomes its sum over ctx->tp's group (nothing without tensor parallelism). */
void lmf_block_ctx_tp_sum(const lmf_block_ctx *ctx, float *buf, size_t n);

/* A training linear layer's backward over F32 weights (dinp = beta dinp + dout W, dW = dw_beta dW + dout^T inp,
 * dbias += column sums of dout), its products in bf16 when ctx->bf16 as the forward's: the dense layers' and the
 * MoE experts'. */
void lmf_block_linear_backward(const lmf_block_ctx *ctx, float *dinp, float beta, float *dW, float dw_beta,
                               float *dbias, const float *dout, const float *inp, const float *W, int N, int IC,
                               int OC);

/* One layer forward over the N = ctx->B x ctx->T rows of x (N, C). */
void lmf_block_forward(const lmf_block_ctx *ctx, const lmf_layer_weights *L, int layer, const float *x,
                       lmf_block_rows *r);

/* Training backward of one layer: dres (N,C) holds d(res3) and becomes d(x). With G (views of the gradient buffer
 * laid out like L; F32 weights with fused q|k|v and gate|up, the training model's own) every weight's gradient is
 * added into G. Without G the base is frozen (fine-tuning adapters): only the input gradients flow, through weights
 * of any type (dequantized slabs), and the adapters of ctx->lora get theirs. Scratch: dbuf (N,C), dqkv (N,S),
 * dfch (N,FF), dfcact (N,F), dnorm (2C: a frozen norm's unused parameter gradients). */
typedef struct {
    float *dres, *dbuf, *dqkv, *dfch, *dfcact, *dnorm;
} lmf_block_grads;
void lmf_block_backward(const lmf_block_ctx *ctx, const lmf_layer_weights *L, const lmf_layer_weights *G, int layer,
                        const float *x, const lmf_block_rows *r, lmf_block_grads *g);

/* Decode: per-thread state of a step inside one parallel region (infer.c forward_decode). */
typedef struct {
    const lmf_model_config *cfg;
    const float *rope, *rope_swa; /* as lmf_block_ctx's */
    const lmf_block_seq *seqs; /* the sequences of the step's rows (as lmf_block_ctx) */
    int n_seqs;
    int row_seq[LMF_BLOCK_QMV_MAX], row_pos[LMF_BLOCK_QMV_MAX]; /* each row's sequence and position */
    float *x;            /* (N,C) the residual stream, shared */
    float *proj;         /* (N,C) products feeding the residual, shared */
    float *qkv;          /* (N,S) shared */
    float *fch, *fcact;  /* (N,FF), (N,F) shared */
    float *part;         /* attention stretches: nthreads x QMV_MAX x (QD + NH), QD = n_head x head size */
    void *qin;           /* converted input rows, per thread: 3 x QMV_MAX x qin_stride bytes */
    size_t qin_stride;
    float *xnt;          /* per thread: QMV_MAX x lmf_block_xn_width floats: normalized rows, attention's output */
    float *scores;       /* per thread: QBLK x the longest context */
    size_t scores_stride;
    const struct lmf_lora *lora; /* adapters applied without merging (NULL: none) */
    lmf_barrier *bar;
    float *moe;          /* mixture of experts: a layer's routing and expert rows (lmf_moe_layer_floats, QMV_MAX) */
} lmf_block_decode_ctx;

/* The wider of C and q (n_head x head size): a row of lmf_block_decode_ctx.xnt. */
int lmf_block_xn_width(const lmf_model_config *cfg);

/* Fills row_seq / row_pos from seqs (N rows in all). */
void lmf_block_decode_rows(lmf_block_decode_ctx *d);

/* Layer `layer` for N <= QMV_MAX rows (each at its own sequence and position): thread tid of nth makes its rows of
 * every product. The start of the next layer's first weights (or, after the last layer, of head when not NULL) is
 * prefetched before the barrier the layer ends with. */
void lmf_block_decode(const lmf_block_decode_ctx *d, const lmf_layer_weights *L, const lmf_layer_weights *next,
                      const lmf_wtensor *head, int layer, int N, int tid, int nth);
/* The output head for the nr rows listed in rows of the final residual stream: norm, then this thread's rows of the
 * logits (out row r = rows[r], V floats apart). */
void lmf_block_decode_head(const lmf_block_decode_ctx *d, const lmf_weights *w, const int *rows, int nr,
                           float *logits, int tid, int nth);
/* Decode pieces for other FFN kinds (moe.c): thread tid's share [lo, hi) of rows in whole units; rows [lo, hi) of
 * o over N input rows (row i is in[rows[i]], rows NULL: in[i]; ldi apart), converted into qbuf (N x
 * lmf_qinput_bytes of o's type and width), bias added. */
void lmf_block_row_share(int rows, int unit, int tid, int nth, int *lo, int *hi);
void lmf_block_linear_qrows(const lmf_lin *o, const int32_t *rows, int N, const float *in, int ldi, char *qbuf,
                            int lo, int hi);
/* Prefetches the start of this thread's share of W (the layout the decode kernels read). */
void lmf_block_prefetch_share(const lmf_wtensor *W, int unit, int tid, int nth);

#endif
