/* test_train_job.c — the public training-run API (lmforge.h, lmf_train_job_*), as a program that has only the
 * library would use it: options by name and by flag with the CLI's messages, a config file, a run that reports
 * through a capturing sink, the stop flag (set before the run: LMF_ERR_INTERRUPTED and a checkpoint), and resume
 * continuing that checkpoint to the same weights as an uninterrupted run. */
#include "test_util.h"
#define TRAIN_FIXTURE_NAME "lmf_test_train_job"
#include "train_fixture.h"

#include "io/checkpoint.h" /* to compare the weights of two runs */
#include "io/shard.h"      /* to write the tiny shards */
#include "lmforge.h"

#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void set(lmf_train_job *j, const char *option, const char *value) {
    if (lmf_train_job_set(j, option, value) != LMF_OK) fail_msg("set %s = %s: %s", option, value, lmf_last_error());
}

/* A tiny model on the tiny shards, writing into tmpdir/out; names and flags mixed on purpose. */
static lmf_train_job *tiny_job(const char *out, int max_steps) {
    lmf_train_job *j;
    assert_int_equal(lmf_train_job_create(&j), LMF_OK);
    char p[512], steps[16];
    path_in(p, sizeof p, "train.bin");
    set(j, "train_data", p);
    path_in(p, sizeof p, "val.bin");
    set(j, "--val-data", p);
    path_in(p, sizeof p, out);
    set(j, "out_dir", p);
    const char *opts[][2] = {{"n_layer", "2"}, {"n_embd", "32"},        {"n-head", "4"},         {"n_kv_head", "4"},
                             {"ffn_dim", "64"}, {"--batch-size", "4"},  {"seq_len", "16"},       {"grad_accum", "2"},
                             {"warmup_steps", "2"}, {"eval_every", "3"}, {"eval_batches", "2"},
                             {"checkpoint_every", "3"}, {"sample_tokens", "0"}};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) set(j, opts[i][0], opts[i][1]);
    snprintf(steps, sizeof steps, "%d", max_steps);
    set(j, "max_steps", steps);
    return j;
}

static int exists(const char *out, int step) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s/ckpt-%08d.lmfc", tmpdir, out, step);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* A sink that records what a run reports. */
typedef struct {
    char log[8192];
    size_t text_len;
    int begins, updates, ends;
    long last_done;
} capture;

static void cap_log(void *ctx, lmf_log_level level, const char *line) {
    capture *c = ctx;
    size_t n = strlen(c->log);
    snprintf(c->log + n, sizeof c->log - n, "%s\n", line);
}

static void cap_progress(void *ctx, lmf_progress_event ev, long done, long total, const char *unit,
                         const char *status) {
    capture *c = ctx;
    assert_string_equal(unit, "steps");
    if (ev == LMF_PROGRESS_BEGIN) c->begins++;
    if (ev == LMF_PROGRESS_END) c->ends++;
    if (ev == LMF_PROGRESS_UPDATE) c->updates++, c->last_done = done;
}

static void cap_text(void *ctx, const char *data, size_t len) { ((capture *)ctx)->text_len += len; }

/* Options: the names of the config file and the flags, with the messages `lmforge train` prints. */
static void test_options(void **state) {
    lmf_train_job *j;
    assert_int_equal(lmf_train_job_create(&j), LMF_OK);
    assert_int_equal(lmf_train_job_set(j, "--bogus", "1"), LMF_ERR_ARG);
    assert_string_equal(lmf_last_error(), "unknown flag '--bogus' (see `lmforge train --help`)");
    assert_int_equal(lmf_train_job_set(j, "bogus", "1"), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "unknown option 'bogus'"));
    assert_int_equal(lmf_train_job_set(j, "--lr", NULL), LMF_ERR_ARG);
    assert_string_equal(lmf_last_error(), "flag --lr needs a value");
    assert_int_equal(lmf_train_job_set(j, "n_layer", "x"), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "option n_layer: n_layer expects an integer"));
    char p[512];
    path_in(p, sizeof p, "bad.toml");
    FILE *f = fopen(p, "w");
    fputs("[optimizer]\nlr = \"oops\"\n", f);
    fclose(f);
    assert_int_equal(lmf_train_job_load_config(j, p), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "bad.toml:2:1: lr expects a number"));
    /* no shard given: run refuses, writing nothing */
    assert_int_equal(lmf_train_job_run(j, NULL, NULL), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "no training shard"));
    /* resume from a folder without checkpoints fails and leaves the job as it was */
    path_in(p, sizeof p, "empty");
    const char *ck = "untouched";
    assert_int_equal(lmf_train_job_resume(j, p, &ck, NULL), LMF_ERR_IO);
    assert_string_equal(ck, "untouched");
    lmf_train_job_free(j);
    lmf_train_job_free(NULL);
}

/* A whole run through the job: everything reaches the sink; a job runs once. */
static void test_run(void **state) {
    lmf_train_job *j = tiny_job("run", 4);
    set(j, "sample_tokens", "12");
    capture cap = {0};
    lmf_sink sink = {cap_log, cap_progress, cap_text, &cap};
    assert_int_equal(lmf_train_job_run(j, NULL, &sink), LMF_OK);
    assert_non_null(strstr(cap.log, "lmforge train: gpt2, "));
    assert_non_null(strstr(cap.log, "step 3: val loss "));
    assert_non_null(strstr(cap.log, "checkpoint: "));
    assert_non_null(strstr(cap.log, "final val loss "));
    assert_int_equal(cap.begins, 1);
    assert_int_equal(cap.updates, 4);
    assert_int_equal(cap.ends, 1);
    assert_int_equal(cap.last_done, 4);
    assert_true(cap.text_len > 0);
    assert_true(exists("run", 4));
    assert_int_equal(lmf_train_job_run(j, NULL, &sink), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "has run already"));
    lmf_train_job_free(j);
}

/* The stop flag raised before the run: it stops at once with a checkpoint; a new job resumes it (flags may extend
 * the schedule) and ends with the weights of the uninterrupted run. */
static void test_stop_and_resume(void **state) {
    lmf_train_job *full = tiny_job("full", 6);
    assert_int_equal(lmf_train_job_run(full, NULL, NULL), LMF_OK);
    lmf_train_job_free(full);

    lmf_train_job *j = tiny_job("stopped", 6);
    volatile sig_atomic_t stop = 1;
    capture cap = {0};
    lmf_sink sink = {cap_log, cap_progress, cap_text, &cap};
    assert_int_equal(lmf_train_job_run(j, &stop, &sink), LMF_ERR_INTERRUPTED);
    assert_non_null(strstr(lmf_last_error(), "stopped at step 0"));
    assert_int_equal(cap.updates, 0);
    assert_int_equal(cap.ends, 1);
    assert_true(exists("stopped", 0));
    lmf_train_job_free(j);

    assert_int_equal(lmf_train_job_create(&j), LMF_OK);
    char dir[512];
    path_in(dir, sizeof dir, "stopped");
    const char *ck = NULL;
    uint64_t step = 99;
    assert_int_equal(lmf_train_job_resume(j, dir, &ck, &step), LMF_OK);
    assert_non_null(strstr(ck, "stopped/ckpt-00000000.lmfc"));
    assert_int_equal(step, 0);
    set(j, "--n-layer", "3"); /* the model's shape cannot change on resume */
    assert_int_equal(lmf_train_job_run(j, NULL, NULL), LMF_ERR_MISMATCH);
    lmf_train_job_free(j);

    assert_int_equal(lmf_train_job_create(&j), LMF_OK);
    assert_int_equal(lmf_train_job_resume(j, dir, NULL, NULL), LMF_OK);
    stop = 0;
    assert_int_equal(lmf_train_job_run(j, &stop, NULL), LMF_OK);
    lmf_train_job_free(j);
    assert_same_checkpoints("full", "stopped", 6);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_stop_and_resume),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
