/* test_load_hf.c — Hugging Face folders (config.json + safetensors) as inference weights, against transformers.
 *
 * The folders under tests/reference/fixtures/hf/ are tiny random models written by transformers' save_pretrained
 * (tests/reference/hf_fixtures.py), with the float64 logits transformers computes from the saved weights:
 *   llama (F32, GQA, untied), llama_shard (BF16, tied, 3 shards + index), gpt2 (F32, Conv1D, tokenizer.json),
 *   opt (F16, learned positions at offset 2, ReLU).
 * For each: lmf_session_eval's logits at every position (one prefill, then token by token through the KV cache)
 * equal transformers' within 1e-4 relative to the logits' scale (fp32 arithmetic on the same weights; the f16 and
 * bf16 weights are exact in fp32). Then bad folders: a missing tensor, a wrong shape, a bad dtype, invalid or
 * unsupported config.json, a truncated safetensors file, an index naming a missing shard — each refused with a
 * message naming the file and the tensor or field. */
#include "test_util.h"

#include "io/safetensors.h"
#include "lmforge.h"
#include "core/dtype.h"
#include "model/export.h"
#include "model/model.h"
#include "model/weights.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#define HF LMF_SOURCE_DIR "/tests/reference/fixtures/hf/"
#define TOL 1e-4

static cJSON *FX;

static int setup(void **state) {
    char *json = slurp(HF "logits.json", NULL);
    if (!json) return -1;
    FX = cJSON_Parse(json);
    free(json);
    return FX ? 0 : -1;
}

static int teardown(void **state) {
    cJSON_Delete(FX);
    return 0;
}

static int fixture_tokens(const char *name, int32_t *tok, float **ref, int *V) {
    const cJSON *e = cJSON_GetObjectItem(FX, name);
    assert_non_null(e);
    int T = 0;
    for (const cJSON *t = cJSON_GetObjectItem(e, "tokens")->child; t; t = t->next) tok[T++] = t->valueint;
    *V = cJSON_GetObjectItem(e, "vocab")->valueint;
    *ref = malloc(sizeof(float) * (size_t)T * *V);
    int i = 0;
    for (const cJSON *x = cJSON_GetObjectItem(e, "logits")->child; x; x = x->next) (*ref)[i++] = (float)x->valuedouble;
    assert_int_equal(i, T * *V);
    return T;
}

static lmf_weights *load_ok(const char *dir) {
    lmf_weights *w;
    if (lmf_weights_load_hf(dir, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    return w;
}

static void check_logits(const char *name, const char *family) {
    char dir[1024];
    snprintf(dir, sizeof dir, HF "%s", name);
    lmf_weights *w = load_ok(dir);
    assert_string_equal(lmf_weights_family(w), family);
    int32_t tok[64];
    float *ref;
    int V, T = fixture_tokens(name, tok, &ref, &V);
    assert_int_equal(lmf_weights_config(w)->vocab_size, V);
    lmf_session *s;
    assert_int_equal(lmf_session_create(w, 64, &s), LMF_OK);
    const float *lg;
    assert_int_equal(lmf_session_eval(s, tok, T, 1, &lg), LMF_OK);
    double e = rel_err(lg, ref, (long)T * V);
    printf("%-12s prefill of %d tokens: rel err %.3g\n", name, T, e);
    assert_true(e <= TOL);
    lmf_session_rewind(s, 0);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        assert_int_equal(lmf_session_eval(s, tok + t, 1, 0, &lg), LMF_OK);
        double et = rel_err(lg, ref + (size_t)t * V, V);
        if (et > worst) worst = et;
    }
    printf("%-12s decode token by token: worst rel err %.3g\n", name, worst);
    assert_true(worst <= TOL);
    lmf_session_free(s);
    free(ref);
    lmf_weights_free(w);
}

static void test_llama(void **state) { check_logits("llama", "llama"); }
static void test_llama_sharded_bf16(void **state) { check_logits("llama_shard", "llama"); }
static void test_gpt2(void **state) { check_logits("gpt2", "gpt2"); }
static void test_opt(void **state) { check_logits("opt", "opt"); }

/* What the folders say besides the weights: config, knobs, tokenizer, special ids, chat template. */
static void test_metadata(void **state) {
    lmf_weights *w = load_ok(HF "llama");
    const lmf_model_config *c = lmf_weights_config(w);
    assert_int_equal(c->arch, LMF_ARCH_LLAMA);
    assert_int_equal(c->n_kv_head, 2);
    assert_false(c->tied_embeddings);
    assert_int_equal(w->cfg.pos, LMF_POS_ROPE_HALF);
    assert_int_equal(w->tok_emb.type, 0 /* F32 */);
    assert_int_equal(w->bos_id, 1);
    assert_int_equal(w->eos_id, 2);
    assert_null(lmf_weights_tokenizer(w));
    assert_string_equal(w->source, "safetensors");
    lmf_weights_free(w);

    w = load_ok(HF "llama_shard");
    assert_int_equal(w->n_mapped, 3);
    assert_true(lmf_weights_config(w)->tied_embeddings);
    assert_true(w->lm_head.data == w->tok_emb.data);
    assert_int_equal(w->tok_emb.type, 30 /* BF16, used in place */);
    assert_true(fabsf(lmf_weights_config(w)->rope_theta - 500000.0f) < 1);
    lmf_weights_free(w);

    w = load_ok(HF "opt");
    assert_int_equal(lmf_weights_config(w)->arch, LMF_ARCH_OPT); /* a family of its own since the config has knobs */
    assert_int_equal(w->cfg.pos_offset, 2);
    assert_int_equal(w->cfg.act, LMF_ACT_RELU);
    assert_int_equal(w->pos_emb.rows, 34);
    assert_int_equal(w->tok_emb.type, 1 /* F16 */);
    lmf_weights_free(w);

    w = load_ok(HF "gpt2");
    const lmf_tokenizer *tok = lmf_weights_tokenizer(w);
    assert_non_null(tok);
    const cJSON *e = cJSON_GetObjectItem(FX, "gpt2");
    const char *text = cJSON_GetObjectItem(e, "text")->valuestring;
    lmf_ids ids = {0};
    lmf_tokenizer_encode(tok, text, strlen(text), 0, &ids);
    const cJSON *want = cJSON_GetObjectItem(e, "tokens");
    assert_int_equal((int)ids.len, cJSON_GetArraySize(want));
    int i = 0;
    for (const cJSON *t = want->child; t; t = t->next, i++) assert_int_equal(ids.data[i], t->valueint);
    free(ids.data);
    assert_int_equal(w->eos_id, 259);
    assert_int_equal(w->bos_id, 259);
    assert_non_null(lmf_weights_chat_template(w));
    assert_non_null(strstr(lmf_weights_chat_template(w), "<|im_start|>"));
    lmf_weights_free(w);
}

/* ---- bad folders ---------------------------------------------------------------------------------------------- */

static char TMP[256];

static void make_tmp(void) {
    snprintf(TMP, sizeof TMP, "%s/test_load_hf_tmp_%d", LMF_BINARY_DIR, (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", TMP, TMP);
    assert_int_equal(system(cmd), 0);
}

static void rm_tmp(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", TMP);
    assert_int_equal(system(cmd), 0);
}

/* A copy of fixture folder `name` in TMP. */
static void copy_fixture(const char *name) {
    make_tmp();
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -r " HF "%s/. '%s/'", name, TMP);
    assert_int_equal(system(cmd), 0);
}

static void write_text(const char *file, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", TMP, file);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loading TMP fails with `st` and a message holding every one of the NULL-terminated strings. */
static void expect_fail(lmf_status st, ...) {
    lmf_weights *w = NULL;
    lmf_status got = lmf_weights_load_hf(TMP, &w);
    const char *msg = lmf_last_error();
    printf("  refused: %s\n", msg);
    assert_null(w);
    assert_int_equal(got, st);
    va_list ap;
    va_start(ap, st);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(msg, s)) fail_msg("message lacks \"%s\": %s", s, msg);
    va_end(ap);
}

/* Rewrites TMP/model.safetensors from the fixture's, dropping tensor `drop` and giving tensor `reshape` the shape
 * of tensor `like` (and its data) or dtype I32 when like is "I32". */
static void rewrite(const char *src_name, const char *drop, const char *reshape, const char *like) {
    char src[512], dst[512];
    snprintf(src, sizeof src, HF "%s/model.safetensors", src_name);
    snprintf(dst, sizeof dst, "%s/model.safetensors", TMP);
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(src, &st), LMF_OK);
    lmf_st_out *o = calloc((size_t)st->n_tensors, sizeof *o);
    int n = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const lmf_st_tensor *t = &st->tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        o[n] = (lmf_st_out){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(o[n].shape, t->shape, sizeof t->shape);
        if (reshape && !strcmp(t->name, reshape)) {
            if (!strcmp(like, "I32")) o[n].dtype = LMF_DT_I32;
            else {
                const lmf_st_tensor *l = lmf_safetensors_find(st, like);
                o[n].ndim = l->ndim, o[n].data = l->data;
                memcpy(o[n].shape, l->shape, sizeof l->shape);
            }
        }
        n++;
    }
    static const char *const meta[] = {"format", "pt"};
    assert_int_equal(lmf_safetensors_write(dst, o, n, meta, 1), LMF_OK);
    free(o);
    lmf_safetensors_close(st);
}

/* Tensors made as the file is written (lmf_st_out.fill) give the bytes the same tensors given whole give; each fill
 * runs once */
static int st_fills;
static void fill_copy(void *ctx, void *dst, uint64_t r0, uint64_t n) {
    const lmf_st_tensor *t = ctx;
    size_t rb = t->nbytes / (size_t)(t->ndim ? t->shape[0] : 1);
    memcpy(dst, (const char *)t->data + r0 * rb, n * rb);
    st_fills++;
}
static void test_lazy_write(void **state) {
    (void)state;
    make_tmp();
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(HF "llama/model.safetensors", &st), LMF_OK);
    lmf_st_out *o = calloc((size_t)st->n_tensors, sizeof *o);
    static const char *const meta[] = {"format", "pt"};
    char path[2][600];
    for (int lazy = 0; lazy < 2; lazy++) {
        for (int i = 0; i < st->n_tensors; i++) {
            const lmf_st_tensor *t = &st->tensors[i];
            o[i] = (lmf_st_out){.name = t->name, .dtype = t->dtype, .ndim = t->ndim};
            memcpy(o[i].shape, t->shape, sizeof t->shape);
            if (lazy && i % 2) o[i].fill = fill_copy, o[i].ctx = (void *)t; /* every other one */
            else o[i].data = t->data;
        }
        snprintf(path[lazy], sizeof path[lazy], "%s/%s.safetensors", TMP, lazy ? "lazy" : "whole");
        st_fills = 0;
        assert_int_equal(lmf_safetensors_write(path[lazy], o, st->n_tensors, meta, 1), LMF_OK);
        assert_int_equal(st_fills, lazy ? st->n_tensors / 2 : 0);
    }
    size_t n[2];
    char *b[2] = {slurp(path[0], &n[0]), slurp(path[1], &n[1])};
    assert_int_equal(n[0], n[1]);
    assert_memory_equal(b[0], b[1], n[0]);
    free(b[0]), free(b[1]), free(o);
    lmf_safetensors_close(st);
    rm_tmp();
}

/* The training model made from w on T tokens: its forward's logits against ref (T x V, returned: the relative
 * error), and its gradients of the next-token loss against central finite differences at two parameters of every
 * tensor (asserted within 2e-3 of the largest gradient). */
static double train_check(const lmf_weights *w, const int32_t *tok, int T, const float *ref, int V) {
    int32_t tg[64];
    lmf_model *m;
    if (lmf_model_from_weights(w, 1, T, 1, &m) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model_forward(m, tok, NULL, 1, T);
    double e = rel_err(lmf_model_logits(m), ref, (long)T * V);
    for (int i = 0; i < T; i++) tg[i] = i + 1 < T ? tok[i + 1] : -1;
    lmf_model_zero_grad(m);
    lmf_model_forward(m, tok, tg, 1, T);
    lmf_model_backward(m, 1.0f);
    double worst = 0, maxg = 0;
    for (size_t i = 0; i < m->num_params; i++) maxg = fmax(maxg, fabs(m->grads[i]));
    for (int k = 0; k < 2 * LMF_NUM_PARAM_TENSORS; k++) {
        int t = k / 2;
        if (!m->param_sizes[t]) continue;
        size_t i = m->param_offsets[t] + m->param_sizes[t] * (size_t)(1 + k % 2) / 3;
        float p0 = m->params[i], h = 1e-2f;
        m->params[i] = p0 + h;
        double lp = lmf_model_forward(m, tok, tg, 1, T);
        m->params[i] = p0 - h;
        double lm = lmf_model_forward(m, tok, tg, 1, T);
        m->params[i] = p0;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - m->grads[i]) / maxg);
    }
    printf("  gradients vs finite differences: %.3g of the largest\n", worst);
    assert_true(worst <= 2e-3);
    lmf_model_free(m);
    return e;
}

/* One prefill of T tokens through w against ref (T x V): the relative error. */
static double logits_err(lmf_weights *w, const int32_t *tok, int T, const float *ref, int V) {
    lmf_session *s;
    const float *lg;
    assert_int_equal(lmf_session_create(w, 64, &s), LMF_OK);
    assert_int_equal(lmf_session_eval(s, tok, T, 1, &lg), LMF_OK);
    double e = rel_err(lg, ref, (long)T * V);
    lmf_session_free(s);
    return e;
}

/* The fixture's tokens fed 7 a step through a pooled session of 8-position blocks, in an f32 and an f16 cache: each
 * step's logits against transformers' (prefill blocks whose window starts past the first cache blocks). */
static void check_chunked(const char *name, lmf_weights *w, const int32_t *tok, int T, const float *ref, int V) {
    for (int kv = 0; kv < 2; kv++) {
        lmf_kv_pool *pool;
        lmf_session *s;
        assert_int_equal(lmf_kv_pool_create(w, 64, 8, 0, kv ? LMF_KV_F16 : LMF_KV_F32, &pool), LMF_OK);
        assert_int_equal(lmf_session_create_pooled(pool, 64, &s), LMF_OK);
        double worst = 0;
        for (int t = 0; t < T; t += 7) {
            int n = T - t < 7 ? T - t : 7;
            const float *lg;
            assert_int_equal(lmf_session_eval(s, tok + t, n, 1, &lg), LMF_OK);
            double e = rel_err(lg, ref + (size_t)t * V, (long)n * V);
            if (e > worst) worst = e;
        }
        printf("%-12s 7 tokens a step, blocks of 8, %s cache: worst rel err %.3g\n", name, kv ? "f16" : "f32", worst);
        assert_true(worst <= (kv ? 5e-3 : TOL)); /* f16: K and V rounded to 11 bits */
        lmf_session_free(s);
        lmf_kv_pool_free(pool);
    }
}

/* Sliding windows: Mistral's (5 positions over 40 tokens): the config, one prefill and token-by-token decode, then a
 * pooled session of 8-position blocks fed 7 tokens a step in an f32 and an f16 cache (prefill blocks whose window
 * starts past the first cache blocks), the HF export; training refuses rows longer than the window. Phi-3's (7 over
 * 30 tokens; transformers applies it) likewise in one prefill and token by token. */
static void test_sliding_window(void **state) {
    check_logits("phi3_swa", "phi3");
    check_logits("mistral", "llama");
    lmf_weights *w = load_ok(HF "mistral");
    const lmf_model_config *c = lmf_weights_config(w);
    assert_int_equal(c->sliding_window, 5);
    assert_int_equal(lmf_head_size(c), 12);
    int32_t tok[64];
    float *ref;
    int V, T = fixture_tokens("mistral", tok, &ref, &V);
    check_chunked("mistral", w, tok, T, ref, V);
    /* exported as Hugging Face's MistralForCausalLM (sliding_window kept): the same logits back */
    make_tmp();
    if (lmf_export_safetensors(w, TMP, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights *we = load_ok(TMP);
    assert_int_equal(lmf_weights_config(we)->sliding_window, 5);
    lmf_session *s;
    const float *lg;
    assert_int_equal(lmf_session_create(we, 64, &s), LMF_OK);
    assert_int_equal(lmf_session_eval(s, tok, T, 1, &lg), LMF_OK);
    assert_true(rel_err(lg, ref, (long)T * V) <= TOL);
    lmf_session_free(s);
    lmf_weights_free(we);
    rm_tmp();
    /* training over all 40 tokens (8 windows): transformers' logits, gradients = finite differences */
    double e = train_check(w, tok, T, ref, V);
    printf("mistral      training forward (T %d, window 5): rel err %.3g\n", T, e);
    assert_true(e <= TOL);
    free(ref);
    lmf_weights_free(w);
}

static void test_bad_tensors(void **state) {
    /* the writer round-trips: an unchanged rewrite still loads */
    copy_fixture("llama");
    rewrite("llama", NULL, NULL, NULL);
    lmf_weights_free(load_ok(TMP));

    rewrite("llama", "model.layers.1.mlp.up_proj.weight", NULL, NULL);
    expect_fail(LMF_ERR_FORMAT, "model.safetensors", "tensor model.layers.1.mlp.up_proj.weight is missing", NULL);
    rewrite("llama", NULL, "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.q_proj.weight");
    expect_fail(LMF_ERR_FORMAT, "model.layers.0.self_attn.k_proj.weight has shape [16, 16], expected [8, 16]", NULL);
    rewrite("llama", NULL, "model.norm.weight", "I32");
    expect_fail(LMF_ERR_FORMAT, "model.norm.weight", "dtype", NULL);
    rewrite("llama", "lm_head.weight", NULL, NULL);
    expect_fail(LMF_ERR_FORMAT, "lm_head.weight is missing", NULL);

    /* gpt2: the Conv1D layout (in, out) is what the loader expects; a transposed c_fc is refused */
    copy_fixture("gpt2");
    rewrite("gpt2", NULL, "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight");
    expect_fail(LMF_ERR_FORMAT, "transformer.h.0.mlp.c_fc.weight has shape [64, 16], expected [16, 64]", NULL);

    /* truncated file */
    copy_fixture("llama");
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", TMP);
    assert_int_equal(truncate(p, 20000), 0);
    expect_fail(LMF_ERR_FORMAT, "model.safetensors", "data_offsets", NULL);
    assert_int_equal(truncate(p, 4), 0);
    expect_fail(LMF_ERR_FORMAT, "model.safetensors", "too small", NULL);
    unlink(p);
    expect_fail(LMF_ERR_IO, "no model.safetensors", NULL);
    rm_tmp();
}

/* Issue 18: a shape whose byte count wraps 2^64 ([2^40, 2^23] F16 = 2^64 bytes, "0" in 64 bits) with no data is
 * refused, not accepted as an empty tensor. */
/* A safetensors file of the header hdr and `data` zero bytes of data: refused with an error naming the file and
 * containing want. */
static void expect_bad_header(const char *hdr, size_t data, const char *want) {
    char p[512];
    make_tmp();
    snprintf(p, sizeof p, "%s/bad.safetensors", TMP);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    uint64_t n = strlen(hdr);
    fwrite(&n, 8, 1, f), fwrite(hdr, 1, n, f);
    for (size_t i = 0; i < data; i++) fputc(0, f);
    fclose(f);
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(p, &st), LMF_ERR_FORMAT);
    if (!strstr(lmf_last_error(), want) || !strstr(lmf_last_error(), p)) fail_msg("%s", lmf_last_error());
    rm_tmp();
}

static void test_shape_overflow(void **state) {
    (void)state;
    expect_bad_header("{\"t\":{\"dtype\":\"F16\",\"shape\":[1099511627776,8388608],\"data_offsets\":[0,0]}}", 0,
                      "overflows");
}

/* Found by fuzz_safetensors (leaks, and a heap overflow when the second table is the smaller): a second
 * __metadata__ replaced the first's table while the count ran on. Repeated tensor names are refused too. */
static void test_repeated_keys(void **state) {
    (void)state;
    expect_bad_header("{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"},\"__metadata__\":{\"d\":\"4\"}}", 0,
                      "__metadata__ appears twice");
    expect_bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"u\":{\"dtype\":\"F32\","
                      "\"shape\":[1],\"data_offsets\":[4,8]},\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, "tensor 't' appears twice");
}

static void test_bad_shards(void **state) {
    copy_fixture("llama_shard");
    char p[512];
    snprintf(p, sizeof p, "%s/model-00002-of-00003.safetensors", TMP);
    unlink(p);
    expect_fail(LMF_ERR_IO, "model.safetensors.index.json", "model-00002-of-00003.safetensors", NULL);
    write_text("model.safetensors.index.json", "{\"weight_map\": {\"model.embed_tokens.weight\": \"../../etc/passwd\"}}");
    expect_fail(LMF_ERR_FORMAT, "model.safetensors.index.json", "weight_map[\"model.embed_tokens.weight\"]", NULL);
    write_text("model.safetensors.index.json", "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00003.safe"
                                               "tensors\"}}");
    expect_fail(LMF_ERR_FORMAT, "tensor model.embed_tokens.weight is missing", NULL);
    write_text("model.safetensors.index.json", "{\"metadata\": {}}");
    expect_fail(LMF_ERR_FORMAT, "model.safetensors.index.json", "weight_map", NULL);
    write_text("model.safetensors.index.json", "{\"weight_map\": ");
    expect_fail(LMF_ERR_FORMAT, "model.safetensors.index.json", "not valid JSON", NULL);
    rm_tmp();
}

/* config.json of the fixture with `from` replaced by `to` (the first occurrence). */
static void edit_config(const char *name, const char *from, const char *to) {
    char src[512];
    snprintf(src, sizeof src, HF "%s/config.json", name);
    char *text = slurp(src, NULL);
    assert_non_null(text);
    char *at = strstr(text, from);
    if (!at) fail_msg("config.json of %s has no \"%s\"", name, from);
    size_t n = strlen(text) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    write_text("config.json", out);
    free(out);
    free(text);
}

static void test_bad_config(void **state) {
    copy_fixture("llama");
    write_text("config.json", "{\"model_type\": \"llama\", ");
    expect_fail(LMF_ERR_FORMAT, "config.json", "not valid JSON", NULL);
    write_text("config.json", "[1, 2]");
    expect_fail(LMF_ERR_FORMAT, "config.json", "object", NULL);
    edit_config("llama", "\"model_type\": \"llama\"", "\"model_type\": \"bert\"");
    expect_fail(LMF_ERR_FORMAT, "config.json", "model_type \"bert\"", NULL);
    edit_config("llama", "\"hidden_size\": 16", "\"hidden_size\": -16");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"hidden_size\"", NULL);
    edit_config("llama", "\"num_hidden_layers\": 2", "\"num_hidden_layerz\": 2");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"num_hidden_layers\" is missing", NULL);
    /* RoPE scaling: linear and llama3 run (test_rope_scaling.c), yarn and the rest are refused by name; the older
     * "type" key names the type as "rope_type" does */
    edit_config("llama", "\"pad_token_id\": null", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2.0}");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"rope_scaling\" asks for RoPE scaling of type \"yarn\"", NULL);
    edit_config("llama", "\"pad_token_id\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
    lmf_weights *lw = NULL;
    assert_int_equal(lmf_weights_load_hf(TMP, &lw), LMF_OK);
    assert_true(lw->cfg.rope_scaling == LMF_ROPE_SCALING_LINEAR && lw->cfg.rope_factor == 2.0f);
    lmf_weights_free(lw);
    edit_config("llama", "\"rope_type\": \"default\"", "\"rope_type\": \"llama3\"");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"rope_parameters.factor\" is missing", "llama3", NULL);
    edit_config("llama", "\"attention_bias\": false", "\"attention_bias\": true");
    expect_fail(LMF_ERR_FORMAT, "config.json", "attention_bias", NULL);
    /* a hostile layer count: refused by name before a table of 2^30 layers is allocated (issue 18) */
    edit_config("llama", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1073741824");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"num_hidden_layers\" = 1073741824 layers need at least", NULL);
    edit_config("llama", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    expect_fail(LMF_ERR_FORMAT, "config.json", "n_kv_head", NULL);
    edit_config("llama", "\"vocab_size\": 64", "\"vocab_size\": 65");
    expect_fail(LMF_ERR_FORMAT, "model.embed_tokens.weight has shape [64, 16], expected [65, 16]", NULL);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", TMP);
    unlink(p);
    expect_fail(LMF_ERR_IO, "config.json", NULL);

    /* Mistral's window: a bad value named; absent, MistralConfig's 4096 (past this context: no window); null none */
    copy_fixture("mistral");
    edit_config("mistral", "\"sliding_window\": 5", "\"sliding_window\": 2.5");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"sliding_window\" must be a positive whole number", NULL);
    edit_config("mistral", "\"sliding_window\": 5", "\"sliding_window\": -1");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"sliding_window\"", NULL);
    edit_config("mistral", "\"sliding_window\": 5,", "");
    assert_int_equal(lmf_weights_load_hf(TMP, &lw), LMF_OK);
    assert_int_equal(lw->cfg.sliding_window, 0);
    lmf_weights_free(lw);
    edit_config("mistral", "\"max_position_embeddings\": 64", "\"max_position_embeddings\": 8192");
    assert_int_equal(lmf_weights_load_hf(TMP, &lw), LMF_OK);
    assert_int_equal(lw->cfg.sliding_window, 5);
    lmf_weights_free(lw);

    copy_fixture("opt");
    edit_config("opt", "\"word_embed_proj_dim\": 16", "\"word_embed_proj_dim\": 8");
    expect_fail(LMF_ERR_FORMAT, "config.json", "word_embed_proj_dim", NULL);
    edit_config("opt", "\"do_layer_norm_before\": true", "\"do_layer_norm_before\": false");
    expect_fail(LMF_ERR_FORMAT, "config.json", "do_layer_norm_before", NULL);
    edit_config("opt", "\"activation_function\": \"relu\"", "\"activation_function\": \"gelu\"");
    expect_fail(LMF_ERR_FORMAT, "config.json", "activation_function", NULL);

    copy_fixture("gpt2");
    edit_config("gpt2", "\"n_layer\": 2", "\"n_layer\": 134217729");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"n_layer\" = 134217729 layers", "model.safetensors has", NULL);
    copy_fixture("gpt2");
    write_text("tokenizer.json", "{\"model\": 3}");
    expect_fail(LMF_ERR_FORMAT, "tokenizer.json", NULL);
    rm_tmp();
}

/* A Gemma model's exports (w: the fixture's folder, T tokens and transformers' logits ref): the HF export (norms back
 * to Gemma's w, layer_types, the RoPE fields) gives ref; the GGUF export is refused while q.k's scale is not
 * llama.cpp's 1/sqrt(head size) (the fixtures' query_pre_attn_scalar 24 is not their head size 16), and with that
 * scale gives the in-memory model's logits; the GGUF's config keeps the windows. */
static void gemma_exports(const char *name, lmf_weights *w, const int32_t *tok, int T, const float *ref, int V) {
    make_tmp();
    if (lmf_export_safetensors(w, TMP, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights *we = load_ok(TMP);
    double e = logits_err(we, tok, T, ref, V);
    printf("%-12s through the HF export: rel err %.3g\n", name, e);
    assert_true(e <= TOL);
    lmf_weights_free(we);
    char gg[600];
    snprintf(gg, sizeof gg, "%s/m.gguf", TMP);
    assert_int_equal(lmf_export_gguf(w, gg, LMF_GGML_F32, NULL), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "1/sqrt(the head size)"));
    float keep = w->cfg.attn_scale;
    w->cfg.attn_scale = 0.25f;
    float *mine = malloc(sizeof(float) * (size_t)T * V);
    lmf_session *s;
    const float *lg;
    assert_int_equal(lmf_session_create(w, 64, &s), LMF_OK);
    assert_int_equal(lmf_session_eval(s, tok, T, 1, &lg), LMF_OK);
    memcpy(mine, lg, sizeof(float) * (size_t)T * V);
    lmf_session_free(s);
    assert_true(rel_err(mine, ref, (long)T * V) > 1e-2); /* the scale matters */
    if (lmf_export_gguf(w, gg, LMF_GGML_F32, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    if (lmf_weights_load(gg, &we) != LMF_OK) fail_msg("%s", lmf_last_error());
    const lmf_model_config *c = lmf_weights_config(w), *cg = lmf_weights_config(we);
    assert_true(cg->arch == c->arch && cg->swa_pattern == c->swa_pattern && cg->sliding_window == c->sliding_window &&
                cg->rope_theta_swa == c->rope_theta_swa && cg->rope_factor == c->rope_factor &&
                cg->attn_softcap == c->attn_softcap && cg->final_softcap == c->final_softcap);
    e = logits_err(we, tok, T, mine, V);
    printf("%-12s through the GGUF export (q.k scale 1/4): rel err %.3g\n", name, e);
    assert_true(e <= TOL);
    lmf_weights_free(we);
    free(mine);
    w->cfg.attn_scale = keep;
    rm_tmp();
}

/* Gemma 3 (gemma3_text, and gemma3's language model): transformers' tiny Gemma3ForCausalLM (every 3rd layer global,
 * the others a window of 5 with their own RoPE base; linear scaling on the global ones; GeGLU, sandwich norms, scaled
 * embeddings, q/k norms, query_pre_attn_scalar) gives its logits in one prefill, token by token, 7 tokens a step,
 * through the training model (whose gradients equal finite differences) and through both exports. */
static void test_gemma3(void **state) {
    check_logits("gemma3", "gemma3");
    lmf_weights *w = load_ok(HF "gemma3");
    const lmf_model_config *c = lmf_weights_config(w);
    assert_int_equal(c->sliding_window, 5);
    assert_int_equal(c->swa_pattern, 3);
    assert_true(c->rope_theta_swa == 100.0f && c->rope_theta == 10000.0f && c->rope_factor == 2.0f);
    int32_t tok[64];
    float *ref;
    int V, T = fixture_tokens("gemma3", tok, &ref, &V);
    check_chunked("gemma3", w, tok, T, ref, V);
    /* training over all 40 tokens (the local layers' window 5, the global layers' every earlier token): transformers'
     * logits; gradients against finite differences (GeGLU, the sandwich norms, the embedding scale, q.k's scale,
     * both RoPE tables and the windows all in the path) */
    double e = train_check(w, tok, T, ref, V);
    printf("gemma3       training forward (T %d): rel err %.3g\n", T, e);
    assert_true(e <= TOL);
    gemma_exports("gemma3", w, tok, T, ref, V);
    free(ref);
    lmf_weights_free(w);
    /* the vision-language folder (Gemma3ForConditionalGeneration): its language model from text_config and the
     * language_model.* tensors, transformers' logits on text */
    check_logits("gemma3_mm", "gemma3");
    copy_fixture("gemma3_mm");
    edit_config("gemma3_mm", "\"text_config\"", "\"text_configs\"");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"text_config\" is missing", NULL);
    rm_tmp();
}

/* Gemma 2: transformers' tiny Gemma2ForCausalLM (every 2nd layer global, a window of 5 over 40 tokens, scores capped
 * at 5 and logits at 3) in one prefill, token by token, 7 tokens a step through cache blocks, through the training
 * model (whose gradients equal finite differences) and through both exports. */
static void test_gemma2(void **state) {
    check_logits("gemma2", "gemma2");
    lmf_weights *w = load_ok(HF "gemma2");
    const lmf_model_config *c = lmf_weights_config(w);
    assert_true(c->swa_pattern == 2 && c->sliding_window == 5 && c->attn_softcap == 5.0f && c->final_softcap == 3.0f &&
                c->qk_norm == LMF_QK_NORM_NONE && c->rope_theta_swa == 0.0f);
    int32_t tok[64];
    float *ref;
    int V, T = fixture_tokens("gemma2", tok, &ref, &V);
    check_chunked("gemma2", w, tok, T, ref, V);
    /* training over all 40 tokens: both caps and the windows in the forward, and in the gradients */
    double e = train_check(w, tok, T, ref, V);
    printf("gemma2       training forward (T %d): rel err %.3g\n", T, e);
    assert_true(e <= TOL);
    gemma_exports("gemma2", w, tok, T, ref, V);
    free(ref);
    lmf_weights_free(w);
}

/* SmolLM3 (its 4th layer without RoPE): transformers' logits through the folder (prefill and decode), through the
 * training model (whose gradients equal finite differences), and after GGUF (llama.cpp's smollm3) and HF exports. */
static void test_smollm3(void **state) {
    check_logits("smollm3", "llama");
    lmf_weights *w = load_ok(HF "smollm3");
    assert_int_equal(lmf_weights_config(w)->nope_interval, 4);
    assert_string_equal(lmf_gguf_arch(lmf_weights_config(w)), "smollm3"); /* the model's and its adapters' GGUFs */
    int32_t tok[64];
    float *ref;
    int V, T = fixture_tokens("smollm3", tok, &ref, &V);
    double e = train_check(w, tok, T, ref, V);
    printf("smollm3      training forward: rel err %.3g\n", e);
    assert_true(e <= TOL);
    make_tmp();
    char gg[600];
    snprintf(gg, sizeof gg, "%s/m.gguf", TMP);
    const char *out[2] = {gg, TMP};
    for (int k = 0; k < 2; k++) {
        lmf_status st = k ? lmf_export_safetensors(w, TMP, LMF_GGML_F32) : lmf_export_gguf(w, gg, LMF_GGML_F32, NULL);
        if (st != LMF_OK) fail_msg("%s", lmf_last_error());
        lmf_weights *we;
        if (lmf_weights_load(out[k], &we) != LMF_OK) fail_msg("%s", lmf_last_error());
        assert_int_equal(lmf_weights_config(we)->nope_interval, 4);
        lmf_session *s;
        const float *lg;
        assert_int_equal(lmf_session_create(we, 64, &s), LMF_OK);
        assert_int_equal(lmf_session_eval(s, tok, T, 1, &lg), LMF_OK);
        e = rel_err(lg, ref, (long)T * V);
        printf("smollm3      through the %s export: rel err %.3g\n", k ? "HF" : "GGUF", e);
        assert_true(e <= TOL);
        lmf_session_free(s);
        lmf_weights_free(we);
    }
    /* llama.cpp's smollm3 fixes the step at 4: another interval is refused as GGUF, and another list by name */
    w->cfg.nope_interval = 3;
    assert_int_equal(lmf_export_gguf(w, gg, LMF_GGML_F32, NULL), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "every 4th layer"));
    lmf_weights_free(w);
    copy_fixture("smollm3");
    edit_config("smollm3", "\"no_rope_layers\": [\n    1,\n    1,\n    1,\n    0",
                "\"no_rope_layers\": [\n    1,\n    0,\n    1,\n    1");
    expect_fail(LMF_ERR_FORMAT, "config.json", "\"no_rope_layers\": entry 3 is not 0", NULL);
    edit_config("smollm3", "\"use_sliding_window\": false", "\"use_sliding_window\": true");
    expect_fail(LMF_ERR_FORMAT, "config.json", "use_sliding_window", NULL);
    rm_tmp();
    free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama),       cmocka_unit_test(test_llama_sharded_bf16), cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_opt),         cmocka_unit_test(test_metadata),          cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_bad_shards),  cmocka_unit_test(test_bad_config),        cmocka_unit_test(test_shape_overflow),
        cmocka_unit_test(test_repeated_keys), cmocka_unit_test(test_lazy_write), cmocka_unit_test(test_sliding_window),
        cmocka_unit_test(test_smollm3),     cmocka_unit_test(test_gemma3),            cmocka_unit_test(test_gemma2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
