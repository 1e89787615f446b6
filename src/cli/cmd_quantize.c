/* cmd_quantize.c — `lmforge quantize IN OUT --type T`: any loadable model -> a GGUF file with matrices in T
 * (norms and biases stay F32; each matrix's type chosen as llama-quantize chooses it, see export.c),
 * with the sizes before and after and, with --ppl FILE, the perplexity of both models on a held-out text. */
#include "cli/cli.h"
#include "cli/opts.h"
#include "io/gguf.h"
#include "model/export.h"
#include "model/weights.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static size_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

static void print_size(const char *what, const char *path, size_t file, size_t tensors, size_t params) {
    printf("%-7s %-60s file %8.2f MiB   weights %8.2f MiB   %.2f bits/weight\n", what, path, file / 1048576.0,
           tensors / 1048576.0, params ? 8.0 * tensors / params : 0.0);
}

int cmd_quantize(int argc, char **argv) {
    const char *type_s = NULL, *ppl = NULL, *imx = NULL, *pos[2];
    int ctx = 512, chunks = 0, threads = 0, n_pos = 0;
    const cli_opt opts[] = {
        CLI_OPT(NULL, "--type", CLI_STR, &type_s, "TYPE",
                "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, or the K-quant mixes q4_k_s, q4_k_m, q5_k_s, q5_k_m, "
                "q6_k (ggml's quantizers and llama-quantize's choice of type per tensor: the same bytes as "
                "llama-quantize) (required)"),
        CLI_OPT(NULL, "--imatrix", CLI_STR, &imx, "FILE",
                "quantize under this importance matrix (`lmforge imatrix`, or llama-imatrix's .gguf / .dat): each "
                "column's error weighted by its mean squared input, the bytes `llama-quantize --imatrix` writes"),
        CLI_OPT(NULL, "--ppl", CLI_STR, &ppl, "TEXT", "also the perplexity of IN and OUT on the text file TEXT"),
        CLI_OPT(NULL, "--ppl-ctx", CLI_INT, &ctx, "N", "perplexity window in tokens", .lo = 4),
        CLI_OPT(NULL, "--ppl-chunks", CLI_INT, &chunks, "N", "perplexity windows at most", .def = "all", .lo = 1),
        CLI_OPT("-t", "--threads", CLI_INT, &threads, "N", "threads", .def = "OMP_NUM_THREADS or all cores", .lo = 1),
    };
    cli_cmd c = {.cmd = "quantize", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]), .pos = pos,
                 .max_pos = 2, .n_pos = &n_pos,
                 .usage = "usage: lmforge quantize IN OUT --type TYPE [flags]\n\n"
                          "Writes the model IN (GGUF, Hugging Face folder or lmforge checkpoint; llama, qwen2, qwen3, olmoe or gpt2) as "
                          "the GGUF file\nOUT with its matrices in TYPE. Norms and biases stay F32; under the 4- to "
                          "6-bit types the output\nhead is Q6_K (Q8_0 when its rows are not a multiple of 256 wide), and "
                          "the K mixes give attn_v\nand ffn_down more bits in some layers, as llama-quantize does. "
                          "Prints the sizes before and after.\nWith --imatrix (see `lmforge imatrix`), the bytes "
                          "`llama-quantize --imatrix` writes.\n"};
    int r = cli_parse(&c, argc, argv);
    if (r > 0 && (n_pos < 2 || !type_s)) {
        fprintf(stderr, "lmforge quantize: need IN, OUT and --type TYPE (see --help)\n");
        r = 0;
    }
    if (r <= 0) return r < 0 ? 0 : 2;
    const char *in = pos[0], *out = pos[1];
    uint32_t type;
    lmf_status st = lmf_export_type_parse(type_s, &type);
    if (st != LMF_OK) return cli_fail("quantize", st);
    if (threads > 0) omp_set_num_threads(threads);
    lmf_weights *w = NULL, *q = NULL;
    lmf_imatrix *im = NULL;
    cli_term term = {0}; /* the progress bars of the conversion and of --ppl */
    char *text = NULL;
    size_t len = 0;
    if ((st = lmf_weights_open(in, &w)) != LMF_OK) return cli_fail("quantize", st);
    if (imx && (st = lmf_imatrix_load(imx, &im)) != LMF_OK) goto done;
    if (ppl && (st = cli_read_all(ppl, &text, &len)) != LMF_OK) goto done;
    const char *name = NULL;
    if (w->gguf) {
        const lmf_gguf_kv *kv = lmf_gguf_find(w->gguf, "general.name");
        if (kv && kv->type == LMF_GGUF_STRING) name = kv->str;
    }
    lmf_export_opts eo = {.name = name, .sink = cli_term_sink(&term), .imatrix = im, .imatrix_file = imx};
    if ((st = lmf_export_gguf_opts(w, out, type, &eo)) != LMF_OK) goto done;
    if ((st = lmf_weights_open(out, &q)) != LMF_OK) goto done; /* its sizes; the decode layout only to run it */
    size_t params = lmf_weights_matrix_params(w);
    print_size("input", in, w->file_bytes, lmf_weights_bytes(w), params);
    print_size("output", out, file_size(out), lmf_weights_bytes(q), params);
    printf("weights: %.1f%% of the input's (%+.1f%%); matrices in %s\n",
           100.0 * lmf_weights_bytes(q) / lmf_weights_bytes(w),
           100.0 * ((double)lmf_weights_bytes(q) - (double)lmf_weights_bytes(w)) / lmf_weights_bytes(w),
           lmf_export_type_name(type));
    if (ppl) {
        lmf_weights_prepare_decode(w), lmf_weights_prepare_decode(q);
        lmf_ppl_result a, b;
        if ((st = lmf_perplexity(w, text, len, ctx, chunks, 0, cli_term_sink(&term), &a)) != LMF_OK) goto done;
        if ((st = lmf_perplexity(q, text, len, ctx, chunks, 0, cli_term_sink(&term), &b)) != LMF_OK) goto done;
        printf("perplexity on %s (%ld windows of %d, %ld scored tokens): input %.4f +/- %.4f, output %.4f +/- %.4f "
               "(%+.2f%%)\n", ppl, a.windows, ctx, a.scored, a.ppl, a.se, b.ppl, b.se, 100.0 * (b.ppl - a.ppl) / a.ppl);
    }
done:
    free(text);
    lmf_imatrix_free(im);
    lmf_weights_free(q);
    lmf_weights_free(w);
    return st == LMF_OK ? 0 : cli_fail("quantize", st);
}
