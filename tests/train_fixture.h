/* train_fixture.h — the tiny byte shards the training tests run on: a temp folder holding train.bin (20000
 * tokens) and val.bin (3000) of structured pseudo-text, so the loss moves. setup/teardown are cmocka group hooks;
 * the including test names its folder with TRAIN_FIXTURE_NAME. */
#ifndef LMF_TESTS_TRAIN_FIXTURE_H
#define LMF_TESTS_TRAIN_FIXTURE_H

#include "test_util.h"

#include "io/checkpoint.h"
#include "io/shard.h"
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char tmpdir[256];

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

/* A small gpt2 over the fixture's shards: 8 steps of 2 micro-batches of 4 x 16, validation every 3 and checkpoints
 * every 3 steps, no sample; its run folder is `out` in the fixture's folder. */
static inline void tiny_config(lmf_train_config *c, const char *out) {
    lmf_train_config_default(c);
    path_in(c->train_data, sizeof c->train_data, "train.bin");
    path_in(c->val_data, sizeof c->val_data, "val.bin");
    path_in(c->out_dir, sizeof c->out_dir, out);
    c->model.n_layer = 2, c->model.n_embd = 32, c->model.n_head = 4, c->model.n_kv_head = 4, c->model.ffn_dim = 64;
    c->batch_size = 4, c->seq_len = 16, c->grad_accum = 2;
    c->opt.max_steps = 8, c->opt.warmup_steps = 2;
    c->eval_every = 3, c->eval_batches = 2, c->checkpoint_every = 3, c->sample_tokens = 0;
}

/* Resumes ck from the options its text saved (stop_at cleared), as `train --resume` does: lmf_train_run's status. */
static inline lmf_status resume_saved(lmf_checkpoint *ck) {
    lmf_train_config r;
    lmf_train_config_default(&r);
    assert_int_equal(lmf_train_config_parse(&r, ck->config_text, "ckpt"), LMF_OK);
    r.stop_at = 0;
    return lmf_train_run(&r, ck, NULL);
}

static void write_shard(const char *path, int n, unsigned seed) {
    lmf_shard_writer w;
    assert_int_equal(lmf_shard_writer_open(&w, path, 64, 63, LMF_TOKENIZER_BYTES), LMF_OK);
    srand(seed);
    for (int i = 0; i < n; i++) {
        uint32_t t = (uint32_t)((i * 7 + (rand() % 3)) % 60);
        assert_int_equal(lmf_shard_writer_put(&w, &t, 1), LMF_OK);
    }
    assert_int_equal(lmf_shard_writer_close(&w), LMF_OK);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/%s_XXXXXX", TRAIN_FIXTURE_NAME);
    if (!mkdtemp(tmpdir)) return -1;
    char p[512];
    path_in(p, sizeof p, "train.bin");
    write_shard(p, 20000, 1);
    path_in(p, sizeof p, "val.bin");
    write_shard(p, 3000, 2);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

/* The "loss" fields of the step lines of run folder out's metrics.jsonl, in order, as written (every digit). */
static inline int read_losses(const char *out, char losses[][32], int max) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", tmpdir, out);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        char *p = strstr(line, "\"loss\":");
        if (p) sscanf(p + 7, "%31[^,]", losses[n++]);
    }
    fclose(f);
    return n;
}

static inline void load_ckpt(const char *out, int step, lmf_checkpoint *ck) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s/ckpt-%08d.lmfc", tmpdir, out, step);
    if (lmf_checkpoint_load(p, ck) != LMF_OK) fail_msg("%s", lmf_last_error());
}

/* Two runs' checkpoints of one step hold the same bits: parameters, both AdamW moments and the data position. */
static inline void assert_same_checkpoints(const char *a, const char *b, int step) {
    lmf_checkpoint fa, fb;
    load_ckpt(a, step, &fa);
    load_ckpt(b, step, &fb);
    assert_int_equal(fa.num_params, fb.num_params);
    assert_memory_equal(fa.params, fb.params, fa.num_params * 3 * sizeof(float)); /* params, m, v */
    assert_int_equal(fa.epoch, fb.epoch);
    assert_int_equal(fa.index, fb.index);
    lmf_checkpoint_free(&fa);
    lmf_checkpoint_free(&fb);
}

#endif
