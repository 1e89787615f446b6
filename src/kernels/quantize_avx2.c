/* quantize_avx2.c — weight quantizers on AVX2, the reference's bytes (quant_ref.c, quant_kquant_ref.c), for
 * whole models (lmf_quantize_fast: export, quantize):
 *   - the K-quants' scale search (lmf_kq_fit) eight sub-blocks at a time: lane k of every vector is sub-block k, so
 *     each lane runs the reference's operations (ggml's make_qkx2_quants and make_qx_quants) in the reference's
 *     order, its sums added element by element. A trial the reference takes in one lane and not in another is a
 *     per-lane blend. The search is most of what a K-quant costs (20 trial roundings of every weight for Q4_K);
 *     this runs it 2-4x faster on one core;
 *   - Q8_0 (the embedding under every integer file type), a block's 32 weights a few vectors.
 * Compiled with -mavx2 and without -mfma: a multiply-add contracted into an FMA would round once where the
 * reference rounds twice. Used by the AVX2 and AVX-512 tables (kq_fit, quantize_q8_0). */
#include "kernels/quant.h"

#include "core/dtype.h"

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

/* make_qx_quants(16, 32, x, L, rmse_type 1, NULL) of the 8 sub-blocks of 16 at x: their scales, and their quants
 * + 32 into L (8 x 16 bytes). */
static void fit_signed8(const float *x, float *scale_out, uint8_t *L) {
    const int nmax = 32;
    __m256 xt[16], zero = _mm256_setzero_ps();
    gather8(x, 16, xt);
    __m256 amax = zero, max = zero;
    for (int i = 0; i < 16; i++) {
        __m256 ax = absf(xt[i]), m = gt(ax, amax);
        amax = pick(amax, ax, m), max = pick(max, xt[i], m);
    }
    __m256 small = _mm256_cmp_ps(amax, _mm256_set1_ps(GROUP_MAX_EPS), _CMP_LT_OQ);
/* sumlx += w x l and suml2 += w l l over the sub-block (w = x^2), l the clamped rounding of iscale x */
#define SUMS(iscale)                                                                                                   \
    do {                                                                                                               \
        sumlx = suml2 = zero;                                                                                          \
        for (int i = 0; i < 16; i++) {                                                                                 \
            __m256 lf = _mm256_cvtepi32_ps(clamp(nearest(_mm256_mul_ps(iscale, xt[i])), -nmax, nmax - 1));             \
            __m256 w = _mm256_mul_ps(xt[i], xt[i]);                                                                    \
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, xt[i]), lf));                                  \
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));                                     \
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
    __m256i l[16];
    for (int i = 0; i < 16; i++) {
        l[i] = clamp(nearest(_mm256_mul_ps(best_iscale, xt[i])), -nmax, nmax - 1);
        l[i] = _mm256_andnot_si256(_mm256_castps_si256(small), _mm256_add_epi32(l[i], _mm256_set1_epi32(nmax)));
    }
    scatter8(l, 16, L);
    _mm256_storeu_ps(scale_out, pick(scale, zero, small));
}

/* make_qkx2_quants(32, nmax, x, w, L, &min, ., rmin, 0.1, nstep, false) of the 8 sub-blocks of 32 at x, weights
 * sqrt(mean x^2) + |x|: their scales, mins (-min) and quants into L (8 x 32 bytes). */
static void fit_min8(const float *x, int nmax, float rmin, int nstep, float *scale_out, float *min_out, uint8_t *L) {
    __m256 xt[32], w[32], zero = _mm256_setzero_ps();
    gather8(x, 32, xt);
    __m256 sum_x2 = zero;
    for (int i = 0; i < 32; i++) sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(xt[i], xt[i]));
    __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.0f)));
    for (int i = 0; i < 32; i++) w[i] = _mm256_add_ps(av_x, absf(xt[i]));
    __m256 min = xt[0], max = xt[0], sum_w = w[0], sum_x = _mm256_mul_ps(w[0], xt[0]);
    for (int i = 1; i < 32; i++) {
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
    for (int i = 0; i < 32; i++) {
        lb[i] = clamp(nearest(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], min))), 0, nmax);
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(lb[i])), min), xt[i]);
        best_error = _mm256_add_ps(best_error, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = _mm256_div_ps(_mm256_set1_ps(rmin + 0.1f * (float)is + (float)nmax), _mm256_sub_ps(max, min));
        __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < 32; i++) {
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
        for (int i = 0; i < 32; i++) {
            __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(la[i])), this_min),
                                        xt[i]);
            cur_error = _mm256_add_ps(cur_error, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
        }
        __m256 take = _mm256_and_ps(gt(D, zero), _mm256_cmp_ps(cur_error, best_error, _CMP_LT_OQ));
        if (!_mm256_movemask_ps(take)) continue;
        __m256i t = _mm256_castps_si256(take);
        for (int i = 0; i < 32; i++) lb[i] = _mm256_blendv_epi8(lb[i], la[i], t);
        best_error = pick(best_error, cur_error, take);
        scale = pick(scale, this_scale, take), min = pick(min, this_min, take);
    }
    __m256i keep = _mm256_castps_si256(_mm256_andnot_ps(flat, _mm256_castsi256_ps(_mm256_set1_epi32(-1))));
    for (int i = 0; i < 32; i++) lb[i] = _mm256_and_si256(lb[i], keep);
    scatter8(lb, 32, L);
    _mm256_storeu_ps(scale_out, pick(scale, zero, flat));
    _mm256_storeu_ps(min_out, _mm256_xor_ps(pick(min, min0, flat), _mm256_set1_ps(-0.0f)));
}

void lmf_kq_fit_avx2(uint32_t type, const float *x, lmf_kq_fit *f) {
    if (type == LMF_GGML_Q6_K) {
        fit_signed8(x, f->scale, f->L);
        fit_signed8(x + 128, f->scale + 8, f->L + 128);
    } else if (type == LMF_GGML_Q5_K) {
        fit_min8(x, 31, -0.5f, 15, f->scale, f->min, f->L);
    } else {
        fit_min8(x, 15, -1.0f, 20, f->scale, f->min, f->L);
    }
}

/* quantize_row_q8_0_ref: d = max|x| / 127 (a NaN passed over), q = x / d rounded halves away from zero, stored as
 * the low byte of the rounded int (what the reference's conversions give for a NaN or an infinity too). */
void lmf_quantize_q8_0_avx2(const float *x, void *out, size_t nblocks) {
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    uint8_t *o = out;
    for (size_t b = 0; b < nblocks; b++, x += 32, o += 34) {
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k), amax = _mm256_max_ps(absf(v[k]), amax);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        float d = _mm_cvtss_f32(m4) / 127, id = d ? 1.0f / d : 0.0f;
        uint16_t h = lmf_f32_to_f16(d);
        o[0] = (uint8_t)h, o[1] = (uint8_t)(h >> 8);
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_mul_ps(v[k], _mm256_set1_ps(id));
            __m256i i = _mm256_cvttps_epi32(t);
            __m256 f = _mm256_sub_ps(t, _mm256_cvtepi32_ps(i));
            i = _mm256_sub_epi32(i, _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
            i = _mm256_add_epi32(i, _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(-0.5f), _CMP_LE_OQ)));
            q[k] = _mm256_and_si256(i, _mm256_set1_epi32(0xff)); /* the low byte, so the packs cannot saturate */
        }
        __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)(o + 2), _mm256_permutevar8x32_epi32(p, order));
    }
}
