/* load_gguf.c — llama GGUF -> fp32 lmf_model (see load_gguf.h).
 *
 * Tensor map (llama.cpp names; GGUF dims are ggml order, ne0 = in-features, ne1 = out-features):
 *   token_embd.weight (C,V) -> wte          output.weight (C,V) -> lm_head (absent: tied)
 *   blk.N.attn_norm.weight (C) -> ln1_w     blk.N.attn_q/k/v.weight -> qkv_w rows [0,C) [C,C+KV) [C+KV,C+2KV)
 *   blk.N.attn_output.weight (C,C) -> attn_proj_w
 *   blk.N.ffn_norm.weight (C) -> ln2_w      blk.N.ffn_gate.weight (C,F) -> fc_w rows [0,F), ffn_up -> [F,2F)
 *   blk.N.ffn_down.weight (F,C) -> fc_proj_w                 output_norm.weight (C) -> lnf_w
 * llama.cpp's converter reorders each Q/K head's rows from Hugging Face's rotate_half layout (dim d pairs with
 * d + hs/2) to interleaved pairs (2i, 2i+1): GGUF row 2i + j of a head is HF row j * hs/2 + i. We undo that. */
#include "model/load_gguf.h"

#include "core/status.h"
#include "io/gguf.h"
#include "model/dequant.h"
#include "model/model.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const lmf_gguf *g;
    const char *path;
} ctx;

/* Dequantizes tensor `name`, expected (rows, cols) = (ne1, ne0) (rows = 1 and 1-D for a vector), into dst; with
 * heads > 0 the rows of each of the `heads` heads are un-permuted (see above). */
static lmf_status load_tensor(const ctx *c, const char *name, int64_t rows, int64_t cols, int vector, int heads,
                              float *dst) {
    const lmf_gguf_tensor *t = lmf_gguf_find_tensor(c->g, name);
    if (!t) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is missing", c->path, name);
    int ok = vector ? (t->n_dims == 1 && t->ne[0] == cols)
                    : (t->n_dims == 2 && t->ne[0] == cols && t->ne[1] == rows);
    if (!ok) {
        char got[96];
        int k = 0;
        for (int d = 0; d < t->n_dims; d++) k += snprintf(got + k, sizeof got - (size_t)k, "%s%lld", d ? ", " : "",
                                                        (long long)t->ne[d]);
        if (vector)
            return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has dims [%s], expected [%lld] (ggml order)", c->path,
                            name, got, (long long)cols);
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has dims [%s], expected [%lld, %lld] (ggml order: in, out)",
                        c->path, name, got, (long long)cols, (long long)rows);
    }
    if (!lmf_dequant_supported(t->type)) return lmf_dequant_row(t->type, t->data, dst, (size_t)cols, name);
    uint32_t bs = 1, bb = 0;
    lmf_ggml_type_block(t->type, &bs, &bb);
    if (cols % bs) return lmf_dequant_row(t->type, t->data, dst, (size_t)cols, name); /* reports it */
    size_t row_bytes = (size_t)(cols / bs) * bb;
    int64_t hs = heads > 0 ? rows / heads : 0;
    if (heads > 0 && (rows % heads || hs % 2))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s: %lld rows do not split into %d heads of even size", c->path,
                        name, (long long)rows, heads);
    const uint8_t *src = t->data;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t out = r;
        if (heads > 0) {
            int64_t h = r / hs, k = r % hs, i = k / 2, j = k % 2;
            out = h * hs + j * (hs / 2) + i;
        }
        lmf_dequant_row(t->type, src + (size_t)r * row_bytes, dst + (size_t)out * (size_t)cols, (size_t)cols, name);
    }
    return LMF_OK;
}

static lmf_status get_dim(const lmf_gguf *g, const char *key, int *out) {
    uint32_t u = 0;
    LMF_TRY(lmf_gguf_get_u32(g, key, &u));
    if (u == 0 || u > (1u << 30)) return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %u is out of range", g->path, key, u);
    *out = (int)u;
    return LMF_OK;
}

lmf_status lmf_gguf_llama_config(const lmf_gguf *g, lmf_model_config *out) {
    const char *path = g->path;
    const char *arch;
    LMF_TRY(lmf_gguf_get_str(g, "general.architecture", &arch));
    if (strcmp(arch, "llama") != 0)
        return lmf_fail(LMF_ERR_FORMAT, "%s: general.architecture is \"%s\"; only \"llama\" GGUFs can be loaded",
                        path, arch);
    lmf_model_config cfg = lmf_model_config_default(LMF_ARCH_LLAMA);
    int ctx_len = 0;
    LMF_TRY(get_dim(g, "llama.block_count", &cfg.n_layer));
    LMF_TRY(get_dim(g, "llama.embedding_length", &cfg.n_embd));
    LMF_TRY(get_dim(g, "llama.feed_forward_length", &cfg.ffn_dim));
    LMF_TRY(get_dim(g, "llama.attention.head_count", &cfg.n_head));
    cfg.n_kv_head = cfg.n_head;
    if (lmf_gguf_find(g, "llama.attention.head_count_kv"))
        LMF_TRY(get_dim(g, "llama.attention.head_count_kv", &cfg.n_kv_head));
    LMF_TRY(get_dim(g, "llama.context_length", &ctx_len));
    LMF_TRY(lmf_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &cfg.norm_eps));
    cfg.rope_theta = 10000.0f; /* llama.cpp's default when the key is absent */
    if (lmf_gguf_find(g, "llama.rope.freq_base")) LMF_TRY(lmf_gguf_get_f32(g, "llama.rope.freq_base", &cfg.rope_theta));
    if (cfg.n_embd % cfg.n_head)
        return lmf_fail(LMF_ERR_FORMAT, "%s: llama.embedding_length %d is not a multiple of head_count %d", path,
                        cfg.n_embd, cfg.n_head);
    int hs = cfg.n_embd / cfg.n_head;
    const char *hs_keys[] = {"llama.rope.dimension_count", "llama.attention.key_length",
                             "llama.attention.value_length"};
    for (int k = 0; k < 3; k++) {
        int v = 0;
        if (!lmf_gguf_find(g, hs_keys[k])) continue;
        LMF_TRY(get_dim(g, hs_keys[k], &v));
        if (v != hs)
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %d but the head size is %d; only full-rotary heads of size "
                            "embedding_length / head_count are supported", path, hs_keys[k], v, hs);
    }
    if (lmf_gguf_find(g, "llama.rope.scaling.type") || lmf_gguf_find_tensor(g, "rope_freqs.weight"))
        return lmf_fail(LMF_ERR_FORMAT, "%s: RoPE scaling (llama.rope.scaling.* / rope_freqs.weight) is not "
                        "supported", path);
    const lmf_gguf_tensor *emb = lmf_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor token_embd.weight is missing", path);
    if (emb->n_dims != 2 || emb->ne[0] != cfg.n_embd || emb->ne[1] <= 0 || emb->ne[1] > (1 << 30))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor token_embd.weight has %d dims [%lld, %lld], expected [%d, vocab]",
                        path, emb->n_dims, (long long)emb->ne[0], (long long)emb->ne[1], cfg.n_embd);
    cfg.vocab_size = (int)emb->ne[1];
    cfg.tied_embeddings = lmf_gguf_find_tensor(g, "output.weight") == NULL;
    cfg.max_seq_len = ctx_len;
    if (lmf_model_config_validate(&cfg) != LMF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        return lmf_fail(LMF_ERR_FORMAT, "%s: hyperparameters do not make a valid llama config: %s", path, msg);
    }
    *out = cfg;
    return LMF_OK;
}

static lmf_status load(const lmf_gguf *g, const char *path, int max_batch, int max_seq, lmf_model **out) {
    lmf_model_config cfg;
    LMF_TRY(lmf_gguf_llama_config(g, &cfg));
    int ctx_len = cfg.max_seq_len, hs = cfg.n_embd / cfg.n_head;
    if (max_batch <= 0 || max_seq <= 0)
        return lmf_fail(LMF_ERR_ARG, "lmf_model_load_gguf: max_batch %d and max_seq %d must be positive", max_batch,
                        max_seq);
    if (max_seq > ctx_len) max_seq = ctx_len;

    lmf_model *m = lmf_model_create(&cfg, max_batch, max_seq, 0);
    if (!m) return LMF_ERR_ARG; /* create recorded why */
    ctx c = {g, path};
    int C = cfg.n_embd, F = cfg.ffn_dim, KV = cfg.n_kv_head * hs, S = C + 2 * KV, L = cfg.n_layer;
    lmf_status st = load_tensor(&c, "token_embd.weight", cfg.vocab_size, C, 0, 0, m->ptr[LMF_P_WTE]);
    if (st == LMF_OK && !cfg.tied_embeddings)
        st = load_tensor(&c, "output.weight", cfg.vocab_size, C, 0, 0, m->ptr[LMF_P_LMHEAD]);
    if (st == LMF_OK) st = load_tensor(&c, "output_norm.weight", 1, C, 1, 0, m->ptr[LMF_P_LNFW]);
    char name[96];
#define LT(suffix, rows, cols, vec, heads, dst)                                                                    \
    if (st == LMF_OK) {                                                                                            \
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, suffix);                                                \
        st = load_tensor(&c, name, rows, cols, vec, heads, dst);                                                   \
    }
    for (int l = 0; l < L && st == LMF_OK; l++) {
        float *qkv = m->ptr[LMF_P_QKVW] + (size_t)l * S * C, *fc = m->ptr[LMF_P_FCW] + (size_t)l * 2 * F * C;
        LT("attn_norm", 1, C, 1, 0, m->ptr[LMF_P_LN1W] + (size_t)l * C);
        LT("attn_q", C, C, 0, cfg.n_head, qkv);
        LT("attn_k", KV, C, 0, cfg.n_kv_head, qkv + (size_t)C * C);
        LT("attn_v", KV, C, 0, 0, qkv + (size_t)(C + KV) * C);
        LT("attn_output", C, C, 0, 0, m->ptr[LMF_P_ATTPROJW] + (size_t)l * C * C);
        LT("ffn_norm", 1, C, 1, 0, m->ptr[LMF_P_LN2W] + (size_t)l * C);
        LT("ffn_gate", F, C, 0, 0, fc);
        LT("ffn_up", F, C, 0, 0, fc + (size_t)F * C);
        LT("ffn_down", C, F, 0, 0, m->ptr[LMF_P_FCPROJW] + (size_t)l * C * F);
    }
#undef LT
    if (st != LMF_OK) {
        lmf_model_free(m);
        return st;
    }
    *out = m;
    return LMF_OK;
}

lmf_status lmf_model_load_gguf(const char *path, int max_batch, int max_seq, lmf_model **out) {
    *out = NULL;
    lmf_gguf *g;
    LMF_TRY(lmf_gguf_open(path, &g));
    lmf_status st = load(g, path, max_batch, max_seq, out);
    lmf_gguf_close(g);
    return st;
}
