/* test_export.c — a model trained here, exported to GGUF and to a Hugging Face folder, loads back with the same
 * logits. Train-free: a small lmf_model with lmf_model_init_weights stands for a trained one (export does not care
 * how the weights were found) and is saved as a real checkpoint (lmf_checkpoint_save with the train config text,
 * tokenizer path included). For gpt2, llama (GQA, untied head) and tied llama:
 *   checkpoint -> lmf_weights_load_checkpoint -> executor logits == the fp32 training model's lmf_model_forward
 *   checkpoint -> export GGUF f32 -> lmf_weights_load_gguf -> same logits (Q/K rows permuted to llama.cpp order)
 *   checkpoint -> export safetensors f32 -> lmf_weights_load_hf -> same logits (GPT-2 Conv1D transposed)
 *   GGUF-loaded weights -> export safetensors (rows permuted back to rotate_half) -> same logits
 *   f16 exports: logits within f16 rounding
 * each both in one batch and token by token (decode), all within 1e-5 of the logits' scale for f32; the tokenizer travels along and encodes the same ids. Refusals:
 * opt to GGUF, a corrupt checkpoint, an unknown --to / --type. */
#include "test_util.h"

#include "io/gguf.h"
#include "lmforge.h"
#include "model/export.h"
#include "model/model.h"
#include "model/weights.h"
#include "io/checkpoint.h"
#include "train/train_config.h"

#include <unistd.h>

#define T_TOK 12
#define TOL32 1e-5
#define TOL16 3e-3

static char DIR_[512];

static void path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", DIR_, name); }

static int setup(void **state) {
    snprintf(DIR_, sizeof DIR_, "%s/test_export_tmp_%d", LMF_BINARY_DIR, (int)getpid());
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s/run'", DIR_, DIR_);
    return system(cmd);
}

static int teardown(void **state) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", DIR_);
    return system(cmd);
}

/* A byte-level BPE with <|endoftext|>, 256 bytes and a few merges, saved as tokenizer.json in DIR_. */
static void make_tokenizer(char *tok_path, size_t n) {
    lmf_bpe_train_config tc = {.vocab_size = 270, .n_special = 1, .pretok = LMF_PRETOK_GPT2};
    const char *sp[] = {"<|endoftext|>"};
    tc.special_tokens = sp;
    lmf_bpe_trainer *tr;
    assert_int_equal(lmf_bpe_trainer_create(&tc, &tr), LMF_OK);
    const char *text = "In the beginning God created the heaven and the earth. And the earth was without form.";
    for (int i = 0; i < 4; i++) lmf_bpe_trainer_feed(tr, text, strlen(text));
    lmf_tokenizer *tok;
    assert_int_equal(lmf_bpe_trainer_finish(tr, &tok), LMF_OK);
    lmf_bpe_trainer_free(tr);
    path(tok_path, n, "tok.json");
    assert_int_equal(lmf_tokenizer_save(tok, tok_path), LMF_OK);
    lmf_tokenizer_free(tok);
}

static const float *eval_all(const lmf_weights *w, const int32_t *tok, lmf_session **s) {
    assert_int_equal(lmf_session_create(w, 32, s), LMF_OK);
    const float *lg;
    if (lmf_session_eval(*s, tok, T_TOK, 1, &lg) != LMF_OK) fail_msg("%s", lmf_last_error());
    return lg;
}

/* Loads with `loader`, runs the tokens, compares with ref; returns the weights (caller frees). */
static lmf_weights *check(const char *what, lmf_status (*loader)(const char *, lmf_weights **), const char *p,
                          const int32_t *tok, const float *ref, int V, double tol) {
    lmf_weights *w;
    if (loader(p, &w) != LMF_OK) fail_msg("%s: %s", what, lmf_last_error());
    lmf_session *s;
    const float *lg = eval_all(w, tok, &s);
    double e = rel_err(lg, ref, (long)T_TOK * V);
    lmf_session_free(s);
    /* and token by token (the decode executor: attention split by positions, query heads grouped per KV head) */
    assert_int_equal(lmf_session_create(w, 32, &s), LMF_OK);
    double ed = 0;
    for (int i = 0; i < T_TOK; i++) {
        if (lmf_session_eval(s, tok + i, 1, 0, &lg) != LMF_OK) fail_msg("%s", lmf_last_error());
        double ei = rel_err(lg, ref + (size_t)i * V, V);
        if (!(ei <= ed)) ed = ei;
    }
    lmf_session_free(s);
    printf("  %-34s rel err %.3g, decode %.3g\n", what, e, ed);
    assert_true(e <= tol && ed <= tol);
    return w;
}

static void roundtrip(lmf_model_config cfg, const char *name) {
    printf("%s\n", name);
    char tok_path[600], ck[600], gguf[600], hf[600], hf2[600], gguf16[600], hf16[600];
    make_tokenizer(tok_path, sizeof tok_path);
    lmf_model *m = lmf_model_create(&cfg, 1, T_TOK, 0);
    assert_non_null(m);
    lmf_model_init_weights(m, 42);
    /* init gives norms 1 and biases 0: perturb them so a misplaced norm or bias shows in the logits */
    float *p = lmf_model_params(m);
    size_t n = lmf_model_num_params(m);
    for (size_t i = 0; i < n; i++) p[i] += 0.01f * (float)((i * 2654435761u) % 1000) / 1000.0f;
    int32_t tok[T_TOK];
    for (int i = 0; i < T_TOK; i++) tok[i] = (i * 37 + 5) % cfg.vocab_size;
    lmf_model_forward(m, tok, NULL, 1, T_TOK);
    int V = cfg.vocab_size;
    float *ref = malloc(sizeof(float) * T_TOK * V);
    memcpy(ref, lmf_model_logits(m), sizeof(float) * T_TOK * V);

    lmf_train_config tc;
    lmf_train_config_default(&tc);
    tc.model = cfg;
    snprintf(tc.tokenizer, sizeof tc.tokenizer, "%s", tok_path);
    char *text = lmf_train_config_to_text(&tc);
    float *zeros = calloc(n, sizeof(float));
    path(ck, sizeof ck, "run/ckpt-00000007.lmfc");
    assert_int_equal(lmf_checkpoint_save(ck, text, 7, 0, 0, 7, p, zeros, zeros, n), LMF_OK);
    free(text);
    free(zeros);

    lmf_weights *w = check("checkpoint file", lmf_weights_load_checkpoint, ck, tok, ref, V, TOL32);
    char run[600];
    path(run, sizeof run, "run");
    lmf_weights_free(check("checkpoint run folder", lmf_weights_load_checkpoint, run, tok, ref, V, TOL32));
    assert_non_null(lmf_weights_tokenizer(w));

    path(gguf, sizeof gguf, "model.gguf");
    if (lmf_export_gguf(w, gguf, LMF_GGML_F32, "test") != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights *wg = check("export gguf f32", lmf_weights_load_gguf, gguf, tok, ref, V, TOL32);
    assert_non_null(lmf_weights_tokenizer(wg));
    const char *probe = "the earth was without form";
    lmf_ids a = {0}, b = {0};
    lmf_tokenizer_encode(lmf_weights_tokenizer(w), probe, strlen(probe), 0, &a);
    lmf_tokenizer_encode(lmf_weights_tokenizer(wg), probe, strlen(probe), 0, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len * sizeof(int32_t));
    assert_int_equal(lmf_weights_config(wg)->tied_embeddings, cfg.tied_embeddings);

    path(hf, sizeof hf, "hf");
    if (lmf_export_safetensors(w, hf, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights *wh = check("export safetensors f32", lmf_weights_load_hf, hf, tok, ref, V, TOL32);
    assert_non_null(lmf_weights_tokenizer(wh));
    lmf_ids c = {0};
    lmf_tokenizer_encode(lmf_weights_tokenizer(wh), probe, strlen(probe), 0, &c);
    assert_int_equal(a.len, c.len);
    assert_memory_equal(a.data, c.data, a.len * sizeof(int32_t));
    free(a.data), free(b.data), free(c.data);

    /* from the GGUF (interleaved Q/K rows) back to a Hugging Face folder (rotate_half rows) */
    path(hf2, sizeof hf2, "hf_from_gguf");
    if (lmf_export_safetensors(wg, hf2, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights_free(check("gguf -> safetensors f32", lmf_weights_load_hf, hf2, tok, ref, V, TOL32));
    /* and from the HF folder to GGUF again */
    if (lmf_export_gguf(wh, gguf, LMF_GGML_F32, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights_free(check("safetensors -> gguf f32", lmf_weights_load_gguf, gguf, tok, ref, V, TOL32));

    path(gguf16, sizeof gguf16, "model16.gguf");
    if (lmf_export_gguf(w, gguf16, LMF_GGML_F16, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights_free(check("export gguf f16", lmf_weights_load_gguf, gguf16, tok, ref, V, TOL16));
    path(hf16, sizeof hf16, "hf16");
    if (lmf_export_safetensors(w, hf16, LMF_GGML_F16) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights_free(check("export safetensors f16", lmf_weights_load_hf, hf16, tok, ref, V, TOL16));
    if (lmf_export_safetensors(w, hf16, LMF_GGML_BF16) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights_free(check("export safetensors bf16", lmf_weights_load_hf, hf16, tok, ref, V, 3e-2));

    lmf_weights_free(wg);
    lmf_weights_free(wh);
    lmf_weights_free(w);
    free(ref);
    lmf_model_free(m);
    unlink(ck);
}

static lmf_model_config small(lmf_arch arch) {
    lmf_model_config c = lmf_model_config_default(arch);
    c.vocab_size = 275, c.max_seq_len = 32, c.n_layer = 2, c.n_embd = 32, c.n_head = 4;
    c.n_kv_head = arch == LMF_ARCH_LLAMA ? 2 : 4;
    c.ffn_dim = arch == LMF_ARCH_LLAMA ? 48 : 128;
    c.tied_embeddings = arch == LMF_ARCH_GPT2;
    return c;
}

static void test_gpt2(void **state) { roundtrip(small(LMF_ARCH_GPT2), "gpt2"); }
static void test_llama(void **state) { roundtrip(small(LMF_ARCH_LLAMA), "llama (GQA, untied)"); }
static void test_llama_tied(void **state) {
    lmf_model_config c = small(LMF_ARCH_LLAMA);
    c.tied_embeddings = 1, c.n_head = 8, c.n_kv_head = 1, c.rope_theta = 500000.0f; /* 8 query heads per KV head */
    roundtrip(c, "llama (MQA, tied, theta 5e5)");
}

static void test_refusals(void **state) {
    lmf_weights *w;
    assert_int_equal(lmf_weights_load_hf(LMF_SOURCE_DIR "/tests/reference/fixtures/hf/opt", &w), LMF_OK);
    char p[600];
    path(p, sizeof p, "opt.gguf");
    assert_int_equal(lmf_export_gguf(w, p, LMF_GGML_F32, NULL), LMF_ERR_ARG);
    printf("  refused: %s\n", lmf_last_error());
    assert_non_null(strstr(lmf_last_error(), "opt"));
    assert_int_equal(access(p, F_OK), -1); /* nothing written */
    /* opt exports to a Hugging Face folder and loads back */
    path(p, sizeof p, "opt_hf");
    assert_int_equal(lmf_export_safetensors(w, p, LMF_GGML_F32), LMF_OK);
    lmf_weights *w2;
    assert_int_equal(lmf_weights_load_hf(p, &w2), LMF_OK);
    assert_string_equal(lmf_weights_family(w2), "opt");
    assert_int_equal(w2->pos_emb.rows, w->pos_emb.rows);
    lmf_weights_free(w2);
    lmf_weights_free(w);

    lmf_export_format f;
    uint32_t t;
    assert_int_equal(lmf_export_format_parse("onnx", &f), LMF_ERR_ARG);
    assert_int_equal(lmf_export_type_parse("q3", &t), LMF_ERR_ARG);
    assert_int_equal(lmf_export_type_parse("q4_0", &t), LMF_OK);

    /* a corrupt checkpoint */
    path(p, sizeof p, "bad.lmfc");
    FILE *fp = fopen(p, "wb");
    fputs("LMFCKPT1 but not really", fp);
    fclose(fp);
    assert_int_not_equal(lmf_weights_load_checkpoint(p, &w), LMF_OK);
    printf("  refused: %s\n", lmf_last_error());
    assert_non_null(strstr(lmf_last_error(), "bad.lmfc"));
    path(p, sizeof p, "no_such_run");
    assert_int_equal(lmf_weights_load_checkpoint(p, &w), LMF_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_llama_tied),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
