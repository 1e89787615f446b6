/* bench_attention.c — training attention alone (lmf_attention_*_b16: bf16 q|k|v, the mixed-precision path), forward
 * and backward, on the shapes issue 16's training rows run: the small model (B 8 x T 256, 6 heads of 64), GPT-2 124M
 * (B 4 x T 256, 12 heads), SmolLM2-135M (B 4 x T 512, 9 query heads on 3 KV heads), and Gemma 3 270M's global and
 * local layers (B 1 x T 2048, 4 query heads of 256 on 1 KV head; the local ones a sliding window of 512), and
 * Gemma 2 2B's global layers (B 1 x T 1024, 8 heads of 256 on 4 KV heads, scores soft-capped at 50).
 *
 *   bench_attention [THREADS] [REPS]
 *
 * Each row times the dispatched kernel (`lmforge`: the AMX attention kernel where the CPU has AMX-BF16) and the
 * per-block products it replaces (`products`: lmf_sgemm_bf16_x per block, the path every other CPU takes) in
 * rotation, the median of REPS calls after two warm-ups; GFLOP/s counts the useful products over each query's keys
 * (the causal half, or its window: the forward's two, the backward's four and its recomputed scores). */
#include "core/cpu.h"
#include "core/progress.h"
#include "core/rng.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const char *name;
    int B, T, NH, NKV, hs, W;
    float cap;
} shape;

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 20;
    omp_set_num_threads(threads);
    const shape shapes[] = {{"small L6 C384", 8, 256, 6, 6, 64, 0, 0},
                            {"GPT-2 124M", 4, 256, 12, 12, 64, 0, 0},
                            {"SmolLM2-135M", 4, 512, 9, 3, 64, 0, 0},
                            {"Gemma 3 270M global", 1, 2048, 4, 1, 256, 0, 0},
                            {"Gemma 3 270M local", 1, 2048, 4, 1, 256, 512, 0},
                            {"Gemma 2 2B capped", 1, 1024, 8, 4, 256, 0, 50.0f}};
    printf("%d thread(s); AMX-BF16: %s (name the CPU from lscpu)\n", threads, lmf_cpu_amx() ? "yes" : "no");
    printf("| shape | B x T | heads | window | cap | pass | impl | ms | GFLOP/s | speed-up |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        shape h = shapes[s];
        int C = h.NH * h.hs, S = C + 2 * h.NKV * h.hs;
        long nq = (long)h.B * h.T * S, no = (long)h.B * h.T * C;
        float *qkv = malloc(sizeof(float) * nq), *dqkv = malloc(sizeof(float) * nq), *out = malloc(sizeof(float) * no);
        float *dout = malloc(sizeof(float) * no);
        uint16_t *q16 = malloc(2 * nq);
        float *scratch = malloc(sizeof(float) * lmf_attention_scratch_floats(h.T, threads));
        lmf_rng r;
        lmf_rng_seed(&r, 11, 0);
        for (long i = 0; i < nq; i++) qkv[i] = lmf_rng_normal(&r);
        for (long i = 0; i < no; i++) dout[i] = lmf_rng_normal(&r);
        lmf_sgemm_bf16_round(q16, qkv, nq);
        /* query i's keys: i + 1, or the window's W; 2 hs flops a score per product */
        double pairs = 0;
        for (int i = 0; i < h.T; i++) pairs += h.W && h.W < i + 1 ? h.W : i + 1;
        pairs *= (double)h.B * h.NH;
        double fl[2] = {2 * 2 * h.hs * pairs, 5 * 2 * h.hs * pairs};
        double ms[2][2][64];
        int n = reps < 64 ? reps : 64;
        for (int rep = -2; rep < n; rep++)
            for (int impl = 0; impl < 2; impl++)
                for (int pass = 0; pass < 2; pass++) {
                    double t0 = lmf_now();
                    if (pass == 0 && impl == 0)
                        lmf_attention_forward_b16(out, scratch, q16, NULL, h.W, h.cap, h.B, h.T, h.NH, h.NKV, h.hs);
                    else if (pass == 0)
                        lmf_attention_forward(out, scratch, qkv, NULL, h.W, h.cap, h.B, h.T, h.NH, h.NKV, h.hs, 1);
                    else if (impl == 0)
                        lmf_attention_backward_b16(dqkv, scratch, dout, q16, NULL, h.W, h.cap, h.B, h.T, h.NH, h.NKV,
                                                   h.hs);
                    else
                        lmf_attention_backward(dqkv, scratch, dout, qkv, NULL, h.W, h.cap, h.B, h.T, h.NH, h.NKV,
                                               h.hs, 1);
                    if (rep >= 0) ms[impl][pass][rep] = (lmf_now() - t0) * 1e3;
                }
        for (int pass = 0; pass < 2; pass++) {
            double med[2];
            for (int impl = 0; impl < 2; impl++) {
                qsort(ms[impl][pass], (size_t)n, sizeof(double), cmp);
                med[impl] = ms[impl][pass][n / 2];
            }
            for (int impl = 0; impl < 2; impl++)
                printf("| %s | %d x %d | %d/%d of %d | %d | %g | %s | %s | %.3f | %.1f | %.2fx |\n", h.name, h.B, h.T,
                       h.NH, h.NKV, h.hs, h.W, h.cap, pass ? "backward" : "forward", impl ? "products" : "lmforge",
                       med[impl], fl[pass] / (med[impl] * 1e6), med[1] / med[impl]);
        }
        free(qkv), free(dqkv), free(out), free(dout), free(q16), free(scratch);
    }
    return 0;
}
