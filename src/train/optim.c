/* optim.c — see optim.h. */
#include "train/optim.h"
#include "core/alloc.h"
#include "kernels/kernels.h"

#include <math.h>

float lmf_lr_at(int step, float lr, float min_lr, int warmup_steps, int max_steps) {
    if (step < warmup_steps) return lr * (float)(step + 1) / (float)warmup_steps;
    if (step >= max_steps) return min_lr;
    double ratio = (double)(step - warmup_steps) / (double)(max_steps - warmup_steps);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio));
    return (float)(min_lr + coeff * (lr - min_lr));
}

void lmf_adamw_init(lmf_adamw *opt, size_t n) { lmf_adamw_init_shard(opt, 0, n); }

void lmf_adamw_init_shard(lmf_adamw *opt, size_t lo, size_t n) {
    /* at least one float: an empty shard (more ranks than parameters) still has valid pointers */
    opt->m = lmf_alloc_big((n ? n : 1) * sizeof(float));
    opt->v = lmf_alloc_big((n ? n : 1) * sizeof(float));
    opt->n = n, opt->lo = lo;
    opt->t = 0;
}

void lmf_adamw_free(lmf_adamw *opt) {
    lmf_free_big(opt->m);
    lmf_free_big(opt->v);
    opt->m = opt->v = NULL;
}

float lmf_grad_norm(const lmf_model *m) { return (float)sqrt(lmf_sum_squares(m->grads, (long)m->num_params)); }

float lmf_adamw_step(lmf_adamw *opt, lmf_model *m, const lmf_adamw_hparams *hp, int step, float grad_norm) {
    float lr = lmf_lr_at(step, hp->lr, hp->min_lr, hp->warmup_steps, hp->max_steps);
    lmf_adamw_apply(opt, m, hp, lr, grad_norm);
    return lr;
}

static float clip_scale(const lmf_adamw_hparams *hp, float grad_norm) {
    float scale = 1.0f;
    if (hp->grad_clip > 0.0f) {
        float coef = hp->grad_clip / (grad_norm + 1e-6f);
        if (coef < 1.0f) scale = coef;
    }
    return scale;
}

void lmf_adamw_apply(lmf_adamw *opt, lmf_model *m, const lmf_adamw_hparams *hp, float lr, float grad_norm) {
    lmf_adamw_apply_range(opt, m, hp, lr, grad_norm);
}

void lmf_adamw_apply_range(lmf_adamw *opt, lmf_model *m, const lmf_adamw_hparams *hp, float lr, float grad_norm) {
    float scale = clip_scale(hp, grad_norm);
    opt->t++;
    size_t lo = opt->lo, hi = opt->lo + opt->n;
    if (m->lora) { /* adapters: one flat buffer, decayed alike (as torch's AdamW over PEFT's parameters) */
        lmf_adamw_update(m->params + lo, m->grads + lo, opt->m, opt->v, (long)opt->n, lr, hp->beta1, hp->beta2,
                         hp->eps, hp->weight_decay, scale, opt->t);
        return;
    }
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        /* the piece of tensor i inside [lo, hi) */
        size_t a = m->param_offsets[i], b = a + m->param_sizes[i];
        if (a < lo) a = lo;
        if (b > hi) b = hi;
        if (a >= b) continue;
        lmf_adamw_update(m->params + a, m->grads + a, opt->m + (a - lo), opt->v + (a - lo), (long)(b - a), lr,
                         hp->beta1, hp->beta2, hp->eps, lmf_param_decays(i) ? hp->weight_decay : 0.0f, scale, opt->t);
    }
}
