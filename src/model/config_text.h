/* config_text.h — the `name = value` option text and the model fields in it, below the training layer.
 *
 * A training run's options are stored as text (train/train_config.h: `name = value` lines, one per option) in
 * OUT_DIR/train.conf and in every checkpoint. Three readers need the model fields of that text: the CLI resuming a
 * run, the trainer checking a checkpoint against its run, and the inference loader (model/load_ckpt.c) turning a
 * checkpoint into weights. They all go through this file, which lives in src/model so that the loader does not
 * have to include the training layer above it.
 *
 * What lives here:
 *   - lmf_opt: one option's descriptor (name, type, offset into a config struct), and the typed setter/formatter;
 *     the training config's table (train_config.c) is built from these too.
 *   - LMF_MODEL_OPTS: the model fields as an X-macro list, so the training table and the model table below name
 *     each field once (same name, type, help, order).
 *   - lmf_kv_text_parse: the one line parser of the text format (comments, blank lines, "quoted" values,
 *     trailing # comments on unquoted values), calling back per option with "source:line" for messages.
 *   - lmf_model_config_from_text: the model fields of such a text. */
#ifndef LMF_MODEL_CONFIG_TEXT_H
#define LMF_MODEL_CONFIG_TEXT_H

#include "lmforge.h"

#include <stddef.h>

typedef enum { LMF_OPT_INT, LMF_OPT_I64, LMF_OPT_FLOAT, LMF_OPT_STR, LMF_OPT_BOOL, LMF_OPT_ARCH } lmf_opt_type;

typedef struct {
    const char *name;
    lmf_opt_type type;
    size_t offset, size; /* into the config struct the table describes; size: buffer size for strings */
    const char *group, *help;
} lmf_opt;

/* X(name, type, field of lmf_model_config, help), in the order options are written and listed. */
#define LMF_MODEL_OPTS(X)                                                                                          \
    X("arch", LMF_OPT_ARCH, arch, "model family: gpt2, llama, opt, qwen2, qwen3, olmoe, phi3, gemma3 or gemma2")     \
    X("vocab_size", LMF_OPT_INT, vocab_size, "vocabulary size (0: the training shard's)")                          \
    X("max_seq_len", LMF_OPT_INT, max_seq_len, "longest sequence the model accepts (0: seq_len)")                  \
    X("n_layer", LMF_OPT_INT, n_layer, "transformer blocks")                                                       \
    X("n_embd", LMF_OPT_INT, n_embd, "model width C")                                                              \
    X("n_head", LMF_OPT_INT, n_head, "attention heads")                                                            \
    X("n_kv_head", LMF_OPT_INT, n_kv_head, "key/value heads (llama GQA; gpt2: = n_head)")                          \
    X("head_dim", LMF_OPT_INT, head_dim, "a head's size (llama family; 0: n_embd / n_head)")                       \
    X("ffn_dim", LMF_OPT_INT, ffn_dim, "MLP hidden size")                                                          \
    X("norm_eps", LMF_OPT_FLOAT, norm_eps, "LayerNorm / RMSNorm epsilon")                                          \
    X("rope_theta", LMF_OPT_FLOAT, rope_theta, "RoPE base (llama)")                                                \
    X("tied_embeddings", LMF_OPT_BOOL, tied_embeddings, "share the output head with wte (llama)")                  \
    X("n_expert", LMF_OPT_INT, n_expert, "mixture of experts: experts per layer (0: dense FFN; llama)")            \
    X("n_expert_used", LMF_OPT_INT, n_expert_used, "experts each token is routed to (top-k)")                      \
    X("shared_ffn_dim", LMF_OPT_INT, shared_ffn_dim, "hidden size of a shared expert on every token (0: none)")    \
    X("norm_topk_prob", LMF_OPT_BOOL, norm_topk_prob, "renormalise the top-k router probabilities (Mixtral)")      \
    X("router_aux_coef", LMF_OPT_FLOAT, router_aux_coef, "weight of the load-balancing loss (MoE training)")       \
    X("router_z_coef", LMF_OPT_FLOAT, router_z_coef, "weight of the router z-loss (MoE training)")                 \
    X("capacity_factor", LMF_OPT_FLOAT, capacity_factor, "expert capacity factor (0: dropless)")                   \
    X("qkv_bias", LMF_OPT_BOOL, qkv_bias, "biases on q, k and v only (qwen2: set by arch)")                        \
    X("shared_gate", LMF_OPT_BOOL, shared_gate, "sigmoid gate on the shared expert's output (Qwen2-MoE)")        \
    X("qk_norm", LMF_OPT_INT, qk_norm, "RMSNorm on q and k before RoPE: 0 none, 1 per head (qwen3), 2 full width "  \
                                       "(olmoe); set by arch")                                                     \
    X("rope_scaling", LMF_OPT_INT, rope_scaling, "RoPE scaling: 0 none, 1 linear, 2 llama3, 3 longrope")            \
    X("rope_factor", LMF_OPT_FLOAT, rope_factor, "RoPE scaling factor (linear, llama3)")                          \
    X("rope_low_freq_factor", LMF_OPT_FLOAT, rope_low_freq_factor, "llama3 RoPE: low_freq_factor")                \
    X("rope_high_freq_factor", LMF_OPT_FLOAT, rope_high_freq_factor, "llama3 RoPE: high_freq_factor")             \
    X("rope_orig_ctx", LMF_OPT_INT, rope_orig_ctx, "llama3 RoPE: original_max_position_embeddings")           \
    X("sliding_window", LMF_OPT_INT, sliding_window, "attend to the last N positions only (0: all; Mistral v0.1)") \
    X("nope_interval", LMF_OPT_INT, nope_interval, "every Nth layer without RoPE (0: none; SmolLM3: 4)")          \
    X("post_norms", LMF_OPT_BOOL, post_norms, "RMSNorm on attention's and the FFN's outputs (gemma3: set by arch)") \
    X("embed_scale", LMF_OPT_BOOL, embed_scale, "embeddings times sqrt(n_embd) (gemma3: set by arch)")           \
    X("attn_scale", LMF_OPT_FLOAT, attn_scale, "q.k scale (0: 1/sqrt(head size); gemma3)")                       \
    X("swa_pattern", LMF_OPT_INT, swa_pattern, "with sliding_window: every Nth layer global (0: none; gemma3)")   \
    X("rope_theta_swa", LMF_OPT_FLOAT, rope_theta_swa, "the windowed layers' RoPE base (0: rope_theta; gemma3)")   \
    X("attn_softcap", LMF_OPT_FLOAT, attn_softcap, "soft-cap c tanh(s / c) on attention scores (0: none; gemma2: 50)") \
    X("final_softcap", LMF_OPT_FLOAT, final_softcap, "soft-cap on the logits (0: none; gemma2: 30)")

extern const lmf_opt lmf_model_opts[];
extern const int lmf_model_n_opts;

/* Sets option o of the struct at base from text. `where` names the source for the error ("flag --lr",
 * "config.conf:12"); the message also names the option and what it expects. */
lmf_status lmf_opt_set(void *base, const lmf_opt *o, const char *value, const char *where);
/* Writes the value as the text format stores it (strings quoted, floats with 9 significant digits). */
void lmf_opt_format(const void *base, const lmf_opt *o, char *out, size_t n);
/* The option named `name` in a table (dashes accepted for underscores), or NULL. */
const lmf_opt *lmf_opt_find(const lmf_opt *table, int n, const char *name);

/* Called per `name = value` line; where is "source:line". A non-OK return stops the parse with that status. */
typedef lmf_status (*lmf_kv_fn)(void *ctx, const char *key, const char *value, const char *where);
/* Splits text into `name = value` lines (# comments, blank lines; values may be "quoted"; an unquoted value ends at
 * a #). A line without '=' is LMF_ERR_ARG naming source:line. */
lmf_status lmf_kv_text_parse(const char *text, const char *source, lmf_kv_fn fn, void *ctx);

/* Overwrites the model fields named in text (other names, e.g. the trainer's lr, are skipped: the text is a whole
 * training config); fields not named keep their value in *cfg, so the caller chooses the base. Bad values are
 * LMF_ERR_ARG naming source:line and the field. Does not validate the result (lmf_model_config_validate). */
lmf_status lmf_model_config_from_text(const char *text, const char *source, lmf_model_config *cfg);

/* The unquoted value of the last line `key = value` of text into out (n bytes); 1 when found, 0 when absent or
 * too long. For the few non-model keys a model reader wants (the checkpoint's `tokenizer` path). */
int lmf_kv_text_get(const char *text, const char *key, char *out, size_t n);

#endif
