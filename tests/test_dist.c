/* test_dist.c — the pieces of data-parallel training that need no second process: the comm.h contract of the
 * single-process backend for the collectives ZeRO uses, the dp x tp x pp grid's arithmetic and messages, ZeRO-1's
 * shard ranges, AdamW over a range (pieces == the whole, bit for bit), the loader's skip (== reading), and the
 * checkpoint set (manifest + shards): saved, verified, read back over any range (re-sharding), damaged shards
 * refused, cut-short saves cleaned up, pruned together; pipeline parallel's layer split and 1F1B schedules (every
 * stage's run against the others' with sends that wait for their receive: no deadlock, backwards in order, at most
 * p - s micro-batches in flight) and the model's layer ranges (stages run one after the other, passing activations
 * and gradients by hand: the same loss and gradients as the whole model, bit for bit, dense and MoE); tensor
 * parallel's split of every layer and of the head (t threads as the ranks of one group, summing through a
 * barrier: the group's gradients add up to one process's within 1e-5, gpt2 and llama, tied and untied heads, a
 * mixture of experts with a shared expert and capacity drops, t = 2 and 4) and its ranks holding only their shares
 * (row-parallel columns packed: the same bits as ranks holding everything); partitioned pipeline stages (their
 * spans tile the buffer, their init and gradients are the whole model's there, no page outside is ever mapped) and
 * the streamed checkpoint manifest. The multi-process behaviour is tests/cli_mpi.sh's. */
#include "test_util.h"

#include "core/alloc.h"
#include "core/rng.h"
#include "core/status.h"
#include "dist/comm.h"
#include "dist/grid.h"
#include "dist/pipe.h"
#include "dist/zero.h"
#include "io/checkpoint.h"
#include "io/shard.h"
#include "model/block.h"
#include "model/model.h"
#include "train/loader.h"
#include "train/optim.h"

#include <math.h>
#include <pthread.h>
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
    assert_int_equal(lmf_comm_sendrecv(c, a, 4, 1, b, 4, 1, 0), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "send to rank 1 and receive from rank 1, but the only rank is 0"));
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

/* The overlapped reduction's ring and FIFO on one rank: spans of 1..7 floats queued out of order through a ring of
 * 10 floats (pieces of at most 4) must come back as they were; a piece written over another's floats while that one
 * is in flight would bring back the wrong values. */
static void test_zero_overlap_ring(void **state) {
    enum { n = 200 };
    float g[n];
    for (int i = 0; i < n; i++) g[i] = (float)i + 0.25f;
    size_t starts[64], lens[64];
    int ns = 0;
    for (size_t at = 0; at < n; at += lens[ns++]) {
        size_t want = 1 + (size_t)(ns * 5) % 7;
        starts[ns] = at, lens[ns] = want < n - at ? want : n - at;
    }
    lmf_zero z;
    lmf_zero_init(&z, lmf_comm_self(), n, 4);
    assert_int_equal(ns, 51);
    lmf_zero_overlap_init(&z, 10, (size_t)ns);
    int most = 0;
    for (int step = 0; step < 2; step++) {
        for (int k = 0; k < ns; k++) {
            int j = (k * 13) % ns; /* 13 is prime to ns (51): every span once, out of order */
            lmf_zero_queue(&z, starts[j], lens[j]);
            if (k % 3 == 2) { /* several queued between progress calls: pieces wait in the ring together */
                assert_int_equal(lmf_zero_progress(&z, g), LMF_OK);
                if (z.count > most) most = z.count;
            }
        }
        assert_int_equal(lmf_zero_finish(&z, g), LMF_OK);
        for (int i = 0; i < n; i++) assert_true(g[i] == (float)i + 0.25f);
    }
    assert_true(most >= 2);
    lmf_zero_free(&z);
}

/* A fake rank `rank` of 2 for the overlapped reduction: an exchange writes its received floats at once (this rank's
 * own piece, and the peer's, peer(i) for gradient element i) and completes only after `delay` tests, so the ring
 * holds several pieces at a time, as over a slow network. */
typedef struct {
    const float *grads; /* the buffer the exchanges send from: an element's index is its offset */
    int delay;
} fake_peer;
struct lmf_comm_req {
    int left;
};
static float peer_grad(size_t i) { return (float)(i % 97) * 0.125f - 3.0f; }
static lmf_status fake_ialltoallv(lmf_comm *c, const float *send, const size_t *scounts, const size_t *sdispls,
                                  float *recv, size_t rcount, lmf_comm_req **req) {
    fake_peer *f = c->state;
    size_t at = (size_t)(send - f->grads) + sdispls[c->rank]; /* this rank's piece: [at, at + rcount) */
    assert_true(scounts[c->rank] == rcount);
    for (int q = 0; q < 2; q++)
        for (size_t i = 0; i < rcount; i++) recv[(size_t)q * rcount + i] = q == c->rank ? send[sdispls[q] + i] : peer_grad(at + i);
    *req = lmf_xmalloc(sizeof **req);
    (*req)->left = f->delay;
    return LMF_OK;
}
static lmf_status fake_test(lmf_comm *c, lmf_comm_req *req, int wait, int *done) {
    (void)c;
    *done = req == NULL || wait || --req->left <= 0;
    if (*done) free(req);
    return LMF_OK;
}

/* The overlapped reduction on each rank of 2 (a fake peer, above): spans of every size, many of them wholly inside
 * the other rank's shard (pieces of no floats here), queued layer by layer through a ring that wraps and fills
 * exactly: the shard must hold own + peer for every element, the reduce-scatter's sum. (The ring used to take the
 * place of a piece of no floats for where the held floats began or ended: posted into a full, wrapped ring, such a
 * piece made it read as unwrapped, and the next piece was received over the oldest's floats: models whose
 * gradients outgrow the ring, SmolLM2's among them, got wrong sums.) */
static void test_zero_overlap_two_ranks(void **state) {
    enum { L = 12, T = 6 };
    /* floats a layer of each stacked tensor: mixed sizes, and equal ones that fill the ring exactly (pieces of 2 x 16
     * floats in a ring of 64) */
    static const int layouts[2][T] = {{16, 1, 40, 7, 32, 24}, {16, 16, 16, 16, 16, 16}};
    static const lmf_comm_ops ops = {.name = "fake", .ialltoallv_f32 = fake_ialltoallv, .req_test = fake_test};
    for (int lay = 0; lay < 2; lay++)
        for (int rank = 0; rank < 2; rank++)
            for (int delay = 1; delay <= 6; delay++) {
                const int *per = layouts[lay];
                int n = 0;
                for (int t = 0; t < T; t++) n += L * per[t];
                float *g = lmf_xmalloc((size_t)n * sizeof(float));
                fake_peer f = {g, delay};
                lmf_comm c = {&ops, rank, 2, &f};
                lmf_zero z;
                lmf_zero_init(&z, &c, (size_t)n, 16);
                lmf_zero_overlap_init(&z, 64, (size_t)(L * T));
                for (int step = 0; step < 2; step++) {
                    for (int i = 0; i < n; i++) g[i] = (float)i * 0.5f + (float)step;
                    /* layer L - 1's slice of every tensor, then layer L - 2's ..., as a backward queues them: the
                     * spans alternate between the two shards */
                    for (int l = L - 1, k = 0; l >= 0; l--)
                        for (int t = 0, o = 0; t < T; o += L * per[t++], k++) {
                            lmf_zero_queue(&z, (size_t)(o + l * per[t]), (size_t)per[t]);
                            if (k % 2) assert_int_equal(lmf_zero_progress(&z, g), LMF_OK);
                        }
                    assert_int_equal(lmf_zero_finish(&z, g), LMF_OK);
                    for (size_t i = z.lo; i < z.hi; i++) {
                        float own = (float)i * 0.5f + (float)step, want = own + peer_grad(i);
                        if (g[i] != want)
                            fail_msg("layout %d rank %d delay %d step %d: element %zu is %g, want %g", lay, rank, delay,
                                     step, i, g[i], want);
                    }
                }
                lmf_zero_free(&z);
                free(g);
            }
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

static void test_pipe_layers(void **state) {
    for (int L = 1; L <= 13; L++)
        for (int p = 1; p <= L; p++) {
            int next = 0, lo = L, hi = 0;
            for (int s = 0; s < p; s++) {
                int l0, l1;
                lmf_pipe_layers(L, p, s, &l0, &l1);
                assert_int_equal(l0, next); /* contiguous, in order, none empty */
                assert_true(l1 > l0);
                next = l1;
                if (l1 - l0 < lo) lo = l1 - l0;
                if (l1 - l0 > hi) hi = l1 - l0;
            }
            assert_int_equal(next, L);
            assert_true(hi - lo <= 1); /* balanced */
        }
    assert_true(fabs(lmf_pipe_bubble(4, 8) - 3.0 / 8) < 1e-12);
}

/* A stage's position in its op list and, for the op there, which halves (send, receive) are done. */
typedef struct {
    lmf_pipe_op *ops;
    int n, k, sent, recvd;
} sim_stage;

/* the peer of op's send / receive half, the kind of message (0 act, 1 grad), -1: no such half */
static int half(const lmf_pipe_op *op, int s, int sending, int *kind) {
    switch (op->kind) {
    case LMF_PIPE_SEND_ACT: *kind = 0; return sending ? s + 1 : -1;
    case LMF_PIPE_RECV_ACT: *kind = 0; return sending ? -1 : s - 1;
    case LMF_PIPE_SEND_GRAD: *kind = 1; return sending ? s - 1 : -1;
    case LMF_PIPE_RECV_GRAD: *kind = 1; return sending ? -1 : s + 1;
    case LMF_PIPE_SEND_ACT_RECV_GRAD: *kind = sending ? 0 : 1; return s + 1;
    case LMF_PIPE_SEND_GRAD_RECV_ACT: *kind = sending ? 1 : 0; return s - 1;
    default: return -1;
    }
}

/* Runs the p stages' schedules against each other: compute ops complete at once, a send only when the peer's current
 * op receives the same message (rendezvous, the strictest MPI may be), paired halves independently. Checks the order
 * and count of forwards and backwards and the micro-batches in flight on the way. */
static void simulate(int p, int M) {
    sim_stage st[8];
    int fwd[8] = {0}, bwd[8] = {0};
    for (int s = 0; s < p; s++) {
        st[s] = (sim_stage){lmf_xmalloc(sizeof(lmf_pipe_op) * (size_t)lmf_pipe_max_ops(M)), 0, 0, 0, 0};
        st[s].n = lmf_pipe_schedule(p, s, M, st[s].ops);
    }
    for (;;) {
        int progress = 0, done = 1;
        for (int s = 0; s < p; s++) {
            sim_stage *a = &st[s];
            if (a->k == a->n) continue;
            done = 0;
            lmf_pipe_op *op = &a->ops[a->k];
            int kind, kind2;
            if (op->kind == LMF_PIPE_FWD) {
                assert_int_equal(op->mb, fwd[s]);
                fwd[s]++;
                assert_true(fwd[s] - bwd[s] <= lmf_pipe_in_flight(p, s, M));
                a->k++, progress = 1;
                continue;
            }
            if (op->kind == LMF_PIPE_BWD) {
                assert_int_equal(op->mb, bwd[s]);
                assert_true(bwd[s] < fwd[s]);
                if (s < p - 1) assert_true(bwd[s + 1] > op->mb); /* the gradient came from a finished backward */
                bwd[s]++;
                a->k++, progress = 1;
                continue;
            }
            int q = half(op, s, 1, &kind);
            if (q >= 0 && !a->sent) { /* match our send with q's pending receive of the same message */
                assert_true(q >= 0 && q < p);
                sim_stage *b = &st[q];
                if (b->k < b->n && !b->recvd && half(&b->ops[b->k], q, 0, &kind2) == s && kind2 == kind) {
                    assert_int_equal(b->ops[b->k].recv, op->send); /* the same micro-batch */
                    a->sent = b->recvd = 1, progress = 1;
                }
            }
            for (int x = 0; x < p; x++) /* advance every op whose halves are all done */
                if (st[x].k < st[x].n) {
                    lmf_pipe_op *o = &st[x].ops[st[x].k];
                    int k1, k2, ns = half(o, x, 1, &k1) >= 0, nr = half(o, x, 0, &k2) >= 0;
                    if ((ns || nr) && (!ns || st[x].sent) && (!nr || st[x].recvd)) {
                        st[x].k++, st[x].sent = st[x].recvd = 0;
                        progress = 1;
                    }
                }
        }
        if (done) break;
        if (!progress) fail_msg("p %d M %d: deadlock", p, M);
    }
    for (int s = 0; s < p; s++) {
        assert_int_equal(fwd[s], M);
        assert_int_equal(bwd[s], M);
        int w = 0; /* forwards before the first backward: the warm-up plus the first steady one */
        while (st[s].ops[w].kind != LMF_PIPE_BWD) w++;
        int nf = 0;
        for (int k = 0; k < w; k++) nf += st[s].ops[k].kind == LMF_PIPE_FWD;
        assert_int_equal(nf, p - 1 - s < M ? p - s : M);
        free(st[s].ops);
    }
}

static void test_pipe_schedule(void **state) {
    for (int p = 1; p <= 6; p++)
        for (int M = 1; M <= 9; M++) simulate(p, M);
    /* the steady phase pairs each send with the neighbour's send the other way (sendrecv): with plain sends on both
     * sides the simulation reports a deadlock (checked by hand when this was written) */
    lmf_pipe_op ops[64];
    int n = lmf_pipe_schedule(2, 1, 3, ops); /* the last of two stages: recv, then F B send-recv, F B send-recv, ... */
    assert_int_equal(ops[0].kind, LMF_PIPE_RECV_ACT);
    assert_int_equal(ops[1].kind, LMF_PIPE_FWD);
    assert_int_equal(ops[2].kind, LMF_PIPE_BWD);
    assert_int_equal(ops[3].kind, LMF_PIPE_SEND_GRAD_RECV_ACT);
    assert_int_equal(ops[n - 1].kind, LMF_PIPE_SEND_GRAD);
}

/* Runs model m's step over stages (layer ranges) one after another in one process, passing activations, gradients and
 * router sums by hand as the pipeline does, into m's gradients; returns the loss. */
static float staged(lmf_model *m, int p, const int32_t *in, const int32_t *tg, int B, int T, lmf_moe_stats *stats) {
    lmf_model *st[4];
    size_t NC = (size_t)B * T * m->cfg.n_embd;
    float *x = lmf_xmalloc(NC * sizeof(float)), loss = 0;
    lmf_moe_sums sums;
    for (int s = 0; s < p; s++) {
        int l0, l1;
        lmf_pipe_layers(m->cfg.n_layer, p, s, &l0, &l1);
        st[s] = s ? lmf_model_create_shared(m, l0, l1) : m; /* a stage's activations only, as the pipeline's */
        loss = lmf_model_forward_layers(st[s], in, tg, B, T, l0, l1, x, m->cfg.n_expert ? &sums : NULL);
        if (s < p - 1) memcpy(x, lmf_model_layer_output(st[s], l1 - 1), NC * sizeof(float));
    }
    for (int s = p - 1; s >= 0; s--) {
        lmf_model_backward_layers(st[s], 0.5f, s < p - 1 ? x : NULL, m->cfg.n_expert ? &sums : NULL);
        if (s > 0) memcpy(x, lmf_model_input_grad(st[s]), NC * sizeof(float));
    }
    *stats = st[p - 1]->moe_stats; /* the last stage's are the whole model's */
    for (int s = 1; s < p; s++) lmf_model_free(st[s]);
    free(x);
    return loss;
}

static void test_model_layer_ranges(void **state) {
    for (int variant = 0; variant < 2; variant++) {
        lmf_model_config c = lmf_model_config_default(variant ? LMF_ARCH_LLAMA : LMF_ARCH_GPT2);
        c.vocab_size = 50, c.n_embd = 32, c.n_head = 4, c.n_kv_head = variant ? 2 : 4, c.ffn_dim = 48;
        c.max_seq_len = 16, c.n_layer = 3;
        if (variant) /* mixture of experts: its aux loss needs every layer's routing */
            c.n_expert = 4, c.n_expert_used = 2, c.router_aux_coef = 0.1f, c.router_z_coef = 0.01f,
            c.capacity_factor = 0.0f, c.tied_embeddings = 0;
        int B = 2, T = 8;
        lmf_model *a = lmf_model_create(&c, B, T, 1), *b = lmf_model_create(&c, B, T, 1);
        assert_non_null(a), assert_non_null(b);
        lmf_model_init_weights(a, 11), lmf_model_init_weights(b, 11);
        int32_t in[16], tg[16];
        for (int i = 0; i < B * T; i++) in[i] = (i * 7 + 3) % c.vocab_size, tg[i] = (i * 5 + 1) % c.vocab_size;
        lmf_model_zero_grad(a);
        float la = lmf_model_forward(a, in, tg, B, T);
        lmf_moe_stats sa = a->moe_stats;
        lmf_model_backward(a, 0.5f);
        for (int p = 2; p <= 3; p++) {
            lmf_model_zero_grad(b);
            lmf_moe_stats sb;
            float lb = staged(b, p, in, tg, B, T, &sb);
            assert_true(la == lb);
            /* the stages add into one gradient buffer in the order one process does (head before embeddings) */
            assert_memory_equal(a->grads, b->grads, a->num_params * sizeof(float));
            if (c.n_expert) {
                assert_true(sa.aux > 0 && sa.aux == sb.aux && sa.z == sb.z && sa.dropped == sb.dropped);
                assert_memory_equal(sa.load, sb.load, sizeof(double) * (size_t)c.n_expert);
            }
        }
        lmf_model_free(a), lmf_model_free(b);
    }
}

/* Partitioned stages (model.h's lmf_model_partition): the stages' spans tile the buffer (a tied wte on the first
 * and last stage both), a stage model initialised over its spans and a shard holds there the values the whole
 * model's init gives (the RNG jumped ahead, lmf_rng_advance == that many draws), its forward and backward give
 * the gradients of a whole model's same range, and no page outside its ranges is ever mapped: one float written
 * there, or read, is caught (mincore). */
static void test_model_partition(void **state) {
    lmf_rng r1, r2;
    lmf_rng_seed(&r1, 5, 9), r2 = r1;
    for (uint64_t n = 0; n < 2000; n = n * 3 + 1) {
        lmf_rng_seed(&r1, 5, 9), lmf_rng_seed(&r2, 5, 9);
        for (uint64_t k = 0; k < n; k++) lmf_rng_u32(&r1);
        lmf_rng_advance(&r2, n);
        assert_true(r1.state == r2.state && lmf_rng_u32(&r1) == lmf_rng_u32(&r2));
    }
    for (int variant = 0; variant < 2; variant++) {
        lmf_model_config c = lmf_model_config_default(variant ? LMF_ARCH_LLAMA : LMF_ARCH_GPT2);
        c.vocab_size = 300, c.n_embd = 64, c.n_head = 4, c.n_kv_head = variant ? 2 : 4, c.ffn_dim = 128;
        c.max_seq_len = 16, c.n_layer = 4;
        if (variant) c.n_expert = 4, c.n_expert_used = 2, c.router_aux_coef = 0.1f, c.tied_embeddings = 0;
        int B = 2, T = 8, N = B * T;
        lmf_model *whole = lmf_model_create(&c, B, T, 1);
        lmf_model_init_weights(whole, 3);
        size_t P = whole->num_params;
        int32_t in[16], tg[16];
        for (int i = 0; i < N; i++) in[i] = (i * 7 + 3) % c.vocab_size, tg[i] = (i * 5 + 1) % c.vocab_size;
        float *x = lmf_xmalloc((size_t)N * c.n_embd * sizeof(float)), *dx = lmf_xmalloc((size_t)N * c.n_embd * 4);
        for (int i = 0; i < N * c.n_embd; i++) x[i] = sinf((float)i), dx[i] = 1e-3f * cosf((float)i);
        for (int p = 2; p <= 4; p++) {
            unsigned char *count = lmf_xcalloc(P, 1);
            for (int s = 0; s < p; s++) {
                int l0, l1;
                lmf_pipe_layers(c.n_layer, p, s, &l0, &l1);
                lmf_range sp[LMF_NUM_PARAM_TENSORS + 1];
                int n = lmf_model_stage_spans(&c, l0, l1, sp);
                for (int j = 0; j < n; j++) {
                    assert_true(sp[j].lo < sp[j].hi && (!j || sp[j - 1].hi < sp[j].lo)); /* sorted, merged */
                    for (size_t k = sp[j].lo; k < sp[j].hi; k++) count[k]++;
                }
                /* the stage, and a whole model running the same range with the same input and output gradient */
                lmf_model *m = lmf_model_create_stage(&c, B, T, l0, l1, 1, 1);
                lmf_zero_range(P, p, s, &sp[n].lo, &sp[n].hi); /* a shard, as ZeRO gives it */
                lmf_model_partition(m, sp, n + 1);
                lmf_model_init_weights(m, 3);
                for (int j = 0; j < m->n_held; j++)
                    assert_memory_equal(m->params + m->held[j].lo, whole->params + m->held[j].lo,
                                        (m->held[j].hi - m->held[j].lo) * sizeof(float));
                lmf_model *ref = lmf_model_create(&c, B, T, 1);
                memcpy(ref->params, whole->params, P * sizeof(float));
                lmf_model_zero_grad(m), lmf_model_zero_grad(ref);
                for (int pass = 0; pass < 2; pass++) {
                    lmf_model *q = pass ? ref : m;
                    lmf_moe_sums sums;
                    memset(&sums, 0, sizeof sums);
                    lmf_model_forward_layers(q, in, tg, B, T, l0, l1, l0 ? x : NULL, c.n_expert ? &sums : NULL);
                    lmf_model_backward_layers(q, 0.5f, l1 < c.n_layer ? dx : NULL, c.n_expert ? &sums : NULL);
                }
                for (int j = 0; j < m->n_held; j++)
                    assert_memory_equal(m->grads + m->held[j].lo, ref->grads + m->held[j].lo,
                                        (m->held[j].hi - m->held[j].lo) * sizeof(float));
                size_t first, held = lmf_model_held_floats(m);
                assert_true(held < P);
                assert_int_equal(lmf_model_stray_bytes(m, &first), 0);
                /* the gaps are unmapped: a write there, or a read, maps a page and is seen */
                size_t gap = m->held[0].lo > 2048 ? 1024 : m->held[m->n_held - 1].hi + 1024;
                if (gap + 1024 < P) {
                    volatile float *g = m->grads;
                    float got = g[gap];
                    assert_true(got == 0.0f);
                    assert_true(lmf_model_stray_bytes(m, &first) >= 4096);
                    assert_true(first >= P && first - P <= gap && gap - (first - P) < 1024);
                    m->params[gap] = 1.0f;
                    assert_true(lmf_model_stray_bytes(m, &first) >= 8192 && first <= gap && gap - first < 1024);
                }
                lmf_model_free(m), lmf_model_free(ref);
            }
            /* every float in exactly one stage, but a tied wte, which is the first stage's and the last's */
            for (size_t k = 0; k < P; k++) {
                int tied = c.tied_embeddings && k < whole->param_sizes[LMF_P_WTE];
                assert_int_equal(count[k], tied ? 2 : 1);
            }
            free(count);
        }
        free(x), free(dx);
        lmf_model_free(whole);
    }
}

static char *read_whole(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = lmf_xmalloc(*n + 1);
    assert_int_equal(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

/* The streamed manifest (lmf_checkpoint_manifest_*) is save_manifest's file byte for byte, in any pieces. */
static void test_manifest_stream(void **state) {
    char *d = tmpdir(), a[256], b[256];
    snprintf(a, sizeof a, "%s/ckpt-00000003.lmfc", d), snprintf(b, sizeof b, "%s/ckpt-00000004.lmfc", d);
    enum { P = 777, N = 2 };
    float params[P];
    for (int i = 0; i < P; i++) params[i] = (float)i * 0.5f;
    uint64_t lo[N] = {0, 389}, hi[N] = {389, P}, sum[N] = {11, 22};
    assert_int_equal(lmf_checkpoint_save_manifest(a, "n_layer = 1\nx = 3\n", 3, 1, 2, 3, params, P, N, lo, hi, sum),
                     LMF_OK);
    lmf_manifest_writer *w;
    assert_int_equal(lmf_checkpoint_manifest_begin(&w, b, "n_layer = 1\nx = 3\n", 3, 1, 2, 3, P, N), LMF_OK);
    for (size_t at = 0, k = 1; at < P; at += k, k = k * 5 + 3)
        assert_int_equal(lmf_checkpoint_manifest_params(w, params + at, at + k < P ? k : P - at), LMF_OK);
    assert_int_equal(lmf_checkpoint_manifest_end(w, lo, hi, sum), LMF_OK);
    size_t na, nb;
    char *fa = read_whole(a, &na), *fb = read_whole(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(fa, fb, na);
    free(fa), free(fb);
    unlink(a), unlink(b), rmdir(d), free(d);
}

/* A tensor-parallel group of t threads in one process: sum() copies each rank's buffer into its slot, waits for the
 * others, and adds the slots in comm.h's order (what comm_mpi's all-reduce does), so every rank gets the same bits. */
typedef struct {
    pthread_barrier_t bar;
    float *slot[4];
    int t;
} tp_group;

static void tp_group_sum(lmf_block_tp *tp, float *buf, size_t n) {
    tp_group *g = tp->comm;
    memcpy(g->slot[tp->rank], buf, n * sizeof(float));
    pthread_barrier_wait(&g->bar);
    for (size_t i = 0; i < n; i++) { /* core/sumtree.h's order: ((0 + 1) + (2 + 3)) for four */
        float s01 = g->slot[0][i] + g->slot[1][i];
        buf[i] = g->t == 2 ? s01 : s01 + (g->slot[2][i] + g->slot[3][i]);
    }
    pthread_barrier_wait(&g->bar); /* nobody overwrites a slot another rank still reads */
}

typedef struct {
    lmf_model *m;
    const int32_t *in, *tg;
    int B, T;
    float loss;
} tp_rank;

static void *tp_rank_run(void *arg) {
    tp_rank *r = arg;
    lmf_model_zero_grad(r->m);
    r->loss = lmf_model_forward(r->m, r->in, r->tg, r->B, r->T);
    lmf_model_backward(r->m, 0.5f);
    if (r->m->tp->rank > 0) lmf_model_zero_replicated_grads(r->m); /* the step's rule: the group's first counts them */
    return NULL;
}

/* Non-zero q/k/v biases (initialisation leaves them 0, which would not test their forward shares), and q/k norm
 * weights other than ones. */
static void qkv_bias_values(lmf_model *m) {
    for (size_t i = 0; i < m->param_sizes[LMF_P_QKVB]; i++) m->ptr[LMF_P_QKVB][i] = 0.05f * sinf((float)i);
    for (size_t i = 0; i < m->param_sizes[LMF_P_QNORM]; i++) m->ptr[LMF_P_QNORM][i] = 1.0f + 0.2f * sinf((float)i);
    for (size_t i = 0; i < m->param_sizes[LMF_P_KNORM]; i++) m->ptr[LMF_P_KNORM][i] = 1.0f - 0.2f * cosf((float)i);
}

static void test_model_tensor_parallel(void **state) {
    /* gpt2; llama tied with GQA; llama untied; a MoE llama; a Qwen2-MoE (q/k/v biases, gated shared expert); a
     * Qwen3 with GQA (per-head q/k norms: split with the heads, their weights' gradients summed over the group); an
     * OLMoE (the full-width norm: each row's statistics summed over the group, forward and backward); then heads
     * whose size is not n_embd / n_head (head_dim): a Qwen3 with GQA and an OLMoE MoE with q 64 wide on C = 32, a
     * llama with q 16 wide */
    for (int variant = 0; variant < 10; variant++) {
        lmf_model_config c = lmf_model_config_default(!variant                       ? LMF_ARCH_GPT2
                                                      : variant == 4                 ? LMF_ARCH_QWEN2
                                                      : variant == 5 || variant == 7 ? LMF_ARCH_QWEN3
                                                      : variant == 6 || variant == 8 ? LMF_ARCH_OLMOE
                                                                                     : LMF_ARCH_LLAMA);
        c.vocab_size = 50, c.n_embd = 32, c.n_head = 4;
        c.n_kv_head = variant == 1 || variant == 5 || variant == 7 ? 2 : 4;
        c.head_dim = variant == 7 || variant == 8 ? 16 : variant == 9 ? 4 : 0;
        c.ffn_dim = 48;
        c.max_seq_len = 16, c.n_layer = 2, c.tied_embeddings = variant < 2;
        if (variant == 3 || variant == 4 || variant == 6 || variant == 8) /* every expert's columns split, the shared expert's too; capacity drops some slots */
            c.n_expert = 4, c.n_expert_used = 2, c.ffn_dim = 16, c.shared_ffn_dim = 8, c.router_aux_coef = 0.1f,
            c.router_z_coef = 0.01f, c.capacity_factor = 1.0f, c.shared_gate = variant == 4;
        if (variant == 6 || variant == 8) c.shared_ffn_dim = 0; /* OLMoE's experts, without a shared one */
        int B = 2, T = 8;
        int32_t in[16], tg[16];
        for (int i = 0; i < B * T; i++) in[i] = (i * 7 + 3) % c.vocab_size, tg[i] = i == 5 ? -1 : (i * 5 + 1) % 50;
        lmf_model *ref = lmf_model_create(&c, B, T, 1);
        lmf_model_init_weights(ref, 11);
        qkv_bias_values(ref);
        lmf_model_zero_grad(ref);
        float loss = lmf_model_forward(ref, in, tg, B, T);
        lmf_model_backward(ref, 0.5f);
        for (int t = 2; t <= 4; t += 2) {
            if (c.n_kv_head % t) continue;
            tp_group g = {.t = t};
            pthread_barrier_init(&g.bar, NULL, (unsigned)t);
            lmf_block_tp tp[4];
            tp_rank rk[4];
            pthread_t th[4];
            float *sum = lmf_xcalloc(ref->num_params, sizeof(float));
            for (int r = 0; r < t; r++) {
                g.slot[r] = lmf_xmalloc((size_t)B * T * (c.n_embd + t + 1) * sizeof(float));
                tp[r] = (lmf_block_tp){.rank = r, .size = t, .sum = tp_group_sum, .comm = &g};
                /* rank 0 keeps whole rows (the trainer's rank 0 validates alone), the others their shares */
                lmf_model *m = r ? lmf_model_create_stage(&c, B, T, 0, c.n_layer, t, 0) : lmf_model_create(&c, B, T, 1);
                rk[r] = (tp_rank){.m = m, .in = in, .tg = tg, .B = B, .T = T};
                lmf_model_init_weights(rk[r].m, 11);
                qkv_bias_values(rk[r].m);
                rk[r].m->tp = &tp[r];
            }
            for (int r = 0; r < t; r++) assert_int_equal(pthread_create(&th[r], NULL, tp_rank_run, &rk[r]), 0);
            for (int r = 0; r < t; r++) pthread_join(th[r], NULL);
            double worst = 0, gmax = 0;
            for (int r = 0; r < t; r++) {
                assert_true(rk[r].loss == rk[0].loss); /* the group's exchanges leave every rank the same bits */
                if (c.n_expert) /* the same routing as one process (the router's inputs differ by rounding) */
                    assert_true(fabs(rk[r].m->moe_stats.aux - ref->moe_stats.aux) <= 1e-6 * ref->moe_stats.aux &&
                                rk[r].m->moe_stats.dropped > 0 && rk[r].m->moe_stats.dropped == ref->moe_stats.dropped);
                assert_true(fabsf(rk[r].loss - loss) <= 1e-6f * loss);
                for (size_t i = 0; i < ref->num_params; i++) sum[i] += rk[r].m->grads[i];
            }
            for (size_t i = 0; i < ref->num_params; i++) {
                gmax = fmax(gmax, fabs(ref->grads[i]));
                worst = fmax(worst, fabs(sum[i] - ref->grads[i]));
            }
            if (worst > 1e-5 * gmax) fail_msg("variant %d tp %d: gradient off by %g (largest %g)", variant, t, worst, gmax);
            for (int r = 0; r < t; r++) lmf_model_free(rk[r].m), free(g.slot[r]);
            free(sum);
            pthread_barrier_destroy(&g.bar);
        }
        lmf_model_free(ref);
    }
}

/* Tensor-parallel ranks that hold only their shares (lmf_model_group_spans, lmf_model_pack_tp): the ranks' spans
 * cover every sharded float once and the replicated ones on every rank; a partitioned rank with its row-parallel
 * columns packed initialises the same values, computes the same loss and gradients bit for bit as a rank holding
 * everything, and never maps a page of the flat buffers outside its spans. */
static void test_model_tp_packed(void **state) {
    for (int variant = 0; variant < 4; variant++) {
        lmf_model_config c = lmf_model_config_default(variant ? LMF_ARCH_LLAMA : LMF_ARCH_GPT2);
        c.vocab_size = 50, c.n_embd = 32, c.n_head = 4, c.n_kv_head = variant == 1 ? 2 : 4, c.ffn_dim = 48;
        c.max_seq_len = 16, c.n_layer = 2, c.tied_embeddings = variant < 2;
        if (variant >= 2) /* a MoE with a shared expert (3: gated, and biases on q/k/v) */
            c.n_expert = 4, c.n_expert_used = 2, c.ffn_dim = 16, c.shared_ffn_dim = 8, c.router_aux_coef = 0.1f,
            c.shared_gate = variant == 3, c.qkv_bias = variant == 3;
        int B = 2, T = 8;
        int32_t in[16], tg[16];
        for (int i = 0; i < B * T; i++) in[i] = (i * 7 + 3) % c.vocab_size, tg[i] = (i * 5 + 1) % 50;
        lmf_model *ref = lmf_model_create(&c, B, T, 0);
        lmf_model_init_weights(ref, 11);
        for (int t = 2; t <= 4; t += 2) {
            if (c.n_kv_head % t) continue;
            tp_group g = {.t = t};
            pthread_barrier_init(&g.bar, NULL, (unsigned)t);
            lmf_block_tp tp[2][4];
            tp_rank rk[2][4];
            pthread_t th[4];
            size_t P = 0;
            unsigned char *count = NULL;
            for (int r = 0; r < t; r++) g.slot[r] = lmf_xmalloc((size_t)B * T * (c.n_embd + t + 1) * sizeof(float));
            for (int packed = 0; packed < 2; packed++) {
                for (int r = 0; r < t; r++) {
                    lmf_model *m = lmf_model_create_stage(&c, B, T, 0, c.n_layer, t, packed);
                    P = m->num_params;
                    if (packed) {
                        lmf_model *w = rk[0][r].m; /* the same rank holding everything */
                        lmf_range *sp, *all;
                        lmf_model_pack_tp(m, r, t, 0, c.n_layer);
                        int n = lmf_model_group_spans(&c, 0, c.n_layer, r, t, 0, &sp);
                        lmf_model_partition(m, sp, n);
                        lmf_model_init_weights(m, 11);
                        int na = lmf_model_group_spans(&c, 0, c.n_layer, r, t, 1, &all);
                        if (!count) count = lmf_xcalloc(P, 1);
                        for (int j = 0; j < na; j++) {
                            const float *at = lmf_model_packed_at(m, all[j].lo, 0);
                            assert_true(!j || all[j - 1].hi <= all[j].lo);
                            for (size_t k = all[j].lo; k < all[j].hi; k++) count[k]++;
                            /* the values one process makes there */
                            assert_memory_equal(at ? at : m->params + all[j].lo, ref->params + all[j].lo,
                                                (all[j].hi - all[j].lo) * sizeof(float));
                        }
                        free(all), free(sp);
                        lmf_model_copy_held(m, w->params); /* the biases qkv_bias_values gave the other */
                    } else {
                        lmf_model_init_weights(m, 11);
                        qkv_bias_values(m);
                    }
                    tp[packed][r] = (lmf_block_tp){.rank = r, .size = t, .sum = tp_group_sum, .comm = &g};
                    rk[packed][r] = (tp_rank){.m = m, .in = in, .tg = tg, .B = B, .T = T};
                    m->tp = &tp[packed][r];
                }
                for (int r = 0; r < t; r++) assert_int_equal(pthread_create(&th[r], NULL, tp_rank_run, &rk[packed][r]), 0);
                for (int r = 0; r < t; r++) pthread_join(th[r], NULL);
            }
            for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) { /* each sharded float on one rank, the rest on all */
                lmf_model *m = rk[0][0].m;
                int once = lmf_param_tp_sharded(i) && i != LMF_P_WTE && i != LMF_P_WPE;
                for (size_t k = 0; k < m->param_sizes[i]; k++)
                    assert_int_equal(count[m->param_offsets[i] + k], once ? 1 : t);
            }
            for (int r = 0; r < t; r++) {
                lmf_model *m = rk[1][r].m, *w = rk[0][r].m;
                assert_true(rk[1][r].loss == rk[0][r].loss);
                lmf_range *all;
                int na = lmf_model_group_spans(&c, 0, c.n_layer, r, t, 1, &all);
                for (int j = 0; j < na; j++) {
                    const float *at = lmf_model_packed_at(m, all[j].lo, 1);
                    assert_memory_equal(at ? at : m->grads + all[j].lo, w->grads + all[j].lo,
                                        (all[j].hi - all[j].lo) * sizeof(float));
                }
                free(all);
                size_t first, held = lmf_model_held_floats(m);
                assert_true(held < P && m->packed_n > 0);
                assert_int_equal(lmf_model_stray_bytes(m, &first), 0);
            }
            for (int r = 0; r < t; r++) lmf_model_free(rk[0][r].m), lmf_model_free(rk[1][r].m), free(g.slot[r]);
            free(count);
            pthread_barrier_destroy(&g.bar);
        }
        lmf_model_free(ref);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_collectives), cmocka_unit_test(test_grid), cmocka_unit_test(test_zero_ranges), cmocka_unit_test(test_zero_overlap_ring),
        cmocka_unit_test(test_zero_overlap_two_ranks),
        cmocka_unit_test(test_adamw_range_pieces), cmocka_unit_test(test_loader_skip),
        cmocka_unit_test(test_checkpoint_set), cmocka_unit_test(test_pipe_layers),
        cmocka_unit_test(test_pipe_schedule), cmocka_unit_test(test_model_layer_ranges),
        cmocka_unit_test(test_model_tensor_parallel), cmocka_unit_test(test_model_tp_packed),
        cmocka_unit_test(test_model_partition),
        cmocka_unit_test(test_manifest_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
