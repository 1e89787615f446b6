/* bench_bf16_prefill.c — what bf16 products would do to prompt processing (issue 16 item 4), measured before
 * building it: one forward over T prompt tokens of a real model with every linear product in fp32 and in bf16
 * (model->bf16, the products `train --precision bf16` uses: inputs rounded to bf16, fp32 sums), rounds alternating.
 *
 *   bench_bf16_prefill MODEL [T=512] [ROUNDS=3] [THREADS=2]
 *
 * The model is loaded into the fp32 model (any weight type dequantized once, as the SmolLM2 logits test loads it),
 * so the products are the prefill's products without its slab dequantization. Prints one line: median ms and
 * tokens/s of each, their ratio, and how far bf16's logits are from fp32's at every position — the largest and the
 * median over positions of max |difference| / max |fp32 logit| (the measure test_smollm2_logits holds to 1e-3
 * against its NumPy reference) — and at how many positions the argmax agrees. */
#include "lmforge.h"
#include "core/progress.h"
#include "core/rng.h"
#include "model/model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int argmax(const float *x, int n) {
    int k = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[k]) k = i;
    return k;
}

int main(int argc, char **argv) {
    lmf_bound_omp_spin(argv);
    if (argc < 2) {
        fprintf(stderr, "usage: bench_bf16_prefill MODEL [T=512] [ROUNDS=3] [THREADS=2]\n");
        return 2;
    }
    int T = argc > 2 ? atoi(argv[2]) : 512, rounds = argc > 3 ? atoi(argv[3]) : 3;
    omp_set_num_threads(argc > 4 ? atoi(argv[4]) : 2);
    lmf_weights *w;
    lmf_model *m;
    if (lmf_weights_load(argv[1], &w) != LMF_OK || lmf_model_from_weights(w, 1, T, 0, &m) != LMF_OK) {
        fprintf(stderr, "bench_bf16_prefill: %s\n", lmf_last_error());
        return 1;
    }
    lmf_weights_free(w);
    int V = m->cfg.vocab_size;
    if (T < 1 || T > m->max_seq || rounds < 1) {
        fprintf(stderr, "bench_bf16_prefill: T must be in [1, %d], ROUNDS >= 1\n", m->max_seq);
        return 2;
    }
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)T);
    lmf_rng r;
    lmf_rng_seed(&r, 7, 0);
    for (int i = 0; i < T; i++) tok[i] = (int32_t)lmf_rng_below(&r, (uint64_t)V);
    float *ref = malloc(sizeof(float) * (size_t)T * V);
    double *ms[2] = {malloc(sizeof(double) * rounds), malloc(sizeof(double) * rounds)}, err_max = 0;
    double *err = malloc(sizeof(double) * (size_t)T);
    int same = 0;
    /* round 0 warms up and compares the logits; rounds 1..ROUNDS are timed */
    for (int k = 0; k <= rounds; k++)
        for (int p = 0; p < 2; p++) {
            lmf_model_set_bf16(m, p);
            double t0 = lmf_now();
            lmf_model_forward(m, tok, NULL, 1, T);
            if (k) ms[p][k - 1] = (lmf_now() - t0) * 1e3;
            else if (!p) memcpy(ref, lmf_model_logits(m), sizeof(float) * (size_t)T * V);
            else
                for (int t = 0; t < T; t++) {
                    const float *a = lmf_model_logits(m) + (size_t)t * V, *b = ref + (size_t)t * V;
                    double d = 0, mx = 0;
                    for (int v = 0; v < V; v++) d = fmax(d, fabs((double)a[v] - b[v])), mx = fmax(mx, fabs(b[v]));
                    err[t] = d / mx, err_max = fmax(err_max, err[t]);
                    same += argmax(a, V) == argmax(b, V);
                }
        }
    qsort(ms[0], (size_t)rounds, sizeof(double), cmp);
    qsort(ms[1], (size_t)rounds, sizeof(double), cmp);
    qsort(err, (size_t)T, sizeof(double), cmp);
    double f = ms[0][rounds / 2], b = ms[1][rounds / 2];
    printf("prefill T=%d threads=%d fp32_ms=%.1f fp32_tok_s=%.1f bf16_ms=%.1f bf16_tok_s=%.1f bf16_speed=%.2fx "
           "logits_rel_err_max=%.3g logits_rel_err_median=%.3g argmax_same=%d/%d\n", T, omp_get_max_threads(), f,
           T / f * 1e3, b, T / b * 1e3, f / b, err_max, err[T / 2], same, T);
    free(tok), free(ref), free(ms[0]), free(ms[1]), free(err);
    lmf_model_free(m);
    return 0;
}
