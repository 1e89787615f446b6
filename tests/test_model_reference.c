/* test_model_reference.c — the C transformer against its PyTorch twin (tests/reference/make_fixtures.py):
 * logits, loss and every parameter gradient for one batch, then 10 AdamW steps with warmup + cosine schedule and
 * gradient clipping (losses, grad norms, learning rates and final weights), for gpt2, llama and tied llama. */
#include "test_util.h"

#include "io/safetensors.h"
#include "model/model.h"
#include "train/optim.h"

#include <string.h>

static const char *meta(const lmf_safetensors *st, const char *k) {
    const char *v = lmf_safetensors_meta(st, k);
    if (!v) fail_msg("fixture lacks metadata '%s'", k);
    return v;
}

static const float *tensor_f32(const lmf_safetensors *st, const char *name, size_t n) {
    const lmf_st_tensor *t = lmf_safetensors_find(st, name);
    if (!t) fail_msg("fixture lacks tensor '%s'", name);
    assert_int_equal(t->dtype, LMF_DT_F32);
    assert_int_equal(t->nbytes, n * 4);
    return t->data;
}

static const int32_t *tensor_i32(const lmf_safetensors *st, const char *name, size_t n) {
    const lmf_st_tensor *t = lmf_safetensors_find(st, name);
    if (!t) fail_msg("fixture lacks tensor '%s'", name);
    assert_int_equal(t->dtype, LMF_DT_I32);
    assert_int_equal(t->nbytes, n * 4);
    return t->data;
}

static void run_fixture(const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/reference/fixtures/%s", LMF_SOURCE_DIR, file);
    lmf_safetensors *st;
    if (lmf_safetensors_open(path, &st) != LMF_OK) fail_msg("%s", lmf_last_error());

    lmf_arch arch;
    assert_int_equal(lmf_arch_parse(meta(st, "arch"), &arch), LMF_OK);
    lmf_model_config c = lmf_model_config_default(arch); /* the family's knobs; the sizes follow */
    c.vocab_size = atoi(meta(st, "vocab_size")), c.max_seq_len = atoi(meta(st, "max_seq_len"));
    c.n_layer = atoi(meta(st, "n_layer")), c.n_embd = atoi(meta(st, "n_embd")), c.n_head = atoi(meta(st, "n_head"));
    c.n_kv_head = atoi(meta(st, "n_kv_head")), c.ffn_dim = atoi(meta(st, "ffn_dim"));
    c.norm_eps = strtof(meta(st, "norm_eps"), NULL), c.rope_theta = strtof(meta(st, "rope_theta"), NULL);
    c.tied_embeddings = atoi(meta(st, "tied_embeddings"));
    int B = atoi(meta(st, "B")), T = atoi(meta(st, "T")), V = c.vocab_size;

    lmf_model *m = lmf_model_create(&c, B, T, 1);
    if (!m) fail_msg("%s", lmf_last_error());
    char name[128];
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        snprintf(name, sizeof name, "param.%s", lmf_param_names[i]);
        memcpy(m->ptr[i], tensor_f32(st, name, m->param_sizes[i]), m->param_sizes[i] * 4);
    }

    /* one batch: logits, loss, gradients */
    const int32_t *tok = tensor_i32(st, "tokens", (size_t)B * T), *tgt = tensor_i32(st, "targets", (size_t)B * T);
    float loss = lmf_model_forward(m, tok, tgt, B, T);
    assert_close(lmf_model_logits(m), tensor_f32(st, "logits", (size_t)B * T * V), (long)B * T * V, 1e-5, "logits");
    float ref_loss = tensor_f32(st, "loss", 1)[0];
    if (fabsf(loss - ref_loss) > 1e-5f * fabsf(ref_loss)) fail_msg("%s: loss %.7f vs %.7f", file, loss, ref_loss);
    lmf_model_zero_grad(m);
    lmf_model_backward(m, 1.0f);
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        snprintf(name, sizeof name, "grad.%s", lmf_param_names[i]);
        char what[256];
        snprintf(what, sizeof what, "%s %s", file, name);
        assert_close(m->gptr[i], tensor_f32(st, name, m->param_sizes[i]), (long)m->param_sizes[i], 1e-4, what);
    }

    /* 10 AdamW steps */
    lmf_adamw_hparams hp = {.lr = strtof(meta(st, "lr"), NULL), .min_lr = strtof(meta(st, "min_lr"), NULL),
                            .warmup_steps = atoi(meta(st, "warmup_steps")), .max_steps = atoi(meta(st, "max_steps")),
                            .beta1 = strtof(meta(st, "beta1"), NULL), .beta2 = strtof(meta(st, "beta2"), NULL),
                            .eps = strtof(meta(st, "eps"), NULL), .weight_decay = strtof(meta(st, "weight_decay"), NULL),
                            .grad_clip = strtof(meta(st, "grad_clip"), NULL)};
    int S = atoi(meta(st, "train_steps"));
    const int32_t *ttok = tensor_i32(st, "train.tokens", (size_t)S * B * T);
    const int32_t *ttgt = tensor_i32(st, "train.targets", (size_t)S * B * T);
    const float *rl = tensor_f32(st, "train.losses", S), *rn = tensor_f32(st, "train.grad_norms", S);
    const float *rlr = tensor_f32(st, "train.lrs", S);
    lmf_adamw opt;
    lmf_adamw_init(&opt, m->num_params);
    for (int s = 0; s < S; s++) {
        float l = lmf_model_forward(m, ttok + (size_t)s * B * T, ttgt + (size_t)s * B * T, B, T);
        lmf_model_zero_grad(m);
        lmf_model_backward(m, 1.0f);
        float gn = lmf_grad_norm(m);
        float lr = lmf_adamw_step(&opt, m, &hp, s, gn);
        if (fabsf(l - rl[s]) > 1e-4f * fabsf(rl[s])) fail_msg("%s step %d: loss %.7f vs %.7f", file, s, l, rl[s]);
        if (fabsf(gn - rn[s]) > 1e-4f * fabsf(rn[s])) fail_msg("%s step %d: norm %.7f vs %.7f", file, s, gn, rn[s]);
        if (fabsf(lr - rlr[s]) > 1e-6f * fabsf(rlr[s])) fail_msg("%s step %d: lr %.9g vs %.9g", file, s, lr, rlr[s]);
    }
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        snprintf(name, sizeof name, "final.%s", lmf_param_names[i]);
        char what[256];
        snprintf(what, sizeof what, "%s %s", file, name);
        /* 1e-4 of the tensor scale: fp32 rounding noise in theoretically-zero gradients (gpt2's key bias) is
         * amplified by Adam's normalisation to ~4e-5 there (see tests/reference/README.md). */
        assert_close(m->ptr[i], tensor_f32(st, name, m->param_sizes[i]), (long)m->param_sizes[i], 1e-4, what);
    }
    lmf_adamw_free(&opt);
    lmf_model_free(m);
    lmf_safetensors_close(st);
}

static void test_gpt2(void **state) { run_fixture("gpt2.safetensors"); }
static void test_llama(void **state) { run_fixture("llama.safetensors"); }
static void test_llama_tied(void **state) { run_fixture("llama_tied.safetensors"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_llama_tied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
