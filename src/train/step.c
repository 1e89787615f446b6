/* step.c — see step.h. */
#include "train/step.h"
#include "train/pipeline.h"
#include "core/progress.h"
#include "core/status.h"
#include "kernels/kernels.h"
#include "model/block.h"

#include <math.h>

lmf_status lmf_train_step(const lmf_step_ctx *st, const lmf_batch_source *src, float lr, lmf_step_result *out) {
    lmf_model *m = st->model;
    int B = st->batch_size, T = st->seq_len, k = st->grad_accum;
    /* micro-batches of the step over all ranks (a pipeline's stages share theirs) */
    int total = k * lmf_comm_size(st->comm) / (st->pipe ? st->pipe->p : 1) / (st->tp ? st->tp->size : 1);
    lmf_model_zero_grad(m);
    double loss = 0.0, pipe_s = 0.0, tp_s = st->tp ? st->tp->wait_s : 0.0;
    if (st->pipe) LMF_TRY(lmf_pipeline_step(st->pipe, src, st->inputs, st->targets, 1.0f / total, &loss, &pipe_s));
    for (int a = 0; a < k && !st->pipe; a++) {
        LMF_TRY(src->next(src->ctx, st->inputs, st->targets));
        loss += lmf_model_forward(m, st->inputs, st->targets, B, T);
        lmf_model_backward(m, 1.0f / total);
    }
    if (st->tp && st->tp->rank > 0) { /* the group's first rank counts what every rank of it computed */
        lmf_model_zero_replicated_grads(m);
        loss = 0.0;
    }
    float gnorm;
    out->comm_s = pipe_s + (st->tp ? st->tp->wait_s - tp_s : 0.0);
    if (st->zero) {
        lmf_zero *z = st->zero;
        /* comm_s counts the waits too (a fast rank's for a slow one): communication as the step sees it */
        double t = lmf_now();
        LMF_TRY(lmf_zero_reduce_scatter(z, m->grads));
        out->comm_s += lmf_now() - t;
        /* the shards' squared norms add up to the global one; one small reduction carries it and the loss */
        double sums[2] = {loss, lmf_sum_squares(m->grads + z->lo, (long)(z->hi - z->lo))};
        t = lmf_now();
        LMF_TRY(lmf_comm_allreduce_sum_f64(st->comm, sums, 2));
        out->comm_s += lmf_now() - t;
        loss = sums[0] / total;
        gnorm = (float)sqrt(sums[1]);
        lmf_adamw_apply_range(st->opt, m, st->hp, lr, gnorm);
        t = lmf_now();
        LMF_TRY(lmf_zero_allgather(z, m->params));
        out->comm_s += lmf_now() - t;
    } else {
        /* one rank: both reductions leave their buffers alone, so the step is bit-identical to the loop it replaced */
        LMF_TRY(lmf_comm_allreduce_sum(st->comm, m->grads, m->num_params));
        LMF_TRY(lmf_comm_allreduce_sum_f64(st->comm, &loss, 1));
        loss /= total;
        gnorm = lmf_grad_norm(m);
        lmf_adamw_apply(st->opt, m, st->hp, lr, gnorm);
    }
    out->loss = loss;
    out->grad_norm = gnorm;
    return LMF_OK;
}
