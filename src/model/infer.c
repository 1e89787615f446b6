/* infer.c — the inference executor: a session is one sequence with its KV cache over an lmf_weights.
 *
 * Tokens go through the model in micro-batches of up to NB positions: more than QMV_MAX of them take the prefill
 * path (lmf_block_forward over scratch rows, writing the cache), fewer the decode step (lmf_block_decode for every
 * layer inside one parallel region). The block itself, both linear paths and the three attentions are in block.c.
 * Attention keeps K and V in fp32 caches, both transposed: (L, KV, n_ctx).
 *
 * Memory: the KV cache (2 L n_ctx KV floats) plus scratch of about NB (5C + 2KV + 3F) floats, DQ_BYTES, and per thread
 * 64 x n_ctx attention scores; the weights stay where the loader put them (usually the file mapping), except
 * the quantized matrices' R16 copy, which replaces the mapping's pages (lmf_weights_prepare_decode). */
#include "core/alloc.h"
#include "core/barrier.h"
#include "core/status.h"
#include "kernels/quant.h"
#include "model/block.h"
#include "model/weights.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define NB LMF_BLOCK_NB
#define QMV_MAX LMF_BLOCK_QMV_MAX
#define QBLK LMF_BLOCK_QBLK
#define DQ_BYTES (8u << 20)     /* largest fp32 slab of dequantized weights */

struct lmf_session {
    const lmf_weights *w;
    int n_ctx, pos, nthreads;
    float *kcache, *vcache;     /* both transposed: (L, KV, n_ctx), a row per K / V dimension over the positions */
    float *rope;                /* (n_ctx, hs): per position hs/2 cosines then hs/2 sines */
    float *x, *xn, *qkv, *att, *fch, *fcact; /* (NB, C|C|S|C|FF|F), S = C + 2 KV, FF = 2F (SwiGLU) or F */
    float *mean, *rstd;         /* (NB) norm statistics */
    void *qin;                  /* converted input rows, per thread: 3 x QMV_MAX x qin_stride */
    float *xnt;                 /* normalized input rows, per thread: QMV_MAX x C */
    lmf_barrier bar;            /* the decode step's barriers (core/barrier.h: why not omp barrier) */
    size_t qin_stride;
    float *dq;                  /* dequantized weight slab: dq_floats */
    size_t dq_floats;
    float *scores;              /* nthreads x QBLK x n_ctx */
    float *part;                /* decode attention's per-thread stretches: nthreads x QMV_MAX x (C + NH) */
    float *logits;              /* (logits_rows, V) */
    int logits_rows;
    void *mem;
    size_t mem_bytes;
};

/* Prefill: runs QMV_MAX < N <= NB tokens at positions s->pos.. through the model; logits for rows [lo, N) into
 * logits (rows V apart). The norms' outputs and the products added to the residual share s->xn. */
static void forward(lmf_session *s, const int32_t *tok, int N, int lo, float *logits) {
    const lmf_weights *w = s->w;
    const lmf_model_config *c = &w->cfg;
    int C = c->n_embd;
    lmf_block_ctx ctx = {c, s->rope, s->dq, s->dq_floats, 1, N, s->pos, {s->kcache, s->vcache, s->n_ctx}, s->scores,
                         s->nthreads};
    lmf_block_rows r = {s->xn, s->mean, s->rstd, s->qkv, NULL, s->att, s->x, s->xn, s->mean, s->rstd, s->fch,
                        s->fcact, s->x, s->xn};
    lmf_block_embed(w, s->x, tok, N, N, s->pos);
    for (int l = 0; l < c->n_layer; l++) lmf_block_forward(&ctx, &w->layers[l], l, s->x, &r);
    s->pos += N;
    if (lo >= N) return;
    lmf_block_norm_par(c, s->xn, s->mean, s->rstd, s->x + (size_t)lo * C, w->out_norm_w, w->out_norm_b, N - lo);
    lmf_lin head = {&w->lm_head, NULL, logits, c->vocab_size};
    lmf_block_linear(&head, 1, s->xn, C, N - lo, s->dq, s->dq_floats);
}

/* Decode: N <= QMV_MAX tokens, the whole step in one parallel region (lmf_block_decode: five barriers per layer).
 * A fork/join per product cost ~150 region starts and ends per token. */
static void forward_decode(lmf_session *s, const int32_t *tok, int N, int lo, float *logits) {
    const lmf_weights *w = s->w;
    const lmf_model_config *c = &w->cfg;
    lmf_block_decode_ctx d = {c,      s->rope,    {s->kcache, s->vcache, s->n_ctx}, s->x,      s->xn, s->qkv,
                              s->fch, s->fcact,   s->part,   s->qin,   s->qin_stride, s->xnt, s->scores, &s->bar};
    lmf_block_embed(w, s->x, tok, N, N, s->pos);
    lmf_barrier_init(&s->bar);
#pragma omp parallel num_threads(s->nthreads)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        for (int l = 0; l < c->n_layer; l++)
            lmf_block_decode(&d, &w->layers[l], l + 1 < c->n_layer ? &w->layers[l + 1] : NULL,
                             lo < N ? &w->lm_head : NULL, l, N, s->pos, tid, nth);
        if (lo < N) lmf_block_decode_head(&d, w, N, lo, logits, tid, nth);
    }
    s->pos += N;
}

/* ---- sessions ----------------------------------------------------------------------------------------------- */

lmf_status lmf_session_create(const lmf_weights *w, int n_ctx, lmf_session **out) {
    *out = NULL;
    const lmf_model_config *c = &w->cfg;
    if (n_ctx <= 0) return lmf_fail(LMF_ERR_ARG, "context length %d must be positive", n_ctx);
    if (n_ctx > c->max_seq_len) n_ctx = c->max_seq_len;
    int C = c->n_embd, hs = C / c->n_head, KV = c->n_kv_head * hs, F = c->ffn_dim, L = c->n_layer;
    /* the decode layout, made once per weights (a cache inside them: the model's values do not change) */
    lmf_weights_prepare_decode((lmf_weights *)w);
    lmf_session *s = lmf_xcalloc(1, sizeof *s);
    s->w = w;
    s->n_ctx = n_ctx;
    s->nthreads = omp_get_max_threads();
    /* the largest converted input row any weight asks for, and the largest matrix (the dequantization slab
     * never needs to be bigger) */
    size_t qb = 0;
    s->dq_floats = 0;
    for (int l = -1; l < L; l++) {
        const lmf_layer_weights *Lw = &w->layers[l < 0 ? 0 : l];
        const lmf_wtensor *ts[LMF_LAYER_MATRICES];
        lmf_layer_matrices(Lw, ts);
        int n = LMF_LAYER_MATRICES;
        if (l < 0) ts[0] = &w->lm_head, n = 1;
        for (int t = 0; t < n; t++) {
            if (!ts[t]->rows) continue;
            if (lmf_qmatvec_supported(ts[t]->type) && lmf_qinput_bytes(ts[t]->type, ts[t]->cols) > qb)
                qb = lmf_qinput_bytes(ts[t]->type, ts[t]->cols);
            if ((size_t)ts[t]->rows * ts[t]->cols > s->dq_floats) s->dq_floats = (size_t)ts[t]->rows * ts[t]->cols;
        }
    }
    s->qin_stride = (qb + 63) & ~(size_t)63;
    if (s->dq_floats > DQ_BYTES / sizeof(float)) s->dq_floats = DQ_BYTES / sizeof(float);
    if (s->dq_floats < 16 * (size_t)(C > F ? C : F)) s->dq_floats = 16 * (size_t)(C > F ? C : F); /* one R16 group */
    size_t kv = (size_t)L * n_ctx * KV, FF = c->act == LMF_ACT_SWIGLU ? 2 * (size_t)F : (size_t)F;
    size_t floats[] = {kv, kv, (size_t)n_ctx * hs, (size_t)NB * C, (size_t)NB * C, (size_t)NB * (C + 2 * KV),
                       (size_t)NB * C, (size_t)NB * FF, (size_t)NB * F, NB, NB,
                       s->dq_floats, (size_t)s->nthreads * QBLK * n_ctx, (size_t)c->vocab_size,
                       ((size_t)s->nthreads * 3 * QMV_MAX * s->qin_stride + 3) / 4,
                       (size_t)s->nthreads * QMV_MAX * (size_t)C,
                       (size_t)s->nthreads * QMV_MAX * (size_t)(C + c->n_head)};
    float **dst[] = {&s->kcache, &s->vcache, &s->rope, &s->x, &s->xn, &s->qkv, &s->att, &s->fch, &s->fcact,
                     &s->mean, &s->rstd, &s->dq, &s->scores, &s->logits, (float **)&s->qin, &s->xnt, &s->part};
    size_t total = 0;
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) total += (floats[i] + 15) / 16 * 16;
    s->mem_bytes = total * sizeof(float);
    s->mem = lmf_alloc_big(s->mem_bytes);
    float *p = s->mem;
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
        *dst[i] = p;
        p += (floats[i] + 15) / 16 * 16;
    }
    s->logits_rows = 1;
    if (w->cfg.pos != LMF_POS_LEARNED) lmf_rope_table_make(s->rope, n_ctx, hs, c->rope_theta);
    *out = s;
    return LMF_OK;
}

void lmf_session_free(lmf_session *s) {
    if (!s) return;
    lmf_free_big(s->mem);
    if (s->logits_rows > 1) free(s->logits);
    free(s);
}

int lmf_session_pos(const lmf_session *s) { return s->pos; }
int lmf_session_n_ctx(const lmf_session *s) { return s->n_ctx; }
const lmf_weights *lmf_session_weights(const lmf_session *s) { return s->w; }

void lmf_session_rewind(lmf_session *s, int pos) {
    if (pos < 0) pos = 0;
    if (pos < s->pos) s->pos = pos;
}

lmf_status lmf_session_eval(lmf_session *s, const int32_t *tokens, int n, int all_logits, const float **logits) {
    const lmf_model_config *c = &s->w->cfg;
    if (logits) *logits = NULL;
    if (n <= 0) return lmf_fail(LMF_ERR_ARG, "lmf_session_eval: %d tokens", n);
    if (s->pos + n > s->n_ctx)
        return lmf_fail(LMF_ERR_ARG, "the context is full: %d tokens + %d new exceed the context length %d", s->pos,
                        n, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return lmf_fail(LMF_ERR_ARG, "token %d (at %d) is outside the vocabulary [0, %d)", tokens[i], i,
                            c->vocab_size);
    size_t V = (size_t)c->vocab_size;
    if (all_logits && n > s->logits_rows) {
        if (s->logits_rows > 1) free(s->logits);
        s->logits = lmf_xmalloc((size_t)n * V * sizeof(float));
        s->logits_rows = n;
    }
    for (int i0 = 0; i0 < n; i0 += NB) {
        int nb = n - i0 < NB ? n - i0 : NB, last = i0 + nb == n;
        /* rows that need logits: all of them, or only the very last token */
        int lo = all_logits ? 0 : (last ? nb - 1 : nb);
        if (nb <= QMV_MAX) forward_decode(s, tokens + i0, nb, lo, all_logits ? s->logits + (size_t)i0 * V : s->logits);
        else forward(s, tokens + i0, nb, lo, all_logits ? s->logits + (size_t)i0 * V : s->logits);
    }
    if (logits) *logits = s->logits;
    return LMF_OK;
}
