/* generate.c — the smallest complete use of the installed library: load a model, continue a prompt greedily and
 * stream the text. It includes only <lmforge.h> (the public API) and builds against an installed lmforge:
 *
 *   cc examples/generate.c $(pkg-config --cflags --libs lmforge) -o generate
 *   ./generate MODEL "The capital of France is" 16
 *
 * MODEL is anything lmf_weights_load takes (a GGUF file, a Hugging Face folder, an lmforge checkpoint) as long as
 * it carries a tokenizer. The output is the prompt, then up to N generated tokens (fewer when the model emits its
 * end-of-text token or the context is full), then a newline: the same text as
 * `lmforge generate -m MODEL -p PROMPT -n N --temp 0`. */
#include <lmforge.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints the failed call and the library's message (which names the file or field at fault). */
static int fail(const char *what, lmf_status st) {
    fprintf(stderr, "generate: %s: %s (%s)\n", what, lmf_last_error(), lmf_status_name(st));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL PROMPT [N_TOKENS (default 32)]\n", argv[0]);
        return 2;
    }
    const char *model = argv[1], *prompt = argv[2];
    int n_predict = argc == 4 ? atoi(argv[3]) : 32;
    if (n_predict < 1) {
        fprintf(stderr, "generate: N_TOKENS must be a positive integer, got '%s'\n", argv[3]);
        return 2;
    }

    lmf_weights *w = NULL;
    lmf_session *s = NULL;
    lmf_sampler *smp = NULL;
    lmf_tokenizer_decoder *dec = NULL;
    lmf_ids ids = {0}; /* the prompt's tokens, then each generated one */
    lmf_text piece = {0};
    float *logits = NULL;
    lmf_status st;
    int rc = 1;

    if ((st = lmf_weights_load(model, &w)) != LMF_OK) {
        rc = fail("lmf_weights_load", st);
        goto done;
    }
    const lmf_tokenizer *tok = lmf_weights_tokenizer(w);
    if (!tok) {
        fprintf(stderr, "generate: %s carries no tokenizer (a Hugging Face folder needs tokenizer.json)\n", model);
        goto done;
    }

    /* The prompt's ids: BOS first when the model wants one, then the text (special-token text stays text). */
    int add_bos;
    int32_t bos = lmf_weights_bos(w, &add_bos);
    if (add_bos) {
        ids.data = malloc(sizeof *ids.data);
        ids.data[0] = bos;
        ids.len = ids.cap = 1;
    }
    lmf_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids);
    if (ids.len == 0) {
        fprintf(stderr, "generate: the prompt is empty\n");
        goto done;
    }
    /* One session (KV cache) for the prompt and the reply; lmf_session_create caps n_ctx at the model's limit. */
    if ((st = lmf_session_create(w, (int)ids.len + n_predict, &s)) != LMF_OK) {
        rc = fail("lmf_session_create", st);
        goto done;
    }
    int V = lmf_weights_config(w)->vocab_size;
    lmf_sampler_params sp = lmf_sampler_defaults();
    sp.temperature = 0; /* greedy: the most likely token every time, ties to the lowest id */
    if ((st = lmf_sampler_create(&sp, V, &smp)) != LMF_OK) {
        rc = fail("lmf_sampler_create", st);
        goto done;
    }
    int32_t stop[4];
    int n_stop = lmf_weights_stop_tokens(w, stop);
    dec = lmf_tokenizer_decoder_create(tok, LMF_DECODE_SKIP_SPECIAL);
    logits = malloc(sizeof(float) * (size_t)V);
    if (!dec || !logits) goto done;

    fputs(prompt, stdout);
    fflush(stdout);
    const float *lg; /* the last token's logits, valid until the next lmf_session_eval */
    if ((st = lmf_session_eval(s, ids.data, (int)ids.len, 0, &lg)) != LMF_OK) {
        rc = fail("lmf_session_eval (prompt)", st);
        goto done;
    }
    for (int i = 0; i < n_predict; i++) {
        memcpy(logits, lg, sizeof(float) * (size_t)V); /* the sampler modifies its input */
        int32_t next = lmf_sampler_sample(smp, logits, ids.data, (int)ids.len);
        int is_stop = 0;
        for (int k = 0; k < n_stop; k++) is_stop |= next == stop[k];
        if (is_stop) break;
        if (ids.len == ids.cap) {
            ids.cap = ids.cap ? 2 * ids.cap : 64;
            ids.data = realloc(ids.data, ids.cap * sizeof *ids.data);
        }
        ids.data[ids.len++] = next;
        /* The decoder holds back a UTF-8 character split across tokens until it is complete. */
        piece.len = 0;
        if ((st = lmf_tokenizer_decoder_feed(dec, &next, 1, &piece)) != LMF_OK) {
            rc = fail("lmf_tokenizer_decoder_feed", st);
            goto done;
        }
        if (piece.len) fwrite(piece.data, 1, piece.len, stdout);
        fflush(stdout);
        if (i + 1 == n_predict || lmf_session_pos(s) == lmf_session_n_ctx(s)) break;
        if ((st = lmf_session_eval(s, &next, 1, 0, &lg)) != LMF_OK) {
            rc = fail("lmf_session_eval", st);
            goto done;
        }
    }
    piece.len = 0;
    lmf_tokenizer_decoder_finish(dec, &piece);
    if (piece.len) fwrite(piece.data, 1, piece.len, stdout);
    fputc('\n', stdout);
    rc = 0;

done:
    free(logits);
    free(piece.data);
    free(ids.data);
    lmf_tokenizer_decoder_free(dec);
    lmf_sampler_free(smp);
    lmf_session_free(s);
    lmf_weights_free(w);
    return rc;
}
