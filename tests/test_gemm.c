/* test_gemm.c — every SGEMM variant on this CPU against the scalar reference (see kernels/gemm.h).
 *
 * Covers the four transA/transB combinations, beta 0 / 1 / 0.5, odd shapes, shapes around the micro-tile sizes
 * (AVX-512 14x32, AVX2 6x16) and the blocks (KC 384, NB 768 / 960, MC 1008), row strides larger than the rows,
 * and sentinels around and between the rows of C to catch stray writes. beta == 0 cases start C as NaN to prove
 * C is not read. The threaded lmf_sgemm is tested both outside and inside an OpenMP parallel region. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "kernels/gemm.h"

typedef void (*sgemm_fn)(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);

#define SENTINEL 1234.5f
#define PAD 64 /* sentinel floats before and after C */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

static float *rand_buf(size_t n) {
    float *p = malloc(n * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

/* Compare C (from fn) with the reference; tolerance tol (1e-5) relative to sum |a||b| + |beta c0|. Returns failures. */
static double tol = 1e-5;
static const float *tbias; /* the bias products' bias (its magnitude counts in the tolerance) */
static int check(const char *what, int tA, int tB, int M, int N, int K, const float *A, int lda, const float *B,
                 int ldb, float beta, const float *C0, const float *C, const float *R, int ldc) {
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double mag = 0.0;
            for (int k = 0; k < K; k++) {
                float a = tA ? A[(long)k * lda + i] : A[(long)i * lda + k];
                float b = tB ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                mag += fabs((double)a * b);
            }
            if (beta != 0.0f) mag += fabs(beta * C0[(long)i * ldc + j]);
            if (tbias) mag += fabs(tbias[j]);
            double c = C[(long)i * ldc + j], r = R[(long)i * ldc + j];
            if (!(fabs(c - r) <= tol * mag + 1e-30)) {
                if (bad++ < 5)
                    fprintf(stderr, "%s tA=%d tB=%d M=%d N=%d K=%d beta=%g: C[%d][%d] = %.8g, want %.8g\n", what, tA,
                            tB, M, N, K, beta, i, j, c, r);
            }
        }
    /* everything outside the M x N region (row gaps) must be untouched */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++)
            if (C[(long)i * ldc + j] != SENTINEL && bad++ < 5)
                fprintf(stderr, "%s: row gap C[%d][%d] written\n", what, i, j);
    return bad;
}

/* One case: fn vs ref with strides row length + extra. Returns the number of mismatches. */
static int run_case(sgemm_fn fn, sgemm_fn ref, const char *what, int tA, int tB, int M, int N, int K, int extra, float beta) {
    int ar = tA ? K : M, ac = tA ? M : K; /* stored A is ar x ac */
    int br = tB ? N : K, bc = tB ? K : N;
    int lda = ac + extra, ldb = bc + extra * 2, ldc = N + extra;
    float *A = rand_buf((size_t)ar * lda), *B = rand_buf((size_t)br * ldb);
    size_t cn = (size_t)M * ldc;
    if (cn > ((size_t)1 << 32)) fail_msg("C too large"); /* also tells gcc's -Wstringop-overflow the size's range */
    float *C0 = malloc(cn * sizeof(float)), *R = malloc(cn * sizeof(float));
    float *Cb = malloc((cn + 2 * PAD) * sizeof(float));
    assert_true(C0 && Cb && R);
    for (size_t i = 0; i < cn; i++) C0[i] = SENTINEL;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C0[(long)i * ldc + j] = beta == 0.0f ? NAN : frand();
    for (size_t i = 0; i < cn + 2 * PAD; i++) Cb[i] = SENTINEL;
    float *C = Cb + PAD;
    memcpy(C, C0, cn * sizeof(float));
    memcpy(R, C0, cn * sizeof(float));
    ref(tA, tB, M, N, K, A, lda, B, ldb, beta, R, ldc);
    fn(tA, tB, M, N, K, A, lda, B, ldb, beta, C, ldc);
    int bad = check(what, tA, tB, M, N, K, A, lda, B, ldb, beta, C0, C, R, ldc);
    for (int i = 0; i < PAD; i++)
        if ((Cb[i] != SENTINEL || Cb[PAD + cn + i] != SENTINEL) && bad++ < 5)
            fprintf(stderr, "%s tA=%d tB=%d M=%d N=%d K=%d: write outside C\n", what, tA, tB, M, N, K);
    free(A), free(B), free(C0), free(Cb), free(R);
    return bad;
}

static const int shapes[][3] = {
    {1, 1, 1},    {7, 13, 5},   {33, 65, 17}, {100, 37, 300}, {14, 32, 8},  {13, 31, 9},   {15, 33, 16},
    {28, 64, 1},  {6, 16, 4},   {5, 15, 3},   {12, 48, 7},    {29, 95, 33}, {3, 200, 385}, {17, 40, 768},
    {45, 17, 770}, {2, 1000, 20}, {70, 970, 12}, {1, 70, 40},   {64, 1, 64},  {40, 30, 1153}, {1030, 20, 30},
};

static void run_variant(sgemm_fn fn, sgemm_fn ref, const char *what) {
    int bad = 0, n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int b = 0; b < 3; b++) {
                float beta = b == 0 ? 0.0f : b == 1 ? 1.0f : 0.5f;
                int extra = (s + t + b) % 3 == 0 ? 0 : (int)(s % 5) * 3 + 1;
                bad += run_case(fn, ref, what, t >> 1, t & 1, shapes[s][0], shapes[s][1], shapes[s][2], extra, beta);
                n++;
            }
    if (bad) fprintf(stderr, "%s: %d mismatches over %d cases\n", what, bad, n);
    assert_int_equal(bad, 0);
}

/* K == 0: C = beta * C. */
static void run_k0(sgemm_fn fn) {
    float C[6] = {1, 2, 3, 4, 5, 6}, A[1] = {7}, B[1] = {8};
    fn(0, 0, 2, 2, 0, A, 1, B, 2, 0.5f, C, 3);
    assert_true(C[0] == 0.5f && C[1] == 1.0f && C[2] == 3.0f && C[3] == 2.0f && C[4] == 2.5f && C[5] == 6.0f);
    C[0] = NAN;
    fn(1, 1, 1, 1, 0, A, 1, B, 1, 0.0f, C, 1);
    assert_true(C[0] == 0.0f);
}

static void test_ref_k0(void **state) {
    (void)state;
    run_k0(lmf_sgemm_ref);
}

static void test_avx2(void **state) {
    (void)state;
    if (lmf_cpu_best_isa() < LMF_ISA_AVX2) skip();
    run_k0(lmf_sgemm_avx2);
    run_variant(lmf_sgemm_avx2, lmf_sgemm_ref, "avx2");
}

static void test_avx512(void **state) {
    (void)state;
    if (lmf_cpu_best_isa() < LMF_ISA_AVX512) skip();
    run_k0(lmf_sgemm_avx512);
    run_variant(lmf_sgemm_avx512, lmf_sgemm_ref, "avx512");
}

/* The dispatcher, threaded: shapes big enough to be split across threads, including odd ones. */
static void test_threaded(void **state) {
    (void)state;
    omp_set_num_threads(2);
    static const int big[][3] = {{256, 768, 64}, {300, 1001, 77}, {97, 2000, 50}, {1500, 40, 64}, {20, 3000, 30}};
    int bad = 0;
    for (size_t s = 0; s < sizeof big / sizeof big[0]; s++)
        for (int t = 0; t < 4; t++)
            bad += run_case(lmf_sgemm, lmf_sgemm_ref, "threaded", t >> 1, t & 1, big[s][0], big[s][1], big[s][2], (int)s,
                            t & 1 ? 1.0f : 0.0f);
    assert_int_equal(bad, 0);
    run_k0(lmf_sgemm);
}

/* bf16 products against the reference that rounds the inputs and sums in fp32: the 1e-5 tolerance is far below
 * bf16's 2^-9 rounding, so an unrounded (fp32) product fails it as surely as a wrong one. */
static void test_bf16_avx512(void **state) {
    (void)state;
    if (lmf_cpu_best_isa() < LMF_ISA_AVX512 || !lmf_cpu_has(LMF_CPU_AVX512BF16)) skip();
    run_k0(lmf_sgemm_bf16_avx512);
    run_variant(lmf_sgemm_bf16_avx512, lmf_sgemm_bf16_ref, "bf16 avx512");
    assert_int_equal(run_case(lmf_sgemm_bf16_avx512, lmf_sgemm_ref, "bf16 vs fp32 (must differ)", 0, 1, 20, 40, 300,
                              0, 0.0f) > 0, 1);
    omp_set_num_threads(2);
    int bad = 0;
    for (int t = 0; t < 4; t++)
        bad += run_case(lmf_sgemm_bf16, lmf_sgemm_bf16_ref, "bf16 threaded", t >> 1, t & 1, 300, 1001, 77, 1,
                        t & 1 ? 1.0f : 0.0f);
    assert_int_equal(bad, 0);
}

/* The AVX2 FMA kernel on operands rounded to bf16 as they are packed (CPUs without AVX-512 BF16): held to the same
 * reference and tolerance, and its rounding equal to the reference's bit for bit, specials included. */
static void test_bf16_avx2(void **state) {
    (void)state;
    if (lmf_cpu_best_isa() < LMF_ISA_AVX2) skip();
    run_k0(lmf_sgemm_bf16_avx2);
    run_variant(lmf_sgemm_bf16_avx2, lmf_sgemm_bf16_ref, "bf16 avx2");
    assert_int_equal(run_case(lmf_sgemm_bf16_avx2, lmf_sgemm_ref, "bf16 avx2 vs fp32 (must differ)", 0, 1, 20, 40, 300,
                              0, 0.0f) > 0, 1);
    static const uint32_t special[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x7f800000u, 0xff800000u,
                                       0x7f800001u, 0xffc00000u, 0x7fbfffffu, 0x3f808000u, 0x3f818000u, 0x3f808001u,
                                       0x7f7fffffu, 0xff7f8000u, 0x3f7fffffu, 0x0080ffffu, 0x12345678u};
    enum { NS = sizeof special / sizeof special[0], N = 64 * NS + 5 }; /* a tail past the last 8 */
    float x[N];
    uint16_t got[N], want[N];
    for (int i = 0; i < N; i++) {
        uint32_t u = special[i % NS] ^ (i / NS % 2 ? 0x80000000u : 0) ^ (uint32_t)(i / (2 * NS)) * 0x8000u;
        memcpy(&x[i], &u, sizeof u);
    }
    lmf_bf16_round_avx2(got, x, N);
    lmf_bf16_round_ref(want, x, N);
    for (int i = 0; i < N; i++)
        if (got[i] != want[i]) fail_msg("bf16 round avx2: %a -> %04x, want %04x", (double)x[i], got[i], want[i]);
}

/* AMX tiles: the same reference and tolerance (the tiles sum a step's 32 products in their own order, within fp32
 * rounding); shapes around the tile sizes (16, 32) and the blocks (KC 2048, NB 256, MC 1024) besides the common ones. */
static void test_bf16_amx(void **state) {
    (void)state;
    if (!lmf_cpu_amx()) skip();
    run_k0(lmf_sgemm_bf16_amx);
    run_variant(lmf_sgemm_bf16_amx, lmf_sgemm_bf16_ref, "bf16 amx");
    static const int tiles[][3] = {{16, 16, 32},   {32, 32, 64},   {31, 33, 31},   {17, 15, 33},
                                   {64, 288, 513}, {33, 257, 1025}, {1100, 40, 96}, {48, 520, 1536},
                                   {1, 600, 700},  {600, 1, 700},   {20, 40, 4200}}; /* K over two depth blocks */
    int bad = 0;
    for (size_t s = 0; s < sizeof tiles / sizeof tiles[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int b = 0; b < 3; b++)
                bad += run_case(lmf_sgemm_bf16_amx, lmf_sgemm_bf16_ref, "bf16 amx tiles", t >> 1, t & 1, tiles[s][0],
                                tiles[s][1], tiles[s][2], (int)(s + t) % 3 * 5, b == 0 ? 0.0f : b == 1 ? 1.0f : 0.5f);
    assert_int_equal(bad, 0);
    assert_int_equal(run_case(lmf_sgemm_bf16_amx, lmf_sgemm_ref, "amx vs fp32 (must differ)", 0, 1, 20, 40, 300, 0,
                              0.0f) > 0, 1);
    omp_set_num_threads(2);
    for (int t = 0; t < 4; t++) /* the dispatcher, threaded: lmf_sgemm_bf16 is the AMX variant here */
        bad += run_case(lmf_sgemm_bf16, lmf_sgemm_bf16_ref, "bf16 amx threaded", t >> 1, t & 1, 300, 1001, 77, 1,
                        t & 1 ? 1.0f : 0.0f);
    assert_int_equal(bad, 0);
}

/* C = op(A) op(B) + bias through lmf_sgemm_bf16_bias (on AMX the tiles start from the bias row), against the bf16
 * reference plus the bias, threaded and not, with edge blocks (the bias staged) and whole ones (a stride-0 tile
 * load); beta is ignored (the product writes C). */
static void bias_fn(int tA, int tB, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta,
                    float *C, int ldc) {
    (void)beta;
    lmf_sgemm_bf16_bias(tA, tB, M, N, K, A, lda, B, ldb, tbias, C, ldc);
}

static void bias_ref(int tA, int tB, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta,
                     float *C, int ldc) {
    (void)beta;
    lmf_sgemm_bf16_ref(tA, tB, M, N, K, A, lda, B, ldb, 0.0f, C, ldc);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C[(long)i * ldc + j] += tbias[j];
}

static void test_bf16_bias(void **state) {
    (void)state;
    static const int sh[][3] = {{1, 1, 1}, {32, 32, 32}, {64, 96, 200}, {33, 47, 17}, {300, 1001, 77}, {100, 64, 800}};
    int bad = 0;
    float *bias = rand_buf(1001);
    tbias = bias;
    for (int th = 1; th <= 2; th++) {
        omp_set_num_threads(th);
        for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++)
            for (int t = 0; t < 4; t++)
                bad += run_case(bias_fn, bias_ref, "bf16 + bias", t >> 1, t & 1, sh[s][0], sh[s][1], sh[s][2],
                                (int)(s + t) % 3 * 5, 0.0f);
    }
    tbias = NULL;
    free(bias);
    assert_int_equal(bad, 0);
}

/* The split products: against their scalar reference (the same split, summed in order) at 1e-5, and against the
 * fp32 reference at 5e-5 of sum |a||b|: a term's error is at most ~3 x 2^-16 (x as hi + lo to 2^-16, lo.lo left
 * out), where one bf16 product is off by up to 2^-8, so dropping a cross term or mangling a LO part fails (and one
 * bf16 product must fail it: the last case). Without AMX the dispatcher is lmf_sgemm. */
static void test_bf16x3(void **state) {
    (void)state;
    int bad = 0;
    omp_set_num_threads(2);
    tol = 5e-5;
    for (int t = 0; t < 4; t++)
        bad += run_case(lmf_sgemm_bf16x3, lmf_sgemm_ref, "bf16x3 threaded", t >> 1, t & 1, 300, 1001, 77, 1,
                        t & 1 ? 1.0f : 0.0f);
    assert_int_equal(bad, 0);
    assert_int_equal(run_case(lmf_sgemm_bf16_ref, lmf_sgemm_ref, "bf16 vs fp32 at 5e-5 (must differ)", 0, 1, 20, 40,
                              300, 0, 0.0f) > 0, 1);
    if (!lmf_cpu_amx()) {
        tol = 1e-5;
        skip();
    }
    run_variant(lmf_sgemm_bf16x3_amx, lmf_sgemm_ref, "bf16x3 amx vs fp32");
    static const int tiles[][3] = {{16, 16, 32},    {31, 33, 31},    {64, 288, 513},
                                   {33, 257, 1025}, {48, 520, 1536}, {20, 40, 4200}};
    for (size_t s = 0; s < sizeof tiles / sizeof tiles[0]; s++)
        for (int t = 0; t < 4; t++)
            bad += run_case(lmf_sgemm_bf16x3_amx, lmf_sgemm_ref, "bf16x3 amx tiles", t >> 1, t & 1, tiles[s][0],
                            tiles[s][1], tiles[s][2], (int)(s + t) % 3 * 5, t & 1 ? 0.5f : 0.0f);
    tol = 1e-5;
    run_k0(lmf_sgemm_bf16x3_amx);
    run_variant(lmf_sgemm_bf16x3_amx, lmf_sgemm_bf16x3_ref, "bf16x3 amx");
    assert_int_equal(bad, 0);
}

/* Per-head attention products called from inside a parallel region: Q/K/V interleaved in one (T, 3C) buffer,
 * head h at column offset h*64, so lda = ldb = 3C. Each thread checks its own heads against the reference. */
static void test_in_parallel(void **state) {
    (void)state;
    enum { T = 96, C = 256, H = 4, D = 64 };
    float *qkv = rand_buf((size_t)T * 3 * C), *att = malloc(sizeof(float) * H * T * T),
          *out = malloc(sizeof(float) * T * C), *ref_att = malloc(sizeof(float) * H * T * T),
          *ref_out = malloc(sizeof(float) * T * C);
    assert_true(att && out && ref_att && ref_out);
    for (int h = 0; h < H; h++) {
        lmf_sgemm_ref(0, 1, T, T, D, qkv + h * D, 3 * C, qkv + C + h * D, 3 * C, 0.0f, ref_att + h * T * T, T);
        lmf_sgemm_ref(0, 0, T, D, T, ref_att + h * T * T, T, qkv + 2 * C + h * D, 3 * C, 0.0f, ref_out + h * D, C);
    }
    int nested_threads = 0;
    omp_set_num_threads(2);
#pragma omp parallel for schedule(static, 1) reduction(max : nested_threads)
    for (int h = 0; h < H; h++) {
        lmf_sgemm(0, 1, T, T, D, qkv + h * D, 3 * C, qkv + C + h * D, 3 * C, 0.0f, att + h * T * T, T);
        lmf_sgemm(0, 0, T, D, T, att + h * T * T, T, qkv + 2 * C + h * D, 3 * C, 0.0f, out + h * D, C);
        nested_threads = omp_get_num_threads();
    }
    assert_true(nested_threads >= 1);
    int bad = 0;
    for (long i = 0; i < (long)H * T * T; i++)
        if (fabsf(att[i] - ref_att[i]) > 1e-4f * (1.0f + fabsf(ref_att[i])) && bad++ < 5)
            fprintf(stderr, "in-parallel att[%ld] = %g, want %g\n", i, att[i], ref_att[i]);
    for (long i = 0; i < (long)T * C; i++)
        if (fabsf(out[i] - ref_out[i]) > 1e-4f * (1.0f + fabsf(ref_out[i])) && bad++ < 5)
            fprintf(stderr, "in-parallel out[%ld] = %g, want %g\n", i, out[i], ref_out[i]);
    free(qkv), free(att), free(out), free(ref_att), free(ref_out);
    assert_int_equal(bad, 0);
}

/* lmf_sgemm_bf16_x (either operand, or both, given in bf16) against the fp32-source product it stands in for: the
 * operands rounded by the matching lmf_*_round, then every variant must give the bits its fp32-source twin gives
 * on the unrounded ones (the packing starts from the rounded values instead of rounding them; nothing else
 * changes), with and without a bias, C's padding left alone. The operands hold a few fp32 subnormals, which
 * vcvtneps2bf16 flushes and the reference rounding keeps: each pair must agree on them too. */
typedef void (*x_fn)(int, int, int, int, int, const void *, int, int, const void *, int, int, float, const float *,
                     float *, int);
typedef void (*round_fn)(uint16_t *, const float *, long);
typedef void (*sgemm_bias_fn)(int, int, int, int, int, const float *, int, const float *, int, const float *, float *,
                              int);

typedef struct {
    const char *what;
    x_fn f16;
    sgemm_fn f32;
    sgemm_bias_fn f32b; /* the twin with a bias; NULL: the variant takes none (the dispatcher adds it) */
    round_fn round;
} x_variant;

static float *x_operand(int rows, int ld, int b16, round_fn round, uint16_t **h) {
    float *x = rand_buf((size_t)rows * ld);
    for (long i = 0; i < (long)rows * ld; i += 89) x[i] = (float)i * 1e-42f; /* subnormal */
    *h = NULL;
    if (b16) {
        *h = malloc((size_t)rows * ld * sizeof(uint16_t));
        round(*h, x, (long)rows * ld);
    }
    return x;
}

/* kind: 1 A in bf16, 2 B, 3 both; bias: with the twin's bias product (beta 0) */
static int x_case(const x_variant *v, int kind, int tA, int tB, int M, int N, int K, int pad, float beta, int bias) {
    int a16 = kind & 1, b16 = kind >> 1;
    int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    uint16_t *Ah, *Bh;
    float *A = x_operand(tA ? K : M, lda, a16, v->round, &Ah), *B = x_operand(tB ? N : K, ldb, b16, v->round, &Bh);
    float *bv = rand_buf((size_t)N), *C = rand_buf((size_t)M * ldc), *R = malloc((size_t)M * ldc * sizeof(float));
    memcpy(R, C, (size_t)M * ldc * sizeof(float));
    const void *Ax = a16 ? (const void *)Ah : A, *Bx = b16 ? (const void *)Bh : B;
    v->f16(tA, tB, M, N, K, Ax, a16, lda, Bx, b16, ldb, bias ? 0.0f : beta, bias ? bv : NULL, C, ldc);
    if (bias) v->f32b(tA, tB, M, N, K, A, lda, B, ldb, bv, R, ldc);
    else v->f32(tA, tB, M, N, K, A, lda, B, ldb, beta, R, ldc);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++)
            if (memcmp(&C[(long)i * ldc + j], &R[(long)i * ldc + j], sizeof(float)) && bad++ < 5)
                fprintf(stderr, "%s kind=%d tA=%d tB=%d M=%d N=%d K=%d beta=%g bias=%d: C[%d][%d] = %.9g, want %.9g\n",
                        v->what, kind, tA, tB, M, N, K, beta, bias, i, j, C[(long)i * ldc + j], R[(long)i * ldc + j]);
    free(A), free(B), free(Ah), free(Bh), free(bv), free(C), free(R);
    return bad;
}

static int x_shapes(const x_variant *v) {
    /* micro-tiles (14 x 32, 32 x 32), depth blocks (384, 2048; pairs: odd K), column blocks (768, 256), row blocks
     * (1008, 1024: several A blocks share a whole packed op(B) on AMX) */
    static const int sh[][3] = {{1, 1, 1},     {14, 32, 2},    {15, 33, 3},    {31, 47, 65},  {64, 288, 513},
                                {33, 257, 1025}, {20, 800, 770}, {1100, 40, 96}, {1, 600, 700}, {600, 1, 700},
                                {20, 40, 4200}};
    int bad = 0;
    for (int s = 0; s < (int)(sizeof sh / sizeof sh[0]); s++)
        for (int kind = 1; kind <= 3; kind++)
            for (int t = 0; t < 4; t++) {
                int tA = kind & 1 ? 0 : t >> 1, tB = t & 1, pad = (s + t) % 3 * 5;
                for (int b = 0; b < 3; b++)
                    bad += x_case(v, kind, tA, tB, sh[s][0], sh[s][1], sh[s][2], pad, b == 1 ? 1.0f : b ? 0.5f : 0.0f,
                                  0);
                if (v->f32b) bad += x_case(v, kind, tA, tB, sh[s][0], sh[s][1], sh[s][2], pad, 0.0f, 1);
            }
    return bad;
}

static void bias_after(int tA, int tB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                       const float *bias, float *C, int ldc) { /* lmf_sgemm_bf16_bias off AMX: bias after */
    lmf_sgemm_bf16(tA, tB, M, N, K, A, lda, B, ldb, 0.0f, C, ldc);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C[(long)i * ldc + j] += bias[j];
}

static void test_bf16_x(void **state) {
    (void)state;
    int hw = lmf_cpu_amx() || (lmf_cpu_isa() >= LMF_ISA_AVX512 && lmf_cpu_has(LMF_CPU_AVX512BF16));
    const x_variant ref = {"x ref", lmf_sgemm_bf16_x_ref, lmf_sgemm_bf16_ref, NULL, lmf_bf16_round_ref},
                    avx512 = {"x avx512", lmf_sgemm_bf16_x_avx512, lmf_sgemm_bf16_avx512, NULL, lmf_bf16_round_avx512},
                    avx2 = {"x avx2", lmf_sgemm_bf16_x_avx2, lmf_sgemm_bf16_avx2, NULL, lmf_bf16_round_avx2},
                    amx = {"x amx", lmf_sgemm_bf16_x_amx, lmf_sgemm_bf16_amx, lmf_sgemm_bf16_amx_bias,
                           lmf_bf16_round_avx512},
                    disp = {"x threaded", lmf_sgemm_bf16_x, lmf_sgemm_bf16,
                            lmf_cpu_amx() ? lmf_sgemm_bf16_bias : bias_after, lmf_sgemm_bf16_round};
    int bad = x_shapes(&ref);
    if (lmf_cpu_best_isa() >= LMF_ISA_AVX512 && lmf_cpu_has(LMF_CPU_AVX512BF16)) bad += x_shapes(&avx512);
    if (lmf_cpu_best_isa() >= LMF_ISA_AVX2) bad += x_shapes(&avx2);
    if (lmf_cpu_amx()) bad += x_shapes(&amx);
    omp_set_num_threads(2); /* the dispatcher, threaded, with its own rounding and bias rule */
    for (int kind = 1; kind <= 3; kind++)
        for (int t = 0; t < 4; t++) {
            int tA = kind & 1 ? 0 : t >> 1, tB = t & 1;
            bad += x_case(&disp, kind, tA, tB, 300, 1001, 777, 3, t & 1 ? 1.0f : 0.0f, 0);
            bad += x_case(&disp, kind, tA, tB, 1001, 300, 777, 3, 0.0f, 1);
        }
    /* the rounding itself, on a buffer long enough to be threaded, against the variant's own: round to nearest
     * even is what a bf16 product's packing does to its inputs */
    long n = 200003;
    float *x = rand_buf((size_t)n);
    uint16_t *got = malloc((size_t)n * 2), *want = malloc((size_t)n * 2);
    lmf_sgemm_bf16_round(got, x, n);
    (hw ? lmf_bf16_round_avx512 : lmf_bf16_round_ref)(want, x, n);
    bad += memcmp(got, want, (size_t)n * 2) != 0;
    lmf_bf16_round_ref(want, x, n); /* normal numbers: both roundings agree */
    bad += memcmp(got, want, (size_t)n * 2) != 0;
    free(x), free(got), free(want);
    assert_int_equal(bad, 0);
}

int main(void) {
    fprintf(stderr, "test_gemm: best ISA %s, dispatch ISA %s, AMX tiles %s\n", lmf_isa_name(lmf_cpu_best_isa()),
            lmf_isa_name(lmf_cpu_isa()), lmf_cpu_amx() ? "on" : "off");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_k0),   cmocka_unit_test(test_avx2),        cmocka_unit_test(test_avx512),
        cmocka_unit_test(test_threaded), cmocka_unit_test(test_in_parallel), cmocka_unit_test(test_bf16_avx512),
        cmocka_unit_test(test_bf16_avx2), cmocka_unit_test(test_bf16_amx), cmocka_unit_test(test_bf16_bias),
        cmocka_unit_test(test_bf16x3),
        cmocka_unit_test(test_bf16_x),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
