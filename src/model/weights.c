/* weights.c — the storage and bookkeeping side of lmf_weights (see weights.h); loaders live in load_*.c. */
#include "model/weights.h"

#include "core/alloc.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/dequant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BIG_BYTES (1u << 20) /* buffers from here up are pre-touched, huge-page backed */

lmf_weights *lmf_weights_new(void) {
    lmf_weights *w = lmf_xcalloc(1, sizeof *w);
    w->bos_id = w->eos_id = w->eot_id = -1;
    return w;
}

void lmf_weights_free(lmf_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_owned; i++) {
        if (w->owned_bytes[i] >= BIG_BYTES) lmf_free_big(w->owned[i]);
        else free(w->owned[i]);
    }
    for (int i = 0; i < w->n_mapped; i++) lmf_safetensors_close(w->mapped[i]);
    lmf_gguf_close(w->gguf);
    lmf_tokenizer_free(w->tok);
    LMF_FREE_ALL(w->owned, w->owned_bytes, w->mapped, w->chat_template, w->layers, w);
}

void *lmf_weights_alloc(lmf_weights *w, size_t bytes) {
    void *p = bytes >= BIG_BYTES ? lmf_alloc_big(bytes) : lmf_xcalloc(1, bytes ? bytes : 1);
    w->owned = lmf_xrealloc(w->owned, (size_t)(w->n_owned + 1) * sizeof *w->owned);
    w->owned_bytes = lmf_xrealloc(w->owned_bytes, (size_t)(w->n_owned + 1) * sizeof *w->owned_bytes);
    w->owned[w->n_owned] = p;
    w->owned_bytes[w->n_owned++] = bytes;
    return p;
}

lmf_status lmf_weights_f32_copy(lmf_weights *w, uint32_t type, const void *src, size_t n, const char *what,
                                const float **out) {
    float *dst = lmf_weights_alloc(w, n * sizeof(float));
    LMF_TRY(lmf_dequant_row(type, src, dst, n, what));
    *out = dst;
    return LMF_OK;
}

void lmf_wtensor_set(lmf_wtensor *t, uint32_t type, int rows, int cols, const void *data) {
    uint32_t bs = 1, bb = 4;
    LMF_CHECK(lmf_ggml_type_block(type, &bs, &bb) && cols % (int)bs == 0);
    t->type = type;
    t->rows = rows;
    t->cols = cols;
    t->row_bytes = (size_t)cols / bs * bb;
    t->data = data;
    t->r16 = NULL;
}

lmf_wtensor lmf_wtensor_rows(const lmf_wtensor *W, int r0, int n) {
    lmf_wtensor v = *W;
    if (W->data && r0) v.data = (const char *)W->data + (size_t)r0 * W->row_bytes;
    v.rows = n;
    return v;
}
lmf_wtensor lmf_wtensor_cols(const lmf_wtensor *W, int c0, int n) {
    lmf_wtensor v = *W;
    if (c0) {
        LMF_CHECK(W->type == LMF_GGML_F32);
        v.data = (const float *)W->data + c0;
    }
    v.cols = n;
    return v;
}

void lmf_layer_matrices(const lmf_layer_weights *L, const lmf_wtensor *out[LMF_LAYER_MATRICES]) {
    out[0] = &L->wq, out[1] = &L->wk, out[2] = &L->wv, out[3] = &L->wo;
    out[4] = &L->w_gate, out[5] = &L->w_up, out[6] = &L->w_down;
}

int lmf_layer_moe_matrices(const lmf_layer_weights *L, int n_expert, const lmf_wtensor **out) {
    if (!n_expert || !L->experts) return 0;
    int n = 0;
    out[n++] = &L->router;
    for (int i = 0; i < 3 * n_expert; i++) out[n++] = &L->experts[i];
    out[n++] = &L->sh_gate, out[n++] = &L->sh_up, out[n++] = &L->sh_down;
    return n;
}

/* Sum over every matrix of bytes (bytes = 1) or elements (bytes = 0). */
static size_t matrix_total(const lmf_weights *w, int bytes) {
    const lmf_wtensor *all[3 + LMF_LAYER_MATRICES + LMF_MOE_MATRICES(LMF_MAX_EXPERT)];
    size_t total = 0;
    for (int l = -1; l < w->cfg.n_layer; l++) {
        int n = 0;
        if (l < 0) {
            all[n++] = &w->tok_emb, all[n++] = &w->pos_emb;
            if (w->lm_head.data != w->tok_emb.data) all[n++] = &w->lm_head;
        } else {
            lmf_layer_matrices(&w->layers[l], all);
            n = LMF_LAYER_MATRICES;
            n += lmf_layer_moe_matrices(&w->layers[l], w->cfg.n_expert, all + n);
        }
        for (int i = 0; i < n; i++)
            total += (size_t)all[i]->rows * (bytes ? all[i]->row_bytes : (size_t)all[i]->cols);
    }
    return total;
}

size_t lmf_weights_bytes(const lmf_weights *w) { return matrix_total(w, 1); }
size_t lmf_weights_matrix_params(const lmf_weights *w) { return matrix_total(w, 0); }

static lmf_status check(const lmf_wtensor *t, int rows, int cols, const char *origin, const char *what, int l) {
    char name[64];
    if (l >= 0) snprintf(name, sizeof name, "layer %d %s", l, what);
    else snprintf(name, sizeof name, "%s", what);
    if (!t->data || t->rows != rows || t->cols != cols)
        return lmf_fail(LMF_ERR_FORMAT, "%s: %s is %s [%d, %d], expected [%d, %d] (out, in)", origin, name,
                        t->data ? "shaped" : "missing:", t->rows, t->cols, rows, cols);
    if (!lmf_dequant_supported(t->type))
        return lmf_fail(LMF_ERR_FORMAT, "%s: %s has type %s, which lmforge cannot run (supported: F32, F16, BF16, "
                        "Q8_0, Q4_0, Q4_1 and the K-quants Q4_K, Q6_K)", origin, name,
                        lmf_ggml_type_name(t->type) ? lmf_ggml_type_name(t->type) : "unknown");
    return LMF_OK;
}

lmf_status lmf_rope_factors_check(const lmf_weights *w, const char *origin) {
    int half = lmf_head_size(&w->cfg) / 2;
    const float *f[2] = {w->rope_short, w->rope_long};
    static const char *const name[2] = {"short", "long"};
    for (int k = 0; k < 2; k++) {
        if (!f[k]) return lmf_fail(LMF_ERR_FORMAT, "%s: LongRoPE without its %s factors", origin, name[k]);
        for (int i = 0; i < half; i++)
            if (!(f[k][i] >= 1e-6f && f[k][i] <= 65536.0f))
                return lmf_fail(LMF_ERR_FORMAT, "%s: LongRoPE %s factor %d = %g is outside [1e-6, 65536]", origin,
                                name[k], i, f[k][i]);
    }
    return LMF_OK;
}

lmf_status lmf_weights_validate(const lmf_weights *w, const char *origin) {
    const lmf_model_config *c = &w->cfg;
    int C = c->n_embd, QD = lmf_q_width(c), KV = lmf_kv_width(c), F = c->ffn_dim, V = c->vocab_size;
    LMF_TRY(check(&w->tok_emb, V, C, origin, "token embedding", -1));
    LMF_TRY(check(&w->lm_head, V, C, origin, "output head", -1));
    if (w->cfg.pos == LMF_POS_LEARNED) LMF_TRY(check(&w->pos_emb, c->max_seq_len + w->cfg.pos_offset, C, origin,
                                                 "position embedding", -1));
    if (!w->out_norm_w || (w->cfg.norm == LMF_NORM_LAYER && !w->out_norm_b))
        return lmf_fail(LMF_ERR_FORMAT, "%s: the final norm's weights are missing", origin);
    if (c->rope_scaling == LMF_ROPE_SCALING_LONGROPE) LMF_TRY(lmf_rope_factors_check(w, origin));
    for (int l = 0; l < c->n_layer; l++) {
        const lmf_layer_weights *L = &w->layers[l];
        LMF_TRY(check(&L->wq, QD, C, origin, "attention q", l));
        LMF_TRY(check(&L->wk, KV, C, origin, "attention k", l));
        LMF_TRY(check(&L->wv, KV, C, origin, "attention v", l));
        LMF_TRY(check(&L->wo, C, QD, origin, "attention output", l));
        if (c->n_expert) { /* the router, every expert, the shared one (names as in lmf_layer_moe_matrices) */
            int Fs = c->shared_ffn_dim;
            LMF_TRY(check(&L->router, c->n_expert, C, origin, "router", l));
            for (int e = 0; e < c->n_expert; e++) {
                char what[48];
                snprintf(what, sizeof what, "expert %d gate", e);
                LMF_TRY(check(&L->experts[3 * e], F, C, origin, what, l));
                snprintf(what, sizeof what, "expert %d up", e);
                LMF_TRY(check(&L->experts[3 * e + 1], F, C, origin, what, l));
                snprintf(what, sizeof what, "expert %d down", e);
                LMF_TRY(check(&L->experts[3 * e + 2], C, F, origin, what, l));
            }
            if (Fs) {
                LMF_TRY(check(&L->sh_gate, Fs, C, origin, "shared expert gate", l));
                LMF_TRY(check(&L->sh_up, Fs, C, origin, "shared expert up", l));
                LMF_TRY(check(&L->sh_down, C, Fs, origin, "shared expert down", l));
            }
            if (c->shared_gate && !L->sh_gate_inp)
                return lmf_fail(LMF_ERR_FORMAT, "%s: layer %d: the shared expert's gate is missing", origin, l);
        } else {
            if (lmf_act_gated(w->cfg.act)) LMF_TRY(check(&L->w_gate, F, C, origin, "ffn gate", l));
            LMF_TRY(check(&L->w_up, F, C, origin, "ffn up", l));
            LMF_TRY(check(&L->w_down, C, F, origin, "ffn down", l));
        }
        if (c->qk_norm && (!L->q_norm_w || !L->k_norm_w))
            return lmf_fail(LMF_ERR_FORMAT, "%s: layer %d: the q and k norm weights are missing", origin, l);
        if ((c->bias || c->qkv_bias) && (!L->bq || !L->bk || !L->bv))
            return lmf_fail(LMF_ERR_FORMAT, "%s: layer %d: the q, k and v biases are missing", origin, l);
        if (c->post_norms && (!L->post_attn_norm_w || !L->post_ffn_norm_w))
            return lmf_fail(LMF_ERR_FORMAT, "%s: layer %d: the post-attention and post-FFN norm weights are missing",
                            origin, l);
        if (!L->attn_norm_w || !L->ffn_norm_w ||
            (w->cfg.norm == LMF_NORM_LAYER && (!L->attn_norm_b || !L->ffn_norm_b)))
            return lmf_fail(LMF_ERR_FORMAT, "%s: layer %d: norm weights are missing", origin, l);
    }
    return LMF_OK;
}

/* ---- public entry points ------------------------------------------------------------------------------------ */

/* A path that is none of the formats: the message says what each expected, so the user sees why (a text file, a
 * truncated download, the wrong folder). why is the checkpoint loader's own reason. */
static lmf_status not_a_model(const char *path, int is_dir, const char *why) {
    char magic[9] = {0}, shown[40] = "";
    if (!is_dir) {
        FILE *f = fopen(path, "rb");
        size_t n = f ? fread(magic, 1, 8, f) : 0;
        if (f) fclose(f);
        int k = 0;
        for (size_t i = 0; i < n && i < 4; i++) {
            unsigned char c = (unsigned char)magic[i];
            k += snprintf(shown + k, sizeof shown - (size_t)k, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
        }
    }
    /* the checkpoint loader names the path first; it is said once, at the start */
    size_t pl = strlen(path);
    if (!strncmp(why, path, pl) && why[pl] == ':') why += pl + 1 + (why[pl + 1] == ' ');
    char reason[512];
    snprintf(reason, sizeof reason, "%s", why);
    if (is_dir)
        return lmf_fail(LMF_ERR_FORMAT, "%s: not a model lmforge reads; tried: a Hugging Face folder (it has no "
                        "config.json), an lmforge run folder (%s); a GGUF or checkpoint file is not a folder", path,
                        reason);
    return lmf_fail(LMF_ERR_FORMAT, "%s: not a model lmforge reads; tried: GGUF (the file starts with \"%s\", not the "
                    "magic \"GGUF\"), a Hugging Face folder (this is a file; a model is a folder with config.json and "
                    "safetensors), an lmforge checkpoint (%s)", path, shown, reason);
}

/* A folder with config.json is Hugging Face's; other folders and non-GGUF files are lmforge checkpoints. */
static lmf_status load_any(const char *path, lmf_weights **out) {
    struct stat sb;
    if (stat(path, &sb) != 0) return lmf_fail(LMF_ERR_IO, "%s: no such file or folder", path);
    lmf_status s;
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + 16;
        char *cfg = lmf_xmalloc(n);
        snprintf(cfg, n, "%s/config.json", path);
        int hf = stat(cfg, &sb) == 0;
        free(cfg);
        if (hf) return lmf_weights_load_hf(path, out);
        s = lmf_weights_load_checkpoint(path, out);
        /* a folder with no checkpoint in it: none of the folder formats */
        return s == LMF_ERR_IO ? not_a_model(path, 1, lmf_last_error()) : s;
    }
    if (lmf_gguf_sniff(path)) return lmf_weights_load_gguf(path, out);
    s = lmf_weights_load_checkpoint(path, out);
    /* a file that is no checkpoint either (bad magic, shorter than a header): say what each format expected; a
     * damaged checkpoint (right magic, bad checksum or sizes) keeps the checkpoint loader's own message */
    if (s == LMF_ERR_FORMAT && !lmf_gguf_sniff(path)) {
        const char *why = lmf_last_error();
        if (strstr(why, "magic") || strstr(why, "shorter than")) return not_a_model(path, 0, why);
    }
    return s;
}

lmf_status lmf_weights_open(const char *path, lmf_weights **out) {
    *out = NULL;
    return load_any(path, out);
}

lmf_status lmf_weights_load(const char *path, lmf_weights **out) {
    LMF_TRY(lmf_weights_open(path, out));
    /* the decode layout, made here once: from now on the weights never change, and every session, pool and thread
     * reads them as they are */
    lmf_weights_prepare_decode(*out);
    return LMF_OK;
}

const lmf_model_config *lmf_weights_config(const lmf_weights *w) { return &w->cfg; }
const char *lmf_weights_family(const lmf_weights *w) { return lmf_arch_name(w->cfg.arch); }
const lmf_tokenizer *lmf_weights_tokenizer(const lmf_weights *w) { return w->tok; }
const char *lmf_weights_chat_template(const lmf_weights *w) { return w->chat_template; }

int32_t lmf_weights_bos(const lmf_weights *w, int *add_bos) {
    if (add_bos) *add_bos = w->add_bos && w->bos_id >= 0;
    return w->bos_id;
}

int lmf_weights_stop_tokens(const lmf_weights *w, int32_t ids[4]) {
    int n = 0;
    if (w->eos_id >= 0) ids[n++] = w->eos_id;
    if (w->eot_id >= 0 && w->eot_id != w->eos_id) ids[n++] = w->eot_id;
    /* chat models whose files do not name their end-of-turn token */
    static const char *const eot_texts[] = {"<|im_end|>", "<|eot_id|>", "<|end|>"};
    for (int i = 0; i < 3 && w->tok && n < 4; i++) {
        int32_t id = lmf_tokenizer_token_id(w->tok, eot_texts[i]);
        int dup = 0;
        for (int j = 0; j < n; j++) dup |= ids[j] == id;
        if (id >= 0 && !dup) ids[n++] = id;
    }
    return n;
}
