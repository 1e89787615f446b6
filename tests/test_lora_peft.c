/* test_lora_peft.c — LoRA against its PyTorch + Hugging Face PEFT twin (float64; fixtures from
 * tests/reference/make_lora_fixtures.py, see tests/reference/README.md).
 *
 * For the tiny HF llama (GQA) and gpt2 folders and three adapters each (q,v / c_attn; all-linear; q,v with
 * rsLoRA), and the tiny Mixtral (a mixture of experts: q,v; q,k,v,o; q,v with rsLoRA), PEFT's own adapter_model.safetensors is read into an lmf_lora over the base, then: logits, the
 * prompt-masked loss (labels -100 on the first 3 positions, HF's shift), the gradient of every lora_A / lora_B, and
 * 10 AdamW steps on the adapters (torch.optim.AdamW, lr 1e-2, betas 0.9 / 0.999, no clipping): every loss and the
 * final A and B. fp32 here against float64 there: within 1e-4 of each tensor's largest value (a float32 PEFT run
 * lands within 2e-6). */
#include "test_util.h"

#include "io/safetensors.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/optim.h"

#include <string.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/"
#define TOL 1e-4

/* PEFT's key of module k's A or B in layer l. */
static void peft_key(char *out, size_t n, const lmf_lora *lo, int arch_llama, int l, int k, const char *ab) {
    const char *name = lo->mod[k].name, *path;
    char buf[64];
    if (arch_llama) {
        snprintf(buf, sizeof buf, "%s.%s", lo->mod[k].m0 >= 4 ? "mlp" : "self_attn", name);
        path = buf;
    } else {
        snprintf(buf, sizeof buf, "%s%s", !strcmp(name, "c_attn") ? "attn." : !strcmp(name, "c_fc") ? "mlp." : "",
                 name);
        path = buf;
    }
    snprintf(out, n, "base_model.model.%s.%d.%s.lora_%s.weight", arch_llama ? "model.layers" : "transformer.h", l,
             path, ab);
}

static const float *tensor(const lmf_safetensors *st, const char *name, size_t n) {
    const lmf_st_tensor *t = lmf_safetensors_find(st, name);
    if (!t) fail_msg("%s: no tensor %s", st->path, name);
    assert_int_equal(t->dtype, LMF_DT_F32);
    assert_int_equal(t->nbytes, n * sizeof(float));
    return (const float *)t->data;
}

static double WORST;

static void check(const char *what, const float *got, const float *want, size_t n) {
    double e = rel_err(got, want, (long)n);
    if (e > WORST) WORST = e;
    if (!(e <= TOL)) fail_msg("%s: relative error %.3g > %g", what, e, TOL);
}

static void run(const char *model, const char *variant, const char *targets, int rslora) {
    char path[512];
    snprintf(path, sizeof path, FIX "%s", strcmp(model, "mixtral") ? model : "moe/mixtral");
    if (strcmp(model, "mixtral")) snprintf(path, sizeof path, FIX "hf/%s", model);
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    int llama = w->cfg.arch == LMF_ARCH_LLAMA, V = w->cfg.vocab_size;
    lmf_lora *lo;
    if (lmf_lora_create(&w->cfg, targets, 4, 8.0f, 0.0f, rslora, &lo) != LMF_OK) fail_msg("%s", lmf_last_error());
    snprintf(path, sizeof path, FIX "lora/%s_%s/adapter_model.safetensors", model, variant);
    lmf_safetensors *ad, *ex;
    if (lmf_safetensors_open(path, &ad) != LMF_OK) fail_msg("%s", lmf_last_error());
    snprintf(path, sizeof path, FIX "lora/%s_%s/expected.safetensors", model, variant);
    if (lmf_safetensors_open(path, &ex) != LMF_OK) fail_msg("%s", lmf_last_error());
    char key[256], key2[300];
    for (int l = 0; l < lo->n_layer; l++)
        for (int k = 0; k < lo->n_mod; k++) {
            size_t na = (size_t)lo->r * lo->mod[k].in, nb = (size_t)lo->mod[k].out * lo->r;
            peft_key(key, sizeof key, lo, llama, l, k, "A");
            memcpy(lmf_lora_A(lo, l, k), tensor(ad, key, na), na * sizeof(float));
            peft_key(key, sizeof key, lo, llama, l, k, "B");
            memcpy(lmf_lora_B(lo, l, k), tensor(ad, key, nb), nb * sizeof(float));
        }
    int B = 2, T = 8;
    const int32_t *tok = (const int32_t *)lmf_safetensors_find(ex, "tokens")->data;
    const int32_t *lab = (const int32_t *)lmf_safetensors_find(ex, "labels")->data;
    int32_t tg[16];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) /* HF's shift: position t predicts label t + 1 */
            tg[b * T + t] = t + 1 < T && lab[b * T + t + 1] != -100 ? lab[b * T + t + 1] : -1;
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(w, lo, B, T, &m), LMF_OK);
    lmf_model_zero_grad(m);
    float loss = lmf_model_forward(m, tok, tg, B, T);
    char what[128];
    snprintf(what, sizeof what, "%s_%s logits", model, variant);
    check(what, lmf_model_logits(m), tensor(ex, "logits", (size_t)B * T * V), (size_t)B * T * V);
    const float *want_loss = tensor(ex, "loss", 1);
    if (fabs(loss - want_loss[0]) > TOL * fabs(want_loss[0]))
        fail_msg("%s_%s loss %.7g, PEFT %.7g", model, variant, loss, want_loss[0]);
    lmf_model_backward(m, 1.0f);
    for (int l = 0; l < lo->n_layer; l++)
        for (int k = 0; k < lo->n_mod; k++) {
            size_t na = (size_t)lo->r * lo->mod[k].in, nb = (size_t)lo->mod[k].out * lo->r;
            peft_key(key, sizeof key, lo, llama, l, k, "A");
            snprintf(key2, sizeof key2, "grad.%s", key);
            check(key2, lmf_lora_dA(lo, l, k), tensor(ex, key2, na), na);
            peft_key(key, sizeof key, lo, llama, l, k, "B");
            snprintf(key2, sizeof key2, "grad.%s", key);
            check(key2, lmf_lora_dB(lo, l, k), tensor(ex, key2, nb), nb);
        }
    /* 10 AdamW steps on the same batch */
    const float *losses = tensor(ex, "train.losses", 10);
    lmf_adamw opt;
    lmf_adamw_init(&opt, lmf_model_num_params(m));
    lmf_adamw_hparams hp = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f, .grad_clip = 0.0f};
    for (int step = 0; step < 10; step++) {
        lmf_model_zero_grad(m);
        float ls = lmf_model_forward(m, tok, tg, B, T);
        if (fabs(ls - losses[step]) > TOL * fabs(losses[step]))
            fail_msg("%s_%s step %d: loss %.7g, PEFT %.7g", model, variant, step, ls, losses[step]);
        lmf_model_backward(m, 1.0f);
        lmf_adamw_apply(&opt, m, &hp, 1e-2f, lmf_grad_norm(m));
    }
    for (int l = 0; l < lo->n_layer; l++)
        for (int k = 0; k < lo->n_mod; k++) {
            size_t na = (size_t)lo->r * lo->mod[k].in, nb = (size_t)lo->mod[k].out * lo->r;
            peft_key(key, sizeof key, lo, llama, l, k, "A");
            snprintf(key2, sizeof key2, "final.%s", key);
            check(key2, lmf_lora_A(lo, l, k), tensor(ex, key2, na), na);
            peft_key(key, sizeof key, lo, llama, l, k, "B");
            snprintf(key2, sizeof key2, "final.%s", key);
            check(key2, lmf_lora_B(lo, l, k), tensor(ex, key2, nb), nb);
        }
    printf("%s_%s: logits, loss, %d adapter gradients, 10 AdamW steps equal PEFT's (worst so far %.2g)\n", model,
           variant, 2 * lo->n_layer * lo->n_mod, WORST);
    lmf_adamw_free(&opt);
    lmf_model_free(m);
    lmf_safetensors_close(ad);
    lmf_safetensors_close(ex);
    lmf_lora_free(lo);
    lmf_weights_free(w);
}

static void test_llama_attn(void **s) { run("llama", "attn", "q_proj,v_proj", 0); }
static void test_llama_all_linear(void **s) { run("llama", "all_linear", "all-linear", 0); }
static void test_llama_rslora(void **s) { run("llama", "attn_rslora", "q_proj,v_proj", 1); }
static void test_gpt2_attn(void **s) { run("gpt2", "attn", "c_attn", 0); }
static void test_gpt2_all_linear(void **s) { run("gpt2", "all_linear", "all-linear", 0); }
static void test_gpt2_rslora(void **s) { run("gpt2", "attn_rslora", "c_attn", 1); }
/* a mixture of experts: the adapters' gradients flow back through the frozen experts and the routing weights */
static void test_mixtral_attn(void **s) { run("mixtral", "attn", "q_proj,v_proj", 0); }
static void test_mixtral_qkvo(void **s) { run("mixtral", "qkvo", "q_proj,k_proj,v_proj,o_proj", 0); }
static void test_mixtral_rslora(void **s) { run("mixtral", "attn_rslora", "q_proj,v_proj", 1); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_attn), cmocka_unit_test(test_llama_all_linear), cmocka_unit_test(test_llama_rslora),
        cmocka_unit_test(test_gpt2_attn),  cmocka_unit_test(test_gpt2_all_linear),  cmocka_unit_test(test_gpt2_rslora),
        cmocka_unit_test(test_mixtral_attn), cmocka_unit_test(test_mixtral_qkvo), cmocka_unit_test(test_mixtral_rslora),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
