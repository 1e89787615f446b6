/* test_infer.c — the inference executor (sessions, KV cache, prefill and decode paths) on the real
 * SmolLM2-135M-Instruct Q4_1 GGUF, against the independent NumPy float64 forward of
 * tests/reference/smollm2_logits.py (tests/reference/smollm2_logits.json); skipped without the model file.
 *
 *  - prefill: each prompt in one call with all logits: argmax at every position, last-position logits;
 *  - decode: prompt 0 one token at a time through the KV cache: same last-position logits;
 *  - greedy: prompt 0 continued for the reference's 64 tokens through the KV cache, identical ids;
 *  - sessions: rewind and re-evaluate gives the same logits; bad tokens and context overflow are refused.
 * Decode reads quantized weights with int16-quantized activations (measured ~2e-4; llama.cpp's int8 ones give 2-5%
 * here and the greedy run diverges at step 5): the reference's smallest top-1/top-2 margin is 0.05. */
#include "test_util.h"

#include "lmforge.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>

#define LOGITS_FIXTURE LMF_SOURCE_DIR "/tests/reference/smollm2_logits.json"
#define TOL_PREFILL 1e-3
#define TOL_DECODE 2e-3

static lmf_weights *W;
static cJSON *FX;

static int setup(void **state) {
    const char *path = smollm2_path();
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    if (lmf_weights_load(path, &W) != LMF_OK) {
        fprintf(stderr, "%s\n", lmf_last_error());
        return -1;
    }
    char *json = slurp(LOGITS_FIXTURE, NULL);
    if (!json) return -1;
    FX = cJSON_Parse(json);
    free(json);
    return FX ? 0 : -1;
}

static int teardown(void **state) {
    lmf_weights_free(W);
    cJSON_Delete(FX);
    return 0;
}

static void need_model(void) {
    if (!W) {
        printf("[  SKIP    ] %s not found; run scripts/fetch-smollm2.sh (or set LMF_SMOLLM2_GGUF)\n", smollm2_path());
        skip();
    }
}

static int case_ids(const cJSON *c, int32_t *tok, int cap) {
    int T = 0;
    for (const cJSON *i = cJSON_GetObjectItem(c, "ids")->child; i && T < cap; i = i->next) tok[T++] = i->valueint;
    return T;
}

/* Relative error of logits against case c's reference (all logits, or its top 100). */
static double case_err(const cJSON *c, const float *logits, int V) {
    float *ref = malloc(sizeof(float) * (size_t)V), *got = malloc(sizeof(float) * 100);
    double err;
    const cJSON *b64 = cJSON_GetObjectItem(c, "last_logits_f32_b64");
    if (b64) {
        assert_int_equal(b64_decode(b64->valuestring, (uint8_t *)ref, sizeof(float) * (size_t)V),
                         sizeof(float) * (size_t)V);
        err = rel_err(logits, ref, V);
    } else {
        int k = 0;
        const cJSON *v = cJSON_GetObjectItem(c, "top_logits")->child;
        for (const cJSON *i = cJSON_GetObjectItem(c, "top_ids")->child; i && k < 100; i = i->next, v = v->next)
            got[k] = logits[i->valueint], ref[k++] = (float)v->valuedouble;
        err = rel_err(got, ref, k);
    }
    free(ref);
    free(got);
    return err;
}

static void test_config(void **state) {
    need_model();
    const lmf_model_config *c = lmf_weights_config(W);
    assert_string_equal(lmf_weights_family(W), "llama");
    assert_int_equal(c->n_layer, 30);
    assert_int_equal(c->n_embd, 576);
    assert_int_equal(c->n_kv_head, 3);
    assert_int_equal(c->vocab_size, 49152);
    assert_non_null(lmf_weights_tokenizer(W));
}

static void test_prefill(void **state) {
    need_model();
    int V = lmf_weights_config(W)->vocab_size, n = 0;
    int32_t tok[128];
    lmf_session *s;
    assert_int_equal(lmf_session_create(W, 256, &s), LMF_OK);
    for (const cJSON *c = cJSON_GetObjectItem(FX, "cases")->child; c; c = c->next, n++) {
        int T = case_ids(c, tok, 128), t = 0, bad = 0;
        const float *lg;
        lmf_session_rewind(s, 0);
        if (lmf_session_eval(s, tok, T, 1, &lg) != LMF_OK) fail_msg("%s", lmf_last_error());
        for (const cJSON *a = cJSON_GetObjectItem(c, "argmax")->child; a; a = a->next, t++)
            bad += argmax(lg + (size_t)t * V, V) != a->valueint;
        double err = case_err(c, lg + (size_t)(T - 1) * V, V);
        printf("prompt %d (T=%d) prefill: last logits rel err %.3g, argmax mismatches %d/%d\n", n, T, err, bad, T);
        assert_true(err <= TOL_PREFILL);
        assert_int_equal(bad, 0);
    }
    assert_int_equal(n, 3);
    lmf_session_free(s);
}

static void test_decode_and_greedy(void **state) {
    need_model();
    int V = lmf_weights_config(W)->vocab_size;
    const cJSON *c0 = cJSON_GetObjectItem(FX, "cases")->child;
    int32_t tok[256];
    int T = case_ids(c0, tok, 128);
    lmf_session *s;
    assert_int_equal(lmf_session_create(W, 256, &s), LMF_OK);
    const float *lg = NULL;
    for (int i = 0; i < T; i++)
        if (lmf_session_eval(s, tok + i, 1, 0, &lg) != LMF_OK) fail_msg("%s", lmf_last_error());
    double err = case_err(c0, lg, V);
    printf("prompt 0 token by token: last logits rel err %.3g\n", err);
    assert_true(err <= TOL_DECODE);
    assert_int_equal(lmf_session_pos(s), T);

    /* greedy from a batched prefill, then one token at a time through the cache */
    lmf_session_rewind(s, 0);
    if (lmf_session_eval(s, tok, T, 0, &lg) != LMF_OK) fail_msg("%s", lmf_last_error());
    int steps = 0;
    for (const cJSON *g = cJSON_GetObjectItem(FX, "greedy_ids")->child; g; g = g->next, steps++) {
        int32_t next = argmax(lg, V);
        if (next != g->valueint) fail_msg("greedy step %d: got %d, reference %d", steps, next, g->valueint);
        if (lmf_session_eval(s, &next, 1, 0, &lg) != LMF_OK) fail_msg("%s", lmf_last_error());
    }
    printf("greedy continuation through the KV cache: %d tokens identical to the reference\n", steps);
    assert_int_equal(steps, 64);
    lmf_session_free(s);
}

static void test_session_rewind_and_errors(void **state) {
    need_model();
    int V = lmf_weights_config(W)->vocab_size;
    const cJSON *c0 = cJSON_GetObjectItem(FX, "cases")->child;
    int32_t tok[128];
    int T = case_ids(c0, tok, 128);
    lmf_session *s;
    assert_int_equal(lmf_session_create(W, T + 1, &s), LMF_OK);
    const float *lg;
    assert_int_equal(lmf_session_eval(s, tok, T, 0, &lg), LMF_OK);
    float *first = malloc(sizeof(float) * (size_t)V);
    memcpy(first, lg, sizeof(float) * (size_t)V);
    /* rewind to a shared prefix and evaluate the rest again: same cache, same logits */
    lmf_session_rewind(s, T / 2);
    assert_int_equal(lmf_session_eval(s, tok + T / 2, T - T / 2, 0, &lg), LMF_OK);
    assert_true(rel_err(lg, first, V) < 1e-5);
    /* one slot is left: two tokens overflow, and nothing is consumed */
    int32_t two[2] = {1, 2};
    assert_int_equal(lmf_session_eval(s, two, 2, 0, &lg), LMF_ERR_ARG);
    assert_int_equal(lmf_session_pos(s), T);
    int32_t bad = V;
    assert_int_equal(lmf_session_eval(s, &bad, 1, 0, &lg), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "outside the vocabulary"));
    bad = -1;
    assert_int_equal(lmf_session_eval(s, &bad, 1, 0, &lg), LMF_ERR_ARG);
    assert_int_equal(lmf_session_pos(s), T);
    free(first);
    lmf_session_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_decode_and_greedy),
        cmocka_unit_test(test_session_rewind_and_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
