/* infer.c — the inference executor: a session is one sequence with its KV cache over an lmf_weights.
 *
 * Tokens go through the model in micro-batches of up to NB positions. Each linear layer picks one of two paths:
 *  - decode (a few rows): the input rows are converted once (int16 blocks for quantized weights, kernels/quant.h:
 *    int8 blocks as llama.cpp uses cost SmolLM2 2-5% of its logits; int16 keeps them within 3e-4)
 *    and every thread streams its contiguous share of the weight rows (whole 16-row groups) through
 *    lmf_qmatvec_r16 (Q8_0/Q4_0/Q4_1, repacked once by lmf_weights_prepare_decode) or lmf_qmatvec: each weight
 *    byte is read once per token and nothing is dequantized to memory;
 *  - prefill (many rows): weights are dequantized to fp32 in slabs of at most DQ_BYTES (R16 groups k-major, ggml
 *    rows row-major) and multiplied with the fp32 SGEMM (compute-bound; a weight element is reused by every row of
 *    the batch).
 * Attention keeps K and V in fp32 caches, both transposed: (L, KV, n_ctx). Prefill computes scores for blocks of
 * 64 queries per head with SGEMM against all cached keys up to the block's last position, decode splits the cached
 * positions between the threads (attend_share).
 *
 * Memory: the KV cache (2 L n_ctx KV floats) plus scratch of about NB (4C + 2F) floats, DQ_BYTES, and per thread
 * 64 x n_ctx attention scores; the weights stay where the loader put them (usually the file mapping), except
 * the quantized matrices' R16 copy, which replaces the mapping's pages (lmf_weights_prepare_decode). */
#include "core/alloc.h"
#include "core/barrier.h"
#include "core/status.h"
#include "io/gguf.h"
#include "kernels/gemm.h"
#include "kernels/quant.h"
#include "kernels/vec.h"
#include "model/dequant.h"
#include "model/weights.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define NB 512                  /* positions per micro-batch */
#define QMV_MAX 8               /* up to this many rows take the decode (matrix-vector) path */
#define QBLK 64                 /* queries per prefill attention block */
#define DQ_BYTES (8u << 20)     /* largest fp32 slab of dequantized weights */

struct lmf_session {
    const lmf_weights *w;
    int n_ctx, pos, nthreads;
    float *kcache, *vcache;     /* both transposed: (L, KV, n_ctx), a row per K / V dimension over the positions */
    float *rope;                /* (n_ctx, hs/2) cos then (n_ctx, hs/2) sin */
    float *x, *xn, *q, *k, *v, *att, *h1, *h2; /* (NB, C|KV|F) */
    void *qin;                  /* converted input rows, per thread: 3 x QMV_MAX x qin_stride */
    float *xnt;                 /* normalized input rows, per thread: QMV_MAX x C */
    lmf_barrier bar;            /* the decode step's barriers (core/barrier.h: why not omp barrier) */
    size_t qin_stride;
    float *dq;                  /* dequantized weight slab: dq_floats */
    size_t dq_floats;
    float *scores;              /* nthreads x QBLK x n_ctx */
    float *part;                /* decode attention's per-thread stretches: nthreads x QMV_MAX x (C + NH) */
    float *logits;              /* (logits_rows, V) */
    int logits_rows;
    void *mem;
    size_t mem_bytes;
};

/* ---- linear layers ------------------------------------------------------------------------------------------ */

/* One linear layer of a group that reads the same input: out[i, :] = in[i, :] W^T + bias, out rows ldo apart. */
typedef struct {
    const lmf_wtensor *W;
    const float *bias;
    float *out;
    int ldo;
} lin;

/* Converts N input rows (ldi apart) once per distinct weight type and width among o[0..n) into buf (blocks of
 * QMV_MAX rows, stride bytes per row); qin[j] / qb[j]: layer j's converted rows and their size. */
static void convert_inputs(const float *in, int ldi, int N, const lin *o, int n, char *buf, size_t stride,
                           const char *qin[3], size_t qb[3]) {
    for (int j = 0; j < n; j++) {
        int K = o[j].W->cols, same = -1;
        qb[j] = lmf_qinput_bytes(o[j].W->type, K);
        for (int p = 0; p < j; p++)
            if (o[p].W->type == o[j].W->type && o[p].W->cols == K) same = p;
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

/* Starts fetching the first PREFETCH_AHEAD bytes of this thread's share of W (from the layout linear_rows reads),
 * so that a thread that reaches a barrier first spends the wait filling the start of its next stream instead of
 * beginning it with demand misses. */
#define PREFETCH_AHEAD 4096
static void prefetch_share(const lmf_wtensor *W, int unit, int tid, int nth) {
    int lo, hi;
    if (!W->rows) return;
    row_share(W->rows, unit, tid, nth, &lo, &hi);
    const char *p = (const char *)(W->r16 ? W->r16 : W->data) + (size_t)lo * W->row_bytes;
    size_t n = (size_t)(hi - lo) * W->row_bytes;
    for (size_t b = 0; b < n && b < PREFETCH_AHEAD; b += 64) __builtin_prefetch(p + b, 0, 3);
}

/* Prefill: n <= 3 linear layers over the same N > QMV_MAX input rows (ldi apart), through dequantized slabs and the
 * SGEMM (which runs its own threads). */
static void linear_n(lmf_session *s, const float *in, int ldi, int N, const lin *o, int n) {
    for (int j = 0; j < n; j++) {
        const lmf_wtensor *W = o[j].W;
        int O = W->rows, K = W->cols;
        if (W->type == LMF_GGML_F32) {
            lmf_sgemm(0, 1, N, O, K, in, ldi, W->data, K, 0.0f, o[j].out, o[j].ldo);
            continue;
        }
        int slab = (int)(s->dq_floats / (size_t)K);
        if (W->r16) {
            /* R16 groups dequantize k-major (K x nr, whole groups), the SGEMM reads them untransposed. Each
             * thread fills whole rows of 32 k (block b of every group, left to right): going group by group
             * instead writes K strided streams at once, which measured 2.5x slower than ggml rows. */
            slab = slab / 16 * 16;
            size_t gb = W->row_bytes / (size_t)(K / 32) * 16; /* bytes of one block of a group */
            for (int r0 = 0; r0 < O; r0 += slab) {
                int nr = O - r0 < slab ? O - r0 : slab;
                const char *src = (const char *)W->r16 + (size_t)r0 * W->row_bytes;
#pragma omp parallel for schedule(static)
                for (int b = 0; b < K / 32; b++)
                    for (int g = 0; g < nr / 16; g++)
                        lmf_r16_dequant_t(W->type, 32, src + (size_t)g * 16 * W->row_bytes + (size_t)b * gb,
                                          s->dq + (size_t)b * 32 * nr + (size_t)g * 16, (size_t)nr);
                lmf_sgemm(0, 0, N, nr, K, in, ldi, s->dq, nr, 0.0f, o[j].out + r0, o[j].ldo);
            }
            continue;
        }
        for (int r0 = 0; r0 < O; r0 += slab) {
            int nr = O - r0 < slab ? O - r0 : slab;
            const char *src = (const char *)W->data + (size_t)r0 * W->row_bytes;
#pragma omp parallel for schedule(static)
            for (int r = 0; r < nr; r++)
                lmf_dequant_fast(W->type, src + (size_t)r * W->row_bytes, s->dq + (size_t)r * K, (size_t)K);
            lmf_sgemm(0, 1, N, nr, K, in, ldi, s->dq, K, 0.0f, o[j].out + r0, o[j].ldo);
        }
    }
    for (int j = 0; j < n; j++) {
        if (!o[j].bias) continue;
        for (int i = 0; i < N; i++) {
            float *y = o[j].out + (size_t)i * o[j].ldo;
            for (int c = 0; c < o[j].W->rows; c++) y[c] += o[j].bias[c];
        }
    }
}

static void linear(lmf_session *s, float *out, int ldo, const float *in, int ldi, int N, const lmf_wtensor *W,
                   const float *bias) {
    lin o = {W, bias, out, ldo};
    linear_n(s, in, ldi, N, &o, 1);
}

/* ---- per-position pieces ------------------------------------------------------------------------------------ */

static void norm_rows(const lmf_weights *w, float *out, const float *x, int N, const float *g, const float *b) {
    const lmf_vec_ops *V = lmf_vec();
    int C = w->cfg.n_embd;
    float eps = w->cfg.norm_eps;
    for (int i = 0; i < N; i++) {
        float mean, rstd;
        if (w->norm == LMF_NORM_RMS) V->rmsnorm(out + (size_t)i * C, &rstd, x + (size_t)i * C, g, C, eps);
        else V->layernorm(out + (size_t)i * C, &mean, &rstd, x + (size_t)i * C, g, b, C, eps);
    }
}

/* Rotates dimensions [d0, d1) of row x (heads of size hs, one after the other) for position p; the pairs of RoPE
 * (adjacent dimensions, or d and d + hs/2 for ROPE_HALF) must not straddle d0 or d1. */
static void rope_span(const lmf_session *s, float *x, int d0, int d1, int p) {
    int hs = s->w->cfg.n_embd / s->w->cfg.n_head, half = hs / 2;
    const float *c = s->rope + (size_t)p * half, *sn = s->rope + (size_t)s->n_ctx * half + (size_t)p * half;
    int interleaved = s->w->pos == LMF_POS_ROPE_INTERLEAVED;
    for (int d = d0; d < d1; d++) {
        int j = d % hs, i = interleaved ? j / 2 : j, b = interleaved ? d + 1 : d + half;
        if (interleaved ? j % 2 : j >= half) continue;
        float x0 = x[d], x1 = x[b];
        x[d] = x0 * c[i] - x1 * sn[i];
        x[b] = x0 * sn[i] + x1 * c[i];
    }
}

/* One query over nk cached positions of one head: scores into S, then out = V_h^T softmax(S). */
static void attend(const lmf_session *s, const float *kh, const float *vh, const float *qh, float *oh, int nk,
                   float *S) {
    const lmf_model_config *c = &s->w->cfg;
    int hs = c->n_embd / c->n_head;
    lmf_vec()->rows_by_matrix(S, nk, qh, hs, 1, kh, s->n_ctx, hs, nk);
    lmf_vec()->softmax(S, nk, 1.0f / sqrtf((float)hs));
    lmf_qmatvec(LMF_GGML_F32, nk, hs, vh, (size_t)s->n_ctx * sizeof(float), 1, S, 0, oh, hs);
}

/* Decode attention split by positions (flash-decoding): this thread's stretch [a, a + n) of each query's cached
 * positions, for every head. The query heads that share a KV head go through one product together, so every cached
 * K and V element is read once per token (GQA), not once per query head. Scores come from the transposed K cache
 * by rows_by_matrix (accumulated down the head's dimensions: no horizontal sum per position), the output from V^T
 * by the fp32 matrix-vector kernels; the stretch's output, softmax-normalized over the stretch, and its
 * log-sum-exp per head go to part, and attend_merge weighs the threads' stretches together. Splitting by heads
 * (each head's K rows of 64 floats through a dot product) left SmolLM2's 3 KV heads unevenly on 2 threads, read
 * each 3 times and cost a horizontal sum per position and head. qs: C floats. */
static void attend_share(lmf_session *s, int layer, int N, int p0, int tid, int nth, float *S, float *qs) {
    const lmf_model_config *c = &s->w->cfg;
    int C = c->n_embd, NH = c->n_head, hs = C / NH, KV = c->n_kv_head * hs, group = NH / c->n_kv_head;
    const float *kt = s->kcache + (size_t)layer * s->n_ctx * KV, *vt = s->vcache + (size_t)layer * s->n_ctx * KV;
    const lmf_vec_ops *V = lmf_vec();
    float scale = 1.0f / sqrtf((float)hs);
    for (int i = 0; i < N; i++) {
        int nk = p0 + i + 1, chunk = ((nk + nth - 1) / nth + 15) & ~15; /* whole 64-byte lines of V rows */
        int a = tid * chunk, n = nk - a < chunk ? nk - a : chunk;      /* thread 0's stretch is never empty */
        float *po = s->part + ((size_t)tid * QMV_MAX + i) * (C + NH), *pl = po + C;
        if (n <= 0) {
            for (int h = 0; h < NH; h++) pl[h] = -INFINITY;
            continue;
        }
        for (int g = 0; g < c->n_kv_head; g++)
            for (int h0 = 0; h0 < group; h0 += 4) { /* rows_by_matrix takes up to four query heads */
                int nq = group - h0 < 4 ? group - h0 : 4, h = g * group + h0;
                const float *q = s->q + (size_t)i * C + (size_t)h * hs;
                for (int j = 0; j < nq * hs; j++) qs[j] = q[j] * scale;
                V->rows_by_matrix(S, n, qs, hs, nq, kt + (size_t)g * hs * s->n_ctx + a, s->n_ctx, hs, n);
                for (int j = 0; j < nq; j++) {
                    pl[h + j] = V->logsumexp(S + (size_t)j * n, n);
                    V->exp_shift_scale(S + (size_t)j * n, n, pl[h + j], 1.0f);
                }
                lmf_qmatvec(LMF_GGML_F32, n, hs, vt + (size_t)g * hs * s->n_ctx + a, (size_t)s->n_ctx * sizeof(float),
                            nq, S, (size_t)n * sizeof(float), po + (size_t)h * hs, hs);
            }
    }
}

/* Every thread's attend_share stretches of N queries merged into out (N, C): per head, weights exp(lse_t - max). */
static void attend_merge(const lmf_session *s, int N, int nth, float *out) {
    int C = s->w->cfg.n_embd, NH = s->w->cfg.n_head, hs = C / NH;
    for (int i = 0; i < N; i++)
        for (int h = 0; h < NH; h++) {
            const float *part = s->part + (size_t)i * (C + NH);
            size_t stride = (size_t)QMV_MAX * (C + NH); /* thread to thread */
            float m = -INFINITY, sum = 0, *o = out + (size_t)i * C + (size_t)h * hs;
            for (int t = 0; t < nth; t++)
                if (part[t * stride + C + h] > m) m = part[t * stride + C + h];
            memset(o, 0, (size_t)hs * sizeof(float));
            for (int t = 0; t < nth; t++) {
                float wt = expf(part[t * stride + C + h] - m);
                const float *po = part + t * stride + (size_t)h * hs;
                if (wt > 0)
                    for (int d = 0; d < hs; d++) o[d] += wt * po[d];
                sum += wt;
            }
            for (int d = 0; d < hs; d++) o[d] /= sum;
        }
}

/* Causal attention of N new queries (positions p0..p0+N-1) over the layer's cache [0, p0+N), the prefill path:
 * q (N,C) in, out (N,C). Query head h reads KV head h / (NH / NKV). Per head and block of up to 64 queries: scores
 * = Q K_h^T by SGEMM on the transposed K cache (an untransposed operand), causal softmax, out = P V_h by SGEMM on
 * the transposed V cache. */
static void attention(lmf_session *s, int layer, float *out, const float *q, int N, int p0) {
    const lmf_model_config *c = &s->w->cfg;
    int C = c->n_embd, NH = c->n_head, hs = C / NH, KV = c->n_kv_head * hs, group = NH / c->n_kv_head;
    const float *kt = s->kcache + (size_t)layer * s->n_ctx * KV, *vt = s->vcache + (size_t)layer * s->n_ctx * KV;
    float scale = 1.0f / sqrtf((float)hs);
    const lmf_vec_ops *V = lmf_vec();
    int nblk = (N + QBLK - 1) / QBLK;
#pragma omp parallel for schedule(dynamic, 1) collapse(2) num_threads(s->nthreads) /* scores: one slab per thread */
    for (int h = 0; h < NH; h++) {
        for (int b = 0; b < nblk; b++) {
            int i0 = b * QBLK, nq = N - i0 < QBLK ? N - i0 : QBLK, nk = p0 + i0 + nq;
            float *S = s->scores + (size_t)omp_get_thread_num() * QBLK * s->n_ctx;
            const float *kh = kt + (size_t)(h / group) * hs * s->n_ctx, *vh = vt + (size_t)(h / group) * hs * s->n_ctx;
            const float *qh = q + (size_t)i0 * C + (size_t)h * hs;
            float *oh = out + (size_t)i0 * C + (size_t)h * hs;
            if (nq == 1) {
                attend(s, kh, vh, qh, oh, nk, S);
                continue;
            }
            lmf_sgemm(0, 0, nq, nk, hs, qh, C, kh, s->n_ctx, 0.0f, S, nk);
            for (int r = 0; r < nq; r++) {
                float *row = S + (size_t)r * nk;
                int valid = p0 + i0 + r + 1;
                V->softmax(row, valid, scale);
                memset(row + valid, 0, (size_t)(nk - valid) * sizeof(float));
            }
            lmf_sgemm(0, 1, nq, hs, nk, S, nk, vh, s->n_ctx, 0.0f, oh, C);
        }
    }
}

/* ---- the forward pass ---------------------------------------------------------------------------------------- */

/* The input rows of N tokens at positions p0..: token embeddings (+ learned positions) into s->x. */
static void embed(lmf_session *s, const int32_t *tok, int N, int p0) {
    const lmf_weights *w = s->w;
    int C = w->cfg.n_embd;
    for (int i = 0; i < N; i++) {
        float *x = s->x + (size_t)i * C;
        if (w->tok_emb.r16) /* a tied head repacked: row tok of its group */
            lmf_r16_dequant_row(w->tok_emb.type, C,
                                (const char *)w->tok_emb.r16 + (size_t)(tok[i] / 16) * 16 * w->tok_emb.row_bytes,
                                tok[i] % 16, x);
        else
            lmf_dequant_fast(w->tok_emb.type, (const char *)w->tok_emb.data + (size_t)tok[i] * w->tok_emb.row_bytes, x,
                             (size_t)C);
        if (w->pos == LMF_POS_LEARNED) {
            float *pe = s->xn; /* free until the first norm */
            lmf_dequant_fast(w->pos_emb.type,
                             (const char *)w->pos_emb.data + (size_t)(p0 + i + w->pos_offset) * w->pos_emb.row_bytes,
                             pe, (size_t)C);
            for (int j = 0; j < C; j++) x[j] += pe[j];
        }
    }
}

/* The FFN's activation on columns [lo, hi) of N rows (F apart): h1 = act(h1), or SwiGLU silu(h2) * h1. */
static void ffn_act(const lmf_weights *w, float *h1, const float *h2, int N, int lo, int hi) {
    const lmf_vec_ops *V = lmf_vec();
    int F = w->cfg.ffn_dim;
    for (int i = 0; i < N; i++) {
        float *a = h1 + (size_t)i * F + lo;
        if (w->act == LMF_ACT_SWIGLU) V->swiglu(a, h2 + (size_t)i * F + lo, a, hi - lo);
        else if (w->act == LMF_ACT_GELU_TANH) V->gelu(a, a, hi - lo);
        else
            for (int j = 0; j < hi - lo; j++) a[j] = a[j] > 0 ? a[j] : 0;
    }
}

/* Prefill: runs QMV_MAX < N <= NB tokens at positions s->pos.. through the model; logits for rows [lo, N) into
 * logits (rows V apart). */
static void forward(lmf_session *s, const int32_t *tok, int N, int lo, float *logits) {
    const lmf_weights *w = s->w;
    const lmf_model_config *c = &w->cfg;
    int C = c->n_embd, hs = C / c->n_head, KV = c->n_kv_head * hs, F = c->ffn_dim, p0 = s->pos;

    embed(s, tok, N, p0);
    for (int l = 0; l < c->n_layer; l++) {
        const lmf_layer_weights *L = &w->layers[l];
        norm_rows(w, s->xn, s->x, N, L->attn_norm_w, L->attn_norm_b);
        lin qkv[3] = {{&L->wq, L->bq, s->q, C}, {&L->wk, L->bk, s->k, KV}, {&L->wv, L->bv, s->v, KV}};
        linear_n(s, s->xn, C, N, qkv, 3);
        float *kt = s->kcache + (size_t)l * s->n_ctx * KV + p0, *vt = s->vcache + (size_t)l * s->n_ctx * KV + p0;
        for (int i = 0; i < N; i++) {
            if (w->pos != LMF_POS_LEARNED) {
                rope_span(s, s->q + (size_t)i * C, 0, C, p0 + i);
                rope_span(s, s->k + (size_t)i * KV, 0, KV, p0 + i);
            }
        }
        for (int i = 0; i < N; i++)
            for (int d = 0; d < KV; d++) {
                kt[(size_t)d * s->n_ctx + i] = s->k[(size_t)i * KV + d];
                vt[(size_t)d * s->n_ctx + i] = s->v[(size_t)i * KV + d];
            }
        attention(s, l, s->att, s->q, N, p0);
        linear(s, s->xn, C, s->att, C, N, &L->wo, L->bo);
        for (size_t j = 0; j < (size_t)N * C; j++) s->x[j] += s->xn[j];

        norm_rows(w, s->xn, s->x, N, L->ffn_norm_w, L->ffn_norm_b);
        lin ffn[2] = {{&L->w_up, L->b_up, s->h1, F}, {&L->w_gate, NULL, s->h2, F}};
        linear_n(s, s->xn, C, N, ffn, w->act == LMF_ACT_SWIGLU ? 2 : 1);
        ffn_act(w, s->h1, s->h2, N, 0, F);
        linear(s, s->xn, C, s->h1, F, N, &L->w_down, L->b_down);
        for (size_t j = 0; j < (size_t)N * C; j++) s->x[j] += s->xn[j];
    }
    s->pos += N;
    if (lo >= N) return;
    norm_rows(w, s->xn, s->x + (size_t)lo * C, N - lo, w->out_norm_w, w->out_norm_b);
    linear(s, logits, c->vocab_size, s->xn, C, N - lo, &w->lm_head, NULL);
}

/* A decode product that feeds the residual stream (attention's o, the FFN's down): this thread's rows of in W^T +
 * bias into s->xn, added to s->x by the same thread. */
static void residual_rows(lmf_session *s, const lmf_wtensor *W, const float *bias, const float *in, int ldi, int N,
                          char *qbuf, int tid, int nth) {
    int C = s->w->cfg.n_embd, lo, hi;
    lin o = {W, bias, s->xn, C};
    const char *qin[3];
    size_t qb[3];
    convert_inputs(in, ldi, N, &o, 1, qbuf, s->qin_stride, qin, qb);
    row_share(C, 16, tid, nth, &lo, &hi);
    linear_rows(&o, N, qin[0], qb[0], lo, hi);
    for (int i = 0; i < N; i++)
        for (int r = lo; r < hi; r++) s->x[(size_t)i * C + r] += s->xn[(size_t)i * C + r];
}

/* Decode: N <= QMV_MAX tokens, the whole step in one parallel region with five barriers per layer (one after each
 * product whose output the next one reads in full; lmf_barrier, which sleeps when a partner is descheduled). A
 * fork/join per product cost ~150 region starts and ends per token; here the small serial steps are either done by every thread for itself (norm + conversion of an input
 * row, into its own buffers: cheaper than a barrier) or by the thread that owns the rows (biases, RoPE, the KV
 * cache writes, residual adds and the FFN activation follow the row split of the matrix that made them). */
static void forward_decode(lmf_session *s, const int32_t *tok, int N, int lo, float *logits) {
    const lmf_weights *w = s->w;
    const lmf_model_config *c = &w->cfg;
    int C = c->n_embd, NH = c->n_head, hs = C / NH, KV = c->n_kv_head * hs, F = c->ffn_dim, p0 = s->pos;
    int swiglu = w->act == LMF_ACT_SWIGLU, rope = w->pos != LMF_POS_LEARNED;
    /* Q and K rows in whole heads for ROPE_HALF (its pairs span half a head) and whole R16 groups */
    int qk_unit = 16;
    if (w->pos == LMF_POS_ROPE_HALF)
        while (qk_unit % hs || qk_unit % 16) qk_unit += 16;
    embed(s, tok, N, p0);
    lmf_barrier_init(&s->bar);
#pragma omp parallel num_threads(s->nthreads)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads(), rlo, rhi;
        float *xn = s->xnt + (size_t)tid * QMV_MAX * C;
        char *qbuf = (char *)s->qin + (size_t)tid * 3 * QMV_MAX * s->qin_stride;
        float *S = s->scores + (size_t)tid * QBLK * s->n_ctx;
        const char *qin[3];
        size_t qb[3];
        for (int l = 0; l < c->n_layer; l++) {
            const lmf_layer_weights *L = &w->layers[l];
            float *kt = s->kcache + (size_t)l * s->n_ctx * KV, *vt = s->vcache + (size_t)l * s->n_ctx * KV;
            /* q, k, v: RoPE and the cache writes on the rows this thread made */
            lin qkv[3] = {{&L->wq, L->bq, s->q, C}, {&L->wk, L->bk, s->k, KV}, {&L->wv, L->bv, s->v, KV}};
            norm_rows(w, xn, s->x, N, L->attn_norm_w, L->attn_norm_b);
            convert_inputs(xn, C, N, qkv, 3, qbuf, s->qin_stride, qin, qb);
            for (int j = 0; j < 3; j++) {
                row_share(qkv[j].W->rows, j < 2 ? qk_unit : 16, tid, nth, &rlo, &rhi);
                linear_rows(&qkv[j], N, qin[j], qb[j], rlo, rhi);
                for (int i = 0; i < N && rhi > rlo; i++) {
                    float *row = qkv[j].out + (size_t)i * qkv[j].ldo;
                    if (j < 2 && rope) rope_span(s, row, rlo, rhi, p0 + i);
                    float *cache = j == 1 ? kt : j == 2 ? vt : NULL;
                    for (int d = rlo; cache && d < rhi; d++) cache[(size_t)d * s->n_ctx + p0 + i] = row[d];
                }
            }
            prefetch_share(&L->wo, 16, tid, nth);
            lmf_barrier_wait(&s->bar, nth);
            attend_share(s, l, N, p0, tid, nth, S, xn);
            lmf_barrier_wait(&s->bar, nth);
            attend_merge(s, N, nth, xn); /* every thread merges for itself: cheaper than another barrier */
            residual_rows(s, &L->wo, L->bo, xn, C, N, qbuf, tid, nth);
            prefetch_share(&L->w_up, 16, tid, nth);
            prefetch_share(&L->w_gate, 16, tid, nth);
            lmf_barrier_wait(&s->bar, nth);
            /* up (and gate): the activation on the columns this thread made */
            lin ffn[2] = {{&L->w_up, L->b_up, s->h1, F}, {&L->w_gate, NULL, s->h2, F}};
            norm_rows(w, xn, s->x, N, L->ffn_norm_w, L->ffn_norm_b);
            convert_inputs(xn, C, N, ffn, 1 + swiglu, qbuf, s->qin_stride, qin, qb);
            row_share(F, 16, tid, nth, &rlo, &rhi);
            for (int j = 0; j < 1 + swiglu; j++) linear_rows(&ffn[j], N, qin[j], qb[j], rlo, rhi);
            if (rhi > rlo) ffn_act(w, s->h1, s->h2, N, rlo, rhi);
            prefetch_share(&L->w_down, 16, tid, nth);
            lmf_barrier_wait(&s->bar, nth);
            residual_rows(s, &L->w_down, L->b_down, s->h1, F, N, qbuf, tid, nth);
            if (l + 1 < c->n_layer) {
                const lmf_layer_weights *Ln = &w->layers[l + 1];
                prefetch_share(&Ln->wq, qk_unit, tid, nth);
                prefetch_share(&Ln->wk, qk_unit, tid, nth);
                prefetch_share(&Ln->wv, 16, tid, nth);
            } else if (lo < N) {
                prefetch_share(&w->lm_head, 16, tid, nth);
            }
            lmf_barrier_wait(&s->bar, nth);
        }
        if (lo < N) {
            lin head = {&w->lm_head, NULL, logits, c->vocab_size};
            norm_rows(w, xn, s->x + (size_t)lo * C, N - lo, w->out_norm_w, w->out_norm_b);
            convert_inputs(xn, C, N - lo, &head, 1, qbuf, s->qin_stride, qin, qb);
            row_share(c->vocab_size, 16, tid, nth, &rlo, &rhi);
            linear_rows(&head, N - lo, qin[0], qb[0], rlo, rhi);
        }
    }
    s->pos += N;
}

/* ---- sessions ----------------------------------------------------------------------------------------------- */

static void rope_table_at(float *tab, int n_ctx, int hs, float theta) {
    int half = hs / 2;
    for (int p = 0; p < n_ctx; p++) {
        for (int i = 0; i < half; i++) {
            double a = p * pow((double)theta, -2.0 * i / hs); /* double: long contexts keep accurate angles */
            tab[(size_t)p * half + i] = (float)cos(a);
            tab[(size_t)n_ctx * half + (size_t)p * half + i] = (float)sin(a);
        }
    }
}

lmf_status lmf_session_create(const lmf_weights *w, int n_ctx, lmf_session **out) {
    *out = NULL;
    const lmf_model_config *c = &w->cfg;
    if (n_ctx <= 0) return lmf_fail(LMF_ERR_ARG, "context length %d must be positive", n_ctx);
    if (n_ctx > c->max_seq_len) n_ctx = c->max_seq_len;
    int C = c->n_embd, hs = C / c->n_head, KV = c->n_kv_head * hs, F = c->ffn_dim, L = c->n_layer;
    /* the decode layout, made once per weights (a cache inside them: the model's values do not change) */
    lmf_weights_prepare_decode((lmf_weights *)w);
    lmf_session *s = lmf_xcalloc(1, sizeof *s);
    s->w = w;
    s->n_ctx = n_ctx;
    s->nthreads = omp_get_max_threads();
    /* the largest converted input row any weight asks for, and the largest matrix (the dequantization slab
     * never needs to be bigger) */
    size_t qb = 0;
    s->dq_floats = 0;
    for (int l = -1; l < L; l++) {
        const lmf_layer_weights *Lw = &w->layers[l < 0 ? 0 : l];
        const lmf_wtensor *ts[LMF_LAYER_MATRICES];
        lmf_layer_matrices(Lw, ts);
        int n = LMF_LAYER_MATRICES;
        if (l < 0) ts[0] = &w->lm_head, n = 1;
        for (int t = 0; t < n; t++) {
            if (!ts[t]->rows) continue;
            if (lmf_qmatvec_supported(ts[t]->type) && lmf_qinput_bytes(ts[t]->type, ts[t]->cols) > qb)
                qb = lmf_qinput_bytes(ts[t]->type, ts[t]->cols);
            if ((size_t)ts[t]->rows * ts[t]->cols > s->dq_floats) s->dq_floats = (size_t)ts[t]->rows * ts[t]->cols;
        }
    }
    s->qin_stride = (qb + 63) & ~(size_t)63;
    if (s->dq_floats > DQ_BYTES / sizeof(float)) s->dq_floats = DQ_BYTES / sizeof(float);
    if (s->dq_floats < 16 * (size_t)(C > F ? C : F)) s->dq_floats = 16 * (size_t)(C > F ? C : F); /* one R16 group */
    size_t kv = (size_t)L * n_ctx * KV, half = (size_t)hs / 2;
    size_t floats[] = {kv, kv, 2 * (size_t)n_ctx * half, (size_t)NB * C, (size_t)NB * C, (size_t)NB * C,
                       (size_t)NB * KV, (size_t)NB * KV, (size_t)NB * C, (size_t)NB * F, (size_t)NB * F,
                       s->dq_floats, (size_t)s->nthreads * QBLK * n_ctx, (size_t)c->vocab_size,
                       ((size_t)s->nthreads * 3 * QMV_MAX * s->qin_stride + 3) / 4,
                       (size_t)s->nthreads * QMV_MAX * (size_t)C,
                       (size_t)s->nthreads * QMV_MAX * (size_t)(C + c->n_head)};
    float **dst[] = {&s->kcache, &s->vcache, &s->rope, &s->x, &s->xn, &s->q, &s->k, &s->v, &s->att, &s->h1, &s->h2,
                     &s->dq, &s->scores, &s->logits, (float **)&s->qin, &s->xnt, &s->part};
    size_t total = 0;
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) total += (floats[i] + 15) / 16 * 16;
    s->mem_bytes = total * sizeof(float);
    s->mem = lmf_alloc_big(s->mem_bytes);
    float *p = s->mem;
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
        *dst[i] = p;
        p += (floats[i] + 15) / 16 * 16;
    }
    s->logits_rows = 1;
    if (w->pos != LMF_POS_LEARNED) rope_table_at(s->rope, n_ctx, hs, c->rope_theta);
    *out = s;
    return LMF_OK;
}

void lmf_session_free(lmf_session *s) {
    if (!s) return;
    lmf_free_big(s->mem);
    if (s->logits_rows > 1) free(s->logits);
    free(s);
}

int lmf_session_pos(const lmf_session *s) { return s->pos; }
int lmf_session_n_ctx(const lmf_session *s) { return s->n_ctx; }

void lmf_session_rewind(lmf_session *s, int pos) {
    if (pos < 0) pos = 0;
    if (pos < s->pos) s->pos = pos;
}

lmf_status lmf_session_eval(lmf_session *s, const int32_t *tokens, int n, int all_logits, const float **logits) {
    const lmf_model_config *c = &s->w->cfg;
    if (logits) *logits = NULL;
    if (n <= 0) return lmf_fail(LMF_ERR_ARG, "lmf_session_eval: %d tokens", n);
    if (s->pos + n > s->n_ctx)
        return lmf_fail(LMF_ERR_ARG, "the context is full: %d tokens + %d new exceed the context length %d", s->pos,
                        n, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return lmf_fail(LMF_ERR_ARG, "token %d (at %d) is outside the vocabulary [0, %d)", tokens[i], i,
                            c->vocab_size);
    size_t V = (size_t)c->vocab_size;
    if (all_logits && n > s->logits_rows) {
        if (s->logits_rows > 1) free(s->logits);
        s->logits = lmf_xmalloc((size_t)n * V * sizeof(float));
        s->logits_rows = n;
    }
    for (int i0 = 0; i0 < n; i0 += NB) {
        int nb = n - i0 < NB ? n - i0 : NB, last = i0 + nb == n;
        /* rows that need logits: all of them, or only the very last token */
        int lo = all_logits ? 0 : (last ? nb - 1 : nb);
        if (nb <= QMV_MAX) forward_decode(s, tokens + i0, nb, lo, all_logits ? s->logits + (size_t)i0 * V : s->logits);
        else forward(s, tokens + i0, nb, lo, all_logits ? s->logits + (size_t)i0 * V : s->logits);
    }
    if (logits) *logits = s->logits;
    return LMF_OK;
}
