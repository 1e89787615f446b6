/* exp_avx512.h — fp32 exp (and the soft-cap's tanh) of 16 lanes for the AVX-512 row kernels (vec_avx512.c) and the
 * AMX attention's softmax (attention_amx.c), which must agree: the same polynomial, so a probability does not depend
 * on which file made it. Include only from files compiled for AVX-512. */
#ifndef LMF_KERNELS_EXP_AVX512_H
#define LMF_KERNELS_EXP_AVX512_H

#include <immintrin.h>
#include <stdint.h>

static inline __m512 exp16(__m512 x) {
    /* max(lo, x) and min(hi, x) return x when it is NaN (the second operand wins on NaN) */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-110.0f), x));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x); /* LN2_HI = 355/512: exact product */
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);     /* LN2_LO = ln 2 - LN2_HI */
    __m512 p = _mm512_set1_ps(1.381461276e-03f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.368710056e-03f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.166838899e-02f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.666652113e-01f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.999999404e-01f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k); /* p * 2^k: adds k to the exponent, rounding into subnormals / inf */
}

/* Keeps the compiler from fusing a rounded product into a later add (fp-contract), where the reference rounds. */
static inline __m512 rounded(__m512 v) {
    __asm__("" : "+v"(v));
    return v;
}

/* tanh(u) = sign(u) (1 - e) / (1 + e), e = exp(-2|u|): no overflow, 1 where e underflows; absolute error a few
 * 1e-8 (relative near 0 larger, where the soft-cap's cap x tanh(x / cap) is ~x and absolute error is what counts) */
static inline __m512 tanh16(__m512 u) {
    __m512 a = _mm512_abs_ps(u), e = exp16(_mm512_mul_ps(a, _mm512_set1_ps(-2.0f)));
    __m512 one = _mm512_set1_ps(1.0f), t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(u), _mm512_set1_epi32(INT32_MIN));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
}

/* Gemma 2's soft-cap c tanh(k x), k = scale / c */
static inline __m512 softcap16(__m512 x, __m512 k, __m512 c) { return _mm512_mul_ps(c, tanh16(_mm512_mul_ps(x, k))); }

#endif
