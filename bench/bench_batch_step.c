/* bench_batch_step.c — one decode step of many sequences at once: what lmforge serve's engine runs each iteration
 * once every running request generates (continuous batching), without HTTP, sampling or prompts around it.
 *
 * usage: bench_batch_step MODEL THREADS ROWS DEPTH [STEPS=40] [CACHE=f32]
 *   ROWS sequences (1..32, the decode path's limit) share one KV pool; each first reads DEPTH random tokens
 *   (prefill, untimed), then STEPS decode steps of ROWS rows (one token per sequence) run once untimed, to touch
 *   the pool's memory, the sequences are rewound to DEPTH and the same STEPS steps are timed in windows of 10.
 *   CACHE: f32 or f16 (the KV cache's element type, --cache-type of serve).
 * Prints one line: lmforge model=... threads=N rows=R depth=D cache=T step_ms_min=... step_ms_median=... tok_s=...
 * (tok_s = ROWS / the fastest window's mean step: these hosts are shared, the minimum is the least disturbed). */
#include "lmforge.h"
#include "model/infer.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static void die(const char *what) {
    fprintf(stderr, "bench_batch_step: %s: %s\n", what, lmf_last_error());
    exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    lmf_bound_omp_spin(argv);
    if (argc < 5) {
        fprintf(stderr, "usage: bench_batch_step MODEL THREADS ROWS DEPTH [STEPS=40] [CACHE=f32]\n");
        return 2;
    }
    int threads = atoi(argv[2]), rows = atoi(argv[3]), depth = atoi(argv[4]), steps = argc > 5 ? atoi(argv[5]) : 40;
    lmf_kv_type kt = LMF_KV_F32;
    if (argc > 6 && lmf_kv_type_parse(argv[6], &kt) != LMF_OK) die("CACHE");
    if (threads < 1 || rows < 1 || rows > 32 || depth < 1 || steps < 10) {
        fprintf(stderr, "bench_batch_step: need THREADS >= 1, 1 <= ROWS <= 32, DEPTH >= 1, STEPS >= 10\n");
        return 2;
    }
    omp_set_num_threads(threads);
    lmf_weights *w;
    if (lmf_weights_load(argv[1], &w) != LMF_OK) die(argv[1]);
    int V = lmf_weights_config(w)->vocab_size, n_ctx = depth + steps + 1;
    lmf_kv_pool *pool;
    if (lmf_kv_pool_create(w, rows * (n_ctx + 16), 16, n_ctx, kt, &pool) != LMF_OK) die("KV pool"); /* serve's block size */
    lmf_session **s = calloc((size_t)rows, sizeof *s);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)depth), *next = malloc(sizeof(int32_t) * (size_t)rows);
    const int32_t **tp = malloc(sizeof(*tp) * (size_t)rows);
    int *n = malloc(sizeof(int) * (size_t)rows);
    float *logits = malloc(sizeof(float) * (size_t)V * (size_t)rows);
    if (!s || !toks || !next || !tp || !n || !logits) die("out of memory");
    for (int i = 0; i < rows; i++) {
        if (lmf_session_create_pooled(pool, n_ctx, &s[i]) != LMF_OK) die("session");
        for (int j = 0; j < depth; j++) toks[j] = (int32_t)((7919u * (unsigned)(i + 1) + 31u * (unsigned)j) % (unsigned)V);
        const float *lg;
        if (lmf_session_eval(s[i], toks, depth, 0, &lg) != LMF_OK) die("prefill");
        next[i] = (int32_t)((unsigned)(i * 131 + 7) % (unsigned)V), tp[i] = &next[i], n[i] = 1;
    }
    int windows = steps / 10;
    double *ms = malloc(sizeof(double) * (size_t)windows);
    for (int pass = 0; pass < 2; pass++) { /* pass 0 touches the pool's blocks; pass 1 is timed */
        for (int i = 0; i < rows; i++) lmf_session_rewind(s[i], depth);
        for (int k = 0; k < windows; k++) {
            double t0 = omp_get_wtime();
            for (int j = 0; j < 10; j++)
                if (lmf_session_step(s, tp, n, rows, logits, LMF_STEP_DECODE) != LMF_OK) die("decode step");
            ms[k] = (omp_get_wtime() - t0) * 1e3 / 10;
        }
    }
    qsort(ms, (size_t)windows, sizeof *ms, cmp_double);
    printf("lmforge model=%s threads=%d rows=%d depth=%d cache=%s step_ms_min=%.2f step_ms_median=%.2f tok_s=%.1f\n",
           argv[1], threads, rows, depth, kt == LMF_KV_F16 ? "f16" : "f32", ms[0], ms[windows / 2], rows * 1e3 / ms[0]);
    for (int i = 0; i < rows; i++) lmf_session_free(s[i]);
    lmf_kv_pool_free(pool);
    lmf_weights_free(w);
    free(s), free(toks), free(next), free(tp), free(n), free(logits), free(ms);
    return 0;
}
