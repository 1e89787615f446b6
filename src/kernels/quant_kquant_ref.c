/* quant_kquant_ref.c — ggml's search-based quantizers, as its reference code makes them, so a file written here holds
 * the same bytes as llama.cpp's:
 *  - the K-quants (Q4_K, Q5_K, Q6_K) without an importance matrix (quantize_row_q{4,5,6}_K_ref, what llama-quantize
 *    runs by default): each super-block of 256 weights gets sub-block scales (and mins) fitted by a small search,
 *    then those scales quantized to 6 (Q4_K / Q5_K) or 8 bits (Q6_K) and the weights requantized against the stored
 *    scales;
 *  - every integer type under an importance matrix (quantize_row_*_impl, what `llama-quantize --imatrix` runs): the
 *    same searches with each column's weight from the matrix (its mean squared input), the K-quants' 6-bit scales
 *    then fitted by weighted least squares too, and Q4_0 / Q4_1 / Q5_0 / Q5_1 fitted by search instead of max / min.
 *
 * Bit-exactness rests on doing each float operation in ggml's order with no FMA contraction (the file is compiled
 * like every *_ref.c, and ggml builds these functions into ggml-base without -march flags), on ggml's rounding
 * (nearest_int below, not roundf) and on keeping the fitted quants of a sub-block whose stored scale is zero. */
#include "kernels/quant.h"

#include "core/dtype.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define GROUP_MAX_EPS 1e-15f /* ggml: a group whose largest magnitude is below this is all zeros */

static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int imin(int a, int b) { return a < b ? a : b; }

/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves the rounded value in the low mantissa
 * bits (ggml's nearest_int; roundf would round ties away from zero). Bits, not a conversion: never undefined. */
static inline int nearest_int(float v) {
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* ggml's make_qkx2_quants (squared error): quants L in [0, nmax] with x ~ scale * L - the_min, weighted by w.
 * Starts from the min-max fit, then tries nstep + 1 scales around it (nmax + rmin + rdelta * is levels over the
 * range), solving the weighted least-squares scale and min for each trial rounding; keeps the lowest error (squared,
 * or absolute with mad: Q2_K's). With nstep >= 1 it is make_qkx3_quants too, given weights.
 * Returns the scale, *the_min = -min >= 0. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                           uint8_t *Laux, float rmin, float rdelta, int nstep, int mad) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
        float diff = scale * (float)L[i] + min - x[i];
        best_error += w[i] * (mad ? fabsf(diff) : diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                cur_error += w[i] * (mad ? fabsf(diff) : diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* The first element of largest magnitude of x[0..n), as *max (signed); 0 when even that is below GROUP_MAX_EPS (ggml:
 * all zeros), L[0..n) then zeroed. */
static int signed_max(int n, const float *x, int8_t *L, float *max) {
    float amax = 0;
    *max = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) amax = ax, *max = x[i];
    }
    if (amax < GROUP_MAX_EPS) memset(L, 0, (size_t)n);
    return amax >= GROUP_MAX_EPS;
}

/* ggml's make_qx_quants with rmse_type 1: symmetric quants L - nmax in [-nmax, nmax - 1] with x ~ scale * (L - nmax),
 * the scale chosen among 19 trial roundings by least squares weighted by qw (NULL: x^2). Returns the scale (signed:
 * the element of largest magnitude maps to -nmax). */
static float fit_scale_signed(int n, int nmax, const float *x, const float *qw, int8_t *L) {
    float max;
    if (!signed_max(n, x, L, &max)) return 0.0f;
    float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* The fits of one super-block (lmf_kq_fit): Q4_K / Q5_K fit each 32-element sub-block with a scale and a min
 * (weights sqrt(mean x^2) + |x|), Q6_K each 16-element sub-block with a signed scale. The SIMD tables compute the
 * same numbers several sub-blocks at a time (quant.h: kq_fit). */
void lmf_kq_fit_ref(uint32_t type, const float *x, lmf_kq_fit *f) {
    if (type == LMF_GGML_Q6_K) {
        for (int ib = 0; ib < 16; ib++) f->scale[ib] = fit_scale_signed(16, 32, x + 16 * ib, NULL, (int8_t *)f->L + 16 * ib);
        return;
    }
    int q5 = type == LMF_GGML_Q5_K;
    float w[32];
    uint8_t Laux[32];
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xj[l] * xj[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xj[l]);
        f->scale[j] = fit_scale_min(32, q5 ? 31 : 15, xj, w, f->L + 32 * j, &f->min[j], Laux, q5 ? -0.5f : -1.0f,
                                    0.1f, q5 ? 15 : 20, 0);
    }
}

/* Q4_K / Q5_K: the sixteen 6-bit values (ls, lm) packed as lmf_k4_scale_min reads them, d and dmin stored as halves,
 * then every weight requantized against its stored (d * sc, dmin * m) into L. Writes d, dmin and scales[12] at o. */
static void k4_store(const float *x, int nmax, const uint8_t ls[8], const uint8_t lm[8], float d_block,
                     float m_block, uint8_t *o, uint8_t L[256]) {
    uint8_t *sc = o + 4;
    memset(sc, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc[j] = ls[j], sc[j + 4] = lm[j];
        } else {
            sc[j + 4] = (uint8_t)((ls[j] & 0xf) | ((lm[j] & 0xf) << 4));
            sc[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            sc[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    wr16(o, lmf_f32_to_f16(d_block));
    wr16(o + 2, lmf_f32_to_f16(m_block));
    float d_all = lmf_f16_to_f32(rd16(o)), m_all = lmf_f16_to_f32(rd16(o + 2));
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        lmf_k4_scale_min(j, sc, &s, &m);
        float d = d_all * (float)s;
        if (!d) continue; /* ggml keeps the fitted quants here */
        float dm = m_all * (float)m;
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + i] + dm) / d)));
    }
}

/* Q4_K / Q5_K after the reference's fits: d = max scale / 63, dmin = max min / 63, each scale and min rounded to
 * 6 bits against them. */
static void k4_scales(const float *x, int nmax, const lmf_kq_fit *f, uint8_t *o, uint8_t L[256]) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        if (f->scale[j] > max_scale) max_scale = f->scale[j];
        if (f->min[j] > max_min) max_min = f->min[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)nearest_int(inv_scale * f->scale[j]), lm[j] = (uint8_t)nearest_int(inv_min * f->min[j]);
        ls[j] = ls[j] < 63 ? ls[j] : 63, lm[j] = lm[j] < 63 ? lm[j] : 63;
    }
    k4_store(x, nmax, ls, lm, max_scale / 63.f, max_min / 63.f, o, L);
}

/* the quants of L (0..15 / 0..31) into a Q4_K / Q5_K block's qs (and qh) */
static void q4_k_quants(const uint8_t *L, uint8_t *o) {
    uint8_t *q = o + 16;
    for (int j = 0; j < 256; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static void q5_k_quants(const uint8_t *L, uint8_t *o) {
    uint8_t *qh = o + 16, *q = o + 48;
    memset(qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < 256; n += 64, q += 32, m1 <<= 2, m2 <<= 2)
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) l1 -= 16, qh[j] |= m1;
            if (l2 > 15) l2 -= 16, qh[j] |= m2;
            q[j] = (uint8_t)(l1 | (l2 << 4));
        }
}

static void q4_k_pack(const float *x, lmf_kq_fit *f, uint8_t *o) {
    k4_scales(x, 15, f, o, f->L);
    q4_k_quants(f->L, o);
}

static void q5_k_pack(const float *x, lmf_kq_fit *f, uint8_t *o) {
    k4_scales(x, 31, f, o, f->L);
    q5_k_quants(f->L, o);
}

/* Q6_K after the fits: the sixteen signed scales stored as int8 relative to the largest (-128 steps), quants
 * q + 32 in 6 bits (low nibbles in ql, top two bits in qh). */
static void q6_k_pack(const float *x, lmf_kq_fit *f, uint8_t *o) {
    int8_t *L = (int8_t *)f->L;
    float max_scale = 0, max_abs_scale = 0;
    uint8_t *ql = o, *qh = o + 128;
    int8_t *sc = (int8_t *)(o + 192);
    for (int ib = 0; ib < 16; ib++) {
        float a = fabsf(f->scale[ib]);
        if (a > max_abs_scale) max_abs_scale = a, max_scale = f->scale[ib];
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(o, 0, 210);
        return;
    }
    float iscale = -128.f / max_scale;
    wr16(o + 208, lmf_f32_to_f16(1 / iscale));
    for (int ib = 0; ib < 16; ib++) sc[ib] = (int8_t)imin(127, nearest_int(iscale * f->scale[ib]));
    float d_all = lmf_f16_to_f32(rd16(o + 208));
    for (int j = 0; j < 16; j++) {
        float d = d_all * (float)sc[j];
        if (!d) continue;
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + i] / d))) + 32);
    }
    for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = (uint8_t)((q1 & 0xf) | ((q3 & 0xf) << 4));
            ql[l + 32] = (uint8_t)((q2 & 0xf) | ((q4 & 0xf) << 4));
            qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
}

void lmf_kq_pack(uint32_t type, const float *x, lmf_kq_fit *f, void *out) {
    if (type == LMF_GGML_Q4_K) q4_k_pack(x, f, out);
    else if (type == LMF_GGML_Q5_K) q5_k_pack(x, f, out);
    else q6_k_pack(x, f, out);
}

void lmf_quantize_kquant(uint32_t type, const float *x, void *out, size_t nblocks, lmf_kq_fit_fn fit) {
    size_t bb = type == LMF_GGML_Q4_K ? 144 : type == LMF_GGML_Q5_K ? 176 : 210;
    lmf_kq_fit f;
    for (size_t b = 0; b < nblocks; b++) {
        fit(type, x + 256 * b, &f);
        lmf_kq_pack(type, x + 256 * b, &f, (uint8_t *)out + bb * b);
    }
}

/* ---- under an importance matrix ------------------------------------------------------------------------------- */

/* ggml's make_qp_quants: the n non-negative values x (a super-block's sub-block scales or mins) as L in [0, nmax]
 * times one scale, the scale tried at 9 roundings by squared error weighted by qw (the sub-blocks' summed weights),
 * then each L moved alone while that raises the least-squares fit (up to 5 rounds). Returns the scale. The uint8_t
 * stores wrap as ggml's do (a negative x would). */
static float fit_scale_pos(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)nearest_int(iscale * x[i]);
    float scale = 1 / iscale, best_mse = 0;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * (float)L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        float iscale_is = (0.1f * (float)is + (float)nmax) / max, scale_is = 1 / iscale_is, mse = 0;
        for (int i = 0; i < n; i++) {
            int l = imin(nmax, nearest_int(iscale_is * x[i]));
            float diff = x[i] - scale_is * (float)l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) best_mse = mse, iscale = iscale_is;
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imin(nmax, nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * (float)l;
        suml2 += qw[i] * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = qw[i], slx = sumlx - w * x[i] * (float)L[i], sl2 = suml2 - w * (float)L[i] * (float)L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = imin(nmax, nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l, sumlx = slx, suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* sum of squares in ggml's order (one float, element after element) */
static float sum_sq(const float *x, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

/* The searches under an importance matrix (quant.h: lmf_wfit_fn), sub-block after sub-block. */
void lmf_wfit_ref(lmf_wfit_kind kind, int nmax, const float *x, const float *w, lmf_kq_fit *f) {
    if (kind == LMF_WFIT_MIN) {
        uint8_t Laux[32];
        for (int j = 0; j < 8; j++)
            f->scale[j] = fit_scale_min(32, nmax, x + 32 * j, w + 32 * j, f->L + 32 * j, &f->min[j], Laux, -0.9f,
                                        0.05f, 36, 0);
        return;
    }
    int n = kind == LMF_WFIT_SIGNED16 ? 16 : 32;
    for (int j = 0; j < 256 / n; j++)
        f->scale[j] = fit_scale_signed(n, nmax, x + n * j, w + n * j, (int8_t *)f->L + n * j);
}

/* w = importance x sqrt(sigma^2 + x^2) over n elements, ggml's weights for every type but Q6_K */
static void weights_of(const float *x, const float *qw, float sigma2, float *w, int n) {
    for (int l = 0; l < n; l++) w[l] = qw[l] * sqrtf(sigma2 + x[l] * x[l]);
}

/* A Q4_K / Q5_K super-block under importance qw (quantize_row_q4_K_impl / q5_K_impl): the sub-block fits weighted
 * by w (36 trial roundings), then the fitted scales and mins get their 6-bit values by fit_scale_pos, weighted by
 * each sub-block's summed weights. Q5_K caps them at 63, Q4_K does not (as ggml). */
static void k4_weighted(uint32_t type, const float *x, const float *qw, uint8_t *o, lmf_wfit_fn fit) {
    int q5 = type == LMF_GGML_Q5_K, nmax = q5 ? 31 : 15;
    lmf_kq_fit f;
    float w[256], sw[8];
    uint8_t ls[8], lm[8];
    weights_of(x, qw, 2 * sum_sq(x, 256) / 256, w, 256);
    for (int j = 0; j < 8; j++) {
        float sumw = 0;
        for (int l = 0; l < 32; l++) sumw += w[32 * j + l];
        sw[j] = sumw;
    }
    fit(LMF_WFIT_MIN, nmax, x, w, &f);
    float d_block = fit_scale_pos(8, 63, f.scale, ls, sw), m_block = fit_scale_pos(8, 63, f.min, lm, sw);
    if (q5)
        for (int j = 0; j < 8; j++) ls[j] = ls[j] < 63 ? ls[j] : 63, lm[j] = lm[j] < 63 ? lm[j] : 63;
    k4_store(x, nmax, ls, lm, d_block, m_block, o, f.L);
    if (q5) q5_k_quants(f.L, o);
    else q4_k_quants(f.L, o);
}

/* One Q4_0 / Q4_1 / Q5_0 / Q5_1 block from its fit: scale d (and min, the fit's -min), quants L */
static void legacy_block(uint32_t type, float d, float min, const uint8_t *L, uint8_t *o) {
    int with_min = type == LMF_GGML_Q4_1 || type == LMF_GGML_Q5_1, five = type == LMF_GGML_Q5_0 || type == LMF_GGML_Q5_1;
    uint8_t *qs = o + 2 + 2 * with_min + 4 * five;
    wr16(o, lmf_f32_to_f16(d));
    if (with_min) wr16(o + 2, lmf_f32_to_f16(-min));
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0x0f) | ((L[j + 16] & 0x0f) << 4));
        qh |= (uint32_t)((L[j] & 0x10u) >> 4) << j;
        qh |= (uint32_t)((L[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    if (five) memcpy(o + 2 + 2 * with_min, &qh, 4); /* little-endian, as ggml's memcpy */
}

/* Q4_0 / Q5_0 (signed, make_qx_quants) and Q4_1 / Q5_1 (scale and min, make_qkx3_quants) blocks of a row under
 * importance qw, sigma^2 the row's mean square: 8 blocks a fit, the last few alone. */
static void legacy_weighted(uint32_t type, const float *x, const float *qw, uint8_t *o, size_t n, lmf_wfit_fn fit) {
    int with_min = type == LMF_GGML_Q4_1 || type == LMF_GGML_Q5_1, five = type == LMF_GGML_Q5_0 || type == LMF_GGML_Q5_1;
    int nmax = with_min ? (five ? 31 : 15) : (five ? 16 : 8);
    size_t bb = (size_t)(18 + 2 * with_min + 4 * five), b = 0, nb = n / 32;
    float sigma2 = sum_sq(x, n) / (float)n, w[256];
    lmf_kq_fit f;
    for (; b + 8 <= nb; b += 8) {
        weights_of(x + 32 * b, qw + 32 * b, sigma2, w, 256);
        fit(with_min ? LMF_WFIT_MIN : LMF_WFIT_SIGNED32, nmax, x + 32 * b, w, &f);
        for (int k = 0; k < 8; k++) legacy_block(type, f.scale[k], with_min ? f.min[k] : 0, f.L + 32 * k, o + bb * (b + k));
    }
    for (; b < nb; b++) {
        uint8_t Laux[32];
        float min = 0, d;
        weights_of(x + 32 * b, qw + 32 * b, sigma2, w, 32);
        if (with_min) d = fit_scale_min(32, nmax, x + 32 * b, w, f.L, &min, Laux, -0.9f, 0.05f, 36, 0);
        else d = fit_scale_signed(32, nmax, x + 32 * b, w, (int8_t *)f.L);
        legacy_block(type, d, min, f.L, o + bb * b);
    }
}

/* ---- Q2_K and Q3_K --------------------------------------------------------------------------------------------- */

/* ggml's make_q3_quants with do_rmse: symmetric quants in [-nmax, nmax - 1] (stored + nmax) of the largest-magnitude
 * scale, then each moved alone while that raises the least-squares fit (weights x^2, up to 5 rounds). */
static float fit_scale_q3(int n, int nmax, const float *x, int8_t *L) {
    float max;
    if (!signed_max(n, x, L, &max)) return 0.0f;
    float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i], slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = imax(-nmax, imin(nmax - 1, nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l, sumlx = slx, suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* the 2-bit quants of L (0..3) into 64 bytes: four 32-element quarters of each 128 share a byte */
static void pack2(const uint8_t *L, uint8_t *q) {
    for (int j = 0; j < 256; j += 128)
        for (int l = 0; l < 32; l++)
            q[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* A Q2_K super-block (scales[16] | qs[64] | d | dmin): sixteen 16-element sub-blocks, each a 4-bit scale and min of
 * d and dmin, quants 0..3. Without an importance (quantize_row_q2_K_ref): fits by absolute error weighted by |x|,
 * 4-bit values against the largest; with one (quantize_row_q2_K_impl): fits weighted by qw sqrt(sigma^2 + x^2) (37
 * trials), the 4-bit values by fit_scale_pos. Then every weight requantized against the stored values. */
void lmf_q2_fit_ref(const float *x, const float *w, float rmin, float rdelta, int nstep, int mad, float scales[16],
                    float mins[16], uint8_t L[256]) {
    uint8_t Laux[16];
    for (int j = 0; j < 16; j++)
        scales[j] = fit_scale_min(16, 3, x + 16 * j, w + 16 * j, L + 16 * j, &mins[j], Laux, rmin, rdelta, nstep, mad);
}

static void q2_k_block(const float *x, const float *qw, uint8_t *o, lmf_q2_fit_fn fit) {
    uint8_t L[256], *sc = o, Ls[16], Lm[16];
    float w[256], mins[16], scales[16], sw[16];
    if (!qw) {
        float max_scale = 0, max_min = 0;
        for (int l = 0; l < 256; l++) w[l] = fabsf(x[l]);
        fit(x, w, -0.5f, 0.1f, 15, 1, scales, mins, L);
        for (int j = 0; j < 16; j++) {
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float iscale = max_scale > 0 ? 15.f / max_scale : 0.f;
        for (int j = 0; j < 16; j++) sc[j] = max_scale > 0 ? (uint8_t)nearest_int(iscale * scales[j]) : 0;
        wr16(o + 80, lmf_f32_to_f16(max_scale > 0 ? max_scale / 15.f : 0.f));
        if (max_min > 0) {
            iscale = 15.f / max_min;
            for (int j = 0; j < 16; j++) sc[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
        }
        wr16(o + 82, lmf_f32_to_f16(max_min > 0 ? max_min / 15.f : 0.f));
    } else {
        float sigma2 = sum_sq(x, 256) / 256;
        for (int j = 0; j < 16; j++) {
            weights_of(x + 16 * j, qw + 16 * j, sigma2, w + 16 * j, 16);
            float sumw = 0;
            for (int l = 0; l < 16; l++) sumw += w[16 * j + l];
            sw[j] = sumw;
        }
        fit(x, w, -0.9f, 0.05f, 36, 0, scales, mins, L);
        float dm = fit_scale_pos(16, 15, scales, Ls, sw), mm = fit_scale_pos(16, 15, mins, Lm, sw);
        wr16(o + 80, lmf_f32_to_f16(dm));
        wr16(o + 82, lmf_f32_to_f16(mm));
        for (int j = 0; j < 16; j++) sc[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    }
    float d_all = lmf_f16_to_f32(rd16(o + 80)), m_all = lmf_f16_to_f32(rd16(o + 82));
    for (int j = 0; j < 16; j++) {
        float d = d_all * (float)(sc[j] & 0xf);
        if (!d) continue;
        float dm = m_all * (float)(sc[j] >> 4);
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (uint8_t)imax(0, imin(3, nearest_int((x[16 * j + i] + dm) / d)));
    }
    pack2(L, o + 16);
}

/* A Q3_K super-block (hmask[32] | qs[64] | scales[12] | d): sixteen 16-element sub-blocks with 6-bit signed scales
 * of d, quants -4..3 (two bits in qs, the third in hmask). Without an importance (quantize_row_q3_K_ref): each
 * sub-block by make_q3_quants, the scales against the largest; with one (quantize_row_q3_K_impl): the sub-blocks by
 * make_qx_quants weighted by qw sqrt(sigma^2 + x^2), the scales by make_qx_quants weighted by the sub-blocks' sums. */
void lmf_q3_fit_ref(const float *x, const float *w, float scales[16], int8_t L[256]) {
    for (int j = 0; j < 16; j++)
        scales[j] = w ? fit_scale_signed(16, 4, x + 16 * j, w + 16 * j, L + 16 * j) : fit_scale_q3(16, 4, x + 16 * j, L + 16 * j);
}

static void q3_k_block(const float *x, const float *qw, uint8_t *o, lmf_q3_fit_fn fit) {
    int8_t L[256], Ls[16];
    float scales[16], w[256], sw[16];
    uint8_t *sc = o + 96, *hm = o, Lu[256];
    int pack_scales = 1;
    memset(sc, 0, 12);
    if (!qw) {
        float max_scale = 0, amax = 0;
        fit(x, NULL, scales, L);
        for (int j = 0; j < 16; j++) {
            float a = fabsf(scales[j]);
            if (a > amax) amax = a, max_scale = scales[j];
        }
        pack_scales = max_scale != 0;
        float iscale = pack_scales ? -32.f / max_scale : 0.f;
        for (int j = 0; j < 16 && pack_scales; j++) {
            int8_t l = (int8_t)nearest_int(iscale * scales[j]);
            Ls[j] = (int8_t)(imax(-32, imin(31, l)) + 32);
        }
        wr16(o + 108, lmf_f32_to_f16(pack_scales ? 1 / iscale : 0.f));
    } else {
        float sigma2 = 2 * sum_sq(x, 256) / 256;
        for (int j = 0; j < 16; j++) {
            weights_of(x + 16 * j, qw + 16 * j, sigma2, w + 16 * j, 16);
            float sumw = 0;
            for (int l = 0; l < 16; l++) sumw += w[16 * j + l];
            sw[j] = sumw;
        }
        fit(x, w, scales, L);
        wr16(o + 108, lmf_f32_to_f16(fit_scale_signed(16, 32, scales, sw, Ls)));
    }
    for (int j = 0; j < 16 && pack_scales; j++) { /* low nibbles in 0..7, the top two bits four a byte in 8..11 */
        int l = Ls[j];
        if (j < 8) sc[j] = (uint8_t)(l & 0xf);
        else sc[j - 8] |= (uint8_t)((l & 0xf) << 4);
        sc[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
    float d_all = lmf_f16_to_f32(rd16(o + 108));
    for (int j = 0; j < 16; j++) {
        int s6 = j < 8 ? sc[j] & 0xf : sc[j - 8] >> 4;
        s6 = (s6 | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        float d = d_all * (float)s6;
        if (!d) continue; /* the fit's quants stay */
        for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(imax(-4, imin(3, nearest_int(x[16 * j + i] / d))) + 4);
    }
    memset(hm, 0, 32);
    for (int j = 0, m = 0, bit = 1; j < 256; j++) { /* the high bit of element j: hmask[j % 32], bit j / 32 */
        int l = L[j];
        if (l > 3) hm[m] |= (uint8_t)bit, l -= 4;
        Lu[j] = (uint8_t)l;
        if (++m == 32) m = 0, bit <<= 1;
    }
    pack2(Lu, o + 32);
}

/* nblocks Q2_K / Q3_K super-blocks, under importance qw (256 nblocks values, NULL: none), fitted by ops' searches */
static void quantize_low(uint32_t type, const float *x, void *out, size_t nblocks, const float *qw,
                         const lmf_quant_ops *ops) {
    for (size_t b = 0; b < nblocks; b++) {
        const float *q = qw ? qw + 256 * b : NULL;
        if (type == LMF_GGML_Q2_K) q2_k_block(x + 256 * b, q, (uint8_t *)out + 84 * b, ops->q2_fit);
        else q3_k_block(x + 256 * b, q, (uint8_t *)out + 110 * b, ops->q3_fit);
    }
}

void lmf_quantize_kquant_low(uint32_t type, const float *x, void *out, size_t nblocks, const lmf_quant_ops *ops) {
    quantize_low(type, x, out, nblocks, NULL, ops);
}

/* ---- IQ4_NL / IQ4_XS: ggml's quantize_row_iq4_nl_impl with its 7 trials a side (ggml_quantize_chunk's, what
 * llama-quantize writes, with or without an importance matrix) ---------------------------------------------------- */

/* the index of the value of lmf_iq4nl_values nearest x (ggml's best_index_int8: ties to the upper neighbour) */
static int iq4_index(float x) {
    const int8_t *v = lmf_iq4nl_values;
    if (x <= v[0]) return 0;
    if (x >= v[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        int mid = (ml + mu) / 2;
        if (x < v[mid]) mu = mid;
        else ml = mid;
    }
    return x - v[mu - 1] < v[mu] - x ? mu - 1 : mu;
}

/* The fitted scales of the 8 blocks of 32 in x (256 floats, weights qw or NULL: x^2): sbs 256 is one IQ4_XS
 * super-block (sigma^2 over all of it), sbs 32 eight IQ4_NL blocks (each its own); nb of them (<= 8) */
void lmf_iq4_scales_ref(int sbs, int nb, const float *x, const float *qw, float scales[8]) {
    const int8_t *v = lmf_iq4nl_values;
    const int ntry = 7;
    float weight[32], sigma2 = 0;
    for (int ib = 0; ib < nb; ib++) {
        const float *xb = x + 32 * ib;
        if (ib * 32 % sbs == 0) { /* a super-block starts: sigma^2 over it */
            sigma2 = 0;
            for (int j = 0; j < sbs; j++) sigma2 += xb[j] * xb[j];
            sigma2 *= 2.f / (float)sbs;
        }
        for (int j = 0; j < 32; j++) weight[j] = qw ? qw[32 * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(xb[j]) > amax) amax = fabsf(xb[j]), max = xb[j];
        if (amax < GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = -max / v[0], id = 1 / d, sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            float q = v[iq4_index(id * xb[j])], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (float)(itry + v[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                float q = v[iq4_index(id * xb[j])], w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) d = sumqx / sumq2, best = d * sumqx;
        }
        scales[ib] = d;
    }
}

/* one super-block of sbs (32: IQ4_NL, 256: IQ4_XS) floats to out (its block layout, quant_ref.c dq_iq4), given
 * its blocks' fitted scales */
static void iq4_pack(int sbs, const float *x, const float *scales, uint8_t *out) {
    const int nb = sbs / 32;
    uint8_t L[256], *q4 = out + (nb > 1 ? 8 : 2);
    if (nb > 1) { /* IQ4_XS: d, scales_h (2 high bits of each 6-bit scale), scales_l (their low nibbles) */
        float max_scale = 0, amax_scale = 0;
        for (int ib = 0; ib < nb; ib++)
            if (fabsf(scales[ib]) > amax_scale) amax_scale = fabsf(scales[ib]), max_scale = scales[ib];
        uint16_t sh = 0;
        uint8_t *sl = out + 4;
        float d = -max_scale / 32, id = d ? 1 / d : 0.f;
        wr16(out, lmf_f32_to_f16(d));
        for (int ib = 0; ib < nb; ib++) {
            int l = imax(-32, imin(31, nearest_int(id * scales[ib])));
            float dl = d * (float)l, idl = dl ? 1 / dl : 0.f;
            for (int j = 0; j < 32; j++) L[32 * ib + j] = (uint8_t)iq4_index(idl * x[32 * ib + j]);
            l += 32;
            if (ib % 2 == 0) sl[ib / 2] = (uint8_t)(l & 0xf);
            else sl[ib / 2] |= (uint8_t)((l & 0xf) << 4);
            sh |= (uint16_t)((l >> 4) << 2 * ib);
        }
        wr16(out + 2, sh);
    } else { /* IQ4_NL: the fitted scale, the indices found again against it */
        wr16(out, lmf_f32_to_f16(scales[0]));
        float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < 32; j++) L[j] = (uint8_t)iq4_index(id * x[j]);
    }
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < 16; j++) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | L[32 * i + 16 + j] << 4);
}

void lmf_quantize_iq4(uint32_t type, const float *x, void *out, size_t n, const float *qw, lmf_iq4_scales_fn fit) {
    const int sbs = type == LMF_GGML_IQ4_XS ? 256 : 32, bb = type == LMF_GGML_IQ4_XS ? 136 : 18;
    for (size_t i = 0; i < n; i += 256) { /* 8 blocks of 32 a search: one IQ4_XS super-block, eight IQ4_NL blocks */
        int nb = n - i >= 256 ? 8 : (int)(n - i) / 32;
        float scales[8];
        (nb == 8 ? fit : lmf_iq4_scales_ref)(sbs, nb, x + i, qw ? qw + i : NULL, scales);
        for (int k = 0; k < nb; k += sbs / 32)
            iq4_pack(sbs, x + i + 32 * k, scales + k, (uint8_t *)out + (i + 32 * k) / (size_t)sbs * bb);
    }
}

void lmf_quantize_weighted(uint32_t type, const float *x, void *out, size_t n, const float *qw,
                           const lmf_quant_ops *ops) {
    lmf_wfit_fn fit = ops->wfit;
    switch (type) {
    case LMF_GGML_IQ4_NL: case LMF_GGML_IQ4_XS:
        lmf_quantize_iq4(type, x, out, n, qw, ops->iq4_scales);
        return;
    case LMF_GGML_Q4_K: case LMF_GGML_Q5_K:
        for (size_t b = 0; b < n / 256; b++)
            k4_weighted(type, x + 256 * b, qw + 256 * b, (uint8_t *)out + (type == LMF_GGML_Q4_K ? 144 : 176) * b, fit);
        return;
    case LMF_GGML_Q6_K:
        for (size_t b = 0; b < n / 256; b++) {
            lmf_kq_fit f;
            fit(LMF_WFIT_SIGNED16, 32, x + 256 * b, qw + 256 * b, &f);
            q6_k_pack(x + 256 * b, &f, (uint8_t *)out + 210 * b);
        }
        return;
    case LMF_GGML_Q4_0: case LMF_GGML_Q4_1: case LMF_GGML_Q5_0: case LMF_GGML_Q5_1:
        legacy_weighted(type, x, qw, out, n, fit);
        return;
    case LMF_GGML_Q2_K: case LMF_GGML_Q3_K:
        quantize_low(type, x, out, n / 256, qw, ops);
        return;
    default: /* Q8_0 and the float types take no importance (as ggml's quantize_q8_0) */
        lmf_quantize_row(type, x, out, n);
    }
}

void lmf_quantize_row_weighted(uint32_t type, const float *x, void *out, size_t n, const float *qw) {
    if (qw) lmf_quantize_weighted(type, x, out, n, qw, &lmf_quant_ref);
    else lmf_quantize_row(type, x, out, n);
}
