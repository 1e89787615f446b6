/* config.c — model configuration: family defaults, validation, parameter table shapes. */
#include "model/model.h"
#include "core/status.h"

#include <string.h>

const char *const lmf_param_names[LMF_NUM_PARAM_TENSORS] = {
    "wte",  "wpe",  "ln1_w",     "ln1_b",     "qkv_w", "qkv_b", "attn_proj_w", "attn_proj_b", "ln2_w",
    "ln2_b", "fc_w", "fc_b", "fc_proj_w", "fc_proj_b", "lnf_w", "lnf_b", "lm_head"};

lmf_model_config lmf_model_config_default(lmf_arch arch) {
    lmf_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    if (arch == LMF_ARCH_GPT2) { /* GPT-2 124M */
        c.vocab_size = 50257, c.max_seq_len = 1024, c.n_layer = 12, c.n_embd = 768, c.n_head = 12;
        c.n_kv_head = 12, c.ffn_dim = 3072, c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.tied_embeddings = 1;
    } else { /* the SmolLM2-135M shape */
        c.vocab_size = 49152, c.max_seq_len = 2048, c.n_layer = 30, c.n_embd = 576, c.n_head = 9;
        c.n_kv_head = 3, c.ffn_dim = 1536, c.norm_eps = 1e-5f, c.rope_theta = 100000.0f, c.tied_embeddings = 1;
    }
    return c;
}

const char *lmf_arch_name(lmf_arch arch) { return arch == LMF_ARCH_LLAMA ? "llama" : "gpt2"; }

lmf_status lmf_arch_parse(const char *name, lmf_arch *out) {
    if (!strcmp(name, "gpt2")) *out = LMF_ARCH_GPT2;
    else if (!strcmp(name, "llama")) *out = LMF_ARCH_LLAMA;
    else return lmf_fail(LMF_ERR_ARG, "arch: unknown model family '%s' (expected gpt2 or llama)", name);
    return LMF_OK;
}

#define REQUIRE(cond, ...)                                                                                         \
    do {                                                                                                           \
        if (!(cond)) return lmf_fail(LMF_ERR_ARG, __VA_ARGS__);                                                    \
    } while (0)

lmf_status lmf_model_config_validate(const lmf_model_config *c) {
    REQUIRE(c->arch == LMF_ARCH_GPT2 || c->arch == LMF_ARCH_LLAMA, "arch: invalid value %d", (int)c->arch);
    REQUIRE(c->vocab_size > 0, "vocab_size: must be positive, got %d", c->vocab_size);
    REQUIRE(c->max_seq_len > 0, "max_seq_len: must be positive, got %d", c->max_seq_len);
    REQUIRE(c->n_layer > 0, "n_layer: must be positive, got %d", c->n_layer);
    REQUIRE(c->n_embd > 0, "n_embd: must be positive, got %d", c->n_embd);
    REQUIRE(c->n_head > 0, "n_head: must be positive, got %d", c->n_head);
    REQUIRE(c->n_embd % c->n_head == 0, "n_embd (%d) must be a multiple of n_head (%d)", c->n_embd, c->n_head);
    REQUIRE(c->n_kv_head > 0 && c->n_head % c->n_kv_head == 0,
            "n_kv_head (%d) must be positive and divide n_head (%d)", c->n_kv_head, c->n_head);
    REQUIRE(c->ffn_dim > 0, "ffn_dim: must be positive, got %d", c->ffn_dim);
    REQUIRE(c->norm_eps > 0.0f, "norm_eps: must be positive, got %g", c->norm_eps);
    if (c->arch == LMF_ARCH_GPT2) {
        REQUIRE(c->n_kv_head == c->n_head, "n_kv_head (%d) must equal n_head (%d) for gpt2", c->n_kv_head,
                c->n_head);
        REQUIRE(c->tied_embeddings, "tied_embeddings: gpt2 always ties its output head to wte");
    } else {
        REQUIRE((c->n_embd / c->n_head) % 2 == 0, "head size n_embd/n_head (%d) must be even for RoPE",
                c->n_embd / c->n_head);
        REQUIRE(c->rope_theta > 0.0f, "rope_theta: must be positive, got %g", c->rope_theta);
    }
    /* Buffers are indexed with long, but shapes go through int dims: keep every single tensor under 2^31. */
    REQUIRE((long long)c->vocab_size * c->n_embd < (1LL << 31), "vocab_size x n_embd too large");
    return LMF_OK;
}

static int shape_of(int s[3], int a, int b, int c) {
    s[0] = a, s[1] = b, s[2] = c;
    return c ? 3 : b ? 2 : 1;
}

int lmf_param_shape(const lmf_model_config *c, int i, int s[3]) {
    int V = c->vocab_size, C = c->n_embd, L = c->n_layer, F = c->ffn_dim;
    int hs = C / c->n_head, S = C + 2 * c->n_kv_head * hs, gpt2 = c->arch == LMF_ARCH_GPT2;
    s[0] = s[1] = s[2] = 0;
    switch (i) {
    case LMF_P_WTE: return shape_of(s, V, C, 0);
    case LMF_P_WPE: return gpt2 ? shape_of(s, c->max_seq_len, C, 0) : 0;
    case LMF_P_LN1W: case LMF_P_LN2W: return shape_of(s, L, C, 0);
    case LMF_P_LN1B: case LMF_P_LN2B: case LMF_P_ATTPROJB: case LMF_P_FCPROJB: return gpt2 ? shape_of(s, L, C, 0) : 0;
    case LMF_P_QKVW: return shape_of(s, L, S, C);
    case LMF_P_QKVB: return gpt2 ? shape_of(s, L, S, 0) : 0;
    case LMF_P_ATTPROJW: return shape_of(s, L, C, C);
    case LMF_P_FCW: return shape_of(s, L, gpt2 ? F : 2 * F, C);
    case LMF_P_FCB: return gpt2 ? shape_of(s, L, F, 0) : 0;
    case LMF_P_FCPROJW: return shape_of(s, L, C, F);
    case LMF_P_LNFW: return shape_of(s, C, 0, 0);
    case LMF_P_LNFB: return gpt2 ? shape_of(s, C, 0, 0) : 0;
    case LMF_P_LMHEAD: return c->tied_embeddings ? 0 : shape_of(s, V, C, 0);
    }
    return 0;
}

void lmf_param_sizes(const lmf_model_config *c, size_t sizes[LMF_NUM_PARAM_TENSORS]) {
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        int s[3], r = lmf_param_shape(c, i, s);
        size_t n = r ? 1 : 0;
        for (int d = 0; d < r; d++) n *= (size_t)s[d];
        sizes[i] = n;
    }
}

int lmf_param_decays(int i) {
    return i == LMF_P_QKVW || i == LMF_P_ATTPROJW || i == LMF_P_FCW || i == LMF_P_FCPROJW || i == LMF_P_LMHEAD;
}
