/* gemm_ref.c — the scalar reference SGEMM (see gemm.h); every SIMD variant is tested against it. The bf16 reference
 * rounds each input to bfloat16 (round to nearest even) and sums the products, exact in fp32, in fp32; the bf16x3
 * one splits each input into bf16 hi and lo parts and sums hi.hi + hi.lo + lo.hi, in that order, in fp32. */
#include "kernels/gemm.h"
#include "kernels/quant.h"
#include "core/status.h"

static float bf16(float x) { return lmf_bf16_to_f32(lmf_f32_to_bf16(x)); }

static void gemm(int mode, int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[(long)k * lda + i] : A[(long)i * lda + k];
                float b = transB ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                if (mode == 2) {
                    float ah = bf16(a), bh = bf16(b), al = bf16(a - ah), bl = bf16(b - bh);
                    acc += ah * bh;
                    acc += ah * bl;
                    acc += al * bh;
                } else {
                    acc += mode ? bf16(a) * bf16(b) : a * b;
                }
            }
            float *c = &C[(long)i * ldc + j];
            *c = beta == 0.0f ? acc : beta * *c + acc;
        }
    }
}

void lmf_sgemm_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc) {
    gemm(0, transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc) {
    gemm(1, transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16x3_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                          int ldb, float beta, float *C, int ldc) {
    gemm(2, transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16_x_ref(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                          const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc) {
    LMF_CHECK(!bias && (!a16 || !transA)); /* lmf_sgemm_bf16_x adds the bias */
    const float *Af = A, *Bf = B;
    const uint16_t *Ah = A, *Bh = B;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                long ai = transA ? (long)k * lda + i : (long)i * lda + k, bi = transB ? (long)j * ldb + k : (long)k * ldb + j;
                acc += (a16 ? lmf_bf16_to_f32(Ah[ai]) : bf16(Af[ai])) * (b16 ? lmf_bf16_to_f32(Bh[bi]) : bf16(Bf[bi]));
            }
            float *c = &C[(long)i * ldc + j];
            *c = beta == 0.0f ? acc : beta * *c + acc;
        }
    }
}

void lmf_bf16_round_ref(uint16_t *dst, const float *src, long n) {
    for (long i = 0; i < n; i++) dst[i] = lmf_f32_to_bf16(src[i]);
}
