/* test_lora_peft.c — LoRA against its PyTorch + Hugging Face PEFT twin (float64; fixtures from
 * tests/reference/make_lora_fixtures.py, see tests/reference/README.md).
 *
 * For the tiny HF llama (GQA) and gpt2 folders and three adapters each (q,v / c_attn; all-linear; q,v with
 * rsLoRA), and the tiny Mixtral (a mixture of experts: q,v; q,k,v,o; q,v with rsLoRA; PEFT's all-linear, which adapts
 * the router and the experts as target_parameters, read by lmf_lora_load_peft) and PEFT's all-linear over the tiny
 * Qwen2-MoE (q/k/v/o and the shared expert's gate_proj, up_proj, down_proj and shared_expert_gate), q,v over the
 * tiny Gemma 3 and all-linear over the tiny Gemma 2 (sliding windows of 5 over rows of 8; Gemma 2's caps), PEFT's own
 * adapter_model.safetensors
 * is read into an lmf_lora over the base, then: logits, the
 * prompt-masked loss (labels -100 on the first 3 positions, HF's shift), the gradient of every lora_A / lora_B, and
 * 10 AdamW steps on the adapters (torch.optim.AdamW, lr 1e-2, betas 0.9 / 0.999, no clipping): every loss and the
 * final A and B. fp32 here against float64 there: within 1e-4 of each tensor's largest value (a float32 PEFT run
 * lands within 2e-6). */
#include "test_util.h"

#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/quant.h"
#include "model/export.h"
#include "model/infer.h"
#include "model/head_loss.h"
#include "model/lora.h"
#include "model/lora_io.h"
#include "model/model.h"
#include "train/optim.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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


/* PEFT's 10 AdamW steps on the same batch (lr 1e-2, no decay, no clipping), each step's loss held to the twin's */
static void peft_steps(lmf_model *m, const int32_t *tok, const int32_t *tg, int B, int T, const float *losses,
                       const char *name) {
    lmf_adamw opt;
    lmf_adamw_init(&opt, lmf_model_num_params(m));
    lmf_adamw_hparams hp = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f, .grad_clip = 0.0f};
    for (int step = 0; step < 10; step++) {
        lmf_model_zero_grad(m);
        float ls = lmf_model_forward(m, tok, tg, B, T);
        if (fabs(ls - losses[step]) > TOL * fabs(losses[step]))
            fail_msg("%s step %d: loss %.7g, PEFT %.7g", name, step, ls, losses[step]);
        lmf_model_backward(m, 1.0f);
        lmf_adamw_apply(&opt, m, &hp, 1e-2f, lmf_grad_norm(m));
    }
    lmf_adamw_free(&opt);
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
    char name[96];
    snprintf(name, sizeof name, "%s_%s", model, variant);
    peft_steps(m, tok, tg, B, T, tensor(ex, "train.losses", 10), name);
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

/* Every tensor of `have` (an adapter written by lmf_lora_save_peft: PEFT's keys, layout and interleaved expert
 * columns) against prefix + key in ex. */
static void check_folder(const char *dir, const lmf_safetensors *ex, const char *prefix) {
    char path[600], key[300];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    lmf_safetensors *have;
    if (lmf_safetensors_open(path, &have) != LMF_OK) fail_msg("%s", lmf_last_error());
    for (int i = 0; i < have->n_tensors; i++) {
        const lmf_st_tensor *t = &have->tensors[i];
        snprintf(key, sizeof key, "%s%s", prefix, t->name);
        check(key, (const float *)t->data, tensor(ex, key, t->nbytes / sizeof(float)), t->nbytes / sizeof(float));
    }
    lmf_safetensors_close(have);
}

/* A trained adapter (a MoE's on its experts too) at inference, unmerged (lmf_session_set_lora): a prefill, single-token decode steps and
 * two sequences decoding side by side in one batch step give the training forward's logits (ref, m's on tok); the
 * merged model (s B_e A_e folded into each expert) gives them too; and on a Q8_0 export of the base (QLoRA: the
 * experts stay Q8_0), the adapter through a GGUF adapter file (llama.cpp's expert stacks; q/k rows in the GGUF's
 * order) gives them within Q8_0's error, its prefill equal to its own training forward. */
static void check_inference(const lmf_weights *w, lmf_lora *lo, const int32_t *tok, const float *ref, const char *dir) {
    int T = 8, V = w->cfg.vocab_size;
    float out[2 * 8 * 64];
    assert_true(V <= 64);
    double ep = 0, ed = 0, eb = 0;
    for (int b = 0; b < 2; b++) {
        lmf_session *ss;
        const float *lg;
        assert_int_equal(lmf_session_create(w, 16, &ss), LMF_OK);
        lmf_session_set_lora(ss, lo);
        assert_int_equal(lmf_session_eval(ss, tok + b * T, T, 1, &lg), LMF_OK);
        ep = fmax(ep, rel_err(lg, ref + (size_t)b * T * V, (long)T * V));
        lmf_session_rewind(ss, 0);
        for (int t = 0; t < T; t++) {
            assert_int_equal(lmf_session_eval(ss, tok + b * T + t, 1, 0, &lg), LMF_OK);
            ed = fmax(ed, rel_err(lg, ref + ((size_t)b * T + t) * V, V));
        }
        lmf_session_free(ss);
    }
    lmf_kv_pool *pool;
    assert_int_equal(lmf_kv_pool_create(w, 64, 16, 16, LMF_KV_F32, &pool), LMF_OK);
    lmf_session *ss[2];
    for (int b = 0; b < 2; b++) assert_int_equal(lmf_session_create_pooled(pool, 16, &ss[b]), LMF_OK);
    lmf_session_set_lora(ss[0], lo); /* the pool's: both sequences */
    for (int t = 0; t < T; t++) {
        const int32_t *tk[2] = {tok + t, tok + T + t};
        int n[2] = {1, 1};
        assert_int_equal(lmf_session_eval_batch(ss, tk, n, 2, out), LMF_OK);
        for (int b = 0; b < 2; b++) eb = fmax(eb, rel_err(out + b * V, ref + ((size_t)b * T + t) * V, V));
    }
    for (int b = 0; b < 2; b++) lmf_session_free(ss[b]);
    lmf_kv_pool_free(pool);
    lmf_weights *mg;
    if (lmf_lora_merge(w, lo, &mg) != LMF_OK) fail_msg("%s", lmf_last_error());
    double em = 0;
    for (int b = 0; b < 2; b++) {
        lmf_session *s1;
        const float *lg;
        assert_int_equal(lmf_session_create(mg, 16, &s1), LMF_OK);
        assert_int_equal(lmf_session_eval(s1, tok + b * T, T, 1, &lg), LMF_OK);
        em = fmax(em, rel_err(lg, ref + (size_t)b * T * V, (long)T * V));
        lmf_session_free(s1);
    }
    lmf_lora_merged_free(mg);
    printf("adapter unmerged: prefill %.2g, decode %.2g, batched decode %.2g; merged %.2g\n", ep, ed, eb, em);
    if (!(ep < 1e-5 && ed < 2e-3 && eb < 2e-3 && em < 1e-5)) fail_msg("inference with the adapter");

    /* through GGUF files: the base exported F32 (exact) and Q8_0 (QLoRA: the experts stay Q8_0), the adapter as a
     * GGUF adapter (llama.cpp's expert stacks; q/k rows in the GGUF's order) */
    char ga[600];
    snprintf(ga, sizeof ga, "%s/adapter.gguf", dir);
    assert_int_equal(lmf_lora_save_gguf(lo, &w->cfg, ga), LMF_OK);
    if (lmf_arch_is_gemma(w->cfg.arch)) { /* the tiny Gemmas' q.k scale (query_pre_attn_scalar 24, heads of 16) */
        printf("GGUF base and adapter not run: llama.cpp's %s has no such q.k scale (test_load_hf's gemma tests "
               "export with its scale)\n", lmf_arch_name(w->cfg.arch));
        return;
    }
    double e_base = 0;
    for (int qt = 0; qt < 2; qt++) {
        char gg[600];
        snprintf(gg, sizeof gg, "%s/base_%d.gguf", dir, qt);
        if (lmf_export_gguf(w, gg, qt ? LMF_GGML_Q8_0 : LMF_GGML_F32, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
        lmf_weights *q;
        if (lmf_weights_load(gg, &q) != LMF_OK) fail_msg("%s", lmf_last_error());
        const lmf_wtensor *big = w->cfg.n_expert ? &q->layers[0].experts[0] : &q->layers[0].w_up;
        assert_int_equal(big->type, qt ? LMF_GGML_Q8_0 : LMF_GGML_F32);
        lmf_lora *lq;
        if (lmf_lora_load_gguf(ga, &q->cfg, &lq) != LMF_OK) fail_msg("%s", lmf_last_error());
        lmf_model *mq;
        assert_int_equal(lmf_model_create_lora(q, lq, 2, T, &mq), LMF_OK);
        lmf_model_forward(mq, tok, NULL, 2, T);
        double eq = rel_err(lmf_model_logits(mq), ref, 2L * T * V), eqp = 0;
        double row[16], med; /* each position's error, for Q8_0 its median: a token whose top-2 flips is far off */
        for (int i = 0; i < 2 * T; i++) row[i] = rel_err(lmf_model_logits(mq) + (size_t)i * V, ref + (size_t)i * V, V);
        for (int i = 1; i < 2 * T; i++)
            for (int j = i; j > 0 && row[j] < row[j - 1]; j--) med = row[j], row[j] = row[j - 1], row[j - 1] = med;
        med = 0.5 * (row[T - 1] + row[T]);
        for (int b = 0; b < 2; b++) {
            lmf_session *s1;
            const float *lg;
            assert_int_equal(lmf_session_create(q, 16, &s1), LMF_OK);
            lmf_session_set_lora(s1, lq);
            assert_int_equal(lmf_session_eval(s1, tok + b * T, T, 1, &lg), LMF_OK);
            eqp = fmax(eqp, rel_err(lg, lmf_model_logits(mq) + (size_t)b * T * V, (long)T * V));
            lmf_session_free(s1);
        }
        if (qt) { /* the error Q8_0 brings to this base without the adapter, for scale */
            lmf_session *s1;
            const float *lg;
            float base_ref[8 * 64];
            assert_int_equal(lmf_session_create(w, 16, &s1), LMF_OK);
            assert_int_equal(lmf_session_eval(s1, tok, T, 1, &lg), LMF_OK);
            memcpy(base_ref, lg, sizeof(float) * (size_t)T * V);
            lmf_session_free(s1);
            assert_int_equal(lmf_session_create(q, 16, &s1), LMF_OK);
            assert_int_equal(lmf_session_eval(s1, tok, T, 1, &lg), LMF_OK);
            e_base = rel_err(lg, base_ref, (long)T * V);
            lmf_session_free(s1);
        }
        printf("%s base + GGUF adapter: training forward within %.2g of the HF F32 one (median position %.2g), "
               "its prefill %.2g\n", qt ? "Q8_0" : "F32", eq, med, eqp);
        if (qt) printf("  (Q8_0 alone moves this base's logits by %.2g)\n", e_base);
        if (!(eqp < 1e-4 && (qt ? med < 2 * e_base && eq < 0.3 : eq < 1e-5)))
            fail_msg("GGUF base with the adapter");
        lmf_model_free(mq);
        lmf_lora_free(lq);
        lmf_weights_free(q);
    }
}

/* The twin's checks on model m over adapters lo (gr: a copy to write gradients through): logits (where m keeps them),
 * loss, every adapter gradient (through lmforge's PEFT writer, the layout back) and 10 AdamW steps against PEFT's. */
static void twin_train(lmf_model *m, lmf_lora *lo, lmf_lora *gr, const lmf_weights *w, const lmf_safetensors *ex,
                       const int32_t *tok, const int32_t *tg, int B, int T, const char *dir, const char *name) {
    int V = w->cfg.vocab_size;
    lmf_model_zero_grad(m);
    float loss = lmf_model_forward(m, tok, tg, B, T);
    char what[160];
    snprintf(what, sizeof what, "%s logits", name);
    if (lmf_model_logits(m)) check(what, lmf_model_logits(m), tensor(ex, "logits", (size_t)B * T * V), (size_t)B * T * V);
    const float *want_loss = tensor(ex, "loss", 1);
    if (fabs(loss - want_loss[0]) > TOL * fabs(want_loss[0]))
        fail_msg("%s loss %.7g, PEFT %.7g", name, loss, want_loss[0]);
    lmf_model_backward(m, 1.0f);
    memcpy(gr->params, lo->grads, lo->n_params * sizeof(float));
    assert_int_equal(lmf_lora_save_peft(gr, &w->cfg, NULL, dir), LMF_OK);
    check_folder(dir, ex, "grad.");
    peft_steps(m, tok, tg, B, T, tensor(ex, "train.losses", 10), name);
    assert_int_equal(lmf_lora_save_peft(lo, &w->cfg, NULL, dir), LMF_OK);
    check_folder(dir, ex, "final.");
}

/* PEFT's all-linear adapter over a MoE (fixture folder lora/NAME over the base folder), read by lmforge's PEFT reader
 * (key names, nesting, interleaved B, rank_pattern, full module paths), then as run() does; the gradients and final
 * values are compared through lmforge's PEFT writer (the same layout back); then check_inference. */
static void all_linear_twin(const char *base, const char *name, int n_mod, const char *what) {
    lmf_weights *w;
    char path[512];
    snprintf(path, sizeof path, FIX "%s", base);
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    int V = w->cfg.vocab_size, B = 2, T = 8;
    lmf_lora *lo, *gr;
    snprintf(path, sizeof path, FIX "lora/%s", name);
    if (lmf_lora_load_peft(path, &w->cfg, &lo) != LMF_OK) fail_msg("%s", lmf_last_error());
    if (lmf_lora_load_peft(path, &w->cfg, &gr) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(lo->n_mod, n_mod);
    lmf_safetensors *ex;
    snprintf(path, sizeof path, FIX "lora/%s/expected.safetensors", name);
    if (lmf_safetensors_open(path, &ex) != LMF_OK) fail_msg("%s", lmf_last_error());
    const int32_t *tok = (const int32_t *)lmf_safetensors_find(ex, "tokens")->data;
    const int32_t *lab = (const int32_t *)lmf_safetensors_find(ex, "labels")->data;
    int32_t tg[16];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tg[b * T + t] = t + 1 < T && lab[b * T + t + 1] != -100 ? lab[b * T + t + 1] : -1;
    char dir[] = "/tmp/lmf_lora_peft_XXXXXX";
    assert_non_null(mkdtemp(dir));
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(w, lo, B, T, &m), LMF_OK);
    twin_train(m, lo, gr, w, ex, tok, tg, B, T, dir, name);
    lmf_model_forward(m, tok, NULL, B, T);
    float *ref = malloc(sizeof(float) * (size_t)B * T * V);
    memcpy(ref, lmf_model_logits(m), sizeof(float) * (size_t)B * T * V);
    check_inference(w, lo, tok, ref, dir);
    free(ref);
    printf("%s (%s): logits, loss, %d adapter gradients, 10 AdamW steps equal PEFT's (worst so far %.2g)\n", name,
           what, 2 * lo->n_layer * lo->n_mod, WORST);
    /* again from the same adapter, the loss over vocabulary slabs (finetune's default, lmf_model_set_fused_loss):
     * slabs of 40 rows, the last short */
    lmf_lora *fz;
    snprintf(path, sizeof path, FIX "lora/%s", name);
    if (lmf_lora_load_peft(path, &w->cfg, &fz) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model *mf;
    assert_int_equal(lmf_model_create_lora(w, fz, B, T, &mf), LMF_OK);
    lmf_model_set_fused_loss(mf, 1);
    mf->hl->slab = 40;
    twin_train(mf, fz, gr, w, ex, tok, tg, B, T, dir, name);
    printf("%s, the loss over %d slabs: loss, adapter gradients, 10 AdamW steps equal PEFT's (worst so far %.2g)\n",
           name, (V + 39) / 40, WORST);
    lmf_model_free(mf);
    lmf_lora_free(fz);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    lmf_model_free(m);
    lmf_safetensors_close(ex);
    lmf_lora_free(gr);
    lmf_lora_free(lo);
    lmf_weights_free(w);
}

/* Phi-3's fused Linears: PEFT's qkv_proj adapter is one A over q, k and v, gate_up_proj's one over gate and up
 * (llama.cpp's attn_qkv and ffn_up in the GGUF adapter) */
static void test_phi3_attn(void **s) { all_linear_twin("phi3/phi3", "phi3_attn", 1, "qkv_proj: one A over q, k, v"); }
static void test_phi3_all_linear(void **s) {
    all_linear_twin("phi3/phi3", "phi3_all_linear", 4, "qkv_proj, o_proj, gate_up_proj, down_proj");
}

/* Gemma 3 (local layers' windows of 5 over rows of 8, two RoPE bases, GeGLU, sandwich norms, scaled embeddings) and
 * Gemma 2 (the same windows, soft-capped scores and logits; every linear adapted) */
static void test_gemma3_attn(void **s) { all_linear_twin("hf/gemma3", "gemma3_attn", 2, "q_proj, v_proj"); }
static void test_gemma2_all_linear(void **s) { all_linear_twin("hf/gemma2", "gemma2_all_linear", 7, "all seven"); }

static void test_mixtral_all_linear(void **s) {
    (void)s;
    all_linear_twin("moe/mixtral", "mixtral_all_linear", 7, "router, experts at 2r, down");
}

/* PEFT's all-linear over the tiny Qwen2-MoE (q/k/v biases, gated shared expert): q/k/v/o and the shared expert's
 * gate_proj, up_proj, down_proj and shared_expert_gate (nn.Linear modules; no router or expert adapter, as PEFT
 * 0.21.2 has it there), target_modules written as full paths */
static void test_qwen2_moe_all_linear(void **s) {
    (void)s;
    all_linear_twin("qwen2/qwen2_moe", "qwen2_moe_all_linear", 8, "shared expert's three Linears and its gate");
    /* lmforge's own all-linear on that model is the same set */
    lmf_weights *w;
    if (lmf_weights_load(FIX "qwen2/qwen2_moe", &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_lora *lo;
    if (lmf_lora_create(&w->cfg, "all-linear", 4, 8.0f, 0.1f, 0, &lo) != LMF_OK) fail_msg("%s", lmf_last_error());
    static const char *const want[] = {"q_proj", "k_proj", "v_proj", "o_proj", "shared_expert.gate_proj",
                                       "shared_expert.up_proj", "shared_expert.down_proj", "shared_expert_gate"};
    assert_int_equal(lo->n_mod, 8);
    for (int k = 0; k < 8; k++) assert_string_equal(lo->mod[k].name, want[k]);
    assert_int_equal(lo->mod[7].kind, LMF_LORA_SHARED_GATE);
    assert_int_equal(lo->mod[7].out, 1);
    lmf_lora_free(lo);
    lmf_weights_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_attn), cmocka_unit_test(test_llama_all_linear), cmocka_unit_test(test_llama_rslora),
        cmocka_unit_test(test_gpt2_attn),  cmocka_unit_test(test_gpt2_all_linear),  cmocka_unit_test(test_gpt2_rslora),
        cmocka_unit_test(test_mixtral_attn), cmocka_unit_test(test_mixtral_qkvo), cmocka_unit_test(test_mixtral_rslora),
        cmocka_unit_test(test_phi3_attn), cmocka_unit_test(test_phi3_all_linear),
        cmocka_unit_test(test_gemma3_attn), cmocka_unit_test(test_gemma2_all_linear),
        cmocka_unit_test(test_mixtral_all_linear), cmocka_unit_test(test_qwen2_moe_all_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
