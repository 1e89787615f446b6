/* bench_peak.c — the machine's measured FP32 FMA peak (GFLOP/s) for 1..N threads: independent AVX-512 (or AVX2)
 * FMA chains in registers, no memory traffic. Used as the denominator of model FLOPs utilization (MFU).
 * Where lmf_sgemm_bf16 has hardware (AMX tiles or AVX512_BF16) a second line per thread count gives the BF16 peak:
 * the FP32 peak times the products-per-second ratio of the instruction lmf_sgemm_bf16 uses (tdpbf16ps or
 * vdpbf16ps) to FMAs on one core, measured in the same run (lmf_sgemm_bf16_rate): the denominator of bf16 MFU. */
#include "core/cpu.h"
#include "core/progress.h"
#include "kernels/gemm.h"

#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((target("avx512f"))) static float run512(long iters) {
    __m512 a[12], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float run256(long iters) {
    __m256 a[12], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    float out[8];
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    _mm256_storeu_ps(out, s);
    return out[0];
}

int main(int argc, char **argv) {
    int maxt = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
    int w512 = lmf_cpu_best_isa() >= LMF_ISA_AVX512;
    long iters = 50000000;
    for (int t = 1; t <= maxt; t++) {
        double best = 0;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = lmf_now();
            volatile float sink = 0;
#pragma omp parallel num_threads(t)
            sink += w512 ? run512(iters) : run256(iters);
            double dt = lmf_now() - t0;
            double gf = (double)t * iters * 12 * (w512 ? 16 : 8) * 2 / dt / 1e9;
            if (gf > best) best = gf;
        }
        printf("peak_gflops threads=%d isa=%s gflops=%.1f\n", t, w512 ? "avx512" : "avx2", best);
        double rate = w512 ? lmf_sgemm_bf16_rate() : 0.0;
        if (rate > 0.0)
            printf("peak_gflops threads=%d isa=%s gflops=%.1f\n", t, lmf_cpu_amx() ? "bf16-amx" : "bf16-avx512",
                   best * rate);
    }
    return 0;
}
