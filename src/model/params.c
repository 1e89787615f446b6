/* params.c — the flat parameter table of model.h: shapes, sizes, and typed views of a flat buffer as weights. */
#include "model/model.h"

#include "core/alloc.h"
#include "core/status.h"
#include "io/gguf.h"
#include "model/dequant.h"

#include <stdio.h>
#include <string.h>

const char *const lmf_param_names[LMF_NUM_PARAM_TENSORS] = {
    "wte",  "wpe",  "ln1_w",     "ln1_b",     "qkv_w", "qkv_b", "attn_proj_w", "attn_proj_b", "ln2_w",
    "ln2_b", "fc_w", "fc_b", "fc_proj_w", "fc_proj_b", "lnf_w", "lnf_b", "lm_head", "router_w", "exp_fc_w",
    "exp_proj_w", "sh_fc_w", "sh_proj_w", "sh_gate_w", "q_norm_w", "k_norm_w", "post_attn_norm_w", "post_ffn_norm_w"};

int lmf_qk_norm_width(const lmf_model_config *c, int k) {
    return c->qk_norm == LMF_QK_NORM_HEAD   ? lmf_head_size(c)
           : c->qk_norm == LMF_QK_NORM_FULL ? (k ? lmf_kv_width(c) : lmf_q_width(c))
                                            : 0;
}

static int shape_of(int s[3], int a, int b, int c) {
    s[0] = a, s[1] = b, s[2] = c;
    return c ? 3 : b ? 2 : 1;
}

int lmf_param_shape(const lmf_model_config *c, int i, int s[3]) {
    int V = c->vocab_size, C = c->n_embd, L = c->n_layer, F = c->ffn_dim;
    int QD = lmf_q_width(c), S = QD + 2 * lmf_kv_width(c), FF = lmf_act_gated(c->act) ? 2 * F : F;
    int ln = c->norm == LMF_NORM_LAYER, b = c->bias, E = c->n_expert, Fs = c->shared_ffn_dim;
    s[0] = s[1] = s[2] = 0;
    switch (i) {
    case LMF_P_WTE: return shape_of(s, V, C, 0);
    case LMF_P_WPE: return c->pos == LMF_POS_LEARNED ? shape_of(s, c->max_seq_len + c->pos_offset, C, 0) : 0;
    case LMF_P_LN1W: case LMF_P_LN2W: return shape_of(s, L, C, 0);
    case LMF_P_LN1B: case LMF_P_LN2B: return ln ? shape_of(s, L, C, 0) : 0;
    case LMF_P_ATTPROJB: case LMF_P_FCPROJB: return b ? shape_of(s, L, C, 0) : 0;
    case LMF_P_QKVW: return shape_of(s, L, S, C);
    case LMF_P_QKVB: return b || c->qkv_bias ? shape_of(s, L, S, 0) : 0;
    case LMF_P_ATTPROJW: return shape_of(s, L, C, QD);
    case LMF_P_FCW: return E ? 0 : shape_of(s, L, FF, C);
    case LMF_P_FCB: return b ? shape_of(s, L, FF, 0) : 0;
    case LMF_P_FCPROJW: return E ? 0 : shape_of(s, L, C, F);
    case LMF_P_ROUTER: return E ? shape_of(s, L, E, C) : 0;
    case LMF_P_EXPFC: return E ? shape_of(s, L, E * 2 * F, C) : 0;
    case LMF_P_EXPPROJ: return E ? shape_of(s, L, E * C, F) : 0;
    case LMF_P_SHFC: return E && Fs ? shape_of(s, L, 2 * Fs, C) : 0;
    case LMF_P_SHPROJ: return E && Fs ? shape_of(s, L, C, Fs) : 0;
    case LMF_P_SHGATE: return E && Fs && c->shared_gate ? shape_of(s, L, C, 0) : 0;
    case LMF_P_QNORM: case LMF_P_KNORM:
        return c->qk_norm ? shape_of(s, L, lmf_qk_norm_width(c, i == LMF_P_KNORM), 0) : 0;
    case LMF_P_POSTATTNW: case LMF_P_POSTFFNW: return c->post_norms ? shape_of(s, L, C, 0) : 0;
    case LMF_P_LNFW: return shape_of(s, C, 0, 0);
    case LMF_P_LNFB: return ln ? shape_of(s, C, 0, 0) : 0;
    case LMF_P_LMHEAD: return c->tied_embeddings ? 0 : shape_of(s, V, C, 0);
    }
    return 0;
}

void lmf_param_sizes(const lmf_model_config *c, size_t sizes[LMF_NUM_PARAM_TENSORS]) {
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        int s[3], r = lmf_param_shape(c, i, s);
        size_t n = r ? 1 : 0;
        for (int d = 0; d < r; d++) n *= (size_t)s[d];
        sizes[i] = n;
    }
}

int lmf_param_decays(int i) {
    return i == LMF_P_QKVW || i == LMF_P_ATTPROJW || i == LMF_P_FCW || i == LMF_P_FCPROJW || i == LMF_P_LMHEAD ||
           i == LMF_P_ROUTER || i == LMF_P_EXPFC || i == LMF_P_EXPPROJ || i == LMF_P_SHFC || i == LMF_P_SHPROJ ||
           i == LMF_P_SHGATE; /* a (1, C) nn.Linear in transformers: a matrix, as the router */
}

void lmf_params_view(lmf_weights *w, const lmf_model_config *c, const float *params) {
    size_t sizes[LMF_NUM_PARAM_TENSORS], off[LMF_NUM_PARAM_TENSORS], total = 0;
    lmf_param_sizes(c, sizes);
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) off[i] = total, total += sizes[i];
    int C = c->n_embd, QD = lmf_q_width(c), KV = lmf_kv_width(c), F = c->ffn_dim, V = c->vocab_size;
    int S = QD + 2 * KV;
    int swiglu = lmf_act_gated(c->act), FF = swiglu ? 2 * F : F;
#define T(i) (sizes[i] ? params + off[i] : NULL)
#define LT(i, l, per) (sizes[i] ? params + off[i] + (size_t)(l) * (per) : NULL)
    w->cfg = *c;
    lmf_wtensor_set(&w->tok_emb, LMF_GGML_F32, V, C, T(LMF_P_WTE));
    if (c->tied_embeddings) w->lm_head = w->tok_emb;
    else lmf_wtensor_set(&w->lm_head, LMF_GGML_F32, V, C, T(LMF_P_LMHEAD));
    if (sizes[LMF_P_WPE]) lmf_wtensor_set(&w->pos_emb, LMF_GGML_F32, c->max_seq_len + c->pos_offset, C, T(LMF_P_WPE));
    w->out_norm_w = T(LMF_P_LNFW);
    w->out_norm_b = T(LMF_P_LNFB);
    if (!w->layers) w->layers = lmf_xcalloc((size_t)c->n_layer, sizeof *w->layers);
    for (int l = 0; l < c->n_layer; l++) {
        lmf_layer_weights *L = &w->layers[l];
        const float *qkv = LT(LMF_P_QKVW, l, S * C), *fc = LT(LMF_P_FCW, l, FF * C), *qb = LT(LMF_P_QKVB, l, S);
        lmf_wtensor *experts = L->experts; /* kept across calls: owned by w */
        memset(L, 0, sizeof *L);
        if (c->n_expert) {
            int E = c->n_expert, Fs = c->shared_ffn_dim;
            if (!experts) experts = lmf_weights_alloc(w, sizeof(lmf_wtensor) * 3 * (size_t)E);
            L->experts = experts;
            lmf_wtensor_set(&L->router, LMF_GGML_F32, E, C, LT(LMF_P_ROUTER, l, E * C));
            const float *efc = LT(LMF_P_EXPFC, l, (size_t)E * 2 * F * C), *ed = LT(LMF_P_EXPPROJ, l, (size_t)E * C * F);
            for (int e = 0; e < E; e++) {
                lmf_wtensor_set(&experts[3 * e], LMF_GGML_F32, F, C, efc + (size_t)e * 2 * F * C);
                lmf_wtensor_set(&experts[3 * e + 1], LMF_GGML_F32, F, C, efc + ((size_t)e * 2 + 1) * F * C);
                lmf_wtensor_set(&experts[3 * e + 2], LMF_GGML_F32, C, F, ed + (size_t)e * C * F);
            }
            if (Fs) {
                const float *sfc = LT(LMF_P_SHFC, l, (size_t)2 * Fs * C);
                lmf_wtensor_set(&L->sh_gate, LMF_GGML_F32, Fs, C, sfc);
                lmf_wtensor_set(&L->sh_up, LMF_GGML_F32, Fs, C, sfc + (size_t)Fs * C);
                lmf_wtensor_set(&L->sh_down, LMF_GGML_F32, C, Fs, LT(LMF_P_SHPROJ, l, (size_t)C * Fs));
                L->sh_gate_inp = LT(LMF_P_SHGATE, l, C);
            }
        }
        L->attn_norm_w = LT(LMF_P_LN1W, l, C), L->attn_norm_b = LT(LMF_P_LN1B, l, C);
        L->q_norm_w = LT(LMF_P_QNORM, l, lmf_qk_norm_width(c, 0));
        L->k_norm_w = LT(LMF_P_KNORM, l, lmf_qk_norm_width(c, 1));
        L->ffn_norm_w = LT(LMF_P_LN2W, l, C), L->ffn_norm_b = LT(LMF_P_LN2B, l, C);
        L->post_attn_norm_w = LT(LMF_P_POSTATTNW, l, C), L->post_ffn_norm_w = LT(LMF_P_POSTFFNW, l, C);
        lmf_wtensor_set(&L->wq, LMF_GGML_F32, QD, C, qkv);
        lmf_wtensor_set(&L->wk, LMF_GGML_F32, KV, C, qkv + (size_t)QD * C);
        lmf_wtensor_set(&L->wv, LMF_GGML_F32, KV, C, qkv + (size_t)(QD + KV) * C);
        if (qb) L->bq = qb, L->bk = qb + QD, L->bv = qb + QD + KV;
        lmf_wtensor_set(&L->wo, LMF_GGML_F32, C, QD, LT(LMF_P_ATTPROJW, l, (size_t)C * QD));
        L->bo = LT(LMF_P_ATTPROJB, l, C);
        L->b_up = LT(LMF_P_FCB, l, F);
        L->b_down = LT(LMF_P_FCPROJB, l, C);
        if (c->n_expert) continue;
        if (swiglu) lmf_wtensor_set(&L->w_gate, LMF_GGML_F32, F, C, fc);
        lmf_wtensor_set(&L->w_up, LMF_GGML_F32, F, C, fc + (swiglu ? (size_t)F * C : 0));
        lmf_wtensor_set(&L->w_down, LMF_GGML_F32, C, F, LT(LMF_P_FCPROJW, l, C * F));
    }
#undef T
#undef LT
}

/* Dequantizes all of src (rows x cols of its type) into dst, whose rows may be reordered: dst row r <- src row
 * perm(r). Heads of hs rows whose pairs are interleaved (llama.cpp's Q/K order) go back to rotate_half order when
 * unpermute is set: our row h*hs + j*hs/2 + i <- GGUF row h*hs + 2i + j. */
static lmf_status copy_matrix(const lmf_wtensor *src, const lmf_wtensor *dst, int hs, int unpermute,
                              const char *what) {
    if (!src->rows) return LMF_OK;
    if (src->rows != dst->rows || src->cols != dst->cols)
        return lmf_fail(LMF_ERR_MISMATCH, "%s: %d x %d, the model needs %d x %d", what, src->rows, src->cols,
                        dst->rows, dst->cols);
    for (int r = 0; r < dst->rows; r++) {
        int k = r % hs, sr = unpermute ? r - k + 2 * (k % (hs / 2)) + k / (hs / 2) : r;
        LMF_TRY(lmf_dequant_row(src->type, (const char *)src->data + (size_t)sr * src->row_bytes,
                                (float *)dst->data + (size_t)r * dst->cols, (size_t)dst->cols, what));
    }
    return LMF_OK;
}

static void copy_vec(const float *src, const float *dst, int n) {
    if (src && dst) memcpy((float *)dst, src, (size_t)n * sizeof(float));
}

lmf_status lmf_model_from_weights(const lmf_weights *w, int max_batch, int max_seq, int training, lmf_model **out) {
    *out = NULL;
    lmf_model_config c = w->cfg;
    int unpermute = c.pos == LMF_POS_ROPE_INTERLEAVED;
    if (unpermute) c.pos = LMF_POS_ROPE_HALF; /* the training model keeps HF's order, as its exports expect */
    if (max_seq > c.max_seq_len) max_seq = c.max_seq_len;
    lmf_model *m = lmf_model_create_factors(&c, w, max_batch, max_seq, training);
    if (!m) return LMF_ERR_ARG; /* lmf_model_create named the field */
    const lmf_weights *d = m->w;
    if (c.rope_scaling == LMF_ROPE_SCALING_LONGROPE) { /* the model's own copy: its exports write them back */
        size_t half = (size_t)lmf_head_size(&c) / 2;
        float *f = lmf_weights_alloc(m->w, 2 * half * sizeof(float));
        memcpy(f, w->rope_short, half * sizeof(float));
        memcpy(f + half, w->rope_long, half * sizeof(float));
        m->w->rope_short = f, m->w->rope_long = f + half;
    }
    int C = c.n_embd, hs = lmf_head_size(&c), F = c.ffn_dim;
    lmf_status s = copy_matrix(&w->tok_emb, &d->tok_emb, hs, 0, "token embedding");
    if (s == LMF_OK && c.pos == LMF_POS_LEARNED) s = copy_matrix(&w->pos_emb, &d->pos_emb, hs, 0, "position embedding");
    if (s == LMF_OK && !c.tied_embeddings) s = copy_matrix(&w->lm_head, &d->lm_head, hs, 0, "output head");
    copy_vec(w->out_norm_w, d->out_norm_w, C), copy_vec(w->out_norm_b, d->out_norm_b, C);
    for (int l = 0; s == LMF_OK && l < c.n_layer; l++) {
        const lmf_layer_weights *a = &w->layers[l], *b = &d->layers[l];
        const lmf_wtensor *ma[LMF_LAYER_MATRICES], *mb[LMF_LAYER_MATRICES];
        lmf_layer_matrices(a, ma);
        lmf_layer_matrices(b, mb);
        for (int i = 0; s == LMF_OK && i < LMF_LAYER_MATRICES; i++) {
            char what[64];
            snprintf(what, sizeof what, "layer %d matrix %d", l, i);
            s = copy_matrix(ma[i], mb[i], hs, unpermute && i < 2, what);
        }
        const lmf_wtensor *ea[LMF_MOE_MATRICES(LMF_MAX_EXPERT)], *eb[LMF_MOE_MATRICES(LMF_MAX_EXPERT)];
        int ne = lmf_layer_moe_matrices(a, c.n_expert, ea);
        lmf_layer_moe_matrices(b, c.n_expert, eb);
        for (int i = 0; s == LMF_OK && i < ne; i++) {
            char what[64];
            snprintf(what, sizeof what, "layer %d mixture-of-experts matrix %d", l, i);
            s = copy_matrix(ea[i], eb[i], hs, 0, what);
        }
        copy_vec(a->attn_norm_w, b->attn_norm_w, C), copy_vec(a->attn_norm_b, b->attn_norm_b, C);
        copy_vec(a->ffn_norm_w, b->ffn_norm_w, C), copy_vec(a->ffn_norm_b, b->ffn_norm_b, C);
        copy_vec(a->bq, b->bq, b->wq.rows), copy_vec(a->bk, b->bk, b->wk.rows), copy_vec(a->bv, b->bv, b->wv.rows);
        copy_vec(a->bo, b->bo, C), copy_vec(a->b_up, b->b_up, F), copy_vec(a->b_down, b->b_down, C);
        copy_vec(a->sh_gate_inp, b->sh_gate_inp, C);
        copy_vec(a->q_norm_w, b->q_norm_w, lmf_qk_norm_width(&c, 0));
        copy_vec(a->k_norm_w, b->k_norm_w, lmf_qk_norm_width(&c, 1));
        copy_vec(a->post_attn_norm_w, b->post_attn_norm_w, C), copy_vec(a->post_ffn_norm_w, b->post_ffn_norm_w, C);
    }
    if (s != LMF_OK) {
        lmf_model_free(m);
        return s;
    }
    *out = m;
    return LMF_OK;
}
