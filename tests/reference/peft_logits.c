/* peft_logits.c — helper of check_peft_load.py, compiled by it against build/liblmforge.a.
 *   peft_logits logits MODEL ADAPTER_DIR TOK...   prints {"V": V, "logits": [[...] per token]} with the adapter on
 *   peft_logits mkadapter MODEL TARGETS DIR        writes a PEFT folder with random A and B (B nonzero, unlike a
 *                                                  fresh adapter), for a model lmforge cannot fine-tune (no tokenizer) */
#include "lmforge.h"
#include "model/lora.h"
#include "model/lora_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what) {
    fprintf(stderr, "peft_logits: %s: %s\n", what, lmf_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5) return fprintf(stderr, "usage: see the header\n"), 2;
    lmf_weights *w;
    if (lmf_weights_load(argv[2], &w) != LMF_OK) return die("load model");
    const lmf_model_config *cfg = lmf_weights_config(w);
    lmf_lora *l;
    if (!strcmp(argv[1], "mkadapter")) {
        if (lmf_lora_create(cfg, argv[3], 4, 8.0f, 0.0f, 0, &l) != LMF_OK) return die("create");
        uint64_t x = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < l->n_params; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            l->params[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * 0.5f;
        }
        if (lmf_lora_save_peft(l, cfg, argv[2], argv[4]) != LMF_OK) return die("save");
        return 0;
    }
    if (lmf_lora_load_peft(argv[3], cfg, &l) != LMF_OK) return die("load adapter");
    int n = argc - 4;
    int32_t *tok = malloc(sizeof *tok * (size_t)n);
    for (int i = 0; i < n; i++) tok[i] = atoi(argv[4 + i]);
    lmf_session *s;
    if (lmf_session_create(w, 64, &s) != LMF_OK) return die("session");
    lmf_session_set_lora(s, l);
    const float *lg;
    if (lmf_session_eval(s, tok, n, 1, &lg) != LMF_OK) return die("eval");
    int V = cfg->vocab_size;
    printf("{\"V\": %d, \"logits\": [", V);
    for (int i = 0; i < n; i++) {
        printf(i ? ", [" : "[");
        for (int j = 0; j < V; j++) printf(j ? ", %.9g" : "%.9g", (double)lg[(size_t)i * V + j]);
        printf("]");
    }
    printf("]}\n");
    return 0;
}
