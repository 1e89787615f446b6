/* lora.h — LoRA adapters on the linear layers of a transformer, as Hugging Face PEFT defines them.
 *
 * A module (PEFT's name for a linear layer: q_proj, v_proj, c_attn, ...) gets y += scale B A dropout(x): A is
 * (r, in), B (out, r), scale = alpha / r (alpha / sqrt r with rsLoRA). A module covers one or more consecutive
 * matrices of a layer in lmf_layer_matrices order (q, k, v, o, gate, up, down): gpt2's c_attn is q | k | v, which the
 * block library keeps adjacent in one qkv row, so its B's 3C outputs land on them directly. Init as PEFT's: A
 * kaiming-uniform with a = sqrt 5 (uniform in +-1/sqrt(in)), B zero, so a fresh adapter leaves the model unchanged.
 *
 * Parameters and gradients are each one flat fp32 buffer (layer-major, then module: A then B), so AdamW, clipping
 * and checkpoints work on them as on the model's own. Dropout draws its mask from a counter-based hash of (seed,
 * step, layer, module, element): the backward regenerates it instead of storing the dropped inputs. */
#ifndef LMF_MODEL_LORA_H
#define LMF_MODEL_LORA_H

#include "lmforge.h"
#include "model/weights.h"

#include <stddef.h>
#include <stdint.h>

/* What a module adapts: a linear layer of the block (dense LoRA, PEFT's target_modules), or a mixture of experts'
 * weight that transformers 5 keeps as a bare parameter and PEFT adapts through target_parameters (its ParamWrapper:
 * the delta s B A is added to the weight for the forward): the router (E, C), or the fused experts' gate_up_proj
 * (E, 2F, C: each expert's gate rows then its up rows) and down_proj (E, C, F), one adapter over all E experts of a
 * layer. docs/moe.md has PEFT's definition. */
typedef enum { LMF_LORA_LINEAR, LMF_LORA_ROUTER, LMF_LORA_EXPERTS_GATE_UP, LMF_LORA_EXPERTS_DOWN, LMF_LORA_SHARED_GATE }
lmf_lora_kind;
/* LMF_LORA_SHARED_GATE: Qwen2-MoE's shared_expert_gate, an nn.Linear (1, C) whose output goes through a sigmoid
 * and scales the shared expert (moe.c): a module like the LINEAR ones (dropout, saved values), outside the layer
 * matrices. On a mixture of experts with a shared expert the LINEAR modules on matrices 4, 5, 6 (gate, up, down)
 * are the shared expert's nn.Linear modules (PEFT's mlp.shared_expert.gate_proj ...): a MoE has no dense FFN. */

/* Whether a module is an nn.Linear in PEFT's terms (target_modules, dropout, saved values), not a parameter. */
static inline int lmf_lora_is_module(lmf_lora_kind k) { return k == LMF_LORA_LINEAR || k == LMF_LORA_SHARED_GATE; }

enum { LMF_LORA_MAX_MOD = 12 };

typedef struct {
    char name[24];  /* PEFT's name ("q_proj"; gpt2's two c_proj are "attn.c_proj" and "mlp.c_proj"; a MoE's
                     * target_parameters "gate.weight", "gate_up_proj", "down_proj"; a shared expert's
                     * "shared_expert.gate_proj" ..., "shared_expert_gate") */
    lmf_lora_kind kind;
    int m0, m1;     /* LINEAR: the layer matrices [m0, m1) it adds to; -1 for the others */
    int in, out;    /* each expert's A is (r, in), B (out, r) */
    int r;          /* this module's rank: l->r, or PEFT's rank_pattern (all-linear's gate_up_proj on a MoE: 2r) */
    float alpha;    /* and its alpha (alpha_pattern) */
    float sr;       /* its scale relative to l->scale (rsLoRA with a 2r rank: sqrt 2), so --lora-scale scales all */
    int n_exp;      /* experts: E (A is (E r, in), expert e's rows [e r, (e+1) r) as PEFT's; B is E blocks (out, r),
                     * PEFT's columns j E + e of expert e gathered); 1 for the others */
} lmf_lora_module;

typedef struct lmf_lora {
    int r;
    float alpha, dropout, scale;
    int rslora;
    int n_layer, n_mod;
    lmf_lora_module mod[LMF_LORA_MAX_MOD]; /* the LINEAR ones first, then SHARED_GATE, then the parameters */
    int rows[LMF_LAYER_MATRICES]; /* output rows of each layer matrix (q, k, v, o, gate, up, down) */
    size_t n_params;
    float *params, *grads; /* grads NULL until lmf_lora_enable_grads */
    size_t *off;           /* [n_layer * n_mod]: where A starts; B follows at + n_exp * r * in */
    uint64_t seed;         /* dropout masks: (seed, step) */
    uint64_t step;
} lmf_lora;

/* PEFT's default target_modules for cfg's family (its TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING):
 * "c_attn" for gpt2, "qkv_proj" for phi3, "q_proj,v_proj" for the others. */
const char *lmf_lora_default_targets(const lmf_model_config *cfg);
/* The PEFT module names a model of cfg's family offers, comma-separated ("q_proj,k_proj,..."). */
const char *lmf_lora_module_names(const lmf_model_config *cfg);
/* Adapters on the modules named in targets (comma-separated PEFT names, or "all-linear": every linear but the output
 * head). LMF_ERR_ARG names an unknown target and lists the valid ones for the family. On a mixture of experts the
 * targets also take the experts and the router as PEFT's target_parameters name them ("gate_up_proj",
 * "experts.gate_up_proj", "mlp.experts.gate_up_proj", the same for down_proj; the router "gate", "gate.weight",
 * "mlp.gate.weight"), which require dropout 0 (PEFT's ParamWrapper raises otherwise), and a shared expert's
 * modules as PEFT's suffix match names them ("gate_proj", "shared_expert.gate_proj", ..., "shared_expert_gate": a
 * module's name wins, so there "down_proj" is the shared expert's). "all-linear" is PEFT 0.21.2's set: on Mixtral,
 * Qwen3-MoE and OLMoE q/k/v/o, the router, gate_up_proj at rank 2r and alpha 2 alpha, down_proj; on Qwen2-MoE
 * q/k/v/o and the shared expert's four Linears. */
lmf_status lmf_lora_create(const lmf_model_config *cfg, const char *targets, int r, float alpha, float dropout,
                           int rslora, lmf_lora **out);
/* lmf_lora_create with PEFT's rank_pattern / alpha_pattern resolved to module names: module pat_names[i] (a name
 * of lmf_lora_module.name) gets rank pat_r[i] and alpha pat_alpha[i] (ranks up to 512; names not targeted are
 * ignored). Only a MoE's parameter adapters may differ from r / alpha. */
lmf_status lmf_lora_create_pattern(const lmf_model_config *cfg, const char *targets, int r, float alpha,
                                   float dropout, int rslora, int n_pat, const char *const *pat_names,
                                   const int *pat_r, const float *pat_alpha, lmf_lora **out);
void lmf_lora_free(lmf_lora *l);
/* PEFT's initialisation: A kaiming-uniform (a = sqrt 5), B zero; one random stream per tensor. */
void lmf_lora_init(lmf_lora *l, uint64_t seed);
void lmf_lora_enable_grads(lmf_lora *l);
float *lmf_lora_A(const lmf_lora *l, int layer, int mod);
float *lmf_lora_B(const lmf_lora *l, int layer, int mod);
/* The gradient buffers of the same (grads must be enabled). */
float *lmf_lora_dA(const lmf_lora *l, int layer, int mod);
float *lmf_lora_dB(const lmf_lora *l, int layer, int mod);
/* The module name ("gate.weight", "gate_up_proj", "down_proj") of one of PEFT's spellings of a MoE's
 * target_parameters, NULL when s is none. */
const char *lmf_lora_param_name(const char *s);
/* Module mod's scale: l->scale x its relative scale. */
float lmf_lora_scale_of(const lmf_lora *l, int mod);
/* The module of that kind, or -1 (a MoE's router and expert adapters). */
int lmf_lora_find(const lmf_lora *l, lmf_lora_kind kind);
/* The largest rank among the modules. */
int lmf_lora_max_rank(const lmf_lora *l);

/* A MoE's parameter adapters (the router's: expert 0 of a one-expert module), used by moe.c on the grouped rows of
 * one expert. Forward: out (n rows, ldo apart) += s B_e A_e in (n rows of in, ldi apart). Backward: dout laid out
 * as out; dA_e, dB_e += their gradients; din (ldi apart) += the input gradient (A_e in is recomputed: r values a
 * row). scratch: 2 n r floats (training's lmf_block_ctx.lora_x), or NULL to allocate them. Decode: output rows
 * [lo, hi) only, input row tok[q] (tok NULL: q) for q < n, r <= 512. No dropout (the modules exist only without
 * it). */
void lmf_lora_param_forward(const lmf_lora *l, int layer, int mod, int e, const float *in, int ldi, float *out,
                            int ldo, int n, float *scratch);
void lmf_lora_param_backward(lmf_lora *l, int layer, int mod, int e, const float *in, int ldi, const float *dout,
                             int ldo, float *din, int n, float *scratch);
void lmf_lora_param_decode_rows(const lmf_lora *l, int layer, int mod, int e, const float *in, int ldi,
                                const int32_t *tok, int n, float *out, int ldo, int lo, int hi);

/* The block library's side (block.c). Forward: for every module of `layer` inside matrices [m0, m1) — in (N rows,
 * ldi apart) being their input, out the output of matrix m0 (ldo apart; the covered matrices' outputs adjacent in a
 * row) — out += scale B A drop(in). t: the layer's saved values (lmf_lora_t_floats), each module's scale A drop(in)
 * (N, r) for the backward; NULL when nothing is saved. Dropout only when training. xd: N x in scratch. */
void lmf_lora_forward(const lmf_lora *l, int layer, int m0, int m1, const float *in, int ldi, float *out, int ldo,
                      int N, int training, float *t, float *xd);
/* Backward of the same modules: dout is d(out) (laid out as out), t the forward's saved values; dA, dB += their
 * gradients; din (ldi apart) += the input gradient. scratch: N x (r + max in) floats. */
void lmf_lora_backward(lmf_lora *l, int layer, int m0, int m1, const float *in, int ldi, const float *dout, int ldo,
                       const float *t, float *din, int N, float *scratch);
/* One module k (LINEAR or SHARED_GATE) alone, as lmf_lora_forward / lmf_lora_backward do it for each of theirs:
 * out (N rows, ldo apart) += scale B A drop(in); t: the layer's saved values (module k's slab: k N r), or NULL. */
void lmf_lora_mod_forward(const lmf_lora *l, int layer, int k, const float *in, int ldi, float *out, int ldo, int N,
                          int training, float *t, float *xd);
void lmf_lora_mod_backward(lmf_lora *l, int layer, int k, const float *in, int ldi, const float *dout, int ldo,
                           const float *t, float *din, int N, float *scratch);
/* Decode of module k alone: output rows [lo, hi) of its B (module k's own rows, from 0). */
void lmf_lora_mod_decode_rows(const lmf_lora *l, int layer, int k, const float *in, int ldi, int N, float *out,
                              int ldo, int lo, int hi);
/* Decode: rows [lo, hi) of layer matrix mat (q, k, v, o, gate, up, down) for N input rows: out (matrix mat's output
 * row, ldo apart) += its share of scale B A in, for every module covering mat. Each thread calls it for the rows it
 * made (A in is recomputed by each: r x in multiply-adds a row, next to the matrix's rows x in). r <= 256. */
void lmf_lora_decode_rows(const lmf_lora *l, int layer, int mat, const float *in, int ldi, int N, float *out, int ldo,
                          int lo, int hi);
/* Inference with adapters, unmerged: every step of s's pool (s and the sessions sharing its pool) adds l's products
 * (prefill and decode); NULL removes them. l must outlive their use. */
struct lmf_session;
void lmf_session_set_lora(struct lmf_session *s, const lmf_lora *l);
/* Floats of saved values one layer needs for N rows (r per module, LINEAR or SHARED_GATE, and row). */
size_t lmf_lora_t_floats(const lmf_lora *l, int N);
/* Dropout's decision for input element e (row-major over the step's rows) of module (layer, mod) at step l->step: 1
 * keeps it (scaled by 1 / (1 - dropout)). A hash of (seed, step, layer, module, e), so forward and backward draw the
 * same mask without storing it; kept with probability 1 - dropout, independently across elements, steps and modules
 * (test_lora checks the rates). */
int lmf_lora_keep(const lmf_lora *l, int layer, int mod, size_t e);

/* The adapter folded into its base (what PEFT's merge_and_unload does, for export): new weights whose adapted
 * matrices are fp32 copies of the base's (any type the dequantizers read) plus scale B A, and whose other tensors,
 * tokenizer and metadata are the base's, shared: the base must outlive them. Free with lmf_lora_merged_free. */
lmf_status lmf_lora_merge(const lmf_weights *base, const lmf_lora *l, lmf_weights **out);
/* Frees what lmf_lora_merge made, leaving the base's tokenizer and chat template to the base. */
void lmf_lora_merged_free(lmf_weights *m);

#endif
