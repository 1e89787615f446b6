/* lora_merge.c — an adapter folded into its base: W += scale B A (what PEFT's merge_and_unload does), for export.
 *
 * The merged weights share everything but the adapted matrices with the base (descriptors copied, pointers into
 * the base's storage); each adapted matrix is a new fp32 copy owned by the merged weights (the base's of any type
 * the dequantizers read, plus the product). B's rows for matrix q of a module follow the rows of the module's
 * earlier matrices (gpt2's c_attn: q | k | v), as in lmf_lora_decode_rows. */
#include "core/alloc.h"
#include "core/dtype.h"
#include "core/status.h"
#include "model/dequant.h"
#include "model/lora.h"

#include <stdlib.h>
#include <string.h>

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
        for (int k = 0; k < l->n_mod; k++) {
            const lmf_lora_module *mod = &l->mod[k];
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
