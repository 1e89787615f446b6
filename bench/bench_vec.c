/* bench_vec.c — the row kernels of kernels/vec.h: scalar reference vs AVX2 vs AVX-512, single thread.
 *
 *   bench_vec [--quick]
 *
 * Each case runs one whole workload of GPT-2 124M training shapes through one table (lmf_vec_ref, lmf_vec_avx2,
 * lmf_vec_avx512; variants this CPU lacks are skipped): 1024 rows of 768 for the norms, 1024 attention rows of 256
 * for softmax, 16 rows of 50257 logits for logsumexp / exp_shift_scale, 3M elements for the activations and 10M
 * parameters for AdamW. Buffers are allocated and touched once, outside the timings; in-place kernels get their
 * input restored (untimed) before each call. Implementations are timed in rotation, so drift of the shared host
 * hits all columns alike, and each figure is the median over the repetitions. ns/elem is per element of the
 * workload; GB/s counts the bytes of the arrays each element streams (reads + writes, per-row vectors such as the
 * norm weights excluded), so it compares with the ~36 GB/s one core can draw from memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu.h"
#include "core/progress.h"
#include "kernels/vec.h"

#define C 768      /* model width */
#define ROWS 1024  /* B*T tokens */
#define T_ATT 256  /* attention row */
#define V_LOG 50257
#define N_LOGROWS 16
#define N_ACT (3L << 20)
#define N_ADAM 10000000L

static float *A, *B, *Cb, *D, *E, *S; /* workload buffers, sized for the largest case; S: saved input */
static float wrow[C], brow[C], mean[ROWS], rstd[ROWS], dwrow[C], dbrow[C];

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void fill(float *x, long n, unsigned seed, float scale) {
    unsigned s = seed * 2654435761u + 1;
    for (long i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = scale * ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
}

/* ---- the workloads ---------------------------------------------------------------------------------------- */

static void run_layernorm(const lmf_vec_ops *v) {
    for (int r = 0; r < ROWS; r++)
        v->layernorm(B + (long)r * C, &mean[r], &rstd[r], A + (long)r * C, wrow, brow, C, 1e-5f);
}
static void run_layernorm_bwd(const lmf_vec_ops *v) {
    for (int r = 0; r < ROWS; r++)
        v->layernorm_backward(Cb + (long)r * C, D + (long)r * C, A + (long)r * C, wrow, mean[r], rstd[r], C);
}
static void run_norm_param_grad(const lmf_vec_ops *v) {
    for (int r = 0; r < ROWS; r++)
        v->norm_param_grad(dwrow, dbrow, D + (long)r * C, A + (long)r * C, mean[r], rstd[r], C);
}
static void run_rmsnorm(const lmf_vec_ops *v) {
    for (int r = 0; r < ROWS; r++) v->rmsnorm(B + (long)r * C, &rstd[r], A + (long)r * C, wrow, C, 1e-5f);
}
static void run_rmsnorm_bwd(const lmf_vec_ops *v) {
    for (int r = 0; r < ROWS; r++)
        v->rmsnorm_backward(Cb + (long)r * C, D + (long)r * C, A + (long)r * C, wrow, rstd[r], C);
}
static void prep_softmax(void) { memcpy(A, S, sizeof(float) * ROWS * T_ATT); }
static void run_softmax(const lmf_vec_ops *v) {
    for (int r = 0; r < ROWS; r++) v->softmax(A + (long)r * T_ATT, T_ATT, 0.125f);
}
static void prep_softmax_bwd(void) { memcpy(D, S, sizeof(float) * ROWS * T_ATT); }
static void run_softmax_bwd(const lmf_vec_ops *v) {
    for (int r = 0; r < ROWS; r++) v->softmax_backward(D + (long)r * T_ATT, B + (long)r * T_ATT, T_ATT, 0.125f);
}
static volatile float sink;
static void run_logsumexp(const lmf_vec_ops *v) {
    float s = 0.0f;
    for (int r = 0; r < N_LOGROWS; r++) s += v->logsumexp(A + (long)r * V_LOG, V_LOG);
    sink = s;
}
static void prep_exp_shift_scale(void) { memcpy(B, S, sizeof(float) * N_LOGROWS * V_LOG); }
static void run_exp_shift_scale(const lmf_vec_ops *v) {
    for (int r = 0; r < N_LOGROWS; r++) v->exp_shift_scale(B + (long)r * V_LOG, V_LOG, 12.0f, 1.0f / 1024);
}
static void run_gelu(const lmf_vec_ops *v) { v->gelu(B, A, N_ACT); }
static void run_gelu_bwd(const lmf_vec_ops *v) { v->gelu_backward(Cb, A, D, N_ACT); }
static void run_swiglu(const lmf_vec_ops *v) {
    for (long i = 0; i < N_ACT; i += 2048) v->swiglu(B + i, A + i, D + i, 2048); /* rows of a 2048-wide FFN */
}
static void run_swiglu_bwd(const lmf_vec_ops *v) {
    for (long i = 0; i < N_ACT; i += 2048) v->swiglu_backward(Cb + i, E + i, S + i, A + i, D + i, 2048);
}
static void run_adamw(const lmf_vec_ops *v) {
    v->adamw(A, B, Cb, D, N_ADAM, 0.9f, 0.95f, 1e-8f, 1.0f - 6e-4f * 0.1f, 6e-4f / 0.1f, 0.2236f, 1.0f);
}

typedef struct {
    const char *name, *shape;
    long elems;
    int bytes; /* streamed per element */
    void (*prep)(void);
    void (*run)(const lmf_vec_ops *);
} bench_case;

static const bench_case cases[] = {
    {"layernorm", "1024 x 768", (long)ROWS * C, 8, NULL, run_layernorm},
    {"layernorm_backward", "1024 x 768", (long)ROWS * C, 16, NULL, run_layernorm_bwd},
    {"norm_param_grad", "1024 x 768", (long)ROWS * C, 8, NULL, run_norm_param_grad},
    {"rmsnorm", "1024 x 768", (long)ROWS * C, 8, NULL, run_rmsnorm},
    {"rmsnorm_backward", "1024 x 768", (long)ROWS * C, 16, NULL, run_rmsnorm_bwd},
    {"softmax", "1024 x 256", (long)ROWS * T_ATT, 8, prep_softmax, run_softmax},
    {"softmax_backward", "1024 x 256", (long)ROWS * T_ATT, 12, prep_softmax_bwd, run_softmax_bwd},
    {"logsumexp", "16 x 50257", (long)N_LOGROWS * V_LOG, 4, NULL, run_logsumexp},
    {"exp_shift_scale", "16 x 50257", (long)N_LOGROWS * V_LOG, 8, prep_exp_shift_scale, run_exp_shift_scale},
    {"gelu", "3M", N_ACT, 8, NULL, run_gelu},
    {"gelu_backward", "3M", N_ACT, 16, NULL, run_gelu_bwd},
    {"swiglu", "3M (rows 2048)", N_ACT, 12, NULL, run_swiglu},
    {"swiglu_backward", "3M (rows 2048)", N_ACT, 28, NULL, run_swiglu_bwd},
    {"adamw", "10M", N_ADAM, 28, NULL, run_adamw},
};

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    const lmf_vec_ops *impl[3] = {&lmf_vec_ref, NULL, NULL};
    lmf_isa best = lmf_cpu_best_isa();
    int n_impl = 1;
    if (best >= LMF_ISA_AVX2) impl[n_impl++] = &lmf_vec_avx2;
    if (best >= LMF_ISA_AVX512) impl[n_impl++] = &lmf_vec_avx512;

    long big = N_ADAM; /* every buffer holds the largest case */
    float **bufs[] = {&A, &B, &Cb, &D, &E, &S};
    for (int i = 0; i < 6; i++) {
        *bufs[i] = aligned_alloc(64, sizeof(float) * big);
        if (!*bufs[i]) {
            fprintf(stderr, "bench_vec: out of memory (%ld bytes)\n", (long)sizeof(float) * big);
            return 1;
        }
    }
    fill(wrow, C, 90, 1.0f), fill(brow, C, 91, 0.1f), fill(dwrow, C, 92, 0.1f), fill(dbrow, C, 93, 0.1f);

    int reps = quick ? 5 : 21;
    printf("row kernels, single thread, median of %d runs (ns per element; GB/s of the streamed arrays)\n\n", reps);
    printf("| kernel             | workload        |  B/el |   ref ns | avx2 ns | avx512 ns | avx2 GB/s | avx512 GB/s "
           "| avx2/ref | avx512/ref |\n");
    printf("|--------------------|-----------------|-------|----------|---------|-----------|-----------|-------------"
           "|----------|------------|\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const bench_case *bc = &cases[c];
        /* fresh, realistic inputs for every case: activations ~ +-2, logits ~ +-8, v >= 0 for adamw */
        fill(A, big, 1, 2.0f), fill(B, big, 2, 1.0f), fill(Cb, big, 3, 0.01f), fill(D, big, 4, 0.01f);
        fill(E, big, 5, 0.01f), fill(S, big, 6, 2.0f);
        if (bc->run == run_adamw)
            for (long i = 0; i < big; i++) D[i] = D[i] * D[i];
        if (bc->run == run_logsumexp || bc->run == run_exp_shift_scale) fill(A, big, 7, 8.0f), fill(S, big, 7, 8.0f);
        if (bc->run == run_softmax_bwd) { /* probabilities in B */
            memcpy(B, A, sizeof(float) * ROWS * T_ATT);
            for (int r = 0; r < ROWS; r++) lmf_vec_ref.softmax(B + (long)r * T_ATT, T_ATT, 1.0f);
        }
        run_layernorm(&lmf_vec_ref); /* mean / rstd for the backward cases */

        double t[3][64];
        for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
            for (int k = 0; k < n_impl; k++) {
                int i = (k + (r < 0 ? 0 : r)) % n_impl; /* rotate the order */
                if (bc->prep) bc->prep();
                double t0 = lmf_now();
                bc->run(impl[i]);
                if (r >= 0) t[i][r] = lmf_now() - t0;
            }
        }
        double ns[3] = {NAN, NAN, NAN};
        for (int i = 0; i < n_impl; i++) {
            qsort(t[i], reps, sizeof(double), cmp_double);
            ns[i] = t[i][reps / 2] / bc->elems * 1e9;
        }
        printf("| %-18s | %-15s | %5d | %8.3f | %7.3f | %9.3f | %9.1f | %11.1f | %8.1f | %10.1f |\n", bc->name,
               bc->shape, bc->bytes, ns[0], ns[1], ns[2], bc->bytes / ns[1], bc->bytes / ns[2], ns[0] / ns[1],
               ns[0] / ns[2]);
        fflush(stdout);
    }
    return 0;
}
