/* bench_quant.c — decode's matrix-vector kernels (kernels/quant.h): scalar reference vs AVX2 vs AVX-512, one thread.
 *
 *   bench_quant [--quick]
 *
 * Three tables:
 *  1. plain read bandwidth of one core (lmf_vec()->sum over a buffer in L2, in L3 and in DRAM), the yardstick;
 *  2. lmf_qmatvec with one column on SmolLM2-135M's shapes (n=576 -> 576, 192, 1536 rows; n=1536 -> 576; lm_head
 *     49152 x 576) for F32, F16, BF16, Q8_0, Q4_0, Q4_1 (the integer types with int16 activations, the default, and
 *     int8 ones, LMF_QACT=int8: rows "/i16" and "/i8"): ns per call and GB/s of weight bytes. Every call reads a
 *     different copy of the matrix from a 1 GiB pool, so weights come from memory, not from a cache that already
 *     holds them (this host's L3 is large enough to hold a whole small model: the "cold" case is the honest one
 *     for decode). The conversion of the input (lmf_qinput_convert) is timed separately and included in the model
 *     figure;
 *  3. a whole SmolLM2-135M decode step's linear layers (30 layers x q, k, v, o, gate, up, down + lm_head, four input
 *     conversions per layer + one), all weights distinct in memory: ms per token and tokens/s, the upper bound the
 *     matrix-vector kernels allow on one core;
 *  4. every R16 kernel (the decode layout, kernels/quant.h) on one 2816 x 1024 matrix (an ffn of a 1024-wide model:
 *     256-multiple, so the K-quants are themselves) that stays in cache, one column: the kernels' compute rate,
 *     to set beside table 1's read rates (a kernel slower than memory is compute-bound in decode).
 * Implementations (variants and activation formats) are timed in rotation and each figure is the median over
 * repetitions (the host is shared). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <immintrin.h>
#include <omp.h>

#include "core/cpu.h"
#include "core/progress.h"
#include "io/gguf.h"
#include "kernels/quant.h"
#include "kernels/vec.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void *big_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 2u << 20, bytes)) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    madvise(p, bytes, MADV_HUGEPAGE);
    memset(p, 0, bytes);
    return p;
}

static void fill(float *x, long n, unsigned seed) {
    unsigned s = seed * 2654435761u + 1;
    for (long i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
}

static size_t row_bytes(uint32_t type, int n) {
    uint32_t bs, bb;
    lmf_ggml_type_block(type, &bs, &bb);
    return (size_t)(n / (int)bs) * bb;
}

#define POOL (1ul << 30)
static uint8_t *pool;
static float *src;                 /* random floats to quantize from (largest matrix) */
static volatile float sink;

/* 1. read bandwidth */
static double read_bw(size_t bytes, int reps) {
    const lmf_vec_ops *V = lmf_vec();
    double t[64];
    size_t nf = bytes / 4;
    long chunks = (long)(POOL / bytes);
    for (int r = 0; r < reps; r++) {
        const float *p = (const float *)(pool + (size_t)(r % chunks) * bytes);
        if (bytes >= (64u << 20)) p = (const float *)pool; /* large: one buffer, beyond every cache anyway */
        double t0 = lmf_now();
        float s = 0;
        for (size_t i = 0; i < nf; i += 1u << 20) s += V->sum(p + i, (int)(nf - i < (1u << 20) ? nf - i : (1u << 20)));
        t[r] = lmf_now() - t0;
        sink = s;
    }
    return (double)bytes / median(t, reps) / 1e9;
}

/* 1b. the most one or two cores can read: S streams per thread (the thread's half of the pool in S runs), read 256 B
 * of each in turn; the decode kernels' streams (kernels/quant.h) come from this measurement */
__attribute__((target("avx512f"))) static float read_streams_avx512(const uint8_t *p, size_t len, int S) {
    __m512 a[8];
    for (int s = 0; s < 8; s++) a[s] = _mm512_setzero_ps();
    for (size_t i = 0; i < len; i += 256)
        for (int s = 0; s < S; s++) {
            const float *q = (const float *)(p + (size_t)s * len + i);
            a[s] = _mm512_add_ps(a[s], _mm512_add_ps(_mm512_load_ps(q), _mm512_load_ps(q + 16)));
            a[s] = _mm512_add_ps(a[s], _mm512_add_ps(_mm512_load_ps(q + 32), _mm512_load_ps(q + 48)));
        }
    for (int s = 1; s < 8; s++) a[0] = _mm512_add_ps(a[0], a[s]);
    return _mm512_reduce_add_ps(a[0]);
}
/* the same with 32-byte loads, for CPUs without AVX-512 */
__attribute__((target("avx2"))) static float read_streams_avx2(const uint8_t *p, size_t len, int S) {
    __m256 a[8];
    for (int s = 0; s < 8; s++) a[s] = _mm256_setzero_ps();
    for (size_t i = 0; i < len; i += 256)
        for (int s = 0; s < S; s++) {
            const float *q = (const float *)(p + (size_t)s * len + i);
            for (int k = 0; k < 64; k += 16)
                a[s] = _mm256_add_ps(a[s], _mm256_add_ps(_mm256_load_ps(q + k), _mm256_load_ps(q + k + 8)));
        }
    for (int s = 1; s < 8; s++) a[0] = _mm256_add_ps(a[0], a[s]);
    float t[8];
    _mm256_storeu_ps(t, a[0]);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
static double read_streams(size_t bytes, int threads, int S, int reps) {
    double t[16];
    size_t per = bytes / (size_t)threads, len = per / (size_t)S & ~(size_t)255;
    for (int r = 0; r < reps; r++) {
        double t0 = lmf_now();
#pragma omp parallel num_threads(threads)
        sink += (lmf_cpu_has(LMF_CPU_AVX512F) ? read_streams_avx512 : read_streams_avx2)(
            pool + (size_t)omp_get_thread_num() * per, len, S);
        t[r] = lmf_now() - t0;
    }
    return (double)len * S * threads / median(t, reps) / 1e9;
}

static const uint32_t types[] = {LMF_GGML_F32, LMF_GGML_F16, LMF_GGML_BF16, LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1};
#define NT (int)(sizeof types / sizeof types[0])
static int is_int_type(uint32_t t) { return t == LMF_GGML_Q8_0 || t == LMF_GGML_Q4_0 || t == LMF_GGML_Q4_1; }
/* a row label: the type, and for the integer types the activation format */
static const char *label(uint32_t type, int act) {
    static char buf[32];
    if (!is_int_type(type)) return lmf_ggml_type_name(type);
    snprintf(buf, sizeof buf, "%s/%s", lmf_ggml_type_name(type), act == LMF_QACT_INT8 ? "i8" : act == 2 ? "r16" : "i16");
    return buf;
}
static const struct { int rows, n; const char *what; } shapes[] = {
    {576, 576, "q/o 576x576"}, {192, 576, "k/v 192x576"}, {1536, 576, "gate/up 1536x576"},
    {576, 1536, "down 576x1536"}, {49152, 576, "lm_head 49152x576"}};
#define NS (int)(sizeof shapes / sizeof shapes[0])

/* fills the pool with copies of one quantized rows x n matrix; returns the number of copies */
static long make_copies(uint32_t type, int rows, int n) {
    size_t rb = row_bytes(type, n), mb = rb * (size_t)rows;
    for (int r = 0; r < rows; r++) lmf_quantize_row(type, src + (size_t)r * n, pool + (size_t)r * rb, (size_t)n);
    long copies = (long)(POOL / mb);
    if (copies > 4096) copies = 4096;
    for (long c = 1; c < copies; c++) memcpy(pool + (size_t)c * mb, pool, mb);
    return copies;
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    unsetenv("LMF_ISA");
    const lmf_quant_ops *ops[3];
    int nops = 0;
    for (int i = 0; i <= 2; i++)
        if (lmf_quant_variant((lmf_isa)i)) ops[nops++] = lmf_quant_variant((lmf_isa)i);
    printf("bench_quant: one thread; variants:");
    for (int i = 0; i < nops; i++) printf(" %s", ops[i]->name);
    printf("; cpu:");
    for (int f = 0; f < LMF_CPU_FEATURE_COUNT; f++)
        if (lmf_cpu_has((lmf_cpu_feature)f)) printf(" %s", lmf_cpu_feature_name((lmf_cpu_feature)f));
    printf("\n\n");
    pool = big_alloc(POOL);
    src = malloc(sizeof(float) * 49152 * 576);
    fill(src, 49152L * 576, 1);

    /* 1 */
    double bw_l2 = read_bw(1u << 20, 41), bw_l3 = read_bw(32u << 20, 21), bw_mem = read_bw(POOL, quick ? 3 : 7);
    printf("read bandwidth (%s sum): 1 MiB (L2) %.1f GB/s, 32 MiB (L3) %.1f GB/s, 1 GiB (DRAM) %.1f GB/s\n\n",
           lmf_vec()->name, bw_l2, bw_l3, bw_mem);
    if (lmf_cpu_has(LMF_CPU_AVX2)) {
        /* 144 MiB: a Q8_0 SmolLM2-135M, which this host's large L3 may partly hold between tokens, as in decode */
        for (int big = 1; big >= 0; big--) {
            printf("read bandwidth, %s, S streams per thread read 256 B at a time with %s loads (GB/s):",
                   big ? "1 GiB" : "144 MiB", lmf_cpu_has(LMF_CPU_AVX512F) ? "64-byte" : "32-byte");
            for (int th = 1; th <= 2; th++)
                for (int S = 1; S <= 8; S *= 2)
                    printf(" %dt/S=%d %.1f", th, S, read_streams(big ? POOL : 144u << 20, th, S, quick ? 5 : 15));
            printf("\n");
        }
        printf("\n");
    }

    /* 2 */
    float *x = malloc(sizeof(float) * 1536), y[49152];
    fill(x, 1536, 2);
    static uint8_t xin[1536 * 4];
    printf("%-9s %-18s %10s", "type", "shape", "MB");
    for (int i = 0; i < nops; i++) printf(" %9s ns %7s GB/s", ops[i]->name, ops[i]->name);
    printf("\n");
    double conv_ns[NT][2][2][3];
    for (int t = 0; t < NT; t++) {
        uint32_t type = types[t];
        int nacts = is_int_type(type) ? 2 : 1; /* int16 (the default), then int8 */
        for (int s = 0; s < NS; s++) {
            int rows = shapes[s].rows, n = shapes[s].n;
            size_t mb = row_bytes(type, n) * (size_t)rows;
            long copies = make_copies(type, rows, n);
            int reps = rows * n > 1000000 ? (quick ? 5 : 15) : (quick ? 21 : 101);
            double tm[2][3][128];
            long next = 0;
            for (int r = 0; r < reps; r++)
                for (int a = 0; a < nacts; a++)
                    for (int i = 0; i < nops; i++) {
                        if (i == 0 && r >= (rows * n > 1000000 ? 3 : 11)) {
                            tm[a][i][r] = tm[a][i][r - 1];
                            continue;
                        } /* the scalar reference is slow: fewer repetitions */
                        lmf_qinput_convert_ops(ops[i], (lmf_qact)a, type, x, n, xin);
                        const uint8_t *W = pool + (size_t)(next++ % copies) * mb;
                        double t0 = lmf_now();
                        lmf_qmatvec_ops(ops[i], (lmf_qact)a, type, n, rows, W, row_bytes(type, n), 1, xin, 0, y, rows);
                        tm[a][i][r] = lmf_now() - t0;
                        sink = y[0];
                    }
            for (int a = 0; a < nacts; a++) {
                printf("%-9s %-18s %10.2f", label(type, a), shapes[s].what, mb / 1e6);
                for (int i = 0; i < nops; i++) {
                    double sec = median(tm[a][i], reps);
                    printf(" %12.0f %12.1f", sec * 1e9, mb / sec / 1e9);
                }
                printf("\n");
            }
        }
        /* input conversion, n = 576 and 1536 */
        for (int a = 0; a < nacts; a++)
            for (int k = 0; k < 2; k++) {
                int n = k ? 1536 : 576;
                for (int i = 0; i < nops; i++) {
                    double tm[201];
                    for (int r = 0; r < 201; r++) {
                        double t0 = lmf_now();
                        for (int j = 0; j < 10; j++) lmf_qinput_convert_ops(ops[i], (lmf_qact)a, type, x, n, xin);
                        tm[r] = (lmf_now() - t0) / 10;
                    }
                    conv_ns[t][a][k][i] = median(tm, 201) * 1e9;
                }
            }
        for (int a = 0; a < nacts; a++) {
            printf("%-9s %-18s %10s", label(type, a), "input convert 576", "");
            for (int i = 0; i < nops; i++) printf(" %12.0f %12s", conv_ns[t][a][0][i], "");
            printf("\n");
        }
    }

    /* 3: a whole decode step's linear layers, every matrix distinct in memory */
    printf("\nSmolLM2-135M decode, linear layers only (30 x [q k v o gate up down] + lm_head 49152x576), one thread:\n");
    printf("%-9s %10s", "type", "MB");
    for (int i = 0; i < nops; i++) printf(" %9s ms/tok %6s tok/s %5s GB/s", ops[i]->name, "", "");
    printf("\n");
    static const int lay[7][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};
    for (int t = 0; t < NT; t++) {
        uint32_t type = types[t];
        size_t off[30 * 7 + 1], total = 0;
        for (int l = 0; l < 30; l++)
            for (int m = 0; m < 7; m++) {
                off[l * 7 + m] = total;
                total += (row_bytes(type, lay[m][1]) * (size_t)lay[m][0] + 4095) & ~(size_t)4095;
            }
        off[210] = total;
        total += row_bytes(type, 576) * 49152;
        if (2 * total > POOL) {
            printf("%-9s %10.1f (does not fit the pool)\n", lmf_ggml_type_name(type), total / 1e6);
            continue;
        }
        for (int l = 0; l < 30; l++)
            for (int m = 0; m < 7; m++) {
                size_t rb = row_bytes(type, lay[m][1]);
                for (int r = 0; r < lay[m][0]; r++)
                    lmf_quantize_row(type, src + ((size_t)(l * 7 + m) * 1000 + (size_t)r * lay[m][1]) % (40000L * 576),
                                     pool + off[l * 7 + m] + (size_t)r * rb, (size_t)lay[m][1]);
            }
        for (int r = 0; r < 49152; r++)
            lmf_quantize_row(type, src + (size_t)r * 576, pool + off[210] + (size_t)r * row_bytes(type, 576), 576);
        /* the R16 copy of every matrix (the layout the executor decodes from) in the pool's second half */
        uint8_t *packed = pool + POOL / 2;
        for (int m = 0; is_int_type(type) && m <= 210; m++) {
            int rows = m < 210 ? lay[m % 7][0] : 49152, n = m < 210 ? lay[m % 7][1] : 576;
            size_t rb = row_bytes(type, n);
            for (int g = 0; g < rows / 16; g++)
                lmf_r16_pack(type, n, pool + off[m] + (size_t)g * 16 * rb, rb, packed + off[m] + (size_t)g * 16 * rb);
        }
        int reps = quick ? 3 : 9, nacts = is_int_type(type) ? 3 : 1;
        double tm[3][3][16];
        float yy[1536];
        for (int r = 0; r < reps; r++)
            for (int a = 0; a < nacts; a++)
                for (int i = 0; i < nops; i++) {
                    if (i == 0 && r >= 3 && nops > 1) {
                        tm[a][i][r] = tm[a][i][r - 1];
                        continue;
                    }
                    int r16 = a == 2;
                    lmf_qact act = r16 ? LMF_QACT_INT16 : (lmf_qact)a;
                    double t0 = lmf_now();
                    for (int l = 0; l <= 30; l++) {
                        /* q, k, v share one conversion; o, gate+up, down one each; l == 30: lm_head */
                        for (int m = 0; m < (l < 30 ? 7 : 1); m++) {
                            int rows = l < 30 ? lay[m][0] : 49152, n = l < 30 ? lay[m][1] : 576;
                            float *out = l < 30 ? yy : y;
                            if (m == 0 || m == 3 || m == 4 || m == 6) lmf_qinput_convert_ops(ops[i], act, type, x, n, xin);
                            if (r16)
                                lmf_qmatvec_r16_ops(ops[i], type, n, rows, packed + off[l * 7 + m], row_bytes(type, n), 1,
                                                    xin, 0, out, rows);
                            else
                                lmf_qmatvec_ops(ops[i], act, type, n, rows, pool + off[l * 7 + m], row_bytes(type, n), 1,
                                                xin, 0, out, rows);
                        }
                    }
                    tm[a][i][r] = lmf_now() - t0;
                    sink = y[0] + yy[0];
                }
        for (int a = 0; a < nacts; a++) {
            printf("%-9s %10.1f", label(type, a), total / 1e6);
            for (int i = 0; i < nops; i++) {
                double sec = median(tm[a][i], reps);
                printf(" %16.2f %12.1f %10.1f", sec * 1e3, 1 / sec, total / sec / 1e9);
            }
            printf("\n");
        }
    }

    /* 4: R16 kernels, matrix in cache */
    static const uint32_t r16_types[] = {LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1, LMF_GGML_Q5_0, LMF_GGML_Q5_1,
                                         LMF_GGML_Q2_K, LMF_GGML_Q3_K, LMF_GGML_Q4_K, LMF_GGML_Q5_K, LMF_GGML_Q6_K,
                                         LMF_GGML_IQ4_NL, LMF_GGML_IQ4_XS};
    const int R4 = 2816, N4 = 1024;
    printf("\nR16 kernels, one %d x %d matrix in cache, one column (compute rate):\n%-9s %10s", R4, N4, "type", "MB");
    for (int i = 1; i < nops; i++) printf(" %9s us %6s GB/s %4s Gw/s", ops[i]->name, "", "");
    printf("\n");
    static float y4[2816];
    for (int t = 0; t < (int)(sizeof r16_types / sizeof r16_types[0]); t++) {
        uint32_t type = r16_types[t];
        size_t rb = row_bytes(type, N4), mb = rb * R4;
        for (int r = 0; r < R4; r++) lmf_quantize_row(type, src + (size_t)r * N4, pool + (size_t)r * rb, (size_t)N4);
        for (int g = 0; g < R4 / 16; g++)
            lmf_r16_pack(type, N4, pool + (size_t)g * 16 * rb, rb, pool + POOL / 2 + (size_t)g * 16 * rb);
        printf("%-9s %10.2f", lmf_ggml_type_name(type), mb / 1e6);
        for (int i = 1; i < nops; i++) {
            double tm[41];
            lmf_qinput_convert_ops(ops[i], LMF_QACT_INT16, type, x, N4, xin);
            for (int r = 0; r < (quick ? 11 : 41); r++) {
                double t0 = lmf_now();
                for (int k = 0; k < 10; k++)
                    lmf_qmatvec_r16_ops(ops[i], type, N4, R4, pool + POOL / 2, rb, 1, xin, 0, y4, R4);
                tm[r] = (lmf_now() - t0) / 10;
                sink = y4[0];
            }
            double sec = median(tm, quick ? 11 : 41);
            printf(" %12.1f %11.2f %9.2f", sec * 1e6, mb / sec / 1e9, (double)R4 * N4 / sec / 1e9);
        }
        printf("\n");
    }
    free(src), free(x);
    return 0;
}
