/* cmd_perplexity.c — `lmforge perplexity -m MODEL -f TEXT`: how well a model predicts a text.
 *
 * The method is llama.cpp's llama-perplexity, so the numbers compare directly: the text is tokenized once (with
 * BOS when the model asks for it), cut into consecutive windows of --ctx tokens (a trailing partial window is
 * dropped); each window is evaluated from an empty cache, its first token replaced by BOS when the model adds
 * one, and only the second half of each window is scored (every scored token then has at least ctx/2 tokens of
 * context). PPL = exp(mean negative log-likelihood of the scored tokens). --all scores every position instead. */
#include "cli/cli.h"
#include "core/status.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: lmforge perplexity -m MODEL -f TEXT [-c CTX] [-t THREADS] [--chunks N] [--all]\n\n"
               "Perplexity of MODEL over the text file TEXT, llama.cpp's method: windows of CTX tokens [512], the\n"
               "second half of each scored. --chunks N stops after N windows; --all scores every position.\n");
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
    char *text = NULL;
    size_t len = 0;
    lmf_ppl_result r;
    cli_term term = {0};
    lmf_status st = lmf_weights_load(model, &w);
    if (st == LMF_OK) st = cli_read_all(file, &text, &len);
    if (st == LMF_OK && (st = lmf_perplexity(w, text, len, ctx, max_chunks, all, cli_term_sink(&term), &r)) != LMF_OK) {
        /* its errors are about this model and this text (a context longer than the model's, say): name them */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        st = lmf_fail(st, "%s on %s: %s", model, file, msg);
    }
    int rc = 0;
    if (st == LMF_OK)
        printf("perplexity: %.4f +/- %.4f over %ld scored tokens (%ld windows of %d of the text's %ld tokens, %s; "
               "%.1f tokens/s)\n", r.ppl, r.se, r.scored, r.windows, ctx, r.tokens,
               all ? "every position" : "second half of each", r.tokens_per_s);
    else
        rc = cli_fail("perplexity", st);
    free(text);
    lmf_weights_free(w);
    return rc;
}
