/* attention.c — causal grouped-query attention, forward and backward, built from small SGEMMs per head.
 *
 * Per (batch, head) the products Q K^T, P V and their gradients are matrix products that run on one thread each
 * (lmf_sgemm stays single-threaded inside a parallel region); heads are spread over the threads. Queries go in
 * blocks of ATT_RB rows, and a block's products stop at its last row's keys: the causal upper triangle is skipped
 * but for the block on the diagonal (56% of the full square's work at T = 512).
 *
 * Nothing T x T is kept between forward and backward: the backward recomputes each block's probabilities with the
 * forward's own code (bit-identical P) from Q and K, which costs one Q K^T product and its softmax per head again
 * and saves B x NH x T x T floats per layer (1.1 GB for SmolLM2 at batch 4 x 512). */
#include "kernels/kernels.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define ATT_RB 64

size_t lmf_attention_scratch_floats(int T, int nthreads) { return (size_t)nthreads * 2 * ATT_RB * (size_t)T; }

/* Probabilities of query rows i0..i1-1 over keys 0..i1-1 into P (row stride i1); entries above the diagonal zero. */
static void probs(float *P, const float *Q, const float *K, int S, int i0, int i1, int hs, float scale,
                  const lmf_vec_ops *v) {
    lmf_sgemm(0, 1, i1 - i0, i1, hs, Q + (long)i0 * S, S, K, S, 0.0f, P, i1);
    for (int i = i0; i < i1; i++) {
        float *row = P + (long)(i - i0) * i1;
        v->softmax(row, i + 1, scale);
        memset(row + i + 1, 0, sizeof(float) * (size_t)(i1 - i - 1));
    }
}

void lmf_attention_forward(float *out, float *scratch, const float *qkv, int B, int T, int NH, int NKV, int hs) {
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
            for (int i0 = 0; i0 < T; i0 += ATT_RB) {
                int i1 = i0 + ATT_RB < T ? i0 + ATT_RB : T;
                probs(P, Q, K, S, i0, i1, hs, scale, v);
                lmf_sgemm(0, 0, i1 - i0, hs, i1, P, i1, V, S, 0.0f, O + (long)i0 * C, C);
            }
        }
    }
}

void lmf_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, int B, int T, int NH,
                            int NKV, int hs) {
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
                for (int i0 = 0; i0 < T; i0 += ATT_RB) {
                    int i1 = i0 + ATT_RB < T ? i0 + ATT_RB : T, m = i1 - i0;
                    probs(P, Q, K, S, i0, i1, hs, scale, v);
                    lmf_sgemm(0, 1, m, i1, hs, dO + (long)i0 * C, C, V, S, 0.0f, dP, i1); /* dP = dO V^T  */
                    lmf_sgemm(1, 0, i1, hs, m, P, i1, dO + (long)i0 * C, C, 1.0f, dV, S); /* dV += P^T dO */
                    for (int i = i0; i < i1; i++) {                                    /* softmax backward */
                        float *d = dP + (long)(i - i0) * i1;
                        v->softmax_backward(d, P + (long)(i - i0) * i1, i + 1, scale);
                        memset(d + i + 1, 0, sizeof(float) * (size_t)(i1 - i - 1));
                    }
                    lmf_sgemm(0, 0, m, hs, i1, dP, i1, K, S, 1.0f, dQ + (long)i0 * S, S); /* dQ += dS K   */
                    lmf_sgemm(1, 0, i1, hs, m, dP, i1, Q + (long)i0 * S, S, 1.0f, dK, S); /* dK += dS^T Q */
                }
            }
        }
    }
}
