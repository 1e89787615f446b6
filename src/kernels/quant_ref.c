/* quant_ref.c — the scalar definition of every weight format (see quant.h): half/bfloat16 conversions, dequantization
 * (ggml's dequantize_row_* arithmetic, operation for operation, so results are bit-exact with ggml and gguf-py),
 * ggml's reference quantizers, the activation quantizer and the reference matrix-vector kernels every SIMD variant
 * is held to. Compiled with -fno-tree-vectorize and without FMA, so each float operation rounds as written.
 *
 * The formats live here, in the kernels layer, rather than in model/: the SIMD kernels and the model loader both
 * need them and kernels may not include model/ (model/dequant_ref.c wraps these with input checks). */
#include "kernels/quant.h"

#include "core/dtype.h"
#include "core/status.h"

#include <float.h>
#include <math.h>
#include <string.h>

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* ---- half and bfloat16 ------------------------------------------------------------------------------------- */

float lmf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) & 1u, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24);                      /* zero / subnormal: man * 2^-24 */
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 0x400u), (int)exp - 25);          /* (1024 + man) * 2^(exp - 15 - 10) */
    return sign ? -v : v;
}

float lmf_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t lmf_f32_to_f16(float f) {
    uint32_t x = f2u(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);        /* NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);       /* >= 65520 rounds to inf */
    if (ax >= 0x38800000u) {                                         /* normal half: >= 2^-14 */
        uint32_t r = ax - 0x38000000u, h = r >> 13, rem = r & 0x1fffu; /* rebias 127 -> 15 */
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;     /* a carry into the exponent is right */
        return (uint16_t)(sign | h);
    }
    if (ax <= 0x33000000u) return (uint16_t)sign;                   /* <= 2^-25: ties to even 0 */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;        /* subnormal half, units of 2^-24 */
    int shift = 126 - (int)e;                                        /* 14..24 */
    uint32_t h = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

uint16_t lmf_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64u); /* NaN: force quiet */
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

/* ---- dequantization ---------------------------------------------------------------------------------------- */

int lmf_dequant_ref_supported(uint32_t type) {
    switch (type) {
    case LMF_GGML_F32: case LMF_GGML_F16: case LMF_GGML_BF16: case LMF_GGML_Q8_0: case LMF_GGML_Q4_0:
    case LMF_GGML_Q4_1: case LMF_GGML_Q5_0: case LMF_GGML_Q5_1: case LMF_GGML_Q2_K: case LMF_GGML_Q3_K:
    case LMF_GGML_Q4_K: case LMF_GGML_Q5_K: case LMF_GGML_Q6_K: case LMF_GGML_IQ4_NL: case LMF_GGML_IQ4_XS: return 1;
    default: return 0;
    }
}

const int8_t lmf_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

int lmf_iq4xs_scale(int ib, const uint8_t *p) {
    int lo = p[4 + ib / 2] >> 4 * (ib % 2) & 0xf, hi = (p[2] | p[3] << 8) >> 2 * ib & 3;
    return (lo | hi << 4) - 32;
}

/* IQ4_NL, 18 B / 32: d, 16 B of 4-bit indices into lmf_iq4nl_values laid out as Q4_0's. x = d v[q]. IQ4_XS,
 * 136 B / 256: d, scales_h (u16: 2 high bits of each of 8 scales), scales_l[4] (their low nibbles), qs[128] (8
 * sub-blocks of 32 as IQ4_NL's nibbles). x = (d (ls - 32)) v[q] */
static void dq_iq4(const uint8_t *qs, float d, float *y) {
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)lmf_iq4nl_values[qs[j] & 0xf];
        y[j + 16] = d * (float)lmf_iq4nl_values[qs[j] >> 4];
    }
}

/* Q4_K / Q5_K: 12 bytes hold eight 6-bit scales and eight 6-bit mins: bytes 0-3 the low 6 bits of scales 0-3,
 * bytes 4-7 those of mins 0-3, bytes 8-11 the low nibbles of scales 4-7 (low half) and mins 4-7 (high half),
 * whose top two bits are the top bits of bytes 0-3 (scales) and 4-7 (mins). */
void lmf_k4_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63, *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q2_K, 84 B: scales[16] (low nibble scale, high nibble min of each 16-element sub-block), qs[64] (2-bit quants:
 * byte l of each 32-byte half holds elements l, l+32, l+64, l+96 of that 128 at shifts 0, 2, 4, 6), d, dmin.
 * x = d * sc * q - dmin * m */
static void dq_q2_k(const uint8_t *p, float *y) {
    const uint8_t *sc = p, *q = p + 16;
    float d = lmf_f16_to_f32(rd16(p + 80)), min = lmf_f16_to_f32(rd16(p + 82));
    int is = 0;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int half = 0; half < 2; half++) {
                uint8_t s = sc[is++];
                float dl = d * (float)(s & 0xf), ml = min * (float)(s >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
}

/* Q3_K, 110 B: hmask[32] (the high bit, inverted: set means +0, clear means -4; bit k of byte l is element
 * 32k + l), qs[64] (low 2 bits, laid out like Q2_K), scales[12] (sixteen 6-bit scales biased by 32: low nibbles
 * in bytes 0-7, high 2 bits in bytes 8-11), d. x = d * (sc - 32) * q */
int lmf_k3_scale(int j, const uint8_t *s) {
    int lo = j < 8 ? s[j] & 0xf : s[j - 8] >> 4;
    int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}
static void dq_q3_k(const uint8_t *p, float *y) {
    const uint8_t *hm = p, *q = p + 32;
    float d = lmf_f16_to_f32(rd16(p + 108));
    int8_t sc[16];
    for (int j = 0; j < 16; j++) sc[j] = (int8_t)lmf_k3_scale(j, p + 96);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2, m <<= 1)
            for (int half = 0; half < 2; half++) {
                float dl = d * (float)sc[is++];
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            }
}

/* Q4_K, 144 B: d, dmin, scales[12] (scale_min_k4), qs[128] (each 64 elements: 32 bytes, low nibbles the first 32,
 * high nibbles the next 32). x = d * sc * q - dmin * m */
static void dq_q4_k(const uint8_t *p, float *y) {
    float d = lmf_f16_to_f32(rd16(p)), min = lmf_f16_to_f32(rd16(p + 2));
    const uint8_t *s = p + 4, *q = p + 16;
    for (int j = 0; j < 8; j += 2, q += 32) {
        uint8_t sc, m;
        lmf_k4_scale_min(j, s, &sc, &m);
        float d1 = d * (float)sc, m1 = min * (float)m;
        lmf_k4_scale_min(j + 1, s, &sc, &m);
        float d2 = d * (float)sc, m2 = min * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xf) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
    }
}

/* Q5_K, 176 B: d, dmin, scales[12], qh[32] (fifth bits: bit k of byte l is element 32k + l), qs[128] as Q4_K. */
static void dq_q5_k(const uint8_t *p, float *y) {
    float d = lmf_f16_to_f32(rd16(p)), min = lmf_f16_to_f32(rd16(p + 2));
    const uint8_t *s = p + 4, *qh = p + 16, *q = p + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 8; j += 2, q += 32, u1 <<= 2, u2 <<= 2) {
        uint8_t sc, m;
        lmf_k4_scale_min(j, s, &sc, &m);
        float d1 = d * (float)sc, m1 = min * (float)m;
        lmf_k4_scale_min(j + 1, s, &sc, &m);
        float d2 = d * (float)sc, m2 = min * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
}

/* Q6_K, 210 B: ql[128] (low nibbles), qh[64] (top 2 bits), int8 scales[16] (one per 16 elements), d. Each 128
 * elements use 64 ql bytes and 32 qh bytes: element l + 32k (l < 32) takes ql[l + 32 (k & 1)] nibble k >> 1 and
 * qh[l] bits 2k..2k+1. x = d * sc * (q - 32) */
static void dq_q6_k(const uint8_t *p, float *y) {
    const uint8_t *ql = p, *qh = p + 128;
    const int8_t *sc = (const int8_t *)(p + 192);
    float d = lmf_f16_to_f32(rd16(p + 208));
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
}

void lmf_dequant_ref(uint32_t type, const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    uint32_t bs = 1, bb = 0;
    LMF_CHECK(lmf_dequant_ref_supported(type) && lmf_ggml_type_block(type, &bs, &bb) && n % bs == 0);
    size_t nb = n / bs;
    switch (type) {
    case LMF_GGML_F32:
        memcpy(dst, p, n * sizeof(float));
        break;
    case LMF_GGML_F16:
        for (size_t i = 0; i < n; i++) dst[i] = lmf_f16_to_f32(rd16(p + 2 * i));
        break;
    case LMF_GGML_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = lmf_bf16_to_f32(rd16(p + 2 * i));
        break;
    case LMF_GGML_Q8_0:
        for (size_t b = 0; b < nb; b++, p += 34, dst += 32) {
            float d = lmf_f16_to_f32(rd16(p));
            for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)p[2 + j] * d;
        }
        break;
    case LMF_GGML_Q4_0:
        for (size_t b = 0; b < nb; b++, p += 18, dst += 32) {
            float d = lmf_f16_to_f32(rd16(p));
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)((p[2 + j] & 0x0f) - 8) * d;
                dst[j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
            }
        }
        break;
    case LMF_GGML_Q4_1:
        for (size_t b = 0; b < nb; b++, p += 20, dst += 32) {
            float d = lmf_f16_to_f32(rd16(p)), m = lmf_f16_to_f32(rd16(p + 2));
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)(p[4 + j] & 0x0f) * d + m;
                dst[j + 16] = (float)(p[4 + j] >> 4) * d + m;
            }
        }
        break;
    case LMF_GGML_Q5_0:
        for (size_t b = 0; b < nb; b++, p += 22, dst += 32) {
            float d = lmf_f16_to_f32(rd16(p));
            uint32_t qh = (uint32_t)p[2] | (uint32_t)p[3] << 8 | (uint32_t)p[4] << 16 | (uint32_t)p[5] << 24;
            for (int j = 0; j < 16; j++) {
                int x0 = ((p[6 + j] & 0x0f) | (((qh >> j) << 4) & 0x10)) - 16;
                int x1 = ((p[6 + j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
                dst[j] = (float)x0 * d;
                dst[j + 16] = (float)x1 * d;
            }
        }
        break;
    case LMF_GGML_Q5_1:
        for (size_t b = 0; b < nb; b++, p += 24, dst += 32) {
            float d = lmf_f16_to_f32(rd16(p)), m = lmf_f16_to_f32(rd16(p + 2));
            uint32_t qh = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
            for (int j = 0; j < 16; j++) {
                int x0 = (p[8 + j] & 0x0f) | (((qh >> j) << 4) & 0x10);
                int x1 = (p[8 + j] >> 4) | ((qh >> (j + 12)) & 0x10);
                dst[j] = (float)x0 * d + m;
                dst[j + 16] = (float)x1 * d + m;
            }
        }
        break;
    case LMF_GGML_Q2_K:
        for (size_t b = 0; b < nb; b++) dq_q2_k(p + b * 84, dst + b * 256);
        break;
    case LMF_GGML_Q3_K:
        for (size_t b = 0; b < nb; b++) dq_q3_k(p + b * 110, dst + b * 256);
        break;
    case LMF_GGML_Q4_K:
        for (size_t b = 0; b < nb; b++) dq_q4_k(p + b * 144, dst + b * 256);
        break;
    case LMF_GGML_Q5_K:
        for (size_t b = 0; b < nb; b++) dq_q5_k(p + b * 176, dst + b * 256);
        break;
    case LMF_GGML_Q6_K:
        for (size_t b = 0; b < nb; b++) dq_q6_k(p + b * 210, dst + b * 256);
        break;
    case LMF_GGML_IQ4_NL:
        for (size_t b = 0; b < nb; b++) dq_iq4(p + b * 18 + 2, lmf_f16_to_f32(rd16(p + b * 18)), dst + b * 32);
        break;
    case LMF_GGML_IQ4_XS:
        for (size_t b = 0; b < nb; b++, p += 136) {
            float d = lmf_f16_to_f32(rd16(p));
            for (int ib = 0; ib < 8; ib++)
                dq_iq4(p + 8 + 16 * ib, d * (float)lmf_iq4xs_scale(ib, p), dst + 256 * b + 32 * ib);
        }
        break;
    }
}

/* ---- quantization (ggml's *_ref quantizers) ----------------------------------------------------------------- */

int lmf_quantize_supported(uint32_t type) {
    switch (type) {
    case LMF_GGML_F32: case LMF_GGML_F16: case LMF_GGML_BF16: case LMF_GGML_Q8_0: case LMF_GGML_Q4_0:
    case LMF_GGML_Q4_1: case LMF_GGML_Q5_0: case LMF_GGML_Q5_1: case LMF_GGML_Q2_K: case LMF_GGML_Q3_K:
    case LMF_GGML_Q4_K: case LMF_GGML_Q5_K: case LMF_GGML_Q6_K: case LMF_GGML_IQ4_NL: case LMF_GGML_IQ4_XS: return 1;
    default: return 0;
    }
}

/* d = the element of largest magnitude (the first of equals) / -div, so that element maps to -div exactly */
static float absmax_signed(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
    return max;
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo, *mx = hi;
}

static inline int imin(int a, int b) { return a < b ? a : b; }

/* (int)roundf(v) (halves away from zero) for |v| < 2^31, inline: without SSE4.1, roundf is a libm call per element.
 * v - trunc(v) is exact there. */
static inline int round_away(float v) {
    int q = (int)v;
    float f = v - (float)q;
    return f >= 0.5f ? q + 1 : f <= -0.5f ? q - 1 : q;
}

static void quantize_q8_0(const float *x, void *out, size_t nblocks) {
    uint8_t *o = out;
    for (size_t b = 0; b < nblocks; b++, x += 32, o += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) /* fmaxf(amax, |x|) without the libm call: a NaN is passed over */
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        wr16(o, lmf_f32_to_f16(d));
        for (int j = 0; j < 32; j++) o[2 + j] = (uint8_t)(int8_t)round_away(x[j] * id);
    }
}

void lmf_quantize_blocks_ref(uint32_t type, const float *x, void *out, size_t nblocks) {
    lmf_quantize_row(type, x, out, nblocks * 32);
}

void lmf_quantize_row(uint32_t type, const float *x, void *out, size_t n) {
    uint8_t *o = out;
    uint32_t bs = 1, bb = 0;
    LMF_CHECK(lmf_quantize_supported(type) && lmf_ggml_type_block(type, &bs, &bb) && n % bs == 0);
    size_t nb = n / bs;
    switch (type) {
    case LMF_GGML_Q4_K: case LMF_GGML_Q5_K: case LMF_GGML_Q6_K:
        lmf_quantize_kquant(type, x, o, nb, lmf_kq_fit_ref);
        break;
    case LMF_GGML_Q2_K: case LMF_GGML_Q3_K:
        lmf_quantize_kquant_low(type, x, o, nb, &lmf_quant_ref);
        break;
    case LMF_GGML_IQ4_NL: case LMF_GGML_IQ4_XS:
        lmf_quantize_iq4(type, x, o, n, NULL, lmf_iq4_scales_ref);
        break;
    case LMF_GGML_F32:
        memcpy(o, x, n * sizeof(float));
        break;
    case LMF_GGML_F16:
        for (size_t i = 0; i < n; i++) wr16(o + 2 * i, lmf_f32_to_f16(x[i]));
        break;
    case LMF_GGML_BF16:
        for (size_t i = 0; i < n; i++) wr16(o + 2 * i, lmf_f32_to_bf16(x[i]));
        break;
    case LMF_GGML_Q8_0:
        quantize_q8_0(x, o, nb);
        break;
    case LMF_GGML_Q4_0:
    case LMF_GGML_Q5_0: {
        int q5 = type == LMF_GGML_Q5_0, half = q5 ? 16 : 8, qmax = q5 ? 31 : 15;
        for (size_t b = 0; b < nb; b++, x += 32, o += q5 ? 22 : 18) {
            float d = absmax_signed(x, 32) / (float)-half, id = d ? 1.0f / d : 0.0f;
            float off = (float)half + 0.5f;
            wr16(o, lmf_f32_to_f16(d));
            uint8_t *qs = o + (q5 ? 6 : 2);
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                uint8_t x0 = (uint8_t)imin(qmax, (int8_t)(x[j] * id + off));
                uint8_t x1 = (uint8_t)imin(qmax, (int8_t)(x[16 + j] * id + off));
                qs[j] = (uint8_t)((x0 & 0x0f) | (x1 << 4));
                qh |= (uint32_t)((x0 & 0x10u) >> 4) << j;
                qh |= (uint32_t)((x1 & 0x10u) >> 4) << (j + 16);
            }
            if (q5) o[2] = (uint8_t)qh, o[3] = (uint8_t)(qh >> 8), o[4] = (uint8_t)(qh >> 16), o[5] = (uint8_t)(qh >> 24);
        }
        break;
    }
    case LMF_GGML_Q4_1:
    case LMF_GGML_Q5_1: {
        int q5 = type == LMF_GGML_Q5_1;
        for (size_t b = 0; b < nb; b++, x += 32, o += q5 ? 24 : 20) {
            float mn, mx;
            minmax(x, 32, &mn, &mx);
            float d = (mx - mn) / (float)(q5 ? 31 : 15), id = d ? 1.0f / d : 0.0f;
            wr16(o, lmf_f32_to_f16(d));
            wr16(o + 2, lmf_f32_to_f16(mn));
            uint8_t *qs = o + (q5 ? 8 : 4);
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                /* ggml: Q4_1 clamps to 15 through int8_t, Q5_1 converts to uint8_t directly (never above 31) */
                uint8_t x0, x1;
                if (q5) {
                    x0 = (uint8_t)((x[j] - mn) * id + 0.5f), x1 = (uint8_t)((x[16 + j] - mn) * id + 0.5f);
                } else {
                    x0 = (uint8_t)imin(15, (int8_t)((x[j] - mn) * id + 0.5f));
                    x1 = (uint8_t)imin(15, (int8_t)((x[16 + j] - mn) * id + 0.5f));
                }
                qs[j] = (uint8_t)((x0 & 0x0f) | (x1 << 4));
                qh |= (uint32_t)((x0 & 0x10u) >> 4) << j;
                qh |= (uint32_t)((x1 & 0x10u) >> 4) << (j + 16);
            }
            if (q5) o[4] = (uint8_t)qh, o[5] = (uint8_t)(qh >> 8), o[6] = (uint8_t)(qh >> 16), o[7] = (uint8_t)(qh >> 24);
        }
        break;
    }
    }
}

/* ---- activation quantization and the reference kernels ------------------------------------------------------ */

/* d = max|x| / 127, q = roundf(x / d) (half away from zero) in [-127, 127], s = d * sum(q) */
static void quantize_q8a_ref(const float *x, int n, lmf_block_q8a *out) {
    for (int b = 0; b < n / 32; b++, x += 32, out++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        if (!(amax >= LMF_Q8A_MIN_AMAX)) amax = 0.0f; /* 1/d would overflow: the block is zero */
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = (int)roundf(x[j] * id);
            out->qs[j] = (int8_t)q;
            sum += q;
        }
        out->d = d;
        out->s = d * (float)sum;
    }
}

/* d = max|x| / 32767, q = roundf(x / d) (half away from zero) in [-32767, 32767], s = d * sum(q) (|sum| <= 2^20:
 * exact in float); a block whose max|x| is below LMF_Q8A_MIN_AMAX, or that holds a NaN or an infinity (then d = s = NaN), is zeros. x * (1 / d) of the
 * largest element is 32767 within a few ulps, so it rounds to 32767 and no clamp is needed. */
static void quantize_q16a_ref(const float *x, int n, lmf_block_q16a *out) {
    for (int b = 0; b < n / 32; b++, x += 32, out++) {
        float amax = 0.0f;
        int finite = 1;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j])), finite &= fabsf(x[j]) <= FLT_MAX;
        if (!(amax >= LMF_Q8A_MIN_AMAX) || !finite) { /* x * 0 would keep a NaN */
            memset(out, 0, sizeof *out);
            if (!finite) out->d = out->s = NAN; /* every product with the block is NaN: a NaN never vanishes */
            continue;
        }
        float d = amax / 32767, id = d ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = (int)roundf(x[j] * id);
            out->qs[j] = (int16_t)q;
            sum += q;
        }
        out->d = d;
        out->s = d * (float)sum;
    }
}

/* The int16 kernels. Overflow: per block |sum q_w q_x| <= 32 * 127 * 32767 < 2^27 (Q8_0; Q4_0 |q - 8| <= 8, Q4_1
 * q <= 15 are smaller still), far inside int32; the SIMD kernels' partial sums are smaller than the block's. */

/* sum over blocks of (d_w d_x) * sum(q_w q_x), in block order */
static void q8_0_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                     int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q16a *a = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
            float sum = 0.0f;
            for (int b = 0; b < n / 32; b++, w += 34) {
                int isum = 0;
                for (int j = 0; j < 32; j++) isum += (int8_t)w[2 + j] * a[b].qs[j];
                sum += (lmf_f16_to_f32(rd16(w)) * a[b].d) * (float)isum;
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}

/* sum over blocks of (d_w d_x) * sum((q_w - 8) q_x) */
static void q4_0_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                     int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q16a *a = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
            float sum = 0.0f;
            for (int b = 0; b < n / 32; b++, w += 18) {
                int isum = 0;
                for (int j = 0; j < 16; j++)
                    isum += ((w[2 + j] & 0xf) - 8) * a[b].qs[j] + ((w[2 + j] >> 4) - 8) * a[b].qs[j + 16];
                sum += (lmf_f16_to_f32(rd16(w)) * a[b].d) * (float)isum;
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}

/* sum over blocks of (d_w d_x) * sum(q_w q_x) + m_w s_x */
static void q4_1_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                     int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q16a *a = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
            float sum = 0.0f;
            for (int b = 0; b < n / 32; b++, w += 20) {
                int isum = 0;
                for (int j = 0; j < 16; j++) isum += (w[4 + j] & 0xf) * a[b].qs[j] + (w[4 + j] >> 4) * a[b].qs[j + 16];
                sum += (lmf_f16_to_f32(rd16(w)) * a[b].d) * (float)isum + lmf_f16_to_f32(rd16(w + 2)) * a[b].s;
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}

/* sum over blocks of (d_w d_x) * sum((q_w - 16) q_x), q_w = nibble | fifth bit << 4 (|q_w - 16| <= 16: per block
 * |sum| <= 32 * 16 * 32767 < 2^25) */
static void q5_0_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                     int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q16a *a = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
            float sum = 0.0f;
            for (int b = 0; b < n / 32; b++, w += 22) {
                uint32_t qh = (uint32_t)w[2] | (uint32_t)w[3] << 8 | (uint32_t)w[4] << 16 | (uint32_t)w[5] << 24;
                int isum = 0;
                for (int j = 0; j < 16; j++) {
                    int x0 = ((w[6 + j] & 0x0f) | (((qh >> j) << 4) & 0x10)) - 16;
                    int x1 = ((w[6 + j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
                    isum += x0 * a[b].qs[j] + x1 * a[b].qs[j + 16];
                }
                sum += (lmf_f16_to_f32(rd16(w)) * a[b].d) * (float)isum;
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}

/* sum over blocks of (d_w d_x) * sum(q_w q_x) + m_w s_x, q_w = nibble | fifth bit << 4 */
static void q5_1_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                     int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q16a *a = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
            float sum = 0.0f;
            for (int b = 0; b < n / 32; b++, w += 24) {
                uint32_t qh = (uint32_t)w[4] | (uint32_t)w[5] << 8 | (uint32_t)w[6] << 16 | (uint32_t)w[7] << 24;
                int isum = 0;
                for (int j = 0; j < 16; j++) {
                    int x0 = (w[8 + j] & 0x0f) | (((qh >> j) << 4) & 0x10);
                    int x1 = (w[8 + j] >> 4) | ((qh >> (j + 12)) & 0x10);
                    isum += x0 * a[b].qs[j] + x1 * a[b].qs[j + 16];
                }
                sum += (lmf_f16_to_f32(rd16(w)) * a[b].d) * (float)isum + lmf_f16_to_f32(rd16(w + 2)) * a[b].s;
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}

/* Q6_K (layout: dq_q6_k) against int16 activation blocks: activation block b is elements 32b .. 32b + 31, two
 * 16-element sub-blocks with their own scale, so per sub-block s: sum += ((d_w sc_s) d_x) * sum((q - 32) q_x). The
 * scale is applied in float: sc (|sc| <= 128) times a sub-block's integer sum (< 2^24) could leave int32. */
static void q6_k_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                     int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q16a *a = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            float sum = 0.0f;
            for (int sb = 0; sb < n / 256; sb++) {
                const uint8_t *p = (const uint8_t *)W + (size_t)r * rb + (size_t)sb * 210;
                const uint8_t *ql = p, *qh = p + 128;
                const int8_t *sc = (const int8_t *)(p + 192);
                float d = lmf_f16_to_f32(rd16(p + 208));
                for (int half = 0; half < 2; half++)
                    for (int k = 0; k < 4; k++) {
                        const lmf_block_q16a *ab = &a[sb * 8 + half * 4 + k];
                        for (int s = 0; s < 2; s++) {
                            int isum = 0;
                            for (int l = 16 * s; l < 16 * s + 16; l++) {
                                int lo = (ql[64 * half + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0xf;
                                int hi = (qh[32 * half + l] >> (2 * k)) & 3;
                                isum += ((lo | hi << 4) - 32) * ab->qs[l];
                            }
                            sum += ((d * (float)sc[8 * half + 2 * k + s]) * ab->d) * (float)isum;
                        }
                    }
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}

/* Q4_K / Q5_K (layouts: dq_q4_k, dq_q5_k) against int16 activation blocks: a 32-element sub-block is one activation
 * block, so per sub-block j: sum += ((d_w sc_j) d_x) * sum(q q_x) - (dmin m_j) s_x (|sum(q q_x)| <= 32 * 31 * 32767
 * < 2^25) */
static void q45_k_ref(int q5, int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb,
                      float *y, int ldy) {
    const int bsz = q5 ? 176 : 144;
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q16a *a = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            float sum = 0.0f;
            for (int sb = 0; sb < n / 256; sb++) {
                const uint8_t *p = (const uint8_t *)W + (size_t)r * rb + (size_t)sb * bsz;
                const uint8_t *qh = p + 16, *qs = p + (q5 ? 48 : 16);
                float d = lmf_f16_to_f32(rd16(p)), min = lmf_f16_to_f32(rd16(p + 2));
                for (int j = 0; j < 8; j++) {
                    const lmf_block_q16a *ab = &a[sb * 8 + j];
                    uint8_t sc, m;
                    lmf_k4_scale_min(j, p + 4, &sc, &m);
                    int isum = 0;
                    for (int l = 0; l < 32; l++) {
                        int q = (qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 0xf;
                        if (q5 && (qh[l] >> j & 1)) q += 16;
                        isum += q * ab->qs[l];
                    }
                    sum += ((d * (float)sc) * ab->d) * (float)isum - (min * (float)m) * ab->s;
                }
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}
/* name: body with its first argument fixed (one loop serves two formats) */
#define REF_OF(name, body, arg)                                                                                    \
    static void name(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,    \
                     int ldy) {                                                                                    \
        body(arg, n, nrows, W, rb, ncols, x, xb, y, ldy);                                                          \
    }
REF_OF(q4_k_ref, q45_k_ref, 0)
REF_OF(q5_k_ref, q45_k_ref, 1)

/* Q2_K / Q3_K (layouts: dq_q2_k, dq_q3_k) against int16 activation blocks: a 16-element sub-block is half an
 * activation block, so per sub-block s: sum += ((d sc_s) d_x) * sum(q q_x) (Q3_K: q in -4..3, sc_s - 32 in
 * -32..31), and for Q2_K its min term - ((dmin m_s) d_x) * sum(q_x). Exact integer sums: |sum(q q_x)| <= 16 * 4 *
 * 32767 < 2^21. */
static void q23_k_ref(int q3, int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb,
                      float *y, int ldy) {
    const int bsz = q3 ? 110 : 84;
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q16a *a = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            float sum = 0.0f;
            for (int sb = 0; sb < n / 256; sb++) {
                const uint8_t *p = (const uint8_t *)W + (size_t)r * rb + (size_t)sb * bsz;
                const uint8_t *qs = p + (q3 ? 32 : 16);
                float d = lmf_f16_to_f32(rd16(p + (q3 ? 108 : 80))), dmin = q3 ? 0.0f : lmf_f16_to_f32(rd16(p + 82));
                for (int s = 0; s < 16; s++) {
                    const lmf_block_q16a *ab = &a[sb * 8 + s / 2];
                    int isum = 0, xsum = 0;
                    for (int l = 0; l < 16; l++) {
                        int k = 16 * s + l, xq = ab->qs[16 * (s & 1) + l];
                        int q = (qs[32 * (k / 128) + k % 32] >> 2 * (k % 128 / 32)) & 3;
                        if (q3 && !(p[k % 32] >> (k / 32) & 1)) q -= 4;
                        isum += q * xq, xsum += xq;
                    }
                    if (q3) {
                        sum += ((d * (float)lmf_k3_scale(s, p + 96)) * ab->d) * (float)isum;
                    } else {
                        float dl = d * (float)(p[s] & 0xf), ml = dmin * (float)(p[s] >> 4);
                        sum += (dl * ab->d) * (float)isum - (ml * ab->d) * (float)xsum;
                    }
                }
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}
REF_OF(q2_k_ref, q23_k_ref, 0)
REF_OF(q3_k_ref, q23_k_ref, 1)

/* IQ4_NL / IQ4_XS (layouts: dq_iq4) against int16 activation blocks: a 32-element block or sub-block is one
 * activation block, sum += ((d_w [ls - 32]) d_x) * sum(v[q] q_x) (|sum| <= 32 * 127 * 32767 < 2^27) */
static void iq4_ref(int xs, int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                    int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q16a *a = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
            float sum = 0.0f;
            for (int b = 0; b < n / 32; b++) {
                const uint8_t *p = w + (xs ? (size_t)(b / 8) * 136 : (size_t)b * 18);
                const uint8_t *qs = xs ? p + 8 + 16 * (b % 8) : p + 2;
                float d = lmf_f16_to_f32(rd16(p));
                if (xs) d = d * (float)lmf_iq4xs_scale(b % 8, p);
                int isum = 0;
                for (int j = 0; j < 16; j++)
                    isum += lmf_iq4nl_values[qs[j] & 0xf] * a[b].qs[j] + lmf_iq4nl_values[qs[j] >> 4] * a[b].qs[j + 16];
                sum += (d * a[b].d) * (float)isum;
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}
REF_OF(iq4_nl_ref, iq4_ref, 0)
REF_OF(iq4_xs_ref, iq4_ref, 1)

/* ---- the int8 activation path (LMF_QACT=int8), kept for comparison --------------------------------------------- */

/* sum over blocks of (d_w d_x) * sum(q_w q_x), in block order */
/* The _i8 loops repeat the _ref ones above on int8 activations: the reference keeps one plain loop per format. */
static void q8_0_i8(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                     int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q8a *a = (const lmf_block_q8a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
            float sum = 0.0f;
            for (int b = 0; b < n / 32; b++, w += 34) {
                int isum = 0;
                for (int j = 0; j < 32; j++) isum += (int8_t)w[2 + j] * a[b].qs[j];
                sum += (lmf_f16_to_f32(rd16(w)) * a[b].d) * (float)isum;
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}

/* sum over blocks of (d_w d_x) * sum((q_w - 8) q_x) */
static void q4_0_i8(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                     int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q8a *a = (const lmf_block_q8a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
            float sum = 0.0f;
            for (int b = 0; b < n / 32; b++, w += 18) {
                int isum = 0;
                for (int j = 0; j < 16; j++)
                    isum += ((w[2 + j] & 0xf) - 8) * a[b].qs[j] + ((w[2 + j] >> 4) - 8) * a[b].qs[j + 16];
                sum += (lmf_f16_to_f32(rd16(w)) * a[b].d) * (float)isum;
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}

/* sum over blocks of (d_w d_x) * sum(q_w q_x) + m_w s_x */
static void q4_1_i8(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                     int ldy) {
    for (int c = 0; c < ncols; c++) {
        const lmf_block_q8a *a = (const lmf_block_q8a *)((const char *)x + (size_t)c * xb);
        for (int r = 0; r < nrows; r++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)r * rb;
            float sum = 0.0f;
            for (int b = 0; b < n / 32; b++, w += 20) {
                int isum = 0;
                for (int j = 0; j < 16; j++) isum += (w[4 + j] & 0xf) * a[b].qs[j] + (w[4 + j] >> 4) * a[b].qs[j + 16];
                sum += (lmf_f16_to_f32(rd16(w)) * a[b].d) * (float)isum + lmf_f16_to_f32(rd16(w + 2)) * a[b].s;
            }
            y[(size_t)c * ldy + r] = sum;
        }
    }
}

#define FLOAT_REF(name, wtype, conv)                                                                               \
    static void name(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,   \
                     int ldy) {                                                                                    \
        for (int c = 0; c < ncols; c++) {                                                                          \
            const char *a = (const char *)x + (size_t)c * xb;                                                      \
            for (int r = 0; r < nrows; r++) {                                                                      \
                const char *w = (const char *)W + (size_t)r * rb;                                                  \
                float sum = 0.0f;                                                                                  \
                for (int i = 0; i < n; i++) { /* memcpy: rows of a mapped file need not be aligned */              \
                    wtype wi;                                                                                      \
                    float ai;                                                                                      \
                    memcpy(&wi, w + (size_t)i * sizeof(wtype), sizeof wi);                                         \
                    memcpy(&ai, a + (size_t)i * sizeof(float), sizeof ai);                                         \
                    sum += conv(wi) * ai;                                                                          \
                }                                                                                                  \
                y[(size_t)c * ldy + r] = sum;                                                                      \
            }                                                                                                      \
        }                                                                                                          \
    }
#define IDENT(v) (v)
FLOAT_REF(f32_ref, float, IDENT)
FLOAT_REF(f16_ref, uint16_t, lmf_f16_to_f32)
FLOAT_REF(bf16_ref, uint16_t, lmf_bf16_to_f32)

const lmf_quant_ops lmf_quant_ref = {
    .name = "ref",
    .q8_0 = q8_0_ref, .q4_0 = q4_0_ref, .q4_1 = q4_1_ref,
    .q5_0 = q5_0_ref, .q5_1 = q5_1_ref, .q6_k = q6_k_ref, .q4_k = q4_k_ref, .q5_k = q5_k_ref,
    .q2_k = q2_k_ref, .q3_k = q3_k_ref, .iq4_nl = iq4_nl_ref, .iq4_xs = iq4_xs_ref,
    .q8_0_i8 = q8_0_i8, .q4_0_i8 = q4_0_i8, .q4_1_i8 = q4_1_i8,
    .f32 = f32_ref, .f16 = f16_ref, .bf16 = bf16_ref,
    .q8_0_r16 = lmf_r16_q8_0_ref, .q4_0_r16 = lmf_r16_q4_0_ref, .q4_1_r16 = lmf_r16_q4_1_ref,
    .q5_0_r16 = lmf_r16_q5_0_ref, .q5_1_r16 = lmf_r16_q5_1_ref, .q4_k_r16 = lmf_r16_q4_k_ref,
    .q5_k_r16 = lmf_r16_q5_k_ref, .q6_k_r16 = lmf_r16_q6_k_ref, .q2_k_r16 = lmf_r16_q2_k_ref,
    .q3_k_r16 = lmf_r16_q3_k_ref, .iq4_nl_r16 = lmf_r16_iq4_nl_ref, .iq4_xs_r16 = lmf_r16_iq4_xs_ref,
    .dequant_r16 = lmf_r16_dequant_t_ref,
    .quantize_q16a = quantize_q16a_ref,
    .quantize_q8a = quantize_q8a_ref,
    .dequant = lmf_dequant_ref,
    .kq_fit = lmf_kq_fit_ref,
    .wfit = lmf_wfit_ref,
    .iq4_scales = lmf_iq4_scales_ref,
    .q2_fit = lmf_q2_fit_ref,
    .q3_fit = lmf_q3_fit_ref,
    .quantize_blocks = lmf_quantize_blocks_ref,
};
