/* trainer.h — the pretraining run: the learning-rate schedule, batches from token shards, validation, atomic
 * checkpoints, exact resume, metrics JSONL, progress and a final text sample, around the training step of
 * train/step.h (forward/backward with gradient accumulation -> all-reduce -> clip -> AdamW).
 *
 * The run belongs to its caller: it prints nothing (lines, progress and the sample go to the caller's sink,
 * core/log.h), stops when the caller's flag says so (e.g. set by a signal handler), and exchanges gradients
 * through the caller's communicator (dist/comm.h). Several runs can live in one process, each with its own. */
#ifndef LMF_TRAIN_TRAINER_H
#define LMF_TRAIN_TRAINER_H

#include "core/log.h"
#include "dist/comm.h"
#include "io/checkpoint.h"
#include "train/train_config.h"

#include <signal.h>

/* How one run talks to its caller; every field may be NULL (a NULL options pointer means all NULL). */
typedef struct {
    /* Stop request for this run only: once *stop != 0 (async-signal-safe to set from a SIGINT/SIGTERM handler) the
     * run stops before its next step, writes a checkpoint and returns LMF_ERR_INTERRUPTED. NULL: never asked. */
    volatile sig_atomic_t *stop;
    /* Where the run reports: a banner, validation and checkpoint lines (log), step progress (progress, unit
     * "steps", status "loss .. lr .. gnorm .. tok/s"), and the final sample's text (text). NULL: silent. */
    const lmf_sink *sink;
    /* The job's data-parallel communicator; NULL: lmf_comm_self() (one process). With N > 1 ranks each rank takes
     * grad_accum / N of every step's micro-batches (grad_accum must divide), the optimizer state is sharded
     * (ZeRO-1, dist/zero.h), checkpoints are sets (io/checkpoint.h), and rank 0 alone reports, validates, writes
     * metrics and samples; every rank must call lmf_train_run with the same config (docs/distributed.md). */
    lmf_comm *comm;
    /* Pipeline parallel: the job's pipeline communicator (rank = stage, train/pipeline.h); NULL: none. comm is then
     * the whole job (data x pipeline ranks: ZeRO-1 and the checkpoint set span them all) and dp_rank / dp_size this
     * rank's data-parallel coordinates: the stages of one pipeline read the same micro-batches, grad_accum / dp_size
     * of every step. */
    lmf_comm *pipe;
    /* Tensor parallel (Megatron; model/block.h): the job's tensor-parallel communicator, NULL: none. As with pipe,
     * comm is then the whole job and dp_rank / dp_size this rank's data-parallel coordinates: the ranks of a
     * tensor-parallel group read the same micro-batches, each computing its share of every layer. */
    lmf_comm *tp;
    int dp_rank, dp_size;
    /* With ZeRO-1 (comm of several ranks): reduce each layer's gradients while the backward goes on
     * (dist/zero.h); the same bits as after it */
    int overlap;
    size_t bucket; /* ZeRO's bucket, floats a rank (dist/zero.h); 0: LMF_ZERO_BUCKET. The same bits in any size. */
    /* Pipeline parallel: every rank keeps the whole model's parameters and gradients (rank 0 validates and samples
     * the whole model itself); 0 (default): each stage holds only its own (docs/distributed.md) */
    int pp_full;
} lmf_train_options;

/* Runs training to cfg->opt.max_steps. With ck (a loaded checkpoint whose config text the caller has already
 * merged into cfg), continues from it exactly. Returns LMF_ERR_INTERRUPTED after writing a checkpoint when
 * opts->stop was raised or the step reached cfg->stop_at. */
lmf_status lmf_train_run(const lmf_train_config *cfg, const lmf_checkpoint *ck, const lmf_train_options *opts);

#endif
