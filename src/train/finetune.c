/* finetune.c — see finetune.h. */
#include "train/finetune.h"

#include "core/alloc.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/status.h"
#include "dist/grid.h"
#include "dist/zero.h"
#include "io/gguf.h"
#include "io/checkpoint.h"
#include "kernels/gemm.h"
#include "model/head_loss.h"
#include "model/export.h"
#include "model/lora.h"
#include "model/lora_io.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/sft.h"
#include "train/grad_sum.h"
#include "train/step.h"

#include <math.h>
#include <stdarg.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmf_finetune_defaults(lmf_finetune_config *c) {
    memset(c, 0, sizeof *c);
    c->val_fraction = 0.1;
    c->lora_r = 16, c->lora_alpha = 32.0f, c->lora_dropout = 0.1f, c->lora_targets = NULL;
    c->batch_size = 4, c->seq_len = 512, c->grad_accum = 1, c->epochs = 1;
    c->warmup_steps = 10, c->eval_every = 50, c->eval_batches = 0, c->checkpoint_every = 0, c->keep_checkpoints = 2;
    c->lr = 2e-4f, c->min_lr = 2e-5f, c->weight_decay = 0.0f, c->grad_clip = 1.0f;
    c->seed = 1337;
}

/* The options that fix the trainable parameters' layout, the data order and the arithmetic: a checkpoint must match
 * them. (bf16, packing, grouping by length, an inline gradient sum and the fused loss add a line each, so the runs
 * without them read the checkpoints written before they existed.) */
static char *config_text(const lmf_finetune_config *c, const char *targets, int bf16, int fused) {
    char *t = lmf_xmalloc(2048);
    int n = snprintf(t, 2048,
             "finetune = 1\nmodel = %s\nfull = %d\nlora_r = %d\nlora_alpha = %.9g\nlora_dropout = %.9g\n"
             "use_rslora = %d\nlora_targets = %s\nbatch_size = %d\nseq_len = %d\ngrad_accum = %d\nseed = %llu\n",
             c->model, c->full, c->lora_r, c->lora_alpha, c->lora_dropout, c->use_rslora,
             c->full ? "" : targets, c->batch_size, c->seq_len, c->grad_accum, (unsigned long long)c->seed);
    if (bf16 && n > 0 && n < 2000) n += snprintf(t + n, 2048 - (size_t)n, "precision = bf16\n");
    if (c->packing && n > 0 && n < 2000) n += snprintf(t + n, 2048 - (size_t)n, "packing = 1\n");
    if (c->group_by_length && n > 0 && n < 2000) n += snprintf(t + n, 2048 - (size_t)n, "group_by_length = 1\n");
    if (c->grad_sum_inline && n > 0 && n < 2000) n += snprintf(t + n, 2048 - (size_t)n, "grad_sum = inline\n");
    if (fused && n > 0 && n < 2000) snprintf(t + n, 2048 - (size_t)n, "loss = fused\n");
    return t;
}

/* The memory a run will hold at batch B x T (a LoRA model holds no parameters of its own: an over-count), with
 * the head's loss over slabs (fused) or over kept logits. */
static double run_bytes(const lmf_finetune_config *c, const lmf_weights *w, int B, int T, int fused) {
    double P = lmf_param_count(&w->cfg), N = (double)B * T;
    double need = lmf_model_bytes(&w->cfg, B, T, c->full) + (c->full ? 2.0 * P * sizeof(float) : 0.0);
    if (fused) /* the slabs' buffers instead of the logits */
        need += lmf_head_loss_bytes(&w->cfg, N, w->lm_head.type != LMF_GGML_F32 && !c->full) -
                N * w->cfg.vocab_size * sizeof(float);
    return need;
}

/* Whether a checkpoint's config text (padded with newlines to 8 bytes) is ours. */
static int same_text(const char *saved, const char *ours) {
    size_t n = strlen(ours);
    if (strncmp(saved, ours, n)) return 0;
    while (saved[n] == '\n') n++;
    return saved[n] == 0;
}

/* The training batches: the SFT loader, and each micro-batch advances the adapters' dropout step; packed rows hand
 * the model their positions for the forward and backward that follow. Data parallel: this rank's micro-batch j of
 * a step is the step's micro-batch rank kr + j of k (kr = k / ranks); the others' are read and passed over, so the
 * data order and every micro-batch's dropout are one process's. */
typedef struct {
    lmf_sft_loader *ld;
    lmf_lora *lora;
    lmf_model *m;
    int rank, k, kr;
    long calls, read; /* this rank's micro-batches so far; the loader's */
} source;

static lmf_status read_batch(source *s, int32_t *tok, int32_t *tg) {
    if (s->lora) s->lora->step++;
    s->read++;
    lmf_status st = lmf_sft_loader_next(s->ld, tok, tg);
    if (st == LMF_OK && s->ld->pack) lmf_model_set_positions(s->m, s->ld->positions, s->ld->B, s->ld->T);
    return st;
}

static int batch_len(void *ctx) { return ((source *)ctx)->ld->last_T; }

static lmf_status next_batch(void *ctx, int32_t *tok, int32_t *tg) {
    source *s = ctx;
    long at = s->calls / s->kr * s->k + (long)s->rank * s->kr + s->calls % s->kr; /* in one process's order */
    s->calls++;
    while (s->read < at) LMF_TRY(read_batch(s, tok, tg));
    return read_batch(s, tok, tg);
}

/* Mean loss over the validation set (every example once, in order, no dropout) into *loss. Over several ranks batch
 * b is rank b mod size's; the batches' sums reach every rank in place (the others' zeros add nothing) and are added
 * in batch order, so the mean is one process's bit for bit. */
static lmf_status evaluate(lmf_model *m, lmf_lora *lora, const lmf_sft_data *val, int B, int T, int max_batches,
                           int32_t *tok, int32_t *tg, lmf_comm *comm, double *loss) {
    size_t nb = (val->n + (size_t)B - 1) / (size_t)B;
    if (max_batches > 0 && nb > (size_t)max_batches) nb = (size_t)max_batches;
    size_t *rows = lmf_xmalloc(sizeof(size_t) * (size_t)B);
    double *part = lmf_xcalloc(2 * nb + 1, sizeof(double)); /* per batch: loss x tokens, tokens */
    float dropout = lora ? lora->dropout : 0.0f;
    if (lora) lora->dropout = 0.0f;
    lmf_model_set_positions(m, NULL, 0, 0); /* validation rows hold one example each */
    for (size_t j = (size_t)lmf_comm_rank(comm); j < nb; j += (size_t)lmf_comm_size(comm)) {
        size_t i = j * (size_t)B;
        for (int b = 0; b < B; b++) rows[b] = i + (size_t)b < val->n ? i + (size_t)b : SIZE_MAX;
        int Tb = lmf_sft_batch_len(val, rows, B, T); /* the longest example's length: the same targets */
        size_t n = lmf_sft_batch(val, rows, B, Tb, tok, tg);
        if (n) part[2 * j] = (double)lmf_model_eval_loss(m, tok, tg, B, Tb) * (double)n, part[2 * j + 1] = (double)n;
    }
    if (lora) lora->dropout = dropout;
    lmf_status s = lmf_comm_allreduce_sum_f64(comm, part, 2 * nb);
    double sum = 0, count = 0;
    for (size_t j = 0; j < nb; j++)
        if (part[2 * j + 1] > 0) sum += part[2 * j], count += part[2 * j + 1];
    *loss = count > 0 ? sum / count : NAN;
    free(rows), free(part);
    return s;
}

/* metrics.jsonl's line, written by rank 0 (the others hold no open log) */
static lmf_status metric(lmf_line_log *l, const char *fmt, ...) {
    if (!l->f) return LMF_OK;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return lmf_line_log_printf(l, "%s", line);
}

/* The checkpoint: rank 0 writes it, the AdamW moments gathered from every rank's ZeRO-1 shard (the same file one
 * process writes, read back by any number of ranks). */
static lmf_status save_checkpoint(lmf_comm *comm, const char *path, const char *text, int step, const lmf_adamw *opt,
                                  const lmf_model *m) {
    int D = lmf_comm_size(comm), r = lmf_comm_rank(comm);
    if (D == 1)
        return lmf_checkpoint_save(path, text, (uint64_t)step, 0, 0, (uint64_t)opt->t, m->params, opt->m, opt->v,
                                   m->num_params);
    if (r > 0) {
        lmf_status s = lmf_comm_send(comm, opt->m, opt->n * sizeof(float), 0, 1);
        return s == LMF_OK ? lmf_comm_send(comm, opt->v, opt->n * sizeof(float), 0, 2) : s;
    }
    float *mm = lmf_xmalloc(m->num_params * sizeof(float)), *vv = lmf_xmalloc(m->num_params * sizeof(float));
    memcpy(mm + opt->lo, opt->m, opt->n * sizeof(float)), memcpy(vv + opt->lo, opt->v, opt->n * sizeof(float));
    lmf_status s = LMF_OK;
    for (int q = 1; q < D && s == LMF_OK; q++) {
        size_t lo, hi;
        lmf_zero_range(m->num_params, D, q, &lo, &hi);
        s = lmf_comm_recv(comm, mm + lo, (hi - lo) * sizeof(float), q, 1);
        if (s == LMF_OK) s = lmf_comm_recv(comm, vv + lo, (hi - lo) * sizeof(float), q, 2);
    }
    if (s == LMF_OK)
        s = lmf_checkpoint_save(path, text, (uint64_t)step, 0, 0, (uint64_t)opt->t, m->params, mm, vv, m->num_params);
    free(mm), free(vv);
    return s;
}

/* What rank 0 did alone (choose the checkpoint to resume, open the metrics file) reaches the others, so that they
 * stop with it when it failed. */
static lmf_status lead_status(lmf_comm *comm, lmf_status s) {
    int code = s;
    if (lmf_comm_size(comm) == 1) return s;
    lmf_status cs = lmf_comm_broadcast(comm, &code, sizeof code, 0);
    if (cs != LMF_OK) return cs;
    if (lmf_comm_rank(comm) == 0 || code == LMF_OK) return s;
    return lmf_fail((lmf_status)code, "finetune: rank 0 failed (its message says why)");
}

lmf_status lmf_finetune_run(const lmf_finetune_config *c, volatile sig_atomic_t *stop, const lmf_sink *sink) {
    lmf_status s = LMF_OK;
    lmf_grid *grid = NULL;
    lmf_zero zero = {0};
    lmf_weights *w = NULL;
    lmf_sft_vocab voc = {0};
    lmf_sft_data train = {0}, val = {0};
    lmf_sft_loader ld = {0};
    lmf_lora *lora = NULL;
    lmf_model *m = NULL;
    lmf_adamw opt = {0};
    lmf_grad_sum gsum = {0};
    lmf_line_log metrics = {0};
    /* bf16 products (LoRA: the frozen base's and attention's; full: every weight's and attention's, mixed precision
     * as pretraining has it) where they are faster (measured: lmf_sgemm_bf16_rate), or when asked */
    int bf16 = c->precision == LMF_PRECISION_BF16 || (c->precision == LMF_PRECISION_AUTO && lmf_sgemm_bf16_pays());
    char *text = NULL, path[1200];
    int32_t *tok = NULL, *tg = NULL;
    int B = c->batch_size, T = c->seq_len, step = 0;
    if (B < 1 || T < 2 || c->grad_accum < 1 || !(c->lr > 0) || c->keep_checkpoints < 1)
        return lmf_fail(LMF_ERR_ARG, "finetune: batch_size, seq_len >= 2, grad_accum, lr and keep_checkpoints must "
                        "be positive (got %d, %d, %d, %g, %d)", B, T, c->grad_accum, c->lr, c->keep_checkpoints);
    if (c->packing && c->group_by_length)
        return lmf_fail(LMF_ERR_ARG, "finetune: --group-by-length groups padded batches; packed rows are full already "
                        "(use one or the other)");
    if ((s = lmf_grid_open(c->comm ? c->comm : "auto", 0, 1, 1, &grid)) != LMF_OK) return s;
    lmf_comm *comm = grid->world;
    int D = comm->size, lead = comm->rank == 0;
    const lmf_sink *out = lead ? sink : NULL; /* rank 0 reports for all */
    /* auto's choice is a measurement on each rank's CPU: every rank takes rank 0's, as train does */
    if (D > 1 && (s = lmf_comm_broadcast(comm, &bf16, sizeof bf16, 0)) != LMF_OK) goto done;
    if (c->grad_accum % D) {
        s = lmf_fail(LMF_ERR_ARG, "finetune: --grad-accum %d is not a multiple of the %d ranks (each rank takes "
                     "grad_accum / ranks micro-batches of a step)", c->grad_accum, D);
        goto done;
    }
    if (c->threads > 0) {
        omp_set_num_threads(c->threads);
    } else if (D > 1) { /* this host's ranks share its cores rather than each start one thread per core */
        int per = omp_get_num_procs() / lmf_comm_local_size();
        omp_set_num_threads(per > 1 ? per : 1);
    }
    if (D > 1)
        lmf_sink_logf(out, LMF_LOG_INFO, "finetune: data parallel over %d ranks, %d micro-batch%s a step each%s", D,
                      c->grad_accum / D, c->grad_accum / D > 1 ? "es" : "",
                      c->overlap_grad_reduce ? "; gradients reduced during the backward" : "");
    if ((s = lmf_mkdir_p(c->out_dir)) != LMF_OK) goto done;
    if ((s = lmf_weights_load(c->model, &w)) != LMF_OK) goto done;
    const char *targets = c->lora_targets ? c->lora_targets : lmf_lora_default_targets(&w->cfg);
    if (T > w->cfg.max_seq_len) T = w->cfg.max_seq_len;
    double have = lmf_mem_physical(), need[2] = {run_bytes(c, w, B, T, 0), run_bytes(c, w, B, T, 1)};
    int here = D > 1 ? lmf_comm_local_size() : 1; /* this host's ranks each hold a whole copy */
    /* auto: fused under LoRA (a frozen head costs the same products); --full keeps the logits (its fused head makes
     * them once more for the weight gradient) where the run fits with them. Every rank takes rank 0's choice. */
    int fused = c->loss == LMF_LOSS_FUSED ||
                (c->loss == LMF_LOSS_AUTO && (!c->full || (have > 0 && need[0] * here > have)));
    if (D > 1 && (s = lmf_comm_broadcast(comm, &fused, sizeof fused, 0)) != LMF_OK) goto done;
    text = config_text(c, targets, bf16, fused);
    if ((s = lmf_sft_vocab_from_weights(w, &voc)) != LMF_OK) goto done;
    if (c->chat_template && (s = lmf_sft_vocab_set_template(&voc, w, c->chat_template)) != LMF_OK) goto done;
    lmf_sft_options so = {.max_tokens = T, .refuse_long = c->refuse_long, .train_on_prompt = c->train_on_prompt};
    if ((s = lmf_sft_load(&train, c->data, &voc, &so)) != LMF_OK) goto done;
    if (c->val_data) s = lmf_sft_load(&val, c->val_data, &voc, &so);
    else if (c->val_fraction > 0) s = lmf_sft_split(&train, c->val_fraction, c->seed, &val);
    if (s != LMF_OK) goto done;
    lmf_sink_logf(out, LMF_LOG_INFO, "finetune: %zu training examples (%zu tokens, %zu in the loss; %zu truncated, "
                  "%zu dropped), %zu validation", train.n, train.stats.n_tokens, train.stats.n_loss_tokens,
                  train.stats.n_truncated, train.stats.n_dropped, val.n);

    if (have > 0 && need[fused] * here > have) { /* refuse what cannot fit before allocating it */
        s = lmf_fail(LMF_ERR_ARG, "finetune: this run needs about %.1f GiB of memory (%s at batch %d x seq %d%s) "
                     "but the machine has %.1f GiB: reduce --batch-size or --seq-len%s", need[fused] * here /
                     1073741824.0, c->full ? "weights, gradients, AdamW moments and activations" : "activations", B,
                     T, here > 1 ? ", for each of this host's ranks" : "", have / 1073741824.0,
                     fused ? "" : ", or let --loss fused drop the logits");
        goto done;
    }
    if (c->full) {
        s = lmf_model_from_weights(w, B, T, 1, &m);
    } else {
        s = lmf_lora_create(&w->cfg, targets, c->lora_r, c->lora_alpha, c->lora_dropout, c->use_rslora,
                            &lora);
        if (s == LMF_OK) {
            lmf_lora_init(lora, c->seed);
            lora->seed = c->seed;
            s = lmf_model_create_lora(w, lora, B, T, &m);
        }
    }
    if (s != LMF_OK) goto done;
    if ((s = lmf_sft_loader_init(&ld, &train, B, T, c->seed, 1)) != LMF_OK) goto done;
    if (c->packing) lmf_sft_loader_pack(&ld);
    else ld.trim = 1; /* a padded batch runs at its longest example's length */
    if (c->group_by_length) lmf_sft_loader_group(&ld);
    size_t epoch_rows = lmf_sft_loader_epoch_rows(&ld);
    int steps_per_epoch = (int)((epoch_rows + (size_t)B * c->grad_accum - 1) / ((size_t)B * c->grad_accum));
    int max_steps = c->max_steps > 0 ? c->max_steps : c->epochs * steps_per_epoch;
    if (c->packing)
        lmf_sink_logf(out, LMF_LOG_INFO, "finetune: packing %zu examples into %zu rows of %d tokens a pass (%.0f%% "
                      "of the rows padding would use)", train.n, epoch_rows, T, 100.0 * (double)epoch_rows /
                      (double)train.n);
    if (D > 1) { /* ZeRO-1: each rank updates its shard with its own moments, then the ranks share the shards */
        lmf_zero_init(&zero, comm, m->num_params, c->ddp_bucket > 0 ? (size_t)c->ddp_bucket : 0);
        if (c->overlap_grad_reduce) lmf_step_overlap_init(&zero, m);
        lmf_adamw_init_shard(&opt, zero.lo, zero.hi - zero.lo);
    } else {
        lmf_adamw_init(&opt, m->num_params);
    }
    lmf_adamw_hparams hp = {.lr = c->lr, .min_lr = c->min_lr, .warmup_steps = c->warmup_steps,
                            .max_steps = max_steps, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                            .weight_decay = c->weight_decay, .grad_clip = c->grad_clip};
    tok = lmf_xmalloc(sizeof(int32_t) * (size_t)B * T), tg = lmf_xmalloc(sizeof(int32_t) * (size_t)B * T);
    source src_ctx = {&ld, lora, m, comm->rank, c->grad_accum, c->grad_accum / D, 0, 0};

    if (c->resume) { /* the newest checkpoint: parameters, moments, and the data / dropout position it reached */
        lmf_checkpoint ck;
        char note[2048];
        /* rank 0 chooses (and sets a damaged newest checkpoint aside) before the others look */
        if (lead) s = lmf_checkpoint_load_latest(c->out_dir, 1, &ck, note, sizeof note);
        if ((s = lead_status(comm, s)) != LMF_OK) goto done;
        if (!lead && (s = lmf_checkpoint_load_latest(c->out_dir, 1, &ck, note, sizeof note)) != LMF_OK) goto done;
        const char *ckp = ck.path;
        if (note[0]) lmf_sink_logf(out, LMF_LOG_WARN, "skipped damaged checkpoint: %s; resuming from %s", note, ckp);
        /* a resumed run keeps the precision and the loss it started with where this one left them to auto */
        for (int k = 1; k < 4 && !same_text(ck.config_text, text); k++) {
            int b = k & 1 ? !bf16 : bf16, f = k & 2 ? !fused : fused;
            if ((b != bf16 && c->precision != LMF_PRECISION_AUTO) || (f != fused && c->loss != LMF_LOSS_AUTO)) continue;
            char *other = config_text(c, targets, b, f);
            if (same_text(ck.config_text, other)) free(text), text = other, other = NULL, bf16 = b, fused = f;
            free(other);
        }
        if (!same_text(ck.config_text, text) || ck.num_params != m->num_params)
            s = lmf_fail(LMF_ERR_MISMATCH, "%s: written by a fine-tuning run with other options (model, LoRA shape, "
                         "batch, seed, precision, packing, grouping or loss) than this one", ckp);
        else if (ck.step > (uint64_t)max_steps) /* the data position is replayed batch by batch: bound it first */
            s = lmf_fail(LMF_ERR_MISMATCH, "%s: header field step = %llu is past this run's %d steps", ckp,
                         (unsigned long long)ck.step, max_steps);
        if (s == LMF_OK) {
            memcpy(m->params, ck.params, m->num_params * sizeof(float));
            if (!ck.m) { /* a data-parallel pretraining set: its moments are in shards finetune does not read */
                s = lmf_fail(LMF_ERR_MISMATCH, "%s: a data-parallel checkpoint set of `lmforge train`, not a "
                             "fine-tuning checkpoint", ck.path);
                lmf_checkpoint_free(&ck);
                goto done;
            }
            memcpy(opt.m, ck.m + opt.lo, opt.n * sizeof(float)); /* this rank's shard of them */
            memcpy(opt.v, ck.v + opt.lo, opt.n * sizeof(float));
            opt.t = (int)ck.adam_t, step = (int)ck.step;
            for (long k = 0; k < (long)step * src_ctx.kr && s == LMF_OK; k++) s = next_batch(&src_ctx, tok, tg);
            lmf_sink_logf(out, LMF_LOG_INFO, "finetune: resuming from %s (step %d)", ckp, step);
        }
        lmf_checkpoint_free(&ck);
        if (s != LMF_OK) goto done;
    }
    lmf_model_set_bf16(m, bf16);
    lmf_model_set_fused_loss(m, fused);
    { /* what the run holds, the bound on peak memory (the base file is mapped; full runs also copy it) */
        double mib = 1.0 / (1 << 20), params = 2.0 * sizeof(float) * m->num_params * mib; /* values + gradients */
        double base = (double)w->file_bytes * mib, acts = (double)m->work_bytes * mib;
        double adam = 2.0 * sizeof(float) * opt.n * mib; /* over several ranks: this rank's ZeRO-1 shard */
        /* the micro-batches' partial sums (train/grad_sum.h) count with the gradients */
        double sums = lmf_grad_sum_bytes(c->grad_sum_inline ? 1 : src_ctx.kr, (double)m->num_params) * mib;
        lmf_sink_logf(out, LMF_LOG_INFO, "finetune: memory: base file %.0f MiB, %s + gradients%s %.1f MiB, AdamW "
                      "%.1f MiB, activations %.0f MiB (+ 64 MiB: bound %.0f MiB)", base, c->full ? "parameters" :
                      "adapters", sums > 0 ? " + partial sums" : "", params + sums, adam, acts,
                      base + params + sums + adam + acts + 64);
    }
    lmf_sink_logf(out, LMF_LOG_INFO, "finetune: %s products in %s (%s)", c->full ? "linear" : "frozen base",
                  bf16 ? "bf16" : "fp32", lmf_sgemm_bf16_note());
    if (fused)
        lmf_sink_logf(out, LMF_LOG_INFO, "finetune: loss over vocabulary slabs of %d rows (no %d x %d x %d logits)",
                      m->hl->slab, B, T, w->cfg.vocab_size);
    else lmf_sink_logf(out, LMF_LOG_INFO, "finetune: loss over kept logits");
    int stale = lead ? lmf_checkpoint_remove_stale(c->out_dir) : 0;
    if (stale)
        lmf_sink_logf(out, LMF_LOG_WARN, "%s: removed %d unfinished checkpoint file%s (*.lmfc.tmp) of an interrupted "
                      "save", c->out_dir, stale, stale > 1 ? "s" : "");
    snprintf(path, sizeof path, "%s/metrics.jsonl", c->out_dir);
    if (lead) s = lmf_line_log_open(&metrics, path, c->resume);
    if ((s = lead_status(comm, s)) != LMF_OK) goto done;
    lmf_grad_sum_init(&gsum, m, c->grad_sum_inline ? 1 : src_ctx.kr);
    lmf_step_ctx sc = {.model = m, .opt = &opt, .hp = &hp, .comm = comm, .zero = D > 1 ? &zero : NULL,
                       .batch_size = B, .seq_len = T,
                       .grad_accum = src_ctx.kr, .inputs = tok, .targets = tg,
                       .sum = c->grad_sum_inline ? NULL : &gsum, .overlap = c->overlap_grad_reduce};
    lmf_batch_source src = {next_batch, &src_ctx, batch_len};
    double val_loss = NAN;
    if (val.n && step == 0) {
        if ((s = evaluate(m, lora, &val, B, T, c->eval_batches, tok, tg, comm, &val_loss)) != LMF_OK) goto done;
        if ((s = metric(&metrics, "{\"step\":0,\"val_loss\":%.9g}\n", val_loss)) != LMF_OK) goto done;
        lmf_sink_logf(out, LMF_LOG_INFO, "validation loss before fine-tuning: %.4f", val_loss);
    }
    lmf_sink_progress(out, LMF_PROGRESS_BEGIN, step, max_steps, "steps", NULL);
    long ran = 0, rows = 0; /* this rank's positions run, and its rows: a padded batch's length on average */
    for (; step < max_steps; step++) {
        double halt = stop && *stop; /* ranks stop together: any rank's signal stops all */
        if (D > 1 && (s = lmf_comm_allreduce_sum_f64(comm, &halt, 1)) != LMF_OK) break;
        if (halt > 0) break;
        double t0 = lmf_now();
        float lr = lmf_lr_at(step, c->lr, c->min_lr, c->warmup_steps, max_steps);
        lmf_step_result r;
        if ((s = lmf_train_step(&sc, &src, lr, &r)) != LMF_OK) break;
        ran += r.positions, rows += (long)B * src_ctx.kr;
        if (!isfinite(r.loss)) {
            s = lmf_fail(LMF_ERR_ARG, "step %d: loss is %f; lower lr (now %g) or check the data", step, r.loss, lr);
            break;
        }
        double dt = lmf_now() - t0;
        char comm_ms[64] = ""; /* as train's: rank 0's time in collectives, and its share sent during the backward */
        if (D > 1) snprintf(comm_ms, sizeof comm_ms, ",\"comm_ms\":%.1f", r.comm_s * 1e3);
        if (D > 1 && c->overlap_grad_reduce)
            snprintf(comm_ms + strlen(comm_ms), sizeof comm_ms - strlen(comm_ms), ",\"overlapped\":%.3f", r.overlapped);
        if ((s = metric(&metrics, "{\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"ms\":%.1f%s}\n",
                        step + 1, r.loss, lr, r.grad_norm, dt * 1e3, comm_ms)) != LMF_OK)
            break;
        char line[160];
        snprintf(line, sizeof line, "loss %.4f lr %.2e gnorm %.3f %.0f tok/s", r.loss, lr, r.grad_norm,
                 (double)r.positions * D / dt); /* the positions run: a padded batch's up to its longest example */
        lmf_sink_progress(out, LMF_PROGRESS_UPDATE, step + 1, max_steps, "steps", line);
        if (val.n && c->eval_every > 0 && (step + 1) % c->eval_every == 0 && step + 1 < max_steps) {
            if ((s = evaluate(m, lora, &val, B, T, c->eval_batches, tok, tg, comm, &val_loss)) != LMF_OK) break;
            if ((s = metric(&metrics, "{\"step\":%d,\"val_loss\":%.9g}\n", step + 1, val_loss)) != LMF_OK) break;
        }
        if (c->checkpoint_every > 0 && (step + 1) % c->checkpoint_every == 0 && step + 1 < max_steps) {
            snprintf(path, sizeof path, "%s/ckpt-%08d.lmfc", c->out_dir, step + 1);
            if ((s = save_checkpoint(comm, path, text, step + 1, &opt, m)) != LMF_OK) break;
            if (lead) lmf_checkpoint_prune(c->out_dir, c->keep_checkpoints);
        }
    }
    lmf_sink_progress(out, LMF_PROGRESS_END, step, max_steps, "steps", NULL);
    if (rows && !c->packing)
        lmf_sink_logf(out, LMF_LOG_INFO, "finetune: padded batches ran at their longest example's length: %.1f of %d "
                      "positions a row on average", (double)ran / (double)rows, T);
    if (s != LMF_OK) goto done;
    snprintf(path, sizeof path, "%s/ckpt-%08d.lmfc", c->out_dir, step);
    if ((s = save_checkpoint(comm, path, text, step, &opt, m)) != LMF_OK) goto done;
    if (lead) lmf_checkpoint_prune(c->out_dir, c->keep_checkpoints);
    lmf_sink_logf(out, LMF_LOG_INFO, "checkpoint: %s", path);
    if (step < max_steps) {
        s = lmf_fail(LMF_ERR_INTERRUPTED, "stopped at step %d; resume with --resume", step);
        goto done;
    }
    if (val.n) {
        if ((s = evaluate(m, lora, &val, B, T, c->eval_batches, tok, tg, comm, &val_loss)) != LMF_OK) goto done;
        if ((s = metric(&metrics, "{\"step\":%d,\"val_loss\":%.9g}\n", step, val_loss)) != LMF_OK) goto done;
        lmf_sink_logf(out, LMF_LOG_INFO, "validation loss after fine-tuning: %.4f", val_loss);
    }
    if (!lead) goto done; /* the result is rank 0's to write */
    /* done with the moments and the micro-batches' sums: the export's buffers come on top of less */
    lmf_adamw_free(&opt);
    lmf_grad_sum_free(&gsum);
    if (!c->full) { /* the adapters as PEFT loads them, and as llama.cpp's --lora loads them */
        snprintf(path, sizeof path, "%s/adapter", c->out_dir);
        if ((s = lmf_lora_save_peft(lora, &w->cfg, c->model, path)) != LMF_OK) goto done;
        lmf_sink_logf(out, LMF_LOG_INFO, "adapter (PEFT): %s", path);
        if (w->cfg.arch != LMF_ARCH_OPT) {
            snprintf(path, sizeof path, "%s/adapter.gguf", c->out_dir);
            if ((s = lmf_lora_save_gguf(lora, &w->cfg, path)) != LMF_OK) goto done;
            lmf_sink_logf(out, LMF_LOG_INFO, "adapter (GGUF): %s", path);
        }
    }
    if (c->full) { /* the model, with the base's tokenizer, as a GGUF llama.cpp and lmforge run */
        snprintf(path, sizeof path, "%s/model.gguf", c->out_dir);
        lmf_weights *mw = (lmf_weights *)lmf_model_weights(m);
        mw->tok = w->tok, mw->chat_template = w->chat_template, mw->bos_id = w->bos_id, mw->eos_id = w->eos_id;
        mw->eot_id = w->eot_id, mw->add_bos = w->add_bos;
        s = lmf_export_gguf(mw, path, LMF_GGML_F32, NULL);
        mw->tok = NULL, mw->chat_template = NULL; /* borrowed from w */
        if (s == LMF_OK) lmf_sink_logf(out, LMF_LOG_INFO, "model: %s", path);
    }
done:
    if (metrics.f && s == LMF_OK) s = lmf_line_log_close(&metrics);
    else if (metrics.f) fclose(metrics.f); /* the run's own error (and its message) comes first */
    if (grid && D > 1 && s != LMF_OK && s != LMF_ERR_INTERRUPTED) {
        /* this rank may fail alone (a full disk on rank 0): the others would wait in a collective for ever */
        lmf_sink_logf(sink, LMF_LOG_WARN, "rank %d of %d: %s (ending the job)", comm->rank, D,
                      lmf_last_error());
        lmf_comm_abort(comm, 1);
    }
    lmf_grid_close(grid);
    free(tok), free(tg), free(text);
    lmf_adamw_free(&opt);
    lmf_zero_free(&zero);
    lmf_grad_sum_free(&gsum);
    lmf_model_free(m);
    lmf_lora_free(lora);
    lmf_sft_loader_free(&ld);
    lmf_sft_free(&train), lmf_sft_free(&val);
    lmf_sft_vocab_free(&voc);
    lmf_weights_free(w);
    return s;
}
