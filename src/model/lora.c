/* lora.c — LoRA adapters (see lora.h). */
#include "model/lora.h"

#include "core/alloc.h"
#include "core/rng.h"
#include "core/status.h"
#include "kernels/dropout.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name, *match; /* match: the name a target list uses (gpt2's two c_proj answer to "c_proj") */
    int m0, m1;
} module_def;

/* PEFT's module names per family, in lmf_layer_matrices order (q, k, v, o, gate, up, down). */
static const module_def LLAMA[] = {{"q_proj", "q_proj", 0, 1},    {"k_proj", "k_proj", 1, 2},
                                   {"v_proj", "v_proj", 2, 3},    {"o_proj", "o_proj", 3, 4},
                                   {"gate_proj", "gate_proj", 4, 5}, {"up_proj", "up_proj", 5, 6},
                                   {"down_proj", "down_proj", 6, 7}};
/* Phi-3 keeps q|k|v in one Linear and gate|up in another: PEFT's adapter on qkv_proj has one A over the three
 * (its B's rows land on q, k and v, adjacent in the block's qkv row as gpt2's c_attn), gate_up_proj's over gate and
 * up (the block's gate|up row) */
static const module_def PHI3[] = {{"qkv_proj", "qkv_proj", 0, 3}, {"o_proj", "o_proj", 3, 4},
                                  {"gate_up_proj", "gate_up_proj", 4, 6}, {"down_proj", "down_proj", 6, 7}};
static const module_def GPT2[] = {{"c_attn", "c_attn", 0, 3}, {"attn.c_proj", "c_proj", 3, 4},
                                  {"c_fc", "c_fc", 5, 6},     {"mlp.c_proj", "c_proj", 6, 7}};
static const module_def OPT[] = {{"q_proj", "q_proj", 0, 1},   {"k_proj", "k_proj", 1, 2}, {"v_proj", "v_proj", 2, 3},
                                 {"out_proj", "out_proj", 3, 4}, {"fc1", "fc1", 5, 6},     {"fc2", "fc2", 6, 7}};

/* A mixture of experts with a shared expert (Qwen2-MoE): its gate_proj, up_proj and down_proj are nn.Linear
 * modules (mlp.shared_expert.*), on the layer matrices 4, 5, 6 a MoE has no dense FFN for; a bare "gate_proj" names
 * them as PEFT's suffix match does (the routed experts are parameters in transformers 5, not modules). Its
 * shared_expert_gate is SHARED_GATE (lmf_lora_create adds it). */
static const module_def SHARED[] = {{"q_proj", "q_proj", 0, 1},
                                    {"k_proj", "k_proj", 1, 2},
                                    {"v_proj", "v_proj", 2, 3},
                                    {"o_proj", "o_proj", 3, 4},
                                    {"shared_expert.gate_proj", "gate_proj", 4, 5},
                                    {"shared_expert.up_proj", "up_proj", 5, 6},
                                    {"shared_expert.down_proj", "down_proj", 6, 7}};
static const char SHARED_GATE_NAME[] = "shared_expert_gate";

/* A mixture of experts offers its attention projections (and a shared expert's Linears) as modules: transformers 5
 * keeps a Mixtral's experts as fused 3-D parameters and its router as a bare weight, which PEFT adapts through
 * target_parameters (its ParamWrapper: one A and B over all experts of a layer), listed in PARAMS; docs/moe.md has
 * PEFT's definition. */
static const module_def *family(const lmf_model_config *c, int *n) {
    if (c->arch == LMF_ARCH_PHI3) return *n = 4, PHI3;
    if (lmf_arch_is_llama_family(c->arch) && c->n_expert && c->shared_ffn_dim) return *n = 7, SHARED;
    if (lmf_arch_is_llama_family(c->arch))
        return *n = c->n_expert ? 4 : 7, LLAMA;
    if (c->arch == LMF_ARCH_OPT) return *n = 6, OPT;
    return *n = 4, GPT2;
}

const char *lmf_lora_default_targets(const lmf_model_config *cfg) {
    return cfg->arch == LMF_ARCH_GPT2 ? "c_attn" : cfg->arch == LMF_ARCH_PHI3 ? "qkv_proj" : "q_proj,v_proj";
}

const char *lmf_lora_module_names(const lmf_model_config *cfg) {
    int llama = lmf_arch_is_llama_family(cfg->arch);
    if (cfg->arch == LMF_ARCH_PHI3) return "qkv_proj,o_proj,gate_up_proj,down_proj";
    if (llama && cfg->n_expert && cfg->shared_ffn_dim && cfg->shared_gate) /* down_proj: the shared expert's */
        return "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,shared_expert_gate,gate.weight,gate_up_proj,"
               "experts.down_proj";
    if (llama && cfg->n_expert && cfg->shared_ffn_dim)
        return "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,gate.weight,gate_up_proj,experts.down_proj";
    return llama ? (cfg->n_expert ? "q_proj,k_proj,v_proj,o_proj,gate.weight,gate_up_proj,down_proj"
                                  : "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
           : cfg->arch == LMF_ARCH_OPT ? "q_proj,k_proj,v_proj,out_proj,fc1,fc2"
                                       : "c_attn,c_proj,c_fc";
}

/* A MoE's target_parameters as PEFT's spellings name them (a suffix of model.layers.N.mlp.experts.gate_up_proj or
 * of model.layers.N.mlp.gate.weight); LMF_LORA_LINEAR when t is none of them. The module names are PEFT's entries
 * in adapter_config.json's target_parameters. */
static const struct {
    const char *spelling;
    lmf_lora_kind kind;
} PARAMS[] = {{"gate.weight", LMF_LORA_ROUTER},
              {"mlp.gate.weight", LMF_LORA_ROUTER},
              {"gate", LMF_LORA_ROUTER},
              {"mlp.gate", LMF_LORA_ROUTER},
              {"gate_up_proj", LMF_LORA_EXPERTS_GATE_UP},
              {"experts.gate_up_proj", LMF_LORA_EXPERTS_GATE_UP},
              {"mlp.experts.gate_up_proj", LMF_LORA_EXPERTS_GATE_UP},
              {"down_proj", LMF_LORA_EXPERTS_DOWN},
              {"experts.down_proj", LMF_LORA_EXPERTS_DOWN},
              {"mlp.experts.down_proj", LMF_LORA_EXPERTS_DOWN}};
static const char *const PARAM_NAME[] = {"", "gate.weight", "gate_up_proj", "down_proj"};

static lmf_lora_kind param_target(const char *t) {
    for (size_t i = 0; i < sizeof PARAMS / sizeof *PARAMS; i++)
        if (!strcmp(t, PARAMS[i].spelling)) return PARAMS[i].kind;
    return LMF_LORA_LINEAR;
}

const char *lmf_lora_param_name(const char *s) {
    lmf_lora_kind k = param_target(s);
    return k ? PARAM_NAME[k] : NULL;
}

/* Whether a target names a MoE feed-forward weight lmforge does not adapt, as PEFT or transformers spell it: v4's
 * per-expert w1 w2 w3, separate gate_proj / up_proj of the experts (fused into gate_up_proj in transformers 5), or
 * a shared expert's weights on a model without one, so the refusal says what is missing rather than calling the
 * name unknown. */
static int moe_weight(const char *t) {
    static const char *const leaf[] = {"gate_up_proj", "down_proj", "gate_proj", "up_proj", "w1", "w2", "w3",
                                       "gate",         "shared_expert_gate"};
    const char *dot = strrchr(t, '.');
    const char *last = dot ? dot + 1 : t;
    for (size_t i = 0; i < sizeof leaf / sizeof *leaf; i++)
        if (!strcmp(last, leaf[i])) return 1;
    return strstr(t, "experts") || strstr(t, "shared_expert");
}

/* PEFT's rule: a target names a module when it is the module's path or a suffix of it after a dot. path: the
 * module's path inside a layer ("self_attn.q_proj", "mlp.shared_expert.gate_proj"). */
static int suffix_match(const char *path, const char *t) {
    size_t np = strlen(path), nt = strlen(t);
    return !strcmp(path, t) || (np > nt && path[np - nt - 1] == '.' && !strcmp(path + np - nt, t));
}

/* Whether target t names module d of a llama-family layer (PEFT's suffix match on its path) or of another family
 * (its name, or the name a target list uses: gpt2's "c_proj" is both). */
static int names_module(const lmf_model_config *c, const module_def *d, const char *t) {
    if (!strcmp(t, d->match) || !strcmp(t, d->name)) return 1;
    if (!lmf_arch_is_llama_family(c->arch)) return 0;
    char path[64];
    snprintf(path, sizeof path, "%s%s", d->m0 < 4 ? "self_attn." : "mlp.", d->name);
    return suffix_match(path, t);
}

/* Rows and input width of matrix m of a layer of cfg (on a MoE, matrices 4, 5, 6 are the shared expert's). */
static void matrix_shape(const lmf_model_config *c, int m, int *rows, int *cols) {
    int C = c->n_embd, QD = lmf_q_width(c), KV = lmf_kv_width(c), F = c->n_expert ? c->shared_ffn_dim : c->ffn_dim;
    static const int kind[LMF_LAYER_MATRICES] = {0, 1, 1, 4, 2, 2, 3}; /* QD x C, KV x C, C x QD, F x C, C x F */
    *rows = kind[m] == 0 ? QD : kind[m] == 1 ? KV : kind[m] == 2 ? F : C;
    *cols = kind[m] == 3 ? F : kind[m] == 4 ? QD : C;
}

static void set_rank(lmf_lora *l, int mod, int r, float alpha) {
    lmf_lora_module *m = &l->mod[mod];
    m->r = r, m->alpha = alpha;
    m->sr = (l->rslora ? alpha / sqrtf((float)r) : alpha / (float)r) / l->scale;
}

lmf_status lmf_lora_create(const lmf_model_config *cfg, const char *targets, int r, float alpha, float dropout,
                           int rslora, lmf_lora **out) {
    return lmf_lora_create_pattern(cfg, targets, r, alpha, dropout, rslora, 0, NULL, NULL, NULL, out);
}

lmf_status lmf_lora_create_pattern(const lmf_model_config *cfg, const char *targets, int r, float alpha,
                                   float dropout, int rslora, int n_pat, const char *const *pat_names,
                                   const int *pat_r, const float *pat_alpha, lmf_lora **out) {
    *out = NULL;
    if (r <= 0 || r > 256) return lmf_fail(LMF_ERR_ARG, "lora rank r = %d must be in [1, 256]", r);
    if (!(alpha > 0)) return lmf_fail(LMF_ERR_ARG, "lora alpha = %g must be positive", alpha);
    if (!(dropout >= 0 && dropout < 1)) return lmf_fail(LMF_ERR_ARG, "lora dropout = %g must be in [0, 1)", dropout);
    int nd, moe = cfg->n_expert > 0 && lmf_arch_is_llama_family(cfg->arch);
    const module_def *defs = family(cfg, &nd);
    int want[LMF_LAYER_MATRICES] = {0}, param[4] = {0}, sh_gate = 0, all = !strcmp(targets, "all-linear");
    int has_gate = moe && cfg->shared_ffn_dim && cfg->shared_gate;
    /* What PEFT 0.21.2 over transformers 5.24 makes of all-linear (checked by tests/reference/peft_moe_targets.py):
     * on Mixtral, Qwen3-MoE and OLMoE the attention, the router and both expert parameters, gate_up_proj at rank 2r
     * (PEFT's transformers-5 conversion: v4's w1 and w3 became one fused parameter); on a Qwen2-MoE, which PEFT's
     * conversion table lacks, the nn.Linear modules only: the attention and the shared expert's gate_proj, up_proj,
     * down_proj and shared_expert_gate. A llama-architecture MoE with a shared expert has no Hugging Face model. */
    if (all && moe && cfg->shared_ffn_dim && cfg->arch != LMF_ARCH_QWEN2)
        return lmf_fail(LMF_ERR_ARG, "lora target all-linear on a %s mixture-of-experts model with a shared expert: "
                        "no Hugging Face model of that shape exists to say what PEFT's all-linear adapts "
                        "(docs/moe.md); name the targets instead (valid: %s)", lmf_arch_name(cfg->arch),
                        lmf_lora_module_names(cfg));
    if (all && moe && cfg->arch != LMF_ARCH_QWEN2)
        param[LMF_LORA_ROUTER] = param[LMF_LORA_EXPERTS_GATE_UP] = param[LMF_LORA_EXPERTS_DOWN] = 1;
    if (all) sh_gate = has_gate;
    if (!all) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", targets);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            int hit = 0;
            for (int i = 0; i < nd; i++)
                if (names_module(cfg, &defs[i], tok)) want[i] = hit = 1;
            if (!hit && has_gate && suffix_match("mlp.shared_expert_gate", tok)) sh_gate = hit = 1;
            /* a module's name wins over a parameter's: on a Qwen2-MoE "down_proj" is the shared expert's, as
             * PEFT's target_modules have it; "experts.down_proj" the experts' parameter */
            lmf_lora_kind pk = moe && !hit ? param_target(tok) : LMF_LORA_LINEAR;
            if (pk) param[pk] = hit = 1;
            if (!hit && cfg->n_expert && moe_weight(tok))
                return lmf_fail(LMF_ERR_ARG, "lora target '%s' names a weight of the experts or of a shared expert "
                                "of a %s mixture-of-experts model that lmforge does not adapt (valid: %s; the "
                                "experts' gate and up are one fused parameter, gate_up_proj, as in transformers 5 "
                                "and PEFT's target_parameters; docs/moe.md)", tok, lmf_arch_name(cfg->arch),
                                lmf_lora_module_names(cfg));
            if (!hit)
                return lmf_fail(LMF_ERR_ARG, "lora target '%s' is not a module of a %s%s model (valid: %s%s)", tok,
                                lmf_arch_name(cfg->arch), cfg->n_expert ? " mixture-of-experts" : "",
                                lmf_lora_module_names(cfg),
                                moe && cfg->shared_ffn_dim && cfg->arch != LMF_ARCH_QWEN2 ? "" : ", all-linear");
        }
    }
    int nparam = param[1] + param[2] + param[3];
    if (nparam && dropout != 0.0f)
        return lmf_fail(LMF_ERR_ARG, "lora dropout = %g with targets '%s' that adapt a mixture of experts' %s: PEFT "
                        "adapts those as target_parameters (ParamWrapper), which raises for lora_dropout != 0 (the "
                        "input cannot be dropped out of a weight's delta); use --lora-dropout 0 (docs/moe.md)",
                        dropout, targets, param[1] && !param[2] && !param[3] ? "router" : "experts");
    lmf_lora *l = lmf_xcalloc(1, sizeof *l);
    l->r = r, l->alpha = alpha, l->dropout = dropout, l->rslora = rslora;
    l->scale = rslora ? alpha / sqrtf((float)r) : alpha / (float)r;
    l->n_layer = cfg->n_layer;
    for (int q = 0; q < LMF_LAYER_MATRICES; q++) {
        int cols = 0;
        matrix_shape(cfg, q, &l->rows[q], &cols);
    }
    for (int i = 0; i < nd; i++) {
        if (!all && !want[i]) continue;
        if (!lmf_act_gated(cfg->act) && defs[i].m0 == 4) continue; /* no gate matrix outside SwiGLU */
        lmf_lora_module *m = &l->mod[l->n_mod++];
        snprintf(m->name, sizeof m->name, "%s", defs[i].name);
        m->kind = LMF_LORA_LINEAR, m->m0 = defs[i].m0, m->m1 = defs[i].m1, m->n_exp = 1;
        int rows, cols = 0;
        m->out = 0;
        for (int k = m->m0; k < m->m1; k++) matrix_shape(cfg, k, &rows, &cols), m->out += rows;
        m->in = cols;
    }
    if (sh_gate) { /* Qwen2-MoE's shared_expert_gate: an nn.Linear (1, C) */
        lmf_lora_module *m = &l->mod[l->n_mod++];
        snprintf(m->name, sizeof m->name, "%s", SHARED_GATE_NAME);
        m->kind = LMF_LORA_SHARED_GATE, m->m0 = m->m1 = -1, m->in = cfg->n_embd, m->out = 1, m->n_exp = 1;
    }
    for (int k = LMF_LORA_ROUTER; k <= LMF_LORA_EXPERTS_DOWN; k++) {
        if (!param[k]) continue;
        lmf_lora_module *m = &l->mod[l->n_mod++];
        int C = cfg->n_embd, F = cfg->ffn_dim, E = cfg->n_expert;
        snprintf(m->name, sizeof m->name, "%s", PARAM_NAME[k]);
        m->kind = (lmf_lora_kind)k, m->m0 = m->m1 = -1;
        m->in = k == LMF_LORA_EXPERTS_DOWN ? F : C;
        m->out = k == LMF_LORA_ROUTER ? E : k == LMF_LORA_EXPERTS_GATE_UP ? 2 * F : C;
        m->n_exp = k == LMF_LORA_ROUTER ? 1 : E;
    }
    for (int k = 0; k < l->n_mod; k++) { /* PEFT's all-linear on a Mixtral: rank_pattern / alpha_pattern 2r, 2 alpha */
        int twice = all && l->mod[k].kind == LMF_LORA_EXPERTS_GATE_UP;
        set_rank(l, k, twice ? 2 * r : r, twice ? 2 * alpha : alpha);
        for (int i = 0; i < n_pat; i++) {
            if (strcmp(pat_names[i], l->mod[k].name)) continue;
            if (lmf_lora_is_module(l->mod[k].kind) && (pat_r[i] != r || pat_alpha[i] != alpha)) {
                lmf_lora_free(l);
                return lmf_fail(LMF_ERR_ARG, "lora module %s: rank %d / alpha %g differ from r = %d / lora_alpha %g "
                                "(rank_pattern / alpha_pattern): per-module ranks are supported on a mixture of "
                                "experts' parameters only", pat_names[i], pat_r[i], pat_alpha[i], r, alpha);
            }
            if (pat_r[i] < 1 || pat_r[i] > 512 || !(pat_alpha[i] > 0)) {
                lmf_lora_free(l);
                return lmf_fail(LMF_ERR_ARG, "lora module %s: rank %d and alpha %g (rank_pattern / alpha_pattern) "
                                "must be in [1, 512] and positive", pat_names[i], pat_r[i], pat_alpha[i]);
            }
            set_rank(l, k, pat_r[i], pat_alpha[i]);
        }
    }
    l->off = lmf_xmalloc(sizeof(size_t) * (size_t)l->n_layer * l->n_mod + 1);
    size_t off = 0;
    for (int L = 0; L < l->n_layer; L++)
        for (int k = 0; k < l->n_mod; k++) {
            const lmf_lora_module *m = &l->mod[k];
            l->off[L * l->n_mod + k] = off;
            off += (size_t)m->n_exp * m->r * (m->in + m->out);
        }
    l->n_params = off;
    l->params = lmf_alloc_big(off * sizeof(float));
    *out = l;
    return LMF_OK;
}

void lmf_lora_free(lmf_lora *l) {
    if (!l) return;
    lmf_free_big(l->params);
    lmf_free_big(l->grads);
    free(l->off);
    free(l);
}

void lmf_lora_init(lmf_lora *l, uint64_t seed) {
    for (int L = 0; L < l->n_layer; L++)
        for (int k = 0; k < l->n_mod; k++) {
            const lmf_lora_module *m = &l->mod[k];
            float *A = lmf_lora_A(l, L, k), bound = 1.0f / sqrtf((float)m->in);
            lmf_rng g;
            lmf_rng_seed(&g, seed, (uint64_t)(L * l->n_mod + k) + 1);
            for (size_t i = 0; i < (size_t)m->n_exp * m->r * m->in; i++)
                A[i] = bound * (2.0f * lmf_rng_uniform(&g) - 1.0f);
            memset(lmf_lora_B(l, L, k), 0, sizeof(float) * (size_t)m->n_exp * m->out * m->r);
        }
}

void lmf_lora_enable_grads(lmf_lora *l) {
    if (!l->grads) l->grads = lmf_alloc_big(l->n_params * sizeof(float));
}

float *lmf_lora_A(const lmf_lora *l, int layer, int mod) { return l->params + l->off[layer * l->n_mod + mod]; }
float *lmf_lora_B(const lmf_lora *l, int layer, int mod) {
    const lmf_lora_module *m = &l->mod[mod];
    return lmf_lora_A(l, layer, mod) + (size_t)m->n_exp * m->r * m->in;
}
float *lmf_lora_dA(const lmf_lora *l, int layer, int mod) { return l->grads + l->off[layer * l->n_mod + mod]; }
float *lmf_lora_dB(const lmf_lora *l, int layer, int mod) {
    const lmf_lora_module *m = &l->mod[mod];
    return lmf_lora_dA(l, layer, mod) + (size_t)m->n_exp * m->r * m->in;
}

float lmf_lora_scale_of(const lmf_lora *l, int mod) { return l->scale * l->mod[mod].sr; }

int lmf_lora_find(const lmf_lora *l, lmf_lora_kind kind) {
    for (int k = 0; k < l->n_mod; k++)
        if (l->mod[k].kind == kind) return k;
    return -1;
}

int lmf_lora_max_rank(const lmf_lora *l) {
    int r = l->r;
    for (int k = 0; k < l->n_mod; k++) r = l->mod[k].r > r ? l->mod[k].r : r;
    return r;
}

/* Only the modules save values (their rank is l->r; they come first, so module k's slab is k N r); a MoE's
 * parameter adapters recompute A x. */
size_t lmf_lora_t_floats(const lmf_lora *l, int N) {
    int n = 0;
    for (int k = 0; k < l->n_mod; k++) n += lmf_lora_is_module(l->mod[k].kind);
    return (size_t)N * l->r * n;
}

/* A counter-based hash (splitmix64's finalizer, kernels/dropout.h) of everything that names the element: the key
 * of (seed, step, layer, module) xor the element's index. Kept when its top 53 bits, read as a fraction of 2^53, are
 * at least the dropout rate: (z >> 11) >= ceil(rate 2^53), exactly. */
static uint64_t mask_key(const lmf_lora *l, int layer, int mod) {
    return l->seed ^ (l->step * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(layer * 64 + mod) << 48);
}
static uint64_t keep_from(const lmf_lora *l) { return (uint64_t)ceil((double)l->dropout * 0x1.0p53); }

int lmf_lora_keep(const lmf_lora *l, int layer, int mod, size_t e) {
    return lmf_dropout_kept(mask_key(l, layer, mod), e, keep_from(l));
}

/* Row by row over the threads (each bit a function of its index): out (N x K, K apart) = mask x scale of module
 * (layer, mod)'s inputs x (ldx apart; out may be x), element (i, j) numbered i K + j; with add, then din (ldd
 * apart) += out. */
static void mask_rows(const lmf_lora *l, int layer, int mod, float *out, const float *x, int ldx, int N,
                      float *din, int ldd) {
    int K = l->mod[mod].in;
    uint64_t key = mask_key(l, layer, mod), from = keep_from(l);
    float scale = 1.0f / (1.0f - l->dropout);
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static) if ((size_t)N * K > 32768)
    for (int i = 0; i < N; i++) {
        float *o = out + (size_t)i * K;
        v->dropout(o, x + (size_t)i * ldx, K, key, (uint64_t)i * K, from, scale);
        for (int j = 0; din && j < K; j++) din[(size_t)i * ldd + j] += o[j]; /* the product rounded first */
    }
}

/* drop(in) of module (layer, mod) into xd (N, in), or in itself when there is no dropout. */
static const float *dropped(const lmf_lora *l, int layer, int mod, const float *in, int ldi, int N, int training,
                            float *xd, int *ld) {
    int K = l->mod[mod].in;
    if (!training || l->dropout == 0.0f) return *ld = ldi, in;
    mask_rows(l, layer, mod, xd, in, ldi, N, NULL, 0);
    return *ld = K, xd;
}

/* Where module k's outputs start in a row of the outputs of matrices [m0, ...): after the rows of the matrices
 * before it. */
static int out_col(const lmf_lora *l, int k, int m0) {
    int col = 0;
    for (int q = m0; q < l->mod[k].m0; q++) col += l->rows[q];
    return col;
}

void lmf_lora_mod_forward(const lmf_lora *l, int layer, int k, const float *in, int ldi, float *out, int ldo, int N,
                          int training, float *t, float *xd) {
    const lmf_lora_module *m = &l->mod[k];
    int r = l->r, ld;
    float *tk = t ? t + (size_t)k * N * r : lmf_xmalloc(sizeof(float) * (size_t)N * r);
    const float *x = dropped(l, layer, k, in, ldi, N, training, xd, &ld);
    lmf_sgemm(0, 1, N, r, m->in, x, ld, lmf_lora_A(l, layer, k), m->in, 0.0f, tk, r);
    for (size_t i = 0; i < (size_t)N * r; i++) tk[i] *= l->scale;
    lmf_sgemm(0, 1, N, m->out, r, tk, r, lmf_lora_B(l, layer, k), r, 1.0f, out, ldo);
    if (!t) free(tk);
}

void lmf_lora_forward(const lmf_lora *l, int layer, int m0, int m1, const float *in, int ldi, float *out, int ldo,
                      int N, int training, float *t, float *xd) {
    for (int k = 0; k < l->n_mod; k++) {
        const lmf_lora_module *m = &l->mod[k];
        if (m->kind != LMF_LORA_LINEAR || m->m0 < m0 || m->m1 > m1) continue;
        lmf_lora_mod_forward(l, layer, k, in, ldi, out + out_col(l, k, m0), ldo, N, training, t, xd);
    }
}

void lmf_lora_mod_backward(lmf_lora *l, int layer, int k, const float *in, int ldi, const float *dout, int ldo,
                           const float *t, float *din, int N, float *scratch) {
    const lmf_lora_module *m = &l->mod[k];
    int r = l->r;
    const float *tk = t + (size_t)k * N * r, *dk = dout;
    float *dt = scratch, *dx = scratch + (size_t)N * r;
    /* out += tk B^T, tk = scale A x': dB += dout^T tk; dt = scale dout B; dA += dt^T x'; dx' = dt A */
    lmf_sgemm(1, 0, m->out, r, N, dk, ldo, tk, r, 1.0f, lmf_lora_dB(l, layer, k), r);
    lmf_sgemm(0, 0, N, r, m->out, dk, ldo, lmf_lora_B(l, layer, k), r, 0.0f, dt, r);
    for (size_t i = 0; i < (size_t)N * r; i++) dt[i] *= l->scale;
    int ld;
    const float *x = dropped(l, layer, k, in, ldi, N, 1, dx, &ld);
    lmf_sgemm(1, 0, r, m->in, N, dt, r, x, ld, 1.0f, lmf_lora_dA(l, layer, k), m->in);
    if (l->dropout == 0.0f) {
        lmf_sgemm(0, 0, N, m->in, r, dt, r, lmf_lora_A(l, layer, k), m->in, 1.0f, din, ldi);
        return;
    }
    lmf_sgemm(0, 0, N, m->in, r, dt, r, lmf_lora_A(l, layer, k), m->in, 0.0f, dx, m->in);
    mask_rows(l, layer, k, dx, dx, m->in, N, din, ldi);
}

void lmf_lora_backward(lmf_lora *l, int layer, int m0, int m1, const float *in, int ldi, const float *dout, int ldo,
                       const float *t, float *din, int N, float *scratch) {
    for (int k = 0; k < l->n_mod; k++) {
        const lmf_lora_module *m = &l->mod[k];
        if (m->kind != LMF_LORA_LINEAR || m->m0 < m0 || m->m1 > m1) continue;
        lmf_lora_mod_backward(l, layer, k, in, ldi, dout + out_col(l, k, m0), ldo, t, din, N, scratch);
    }
}

/* Rows [lo, hi) of module k's output for N input rows, B's rows from row0 (a matrix's first row in the module). */
static void decode_rows(const lmf_lora *l, int layer, int k, int row0, const float *in, int ldi, int N, float *out,
                        int ldo, int lo, int hi) {
    const lmf_lora_module *m = &l->mod[k];
    int r = l->r;
    const float *A = lmf_lora_A(l, layer, k), *Bm = lmf_lora_B(l, layer, k) + (size_t)row0 * r;
    for (int i = 0; i < N; i++) {
        float t[256];
        const float *x = in + (size_t)i * ldi;
        for (int j = 0; j < r; j++) {
            float s = 0.0f;
            for (int e = 0; e < m->in; e++) s += A[(size_t)j * m->in + e] * x[e];
            t[j] = l->scale * s;
        }
        float *y = out + (size_t)i * ldo;
        for (int row = lo; row < hi; row++) {
            float s = 0.0f;
            for (int j = 0; j < r; j++) s += t[j] * Bm[(size_t)row * r + j];
            y[row] += s;
        }
    }
}

void lmf_lora_mod_decode_rows(const lmf_lora *l, int layer, int k, const float *in, int ldi, int N, float *out,
                              int ldo, int lo, int hi) {
    if (hi > lo) decode_rows(l, layer, k, 0, in, ldi, N, out, ldo, lo, hi);
}

void lmf_lora_decode_rows(const lmf_lora *l, int layer, int mat, const float *in, int ldi, int N, float *out, int ldo,
                          int lo, int hi) {
    for (int k = 0; k < l->n_mod; k++) {
        const lmf_lora_module *m = &l->mod[k];
        if (m->kind != LMF_LORA_LINEAR || mat < m->m0 || mat >= m->m1 || hi <= lo) continue;
        int off = 0;
        for (int q = m->m0; q < mat; q++) off += l->rows[q]; /* matrix mat's first row in the module's B */
        decode_rows(l, layer, k, off, in, ldi, N, out, ldo, lo, hi);
    }
}

/* ---- a mixture of experts' parameter adapters (PEFT's target_parameters) -------------------------------------- */

static const float *param_A(const lmf_lora *l, const float *base, int layer, int mod, int e) {
    const lmf_lora_module *m = &l->mod[mod];
    return base + l->off[layer * l->n_mod + mod] + (size_t)e * m->r * m->in;
}
static size_t param_B_off(const lmf_lora *l, int layer, int mod, int e) {
    const lmf_lora_module *m = &l->mod[mod];
    return l->off[layer * l->n_mod + mod] + (size_t)m->n_exp * m->r * m->in + (size_t)e * m->out * m->r;
}

void lmf_lora_param_forward(const lmf_lora *l, int layer, int mod, int e, const float *in, int ldi, float *out,
                            int ldo, int n, float *scratch) {
    const lmf_lora_module *m = &l->mod[mod];
    int r = m->r;
    if (n <= 0) return;
    /* n x r values: expert rows are at most the step's N, so this is small beside the expert's own products */
    float *t = scratch ? scratch : lmf_xmalloc(sizeof(float) * (size_t)n * r);
    lmf_sgemm(0, 1, n, r, m->in, in, ldi, param_A(l, l->params, layer, mod, e), m->in, 0.0f, t, r);
    float s = lmf_lora_scale_of(l, mod);
    for (size_t i = 0; i < (size_t)n * r; i++) t[i] *= s;
    lmf_sgemm(0, 1, n, m->out, r, t, r, l->params + param_B_off(l, layer, mod, e), r, 1.0f, out, ldo);
    if (!scratch) free(t);
}

void lmf_lora_param_backward(lmf_lora *l, int layer, int mod, int e, const float *in, int ldi, const float *dout,
                             int ldo, float *din, int n, float *scratch) {
    const lmf_lora_module *m = &l->mod[mod];
    int r = m->r;
    if (n <= 0) return;
    float s = lmf_lora_scale_of(l, mod), *t = scratch ? scratch : lmf_xmalloc(sizeof(float) * (size_t)n * r * 2);
    float *dt = t + (size_t)n * r;
    const float *A = param_A(l, l->params, layer, mod, e), *Bm = l->params + param_B_off(l, layer, mod, e);
    float *dA = (float *)param_A(l, l->grads, layer, mod, e), *dB = l->grads + param_B_off(l, layer, mod, e);
    /* out += t B^T with t = s in A^T: dB += dout^T t; dt = s dout B; dA += dt^T in; din += dt A */
    lmf_sgemm(0, 1, n, r, m->in, in, ldi, A, m->in, 0.0f, t, r);
    for (size_t i = 0; i < (size_t)n * r; i++) t[i] *= s;
    lmf_sgemm(1, 0, m->out, r, n, dout, ldo, t, r, 1.0f, dB, r);
    lmf_sgemm(0, 0, n, r, m->out, dout, ldo, Bm, r, 0.0f, dt, r);
    for (size_t i = 0; i < (size_t)n * r; i++) dt[i] *= s;
    lmf_sgemm(1, 0, r, m->in, n, dt, r, in, ldi, 1.0f, dA, m->in);
    if (din) lmf_sgemm(0, 0, n, m->in, r, dt, r, A, m->in, 1.0f, din, ldi);
    if (!scratch) free(t);
}

void lmf_lora_param_decode_rows(const lmf_lora *l, int layer, int mod, int e, const float *in, int ldi,
                                const int32_t *tok, int n, float *out, int ldo, int lo, int hi) {
    const lmf_lora_module *m = &l->mod[mod];
    int r = m->r;
    if (hi <= lo) return;
    const float *A = param_A(l, l->params, layer, mod, e), *Bm = l->params + param_B_off(l, layer, mod, e);
    float s = lmf_lora_scale_of(l, mod);
    for (int q = 0; q < n; q++) {
        float t[512];
        const float *x = in + (size_t)(tok ? tok[q] : q) * ldi;
        for (int j = 0; j < r; j++) {
            float a = 0.0f;
            for (int c = 0; c < m->in; c++) a += A[(size_t)j * m->in + c] * x[c];
            t[j] = s * a;
        }
        float *y = out + (size_t)q * ldo;
        for (int row = lo; row < hi; row++) {
            float v = 0.0f;
            for (int j = 0; j < r; j++) v += t[j] * Bm[(size_t)row * r + j];
            y[row] += v;
        }
    }
}
