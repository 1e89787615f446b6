/* quant_kquant_ref.c — the K-quant quantizers (Q4_K, Q5_K, Q6_K) as ggml's reference code makes them
 * (quantize_row_q{4,5,6}_K_ref, which llama-quantize runs when no importance matrix is given), so a file written
 * here holds the same bytes as llama.cpp's. Each super-block of 256 weights gets sub-block scales (and mins) fitted
 * by a small search, then those scales quantized to 6 (Q4_K / Q5_K) or 8 bits (Q6_K) and the weights requantized
 * against the stored scales.
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
 * range), solving the weighted least-squares scale and min for each trial rounding; keeps the lowest error.
 * Returns the scale, *the_min = -min >= 0. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                           uint8_t *Laux, float rmin, float rdelta, int nstep) {
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
        best_error += w[i] * (diff * diff);
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
                cur_error += w[i] * (diff * diff);
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

/* ggml's make_qx_quants with rmse_type 1 (weights x^2): symmetric quants L - nmax in [-nmax, nmax - 1] with
 * x ~ scale * (L - nmax), the scale chosen among 19 trial roundings by weighted least squares. Returns the scale
 * (signed: the element of largest magnitude maps to -nmax). */
static float fit_scale_signed(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
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
            float w = x[i] * x[i];
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
        for (int ib = 0; ib < 16; ib++) f->scale[ib] = fit_scale_signed(16, 32, x + 16 * ib, (int8_t *)f->L + 16 * ib);
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
                                    0.1f, q5 ? 15 : 20);
    }
}

/* Q4_K / Q5_K after the fits: the sixteen 6-bit values packed as lmf_k4_scale_min reads them, d = max scale / 63,
 * dmin = max min / 63; then every weight requantized against its stored (d * sc, dmin * m) into L. Writes d, dmin
 * and scales[12] at o. */
static void k4_scales(const float *x, int nmax, const lmf_kq_fit *f, uint8_t *o, uint8_t L[256]) {
    float max_scale = 0, max_min = 0;
    uint8_t *sc = o + 4;
    for (int j = 0; j < 8; j++) {
        if (f->scale[j] > max_scale) max_scale = f->scale[j];
        if (f->min[j] > max_min) max_min = f->min[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(sc, 0, 12);
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * f->scale[j]), lm = (uint8_t)nearest_int(inv_min * f->min[j]);
        ls = ls < 63 ? ls : 63, lm = lm < 63 ? lm : 63;
        if (j < 4) {
            sc[j] = ls, sc[j + 4] = lm;
        } else {
            sc[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    wr16(o, lmf_f32_to_f16(max_scale / 63.f));
    wr16(o + 2, lmf_f32_to_f16(max_min / 63.f));
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

static void q4_k_pack(const float *x, lmf_kq_fit *f, uint8_t *o) {
    uint8_t *L = f->L, *q = o + 16;
    k4_scales(x, 15, f, o, L);
    for (int j = 0; j < 256; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static void q5_k_pack(const float *x, lmf_kq_fit *f, uint8_t *o) {
    uint8_t *L = f->L, *qh = o + 16, *q = o + 48;
    k4_scales(x, 31, f, o, L);
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
