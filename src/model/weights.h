/* weights.h — a model ready for inference: config, architecture knobs and typed weight tensors, from any source.
 *
 * The inference executor (infer.c) runs any weight dtype the quantized kernels read (kernels/quant.h: F32, F16,
 * BF16, Q8_0, Q4_0, Q4_1, ...) straight from where the weights live: a memory-mapped GGUF, a memory-mapped
 * safetensors file, or buffers the loader owns (converted or transposed tensors, an lmforge checkpoint's fp32
 * parameters). Loaders (weights_gguf.c, load_hf.c, load_ckpt.c) fill an lmf_weights; the executor never cares which.
 *
 * One transformer covers the three families through a few knobs:
 *   llama: RMSNorm, RoPE, no biases, SwiGLU (gate, up, down), GQA, tied or untied head
 *   gpt2:  LayerNorm, learned positions, biases, GELU (tanh), tied head
 *   opt:   LayerNorm, learned positions at offset 2, biases, ReLU
 *   qwen2: llama with q, k and v biases (cfg.qkv_bias); Qwen2-MoE's shared expert gated (cfg.shared_gate)
 *   qwen3: llama with a per-head RMSNorm on q and k before RoPE (cfg.qk_norm); Qwen3-MoE: Mixtral's experts
 *   olmoe: llama with an RMSNorm on the whole q and k rows before RoPE (cfg.qk_norm full width); OLMoE's experts
 * Linear weights are (out, in) row-major as in torch.nn.Linear: y = x W^T + b. 1-D tensors (norms, biases) are
 * always fp32 copies owned by the weights (small, and the kernels want aligned fp32). */
#ifndef LMF_MODEL_WEIGHTS_H
#define LMF_MODEL_WEIGHTS_H

#include "lmforge.h"

#include <stddef.h>
#include <stdint.h>

/* A 2-D weight: rows x cols elements of ggml type `type`, row r at data + r * row_bytes. rows == 0: absent.
 * r16: the same matrix in R16 groups (kernels/quant.h), which the executor reads instead of data once
 * lmf_weights_prepare_decode made it; data stays valid for everything else (export, quantize, info). */
typedef struct {
    uint32_t type; /* lmf_ggml_type */
    int rows, cols;
    size_t row_bytes;
    const void *data;
    const void *r16;
} lmf_wtensor;

typedef struct {
    const float *attn_norm_w, *attn_norm_b; /* (C); _b NULL for RMSNorm */
    const float *q_norm_w, *k_norm_w;       /* cfg.qk_norm (lmf_qk_norm_width): (hs) per head, each head of q / k
                                             * RMS-normalised and scaled by these before RoPE (Qwen3); (C), (KV)
                                             * full width, the whole q / k row (OLMoE); NULL otherwise */
    lmf_wtensor wq, wk, wv, wo;             /* (C,C) (KV,C) (KV,C) (C,C), KV = n_kv_head * hs */
    const float *bq, *bk, *bv, *bo;         /* NULL when the family has no biases */
    const float *ffn_norm_w, *ffn_norm_b;
    const float *post_attn_norm_w, *post_ffn_norm_w; /* cfg.post_norms: (C) each, on attention's and the FFN's
                                                      * outputs before the residual adds; NULL otherwise */
    lmf_wtensor w_gate, w_up, w_down;       /* (F,C) (F,C) (C,F); w_gate absent unless gated (SwiGLU, GeGLU); absent
                                             * with MoE */
    const float *b_up, *b_down;
    /* mixture of experts (cfg.n_expert E > 0, docs/moe.md): the router, E experts of gate (F,C), up (F,C) and
     * down (C,F) as experts[3e], [3e+1], [3e+2] (views of whatever holds them: per-expert tensors of a Hugging Face
     * folder, row ranges of a GGUF's 3-D stacks or of the training table), and the shared expert (absent unless
     * shared_ffn_dim Fs > 0) */
    lmf_wtensor router;                     /* (E,C) */
    lmf_wtensor *experts;                   /* [3E], owned by the lmf_weights */
    lmf_wtensor sh_gate, sh_up, sh_down;    /* (Fs,C) (Fs,C) (C,Fs) */
    const float *sh_gate_inp;               /* (C) cfg.shared_gate: the shared expert's output is scaled by
                                             * sigmoid(x . sh_gate_inp) (Qwen2-MoE); NULL otherwise */
} lmf_layer_weights;

typedef struct lmf_weights {
    lmf_model_config cfg;    /* the architecture: family, sizes and knobs */
    lmf_wtensor tok_emb;     /* (V,C) */
    lmf_wtensor pos_emb;     /* (max_seq_len + pos_offset, C) for LMF_POS_LEARNED */
    lmf_wtensor lm_head;     /* (V,C); a copy of tok_emb's descriptor when tied */
    const float *rope_short, *rope_long; /* LongRoPE (cfg.rope_scaling): hs/2 per-pair factors each, owned */
    const float *out_norm_w, *out_norm_b;
    lmf_layer_weights *layers; /* [n_layer] */

    /* what the model file says about its tokenizer and chat format (NULL / -1 when absent) */
    lmf_tokenizer *tok;
    char *chat_template;     /* tokenizer.chat_template (Jinja text), owned */
    int32_t bos_id, eos_id, eot_id; /* eot: an extra end-of-turn token (e.g. <|im_end|>, <|eot_id|>) */
    int add_bos;             /* prepend BOS when encoding a prompt */

    /* storage: whatever the tensors point into; freed by lmf_weights_free */
    void *gguf;              /* lmf_gguf * */
    void **mapped;           /* lmf_safetensors * (n_mapped) */
    int n_mapped;
    void **owned;            /* malloc'd / lmf_alloc_big'd buffers (n_owned), freed with owned_free[i] */
    size_t *owned_bytes;
    int n_owned;
    char source[32];         /* "gguf", "safetensors", "checkpoint" */
    size_t file_bytes;       /* size of the model file(s) on disk */
} lmf_weights;

/* Empty weights (family and knobs zeroed, ids -1). */
lmf_weights *lmf_weights_new(void);
void lmf_weights_free(lmf_weights *w);
/* A zeroed buffer of `bytes` owned by w (freed with it). Big buffers come from lmf_alloc_big. */
void *lmf_weights_alloc(lmf_weights *w, size_t bytes);
/* An fp32 copy of n elements of ggml type `type` at src, owned by w (norm weights, biases). */
lmf_status lmf_weights_f32_copy(lmf_weights *w, uint32_t type, const void *src, size_t n, const char *what,
                                const float **out);
/* Fills t for rows x cols of `type` at data (row_bytes from the type's block size). */
void lmf_wtensor_set(lmf_wtensor *t, uint32_t type, int rows, int cols, const void *data);
/* LongRoPE's two factor arrays are there, hs/2 each within [1e-6, 65536] (lmf_weights_validate asks); names origin
 * and the factor. */
lmf_status lmf_rope_factors_check(const lmf_weights *w, const char *origin);
/* Rows [r0, r0 + n) of a weight (any type: whole rows), and columns [c0, c0 + n) of an F32 one (rows keep their
 * stride): a column-parallel layer's share, a row-parallel one's, a part of a fused matrix (q|k|v, gate|up). The
 * whole weight comes back as it is. */
lmf_wtensor lmf_wtensor_rows(const lmf_wtensor *W, int r0, int n);
lmf_wtensor lmf_wtensor_cols(const lmf_wtensor *W, int c0, int n);
/* A layer's weight matrices in a fixed order: q, k, v, o, gate, up, down (absent ones have rows == 0). */
enum { LMF_LAYER_MATRICES = 7 };
void lmf_layer_matrices(const lmf_layer_weights *L, const lmf_wtensor *out[LMF_LAYER_MATRICES]);
/* A layer's mixture-of-experts matrices in a fixed order: router, the experts' gate, up, down one expert after
 * the other, shared gate, up, down (absent ones have rows == 0); returns how many (0 for a dense layer). out must
 * hold LMF_MOE_MATRICES(E). */
#define LMF_MOE_MATRICES(E) (4 + 3 * (E))
int lmf_layer_moe_matrices(const lmf_layer_weights *L, int n_expert, const lmf_wtensor **out);
/* Bytes, and elements, of all weight matrices (embeddings included; a tied head counted once). */
size_t lmf_weights_bytes(const lmf_weights *w);
size_t lmf_weights_matrix_params(const lmf_weights *w);
/* Checks every tensor's shape against cfg and that every type is one the executor can run; names the tensor. */
lmf_status lmf_weights_validate(const lmf_weights *w, const char *origin);

/* Repacks every Q8_0/Q4_0/Q4_1 matrix (Q5_x and Q4_K/Q5_K/Q6_K too where this CPU's kernel table has their R16
 * kernels: lmf_r16_supported) whose shape allows it into R16 groups (wtensor.r16; a tied head and token
 * embedding share one copy), once: later calls return at once, concurrent ones wait for the first. Skipped with
 * LMF_QACT=int8 (R16 kernels read int16 activations). The repacked copy is exactly as large as the original (all
 * matrices in one huge-page buffer, in the order a decode step reads them), and
 * the original's pages are released from a file mapping (madvise; they are read back from the file if anything
 * still reads data), so resident memory stays about one model. lmf_weights_load calls it: loaded weights are
 * immutable, shared by every session and pool (weights from the format loaders below run without R16). */
void lmf_weights_prepare_decode(lmf_weights *w);
/* 1 when prefill runs some of w's products on the decode path's integer kernels (R16 matrices on a CPU with AMX-INT8
 * tiles: block.h, LMF_LIN_QINT): its logits then carry the int16 activations' rounding, as decode's do. */
int lmf_weights_integer_prefill(const lmf_weights *w);

/* What lmf_weights_load reads (any of the formats below), without the decode layout: for tools that read every
 * tensor once (quantize, export) and would only pay for the repacking. lmf_weights_prepare_decode makes it later. */
lmf_status lmf_weights_open(const char *path, lmf_weights **out);
/* Loaders. Each fills a new lmf_weights or fails naming the file, tensor or field. */
lmf_status lmf_weights_load_gguf(const char *path, lmf_weights **out);
lmf_status lmf_weights_load_hf(const char *dir, lmf_weights **out);         /* config.json + *.safetensors */
lmf_status lmf_weights_load_checkpoint(const char *path, lmf_weights **out); /* an lmforge training checkpoint */

/* The width of a layer's q (k = 0) or k (k = 1) norm weight under cfg->qk_norm: hs per head, C or KV full width,
 * 0 without a q/k norm (params.c). */
int lmf_qk_norm_width(const lmf_model_config *c, int k);

#endif
