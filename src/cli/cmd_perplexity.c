/* cmd_perplexity.c — `lmforge perplexity -m MODEL -f TEXT`: how well a model predicts a text.
 *
 * The method is llama.cpp's llama-perplexity, so the numbers compare directly: the text is tokenized once (with
 * BOS when the model asks for it), cut into consecutive windows of --ctx tokens (a trailing partial window is
 * dropped); each window is evaluated from an empty cache, its first token replaced by BOS when the model adds
 * one, and only the second half of each window is scored (every scored token then has at least ctx/2 tokens of
 * context). PPL = exp(mean negative log-likelihood of the scored tokens). --all scores every position instead. */
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --verbose-prompt: the text's token count and the first window as it is evaluated (tokenized as lmf_perplexity
 * does: BOS first when the model adds one, special-token text as plain text; the window's first token is BOS). */
static void print_first_window(const lmf_weights *w, const char *text, size_t len, int ctx) {
    const lmf_tokenizer *tok = lmf_weights_tokenizer(w);
    if (!tok) return;
    int add_bos;
    int32_t bos = lmf_weights_bos(w, &add_bos);
    lmf_ids ids = {0};
    if (add_bos) lmf_ids_push(&ids, &bos, 1);
    if (lmf_tokenizer_encode(tok, text, len, 0, &ids) != LMF_OK) { /* lmf_perplexity reports it next */
        free(ids.data);
        return;
    }
    size_t n = ids.len < (size_t)ctx ? ids.len : (size_t)ctx;
    if (add_bos && n) ids.data[0] = bos;
    fprintf(stderr, "text: %zu tokens; the first window (%zu tokens) as the model sees it:\n", ids.len, n);
    lmf_text piece = {0};
    for (size_t i = 0; i < n; i++) {
        piece.len = 0;
        lmf_tokenizer_decode(tok, &ids.data[i], 1, 0, &piece);
        fprintf(stderr, "%8d -> \"", ids.data[i]);
        for (size_t k = 0; k < piece.len; k++) {
            unsigned char c = (unsigned char)piece.data[k];
            if (c == '"' || c == '\\') fprintf(stderr, "\\%c", c);
            else if (c == '\n') fputs("\\n", stderr);
            else if (c < 0x20 || c == 0x7f) fprintf(stderr, "\\x%02x", c);
            else fputc(c, stderr);
        }
        fputs("\"\n", stderr);
    }
    free(piece.data);
    free(ids.data);
}

int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    int ctx = 512, threads = 0, max_chunks = 0, all = 0, verbose_prompt = 0;
    const cli_opt opts[] = {
        CLI_OPT("-m", "--model", CLI_STR, &model, "PATH", "GGUF file, Hugging Face folder or lmforge checkpoint"),
        CLI_OPT("-f", "--file", CLI_STR, &file, "TEXT", "the text file (- = stdin)"),
        CLI_OPT("-c", "--ctx", CLI_INT, &ctx, "N", "tokens per window", .lo = 4),
        CLI_OPT("-t", "--threads", CLI_INT, &threads, "N", "threads", .def = "OMP_NUM_THREADS or all cores", .lo = 1),
        CLI_OPT(NULL, "--chunks", CLI_INT, &max_chunks, "N", "stop after N windows", .def = "all", .lo = 1),
        CLI_OPT(NULL, "--all", CLI_BOOL, &all, NULL, "score every position, not only the second half of each window"),
        CLI_OPT(NULL, "--verbose-prompt", CLI_BOOL, &verbose_prompt, NULL,
                "print the text's token count and the first window's token ids and texts to stderr"),
    };
    cli_cmd c = {.cmd = "perplexity", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]),
                 .usage = "usage: lmforge perplexity -m MODEL -f TEXT [flags]\n\n"
                          "Perplexity of MODEL over the text file TEXT, llama.cpp's method: consecutive windows of "
                          "--ctx tokens,\neach evaluated from an empty cache, the second half of each scored.\n"};
    int pr = cli_parse(&c, argc, argv);
    if (pr > 0 && (!model || !file)) {
        fprintf(stderr, "lmforge perplexity: -m MODEL and -f TEXT are required (see --help)\n");
        pr = 0;
    }
    if (pr <= 0) return pr < 0 ? 0 : 2;
    if (threads > 0) omp_set_num_threads(threads);

    lmf_weights *w = NULL;
    char *text = NULL;
    size_t len = 0;
    lmf_ppl_result r;
    cli_term term = {0};
    lmf_status st = lmf_weights_load(model, &w);
    if (st == LMF_OK) st = cli_read_all(file, &text, &len);
    if (st == LMF_OK && verbose_prompt) print_first_window(w, text, len, ctx);
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
