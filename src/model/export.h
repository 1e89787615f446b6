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
/* "f32" / "f16" / "bf16" -> LMF_GGML_F32 / F16 / BF16. */
lmf_status lmf_export_type_parse(const char *name, uint32_t *out);

/* Writes w as a GGUF file at path. type: LMF_GGML_F32 or LMF_GGML_F16 for the matrices. name: general.name (NULL:
 * "lmforge-<family>"). Fails with LMF_ERR_ARG for a family llama.cpp has no architecture for here (opt). */
lmf_status lmf_export_gguf(const struct lmf_weights *w, const char *path, uint32_t type, const char *name);

/* Writes w as a Hugging Face folder `dir` (created if missing; files in it replaced). type: F32, F16 or BF16. */
lmf_status lmf_export_safetensors(const struct lmf_weights *w, const char *dir, uint32_t type);

#endif
