/* test_rope_scaling.c — RoPE scaling of types llama3 (Llama 3.1 / 3.2 / 3.3) and linear, against transformers
 * (fixtures from tests/reference/make_rope_fixtures.py; see tests/reference/README.md).
 *
 * Tiny LlamaForCausalLM folders with rope_type llama3 (factor 8, low 1, high 4, original context 32) and linear
 * (factor 2), and a Qwen2ForCausalLM with llama3, run on 48 positions (past the original 32): prefill, decode one
 * token at a time, the batched decode of two pooled sessions and the training forward all give transformers'
 * logits; the same weights with plain RoPE give its plain-RoPE logits (so the check can fail). Our GGUF export
 * writes what llama.cpp's converter writes (rope_freqs.weight for llama3, rope.scaling.type / factor for linear) and
 * reads back to the same config and logits; our HF export too. Training: loss and every gradient equal a float64
 * twin of transformers' model. Refused by name: yarn, dynamic, a llama3 object missing a field, high <= low,
 * rope_freqs.weight that is not Llama 3's, llama3 into a qwen2 GGUF. */
#include "test_util.h"

#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/config_text.h"
#include "model/export.h"
#include "model/infer.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/rope/"
#define B 2
#define T 48
#define TOL 1e-5 /* the llama fixtures' logits tolerance (test_load_hf.c, test_qwen3.c) */

static lmf_safetensors *fixture(void) {
    lmf_safetensors *st;
    if (lmf_safetensors_open(FIX "rope.safetensors", &st) != LMF_OK) fail_msg("%s", lmf_last_error());
    return st;
}

static const lmf_st_tensor *need(const lmf_safetensors *st, const char *name) {
    const lmf_st_tensor *t = lmf_safetensors_find(st, name);
    if (!t) fail_msg("%s: no tensor %s", st->path, name);
    return t;
}

static const float *want_of(const lmf_safetensors *st, const char *name, const char *suffix) {
    char key[96];
    snprintf(key, sizeof key, "%s%s", name, suffix);
    return need(st, key)->data;
}

static lmf_weights *load(const char *path) {
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    return w;
}

/* The fixture's scaling as each loader must give it. */
static void expect_scaling(const lmf_model_config *c, const char *name, const char *where) {
    int llama3 = strstr(name, "llama3") != NULL;
    if (c->rope_scaling != (llama3 ? LMF_ROPE_SCALING_LLAMA3 : LMF_ROPE_SCALING_LINEAR) ||
        c->rope_factor != (llama3 ? 8.0f : 2.0f) || c->rope_low_freq_factor != (llama3 ? 1.0f : 0.0f) ||
        c->rope_high_freq_factor != (llama3 ? 4.0f : 0.0f) || c->rope_orig_ctx != (llama3 ? 32 : 0) ||
        c->rope_theta != 500.0f)
        fail_msg("%s: rope_scaling %d factor %g low %g high %g orig %d theta %g", where, (int)c->rope_scaling,
                 c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_orig_ctx, c->rope_theta);
}

/* Every inference path and the training forward of w on the fixture's tokens against want (B x T x V). */
static void check_paths(const lmf_weights *w, const int32_t *tok, const float *want, double tol, const char *what) {
    int V = w->cfg.vocab_size;
    char msg[160];
    for (int b = 0; b < B; b++) { /* prefill of 20, then one token at a time */
        lmf_session *ss;
        const float *out;
        assert_int_equal(lmf_session_create(w, 64, &ss), LMF_OK);
        assert_int_equal(lmf_session_eval(ss, tok + b * T, 20, 1, &out), LMF_OK);
        snprintf(msg, sizeof msg, "%s: prefill", what);
        assert_close(out, want + (size_t)b * T * V, 20 * V, tol, msg);
        snprintf(msg, sizeof msg, "%s: decode", what);
        for (int t = 20; t < T; t++) {
            assert_int_equal(lmf_session_eval(ss, tok + b * T + t, 1, 0, &out), LMF_OK);
            assert_close(out, want + ((size_t)b * T + t) * V, V, tol, msg);
        }
        lmf_session_free(ss);
    }
    lmf_kv_pool *pool; /* the server's step: both rows side by side, one position each */
    assert_int_equal(lmf_kv_pool_create(w, 128, 16, 64, LMF_KV_F32, &pool), LMF_OK);
    lmf_session *ss[B];
    for (int b = 0; b < B; b++) assert_int_equal(lmf_session_create_pooled(pool, 64, &ss[b]), LMF_OK);
    float *out = malloc(sizeof(float) * B * V);
    snprintf(msg, sizeof msg, "%s: batched decode", what);
    for (int t = 0; t < T; t++) {
        const int32_t *tk[B] = {tok + t, tok + T + t};
        int n[B] = {1, 1};
        assert_int_equal(lmf_session_eval_batch(ss, tk, n, B, out), LMF_OK);
        for (int b = 0; b < B; b++) assert_close(out + b * V, want + ((size_t)b * T + t) * V, V, tol, msg);
    }
    free(out);
    for (int b = 0; b < B; b++) lmf_session_free(ss[b]);
    lmf_kv_pool_free(pool);
    lmf_model *m; /* what full fine-tuning and LoRA start from */
    if (lmf_model_from_weights(w, B, T, 0, &m) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model_forward(m, tok, NULL, B, T);
    snprintf(msg, sizeof msg, "%s: training forward", what);
    assert_close(lmf_model_logits(m), want, B * T * V, tol, msg);
    lmf_model_free(m);
}

/* The kernel divides each pair's frequency by its factor; the config's factors are llama.cpp's converter's. */
static void test_table(void **s) {
    int hs = 16, n = 40;
    float *plain = malloc(sizeof(float) * n * hs), *lin = malloc(sizeof(float) * n * hs), two[8];
    for (int i = 0; i < 8; i++) two[i] = 2.0f;
    lmf_rope_table(plain, n, hs, 500.0f, NULL);
    lmf_rope_table(lin, n, hs, 500.0f, two);
    for (int t = 0; t < n; t += 2) /* linear 2: position t turns as position t / 2 did */
        assert_close(lin + t * hs, plain + t / 2 * hs, hs, 1e-6, "linear table");
    assert_true(rel_err(lin + 3 * hs, plain + 3 * hs, hs) > 1e-2);
    free(plain), free(lin);
    lmf_weights *w = load(FIX "llama3");
    float f[8];
    assert_int_equal(lmf_rope_freq_factors(&w->cfg, f), 1);
    lmf_safetensors *st = fixture();
    assert_close(f, (const float *)need(st, "llama3_factors")->data, 8, 1e-6, "llama3 factors");
    assert_true(f[0] == 1.0f && f[1] > 1.0f && f[2] < 8.0f && f[7] == 8.0f); /* all three bands */
    w->cfg.rope_scaling = LMF_ROPE_SCALING_NONE;
    assert_int_equal(lmf_rope_freq_factors(&w->cfg, f), 0);
    lmf_safetensors_close(st);
    lmf_weights_free(w);
}

/* The fields are text (train.conf, checkpoints); absent, plain RoPE as before; bad combinations named. */
static void test_config(void **s) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    assert_int_equal(c.rope_scaling, LMF_ROPE_SCALING_NONE);
    assert_int_equal(lmf_model_config_from_text("rope_scaling = 2\nrope_factor = 32\nrope_low_freq_factor = 1\n"
                                                "rope_high_freq_factor = 4\nrope_orig_ctx = 8192\n", "t", &c),
                     LMF_OK);
    assert_true(c.rope_scaling == LMF_ROPE_SCALING_LLAMA3 && c.rope_factor == 32.0f && c.rope_orig_ctx == 8192);
    assert_int_equal(lmf_model_config_validate(&c), LMF_OK);
    char buf[64];
    lmf_opt_format(&c, lmf_opt_find(lmf_model_opts, lmf_model_n_opts, "rope_orig_ctx"), buf, sizeof buf);
    assert_string_equal(buf, "8192");
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"rope_high_freq_factor = 1\n", "low < high"},
        {"rope_orig_ctx = 0\n", "rope_orig_ctx: 0"},
        {"rope_scaling = 4\n", "rope_scaling: 4"},
        {"rope_scaling = 3\n", "not longrope's"}, /* low/high left over from llama3 */
        {"rope_factor = 0\n", "rope_factor: 0"},
        {"rope_scaling = 1\n", "not linear's"}, /* low/high/orig left over from llama3 */
        {"rope_scaling = 0\n", "need rope_scaling"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lmf_model_config d = c;
        assert_int_equal(lmf_model_config_from_text(bad[i].text, "t", &d), LMF_OK);
        assert_int_equal(lmf_model_config_validate(&d), LMF_ERR_ARG);
        if (!strstr(lmf_last_error(), bad[i].want)) fail_msg("case %zu: '%s' not in: %s", i, bad[i].want, lmf_last_error());
    }
    lmf_model_config g = lmf_model_config_default(LMF_ARCH_GPT2);
    g.rope_scaling = LMF_ROPE_SCALING_LINEAR, g.rope_factor = 2.0f;
    assert_int_equal(lmf_model_config_validate(&g), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "learned positions"));
}

/* transformers' folders: the config's fields, every path's logits, and plain RoPE's logits without the scaling. */
static void hf_folder(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, FIX "%s", name);
    lmf_weights *w = load(dir);
    expect_scaling(&w->cfg, name, dir);
    assert_int_equal(w->cfg.max_seq_len, 64);
    lmf_safetensors *st = fixture();
    const int32_t *tok = need(st, "tokens")->data;
    check_paths(w, tok, want_of(st, name, "_logits"), TOL, dir);
    const lmf_model_config scaled = w->cfg;
    w->cfg.rope_scaling = LMF_ROPE_SCALING_NONE, w->cfg.rope_factor = 0.0f;
    w->cfg.rope_low_freq_factor = w->cfg.rope_high_freq_factor = 0.0f, w->cfg.rope_orig_ctx = 0;
    int V = w->cfg.vocab_size;
    lmf_session *ss;
    const float *out;
    assert_int_equal(lmf_session_create(w, 64, &ss), LMF_OK);
    assert_int_equal(lmf_session_eval(ss, tok, T, 1, &out), LMF_OK);
    assert_close(out, want_of(st, name, "_plain_logits"), T * V, TOL, "plain RoPE");
    assert_true(rel_err(out, want_of(st, name, "_logits"), T * V) > 0.05);
    lmf_session_free(ss);
    w->cfg = scaled;
    lmf_safetensors_close(st);
    lmf_weights_free(w);
}

static void test_hf_llama3(void **s) { hf_folder("llama3"); }
static void test_hf_linear(void **s) { hf_folder("linear"); }
static void test_hf_qwen2_llama3(void **s) { hf_folder("qwen2_llama3"); }

/* Our GGUF export (what llama.cpp's converter writes) and HF export read back to the same scaling and logits. */
static void exports(const char *name) {
    char dir[256], path[256], cmd[1200];
    snprintf(dir, sizeof dir, FIX "%s", name);
    lmf_weights *w = load(dir);
    lmf_safetensors *st = fixture();
    const int32_t *tok = need(st, "tokens")->data;
    const float *want = want_of(st, name, "_logits");
    snprintf(path, sizeof path, "/tmp/lmf_rope_%s_%d.gguf", name, (int)getpid());
    if (lmf_export_gguf(w, path, LMF_GGML_F32, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(path, &g), LMF_OK);
    const lmf_gguf_tensor *rf = lmf_gguf_find_tensor(g, "rope_freqs.weight");
    if (!strcmp(name, "llama3")) {
        assert_true(rf && rf->type == LMF_GGML_F32 && rf->n_dims == 1 && rf->ne[0] == 8);
        assert_close((const float *)rf->data, (const float *)need(st, "llama3_factors")->data, 8, 1e-6, "rope_freqs");
        assert_null(lmf_gguf_find(g, "llama.rope.scaling.type")); /* the converter writes none for llama3 */
    } else {
        const char *t;
        float f;
        assert_null(rf);
        assert_int_equal(lmf_gguf_get_str(g, "llama.rope.scaling.type", &t), LMF_OK);
        assert_string_equal(t, "linear");
        assert_int_equal(lmf_gguf_get_f32(g, "llama.rope.scaling.factor", &f), LMF_OK);
        assert_true(f == 2.0f);
    }
    lmf_gguf_close(g);
    lmf_weights *q = load(path);
    expect_scaling(&q->cfg, name, path);
    assert_int_equal(q->cfg.pos, LMF_POS_ROPE_INTERLEAVED); /* llama.cpp's pair order: the factors follow the pairs */
    check_paths(q, tok, want, TOL, path);
    lmf_weights_free(q);
    unlink(path);
    snprintf(path, sizeof path, "/tmp/lmf_rope_%s_hf_%d", name, (int)getpid());
    if (lmf_export_safetensors(w, path, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    q = load(path); /* llama: transformers 4's rope_scaling beside rope_theta */
    expect_scaling(&q->cfg, name, path);
    check_paths(q, tok, want, TOL, path);
    lmf_weights_free(q);
    snprintf(cmd, sizeof cmd, "grep -q '\"rope_scaling\":' %s/config.json && grep -q '\"rope_type\":[[:space:]]*\"%s\"' "
             "%s/config.json && rm -rf %s", path, name, path, path);
    assert_int_equal(system(cmd), 0);
    lmf_safetensors_close(st);
    lmf_weights_free(w);
}

static void test_export_llama3(void **s) { exports("llama3"); }
static void test_export_linear(void **s) { exports("linear"); }

/* Qwen2 with llama3: the HF export keeps it (rope_parameters); llama.cpp's qwen2 never reads rope_freqs.weight, so
 * the GGUF export refuses it. */
static void test_export_qwen2(void **s) {
    lmf_weights *w = load(FIX "qwen2_llama3");
    char path[256], cmd[1200];
    snprintf(path, sizeof path, "/tmp/lmf_rope_q2_%d.gguf", (int)getpid());
    assert_int_equal(lmf_export_gguf(w, path, LMF_GGML_F32, NULL), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "rope_freqs.weight"));
    assert_int_equal(access(path, F_OK), -1); /* no partial file */
    snprintf(path, sizeof path, "/tmp/lmf_rope_q2_hf_%d", (int)getpid());
    if (lmf_export_safetensors(w, path, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights *q = load(path);
    expect_scaling(&q->cfg, "qwen2_llama3", path);
    lmf_safetensors *st = fixture();
    check_paths(q, need(st, "tokens")->data, want_of(st, "qwen2_llama3", "_logits"), TOL, path);
    lmf_safetensors_close(st);
    lmf_weights_free(q);
    snprintf(cmd, sizeof cmd, "grep -q '\"rope_parameters\":' %s/config.json && rm -rf %s", path, path);
    assert_int_equal(system(cmd), 0);
    /* a linear qwen2 goes to GGUF as rope.scaling.* (llama.cpp applies that to every architecture) */
    w->cfg.rope_scaling = LMF_ROPE_SCALING_LINEAR, w->cfg.rope_low_freq_factor = w->cfg.rope_high_freq_factor = 0.0f;
    w->cfg.rope_orig_ctx = 0;
    snprintf(path, sizeof path, "/tmp/lmf_rope_q2_%d.gguf", (int)getpid());
    if (lmf_export_gguf(w, path, LMF_GGML_F32, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    q = load(path);
    assert_true(q->cfg.arch == LMF_ARCH_QWEN2 && q->cfg.rope_scaling == LMF_ROPE_SCALING_LINEAR &&
                q->cfg.rope_factor == 8.0f);
    lmf_weights_free(q);
    unlink(path);
    lmf_weights_free(w);
}

/* Training on the scaled table: loss and every gradient against the float64 twin (make_rope_fixtures.py), compared
 * under transformers' names through the HF exporter of the gradient view. */
static void twin(const char *name) {
    char dir[256], key[300], gdir[128];
    snprintf(dir, sizeof dir, FIX "%s", name);
    lmf_weights *w = load(dir);
    lmf_safetensors *st = fixture();
    const int32_t *tok = need(st, "tokens")->data;
    int32_t tg[B * T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tg[b * T + t] = t + 1 < T ? tok[b * T + t + 1] : -1; /* HF's shift */
    lmf_model *m;
    if (lmf_model_from_weights(w, B, T, 1, &m) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model_zero_grad(m);
    float loss = lmf_model_forward(m, tok, tg, B, T);
    float want = want_of(st, name, ".loss")[0];
    if (!(fabs(loss - want) <= 1e-4 * fabs(want))) fail_msg("%s: loss %.7g, float64 twin %.7g", name, loss, want);
    lmf_model_backward(m, 1.0f);
    snprintf(gdir, sizeof gdir, "/tmp/lmf_rope_grad_%s_%d", name, (int)getpid());
    if (lmf_export_safetensors(m->gw, gdir, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    char path[200];
    snprintf(path, sizeof path, "%s/model.safetensors", gdir);
    lmf_safetensors *got;
    if (lmf_safetensors_open(path, &got) != LMF_OK) fail_msg("%s", lmf_last_error());
    double worst = 0;
    for (int i = 0; i < got->n_tensors; i++) {
        const lmf_st_tensor *gt = &got->tensors[i];
        snprintf(key, sizeof key, "%s.grad.%s", name, gt->name);
        const lmf_st_tensor *wt = need(st, key);
        assert_int_equal(gt->nbytes, wt->nbytes);
        double e = rel_err(gt->data, wt->data, (long)(gt->nbytes / sizeof(float)));
        if (!(e <= 1e-4)) fail_msg("%s: relative error %.3g", key, e);
        worst = e > worst ? e : worst;
    }
    assert_int_equal(got->n_tensors, 21); /* every parameter */
    printf("%s: loss and 21 gradients within %.2g of the float64 twin\n", name, worst);
    lmf_safetensors_close(got);
    snprintf(key, sizeof key, "rm -rf %s", gdir);
    assert_int_equal(system(key), 0);
    lmf_model_free(m);
    lmf_safetensors_close(st);
    lmf_weights_free(w);
}

static void test_twin_llama3(void **s) { twin("llama3"); }
static void test_twin_linear(void **s) { twin("linear"); }

/* rope_freqs.weight back to parameters on other shapes of the band (theta 5e5: the 8 pairs' wavelengths 6.3, 32, 167,
 * 861, 4443, ...): Llama 3.2's RoPE (factor 32, original context 8192) and a context of 1000 leave one pair between
 * the edges (the context from it); 4000 leaves none (edges 1000 and 4000 between 861 and 4443), and the smallest
 * power of two that does the same, 4096, reads back with equal divisors. */
static void test_gguf_recovery(void **s) {
    static const struct {
        float theta, factor;
        int ctx, want_ctx;
    } cases[] = {{500000.0f, 32.0f, 8192, 8192}, {500000.0f, 8.0f, 1000, 1000}, {500000.0f, 32.0f, 4000, 4096}};
    lmf_weights *w = load(FIX "llama3");
    char path[128];
    snprintf(path, sizeof path, "/tmp/lmf_rope_rec_%d.gguf", (int)getpid());
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        w->cfg.rope_theta = cases[i].theta, w->cfg.rope_factor = cases[i].factor, w->cfg.rope_orig_ctx = cases[i].ctx;
        if (lmf_export_gguf(w, path, LMF_GGML_F32, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
        lmf_weights *q = load(path);
        const lmf_model_config *c = &q->cfg;
        if (c->rope_scaling != LMF_ROPE_SCALING_LLAMA3 || c->rope_factor != cases[i].factor ||
            c->rope_low_freq_factor != 1.0f || c->rope_high_freq_factor != 4.0f || c->rope_orig_ctx != cases[i].want_ctx)
            fail_msg("case %zu: read back as %d factor %g low %g high %g ctx %d", i, (int)c->rope_scaling,
                     c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_orig_ctx);
        float a[8], b[8];
        lmf_rope_freq_factors(&w->cfg, a), lmf_rope_freq_factors(c, b);
        assert_close(b, a, 8, 1e-6, "divisors");
        lmf_weights_free(q);
    }
    unlink(path);
    lmf_weights_free(w);
}

static void edited(const char *folder, const char *dir, const char *sed) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp %s%s/model.safetensors %s/ && sed %s %s%s/config.json > "
             "%s/config.json", dir, dir, FIX, folder, dir, sed, FIX, folder, dir);
    assert_int_equal(system(cmd), 0);
}

/* A file's bytes patched in place: the first `from` (n bytes) becomes `to`. */
static void patch(const char *path, const void *from, const void *to, size_t n) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    char *at = memmem(buf, len, from, n);
    assert_non_null(at);
    assert_int_equal(fseek(f, (long)(at - buf), SEEK_SET), 0);
    assert_int_equal(fwrite(to, n, 1, f), 1);
    fclose(f);
}

static void refused(const char *path, const char *want) {
    lmf_weights *w = NULL;
    assert_int_equal(lmf_weights_load(path, &w), LMF_ERR_FORMAT);
    if (!strstr(lmf_last_error(), want)) fail_msg("'%s' not in: %s", want, lmf_last_error());
    assert_null(w);
}

static void test_refused(void **s) {
    char dir[128], path[160];
    snprintf(dir, sizeof dir, "/tmp/lmf_rope_bad_%d", (int)getpid());
    static const struct {
        const char *folder, *sed, *want;
    } cases[] = {
        {"llama3", "'s/\"llama3\"/\"yarn\"/'", "\"rope_parameters\" asks for RoPE scaling of type \"yarn\""},
        {"linear", "'s/\"linear\"/\"dynamic\"/'", "\"rope_parameters\" asks for RoPE scaling of type \"dynamic\""},
        {"llama3", "'/\"low_freq_factor\"/d'", "\"rope_parameters.low_freq_factor\" is missing"},
        {"llama3", "'s/\"high_freq_factor\": 4.0/\"high_freq_factor\": 1.0/'", "high_freq_factor\" (1) must be greater"},
        {"linear", "'s/\"factor\": 2.0/\"factor\": -2/'", "\"rope_parameters.factor\" must be a positive number"},
        /* transformers 4's form names its own field */
        {"llama3", "'s/\"rope_parameters\"/\"rope_scaling\"/; s/\"llama3\"/\"longrope\"/'",
         "\"rope_scaling\": LongRoPE is read for phi3 models only"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        edited(cases[i].folder, dir, cases[i].sed);
        refused(dir, cases[i].want);
    }
    /* transformers 4's form without original_max_position_embeddings: max_position_embeddings (64), as its
     * standardize_rope_params */
    edited("llama3", dir, "'s/\"rope_parameters\"/\"rope_scaling\"/; /original_max_position_embeddings/d'");
    lmf_weights *w = load(dir);
    assert_int_equal(w->cfg.rope_orig_ctx, 64);
    lmf_weights_free(w);

    /* GGUF: a type llama.cpp has but lmforge does not run; divisors that are not Llama 3's; one divisor for all */
    w = load(FIX "linear");
    snprintf(path, sizeof path, "%s.gguf", dir);
    assert_int_equal(lmf_export_gguf(w, path, LMF_GGML_F32, NULL), LMF_OK);
    patch(path, "linear", "yarn_x", 6);
    refused(path, "llama.rope.scaling.type = \"yarn_x\"");
    lmf_weights_free(w);
    w = load(FIX "llama3");
    assert_int_equal(lmf_export_gguf(w, path, LMF_GGML_F32, NULL), LMF_OK);
    lmf_gguf *g;
    float ff[8]; /* the file's divisors, as written */
    assert_int_equal(lmf_gguf_open(path, &g), LMF_OK);
    memcpy(ff, lmf_gguf_find_tensor(g, "rope_freqs.weight")->data, sizeof ff);
    lmf_gguf_close(g);
    float odd[8] = {1, 3, 1, 3, 8, 8, 8, 8}, same[8] = {3, 3, 3, 3, 3, 3, 3, 3};
    patch(path, ff, odd, sizeof odd);
    refused(path, "tensor rope_freqs.weight: its 8 frequency divisors (pair 1: 3)");
    patch(path, odd, same, sizeof same);
    lmf_weights *q = load(path);
    assert_true(q->cfg.rope_scaling == LMF_ROPE_SCALING_LINEAR && q->cfg.rope_factor == 3.0f);
    lmf_weights_free(q);
    lmf_weights_free(w);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, path);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),         cmocka_unit_test(test_config),
        cmocka_unit_test(test_hf_llama3),     cmocka_unit_test(test_hf_linear),
        cmocka_unit_test(test_hf_qwen2_llama3), cmocka_unit_test(test_export_llama3),
        cmocka_unit_test(test_export_linear), cmocka_unit_test(test_export_qwen2),
        cmocka_unit_test(test_twin_llama3),   cmocka_unit_test(test_twin_linear),
        cmocka_unit_test(test_gguf_recovery), cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
