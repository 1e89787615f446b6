/* load_gguf.h — loading a llama-architecture GGUF (llama.cpp's naming and layout) into the fp32 model. */
#ifndef LMF_MODEL_LOAD_GGUF_H
#define LMF_MODEL_LOAD_GGUF_H

#include "lmforge.h"

struct lmf_gguf;

/* The lmf_model_config of a llama GGUF (llama.* keys, vocab from token_embd.weight, tied when output.weight is
 * absent; max_seq_len = llama.context_length), refusing what the model cannot represent (RoPE scaling, partial
 * rotary heads). */
lmf_status lmf_gguf_llama_config(const struct lmf_gguf *g, lmf_model_config *out);

/* Reads general.architecture (must be "llama"), the llama.* hyperparameters and every tensor (F32, F16, BF16,
 * Q8_0, Q4_0 or Q4_1, dequantized to fp32) into a new inference model (training = 0) for batches up to
 * max_batch x max_seq; max_seq is capped at the file's llama.context_length. The output head is tied when the
 * file has no output.weight. Q and K rows are un-permuted from llama.cpp's interleaved-pair order back to the
 * rotate_half order our RoPE uses. Errors (LMF_ERR_IO / LMF_ERR_FORMAT / LMF_ERR_ARG) name the file and the
 * key or tensor at fault; *out is NULL then. */
lmf_status lmf_model_load_gguf(const char *path, int max_batch, int max_seq, lmf_model **out);

#endif
