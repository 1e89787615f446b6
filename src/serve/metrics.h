/* metrics.h — the server's counters and histograms, rendered as Prometheus text (GET /metrics).
 *
 * The HTTP side counts what it sees (responses by status code; each finished request's token counts and timings,
 * from the engine's DONE event); the engine's own state (queue, running sequences, KV blocks, batch size) is read
 * from lmf_engine_get_stats when the page is rendered, so nothing here polls. Thread-safe: one mutex, held for a
 * few additions. */
#ifndef LMF_SERVE_METRICS_H
#define LMF_SERVE_METRICS_H

#include "lmforge.h"
#include "serve/engine.h"

#include <pthread.h>

#define LMF_METRICS_BUCKETS 14

typedef struct {
    double bounds[LMF_METRICS_BUCKETS]; /* upper bounds, seconds (the +Inf bucket is count) */
    long counts[LMF_METRICS_BUCKETS];   /* observations <= bound (cumulative, as Prometheus wants them) */
    long count;
    double sum;
} lmf_histogram;

#define LMF_METRICS_CODES 12

typedef struct {
    pthread_mutex_t mu;
    int codes[LMF_METRICS_CODES]; /* the status codes the server sends, each with its counter */
    long by_code[LMF_METRICS_CODES];
    long requests_done; /* requests that reached the engine's DONE */
    long prompt_tokens, cached_tokens, gen_tokens;
    lmf_histogram ttft;  /* submit -> first token */
    lmf_histogram tpot;  /* mean time between a request's generated tokens after the first */
    lmf_histogram queue; /* submit -> admitted */
    lmf_histogram e2e;   /* submit -> done */
} lmf_metrics;

void lmf_metrics_init(lmf_metrics *m);
void lmf_metrics_destroy(lmf_metrics *m);
/* One response sent with status code. */
void lmf_metrics_count(lmf_metrics *m, int status);
/* One request ended (DONE event). */
void lmf_metrics_done(lmf_metrics *m, const lmf_engine_event *done);
/* The Prometheus text exposition (version 0.0.4) of everything, the engine's stats included when st is not NULL
 * (while the model loads there is no engine). Appends to *out. */
void lmf_metrics_render(lmf_metrics *m, const lmf_engine_stats *st, lmf_text *out);

#endif
