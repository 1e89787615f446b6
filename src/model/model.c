/* model.c — the trainable transformer: allocation, initialisation, and the training forward and backward, which run
 * the block library (block.h) layer by layer over F32 views of the flat buffers (see model.h). */
#include "model/model.h"
#include "model/head_loss.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "model/block.h"
#include "model/moe.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/status.h"
#include "kernels/kernels.h"
#include "kernels/vec.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    int B, T, N, C, L, V, NH, NKV, hs, QD, KVD, S, F, FF; /* QD = NH hs: q's and attention's width */
} dims;

static dims dims_of(const lmf_model_config *c, int B, int T) {
    dims d;
    d.B = B, d.T = T, d.N = B * T, d.C = c->n_embd, d.L = c->n_layer, d.V = c->vocab_size;
    d.NH = c->n_head, d.NKV = c->n_kv_head, d.hs = lmf_head_size(c), d.QD = d.NH * d.hs, d.KVD = d.NKV * d.hs;
    d.S = d.QD + 2 * d.KVD;
    d.F = c->ffn_dim, d.FF = lmf_act_gated(c->act) ? 2 * d.F : d.F;
    return d;
}

/* Carves `count` buffers of the given float counts out of one allocation; returns it; adds its size to *bytes. */
static float *carve(float **ptrs[], const size_t *sizes, int count, size_t *bytes, int lazy) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += (sizes[i] + 15) & ~(size_t)15; /* keep each buffer 64-byte aligned */
    float *mem = (lazy ? lmf_alloc_big_lazy : lmf_alloc_big)(total * sizeof(float)), *p = mem;
    *bytes += total * sizeof(float);
    for (int i = 0; i < count; i++) {
        *ptrs[i] = sizes[i] ? p : NULL;
        p += (sizes[i] + 15) & ~(size_t)15;
    }
    return mem;
}

/* The inputs of the products kept for the backward (lmf_acts): per layer in fp32, or with b16 per layer in bf16 (a
 * MoE's ln2 in fp32, for its router) beside one layer's fp32 q|k|v and attention output, rounded once made. */
/* b16 0: every input fp32; 1 (bf16 training): ln1, atty, ln2 (but a MoE's), fcact and q|k|v in bf16; 2 (bf16 LoRA:
 * its adapters read ln1, atty, ln2 and fcact in fp32): q|k|v alone in bf16, for attention */
/* Whether some LoRA adapter on layer matrices [m0, m1) (layer.h's order: q k v o gate up down) reads its input. */
static int lora_reads(const struct lmf_lora *l, int m0, int m1) {
    for (int k = 0; k < l->n_mod; k++)
        if (l->mod[k].kind == LMF_LORA_LINEAR && l->mod[k].m0 >= m0 && l->mod[k].m1 <= m1) return 1;
    return 0;
}

static void carve_inputs(lmf_model *m, int b16, int lazy) {
    lmf_acts *a = &m->acts;
    dims d = dims_of(&m->cfg, m->max_batch, m->max_seq);
    size_t N = d.N, L = (size_t)(m->act_l1 - m->act_l0), t = (size_t)m->act_tp, A = (size_t)d.QD / t * N;
    size_t F = m->cfg.n_expert ? 0 : (size_t)d.F / t * N, NC = N * d.C, moe = m->cfg.n_expert != 0;
    size_t S = (size_t)d.S / t * N;
    lmf_free_big(m->inputs_memory);
    m->work_bytes -= m->inputs_bytes;
    size_t before = m->work_bytes;
    a->ln1_16 = a->atty_16 = a->ln2_16 = a->fcact_16 = a->qkv_16 = NULL;
    /* a frozen base reads none of them back: the adapters' (and a MoE router's, ln2) alone, q k v | o | gate up |
     * down */
    const struct lmf_lora *lo = m->lora;
    a->kept = !lo ? LMF_KEEP_ALL
                  : (lora_reads(lo, 0, 3) ? LMF_KEEP_LN1 : 0) | (lora_reads(lo, 3, 4) ? LMF_KEEP_ATTY : 0) |
                        (moe || lora_reads(lo, 4, 6) ? LMF_KEEP_LN2 : 0) | (lora_reads(lo, 6, 7) ? LMF_KEEP_FCACT : 0);
    size_t L1 = a->kept & LMF_KEEP_LN1 ? L : 1, LA = a->kept & LMF_KEEP_ATTY ? L : 1;
    size_t L2 = a->kept & LMF_KEEP_LN2 ? L : 1, LF = a->kept & LMF_KEEP_FCACT ? L : 1;
    if (!b16) {
        float **p[] = {&a->ln1, &a->atty, &a->ln2, &a->fcact, &a->qkv};
        size_t n[] = {L1 * NC, LA * A, L2 * NC, LF * F, L * S};
        m->inputs_memory = carve(p, n, 5, &m->work_bytes, lazy);
    } else if (b16 == 2) { /* the fp32 q|k|v one layer's scratch, as below */
        float *c16;
        float **p[] = {&a->ln1, &a->atty, &a->ln2, &a->fcact, &a->qkv, &c16};
        size_t n[] = {L1 * NC, LA * A, L2 * NC, LF * F, S, (L * S + 1) / 2};
        m->inputs_memory = carve(p, n, 6, &m->work_bytes, lazy);
        a->qkv_16 = (uint16_t *)c16;
    } else { /* bf16 copies as floats: half as many (rounded up); the q|k|v product and attention write fp32 first */
        float *c16[5];
        float **p[] = {&a->ln1, &a->atty, &a->ln2, &a->fcact, &a->qkv, &c16[0], &c16[1], &c16[2], &c16[3], &c16[4]};
        size_t n[] = {0, A, moe ? L * NC : 0, 0, S, (L * NC + 1) / 2, (L * A + 1) / 2, moe ? 0 : (L * NC + 1) / 2,
                      (L * F + 1) / 2, (L * S + 1) / 2};
        m->inputs_memory = carve(p, n, 10, &m->work_bytes, lazy);
        a->ln1_16 = (uint16_t *)c16[0], a->atty_16 = (uint16_t *)c16[1];
        a->ln2_16 = (uint16_t *)c16[2], a->fcact_16 = (uint16_t *)c16[3], a->qkv_16 = (uint16_t *)c16[4];
    }
    m->inputs_bytes = m->work_bytes - before;
}

void lmf_model_set_bf16(lmf_model *m, int on) {
    m->bf16 = on;
    /* LoRA's adapters and a frozen base read their inputs in fp32, attention's q|k|v may be bf16 (its AMX kernel
     * reads nothing else); a model that never trains keeps nothing */
    int b16 = on && m->grads ? (m->lora ? 2 : 1) : 0, now = m->acts.ln1_16 ? 1 : m->acts.qkv_16 ? 2 : 0;
    if (b16 != now) carve_inputs(m, b16, 0);
}

double lmf_param_count(const lmf_model_config *c) {
    double total = 0;
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        int s[3], r = lmf_param_shape(c, i, s);
        double n = r ? 1 : 0;
        for (int d = 0; d < r; d++) n *= s[d];
        total += n;
    }
    return total;
}

/* The same sums as create() below, in doubles so that no product of hostile sizes can wrap. Keep the two in step.
 * Activations of layers [l0, l1) only (the head's when l1 is the last), parameters and gradients when own; the
 * products' inputs counted in fp32, an upper bound for bf16 training (lmf_model_set_bf16 keeps them in bf16). */
static double model_bytes(const lmf_model_config *cfg, int max_batch, int max_seq, int training, int l0, int l1,
                          int own, int tp) {
    /* dims_of's int products could overflow for the sizes this is meant to refuse: doubles throughout */
    double P = own ? lmf_param_count(cfg) : 0, N = (double)max_batch * max_seq, L = l1 - l0, C = cfg->n_embd;
    double head = l1 == cfg->n_layer;
    double ln = cfg->norm == LMF_NORM_LAYER, hs = lmf_head_size(cfg), QD = cfg->n_head * hs;
    double KVD = cfg->n_kv_head * hs, S = QD + 2.0 * KVD, qkn = cfg->qk_norm != LMF_QK_NORM_NONE;
    double wide = C > QD ? C : QD;
    double F = cfg->ffn_dim, FF = lmf_act_gated(cfg->act) ? 2 * F : F, V = cfg->vocab_size;
    double att = (double)lmf_attention_scratch_floats(max_seq, omp_get_max_threads()); /* shared by the layers */
    if (training) /* the backward's per-part K and V gradients, when a group's heads split over the threads */
        att += (double)lmf_attention_parts_floats_max(max_batch, max_seq, cfg->n_kv_head / tp,
                                                      cfg->n_head / cfg->n_kv_head, lmf_head_size(cfg));
    double ffn = cfg->n_expert ? 0 : FF + F, moe = 0; /* MoE layers keep their own rows instead of fch / fcact */
    if (cfg->n_expert) { /* lmf_moe_layer_floats per layer and lmf_moe_scratch_floats, with their 16-float padding */
        double k = cfg->n_expert_used, E = cfg->n_expert, Fs = cfg->shared_ffn_dim;
        moe = L * N * (2 * E + 4 * k + k * (3 * F + C) + 3 * Fs) + L * (4 * E + 2 + 256) + N * k * C + 256 +
              (training ? N * (k * (2 * C + 3 * F + 1) + E + 3 * Fs) : 0);
    }
    /* a tensor-parallel share (tp > 1) keeps q|k|v, attention, FFN and logits rows of its width (create's) */
    double t = tp, qkg = cfg->qk_norm == LMF_QK_NORM_FULL ? 2 : (cfg->n_head + cfg->n_kv_head) / t;
    double acts = N * C + L * N * C * 4 + L * N * QD / t + L * N * (2 + 2 * ln) + L * N * S / t + att +
                  L * N * ffn / t + head * (N * C + N * (1 + ln) + N * ceil(V / t) + N) + moe +
                  qkn * L * N * ((QD + KVD) / t + qkg) + (cfg->post_norms ? 2 * L * N * (C + 1) : 0);
    double floats = P * (training ? 2 : 1) + acts;
    if (training) floats += N * C + N * wide + N * S / t + N * ffn / t + (2 * C > QD + KVD ? 2 * C : QD + KVD);
    if (cfg->pos != LMF_POS_LEARNED) floats += (double)cfg->max_seq_len * hs * (cfg->rope_theta_swa != 0.0f ? 2 : 1);
    return floats * sizeof(float) + N * 2 * sizeof(int32_t);
}

double lmf_model_bytes(const lmf_model_config *cfg, int max_batch, int max_seq, int training) {
    return model_bytes(cfg, max_batch, max_seq, training, 0, cfg->n_layer, 1, 1);
}

double lmf_model_shared_bytes(const lmf_model_config *cfg, int max_batch, int max_seq, int l0, int l1, int tp) {
    return model_bytes(cfg, max_batch, max_seq, 1, l0, l1, 0, tp);
}

static void copy_packed_views(lmf_model *m, const lmf_model *owner);

/* A model over base weights (borrowed, frozen: the LoRA case) or, base NULL, over parameters of its own. fw: the
 * weights whose LongRoPE factors the RoPE table takes (cfg's rope_scaling LONGROPE; they are the weights', not the
 * config's): the base, the owner's, or the ones a model is made from. */
static lmf_model *create(const lmf_model_config *cfg, const lmf_weights *base, int max_batch, int max_seq,
                         int training, lmf_model *owner, int l0, int l1, int tp, int sparse, const lmf_weights *fw) {
    if (lmf_model_config_validate(cfg) != LMF_OK) return NULL;
    const float *longrope = NULL;
    if (cfg->rope_scaling == LMF_ROPE_SCALING_LONGROPE) {
        if (!fw || !fw->rope_short || !fw->rope_long) {
            lmf_fail(LMF_ERR_ARG, "LongRoPE (Phi-3's 128k-context models) needs the model's short and long factors: "
                     "fine-tune such a model from its GGUF or Hugging Face folder; a model made from a config alone "
                     "(train, a pipeline stage) has none");
            return NULL;
        }
        /* transformers' rule: the long factors for sequences longer than the original context; a training row is
         * max_seq tokens */
        longrope = max_seq > cfg->rope_orig_ctx ? fw->rope_long : fw->rope_short;
    }
    if (max_batch <= 0 || max_seq <= 0 || max_seq > cfg->max_seq_len) {
        lmf_fail(LMF_ERR_ARG, "sequence length %d must be in [1, max_seq_len=%d] and batch %d positive", max_seq,
                 cfg->max_seq_len, max_batch);
        return NULL;
    }
    lmf_model *m = lmf_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    if (!base) lmf_param_sizes(cfg, m->param_sizes); /* a frozen base has none of its own (all sizes 0) */
    size_t off = 0;
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        m->param_offsets[i] = off;
        off += m->param_sizes[i];
    }
    m->num_params = base ? 0 : off;
    m->shared = owner != NULL;
    if (owner) m->bf16 = owner->bf16, m->tp = owner->tp; /* a pipeline's in-flight sets compute as their owner */
    void *(*alloc)(size_t) = sparse ? lmf_alloc_big_sparse : lmf_alloc_big;
    if (!base) m->params = owner ? owner->params : alloc(off * sizeof(float));
    if (training && !base) m->grads = owner ? owner->grads : alloc(off * sizeof(float));
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        m->ptr[i] = m->param_sizes[i] ? m->params + m->param_offsets[i] : NULL;
        m->gptr[i] = m->grads && m->param_sizes[i] ? m->grads + m->param_offsets[i] : NULL;
    }

    m->max_batch = max_batch, m->max_seq = max_seq;
    m->act_l0 = l0, m->act_l1 = l1, m->act_tp = tp;
    dims d = dims_of(cfg, max_batch, max_seq);
    /* L: the layers whose activations are kept; the final norm's, the logits and the losses with the last layer's.
     * A tensor-parallel share (tp > 1) keeps q|k|v, attention, FFN rows and logits of its width only. */
    size_t N = d.N, L = (size_t)(l1 - l0), ln = cfg->norm == LMF_NORM_LAYER, ffn = cfg->n_expert ? 0 : 1;
    size_t head = l1 == d.L, S = (size_t)d.S / tp, FF = (size_t)d.FF / tp;
    size_t F = (size_t)d.F / tp, V = ((size_t)d.V + tp - 1) / tp, qkn = cfg->qk_norm != LMF_QK_NORM_NONE;
    /* the q/k norm's statistics per row: one per head of this rank's share, or q's and k's (full width) */
    size_t qk_groups = cfg->qk_norm == LMF_QK_NORM_FULL ? 2 : (size_t)(d.NH + d.NKV) / tp;
    m->layer_stride_nc = N * d.C;
    lmf_acts *a = &m->acts;
    size_t pn = cfg->post_norms != 0; /* the sandwich norms' inputs and statistics */
    float **ap[] = {&a->encoded,  &a->ln1_mean, &a->ln1_rstd, &a->att,      &a->res2,   &a->ln2_mean,
                    &a->ln2_rstd, &a->fch,      &a->res3,     &a->lnf,      &a->lnf_mean, &a->lnf_rstd,
                    &a->losses,   &a->lse,      &a->qk,       &a->qk_rstd,  &a->post1,
                    &a->post1_rstd, &a->post2,  &a->post2_rstd};
    size_t as[] = {N * d.C, ln ? L * N : 0, L * N, lmf_attention_scratch_floats(d.T, omp_get_max_threads()),
                   L * N * d.C, ln ? L * N : 0, L * N, ffn * L * N * FF, L * N * d.C, head * N * d.C,
                   head && ln ? N : 0, head * N, head * N, head * N,
                   qkn * L * N * (size_t)(d.QD + d.KVD) / tp, qkn * L * N * qk_groups, pn * L * N * d.C, pn * L * N,
                   pn * L * N * d.C, pn * L * N};
    m->acts_memory = carve(ap, as, (int)(sizeof as / sizeof as[0]), &m->work_bytes, 0);
    /* committed as written: a model whose loss runs over slabs (lmf_model_set_fused_loss) never touches them */
    float **lp[] = {&a->logits};
    size_t ls[] = {head * N * V};
    size_t before = m->work_bytes;
    m->logits_memory = carve(lp, ls, 1, &m->work_bytes, 1);
    m->logits_bytes = m->work_bytes - before;
    /* committed as used: lmf_model_set_bf16 may replace them before any use, and committing both layouts in turn
     * (a bf16 LoRA's q|k|v in fp32 for every layer, then in bf16) passed finetune's announced peak by 3% */
    carve_inputs(m, training && owner && owner->bf16, 1);
    if (training) {
        lmf_grad_scratch *g = &m->gs;
        float **gp[] = {&g->dres, &g->dbuf, &g->dqkv, &g->dfch, &g->dfcact, &g->dnorm};
        /* dbuf is d(attention output) too (QD wide); dnorm also the q/k norms' weight gradients (QD + KVD) */
        size_t wide = (size_t)(d.C > d.QD ? d.C : d.QD), dn = (size_t)(2 * d.C > d.QD + d.KVD ? 2 * d.C : d.QD + d.KVD);
        /* dfch is d(attention's output) before its sandwich norm too (C wide) */
        size_t dfch = ffn * FF > (cfg->post_norms ? (size_t)d.C : 0) ? ffn * FF : (size_t)d.C;
        size_t gsz[] = {N * d.C, N * wide, N * S, N * dfch, ffn * N * F, dn};
        m->gs_memory = carve(gp, gsz, 6, &m->work_bytes, 0);
        /* the attention backward's transient per-part K and V gradients (lmf_attention_parts_of) */
        m->work_bytes += sizeof(float) * lmf_attention_parts_floats_max(max_batch, d.T, d.NKV / tp, d.NH / d.NKV, d.hs);
    }
    if (cfg->n_expert) {
        float **mp[] = {&m->moe, &m->moe_scratch};
        m->moe_stride = (lmf_moe_layer_floats(cfg, (int)N) + 15) & ~(size_t)15;
        size_t msz[] = {L * m->moe_stride, lmf_moe_scratch_floats(cfg, (int)N, training)};
        m->moe_mem = carve(mp, msz, 2, &m->work_bytes, 0);
    }
    if (cfg->pos != LMF_POS_LEARNED) {
        m->rope = lmf_xmalloc(sizeof(float) * (size_t)cfg->max_seq_len * d.hs);
        m->work_bytes += sizeof(float) * (size_t)cfg->max_seq_len * d.hs;
        if (longrope)
            lmf_rope_table_scaled(m->rope, cfg->max_seq_len, d.hs, cfg->rope_theta, longrope, cfg->rope_factor);
        else lmf_block_rope_table(cfg, m->rope, cfg->max_seq_len);
        m->rope_swa = cfg->rope_theta_swa != 0.0f ? lmf_xmalloc(sizeof(float) * (size_t)cfg->max_seq_len * d.hs) : NULL;
        if (m->rope_swa) lmf_block_rope_table_swa(cfg, m->rope_swa, cfg->max_seq_len), m->work_bytes += sizeof(float) *
                                                                                       (size_t)cfg->max_seq_len * d.hs;
    }
    if (base) {
        m->w = (lmf_weights *)base; /* borrowed: never written, never freed */
        m->tokens = lmf_xmalloc(sizeof(int32_t) * N);
        m->targets = lmf_xmalloc(sizeof(int32_t) * N);
        m->pos = lmf_xmalloc(sizeof(int32_t) * N);
        return m;
    }
    m->w = lmf_weights_new();
    lmf_params_view(m->w, cfg, m->params);
    snprintf(m->w->source, sizeof m->w->source, "training");
    if (training) {
        m->gw = lmf_weights_new();
        lmf_params_view(m->gw, cfg, m->grads);
    }
    if (owner && owner->packed) copy_packed_views(m, owner);
    m->tokens = lmf_xmalloc(sizeof(int32_t) * N);
    m->targets = lmf_xmalloc(sizeof(int32_t) * N);
    m->pos = lmf_xmalloc(sizeof(int32_t) * N);
    return m;
}

lmf_model *lmf_model_create(const lmf_model_config *cfg, int max_batch, int max_seq, int training) {
    return create(cfg, NULL, max_batch, max_seq, training, NULL, 0, cfg->n_layer, 1, 0, NULL);
}

lmf_model *lmf_model_create_factors(const lmf_model_config *cfg, const lmf_weights *fw, int max_batch, int max_seq,
                                    int training) {
    return create(cfg, NULL, max_batch, max_seq, training, NULL, 0, cfg->n_layer, 1, 0, fw);
}

lmf_model *lmf_model_create_stage(const lmf_model_config *cfg, int max_batch, int max_seq, int l0, int l1, int tp,
                                  int sparse) {
    LMF_CHECK(0 <= l0 && l0 < l1 && l1 <= cfg->n_layer && tp >= 1);
    if (tp > 1) /* the trainer refuses these sizes first, with a message */
        LMF_CHECK(cfg->n_head % tp == 0 && cfg->n_kv_head % tp == 0 && cfg->ffn_dim % tp == 0);
    return create(cfg, NULL, max_batch, max_seq, 1, NULL, l0, l1, tp, sparse, NULL);
}

lmf_model *lmf_model_create_shared(lmf_model *owner, int l0, int l1) {
    LMF_CHECK(owner->grads && !owner->lora && !owner->shared && 0 <= l0 && l0 < l1 && l1 <= owner->cfg.n_layer);
    lmf_model *m = create(&owner->cfg, NULL, owner->max_batch, owner->max_seq, 1, owner, l0, l1,
                          owner->tp ? owner->tp->size : 1, 0, owner->w); /* in-flight sets never run the whole model */
    if (m && owner->hl && l1 == owner->cfg.n_layer) lmf_model_set_fused_loss(m, 1); /* the head as its owner runs it */
    return m;
}

lmf_status lmf_model_create_lora(const lmf_weights *base, lmf_lora *lora, int max_batch, int max_seq,
                                 lmf_model **out) {
    *out = NULL;
    if (max_seq > base->cfg.max_seq_len) max_seq = base->cfg.max_seq_len;
    lmf_model *m = create(&base->cfg, base, max_batch, max_seq, 1, NULL, 0, base->cfg.n_layer, 1, 0, base);
    if (!m) return LMF_ERR_ARG; /* create named the field */
    m->lora = lora;
    carve_inputs(m, 0, 1); /* the inputs the adapters read back, per layer; the others one layer's scratch */
    lmf_lora_enable_grads(lora);
    /* what trains is the adapters: the optimizer, clipping, gradient exchange and checkpoints see their buffers */
    m->params = lora->params, m->grads = lora->grads, m->num_params = lora->n_params;
    dims d = dims_of(&m->cfg, max_batch, max_seq);
    size_t N = (size_t)d.N, widest = (size_t)(d.C > d.F ? d.C : d.F), biggest = 0;
    if ((size_t)d.QD > widest) widest = (size_t)d.QD; /* o's input */
    if ((size_t)base->cfg.shared_ffn_dim > widest) widest = (size_t)base->cfg.shared_ffn_dim; /* shared down's */
    m->lora_t = lmf_alloc_big(sizeof(float) * (d.L * lmf_lora_t_floats(lora, d.N) + 1));
    /* N x (r + widest input): dropout's inputs and the adapters' backward; at least 2 N r of the largest rank: a MoE's
     * expert adapters (A x and its gradient for one expert's rows, at most N) */
    size_t lx = (size_t)lora->r + widest, lx2 = 2 * (size_t)lmf_lora_max_rank(lora);
    if (lx < lx2) lx = lx2;
    m->lora_x = lmf_alloc_big(sizeof(float) * N * lx);
    /* the dequantization slab of a base in any type (the block library's products read it through fp32 slabs) */
    for (int l = -1; l < d.L; l++) {
        const lmf_wtensor *ts[LMF_LAYER_MATRICES + LMF_MOE_MATRICES(LMF_MAX_EXPERT)];
        int n = LMF_LAYER_MATRICES;
        lmf_layer_matrices(&base->layers[l < 0 ? 0 : l], ts);
        if (l >= 0) n += lmf_layer_moe_matrices(&base->layers[l], base->cfg.n_expert, ts + n);
        if (l < 0) ts[0] = &base->lm_head, n = 1;
        for (int t = 0; t < n; t++)
            if ((size_t)ts[t]->rows * ts[t]->cols > biggest) biggest = (size_t)ts[t]->rows * ts[t]->cols;
    }
    m->dq_floats = biggest < (2u << 20) ? biggest : (2u << 20); /* 8 MiB at most */
    if (m->dq_floats < 16 * widest) m->dq_floats = 16 * widest;  /* one R16 group */
    m->dq = lmf_alloc_big(m->dq_floats * sizeof(float));
    m->work_bytes += sizeof(float) * (d.L * lmf_lora_t_floats(lora, d.N) + 1 + N * lx +
                                      m->dq_floats);
    *out = m;
    return LMF_OK;
}

void lmf_model_free(lmf_model *m) {
    if (!m) return;
    if (m->lora) {
        lmf_free_big(m->lora_t), lmf_free_big(m->lora_x), lmf_free_big(m->dq);
        m->w = NULL, m->params = m->grads = NULL; /* borrowed: the base's and the adapters' */
    }
    if (m->shared) m->params = m->grads = NULL; /* the owner's */
    lmf_free_big(m->params);
    lmf_free_big(m->grads);
    lmf_free_big(m->acts_memory);
    lmf_free_big(m->logits_memory);
    lmf_head_loss_free(m->hl);
    lmf_free_big(m->inputs_memory);
    lmf_free_big(m->gs_memory);
    lmf_free_big(m->moe_mem);
    lmf_weights_free(m->w);
    lmf_weights_free(m->gw);
    if (!m->shared) lmf_free_big(m->packed_p), lmf_free_big(m->packed_g);
    LMF_FREE_ALL(m->rope, m->rope_swa, m->tokens, m->targets, m->pos, m->tp_buf, m->held, m->written, m->packed, m);
}

size_t lmf_model_num_params(const lmf_model *m) { return m->num_params; }
const lmf_model_config *lmf_model_get_config(const lmf_model *m) { return &m->cfg; }
float *lmf_model_params(lmf_model *m) { return m->params; }
float *lmf_model_grads(lmf_model *m) { return m->grads; }
const float *lmf_model_logits(const lmf_model *m) { return m->fused ? NULL : m->acts.logits; }

void lmf_model_set_fused_loss(lmf_model *m, int on) {
    LMF_CHECK(m->act_l1 == m->cfg.n_layer || !on); /* the head's stage */
    if (!on == !m->hl) return;
    size_t logits = m->logits_bytes;
    if (on) {
        m->hl = lmf_head_loss_create(&m->cfg, m->max_batch * m->max_seq, m->w->lm_head.type != LMF_GGML_F32);
        m->work_bytes += m->hl->bytes - logits; /* the logits' pages stay untouched */
    } else {
        m->work_bytes += logits - m->hl->bytes;
        lmf_head_loss_free(m->hl);
        m->hl = NULL, m->fused = 0;
    }
}

float lmf_model_eval_loss(lmf_model *m, const int32_t *tokens, const int32_t *targets, int B, int T) {
    m->no_grad = 1;
    float loss = lmf_model_forward(m, tokens, targets, B, T);
    m->no_grad = 0, m->has_targets = 0; /* no backward of it */
    return loss;
}
const lmf_weights *lmf_model_weights(const lmf_model *m) { return m->w; }
const lmf_moe_stats *lmf_model_moe_stats(const lmf_model *m) { return &m->moe_stats; }

void lmf_model_set_positions(lmf_model *m, const int32_t *pos, int B, int T) {
    m->use_pos = pos != NULL;
    if (!pos) return;
    LMF_CHECK(B > 0 && T > 0 && B <= m->max_batch && T <= m->max_seq);
    for (int i = 0; i < B * T; i++) /* rows start an example; inside one, positions count up by one */
        LMF_CHECK(i % T == 0 ? pos[i] == 0 : pos[i] == 0 || pos[i] == pos[i - 1] + 1);
    memcpy(m->pos, pos, sizeof(int32_t) * (size_t)B * T);
}

/* The whole buffer, or the ranges a partitioned model holds (spans: sorted, disjoint). */
static const lmf_range *held_spans(const lmf_model *m, lmf_range *all, int *n) {
    if (m->held) {
        *n = m->n_held;
        return m->held;
    }
    *all = (lmf_range){0, m->num_params}, *n = 1;
    return all;
}

/* Values [k0, k1) of tensor i into dst, each as one process makes it. */
static void init_piece(const lmf_model *m, int i, size_t k0, size_t k1, float *dst, uint64_t seed) {
    float resid_std = 0.02f / sqrtf(2.0f * m->cfg.n_layer);
    if (i == LMF_P_LN1W || i == LMF_P_LN2W || i == LMF_P_LNFW || i == LMF_P_QNORM || i == LMF_P_KNORM ||
        i == LMF_P_POSTATTNW || i == LMF_P_POSTFFNW) {
        for (size_t k = k0; k < k1; k++) dst[k - k0] = 1.0f;
    } else if (i == LMF_P_LN1B || i == LMF_P_LN2B || i == LMF_P_LNFB || i == LMF_P_QKVB || i == LMF_P_ATTPROJB ||
               i == LMF_P_FCB || i == LMF_P_FCPROJB) {
        memset(dst, 0, (k1 - k0) * sizeof(float));
    } else {
        /* one stream per tensor: adding a tensor never shifts the others' values; a piece starts where the stream
         * reaches it (lmf_rng_normal takes 2 draws a value) */
        lmf_rng r;
        lmf_rng_seed(&r, seed, (uint64_t)i + 1);
        lmf_rng_advance(&r, 2 * (uint64_t)k0);
        float std = (i == LMF_P_ATTPROJW || i == LMF_P_FCPROJW) ? resid_std : 0.02f;
        for (size_t k = k0; k < k1; k++) dst[k - k0] = std * lmf_rng_normal(&r);
    }
}

/* The tensor flat index g belongs to. */
static int tensor_of(const lmf_model *m, size_t g) {
    int i = 0;
    while (i + 1 < LMF_NUM_PARAM_TENSORS && g >= m->param_offsets[i] + m->param_sizes[i]) i++;
    return i;
}

void lmf_model_init_weights(lmf_model *m, uint64_t seed) {
    lmf_range all;
    int ns;
    const lmf_range *sp = held_spans(m, &all, &ns);
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        size_t n = m->param_sizes[i], off = m->param_offsets[i];
        if (!n) continue;
        for (int j = 0; j < ns; j++) { /* the held piece [k0, k1) of the tensor */
            if (sp[j].hi <= off || sp[j].lo >= off + n) continue;
            size_t k0 = sp[j].lo > off ? sp[j].lo - off : 0, k1 = sp[j].hi < off + n ? sp[j].hi - off : n;
            init_piece(m, i, k0, k1, m->ptr[i] + k0, seed);
        }
    }
    for (int j = 0; j < m->n_packed; j++) { /* a row's share of a row-parallel matrix: inside one tensor */
        const lmf_seg *g = &m->packed[j];
        int i = tensor_of(m, g->lo);
        init_piece(m, i, g->lo - m->param_offsets[i], g->hi - m->param_offsets[i], m->packed_p + g->at, seed);
    }
}

int lmf_model_stage_spans(const lmf_model_config *cfg, int l0, int l1, lmf_range *out) {
    size_t sizes[LMF_NUM_PARAM_TENSORS], off = 0;
    lmf_param_sizes(cfg, sizes);
    int n = 0, L = cfg->n_layer;
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; off += sizes[i++]) {
        size_t per = sizes[i] / (size_t)L;
        lmf_range s = {0, 0};
        if (!sizes[i]) continue;
        if (lmf_param_per_layer(i)) s = (lmf_range){off + (size_t)l0 * per, off + (size_t)l1 * per};
        else if (i == LMF_P_WTE ? l0 == 0 || (l1 == L && cfg->tied_embeddings)
                 : i == LMF_P_WPE ? l0 == 0 : l1 == L) /* the final norm and the head: the last stage's */
            s = (lmf_range){off, off + sizes[i]};
        if (s.hi <= s.lo) continue;
        if (n && out[n - 1].hi == s.lo) out[n - 1].hi = s.hi; /* tensors lie in table order: sorted already */
        else out[n++] = s;
    }
    return n;
}

typedef struct {
    lmf_range *r;
    int n, cap;
    int sealed; /* the last range is a packed row's: never merged (each is one segment of lmf_model_pack_tp) */
} span_list;

static void span_push_as(span_list *l, size_t lo, size_t hi, int row) {
    if (hi <= lo) return;
    int merge = l->n && l->r[l->n - 1].hi == lo && !l->sealed && !row;
    l->sealed = row;
    if (merge) {
        l->r[l->n - 1].hi = hi;
        return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->r = lmf_xrealloc(l->r, (size_t)l->cap * sizeof *l->r);
    }
    l->r[l->n++] = (lmf_range){lo, hi};
}
static void span_push(span_list *l, size_t lo, size_t hi) { span_push_as(l, lo, hi, 0); }

static int row_parallel(int i) {
    return i == LMF_P_ATTPROJW || i == LMF_P_FCPROJW || i == LMF_P_EXPPROJ || i == LMF_P_SHPROJ;
}

/* The group spans of rank r of t (lmf_model_group_spans); what: 0 without the row-parallel rows, 1 all, 2 only
 * those rows. The rows [a, a + n) of a (rows x cols) matrix at base: one range. */
static void group_spans(const lmf_model_config *cfg, int l0, int l1, int r, int t, int what, span_list *out) {
    size_t sizes[LMF_NUM_PARAM_TENSORS], off = 0;
    lmf_param_sizes(cfg, sizes);
    dims d = dims_of(cfg, 1, 1);
    size_t L = (size_t)d.L, C = (size_t)d.C, QD = (size_t)d.QD, KVD = (size_t)d.KVD;
    size_t F = (size_t)d.F, Fs = (size_t)cfg->shared_ffn_dim, E = (size_t)cfg->n_expert;
    size_t CA = QD / (size_t)t, KVA = KVD / (size_t)t, Ft = F / (size_t)t, Fst = Fs / (size_t)t;
    size_t q0 = (size_t)r * CA, g0 = (size_t)r * KVA, f0 = (size_t)r * Ft, s0 = (size_t)r * Fst;
    size_t v0 = (size_t)((long)d.V * r / t), v1 = (size_t)((long)d.V * (r + 1) / t);
    int swiglu = lmf_act_gated(cfg->act);
#define ROWS(a, n, w) span_push(out, base + (a) * (w), base + ((a) + (n)) * (w))
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; off += sizes[i++]) {
        if (!sizes[i]) continue;
        int rp = row_parallel(i) && t > 1;
        if ((what == 0 && rp) || (what == 2 && !rp)) continue;
        if (!lmf_param_per_layer(i)) {
            int here = i == LMF_P_WTE ? l0 == 0 || (l1 == (int)L && cfg->tied_embeddings)
                       : i == LMF_P_WPE ? l0 == 0 : l1 == (int)L;
            size_t base = off;
            if (!here) continue;
            if (i == LMF_P_LMHEAD && t > 1) ROWS(v0, v1 - v0, C);
            else span_push(out, off, off + sizes[i]);
            continue;
        }
        size_t per = sizes[i] / L;
        for (size_t l = (size_t)l0; l < (size_t)l1; l++) {
            size_t base = off + l * per;
            if (t == 1) {
                span_push(out, base, base + per);
                continue;
            }
            size_t w = i == LMF_P_QKVB || i == LMF_P_FCB ? 1 : C; /* a bias: one float a row */
            switch (i) {
            case LMF_P_QKVW:
            case LMF_P_QKVB: ROWS(q0, CA, w), ROWS(QD + g0, KVA, w), ROWS(QD + KVD + g0, KVA, w); break;
            case LMF_P_FCW:
                ROWS(f0, Ft, C);
                if (swiglu) ROWS(F + f0, Ft, C);
                break;
            case LMF_P_FCB: ROWS(f0, Ft, 1); break;
            case LMF_P_EXPFC:
                for (size_t e = 0; e < E; e++) ROWS(e * 2 * F + f0, Ft, C), ROWS(e * 2 * F + F + f0, Ft, C);
                break;
            case LMF_P_SHFC: ROWS(s0, Fst, C), ROWS(Fs + s0, Fst, C); break;
            case LMF_P_ATTPROJW:
                for (size_t k = 0; k < C; k++) span_push_as(out, base + k * QD + q0, base + k * QD + q0 + CA, 1);
                break;
            case LMF_P_FCPROJW:
                for (size_t k = 0; k < C; k++) span_push_as(out, base + k * F + f0, base + k * F + f0 + Ft, 1);
                break;
            case LMF_P_EXPPROJ:
                for (size_t k = 0; k < E * C; k++) span_push_as(out, base + k * F + f0, base + k * F + f0 + Ft, 1);
                break;
            case LMF_P_SHPROJ:
                for (size_t k = 0; k < C; k++) span_push_as(out, base + k * Fs + s0, base + k * Fs + s0 + Fst, 1);
                break;
            default: span_push(out, base, base + per); /* replicated: norms, row-parallel biases, router */
            }
        }
    }
#undef ROWS
}

int lmf_model_group_spans(const lmf_model_config *cfg, int l0, int l1, int r, int t, int rows, lmf_range **out) {
    LMF_CHECK(0 <= l0 && l0 < l1 && l1 <= cfg->n_layer && 0 <= r && r < t);
    span_list l = {0};
    group_spans(cfg, l0, l1, r, t, rows ? 1 : 0, &l);
    *out = l.r ? l.r : lmf_xmalloc(sizeof(lmf_range));
    return l.n;
}

static const lmf_seg *packed_seg(const lmf_model *m, size_t x) {
    int lo = 0, hi = m->n_packed; /* the first segment ending after x */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (m->packed[mid].hi <= x) lo = mid + 1;
        else hi = mid;
    }
    return lo < m->n_packed && m->packed[lo].lo <= x ? &m->packed[lo] : NULL;
}

float *lmf_model_packed_at(const lmf_model *m, size_t x, int grads) {
    const lmf_seg *g = packed_seg(m, x);
    return g ? (grads ? m->packed_g : m->packed_p) + g->at + (x - g->lo) : NULL;
}

/* w's views (params', or grads' when grads) of the row-parallel matrices of layers [l0, l1): rank r's columns,
 * compact in the packed buffer. */
static void packed_views(lmf_model *m, lmf_weights *w, int grads, int r, int t, int l0, int l1) {
    const lmf_model_config *c = &m->cfg;
    size_t C = (size_t)c->n_embd, F = (size_t)c->ffn_dim, Ft = F / (size_t)t;
    size_t Fst = (size_t)c->shared_ffn_dim / (size_t)t;
    size_t CA = (size_t)lmf_q_width(c) / (size_t)t;
#define BASE(i) (m->param_offsets[i] + (size_t)l * (m->param_sizes[i] / (size_t)c->n_layer))
#define AT(x) lmf_model_packed_at(m, (x), grads)
    for (int l = l0; l < l1; l++) {
        lmf_layer_weights *L = &w->layers[l];
        lmf_wtensor_set(&L->wo, LMF_GGML_F32, (int)C, (int)CA, AT(BASE(LMF_P_ATTPROJW) + (size_t)r * CA));
        if (m->param_sizes[LMF_P_FCPROJW])
            lmf_wtensor_set(&L->w_down, LMF_GGML_F32, (int)C, (int)Ft, AT(BASE(LMF_P_FCPROJW) + (size_t)r * Ft));
        for (int e = 0; e < c->n_expert; e++)
            lmf_wtensor_set(&L->experts[3 * e + 2], LMF_GGML_F32, (int)C, (int)Ft,
                            AT(BASE(LMF_P_EXPPROJ) + (size_t)e * C * F + (size_t)r * Ft));
        if (m->param_sizes[LMF_P_SHPROJ])
            lmf_wtensor_set(&L->sh_down, LMF_GGML_F32, (int)C, (int)Fst, AT(BASE(LMF_P_SHPROJ) + (size_t)r * Fst));
    }
#undef BASE
#undef AT
}

void lmf_model_pack_tp(lmf_model *m, int r, int t, int l0, int l1) {
    LMF_CHECK(m->grads && !m->shared && !m->lora && !m->packed && t > 1 && l0 == m->act_l0 && l1 == m->act_l1);
    span_list l = {0};
    group_spans(&m->cfg, l0, l1, r, t, 2, &l);
    m->packed = lmf_xmalloc(((size_t)l.n + 1) * sizeof *m->packed), m->n_packed = l.n;
    size_t at = 0;
    for (int j = 0; j < l.n; j++) {
        m->packed[j] = (lmf_seg){l.r[j].lo, l.r[j].hi, at};
        at += l.r[j].hi - l.r[j].lo;
    }
    free(l.r);
    m->packed_n = at;
    m->packed_p = lmf_alloc_big((at ? at : 1) * sizeof(float));
    m->packed_g = lmf_alloc_big((at ? at : 1) * sizeof(float));
    packed_views(m, m->w, 0, r, t, l0, l1);
    packed_views(m, m->gw, 1, r, t, l0, l1);
}

/* A pipeline's in-flight set computes with its owner's packed rows. */
static void copy_packed_views(lmf_model *m, const lmf_model *owner) {
    for (int l = 0; l < m->cfg.n_layer; l++) {
        lmf_layer_weights *L[2] = {&m->w->layers[l], &m->gw->layers[l]};
        const lmf_layer_weights *O[2] = {&owner->w->layers[l], &owner->gw->layers[l]};
        for (int k = 0; k < 2; k++) {
            L[k]->wo = O[k]->wo, L[k]->w_down = O[k]->w_down, L[k]->sh_down = O[k]->sh_down;
            for (int e = 0; e < m->cfg.n_expert; e++) L[k]->experts[3 * e + 2] = O[k]->experts[3 * e + 2];
        }
    }
}

static int span_cmp(const void *a, const void *b) {
    const lmf_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* spans sorted and merged where they touch, empty ones dropped, into *out (allocated); returns how many */
static int merged(const lmf_range *spans, int n, size_t limit, lmf_range **out) {
    lmf_range *h = lmf_xmalloc(((size_t)n + 1) * sizeof *h);
    memcpy(h, spans, (size_t)n * sizeof *h);
    qsort(h, (size_t)n, sizeof *h, span_cmp);
    int k = 0;
    for (int i = 0; i < n; i++) {
        LMF_CHECK(h[i].lo <= h[i].hi && h[i].hi <= limit);
        if (h[i].hi == h[i].lo) continue;
        if (k && h[i].lo <= h[k - 1].hi) h[k - 1].hi = h[i].hi > h[k - 1].hi ? h[i].hi : h[k - 1].hi;
        else h[k++] = h[i];
    }
    *out = h;
    return k;
}

void lmf_model_set_written(lmf_model *m, const lmf_range *spans, int n) {
    LMF_CHECK(m->held && !m->written);
    m->n_written = merged(spans, n, m->num_params, &m->written);
}

void lmf_model_partition(lmf_model *m, const lmf_range *spans, int n) {
    LMF_CHECK(m->grads && !m->shared && !m->lora);
    lmf_range *h;
    int k = merged(spans, n, m->num_params, &h);
    free(m->held);
    m->held = h, m->n_held = k;
    for (int i = 0; i < k; i++) {
        size_t at = h[i].lo * sizeof(float), len = (h[i].hi - h[i].lo) * sizeof(float);
        lmf_alloc_commit(m->params, at, len);
        lmf_alloc_commit(m->grads, at, len);
    }
}

size_t lmf_model_held_floats(const lmf_model *m) {
    lmf_range all;
    int ns;
    const lmf_range *sp = held_spans(m, &all, &ns);
    size_t n = 0;
    for (int j = 0; j < ns; j++) n += sp[j].hi - sp[j].lo;
    return n + m->packed_n;
}

/* The spans of grads the backward writes: the written ones where set, else all held. */
static const lmf_range *written_spans(const lmf_model *m, lmf_range *all, int *n) {
    if (m->written) {
        *n = m->n_written;
        return m->written;
    }
    return held_spans(m, all, n);
}

void lmf_model_grad_pieces(const lmf_model *m, size_t at, size_t len, lmf_grad_piece_fn fn, void *ctx) {
    lmf_range all;
    int ns;
    const lmf_range *sp = written_spans(m, &all, &ns);
    size_t e = at + len;
    for (int j = 0; j < ns; j++) {
        size_t a = sp[j].lo > at ? sp[j].lo : at, b = sp[j].hi < e ? sp[j].hi : e;
        if (b > a) fn(ctx, m->grads + a, a, b - a);
    }
    for (int j = 0; j < m->n_packed; j++) {
        const lmf_seg *g = &m->packed[j];
        size_t a = g->lo > at ? g->lo : at, b = g->hi < e ? g->hi : e;
        if (b > a) fn(ctx, m->packed_g + g->at + (a - g->lo), m->num_params + g->at + (a - g->lo), b - a);
    }
}

int lmf_model_grads_swappable(const lmf_model *m) {
    return m->grads && !m->lora && !m->packed && !m->shared && !m->tp;
}

static void point_grads(lmf_model *m, float *g) {
    m->grads = g;
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) m->gptr[i] = m->param_sizes[i] ? g + m->param_offsets[i] : NULL;
    lmf_params_view(m->gw, &m->cfg, g);
}

float *lmf_model_swap_grads(lmf_model *m, float *g, lmf_model *const *sharers, int n) {
    LMF_CHECK(lmf_model_grads_swappable(m) && g);
    float *old = m->grads;
    point_grads(m, g);
    for (int i = 0; i < n; i++) {
        LMF_CHECK(sharers[i]->shared && sharers[i]->grads == old);
        point_grads(sharers[i], g);
    }
    return old;
}

void lmf_model_copy_held(lmf_model *m, const float *src) {
    lmf_range all;
    int ns;
    const lmf_range *sp = held_spans(m, &all, &ns);
    for (int j = 0; j < ns; j++) memcpy(m->params + sp[j].lo, src + sp[j].lo, (sp[j].hi - sp[j].lo) * sizeof(float));
    for (int j = 0; j < m->n_packed; j++) {
        const lmf_seg *g = &m->packed[j];
        memcpy(m->packed_p + g->at, src + g->lo, (g->hi - g->lo) * sizeof(float));
    }
}

/* grads[a, b) zeroed by all threads: one cannot saturate the memory bus on hundreds of MB */
static void zero_par(float *g, size_t a, size_t b) {
    if (b <= a) return;
#pragma omp parallel
    {
        long lo, hi;
        lmf_omp_range((long)(b - a), &lo, &hi);
        if (hi > lo) memset(g + a + lo, 0, (size_t)(hi - lo) * sizeof(float));
    }
}

void lmf_model_zero_grads_range(lmf_model *m, size_t at, size_t len) {
    lmf_range all;
    int ns;
    const lmf_range *sp = held_spans(m, &all, &ns);
    for (int j = 0; j < ns; j++) {
        size_t a = sp[j].lo > at ? sp[j].lo : at, b = sp[j].hi < at + len ? sp[j].hi : at + len;
        if (b > a) memset(m->grads + a, 0, (b - a) * sizeof(float));
    }
}

size_t lmf_model_stray_bytes(const lmf_model *m, size_t *first) {
    size_t total = 0;
    *first = SIZE_MAX;
    if (!m->held) return 0;
    for (int b = 0; b < 2; b++) {
        const float *buf = b ? m->grads : m->params;
        for (int j = 0; j <= m->n_held; j++) { /* the gaps: before each span, and after the last */
            size_t a = j ? m->held[j - 1].hi : 0, e = j < m->n_held ? m->held[j].lo : m->num_params;
            if (e <= a) continue;
            size_t got = lmf_resident_bytes(buf + a, (e - a) * sizeof(float));
            if (got && *first == SIZE_MAX) { /* the first such page, for the message */
                size_t per = 4096 / sizeof(float), skip = (4096 - (uintptr_t)(buf + a) % 4096) % 4096, f;
                for (f = a + skip / sizeof(float); f + per <= e; f += per)
                    if (lmf_resident_bytes(buf + f, 4096)) {
                        *first = f + (b ? m->num_params : 0);
                        break;
                    }
            }
            total += got;
        }
    }
    return total;
}

int lmf_param_tp_sharded(int i) {
    return i == LMF_P_QKVW || i == LMF_P_QKVB || i == LMF_P_ATTPROJW || i == LMF_P_FCW || i == LMF_P_FCB ||
           i == LMF_P_FCPROJW || i == LMF_P_WTE || i == LMF_P_WPE || i == LMF_P_LMHEAD || i == LMF_P_EXPFC ||
           i == LMF_P_EXPPROJ || i == LMF_P_SHFC || i == LMF_P_SHPROJ;
}

/* Tensor parallelism's vocabulary-parallel head (Megatron): rank r of t makes the logits of vocabulary rows
 * [V r / t, V (r + 1) / t) only, nv a row; the cross-entropy's log-sum-exp combines the ranks' partial ones and the
 * target's logit comes from the rank that holds it, so no rank ever holds a whole row of logits. Measured against
 * every rank making all V (docs/distributed.md): it pays as soon as the head is a sizeable share of the step. */
static void vocab_share(const lmf_model *m, int *v0, int *nv) {
    long V = m->cfg.vocab_size, t = m->tp->size, r = m->tp->rank;
    *v0 = (int)(V * r / t);
    *nv = (int)(V * (r + 1) / t) - *v0;
}

/* The losses of the last forward's rows from this rank's logits (N x nv); returns the number of targets. */
static int tp_crossentropy_forward(lmf_model *m, const int32_t *targets, int N) {
    int t = m->tp->size, r = m->tp->rank, v0, nv;
    vocab_share(m, &v0, &nv);
    size_t need = (size_t)N * (t + 2);
    if (m->tp_cap < need) {
        free(m->tp_buf);
        m->tp_buf = lmf_xmalloc(need * sizeof(float)), m->tp_cap = need;
    }
    float *part = m->tp_buf, *tlogit = part + (size_t)t * N, *lse = tlogit + N, *logits = m->acts.logits;
    const lmf_vec_ops *v = lmf_vec();
    memset(part, 0, sizeof(float) * (size_t)N * (t + 1)); /* rank q's log-sum-exps in block q; the target logits */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * nv;
        part[(size_t)r * N + n] = nv ? v->logsumexp(l, nv) : -INFINITY;
        if (targets[n] >= v0 && targets[n] < v0 + nv) tlogit[n] = l[targets[n] - v0];
    }
    lmf_block_tp_sum(m->tp, part, (size_t)N * (t + 1));
    int count = 0;
    for (int n = 0; n < N; n++) {
        float mx = -INFINITY;
        for (int q = 0; q < t; q++) mx = fmaxf(mx, part[(size_t)q * N + n]);
        double s = 0;
        for (int q = 0; q < t; q++) s += exp((double)part[(size_t)q * N + n] - mx);
        lse[n] = mx + (float)log(s);
        m->acts.losses[n] = targets[n] < 0 ? 0.0f : lse[n] - tlogit[n];
        count += targets[n] >= 0;
    }
    return count;
}

/* d(scale x loss) / d(logits) over this rank's logits, in place (lmf_crossentropy_backward_inplace's share). */
static void tp_crossentropy_backward(lmf_model *m, int N, float scale) {
    int t = m->tp->size, v0, nv;
    vocab_share(m, &v0, &nv);
    const float *lse = m->tp_buf + (size_t)N * (t + 1);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *l = m->acts.logits + (size_t)n * nv;
        int tg = m->targets[n];
        if (tg < 0) {
            memset(l, 0, sizeof(float) * (size_t)nv);
            continue;
        }
        lmf_crossentropy_backward_row(l, nv, lse[n], tg >= v0 && tg < v0 + nv ? tg - v0 : -1, scale,
                                      m->cfg.final_softcap);
    }
}

int lmf_param_per_layer(int i) {
    return i != LMF_P_WTE && i != LMF_P_WPE && i != LMF_P_LNFW && i != LMF_P_LNFB && i != LMF_P_LMHEAD;
}

void lmf_model_zero_replicated_grads(lmf_model *m) {
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++)
        if (m->gptr[i] && !lmf_param_tp_sharded(i))
            lmf_model_zero_grads_range(m, m->param_offsets[i], m->param_sizes[i]);
}

void lmf_model_zero_grad(lmf_model *m) {
    LMF_CHECK(m->grads);
    lmf_range all;
    int ns;
    const lmf_range *sp = written_spans(m, &all, &ns);
    for (int j = 0; j < ns; j++) zero_par(m->grads, sp[j].lo, sp[j].hi);
    zero_par(m->packed_g, 0, m->packed_n);
    m->fresh_grads = 0;
}

/* The tensors a whole model's backward writes with a product of their own before anything adds to them: the dense
 * linear layers' (a MoE's experts get products only for the tokens routed to them) and the head (a tied head's
 * product writes wte's gradient before the embedding's backward adds to it). */
static int written_whole(const lmf_model *m, int i) {
    switch (i) {
    case LMF_P_QKVW:
    case LMF_P_ATTPROJW: return 1;
    case LMF_P_FCW:
    case LMF_P_FCPROJW: return !m->cfg.n_expert;
    case LMF_P_LMHEAD: return !m->cfg.tied_embeddings;
    case LMF_P_WTE: return m->cfg.tied_embeddings;
    default: return 0;
    }
}

void lmf_model_zero_grad_lazy(lmf_model *m) {
    if (m->lora || m->tp || m->held || m->packed || m->shared || m->act_l0 != 0 || m->act_l1 != m->cfg.n_layer) {
        lmf_model_zero_grad(m);
        return;
    }
    LMF_CHECK(m->grads);
    size_t at = 0; /* tensors lie in index order in the flat buffer: zero the gaps between the skipped ones */
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i] || !written_whole(m, i)) continue;
        zero_par(m->grads, at, m->param_offsets[i]);
        at = m->param_offsets[i] + m->param_sizes[i];
    }
    zero_par(m->grads, at, m->num_params);
    m->fresh_grads = 1;
}

/* Layer l's slice of the kept activations; x (the layer's input) is the previous layer's res3, or the embeddings
 * (the first kept layer's input: a pipeline stage's from the previous stage). */
static lmf_block_rows layer_rows(const lmf_model *m, int l, const float **x) {
    const lmf_acts *a = &m->acts;
    LMF_CHECK(m->act_l0 <= l && l < m->act_l1);
    l -= m->act_l0; /* the layers before are not kept here */
    int t = m->act_tp; /* a tensor-parallel share's rows are narrower */
    size_t snc = m->layer_stride_nc, sn = (size_t)m->max_batch * m->max_seq;
    dims d = dims_of(&m->cfg, 1, 1);
    size_t S = (size_t)d.S / t, A = (size_t)d.QD / t * sn, FF = (size_t)d.FF / t, F = (size_t)d.F / t;
    /* inputs kept in bf16 (lmf_acts): no fp32 ln1, ln2 (but a MoE's) or fcact; qkv and atty one layer's scratch */
    /* a kept input's rows per layer; one not kept (bf16's atty, LoRA's unread ones) is one layer's scratch */
    size_t k1 = a->kept & LMF_KEEP_LN1 ? l : 0, ka = a->kept & LMF_KEEP_ATTY && !a->atty_16 ? l : 0;
    size_t k2 = a->kept & LMF_KEEP_LN2 ? l : 0, kf = a->kept & LMF_KEEP_FCACT ? l : 0;
    lmf_block_rows r = {
        a->ln1 ? a->ln1 + k1 * snc : NULL, a->ln1_mean ? a->ln1_mean + l * sn : NULL, a->ln1_rstd + l * sn,
        a->qkv + (a->qkv_16 ? 0 : l * sn * S), a->att, a->atty + ka * A, a->res2 + l * snc,
        a->ln2 ? a->ln2 + k2 * snc : NULL, a->ln2_mean ? a->ln2_mean + l * sn : NULL, a->ln2_rstd + l * sn,
        a->fch ? a->fch + l * sn * FF : NULL, a->fcact ? a->fcact + kf * sn * F : NULL, a->res3 + l * snc, NULL,
        m->lora ? m->lora_t + (size_t)l * lmf_lora_t_floats(m->lora, m->max_batch * m->max_seq) : NULL,
        m->moe ? m->moe + l * m->moe_stride : NULL, m->moe_scratch,
        a->qk ? a->qk + l * sn * (size_t)(d.QD + d.KVD) / t : NULL,
        a->qk_rstd ? a->qk_rstd + l * sn * (m->cfg.qk_norm == LMF_QK_NORM_FULL ? 2 : (size_t)(d.NH + d.NKV) / t)
                   : NULL,
        a->ln1_16 ? a->ln1_16 + l * snc : NULL, a->atty_16 ? a->atty_16 + l * A : NULL,
        a->ln2_16 ? a->ln2_16 + l * snc : NULL, a->fcact_16 ? a->fcact_16 + l * sn * F : NULL,
        a->qkv_16 ? a->qkv_16 + l * sn * S : NULL,
        a->post1 ? a->post1 + l * snc : NULL, a->post1 ? a->post1_rstd + l * sn : NULL,
        a->post2 ? a->post2 + l * snc : NULL, a->post2 ? a->post2_rstd + l * sn : NULL};
    *x = l == 0 ? a->encoded : a->res3 + (l - 1) * snc;
    return r;
}

float lmf_model_forward(lmf_model *m, const int32_t *tokens, const int32_t *targets, int B, int T) {
    return lmf_model_forward_layers(m, tokens, targets, B, T, 0, m->cfg.n_layer, NULL, NULL);
}

float lmf_model_forward_layers(lmf_model *m, const int32_t *tokens, const int32_t *targets, int B, int T, int l0,
                               int l1, const float *x_in, lmf_moe_sums *sums) {
    LMF_CHECK(B > 0 && T > 0 && B <= m->max_batch && T <= m->max_seq);
    LMF_CHECK(m->act_l0 <= l0 && l0 < l1 && l1 <= m->act_l1); /* layers whose activations this model keeps */
    LMF_CHECK(m->act_tp == 1 || (m->tp && m->tp->size == m->act_tp)); /* a share's rows: its group's forward only */
    /* a stage past the first needs its input (and a MoE the sums so far); LoRA trains whole models only */
    LMF_CHECK(l0 == 0 || (x_in && (sums || !m->cfg.n_expert)));
    LMF_CHECK(!m->lora || (l0 == 0 && l1 == m->cfg.n_layer));
    dims d = dims_of(&m->cfg, B, T);
    for (int i = 0; i < d.N; i++) LMF_CHECK(tokens[i] >= 0 && tokens[i] < d.V && (!targets || targets[i] < d.V));
    m->B = B, m->T = T;
    memcpy(m->tokens, tokens, sizeof(int32_t) * d.N);
    m->has_targets = targets != NULL;
    if (targets) memcpy(m->targets, targets, sizeof(int32_t) * d.N);

    lmf_acts *a = &m->acts;
    const lmf_weights *w = m->w;
    lmf_block_ctx ctx = {.cfg = &m->cfg, .rope = m->rope, .rope_swa = m->rope_swa, .dq = m->dq,
                         .dq_floats = m->dq_floats, .B = B, .T = T,
                         .bf16 = m->bf16, .pos = m->use_pos ? m->pos : NULL, .lora = m->lora, .training = 1, .lora_x = m->lora_x,
                         .tp = m->tp};
    if (l0 == 0) lmf_block_embed(w, a->encoded, tokens, d.N, T, 0, m->use_pos ? m->pos : NULL);
    else memcpy(l0 == m->act_l0 ? a->encoded : (float *)lmf_model_layer_output(m, l0 - 1), x_in,
                sizeof(float) * d.N * d.C); /* l0's input */
    const float *x = NULL;
    for (int l = l0; l < l1; l++) {
        lmf_block_rows r = layer_rows(m, l, &x);
        lmf_block_forward(&ctx, &w->layers[l], l, x, &r);
    }
    if (m->cfg.n_expert) { /* the previous stages' sums (zero on the first) plus this range's layers */
        if (l0 == 0) memset(&m->moe_sums, 0, sizeof m->moe_sums);
        else m->moe_sums = *sums;
        lmf_moe_sums_add(&m->cfg, d.N, m->moe, m->moe_stride, l0 - m->act_l0, l1 - m->act_l0, &m->moe_sums);
        if (sums) *sums = m->moe_sums;
        lmf_moe_stats *st = &m->moe_stats;
        if (l1 == d.L)
            lmf_moe_losses_of(&m->cfg, d.N, &m->moe_sums, &st->aux, &st->z, st->load, &st->dropped, 0.0f, NULL);
    }
    m->l0 = l0, m->l1 = l1;
    if (l1 < d.L) return 0.0f; /* a pipeline stage before the last: its output is layer l1 - 1's */
    const float *last = lmf_model_layer_output(m, d.L - 1);
    lmf_block_norm_par(&m->cfg, a->lnf, a->lnf_mean, a->lnf_rstd, last, w->out_norm_w, w->out_norm_b, d.N);
    lmf_wtensor hw = w->lm_head;
    int v0 = 0, nv = d.V;
    if (m->tp) { /* vocabulary-parallel: this rank's rows of the head */
        vocab_share(m, &v0, &nv);
        hw.data = (const char *)hw.data + (size_t)v0 * hw.row_bytes, hw.rows = nv;
    }
    m->fused = m->hl && targets && !m->tp; /* the vocabulary-parallel head keeps its share of the logits */
    if (m->fused) {
        int grad = !m->no_grad && (m->grads || m->lora);
        m->num_targets = lmf_head_loss_forward(m->hl, &hw, a->lnf, targets, d.N, m->cfg.final_softcap, m->bf16, grad,
                                               a->losses);
        goto losses;
    }
    lmf_lin head = {&hw, NULL, a->logits, nv};
    lmf_block_linear(&head, 1, a->lnf, d.C, d.N, m->dq, m->dq_floats, m->bf16);
    if (m->cfg.final_softcap) { /* Gemma 2: the losses are over the capped logits */
        const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static)
        for (int n = 0; n < d.N; n++) v->softcap(a->logits + (size_t)n * nv, nv, 1.0f, m->cfg.final_softcap);
    }
    if (!targets) return 0.0f;
    m->num_targets = m->tp ? tp_crossentropy_forward(m, targets, d.N)
                           : lmf_crossentropy_forward(a->losses, a->lse, a->logits, targets, d.N, d.V);
losses:;
    double sum = 0.0;
    for (int i = 0; i < d.N; i++) sum += a->losses[i];
    return m->num_targets ? (float)(sum / m->num_targets) : 0.0f;
}

void lmf_model_backward(lmf_model *m, float loss_scale) {
    LMF_CHECK(m->l0 == 0 && m->l1 == m->cfg.n_layer);
    lmf_model_backward_layers(m, loss_scale, NULL, NULL);
}

void lmf_model_backward_layers(lmf_model *m, float loss_scale, const float *dx_out, const lmf_moe_sums *totals) {
    LMF_CHECK((m->grads || m->lora) && m->has_targets);
    dims d = dims_of(&m->cfg, m->B, m->T);
    int l0 = m->l0, l1 = m->l1, last_stage = l1 == d.L;
    LMF_CHECK(last_stage || (dx_out && (totals || !m->cfg.n_expert)));
    LMF_CHECK(!m->fresh_grads || (l0 == 0 && last_stage && !m->tp)); /* every tensor left unzeroed gets written */
    int B = m->B, T = m->T;
    lmf_acts *a = &m->acts;
    lmf_grad_scratch *g = &m->gs;
    size_t NC = (size_t)d.N * d.C;

    const lmf_weights *w = m->w;
    int frozen = m->lora != NULL; /* adapters train, the base only passes gradients on */
    /* loss -> logits -> final norm (the last stage); before it, d(output) comes from the next stage */
    if (!last_stage) {
        memcpy(g->dres, dx_out, NC * sizeof(float));
        goto layers;
    }
    float scale = m->num_targets ? loss_scale / m->num_targets : 0.0f;
    float *dnw = frozen ? g->dnorm : m->gptr[LMF_P_LNFW], *dnb = frozen ? g->dnorm + d.C : m->gptr[LMF_P_LNFB];
    if (m->fused) {
        lmf_head_loss_dinput(m->hl, g->dbuf, d.N, scale);
        if (!frozen) /* the head's rows were w->lm_head's: the F32 view of the parameters */
            lmf_head_loss_dweight(m->hl, &w->lm_head, m->gptr[m->cfg.tied_embeddings ? LMF_P_WTE : LMF_P_LMHEAD],
                                  m->fresh_grads ? 0.0f : 1.0f, m->cfg.final_softcap, m->bf16, scale);
        goto norm;
    }
    if (m->tp) tp_crossentropy_backward(m, d.N, scale);
    else lmf_crossentropy_backward_inplace(a->logits, a->lse, m->targets, d.N, d.V, scale, m->cfg.final_softcap);
    if (frozen) {
        lmf_lin head = {&w->lm_head, NULL, a->logits, d.V};
        lmf_block_linear_dinput(&head, 1, g->dbuf, 0.0f, d.C, d.N, m->dq, m->dq_floats, m->bf16);
    } else {
        float *dhead = m->cfg.tied_embeddings ? m->gptr[LMF_P_WTE] : m->gptr[LMF_P_LMHEAD];
        const float *head = m->cfg.tied_embeddings ? m->ptr[LMF_P_WTE] : m->ptr[LMF_P_LMHEAD];
        int v0 = 0, nv = d.V;
        if (m->tp) vocab_share(m, &v0, &nv);
        lmf_matmul_backward_ld(m->bf16, g->dbuf, 0.0f, dhead + (size_t)v0 * d.C, m->fresh_grads ? 0.0f : 1.0f, NULL,
                               a->logits, nv, a->lnf, d.C, head + (size_t)v0 * d.C, d.C, d.N, d.C, nv);
        if (m->tp) lmf_block_tp_sum(m->tp, g->dbuf, NC); /* the ranks' shares of d(lnf) */
    }
norm:
    memset(g->dres, 0, NC * sizeof(float));
    const float *last = lmf_model_layer_output(m, d.L - 1);
    if (m->cfg.norm == LMF_NORM_LAYER)
        lmf_layernorm_backward(g->dres, dnw, dnb, g->dbuf, last, w->out_norm_w, a->lnf_mean, a->lnf_rstd, d.N, d.C);
    else
        lmf_rmsnorm_backward(g->dres, dnw, g->dbuf, last, w->out_norm_w, a->lnf_rstd, d.N, d.C);

layers:;
    lmf_block_ctx ctx = {.cfg = &m->cfg, .rope = m->rope, .rope_swa = m->rope_swa, .dq = m->dq,
                         .dq_floats = m->dq_floats, .B = B, .T = T,
                         .bf16 = m->bf16, .pos = m->use_pos ? m->pos : NULL, .lora = m->lora, .training = 1, .lora_x = m->lora_x,
                         .tp = m->tp, .fresh_grads = m->fresh_grads};
    lmf_block_grads bg = {g->dres, g->dbuf, g->dqkv, g->dfch, g->dfcact, g->dnorm};
    lmf_moe_grad mg;
    if (m->cfg.n_expert) { /* the router losses' share of d(loss_scale x loss), from the whole forward's routing */
        double aux, z;
        lmf_moe_losses_of(&m->cfg, d.N, last_stage ? &m->moe_sums : totals, &aux, &z, NULL, NULL, loss_scale, &mg);
        ctx.moe_grad = &mg;
    }
    for (int l = l1 - 1; l >= l0; l--) {
        const float *x;
        lmf_block_rows r = layer_rows(m, l, &x);
        lmf_block_backward(&ctx, &w->layers[l], frozen ? NULL : &m->gw->layers[l], l, x, &r, &bg);
        if (m->layer_done && !frozen) m->layer_done(m->layer_done_ctx, l);
    }
    m->fresh_grads = 0; /* written: a further micro-batch adds to them */
    if (frozen || l0 > 0) { /* l0 > 0: g->dres is now d(input of layer l0), for the previous stage */
        m->has_targets = 0;
        return;
    }
    float *dwpe = m->gptr[LMF_P_WPE] ? m->gptr[LMF_P_WPE] + (size_t)m->cfg.pos_offset * d.C : NULL;
    if (m->cfg.embed_scale) { /* the rows were scaled by sqrt(C) on the way in (lmf_block_embed) */
        float s = (float)sqrt((double)d.C);
        for (size_t i = 0; i < NC; i++) g->dres[i] *= s;
    }
    /* tensor parallel: every rank of the group has the same d(embeddings); the first adds them, as the head's rows
     * of a tied wte are each rank's own */
    if (!m->tp || m->tp->rank == 0)
        lmf_encoder_backward(m->gptr[LMF_P_WTE], dwpe, g->dres, m->tokens, m->use_pos ? m->pos : NULL, B, T, d.C);
    m->has_targets = 0; /* logits now hold gradients: a second backward would be wrong */
}
