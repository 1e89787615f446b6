/* test_batch.c — several sequences in one step (lmf_session_eval_batch) over a paged KV pool give each sequence the
 * logits it gets when evaluated alone.
 *
 * Models: the tiny GGUF llama and gpt2 (their tensors cover Q8_0, Q4_0, Q4_1, F16, BF16, F32), the Hugging Face
 * llama (GQA, F32), gpt2 and OPT (F16) fixtures, and SmolLM2-135M (Q4_1, and re-quantized as llama.cpp's Q4_K_M,
 * Q5_K_M and Q6_K: Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K matrices) when it is present. The pool's blocks hold
 * 16 positions, so sequences span several blocks and block boundaries fall inside attention stretches.
 *
 * Each step of the batch is compared with the same tokens evaluated alone (a session in a pool of its own with the
 * same block size) in the same-sized pieces, so both go through the same path (decode for up to 8 rows, prefill
 * above). Three kinds of step: one token per sequence (the server's decode step), a few tokens each (up to 8 rows:
 * decode), and more than 8 rows in all (the prefill path, several sequences through one pass over the weights).
 * Equal to the bit: on either path each row's sums run in an order the weights fix, not the rows beside it (the
 * SGEMM's depth blocks follow K only; the matrix-vector tiles sum a (row, column) pair the same way for any number
 * of columns). The server's batch invariance (serve/engine.h) rests on this. All of it twice: with an fp32 and with
 * an f16 KV cache; and the f16 cache's logits against the fp32 cache's (check_f16_cache). */
#include "test_util.h"

#include "lmforge.h"
#include "core/dtype.h"
#include "kernels/quant.h"
#include "model/export.h"
#include "model/weights.h"

#include <string.h>
#include <unistd.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/"
#define NSEQ 3

/* The tokens of sequence q at position p: deterministic, different per sequence. */
static int32_t token(int q, int p, int V) { return (int32_t)((p * 37 + q * 101 + 7) % V); }

/* Steps: for each, how many tokens each sequence adds (0: sits this step out). */
static const int STEPS[][NSEQ] = {
    {9, 12, 14},  /* prompts: each alone > 8 rows (prefill), 35 rows in the batch */
    {1, 1, 1},    /* decode, one token each */
    {1, 1, 1},
    {2, 1, 4},    /* 7 rows: still the decode step */
    {0, 1, 1},    /* a sequence sits out */
    {10, 0, 9},   /* prefill path again, at different depths (OPT's 32 positions are the limit) */
    {1, 1, 1},
};

static void check_weights(lmf_weights *w, const char *path, lmf_kv_type kvt) {
    int V = lmf_weights_config(w)->vocab_size, ctx = 64;
    double worst = 0, worst_prefill = 0;
    lmf_kv_pool *pool;
    assert_int_equal(lmf_kv_pool_create(w, NSEQ * ctx, 16, ctx, kvt, &pool), LMF_OK);
    assert_int_equal(lmf_kv_pool_block_size(pool), 16);
    assert_int_equal(lmf_kv_pool_blocks_free(pool), lmf_kv_pool_blocks(pool));
    lmf_session *batch[NSEQ], *alone[NSEQ];
    lmf_kv_pool *own[NSEQ];
    for (int q = 0; q < NSEQ; q++) {
        assert_int_equal(lmf_session_create_pooled(pool, ctx, &batch[q]), LMF_OK);
        assert_int_equal(lmf_kv_pool_create(w, ctx, 16, ctx, kvt, &own[q]), LMF_OK);
        assert_int_equal(lmf_session_create_pooled(own[q], ctx, &alone[q]), LMF_OK);
    }
    float *got = malloc(sizeof(float) * NSEQ * (size_t)V);
    int pos[NSEQ] = {0};
    for (size_t st = 0; st < sizeof STEPS / sizeof STEPS[0]; st++) {
        lmf_session *ss[NSEQ];
        int32_t tok[NSEQ][32];
        const int32_t *tp[NSEQ];
        int n[NSEQ], count = 0;
        for (int q = 0; q < NSEQ; q++) {
            if (!STEPS[st][q]) continue;
            for (int i = 0; i < STEPS[st][q]; i++) tok[q][i] = token(q, pos[q] + i, V);
            ss[count] = batch[q], tp[count] = tok[q], n[count++] = STEPS[st][q];
        }
        if (lmf_session_eval_batch(ss, tp, n, count, got) != LMF_OK) fail_msg("%s", lmf_last_error());
        for (int q = 0, k = 0; q < NSEQ; q++) {
            if (!STEPS[st][q]) continue;
            const float *ref;
            if (lmf_session_eval(alone[q], tok[q], STEPS[st][q], 0, &ref) != LMF_OK) fail_msg("%s", lmf_last_error());
            pos[q] += STEPS[st][q];
            assert_int_equal(lmf_session_pos(batch[q]), pos[q]);
            int rows = 0;
            for (int j = 0; j < count; j++) rows += n[j];
            double e = rel_err(got + (size_t)k * V, ref, V), tol = 0;
            if (memcmp(got + (size_t)k * V, ref, sizeof(float) * (size_t)V)) e = e > 0 ? e : 1e-30; /* -0 vs 0 */
            double *w_ = rows > 8 ? &worst_prefill : &worst;
            if (e > *w_) *w_ = e;
            if (!(e <= tol))
                fail_msg("%s (%s cache): step %zu (%d rows), sequence %d at position %d: relative error %.3g > %.3g "
                         "against the sequence evaluated alone", path, kvt == LMF_KV_F16 ? "f16" : "f32", st, rows, q,
                         pos[q], e, tol);
            k++;
        }
    }
    printf("%s (%s cache): %zu steps of %d sequences vs alone: prefill steps within %.2g, decode steps within %.2g\n",
           path, kvt == LMF_KV_F16 ? "f16" : "f32", sizeof STEPS / sizeof STEPS[0], NSEQ, worst_prefill, worst);

    /* blocks come back on rewind and free; a step that would overflow the pool fails before changing anything */
    int held = lmf_kv_pool_blocks(pool) - lmf_kv_pool_blocks_free(pool);
    assert_true(held >= 6);
    lmf_session_rewind(batch[0], 0);
    assert_true(lmf_kv_pool_blocks_free(pool) > lmf_kv_pool_blocks(pool) - held);
    lmf_session_free(batch[1]);
    lmf_session *extra;
    assert_int_equal(lmf_session_create_pooled(pool, ctx, &extra), LMF_OK);
    int32_t many[64];
    for (int i = 0; i < 64; i++) many[i] = token(5, i, V);
    int free_before = lmf_kv_pool_blocks_free(pool);
    const int32_t *tp2[2] = {many, many};
    int n2[2] = {64, 64};
    lmf_session *pair[2] = {batch[0], extra};
    if (free_before < 8) {
        assert_int_equal(lmf_session_eval_batch(pair, tp2, n2, 2, NULL), LMF_ERR_ARG);
        assert_non_null(strstr(lmf_last_error(), "KV pool is exhausted"));
        assert_int_equal(lmf_kv_pool_blocks_free(pool), free_before);
        assert_int_equal(lmf_session_pos(batch[0]), 0);
    }
    /* the same session twice in one step is refused */
    lmf_session *twice[2] = {extra, extra};
    int n1[2] = {1, 1};
    assert_int_equal(lmf_session_eval_batch(twice, tp2, n1, 2, NULL), LMF_ERR_ARG);
    lmf_session_free(extra);
    lmf_session_free(batch[0]), lmf_session_free(batch[2]);
    assert_int_equal(lmf_kv_pool_blocks_free(pool), lmf_kv_pool_blocks(pool));
    for (int q = 0; q < NSEQ; q++) lmf_session_free(alone[q]), lmf_kv_pool_free(own[q]);
    lmf_kv_pool_free(pool);
    free(got);
}

static void check_model(const char *path, lmf_kv_type kvt) {
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    check_weights(w, path, kvt);
    lmf_weights_free(w);
}

/* An f16 cache against the fp32 one: the same tokens (a 40-token prompt through the prefill path, 24 where the
 * context is 32, then 8 decode steps) give logits within tol of max |logit|; the halves' rounding of K and V (2^-11
 * relative) is all that differs. Measured: SmolLM2 4.2e-4, the HF fixtures 1.8e-4 - 6e-4, the tiny random llama
 * 2.3e-3 (random weights make sharper attention than trained ones). */
static void check_f16_cache(const char *path, double tol) {
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    int V = lmf_weights_config(w)->vocab_size;
    lmf_session *s32, *s16;
    assert_int_equal(lmf_session_create_kv(w, 64, LMF_KV_F32, &s32), LMF_OK);
    assert_int_equal(lmf_session_create_kv(w, 64, LMF_KV_F16, &s16), LMF_OK);
    int32_t tok[48];
    int np = lmf_weights_config(w)->max_seq_len >= 48 ? 40 : 24;
    for (int i = 0; i < 48; i++) tok[i] = token(1, i, V);
    double worst = 0;
    for (int at = 0; at < np + 8; at += at ? 1 : np) {
        int n = at ? 1 : np;
        const float *a, *b;
        if (lmf_session_eval(s32, tok + at, n, 0, &a) != LMF_OK || lmf_session_eval(s16, tok + at, n, 0, &b) != LMF_OK)
            fail_msg("%s", lmf_last_error());
        double e = rel_err(b, a, V);
        if (e > worst) worst = e;
        if (!(e <= tol)) fail_msg("%s: f16 cache at position %d: relative error %.3g > %.3g", path, at + n, e, tol);
    }
    printf("%s: f16 cache vs f32 over %d positions: within %.2g\n", path, np + 8, worst);
    lmf_session_free(s32), lmf_session_free(s16);
    lmf_weights_free(w);
}

static void check_both(const char *path) {
    check_model(path, LMF_KV_F32);
    check_model(path, LMF_KV_F16);
    check_f16_cache(path, 5e-3);
}

static void test_tiny_llama(void **state) { check_both(FIX "tiny_llama.gguf"); }
static void test_tiny_gpt2(void **state) { check_both(FIX "tiny_gpt2.gguf"); }
static void test_hf_llama(void **state) { check_both(FIX "hf/llama"); }
static void test_hf_gpt2(void **state) { check_both(FIX "hf/gpt2"); }
static void test_hf_opt(void **state) { check_both(FIX "hf/opt"); }

/* SmolLM2's GGUF ($LMF_SMOLLM2_GGUF, else this build's models/), or NULL when it is not there */
static const char *smollm2_file(void) {
    const char *path = getenv("LMF_SMOLLM2_GGUF");
    if (!path) path = LMF_BINARY_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fclose(f);
    return path;
}

static void test_smollm2(void **state) {
    const char *path = smollm2_file();
    if (!path) skip();
    check_both(path);
}

/* The last logits of 12 tokens evaluated one a call (the decode path: int16 activations against the weights as
 * stored) within 1e-3 of the same tokens in one call (the prefill path: fp32 products of the dequantized weights). */
static void check_decode_prefill(const lmf_weights *w, const char *what) {
    int V = lmf_weights_config(w)->vocab_size;
    lmf_session *pre, *dec;
    assert_int_equal(lmf_session_create(w, 64, &pre), LMF_OK);
    assert_int_equal(lmf_session_create(w, 64, &dec), LMF_OK);
    int32_t tok[12];
    for (int i = 0; i < 12; i++) tok[i] = token(2, i, V);
    const float *a, *b = NULL;
    if (lmf_session_eval(pre, tok, 12, 0, &a) != LMF_OK) fail_msg("%s", lmf_last_error());
    for (int i = 0; i < 12; i++)
        if (lmf_session_eval(dec, tok + i, 1, 0, &b) != LMF_OK) fail_msg("%s", lmf_last_error());
    double e = rel_err(b, a, V);
    printf("%s: decode vs prefill logits within %.2g\n", what, e);
    if (!(e <= 1e-3)) fail_msg("%s: decode vs prefill relative error %.3g", what, e);
    lmf_session_free(pre), lmf_session_free(dec);
}

/* SmolLM2 quantized as llama.cpp's Q4_K_M / Q5_K_M / Q6_K files are (lmforge quantize writes llama-quantize's
 * tensors: tests/cli_quantize.sh): Q5_0 / Q5_1 / Q8_0 for the 576-wide matrices, Q4_K / Q5_K / Q6_K for ffn_down;
 * and its Q2_K file (Q4_0, ffn_down Q3_K), once more with ffn_down in Q2_K, and its IQ4_XS file.
 * Batch invariance on their decode kernels (R16 where this CPU's table has them), and the decode path (one token a
 * call: int16 activations against the quantized weights) within 1e-3 of the prefill path (fp32 products of the
 * dequantized weights, the R16 k-major reader's slabs) over the same 12 tokens: a wrong fifth bit, offset or
 * sub-block scale moves logits by far more. */
static void check_requantized(const char *path, uint32_t type, uint32_t down_type) {
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    char out[64];
    snprintf(out, sizeof out, "/tmp/lmf_test_batch_%d.gguf", (int)getpid());
    /* down_type (not 0): ffn_down's type by a --tensor-type rule (the only matrix of SmolLM2 wide enough for Q2_K) */
    lmf_tensor_type_rule rule = {"ffn_down", down_type};
    lmf_export_opts o = {0};
    if (down_type) o.rules = &rule, o.n_rules = 1;
    if (lmf_export_gguf_opts(w, out, type, &o) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights_free(w);
    check_model(out, LMF_KV_F32);
    if (lmf_weights_load(out, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    unlink(out);
    const lmf_wtensor *q = &w->layers[3].wq, *down = &w->layers[3].w_down; /* a layer without llama's extra bits */
    char what[96];
    snprintf(what, sizeof what, "SmolLM2 as %s (q %s, ffn_down %s; R16: %s / %s)", lmf_export_type_name(type),
             lmf_ggml_type_name(q->type), lmf_ggml_type_name(down->type),
             lmf_r16_supported(q->type, 576, 576) ? "yes" : "no", lmf_r16_supported(down->type, 576, 1536) ? "yes" : "no");
    check_decode_prefill(w, what);
    lmf_weights_free(w);
}

static void test_smollm2_kquant(void **state) {
    const char *path = smollm2_file();
    if (!path) skip();
    check_requantized(path, LMF_MIX_Q4_K_M, 0);
    check_requantized(path, LMF_MIX_Q5_K_M, 0);
    check_requantized(path, LMF_MIX_Q6_K, 0);
    check_requantized(path, LMF_MIX_Q2_K, 0); /* ffn_down Q3_K */
    check_requantized(path, LMF_MIX_Q2_K, LMF_GGML_Q2_K);
    check_requantized(path, LMF_GGML_IQ4_XS, 0); /* IQ4_NL, ffn_down IQ4_XS (Q5_K in the first eighth) */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_llama), cmocka_unit_test(test_tiny_gpt2), cmocka_unit_test(test_hf_llama),
        cmocka_unit_test(test_hf_gpt2),    cmocka_unit_test(test_hf_opt),    cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_smollm2_kquant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
