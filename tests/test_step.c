/* test_step.c — the training step (train/step.h) and the communication interface it uses (dist/comm.h):
 * the step computes bit for bit what the trainer's inline loop computed before it was split out; k accumulated
 * micro-batches give the gradients of one batch k times as large; the all-reduce is where data parallelism plugs in
 * (a fake two-rank communicator of identical ranks leaves the result unchanged); the single-process communicator
 * is a no-op; batch-source errors come back as the step's status. */
#include "test_util.h"

#include "core/status.h"
#include "dist/comm.h"
#include "model/model.h"
#include "core/sumtree.h"
#include "train/grad_sum.h"
#include "train/step.h"

static lmf_model_config tiny_model(void) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_GPT2);
    c.vocab_size = 50, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 32, c.n_head = 4, c.n_kv_head = 4;
    c.ffn_dim = 64;
    return c;
}

/* arch 0: tiny_model (gpt2: tied head, biases, GELU); 1: llama (untied head, SwiGLU, GQA); 2: a llama MoE (experts
 * and their router set by the caller) */
static lmf_model_config tiny_arch(int arch) {
    lmf_model_config c = tiny_model();
    if (arch) {
        c = lmf_model_config_default(LMF_ARCH_LLAMA);
        c.vocab_size = 50, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 32, c.n_head = 4, c.n_kv_head = 2;
        c.ffn_dim = 48, c.tied_embeddings = 0;
    }
    return c;
}

static const lmf_adamw_hparams HP = {.lr = 1e-2f, .min_lr = 1e-3f, .warmup_steps = 2, .max_steps = 10, .beta1 = 0.9f,
                                     .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f};

/* A deterministic token stream: every next() call hands out the next B x T window of it. */
typedef struct {
    int B, T, calls, fail_at;
    unsigned pos;
} stream;

static lmf_status stream_next(void *ctx, int32_t *in, int32_t *tg) {
    stream *s = ctx;
    if (s->fail_at && ++s->calls == s->fail_at) return lmf_fail(LMF_ERR_IO, "stream: fake read error");
    for (int i = 0; i < s->B * s->T; i++, s->pos++) {
        in[i] = (int32_t)((s->pos * 7u + s->pos / 5u) % 50u);
        tg[i] = (int32_t)(((s->pos + 1) * 7u + (s->pos + 1) / 5u) % 50u);
    }
    return LMF_OK;
}

typedef struct {
    lmf_model *m;
    lmf_adamw opt;
    lmf_grad_sum sum;
    int32_t *in, *tg;
    lmf_step_ctx ctx;
} rig;

static void rig_init(rig *r, int B, int T, int accum, lmf_comm *comm) {
    lmf_model_config c = tiny_model();
    r->m = lmf_model_create(&c, B, T, 1);
    assert_non_null(r->m);
    lmf_model_init_weights(r->m, 42);
    lmf_adamw_init(&r->opt, r->m->num_params);
    r->in = malloc(sizeof(int32_t) * B * T);
    r->tg = malloc(sizeof(int32_t) * B * T);
    lmf_grad_sum_init(&r->sum, r->m, accum);
    r->ctx = (lmf_step_ctx){.model = r->m, .opt = &r->opt, .hp = &HP, .comm = comm, .batch_size = B, .seq_len = T,
                            .grad_accum = accum, .inputs = r->in, .targets = r->tg, .sum = &r->sum};
}

static void rig_free(rig *r) {
    lmf_grad_sum_free(&r->sum);
    lmf_adamw_free(&r->opt);
    lmf_model_free(r->m);
    free(r->in), free(r->tg);
}

/* g[lo] + ... + g[hi - 1] in core/sumtree.h's tree, as its definition says: the left half has the middle one. */
static void tree_sum(float **g, int lo, int hi, size_t n, float *out) {
    if (hi - lo == 1) {
        memcpy(out, g[lo], n * sizeof(float));
        return;
    }
    int h = (hi - lo + 1) / 2;
    float *right = malloc(n * sizeof(float));
    tree_sum(g, lo, lo + h, n, out);
    tree_sum(g, lo + h, hi, n, right);
    for (size_t i = 0; i < n; i++) out[i] += right[i];
    free(right);
}

/* The loop trainer.c ran before the step existed, with each micro-batch's gradient on its own and the gradients added
 * in the tree (train/grad_sum.h): the step must match it bit for bit (1 to 7 micro-batches: every shape of the tree
 * up to three buffers). Inline (no grad_sum): the loop verbatim, the gradients zeroed once and every backward adding
 * into them. */
static void test_step_matches_inline_loop(void **state) {
    int B = 2, T = 8;
    for (int inl = 0; inl < 2; inl++)
        for (int K = 1; K <= 7; K++) {
            rig a, b;
            rig_init(&a, B, T, K, lmf_comm_self());
            rig_init(&b, B, T, 1, lmf_comm_self());
            if (inl) a.ctx.sum = NULL;
            stream sa = {B, T, 0, 0, 0}, sb = {B, T, 0, 0, 0};
            lmf_batch_source src = {stream_next, &sa, NULL};
            size_t n = b.m->num_params;
            float *g[8];
            for (int k = 0; k < K; k++) g[k] = malloc(n * sizeof(float));
            for (int step = 0; step < 4; step++) {
                lmf_step_result r;
                float lr = lmf_lr_at(step, HP.lr, HP.min_lr, HP.warmup_steps, HP.max_steps);
                assert_int_equal(lmf_train_step(&a.ctx, &src, lr, &r), LMF_OK);

                double loss = 0.0;
                lmf_model_zero_grad(b.m);
                for (int k = 0; k < K; k++) {
                    if (!inl) lmf_model_zero_grad(b.m);
                    stream_next(&sb, b.in, b.tg);
                    loss += lmf_model_forward(b.m, b.in, b.tg, B, T);
                    lmf_model_backward(b.m, 1.0f / K);
                    memcpy(g[k], b.m->grads, n * sizeof(float));
                }
                if (!inl) tree_sum(g, 0, K, n, b.m->grads);
                loss /= K;
                float gnorm = lmf_grad_norm(b.m);
                float lr_b = lmf_adamw_step(&b.opt, b.m, &HP, step, gnorm);
                assert_true(lr == lr_b);
                assert_memory_equal(&r.loss, &loss, sizeof loss);
                assert_memory_equal(&r.grad_norm, &gnorm, sizeof gnorm);
                assert_memory_equal(a.m->params, b.m->params, a.m->num_params * sizeof(float));
                assert_memory_equal(a.opt.m, b.opt.m, a.m->num_params * sizeof(float));
                assert_memory_equal(a.opt.v, b.opt.v, a.m->num_params * sizeof(float));
            }
            assert_int_equal(a.opt.t, 4);
            for (int k = 0; k < K; k++) free(g[k]);
            rig_free(&a), rig_free(&b);
        }
}

/* The order itself, symbolically: each operand a letter, each addition "(x+y)" with the older on the left (a sum
 * written into the newer operand is the same bits, as a + b is b + a). Streaming gives the tree of halves for every
 * count, with no more sums waiting than lmf_sumtree_most says; lmf_sumtree_blocks adds blocks in it. */
typedef struct {
    char s[16][512];
} sym;

static void sym_add(void *ctx, int dst, int src) {
    sym *y = ctx;
    char t[1100];
    int older = dst < src ? dst : src, newer = dst < src ? src : dst;
    snprintf(t, sizeof t, "(%s+%s)", y->s[older], y->s[newer]);
    assert_true(strlen(t) < sizeof y->s[dst]);
    memcpy(y->s[dst], t, strlen(t) + 1);
}

static void sym_tree(int lo, int hi, char *out, size_t cap) {
    if (hi - lo == 1) {
        snprintf(out, cap, "%c", 'a' + lo);
        return;
    }
    int h = (hi - lo + 1) / 2;
    char l[512], r[512];
    sym_tree(lo, lo + h, l, sizeof l), sym_tree(lo + h, hi, r, sizeof r);
    snprintf(out, cap, "(%.200s+%.200s)", l, r);
}

static void test_sumtree_order(void **state) {
    for (int n = 1; n <= 13; n++)
        for (int into_new = 0; into_new < 2; into_new++) {
            sym y;
            lmf_sumtree t;
            lmf_sumtree_reset(&t, n);
            int got = -1, most = 0;
            for (int q = 0; q < n; q++) {
                snprintf(y.s[q], sizeof y.s[q], "%c", 'a' + q);
                most = t.depth + 1 > most ? t.depth + 1 : most;
                got = lmf_sumtree_push(&t, q, into_new, sym_add, &y);
            }
            assert_int_equal(t.depth, 1);
            assert_int_equal(most, lmf_sumtree_most(n));
            int lg = 0; /* the buffers train/grad_sum.h keeps: at most ceil(log2 n) */
            while ((1 << lg) < n) lg++;
            assert_true(most - 1 <= lg);
            char want[512];
            sym_tree(0, n, want, sizeof want);
            assert_string_equal(y.s[got], want);
            if (into_new) assert_int_equal(got, n - 1);
        }
    /* blocks: values whose sum depends on the order (1 + 2^-24 rounds away unless the small ones meet first) */
    float ops[4 * 3];
    for (int j = 0; j < 3; j++) ops[0 * 3 + j] = 1.0f, ops[1 * 3 + j] = 0x1p-24f, ops[2 * 3 + j] = 0x1p-24f,
                                 ops[3 * 3 + j] = 0x1p-24f * (float)j;
    int q = lmf_sumtree_blocks(ops, 3, 4); /* (1 + 2^-24) + (2^-24 + j 2^-24): a sum left to right gives 1 */
    for (int j = 0; j < 3; j++) {
        float want = (1.0f + 0x1p-24f) + (0x1p-24f + 0x1p-24f * (float)j);
        assert_true(ops[q * 3 + j] == want);
    }
}

/* k micro-batches of B sequences accumulate to the gradients of one batch of k*B (mean loss, mean gradient). */
static void test_accumulation_equals_big_batch(void **state) {
    int B = 2, T = 8, K = 3;
    rig small, big;
    rig_init(&small, B, T, K, lmf_comm_self());
    rig_init(&big, B * K, T, 1, lmf_comm_self());
    stream ss = {B, T, 0, 0, 0}, sb = {B * K, T, 0, 0, 0}; /* the same tokens, cut differently */
    lmf_batch_source src_s = {stream_next, &ss, NULL}, src_b = {stream_next, &sb, NULL};
    lmf_step_result rs, rb;
    /* lr 0: compare the gradients the step leaves behind, not Adam's sign-like first update */
    assert_int_equal(lmf_train_step(&small.ctx, &src_s, 0.0f, &rs), LMF_OK);
    assert_int_equal(lmf_train_step(&big.ctx, &src_b, 0.0f, &rb), LMF_OK);
    if (fabs(rs.loss - rb.loss) > 1e-5 * fabs(rb.loss)) fail_msg("loss %.8f accumulated vs %.8f", rs.loss, rb.loss);
    if (fabsf(rs.grad_norm - rb.grad_norm) > 1e-4f * rb.grad_norm)
        fail_msg("grad norm %.8f accumulated vs %.8f", rs.grad_norm, rb.grad_norm);
    double e = rel_err(small.m->grads, big.m->grads, (long)small.m->num_params);
    if (e > 1e-4) fail_msg("gradients differ by %.3g of their scale", e);
    rig_free(&small), rig_free(&big);
}

/* lmf_model_zero_grad_lazy leaves the tensors the next backward writes whole: with every gradient poisoned (NaN)
 * first, the gradients of one backward (and of a second added to it) equal those after lmf_model_zero_grad bit for
 * bit, on gpt2 (tied head, biases), llama (untied head, SwiGLU, GQA) and a llama MoE (8 experts, top-2, a capacity
 * that drops slots and leaves experts without tokens, a shared expert), in fp32 and bf16. */
static void test_lazy_zeroing_is_exact(void **state) {
    int B = 2, T = 8;
    for (int arch = 0; arch < 3; arch++)
        for (int bf16 = 0; bf16 < 2; bf16++) {
            lmf_model_config c = tiny_arch(arch);
            if (arch == 2) {
                c.n_expert = 8, c.n_expert_used = 2, c.ffn_dim = 16, c.shared_ffn_dim = 24, c.capacity_factor = 0.5f;
                c.router_aux_coef = 0.01f, c.router_z_coef = 0.001f;
            }
            lmf_model *m[2];
            for (int j = 0; j < 2; j++) {
                m[j] = lmf_model_create(&c, B, T, 1);
                assert_non_null(m[j]);
                lmf_model_init_weights(m[j], 42);
                lmf_model_set_bf16(m[j], bf16);
                for (size_t i = 0; i < m[j]->num_params; i++) m[j]->grads[i] = NAN;
            }
            lmf_model_zero_grad(m[0]);
            lmf_model_zero_grad_lazy(m[1]);
            assert_int_equal(m[1]->fresh_grads, 1);
            stream s[2] = {{B, T, 0, 0, 0}, {B, T, 0, 0, 0}};
            int32_t in[16], tg[16];
            for (int k = 0; k < 2; k++)
                for (int j = 0; j < 2; j++) {
                    stream_next(&s[j], in, tg);
                    lmf_model_forward(m[j], in, tg, B, T);
                    lmf_model_backward(m[j], 0.5f);
                    assert_int_equal(m[j]->fresh_grads, 0);
                }
            for (size_t i = 0; i < m[0]->num_params; i++)
                if (memcmp(&m[0]->grads[i], &m[1]->grads[i], sizeof(float)))
                    fail_msg("arch %d bf16 %d: gradient %zu is %g after lazy zeroing, %g after zeroing", arch, bf16, i,
                             m[1]->grads[i], m[0]->grads[i]);
            lmf_model_free(m[0]), lmf_model_free(m[1]);
        }
}

/* lmf_model_set_bf16 keeps the products' inputs in bf16 (lmf_acts): losses and gradients of two micro-batches equal,
 * bit for bit, those of a model computing the same bf16 products from inputs kept in fp32 (bf16 set on its own), on
 * gpt2 (LayerNorm, GELU, biases, tied head), llama (RMSNorm, SwiGLU, GQA) and a llama MoE (the router's fp32 input);
 * fp32 again frees the copies. */
static void test_bf16_inputs_kept_exact(void **state) {
    int B = 2, T = 8;
    for (int arch = 0; arch < 3; arch++) {
        lmf_model_config c = tiny_arch(arch);
        if (arch == 2) c.n_expert = 4, c.n_expert_used = 2, c.ffn_dim = 16;
        lmf_model *m[2];
        double loss[2] = {0, 0};
        for (int j = 0; j < 2; j++) {
            m[j] = lmf_model_create(&c, B, T, 1);
            assert_non_null(m[j]);
            lmf_model_init_weights(m[j], 7);
            if (j) lmf_model_set_bf16(m[j], 1);
            else m[j]->bf16 = 1; /* bf16 products, inputs kept as they were: fp32 */
            lmf_model_zero_grad(m[j]);
            stream s = {B, T, 0, 0, 0};
            int32_t in[16], tg[16];
            for (int k = 0; k < 2; k++) {
                stream_next(&s, in, tg);
                loss[j] += lmf_model_forward(m[j], in, tg, B, T);
                lmf_model_backward(m[j], 0.5f);
            }
        }
        assert_null(m[0]->acts.ln1_16);
        assert_non_null(m[1]->acts.ln1_16);
        assert_non_null(m[1]->acts.qkv_16);
        assert_true(arch == 2 ? m[1]->acts.ln2_16 == NULL && m[1]->acts.ln2 : m[1]->acts.ln2_16 && !m[1]->acts.ln2);
        if (memcmp(&loss[0], &loss[1], sizeof(double))) fail_msg("arch %d: loss %.9g vs %.9g", arch, loss[1], loss[0]);
        for (size_t i = 0; i < m[0]->num_params; i++)
            if (memcmp(&m[0]->grads[i], &m[1]->grads[i], sizeof(float)))
                fail_msg("arch %d: gradient %zu is %g with bf16 inputs, %g with fp32 ones", arch, i, m[1]->grads[i],
                         m[0]->grads[i]);
        lmf_model_set_bf16(m[1], 0);
        assert_null(m[1]->acts.ln1_16);
        assert_non_null(m[1]->acts.ln1);
        lmf_model_free(m[0]), lmf_model_free(m[1]);
    }
}

/* A fake communicator of two ranks that happen to hold identical gradients: each rank scales its gradients by
 * 1 / (2 x grad_accum) and the all-reduce sums (doubles) them, so the update equals the single-process one exactly
 * (/2 then x2 is exact). */
typedef struct {
    int f32_calls, f64_calls;
    size_t f32_n;
} twin_state;

static lmf_status twin_f32(lmf_comm *c, float *buf, size_t n) {
    twin_state *s = c->state;
    s->f32_calls++, s->f32_n = n;
    for (size_t i = 0; i < n; i++) buf[i] += buf[i];
    return LMF_OK;
}
static lmf_status twin_f64(lmf_comm *c, double *buf, size_t n) {
    ((twin_state *)c->state)->f64_calls++;
    for (size_t i = 0; i < n; i++) buf[i] += buf[i];
    return LMF_OK;
}
static lmf_status twin_bcast(lmf_comm *c, void *buf, size_t bytes, int root) { return LMF_OK; }
static lmf_status twin_barrier(lmf_comm *c) { return LMF_OK; }
static void twin_close(lmf_comm *c) {}

static void test_allreduce_is_the_data_parallel_hook(void **state) {
    static const lmf_comm_ops ops = {.name = "twin", .allreduce_sum_f32 = twin_f32, .allreduce_sum_f64 = twin_f64,
                                     .broadcast = twin_bcast, .barrier = twin_barrier, .close = twin_close};
    twin_state ts = {0};
    lmf_comm twin = {.ops = &ops, .rank = 0, .size = 2, .state = &ts};
    int B = 2, T = 8, K = 2;
    rig one, two;
    rig_init(&one, B, T, K, lmf_comm_self());
    rig_init(&two, B, T, K, &twin);
    stream s1 = {B, T, 0, 0, 0}, s2 = {B, T, 0, 0, 0};
    lmf_batch_source src1 = {stream_next, &s1, NULL}, src2 = {stream_next, &s2, NULL};
    for (int step = 0; step < 3; step++) {
        lmf_step_result r1, r2;
        assert_int_equal(lmf_train_step(&one.ctx, &src1, 1e-2f, &r1), LMF_OK);
        assert_int_equal(lmf_train_step(&two.ctx, &src2, 1e-2f, &r2), LMF_OK);
        assert_true(r1.loss == r2.loss);
        assert_true(r1.grad_norm == r2.grad_norm);
        assert_memory_equal(one.m->params, two.m->params, one.m->num_params * sizeof(float));
    }
    assert_int_equal(ts.f32_calls, 3);
    assert_int_equal(ts.f64_calls, 3);
    assert_int_equal(ts.f32_n, two.m->num_params);
    rig_free(&one), rig_free(&two);
}

/* Right-padded rows of 5 and 9 real tokens (targets -1 past them), laid out T or Tb apart. */
typedef struct {
    int B, T, Tb;
    unsigned pos;
} padded;

static lmf_status padded_next(void *ctx, int32_t *in, int32_t *tg) {
    padded *s = ctx;
    int L = s->Tb ? s->Tb : s->T;
    for (int b = 0; b < s->B; b++, s->pos += 100)
        for (int t = 0, len = 5 + 4 * (b % 2); t < L; t++) {
            unsigned p = s->pos + (unsigned)t;
            in[b * L + t] = t < len ? (int32_t)((p * 7u + p / 5u) % 50u) : 0;
            tg[b * L + t] = t + 1 < len ? (int32_t)(((p + 1) * 7u + (p + 1) / 5u) % 50u) : -1;
        }
    return LMF_OK;
}

static int padded_len(void *ctx) { return ((padded *)ctx)->Tb; }

/* A source that runs its micro-batches at their longest row (seq_len, as fine-tuning's padded batches) trains as the
 * same rows padded to T do, up to the order of float additions: the padding's rows add exact zeros to the weights'
 * gradients, but over sums of another length. */
static void test_short_batches(void **state) {
    int B = 2, T = 16;
    rig a, b;
    rig_init(&a, B, T, 2, lmf_comm_self());
    rig_init(&b, B, T, 2, lmf_comm_self());
    padded pa = {B, T, 0, 0}, pb = {B, T, 9, 0};
    lmf_batch_source sa = {padded_next, &pa, NULL}, sb = {padded_next, &pb, padded_len};
    for (int step = 0; step < 3; step++) {
        lmf_step_result ra, rb;
        assert_int_equal(lmf_train_step(&a.ctx, &sa, 1e-2f, &ra), LMF_OK);
        assert_int_equal(lmf_train_step(&b.ctx, &sb, 1e-2f, &rb), LMF_OK);
        assert_int_equal(ra.positions, 2 * B * T);
        assert_int_equal(rb.positions, 2 * B * 9);
        assert_true(fabs(ra.loss - rb.loss) <= 1e-6 * fabs(ra.loss));
        assert_true(fabsf(ra.grad_norm - rb.grad_norm) <= 1e-5f * ra.grad_norm);
    }
    double e = rel_err(b.m->params, a.m->params, (long)a.m->num_params);
    print_message("padded to T vs at the longest row: parameters after 3 steps within %.2g\n", e);
    assert_true(e < 1e-5);
    rig_free(&a), rig_free(&b);
}

static void test_batch_source_error(void **state) {
    rig r;
    rig_init(&r, 2, 8, 3, lmf_comm_self());
    stream s = {2, 8, 0, 2, 0}; /* the second micro-batch fails */
    lmf_batch_source src = {stream_next, &s, NULL};
    lmf_step_result res;
    assert_int_equal(lmf_train_step(&r.ctx, &src, 1e-2f, &res), LMF_ERR_IO);
    assert_non_null(strstr(lmf_last_error(), "fake read error"));
    assert_int_equal(r.opt.t, 0); /* no update was applied */
    rig_free(&r);
}

static void test_comm_self(void **state) {
    lmf_comm *c = lmf_comm_self();
    assert_int_equal(lmf_comm_rank(c), 0);
    assert_int_equal(lmf_comm_size(c), 1);
    assert_string_equal(c->ops->name, "self");
    float f[5] = {1, -2, 3.5f, 0, 1e30f}, f0[5];
    double d[2] = {0.1, -7}, d0[2];
    memcpy(f0, f, sizeof f), memcpy(d0, d, sizeof d);
    assert_int_equal(lmf_comm_allreduce_sum(c, f, 5), LMF_OK);
    assert_int_equal(lmf_comm_allreduce_sum_f64(c, d, 2), LMF_OK);
    assert_memory_equal(f, f0, sizeof f);
    assert_memory_equal(d, d0, sizeof d);
    char msg[8] = "abc";
    assert_int_equal(lmf_comm_broadcast(c, msg, sizeof msg, 0), LMF_OK);
    assert_string_equal(msg, "abc");
    assert_int_equal(lmf_comm_broadcast(c, msg, sizeof msg, 1), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "rank 1"));
    assert_int_equal(lmf_comm_barrier(c), LMF_OK);
    lmf_comm_close(c); /* the static handle: closing is harmless */
    assert_int_equal(lmf_comm_size(lmf_comm_self()), 1);

    lmf_comm *o;
    assert_int_equal(lmf_comm_open("self", &o), LMF_OK);
    assert_int_equal(lmf_comm_size(o), 1);
    assert_int_equal(lmf_comm_allreduce_sum(o, f, 5), LMF_OK);
    assert_memory_equal(f, f0, sizeof f);
    lmf_comm_close(o);
    lmf_comm_close(NULL);
    assert_int_equal(lmf_comm_open("carrier-pigeon", &o), LMF_ERR_ARG);
    assert_null(o);
    assert_non_null(strstr(lmf_last_error(), "carrier-pigeon"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_comm_self),
        cmocka_unit_test(test_step_matches_inline_loop),
        cmocka_unit_test(test_sumtree_order),
        cmocka_unit_test(test_accumulation_equals_big_batch),
        cmocka_unit_test(test_lazy_zeroing_is_exact),
        cmocka_unit_test(test_bf16_inputs_kept_exact),
        cmocka_unit_test(test_allreduce_is_the_data_parallel_hook),
        cmocka_unit_test(test_batch_source_error),
        cmocka_unit_test(test_short_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
