/* cmd_quantize.c — `lmforge quantize IN OUT --type T`: any loadable model -> a GGUF file with matrices in T
 * (norms and biases stay F32; each matrix's type chosen as llama-quantize chooses it, see export.c),
 * with the sizes before and after and, with --ppl FILE, the perplexity of both models on a held-out text. */
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/dtype.h"
#include "core/status.h"
#include "kernels/quant.h"
#include "io/gguf.h"
#include "model/export.h"
#include "model/weights.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static size_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

static void print_size(const char *what, const char *path, size_t file, size_t tensors, size_t params) {
    printf("%-7s %-60s file %8.2f MiB   weights %8.2f MiB   %.2f bits/weight\n", what, path, file / 1048576.0,
           tensors / 1048576.0, params ? 8.0 * tensors / params : 0.0);
}

/* a plain ggml type by name (any case) that quantize writes: --output-tensor-type and the like */
static lmf_status ggml_type_arg(const char *flag, const char *s, uint32_t *out) {
    for (uint32_t t = 0; t < 64; t++) {
        const char *n = lmf_ggml_type_name(t);
        if (n && !strcasecmp(n, s) && lmf_quantize_supported(t)) return *out = t, LMF_OK;
    }
    return lmf_fail(LMF_ERR_ARG, "%s %s: not a type quantize writes (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, "
                    "q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)", flag, s);
}

int cmd_quantize(int argc, char **argv) {
    const char *type_s = NULL, *ppl = NULL, *imx = NULL, *out_type = NULL, *embd_type = NULL, *pos[2];
    int ctx = 512, chunks = 0, threads = 0, n_pos = 0, pure = 0, leave_output = 0;
    const char **lists = calloc((size_t)argc * 3 + 3, sizeof *lists);
    cli_list rules = {lists, 0, argc}, incl = {lists + argc + 1, 0, argc}, excl = {lists + 2 * argc + 2, 0, argc};
    const cli_opt opts[] = {
        CLI_OPT(NULL, "--type", CLI_STR, &type_s, "TYPE",
                "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, or the K-quant mixes q2_k, q2_k_s (needs --imatrix), "
                "q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, and iq4_nl, iq4_xs (non-linear 4-bit) "
                "(ggml's quantizers and llama-quantize's choice of type per tensor: the same bytes as llama-quantize) "
                "(required)"),
        CLI_OPT(NULL, "--imatrix", CLI_STR, &imx, "FILE",
                "quantize under this importance matrix (`lmforge imatrix`, or llama-imatrix's .gguf / .dat): each "
                "column's error weighted by its mean squared input, the bytes `llama-quantize --imatrix` writes"),
        CLI_OPT(NULL, "--include-weights", CLI_LIST, &incl, "NAME",
                "use the importance matrix only for tensors whose name contains NAME (repeatable)"),
        CLI_OPT(NULL, "--exclude-weights", CLI_LIST, &excl, "NAME",
                "do not use it for tensors whose name contains NAME (repeatable)"),
        CLI_OPT(NULL, "--output-tensor-type", CLI_STR, &out_type, "T",
                "the output head's type (a tied embedding's too), a ggml type: f32, f16, bf16, q8_0, q4_0, q4_1, "
                "q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs", .def = "the file type's choice"),
        CLI_OPT(NULL, "--token-embedding-type", CLI_STR, &embd_type, "T", "the token embedding's type",
                .def = "the file type's choice"),
        CLI_OPT(NULL, "--tensor-type", CLI_LIST, &rules, "PATTERN=T",
                "tensors whose name matches PATTERN (an extended regular expression searched in the name, e.g. "
                "attn_v or 'blk\\.(0|1)\\.ffn_down') get type T, the first match winning (repeatable)"),
        CLI_OPT(NULL, "--pure", CLI_BOOL, &pure, NULL, "no K-mix rules: every matrix the file type's base type"),
        CLI_OPT(NULL, "--leave-output-tensor", CLI_BOOL, &leave_output, NULL, "keep output.weight as it is in IN"),
        CLI_OPT(NULL, "--ppl", CLI_STR, &ppl, "TEXT", "also the perplexity of IN and OUT on the text file TEXT"),
        CLI_OPT(NULL, "--ppl-ctx", CLI_INT, &ctx, "N", "perplexity window in tokens", .lo = 4),
        CLI_OPT(NULL, "--ppl-chunks", CLI_INT, &chunks, "N", "perplexity windows at most", .def = "all", .lo = 1),
        CLI_OPT("-t", "--threads", CLI_INT, &threads, "N", "threads", .def = "OMP_NUM_THREADS or all cores", .lo = 1),
    };
    cli_cmd c = {.cmd = "quantize", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]), .pos = pos,
                 .max_pos = 2, .n_pos = &n_pos,
                 .usage = "usage: lmforge quantize IN OUT --type TYPE [flags]\n\n"
                          "Writes the model IN (GGUF, Hugging Face folder or lmforge checkpoint; llama, smollm3, "
                          "qwen2, qwen3, olmoe, phi3, gemma3 or gpt2) as "
                          "the GGUF file\nOUT with its matrices in TYPE. Norms and biases stay F32; under the 2- to "
                          "6-bit types the output\nhead is Q6_K (Q8_0 when its rows are not a multiple of 256 wide), and "
                          "the K mixes give attn_v\nand ffn_down more bits in some layers, as llama-quantize does. "
                          "Prints the sizes before and after.\nWith --imatrix (see `lmforge imatrix`), the bytes "
                          "`llama-quantize --imatrix` writes.\n"};
    int r = cli_parse(&c, argc, argv);
    if (r > 0 && (n_pos < 2 || !type_s)) {
        fprintf(stderr, "lmforge quantize: need IN, OUT and --type TYPE (see --help)\n");
        r = 0;
    }
    if (r > 0 && incl.n && excl.n) {
        fprintf(stderr, "lmforge quantize: --include-weights and --exclude-weights cannot be used together\n");
        r = 0;
    }
    if (r <= 0) {
        free(lists);
        return r < 0 ? 0 : 2;
    }
    const char *in = pos[0], *out = pos[1];
    uint32_t type;
    lmf_tensor_type_rule *tr = calloc((size_t)rules.n + 1, sizeof *tr);
    lmf_export_opts eo = {.pure = pure, .leave_output = leave_output, .rules = tr, .n_rules = rules.n};
    lmf_status st = lmf_export_type_parse(type_s, &type);
    if (st == LMF_OK && out_type) st = ggml_type_arg("--output-tensor-type", out_type, &eo.output_type), eo.output_type_set = 1;
    if (st == LMF_OK && embd_type)
        st = ggml_type_arg("--token-embedding-type", embd_type, &eo.token_embd_type), eo.token_embd_type_set = 1;
    for (int i = 0; i < rules.n && st == LMF_OK; i++) {
        const char *eq = strchr(rules.v[i], '='); /* the first, as llama-quantize */
        if (!eq || eq == rules.v[i] || !eq[1]) {
            st = lmf_fail(LMF_ERR_ARG, "--tensor-type %s: expected PATTERN=TYPE", rules.v[i]);
            break;
        }
        size_t plen = (size_t)(eq - rules.v[i]);
        char *pat = malloc(plen + 1);
        memcpy(pat, rules.v[i], plen), pat[plen] = 0;
        tr[i].pattern = pat;
        st = ggml_type_arg("--tensor-type", eq + 1, &tr[i].type);
    }
    if (st != LMF_OK) {
        for (int i = 0; i < rules.n; i++) free((char *)tr[i].pattern);
        free(tr), free(lists);
        return cli_fail("quantize", st);
    }
    if (threads > 0) omp_set_num_threads(threads);
    lmf_weights *w = NULL, *q = NULL;
    lmf_imatrix *im = NULL;
    cli_term term = {0}; /* the progress bars of the conversion and of --ppl */
    char *text = NULL;
    size_t len = 0;
    if ((st = lmf_weights_open(in, &w)) != LMF_OK) goto done;
    if (imx && (st = lmf_imatrix_load(imx, &im)) != LMF_OK) goto done;
    if (im && incl.n) lmf_imatrix_select(im, incl.v, incl.n, 1);
    if (im && excl.n) lmf_imatrix_select(im, excl.v, excl.n, 0);
    if (ppl && (st = cli_read_all(ppl, &text, &len)) != LMF_OK) goto done;
    const char *name = NULL;
    if (w->gguf) {
        const lmf_gguf_kv *kv = lmf_gguf_find(w->gguf, "general.name");
        if (kv && kv->type == LMF_GGUF_STRING) name = kv->str;
    }
    eo.name = name, eo.sink = cli_term_sink(&term), eo.imatrix = im, eo.imatrix_file = imx;
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
    for (int i = 0; i < rules.n; i++) free((char *)tr[i].pattern);
    free(tr), free(lists);
    lmf_imatrix_free(im);
    lmf_weights_free(q);
    lmf_weights_free(w);
    return st == LMF_OK ? 0 : cli_fail("quantize", st);
}
