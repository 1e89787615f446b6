/* transpose16.h — the in-place 16 x 16 transpose of 32-bit lanes in AVX-512 registers that the GEMM packers share
 * (gemm_avx512.c on floats, gemm_amx.c on bf16 pairs through casts: the shuffles only move bits). Include it only
 * from files compiled for AVX-512. */
#ifndef LMF_KERNELS_TRANSPOSE16_H
#define LMF_KERNELS_TRANSPOSE16_H

#include <immintrin.h>

/* In-place transpose of 16 rows of 16 floats (or any 32-bit values). */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16], s[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* s[i+c] holds column c of rows i..i+3, per 128-bit lane */
        s[i + 0] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
        s[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int c = 0; c < 4; c++) {
        __m512 u0 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x88);
        __m512 v0 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xdd), v1 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xdd);
        r[c + 0] = _mm512_shuffle_f32x4(u0, u1, 0x88);
        r[c + 8] = _mm512_shuffle_f32x4(u0, u1, 0xdd);
        r[c + 4] = _mm512_shuffle_f32x4(v0, v1, 0x88);
        r[c + 12] = _mm512_shuffle_f32x4(v0, v1, 0xdd);
    }
}

#endif
