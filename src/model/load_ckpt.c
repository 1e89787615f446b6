/* load_ckpt.c — an lmforge training checkpoint (io/checkpoint.h) as inference weights (weights.h).
 *
 * The checkpoint's config text (train/train_config.h) gives the model config; its parameters are the 17-tensor
 * flat fp32 layout of model/model.h. Only the parameters are kept (one owned copy; the AdamW moments are dropped),
 * and every weight is an F32 view into them (lmf_params_view, the same views the training model runs). The
 * tokenizer is the config's `tokenizer` path when it is set and loads (tried as given, then relative to the
 * checkpoint's folder and its parent); otherwise the model has none, without an error. A `finetune --full`
 * checkpoint takes its config and tokenizer from its base model (finetune_base). */
#include "core/alloc.h"
#include "core/status.h"
#include "io/gguf.h"
#include "model/model.h"
#include "model/weights.h"
#include "io/checkpoint.h"
#include "model/config_text.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Where a path a checkpoint's config names may be: as given, relative to the checkpoint's folder (first when
 * dir_first), and to its parent; an absolute path only as given. Returns how many of cands to try. */
static int path_candidates(const char *rel, const char *ckpt_path, int dir_first, char cands[3][8300]) {
    char *copy = strdup(ckpt_path), *dir = dirname(copy);
    int first = dir_first && rel[0] != '/';
    snprintf(cands[first], sizeof cands[0], "%s", rel);
    snprintf(cands[!first], sizeof cands[1], "%s/%s", dir, rel);
    snprintf(cands[2], sizeof cands[2], "%s/../%s", dir, rel);
    free(copy);
    return rel[0] == '/' ? 1 : 3;
}

static void try_tokenizer(lmf_weights *w, const char *tok_path, const char *ckpt_path, uint32_t version) {
    if (!*tok_path) return;
    char cands[3][8300];
    /* version 3 writes paths inside the run folder relative to it: that reading comes first */
    int n = path_candidates(tok_path, ckpt_path, version >= 3, cands);
    for (int i = 0; i < n; i++) {
        struct stat sb;
        if (stat(cands[i], &sb) != 0) continue;
        lmf_tokenizer *tok;
        if (lmf_tokenizer_load(cands[i], &tok) != LMF_OK) continue;
        if (lmf_tokenizer_vocab_size(tok) > w->cfg.vocab_size) {
            lmf_tokenizer_free(tok);
            continue;
        }
        w->tok = tok;
        lmf_clear_error();
        return;
    }
    lmf_clear_error();
}

/* `lmforge finetune`'s checkpoints name their base model (`model = PATH`) instead of a model config: a --full run's
 * parameters are the base's architecture in the training model's layout (lmf_model_from_weights: Q/K rows in
 * rotate_half order), with the base's tokenizer, chat template, special ids and LongRoPE factors; a LoRA run's
 * checkpoint holds adapters, not a model. The base path is tried as given, then relative to the checkpoint's
 * folder and its parent, as the tokenizer's. */
static lmf_status finetune_base(lmf_weights *w, const lmf_checkpoint *ck, const char *path, lmf_model_config *mc,
                                lmf_weights **base) {
    char model[4096] = "", full[8] = "";
    lmf_kv_text_get(ck->config_text, "model", model, sizeof model);
    lmf_kv_text_get(ck->config_text, "full", full, sizeof full);
    if (strcmp(full, "1"))
        return lmf_fail(LMF_ERR_ARG, "%s: a LoRA fine-tuning checkpoint holds the adapters, not a model: run the base "
                        "(%s) with --lora on the run's adapter folder, or write it merged with `lmforge export %s "
                        "--merge-lora RUN/adapter`", path, model, model);
    char cand[3][8300];
    int n = path_candidates(model, path, 0, cand), i = 0;
    struct stat sb;
    while (i < n && stat(cand[i], &sb) != 0) i++;
    if (!*model || i == n)
        return lmf_fail(LMF_ERR_IO, "%s: a full fine-tuning checkpoint of base model \"%s\", which is not there (the "
                        "checkpoint holds the weights; the base gives the architecture and tokenizer)", path, model);
    LMF_TRY(lmf_weights_load(cand[i], base));
    lmf_weights *b = *base;
    *mc = b->cfg;
    if (mc->pos == LMF_POS_ROPE_INTERLEAVED) mc->pos = LMF_POS_ROPE_HALF; /* the training model's order */
    w->tok = b->tok, w->chat_template = b->chat_template, b->tok = NULL, b->chat_template = NULL;
    w->bos_id = b->bos_id, w->eos_id = b->eos_id, w->eot_id = b->eot_id, w->add_bos = b->add_bos;
    if (b->rope_short) { /* LongRoPE's factors are the base's */
        size_t half = (size_t)lmf_head_size(mc) / 2;
        float *f = lmf_weights_alloc(w, 2 * half * sizeof(float));
        memcpy(f, b->rope_short, half * sizeof(float));
        memcpy(f + half, b->rope_long, half * sizeof(float));
        w->rope_short = f, w->rope_long = f + half;
    }
    return LMF_OK;
}

static lmf_status load(lmf_weights *w, const char *path) {
    lmf_checkpoint ck;
    LMF_TRY(lmf_checkpoint_load(path, &ck));
    lmf_model_config mc = lmf_model_config_default(LMF_ARCH_GPT2); /* the text names every field */
    char source[4200], tokenizer[1024] = "", ft[8] = "";
    snprintf(source, sizeof source, "%s (config text)", path);
    lmf_weights *base = NULL;
    lmf_status s = lmf_kv_text_get(ck.config_text, "finetune", ft, sizeof ft) && !strcmp(ft, "1")
                       ? finetune_base(w, &ck, path, &mc, &base)
                       : lmf_model_config_from_text(ck.config_text, source, &mc);
    lmf_weights_free(base); /* what the model needs of it is copied or moved into w */
    lmf_kv_text_get(ck.config_text, "tokenizer", tokenizer, sizeof tokenizer);
    if (s == LMF_OK && lmf_model_config_validate(&mc) != LMF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        s = lmf_fail(LMF_ERR_FORMAT, "%s: the model config in the checkpoint is invalid: %s", path, msg);
    }
    size_t sizes[LMF_NUM_PARAM_TENSORS], total = 0;
    /* the count in floating point first: the file bounds num_params, and a hostile shape must not wrap size_t */
    if (s == LMF_OK && lmf_param_count(&mc) != (double)ck.num_params)
        s = lmf_fail(LMF_ERR_FORMAT, "%s: holds %llu parameters but its model config (n_layer %d, n_embd %d, "
                     "vocab_size %d, ...) needs %.0f", path, (unsigned long long)ck.num_params, mc.n_layer, mc.n_embd,
                     mc.vocab_size, lmf_param_count(&mc));
    if (s == LMF_OK) {
        lmf_param_sizes(&mc, sizes);
        for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) total += sizes[i];
        if (total != ck.num_params)
            s = lmf_fail(LMF_ERR_FORMAT, "%s: holds %llu parameters but its model config needs %zu", path,
                         (unsigned long long)ck.num_params, total);
    }
    if (s != LMF_OK) {
        lmf_checkpoint_free(&ck);
        return s;
    }
    float *p = lmf_weights_alloc(w, total * sizeof(float));
    memcpy(p, ck.params, total * sizeof(float));
    uint32_t version = ck.version;
    lmf_checkpoint_free(&ck);

    lmf_params_view(w, &mc, p);
    if (!w->tok) try_tokenizer(w, tokenizer, path, version);
    if (w->tok && !*ft) {
        int32_t eot = lmf_tokenizer_token_id(w->tok, "<|endoftext|>");
        if (eot >= 0) w->eos_id = w->bos_id = eot;
    }
    return lmf_weights_validate(w, path);
}

lmf_status lmf_weights_load_checkpoint(const char *path, lmf_weights **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return lmf_fail(LMF_ERR_IO, "%s: no such file or folder", path);
    char *file = NULL;
    if (S_ISDIR(sb.st_mode)) LMF_TRY(lmf_checkpoint_latest(path, &file));
    else file = strdup(path);
    lmf_weights *w = lmf_weights_new();
    snprintf(w->source, sizeof w->source, "checkpoint");
    if (stat(file, &sb) == 0) w->file_bytes = (size_t)sb.st_size;
    lmf_status s = load(w, file);
    free(file);
    if (s != LMF_OK) {
        lmf_weights_free(w);
        return s;
    }
    *out = w;
    return LMF_OK;
}
