/* twin_fixture.h — helpers of the tests that hold a model against its PyTorch twin and transformers' folders from a
 * safetensors fixture (test_moe.c, test_qwen2.c, test_qwen3.c). The including file defines TOL (the relative
 * tolerance of near and compare_table) and, for compare_table, edited_folder and lora_fd, FIX (its fixture folder)
 * and open_fixture(); a file with its own compare_table and edited_folder defines TWIN_OWN_TABLE (and gets no
 * lora_fd). Include after test_util.h and the model headers. */
#ifndef LMF_TESTS_TWIN_FIXTURE_H
#define LMF_TESTS_TWIN_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline const lmf_st_tensor *need(const lmf_safetensors *st, const char *name) {
    const lmf_st_tensor *t = lmf_safetensors_find(st, name);
    if (!t) fail_msg("%s: no tensor %s", st->path, name);
    return t;
}

static inline double meta(const lmf_safetensors *st, const char *key) {
    const char *v = lmf_safetensors_meta(st, key);
    if (!v) fail_msg("%s: no metadata %s", st->path, key);
    return atof(v);
}

static inline void near(double got, double want, const char *what) {
    if (!(fabs(got - want) <= TOL * fabs(want))) fail_msg("%s: %.7g, PyTorch %.7g", what, got, want);
}

/* Every row's logits of w on the fixture's tokens (2 rows of T = 8, one prefill each) into out (2 x 8 x V). */
static inline void logits_of(const lmf_weights *w, const int32_t *tok, float *out) {
    int T = 8, V = w->cfg.vocab_size;
    for (int b = 0; b < 2; b++) {
        lmf_session *ss;
        const float *lg;
        assert_int_equal(lmf_session_create(w, 16, &ss), LMF_OK);
        assert_int_equal(lmf_session_eval(ss, tok + b * T, T, 1, &lg), LMF_OK);
        memcpy(out + (size_t)b * T * V, lg, sizeof(float) * (size_t)T * V);
        lmf_session_free(ss);
    }
}

/* The server's batch step: two sequences decoding side by side (one position each, one decode step) give the
 * training forward's logits of each (m ran it on the same tokens). */
static inline void batch_decode(const lmf_weights *w, lmf_model *m, const int32_t *tok, double tol) {
    int T = 8, V = m->cfg.vocab_size;
    lmf_kv_pool *pool;
    assert_int_equal(lmf_kv_pool_create(w, 64, 16, 16, LMF_KV_F32, &pool), LMF_OK);
    lmf_session *ss[2];
    for (int b = 0; b < 2; b++) assert_int_equal(lmf_session_create_pooled(pool, 16, &ss[b]), LMF_OK);
    float out[2 * 48];
    assert_true(V <= 48);
    for (int t = 0; t < T; t++) {
        const int32_t *tk[2] = {tok + t, tok + T + t};
        int n[2] = {1, 1};
        assert_int_equal(lmf_session_eval_batch(ss, tk, n, 2, out), LMF_OK);
        for (int b = 0; b < 2; b++)
            assert_close(out + b * V, lmf_model_logits(m) + ((size_t)b * T + t) * V, V, tol, "batch decode");
    }
    for (int b = 0; b < 2; b++) lmf_session_free(ss[b]);
    lmf_kv_pool_free(pool);
}

/* Rewrites the u32 value of metadata key `key` in the GGUF at path (its first 64 KiB, where a tiny model's metadata
 * lies), checking the value it had: a file that disagrees with itself, for the loaders' refusals. */
static inline void gguf_patch_u32(const char *path, const char *key, uint32_t was, uint32_t now) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    char *at = memmem(buf, n, key, strlen(key));
    assert_non_null(at);
    uint32_t type, v;
    memcpy(&type, at + strlen(key), 4), memcpy(&v, at + strlen(key) + 4, 4);
    assert_true(type == 4 /* GGUF u32 */ && v == was);
    assert_int_equal(fseek(f, (long)(at + strlen(key) + 4 - buf), SEEK_SET), 0);
    assert_int_equal(fwrite(&now, 4, 1, f), 1);
    fclose(f);
}

#ifndef TWIN_OWN_TABLE
/* Every tensor of the table (flat buffer buf) against prefix.<name>. */
static inline double compare_table(const lmf_model *m, const float *buf, const lmf_safetensors *st, const char *prefix) {
    double worst = 0;
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        char key[64];
        snprintf(key, sizeof key, "%s.%s", prefix, lmf_param_names[i]);
        const lmf_st_tensor *t = need(st, key);
        double e = rel_err(buf + m->param_offsets[i], (const float *)t->data, (long)m->param_sizes[i]);
        if (!(e <= TOL)) fail_msg("%s: relative error %.3g > %g", key, e, TOL);
        if (e > worst) worst = e;
    }
    return worst;
}

/* Writes FIX folder's config.json with `from` replaced by `to` into dir (holding the folder's weights). */
static inline void edited_folder(const char *folder, const char *dir, const char *from, const char *to) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp %s%s/model.safetensors %s/ && sed 's/%s/%s/' "
             "%s%s/config.json > %s/config.json", dir, dir, FIX, folder, dir, from, to, FIX, folder, dir);
    assert_int_equal(system(cmd), 0);
}


/* LoRA (llama's module names) on transformers' folder FIX/name as a frozen base: a fresh adapter leaves its logits
 * (the fixture's name_logits) alone; with B random, the adapters' analytic gradients equal central finite
 * differences of the loss (through whatever the family adds: biased q/k/v, the gated shared expert, q/k norms).
 * open_fixture() is the including file's. */
static lmf_safetensors *open_fixture(void);
static inline void lora_fd(const char *name, const char *targets, int n_mod) {
    char dir[256];
    snprintf(dir, sizeof dir, FIX "%s", name);
    lmf_weights *w;
    if (lmf_weights_load(dir, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_lora *lo;
    if (lmf_lora_create(&w->cfg, targets, 3, 6.0f, 0.0f, 0, &lo) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(lo->n_mod, n_mod);
    lmf_lora_init(lo, 7);
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(w, lo, 2, 8, &m), LMF_OK);
    lmf_safetensors *st = open_fixture();
    const int32_t *tok = need(st, "tokens")->data, *tg = need(st, "targets")->data;
    char want[64];
    snprintf(want, sizeof want, "%s_logits", name);
    lmf_model_forward(m, tok, tg, 2, 8);
    assert_close(lmf_model_logits(m), need(st, want)->data, 2 * 8 * w->cfg.vocab_size, 1e-5, "fresh adapter");
    for (size_t i = 0; i < lo->n_params; i++) /* B (and A) away from zero: every adapter gets a gradient */
        lo->params[i] = 0.2f * sinf(0.7f * (float)i + 0.3f);
    memset(lo->grads, 0, lo->n_params * sizeof(float));
    lmf_model_forward(m, tok, tg, 2, 8);
    lmf_model_backward(m, 1.0f);
    double maxg = 0, worst = 0;
    for (size_t i = 0; i < lo->n_params; i++) maxg = fmax(maxg, fabs(lo->grads[i]));
    assert_true(maxg > 0);
    for (size_t i = 0; i < lo->n_params; i += lo->n_params / 60 + 1) {
        float p0 = lo->params[i], h = 1e-3f; /* 1e-2 flipped a routing choice: a jump of the loss, not its slope */
        lo->params[i] = p0 + h;
        double lp = lmf_model_forward(m, tok, tg, 2, 8);
        lo->params[i] = p0 - h;
        double lm = lmf_model_forward(m, tok, tg, 2, 8);
        lo->params[i] = p0;
        double e = fabs((lp - lm) / (2.0 * h) - lo->grads[i]) / maxg;
        if (e > 2e-2) fail_msg("%s: adapter parameter %zu: analytic %.6g, finite difference %.6g", name, i,
                               lo->grads[i], (lp - lm) / (2.0 * h));
        worst = fmax(worst, e);
    }
    printf("%s LoRA %s: gradients vs finite differences within %.2g of the largest\n", name,
           targets, worst);
    lmf_safetensors_close(st);
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_weights_free(w);
}

#endif

#endif
