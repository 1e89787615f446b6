/* lora_merge.c — an adapter folded into its base: W += scale B A (what PEFT's merge_and_unload does), for export.
 *
 * The merged weights share everything but the adapted matrices with the base (descriptors copied, pointers into
 * the base's storage); each adapted matrix is a new fp32 copy owned by the merged weights (the base's of any type
 * the dequantizers read, plus the product). B's rows for matrix q of a module follow the rows of the module's
 * earlier matrices (gpt2's c_attn: q | k | v), as in lmf_lora_decode_rows. A mixture of experts' parameter adapters
 * fold s B_e A_e into each expert (gate_up_proj's B_e: the gate's F rows, then the up's) and s B A into the router;
 * the merged layer gets its own expert descriptors. A shared expert's gate_proj / up_proj / down_proj modules (the
 * LINEAR modules on matrices 4, 5, 6 of a MoE) fold into sh_gate / sh_up / sh_down, and Qwen2-MoE's
 * shared_expert_gate into a new copy of the (C) gate vector. */
#include "core/alloc.h"
#include "core/dtype.h"
#include "core/status.h"
#include "model/dequant.h"
#include "model/lora.h"

#include <stdlib.h>
#include <string.h>

/* *t (rows x cols, any type) as a new fp32 copy owned by m, plus s B A (B: rows x r, ldb r; A: r x cols). */
static lmf_status fold(lmf_weights *m, lmf_wtensor *t, const float *A, const float *B, int r, float s,
                       const char *what) {
    int rows = t->rows, cols = t->cols;
    float *dst = lmf_weights_alloc(m, (size_t)rows * cols * sizeof(float));
    for (int i = 0; i < rows; i++)
        LMF_TRY(lmf_dequant_row(t->type, (const char *)t->data + (size_t)i * t->row_bytes, dst + (size_t)i * cols,
                                (size_t)cols, what));
#pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; i++) {
        float *y = dst + (size_t)i * cols;
        for (int j = 0; j < r; j++) {
            float b = s * B[(size_t)i * r + j];
            const float *a = A + (size_t)j * cols;
            for (int e = 0; e < cols; e++) y[e] += b * a[e];
        }
    }
    lmf_wtensor_set(t, LMF_GGML_F32, rows, cols, dst);
    t->r16 = NULL;
    return LMF_OK;
}

/* The router and expert adapters of one layer into ml (whose experts are the base's until here). */
static lmf_status merge_params(lmf_weights *m, lmf_layer_weights *ml, const lmf_lora *l, int layer) {
    const lmf_model_config *c = &m->cfg;
    int E = c->n_expert, F = c->ffn_dim, C = c->n_embd, copied = 0;
    for (int k = 0; k < l->n_mod; k++) {
        const lmf_lora_module *mod = &l->mod[k];
        if (mod->kind == LMF_LORA_LINEAR) continue;
        if (mod->kind == LMF_LORA_SHARED_GATE) { /* g (C) += s B A: B is (1, r) */
            if (!c->shared_gate || !ml->sh_gate_inp || mod->in != C)
                return lmf_fail(LMF_ERR_ARG, "merge: layer %d %s: the model has no shared expert gate of %d inputs",
                                layer, mod->name, mod->in);
            const float *A = lmf_lora_A(l, layer, k), *B = lmf_lora_B(l, layer, k);
            float *g = lmf_weights_alloc(m, sizeof(float) * (size_t)C), s = lmf_lora_scale_of(l, k);
            for (int q = 0; q < C; q++) {
                float v = ml->sh_gate_inp[q];
                for (int j = 0; j < mod->r; j++) v += s * B[j] * A[(size_t)j * C + q];
                g[q] = v;
            }
            ml->sh_gate_inp = g;
            continue;
        }
        if (!E || (mod->kind == LMF_LORA_ROUTER ? mod->out != E || mod->in != C
                                                 : mod->n_exp != E || mod->in != (mod->kind == LMF_LORA_EXPERTS_DOWN
                                                                                      ? F : C)))
            return lmf_fail(LMF_ERR_ARG, "merge: layer %d %s: the adapter is for %d experts of %d x %d, the model "
                            "has %d experts (C %d, F %d)", layer, mod->name, mod->n_exp, mod->out, mod->in, E, C, F);
        const float *A = lmf_lora_A(l, layer, k), *B = lmf_lora_B(l, layer, k);
        int r = mod->r;
        float s = lmf_lora_scale_of(l, k);
        if (mod->kind == LMF_LORA_ROUTER) {
            LMF_TRY(fold(m, &ml->router, A, B, r, s, "router"));
            continue;
        }
        if (!copied) { /* the merged layer's own descriptors: the base's stay as they are */
            lmf_wtensor *ex = lmf_weights_alloc(m, sizeof(lmf_wtensor) * 3 * (size_t)E);
            memcpy(ex, ml->experts, sizeof(lmf_wtensor) * 3 * (size_t)E);
            ml->experts = ex, copied = 1;
        }
        for (int e = 0; e < E; e++) {
            const float *Ae = A + (size_t)e * r * mod->in, *Be = B + (size_t)e * mod->out * r;
            if (mod->kind == LMF_LORA_EXPERTS_DOWN) {
                LMF_TRY(fold(m, &ml->experts[3 * e + 2], Ae, Be, r, s, "expert down"));
                continue;
            }
            LMF_TRY(fold(m, &ml->experts[3 * e], Ae, Be, r, s, "expert gate"));
            LMF_TRY(fold(m, &ml->experts[3 * e + 1], Ae, Be + (size_t)F * r, r, s, "expert up"));
        }
    }
    return LMF_OK;
}

lmf_status lmf_lora_merge(const lmf_weights *base, const lmf_lora *l, lmf_weights **out) {
    *out = NULL;
    if (l->n_layer != base->cfg.n_layer)
        return lmf_fail(LMF_ERR_ARG, "merge: the adapter has %d layers, the model %d", l->n_layer, base->cfg.n_layer);
    lmf_weights *m = lmf_weights_new();
    /* everything by value: the tensor descriptors point into the base's storage, which stays the base's */
    m->cfg = base->cfg;
    m->tok_emb = base->tok_emb;
    m->pos_emb = base->pos_emb;
    m->lm_head = base->lm_head;
    m->out_norm_w = base->out_norm_w;
    m->out_norm_b = base->out_norm_b;
    m->tok = base->tok;                     /* borrowed: lmf_lora_merged_free lets go of it */
    m->chat_template = base->chat_template; /* borrowed too */
    m->bos_id = base->bos_id;
    m->eos_id = base->eos_id;
    m->eot_id = base->eot_id;
    m->add_bos = base->add_bos;
    memcpy(m->source, base->source, sizeof m->source);
    m->file_bytes = base->file_bytes;
    m->layers = lmf_xcalloc((size_t)base->cfg.n_layer, sizeof *m->layers);
    memcpy(m->layers, base->layers, (size_t)base->cfg.n_layer * sizeof *m->layers);
    int r = l->r;
    for (int layer = 0; layer < l->n_layer; layer++) {
        const lmf_wtensor *bm[LMF_LAYER_MATRICES], *mm[LMF_LAYER_MATRICES];
        lmf_layer_matrices(&base->layers[layer], bm);
        lmf_layer_matrices(&m->layers[layer], mm);
        if (base->cfg.n_expert) { /* a MoE's matrices 4, 5, 6 are its shared expert's (lora.h) */
            bm[4] = &base->layers[layer].sh_gate, bm[5] = &base->layers[layer].sh_up;
            bm[6] = &base->layers[layer].sh_down;
            mm[4] = &m->layers[layer].sh_gate, mm[5] = &m->layers[layer].sh_up, mm[6] = &m->layers[layer].sh_down;
        }
        lmf_status ps = merge_params(m, &m->layers[layer], l, layer);
        if (ps != LMF_OK) {
            lmf_lora_merged_free(m);
            return ps;
        }
        for (int k = 0; k < l->n_mod; k++) {
            const lmf_lora_module *mod = &l->mod[k];
            if (mod->kind != LMF_LORA_LINEAR) continue;
            const float *A = lmf_lora_A(l, layer, k), *B = lmf_lora_B(l, layer, k);
            int off = 0;
            for (int q = mod->m0; q < mod->m1; q++) {
                const lmf_wtensor *src = bm[q];
                int rows = src->rows, cols = src->cols;
                if (rows != l->rows[q] || cols != mod->in) {
                    lmf_lora_merged_free(m);
                    return lmf_fail(LMF_ERR_ARG, "merge: layer %d %s: the model's matrix is %d x %d, the adapter's "
                                    "%d x %d", layer, mod->name, rows, cols, l->rows[q], mod->in);
                }
                float *dst = lmf_weights_alloc(m, (size_t)rows * cols * sizeof(float));
                for (int i = 0; i < rows; i++) {
                    lmf_status s = lmf_dequant_row(src->type, (const char *)src->data + (size_t)i * src->row_bytes,
                                                   dst + (size_t)i * cols, (size_t)cols, mod->name);
                    if (s != LMF_OK) {
                        lmf_lora_merged_free(m);
                        return s;
                    }
                }
                /* dst += scale * B[off .. off + rows) A */
                const float *Bq = B + (size_t)off * r;
#pragma omp parallel for schedule(static)
                for (int i = 0; i < rows; i++) {
                    float *y = dst + (size_t)i * cols;
                    for (int j = 0; j < r; j++) {
                        float b = l->scale * Bq[(size_t)i * r + j];
                        const float *a = A + (size_t)j * cols;
                        for (int e = 0; e < cols; e++) y[e] += b * a[e];
                    }
                }
                lmf_wtensor *t = (lmf_wtensor *)mm[q];
                lmf_wtensor_set(t, LMF_GGML_F32, rows, cols, dst);
                t->r16 = NULL;
                off += rows;
            }
        }
    }
    *out = m;
    return LMF_OK;
}

void lmf_lora_merged_free(lmf_weights *m) {
    if (!m) return;
    m->tok = NULL; /* the base's */
    m->chat_template = NULL;
    lmf_weights_free(m);
}
