/* vec_avx2.c — AVX2+FMA row kernels (see vec.h for the contract, vec_ref.c for the definitions).
 *
 * 8 floats per ymm register. Loops run over whole vectors; the last n % 8 elements go through the same code once
 * more with _mm256_maskload_ps / _mm256_maskstore_ps (masked-off lanes read as 0, are never written and never
 * fault), so nothing past the end of a row is touched. Reductions keep four accumulators so the adds pipeline.
 * The scalar reference of each function is quoted above it.
 *
 * exp is our own (exp8): k = round(x / ln 2), r = x - k ln 2 in two Cody-Waite steps (ln 2 = LN2_HI + LN2_LO,
 * LN2_HI with few mantissa bits so k * LN2_HI is exact), e^r by a degree-6 polynomial fitted for minimax relative
 * error on [-ln2/2, ln2/2] (3e-9, below float rounding), and 2^k built by integer adds into the exponent field.
 * 2^k is applied as two factors 2^(k>>1) * 2^(k-(k>>1)) so that every k of the clamped range [-110, 89] has
 * normal factors: results in the subnormal range come out right, exp(-inf) and anything below -103.9 is exactly
 * 0, anything above 88.72 overflows to +inf, and NaN propagates. Max error ~1 ulp (6.9e-8 relative against
 * double). vec_avx512.c's exp16 is the same but for the final scaling (vscalefps). */
#include "kernels/vec.h"
#include "kernels/dropout.h"

#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

/* lanes [0, rem) set: the mask of the last, partial vector */
static inline __m256i tail_mask(long rem) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256 set1(float v) { return _mm256_set1_ps(v); }
static inline __m256 ld(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 ldm(const float *p, __m256i mk) { return _mm256_maskload_ps(p, mk); }

/* s += (double)x[i]^2: widen 4 floats at a time, four double accumulators, scalar tail */
static double sumsq(const float *x, long n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256d d0 = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), d1 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        __m256d d2 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)), d3 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
        a0 = _mm256_fmadd_pd(d0, d0, a0), a1 = _mm256_fmadd_pd(d1, d1, a1);
        a2 = _mm256_fmadd_pd(d2, d2, a2), a3 = _mm256_fmadd_pd(d3, d3, a3);
    }
    __m256d a = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    double lanes[4];
    _mm256_storeu_pd(lanes, a);
    double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static inline __m256 exp8(__m256 x) {
    /* max(lo, x) and min(hi, x) return x when it is NaN (the second operand wins on NaN) */
    x = _mm256_min_ps(set1(89.0f), _mm256_max_ps(set1(-110.0f), x));
    /* k = round(x / ln 2) by the 1.5 * 2^23 trick: the add rounds to an integer, which then sits in the low bits */
    __m256 t = _mm256_fmadd_ps(x, set1(1.44269504088896341f), set1(12582912.0f));
    __m256 k = _mm256_sub_ps(t, set1(12582912.0f));
    __m256 r = _mm256_fnmadd_ps(k, set1(0.693359375f), x); /* LN2_HI = 355/512: exact product */
    r = _mm256_fnmadd_ps(k, set1(-2.12194440e-4f), r);     /* LN2_LO = ln 2 - LN2_HI */
    __m256 p = set1(1.381461276e-03f);
    p = _mm256_fmadd_ps(p, r, set1(8.368710056e-03f));
    p = _mm256_fmadd_ps(p, r, set1(4.166838899e-02f));
    p = _mm256_fmadd_ps(p, r, set1(1.666652113e-01f));
    p = _mm256_fmadd_ps(p, r, set1(4.999999404e-01f));
    p = _mm256_fmadd_ps(p, r, set1(1.0f));
    p = _mm256_fmadd_ps(p, r, set1(1.0f));
    __m256i ki = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(set1(12582912.0f)));
    __m256i bias = _mm256_set1_epi32(127);
    __m256i k1 = _mm256_srai_epi32(ki, 1), k2 = _mm256_sub_epi32(ki, k1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* Keeps the compiler from fusing a rounded product into a later add (fp-contract), where the reference rounds. */
static inline __m256 rounded(__m256 v) {
    __asm__("" : "+x"(v));
    return v;
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

static inline float hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    return hsum(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
}

/* s += x[i] */
static float sum(const float *x, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, ld(x + i)), a1 = _mm256_add_ps(a1, ld(x + i + 8));
        a2 = _mm256_add_ps(a2, ld(x + i + 16)), a3 = _mm256_add_ps(a3, ld(x + i + 24));
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_add_ps(a0, ld(x + i));
    if (i < n) a1 = _mm256_add_ps(a1, ldm(x + i, tail_mask(n - i)));
    return hsum4(a0, a1, a2, a3);
}

/* s += a[i] * b[i] */
static float dot(const float *a, const float *b, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(ld(a + i), ld(b + i), a0), a1 = _mm256_fmadd_ps(ld(a + i + 8), ld(b + i + 8), a1);
        a2 = _mm256_fmadd_ps(ld(a + i + 16), ld(b + i + 16), a2);
        a3 = _mm256_fmadd_ps(ld(a + i + 24), ld(b + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(ld(a + i), ld(b + i), a0);
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        a1 = _mm256_fmadd_ps(ldm(a + i, mk), ldm(b + i, mk), a1);
    }
    return hsum4(a0, a1, a2, a3);
}

/* m = sum(x) / n; v = sum((x - m)^2); s = 1 / sqrt(v / n + eps); out = (x - m) * s * w + b */
static inline __m256 ln_out(__m256 x, __m256 w, __m256 b, __m256 vm, __m256 vs) {
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(x, vm), vs), w, b);
}

static void layernorm(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int n,
                      float eps) {
    float m = sum(x, n) / n;
    __m256 vm = set1(m), a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 d0 = _mm256_sub_ps(ld(x + i), vm), d1 = _mm256_sub_ps(ld(x + i + 8), vm);
        __m256 d2 = _mm256_sub_ps(ld(x + i + 16), vm), d3 = _mm256_sub_ps(ld(x + i + 24), vm);
        a0 = _mm256_fmadd_ps(d0, d0, a0), a1 = _mm256_fmadd_ps(d1, d1, a1);
        a2 = _mm256_fmadd_ps(d2, d2, a2), a3 = _mm256_fmadd_ps(d3, d3, a3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(ld(x + i), vm);
        a0 = _mm256_fmadd_ps(d, d, a0);
    }
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 d = _mm256_and_ps(_mm256_sub_ps(ldm(x + i, mk), vm), _mm256_castsi256_ps(mk)); /* 0 in unused lanes */
        a1 = _mm256_fmadd_ps(d, d, a1);
    }
    float s = 1.0f / sqrtf(hsum4(a0, a1, a2, a3) / n + eps);
    __m256 vs = set1(s);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, ln_out(ld(x + i), ld(w + i), ld(b + i), vm, vs));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(out + i, mk, ln_out(ldm(x + i, mk), ldm(w + i, mk), ldm(b + i, mk), vm, vs));
    }
    *mean = m, *rstd = s;
}

/* dn = dout * w; xhat = (x - mean) * rstd; dx += rstd * (dn - mean(dn) - xhat * mean(dn * xhat)) */
static inline __m256 lnb_dx(__m256 dx, __m256 dout, __m256 x, __m256 w, __m256 vm, __m256 vr, __m256 vd,
                            __m256 vdn) {
    __m256 xh = _mm256_mul_ps(_mm256_sub_ps(x, vm), vr);
    __m256 t = _mm256_fnmadd_ps(xh, vdn, _mm256_sub_ps(_mm256_mul_ps(dout, w), vd));
    return _mm256_fmadd_ps(vr, t, dx);
}

static void layernorm_backward(float *dx, const float *dout, const float *x, const float *w, float mean, float rstd,
                               int n) {
    __m256 vm = set1(mean), vr = set1(rstd);
    __m256 sd0 = _mm256_setzero_ps(), sd1 = sd0, sn0 = sd0, sn1 = sd0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 dn0 = _mm256_mul_ps(ld(dout + i), ld(w + i)), dn1 = _mm256_mul_ps(ld(dout + i + 8), ld(w + i + 8));
        __m256 xh0 = _mm256_mul_ps(_mm256_sub_ps(ld(x + i), vm), vr);
        __m256 xh1 = _mm256_mul_ps(_mm256_sub_ps(ld(x + i + 8), vm), vr);
        sd0 = _mm256_add_ps(sd0, dn0), sd1 = _mm256_add_ps(sd1, dn1);
        sn0 = _mm256_fmadd_ps(dn0, xh0, sn0), sn1 = _mm256_fmadd_ps(dn1, xh1, sn1);
    }
    for (; i < n; i += 8) { /* a whole vector, then the masked tail (dout reads 0 in unused lanes: dn = 0) */
        __m256i mk = tail_mask(n - i);
        __m256 dn = _mm256_mul_ps(ldm(dout + i, mk), ldm(w + i, mk));
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(ldm(x + i, mk), vm), vr);
        sd0 = _mm256_add_ps(sd0, dn);
        sn0 = _mm256_fmadd_ps(dn, xh, sn0);
    }
    __m256 vd = set1(hsum(_mm256_add_ps(sd0, sd1)) / n), vdn = set1(hsum(_mm256_add_ps(sn0, sn1)) / n);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dx + i, lnb_dx(ld(dx + i), ld(dout + i), ld(x + i), ld(w + i), vm, vr, vd, vdn));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 y = lnb_dx(ldm(dx + i, mk), ldm(dout + i, mk), ldm(x + i, mk), ldm(w + i, mk), vm, vr, vd, vdn);
        _mm256_maskstore_ps(dx + i, mk, y);
    }
}

/* dw += dout * (x - mean) * rstd; db += dout */
static void norm_param_grad(float *dw, float *db, const float *dout, const float *x, float mean, float rstd, int n) {
    __m256 vm = set1(mean), vr = set1(rstd);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d = ld(dout + i), xh = _mm256_mul_ps(_mm256_sub_ps(ld(x + i), vm), vr);
        _mm256_storeu_ps(dw + i, _mm256_fmadd_ps(d, xh, ld(dw + i)));
        if (db) _mm256_storeu_ps(db + i, _mm256_add_ps(ld(db + i), d));
    }
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 d = ldm(dout + i, mk), xh = _mm256_mul_ps(_mm256_sub_ps(ldm(x + i, mk), vm), vr);
        _mm256_maskstore_ps(dw + i, mk, _mm256_fmadd_ps(d, xh, ldm(dw + i, mk)));
        if (db) _mm256_maskstore_ps(db + i, mk, _mm256_add_ps(ldm(db + i, mk), d));
    }
}

/* s = 1 / sqrt(dot(x, x) / n + eps); out = x * s * w */
static void rmsnorm(float *out, float *rstd, const float *x, const float *w, int n, float eps) {
    float s = 1.0f / sqrtf(dot(x, x, n) / n + eps);
    __m256 vs = set1(s);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(ld(x + i), vs), ld(w + i)));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(out + i, mk, _mm256_mul_ps(_mm256_mul_ps(ldm(x + i, mk), vs), ldm(w + i, mk)));
    }
    *rstd = s;
}

/* d = sum(dout * w * x); k = rstd^3 * d / n; dx += rstd * dout * w - k * x */
static inline __m256 rmsb_dx(__m256 dx, __m256 dout, __m256 x, __m256 w, __m256 vr, __m256 vk) {
    return _mm256_add_ps(dx, _mm256_fnmadd_ps(vk, x, _mm256_mul_ps(vr, _mm256_mul_ps(dout, w))));
}

static void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w, float rstd, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_mul_ps(ld(dout + i), ld(w + i)), ld(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_mul_ps(ld(dout + i + 8), ld(w + i + 8)), ld(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_mul_ps(ld(dout + i + 16), ld(w + i + 16)), ld(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_mul_ps(ld(dout + i + 24), ld(w + i + 24)), ld(x + i + 24), a3);
    }
    for (; i < n; i += 8) {
        __m256i mk = tail_mask(n - i);
        a0 = _mm256_fmadd_ps(_mm256_mul_ps(ldm(dout + i, mk), ldm(w + i, mk)), ldm(x + i, mk), a0);
    }
    float k = rstd * rstd * rstd * hsum4(a0, a1, a2, a3) / n;
    __m256 vr = set1(rstd), vk = set1(k);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dx + i, rmsb_dx(ld(dx + i), ld(dout + i), ld(x + i), ld(w + i), vr, vk));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 y = rmsb_dx(ldm(dx + i, mk), ldm(dout + i, mk), ldm(x + i, mk), ldm(w + i, mk), vr, vk);
        _mm256_maskstore_ps(dx + i, mk, y);
    }
}

/* max of x * scale; sum of e = exp(x * scale - max) (with e stored); x = e / sum */
static void softmax(float *x, int n, float scale) {
    __m256 vsc = set1(scale), ninf = set1(-INFINITY);
    __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(m0, _mm256_mul_ps(ld(x + i), vsc));
        m1 = _mm256_max_ps(m1, _mm256_mul_ps(ld(x + i + 8), vsc));
        m2 = _mm256_max_ps(m2, _mm256_mul_ps(ld(x + i + 16), vsc));
        m3 = _mm256_max_ps(m3, _mm256_mul_ps(ld(x + i + 24), vsc));
    }
    for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_mul_ps(ld(x + i), vsc));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 y = _mm256_blendv_ps(ninf, _mm256_mul_ps(ldm(x + i, mk), vsc), _mm256_castsi256_ps(mk));
        m1 = _mm256_max_ps(m1, y);
    }
    __m256 vmx = set1(hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3))));
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    for (i = 0; i + 16 <= n; i += 16) {
        __m256 e0 = exp8(_mm256_sub_ps(rounded(_mm256_mul_ps(ld(x + i), vsc)), vmx));
        __m256 e1 = exp8(_mm256_sub_ps(rounded(_mm256_mul_ps(ld(x + i + 8), vsc)), vmx));
        _mm256_storeu_ps(x + i, e0), _mm256_storeu_ps(x + i + 8, e1);
        s0 = _mm256_add_ps(s0, e0), s1 = _mm256_add_ps(s1, e1);
    }
    for (; i < n; i += 8) {
        __m256i mk = tail_mask(n - i);
        __m256 e = exp8(_mm256_sub_ps(rounded(_mm256_mul_ps(ldm(x + i, mk), vsc)), vmx));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(mk));
        _mm256_maskstore_ps(x + i, mk, e);
        s0 = _mm256_add_ps(s0, e);
    }
    __m256 inv = set1(1.0f / hsum(_mm256_add_ps(s0, s1)));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(ld(x + i), inv));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, mk, _mm256_mul_ps(ldm(x + i, mk), inv));
    }
}

/* t = dot(p, d); d = p * (d - t) * scale */
static void softmax_backward(float *d, const float *p, int n, float scale) {
    __m256 vt = set1(dot(p, d, n)), vsc = set1(scale);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_mul_ps(_mm256_mul_ps(ld(p + i), _mm256_sub_ps(ld(d + i), vt)), vsc));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 y = _mm256_mul_ps(ldm(p + i, mk), _mm256_sub_ps(ldm(d + i, mk), vt));
        _mm256_maskstore_ps(d + i, mk, _mm256_mul_ps(y, vsc));
    }
}

/* mx = max(x); mx + log(sum(exp(x - mx))) */
static float logsumexp(const float *x, int n) {
    __m256 ninf = set1(-INFINITY), m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(m0, ld(x + i)), m1 = _mm256_max_ps(m1, ld(x + i + 8));
        m2 = _mm256_max_ps(m2, ld(x + i + 16)), m3 = _mm256_max_ps(m3, ld(x + i + 24));
    }
    for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, ld(x + i));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        m1 = _mm256_max_ps(m1, _mm256_blendv_ps(ninf, ldm(x + i, mk), _mm256_castsi256_ps(mk)));
    }
    float mx = hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    __m256 vmx = set1(mx), s0 = _mm256_setzero_ps(), s1 = s0;
    for (i = 0; i + 16 <= n; i += 16) {
        s0 = _mm256_add_ps(s0, exp8(_mm256_sub_ps(ld(x + i), vmx)));
        s1 = _mm256_add_ps(s1, exp8(_mm256_sub_ps(ld(x + i + 8), vmx)));
    }
    for (; i < n; i += 8) {
        __m256i mk = tail_mask(n - i);
        s0 = _mm256_add_ps(s0, _mm256_and_ps(exp8(_mm256_sub_ps(ldm(x + i, mk), vmx)), _mm256_castsi256_ps(mk)));
    }
    return mx + logf(hsum(_mm256_add_ps(s0, s1)));
}

/* x = exp(x - shift) * scale */
static void exp_shift_scale(float *x, int n, float shift, float scale) {
    __m256 vsh = set1(shift), vsc = set1(scale);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(exp8(_mm256_sub_ps(ld(x + i), vsh)), vsc));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, mk, _mm256_mul_ps(exp8(_mm256_sub_ps(ldm(x + i, mk), vsh)), vsc));
    }
}

/* GELU (tanh form) uses 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(t)) with t = -2u, u = K (x + C x^3).
 * t is clamped to +-80: beyond it the sigmoid is 0 or 1 to float precision, exp stays finite (no inf/inf), and
 * 1 / (1 + e^80) is still a normal number (subnormals are slow). */
static inline __m256 gelu_t(__m256 x) {
    __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(x, x), set1(GELU_C)), x, x);
    __m256 t = _mm256_mul_ps(inner, set1(-2.0f * GELU_K));
    return _mm256_min_ps(_mm256_max_ps(t, set1(-80.0f)), set1(80.0f));
}

/* out = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)) */
static inline __m256 gelu8(__m256 x) { return _mm256_div_ps(x, _mm256_add_ps(set1(1.0f), exp8(gelu_t(x)))); }

static void gelu(float *out, const float *x, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, gelu8(ld(x + i)));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(out + i, mk, gelu8(ldm(x + i, mk)));
    }
}

/* gelu'(x) = 0.5 (1 + th) + 0.5 x (1 - th^2) K (1 + 3 C x^2), th = tanh(u); with s = sigmoid(2u) this is
 * s + 2 x s (1 - s) K (1 + 3 C x^2), and 1 - s = e s (e = exp(-2u)) keeps full precision where s ~ 1. */
static inline __m256 gelu_grad8(__m256 x) {
    __m256 e = exp8(gelu_t(x));
    __m256 s = _mm256_div_ps(set1(1.0f), _mm256_add_ps(set1(1.0f), e)), oms = _mm256_mul_ps(e, s);
    __m256 poly = _mm256_fmadd_ps(_mm256_mul_ps(x, x), set1(3.0f * GELU_C), set1(1.0f));
    __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(x, set1(2.0f * GELU_K)), _mm256_mul_ps(s, oms)), poly);
    return _mm256_add_ps(s, t);
}

static void gelu_backward(float *dx, const float *x, const float *dout, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(gelu_grad8(ld(x + i)), ld(dout + i)));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 y = _mm256_mul_ps(gelu_grad8(ldm(x + i, mk)), ldm(dout + i, mk));
        _mm256_maskstore_ps(dx + i, mk, y);
    }
}

/* out = g / (1 + exp(-g)) * u  (exp(-g) = inf for g < -88.7 gives -0, as in the reference) */
static inline __m256 swiglu8(__m256 g, __m256 u) {
    __m256 silu = _mm256_div_ps(g, _mm256_add_ps(set1(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    return _mm256_mul_ps(silu, u);
}

static void swiglu(float *out, const float *g, const float *u, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, swiglu8(ld(g + i), ld(u + i)));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(out + i, mk, swiglu8(ldm(g + i, mk), ldm(u + i, mk)));
    }
}

/* sig = 1 / (1 + exp(-g)); dg += dout * u * sig * (1 + g * (1 - sig)); du += dout * g * sig */
static inline void swiglu_grad8(__m256 *dg, __m256 *du, __m256 dout, __m256 g, __m256 u) {
    __m256 one = set1(1.0f);
    __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    __m256 ds = _mm256_mul_ps(dout, sig);
    __m256 t = _mm256_fmadd_ps(g, _mm256_sub_ps(one, sig), one);
    *dg = _mm256_mul_ps(_mm256_mul_ps(ds, u), t);
    *du = _mm256_mul_ps(ds, g);
}

static void swiglu_backward(float *dg, float *du, const float *dout, const float *g, const float *u, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a, b;
        swiglu_grad8(&a, &b, ld(dout + i), ld(g + i), ld(u + i));
        _mm256_storeu_ps(dg + i, a), _mm256_storeu_ps(du + i, b);
    }
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 a, b;
        swiglu_grad8(&a, &b, ldm(dout + i, mk), ldm(g + i, mk), ldm(u + i, mk));
        _mm256_maskstore_ps(dg + i, mk, a), _mm256_maskstore_ps(du + i, mk, b);
    }
}

/* g' = g * grad_scale; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2; p = p decay - step m / (sqrt(v) / bc2 + eps)
 * (the division by bc2_sqrt is a multiplication by its reciprocal: one rounding apart from the reference) */
typedef struct {
    __m256 b1, b2, c1, c2, eps, decay, step, inv_bc2, gs;
} adamw_consts;

static inline void adamw8(__m256 *p, __m256 *m, __m256 *v, __m256 g, const adamw_consts *c) {
    __m256 gi = _mm256_mul_ps(g, c->gs);
    *m = _mm256_fmadd_ps(c->b1, *m, _mm256_mul_ps(c->c1, gi));
    *v = _mm256_fmadd_ps(c->b2, *v, _mm256_mul_ps(_mm256_mul_ps(c->c2, gi), gi));
    __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(*v), c->inv_bc2, c->eps);
    *p = _mm256_fmsub_ps(*p, c->decay, _mm256_div_ps(_mm256_mul_ps(c->step, *m), den));
}

/* Columns in chunks of 64 held in eight registers down all the rows; the next rows' stretches are prefetched (rows
 * farther apart than a page defeat the hardware prefetchers, which a plain row-by-row pass waited on). */
static void col_sum_add(float *acc, const float *x, long ldx, int m, int n) {
    for (int c0 = 0; c0 < n; c0 += 64) {
        int w = n - c0 < 64 ? n - c0 : 64;
        __m256i mk[8];
        __m256 a[8];
        for (int j = 0; j < 8; j++) {
            mk[j] = tail_mask(w - 8 * j < 0 ? 0 : w - 8 * j);
            a[j] = ldm(acc + c0 + 8 * j, mk[j]);
        }
        for (int r = 0; r < m; r++) {
            const float *row = x + r * ldx + c0;
            for (int l = 0; l < w; l += 16) _mm_prefetch((const char *)(row + 8 * ldx + l), _MM_HINT_T0);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) a[j] = _mm256_add_ps(a[j], ldm(row + 8 * j, mk[j]));
        }
        for (int j = 0; j < 8; j++) _mm256_maskstore_ps(acc + c0 + 8 * j, mk[j], a[j]);
    }
}

static void adamw(float *p, const float *g, float *m, float *v, long n, float beta1, float beta2, float eps,
                  float decay, float step, float bc2_sqrt, float grad_scale) {
    adamw_consts c = {set1(beta1), set1(beta2), set1(1.0f - beta1), set1(1.0f - beta2), set1(eps),
                      set1(decay), set1(step), set1(1.0f / bc2_sqrt), set1(grad_scale)};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 vp = ld(p + i), vm = ld(m + i), vv = ld(v + i);
        adamw8(&vp, &vm, &vv, ld(g + i), &c);
        _mm256_storeu_ps(p + i, vp), _mm256_storeu_ps(m + i, vm), _mm256_storeu_ps(v + i, vv);
    }
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        __m256 vp = ldm(p + i, mk), vm = ldm(m + i, mk), vv = ldm(v + i, mk);
        adamw8(&vp, &vm, &vv, ldm(g + i, mk), &c);
        _mm256_maskstore_ps(p + i, mk, vp), _mm256_maskstore_ps(m + i, mk, vm), _mm256_maskstore_ps(v + i, mk, vv);
    }
}

/* the n <= 8 elements of w from element i on (mk masks the first n lanes): fp32, or halves (H) widened to fp32;
 * AVX2 has no masked 16-bit load, so a short tail of halves goes through a zeroed copy */
static inline __attribute__((always_inline)) __m256 load_w(const int H, const void *w, long i, __m256i mk, int n) {
    if (!H) return n == 8 ? ld((const float *)w + i) : ldm((const float *)w + i, mk);
    if (n == 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    uint16_t t[8] = {0};
    memcpy(t, (const uint16_t *)w + i, (size_t)n * sizeof *t);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t));
}

/* as vec_avx512.c's rbm_block with V vectors of 8 columns (V <= 2: 16 registers), the last one holding n lanes
 * (masked by mk) */
static inline __attribute__((always_inline)) void rbm_block(const int M, const int V, const int H, float *out,
                                                            long ldo, const float *x, long ldx, const void *w,
                                                            long ldw, int k, int p0, __m256i mk, int n) {
    __m256 acc[4][2];
    const __m256i full = _mm256_set1_epi32(-1);
    for (int j = 0; j < M; j++)
        for (int v = 0; v < V; v++) acc[j][v] = _mm256_setzero_ps();
    for (int d = 0; d < k; d++) {
        long wr = d * ldw + p0;
        if (V == 2) _mm_prefetch((const char *)w + (wr + 64) * (H ? 2 : 4), _MM_HINT_T0);
        __m256 wv[2];
        for (int v = 0; v < V; v++) wv[v] = load_w(H, w, wr + 8 * v, v == V - 1 ? mk : full, v == V - 1 ? n : 8);
        for (int j = 0; j < M; j++) {
            __m256 xb = set1(x[j * ldx + d]);
            for (int v = 0; v < V; v++) acc[j][v] = _mm256_fmadd_ps(xb, wv[v], acc[j][v]);
        }
    }
    for (int j = 0; j < M; j++)
        for (int v = 0; v < V; v++)
            _mm256_maskstore_ps(out + j * ldo + p0 + 8 * v, V == 2 && v == 0 ? full : mk, acc[j][v]);
}

/* The same steps as vec_avx512.c's rbm in 16-lane intrinsics: each ISA file is compiled alone. */
static inline __attribute__((always_inline)) void rbm(const int M, const int H, float *out, long ldo, const float *x,
                                                      long ldx, const void *w, long ldw, int k, int n) {
    int p = 0;
    for (; p + 16 <= n; p += 16) rbm_block(M, 2, H, out, ldo, x, ldx, w, ldw, k, p, _mm256_set1_epi32(-1), 8);
    for (; p < n; p += 8) {
        int t = n - p < 8 ? n - p : 8;
        rbm_block(M, 1, H, out, ldo, x, ldx, w, ldw, k, p, tail_mask(t), t);
    }
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

/* vec_avx512.c's rbp in 8 lanes. */
static inline __attribute__((always_inline)) void rbp(const int M, const int R, const int H, float *out, long ldo,
                                                      const float *x, long ldx, const void *const *w, const int *len,
                                                      int nb, long ldw, int r0) {
    __m256 acc[4][4];
    for (int j = 0; j < M; j++)
        for (int r = 0; r < R; r++) acc[j][r] = _mm256_setzero_ps();
    for (int b = 0, off = 0; b < nb; off += len[b++])
        for (int p = 0; p < len[b]; p += 8) {
            int t = len[b] - p < 8 ? len[b] - p : 8;
            __m256i mk = tail_mask(t);
            __m256 xv[4];
            for (int j = 0; j < M; j++) xv[j] = ldm(x + j * ldx + off + p, mk);
            for (int r = 0; r < R; r++) {
                __m256 wv = load_w(H, w[b], (r0 + r) * ldw + p, mk, t);
                for (int j = 0; j < M; j++) acc[j][r] = _mm256_fmadd_ps(xv[j], wv, acc[j][r]);
            }
        }
    for (int j = 0; j < M; j++)
        for (int r = 0; r < R; r++) out[j * ldo + r0 + r] += hsum(acc[j][r]);
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

/* tanh(u) = sign(u) (1 - e) / (1 + e), e = exp(-2|u|): as vec_avx512.c's tanh16 */
static inline __m256 tanh8(__m256 u) {
    __m256 sign = _mm256_and_ps(u, set1(-0.0f)), a = _mm256_andnot_ps(set1(-0.0f), u);
    __m256 e = exp8(_mm256_mul_ps(a, set1(-2.0f)));
    return _mm256_or_ps(_mm256_div_ps(_mm256_sub_ps(set1(1.0f), e), _mm256_add_ps(set1(1.0f), e)), sign);
}

static void softcap(float *x, int n, float scale, float cap) {
    __m256 k = set1(scale / cap), c = set1(cap);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(c, tanh8(_mm256_mul_ps(ld(x + i), k))));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, mk, _mm256_mul_ps(c, tanh8(_mm256_mul_ps(ldm(x + i, mk), k))));
    }
}

static inline __m256 softcap_grad8(__m256 d, __m256 y, __m256 k, __m256 sc) {
    __m256 r = _mm256_mul_ps(y, k);
    return _mm256_mul_ps(d, _mm256_mul_ps(_mm256_fnmadd_ps(r, r, set1(1.0f)), sc));
}

static void softcap_backward(float *d, const float *y, int n, float cap, float scale) {
    __m256 k = set1(1.0f / cap), sc = set1(scale);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, softcap_grad8(ld(d + i), ld(y + i), k, sc));
    if (i < n) {
        __m256i mk = tail_mask(n - i);
        _mm256_maskstore_ps(d + i, mk, softcap_grad8(ldm(d + i, mk), ldm(y + i, mk), k, sc));
    }
}

static void dropout(float *out, const float *x, int n, uint64_t key, uint64_t e0, uint64_t keep_from, float scale) {
    lmf_dropout_body(out, x, n, key, e0, keep_from, scale);
}

const lmf_vec_ops lmf_vec_avx2 = LMF_VEC_OPS_TABLE("avx2");
