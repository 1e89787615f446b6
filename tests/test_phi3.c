/* test_phi3.c — the phi3 family (llama's block with q|k|v and gate|up stored fused) against transformers
 * (tests/reference/make_phi3_fixtures.py: a tiny Phi3ForCausalLM folder and its logits) and through every format:
 *  - transformers' folder (qkv_proj, gate_up_proj) gives its logits;
 *  - our GGUF export (llama.cpp's phi3: attn_qkv and a 2F-row ffn_up, no ffn_gate) reads back with them, F32 exactly
 *    and Q8_0 near; our Hugging Face export (Phi3ForCausalLM) reads back with them;
 *  - the gguf-py fixture (tiny_phi3.gguf) written as Hugging Face keeps its logits;
 *  - LongRoPE (the 128k models): transformers' short- and long-factor logits by the session's context, through our
 *    GGUF and HF exports; trained (full and LoRA) with the factors transformers picks by the sequence's length;
 *  - refused by name: RoPE on part of each head, a longrope config without its factors, a GGUF with half of them. */
#include "test_util.h"

#include "io/gguf.h"
#include "io/safetensors.h"
#include "lmforge.h"
#include "model/export.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/"
#define B 2
#define T 8

/* The logits of every position of `rows` rows of n tokens, each row from an empty cache of ctx positions. */
static void logits_n(lmf_weights *w, const int32_t *tok, int rows, int n, int ctx, float *out) {
    int V = lmf_weights_config(w)->vocab_size;
    lmf_session *s;
    assert_int_equal(lmf_session_create(w, ctx, &s), LMF_OK);
    for (int b = 0; b < rows; b++) {
        const float *lg;
        lmf_session_rewind(s, 0);
        assert_int_equal(lmf_session_eval(s, tok + b * n, n, 1, &lg), LMF_OK);
        memcpy(out + (size_t)b * n * V, lg, sizeof(float) * (size_t)n * V);
    }
    lmf_session_free(s);
}

static void logits_of(lmf_weights *w, const int32_t *tok, float *out) { logits_n(w, tok, B, T, 32, out); }

static const lmf_st_tensor *need(lmf_safetensors *st, const char *name) {
    const lmf_st_tensor *t = lmf_safetensors_find(st, name);
    if (!t) fail_msg("logits.safetensors: no tensor %s", name);
    return t;
}

/* The model at path against transformers' logits, within tol (relative to the largest). */
static void check(const char *path, double tol) {
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(FIX "phi3/logits.safetensors", &st), LMF_OK);
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(lmf_weights_config(w)->arch, LMF_ARCH_PHI3);
    size_t n = (size_t)B * T * lmf_weights_config(w)->vocab_size;
    float *lg = malloc(sizeof(float) * n);
    logits_of(w, need(st, "tokens")->data, lg);
    double e = rel_err(lg, need(st, "logits")->data, (long)n);
    printf("%s: logits off transformers' by %.3g\n", path, e);
    if (!(e <= tol)) fail_msg("%s: logits off by %.3g (> %.3g)", path, e, tol);
    free(lg);
    lmf_weights_free(w);
    lmf_safetensors_close(st);
}

static void test_hf_folder(void **s) {
    (void)s;
    check(FIX "phi3/phi3", 1e-5);
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "phi3/phi3", &w), LMF_OK);
    const lmf_model_config *c = lmf_weights_config(w);
    assert_true(!c->tied_embeddings && c->n_kv_head == 2 && c->ffn_dim == 24 && c->pos == LMF_POS_ROPE_HALF);
    lmf_weights_free(w);
}

static void test_exports(void **s) {
    (void)s;
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "phi3/phi3", &w), LMF_OK);
    char path[256], cmd[600];
    snprintf(path, sizeof path, "/tmp/lmf_phi3_%d.gguf", (int)getpid());
    if (lmf_export_gguf(w, path, LMF_GGML_F32, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(path, &g), LMF_OK);
    const char *arch;
    assert_int_equal(lmf_gguf_get_str(g, "general.architecture", &arch), LMF_OK);
    assert_string_equal(arch, "phi3");
    const lmf_gguf_tensor *qkv = lmf_gguf_find_tensor(g, "blk.1.attn_qkv.weight"),
                          *up = lmf_gguf_find_tensor(g, "blk.1.ffn_up.weight"); /* ggml order: [in, out] */
    assert_true(qkv && qkv->ne[0] == 32 && qkv->ne[1] == 32 + 2 * 16);
    assert_true(up && up->ne[0] == 32 && up->ne[1] == 2 * 24);
    assert_null(lmf_gguf_find_tensor(g, "blk.1.ffn_gate.weight"));
    assert_null(lmf_gguf_find_tensor(g, "blk.1.attn_q.weight"));
    lmf_gguf_close(g);
    check(path, 1e-5);
    if (lmf_export_gguf(w, path, LMF_GGML_Q8_0, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    check(path, 3e-2); /* Q8_0's error on rows of 32 */
    unlink(path);
    snprintf(path, sizeof path, "/tmp/lmf_phi3_hf_%d", (int)getpid());
    if (lmf_export_safetensors(w, path, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    check(path, 1e-5);
    snprintf(cmd, sizeof cmd, "grep -q '\"model_type\":.*\"phi3\"' %s/config.json && rm -rf %s", path, path);
    assert_int_equal(system(cmd), 0);
    lmf_weights_free(w);
}

/* gguf-py's phi3 (llama.cpp's names, written by another tool) as a Hugging Face folder: the same logits */
static void test_gguf_to_hf(void **s) {
    (void)s;
    lmf_weights *g, *h;
    assert_int_equal(lmf_weights_load(FIX "tiny_phi3.gguf", &g), LMF_OK);
    char path[256], cmd[600];
    snprintf(path, sizeof path, "/tmp/lmf_phi3_fromgguf_%d", (int)getpid());
    if (lmf_export_safetensors(g, path, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(lmf_weights_load(path, &h), LMF_OK);
    int V = lmf_weights_config(g)->vocab_size;
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 37 + 5) % V;
    float *a = malloc(sizeof(float) * B * T * V), *b = malloc(sizeof(float) * B * T * V);
    logits_of(g, tok, a);
    logits_of(h, tok, b);
    double e = rel_err(b, a, (long)B * T * V);
    printf("tiny_phi3.gguf -> Hugging Face: logits off by %.3g\n", e);
    /* the same values, but quantized weights may take integer or split-bf16 prefill products (AMX): decode's
     * tolerance, as test_infer_tiny's */
    assert_true(e <= 2e-3);
    free(a), free(b);
    lmf_weights_free(g), lmf_weights_free(h);
    snprintf(cmd, sizeof cmd, "rm -rf %s", path);
    assert_int_equal(system(cmd), 0);
}

/* config.json with one field changed (sed expression), loaded: refused with `want` in the message */
static void refused_hf(const char *sed, const char *want) {
    char dir[256], cmd[900];
    snprintf(dir, sizeof dir, "/tmp/lmf_phi3_bad_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r %s %s && sed -i '%s' %s/config.json", dir, FIX "phi3/phi3", dir, sed,
             dir);
    assert_int_equal(system(cmd), 0);
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(dir, &w), LMF_ERR_FORMAT);
    printf("refused: %s\n", lmf_last_error());
    assert_non_null(strstr(lmf_last_error(), want));
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* LongRoPE (Phi-3 128k): transformers' tiny longrope model (original context 16) takes the short factors for the
 * 8-token rows and the long ones for a 24-token row; lmforge picks them by the session's context, as llama.cpp: a
 * context of 16 gives the first, 32 the second. The same through our GGUF (rope_factors_*, attn_factor) and HF
 * exports. */
static void check_longrope(const char *path, lmf_safetensors *st) {
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s: %s", path, lmf_last_error());
    const lmf_model_config *c = lmf_weights_config(w);
    assert_true(c->rope_scaling == LMF_ROPE_SCALING_LONGROPE && c->rope_orig_ctx == 16);
    assert_true(fabsf(c->rope_factor - 1.2247449f) < 1e-6f); /* sqrt(1 + ln(64 / 16) / ln 16) */
    int V = c->vocab_size;
    float *lg = malloc(sizeof(float) * 24 * V * 2);
    logits_n(w, need(st, "tokens")->data, B, T, 16, lg);
    double e = rel_err(lg, need(st, "logits")->data, (long)B * T * V);
    logits_n(w, need(st, "long_tokens")->data, 1, 24, 32, lg);
    double el = rel_err(lg, need(st, "long_logits")->data, 24L * V);
    printf("%s: LongRoPE short factors (context 16) off by %.3g, long (context 32) by %.3g\n", path, e, el);
    assert_true(e <= 1e-5 && el <= 1e-5);
    /* the short factors' logits with the long factors in the table are not these (the check can fail) */
    logits_n(w, need(st, "tokens")->data, B, T, 32, lg);
    assert_true(rel_err(lg, need(st, "logits")->data, (long)B * T * V) > 1e-3);
    free(lg);
    lmf_weights_free(w);
}

/* d loss / d (a sample of m's parameters) against central differences; the loss of rows tok (rows x n) predicting
 * their next token */
static double grad_vs_fd(lmf_model *m, const int32_t *tok, int rows, int n) {
    int32_t tg[64];
    for (int i = 0; i < rows * n; i++) tg[i] = (i + 1) % n ? tok[i + 1] : -1;
    lmf_model_zero_grad(m);
    lmf_model_forward(m, tok, tg, rows, n);
    lmf_model_backward(m, 1.0f);
    double worst = 0, maxg = 0;
    for (size_t i = 0; i < m->num_params; i++) maxg = fmax(maxg, fabs(m->grads[i]));
    for (size_t i = 7; i < m->num_params; i += m->num_params / 23) {
        float p0 = m->params[i], h = 1e-2f;
        m->params[i] = p0 + h;
        double lp = lmf_model_forward(m, tok, tg, rows, n);
        m->params[i] = p0 - h;
        double lm = lmf_model_forward(m, tok, tg, rows, n);
        m->params[i] = p0;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - m->grads[i]) / maxg);
    }
    return worst;
}

/* Training a LongRoPE model (full fine-tuning, LoRA): the factors come from the weights, short ones for rows up to
 * the original context (16) and long ones past it, as transformers picks them by the sequence's length; the training
 * forward gives transformers' logits both ways, its gradients equal finite differences, the LoRA model's forward
 * (a fresh adapter) the same logits, and the trained model's GGUF export keeps the factors. */
static void train_longrope(lmf_weights *w, lmf_safetensors *st) {
    int V = lmf_weights_config(w)->vocab_size;
    static const struct {
        const char *tokens, *logits;
        int rows, n;
    } runs[2] = {{"tokens", "logits", B, T}, {"long_tokens", "long_logits", 1, 24}};
    for (int k = 0; k < 2; k++) {
        const int32_t *tok = need(st, runs[k].tokens)->data;
        long nl = (long)runs[k].rows * runs[k].n * V;
        lmf_model *m;
        assert_int_equal(lmf_model_from_weights(w, runs[k].rows, runs[k].n, 1, &m), LMF_OK);
        lmf_model_forward(m, tok, NULL, runs[k].rows, runs[k].n);
        double e = rel_err(lmf_model_logits(m), need(st, runs[k].logits)->data, nl);
        double g = grad_vs_fd(m, tok, runs[k].rows, runs[k].n);
        lmf_lora *lo;
        assert_int_equal(lmf_lora_create(lmf_weights_config(w), "qkv_proj", 4, 8.0f, 0.0f, 0, &lo), LMF_OK);
        lmf_lora_init(lo, 1);
        lmf_model *ml;
        assert_int_equal(lmf_model_create_lora(w, lo, runs[k].rows, runs[k].n, &ml), LMF_OK);
        lmf_model_forward(ml, tok, NULL, runs[k].rows, runs[k].n);
        double el = rel_err(lmf_model_logits(ml), need(st, runs[k].logits)->data, nl);
        printf("LongRoPE training, %d x %d tokens (%s factors): logits off by %.3g (LoRA model %.3g), gradients vs "
               "finite differences %.3g\n", runs[k].rows, runs[k].n, k ? "long" : "short", e, el, g);
        assert_true(e <= 1e-5 && el <= 1e-5 && g < 2e-2);
        if (k == 0) {
            char path[256];
            snprintf(path, sizeof path, "/tmp/lmf_phi3_longrope_ft_%d.gguf", (int)getpid());
            if (lmf_export_gguf(lmf_model_weights(m), path, LMF_GGML_F32, NULL) != LMF_OK)
                fail_msg("%s", lmf_last_error());
            check_longrope(path, st);
            unlink(path);
        }
        lmf_model_free(ml);
        lmf_lora_free(lo);
        lmf_model_free(m);
    }
}

static void test_longrope(void **s) {
    (void)s;
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(FIX "phi3/longrope.safetensors", &st), LMF_OK);
    check_longrope(FIX "phi3/phi3_longrope", st);
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "phi3/phi3_longrope", &w), LMF_OK);
    char path[256], cmd[600];
    snprintf(path, sizeof path, "/tmp/lmf_phi3_longrope_%d.gguf", (int)getpid());
    if (lmf_export_gguf(w, path, LMF_GGML_F32, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    check_longrope(path, st);
    unlink(path);
    snprintf(path, sizeof path, "/tmp/lmf_phi3_longrope_hf_%d", (int)getpid());
    if (lmf_export_safetensors(w, path, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    check_longrope(path, st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", path);
    assert_int_equal(system(cmd), 0);
    /* a model from a config alone has no factors: refused by name, not trained with plain RoPE */
    assert_null(lmf_model_create(&w->cfg, 1, 8, 1));
    assert_non_null(strstr(lmf_last_error(), "LongRoPE"));
    train_longrope(w, st);
    lmf_weights_free(w);
    lmf_safetensors_close(st);
}

static void test_refusals(void **s) {
    (void)s;
    refused_hf("s/\"partial_rotary_factor\": 1.0/\"partial_rotary_factor\": 0.75/", "partial_rotary_factor 0.75");
    refused_hf("s/\"rope_type\": \"default\"/\"rope_type\": \"longrope\"/", "short_factor");
    /* a GGUF with LongRoPE's factor tensors: the fixture's bytes with one tensor renamed */
    size_t n;
    char *bytes = slurp(FIX "tiny_phi3.gguf", &n);
    assert_non_null(bytes);
    const char from[] = "blk.0.attn_output.weight", to[] = "rope_factors_long.weight"; /* the same length */
    _Static_assert(sizeof from == sizeof to, "a rename in place");
    char *at = memmem(bytes, n, from, sizeof from - 1);
    assert_non_null(at);
    memcpy(at, to, sizeof to - 1);
    char path[256];
    snprintf(path, sizeof path, "/tmp/lmf_phi3_longrope_%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    fclose(f);
    free(bytes);
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(path, &w), LMF_ERR_FORMAT);
    printf("refused: %s\n", lmf_last_error());
    assert_non_null(strstr(lmf_last_error(), "original_context_length"));
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_folder),
        cmocka_unit_test(test_exports),
        cmocka_unit_test(test_gguf_to_hf),
        cmocka_unit_test(test_longrope),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
