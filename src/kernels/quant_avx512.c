/* quant_avx512.c — AVX-512 + VNNI quantized kernels (see quant.h for the contract, quant_ref.c for the definitions).
 * Needs AVX-512 F/BW/VL/DQ, AVX512_VNNI and F16C; lmf_quant_variant() dispatches it only where all are present.
 *
 * Integer blocks, int16 activations (the default): see qtile16 and qtile16_q4x4 below.
 *
 * Integer blocks, int8 activations (Q8_0, Q4_0, Q4_1 against lmf_block_q8a, LMF_QACT=int8). One 32-element block
 * is one ymm of bytes and one vpdpbusd (u8 x s8, four products per int32 lane) gives its eight partial sums exactly.
 * Per block and row the
 * work is kept to ~4 vector uops, because at ~36 GB/s one core must retire a Q4 block every ~1.7 cycles:
 *  - Q4: vbroadcasti128 puts the 16 nibble bytes in both halves (a pure load) and one AND keeps the low nibbles in
 *    the low half and the high nibbles, unshifted, in the high half. The high half's sums are thus 16x too large,
 *    consistently over the whole row, so the accumulator's high four lanes are divided by 16 once at the end
 *    (exact: a power of two). The activation needs no rearranging: q8a's qs[0..15] pair with the low nibbles.
 *  - Q8_0 is s8 x s8: the weight is made unsigned by XOR 0x80 (w + 128) and the surplus 128 * sum(x) is removed by
 *    starting vpdpbusd's accumulator at -128 * sum(x) lanes, computed once per activation block and shared by all
 *    rows of the tile. Q4_0's "- 8" is removed the same way (-8 sum(x) low, -128 sum(x) high).
 *  - Scales are handled 16 blocks at a time: the products d_w d_x are formed first and stored to a small stack
 *    array, and each block's FMA takes its scale by an embedded broadcast from that array (a load, not a shuffle).
 *    Q4_1 fetches a row's 16 scales and mins with one gather (its min term m_w s_x is then one FMA per 16 blocks);
 *    Q8_0 / Q4_0 convert their one half per block with scalar F16C, which measured faster than the (microcoded)
 *    gather. Each group prefetches the weights two groups ahead, for matrices that come from memory.
 * Tiles: with one column four rows are streamed together (their accumulators are independent, so the FMA latency
 * is hidden, and the activation block and its correction are loaded once for four rows); with more columns one row
 * meets up to four columns per weight block.
 *
 * Float weights (F32/F16/BF16 against fp32 columns): 16 elements per zmm, four rows or four columns per pass, a
 * masked tail; F16 widens with vcvtph2ps, BF16 with a zero-extend and a 16-bit shift. */
#include "kernels/quant.h"

#include "core/alloc.h"
#include "core/dtype.h"

#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

enum { K_Q8_0, K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q4_K, K_Q5_K, K_Q6_K, K_Q2_K, K_Q3_K, K_IQ4_NL, K_IQ4_XS };

/* the bit unpacking of Q5_x and the K-quants (dequantization, and the K-quant kernels' scales) */
#include "kernels/quant_dequant.inc"

AI float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* the int32 at byte offsets base + stride * k (k < cnt; zero beyond) */
AI __m512i gather_u32(const void *base, int stride, int cnt) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i idx = _mm512_mullo_epi32(iota, _mm512_set1_epi32(stride));
    __mmask16 m = cnt >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cnt) - 1u);
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base, 1);
}
AI __m512 half_lo(__m512i g) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g)); }
AI __m512 half_hi(__m512i g) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16))); }

/* One tile: RB rows x CB columns over the whole row. K: the weight kind. */
AI void qtile(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
              const lmf_block_q8a *const *xc, float *y, int ldy) {
    const int bsz = K == K_Q8_0 ? 34 : K == K_Q4_0 ? 18 : 20, qoff = K == K_Q8_0 ? 2 : K == K_Q4_0 ? 2 : 4;
    __m256 acc[4][4];
    __m512 macc[4][4];
    float sc[4][4][16] __attribute__((aligned(64)));
    float mscal[4][4] = {{0}};
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps(), macc[r][c] = _mm512_setzero_ps();
    const __m256i nib = _mm256_setr_epi64x(0x0f0f0f0f0f0f0f0fll, 0x0f0f0f0f0f0f0f0fll, (long long)0xf0f0f0f0f0f0f0f0ull,
                                           (long long)0xf0f0f0f0f0f0f0f0ull);
    const __m256i corrw = K == K_Q8_0 ? _mm256_set1_epi8((char)128)
                                      : _mm256_setr_epi64x(0x0808080808080808ll, 0x0808080808080808ll,
                                                           (long long)0x8080808080808080ull,
                                                           (long long)0x8080808080808080ull);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int b0 = 0; b0 < nb; b0 += 16) {
        int cnt = nb - b0 < 16 ? nb - b0 : 16;
        __m512 dx[4], sx[4];
        /* Q4_1: one gather brings a row's 16 scales and mins; Q8_0 / Q4_0 (one half each) measured faster with
         * scalar conversions than with a gather (gathers are microcoded on recent Intel parts) */
        const int gather = K == K_Q4_1;
        for (int c = 0; c < CB && gather; c++) {
            dx[c] = _mm512_castsi512_ps(gather_u32(&xc[c][b0].d, (int)sizeof(lmf_block_q8a), cnt));
            if (K == K_Q4_1) sx[c] = _mm512_castsi512_ps(gather_u32(&xc[c][b0].s, (int)sizeof(lmf_block_q8a), cnt));
        }
        for (int r = 0; r < RB && !gather; r++) {
            const uint8_t *wr = W + (size_t)r * rb + (size_t)b0 * bsz;
            for (int k = 0; k < cnt; k++) {
                uint16_t h; memcpy(&h, wr + (size_t)k * bsz, 2);
                float dw = _cvtsh_ss(h);
                for (int c = 0; c < CB; c++) sc[r][c][k] = dw * xc[c][b0 + k].d;
                if (K == K_Q4_1) {
                    memcpy(&h, wr + (size_t)k * bsz + 2, 2);
                    float mw = _cvtsh_ss(h);
                    for (int c = 0; c < CB; c++) mscal[r][c] += mw * xc[c][b0 + k].s;
                }
            }
        }
        for (int r = 0; r < RB && gather; r++) {
            __m512i g = gather_u32(W + (size_t)r * rb + (size_t)b0 * bsz, bsz, cnt);
            __m512 d = half_lo(g);
            for (int c = 0; c < CB; c++) _mm512_store_ps(sc[r][c], _mm512_mul_ps(d, dx[c]));
            if (K == K_Q4_1) {
                __m512 m = half_hi(g);
                for (int c = 0; c < CB; c++) macc[r][c] = _mm512_fmadd_ps(m, sx[c], macc[r][c]);
            }
        }
        /* software prefetch two groups ahead: four interleaved row streams with short strides defeat the hardware
         * prefetcher's distance on the weights that come from memory */
        if (b0 + 48 <= nb)
            for (int r = 0; r < RB; r++)
                for (int l = 0; l < 16 * bsz; l += 64) _mm_prefetch((const char *)W + (size_t)r * rb + (size_t)(b0 + 32) * bsz + l, _MM_HINT_T0);
        for (int k = 0; k < cnt; k++) {
            __m256i xv[4], nc[4];
            for (int c = 0; c < CB; c++) {
                xv[c] = _mm256_loadu_si256((const __m256i *)xc[c][b0 + k].qs);
                if (K != K_Q4_1)
                    nc[c] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                             _mm256_dpbusd_epi32(_mm256_setzero_si256(), corrw, xv[c]));
            }
            for (int r = 0; r < RB; r++) {
                const uint8_t *q = W + (size_t)r * rb + (size_t)(b0 + k) * bsz + qoff;
                __m256i wq;
                if (K == K_Q8_0)
                    wq = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)q), flip);
                else
                    wq = _mm256_and_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q)), nib);
                for (int c = 0; c < CB; c++) {
                    __m256i dp = _mm256_dpbusd_epi32(K == K_Q4_1 ? _mm256_setzero_si256() : nc[c], wq, xv[c]);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(sc[r][c][k]), acc[r][c]);
                }
            }
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) {
            float s;
            if (K == K_Q8_0) {
                s = hsum256(acc[r][c]);
            } else {
                __m128 lo = _mm256_castps256_ps128(acc[r][c]), hi = _mm256_extractf128_ps(acc[r][c], 1);
                hi = _mm_mul_ps(hi, _mm_set1_ps(1.0f / 16));
                s = hsum256(_mm256_set_m128(hi, lo));
            }
            if (K == K_Q4_1) s += _mm512_reduce_add_ps(macc[r][c]) + mscal[r][c];
            y[(size_t)c * ldy + r] = s;
        }
}

/* Int16 activations (lmf_block_q16a, the default). One 32-element block is one zmm of s16 and one vpdpwssd (s16 x s16
 * pairs into int32 lanes) gives its sixteen partial sums exactly: lane i holds elements 2i, 2i+1, |sum| <=
 * 2 * 15 * 16 * 32767 < 2^24 (the largest case, Q4's high nibbles kept 16x, below), so even its float conversion is
 * exact. The weights are widened in registers (the bytes read from memory are the int8 kernels'):
 *  - Q8_0: vpmovsxbw straight from memory (s8 -> s16); signed x signed needs no correction.
 *  - Q4: vbroadcasti128 puts the 16 nibble bytes in both halves, vpmovzxbw widens them, and one AND keeps the low
 *    nibbles in the low 16 words (elements 0..15, matching qs[0..15]) and the high nibbles, unshifted (16x), in the
 *    high 16 words; the high eight accumulator lanes are divided by 16 once at the end (exact). Q4_0's "- 8" is the
 *    accumulator's starting value -(8 sum x_lo, 128 sum x_hi) lanes, made by one vpdpwssd per activation block and
 *    shared by the tile's rows.
 *  - Q5_0: Q4_0's words plus the fifth bit, one masked move of 16 (low words) / 256 (high words, the 16x scale)
 *    with qh as the 32-bit mask; "- 16" starts the accumulator at -(16 sum x_lo, 256 sum x_hi). Its lanes end at
 *    |sum| <= 2 * 16 * 16 * 32767 < 2^24 too. Q5_1: the same words without the offset, plus Q4_1's min term; its
 *    high lanes reach 2 * 31 * 16 * 32767 < 2^25, so their float conversion may round (one ulp of the block's sum,
 *    as far below the test's tolerance as the summation order's rounding).
 * Scales, gathers, prefetching and tiles as for int8. */
/* Its accumulator set-up and block loop repeat qtile8's on purpose: the two differ inside the loop (nibbles widened
 * to int16 words here, bytes there), and one shared always-inline body with a mode switch measured no faster and
 * read worse. */
AI void qtile16(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
                const lmf_block_q16a *const *xc, float *y, int ldy) {
    const int bsz = K == K_Q8_0 ? 34 : K == K_Q4_0 ? 18 : K == K_Q4_1 ? 20 : K == K_Q5_0 ? 22 : 24;
    const int qoff = K == K_Q8_0 ? 2 : K == K_Q4_0 ? 2 : K == K_Q4_1 ? 4 : K == K_Q5_0 ? 6 : 8;
    const int with_min = K == K_Q4_1 || K == K_Q5_1, fifth_bit = K == K_Q5_0 || K == K_Q5_1;
    __m512 acc[4][4], macc[4][4];
    float sc[4][4][16] __attribute__((aligned(64)));
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm512_setzero_ps(), macc[r][c] = _mm512_setzero_ps();
    const __m512i nib = _mm512_inserti64x4(_mm512_set1_epi16(0x0f), _mm256_set1_epi16(0xf0), 1);
    const __m512i corrw = K == K_Q5_0 ? _mm512_inserti64x4(_mm512_set1_epi16(16), _mm256_set1_epi16(256), 1)
                                      : _mm512_inserti64x4(_mm512_set1_epi16(8), _mm256_set1_epi16(128), 1);
    const __m512i fifth = _mm512_inserti64x4(_mm512_set1_epi16(0x10), _mm256_set1_epi16(0x100), 1);
    for (int b0 = 0; b0 < nb; b0 += 16) {
        int cnt = nb - b0 < 16 ? nb - b0 : 16;
        __m512 dx[4], sx[4];
        const int gather = with_min;
        for (int c = 0; c < CB && gather; c++) {
            dx[c] = _mm512_castsi512_ps(gather_u32(&xc[c][b0].d, (int)sizeof(lmf_block_q16a), cnt));
            sx[c] = _mm512_castsi512_ps(gather_u32(&xc[c][b0].s, (int)sizeof(lmf_block_q16a), cnt));
        }
        for (int r = 0; r < RB && !gather; r++) {
            const uint8_t *wr = W + (size_t)r * rb + (size_t)b0 * bsz;
            for (int k = 0; k < cnt; k++) {
                uint16_t h; memcpy(&h, wr + (size_t)k * bsz, 2);
                float dw = _cvtsh_ss(h);
                for (int c = 0; c < CB; c++) sc[r][c][k] = dw * xc[c][b0 + k].d;
            }
        }
        for (int r = 0; r < RB && gather; r++) {
            __m512i g = gather_u32(W + (size_t)r * rb + (size_t)b0 * bsz, bsz, cnt);
            __m512 d = half_lo(g), m = half_hi(g);
            for (int c = 0; c < CB; c++) {
                _mm512_store_ps(sc[r][c], _mm512_mul_ps(d, dx[c]));
                macc[r][c] = _mm512_fmadd_ps(m, sx[c], macc[r][c]);
            }
        }
        if (b0 + 48 <= nb)
            for (int r = 0; r < RB; r++)
                for (int l = 0; l < 16 * bsz; l += 64) _mm_prefetch((const char *)W + (size_t)r * rb + (size_t)(b0 + 32) * bsz + l, _MM_HINT_T0);
        for (int k = 0; k < cnt; k++) {
            __m512i xv[4], nc[4];
            for (int c = 0; c < CB; c++) {
                xv[c] = _mm512_loadu_si512(xc[c][b0 + k].qs);
                if (K == K_Q4_0 || K == K_Q5_0)
                    nc[c] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                             _mm512_dpwssd_epi32(_mm512_setzero_si512(), corrw, xv[c]));
            }
            for (int r = 0; r < RB; r++) {
                const uint8_t *q = W + (size_t)r * rb + (size_t)(b0 + k) * bsz + qoff;
                __m512i wq;
                if (K == K_Q8_0)
                    wq = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)q));
                else
                    wq = _mm512_and_si512(
                        _mm512_cvtepu8_epi16(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q))), nib);
                if (fifth_bit) { /* word i gets 16 (elements 16.. 31: 256, the 16x scale) where bit i of qh is set */
                    uint32_t qh;
                    memcpy(&qh, q - 4, 4);
                    wq = _mm512_or_si512(wq, _mm512_maskz_mov_epi16((__mmask32)qh, fifth));
                }
                for (int c = 0; c < CB; c++) {
                    __m512i dp = _mm512_dpwssd_epi32(K == K_Q4_0 || K == K_Q5_0 ? nc[c] : _mm512_setzero_si512(), wq,
                                                     xv[c]);
                    acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_set1_ps(sc[r][c][k]), acc[r][c]);
                }
            }
        }
    }
    const __m512 unhi = _mm512_insertf32x8(_mm512_set1_ps(1.0f), _mm256_set1_ps(1.0f / 16), 1);
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) {
            __m512 a = K == K_Q8_0 ? acc[r][c] : _mm512_mul_ps(acc[r][c], unhi);
            float s = _mm512_reduce_add_ps(a);
            if (with_min) s += _mm512_reduce_add_ps(macc[r][c]);
            y[(size_t)c * ldy + r] = s;
        }
}

/* Q6_K against int16 activation blocks (quant_ref.c q6_k_ref): per activation block (32 elements) the six-bit
 * weights are rebuilt as bytes (nibble | two high bits << 4, - 32; a ymm), widened to words and multiplied by one
 * vpdpwssd; lanes 0-7 hold the first 16-element sub-block, lanes 8-15 the second, so one vector of two broadcast
 * scales (d sc, formed per super-block as the reference forms it, times d_x) turns them into floats. The scale is
 * applied in float because sc times a sub-block's integer sum could leave int32. Tiles as qtile16. */
AI void q6k_tile(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
                 const lmf_block_q16a *const *xc, float *y, int ldy) {
    (void)K;
    __m512 acc[4][4];
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm512_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    for (int sb = 0; sb < nb / 8; sb++) {
        float fsc[4][16];
        const uint8_t *p[4];
        for (int r = 0; r < RB; r++) {
            p[r] = W + (size_t)r * rb + (size_t)sb * 210;
            float d = _cvtsh_ss((uint16_t)(p[r][208] | p[r][209] << 8));
            for (int j = 0; j < 16; j++) fsc[r][j] = d * (float)(int8_t)p[r][192 + j];
            if (sb + 2 < nb / 8)
                for (int l = 0; l < 210; l += 64) _mm_prefetch((const char *)p[r] + 2 * 210 + l, _MM_HINT_T0);
        }
        for (int half = 0; half < 2; half++)
            for (int k = 0; k < 4; k++) {
                int b = sb * 8 + half * 4 + k;
                __m512i xv[4];
                for (int c = 0; c < CB; c++) xv[c] = _mm512_loadu_si512(xc[c][b].qs);
                for (int r = 0; r < RB; r++) {
                    __m256i lo = _mm256_loadu_si256((const __m256i *)(p[r] + 64 * half + 32 * (k & 1)));
                    if (k >> 1) lo = _mm256_srli_epi16(lo, 4);
                    __m256i hi = _mm256_loadu_si256((const __m256i *)(p[r] + 128 + 32 * half));
                    hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hi, 2 * k), m3), 4);
                    __m256i q6 = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(lo, m4), hi), off);
                    __m512i wq = _mm512_cvtepi8_epi16(q6);
                    __m512 sv = _mm512_insertf32x8(_mm512_set1_ps(fsc[r][8 * half + 2 * k]),
                                                   _mm256_set1_ps(fsc[r][8 * half + 2 * k + 1]), 1);
                    for (int c = 0; c < CB; c++) {
                        __m512i dp = _mm512_dpwssd_epi32(_mm512_setzero_si512(), wq, xv[c]);
                        __m512 sd = _mm512_mul_ps(sv, _mm512_set1_ps(xc[c][b].d));
                        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), sd, acc[r][c]);
                    }
                }
            }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) y[(size_t)c * ldy + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* Q4_K / Q5_K (K = 1) against int16 activation blocks (quant_ref.c q45_k_ref): each 32-element sub-block is one
 * activation block: its nibbles (low or high half of 32 bytes) widened to words, Q5_K's fifth bit added by a masked
 * move (vptestmb of qh against the sub-block's bit), one vpdpwssd, one FMA with (d sc) d_x; the min term
 * (dmin m) s_x is a scalar per sub-block. Tiles as qtile16. */
AI void q45k_tile(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
                  const lmf_block_q16a *const *xc, float *y, int ldy) {
    const int bsz = K ? 176 : 144;
    __m512 acc[4][4];
    float macc[4][4];
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm512_setzero_ps(), macc[r][c] = 0.0f;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m512i sixteen = _mm512_set1_epi16(16);
    for (int sb = 0; sb < nb / 8; sb++) {
        float fsc[4][8], fmn[4][8];
        const uint8_t *p[4];
        for (int r = 0; r < RB; r++) {
            p[r] = W + (size_t)r * rb + (size_t)sb * bsz;
            float d = _cvtsh_ss((uint16_t)(p[r][0] | p[r][1] << 8)), mn = _cvtsh_ss((uint16_t)(p[r][2] | p[r][3] << 8));
            for (int j = 0; j < 8; j++) dq_scale_min(j, p[r] + 4, d, mn, &fsc[r][j], &fmn[r][j]);
            if (sb + 2 < nb / 8)
                for (int l = 0; l < bsz; l += 64) _mm_prefetch((const char *)p[r] + 2 * bsz + l, _MM_HINT_T0);
        }
        for (int j = 0; j < 8; j++) {
            int b = sb * 8 + j;
            __m512i xv[4];
            for (int c = 0; c < CB; c++) xv[c] = _mm512_loadu_si512(xc[c][b].qs);
            for (int r = 0; r < RB; r++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(p[r] + (K ? 48 : 16) + 32 * (j / 2)));
                if (j & 1) q = _mm256_srli_epi16(q, 4);
                __m512i wq = _mm512_cvtepu8_epi16(_mm256_and_si256(q, m4));
                if (K) {
                    __m256i qh = _mm256_loadu_si256((const __m256i *)(p[r] + 16));
                    __mmask32 hb = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << j)));
                    wq = _mm512_mask_add_epi16(wq, hb, wq, sixteen);
                }
                for (int c = 0; c < CB; c++) {
                    __m512i dp = _mm512_dpwssd_epi32(_mm512_setzero_si512(), wq, xv[c]);
                    __m512 sd = _mm512_set1_ps(fsc[r][j] * xc[c][b].d);
                    acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), sd, acc[r][c]);
                    macc[r][c] += fmn[r][j] * xc[c][b].s;
                }
            }
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) y[(size_t)c * ldy + r] = _mm512_reduce_add_ps(acc[r][c]) - macc[r][c];
}

/* a tile over columns of either activation format (xc: CB column pointers) */
typedef void (*qtile_fn)(int nb, const uint8_t *W, size_t rb, const void *const *xc, float *y, int ldy);
#define QTILE_FN(name, body, xt, K, RB, CB)                                                                        \
    static void name(int nb, const uint8_t *W, size_t rb, const void *const *xc, float *y, int ldy) {              \
        body(K, RB, CB, nb, W, rb, (const xt *const *)xc, y, ldy);                                                 \
    }
#define QTILES(t, body, xt, K)                                                                                     \
    QTILE_FN(t##_4x1, body, xt, K, 4, 1)                                                                           \
    QTILE_FN(t##_1x1, body, xt, K, 1, 1)                                                                           \
    QTILE_FN(t##_1x2, body, xt, K, 1, 2)                                                                           \
    QTILE_FN(t##_1x3, body, xt, K, 1, 3)                                                                           \
    QTILE_FN(t##_1x4, body, xt, K, 1, 4)                                                                           \
    static const qtile_fn t##_tiles[5] = {t##_4x1, t##_1x1, t##_1x2, t##_1x3, t##_1x4};

QTILES(q8_0_i8, qtile, lmf_block_q8a, K_Q8_0)
QTILES(q4_0_i8, qtile, lmf_block_q8a, K_Q4_0)
QTILES(q4_1_i8, qtile, lmf_block_q8a, K_Q4_1)
QTILES(q8_0_i16, qtile16, lmf_block_q16a, K_Q8_0)
/* Q4 x int16 with the same tiles as Q8_0. A 4-row tile that paired two rows per zmm saved ~10% of the uops where
 * the weights come from cache, but summed a row in another order than the 1-row tiles of the batched case: a
 * sequence's logits then depended on how many others shared the step (serve/engine.h promises they do not). Only
 * matrices that cannot be held as R16 groups come here. */
QTILES(q4_0_i16, qtile16, lmf_block_q16a, K_Q4_0)
QTILES(q4_1_i16, qtile16, lmf_block_q16a, K_Q4_1)
QTILES(q5_0_i16, qtile16, lmf_block_q16a, K_Q5_0)
QTILES(q5_1_i16, qtile16, lmf_block_q16a, K_Q5_1)
QTILES(q6_k_i16, q6k_tile, lmf_block_q16a, 0)
QTILES(q4_k_i16, q45k_tile, lmf_block_q16a, 0)
QTILES(q5_k_i16, q45k_tile, lmf_block_q16a, 1)

/* rows in tiles of four when there is one column; otherwise row by row, columns four at a time. tiles[0] is the
 * 4-row, 1-column tile, tiles[c] the 1-row, c-column one. */
static void qmatvec(const qtile_fn *tiles, int n, int nrows, const void *W, size_t rb, int ncols, const void *x,
                    size_t xb, float *y, int ldy) {
    int nb = n / 32;
    const uint8_t *w = W;
    if (ncols == 1) {
        const void *xc[1] = {x};
        int r = 0;
        for (; r + 4 <= nrows; r += 4) tiles[0](nb, w + (size_t)r * rb, rb, xc, y + r, ldy);
        for (; r < nrows; r++) tiles[1](nb, w + (size_t)r * rb, rb, xc, y + r, ldy);
        return;
    }
    for (int r = 0; r < nrows; r++)
        for (int c0 = 0; c0 < ncols; c0 += 4) {
            int cb = ncols - c0 < 4 ? ncols - c0 : 4;
            const void *xc[4];
            for (int c = 0; c < cb; c++) xc[c] = (const char *)x + (size_t)(c0 + c) * xb;
            tiles[cb](nb, w + (size_t)r * rb, rb, xc, y + (size_t)c0 * ldy + r, ldy);
        }
}

#define QMV(t)                                                                                                     \
    static void t##_mv(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,  \
                       int ldy) {                                                                                  \
        qmatvec(t##_tiles, n, nrows, W, rb, ncols, x, xb, y, ldy);                                                 \
    }
QMV(q8_0_i8)
QMV(q4_0_i8)
QMV(q4_1_i8)
QMV(q8_0_i16)
QMV(q4_0_i16)
QMV(q4_1_i16)
QMV(q5_0_i16)
QMV(q5_1_i16)
QMV(q6_k_i16)
QMV(q4_k_i16)
QMV(q5_k_i16)

/* ---- R16 groups (quant.h): 16 rows in the 16 lanes ----------------------------------------------------------
 * Per block group and column: Q8_0 sixteen vpmovsxbw + vpdpwssd (one per element pair of all 16 rows), Q4 four
 * 64-byte loads, each split by shift + AND into four pair vectors for four vpdpwssd; the activation pair comes as
 * an embedded broadcast. Then one conversion and one FMA with the 16 rows' scales (vcvtph2ps) times d_x, and for
 * Q4 one more FMA for the min / offset term: no horizontal sums, no gathers. Two dot chains per column so
 * consecutive vpdpwssd do not wait on each other. Columns share each unpacked weight vector (CB <= 4 at a time).
 * NG groups from different streams (quant.h, LMF_R16_STREAMS) are worked block group by block group, each with
 * its own prefetch LMF_R16_PREFETCH bytes ahead: without the prefetch the kernel waited on memory between blocks
 * (SmolLM2's linear layers from memory, 2 threads: 144 tok/s without, 300-400 with 4-8 KB, one stream); with
 * several streams 4 KB each did as well as 8 KB for Q8_0 and Q4. NG * CB <= 4: the accumulators stay in
 * registers. */
AI void r16_tile(const int K, const int NG, const int CB, int nb, const uint8_t *const *G,
                 const lmf_block_q16a *const *xc, float *const *y, int ldy) {
    const int gbs = 16 * (K == K_Q8_0 ? 34 : K == K_Q4_0 ? 18 : 20), qoff = K == K_Q4_1 ? 64 : 32;
    __m512 acc[4], acc2[4];
    for (int i = 0; i < NG * CB; i++) acc[i] = _mm512_setzero_ps(), acc2[i] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi32(0x000F000F);
    for (int b = 0; b < nb; b++)
        for (int s = 0; s < NG; s++) {
            const uint8_t *g = G[s] + (size_t)b * gbs;
            for (int l = 0; l < gbs; l += 64) _mm_prefetch((const char *)g + LMF_R16_PREFETCH + l, _MM_HINT_T0);
            __m512i d0[4], d1[4];
            for (int c = 0; c < CB; c++) d0[c] = _mm512_setzero_si512(), d1[c] = _mm512_setzero_si512();
            if (K == K_Q8_0) {
                for (int p = 0; p < 16; p += 2) {
                    __m512i w0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(g + 32 + 32 * p)));
                    __m512i w1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(g + 64 + 32 * p)));
                    for (int c = 0; c < CB; c++) {
                        const int32_t *xp = (const int32_t *)xc[c][b].qs + p;
                        d0[c] = _mm512_dpwssd_epi32(d0[c], w0, _mm512_set1_epi32(xp[0]));
                        d1[c] = _mm512_dpwssd_epi32(d1[c], w1, _mm512_set1_epi32(xp[1]));
                    }
                }
            } else {
                for (int ch = 0; ch < 4; ch++) {
                    __m512i v = _mm512_loadu_si512(g + qoff + 64 * ch);
                    __m512i w0 = _mm512_and_si512(v, m4), w1 = _mm512_and_si512(_mm512_srli_epi32(v, 4), m4);
                    __m512i w2 = _mm512_and_si512(_mm512_srli_epi32(v, 8), m4), w3 = _mm512_srli_epi16(v, 12);
                    for (int c = 0; c < CB; c++) {
                        const int32_t *xp = (const int32_t *)xc[c][b].qs + 4 * ch;
                        d0[c] = _mm512_dpwssd_epi32(d0[c], w0, _mm512_set1_epi32(xp[0]));
                        d1[c] = _mm512_dpwssd_epi32(d1[c], w1, _mm512_set1_epi32(xp[1]));
                        d0[c] = _mm512_dpwssd_epi32(d0[c], w2, _mm512_set1_epi32(xp[2]));
                        d1[c] = _mm512_dpwssd_epi32(d1[c], w3, _mm512_set1_epi32(xp[3]));
                    }
                }
            }
            __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
            __m512 mw = K == K_Q4_1 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32))) : dw;
            for (int c = 0; c < CB; c++) {
                __m512 dot = _mm512_cvtepi32_ps(_mm512_add_epi32(d0[c], d1[c]));
                acc[s * CB + c] = _mm512_fmadd_ps(dot, _mm512_mul_ps(dw, _mm512_set1_ps(xc[c][b].d)), acc[s * CB + c]);
                if (K != K_Q8_0) acc2[s * CB + c] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xc[c][b].s), acc2[s * CB + c]);
            }
        }
    for (int s = 0; s < NG; s++)
        for (int c = 0; c < CB; c++) {
            __m512 a = acc[s * CB + c], a2 = acc2[s * CB + c];
            __m512 r = K == K_Q4_1   ? _mm512_add_ps(a, a2)
                       : K == K_Q4_0 ? _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), a2, a)
                                     : a;
            _mm512_storeu_ps(y[s] + (size_t)c * ldy, r);
        }
}

/* Groups outermost, so that with more than four columns a group is still in cache for the next four. Streams: three
 * with one column, two with two (NG * CB <= 4), one from three columns on; at most lmf_decode_streams(). */
AI void r16_streams_mv(const int K, int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb,
                       float *y, int ldy) {
    int ds = lmf_decode_streams() < LMF_R16_STREAMS ? lmf_decode_streams() : LMF_R16_STREAMS;
    int nb = n / 32, start[LMF_R16_STREAMS + 1], S = ncols == 1 ? ds : ncols == 2 && ds >= 2 ? 2 : 1;
    int len = lmf_stream_runs(nrows / 16, S, start);
    for (int i = 0; i < len; i++) {
        const uint8_t *G[LMF_R16_STREAMS];
        int g[LMF_R16_STREAMS], ng = 0;
        for (int s = 0; s < S; s++)
            if (start[s] + i < start[s + 1]) {
                g[ng] = start[s] + i;
                G[ng] = (const uint8_t *)W + (size_t)g[ng] * 16 * rb, ng++;
            }
        for (int c0 = 0; c0 < ncols; c0 += 4) {
            int cb = ncols - c0 < 4 ? ncols - c0 : 4;
            const lmf_block_q16a *xc[4];
            float *yo[LMF_R16_STREAMS];
            for (int c = 0; c < cb; c++) xc[c] = (const lmf_block_q16a *)((const char *)x + (size_t)(c0 + c) * xb);
            for (int k = 0; k < ng; k++) yo[k] = y + (size_t)c0 * ldy + 16 * g[k];
            if (cb == 1 && ng == 3) r16_tile(K, 3, 1, nb, G, xc, yo, ldy);
            else if (cb == 1 && ng == 2) r16_tile(K, 2, 1, nb, G, xc, yo, ldy);
            else if (cb == 2 && ng == 2) r16_tile(K, 2, 2, nb, G, xc, yo, ldy);
            else
                for (int k = 0; k < ng; k++) switch (cb) {
                    case 1: r16_tile(K, 1, 1, nb, G + k, xc, yo + k, ldy); break;
                    case 2: r16_tile(K, 1, 2, nb, G + k, xc, yo + k, ldy); break;
                    case 3: r16_tile(K, 1, 3, nb, G + k, xc, yo + k, ldy); break;
                    default: r16_tile(K, 1, 4, nb, G + k, xc, yo + k, ldy); break;
                    }
        }
    }
}

#define R16_STREAMS_MV(t, K)                                                                                       \
    static void t##_r16(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y, \
                        int ldy) {                                                                                 \
        r16_streams_mv(K, n, nrows, W, rb, ncols, x, xb, y, ldy);                                                  \
    }
R16_STREAMS_MV(q8_0, K_Q8_0)
R16_STREAMS_MV(q4_0, K_Q4_0)
R16_STREAMS_MV(q4_1, K_Q4_1)


/* ---- float weights ------------------------------------------------------------------------------------------ */

enum { F_F32, F_F16, F_BF16 };

/* 16 weights from element i of a row (mask m: the valid ones) as floats */
AI __m512 wload(const int F, const void *row, int i, __mmask16 m) {
    if (F == F_F32) return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i);
    if (F == F_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* RB rows (wr[r]) x CB columns; y for row r, column c at yr[r] + c ldy. pf: prefetch that far ahead of each row's
 * reads (0: none) */
AI void ftile(const int F, const int RB, const int CB, int n, const uint8_t *const *wr, size_t pf,
              const float *const *xc, float *const *yr, int ldy) {
    __m512 acc[4][4];
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm512_setzero_ps();
    int i = 0;
    const int es = F == F_F32 ? 4 : 2;
    for (; i + 16 <= n; i += 16) {
        __m512 xv[4];
        for (int c = 0; c < CB; c++) xv[c] = _mm512_loadu_ps(xc[c] + i);
        for (int r = 0; r < RB; r++) {
            if (pf) _mm_prefetch((const char *)wr[r] + pf + (size_t)i * es, _MM_HINT_T0);
            __m512 w = wload(F, wr[r], i, 0xffff);
            for (int c = 0; c < CB; c++) acc[r][c] = _mm512_fmadd_ps(w, xv[c], acc[r][c]);
        }
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 xv[4];
        for (int c = 0; c < CB; c++) xv[c] = _mm512_maskz_loadu_ps(m, xc[c] + i);
        for (int r = 0; r < RB; r++) {
            __m512 w = wload(F, wr[r], i, m);
            for (int c = 0; c < CB; c++) acc[r][c] = _mm512_fmadd_ps(w, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) yr[r][(size_t)c * ldy] = _mm512_reduce_add_ps(acc[r][c]);
}

/* one column: four rows at a time from rows of 256 elements (quant_fmatvec.inc) */
#define FMV_TILE_MIN_N 256
#include "kernels/quant_fmatvec.inc"

#define FKERNEL(name, F)                                                                                           \
    static void name(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,   \
                     int ldy) {                                                                                    \
        fmatvec(F, n, nrows, W, rb, ncols, x, xb, y, ldy);                                                         \
    }
FKERNEL(f32_mv, F_F32)
FKERNEL(f16_mv, F_F16)
FKERNEL(bf16_mv, F_BF16)

/* ---- activation quantization (bit-exact with quant_ref.c) --------------------------------------------------- */

/* roundf (half away from zero) of |v| exactly: floor(a) + floor(2 (a - floor(a))); every step is exact */
AI __m512 round16(__m512 v) {
    __m512 a = _mm512_abs_ps(v);
    __m512 f = _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 fr = _mm512_sub_ps(a, f);
    __m512 b = _mm512_add_ps(f, _mm512_roundscale_ps(_mm512_add_ps(fr, fr), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(b),
                                               _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000))));
}

/* see quantize_q16a_ref */
static void quantize_q16a(const float *x, int n, lmf_block_q16a *out) {
    for (int b = 0; b < n / 32; b++, x += 32, out++) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1), big = _mm512_set1_ps(FLT_MAX);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        int finite = !(_mm512_cmp_ps_mask(a0, big, _CMP_NLE_UQ) | _mm512_cmp_ps_mask(a1, big, _CMP_NLE_UQ));
        if (!(amax >= LMF_Q8A_MIN_AMAX) || !finite) { /* x * 0 would keep a NaN */
            memset(out, 0, sizeof *out);
            if (!finite) out->d = out->s = NAN; /* every product with the block is NaN: a NaN never vanishes */
            continue;
        }
        float d = amax / 32767, id = d ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(round16(_mm512_mul_ps(v0, vid)));
        __m512i q1 = _mm512_cvtps_epi32(round16(_mm512_mul_ps(v1, vid)));
        _mm256_storeu_si256((__m256i *)out->qs, _mm512_cvtepi32_epi16(q0));
        _mm256_storeu_si256((__m256i *)(out->qs + 16), _mm512_cvtepi32_epi16(q1));
        out->d = d;
        out->s = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

static void quantize_q8a(const float *x, int n, lmf_block_q8a *out) {
    for (int b = 0; b < n / 32; b++, x += 32, out++) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        if (!(amax >= LMF_Q8A_MIN_AMAX)) amax = 0.0f; /* 1/d would overflow: the block is zero */
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(round16(_mm512_mul_ps(v0, vid)));
        __m512i q1 = _mm512_cvtps_epi32(round16(_mm512_mul_ps(v1, vid)));
        _mm_storeu_si128((__m128i *)out->qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out->qs + 16), _mm512_cvtepi32_epi8(q1));
        out->d = d;
        out->s = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* ---- dequantization (bit-exact with quant_ref.c) ------------------------------------------------------------ */

/* keeps the compiler from fusing a rounded product into the following add (the reference rounds both) */
AI __m512 rounded(__m512 v) {
    __asm__("" : "+v"(v));
    return v;
}

/* 16 signed bytes -> floats, scaled (declared in quant_dequant.inc) */
AI void emit16(float *dst, __m128i q, float d, float m, const int op) {
    __m512 v = rounded(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(d)));
    if (op == DQ_MUL_SUB) v = _mm512_sub_ps(v, _mm512_set1_ps(m));
    else if (op == DQ_MUL_ADD) v = _mm512_add_ps(v, _mm512_set1_ps(m));
    _mm512_storeu_ps(dst, v);
}

static void dequant(uint32_t type, const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    switch (type) {
    case LMF_GGML_F16: {
        size_t i = 0;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * i))));
        for (; i < n; i++) dst[i] = lmf_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return;
    }
    case LMF_GGML_BF16: {
        size_t i = 0;
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(
                                          _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + 2 * i))), 16)));
        for (; i < n; i++) dst[i] = lmf_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return;
    }
    case LMF_GGML_Q8_0:
        for (size_t b = 0; b < n / 32; b++, p += 34, dst += 32) {
            __m512 d = _mm512_set1_ps(_cvtsh_ss((uint16_t)(p[0] | p[1] << 8)));
            __m256i q = _mm256_loadu_si256((const __m256i *)(p + 2));
            _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q))), d));
            _mm512_storeu_ps(dst + 16,
                             _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1))), d));
        }
        return;
    case LMF_GGML_Q4_0:
    case LMF_GGML_Q4_1: {
        int q41 = type == LMF_GGML_Q4_1, bs = q41 ? 20 : 18;
        for (size_t b = 0; b < n / 32; b++, p += bs, dst += 32) {
            __m512 d = _mm512_set1_ps(_cvtsh_ss((uint16_t)(p[0] | p[1] << 8)));
            __m128i v = _mm_loadu_si128((const __m128i *)(p + (q41 ? 4 : 2)));
            __m512i lo = _mm512_cvtepu8_epi32(_mm_and_si128(v, _mm_set1_epi8(0x0f)));
            __m512i hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f)));
            if (q41) {
                __m512 m = _mm512_set1_ps(_cvtsh_ss((uint16_t)(p[2] | p[3] << 8)));
                _mm512_storeu_ps(dst, _mm512_add_ps(rounded(_mm512_mul_ps(_mm512_cvtepi32_ps(lo), d)), m));
                _mm512_storeu_ps(dst + 16, _mm512_add_ps(rounded(_mm512_mul_ps(_mm512_cvtepi32_ps(hi), d)), m));
            } else {
                __m512i eight = _mm512_set1_epi32(8);
                _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(lo, eight)), d));
                _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(hi, eight)), d));
            }
        }
        return;
    }
    default:
        if (!dequant_q5_k(type, p, dst, n)) lmf_dequant_ref(type, src, dst, n);
    }
}

/* ---- R16 groups of Q5_x and the K-quants, and the k-major group reader: quant_r16_mv.inc with one zmm a 16-row
 * vector. vpdpwssd is the integer sum, so two chains a column keep consecutive ones from waiting on each other (as
 * r16_tile above); 32 registers hold four columns' accumulators. Q8_0 / Q4_x keep r16_tile's streams (tuned on the
 * Intel machines, matched bit for bit by the AMX tiles); the reader serves all ten kinds. */
typedef __m512i r16i;
typedef __m512 r16f;
AI r16i ri_load(const void *p) { return _mm512_loadu_si512(p); }
AI r16i ri_load_s8(const void *p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p)); }
AI r16i ri_zero(void) { return _mm512_setzero_si512(); }
AI r16i ri_set1(int32_t v) { return _mm512_set1_epi32(v); }
AI r16i ri_set1_8(char v) { return _mm512_set1_epi8(v); }
AI r16i ri_set1_16(short v) { return _mm512_set1_epi16(v); }
AI r16i ri_and(r16i a, r16i b) { return _mm512_and_si512(a, b); }
AI r16i ri_or(r16i a, r16i b) { return _mm512_or_si512(a, b); }
AI r16i ri_add(r16i a, r16i b) { return _mm512_add_epi32(a, b); }
AI r16i ri_sub(r16i a, r16i b) { return _mm512_sub_epi32(a, b); }
AI r16i ri_srl32(r16i a, int n) { return _mm512_srli_epi32(a, n); }
AI r16i ri_sll32(r16i a, int n) { return _mm512_slli_epi32(a, n); }
AI r16i ri_sra32(r16i a, int n) { return _mm512_srai_epi32(a, n); }
AI r16i ri_srl16(r16i a, int n) { return _mm512_srli_epi16(a, n); }
AI r16i ri_madd(r16i d, r16i w, r16i x) { return _mm512_dpwssd_epi32(d, w, x); }
AI void ri_keep(r16i *d) { __asm__("" : "+v"(*d)); }
AI r16i ri_load_u16(const void *p) { return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)); }
AI r16i ri_bcast16(const void *p) { return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p)); }
AI r16i ri_lut(r16i t, r16i i) { return _mm512_shuffle_epi8(t, i); }
AI r16f rf_load_f16(const void *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
AI r16f rf_zero(void) { return _mm512_setzero_ps(); }
AI r16f rf_set1(float v) { return _mm512_set1_ps(v); }
AI r16f rf_mul(r16f a, r16f b) { return _mm512_mul_ps(a, b); }
AI r16f rf_add(r16f a, r16f b) { return _mm512_add_ps(a, b); }
AI r16f rf_sub(r16f a, r16f b) { return _mm512_sub_ps(a, b); }
AI r16f rf_fmadd(r16f a, r16f b, r16f c) { return _mm512_fmadd_ps(a, b, c); }
AI r16f rf_fnmadd(r16f a, r16f b, r16f c) { return _mm512_fnmadd_ps(a, b, c); }
AI r16f rf_cvt(r16i a) { return _mm512_cvtepi32_ps(a); }
AI void rf_store(float *p, r16f v) { _mm512_storeu_ps(p, v); }
AI r16f rf_rounded(r16f v) { return rounded(v); }
#define R16_COLS 4
#define R16_CHAINS 2
#include "kernels/quant_r16_mv.inc"
R16MV(q5_0, K_Q5_0)
R16MV(q5_1, K_Q5_1)
R16MV(q4_k, K_Q4_K)
R16MV(q5_k, K_Q5_K)
R16MV(q6_k, K_Q6_K)
R16MV(q2_k, K_Q2_K)
R16MV(q3_k, K_Q3_K)
R16MV(iq4_nl, K_IQ4_NL)
R16MV(iq4_xs, K_IQ4_XS)


const lmf_quant_ops lmf_quant_avx512 = {
    .name = "avx512",
    .q8_0 = q8_0_i16_mv, .q4_0 = q4_0_i16_mv, .q4_1 = q4_1_i16_mv,
    .q5_0 = q5_0_i16_mv, .q5_1 = q5_1_i16_mv, .q6_k = q6_k_i16_mv, .q4_k = q4_k_i16_mv, .q5_k = q5_k_i16_mv,
    .q2_k = lmf_q2_k_mv_avx2, .q3_k = lmf_q3_k_mv_avx2, /* quant_avx2.c: off the decode path (quant.h) */
    .iq4_nl = lmf_iq4_nl_mv_avx2, .iq4_xs = lmf_iq4_xs_mv_avx2,
    .q8_0_i8 = q8_0_i8_mv, .q4_0_i8 = q4_0_i8_mv, .q4_1_i8 = q4_1_i8_mv,
    .f32 = f32_mv, .f16 = f16_mv, .bf16 = bf16_mv,
    .q8_0_r16 = q8_0_r16, .q4_0_r16 = q4_0_r16, .q4_1_r16 = q4_1_r16,
    .q5_0_r16 = q5_0_r16, .q5_1_r16 = q5_1_r16, .q4_k_r16 = q4_k_r16, .q5_k_r16 = q5_k_r16,
    .q6_k_r16 = q6_k_r16, .q2_k_r16 = q2_k_r16, .q3_k_r16 = q3_k_r16, .iq4_nl_r16 = iq4_nl_r16,
    .iq4_xs_r16 = iq4_xs_r16,
    .dequant_r16 = dequant_r16,
    .quantize_q16a = quantize_q16a,
    .quantize_q8a = quantize_q8a,
    .dequant = dequant,
    .kq_fit = lmf_kq_fit_avx2, /* quantize_avx2.c: AVX2 is all they need */
    .wfit = lmf_wfit_avx2,
    .iq4_scales = lmf_iq4_scales_avx2,
    .q2_fit = lmf_q2_fit_avx2,
    .q3_fit = lmf_q3_fit_avx2,
    .quantize_blocks = lmf_quantize_blocks_avx2,
};
