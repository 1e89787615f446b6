/* test_checkpoint.c — checkpoints and run folders under hostile input and faults (issue 18): every header field
 * under the checksum and range-checked, sizes bounded by the file before anything is allocated, a run refused up
 * front when it cannot fit in memory, a damaged newest checkpoint stepped over, stale temporary files removed,
 * paths saved relative to the run folder (a copied folder resumes into itself, from any working directory), and a
 * metrics file on a full device an error. */
#include "test_util.h"
#define TRAIN_FIXTURE_NAME "lmf_test_checkpoint"
#include "train_fixture.h"

#include "core/alloc.h"
#include "core/progress.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "model/weights.h"
#include "train/trainer.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* the fixture's tiny run, shorter: 4 steps of one micro-batch, checkpoints every 2, no validation */
static void ckpt_config(lmf_train_config *c, const char *out) {
    tiny_config(c, out);
    c->val_data[0] = 0, c->grad_accum = 1, c->opt.max_steps = 4, c->opt.warmup_steps = 1;
    c->eval_every = 0, c->checkpoint_every = 2;
}

static void expect_error(lmf_status got, lmf_status want, const char *a, const char *b) {
    if (got != want) fail_msg("status %s, expected %s: %s", lmf_status_name(got), lmf_status_name(want), lmf_last_error());
    if (a && !strstr(lmf_last_error(), a)) fail_msg("expected '%s' in: %s", a, lmf_last_error());
    if (b && !strstr(lmf_last_error(), b)) fail_msg("expected '%s' in: %s", b, lmf_last_error());
}

static void run_ok(const lmf_train_config *c) {
    if (lmf_train_run(c, NULL, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
}

static void copy_file(const char *from, const char *to) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp %s %s", from, to);
    assert_int_equal(system(cmd), 0);
}

static void poke(const char *path, long off, const void *bytes, size_t n) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, off, SEEK_SET);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

/* Rewrites a version-3 file as version 2 would have written it: checksum over what follows the header only. */
static void make_version2(const char *path) {
    size_t n;
    char *b = slurp(path, &n);
    uint32_t v = 2;
    memcpy(b + 8, &v, 4);
    uint64_t sum = XXH3_64bits(b + 80, n - 80);
    memcpy(b + 64, &sum, 8);
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    free(b);
}

/* Defect 3: every header field is under the checksum, and out-of-range values are refused by name. */
static void test_header_is_checksummed(void **state) {
    (void)state;
    lmf_train_config c;
    ckpt_config(&c, "hdr");
    run_ok(&c);
    char src[600], dst[600];
    path_in(src, sizeof src, "hdr/ckpt-00000004.lmfc");
    path_in(dst, sizeof dst, "hdr.lmfc");
    lmf_checkpoint ck;
    static const struct { long off; const char *name; } fields[] = {
        {32, "step"}, {40, "epoch"}, {48, "data index"}, {56, "adam_t"}, {12, "reserved"}, {72, "reserved"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        copy_file(src, dst);
        uint8_t one = 1;
        poke(dst, fields[i].off + 1, &one, 1); /* + 256: a plausible, silently wrong value */
        expect_error(lmf_checkpoint_load(dst, &ck), LMF_ERR_FORMAT, "checksum mismatch", dst);
    }
    /* a checkpoint written with a step past 2^31 - 1 (the trainers' int) is refused, naming file and field */
    assert_int_equal(lmf_checkpoint_load(src, &ck), LMF_OK);
    const char *names[] = {"step", "epoch", "data index", "adam_t"};
    uint64_t big[4][4] = {{1ULL << 31, 0, 0, 1}, {1, 1ULL << 31, 0, 1}, {1, 0, 1ULL << 32, 1}, {1, 0, 0, 1ULL << 31}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lmf_checkpoint_save(dst, ck.config_text, big[i][0], big[i][1], big[i][2], big[i][3],
                                             ck.params, ck.m, ck.v, ck.num_params), LMF_OK);
        lmf_checkpoint bad;
        expect_error(lmf_checkpoint_load(dst, &bad), LMF_ERR_FORMAT, names[i], "out of range");
        assert_non_null(strstr(lmf_last_error(), dst));
    }
    lmf_checkpoint_free(&ck);
    /* version 2 files (the checksum after the header only) are still read; their fields are range-checked */
    copy_file(src, dst);
    make_version2(dst);
    assert_int_equal(lmf_checkpoint_load(dst, &ck), LMF_OK);
    assert_int_equal(ck.version, 2);
    assert_int_equal(ck.step, 4);
    lmf_checkpoint_free(&ck);
    uint64_t step = 1ULL << 31;
    poke(dst, 32, &step, 8);
    expect_error(lmf_checkpoint_load(dst, &ck), LMF_ERR_FORMAT, "header field step = 2147483648 is out of range", dst);
}

/* Writes a checksummed checkpoint whose config says `model` and which holds n_params zero parameters. */
static void write_hostile(const char *path, const lmf_train_config *c, size_t n_params) {
    char *text = lmf_train_config_to_text(c);
    float *z = calloc(n_params, sizeof(float));
    assert_int_equal(lmf_checkpoint_save(path, text, 1, 0, 0, 1, z, z, z, n_params), LMF_OK);
    free(z);
    free(text);
}

/* Defect 1: sizes in a checksummed checkpoint are bounded by the file before anything is allocated. */
static void test_hostile_sizes(void **state) {
    (void)state;
    char dir[600], p[700];
    path_in(dir, sizeof dir, "hostile");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/ckpt-00000001.lmfc", dir);
    lmf_train_config c;
    ckpt_config(&c, "hostile");
    c.model.vocab_size = 64, c.model.max_seq_len = 16;
    c.model.n_layer = 1073741824; /* the reproduction: a 386 GB layer table */
    write_hostile(p, &c, 1000);
    lmf_weights *w;
    expect_error(lmf_weights_load_checkpoint(p, &w), LMF_ERR_FORMAT, "n_layer 1073741824", p);
    lmf_train_job *job;
    assert_int_equal(lmf_train_job_create(&job), LMF_OK);
    assert_int_equal(lmf_train_job_resume(job, dir, NULL, NULL), LMF_OK);
    expect_error(lmf_train_job_run(job, NULL, NULL), LMF_ERR_MISMATCH, "holds 1000 parameters", p);
    lmf_train_job_free(job);

    /* sizes consistent with the file, but activations of 2^12 x 2^20 tokens: refused with numbers */
    c.model.n_layer = 2, c.model.arch = LMF_ARCH_LLAMA, c.model.pos = LMF_POS_ROPE_HALF, c.model.norm = LMF_NORM_RMS;
    c.model.act = LMF_ACT_SWIGLU, c.model.bias = 0, c.model.tied_embeddings = 1;
    c.model.max_seq_len = c.seq_len = 1 << 20, c.batch_size = 1 << 12;
    write_hostile(p, &c, (size_t)lmf_param_count(&c.model));
    assert_int_equal(lmf_train_job_create(&job), LMF_OK);
    assert_int_equal(lmf_train_job_resume(job, dir, NULL, NULL), LMF_OK);
    expect_error(lmf_train_job_run(job, NULL, NULL), LMF_ERR_ARG, "GiB of memory", "but the machine has");
    lmf_train_job_free(job);
}

/* Defect 1, flags: a model that cannot fit is refused before allocating, with what it needs and what there is. */
static void test_memory_refused_up_front(void **state) {
    (void)state;
    lmf_train_config c;
    ckpt_config(&c, "huge");
    c.model.n_embd = 27000, c.model.n_head = 4, c.model.n_kv_head = 4, c.model.ffn_dim = 4 * 27000;
    c.model.n_layer = 64; /* ~2.2 TB with the optimizer state: more than any machine that runs this test */
    double t0 = lmf_now();
    expect_error(lmf_train_run(&c, NULL, NULL), LMF_ERR_ARG, "needs", "GiB");
    assert_true(lmf_now() - t0 < 2.0);
    char p[600];
    path_in(p, sizeof p, "huge");
    assert_int_not_equal(access(p, F_OK), 0); /* refused before the run folder was made */
}

/* Smaller items: a damaged newest checkpoint is set aside and the previous one resumes, saying so; with no good
 * one the error says what to remove. Stale .tmp files of a killed save are removed at the next start. */
typedef struct {
    char log[8192];
} capture;

static void cap_log(void *ctx, lmf_log_level level, const char *line) {
    (void)level;
    capture *c = ctx;
    size_t n = strlen(c->log);
    snprintf(c->log + n, sizeof c->log - n, "%s\n", line);
}

static void test_damaged_newest_and_stale_tmp(void **state) {
    (void)state;
    lmf_train_config c;
    ckpt_config(&c, "fall");
    c.keep_checkpoints = 3;
    run_ok(&c);
    char newest[600], older[600], tmp[600], dir[600];
    path_in(dir, sizeof dir, "fall");
    path_in(newest, sizeof newest, "fall/ckpt-00000004.lmfc");
    path_in(older, sizeof older, "fall/ckpt-00000002.lmfc");
    path_in(tmp, sizeof tmp, "fall/ckpt-00000006.lmfc.tmp");
    poke(newest, 5000, "garbage", 7);
    FILE *f = fopen(tmp, "wb");
    fputs("half a checkpoint", f);
    fclose(f);

    lmf_train_job *job;
    const char *from;
    uint64_t step;
    assert_int_equal(lmf_train_job_create(&job), LMF_OK);
    assert_int_equal(lmf_train_job_resume(job, dir, &from, &step), LMF_OK);
    assert_string_equal(from, older);
    assert_int_equal(step, 2);
    char aside[700];
    snprintf(aside, sizeof aside, "%s.corrupt", newest);
    assert_int_equal(access(aside, F_OK), 0);
    assert_int_not_equal(access(newest, F_OK), 0);
    assert_int_equal(lmf_train_job_set(job, "max_steps", "6"), LMF_OK);
    capture cap = {{0}};
    lmf_sink sink = {.log = cap_log, .ctx = &cap};
    if (lmf_train_job_run(job, NULL, &sink) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_train_job_free(job);
    if (!strstr(cap.log, "skipped damaged checkpoint") || !strstr(cap.log, "checksum mismatch") ||
        !strstr(cap.log, older))
        fail_msg("the fallback was not reported: %s", cap.log);
    if (!strstr(cap.log, "removed 1 unfinished checkpoint file")) fail_msg("stale .tmp not reported: %s", cap.log);
    assert_int_not_equal(access(tmp, F_OK), 0);
    lmf_checkpoint ck;
    path_in(tmp, sizeof tmp, "fall/ckpt-00000006.lmfc");
    assert_int_equal(lmf_checkpoint_load(tmp, &ck), LMF_OK);
    lmf_checkpoint_free(&ck);

    /* every checkpoint damaged: an error naming the newest file and what to do */
    char one[600];
    path_in(one, sizeof one, "alldamaged");
    assert_int_equal(mkdir(one, 0755), 0);
    path_in(one, sizeof one, "alldamaged/ckpt-00000002.lmfc");
    copy_file(older, one);
    poke(one, 5000, "garbage", 7);
    path_in(dir, sizeof dir, "alldamaged");
    assert_int_equal(lmf_train_job_create(&job), LMF_OK);
    expect_error(lmf_train_job_resume(job, dir, NULL, NULL), LMF_ERR_FORMAT, one, "remove it");
    lmf_train_job_free(job);
    assert_int_equal(access(one, F_OK), 0); /* nothing set aside when nothing resumes */
}

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, ch;
    while ((ch = fgetc(f)) != EOF) n += ch == '\n';
    fclose(f);
    return n;
}

/* Defect 4: `cp -r runA runB; train --resume runB` writes runB/metrics.jsonl, also from another directory, with
 * the run's data given by relative paths. */
static void test_copied_run_resumes_into_itself(void **state) {
    (void)state;
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tmpdir), 0);
    lmf_train_config c;
    ckpt_config(&c, "runA");
    snprintf(c.train_data, sizeof c.train_data, "train.bin");
    snprintf(c.out_dir, sizeof c.out_dir, "runA");
    c.stop_at = 2;
    assert_int_equal(lmf_train_run(&c, NULL, NULL), LMF_ERR_INTERRUPTED);
    assert_int_equal(system("cp -r runA runB"), 0);
    char a[600], b[600], runb[600];
    path_in(a, sizeof a, "runA/metrics.jsonl");
    path_in(b, sizeof b, "runB/metrics.jsonl");
    path_in(runb, sizeof runb, "runB");
    int la = count_lines(a);
    assert_int_equal(chdir("/"), 0);
    lmf_train_job *job;
    assert_int_equal(lmf_train_job_create(&job), LMF_OK);
    if (lmf_train_job_resume(job, runb, NULL, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_status s = lmf_train_job_run(job, NULL, NULL);
    lmf_train_job_free(job);
    assert_int_equal(chdir(cwd), 0);
    if (s != LMF_OK) fail_msg("resume of the copied run from /: %s", lmf_last_error());
    assert_int_equal(count_lines(a), la);         /* runA untouched */
    assert_int_equal(count_lines(b), la + 1 + 2); /* resume event + steps 3 and 4 */
    /* the saved config says so: the default metrics path stays unset, outside paths are absolute */
    char conf[600];
    path_in(conf, sizeof conf, "runB/train.conf");
    size_t n;
    char *text = slurp(conf, &n);
    assert_non_null(strstr(text, "\nmetrics = \"\"\n"));
    char want[700];
    snprintf(want, sizeof want, "train_data = \"%s/train.bin\"\n", tmpdir);
    if (!strstr(text, want)) fail_msg("expected '%s' in:\n%s", want, text);
    free(text);
}

/* Defect 5: metrics on a full device (a symlink to /dev/full) stop the run with an error naming the file. */
static void test_metrics_on_full_device(void **state) {
    (void)state;
    if (access("/dev/full", W_OK) != 0) skip();
    lmf_train_config c;
    ckpt_config(&c, "full");
    char dir[600], link[700];
    path_in(dir, sizeof dir, "full");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(link, sizeof link, "%s/metrics.jsonl", dir);
    assert_int_equal(symlink("/dev/full", link), 0);
    expect_error(lmf_train_run(&c, NULL, NULL), LMF_ERR_IO, link, "No space left on device");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_is_checksummed),
        cmocka_unit_test(test_hostile_sizes),
        cmocka_unit_test(test_memory_refused_up_front),
        cmocka_unit_test(test_damaged_newest_and_stale_tmp),
        cmocka_unit_test(test_copied_run_resumes_into_itself),
        cmocka_unit_test(test_metrics_on_full_device),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
