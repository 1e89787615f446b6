/* gemm_amx.c — lmf_sgemm_bf16 (and lmf_sgemm_bf16x3) on Intel AMX-BF16 tiles (see gemm.h): inputs rounded to bf16
 * (nearest even) as they are packed, products summed in fp32 by tdpbf16ps, single-threaded (gemm.c spreads the work
 * over threads).
 *
 * A tile is 16 rows of 64 bytes. tdpbf16ps C += A B takes A as 16 rows of C by 32 bf16 along k, B as 16 rows of
 * k-pairs by 16 columns (each 32-bit element holds k = 2p in its low half and 2p + 1 in its high half), and C as
 * 16 x 16 fp32: 16 x 16 x 32 products per instruction. The micro-kernel holds a 32 x 32 block of C in four tiles
 * (tmm0-3), loads two A tiles (tmm4-5) and two B tiles (tmm6-7) per 32 k, and issues four tdpbf16ps.
 *
 *   for p0 in K step kc (kc <= KC, a multiple of 32 but in the last block)
 *     [pack op(B)[p0:+kc, :] whole when it is at most WHOLE_B and M takes several A blocks; then no B packing below]
 *     for m0 in M step MC
 *       pack op(A)[m0:+MC, p0:+kc] -> ap     32-row panels of ceil(kc/32) steps x 2 tiles (4 MiB at most)
 *       for n0 in N step NB
 *         pack op(B)[p0:+kc, n0:+NB] -> bp   32-column panels likewise (1 MiB)
 *         for each 32-row panel of ap (48 KiB: mostly in L1 while the column panels stream from L2)
 *           for each 32-column panel of bp
 *             C[32 x 32] = (p0 == 0 ? beta C : C) + a_panel b_panel
 *
 * Packing absorbs both transposes: a row of op(A) (or a column of op(B)) contiguous in memory converts 32 floats
 * into the 16 pairs of a tile row directly; a strided one pairs two rows of k lane by lane, and a 16 x 16 transpose
 * of the 32-bit pairs turns one layout into the other. Edges are zero-padded to whole tiles (zero products add
 * nothing), so the kernel always runs full tiles; at C's edges (and for beta other than 0 or 1) the tiles go
 * through a 32 x 32 staging block, elsewhere they are loaded from and stored to C directly; either way the tiles
 * start from C's values, so a result does not depend on where an element falls.
 *
 * Operands given in bf16 (lmf_sgemm_bf16_x: activations training keeps rounded) are packed by copying their pairs,
 * without conversion.
 *
 * lmf_sgemm_bf16x3_amx is the same loop nest on split operands (gemm.h): a depth step of a panel holds the HI tiles
 * then the LO tiles, the depth blocks are half as deep (the same packed bytes), and the micro-kernel adds each
 * element's three products hi.hi, hi.lo, lo.hi in that order at every step.
 *
 * Linux hands out the tile state only after arch_prctl(ARCH_REQ_XCOMP_PERM) (core/cpu.c asks once); each call
 * loads the tile configuration on its thread, which is cheap, since a thread may have run other tile code. */
#include "kernels/gemm.h"
#include "core/status.h"
#include "kernels/amx_tiles.h"
#include "core/alloc.h"
#include "core/progress.h"
#include "kernels/transpose16.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define KC 2048 /* depth block: one for K up to 2048 (GPT-2's layers, a weight gradient over 2048 tokens), so C is
                   * stored once there: C traffic, not the A panel's L1 misses (at this depth 128 KiB, in L2), is what
                   * longer blocks save: 5% on a GPT-2 T256 step from 512 to 768, 3.5% more at 2048 (1 thread; the
                   * small model's step 2%) */
#define MC LMF_SGEMM_AMX_MC /* rows per A block: MC x KC bf16 = 4 MiB */
#define NB 256  /* columns per B block: NB x KC bf16 = 1 MiB */
/* 32-bit elements in a 32-row/column panel of depth kc (split: HI and LO tiles, twice as many) */
#define PANEL(kc, split) ((long)(((kc) + 31) / 32) * 2 * 256 * ((split) + 1))
#define WHOLE_B (2 << 20) /* bytes: op(B) packed whole per depth block when M takes several A blocks (below) */


static inline __mmask16 lanes(int n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* What a packed element holds of its float x: HI = bf16(x) (nearest even), LO = bf16(x - HI), the part HI missed;
 * HI + LO carries 16 of x's 24 significand bits (the split products, lmf_sgemm_bf16x3_amx). */
enum { HI, LO };
static inline __m512 part_of(__m512 x, int part) {
    if (part == HI) return x;
    __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x));
    return _mm512_sub_ps(x, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
}

/* 32 floats contiguous along k (n of them real, the rest read as zero) as 16 bf16 pairs: pair p = (k 2p, k 2p+1). */
static inline __m512i pairs_contiguous(const float *src, int n, int part) {
    __m512 lo = _mm512_maskz_loadu_ps(lanes(n), src), hi = _mm512_maskz_loadu_ps(lanes(n - 16), src + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(part_of(hi, part), part_of(lo, part));
}

/* Two rows of k (k and k + 1, w lanes real; hi == NULL past the depth) as 16 pairs, lane by lane. */
static inline __m512i pairs_of_rows(const float *lo, const float *hi, int w, int part) {
    static const uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                            8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    __mmask16 m = lanes(w);
    __m512 l = _mm512_maskz_loadu_ps(m, lo), h = hi ? _mm512_maskz_loadu_ps(m, hi) : _mm512_setzero_ps();
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(interleave),
                                    (__m512i)_mm512_cvtne2ps_pbh(part_of(h, part), part_of(l, part)));
}

/* One 16 x 16 tile of pairs at depth d0 (a multiple of 32) of a panel whose 16 lines (rows of op(A), or columns of
 * op(B)) start at src, w of them real, kc deep. `along_k`: a line is contiguous in memory (stride ld between
 * lines); else lines are lanes of memory rows that follow k (stride ld between k). `line_major`: the tile holds
 * line i in its row i (an A tile); else k-pair p in row p (a B tile). */
static void pack_tile(uint32_t *dst, const float *src, long ld, int w, int kc, int d0, int along_k, int line_major,
                      int part) {
    __m512i r[16];
    int n = kc - d0 < 32 ? kc - d0 : 32;
    if (along_k) {
        for (int i = 0; i < 16; i++)
            r[i] = i < w ? pairs_contiguous(src + i * ld + d0, n, part) : _mm512_setzero_si512();
    } else {
        for (int p = 0; p < 16; p++) {
            int k = d0 + 2 * p;
            r[p] = k < kc ? pairs_of_rows(src + k * ld, k + 1 < kc ? src + (k + 1) * ld : NULL, w, part)
                          : _mm512_setzero_si512();
        }
    }
    if (along_k != line_major) transpose16((__m512 *)r); /* contiguous lines: line-major rows; lane pairs: pair-major */
    for (int i = 0; i < 16; i++) _mm512_store_si512(dst + i * 16, r[i]);
}

/* A 32-line panel, kc deep: ceil(kc/32) steps of two tiles (lines 0-15, 16-31), each 256 elements; split: each
 * step holds the two HI tiles, then the two LO tiles. */
static void pack_panel(uint32_t *dst, const float *src, long ld_line, long ld_k, int w, int kc, int along_k,
                       int line_major, int split) {
    long ld = along_k ? ld_line : ld_k;
    for (int d0 = 0; d0 < kc; d0 += 32) {
        /* the next step's 32 x 32 floats: 32 strided pieces of 128 bytes, which the hardware prefetchers (within a
         * 4 KiB page, one stride) do not fetch ahead when the stride is most of a page; 46% of packing was spent
         * waiting for them */
        if (d0 + 32 < kc) {
            int n = kc - d0 - 32 < 32 ? kc - d0 - 32 : 32;
            if (along_k)
                for (int i = 0; i < w && i < 32; i++) {
                    const float *q = src + i * ld_line + d0 + 32;
                    _mm_prefetch((const char *)q, _MM_HINT_T0);
                    if (n > 16) _mm_prefetch((const char *)(q + 16), _MM_HINT_T0);
                }
            else
                for (int k = 0; k < n; k++) {
                    const float *q = src + (long)(d0 + 32 + k) * ld_k;
                    _mm_prefetch((const char *)q, _MM_HINT_T0);
                    if (w > 16) _mm_prefetch((const char *)(q + 16), _MM_HINT_T0);
                }
        }
        for (int part = HI; part <= (split ? LO : HI); part++)
            for (int t = 0; t < 2; t++, dst += 256)
                pack_tile(dst, src + 16 * t * ld_line, ld, w - 16 * t, kc, d0, along_k, line_major, part);
    }
}

/* pack_panel for lines contiguous along k given in bf16 (rows of op(A) = A, or columns of op(B) = B^T; ld elements
 * apart, w of the panel's 32 real): a line's 32 values are already 16 pairs, the row pairs_contiguous makes from
 * their fp32 values, and line_major as pack_tile's (B tiles: transposed to pair-major) */
static void pack_panel_16(uint32_t *dst, const uint16_t *src, long ld, int w, int kc, int line_major) {
    for (int d0 = 0; d0 < kc; d0 += 32) {
        __mmask32 m = kc - d0 >= 32 ? 0xffffffffu : (1u << (kc - d0)) - 1;
        for (int i = 0; d0 + 32 < kc && i < w && i < 32; i++) /* the next step's lines, as pack_panel */
            _mm_prefetch((const char *)(src + i * ld + d0 + 32), _MM_HINT_T0);
        for (int t = 0; t < 2; t++, dst += 256) {
            __m512i r[16];
            for (int i = 0, l = 16 * t; i < 16; i++, l++)
                r[i] = l < w ? _mm512_maskz_loadu_epi16(m, src + l * ld + d0) : _mm512_setzero_si512();
            if (!line_major) transpose16((__m512 *)r);
            for (int i = 0; i < 16; i++) _mm512_store_si512(dst + i * 16, r[i]);
        }
    }
}

/* pack_panel for op(B) = B given in bf16, for all the panels of n columns at once (rows of k ld_k elements apart;
 * panels PANEL(kc, 0) apart): the tiles pairs_of_rows makes from the fp32 values these were rounded from, with
 * nothing left to round. Row after row rather than panel after panel: a panel alone takes 64 bytes from each of kc
 * rows a few KiB apart, which the hardware prefetchers do not follow (a weight gradient's packing waited on them). */
static void pack_panels_b16(uint32_t *dst, const uint16_t *src, long ld_k, int n, int kc) {
    long panel = PANEL(kc, 0);
    for (int k = 0; k < kc; k += 2) {
        const uint16_t *lo = src + (long)k * ld_k;
        uint32_t *d = dst + (k / 32) * 512 + (k % 32) / 2 * 16; /* row p = (k mod 32) / 2 of the step's tiles */
        for (int j = 0; j < n; j += 32, d += panel) {
            __mmask32 m = n - j >= 32 ? 0xffffffffu : (1u << (n - j)) - 1;
            __m512i l = _mm512_maskz_loadu_epi16(m, lo + j);
            __m512i h = k + 1 < kc ? _mm512_maskz_loadu_epi16(m, lo + ld_k + j) : _mm512_setzero_si512(), p0, p1;
            lmf_pair_rows(l, h, &p0, &p1);
            _mm512_store_si512(d, p0);
            _mm512_store_si512(d + 256, p1);
        }
    }
    for (int k = (kc + 1) / 2 * 2; k % 32; k += 2) /* the last step's rows past the depth: zero */
        for (int j = 0; j < n; j += 32) {
            uint32_t *d = dst + j / 32 * panel + (k / 32) * 512 + (k % 32) / 2 * 16;
            _mm512_store_si512(d, _mm512_setzero_si512());
            _mm512_store_si512(d + 256, _mm512_setzero_si512());
        }
}

/* C's four tiles (tmm0-3) += the 2 x 2 products of A's tiles a, a + 256 (rows 0-15, 16-31) and B's b, b + 256 */
#define PRODUCTS_2X2(a, b)                                                                                             \
    do {                                                                                                               \
        _tile_loadd(4, (a), 64);                                                                                       \
        _tile_loadd(6, (b), 64);                                                                                       \
        _tile_dpbf16ps(0, 4, 6);                                                                                       \
        _tile_loadd(7, (b) + 256, 64);                                                                                 \
        _tile_dpbf16ps(1, 4, 7);                                                                                       \
        _tile_loadd(5, (a) + 256, 64);                                                                                 \
        _tile_dpbf16ps(2, 5, 6);                                                                                       \
        _tile_dpbf16ps(3, 5, 7);                                                                                       \
    } while (0)

/* C[32 x 32] at c (row stride ldc; mr x nr of it real) = (first ? beta C : C) + the panels' product, or with a bias
 * (the block's 32 columns of it; beta 0) first ? bias + product : C + product. The tiles start
 * from C's block (beta C, or zero for beta 0 on the first depth block) and the products are added to them: whole
 * blocks load and store C in place, edge blocks (and beta other than 0 or 1) through a zero-padded 32 x 32 copy, so
 * an element's sums do not depend on where the block boundaries fall (threads and ranks cut C differently). */
static void kernel_32x32(int steps, const uint32_t *a, const uint32_t *b, float *c, long ldc, int mr, int nr,
                         float beta, const float *bias, int first, const float *cn, int cn_rows, int split) {
    int whole = mr == 32 && nr == 32 && (!first || beta == 0.0f || beta == 1.0f);
    float acc[32 * 32] __attribute__((aligned(64)));
    float *t = c;
    long ldt = ldc;
    if (first && bias) { /* C = bias + products (beta 0): every tile row starts as the block's bias columns */
        if (!whole)
            for (int i = 0; i < 32; i++)
                for (int j = 0; j < 32; j += 16)
                    _mm512_store_ps(acc + i * 32 + j, _mm512_maskz_loadu_ps(lanes(nr - j), bias + j));
        t = whole ? (float *)bias : acc;
        _tile_loadd(0, t, whole ? 0 : 128); /* stride 0: the one bias row in all 16 tile rows */
        _tile_loadd(1, t + 16, whole ? 0 : 128);
        _tile_loadd(2, t, whole ? 0 : 128);
        _tile_loadd(3, t + 16, whole ? 0 : 128);
        t = c;
    } else if (first && beta == 0.0f) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else {
        if (!whole) {
            __m512 bv = _mm512_set1_ps(first ? beta : 1.0f);
            for (int i = 0; i < 32; i++)
                for (int j = 0; j < 32; j += 16) {
                    __m512 v = _mm512_setzero_ps();
                    if (i < mr) v = _mm512_mul_ps(bv, _mm512_maskz_loadu_ps(lanes(nr - j), c + i * ldc + j));
                    _mm512_store_ps(acc + i * 32 + j, v);
                }
            t = acc, ldt = 32;
        }
        _tile_loadd(0, t, ldt * 4);
        _tile_loadd(1, t + 16, ldt * 4);
        _tile_loadd(2, t + 16 * ldt, ldt * 4);
        _tile_loadd(3, t + 16 * ldt + 16, ldt * 4);
    }
    /* the next block of C, fetched for writing while this one computes: its 64 lines would otherwise come from
     * memory inside the tile loads and stores, which stall the tiles (C of most products is past L2) */
    int lines = cn ? 2 * cn_rows : 0, per = (lines + steps - 1) / steps, l = 0;
    for (int s = 0; s < steps; s++, a += 512 << split, b += 512 << split) {
        for (int e = l + per; l < e && l < lines; l++)
            _mm_prefetch((const char *)(cn + (l >> 1) * ldc + (l & 1) * 16), _MM_HINT_ET0);
        PRODUCTS_2X2(a, b);
        if (!split) continue;
        /* A's HI tiles (still in tmm4-5) times B's LO tiles, then A's LO tiles times B's HI ones again: ten tile
         * loads for twelve products, each element's three products added in this order at every step */
        _tile_loadd(6, b + 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
        _tile_loadd(7, b + 768, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
        PRODUCTS_2X2(a + 512, b);
    }
    if (!whole) t = acc, ldt = 32;
    _tile_stored(0, t, ldt * 4);
    _tile_stored(1, t + 16, ldt * 4);
    _tile_stored(2, t + 16 * ldt, ldt * 4);
    _tile_stored(3, t + 16 * ldt + 16, ldt * 4);
    if (whole) return;
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j += 16)
            _mm512_mask_storeu_ps(c + i * ldc + j, lanes(nr - j), _mm512_load_ps(acc + i * 32 + j));
}

/* A16: op(A) = A in bf16 (transA 0), B16: B in bf16, packed by pack_panel_16 / pack_panels_b16 instead of pack_panel
 * (split 0) */
static void sgemm_amx(int split, int transA, int transB, int M, int N, int K, const float *A, const uint16_t *A16,
                      int lda, const float *B, const uint16_t *B16, int ldb, float beta, const float *bias, float *C,
                      int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(long)i * ldc + j] = bias ? bias[j] : beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
        return;
    }
    int kcmax = KC >> split, nk = (K + kcmax - 1) / kcmax; /* split: the same packed bytes per block */
    int kcb = ((K + nk - 1) / nk + 31) / 32 * 32; /* even depth blocks of whole tiles: 1025 gives 544 + 481 */
    int nmb = (M + MC - 1) / MC, mcb = ((M + nmb - 1) / nmb + 31) / 32 * 32;
    /* Several A blocks (a weight gradient's M = output features: 3 for GPT-2's fc, 50 for its head) would pack the
     * same op(B) block once for each; when op(B) of a depth block is small (N = the input features), it is packed
     * whole once and the A blocks share it */
    long npan = (N + 31) / 32;
    int whole_b = nmb > 1 && npan * PANEL(kcb, split) * 4 <= WHOLE_B;
    size_t bfloats = whole_b ? (size_t)npan * PANEL(kcb, split) : (size_t)NB * KC / 2;
    uint32_t *ap = lmf_thread_scratch(((size_t)MC * KC / 2 + bfloats) * 4), *bp = ap + (size_t)MC * KC / 2;
    lmf_tiles_configure_full();
    for (int p0 = 0; p0 < K; p0 += kcb) {
        int kc = K - p0 < kcb ? K - p0 : kcb, steps = (kc + 31) / 32;
        int first = p0 == 0;
        if (whole_b && B16 && !transB) pack_panels_b16(bp, B16 + (long)p0 * ldb, ldb, N, kc);
        for (int j = 0; whole_b && j < N; j += 32) /* op(B) column j is B's row (transB 1) or column */
            if (B16 && transB) pack_panel_16(bp + j / 32 * PANEL(kc, 0), B16 + (long)j * ldb + p0, ldb, N - j, kc, 0);
            else if (!B16)
                pack_panel(bp + j / 32 * PANEL(kc, split), transB ? B + (long)j * ldb + p0 : B + (long)p0 * ldb + j,
                           transB ? ldb : 1, transB ? 1 : ldb, N - j, kc, transB, 0, split);
        for (int m0 = 0; m0 < M; m0 += mcb) {
            int mb = M - m0 < mcb ? M - m0 : mcb;
            for (int i = 0; i < mb; i += 32) { /* op(A) row i is A's row (transA 0) or column: contiguous in k */
                if (A16) {
                    pack_panel_16(ap + i / 32 * PANEL(kc, 0), A16 + (long)(m0 + i) * lda + p0, lda, mb - i, kc, 1);
                    continue;
                }
                const float *a = transA ? A + (long)p0 * lda + m0 + i : A + (long)(m0 + i) * lda + p0;
                pack_panel(ap + i / 32 * PANEL(kc, split), a, transA ? 1 : lda, transA ? lda : 1, mb - i, kc,
                           !transA, 1, split);
            }
            for (int n0 = 0; n0 < N; n0 += NB) {
                int nb = N - n0 < NB ? N - n0 : NB;
                if (!whole_b && B16 && !transB) pack_panels_b16(bp, B16 + (long)p0 * ldb + n0, ldb, nb, kc);
                for (int j = 0; !whole_b && B16 && transB && j < nb; j += 32)
                    pack_panel_16(bp + j / 32 * PANEL(kc, 0), B16 + (long)(n0 + j) * ldb + p0, ldb, nb - j, kc, 0);
                for (int j = 0; !whole_b && !B16 && j < nb; j += 32) {
                    const float *b = transB ? B + (long)(n0 + j) * ldb + p0 : B + (long)p0 * ldb + n0 + j;
                    pack_panel(bp + j / 32 * PANEL(kc, split), b, transB ? ldb : 1, transB ? 1 : ldb, nb - j, kc,
                               transB, 0, split);
                }
                const uint32_t *bb = whole_b ? bp + n0 / 32 * PANEL(kc, split) : bp;
                for (int i = 0; i < mb; i += 32)
                    for (int j = 0; j < nb; j += 32) {
                        int ni = j + 32 < nb ? i : i + 32, nj = j + 32 < nb ? j + 32 : 0; /* the next block */
                        float *c = C + (long)(m0 + i) * ldc + n0 + j;
                        kernel_32x32(steps, ap + i / 32 * PANEL(kc, split), bb + j / 32 * PANEL(kc, split), c, ldc,
                                     mb - i < 32 ? mb - i : 32, nb - j < 32 ? nb - j : 32, beta,
                                     bias ? bias + n0 + j : NULL, first,
                                     ni < mb ? C + (long)(m0 + ni) * ldc + n0 + nj : NULL,
                                     mb - ni < 32 ? mb - ni : 32, split);
                    }
            }
        }
    }
}

void lmf_sgemm_bf16_amx(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc) {
    sgemm_amx(0, transA, transB, M, N, K, A, NULL, lda, B, NULL, ldb, beta, NULL, C, ldc);
}

void lmf_sgemm_bf16_amx_bias(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                             int ldb, const float *bias, float *C, int ldc) {
    sgemm_amx(0, transA, transB, M, N, K, A, NULL, lda, B, NULL, ldb, 0.0f, bias, C, ldc);
}

void lmf_sgemm_bf16x3_amx(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                          int ldb, float beta, float *C, int ldc) {
    sgemm_amx(1, transA, transB, M, N, K, A, NULL, lda, B, NULL, ldb, beta, NULL, C, ldc);
}

void lmf_sgemm_bf16_x_amx(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                          const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc) {
    LMF_CHECK(!a16 || !transA); /* A in bf16 is op(A) itself */
    sgemm_amx(0, transA, transB, M, N, K, a16 ? NULL : A, a16 ? A : NULL, lda, b16 ? NULL : B, b16 ? B : NULL, ldb,
              beta, bias, C, ldc);
}

/* Products per second of tdpbf16ps against vfmadd231ps on this core (4 independent tile accumulators; the best of
 * three short tries, ~1 ms in all): 14.6-14.9x on the Xeon (family 6 model 167) measured. */
double lmf_bf16_rate_amx(void) {
    static uint16_t ones[16 * 32] __attribute__((aligned(64)));
    for (int i = 0; i < 16 * 32; i++) ones[i] = 0x3f80;
    lmf_tiles_configure_full();
    _tile_loadd(4, ones, 64);
    _tile_loadd(6, ones, 64);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        double t0 = lmf_now();
        for (int i = 0; i < 1000; i++) {
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 6);
            _tile_dpbf16ps(2, 4, 6);
            _tile_dpbf16ps(3, 4, 6);
        }
        double t = lmf_now() - t0;
        best = t < best ? t : best;
    }
    _tile_release();
    double amx = 4000.0 * 16 * 16 * 32 / best;
    return amx / lmf_fma_rate_avx512();
}
