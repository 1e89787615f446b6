/* pipeline.c — see pipeline.h. */
#include "train/pipeline.h"
#include "train/grad_sum.h"
#include "core/alloc.h"
#include "core/progress.h"
#include "core/status.h"

#include <string.h>

/* Activations go s -> s + 1 only and gradients s + 1 -> s only, in schedule order: one tag is unambiguous. */
#define PIPE_TAG 7301

lmf_status lmf_pipeline_init(lmf_pipeline *pl, lmf_comm *comm, lmf_model *m, int B, int T, int M) {
    memset(pl, 0, sizeof *pl);
    int p = lmf_comm_size(comm), s = lmf_comm_rank(comm), L = m->cfg.n_layer;
    if (p > L)
        return lmf_fail(LMF_ERR_ARG, "--pp %d: pipeline parallel needs at least one layer per stage, and the model has "
                        "n_layer = %d (use --pp %d or fewer, or more layers)", p, L, L);
    LMF_CHECK(M >= 1 && B <= m->max_batch && T <= m->max_seq);
    pl->comm = comm, pl->p = p, pl->s = s, pl->M = M, pl->B = B, pl->T = T;
    lmf_pipe_layers(L, p, s, &pl->l0, &pl->l1);
    pl->n_slots = lmf_pipe_in_flight(p, s, M);
    pl->slots = lmf_xcalloc((size_t)pl->n_slots, sizeof *pl->slots);
    pl->slots[0] = m;
    /* the extra sets in flight hold the stage's layers only; [0], the training model, holds what the trainer gave
     * it (all layers on rank 0 with --pp-full-params, which validates the whole model with it) */
    for (int i = 1; i < pl->n_slots; i++) pl->slots[i] = lmf_model_create_shared(m, pl->l0, pl->l1);
    pl->act_floats = (size_t)B * T * m->cfg.n_embd;
    pl->msg_bytes = pl->act_floats * sizeof(float) + (m->cfg.n_expert ? sizeof(lmf_moe_sums) : 0);
    pl->sbuf = lmf_alloc_big(pl->msg_bytes);
    pl->rbuf = lmf_alloc_big(pl->msg_bytes);
    pl->ops = lmf_xmalloc(sizeof(lmf_pipe_op) * (size_t)lmf_pipe_max_ops(M));
    pl->n_ops = lmf_pipe_schedule(p, s, M, pl->ops);
    return LMF_OK;
}

void lmf_pipeline_free(lmf_pipeline *pl) {
    for (int i = 1; i < pl->n_slots; i++) lmf_model_free(pl->slots[i]);
    free(pl->slots);
    lmf_free_big(pl->sbuf), lmf_free_big(pl->rbuf);
    free(pl->ops);
    memset(pl, 0, sizeof *pl);
}

/* The MoE sums travel after the floats; the byte offset need not suit doubles, so they are copied, never cast. */
static void sums_get(const lmf_pipeline *pl, const char *buf, lmf_moe_sums *out) {
    memcpy(out, buf + pl->act_floats * sizeof(float), sizeof *out);
}
static void sums_put(const lmf_pipeline *pl, char *buf, const lmf_moe_sums *in) {
    memcpy(buf + pl->act_floats * sizeof(float), in, sizeof *in);
}

lmf_status lmf_pipeline_step(lmf_pipeline *pl, const lmf_batch_source *src, int32_t *inputs, int32_t *targets,
                             float loss_scale, double *loss, double *comm_s) {
    int s = pl->s, first = s == 0, last = s == pl->p - 1, moe = pl->slots[0]->cfg.n_expert > 0;
    size_t nb = pl->msg_bytes;
    lmf_moe_sums sums;
    *loss = 0.0, *comm_s = 0.0;
    for (int k = 0; k < pl->n_ops; k++) {
        const lmf_pipe_op *op = &pl->ops[k];
        double t = lmf_now();
        lmf_status st = LMF_OK;
        switch (op->kind) {
        case LMF_PIPE_FWD: {
            lmf_model *m = pl->slots[op->mb % pl->n_slots]; /* free: the schedule finished mb - n_slots's backward */
            LMF_TRY(src->next(src->ctx, inputs, targets));
            if (moe && !first) sums_get(pl, pl->rbuf, &sums);
            float l = lmf_model_forward_layers(m, inputs, targets, pl->B, pl->T, pl->l0, pl->l1,
                                               first ? NULL : (const float *)pl->rbuf, moe ? &sums : NULL);
            if (last) *loss += l; /* in micro-batch order, as one process adds them */
            else memcpy(pl->sbuf, lmf_model_layer_output(m, pl->l1 - 1), pl->act_floats * sizeof(float));
            if (!last && moe) sums_put(pl, pl->sbuf, &sums);
            continue;
        }
        case LMF_PIPE_BWD: {
            lmf_model *m = pl->slots[op->mb % pl->n_slots];
            const lmf_moe_sums *tot = NULL; /* the router sums over all layers: the last stage's own forward's */
            if (moe) {
                if (last) sums = m->moe_sums;
                else sums_get(pl, pl->rbuf, &sums);
                tot = &sums;
            }
            if (op->mb == pl->M - 1) /* the stage's last backward: its gradients become final layer by layer */
                m->layer_done = pl->layer_done, m->layer_done_ctx = pl->layer_done_ctx;
            if (pl->sum && op->mb > 0) lmf_model_zero_grad(pl->slots[0]); /* the in-flight sets share its gradients */
            lmf_model_backward_layers(m, loss_scale, last ? NULL : (const float *)pl->rbuf, tot);
            m->layer_done = NULL;
            if (pl->sum) lmf_grad_sum_add(pl->sum, op->mb, pl->sum_deferred);
            if (!first) memcpy(pl->sbuf, lmf_model_input_grad(m), pl->act_floats * sizeof(float));
            if (!first && moe) sums_put(pl, pl->sbuf, &sums);
            if (moe && op->mb == pl->M - 1) { /* the step's statistics are its last micro-batch's, as in one process */
                lmf_model *o = pl->slots[0];
                lmf_moe_stats *ms = &o->moe_stats;
                lmf_moe_losses_of(&o->cfg, pl->B * pl->T, &sums, &ms->aux, &ms->z, ms->load, &ms->dropped, 0.0f, NULL);
            }
            continue;
        }
        case LMF_PIPE_RECV_ACT: st = lmf_comm_recv(pl->comm, pl->rbuf, nb, s - 1, PIPE_TAG); break;
        case LMF_PIPE_SEND_ACT: st = lmf_comm_send(pl->comm, pl->sbuf, nb, s + 1, PIPE_TAG); break;
        case LMF_PIPE_RECV_GRAD: st = lmf_comm_recv(pl->comm, pl->rbuf, nb, s + 1, PIPE_TAG); break;
        case LMF_PIPE_SEND_GRAD: st = lmf_comm_send(pl->comm, pl->sbuf, nb, s - 1, PIPE_TAG); break;
        case LMF_PIPE_SEND_ACT_RECV_GRAD:
            st = lmf_comm_sendrecv(pl->comm, pl->sbuf, nb, s + 1, pl->rbuf, nb, s + 1, PIPE_TAG);
            break;
        case LMF_PIPE_SEND_GRAD_RECV_ACT:
            st = lmf_comm_sendrecv(pl->comm, pl->sbuf, nb, s - 1, pl->rbuf, nb, s - 1, PIPE_TAG);
            break;
        default: LMF_CHECK(0);
        }
        *comm_s += lmf_now() - t;
        if (st != LMF_OK) return st;
    }
    return LMF_OK;
}

lmf_status lmf_pipeline_eval(lmf_pipeline *pl, const lmf_batch_source *src, int n, int32_t *inputs, int32_t *targets,
                             double *loss) {
    int s = pl->s, first = s == 0, last = s == pl->p - 1, moe = pl->slots[0]->cfg.n_expert > 0;
    lmf_model *m = pl->slots[0];
    lmf_moe_sums sums;
    *loss = 0.0;
    /* one way only: a stage waits for the previous one, never the other way round, so plain sends cannot deadlock */
    for (int i = 0; i < n; i++) {
        LMF_TRY(src->next(src->ctx, inputs, targets));
        if (!first) LMF_TRY(lmf_comm_recv(pl->comm, pl->rbuf, pl->msg_bytes, s - 1, PIPE_TAG));
        if (moe && !first) sums_get(pl, pl->rbuf, &sums);
        float l = lmf_model_forward_layers(m, inputs, targets, pl->B, pl->T, pl->l0, pl->l1,
                                           first ? NULL : (const float *)pl->rbuf, moe ? &sums : NULL);
        m->has_targets = 0; /* no backward follows */
        if (last) {
            *loss += l;
            continue;
        }
        memcpy(pl->sbuf, lmf_model_layer_output(m, pl->l1 - 1), pl->act_floats * sizeof(float));
        if (moe) sums_put(pl, pl->sbuf, &sums);
        LMF_TRY(lmf_comm_send(pl->comm, pl->sbuf, pl->msg_bytes, s + 1, PIPE_TAG));
    }
    return LMF_OK;
}
