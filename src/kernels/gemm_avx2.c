/* gemm_avx2.c — single-threaded blocked SGEMM with an AVX2 6x16 micro-kernel (see gemm.h).
 *
 * Loop nest (GotoBLAS/BLIS style, like gemm_avx512.c but simpler): for each block of NB columns and each depth
 * block of kc <= KC, op(B) is packed as 16-wide kc x 16 panels (kept in L2); then for each 6 rows op(A) is packed
 * as one kc x 6 panel (kept in L1) and run against every B panel. The micro-kernel holds a 6x16 tile of C in 12
 * ymm accumulators, one broadcast of A and two loads of B per k. Panels are zero-padded; edge tiles are computed
 * in full and written back through a small buffer. Packing is plain C (the transposing
 * case is scalar), which is cheap next to the kc*NB*6*2 flops each A panel feeds.
 *
 * The bf16 products (lmf_sgemm_bf16 on a CPU without AVX-512 BF16 or AMX) are the same loop over panels whose
 * values are rounded to bf16 (to nearest even, as lmf_f32_to_bf16) or widened from bf16 inputs: a product of two
 * bf16 values is exact in fp32, so each FMA adds exactly what the reference adds. No faster than lmf_sgemm (hence
 * never chosen by --precision auto), but a bf16 run (asked for, or resumed from a machine with the hardware) keeps
 * the fp32 kernel's speed instead of the scalar reference's. */
#include "kernels/gemm.h"
#include "core/alloc.h"
#include "core/status.h"
#include "kernels/quant.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define MR 6
#define NR 16
#define KC 384
#define NB 960

/* ---- per-thread pack buffers (allocated once per thread at full size, freed at thread exit) ----------------- */

#define BUF_FLOATS ((size_t)KC * NB + (size_t)KC * MR + 64)

static float *buf_get(void) { return lmf_thread_scratch(BUF_FLOATS * sizeof(float)); }

/* ---- packing ------------------------------------------------------------------------------------------------ */

/* Element i of a row of bf16 values, widened to the float it stands for (the packing reads floats or these). */
static inline float widen(const void *src, long i) {
    uint32_t u = (uint32_t)((const uint16_t *)src)[i] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* dst[k*W + r] = src[k*ld + r] for r < w, 0 for w <= r < W (src: floats, or bf16 values if b16). */
static void pack_cont(float *restrict dst, const void *restrict src, int b16, long ld, int w, int W, int kc) {
    for (int k = 0; k < kc; k++, dst += W) {
        int r = 0;
        if (b16)
            for (; r < w; r++) dst[r] = widen(src, (long)k * ld + r);
        else
            for (; r < w; r++) dst[r] = ((const float *)src)[(long)k * ld + r];
        for (; r < W; r++) dst[r] = 0.0f;
    }
}

/* dst[k*W + r] = src[r*ld + k] for r < w, 0 for w <= r < W. */
static void pack_trans(float *restrict dst, const void *restrict src, int b16, long ld, int w, int W, int kc) {
    for (int r = 0; r < W; r++) {
        long s = (long)r * ld;
        if (r >= w)
            for (int k = 0; k < kc; k++) dst[(long)k * W + r] = 0.0f;
        else if (b16)
            for (int k = 0; k < kc; k++) dst[(long)k * W + r] = widen(src, s + k);
        else
            for (int k = 0; k < kc; k++) dst[(long)k * W + r] = ((const float *)src)[s + k];
    }
}

/* Eight floats' bits rounded to bf16 as lmf_f32_to_bf16 rounds (to nearest even, a NaN made quiet), in the high
 * halves, the low halves zero. */
static inline __m256i round8(__m256i u) {
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                                     _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1))));
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x400000)), nan);
    return _mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u));
}

/* Round n floats to bf16 in place, kept as floats. */
static void round_bf16(float *p, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_si256((__m256i *)(p + i), round8(_mm256_loadu_si256((const __m256i *)(p + i))));
    for (; i < n; i++) {
        uint32_t u = (uint32_t)lmf_f32_to_bf16(p[i]) << 16;
        memcpy(p + i, &u, sizeof u);
    }
}

/* As gemm_avx512.c's pack_a with this file's MR: each ISA file is compiled alone, with its own tile sizes. bf16:
 * fp32 values rounded to bf16 (an operand given in bf16, a16, is already). */
static void pack_a(float *ap, int transA, const void *A, int a16, long lda, int i0, int p0, int w, int kc, int bf16) {
    size_t e = a16 ? sizeof(uint16_t) : sizeof(float);
    if (transA) pack_cont(ap, (const char *)A + e * ((size_t)p0 * lda + i0), a16, lda, w, MR, kc);
    else pack_trans(ap, (const char *)A + e * ((size_t)i0 * lda + p0), a16, lda, w, MR, kc);
    if (bf16 && !a16) round_bf16(ap, (long)kc * MR);
}

static void pack_b(float *bp, int transB, const void *B, int b16, long ldb, int n0, int p0, int nb, int kc, int bf16) {
    size_t e = b16 ? sizeof(uint16_t) : sizeof(float);
    for (int j = 0; j < nb; j += NR, bp += (long)kc * NR) {
        int w = nb - j < NR ? nb - j : NR;
        if (transB) pack_trans(bp, (const char *)B + e * ((size_t)(n0 + j) * ldb + p0), b16, ldb, w, NR, kc);
        else pack_cont(bp, (const char *)B + e * ((size_t)p0 * ldb + n0 + j), b16, ldb, w, NR, kc);
        if (bf16 && !b16) round_bf16(bp, (long)kc * NR);
    }
}

/* ---- micro-kernel ------------------------------------------------------------------------------------------- */

/* C[0:mr, 0:nr] = beta * C + a * b, a a kc x 6 panel, b a kc x 16 panel (beta == 0: C not read). */
static void kernel_6x16(int kc, const float *restrict a, const float *restrict b, float *restrict c, long ldc,
                        float beta, int mr, int nr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define ROW(i, ci0, ci1)                                                                                           \
    do {                                                                                                           \
        __m256 av = _mm256_broadcast_ss(a + i);                                                                    \
        ci0 = _mm256_fmadd_ps(av, b0, ci0);                                                                        \
        ci1 = _mm256_fmadd_ps(av, b1, ci1);                                                                        \
    } while (0)
#define STEP()                                                                                                     \
    do {                                                                                                           \
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);                                                 \
        ROW(0, c00, c01); ROW(1, c10, c11); ROW(2, c20, c21);                                                      \
        ROW(3, c30, c31); ROW(4, c40, c41); ROW(5, c50, c51);                                                      \
        a += MR;                                                                                                   \
        b += NR;                                                                                                   \
    } while (0)
    int k = kc;
    for (; k >= 4; k -= 4) {
        _mm_prefetch((const char *)(b + 16 * NR), _MM_HINT_T0);
        STEP(); STEP(); STEP(); STEP();
    }
    for (; k > 0; k--) STEP();
#undef STEP
#undef ROW

    if (mr == MR && nr == NR) {
#define OUT(i, ci0, ci1)                                                                                           \
    do {                                                                                                           \
        float *cr = c + (long)(i) * ldc;                                                                           \
        if (beta == 0.0f) {                                                                                        \
        } else if (beta == 1.0f) {                                                                                 \
            ci0 = _mm256_add_ps(ci0, _mm256_loadu_ps(cr));                                                         \
            ci1 = _mm256_add_ps(ci1, _mm256_loadu_ps(cr + 8));                                                     \
        } else {                                                                                                   \
            ci0 = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(cr), ci0);                                 \
            ci1 = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(cr + 8), ci1);                             \
        }                                                                                                          \
        _mm256_storeu_ps(cr, ci0);                                                                                 \
        _mm256_storeu_ps(cr + 8, ci1);                                                                             \
    } while (0)
        OUT(0, c00, c01); OUT(1, c10, c11); OUT(2, c20, c21);
        OUT(3, c30, c31); OUT(4, c40, c41); OUT(5, c50, c51);
#undef OUT
        return;
    }
    float t[MR * NR];
    _mm256_storeu_ps(t + 0 * NR, c00), _mm256_storeu_ps(t + 0 * NR + 8, c01);
    _mm256_storeu_ps(t + 1 * NR, c10), _mm256_storeu_ps(t + 1 * NR + 8, c11);
    _mm256_storeu_ps(t + 2 * NR, c20), _mm256_storeu_ps(t + 2 * NR + 8, c21);
    _mm256_storeu_ps(t + 3 * NR, c30), _mm256_storeu_ps(t + 3 * NR + 8, c31);
    _mm256_storeu_ps(t + 4 * NR, c40), _mm256_storeu_ps(t + 4 * NR + 8, c41);
    _mm256_storeu_ps(t + 5 * NR, c50), _mm256_storeu_ps(t + 5 * NR + 8, c51);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *cp = c + (long)i * ldc + j;
            *cp = beta == 0.0f ? t[i * NR + j] : beta * *cp + t[i * NR + j];
        }
}

/* ---- driver ------------------------------------------------------------------------------------------------- */

/* C = beta C + op(A) op(B); bf16: the operands' values rounded to bf16 (A / B given in bf16 where a16 / b16). */
static void gemm(int bf16, int transA, int transB, int M, int N, int K, const void *A, int a16, int lda, const void *B,
                 int b16, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
        return;
    }
    float *bp = buf_get(), *ap = bp + (size_t)KC * NB;
    int nk = (K + KC - 1) / KC;
    int kcb = (K + nk - 1) / nk;
    for (int n0 = 0; n0 < N; n0 += NB) {
        int nb = N - n0 < NB ? N - n0 : NB;
        for (int p0 = 0; p0 < K; p0 += kcb) {
            int kc = K - p0 < kcb ? K - p0 : kcb;
            float bt = p0 == 0 ? beta : 1.0f;
            pack_b(bp, transB, B, b16, ldb, n0, p0, nb, kc, bf16);
            for (int i0 = 0; i0 < M; i0 += MR) {
                int mr = M - i0 < MR ? M - i0 : MR;
                pack_a(ap, transA, A, a16, lda, i0, p0, mr, kc, bf16);
                float *c = C + (long)i0 * ldc + n0;
                for (int j = 0; j < nb; j += NR)
                    kernel_6x16(kc, ap, bp + (long)j * kc, c + j, ldc, bt, mr, nb - j < NR ? nb - j : NR);
            }
        }
    }
}

void lmf_sgemm_avx2(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc) {
    gemm(0, transA, transB, M, N, K, A, 0, lda, B, 0, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16_avx2(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                         int ldb, float beta, float *C, int ldc) {
    gemm(1, transA, transB, M, N, K, A, 0, lda, B, 0, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16_x_avx2(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                           const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc) {
    LMF_CHECK(!bias); /* lmf_sgemm_bf16_x adds the bias */
    gemm(1, transA, transB, M, N, K, A, a16, lda, B, b16, ldb, beta, C, ldc);
}

/* lmf_f32_to_bf16 on n floats, eight at a time */
void lmf_bf16_round_avx2(uint16_t *dst, const float *src, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_srli_epi32(round8(_mm256_loadu_si256((const __m256i *)(src + i))), 16);
        __m128i lo = _mm256_castsi256_si128(u), hi = _mm256_extracti128_si256(u, 1);
        _mm_storeu_si128((__m128i *)(dst + i), _mm_packus_epi32(lo, hi));
    }
    lmf_bf16_round_ref(dst + i, src + i, n - i);
}
