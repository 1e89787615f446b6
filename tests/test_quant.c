/* test_quant.c — the quantized kernels (kernels/quant.h): every variant against the scalar reference, the
 * reference against gguf-py, and the kernels against a real model.
 *
 *  - lmf_qmatvec: for each variant this CPU runs (ref, AVX2, AVX-512+VNNI) and each type (Q8_0, Q4_0, Q4_1 with
 *    int16 and with int8 activations, F32, F16, BF16, and Q5_0, Q5_1, Q2_K..Q6_K on int16 activations), odd row and
 *    column counts, row lengths from one
 *    block to 4096, rows with padding between them (w_row_bytes > the row, at odd alignments), padded input
 *    columns, and y with ldy > nrows whose gaps and tail hold sentinels that must survive. Each y is compared with
 *    the reference's y relative to the dot product's absolute scale sum|w_i x_i| (the only scale summation in any
 *    order is accurate to; 1e-5), and the reference itself is checked the same way against a float64 dot of the
 *    dequantized operands.
 *  - R16 groups (the decode layout): packing then reading back (by row and k-major) is bit-exact with the
 *    reference's dequantization of the original rows, and every variant's R16 product equals the row-major
 *    reference (odd column counts, several groups).
 *  - lmf_qinput_convert (both activation formats) and lmf_dequant_fast are bit-exact across variants.
 *  - The activation quantization's own error: one matrix-vector product of int16 activations against a float64 dot
 *    of the fp32 activations (same weights) is within 1e-5 of the dot's scale and of max|y| (4e-5 when outlier
 *    channels 20-60x the rest widen their blocks' step); int8's error is printed beside it.
 *  - Quantize -> dequantize error bounds per type.
 *  - Bit-exact agreement with gguf-py: tests/reference/fixtures/quant_fixtures.bin (quant_fixtures.py) holds
 *    gguf-py's quantized bytes for given floats and its dequantized floats for given bytes, including Q4_K/Q6_K;
 *    and with ggml's own quantizers (kquant_fixtures.bin, kquant_fixtures.py: Q2_K ... Q6_K, IQ4_NL, IQ4_XS; with
 *    an importance matrix: imatrix_quant_fixtures.bin).
 *  - SmolLM2-135M (Q4_1, skipped when absent): lmf_qmatvec on real tensors against a float64 dot of the rows
 *    dequantized by the reference, with the converted and with the fp32 activations. */
#include "test_util.h"

#include "core/cpu.h"
#include "io/gguf.h"
#include "kernels/quant.h"
#include "model/dequant.h"

#define SENTINEL -7777.25f
#define TOL 1e-5
/* int16 activation quantization, relative to sum |w_i x_i| and to max |y|: normal activations, and activations with
 * outlier channels 20-60x the rest (their blocks' step grows with them) */
#define TOL_ACT16 1e-5
#define TOL_ACT16_OUTLIERS 4e-5

static const lmf_quant_ops *variants[3];
static int n_variants;

/* ---- helpers ------------------------------------------------------------------------------------------------ */

static size_t row_bytes(uint32_t type, int n) {
    uint32_t bs, bb;
    assert_true(lmf_ggml_type_block(type, &bs, &bb));
    return (size_t)(n / (int)bs) * bb;
}

static int is_q8a(uint32_t t) { return t == LMF_GGML_Q8_0 || t == LMF_GGML_Q4_0 || t == LMF_GGML_Q4_1; }
/* the types whose kernels read int16 activation blocks whatever LMF_QACT says */
static int is_q16_only(uint32_t t) {
    return t == LMF_GGML_Q5_0 || t == LMF_GGML_Q5_1 || t == LMF_GGML_Q2_K || t == LMF_GGML_Q3_K || t == LMF_GGML_Q4_K ||
           t == LMF_GGML_Q5_K || t == LMF_GGML_Q6_K || t == LMF_GGML_IQ4_NL || t == LMF_GGML_IQ4_XS;
}

static uint32_t rng_state = 12345;
static uint32_t rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* n elements of `type` in one row: quantized from normal floats when we can quantize it, else random bytes with
 * finite half scales (the K-quants) */
static void make_row(uint32_t type, int n, uint8_t *out, unsigned seed) {
    if (lmf_quantize_supported(type)) {
        float *x = malloc(sizeof(float) * (size_t)n);
        fill_normal(x, n, seed, 1.0f);
        for (int i = (int)(seed % 37); i < n; i += 37) x[i] *= 6.0f; /* outliers */
        lmf_quantize_row(type, x, out, (size_t)n);
        free(x);
        return;
    }
    size_t nb = row_bytes(type, n);
    for (size_t i = 0; i < nb; i++) out[i] = (uint8_t)rnd();
    uint32_t bs, bb;
    lmf_ggml_type_block(type, &bs, &bb);
    for (size_t b = 0; b < nb / bb; b++) {
        uint8_t *p = out + b * bb;
        float s = 0.01f + 0.02f * (float)(rnd() % 1000) / 1000.0f;
        uint16_t h1 = lmf_f32_to_f16(s), h2 = lmf_f32_to_f16(s * 0.5f);
        switch (type) {
        case LMF_GGML_Q2_K: memcpy(p + 80, &h1, 2), memcpy(p + 82, &h2, 2); break;
        case LMF_GGML_Q3_K: memcpy(p + 108, &h1, 2); break;
        case LMF_GGML_Q4_K: case LMF_GGML_Q5_K: memcpy(p, &h1, 2), memcpy(p + 2, &h2, 2); break;
        case LMF_GGML_Q6_K: memcpy(p + 208, &h1, 2); break;
        case LMF_GGML_IQ4_NL: case LMF_GGML_IQ4_XS: memcpy(p, &h1, 2); break;
        default: fail_msg("make_row: type %u", type);
        }
    }
}

static const char *act_name(lmf_qact act) { return act == LMF_QACT_INT8 ? "int8" : "int16"; }

/* the input column as the kernels see it, dequantized (for the float64 check) */
static void input_values(lmf_qact act, uint32_t type, const void *xin, int n, float *out) {
    if (is_q8a(type) && act == LMF_QACT_INT8) {
        const lmf_block_q8a *a = xin;
        for (int b = 0; b < n / 32; b++)
            for (int j = 0; j < 32; j++) out[b * 32 + j] = a[b].d * (float)a[b].qs[j];
    } else if (is_q8a(type) || is_q16_only(type)) {
        const lmf_block_q16a *a = xin;
        for (int b = 0; b < n / 32; b++)
            for (int j = 0; j < 32; j++) out[b * 32 + j] = a[b].d * (float)a[b].qs[j];
    } else {
        memcpy(out, xin, sizeof(float) * (size_t)n);
    }
}

/* ---- lmf_qmatvec: every variant against the reference -------------------------------------------------------- */

static const uint32_t mv_types[] = {LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1, LMF_GGML_F32, LMF_GGML_F16,
                                    LMF_GGML_BF16, LMF_GGML_Q5_0, LMF_GGML_Q5_1, LMF_GGML_Q2_K, LMF_GGML_Q3_K,
                                    LMF_GGML_Q4_K, LMF_GGML_Q5_K, LMF_GGML_Q6_K, LMF_GGML_IQ4_NL, LMF_GGML_IQ4_XS};
static double worst[2][3][LMF_GGML_TYPE_COUNT]; /* [act][variant][type] */

static void check_qmatvec(uint32_t type, lmf_qact act, int n, int nrows, int ncols, int pad) {
    uint32_t bs, bb;
    lmf_ggml_type_block(type, &bs, &bb);
    size_t rbytes = row_bytes(type, n), rb = rbytes + (size_t)pad;
    uint8_t *W = malloc(rb * (size_t)nrows + 64);
    memset(W, 0xA5, rb * (size_t)nrows + 64);
    uint8_t *Wo = W + (pad & 7); /* odd start too */
    for (int r = 0; r < nrows; r++) make_row(type, n, Wo + (size_t)r * rb, (unsigned)(1000 * n + 17 * r + type));
    /* columns: fp32 inputs, converted by each variant (checked bit-exact with the reference's conversion) */
    size_t xb = lmf_qinput_bytes_act(act, type, n) + 40; /* padded columns */
    float *xf = malloc(sizeof(float) * (size_t)n * ncols);
    fill_normal(xf, (long)n * ncols, (unsigned)(n + ncols + type), 1.0f);
    uint8_t *xref = calloc((size_t)ncols, xb), *xv = calloc((size_t)ncols, xb);
    for (int c = 0; c < ncols; c++) lmf_qinput_convert_ops(&lmf_quant_ref, act, type, xf + (size_t)c * n, n, xref + c * xb);
    int ldy = nrows + 3;
    size_t ny = (size_t)ldy * ncols + 8;
    float *yref = malloc(sizeof(float) * ny), *y = malloc(sizeof(float) * ny);
    lmf_qmatvec_ops(&lmf_quant_ref, act, type, n, nrows, Wo, rb, ncols, xref, xb, yref, ldy);
    /* scale of each output: sum |w_i x_i|, and the reference against float64 */
    float *wrow = malloc(sizeof(float) * (size_t)n), *xcol = malloc(sizeof(float) * (size_t)n);
    double *scale = malloc(sizeof(double) * (size_t)nrows * ncols);
    for (int c = 0; c < ncols; c++) {
        input_values(act, type, xref + c * xb, n, xcol);
        for (int r = 0; r < nrows; r++) {
            lmf_dequant_ref(type, Wo + (size_t)r * rb, wrow, (size_t)n);
            double s = 0, a = 0;
            for (int i = 0; i < n; i++) s += (double)wrow[i] * xcol[i], a += fabs((double)wrow[i] * xcol[i]);
            scale[c * nrows + r] = a > 0 ? a : 1e-30;
            double e = fabs(yref[(size_t)c * ldy + r] - s) / scale[c * nrows + r];
            if (!(e <= TOL))
                fail_msg("ref %s/%s n=%d r=%d c=%d: %.9g vs float64 %.9g (rel %.3g)", lmf_ggml_type_name(type),
                         act_name(act), n, r, c, yref[(size_t)c * ldy + r], s, e);
        }
    }
    for (int v = 0; v < n_variants; v++) {
        const lmf_quant_ops *ops = variants[v];
        memset(xv, 0, (size_t)ncols * xb);
        for (int c = 0; c < ncols; c++) lmf_qinput_convert_ops(ops, act, type, xf + (size_t)c * n, n, xv + c * xb);
        if (memcmp(xv, xref, (size_t)ncols * xb))
            fail_msg("%s: lmf_qinput_convert(%s/%s, n=%d) differs from the reference", ops->name,
                     lmf_ggml_type_name(type), act_name(act), n);
        for (size_t i = 0; i < ny; i++) y[i] = SENTINEL;
        lmf_qmatvec_ops(ops, act, type, n, nrows, Wo, rb, ncols, xv, xb, y, ldy);
        for (int c = 0; c < ncols; c++) {
            for (int r = 0; r < nrows; r++) {
                double e = fabs((double)y[(size_t)c * ldy + r] - yref[(size_t)c * ldy + r]) / scale[c * nrows + r];
                if (!(e <= worst[act][v][type])) worst[act][v][type] = e;
                if (!(e <= TOL))
                    fail_msg("%s %s/%s n=%d nrows=%d ncols=%d pad=%d: y[%d,%d] = %.9g, ref %.9g (rel %.3g)", ops->name,
                             lmf_ggml_type_name(type), act_name(act), n, nrows, ncols, pad, c, r,
                             y[(size_t)c * ldy + r], yref[(size_t)c * ldy + r], e);
            }
            for (int r = nrows; r < ldy && (size_t)c * ldy + r < ny; r++)
                if (y[(size_t)c * ldy + r] != SENTINEL)
                    fail_msg("%s %s n=%d: wrote y[%d, %d] outside the rows", ops->name, lmf_ggml_type_name(type), n, c, r);
        }
        for (size_t i = (size_t)ldy * ncols; i < ny; i++)
            if (y[i] != SENTINEL) fail_msg("%s %s n=%d: wrote past y", ops->name, lmf_ggml_type_name(type), n);
    }
    free(W), free(xf), free(xref), free(xv), free(yref), free(y), free(wrow), free(xcol), free(scale);
}

static void test_qmatvec(void **state) {
    (void)state;
    static const int ns32[] = {32, 64, 96, 224, 576, 1536, 4096};
    static const int nsK[] = {256, 512, 1536};
    static const int nsF[] = {1, 7, 16, 33, 100, 576};
    static const int rows[] = {1, 3, 4, 5, 9, 17};
    static const int cols[] = {1, 2, 3, 4, 5, 8, 13};
    for (size_t t = 0; t < sizeof mv_types / sizeof mv_types[0]; t++) {
        uint32_t type = mv_types[t], bs, bb;
        lmf_ggml_type_block(type, &bs, &bb);
        assert_true(lmf_qmatvec_supported(type));
        const int *ns = bs == 256 ? nsK : bs == 1 ? nsF : ns32;
        int nn = bs == 256 ? 3 : bs == 1 ? 6 : 7;
        for (int i = 0; i < nn; i++)
            for (int ri = 0; ri < 6; ri++)
                for (int ci = 0; ci < 7; ci++) {
                    if (ns[i] >= 1536 && (ri % 2 || ci % 3)) continue; /* keep the long rows few */
                    int pad = (ri + ci) % 3 == 0 ? 0 : 2 * ri + ci;
                    check_qmatvec(type, LMF_QACT_INT16, ns[i], rows[ri], cols[ci], pad);
                    if (is_q8a(type) || is_q16_only(type))
                        check_qmatvec(type, LMF_QACT_INT8, ns[i], rows[ri], cols[ci], pad);
                }
    }
    for (int v = 0; v < n_variants; v++) {
        printf("  %-7s worst rel err vs ref:", variants[v]->name);
        for (size_t t = 0; t < 3; t++) printf(" %s/int16 %.2g", lmf_ggml_type_name(mv_types[t]), worst[0][v][mv_types[t]]);
        for (size_t t = 0; t < 3; t++) printf(" %s/int8 %.2g", lmf_ggml_type_name(mv_types[t]), worst[1][v][mv_types[t]]);
        for (size_t t = 3; t < 8; t++) printf(" %s %.2g", lmf_ggml_type_name(mv_types[t]), worst[0][v][mv_types[t]]);
        printf(" Q2_K %.2g Q3_K %.2g Q4_K %.2g Q5_K %.2g Q6_K %.2g IQ4_NL %.2g IQ4_XS %.2g", worst[0][v][LMF_GGML_Q2_K],
               worst[0][v][LMF_GGML_Q3_K], worst[0][v][LMF_GGML_Q4_K], worst[0][v][LMF_GGML_Q5_K],
               worst[0][v][LMF_GGML_Q6_K], worst[0][v][LMF_GGML_IQ4_NL], worst[0][v][LMF_GGML_IQ4_XS]);
        printf("\n");
    }
}

/* ---- R16 groups: packing is lossless, every variant's R16 kernel equals the row-major reference ---------------- */

static void check_r16(uint32_t type, int n, int nrows, int ncols) {
    size_t rb = row_bytes(type, n);
    uint8_t *W = malloc(rb * (size_t)nrows), *P = malloc(rb * (size_t)nrows);
    for (int r = 0; r < nrows; r++) make_row(type, n, W + (size_t)r * rb, (unsigned)(77 * n + 13 * r + type));
    assert_true(lmf_r16_format(type, nrows, n));
    for (int g = 0; g < nrows / 16; g++) lmf_r16_pack(type, n, W + (size_t)g * 16 * rb, rb, P + (size_t)g * 16 * rb);
    /* both readers give lmf_dequant_ref's floats bit for bit */
    float *ref = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)n);
    float *t = malloc(sizeof(float) * (size_t)n * 19);
    for (int g = 0; g < nrows / 16; g++) {
        lmf_r16_dequant_t_ref(type, n, P + (size_t)g * 16 * rb, t, 19);
        for (int j = 0; j < 16; j++) {
            lmf_dequant_ref(type, W + (size_t)(16 * g + j) * rb, ref, (size_t)n);
            lmf_r16_dequant_row(type, n, P + (size_t)g * 16 * rb, j, got);
            if (memcmp(ref, got, sizeof(float) * (size_t)n))
                fail_msg("%s n=%d: lmf_r16_dequant_row(row %d) differs from lmf_dequant_ref", lmf_ggml_type_name(type),
                         n, 16 * g + j);
            for (int k = 0; k < n; k++)
                if (memcmp(&t[(size_t)k * 19 + j], &ref[k], sizeof(float)))
                    fail_msg("%s n=%d: lmf_r16_dequant_t row %d element %d: %g vs %g", lmf_ggml_type_name(type), n,
                             16 * g + j, k, t[(size_t)k * 19 + j], ref[k]);
        }
        for (int v = 0; v < n_variants; v++) { /* each table's k-major reader, the gaps of ld untouched */
            if (!lmf_r16_has_kernel(variants[v], type)) continue;
            float *tv = malloc(sizeof(float) * (size_t)n * 19);
            for (size_t i = 0; i < (size_t)n * 19; i++) tv[i] = SENTINEL;
            variants[v]->dequant_r16(type, n, P + (size_t)g * 16 * rb, tv, 19);
            for (int k = 0; k < n; k++)
                for (int j = 0; j < 19; j++)
                    if (j < 16 ? memcmp(&tv[(size_t)k * 19 + j], &t[(size_t)k * 19 + j], sizeof(float))
                               : tv[(size_t)k * 19 + j] != SENTINEL)
                        fail_msg("%s %s n=%d: dequant_r16 [%d][%d] = %g, expected %g", variants[v]->name,
                                 lmf_ggml_type_name(type), n, k, j, tv[(size_t)k * 19 + j], t[(size_t)k * 19 + j]);
            free(tv);
        }
    }
    /* products: against the row-major reference on the original rows, relative to sum |w_i x_i| */
    size_t xb = lmf_qinput_bytes_act(LMF_QACT_INT16, type, n) + 8;
    float *xf = malloc(sizeof(float) * (size_t)n * ncols);
    fill_normal(xf, (long)n * ncols, (unsigned)(n * 3 + ncols), 1.0f);
    uint8_t *x = calloc((size_t)ncols, xb);
    for (int c = 0; c < ncols; c++) lmf_qinput_convert_ops(&lmf_quant_ref, LMF_QACT_INT16, type, xf + (size_t)c * n, n, x + c * xb);
    int ldy = nrows + 5;
    size_t ny = (size_t)ldy * ncols;
    float *yref = malloc(sizeof(float) * ny), *y = malloc(sizeof(float) * ny), *xcol = malloc(sizeof(float) * (size_t)n);
    lmf_qmatvec_ops(&lmf_quant_ref, LMF_QACT_INT16, type, n, nrows, W, rb, ncols, x, xb, yref, ldy);
    /* the SIMD tables that include quant_r16_mv.inc for the type give the same bits (AVX-512: Q5_x, K-quants) */
    int shared = type != LMF_GGML_Q8_0 && type != LMF_GGML_Q4_0 && type != LMF_GGML_Q4_1;
    float *yshared = NULL;
    for (int v = 0; v < n_variants; v++) {
        if (!lmf_r16_has_kernel(variants[v], type)) continue;
        for (size_t i = 0; i < ny; i++) y[i] = SENTINEL;
        lmf_qmatvec_r16_ops(variants[v], type, n, nrows, P, rb, ncols, x, xb, y, ldy);
        if (shared && variants[v] != &lmf_quant_ref) {
            if (!yshared) yshared = malloc(sizeof(float) * ny), memcpy(yshared, y, sizeof(float) * ny);
            else if (memcmp(yshared, y, sizeof(float) * ny))
                fail_msg("%s R16 %s n=%d nrows=%d ncols=%d: other bits than the AVX2 table's", variants[v]->name,
                         lmf_ggml_type_name(type), n, nrows, ncols);
        }
        for (int c = 0; c < ncols; c++) {
            input_values(LMF_QACT_INT16, type, x + c * xb, n, xcol);
            for (int r = 0; r < nrows; r++) {
                lmf_dequant_ref(type, W + (size_t)r * rb, ref, (size_t)n);
                double a = 1e-30;
                for (int i = 0; i < n; i++) a += fabs((double)ref[i] * xcol[i]);
                double e = fabs((double)y[(size_t)c * ldy + r] - yref[(size_t)c * ldy + r]) / a;
                if (!(e <= TOL))
                    fail_msg("%s R16 %s n=%d nrows=%d ncols=%d: y[%d,%d] = %.9g, row-major ref %.9g (rel %.3g)",
                             variants[v]->name, lmf_ggml_type_name(type), n, nrows, ncols, c, r,
                             y[(size_t)c * ldy + r], yref[(size_t)c * ldy + r], e);
            }
            for (int r = nrows; r < ldy; r++)
                if (y[(size_t)c * ldy + r] != SENTINEL) fail_msg("%s R16: wrote outside the rows", variants[v]->name);
        }
        /* a column's bits do not depend on the columns beside it (the server's batch invariance) */
        for (int c = 0; c < ncols && ncols > 1; c++) {
            float *one = malloc(sizeof(float) * (size_t)nrows);
            lmf_qmatvec_r16_ops(variants[v], type, n, nrows, P, rb, 1, x + c * xb, xb, one, nrows);
            if (memcmp(one, y + (size_t)c * ldy, sizeof(float) * (size_t)nrows))
                fail_msg("%s R16 %s n=%d nrows=%d: column %d of %d differs from the column alone", variants[v]->name,
                         lmf_ggml_type_name(type), n, nrows, c, ncols);
            free(one);
        }
    }
    free(W), free(P), free(ref), free(got), free(t), free(xf), free(x), free(yref), free(y), free(xcol), free(yshared);
}

static void test_r16(void **state) {
    (void)state;
    static const uint32_t types[] = {LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1, LMF_GGML_Q5_0,  LMF_GGML_Q5_1,
                                     LMF_GGML_Q2_K, LMF_GGML_Q3_K, LMF_GGML_Q4_K, LMF_GGML_Q5_K,  LMF_GGML_Q6_K,
                                     LMF_GGML_IQ4_NL, LMF_GGML_IQ4_XS};
    static const int ns[] = {32, 96, 576, 1536}, ns_k[] = {256, 512, 1536}; /* K-quants: super-blocks */
    /* 1, 2, 3 and 7 groups: the kernels' streams (quant.h) get runs of equal, unequal and no length */
    static const int rows[] = {16, 32, 48, 112};
    static const int cols[] = {1, 2, 3, 4, 5, 8, 9};
    for (int t = 0; t < 12; t++) {
        int k = lmf_r16_unit(types[t]) == 256;
        for (int i = 0; i < (k ? 3 : 4); i++)
            for (int ri = 0; ri < 4; ri++)
                for (int ci = 0; ci < 7; ci++) {
                    int n = k ? ns_k[i] : ns[i];
                    if (n < 1536 || ci % 3 == 0) check_r16(types[t], n, rows[ri], cols[ci]);
                }
    }
    /* long rows: the Q5_0 / Q6_K kernels of quant_r16_mv.inc take their columns' block sums a few columns at a time
     * (its r16_mv), from the heap past 16K elements for Q6_K / Q2_K / Q3_K at four columns a pass */
    check_r16(LMF_GGML_Q5_0, 32768, 16, 9);
    check_r16(LMF_GGML_Q6_K, 65536, 16, 9);
    check_r16(LMF_GGML_Q3_K, 65536, 16, 9);
    check_r16(LMF_GGML_IQ4_NL, 32768, 16, 9);
    assert_false(lmf_r16_supported(LMF_GGML_Q4_1, 24, 576));
    assert_false(lmf_r16_supported(LMF_GGML_Q4_1, 32, 48));
    assert_false(lmf_r16_supported(LMF_GGML_F16, 32, 576));
    assert_false(lmf_r16_format(LMF_GGML_Q4_K, 32, 576)); /* not whole super-blocks */
    assert_false(lmf_r16_format(LMF_GGML_Q6_K, 32, 576));
    assert_true(lmf_r16_format(LMF_GGML_Q3_K, 32, 512));
    assert_false(lmf_r16_format(LMF_GGML_Q2_K, 32, 576));
    assert_false(lmf_r16_format(LMF_GGML_Q4_K, 24, 512));
    assert_true(lmf_r16_supported(LMF_GGML_Q4_1, 32, 576));
    /* Q5_x are repacked only where the chosen table has their R16 kernels (not the AVX-512 one yet) */
    assert_true(lmf_r16_format(LMF_GGML_Q5_0, 32, 576));
    assert_int_equal(lmf_r16_supported(LMF_GGML_Q5_0, 32, 576), lmf_quant()->q5_0_r16 != NULL);
    assert_int_equal(lmf_r16_supported(LMF_GGML_Q5_1, 32, 576), lmf_quant()->q5_1_r16 != NULL);
}

/* ---- R16 on AMX-INT8 tiles: the AVX-512 kernel's bits for any number of columns (batch invariance) ------------ */

static void check_r16_amx(uint32_t type, int n, int nrows, int ncols) {
    size_t rb = row_bytes(type, n);
    uint8_t *W = malloc(rb * (size_t)nrows), *P = malloc(rb * (size_t)nrows);
    for (int r = 0; r < nrows; r++) make_row(type, n, W + (size_t)r * rb, (unsigned)(31 * n + 7 * r + type));
    for (int g = 0; g < nrows / 16; g++) lmf_r16_pack(type, n, W + (size_t)g * 16 * rb, rb, P + (size_t)g * 16 * rb);
    size_t xb = lmf_qinput_bytes_act(LMF_QACT_INT16, type, n) + 24;
    float *xf = malloc(sizeof(float) * (size_t)n);
    uint8_t *x = calloc((size_t)ncols, xb);
    for (int c = 0; c < ncols; c++) {
        fill_normal(xf, n, (unsigned)(n * 5 + c), c % 3 ? 1.0f : 300.0f);
        /* extremes: a block at +-32767 (the largest integer sums), an outlier, an all-zero block, a NaN block */
        for (int k = 0; k < 32 && c % 4 == 1; k++) xf[k] = k % 2 ? -1.0f : 1.0f;
        if (n >= 64 && c % 4 == 2) xf[40] = 1e4f;
        if (n >= 96 && c % 4 == 3) memset(xf + 64, 0, 32 * sizeof(float));
        if (n >= 96 && c == 5) xf[70] = NAN;
        lmf_qinput_convert_ops(&lmf_quant_ref, LMF_QACT_INT16, type, xf, n, x + c * xb);
    }
    int ldy = nrows + 3;
    size_t ny = (size_t)ldy * ncols;
    float *want = malloc(sizeof(float) * ny), *got = malloc(sizeof(float) * ny);
    for (size_t i = 0; i < ny; i++) want[i] = got[i] = SENTINEL;
    lmf_qmatvec_r16_ops(&lmf_quant_avx512, type, n, nrows, P, rb, ncols, x, xb, want, ldy);
    lmf_qmatvec_r16_amx(type, n, nrows, P, rb, ncols, x, xb, got, ldy);
    for (size_t i = 0; i < ny; i++)
        if (memcmp(&want[i], &got[i], sizeof(float)))
            fail_msg("AMX R16 %s n=%d nrows=%d ncols=%d: y[%zu,%zu] = %.9g, AVX-512 %.9g", lmf_ggml_type_name(type), n,
                     nrows, ncols, i / ldy, i % ldy, got[i], want[i]);
    /* the public entry (which takes the tiles from LMF_R16_AMX_COLS columns on) gives the same bits */
    for (size_t i = 0; i < ny; i++) got[i] = SENTINEL;
    lmf_qmatvec_r16(type, n, nrows, P, rb, ncols, x, xb, got, ldy);
    assert_memory_equal(want, got, sizeof(float) * ny);
    free(W), free(P), free(xf), free(x), free(want), free(got);
}

static void test_r16_amx(void **state) {
    (void)state;
    if (!lmf_cpu_amx_int8() || !lmf_quant_variant(LMF_ISA_AVX512)) {
        printf("  skipped: this CPU (or LMF_ISA) gives no AMX-INT8 tiles\n");
        return;
    }
    static const uint32_t types[] = {LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1};
    /* 2080: 65 blocks, past the kernel's 64-block activation staging */
    static const int ns[] = {32, 96, 576, 2080};
    static const int rows[] = {16, 32, 48, 112};
    static const int cols[] = {1, 2, 4, 5, 15, 16, 17, 32};
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 4; i++)
            for (int ri = 0; ri < 4; ri++)
                for (int ci = 0; ci < 8; ci++)
                    if (ns[i] < 2080 || ri % 2 == 0) check_r16_amx(types[t], ns[i], rows[ri], cols[ci]);
}

/* ---- the read streams (lmf_decode_streams: per vendor) change how rows are read, never a result's bits -------- */

static void test_decode_streams(void **state) {
    (void)state;
    static const uint32_t types[] = {LMF_GGML_Q8_0, LMF_GGML_Q4_1, LMF_GGML_Q5_0, LMF_GGML_F16, LMF_GGML_F32};
    int n = 576, nrows = 112; /* 7 R16 groups: runs of unequal length for 2, 3 and 4 streams */
    for (int t = 0; t < 5; t++) {
        uint32_t type = types[t];
        int r16 = type != LMF_GGML_F16 && type != LMF_GGML_F32;
        size_t rb = row_bytes(type, n), xb = lmf_qinput_bytes_act(LMF_QACT_INT16, type, n);
        uint8_t *W = malloc(rb * (size_t)nrows), *P = malloc(rb * (size_t)nrows), *x = malloc(xb);
        for (int r = 0; r < nrows; r++) make_row(type, n, W + (size_t)r * rb, (unsigned)(31 * r + type));
        if (r16)
            for (int g = 0; g < nrows / 16; g++) lmf_r16_pack(type, n, W + (size_t)g * 16 * rb, rb, P + (size_t)g * 16 * rb);
        float *xf = malloc(sizeof(float) * (size_t)n), *y1 = malloc(sizeof(float) * (size_t)nrows);
        float *y = malloc(sizeof(float) * (size_t)nrows);
        fill_normal(xf, n, 99, 1.0f);
        lmf_qinput_convert_ops(&lmf_quant_ref, LMF_QACT_INT16, type, xf, n, x);
        for (int v = 0; v < n_variants; v++)
            for (int s = 1; s <= 4; s++) {
                lmf_decode_streams_set(s);
                float *out = s == 1 ? y1 : y;
                if (r16 && lmf_r16_has_kernel(variants[v], type))
                    lmf_qmatvec_r16_ops(variants[v], type, n, nrows, P, rb, 1, x, xb, out, nrows);
                else lmf_qmatvec_ops(variants[v], LMF_QACT_INT16, type, n, nrows, W, rb, 1, x, xb, out, nrows);
                if (s > 1 && memcmp(y, y1, sizeof(float) * (size_t)nrows))
                    fail_msg("%s %s: %d read streams give other bits than one", variants[v]->name,
                             lmf_ggml_type_name(type), s);
            }
        lmf_decode_streams_set(0);
        free(W), free(P), free(x), free(xf), free(y1), free(y);
    }
    assert_true(lmf_decode_streams() >= 1 && lmf_decode_streams() <= 4);
}

/* ---- activation conversion and dequantization are bit-exact across variants ---------------------------------- */

static void test_convert_exact(void **state) {
    (void)state;
    int n = 32 * 40;
    float *x = malloc(sizeof(float) * (size_t)n);
    fill_normal(x, n, 7, 2.0f);
    for (int j = 0; j < 32; j++) x[j] = 0.0f;                           /* zero block */
    for (int j = 0; j < 32; j++) x[32 + j] = (float)(j - 16) + 0.5f;    /* ties: amax 15.5 */
    for (int j = 0; j < 32; j++) x[64 + j] = (float)(j - 15) * 127.0f / 16.0f; /* d = 1 ... */
    x[64 + 31] = 127.0f, x[64 + 3] = -2.5f, x[64 + 4] = 2.5f, x[64 + 5] = -0.5f;
    for (int j = 0; j < 32; j++) x[96 + j] = 1e-38f * (float)(j - 7);  /* subnormal scale */
    lmf_block_q8a *ref = malloc(sizeof(lmf_block_q8a) * (size_t)n / 32), *got = malloc(sizeof(lmf_block_q8a) * (size_t)n / 32);
    lmf_quant_ref.quantize_q8a(x, n, ref);
    /* the reference's definition, spot-checked: ties round away from zero */
    assert_int_equal(ref[2].qs[3], -3);
    assert_int_equal(ref[2].qs[4], 3);
    assert_int_equal(ref[2].qs[5], -1);
    assert_true(ref[0].d == 0.0f && ref[0].s == 0.0f);
    assert_true(ref[3].d == 0.0f && ref[3].qs[0] == 0 && ref[3].qs[31] == 0); /* below LMF_Q8A_MIN_AMAX: zeros */
    for (int v = 0; v < n_variants; v++) {
        memset(got, 0x55, sizeof(lmf_block_q8a) * (size_t)n / 32);
        variants[v]->quantize_q8a(x, n, got);
        for (int b = 0; b < n / 32; b++)
            if (memcmp(&got[b], &ref[b], sizeof got[b]))
                fail_msg("%s: q8a block %d differs from the reference (d %g vs %g)", variants[v]->name, b, got[b].d,
                         ref[b].d);
    }
    /* int16: the same blocks scaled to a step of 1 (d = 1 where max|x| = 32767), plus a NaN and an infinity */
    for (int j = 0; j < 32; j++) x[64 + j] = (float)(j - 15) * 32767.0f / 16.0f;
    x[64 + 31] = 32767.0f, x[64 + 3] = -2.5f, x[64 + 4] = 2.5f, x[64 + 5] = -0.5f, x[64 + 6] = 32766.5f;
    x[128 + 5] = NAN;
    x[160 + 9] = -INFINITY;
    x[192 + 2] = 3e38f, x[192 + 3] = -3e38f; /* largest finite magnitudes: d and 1/d still finite */
    lmf_block_q16a *r16 = malloc(sizeof(lmf_block_q16a) * (size_t)n / 32), *g16 = malloc(sizeof(lmf_block_q16a) * (size_t)n / 32);
    lmf_quant_ref.quantize_q16a(x, n, r16);
    assert_true(r16[2].d == 1.0f);
    assert_int_equal(r16[2].qs[3], -3);
    assert_int_equal(r16[2].qs[4], 3);
    assert_int_equal(r16[2].qs[5], -1);
    assert_int_equal(r16[2].qs[6], 32767); /* 32766.5 rounds away from zero, no overflow */
    assert_int_equal(r16[2].qs[31], 32767);
    assert_true(r16[0].d == 0.0f && r16[0].s == 0.0f);
    assert_true(r16[3].d == 0.0f && r16[3].qs[0] == 0 && r16[3].qs[31] == 0);
    assert_true(isnan(r16[4].d) && isnan(r16[4].s) && r16[4].qs[5] == 0 && r16[4].qs[0] == 0); /* NaN */
    assert_true(isnan(r16[5].d) && r16[5].qs[9] == 0);                                               /* inf */
    assert_int_equal(r16[6].qs[2], 32767);
    assert_int_equal(r16[6].qs[3], -32767);
    for (int b = 1; b < n / 32; b++) { /* the definition: |q| <= 32767, x ~= d q within d / 2, s = d sum(q) */
        if (b == 4 || b == 5) continue; /* the non-finite blocks, checked above */
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            float xj = x[32 * b + j];
            assert_true(r16[b].qs[j] >= -32767);
            if (r16[b].d != 0.0f && !(fabs((double)r16[b].d * r16[b].qs[j] - xj) <= 0.5001 * r16[b].d))
                fail_msg("q16a block %d element %d: %g -> %d * %g", b, j, xj, r16[b].qs[j], r16[b].d);
            sum += r16[b].qs[j];
        }
        assert_true(r16[b].s == r16[b].d * (float)sum);
    }
    for (int v = 0; v < n_variants; v++) {
        memset(g16, 0x55, sizeof(lmf_block_q16a) * (size_t)n / 32);
        variants[v]->quantize_q16a(x, n, g16);
        for (int b = 0; b < n / 32; b++)
            if (memcmp(&g16[b], &r16[b], sizeof g16[b]))
                fail_msg("%s: q16a block %d differs from the reference (d %g vs %g)", variants[v]->name, b, g16[b].d,
                         r16[b].d);
    }
    free(x), free(ref), free(got), free(r16), free(g16);
}

/* ---- the activation quantization's own error --------------------------------------------------------------- */

/* One matrix-vector product with converted activations against the float64 dot of the same (dequantized) weights
 * with the fp32 activations: this is the error decode adds on top of the weights' quantization. Activations are
 * normal with outlier channels (a few elements 20-60x the rest, as in real hidden states: they set their block's
 * step). Errors relative to sum |w_i x_i| and to max |y|. */
static void test_activation_error(void **state) {
    (void)state;
    static const uint32_t types[] = {LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1};
    enum { N = 1536, R = 64 };
    float *x = malloc(sizeof(float) * N), *w = malloc(sizeof(float) * N);
    fill_normal(x, N, 21, 1.0f);
    uint8_t *W = malloc((size_t)R * N * 2), *xin = malloc(lmf_qinput_bytes_act(LMF_QACT_INT16, LMF_GGML_Q4_1, N) * 2);
    float y[R];
    for (size_t t = 0; t < 6; t++) {
        uint32_t type = types[t % 3];
        int outliers = t >= 3;
        double bound = outliers ? TOL_ACT16_OUTLIERS : TOL_ACT16;
        if (t == 3)
            for (int i = 7; i < N; i += 97) x[i] *= 20.0f + (float)(i % 41);
        size_t rb = row_bytes(type, N);
        for (int r = 0; r < R; r++) make_row(type, N, W + (size_t)r * rb, 500u + (unsigned)(r + 100 * t));
        double y64[R], scale[R], ymax = 0;
        for (int r = 0; r < R; r++) {
            lmf_dequant_ref(type, W + (size_t)r * rb, w, N);
            double s = 0, a = 0;
            for (int i = 0; i < N; i++) s += (double)w[i] * x[i], a += fabs((double)w[i] * x[i]);
            y64[r] = s, scale[r] = a;
            if (fabs(s) > ymax) ymax = fabs(s);
        }
        for (int act = LMF_QACT_INT16; act <= LMF_QACT_INT8; act++)
            for (int v = 0; v < n_variants; v++) {
                lmf_qinput_convert_ops(variants[v], (lmf_qact)act, type, x, N, xin);
                lmf_qmatvec_ops(variants[v], (lmf_qact)act, type, N, R, W, rb, 1, xin, 0, y, R);
                double es = 0, em = 0;
                for (int r = 0; r < R; r++) {
                    double e = fabs(y[r] - y64[r]);
                    if (e / scale[r] > es) es = e / scale[r];
                    if (e / ymax > em) em = e / ymax;
                }
                if (v == n_variants - 1)
                    printf("  %s x %-5s activations%s (%s): error vs fp32 activations %.2g of sum|wx|, %.2g of max|y|\n",
                           lmf_ggml_type_name(type), act_name((lmf_qact)act), outliers ? " with outliers" : "",
                           variants[v]->name, es, em);
                if (act == LMF_QACT_INT16 && !(es <= bound && em <= 4 * bound))
                    fail_msg("%s %s int16%s: activation error %.3g of sum|wx| (bound %g), %.3g of max|y| (bound %g)",
                             variants[v]->name, lmf_ggml_type_name(type), outliers ? " with outliers" : "", es, bound,
                             em, 4 * bound);
            }
    }
    free(x), free(w), free(W), free(xin);
}

static void test_dequant_fast_exact(void **state) {
    (void)state;
    static const uint32_t types[] = {LMF_GGML_F32,  LMF_GGML_F16,  LMF_GGML_BF16,   LMF_GGML_Q8_0,  LMF_GGML_Q4_0,
                                     LMF_GGML_Q4_1, LMF_GGML_Q5_0, LMF_GGML_Q5_1,   LMF_GGML_Q2_K,  LMF_GGML_Q3_K,
                                     LMF_GGML_Q4_K, LMF_GGML_Q5_K, LMF_GGML_Q6_K,   LMF_GGML_IQ4_NL, LMF_GGML_IQ4_XS};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint32_t type = types[t], bs, bb;
        lmf_ggml_type_block(type, &bs, &bb);
        int n = bs == 1 ? 1000 + 13 : (int)bs * 7;
        uint8_t *src = malloc(row_bytes(type, n));
        make_row(type, n, src, 99 + type);
        float *ref = malloc(sizeof(float) * (size_t)(n + 8)), *got = malloc(sizeof(float) * (size_t)(n + 8));
        lmf_dequant_ref(type, src, ref, (size_t)n);
        for (int v = 0; v < n_variants; v++) {
            for (int i = 0; i < n + 8; i++) got[i] = SENTINEL;
            variants[v]->dequant(type, src, got, (size_t)n);
            if (memcmp(got, ref, sizeof(float) * (size_t)n))
                fail_msg("%s: dequant %s differs from the reference", variants[v]->name, lmf_ggml_type_name(type));
            for (int i = n; i < n + 8; i++)
                if (got[i] != SENTINEL) fail_msg("%s: dequant %s wrote past n", variants[v]->name, lmf_ggml_type_name(type));
        }
        free(src), free(ref), free(got);
    }
}

/* Every dequantizer on random bytes: all bit patterns of the quants, fifth/high bits and sub-block scales, and half
 * scales drawn from every finite half (subnormals, zero, -0, up to 65504; the largest products, 65504 * 127 * 32,
 * stay finite in fp32); infinite and NaN halves are left out (the reference's NaN and F16C's keep different
 * payloads). */
static void test_dequant_fast_extreme(void **state) {
    (void)state;
    static const struct { uint32_t type; int halves[2]; } T[] = {
        {LMF_GGML_Q8_0, {0, -1}}, {LMF_GGML_Q4_0, {0, -1}}, {LMF_GGML_Q4_1, {0, 2}}, {LMF_GGML_Q5_0, {0, -1}},
        {LMF_GGML_Q5_1, {0, 2}}, {LMF_GGML_Q2_K, {80, 82}}, {LMF_GGML_Q3_K, {108, -1}}, {LMF_GGML_Q4_K, {0, 2}},
        {LMF_GGML_Q5_K, {0, 2}}, {LMF_GGML_Q6_K, {208, -1}}, {LMF_GGML_IQ4_NL, {0, -1}}, {LMF_GGML_IQ4_XS, {0, -1}}};
    for (size_t t = 0; t < sizeof T / sizeof T[0]; t++) {
        uint32_t type = T[t].type, bs, bb;
        lmf_ggml_type_block(type, &bs, &bb);
        int nblk = 64, n = (int)bs * nblk;
        uint8_t *src = malloc(row_bytes(type, n));
        for (size_t i = 0; i < row_bytes(type, n); i++) src[i] = (uint8_t)rnd();
        for (int b = 0; b < nblk; b++)
            for (int k = 0; k < 2 && T[t].halves[k] >= 0; k++) {
                uint8_t *h = src + (size_t)b * bb + T[t].halves[k];
                if ((h[1] & 0x7c) == 0x7c) h[1] &= (uint8_t)~0x40; /* exponent 31 (inf/NaN) -> a finite half */
                if (b == 0) h[0] = 0xff, h[1] = 0x7b;             /* 65504 */
                if (b == 1) h[0] = 0x01, h[1] = 0x80;             /* the smallest negative subnormal */
                if (b == 2) h[0] = 0x00, h[1] = 0x00;             /* zero */
            }
        float *ref = malloc(sizeof(float) * (size_t)(n + 8)), *got = malloc(sizeof(float) * (size_t)(n + 8));
        lmf_dequant_ref(type, src, ref, (size_t)n);
        for (int v = 0; v < n_variants; v++) {
            for (int i = 0; i < n + 8; i++) got[i] = SENTINEL;
            variants[v]->dequant(type, src, got, (size_t)n);
            for (int i = 0; i < n; i++)
                if (memcmp(&got[i], &ref[i], sizeof(float)))
                    fail_msg("%s: dequant %s element %d (block %d): %.9g, reference %.9g", variants[v]->name,
                             lmf_ggml_type_name(type), i, i / (int)bs, got[i], ref[i]);
            for (int i = n; i < n + 8; i++)
                if (got[i] != SENTINEL)
                    fail_msg("%s: dequant %s wrote past n", variants[v]->name, lmf_ggml_type_name(type));
        }
        free(src), free(ref), free(got);
    }
}

/* ---- quantize -> dequantize error bounds --------------------------------------------------------------------- */

static void test_roundtrip(void **state) {
    (void)state;
    static const uint32_t types[] = {LMF_GGML_F16, LMF_GGML_BF16, LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1,
                                     LMF_GGML_Q5_0, LMF_GGML_Q5_1};
    int n = 32 * 64;
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    uint8_t *q = malloc((size_t)n * 4);
    fill_normal(x, n, 3, 1.0f);
    for (int i = 5; i < n; i += 41) x[i] *= 8.0f;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint32_t type = types[t];
        lmf_quantize_row(type, x, q, (size_t)n);
        lmf_dequant_ref(type, q, y, (size_t)n);
        double worst_ratio = 0;
        for (int b = 0; b < n / 32; b++) {
            const float *xb = x + 32 * b, *yb = y + 32 * b;
            float mn = xb[0], mx = xb[0], amax = 0;
            for (int j = 0; j < 32; j++) mn = fminf(mn, xb[j]), mx = fmaxf(mx, xb[j]), amax = fmaxf(amax, fabsf(xb[j]));
            for (int j = 0; j < 32; j++) {
                double err = fabs((double)xb[j] - yb[j]), bound;
                switch (type) {
                case LMF_GGML_F16: bound = fabs(xb[j]) * 0x1p-11 + 0x1p-25; break;
                case LMF_GGML_BF16: bound = fabs(xb[j]) * 0x1p-8; break;
                case LMF_GGML_Q8_0: bound = 0.5 * amax / 127 * (1 + 127 * 0x1p-10); break;
                /* the element of largest magnitude maps to -8 (resp. -16) exactly; its mirror clamps to 7 (15):
                 * an error of one step d */
                case LMF_GGML_Q4_0: bound = amax / 8 * (1 + 16 * 0x1p-10); break;
                case LMF_GGML_Q5_0: bound = amax / 16 * (1 + 32 * 0x1p-10); break;
                case LMF_GGML_Q4_1: bound = 0.5 * (mx - mn) / 15 + (fabs(mn) + (mx - mn)) * 0x1p-10; break;
                default: bound = 0.5 * (mx - mn) / 31 + (fabs(mn) + (mx - mn)) * 0x1p-10; break;
                }
                if (!(err <= bound))
                    fail_msg("%s round trip: x=%.9g -> %.9g (err %.3g > bound %.3g)", lmf_ggml_type_name(type), xb[j],
                             yb[j], err, bound);
                if (bound > 0 && err / bound > worst_ratio) worst_ratio = err / bound;
            }
        }
        printf("  round trip %-5s worst err / bound = %.2f\n", lmf_ggml_type_name(type), worst_ratio);
    }
    /* half conversion corner cases */
    assert_int_equal(lmf_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(lmf_f32_to_f16(65519.996f), 0x7bff);
    assert_int_equal(lmf_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(lmf_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(lmf_f32_to_f16(NAN) & 0x7fff, 0x7e00);
    assert_int_equal(lmf_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(lmf_f32_to_f16(0x1p-25f), 0x0000);        /* tie to even: 0 */
    assert_int_equal(lmf_f32_to_f16(0x1.8p-24f), 0x0002);      /* tie to even: 2 */
    assert_int_equal(lmf_f32_to_f16(0x1.ffcp-15f), 0x0400);    /* rounds up into the normals */
    for (uint32_t h = 0; h < 0x10000; h++) {                    /* every finite half round-trips */
        if ((h & 0x7c00) == 0x7c00) continue;
        if (lmf_f32_to_f16(lmf_f16_to_f32((uint16_t)h)) != h) fail_msg("half 0x%04x does not round-trip", h);
    }
    assert_int_equal(lmf_f32_to_bf16(NAN) & 0x7fc0, 0x7fc0);
    free(x), free(y), free(q);
}

/* ---- gguf-py fixtures --------------------------------------------------------------------------------------- */

/* The records of tests/reference/fixtures/<file> (quant_fixtures.py's format), made by `source`, bit for bit. */
static void check_fixture_file(const char *file, const char *source, const char *script) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/fixtures/%s", LMF_SOURCE_DIR, file);
    size_t len;
    uint8_t *f = (uint8_t *)slurp(path, &len);
    if (!f) fail_msg("cannot read %s (made by tests/reference/%s)", path, script);
    assert_true(len >= 12 && !memcmp(f, "LMFQFX01", 8));
    uint32_t nrec;
    memcpy(&nrec, f + 8, 4);
    size_t off = 12;
    int nq = 0, nd = 0, nw = 0;
    for (uint32_t i = 0; i < nrec; i++) {
        uint32_t h[4];
        assert_true(off + 16 <= len);
        memcpy(h, f + off, 16);
        off += 16;
        uint32_t kind = h[0], type = h[1], n = h[2], nb = h[3];
        assert_true(off + (size_t)n * 4 + nb <= len);
        const char *tn = lmf_ggml_type_name(type);
        if (kind == 2) { /* under an importance matrix: rows of n_per_row, one importance row for all */
            uint32_t npr;
            assert_true(off + 4 <= len);
            memcpy(&npr, f + off, 4);
            off += 4;
            assert_true(npr && n % npr == 0 && off + (size_t)(n + npr) * 4 + nb <= len);
            float *x = malloc((size_t)n * 4), *qw = malloc((size_t)npr * 4);
            memcpy(x, f + off, (size_t)n * 4);
            memcpy(qw, f + off + (size_t)n * 4, (size_t)npr * 4);
            const uint8_t *want = f + off + (size_t)(n + npr) * 4;
            size_t rb = row_bytes(type, (int)npr);
            assert_int_equal(rb * (n / npr), nb);
            uint8_t *q = malloc(nb);
            for (int v = -1; v < n_variants; v++) { /* the reference, then each table's searches */
                for (uint32_t r = 0; r < n / npr; r++) {
                    if (v < 0) lmf_quantize_row_weighted(type, x + (size_t)r * npr, q + r * rb, npr, qw);
                    else lmf_quantize_weighted(type, x + (size_t)r * npr, q + r * rb, npr, qw, variants[v]);
                }
                for (uint32_t j = 0; j < nb; j++)
                    if (q[j] != want[j])
                        fail_msg("%s: quantize %s under an importance matrix (record %u): byte %u (row %zu) is 0x%02x, "
                                 "%s 0x%02x", v < 0 ? "reference" : variants[v]->name, tn, i, j, j / rb, q[j], source,
                                 want[j]);
            }
            free(x), free(qw), free(q), nw++;
            off += (size_t)(n + npr) * 4 + nb;
            continue;
        }
        if (kind == 0) {
            float *x = malloc((size_t)n * 4);
            uint8_t *q = malloc(nb + 16);
            memcpy(x, f + off, (size_t)n * 4);
            assert_true(lmf_quantize_supported(type));
            assert_int_equal(row_bytes(type, (int)n), nb);
            lmf_quantize_row(type, x, q, n);
            uint32_t bs, bb;
            assert_true(lmf_ggml_type_block(type, &bs, &bb));
            for (uint32_t j = 0; j < nb; j++)
                if (q[j] != f[off + (size_t)n * 4 + j])
                    fail_msg("quantize %s: byte %u (of block %u) is 0x%02x, %s 0x%02x", tn, j, j / bb, q[j], source,
                             f[off + (size_t)n * 4 + j]);
            /* the tables' own quantizers (Q2_K, Q3_K and IQ4_x: the tables' searches) */
            int iq4 = type == LMF_GGML_IQ4_NL || type == LMF_GGML_IQ4_XS;
            for (int v = 0; v < n_variants && iq4; v++) {
                lmf_quantize_iq4(type, x, q, n, NULL, variants[v]->iq4_scales);
                if (memcmp(q, f + off + (size_t)n * 4, nb))
                    fail_msg("%s: quantize %s differs from %s", variants[v]->name, tn, source);
            }
            for (int v = 0; v < n_variants && (type == LMF_GGML_Q2_K || type == LMF_GGML_Q3_K); v++) {
                lmf_quantize_kquant_low(type, x, q, n / 256, variants[v]);
                if (memcmp(q, f + off + (size_t)n * 4, nb))
                    fail_msg("%s: quantize %s differs from %s", variants[v]->name, tn, source);
            }
            int fast = (bs == 256 && type != LMF_GGML_Q2_K && type != LMF_GGML_Q3_K && !iq4) || type == LMF_GGML_Q8_0 ||
                       type == LMF_GGML_Q4_0 || type == LMF_GGML_Q4_1 || type == LMF_GGML_Q5_0 || type == LMF_GGML_Q5_1;
            for (int v = 0; v < n_variants && fast; v++) { /* each table's */
                if (bs == 256) lmf_quantize_kquant(type, x, q, n / 256, variants[v]->kq_fit);
                else variants[v]->quantize_blocks(type, x, q, n / 32);
                if (memcmp(q, f + off + (size_t)n * 4, nb))
                    fail_msg("%s: quantize %s differs from %s", variants[v]->name, tn, source);
            }
            free(x), free(q), nq++;
            off += (size_t)n * 4 + nb;
        } else {
            float *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
            memcpy(want, f + off + nb, (size_t)n * 4);
            assert_true(lmf_dequant_supported(type));
            assert_int_equal(lmf_dequant_row(type, f + off, got, n, tn), LMF_OK);
            for (uint32_t j = 0; j < n; j++)
                if (memcmp(&got[j], &want[j], 4))
                    fail_msg("dequantize %s: element %u is %.9g, %s %.9g", tn, j, got[j], source, want[j]);
            for (int v = 0; v < n_variants; v++) {
                variants[v]->dequant(type, f + off, got, n);
                if (memcmp(got, want, (size_t)n * 4)) fail_msg("%s dequant %s differs from %s", variants[v]->name, tn, source);
            }
            free(want), free(got), nd++;
            off += nb + (size_t)n * 4;
        }
    }
    assert_int_equal(off, len);
    printf("  %s: %d quantize, %d importance-weighted quantize and %d dequantize records bit-exact\n", source, nq, nw,
           nd);
    free(f);
}

static void test_gguf_py_fixtures(void **state) {
    (void)state;
    check_fixture_file("quant_fixtures.bin", "gguf-py", "quant_fixtures.py");
}

/* The K-quant quantizers against ggml's own (gguf-py has none): edge cases of the scale search and rounding. */
static void test_ggml_kquant_fixtures(void **state) {
    (void)state;
    check_fixture_file("kquant_fixtures.bin", "ggml", "kquant_fixtures.py");
}

/* Every integer type under an importance matrix against ggml_quantize_chunk with one (quantize_row_*_impl). */
static void test_ggml_imatrix_fixtures(void **state) {
    (void)state;
    check_fixture_file("imatrix_quant_fixtures.bin", "ggml", "kquant_fixtures.py");
}

/* Each table's quantizers (lmf_quantize_fast: export and quantize) against the reference's bytes: the K-quant scale
 * search (kq_fit: 8 sub-blocks a vector on AVX2) on 600 super-blocks of mixed shapes (scaled, all positive, zero
 * and constant sub-blocks, grids, spikes), then Q8_0 / Q4_x / Q5_x (quantize_blocks) with signed zeros, NaNs and
 * infinities added. */
static int bs256(uint32_t t) { return t == LMF_GGML_Q2_K || t == LMF_GGML_Q3_K; }

/* IQ4_NL / IQ4_XS, Q2_K and Q3_K through every table's search (8 blocks or sub-blocks in the lanes of a vector) against
 * the reference's, byte for byte, without and with an importance row (IQ4_NL: a row with a partial last group) */
static void check_iq4_tables(const float *x, int nb, const char *what) {
    static const uint32_t types[4] = {LMF_GGML_IQ4_NL, LMF_GGML_IQ4_XS, LMF_GGML_Q2_K, LMF_GGML_Q3_K};
    float *qw = malloc(sizeof(float) * 256 * (size_t)nb);
    fill_normal(qw, 256 * nb, 78, 1.0f);
    for (int i = 0; i < 256 * nb; i++) qw[i] = qw[i] * qw[i] + 1e-3f;
    for (int t = 0; t < 4; t++)
        for (int weighted = 0; weighted < 2; weighted++) {
            size_t n = 256 * (size_t)nb - (types[t] == LMF_GGML_IQ4_NL ? 96 : 0), bytes = row_bytes(types[t], (int)n);
            uint8_t *want = malloc(bytes), *got = malloc(bytes);
            const float *w = weighted ? qw : NULL;
            if (weighted) lmf_quantize_weighted(types[t], x, want, n, w, &lmf_quant_ref);
            else lmf_quantize_row(types[t], x, want, n);
            for (int v = 0; v < n_variants; v++) {
                if (weighted) lmf_quantize_weighted(types[t], x, got, n, w, variants[v]);
                else if (bs256(types[t])) lmf_quantize_kquant_low(types[t], x, got, n / 256, variants[v]);
                else lmf_quantize_iq4(types[t], x, got, n, w, variants[v]->iq4_scales);
                for (size_t j = 0; j < bytes; j++)
                    if (got[j] != want[j])
                        fail_msg("%s search %s%s%s: byte %zu is 0x%02x, the reference's 0x%02x", variants[v]->name,
                                 lmf_ggml_type_name(types[t]), weighted ? " (importance)" : "", what, j, got[j],
                                 want[j]);
            }
            free(want), free(got);
        }
    free(qw);
}

static void test_quantize_tables(void **state) {
    (void)state;
    int nb = 600;
    float *x = malloc(sizeof(float) * 256 * (size_t)nb);
    fill_normal(x, 256 * nb, 77, 1.0f);
    for (int i = 0; i < 256 * nb; i++) {
        int kind = (i / 256) % 8;
        if (kind == 1) x[i] *= 1e-3f;
        if (kind == 2) x[i] = fabsf(x[i]);
        if (kind == 3) x[i] = (float)(int)(x[i] * 4) / 4;
        if (kind == 4 && i % 32 < 16) x[i] = 0;
        if (kind == 5 && (i / 32) % 3 == 0) x[i] = 0.375f;
        if (kind == 6) x[i] = x[i] * x[i] * x[i];
        if (kind == 7) x[i] *= i % 7 ? 0.1f : 50.0f;
    }
    static const uint32_t types[3] = {LMF_GGML_Q4_K, LMF_GGML_Q5_K, LMF_GGML_Q6_K};
    for (int t = 0; t < 3; t++) {
        size_t bytes = row_bytes(types[t], 256) * (size_t)nb;
        uint8_t *want = malloc(bytes), *got = malloc(bytes);
        lmf_quantize_kquant(types[t], x, want, (size_t)nb, lmf_kq_fit_ref);
        for (int v = 0; v < n_variants; v++) {
            lmf_quantize_kquant(types[t], x, got, (size_t)nb, variants[v]->kq_fit);
            for (size_t j = 0; j < bytes; j++)
                if (got[j] != want[j])
                    fail_msg("%s kq_fit %s: byte %zu (super-block %zu) is 0x%02x, the reference's 0x%02x",
                             variants[v]->name, lmf_ggml_type_name(types[t]), j, j / row_bytes(types[t], 256), got[j],
                             want[j]);
        }
        free(want), free(got);
    }
    check_iq4_tables(x, nb, "");
    /* the 32-element types (every table's quantize_blocks) on the same floats with signed zeros, NaNs and
     * infinities among them */
    for (int i = 1000; i < 256 * nb; i += 997) x[i] = i % 3 ? NAN : (i % 2 ? INFINITY : -INFINITY);
    for (int i = 2048; i < 2048 + 64; i++) x[i] = i % 5 ? 0.0f : -0.0f;                   /* +0 and -0 only */
    for (int i = 4096; i < 4096 + 32; i++) x[i] = i % 2 ? fabsf(x[i]) + 1.0f : -0.0f;    /* min -0 among +0 */
    check_iq4_tables(x, nb, " with NaN and infinities");
    static const uint32_t t32[5] = {LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1, LMF_GGML_Q5_0, LMF_GGML_Q5_1};
    for (int t = 0; t < 5; t++) {
        size_t bytes = row_bytes(t32[t], 256 * nb), bb = row_bytes(t32[t], 32);
        uint8_t *want = malloc(bytes), *got = malloc(bytes);
        lmf_quantize_row(t32[t], x, want, 256 * (size_t)nb);
        for (int v = 0; v < n_variants; v++) {
            variants[v]->quantize_blocks(t32[t], x, got, (size_t)nb * 8);
            for (size_t j = 0; j < bytes; j++)
                if (got[j] != want[j])
                    fail_msg("%s quantize_blocks %s: byte %zu (block %zu) is 0x%02x, the reference's 0x%02x",
                             variants[v]->name, lmf_ggml_type_name(t32[t]), j, j / bb, got[j], want[j]);
        }
        free(want), free(got);
    }
    /* under an importance matrix: each table's searches (wfit) against the reference's, on the same floats (NaNs
     * and infinities left out: an importance of inf x 0 is ggml's problem too) and importances spanning 1e-6 .. 1e3
     * with zeros; rows of 256 x 7 + 32 x 5 so that the 32-element types also take their tail of single blocks */
    fill_normal(x, 256 * nb, 78, 1.0f);
    for (int i = 0; i < 256 * nb; i++) {
        int kind = (i / 256) % 4;
        if (kind == 1) x[i] = fabsf(x[i]);
        if (kind == 2 && i % 32 < 8) x[i] = 0;
        if (kind == 3) x[i] *= i % 7 ? 0.1f : 50.0f;
    }
    int npr = 256 * 7 + 32 * 5, rows = 256 * nb / npr;
    float *qw = malloc(sizeof(float) * (size_t)npr);
    fill_normal(qw, npr, 79, 1.0f);
    for (int i = 0; i < npr; i++) qw[i] = i % 37 == 0 ? 0.0f : powf(10.0f, 3.0f * qw[i]);
    static const uint32_t tw[7] = {LMF_GGML_Q4_0, LMF_GGML_Q4_1, LMF_GGML_Q5_0, LMF_GGML_Q5_1,
                                   LMF_GGML_Q4_K, LMF_GGML_Q5_K, LMF_GGML_Q6_K};
    for (int t = 0; t < 7; t++) {
        int n = tw[t] >= LMF_GGML_Q4_K ? 256 * 7 : npr; /* the K-quants: whole super-blocks */
        size_t rb = row_bytes(tw[t], n);
        uint8_t *want = malloc(rb), *got = malloc(rb);
        for (int r = 0; r < rows; r++) {
            lmf_quantize_row_weighted(tw[t], x + (size_t)r * npr, want, (size_t)n, qw);
            for (int v = 0; v < n_variants; v++) {
                lmf_quantize_weighted(tw[t], x + (size_t)r * npr, got, (size_t)n, qw, variants[v]);
                for (size_t j = 0; j < rb; j++)
                    if (got[j] != want[j])
                        fail_msg("%s wfit %s: row %d byte %zu is 0x%02x, the reference's 0x%02x", variants[v]->name,
                                 lmf_ggml_type_name(tw[t]), r, j, got[j], want[j]);
            }
        }
        free(want), free(got);
    }
    free(qw);
    free(x);
}

/* ---- the real model ----------------------------------------------------------------------------------------- */

static void test_smollm2_tensors(void **state) {
    (void)state;
    const char *path = smollm2_path();
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        printf("  %s absent (scripts/fetch-smollm2.sh): skipped\n", path);
        skip();
    }
    fclose(fp);
    lmf_gguf *g = NULL;
    assert_int_equal(lmf_gguf_open(path, &g), LMF_OK);
    static const char *names[] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.3.ffn_down.weight",
                                  "blk.29.ffn_gate.weight", "token_embd.weight"};
    int tested = 0;
    for (size_t t = 0; t < sizeof names / sizeof names[0]; t++) {
        const lmf_gguf_tensor *T = lmf_gguf_find_tensor(g, names[t]);
        if (!T) continue;
        int n = (int)T->ne[0], rows = (int)(T->ne[1] < 64 ? T->ne[1] : 64);
        size_t rb = row_bytes(T->type, n);
        assert_true(lmf_qmatvec_supported(T->type));
        float *x = malloc(sizeof(float) * (size_t)n * 2), *w = malloc(sizeof(float) * (size_t)n), *xv = malloc(sizeof(float) * (size_t)n);
        fill_normal(x, 2L * n, 11 + (unsigned)t, 1.0f);
        for (int i = 5; i < n; i += 61) x[i] *= 30.0f; /* outlier channels */
        size_t xb = lmf_qinput_bytes_act(LMF_QACT_INT16, T->type, n);
        uint8_t *xin = malloc(2 * xb);
        float y[2 * 64];
        double worst_act[2] = {0, 0};
        for (int act = LMF_QACT_INT16; act <= LMF_QACT_INT8; act++)
            for (int v = 0; v < n_variants; v++) {
                for (int c = 0; c < 2; c++)
                    lmf_qinput_convert_ops(variants[v], (lmf_qact)act, T->type, x + (size_t)c * n, n, xin + c * xb);
                lmf_qmatvec_ops(variants[v], (lmf_qact)act, T->type, n, rows, T->data, rb, 2, xin, xb, y, 64);
                for (int c = 0; c < 2; c++) {
                    input_values((lmf_qact)act, T->type, xin + c * xb, n, xv);
                    for (int r = 0; r < rows; r++) {
                        assert_int_equal(lmf_dequant_row(T->type, (const uint8_t *)T->data + (size_t)r * rb, w, (size_t)n, names[t]), LMF_OK);
                        double s = 0, a = 0, s32 = 0;
                        for (int i = 0; i < n; i++)
                            s += (double)w[i] * xv[i], a += fabs((double)w[i] * xv[i]),
                                s32 += (double)w[i] * x[(size_t)c * n + i];
                        double e = fabs(y[c * 64 + r] - s) / a, e32 = fabs(y[c * 64 + r] - s32) / a;
                        if (!(e <= TOL))
                            fail_msg("%s %s (%s/%s) row %d col %d: %.9g vs float64 %.9g (rel %.3g)", variants[v]->name,
                                     names[t], lmf_ggml_type_name(T->type), act_name((lmf_qact)act), r, c,
                                     y[c * 64 + r], s, e);
                        if (e32 > worst_act[act]) worst_act[act] = e32;
                        if (act == LMF_QACT_INT16 && is_q8a(T->type) && !(e32 <= TOL_ACT16_OUTLIERS))
                            fail_msg("%s %s (%s) row %d col %d: int16 activations %.9g vs fp32 activations %.9g (rel %.3g)",
                                     variants[v]->name, names[t], lmf_ggml_type_name(T->type), r, c, y[c * 64 + r], s32,
                                     e32);
                    }
                }
            }
        printf("  %s (%s, %d x %d): %d rows x 2 columns match float64 in every variant; vs fp32 activations: int16 %.2g, "
               "int8 %.2g\n", names[t], lmf_ggml_type_name(T->type), (int)T->ne[1], n, rows, worst_act[0], worst_act[1]);
        free(x), free(w), free(xv), free(xin);
        tested++;
    }
    assert_true(tested >= 3);
    lmf_gguf_close(g);
}

/* ---- dispatch ----------------------------------------------------------------------------------------------- */

static void test_dispatch(void **state) {
    (void)state;
    printf("  cpu:");
    for (int f = 0; f < LMF_CPU_FEATURE_COUNT; f++)
        if (lmf_cpu_has((lmf_cpu_feature)f)) printf(" %s", lmf_cpu_feature_name((lmf_cpu_feature)f));
    printf("\n  variants:");
    for (int v = 0; v < n_variants; v++) printf(" %s", variants[v]->name);
    printf("; lmf_quant() = %s\n", lmf_quant()->name);
    /* the best runnable table is the one dispatched (LMF_ISA is unset by main) */
    assert_ptr_equal(lmf_quant(), variants[n_variants - 1]);
    if (lmf_quant_variant(LMF_ISA_AVX512)) assert_true(lmf_cpu_has(LMF_CPU_AVX512VNNI) && lmf_cpu_has(LMF_CPU_AVX512BW));
    if (lmf_quant_variant(LMF_ISA_AVX2)) assert_true(lmf_cpu_has(LMF_CPU_AVX2) && lmf_cpu_has(LMF_CPU_F16C));
    assert_true(lmf_qmatvec_supported(LMF_GGML_Q4_K) && lmf_qmatvec_supported(LMF_GGML_Q6_K));
    assert_false(lmf_qmatvec_supported(LMF_GGML_IQ2_XXS));
    assert_int_equal(lmf_qact_get(), LMF_QACT_INT16);
    assert_int_equal(lmf_qinput_bytes(LMF_GGML_Q4_1, 576), 18 * 72);
    assert_int_equal(lmf_qinput_bytes_act(LMF_QACT_INT8, LMF_GGML_Q4_1, 576), 18 * 40);
    assert_int_equal(lmf_qinput_bytes(LMF_GGML_F16, 576), 576 * 4);
}

int main(void) {
    unsetenv("LMF_ISA");
    unsetenv("LMF_QACT");
    variants[n_variants++] = &lmf_quant_ref;
    if (lmf_quant_variant(LMF_ISA_AVX2)) variants[n_variants++] = lmf_quant_variant(LMF_ISA_AVX2);
    if (lmf_quant_variant(LMF_ISA_AVX512)) variants[n_variants++] = lmf_quant_variant(LMF_ISA_AVX512);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_convert_exact),
        cmocka_unit_test(test_activation_error),
        cmocka_unit_test(test_dequant_fast_exact),
        cmocka_unit_test(test_dequant_fast_extreme),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_gguf_py_fixtures),
        cmocka_unit_test(test_ggml_kquant_fixtures),
        cmocka_unit_test(test_ggml_imatrix_fixtures),
        cmocka_unit_test(test_quantize_tables),
        cmocka_unit_test(test_qmatvec),
        cmocka_unit_test(test_r16),
        cmocka_unit_test(test_r16_amx),
        cmocka_unit_test(test_decode_streams),
        cmocka_unit_test(test_smollm2_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
