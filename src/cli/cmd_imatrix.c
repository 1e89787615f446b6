/* cmd_imatrix.c — `lmforge imatrix -m MODEL -f TEXT [-o FILE]`: llama-imatrix's importance matrix of MODEL over a
 * calibration text, for `lmforge quantize --imatrix` (and llama-quantize's). */
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/status.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_imatrix(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *out = "imatrix.gguf";
    int ctx = 512, threads = 0, max_chunks = 0, every = 10, resume = 0, process_output = 0;
    const cli_opt opts[] = {
        CLI_OPT("-m", "--model", CLI_STR, &model, "PATH", "GGUF file, Hugging Face folder or lmforge checkpoint"),
        CLI_OPT("-f", "--file", CLI_STR, &file, "TEXT", "the calibration text file (- = stdin)"),
        CLI_OPT("-o", "--output", CLI_STR, &out, "FILE", "where the matrix goes (llama.cpp's GGUF imatrix format)",
                .def = "imatrix.gguf"),
        CLI_OPT("-c", "--ctx", CLI_INT, &ctx, "N", "tokens per window", .lo = 16),
        CLI_OPT(NULL, "--chunks", CLI_INT, &max_chunks, "N", "N windows in all (a resumed file's included)",
                .def = "all", .lo = 1),
        CLI_OPT(NULL, "--output-frequency", CLI_INT, &every, "N",
                "write the matrix so far to FILE every N windows (0: only at the end)", .lo = 0),
        CLI_OPT(NULL, "--resume", CLI_BOOL, &resume, NULL,
                "continue FILE (-o), written by an earlier run on the same model, text and --ctx: its windows are "
                "skipped, its sums added to"),
        CLI_OPT(NULL, "--process-output", CLI_BOOL, &process_output, NULL,
                "also collect the output head's rows (output.weight; an untied head only, as llama-imatrix)"),
        CLI_OPT("-t", "--threads", CLI_INT, &threads, "N", "threads", .def = "OMP_NUM_THREADS or all cores", .lo = 1),
    };
    cli_cmd c = {.cmd = "imatrix", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]),
                 .usage = "usage: lmforge imatrix -m MODEL -f TEXT [-o FILE] [flags]\n\n"
                          "The importance matrix of MODEL over the text TEXT, as llama-imatrix makes it: the text in "
                          "windows of\n--ctx tokens (each from an empty cache, BOS first when the model uses one), and "
                          "for every\nlinear layer but the output head the sum of each input column's squares and the "
                          "rows summed (per\nexpert for a mixture's experts). Prints the perplexity of the windows' "
                          "second halves on the way.\nlmforge quantize takes FILE as its importance matrix. A long run writes "
                          "FILE every --output-frequency\nwindows; --resume continues it. See docs/formats.md.\n"};
    int pr = cli_parse(&c, argc, argv);
    if (pr > 0 && (!model || !file)) {
        fprintf(stderr, "lmforge imatrix: -m MODEL and -f TEXT are required (see --help)\n");
        pr = 0;
    }
    if (pr <= 0) return pr < 0 ? 0 : 2;
    if (threads > 0) omp_set_num_threads(threads);

    lmf_weights *w = NULL;
    lmf_imatrix *m = NULL, *prev = NULL;
    char *text = NULL;
    size_t len = 0;
    lmf_ppl_result r;
    cli_term term = {0};
    lmf_status st = lmf_weights_load(model, &w);
    if (st == LMF_OK) st = cli_read_all(file, &text, &len);
    if (st == LMF_OK && resume) st = lmf_imatrix_load(out, &prev);
    lmf_imatrix_params ip = {.ctx = ctx, .max_chunks = max_chunks, .dataset = file, .process_output = process_output,
                             .resume = prev, .save_path = out, .save_every = every};
    if (st == LMF_OK && (st = lmf_imatrix_compute(w, text, len, &ip, cli_term_sink(&term), &m, &r)) != LMF_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        st = lmf_fail(st, "%s on %s: %s", model, file, msg);
    }
    if (st == LMF_OK) st = lmf_imatrix_save(m, out);
    int rc = 0;
    if (st == LMF_OK)
        printf("imatrix: %d entries over %d windows of %d tokens (%ld run now, %.1f tokens/s) -> %s; perplexity of "
               "those %.4f +/- %.4f\n", lmf_imatrix_entries(m), lmf_imatrix_chunks(m), ctx, r.windows,
               r.tokens_per_s, out, r.ppl, r.se);
    else
        rc = cli_fail("imatrix", st);
    lmf_imatrix_free(m);
    lmf_imatrix_free(prev);
    free(text);
    lmf_weights_free(w);
    return rc;
}
