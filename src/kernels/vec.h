/* vec.h — the row-level inner loops of the non-GEMM kernels, in one dispatch table.
 *
 * The kernels in kernels.h own the shapes and the OpenMP loops over rows; what they do to one row (a norm, a
 * softmax, an activation, an optimizer update) lives here, written three times: a plain scalar reference
 * (vec_ref.c, compiled without auto-vectorisation), AVX2+FMA (vec_avx2.c) and AVX-512 (vec_avx512.c). lmf_vec()
 * returns the table for lmf_cpu_isa(), chosen once. Tests hold every variant to the reference on odd lengths.
 * "+=" marks outputs that are accumulated into (backward convention). Lengths may be any n >= 1 unless noted. */
#ifndef LMF_KERNELS_VEC_H
#define LMF_KERNELS_VEC_H

#include <stdint.h>

typedef struct {
    const char *name;
    float (*sum)(const float *x, int n);
    float (*dot)(const float *a, const float *b, int n);
    /* sum of x^2 accumulated in double (the global gradient norm over ~1e8 parameters) */
    double (*sumsq)(const float *x, long n);
    /* out = (x - mean) * rstd * w + b; stores mean and rstd (biased variance) */
    void (*layernorm)(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int n,
                      float eps);
    /* dx += rstd * (dout*w - mean(dout*w) - xhat * mean(dout*w*xhat)), xhat = (x - mean) * rstd */
    void (*layernorm_backward)(float *dx, const float *dout, const float *x, const float *w, float mean, float rstd,
                               int n);
    /* dw += dout * (x - mean) * rstd; db += dout (db may be NULL: RMSNorm passes mean = 0) */
    void (*norm_param_grad)(float *dw, float *db, const float *dout, const float *x, float mean, float rstd, int n);
    /* out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps) */
    void (*rmsnorm)(float *out, float *rstd, const float *x, const float *w, int n, float eps);
    /* dx += rstd * dout * w - x * rstd^3 * mean(dout * w * x) */
    void (*rmsnorm_backward)(float *dx, const float *dout, const float *x, const float *w, float rstd, int n);
    /* in place: x = softmax(x * scale) */
    void (*softmax)(float *x, int n, float scale);
    /* in place: d = p * (d - dot(p, d)) * scale */
    void (*softmax_backward)(float *d, const float *p, int n, float scale);
    /* log(sum(exp(x))) computed stably */
    float (*logsumexp)(const float *x, int n);
    /* in place: x = exp(x - shift) * scale */
    void (*exp_shift_scale)(float *x, int n, float shift, float scale);
    /* out = gelu_tanh(x) */
    void (*gelu)(float *out, const float *x, long n);
    /* dx = gelu_tanh'(x) * dout */
    void (*gelu_backward)(float *dx, const float *x, const float *dout, long n);
    /* in place: x = cap tanh(scale x / cap) (Gemma 2's soft-capping of attention scores and logits) */
    void (*softcap)(float *x, int n, float scale, float cap);
    /* d = d (1 - (y / cap)^2) scale: the gradient through softcap given its output y */
    void (*softcap_backward)(float *d, const float *y, int n, float cap, float scale);
    /* out = silu(g) * u */
    void (*swiglu)(float *out, const float *g, const float *u, int n);
    /* dg = dout * u * silu'(g); du = dout * silu(g) */
    void (*swiglu_backward)(float *dg, float *du, const float *dout, const float *g, const float *u, int n);
    /* out[j * ldo + p] = sum over d < k of x[j * ldx + d] * w[d * ldw + p], for j < m (1 <= m <= 4) and p < n: a few
     * rows times a row-major k x n matrix, accumulated down the matrix's rows (no horizontal sums). Decode attention's
     * scores against the transposed K cache (w: one head's dimensions x the cached positions). w holds fp32, or
     * IEEE halves when half is set (an f16 KV cache: widened in registers, so the cache is read at 2 bytes). */
    void (*rows_by_matrix)(float *out, long ldo, const float *x, long ldx, int m, const void *w, int half, long ldw,
                           int k, int n);
    /* out[j * ldo + r] += sum over pieces b < nb and p < len[b] of x[j * ldx + off_b + p] * w[b][r * ldw + p], for
     * j < m (1 <= m <= 4) and r < k, off_b = len[0] + ... + len[b - 1]: a few rows times a matrix held transposed in
     * pieces (decode attention's P.V against the paged, transposed V cache: a piece is one block's stretch of
     * positions for the head's k dimensions). Each sum runs down the positions in vector lanes across all the pieces
     * and is reduced once at the end: per-piece dot products with horizontal sums cost more than the products once
     * blocks are 16 positions. Pieces of halves when half is set, as rows_by_matrix. */
    void (*rows_by_pieces_t)(float *out, long ldo, const float *x, long ldx, int m, const void *const *w, int half,
                             const int *len, int nb, long ldw, int k);
    /* acc[c] += x[r * ldx + c] for c < n, r = 0, 1, ..., m - 1 in that order (each column's sum row after row, so
     * every variant, and any split of the columns, gives the same bits): a bias gradient over the tokens. */
    void (*col_sum_add)(float *acc, const float *x, long ldx, int m, int n);
    /* AdamW, torch formulation: g' = g * grad_scale; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
     * p = p * decay - step * m / (sqrt(v) / bc2_sqrt + eps), with decay = 1 - lr*wd, step = lr / (1 - b1^t),
     * bc2_sqrt = sqrt(1 - b2^t) */
    void (*adamw)(float *p, const float *g, float *m, float *v, long n, float beta1, float beta2, float eps,
                  float decay, float step, float bc2_sqrt, float grad_scale);
    /* Dropout of n elements numbered e0, e0 + 1, ...: out[j] = kept ? x[j] scale : 0 (out may be x), element e kept
     * when the top 53 bits of splitmix64's finalizer of key ^ e are at least keep_from (dropout.h). The same bits in
     * every variant: LoRA's masks (lora.c). */
    void (*dropout)(float *out, const float *x, int n, uint64_t key, uint64_t e0, uint64_t keep_from, float scale);
} lmf_vec_ops;

const lmf_vec_ops *lmf_vec(void);
extern const lmf_vec_ops lmf_vec_ref, lmf_vec_avx2, lmf_vec_avx512;

/* The table of one variant file (vec_ref.c, vec_avx2.c, vec_avx512.c): each defines its kernels as statics under
 * these same names, so the three tables are this one list. */
#define LMF_VEC_OPS_TABLE(isa)                                                                                     \
    {.name = isa, .sum = sum, .dot = dot, .sumsq = sumsq, .layernorm = layernorm,                                  \
     .layernorm_backward = layernorm_backward, .norm_param_grad = norm_param_grad, .rmsnorm = rmsnorm,             \
     .rmsnorm_backward = rmsnorm_backward, .softmax = softmax, .softmax_backward = softmax_backward,               \
     .logsumexp = logsumexp, .exp_shift_scale = exp_shift_scale, .gelu = gelu, .gelu_backward = gelu_backward,    \
     .softcap = softcap, .softcap_backward = softcap_backward, .swiglu = swiglu,                                  \
     .swiglu_backward = swiglu_backward, .adamw = adamw, .rows_by_matrix = rows_by_matrix,                        \
     .rows_by_pieces_t = rows_by_pieces_t, .col_sum_add = col_sum_add, .dropout = dropout}

#endif
