/* test_smollm2_logits.c — the real SmolLM2-135M-Instruct (Q4_1 GGUF) loaded into the fp32 model, against an
 * independent NumPy float64 llama forward (tests/reference/smollm2_logits.py -> tests/reference/smollm2_logits.json).
 *
 * With the model file (scripts/fetch-smollm2.sh, or $LMF_SMOLLM2_GGUF; skipped without it, as ctest reports): last-position
 *    logits of three prompts (all 49152 for the first, the reference's top 100 for the others), the argmax at every
 *    position, and a 16-token greedy continuation. The reference applies RoPE to the GGUF's q/k rows as stored
 *    (interleaved pairs), so a wrong un-permute in the loader shows up here. */
#include "test_util.h"
#include "gguf_model.h"

#include "model/model.h"

#include "core/status.h"


#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define LOGITS_FIXTURE LMF_SOURCE_DIR "/tests/reference/smollm2_logits.json"
#define TOL 1e-3

static void test_smollm2_logits(void **state) {
    const char *path = smollm2_path();
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("[  SKIP    ] test_smollm2_logits: %s not found; run scripts/fetch-smollm2.sh (or set "
               "LMF_SMOLLM2_GGUF) to check SmolLM2's logits against the NumPy reference\n", path);
        skip();
    }
    char *json = slurp(LOGITS_FIXTURE, NULL);
    if (!json) fail_msg("cannot read %s (made by tests/reference/smollm2_logits.py)", LOGITS_FIXTURE);
    cJSON *fx = cJSON_Parse(json);
    free(json);
    assert_non_null(fx);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lmf_model *m;
    if (load_model(path, 1, 64, &m) != LMF_OK) fail_msg("%s", lmf_last_error());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const lmf_model_config *cfg = lmf_model_get_config(m);
    assert_int_equal(cfg->n_layer, 30);
    assert_int_equal(cfg->n_embd, 576);
    assert_int_equal(cfg->n_head, 9);
    assert_int_equal(cfg->n_kv_head, 3);
    assert_int_equal(cfg->ffn_dim, 1536);
    assert_int_equal(cfg->tied_embeddings, 1);
    const int V = cfg->vocab_size;
    assert_int_equal(V, 49152);
    printf("SmolLM2 loaded in %.2f s (%zu params)\n", (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec),
           lmf_model_num_params(m));

    int32_t tok[64];
    float *ref = malloc(sizeof(float) * (size_t)V), *got = malloc(sizeof(float) * 100);
    int n = 0;
    for (const cJSON *c = cJSON_GetObjectItem(fx, "cases")->child; c; c = c->next, n++) {
        const cJSON *ids = cJSON_GetObjectItem(c, "ids"), *am = cJSON_GetObjectItem(c, "argmax");
        int T = 0;
        for (const cJSON *i = ids->child; i; i = i->next) tok[T++] = i->valueint;
        lmf_model_forward(m, tok, NULL, 1, T);
        const float *lg = lmf_model_logits(m);
        int t = 0, bad_argmax = 0;
        for (const cJSON *a = am->child; a; a = a->next, t++)
            if (argmax(lg + (size_t)t * V, V) != a->valueint) bad_argmax++;
        assert_int_equal(t, T);
        const float *last = lg + (size_t)(T - 1) * V;
        double err;
        const cJSON *b64 = cJSON_GetObjectItem(c, "last_logits_f32_b64");
        if (b64) {
            assert_int_equal(b64_decode(b64->valuestring, (uint8_t *)ref, sizeof(float) * (size_t)V),
                             sizeof(float) * (size_t)V);
            err = rel_err(last, ref, V);
            printf("prompt %d (T=%d): last-position logits, all %d: rel err %.3g\n", n, T, V, err);
        } else {
            int k = 0;
            const cJSON *v = cJSON_GetObjectItem(c, "top_logits")->child;
            for (const cJSON *i = cJSON_GetObjectItem(c, "top_ids")->child; i && k < 100; i = i->next, v = v->next)
                got[k] = last[i->valueint], ref[k++] = (float)v->valuedouble;
            err = rel_err(got, ref, k);
            printf("prompt %d (T=%d): last-position logits, reference top %d: rel err %.3g\n", n, T, k, err);
        }
        printf("prompt %d: argmax mismatches %d of %d positions\n", n, bad_argmax, T);
        assert_true(err <= TOL);
        assert_int_equal(bad_argmax, 0);
    }
    assert_int_equal(n, 3);

    /* greedy continuation of prompt 0, full recompute each step */
    const cJSON *c0 = cJSON_GetObjectItem(fx, "cases")->child;
    int T = 0;
    for (const cJSON *i = cJSON_GetObjectItem(c0, "ids")->child; i; i = i->next) tok[T++] = i->valueint;
    int steps = 0, same = 1;
    /* the first 16 steps (full recompute each step; tests/test_infer.c checks all of them through the KV cache) */
    for (const cJSON *g = cJSON_GetObjectItem(fx, "greedy_ids")->child; g && steps < 16; g = g->next, steps++) {
        lmf_model_forward(m, tok, NULL, 1, T);
        int next = argmax(lmf_model_logits(m) + (size_t)(T - 1) * V, V);
        if (next != g->valueint) {
            print_error("greedy step %d: got %d, reference %d\n", steps, next, g->valueint);
            same = 0;
            break;
        }
        tok[T++] = next;
    }
    printf("greedy continuation: %d tokens, %s\n", steps, same ? "identical to the reference" : "DIFFERENT");
    assert_true(same);
    assert_int_equal(steps, 16);

    free(ref);
    free(got);
    cJSON_Delete(fx);
    lmf_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smollm2_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
