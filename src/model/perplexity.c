/* perplexity.c — lmf_perplexity (see lmforge.h): llama.cpp's windowed method, so the numbers compare directly. */
#include "core/log.h"
#include "core/progress.h" /* lmf_now */
#include "core/status.h"
#include "lmforge.h"
#include "model/infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLICE 128 /* positions evaluated per call at most: all logits of a window at once would be ctx x V floats */

static double log_softmax_at(const float *x, int n, int k) {
    double m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - m);
    return (double)x[k] - m - log(s);
}

lmf_status lmf_perplexity(const lmf_weights *w, const char *text, size_t len, int ctx, int max_windows,
                          int all_positions, const lmf_sink *sink, lmf_ppl_result *out) {
    return lmf_perplexity_observed(w, text, len, ctx, max_windows, all_positions, sink, NULL, out);
}

lmf_status lmf_perplexity_observed(const lmf_weights *w, const char *text, size_t len, int ctx, int max_windows,
                                   int all_positions, const lmf_sink *sink, const lmf_ppl_observer *ob,
                                   lmf_ppl_result *out) {
    static const lmf_ppl_observer none;
    if (!ob) ob = &none;
    memset(out, 0, sizeof *out);
    const lmf_model_config *c = lmf_weights_config(w);
    const lmf_tokenizer *tok = lmf_weights_tokenizer(w);
    if (!tok) return lmf_fail(LMF_ERR_ARG, "the model carries no tokenizer (perplexity needs one)");
    if (ctx < 4 || ctx > c->max_seq_len)
        return lmf_fail(LMF_ERR_ARG, "context %d must be in [4, %d] (the model's context length)", ctx,
                        c->max_seq_len);
    int add_bos;
    int32_t bos = lmf_weights_bos(w, &add_bos);
    lmf_ids ids = {0};
    if (add_bos) {
        ids.data = malloc(sizeof(int32_t)), ids.cap = 1;
        ids.data[ids.len++] = bos;
    }
    lmf_status es = lmf_tokenizer_encode(tok, text, len, 0, &ids);
    if (es != LMF_OK) {
        free(ids.data);
        return es;
    }
    long n_windows = (long)(ids.len / (size_t)ctx);
    if (max_windows > 0 && n_windows > max_windows) n_windows = max_windows;
    out->tokens = (long)ids.len;
    if (n_windows == 0) {
        free(ids.data);
        return lmf_fail(LMF_ERR_ARG, "the text has %zu tokens, less than one window of %d", ids.len, ctx);
    }
    lmf_session *s;
    lmf_status st = lmf_session_create(w, ctx, &s);
    if (st != LMF_OK) {
        free(ids.data);
        return st;
    }
    lmf_session_set_observer(s, ob->observe, ob->user);
    long k0 = ob->skip;
    if (k0 >= n_windows) {
        free(ids.data);
        lmf_session_free(s);
        return lmf_fail(LMF_ERR_ARG, "%ld windows of %d already done: the text has %ld, --chunks allows %ld", k0, ctx,
                        (long)(ids.len / (size_t)ctx), n_windows);
    }
    /* slices of at most SLICE positions, as even as they go: none so short that it takes the decode path, which
     * the observer does not see (ctx a multiple of SLICE: SLICE each) */
    int V = c->vocab_size, first = all_positions ? 0 : ctx / 2, n_slices = (ctx + SLICE - 1) / SLICE;
    double nll = 0, nll2 = 0;
    long count = 0;
    int32_t *win = malloc(sizeof(int32_t) * (size_t)ctx);
    lmf_sink_progress(sink, LMF_PROGRESS_BEGIN, k0, n_windows, "windows", NULL);
    double t0 = lmf_now();
    for (long k = k0; k < n_windows && st == LMF_OK; k++) {
        const int32_t *src = ids.data + (size_t)k * ctx;
        memcpy(win, src, sizeof(int32_t) * (size_t)ctx);
        if (add_bos) win[0] = bos;
        lmf_session_rewind(s, 0);
        for (int sl = 0; sl < n_slices && st == LMF_OK; sl++) {
            int i0 = (int)((long)sl * ctx / n_slices), n = (int)((long)(sl + 1) * ctx / n_slices) - i0;
            int scored = i0 + n > first, logits = scored || ob->all_logits;
            const float *lg;
            st = lmf_session_eval(s, win + i0, n, logits, &lg);
            if (st != LMF_OK || !scored) continue;
            for (int i = i0 > first ? i0 : first; i < i0 + n && i < ctx - 1; i++) {
                double lp = log_softmax_at(lg + (size_t)(i - i0) * V, V, src[i + 1]);
                nll -= lp, nll2 += lp * lp, count++;
            }
        }
        if (st == LMF_OK && ob->after_window) st = ob->after_window(ob->user, k);
        if (sink && sink->progress && st == LMF_OK) {
            char status[48];
            snprintf(status, sizeof status, "ppl %.4f", exp(nll / (double)count));
            lmf_sink_progress(sink, LMF_PROGRESS_UPDATE, k + 1, n_windows, "windows", status);
        }
    }
    lmf_sink_progress(sink, LMF_PROGRESS_END, n_windows, n_windows, "windows", NULL);
    double secs = lmf_now() - t0;
    if (st == LMF_OK) {
        double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
        out->ppl = exp(mean);
        out->se = out->ppl * sqrt(var > 0 ? var / (double)count : 0);
        out->scored = count;
        out->windows = n_windows - k0;
        out->tokens_per_s = (double)(n_windows - k0) * ctx / secs;
    }
    free(win);
    free(ids.data);
    lmf_session_free(s);
    return st;
}
