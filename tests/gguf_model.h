/* gguf_model.h — a GGUF file into the fp32 training model, as tests load one: the inference loader, then
 * lmf_model_from_weights (Q/K rows back to rotate_half). */
#ifndef LMF_TESTS_GGUF_MODEL_H
#define LMF_TESTS_GGUF_MODEL_H

#include "core/status.h"
#include "model/model.h"

static lmf_status load_model(const char *path, int max_batch, int max_seq, lmf_model **out) {
    lmf_weights *w;
    *out = NULL;
    LMF_TRY(lmf_weights_load_gguf(path, &w));
    lmf_status s = lmf_model_from_weights(w, max_batch, max_seq, 0, out);
    lmf_weights_free(w);
    return s;
}

#endif
