/* gemm_ref.c — the scalar reference SGEMM (see gemm.h); every SIMD variant is tested against it. The bf16 reference
 * rounds each input to bfloat16 (round to nearest even) and sums the products, exact in fp32, in fp32; the bf16x3
 * one splits each input into bf16 hi and lo parts and sums hi.hi + hi.lo + lo.hi, in that order, in fp32. */
#include "kernels/gemm.h"
#include "kernels/quant.h"
#include "core/status.h"

static float bf16(float x) { return lmf_bf16_to_f32(lmf_f32_to_bf16(x)); }

/* element (r, c) of a matrix of floats, or of bf16 values (b16), row stride ld */
static float at(const void *m, int b16, int ld, int r, int c) {
    long i = (long)r * ld + c;
    return b16 ? lmf_bf16_to_f32(((const uint16_t *)m)[i]) : ((const float *)m)[i];
}

/* mode 0: fp32 products; 1: bf16 (a bf16 input rounds to itself); 2: the hi / lo split */
static void gemm(int mode, int transA, int transB, int M, int N, int K, const void *A, int a16, int lda, const void *B,
                 int b16, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = transA ? at(A, a16, lda, k, i) : at(A, a16, lda, i, k);
                float b = transB ? at(B, b16, ldb, j, k) : at(B, b16, ldb, k, j);
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
    gemm(0, transA, transB, M, N, K, A, 0, lda, B, 0, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc) {
    gemm(1, transA, transB, M, N, K, A, 0, lda, B, 0, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16x3_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                          int ldb, float beta, float *C, int ldc) {
    gemm(2, transA, transB, M, N, K, A, 0, lda, B, 0, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16_x_ref(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                          const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc) {
    LMF_CHECK(!bias && (!a16 || !transA)); /* lmf_sgemm_bf16_x adds the bias */
    gemm(1, transA, transB, M, N, K, A, a16, lda, B, b16, ldb, beta, C, ldc);
}

void lmf_bf16_round_ref(uint16_t *dst, const float *src, long n) {
    for (long i = 0; i < n; i++) dst[i] = lmf_f32_to_bf16(src[i]);
}
