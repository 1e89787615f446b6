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

/* Q2_K / Q3_K (K = 1) against int16 activation blocks (quant_ref.c q23_k_ref): per 16-element sub-block the 2-bit
 * quants (Q3_K: less 4 where the high bit is clear) as 16 int8 widened to one ymm of words, vpmaddwd against that
 * half of the activation block, and Q2_K's min term from the half's sum (one vpmaddwd by ones a column and block). */
AI void q23k_tile(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
                  const lmf_block_q16a *const *xc, float *y, int ldy) {
    const int bsz = K ? 110 : 84, qo = K ? 32 : 16;
    __m256 acc[4][4], macc[4][4];
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps(), macc[r][c] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int sb = 0; sb < nb / 8; sb++) {
        float fsc[4][16], fmn[4][16];
        const uint8_t *p[4];
        for (int r = 0; r < RB; r++) {
            p[r] = W + (size_t)r * rb + (size_t)sb * bsz;
            float d = dq_half(p[r] + (K ? 108 : 80)), mn = K ? 0.0f : dq_half(p[r] + 82);
            for (int j = 0; j < 16; j++) {
                fsc[r][j] = K ? d * (float)lmf_k3_scale(j, p[r] + 96) : d * (float)(p[r][j] & 0xf);
                fmn[r][j] = K ? 0.0f : mn * (float)(p[r][j] >> 4);
            }
            if (sb + 2 < nb / 8)
                for (int l = 0; l < bsz; l += 64) _mm_prefetch((const char *)p[r] + 2 * bsz + l, _MM_HINT_T0);
        }
        for (int k = 0; k < 8; k++) {
            int b = sb * 8 + k;
            __m256i xh[4][2];
            __m256 xs[4][2];
            for (int c = 0; c < CB; c++)
                for (int h = 0; h < 2; h++) {
                    xh[c][h] = _mm256_loadu_si256((const __m256i *)(xc[c][b].qs + 16 * h));
                    if (!K) xs[c][h] = _mm256_cvtepi32_ps(_mm256_madd_epi16(xh[c][h], ones));
                }
            for (int r = 0; r < RB; r++)
                for (int h = 0; h < 2; h++) {
                    __m128i q = dq_and(dq_srl(dq_load(p[r] + qo + 32 * (k / 4) + 16 * h), 2 * (k % 4)), 3);
                    if (K) /* - 4 where the high bit is clear */
                        q = _mm_sub_epi8(q, _mm_andnot_si128(dq_test(dq_load(p[r] + 16 * h), 1 << k), _mm_set1_epi8(4)));
                    __m256i w = _mm256_cvtepi8_epi16(q);
                    for (int c = 0; c < CB; c++) {
                        __m256 dx = _mm256_set1_ps(xc[c][b].d);
                        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(w, xh[c][h])),
                                                    _mm256_mul_ps(_mm256_set1_ps(fsc[r][2 * k + h]), dx), acc[r][c]);
                        if (!K)
                            macc[r][c] = _mm256_fmadd_ps(xs[c][h], _mm256_mul_ps(_mm256_set1_ps(fmn[r][2 * k + h]), dx),
                                                         macc[r][c]);
                    }
                }
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) y[(size_t)c * ldy + r] = hsum256(acc[r][c]) - (K ? 0.0f : hsum256(macc[r][c]));
}

/* IQ4_NL (K = 0) / IQ4_XS (K = 1) against int16 activation blocks (quant_ref.c iq4_ref): a 32-element (sub-)block's
 * 16 index bytes looked up by a byte shuffle in lmf_iq4nl_values, widened to words, vpmaddwd against the
 * activation block; one float scale a block. */
AI void iq4_tile(const int K, const int RB, const int CB, int nb, const uint8_t *W, size_t rb,
                 const lmf_block_q16a *const *xc, float *y, int ldy) {
    __m256 acc[4][4];
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) acc[r][c] = _mm256_setzero_ps();
    const __m128i tbl = _mm_loadu_si128((const __m128i *)lmf_iq4nl_values);
    for (int b = 0; b < nb; b++) {
        __m256i x0[4], x1[4];
        for (int c = 0; c < CB; c++) {
            x0[c] = _mm256_loadu_si256((const __m256i *)xc[c][b].qs);
            x1[c] = _mm256_loadu_si256((const __m256i *)(xc[c][b].qs + 16));
        }
        for (int r = 0; r < RB; r++) {
            const uint8_t *p = W + (size_t)r * rb + (K ? (size_t)(b / 8) * 136 : (size_t)b * 18);
            if (K ? b % 8 == 0 && b + 16 < nb : b % 4 == 0 && b + 8 < nb)
                for (int l = 0; l < (K ? 136 : 72); l += 64)
                    _mm_prefetch((const char *)p + (K ? 272 : 144) + l, _MM_HINT_T0);
            float d = dq_half(p);
            if (K) d = d * (float)lmf_iq4xs_scale(b % 8, p);
            __m128i v = dq_load(K ? p + 8 + 16 * (b % 8) : p + 2);
            __m256i w0 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(tbl, dq_and(v, 0x0f)));
            __m256i w1 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(tbl, dq_srl(v, 4)));
            for (int c = 0; c < CB; c++) {
                __m256i dp = _mm256_add_epi32(_mm256_madd_epi16(w0, x0[c]), _mm256_madd_epi16(w1, x1[c]));
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_set1_ps(d * xc[c][b].d), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < CB; c++) y[(size_t)c * ldy + r] = hsum256(acc[r][c]);
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
QTILES(q2_k_i16, q23k_tile, lmf_block_q16a, 0)
QTILES(q3_k_i16, q23k_tile, lmf_block_q16a, 1)
QTILES(iq4_nl_i16, iq4_tile, lmf_block_q16a, 0)
QTILES(iq4_xs_i16, iq4_tile, lmf_block_q16a, 1)

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
QMV(q2_k_i16)
QMV(q3_k_i16)
QMV(iq4_nl_i16)
QMV(iq4_xs_i16)
/* the row kernels the AVX-512 table shares (quant.h) */
#define SHARED_MV(t)                                                                                               \
    void lmf_##t##_mv_avx2(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb,        \
                           float *y, int ldy) {                                                                    \
        t##_i16_mv(n, nrows, W, rb, ncols, x, xb, y, ldy);                                                         \
    }
SHARED_MV(q2_k)
SHARED_MV(q3_k)
SHARED_MV(iq4_nl)
SHARED_MV(iq4_xs)

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

/* ---- R16 groups (quant.h): quant_r16_mv.inc over two ymm a 16-row vector ------------------------------------
 * Rows 0-7 in h[0], 8-15 in h[1]: each activation pair is broadcast once for both and each weight byte read once
 * (one pass over the group; the earlier kernel took each half in its own pass, its second re-reading the group,
 * and with one column paired two streams' groups: on an AVX2-only Zen 1 it spilled its broadcasts to the stack and
 * ran SmolLM2's decode matrices 1.3x slower). vpmaddwd + vpaddd replace vpdpwssd; the vpaddd is the only chain.
 * Four columns share each unpacked weight vector although their accumulators no longer all fit the 16 registers:
 * on Zen 1 at 16 columns (a server's batch) that beat two columns by 1.22x for Q8_0 and 1.08-1.17x for Q5_x and
 * the K-quants, Q4_x even (bench_multirow, docs/benchmarks.md session 27); one and two columns are unchanged. */
typedef struct { __m256i h[2]; } r16i;
typedef struct { __m256 h[2]; } r16f;
#define R16I_OP(name, expr)                                                                                        \
    AI r16i name(r16i a, r16i b) { return (r16i){{expr(a.h[0], b.h[0]), expr(a.h[1], b.h[1])}}; }
#define R16F_OP(name, expr)                                                                                        \
    AI r16f name(r16f a, r16f b) { return (r16f){{expr(a.h[0], b.h[0]), expr(a.h[1], b.h[1])}}; }
R16I_OP(ri_and, _mm256_and_si256)
R16I_OP(ri_or, _mm256_or_si256)
R16I_OP(ri_add, _mm256_add_epi32)
R16I_OP(ri_sub, _mm256_sub_epi32)
R16F_OP(rf_mul, _mm256_mul_ps)
R16F_OP(rf_add, _mm256_add_ps)
R16F_OP(rf_sub, _mm256_sub_ps)
AI r16i ri_load(const void *p) {
    return (r16i){{_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)p + 1)}};
}
AI r16i ri_load_s8(const void *p) {
    return (r16i){{_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p)),
                   _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p + 1))}};
}
AI r16i ri_zero(void) { return (r16i){{_mm256_setzero_si256(), _mm256_setzero_si256()}}; }
AI r16i ri_set1(int32_t v) { return (r16i){{_mm256_set1_epi32(v), _mm256_set1_epi32(v)}}; }
AI r16i ri_set1_8(char v) { return (r16i){{_mm256_set1_epi8(v), _mm256_set1_epi8(v)}}; }
AI r16i ri_set1_16(short v) { return (r16i){{_mm256_set1_epi16(v), _mm256_set1_epi16(v)}}; }
AI r16i ri_srl32(r16i a, int n) { return (r16i){{_mm256_srli_epi32(a.h[0], n), _mm256_srli_epi32(a.h[1], n)}}; }
AI r16i ri_sll32(r16i a, int n) { return (r16i){{_mm256_slli_epi32(a.h[0], n), _mm256_slli_epi32(a.h[1], n)}}; }
AI r16i ri_sra32(r16i a, int n) { return (r16i){{_mm256_srai_epi32(a.h[0], n), _mm256_srai_epi32(a.h[1], n)}}; }
AI r16i ri_srl16(r16i a, int n) { return (r16i){{_mm256_srli_epi16(a.h[0], n), _mm256_srli_epi16(a.h[1], n)}}; }
AI r16i ri_madd(r16i d, r16i w, r16i x) {
    return (r16i){{_mm256_add_epi32(d.h[0], _mm256_madd_epi16(w.h[0], x.h[0])),
                   _mm256_add_epi32(d.h[1], _mm256_madd_epi16(w.h[1], x.h[1]))}};
}
AI void ri_keep(r16i *d) { __asm__("" : "+x"(d->h[0]), "+x"(d->h[1])); }
AI r16i ri_load_u16(const void *p) {
    return (r16i){{_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)),
                   _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p + 1))}};
}
AI r16i ri_bcast16(const void *p) {
    __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return (r16i){{t, t}};
}
AI r16i ri_lut(r16i t, r16i i) {
    return (r16i){{_mm256_shuffle_epi8(t.h[0], i.h[0]), _mm256_shuffle_epi8(t.h[1], i.h[1])}};
}
AI r16f rf_load_f16(const void *p) {
    return (r16f){{_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
                   _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p + 1))}};
}
AI r16f rf_zero(void) { return (r16f){{_mm256_setzero_ps(), _mm256_setzero_ps()}}; }
AI r16f rf_set1(float v) { return (r16f){{_mm256_set1_ps(v), _mm256_set1_ps(v)}}; }
AI r16f rf_fmadd(r16f a, r16f b, r16f c) {
    return (r16f){{_mm256_fmadd_ps(a.h[0], b.h[0], c.h[0]), _mm256_fmadd_ps(a.h[1], b.h[1], c.h[1])}};
}
AI r16f rf_fnmadd(r16f a, r16f b, r16f c) {
    return (r16f){{_mm256_fnmadd_ps(a.h[0], b.h[0], c.h[0]), _mm256_fnmadd_ps(a.h[1], b.h[1], c.h[1])}};
}
AI r16f rf_cvt(r16i a) { return (r16f){{_mm256_cvtepi32_ps(a.h[0]), _mm256_cvtepi32_ps(a.h[1])}}; }
AI void rf_store(float *p, r16f v) { _mm256_storeu_ps(p, v.h[0]), _mm256_storeu_ps(p + 8, v.h[1]); }
AI r16f rf_rounded(r16f v) { return (r16f){{rounded(v.h[0]), rounded(v.h[1])}}; }
#define R16_COLS 4
#define R16_CHAINS 1
#include "kernels/quant_r16_mv.inc"
R16MV_ALL

const lmf_quant_ops lmf_quant_avx2 = {
    .name = "avx2",
    .q8_0 = q8_0_i16_mv, .q4_0 = q4_0_i16_mv, .q4_1 = q4_1_i16_mv,
    .q5_0 = q5_0_i16_mv, .q5_1 = q5_1_i16_mv, .q6_k = q6_k_i16_mv, .q4_k = q4_k_i16_mv, .q5_k = q5_k_i16_mv,
    .q2_k = q2_k_i16_mv, .q3_k = q3_k_i16_mv, .iq4_nl = iq4_nl_i16_mv, .iq4_xs = iq4_xs_i16_mv,
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
