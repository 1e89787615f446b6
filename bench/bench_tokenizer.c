/* bench_tokenizer.c — the tokenizer alone, single thread: encode throughput (MB/s) of each text file given, with a
 * fresh tokenizer per run (cold pre-token cache) and the median of the runs; decode throughput; and, with
 * --train N, BPE training time for an N-token vocabulary on all the files. The comparison with tiktoken and
 * Hugging Face `tokenizers` on the same texts is bench/bench_tokenizer.py, which calls the same library.
 *
 *   build/bench_tokenizer [-t TOKENIZER] [--runs R] [--train N] FILE...   (TOKENIZER default tests/data/gpt2) */
#include "lmforge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) exit(1);
    fclose(f);
    return b;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *tpath = "tests/data/gpt2";
    int runs = 5, train_vocab = 0, first = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) tpath = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--train") && i + 1 < argc) train_vocab = atoi(argv[++i]);
        else {
            first = i;
            break;
        }
    }
    if (first >= argc || runs < 1) {
        fprintf(stderr, "usage: bench_tokenizer [-t TOKENIZER] [--runs R] [--train N] FILE...\n");
        return 2;
    }
    printf("| file | MB | tokens | encode MB/s (median of %d, cold cache) | warm cache MB/s | decode MB/s |\n", runs);
    printf("|---|---|---|---|---|---|\n");
    for (int f = first; f < argc; f++) {
        size_t n;
        char *text = slurp(argv[f], &n);
        double *t = malloc(sizeof(double) * (size_t)runs), warm = 0, dec = 0;
        lmf_ids ids = {0};
        for (int r = 0; r < runs; r++) {
            lmf_tokenizer *tok;
            if (lmf_tokenizer_load(tpath, &tok) != LMF_OK) {
                fprintf(stderr, "%s\n", lmf_last_error());
                return 1;
            }
            ids.len = 0;
            double t0 = now_s();
            lmf_tokenizer_encode(tok, text, n, 0, &ids);
            t[r] = now_s() - t0;
            ids.len = 0;
            t0 = now_s();
            lmf_tokenizer_encode(tok, text, n, 0, &ids);
            double w = now_s() - t0;
            if (!r || w < warm) warm = w;
            lmf_text out = {0};
            t0 = now_s();
            lmf_tokenizer_decode(tok, ids.data, ids.len, 0, &out);
            double d = now_s() - t0;
            if (!r || d < dec) dec = d;
            if (out.len != n || memcmp(out.data, text, n)) fprintf(stderr, "ROUNDTRIP FAILED on %s\n", argv[f]);
            free(out.data);
            lmf_tokenizer_free(tok);
        }
        qsort(t, (size_t)runs, sizeof *t, cmp_d);
        printf("| %s | %.2f | %zu | %.1f | %.1f | %.0f |\n", argv[f], n / 1e6, ids.len, n / t[runs / 2] / 1e6,
               n / warm / 1e6, n / dec / 1e6);
        free(ids.data);
        free(t);
        free(text);
    }
    if (train_vocab) {
        lmf_bpe_train_config cfg = {.vocab_size = train_vocab, .n_special = 1,
                                    .special_tokens = (const char *const[]){"<|endoftext|>"}};
        lmf_bpe_trainer *tr;
        if (lmf_bpe_trainer_create(&cfg, &tr) != LMF_OK) {
            fprintf(stderr, "%s\n", lmf_last_error());
            return 1;
        }
        size_t total = 0;
        double t0 = now_s();
        for (int f = first; f < argc; f++) {
            size_t n;
            char *text = slurp(argv[f], &n);
            lmf_bpe_trainer_feed(tr, text, n);
            total += n;
            free(text);
        }
        double t1 = now_s();
        lmf_tokenizer *tok;
        lmf_status s = lmf_bpe_trainer_finish(tr, &tok);
        double t2 = now_s();
        lmf_bpe_trainer_free(tr);
        if (s != LMF_OK) return 1;
        printf("\ntraining %d tokens on %.2f MB: %.3f s (word counting %.3f s, merges + build %.3f s)\n",
               lmf_tokenizer_vocab_size(tok), total / 1e6, t2 - t0, t1 - t0, t2 - t1);
        lmf_tokenizer_free(tok);
    }
    return 0;
}
