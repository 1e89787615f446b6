/* vec_avx512.c — AVX-512 row kernels (see vec.h for the contract, vec_ref.c for the definitions).
 *
 * 16 floats per zmm register. Every loop runs over whole vectors and finishes with one masked load/store for the
 * last n % 16 elements, so there is no scalar tail and nothing past the end of a row is read or written (masked-off
 * lanes of a masked load do not fault). Reductions keep four accumulators so the adds pipeline; elementwise loops
 * are independent per vector and need none. The scalar reference of each function is quoted above it.
 *
 * exp is our own (exp16): exp(x) = 2^k * e^r with k = round(x / ln 2) and r = x - k ln 2 taken in two steps
 * (Cody-Waite: ln 2 = LN2_HI + LN2_LO, LN2_HI with few mantissa bits so k * LN2_HI is exact), e^r by a degree-6
 * polynomial fitted for minimax relative error on [-ln2/2, ln2/2] (3e-9, below float rounding), and the scaling by
 * 2^k with vscalefps, which adds k to the exponent of the result in one instruction and rounds correctly into the
 * subnormal range and to +inf (the two-factor integer construction of vec_avx2.c's exp8 made the whole exp 1.6x
 * slower here). Inputs are clamped to [-110, 89] first, so exp(-inf) and anything below -103.9 is exactly 0,
 * anything above 88.72 is +inf, and NaN propagates. Max error ~1 ulp (6.9e-8 relative against double). */
#include "kernels/vec.h"
#include "kernels/dropout.h"
#include "kernels/exp_avx512.h"

#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

static inline __mmask16 tail_mask(long rem) { return (__mmask16)((1u << rem) - 1u); }
static inline __m512 set1(float v) { return _mm512_set1_ps(v); }


static inline float hsum(__m512 a, __m512 b, __m512 c, __m512 d) {
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

/* s += x[i] */
static float sum(const float *x, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
    if (i < n) a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
    return hsum(a0, a1, a2, a3);
}

/* s += a[i] * b[i] */
static float dot(const float *a, const float *b, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), a1);
    }
    return hsum(a0, a1, a2, a3);
}

/* s += (double)x[i]^2: widen 8 floats at a time, four double accumulators */
static double sumsq(const float *x, long n) {
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512d d0 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), d1 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
        __m512d d2 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 16)), d3 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 24));
        a0 = _mm512_fmadd_pd(d0, d0, a0), a1 = _mm512_fmadd_pd(d1, d1, a1);
        a2 = _mm512_fmadd_pd(d2, d2, a2), a3 = _mm512_fmadd_pd(d3, d3, a3);
    }
    for (; i + 8 <= n; i += 8) {
        __m512d d = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        a0 = _mm512_fmadd_pd(d, d, a0);
    }
    if (i < n) {
        __m512d d = _mm512_cvtps_pd(_mm256_maskz_loadu_ps((__mmask8)((1u << (n - i)) - 1u), x + i));
        a1 = _mm512_fmadd_pd(d, d, a1);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
}

/* m = sum(x) / n; v = sum((x - m)^2); s = 1 / sqrt(v / n + eps); out = (x - m) * s * w + b */
static void layernorm(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int n,
                      float eps) {
    float m = sum(x, n) / n;
    __m512 vm = set1(m), a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm);
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 32), vm), d3 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 48), vm);
        a0 = _mm512_fmadd_ps(d0, d0, a0), a1 = _mm512_fmadd_ps(d1, d1, a1);
        a2 = _mm512_fmadd_ps(d2, d2, a2), a3 = _mm512_fmadd_ps(d3, d3, a3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm);
        a0 = _mm512_fmadd_ps(d, d, a0);
    }
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        __m512 d = _mm512_maskz_sub_ps(mk, _mm512_maskz_loadu_ps(mk, x + i), vm); /* 0 in unused lanes */
        a1 = _mm512_fmadd_ps(d, d, a1);
    }
    float s = 1.0f / sqrtf(hsum(a0, a1, a2, a3) / n + eps);
    __m512 vs = set1(s);
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 xn = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), vs);
        _mm512_storeu_ps(out + i, _mm512_fmadd_ps(xn, _mm512_loadu_ps(w + i), _mm512_loadu_ps(b + i)));
    }
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        __m512 xn = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm), vs);
        _mm512_mask_storeu_ps(out + i, mk,
                              _mm512_fmadd_ps(xn, _mm512_maskz_loadu_ps(mk, w + i), _mm512_maskz_loadu_ps(mk, b + i)));
    }
    *mean = m, *rstd = s;
}

/* dn = dout * w; xhat = (x - mean) * rstd; dx += rstd * (dn - mean(dn) - xhat * mean(dn * xhat)) */
static void layernorm_backward(float *dx, const float *dout, const float *x, const float *w, float mean, float rstd,
                               int n) {
    __m512 vm = set1(mean), vr = set1(rstd);
    __m512 sd0 = _mm512_setzero_ps(), sd1 = sd0, sn0 = sd0, sn1 = sd0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 dn0 = _mm512_mul_ps(_mm512_loadu_ps(dout + i), _mm512_loadu_ps(w + i));
        __m512 dn1 = _mm512_mul_ps(_mm512_loadu_ps(dout + i + 16), _mm512_loadu_ps(w + i + 16));
        __m512 xh0 = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), vr);
        __m512 xh1 = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm), vr);
        sd0 = _mm512_add_ps(sd0, dn0), sd1 = _mm512_add_ps(sd1, dn1);
        sn0 = _mm512_fmadd_ps(dn0, xh0, sn0), sn1 = _mm512_fmadd_ps(dn1, xh1, sn1);
    }
    for (; i < n; i += 16) { /* remaining whole vectors, then the masked tail (zeros in unused lanes) */
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 dn = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, dout + i), _mm512_maskz_loadu_ps(mk, w + i));
        __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm), vr);
        sd0 = _mm512_add_ps(sd0, dn);
        sn0 = _mm512_fmadd_ps(dn, xh, sn0);
    }
    float sum_d = _mm512_reduce_add_ps(_mm512_add_ps(sd0, sd1)) / n;
    float sum_dn = _mm512_reduce_add_ps(_mm512_add_ps(sn0, sn1)) / n;
    __m512 vd = set1(sum_d), vdn = set1(sum_dn);
    for (i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 dn = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, dout + i), _mm512_maskz_loadu_ps(mk, w + i));
        __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm), vr);
        __m512 t = _mm512_fnmadd_ps(xh, vdn, _mm512_sub_ps(dn, vd));
        _mm512_mask_storeu_ps(dx + i, mk, _mm512_fmadd_ps(vr, t, _mm512_maskz_loadu_ps(mk, dx + i)));
    }
}

/* dw += dout * (x - mean) * rstd; db += dout */
static void norm_param_grad(float *dw, float *db, const float *dout, const float *x, float mean, float rstd, int n) {
    __m512 vm = set1(mean), vr = set1(rstd);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 d = _mm512_maskz_loadu_ps(mk, dout + i);
        __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm), vr);
        _mm512_mask_storeu_ps(dw + i, mk, _mm512_fmadd_ps(d, xh, _mm512_maskz_loadu_ps(mk, dw + i)));
        if (db) _mm512_mask_storeu_ps(db + i, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, db + i), d));
    }
}

/* s = 1 / sqrt(dot(x, x) / n + eps); out = x * s * w */
static void rmsnorm(float *out, float *rstd, const float *x, const float *w, int n, float eps) {
    float s = 1.0f / sqrtf(dot(x, x, n) / n + eps);
    __m512 vs = set1(s);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs), _mm512_loadu_ps(w + i)));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vs), _mm512_maskz_loadu_ps(mk, w + i));
        _mm512_mask_storeu_ps(out + i, mk, y);
    }
    *rstd = s;
}

/* d = sum(dout * w * x); k = rstd^3 * d / n; dx += rstd * dout * w - k * x */
static void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w, float rstd, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(dout + i), _mm512_loadu_ps(w + i)),
                             _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(dout + i + 16), _mm512_loadu_ps(w + i + 16)),
                             _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(dout + i + 32), _mm512_loadu_ps(w + i + 32)),
                             _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(dout + i + 48), _mm512_loadu_ps(w + i + 48)),
                             _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 dw = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, dout + i), _mm512_maskz_loadu_ps(mk, w + i));
        a0 = _mm512_fmadd_ps(dw, _mm512_maskz_loadu_ps(mk, x + i), a0);
    }
    float k = rstd * rstd * rstd * hsum(a0, a1, a2, a3) / n;
    __m512 vr = set1(rstd), vk = set1(k);
    for (i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 dw = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, dout + i), _mm512_maskz_loadu_ps(mk, w + i));
        __m512 t = _mm512_fnmadd_ps(vk, _mm512_maskz_loadu_ps(mk, x + i), _mm512_mul_ps(vr, dw));
        _mm512_mask_storeu_ps(dx + i, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, dx + i), t));
    }
}

/* max of x * scale; sum of e = exp(x * scale - max) (with e stored); x = e / sum */
static void softmax(float *x, int n, float scale) {
    __m512 vsc = set1(scale), ninf = set1(-INFINITY);
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        m0 = _mm512_max_ps(m0, _mm512_mul_ps(_mm512_loadu_ps(x + i), vsc));
        m1 = _mm512_max_ps(m1, _mm512_mul_ps(_mm512_loadu_ps(x + i + 16), vsc));
        m2 = _mm512_max_ps(m2, _mm512_mul_ps(_mm512_loadu_ps(x + i + 32), vsc));
        m3 = _mm512_max_ps(m3, _mm512_mul_ps(_mm512_loadu_ps(x + i + 48), vsc));
    }
    for (; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        m0 = _mm512_mask_max_ps(m0, mk, m0, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vsc));
    }
    __m512 vmx = set1(_mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3))));
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    for (i = 0; i + 32 <= n; i += 32) {
        __m512 e0 = exp16(_mm512_sub_ps(rounded(_mm512_mul_ps(_mm512_loadu_ps(x + i), vsc)), vmx));
        __m512 e1 = exp16(_mm512_sub_ps(rounded(_mm512_mul_ps(_mm512_loadu_ps(x + i + 16), vsc)), vmx));
        _mm512_storeu_ps(x + i, e0), _mm512_storeu_ps(x + i + 16, e1);
        s0 = _mm512_add_ps(s0, e0), s1 = _mm512_add_ps(s1, e1);
    }
    for (; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 e = exp16(_mm512_sub_ps(rounded(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vsc)), vmx));
        _mm512_mask_storeu_ps(x + i, mk, e);
        s0 = _mm512_mask_add_ps(s0, mk, s0, e);
    }
    __m512 inv = set1(1.0f / _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), inv));
    }
}

/* t = dot(p, d); d = p * (d - t) * scale */
static void softmax_backward(float *d, const float *p, int n, float scale) {
    __m512 vt = set1(dot(p, d, n)), vsc = set1(scale);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, p + i), _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, d + i), vt));
        _mm512_mask_storeu_ps(d + i, mk, _mm512_mul_ps(y, vsc));
    }
}

/* mx = max(x); mx + log(sum(exp(x - mx))) */
static float logsumexp(const float *x, int n) {
    __m512 ninf = set1(-INFINITY), m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i)), m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + i + 32)), m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i < n; i += 16) /* unused lanes read -inf */
        m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(ninf, tail_mask(n - i < 16 ? n - i : 16), x + i));
    float mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
    __m512 vmx = set1(mx), s0 = _mm512_setzero_ps(), s1 = s0;
    for (i = 0; i + 32 <= n; i += 32) {
        s0 = _mm512_add_ps(s0, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx)));
        s1 = _mm512_add_ps(s1, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vmx)));
    }
    for (; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        s0 = _mm512_mask_add_ps(s0, mk, s0, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vmx)));
    }
    return mx + logf(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
}

/* x = exp(x - shift) * scale */
static void exp_shift_scale(float *x, int n, float shift, float scale) {
    __m512 vsh = set1(shift), vsc = set1(scale);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_mul_ps(exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vsh)), vsc));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vsh));
        _mm512_mask_storeu_ps(x + i, mk, _mm512_mul_ps(e, vsc));
    }
}

/* GELU (tanh form) uses 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(t)) with t = -2u, u = K (x + C x^3).
 * t is clamped to +-80: beyond it the sigmoid is 0 or 1 to float precision, exp stays finite (no inf/inf), and
 * 1 / (1 + e^80) is still a normal number (subnormals are slow). */
static inline __m512 gelu_t(__m512 x) {
    __m512 inner = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(x, x), set1(GELU_C)), x, x);
    __m512 t = _mm512_mul_ps(inner, set1(-2.0f * GELU_K));
    return _mm512_min_ps(_mm512_max_ps(t, set1(-80.0f)), set1(80.0f));
}

/* out = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)) */
static inline __m512 gelu16(__m512 x) { return _mm512_div_ps(x, _mm512_add_ps(set1(1.0f), exp16(gelu_t(x)))); }

static void gelu(float *out, const float *x, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, mk, gelu16(_mm512_maskz_loadu_ps(mk, x + i)));
    }
}

/* gelu'(x) = 0.5 (1 + th) + 0.5 x (1 - th^2) K (1 + 3 C x^2), th = tanh(u); with s = sigmoid(2u) this is
 * s + 2 x s (1 - s) K (1 + 3 C x^2), and 1 - s = e s (e = exp(-2u)) keeps full precision where s ~ 1. */
static inline __m512 gelu_grad16(__m512 x) {
    __m512 e = exp16(gelu_t(x));
    __m512 s = _mm512_div_ps(set1(1.0f), _mm512_add_ps(set1(1.0f), e)), oms = _mm512_mul_ps(e, s);
    __m512 poly = _mm512_fmadd_ps(_mm512_mul_ps(x, x), set1(3.0f * GELU_C), set1(1.0f));
    __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(x, set1(2.0f * GELU_K)), _mm512_mul_ps(s, oms)), poly);
    return _mm512_add_ps(s, t);
}

static void gelu_backward(float *dx, const float *x, const float *dout, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dx + i, _mm512_mul_ps(gelu_grad16(_mm512_loadu_ps(x + i)), _mm512_loadu_ps(dout + i)));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        __m512 g = gelu_grad16(_mm512_maskz_loadu_ps(mk, x + i));
        __m512 y = _mm512_mul_ps(g, _mm512_maskz_loadu_ps(mk, dout + i));
        _mm512_mask_storeu_ps(dx + i, mk, y);
    }
}

/* out = g / (1 + exp(-g)) * u  (exp(-g) = inf for g < -88.7 gives -0, as in the reference) */
static void swiglu(float *out, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 vg = _mm512_maskz_loadu_ps(mk, g + i);
        __m512 silu = _mm512_div_ps(vg, _mm512_add_ps(set1(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), vg))));
        _mm512_mask_storeu_ps(out + i, mk, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(mk, u + i)));
    }
}

/* sig = 1 / (1 + exp(-g)); dg += dout * u * sig * (1 + g * (1 - sig)); du += dout * g * sig */
static void swiglu_backward(float *dg, float *du, const float *dout, const float *g, const float *u, int n) {
    __m512 one = set1(1.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 vg = _mm512_maskz_loadu_ps(mk, g + i), vd = _mm512_maskz_loadu_ps(mk, dout + i);
        __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), vg))));
        __m512 ds = _mm512_mul_ps(vd, sig);
        __m512 t = _mm512_fmadd_ps(vg, _mm512_sub_ps(one, sig), one);
        __m512 a = _mm512_mul_ps(_mm512_mul_ps(ds, _mm512_maskz_loadu_ps(mk, u + i)), t);
        _mm512_mask_storeu_ps(dg + i, mk, a);
        _mm512_mask_storeu_ps(du + i, mk, _mm512_mul_ps(ds, vg));
    }
}

/* Columns in chunks of 256 held in sixteen registers down all the rows; the next rows' stretches are prefetched
 * (rows farther apart than a page defeat the hardware prefetchers, which a plain row-by-row pass waited on). */
static void col_sum_add(float *acc, const float *x, long ldx, int m, int n) {
    for (int c0 = 0; c0 < n; c0 += 256) {
        int w = n - c0 < 256 ? n - c0 : 256;
        __mmask16 mk[16];
        __m512 a[16];
        for (int j = 0; j < 16; j++) {
            int rem = w - 16 * j;
            mk[j] = rem >= 16 ? (__mmask16)0xffff : rem <= 0 ? (__mmask16)0 : tail_mask(rem);
            a[j] = _mm512_maskz_loadu_ps(mk[j], acc + c0 + 16 * j);
        }
        for (int r = 0; r < m; r++) {
            const float *row = x + r * ldx + c0;
            for (int l = 0; l < w; l += 16) _mm_prefetch((const char *)(row + 8 * ldx + l), _MM_HINT_T0);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) a[j] = _mm512_add_ps(a[j], _mm512_maskz_loadu_ps(mk[j], row + 16 * j));
        }
        for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(acc + c0 + 16 * j, mk[j], a[j]);
    }
}

/* g' = g * grad_scale; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2; p = p decay - step m / (sqrt(v) / bc2 + eps)
 * (the division by bc2_sqrt is a multiplication by its reciprocal: one rounding apart from the reference) */
static void adamw(float *p, const float *g, float *m, float *v, long n, float beta1, float beta2, float eps,
                  float decay, float step, float bc2_sqrt, float grad_scale) {
    __m512 b1 = set1(beta1), b2 = set1(beta2), c1 = set1(1.0f - beta1), c2 = set1(1.0f - beta2);
    __m512 veps = set1(eps), vdec = set1(decay), vstep = set1(step), vinv = set1(1.0f / bc2_sqrt);
    __m512 gs = set1(grad_scale);
    for (long i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i < 16 ? n - i : 16);
        __m512 gi = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, g + i), gs);
        __m512 mi = _mm512_fmadd_ps(b1, _mm512_maskz_loadu_ps(mk, m + i), _mm512_mul_ps(c1, gi));
        __m512 vi = _mm512_fmadd_ps(b2, _mm512_maskz_loadu_ps(mk, v + i), _mm512_mul_ps(_mm512_mul_ps(c2, gi), gi));
        __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), vinv, veps);
        __m512 upd = _mm512_div_ps(_mm512_mul_ps(vstep, mi), den);
        _mm512_mask_storeu_ps(m + i, mk, mi);
        _mm512_mask_storeu_ps(v + i, mk, vi);
        _mm512_mask_storeu_ps(p + i, mk, _mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, p + i), vdec, upd));
    }
}

/* 16 elements of w from element i on, masked by mk: fp32, or halves (H) widened to fp32 */
static inline __attribute__((always_inline)) __m512 load_w(const int H, const void *w, long i, __mmask16 mk) {
    return H ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + i))
             : _mm512_maskz_loadu_ps(mk, (const float *)w + i);
}

/* M rows of x against V vectors of 16 columns of w (p0 on), the last one masked by mk: M x V accumulators in
 * registers over the k rows of w, each row's next 64 columns prefetched (w's rows are separate streams) */
static inline __attribute__((always_inline)) void rbm_block(const int M, const int V, const int H, float *out,
                                                            long ldo, const float *x, long ldx, const void *w,
                                                            long ldw, int k, int p0, __mmask16 mk) {
    __m512 acc[4][4];
    for (int j = 0; j < M; j++)
        for (int v = 0; v < V; v++) acc[j][v] = _mm512_setzero_ps();
    for (int d = 0; d < k; d++) {
        long wr = d * ldw + p0;
        _mm_prefetch((const char *)w + (wr + 64 * V) * (H ? 2 : 4), _MM_HINT_T0);
        __m512 wv[4];
        for (int v = 0; v < V; v++) wv[v] = load_w(H, w, wr + 16 * v, v == V - 1 ? mk : (__mmask16)0xffff);
        for (int j = 0; j < M; j++) {
            __m512 xb = set1(x[j * ldx + d]);
            for (int v = 0; v < V; v++) acc[j][v] = _mm512_fmadd_ps(xb, wv[v], acc[j][v]);
        }
    }
    for (int j = 0; j < M; j++)
        for (int v = 0; v < V; v++)
            _mm512_mask_storeu_ps(out + j * ldo + p0 + 16 * v, v == V - 1 ? mk : (__mmask16)0xffff, acc[j][v]);
}

static inline __attribute__((always_inline)) void rbm(const int M, const int H, float *out, long ldo, const float *x,
                                                      long ldx, const void *w, long ldw, int k, int n) {
    int p = 0;
    for (; p + 64 <= n; p += 64) rbm_block(M, 4, H, out, ldo, x, ldx, w, ldw, k, p, 0xffff);
    for (; p < n; p += 16) rbm_block(M, 1, H, out, ldo, x, ldx, w, ldw, k, p, tail_mask(n - p < 16 ? n - p : 16));
}

static void rows_by_matrix(float *out, long ldo, const float *x, long ldx, int m, const void *w, int half, long ldw,
                           int k, int n) {
#define RBM(M) half ? rbm(M, 1, out, ldo, x, ldx, w, ldw, k, n) : rbm(M, 0, out, ldo, x, ldx, w, ldw, k, n)
    switch (m) {
    case 1: RBM(1); break;
    case 2: RBM(2); break;
    case 3: RBM(3); break;
    default: RBM(4); break;
    }
#undef RBM
}

/* M rows of x against R rows of every piece: M x R accumulators of 16 positions each, reduced once. */
static inline __attribute__((always_inline)) void rbp(const int M, const int R, const int H, float *out, long ldo,
                                                      const float *x, long ldx, const void *const *w, const int *len,
                                                      int nb, long ldw, int r0) {
    __m512 acc[4][4];
    for (int j = 0; j < M; j++)
        for (int r = 0; r < R; r++) acc[j][r] = _mm512_setzero_ps();
    for (int b = 0, off = 0; b < nb; off += len[b++])
        for (int p = 0; p < len[b]; p += 16) {
            __mmask16 mk = len[b] - p >= 16 ? (__mmask16)0xffff : tail_mask(len[b] - p);
            __m512 xv[4];
            for (int j = 0; j < M; j++) xv[j] = _mm512_maskz_loadu_ps(mk, x + j * ldx + off + p);
            for (int r = 0; r < R; r++) {
                __m512 wv = load_w(H, w[b], (r0 + r) * ldw + p, mk);
                for (int j = 0; j < M; j++) acc[j][r] = _mm512_fmadd_ps(xv[j], wv, acc[j][r]);
            }
        }
    for (int j = 0; j < M; j++)
        for (int r = 0; r < R; r++) out[j * ldo + r0 + r] += _mm512_reduce_add_ps(acc[j][r]);
}

static inline __attribute__((always_inline)) void rbp_all(const int M, const int H, float *out, long ldo,
                                                          const float *x, long ldx, const void *const *w,
                                                          const int *len, int nb, long ldw, int k) {
    int r = 0;
    for (; r + 4 <= k; r += 4) rbp(M, 4, H, out, ldo, x, ldx, w, len, nb, ldw, r);
    for (; r < k; r++) rbp(M, 1, H, out, ldo, x, ldx, w, len, nb, ldw, r);
}

static void rows_by_pieces_t(float *out, long ldo, const float *x, long ldx, int m, const void *const *w, int half,
                             const int *len, int nb, long ldw, int k) {
#define RBP(M) half ? rbp_all(M, 1, out, ldo, x, ldx, w, len, nb, ldw, k) : rbp_all(M, 0, out, ldo, x, ldx, w, len, nb, ldw, k)
    switch (m) {
    case 1: RBP(1); break;
    case 2: RBP(2); break;
    case 3: RBP(3); break;
    default: RBP(4); break;
    }
#undef RBP
}

static void softcap(float *x, int n, float scale, float cap) {
    __m512 k = set1(scale / cap), c = set1(cap);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, softcap16(_mm512_loadu_ps(x + i), k, c));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, mk, softcap16(_mm512_maskz_loadu_ps(mk, x + i), k, c));
    }
}

static inline __m512 softcap_grad16(__m512 d, __m512 y, __m512 k, __m512 sc) {
    __m512 r = _mm512_mul_ps(y, k);
    return _mm512_mul_ps(d, _mm512_mul_ps(_mm512_fnmadd_ps(r, r, set1(1.0f)), sc));
}

static void softcap_backward(float *d, const float *y, int n, float cap, float scale) {
    __m512 k = set1(1.0f / cap), sc = set1(scale);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(d + i, softcap_grad16(_mm512_loadu_ps(d + i), _mm512_loadu_ps(y + i), k, sc));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        __m512 g = softcap_grad16(_mm512_maskz_loadu_ps(mk, d + i), _mm512_maskz_loadu_ps(mk, y + i), k, sc);
        _mm512_mask_storeu_ps(d + i, mk, g);
    }
}

static void dropout(float *out, const float *x, int n, uint64_t key, uint64_t e0, uint64_t keep_from, float scale) {
    lmf_dropout_body(out, x, n, key, e0, keep_from, scale);
}

const lmf_vec_ops lmf_vec_avx512 = LMF_VEC_OPS_TABLE("avx512");
