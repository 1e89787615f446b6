/* infer.c — the inference executor: KV pools, sessions (one sequence each) and the step that runs several of them.
 *
 * A pool (lmf_kv_pool) owns the memory of the sequences it serves: KV blocks of bs positions (every layer's K and V,
 * transposed: block code in block.h), handed out to sessions as they grow and taken back on rewind / free, and the
 * scratch of one step (rows, dequantization slab, attention scores), so a session itself is only its block table,
 * its position and its logits. lmf_session_create makes a session with a pool of its own.
 *
 * A step takes up to NB rows from one or more sessions of a pool (lmf_session_eval_batch; lmf_session_eval is a step
 * of one): more than QMV_AUTO rows take the prefill path (lmf_block_forward over scratch rows, writing the caches),
 * fewer the decode step (lmf_block_decode for every layer inside one parallel region); the server picks the path
 * itself (lmf_session_step, model/infer.h), so that a row's path never depends on the rows beside it. Either way each weight matrix
 * is read once per step for all the rows, whichever sequence they belong to. The block itself, both linear paths
 * and the attentions are in block.c.
 *
 * Sliding-window layers (Gemma 2 / 3, Mistral): a query reads only the last W positions of such a layer, so a pool
 * that serves a model with them (and whose sequences outgrow their windows) splits: its blocks hold the full-attention
 * layers only, and the windowed layers have blocks of their own (block.h: lmf_kv_view), which a session hands back as
 * soon as every position in one is older than its window (keeping one block more, so that short rewinds hold). That
 * arena holds n_windows sequences' windows (lmf_kv_pool_create_windows); Gemma 3 keeps 1 of its 6 layers at every
 * position, and at 32k positions a sequence needs about a fifth of the memory.
 *
 * Memory: the pool's blocks (2 L bs KV floats each, L the full-attention layers) and windowed blocks, scratch of
 * about NB (3C + 2QD + 2KV + 3F) floats, DQ_BYTES, and per thread 64 x max_ctx attention scores; the weights stay
 * where the loader put them (usually the file mapping), the quantized matrices repacked to R16 at load time
 * (lmf_weights_prepare_decode). */
#include "core/alloc.h"
#include "core/barrier.h"
#include "core/status.h"
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "kernels/quant.h"
#include "model/infer.h"
#include "model/block.h"
#include "model/moe.h"
#include "model/lora.h"
#include "model/weights.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define NB LMF_BLOCK_NB
#define QMV_MAX LMF_BLOCK_QMV_MAX
#define QBLK LMF_BLOCK_QBLK
#define DQ_BYTES (8u << 20)     /* largest fp32 slab of dequantized weights */

#define KV_BLOCK 256             /* positions per pool block unless the caller asks otherwise */

struct lmf_kv_pool {
    const lmf_weights *w;
    int bs, n_blocks, max_ctx, nthreads;
    int step;                   /* tokens one session appends in a step at most */
    lmf_kv_type kv_type;
    void *k, *v;                /* n_blocks x (L, KV, bs) each: floats, or halves (LMF_KV_F16) */
    float *kvbuf;               /* f16 prefill: per thread, a block's K or V of one head widened (hs x bs) */
    int *free_ids, n_free;      /* a stack of free block ids */
    int *refs;                  /* per block (windowed ones after the n_blocks others): the sessions (and prefix-cache
                                   entries) holding it; free at 0 */
    /* a pool that splits (window > 0): the windowed layers' blocks, ids n_blocks.. n_blocks + n_wblocks - 1 */
    int window, layers, wlayers, n_wblocks, per_seq; /* per_seq: windowed blocks a sequence holds at most */
    int *slot;                  /* per layer: its index among the layers of its kind */
    void *wk, *wv;              /* n_wblocks x (wlayers, KV, bs) each */
    int *wfree_ids, n_wfree;
    /* the scratch of one step */
    float *rope;                /* (max_ctx, hs): per position hs/2 cosines then hs/2 sines */
    float *rope_swa;            /* the windowed layers' (cfg.rope_theta_swa), or NULL */
    float *x, *xn, *qkv, *att, *fch, *fcact; /* (NB, C|C|S|QD|FF|F), S = QD + 2 KV, QD = n_head hs, FF = 2F or F */
    float *mean, *rstd;         /* (NB) norm statistics */
    void *qin;                  /* converted input rows, per thread: 3 x QMV_MAX x qin_stride */
    float *xnt;                 /* normalized input rows, per thread: QMV_MAX x lmf_block_xn_width */
    lmf_barrier bar;            /* the decode step's barriers (core/barrier.h: why not omp barrier) */
    size_t qin_stride;
    float *dq;                  /* dequantized weight slab: dq_floats */
    size_t dq_floats;
    float *scores;              /* nthreads x QBLK x max_ctx */
    float *part;                /* decode attention's per-thread stretches: nthreads x QMV_MAX x (QD + NH) */
    const lmf_lora *lora;       /* adapters every step applies without merging (lmf_session_set_lora), or NULL */
    lmf_block_observe_fn observe; /* prefill steps' linear inputs go here first (lmf_session_set_observer), or NULL */
    void *observe_user;
    float *lora_t;              /* the adapters' A x rows of a prefill step: lmf_lora_t_floats(lora, NB) */
    float *moe, *moe_scratch;   /* mixture of experts: one layer's routing and expert rows for NB rows, scratch */
    float *head_logits;         /* (head_rows, V), grown on demand: a batch step's logits before they go to their
                                   sessions, when the caller gave no buffer */
    int head_rows;
    void *kv_mem, *mem;
    size_t kv_bytes, mem_bytes;
};

struct lmf_session {
    lmf_kv_pool *pool;
    int own_pool;
    int n_ctx, pos;
    int *blocks, n_blocks;      /* block table: positions [i bs, (i + 1) bs) live in block blocks[i] */
    int *wblocks, w_lo;         /* a pool that splits: the windowed layers' table (-1 below w_lo: handed back) */
    float *logits;              /* (logits_rows, V) */
    int logits_rows;
};

/* Gemma 2's final soft-capping of nr rows of logits: x -> cap tanh(x / cap). */
static void softcap_logits(const lmf_model_config *c, float *logits, int nr) {
    float cap = c->final_softcap;
    if (!cap) return;
    size_t n = (size_t)nr * c->vocab_size, chunk = 16384;
    long nc = (long)((n + chunk - 1) / chunk);
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static) if (nc > 2)
    for (long k = 0; k < nc; k++) {
        size_t i = (size_t)k * chunk;
        v->softcap(logits + i, (int)(n - i < chunk ? n - i : chunk), 1.0f, cap);
    }
}

/* One step over the rows of n sequences (N = sum of seqs[j].n <= NB rows, tokens in that order): the logits of the
 * nr rows listed in rows go to out (nr x V). */
static void step(lmf_kv_pool *p, const lmf_block_seq *seqs, int n, const int32_t *tok, int N, const int *rows,
                 int nr, float *out, int prefill) {
    const lmf_weights *w = p->w;
    const lmf_model_config *c = &w->cfg;
    int C = c->n_embd;
    for (int j = 0, row = 0; j < n; row += seqs[j++].n)
        lmf_block_embed(w, p->x + (size_t)row * C, tok + row, seqs[j].n, seqs[j].n, seqs[j].p0, NULL);
    if (prefill) {
        lmf_block_ctx ctx = {.cfg = c, .rope = p->rope, .rope_swa = p->rope_swa, .dq = p->dq,
                             .dq_floats = p->dq_floats, .B = 1, .T = N,
                             .seqs = seqs, .n_seqs = n, .scores = p->scores,
                             .scores_stride = (size_t)QBLK * p->max_ctx, .kvbuf = p->kvbuf,
                             .kvbuf_stride = (size_t)lmf_head_size(c) * p->bs, .nthreads = p->nthreads,
                             .lora = (lmf_lora *)p->lora, .observe = p->observe, .observe_user = p->observe_user};
        /* the norms' outputs and the products added to the residual share p->xn */
        lmf_block_rows r = {p->xn, p->mean, p->rstd, p->qkv, NULL, p->att, p->x, p->xn, p->mean, p->rstd, p->fch,
                            p->fcact, p->x, p->xn, p->lora_t, p->moe, p->moe_scratch, NULL, NULL, NULL, NULL, NULL,
                            NULL, NULL, NULL, NULL, NULL, NULL};
        for (int l = 0; l < c->n_layer; l++) lmf_block_forward(&ctx, &w->layers[l], l, p->x, &r);
        if (!nr) return;
        for (int i = 0; i < nr; i++)
            lmf_block_norm(c, p->xn + (size_t)i * C, p->mean, p->rstd, p->x + (size_t)rows[i] * C, w->out_norm_w,
                           w->out_norm_b, 1);
        lmf_lin head = {&w->lm_head, NULL, out, c->vocab_size};
        lmf_block_observe(&ctx, -1, LMF_OBS_OUTPUT, -1, p->xn, C, nr, C);
        lmf_block_linear(&head, 1, p->xn, C, nr, p->dq, p->dq_floats, LMF_LIN_QINT | LMF_LIN_SPLIT);
        softcap_logits(c, out, nr);
        return;
    }
    /* decode: the whole step in one parallel region (lmf_block_decode: five barriers per layer); a fork/join per
     * product cost ~150 region starts and ends per token */
    lmf_block_decode_ctx d = {.cfg = c, .rope = p->rope, .rope_swa = p->rope_swa, .seqs = seqs, .n_seqs = n, .x = p->x,
                              .proj = p->xn,
                              .qkv = p->qkv, .fch = p->fch, .fcact = p->fcact, .part = p->part, .qin = p->qin,
                              .qin_stride = p->qin_stride, .xnt = p->xnt, .scores = p->scores,
                              .scores_stride = (size_t)QBLK * p->max_ctx, .lora = p->lora,
                              .bar = &p->bar, .moe = p->moe};
    lmf_block_decode_rows(&d);
    lmf_barrier_init(&p->bar);
#pragma omp parallel num_threads(p->nthreads)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        for (int l = 0; l < c->n_layer; l++)
            lmf_block_decode(&d, &w->layers[l], l + 1 < c->n_layer ? &w->layers[l + 1] : NULL,
                             nr ? &w->lm_head : NULL, l, N, tid, nth);
        if (nr) lmf_block_decode_head(&d, w, rows, nr, out, tid, nth);
    }
    softcap_logits(c, out, nr);
}

/* ---- pools -------------------------------------------------------------------------------------------------- */

/* Windowed blocks a sequence holds at most: a step of up to `step` rows at position p reads from p - W + 1 on (the
 * window's first block may be partial), and one block more is kept (trim_window). */
static int window_blocks_per_seq(int window, int bs, int step) { return (window - 1 + step + bs - 1) / bs + 2; }

/* The layers of each kind (windowed or not) and each layer's slot among its kind; 0 when the pool does not split:
 * no windowed layers, or n_windows sequences' windows would take as many blocks as the positions themselves. */
static int plan_split(lmf_kv_pool *p, const lmf_model_config *c, int n_windows) {
    int W = c->sliding_window, nw = 0;
    for (int l = 0; l < c->n_layer; l++) nw += lmf_block_layer_window(c, l) != 0;
    if (!W || !nw || n_windows <= 0) return 0;
    int per_seq = window_blocks_per_seq(W, p->bs, p->step);
    if ((long)per_seq * n_windows >= p->n_blocks) return 0;
    p->window = W, p->per_seq = per_seq, p->n_wblocks = per_seq * n_windows;
    p->slot = lmf_xmalloc(sizeof(int) * (size_t)c->n_layer);
    for (int l = 0; l < c->n_layer; l++) p->slot[l] = lmf_block_layer_window(c, l) ? p->wlayers++ : p->layers++;
    return 1;
}

double lmf_kv_pool_positions_for(const lmf_model_config *c, double bytes, int block_size, int n_windows,
                                 int max_step, lmf_kv_type type) {
    double per_layer = 2.0 * lmf_kv_width(c) * (double)lmf_kv_type_bytes(type); /* K and V of one position */
    int nw = 0, bs = block_size > 0 ? block_size : KV_BLOCK, step = max_step > 0 && max_step < NB ? max_step : NB;
    for (int l = 0; l < c->n_layer; l++) nw += lmf_block_layer_window(c, l) != 0;
    if (c->sliding_window && nw && n_windows > 0) { /* as plan_split: only where the windows are the smaller part */
        double wblocks = (double)window_blocks_per_seq(c->sliding_window, bs, step) * n_windows;
        double rest = bytes - wblocks * bs * nw * per_layer;
        double P = nw == c->n_layer ? INFINITY : floor(rest / ((c->n_layer - nw) * per_layer));
        if (rest > 0 && ceil(P / bs) > wblocks) return P;
    }
    return floor(bytes / (c->n_layer * per_layer));
}

lmf_status lmf_kv_pool_create(const lmf_weights *w, int n_positions, int block_size, int max_ctx, lmf_kv_type type,
                               lmf_kv_pool **out) {
    int cap = max_ctx <= 0 || max_ctx > w->cfg.max_seq_len ? w->cfg.max_seq_len : max_ctx;
    int seqs = n_positions > 0 && cap > 0 ? n_positions / cap : 1;
    return lmf_kv_pool_create_windows(w, n_positions, block_size, max_ctx, type, seqs > 1 ? seqs : 1, 0, out);
}

lmf_status lmf_kv_pool_create_windows(const lmf_weights *w, int n_positions, int block_size, int max_ctx,
                                      lmf_kv_type type, int n_windows, int max_step, lmf_kv_pool **out) {
    *out = NULL;
    if (type != LMF_KV_F32 && type != LMF_KV_F16) return lmf_fail(LMF_ERR_ARG, "KV pool: unknown cache type %d", type);
    const lmf_model_config *c = &w->cfg;
    if (block_size <= 0) block_size = KV_BLOCK;
    if (max_ctx <= 0 || max_ctx > c->max_seq_len) max_ctx = c->max_seq_len;
    if (n_positions <= 0) return lmf_fail(LMF_ERR_ARG, "KV pool: %d positions must be positive", n_positions);
    if (max_ctx > n_positions) max_ctx = n_positions;
    int C = c->n_embd, hs = lmf_head_size(c), QD = lmf_q_width(c), KV = lmf_kv_width(c), F = c->ffn_dim;
    int L = c->n_layer;
    lmf_kv_pool *p = lmf_xcalloc(1, sizeof *p);
    p->w = w;
    p->bs = block_size;
    p->kv_type = type;
    p->n_blocks = (n_positions + block_size - 1) / block_size;
    p->max_ctx = max_ctx;
    p->step = max_step > 0 && max_step < NB ? max_step : NB;
    p->nthreads = omp_get_max_threads();
    if (!plan_split(p, c, n_windows)) p->layers = L;
    size_t block_floats = (size_t)p->layers * KV * block_size, wblock_floats = (size_t)p->wlayers * KV * block_size;
    size_t esize = lmf_kv_type_bytes(type);
    p->kv_bytes = 2 * ((size_t)p->n_blocks * block_floats + (size_t)p->n_wblocks * wblock_floats) * esize;
    double have = lmf_mem_physical();
    if (have > 0 && (double)p->kv_bytes > have) {
        lmf_status st = lmf_fail(LMF_ERR_ARG, "the KV cache (%d positions, %.0f MiB) is larger than this machine's "
                                 "%.0f MiB of memory: ask for fewer positions", p->n_blocks * block_size,
                                 p->kv_bytes / 1048576.0, have / 1048576.0);
        free(p->slot);
        free(p);
        return st;
    }
    p->kv_mem = lmf_alloc_big_lazy(p->kv_bytes); /* committed as blocks are first used */
    size_t full = (size_t)p->n_blocks * block_floats * esize, win = (size_t)p->n_wblocks * wblock_floats * esize;
    p->k = p->kv_mem, p->v = (char *)p->kv_mem + full;
    p->wk = (char *)p->kv_mem + 2 * full, p->wv = (char *)p->kv_mem + 2 * full + win;
    p->free_ids = lmf_xmalloc((size_t)p->n_blocks * sizeof(int));
    p->wfree_ids = lmf_xmalloc((size_t)(p->n_wblocks + 1) * sizeof(int));
    p->refs = lmf_xcalloc((size_t)(p->n_blocks + p->n_wblocks), sizeof(int));
    for (int i = 0; i < p->n_blocks; i++) p->free_ids[i] = p->n_blocks - 1 - i; /* block 0 handed out first */
    for (int i = 0; i < p->n_wblocks; i++) p->wfree_ids[i] = p->n_blocks + p->n_wblocks - 1 - i;
    p->n_free = p->n_blocks, p->n_wfree = p->n_wblocks;

    /* the largest converted input row any weight asks for, and the largest matrix (the dequantization slab never
     * needs to be bigger) */
    size_t qb = 0;
    for (int l = -1; l < L; l++) {
        const lmf_wtensor *ts[LMF_LAYER_MATRICES + LMF_MOE_MATRICES(LMF_MAX_EXPERT)];
        lmf_layer_matrices(&w->layers[l < 0 ? 0 : l], ts);
        int n = LMF_LAYER_MATRICES;
        if (l < 0) ts[0] = &w->lm_head, n = 1;
        if (l >= 0) n += lmf_layer_moe_matrices(&w->layers[l], c->n_expert, ts + n); /* experts: same widths */
        for (int t = 0; t < n; t++) {
            if (!ts[t]->rows) continue;
            if (lmf_qmatvec_supported(ts[t]->type) && lmf_qinput_bytes(ts[t]->type, ts[t]->cols) > qb)
                qb = lmf_qinput_bytes(ts[t]->type, ts[t]->cols);
            if ((size_t)ts[t]->rows * ts[t]->cols > p->dq_floats) p->dq_floats = (size_t)ts[t]->rows * ts[t]->cols;
        }
    }
    p->qin_stride = (qb + 63) & ~(size_t)63;
    if (p->dq_floats > DQ_BYTES / sizeof(float)) p->dq_floats = DQ_BYTES / sizeof(float);
    size_t widest = (size_t)(C > F ? C : F) > (size_t)QD ? (size_t)(C > F ? C : F) : (size_t)QD; /* o's input: QD */
    if (p->dq_floats < 16 * widest) p->dq_floats = 16 * widest; /* an R16 group */
    size_t FF = lmf_act_gated(c->act) ? 2 * (size_t)F : (size_t)F, T = (size_t)p->nthreads;
    size_t ropes = c->rope_theta_swa != 0.0f ? 2 : 1; /* the windowed layers' own table after the main one */
    size_t floats[] = {(size_t)max_ctx * hs * ropes, (size_t)NB * C, (size_t)NB * C, (size_t)NB * (QD + 2 * KV),
                       (size_t)NB * QD, (size_t)NB * FF, (size_t)NB * F, NB, NB, p->dq_floats, T * QBLK * max_ctx,
                       (T * 3 * QMV_MAX * p->qin_stride + 3) / 4, T * QMV_MAX * (size_t)lmf_block_xn_width(c),
                       T * QMV_MAX * (size_t)(QD + c->n_head), type == LMF_KV_F16 ? T * hs * block_size : 0};
    float **dst[] = {&p->rope, &p->x, &p->xn, &p->qkv, &p->att, &p->fch, &p->fcact, &p->mean, &p->rstd, &p->dq,
                     &p->scores, (float **)&p->qin, &p->xnt, &p->part, &p->kvbuf};
    size_t total = 0;
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) total += (floats[i] + 15) / 16 * 16;
    p->mem_bytes = total * sizeof(float);
    p->mem = lmf_alloc_big(p->mem_bytes);
    float *q = p->mem;
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
        *dst[i] = q;
        q += (floats[i] + 15) / 16 * 16;
    }
    if (c->rope_scaling == LMF_ROPE_SCALING_LONGROPE) /* llama.cpp's choice: long factors past the original context */
        lmf_rope_table_scaled(p->rope, max_ctx, hs, c->rope_theta,
                              max_ctx > c->rope_orig_ctx ? w->rope_long : w->rope_short, c->rope_factor);
    else if (c->pos != LMF_POS_LEARNED) lmf_block_rope_table(c, p->rope, max_ctx);
    if (lmf_block_rope_table_swa(c, p->rope + (size_t)max_ctx * hs, max_ctx))
        p->rope_swa = p->rope + (size_t)max_ctx * hs;
    if (c->n_expert) {
        p->moe = lmf_xmalloc(sizeof(float) * lmf_moe_layer_floats(c, NB));
        p->moe_scratch = lmf_xmalloc(sizeof(float) * lmf_moe_scratch_floats(c, NB, 0));
    }
    *out = p;
    return LMF_OK;
}

void lmf_kv_pool_free(lmf_kv_pool *p) {
    if (!p) return;
    lmf_free_big(p->kv_mem);
    lmf_free_big(p->mem);
    LMF_FREE_ALL(p->head_logits, p->lora_t, p->moe, p->moe_scratch, p->free_ids, p->wfree_ids, p->slot, p->refs, p);
}

int lmf_kv_pool_blocks(const lmf_kv_pool *p) { return p->n_blocks; }
void lmf_session_set_lora(lmf_session *s, const lmf_lora *l) {
    lmf_kv_pool *p = s->pool;
    free(p->lora_t); /* scratch sized for this adapter, made here rather than in every step */
    p->lora_t = l ? lmf_xmalloc(sizeof(float) * lmf_lora_t_floats(l, NB)) : NULL;
    p->lora = l;
}
void lmf_session_set_observer(lmf_session *s, lmf_block_observe_fn fn, void *user) {
    s->pool->observe = fn, s->pool->observe_user = user;
}
int lmf_kv_pool_blocks_free(const lmf_kv_pool *p) { return p->n_free; }
int lmf_kv_pool_window(const lmf_kv_pool *p) { return p->window; }
int lmf_kv_pool_window_blocks(const lmf_kv_pool *p) { return p->n_wblocks; }
int lmf_kv_pool_window_blocks_free(const lmf_kv_pool *p) { return p->n_wfree; }
int lmf_kv_pool_window_peak(const lmf_kv_pool *p) { return p->per_seq; }
int lmf_kv_pool_block_size(const lmf_kv_pool *p) { return p->bs; }
size_t lmf_kv_pool_bytes(const lmf_kv_pool *p) { return p->kv_bytes; }

lmf_status lmf_kv_pool_commit(lmf_kv_pool *p) {
    double avail = lmf_mem_available();
    if (avail > 0 && (double)p->kv_bytes > avail)
        return lmf_fail(LMF_ERR_ARG, "the KV cache (%d positions, %.0f MiB) does not fit in the %.0f MiB of memory "
                        "available: ask for fewer positions", p->n_blocks * p->bs, p->kv_bytes / 1048576.0,
                        avail / 1048576.0);
    /* in 2 MiB pieces over the threads: page faults on one mapping proceed in parallel */
    const size_t piece = 2u << 20;
    long n = (long)((p->kv_bytes + piece - 1) / piece);
#pragma omp parallel for schedule(dynamic, 8)
    for (long i = 0; i < n; i++) {
        size_t off = (size_t)i * piece;
        lmf_alloc_commit(p->kv_mem, off, p->kv_bytes - off < piece ? p->kv_bytes - off : piece);
    }
    return LMF_OK;
}

/* ---- sessions ----------------------------------------------------------------------------------------------- */

lmf_status lmf_session_create_pooled(lmf_kv_pool *pool, int n_ctx, lmf_session **out) {
    *out = NULL;
    if (n_ctx <= 0) return lmf_fail(LMF_ERR_ARG, "context length %d must be positive", n_ctx);
    if (n_ctx > pool->max_ctx) n_ctx = pool->max_ctx;
    lmf_session *s = lmf_xcalloc(1, sizeof *s);
    s->pool = pool;
    s->n_ctx = n_ctx;
    s->blocks = lmf_xmalloc((size_t)((n_ctx + pool->bs - 1) / pool->bs) * sizeof(int));
    if (pool->window) s->wblocks = lmf_xmalloc((size_t)((n_ctx + pool->bs - 1) / pool->bs) * sizeof(int));
    s->logits = lmf_xmalloc((size_t)pool->w->cfg.vocab_size * sizeof(float));
    s->logits_rows = 1;
    *out = s;
    return LMF_OK;
}

size_t lmf_kv_type_bytes(lmf_kv_type type) { return type == LMF_KV_F16 ? 2 : 4; }

lmf_status lmf_kv_type_parse(const char *name, lmf_kv_type *out) {
    if (!strcmp(name, "f32")) *out = LMF_KV_F32;
    else if (!strcmp(name, "f16")) *out = LMF_KV_F16;
    else return lmf_fail(LMF_ERR_ARG, "KV cache type '%s': expected f32 or f16", name);
    return LMF_OK;
}

lmf_status lmf_session_create(const lmf_weights *w, int n_ctx, lmf_session **out) {
    return lmf_session_create_kv(w, n_ctx, LMF_KV_F32, out);
}

lmf_status lmf_session_create_kv(const lmf_weights *w, int n_ctx, lmf_kv_type type, lmf_session **out) {
    *out = NULL;
    if (n_ctx <= 0) return lmf_fail(LMF_ERR_ARG, "context length %d must be positive", n_ctx);
    if (n_ctx > w->cfg.max_seq_len) n_ctx = w->cfg.max_seq_len;
    lmf_kv_pool *p;
    /* a pool of its own, of whole blocks: one block when the context fits one (the cache is then contiguous) */
    int bs = n_ctx <= KV_BLOCK ? n_ctx : KV_BLOCK;
    LMF_TRY(lmf_kv_pool_create(w, n_ctx, bs, n_ctx, type, &p));
    lmf_status st = lmf_session_create_pooled(p, n_ctx, out);
    if (st != LMF_OK) {
        lmf_kv_pool_free(p);
        return st;
    }
    (*out)->own_pool = 1;
    return LMF_OK;
}

void lmf_kv_pool_ref(lmf_kv_pool *p, int block) { p->refs[block]++; }
int lmf_kv_pool_block_refs(const lmf_kv_pool *p, int block) { return p->refs[block]; }

void lmf_kv_pool_unref(lmf_kv_pool *p, int block) {
    if (--p->refs[block]) return;
    if (block < p->n_blocks) p->free_ids[p->n_free++] = block;
    else p->wfree_ids[p->n_wfree++] = block;
}

int lmf_kv_pool_window_first(const lmf_kv_pool *p, int pos) {
    int f = pos - p->window + 1;
    return f > 0 ? f / p->bs : 0;
}

/* Gives back the blocks that hold no position below pos (a block shared with others stays theirs). */
static void release_blocks(lmf_session *s, int pos) {
    int keep = (pos + s->pool->bs - 1) / s->pool->bs;
    while (s->n_blocks > keep) {
        s->n_blocks--;
        lmf_kv_pool_unref(s->pool, s->blocks[s->n_blocks]);
        if (s->wblocks && s->wblocks[s->n_blocks] >= 0) lmf_kv_pool_unref(s->pool, s->wblocks[s->n_blocks]);
    }
    if (s->w_lo > s->n_blocks) s->w_lo = s->n_blocks;
}

/* Gives back the windowed blocks older than the window, but one (a rewind by up to a block keeps its cache). */
static void trim_window(lmf_session *s) {
    if (!s->wblocks) return;
    int lo = lmf_kv_pool_window_first(s->pool, s->pos) - 1;
    for (; s->w_lo < lo && s->w_lo < s->n_blocks; s->w_lo++) {
        if (s->wblocks[s->w_lo] >= 0) lmf_kv_pool_unref(s->pool, s->wblocks[s->w_lo]);
        s->wblocks[s->w_lo] = -1;
    }
}

int lmf_session_block_table(const lmf_session *s, const int **blocks) {
    *blocks = s->blocks;
    return s->n_blocks;
}

const int *lmf_session_window_table(const lmf_session *s) { return s->wblocks; }

lmf_kv_pool *lmf_session_pool(const lmf_session *s) { return s->pool; }

lmf_status lmf_session_adopt(lmf_session *s, const int *blocks, const int *wblocks, int n) {
    lmf_kv_pool *p = s->pool;
    if (s->pos || s->n_blocks)
        return lmf_fail(LMF_ERR_ARG, "a session adopts cached blocks only when empty (it holds %d tokens)", s->pos);
    if ((long)n * p->bs > s->n_ctx)
        return lmf_fail(LMF_ERR_ARG, "%d blocks of %d positions exceed the context length %d", n, p->bs, s->n_ctx);
    int lo = p->window ? lmf_kv_pool_window_first(p, n * p->bs) : n;
    for (int i = lo; i < n; i++)
        if (!wblocks || wblocks[i] < p->n_blocks)
            return lmf_fail(LMF_ERR_ARG, "adopting %d blocks: the windowed layers' block %d is missing", n, i);
    for (int i = 0; i < n; i++) {
        lmf_kv_pool_ref(p, blocks[i]);
        s->blocks[s->n_blocks++] = blocks[i];
        if (!p->window) continue;
        s->wblocks[i] = i >= lo ? wblocks[i] : -1;
        if (i >= lo) lmf_kv_pool_ref(p, wblocks[i]);
    }
    s->w_lo = lo < n ? lo : n;
    s->pos = n * p->bs;
    return LMF_OK;
}

int lmf_session_blocks_needed(const lmf_session *s, int n) {
    return (s->pos + n + s->pool->bs - 1) / s->pool->bs - s->n_blocks;
}

void lmf_session_free(lmf_session *s) {
    if (!s) return;
    release_blocks(s, 0);
    if (s->own_pool) lmf_kv_pool_free(s->pool);
    LMF_FREE_ALL(s->blocks, s->wblocks, s->logits, s);
}

int lmf_session_pos(const lmf_session *s) { return s->pos; }
int lmf_session_n_ctx(const lmf_session *s) { return s->n_ctx; }
const lmf_weights *lmf_session_weights(const lmf_session *s) { return s->pool->w; }

void lmf_session_rewind(lmf_session *s, int pos) {
    if (pos < 0) pos = 0;
    /* the windowed layers' keys before pos went back to the pool: nothing from there on can be kept */
    if (pos < s->pos && s->wblocks && lmf_kv_pool_window_first(s->pool, pos) < s->w_lo) pos = 0;
    if (pos < s->pos) s->pos = pos;
    release_blocks(s, s->pos);
}

/* Checks n new tokens of session s (the i-th of a step) and reserves the cache blocks they need. */
static lmf_status admit(lmf_session *s, int i, const int32_t *tokens, int n) {
    const lmf_model_config *c = &s->pool->w->cfg;
    if (n <= 0) return lmf_fail(LMF_ERR_ARG, "session %d: %d tokens to evaluate", i, n);
    if (s->pos + n > s->n_ctx)
        return lmf_fail(LMF_ERR_ARG, "the context is full: %d tokens + %d new exceed the context length %d", s->pos,
                        n, s->n_ctx);
    for (int k = 0; k < n; k++)
        if (tokens[k] < 0 || tokens[k] >= c->vocab_size)
            return lmf_fail(LMF_ERR_ARG, "token %d (at %d) is outside the vocabulary [0, %d)", tokens[k], k,
                            c->vocab_size);
    return LMF_OK;
}

/* Fails unless the pool can hand out `need` blocks and `wneed` windowed ones. */
static lmf_status check_free(const lmf_kv_pool *p, int need, int wneed) {
    if (need > p->n_free)
        return lmf_fail(LMF_ERR_ARG, "the KV pool is exhausted: %d more blocks of %d positions needed, %d free", need,
                        p->bs, p->n_free);
    if (p->window && wneed > p->n_wfree)
        return lmf_fail(LMF_ERR_ARG, "the KV pool's windowed blocks are exhausted: %d more needed, %d free (it holds "
                        "%d sequences' windows)", wneed, p->n_wfree, p->n_wblocks / p->per_seq);
    return LMF_OK;
}

static lmf_status reserve(lmf_session *s, int pos_end) {
    lmf_kv_pool *p = s->pool;
    int need = (pos_end + p->bs - 1) / p->bs - s->n_blocks;
    LMF_TRY(check_free(p, need, need));
    while (s->n_blocks * p->bs < pos_end) {
        int b = p->free_ids[--p->n_free];
        p->refs[b] = 1;
        if (p->window) {
            int wb = p->wfree_ids[--p->n_wfree];
            p->refs[wb] = 1;
            s->wblocks[s->n_blocks] = wb;
        }
        s->blocks[s->n_blocks++] = b;
    }
    return LMF_OK;
}

/* The cache of session s as a step sees it. */
static lmf_kv_view view(const lmf_session *s) {
    const lmf_kv_pool *p = s->pool;
    return (lmf_kv_view){p->k, p->v, p->wk, p->wv, s->blocks, s->wblocks, p->slot, p->layers, p->wlayers,
                         p->n_blocks, p->bs, p->kv_type == LMF_KV_F16};
}

lmf_status lmf_session_eval_batch(lmf_session *const *ss, const int32_t *const *tokens, const int *n, int count,
                                  float *logits) {
    return lmf_session_step(ss, tokens, n, count, logits, LMF_STEP_AUTO);
}

lmf_status lmf_session_step(lmf_session *const *ss, const int32_t *const *tokens, const int *n, int count,
                            float *logits, lmf_step_path path) {
    if (count <= 0) return lmf_fail(LMF_ERR_ARG, "lmf_session_eval_batch: %d sessions", count);
    lmf_kv_pool *p = ss[0]->pool;
    int total = 0, blocks = 0;
    for (int i = 0; i < count; i++) {
        if (ss[i]->pool != p) return lmf_fail(LMF_ERR_ARG, "session %d is not in the pool of session 0", i);
        for (int j = 0; j < i; j++)
            if (ss[j] == ss[i]) return lmf_fail(LMF_ERR_ARG, "session %d appears twice in the batch", i);
        LMF_TRY(admit(ss[i], i, tokens[i], n[i]));
        if (n[i] > p->step)
            return lmf_fail(LMF_ERR_ARG, "session %d: %d tokens in one step, more than the pool's %d", i, n[i],
                            p->step);
        total += n[i];
        blocks += (ss[i]->pos + n[i] + p->bs - 1) / p->bs - ss[i]->n_blocks;
    }
    if (total > NB) return lmf_fail(LMF_ERR_ARG, "a step takes at most %d tokens, got %d", NB, total);
    if (path == LMF_STEP_DECODE && total > QMV_MAX)
        return lmf_fail(LMF_ERR_ARG, "a decode step takes at most %d rows, got %d", QMV_MAX, total);
    int prefill = path == LMF_STEP_PREFILL || (path == LMF_STEP_AUTO && total > LMF_BLOCK_QMV_AUTO);
    LMF_TRY(check_free(p, blocks, blocks));
    lmf_block_seq seqs[NB];
    int32_t tok[NB];
    int rows[NB];
    for (int i = 0, row = 0; i < count; row += n[i++]) {
        reserve(ss[i], ss[i]->pos + n[i]);
        seqs[i] = (lmf_block_seq){view(ss[i]), ss[i]->pos, n[i]};
        memcpy(tok + row, tokens[i], (size_t)n[i] * sizeof(int32_t));
        rows[i] = row + n[i] - 1;
    }
    size_t V = (size_t)p->w->cfg.vocab_size;
    if (!logits && count > p->head_rows) {
        free(p->head_logits);
        p->head_logits = lmf_xmalloc((size_t)count * V * sizeof(float));
        p->head_rows = count;
    }
    float *out = logits ? logits : p->head_logits;
    step(p, seqs, count, tok, total, rows, count, out, prefill);
    for (int i = 0; i < count; i++) {
        ss[i]->pos += n[i];
        trim_window(ss[i]);
        memcpy(ss[i]->logits, out + i * V, V * sizeof(float));
    }
    return LMF_OK;
}

/* The windowed blocks session s takes at most beyond those it holds while it evaluates n tokens, NB at a time (it
 * hands old ones back after each step). */
static int window_growth(const lmf_session *s, int n) {
    const lmf_kv_pool *p = s->pool;
    int held = s->n_blocks - s->w_lo, most = held, lo = s->w_lo;
    for (int pos = s->pos, e; pos < s->pos + n; pos = e) {
        e = pos + p->step < s->pos + n ? pos + p->step : s->pos + n;
        int during = (e + p->bs - 1) / p->bs - lo;
        if (during > most) most = during;
        int next = lmf_kv_pool_window_first(p, e) - 1;
        if (next > lo) lo = next;
    }
    return most - held;
}

lmf_status lmf_session_eval(lmf_session *s, const int32_t *tokens, int n, int all_logits, const float **logits) {
    if (logits) *logits = NULL;
    LMF_TRY(admit(s, 0, tokens, n));
    lmf_kv_pool *p = s->pool;
    LMF_TRY(check_free(p, (s->pos + n + p->bs - 1) / p->bs - s->n_blocks, p->window ? window_growth(s, n) : 0));
    size_t V = (size_t)p->w->cfg.vocab_size;
    if (all_logits && n > s->logits_rows) {
        free(s->logits);
        s->logits = lmf_xmalloc((size_t)n * V * sizeof(float));
        s->logits_rows = n;
    }
    int rows[NB];
    for (int i0 = 0; i0 < n; i0 += p->step) {
        int nb = n - i0 < p->step ? n - i0 : p->step, last = i0 + nb == n, nr = 0;
        /* rows that need logits: all of them, or only the very last token */
        if (all_logits)
            for (int i = 0; i < nb; i++) rows[nr++] = i;
        else if (last)
            rows[nr++] = nb - 1;
        reserve(s, s->pos + nb); /* cannot fail: checked above */
        lmf_block_seq sq = {view(s), s->pos, nb};
        step(p, &sq, 1, tokens + i0, nb, rows, nr, s->logits + (all_logits ? (size_t)i0 * V : 0),
             nb > LMF_BLOCK_QMV_AUTO);
        s->pos += nb;
        trim_window(s);
    }
    if (logits) *logits = s->logits;
    return LMF_OK;
}
