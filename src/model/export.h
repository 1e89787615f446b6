/* export.h — writing a loaded model (weights.h: an lmforge checkpoint, a Hugging Face folder or a GGUF) in the
 * formats other tools load:
 *
 *   GGUF (llama.cpp's conventions, so llama.cpp runs the file standalone): general.architecture "llama" or "gpt2",
 *   the <arch>.* hyperparameters, llama.cpp's tensor names, 1-D tensors in F32, matrices in the chosen type, llama
 *   Q/K rows in llama.cpp's interleaved-pair order, gpt2's q|k|v fused into attn_qkv; the vocabulary as
 *   tokenizer.ggml.* (model "gpt2", tokens padded to the embedding's rows, token_type, merges, pre, bos/eos,
 *   chat_template) when the model has a tokenizer.
 *
 *   Hugging Face (a folder transformers' AutoModelForCausalLM.from_pretrained loads): config.json
 *   (LlamaForCausalLM / GPT2LMHeadModel / OPTForCausalLM), model.safetensors with transformers' names (GPT-2's
 *   Conv1D weights transposed to (in, out), Q/K rows in rotate_half order), and, with a tokenizer,
 *   tokenizer.json, tokenizer_config.json and generation_config.json.
 *
 * Every file is written atomically (temporary file, fsync, rename). Tensors of any type the executor runs are
 * dequantized to fp32 first, then stored as F32, F16 or BF16. See docs/formats.md ("Export"). */
#ifndef LMF_MODEL_EXPORT_H
#define LMF_MODEL_EXPORT_H

#include "lmforge.h"

#include <stdint.h>

struct lmf_weights;

typedef enum { LMF_EXPORT_GGUF = 0, LMF_EXPORT_SAFETENSORS = 1 } lmf_export_format;

/* "gguf" / "safetensors" (also "hf"). */
lmf_status lmf_export_format_parse(const char *name, lmf_export_format *out);
/* llama.cpp's K-quant file types (its llama_ftype Q2_K ... Q6_K): Q2_K ... Q6_K matrices with the output head,
 * and attn_v / ffn_down / attn_output of chosen layers, at more bits, as llama-quantize mixes them. Values above
 * every ggml type id, so one uint32_t names either a single type or a mix. */
enum {
    LMF_MIX_Q4_K_S = 1000, LMF_MIX_Q4_K_M, LMF_MIX_Q5_K_S, LMF_MIX_Q5_K_M, LMF_MIX_Q6_K,
    LMF_MIX_Q2_K, LMF_MIX_Q2_K_S, LMF_MIX_Q3_K_S, LMF_MIX_Q3_K_M, LMF_MIX_Q3_K_L
};

/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "iq4_xs" (the ggml type; the IQ4 ones
 * with llama-quantize's rules: attn_v Q5_K with 4+ query heads a KV head, ffn_down Q5_K in the first eighth without
 * an importance matrix, the head Q6_K), "q2_k", "q2_k_s", "q3_k_s", "q3_k_m" (or "q3_k"), "q3_k_l", "q4_k_s",
 * "q4_k_m" (or "q4_k"), "q5_k_s", "q5_k_m" (or "q5_k"), "q6_k" (an LMF_MIX_*); any case. */
lmf_status lmf_export_type_parse(const char *name, uint32_t *out);
/* "Q4_K_M" for a mix, the ggml name for a type */
const char *lmf_export_type_name(uint32_t type);

/* llama.cpp's general.architecture for a model of cfg (a mixture of experts is qwen2moe / qwen3moe there, NoPE layers
 * smollm3): what the GGUF export writes, and what a GGUF adapter for the model carries. */
const char *lmf_gguf_arch(const lmf_model_config *cfg);

/* Writes w as a GGUF file at path. type: a ggml type of lmf_quantize_supported or an LMF_MIX_*, with the tensors'
 * types chosen as llama-quantize chooses them for that file type (see tensor_type in export.c). name: general.name
 * (NULL: "lmforge-<family>"). Fails with LMF_ERR_ARG for a family llama.cpp has no architecture for here (opt). */
lmf_status lmf_export_gguf(const struct lmf_weights *w, const char *path, uint32_t type, const char *name);
/* The same, with progress (in layers: BEGIN, an UPDATE as each layer's tensors are converted, "writing" while the
 * file is written, END) and nothing else sent to sink (NULL: silent). */
lmf_status lmf_export_gguf_sink(const struct lmf_weights *w, const char *path, uint32_t type, const char *name,
                                const lmf_sink *sink);
typedef struct {
    const char *pattern;
    uint32_t type;              /* a ggml type lmf_quantize_supported writes */
} lmf_tensor_type_rule;
typedef struct {
    const char *name;           /* general.name (NULL: "lmforge-<family>") */
    const lmf_sink *sink;       /* progress, as lmf_export_gguf_sink (NULL: silent) */
    /* quantize under this importance matrix (NULL: none), as `llama-quantize --imatrix`: each matrix with an entry
     * of its name is quantized weighted by it (an entry whose size does not match the matrix's columns x experts
     * fails the export, as llama-quantize's does), Q4_0 / Q5_0 files take Q4_1 / Q5_1 for ffn_down in the first
     * eighth of the layers, and quantize.imatrix.* records imatrix_file, the dataset, entries and chunks */
    const lmf_imatrix *imatrix;
    const char *imatrix_file;
    /* llama-quantize's knobs, with its precedence (export.c: tensor_type): */
    int pure;                     /* --pure: no mix rules, every matrix the file type's base type (then fallbacks) */
    int leave_output;             /* --leave-output-tensor: output.weight as it is in the source */
    int output_type_set;          /* --output-tensor-type: the output head's type (a tied embedding's too) */
    uint32_t output_type;
    int token_embd_type_set;      /* --token-embedding-type */
    uint32_t token_embd_type;
    const lmf_tensor_type_rule *rules; /* --tensor-type: the first whose pattern (a POSIX extended regular expression,
                                        * lowercased) is found in a tensor's name gives its type (then fallbacks) */
    int n_rules;
} lmf_export_opts;
lmf_status lmf_export_gguf_opts(const struct lmf_weights *w, const char *path, uint32_t type,
                                const lmf_export_opts *o);

/* Writes w as a Hugging Face folder `dir` (created if missing; files in it replaced). type: F32, F16 or BF16. */
lmf_status lmf_export_safetensors(const struct lmf_weights *w, const char *dir, uint32_t type);

#endif
