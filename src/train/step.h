/* step.h — one optimizer step of training, apart from the run around it.
 *
 *   grad_accum times: zero the gradients, next micro-batch (B x T) -> forward -> backward with loss scale
 *     1/(size x grad_accum), size the communicator's ranks (gradients add), so the sum over ranks is the mean over
 *     the step's micro-batches; the micro-batches' gradients added in core/sumtree.h's order (train/grad_sum.h), or
 *     inline (zeroed once, every backward adding into them)
 *   without ZeRO: all-reduce the gradients and the loss; global gradient norm -> clipping -> AdamW over the flat
 *     parameter / gradient buffers
 *   with ZeRO-1 (zero != NULL, dist/zero.h): reduce-scatter the gradients so this rank holds the sum of its shard;
 *     the squared norms of the shards and the losses summed over ranks -> global norm -> clipping -> AdamW over
 *     the shard with the shard's moments (opt sized by lmf_adamw_init_shard) -> all-gather the parameters
 *
 * With a pipeline (pipe != NULL) the forward / backward loop is the pipeline's 1F1B schedule over the micro-batches
 * instead, and the rest is the same.
 *
 * The run (trainer.c) owns everything else: the learning-rate schedule (it passes the lr in), where batches come
 * from, evaluation, checkpoints, resume, metrics and progress. Fine-tuning and data-parallel runs reuse this step
 * with their own batch source and communicator; each rank's source must yield that rank's own micro-batches.
 *
 * With size ranks each taking grad_accum micro-batches, a step sees the micro-batches of a single-process step with
 * grad_accum x size, each gradient scaled by the same factor, and adds them in the same tree when size is a power
 * of two (the ranks' sums are its top: comm.h), so data-parallel runs equal one process bit for bit then;
 * otherwise only the order of the additions differs. Nothing here allocates: scratch buffers come from the
 * caller. */
#ifndef LMF_TRAIN_STEP_H
#define LMF_TRAIN_STEP_H

#include "dist/comm.h"
#include "dist/zero.h"
#include "train/optim.h"

#include <stdint.h>

/* Where micro-batches come from: next() fills inputs and targets, B x T row-major each (targets -1: ignored). With
 * seq_len (not NULL) a micro-batch may be shorter: seq_len() says the T' <= T of the one next() just filled (its rows
 * T' apart), and the step runs it at that length (no pipeline: its stages pass activations of one shape). */
typedef struct {
    lmf_status (*next)(void *ctx, int32_t *inputs, int32_t *targets);
    void *ctx;
    int (*seq_len)(void *ctx);
} lmf_batch_source;

typedef struct {
    lmf_model *model;            /* created for training, max_batch >= batch_size, max_seq >= seq_len */
    lmf_adamw *opt;              /* moments sized for the model's parameters */
    const lmf_adamw_hparams *hp; /* beta1, beta2, eps, weight_decay, grad_clip (the lr is passed per step) */
    lmf_comm *comm;              /* lmf_comm_self() for one process; the data-parallel communicator */
    lmf_zero *zero;              /* NULL: every rank updates every parameter; else ZeRO-1 over comm */
    int batch_size, seq_len, grad_accum; /* grad_accum: this rank's micro-batches per step */
    int32_t *inputs, *targets; /* caller-owned scratch, batch_size * seq_len each */
    /* with grad_accum > 1: lmf_grad_sum_init(sum, model, grad_accum), the micro-batches' gradients added in its tree;
     * NULL: inline, every micro-batch's products adding into the gradients the previous ones left */
    struct lmf_grad_sum *sum;
    /* pipeline parallel (train/pipeline.h), NULL: none. comm (and zero) then span the data x pipeline ranks: each
     * stage's gradients fill only its own slots, so their sum over every rank is the whole gradient; grad_accum is
     * one pipeline's micro-batches per step, and the step's total is grad_accum x size / stages. */
    struct lmf_pipeline *pipe;
    /* tensor parallel (lmf_block_ctx.tp; the model's tp is this communicator), NULL: none. comm (and zero) span the
     * whole job; the ranks of a tensor-parallel group take the same micro-batches and each computes its share of the
     * sharded tensors' gradients; the replicated tensors' (lmf_param_tp_sharded) and the loss count on the group's
     * first rank only. The step's total is grad_accum x size / (stages x tp size). */
    struct lmf_block_tp *tp;
    /* with zero: reduce each layer's gradients as the backward passes it (dist/zero.h "Overlapped"), set up by
     * lmf_zero_overlap_init; the same bits as the reduction after the backward */
    int overlap;
} lmf_step_ctx;

typedef struct {
    double loss;     /* mean training loss over the step's micro-batches (all ranks) */
    float grad_norm; /* global L2 norm of the averaged gradients, before clipping */
    double comm_s;   /* seconds spent in the communicator's calls (0 for one process: they return at once) */
    double overlapped; /* with overlap: the share of this rank's gradient floats whose exchange began during the
                        * backward (the rest began after it: outside this rank's stage, or no room in the ring) */
    long positions;  /* token positions this rank's micro-batches ran (B x T each, or B x seq_len()) */
} lmf_step_result;

/* lmf_zero_overlap_init for st.overlap over m's layers (call after lmf_zero_init, before the first step). */
void lmf_step_overlap_init(lmf_zero *z, const lmf_model *m);

/* One optimizer step at learning rate lr. Errors come from the batch source or the communicator; the loss is
 * returned as computed, and judging it (e.g. not finite) is the caller's business. */
lmf_status lmf_train_step(const lmf_step_ctx *st, const lmf_batch_source *src, float lr, lmf_step_result *out);

#endif
