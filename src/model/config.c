/* config.c — the model configuration: family defaults and knobs, validation. */
#include "model/model.h"
#include "core/status.h"

#include <math.h>
#include <string.h>

/* qwen2 is llama with biases on q, k and v, qwen3 and olmoe llama with a norm on q and k, phi3 llama with its
 * matrices stored fused: everything that holds for llama's knobs holds for them. */
static int llama_like(lmf_arch arch) {
    return arch == LMF_ARCH_LLAMA || arch == LMF_ARCH_QWEN2 || arch == LMF_ARCH_QWEN3 || arch == LMF_ARCH_OLMOE ||
           arch == LMF_ARCH_PHI3 || arch == LMF_ARCH_GEMMA3 || arch == LMF_ARCH_GEMMA2;
}

int lmf_arch_is_gemma(lmf_arch arch) { return arch == LMF_ARCH_GEMMA3 || arch == LMF_ARCH_GEMMA2; }

int lmf_act_gated(lmf_act_kind act) { return act == LMF_ACT_SWIGLU || act == LMF_ACT_GEGLU; }

void lmf_model_config_set_arch(lmf_model_config *c, lmf_arch arch) {
    int learned = !llama_like(arch);
    c->arch = arch;
    c->norm = learned ? LMF_NORM_LAYER : LMF_NORM_RMS;
    c->act = !learned ? LMF_ACT_SWIGLU : arch == LMF_ARCH_OPT ? LMF_ACT_RELU : LMF_ACT_GELU_TANH;
    c->pos = learned ? LMF_POS_LEARNED : LMF_POS_ROPE_HALF;
    c->pos_offset = arch == LMF_ARCH_OPT ? 2 : 0;
    c->bias = learned;
    c->qkv_bias = arch == LMF_ARCH_QWEN2;
    c->qk_norm = arch == LMF_ARCH_QWEN3 || arch == LMF_ARCH_GEMMA3 ? LMF_QK_NORM_HEAD
                 : arch == LMF_ARCH_OLMOE                          ? LMF_QK_NORM_FULL
                                                                   : LMF_QK_NORM_NONE;
    int gemma = lmf_arch_is_gemma(arch);
    if (gemma) c->act = LMF_ACT_GEGLU;
    c->post_norms = gemma, c->embed_scale = gemma;
}

lmf_model_config lmf_model_config_default(lmf_arch arch) {
    lmf_model_config c;
    memset(&c, 0, sizeof c);
    lmf_model_config_set_arch(&c, arch);
    if (!llama_like(arch)) { /* GPT-2 124M (OPT-125m has the same shape) */
        c.vocab_size = 50257, c.max_seq_len = 1024, c.n_layer = 12, c.n_embd = 768, c.n_head = 12;
        c.n_kv_head = 12, c.ffn_dim = 3072, c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.tied_embeddings = 1;
    } else { /* the SmolLM2-135M shape */
        c.vocab_size = 49152, c.max_seq_len = 2048, c.n_layer = 30, c.n_embd = 576, c.n_head = 9;
        c.n_kv_head = 3, c.ffn_dim = 1536, c.norm_eps = 1e-5f, c.rope_theta = 100000.0f, c.tied_embeddings = 1;
    }
    return c;
}

int lmf_head_size(const lmf_model_config *c) { return c->head_dim ? c->head_dim : c->n_embd / c->n_head; }
int lmf_q_width(const lmf_model_config *c) { return c->n_head * lmf_head_size(c); }
int lmf_kv_width(const lmf_model_config *c) { return c->n_kv_head * lmf_head_size(c); }

int lmf_rope_freq_factors(const lmf_model_config *c, float *out) {
    /* LongRoPE's factors are the model's (lmf_weights.rope_short / rope_long), not the config's */
    if (c->rope_scaling == LMF_ROPE_SCALING_NONE || c->rope_scaling == LMF_ROPE_SCALING_LONGROPE) return 0;
    int hs = lmf_head_size(c), half = hs / 2;
    double factor = c->rope_factor;
    /* Llama 3's band edges are wavelengths (positions per turn): pairs turning more than high_freq_factor times in
     * the original context keep their frequency, pairs turning less than low_freq_factor times are slowed by the
     * factor, and the ones between are interpolated in 1/f by how many turns they make (as transformers'
     * _compute_llama3_parameters and llama.cpp's converter, in double here) */
    double ctx = c->rope_orig_ctx, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    for (int i = 0; i < half; i++) {
        double f = factor;
        if (c->rope_scaling == LMF_ROPE_SCALING_LLAMA3) {
            double wavelen = 2.0 * 3.14159265358979323846 / pow((double)c->rope_theta, -2.0 * i / hs);
            if (wavelen < ctx / hi) f = 1.0;
            else if (wavelen <= ctx / lo) {
                double smooth = (ctx / wavelen - lo) / (hi - lo);
                f = 1.0 / ((1.0 - smooth) / factor + smooth);
            }
        }
        out[i] = (float)f;
    }
    return 1;
}

int lmf_arch_is_llama_family(lmf_arch arch) { return llama_like(arch); }

const char *lmf_arch_name(lmf_arch arch) {
    return arch == LMF_ARCH_LLAMA   ? "llama"
           : arch == LMF_ARCH_OPT   ? "opt"
           : arch == LMF_ARCH_QWEN2 ? "qwen2"
           : arch == LMF_ARCH_QWEN3 ? "qwen3"
           : arch == LMF_ARCH_OLMOE ? "olmoe"
           : arch == LMF_ARCH_PHI3  ? "phi3"
           : arch == LMF_ARCH_GEMMA3 ? "gemma3"
           : arch == LMF_ARCH_GEMMA2 ? "gemma2"
                                    : "gpt2";
}

lmf_status lmf_arch_parse(const char *name, lmf_arch *out) {
    static const char *const names[] = {"gpt2",  "llama", "opt",    "qwen2", "qwen3",
                                        "olmoe", "phi3",  "gemma3", "gemma2"}; /* by lmf_arch */
    int i = lmf_name_index(name, names, 9);
    if (i < 0)
        return lmf_fail(LMF_ERR_ARG,
                        "arch: unknown model family '%s' (expected gpt2, llama, opt, qwen2, qwen3, olmoe, phi3, "
                        "gemma3 or gemma2)", name);
    *out = (lmf_arch)i;
    return LMF_OK;
}

#define REQUIRE LMF_REQUIRE_ARG

lmf_status lmf_model_config_validate(const lmf_model_config *c) {
    REQUIRE(c->arch == LMF_ARCH_GPT2 || llama_like(c->arch) || c->arch == LMF_ARCH_OPT, "arch: invalid value %d",
            (int)c->arch);
    REQUIRE(c->norm == LMF_NORM_LAYER || c->norm == LMF_NORM_RMS, "norm: invalid value %d", (int)c->norm);
    REQUIRE(c->act >= LMF_ACT_GELU_TANH && c->act <= LMF_ACT_GEGLU, "act: invalid value %d", (int)c->act);
    REQUIRE(c->pos >= LMF_POS_LEARNED && c->pos <= LMF_POS_ROPE_INTERLEAVED, "pos: invalid value %d", (int)c->pos);
    REQUIRE(c->pos_offset >= 0 && c->pos_offset <= 16, "pos_offset: %d outside [0, 16]", c->pos_offset);
    REQUIRE(c->vocab_size > 0, "vocab_size: must be positive, got %d", c->vocab_size);
    REQUIRE(c->max_seq_len > 0, "max_seq_len: must be positive, got %d", c->max_seq_len);
    REQUIRE(c->n_layer > 0, "n_layer: must be positive, got %d", c->n_layer);
    REQUIRE(c->n_embd > 0, "n_embd: must be positive, got %d", c->n_embd);
    REQUIRE(c->n_head > 0, "n_head: must be positive, got %d", c->n_head);
    /* head_dim 0 (every config before it existed) keeps the head size n_embd / n_head */
    REQUIRE(c->head_dim >= 0 && c->head_dim <= (1 << 16), "head_dim: %d outside [0, 65536] (0: n_embd / n_head)",
            c->head_dim);
    REQUIRE(c->head_dim || c->n_embd % c->n_head == 0,
            "n_embd (%d) must be a multiple of n_head (%d) unless head_dim is set", c->n_embd, c->n_head);
    REQUIRE((long long)c->n_head * lmf_head_size(c) <= (1 << 24), "n_head x head_dim (%d x %d) is too large",
            c->n_head, lmf_head_size(c));
    REQUIRE(c->n_kv_head > 0 && c->n_head % c->n_kv_head == 0,
            "n_kv_head (%d) must be positive and divide n_head (%d)", c->n_kv_head, c->n_head);
    REQUIRE(c->ffn_dim > 0, "ffn_dim: must be positive, got %d", c->ffn_dim);
    REQUIRE(c->norm_eps > 0.0f, "norm_eps: must be positive, got %g", c->norm_eps);
    if (!llama_like(c->arch)) {
        REQUIRE(c->n_kv_head == c->n_head, "n_kv_head (%d) must equal n_head (%d) for %s", c->n_kv_head,
                c->n_head, lmf_arch_name(c->arch));
        REQUIRE(c->tied_embeddings, "tied_embeddings: %s always ties its output head to wte", lmf_arch_name(c->arch));
        REQUIRE(c->head_dim == 0 || (long long)c->head_dim * c->n_head == c->n_embd,
                "head_dim: %s heads are n_embd / n_head (%d) wide, got %d", lmf_arch_name(c->arch),
                c->n_embd / c->n_head, c->head_dim);
    }
    if (c->pos != LMF_POS_LEARNED) {
        REQUIRE(lmf_head_size(c) % 2 == 0, "head size (head_dim or n_embd/n_head: %d) must be even for RoPE",
                lmf_head_size(c));
        REQUIRE(c->rope_theta > 0.0f, "rope_theta: must be positive, got %g", c->rope_theta);
    }
    REQUIRE(c->rope_scaling >= LMF_ROPE_SCALING_NONE && c->rope_scaling <= LMF_ROPE_SCALING_LONGROPE,
            "rope_scaling: %d is not 0 (none), 1 (linear), 2 (llama3) or 3 (longrope)", (int)c->rope_scaling);
    if (c->rope_scaling == LMF_ROPE_SCALING_NONE) {
        /* a factor without a kind is a typo, not plain RoPE */
        REQUIRE(c->rope_factor == 0.0f && c->rope_low_freq_factor == 0.0f && c->rope_high_freq_factor == 0.0f &&
                    c->rope_orig_ctx == 0,
                "rope_factor, rope_low_freq_factor, rope_high_freq_factor and rope_orig_ctx need rope_scaling "
                "(1 linear or 2 llama3)");
    } else {
        REQUIRE(c->pos != LMF_POS_LEARNED, "rope_scaling: %s has learned positions, not RoPE", lmf_arch_name(c->arch));
        REQUIRE(c->rope_factor > 0.0f && c->rope_factor <= 65536.0f, "rope_factor: %g outside (0, 65536]",
                c->rope_factor);
        if (c->rope_scaling == LMF_ROPE_SCALING_LLAMA3) {
            REQUIRE(c->rope_low_freq_factor > 0.0f && c->rope_high_freq_factor > c->rope_low_freq_factor &&
                        c->rope_high_freq_factor <= 65536.0f,
                    "rope_low_freq_factor (%g) and rope_high_freq_factor (%g): llama3 RoPE needs 0 < low < high",
                    c->rope_low_freq_factor, c->rope_high_freq_factor);
            REQUIRE(c->rope_orig_ctx > 0 && c->rope_orig_ctx <= (1 << 30), "rope_orig_ctx: %d outside [1, 2^30]",
                    c->rope_orig_ctx);
        } else if (c->rope_scaling == LMF_ROPE_SCALING_LONGROPE) {
            REQUIRE(c->rope_low_freq_factor == 0.0f && c->rope_high_freq_factor == 0.0f,
                    "rope_low_freq_factor and rope_high_freq_factor are llama3's, not longrope's");
            REQUIRE(c->rope_orig_ctx > 0 && c->rope_orig_ctx <= (1 << 30), "rope_orig_ctx: %d outside [1, 2^30]",
                    c->rope_orig_ctx);
        } else {
            REQUIRE(c->rope_low_freq_factor == 0.0f && c->rope_high_freq_factor == 0.0f && c->rope_orig_ctx == 0,
                    "rope_low_freq_factor, rope_high_freq_factor and rope_orig_ctx are llama3's (rope_scaling 2), "
                    "not linear's");
        }
    }
    REQUIRE(c->sliding_window >= 0 && c->sliding_window <= (1 << 30), "sliding_window: %d outside [0, 2^30]",
            c->sliding_window);
    REQUIRE(c->nope_interval >= 0 && c->nope_interval <= (1 << 30), "nope_interval: %d outside [0, 2^30]",
            c->nope_interval);
    REQUIRE(c->nope_interval == 0 || (c->arch == LMF_ARCH_LLAMA && c->pos != LMF_POS_LEARNED),
            "nope_interval: SmolLM3's NoPE layers (the llama family with RoPE), not %s's", lmf_arch_name(c->arch));
    int gemma = lmf_arch_is_gemma(c->arch);
    REQUIRE(c->sliding_window == 0 || c->arch == LMF_ARCH_LLAMA || c->arch == LMF_ARCH_PHI3 || gemma,
            "sliding_window: Mistral's, Mixtral's, Phi-3's and Gemma's (llama, phi3, gemma3, gemma2), not %s's",
            lmf_arch_name(c->arch));
    REQUIRE(gemma || (!c->post_norms && !c->embed_scale && c->attn_scale == 0.0f && c->swa_pattern == 0 &&
                      c->rope_theta_swa == 0.0f && c->act != LMF_ACT_GEGLU),
            "post_norms, embed_scale, attn_scale, swa_pattern, rope_theta_swa and GeGLU are Gemma's, not %s's",
            lmf_arch_name(c->arch));
    REQUIRE(!gemma || (c->act == LMF_ACT_GEGLU && !c->n_expert && !c->bias && !c->qkv_bias &&
                       c->pos == LMF_POS_ROPE_HALF &&
                       c->qk_norm == (c->arch == LMF_ARCH_GEMMA3 ? LMF_QK_NORM_HEAD : LMF_QK_NORM_NONE)),
            "%s: GeGLU and RoPE on halves (gemma3 with a per-head q/k norm, gemma2 without), no experts or biases",
            lmf_arch_name(c->arch));
    REQUIRE((c->attn_softcap == 0.0f && c->final_softcap == 0.0f) || c->arch == LMF_ARCH_GEMMA2,
            "attn_softcap and final_softcap are gemma2's, not %s's", lmf_arch_name(c->arch));
    REQUIRE(c->attn_softcap >= 0.0f && c->attn_softcap <= 1e6f && c->final_softcap >= 0.0f &&
                c->final_softcap <= 1e6f,
            "attn_softcap (%g) and final_softcap (%g): outside [0, 1e6]", c->attn_softcap, c->final_softcap);
    REQUIRE(c->attn_scale >= 0.0f && c->attn_scale <= 16.0f, "attn_scale: %g outside [0, 16]", c->attn_scale);
    REQUIRE(c->swa_pattern >= 0 && c->swa_pattern <= (1 << 30), "swa_pattern: %d outside [0, 2^30]", c->swa_pattern);
    REQUIRE(c->rope_theta_swa >= 0.0f && c->rope_theta_swa <= 1e12f, "rope_theta_swa: %g outside [0, 1e12]",
            c->rope_theta_swa);
    REQUIRE(!(c->bias && c->act == LMF_ACT_SWIGLU), "bias: linear biases with SwiGLU are not supported");
    REQUIRE(c->qkv_bias == 0 || c->qkv_bias == 1, "qkv_bias: %d is not 0 or 1", c->qkv_bias);
    REQUIRE(c->shared_gate == 0 || (c->shared_gate == 1 && c->n_expert > 0 && c->shared_ffn_dim > 0),
            "shared_gate: %d needs a mixture of experts with a shared expert (n_expert %d, shared_ffn_dim %d)",
            c->shared_gate, c->n_expert, c->shared_ffn_dim);
    REQUIRE(c->qk_norm >= LMF_QK_NORM_NONE && c->qk_norm <= LMF_QK_NORM_FULL,
            "qk_norm: %d is not 0 (none), 1 (per head) or 2 (full width)", (int)c->qk_norm);
    REQUIRE(c->qk_norm == LMF_QK_NORM_NONE || c->norm == LMF_NORM_RMS,
            "qk_norm: a q/k norm is an RMSNorm and needs the RMSNorm families (llama, qwen2, qwen3), not %s",
            lmf_arch_name(c->arch));
    /* the norm's weight runs along a head's dimensions in Hugging Face's order; llama.cpp's interleaved Q/K rows
     * would need it permuted too, and no q/k-norm GGUF (qwen3, qwen3moe) permutes them */
    REQUIRE(c->qk_norm == LMF_QK_NORM_NONE || c->pos == LMF_POS_ROPE_HALF,
            "qk_norm: a q/k norm needs rotate_half RoPE (pos %d)", (int)c->pos);
    REQUIRE(c->n_expert >= 0 && c->n_expert <= LMF_MAX_EXPERT, "n_expert: %d outside [0, %d] (0: a dense FFN)",
            c->n_expert, LMF_MAX_EXPERT);
    if (c->n_expert) {
        REQUIRE(c->act == LMF_ACT_SWIGLU && !c->bias,
                "n_expert: mixture of experts needs the llama family (SwiGLU experts without biases), not %s",
                lmf_arch_name(c->arch));
        REQUIRE(c->n_expert_used >= 1 && c->n_expert_used <= c->n_expert,
                "n_expert_used: %d outside [1, n_expert=%d]", c->n_expert_used, c->n_expert);
        REQUIRE(c->shared_ffn_dim >= 0 && c->shared_ffn_dim <= (1 << 30),
                "shared_ffn_dim: %d outside [0, 2^30]", c->shared_ffn_dim);
        REQUIRE(c->router_aux_coef >= 0.0f && c->router_z_coef >= 0.0f,
                "router_aux_coef (%g) and router_z_coef (%g) must not be negative", c->router_aux_coef,
                c->router_z_coef);
        REQUIRE(c->capacity_factor == 0.0f || (c->capacity_factor > 0.0f && c->capacity_factor <= 1024.0f),
                "capacity_factor: %g outside (0, 1024] (0: dropless)", c->capacity_factor);
        /* every expert's stack of gate|up rows is one int dimension of the parameter table */
        REQUIRE((long long)c->n_expert * 2 * c->ffn_dim < (1LL << 31) &&
                    (long long)c->n_expert * c->n_embd < (1LL << 31),
                "n_expert x ffn_dim (%d x %d) too large", c->n_expert, c->ffn_dim);
    } else {
        REQUIRE(c->n_expert_used == 0 && c->shared_ffn_dim == 0,
                "n_expert_used (%d) and shared_ffn_dim (%d) need n_expert > 0", c->n_expert_used, c->shared_ffn_dim);
    }
    /* Shapes go through int dims (2 x ffn_dim for SwiGLU, max_seq_len + pos_offset rows): values from a file or a
     * flag stay far enough below 2^31 that no such sum or double overflows. */
    REQUIRE(c->ffn_dim <= (1 << 30), "ffn_dim: %d is too large (at most 2^30)", c->ffn_dim);
    REQUIRE(c->max_seq_len <= (1 << 30), "max_seq_len: %d is too large (at most 2^30)", c->max_seq_len);
    REQUIRE(c->n_layer <= (1 << 30), "n_layer: %d is too large (at most 2^30)", c->n_layer);
    /* Buffers are indexed with long, but shapes go through int dims: keep every single tensor under 2^31. */
    REQUIRE((long long)c->vocab_size * c->n_embd < (1LL << 31), "vocab_size x n_embd too large");
    return LMF_OK;
}
