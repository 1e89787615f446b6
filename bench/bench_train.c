/* bench_train.c — training-step speed of lmforge for one model shape, for bench/train_bench.sh.
 *
 * usage: bench_train ARCH L C H KVH F V B T THREADS STEPS
 * Runs 2 warm-up steps then STEPS timed steps of forward + backward + clip + AdamW on random tokens and prints one
 * line: `lmforge ms_per_step=... tok_per_s=... peak_rss_mib=... params=... loss0=... lossN=...`.
 * LMF_BENCH_PRECISION=bf16 runs the linear products in bf16 (`train --precision bf16`; the line says
 * precision=bf16). LMF_BENCH_LOSS=fused runs the head's loss over vocabulary slabs (`train --loss fused`; the line
 * says loss=fused). */
#include "lmforge.h"
#include "model/model.h"
#include "train/optim.h"
#include "core/progress.h"
#include "core/rng.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    lmf_bound_omp_spin(argv);
    if (argc != 12) {
        fprintf(stderr, "usage: bench_train ARCH L C H KVH F V B T THREADS STEPS\n");
        return 2;
    }
    lmf_arch arch;
    if (lmf_arch_parse(argv[1], &arch) != LMF_OK) return 2;
    lmf_model_config c = lmf_model_config_default(arch);
    c.n_layer = atoi(argv[2]), c.n_embd = atoi(argv[3]), c.n_head = atoi(argv[4]), c.n_kv_head = atoi(argv[5]);
    c.ffn_dim = atoi(argv[6]), c.vocab_size = atoi(argv[7]);
    int B = atoi(argv[8]), T = atoi(argv[9]), threads = atoi(argv[10]), steps = atoi(argv[11]);
    c.max_seq_len = T; /* position table sized to T, as the PyTorch twin */
    omp_set_num_threads(threads);
    lmf_model *m = lmf_model_create(&c, B, T, 1);
    if (!m) {
        fprintf(stderr, "bench_train: %s\n", lmf_last_error());
        return 1;
    }
    const char *prec = getenv("LMF_BENCH_PRECISION");
    lmf_model_set_bf16(m, prec && !strcmp(prec, "bf16"));
    const char *loss_env = getenv("LMF_BENCH_LOSS");
    lmf_model_set_fused_loss(m, loss_env && !strcmp(loss_env, "fused"));
    lmf_model_init_weights(m, 42);
    lmf_adamw opt;
    lmf_adamw_init(&opt, m->num_params);
    lmf_adamw_hparams hp = {.lr = 3e-4f, .min_lr = 3e-5f, .warmup_steps = 2, .max_steps = 1000, .beta1 = 0.9f,
                            .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f};
    int32_t *tok = malloc(sizeof(int32_t) * (B * T + 1));
    lmf_rng r;
    lmf_rng_seed(&r, 7, 1);
    for (int i = 0; i <= B * T; i++) tok[i] = (int32_t)lmf_rng_below(&r, (uint64_t)c.vocab_size);
    double *times = malloc(sizeof(double) * steps);
    float loss0 = 0, loss = 0;
    for (int s = 0; s < steps + 2; s++) {
        double t0 = lmf_now();
        loss = lmf_model_forward(m, tok, tok + 1, B, T);
        lmf_model_zero_grad_lazy(m); /* as lmf_train_step does */
        lmf_model_backward(m, 1.0f);
        lmf_adamw_step(&opt, m, &hp, s, lmf_grad_norm(m));
        if (s >= 2) times[s - 2] = lmf_now() - t0;
        if (s == 0) loss0 = loss;
    }
    qsort(times, steps, sizeof(double), cmp);
    double med = times[steps / 2];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("lmforge ms_per_step=%.1f tok_per_s=%.1f peak_rss_mib=%.0f params=%zu loss0=%.4f lossN=%.4f%s%s\n", med * 1e3,
           B * T / med, ru.ru_maxrss / 1024.0, m->num_params, loss0, loss, m->bf16 ? " precision=bf16" : "", m->hl ? " loss=fused" : "");
    lmf_adamw_free(&opt);
    lmf_model_free(m);
    free(tok), free(times);
    return 0;
}
