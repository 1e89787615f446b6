/* test_lora_merge.c — an adapter merged into its base (lmf_lora_merge, what `lmforge export --merge-lora` writes)
 * against PEFT's merge_and_unload() (fixtures from tests/reference/make_lora_fixtures.py): PEFT's own adapter over the
 * tiny HF llama (q_proj, v_proj) and gpt2 (c_attn) is loaded with lmf_lora_load_peft, merged, and then
 *   - the logits of a plain session over the merged weights equal PEFT's merged model's (merged_logits, 2 x 8 x V),
 *   - every merged matrix equals PEFT's (merged.<HF name>: llama (out, in) in rotate_half rows, as the HF-loaded
 *     base; gpt2's Conv1D c_attn (in, 3C), transposed),
 *   - the base is untouched, and the unmerged adapter on the base gives the same logits.
 * Within 1e-4 relative (fp32 against PEFT's float64). */
#include "test_util.h"

#include "io/safetensors.h"
#include "model/dequant.h"
#include "model/lora.h"
#include "model/lora_io.h"

#include <stdlib.h>
#include <string.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/"
#define TOL 1e-4

static const float *tensor(const lmf_safetensors *st, const char *name, size_t n) {
    const lmf_st_tensor *t = lmf_safetensors_find(st, name);
    if (!t) fail_msg("%s: no tensor %s", st->path, name);
    assert_int_equal(t->nbytes, n * 4);
    return (const float *)t->data;
}

/* Matrix mat of layer l as fp32 (rows x cols). */
static float *matrix(const lmf_weights *w, int l, int mat, int *rows, int *cols) {
    const lmf_wtensor *m[LMF_LAYER_MATRICES];
    lmf_layer_matrices(&w->layers[l], m);
    *rows = m[mat]->rows;
    *cols = m[mat]->cols;
    float *x = malloc((size_t)*rows * *cols * sizeof(float));
    for (int i = 0; i < *rows; i++)
        assert_int_equal(lmf_dequant_row(m[mat]->type, (const char *)m[mat]->data + (size_t)i * m[mat]->row_bytes,
                                         x + (size_t)i * *cols, (size_t)*cols, "matrix"),
                         LMF_OK);
    return x;
}

/* Logits of every position of both 8-token rows (2 x 8 x V), one session rewound between rows. */
static float *logits(const lmf_weights *w, const lmf_lora *l, const int32_t *tok) {
    int V = w->cfg.vocab_size;
    float *out = malloc((size_t)16 * V * sizeof(float));
    lmf_session *s;
    assert_int_equal(lmf_session_create(w, 8, &s), LMF_OK);
    if (l) lmf_session_set_lora(s, l);
    for (int b = 0; b < 2; b++) {
        const float *lg;
        lmf_session_rewind(s, 0);
        if (lmf_session_eval(s, tok + b * 8, 8, 1, &lg) != LMF_OK) fail_msg("%s", lmf_last_error());
        memcpy(out + (size_t)b * 8 * V, lg, (size_t)8 * V * sizeof(float));
    }
    lmf_session_free(s);
    return out;
}

static void check(const char *what, const float *got, const float *want, size_t n) {
    double e = rel_err(got, want, (long)n);
    printf("  %-52s rel err %.2g\n", what, e);
    if (!(e <= TOL)) fail_msg("%s: relative error %.3g > %g", what, e, TOL);
}

static void run(const char *model) {
    char path[512];
    snprintf(path, sizeof path, FIX "hf/%s", model);
    lmf_weights *w, *m;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    int llama = w->cfg.arch == LMF_ARCH_LLAMA, V = w->cfg.vocab_size, C = w->cfg.n_embd;
    lmf_lora *lo;
    snprintf(path, sizeof path, FIX "lora/%s_attn", model);
    if (lmf_lora_load_peft(path, &w->cfg, &lo) != LMF_OK) fail_msg("%s", lmf_last_error());
    int r0, c0;
    float *q_before = matrix(w, 0, 0, &r0, &c0);
    if (lmf_lora_merge(w, lo, &m) != LMF_OK) fail_msg("%s", lmf_last_error());
    snprintf(path, sizeof path, FIX "lora/%s_attn/expected.safetensors", model);
    lmf_safetensors *ex;
    if (lmf_safetensors_open(path, &ex) != LMF_OK) fail_msg("%s", lmf_last_error());
    const int32_t *tok = tensor(ex, "tokens", 16) ? (const int32_t *)lmf_safetensors_find(ex, "tokens")->data : NULL;
    const float *want = tensor(ex, "merged_logits", (size_t)16 * V);
    char what[160];

    float *got = logits(m, NULL, tok);
    snprintf(what, sizeof what, "%s: merged logits vs merge_and_unload", model);
    check(what, got, want, (size_t)16 * V);
    float *unmerged = logits(w, lo, tok);
    snprintf(what, sizeof what, "%s: unmerged adapter logits vs merged", model);
    check(what, unmerged, got, (size_t)16 * V);
    free(got);
    free(unmerged);

    for (int l = 0; l < w->cfg.n_layer; l++) {
        if (llama) {
            static const char *names[2] = {"q_proj", "v_proj"};
            static const int mats[2] = {0, 2};
            for (int k = 0; k < 2; k++) {
                int rows, cols;
                float *x = matrix(m, l, mats[k], &rows, &cols);
                snprintf(what, sizeof what, "merged.model.layers.%d.self_attn.%s.weight", l, names[k]);
                check(what, x, tensor(ex, what, (size_t)rows * cols), (size_t)rows * cols);
                free(x);
            }
        } else {
            snprintf(what, sizeof what, "merged.transformer.h.%d.attn.c_attn.weight", l);
            const float *hf = tensor(ex, what, (size_t)C * 3 * C); /* Conv1D: (in, q | k | v) */
            for (int q = 0; q < 3; q++) {
                int rows, cols;
                float *x = matrix(m, l, q, &rows, &cols), *t = malloc((size_t)rows * cols * sizeof(float));
                for (int i = 0; i < rows; i++)
                    for (int e = 0; e < cols; e++) t[(size_t)i * cols + e] = hf[(size_t)e * 3 * C + q * C + i];
                char w2[200];
                snprintf(w2, sizeof w2, "%s [%c]", what, "qkv"[q]);
                check(w2, x, t, (size_t)rows * cols);
                free(x);
                free(t);
            }
        }
    }
    /* the base is untouched: its q still differs from the merged one, and equals what it was */
    int r1, c1;
    float *q_after = matrix(w, 0, 0, &r1, &c1);
    assert_memory_equal(q_before, q_after, (size_t)r0 * c0 * sizeof(float));
    float *q_merged = matrix(m, 0, 0, &r1, &c1);
    assert_true(rel_err(q_merged, q_before, (long)r0 * c0) > 1e-3);
    free(q_before);
    free(q_after);
    free(q_merged);

    lmf_safetensors_close(ex);
    lmf_lora_free(lo);
    lmf_lora_merged_free(m);
    lmf_weights_free(w);
}

/* An adapter whose layer count does not match the model is refused. */
static void test_refuse(void **s) {
    (void)s;
    lmf_weights *w, *m;
    if (lmf_weights_load(FIX "hf/gpt2", &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_lora *lo;
    lmf_model_config c = w->cfg;
    c.n_layer += 1;
    assert_int_equal(lmf_lora_create(&c, "c_attn", 4, 8.0f, 0.0f, 0, &lo), LMF_OK);
    assert_int_not_equal(lmf_lora_merge(w, lo, &m), LMF_OK);
    assert_non_null(strstr(lmf_last_error(), "layers"));
    lmf_lora_free(lo);
    lmf_weights_free(w);
}

static void test_llama(void **s) { (void)s; run("llama"); }
static void test_gpt2(void **s) { (void)s; run("gpt2"); }

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_llama), cmocka_unit_test(test_gpt2),
                                       cmocka_unit_test(test_refuse)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
