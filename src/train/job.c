/* job.c — the public training-run API (lmforge.h, lmf_train_job_*): an opaque job that holds a training config
 * and, when resuming, its checkpoint, so a program can train with the library alone. It is the same path
 * `lmforge train` takes (src/cli/cmd_train.c uses nothing else): options by name as in the config file and the
 * flags, config files, resume, then lmf_train_run with the caller's stop flag and sink. */
#include "core/alloc.h"
#include "core/status.h"
#include "dist/grid.h"
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>

struct lmf_train_job {
    lmf_train_config cfg;
    lmf_checkpoint ck; /* valid when has_ck */
    int has_ck, ran;
    char *ck_path;     /* the checkpoint resumed from (malloc'd) */
    char note[2048];   /* damaged newer checkpoints that resume stepped over, told to the run's sink */
    lmf_grid *grid;    /* NULL: one process */
    int overlap;       /* lmf_train_job_set_overlap */
    long bucket;       /* lmf_train_job_set_ddp_bucket */
    int pp_full;       /* lmf_train_job_set_pp_full_params */
    int failed;        /* a call failed on this rank alone, maybe: free ends the whole job */
};

lmf_status lmf_train_job_create(lmf_train_job **out) {
    lmf_train_job *j = lmf_xcalloc(1, sizeof *j);
    lmf_train_config_default(&j->cfg);
    *out = j;
    return LMF_OK;
}

static void drop_checkpoint(lmf_train_job *j) {
    if (j->has_ck) lmf_checkpoint_free(&j->ck);
    j->has_ck = 0;
    free(j->ck_path);
    j->ck_path = NULL;
    j->note[0] = 0;
}

void lmf_train_job_free(lmf_train_job *j) {
    if (!j) return;
    drop_checkpoint(j);
    if (j->grid && j->failed && j->grid->world->size > 1) lmf_comm_abort(j->grid->world, 1); /* does not return */
    lmf_grid_close(j->grid);
    free(j);
}

void lmf_train_job_set_overlap(lmf_train_job *j, int on) { j->overlap = on != 0; }
void lmf_train_job_set_ddp_bucket(lmf_train_job *j, long floats) { j->bucket = floats > 0 ? floats : 0; }
void lmf_train_job_set_pp_full_params(lmf_train_job *j, int on) { j->pp_full = on != 0; }

lmf_status lmf_train_job_set_parallel(lmf_train_job *j, const char *comm, int dp, int tp, int pp) {
    if (j->grid) return lmf_fail(LMF_ERR_ARG, "lmf_train_job_set_parallel: this job is parallel already");
    return lmf_grid_open(comm, dp, tp, pp, &j->grid);
}

int lmf_train_job_rank(const lmf_train_job *j, int *size) {
    if (size) *size = j->grid ? j->grid->world->size : 1;
    return j->grid ? j->grid->world->rank : 0;
}

lmf_status lmf_train_job_set(lmf_train_job *j, const char *option, const char *value) {
    /* "--name" is how a command line spells it: errors then name the flag, as `lmforge train` always did */
    int flag = !strncmp(option, "--", 2);
    const lmf_opt *o = lmf_train_opt_find(flag ? option + 2 : option);
    if (!o)
        return lmf_fail(LMF_ERR_ARG, "unknown %s '%s' (see `lmforge train --help`)", flag ? "flag" : "option", option);
    if (!value) return lmf_fail(LMF_ERR_ARG, "%s %s needs a value", flag ? "flag" : "option", option);
    char where[96];
    snprintf(where, sizeof where, "%s %s", flag ? "flag" : "option", option);
    return lmf_train_opt_set(&j->cfg, o, value, where);
}

lmf_status lmf_train_job_load_config(lmf_train_job *j, const char *path) {
    return lmf_train_config_load(&j->cfg, path);
}

/* Several ranks resume from one folder: rank 0 chooses (and sets a damaged newest checkpoint aside) before the others
 * look, then they load what it chose; a rank that cannot is this rank's failure alone. */
static lmf_status load_for_job(lmf_train_job *j, const char *dir, lmf_checkpoint *ck, char *note, size_t note_size) {
    lmf_comm *w = j->grid ? j->grid->world : NULL;
    if (!w || w->size == 1) return lmf_checkpoint_load_latest(dir, 1, ck, note, note_size);
    uint64_t chosen[2] = {0, 0}; /* loaded, step */
    lmf_status s = LMF_OK;
    if (w->rank == 0 && (s = lmf_checkpoint_load_latest(dir, 1, ck, note, note_size)) == LMF_OK)
        chosen[0] = 1, chosen[1] = ck->step;
    char msg[1200];
    snprintf(msg, sizeof msg, "%s", lmf_last_error());
    lmf_status b = lmf_comm_broadcast(w, chosen, sizeof chosen, 0);
    if (b != LMF_OK) {
        if (s == LMF_OK) lmf_checkpoint_free(ck);
        return b;
    }
    if (w->rank == 0) return s == LMF_OK ? s : lmf_fail(s, "%s", msg);
    if (!chosen[0]) return lmf_fail(LMF_ERR_IO, "%s: rank 0 found no checkpoint to resume (its message says why)", dir);
    LMF_TRY(lmf_checkpoint_load_latest(dir, 0, ck, note, note_size));
    if (ck->step != chosen[1]) {
        uint64_t got = ck->step;
        lmf_checkpoint_free(ck);
        return lmf_fail(LMF_ERR_MISMATCH, "%s: rank %d loaded the checkpoint of step %llu, rank 0 that of step %llu "
                        "(is the folder the same on every host?)", dir, w->rank, (unsigned long long)got,
                        (unsigned long long)chosen[1]);
    }
    return LMF_OK;
}

lmf_status lmf_train_job_resume(lmf_train_job *j, const char *dir, const char **checkpoint, uint64_t *step) {
    lmf_checkpoint ck;
    char note[sizeof j->note];
    /* the run writes into dir again: a damaged newest checkpoint is set aside, and the previous one resumes */
    lmf_status ls = load_for_job(j, dir, &ck, note, sizeof note);
    if (ls != LMF_OK) {
        j->failed = 1;
        return ls;
    }
    /* The checkpoint's options replace every option set so far (its text holds them all); parsed into a copy so
     * that a failure leaves the job as it was. */
    lmf_train_config cfg;
    lmf_train_config_default(&cfg);
    lmf_status s = lmf_train_config_parse(&cfg, ck.config_text, ck.path);
    if (s == LMF_OK) s = lmf_train_config_resolve_paths(&cfg, dir, (int)ck.version);
    if (s != LMF_OK) {
        lmf_checkpoint_free(&ck);
        return s;
    }
    snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", dir);
    cfg.stop_at = 0; /* a deliberate stop applies to the run that asked for it, not to its continuation */
    drop_checkpoint(j);
    j->cfg = cfg, j->ck = ck, j->has_ck = 1, j->ck_path = strdup(ck.path);
    snprintf(j->note, sizeof j->note, "%s", note);
    if (checkpoint) *checkpoint = j->ck_path;
    if (step) *step = j->ck.step;
    return LMF_OK;
}

lmf_status lmf_train_job_run(lmf_train_job *j, volatile sig_atomic_t *stop, const lmf_sink *sink) {
    if (j->ran)
        return lmf_fail(LMF_ERR_ARG, "lmf_train_job_run: this job has run already (a new job with "
                                     "lmf_train_job_resume continues it)");
    j->ran = 1;
    if (j->note[0])
        lmf_sink_logf(sink, LMF_LOG_WARN, "skipped damaged checkpoint: %s; resuming from %s", j->note, j->ck_path);
    lmf_train_options opts = {.stop = stop, .sink = sink, .comm = j->grid ? j->grid->dp : NULL,
                              .overlap = j->overlap, .bucket = (size_t)j->bucket, .pp_full = j->pp_full};
    if (j->grid && (j->grid->pp_size > 1 || j->grid->tp_size > 1)) { /* the whole job reduces: each stage and each
                                                                       * tensor-parallel rank holds part of it */
        opts.comm = j->grid->world, opts.dp_rank = j->grid->dp_rank, opts.dp_size = j->grid->dp_size;
        if (j->grid->pp_size > 1) opts.pipe = j->grid->pp;
        if (j->grid->tp_size > 1) opts.tp = j->grid->tp;
    }
    lmf_status s = lmf_train_run(&j->cfg, j->has_ck ? &j->ck : NULL, &opts);
    if (s != LMF_OK && s != LMF_ERR_INTERRUPTED) j->failed = 1;
    return s;
}
