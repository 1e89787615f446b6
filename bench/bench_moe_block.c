/* bench_moe_block.c — training speed of the mixture-of-experts block alone (the layer issue 14 names), for
 * bench/moe_block_bench.sh: router, top-k, the experts' SwiGLU products over the tokens routed to each and the
 * weighted sum forward; the router losses' gradients, the experts' and the router's backward. No attention, no head,
 * no optimizer: the block's own work on N = B x T rows of width C.
 *
 * usage: bench_moe_block C E K F B T THREADS STEPS
 * Runs 2 warm-up passes then STEPS timed forward + backward passes over fixed random rows and prints one line:
 * `lmforge moe_block ms=... tok_per_s=...` (median). */
#include "lmforge.h"
#include "core/progress.h"
#include "core/rng.h"
#include "model/block.h"
#include "model/model.h"
#include "model/moe.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: bench_moe_block C E K F B T THREADS STEPS\n");
        return 2;
    }
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.n_embd = atoi(argv[1]), c.n_expert = atoi(argv[2]), c.n_expert_used = atoi(argv[3]), c.ffn_dim = atoi(argv[4]);
    int B = atoi(argv[5]), T = atoi(argv[6]), threads = atoi(argv[7]), steps = atoi(argv[8]), N = B * T;
    c.n_layer = 1, c.n_head = 4, c.n_kv_head = 4, c.vocab_size = 256, c.max_seq_len = T, c.norm_topk_prob = 1;
    c.router_aux_coef = 0.01f; /* as the PyTorch side: the aux loss's gradient reaches the router */
    omp_set_num_threads(threads);
    lmf_model *m = lmf_model_create(&c, B, T, 1); /* one layer: its MoE weights, gradients and kept rows */
    if (!m) {
        fprintf(stderr, "bench_moe_block: %s\n", lmf_last_error());
        return 1;
    }
    lmf_model_init_weights(m, 1);
    size_t NC = (size_t)N * c.n_embd;
    float *x = malloc(NC * sizeof(float)), *out = malloc(NC * sizeof(float)), *dout = malloc(NC * sizeof(float));
    float *dx = malloc(NC * sizeof(float));
    lmf_rng r;
    lmf_rng_seed(&r, 7, 0);
    for (size_t i = 0; i < NC; i++) x[i] = lmf_rng_normal(&r), dout[i] = 1e-3f * lmf_rng_normal(&r);
    lmf_block_ctx ctx = {.cfg = &m->cfg, .B = B, .T = T, .training = 1, .nthreads = threads};
    const lmf_layer_weights *L = &m->w->layers[0], *G = &m->gw->layers[0];
    double *ms = malloc(sizeof(double) * (size_t)steps);
    for (int s = -2; s < steps; s++) {
        double t0 = lmf_now();
        lmf_moe_forward(&ctx, L, 0, x, out, m->moe, m->moe_scratch, NULL, N);
        double aux, z;
        lmf_moe_grad mg;
        lmf_moe_losses(&m->cfg, N, m->moe, m->moe_stride, &aux, &z, NULL, NULL, 1.0f, &mg);
        ctx.moe_grad = &mg;
        lmf_model_zero_grad(m);
        for (size_t i = 0; i < NC; i++) dx[i] = 0.0f;
        lmf_moe_backward(&ctx, L, G, 0, &mg, x, dout, dx, m->moe, m->moe_scratch, NULL, N);
        if (s >= 0) ms[s] = (lmf_now() - t0) * 1e3;
    }
    qsort(ms, (size_t)steps, sizeof *ms, cmp);
    double med = ms[steps / 2];
    printf("lmforge moe_block C=%d E=%d k=%d F=%d N=%d threads=%d ms=%.2f tok_per_s=%.1f\n", c.n_embd, c.n_expert,
           c.n_expert_used, c.ffn_dim, N, threads, med, N / (med * 1e-3));
    free(x), free(out), free(dout), free(dx), free(ms);
    lmf_model_free(m);
    return 0;
}
