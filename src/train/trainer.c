/* trainer.c — see trainer.h. */
#include "train/trainer.h"
#include "core/alloc.h"
#include "core/cpu.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/status.h"
#include "io/shard.h"
#include "kernels/gemm.h"
#include "model/block.h"
#include "model/head_loss.h"
#include "model/model.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/tokenizer.h"
#include "train/loader.h"
#include "train/pipeline.h"
#include "train/grad_sum.h"
#include "train/step.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

/* Fields that define the parameter layout must agree between a checkpoint and the run resuming it. */
static lmf_status same_model(const lmf_model_config *a, const lmf_model_config *b) {
#define SAME(f)                                                                                                    \
    if (a->f != b->f) return lmf_fail(LMF_ERR_MISMATCH, "checkpoint has " #f " = %g but this run has %g", (double)b->f, (double)a->f)
    SAME(arch); SAME(vocab_size); SAME(max_seq_len); SAME(n_layer); SAME(n_embd); SAME(n_head); SAME(n_kv_head);
    SAME(ffn_dim); SAME(tied_embeddings); SAME(n_expert); SAME(n_expert_used); SAME(shared_ffn_dim);
    SAME(norm_topk_prob); SAME(qkv_bias); SAME(shared_gate); SAME(qk_norm);
#undef SAME
    if (lmf_head_size(a) != lmf_head_size(b)) /* head_dim 0 and n_embd / n_head are the same layout */
        return lmf_fail(LMF_ERR_MISMATCH, "checkpoint has head size (head_dim) %d but this run has %d",
                        lmf_head_size(b), lmf_head_size(a));
    return LMF_OK;
}

/* Fields that change what the model computes but not its layout: a resumed run may change them (continuing with a
 * longer RoPE wavelength is context extension), but never silently, since the run then no longer continues the
 * checkpoint's function. */
static void report_changed_function(const lmf_model_config *a, const lmf_model_config *b, const char *ck_name) {
#define CHANGED(f)                                                                                                     if (a->f != b->f)                                                                                                      fprintf(stderr, "lmforge train: note: %s has " #f " = %g, this run %g: the resumed model computes another "                  "function from the same weights\n", ck_name, (double)b->f, (double)a->f);
    CHANGED(norm_eps); CHANGED(rope_theta); CHANGED(rope_scaling); CHANGED(rope_factor); CHANGED(rope_low_freq_factor);
    CHANGED(rope_high_freq_factor); CHANGED(rope_orig_ctx); CHANGED(sliding_window); CHANGED(nope_interval);
    CHANGED(attn_softcap); CHANGED(final_softcap);
#undef CHANGED
}

/* A mixture of experts' router after a step (its last micro-batch; rank 0's last one in a data-parallel job): a
 * metrics line of its own beside the loss line
 * ({"step", "aux_loss", "z_loss", "dropped", "expert_load": [share of the top-k choices per expert]}, both losses
 * before their coefficients; "loss" stays the cross-entropy) and "aux .. z .. drop .." on the progress line. */
static lmf_status moe_metrics(const lmf_model *m, int step, lmf_line_log *metrics, char *line, size_t cap) {
    const lmf_moe_stats *ms = lmf_model_moe_stats(m);
    char load[LMF_MAX_EXPERT * 16];
    size_t k = 0;
    for (int e = 0; e < m->cfg.n_expert && k < sizeof load; e++)
        k += (size_t)snprintf(load + k, sizeof load - k, "%s%.4g", e ? "," : "", ms->load[e]);
    size_t n = strlen(line);
    snprintf(line + n, cap - n, " aux %.3f z %.2f drop %.0f", ms->aux, ms->z, ms->dropped);
    return lmf_line_log_printf(metrics, "{\"step\":%d,\"aux_loss\":%.9g,\"z_loss\":%.9g,\"dropped\":%.0f,"
                               "\"expert_load\":[%s]}\n", step, ms->aux, ms->z, ms->dropped, load);
}

/* Rank 0 alone validates: over all the parameters it holds, whatever share tensor parallelism gives it. */
static float evaluate(lmf_model *m, lmf_loader *val, int batches, int32_t *in, int32_t *tg) {
    lmf_block_tp *tp = m->tp;
    m->tp = NULL;
    lmf_loader_seek(val, 0, 0);
    uint64_t avail = val->n_windows / (uint64_t)val->B;
    if (avail == 0) avail = 1;
    if ((uint64_t)batches > avail) batches = (int)avail;
    double sum = 0.0;
    for (int i = 0; i < batches; i++) {
        lmf_loader_next(val, in, tg);
        sum += lmf_model_eval_loss(m, in, tg, val->B, val->T);
    }
    m->tp = tp;
    return batches ? (float)(sum / batches) : NAN;
}

static lmf_status loader_source(void *ctx, int32_t *inputs, int32_t *targets);

/* Validation of a partitioned pipeline (no rank holds the whole model): every rank runs its stage's forward over
 * the same batches (lmf_pipeline_eval); the last stage of the first pipeline (its tensor-parallel group's first
 * rank) counts the loss, summed over the job so rank 0 has it. Every rank must call it. */
static lmf_status pipe_evaluate(lmf_pipeline *pl, lmf_comm *comm, int counts, lmf_loader *val, int batches,
                                int32_t *in, int32_t *tg, float *out) {
    lmf_loader_seek(val, 0, 0);
    uint64_t avail = val->n_windows / (uint64_t)val->B;
    if (avail == 0) avail = 1;
    if ((uint64_t)batches > avail) batches = (int)avail;
    double sum = 0.0;
    lmf_batch_source src = {loader_source, val, NULL};
    LMF_TRY(lmf_pipeline_eval(pl, &src, batches, in, tg, &sum));
    if (!counts) sum = 0.0;
    LMF_TRY(lmf_comm_allreduce_sum_f64(comm, &sum, 1));
    *out = batches ? (float)(sum / batches) : NAN;
    return LMF_OK;
}

/* The tokenizer of byte-level shards: ids < 256 are the raw bytes (GPT-2's byte-level forms, no merges); the rest
 * of the model's vocabulary (the shard's eot, unused rows) are holes that decode to nothing. */
static lmf_status byte_tokenizer(int vocab, lmf_tokenizer **out) {
    int n = vocab > 256 ? vocab : 256;
    char(*text)[4] = lmf_xcalloc(256, sizeof *text);
    const char **tokens = lmf_xcalloc((size_t)n, sizeof *tokens);
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        lmf_bytelevel_encode(&byte, 1, text[b]);
        tokens[b] = text[b];
    }
    lmf_tokenizer_def def = {.n_vocab = n, .tokens = tokens};
    lmf_status s = lmf_tokenizer_build(&def, "byte-level tokens", out);
    free(tokens);
    free(text);
    return s;
}

typedef struct {
    const lmf_sink *out;
    FILE *save;
} sample_dest;

static int sample_write(void *ctx, const char *text, size_t len) {
    const sample_dest *d = ctx;
    lmf_sink_text(d->out, text, len);
    return fwrite(text, 1, len, d->save) == len ? 0 : -1; /* a full disk stops the sample (checked at commit) */
}

/* Samples text after training through the inference path: a session over the live parameters (F32 views), plain
 * temperature sampling (0: greedy), stopping at the shard's eot. When the context fills before sample_tokens, the
 * last half of it is evaluated afresh and sampling goes on. tok == NULL means byte-level shards. */
static lmf_status sample_text(lmf_model *m, const lmf_train_config *c, int eot, const lmf_tokenizer *tok, FILE *save,
                              const lmf_sink *out) {
    const lmf_weights *w = lmf_model_weights(m);
    lmf_tokenizer *bytes = NULL;
    lmf_session *s = NULL;
    lmf_sampler *smp = NULL;
    lmf_ids hist = {0}, win = {0};
    lmf_sampler_params sp = {.temperature = c->sample_temperature, .top_k = 0, .top_p = 1, .min_p = 0,
                             .repeat_penalty = 1, .repeat_last_n = 0, .seed = (uint64_t)c->seed};
    lmf_status st;
    if (!tok && (st = byte_tokenizer(m->cfg.vocab_size, &bytes)) != LMF_OK) goto done;
    if ((st = lmf_session_create(w, m->max_seq, &s)) != LMF_OK) goto done;
    if ((st = lmf_sampler_create(&sp, m->cfg.vocab_size, &smp)) != LMF_OK) goto done;
    size_t np = strlen(c->sample_prompt);
    if (tok && (st = lmf_tokenizer_encode(tok, c->sample_prompt, np, 0, &hist)) != LMF_OK) goto done;
    if (!tok)
        for (size_t i = 0; i < np; i++) {
            int32_t id = (unsigned char)c->sample_prompt[i];
            lmf_ids_push(&hist, &id, 1);
        }
    if (hist.len == 0) {
        int32_t first = eot >= 0 ? eot : '\n';
        lmf_ids_push(&hist, &first, 1);
    } else {
        lmf_sink_text(out, c->sample_prompt, np), fputs(c->sample_prompt, save);
    }
    sample_dest dest = {out, save};
    int32_t stop = eot;
    lmf_generate_params p = {.stop_ids = &stop, .n_stop_ids = eot >= 0, .on_text = sample_write, .ctx = &dest,
                             .tok = tok ? tok : bytes};
    int n_ctx = lmf_session_n_ctx(s), left = c->sample_tokens;
    lmf_generate_result r = {.stop_reason = LMF_STOP_CONTEXT};
    while (left > 0 && r.stop_reason == LMF_STOP_CONTEXT) {
        /* the window: the whole history at first, then its last half context (a long prompt: its end) */
        size_t keep = win.len == 0 && hist.len <= (size_t)n_ctx ? hist.len : (size_t)(n_ctx + 1) / 2;
        if (keep > hist.len) keep = hist.len;
        win.len = 0;
        lmf_ids_push(&win, hist.data + hist.len - keep, keep);
        lmf_session_rewind(s, 0);
        p.n_predict = left;
        if ((st = lmf_generate(s, smp, &win, win.len, &p, NULL, &r)) != LMF_OK) break;
        lmf_ids_push(&hist, win.data + keep, win.len - keep);
        left -= r.gen_tokens;
    }
    lmf_sink_text(out, "\n", 1), fputc('\n', save);
done:
    lmf_sampler_free(smp);
    lmf_session_free(s);
    lmf_tokenizer_free(bytes);
    free(hist.data), free(win.data);
    return st;
}

/* Refuses a run that cannot fit in this machine's memory before anything is allocated: parameters, gradients,
 * AdamW's two moments, activations and the data order, against physical RAM. Better a message with the numbers
 * now than an OOM kill after minutes of page faults. part: a pipeline stage or tensor-parallel rank holding only its
 * spans (held floats of params and of grads, its packed rows included), its shard of P / ranks of params and grads
 * (counted whole, though part of it may lie in its spans) and the moments of that shard; tp: the share of each
 * layer's rows its activations keep; accum: its micro-batches a step (train/grad_sum.h's buffers; 1 inline). */
static lmf_status check_memory(const lmf_train_config *c, const lmf_shard *train, int slots, int l0, int l1, int part,
                               double held, int ranks, int tp, int accum) {
    double P = lmf_param_count(&c->model), model = lmf_model_bytes(&c->model, c->batch_size, c->seq_len, 1);
    double stage = lmf_model_shared_bytes(&c->model, c->batch_size, c->seq_len, l0, l1, tp);
    if (!strcmp(c->loss, "fused")) { /* the slabs' buffers instead of the logits, wherever the head is */
        double N = (double)c->batch_size * c->seq_len;
        double head = lmf_head_loss_bytes(&c->model, N, 0) - N * c->model.vocab_size * sizeof(float);
        model += head;
        if (l1 == c->model.n_layer) stage += head;
    }
    /* rank 0's model keeps the whole model's activations (it validates), a pipeline's other ranks their stage's:
     * counted as rank 0's; a stage's extra micro-batches in flight each keep the stage's activations only */
    double need = model + (slots - 1) * stage + 2 * P * sizeof(float) + (double)train->n_tokens / c->seq_len * 4;
    if (part) /* every set of activations the stage's, params and grads its spans and shard, the moments its shard */
        need = slots * stage + 2 * held * sizeof(float) + 4 * ceil(P / ranks) * sizeof(float) +
               (double)train->n_tokens / c->seq_len * 4;
    /* the micro-batches' partial sums: a partitioned rank's pieces, and its shard, which the reduction writes into
     * whichever buffer the gradient views are in at the step's end (counted whole, though it may overlap them) */
    double sums = lmf_grad_sum_bytes(accum, part ? held + ceil(P / ranks) : P);
    need += sums;
    double have = lmf_mem_physical();
    char sums_note[96] = "";
    if (sums > 0)
        snprintf(sums_note, sizeof sums_note, ", or set grad_sum = inline (%.1f GiB of it holds partial sums)",
                 sums / 1073741824.0);
    if (have > 0 && need > have)
        return lmf_fail(LMF_ERR_ARG, "this run needs %.1f GiB of memory%s (%.3g parameters: L%d C%d F%d V%d, with "
                        "gradients, AdamW moments and activations at batch %d x seq %d) but the machine has %.1f GiB: "
                        "reduce n_layer, n_embd, ffn_dim, batch_size or seq_len%s%s", need / 1073741824.0,
                        part ? " a rank" : "", P, c->model.n_layer, c->model.n_embd, c->model.ffn_dim,
                        c->model.vocab_size, c->batch_size, c->seq_len, have / 1073741824.0,
                        part ? ", or use more pipeline stages or tensor-parallel ranks" : "", sums_note);
    return LMF_OK;
}

/* Turns c->precision "auto" into "bf16" or "fp32": bf16 where this CPU runs bf16 products faster
 * (lmf_sgemm_bf16_pays), else fp32. A resumed run keeps the checkpoint's precision (a checkpoint without the line
 * was written before bf16 training existed: fp32), whatever auto would pick here, and refuses an explicit other one:
 * the run would no longer be the one it continues. */
static lmf_status resolve_precision(lmf_train_config *c, const lmf_checkpoint *ck, const char *ck_name) {
    char saved[16] = "fp32";
    if (ck) lmf_kv_text_get(ck->config_text, "precision", saved, sizeof saved);
    if (ck && strcmp(c->precision, "auto") && strcmp(c->precision, saved))
        return lmf_fail(LMF_ERR_MISMATCH, "%s: precision: the checkpoint was trained in %s but this run asks for %s "
                        "(drop --precision or pass --precision %s to resume it)", ck_name, saved, c->precision, saved);
    if (ck) snprintf(c->precision, sizeof c->precision, "%s", saved);
    else if (!strcmp(c->precision, "auto")) strcpy(c->precision, lmf_sgemm_bf16_pays() ? "bf16" : "fp32");
    return LMF_OK;
}

/* The tensor-parallel group's sum (model/block.h's lmf_block_tp) over its communicator. A failed exchange ends the
 * job with the message that names the call and the rank. */
static void tp_allreduce(lmf_block_tp *tp, float *buf, size_t n) {
    lmf_comm *c = tp->comm;
    if (lmf_comm_allreduce_sum(c, buf, n) == LMF_OK) return;
    fprintf(stderr, "lmforge train (rank %d of the tensor-parallel group): %s\n", c->rank, lmf_last_error());
    lmf_comm_abort(c, 1);
    LMF_CHECK(!"lmf_comm_abort returned on a tensor-parallel communicator");
}

static lmf_status loader_source(void *ctx, int32_t *inputs, int32_t *targets) {
    lmf_loader_next(ctx, inputs, targets);
    return LMF_OK;
}

/* A data-parallel rank's share of every global batch: of the step's grad_accum x dp micro-batches in loader order,
 * rank r takes the r-th run of grad_accum consecutive ones and passes over the others' windows, so every rank's
 * loader ends each step where the single-process loader would (and a checkpoint's data position means the same). */
typedef struct {
    lmf_loader *l;
    int rank, dp, accum, taken; /* accum: this rank's micro-batches per step; taken: of them, this step */
} dp_share;

static lmf_status dp_source(void *ctx, int32_t *inputs, int32_t *targets) {
    dp_share *d = ctx;
    uint64_t per_rank = (uint64_t)d->accum * (uint64_t)d->l->B;
    if (d->taken == 0) lmf_loader_skip(d->l, (uint64_t)d->rank * per_rank);
    lmf_loader_next(d->l, inputs, targets);
    if (++d->taken == d->accum) {
        lmf_loader_skip(d->l, (uint64_t)(d->dp - 1 - d->rank) * per_rank);
        d->taken = 0;
    }
    return LMF_OK;
}

/* One checkpoint of the job. One rank: a single file (version 3). ZeRO over dp ranks: a set, each rank its optimizer
 * shard, then rank 0 the manifest once every shard is on disk (io/checkpoint.h); every rank learns whether the set
 * was completed, so all of them go on or stop together. */
/* Rank 0 writes the manifest of a partitioned job (zero partitioned: no rank holds all the parameters) from the
 * shards' owners, one ZeRO bucket at a time (lmf_zero_gather). Every rank calls it (a collective per bucket); a
 * failure on rank 0 is its return, the others return LMF_OK. */
static lmf_status gathered_manifest(lmf_zero *z, const char *path, const char *text, int step, const lmf_loader *tl,
                                    const lmf_adamw *opt, const lmf_model *m, int D, const uint64_t *lo,
                                    const uint64_t *hi, const uint64_t *sum) {
    int root = lmf_comm_rank(z->comm) == 0;
    lmf_manifest_writer *w = NULL;
    lmf_status ws = root ? lmf_checkpoint_manifest_begin(&w, path, text, (uint64_t)step, tl->epoch, tl->index,
                                                         (uint64_t)opt->t, m->num_params, D)
                         : LMF_OK;
    for (size_t a = 0; a < m->num_params; a += z->bucket) {
        size_t b = a + z->bucket < m->num_params ? a + z->bucket : m->num_params;
        lmf_status gs = lmf_zero_gather(z, m->params, a, b, z->stage, 0); /* stage: free between steps */
        if (gs != LMF_OK) {
            lmf_checkpoint_manifest_abort(w);
            return gs;
        }
        if (root && ws == LMF_OK) ws = lmf_checkpoint_manifest_params(w, z->stage, b - a);
    }
    if (!root) return LMF_OK;
    if (ws == LMF_OK) return lmf_checkpoint_manifest_end(w, lo, hi, sum);
    lmf_checkpoint_manifest_abort(w);
    return ws;
}

static lmf_status save_checkpoint(lmf_comm *comm, lmf_zero *z, const char *path, const char *text, int step,
                                  const lmf_loader *tl, const lmf_adamw *opt, const lmf_model *m) {
    int D = lmf_comm_size(comm), r = lmf_comm_rank(comm);
    if (D == 1)
        return lmf_checkpoint_save(path, text, (uint64_t)step, tl->epoch, tl->index, (uint64_t)opt->t, m->params,
                                   opt->m, opt->v, m->num_params);
    uint64_t mine[4] = {0, opt->lo, opt->lo + opt->n, 0}; /* failed, lo, hi, checksum */
    char err[600] = "";
    if (lmf_checkpoint_save_shard(path, r, D, (uint64_t)step, opt->lo, opt->lo + opt->n, opt->m, opt->v, &mine[3]) !=
        LMF_OK) {
        mine[0] = 1;
        snprintf(err, sizeof err, "%s", lmf_last_error());
    }
    uint64_t *all = lmf_xmalloc((size_t)D * sizeof mine), *lo = lmf_xmalloc((size_t)D * 3 * sizeof(uint64_t));
    uint64_t *hi = lo + D, *sum = hi + D;
    lmf_status s = lmf_comm_allgather(comm, mine, all, sizeof mine);
    int failed = -1;
    for (int q = 0; q < D && s == LMF_OK; q++) {
        if (all[4 * q] && failed < 0) failed = q;
        lo[q] = all[4 * q + 1], hi[q] = all[4 * q + 2], sum[q] = all[4 * q + 3];
    }
    double ok = 1;
    if (s == LMF_OK && failed < 0 && z->stage_of) { /* partitioned: every rank sends its shard's parameters */
        lmf_status ms = gathered_manifest(z, path, text, step, tl, opt, m, D, lo, hi, sum);
        if (ms != LMF_OK && r == 0) ok = 0;
        else if (ms != LMF_OK) s = ms; /* a failed exchange */
    } else if (s == LMF_OK && failed < 0 && r == 0) {
        ok = lmf_checkpoint_save_manifest(path, text, (uint64_t)step, tl->epoch, tl->index, (uint64_t)opt->t,
                                          m->params, m->num_params, D, lo, hi, sum) == LMF_OK;
    }
    if (s == LMF_OK && r == 0 && !ok) snprintf(err, sizeof err, "%s", lmf_last_error());
    if (s == LMF_OK) s = lmf_comm_broadcast(comm, &ok, sizeof ok, 0);
    free(all), free(lo);
    if (s != LMF_OK) return s;
    if (failed >= 0)
        return err[0] ? lmf_fail(LMF_ERR_IO, "%s", err)
                      : lmf_fail(LMF_ERR_IO, "checkpoint %s: rank %d could not write its optimizer shard (its own "
                                 "message says why); the previous checkpoint stays the newest", path, failed);
    if (!ok)
        return r == 0 ? lmf_fail(LMF_ERR_IO, "%s", err)
                      : lmf_fail(LMF_ERR_IO, "checkpoint %s: rank 0 could not write the manifest", path);
    return LMF_OK;
}

/* After a partitioned run: what each rank held of the parameters and gradients, and whether any page outside its
 * ranges was ever mapped (lmf_model_stray_bytes; none, unless something wrote or read outside its stage). Rank 0
 * logs it; every rank must call it. */
static lmf_status partition_report(lmf_comm *comm, const lmf_model *m, const lmf_sink *out) {
    int D = lmf_comm_size(comm);
    size_t first;
    double mine[3] = {(double)lmf_model_held_floats(m), (double)lmf_model_stray_bytes(m, &first), 0};
    mine[2] = first == SIZE_MAX ? -1 : (double)first;
    double *all = lmf_xmalloc((size_t)D * sizeof mine);
    lmf_status s = lmf_comm_allgather(comm, mine, all, sizeof mine);
    if (s == LMF_OK && out) {
        double lo = INFINITY, hi = 0, whole = 2.0 * (double)m->num_params * sizeof(float) / 1048576.0;
        int bad = -1;
        for (int q = 0; q < D; q++) {
            double mib = 2.0 * all[3 * q] * sizeof(float) / 1048576.0;
            lo = mib < lo ? mib : lo, hi = mib > hi ? mib : hi;
            if (all[3 * q + 1] > 0 && bad < 0) bad = q;
        }
        if (bad < 0)
            lmf_sink_logf(out, LMF_LOG_INFO, "model-parallel ranks held %.1f-%.1f MiB of parameters and gradients a "
                          "rank (the whole model's: %.1f MiB), none outside their ranges", lo, hi, whole);
        else
            lmf_sink_logf(out, LMF_LOG_WARN, "model-parallel ranks held %.1f-%.1f MiB of parameters and gradients a "
                          "rank (the whole model's: %.1f MiB), but rank %d has %.0f KiB mapped outside its ranges "
                          "(from float %.0f; grads counted after params): a bug, please report it", lo, hi, whole, bad,
                          all[3 * bad + 1] / 1024.0, all[3 * bad + 2]);
    }
    free(all);
    return s;
}

lmf_status lmf_train_run(const lmf_train_config *cfg_in, const lmf_checkpoint *ck, const lmf_train_options *opts) {
    lmf_train_options o = opts ? *opts : (lmf_train_options){0};
    lmf_comm *comm = o.comm ? o.comm : lmf_comm_self();
    /* data parallel: every rank trains, rank 0 alone reports, validates, writes metrics and samples */
    int D = lmf_comm_size(comm), rank = lmf_comm_rank(comm), lead = rank == 0;
    /* data-parallel coordinates: a pipeline's stages and a tensor-parallel group share theirs (and the micro-batches) */
    int P = o.pipe ? lmf_comm_size(o.pipe) : 1, TP = o.tp ? lmf_comm_size(o.tp) : 1, grid = o.pipe || o.tp;
    int DP = grid ? o.dp_size : D, dp_rank = grid ? o.dp_rank : rank;
    const lmf_sink *out = lead ? o.sink : NULL;
    lmf_train_config c = *cfg_in;
    LMF_TRY(lmf_train_config_validate(&c));
    if (c.threads > 0) {
        omp_set_num_threads(c.threads);
    } else if (D > 1) {
        /* threads 0 means the cores: this host's ranks share them rather than each start one thread per core */
        int per = omp_get_num_procs() / lmf_comm_local_size();
        omp_set_num_threads(per > 1 ? per : 1);
    }
    lmf_shard *train = NULL, *valid = NULL;
    lmf_model *m = NULL;
    lmf_tokenizer *tok = NULL;
    lmf_loader tl = {0}, vl = {0};
    lmf_adamw opt = {0};
    lmf_zero zero = {0};
    lmf_pipeline pipe = {0};
    lmf_grad_sum gsum = {0};
    lmf_line_log metrics = {0};
    int32_t *in = NULL, *tg = NULL;
    lmf_range *spans = NULL;
    char *text = NULL;
    const char *ck_name = ck && ck->path ? ck->path : "checkpoint";
    lmf_status s;

    LMF_CHECK(DP * P * TP == D);
    if (c.grad_accum % DP) {
        s = lmf_fail(LMF_ERR_ARG, "grad_accum %d is not a multiple of the %d data-parallel ranks: each rank takes "
                     "grad_accum / dp micro-batches of every step (grad_accum is the step's total, as in a "
                     "single-process run)", c.grad_accum, DP);
        goto done;
    }
    if ((s = lmf_shard_open(c.train_data, &train)) != LMF_OK) goto done;
    if (c.val_data[0] && (s = lmf_shard_open(c.val_data, &valid)) != LMF_OK) goto done;
    if (c.model.vocab_size == 0) c.model.vocab_size = (int)train->vocab_size;
    if (c.model.max_seq_len == 0) c.model.max_seq_len = c.seq_len;
    if (train->vocab_size > (uint32_t)c.model.vocab_size || (valid && valid->vocab_size > (uint32_t)c.model.vocab_size)) {
        s = lmf_fail(LMF_ERR_MISMATCH, "%s: shard vocabulary %u is larger than the model's vocab_size %d",
                     valid && valid->vocab_size > train->vocab_size ? c.val_data : c.train_data,
                     valid && valid->vocab_size > train->vocab_size ? valid->vocab_size : train->vocab_size,
                     c.model.vocab_size);
        goto done;
    }
    if (c.seq_len > c.model.max_seq_len) {
        s = lmf_fail(LMF_ERR_ARG, "seq_len %d exceeds the model's max_seq_len %d", c.seq_len, c.model.max_seq_len);
        goto done;
    }
    if ((s = lmf_model_config_validate(&c.model)) != LMF_OK) goto done;
    if (TP > 1 && (c.model.n_head % TP || c.model.n_kv_head % TP || c.model.ffn_dim % TP ||
                   c.model.shared_ffn_dim % TP)) {
        s = lmf_fail(LMF_ERR_ARG, "--tp %d must divide n_head (%d), n_kv_head (%d), ffn_dim (%d) and shared_ffn_dim "
                     "(%d): each tensor-parallel rank computes an equal share of the heads and of the FFN columns (of "
                     "every expert)", TP, c.model.n_head, c.model.n_kv_head, c.model.ffn_dim, c.model.shared_ffn_dim);
        goto done;
    }
    if (ck) {
        /* The checkpoint's sizes are bounded by its file; the model it implies must match them before the model is
         * allocated (a hostile n_layer in a checksummed file must not reach the allocator). */
        lmf_train_config defaults;
        lmf_train_config_default(&defaults);
        lmf_model_config saved = defaults.model;
        if ((s = lmf_model_config_from_text(ck->config_text, ck_name, &saved)) != LMF_OK) goto done;
        if ((s = same_model(&c.model, &saved)) != LMF_OK) goto done;
        if (lead) report_changed_function(&c.model, &saved, ck_name);
        double need = lmf_param_count(&c.model);
        if (need != (double)ck->num_params) {
            s = lmf_fail(LMF_ERR_MISMATCH, "%s: holds %llu parameters, the model of its config has %.0f", ck_name,
                         (unsigned long long)ck->num_params, need);
            goto done;
        }
    }
    if ((s = resolve_precision(&c, ck, ck_name)) != LMF_OK) goto done;
    /* auto decides by a rate each rank measures for itself: rank 0's choice holds for all, or ranks would differ */
    if (D > 1 && (s = lmf_comm_broadcast(comm, c.precision, sizeof c.precision, 0)) != LMF_OK) goto done;
    int slots = o.pipe ? lmf_pipe_in_flight(P, lmf_comm_rank(o.pipe), c.grad_accum / DP) : 1, sl0 = 0;
    int sl1 = c.model.n_layer;
    if (o.pipe && P <= c.model.n_layer) /* more stages than layers: lmf_pipeline_init says so below */
        lmf_pipe_layers(c.model.n_layer, P, lmf_comm_rank(o.pipe), &sl0, &sl1);
    /* partitioned: each rank holds only its stage's spans of the parameters and gradients (its tensor-parallel
     * shares of them), plus its ZeRO shard */
    int part = ((o.pipe && P > 1) || TP > 1) && P <= c.model.n_layer && !o.pp_full;
    int tree = !strcmp(c.grad_sum, "tree"); /* the micro-batches' gradients added in grad_sum.h's tree */
    int tp_rank = o.tp ? lmf_comm_rank(o.tp) : 0;
    int n_spans = 0; /* spans: the in-place ones (the packed rows apart), room for the shard after them */
    double held = 0;
    if (part) {
        lmf_range *all;
        int n = lmf_model_group_spans(&c.model, sl0, sl1, tp_rank, TP, 1, &all);
        for (int j = 0; j < n; j++) held += (double)(all[j].hi - all[j].lo);
        free(all);
        n_spans = lmf_model_group_spans(&c.model, sl0, sl1, tp_rank, TP, 0, &all);
        spans = lmf_xrealloc(all, ((size_t)n_spans + 1) * sizeof *spans);
    }
    if (!strcmp(c.loss, "fused") && o.tp) { /* the vocabulary-parallel head keeps its share of the logits */
        s = lmf_fail(LMF_ERR_ARG, "loss = fused runs the whole head on one rank: not with tensor parallelism, whose "
                     "head already splits the logits over the ranks (set loss = logits)");
        goto done;
    }
    if ((s = check_memory(&c, train, slots, sl0, sl1, part, held, D, TP, tree ? c.grad_accum / DP : 1)) != LMF_OK) goto done;
    /* the tokenizer only serves the final sample, but a bad path should fail now, not after hours of training */
    if (c.tokenizer[0] && (s = lmf_tokenizer_load(c.tokenizer, &tok)) != LMF_OK) goto done;
    if (tok && lmf_tokenizer_vocab_size(tok) > c.model.vocab_size) {
        s = lmf_fail(LMF_ERR_MISMATCH, "%s: %d tokens, more than the model's vocab_size %d", c.tokenizer,
                     lmf_tokenizer_vocab_size(tok), c.model.vocab_size);
        goto done;
    }
    if ((s = lmf_mkdir_p(c.out_dir)) != LMF_OK) goto done;
    /* rank 0 clears what an interrupted save left before any rank writes (a rank's new shard is no leftover) */
    int stale = lead ? lmf_checkpoint_remove_stale(c.out_dir) : 0;
    if (D > 1 && (s = lmf_comm_barrier(comm)) != LMF_OK) goto done;
    if (stale)
        lmf_sink_logf(out, LMF_LOG_WARN, "%s: removed %d unfinished checkpoint file%s (*.tmp, or optimizer shards "
                      "without their manifest) of an interrupted save", c.out_dir, stale, stale > 1 ? "s" : "");
    /* metrics: OUT_DIR/metrics.jsonl unless set; the saved config keeps it unset, so a copied run folder writes
     * its own */
    if (c.metrics[0]) snprintf(metrics.path, sizeof metrics.path, "%s", c.metrics);
    else snprintf(metrics.path, sizeof metrics.path, "%s/metrics.jsonl", c.out_dir);

    int B = c.batch_size, T = c.seq_len;
    /* a rank other than 0 never runs the whole model alone (rank 0 validates and samples): its stage's layers and
     * its tensor-parallel share of their rows are all the activations it keeps */
    m = part ? lmf_model_create_stage(&c.model, B, T, sl0, sl1, TP, 1)
        : !lead && (o.pipe || o.tp) && P <= c.model.n_layer ? lmf_model_create_stage(&c.model, B, T, sl0, sl1, TP, 0)
                                                             : lmf_model_create(&c.model, B, T, 1);
    if (!m) {
        s = LMF_ERR_ARG;
        goto done;
    }
    if (part && TP > 1) lmf_model_pack_tp(m, tp_rank, TP, sl0, sl1); /* before the in-flight sets copy the views */
    lmf_model_set_bf16(m, !strcmp(c.precision, "bf16"));
    /* the head's stage (a pipeline's last, or rank 0's whole model); its in-flight sets take it from m */
    lmf_model_set_fused_loss(m, !strcmp(c.loss, "fused") && m->act_l1 == c.model.n_layer);
    lmf_block_tp tpg = {0};
    if (o.tp) {
        tpg = (lmf_block_tp){.rank = lmf_comm_rank(o.tp), .size = TP, .sum = tp_allreduce, .comm = o.tp};
        m->tp = &tpg; /* before the pipeline's in-flight sets copy it */
    }
    if (o.pipe && (s = lmf_pipeline_init(&pipe, o.pipe, m, B, T, c.grad_accum / DP)) != LMF_OK) goto done;
    /* tensor parallel alone, partitioned: rank 0 has no whole copy to validate with, so validation runs through
     * a pipeline of one stage (the group's forward); training keeps its own loop */
    if (part && !o.pipe && (s = lmf_pipeline_init(&pipe, lmf_comm_self(), m, B, T, 1)) != LMF_OK) goto done;
    if (D > 1) {
        lmf_zero_init(&zero, comm, m->num_params, o.bucket);
        if (o.overlap) lmf_step_overlap_init(&zero, m);
        lmf_adamw_init_shard(&opt, zero.lo, zero.hi - zero.lo);
        if (part) { /* every rank's group (grid.h: rank = (pp_rank x dp + dp_rank) x tp + tp_rank: group pp_rank x
                     * tp + tp_rank) and each group's spans */
            int G = P * TP, *group_of = lmf_xmalloc((size_t)D * sizeof(int));
            int *ns = lmf_xmalloc((size_t)G * sizeof(int));
            lmf_range **sp = lmf_xmalloc((size_t)G * sizeof *sp);
            for (int q = 0; q < D; q++) group_of[q] = q / (DP * TP) * TP + q % TP;
            int me = group_of[rank];
            LMF_CHECK(me / TP == (o.pipe ? lmf_comm_rank(o.pipe) : 0) && me % TP == tp_rank);
            for (int g = 0; g < G; g++) {
                int a = 0, b = c.model.n_layer;
                if (P > 1) lmf_pipe_layers(c.model.n_layer, P, g / TP, &a, &b);
                ns[g] = lmf_model_group_spans(&c.model, a, b, g % TP, TP, 1, &sp[g]);
            }
            /* where this rank keeps each of its spans: a packed row's own place, or the flat buffers */
            float **own = lmf_xmalloc(2 * ((size_t)ns[me] + 1) * sizeof *own);
            for (int j = 0; j < ns[me]; j++)
                own[j] = lmf_model_packed_at(m, sp[me][j].lo, 0),
                own[ns[me] + j] = lmf_model_packed_at(m, sp[me][j].lo, 1);
            lmf_zero_partition(&zero, G, group_of, (const lmf_range *const *)sp, ns, own, own + ns[me]);
            for (int g = 0; g < G; g++) free(sp[g]);
            free(group_of), free(ns), free(sp), free(own);
            spans[n_spans] = (lmf_range){zero.lo, zero.hi}; /* AdamW updates the shard's parameters here */
            lmf_model_partition(m, spans, n_spans + 1);
            lmf_model_set_written(m, spans, n_spans); /* the shard alone is the reduction's to write */
        }
    } else {
        lmf_adamw_init(&opt, m->num_params);
    }
    if ((s = lmf_loader_init(&tl, train, B, T, (uint64_t)c.seed, 1)) != LMF_OK) goto done;
    if (valid && (s = lmf_loader_init(&vl, valid, B, T, (uint64_t)c.seed, 0)) != LMF_OK) goto done;
    in = lmf_xmalloc(sizeof(int32_t) * (size_t)B * T);
    tg = lmf_xmalloc(sizeof(int32_t) * (size_t)B * T);

    int step = 0;
    if (ck) {
        lmf_model_copy_held(m, ck->params); /* partitioned: the stage's spans and the shard */
        /* this rank's range of the moments, from a single file or a set of any number of shards (re-sharding) */
        if ((s = lmf_checkpoint_read_moments(ck, opt.lo, opt.n, opt.m, opt.v)) != LMF_OK) goto done;
        opt.t = (int)ck->adam_t, step = (int)ck->step; /* both <= 2^31 - 1: lmf_checkpoint_load checked */
        if (lmf_loader_seek(&tl, ck->epoch, ck->index) != LMF_OK) {
            char msg[1200];
            snprintf(msg, sizeof msg, "%s", lmf_last_error());
            s = lmf_fail(LMF_ERR_MISMATCH, "%s: header field data index: %s", ck_name, msg);
            goto done;
        }
    } else {
        lmf_model_init_weights(m, (uint64_t)c.seed); /* partitioned: the values of the ranges it holds */
        /* the same seed gives every rank the same weights; rank 0's are sent anyway, so ranks on hosts whose
         * kernels round differently still start equal. Partitioned, rank 0 has not got them: each rank computes
         * its own ranges (scalar libm, not the dispatched kernels: the same on every host with the same libm) */
        if (D > 1 && !part && (s = lmf_comm_broadcast(comm, m->params, m->num_params * sizeof(float), 0)) != LMF_OK)
            goto done;
    }
    /* The saved config (train.conf and every checkpoint) holds paths as the run folder sees them: relative inside
     * it, absolute outside, so a copied or moved folder resumes from any working directory. */
    {
        lmf_train_config stored = c;
        if ((s = lmf_train_config_anchor_paths(&stored, c.out_dir)) != LMF_OK) goto done;
        text = lmf_train_config_to_text(&stored);
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/train.conf", c.out_dir);
    const void *parts[] = {text};
    size_t sizes[] = {strlen(text)};
    if (lead && (s = lmf_write_file_atomic(path, parts, sizes, 1)) != LMF_OK) goto done;
    if (lead && (s = lmf_line_log_open(&metrics, metrics.path, ck != NULL)) != LMF_OK) goto done;
    char dp_note[512] = "";
    if (DP > 1)
        snprintf(dp_note, sizeof dp_note, "; data parallel over %d ranks (ZeRO-1, %d micro-batches each per step)", DP,
                 c.grad_accum / DP);
    if (TP > 1) {
        size_t n = strlen(dp_note);
        snprintf(dp_note + n, sizeof dp_note - n, "; tensor parallel over %d ranks (%d of %d heads, %d of %d KV heads "
                 "and %d of %d FFN columns%s each)%s", TP, c.model.n_head / TP, c.model.n_head, c.model.n_kv_head / TP,
                 c.model.n_kv_head, c.model.ffn_dim / TP, c.model.ffn_dim, c.model.n_expert ? " of every expert" : "",
                 P > 1 ? "" : part ? "; ZeRO-1 over all ranks; each rank holds its own shards of the parameters"
                                   : "; ZeRO-1 over all ranks; every rank holds all the parameters");
    }
    if (P > 1) { /* each stage's layers, for the banner: rank 0 is stage 0, so the ranges are recomputed here */
        size_t n = strlen(dp_note);
        n += (size_t)snprintf(dp_note + n, sizeof dp_note - n, "; pipeline parallel over %d stages (1F1B, %d "
                              "micro-batches, bubble (p-1)/m = %.3f; layers", P, c.grad_accum / DP,
                              lmf_pipe_bubble(P, c.grad_accum / DP));
        for (int q = 0; q < P && n < sizeof dp_note; q++) {
            int a, b;
            lmf_pipe_layers(c.model.n_layer, P, q, &a, &b);
            n += (size_t)snprintf(dp_note + n, sizeof dp_note - n, " %d-%d", a, b - 1);
        }
        if (n < sizeof dp_note)
            snprintf(dp_note + n, sizeof dp_note - n, "; ZeRO-1 over all %d ranks; %s)", D,
                     !part ? "every rank holds all the parameters" : TP > 1 ? "each stage holds its own parameters, "
                     "each tensor-parallel rank its shards of them" : "each stage holds its own parameters");
    }
    if (D > 1 && o.overlap) {
        size_t n = strlen(dp_note);
        if (n < sizeof dp_note) snprintf(dp_note + n, sizeof dp_note - n, "; gradients reduced during the backward");
    }
    char hs_note[32] = ""; /* a head size apart from C / heads (head_dim) */
    if (c.model.head_dim) snprintf(hs_note, sizeof hs_note, " hs%d", c.model.head_dim);
    lmf_grad_sum_init(&gsum, m, tree ? c.grad_accum / DP : 1);
    if (o.pipe) lmf_grad_sum_share(&gsum, pipe.slots + 1, pipe.n_slots - 1); /* the in-flight sets' views move too */
    char sum_note[96] = ""; /* what the micro-batches' tree holds besides the gradients */
    if (c.grad_accum / DP > 1)
        snprintf(sum_note, sizeof sum_note, tree ? " (summed in a tree: %d partial-sum buffers, %.0f MiB)" : " (inline)",
                 gsum.nbuf, lmf_grad_sum_bytes(c.grad_accum / DP, (double)lmf_model_held_floats(m)) / 1048576.0);
    lmf_sink_logf(out, LMF_LOG_INFO, "lmforge train: %s, %zu parameters (%.2fM), L%d C%d H%d/%d%s F%d V%d, B%d T%d x%d "
                  "accum%s, %d threads, %s kernels%s%s",
            lmf_arch_name(c.model.arch), m->num_params, m->num_params / 1e6, c.model.n_layer, c.model.n_embd,
            c.model.n_head, c.model.n_kv_head, hs_note, c.model.ffn_dim, c.model.vocab_size, B, T, c.grad_accum,
            sum_note, omp_get_max_threads(), lmf_isa_name(lmf_cpu_isa()), ck ? "; resuming" : "", dp_note);
    lmf_sink_logf(out, LMF_LOG_INFO, "precision %s%s: %s; loss over %s", c.precision,
                  ck ? " (the checkpoint's)" : !strcmp(cfg_in->precision, "auto") ? " (auto)" : "",
                  lmf_sgemm_bf16_note(), strcmp(c.loss, "fused") ? "kept logits" : "vocabulary slabs");
    if (lead && ck && (s = lmf_line_log_printf(&metrics, "{\"event\":\"resume\",\"step\":%d}\n", step)) != LMF_OK) goto done;

    lmf_step_ctx sc = {.model = m, .opt = &opt, .hp = &c.opt, .comm = comm, .zero = D > 1 ? &zero : NULL,
                       .batch_size = B, .seq_len = T, .grad_accum = c.grad_accum / DP, .inputs = in, .targets = tg,
                       .sum = tree ? &gsum : NULL, .pipe = o.pipe ? &pipe : NULL, .tp = m->tp, .overlap = o.overlap};
    dp_share share = {.l = &tl, .rank = dp_rank, .dp = DP, .accum = c.grad_accum / DP};
    lmf_batch_source src = DP > 1 ? (lmf_batch_source){dp_source, &share, NULL} : (lmf_batch_source){loader_source, &tl, NULL};
    lmf_sink_progress(out, LMF_PROGRESS_BEGIN, step, c.opt.max_steps, "steps", NULL);
    float last_val = NAN;
    /* partitioned validation: the loss of the last stage of the first pipeline, its tensor-parallel group's first */
    int val_counts = part && (!o.pipe || lmf_comm_rank(o.pipe) == P - 1) && dp_rank == 0 && tp_rank == 0;
    char line[512];
    for (; step < c.opt.max_steps; step++) {
        if (c.stop_at > 0 && step >= c.stop_at) break;
        double stop = o.stop && *o.stop;
        /* a signal may reach one rank only (mpirun forwards few): the ranks stop together when any was asked */
        if (D > 1 && (s = lmf_comm_allreduce_sum_f64(comm, &stop, 1)) != LMF_OK) break;
        if (stop) break;
        if ((lead || part) && valid && c.eval_every > 0 && step % c.eval_every == 0) {
            if (part && (s = pipe_evaluate(&pipe, comm, val_counts, &vl, c.eval_batches, in, tg, &last_val)) != LMF_OK)
                break;
            if (!part) last_val = evaluate(m, &vl, c.eval_batches, in, tg);
            if (lead && (s = lmf_line_log_printf(&metrics, "{\"step\":%d,\"val_loss\":%.9g}\n", step, last_val)) != LMF_OK)
                break;
            lmf_sink_logf(out, LMF_LOG_INFO, "step %d: val loss %.4f", step, last_val);
        }
        double t0 = lmf_now();
        float lr = lmf_lr_at(step, c.opt.lr, c.opt.min_lr, c.opt.warmup_steps, c.opt.max_steps);
        lmf_step_result r;
        if ((s = lmf_train_step(&sc, &src, lr, &r)) != LMF_OK) break;
        double loss = r.loss;
        float gnorm = r.grad_norm;
        double dt = lmf_now() - t0, tps = (double)B * T * c.grad_accum / dt;
        if (!isfinite(loss)) {
            s = lmf_fail(LMF_ERR_ARG, "step %d: loss is %f; lower lr (now %g) or check the data", step, loss, lr);
            break;
        }
        char comm_ms[64] = "";
        if (D > 1) snprintf(comm_ms, sizeof comm_ms, ",\"comm_ms\":%.1f", r.comm_s * 1e3);
        if (D > 1 && o.overlap) /* rank 0's share of the gradient that left during the backward */
            snprintf(comm_ms + strlen(comm_ms), sizeof comm_ms - strlen(comm_ms), ",\"overlapped\":%.3f", r.overlapped);
        if (lead && (s = lmf_line_log_printf(&metrics, "{\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"ms\":%.1f,"
                              "\"tok_per_s\":%.1f%s}\n", step, loss, lr, gnorm, dt * 1e3, tps, comm_ms)) != LMF_OK)
            break;
        snprintf(line, sizeof line, "loss %.4f lr %.2e gnorm %.3f %.0f tok/s", loss, lr, gnorm, tps);
        /* rank 0 alone has the metrics file open (a second rank here wrote through a NULL FILE) */
        if (lead && m->cfg.n_expert && (s = moe_metrics(m, step, &metrics, line, sizeof line)) != LMF_OK) break;
        lmf_sink_progress(out, LMF_PROGRESS_UPDATE, step + 1, c.opt.max_steps, "steps", line);
        int last = step + 1 == c.opt.max_steps;
        if (!last && c.checkpoint_every > 0 && (step + 1) % c.checkpoint_every == 0) {
            snprintf(path, sizeof path, "%s/ckpt-%08d.lmfc", c.out_dir, step + 1);
            if ((s = save_checkpoint(comm, &zero, path, text, step + 1, &tl, &opt, m)) != LMF_OK) break;
            if (lead) lmf_checkpoint_prune(c.out_dir, c.keep_checkpoints);
        }
    }
    lmf_sink_progress(out, LMF_PROGRESS_END, step, c.opt.max_steps, "steps", NULL);
    if (s == LMF_OK) {
        /* final (or interrupted) state */
        snprintf(path, sizeof path, "%s/ckpt-%08d.lmfc", c.out_dir, step);
        s = save_checkpoint(comm, &zero, path, text, step, &tl, &opt, m);
        if (s == LMF_OK && lead) lmf_checkpoint_prune(c.out_dir, c.keep_checkpoints);
        if (s == LMF_OK) lmf_sink_logf(out, LMF_LOG_INFO, "checkpoint: %s", path);
    }
    if (s == LMF_OK && step < c.opt.max_steps) {
        if (!lead || (s = lmf_line_log_close(&metrics)) == LMF_OK)
            s = lmf_fail(LMF_ERR_INTERRUPTED, "stopped at step %d; resume with --resume %s", step, c.out_dir);
        goto done;
    }
    if (s == LMF_OK && part) s = partition_report(comm, m, out);
    if (s != LMF_OK || (!lead && !part)) goto done; /* the rest is rank 0's (partitioned: validation is all's) */
    if (part && valid && (s = pipe_evaluate(&pipe, comm, val_counts, &vl, c.eval_batches, in, tg, &last_val)) != LMF_OK)
        goto done;
    if (!lead) goto done;
    if (valid) {
        if (!part) last_val = evaluate(m, &vl, c.eval_batches, in, tg);
        if ((s = lmf_line_log_printf(&metrics, "{\"step\":%d,\"val_loss\":%.9g}\n", step, last_val)) != LMF_OK) goto done;
        lmf_sink_logf(out, LMF_LOG_INFO, "final val loss %.4f (ppl %.2f)", last_val, exp(last_val));
    }
    if ((s = lmf_line_log_close(&metrics)) != LMF_OK) goto done;
    if (c.sample_tokens > 0) {
        if (part) {
            /* path: the final checkpoint's */
            lmf_sink_logf(out, LMF_LOG_WARN, "no sample: each %s; sample the final checkpoint with lmforge generate "
                          "-m %s (or train with --pp-full-params)", P > 1 ? "pipeline stage holds only its own layers' "
                          "parameters" : "tensor-parallel rank holds only its shards of the parameters", path);
        } else if (train->tokenizer != LMF_TOKENIZER_BYTES && !tok) {
            lmf_sink_logf(out, LMF_LOG_WARN, "no sample: the shards are BPE; pass --tokenizer FILE to decode one");
        } else {
            /* written whole or not at all: sample.txt is an output like the checkpoint */
            snprintf(path, sizeof path, "%s/sample.txt", c.out_dir);
            lmf_atomic_file af;
            if ((s = lmf_atomic_open(&af, path)) != LMF_OK) goto done;
            lmf_sink_logf(out, LMF_LOG_INFO, "sample (%d tokens, temperature %.2f):", c.sample_tokens,
                          c.sample_temperature);
            if (sample_text(m, &c, train->eot, tok, af.f, out) != LMF_OK && !ferror(af.f))
                lmf_sink_logf(out, LMF_LOG_WARN, "sample: %s", lmf_last_error());
            s = lmf_atomic_commit(&af);
        }
    }
done:
    if (metrics.f && s == LMF_OK) s = lmf_line_log_close(&metrics);
    else if (metrics.f) fclose(metrics.f); /* the run's own error (and its message) comes first */
    free(text), free(spans);
    free(in), free(tg);
    lmf_loader_free(&tl), lmf_loader_free(&vl);
    lmf_adamw_free(&opt);
    lmf_zero_free(&zero);
    lmf_grad_sum_free(&gsum); /* before the in-flight sets whose views it may move back */
    lmf_pipeline_free(&pipe);
    lmf_model_free(m);
    lmf_shard_close(train), lmf_shard_close(valid);
    lmf_tokenizer_free(tok);
    return s;
}
