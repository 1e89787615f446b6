/* head_loss.c — the training head's cross-entropy over vocabulary slabs (head_loss.h). */
#include "model/head_loss.h"
#include "model/block.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* a slab's logits hold at most this many floats (64 MiB), and a slab at least 256 vocabulary rows: wide enough that
 * the products' packing of x once per slab stays small beside them */
#define SLAB_FLOATS ((size_t)16 << 20)
#define SLAB_MIN 256

static int slab_of(const lmf_model_config *cfg, double N) {
    double s = (double)SLAB_FLOATS / (N > 1 ? N : 1);
    if (s < SLAB_MIN) s = SLAB_MIN;
    if (s > cfg->vocab_size) s = cfg->vocab_size;
    int slab = (int)s;
    return slab >= 16 ? slab / 16 * 16 : slab; /* whole R16 groups */
}

static size_t up16(size_t n) { return (n + 15) & ~(size_t)15; }

/* the buffers' floats, in create's order; the int arrays counted as floats */
static void sizes_of(const lmf_model_config *cfg, size_t N, int quantized, size_t s[8]) {
    size_t C = (size_t)cfg->n_embd, slab = (size_t)slab_of(cfg, (double)N);
    size_t v[8] = {N, N, N * C, N * C, N * slab, quantized ? slab * C : 0, N, N};
    memcpy(s, v, sizeof v);
}

double lmf_head_loss_bytes(const lmf_model_config *cfg, double N, int quantized) {
    size_t s[8];
    sizes_of(cfg, (size_t)N, quantized, s);
    double total = 0;
    for (int i = 0; i < 8; i++) total += (double)up16(s[i]) * sizeof(float);
    return total;
}

lmf_head_loss *lmf_head_loss_create(const lmf_model_config *cfg, int max_rows, int quantized) {
    lmf_head_loss *h = lmf_xcalloc(1, sizeof *h);
    h->max_rows = max_rows, h->C = cfg->n_embd, h->slab = slab_of(cfg, max_rows);
    size_t s[8], total = 0;
    sizes_of(cfg, (size_t)max_rows, quantized, s);
    for (int i = 0; i < 8; i++) total += up16(s[i]);
    float *p = lmf_alloc_big(total * sizeof(float));
    void *ptrs[8];
    h->mem = p, h->bytes = total * sizeof(float);
    for (int i = 0; i < 8; i++) ptrs[i] = s[i] ? p : NULL, p += up16(s[i]);
    h->rows = ptrs[0], h->t = ptrs[1], h->x = ptrs[2], h->d = ptrs[3], h->out = ptrs[4], h->dq = ptrs[5];
    h->lse = ptrs[6], h->tz = ptrs[7];
    return h;
}

void lmf_head_loss_free(lmf_head_loss *h) {
    if (!h) return;
    lmf_free_big(h->mem);
    free(h);
}

typedef struct {
    lmf_head_loss *h;
    float cap, scale;
    int grad;
    float *dW; /* the backward's */
    float beta;
    int bf16;
} slab_ctx;

/* A slab's logits, each row capped. The forward (no dW): the target's logit picked, the log-sum-exp carried on and
 * (grad) the slab's weights for d. The backward: d(loss) / d(logits) from the forward's log-sum-exps, then the
 * slab's rows of dW. */
static void visit_slab(void *vc, int r0, int nr, float *out) {
    slab_ctx *c = vc;
    lmf_head_loss *h = c->h;
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static)
    for (int k = 0; k < h->n; k++) {
        float *z = out + (size_t)k * nr;
        int t = h->t[k] >= r0 && h->t[k] < r0 + nr ? h->t[k] - r0 : -1;
        if (c->cap) v->softcap(z, nr, 1.0f, c->cap);
        if (c->dW) {
            lmf_crossentropy_backward_row(z, nr, h->lse[k], t, c->scale, c->cap);
            continue;
        }
        if (t >= 0) h->tz[k] = z[t];
        lmf_crossentropy_slab_row(z, nr, &h->lse[k], c->grad ? h->d + (size_t)k * h->C : NULL, h->C, c->cap);
    }
    if (c->dW)
        (c->bf16 ? lmf_sgemm_bf16 : lmf_sgemm)(1, 0, nr, h->C, h->n, out, nr, h->x, h->C, c->beta,
                                               c->dW + (size_t)r0 * h->C, h->C);
}

int lmf_head_loss_forward(lmf_head_loss *h, const lmf_wtensor *W, const float *x, const int32_t *targets, int N,
                          float cap, int bf16, int grad, float *losses) {
    LMF_CHECK(N <= h->max_rows && W->cols == h->C && (W->type == LMF_GGML_F32 || h->dq));
    int C = h->C, n = 0;
    for (int i = 0; i < N; i++) {
        losses[i] = 0.0f;
        LMF_CHECK(targets[i] < W->rows);
        if (targets[i] >= 0) h->rows[n] = i, h->t[n++] = targets[i];
    }
    h->n = n, h->grad = grad;
    if (!n) return 0;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < n; k++) {
        memcpy(h->x + (size_t)k * C, x + (size_t)h->rows[k] * C, sizeof(float) * (size_t)C);
        h->lse[k] = -INFINITY;
    }
    if (grad) memset(h->d, 0, sizeof(float) * (size_t)n * C);
    slab_ctx c = {.h = h, .cap = cap, .grad = grad};
    lmf_block_linear_slabs(W, h->x, C, n, h->out, h->slab, h->dq, grad ? h->d : NULL, C, bf16, visit_slab, &c);
#pragma omp parallel
    {
        float *wt = grad ? lmf_xmalloc(sizeof(float) * (size_t)C) : NULL;
#pragma omp for schedule(static)
        for (int k = 0; k < n; k++) {
            losses[h->rows[k]] = h->lse[k] - h->tz[k];
            if (!grad) continue;
            /* d = sum_v p_v c'_v W_v so far; the target's term - c'_t W_t is the one the slabs did not add */
            float ct = cap ? 1.0f - (h->tz[k] / cap) * (h->tz[k] / cap) : 1.0f, *d = h->d + (size_t)k * C;
            lmf_block_weight_row(W, h->t[k], wt);
            for (int j = 0; j < C; j++) d[j] -= ct * wt[j];
        }
        free(wt);
    }
    return n;
}

void lmf_head_loss_dinput(const lmf_head_loss *h, float *dx, int N, float scale) {
    LMF_CHECK(h->grad);
    int C = h->C;
    memset(dx, 0, sizeof(float) * (size_t)N * C);
#pragma omp parallel for schedule(static)
    for (int k = 0; k < h->n; k++) {
        float *o = dx + (size_t)h->rows[k] * C;
        const float *d = h->d + (size_t)k * C;
        for (int j = 0; j < C; j++) o[j] = scale * d[j];
    }
}

void lmf_head_loss_dweight(lmf_head_loss *h, const lmf_wtensor *W, float *dW, float beta, float cap, int bf16,
                           float scale) {
    LMF_CHECK(W->type == LMF_GGML_F32 && W->cols == h->C);
    if (!h->n) { /* no target: no gradient */
        if (beta == 0.0f) memset(dW, 0, sizeof(float) * (size_t)W->rows * h->C);
        return;
    }
    slab_ctx c = {.h = h, .cap = cap, .scale = scale, .dW = dW, .beta = beta, .bf16 = bf16};
    lmf_block_linear_slabs(W, h->x, h->C, h->n, h->out, h->slab, NULL, NULL, h->C, bf16, visit_slab, &c);
}
