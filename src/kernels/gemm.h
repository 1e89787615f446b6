/* gemm.h — single-precision matrix multiply, the heart of training speed.
 *
 *   C = beta * C + op(A) * op(B)
 *
 * All matrices are row-major. op(A) is M x K: A itself (M x K, row stride lda) when transA == 0, or the
 * transpose of A stored K x M (row stride lda) when transA != 0. op(B) is K x N: B (K x N, stride ldb) when
 * transB == 0, or the transpose of B stored N x K (stride ldb) when transB != 0. C is M x N with stride ldc.
 * beta == 0 overwrites C without reading it (NaN garbage in C is fine); beta == 1 accumulates.
 *
 * The three products of a linear layer y = x W^T (x: M x K, W: N x K) are:
 *   forward     y  = x W^T        lmf_sgemm(0, 1, M, N, K, x, K, W, K, 0, y, N)
 *   input grad  dx += dy W        lmf_sgemm(0, 0, M, K, N, dy, N, W, K, 1, dx, K)
 *   weight grad dW += dy^T x      lmf_sgemm(1, 0, N, K, M, dy, N, x, K, 1, dW, K)
 *
 * lmf_sgemm picks the variant once (core/cpu.h) and spreads the work over the OpenMP threads when called outside a
 * parallel region; inside one (e.g. per attention head) it runs on the calling thread only.
 * The _ref/_avx2/_avx512 variants are single-threaded and exposed so tests can hold each to the reference.
 * The SIMD variants pack into per-thread buffers (2 MB for AVX2, 4 MB for AVX-512), allocated on a thread's first
 * call and freed when the thread exits; no call allocates afterwards. Any M, N >= 1, K >= 0 (K == 0 gives
 * C = beta C), any beta, and row strides at least the row lengths are supported. */
/* lmf_sgemm_bf16 is the mixed-precision product: the same call, with op(A) and op(B) rounded to bfloat16 (round to
 * nearest even) and the products summed in fp32: on AMX-BF16 tiles (tdpbf16ps) where the CPU has them
 * (lmf_cpu_amx), else AVX-512 BF16's vdpbf16ps. Where the CPU has neither (or LMF_ISA asks for less than avx512) it
 * runs the AVX2 FMA kernel on panels rounded to bf16 (the reference's rounding, fp32 speed), and without AVX2 the
 * scalar reference: correct, slow. Whether it is faster than lmf_sgemm depends on the core, not the
 * feature flag: lmf_sgemm_bf16_rate() measures the chosen instruction's products per second against FP32 FMAs once
 * (~1 ms; 0 without the hardware), and lmf_sgemm_bf16_pays() is that rate >= 1.3. The AMX variant sums a tile's 32
 * products in its own order (and flushes bf16 subnormals, below 1.2e-38, to zero): its results equal the
 * reference's within fp32 rounding of the sums, not bit for bit.
 *
 * lmf_sgemm_bf16x3 is a product with nearly fp32 accuracy on AMX-BF16 tiles (prefill on F16 and dequantized
 * weights): each operand element x is split into hi = bf16(x) and lo = bf16(x - hi), which carry 16 of its 24
 * significand bits, and the three products hi.hi + hi.lo + lo.hi are summed in fp32 (lo.lo, below 2^-16 of |a b|,
 * is left out): an error per term of at most ~3 x 2^-16 |a b|, against 2^-8 for one bf16 product. An F16 weight is
 * exact as hi + lo. It pays only on tiles (~2x the AVX-512 fp32 SGEMM on SmolLM2's prefill shapes); without AMX it
 * is lmf_sgemm itself. */
/* lmf_sgemm_bf16_x is lmf_sgemm_bf16 (and with a bias lmf_sgemm_bf16_bias; beta must then be 0) with either operand
 * given already in bf16: a16 / b16 set, A / B hold bf16 elements (row strides lda / ldb in elements; A in bf16
 * needs transA 0). Training keeps the activations that only ever enter products (a norm's output, q|k|v, attention's
 * output, the FFN activation) in bf16, for the forward's products y = x W^T + b, attention's, and the weight
 * gradients dW += dy^T x. The results equal lmf_sgemm_bf16's on the fp32 values those bf16 ones were rounded from
 * by lmf_sgemm_bf16_round, bit for bit: the packing starts from the rounded values instead of rounding as it goes.
 * lmf_sgemm_bf16_round rounds n floats as lmf_sgemm_bf16's packing does (AMX and AVX-512 BF16: vcvtneps2bf16,
 * which also flushes fp32 subnormals to zero; the reference: lmf_f32_to_bf16), threaded like lmf_sgemm outside a
 * parallel region. */
#ifndef LMF_KERNELS_GEMM_H
#define LMF_KERNELS_GEMM_H

#include <stdint.h>

void lmf_sgemm(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc);

void lmf_sgemm_bf16(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc);
/* C = op(A) op(B) + bias (bias[j] added to column j; C is written, not read): on AMX the tiles start from the bias
 * (so it is added first, not after the products); elsewhere lmf_sgemm_bf16 and then the bias, per thread's block. */
void lmf_sgemm_bf16_bias(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                         int ldb, const float *bias, float *C, int ldc);
double lmf_sgemm_bf16_rate(void);
/* for logs: how fast lmf_sgemm_bf16 runs here and on what ("bf16 products run at 14.69x the fp32 rate on this CPU
 * (AMX-BF16 tiles)"; without AMX-BF16 or AVX512_BF16 "... at the fp32 rate ..." (the AVX2 kernel) or "... run the
 * scalar reference ..."); a static string, made at the first call */
const char *lmf_sgemm_bf16_note(void);
void lmf_sgemm_bf16_x(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda, const void *B,
                      int b16, int ldb, float beta, const float *bias, float *C, int ldc);
void lmf_sgemm_bf16_round(uint16_t *dst, const float *src, long n);
void lmf_sgemm_bf16x3(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc);
int lmf_sgemm_bf16_pays(void);

void lmf_sgemm_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc);
void lmf_sgemm_avx2(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc);
void lmf_sgemm_avx512(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc);
void lmf_sgemm_bf16_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc);
void lmf_sgemm_bf16x3_ref(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                          int ldb, float beta, float *C, int ldc);
void lmf_sgemm_bf16_avx512(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                           int ldb, float beta, float *C, int ldc);
void lmf_sgemm_bf16_avx2(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                         int ldb, float beta, float *C, int ldc);
/* the single-threaded variants of lmf_sgemm_bf16_x (bias: only the AMX one starts its tiles from it, the others
 * take NULL and lmf_sgemm_bf16_x adds it after them), and the two roundings (vcvtneps2bf16's, the reference's) */
void lmf_sgemm_bf16_x_ref(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                          const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc);
void lmf_sgemm_bf16_x_avx512(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                             const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc);
void lmf_sgemm_bf16_x_avx2(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                           const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc);
void lmf_sgemm_bf16_x_amx(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                          const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc);
void lmf_bf16_round_ref(uint16_t *dst, const float *src, long n);
void lmf_bf16_round_avx512(uint16_t *dst, const float *src, long n);
void lmf_bf16_round_avx2(uint16_t *dst, const float *src, long n); /* the reference's rounding, in AVX2 */
#define LMF_SGEMM_AMX_MC 1024 /* rows of op(A) per packed block (gemm_amx.c); gemm.c's split weighs packing by it */
void lmf_sgemm_bf16_amx(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc);
void lmf_sgemm_bf16_amx_bias(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                             int ldb, const float *bias, float *C, int ldc);
void lmf_sgemm_bf16x3_amx(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                          int ldb, float beta, float *C, int ldc);
double lmf_bf16_rate_avx512(void);
double lmf_bf16_rate_amx(void);
double lmf_fma_rate_avx512(void); /* FP32 products per second of one core's vfmadd231ps */

#endif
