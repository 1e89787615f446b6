/* test_infer_tiny.c — the inference executor on tiny GGUF models written by gguf-py, a llama, a gpt2 and a phi3, whose
 * tensors cover every weight type (Q8_0, Q4_0, Q4_1, F16, BF16, F32), against an independent NumPy float64
 * forward over gguf-py's dequantization (tests/reference/tiny_gguf_models.py -> fixtures/tiny_*.gguf and
 * tiny_gguf_logits.json). Runs everywhere (no big model needed):
 *  - prefill: the whole sequence in one call, every position's logits (fp32 path: dequantize + SGEMM);
 *  - decode: one token at a time through the KV cache (int16 activations for quantized weights), every position;
 *  - mixed: a prefix in one call, the rest token by token;
 *  - small batches: 5 tokens per call through the decode step (several rows per matrix-vector product);
 *  - refusals: a vocabulary-only GGUF (no hyperparameters), a truncated model. */
#include "test_util.h"

#include "lmforge.h"
#include "model/weights.h"

#include <cjson/cJSON.h>
#include <string.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/"
#define TOL_PREFILL 1e-4
#define TOL_DECODE 2e-3

static cJSON *FX;
static int32_t TOK[64];
static int T, V;

static int setup(void **state) {
    char *json = slurp(FIX "tiny_gguf_logits.json", NULL);
    if (!json) return -1;
    FX = cJSON_Parse(json);
    free(json);
    T = 0;
    for (const cJSON *t = cJSON_GetObjectItem(FX, "tokens")->child; t; t = t->next) TOK[T++] = t->valueint;
    V = cJSON_GetObjectItem(FX, "vocab")->valueint;
    return 0;
}

static int teardown(void **state) {
    cJSON_Delete(FX);
    return 0;
}

static float *reference(const char *model) {
    float *ref = malloc(sizeof(float) * (size_t)T * V);
    int i = 0;
    for (const cJSON *x = cJSON_GetObjectItem(FX, model)->child; x; x = x->next) ref[i++] = (float)x->valuedouble;
    assert_int_equal(i, T * V);
    return ref;
}

static void check_model(const char *name, const char *path) {
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(lmf_weights_config(w)->vocab_size, V);
    float *ref = reference(name);
    lmf_session *s;
    assert_int_equal(lmf_session_create(w, 32, &s), LMF_OK);
    const float *lg;
    /* prefill is fp32 but where its products run on the integer decode kernels (AMX-INT8): decode's rounding */
    double tol_prefill = lmf_weights_integer_prefill(w) ? TOL_DECODE : TOL_PREFILL;

    assert_int_equal(lmf_session_eval(s, TOK, T, 1, &lg), LMF_OK);
    double e = rel_err(lg, ref, (long)T * V);
    printf("%s prefill, all %d positions: rel err %.3g\n", name, T, e);
    assert_true(e <= tol_prefill);

    lmf_session_rewind(s, 0);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        assert_int_equal(lmf_session_eval(s, TOK + t, 1, 0, &lg), LMF_OK);
        double et = rel_err(lg, ref + (size_t)t * V, V);
        if (et > worst) worst = et;
    }
    printf("%s decode, token by token: worst rel err %.3g\n", name, worst);
    assert_true(worst <= TOL_DECODE);

    /* a prefix in one call, then the rest one at a time, last logits only (T / 2 = 6 rows: few enough for the
     * decode step's products, so decode's rounding) */
    lmf_session_rewind(s, 0);
    assert_int_equal(lmf_session_eval(s, TOK, T / 2, 0, &lg), LMF_OK);
    assert_true(rel_err(lg, ref + (size_t)(T / 2 - 1) * V, V) <= TOL_DECODE);
    for (int t = T / 2; t < T; t++) assert_int_equal(lmf_session_eval(s, TOK + t, 1, 0, &lg), LMF_OK);
    assert_true(rel_err(lg, ref + (size_t)(T - 1) * V, V) <= TOL_DECODE);

    /* small batches (several rows through the decode step at once), every position's logits */
    lmf_session_rewind(s, 0);
    worst = 0;
    for (int t0 = 0; t0 < T; t0 += 5) {
        int n = T - t0 < 5 ? T - t0 : 5;
        assert_int_equal(lmf_session_eval(s, TOK + t0, n, 1, &lg), LMF_OK);
        double et = rel_err(lg, ref + (size_t)t0 * V, (long)n * V);
        if (et > worst) worst = et;
    }
    printf("%s decode, batches of 5: worst rel err %.3g\n", name, worst);
    assert_true(worst <= TOL_DECODE);

    free(ref);
    lmf_session_free(s);
    lmf_weights_free(w);
}

static void test_tiny_llama(void **state) { check_model("llama", FIX "tiny_llama.gguf"); }
static void test_tiny_gpt2(void **state) { check_model("gpt2", FIX "tiny_gpt2.gguf"); }
static void test_tiny_phi3(void **state) { check_model("phi3", FIX "tiny_phi3.gguf"); }

/* A hostile layer count (the libFuzzer find: block_count 134217729, and 2^30): refused by name before the layer
 * table is allocated, not an abort on a 48 GB / 386 GB allocation. */
static void test_hostile_block_count(void **state) {
    size_t n;
    char *bytes = slurp(FIX "tiny_gpt2.gguf", &n);
    const char key[] = "gpt2.block_count";
    char *at = memmem(bytes, n, key, sizeof key - 1);
    assert_non_null(at);
    uint32_t type;
    memcpy(&type, at + sizeof key - 1, 4);
    assert_int_equal(type, 4); /* GGUF_TYPE_UINT32: the value follows */
    const uint32_t counts[] = {134217729u, 1u << 30};
    for (int i = 0; i < 2; i++) {
        memcpy(at + sizeof key - 1 + 4, &counts[i], 4);
        char path[256];
        snprintf(path, sizeof path, "%s/tiny_gpt2_layers.gguf", LMF_BINARY_DIR);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(bytes, 1, n, f), n);
        fclose(f);
        lmf_weights *w;
        assert_int_equal(lmf_weights_load(path, &w), LMF_ERR_FORMAT);
        assert_null(w);
        assert_non_null(strstr(lmf_last_error(), "tiny_gpt2_layers.gguf: gpt2.block_count ="));
        assert_non_null(strstr(lmf_last_error(), "tensors; the file has"));
        remove(path);
    }
    free(bytes);
}

static void test_refusals(void **state) {
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "tiny_vocab.gguf", &w), LMF_ERR_FORMAT);
    assert_null(w);
    assert_non_null(strstr(lmf_last_error(), "tiny_vocab.gguf: metadata key 'llama.embedding_length' is missing"));
    /* the llama model cut in the middle of its tensor data */
    size_t n;
    char *bytes = slurp(FIX "tiny_llama.gguf", &n);
    char path[256];
    snprintf(path, sizeof path, "%s/tiny_llama_truncated.gguf", LMF_BINARY_DIR);
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, n - 1000, f);
    fclose(f);
    assert_int_equal(lmf_weights_load(path, &w), LMF_ERR_FORMAT);
    assert_null(w);
    printf("truncated: %s\n", lmf_last_error());
    remove(path);
    free(bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_llama),
        cmocka_unit_test(test_tiny_gpt2),
        cmocka_unit_test(test_tiny_phi3),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_hostile_block_count),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
