/* gemm_ref.c — the scalar reference SGEMM (see gemm.h); every SIMD variant is tested against it. */
#include "kernels/gemm.h"
#include "kernels/quant.h"

void lmf_sgemm_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[(long)k * lda + i] : A[(long)i * lda + k];
                float b = transB ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                acc += a * b;
            }
            float *c = &C[(long)i * ldc + j];
            *c = beta == 0.0f ? acc : beta * *c + acc;
        }
    }
}

static float bf16(float x) { return lmf_bf16_to_f32(lmf_f32_to_bf16(x)); }

void lmf_sgemm_bf16_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[(long)k * lda + i] : A[(long)i * lda + k];
                float b = transB ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                acc += bf16(a) * bf16(b); /* exact: two 8-bit significands */
            }
            float *c = &C[(long)i * ldc + j];
            *c = beta == 0.0f ? acc : beta * *c + acc;
        }
    }
}
