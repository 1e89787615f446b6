/* test_dist.c — the pieces of data-parallel training that need no second process: the comm.h contract of the
 * single-process backend for the collectives ZeRO uses, the dp x tp x pp grid's arithmetic and messages, ZeRO-1's
 * shard ranges, AdamW over a range (pieces == the whole, bit for bit), the loader's skip (== reading), and the
 * checkpoint set (manifest + shards): saved, verified, read back over any range (re-sharding), damaged shards
 * refused, cut-short saves cleaned up, pruned together. The multi-process behaviour is tests/cli_mpi.sh's. */
#include "test_util.h"

#include "core/status.h"
#include "dist/comm.h"
#include "dist/grid.h"
#include "dist/zero.h"
#include "io/checkpoint.h"
#include "io/shard.h"
#include "model/model.h"
#include "train/loader.h"
#include "train/optim.h"

#include <sys/stat.h>
#include <unistd.h>

static void test_self_collectives(void **state) {
    lmf_comm *c;
    assert_int_equal(lmf_comm_open("self", &c), LMF_OK);
    float send[3] = {1, 2, 3}, recv[3] = {0};
    assert_int_equal(lmf_comm_reduce_scatter_sum(c, send, recv, 3), LMF_OK);
    assert_memory_equal(send, recv, sizeof send);
    char a[4] = "abc", b[4] = "";
    assert_int_equal(lmf_comm_allgather(c, a, b, 4), LMF_OK);
    assert_string_equal(b, "abc");
    assert_int_equal(lmf_comm_send(c, a, 4, 1, 0), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "rank 1"));
    lmf_comm *sub;
    assert_int_equal(lmf_comm_split(c, 0, 0, &sub), LMF_OK);
    assert_int_equal(lmf_comm_size(sub), 1);
    lmf_comm_close(sub);
    lmf_comm_close(c);
    assert_int_equal(lmf_comm_open("nccl", &c), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "unknown backend 'nccl'"));
}

static void test_grid(void **state) {
    /* Megatron's order: tp fastest, then dp, then pp */
    int d, t, p;
    lmf_grid_coords(5, 2, 2, 2, &d, &t, &p);
    assert_int_equal(t, 1), assert_int_equal(d, 0), assert_int_equal(p, 1);
    lmf_grid_coords(2, 2, 2, 2, &d, &t, &p);
    assert_int_equal(t, 0), assert_int_equal(d, 1), assert_int_equal(p, 0);
    int dp = 0;
    assert_int_equal(lmf_grid_check(8, &dp, 2, 2), LMF_OK);
    assert_int_equal(dp, 2);
    dp = 3;
    assert_int_equal(lmf_grid_check(8, &dp, 1, 1), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "--dp 3 x --tp 1 x --pp 1 = 3 ranks, but the job has 8"));
    dp = 0;
    assert_int_equal(lmf_grid_check(6, &dp, 4, 1), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "does not divide the 6 ranks"));
    lmf_grid *g;
    assert_int_equal(lmf_grid_open("self", 0, 1, 1, &g), LMF_OK);
    assert_int_equal(g->dp_size, 1);
    assert_int_equal(lmf_comm_size(g->dp), 1);
    lmf_grid_close(g);
    assert_int_equal(lmf_grid_open("self", 2, 1, 1, &g), LMF_ERR_ARG);
}

static void test_zero_ranges(void **state) {
    /* the shards tile [0, n) in rank order; more ranks than parameters leaves empty shards */
    size_t ns[] = {1, 7, 8, 1000003};
    for (int N = 1; N <= 5; N++)
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            size_t prev = 0, lo, hi;
            for (int r = 0; r < N; r++) {
                lmf_zero_range(ns[k], N, r, &lo, &hi);
                assert_true(lo == prev && hi >= lo);
                prev = hi;
            }
            assert_true(prev == ns[k]);
        }
    /* one rank: reduce-scatter and all-gather leave the buffer as it is, in any bucket size */
    float g[11];
    for (int i = 0; i < 11; i++) g[i] = (float)i * 0.5f;
    lmf_zero z;
    lmf_zero_init(&z, lmf_comm_self(), 11, 4);
    assert_int_equal(lmf_zero_reduce_scatter(&z, g), LMF_OK);
    assert_int_equal(lmf_zero_allgather(&z, g), LMF_OK);
    for (int i = 0; i < 11; i++) assert_true(g[i] == (float)i * 0.5f);
    lmf_zero_free(&z);
}

static void test_adamw_range_pieces(void **state) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_GPT2);
    c.vocab_size = 40, c.max_seq_len = 8, c.n_layer = 2, c.n_embd = 16, c.n_head = 2, c.n_kv_head = 2, c.ffn_dim = 32;
    lmf_model *a = lmf_model_create(&c, 1, 8, 1), *b = lmf_model_create(&c, 1, 8, 1);
    lmf_model_init_weights(a, 3), lmf_model_init_weights(b, 3);
    size_t n = a->num_params;
    fill_normal(a->grads, (long)n, 5, 0.1f);
    memcpy(b->grads, a->grads, n * sizeof(float));
    lmf_adamw_hparams hp = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f};
    lmf_adamw whole, part[3];
    lmf_adamw_init(&whole, n);
    /* three shards cutting through tensors (ZeRO's ranges do not follow tensor boundaries) */
    for (int r = 0; r < 3; r++) {
        size_t lo, hi;
        lmf_zero_range(n, 3, r, &lo, &hi);
        lmf_adamw_init_shard(&part[r], lo, hi - lo);
        memset(part[r].m, 0, (hi - lo) * sizeof(float)), memset(part[r].v, 0, (hi - lo) * sizeof(float));
    }
    memset(whole.m, 0, n * sizeof(float)), memset(whole.v, 0, n * sizeof(float));
    for (int step = 0; step < 3; step++) {
        lmf_adamw_apply(&whole, a, &hp, 1e-2f, 2.0f);
        for (int r = 0; r < 3; r++) lmf_adamw_apply_range(&part[r], b, &hp, 1e-2f, 2.0f);
    }
    assert_memory_equal(a->params, b->params, n * sizeof(float));
    for (int r = 0; r < 3; r++) {
        assert_memory_equal(whole.m + part[r].lo, part[r].m, part[r].n * sizeof(float));
        lmf_adamw_free(&part[r]);
    }
    lmf_adamw_free(&whole);
    lmf_model_free(a), lmf_model_free(b);
}

static char *tmpdir(void) {
    char *d = strdup("/tmp/lmf_dist_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void test_loader_skip(void **state) {
    char *d = tmpdir(), path[256];
    snprintf(path, sizeof path, "%s/s.bin", d);
    lmf_shard_writer w;
    assert_int_equal(lmf_shard_writer_open(&w, path, 300, -1, 0), LMF_OK);
    uint32_t toks[1000];
    for (int i = 0; i < 1000; i++) toks[i] = (uint32_t)(i * 7 % 300);
    assert_int_equal(lmf_shard_writer_put(&w, toks, 1000), LMF_OK);
    assert_int_equal(lmf_shard_writer_close(&w), LMF_OK);
    lmf_shard *sh;
    assert_int_equal(lmf_shard_open(path, &sh), LMF_OK);
    lmf_loader a, b;
    assert_int_equal(lmf_loader_init(&a, sh, 3, 16, 9, 1), LMF_OK); /* 62 windows: epochs turn over mid-skip */
    assert_int_equal(lmf_loader_init(&b, sh, 3, 16, 9, 1), LMF_OK);
    int32_t ia[48], ta[48], ib[48], tb[48];
    for (int k = 0; k < 60; k++) {
        for (int j = 0; j < k % 4; j++) lmf_loader_next(&a, ia, ta);
        lmf_loader_skip(&b, (uint64_t)(k % 4) * 3);
        assert_true(a.epoch == b.epoch && a.index == b.index);
        lmf_loader_next(&a, ia, ta), lmf_loader_next(&b, ib, tb);
        assert_memory_equal(ia, ib, sizeof ia);
    }
    lmf_loader_free(&a), lmf_loader_free(&b);
    lmf_shard_close(sh);
    unlink(path), rmdir(d), free(d);
}

static void test_checkpoint_set(void **state) {
    char *d = tmpdir(), man[256], p[300];
    snprintf(man, sizeof man, "%s/ckpt-00000007.lmfc", d);
    enum { P = 1001, N = 3 };
    float params[P], m[P], v[P];
    for (int i = 0; i < P; i++) params[i] = (float)i, m[i] = (float)i * 2, v[i] = (float)i * 3;
    uint64_t lo[N], hi[N], sum[N];
    for (int r = 0; r < N; r++) {
        size_t a, b;
        lmf_zero_range(P, N, r, &a, &b);
        lo[r] = a, hi[r] = b;
        assert_int_equal(lmf_checkpoint_save_shard(man, r, N, 7, a, b, m + a, v + a, &sum[r]), LMF_OK);
    }
    /* shards without their manifest: a cut-short save, removed at the next start */
    assert_int_equal(lmf_checkpoint_remove_stale(d), N);
    for (int r = 0; r < N; r++) assert_int_equal(lmf_checkpoint_save_shard(man, r, N, 7, lo[r], hi[r], m + lo[r],
                                                                             v + lo[r], &sum[r]), LMF_OK);
    assert_int_equal(lmf_checkpoint_save_manifest(man, "n_layer = 1\n", 7, 2, 5, 7, params, P, N, lo, hi, sum), LMF_OK);
    assert_int_equal(lmf_checkpoint_remove_stale(d), 0);
    lmf_checkpoint ck;
    assert_int_equal(lmf_checkpoint_load(man, &ck), LMF_OK);
    assert_int_equal(ck.version, 4);
    assert_int_equal(ck.n_shards, N);
    assert_true(ck.m == NULL && ck.step == 7 && ck.epoch == 2 && ck.index == 5 && ck.adam_t == 7);
    assert_memory_equal(ck.params, params, sizeof params);
    /* any range, across shard boundaries: two ranks' shards, or one rank's whole */
    float mm[P], vv[P];
    assert_int_equal(lmf_checkpoint_read_moments(&ck, 0, P, mm, vv), LMF_OK);
    assert_memory_equal(mm, m, sizeof m), assert_memory_equal(vv, v, sizeof v);
    assert_int_equal(lmf_checkpoint_read_moments(&ck, 300, 400, mm, vv), LMF_OK);
    assert_memory_equal(mm, m + 300, 400 * sizeof(float)), assert_memory_equal(vv, v + 300, 400 * sizeof(float));
    assert_int_equal(lmf_checkpoint_read_moments(&ck, 900, 200, mm, vv), LMF_ERR_ARG);
    lmf_checkpoint_free(&ck);
    /* a shard from another save (same names, other bytes) or a missing one: the set is refused as damaged */
    char *sp = lmf_checkpoint_shard_path(man, 1, N);
    assert_non_null(strstr(sp, "ckpt-00000007.opt-1-of-3"));
    m[500] += 1;
    uint64_t other;
    assert_int_equal(lmf_checkpoint_save_shard(man, 1, N, 7, lo[1], hi[1], m + lo[1], v + lo[1], &other), LMF_OK);
    assert_int_equal(lmf_checkpoint_load(man, &ck), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "opt-1-of-3: checksum mismatch"));
    unlink(sp);
    assert_int_equal(lmf_checkpoint_load(man, &ck), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "optimizer shard 1 of 3"));
    free(sp);
    /* pruning takes the set's shards with its manifest */
    lmf_checkpoint_prune(d, 0);
    for (int r = 0; r < N; r++) {
        char *q = lmf_checkpoint_shard_path(man, r, N);
        struct stat sb;
        assert_int_not_equal(stat(q, &sb), 0);
        free(q);
    }
    snprintf(p, sizeof p, "%s", man);
    assert_int_not_equal(access(p, F_OK), 0);
    rmdir(d), free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_collectives), cmocka_unit_test(test_grid), cmocka_unit_test(test_zero_ranges),
        cmocka_unit_test(test_adamw_range_pieces), cmocka_unit_test(test_loader_skip),
        cmocka_unit_test(test_checkpoint_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
