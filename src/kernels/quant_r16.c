/* quant_r16.c — the R16 decode layout (quant.h): packing 16 ggml rows into a group, reading a group back to fp32,
 * and the dispatch of lmf_qmatvec_r16 to the variant tables' kernels.
 *
 * Packing runs once per model and the row reader serves the token-embedding lookup, so they are portable C; the
 * k-major reader (the prefill's dequantized slabs) is also the reference table's entry, which the SIMD tables
 * replace. All readers are bit-exact with lmf_dequant_ref of the original rows: the same float operations on the
 * same values. */
#include "kernels/quant.h"

#include "core/dtype.h"
#include "core/status.h"

#include <string.h>

static int r16_block_bytes(uint32_t type) {
    switch (type) {
    case LMF_GGML_Q8_0: return 34;
    case LMF_GGML_Q4_0: return 18;
    case LMF_GGML_Q4_1: return 20;
    case LMF_GGML_Q5_0: return 22;
    case LMF_GGML_Q5_1: return 24;
    default: return 0;
    }
}

/* the table's R16 kernel for a type (NULL: that table keeps the type in ggml rows) */
static lmf_qmatvec_fn r16_kernel(const lmf_quant_ops *ops, uint32_t type) {
    switch (type) {
    case LMF_GGML_Q8_0: return ops->q8_0_r16;
    case LMF_GGML_Q4_0: return ops->q4_0_r16;
    case LMF_GGML_Q4_1: return ops->q4_1_r16;
    case LMF_GGML_Q5_0: return ops->q5_0_r16;
    case LMF_GGML_Q5_1: return ops->q5_1_r16;
    default: return NULL;
    }
}

int lmf_r16_format(uint32_t type, int rows, int n) {
    return r16_block_bytes(type) && rows > 0 && rows % 16 == 0 && n > 0 && n % LMF_QK == 0;
}

int lmf_r16_has_kernel(const lmf_quant_ops *ops, uint32_t type) { return r16_kernel(ops, type) != NULL; }

int lmf_r16_supported(uint32_t type, int rows, int n) {
    return lmf_r16_format(type, rows, n) && lmf_r16_has_kernel(lmf_quant(), type);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}

static int has_min(uint32_t type) { return type == LMF_GGML_Q4_1 || type == LMF_GGML_Q5_1; }
static int has_fifth(uint32_t type) { return type == LMF_GGML_Q5_0 || type == LMF_GGML_Q5_1; }
/* bit position of element 8c + e inside nibble word j of chunk c */
static int nib_shift(int e) { return (e & 1) ? 16 + 4 * (e >> 1) : 4 * (e >> 1); }
/* bit position of element 8c + e's fifth bit inside fifth-bit word j (quant.h) */
static int fifth_shift(int c, int e) { return ((e & 1) ? 16 : 0) + 4 * (e >> 1) + c; }
/* byte offsets inside a block group: the fifth-bit words (Q5_x), then the nibble chunks */
static int qh_offset(uint32_t type) { return has_min(type) ? 64 : 32; }
static int nib_offset(uint32_t type) { return qh_offset(type) + (has_fifth(type) ? 64 : 0); }

void lmf_r16_pack(uint32_t type, int n, const void *src, size_t row_bytes, void *dst) {
    int bsz = r16_block_bytes(type), nb = n / LMF_QK;
    LMF_CHECK(bsz && n % LMF_QK == 0);
    const uint8_t *s = src;
    uint8_t *g = dst;
    for (int b = 0; b < nb; b++, g += 16 * bsz) {
        memset(g, 0, (size_t)16 * bsz);
        for (int j = 0; j < 16; j++) {
            const uint8_t *blk = s + (size_t)j * row_bytes + (size_t)b * bsz;
            memcpy(g + 2 * j, blk, 2); /* d */
            if (type == LMF_GGML_Q8_0) {
                for (int k = 0; k < 32; k++) g[32 + 32 * (k / 2) + 2 * j + (k & 1)] = blk[2 + k];
                continue;
            }
            if (has_min(type)) memcpy(g + 32 + 2 * j, blk + 2, 2); /* m */
            const uint8_t *qs = blk + 2 + (has_min(type) ? 2 : 0) + (has_fifth(type) ? 4 : 0);
            uint32_t qh = has_fifth(type) ? rd32(blk + 2 + (has_min(type) ? 2 : 0)) : 0, fifth = 0;
            for (int c = 0; c < 4; c++) {
                uint32_t word = 0;
                for (int e = 0; e < 8; e++) {
                    int k = 8 * c + e;
                    uint32_t q = k < 16 ? qs[k] & 0x0f : qs[k - 16] >> 4;
                    word |= q << nib_shift(e);
                    fifth |= (qh >> k & 1) << fifth_shift(c, e);
                }
                wr32(g + nib_offset(type) + 64 * c + 4 * j, word);
            }
            if (has_fifth(type)) wr32(g + qh_offset(type) + 4 * j, fifth);
        }
    }
}

/* element k of row j in block group g: the integer q (before ggml's "- 8" / "- 16" for Q4_0 / Q5_0) */
static int r16_q(uint32_t type, const uint8_t *g, int j, int k) {
    if (type == LMF_GGML_Q8_0) return (int8_t)g[32 + 32 * (k / 2) + 2 * j + (k & 1)];
    int q = (int)(rd32(g + nib_offset(type) + 64 * (k / 8) + 4 * j) >> nib_shift(k % 8)) & 0x0f;
    if (has_fifth(type)) q |= (int)(rd32(g + qh_offset(type) + 4 * j) >> fifth_shift(k / 8, k % 8) & 1) << 4;
    return q;
}

/* one element exactly as lmf_dequant_ref computes it */
static float r16_value(uint32_t type, int q, float d, float m) {
    if (type == LMF_GGML_Q8_0) return (float)q * d;
    if (type == LMF_GGML_Q4_0) return (float)(q - 8) * d;
    if (type == LMF_GGML_Q5_0) return (float)(q - 16) * d;
    float t = (float)q * d;
    return t + m;
}

void lmf_r16_dequant_row(uint32_t type, int n, const void *group, int j, float *dst) {
    int bsz = r16_block_bytes(type), nb = n / LMF_QK;
    LMF_CHECK(bsz && j >= 0 && j < 16);
    const uint8_t *g = group;
    for (int b = 0; b < nb; b++, g += 16 * bsz, dst += 32) {
        float d = lmf_f16_to_f32(rd16(g + 2 * j)), m = has_min(type) ? lmf_f16_to_f32(rd16(g + 32 + 2 * j)) : 0;
        for (int k = 0; k < 32; k++) dst[k] = r16_value(type, r16_q(type, g, j, k), d, m);
    }
}

void lmf_r16_dequant_t_ref(uint32_t type, int n, const void *group, float *dst, size_t ld) {
    int bsz = r16_block_bytes(type), nb = n / LMF_QK;
    LMF_CHECK(bsz);
    const uint8_t *g = group;
    float d[16], m[16];
    for (int b = 0; b < nb; b++, g += 16 * bsz) {
        for (int j = 0; j < 16; j++) {
            d[j] = lmf_f16_to_f32(rd16(g + 2 * j));
            m[j] = has_min(type) ? lmf_f16_to_f32(rd16(g + 32 + 2 * j)) : 0.0f;
        }
        float *o = dst + (size_t)b * 32 * ld;
        for (int k = 0; k < 32; k++)
            for (int j = 0; j < 16; j++) o[(size_t)k * ld + j] = r16_value(type, r16_q(type, g, j, k), d[j], m[j]);
    }
}

void lmf_r16_dequant_t(uint32_t type, int n, const void *group, float *dst, size_t ld) {
    LMF_CHECK(r16_block_bytes(type) && n % LMF_QK == 0 && lmf_r16_has_kernel(lmf_quant(), type));
    lmf_quant()->dequant_r16(type, n, group, dst, ld);
}

/* the arguments of an R16 product: whole groups, and the ggml row size of n elements */
static void r16_check(uint32_t type, int n, int nrows, size_t row_bytes) {
    LMF_CHECK(lmf_r16_format(type, nrows, n) && row_bytes == (size_t)(n / LMF_QK) * r16_block_bytes(type));
}

void lmf_qmatvec_r16_ops(const lmf_quant_ops *ops, uint32_t type, int n, int nrows, const void *W, size_t row_bytes,
                         int ncols, const void *x, size_t x_col_bytes, float *y, int ldy) {
    if (nrows <= 0 || ncols <= 0) return;
    r16_check(type, n, nrows, row_bytes);
    lmf_qmatvec_fn f = r16_kernel(ops, type);
    LMF_CHECK(f);
    f(n, nrows, W, row_bytes, ncols, x, x_col_bytes, y, ldy);
}

void lmf_qmatvec_r16(uint32_t type, int n, int nrows, const void *W, size_t row_bytes, int ncols, const void *x,
                     size_t x_col_bytes, float *y, int ldy) {
    const lmf_quant_ops *ops = lmf_quant();
    if (ncols >= LMF_R16_AMX_COLS && ops == &lmf_quant_avx512 && lmf_cpu_amx_int8() && nrows > 0 &&
        (type == LMF_GGML_Q8_0 || type == LMF_GGML_Q4_0 || type == LMF_GGML_Q4_1)) {
        r16_check(type, n, nrows, row_bytes);
        lmf_qmatvec_r16_amx(type, n, nrows, W, row_bytes, ncols, x, x_col_bytes, y, ldy);
        return;
    }
    lmf_qmatvec_r16_ops(ops, type, n, nrows, W, row_bytes, ncols, x, x_col_bytes, y, ldy);
}

/* The scalar definition of the R16 product (the reference table's kernels): per block, the exact integer dot of
 * each row with the int16 column, then acc += dot * (d_w d_x) and the min / offset term m_w s_x (Q4_1) or
 * d_w s_x (Q4_0, subtracted 8 times at the end: sum (q - 8) x = sum q x - 8 sum x). Q5_0's "- 16" stays in the
 * integer dot (q - 16 is a signed 5-bit value: |dot| <= 32 * 16 * 32767 < 2^24, exact in float too); Q5_1 is Q4_1
 * with a fifth bit. */
static void r16_mv_ref(uint32_t type, int n, int nrows, const void *W, size_t rb, int ncols, const void *x,
                       size_t xb, float *y, int ldy) {
    int bsz = r16_block_bytes(type), nb = n / LMF_QK, q_offset = type == LMF_GGML_Q5_0 ? 16 : 0;
    for (int r0 = 0; r0 < nrows; r0 += 16) {
        const uint8_t *G = (const uint8_t *)W + (size_t)r0 * rb;
        for (int c = 0; c < ncols; c++) {
            const lmf_block_q16a *xc = (const lmf_block_q16a *)((const char *)x + (size_t)c * xb);
            float acc[16] = {0}, acc2[16] = {0};
            for (int b = 0; b < nb; b++) {
                const uint8_t *g = G + (size_t)b * 16 * bsz;
                for (int j = 0; j < 16; j++) {
                    int32_t dot = 0;
                    for (int k = 0; k < 32; k++) dot += (r16_q(type, g, j, k) - q_offset) * xc[b].qs[k];
                    float dw = lmf_f16_to_f32(rd16(g + 2 * j));
                    acc[j] += (float)dot * (dw * xc[b].d);
                    if (has_min(type)) acc2[j] += lmf_f16_to_f32(rd16(g + 32 + 2 * j)) * xc[b].s;
                    if (type == LMF_GGML_Q4_0) acc2[j] += dw * xc[b].s;
                }
            }
            for (int j = 0; j < 16; j++)
                y[(size_t)c * ldy + r0 + j] = has_min(type)           ? acc[j] + acc2[j]
                                              : type == LMF_GGML_Q4_0 ? acc[j] - 8.0f * acc2[j]
                                                                      : acc[j];
        }
    }
}

void lmf_r16_q8_0_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy) {
    r16_mv_ref(LMF_GGML_Q8_0, n, nrows, W, rb, ncols, x, xb, y, ldy);
}
void lmf_r16_q4_0_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy) {
    r16_mv_ref(LMF_GGML_Q4_0, n, nrows, W, rb, ncols, x, xb, y, ldy);
}
void lmf_r16_q4_1_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy) {
    r16_mv_ref(LMF_GGML_Q4_1, n, nrows, W, rb, ncols, x, xb, y, ldy);
}
void lmf_r16_q5_0_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy) {
    r16_mv_ref(LMF_GGML_Q5_0, n, nrows, W, rb, ncols, x, xb, y, ldy);
}
void lmf_r16_q5_1_ref(int n, int nrows, const void *W, size_t rb, int ncols, const void *x, size_t xb, float *y,
                      int ldy) {
    r16_mv_ref(LMF_GGML_Q5_1, n, nrows, W, rb, ncols, x, xb, y, ldy);
}
