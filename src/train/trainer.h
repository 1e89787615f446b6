/* trainer.h — the pretraining loop: data -> forward/backward (with gradient accumulation) -> clip -> AdamW,
 * with validation, atomic checkpoints, exact resume, metrics JSONL, a progress bar and a final text sample. */
#ifndef LMF_TRAIN_TRAINER_H
#define LMF_TRAIN_TRAINER_H

#include "io/checkpoint.h"
#include "train/train_config.h"

/* Runs training to cfg->opt.max_steps. With ck (a loaded checkpoint whose config text the caller has already
 * merged into cfg), continues from it exactly. Returns LMF_ERR_INTERRUPTED after writing a checkpoint when
 * lmf_request_stop() was called. */
lmf_status lmf_train_run(const lmf_train_config *cfg, const lmf_checkpoint *ck);

#endif
