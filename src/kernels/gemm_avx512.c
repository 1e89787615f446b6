/* gemm_avx512.c — single-threaded blocked SGEMM with an AVX-512 14x32 micro-kernel (see gemm.h).
 *
 * Structure (GotoBLAS/BLIS style, written for row-major C so vectors run along N):
 *
 *   for m0 in M step MC                          row block
 *     for p0 in K step kc (kc <= KC)             depth block (K split evenly, so no sliver blocks)
 *       pack op(A)[m0:+MC, p0:+kc]      -> ap   MC/14 panels of kc x 14 (each 21 KB: L1-sized)
 *       for n0 in N step NB                      column block
 *         pack op(B)[p0:+kc, n0:+NB]    -> bp   NB/32 panels of kc x 32 (1.2 MB in all: stays in L2)
 *         for each 14-row panel of ap            (loaded into L1 once, then reused NB/32 times)
 *           for each 32-column panel of bp       (streamed from L2)
 *             C[14 x 32] = (p0 == 0 ? beta C : C) + ap_panel * bp_panel      micro-kernel
 *
 * Packing absorbs both transposes, so one micro-kernel serves all four transA/transB cases. Panels are
 * zero-padded to 14 rows / 32 columns; the micro-kernel always computes the full tile and only its stores are
 * masked (columns) or skipped (rows) at the edges. Transposing packs (op(A) from row-major A, op(B) from
 * transposed B) go through 16x16 in-register transposes.
 *
 * Pack buffers are per thread, allocated once at their maximum size (2.7 MB, rounded up to 4 MB of huge pages
 * where the kernel allows) and freed at thread exit: never a malloc per call. */
#include "kernels/gemm.h"
#include "core/status.h"
#include "core/alloc.h"
#include "core/progress.h"
#include "kernels/transpose16.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define MR 14  /* rows of C per micro-tile: 14 broadcasts of A per k */
#define NR 32  /* columns of C per micro-tile: two zmm of B per k; 28 zmm accumulators */
/* Block sizes (overridable with -D for tuning): */
#ifndef KC
#define KC 384 /* depth block: an A panel (KC*MR*4 = 21 KB) stays in L1 */
#endif
#ifndef NB
#define NB 768  /* columns per B block: KC*NB*4 = 1.2 MB, kept in L2 (a multiple of NR) */
#endif
#ifndef MC
#define MC 1008 /* rows per A block: MC*KC*4 = 1.5 MB, streamed from L2/L3 one 14-row panel at a time */
#endif
/* The k loop prefetches the B panel 1 KB (8 steps) ahead. */
#define PF_INSN "prefetcht0 1024(%[b])\n\t" "prefetcht0 1088(%[b])\n\t"

/* ---- per-thread pack buffers -------------------------------------------------------------------------------- */

#define BUF_FLOATS ((size_t)KC * NB + (size_t)KC * MC + (size_t)KC * NR + 64) /* B block, A block, bf16 staging */

static float *buf_get(void) { return lmf_thread_scratch(BUF_FLOATS * sizeof(float)); }

/* ---- packing ------------------------------------------------------------------------------------------------ */

static inline __mmask16 lanes(int n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* dst[k*W + r] = src[k*ld + r] for r < w, 0 for w <= r < W (W = 14 or 32): rows of the panel contiguous in src. */
static void pack_cont(float *dst, const float *src, long ld, int w, int W, int kc) {
    __mmask16 m0 = lanes(w), m1 = lanes(w - 16);
    if (W == 32) {
        for (int k = 0; k < kc; k++, src += ld, dst += 32) {
            _mm_prefetch((const char *)(src + 8 * ld), _MM_HINT_T0); /* strided rows: beyond the HW prefetcher */
            _mm_prefetch((const char *)(src + 8 * ld + 31), _MM_HINT_T0);
            _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m0, src));
            _mm512_store_ps(dst + 16, _mm512_maskz_loadu_ps(m1, src + 16));
        }
    } else { /* W == 14: rows of 56 bytes, so masked unaligned stores */
        for (int k = 0; k < kc; k++, src += ld, dst += W) {
            _mm_prefetch((const char *)(src + 8 * ld), _MM_HINT_T0);
            _mm_prefetch((const char *)(src + 8 * ld + 13), _MM_HINT_T0);
            _mm512_mask_storeu_ps(dst, 0x3fff, _mm512_maskz_loadu_ps(m0 & 0x3fff, src));
        }
    }
}

/* dst[k*W + r] = src[r*ld + k] for r < w, 0 for w <= r < W: rows of the panel strided in src (a transpose).
 * Works on 16x16 blocks; full blocks take a fixed-size path so the 16 rows stay in registers. */
static void pack_trans(float *dst, const float *src, long ld, int w, int W, int kc) {
    for (int g = 0; g < W; g += 16) {
        int rows = w - g < 0 ? 0 : w - g > 16 ? 16 : w - g;
        __mmask16 out = lanes(W - g); /* 16 lanes, or 14 for the last group of an A panel */
        const float *s = src + (long)g * ld;
        int k0 = 0;
        if (rows == 16 || rows == 14) { /* full B group, or a full A panel */
            for (; k0 + 16 <= kc; k0 += 16) {
                __m512 r[16];
                const float *p = s + k0;
                for (int i = 0; i < 14; i++) r[i] = _mm512_loadu_ps(p + i * ld);
                for (int i = 0; i < 14; i++) _mm_prefetch((const char *)(p + i * ld + 64), _MM_HINT_T0);
                r[14] = r[15] = _mm512_setzero_ps();
                if (rows == 16) {
                    r[14] = _mm512_loadu_ps(p + 14 * ld), r[15] = _mm512_loadu_ps(p + 15 * ld);
                    _mm_prefetch((const char *)(p + 14 * ld + 64), _MM_HINT_T0);
                    _mm_prefetch((const char *)(p + 15 * ld + 64), _MM_HINT_T0);
                }
                transpose16(r);
                float *d = dst + (long)k0 * W + g;
                for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(d + j * W, out, r[j]);
            }
        }
        for (; k0 < kc; k0 += 16) { /* partial blocks: rows beyond w read as zero, k beyond kc not stored */
            int kn = kc - k0 < 16 ? kc - k0 : 16;
            __mmask16 km = lanes(kn);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < rows ? _mm512_maskz_loadu_ps(km, s + (long)i * ld + k0) : _mm512_setzero_ps();
            transpose16(r);
            for (int j = 0; j < kn; j++) _mm512_mask_storeu_ps(dst + (long)(k0 + j) * W + g, out, r[j]);
        }
    }
}

/* Pack op(A)[i0:i0+w, p0:p0+kc] (op(A) is M x K) as one kc x 14 panel. */
static void pack_a(float *ap, int transA, const float *A, long lda, int i0, int p0, int w, int kc) {
    if (transA) pack_cont(ap, A + (long)p0 * lda + i0, lda, w, MR, kc);
    else pack_trans(ap, A + (long)i0 * lda + p0, lda, w, MR, kc);
}

/* Pack op(B)[p0:p0+kc, n0:n0+nb] (op(B) is K x N) as ceil(nb/32) panels of kc x 32. */
static void pack_b(float *bp, int transB, const float *B, long ldb, int n0, int p0, int nb, int kc) {
    for (int j = 0; j < nb; j += NR, bp += (long)kc * NR) {
        int w = nb - j < NR ? nb - j : NR;
        if (transB) pack_trans(bp, B + (long)(n0 + j) * ldb + p0, ldb, w, NR, kc);
        else pack_cont(bp, B + (long)p0 * ldb + n0 + j, ldb, w, NR, kc);
    }
}

/* A kc x W panel of floats as ceil(kc/2) x W bf16 pairs, rounded to nearest even: dst[p*W + r] holds the values
 * of k = 2p in its low half and k = 2p + 1 (0 past kc) in its high half, the operand layout of vdpbf16ps. */
__attribute__((target("avx512bf16"))) static void to_pairs(float *dst, const float *src, int W, int kc) {
    __m256i zero = (__m256i)_mm512_cvtneps_pbh(_mm512_setzero_ps());
    for (int p = 0; 2 * p < kc; p++) {
        const float *lo = src + (long)2 * p * W, *hi = lo + W;
        for (int r = 0; r < W; r += 16) {
            __mmask16 m = lanes(W - r);
            __m256i l = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, lo + r));
            __m256i h = 2 * p + 1 < kc ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, hi + r)) : zero;
            __m512i v = _mm512_or_si512(_mm512_cvtepu16_epi32(l), _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            _mm512_mask_storeu_epi32(dst + (long)p * W + r, m, v);
        }
    }
}

/* pack_trans from bf16 rows (a 14-row A panel, transA 0, or a 32-column B panel, transB 1): each value widened to
 * the fp32 it stands for, which to_pairs then rounds to itself */
static void pack_trans_b16(float *dst, const uint16_t *src, long ld, int w, int W, int kc) {
    for (int g = 0; g < W; g += 16) {
        int rows = w - g < 0 ? 0 : w - g > 16 ? 16 : w - g;
        const uint16_t *s = src + (long)g * ld;
        for (int k0 = 0; k0 < kc; k0 += 16) {
            int kn = kc - k0 < 16 ? kc - k0 : 16;
            __mmask16 km = lanes(kn);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < rows ? _mm512_castsi512_ps(_mm512_slli_epi32(
                                      _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(km, s + (long)i * ld + k0)), 16))
                                : _mm512_setzero_ps();
            transpose16(r);
            for (int j = 0; j < kn; j++) _mm512_mask_storeu_ps(dst + (long)(k0 + j) * W + g, lanes(W - g), r[j]);
        }
    }
}

/* A kc x 32 panel of pairs straight from bf16 rows (op(B) = B given in bf16, w of its 32 columns real, rows ld
 * elements apart): the same panel to_pairs makes from their fp32 values, without rounding anything. */
static void pairs_b16(float *dst, const uint16_t *src, long ld, int w, int kc) {
    for (int p = 0; 2 * p < kc; p++, dst += NR) {
        const uint16_t *lo = src + (long)2 * p * ld, *hi = 2 * p + 1 < kc ? lo + ld : NULL;
        _mm_prefetch((const char *)(lo + 8 * ld), _MM_HINT_T0); /* strided rows: beyond the HW prefetcher */
        _mm_prefetch((const char *)(lo + 9 * ld), _MM_HINT_T0);
        for (int r = 0; r < NR; r += 16) {
            __mmask16 m = lanes(w - r);
            __m512i l = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, lo + r));
            __m512i h = hi ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, hi + r)) : _mm512_setzero_si512();
            _mm512_store_si512(dst + r, _mm512_or_si512(l, _mm512_slli_epi32(h, 16)));
        }
    }
}

/* ---- micro-kernel ------------------------------------------------------------------------------------------- */

/* The k loop, in inline assembly because compilers spill some of the 28 accumulators (zmm0-27). Per k: two
 * loads of b (zmm28-29), then for each of the 14 rows one broadcast of a (alternating zmm30/31) and two FMAs:
 * 16 loads per 28 FMAs. The finished tile goes to t[14][32] (64-byte aligned), merged into C by the caller.
 * The bf16 loop is the same with a pair of k per step: a 32-bit broadcast of a row's two bf16 values and
 * vdpbf16ps (each lane adds two products, twice the work of an FMA), over panels of the same byte layout. */
#define KROW_OP(bcast, op, i, r0, r1, bc)                                                                          \
    bcast " " #i "*4(%[a]), %%zmm" #bc "\n\t"                                                                      \
    op " %%zmm28, %%zmm" #bc ", %%zmm" #r0 "\n\t"                                                                  \
    op " %%zmm29, %%zmm" #bc ", %%zmm" #r1 "\n\t"
#define KSTORE(i, r0, r1) "vmovaps %%zmm" #r0 ", " #i "*128(%[t])\n\t" "vmovaps %%zmm" #r1 ", " #i "*128+64(%[t])\n\t"
#define KERNEL_LOOP(name, BC, OP)                                                                                  \
    static void name(long kc, const void *a, const void *b, float *t) {                                        \
    __asm__ volatile( \
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t" \
        "vmovaps %%zmm0, %%zmm1\n\t" "vmovaps %%zmm0, %%zmm2\n\t" "vmovaps %%zmm0, %%zmm3\n\t" \
        "vmovaps %%zmm0, %%zmm4\n\t" "vmovaps %%zmm0, %%zmm5\n\t" "vmovaps %%zmm0, %%zmm6\n\t" \
        "vmovaps %%zmm0, %%zmm7\n\t" "vmovaps %%zmm0, %%zmm8\n\t" "vmovaps %%zmm0, %%zmm9\n\t" \
        "vmovaps %%zmm0, %%zmm10\n\t" "vmovaps %%zmm0, %%zmm11\n\t" "vmovaps %%zmm0, %%zmm12\n\t" \
        "vmovaps %%zmm0, %%zmm13\n\t" "vmovaps %%zmm0, %%zmm14\n\t" "vmovaps %%zmm0, %%zmm15\n\t" \
        "vmovaps %%zmm0, %%zmm16\n\t" "vmovaps %%zmm0, %%zmm17\n\t" "vmovaps %%zmm0, %%zmm18\n\t" \
        "vmovaps %%zmm0, %%zmm19\n\t" "vmovaps %%zmm0, %%zmm20\n\t" "vmovaps %%zmm0, %%zmm21\n\t" \
        "vmovaps %%zmm0, %%zmm22\n\t" "vmovaps %%zmm0, %%zmm23\n\t" "vmovaps %%zmm0, %%zmm24\n\t" \
        "vmovaps %%zmm0, %%zmm25\n\t" "vmovaps %%zmm0, %%zmm26\n\t" "vmovaps %%zmm0, %%zmm27\n\t" \
        "1:\n\t" \
        "vmovaps (%[b]), %%zmm28\n\t" \
        "vmovaps 64(%[b]), %%zmm29\n\t" \
        PF_INSN \
        KROW_OP(BC, OP, 0, 0, 1, 30) KROW_OP(BC, OP, 1, 2, 3, 31) KROW_OP(BC, OP, 2, 4, 5, 30) \
        KROW_OP(BC, OP, 3, 6, 7, 31) KROW_OP(BC, OP, 4, 8, 9, 30) KROW_OP(BC, OP, 5, 10, 11, 31) \
        KROW_OP(BC, OP, 6, 12, 13, 30) KROW_OP(BC, OP, 7, 14, 15, 31) KROW_OP(BC, OP, 8, 16, 17, 30) \
        KROW_OP(BC, OP, 9, 18, 19, 31) KROW_OP(BC, OP, 10, 20, 21, 30) KROW_OP(BC, OP, 11, 22, 23, 31) \
        KROW_OP(BC, OP, 12, 24, 25, 30) KROW_OP(BC, OP, 13, 26, 27, 31) \
        "add $56, %[a]\n\t" \
        "add $128, %[b]\n\t" \
        "dec %[k]\n\t" \
        "jnz 1b\n\t" \
        KSTORE(0, 0, 1) KSTORE(1, 2, 3) KSTORE(2, 4, 5) KSTORE(3, 6, 7) KSTORE(4, 8, 9) KSTORE(5, 10, 11) \
        KSTORE(6, 12, 13) KSTORE(7, 14, 15) KSTORE(8, 16, 17) KSTORE(9, 18, 19) KSTORE(10, 20, 21) \
        KSTORE(11, 22, 23) KSTORE(12, 24, 25) KSTORE(13, 26, 27) \
        : [a] "+r"(a), [b] "+r"(b), [k] "+r"(kc) \
        : [t] "r"(t) \
        : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
          "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", \
          "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31"); \
}
KERNEL_LOOP(kernel_loop, "vbroadcastss", "vfmadd231ps")
KERNEL_LOOP(kernel_loop_bf16, "vpbroadcastd", "vdpbf16ps")
#undef KROW_OP
#undef KSTORE
#undef KERNEL_LOOP

/* C[0:mr, 0:nr] = beta * C + a * b, where a is a kc x 14 panel and b a kc x 32 panel (kc >= 1; beta == 0: C is
 * not read); bf16: kc pairs of k in panels of bf16 pairs (to_pairs). */
static void kernel_14x32(int kc, const float *restrict a, const float *restrict b, float *restrict c, long ldc,
                         float beta, int mr, int nr, int bf16) {
    _Alignas(64) float t[MR * NR];
    /* the next tile to the right: fetch its C rows while this one computes (prefetches never fault) */
    for (int i = 0; i < mr; i++) _mm_prefetch((const char *)(c + i * ldc + NR), _MM_HINT_T0),
                                 _mm_prefetch((const char *)(c + i * ldc + NR + 31), _MM_HINT_T0);
    if (bf16) kernel_loop_bf16(kc, a, b, t);
    else kernel_loop(kc, a, b, t);
    __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
    if (beta == 0.0f) {
        for (int i = 0; i < mr; i++) {
            _mm512_mask_storeu_ps(c + i * ldc, m0, _mm512_load_ps(t + i * NR));
            _mm512_mask_storeu_ps(c + i * ldc + 16, m1, _mm512_load_ps(t + i * NR + 16));
        }
    } else if (beta == 1.0f) {
        for (int i = 0; i < mr; i++) {
            float *cr = c + i * ldc;
            _mm512_mask_storeu_ps(cr, m0, _mm512_add_ps(_mm512_load_ps(t + i * NR), _mm512_maskz_loadu_ps(m0, cr)));
            _mm512_mask_storeu_ps(cr + 16, m1,
                                  _mm512_add_ps(_mm512_load_ps(t + i * NR + 16), _mm512_maskz_loadu_ps(m1, cr + 16)));
        }
    } else {
        __m512 bv = _mm512_set1_ps(beta);
        for (int i = 0; i < mr; i++) {
            float *cr = c + i * ldc;
            __m512 c0 = _mm512_maskz_loadu_ps(m0, cr), c1 = _mm512_maskz_loadu_ps(m1, cr + 16);
            _mm512_mask_storeu_ps(cr, m0, _mm512_fmadd_ps(bv, c0, _mm512_load_ps(t + i * NR)));
            _mm512_mask_storeu_ps(cr + 16, m1, _mm512_fmadd_ps(bv, c1, _mm512_load_ps(t + i * NR + 16)));
        }
    }
}

/* ---- driver ------------------------------------------------------------------------------------------------- */

static void scale_c(int M, int N, float beta, float *C, long ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

/* bf16: op(A) and op(B) rounded to bf16 as they are packed (staged as fp32 panels, then paired), products summed in
 * fp32 by vdpbf16ps; the blocking is the fp32 one, a panel holding kc / 2 pairs. */
static void gemm(int bf16, int transA, int transB, int M, int N, int K, const float *A, const uint16_t *A16, int lda,
                 const float *B, const uint16_t *B16, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    float *bp = buf_get(), *ap = bp + (size_t)KC * NB, *stage = ap + (size_t)KC * MC;
    int nk = (K + KC - 1) / KC;
    int kcb = (K + nk - 1) / nk; /* even depth blocks: K = 400 gives 200 + 200, not 384 + 16 */
    if (bf16 && nk > 1) kcb += kcb & 1; /* whole pairs in every block but the last */
    /* even row blocks (M = 1024 gives one block, not 1008 + 16): every row block repacks all of op(B) */
    int nmb = (M + MC - 1) / MC, mcb = ((M + nmb - 1) / nmb + MR - 1) / MR * MR;
    for (int m0 = 0; m0 < M; m0 += mcb) {
        int mb = M - m0 < mcb ? M - m0 : mcb;
        for (int p0 = 0; p0 < K; p0 += kcb) {
            int kc = K - p0 < kcb ? K - p0 : kcb, kk = bf16 ? (kc + 1) / 2 : kc; /* panel depth in 4-byte units */
            float bt = p0 == 0 ? beta : 1.0f;
            for (int i = 0; i < mb; i += MR) { /* op(A) block packed once, used by every column block */
                float *dst = ap + (long)i * kk;
                if (A16)
                    pack_trans_b16(stage, A16 + (long)(m0 + i) * lda + p0, lda, mb - i < MR ? mb - i : MR, MR, kc);
                else pack_a(bf16 ? stage : dst, transA, A, lda, m0 + i, p0, mb - i < MR ? mb - i : MR, kc);
                if (bf16) to_pairs(dst, stage, MR, kc);
            }
            for (int n0 = 0; n0 < N; n0 += NB) {
                int nb = N - n0 < NB ? N - n0 : NB;
                if (!bf16) pack_b(bp, transB, B, ldb, n0, p0, nb, kc);
                else if (B16 && !transB)
                    for (int j = 0; j < nb; j += NR)
                        pairs_b16(bp + (long)j * kk, B16 + (long)p0 * ldb + n0 + j, ldb, nb - j < NR ? nb - j : NR, kc);
                else if (B16)
                    for (int j = 0; j < nb; j += NR) {
                        pack_trans_b16(stage, B16 + (long)(n0 + j) * ldb + p0, ldb, nb - j < NR ? nb - j : NR, NR, kc);
                        to_pairs(bp + (long)j * kk, stage, NR, kc);
                    }
                else
                    for (int j = 0; j < nb; j += NR) {
                        pack_b(stage, transB, B, ldb, n0 + j, p0, nb - j < NR ? nb - j : NR, kc);
                        to_pairs(bp + (long)j * kk, stage, NR, kc);
                    }
                for (int i = 0; i < mb; i += MR) {
                    int mr = mb - i < MR ? mb - i : MR;
                    float *c = C + (long)(m0 + i) * ldc + n0;
                    const float *a = ap + (long)i * kk;
                    for (int j = 0; j < nb; j += NR)
                        kernel_14x32(kk, a, bp + (long)j * kk, c + j, ldc, bt, mr, nb - j < NR ? nb - j : NR, bf16);
                }
            }
        }
    }
}

void lmf_sgemm_avx512(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc) {
    gemm(0, transA, transB, M, N, K, A, NULL, lda, B, NULL, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16_avx512(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                           int ldb, float beta, float *C, int ldc) {
    gemm(1, transA, transB, M, N, K, A, NULL, lda, B, NULL, ldb, beta, C, ldc);
}

void lmf_sgemm_bf16_x_avx512(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                             const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc) {
    LMF_CHECK(!bias && (!a16 || !transA)); /* lmf_sgemm_bf16_x adds the bias; A in bf16 is op(A) itself */
    gemm(1, transA, transB, M, N, K, a16 ? NULL : A, a16 ? A : NULL, lda, b16 ? NULL : B, b16 ? B : NULL, ldb, beta, C,
         ldc);
}

/* vcvtneps2bf16, as to_pairs and the AMX packing round */
__attribute__((target("avx512bf16"))) void lmf_bf16_round_avx512(uint16_t *dst, const float *src, long n) {
    for (long i = 0; i < n; i += 16) {
        __mmask16 m = lanes(n - i > 16 ? 16 : (int)(n - i));
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
    }
}

/* Products per second of vfmadd231ps (lmf_fma_rate_avx512), and of vdpbf16ps against it, on this core, from short
 * loops of 12 independent accumulators (~1 ms together; the best of three tries each). AVX512_BF16 doubles the FP32 rate on some cores
 * (AMD Zen 4 / 5) and halves it on others (Intel Xeon family 6 model 207 runs vdpbf16ps at a quarter of the FMA
 * instruction rate): only a measurement tells. */
#define RATE_LOOP(OP)                                                                                              \
    __asm__ volatile("mov $20000, %%rcx\n\t"                                                                       \
                     "1:\n\t" OP " %%zmm28, %%zmm29, %%zmm0\n\t" OP " %%zmm28, %%zmm29, %%zmm1\n\t"              \
                     OP " %%zmm28, %%zmm29, %%zmm2\n\t" OP " %%zmm28, %%zmm29, %%zmm3\n\t"                         \
                     OP " %%zmm28, %%zmm29, %%zmm4\n\t" OP " %%zmm28, %%zmm29, %%zmm5\n\t"                         \
                     OP " %%zmm28, %%zmm29, %%zmm6\n\t" OP " %%zmm28, %%zmm29, %%zmm7\n\t"                         \
                     OP " %%zmm28, %%zmm29, %%zmm8\n\t" OP " %%zmm28, %%zmm29, %%zmm9\n\t"                         \
                     OP " %%zmm28, %%zmm29, %%zmm10\n\t" OP " %%zmm28, %%zmm29, %%zmm11\n\t"                       \
                     "dec %%rcx\n\t"                                                                              \
                     "jnz 1b\n\t"                                                                                 \
                     :                                                                                            \
                     :                                                                                            \
                     : "rcx", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
                       "xmm10", "xmm11")
/* Seconds of the loop of 240,000 OP instructions, the best of three tries. */
#define BEST_OF_3(OP)                                                                                              \
    ({                                                                                                             \
        double best = 1e30;                                                                                        \
        for (int r = 0; r < 3; r++) {                                                                              \
            double t0 = lmf_now();                                                                                 \
            RATE_LOOP(OP);                                                                                         \
            double t = lmf_now() - t0;                                                                             \
            best = t < best ? t : best;                                                                            \
        }                                                                                                          \
        best;                                                                                                      \
    })
double lmf_fma_rate_avx512(void) {
    __asm__ volatile("vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29" ::: "xmm28", "xmm29");
    return 240000.0 * 16 / BEST_OF_3("vfmadd231ps");
}

double lmf_bf16_rate_avx512(void) {
    __asm__ volatile("vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29" ::: "xmm28", "xmm29");
    double dp = 240000.0 * 32 / BEST_OF_3("vdpbf16ps"); /* two products per lane per instruction */
    return dp / lmf_fma_rate_avx512();
}
#undef BEST_OF_3
#undef RATE_LOOP
