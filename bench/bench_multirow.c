/* bench_multirow.c — the R16 products against several input columns: what a decode step of many sequences (serve's
 * continuous batching) and an integer prefill (block.h, LMF_LIN_QINT) ask of one core.
 *
 *   bench_multirow [COLS...]     (default: 1 4 8 12 16 32)
 *
 * For Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K (where the table has their R16 kernels; the K-quants on
 * down only, their rows being 256-element super-blocks) on SmolLM2-135M's two widest shapes (1536 x 576: gate / up;
 * 576 x 1536: down), one thread, the SIMD table's R16 kernel (lmf_qmatvec_r16_ops: AVX-512, or AVX2 where the CPU
 * has no AVX-512) against the AMX-INT8 tile kernel (lmf_qmatvec_r16_amx, Q8_0 / Q4_x, where lmf_cpu_amx_int8()):
 * microseconds per call and G multiply-adds per second, each the best of 7 repetitions of 20 calls on the same
 * matrix (it stays in L2: the kernels' arithmetic is what is compared, not the memory). The two give the same bits
 * (test_quant), so the ratio is the whole story; lmf_qmatvec_r16 takes the tiles from LMF_R16_AMX_COLS columns on.
 * Prints the CPU's features first, and last the repack's speed (MB/s of ggml rows into R16 groups: model loading). */
#include "core/cpu.h"
#include "core/dtype.h"
#include "core/progress.h"
#include "kernels/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*kernel)(uint32_t, int, int, const void *, size_t, int, const void *, size_t, float *, int);

static const lmf_quant_ops *simd; /* the widest SIMD table this CPU runs */
static void simd_r16(uint32_t type, int n, int rows, const void *W, size_t rb, int cols, const void *x, size_t xb,
                     float *y, int ldy) {
    lmf_qmatvec_r16_ops(simd, type, n, rows, W, rb, cols, x, xb, y, ldy);
}

static double best_seconds(kernel k, uint32_t type, int n, int rows, const void *P, size_t rb, int cols,
                           const void *x, size_t xb, float *y) {
    double best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = lmf_now();
        for (int it = 0; it < 20; it++) k(type, n, rows, P, rb, cols, x, xb, y, rows);
        double t = (lmf_now() - t0) / 20;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    int cols[16], nc = 0;
    for (int i = 1; i < argc && nc < 16; i++) cols[nc++] = atoi(argv[i]);
    if (!nc) {
        static const int def[] = {1, 4, 8, 12, 16, 32};
        memcpy(cols, def, sizeof def), nc = 6;
    }
    printf("cpu:");
    for (int f = 0; f < LMF_CPU_FEATURE_COUNT; f++)
        if (lmf_cpu_has((lmf_cpu_feature)f)) printf(" %s", lmf_cpu_feature_name((lmf_cpu_feature)f));
    printf("\n");
    simd = lmf_quant_variant(LMF_ISA_AVX512);
    if (!simd) simd = lmf_quant_variant(LMF_ISA_AVX2);
    if (!simd) {
        printf("bench_multirow: no SIMD R16 kernel on this CPU (neither AVX-512 nor AVX2)\n");
        return 0;
    }
    int amx = lmf_cpu_amx_int8();
    if (!amx) printf("(no AMX-INT8 tiles here, or LMF_ISA turned them off: the %s column only)\n", simd->name);
    static const uint32_t types[] = {LMF_GGML_Q8_0, LMF_GGML_Q4_0, LMF_GGML_Q4_1, LMF_GGML_Q5_0,
                                     LMF_GGML_Q5_1, LMF_GGML_Q4_K, LMF_GGML_Q5_K, LMF_GGML_Q6_K};
    static const int shapes[][2] = {{1536, 576}, {576, 1536}};
    double pack_mbs[8][2] = {{0}};
    printf("\n| type | rows x n | columns | %s us | %s GMAC/s | AMX us | AMX GMAC/s | AMX / %s |\n", simd->name,
           simd->name, simd->name);
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int t = 0; t < 8; t++)
        for (int s = 0; s < 2; s++) {
            uint32_t type = types[t];
            int rows = shapes[s][0], n = shapes[s][1];
            if (!lmf_r16_has_kernel(simd, type) || !lmf_r16_format(type, rows, n)) continue; /* K: n % 256 */
            uint32_t qk, bs;
            lmf_ggml_type_block(type, &qk, &bs);
            size_t rb = (size_t)n / qk * bs;
            float *xf = malloc(sizeof(float) * (size_t)n * 32);
            uint8_t *W = malloc(rb * (size_t)rows), *P = malloc(rb * (size_t)rows);
            srand(7);
            for (long i = 0; i < (long)n * 32; i++) xf[i] = (float)(rand() % 2001 - 1000) / 250.0f;
            for (int r = 0; r < rows; r++) {
                uint8_t *row = W + (size_t)r * rb;
                if (lmf_quantize_supported(type)) {
                    lmf_quantize_row(type, xf + (size_t)(r % 32) * n, row, (size_t)n);
                    continue;
                }
                for (size_t i = 0; i < rb; i++) row[i] = (uint8_t)rand(); /* K-quants: random fields, small scales */
                for (size_t b = 0; b < rb; b += bs) {
                    uint16_t d = lmf_f32_to_f16(0.01f), dmin = lmf_f32_to_f16(0.005f);
                    if (type == LMF_GGML_Q6_K) memcpy(row + b + 208, &d, 2);
                    else memcpy(row + b, &d, 2), memcpy(row + b + 2, &dmin, 2);
                }
            }
            double tp = 1e30; /* the repack itself (once per model, at load): best of 5 over the matrix */
            for (int rep = 0; rep < 5; rep++) {
                double t0 = lmf_now();
                for (int g = 0; g < rows / 16; g++)
                    lmf_r16_pack(type, n, W + (size_t)g * 16 * rb, rb, P + (size_t)g * 16 * rb);
                if (lmf_now() - t0 < tp) tp = lmf_now() - t0;
            }
            pack_mbs[t][s] = (double)rb * rows / tp * 1e-6;
            size_t xb = lmf_qinput_bytes(type, n);
            uint8_t *x = malloc(xb * 32);
            float *y = malloc(sizeof(float) * (size_t)rows * 32);
            for (int c = 0; c < 32; c++) lmf_qinput_convert(type, xf + (size_t)c * n, n, x + (size_t)c * xb);
            for (int i = 0; i < nc; i++) {
                int C = cols[i] < 1 ? 1 : cols[i] > 32 ? 32 : cols[i];
                double macs = (double)rows * n * C, ta = best_seconds(simd_r16, type, n, rows, P, rb, C, x, xb, y);
                printf("| %s | %d x %d | %d | %.1f | %.1f |", lmf_ggml_type_name(type), rows, n, C, ta * 1e6,
                       macs / ta * 1e-9);
                if (amx && (type == LMF_GGML_Q8_0 || type == LMF_GGML_Q4_0 || type == LMF_GGML_Q4_1)) {
                    double tt = best_seconds(lmf_qmatvec_r16_amx, type, n, rows, P, rb, C, x, xb, y);
                    printf(" %.1f | %.1f | %.2fx |\n", tt * 1e6, macs / tt * 1e-9, ta / tt);
                } else {
                    printf(" - | - | - |\n");
                }
            }
            free(xf), free(W), free(P), free(x), free(y);
        }
    printf("\nR16 repack (lmf_r16_pack, one thread, the matrix above), MB/s:\n");
    for (int t = 0; t < 8; t++)
        for (int s = 0; s < 2; s++)
            if (pack_mbs[t][s] > 0)
                printf("  %s %d x %d: %.0f\n", lmf_ggml_type_name(types[t]), shapes[s][0], shapes[s][1],
                       pack_mbs[t][s]);
    return 0;
}
