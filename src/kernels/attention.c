/* attention.c — causal grouped-query attention, forward and backward, built from small SGEMMs per head.
 *
 * Per (batch, head) the products Q K^T, P V and their gradients are (T x T x hs) matrix products that run on one
 * thread each (lmf_sgemm stays single-threaded inside a parallel region); heads are spread over the threads. The
 * full T x T score matrix is computed and the causal part kept: at the sequence lengths we train (T <= 1024) the
 * wasted upper triangle costs less than a blocked causal kernel's bookkeeping. */
#include "kernels/kernels.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"

#include <math.h>
#include <omp.h>
#include <string.h>

void lmf_attention_forward(float *out, float *att, const float *qkv, int B, int T, int NH, int NKV, int hs) {
    int C = NH * hs, KVC = NKV * hs, S = C + 2 * KVC, G = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            int kh = h / G;
            const float *Q = qkv + (long)b * T * S + (long)h * hs;
            const float *K = qkv + (long)b * T * S + C + (long)kh * hs;
            const float *V = K + KVC;
            float *P = att + ((long)b * NH + h) * T * T;
            lmf_sgemm(0, 1, T, T, hs, Q, S, K, S, 0.0f, P, T);
            for (int i = 0; i < T; i++) {
                float *row = P + (long)i * T;
                v->softmax(row, i + 1, scale);
                memset(row + i + 1, 0, sizeof(float) * (size_t)(T - i - 1));
            }
            lmf_sgemm(0, 0, T, hs, T, P, T, V, S, 0.0f, out + (long)b * T * C + (long)h * hs, C);
        }
    }
}

/* Same per-head operand setup as the forward (Q, K, V of one head in the qkv rows): the backward walks kv heads,
 * the forward query heads, so the two loops stay apart. */
void lmf_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att, int B,
                            int T, int NH, int NKV, int hs) {
    int C = NH * hs, KVC = NKV * hs, S = C + 2 * KVC, G = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
    const lmf_vec_ops *v = lmf_vec();
    /* Query heads of one group share their K and V gradients: one task per (batch, kv head) keeps writes apart. */
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int kh = 0; kh < NKV; kh++) {
            float *dP = scratch + (long)omp_get_thread_num() * T * T;
            const float *K = qkv + (long)b * T * S + C + (long)kh * hs;
            const float *V = K + KVC;
            float *dK = dqkv + (long)b * T * S + C + (long)kh * hs;
            float *dV = dK + KVC;
            for (int h = kh * G; h < (kh + 1) * G; h++) {
                const float *Q = qkv + (long)b * T * S + (long)h * hs;
                float *dQ = dqkv + (long)b * T * S + (long)h * hs;
                const float *P = att + ((long)b * NH + h) * T * T;
                const float *dO = dout + (long)b * T * C + (long)h * hs;
                lmf_sgemm(0, 1, T, T, hs, dO, C, V, S, 0.0f, dP, T);      /* dP = dO V^T  */
                lmf_sgemm(1, 0, T, hs, T, P, T, dO, C, 1.0f, dV, S);      /* dV += P^T dO */
                for (int i = 0; i < T; i++) {                              /* softmax backward, scaled */
                    float *d = dP + (long)i * T;
                    v->softmax_backward(d, P + (long)i * T, i + 1, scale);
                    memset(d + i + 1, 0, sizeof(float) * (size_t)(T - i - 1));
                }
                lmf_sgemm(0, 0, T, hs, T, dP, T, K, S, 1.0f, dQ, S);      /* dQ += dS K   */
                lmf_sgemm(1, 0, T, hs, T, dP, T, Q, S, 1.0f, dK, S);      /* dK += dS^T Q */
            }
        }
    }
}
