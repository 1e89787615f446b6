/* cmd_perplexity.c — `lmforge perplexity -m MODEL -f TEXT`: how well a model predicts a text.
 *
 * The method is llama.cpp's llama-perplexity, so the numbers compare directly: the text is tokenized once (with
 * BOS when the model asks for it), cut into consecutive windows of --ctx tokens (a trailing partial window is
 * dropped); each window is evaluated from an empty cache, its first token replaced by BOS when the model adds
 * one, and only the second half of each window is scored (every scored token then has at least ctx/2 tokens of
 * context). PPL = exp(mean negative log-likelihood of the scored tokens). --all scores every position instead. */
#include "cli/cli.h"
#include "core/progress.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: lmforge perplexity -m MODEL -f TEXT [-c CTX] [-t THREADS] [--chunks N] [--all]\n\n"
               "Perplexity of MODEL over the text file TEXT, llama.cpp's method: windows of CTX tokens [512], the\n"
               "second half of each scored. --chunks N stops after N windows; --all scores every position.\n");
}

static double log_softmax_at(const float *x, int n, int k) {
    double m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - m);
    return (double)x[k] - m - log(s);
}

static lmf_status read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return lmf_fail(LMF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    lmf_text t = {0};
    char buf[1 << 16];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) lmf_text_push(&t, buf, r);
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(t.data);
        return lmf_fail(LMF_ERR_IO, "%s: read error", path);
    }
    *out = t.data ? t.data : calloc(1, 1);
    *len = t.len;
    return LMF_OK;
}

int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    int ctx = 512, threads = 0, max_chunks = 0, all = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--all")) {
            all = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "lmforge perplexity: %s needs a value (or unknown flag)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int *dst = NULL, lo = 1;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) file = v;
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) dst = &ctx, lo = 4;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) dst = &threads;
        else if (!strcmp(a, "--chunks")) dst = &max_chunks;
        else {
            fprintf(stderr, "lmforge perplexity: unknown flag %s\n", a);
            usage(stderr);
            return 2;
        }
        if (dst) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || end == v || x < lo || x > 1 << 20) {
                fprintf(stderr, "lmforge perplexity: %s expects an integer >= %d, got '%s'\n", a, lo, v);
                return 2;
            }
            *dst = (int)x;
        }
    }
    if (!model || !file) {
        usage(stderr);
        return 2;
    }
    if (threads > 0) omp_set_num_threads(threads);

    lmf_weights *w = NULL;
    lmf_session *s = NULL;
    char *text = NULL;
    size_t len = 0;
    lmf_ids ids = {0};
    lmf_status st = lmf_weights_load(model, &w);
    if (st == LMF_OK && !lmf_weights_tokenizer(w))
        st = lmf_fail(LMF_ERR_ARG, "%s: the model carries no tokenizer", model);
    if (st == LMF_OK) st = read_file(file, &text, &len);
    if (st == LMF_OK && ctx > lmf_weights_config(w)->max_seq_len)
        st = lmf_fail(LMF_ERR_ARG, "--ctx %d exceeds the model's context length %d", ctx,
                      lmf_weights_config(w)->max_seq_len);
    if (st == LMF_OK) st = lmf_session_create(w, ctx, &s);
    int rc = 0;
    if (st == LMF_OK) {
        int add_bos;
        int32_t bos = lmf_weights_bos(w, &add_bos);
        if (add_bos) {
            ids.data = malloc(sizeof(int32_t) * 256), ids.cap = 256;
            ids.data[ids.len++] = bos;
        }
        double t0 = lmf_now();
        lmf_tokenizer_encode(lmf_weights_tokenizer(w), text, len, 0, &ids);
        int V = lmf_weights_config(w)->vocab_size;
        long n_chunks = (long)(ids.len / (size_t)ctx);
        if (max_chunks > 0 && n_chunks > max_chunks) n_chunks = max_chunks;
        fprintf(stderr, "%s: %zu bytes, %zu tokens (%.2f s); %ld windows of %d tokens, scoring %s\n", file, len,
                ids.len, lmf_now() - t0, n_chunks, ctx, all ? "every position" : "the second half of each");
        if (n_chunks == 0) {
            st = lmf_fail(LMF_ERR_ARG, "%s: %zu tokens is less than one window of %d; lower --ctx", file, ids.len,
                          ctx);
        } else {
            double nll = 0, nll2 = 0;
            long count = 0;
            int32_t *win = malloc(sizeof(int32_t) * (size_t)ctx);
            lmf_progress bar;
            lmf_progress_start(&bar, 0, n_chunks, "windows");
            double t1 = lmf_now();
            for (long c = 0; c < n_chunks && st == LMF_OK; c++) {
                const int32_t *src = ids.data + (size_t)c * ctx;
                memcpy(win, src, sizeof(int32_t) * (size_t)ctx);
                if (add_bos) win[0] = bos;
                lmf_session_rewind(s, 0);
                const float *lg;
                int first = all ? 0 : ctx / 2;
                /* all logits of a window at once would be ctx x V floats; evaluate in slices instead */
                for (int i0 = 0; i0 < ctx && st == LMF_OK; i0 += 128) {
                    int n = ctx - i0 < 128 ? ctx - i0 : 128;
                    int need = i0 + n > first; /* any position in this slice scored? */
                    st = lmf_session_eval(s, win + i0, n, need, &lg);
                    if (st != LMF_OK || !need) continue;
                    for (int i = i0; i < i0 + n && i < ctx - 1; i++) {
                        if (i < first) continue;
                        double lp = log_softmax_at(lg + (size_t)(i - i0) * V, V, src[i + 1]);
                        nll -= lp, nll2 += lp * lp, count++;
                    }
                }
                char extra[64];
                snprintf(extra, sizeof extra, "ppl %.4f", exp(nll / (double)count));
                lmf_progress_update(&bar, c + 1, extra);
            }
            lmf_progress_finish(&bar);
            if (st == LMF_OK) {
                double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
                double se = sqrt(var > 0 ? var / (double)count : 0);
                double secs = lmf_now() - t1;
                printf("perplexity: %.4f +/- %.4f over %ld tokens (%ld windows of %d; %.1f tokens/s)\n", exp(mean),
                       exp(mean) * se, count, n_chunks, ctx, (double)n_chunks * ctx / secs);
            }
            free(win);
        }
    }
    if (st != LMF_OK) rc = cli_fail("perplexity", st);
    free(ids.data);
    free(text);
    lmf_session_free(s);
    lmf_weights_free(w);
    return rc;
}
