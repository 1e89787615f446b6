/* moe.c — the mixture-of-experts FFN: routing, grouped expert products, router losses and the backward (moe.h). */
#include "model/moe.h"

#include "core/status.h"
#include "model/lora.h"
#include "io/gguf.h"
#include "kernels/kernels.h"
#include "kernels/vec.h"

#include <math.h>
#include <string.h>

#define ALIGN16(n) (((size_t)(n) + 15) & ~(size_t)15)

/* One layer's kept rows carved out of a float slab (the int arrays are int32 in float-sized slots). */
typedef struct {
    float *logits, *probs; /* (N,E) */
    int32_t *idx;          /* (N,k) chosen experts, most probable first */
    float *wt;             /* (N,k) their weights */
    int32_t *pos;          /* (N,k) the slot's row in h / a / y, -1 when dropped */
    int32_t *order;        /* (N*k) kept slots (i*k + j) grouped by expert, rows in token order */
    int32_t *off;          /* (E+1) expert e owns rows [off[e], off[e+1]) of order, h, a, y */
    float *h, *a, *y;      /* (Nk, 2F) gate|up, (Nk, F) silu(gate)*up, (Nk, C) the expert's output, unweighted */
    float *sh_h, *sh_a;    /* (N, 2Fs), (N, Fs) shared expert */
    float *sh_s, *sh_y;    /* cfg.shared_gate: (N) sigmoid(x . gate) and (N, C) the shared expert's output before it */
    lmf_moe_stats_view st;
} rows_t;

typedef struct {
    float *xg;                 /* (Nk, C) gathered input rows */
    float *dy, *dh, *da, *dxg; /* (Nk, C) (Nk, 2F) (Nk, F) (Nk, C) */
    float *dp;                 /* (N, E) d(p), then d(logits) */
    float *dw;                 /* (N, k) */
    float *dsh_h, *dsh_a;      /* (N, 2Fs), (N, Fs) */
    float *dgate;              /* (N) d(the shared gate's logit) */
} scratch_t;

/* The next n floats of base at *off (NULL when base is: carving NULL only counts). */
static float *take(float *base, size_t *off, size_t n) {
    float *r = base ? base + *off : NULL;
    *off += ALIGN16(n);
    return r;
}

static rows_t carve_rows(const lmf_model_config *c, int N, float *mem, size_t *floats) {
    size_t E = (size_t)c->n_expert, k = (size_t)c->n_expert_used, F = (size_t)c->ffn_dim, C = (size_t)c->n_embd;
    size_t Fs = (size_t)c->shared_ffn_dim, Nk = (size_t)N * k;
    size_t p = 0;
    rows_t r;
    r.logits = take(mem, &p, N * E), r.probs = take(mem, &p, N * E);
    r.idx = (int32_t *)take(mem, &p, Nk), r.wt = take(mem, &p, Nk), r.pos = (int32_t *)take(mem, &p, Nk);
    r.order = (int32_t *)take(mem, &p, Nk), r.off = (int32_t *)take(mem, &p, E + 1);
    r.h = take(mem, &p, Nk * 2 * F), r.a = take(mem, &p, Nk * F), r.y = take(mem, &p, Nk * C);
    r.sh_h = take(mem, &p, N * 2 * Fs), r.sh_a = take(mem, &p, N * Fs);
    size_t G = c->shared_gate ? 1 : 0;
    r.sh_s = take(mem, &p, N * G), r.sh_y = take(mem, &p, N * C * G);
    r.st.chosen = take(mem, &p, E), r.st.kept = take(mem, &p, E), r.st.prob_sum = take(mem, &p, E);
    r.st.z_sum = take(mem, &p, 1);
    if (floats) *floats = p;
    return r;
}

size_t lmf_moe_layer_floats(const lmf_model_config *c, int N) {
    if (!c->n_expert) return 0;
    size_t n;
    carve_rows(c, N, NULL, &n);
    return n;
}

static scratch_t carve_scratch(const lmf_model_config *c, int N, int training, float *mem, size_t *floats) {
    size_t E = (size_t)c->n_expert, k = (size_t)c->n_expert_used, F = (size_t)c->ffn_dim, C = (size_t)c->n_embd;
    size_t Fs = (size_t)c->shared_ffn_dim, Nk = (size_t)N * k;
    size_t p = 0;
    scratch_t s;
    memset(&s, 0, sizeof s);
    s.xg = take(mem, &p, Nk * C);
    if (!training) {
        if (floats) *floats = p;
        return s;
    }
    s.dy = take(mem, &p, Nk * C), s.dh = take(mem, &p, Nk * 2 * F), s.da = take(mem, &p, Nk * F);
    s.dxg = take(mem, &p, Nk * C);
    s.dp = take(mem, &p, N * E), s.dw = take(mem, &p, Nk), s.dsh_h = take(mem, &p, N * 2 * Fs);
    s.dsh_a = take(mem, &p, N * Fs), s.dgate = take(mem, &p, c->shared_gate ? N : 0);
    if (floats) *floats = p;
    return s;
}

size_t lmf_moe_scratch_floats(const lmf_model_config *c, int N, int training) {
    if (!c->n_expert) return 0;
    size_t n;
    carve_scratch(c, N, training, NULL, &n);
    return n;
}

lmf_moe_stats_view lmf_moe_stats_of(const lmf_model_config *c, int N, float *kept) {
    return carve_rows(c, N, kept, NULL).st;
}

/* ---- routing -------------------------------------------------------------------------------------------------- */

/* Row i: softmax of its logits in fp32 into p, the top-k and their weights; returns logsumexp(logits). Ties go to
 * the lower expert index (strictly larger wins), a choice of ours: torch.topk promises no order among equals (on
 * CPU, topk([.25, .25, .25, .25], 2) returns indices [2, 3]), so the twin's fixtures keep clear of ties. */
static float route_row(const float *logit, float *p, int E, int k, int renorm, int32_t *idx, float *wt) {
    float mx = logit[0];
    for (int e = 1; e < E; e++) mx = logit[e] > mx ? logit[e] : mx;
    double sum = 0.0;
    for (int e = 0; e < E; e++) sum += (p[e] = expf(logit[e] - mx));
    float inv = (float)(1.0 / sum);
    for (int e = 0; e < E; e++) p[e] *= inv;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int q = 0; q < j; q++) taken |= idx[q] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        idx[j] = best, wt[j] = p[best];
    }
    if (renorm) {
        float s = 0.0f;
        for (int j = 0; j < k; j++) s += wt[j];
        for (int j = 0; j < k; j++) wt[j] /= s;
    }
    return mx + (float)log(sum);
}

/* Routes the N rows from their logits: probabilities, choices, capacity, the grouping by expert, statistics. */
static void route(const lmf_model_config *c, int N, rows_t *r) {
    int E = c->n_expert, k = c->n_expert_used, Nk = N * k;
    double z = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : z) if (N > 64)
    for (int i = 0; i < N; i++) {
        float lse = route_row(r->logits + (size_t)i * E, r->probs + (size_t)i * E, E, k, c->norm_topk_prob,
                              r->idx + (size_t)i * k, r->wt + (size_t)i * k);
        z += (double)lse * lse;
    }
    r->st.z_sum[0] = (float)z;
    for (int e = 0; e < E; e++) {
        double s = 0.0;
        for (int i = 0; i < N; i++) s += r->probs[(size_t)i * E + e];
        r->st.prob_sum[e] = (float)s;
        r->st.chosen[e] = r->st.kept[e] = 0.0f;
    }
    /* capacity: first choices before second choices, tokens in order within a rank */
    long cap = Nk;
    if (c->capacity_factor > 0.0f) cap = (long)ceil((double)c->capacity_factor * Nk / E);
    int count[LMF_MAX_EXPERT] = {0};
    for (int j = 0; j < k; j++)
        for (int i = 0; i < N; i++) {
            int s = i * k + j, e = r->idx[s];
            r->st.chosen[e] += 1.0f;
            r->pos[s] = count[e] < cap ? count[e]++ : -1; /* the slot's rank inside its expert for now */
        }
    r->off[0] = 0;
    for (int e = 0; e < E; e++) r->off[e + 1] = r->off[e] + count[e], r->st.kept[e] = (float)count[e];
    /* rows of an expert in token order (a kept slot's rank is not its token order when ranks mixed) */
    int fill[LMF_MAX_EXPERT];
    for (int e = 0; e < E; e++) fill[e] = r->off[e];
    for (int s = 0; s < Nk; s++) {
        if (r->pos[s] < 0) continue;
        int e = r->idx[s];
        r->order[fill[e]] = s;
        r->pos[s] = fill[e]++;
    }
}

/* ---- forward -------------------------------------------------------------------------------------------------- */

static void gather(float *dst, const float *src, const int32_t *order, int n, int k, int C) {
#pragma omp parallel for schedule(static) if (n > 64)
    for (int r = 0; r < n; r++) memcpy(dst + (size_t)r * C, src + (size_t)(order[r] / k) * C, sizeof(float) * C);
}

/* Tensor parallelism (lmf_block_ctx.tp): rank r of t computes hidden columns [r F / t, (r + 1) F / t) of every
 * expert and of the shared one (gate and up rows, down columns, as the dense FFN's), so each rank's expert outputs
 * are partial sums; the router and the routing are every rank's own (the same bits: same inputs, same weights). */
typedef struct {
    int F, f0, Fs, s0; /* this rank's columns of an expert and of the shared expert, and where they start */
} moe_share;

/* A layer's adapters: on the router and the routed experts (PEFT's target_parameters: module indices, -1 absent),
 * and on a shared expert's nn.Linear modules (lora.h: LINEAR modules on matrices 4, 5, 6, and SHARED_GATE, which
 * drop out their inputs when training and save their values in the layer's t, as the block's dense modules do). */
typedef struct {
    lmf_lora *l;
    int layer, router, gu, down, sh_gate;
    float *x;     /* training: the adapters' scratch (lmf_block_ctx.lora_x); NULL: they allocate theirs */
    float *t;     /* the layer's saved module values (lmf_block_rows.lora_t), or NULL */
    int training; /* dropout on */
} expert_lora;

static expert_lora lora_of(const lmf_lora *l, int layer, float *scratch, float *t, int training) {
    expert_lora el = {(lmf_lora *)l, layer, -1, -1, -1, -1, scratch, t, training};
    if (l)
        el.router = lmf_lora_find(l, LMF_LORA_ROUTER), el.gu = lmf_lora_find(l, LMF_LORA_EXPERTS_GATE_UP),
        el.down = lmf_lora_find(l, LMF_LORA_EXPERTS_DOWN), el.sh_gate = lmf_lora_find(l, LMF_LORA_SHARED_GATE);
    return el;
}

static moe_share share_of(const lmf_block_ctx *ctx) {
    const lmf_model_config *c = ctx->cfg;
    int t = ctx->tp ? ctx->tp->size : 1, r = ctx->tp ? ctx->tp->rank : 0;
    moe_share s = {c->ffn_dim / t, 0, c->shared_ffn_dim / t, 0};
    s.f0 = r * s.F, s.s0 = r * s.Fs;
    return s;
}

/* One expert's (e >= 0) or the shared expert's (e < 0) forward over n rows of in (C wide): h (n, 2F) = gate | up
 * over this rank's F columns, a = silu(gate) up, y (n, C) = a down (a partial sum under tensor parallelism). Expert
 * e gets its parameter adapters' s B_e A_e, the shared expert its modules' (gate_proj | up_proj on h, down_proj on
 * y: the block's dense-FFN adapters, over all n = N rows). */
static void expert_forward(const lmf_block_ctx *ctx, int layer, const lmf_wtensor *gate, const lmf_wtensor *up,
                           const lmf_wtensor *down, const float *in, int n, int C, int F, int f0, float *h, float *a,
                           float *y, const expert_lora *el, int e) {
    lmf_wtensor wg = lmf_wtensor_rows(gate, f0, F), wu = lmf_wtensor_rows(up, f0, F);
    lmf_wtensor wd = lmf_wtensor_cols(down, lmf_block_share_col(down, F, f0), F);
    lmf_lin gu[2] = {{&wg, NULL, h, 2 * F}, {&wu, NULL, h + F, 2 * F}};
    lmf_block_observe(ctx, layer, e >= 0 ? LMF_OBS_EXPERT_IN : LMF_OBS_SHARED_IN, e, in, C, n, C);
    lmf_block_linear(gu, 2, in, C, n, ctx->dq, ctx->dq_floats, lmf_block_lin_mode(ctx));
    if (el && e >= 0 && el->gu >= 0) lmf_lora_param_forward(el->l, el->layer, el->gu, e, in, C, h, 2 * F, n, el->x);
    if (el && e < 0 && el->l) lmf_lora_forward(el->l, el->layer, 4, 6, in, C, h, 2 * F, n, el->training, el->t, el->x);
    lmf_swiglu_forward(a, h, n, F);
    lmf_lin dn = {&wd, NULL, y, C};
    lmf_block_observe(ctx, layer, e >= 0 ? LMF_OBS_EXPERT_DOWN : LMF_OBS_SHARED_DOWN, e, a, F, n, F);
    lmf_block_linear(&dn, 1, a, F, n, ctx->dq, ctx->dq_floats, lmf_block_lin_mode(ctx));
    if (el && e >= 0 && el->down >= 0) lmf_lora_param_forward(el->l, el->layer, el->down, e, a, F, y, C, n, el->x);
    if (el && e < 0 && el->l) lmf_lora_forward(el->l, el->layer, 6, 7, a, F, y, C, n, el->training, el->t, el->x);
}

/* Qwen2-MoE's shared expert gate: s[i] = sigmoid(x_i . w + its adapter's s B A drop(x_i)) over N rows (every
 * tensor-parallel rank the same, as the router: the whole C of x on each). decode: the adapter's decode rows. */
static void shared_gate(const float *w, const float *x, int N, int C, float *s, const expert_lora *el, int decode) {
    for (int i = 0; i < N; i++) {
        double g = 0.0;
        for (int d = 0; d < C; d++) g += (double)x[(size_t)i * C + d] * w[d];
        s[i] = (float)g;
    }
    if (el->sh_gate >= 0 && decode) lmf_lora_mod_decode_rows(el->l, el->layer, el->sh_gate, x, C, N, s, 1, 0, 1);
    else if (el->sh_gate >= 0)
        lmf_lora_mod_forward(el->l, el->layer, el->sh_gate, x, C, s, 1, N, el->training, el->t, el->x);
    for (int i = 0; i < N; i++) s[i] = (float)(1.0 / (1.0 + exp(-(double)s[i])));
}

void lmf_moe_forward(const lmf_block_ctx *ctx, const lmf_layer_weights *L, int layer, const float *x, float *out,
                     float *kept, float *scratch, float *lora_t, int N) {
    const lmf_model_config *c = ctx->cfg;
    moe_share sh = share_of(ctx);
    int E = c->n_expert, k = c->n_expert_used, F = sh.F, C = c->n_embd, Fs = sh.Fs;
    rows_t r = carve_rows(c, N, kept, NULL);
    scratch_t s = carve_scratch(c, N, 0, scratch, NULL);
    expert_lora el = lora_of(ctx->lora, layer, ctx->lora_x, lora_t, ctx->training);
    LMF_CHECK(!ctx->tp || !ctx->lora); /* LoRA runs on one rank's whole model */

    lmf_lin router = {&L->router, NULL, r.logits, E};
    lmf_block_observe(ctx, layer, LMF_OBS_ROUTER, -1, x, C, N, C);
    lmf_block_linear(&router, 1, x, C, N, ctx->dq, ctx->dq_floats, 0); /* the router stays fp32 */
    if (el.router >= 0) lmf_lora_param_forward(el.l, layer, el.router, 0, x, C, r.logits, E, N, el.x);
    lmf_model_config ci = *c;
    if (!ctx->training) ci.capacity_factor = 0.0f; /* inference never drops */
    route(&ci, N, &r);

    for (int e = 0; e < E; e++) {
        int o = r.off[e], n = r.off[e + 1] - o;
        if (!n) continue; /* an expert nobody chose is never read */
        gather(s.xg, x, r.order + o, n, k, C);
        expert_forward(ctx, layer, &L->experts[3 * e], &L->experts[3 * e + 1], &L->experts[3 * e + 2], s.xg, n, C, F,
                       sh.f0, r.h + (size_t)o * 2 * F, r.a + (size_t)o * F, r.y + (size_t)o * C, &el, e);
    }
    if (Fs && c->shared_gate) { /* out = sigmoid(x . gate) shared(x): the gate reads x before out is written */
        shared_gate(L->sh_gate_inp, x, N, C, r.sh_s, &el, 0);
        expert_forward(ctx, layer, &L->sh_gate, &L->sh_up, &L->sh_down, x, N, C, Fs, sh.s0, r.sh_h, r.sh_a, r.sh_y, &el,
                       -1);
#pragma omp parallel for schedule(static) if (N > 64)
        for (int i = 0; i < N; i++)
            for (int d = 0; d < C; d++) out[(size_t)i * C + d] = r.sh_s[i] * r.sh_y[(size_t)i * C + d];
    } else if (Fs) {
        expert_forward(ctx, layer, &L->sh_gate, &L->sh_up, &L->sh_down, x, N, C, Fs, sh.s0, r.sh_h, r.sh_a, out, &el, -1);
    } else {
        memset(out, 0, sizeof(float) * (size_t)N * C);
    }
    /* each token adds its own experts' rows: no two threads write one row */
#pragma omp parallel for schedule(static) if (N > 64)
    for (int i = 0; i < N; i++) {
        float *oi = out + (size_t)i * C;
        for (int j = 0; j < k; j++) {
            int p = r.pos[i * k + j];
            if (p < 0) continue;
            const float *y = r.y + (size_t)p * C;
            float w = r.wt[i * k + j];
            for (int d = 0; d < C; d++) oi[d] += w * y[d];
        }
    }
    lmf_block_ctx_tp_sum(ctx, out, (size_t)N * C); /* the ranks' partial expert outputs (Megatron's g) */
}

/* ---- decode --------------------------------------------------------------------------------------------------- */

void lmf_moe_decode(const lmf_block_decode_ctx *d, const lmf_layer_weights *L, int layer, const float *xn, int N,
                    char *qbuf, int tid, int nth) {
    const lmf_model_config *c = d->cfg;
    int E = c->n_expert, k = c->n_expert_used, F = c->ffn_dim, C = c->n_embd, Fs = c->shared_ffn_dim, lo, hi;
    const lmf_vec_ops *V = lmf_vec();
    rows_t r = carve_rows(c, N, d->moe, NULL);
    size_t region = (size_t)LMF_BLOCK_QMV_MAX * d->qin_stride; /* qbuf holds three regions of QMV_MAX rows */
    char *q1 = qbuf + region, *q2 = qbuf + 2 * region;
    expert_lora el = lora_of(d->lora, layer, NULL, NULL, 0);
    if (tid == 0) {
        lmf_model_config ci = *c;
        ci.capacity_factor = 0.0f; /* inference never drops */
        lmf_lin router = {&L->router, NULL, r.logits, E};
        lmf_block_linear_qrows(&router, NULL, N, xn, C, q1, 0, E);
        if (el.router >= 0) lmf_lora_param_decode_rows(el.l, layer, el.router, 0, xn, C, NULL, N, r.logits, E, 0, E);
        route(&ci, N, &r);
        if (Fs && c->shared_gate) shared_gate(L->sh_gate_inp, xn, N, C, r.sh_s, &el, 1);
    }
    lmf_barrier_wait(d->bar, nth);

    /* gate and up: this thread's F rows of every chosen expert, over the rows that chose it */
    lmf_block_row_share(F, 16, tid, nth, &lo, &hi);
    int32_t tok[LMF_BLOCK_QMV_MAX];
    for (int e = 0; e < E && hi > lo; e++) {
        int o = r.off[e], n = r.off[e + 1] - o;
        if (!n) continue;
        for (int q = 0; q < n; q++) tok[q] = r.order[o + q] / k;
        float *h = r.h + (size_t)o * 2 * F;
        lmf_lin g = {&L->experts[3 * e], NULL, h, 2 * F}, u = {&L->experts[3 * e + 1], NULL, h + F, 2 * F};
        lmf_block_linear_qrows(&g, tok, n, xn, C, q1, lo, hi);
        lmf_block_linear_qrows(&u, tok, n, xn, C, q2, lo, hi);
        if (el.gu >= 0) { /* this thread's gate rows, then the same rows of up (B_e's rows F..) */
            lmf_lora_param_decode_rows(el.l, layer, el.gu, e, xn, C, tok, n, h, 2 * F, lo, hi);
            lmf_lora_param_decode_rows(el.l, layer, el.gu, e, xn, C, tok, n, h, 2 * F, F + lo, F + hi);
        }
        for (int q = 0; q < n; q++)
            V->swiglu(r.a + (size_t)(o + q) * F + lo, h + (size_t)q * 2 * F + lo, h + (size_t)q * 2 * F + F + lo,
                      hi - lo);
    }
    if (Fs) {
        lmf_block_row_share(Fs, 16, tid, nth, &lo, &hi);
        lmf_lin g = {&L->sh_gate, NULL, r.sh_h, 2 * Fs}, u = {&L->sh_up, NULL, r.sh_h + Fs, 2 * Fs};
        if (hi > lo) {
            lmf_block_linear_qrows(&g, NULL, N, xn, C, q1, lo, hi);
            lmf_block_linear_qrows(&u, NULL, N, xn, C, q2, lo, hi);
            if (el.l) { /* the shared expert's gate_proj and up_proj modules: this thread's rows of each */
                lmf_lora_decode_rows(el.l, layer, 4, xn, C, N, r.sh_h, 2 * Fs, lo, hi);
                lmf_lora_decode_rows(el.l, layer, 5, xn, C, N, r.sh_h + Fs, 2 * Fs, lo, hi);
            }
            for (int i = 0; i < N; i++)
                V->swiglu(r.sh_a + (size_t)i * Fs + lo, r.sh_h + (size_t)i * 2 * Fs + lo,
                          r.sh_h + (size_t)i * 2 * Fs + Fs + lo, hi - lo);
        }
    }
    lmf_barrier_wait(d->bar, nth);

    /* downs: this thread's C rows, then the weighted sum into the residual stream for those columns */
    lmf_block_row_share(C, 16, tid, nth, &lo, &hi);
    if (hi <= lo) return;
    for (int e = 0; e < E; e++) {
        int o = r.off[e], n = r.off[e + 1] - o;
        if (!n) continue;
        lmf_lin dn = {&L->experts[3 * e + 2], NULL, r.y + (size_t)o * C, C};
        lmf_block_linear_qrows(&dn, NULL, n, r.a + (size_t)o * F, F, q1, lo, hi);
        if (el.down >= 0)
            lmf_lora_param_decode_rows(el.l, layer, el.down, e, r.a + (size_t)o * F, F, NULL, n, r.y + (size_t)o * C,
                                       C, lo, hi);
    }
    if (Fs) {
        lmf_lin dn = {&L->sh_down, NULL, d->proj, C};
        lmf_block_linear_qrows(&dn, NULL, N, r.sh_a, Fs, q1, lo, hi);
        if (el.l) lmf_lora_decode_rows(el.l, layer, 6, r.sh_a, Fs, N, d->proj, C, lo, hi);
    }
    for (int i = 0; i < N; i++) {
        float *x = d->x + (size_t)i * C;
        for (int col = lo; col < hi; col++) {
            float v = Fs ? d->proj[(size_t)i * C + col] * (c->shared_gate ? r.sh_s[i] : 1.0f) : 0.0f;
            for (int j = 0; j < k; j++) v += r.wt[i * k + j] * r.y[(size_t)r.pos[i * k + j] * C + col];
            x[col] += v;
        }
    }
}

/* ---- losses --------------------------------------------------------------------------------------------------- */

void lmf_moe_sums_add(const lmf_model_config *c, int N, const float *kept, size_t layer_stride, int l0, int l1,
                      lmf_moe_sums *s) {
    for (int l = l0; l < l1; l++) {
        lmf_moe_stats_view st = lmf_moe_stats_of(c, N, (float *)kept + (size_t)l * layer_stride);
        for (int e = 0; e < c->n_expert; e++) {
            s->chosen[e] += st.chosen[e], s->prob[e] += st.prob_sum[e];
            s->dropped += st.chosen[e] - st.kept[e];
        }
        s->z += st.z_sum[0];
    }
}

void lmf_moe_losses_of(const lmf_model_config *c, int N, const lmf_moe_sums *s, double *aux, double *z, double *load,
                       double *dropped, float loss_scale, lmf_moe_grad *g) {
    int E = c->n_expert, k = c->n_expert_used;
    double LN = (double)c->n_layer * N, a = 0.0;
    for (int e = 0; e < E; e++) a += (s->chosen[e] / LN) * (s->prob[e] / LN);
    *aux = a * E;
    *z = s->z / LN;
    if (dropped) *dropped = s->dropped;
    if (load)
        for (int e = 0; e < E; e++) load[e] = s->chosen[e] / (LN * k);
    if (!g) return;
    for (int e = 0; e < E; e++) g->dprob[e] = (float)(loss_scale * c->router_aux_coef * E * s->chosen[e] / (LN * LN));
    g->dz = (float)(loss_scale * c->router_z_coef * 2.0 / LN);
}

void lmf_moe_losses(const lmf_model_config *c, int N, const float *kept, size_t layer_stride, double *aux, double *z,
                    double *load, double *dropped, float loss_scale, lmf_moe_grad *g) {
    lmf_moe_sums s;
    memset(&s, 0, sizeof s);
    lmf_moe_sums_add(c, N, kept, layer_stride, 0, c->n_layer, &s);
    lmf_moe_losses_of(c, N, &s, aux, z, load, dropped, loss_scale, g);
}

/* ---- backward ------------------------------------------------------------------------------------------------- */

#define F32(t) ((const float *)(t).data)
#define GRAD(t) ((float *)(t).data)

/* One expert's backward over its n rows (this rank's F columns from f0, or all of a packed share's): dh (n, 2F) and da
 * (n, F) are scratch; din (n, C) += the input gradient (partial under tensor parallelism); the weights' gradients
 * go to G's views. The training model keeps gate|up as one fused matrix: one product without tensor parallelism. */
static void expert_backward(const lmf_block_ctx *ctx, const lmf_wtensor *W, const lmf_wtensor *GW, const float *in,
                            const float *h, const float *a, const float *dy, float *din, float *dh, float *da, int n,
                            int C, int F, int f0, const expert_lora *el, int e) {
    if (!GW) { /* a frozen base of any type: input gradients only (the whole expert: no tensor parallelism here) */
        lmf_lin dn = {&W[2], NULL, (float *)dy, C};
        lmf_block_linear_dinput(&dn, 1, da, 0.0f, F, n, ctx->dq, ctx->dq_floats, ctx->bf16);
    } else {
        int c0 = lmf_block_share_col(&W[2], F, f0), ld = (int)(W[2].row_bytes / sizeof(float));
        lmf_matmul_backward_ld(ctx->bf16, da, 0.0f, GRAD(GW[2]) + c0, 1.0f, NULL, dy, C, a, F, F32(W[2]) + c0, ld, n,
                               F, C);
    }
    if (el && e >= 0 && el->down >= 0)
        lmf_lora_param_backward(el->l, el->layer, el->down, e, a, F, dy, C, da, n, el->x);
    if (el && e < 0 && el->l) lmf_lora_backward(el->l, el->layer, 6, 7, a, F, dy, C, el->t, da, n, el->x);
    lmf_swiglu_backward(dh, da, h, n, F);
    if (el && e >= 0 && el->gu >= 0)
        lmf_lora_param_backward(el->l, el->layer, el->gu, e, in, C, dh, 2 * F, din, n, el->x);
    if (el && e < 0 && el->l) lmf_lora_backward(el->l, el->layer, 4, 6, in, C, dh, 2 * F, el->t, din, n, el->x);
    if (!GW) {
        lmf_lin gu[2] = {{&W[0], NULL, dh, 2 * F}, {&W[1], NULL, dh + F, 2 * F}};
        lmf_block_linear_dinput(gu, 2, din, 1.0f, C, n, ctx->dq, ctx->dq_floats, ctx->bf16);
        return;
    }
    if (!ctx->tp) {
        lmf_block_linear_backward(ctx, din, 1.0f, GRAD(GW[0]), 1.0f, NULL, dh, in, F32(W[0]), n, C, 2 * F);
        return;
    }
    for (int j = 0; j < 2; j++) /* gate rows, then up rows */
        lmf_matmul_backward_ld(ctx->bf16, din, 1.0f, GRAD(GW[j]) + (size_t)f0 * C, 1.0f, NULL, dh + j * F, 2 * F, in, C,
                               F32(W[j]) + (size_t)f0 * C, C, n, C, F);
}

void lmf_moe_backward(const lmf_block_ctx *ctx, const lmf_layer_weights *L, const lmf_layer_weights *G, int layer,
                      const lmf_moe_grad *mg, const float *x, const float *dout, float *dx, const float *kept,
                      float *scratch, float *lora_t, int N) {
    const lmf_model_config *c = ctx->cfg;
    moe_share sh = share_of(ctx);
    int E = c->n_expert, k = c->n_expert_used, F = sh.F, C = c->n_embd, Fs = sh.Fs;
    rows_t r = carve_rows(c, N, (float *)kept, NULL);
    scratch_t s = carve_scratch(c, N, 1, scratch, NULL);
    expert_lora el = lora_of(ctx->lora, layer, ctx->lora_x, lora_t, 1);
    /* the training model's own weights: gate|up of an expert (and of the shared one) are one fused matrix */
    LMF_CHECK(!G || (L->router.type == LMF_GGML_F32 &&
                     F32(L->experts[1]) == F32(L->experts[0]) + (size_t)c->ffn_dim * C));
    LMF_CHECK(G || (!mg && !ctx->tp));

    if (Fs) {
        const lmf_wtensor W[3] = {L->sh_gate, L->sh_up, L->sh_down};
        const lmf_wtensor GW[3] = {G ? G->sh_gate : W[0], G ? G->sh_up : W[1], G ? G->sh_down : W[2]};
        const float *dsh = dout;
        if (c->shared_gate) { /* out = s y: d(logit) = s (1 - s) <dout, y>, and the expert sees s dout */
#pragma omp parallel for schedule(static) if (N > 64)
            for (int i = 0; i < N; i++) {
                double dot = 0.0;
                float si = r.sh_s[i], *dy = s.dy + (size_t)i * C; /* s.dy (Nk x C) is free until the experts */
                for (int q = 0; q < C; q++) {
                    dot += (double)dout[(size_t)i * C + q] * r.sh_y[(size_t)i * C + q];
                    dy[q] = si * dout[(size_t)i * C + q];
                }
                s.dgate[i] = (float)(si * (1.0 - si) * dot);
            }
            lmf_block_ctx_tp_sum(ctx, s.dgate, (size_t)N); /* each rank's y is its columns' share */
            dsh = s.dy;
        }
        expert_backward(ctx, W, G ? GW : NULL, x, r.sh_h, r.sh_a, dsh, dx, s.dsh_h, s.dsh_a, N, C, Fs, sh.s0, &el, -1);
    }
    /* d(w) of every kept slot: dout_i . y (a dropped slot's weight never reached the output) */
#pragma omp parallel for schedule(static) if (N > 64)
    for (int i = 0; i < N; i++)
        for (int j = 0; j < k; j++) {
            int p = r.pos[i * k + j];
            double d = 0.0;
            if (p >= 0)
                for (int q = 0; q < C; q++) d += (double)dout[(size_t)i * C + q] * r.y[(size_t)p * C + q];
            s.dw[i * k + j] = (float)d;
        }
    lmf_block_ctx_tp_sum(ctx, s.dw, (size_t)N * k); /* each rank's y is its columns' share: so is each dot */
    for (int e = 0; e < E; e++) {
        int o = r.off[e], n = r.off[e + 1] - o;
        if (!n) continue;
        const int32_t *ord = r.order + o;
#pragma omp parallel for schedule(static) if (n > 64)
        for (int q = 0; q < n; q++) { /* d(y) rows: w * dout of the slot's token */
            const float *d = dout + (size_t)(ord[q] / k) * C;
            float w = r.wt[ord[q]], *dy = s.dy + (size_t)q * C;
            for (int t = 0; t < C; t++) dy[t] = w * d[t];
        }
        gather(s.xg, x, ord, n, k, C);
        memset(s.dxg, 0, sizeof(float) * (size_t)n * C);
        expert_backward(ctx, L->experts + 3 * e, G ? G->experts + 3 * e : NULL, s.xg, r.h + (size_t)o * 2 * F,
                        r.a + (size_t)o * F, s.dy, s.dxg, s.dh, s.da, n, C, F, sh.f0, &el, e);
        /* a token picks an expert at most once: the rows of one expert are distinct tokens */
#pragma omp parallel for schedule(static) if (n > 64)
        for (int q = 0; q < n; q++) {
            float *d = dx + (size_t)(ord[q] / k) * C;
            const float *g = s.dxg + (size_t)q * C;
            for (int t = 0; t < C; t++) d[t] += g[t];
        }
    }
    lmf_block_ctx_tp_sum(ctx, dx, (size_t)N * C); /* the experts' input gradients (f); the router's is every rank's */
    /* router: d(p) from the weights (through the renormalisation) and the aux loss, then softmax and z-loss */
#pragma omp parallel for schedule(static) if (N > 64)
    for (int i = 0; i < N; i++) {
        const float *p = r.probs + (size_t)i * E, *lg = r.logits + (size_t)i * E, *w = r.wt + (size_t)i * k;
        const float *dw = s.dw + (size_t)i * k;
        const int32_t *idx = r.idx + (size_t)i * k;
        float *dp = s.dp + (size_t)i * E;
        for (int e = 0; e < E; e++) dp[e] = mg ? mg->dprob[e] : 0.0f;
        if (c->norm_topk_prob) { /* w_j = p_j / S: d p_m = (dw_m - sum_j dw_j w_j) / S */
            double S = 0.0, wd = 0.0;
            for (int j = 0; j < k; j++) S += p[idx[j]], wd += (double)dw[j] * w[j];
            for (int j = 0; j < k; j++) dp[idx[j]] += (float)((dw[j] - wd) / S);
        } else {
            for (int j = 0; j < k; j++) dp[idx[j]] += dw[j];
        }
        double dot = 0.0, mx = lg[0], sum = 0.0;
        for (int e = 0; e < E; e++) dot += (double)dp[e] * p[e], mx = lg[e] > mx ? lg[e] : mx;
        for (int e = 0; e < E; e++) sum += exp(lg[e] - mx);
        float lse = (float)(mx + log(sum));
        for (int e = 0; e < E; e++) dp[e] = p[e] * (float)(dp[e] - dot) + (mg ? mg->dz : 0.0f) * lse * p[e];
    }
    if (Fs && c->shared_gate) { /* the gate, replicated as the router: after the ranks' sum of dx */
        const float *w = L->sh_gate_inp;
        float *gw = G ? (float *)G->sh_gate_inp : NULL;
        for (int i = 0; i < N; i++)
            for (int q = 0; q < C; q++) dx[(size_t)i * C + q] += s.dgate[i] * w[q];
        for (int q = 0; gw && q < C; q++) {
            double acc = 0.0;
            for (int i = 0; i < N; i++) acc += (double)s.dgate[i] * x[(size_t)i * C + q];
            gw[q] += (float)acc;
        }
        if (el.sh_gate >= 0) lmf_lora_mod_backward(el.l, layer, el.sh_gate, x, C, s.dgate, 1, el.t, dx, N, el.x);
    }
    if (G) {
        lmf_matmul_backward(dx, GRAD(G->router), NULL, s.dp, x, F32(L->router), N, C, E);
    } else { /* the router's own weights may be of any type in a loaded model */
        lmf_lin router = {&L->router, NULL, s.dp, E};
        lmf_block_linear_dinput(&router, 1, dx, 1.0f, C, N, ctx->dq, ctx->dq_floats, 0);
    }
    if (el.router >= 0) lmf_lora_param_backward(el.l, layer, el.router, 0, x, C, s.dp, E, dx, N, el.x);
}
