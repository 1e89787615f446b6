/* gemm.c — SGEMM dispatch and threading (see gemm.h).
 *
 * The variant (ref / avx2 / avx512) is chosen once from lmf_cpu_isa(). Outside a parallel region the product is
 * cut into one rectangle of C per OpenMP thread and each thread runs the single-threaded variant on its
 * rectangle with its own pack buffers: no barriers, no shared state. The cut follows the variant's micro-tile
 * (14x32 for AVX-512, 6x16 for AVX2) so that only the real matrix edges produce partial tiles; between equally
 * balanced cuts it takes the one whose threads pack the fewest elements (run() below). Inside a parallel region
 * (per-head attention products) and for tiny products the variant runs on the calling thread. */
#include "kernels/gemm.h"
#include "core/cpu.h"
#include "core/parallel.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stddef.h>

typedef void (*sgemm_fn)(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);
typedef void (*sgemm_bias_fn)(int, int, int, int, int, const float *, int, const float *, int, const float *, float *,
                              int);
typedef void (*sgemm_x_fn)(int, int, int, int, int, const void *, int, int, const void *, int, int, float,
                           const float *, float *, int);

typedef struct {
    sgemm_fn fn;
    sgemm_bias_fn bias_fn; /* C = op(A) op(B) + bias in the product itself; NULL: fn, then a pass adding the bias */
    int mu, nu; /* micro-tile: split points are multiples of these */
    int mc;     /* > 0: the variant packs op(A) once per block of mc rows and op(B) once per such block; ties
                   between equally balanced grids go to the one that packs least (below) */
    sgemm_x_fn x_fn; /* bf16 variants: operands given in bf16 (lmf_sgemm_bf16_x; the bias only where bias_fn is) */
} variant;

static const variant variants[] = {
    [LMF_ISA_REF] = {lmf_sgemm_ref, NULL, 1, 1, 0},
    [LMF_ISA_AVX2] = {lmf_sgemm_avx2, NULL, 6, 16, 0},
    [LMF_ISA_AVX512] = {lmf_sgemm_avx512, NULL, 14, 32, 1008},
};

/* Below this many flops per thread, waking the other threads costs more than it saves. */
#define MIN_FLOPS_PER_THREAD 4000000.0

/* One thread's rectangle: C = beta C + op(A) op(B), or with bias (beta 0) C = op(A) op(B) + bias. a16 / b16: A / B
 * hold bf16 elements. */
static void part(variant v, int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                 const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc) {
    const float *first = v.bias_fn ? bias : NULL; /* the variant starts from the bias, else it is added after */
    if (a16 || b16) v.x_fn(transA, transB, M, N, K, A, a16, lda, B, b16, ldb, beta, first, C, ldc);
    else if (first) v.bias_fn(transA, transB, M, N, K, A, lda, B, ldb, bias, C, ldc);
    else v.fn(transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
    for (int i = 0; bias && !first && i < M; i++)
        for (int j = 0; j < N; j++) C[(long)i * ldc + j] += bias[j];
}

static void run(variant v, int transA, int transB, int M, int N, int K, const void *A, int a16, int lda,
                const void *B, int b16, int ldb, float beta, const float *bias, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;

    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    double flops = 2.0 * M * N * (K > 0 ? K : 1);
    if (nt > 1 && flops / nt < MIN_FLOPS_PER_THREAD) nt = (int)(flops / MIN_FLOPS_PER_THREAD);
    int mt = (M + v.mu - 1) / v.mu, ntl = (N + v.nu - 1) / v.nu; /* micro-tiles along M and N */
    if ((long)mt * ntl < nt) nt = (int)((long)mt * ntl);
    if (nt <= 1) {
        part(v, transA, transB, M, N, K, A, a16, lda, B, b16, ldb, beta, bias, C, ldc);
        return;
    }
    size_t ea = a16 ? sizeof(uint16_t) : sizeof(float), eb = b16 ? sizeof(uint16_t) : sizeof(float);

    /* Grid tm x tn = nt minimising the largest per-thread share of tiles; ties go to the larger tn, or for a variant
     * that packs both operands (mc > 0) to the grid whose threads pack the fewest elements: a thread packs its
     * M / tm rows of op(A) and, once per mc of those rows, its N / tn columns of op(B), so splitting N makes every
     * thread pack all of op(A). With AMX tiles packing costs as much as ~100 products an element, and a forward
     * product (M = tokens > N = features) split by N spent ~30% of a small model's step packing. */
    int tn = 1;
    long best = -1;
    double best_pack = 0;
    for (int d = 1; d <= nt; d++) {
        if (nt % d) continue;
        long share = (long)((mt + nt / d - 1) / (nt / d)) * ((ntl + d - 1) / d);
        double rows = (double)M / (nt / d), pack = v.mc ? rows + ceil(rows / v.mc) * N / d : 0;
        if (best < 0 || share < best || (share == best && pack <= best_pack)) best = share, tn = d, best_pack = pack;
    }
    int tm = nt / tn;

#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        if (omp_get_num_threads() == nt) { /* else the runtime gave us fewer threads: thread 0 does it all */
            int ti = t / tn, tj = t % tn;
            int m0 = (int)((long)mt * ti / tm) * v.mu, m1 = (int)((long)mt * (ti + 1) / tm) * v.mu;
            int n0 = (int)((long)ntl * tj / tn) * v.nu, n1 = (int)((long)ntl * (tj + 1) / tn) * v.nu;
            if (m1 > M) m1 = M;
            if (n1 > N) n1 = N;
            if (m1 > m0 && n1 > n0) {
                const char *Ap = (const char *)A + ea * (transA ? (size_t)m0 : (size_t)m0 * lda);
                const char *Bp = (const char *)B + eb * (transB ? (size_t)n0 * ldb : (size_t)n0);
                part(v, transA, transB, m1 - m0, n1 - n0, K, Ap, a16, lda, Bp, b16, ldb, beta,
                     bias ? bias + n0 : NULL, C + (long)m0 * ldc + n0, ldc);
            }
        } else if (t == 0) {
            part(v, transA, transB, M, N, K, A, a16, lda, B, b16, ldb, beta, bias, C, ldc);
        }
    }
}

static int isa(void) {
    static int isa = -1; /* racing first calls all store the same value */
    int i = __atomic_load_n(&isa, __ATOMIC_RELAXED);
    if (i < 0) __atomic_store_n(&isa, i = (int)lmf_cpu_isa(), __ATOMIC_RELAXED);
    return i;
}

void lmf_sgemm(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    run(variants[isa()], transA, transB, M, N, K, A, 0, lda, B, 0, ldb, beta, NULL, C, ldc);
}

static int bf16_hw(void) { return isa() == LMF_ISA_AVX512 && lmf_cpu_has(LMF_CPU_AVX512BF16); }

double lmf_sgemm_bf16_rate(void) {
    static double rate = -1.0; /* racing first calls measure alike */
    if (rate < 0.0) rate = lmf_cpu_amx() ? lmf_bf16_rate_amx() : bf16_hw() ? lmf_bf16_rate_avx512() : 0.0;
    return rate;
}

int lmf_sgemm_bf16_pays(void) { return lmf_sgemm_bf16_rate() >= 1.3; }

static variant bf16_variant(void) {
    static const variant amx = {lmf_sgemm_bf16_amx, lmf_sgemm_bf16_amx_bias, 32, 32, LMF_SGEMM_AMX_MC,
                                lmf_sgemm_bf16_x_amx},
                         avx512 = {lmf_sgemm_bf16_avx512, NULL, 14, 32, 1008, lmf_sgemm_bf16_x_avx512},
                         avx2 = {lmf_sgemm_bf16_avx2, NULL, 6, 16, 0, lmf_sgemm_bf16_x_avx2},
                         ref = {lmf_sgemm_bf16_ref, NULL, 1, 1, 0, lmf_sgemm_bf16_x_ref};
    return lmf_cpu_amx() ? amx : bf16_hw() ? avx512 : isa() >= LMF_ISA_AVX2 ? avx2 : ref;
}

const char *lmf_sgemm_bf16_note(void) {
    static char note[160];
    if (!note[0]) {
        double rate = lmf_sgemm_bf16_rate();
        if (rate > 0.0)
            snprintf(note, sizeof note, "bf16 products run at %.2fx the fp32 rate on this CPU (%s)", rate,
                     lmf_cpu_amx() ? "AMX-BF16 tiles" : "AVX512_BF16");
        else if (isa() >= LMF_ISA_AVX2)
            snprintf(note, sizeof note, "bf16 products run at the fp32 rate on this CPU (no AMX-BF16 or AVX512_BF16: "
                                        "FP32 FMAs on inputs rounded to bf16)");
        else
            snprintf(note, sizeof note, "bf16 products run the scalar reference on this CPU (no AVX2)");
    }
    return note;
}

void lmf_sgemm_bf16(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc) {
    run(bf16_variant(), transA, transB, M, N, K, A, 0, lda, B, 0, ldb, beta, NULL, C, ldc);
}

void lmf_sgemm_bf16_x(int transA, int transB, int M, int N, int K, const void *A, int a16, int lda, const void *B,
                      int b16, int ldb, float beta, const float *bias, float *C, int ldc) {
    run(bf16_variant(), transA, transB, M, N, K, A, a16, lda, B, b16, ldb, bias ? 0.0f : beta, bias, C, ldc);
}

void lmf_sgemm_bf16_round(uint16_t *dst, const float *src, long n) {
    void (*round)(uint16_t *, const float *, long) = lmf_cpu_amx() || bf16_hw() ? lmf_bf16_round_avx512
                                                     : isa() >= LMF_ISA_AVX2        ? lmf_bf16_round_avx2
                                                                                    : lmf_bf16_round_ref;
    if (omp_in_parallel() || n < 65536) {
        round(dst, src, n);
        return;
    }
#pragma omp parallel
    {
        long lo, hi;
        lmf_omp_range(n, &lo, &hi);
        if (hi > lo) round(dst + lo, src + lo, hi - lo);
    }
}

void lmf_sgemm_bf16_bias(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B,
                         int ldb, const float *bias, float *C, int ldc) {
    run(bf16_variant(), transA, transB, M, N, K, A, 0, lda, B, 0, ldb, 0.0f, bias, C, ldc);
}

void lmf_sgemm_bf16x3(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc) {
    static const variant amx = {lmf_sgemm_bf16x3_amx, NULL, 32, 32, LMF_SGEMM_AMX_MC, NULL};
    run(lmf_cpu_amx() ? amx : variants[isa()], transA, transB, M, N, K, A, 0, lda, B, 0, ldb, beta, NULL, C, ldc);
}
