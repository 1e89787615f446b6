/* cmd_quantize.c — `lmforge quantize IN OUT --type T`: any loadable model -> a GGUF file with matrices in T
 * (norms and biases stay F32, embeddings and the output head stay 8-bit under 4/5-bit types, as llama.cpp does),
 * with the sizes before and after and, with --ppl FILE, the perplexity of both models on a held-out text. */
#include "cli/cli.h"
#include "io/gguf.h"
#include "model/export.h"
#include "model/weights.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f, "usage: lmforge quantize IN OUT --type TYPE [--ppl TEXT] [--ppl-ctx N] [--ppl-chunks N] [-t N]\n\n"
               "Writes the model IN (GGUF, Hugging Face folder or lmforge checkpoint; llama or gpt2) as the GGUF file\n"
               "OUT with its matrices in TYPE: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 (ggml's rounding, so\n"
               "llama.cpp reads the same values). Norms and biases stay F32; under 4- and 5-bit types the token\n"
               "embedding and output head are Q8_0. Prints the sizes before and after; with --ppl TEXT also the\n"
               "perplexity of IN and OUT on TEXT (windows of --ppl-ctx tokens [512], at most --ppl-chunks [all]).\n");
}

static size_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

static void print_size(const char *what, const char *path, size_t file, size_t tensors, size_t params) {
    printf("%-7s %-60s file %8.2f MiB   weights %8.2f MiB   %.2f bits/weight\n", what, path, file / 1048576.0,
           tensors / 1048576.0, params ? 8.0 * tensors / params : 0.0);
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type_s = NULL, *ppl = NULL;
    int ctx = 512, chunks = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (a[0] == '-') {
            if (i + 1 >= argc) {
                fprintf(stderr, "lmforge quantize: %s needs a value (or unknown flag)\n", a);
                return 2;
            }
            const char *v = argv[++i];
            int *num = NULL;
            if (!strcmp(a, "--type")) type_s = v;
            else if (!strcmp(a, "--ppl")) ppl = v;
            else if (!strcmp(a, "--ppl-ctx")) num = &ctx;
            else if (!strcmp(a, "--ppl-chunks")) num = &chunks;
            else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) num = &threads;
            else {
                fprintf(stderr, "lmforge quantize: unknown flag %s\n", a);
                return 2;
            }
            if (num) {
                char *end;
                long x = strtol(v, &end, 10);
                if (*end || end == v || x < 0 || x > 1 << 20) {
                    fprintf(stderr, "lmforge quantize: %s expects a non-negative integer, got '%s'\n", a, v);
                    return 2;
                }
                *num = (int)x;
            }
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            fprintf(stderr, "lmforge quantize: unexpected argument %s\n", a);
            return 2;
        }
    }
    if (!in || !out || !type_s) {
        usage(stderr);
        return 2;
    }
    uint32_t type;
    lmf_status st = lmf_export_type_parse(type_s, &type);
    if (st != LMF_OK) return cli_fail("quantize", st);
    if (threads > 0) omp_set_num_threads(threads);
    lmf_weights *w = NULL, *q = NULL;
    char *text = NULL;
    size_t len = 0;
    if ((st = lmf_weights_load(in, &w)) != LMF_OK) return cli_fail("quantize", st);
    if (ppl && (st = cli_read_all(ppl, &text, &len)) != LMF_OK) goto done;
    const char *name = NULL;
    if (w->gguf) {
        const lmf_gguf_kv *kv = lmf_gguf_find(w->gguf, "general.name");
        if (kv && kv->type == LMF_GGUF_STRING) name = kv->str;
    }
    if ((st = lmf_export_gguf(w, out, type, name)) != LMF_OK) goto done;
    if ((st = lmf_weights_load(out, &q)) != LMF_OK) goto done;
    size_t params = lmf_weights_matrix_params(w);
    print_size("input", in, w->file_bytes, lmf_weights_bytes(w), params);
    print_size("output", out, file_size(out), lmf_weights_bytes(q), params);
    printf("weights: %.1f%% of the input's (%+.1f%%); matrices in %s\n",
           100.0 * lmf_weights_bytes(q) / lmf_weights_bytes(w),
           100.0 * ((double)lmf_weights_bytes(q) - (double)lmf_weights_bytes(w)) / lmf_weights_bytes(w),
           lmf_ggml_type_name(type));
    if (ppl) {
        lmf_ppl_result a, b;
        cli_term term = {0};
        if ((st = lmf_perplexity(w, text, len, ctx, chunks, 0, cli_term_sink(&term), &a)) != LMF_OK) goto done;
        if ((st = lmf_perplexity(q, text, len, ctx, chunks, 0, cli_term_sink(&term), &b)) != LMF_OK) goto done;
        printf("perplexity on %s (%ld windows of %d, %ld scored tokens): input %.4f +/- %.4f, output %.4f +/- %.4f "
               "(%+.2f%%)\n", ppl, a.windows, ctx, a.scored, a.ppl, a.se, b.ppl, b.se, 100.0 * (b.ppl - a.ppl) / a.ppl);
    }
done:
    free(text);
    lmf_weights_free(q);
    lmf_weights_free(w);
    return st == LMF_OK ? 0 : cli_fail("quantize", st);
}
