/* sampler.c — choosing the next token from logits (see lmforge.h for the order of the steps).
 *
 * Candidates are kept as (id, logit) pairs; top-k partially sorts them (only the k best are ever ordered), so a
 * 50k vocabulary costs one pass plus O(k log k) instead of a full sort. Without top-k, top-p / min-p sort all
 * candidates. Every step keeps at least one token, so the draw is always defined. */
#include "core/alloc.h"
#include "core/rng.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t id;
    float logit;
} cand;

struct lmf_sampler {
    lmf_sampler_params p;
    int n_vocab;
    lmf_rng rng;
    cand *c;
};

lmf_sampler_params lmf_sampler_defaults(void) {
    lmf_sampler_params p = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                            .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
    return p;
}

lmf_status lmf_sampler_create(const lmf_sampler_params *p, int n_vocab, lmf_sampler **out) {
    *out = NULL;
    if (!(p->temperature >= 0)) return lmf_fail(LMF_ERR_ARG, "temperature %g must be >= 0", p->temperature);
    if (p->top_k < 0) return lmf_fail(LMF_ERR_ARG, "top-k %d must be >= 0 (0 turns it off)", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1)) return lmf_fail(LMF_ERR_ARG, "top-p %g must be in (0, 1]", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1)) return lmf_fail(LMF_ERR_ARG, "min-p %g must be in [0, 1]", p->min_p);
    if (!(p->repeat_penalty > 0)) return lmf_fail(LMF_ERR_ARG, "repeat penalty %g must be > 0", p->repeat_penalty);
    if (p->repeat_last_n < 0) return lmf_fail(LMF_ERR_ARG, "repeat-last-n %d must be >= 0", p->repeat_last_n);
    if (n_vocab <= 0) return lmf_fail(LMF_ERR_ARG, "vocabulary size %d", n_vocab);
    lmf_sampler *s = lmf_xcalloc(1, sizeof *s);
    s->p = *p;
    s->n_vocab = n_vocab;
    lmf_rng_seed(&s->rng, p->seed, 0x5eed);
    s->c = lmf_xmalloc((size_t)n_vocab * sizeof *s->c);
    *out = s;
    return LMF_OK;
}

void lmf_sampler_free(lmf_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s);
}

static int by_logit_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Moves the k best candidates to the front, sorted (quickselect, then a sort of the k). */
static void top_k(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (by_logit_desc(&c[i], &pivot) < 0) i++;
            while (by_logit_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    qsort(c, (size_t)k, sizeof *c, by_logit_desc);
}

float lmf_logprobs(const float *lg, int V, int32_t id, int k, lmf_token_logprob *top) {
    float mx = lg[0];
    for (int i = 1; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)lg[i] - mx);
    float lse = mx + (float)log(sum);
    int n = 0; /* insertion into a sorted list of k: ties keep the lower id first */
    for (int i = 0; i < V && k > 0; i++) {
        if (n == k && lg[i] <= top[n - 1].logprob) continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && top[j - 1].logprob < lg[i]) top[j] = top[j - 1], j--;
        top[j] = (lmf_token_logprob){i, lg[i]};
    }
    for (int j = 0; j < n; j++) top[j].logprob -= lse;
    return id >= 0 && id < V ? lg[id] - lse : -INFINITY;
}

int32_t lmf_sampler_sample(lmf_sampler *s, float *logits, const int32_t *history, int n_history) {
    const lmf_sampler_params *p = &s->p;
    int V = s->n_vocab;
    if (p->repeat_penalty != 1.0f && n_history > 0) {
        /* each distinct recent token penalised once, as llama.cpp does */
        int from = n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        for (int i = from; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= V) continue;
            int seen = 0;
            for (int j = from; j < i && !seen; j++) seen = history[j] == t;
            if (seen) continue;
            logits[t] = logits[t] > 0 ? logits[t] / p->repeat_penalty : logits[t] * p->repeat_penalty;
        }
    }
    if (p->temperature == 0.0f) {
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    cand *c = s->c;
    for (int i = 0; i < V; i++) c[i].id = i, c[i].logit = logits[i];
    int n = V;
    if (p->top_k > 0 && p->top_k < n) {
        top_k(c, n, p->top_k);
        n = p->top_k;
    } else if (p->top_p < 1.0f || p->min_p > 0.0f) {
        qsort(c, (size_t)n, sizeof *c, by_logit_desc);
    } else {
        /* no truncation: only the maximum is needed for a stable softmax */
        int b = 0;
        for (int i = 1; i < n; i++)
            if (c[i].logit > c[b].logit) b = i;
        cand t = c[0];
        c[0] = c[b];
        c[b] = t;
    }
    /* probabilities at temperature 1 decide top-p and min-p (llama.cpp applies temperature last) */
    double max = c[0].logit, sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)c[i].logit - max);
    if (p->top_p < 1.0f) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += exp((double)c[i].logit - max) / sum;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (p->min_p > 0.0f) {
        /* p_i >= min_p * p_max  <=>  logit_i >= max + log(min_p) */
        double cut = max + log((double)p->min_p);
        int keep = 1;
        while (keep < n && c[keep].logit >= cut) keep++;
        n = keep;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += exp(((double)c[i].logit - max) / p->temperature);
    double r = lmf_rng_uniform(&s->rng) * total, acc = 0;
    int last = 0; /* the last candidate with any weight: a masked (-inf) one is never drawn, not even by rounding */
    for (int i = 0; i < n; i++) {
        double w = exp(((double)c[i].logit - max) / p->temperature);
        acc += w;
        if (w > 0) last = i;
        if (r < acc) return c[i].id;
    }
    return c[last].id;
}
