/* bench_gemm.c — GFLOP/s of lmf_sgemm (each ISA this CPU has) against OpenBLAS on transformer training shapes, and
 * of the mixed-precision lmf_sgemm_bf16 (bf16 inputs, fp32 sums) where the CPU has AVX512_BF16.
 *
 *   bench_gemm [--quick]        (OpenMP thread counts 1 and 2; OPENBLAS_CORETYPE is taken from the environment)
 *
 * For each linear layer of GPT-2 124M (tokens M = B*T, in features K, out features N) it times the three products
 * of a linear layer (see kernels/gemm.h): forward y = x W^T, dinp dx += dy W, dweight dW += dy^T x; then the
 * per-head attention products, single-threaded, with Q/K/V interleaved (row stride 3C).
 *
 * OpenBLAS is loaded at run time (dlopen libopenblas.so.0), so the build has no BLAS dependency; without it the
 * column is skipped. lmf_sgemm fixes its ISA at the first call (LMF_ISA), and the OpenMP runtime does not survive
 * fork, so every measurement runs in a fresh child process that sets its ISA and thread count; the parent only
 * forks, in rotation between implementations, so host drift hits all columns alike. The operands live in shared
 * memory touched by the parent, so children do not fault them in. Each number is the median of several timed
 * calls after a warm-up call. */
#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/cpu.h"
#include "core/progress.h"
#include "kernels/gemm.h"

enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);
typedef void (*set_threads_fn)(int);

typedef struct {
    const char *name;
    int tA, tB, M, N, K, lda, ldb, ldc;
    float beta;
    int single; /* attention head product: run with 1 thread only */
} bench_case;

enum { IMPL_OPENBLAS = 0, IMPL_REF = 1, IMPL_BF16 = 16 }; /* impl 1..3 is lmf_sgemm with ISA impl - 1 */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *A_buf, *B_buf, *C_buf;

/* Child process: time one case with one implementation; returns GFLOP/s (median), or -1 when unavailable. */
static double measure(const bench_case *c, int impl, int threads, double budget_s) {
    cblas_sgemm_fn cblas = NULL;
    if (impl == IMPL_OPENBLAS) {
        void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
        if (!h) return -1.0;
        cblas = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
        set_threads_fn set = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
        if (!cblas) return -1.0;
        if (set) set(threads);
    } else if (impl != IMPL_BF16) {
        setenv("LMF_ISA", lmf_isa_name((lmf_isa)(impl - 1)), 1);
    }
    omp_set_num_threads(threads);
    double t[64];
    int n = 0;
    double start = lmf_now();
    for (int r = -1; r < 64; r++) {
        double t0 = lmf_now();
        if (cblas)
            cblas(CblasRowMajor, c->tA ? CblasTrans : CblasNoTrans, c->tB ? CblasTrans : CblasNoTrans, c->M, c->N,
                  c->K, 1.0f, A_buf, c->lda, B_buf, c->ldb, c->beta, C_buf, c->ldc);
        else if (impl == IMPL_BF16)
            lmf_sgemm_bf16(c->tA, c->tB, c->M, c->N, c->K, A_buf, c->lda, B_buf, c->ldb, c->beta, C_buf, c->ldc);
        else
            lmf_sgemm(c->tA, c->tB, c->M, c->N, c->K, A_buf, c->lda, B_buf, c->ldb, c->beta, C_buf, c->ldc);
        double dt = lmf_now() - t0;
        if (r >= 0) t[n++] = dt; /* r == -1 is the warm-up */
        if (n >= 3 && lmf_now() - start > budget_s) break;
    }
    qsort(t, n, sizeof t[0], cmp_double);
    return 2.0 * c->M * c->N * c->K / t[n / 2] * 1e-9;
}

/* Run measure() in a fresh process; the result comes back through shared memory. */
static double measure_forked(const bench_case *c, int impl, int threads, double budget_s, double *shared) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        *shared = measure(c, impl, threads, budget_s);
        _exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) return -2.0;
    return *shared;
}

static void *shared_alloc(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "bench_gemm: cannot map %zu bytes\n", bytes);
        exit(1);
    }
    return p;
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    double budget = quick ? 0.1 : 0.4;
    /* GPT-2 124M linear layers: name, tokens M, in K, out N */
    static const struct {
        const char *name;
        int M, K, N;
    } layers[] = {
        {"qkv", 256, 768, 2304},  {"attproj", 256, 768, 768}, {"fc", 256, 768, 3072}, {"fcproj", 256, 3072, 768},
        {"qkv", 1024, 768, 2304}, {"fc", 1024, 768, 3072},    {"fcproj", 1024, 3072, 768},
        {"lm_head", 1024, 768, 50257},
    };
    bench_case cases[64];
    int nc = 0;
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        int M = layers[l].M, K = layers[l].K, N = layers[l].N;
        if (quick && M == 1024 && N != 50257) continue;
        cases[nc++] = (bench_case){layers[l].name, 0, 1, M, N, K, K, K, N, 0.0f, 0};   /* forward */
        cases[nc++] = (bench_case){layers[l].name, 0, 0, M, K, N, N, K, K, 1.0f, 0};   /* dinp */
        cases[nc++] = (bench_case){layers[l].name, 1, 0, N, K, M, N, K, K, 1.0f, 0};   /* dweight */
    }
    /* attention, one head (T = 256, hs = 64, C = 768): q k^T, att v, and the backward products */
    cases[nc++] = (bench_case){"att qk^T", 0, 1, 256, 256, 64, 2304, 2304, 256, 0.0f, 1};
    cases[nc++] = (bench_case){"att a v", 0, 0, 256, 64, 256, 256, 2304, 768, 0.0f, 1};
    cases[nc++] = (bench_case){"att da^T q", 1, 0, 256, 64, 256, 256, 2304, 2304, 1.0f, 1};

    size_t na = 0, nb = 0, ncc = 0;
    for (int i = 0; i < nc; i++) {
        const bench_case *c = &cases[i];
        size_t a = (size_t)(c->tA ? c->K : c->M) * c->lda, b = (size_t)(c->tB ? c->N : c->K) * c->ldb,
               cc = (size_t)c->M * c->ldc;
        na = a > na ? a : na, nb = b > nb ? b : nb, ncc = cc > ncc ? cc : ncc;
    }
    A_buf = shared_alloc(na * sizeof(float));
    B_buf = shared_alloc(nb * sizeof(float));
    C_buf = shared_alloc(ncc * sizeof(float));
    double *result = shared_alloc(4096);
    for (size_t i = 0; i < na; i++) A_buf[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < nb; i++) B_buf[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    memset(C_buf, 0, ncc * sizeof(float));

    int best = (int)lmf_cpu_best_isa();
    /* probe OpenBLAS in a child too: loading it may start the OpenMP runtime, which must not happen here */
    bench_case probe = {"probe", 0, 0, 1, 1, 1, 1, 1, 1, 0.0f, 1};
    int have_blas = measure_forked(&probe, IMPL_OPENBLAS, 1, 0.0, result) > 0.0;
    if (!have_blas) printf("OpenBLAS: dlopen(libopenblas.so.0) failed; column skipped\n");
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("SGEMM GFLOP/s, median of timed calls; best ISA %s; OPENBLAS_CORETYPE=%s\n",
           lmf_isa_name((lmf_isa)best), ct ? ct : "(unset)");
    if (lmf_sgemm_bf16_rate() > 0.0) {
        double fp32_peak = best >= LMF_ISA_AVX512 ? 2.0 * lmf_fma_rate_avx512() / 1e9 : 0.0;
        printf("%s products per second / FP32 FMA: %.2f (lmf_sgemm_bf16_rate; bf16 pays at >= 1.3)\n",
               lmf_cpu_amx() ? "tdpbf16ps (AMX)" : "vdpbf16ps", lmf_sgemm_bf16_rate());
        printf("one core's peaks: FP32 %.0f GFLOP/s, BF16 %.0f GFLOP/s\n", fp32_peak, fp32_peak * lmf_sgemm_bf16_rate());
    }
    printf("\n");

    printf("| %-10s | %-8s | %5s | %5s | %5s | thr |", "shape", "case", "M", "N", "K");
    for (int isa = best; isa >= LMF_ISA_AVX2; isa--) printf(" %7s |", lmf_isa_name((lmf_isa)isa));
    if (have_blas) printf(" OpenBLAS | %s/BLAS |", lmf_isa_name((lmf_isa)best));
    int bf16 = lmf_sgemm_bf16_rate() > 0.0;
    if (bf16) printf("    bf16 | bf16/%s |", lmf_isa_name((lmf_isa)best));
    printf("\n|------------|----------|-------|-------|-------|-----|");
    for (int isa = best; isa >= LMF_ISA_AVX2; isa--) printf("---------|");
    if (have_blas) printf("----------|-------------|");
    if (bf16) printf("---------|-------------|");
    printf("\n");

    for (int i = 0; i < nc; i++) {
        const bench_case *c = &cases[i];
        const char *kind = c->single ? "1 head" : c->tA ? "dweight" : c->tB ? "forward" : "dinp";
        for (int threads = 1; threads <= 2; threads++) {
            if (c->single && threads == 2) continue;
            double gf[3] = {0}, blas = 0;
            if (have_blas) blas = measure_forked(c, IMPL_OPENBLAS, threads, budget, result);
            for (int isa = best; isa >= LMF_ISA_AVX2; isa--)
                gf[isa] = measure_forked(c, isa + 1, threads, budget, result);
            printf("| %-10s | %-8s | %5d | %5d | %5d | %3d |", c->name, kind, c->M, c->N, c->K, threads);
            for (int isa = best; isa >= LMF_ISA_AVX2; isa--) printf(" %7.1f |", gf[isa]);
            if (have_blas) printf(" %8.1f | %11.2f |", blas, gf[best] / blas);
            if (bf16) {
                double b = measure_forked(c, IMPL_BF16, threads, budget, result);
                printf(" %7.1f | %11.2f |", b, b / gf[best]);
            }
            printf("\n");
        }
    }
    return 0;
}
