/* step.c — see step.h. */
#include "train/step.h"
#include "train/grad_sum.h"
#include "train/pipeline.h"
#include "core/progress.h"
#include "core/status.h"
#include "kernels/kernels.h"
#include "model/block.h"

#include <math.h>
#include <string.h>

/* The overlapped reduction (st->overlap, dist/zero.h). Every rank queues the same spans in the same order: layers
 * L-1 down to 0, each a slice of every stacked tensor, then the other tensors (LoRA: its whole buffer at the end).
 * A layer is queued once this rank's backward has passed it, or at once when it lies outside this rank's pipeline
 * stage (its gradients are zero here and final). */
typedef struct {
    const lmf_step_ctx *st;
    int next; /* the highest layer not queued yet */
    lmf_status err;
    double overlapped; /* lmf_step_result.overlapped */
} overlap_state;

/* the group's first rank counts the replicated tensors (the rule lmf_model_zero_replicated_grads applies at once
 * without overlap): the others zero them before the span leaves */
static void queue_tensor(const lmf_step_ctx *st, int i, size_t at, size_t len) {
    lmf_model *m = st->model;
    if (st->sum && st->grad_accum > 1) lmf_grad_sum_range(st->sum, at, len); /* the span's sum over the micro-batches */
    if (st->tp && st->tp->rank > 0 && !lmf_param_tp_sharded(i)) lmf_model_zero_grads_range(m, at, len);
    lmf_zero_queue(st->zero, at, len);
}

static void queue_layer(overlap_state *o, int l) {
    lmf_model *m = o->st->model;
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        size_t per = m->param_sizes[i] / (size_t)m->cfg.n_layer;
        if (per && lmf_param_per_layer(i)) queue_tensor(o->st, i, m->param_offsets[i] + (size_t)l * per, per);
    }
}

static void on_layer_done(void *ctx, int l) {
    overlap_state *o = ctx;
    if (o->err != LMF_OK) return;
    while (o->next >= l) queue_layer(o, o->next--);
    o->err = lmf_zero_progress(o->st->zero, o->st->model->grads);
}

static lmf_status overlap_finish(overlap_state *o) {
    lmf_model *m = o->st->model;
    LMF_TRY(o->err);
    o->overlapped = (double)o->st->zero->posted / (double)o->st->zero->n;
    if (m->lora) {
        if (o->st->sum && o->st->grad_accum > 1) lmf_grad_sum_range(o->st->sum, 0, m->num_params);
        lmf_zero_queue(o->st->zero, 0, m->num_params);
    } else {
        while (o->next >= 0) queue_layer(o, o->next--);
        for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++)
            if (m->param_sizes[i] && !lmf_param_per_layer(i))
                queue_tensor(o->st, i, m->param_offsets[i], m->param_sizes[i]);
    }
    return lmf_zero_finish(o->st->zero, m->grads);
}

void lmf_step_overlap_init(lmf_zero *z, const lmf_model *m) {
    /* the operands of one layer from every rank (a layer may lie whole in this rank's shard), at most 4 buckets a
     * rank; a span that does not fit waits for the next layer, or the end of the backward */
    size_t layer = 0, most = 4 * z->bucket;
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++)
        if (lmf_param_per_layer(i)) layer += m->param_sizes[i] / (size_t)m->cfg.n_layer;
    lmf_zero_overlap_init(z, (size_t)lmf_comm_size(z->comm) * (layer < most ? layer : most),
                          (size_t)(m->cfg.n_layer + 1) * LMF_NUM_PARAM_TENSORS);
}

lmf_status lmf_train_step(const lmf_step_ctx *st, const lmf_batch_source *src, float lr, lmf_step_result *out) {
    lmf_model *m = st->model;
    int B = st->batch_size, T = st->seq_len, k = st->grad_accum;
    /* micro-batches of the step over all ranks (a pipeline's stages share theirs) */
    int total = k * lmf_comm_size(st->comm) / (st->pipe ? st->pipe->p : 1) / (st->tp ? st->tp->size : 1);
    if (st->pipe) lmf_model_zero_grad(m); /* the stage's in-flight copies run the backward passes */
    else lmf_model_zero_grad_lazy(m);
    double loss = 0.0, pipe_s = 0.0, tp_s = st->tp ? st->tp->wait_s : 0.0;
    out->positions = st->pipe ? (long)k * B * T : 0;
    int overlap = st->zero && st->overlap;
    lmf_grad_sum *sum = k > 1 ? st->sum : NULL; /* NULL: inline, the products add into the gradients */
    LMF_CHECK(!sum || (sum->m == m && sum->k == k));
    overlap_state ov = {.st = st, .next = m->cfg.n_layer - 1, .err = LMF_OK};
    if (st->pipe) {
        st->pipe->layer_done = overlap ? on_layer_done : NULL, st->pipe->layer_done_ctx = &ov;
        st->pipe->sum = sum, st->pipe->sum_deferred = overlap;
        LMF_TRY(lmf_pipeline_step(st->pipe, src, st->inputs, st->targets, 1.0f / total, &loss, &pipe_s));
    }
    for (int a = 0; a < k && !st->pipe; a++) {
        LMF_TRY(src->next(src->ctx, st->inputs, st->targets));
        int Tb = src->seq_len ? src->seq_len(src->ctx) : T;
        LMF_CHECK(Tb >= 1 && Tb <= T);
        if (a > 0 && sum) lmf_model_zero_grad_lazy(m); /* each micro-batch's gradient on its own (grad_sum.h) */
        loss += lmf_model_forward(m, st->inputs, st->targets, B, Tb);
        out->positions += (long)B * Tb;
        if (overlap && a == k - 1) m->layer_done = on_layer_done, m->layer_done_ctx = &ov; /* the last: final */
        lmf_model_backward(m, 1.0f / total);
        m->layer_done = NULL;
        if (sum) lmf_grad_sum_add(sum, a, overlap);
    }
    if (st->tp && st->tp->rank > 0) { /* the group's first rank counts what every rank of it computed */
        if (!overlap) lmf_model_zero_replicated_grads(m); /* with overlap, as each span is queued */
        loss = 0.0;
    }
    float gnorm;
    out->comm_s = pipe_s + (st->tp ? st->tp->wait_s - tp_s : 0.0);
    if (st->zero) {
        lmf_zero *z = st->zero;
        /* comm_s counts the waits too (a fast rank's for a slow one): communication as the step sees it */
        double t = lmf_now();
        LMF_TRY(overlap ? overlap_finish(&ov) : lmf_zero_reduce_scatter(z, m->grads));
        out->overlapped = ov.overlapped;
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
