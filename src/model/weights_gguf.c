/* weights_gguf.c — a GGUF file as inference weights (weights.h), tensors used in place from the mapping.
 *
 * Architectures (general.architecture) and llama.cpp's tensor names, GGUF dims in ggml order (ne0 = in-features):
 *   llama: token_embd, output (absent: tied), output_norm, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
 *          ffn_norm, ffn_gate, ffn_up, ffn_down}. Q/K rows are in llama.cpp's interleaved-pair order, so RoPE runs
 *          in that order too (LMF_POS_ROPE_INTERLEAVED): attention scores do not depend on the order of dimensions
 *          inside a head as long as q and k agree, so the rows need no un-permuting.
 *          Mixture of experts (llama.expert_count, llama.expert_used_count; llama.expert_weights_norm, absent: true;
 *          llama.expert_shared_feed_forward_length): blk.N.{ffn_gate_inp (router, [C, E]), ffn_gate_exps /
 *          ffn_up_exps ([C, F, E]), ffn_down_exps ([F, C, E]), ffn_{gate,up,down}_shexp} instead of ffn_gate/up/down.
 *   qwen2: llama's tensors (no MoE) plus blk.N.attn_{q,k,v}.bias (optional, as in llama.cpp: all layers or none);
 *          Q/K rows in Hugging Face's rotate_half order
 *          (llama.cpp's converter does not permute them for qwen2, whose RoPE is NEOX-style: LMF_POS_ROPE_HALF).
 *   qwen2moe: qwen2 with every layer a mixture of experts (qwen2moe.expert_count, expert_used_count,
 *          expert_feed_forward_length: each expert's F; expert_shared_feed_forward_length; the top-k weights are not
 *          renormalised, as in llama.cpp, unless expert_weights_norm says so): ffn_gate_inp, ffn_{gate,up,down}_exps,
 *          ffn_{gate,up,down}_shexp and ffn_gate_inp_shexp ([C] or [C, 1]: the shared expert's sigmoid gate).
 *   qwen3: llama's tensors, Q/K rows unpermuted as for qwen2 (llama.cpp's converter is qwen2's), plus
 *          blk.N.attn_{q,k}_norm ([hs] each: the per-head RMSNorm on q and k before RoPE).
 *   qwen3moe: qwen3 with every layer a mixture of experts (qwen3moe.expert_count, expert_used_count,
 *          expert_feed_forward_length): ffn_gate_inp and ffn_{gate,up,down}_exps, no shared expert; the top-k weights
 *          renormalised, as llama.cpp always does for qwen3moe, unless expert_weights_norm says not.
 *   olmoe: llama's tensors, Q/K rows unpermuted (llama.cpp's converter does not permute them; NEOX RoPE), plus
 *          blk.N.attn_q_norm [C] and attn_k_norm [KV] (an RMSNorm over the whole q and k rows); every layer a mixture
 *          of experts (olmoe.expert_count, expert_used_count; feed_forward_length each expert's F), the top-k weights
 *          not renormalised (llama.cpp's olmoe) unless expert_weights_norm says so.
 *   phi3:  llama's tensors but attn_qkv (q|k|v rows; separate attn_q/k/v read too) and ffn_up of 2F rows (gate then
 *          up) with no ffn_gate, cut into views; Q/K rows unpermuted (NEOX RoPE). LongRoPE (the 128k models):
 *          rope_factors_short / rope_factors_long [hs/2], phi3.rope.scaling.original_context_length, attn_factor.
 *   gpt2:  token_embd, position_embd, output (absent: tied), output_norm(.bias), blk.N.{attn_norm, attn_qkv (fused
 *          q|k|v rows), attn_output, ffn_norm, ffn_up, ffn_down} each with .weight and .bias.
 * Head size (every family but gpt2): <arch>.attention.key_length (= value_length) when present, else
 * embedding_length / head_count; attn_q is then [C, n_head hs], attn_output [n_head hs, C].
 * RoPE scaling (docs/formats.md): <arch>.rope.scaling.type none / linear with <arch>.rope.scaling.factor (or
 * rope.scale_linear), and for llama rope_freqs.weight (F32 [hs/2], each pair's frequency divisor: how llama.cpp's
 * converter stores Llama 3's "llama3" scaling), turned back into the config's parameters. */
#include "core/alloc.h"
#include "core/status.h"
#include "io/gguf.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lmf_status get_dim(const lmf_gguf *g, const char *key, int *out) {
    uint32_t u = 0;
    LMF_TRY(lmf_gguf_get_u32(g, key, &u));
    if (u == 0 || u > (1u << 30)) return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %u is out of range", g->path, key, u);
    *out = (int)u;
    return LMF_OK;
}

/* Llama 3's scaling from llama.cpp's rope_freqs.weight, the hs/2 divisors r_i of the pairs' frequencies that its
 * converter computes from (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) and stores
 * instead of them. They fix those four only up to a common scale of the last three, so lmforge takes Llama 3.x's
 * low 1 and high 4, factor = the largest r_i, and the original context from a pair between the band edges (every
 * such pair gives ctx = wavelength (1 + 3 s), s = (factor / r_i - 1) / (factor - 1)); without one, the smallest
 * power of two that puts the edges between the pairs. The result must give the file's divisors back (within 1e-4),
 * else the file is refused: llama.cpp's own GGUFs of Llama 3.1 / 3.2 / 3.3 and lmforge's give them back exactly. */
static lmf_status llama3_from_freqs(const lmf_gguf *g, const float *r, int half, lmf_model_config *cfg) {
    int hs = 2 * half;
    double fmax = 0, lo_w = 0, hi_w = INFINITY, ctx_sum = 0;
    int n_mid = 0;
    for (int i = 0; i < half; i++) fmax = r[i] > fmax ? r[i] : fmax;
    for (int i = 0; i < half; i++) {
        double w = 2.0 * M_PI * pow((double)cfg->rope_theta, 2.0 * i / hs);
        if (r[i] <= 1.0 + 1e-5) lo_w = 4.0 * w > lo_w ? 4.0 * w : lo_w; /* ctx / 4 above this wavelength */
        else if (r[i] >= fmax * (1.0 - 1e-5)) hi_w = w < hi_w ? w : hi_w; /* ctx below this one */
        else ctx_sum += w * (1.0 + 3.0 * ((fmax / r[i] - 1.0) / (fmax - 1.0))), n_mid++;
    }
    double ctx = 0;
    if (n_mid) ctx = floor(ctx_sum / n_mid + 0.5);
    else
        for (double p = 1; p <= (1 << 30) && !ctx; p *= 2)
            if (p > lo_w && p < hi_w) ctx = p;
    cfg->rope_scaling = LMF_ROPE_SCALING_LLAMA3;
    cfg->rope_factor = (float)fmax, cfg->rope_low_freq_factor = 1.0f, cfg->rope_high_freq_factor = 4.0f;
    cfg->rope_orig_ctx = ctx >= 1 && ctx <= (1 << 30) ? (int)ctx : 0;
    float *f = lmf_xmalloc(sizeof(float) * (size_t)half);
    int ok = cfg->rope_orig_ctx > 0 && lmf_rope_freq_factors(cfg, f), bad = -1;
    for (int i = 0; ok && i < half && bad < 0; i++)
        if (!(fabs(f[i] - r[i]) <= 1e-4 * r[i])) bad = i;
    free(f);
    if (!ok || bad >= 0)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor rope_freqs.weight: its %d frequency divisors (pair %d: %g) are not "
                        "Llama 3's RoPE scaling (low_freq_factor 1, high_freq_factor 4, factor %g) for any original "
                        "context length; lmforge runs those and linear scaling only", g->path, half, bad < 0 ? 0 : bad,
                        bad < 0 ? r[0] : r[bad], fmax);
    return LMF_OK;
}

/* RoPE scaling: <arch>.rope.scaling.type ("none" or "linear"; "yarn" and "longrope" refused by name) and
 * <arch>.rope.scaling.factor (or the older rope.scale_linear), which llama.cpp applies as a linear scale whatever the
 * type; and the tensor rope_freqs.weight (F32 [hs/2], llama only: llama.cpp's other graphs never read it), which
 * becomes llama3 scaling (llama3_from_freqs) or, when every divisor is the same, linear scaling. */
static lmf_status rope_scaling(const lmf_gguf *g, const char *arch, lmf_model_config *cfg) {
    char key[96];
    float lin = 0.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (lmf_gguf_find(g, key)) {
        const char *t = NULL;
        LMF_TRY(lmf_gguf_get_str(g, key, &t));
        if (strcmp(t, "none") && strcmp(t, "linear"))
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s = \"%s\": lmforge runs RoPE scaling of types none and linear "
                            "(and llama3 as rope_freqs.weight) only", g->path, key, t);
    }
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    if (!lmf_gguf_find(g, key)) snprintf(key, sizeof key, "%s.rope.scale_linear", arch);
    if (lmf_gguf_find(g, key)) {
        LMF_TRY(lmf_gguf_get_f32(g, key, &lin));
        if (!(lin >= 0.0f && lin <= 65536.0f))
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %g is outside [0, 65536]", g->path, key, lin);
    }
    if (lin != 0.0f && lin != 1.0f) /* llama.cpp: 0 (and 1) leave the frequencies alone */
        cfg->rope_scaling = LMF_ROPE_SCALING_LINEAR, cfg->rope_factor = lin;
    const lmf_gguf_tensor *t = lmf_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t) return LMF_OK;
    int half = lmf_head_size(cfg) / 2;
    if (strcmp(arch, "llama"))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor rope_freqs.weight (RoPE frequency factors) in a %s GGUF: llama.cpp "
                        "applies it to the llama architecture only", g->path, arch);
    if (t->type != LMF_GGML_F32 || t->n_dims != 1 || t->ne[0] != half)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor rope_freqs.weight has type %u and %d dims [%lld], expected F32 "
                        "[%d] (half the head size)", g->path, t->type, t->n_dims, (long long)t->ne[0], half);
    const float *r = t->data;
    int same = 1;
    for (int i = 0; i < half; i++) {
        if (!(r[i] >= 1e-6f && r[i] <= 65536.0f))
            return lmf_fail(LMF_ERR_FORMAT, "%s: tensor rope_freqs.weight: element %d = %g is outside [1e-6, 65536]",
                            g->path, i, r[i]);
        if (fabsf(r[i] - r[0]) > 1e-6f * r[0]) same = 0;
    }
    if (same) { /* one divisor for every pair: linear scaling, on top of the file's own */
        float f = (cfg->rope_scaling ? cfg->rope_factor : 1.0f) * r[0];
        if (f != 1.0f) cfg->rope_scaling = LMF_ROPE_SCALING_LINEAR, cfg->rope_factor = f;
        else cfg->rope_scaling = LMF_ROPE_SCALING_NONE, cfg->rope_factor = 0.0f;
        return LMF_OK;
    }
    if (cfg->rope_scaling)
        return lmf_fail(LMF_ERR_FORMAT, "%s: both %s.rope.scaling.factor (linear) and llama3 frequency factors "
                        "(rope_freqs.weight): lmforge runs one RoPE scaling at a time", g->path, arch);
    return llama3_from_freqs(g, r, half, cfg);
}

/* Gemma's keys, as llama.cpp's gemma3 and gemma2 read them: a window (attention.sliding_window; gemma2: 4096 when
 * absent) on all layers but every Nth (attention.sliding_window_pattern, 6 / 2 when absent; or an array of one flag
 * per layer, true = windowed, which must be such a pattern), whose RoPE base is rope.freq_base_swa (gemma3: 10000
 * without the file's scaling; gemma2: the global one); q.k scaled by 1/sqrt(head size), or by 1/sqrt(
 * embedding_length / head_count) for the 27B (62 / 46 layers); gemma2's attn_logit_softcapping and
 * final_logit_softcapping (gemma3 has none). */
static lmf_status gemma_config(const lmf_gguf *g, const char *arch, lmf_model_config *c) {
    char key[96];
    uint32_t u = 0;
    int v2 = c->arch == LMF_ARCH_GEMMA2;
    static const char *const caps[2] = {"final_logit_softcapping", "attn_logit_softcapping"};
    float *cap[2] = {&c->final_softcap, &c->attn_softcap};
    for (int i = 0; i < 2; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, caps[i]);
        if (lmf_gguf_find(g, key)) LMF_TRY(lmf_gguf_get_f32(g, key, cap[i]));
        if (!(*cap[i] >= 0.0f && *cap[i] <= 1e6f) || (!v2 && *cap[i] != 0.0f))
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %g: %s", g->path, key, *cap[i],
                            v2 ? "outside [0, 1e6]" : "soft-capping is Gemma 2's, not supported in a gemma3 file");
    }
    u = v2 ? 4096 : 0;
    snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
    if (lmf_gguf_find(g, key)) LMF_TRY(lmf_gguf_get_u32(g, key, &u));
    if (u > (1u << 30)) return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %u is too large", g->path, key, u);
    c->sliding_window = (int)u;
    c->swa_pattern = v2 ? 2 : 6;
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", arch);
    const lmf_gguf_kv *kv = lmf_gguf_find(g, key);
    if (kv && kv->type == LMF_GGUF_ARRAY) {
        const lmf_gguf_kv *a;
        LMF_TRY(lmf_gguf_get_arr(g, key, LMF_GGUF_BOOL, &a));
        if ((long long)a->count != c->n_layer)
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s has %llu entries for %d layers", g->path, key,
                            (unsigned long long)a->count, c->n_layer);
        const uint8_t *f = a->data;
        int n = 0;
        for (int l = 0; l < c->n_layer && !n; l++)
            if (!f[l]) n = l + 1;
        for (int l = 0; l < c->n_layer; l++)
            if (!f[l] != (n && (l + 1) % n == 0))
                return lmf_fail(LMF_ERR_FORMAT, "%s: %s: layer %d breaks the pattern of a global layer every %d; "
                                "lmforge runs no other", g->path, key, l, n);
        c->swa_pattern = n;
    } else if (kv) {
        LMF_TRY(lmf_gguf_get_u32(g, key, &u));
        if (u > (1u << 30)) return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %u is too large", g->path, key, u);
        c->swa_pattern = (int)u;
    }
    c->rope_theta_swa = v2 ? 0.0f : 10000.0f; /* gemma2: the global table unless the file names another */
    snprintf(key, sizeof key, "%s.rope.freq_base_swa", arch);
    if (lmf_gguf_find(g, key)) {
        LMF_TRY(lmf_gguf_get_f32(g, key, &c->rope_theta_swa));
        if (!(c->rope_theta_swa > 0.0f))
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %g must be positive", g->path, key, c->rope_theta_swa);
    }
    if (!c->sliding_window) c->swa_pattern = 0, c->rope_theta_swa = 0.0f; /* llama.cpp: every layer global */
    if (c->n_layer == (v2 ? 46 : 62)) /* as llama.cpp's 27B */
        c->attn_scale = 1.0f / sqrtf((float)(c->n_embd / c->n_head));
    return LMF_OK;
}

/* The config of a llama, qwen2, qwen2moe, qwen3, qwen3moe or olmoe GGUF (arch.* keys, vocab from token_embd.weight, tied when
 * output.weight is absent, q/k/v biases when blk.0 has them; max_seq_len = arch.context_length; RoPE scaling from
 * rope_scaling()), refusing what the model cannot represent (yarn / longrope scaling, partial rotary heads). */
static lmf_status llama_config(const lmf_gguf *g, const char *arch, lmf_model_config *out) {
    const char *path = g->path;
    /* qwen: any architecture but llama (Q/K rows unpermuted); qmoe: one whose every layer is a mixture of experts */
    int smollm3 = !strcmp(arch, "smollm3"); /* llama's layout, every 4th layer without RoPE (llama.cpp's fixed step) */
    int qwen = strcmp(arch, "llama") != 0 && !smollm3, qwen3 = !strncmp(arch, "qwen3", 5);
    int olmoe = !strcmp(arch, "olmoe");
    int qmoe = !strcmp(arch, "qwen2moe") || !strcmp(arch, "qwen3moe") || olmoe, phi3 = !strcmp(arch, "phi3");
    int gemma3 = !strcmp(arch, "gemma3"), gemma2 = !strcmp(arch, "gemma2");
    lmf_model_config cfg = lmf_model_config_default(olmoe    ? LMF_ARCH_OLMOE
                                                    : qwen3  ? LMF_ARCH_QWEN3
                                                    : phi3   ? LMF_ARCH_PHI3
                                                    : gemma3 ? LMF_ARCH_GEMMA3
                                                    : gemma2 ? LMF_ARCH_GEMMA2
                                                    : qwen  ? LMF_ARCH_QWEN2
                                                            : LMF_ARCH_LLAMA);
    cfg.nope_interval = smollm3 ? 4 : 0;
    int ctx_len = 0;
    char key[96];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    LMF_TRY(get_dim(g, KEY("block_count"), &cfg.n_layer));
    LMF_TRY(get_dim(g, KEY("embedding_length"), &cfg.n_embd));
    LMF_TRY(get_dim(g, KEY("feed_forward_length"), &cfg.ffn_dim));
    LMF_TRY(get_dim(g, KEY("attention.head_count"), &cfg.n_head));
    cfg.n_kv_head = cfg.n_head;
    if (lmf_gguf_find(g, KEY("attention.head_count_kv")))
        LMF_TRY(get_dim(g, KEY("attention.head_count_kv"), &cfg.n_kv_head));
    LMF_TRY(get_dim(g, KEY("context_length"), &ctx_len));
    LMF_TRY(lmf_gguf_get_f32(g, KEY("attention.layer_norm_rms_epsilon"), &cfg.norm_eps));
    cfg.rope_theta = 10000.0f; /* llama.cpp's default when the key is absent */
    if (lmf_gguf_find(g, KEY("rope.freq_base"))) LMF_TRY(lmf_gguf_get_f32(g, KEY("rope.freq_base"), &cfg.rope_theta));
    /* a head's size: attention.key_length when the file has it (llama.cpp writes it for qwen3, whose heads are
     * not embedding_length / head_count wide: Qwen3-0.6B's 16 heads of 128 on 1024), else that quotient. K and V
     * heads of different sizes (value_length != key_length) are not a layout lmforge runs. */
    int hs = 0, vs = 0;
    if (lmf_gguf_find(g, KEY("attention.key_length"))) LMF_TRY(get_dim(g, key, &hs));
    if (lmf_gguf_find(g, KEY("attention.value_length"))) LMF_TRY(get_dim(g, key, &vs));
    if (hs && vs && hs != vs)
        return lmf_fail(LMF_ERR_FORMAT, "%s: %s.attention.key_length %d != %s.attention.value_length %d: keys and "
                        "values of different head sizes are not supported", path, arch, hs, arch, vs);
    if (!hs) hs = vs;
    if (!hs && cfg.n_embd % cfg.n_head)
        return lmf_fail(LMF_ERR_FORMAT, "%s: %s.embedding_length %d is not a multiple of head_count %d and the file "
                        "has no %s.attention.key_length", path, arch, cfg.n_embd, cfg.n_head, arch);
    if (!hs) hs = cfg.n_embd / cfg.n_head;
    if ((long long)hs * cfg.n_head != cfg.n_embd) cfg.head_dim = hs; /* else 0: C / heads, as every config before head_dim */
    if (lmf_gguf_find(g, KEY("rope.dimension_count"))) {
        int v = 0;
        LMF_TRY(get_dim(g, key, &v));
        if (v != hs)
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %d but the head size is %d; only full-rotary heads are "
                            "supported", path, key, v, hs);
    }
    LMF_TRY(rope_scaling(g, arch, &cfg));
    /* Phi-3's 128k-context models (LongRoPE): per-pair factors, short and long (tensors, read by load()), chosen by
     * the context against original_context_length, and a cos/sin scale (attn_factor, 1 when absent, as llama.cpp);
     * the 4k ones have none. A sliding_window key is ignored, as llama.cpp does for phi3. */
    if (lmf_gguf_find_tensor(g, "rope_factors_long.weight") || lmf_gguf_find_tensor(g, "rope_factors_short.weight")) {
        if (!phi3 || cfg.rope_scaling)
            return lmf_fail(LMF_ERR_FORMAT, "%s: tensors rope_factors_long / rope_factors_short (LongRoPE) are read "
                            "for phi3 GGUFs without other RoPE scaling only", path);
        float attn = 1.0f;
        if (lmf_gguf_find(g, KEY("rope.scaling.attn_factor"))) LMF_TRY(lmf_gguf_get_f32(g, key, &attn));
        if (!(attn > 0.0f && attn <= 16.0f))
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s = %g is outside (0, 16]", path, key, attn);
        LMF_TRY(get_dim(g, KEY("rope.scaling.original_context_length"), &cfg.rope_orig_ctx));
        cfg.rope_scaling = LMF_ROPE_SCALING_LONGROPE, cfg.rope_factor = attn;
    }
    if (lmf_gguf_find_tensor(g, "output.bias"))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor output.bias (a biased output head) is not supported", path);
    /* q/k/v biases are optional in llama.cpp's qwen2 (Qwen2 has them; a Qwen2-MoE with qkv_bias false does not):
     * the first layer says, every layer must agree. llama's would need un-permuting with their rows: refused. */
    int has_bias = lmf_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    if (has_bias && (!qwen || qwen3 || olmoe || phi3))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor blk.0.attn_q.bias: attention biases in a %s GGUF are not "
                        "supported (a qwen2 GGUF's are)", path, arch);
    cfg.qkv_bias = has_bias;
    const lmf_gguf_tensor *emb = lmf_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor token_embd.weight is missing", path);
    if (emb->n_dims != 2 || emb->ne[0] != cfg.n_embd || emb->ne[1] <= 0 || emb->ne[1] > (1 << 30))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor token_embd.weight has %d dims [%lld, %lld], expected [%d, vocab]",
                        path, emb->n_dims, (long long)emb->ne[0], (long long)emb->ne[1], cfg.n_embd);
    cfg.vocab_size = (int)emb->ne[1];
    cfg.tied_embeddings = lmf_gguf_find_tensor(g, "output.weight") == NULL;
    uint32_t n_expert = 0; /* some writers put expert_count = 0 in dense files */
    if (lmf_gguf_find(g, KEY("expert_count"))) LMF_TRY(lmf_gguf_get_u32(g, key, &n_expert));
    if (qmoe && !n_expert)
        return lmf_fail(LMF_ERR_FORMAT, "%s: %s.expert_count is missing or 0 (a %s model is a mixture of experts)",
                        path, arch, arch);
    if (n_expert && qwen && !qmoe)
        return lmf_fail(LMF_ERR_FORMAT, "%s: %s.expert_count = %u: a %s mixture of experts is architecture %smoe",
                        path, arch, n_expert, arch, arch);
    if (n_expert) { /* Mixtral, Qwen3-MoE: renormalised top-k unless the file says not; Qwen2-MoE: not, as llama.cpp
                     * runs each */
        LMF_TRY(get_dim(g, KEY("expert_count"), &cfg.n_expert));
        LMF_TRY(get_dim(g, KEY("expert_used_count"), &cfg.n_expert_used));
        cfg.norm_topk_prob = !qmoe || qwen3; /* llama.cpp's olmoe: not renormalised */
        if (lmf_gguf_find(g, KEY("expert_weights_norm"))) LMF_TRY(lmf_gguf_get_bool(g, key, &cfg.norm_topk_prob));
        if (lmf_gguf_find(g, KEY("expert_shared_feed_forward_length")))
            LMF_TRY(get_dim(g, key, &cfg.shared_ffn_dim));
        if (olmoe) { /* feed_forward_length is each expert's F; no shared expert */
        } else if (qmoe && qwen3) { /* each expert's F has its own key; no shared expert */
            if (lmf_gguf_find(g, KEY("expert_feed_forward_length"))) LMF_TRY(get_dim(g, key, &cfg.ffn_dim));
        } else if (qmoe) { /* each expert's F has its own key; the shared expert (always there) defaults to the FFN's */
            if (lmf_gguf_find(g, KEY("expert_feed_forward_length"))) LMF_TRY(get_dim(g, key, &cfg.ffn_dim));
            if (!cfg.shared_ffn_dim) LMF_TRY(get_dim(g, KEY("feed_forward_length"), &cfg.shared_ffn_dim));
            cfg.shared_gate = 1;
        }
    }
    if (gemma3 || gemma2) LMF_TRY(gemma_config(g, arch, &cfg));
#undef KEY
    cfg.max_seq_len = ctx_len;
    if (lmf_model_config_validate(&cfg) != LMF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        return lmf_fail(LMF_ERR_FORMAT, "%s: hyperparameters do not make a valid %s config: %s", path, arch, msg);
    }
    *out = cfg;
    return LMF_OK;
}

/* Tensor `name` with ggml dims (cols) or (cols, rows); anything else is an error naming the expected shape. */
static lmf_status tensor(const lmf_gguf *g, const char *name, int rows, int cols, int vector,
                         const lmf_gguf_tensor **out) {
    const lmf_gguf_tensor *t = lmf_gguf_find_tensor(g, name);
    if (!t) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is missing", g->path, name);
    int ok = vector ? (t->n_dims == 1 && t->ne[0] == cols) : (t->n_dims == 2 && t->ne[0] == cols && t->ne[1] == rows);
    if (!ok) {
        if (vector)
            return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has %d dims [%lld, %lld], expected [%d]", g->path, name,
                            t->n_dims, (long long)t->ne[0], (long long)t->ne[1], cols);
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has %d dims [%lld, %lld], expected [%d, %d] (ggml order: in, "
                        "out)", g->path, name, t->n_dims, (long long)t->ne[0], (long long)t->ne[1], cols, rows);
    }
    *out = t;
    return LMF_OK;
}

static lmf_status matrix(const lmf_gguf *g, const char *name, int rows, int cols, lmf_wtensor *w) {
    const lmf_gguf_tensor *t = NULL;
    LMF_TRY(tensor(g, name, rows, cols, 0, &t));
    uint32_t bs = 0, bb = 0;
    if (!lmf_ggml_type_block(t->type, &bs, &bb) || cols % (int)bs)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s: type %u with rows of %d elements", g->path, name, t->type, cols);
    lmf_wtensor_set(w, t->type, rows, cols, t->data);
    return LMF_OK;
}

/* A 3-D stack of E matrices rows x cols (ggml dims cols, rows, E: llama.cpp's *_exps) as E views in out[3e + k]. */
static lmf_status stack3(const lmf_gguf *g, const char *name, int E, int rows, int cols, lmf_wtensor *out, int k) {
    const lmf_gguf_tensor *t = lmf_gguf_find_tensor(g, name);
    if (!t) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is missing", g->path, name);
    if (t->n_dims != 3 || t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != E)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has %d dims [%lld, %lld, %lld], expected [%d, %d, %d] (ggml "
                        "order: in, out, expert)", g->path, name, t->n_dims, (long long)t->ne[0],
                        (long long)t->ne[1], (long long)(t->n_dims > 2 ? t->ne[2] : 1), cols, rows, E);
    uint32_t bs = 0, bb = 0;
    if (!lmf_ggml_type_block(t->type, &bs, &bb) || cols % (int)bs)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s: type %u with rows of %d elements", g->path, name, t->type,
                        cols);
    for (int e = 0; e < E; e++) {
        lmf_wtensor_set(&out[3 * e + k], t->type, rows, cols, NULL);
        out[3 * e + k].data = (const char *)t->data + (size_t)e * rows * out[3 * e + k].row_bytes;
    }
    return LMF_OK;
}

static lmf_status vec(lmf_weights *w, const lmf_gguf *g, const char *name, int n, const float **out) {
    const lmf_gguf_tensor *t = NULL;
    LMF_TRY(tensor(g, name, 1, n, 1, &t));
    char what[160];
    snprintf(what, sizeof what, "%s: tensor %s", g->path, name);
    return lmf_weights_f32_copy(w, t->type, t->data, (size_t)n, what, out);
}

static lmf_status gpt2_config(const lmf_gguf *g, lmf_model_config *cfg) {
    *cfg = lmf_model_config_default(LMF_ARCH_GPT2);
    LMF_TRY(get_dim(g, "gpt2.block_count", &cfg->n_layer));
    LMF_TRY(get_dim(g, "gpt2.embedding_length", &cfg->n_embd));
    LMF_TRY(get_dim(g, "gpt2.feed_forward_length", &cfg->ffn_dim));
    LMF_TRY(get_dim(g, "gpt2.attention.head_count", &cfg->n_head));
    LMF_TRY(get_dim(g, "gpt2.context_length", &cfg->max_seq_len));
    LMF_TRY(lmf_gguf_get_f32(g, "gpt2.attention.layer_norm_epsilon", &cfg->norm_eps));
    cfg->n_kv_head = cfg->n_head;
    const lmf_gguf_tensor *emb = lmf_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || emb->ne[0] != cfg->n_embd || emb->ne[1] <= 0 || emb->ne[1] > (1 << 30))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor token_embd.weight is missing or not [%d, vocab]", g->path,
                        cfg->n_embd);
    cfg->vocab_size = (int)emb->ne[1];
    cfg->tied_embeddings = 1; /* GPT-2 ties its head; llama.cpp gpt2 GGUFs still carry a copy as output.weight */
    if (lmf_model_config_validate(cfg) != LMF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        return lmf_fail(LMF_ERR_FORMAT, "%s: hyperparameters do not make a valid gpt2 config: %s", g->path, msg);
    }
    return LMF_OK;
}

/* The shared expert's gate of a qwen2moe layer: [C] or, as llama.cpp's converter leaves HF's (1, C), [C, 1]. */
static lmf_status gate_vec(lmf_weights *w, const lmf_gguf *g, const char *name, int C, const float **out) {
    const lmf_gguf_tensor *t = lmf_gguf_find_tensor(g, name);
    if (!t) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is missing", g->path, name);
    if (!(t->ne[0] == C && (t->n_dims == 1 || (t->n_dims == 2 && t->ne[1] == 1))))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has %d dims [%lld, %lld], expected [%d] or [%d, 1]", g->path,
                        name, t->n_dims, (long long)t->ne[0], (long long)(t->n_dims > 1 ? t->ne[1] : 1), C, C);
    char what[160];
    snprintf(what, sizeof what, "%s: tensor %s", g->path, name);
    return lmf_weights_f32_copy(w, t->type, t->data, (size_t)C, what, out);
}

static lmf_status load(lmf_weights *w, const lmf_gguf *g) {
    const char *arch;
    LMF_TRY(lmf_gguf_get_str(g, "general.architecture", &arch));
    int gpt2 = !strcmp(arch, "gpt2");
    if (!gpt2 && strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0 && strcmp(arch, "qwen2moe") != 0 &&
        strcmp(arch, "qwen3") != 0 && strcmp(arch, "qwen3moe") != 0 && strcmp(arch, "olmoe") != 0 &&
        strcmp(arch, "phi3") != 0 && strcmp(arch, "smollm3") != 0 && strcmp(arch, "gemma3") != 0 &&
        strcmp(arch, "gemma2") != 0)
        return lmf_fail(LMF_ERR_FORMAT, "%s: general.architecture is \"%s\"; lmforge runs \"llama\", \"smollm3\", "
                        "\"qwen2\", \"qwen2moe\", \"qwen3\", \"qwen3moe\", \"olmoe\", \"phi3\", \"gemma3\", "
                        "\"gemma2\" and \"gpt2\" GGUFs", g->path, arch);
    lmf_model_config *c = &w->cfg;
    if (gpt2) {
        LMF_TRY(gpt2_config(g, c));
    } else {
        LMF_TRY(llama_config(g, arch, c));
        /* llama.cpp stores llama's Q and K rows permuted for adjacent-pair RoPE; qwen2's and qwen3's as Hugging Face
         * has them */
        c->pos = c->arch == LMF_ARCH_LLAMA ? LMF_POS_ROPE_INTERLEAVED : LMF_POS_ROPE_HALF;
    }
    int C = c->n_embd, QD = lmf_q_width(c), KV = lmf_kv_width(c), F = c->ffn_dim, V = c->vocab_size;
    LMF_TRY(matrix(g, "token_embd.weight", V, C, &w->tok_emb));
    if (lmf_gguf_find_tensor(g, "output.weight")) LMF_TRY(matrix(g, "output.weight", V, C, &w->lm_head));
    else w->lm_head = w->tok_emb;
    if (gpt2) LMF_TRY(matrix(g, "position_embd.weight", c->max_seq_len, C, &w->pos_emb));
    LMF_TRY(vec(w, g, "output_norm.weight", C, &w->out_norm_w));
    if (c->rope_scaling == LMF_ROPE_SCALING_LONGROPE) {
        LMF_TRY(vec(w, g, "rope_factors_short.weight", lmf_head_size(c) / 2, &w->rope_short));
        LMF_TRY(vec(w, g, "rope_factors_long.weight", lmf_head_size(c) / 2, &w->rope_long));
    }
    if (gpt2) LMF_TRY(vec(w, g, "output_norm.bias", C, &w->out_norm_b));
    /* the layer table is sized by a number from the file: bound it by what the file holds before allocating (every
     * layer has at least its two norms and four matrices), so a hostile block_count is an error, not an abort */
    if ((int64_t)c->n_layer > g->n_tensors / 6)
        return lmf_fail(LMF_ERR_FORMAT, "%s: %s.block_count = %d layers need at least %lld tensors; the file has %lld",
                        g->path, arch, c->n_layer, 6LL * c->n_layer, (long long)g->n_tensors);
    w->layers = lmf_xcalloc((size_t)c->n_layer, sizeof *w->layers);
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
    for (int l = 0; l < c->n_layer; l++) {
        lmf_layer_weights *L = &w->layers[l];
        LMF_TRY(vec(w, g, NAME("attn_norm.weight"), C, &L->attn_norm_w));
        LMF_TRY(vec(w, g, NAME("ffn_norm.weight"), C, &L->ffn_norm_w));
        if (c->post_norms) { /* gemma3's, already 1 + w as llama.cpp's converter writes them */
            LMF_TRY(vec(w, g, NAME("post_attention_norm.weight"), C, &L->post_attn_norm_w));
            LMF_TRY(vec(w, g, NAME("post_ffw_norm.weight"), C, &L->post_ffn_norm_w));
        }
        LMF_TRY(matrix(g, NAME("attn_output.weight"), C, QD, &L->wo));
        if (c->n_expert) {
            int E = c->n_expert, Fs = c->shared_ffn_dim;
            L->experts = lmf_weights_alloc(w, sizeof(lmf_wtensor) * 3 * (size_t)E);
            LMF_TRY(matrix(g, NAME("ffn_gate_inp.weight"), E, C, &L->router));
            LMF_TRY(stack3(g, NAME("ffn_gate_exps.weight"), E, F, C, L->experts, 0));
            LMF_TRY(stack3(g, NAME("ffn_up_exps.weight"), E, F, C, L->experts, 1));
            LMF_TRY(stack3(g, NAME("ffn_down_exps.weight"), E, C, F, L->experts, 2));
            if (Fs) {
                LMF_TRY(matrix(g, NAME("ffn_gate_shexp.weight"), Fs, C, &L->sh_gate));
                LMF_TRY(matrix(g, NAME("ffn_up_shexp.weight"), Fs, C, &L->sh_up));
                LMF_TRY(matrix(g, NAME("ffn_down_shexp.weight"), C, Fs, &L->sh_down));
                if (c->shared_gate) LMF_TRY(gate_vec(w, g, NAME("ffn_gate_inp_shexp.weight"), C, &L->sh_gate_inp));
            }
        } else if (c->arch == LMF_ARCH_PHI3) { /* gate | up in one matrix (llama.cpp's SWIGLU halves) */
            lmf_wtensor gu;
            LMF_TRY(matrix(g, NAME("ffn_up.weight"), 2 * F, C, &gu));
            L->w_gate = lmf_wtensor_rows(&gu, 0, F), L->w_up = lmf_wtensor_rows(&gu, F, F);
            LMF_TRY(matrix(g, NAME("ffn_down.weight"), C, F, &L->w_down));
        } else {
            LMF_TRY(matrix(g, NAME("ffn_up.weight"), F, C, &L->w_up));
            LMF_TRY(matrix(g, NAME("ffn_down.weight"), C, F, &L->w_down));
        }
        if (gpt2) {
            lmf_wtensor qkv;
            const float *b;
            LMF_TRY(matrix(g, NAME("attn_qkv.weight"), 3 * C, C, &qkv));
            L->wq = lmf_wtensor_rows(&qkv, 0, C), L->wk = lmf_wtensor_rows(&qkv, C, C);
            L->wv = lmf_wtensor_rows(&qkv, 2 * C, C);
            LMF_TRY(vec(w, g, NAME("attn_qkv.bias"), 3 * C, &b));
            L->bq = b, L->bk = b + C, L->bv = b + 2 * C;
            LMF_TRY(vec(w, g, NAME("attn_norm.bias"), C, &L->attn_norm_b));
            LMF_TRY(vec(w, g, NAME("ffn_norm.bias"), C, &L->ffn_norm_b));
            LMF_TRY(vec(w, g, NAME("attn_output.bias"), C, &L->bo));
            LMF_TRY(vec(w, g, NAME("ffn_up.bias"), F, &L->b_up));
            LMF_TRY(vec(w, g, NAME("ffn_down.bias"), C, &L->b_down));
        } else {
            if (c->arch == LMF_ARCH_PHI3 && lmf_gguf_find_tensor(g, NAME("attn_qkv.weight"))) { /* else apart */
                lmf_wtensor qkv;
                LMF_TRY(matrix(g, name, QD + 2 * KV, C, &qkv));
                L->wq = lmf_wtensor_rows(&qkv, 0, QD), L->wk = lmf_wtensor_rows(&qkv, QD, KV);
                L->wv = lmf_wtensor_rows(&qkv, QD + KV, KV);
            } else {
                LMF_TRY(matrix(g, NAME("attn_q.weight"), QD, C, &L->wq));
                LMF_TRY(matrix(g, NAME("attn_k.weight"), KV, C, &L->wk));
                LMF_TRY(matrix(g, NAME("attn_v.weight"), KV, C, &L->wv));
            }
            if (c->qk_norm) { /* qwen3: [hs]; olmoe: [C] and [KV] */
                LMF_TRY(vec(w, g, NAME("attn_q_norm.weight"), lmf_qk_norm_width(c, 0), &L->q_norm_w));
                LMF_TRY(vec(w, g, NAME("attn_k_norm.weight"), lmf_qk_norm_width(c, 1), &L->k_norm_w));
            }
            if (c->qkv_bias) {
                LMF_TRY(vec(w, g, NAME("attn_q.bias"), QD, &L->bq));
                LMF_TRY(vec(w, g, NAME("attn_k.bias"), KV, &L->bk));
                LMF_TRY(vec(w, g, NAME("attn_v.bias"), KV, &L->bv));
            }
            if (!c->n_expert && c->arch != LMF_ARCH_PHI3) LMF_TRY(matrix(g, NAME("ffn_gate.weight"), F, C, &L->w_gate));
        }
    }
#undef NAME
    /* the vocabulary and its special tokens, when the file carries them */
    if (lmf_gguf_find(g, "tokenizer.ggml.tokens")) {
        LMF_TRY(lmf_tokenizer_from_gguf(g, &w->tok));
        if (lmf_tokenizer_vocab_size(w->tok) > V)
            return lmf_fail(LMF_ERR_FORMAT, "%s: the vocabulary has %d tokens but token_embd.weight only %d rows",
                            g->path, lmf_tokenizer_vocab_size(w->tok), V);
        lmf_gguf_specials sp;
        LMF_TRY(lmf_tokenizer_gguf_specials(g, &sp));
        w->bos_id = sp.bos, w->eos_id = sp.eos, w->eot_id = sp.eot;
        /* absent: llama.cpp's default, BOS for SentencePiece vocabularies, none for byte-level BPE */
        w->add_bos = sp.add_bos == 1 || (sp.add_bos < 0 && lmf_tokenizer_sentencepiece(w->tok));
        const lmf_gguf_kv *tmpl = lmf_gguf_find(g, "tokenizer.chat_template");
        if (tmpl && tmpl->type == LMF_GGUF_STRING) w->chat_template = strdup(tmpl->str);
    }
    return lmf_weights_validate(w, g->path);
}

lmf_status lmf_weights_load_gguf(const char *path, lmf_weights **out) {
    *out = NULL;
    lmf_gguf *g;
    LMF_TRY(lmf_gguf_open(path, &g));
    lmf_weights *w = lmf_weights_new();
    w->gguf = g;
    w->file_bytes = g->size;
    snprintf(w->source, sizeof w->source, "gguf");
    lmf_status st = load(w, g);
    if (st != LMF_OK) {
        lmf_weights_free(w);
        return st;
    }
    *out = w;
    return LMF_OK;
}
