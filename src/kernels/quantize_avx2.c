/* quantize_avx2.c — weight quantizers on AVX2, the reference's bytes (quant_ref.c, quant_kquant_ref.c), for
 * whole models (lmf_quantize_fast: export, quantize):
 *   - the K-quants' scale search (lmf_kq_fit), and every search under an importance matrix (lmf_wfit), eight
 *     sub-blocks at a time: lane k of every vector is sub-block k, so
 *     each lane runs the reference's operations (ggml's make_qkx2_quants and make_qx_quants) in the reference's
 *     order, its sums added element by element. A trial the reference takes in one lane and not in another is a
 *     per-lane blend. The search is most of what a K-quant costs (20 trial roundings of every weight for Q4_K);
 *     this runs it 2-4x faster on one core;
 *   - Q8_0 (the embedding under every integer file type), Q4_0, Q4_1, Q5_0 and Q5_1 a block at a time.
 * Compiled with -mavx2 and without -mfma: a multiply-add contracted into an FMA would round once where the
 * reference rounds twice. Used by the AVX2 and AVX-512 tables (kq_fit, quantize_blocks). */
#include "kernels/quant.h"

#include "core/dtype.h"

#include <float.h>
#include <immintrin.h>
#include <string.h>

#define GROUP_MAX_EPS 1e-15f /* as quant_kquant_ref.c */

/* ggml's nearest_int, lane by lane: the rounded value sits in the low mantissa bits of v + 1.5 * 2^23 */
static inline __m256i nearest(__m256 v) {
    __m256i i = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(12582912.0f)));
    return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

static inline __m256i clamp(__m256i v, int lo, int hi) {
    return _mm256_max_epi32(_mm256_set1_epi32(lo), _mm256_min_epi32(_mm256_set1_epi32(hi), v));
}

static inline __m256 absf(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
static inline __m256 gt(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline __m256 pick(__m256 if_not, __m256 if_set, __m256 mask) { return _mm256_blendv_ps(if_not, if_set, mask); }

/* The n-element sub-blocks at x, x + n, ..., x + 7n transposed: out[i] lane k = x[n k + i]. */
static void gather8(const float *x, int n, __m256 *out) {
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(n));
    for (int i = 0; i < n; i++) out[i] = _mm256_i32gather_ps(x + i, idx, 4);
}

/* Lane k of l[i] (a quant of sub-block k) to L[n k + i]. */
static void scatter8(const __m256i *l, int n, uint8_t *L) {
    int32_t t[8];
    for (int i = 0; i < n; i++) {
        _mm256_storeu_si256((__m256i *)t, l[i]);
        for (int k = 0; k < 8; k++) L[n * k + i] = (uint8_t)t[k];
    }
}

/* make_qx_quants(n, nmax, x, L, rmse_type 1, qw) of the 8 sub-blocks of n (16 or 32) at x, weighted by qw (the same
 * layout as x; NULL: x^2): their scales, and their quants + nmax into L (8 x n bytes). */
static void fit_signed8(const float *x, const float *qw, int n, int nmax, float *scale_out, uint8_t *L) {
    __m256 xt[32], wt[32], zero = _mm256_setzero_ps();
    gather8(x, n, xt);
    if (qw) gather8(qw, n, wt);
    else
        for (int i = 0; i < n; i++) wt[i] = _mm256_mul_ps(xt[i], xt[i]);
    __m256 amax = zero, max = zero;
    for (int i = 0; i < n; i++) {
        __m256 ax = absf(xt[i]), m = gt(ax, amax);
        amax = pick(amax, ax, m), max = pick(max, xt[i], m);
    }
    __m256 small = _mm256_cmp_ps(amax, _mm256_set1_ps(GROUP_MAX_EPS), _CMP_LT_OQ);
/* sumlx += w x l and suml2 += w l l over the sub-block, l the clamped rounding of iscale x */
#define SUMS(iscale)                                                                                                   \
    do {                                                                                                               \
        sumlx = suml2 = zero;                                                                                          \
        for (int i = 0; i < n; i++) {                                                                                  \
            __m256 lf = _mm256_cvtepi32_ps(clamp(nearest(_mm256_mul_ps(iscale, xt[i])), -nmax, nmax - 1));             \
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wt[i], xt[i]), lf));                              \
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wt[i], lf), lf));                                 \
        }                                                                                                              \
    } while (0)
    __m256 sumlx, suml2, iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
    SUMS(iscale);
    __m256 scale = pick(zero, _mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ));
    __m256 best = _mm256_mul_ps(scale, sumlx), best_iscale = iscale;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = _mm256_div_ps(_mm256_set1_ps(-((float)nmax + 0.1f * (float)is)), max);
        SUMS(iscale);
        __m256 take = _mm256_and_ps(gt(suml2, zero), gt(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2)));
        __m256 s = _mm256_div_ps(sumlx, suml2);
        scale = pick(scale, s, take), best = pick(best, _mm256_mul_ps(s, sumlx), take);
        best_iscale = pick(best_iscale, iscale, take);
    }
#undef SUMS
    /* the quants of the scale kept (the reference rounds them again each time a trial wins: the same values) */
    __m256i l[32];
    for (int i = 0; i < n; i++) {
        l[i] = clamp(nearest(_mm256_mul_ps(best_iscale, xt[i])), -nmax, nmax - 1);
        l[i] = _mm256_andnot_si256(_mm256_castps_si256(small), _mm256_add_epi32(l[i], _mm256_set1_epi32(nmax)));
    }
    scatter8(l, n, L);
    _mm256_storeu_ps(scale_out, pick(scale, zero, small));
}

/* make_qkx2_quants(n, nmax, x, w, L, &min, ., rmin, rdelta, nstep, mad) of the 8 sub-blocks of n (16 or 32) at x,
 * weights ww (x's layout; NULL, n 32 only: sqrt(mean x^2) + |x|, the K-quants' own): their scales, mins (-min) and
 * quants into L (8 x n bytes). With weights given it is make_qkx3_quants too (the two differ only without weights);
 * mad: absolute errors (Q2_K's). */
static void fit_min8(const float *x, const float *ww, int n, int nmax, float rmin, float rdelta, int nstep, int mad,
                     float *scale_out, float *min_out, uint8_t *L) {
    __m256 xt[32], w[32], zero = _mm256_setzero_ps();
    gather8(x, n, xt);
    if (ww) {
        gather8(ww, n, w);
    } else {
        __m256 sum_x2 = zero;
        for (int i = 0; i < 32; i++) sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(xt[i], xt[i]));
        __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.0f)));
        for (int i = 0; i < 32; i++) w[i] = _mm256_add_ps(av_x, absf(xt[i]));
    }
    __m256 min = xt[0], max = xt[0], sum_w = w[0], sum_x = _mm256_mul_ps(w[0], xt[0]);
    for (int i = 1; i < n; i++) {
        min = pick(min, xt[i], _mm256_cmp_ps(xt[i], min, _CMP_LT_OQ));
        max = pick(max, xt[i], gt(xt[i], max));
        sum_w = _mm256_add_ps(sum_w, w[i]);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w[i], xt[i]));
    }
    min = pick(min, zero, gt(min, zero));
    __m256 flat = _mm256_cmp_ps(max, min, _CMP_EQ_OQ), min0 = min; /* flat: L = 0, scale 0, -min as it is */
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max, min));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale), best_error = zero;
    __m256i lb[32], la[32];
    for (int i = 0; i < n; i++) {
        lb[i] = clamp(nearest(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], min))), 0, nmax);
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(lb[i])), min), xt[i]);
        best_error = _mm256_add_ps(best_error, _mm256_mul_ps(w[i], mad ? absf(diff) : _mm256_mul_ps(diff, diff)));
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = _mm256_div_ps(_mm256_set1_ps(rmin + rdelta * (float)is + (float)nmax), _mm256_sub_ps(max, min));
        __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; i++) {
            la[i] = clamp(nearest(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], min))), 0, nmax);
            __m256 lf = _mm256_cvtepi32_ps(la[i]), wl = _mm256_mul_ps(w[i], lf);
            sum_l = _mm256_add_ps(sum_l, wl);
            sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, lf));
            sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, xt[i]));
        }
        __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
        __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
        __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
        __m256 pos = gt(this_min, zero);
        this_scale = pick(this_scale, _mm256_div_ps(sum_xl, sum_l2), pos), this_min = pick(this_min, zero, pos);
        __m256 cur_error = zero;
        for (int i = 0; i < n; i++) {
            __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(la[i])), this_min),
                                        xt[i]);
            cur_error = _mm256_add_ps(cur_error, _mm256_mul_ps(w[i], mad ? absf(diff) : _mm256_mul_ps(diff, diff)));
        }
        __m256 take = _mm256_and_ps(gt(D, zero), _mm256_cmp_ps(cur_error, best_error, _CMP_LT_OQ));
        if (!_mm256_movemask_ps(take)) continue;
        __m256i t = _mm256_castps_si256(take);
        for (int i = 0; i < n; i++) lb[i] = _mm256_blendv_epi8(lb[i], la[i], t);
        best_error = pick(best_error, cur_error, take);
        scale = pick(scale, this_scale, take), min = pick(min, this_min, take);
    }
    __m256i keep = _mm256_castps_si256(_mm256_andnot_ps(flat, _mm256_castsi256_ps(_mm256_set1_epi32(-1))));
    for (int i = 0; i < n; i++) lb[i] = _mm256_and_si256(lb[i], keep);
    scatter8(lb, n, L);
    _mm256_storeu_ps(scale_out, pick(scale, zero, flat));
    _mm256_storeu_ps(min_out, _mm256_xor_ps(pick(min, min0, flat), _mm256_set1_ps(-0.0f)));
}

void lmf_kq_fit_avx2(uint32_t type, const float *x, lmf_kq_fit *f) {
    if (type == LMF_GGML_Q6_K) {
        fit_signed8(x, NULL, 16, 32, f->scale, f->L);
        fit_signed8(x + 128, NULL, 16, 32, f->scale + 8, f->L + 128);
    } else if (type == LMF_GGML_Q5_K) {
        fit_min8(x, NULL, 32, 31, -0.5f, 0.1f, 15, 0, f->scale, f->min, f->L);
    } else {
        fit_min8(x, NULL, 32, 15, -1.0f, 0.1f, 20, 0, f->scale, f->min, f->L);
    }
}

void lmf_wfit_avx2(lmf_wfit_kind kind, int nmax, const float *x, const float *w, lmf_kq_fit *f) {
    if (kind == LMF_WFIT_MIN) {
        fit_min8(x, w, 32, nmax, -0.9f, 0.05f, 36, 0, f->scale, f->min, f->L);
    } else if (kind == LMF_WFIT_SIGNED16) {
        fit_signed8(x, w, 16, nmax, f->scale, f->L);
        fit_signed8(x + 128, w + 128, 16, nmax, f->scale + 8, f->L + 128);
    } else {
        fit_signed8(x, w, 32, nmax, f->scale, f->L);
    }
}

void lmf_q2_fit_avx2(const float *x, const float *w, float rmin, float rdelta, int nstep, int mad, float scales[16],
                     float mins[16], uint8_t L[256]) {
    fit_min8(x, w, 16, 3, rmin, rdelta, nstep, mad, scales, mins, L);
    fit_min8(x + 128, w + 128, 16, 3, rmin, rdelta, nstep, mad, scales + 8, mins + 8, L + 128);
}

/* make_q3_quants(16, nmax, x, L, do_rmse) of the 8 sub-blocks of 16 at x (quant_kquant_ref.c's fit_scale_q3): the
 * largest-magnitude scale's quants, then each moved alone while that raises the weighted fit (weights x^2), in up
 * to 5 rounds, element by element in the reference's order in every lane. A lane whose round changed nothing is
 * done: another round on it changes nothing either, so the rounds go on until every lane is (or 5). Quants + nmax
 * into L (8 x 16 bytes); a sub-block below GROUP_MAX_EPS gets scale 0 and quants 0, as the reference. */
static void fit_q3_8(const float *x, int nmax, float *scale_out, int8_t *L) {
    __m256 xt[16], wt[16], zero = _mm256_setzero_ps();
    __m256i l[16];
    gather8(x, 16, xt);
    __m256 amax = zero, max = zero;
    for (int i = 0; i < 16; i++) {
        __m256 ax = absf(xt[i]), m = gt(ax, amax);
        amax = pick(amax, ax, m), max = pick(max, xt[i], m);
        wt[i] = _mm256_mul_ps(xt[i], xt[i]);
    }
    __m256 small = _mm256_cmp_ps(amax, _mm256_set1_ps(GROUP_MAX_EPS), _CMP_LT_OQ);
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max), sumlx = zero, suml2 = zero;
    for (int i = 0; i < 16; i++) {
        l[i] = clamp(nearest(_mm256_mul_ps(iscale, xt[i])), -nmax, nmax - 1);
        __m256 lf = _mm256_cvtepi32_ps(l[i]);
        sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wt[i], xt[i]), lf));
        suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wt[i], lf), lf));
    }
    for (int itry = 0; itry < 5; itry++) {
        __m256 changed = zero;
        for (int i = 0; i < 16; i++) {
            __m256 lf = _mm256_cvtepi32_ps(l[i]), wx = _mm256_mul_ps(wt[i], xt[i]);
            __m256 slx = _mm256_sub_ps(sumlx, _mm256_mul_ps(wx, lf));
            __m256 sl2 = _mm256_sub_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wt[i], lf), lf));
            __m256i nl = clamp(nearest(_mm256_div_ps(_mm256_mul_ps(xt[i], sl2), slx)), -nmax, nmax - 1);
            __m256 nf = _mm256_cvtepi32_ps(nl);
            slx = _mm256_add_ps(slx, _mm256_mul_ps(wx, nf));
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(wt[i], nf), nf));
            __m256 take = _mm256_and_ps(gt(_mm256_sub_ps(sumlx, _mm256_mul_ps(wx, lf)), zero),
                                        _mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpeq_epi32(nl, l[i]),
                                                                             _mm256_set1_epi32(-1))));
            take = _mm256_and_ps(take, gt(sl2, zero));
            take = _mm256_and_ps(take, gt(_mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2),
                                          _mm256_mul_ps(_mm256_mul_ps(sumlx, sumlx), sl2)));
            l[i] = _mm256_castps_si256(pick(_mm256_castsi256_ps(l[i]), _mm256_castsi256_ps(nl), take));
            sumlx = pick(sumlx, slx, take), suml2 = pick(suml2, sl2, take);
            changed = _mm256_or_ps(changed, take);
        }
        if (!_mm256_movemask_ps(_mm256_andnot_ps(small, changed))) break;
    }
    for (int i = 0; i < 16; i++)
        l[i] = _mm256_andnot_si256(_mm256_castps_si256(small), _mm256_add_epi32(l[i], _mm256_set1_epi32(nmax)));
    scatter8(l, 16, (uint8_t *)L);
    __m256 scale = pick(zero, _mm256_div_ps(sumlx, suml2), gt(suml2, zero));
    _mm256_storeu_ps(scale_out, pick(scale, zero, small));
}

void lmf_q3_fit_avx2(const float *x, const float *w, float scales[16], int8_t L[256]) {
    for (int h = 0; h < 2; h++)
        if (w) fit_signed8(x + 128 * h, w + 128 * h, 16, 4, scales + 8 * h, (uint8_t *)L + 128 * h);
        else fit_q3_8(x + 128 * h, 4, scales + 8 * h, L + 128 * h);
}

/* A block's 32 quants (ints, the byte that matters low) as bytes in element order. */
static inline __m256i bytes32(const __m256i q[4]) {
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), low = _mm256_set1_epi32(0xff);
    __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(_mm256_and_si256(q[0], low), _mm256_and_si256(q[1], low)),
                                    _mm256_packus_epi32(_mm256_and_si256(q[2], low), _mm256_and_si256(q[3], low)));
    return _mm256_permutevar8x32_epi32(p, order); /* the low byte of each, so the packs cannot saturate */
}

static inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

static inline float hmin(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)));
}

static inline void put16(uint8_t *o, float v) {
    uint16_t h = lmf_f32_to_f16(v);
    o[0] = (uint8_t)h, o[1] = (uint8_t)(h >> 8);
}

/* (int)roundf(v) lane by lane for |v| < 2^31 (halves away from zero; v - trunc(v) is exact there) */
static inline __m256i round_away8(__m256 v) {
    __m256i i = _mm256_cvttps_epi32(v);
    __m256 f = _mm256_sub_ps(v, _mm256_cvtepi32_ps(i));
    i = _mm256_sub_epi32(i, _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
    return _mm256_add_epi32(i, _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(-0.5f), _CMP_LE_OQ)));
}

/* (int8_t) of a float, as the reference's conversion gives it: the truncated int's low byte, sign-extended */
static inline __m256i to_i8(__m256 v) { return _mm256_srai_epi32(_mm256_slli_epi32(_mm256_cvttps_epi32(v), 24), 24); }

/* Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 as quant_ref.c's lmf_quantize_row makes them (ggml's quantize_row_*_ref), a
 * block at a time: the same multiplies and adds, the same truncating conversions, the same choice of the block's
 * extreme element (the first of the largest magnitude, for Q4_0 / Q5_0; the min and max for Q4_1 / Q5_1, taken in
 * element order where a signed zero could make the order show). */
void lmf_quantize_blocks_avx2(uint32_t type, const float *x, void *out, size_t nblocks) {
    int q5 = type == LMF_GGML_Q5_0 || type == LMF_GGML_Q5_1, qmax = q5 ? 31 : 15;
    uint32_t bs, bb;
    lmf_ggml_type_block(type, &bs, &bb);
    uint8_t *o = out;
    for (size_t b = 0; b < nblocks; b++, x += 32, o += bb) {
        __m256 v[4];
        __m256i q[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
        if (type == LMF_GGML_Q8_0) {
            __m256 amax = _mm256_setzero_ps(); /* max_ps(|x|, acc) keeps acc for a NaN, as the reference does */
            for (int k = 0; k < 4; k++) amax = _mm256_max_ps(absf(v[k]), amax);
            float d = hmax(amax) / 127, id = d ? 1.0f / d : 0.0f;
            put16(o, d);
            for (int k = 0; k < 4; k++) q[k] = round_away8(_mm256_mul_ps(v[k], _mm256_set1_ps(id)));
            _mm256_storeu_si256((__m256i *)(o + 2), bytes32(q));
            continue;
        }
        float d, add;
        __m256 sub = _mm256_setzero_ps();
        if (type == LMF_GGML_Q4_0 || type == LMF_GGML_Q5_0) {
            __m256 amax = _mm256_setzero_ps();
            for (int k = 0; k < 4; k++) amax = _mm256_max_ps(absf(v[k]), amax);
            float am = hmax(amax), max = 0.0f; /* the first element of that magnitude, with its sign */
            if (am > 0) {
                uint32_t hit = 0;
                for (int k = 0; k < 4; k++)
                    hit |= (uint32_t)_mm256_movemask_ps(
                               _mm256_cmp_ps(absf(v[k]), _mm256_set1_ps(am), _CMP_EQ_OQ))
                           << (8 * k);
                max = x[__builtin_ctz(hit)];
            }
            d = max / (float)-(q5 ? 16 : 8), add = (float)(q5 ? 16 : 8) + 0.5f;
            put16(o, d);
        } else {
            __m256 lo = _mm256_set1_ps(FLT_MAX), hi = _mm256_set1_ps(-FLT_MAX); /* min_ps(x, acc): a NaN keeps acc */
            for (int k = 0; k < 4; k++) lo = _mm256_min_ps(v[k], lo), hi = _mm256_max_ps(v[k], hi);
            float mn = hmin(lo), mx = hmax(hi);
            if (mn == 0 || mx == 0) { /* +0 and -0 compare equal: which one the reference keeps is order's */
                mn = FLT_MAX, mx = -FLT_MAX;
                for (int j = 0; j < 32; j++) {
                    if (x[j] < mn) mn = x[j];
                    if (x[j] > mx) mx = x[j];
                }
            }
            d = (mx - mn) / (float)qmax, add = 0.5f, sub = _mm256_set1_ps(mn);
            put16(o, d);
            put16(o + 2, mn);
        }
        float id = d ? 1.0f / d : 0.0f;
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v[k], sub), _mm256_set1_ps(id)), _mm256_set1_ps(add));
            /* Q5_1 converts straight to uint8_t; the others clamp an int8_t to qmax */
            q[k] = type == LMF_GGML_Q5_1 ? _mm256_cvttps_epi32(t) : _mm256_min_epi32(to_i8(t), _mm256_set1_epi32(qmax));
        }
        __m256i by = bytes32(q);
        __m128i lo = _mm256_castsi256_si128(by), hi = _mm256_extracti128_si256(by, 1);
        __m128i qs = _mm_or_si128(_mm_and_si128(lo, _mm_set1_epi8(0x0f)),
                                  _mm_and_si128(_mm_slli_epi16(hi, 4), _mm_set1_epi8((char)0xf0)));
        uint8_t *qp = o + (type == LMF_GGML_Q4_0 ? 2 : type == LMF_GGML_Q4_1 ? 4 : type == LMF_GGML_Q5_0 ? 6 : 8);
        _mm_storeu_si128((__m128i *)qp, qs);
        if (q5) { /* bit j: element j's fifth bit (bit 4 moved to the byte's top for movemask) */
            uint32_t qh = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(by, 3));
            memcpy(qp - 4, &qh, 4);
        }
    }
}

/* ---- IQ4_NL / IQ4_XS's scale search (lmf_iq4_scales_ref), the 8 blocks of 32 in the lanes -------------------- */

/* lmf_iq4nl_values[i] lane by lane, i in 0..15 (two 8-entry permutes) */
static inline __m256 iq4_value(__m256i i) {
    const __m256 lo = _mm256_setr_ps(-127, -104, -83, -65, -49, -35, -22, -10);
    const __m256 hi = _mm256_setr_ps(1, 13, 25, 38, 53, 69, 89, 113);
    __m256 a = _mm256_permutevar8x32_ps(lo, i), b = _mm256_permutevar8x32_ps(hi, i);
    return pick(a, b, _mm256_castsi256_ps(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(7))));
}

/* quant_kquant_ref.c's iq4_index (ggml's best_index_int8) lane by lane: the value nearest x, ties to the upper;
 * below the first value 0, from the last 15, NaN 15 (as its binary search ends) */
static inline __m256i iq4_index8(__m256 x) {
    /* mu = how many values are <= x: the binary search's upper end, v[mu - 1] <= x < v[mu] */
    __m256i mu = _mm256_set1_epi32(1);
    for (int k = 1; k < 15; k++)
        mu = _mm256_sub_epi32(mu, _mm256_castps_si256(_mm256_cmp_ps(_mm256_set1_ps(lmf_iq4nl_values[k]), x,
                                                                      _CMP_LE_OQ)));
    __m256i ml = _mm256_sub_epi32(mu, _mm256_set1_epi32(1));
    __m256 below = _mm256_cmp_ps(_mm256_sub_ps(x, iq4_value(ml)), _mm256_sub_ps(iq4_value(mu), x), _CMP_LT_OQ);
    __m256i i = _mm256_castps_si256(pick(_mm256_castsi256_ps(mu), _mm256_castsi256_ps(ml), below));
    __m256 first = _mm256_cmp_ps(x, _mm256_set1_ps(-127.0f), _CMP_LE_OQ);
    __m256 last = _mm256_cmp_ps(x, _mm256_set1_ps(113.0f), _CMP_NLT_UQ); /* x >= 113, or NaN */
    i = _mm256_castps_si256(pick(_mm256_castsi256_ps(i), _mm256_castsi256_ps(_mm256_set1_epi32(15)), last));
    return _mm256_andnot_si256(_mm256_castps_si256(first), i);
}

/* sum_j w_j q_j x_j and sum_j w_j q_j^2 for the quants of id x (the reference's order: j ascending, (w q) x) */
static inline void iq4_sums(const __m256 *xt, const __m256 *wt, __m256 id, __m256 *sumqx, __m256 *sumq2) {
    __m256 a = _mm256_setzero_ps(), b = a;
    for (int j = 0; j < 32; j++) {
        __m256 q = iq4_value(iq4_index8(_mm256_mul_ps(id, xt[j]))), wq = _mm256_mul_ps(wt[j], q);
        a = _mm256_add_ps(a, _mm256_mul_ps(wq, xt[j]));
        b = _mm256_add_ps(b, _mm256_mul_ps(wq, q));
    }
    *sumqx = a, *sumq2 = b;
}

void lmf_iq4_scales_avx2(int sbs, int nb, const float *x, const float *qw, float scales[8]) {
    if (nb != 8) { /* a row's last blocks */
        lmf_iq4_scales_ref(sbs, nb, x, qw, scales);
        return;
    }
    __m256 xt[32], wt[32], zero = _mm256_setzero_ps();
    gather8(x, 32, xt);
    if (qw) {
        float sig[8];
        for (int k = 0; k < 8; k++) { /* sigma^2 as the reference sums it: over the super-block, element by element */
            const float *s0 = x + (sbs == 256 ? 0 : 32 * k);
            float s = 0;
            for (int j = 0; j < sbs; j++) s += s0[j] * s0[j];
            sig[k] = s * (2.f / (float)sbs);
        }
        __m256 sigma2 = _mm256_loadu_ps(sig);
        gather8(qw, 32, wt);
        for (int j = 0; j < 32; j++)
            wt[j] = _mm256_mul_ps(wt[j], _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(xt[j], xt[j]))));
    } else {
        for (int j = 0; j < 32; j++) wt[j] = _mm256_mul_ps(xt[j], xt[j]);
    }
    __m256 amax = zero, max = zero;
    for (int j = 0; j < 32; j++) {
        __m256 a = absf(xt[j]), m = gt(a, amax);
        amax = pick(amax, a, m), max = pick(max, xt[j], m);
    }
    __m256 d = _mm256_div_ps(max, _mm256_set1_ps(127.0f)), sumqx, sumq2; /* -max / v[0] */
    iq4_sums(xt, wt, _mm256_div_ps(_mm256_set1_ps(1.0f), d), &sumqx, &sumq2);
    __m256 pos = gt(sumq2, zero);
    d = pick(zero, _mm256_div_ps(sumqx, sumq2), pos);
    __m256 best = _mm256_mul_ps(d, sumqx);
    for (int itry = -7; itry <= 7; itry++) {
        iq4_sums(xt, wt, _mm256_div_ps(_mm256_set1_ps((float)(itry - 127)), max), &sumqx, &sumq2);
        __m256 take = _mm256_and_ps(gt(sumq2, zero),
                                    gt(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2)));
        __m256 dn = _mm256_div_ps(sumqx, sumq2);
        d = pick(d, dn, take), best = pick(best, _mm256_mul_ps(dn, sumqx), take);
    }
    /* blocks whose largest |x| is below GROUP_MAX_EPS keep scale 0 */
    _mm256_storeu_ps(scales, pick(d, zero, _mm256_cmp_ps(amax, _mm256_set1_ps(GROUP_MAX_EPS), _CMP_LT_OQ)));
}
