/* bench_infer.c — inference speed of one model, measured the way llama-bench does, for bench/infer_bench.sh.
 *
 * usage: bench_infer MODEL THREADS [PP=512] [TG=128] [REPS=3] [DEPTH=0]
 *   pp: PP random tokens evaluated in one call from an empty context (prompt processing, batched prefill)
 *   tg: TG tokens evaluated one at a time after DEPTH tokens already in the KV cache (their prefill untimed):
 *       generation through the KV cache, from an empty context by default (llama-bench's tg)
 * One warm-up run of each, then REPS timed runs; prints one line:
 *   lmforge model=... threads=N pp=PP pp_tok_s=MEAN pp_sd=SD tg=TG tg_tok_s=MEAN tg_sd=SD peak_rss_mib=... */
#include "lmforge.h"
#include "core/progress.h"
#include "core/rng.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void stats(const double *x, int n, double *mean, double *sd) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0;
}

static void die(const char *what) {
    fprintf(stderr, "bench_infer: %s: %s\n", what, lmf_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    lmf_bound_omp_spin(argv);
    if (argc < 3) {
        fprintf(stderr, "usage: bench_infer MODEL THREADS [PP=512] [TG=128] [REPS=3] [DEPTH=0]\n");
        return 2;
    }
    int threads = atoi(argv[2]), pp = argc > 3 ? atoi(argv[3]) : 512, tg = argc > 4 ? atoi(argv[4]) : 128,
        reps = argc > 5 ? atoi(argv[5]) : 3, depth = argc > 6 ? atoi(argv[6]) : 0;
    omp_set_num_threads(threads);
    lmf_weights *w;
    if (lmf_weights_load(argv[1], &w) != LMF_OK) die(argv[1]);
    int V = lmf_weights_config(w)->vocab_size, n = pp > depth + tg ? pp : depth + tg;
    lmf_session *s;
    if (lmf_session_create(w, n, &s) != LMF_OK) die("session");
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n);
    lmf_rng r;
    lmf_rng_seed(&r, 1, 1);
    for (int i = 0; i < n; i++) tok[i] = (int32_t)lmf_rng_below(&r, (uint64_t)V);
    double *tp = calloc((size_t)reps, sizeof(double)), *tt = calloc((size_t)reps, sizeof(double));
    const float *lg;
    for (int rep = -1; rep < reps; rep++) {
        lmf_session_rewind(s, 0);
        double t0 = lmf_now();
        if (pp > 0 && lmf_session_eval(s, tok, pp, 0, &lg) != LMF_OK) die("prefill");
        double t1 = lmf_now();
        lmf_session_rewind(s, 0);
        if (depth > 0 && lmf_session_eval(s, tok, depth, 0, &lg) != LMF_OK) die("prefill to depth");
        t1 = lmf_now();
        for (int i = 0; i < tg; i++)
            if (lmf_session_eval(s, tok + depth + i, 1, 0, &lg) != LMF_OK) die("decode");
        double t2 = lmf_now();
        if (rep >= 0) tp[rep] = pp / (t1 - t0), tt[rep] = tg / (t2 - t1);
    }
    double pm, psd, gm, gsd;
    stats(tp, reps, &pm, &psd);
    stats(tt, reps, &gm, &gsd);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const char *name = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];
    printf("lmforge model=%s threads=%d pp=%d pp_tok_s=%.1f pp_sd=%.1f tg=%d tg_tok_s=%.1f tg_sd=%.1f depth=%d "
           "peak_rss_mib=%.1f\n", name, threads, pp, pm, psd, tg, gm, gsd, depth, ru.ru_maxrss / 1024.0);
    free(tok);
    free(tp);
    free(tt);
    lmf_session_free(s);
    lmf_weights_free(w);
    return 0;
}
