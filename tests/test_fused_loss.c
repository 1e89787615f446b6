/* test_fused_loss.c — the head's loss over vocabulary slabs (lmf_model_set_fused_loss, model/head_loss.c) gives the
 * losses and gradients the kept logits give (themselves held to finite differences and PyTorch elsewhere): trained
 * heads (untied; tied to the embeddings, whose rows then get both gradients; Gemma 2's soft-capped logits), frozen
 * heads under LoRA (F32, a quantized GGUF head through dequantized slabs, its R16 repacking's k-major slabs, the
 * soft-cap), in fp32 and bf16; slabs that do not divide the vocabulary; rows without a target left out; gradient
 * accumulation over micro-batches; evaluation without a gradient; no logits kept. */
#include "test_util.h"

#include "core/dtype.h"
#include "model/head_loss.h"
#include "model/lora.h"
#include "model/model.h"

#include <math.h>
#include <string.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/"
enum { B = 3, T = 9, N = B * T };

static void data(int V, int32_t *tok, int32_t *tg, int all_ignored) {
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 37 + 11) % V), tg[i] = (int32_t)((i * 53 + 3) % V);
    tg[0] = tg[1] = tg[T] = tg[2 * T + 4] = -1; /* prompt positions carry no loss */
    tg[5] = V - 1;                              /* the last slab's last row */
    for (int i = 0; all_ignored && i < N; i++) tg[i] = -1;
}

/* loss and gradient (n floats at g) of one forward + backward, from zero */
static double step(lmf_model *m, float *g, size_t n, float *out, const int32_t *tok, const int32_t *tg) {
    memset(g, 0, sizeof(float) * n);
    double loss = lmf_model_forward(m, tok, tg, B, T);
    lmf_model_backward(m, 0.5f);
    memcpy(out, g, sizeof(float) * n);
    return loss;
}

static double max_err(const float *a, const float *b, size_t n) {
    double e = 0, mx = 0;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs(a[i] - b[i])), mx = fmax(mx, fabs(b[i]));
    return mx > 0 ? e / mx : e;
}

/* The fused loss against the kept logits on model m (gradient g, n floats), slabs of `slab` vocabulary rows. */
static void compare(const char *what, lmf_model *m, float *g, size_t n, int slab, double tol) {
    int V = m->cfg.vocab_size;
    int32_t tok[N], tg[N];
    data(V, tok, tg, 0);
    float *g0 = malloc(sizeof(float) * n), *g1 = malloc(sizeof(float) * n);
    lmf_model_set_fused_loss(m, 0);
    double l0 = step(m, g, n, g0, tok, tg);
    assert_non_null(lmf_model_logits(m));
    lmf_model_set_fused_loss(m, 1);
    assert_true(m->hl->slab >= slab);
    m->hl->slab = slab; /* several slabs over this small vocabulary, the last one short */
    double l1 = step(m, g, n, g1, tok, tg), eg = max_err(g1, g0, n);
    assert_null(lmf_model_logits(m));
    printf("%s: %d slabs of %d: loss %.7f vs kept logits' %.7f, gradients within %.2g of the largest\n", what,
           (V + slab - 1) / slab, slab, l1, l0, eg);
    assert_true(fabs(l1 - l0) <= tol * fabs(l0));
    assert_true(eg <= tol);
    assert_true(m->num_targets == N - 4);

    /* two micro-batches add up */
    memset(g, 0, sizeof(float) * n);
    for (int k = 0; k < 2; k++) {
        lmf_model_forward(m, tok, tg, B, T);
        lmf_model_backward(m, 0.5f);
    }
    for (size_t i = 0; i < n; i++) g0[i] = 2.0f * g1[i];
    assert_true(max_err(g, g0, n) < 1e-6);

    /* evaluation: the same loss, no gradient summed (and no backward allowed after it) */
    double le = lmf_model_eval_loss(m, tok, tg, B, T);
    assert_true(le == l1 && !m->hl->grad && !m->has_targets);

    /* no target at all: loss 0, no gradient from the head */
    data(V, tok, tg, 1);
    memset(g, 0, sizeof(float) * n);
    assert_true(lmf_model_forward(m, tok, tg, B, T) == 0.0f && m->num_targets == 0);
    lmf_model_backward(m, 1.0f);
    for (size_t i = 0; i < n; i++) assert_true(g[i] == 0.0f);

    /* off again: the logits are back */
    lmf_model_set_fused_loss(m, 0);
    data(V, tok, tg, 0);
    assert_true(lmf_model_forward(m, tok, tg, B, T) == (float)l0 && lmf_model_logits(m));
    free(g0), free(g1);
}

static lmf_model_config tiny(lmf_arch arch) {
    lmf_model_config c = lmf_model_config_default(arch);
    c.vocab_size = 301, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 32, c.n_head = 4, c.ffn_dim = 40;
    c.n_kv_head = arch == LMF_ARCH_GPT2 ? 4 : 2;
    if (arch == LMF_ARCH_GEMMA2) c.attn_softcap = 0.5f, c.final_softcap = 0.8f; /* caps that bite */
    return c;
}

static void run_trained(lmf_arch arch, int tied, int bf16) {
    lmf_model_config c = tiny(arch);
    c.tied_embeddings = tied;
    lmf_model *m = lmf_model_create(&c, B, T, 1);
    assert_non_null(m);
    lmf_model_init_weights(m, 5);
    float *p = lmf_model_params(m);
    for (size_t i = 0; i < lmf_model_num_params(m); i++) p[i] *= 6.0f; /* logits far from uniform */
    lmf_model_set_bf16(m, bf16);
    char what[96];
    snprintf(what, sizeof what, "%s %s head, %s", lmf_arch_name(arch), tied ? "tied" : "untied", bf16 ? "bf16" : "fp32");
    /* bf16: the slabs' products round d(logits) as they are (the kept logits' products, d(logits) - onehot) */
    compare(what, m, lmf_model_grads(m), lmf_model_num_params(m), 48, bf16 ? 2e-2 : 2e-5);
    lmf_model_free(m);
}

static void test_llama_untied(void **s) { run_trained(LMF_ARCH_LLAMA, 0, 0); }
static void test_gpt2_tied(void **s) { run_trained(LMF_ARCH_GPT2, 1, 0); }
static void test_gemma2_capped(void **s) { run_trained(LMF_ARCH_GEMMA2, 1, 0); }
static void test_llama_bf16(void **s) { run_trained(LMF_ARCH_LLAMA, 1, 1); }

static void run_lora(const char *what, const lmf_weights *w, int slab, int bf16, double tol) {
    lmf_lora *lo;
    assert_int_equal(lmf_lora_create(&w->cfg, "all-linear", 2, 4.0f, 0.0f, 0, &lo), LMF_OK);
    lmf_lora_init(lo, 3);
    for (size_t i = 0; i < lo->n_params; i++) lo->params[i] += 0.05f * (float)((i * 7) % 13) - 0.3f; /* B != 0 */
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(w, lo, B, T, &m), LMF_OK);
    lmf_model_set_bf16(m, bf16);
    compare(what, m, lo->grads, lo->n_params, slab, tol);
    lmf_model_free(m);
    lmf_lora_free(lo);
}

static void test_lora_f32(void **s) {
    lmf_model_config c = tiny(LMF_ARCH_GEMMA2);
    lmf_model *full = lmf_model_create(&c, B, T, 0);
    lmf_model_init_weights(full, 5);
    float *p = lmf_model_params(full);
    for (size_t i = 0; i < lmf_model_num_params(full); i++) p[i] *= 6.0f;
    run_lora("LoRA, gemma2 F32 capped head", lmf_model_weights(full), 40, 0, 2e-5);
    run_lora("LoRA, gemma2 F32 capped head, bf16", lmf_model_weights(full), 40, 1, 2e-2);
    lmf_model_free(full);
}

static void test_lora_gguf(void **s) {
    lmf_weights *w;
    if (lmf_weights_load(FIX "tiny_llama.gguf", &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    printf("tiny_llama.gguf head: %s, %d x %d\n", lmf_ggml_type_name(w->lm_head.type), w->lm_head.rows,
           w->lm_head.cols);
    assert_true(w->lm_head.type != LMF_GGML_F32);
    run_lora("LoRA, quantized GGUF head", w, 40, 0, 2e-5);
    lmf_weights_prepare_decode(w); /* R16 groups where this CPU decodes through them: k-major slabs */
    if (w->lm_head.r16) run_lora("LoRA, quantized GGUF head in R16 groups", w, 40, 0, 2e-5);
    else printf("R16: not used on this CPU\n");
    lmf_weights_free(w);
}

/* The buffers' bytes as counted before allocating are the ones allocated; a slab stays in whole R16 groups. */
static void test_bytes(void **s) {
    lmf_model_config c = tiny(LMF_ARCH_LLAMA);
    c.vocab_size = 262144, c.n_embd = 640;
    for (int q = 0; q < 2; q++) {
        lmf_head_loss *h = lmf_head_loss_create(&c, 4096, q);
        assert_true(lmf_head_loss_bytes(&c, 4096, q) == (double)h->bytes);
        assert_true(h->slab % 16 == 0 && h->slab >= 256 && (double)h->slab * 4096 <= (16 << 20));
        assert_true(!q == !h->dq);
        lmf_head_loss_free(h);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_untied), cmocka_unit_test(test_gpt2_tied), cmocka_unit_test(test_gemma2_capped),
        cmocka_unit_test(test_llama_bf16),   cmocka_unit_test(test_lora_f32),  cmocka_unit_test(test_lora_gguf),
        cmocka_unit_test(test_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
