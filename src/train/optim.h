/* optim.h — AdamW over the model's flat parameter buffer, with global-norm gradient clipping and the
 * warmup + cosine learning-rate schedule. Weight decay applies per tensor (lmf_param_decays): matrices only. */
#ifndef LMF_TRAIN_OPTIM_H
#define LMF_TRAIN_OPTIM_H

#include "model/model.h"

typedef struct {
    float lr, min_lr;
    int warmup_steps, max_steps;
    float beta1, beta2, eps, weight_decay;
    float grad_clip; /* <= 0: no clipping */
} lmf_adamw_hparams;

typedef struct {
    float *m, *v; /* first and second moments, one float per parameter of [lo, lo + n) */
    size_t n, lo; /* lo > 0 or n < num_params: a ZeRO-1 shard (dist/zero.h) */
    int t;        /* updates applied so far */
} lmf_adamw;

void lmf_adamw_init(lmf_adamw *opt, size_t n);
void lmf_adamw_free(lmf_adamw *opt);
/* Global L2 norm of the gradients (before clipping). */
float lmf_grad_norm(const lmf_model *m);
/* One update at 0-based `step`: clips (coef = clip / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_), then
 * AdamW at lmf_lr_at(step). Returns the lr used. */
float lmf_adamw_step(lmf_adamw *opt, lmf_model *m, const lmf_adamw_hparams *hp, int step, float grad_norm);
/* The same update at a learning rate the caller chose (its own schedule); hp->lr, min_lr, warmup_steps and
 * max_steps are not read. lmf_adamw_step(step) == lmf_adamw_apply(lmf_lr_at(step, ...)). */
void lmf_adamw_apply(lmf_adamw *opt, lmf_model *m, const lmf_adamw_hparams *hp, float lr, float grad_norm);
/* The moments of parameters [lo, lo + n) only (ZeRO-1: this rank's shard). */
void lmf_adamw_init_shard(lmf_adamw *opt, size_t lo, size_t n);
/* The update of opt's range [opt->lo, opt->lo + opt->n) of the model's parameters, each tensor's piece with its own
 * weight decay (a LoRA model's adapters: one buffer, all decayed); the other parameters are not touched. Over the
 * whole buffer it is lmf_adamw_apply exactly. */
void lmf_adamw_apply_range(lmf_adamw *opt, lmf_model *m, const lmf_adamw_hparams *hp, float lr, float grad_norm);

#endif
