/* test_r16_lanes.c — quant_r16_mv.inc (the R16 decode kernels and k-major reader, written once over 16-lane
 * vectors) instantiated here in portable C with quant_avx512.c's parameters: four columns sharing each weight
 * vector, two integer chains a column. Checked bit for bit against the AVX2 table's instantiation (one chain, its
 * vpaddd) for every R16 type, 1-9 columns (every remainder of four), one and several groups, and rows long enough to
 * take the block sums' chunked and heap paths; the reader against the reference's k-major reader. So the logic the
 * AVX-512 table runs is proven on any x86 machine; the AVX-512 machine adds only its one-intrinsic-per-operation
 * mapping, which test_quant checks there against the reference and, bit for bit, against the AVX2 table. */
#include "test_util.h"

#include "core/alloc.h"
#include "core/dtype.h"
#include "kernels/quant.h"

#include <xmmintrin.h>

#define SENTINEL -7777.25f

/* not inlined: the kernels' unrolled loops over these 16-lane loops took gcc minutes to compile fully inlined */
#define AI static __attribute__((noinline))
enum { K_Q8_0, K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q4_K, K_Q5_K, K_Q6_K, K_Q2_K, K_Q3_K, K_IQ4_NL, K_IQ4_XS };

/* int32 lanes kept unsigned: adds wrap and right shifts are logical, as the SIMD ones */
typedef struct { uint32_t u[16]; } r16i;
typedef struct { float f[16]; } r16f;
#define LANES(r, expr)                                                                                             \
    do {                                                                                                           \
        for (int i = 0; i < 16; i++) (r)[i] = (expr);                                                              \
    } while (0)
AI r16i ri_load(const void *p) {
    r16i r;
    memcpy(&r, p, 64);
    return r;
}
AI r16i ri_load_s8(const void *p) {
    int16_t w[32];
    for (int i = 0; i < 32; i++) w[i] = ((const int8_t *)p)[i];
    return ri_load(w);
}
AI r16i ri_zero(void) { return (r16i){{0}}; }
AI r16i ri_set1(int32_t v) { r16i r; LANES(r.u, (uint32_t)v); return r; }
AI r16i ri_set1_8(char v) { r16i r; memset(&r, v, sizeof r); return r; }
AI r16i ri_set1_16(short v) { r16i r; LANES(r.u, (uint16_t)v * 0x10001u); return r; }
AI r16i ri_and(r16i a, r16i b) { r16i r; LANES(r.u, a.u[i] & b.u[i]); return r; }
AI r16i ri_or(r16i a, r16i b) { r16i r; LANES(r.u, a.u[i] | b.u[i]); return r; }
AI r16i ri_add(r16i a, r16i b) { r16i r; LANES(r.u, a.u[i] + b.u[i]); return r; }
AI r16i ri_sub(r16i a, r16i b) { r16i r; LANES(r.u, a.u[i] - b.u[i]); return r; }
AI r16i ri_srl32(r16i a, int n) { r16i r; LANES(r.u, a.u[i] >> n); return r; }
AI r16i ri_sll32(r16i a, int n) { r16i r; LANES(r.u, a.u[i] << n); return r; }
AI r16i ri_sra32(r16i a, int n) { r16i r; LANES(r.u, (uint32_t)((int32_t)a.u[i] >> n)); return r; }
AI r16i ri_srl16(r16i a, int n) {
    r16i r;
    LANES(r.u, ((a.u[i] & 0xffff) >> n) | ((a.u[i] >> 16) >> n) << 16);
    return r;
}
/* d + the products of the int16 pairs (low half first, little-endian as the SIMD lanes) */
AI r16i ri_madd(r16i d, r16i w, r16i x) {
    r16i r;
    LANES(r.u, d.u[i] + (uint32_t)((int16_t)w.u[i] * (int16_t)x.u[i]) +
                   (uint32_t)((int16_t)(w.u[i] >> 16) * (int16_t)(x.u[i] >> 16)));
    return r;
}
AI void ri_keep(r16i *d) { (void)d; }
AI r16i ri_load_u16(const void *p) {
    uint16_t h[16];
    memcpy(h, p, sizeof h);
    r16i r;
    LANES(r.u, h[i]);
    return r;
}
AI r16i ri_bcast16(const void *p) {
    r16i r;
    for (int k = 0; k < 4; k++) memcpy((uint8_t *)&r + 16 * k, p, 16);
    return r;
}
/* pshufb: byte b of i picks byte i_b & 15 of its 16-byte quarter of t, or 0 where i_b has bit 7 */
AI r16i ri_lut(r16i t, r16i i) {
    r16i r;
    const uint8_t *tb = (const uint8_t *)&t, *ib = (const uint8_t *)&i;
    uint8_t *rb = (uint8_t *)&r;
    for (int b = 0; b < 64; b++) rb[b] = ib[b] & 0x80 ? 0 : tb[(b & ~15) + (ib[b] & 15)];
    return r;
}
AI r16f rf_load_f16(const void *p) {
    uint16_t h[16];
    memcpy(h, p, sizeof h);
    r16f r;
    LANES(r.f, lmf_f16_to_f32(h[i]));
    return r;
}
AI r16f rf_zero(void) { return (r16f){{0}}; }
AI r16f rf_set1(float v) { r16f r; LANES(r.f, v); return r; }
AI r16f rf_mul(r16f a, r16f b) { r16f r; LANES(r.f, a.f[i] * b.f[i]); return r; }
AI r16f rf_add(r16f a, r16f b) { r16f r; LANES(r.f, a.f[i] + b.f[i]); return r; }
AI r16f rf_sub(r16f a, r16f b) { r16f r; LANES(r.f, a.f[i] - b.f[i]); return r; }
AI r16f rf_fmadd(r16f a, r16f b, r16f c) { r16f r; LANES(r.f, fmaf(a.f[i], b.f[i], c.f[i])); return r; }
AI r16f rf_fnmadd(r16f a, r16f b, r16f c) { r16f r; LANES(r.f, fmaf(-a.f[i], b.f[i], c.f[i])); return r; }
AI r16f rf_cvt(r16i a) { r16f r; LANES(r.f, (float)(int32_t)a.u[i]); return r; }
AI void rf_store(float *p, r16f v) { memcpy(p, &v, sizeof v); }
/* a product rounded to float before it meets an add, whatever -ffp-contract says */
AI r16f rf_rounded(r16f v) {
    volatile float t[16];
    for (int i = 0; i < 16; i++) t[i] = v.f[i];
    LANES(v.f, t[i]);
    return v;
}
#define R16_COLS 4
#define R16_CHAINS 2
#include "kernels/quant_r16_mv.inc"
R16MV_ALL

static lmf_qmatvec_fn lanes_kernel(uint32_t type) {
    switch (type) {
    case LMF_GGML_Q8_0: return q8_0_r16;
    case LMF_GGML_Q4_0: return q4_0_r16;
    case LMF_GGML_Q4_1: return q4_1_r16;
    case LMF_GGML_Q5_0: return q5_0_r16;
    case LMF_GGML_Q5_1: return q5_1_r16;
    case LMF_GGML_Q4_K: return q4_k_r16;
    case LMF_GGML_Q5_K: return q5_k_r16;
    case LMF_GGML_Q2_K: return q2_k_r16;
    case LMF_GGML_Q3_K: return q3_k_r16;
    case LMF_GGML_IQ4_NL: return iq4_nl_r16;
    case LMF_GGML_IQ4_XS: return iq4_xs_r16;
    default: return q6_k_r16;
    }
}

static uint32_t rng = 2024;
static uint32_t rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* random bytes, every fp16 scale a finite value between 2^-10 and 2^6 of either sign */
static void make_rows(uint32_t type, int n, int nrows, uint8_t *w, size_t rb) {
    uint32_t bs, bb;
    assert_true(lmf_ggml_type_block(type, &bs, &bb));
    for (size_t i = 0; i < rb * (size_t)nrows; i++) w[i] = (uint8_t)rnd();
    int at = type == LMF_GGML_Q6_K ? 208 : type == LMF_GGML_Q2_K ? 80 : type == LMF_GGML_Q3_K ? 108 : 0;
    int two = type != LMF_GGML_Q8_0 && type != LMF_GGML_Q4_0 && type != LMF_GGML_Q5_0 && type != LMF_GGML_Q6_K &&
              type != LMF_GGML_Q3_K && type != LMF_GGML_IQ4_NL && type != LMF_GGML_IQ4_XS;
    for (int r = 0; r < nrows; r++)
        for (int b = 0; b < n / (int)bs; b++)
            for (int k = 0; k <= two; k++) {
                uint16_t h = (uint16_t)((rnd() & 0x83ff) | (5 + rnd() % 16) << 10);
                memcpy(w + (size_t)r * rb + (size_t)b * bb + at + 2 * k, &h, 2);
            }
}

static void check(uint32_t type, int n, int nrows, int ncols) {
    uint32_t bs, bb;
    assert_true(lmf_ggml_type_block(type, &bs, &bb));
    size_t rb = (size_t)(n / (int)bs) * bb;
    uint8_t *W = malloc(rb * nrows), *P = malloc(rb * nrows);
    make_rows(type, n, nrows, W, rb);
    assert_true(lmf_r16_format(type, nrows, n));
    for (int g = 0; g < nrows / 16; g++) lmf_r16_pack(type, n, W + (size_t)g * 16 * rb, rb, P + (size_t)g * 16 * rb);

    /* the reader, gaps of ld untouched */
    float *t = malloc(sizeof(float) * n * 19), *tl = malloc(sizeof(float) * n * 19);
    for (int g = 0; g < nrows / 16; g++) {
        for (int i = 0; i < n * 19; i++) t[i] = tl[i] = SENTINEL;
        lmf_r16_dequant_t_ref(type, n, P + (size_t)g * 16 * rb, t, 19);
        dequant_r16(type, n, P + (size_t)g * 16 * rb, tl, 19);
        if (memcmp(t, tl, sizeof(float) * n * 19))
            fail_msg("%s n=%d group %d: the 16-lane k-major reader differs from the reference's",
                     lmf_ggml_type_name(type), n, g);
    }

    const lmf_quant_ops *avx2 = lmf_quant_variant(LMF_ISA_AVX2);
    if (avx2 && lmf_r16_has_kernel(avx2, type)) {
        size_t xb = lmf_qinput_bytes_act(LMF_QACT_INT16, type, n) + 8;
        float *xf = malloc(sizeof(float) * n * ncols);
        fill_normal(xf, (long)n * ncols, (unsigned)(n + 7 * ncols + type), 1.0f);
        uint8_t *x = calloc(ncols, xb);
        for (int c = 0; c < ncols; c++)
            lmf_qinput_convert_ops(&lmf_quant_ref, LMF_QACT_INT16, type, xf + (size_t)c * n, n, x + c * xb);
        int ldy = nrows + 3;
        float *y = malloc(sizeof(float) * ldy * ncols), *ya = malloc(sizeof(float) * ldy * ncols);
        for (int i = 0; i < ldy * ncols; i++) y[i] = ya[i] = SENTINEL;
        lanes_kernel(type)(n, nrows, P, rb, ncols, x, xb, y, ldy);
        lmf_qmatvec_r16_ops(avx2, type, n, nrows, P, rb, ncols, x, xb, ya, ldy);
        for (int c = 0; c < ncols; c++)
            for (int r = 0; r < ldy; r++)
                if (memcmp(&y[c * ldy + r], &ya[c * ldy + r], sizeof(float)))
                    fail_msg("%s n=%d nrows=%d ncols=%d: y[%d,%d] = %.9g with 4 columns x 2 chains, %.9g on AVX2",
                             lmf_ggml_type_name(type), n, nrows, ncols, c, r, y[c * ldy + r], ya[c * ldy + r]);
        free(xf), free(x), free(y), free(ya);
    }
    free(W), free(P), free(t), free(tl);
}

static void test_lanes_vs_avx2(void **state) {
    (void)state;
    if (!lmf_quant_variant(LMF_ISA_AVX2)) printf("  (no AVX2 here: the readers only)\n");
    static const uint32_t types[] = {LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1, LMF_GGML_Q5_0, LMF_GGML_Q5_1,
                                     LMF_GGML_Q4_K, LMF_GGML_Q5_K, LMF_GGML_Q6_K, LMF_GGML_Q2_K, LMF_GGML_Q3_K,
                                     LMF_GGML_IQ4_NL, LMF_GGML_IQ4_XS};
    static const int ns[] = {32, 96, 576}, ns_k[] = {256, 512};
    for (int ti = 0; ti < 12; ti++) {
        int k = lmf_r16_unit(types[ti]) == 256;
        for (int i = 0; i < (k ? 2 : 3); i++)
            for (int rows = 16; rows <= 48; rows += 32)
                for (int cols = 1; cols <= 9; cols++) check(types[ti], k ? ns_k[i] : ns[i], rows, cols);
    }
    /* block sums a few columns at a time (Q5_0: 1024 a column), and on the heap (Q6_K: 4096 a column) */
    check(LMF_GGML_Q5_0, 32768, 16, 9);
    check(LMF_GGML_Q6_K, 65536, 16, 9);
    check(LMF_GGML_Q2_K, 65536, 16, 9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lanes_vs_avx2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
