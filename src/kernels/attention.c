/* attention.c — causal grouped-query attention, forward and backward, built from small SGEMMs per head.
 *
 * Per (batch, head) the products Q K^T, P V and their gradients are matrix products that run on one thread each
 * (lmf_sgemm stays single-threaded inside a parallel region); heads are spread over the threads. Queries go in
 * blocks of ATT_RB rows, and a block's products stop at its last row's keys: the causal upper triangle is skipped
 * but for the block on the diagonal (56% of the full square's work at T = 512).
 *
 * Nothing T x T is kept between forward and backward: the backward recomputes each block's probabilities with the
 * forward's own code (bit-identical P) from Q and K, which costs one Q K^T product and its softmax per head again
 * and saves B x NH x T x T floats per layer (1.1 GB for SmolLM2 at batch 4 x 512). The gradients are written, not
 * added to a zeroed buffer: a query block's dQ rows once per head, and a key's dK and dV rows by the first block
 * whose queries reach them (the group's first head), every later block and head adding to them: the same sums from
 * the same zero, without a pass zeroing q|k|v's gradient (1% of a small model's training step).
 *
 * bf16 (mixed precision, as PyTorch's autocast runs attention's matmuls): the six products' inputs are rounded to
 * bf16 as lmf_sgemm_bf16 packs them, sums in fp32; the scores, softmax and its backward stay fp32.
 *
 * Packed rows (pos != NULL) hold several examples: a query attends from its example's first token (t - pos[t]) to
 * itself; a sliding window W (Mistral's, Gemma's local layers) from t - W + 1 at the earliest. Starts never decrease
 * along a row, so a query block's keys begin at its first query's start (c0) and the mask costs nothing but the
 * zeros left of each row's start within the block; a window also skips every block of keys before c0. */
#include "kernels/kernels.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"
#include "core/alloc.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define ATT_RB 64

/* a thread's P and dP blocks, and the backward's capped scores (softcap) */
size_t lmf_attention_scratch_floats(int T, int nthreads) { return (size_t)nthreads * 3 * ATT_RB * (size_t)T; }

int lmf_attention_split(int B, int NKV, int G) {
    int threads = omp_get_max_threads(), tasks = B * NKV, n = (threads + tasks - 1) / tasks;
    return n < G ? n : G;
}

static size_t parts_floats(int B, int T, int NKV, int n, int hs) {
    return n > 1 ? (size_t)B * NKV * n * 2 * T * hs : 0;
}

lmf_attention_parts lmf_attention_parts_of(int B, int T, int NKV, int G, int hs) {
    lmf_attention_parts pt = {.n = lmf_attention_split(B, NKV, G), .B = B, .T = T, .NKV = NKV, .hs = hs};
    size_t n = parts_floats(B, T, NKV, pt.n, hs);
    if (n) pt.buf = lmf_xmalloc(sizeof(float) * n);
    return pt;
}

size_t lmf_attention_parts_floats_max(int max_batch, int T, int NKV, int G, int hs) {
    size_t most = 0;
    for (int b = 1; b <= max_batch; b++) {
        size_t n = parts_floats(b, T, NKV, lmf_attention_split(b, NKV, G), hs);
        if (n > most) most = n;
    }
    return most;
}

float *lmf_attention_part_rows(const lmf_attention_parts *pt, int b, int kh, int part, int v) {
    return pt->buf + ((((size_t)b * pt->NKV + kh) * pt->n + part) * 2 + v) * pt->T * pt->hs;
}

void lmf_attention_parts_sum(lmf_attention_parts *pt, float *dqkv, int C, int S) {
    if (pt->n == 1) return;
    int T = pt->T, hs = pt->hs, KVC = pt->NKV * hs;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < pt->B; b++)
        for (int t = 0; t < T; t++)
            for (int kh = 0; kh < pt->NKV; kh++)
                for (int v = 0; v < 2; v++) {
                    float *dst = dqkv + ((long)b * T + t) * S + C + (long)v * KVC + (long)kh * hs;
                    const float *src = lmf_attention_part_rows(pt, b, kh, 0, v) + (long)t * hs;
                    memcpy(dst, src, sizeof(float) * (size_t)hs);
                    for (int part = 1; part < pt->n; part++) {
                        src = lmf_attention_part_rows(pt, b, kh, part, v) + (long)t * hs;
                        for (int d = 0; d < hs; d++) dst[d] += src[d];
                    }
                }
    free(pt->buf);
    pt->buf = NULL;
}

/* How the products run: fp32 (lmf_sgemm), bf16 (lmf_sgemm_bf16) or bf16 with q|k|v given in bf16 (q16:
 * lmf_sgemm_bf16_x). Q, K and V are offsets into qkv, whose element size q16 sets. */
typedef struct {
    int bf16, q16;
    const void *qkv;
} prods;

static const void *at(const prods *p, long off) { return (const char *)p->qkv + off * (p->q16 ? 2 : 4); }

/* C = beta C + op(A) op(B); aq / bq: A / B is q|k|v at offset a / b (else the fp32 matrix A / B) */
static void prod(const prods *p, int tA, int tB, int M, int N, int K, const float *A, int aq, long a, int lda,
                 const float *B, int bq, long b, int ldb, float beta, float *C, int ldc) {
    const void *x = aq ? at(p, a) : A, *y = bq ? at(p, b) : B;
    if (p->q16) lmf_sgemm_bf16_x(tA, tB, M, N, K, x, aq, lda, y, bq, ldb, beta, NULL, C, ldc);
    else (p->bf16 ? lmf_sgemm_bf16 : lmf_sgemm)(tA, tB, M, N, K, x, lda, y, ldb, beta, C, ldc);
}

/* Which keys a query sees and how its scores are shaped: a row's positions (packed examples) or NULL, the sliding
 * window or 0, the soft-cap or 0 */
typedef struct {
    const int32_t *pos;
    int W;
    float cap;
} mask_t;

static inline int start(const mask_t *mk, int i) { return lmf_attention_start(mk->pos, mk->W, i); }

/* Probabilities of query rows i0..i1-1 over keys c0..i1-1 into P (row stride i1 - c0); row i's keys run from its
 * start st(i) (0, or i - pos[i] in a packed row, or past the window; c0 = st(i0)) to i, the rest of its row zero.
 * q, k: the offsets of the head's Q and K in qkv (row stride S). With a soft-cap the scaled scores are capped first,
 * and Y (the backward's) gets the capped scores. */
static void probs(const prods *p, float *P, float *Y, long q, long k, int S, const mask_t *mk, int i0, int i1, int hs,
                  float scale, const lmf_vec_ops *v) {
    int c0 = start(mk, i0), w = i1 - c0;
    prod(p, 0, 1, i1 - i0, w, hs, NULL, 1, q + (long)i0 * S, S, NULL, 1, k + (long)c0 * S, S, 0.0f, P, w);
    for (int i = i0; i < i1; i++) {
        float *row = P + (long)(i - i0) * w;
        int st = start(mk, i) - c0, n = i + 1 - c0 - st;
        memset(row, 0, sizeof(float) * (size_t)st);
        if (mk->cap) {
            v->softcap(row + st, n, scale, mk->cap);
            if (Y) memcpy(Y + (long)(i - i0) * w + st, row + st, sizeof(float) * (size_t)n);
        }
        v->softmax(row + st, n, mk->cap ? 1.0f : scale);
        memset(row + i + 1 - c0, 0, sizeof(float) * (size_t)(i1 - i - 1));
    }
}

static void forward(float *out, float *scratch, const prods *p, const int32_t *pos, int W, float cap, int B, int T,
                    int NH, int NKV, int hs) {
    int C = NH * hs, KVC = NKV * hs, S = C + 2 * KVC, G = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float *P = scratch + (long)omp_get_thread_num() * 3 * ATT_RB * T;
            long q = (long)b * T * S + (long)h * hs, k = (long)b * T * S + C + (long)(h / G) * hs, vo = k + KVC;
            float *O = out + (long)b * T * C + (long)h * hs;
            mask_t mk = {pos ? pos + (long)b * T : NULL, W, cap};
            for (int i0 = 0; i0 < T; i0 += ATT_RB) {
                int i1 = i0 + ATT_RB < T ? i0 + ATT_RB : T, c0 = start(&mk, i0);
                probs(p, P, NULL, q, k, S, &mk, i0, i1, hs, scale, v);
                prod(p, 0, 0, i1 - i0, hs, i1 - c0, P, 0, 0, i1 - c0, NULL, 1, vo + (long)c0 * S, S, 0.0f,
                     O + (long)i0 * C, C);
            }
        }
    }
}

void lmf_attention_forward(float *out, float *scratch, const float *qkv, const int32_t *pos, int window,
                           float softcap, int B, int T, int NH, int NKV, int hs, int bf16) {
    prods p = {bf16, 0, qkv};
    forward(out, scratch, &p, pos, window, softcap, B, T, NH, NKV, hs);
}

void lmf_attention_forward_b16(float *out, float *scratch, const uint16_t *qkv, const int32_t *pos, int window,
                               float softcap, int B, int T, int NH, int NKV, int hs) {
    if (lmf_attention_amx_ok(hs)) return lmf_attention_forward_amx(out, qkv, pos, window, softcap, B, T, NH, NKV, hs);
    prods p = {1, 1, qkv};
    forward(out, scratch, &p, pos, window, softcap, B, T, NH, NKV, hs);
}

/* The backward's operands for one call */
typedef struct {
    float *dqkv, *scratch;
    const float *dout;
    const prods *p;
    const int32_t *pos;
    int W, B, T, NH, NKV, hs;
    float cap;
} bwd;

/* Query heads [h0, h1) of batch row b's KV head kh: their dQ, and their K and V gradients summed into dK / dV (rows
 * ld floats apart: q|k|v's, or a part's own rows), written by h0's blocks, added to by the others. */
static void backward_heads(const bwd *a, int b, int kh, int h0, int h1, float *dK, float *dV, int ld) {
    int hs = a->hs, T = a->T, C = a->NH * hs, KVC = a->NKV * hs, S = C + 2 * KVC;
    float scale = 1.0f / sqrtf((float)hs), cap = a->cap;
    const lmf_vec_ops *v = lmf_vec();
    const prods *p = a->p;
    float *P = a->scratch + (long)omp_get_thread_num() * 3 * ATT_RB * T, *dP = P + (long)ATT_RB * T;
    float *Y = dP + (long)ATT_RB * T;
    long k = (long)b * T * S + C + (long)kh * hs, vo = k + KVC;
    mask_t mk = {a->pos ? a->pos + (long)b * T : NULL, a->W, cap};
    for (int h = h0; h < h1; h++) {
        long q = (long)b * T * S + (long)h * hs;
        float *dQ = a->dqkv + q;
        const float *dO = a->dout + (long)b * T * C + (long)h * hs;
        for (int i0 = 0; i0 < T; i0 += ATT_RB) {
            int i1 = i0 + ATT_RB < T ? i0 + ATT_RB : T, m = i1 - i0, c0 = start(&mk, i0), w = i1 - c0;
            probs(p, P, Y, q, k, S, &mk, i0, i1, hs, scale, v);
            /* dP = dO V^T */
            prod(p, 0, 1, m, w, hs, dO + (long)i0 * C, 0, 0, C, NULL, 1, vo + (long)c0 * S, S, 0.0f, dP, w);
            /* dV += P^T dO; keys [i0, i1) first get a gradient here, from the first head: written */
            int first = h == h0, had = w - m; /* keys [c0, i0) had theirs from earlier blocks */
            prod(p, 1, 0, had, hs, m, P, 0, 0, w, dO + (long)i0 * C, 0, 0, C, 1.0f, dV + (long)c0 * ld, ld);
            prod(p, 1, 0, m, hs, m, P + had, 0, 0, w, dO + (long)i0 * C, 0, 0, C, first ? 0.0f : 1.0f,
                 dV + (long)i0 * ld, ld);
            for (int i = i0; i < i1; i++) { /* softmax backward over the row's keys, zero elsewhere */
                float *d = dP + (long)(i - i0) * w;
                int st = start(&mk, i) - c0, n = i + 1 - c0 - st;
                memset(d, 0, sizeof(float) * (size_t)st);
                v->softmax_backward(d + st, P + (long)(i - i0) * w + st, n, cap ? 1.0f : scale);
                if (cap) v->softcap_backward(d + st, Y + (long)(i - i0) * w + st, n, cap, scale);
                memset(d + i + 1 - c0, 0, sizeof(float) * (size_t)(i1 - i - 1));
            }
            /* dQ = dS K */
            prod(p, 0, 0, m, hs, w, dP, 0, 0, w, NULL, 1, k + (long)c0 * S, S, 0.0f, dQ + (long)i0 * S, S);
            /* dK += dS^T Q, as dV */
            prod(p, 1, 0, had, hs, m, dP, 0, 0, w, NULL, 1, q + (long)i0 * S, S, 1.0f, dK + (long)c0 * ld, ld);
            prod(p, 1, 0, m, hs, m, dP + had, 0, 0, w, NULL, 1, q + (long)i0 * S, S, first ? 0.0f : 1.0f,
                 dK + (long)i0 * ld, ld);
        }
    }
}

static void backward(const bwd *a) {
    int hs = a->hs, C = a->NH * hs, KVC = a->NKV * hs, S = C + 2 * KVC, G = a->NH / a->NKV;
    /* Query heads of one group share their K and V gradients: one task per (batch, KV head, part of the group's
     * heads) keeps writes apart, a part's sums in rows of its own when there are several (added up after). */
    lmf_attention_parts pt = lmf_attention_parts_of(a->B, a->T, a->NKV, G, hs);
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int b = 0; b < a->B; b++)
        for (int kh = 0; kh < a->NKV; kh++)
            for (int part = 0; part < pt.n; part++) {
                int h0 = kh * G + G * part / pt.n, h1 = kh * G + G * (part + 1) / pt.n;
                if (pt.n > 1)
                    backward_heads(a, b, kh, h0, h1, lmf_attention_part_rows(&pt, b, kh, part, 0),
                                   lmf_attention_part_rows(&pt, b, kh, part, 1), hs);
                else
                    backward_heads(a, b, kh, h0, h1, a->dqkv + (long)b * a->T * S + C + (long)kh * hs,
                                   a->dqkv + (long)b * a->T * S + C + KVC + (long)kh * hs, S);
            }
    lmf_attention_parts_sum(&pt, a->dqkv, C, S);
}

void lmf_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const int32_t *pos,
                            int window, float softcap, int B, int T, int NH, int NKV, int hs, int bf16) {
    prods p = {bf16, 0, qkv};
    bwd a = {dqkv, scratch, dout, &p, pos, window, B, T, NH, NKV, hs, softcap};
    backward(&a);
}

void lmf_attention_backward_b16(float *dqkv, float *scratch, const float *dout, const uint16_t *qkv,
                                const int32_t *pos, int window, float softcap, int B, int T, int NH, int NKV, int hs) {
    if (lmf_attention_amx_ok(hs))
        return lmf_attention_backward_amx(dqkv, dout, qkv, pos, window, softcap, B, T, NH, NKV, hs);
    prods p = {1, 1, qkv};
    bwd a = {dqkv, scratch, dout, &p, pos, window, B, T, NH, NKV, hs, softcap};
    backward(&a);
}
