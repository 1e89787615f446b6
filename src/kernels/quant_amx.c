/* quant_amx.c — lmf_qmatvec_r16 for several input columns on Intel AMX-INT8 tiles, bit for bit the AVX-512 R16
 * kernel's result (quant.h).
 *
 * Why it can be exact: per 32-element block the AVX-512 kernel forms the integer dot product of the int16
 * activation with the weights (exact in int32), converts it to float and adds it to the row's sum with one FMA by
 * d_w d_x, block after block. The tiles multiply bytes only, so each int16 activation q is taken as its two bytes,
 * lo = q & 255 (unsigned) and hi = q >> 8 (signed): q w = 256 (hi w) + lo w, and two tile products give the two
 * int32 block sums exactly (|sum| <= 32 x 32767 x 128 < 2^31). Those then go through the AVX-512 kernel's float
 * operations in the same order, so a sequence's logits do not depend on how many others share the decode step
 * (serve/engine.h promises batch invariance; test_quant holds this kernel to it bit for bit).
 *
 * Why it pays: with one column decode is bound by memory and the AVX-512 kernel is kept; with C columns the weights
 * are reused C times and the AVX-512 kernel is bound by vpdpwssd (32 products per instruction, ~20 instructions per
 * block, row group and column). Here a block of a 16-row group against 16 columns is two tile products, and what is
 * left per column is the float epilogue (~5 instructions).
 *
 * Layouts (no activation copy): a little-endian int16 is (lo, hi) in memory, so a block's 32 activations are 64
 * bytes lo0 hi0 lo1 hi1 ... and tile 0 loads them as they are, one column a tile row (stride: the column stride);
 * tile 1 loads the same bytes one byte later (hi0 lo1 hi1 lo2 ...). The B tile (2) holds each weight at the even
 * byte of a 16-bit lane and zero at the odd one: B row r, bytes 4j..4j+3 = (w_j[2r], 0, w_j[2r+1], 0) for weight
 * row j. Then tile 0 x B sums lo w and tile 1 x B sums hi w, the other bytes meeting zeros. That B row is exactly
 * the AVX-512 kernel's widened pair vector: Q8_0's chunk r zero-extended byte to word (the byte pattern of a signed
 * weight kept), Q4's nibble word shifted and masked with 0x000F000F. Signedness per product: Q8_0 lo x w
 * tdpbusd, hi x w tdpbssd; Q4 (unsigned nibbles) tdpbuud and tdpbsud. C tiles 3 (lo sums) and 4 (hi sums):
 * columns x rows, stored and read back by the epilogue; tiles 7 (B), 5 and 6 (C) do the same for a second group
 * against the same A tiles. The shifted load would read one byte past the last block of the last column, so that
 * block's tile-1 rows come from a copy.
 *
 * What bounds it (docs/benchmarks.md, session 16): ~120-130 G multiply-adds/s a core against the AVX-512 kernel's
 * ~95; the tile products alone ran at ~290. Every block has its own scales, so its sums must leave the tiles (two
 * tile stores) and pass through a conversion and an FMA per column and group: that epilogue is the rest. */
#include "kernels/quant.h"

#include "core/dtype.h"
#include "kernels/amx_tiles.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* A and C tiles: one row a column; B tiles (2, 7): 16 rows */
static void tiles_configure(int cols) {
    uint8_t c = (uint8_t)cols, rows[8] = {c, c, 16, c, c, c, c, 16};
    static const uint16_t colsb[8] = {64, 64, 64, 64, 64, 64, 64, 64};
    lmf_tiles_configure(rows, colsb);
}

/* One block group's weights as the 16 B rows (1 KiB at dst). */
static inline void stage_weights(int K, const uint8_t *g, uint8_t *dst) {
    if (K == LMF_GGML_Q8_0) {
        for (int r = 0; r < 16; r++)
            _mm512_store_si512(dst + 64 * r, _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(g + 32 + 32 * r))));
        return;
    }
    const __m512i m4 = _mm512_set1_epi32(0x000F000F);
    const uint8_t *q = g + (K == LMF_GGML_Q4_1 ? 64 : 32);
    for (int ch = 0; ch < 4; ch++) { /* pairs 4ch + i: the AVX-512 kernel's w0..w3 */
        __m512i v = _mm512_loadu_si512(q + 64 * ch);
        for (int i = 0; i < 4; i++)
            _mm512_store_si512(dst + 64 * (4 * ch + i), _mm512_and_si512(_mm512_srli_epi32(v, 4 * i), m4));
    }
}

/* ng (1 or 2) 16-row groups at G[] against cb <= 16 columns: y[s][c * ldy + j] for j < 16. xc[c]: column c's
 * blocks; last_hi: the last block's tile-1 rows (cb x 64 bytes). Two groups keep two independent chains of tile
 * operations in flight (a block's zero, products and stores of one C pair follow each other). */
static inline void groups(const int K, const int NG, int nb, int gbs, const uint8_t *const *G, int cb,
                          const lmf_block_q16a *const *xc, size_t xb, const uint8_t *last_hi, float *const *y, int ldy) {
    uint8_t bst[2][1024] __attribute__((aligned(64)));
    int32_t cs[2][2][16 * 16] __attribute__((aligned(64))); /* [group][lo, hi] */
    float acc[2][16 * 16] __attribute__((aligned(64)));
    memset(acc, 0, sizeof acc);
    for (int b = 0; b < nb; b++) {
        const uint8_t *g[2];
        for (int s = 0; s < NG; s++) {
            g[s] = G[s] + (size_t)b * gbs;
            for (int l = 0; l < gbs; l += 64) _mm_prefetch((const char *)g[s] + LMF_R16_PREFETCH + l, _MM_HINT_T0);
            stage_weights(K, g[s], bst[s]);
        }
        const uint8_t *a = (const uint8_t *)xc[0][b].qs;
        _tile_loadd(0, a, (long)xb);
        if (b + 1 < nb) _tile_loadd(1, a + 1, (long)xb);
        else _tile_loadd(1, last_hi, 64);
        _tile_loadd(2, bst[0], 64);
        _tile_zero(3);
        _tile_zero(4);
        if (NG == 2) {
            _tile_loadd(7, bst[1], 64);
            _tile_zero(5);
            _tile_zero(6);
        }
        if (K == LMF_GGML_Q8_0) {
            _tile_dpbusd(3, 0, 2);
            _tile_dpbssd(4, 1, 2);
            if (NG == 2) {
                _tile_dpbusd(5, 0, 7);
                _tile_dpbssd(6, 1, 7);
            }
        } else {
            _tile_dpbuud(3, 0, 2);
            _tile_dpbsud(4, 1, 2);
            if (NG == 2) {
                _tile_dpbuud(5, 0, 7);
                _tile_dpbsud(6, 1, 7);
            }
        }
        _tile_stored(3, cs[0][0], 64);
        _tile_stored(4, cs[0][1], 64);
        if (NG == 2) {
            _tile_stored(5, cs[1][0], 64);
            _tile_stored(6, cs[1][1], 64);
        }
        for (int s = 0; s < NG; s++) {
            __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g[s]));
            for (int c = 0; c < cb; c++) {
                __m512i lo = _mm512_load_si512(cs[s][0] + 16 * c), hi = _mm512_load_si512(cs[s][1] + 16 * c);
                __m512 dot = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo));
                float *ac = acc[s] + 16 * c;
                _mm512_store_ps(ac, _mm512_fmadd_ps(dot, _mm512_mul_ps(dw, _mm512_set1_ps(xc[c][b].d)), _mm512_load_ps(ac)));
            }
        }
    }
    for (int s = 0; s < NG; s++) {
        if (K == LMF_GGML_Q8_0) {
            for (int c = 0; c < cb; c++) _mm512_storeu_ps(y[s] + (size_t)c * ldy, _mm512_load_ps(acc[s] + 16 * c));
            continue;
        }
        /* the min / offset term, a chain of its own in the AVX-512 kernel: the same FMAs, block by block */
        __m512 acc2[16];
        for (int c = 0; c < 16; c++) acc2[c] = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *g = G[s] + (size_t)b * gbs;
            __m512 mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + (K == LMF_GGML_Q4_1 ? 32 : 0))));
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++)
                if (c < cb) acc2[c] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xc[c][b].s), acc2[c]);
        }
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++)
            if (c < cb) {
                __m512 a = _mm512_load_ps(acc[s] + 16 * c);
                __m512 r = K == LMF_GGML_Q4_1 ? _mm512_add_ps(a, acc2[c]) : _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), acc2[c], a);
                _mm512_storeu_ps(y[s] + (size_t)c * ldy, r);
            }
    }
}

/* Groups in runs of about RUN_BYTES (an even count), every column chunk over a run before the next: many columns (a
 * prefill) then read a run's weights from L2 once per 16 columns instead of from memory. */
#define RUN_BYTES (256 << 10)

static void r16_amx(const int K, int n, int nrows, const void *W, int ncols, const void *x, size_t xb, float *y,
                    int ldy) {
    const int nb = n / LMF_QK, gbs = 16 * (K == LMF_GGML_Q8_0 ? 34 : K == LMF_GGML_Q4_0 ? 18 : 20);
    const int ngroups = nrows / 16, run = (int)(RUN_BYTES / ((size_t)nb * gbs)) / 2 * 2 + 2;
    uint8_t last_hi[16 * 64] __attribute__((aligned(64)));
    int configured = 0;
    for (int r0 = 0; r0 < ngroups; r0 += run) {
        int r1 = ngroups - r0 < run ? ngroups : r0 + run;
        for (int c0 = 0; c0 < ncols; c0 += 16) {
            int cb = ncols - c0 < 16 ? ncols - c0 : 16;
            const lmf_block_q16a *xc[16];
            for (int c = 0; c < cb; c++) {
                xc[c] = (const lmf_block_q16a *)((const char *)x + (size_t)(c0 + c) * xb);
                const uint8_t *q = (const uint8_t *)xc[c][nb - 1].qs;
                memcpy(last_hi + 64 * c, q + 1, 63);
                last_hi[64 * c + 63] = 0;
            }
            if (configured != cb) tiles_configure(cb), configured = cb;
            for (int g = r0; g < r1; g += 2) {
                const uint8_t *G[2] = {(const uint8_t *)W + (size_t)g * nb * gbs,
                                       (const uint8_t *)W + (size_t)(g + 1) * nb * gbs};
                float *yg[2] = {y + (size_t)c0 * ldy + 16 * g, y + (size_t)c0 * ldy + 16 * (g + 1)};
                if (g + 1 < r1) groups(K, 2, nb, gbs, G, cb, xc, xb, last_hi, yg, ldy);
                else groups(K, 1, nb, gbs, G, cb, xc, xb, last_hi, yg, ldy);
            }
        }
    }
    _tile_release();
}

void lmf_qmatvec_r16_amx(uint32_t type, int n, int nrows, const void *W, size_t row_bytes, int ncols, const void *x,
                         size_t x_col_bytes, float *y, int ldy) {
    (void)row_bytes;
    if (nrows <= 0 || ncols <= 0) return;
    switch (type) {
    case LMF_GGML_Q8_0: r16_amx(LMF_GGML_Q8_0, n, nrows, W, ncols, x, x_col_bytes, y, ldy); break;
    case LMF_GGML_Q4_0: r16_amx(LMF_GGML_Q4_0, n, nrows, W, ncols, x, x_col_bytes, y, ldy); break;
    default: r16_amx(LMF_GGML_Q4_1, n, nrows, W, ncols, x, x_col_bytes, y, ldy); break;
    }
}
