/* test_train.c — the training loop's promises: exact resume, checkpoints that refuse corruption and mismatch,
 * config parsing with clear errors (.conf and TOML), shard validation, the data loader's determinism, a per-run
 * stop flag, and a library run that prints nothing (its caller's sink gets every line). */
#include "test_util.h"
#define TRAIN_FIXTURE_NAME "lmf_test_train"
#include "train_fixture.h"

#include "io/shard.h"
#include "io/checkpoint.h"
#include "train/loader.h"
#include "train/trainer.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_resume_is_exact(void **state) {
    lmf_train_config a, b;
    tiny_config(&a, "full");
    assert_int_equal(lmf_train_run(&a, NULL, NULL), LMF_OK);

    tiny_config(&b, "split");
    b.stop_at = 4;
    assert_int_equal(lmf_train_run(&b, NULL, NULL), LMF_ERR_INTERRUPTED);
    lmf_checkpoint ck;
    load_ckpt("split", 4, &ck);
    assert_int_equal(ck.step, 4);
    assert_int_equal(resume_saved(&ck), LMF_OK);
    lmf_checkpoint_free(&ck);

    char la[16][32], lb[16][32];
    int na = read_losses("full", la, 16);
    int nb = read_losses("split", lb, 16);
    assert_int_equal(na, 8);
    assert_int_equal(nb, 8);
    for (int i = 0; i < 8; i++)
        if (strcmp(la[i], lb[i])) fail_msg("step %d: loss %s uninterrupted vs %s resumed", i, la[i], lb[i]);
    /* losses went down: the run trained */
    assert_true(atof(la[7]) < atof(la[0]));

    assert_same_checkpoints("full", "split", 8);
}

static void corrupt_and_expect(const char *src, const char *dst, long offset, long truncate_to, const char *msg) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp %s %s", src, dst);
    assert_int_equal(system(cmd), 0);
    if (offset >= 0) {
        FILE *f = fopen(dst, "r+b");
        fseek(f, offset, SEEK_SET);
        int c = fgetc(f);
        fseek(f, offset, SEEK_SET);
        fputc(c ^ 0x10, f);
        fclose(f);
    }
    if (truncate_to >= 0) assert_int_equal(truncate(dst, truncate_to), 0);
    lmf_checkpoint ck;
    assert_int_equal(lmf_checkpoint_load(dst, &ck), LMF_ERR_FORMAT);
    if (!strstr(lmf_last_error(), msg)) fail_msg("expected '%s' in: %s", msg, lmf_last_error());
    if (!strstr(lmf_last_error(), dst)) fail_msg("error does not name the file: %s", lmf_last_error());
}

static void test_corrupt_checkpoint(void **state) {
    lmf_train_config c;
    tiny_config(&c, "corrupt");
    c.opt.max_steps = 2;
    assert_int_equal(lmf_train_run(&c, NULL, NULL), LMF_OK);
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/corrupt/ckpt-00000002.lmfc", tmpdir);
    path_in(dst, sizeof dst, "bad.lmfc");
    struct stat sb;
    assert_int_equal(stat(src, &sb), 0);
    corrupt_and_expect(src, dst, sb.st_size / 2, -1, "checksum mismatch");
    corrupt_and_expect(src, dst, sb.st_size - 1, -1, "checksum mismatch");
    corrupt_and_expect(src, dst, -1, sb.st_size - 100, "does not match the file size");
    corrupt_and_expect(src, dst, 0, -1, "bad magic");
    corrupt_and_expect(src, dst, 20, -1, "does not match the file size");
    corrupt_and_expect(src, dst, -1, 10, "shorter than");
    /* a version-1 file (the older checksum) is refused, naming the file and both versions */
    corrupt_and_expect(src, dst, 8, -1, "checkpoint version 19, this build reads versions 2, 3 and 4");
    corrupt_and_expect(src, dst, 9, -1, "version 1 used an older checksum");
    /* no temporary file is left behind by successful saves */
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", src);
    assert_int_not_equal(access(tmp, F_OK), 0);
}

static void test_mismatched_checkpoint(void **state) {
    lmf_train_config c;
    tiny_config(&c, "mismatch");
    c.opt.max_steps = 2;
    assert_int_equal(lmf_train_run(&c, NULL, NULL), LMF_OK);
    lmf_checkpoint ck;
    load_ckpt("mismatch", 2, &ck);
    c.model.n_layer = 3;
    c.opt.max_steps = 4;
    assert_int_equal(lmf_train_run(&c, &ck, NULL), LMF_ERR_MISMATCH);
    assert_non_null(strstr(lmf_last_error(), "n_layer"));
    lmf_checkpoint_free(&ck);
}

static void test_config_parsing(void **state) {
    lmf_train_config c;
    lmf_train_config_default(&c);
    const char *text = "# comment\n\narch = llama\nn_layer = 3 # trailing\nlr=3e-4\ntied-embeddings = false\n"
                       "out_dir = \"a dir\"\n";
    assert_int_equal(lmf_train_config_parse(&c, text, "t.conf"), LMF_OK);
    assert_int_equal(c.model.arch, LMF_ARCH_LLAMA);
    assert_int_equal(c.model.n_layer, 3);
    assert_true(fabsf(c.opt.lr - 3e-4f) < 1e-10f);
    assert_int_equal(c.model.tied_embeddings, 0);
    assert_string_equal(c.out_dir, "a dir");
    /* round trip */
    char *t = lmf_train_config_to_text(&c);
    lmf_train_config d;
    lmf_train_config_default(&d);
    assert_int_equal(lmf_train_config_parse(&d, t, "roundtrip"), LMF_OK);
    assert_memory_equal(&c, &d, sizeof c);
    free(t);
    /* errors name the line and the option */
    assert_int_equal(lmf_train_config_parse(&c, "lr = 1\nn_layer = two\n", "x.conf"), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "x.conf:2"));
    assert_non_null(strstr(lmf_last_error(), "n_layer"));
    assert_int_equal(lmf_train_config_parse(&c, "bogus = 1\n", "x.conf"), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "unknown option 'bogus'"));
    assert_int_equal(lmf_train_config_parse(&c, "just words\n", "x.conf"), LMF_ERR_ARG);
    assert_int_equal(lmf_train_config_parse(&c, "lr = nan\n", "x.conf"), LMF_ERR_ARG);
    assert_int_equal(lmf_train_config_parse(&c, "arch = bert\n", "x.conf"), LMF_ERR_ARG);
    lmf_train_config_default(&c);
    c.opt.warmup_steps = c.opt.max_steps + 1;
    strcpy(c.train_data, "x");
    assert_int_equal(lmf_train_config_validate(&c), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "warmup_steps"));
}

static void test_shard_validation(void **state) {
    char p[512];
    path_in(p, sizeof p, "train.bin");
    lmf_shard *s;
    assert_int_equal(lmf_shard_open(p, &s), LMF_OK);
    assert_int_equal(s->n_tokens, 20000);
    assert_int_equal(s->vocab_size, 64);
    lmf_shard_close(s);
    char bad[600], cmd[2400];
    path_in(bad, sizeof bad, "bad.bin");
    snprintf(cmd, sizeof cmd, "head -c 1000 %s > %s", p, bad);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(lmf_shard_open(bad, &s), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "tokens"));
    /* a token outside the vocabulary is reported with its offset */
    snprintf(cmd, sizeof cmd, "cp %s %s && printf '\\377\\377' | dd of=%s bs=1 seek=200 conv=notrunc 2>/dev/null", p,
             bad, bad);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(lmf_shard_open(bad, &s), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "byte offset 200"));
    assert_int_equal(lmf_shard_open("/nonexistent/shard.bin", &s), LMF_ERR_IO);
}

static void test_loader_determinism(void **state) {
    char p[512];
    path_in(p, sizeof p, "train.bin");
    lmf_shard *s;
    assert_int_equal(lmf_shard_open(p, &s), LMF_OK);
    lmf_loader a, b;
    int32_t ia[64], ta[64], ib[64], tb[64];
    assert_int_equal(lmf_loader_init(&a, s, 4, 16, 7, 1), LMF_OK);
    assert_int_equal(lmf_loader_init(&b, s, 4, 16, 7, 1), LMF_OK);
    /* run `a` across an epoch boundary, then jump `b` to a's position: the next batches agree */
    uint64_t batches = a.n_windows / 4 + 3;
    for (uint64_t i = 0; i < batches; i++) lmf_loader_next(&a, ia, ta);
    assert_int_equal(a.epoch, 1);
    assert_int_equal(lmf_loader_seek(&b, a.epoch, a.index), LMF_OK);
    lmf_loader_next(&a, ia, ta);
    lmf_loader_next(&b, ib, tb);
    assert_memory_equal(ia, ib, sizeof ia);
    assert_memory_equal(ta, tb, sizeof ta);
    for (int i = 0; i < 15; i++) assert_int_equal(ta[i], ia[i + 1]); /* targets are inputs shifted by one */
    lmf_loader_free(&a);
    lmf_loader_free(&b);
    lmf_shard_close(s);
}

/* The same options from the old `name = value` file and from TOML (flat or grouped) give the same config. */
static void test_toml_config(void **state) {
    const char *names[] = {"demo", "gpt2-124m", "llama-small"};
    for (int i = 0; i < 3; i++) {
        char p[1024];
        lmf_train_config a, b;
        lmf_train_config_default(&a);
        lmf_train_config_default(&b);
        snprintf(p, sizeof p, "%s/configs/%s.conf", LMF_SOURCE_DIR, names[i]);
        if (lmf_train_config_load(&a, p) != LMF_OK) fail_msg("%s", lmf_last_error());
        snprintf(p, sizeof p, "%s/configs/%s.toml", LMF_SOURCE_DIR, names[i]);
        if (lmf_train_config_load(&b, p) != LMF_OK) fail_msg("%s", lmf_last_error());
        if (memcmp(&a, &b, sizeof a)) fail_msg("configs/%s.conf and .toml differ", names[i]);
    }
    const char *conf = "arch = llama\nn_layer = 3\nlr = 3e-4\ntied_embeddings = false\nout_dir = \"a dir\"\n"
                       "seed = 7\ngrad_clip = 1\n";
    const char *flat = "arch = \"llama\"\nn_layer = 3\nlr = 3e-4\ntied_embeddings = false\nout_dir = \"a dir\"\n"
                       "seed = 7\ngrad_clip = 1\n";
    const char *grouped = "seed = 7\n[data]\nout_dir = 'a dir'\n[model]\narch = \"llama\"\nn_layer = 3\n"
                          "tied_embeddings = false\n[optimizer]\nlr = 3e-4\ngrad_clip = 1.0\n";
    lmf_train_config a, b, c;
    lmf_train_config_default(&a), lmf_train_config_default(&b), lmf_train_config_default(&c);
    assert_int_equal(lmf_train_config_parse(&a, conf, "t.conf"), LMF_OK);
    if (lmf_train_config_parse_toml(&b, flat, strlen(flat), "flat.toml") != LMF_OK) fail_msg("%s", lmf_last_error());
    if (lmf_train_config_parse_toml(&c, grouped, strlen(grouped), "g.toml") != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_memory_equal(&a, &b, sizeof a);
    assert_memory_equal(&a, &c, sizeof a);
    /* errors name the file, line and column, the option and what was expected */
    struct {
        const char *text, *want;
    } bad[] = {
        {"n_layer = \"two\"\n", "x.toml:1:1: n_layer expects an integer, got a string"},
        {"lr = 1\nn_layer = 2.5\n", "x.toml:2:1: n_layer expects an integer"},
        {"arch = 1\n", "arch expects a \"string\""},
        {"arch = \"bert\"\n", "unknown model family 'bert'"},
        {"tied_embeddings = 1\n", "tied_embeddings expects true or false"},
        {"lr = nan\n", "lr expects a finite number"},
        {"lr = 1e300\n", "lr expects a finite number"},
        {"n_layer = 3000000000\n", "n_layer expects an integer, got '3000000000'"},
        {"bogus = 1\n", "x.toml:1:1: unknown option 'bogus'"},
        {"[model]\nlr = 1\n", "x.toml:2:1: lr belongs in [optimizer]"},
        {"[modle]\nn_layer = 1\n", "unknown table [modle]"},
        {"lr = 1\n[optimizer]\nlr = 2\n", "x.toml:3:1: lr is already set at line 1"},
        {"lr = \n", "x.toml:1:"}, /* TOML syntax: the parser's LMF_ERR_FORMAT */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lmf_train_config_default(&a);
        lmf_status want = i + 1 == sizeof bad / sizeof bad[0] ? LMF_ERR_FORMAT : LMF_ERR_ARG;
        assert_int_equal(lmf_train_config_parse_toml(&a, bad[i].text, strlen(bad[i].text), "x.toml"), want);
        if (!strstr(lmf_last_error(), bad[i].want)) fail_msg("'%s': expected '%s' in: %s", bad[i].text, bad[i].want,
                                                               lmf_last_error());
    }
    /* a .toml file name selects TOML; anything else the old format */
    char p[512];
    path_in(p, sizeof p, "cfg.toml");
    FILE *f = fopen(p, "w");
    fputs(grouped, f);
    fclose(f);
    lmf_train_config_default(&b);
    assert_int_equal(lmf_train_config_load(&b, p), LMF_OK);
    assert_memory_equal(&b, &c, sizeof b);
    path_in(p, sizeof p, "cfg.conf");
    f = fopen(p, "w");
    fputs(grouped, f);
    fclose(f);
    assert_int_equal(lmf_train_config_load(&b, p), LMF_ERR_ARG); /* `[data]` is no `name = value` line */
}

/* A sink that records what a run reports, and raises the run's own stop flag after `stop_after` steps. */
typedef struct {
    char log[8192];
    size_t text_len;
    int begins, updates, ends;
    long last_done;
    int stop_after;
    volatile sig_atomic_t stop;
} capture;

static void cap_log(void *ctx, lmf_log_level level, const char *line) {
    capture *c = ctx;
    size_t n = strlen(c->log);
    snprintf(c->log + n, sizeof c->log - n, "%s\n", line);
}

static void cap_progress(void *ctx, lmf_progress_event ev, long done, long total, const char *unit,
                         const char *status) {
    capture *c = ctx;
    if (ev == LMF_PROGRESS_BEGIN) c->begins++;
    if (ev == LMF_PROGRESS_END) c->ends++;
    if (ev != LMF_PROGRESS_UPDATE) return;
    c->updates++, c->last_done = done;
    assert_non_null(strstr(status, "loss "));
    if (c->stop_after && done >= c->stop_after) c->stop = 1;
}

static void cap_text(void *ctx, const char *data, size_t len) { ((capture *)ctx)->text_len += len; }

/* A stop request belongs to one run: raising its flag stops it with a checkpoint, the continuation is exact. */
static void test_stop_flag_is_per_run(void **state) {
    lmf_train_config a, b;
    tiny_config(&a, "stopfull");
    assert_int_equal(lmf_train_run(&a, NULL, NULL), LMF_OK);

    capture cap = {.stop_after = 5};
    lmf_sink sink = {cap_log, cap_progress, cap_text, &cap};
    lmf_train_options opts = {.stop = &cap.stop, .sink = &sink};
    tiny_config(&b, "stopped");
    assert_int_equal(lmf_train_run(&b, NULL, &opts), LMF_ERR_INTERRUPTED);
    assert_non_null(strstr(lmf_last_error(), "stopped at step 5"));
    assert_int_equal(cap.last_done, 5);
    assert_int_equal(cap.ends, 1);
    /* another run in the same process is not affected by that flag */
    lmf_checkpoint ck;
    load_ckpt("stopped", 5, &ck);
    lmf_train_config r;
    lmf_train_config_default(&r);
    assert_int_equal(lmf_train_config_parse(&r, ck.config_text, "ckpt"), LMF_OK);
    assert_int_equal(lmf_train_run(&r, &ck, NULL), LMF_OK);
    lmf_checkpoint_free(&ck);
    assert_same_checkpoints("stopfull", "stopped", 8);
}

/* The library path of a run writes nothing to stdout or stderr: everything reaches the caller's sink. */
static void test_run_is_silent(void **state) {
    lmf_train_config c;
    tiny_config(&c, "silent");
    c.sample_tokens = 12, c.opt.max_steps = 4;
    capture cap = {0};
    lmf_sink sink = {cap_log, cap_progress, cap_text, &cap};
    lmf_train_options opts = {.sink = &sink};
    char p[512];
    path_in(p, sizeof p, "silent.out");
    fflush(stdout), fflush(stderr);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644), out = dup(1), err = dup(2);
    assert_true(fd >= 0 && out >= 0 && err >= 0);
    dup2(fd, 1), dup2(fd, 2);
    lmf_status s = lmf_train_run(&c, NULL, &opts);
    fflush(stdout), fflush(stderr);
    dup2(out, 1), dup2(err, 2);
    close(fd), close(out), close(err);
    assert_int_equal(s, LMF_OK);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    if (sb.st_size) fail_msg("the run wrote %lld bytes to stdout/stderr (%s)", (long long)sb.st_size, p);
    assert_non_null(strstr(cap.log, "lmforge train: gpt2, "));
    assert_non_null(strstr(cap.log, "step 3: val loss "));
    assert_non_null(strstr(cap.log, "checkpoint: "));
    assert_non_null(strstr(cap.log, "final val loss "));
    assert_non_null(strstr(cap.log, "sample (12 tokens"));
    assert_int_equal(cap.begins, 1);
    assert_int_equal(cap.updates, 4);
    assert_int_equal(cap.ends, 1);
    assert_true(cap.text_len > 0); /* the sample's text went to the sink too */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_parsing),     cmocka_unit_test(test_shard_validation),
        cmocka_unit_test(test_loader_determinism), cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_corrupt_checkpoint), cmocka_unit_test(test_mismatched_checkpoint),
        cmocka_unit_test(test_toml_config),        cmocka_unit_test(test_stop_flag_is_per_run),
        cmocka_unit_test(test_run_is_silent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
