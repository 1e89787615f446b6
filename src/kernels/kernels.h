/* kernels.h — the training kernels: forward/backward pairs over preallocated buffers (llm.c style).
 *
 * Argument order: outputs, inputs, then dimensions. Shapes are given as (B,T,C) etc. in the comments; all arrays
 * are dense row-major fp32 unless a stride is passed. Backward functions ADD into their gradient outputs (+=), so
 * the caller zeroes gradients once per step and contributions from several uses (residual streams, tied
 * embeddings) accumulate. Element-wise kernels spread rows over OpenMP threads; none allocates memory. */
#ifndef LMF_KERNELS_KERNELS_H
#define LMF_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ---- embeddings: out (B,T,C) = wte[tok] (+ wpe[t] when wpe != NULL) ---- */
void lmf_encoder_forward(float *out, const int32_t *tok, const float *wte, const float *wpe, int B, int T, int C);
/* dwte, dwpe (may be NULL) += scatter of dout (B,T,C); token t of row b sits at position pos[b*T+t] (pos NULL: t). */
void lmf_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tok, const int32_t *pos, int B,
                          int T, int C);

/* ---- LayerNorm over the last dim: out = (x - mean) * rstd * w + b; mean, rstd (N) saved for backward ---- */
void lmf_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int N, int C, float eps);
void lmf_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            const float *mean, const float *rstd, int N, int C);

/* ---- RMSNorm: out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps) ---- */
void lmf_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
void lmf_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                          const float *rstd, int N, int C);

/* ---- linear layer: out (N,OC) = inp (N,IC) W^T (+ bias); W is (OC,IC) ---- */
void lmf_matmul_forward(float *out, const float *inp, const float *W, const float *bias, int N, int IC, int OC);
/* dinp (N,IC) += dout W;  dW (OC,IC) += dout^T inp;  dbias (OC) += sum over rows of dout. dbias may be NULL. */
void lmf_matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                         const float *W, int N, int IC, int OC);
/* The same over strided operands: dout rows ldo floats apart, inp and dinp rows ldi apart, W and dW rows ldw apart
 * (a block of a wider matrix: a tensor-parallel rank's columns of a row-parallel layer, or its rows of a fused q|k|v
 * whose products land in a narrower buffer); dinp = dinp_beta dinp + dout W and dW = dw_beta dW + dout^T inp (beta 0:
 * the product overwrites its output, which saves zeroing it and reading it back). bf16: both products through
 * lmf_sgemm_bf16 (dout, W and inp rounded to bf16, sums in fp32); dbias stays an fp32 sum of the fp32 dout. */
void lmf_matmul_backward_ld(int bf16, float *dinp, float dinp_beta, float *dW, float dw_beta, float *dbias,
                            const float *dout, int ldo, const float *inp, int ldi, const float *W, int ldw, int N,
                            int IC, int OC);
/* lmf_matmul_backward_ld in bf16 with the input kept in bf16 (lmf_sgemm_bf16_round of the fp32 input; rows ldi
 * elements apart): the same bits, the weight gradient reading half the bytes (lmf_sgemm_bf16_x) */
void lmf_matmul_backward_b16(float *dinp, float dinp_beta, float *dW, float dw_beta, float *dbias, const float *dout,
                             int ldo, const uint16_t *inp, int ldi, const float *W, int ldw, int N, int IC, int OC);

/* ---- causal multi-head attention with grouped-query heads ----
 * qkv (B,T,C+2*KVC) holds q (NH heads), k and v (NKV heads each) per token; out (B,T,C). Nothing is kept for the
 * backward, which recomputes the probabilities from qkv. scratch: lmf_attention_scratch_floats(T, threads) floats
 * (the threads of the parallel region that runs them: omp_get_max_threads()).
 * pos (B,T) or NULL: each token's position in its own example when a row packs several (0 where one starts, then
 * +1 a token): token t of a row attends to t - pos[t] .. t only, so examples never see each other.
 * window: 0, or a sliding window W (Mistral's, a Gemma local layer's): token t attends to t - W + 1 .. t at most.
 * softcap: 0, or Gemma 2's cap c on the scaled scores, s -> c tanh(s / c) before the softmax (the backward takes
 * the gradient through it). */
static inline int lmf_attention_start(const int32_t *pos, int window, int t) {
    int s = pos ? t - pos[t] : 0;
    return window && t - window + 1 > s ? t - window + 1 : s;
}
size_t lmf_attention_scratch_floats(int T, int nthreads);
void lmf_attention_forward(float *out, float *scratch, const float *qkv, const int32_t *pos, int window,
                           float softcap, int B, int T, int NH, int NKV, int hs, int bf16);
/* dqkv = d/dqkv (every element written: no zeroing before); reads dout (B,T,C) and the forward's qkv. bf16: the
 * products through lmf_sgemm_bf16 (mixed precision; the softmax and its backward stay fp32). */
void lmf_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const int32_t *pos,
                            int window, float softcap, int B, int T, int NH, int NKV, int hs, int bf16);
/* The same in bf16 with q|k|v kept in bf16 (lmf_sgemm_bf16_round of the fp32 ones): the same bits, as the products
 * round their inputs so anyway */
void lmf_attention_forward_b16(float *out, float *scratch, const uint16_t *qkv, const int32_t *pos, int window,
                               float softcap, int B, int T, int NH, int NKV, int hs);
void lmf_attention_backward_b16(float *dqkv, float *scratch, const float *dout, const uint16_t *qkv,
                                const int32_t *pos, int window, float softcap, int B, int T, int NH, int NKV, int hs);
/* How the backwards split a group's query heads when there are fewer (batch, KV head) groups than threads (Gemma's
 * single KV head at a small batch): n parts of the heads, each summing its K and V gradients into rows of its own
 * (buf: [B][NKV][n][K, V][T][hs]), added up in part order afterwards (lmf_attention_parts_sum, which frees buf);
 * n = 1 (nothing allocated) where every thread already has a group. The split depends on the thread count, so the
 * sums' order does too (deterministic for a given count). */
typedef struct {
    int n, B, T, NKV, hs;
    float *buf;
} lmf_attention_parts;
lmf_attention_parts lmf_attention_parts_of(int B, int T, int NKV, int G, int hs);
/* the n of lmf_attention_parts_of: ceil(threads / (B NKV)) parts of the G heads, at most G (1: no split) */
int lmf_attention_split(int B, int NKV, int G);
/* The most floats lmf_attention_parts_of allocates for a batch of up to max_batch rows (for memory bounds). */
size_t lmf_attention_parts_floats_max(int max_batch, int T, int NKV, int G, int hs);
float *lmf_attention_part_rows(const lmf_attention_parts *pt, int b, int kh, int part, int v);
void lmf_attention_parts_sum(lmf_attention_parts *pt, float *dqkv, int C, int S);
/* The _b16 pair's kernel on AMX-BF16 tiles (attention_amx.c; no scratch argument: each thread's own buffers), which
 * they call where lmf_attention_amx_ok(hs): the CPU has the tiles (lmf_cpu_amx) and hs is a multiple of 32. */
int lmf_attention_amx_ok(int hs);
void lmf_attention_forward_amx(float *out, const uint16_t *qkv, const int32_t *pos, int window, float softcap, int B,
                               int T, int NH, int NKV, int hs);
void lmf_attention_backward_amx(float *dqkv, const float *dout, const uint16_t *qkv, const int32_t *pos, int window,
                                float softcap, int B, int T, int NH, int NKV, int hs);

/* ---- rotary position embedding, in place ----
 * freqs: (T, hs): per position hs/2 cosines then hs/2 sines, from lmf_rope_table; T may exceed the batch's T.
 * interleaved: pair i is dimensions (2i, 2i+1) of a head (llama.cpp's GGUF rows), else (i, i + hs/2) (HF
 * rotate_half). sign -1 rotates back: the rotation is orthogonal, so that is the backward.
 * factors: NULL, or hs/2 divisors of the pairs' frequencies (RoPE scaling: lmf_rope_freq_factors; llama.cpp's
 * rope_freqs.weight). */
void lmf_rope_table(float *freqs, int T, int hs, float theta, const float *factors);
/* the same with cos and sin times mscale (LongRoPE's attention factor: q.k scaled by mscale^2) */
void lmf_rope_table_scaled(float *freqs, int T, int hs, float theta, const float *factors, float mscale);
/* Dimensions [d0, d1) of row x (heads of hs one after the other) for one position, cs = freqs + position * hs.
 * Pairs must not straddle d0 or d1 (rotate_half: whole heads). */
void lmf_rope_rotate(float *x, int d0, int d1, const float *cs, int hs, int interleaved, float sign);
/* N rows (ld floats apart), row i at position pos[i] (pos NULL: p0 + i % T): the first nheads heads of each (q then
 * k in a qkv row). */
void lmf_rope_rows(float *x, int ld, int N, int T, int p0, const int32_t *pos, const float *freqs, int nheads, int hs,
                   int interleaved, float sign);

/* ---- activations ---- */
void lmf_gelu_forward(float *out, const float *inp, long n); /* tanh approximation */
void lmf_gelu_backward(float *dinp, const float *inp, const float *dout, long n); /* dinp = gelu'(inp) dout */
/* gu (N, 2F): gate in columns [0,F), up in [F,2F); out (N,F) = silu(gate) * up. */
void lmf_swiglu_forward(float *out, const float *gu, int N, int F);
void lmf_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int F); /* writes all of dgu */
/* GeGLU (Gemma): out = gelu_tanh(gate) * up on N rows of gate | up (2F each); the backward writes all of dgu */
void lmf_geglu_forward(float *out, const float *gu, int N, int F);
void lmf_geglu_backward(float *dgu, const float *dout, const float *gu, int N, int F);
void lmf_relu_forward(float *out, const float *inp, long n);
void lmf_relu_backward(float *dinp, const float *inp, const float *dout, long n); /* dinp = inp > 0 ? dout : 0 */

/* ---- residual: out = a + b ---- */
void lmf_residual_forward(float *out, const float *a, const float *b, long n);

/* ---- softmax cross-entropy with ignore index -1 ----
 * losses (N) gets -log p(target) (0 for ignored rows); returns the number of non-ignored rows. lse (N) or NULL gets
 * each non-ignored row's log-sum-exp, for the backward. */
int lmf_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V);
/* Overwrites logits (N,V) with d(mean loss)/d(logits) = (softmax - onehot) * scale, ignored rows zero. lse: the
 * forward's over the same logits (saves reading them once more), or NULL to compute it again. cap: 0, or the logits
 * are Gemma 2's soft-capped y = cap tanh(z / cap), and the gradient is taken on to z (times 1 - (y / cap)^2). */
void lmf_crossentropy_backward_inplace(float *logits, const float *lse, const int32_t *targets, int N, int V,
                                       float scale, float cap);
/* One row's (or a vocabulary share's) n logits, as above: lse the whole row's, t the target's index in l or -1 */
void lmf_crossentropy_backward_row(float *l, int n, float lse, int t, float scale, float cap);
/* One slab of a row's logits in a cross-entropy over slabs (the head without N x V logits, model/head_loss.c): z (n,
 * soft-capped already where cap) updates the row's log-sum-exp *lse (-INFINITY before the first slab). With d (C):
 * d, a sum of the head's rows weighted by exp(logit - old lse) c', is rescaled to the new lse, and z becomes this
 * slab's weights exp(z - lse) c' (c' = 1 - (z / cap)^2, or 1) for the caller to add. */
void lmf_crossentropy_slab_row(float *z, int n, float *lse, float *d, int C, float cap);

/* ---- AdamW on a flat range, as torch.optim.AdamW: decoupled weight decay p *= 1 - lr*wd, bias-corrected
 * moments; t is the 1-based step. The gradient is used as g * grad_scale (global-norm clipping folded in). ---- */
void lmf_adamw_update(float *p, const float *g, float *m, float *v, long n, float lr, float beta1, float beta2,
                      float eps, float weight_decay, float grad_scale, int t);
/* sum of squares of x (n), accumulated in double */
double lmf_sum_squares(const float *x, long n);

#endif
