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
 * itself. Starts never decrease along a row, so a query block's keys begin at its first query's start (c0) and the
 * block-diagonal mask costs nothing but the zeros left of each row's start within the block. */
#include "kernels/kernels.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define ATT_RB 64

typedef void (*gemm_fn)(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);

size_t lmf_attention_scratch_floats(int T, int nthreads) { return (size_t)nthreads * 2 * ATT_RB * (size_t)T; }

/* Probabilities of query rows i0..i1-1 over keys c0..i1-1 into P (row stride i1 - c0); row i's keys run from its
 * start st(i) (0, or i - pos[i] in a packed row; c0 = st(i0)) to i, the rest of its row zero. */
static inline int start_of(const int32_t *pos, int i) { return pos ? i - pos[i] : 0; }

static void probs(gemm_fn gemm, float *P, const float *Q, const float *K, int S, const int32_t *pos, int i0, int i1,
                  int hs, float scale, const lmf_vec_ops *v) {
    int c0 = start_of(pos, i0), w = i1 - c0;
    gemm(0, 1, i1 - i0, w, hs, Q + (long)i0 * S, S, K + (long)c0 * S, S, 0.0f, P, w);
    for (int i = i0; i < i1; i++) {
        float *row = P + (long)(i - i0) * w;
        int st = start_of(pos, i) - c0;
        memset(row, 0, sizeof(float) * (size_t)st);
        v->softmax(row + st, i + 1 - c0 - st, scale);
        memset(row + i + 1 - c0, 0, sizeof(float) * (size_t)(i1 - i - 1));
    }
}

void lmf_attention_forward(float *out, float *scratch, const float *qkv, const int32_t *pos, int B, int T, int NH,
                           int NKV, int hs, int bf16) {
    gemm_fn gemm = bf16 ? lmf_sgemm_bf16 : lmf_sgemm;
    int C = NH * hs, KVC = NKV * hs, S = C + 2 * KVC, G = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float *P = scratch + (long)omp_get_thread_num() * 2 * ATT_RB * T;
            const float *Q = qkv + (long)b * T * S + (long)h * hs;
            const float *K = qkv + (long)b * T * S + C + (long)(h / G) * hs;
            const float *V = K + KVC;
            float *O = out + (long)b * T * C + (long)h * hs;
            const int32_t *ps = pos ? pos + (long)b * T : NULL;
            for (int i0 = 0; i0 < T; i0 += ATT_RB) {
                int i1 = i0 + ATT_RB < T ? i0 + ATT_RB : T, c0 = start_of(ps, i0);
                probs(gemm, P, Q, K, S, ps, i0, i1, hs, scale, v);
                gemm(0, 0, i1 - i0, hs, i1 - c0, P, i1 - c0, V + (long)c0 * S, S, 0.0f, O + (long)i0 * C, C);
            }
        }
    }
}

void lmf_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const int32_t *pos, int B,
                            int T, int NH, int NKV, int hs, int bf16) {
    gemm_fn gemm = bf16 ? lmf_sgemm_bf16 : lmf_sgemm;
    int C = NH * hs, KVC = NKV * hs, S = C + 2 * KVC, G = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
    const lmf_vec_ops *v = lmf_vec();
    /* Query heads of one group share their K and V gradients: one task per (batch, kv head) keeps writes apart. */
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int kh = 0; kh < NKV; kh++) {
            float *P = scratch + (long)omp_get_thread_num() * 2 * ATT_RB * T, *dP = P + (long)ATT_RB * T;
            const float *K = qkv + (long)b * T * S + C + (long)kh * hs;
            const float *V = K + KVC;
            float *dK = dqkv + (long)b * T * S + C + (long)kh * hs;
            float *dV = dK + KVC;
            for (int h = kh * G; h < (kh + 1) * G; h++) {
                const float *Q = qkv + (long)b * T * S + (long)h * hs;
                float *dQ = dqkv + (long)b * T * S + (long)h * hs;
                const float *dO = dout + (long)b * T * C + (long)h * hs;
                const int32_t *ps = pos ? pos + (long)b * T : NULL;
                for (int i0 = 0; i0 < T; i0 += ATT_RB) {
                    int i1 = i0 + ATT_RB < T ? i0 + ATT_RB : T, m = i1 - i0, c0 = start_of(ps, i0), w = i1 - c0;
                    const float *Kc = K + (long)c0 * S, *Vc = V + (long)c0 * S;
                    probs(gemm, P, Q, K, S, ps, i0, i1, hs, scale, v);
                    gemm(0, 1, m, w, hs, dO + (long)i0 * C, C, Vc, S, 0.0f, dP, w);          /* dP = dO V^T  */
                    /* dV += P^T dO; keys [i0, i1) first get a gradient here, from the group's first head: written */
                    int first = h == kh * G, had = w - m; /* keys [c0, i0) had theirs from earlier blocks */
                    gemm(1, 0, had, hs, m, P, w, dO + (long)i0 * C, C, 1.0f, dV + (long)c0 * S, S);
                    gemm(1, 0, m, hs, m, P + had, w, dO + (long)i0 * C, C, first ? 0.0f : 1.0f, dV + (long)i0 * S, S);
                    for (int i = i0; i < i1; i++) { /* softmax backward over the row's keys, zero elsewhere */
                        float *d = dP + (long)(i - i0) * w;
                        int st = start_of(ps, i) - c0;
                        memset(d, 0, sizeof(float) * (size_t)st);
                        v->softmax_backward(d + st, P + (long)(i - i0) * w + st, i + 1 - c0 - st, scale);
                        memset(d + i + 1 - c0, 0, sizeof(float) * (size_t)(i1 - i - 1));
                    }
                    gemm(0, 0, m, hs, w, dP, w, Kc, S, 0.0f, dQ + (long)i0 * S, S);          /* dQ = dS K    */
                    /* dK += dS^T Q, as dV */
                    gemm(1, 0, had, hs, m, dP, w, Q + (long)i0 * S, S, 1.0f, dK + (long)c0 * S, S);
                    gemm(1, 0, m, hs, m, dP + had, w, Q + (long)i0 * S, S, first ? 0.0f : 1.0f, dK + (long)i0 * S, S);
                }
            }
        }
    }
}
