/* pipeline.h — one training step's forward and backward on one pipeline stage: the 1F1B schedule (dist/pipe.h)
 * executed over the model's layer ranges (lmf_model_forward_layers / lmf_model_backward_layers), with activations
 * and their gradients passed between neighbouring stages over the pipeline communicator (rank = stage).
 *
 * What this first version does and does not do (docs/distributed.md, "Pipeline parallel"):
 *   - the parameter and gradient buffers keep the whole model's layout; a stage computes only its layers (and the
 *     embeddings on the first stage, the final norm, head and loss on the last) and leaves the other slots of the
 *     gradient buffer zero, so the step's reduction over all ranks (ZeRO-1 over data x pipeline ranks) sums each
 *     stage's part into the full gradient; tied embeddings (the first stage's wte and the last stage's head) need no
 *     special case. The trainer maps those buffers sparse and backs only the stage's ranges and its ZeRO shard
 *     (model.h's lmf_model_partition, dist/zero.h "Partitioned"), so a stage holds its own parameters only.
 *   - a stage keeps one set of activations per micro-batch in flight (at most min(p - s, M)): the training
 *     model's own, and lmf_model_create_shared's for the stage's layers only.
 *   - a message is the B x T x C activations (or their gradient), followed for a mixture of experts by the router's
 *     running sums (moe.h's lmf_moe_sums): forward, each stage adds its layers' statistics; backward, the totals
 *     come back with the gradient so every stage's router gradients use the whole model's routing, as in one process.
 *
 * Ownership: lmf_pipeline_init borrows the communicator and the model (both must outlive the pipeline) and allocates
 * the extra activation sets and two message buffers; lmf_pipeline_free releases them. */
#ifndef LMF_TRAIN_PIPELINE_H
#define LMF_TRAIN_PIPELINE_H

#include "dist/comm.h"
#include "dist/pipe.h"
#include "model/model.h"
#include "train/step.h"

typedef struct lmf_pipeline {
    lmf_comm *comm;     /* the pipeline's ranks: rank = stage */
    int p, s, l0, l1;   /* stages, this stage, its layers */
    int M, B, T;        /* micro-batches per step, their shape */
    lmf_model **slots;  /* n_slots models: [0] the training model (borrowed), the rest sharing its parameters */
    int n_slots;
    char *sbuf, *rbuf;  /* one message each: act_floats floats, then the MoE sums */
    size_t act_floats, msg_bytes;
    lmf_pipe_op *ops;
    int n_ops;
    /* called after each layer of the step's last backward (lmf_model.layer_done): the step's overlapped reduction */
    void (*layer_done)(void *ctx, int layer);
    void *layer_done_ctx;
    /* with M > 1: each backward's gradient summed into the step's (train/grad_sum.h), sum_deferred as given there */
    struct lmf_grad_sum *sum;
    int sum_deferred;
} lmf_pipeline;

/* Stage comm->rank of comm->size for model m over M micro-batches of B x T per step. LMF_ERR_ARG when there are more
 * stages than layers. */
lmf_status lmf_pipeline_init(lmf_pipeline *pl, lmf_comm *comm, lmf_model *m, int B, int T, int M);
void lmf_pipeline_free(lmf_pipeline *pl); /* a zeroed pipeline is fine */
/* Runs this stage's part of one step: M micro-batches from src (every stage reads the same ones: the first needs the
 * tokens, the last the targets) forward and backward, adding into the model's gradients with loss_scale. *loss gets
 * the sum of the micro-batches' losses on the last stage and 0 on the others; *comm_s the seconds spent sending and
 * receiving (waits included). For a mixture of experts the model's lmf_model_moe_stats become the last
 * micro-batch's, over all layers, on every stage. */
lmf_status lmf_pipeline_step(lmf_pipeline *pl, const lmf_batch_source *src, int32_t *inputs, int32_t *targets,
                             float loss_scale, double *loss, double *comm_s);
/* Forward only (validation), through the stages in turn: n batches of B x T from src, each stage receiving the
 * previous one's output and sending its own on. *loss gets the sum of the batches' mean losses on the last stage
 * and 0 on the others: the same bits as one process's forward over the whole model. */
lmf_status lmf_pipeline_eval(lmf_pipeline *pl, const lmf_batch_source *src, int n, int32_t *inputs, int32_t *targets,
                             double *loss);

#endif
