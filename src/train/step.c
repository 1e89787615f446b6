/* step.c — see step.h. */
#include "train/step.h"
#include "core/status.h"

lmf_status lmf_train_step(const lmf_step_ctx *st, const lmf_batch_source *src, float lr, lmf_step_result *out) {
    lmf_model *m = st->model;
    int B = st->batch_size, T = st->seq_len, k = st->grad_accum;
    lmf_model_zero_grad(m);
    double loss = 0.0;
    for (int a = 0; a < k; a++) {
        LMF_TRY(src->next(src->ctx, st->inputs, st->targets));
        loss += lmf_model_forward(m, st->inputs, st->targets, B, T);
        lmf_model_backward(m, 1.0f / k);
    }
    loss /= k;
    /* data parallel: sum over ranks, then the mean. Skipped arithmetic for one rank keeps it bit-identical. */
    LMF_TRY(lmf_comm_allreduce_sum(st->comm, m->grads, m->num_params));
    LMF_TRY(lmf_comm_allreduce_sum_f64(st->comm, &loss, 1));
    int size = lmf_comm_size(st->comm);
    if (size > 1) {
        float inv = 1.0f / (float)size;
        for (size_t i = 0; i < m->num_params; i++) m->grads[i] *= inv;
        loss /= size;
    }
    float gnorm = lmf_grad_norm(m);
    lmf_adamw_apply(st->opt, m, st->hp, lr, gnorm);
    out->loss = loss;
    out->grad_norm = gnorm;
    return LMF_OK;
}
