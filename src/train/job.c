/* job.c — the public training-run API (lmforge.h, lmf_train_job_*): an opaque job that holds a training config
 * and, when resuming, its checkpoint, so a program can train with the library alone. It is the same path
 * `lmforge train` takes (src/cli/cmd_train.c uses nothing else): options by name as in the config file and the
 * flags, config files, resume, then lmf_train_run with the caller's stop flag and sink. */
#include "core/alloc.h"
#include "core/status.h"
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>

struct lmf_train_job {
    lmf_train_config cfg;
    lmf_checkpoint ck; /* valid when has_ck */
    int has_ck, ran;
    char *ck_path;     /* the checkpoint resumed from (malloc'd) */
    char note[2048];   /* damaged newer checkpoints that resume stepped over, told to the run's sink */
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
    free(j);
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

lmf_status lmf_train_job_resume(lmf_train_job *j, const char *dir, const char **checkpoint, uint64_t *step) {
    lmf_checkpoint ck;
    char note[sizeof j->note];
    /* the run writes into dir again: a damaged newest checkpoint is set aside, and the previous one resumes */
    LMF_TRY(lmf_checkpoint_load_latest(dir, 1, &ck, note, sizeof note));
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
    lmf_train_options opts = {.stop = stop, .sink = sink};
    return lmf_train_run(&j->cfg, j->has_ck ? &j->ck : NULL, &opts);
}
