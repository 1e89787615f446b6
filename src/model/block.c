/* block.c — the transformer block for training, prefill and decode (see block.h).
 *
 * Linear layers pick one of two paths by the number of rows:
 *  - many rows (training, prefill): weights other than F32 are dequantized to fp32 in slabs (R16 groups k-major, ggml
 *    rows row-major) and multiplied with the fp32 SGEMM (compute-bound; a weight element is reused by every row),
 *    except in inference on AMX-INT8 tiles, where R16 groups take the decode path's integer products (LMF_LIN_QINT);
 *  - a few rows (decode): the input rows are converted once (int16 blocks for quantized weights, kernels/quant.h:
 *    int8 blocks as llama.cpp uses cost SmolLM2 2-5% of its logits; int16 keeps them within 3e-4) and every thread
 *    streams its contiguous share of the weight rows (whole 16-row groups) through lmf_qmatvec_r16 (Q8_0/Q4_x, Q5_x
 *    and Q4_K/Q5_K/Q6_K; repacked once by lmf_weights_prepare_decode) or lmf_qmatvec: each weight byte is
 *    read once per token and nothing is dequantized to memory.
 * Attention: training over the batch's own keys (kernels/attention.c: probabilities recomputed in backward); prefill
 * per head and block of 64 queries by SGEMM against the transposed K cache; decode split by cached positions
 * (attend_share). */
#include "model/block.h"

#include "core/alloc.h"
#include "core/progress.h"
#include "core/status.h"
#include "io/gguf.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/vec.h"
#include "model/moe.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define QMV_MAX LMF_BLOCK_QMV_MAX
#define QBLK LMF_BLOCK_QBLK

typedef lmf_lin lin;

static int qkv_width(const lmf_model_config *c) { return lmf_q_width(c) + 2 * lmf_kv_width(c); }
static int ffn_width(const lmf_model_config *c) { return lmf_act_gated(c->act) ? 2 * c->ffn_dim : c->ffn_dim; }

/* The widths of a training or prefill layer on this rank: the whole model's, or under tensor parallelism (ctx->tp)
 * this rank's share of the heads and of the FFN's hidden columns. */
typedef struct {
    int C, hs;          /* the residual stream's width, a head's (not C / n_head when cfg.head_dim says so) */
    int nh, nkv;        /* this rank's query heads, KV heads */
    int CA, KVA, S;     /* their widths (CA = nh hs, KVA = nkv hs) and the kept q|k|v row's (CA + 2 KVA) */
    int F, FF;          /* this rank's FFN columns and its fch row's width (2F with SwiGLU: gate | up) */
    int h0, g0, f0;     /* its first query head, KV head and FFN column */
} widths;

static widths widths_of(const lmf_block_ctx *ctx) {
    const lmf_model_config *c = ctx->cfg;
    int t = ctx->tp ? ctx->tp->size : 1, r = ctx->tp ? ctx->tp->rank : 0;
    widths w;
    w.C = c->n_embd, w.hs = lmf_head_size(c), w.nh = c->n_head / t, w.nkv = c->n_kv_head / t;
    w.CA = w.nh * w.hs, w.KVA = w.nkv * w.hs, w.S = w.CA + 2 * w.KVA;
    w.F = c->ffn_dim / t, w.FF = lmf_act_gated(c->act) ? 2 * w.F : w.F;
    w.h0 = r * w.nh, w.g0 = r * w.nkv, w.f0 = r * w.F;
    return w;
}

static const float *offset(const float *bias, int at) { return bias ? bias + at : NULL; }
/* Where this rank's n columns of a row-parallel matrix start in W's rows: at c0 of the whole matrix, or at 0 when W
 * holds only this rank's columns (a tensor-parallel rank's packed share, model.h's lmf_model_pack_tp). */
int lmf_block_share_col(const lmf_wtensor *W, int n, int c0) { return W->cols == n ? 0 : c0; }

/* Megatron's g (forward, after a row-parallel layer) and f (backward, before a column-parallel layer's input
 * gradient reaches the norm): buf becomes its sum over the tensor-parallel ranks (lmf_block_tp). */
void lmf_block_tp_sum(lmf_block_tp *tp, float *buf, size_t n) {
    double t = lmf_now();
    tp->sum(tp, buf, n);
    tp->wait_s += lmf_now() - t;
}
void lmf_block_ctx_tp_sum(const lmf_block_ctx *ctx, float *buf, size_t n) {
    if (ctx->tp) lmf_block_tp_sum(ctx->tp, buf, n);
}

/* ---- pieces every mode uses --------------------------------------------------------------------------------- */

void lmf_block_norm(const lmf_model_config *cfg, float *out, float *mean, float *rstd, const float *x,
                    const float *g, const float *b, int N) {
    const lmf_vec_ops *V = lmf_vec();
    int C = cfg->n_embd;
    for (int i = 0; i < N; i++) {
        float *o = out + (size_t)i * C;
        if (cfg->norm == LMF_NORM_RMS) V->rmsnorm(o, &rstd[i], x + (size_t)i * C, g, C, cfg->norm_eps);
        else V->layernorm(o, &mean[i], &rstd[i], x + (size_t)i * C, g, b, C, cfg->norm_eps);
    }
}

void lmf_block_norm_par(const lmf_model_config *cfg, float *out, float *mean, float *rstd, const float *x,
                        const float *g, const float *b, int N) {
    if (cfg->norm == LMF_NORM_RMS) lmf_rmsnorm_forward(out, rstd, x, g, N, cfg->n_embd, cfg->norm_eps);
    else lmf_layernorm_forward(out, mean, rstd, x, g, b, N, cfg->n_embd, cfg->norm_eps);
}

/* n values of one row's activation: a[j] = act(h[j]) (SwiGLU, GeGLU: its up half F values on, F the row's width) */
static void act_row(const lmf_model_config *cfg, const lmf_vec_ops *V, float *a, const float *h, int F, int n) {
    if (cfg->act == LMF_ACT_SWIGLU) V->swiglu(a, h, h + F, n);
    else if (cfg->act == LMF_ACT_GELU_TANH) V->gelu(a, h, n);
    else if (cfg->act == LMF_ACT_GEGLU) { /* gelu_tanh(gate) * up, as transformers' Gemma MLP */
        V->gelu(a, h, n);
        for (int j = 0; j < n; j++) a[j] *= h[F + j];
    }
    else
        for (int j = 0; j < n; j++) a[j] = h[j] > 0 ? h[j] : 0;
}

void lmf_block_ffn_act(const lmf_model_config *cfg, float *fcact, const float *fch, int N, int lo, int hi) {
    const lmf_vec_ops *V = lmf_vec();
    int F = cfg->ffn_dim, FF = ffn_width(cfg);
    for (int i = 0; i < N; i++) act_row(cfg, V, fcact + (size_t)i * F + lo, fch + (size_t)i * FF + lo, F, hi - lo);
}

/* The same activation over all of N rows, spread over the threads. */
static void ffn_act_par(const lmf_model_config *cfg, float *fcact, const float *fch, int N, int F) {
    if (cfg->act == LMF_ACT_GEGLU) lmf_geglu_forward(fcact, fch, N, F);
    else if (cfg->act == LMF_ACT_SWIGLU) lmf_swiglu_forward(fcact, fch, N, F);
    else if (cfg->act == LMF_ACT_GELU_TANH) lmf_gelu_forward(fcact, fch, (long)N * F);
    else lmf_relu_forward(fcact, fch, (long)N * F);
}

/* lmf_block_norm_par and ffn_act_par for outputs kept in bf16 (lmf_block_rows): each row is made in fp32 by the same
 * kernel in the thread's scratch and rounded as the products round their inputs (lmf_sgemm_bf16_round), so the bf16
 * rows are those of the fp32 path, and no fp32 row goes to memory. */
static void norm_par_b16(const lmf_model_config *cfg, uint16_t *out, float *mean, float *rstd, const float *x,
                         const float *g, const float *b, int N) {
    const lmf_vec_ops *v = lmf_vec();
    int C = cfg->n_embd;
#pragma omp parallel
    {
        float *t = lmf_thread_scratch((size_t)C * sizeof(float));
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            if (cfg->norm == LMF_NORM_RMS) v->rmsnorm(t, &rstd[n], x + (long)n * C, g, C, cfg->norm_eps);
            else v->layernorm(t, &mean[n], &rstd[n], x + (long)n * C, g, b, C, cfg->norm_eps);
            lmf_sgemm_bf16_round(out + (long)n * C, t, C);
        }
    }
}

static void ffn_act_par_b16(const lmf_model_config *cfg, uint16_t *fcact, const float *fch, int N, int F) {
    const lmf_vec_ops *v = lmf_vec();
    int FF = lmf_act_gated(cfg->act) ? 2 * F : F; /* F: a tensor-parallel share's */
#pragma omp parallel
    {
        float *t = lmf_thread_scratch((size_t)F * sizeof(float));
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            act_row(cfg, v, t, fch + (long)n * FF, F, F);
            lmf_sgemm_bf16_round(fcact + (long)n * F, t, F);
        }
    }
}

void lmf_block_rope_table(const lmf_model_config *cfg, float *tab, int T) {
    int hs = lmf_head_size(cfg);
    float *f = lmf_xmalloc(sizeof(float) * (size_t)(hs / 2 + 1));
    lmf_rope_table(tab, T, hs, cfg->rope_theta, lmf_rope_freq_factors(cfg, f) ? f : NULL);
    free(f);
}

int lmf_block_layer_window(const lmf_model_config *cfg, int layer) {
    int sw = cfg->sliding_window && (!cfg->swa_pattern || (layer + 1) % cfg->swa_pattern);
    return sw ? cfg->sliding_window : 0;
}

int lmf_block_rope_table_swa(const lmf_model_config *cfg, float *tab, int T) {
    if (cfg->rope_theta_swa == 0.0f) return 0;
    lmf_rope_table(tab, T, lmf_head_size(cfg), cfg->rope_theta_swa, NULL);
    return 1;
}

float lmf_block_attn_scale(const lmf_model_config *cfg) {
    return cfg->attn_scale != 0.0f ? cfg->attn_scale : 1.0f / sqrtf((float)lmf_head_size(cfg));
}

/* Training attention scales q.k by 1/sqrt(hs) itself: a model of another scale (cfg.attn_scale) has its q columns
 * (this rank's CA of each of N rows, S apart) multiplied by the ratio after RoPE, and their gradient likewise. */
static void scale_q(const lmf_model_config *c, float *qkv, int S, int N, int CA) {
    float f = c->attn_scale != 0.0f ? c->attn_scale * sqrtf((float)lmf_head_size(c)) : 1.0f;
    if (f == 1.0f) return;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        for (int j = 0; j < CA; j++) qkv[(size_t)i * S + j] *= f;
}

/* The table layer `layer` rotates by. */
static const float *layer_rope_tab(const lmf_model_config *c, const float *rope, const float *rope_swa, int layer) {
    return rope_swa && lmf_block_layer_window(c, layer) ? rope_swa : rope;
}

int lmf_block_layer_rope(const lmf_model_config *cfg, int layer) {
    return cfg->pos != LMF_POS_LEARNED && !(cfg->nope_interval && (layer + 1) % cfg->nope_interval == 0);
}

void lmf_block_rope(const lmf_model_config *cfg, int layer, const float *tab, float *x, int ld, int N, int T, int p0,
                    const int32_t *pos, int nheads, float sign) {
    if (!lmf_block_layer_rope(cfg, layer)) return;
    lmf_rope_rows(x, ld, N, T, p0, pos, tab, nheads, lmf_head_size(cfg), cfg->pos == LMF_POS_ROPE_INTERLEAVED, sign);
}

/* cfg.qk_norm: in each of N rows (ld floats apart) nq groups of qn query values and then nk groups of kn key values,
 * side by side as a qkv row holds q and k, are RMS-normalised in place and scaled by qw (a query group) or kw (a key
 * group). Per head (Qwen3) a group is a head (qn = kn = hs, one weight shared by the heads); full width (OLMoE) one
 * group is all of q and one all of k (nq = nk = 1). Training keeps what the backward needs: keep (N, nq qn + nk kn)
 * the rows before the norm, rstd (N, nq + nk) each group's statistic; both NULL in prefill. */
typedef struct {
    int nq, qn, nk, kn;
} qk_groups;

static qk_groups qk_groups_of(const lmf_model_config *c, int nh, int nkv, int hs) {
    if (c->qk_norm == LMF_QK_NORM_FULL) return (qk_groups){1, nh * hs, 1, nkv * hs};
    return (qk_groups){nh, hs, nkv, hs};
}

static void qk_norm_forward(const lmf_model_config *c, float *x, int ld, int N, qk_groups q, const float *qw,
                            const float *kw, float *keep, float *rstd) {
    const lmf_vec_ops *V = lmf_vec();
    int nn = q.nq + q.nk, width = q.nq * q.qn + q.nk * q.kn;
#pragma omp parallel for schedule(static) if (N >= 64)
    for (int i = 0; i < N; i++) {
        float *row = x + (size_t)i * ld, r;
        if (keep) memcpy(keep + (size_t)i * width, row, (size_t)width * sizeof(float));
        for (int h = 0, at = 0; h < nn; at += h < q.nq ? q.qn : q.kn, h++) {
            int n = h < q.nq ? q.qn : q.kn;
            V->rmsnorm(row + at, &r, row + at, h < q.nq ? qw : kw, n, c->norm_eps);
            if (rstd) rstd[(size_t)i * nn + h] = r;
        }
    }
}

/* Its backward in place: dx (N rows ld apart, the groups as in the forward) holds d(normalised q | k) and becomes
 * d(q | k before the norm); dqw / dkw += the weights' gradients. Serial over the rows, as every row adds into the
 * same two weight gradients (a pass over N (nq qn + nk kn) floats: small beside the products around it). */
static void qk_norm_backward(float *dx, int ld, int N, qk_groups q, const float *qw, const float *kw, float *dqw,
                             float *dkw, const float *keep, const float *rstd) {
    int nn = q.nq + q.nk, width = q.nq * q.qn + q.nk * q.kn;
    for (int i = 0; i < N; i++)
        for (int h = 0, at = 0; h < nn; at += h < q.nq ? q.qn : q.kn, h++) {
            int n = h < q.nq ? q.qn : q.kn;
            float *dy = dx + (size_t)i * ld + at, *dw = h < q.nq ? dqw : dkw, r = rstd[(size_t)i * nn + h];
            const float *x = keep + (size_t)i * width + at, *w = h < q.nq ? qw : kw;
            float d = 0.0f;
            for (int j = 0; j < n; j++) d += dy[j] * w[j] * x[j];
            float k = r * r * r * d / (float)n;
            for (int j = 0; j < n; j++) {
                dw[j] += dy[j] * x[j] * r;
                dy[j] = r * dy[j] * w[j] - k * x[j];
            }
        }
}

/* The backward of a layer's q/k norm with its weight gradients in G (training) or discarded (frozen: scratch of
 * qn + kn floats). Under tensor parallelism (per head; the full width has its own pair below) each rank holds its
 * heads only, so the replicated weights' gradients are this rank's share: summed over the group before they are
 * added (every rank calls this, in the same order). */
static void qk_norm_grads(const lmf_block_ctx *ctx, float *dqkv, int ld, int N, qk_groups q,
                          const lmf_layer_weights *L, float *gq, float *gk, float *scratch,
                          const lmf_block_rows *r) {
    if (!ctx->tp || !gq) {
        qk_norm_backward(dqkv, ld, N, q, L->q_norm_w, L->k_norm_w, gq ? gq : scratch, gk ? gk : scratch + q.qn,
                         r->qk, r->qk_rstd);
        return;
    }
    LMF_CHECK(ctx->cfg->qk_norm == LMF_QK_NORM_HEAD);
    int hs = q.qn;
    memset(scratch, 0, 2 * (size_t)hs * sizeof(float));
    qk_norm_backward(dqkv, ld, N, q, L->q_norm_w, L->k_norm_w, scratch, scratch + hs, r->qk, r->qk_rstd);
    lmf_block_ctx_tp_sum(ctx, scratch, 2 * (size_t)hs);
    for (int j = 0; j < hs; j++) gq[j] += scratch[j], gk[j] += scratch[hs + j];
}

/* The full-width norm under tensor parallelism: a rank holds n_head / t query heads and n_kv_head / t KV heads of each
 * row (q0 and k0 its first q and k values), so a row's sum of squares, and in the backward its sum of dy w x, are
 * this rank's share summed over the group (one exchange of 2N floats each way); the weights are replicated, each
 * rank using and differentiating its slice of them. Forward: q|k of N rows (ld apart, CA then KVA values) in place;
 * keep and rstd as qk_norm_forward's (rstd first holds the partial sums). */
static void full_qk_norm_tp_forward(const lmf_block_ctx *ctx, float *x, int ld, int N, int CA, int KVA, int q0,
                                    int k0, const float *qw, const float *kw, float *keep, float *rstd) {
    const lmf_model_config *c = ctx->cfg;
    const lmf_vec_ops *V = lmf_vec();
    int QD = lmf_q_width(c), KV = lmf_kv_width(c);
    for (int i = 0; i < N; i++) {
        const float *row = x + (size_t)i * ld;
        memcpy(keep + (size_t)i * (CA + KVA), row, (size_t)(CA + KVA) * sizeof(float));
        rstd[2 * i] = V->dot(row, row, CA), rstd[2 * i + 1] = V->dot(row + CA, row + CA, KVA);
    }
    lmf_block_ctx_tp_sum(ctx, rstd, 2 * (size_t)N);
    for (int i = 0; i < N; i++) {
        float *row = x + (size_t)i * ld;
        rstd[2 * i] = 1.0f / sqrtf(rstd[2 * i] / QD + c->norm_eps);
        rstd[2 * i + 1] = 1.0f / sqrtf(rstd[2 * i + 1] / KV + c->norm_eps);
        for (int j = 0; j < CA; j++) row[j] = row[j] * rstd[2 * i] * qw[q0 + j];
        for (int j = 0; j < KVA; j++) row[CA + j] = row[CA + j] * rstd[2 * i + 1] * kw[k0 + j];
    }
}

/* Its backward: dx as qk_norm_backward's; part (2N floats) and wbuf (QD + KV floats) scratch; the weights' gradients
 * (this rank's slices, zero elsewhere) summed over the group, then added to gq / gk. */
static void full_qk_norm_tp_backward(const lmf_block_ctx *ctx, float *dx, int ld, int N, int CA, int KVA, int q0,
                                     int k0, const lmf_layer_weights *L, float *gq, float *gk, const float *keep,
                                     const float *rstd, float *part, float *wbuf) {
    const lmf_model_config *c = ctx->cfg;
    int C = lmf_q_width(c), KV = lmf_kv_width(c), n[2] = {CA, KVA}, full[2] = {C, KV}, off[2] = {q0, k0}; /* C: q's */
    const float *w[2] = {L->q_norm_w, L->k_norm_w};
    for (int i = 0; i < N; i++)
        for (int h = 0, at = 0; h < 2; at += n[h++]) {
            const float *dy = dx + (size_t)i * ld + at, *xr = keep + (size_t)i * (CA + KVA) + at;
            float d = 0.0f;
            for (int j = 0; j < n[h]; j++) d += dy[j] * w[h][off[h] + j] * xr[j];
            part[2 * i + h] = d;
        }
    lmf_block_ctx_tp_sum(ctx, part, 2 * (size_t)N);
    memset(wbuf, 0, (size_t)(C + KV) * sizeof(float));
    for (int i = 0; i < N; i++)
        for (int h = 0, at = 0; h < 2; at += n[h++]) {
            float *dy = dx + (size_t)i * ld + at, *dw = wbuf + (h ? C : 0) + off[h], r = rstd[2 * i + h];
            const float *xr = keep + (size_t)i * (CA + KVA) + at, *wh = w[h] + off[h];
            float k = r * r * r * part[2 * i + h] / (float)full[h];
            for (int j = 0; j < n[h]; j++) {
                dw[j] += dy[j] * xr[j] * r;
                dy[j] = r * dy[j] * wh[j] - k * xr[j];
            }
        }
    lmf_block_ctx_tp_sum(ctx, wbuf, (size_t)(C + KV));
    for (int j = 0; j < C; j++) gq[j] += wbuf[j];
    for (int j = 0; j < KV; j++) gk[j] += wbuf[C + j];
}

void lmf_block_weight_row(const lmf_wtensor *W, int r, float *out) {
    if (W->r16) /* repacked (a tied head's embeddings too): row r of its group */
        lmf_r16_dequant_row(W->type, W->cols, (const char *)W->r16 + (size_t)(r / 16) * 16 * W->row_bytes, r % 16, out);
    else
        lmf_dequant_fast(W->type, (const char *)W->data + (size_t)r * W->row_bytes, out, (size_t)W->cols);
}

void lmf_block_embed(const lmf_weights *w, float *x, const int32_t *tok, int N, int T, int p0, const int32_t *pos) {
    const lmf_wtensor *te = &w->tok_emb, *pe = &w->pos_emb;
    int C = w->cfg.n_embd, learned = w->cfg.pos == LMF_POS_LEARNED;
    float scale = w->cfg.embed_scale ? (float)sqrt((double)C) : 1.0f; /* Gemma: sqrt(C) rounded to fp32 */
#pragma omp parallel if (N > LMF_BLOCK_QMV_AUTO)
    {
        float *prow = learned && pe->type != LMF_GGML_F32 ? malloc((size_t)C * sizeof(float)) : NULL;
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            float *xi = x + (size_t)i * C;
            lmf_block_weight_row(te, tok[i], xi);
            for (int j = 0; scale != 1.0f && j < C; j++) xi[j] *= scale;
            if (!learned) continue;
            size_t prow_at = (size_t)((pos ? pos[i] : p0 + i % T) + w->cfg.pos_offset);
            const char *prow_src = (const char *)pe->data + prow_at * pe->row_bytes;
            const float *p = (const float *)prow_src;
            if (prow) lmf_dequant_fast(pe->type, prow_src, prow, (size_t)C), p = prow;
            for (int j = 0; j < C; j++) xi[j] += p[j];
        }
        free(prow);
    }
}

/* ---- linear layers, many rows --------------------------------------------------------------------------------- */

/* Whether layers j and j + 1 are one fp32 matrix cut in two: adjacent weight rows, biases and outputs. */
static int adjacent(const lin *a, const lin *b) {
    const lmf_wtensor *A = a->W, *B = b->W;
    return A->type == LMF_GGML_F32 && B->type == LMF_GGML_F32 && A->cols == B->cols && a->ldo == b->ldo &&
           (const char *)A->data + (size_t)A->rows * A->row_bytes == B->data && a->out + A->rows == b->out &&
           ((!a->bias && !b->bias) || (a->bias && b->bias && a->bias + A->rows == b->bias));
}

static void add_bias(float *out, int ldo, const float *bias, int N, int rows) {
#pragma omp parallel for schedule(static) if (N >= 64)
    for (int i = 0; i < N; i++) {
        float *y = out + (size_t)i * ldo;
        for (int c = 0; c < rows; c++) y[c] += bias[c];
    }
}

static void add_bias_opt(float *out, int ldo, const float *bias, int N, int rows) {
    if (bias) add_bias(out, ldo, bias, N, rows);
}

/* Rows of W per fp32 slab of at most dq_floats (whole R16 groups). */
static int slab_rows(const lmf_wtensor *W, size_t dq_floats) {
    int slab = (int)(dq_floats / (size_t)W->cols);
    return W->r16 ? slab / 16 * 16 : slab;
}

/* Dequantizes rows [r0, r0 + nr) of W into dq; returns 1 when dq is k-major (K x nr: R16 groups), 0 when row-major
 * (nr x K: ggml rows). R16 groups go k-major because each thread then fills whole rows of 32 k (block b of every
 * group, left to right): going group by group instead writes K strided streams at once, which measured 2.5x slower
 * than ggml rows; the SGEMM reads the k-major slab untransposed. */
static int dequant_slab(const lmf_wtensor *W, int r0, int nr, float *dq) {
    int K = W->cols;
    if (W->r16) {
        int u = lmf_r16_unit(W->type);                   /* 32, or a K-quant's super-block of 256 */
        size_t gb = W->row_bytes / (size_t)(K / u) * 16; /* bytes of one unit of a group */
        const char *src = (const char *)W->r16 + (size_t)r0 * W->row_bytes;
#pragma omp parallel for schedule(static)
        for (int b = 0; b < K / u; b++)
            for (int g = 0; g < nr / 16; g++)
                lmf_r16_dequant_t(W->type, u, src + (size_t)g * 16 * W->row_bytes + (size_t)b * gb,
                                  dq + (size_t)b * u * nr + (size_t)g * 16, (size_t)nr);
        return 1;
    }
    const char *src = (const char *)W->data + (size_t)r0 * W->row_bytes;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < nr; r++)
        lmf_dequant_fast(W->type, src + (size_t)r * W->row_bytes, dq + (size_t)r * K, (size_t)K);
    return 0;
}

static void row_share(int rows, int unit, int tid, int nth, int *lo, int *hi);

/* Layers o[0..n) (R16, one input width and activation format) over N rows through the integer R16 products
 * (LMF_LIN_QINT): the rows converted to int16 blocks once into buf (as many at a time as buf_bytes holds), then
 * each thread its share of whole 16-row groups of every layer against all of them. */
static void linear_qint(const lin *o, int n, const float *in, int ldi, int N, void *buf, size_t buf_bytes) {
    if (N <= 0) return;
    int K = o[0].W->cols;
    size_t qb = lmf_qinput_bytes(o[0].W->type, K);
    int nq = buf_bytes / qb > (size_t)N ? N : (int)(buf_bytes / qb);
    LMF_CHECK(nq >= 1);
    for (int i0 = 0; i0 < N; i0 += nq) {
        int m = N - i0 < nq ? N - i0 : nq;
#pragma omp parallel
        {
#pragma omp for schedule(static)
            for (int i = 0; i < m; i++)
                lmf_qinput_convert(o[0].W->type, in + (size_t)(i0 + i) * ldi, K, (char *)buf + (size_t)i * qb);
            for (int j = 0; j < n; j++) {
                const lmf_wtensor *W = o[j].W;
                int lo, hi;
                row_share(W->rows, 16, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
                if (hi > lo)
                    lmf_qmatvec_r16(W->type, K, hi - lo, (const char *)W->r16 + (size_t)lo * W->row_bytes,
                                    W->row_bytes, m, buf, qb, o[j].out + (size_t)i0 * o[j].ldo + lo, o[j].ldo);
            }
        }
    }
}

/* How many of o[j..n) from j on take linear_qint together (0: o[j] does not take it). Only the types the AMX tiles
 * take: Q5_x and the K-quants have R16 groups on the AVX-512 table too, and their many-row products stay on the
 * fp32 slabs they took before that (whether the int16 kernels would beat them there is unmeasured). */
static int qint_run(const lin *o, int j, int n, int mode) {
    if (!(mode & LMF_LIN_QINT) || !o[j].W->r16 || !lmf_cpu_amx_int8() || !lmf_r16_amx_type(o[j].W->type)) return 0;
    int e = j + 1;
    while (e < n && o[e].W->r16 && lmf_r16_amx_type(o[e].W->type) && o[e].W->cols == o[j].W->cols &&
           lmf_qinput_format(o[e].W->type) == lmf_qinput_format(o[j].W->type))
        e++;
    return e - j;
}

int lmf_block_lin_mode(const lmf_block_ctx *ctx) {
    return (ctx->bf16 ? LMF_LIN_BF16 : 0) | (ctx->training ? 0 : LMF_LIN_QINT | LMF_LIN_SPLIT);
}

/* lmf_block_linear on an input kept in bf16 (training's F32 weights, bf16 products): the same bits */
static void linear_b16(const lin *o, int n, const uint16_t *in, int ldi, int N) {
    for (int j = 0; j < n; j++) {
        const lmf_wtensor *W = o[j].W;
        int O = W->rows, K = W->cols, j0 = j;
        LMF_CHECK(W->type == LMF_GGML_F32);
        while (j + 1 < n && adjacent(&o[j], &o[j + 1])) O += o[++j].W->rows;
        lmf_sgemm_bf16_x(0, 1, N, O, K, in, 1, ldi, W->data, 0, (int)(W->row_bytes / sizeof(float)), 0.0f, o[j0].bias,
                         o[j0].out, o[j0].ldo);
    }
}

void lmf_block_observe(const lmf_block_ctx *ctx, int layer, lmf_obs_site site, int expert, const float *in,
                       int ldi, int N, int cols) {
    if (ctx->observe && in && N > 0) ctx->observe(ctx->observe_user, layer, site, expert, in, ldi, N, cols);
}

/* The forward's products on an input kept in fp32 (in) or bf16 (in16), seen first by ctx's observer as `site` */
static void linear_in(const lmf_block_ctx *ctx, int layer, lmf_obs_site site, const lin *o, int n, const float *in,
                      const uint16_t *in16, int ldi, int N) {
    if (!in16) lmf_block_observe(ctx, layer, site, -1, in, ldi, N, o[0].W->cols);
    if (in16) linear_b16(o, n, in16, ldi, N);
    else lmf_block_linear(o, n, in, ldi, N, ctx->dq, ctx->dq_floats, lmf_block_lin_mode(ctx));
}

void lmf_block_linear(const lin *o, int n, const float *in, int ldi, int N, float *dq, size_t dq_floats, int mode) {
    /* F32 weights keep the exact fp32 products in inference: the split's 2^-16 is for weights that carry no more */
    void (*gemm)(int, int, int, int, int, const float *, int, const float *, int, float, float *, int) =
        mode & LMF_LIN_BF16 ? lmf_sgemm_bf16 : lmf_sgemm;
    void (*slab_gemm)(int, int, int, int, int, const float *, int, const float *, int, float, float *, int) =
        mode & LMF_LIN_BF16 ? lmf_sgemm_bf16 : mode & LMF_LIN_SPLIT ? lmf_sgemm_bf16x3 : lmf_sgemm;
    for (int j = 0; j < n; j++) {
        const lmf_wtensor *W = o[j].W;
        int O = W->rows, K = W->cols, j0 = j;
        int run = qint_run(o, j, n, mode);
        if (run) {
            linear_qint(o + j, run, in, ldi, N, dq, dq_floats * sizeof(float));
            for (int e = j; e < j + run; e++) add_bias_opt(o[e].out, o[e].ldo, o[e].bias, N, o[e].W->rows);
            j += run - 1;
            continue;
        }
        if (W->type == LMF_GGML_F32) {
            while (j + 1 < n && adjacent(&o[j], &o[j + 1])) O += o[++j].W->rows;
            int ldw = (int)(W->row_bytes / sizeof(float));
            if (o[j0].bias && mode & LMF_LIN_BF16) { /* the tiles start from the bias: no pass over the output */
                lmf_sgemm_bf16_bias(0, 1, N, O, K, in, ldi, W->data, ldw, o[j0].bias, o[j0].out, o[j0].ldo);
                continue;
            }
            gemm(0, 1, N, O, K, in, ldi, W->data, ldw, 0.0f, o[j0].out, o[j0].ldo);
            if (o[j0].bias) add_bias(o[j0].out, o[j0].ldo, o[j0].bias, N, O);
            continue;
        }
        int slab = slab_rows(W, dq_floats);
        for (int r0 = 0; r0 < O; r0 += slab) {
            int nr = O - r0 < slab ? O - r0 : slab, kmajor = dequant_slab(W, r0, nr, dq);
            slab_gemm(0, !kmajor, N, nr, K, in, ldi, dq, kmajor ? nr : K, 0.0f, o[j].out + r0, o[j].ldo);
        }
        if (o[j].bias) add_bias(o[j].out, o[j].ldo, o[j].bias, N, O);
    }
}

void lmf_block_linear_dinput(const lin *o, int n, float *din, float beta, int ldi, int N, float *dq,
                             size_t dq_floats, int bf16) {
    void (*gemm)(int, int, int, int, int, const float *, int, const float *, int, float, float *, int) =
        bf16 ? lmf_sgemm_bf16 : lmf_sgemm;
    for (int j = 0; j < n; j++) {
        const lmf_wtensor *W = o[j].W;
        int O = W->rows, K = W->cols;
        if (W->type == LMF_GGML_F32) {
            gemm(0, 0, N, K, O, o[j].out, o[j].ldo, W->data, (int)(W->row_bytes / sizeof(float)), beta, din, ldi);
            beta = 1.0f;
            continue;
        }
        int slab = slab_rows(W, dq_floats);
        for (int r0 = 0; r0 < O; r0 += slab, beta = 1.0f) { /* din += dout_slab dq, dq read transposed if k-major */
            int nr = O - r0 < slab ? O - r0 : slab, kmajor = dequant_slab(W, r0, nr, dq);
            gemm(0, kmajor, N, K, nr, o[j].out + r0, o[j].ldo, dq, kmajor ? nr : K, beta, din, ldi);
        }
    }
}

void lmf_block_linear_slabs(const lmf_wtensor *W, const float *in, int ldi, int N, float *out, int slab, float *dq,
                            float *din, int ldd, int bf16, lmf_block_slab_fn visit, void *ctx) {
    void (*gemm)(int, int, int, int, int, const float *, int, const float *, int, float, float *, int) =
        bf16 ? lmf_sgemm_bf16 : lmf_sgemm;
    int O = W->rows, K = W->cols;
    if (W->r16) slab = slab / 16 * 16; /* whole R16 groups */
    LMF_CHECK(slab > 0);
    for (int r0 = 0; r0 < O; r0 += slab) {
        int nr = O - r0 < slab ? O - r0 : slab, kmajor = 0, ldw = K;
        const float *ws = dq;
        if (W->type == LMF_GGML_F32)
            ws = (const float *)((const char *)W->data + (size_t)r0 * W->row_bytes), ldw = (int)(W->row_bytes / 4);
        else if ((kmajor = dequant_slab(W, r0, nr, dq))) ldw = nr;
        gemm(0, !kmajor, N, nr, K, in, ldi, ws, ldw, 0.0f, out, nr);
        visit(ctx, r0, nr, out);
        if (din) gemm(0, kmajor, N, K, nr, out, nr, ws, ldw, 1.0f, din, ldd);
    }
}

/* A trained F32 linear layer's backward (dinp = beta dinp + dout W, dW = dw_beta dW + dout^T inp, dbias += column
 * sums): in bf16 when the run is mixed precision (the inputs of both products rounded as they are packed; see
 * lmf_block_ctx.bf16). */
void lmf_block_linear_backward(const lmf_block_ctx *ctx, float *dinp, float beta, float *dW, float dw_beta,
                               float *dbias, const float *dout, const float *inp, const float *W, int N, int IC,
                               int OC) {
    lmf_matmul_backward_ld(ctx->bf16, dinp, beta, dW, dw_beta, dbias, dout, OC, inp, IC, W, IC, N, IC, OC);
}

/* ---- linear layers, a few rows (decode) ------------------------------------------------------------------------ */
/* Converts N input rows (ldi apart) once per distinct activation format and width among o[0..n) into buf (blocks of
 * QMV_MAX rows, stride bytes per row); qin[j] / qb[j]: layer j's converted rows and their size. */
static void convert_inputs(const float *in, int ldi, int N, const lin *o, int n, char *buf, size_t stride,
                           const char *qin[3], size_t qb[3]) {
    for (int j = 0; j < n; j++) {
        int K = o[j].W->cols, same = -1;
        qb[j] = lmf_qinput_bytes(o[j].W->type, K);
        for (int p = 0; p < j; p++)
            if (lmf_qinput_format(o[p].W->type) == lmf_qinput_format(o[j].W->type) && o[p].W->cols == K) same = p;
        if (same >= 0) {
            qin[j] = qin[same];
            continue;
        }
        char *dst = buf + (size_t)j * QMV_MAX * stride;
        for (int i = 0; i < N; i++) lmf_qinput_convert(o[j].W->type, in + (size_t)i * ldi, K, dst + i * qb[j]);
        qin[j] = dst;
    }
}

/* Thread tid's share of a matrix's rows out of nth: whole units of `unit` rows (16: an R16 group). */
static void row_share(int rows, int unit, int tid, int nth, int *lo, int *hi) {
    long nu = (rows + unit - 1) / unit;
    *lo = (int)(nu * tid / nth * unit);
    *hi = (int)(nu * (tid + 1) / nth * unit);
    if (*hi > rows) *hi = rows;
    if (*lo > rows) *lo = rows;
}

/* Rows [lo, hi) of layer o over its converted input rows, bias added. */
static void linear_rows(const lin *o, int N, const char *qin, size_t qb, int lo, int hi) {
    const lmf_wtensor *W = o->W;
    if (hi <= lo) return;
    if (W->r16)
        lmf_qmatvec_r16(W->type, W->cols, hi - lo, (const char *)W->r16 + (size_t)lo * W->row_bytes, W->row_bytes, N,
                        qin, qb, o->out + lo, o->ldo);
    else
        lmf_qmatvec(W->type, W->cols, hi - lo, (const char *)W->data + (size_t)lo * W->row_bytes, W->row_bytes, N,
                    qin, qb, o->out + lo, o->ldo);
    if (o->bias)
        for (int i = 0; i < N; i++)
            for (int r = lo; r < hi; r++) o->out[(size_t)i * o->ldo + r] += o->bias[r];
}

void lmf_block_row_share(int rows, int unit, int tid, int nth, int *lo, int *hi) {
    row_share(rows, unit, tid, nth, lo, hi);
}

void lmf_block_linear_qrows(const lin *o, const int32_t *rows, int N, const float *in, int ldi, char *qbuf, int lo,
                            int hi) {
    int K = o->W->cols;
    size_t qb = lmf_qinput_bytes(o->W->type, K);
    for (int i = 0; i < N; i++)
        lmf_qinput_convert(o->W->type, in + (size_t)(rows ? rows[i] : i) * ldi, K, qbuf + i * qb);
    linear_rows(o, N, qbuf, qb, lo, hi);
}

/* Starts fetching the first PREFETCH_AHEAD bytes of this thread's share of W (from the layout linear_rows reads),
 * so that a thread that reaches a barrier first spends the wait filling the start of its next stream instead of
 * beginning it with demand misses. */
#define PREFETCH_AHEAD 4096
void lmf_block_prefetch_share(const lmf_wtensor *W, int unit, int tid, int nth) {
    int lo, hi;
    if (!W->rows) return;
    row_share(W->rows, unit, tid, nth, &lo, &hi);
    const char *p = (const char *)(W->r16 ? W->r16 : W->data) + (size_t)lo * W->row_bytes;
    size_t n = (size_t)(hi - lo) * W->row_bytes;
    for (size_t b = 0; b < n && b < PREFETCH_AHEAD; b += 64) __builtin_prefetch(p + b, 0, 3);
}


/* ---- attention ------------------------------------------------------------------------------------------------ */

/* One layer's K and V in a sequence's cache (block.h: lmf_kv_view). */
typedef struct {
    const lmf_kv_view *kv;
    void *k, *v;
    const int *blocks;
    int id0;
    size_t lkv, off; /* elements per position of a block: the kind's layers x KV; the layer's first one */
} kv_layer;
static kv_layer kv_layer_of(const lmf_kv_view *kv, const lmf_model_config *c, int layer) {
    size_t KV = (size_t)lmf_kv_width(c), slot = (size_t)(kv->slot ? kv->slot[layer] : layer);
    if (kv->wblocks && lmf_block_layer_window(c, layer))
        return (kv_layer){kv, kv->wk, kv->wv, kv->wblocks, kv->wid0, kv->wlayers * KV, slot * KV};
    return (kv_layer){kv, kv->k, kv->v, kv->blocks, 0, kv->layers * KV, slot * KV};
}
/* Position p's element of dimension d (of the layer's KV) in base (k or v); dimension d + 1 is bs on. */
static size_t kv_index(const kv_layer *l, int d, int p) {
    int bs = l->kv->bs;
    return ((size_t)(l->blocks[p / bs] - l->id0) * l->lkv + l->off + (size_t)d) * bs + p % bs;
}
static const void *kv_slot(const kv_layer *l, const void *base, int d, int p) {
    size_t i = kv_index(l, d, p);
    return l->kv->f16 ? (const void *)((const uint16_t *)base + i) : (const void *)((const float *)base + i);
}
/* Writes x to element i of base (k or v). */
static inline void kv_put(const lmf_kv_view *kv, void *base, size_t i, float x) {
    if (kv->f16) ((uint16_t *)base)[i] = lmf_f32_to_f16(x);
    else ((float *)base)[i] = x;
}
/* Dimensions [d0, d0 + hs) of m positions from p on (within one block) as an fp32 operand of row stride bs: the
 * cache itself, or (f16) its halves widened into tmp (hs x bs floats). */
static const float *kv_rows(const kv_layer *l, const void *base, int d0, int p, int m, int hs, float *tmp) {
    const void *at = kv_slot(l, base, d0, p);
    if (!l->kv->f16) return at;
    for (int d = 0; d < hs; d++)
        lmf_dequant_fast(LMF_GGML_F16, (const uint16_t *)at + (size_t)d * l->kv->bs, tmp + (size_t)d * l->kv->bs,
                         (size_t)m);
    return tmp;
}

/* Causal attention of the n new queries of one sequence (positions p0..p0+n-1) over its cache [0, p0+n), the
 * prefill path: q rows (n, ld S) in, out (n, NH hs). Query head h reads KV head h / (NH / NKV). Per head and block of
 * up to 64 queries: scores = Q K_h^T by SGEMM on each cache block's transposed K (an untransposed operand), causal
 * softmax, out = P V_h by SGEMM on the transposed V, accumulated over the cache blocks. With cfg.sliding_window W a
 * query at position P reads keys (P - W, P]: the block's products start at the cache block holding its first row's
 * first key, and each row's softmax covers its own span (the columns outside it zero). */
static void attention_cached(const lmf_block_ctx *ctx, const lmf_block_seq *sq, int layer, float *out,
                             const float *q) {
    const lmf_model_config *c = ctx->cfg;
    const lmf_kv_view *kv = &sq->kv;
    int NH = c->n_head, hs = lmf_head_size(c), C = NH * hs, group = NH / c->n_kv_head;
    int S = qkv_width(c), p0 = sq->p0, N = sq->n, bs = kv->bs; /* C: q's and out's width */
    int win = lmf_block_layer_window(c, layer);
    kv_layer kl = kv_layer_of(kv, c, layer);
    float scale = lmf_block_attn_scale(c), cap = c->attn_softcap;
    const lmf_vec_ops *V = lmf_vec();
    int nblk = (N + QBLK - 1) / QBLK;
#pragma omp parallel for schedule(dynamic, 1) collapse(2) num_threads(ctx->nthreads) /* scores: a slab per thread */
    for (int h = 0; h < NH; h++) {
        for (int b = 0; b < nblk; b++) {
            int i0 = b * QBLK, nq = N - i0 < QBLK ? N - i0 : QBLK, nk = p0 + i0 + nq;
            float *Sc = ctx->scores + (size_t)omp_get_thread_num() * ctx->scores_stride;
            float *kt = kv->f16 ? ctx->kvbuf + (size_t)omp_get_thread_num() * ctx->kvbuf_stride : NULL;
            const float *qh = q + (size_t)i0 * S + (size_t)h * hs;
            float *oh = out + (size_t)i0 * C + (size_t)h * hs;
            int dim0 = (h / group) * hs; /* the head's first K / V row in the layer's */
            int kb = win && p0 + i0 - win + 1 > 0 ? (p0 + i0 - win + 1) / bs * bs : 0, nw = nk - kb; /* columns */
            for (int p = kb; p < nk; p += bs) {
                int m = nk - p < bs ? nk - p : bs;
                lmf_sgemm(0, 0, nq, m, hs, qh, S, kv_rows(&kl, kl.k, dim0, p, m, hs, kt), bs, 0.0f, Sc + p - kb,
                          nw);
            }
            for (int r = 0; r < nq; r++) {
                float *row = Sc + (size_t)r * nw;
                int valid = p0 + i0 + r + 1, lo = win && valid - win > kb ? valid - win - kb : 0;
                if (cap) V->softcap(row + lo, valid - kb - lo, scale, cap); /* Gemma 2: then scaled already */
                V->softmax(row + lo, valid - kb - lo, cap ? 1.0f : scale);
                memset(row, 0, (size_t)lo * sizeof(float));
                memset(row + valid - kb, 0, (size_t)(nk - valid) * sizeof(float));
            }
            for (int p = kb; p < nk; p += bs) {
                int m = nk - p < bs ? nk - p : bs;
                lmf_sgemm(0, 1, nq, hs, m, Sc + p - kb, nw, kv_rows(&kl, kl.v, dim0, p, m, hs, kt), bs,
                          p > kb ? 1.0f : 0.0f, oh, C);
            }
        }
    }
}

/* Writes the K and V parts of one sequence's n qkv rows (positions p0..) into its cache. */
static void cache_write(const lmf_block_seq *sq, const lmf_model_config *c, int layer, const float *qkv) {
    int C = lmf_q_width(c), KV = lmf_kv_width(c), S = qkv_width(c); /* k after q's C */
    const lmf_kv_view *kv = &sq->kv;
    kv_layer kl = kv_layer_of(kv, c, layer);
    for (int i = 0; i < sq->n; i++) {
        size_t at = kv_index(&kl, 0, sq->p0 + i);
        for (int d = 0; d < KV; d++) {
            kv_put(kv, kl.k, at + (size_t)d * kv->bs, qkv[(size_t)i * S + C + d]);
            kv_put(kv, kl.v, at + (size_t)d * kv->bs, qkv[(size_t)i * S + C + KV + d]);
        }
    }
}

/* ---- training and prefill ------------------------------------------------------------------------------------- */

/* The LoRA adapters of matrices [m0, m1) after their base product (a no-op without adapters). */
static void adapt(const lmf_block_ctx *ctx, const lmf_block_rows *r, int layer, int m0, int m1, const float *in,
                  int ldi, float *out, int ldo, int N) {
    if (ctx->lora)
        lmf_lora_forward(ctx->lora, layer, m0, m1, in, ldi, out, ldo, N, ctx->training, r->lora_t, ctx->lora_x);
}

/* Gemma's sandwich: a product o normalised into out (in place in prefill, where nothing is kept; training keeps o
 * and rstd for the backward) before its residual add; without cfg.post_norms o itself. */
static float *post_norm(const lmf_model_config *c, float *o, float *out, float *rstd, const float *w, int N) {
    if (!c->post_norms) return o;
    lmf_block_norm_par(c, out, NULL, rstd, o, w, NULL, N);
    return out;
}

void lmf_block_forward(const lmf_block_ctx *ctx, const lmf_layer_weights *L, int layer, const float *x,
                       lmf_block_rows *r) {
    const lmf_model_config *c = ctx->cfg;
    widths w = widths_of(ctx);
    int C = w.C, hs = w.hs, CA = w.CA, KVA = w.KVA, S = w.S, F = w.F, FF = w.FF, N = ctx->B * ctx->T;
    int swiglu = lmf_act_gated(c->act);
    long NC = (long)N * C;

    /* q, k, v: this rank's heads' rows (all of them without tensor parallelism: one fused product) */
    if (r->ln1_16) norm_par_b16(c, r->ln1_16, r->ln1_mean, r->ln1_rstd, x, L->attn_norm_w, L->attn_norm_b, N);
    else lmf_block_norm_par(c, r->ln1, r->ln1_mean, r->ln1_rstd, x, L->attn_norm_w, L->attn_norm_b, N);
    lmf_wtensor wq = lmf_wtensor_rows(&L->wq, w.h0 * hs, CA), wk = lmf_wtensor_rows(&L->wk, w.g0 * hs, KVA);
    lmf_wtensor wv = lmf_wtensor_rows(&L->wv, w.g0 * hs, KVA);
    lin qkv[3] = {{&wq, offset(L->bq, w.h0 * hs), r->qkv, S}, {&wk, offset(L->bk, w.g0 * hs), r->qkv + CA, S},
                  {&wv, offset(L->bv, w.g0 * hs), r->qkv + CA + KVA, S}};
    linear_in(ctx, layer, LMF_OBS_ATTN_IN, qkv, 3, r->ln1, r->ln1_16, C, N);
    adapt(ctx, r, layer, 0, 3, r->ln1, C, r->qkv, S, N);
    if (c->qk_norm == LMF_QK_NORM_FULL && ctx->tp)
        full_qk_norm_tp_forward(ctx, r->qkv, S, N, CA, KVA, w.h0 * hs, w.g0 * hs, L->q_norm_w, L->k_norm_w, r->qk,
                                r->qk_rstd);
    else if (c->qk_norm)
        qk_norm_forward(c, r->qkv, S, N, qk_groups_of(c, w.nh, w.nkv, hs), L->q_norm_w, L->k_norm_w,
                        ctx->seqs ? NULL : r->qk, ctx->seqs ? NULL : r->qk_rstd);
    if (ctx->seqs) {
        for (int j = 0, row = 0; j < ctx->n_seqs; row += ctx->seqs[j++].n) {
            const lmf_block_seq *sq = &ctx->seqs[j];
            float *q = r->qkv + (size_t)row * S;
            lmf_block_rope(c, layer, layer_rope_tab(c, ctx->rope, ctx->rope_swa, layer), q, S, sq->n, sq->n, sq->p0,
                           NULL, w.nh + w.nkv, 1.0f);
            cache_write(sq, c, layer, q);
            attention_cached(ctx, sq, layer, r->atty + (size_t)row * CA, q);
        }
    } else {
        lmf_block_rope(c, layer, layer_rope_tab(c, ctx->rope, ctx->rope_swa, layer), r->qkv, S, N, ctx->T, 0,
                       ctx->pos, w.nh + w.nkv, 1.0f);
        scale_q(c, r->qkv, S, N, CA);
        if (r->qkv_16) {
            lmf_sgemm_bf16_round(r->qkv_16, r->qkv, (long)N * S);
            lmf_attention_forward_b16(r->atty, r->att, r->qkv_16, ctx->pos, lmf_block_layer_window(c, layer),
                                      c->attn_softcap, ctx->B, ctx->T, w.nh, w.nkv, hs);
        } else {
            lmf_attention_forward(r->atty, r->att, r->qkv, ctx->pos, lmf_block_layer_window(c, layer), c->attn_softcap,
                                  ctx->B, ctx->T, w.nh, w.nkv, hs, ctx->bf16);
        }
    }
    /* o: row-parallel under tensor parallelism (this rank's columns, the partial sums added up, then the bias);
     * training keeps it whole before a sandwich norm */
    float *o = r->post1 ? r->post1 : r->res2 == x ? r->proj : r->res2;
    lmf_wtensor wo = lmf_wtensor_cols(&L->wo, lmf_block_share_col(&L->wo, CA, w.h0 * hs), CA);
    lin proj = {&wo, ctx->tp ? NULL : L->bo, o, C};
    if (r->atty_16) lmf_sgemm_bf16_round(r->atty_16, r->atty, (long)N * CA);
    linear_in(ctx, layer, LMF_OBS_ATTN_OUT, &proj, 1, r->atty, r->atty_16, CA, N);
    if (ctx->tp) lmf_block_ctx_tp_sum(ctx, o, (size_t)NC), add_bias_opt(o, C, L->bo, N, C);
    adapt(ctx, r, layer, 3, 4, r->atty, CA, o, C, N);
    o = post_norm(c, o, r->post1 ? r->res2 : o, r->post1 ? r->post1_rstd : r->ln2_rstd, L->post_attn_norm_w, N);
    lmf_residual_forward(r->res2, o, x, NC);

    if (r->ln2_16) norm_par_b16(c, r->ln2_16, r->ln2_mean, r->ln2_rstd, r->res2, L->ffn_norm_w, L->ffn_norm_b, N);
    else lmf_block_norm_par(c, r->ln2, r->ln2_mean, r->ln2_rstd, r->res2, L->ffn_norm_w, L->ffn_norm_b, N);
    if (c->n_expert) {
        o = r->res3 == r->res2 ? r->proj : r->res3;
        lmf_moe_forward(ctx, L, layer, r->ln2, o, r->moe, r->moe_scratch, r->lora_t, N);
        lmf_residual_forward(r->res3, o, r->res2, NC);
        return;
    }
    /* gate | up column-parallel, down row-parallel, as q | k | v and o */
    lmf_wtensor wg = lmf_wtensor_rows(&L->w_gate, w.f0, F), wu = lmf_wtensor_rows(&L->w_up, w.f0, F);
    lmf_wtensor wd = lmf_wtensor_cols(&L->w_down, lmf_block_share_col(&L->w_down, F, w.f0), F);
    lin ffn[2] = {{&wg, NULL, r->fch, FF}, {&wu, offset(L->b_up, w.f0), r->fch + (swiglu ? F : 0), FF}};
    linear_in(ctx, layer, LMF_OBS_FFN_IN, ffn + !swiglu, 1 + swiglu, r->ln2, r->ln2_16, C, N);
    adapt(ctx, r, layer, swiglu ? 4 : 5, 6, r->ln2, C, r->fch, FF, N);
    if (r->fcact_16) ffn_act_par_b16(c, r->fcact_16, r->fch, N, F);
    else ffn_act_par(c, r->fcact, r->fch, N, F);
    o = r->post2 ? r->post2 : r->res3 == r->res2 ? r->proj : r->res3;
    lin down = {&wd, ctx->tp ? NULL : L->b_down, o, C};
    linear_in(ctx, layer, LMF_OBS_FFN_DOWN, &down, 1, r->fcact, r->fcact_16, F, N);
    if (ctx->tp) lmf_block_ctx_tp_sum(ctx, o, (size_t)NC), add_bias_opt(o, C, L->b_down, N, C);
    adapt(ctx, r, layer, 6, 7, r->fcact, F, o, C, N);
    o = post_norm(c, o, r->post2 ? r->res3 : o, r->post2 ? r->post2_rstd : r->ln2_rstd, L->post_ffn_norm_w, N);
    lmf_residual_forward(r->res3, o, r->res2, NC);
}

/* ---- training backward ---------------------------------------------------------------------------------------- */

#define F32(t) ((const float *)(t).data)
#define GRAD(t) ((float *)(t).data) /* gradient views point into the writable gradient buffer */
#define GRAD_V(v) ((float *)(v))      /* a vector's */

static void norm_backward(const lmf_model_config *c, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean, const float *rstd, int N) {
    if (c->norm == LMF_NORM_LAYER) lmf_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, c->n_embd);
    else lmf_rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, c->n_embd);
}

/* Gemma's sandwich backward: d(o) = the norm's input gradient of d(out) (o and rstd kept by the forward) into do_
 * (N,C), its weight's gradient added to dw; without cfg.post_norms d(out) itself. */
static const float *post_norm_backward(const lmf_model_config *c, float *do_, float *dw, const float *dout,
                                       const float *o, const float *w, const float *rstd, int N) {
    if (!c->post_norms) return dout;
    memset(do_, 0, (size_t)N * c->n_embd * sizeof(float));
    lmf_rmsnorm_backward(do_, dw, dout, o, w, rstd, N, c->n_embd);
    return do_;
}

/* The FFN activation's backward: d(fch) (written whole) from d(fcact). */
static void act_backward(const lmf_model_config *c, float *dfch, const float *dfcact, const float *fch, int N, int F) {
    if (c->act == LMF_ACT_SWIGLU) lmf_swiglu_backward(dfch, dfcact, fch, N, F);
    else if (c->act == LMF_ACT_GEGLU) lmf_geglu_backward(dfch, dfcact, fch, N, F);
    else if (c->act == LMF_ACT_GELU_TANH) lmf_gelu_backward(dfch, fch, dfcact, (long)N * F);
    else lmf_relu_backward(dfch, fch, dfcact, (long)N * F);
}

/* The gradient of q|k|v (nh query and nkv key heads) from attention's output's, on the copy the forward kept: q|k|v
 * in bf16 (bf16 training; bf16 LoRA, lmf_model_set_bf16) or fp32 */
static void attention_backward(const lmf_block_ctx *ctx, int layer, const lmf_block_rows *r, float *dqkv,
                               const float *dout, int nh, int nkv) {
    int W = lmf_block_layer_window(ctx->cfg, layer), hs = lmf_head_size(ctx->cfg);
    float cap = ctx->cfg->attn_softcap;
    if (r->qkv_16)
        lmf_attention_backward_b16(dqkv, r->att, dout, r->qkv_16, ctx->pos, W, cap, ctx->B, ctx->T, nh, nkv, hs);
    else lmf_attention_backward(dqkv, r->att, dout, r->qkv, ctx->pos, W, cap, ctx->B, ctx->T, nh, nkv, hs, ctx->bf16);
}

/* lmf_block_backward with the base frozen: input gradients through weights of any type, adapters' gradients. */
static void frozen_backward(const lmf_block_ctx *ctx, const lmf_layer_weights *L, int layer, const float *x,
                            const lmf_block_rows *r, lmf_block_grads *g) {
    const lmf_model_config *c = ctx->cfg;
    int C = c->n_embd, NH = c->n_head, hs = lmf_head_size(c), QD = NH * hs, KV = c->n_kv_head * hs;
    int F = c->ffn_dim, S = qkv_width(c), FF = ffn_width(c), N = ctx->B * ctx->T, swiglu = lmf_act_gated(c->act);
    size_t NC = (size_t)N * C;
    lmf_lora *lo = ctx->lora;
    float *dq = ctx->dq, *dn = g->dnorm;
    size_t dqf = ctx->dq_floats;

    /* MLP: res3 = res2 + down(act(fc(norm2(res2)))); dres holds d(res3) and becomes d(res2). A mixture of experts'
     * adapters (router, experts: PEFT's target_parameters) are moe.c's */
    if (c->n_expert) {
        memset(g->dbuf, 0, NC * sizeof(float));
        lmf_moe_backward(ctx, L, NULL, layer, NULL, r->ln2, g->dres, g->dbuf, r->moe, r->moe_scratch, r->lora_t,
                         N);
    } else {
        const float *dout = post_norm_backward(c, g->dbuf, dn, g->dres, r->post2, L->post_ffn_norm_w, r->post2_rstd, N);
        lin down = {&L->w_down, NULL, (float *)dout, C};
        lmf_block_linear_dinput(&down, 1, g->dfcact, 0.0f, F, N, dq, dqf, ctx->bf16);
        if (lo) lmf_lora_backward(lo, layer, 6, 7, r->fcact, F, dout, C, r->lora_t, g->dfcact, N, ctx->lora_x);
        act_backward(c, g->dfch, g->dfcact, r->fch, N, F);
        lin ffn[2] = {{&L->w_gate, NULL, g->dfch, FF}, {&L->w_up, NULL, g->dfch + (swiglu ? F : 0), FF}};
        lmf_block_linear_dinput(ffn + !swiglu, 1 + swiglu, g->dbuf, 0.0f, C, N, dq, dqf, ctx->bf16);
        if (lo)
            lmf_lora_backward(lo, layer, swiglu ? 4 : 5, 6, r->ln2, C, g->dfch, FF, r->lora_t, g->dbuf, N, ctx->lora_x);
    }
    norm_backward(c, g->dres, dn, dn + C, g->dbuf, r->res2, L->ffn_norm_w, r->ln2_mean, r->ln2_rstd, N);

    /* attention: res2 = x + o(attn(qkv(norm1(x)))); dres becomes d(x); dbuf holds d(atty) (QD wide) first */
    const float *dres2 = post_norm_backward(c, g->dfch, dn, g->dres, r->post1, L->post_attn_norm_w, r->post1_rstd, N);
    lin proj = {&L->wo, NULL, (float *)dres2, C};
    lmf_block_linear_dinput(&proj, 1, g->dbuf, 0.0f, QD, N, dq, dqf, ctx->bf16);
    if (lo) lmf_lora_backward(lo, layer, 3, 4, r->atty, QD, dres2, C, r->lora_t, g->dbuf, N, ctx->lora_x);
    attention_backward(ctx, layer, r, g->dqkv, g->dbuf, NH, c->n_kv_head); /* bf16 LoRA: q|k|v kept in bf16 */
    scale_q(c, g->dqkv, S, N, QD);
    lmf_block_rope(c, layer, layer_rope_tab(c, ctx->rope, ctx->rope_swa, layer), g->dqkv, S, N, ctx->T, 0, ctx->pos,
                   NH + c->n_kv_head, -1.0f);
    if (c->qk_norm) qk_norm_grads(ctx, g->dqkv, S, N, qk_groups_of(c, NH, c->n_kv_head, hs), L, NULL, NULL, dn, r);
    lin qkv[3] = {{&L->wq, NULL, g->dqkv, S}, {&L->wk, NULL, g->dqkv + QD, S}, {&L->wv, NULL, g->dqkv + QD + KV, S}};
    lmf_block_linear_dinput(qkv, 3, g->dbuf, 0.0f, C, N, dq, dqf, ctx->bf16);
    if (lo) lmf_lora_backward(lo, layer, 0, 3, r->ln1, C, g->dqkv, S, r->lora_t, g->dbuf, N, ctx->lora_x);
    norm_backward(c, g->dres, dn, dn + C, g->dbuf, x, L->attn_norm_w, r->ln1_mean, r->ln1_rstd, N);
}

/* lmf_matmul_backward_ld, or its twin on the input kept in bf16 (in16, same bits) where the forward kept one */
static void linear_backward(const lmf_block_ctx *ctx, float *din, float din_beta, float *dW, float dw_beta,
                            float *db, const float *dout, int ldo, const float *in, const uint16_t *in16, int ldi,
                            const float *W, int ldw, int N, int IC, int OC) {
    if (in16) lmf_matmul_backward_b16(din, din_beta, dW, dw_beta, db, dout, ldo, in16, ldi, W, ldw, N, IC, OC);
    else lmf_matmul_backward_ld(ctx->bf16, din, din_beta, dW, dw_beta, db, dout, ldo, in, ldi, W, ldw, N, IC, OC);
}

/* The weight and input gradients of column-parallel layers that read the same input (q, k, v or gate, up; in16: kept
 * in bf16) on this rank's rows: their outputs' gradients sit side by side in dout (ld floats a row), each n[j]
 * columns; weight j's rows start at row r0[j] of W[j] (and of its gradient and bias gradient). */
static void column_backward(const lmf_block_ctx *ctx, float *din, const float *in, const uint16_t *in16, int K,
                            const float *dout, int ld, int m, const lmf_wtensor *const *W, const lmf_wtensor *const *G,
                            float *const *gb, const int *r0, const int *n, int N) {
    for (int j = 0, col = 0; j < m; col += n[j++])
        linear_backward(ctx, din, j ? 1.0f : 0.0f, GRAD(*G[j]) + (size_t)r0[j] * K, 1.0f, gb[j] ? gb[j] + r0[j] : NULL,
                        dout + col, ld, in, in16, K, F32(*W[j]) + (size_t)r0[j] * K, K, N, K, n[j]);
}

void lmf_block_backward(const lmf_block_ctx *ctx, const lmf_layer_weights *L, const lmf_layer_weights *G, int layer,
                        const float *x, const lmf_block_rows *r, lmf_block_grads *g) {
    const lmf_model_config *c = ctx->cfg;
    widths w = widths_of(ctx);
    int C = w.C, hs = w.hs, CA = w.CA, KVA = w.KVA, S = w.S, F = w.F, FF = w.FF, N = ctx->B * ctx->T;
    int swiglu = lmf_act_gated(c->act);
    size_t NC = (size_t)N * C;
    if (!G) {
        frozen_backward(ctx, L, layer, x, r, g);
        return;
    }
    float dw_beta = ctx->fresh_grads ? 0.0f : 1.0f;
    LMF_CHECK(!ctx->fresh_grads || !ctx->tp); /* a rank's share leaves the rest of each tensor to the zeroing */
    /* training keeps q|k|v and gate|up as single matrices cut into views (model.c): one product each, unless tensor
     * parallelism takes a share of each part */
    const lmf_wtensor *fc = swiglu ? &L->w_gate : &L->w_up, *gfc = swiglu ? &G->w_gate : &G->w_up;
    LMF_CHECK(L->wq.type == LMF_GGML_F32 && F32(L->wk) == F32(L->wq) + (size_t)lmf_q_width(c) * C);

    /* MLP: res3 = res2 + down(act(fc(norm2(res2)))); dres holds d(res3) and becomes d(res2) */
    if (c->n_expert) {
        memset(g->dbuf, 0, NC * sizeof(float));
        lmf_moe_backward(ctx, L, G, layer, ctx->moe_grad, r->ln2, g->dres, g->dbuf, r->moe, r->moe_scratch, NULL, N);
    } else {
        int c0 = lmf_block_share_col(&L->w_down, F, w.f0), ld = (int)(L->w_down.row_bytes / sizeof(float));
        const float *dout = post_norm_backward(c, g->dbuf, GRAD_V(G->post_ffn_norm_w), g->dres, r->post2,
                                               L->post_ffn_norm_w, r->post2_rstd, N);
        linear_backward(ctx, g->dfcact, 0.0f, GRAD(G->w_down) + c0, dw_beta, (float *)G->b_down, dout, C, r->fcact,
                        r->fcact_16, F, F32(L->w_down) + c0, ld, N, F, C);
        act_backward(c, g->dfch, g->dfcact, r->fch, N, F);
        if (!ctx->tp) {
            linear_backward(ctx, g->dbuf, 0.0f, GRAD(*gfc), dw_beta, (float *)G->b_up, g->dfch, FF, r->ln2, r->ln2_16,
                            C, F32(*fc), C, N, C, FF);
        } else {
            const lmf_wtensor *Ws[2] = {&L->w_gate, &L->w_up}, *Gs[2] = {&G->w_gate, &G->w_up};
            float *gb[2] = {NULL, (float *)G->b_up};
            int r0[2] = {w.f0, w.f0}, n[2] = {F, F};
            column_backward(ctx, g->dbuf, r->ln2, r->ln2_16, C, g->dfch, FF, 1 + swiglu, Ws + !swiglu, Gs + !swiglu,
                            gb + !swiglu, r0, n, N);
            lmf_block_ctx_tp_sum(ctx, g->dbuf, NC);
        }
    }
    norm_backward(c, g->dres, (float *)G->ffn_norm_w, (float *)G->ffn_norm_b, g->dbuf, r->res2, L->ffn_norm_w,
                  r->ln2_mean, r->ln2_rstd, N);

    /* attention: res2 = x + o(attn(qkv(norm1(x)))); dres becomes d(x) */
    int o0 = lmf_block_share_col(&L->wo, CA, w.h0 * hs);
    const float *dres2 = post_norm_backward(c, g->dfch, GRAD_V(G->post_attn_norm_w), g->dres, r->post1,
                                            L->post_attn_norm_w, r->post1_rstd, N);
    linear_backward(ctx, g->dbuf, 0.0f, GRAD(G->wo) + o0, dw_beta, (float *)G->bo, dres2, C, r->atty, r->atty_16,
                    CA, F32(L->wo) + o0, (int)(L->wo.row_bytes / sizeof(float)), N, CA, C);
    attention_backward(ctx, layer, r, g->dqkv, g->dbuf, w.nh, w.nkv);
    scale_q(c, g->dqkv, S, N, CA);
    lmf_block_rope(c, layer, layer_rope_tab(c, ctx->rope, ctx->rope_swa, layer), g->dqkv, S, N, ctx->T, 0, ctx->pos,
                   w.nh + w.nkv, -1.0f);
    if (c->qk_norm == LMF_QK_NORM_FULL && ctx->tp) /* dbuf is free until the q/k/v input gradient below */
        full_qk_norm_tp_backward(ctx, g->dqkv, S, N, CA, KVA, w.h0 * hs, w.g0 * hs, L, (float *)G->q_norm_w,
                                 (float *)G->k_norm_w, r->qk, r->qk_rstd, g->dbuf, g->dnorm);
    else if (c->qk_norm)
        qk_norm_grads(ctx, g->dqkv, S, N, qk_groups_of(c, w.nh, w.nkv, hs), L, (float *)G->q_norm_w,
                      (float *)G->k_norm_w, g->dnorm, r);
    if (!ctx->tp) {
        linear_backward(ctx, g->dbuf, 0.0f, GRAD(G->wq), dw_beta, (float *)G->bq, g->dqkv, S, r->ln1, r->ln1_16, C,
                        F32(L->wq), C, N, C, S);
    } else {
        const lmf_wtensor *Ws[3] = {&L->wq, &L->wk, &L->wv}, *Gs[3] = {&G->wq, &G->wk, &G->wv};
        float *gb[3] = {(float *)G->bq, (float *)G->bk, (float *)G->bv};
        int r0[3] = {w.h0 * hs, w.g0 * hs, w.g0 * hs}, n[3] = {CA, KVA, KVA};
        column_backward(ctx, g->dbuf, r->ln1, r->ln1_16, C, g->dqkv, S, 3, Ws, Gs, gb, r0, n, N);
        lmf_block_ctx_tp_sum(ctx, g->dbuf, NC);
    }
    norm_backward(c, g->dres, (float *)G->attn_norm_w, (float *)G->attn_norm_b, g->dbuf, x, L->attn_norm_w,
                  r->ln1_mean, r->ln1_rstd, N);
}

/* ---- decode ----------------------------------------------------------------------------------------------------- */

int lmf_block_xn_width(const lmf_model_config *c) {
    return c->n_embd > lmf_q_width(c) ? c->n_embd : lmf_q_width(c);
}

/* Decode attention split by positions (flash-decoding): one of nth stretches [a, a + n) of each query's cached
 * positions, for every head (query i's stretch j on thread (j - i) mod nth: the first stretch is rounded up to whole
 * lines, so a fixed assignment left thread 0 the longer half of every row). The query heads that share a KV head go through one product together, so every cached
 * K and V element is read once per token (GQA), not once per query head. Scores come from the transposed K cache
 * by rows_by_matrix (accumulated down the head's dimensions: no horizontal sum per position), the output from V^T
 * by rows_by_pieces_t (summed down the positions in lanes across the stretch's blocks, one horizontal sum per
 * dimension: per-block matrix-vector products spent more on their sums than on the products with 16-position
 * blocks); the stretch's output, softmax-normalized over the stretch, and its
 * log-sum-exp per head go to part, and attend_merge weighs the threads' stretches together. Splitting by heads
 * (each head's K rows of 64 floats through a dot product) left SmolLM2's 3 KV heads unevenly on 2 threads, read
 * each 3 times and cost a horizontal sum per position and head. qs: 4 hs floats. */
#define PV_PIECES 64 /* cache blocks per rows_by_pieces_t call */

/* One head's piece of a cache block (hs x bs elements, contiguous) asked for ahead of its use: the pieces of a
 * sequence lie in blocks scattered over the pool, 2-4 KB each, too short for the hardware prefetcher to ramp up on.
 * The next K piece goes to L1 while this one is scored, this piece's V to L2 for the P.V pass after the softmax. */
#define PREFETCH_L1 3
#define PREFETCH_L2 2
static inline void prefetch_piece(const void *at, size_t bytes, int locality) {
    for (size_t o = 0; o < bytes; o += 64)
        if (locality == PREFETCH_L1) __builtin_prefetch((const char *)at + o, 0, PREFETCH_L1);
        else __builtin_prefetch((const char *)at + o, 0, PREFETCH_L2);
}

static void attend_share(const lmf_block_decode_ctx *d, int layer, int N, int tid, int nth, float *S, float *qs) {
    const lmf_model_config *c = d->cfg;
    int NH = c->n_head, hs = lmf_head_size(c), C = NH * hs, group = NH / c->n_kv_head;
    int W = qkv_width(c); /* C: q's width, each part row's outputs */
    const lmf_vec_ops *V = lmf_vec();
    float scale = lmf_block_attn_scale(c);
    int win = lmf_block_layer_window(c, layer);
    for (int i = 0; i < N; i++) {
        const lmf_kv_view *kv = &d->seqs[d->row_seq[i]].kv;
        kv_layer kl = kv_layer_of(kv, c, layer);
        size_t piece = (size_t)hs * kv->bs * (kv->f16 ? 2 : 4);
        /* keys [k0, nk): all earlier positions, or the last sliding_window; the stretches are cut from k0's 64-byte
         * line on (whole lines of V rows), the first one starting at k0 itself */
        int nk = d->row_pos[i] + 1, k0 = win && nk > win ? nk - win : 0;
        int base = k0 & ~15, chunk = ((nk - base + nth - 1) / nth + 15) & ~15;
        int j = (tid + i) % nth; /* the rows' stretches rotate over the threads: the first is the longest */
        int a = base + j * chunk, n = nk - a < chunk ? nk - a : chunk; /* stretch 0 is never empty */
        if (a < k0) n -= k0 - a, a = k0;
        float *po = d->part + ((size_t)j * QMV_MAX + i) * (C + NH), *pl = po + C;
        if (n <= 0) {
            for (int h = 0; h < NH; h++) pl[h] = -INFINITY;
            continue;
        }
        for (int g = 0; g < c->n_kv_head; g++)
            for (int h0 = 0; h0 < group; h0 += 4) { /* rows_by_matrix takes up to four query heads */
                int nq = group - h0 < 4 ? group - h0 : 4, h = g * group + h0, dim0 = g * hs;
                const float *q = d->qkv + (size_t)i * W + (size_t)h * hs;
                for (int j = 0; j < nq * hs; j++) qs[j] = q[j] * scale;
                for (int p = a; p < a + n;) { /* the stretch's pieces, one cache block each */
                    int m = kv->bs - p % kv->bs < a + n - p ? kv->bs - p % kv->bs : a + n - p;
                    if (p + m < a + n) prefetch_piece(kv_slot(&kl, kl.k, dim0, p + m), piece, PREFETCH_L1);
                    prefetch_piece(kv_slot(&kl, kl.v, dim0, p), piece, PREFETCH_L2);
                    V->rows_by_matrix(S + (p - a), n, qs, hs, nq, kv_slot(&kl, kl.k, dim0, p), kv->f16, kv->bs,
                                      hs, m);
                    p += m;
                }
                for (int j = 0; j < nq; j++) {
                    if (c->attn_softcap) V->softcap(S + (size_t)j * n, n, 1.0f, c->attn_softcap); /* q was scaled */
                    pl[h + j] = V->logsumexp(S + (size_t)j * n, n);
                    V->exp_shift_scale(S + (size_t)j * n, n, pl[h + j], 1.0f);
                }
                /* P.V over the stretch's pieces, PV_PIECES blocks per call (each call sums in lanes, reduces once) */
                memset(po + (size_t)h * hs, 0, sizeof(float) * (size_t)(nq * hs));
                for (int p = a; p < a + n;) {
                    const void *vp[PV_PIECES];
                    int len[PV_PIECES], np = 0, p0 = p;
                    for (; p < a + n && np < PV_PIECES; np++) {
                        int m = kv->bs - p % kv->bs < a + n - p ? kv->bs - p % kv->bs : a + n - p;
                        vp[np] = kv_slot(&kl, kl.v, dim0, p), len[np] = m;
                        p += m;
                    }
                    V->rows_by_pieces_t(po + (size_t)h * hs, hs, S + (p0 - a), n, nq, vp, kv->f16, len, np, kv->bs,
                                        hs);
                }
            }
    }
}

/* Every thread's attend_share stretches of N queries merged into out (N, NH hs): per head, weights exp(lse_t - max). */
static void attend_merge(const lmf_block_decode_ctx *d, int N, int nth, float *out) {
    int NH = d->cfg->n_head, hs = lmf_head_size(d->cfg), C = NH * hs;
    for (int i = 0; i < N; i++)
        for (int h = 0; h < NH; h++) {
            const float *part = d->part + (size_t)i * (C + NH);
            size_t stride = (size_t)QMV_MAX * (C + NH); /* thread to thread */
            float m = -INFINITY, sum = 0, *o = out + (size_t)i * C + (size_t)h * hs;
            for (int t = 0; t < nth; t++)
                if (part[t * stride + C + h] > m) m = part[t * stride + C + h];
            memset(o, 0, (size_t)hs * sizeof(float));
            for (int t = 0; t < nth; t++) {
                float wt = expf(part[t * stride + C + h] - m);
                const float *po = part + t * stride + (size_t)h * hs;
                if (wt > 0)
                    for (int e = 0; e < hs; e++) o[e] += wt * po[e];
                sum += wt;
            }
            for (int e = 0; e < hs; e++) o[e] /= sum;
        }
}

/* A decode product that feeds the residual stream (attention's o, the FFN's down): this thread's rows of in W^T +
 * bias into d->proj, added to d->x by the same thread. */
static void residual_rows(const lmf_block_decode_ctx *d, int layer, int mat, const lmf_wtensor *W, const float *bias,
                          const float *in, int ldi, int N, char *qbuf, int tid, int nth) {
    int add = !d->cfg->post_norms; /* Gemma's outputs are normalised first, whole rows (post_norm_add) */
    int C = d->cfg->n_embd, lo, hi;
    lin o = {W, bias, d->proj, C};
    const char *qin[3];
    size_t qb[3];
    convert_inputs(in, ldi, N, &o, 1, qbuf, d->qin_stride, qin, qb);
    row_share(C, 16, tid, nth, &lo, &hi);
    linear_rows(&o, N, qin[0], qb[0], lo, hi);
    if (d->lora) lmf_lora_decode_rows(d->lora, layer, mat, in, ldi, N, d->proj, C, lo, hi);
    for (int i = 0; add && i < N; i++)
        for (int r = lo; r < hi; r++) d->x[(size_t)i * C + r] += d->proj[(size_t)i * C + r];
}

/* Gemma's sandwich in decode, after the barrier that completes d->proj: this thread's rows of it normalised (w) and
 * added to the residual stream; tmp: C floats of the thread's own. */
static void post_norm_add(const lmf_block_decode_ctx *d, const float *w, int N, float *tmp, int tid, int nth) {
    const lmf_vec_ops *V = lmf_vec();
    int C = d->cfg->n_embd;
    float rstd;
    for (int i = tid; i < N; i += nth) {
        V->rmsnorm(tmp, &rstd, d->proj + (size_t)i * C, w, C, d->cfg->norm_eps);
        for (int j = 0; j < C; j++) d->x[(size_t)i * C + j] += tmp[j];
    }
}

/* Q and K rows go to threads in whole heads for ROPE_HALF (its pairs span half a head) or a per-head q/k norm, and
 * whole R16 groups. */
static int qk_unit(const lmf_model_config *c) {
    int hs = lmf_head_size(c), unit = 16;
    if (c->pos == LMF_POS_ROPE_HALF || c->qk_norm == LMF_QK_NORM_HEAD)
        while (unit % hs || unit % 16) unit += 16;
    return unit;
}

/* OLMoE's full-width q/k norm in decode: every thread made a share of each q and k row, so after a barrier each
 * thread takes the rows' statistics (from the whole rows, into its own stack), after a second one (nobody writes
 * before everybody has read) normalises its own share in place, then rotates it and writes its K rows to the cache,
 * as the per-head path does right after the product. Two more barriers per layer, for this family only. */
static void full_qk_norm(const lmf_block_decode_ctx *d, const lmf_layer_weights *L, int layer, int N, int tid,
                         int nth, int unit) {
    const lmf_model_config *c = d->cfg;
    int hs = lmf_head_size(c), C = c->n_head * hs, KV = c->n_kv_head * hs, S = qkv_width(c);
    int interleaved = c->pos == LMF_POS_ROPE_INTERLEAVED, rope = lmf_block_layer_rope(c, layer); /* C: q's width */
    const lmf_vec_ops *V = lmf_vec();
    float rs[2][QMV_MAX];
    lmf_barrier_wait(d->bar, nth);
    for (int i = 0; i < N; i++) {
        const float *row = d->qkv + (size_t)i * S;
        rs[0][i] = 1.0f / sqrtf(V->dot(row, row, C) / C + c->norm_eps); /* as the rmsnorm kernel forms it */
        rs[1][i] = 1.0f / sqrtf(V->dot(row + C, row + C, KV) / KV + c->norm_eps);
    }
    lmf_barrier_wait(d->bar, nth);
    for (int j = 0; j < 2; j++) {
        int rlo, rhi;
        const float *w = j ? L->k_norm_w : L->q_norm_w;
        row_share(j ? KV : C, unit, tid, nth, &rlo, &rhi);
        for (int i = 0; i < N && rhi > rlo; i++) {
            float *row = d->qkv + (size_t)i * S + (j ? C : 0);
            for (int e = rlo; e < rhi; e++) row[e] = row[e] * rs[j][i] * w[e];
            const float *tab = layer_rope_tab(c, d->rope, d->rope_swa, layer);
            if (rope) lmf_rope_rotate(row, rlo, rhi, tab + (size_t)d->row_pos[i] * hs, hs, interleaved, 1.0f);
            if (!j) continue;
            const lmf_kv_view *kv = &d->seqs[d->row_seq[i]].kv;
            kv_layer kl = kv_layer_of(kv, c, layer);
            size_t at = kv_index(&kl, 0, d->row_pos[i]);
            for (int e = rlo; e < rhi; e++) kv_put(kv, kl.k, at + (size_t)e * kv->bs, row[e]);
        }
    }
}

/* Five barriers per layer, one after each product whose output the next one reads in full (lmf_barrier sleeps when
 * a partner is descheduled). The small serial steps are either done by every thread for itself (norm + conversion
 * of an input row, into its own buffers: cheaper than a barrier) or by the thread that owns the rows (biases, RoPE,
 * the KV cache writes, residual adds and the FFN activation follow the row split of the matrix that made them). */
void lmf_block_decode_rows(lmf_block_decode_ctx *d) {
    for (int j = 0, row = 0; j < d->n_seqs; j++)
        for (int i = 0; i < d->seqs[j].n; i++, row++) d->row_seq[row] = j, d->row_pos[row] = d->seqs[j].p0 + i;
}

void lmf_block_decode(const lmf_block_decode_ctx *d, const lmf_layer_weights *L, const lmf_layer_weights *next,
                      const lmf_wtensor *head, int layer, int N, int tid, int nth) {
    const lmf_model_config *c = d->cfg;
    int C = c->n_embd, hs = lmf_head_size(c), QD = lmf_q_width(c), KV = lmf_kv_width(c), F = c->ffn_dim;
    int S = qkv_width(c), FF = ffn_width(c), swiglu = lmf_act_gated(c->act), rope = lmf_block_layer_rope(c, layer);
    int interleaved = c->pos == LMF_POS_ROPE_INTERLEAVED, unit = qk_unit(c), rlo, rhi;
    int full = c->qk_norm == LMF_QK_NORM_FULL;
    const float *tab = layer_rope_tab(c, d->rope, d->rope_swa, layer);
    float *xn = d->xnt + (size_t)tid * QMV_MAX * lmf_block_xn_width(c), mean[QMV_MAX], rstd[QMV_MAX];
    char *qbuf = (char *)d->qin + (size_t)tid * 3 * QMV_MAX * d->qin_stride;
    float *Sc = d->scores + (size_t)tid * d->scores_stride;
    const char *qin[3];
    size_t qb[3];

    /* q, k, v: RoPE and the cache writes on the rows this thread made */
    lin qkv[3] = {{&L->wq, L->bq, d->qkv, S}, {&L->wk, L->bk, d->qkv + QD, S}, {&L->wv, L->bv, d->qkv + QD + KV, S}};
    lmf_block_norm(c, xn, mean, rstd, d->x, L->attn_norm_w, L->attn_norm_b, N);
    convert_inputs(xn, C, N, qkv, 3, qbuf, d->qin_stride, qin, qb);
    for (int j = 0; j < 3; j++) {
        row_share(qkv[j].W->rows, j < 2 ? unit : 16, tid, nth, &rlo, &rhi);
        linear_rows(&qkv[j], N, qin[j], qb[j], rlo, rhi);
        if (d->lora) lmf_lora_decode_rows(d->lora, layer, j, xn, C, N, qkv[j].out, S, rlo, rhi);
        for (int i = 0; i < N && rhi > rlo; i++) {
            float *row = qkv[j].out + (size_t)i * S;
            const lmf_kv_view *kv = &d->seqs[d->row_seq[i]].kv;
            if (j < 2 && full) continue; /* after the barrier below: the norm needs the whole row */
            if (j < 2 && c->qk_norm) { /* whole heads of this thread's rows (qk_unit), before RoPE */
                int nh = (rhi - rlo) / hs;
                qk_norm_forward(c, row + rlo, 0, 1, (qk_groups){j ? 0 : nh, hs, j ? nh : 0, hs}, L->q_norm_w,
                                L->k_norm_w, NULL, NULL);
            }
            if (j < 2 && rope)
                lmf_rope_rotate(row, rlo, rhi, tab + (size_t)d->row_pos[i] * hs, hs, interleaved, 1.0f);
            kv_layer kl = kv_layer_of(kv, c, layer);
            void *cache = j == 1 ? kl.k : j == 2 ? kl.v : NULL;
            size_t at = cache ? kv_index(&kl, 0, d->row_pos[i]) : 0;
            for (int e = rlo; cache && e < rhi; e++) kv_put(kv, cache, at + (size_t)e * kv->bs, row[e]);
        }
    }
    if (full) full_qk_norm(d, L, layer, N, tid, nth, unit);
    lmf_block_prefetch_share(&L->wo, 16, tid, nth);
    lmf_barrier_wait(d->bar, nth);
    attend_share(d, layer, N, tid, nth, Sc, xn);
    lmf_barrier_wait(d->bar, nth);
    attend_merge(d, N, nth, xn); /* every thread merges for itself: cheaper than another barrier */
    residual_rows(d, layer, 3, &L->wo, L->bo, xn, QD, N, qbuf, tid, nth);
    lmf_block_prefetch_share(&L->w_up, 16, tid, nth);
    lmf_block_prefetch_share(&L->w_gate, 16, tid, nth);
    lmf_barrier_wait(d->bar, nth);
    if (c->post_norms) {
        post_norm_add(d, L->post_attn_norm_w, N, xn, tid, nth);
        lmf_barrier_wait(d->bar, nth);
    }

    if (c->n_expert) { /* mixture of experts (moe.c): its own barriers, the residual added by row owners */
        lmf_block_norm(c, xn, mean, rstd, d->x, L->ffn_norm_w, L->ffn_norm_b, N);
        lmf_moe_decode(d, L, layer, xn, N, qbuf, tid, nth);
        if (next) {
            lmf_block_prefetch_share(&next->wq, unit, tid, nth);
            lmf_block_prefetch_share(&next->wk, unit, tid, nth);
        }
        lmf_barrier_wait(d->bar, nth);
        return;
    }
    /* up (and gate): the activation on the columns this thread made */
    lin ffn[2] = {{&L->w_up, L->b_up, d->fch + (swiglu ? F : 0), FF}, {&L->w_gate, NULL, d->fch, FF}};
    lmf_block_norm(c, xn, mean, rstd, d->x, L->ffn_norm_w, L->ffn_norm_b, N);
    convert_inputs(xn, C, N, ffn, 1 + swiglu, qbuf, d->qin_stride, qin, qb);
    row_share(F, 16, tid, nth, &rlo, &rhi);
    for (int j = 0; j < 1 + swiglu; j++) {
        linear_rows(&ffn[j], N, qin[j], qb[j], rlo, rhi);
        if (d->lora) lmf_lora_decode_rows(d->lora, layer, 5 - j, xn, C, N, ffn[j].out, FF, rlo, rhi);
    }
    if (rhi > rlo) lmf_block_ffn_act(c, d->fcact, d->fch, N, rlo, rhi);
    lmf_block_prefetch_share(&L->w_down, 16, tid, nth);
    lmf_barrier_wait(d->bar, nth);
    residual_rows(d, layer, 6, &L->w_down, L->b_down, d->fcact, F, N, qbuf, tid, nth);
    if (next) {
        lmf_block_prefetch_share(&next->wq, unit, tid, nth);
        lmf_block_prefetch_share(&next->wk, unit, tid, nth);
        lmf_block_prefetch_share(&next->wv, 16, tid, nth);
    } else if (head) {
        lmf_block_prefetch_share(head, 16, tid, nth);
    }
    lmf_barrier_wait(d->bar, nth);
    if (c->post_norms) {
        post_norm_add(d, L->post_ffn_norm_w, N, xn, tid, nth);
        lmf_barrier_wait(d->bar, nth);
    }
}

void lmf_block_decode_head(const lmf_block_decode_ctx *d, const lmf_weights *w, const int *rows, int nr,
                           float *logits, int tid, int nth) {
    const lmf_model_config *c = d->cfg;
    int C = c->n_embd, rlo, rhi;
    float *xn = d->xnt + (size_t)tid * QMV_MAX * lmf_block_xn_width(c), mean, rstd;
    char *qbuf = (char *)d->qin + (size_t)tid * 3 * QMV_MAX * d->qin_stride;
    const char *qin[3];
    size_t qb[3];
    lin head = {&w->lm_head, NULL, logits, c->vocab_size};
    for (int r = 0; r < nr; r++)
        lmf_block_norm(c, xn + (size_t)r * C, &mean, &rstd, d->x + (size_t)rows[r] * C, w->out_norm_w, w->out_norm_b,
                       1);
    convert_inputs(xn, C, nr, &head, 1, qbuf, d->qin_stride, qin, qb);
    row_share(c->vocab_size, 16, tid, nth, &rlo, &rhi);
    linear_rows(&head, nr, qin[0], qb[0], rlo, rhi);
}
