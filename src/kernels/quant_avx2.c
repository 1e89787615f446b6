/* quant_avx2.c — AVX2 + FMA + F16C quantized kernels (see quant.h for the contract, quant_ref.c for the
 * definitions). The same tiling as quant_avx512.c. Int16 activations (the default): see qtile16 below. Int8
 * activations (LMF_QACT=int8): the integer dot product is done by vpmaddubsw (u8 x s8 pairs
 * to int16) + vpmaddwd (pairs to int32) instead of VNNI, which constrains the operands: the int16 pair sums
 * saturate at 32767, so
 *  - Q8_0 (s8 x s8) uses the sign trick: |w| (u8, at most 128) against x carrying w's sign (|x| <= 127, never
 *    -128): 2 * 128 * 127 < 32767;
 *  - Q4 nibbles are shifted down properly (q <= 15), and Q4_0's "- 8" is an int16 correction 8 * (x_i + x_i+1)
 *    per activation block, computed once per tile and subtracted before vpmaddwd.
 * Scales are taken 8 blocks at a time (one gather of the half scales per row), stored to a small stack array and
 * broadcast from it by the FMA. Float weights: 8 elements per ymm, four rows or up to four columns per pass. */
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

enum { K_Q8_0, K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q4_K, K_Q5_K, K_Q6_K };

/* the bit unpacking of Q5_x and the K-quants (dequantization, and the K-quant kernels' scales) */
#include "kernels/quant_dequant.inc"

AI float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* the int32 at byte offsets base + stride * k (k < cnt; zero beyond) */
AI __m256i gather_u32(const void *base, int stride, int cnt) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i idx = _mm256_mullo_epi32(iota, _mm256_set1_epi32(stride));
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), iota);
    return _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)base, idx, m, 1);
}
/* the low (or high) 16 bits of each lane as halves -> floats */
AI __m256 half_lo(__m256i g) {
    __m256i h = _mm256_and_si256(g, _mm256_set1_epi32(0xffff));
    h = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08);
    return _mm256_cvtph_ps(_mm256_castsi256_si128(h));
}
AI __m256 half_hi(__m256i g) { return half_lo(_mm256_srli_epi32(g, 16)); }

AI void qtile(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
              const lmf_block_q8a *const *xc, float *y, int ldy) {
    const int bsz = K == K_Q8_0 ? 34 : K == K_Q4_0 ? 18 : 20, qoff = K == K_Q8_0 ? 2 : K == K_Q4_0 ? 2 : 4;
    __m256 acc[4][4], macc[4][4];
    float sc[4][4][8] __attribute__((aligned(32)));
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps(), macc[r][c] = _mm256_setzero_ps();
    const __m256i low4 = _mm256_set1_epi8(0x0f), ones16 = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8);
    for (int b0 = 0; b0 < nb; b0 += 8) {
        int cnt = nb - b0 < 8 ? nb - b0 : 8;
        __m256 dx[4], sx[4];
        /* Q4_1: one gather brings a row's 8 scales and mins; Q8_0 / Q4_0 (one half each) measured faster with
         * scalar conversions than with a gather */
        const int gather = K == K_Q4_1;
        for (int r = 0; r < RB && !gather; r++) {
            const uint8_t *wr = W + (size_t)r * rb + (size_t)b0 * bsz;
            for (int k = 0; k < cnt; k++) {
                uint16_t h;
                memcpy(&h, wr + (size_t)k * bsz, 2);
                float dw = _cvtsh_ss(h);
                for (int c = 0; c < CB; c++) sc[r][c][k] = dw * xc[c][b0 + k].d;
            }
        }
        for (int c = 0; c < CB && gather; c++) {
            dx[c] = _mm256_castsi256_ps(gather_u32(&xc[c][b0].d, (int)sizeof(lmf_block_q8a), cnt));
            if (K == K_Q4_1) sx[c] = _mm256_castsi256_ps(gather_u32(&xc[c][b0].s, (int)sizeof(lmf_block_q8a), cnt));
        }
        for (int r = 0; r < RB && gather; r++) {
            __m256i g = gather_u32(W + (size_t)r * rb + (size_t)b0 * bsz, bsz, cnt);
            __m256 d = half_lo(g);
            for (int c = 0; c < CB; c++) _mm256_store_ps(sc[r][c], _mm256_mul_ps(d, dx[c]));
            if (K == K_Q4_1) {
                __m256 m = half_hi(g);
                for (int c = 0; c < CB; c++) macc[r][c] = _mm256_fmadd_ps(m, sx[c], macc[r][c]);
            }
        }
        for (int k = 0; k < cnt; k++) {
            __m256i xv[4], corr[4];
            for (int c = 0; c < CB; c++) {
                xv[c] = _mm256_loadu_si256((const __m256i *)xc[c][b0 + k].qs);
                if (K == K_Q4_0) corr[c] = _mm256_maddubs_epi16(eight, xv[c]);
            }
            for (int r = 0; r < RB; r++) {
                const uint8_t *q = W + (size_t)r * rb + (size_t)(b0 + k) * bsz + qoff;
                __m256i wq;
                if (K == K_Q8_0) {
                    wq = _mm256_loadu_si256((const __m256i *)q);
                } else {
                    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
                    wq = _mm256_and_si256(_mm256_blend_epi32(b, _mm256_srli_epi16(b, 4), 0xf0), low4);
                }
                __m256i aw = K == K_Q8_0 ? _mm256_sign_epi8(wq, wq) : wq;
                for (int c = 0; c < CB; c++) {
                    __m256i p16 = _mm256_maddubs_epi16(aw, K == K_Q8_0 ? _mm256_sign_epi8(xv[c], wq) : xv[c]);
                    if (K == K_Q4_0) p16 = _mm256_sub_epi16(p16, corr[c]);
                    __m256i dp = _mm256_madd_epi16(p16, ones16);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(sc[r][c][k]), acc[r][c]);
                }
            }
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) {
            float s = hsum256(acc[r][c]);
            if (K == K_Q4_1) s += hsum256(macc[r][c]);
            y[(size_t)c * ldy + r] = s;
        }
}

/* Int16 activations (lmf_block_q16a, the default): a block is two ymm of s16, vpmaddwd multiplies s16 pairs into
 * int32 lanes exactly (|pair| <= 2 * 127 * 32767 < 2^24), one vpaddd joins the two halves. Weights are widened in
 * registers: Q8_0 by two vpmovsxbw from memory; Q4 by one vpmovzxbw of the 16 nibble bytes, the low nibbles kept by
 * an AND (elements 0..15) and the high ones by a 16-bit shift (elements 16..31: no byte crosses into its neighbour,
 * each word is 0..255). Q4_0's "- 8" is subtracted as 8 * (x_2i + x_2i+1) lanes made once per activation block.
 * Q5_0 is Q4_0 plus the fifth bit (qh spread to words by a compare against one bit per word) and "- 16"; Q5_1 is
 * Q4_1 plus the fifth bit. */
/* Its accumulator set-up and block loop repeat qtile8's on purpose: the two differ inside the loop (nibbles widened
 * to int16 words here, bytes there), and one shared always-inline body with a mode switch measured no faster and
 * read worse. */
AI void qtile16(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
                const lmf_block_q16a *const *xc, float *y, int ldy) {
    const int bsz = K == K_Q8_0 ? 34 : K == K_Q4_0 ? 18 : K == K_Q4_1 ? 20 : K == K_Q5_0 ? 22 : 24;
    const int qoff = K == K_Q8_0 ? 2 : K == K_Q4_0 ? 2 : K == K_Q4_1 ? 4 : K == K_Q5_0 ? 6 : 8;
    const int with_min = K == K_Q4_1 || K == K_Q5_1, fifth_bit = K == K_Q5_0 || K == K_Q5_1;
    __m256 acc[4][4], macc[4][4];
    float sc[4][4][8] __attribute__((aligned(32)));
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps(), macc[r][c] = _mm256_setzero_ps();
    const __m256i low4 = _mm256_set1_epi16(0x0f), eight = _mm256_set1_epi16(K == K_Q5_0 ? 16 : 8);
    const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                                          (short)0x8000);
    for (int b0 = 0; b0 < nb; b0 += 8) {
        int cnt = nb - b0 < 8 ? nb - b0 : 8;
        __m256 dx[4], sx[4];
        const int gather = with_min;
        for (int r = 0; r < RB && !gather; r++) {
            const uint8_t *wr = W + (size_t)r * rb + (size_t)b0 * bsz;
            for (int k = 0; k < cnt; k++) {
                uint16_t h;
                memcpy(&h, wr + (size_t)k * bsz, 2);
                float dw = _cvtsh_ss(h);
                for (int c = 0; c < CB; c++) sc[r][c][k] = dw * xc[c][b0 + k].d;
            }
        }
        for (int c = 0; c < CB && gather; c++) {
            dx[c] = _mm256_castsi256_ps(gather_u32(&xc[c][b0].d, (int)sizeof(lmf_block_q16a), cnt));
            sx[c] = _mm256_castsi256_ps(gather_u32(&xc[c][b0].s, (int)sizeof(lmf_block_q16a), cnt));
        }
        for (int r = 0; r < RB && gather; r++) {
            __m256i g = gather_u32(W + (size_t)r * rb + (size_t)b0 * bsz, bsz, cnt);
            __m256 d = half_lo(g), m = half_hi(g);
            for (int c = 0; c < CB; c++) {
                _mm256_store_ps(sc[r][c], _mm256_mul_ps(d, dx[c]));
                macc[r][c] = _mm256_fmadd_ps(m, sx[c], macc[r][c]);
            }
        }
        for (int k = 0; k < cnt; k++) {
            __m256i x0[4], x1[4], corr[4];
            for (int c = 0; c < CB; c++) {
                x0[c] = _mm256_loadu_si256((const __m256i *)xc[c][b0 + k].qs);
                x1[c] = _mm256_loadu_si256((const __m256i *)(xc[c][b0 + k].qs + 16));
                if (K == K_Q4_0 || K == K_Q5_0)
                    corr[c] = _mm256_add_epi32(_mm256_madd_epi16(eight, x0[c]), _mm256_madd_epi16(eight, x1[c]));
            }
            for (int r = 0; r < RB; r++) {
                const uint8_t *q = W + (size_t)r * rb + (size_t)(b0 + k) * bsz + qoff;
                __m256i w0, w1;
                if (K == K_Q8_0) {
                    w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q));
                    w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + 16)));
                } else {
                    __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)q));
                    w0 = _mm256_and_si256(v, low4), w1 = _mm256_srli_epi16(v, 4);
                }
                if (fifth_bit) { /* word i gets 16 where bit i of qh (elements 0..15) / bit 16 + i (16..31) is set */
                    uint32_t qh;
                    memcpy(&qh, q - 4, 4);
                    __m256i h0 = _mm256_and_si256(_mm256_set1_epi16((short)qh), bit);
                    __m256i h1 = _mm256_and_si256(_mm256_set1_epi16((short)(qh >> 16)), bit);
                    w0 = _mm256_or_si256(w0, _mm256_and_si256(_mm256_cmpeq_epi16(h0, bit), _mm256_set1_epi16(16)));
                    w1 = _mm256_or_si256(w1, _mm256_and_si256(_mm256_cmpeq_epi16(h1, bit), _mm256_set1_epi16(16)));
                }
                for (int c = 0; c < CB; c++) {
                    __m256i dp = _mm256_add_epi32(_mm256_madd_epi16(w0, x0[c]), _mm256_madd_epi16(w1, x1[c]));
                    if (K == K_Q4_0 || K == K_Q5_0) dp = _mm256_sub_epi32(dp, corr[c]);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(sc[r][c][k]), acc[r][c]);
                }
            }
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) {
            float s = hsum256(acc[r][c]);
            if (with_min) s += hsum256(macc[r][c]);
            y[(size_t)c * ldy + r] = s;
        }
}

/* Q6_K against int16 activation blocks, as quant_avx512.c's q6k_tile with two ymm of words per activation block:
 * vpmaddwd of the low one gives the first 16-element sub-block's eight lanes, of the high one the second's. */
AI void q6k_tile(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
                 const lmf_block_q16a *const *xc, float *y, int ldy) {
    (void)K;
    __m256 acc[4][4];
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps();
    const __m128i m4 = _mm_set1_epi8(0x0f), m3 = _mm_set1_epi8(3), off = _mm_set1_epi8(32);
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
                __m256i x0[4], x1[4];
                for (int c = 0; c < CB; c++) {
                    x0[c] = _mm256_loadu_si256((const __m256i *)xc[c][b].qs);
                    x1[c] = _mm256_loadu_si256((const __m256i *)(xc[c][b].qs + 16));
                }
                for (int r = 0; r < RB; r++) {
                    __m256i w[2];
                    for (int h = 0; h < 2; h++) {
                        __m128i lo = _mm_loadu_si128((const __m128i *)(p[r] + 64 * half + 32 * (k & 1) + 16 * h));
                        if (k >> 1) lo = _mm_srli_epi16(lo, 4);
                        __m128i hi = _mm_loadu_si128((const __m128i *)(p[r] + 128 + 32 * half + 16 * h));
                        hi = _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hi, 2 * k), m3), 4);
                        w[h] = _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_or_si128(_mm_and_si128(lo, m4), hi), off));
                    }
                    float s0 = fsc[r][8 * half + 2 * k], s1 = fsc[r][8 * half + 2 * k + 1];
                    for (int c = 0; c < CB; c++) {
                        __m256 dx = _mm256_set1_ps(xc[c][b].d);
                        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(w[0], x0[c])),
                                                    _mm256_mul_ps(_mm256_set1_ps(s0), dx), acc[r][c]);
                        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(w[1], x1[c])),
                                                    _mm256_mul_ps(_mm256_set1_ps(s1), dx), acc[r][c]);
                    }
                }
            }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) y[(size_t)c * ldy + r] = hsum256(acc[r][c]);
}

/* Q4_K / Q5_K (K = 1) against int16 activation blocks, as quant_avx512.c's q45k_tile with two ymm of words per
 * sub-block (Q5_K's fifth bit spread to bytes by a compare before widening). */
AI void q45k_tile(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
                  const lmf_block_q16a *const *xc, float *y, int ldy) {
    const int bsz = K ? 176 : 144;
    __m256 acc[4][4];
    float macc[4][4];
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps(), macc[r][c] = 0.0f;
    const __m128i m4 = _mm_set1_epi8(0x0f), sixteen = _mm_set1_epi8(16);
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
            __m256i x0[4], x1[4];
            for (int c = 0; c < CB; c++) {
                x0[c] = _mm256_loadu_si256((const __m256i *)xc[c][b].qs);
                x1[c] = _mm256_loadu_si256((const __m256i *)(xc[c][b].qs + 16));
            }
            for (int r = 0; r < RB; r++) {
                __m256i w[2];
                for (int h = 0; h < 2; h++) {
                    __m128i q = _mm_loadu_si128((const __m128i *)(p[r] + (K ? 48 : 16) + 32 * (j / 2) + 16 * h));
                    if (j & 1) q = _mm_srli_epi16(q, 4);
                    q = _mm_and_si128(q, m4);
                    if (K) {
                        __m128i bit = _mm_set1_epi8((char)(1 << j));
                        __m128i qh = _mm_loadu_si128((const __m128i *)(p[r] + 16 + 16 * h));
                        q = _mm_or_si128(q, _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh, bit), bit), sixteen));
                    }
                    w[h] = _mm256_cvtepu8_epi16(q);
                }
                for (int c = 0; c < CB; c++) {
                    __m256i dp = _mm256_add_epi32(_mm256_madd_epi16(w[0], x0[c]), _mm256_madd_epi16(w[1], x1[c]));
                    __m256 sd = _mm256_set1_ps(fsc[r][j] * xc[c][b].d);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), sd, acc[r][c]);
                    macc[r][c] += fmn[r][j] * xc[c][b].s;
                }
            }
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) y[(size_t)c * ldy + r] = hsum256(acc[r][c]) - macc[r][c];
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
QTILES(q4_0_i16, qtile16, lmf_block_q16a, K_Q4_0)
QTILES(q4_1_i16, qtile16, lmf_block_q16a, K_Q4_1)
QTILES(q5_0_i16, qtile16, lmf_block_q16a, K_Q5_0)
QTILES(q5_1_i16, qtile16, lmf_block_q16a, K_Q5_1)
QTILES(q6_k_i16, q6k_tile, lmf_block_q16a, 0)
QTILES(q4_k_i16, q45k_tile, lmf_block_q16a, 0)
QTILES(q5_k_i16, q45k_tile, lmf_block_q16a, 1)

/* rows in tiles of four when there is one column; otherwise row by row, columns four at a time. tiles[0] is the
 * 4-row, 1-column tile, tiles[c] the 1-row, c-column one. */
/* The same steps as quant_avx512.c's qmatvec in 16-lane intrinsics: each ISA file is compiled alone. */
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

/* ---- float weights ------------------------------------------------------------------------------------------ */

enum { F_F32, F_F16, F_BF16 };

/* 8 weights from element i of a row; the tail (cnt < 8) goes through a zeroed copy, never reading past the row */
AI __m256 wload(const int F, const void *row, int i) {
    if (F == F_F32) return _mm256_loadu_ps((const float *)row + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (F == F_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
AI __m256 wload_tail(const int F, const void *row, int i, int cnt) {
    uint8_t buf[32] = {0};
    memcpy(buf, (const char *)row + (size_t)i * (F == F_F32 ? 4 : 2), (size_t)cnt * (F == F_F32 ? 4 : 2));
    return wload(F, buf, 0);
}
AI __m256 xload_tail(const float *x, int cnt) {
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(x, m);
}

/* as quant_avx512.c's ftile: RB rows (wr[r]) x CB columns, y of row r column c at yr[r] + c ldy, prefetch pf ahead */
AI void ftile(const int F, const int RB, const int CB, int n, const uint8_t *const *wr, size_t pf,
              const float *const *xc, float *const *yr, int ldy) {
    __m256 acc[4][4];
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps();
    int i = 0;
    const int es = F == F_F32 ? 4 : 2;
    for (; i + 8 <= n; i += 8) {
        __m256 xv[4];
        for (int c = 0; c < CB; c++) xv[c] = _mm256_loadu_ps(xc[c] + i);
        for (int r = 0; r < RB; r++) {
            if (pf && (i * es) % 64 == 0) _mm_prefetch((const char *)wr[r] + pf + (size_t)i * es, _MM_HINT_T0);
            __m256 w = wload(F, wr[r], i);
            for (int c = 0; c < CB; c++) acc[r][c] = _mm256_fmadd_ps(w, xv[c], acc[r][c]);
        }
    }
    if (i < n) {
        __m256 xv[4];
        for (int c = 0; c < CB; c++) xv[c] = xload_tail(xc[c] + i, n - i);
        for (int r = 0; r < RB; r++) {
            __m256 w = wload_tail(F, wr[r], i, n - i);
            for (int c = 0; c < CB; c++) acc[r][c] = _mm256_fmadd_ps(w, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) yr[r][(size_t)c * ldy] = hsum256(acc[r][c]);
}

/* one column: four rows at a time from rows of 128 elements (quant_fmatvec.inc) */
#define FMV_TILE_MIN_N 128
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

AI __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* roundf (half away from zero) exactly: floor(a) + floor(2 (a - floor(a))) with the sign put back */
AI __m256 roundf8(__m256 v) {
    __m256 a = abs8(v), f = _mm256_floor_ps(a), fr = _mm256_sub_ps(a, f);
    __m256 b = _mm256_add_ps(f, _mm256_floor_ps(_mm256_add_ps(fr, fr)));
    return _mm256_or_ps(b, _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
}

/* see quantize_q16a_ref */
static void quantize_q16a(const float *x, int n, lmf_block_q16a *out) {
    for (int b = 0; b < n / 32; b++, x += 32, out++) {
        __m256 v[4];
        for (int j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(x + 8 * j);
        __m256 m = _mm256_max_ps(_mm256_max_ps(abs8(v[0]), abs8(v[1])), _mm256_max_ps(abs8(v[2]), abs8(v[3])));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        __m256 big = _mm256_set1_ps(FLT_MAX);
        int finite = !_mm256_movemask_ps(_mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(abs8(v[0]), big, _CMP_NLE_UQ),
                                                                   _mm256_cmp_ps(abs8(v[1]), big, _CMP_NLE_UQ)),
                                                      _mm256_or_ps(_mm256_cmp_ps(abs8(v[2]), big, _CMP_NLE_UQ),
                                                                   _mm256_cmp_ps(abs8(v[3]), big, _CMP_NLE_UQ))));
        if (!(amax >= LMF_Q8A_MIN_AMAX) || !finite) { /* x * 0 would keep a NaN */
            memset(out, 0, sizeof *out);
            if (!finite) out->d = out->s = NAN; /* every product with the block is NaN: a NaN never vanishes */
            continue;
        }
        float d = amax / 32767, id = d ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++) q[j] = _mm256_cvtps_epi32(roundf8(_mm256_mul_ps(v[j], vid)));
        /* pack 32 int32 (all in [-32767, 32767]) to int16 in element order: packs works per 128-bit lane */
        __m256i p0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xd8);
        __m256i p1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0xd8);
        _mm256_storeu_si256((__m256i *)out->qs, p0);
        _mm256_storeu_si256((__m256i *)(out->qs + 16), p1);
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        out->d = d;
        out->s = d * (float)_mm_cvtsi128_si32(s4);
    }
}

static void quantize_q8a(const float *x, int n, lmf_block_q8a *out) {
    for (int b = 0; b < n / 32; b++, x += 32, out++) {
        __m256 v[4];
        for (int j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(x + 8 * j);
        __m256 m = _mm256_max_ps(_mm256_max_ps(abs8(v[0]), abs8(v[1])), _mm256_max_ps(abs8(v[2]), abs8(v[3])));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        if (!(amax >= LMF_Q8A_MIN_AMAX)) amax = 0.0f; /* 1/d would overflow: the block is zero */
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++) q[j] = _mm256_cvtps_epi32(roundf8(_mm256_mul_ps(v[j], vid)));
        /* pack 32 int32 (all in [-127, 127]) to int8 in element order */
        __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out->qs, p8);
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        out->d = d;
        out->s = d * (float)_mm_cvtsi128_si32(s4);
    }
}

/* ---- dequantization (bit-exact with quant_ref.c) ------------------------------------------------------------ */

AI __m256 rounded(__m256 v) {
    __asm__("" : "+x"(v));
    return v;
}

/* 16 signed bytes -> floats, scaled (declared in quant_dequant.inc) */
AI void emit16(float *dst, __m128i q, float d, float m, const int op) {
    __m256i q0 = _mm256_cvtepi8_epi32(q), q1 = _mm256_cvtepi8_epi32(_mm_srli_si128(q, 8));
    __m256 v0 = rounded(_mm256_mul_ps(_mm256_cvtepi32_ps(q0), _mm256_set1_ps(d)));
    __m256 v1 = rounded(_mm256_mul_ps(_mm256_cvtepi32_ps(q1), _mm256_set1_ps(d)));
    if (op == DQ_MUL_SUB) v0 = _mm256_sub_ps(v0, _mm256_set1_ps(m)), v1 = _mm256_sub_ps(v1, _mm256_set1_ps(m));
    else if (op == DQ_MUL_ADD) v0 = _mm256_add_ps(v0, _mm256_set1_ps(m)), v1 = _mm256_add_ps(v1, _mm256_set1_ps(m));
    _mm256_storeu_ps(dst, v0);
    _mm256_storeu_ps(dst + 8, v1);
}

static void dequant(uint32_t type, const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    switch (type) {
    case LMF_GGML_F16: {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
        for (; i < n; i++) dst[i] = lmf_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return;
    }
    case LMF_GGML_BF16: {
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(
                                          _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i))), 16)));
        for (; i < n; i++) dst[i] = lmf_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return;
    }
    case LMF_GGML_Q8_0:
        for (size_t b = 0; b < n / 32; b++, p += 34, dst += 32) {
            __m256 d = _mm256_set1_ps(_cvtsh_ss((uint16_t)(p[0] | p[1] << 8)));
            for (int j = 0; j < 4; j++) {
                __m128i q = _mm_loadl_epi64((const __m128i *)(p + 2 + 8 * j));
                _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d));
            }
        }
        return;
    case LMF_GGML_Q4_0:
    case LMF_GGML_Q4_1: {
        int q41 = type == LMF_GGML_Q4_1, bs = q41 ? 20 : 18;
        for (size_t b = 0; b < n / 32; b++, p += bs, dst += 32) {
            __m256 d = _mm256_set1_ps(_cvtsh_ss((uint16_t)(p[0] | p[1] << 8)));
            __m128i v = _mm_loadu_si128((const __m128i *)(p + (q41 ? 4 : 2)));
            __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x0f)), hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f));
            __m256i q[4] = {_mm256_cvtepu8_epi32(lo), _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)),
                            _mm256_cvtepu8_epi32(hi), _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))};
            __m256 m = _mm256_set1_ps(q41 ? _cvtsh_ss((uint16_t)(p[2] | p[3] << 8)) : 0.0f);
            for (int j = 0; j < 4; j++) {
                if (q41)
                    _mm256_storeu_ps(dst + 8 * j, _mm256_add_ps(rounded(_mm256_mul_ps(_mm256_cvtepi32_ps(q[j]), d)), m));
                else
                    _mm256_storeu_ps(dst + 8 * j,
                                     _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[j], _mm256_set1_epi32(8))), d));
            }
        }
        return;
    }
    default:
        if (!dequant_q5_k(type, p, dst, n)) lmf_dequant_ref(type, src, dst, n);
    }
}

/* ---- R16 groups (quant.h) ------------------------------------------------------------------------------------
 * As quant_avx512.c's r16_tile with eight lanes: a group's 16 rows are two 8-row halves (one ymm of int16 pairs
 * each), both taken in one pass over the group's blocks, so each activation pair is broadcast once for the 16 rows
 * and each weight byte is read once; vpmaddwd + vpaddd replace vpdpwssd. One or two columns share each unpacked
 * weight vector. Each block's bytes are prefetched LMF_R16_PREFETCH bytes ahead, as quant_avx512.c does. Why one
 * pass: the earlier kernel took each half in its own pass (its second pass re-reading the group from L1/L2) and, with
 * one column, two streams' groups side by side to keep the memory busy; on an AVX2-only Zen 1 that kernel spilled
 * its broadcasts to the stack and ran SmolLM2's decode matrices 1.3x slower than this one (one stream: the single
 * pass keeps the reads going without a second one). Q5_x merge the fifth bits (quant.h's shift of the fifth-bit
 * words) with the nibbles as they are unpacked (r16_pairs5); Q5_0's "- 16" is taken off each block's integer dot
 * as 16 sum(x), so its dot is still the reference's exactly and it needs no float offset term. */
static const int r16_gbs[5] = {16 * 34, 16 * 18, 16 * 20, 16 * 22, 16 * 24}; /* by K */
static const int r16_nib[5] = {32, 32, 64, 96, 128};                        /* nibble chunks' offset, by K */

/* the nibble pair words of a chunk's step i (v: the chunk's 8 rows) */
AI __m256i r16_pair4(__m256i v, int i) {
    const __m256i m4 = _mm256_set1_epi32(0x000F000F);
    return i == 3 ? _mm256_srli_epi16(v, 12) : _mm256_and_si256(i ? _mm256_srli_epi32(v, 4 * i) : v, m4);
}

/* every line of a group's unit fetched LMF_R16_PREFETCH bytes ahead (quant.h) */
AI void r16_prefetch(const uint8_t *g, int bytes) {
    for (int l = 0; l < bytes; l += 64) _mm_prefetch((const char *)g + LMF_R16_PREFETCH + l, _MM_HINT_T0);
}

/* d[h * CB + c] += the 8-row half h's pair words w[h] against column c's activation pair p of block b. The empty
 * asm keeps each sum a running one: gcc otherwise reassociates the (integer, so exact either way) chain into a tree
 * over all of a block's products, which holds them all at once and spills most of them to the stack. */
AI void r16_madd2(const int CB, __m256i w0, __m256i w1, const lmf_block_q16a *const *xc, int b, int p, __m256i *d) {
    for (int c = 0; c < CB; c++) {
        __m256i x = _mm256_set1_epi32(((const int32_t *)xc[c][b].qs)[p]);
        d[c] = _mm256_add_epi32(d[c], _mm256_madd_epi16(w0, x));
        d[CB + c] = _mm256_add_epi32(d[CB + c], _mm256_madd_epi16(w1, x));
        __asm__("" : "+x"(d[c]), "+x"(d[CB + c]));
    }
}

/* a chunk's four pair words from its even pairs' bytes e and odd pairs' bytes o (q in the bytes): each pair's two
 * words are every other byte */
AI void r16_pairs_from_bytes(__m256i e, __m256i o, __m256i *w) {
    const __m256i lo = _mm256_set1_epi16(0xff);
    w[0] = _mm256_and_si256(e, lo), w[2] = _mm256_srli_epi16(e, 8);
    w[1] = _mm256_and_si256(o, lo), w[3] = _mm256_srli_epi16(o, 8);
}

/* Q5_x: the four pair words of chunk ch (v: the chunk's 8 rows; q in 0..31) at once. The nibbles go to bytes
 * first, even pairs' (bits 0-3, 8-11, 16-19, 24-27 of a row's word) and odd pairs' (v >> 4), and one shift of the
 * fifth-bit word puts each pair's fifth bits at bit 4 of those bytes (quant.h: pair i's at 4 i + ch and
 * 16 + 4 i + ch), then r16_pairs_from_bytes: 12-13 operations for four pairs where shifting each
 * pair's bits into place took 17-18 (Q5_x 1.15-1.2x in L2 on Zen 1). */
AI void r16_pairs5(__m256i v, __m256i qh, int ch, __m256i *w) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), b16 = _mm256_set1_epi8(0x10);
    __m256i e = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_slli_epi32(qh, 4 - ch), b16));
    __m256i o = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(v, 4), m4),
                                _mm256_and_si256(ch ? _mm256_srli_epi32(qh, ch) : qh, b16));
    r16_pairs_from_bytes(e, o, w);
}

/* block b's integer dots of 16 rows (4 nibble chunks from nib, 64 bytes apart, each two 32-byte halves; Q5_x
 * fifth-bit words qh[h], q in 0..31) with CB columns, added to d[h * CB + c] */
AI void r16_nib_dot(const int K, const int CB, const uint8_t *nib, const __m256i *qh, const lmf_block_q16a *const *xc,
                    int b, __m256i *d) {
#pragma GCC unroll 4
    for (int ch = 0; ch < 4; ch++) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(nib + 64 * ch));
        __m256i v1 = _mm256_loadu_si256((const __m256i *)(nib + 64 * ch + 32));
        if (K == K_Q5_0 || K == K_Q5_1) {
            __m256i w0[4], w1[4];
            r16_pairs5(v0, qh[0], ch, w0);
            r16_pairs5(v1, qh[1], ch, w1);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) r16_madd2(CB, w0[i], w1[i], xc, b, 4 * ch + i, d);
            continue;
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) r16_madd2(CB, r16_pair4(v0, i), r16_pair4(v1, i), xc, b, 4 * ch + i, d);
    }
}

/* the two halves' fp16 vectors at g (8 rows each, 16 bytes apart) */
AI void r16_f16x2(const uint8_t *g, __m256 *v) {
    v[0] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
    v[1] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
}

/* xs (Q5_0 only): 16 sum(qs) of each of column c's blocks at xs[c][b] (r16_xsums) */
AI void r16_group(const int K, const int CB, int nb, const uint8_t *g, const lmf_block_q16a *const *xc,
                  const int32_t *const *xs, float *y, int ldy) {
    const int gbs = r16_gbs[K], qoff = r16_nib[K], with_min = K == K_Q4_1 || K == K_Q5_1;
    __m256 acc[4], acc2[4]; /* [h * CB + c] */
    for (int i = 0; i < 2 * CB; i++) acc[i] = _mm256_setzero_ps(), acc2[i] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++, g += gbs) {
        r16_prefetch(g, gbs);
        __m256i d[4];
        for (int i = 0; i < 2 * CB; i++) d[i] = _mm256_setzero_si256();
        if (K == K_Q8_0) {
#pragma GCC unroll 16
            for (int p = 0; p < 16; p++)
                r16_madd2(CB, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(g + 32 + 32 * p))),
                          _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(g + 48 + 32 * p))), xc, b, p, d);
        } else {
            __m256i qh[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            if (K == K_Q5_0 || K == K_Q5_1)
                for (int h = 0; h < 2; h++) qh[h] = _mm256_loadu_si256((const __m256i *)(g + qoff - 64 + 32 * h));
            r16_nib_dot(K, CB, g + qoff, qh, xc, b, d);
            for (int c = 0; c < CB && K == K_Q5_0; c++) { /* sum (q - 16) x = sum q x - 16 sum x, exactly */
                __m256i o = _mm256_set1_epi32(xs[c][b]);
                d[c] = _mm256_sub_epi32(d[c], o), d[CB + c] = _mm256_sub_epi32(d[CB + c], o);
            }
        }
        __m256 dw[2], mw[2];
        r16_f16x2(g, dw);
        if (with_min) r16_f16x2(g + 32, mw);
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < CB; c++) {
                __m256 dot = _mm256_cvtepi32_ps(d[h * CB + c]);
                acc[h * CB + c] = _mm256_fmadd_ps(dot, _mm256_mul_ps(dw[h], _mm256_set1_ps(xc[c][b].d)), acc[h * CB + c]);
                if (K == K_Q4_0 || with_min)
                    acc2[h * CB + c] = _mm256_fmadd_ps(with_min ? mw[h] : dw[h], _mm256_set1_ps(xc[c][b].s),
                                                       acc2[h * CB + c]);
            }
    }
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < CB; c++) {
            __m256 a = acc[h * CB + c], a2 = acc2[h * CB + c];
            __m256 r = with_min      ? _mm256_add_ps(a, a2)
                       : K == K_Q4_0 ? _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), a2, a)
                                     : a;
            _mm256_storeu_ps(y + (size_t)c * ldy + 8 * h, r);
        }
}

/* Q4_K / Q5_K super-block groups (quant.h): a super-block's 8 sub-blocks are 32-element blocks of the Q4_1 / Q5_1
 * kind whose scale and min come from the rows' 6-bit fields, unpacked for 8 rows at once from the three scale words
 * at w (32-byte loads 64 bytes apart; ggml's get_scale_min_k4 on 32-bit lanes), d * sc and dmin * m formed as the
 * reference forms them. */
AI void k4_scale_min8(int j, const uint8_t *w, __m256i *sc, __m256i *m) {
    const __m256i m6 = _mm256_set1_epi32(63), m4 = _mm256_set1_epi32(15), m2 = _mm256_set1_epi32(3);
    __m256i w0 = _mm256_loadu_si256((const __m256i *)w), w1 = _mm256_loadu_si256((const __m256i *)(w + 64));
    if (j < 4) {
        *sc = _mm256_and_si256(_mm256_srli_epi32(w0, 8 * j), m6);
        *m = _mm256_and_si256(_mm256_srli_epi32(w1, 8 * j), m6);
        return;
    }
    __m256i w2 = _mm256_loadu_si256((const __m256i *)(w + 128));
    int t = 8 * (j - 4);
    __m256i hs = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w0, t + 6), m2), 4);
    __m256i hm = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w1, t + 6), m2), 4);
    *sc = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w2, t), m4), hs);
    *m = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w2, t + 4), m4), hm);
}

AI void r16k_group(const int K, const int CB, int nsb, const uint8_t *g, const lmf_block_q16a *const *xc, float *y,
                   int ldy) {
    const int sbs = 16 * (K == K_Q5_K ? 176 : 144), nib0 = K == K_Q5_K ? 768 : 256;
    const int KB = K == K_Q5_K ? K_Q5_1 : K_Q4_1; /* the block kind of r16_pair */
    __m256 acc[4], acc2[4];
    for (int i = 0; i < 2 * CB; i++) acc[i] = _mm256_setzero_ps(), acc2[i] = _mm256_setzero_ps();
    for (int sb = 0; sb < nsb; sb++, g += sbs) {
        r16_prefetch(g, sbs);
        __m256 dw[2], mw[2];
        r16_f16x2(g, dw);
        r16_f16x2(g + 32, mw);
        for (int j = 0; j < 8; j++) {
            const int b = sb * 8 + j;
            __m256i d[4], qh[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int i = 0; i < 2 * CB; i++) d[i] = _mm256_setzero_si256();
            if (K == K_Q5_K)
                for (int h = 0; h < 2; h++) qh[h] = _mm256_loadu_si256((const __m256i *)(g + 256 + 64 * j + 32 * h));
            r16_nib_dot(KB, CB, g + nib0 + 256 * j, qh, xc, b, d);
            for (int h = 0; h < 2; h++) {
                __m256i sc, mn;
                k4_scale_min8(j, g + 64 + 32 * h, &sc, &mn);
                __m256 fsc = _mm256_mul_ps(dw[h], _mm256_cvtepi32_ps(sc)), fmn = _mm256_mul_ps(mw[h], _mm256_cvtepi32_ps(mn));
                for (int c = 0; c < CB; c++) {
                    __m256 dot = _mm256_cvtepi32_ps(d[h * CB + c]);
                    __m256 sd = _mm256_mul_ps(fsc, _mm256_set1_ps(xc[c][b].d));
                    acc[h * CB + c] = _mm256_fmadd_ps(dot, sd, acc[h * CB + c]);
                    acc2[h * CB + c] = _mm256_fmadd_ps(fmn, _mm256_set1_ps(xc[c][b].s), acc2[h * CB + c]);
                }
            }
        }
    }
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < CB; c++)
            _mm256_storeu_ps(y + (size_t)c * ldy + 8 * h, _mm256_sub_ps(acc[h * CB + c], acc2[h * CB + c]));
}

/* Q6_K super-block groups (quant.h): per 32-element block the low nibbles as Q4_x's chunks and the top two bits in
 * two words a row (chunks 0-1, 2-3), arranged so that one shift and one mask put a chunk's top bits beside the
 * bytes its nibbles go to (as r16_pairs5 does with the fifth bits), q in 0..63; each 16-element half of a block
 * (chunks 0-1, 2-3) is its own integer dot with its own int8 scale, its "- 32" taken off as 32 sum(x) of the half
 * (exact in int32). */
AI void r16_pairs6(__m256i v, __m256i top, int ch, __m256i *w) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
    /* quant.h: the even pairs' top bits at bits 0-1 (ch even) or 4-5 (odd) of each byte, the odd pairs' at 2-3 / 6-7 */
    __m256i te = ch & 1 ? top : _mm256_slli_epi32(top, 4);
    __m256i to = ch & 1 ? _mm256_srli_epi32(top, 2) : _mm256_slli_epi32(top, 2);
    __m256i e = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(te, m2));
    __m256i o = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(v, 4), m4), _mm256_and_si256(to, m2));
    r16_pairs_from_bytes(e, o, w);
}
/* the int8 scale i (< 16) of 8 rows as floats, from the four scale words of a half (w: 32-byte loads) */
AI __m256 q6k_scale8(const uint8_t *words, int i) {
    __m256i w = _mm256_loadu_si256((const __m256i *)(words + 64 * (i / 4)));
    return _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(w, 8 * (3 - i % 4)), 24));
}

/* xs: 32 sum(qs) of each 16-element half of column c's blocks at xs[c][2 b + half] (r16_xsums) */
AI void r16q6_group(const int CB, int nsb, const uint8_t *g, const lmf_block_q16a *const *xc, const int32_t *const *xs,
                    float *y, int ldy) {
    const int sbs = 16 * 210;
    __m256 acc[4];
    for (int i = 0; i < 2 * CB; i++) acc[i] = _mm256_setzero_ps();
    for (int sb = 0; sb < nsb; sb++, g += sbs) {
        r16_prefetch(g, sbs);
        __m256 dw[2];
        r16_f16x2(g, dw);
        for (int j = 0; j < 8; j++) {
            const int b = sb * 8 + j;
            const uint8_t *blk = g + 288 + 384 * j;
            __m256i dd[2][4]; /* [16-element half of the block][h * CB + c] */
            for (int i = 0; i < 2 * CB; i++) dd[0][i] = _mm256_setzero_si256(), dd[1][i] = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int ch = 0; ch < 4; ch++) {
                __m256i w0[4], w1[4];
                r16_pairs6(_mm256_loadu_si256((const __m256i *)(blk + 64 * ch)),
                           _mm256_loadu_si256((const __m256i *)(blk + 256 + 64 * (ch / 2))), ch, w0);
                r16_pairs6(_mm256_loadu_si256((const __m256i *)(blk + 64 * ch + 32)),
                           _mm256_loadu_si256((const __m256i *)(blk + 256 + 64 * (ch / 2) + 32)), ch, w1);
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) r16_madd2(CB, w0[i], w1[i], xc, b, 4 * ch + i, dd[ch / 2]);
            }
            for (int hb = 0; hb < 2; hb++) /* sum (q - 32) x = sum q x - 32 sum x, exactly */
                for (int c = 0; c < CB; c++) {
                    __m256i o = _mm256_set1_epi32(xs[c][2 * b + hb]);
                    dd[hb][c] = _mm256_sub_epi32(dd[hb][c], o), dd[hb][CB + c] = _mm256_sub_epi32(dd[hb][CB + c], o);
                }
            for (int h = 0; h < 2; h++) {
                __m256 f0 = _mm256_mul_ps(dw[h], q6k_scale8(g + 32 + 32 * h, 2 * j));
                __m256 f1 = _mm256_mul_ps(dw[h], q6k_scale8(g + 32 + 32 * h, 2 * j + 1));
                for (int c = 0; c < CB; c++) {
                    __m256 dx = _mm256_set1_ps(xc[c][b].d);
                    int k = h * CB + c;
                    __m256 a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dd[0][k]), _mm256_mul_ps(f0, dx), acc[k]);
                    acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dd[1][k]), _mm256_mul_ps(f1, dx), a);
                }
            }
        }
    }
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < CB; c++) _mm256_storeu_ps(y + (size_t)c * ldy + 8 * h, acc[h * CB + c]);
}

/* one group (16 rows) at g against CB columns, of whichever kind K is */
AI void r16_any_group(const int K, const int CB, int n, const uint8_t *g, const lmf_block_q16a *const *xc,
                      const int32_t *const *xs, float *y, int ldy) {
    if (K == K_Q6_K) r16q6_group(CB, n / 256, g, xc, xs, y, ldy);
    else if (K == K_Q4_K || K == K_Q5_K) r16k_group(K, CB, n / 256, g, xc, y, ldy);
    else r16_group(K, CB, n / 32, g, xc, xs, y, ldy);
}

/* the sums of an activation block's two 16-element halves (exact: |sum| < 2^19) */
AI void q16a_half_sums(const lmf_block_q16a *x, int32_t *s) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) {
        __m256i v = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(x->qs + 16 * h)), ones);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
        s[h] = _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1)));
    }
}
/* the offsets the Q5_0 / Q6_K kernels take off their blocks' integer dots for nb blocks of column x: 16 sum(x) a
 * block (Q5_0), 32 sum(x) a 16-element half (Q6_K) */
AI void r16_xsums(const int K, const lmf_block_q16a *x, int nb, int32_t *out) {
    for (int b = 0; b < nb; b++) {
        int32_t s[2];
        q16a_half_sums(x + b, s);
        if (K == K_Q5_0) out[b] = 16 * (s[0] + s[1]);
        else out[2 * b] = 32 * s[0], out[2 * b + 1] = 32 * s[1];
    }
}

/* groups outermost (as quant_avx512.c), read as one stream; Q5_0 and Q6_K take the columns a few KB of block sums
 * (r16_xsums) at a time */
AI void r16_mv(const int K, int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
               int ldy) {
    enum { XS_STACK = 4096 }; /* ints: 16 KB */
    const int sums = K == K_Q5_0 || K == K_Q6_K, ns = (n / 32) * (K == K_Q6_K ? 2 : 1); /* sums a column */
    const int cc = !sums || ncols <= 2 || ncols * ns <= XS_STACK ? ncols : ns <= XS_STACK / 2 ? XS_STACK / ns / 2 * 2 : 2;
    int32_t xs_stack[XS_STACK], *xs = (size_t)cc * ns * sums <= XS_STACK ? xs_stack : lmf_xmalloc(sizeof(int32_t) * cc * ns);
    for (int c1 = 0; c1 < ncols; c1 += cc) {
        const int c2 = c1 + cc < ncols ? c1 + cc : ncols;
        for (int c = c1; c < c2 && sums; c++)
            r16_xsums(K, (const lmf_block_q16a *)((const char *)x + (size_t)c * xb), n / 32, xs + (size_t)(c - c1) * ns);
        for (int gi = 0; gi < nrows / 16; gi++) {
            const uint8_t *g = (const uint8_t *)W + (size_t)gi * 16 * rb;
            for (int c0 = c1; c0 < c2; c0 += 2) {
                const lmf_block_q16a *xc[2];
                const int32_t *xsc[2];
                for (int c = 0; c < 2; c++) { /* a lone last column: xc[1] = xc[0], unread */
                    int k = c0 + c < c2 ? c : 0;
                    xc[c] = (const lmf_block_q16a *)((const char *)x + (size_t)(c0 + k) * xb);
                    xsc[c] = xs + (size_t)(c0 + k - c1) * ns * sums;
                }
                float *yo = y + (size_t)c0 * ldy + 16 * gi;
                if (c2 - c0 >= 2) r16_any_group(K, 2, n, g, xc, xsc, yo, ldy);
                else r16_any_group(K, 1, n, g, xc, xsc, yo, ldy);
            }
        }
    }
    if (xs != xs_stack) free(xs); /* rows longer than 64K elements (Q5_0) or 32K (Q6_K) */
}

#define R16MV(t, K)                                                                                                \
    static void t##_r16(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y, \
                        int ldy) {                                                                                 \
        r16_mv(K, n, nrows, W, rb, ncols, x, xb, y, ldy);                                                          \
    }
R16MV(q8_0, K_Q8_0)
R16MV(q4_0, K_Q4_0)
R16MV(q4_1, K_Q4_1)
R16MV(q5_0, K_Q5_0)
R16MV(q5_1, K_Q5_1)
R16MV(q4_k, K_Q4_K)
R16MV(q5_k, K_Q5_K)
R16MV(q6_k, K_Q6_K)

/* one 32-element block of 8 rows (nibble chunks at nib, fifth-bit words at qh when FIFTH) to k-major fp32 rows of
 * o: (q - off) * d (OP 0), q * d + m (OP 1) or q * d - m (OP 2), the product rounded before the add as the
 * reference rounds it */
AI void dq_r16_block(const int OP, const int FIFTH, const uint8_t *nib, const uint8_t *qh, int off, __m256 d,
                     __m256 m, float *o, size_t ld) {
    const __m256i m4 = _mm256_set1_epi32(0x0f), one = _mm256_set1_epi32(1);
    __m256i hv = FIFTH ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(nib + 64 * c));
        for (int e = 0; e < 8; e++) {
            __m256i q = _mm256_and_si256(_mm256_srli_epi32(v, (e & 1) ? 16 + 4 * (e >> 1) : 4 * (e >> 1)), m4);
            if (FIFTH) /* quant.h: element 8c + e's fifth bit at 16 (e & 1) + 4 (e / 2) + c */
                q = _mm256_or_si256(q, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(
                                           hv, ((e & 1) ? 16 : 0) + 4 * (e >> 1) + c), one), 4));
            float *row = o + (size_t)(8 * c + e) * ld;
            if (OP == 0) q = _mm256_sub_epi32(q, _mm256_set1_epi32(off));
            if (OP == 0) _mm256_storeu_ps(row, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
            else if (OP == 1) _mm256_storeu_ps(row, _mm256_add_ps(rounded(_mm256_mul_ps(_mm256_cvtepi32_ps(q), d)), m));
            else _mm256_storeu_ps(row, _mm256_sub_ps(rounded(_mm256_mul_ps(_mm256_cvtepi32_ps(q), d)), m));
        }
    }
}

/* k-major fp32 of a group, one 8-row half at a time (as quant_avx512.c's dequant_r16) */
static void dequant_r16(uint32_t type, int n, const void *group, float *dst, size_t ld) {
    const uint8_t *G = group;
    if (type == LMF_GGML_Q6_K) {
        const __m256i m4 = _mm256_set1_epi32(0x0f), m2 = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
        for (int sb = 0; sb < n / 256; sb++)
            for (int h = 0; h < 2; h++) {
                const uint8_t *g = G + (size_t)sb * 16 * 210;
                __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
                for (int j = 0; j < 8; j++) {
                    const uint8_t *blk = g + 288 + 384 * j;
                    float *o = dst + (size_t)(sb * 256 + 32 * j) * ld + 8 * h;
                    for (int c = 0; c < 4; c++) {
                        __m256 d = _mm256_mul_ps(dw, q6k_scale8(g + 32 + 32 * h, 2 * j + c / 2)); /* (d sc) q */
                        __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 64 * c + 32 * h));
                        __m256i top = _mm256_loadu_si256((const __m256i *)(blk + 256 + 64 * (c / 2) + 32 * h));
                        for (int e = 0; e < 8; e++) {
                            int sh = (e & 1) ? 16 + 4 * (e >> 1) : 4 * (e >> 1);
                            __m256i q = _mm256_and_si256(_mm256_srli_epi32(v, sh), m4);
                            __m256i t = _mm256_and_si256(
                                _mm256_srli_epi32(top, ((e & 1) ? 16 : 0) + 8 * (e >> 2) + 4 * (c & 1) + 2 * (e >> 1 & 1)), m2);
                            q = _mm256_sub_epi32(_mm256_or_si256(q, _mm256_slli_epi32(t, 4)), off);
                            _mm256_storeu_ps(o + (size_t)(8 * c + e) * ld, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
                        }
                    }
                }
            }
        return;
    }
    if (type == LMF_GGML_Q4_K || type == LMF_GGML_Q5_K) {
        const int q5 = type == LMF_GGML_Q5_K, sbs = 16 * (q5 ? 176 : 144), nib0 = q5 ? 768 : 256;
        for (int sb = 0; sb < n / 256; sb++)
            for (int h = 0; h < 2; h++) {
                const uint8_t *g = G + (size_t)sb * sbs;
                __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
                __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 32 + 16 * h)));
                for (int j = 0; j < 8; j++) {
                    __m256i sc, mn;
                    k4_scale_min8(j, g + 64 + 32 * h, &sc, &mn);
                    __m256 d = _mm256_mul_ps(dw, _mm256_cvtepi32_ps(sc)), m = _mm256_mul_ps(mw, _mm256_cvtepi32_ps(mn));
                    float *o = dst + (size_t)(sb * 256 + 32 * j) * ld + 8 * h;
                    const uint8_t *nib = g + nib0 + 256 * j + 32 * h, *qh = g + 256 + 64 * j + 32 * h;
                    if (q5) dq_r16_block(2, 1, nib, qh, 0, d, m, o, ld);
                    else dq_r16_block(2, 0, nib, qh, 0, d, m, o, ld);
                }
            }
        return;
    }
    const int K = type == LMF_GGML_Q8_0   ? K_Q8_0
                  : type == LMF_GGML_Q4_0 ? K_Q4_0
                  : type == LMF_GGML_Q4_1 ? K_Q4_1
                  : type == LMF_GGML_Q5_0 ? K_Q5_0
                                          : K_Q5_1;
    const int gbs = r16_gbs[K], qoff = r16_nib[K];
    for (int b = 0; b < n / 32; b++)
        for (int h = 0; h < 2; h++) {
            const uint8_t *g = G + (size_t)b * gbs;
            float *o = dst + (size_t)b * 32 * ld + 8 * h;
            __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16 * h)));
            if (K == K_Q8_0) {
                for (int p = 0; p < 16; p++) {
                    __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(g + 32 + 32 * p + 16 * h)));
                    __m256i e0 = _mm256_srai_epi32(_mm256_slli_epi32(w, 16), 16), e1 = _mm256_srai_epi32(w, 16);
                    _mm256_storeu_ps(o + (size_t)(2 * p) * ld, _mm256_mul_ps(_mm256_cvtepi32_ps(e0), d));
                    _mm256_storeu_ps(o + (size_t)(2 * p + 1) * ld, _mm256_mul_ps(_mm256_cvtepi32_ps(e1), d));
                }
                continue;
            }
            __m256 m = d;
            if (K == K_Q4_1 || K == K_Q5_1) m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 32 + 16 * h)));
            const uint8_t *nib = g + qoff + 32 * h, *qh = g + qoff - 64 + 32 * h;
            switch (K) {
            case K_Q4_0: dq_r16_block(0, 0, nib, qh, 8, d, m, o, ld); break;
            case K_Q4_1: dq_r16_block(1, 0, nib, qh, 0, d, m, o, ld); break;
            case K_Q5_0: dq_r16_block(0, 1, nib, qh, 16, d, m, o, ld); break;
            default: dq_r16_block(1, 1, nib, qh, 0, d, m, o, ld); break;
            }
        }
}

const lmf_quant_ops lmf_quant_avx2 = {
    .name = "avx2",
    .q8_0 = q8_0_i16_mv, .q4_0 = q4_0_i16_mv, .q4_1 = q4_1_i16_mv,
    .q5_0 = q5_0_i16_mv, .q5_1 = q5_1_i16_mv, .q6_k = q6_k_i16_mv, .q4_k = q4_k_i16_mv, .q5_k = q5_k_i16_mv,
    .q8_0_i8 = q8_0_i8_mv, .q4_0_i8 = q4_0_i8_mv, .q4_1_i8 = q4_1_i8_mv,
    .f32 = f32_mv, .f16 = f16_mv, .bf16 = bf16_mv,
    .q8_0_r16 = q8_0_r16, .q4_0_r16 = q4_0_r16, .q4_1_r16 = q4_1_r16,
    .q5_0_r16 = q5_0_r16, .q5_1_r16 = q5_1_r16, .q4_k_r16 = q4_k_r16, .q5_k_r16 = q5_k_r16,
    .q6_k_r16 = q6_k_r16,
    .dequant_r16 = dequant_r16,
    .quantize_q16a = quantize_q16a,
    .quantize_q8a = quantize_q8a,
    .dequant = dequant,
};
