/* test_lora.c — LoRA adapters in the block library (model/lora.h): a fresh adapter leaves the model unchanged; the
 * gradients of every A and B equal central finite differences of the loss (llama all-linear, gpt2's fused c_attn and
 * its two c_proj, a quantized GGUF base: the frozen base's input gradients through dequantized slabs; a MoE's router
 * and experts; a Qwen2-MoE's shared expert and its gate, with and without dropout); dropout draws
 * the same mask in forward and backward; target names are checked against the family's. */
#include "test_util.h"

#include "core/rng.h"
#include "core/status.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/optim.h"

#include <math.h>
#include <string.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/"
enum { B = 2, T = 7 };

static void data(int V, int32_t *tok, int32_t *tg) {
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 37 + 11) % V), tg[i] = (int32_t)((i * 53 + 3) % V);
    tg[0] = tg[1] = tg[T] = -1; /* prompt positions carry no loss */
}

/* Loss of model m on the fixed batch (the adapters as they are). */
static double loss_of(lmf_model *m) {
    int32_t tok[B * T], tg[B * T];
    data(m->cfg.vocab_size, tok, tg);
    return lmf_model_forward(m, tok, tg, B, T);
}

/* The central differences' step: 1e-2, or smaller where the loss curves more (the shared expert's sigmoid gate) */
static float FD_H = 1e-2f;

/* B random (a fresh adapter's zero B gives A no gradient), then analytic gradients against central differences at
 * up to 60 entries spread over A and B. */
static void check_grads(const char *what, lmf_model *m, lmf_lora *lo) {
    lmf_rng r;
    lmf_rng_seed(&r, 99, 1);
    for (int L = 0; L < lo->n_layer; L++)
        for (int k = 0; k < lo->n_mod; k++) {
            float *Bm = lmf_lora_B(lo, L, k);
            const lmf_lora_module *md = &lo->mod[k];
            for (size_t i = 0; i < (size_t)md->n_exp * md->out * md->r; i++)
                Bm[i] = 0.2f * (2 * lmf_rng_uniform(&r) - 1);
        }
    memset(lo->grads, 0, lo->n_params * sizeof(float));
    int32_t tok[B * T], tg[B * T];
    data(m->cfg.vocab_size, tok, tg);
    lmf_model_forward(m, tok, tg, B, T);
    lmf_model_backward(m, 1.0f);
    double maxg = 0;
    for (size_t i = 0; i < lo->n_params; i++) maxg = fmax(maxg, fabs(lo->grads[i]));
    assert_true(maxg > 0);
    size_t stride = lo->n_params / 60 + 1;
    double worst = 0;
    for (size_t i = 0; i < lo->n_params; i += stride) {
        float p0 = lo->params[i], h = FD_H;
        lo->params[i] = p0 + h;
        double lp = loss_of(m);
        lo->params[i] = p0 - h;
        double lm = loss_of(m);
        lo->params[i] = p0;
        double fd = (lp - lm) / (2.0 * h), e = fabs(fd - lo->grads[i]) / maxg;
        if (e > worst) worst = e;
        if (e > 2e-2) fail_msg("%s: parameter %zu: analytic %.6g, finite difference %.6g (max |grad| %.3g)", what, i,
                               lo->grads[i], fd, maxg);
    }
    printf("%s: %zu adapter parameters, gradients vs finite differences within %.2g of the largest\n", what,
           lo->n_params, worst);
}

/* The LoRA model over full's weights, its adapters initialised; a fresh adapter (B = 0) gives exactly the base
 * model's logits. */
static lmf_model *fresh_lora_model(lmf_model *full, lmf_lora *lo, int vocab) {
    lmf_lora_init(lo, 7);
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(lmf_model_weights(full), lo, B, T, &m), LMF_OK);
    int32_t tok[B * T], tg[B * T];
    data(vocab, tok, tg);
    lmf_model_forward(full, tok, tg, B, T);
    lmf_model_forward(m, tok, tg, B, T);
    assert_memory_equal(lmf_model_logits(m), lmf_model_logits(full), sizeof(float) * B * T * vocab);
    return m;
}

static void run_family(lmf_arch arch, const char *targets, int n_mod) {
    lmf_model_config c = lmf_model_config_default(arch);
    c.vocab_size = 61, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 24, c.n_head = 4, c.ffn_dim = 40;
    c.n_kv_head = arch == LMF_ARCH_GPT2 ? 4 : 2, c.tied_embeddings = arch == LMF_ARCH_GPT2;
    if (arch == LMF_ARCH_GEMMA3) /* every knob off its default: the q.k scale, every 2nd layer global (the others a
                                  * window of 3 over the rows of 7, and their own RoPE base) */
        c.attn_scale = 0.3f, c.sliding_window = 3, c.swa_pattern = 2, c.rope_theta_swa = 100.0f;
    if (arch == LMF_ARCH_GEMMA2) /* caps that bite, a window of 3 on every 2nd layer */
        c.attn_softcap = 0.5f, c.final_softcap = 0.8f, c.sliding_window = 3, c.swa_pattern = 2;
    lmf_model *full = lmf_model_create(&c, B, T, 0);
    assert_non_null(full);
    lmf_model_init_weights(full, 5);
    lmf_lora *lo;
    if (lmf_lora_create(&c, targets, 3, 6.0f, 0.0f, 0, &lo) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(lo->n_mod, n_mod);
    lmf_model *m = fresh_lora_model(full, lo, c.vocab_size);
    check_grads(lmf_arch_name(arch), m, lo);
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_model_free(full);
}

static void test_llama_all_linear(void **s) { run_family(LMF_ARCH_LLAMA, "all-linear", 7); }
static void test_llama_qv(void **s) { run_family(LMF_ARCH_LLAMA, "q_proj,v_proj", 2); }
static void test_gpt2(void **s) { run_family(LMF_ARCH_GPT2, "c_attn,c_proj,c_fc", 4); }
/* phi3: qkv_proj and gate_up_proj, one A over the fused q|k|v and gate|up rows */
static void test_phi3(void **s) { run_family(LMF_ARCH_PHI3, "all-linear", 4); }
/* gemma3: GeGLU's gate and up, the sandwich norms and the scaled embeddings on the frozen path */
static void test_gemma3(void **s) { run_family(LMF_ARCH_GEMMA3, "all-linear", 7); }
/* gemma2: the soft-capped scores and logits on the frozen path */
static void test_gemma2(void **s) { run_family(LMF_ARCH_GEMMA2, "all-linear", 7); }

static void test_quantized_base(void **s) {
    lmf_weights *w;
    if (lmf_weights_load(FIX "tiny_llama.gguf", &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_lora *lo;
    assert_int_equal(lmf_lora_create(&w->cfg, "all-linear", 2, 4.0f, 0.0f, 1, &lo), LMF_OK);
    assert_true(fabsf(lo->scale - 4.0f / sqrtf(2.0f)) < 1e-6f); /* rsLoRA */
    lmf_lora_init(lo, 3);
    lmf_model *m, *ref;
    assert_int_equal(lmf_model_create_lora(w, lo, B, T, &m), LMF_OK);
    assert_int_equal(lmf_model_from_weights(w, B, T, 0, &ref), LMF_OK);
    int32_t tok[B * T], tg[B * T];
    data(w->cfg.vocab_size, tok, tg);
    lmf_model_forward(m, tok, tg, B, T);
    lmf_model_forward(ref, tok, tg, B, T);
    double e = rel_err(lmf_model_logits(m), lmf_model_logits(ref), (long)B * T * w->cfg.vocab_size);
    printf("quantized base in place vs its fp32 copy: logits within %.2g\n", e);
    assert_true(e < 1e-5);
    check_grads("tiny llama GGUF (Q8_0/Q4_x/F16/BF16 base)", m, lo);
    lmf_model_free(ref);
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_weights_free(w);
}

/* The frozen base's products in bf16 (fine-tuning's --precision bf16): loss and the adapters' gradient stay near the
 * fp32 ones (3e-5 and 0.4% here; SmolLM2: 1e-4 and 0.2% of the gradient norm) and differ from them (the products
 * really were rounded). The bf16 kernel itself is held to its scalar reference in test_gemm. (On a model with large
 * logits, such as the random Q4/Q8 fixture tiny_llama.gguf, softmax amplifies bf16's 2^-9 to ~10% of the gradient.) */
static void test_bf16_base(void **s) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    /* heads of 32: on AMX, attention's own kernel over the q|k|v bf16 LoRA keeps (lmf_model_set_bf16) */
    c.vocab_size = 61, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 128, c.n_head = 4, c.n_kv_head = 2, c.ffn_dim = 96;
    lmf_model *full = lmf_model_create(&c, B, T, 0);
    assert_non_null(full);
    lmf_model_init_weights(full, 5);
    const lmf_weights *w = lmf_model_weights(full);
    lmf_lora *lo;
    assert_int_equal(lmf_lora_create(&w->cfg, "all-linear", 2, 4.0f, 0.0f, 0, &lo), LMF_OK);
    lmf_lora_init(lo, 3);
    for (int L = 0; L < lo->n_layer; L++)
        for (int k = 0; k < lo->n_mod; k++) {
            float *Bm = lmf_lora_B(lo, L, k);
            for (size_t i = 0; i < (size_t)lo->mod[k].out * lo->r; i++)
                Bm[i] = 0.01f * (float)((i * 7 + k) % 13) - 0.06f;
        }
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(w, lo, B, T, &m), LMF_OK);
    int32_t tok[B * T], tg[B * T];
    data(w->cfg.vocab_size, tok, tg);
    float *g32 = malloc(sizeof(float) * lo->n_params);
    double loss[2];
    for (int bf16 = 0; bf16 < 2; bf16++) {
        lmf_model_set_bf16(m, bf16);
        assert_true(!bf16 == !m->acts.qkv_16 && !m->acts.ln1_16); /* q|k|v alone in bf16 */
        memset(lo->grads, 0, lo->n_params * sizeof(float));
        loss[bf16] = lmf_model_forward(m, tok, tg, B, T);
        lmf_model_backward(m, 1.0f);
        if (!bf16) memcpy(g32, lo->grads, sizeof(float) * lo->n_params);
    }
    double dd = 0, nn = 0; /* the gradient as a whole: this fixture's random weights make single entries touchy */
    for (size_t i = 0; i < lo->n_params; i++) dd += pow(lo->grads[i] - g32[i], 2), nn += pow(g32[i], 2);
    double rel = sqrt(dd / nn);
    printf("bf16 base products: loss %.6f vs fp32 %.6f; adapter gradient vector within %.2g (relative L2)\n",
           loss[1], loss[0], rel);
    assert_true(loss[0] != loss[1] && fabs(loss[1] - loss[0]) < 1e-3 * fabs(loss[0]));
    assert_true(rel > 0 && rel < 2e-2);
    free(g32);
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_model_free(full);
}

/* Packed rows (finetune --packing): examples of 5, 7 and 4 tokens in one row of 16, positions restarting at each,
 * give every token the loss it gets when its example runs alone, and the adapters the same gradient (the packed
 * mean's gradient times its target count = the sum of each example's mean gradient times its count); llama (RoPE)
 * and gpt2 (learned positions, whose rows the positions pick). */
static void run_packed(lmf_arch arch) {
    enum { PT = 16 };
    static const int len[3] = {5, 7, 4};
    lmf_model_config c = lmf_model_config_default(arch);
    c.vocab_size = 61, c.max_seq_len = PT, c.n_layer = 2, c.n_embd = 24, c.n_head = 4, c.ffn_dim = 40;
    c.n_kv_head = arch == LMF_ARCH_GPT2 ? 4 : 2, c.tied_embeddings = arch == LMF_ARCH_GPT2;
    lmf_model *full = lmf_model_create(&c, 1, PT, 0);
    lmf_model_init_weights(full, 5);
    lmf_lora *lo;
    assert_int_equal(lmf_lora_create(&c, "all-linear", 3, 6.0f, 0.0f, 0, &lo), LMF_OK);
    lmf_lora_init(lo, 7);
    for (size_t i = 0; i < lo->n_params; i++) lo->params[i] += 0.05f * (float)((i * 31) % 17) / 17.0f;
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(lmf_model_weights(full), lo, 1, PT, &m), LMF_OK);
    int32_t tok[PT], tg[PT], pos[PT];
    int n_all = 0;
    for (int e = 0, t = 0; e < 3; t += len[e++])
        for (int i = 0; i < len[e]; i++) {
            tok[t + i] = (int32_t)((t * 13 + i * 7 + 3) % 61), pos[t + i] = i;
            tg[t + i] = i + 1 < len[e] && i > 0 ? (int32_t)((t * 5 + i * 11) % 61) : -1; /* first: a "prompt" */
            n_all += tg[t + i] >= 0;
        }
    memset(lo->grads, 0, lo->n_params * sizeof(float));
    lmf_model_set_positions(m, pos, 1, PT);
    lmf_model_forward(m, tok, tg, 1, PT);
    float losses[PT];
    memcpy(losses, m->acts.losses, sizeof losses);
    lmf_model_backward(m, 1.0f);
    lmf_model_set_positions(m, NULL, 0, 0);
    double *want = calloc(lo->n_params, sizeof(double)), worst_loss = 0;
    for (size_t i = 0; i < lo->n_params; i++) want[i] = (double)lo->grads[i] * n_all;
    for (int e = 0, t = 0; e < 3; t += len[e++]) {
        int n_e = 0;
        for (int i = 0; i < len[e]; i++) n_e += tg[t + i] >= 0;
        memset(lo->grads, 0, lo->n_params * sizeof(float));
        lmf_model_forward(m, tok + t, tg + t, 1, len[e]);
        for (int i = 0; i < len[e]; i++)
            if (tg[t + i] >= 0) worst_loss = fmax(worst_loss, fabs(m->acts.losses[i] - losses[t + i]));
        lmf_model_backward(m, 1.0f);
        for (size_t i = 0; i < lo->n_params; i++) want[i] -= (double)lo->grads[i] * n_e;
    }
    double worst = 0, maxg = 0;
    for (size_t i = 0; i < lo->n_params; i++) worst = fmax(worst, fabs(want[i]));
    memset(lo->grads, 0, lo->n_params * sizeof(float));
    lmf_model_forward(m, tok, tg, 1, len[0]);
    lmf_model_backward(m, 1.0f);
    for (size_t i = 0; i < lo->n_params; i++) maxg = fmax(maxg, fabs(lo->grads[i]));
    printf("%s packed row vs examples alone: token losses within %.2g, adapter gradients within %.2g (largest %.3g)\n",
           lmf_arch_name(arch), worst_loss, worst, maxg);
    assert_true(worst_loss < 1e-5 && maxg > 0 && worst < 1e-4 * maxg * n_all);
    free(want);
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_model_free(full);
}
static void test_packed_llama(void **s) { run_packed(LMF_ARCH_LLAMA); }
static void test_packed_gpt2(void **s) { run_packed(LMF_ARCH_GPT2); }

/* Dropout statistically: over 2^20 elements the kept share is 1 - p within 5 standard deviations, for p = 0.1, 0.3,
 * 0.5; keeping an element is independent of keeping it at the next step, in the next module and of keeping its
 * neighbour (joint rates (1 - p)^2 within 5 sd); and the kept elements, scaled by 1 / (1 - p), preserve the mean of
 * a constant input (the forward of a module with A = identity-like rows would see the same). */
static void test_dropout_rates(void **s) {
    (void)s;
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.n_layer = 2, c.n_embd = 32, c.n_head = 4, c.n_kv_head = 2, c.ffn_dim = 40, c.vocab_size = 61;
    const float ps[] = {0.1f, 0.3f, 0.5f};
    const size_t n = (size_t)1 << 20;
    for (int k = 0; k < 3; k++) {
        lmf_lora *lo;
        assert_int_equal(lmf_lora_create(&c, "q_proj,v_proj", 4, 8.0f, ps[k], 0, &lo), LMF_OK);
        lmf_lora_init(lo, 11 + k);
        double p = ps[k], q = 1 - p;
        long kept = 0, both_step = 0, both_mod = 0, both_next = 0;
        for (size_t e = 0; e < n; e++) {
            lo->step = 3;
            int a = lmf_lora_keep(lo, 1, 0, e), nb = lmf_lora_keep(lo, 1, 0, e + 1), m = lmf_lora_keep(lo, 1, 1, e);
            lo->step = 4;
            int st = lmf_lora_keep(lo, 1, 0, e);
            kept += a, both_next += a && nb, both_mod += a && m, both_step += a && st;
        }
        double sd1 = sqrt(q * (1 - q) / (double)n), sd2 = sqrt(q * q * (1 - q * q) / (double)n);
        double r = (double)kept / (double)n, rs = (double)both_step / (double)n, rm = (double)both_mod / (double)n;
        double rn = (double)both_next / (double)n;
        printf("dropout %.1f: kept %.5f (want %.5f), joint next step %.5f, next module %.5f, neighbour %.5f (want "
               "%.5f)\n", p, r, q, rs, rm, rn, q * q);
        assert_true(fabs(r - q) < 5 * sd1);
        assert_true(fabs(rs - q * q) < 5 * sd2);
        assert_true(fabs(rm - q * q) < 5 * sd2);
        assert_true(fabs(rn - q * q) < 5 * sd2);
        /* the expectation: kept / (1 - p) averages 1 */
        assert_true(fabs(r / q - 1.0) < 5 * sd1 / q);
        lmf_lora_free(lo);
    }
}

static void test_dropout(void **s) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.vocab_size = 61, c.max_seq_len = 16, c.n_layer = 1, c.n_embd = 24, c.n_head = 4, c.n_kv_head = 2;
    c.ffn_dim = 40;
    lmf_model *full = lmf_model_create(&c, B, T, 0);
    lmf_model_init_weights(full, 5);
    lmf_lora *lo;
    assert_int_equal(lmf_lora_create(&c, "q_proj,v_proj", 3, 6.0f, 0.3f, 0, &lo), LMF_OK);
    lmf_lora_init(lo, 7);
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(lmf_model_weights(full), lo, B, T, &m), LMF_OK);
    lo->step = 4;
    check_grads("dropout 0.3 (one step's mask)", m, lo);
    double a = loss_of(m);
    lo->step = 5;
    double b = loss_of(m);
    assert_true(a != b); /* another step, another mask */
    lo->step = 4;
    assert_true(loss_of(m) == a);
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_model_free(full);
}

/* AdamW through the model's params/grads (the adapters'): the loss falls, the frozen base does not move. */
static void test_adamw_trains_adapters_only(void **s) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.vocab_size = 61, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 24, c.n_head = 4, c.n_kv_head = 2;
    c.ffn_dim = 40;
    lmf_model *full = lmf_model_create(&c, B, T, 0);
    lmf_model_init_weights(full, 5);
    size_t np = lmf_model_num_params(full);
    float *before = malloc(np * sizeof(float));
    memcpy(before, lmf_model_params(full), np * sizeof(float));
    lmf_lora *lo;
    assert_int_equal(lmf_lora_create(&c, "all-linear", 4, 8.0f, 0.0f, 0, &lo), LMF_OK);
    lmf_lora_init(lo, 7);
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(lmf_model_weights(full), lo, B, T, &m), LMF_OK);
    assert_true(lmf_model_params(m) == lo->params && lmf_model_num_params(m) == lo->n_params);
    lmf_adamw opt;
    lmf_adamw_init(&opt, lmf_model_num_params(m));
    lmf_adamw_hparams hp = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f, .grad_clip = 1.0f};
    int32_t tok[B * T], tg[B * T];
    data(c.vocab_size, tok, tg);
    double first = 0, last = 0;
    for (int step = 0; step < 20; step++) {
        lmf_model_zero_grad(m);
        last = lmf_model_forward(m, tok, tg, B, T);
        if (!step) first = last;
        lmf_model_backward(m, 1.0f);
        lmf_adamw_apply(&opt, m, &hp, 1e-2f, lmf_grad_norm(m));
    }
    printf("20 AdamW steps on the adapters alone: loss %.4f -> %.4f\n", first, last);
    assert_true(last < first - 0.1);
    assert_memory_equal(lmf_model_params(full), before, np * sizeof(float));
    lmf_adamw_free(&opt);
    free(before);
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_model_free(full);
}

/* Inference with an unmerged adapter (prefill and decode steps) gives the training model's logits with it. */
static void test_inference_unmerged(void **s) {
    lmf_weights *w;
    if (lmf_weights_load(FIX "tiny_llama.gguf", &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_lora *lo;
    assert_int_equal(lmf_lora_create(&w->cfg, "all-linear", 4, 8.0f, 0.0f, 0, &lo), LMF_OK);
    lmf_lora_init(lo, 3);
    lmf_model *m;
    assert_int_equal(lmf_model_create_lora(w, lo, B, 12, &m), LMF_OK);
    check_grads("(setting B)", m, lo); /* fills B with non-zero values */
    int32_t tok[12];
    for (int i = 0; i < 12; i++) tok[i] = (int32_t)((i * 29 + 5) % w->cfg.vocab_size);
    lmf_model_forward(m, tok, NULL, 1, 12);
    const float *ref = lmf_model_logits(m);
    int V = w->cfg.vocab_size;
    lmf_session *se;
    assert_int_equal(lmf_session_create(w, 16, &se), LMF_OK);
    lmf_session_set_lora(se, lo);
    const float *lg;
    assert_int_equal(lmf_session_eval(se, tok, 12, 1, &lg), LMF_OK); /* prefill path */
    double ep = rel_err(lg, ref, 12L * V), ed = 0;
    lmf_session_rewind(se, 0);
    for (int t = 0; t < 12; t++) { /* decode path */
        assert_int_equal(lmf_session_eval(se, tok + t, 1, 0, &lg), LMF_OK);
        double e = rel_err(lg, ref + (size_t)t * V, V);
        ed = e > ed ? e : ed;
    }
    printf("unmerged adapter in sessions vs the training model: prefill %.2g, decode %.2g\n", ep, ed);
    assert_true(ep < (lmf_weights_integer_prefill(w) ? 2e-3 : 1e-4)); /* test_infer_tiny's tolerances */
    assert_true(ed < 2e-3); /* decode's int16 activations, as test_infer_tiny's tolerance */
    lmf_session_set_lora(se, NULL);
    lmf_session_rewind(se, 0);
    assert_int_equal(lmf_session_eval(se, tok, 12, 0, &lg), LMF_OK);
    assert_true(rel_err(lg, ref + 11L * V, V) > 1e-3); /* without it, other logits */
    lmf_session_free(se);
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_weights_free(w);
}

static void test_targets(void **s) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    lmf_lora *lo;
    assert_int_equal(lmf_lora_create(&c, "q_proj,c_attn", 4, 8, 0, 0, &lo), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "'c_attn'"));
    assert_non_null(strstr(lmf_last_error(), "gate_proj"));
    c = lmf_model_config_default(LMF_ARCH_GPT2);
    c.n_layer = 1;
    assert_int_equal(lmf_lora_create(&c, "c_proj", 4, 8, 0, 0, &lo), LMF_OK);
    assert_int_equal(lo->n_mod, 2); /* attn.c_proj and mlp.c_proj, as PEFT's suffix match */
    assert_true(lo->scale == 2.0f);
    lmf_lora_free(lo);
    assert_int_equal(lmf_lora_create(&c, "c_attn", 0, 8, 0, 0, &lo), LMF_ERR_ARG);
    assert_int_equal(lmf_lora_create(&c, "c_attn", 4, 8, 1.0f, 0, &lo), LMF_ERR_ARG);
    /* PEFT's default target_modules per family (finetune's default) are modules of that family */
    static const struct {
        lmf_arch arch;
        const char *want;
        int n_out; /* the module's output rows / C */
    } defaults[] = {{LMF_ARCH_LLAMA, "q_proj,v_proj", 1}, {LMF_ARCH_GPT2, "c_attn", 3}, {LMF_ARCH_PHI3, "qkv_proj", 3}};
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) {
        c = lmf_model_config_default(defaults[i].arch);
        c.n_kv_head = c.n_head;
        assert_string_equal(lmf_lora_default_targets(&c), defaults[i].want);
        assert_int_equal(lmf_lora_create(&c, lmf_lora_default_targets(&c), 4, 8, 0, 0, &lo), LMF_OK);
        assert_int_equal(lo->mod[0].out, defaults[i].n_out * c.n_embd);
        lmf_lora_free(lo);
    }
    c = lmf_model_config_default(LMF_ARCH_PHI3);
    assert_int_equal(lmf_lora_create(&c, "q_proj", 4, 8, 0, 0, &lo), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "qkv_proj,o_proj,gate_up_proj,down_proj"));
}

/* A mixture of experts: the attention is adapted; all-linear is refused with what PEFT would make of it on that
 * model (tests/reference/peft_moe_targets.py), an expert, router or shared-expert weight as such, anything else as an
 * unknown name. */
static void expect_refusal(const lmf_model_config *c, const char *targets, const char *s1, const char *s2) {
    lmf_lora *lo = (lmf_lora *)c; /* must come back NULL */
    assert_int_equal(lmf_lora_create(c, targets, 4, 8, 0, 0, &lo), LMF_ERR_ARG);
    assert_null(lo);
    const char *e = lmf_last_error();
    printf("  %s: %s\n", targets, e);
    if (!strstr(e, s1) || !strstr(e, s2)) fail_msg("'%s' does not name '%s' and '%s'", e, s1, s2);
}

static void test_moe_targets(void **s) {
    (void)s;
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.n_layer = 1, c.n_expert = 4, c.n_expert_used = 2, c.n_embd = 32, c.n_head = 4, c.n_kv_head = 2, c.ffn_dim = 24;
    lmf_lora *lo;
    assert_int_equal(lmf_lora_create(&c, "q_proj,k_proj,v_proj,o_proj", 4, 8, 0, 0, &lo), LMF_OK);
    assert_int_equal(lo->n_mod, 4);
    lmf_lora_free(lo);
    /* PEFT's all-linear on a Mixtral: q/k/v/o, the router, gate_up_proj at 2r / 2 alpha, down_proj */
    assert_int_equal(lmf_lora_create(&c, "all-linear", 4, 8, 0, 0, &lo), LMF_OK);
    assert_int_equal(lo->n_mod, 7);
    static const char *const names[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate.weight", "gate_up_proj",
                                        "down_proj"};
    static const int ranks[] = {4, 4, 4, 4, 4, 8, 4}, outs[] = {32, 0, 0, 32, 4, 48, 32}, ins[] = {32, 32, 32, 32,
                                                                                                    32, 32, 24};
    for (int k = 0; k < 7; k++) {
        assert_string_equal(lo->mod[k].name, names[k]);
        assert_int_equal(lo->mod[k].r, ranks[k]);
        assert_int_equal(lo->mod[k].in, ins[k]);
        if (outs[k]) assert_int_equal(lo->mod[k].out, outs[k]);
        assert_int_equal(lo->mod[k].n_exp, k == 5 || k == 6 ? 4 : 1);
        assert_true(lmf_lora_scale_of(lo, k) == 2.0f); /* alpha / r = 2 alpha / 2r */
    }
    /* A (E r, in) and B (E, out, r) per expert module: 4 x 8 x (32 + 48) gate_up, 4 x 4 x (24 + 32) down */
    size_t np = 0;
    for (int k = 0; k < 4; k++) np += (size_t)4 * (lo->mod[k].in + lo->mod[k].out);
    assert_int_equal(lo->n_params, np + 4 * (32 + 4) + 4 * 8 * (32 + 48) + 4 * 4 * (24 + 32));
    assert_true(lmf_lora_B(lo, 0, 5) == lmf_lora_A(lo, 0, 5) + 4 * 8 * 32);
    lmf_lora_free(lo);
    assert_int_equal(lmf_lora_create(&c, "all-linear", 4, 8, 0, 1, &lo), LMF_OK); /* rsLoRA: 2 alpha / sqrt 2r */
    assert_true(fabsf(lmf_lora_scale_of(lo, 5) - 16.0f / sqrtf(8.0f)) < 1e-6f && lmf_lora_scale_of(lo, 6) == 4.0f);
    lmf_lora_free(lo);
    /* PEFT's target_parameters spellings; explicit names keep rank r */
    assert_int_equal(lmf_lora_create(&c, "q_proj,experts.gate_up_proj,mlp.experts.down_proj,gate", 4, 8, 0, 0, &lo),
                     LMF_OK);
    assert_int_equal(lo->n_mod, 4);
    assert_int_equal(lo->mod[2].kind, LMF_LORA_EXPERTS_GATE_UP);
    assert_int_equal(lo->mod[2].r, 4);
    assert_int_equal(lo->mod[1].kind, LMF_LORA_ROUTER);
    lmf_lora_free(lo);
    assert_int_equal(lmf_lora_create(&c, "mlp.gate.weight,down_proj", 2, 8, 0, 0, &lo), LMF_OK);
    assert_int_equal(lo->n_mod, 2);
    lmf_lora_free(lo);
    /* rank_pattern on an expert parameter; not on a module */
    const char *pn[] = {"down_proj"};
    int pr[] = {6};
    float pa[] = {3.0f};
    assert_int_equal(lmf_lora_create_pattern(&c, "down_proj,q_proj", 4, 8, 0, 0, 1, pn, pr, pa, &lo), LMF_OK);
    assert_int_equal(lo->mod[1].r, 6);
    assert_true(lmf_lora_scale_of(lo, 1) == 0.5f);
    lmf_lora_free(lo);
    pn[0] = "q_proj";
    assert_int_equal(lmf_lora_create_pattern(&c, "down_proj,q_proj", 4, 8, 0, 0, 1, pn, pr, pa, &lo), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "mixture of experts' parameters only"));
    /* dropout: PEFT's ParamWrapper raises */
    assert_int_equal(lmf_lora_create(&c, "all-linear", 4, 8, 0.1f, 0, &lo), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "lora_dropout != 0"));
    assert_int_equal(lmf_lora_create(&c, "q_proj,gate.weight", 4, 8, 0.05f, 0, &lo), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "router"));
    assert_int_equal(lmf_lora_create(&c, "q_proj,v_proj", 4, 8, 0.1f, 0, &lo), LMF_OK); /* modules: as before */
    lmf_lora_free(lo);
    expect_refusal(&c, "w2", "'w2' names a weight", "llama mixture-of-experts");
    expect_refusal(&c, "gate_proj", "'gate_proj' names a weight", "one fused parameter, gate_up_proj");
    expect_refusal(&c, "c_attn", "'c_attn' is not a module", "valid: q_proj,k_proj,v_proj,o_proj,gate.weight");
    expect_refusal(&c, "self_attn.q_proj.weight", "is not a module", "all-linear");
    expect_refusal(&c, "shared_expert_gate", "'shared_expert_gate' names a weight", "llama mixture-of-experts");
    expect_refusal(&c, "shared_expert.up_proj", "'shared_expert.up_proj' names a weight", "llama mixture");
    /* Qwen3-MoE and OLMoE: PEFT 0.21.2 converts them as Mixtral (peft_moe_targets.py), so all-linear is the same */
    for (int a = 0; a < 2; a++) {
        c.arch = a ? LMF_ARCH_OLMOE : LMF_ARCH_QWEN3;
        assert_int_equal(lmf_lora_create(&c, "all-linear", 4, 8, 0, 0, &lo), LMF_OK);
        assert_int_equal(lo->n_mod, 7);
        for (int k = 0; k < 7; k++) assert_string_equal(lo->mod[k].name, names[k]);
        assert_int_equal(lo->mod[5].r, 8);
        lmf_lora_free(lo);
        assert_int_equal(lmf_lora_create(&c, "all-linear", 4, 8, 0.1f, 0, &lo), LMF_ERR_ARG); /* as PEFT raises */
        assert_non_null(strstr(lmf_last_error(), "lora_dropout != 0"));
    }
    assert_int_equal(lmf_lora_create(&c, "gate_up_proj,down_proj", 4, 8, 0, 0, &lo), LMF_OK);
    lmf_lora_free(lo);
    /* Qwen2-MoE: PEFT's all-linear is its nn.Linear modules, the shared expert's among them, dropout allowed; a
     * bare gate_proj / up_proj / down_proj names the shared expert's (PEFT's suffix match: the routed experts are
     * parameters, not modules), experts.down_proj the experts' parameter */
    c.arch = LMF_ARCH_QWEN2, c.shared_ffn_dim = 16, c.shared_gate = 1;
    assert_int_equal(lmf_lora_create(&c, "all-linear", 4, 8, 0.1f, 0, &lo), LMF_OK);
    static const char *const qn[] = {"q_proj", "k_proj", "v_proj", "o_proj", "shared_expert.gate_proj",
                                     "shared_expert.up_proj", "shared_expert.down_proj", "shared_expert_gate"};
    static const int qin[] = {32, 32, 32, 32, 32, 32, 16, 32}, qout[] = {32, 16, 16, 32, 16, 16, 32, 1};
    assert_int_equal(lo->n_mod, 8);
    for (int k = 0; k < 8; k++) {
        assert_string_equal(lo->mod[k].name, qn[k]);
        assert_int_equal(lo->mod[k].in, qin[k]);
        assert_int_equal(lo->mod[k].out, qout[k]);
        assert_int_equal(lo->mod[k].kind, k < 7 ? LMF_LORA_LINEAR : LMF_LORA_SHARED_GATE);
        assert_int_equal(lo->mod[k].r, 4);
    }
    assert_int_equal(lmf_lora_t_floats(lo, 10), 8 * 10 * 4); /* every module saves its values, the gate too */
    lmf_lora_free(lo);
    assert_int_equal(lmf_lora_create(&c, "down_proj,experts.down_proj,mlp.shared_expert.gate_proj,"
                                         "shared_expert.up_proj,mlp.shared_expert_gate,gate",
                                     4, 8, 0, 0, &lo), LMF_OK);
    static const char *const mixed[] = {"shared_expert.gate_proj", "shared_expert.up_proj", "shared_expert.down_proj",
                                        "shared_expert_gate", "gate.weight", "down_proj"};
    assert_int_equal(lo->n_mod, 6);
    for (int k = 0; k < 6; k++) assert_string_equal(lo->mod[k].name, mixed[k]);
    assert_int_equal(lo->mod[5].kind, LMF_LORA_EXPERTS_DOWN);
    lmf_lora_free(lo);
    assert_int_equal(lmf_lora_create(&c, "gate_proj,up_proj,down_proj", 4, 8, 0.1f, 0, &lo), LMF_OK); /* modules */
    lmf_lora_free(lo);
    assert_int_equal(lmf_lora_create(&c, "experts.down_proj,q_proj", 4, 8, 0.1f, 0, &lo), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "ParamWrapper"));
    pn[0] = "shared_expert_gate";
    assert_int_equal(lmf_lora_create_pattern(&c, "shared_expert_gate", 4, 8, 0, 0, 1, pn, pr, pa, &lo), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "mixture of experts' parameters only"));
    c.arch = LMF_ARCH_LLAMA, c.shared_gate = 0; /* a llama MoE with a shared expert: no HF model defines all-linear */
    expect_refusal(&c, "all-linear", "no Hugging Face model", "shared expert");
    assert_int_equal(lmf_lora_create(&c, "gate_proj,down_proj,experts.down_proj", 4, 8, 0, 0, &lo), LMF_OK);
    assert_int_equal(lo->n_mod, 3); /* no gate on it: shared_expert_gate is refused */
    lmf_lora_free(lo);
    expect_refusal(&c, "shared_expert_gate", "'shared_expert_gate' names a weight", "llama mixture-of-experts");
    c.arch = LMF_ARCH_QWEN2;
    c.n_expert = 0, c.shared_ffn_dim = 0, c.shared_gate = 0; /* dense qwen2: all-linear is every linear */
    assert_int_equal(lmf_lora_create(&c, "all-linear", 4, 8, 0, 0, &lo), LMF_OK);
    assert_int_equal(lo->n_mod, 7);
    lmf_lora_free(lo);
}

/* Adapters on a mixture of experts' router and experts (PEFT's all-linear): a fresh adapter leaves the model
 * unchanged, every A_e / B_e / router gradient equals finite differences (the frozen experts' input gradients
 * through the grouped products, the routing weights' through the router), with renormalised and raw top-k. */
static void run_moe(int norm_topk, int rslora) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.vocab_size = 61, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 24, c.n_head = 4, c.n_kv_head = 2;
    c.ffn_dim = 20, c.n_expert = 4, c.n_expert_used = 2, c.norm_topk_prob = norm_topk, c.tied_embeddings = 0;
    lmf_model *full = lmf_model_create(&c, B, T, 0);
    assert_non_null(full);
    lmf_model_init_weights(full, 5);
    lmf_lora *lo;
    /* rsLoRA's alpha keeps the scale near 2: a larger one lets the finite differences' steps flip a top-k choice */
    if (lmf_lora_create(&c, "all-linear", 3, rslora ? 3.5f : 6.0f, 0.0f, rslora, &lo) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(lo->n_mod, 7);
    lmf_model *m = fresh_lora_model(full, lo, c.vocab_size);
    check_grads(norm_topk ? "mixtral all-linear (experts, router)" : "MoE raw top-k, rsLoRA", m, lo);
    /* the router's adapter, entry by entry (check_grads' sample may miss its few values) */
    int32_t tk[B * T], tt[B * T];
    data(c.vocab_size, tk, tt);
    double maxg = 0;
    for (size_t i = 0; i < lo->n_params; i++) maxg = fmax(maxg, fabs(lo->grads[i]));
    for (int L = 0; L < lo->n_layer; L++) {
        size_t a0 = (size_t)(lmf_lora_A(lo, L, 4) - lo->params), n = (size_t)lo->r * (24 + 4);
        for (size_t i = a0; i < a0 + n; i += 7) {
            float p0 = lo->params[i], h = 3e-3f; /* 1e-2 flips a top-k choice here */
            lo->params[i] = p0 + h;
            double lp = loss_of(m);
            lo->params[i] = p0 - h;
            double lm = loss_of(m);
            lo->params[i] = p0;
            double fd = (lp - lm) / (2.0 * h);
            if (fabs(fd - lo->grads[i]) > 2e-2 * maxg || lo->grads[i] == 0.0f)
                fail_msg("router adapter, layer %d entry %zu: analytic %.6g, finite difference %.6g", L, i - a0,
                         lo->grads[i], fd);
        }
    }
    /* every expert's A and B got a gradient (each expert was chosen by some token here) */
    for (int L = 0; L < lo->n_layer; L++)
        for (int k = 5; k < 7; k++)
            for (int e = 0; e < 4; e++) {
                const lmf_lora_module *md = &lo->mod[k];
                const float *dA = lmf_lora_dA(lo, L, k) + (size_t)e * md->r * md->in;
                const float *dB = lmf_lora_dB(lo, L, k) + (size_t)e * md->out * md->r;
                double na = 0, nb = 0;
                for (int i = 0; i < md->r * md->in; i++) na += fabs(dA[i]);
                for (int i = 0; i < md->r * md->out; i++) nb += fabs(dB[i]);
                if (!(na > 0 && nb > 0)) fail_msg("layer %d %s expert %d: no gradient", L, md->name, e);
            }
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_model_free(full);
}

/* Qwen2-MoE's shared expert under PEFT's all-linear (q/k/v/o, the shared expert's gate_proj, up_proj, down_proj
 * and shared_expert_gate): a fresh adapter leaves the model unchanged; gradients of every A and B against finite
 * differences, with dropout 0.2 (one step's mask: the same in forward and backward) and without; the gate's
 * adapter entry by entry (the sample may miss its few values). Then the unmerged adapter at inference: prefill,
 * decode and the merged model give the training forward's logits (dropout off). */
static void run_shared(float dropout) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_QWEN2);
    c.vocab_size = 61, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 24, c.n_head = 4, c.n_kv_head = 2;
    c.ffn_dim = 12, c.n_expert = 4, c.n_expert_used = 2, c.norm_topk_prob = 0, c.tied_embeddings = 0;
    c.shared_ffn_dim = 28, c.shared_gate = 1; /* wider than C: the down's dropout and scratch are Fs wide */
    lmf_model *full = lmf_model_create(&c, B, T, 0);
    assert_non_null(full);
    lmf_model_init_weights(full, 5);
    lmf_lora *lo;
    if (lmf_lora_create(&c, "all-linear", 3, 6.0f, dropout, 0, &lo) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(lo->n_mod, 8);
    lmf_model *m = fresh_lora_model(full, lo, c.vocab_size);
    lo->step = 3;
    FD_H = 3e-3f; /* at 1e-2 the second-order term reaches 1.4e-2 of the largest gradient here (3e-3: 1.4e-3) */
    char what[96];
    snprintf(what, sizeof what, "Qwen2-MoE all-linear (shared expert, gate), dropout %g", dropout);
    check_grads(what, m, lo);
    FD_H = 1e-2f;
    double maxg = 0;
    for (size_t i = 0; i < lo->n_params; i++) maxg = fmax(maxg, fabs(lo->grads[i]));
    for (int L = 0; L < lo->n_layer; L++)
        for (int k = 4; k < 8; k++) { /* the shared expert's modules: a few entries of each A and B, all of the gate */
            size_t a0 = (size_t)(lmf_lora_A(lo, L, k) - lo->params), n = (size_t)lo->r * (lo->mod[k].in + lo->mod[k].out);
            for (size_t i = a0; i < a0 + n; i += k == 7 ? 1 : 11) {
                float p0 = lo->params[i], h = 3e-3f;
                lo->params[i] = p0 + h;
                double lp = loss_of(m);
                lo->params[i] = p0 - h;
                double lm = loss_of(m);
                lo->params[i] = p0;
                double fd = (lp - lm) / (2.0 * h);
                if (fabs(fd - lo->grads[i]) > 1e-2 * maxg || lo->grads[i] == 0.0f)
                    fail_msg("layer %d %s entry %zu: analytic %.6g, finite difference %.6g", L, lo->mod[k].name,
                             i - a0, lo->grads[i], fd);
            }
        }
    if (dropout == 0.0f) { /* inference, unmerged and merged */
        int32_t tok[T];
        for (int i = 0; i < T; i++) tok[i] = (int32_t)((i * 29 + 5) % c.vocab_size);
        lmf_model_forward(m, tok, NULL, 1, T);
        const float *ref = lmf_model_logits(m);
        lmf_session *se;
        const float *lg;
        assert_int_equal(lmf_session_create(lmf_model_weights(full), 16, &se), LMF_OK);
        lmf_session_set_lora(se, lo);
        assert_int_equal(lmf_session_eval(se, tok, T, 1, &lg), LMF_OK);
        double ep = rel_err(lg, ref, (long)T * c.vocab_size), ed = 0;
        lmf_session_rewind(se, 0);
        for (int t = 0; t < T; t++) {
            assert_int_equal(lmf_session_eval(se, tok + t, 1, 0, &lg), LMF_OK);
            ed = fmax(ed, rel_err(lg, ref + (size_t)t * c.vocab_size, c.vocab_size));
        }
        lmf_session_free(se);
        lmf_weights *mg;
        if (lmf_lora_merge(lmf_model_weights(full), lo, &mg) != LMF_OK) fail_msg("%s", lmf_last_error());
        assert_int_equal(lmf_session_create(mg, 16, &se), LMF_OK);
        assert_int_equal(lmf_session_eval(se, tok, T, 1, &lg), LMF_OK);
        double em = rel_err(lg, ref, (long)T * c.vocab_size);
        lmf_session_free(se);
        lmf_lora_merged_free(mg);
        printf("shared expert adapters: prefill %.2g, decode %.2g, merged %.2g of the training forward\n", ep, ed, em);
        if (!(ep < 1e-5 && ed < 2e-3 && em < 1e-5)) fail_msg("inference with the shared expert's adapters");
    }
    lmf_model_free(m);
    lmf_lora_free(lo);
    lmf_model_free(full);
}

static void test_moe_shared(void **s) { run_shared(0.0f); }
static void test_moe_shared_dropout(void **s) { run_shared(0.2f); }

/* The frozen base reads none of its products' inputs back: only the inputs some adapter reads stay per layer (the
 * others one layer's scratch), in fp32 and in bf16, and the gradients hold (the FD checks above run q,v and
 * all-linear). PEFT's default q_proj,v_proj keeps ln1 alone: atty, ln2 and fcact of L - 1 layers fewer. */
static void test_kept_inputs(void **s) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.vocab_size = 61, c.max_seq_len = 16, c.n_layer = 3, c.n_embd = 24, c.n_head = 4, c.n_kv_head = 2, c.ffn_dim = 40;
    lmf_model *full = lmf_model_create(&c, B, T, 0);
    lmf_model_init_weights(full, 5);
    static const struct {
        const char *targets;
        int kept;
    } cases[] = {{"all-linear", LMF_KEEP_ALL}, {"q_proj,v_proj", LMF_KEEP_LN1}, {"o_proj", LMF_KEEP_ATTY},
                 {"up_proj,down_proj", LMF_KEEP_LN2 | LMF_KEEP_FCACT}};
    size_t bytes[4][2];
    for (int i = 0; i < 4; i++)
        for (int bf16 = 0; bf16 < 2; bf16++) {
            lmf_lora *lo;
            assert_int_equal(lmf_lora_create(&c, cases[i].targets, 2, 4.0f, 0.0f, 0, &lo), LMF_OK);
            lmf_model *m;
            assert_int_equal(lmf_model_create_lora(lmf_model_weights(full), lo, B, T, &m), LMF_OK);
            lmf_model_set_bf16(m, bf16);
            assert_int_equal(m->acts.kept, cases[i].kept);
            bytes[i][bf16] = m->inputs_bytes;
            lmf_model_free(m);
            lmf_lora_free(lo);
        }
    /* atty (QD 24), ln2 (C 24) and fcact (F 40) of the 2 layers q,v leaves unkept (N x each: whole 64-byte lines) */
    size_t saved = 2 * (size_t)(B * T) * (24 + 24 + 40) * sizeof(float);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        printf("%s: LoRA on q_proj,v_proj keeps %zu bytes of inputs fewer than all-linear (%zu)\n",
               bf16 ? "bf16" : "fp32", bytes[0][bf16] - bytes[1][bf16], bytes[0][bf16]);
        assert_true(bytes[0][bf16] - bytes[1][bf16] == saved);
    }
    lmf_model_free(full);
}

static void test_moe_experts(void **s) { run_moe(1, 0); }
static void test_moe_experts_raw_rslora(void **s) { run_moe(0, 1); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_all_linear), cmocka_unit_test(test_llama_qv), cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_phi3), cmocka_unit_test(test_gemma3), cmocka_unit_test(test_gemma2),
        cmocka_unit_test(test_quantized_base), cmocka_unit_test(test_bf16_base),
        cmocka_unit_test(test_packed_llama),   cmocka_unit_test(test_packed_gpt2),
        cmocka_unit_test(test_dropout),        cmocka_unit_test(test_dropout_rates),
        cmocka_unit_test(test_targets),        cmocka_unit_test(test_moe_targets),
        cmocka_unit_test(test_moe_experts),    cmocka_unit_test(test_moe_experts_raw_rslora),
        cmocka_unit_test(test_moe_shared),     cmocka_unit_test(test_moe_shared_dropout),
        cmocka_unit_test(test_adamw_trains_adapters_only), cmocka_unit_test(test_inference_unmerged),
        cmocka_unit_test(test_kept_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
