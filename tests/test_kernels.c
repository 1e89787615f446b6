/* test_kernels.c — every backward kernel against central finite differences of its forward.
 *
 * Each check builds the scalar objective L = sum(out * R) for a fixed random R, takes the analytic gradients from
 * the backward kernel with dout = R, and compares them with (L(x + h) - L(x - h)) / 2h at a sample of input
 * elements. Shapes are small and odd so tails and GQA grouping are exercised. Runs with whatever kernel variant
 * the CPU dispatches to (LMF_ISA=ref selects the reference). */
#include "test_util.h"

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/vec.h"

#include <omp.h>
#include <string.h>

typedef struct {
    void (*forward)(void *ctx);
    float *out;
    long n_out;
    const float *R;
    void *ctx;
} objective;

static double eval(const objective *o) {
    o->forward(o->ctx);
    double s = 0.0;
    for (long i = 0; i < o->n_out; i++) s += (double)o->out[i] * o->R[i];
    return s;
}

/* Compares analytic gradient g of input x (n elements) with finite differences at up to 40 positions. */
static void check_grad(const char *what, const objective *o, float *x, const float *g, long n, float h) {
    double maxg = 0.0;
    for (long i = 0; i < n; i++) maxg = fmax(maxg, fabs(g[i]));
    long stride = n > 40 ? n / 40 : 1;
    for (long i = 0; i < n; i += stride) {
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = eval(o);
        x[i] = x0 - h;
        double lm = eval(o);
        x[i] = x0;
        double fd = (lp - lm) / (2.0 * h);
        if (fabs(fd - g[i]) > 2e-2 * fmax(maxg, 1e-3))
            fail_msg("%s[%ld]: analytic %.6g, finite difference %.6g (max |grad| %.3g)", what, i, g[i], fd, maxg);
    }
    eval(o); /* leave outputs consistent with x */
}

static float *rnd(long n, unsigned seed, float scale) {
    float *x = malloc(sizeof(float) * n);
    fill_normal(x, n, seed, scale);
    return x;
}
static float *zeros(long n) { return calloc((size_t)n, sizeof(float)); }

/* ---- norms ---- */
typedef struct {
    float *out, *mean, *rstd, *x, *w, *b;
    int N, C, rms;
} norm_ctx;
static void norm_fwd(void *p) {
    norm_ctx *c = p;
    if (c->rms) lmf_rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->N, c->C, 1e-5f);
    else lmf_layernorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C, 1e-5f);
}
static void run_norm(int rms) {
    int N = 7, C = 37;
    norm_ctx c = {zeros(N * C), zeros(N), zeros(N), rnd(N * C, 1, 1.5f), rnd(C, 2, 1.0f), rnd(C, 3, 0.5f), N, C, rms};
    float *R = rnd(N * C, 4, 1.0f), *dx = zeros(N * C), *dw = zeros(C), *db = zeros(C);
    norm_fwd(&c);
    if (rms) lmf_rmsnorm_backward(dx, dw, R, c.x, c.w, c.rstd, N, C);
    else lmf_layernorm_backward(dx, dw, db, R, c.x, c.w, c.mean, c.rstd, N, C);
    objective o = {norm_fwd, c.out, N * C, R, &c};
    check_grad(rms ? "rmsnorm dx" : "layernorm dx", &o, c.x, dx, N * C, 1e-2f);
    check_grad(rms ? "rmsnorm dw" : "layernorm dw", &o, c.w, dw, C, 1e-2f);
    if (!rms) check_grad("layernorm db", &o, c.b, db, C, 1e-2f);
    free(c.out), free(c.mean), free(c.rstd), free(c.x), free(c.w), free(c.b), free(R), free(dx), free(dw), free(db);
}
static void test_layernorm(void **s) { run_norm(0); }
static void test_rmsnorm(void **s) { run_norm(1); }

/* ---- linear ---- */
typedef struct {
    float *out, *x, *W, *b;
    int N, IC, OC;
} mm_ctx;
static void mm_fwd(void *p) {
    mm_ctx *c = p;
    lmf_matmul_forward(c->out, c->x, c->W, c->b, c->N, c->IC, c->OC);
}
static void test_matmul(void **s) {
    int N = 9, IC = 19, OC = 23;
    mm_ctx c = {zeros(N * OC), rnd(N * IC, 5, 1.0f), rnd(OC * IC, 6, 0.3f), rnd(OC, 7, 0.1f), N, IC, OC};
    float *R = rnd(N * OC, 8, 1.0f), *dx = zeros(N * IC), *dW = zeros(OC * IC), *db = zeros(OC);
    mm_fwd(&c);
    lmf_matmul_backward(dx, dW, db, R, c.x, c.W, N, IC, OC);
    objective o = {mm_fwd, c.out, N * OC, R, &c};
    check_grad("matmul dx", &o, c.x, dx, N * IC, 1e-2f);
    check_grad("matmul dW", &o, c.W, dW, OC * IC, 1e-2f);
    check_grad("matmul db", &o, c.b, db, OC, 1e-2f);
    free(c.out), free(c.x), free(c.W), free(c.b), free(R), free(dx), free(dW), free(db);
}

/* ---- attention (+ RoPE in front, as the llama layer uses it) ---- */
typedef struct {
    float *out, *scratch, *qkv, *work, *freqs;
    int B, T, NH, NKV, hs, rope, W;
    float cap;
} attn_ctx;
static void attn_fwd(void *p) {
    attn_ctx *c = p;
    long n = (long)c->B * c->T * (c->NH + 2 * c->NKV) * c->hs;
    memcpy(c->work, c->qkv, sizeof(float) * n);
    if (c->rope)
        lmf_rope_rows(c->work, (c->NH + 2 * c->NKV) * c->hs, c->B * c->T, c->T, 0, NULL, c->freqs, c->NH + c->NKV,
                      c->hs, c->rope == 2, 1.0f);
    lmf_attention_forward(c->out, c->scratch, c->work, NULL, c->W, c->cap, c->B, c->T, c->NH, c->NKV, c->hs, 0);
}
/* The textbook causal softmax(q k / sqrt(hs)) v in double, one query at a time over its keys (the last W with a
 * window; the scores soft-capped, cap tanh(s / cap), with a cap): the blocked kernel's forward must equal it whatever
 * its blocking (T spans several query blocks and a partial one). */
static void attn_naive_check(const attn_ctx *c) {
    int C = c->NH * c->hs, KVC = c->NKV * c->hs, S = C + 2 * KVC, G = c->NH / c->NKV;
    double *p = malloc(sizeof(double) * (size_t)c->T), worst = 0.0;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->NH; h++)
            for (int i = 0; i < c->T; i++) {
                const float *q = c->work + ((long)b * c->T + i) * S + (long)h * c->hs;
                double mx = -1e300, sum = 0.0;
                int j0 = c->W && i - c->W + 1 > 0 ? i - c->W + 1 : 0;
                for (int j = j0; j <= i; j++) {
                    const float *k = c->work + ((long)b * c->T + j) * S + C + (long)(h / G) * c->hs;
                    double dot = 0.0;
                    for (int e = 0; e < c->hs; e++) dot += (double)q[e] * k[e];
                    p[j] = dot / sqrt((double)c->hs);
                    if (c->cap) p[j] = c->cap * tanh(p[j] / c->cap);
                    mx = fmax(mx, p[j]);
                }
                for (int j = j0; j <= i; j++) sum += p[j] = exp(p[j] - mx);
                for (int e = 0; e < c->hs; e++) {
                    double o = 0.0;
                    for (int j = j0; j <= i; j++)
                        o += p[j] / sum * c->work[((long)b * c->T + j) * S + C + KVC + (long)(h / G) * c->hs + e];
                    worst = fmax(worst, fabs(o - c->out[((long)b * c->T + i) * C + (long)h * c->hs + e]));
                }
            }
    free(p);
    assert_true(worst < 1e-5);
}
static void run_attention(int rope, int NH, int NKV, int T, int W, float cap) {
    int B = 2, hs = 8, C = NH * hs, S = C + 2 * NKV * hs;
    long nq = (long)B * T * S;
    attn_ctx c = {zeros(B * T * C), zeros((long)lmf_attention_scratch_floats(T, omp_get_max_threads())),
                  rnd(nq, 9, 1.0f), zeros(nq), zeros(T * hs), B, T, NH, NKV, hs, rope, W, cap};
    lmf_rope_table(c.freqs, T, hs, 10000.0f, NULL);
    float *R = rnd(B * T * C, 10, 1.0f), *dqkv = zeros(nq);
    attn_fwd(&c);
    attn_naive_check(&c);
    lmf_attention_backward(dqkv, c.scratch, R, c.work, NULL, W, cap, B, T, NH, NKV, hs, 0);
    if (rope) lmf_rope_rows(dqkv, (NH + 2 * NKV) * hs, B * T, T, 0, NULL, c.freqs, NH + NKV, hs, rope == 2, -1.0f);
    objective o = {attn_fwd, c.out, B * T * C, R, &c};
    const char *what = cap ? "soft-capped attention dqkv" : W ? "windowed attention dqkv" : rope == 2 ? "interleaved rope+attention dqkv"
                       : rope ? "rope+attention dqkv" : "attention dqkv";
    check_grad(what, &o, c.qkv, dqkv, nq, 1e-2f);
    free(c.out), free(c.scratch), free(c.qkv), free(c.work), free(c.freqs), free(R), free(dqkv);
}
static void test_attention_mha(void **s) { run_attention(0, 3, 3, 7, 0, 0.0f); }
static void test_attention_gqa_rope(void **s) { run_attention(1, 6, 2, 7, 0, 0.0f); }
static void test_attention_gqa_rope_interleaved(void **s) { run_attention(2, 6, 2, 7, 0, 0.0f); }
/* longer than the kernel's query blocks: the causal skipping and the backward's recomputation across blocks */
static void test_attention_long(void **s) { run_attention(1, 4, 2, 150, 0, 0.0f); }
/* a sliding window shorter than a query block, one crossing two, one of a whole block, and one of a single key */
static void test_attention_window(void **s) {
    run_attention(1, 4, 2, 150, 37, 0.0f);
    run_attention(0, 2, 1, 150, 90, 0.0f);
    run_attention(0, 2, 2, 140, 64, 0.0f);
    run_attention(0, 2, 1, 20, 1, 0.0f);
}
/* Gemma 2's soft-capped scores (caps the scores reach: the scaled scores here are ~N(0, 1)), with a window too */
static void test_attention_softcap(void **s) {
    run_attention(1, 4, 2, 150, 0, 0.8f);
    run_attention(0, 2, 1, 100, 37, 1.5f);
}

/* Packed rows: examples of 40, 70 and 40 tokens in row 0 and one of 150 in row 1 (positions restart at each
 * example) give, forward and backward, exactly what each example gives alone (to float rounding: the blocks cut the
 * products differently); with a sliding window W as well, each example under the same window. */
static void run_attention_packed(int W) {
    enum { B = 2, T = 150, NH = 4, NKV = 2, hs = 8, C = NH * hs, S = C + 2 * NKV * hs };
    static const int segs[][3] = {{0, 0, 40}, {0, 40, 110}, {0, 110, 150}, {1, 0, 150}}; /* row, from, to */
    int32_t pos[B * T];
    for (int k = 0; k < 4; k++)
        for (int t = segs[k][1]; t < segs[k][2]; t++) pos[segs[k][0] * T + t] = t - segs[k][1];
    float *qkv = rnd((long)B * T * S, 21, 1.0f), *R = rnd((long)B * T * C, 22, 1.0f), *out = zeros((long)B * T * C),
          *dqkv = zeros((long)B * T * S), *one = zeros((long)T * C), *done = zeros((long)T * S),
          *scratch = zeros((long)lmf_attention_scratch_floats(T, omp_get_max_threads()));
    lmf_attention_forward(out, scratch, qkv, pos, W, 0.0f, B, T, NH, NKV, hs, 0);
    lmf_attention_backward(dqkv, scratch, R, qkv, pos, W, 0.0f, B, T, NH, NKV, hs, 0);
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        int b = segs[k][0], t0 = segs[k][1], n = segs[k][2] - t0;
        const float *q = qkv + ((long)b * T + t0) * S;
        memset(done, 0, sizeof(float) * (size_t)n * S);
        lmf_attention_forward(one, scratch, q, NULL, W, 0.0f, 1, n, NH, NKV, hs, 0);
        lmf_attention_backward(done, scratch, R + ((long)b * T + t0) * C, q, NULL, W, 0.0f, 1, n, NH, NKV, hs, 0);
        worst = fmax(worst, rel_err(out + ((long)b * T + t0) * C, one, (long)n * C));
        worst = fmax(worst, rel_err(dqkv + ((long)b * T + t0) * S, done, (long)n * S));
    }
    printf("packed attention (window %d) vs each example alone: within %.2g\n", W, worst);
    assert_true(worst < 1e-5);
    free(qkv), free(R), free(out), free(dqkv), free(one), free(done), free(scratch);
}
static void test_attention_packed(void **s) {
    run_attention_packed(0);
    run_attention_packed(23);
    run_attention_packed(64);
}

/* bf16 attention (lmf_attention_*_b16: q|k|v kept in bf16, the mixed-precision training path) against the
 * products path on the same bf16 values (lmf_attention_* with bf16 = 1: the six products through lmf_sgemm_bf16,
 * which the model tests hold to PyTorch's autocast). On AMX CPUs the _b16 pair runs its own tile kernel
 * (attention_amx.c), whose sums come in another order: equal to fp32 rounding but where that flips a probability's
 * bf16 rounding (2^-8 of it). Odd T (partial query blocks), GQA, head sizes 32-128, packed rows. */
static void run_attention_b16(int B, int T, int NH, int NKV, int hs, int packed, int W, float cap) {
    int C = NH * hs, S = C + 2 * NKV * hs;
    long nq = (long)B * T * S, no = (long)B * T * C;
    float *qkv = rnd(nq, 31, 2.0f), *R = rnd(no, 32, 1.0f), *o1 = zeros(no), *o2 = zeros(no), *d1 = zeros(nq);
    float *d2 = malloc(sizeof(float) * (size_t)nq), *scratch = zeros((long)lmf_attention_scratch_floats(T, omp_get_max_threads()));
    uint16_t *q16 = malloc(sizeof(uint16_t) * (size_t)nq);
    int32_t *pos = NULL;
    if (packed) { /* examples of 1 to 90 tokens */
        pos = malloc(sizeof(int32_t) * (size_t)B * T);
        unsigned r = 5;
        for (int b = 0, p = 0; b < B; b++, p = 0)
            for (int t = 0; t < T; t++, p++) {
                r = r * 1664525u + 1013904223u;
                if (p >= 1 + (int)(r >> 25) % 90) p = 0;
                pos[b * T + t] = p;
            }
    }
    lmf_sgemm_bf16_round(q16, qkv, nq);
    for (long i = 0; i < nq; i++) {
        uint32_t u = (uint32_t)q16[i] << 16;
        memcpy(&qkv[i], &u, sizeof u);
    }
    for (long i = 0; i < nq; i++) d2[i] = NAN; /* every element must be written */
    lmf_attention_forward(o1, scratch, qkv, pos, W, cap, B, T, NH, NKV, hs, 1);
    lmf_attention_forward_b16(o2, scratch, q16, pos, W, cap, B, T, NH, NKV, hs);
    lmf_attention_backward(d1, scratch, R, qkv, pos, W, cap, B, T, NH, NKV, hs, 1);
    lmf_attention_backward_b16(d2, scratch, R, q16, pos, W, cap, B, T, NH, NKV, hs);
    double eo = rel_err(o2, o1, no), ed = rel_err(d2, d1, nq);
    printf("bf16 attention (%s) B%d T%d heads %d/%d of %d%s window %d cap %g: out %.2g, dqkv %.2g\n",
           lmf_attention_amx_ok(hs) ? "AMX" : "products", B, T, NH, NKV, hs, packed ? " packed" : "", W, cap,
           eo, ed);
    assert_true(eo < 2e-3); /* a mask, scale or layout slip errs by O(1) */
    assert_true(ed < 2e-3);
    lmf_attention_forward(o1, scratch, qkv, pos, W, cap, B, T, NH, NKV, hs, 0); /* and both near fp32: bf16's own error */
    lmf_attention_backward(d1, scratch, R, qkv, pos, W, cap, B, T, NH, NKV, hs, 0);
    assert_close(o2, o1, no, 1e-2, "bf16 attention vs fp32");
    assert_close(d2, d1, nq, 1e-2, "bf16 attention dqkv vs fp32");
    if (W) { /* the window bites: without it the output is far from these */
        lmf_attention_forward(o1, scratch, qkv, pos, 0, cap, B, T, NH, NKV, hs, 0);
        assert_true(rel_err(o2, o1, no) > 0.05);
    }
    free(qkv), free(R), free(o1), free(o2), free(d1), free(d2), free(scratch), free(q16), free(pos);
}
static void test_attention_b16(void **s) {
    run_attention_b16(2, 37, 4, 2, 32, 0, 0, 0.0f);
    run_attention_b16(2, 100, 6, 6, 64, 0, 0, 0.0f);
    run_attention_b16(1, 300, 3, 1, 96, 0, 0, 0.0f);
    run_attention_b16(1, 131, 2, 1, 128, 0, 0, 0.0f);
    run_attention_b16(3, 200, 6, 2, 64, 1, 0, 0.0f);
    run_attention_b16(1, 45, 2, 2, 40, 0, 0, 0.0f); /* not a multiple of 32: the products path on every CPU */
    run_attention_b16(2, 300, 4, 1, 64, 0, 50, 0.0f); /* sliding windows: within a key block, across blocks */
    run_attention_b16(1, 261, 2, 2, 32, 0, 96, 0.0f);
    run_attention_b16(3, 200, 6, 2, 64, 1, 9, 0.0f); /* examples rarely pass 30 tokens */
    run_attention_b16(1, 100, 2, 1, 40, 0, 17, 0.0f);
    run_attention_b16(2, 150, 4, 2, 64, 0, 40, 3.0f); /* soft-capped */
    run_attention_b16(3, 200, 6, 2, 64, 1, 0, 2.0f);
    run_attention_b16(1, 70, 2, 2, 40, 0, 0, 2.0f);
}

/* Fewer (batch, KV head) groups than threads (Gemma's one KV head at batch 1): the backwards split a group's query
 * heads into parts with K / V gradient sums of their own, added up after; the forward splits the same way. At 4
 * threads (a split of the 4 heads) against 1 (none): the forward the same bits, the gradients the same sums in
 * another order. The products path (head size 40) in fp32 and bf16, and the _b16 path (AMX where the CPU has it). */
static void run_attention_split(int hs, int W, float cap) {
    enum { B = 1, T = 150, NH = 4, NKV = 1 };
    int C = NH * hs, S = C + 2 * NKV * hs, keep = omp_get_max_threads();
    long nq = (long)B * T * S, no = (long)B * T * C;
    float *qkv = rnd(nq, 51, 2.0f), *R = rnd(no, 52, 1.0f), *o[2], *d[2];
    float *scratch = zeros((long)lmf_attention_scratch_floats(T, 4));
    uint16_t *q16 = malloc(sizeof(uint16_t) * (size_t)nq);
    lmf_sgemm_bf16_round(q16, qkv, nq);
    for (int path = 0; path < 3; path++) { /* fp32, bf16 products, _b16 */
        for (int k = 0; k < 2; k++) {
            omp_set_num_threads(k ? 4 : 1);
            assert_int_equal(lmf_attention_split(B, NKV, NH / NKV), k ? 4 : 1);
            o[k] = zeros(no), d[k] = malloc(sizeof(float) * (size_t)nq);
            for (long i = 0; i < nq; i++) d[k][i] = NAN; /* every element written (rel_err catches NaN) */
            if (path < 2) lmf_attention_forward(o[k], scratch, qkv, NULL, W, cap, B, T, NH, NKV, hs, path);
            else lmf_attention_forward_b16(o[k], scratch, q16, NULL, W, cap, B, T, NH, NKV, hs);
            if (path < 2) lmf_attention_backward(d[k], scratch, R, qkv, NULL, W, cap, B, T, NH, NKV, hs, path);
            else lmf_attention_backward_b16(d[k], scratch, R, q16, NULL, W, cap, B, T, NH, NKV, hs);
        }
        omp_set_num_threads(keep);
        double e = rel_err(d[1], d[0], nq);
        printf("heads split 4 ways, head size %d window %d cap %g, path %d: out %s, dqkv within %.2g\n", hs, W, cap,
               path, memcmp(o[0], o[1], sizeof(float) * (size_t)no) ? "differs" : "the same", e);
        assert_memory_equal(o[0], o[1], sizeof(float) * (size_t)no);
        assert_true(e < 1e-5);
        free(o[0]), free(o[1]), free(d[0]), free(d[1]);
    }
    free(qkv), free(R), free(scratch), free(q16);
}
static void test_attention_split(void **s) {
    run_attention_split(64, 0, 0.0f);
    run_attention_split(40, 37, 0.0f);
    run_attention_split(32, 50, 3.0f);
}

/* ---- activations ---- */
typedef struct {
    float *out, *x;
    int N, F, swiglu;
} act_ctx;
static void act_fwd(void *p) {
    act_ctx *c = p;
    if (c->swiglu == 1) lmf_swiglu_forward(c->out, c->x, c->N, c->F);
    else if (c->swiglu == 2) lmf_relu_forward(c->out, c->x, (long)c->N * c->F);
    else lmf_gelu_forward(c->out, c->x, (long)c->N * c->F);
}
static void run_act(int swiglu) {
    int N = 5, F = 29;
    int nx = N * F * (swiglu == 1 ? 2 : 1);
    act_ctx c = {zeros(N * F), rnd(nx, 11, 2.0f), N, F, swiglu};
    float *R = rnd(N * F, 12, 1.0f), *dx = zeros(nx);
    act_fwd(&c);
    if (swiglu == 1) lmf_swiglu_backward(dx, R, c.x, N, F);
    else if (swiglu == 2) lmf_relu_backward(dx, c.x, R, (long)N * F);
    else lmf_gelu_backward(dx, c.x, R, (long)N * F);
    objective o = {act_fwd, c.out, N * F, R, &c};
    check_grad(swiglu == 1 ? "swiglu d(gate|up)" : swiglu == 2 ? "relu dx" : "gelu dx", &o, c.x, dx, nx, 1e-2f);
    free(c.out), free(c.x), free(R), free(dx);
}
static void test_gelu(void **s) { run_act(0); }
static void test_swiglu(void **s) { run_act(1); }
static void test_relu(void **s) { run_act(2); }

/* ---- cross-entropy (mean over non-ignored targets) ---- */
typedef struct {
    float *loss, *logits;
    int32_t *targets;
    int N, V;
    float cap;
} ce_ctx;
static void ce_fwd(void *p) {
    ce_ctx *c = p;
    float *losses = malloc(sizeof(float) * c->N), *y = malloc(sizeof(float) * c->N * c->V);
    memcpy(y, c->logits, sizeof(float) * c->N * c->V);
    if (c->cap) lmf_vec()->softcap(y, c->N * c->V, 1.0f, c->cap);
    int count = lmf_crossentropy_forward(losses, NULL, y, c->targets, c->N, c->V);
    double s = 0;
    for (int i = 0; i < c->N; i++) s += losses[i];
    c->loss[0] = (float)(s / count);
    free(losses), free(y);
}
/* d(mean loss)/d(logits) = finite differences, plain and through Gemma 2's soft-cap (V past the backward's chunks) */
static void run_crossentropy(int V, float cap) {
    enum { N = 6 };
    int32_t targets[N] = {3, -1, V - 1, 0, 17, -1};
    float one = 1.0f, loss;
    ce_ctx c = {&loss, rnd(N * V, 13, 3.0f), targets, N, V, cap};
    float *grad = malloc(sizeof(float) * N * V);
    memcpy(grad, c.logits, sizeof(float) * N * V);
    if (cap) lmf_vec()->softcap(grad, N * V, 1.0f, cap);
    float *y = malloc(sizeof(float) * N * V);
    memcpy(y, grad, sizeof(float) * N * V);
    lmf_crossentropy_backward_inplace(grad, NULL, targets, N, V, 1.0f / 4, cap); /* 4 non-ignored rows */
    objective o = {ce_fwd, &loss, 1, &one, &c};
    check_grad(cap ? "soft-capped crossentropy dlogits" : "crossentropy dlogits", &o, c.logits, grad, N * V, 1e-2f);
    for (int v = 0; v < V; v++) assert_true(grad[1 * V + v] == 0.0f); /* ignored rows get no gradient */
    /* the forward's log-sum-exps give the backward the same bits as computing them again */
    float losses[N], lse[N], *grad2 = malloc(sizeof(float) * N * V);
    assert_int_equal(lmf_crossentropy_forward(losses, lse, y, targets, N, V), 4);
    memcpy(grad2, y, sizeof(float) * N * V);
    lmf_crossentropy_backward_inplace(grad2, lse, targets, N, V, 1.0f / 4, cap);
    assert_memory_equal(grad, grad2, sizeof(float) * N * V);
    free(c.logits), free(grad), free(grad2), free(y);
}
static void test_crossentropy(void **s) {
    run_crossentropy(53, 0.0f);
    run_crossentropy(53, 2.5f);
    run_crossentropy(2100, 4.0f);
}

/* ---- embeddings: gradient is a scatter-add; repeated tokens must accumulate ---- */
static void test_encoder(void **s) {
    int B = 2, T = 3, C = 5, V = 4;
    int32_t tok[6] = {1, 3, 1, 1, 0, 2};
    float *wte = rnd(V * C, 14, 1.0f), *wpe = rnd(T * C, 15, 1.0f), *out = zeros(B * T * C);
    float *dout = rnd(B * T * C, 16, 1.0f), *dwte = zeros(V * C), *dwpe = zeros(T * C);
    lmf_encoder_forward(out, tok, wte, wpe, B, T, C);
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++) assert_float_equal(out[i * C + c], wte[tok[i] * C + c] + wpe[(i % T) * C + c], 0);
    lmf_encoder_backward(dwte, dwpe, dout, tok, NULL, B, T, C);
    for (int c = 0; c < C; c++) {
        float want = dout[0 * C + c] + dout[2 * C + c] + dout[3 * C + c]; /* token 1 at positions 0, 2, 3 */
        assert_float_equal(dwte[1 * C + c], want, 1e-6);
        assert_float_equal(dwpe[0 * C + c], dout[0 * C + c] + dout[3 * C + c], 1e-6);
    }
    free(wte), free(wpe), free(out), free(dout), free(dwte), free(dwpe);
}

/* ---- AdamW against a direct transcription of torch.optim.AdamW ---- */
static void test_adamw(void **s) {
    long n = 1001;
    float *p = rnd(n, 17, 1.0f), *g = rnd(n, 18, 1.0f), *m = zeros(n), *v = zeros(n);
    double *pr = malloc(sizeof(double) * n), *mr = calloc(n, sizeof(double)), *vr = calloc(n, sizeof(double));
    for (long i = 0; i < n; i++) pr[i] = p[i];
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    for (int t = 1; t <= 3; t++) {
        lmf_adamw_update(p, g, m, v, n, lr, b1, b2, eps, wd, gs, t);
        for (long i = 0; i < n; i++) {
            double gi = (double)g[i] * gs;
            pr[i] *= 1 - (double)lr * wd;
            mr[i] = b1 * mr[i] + (1 - b1) * gi;
            vr[i] = b2 * vr[i] + (1 - b2) * gi * gi;
            double mh = mr[i] / (1 - pow(b1, t)), vh = vr[i] / (1 - pow(b2, t));
            pr[i] -= lr * mh / (sqrt(vh) + eps);
        }
    }
    for (long i = 0; i < n; i++) assert_float_equal(p[i], pr[i], 1e-5);
    free(p), free(g), free(m), free(v), free(pr), free(mr), free(vr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm),    cmocka_unit_test(test_rmsnorm),     cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_attention_mha), cmocka_unit_test(test_attention_gqa_rope),
        cmocka_unit_test(test_attention_gqa_rope_interleaved), cmocka_unit_test(test_attention_long),
        cmocka_unit_test(test_attention_window),
        cmocka_unit_test(test_attention_softcap), cmocka_unit_test(test_attention_split),
        cmocka_unit_test(test_attention_packed), cmocka_unit_test(test_attention_b16),
        cmocka_unit_test(test_gelu),         cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_relu),         cmocka_unit_test(test_crossentropy),
        cmocka_unit_test(test_encoder),      cmocka_unit_test(test_adamw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
