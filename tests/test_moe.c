/* test_moe.c — mixture of experts (src/model/moe.h) against its float64 PyTorch twin (fixtures from
 * tests/reference/make_moe_fixtures.py, checked there against transformers' Mixtral; see tests/reference/README.md).
 *
 * Training, two cases of a tiny llama-family MoE (4 experts, top-2): Mixtral's routing (renormalised, dropless) and
 * un-renormalised top-2 with a capacity factor of 1 (slots dropped) and a shared expert. Each: logits, the
 * cross-entropy, the load-balancing and z losses, every expert's kept slots, the gradient of every parameter tensor
 * (router, experts, shared expert, attention, norms, embeddings) of ce + 0.1 aux + 0.01 z, and 10 AdamW steps (every
 * loss, every final parameter). fp32 here against float64 there: within 1e-4 of each tensor's largest value.
 * Inference: the prefill and decode executors (one sequence, two side by side) on the same weights give the training
 * forward's logits. Formats: transformers' Mixtral folders (both layouts) give its logits; GGUF and HF export round
 * trips; hostile folders and files, bad configs refused by name; lmf_model_bytes counts the MoE rows. */
#include "test_util.h"

#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/export.h"
#include "model/infer.h"
#include "model/model.h"
#include "model/moe.h"
#include "kernels/quant.h"
#include "train/optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/moe/"
#define TOL 1e-4
#define TWIN_OWN_TABLE /* compare_table and edited_folder of its own */
#include "twin_fixture.h"

/* The twin's model: the fixture's metadata over the llama family. */
static lmf_model_config config_of(const lmf_safetensors *st) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.vocab_size = (int)meta(st, "V"), c.n_embd = (int)meta(st, "C"), c.n_layer = (int)meta(st, "L");
    c.n_head = (int)meta(st, "n_head"), c.n_kv_head = (int)meta(st, "n_kv_head"), c.ffn_dim = (int)meta(st, "ffn_dim");
    c.max_seq_len = 16, c.norm_eps = (float)meta(st, "norm_eps"), c.rope_theta = (float)meta(st, "rope_theta");
    c.tied_embeddings = 0;
    c.n_expert = (int)meta(st, "n_expert"), c.n_expert_used = (int)meta(st, "n_expert_used");
    c.shared_ffn_dim = (int)meta(st, "shared_ffn_dim"), c.norm_topk_prob = (int)meta(st, "norm_topk_prob");
    c.capacity_factor = (float)meta(st, "capacity_factor");
    c.router_aux_coef = (float)meta(st, "router_aux_coef"), c.router_z_coef = (float)meta(st, "router_z_coef");
    return c;
}

/* Every tensor of the table (flat buffer buf) against prefix.<name>; each of the fixture's prefix tensors is one. */
static double compare_table(const lmf_model *m, const float *buf, const lmf_safetensors *st, const char *prefix) {
    double worst = 0;
    int n = 0, want_n = 0;
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        char key[64];
        snprintf(key, sizeof key, "%s.%s", prefix, lmf_param_names[i]);
        const lmf_st_tensor *t = need(st, key);
        assert_int_equal(t->nbytes, m->param_sizes[i] * sizeof(float));
        double e = rel_err(buf + m->param_offsets[i], (const float *)t->data, (long)m->param_sizes[i]);
        if (!(e <= TOL)) fail_msg("%s: relative error %.3g > %g", key, e, TOL);
        if (e > worst) worst = e;
        n++;
    }
    for (int i = 0; i < st->n_tensors; i++) want_n += !strncmp(st->tensors[i].name, prefix, strlen(prefix));
    assert_int_equal(n, want_n);
    return worst;
}

static lmf_model *model_of(const lmf_safetensors *st, int training) {
    lmf_model_config c = config_of(st);
    lmf_model *m = lmf_model_create(&c, 2, 8, training);
    if (!m) fail_msg("%s", lmf_last_error());
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        char key[64];
        snprintf(key, sizeof key, "params.%s", lmf_param_names[i]);
        const lmf_st_tensor *t = need(st, key);
        assert_int_equal(t->nbytes, m->param_sizes[i] * sizeof(float));
        memcpy(m->ptr[i], t->data, t->nbytes);
    }
    return m;
}

static void run(const char *name) {
    char path[512];
    snprintf(path, sizeof path, FIX "%s.safetensors", name);
    lmf_safetensors *st;
    if (lmf_safetensors_open(path, &st) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model *m = model_of(st, 1);
    const lmf_model_config *c = &m->cfg;
    int B = 2, T = 8, E = c->n_expert;
    const int32_t *tok = need(st, "tokens")->data, *tg = need(st, "targets")->data;

    lmf_model_zero_grad(m);
    float ce = lmf_model_forward(m, tok, tg, B, T);
    double e = rel_err(lmf_model_logits(m), need(st, "logits")->data, (long)B * T * c->vocab_size);
    if (!(e <= TOL)) fail_msg("%s logits: relative error %.3g", name, e);
    const lmf_moe_stats *ms = lmf_model_moe_stats(m);
    near(ce, ((const float *)need(st, "ce")->data)[0], "cross-entropy");
    near(ms->aux, ((const float *)need(st, "aux")->data)[0], "load-balancing loss");
    near(ms->z, ((const float *)need(st, "z")->data)[0], "z-loss");
    const float *kept = need(st, "kept")->data;
    double dropped = 0;
    for (int l = 0; l < c->n_layer; l++) {
        lmf_moe_stats_view v = lmf_moe_stats_of(c, B * T, m->moe + l * m->moe_stride);
        for (int x = 0; x < E; x++) {
            if (v.kept[x] != kept[l * E + x])
                fail_msg("%s layer %d expert %d ran %g slots, PyTorch %g", name, l, x, v.kept[x], kept[l * E + x]);
            dropped += v.chosen[x] - v.kept[x];
        }
    }
    assert_true(dropped == ms->dropped && dropped == meta(st, "dropped"));
    double load = 0;
    for (int x = 0; x < E; x++) load += ms->load[x];
    assert_true(fabs(load - 1.0) < 1e-9);

    lmf_model_backward(m, 1.0f);
    double eg = compare_table(m, m->grads, st, "grad");

    const float *losses = need(st, "train.losses")->data;
    lmf_adamw opt;
    lmf_adamw_init(&opt, lmf_model_num_params(m));
    lmf_adamw_hparams hp = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 0.0f};
    for (int step = 0; step < 10; step++) {
        lmf_model_zero_grad(m);
        double ls = lmf_model_forward(m, tok, tg, B, T);
        ls += c->router_aux_coef * ms->aux + c->router_z_coef * ms->z;
        char what[64];
        snprintf(what, sizeof what, "%s step %d loss", name, step);
        near(ls, losses[step], what);
        lmf_model_backward(m, 1.0f);
        lmf_adamw_apply(&opt, m, &hp, 1e-2f, lmf_grad_norm(m));
    }
    double ef = compare_table(m, m->params, st, "final");
    printf("%s: logits %.2g, ce / aux / z, %g dropped, every gradient %.2g, 10 AdamW steps %.2g of PyTorch's\n", name,
           e, dropped, eg, ef);
    lmf_adamw_free(&opt);
    lmf_model_free(m);
    lmf_safetensors_close(st);
}

static void test_dropless(void **s) { run("dropless"); }
static void test_capacity(void **s) { run("capacity"); }

/* The inference executor (prefill over the KV cache) on the model's own weights: the training forward's logits. */
static void test_prefill_matches_training(void **s) {
    lmf_safetensors *st;
    if (lmf_safetensors_open(FIX "capacity.safetensors", &st) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model *m = model_of(st, 0);
    m->cfg.capacity_factor = 0.0f; /* inference never drops: compare with a dropless training forward */
    m->w->cfg.capacity_factor = 0.0f;
    const int32_t *tok = need(st, "tokens")->data;
    int T = 8, V = m->cfg.vocab_size;
    lmf_model_forward(m, tok, NULL, 1, T);
    lmf_session *ss;
    assert_int_equal(lmf_session_create(lmf_model_weights(m), 16, &ss), LMF_OK);
    const float *out;
    /* the first 5 tokens as one prefill, then the rest one by one (decode-sized steps) */
    assert_int_equal(lmf_session_eval(ss, tok, 5, 1, &out), LMF_OK);
    assert_close(out, lmf_model_logits(m), 5 * V, 1e-5, "prefill logits");
    for (int t = 5; t < T; t++) {
        assert_int_equal(lmf_session_eval(ss, tok + t, 1, 0, &out), LMF_OK);
        assert_close(out, lmf_model_logits(m) + (size_t)t * V, V, 1e-5, "decode logits");
    }
    lmf_session_free(ss);
    lmf_model_free(m);
    lmf_safetensors_close(st);
}

/* Logits of the model in folder dir (the fixture's tokens, one prefill per row) against transformers' fp32 ones. */
static void hf_logits(const char *dir, const lmf_safetensors *st, double tol) {
    lmf_weights *w;
    if (lmf_weights_load(dir, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(w->cfg.n_expert, 4);
    assert_int_equal(w->cfg.n_expert_used, 2);
    assert_true(w->cfg.norm_topk_prob);
    const int32_t *tok = need(st, "tokens")->data;
    const float *want = need(st, "mixtral_logits")->data;
    int T = 8, V = w->cfg.vocab_size;
    float *out = malloc(sizeof(float) * 2 * (size_t)T * V);
    logits_of(w, tok, out);
    for (int b = 0; b < 2; b++) /* each row against its own (as before: the relative error is per row) */
        assert_close(out + (size_t)b * T * V, want + (size_t)b * T * V, T * V, tol, dir);
    free(out);
    lmf_weights_free(w);
}

/* transformers' MixtralForCausalLM saved by its save_pretrained (block_sparse_moe.experts.N.w1/w2/w3), and the same
 * weights rewritten in transformers 5's fused layout (mlp.experts.gate_up_proj / down_proj, mlp.gate): the logits
 * transformers computes from that folder in fp32. */
static void test_hf_mixtral(void **s) {
    lmf_safetensors *st, *src;
    if (lmf_safetensors_open(FIX "dropless.safetensors", &st) != LMF_OK) fail_msg("%s", lmf_last_error());
    hf_logits(FIX "mixtral", st, 1e-5);
    /* the folder as a training model (lmf_model_from_weights: what full fine-tuning starts from): the same logits */
    lmf_weights *w;
    lmf_model *m;
    if (lmf_weights_load(FIX "mixtral", &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    if (lmf_model_from_weights(w, 2, 8, 0, &m) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model_forward(m, need(st, "tokens")->data, NULL, 2, 8);
    assert_close(lmf_model_logits(m), need(st, "mixtral_logits")->data, 2 * 8 * 48, 1e-5, "training model");
    lmf_model_free(m);
    lmf_weights_free(w);

    if (lmf_safetensors_open(FIX "mixtral/model.safetensors", &src) != LMF_OK) fail_msg("%s", lmf_last_error());
    char dir[128], path[256], names[6][96];
    snprintf(dir, sizeof dir, "/tmp/lmf_moe_fused_%d", (int)getpid());
    assert_int_equal(mkdir(dir, 0755), 0);
    int E = 4, F = 16, C = 32, n = 0;
    lmf_st_out out[64];
    float *fused[2][2];
    for (int i = 0; i < src->n_tensors; i++) { /* everything but the MoE tensors as it is */
        const lmf_st_tensor *t = &src->tensors[i];
        if (strstr(t->name, "block_sparse_moe")) continue;
        out[n] = (lmf_st_out){t->name, t->dtype, t->ndim, {t->shape[0], t->shape[1]}, t->data, NULL, NULL};
        n++;
    }
    for (int l = 0; l < 2; l++) {
        char key[128];
        fused[l][0] = malloc(sizeof(float) * (size_t)E * 2 * F * C);
        fused[l][1] = malloc(sizeof(float) * (size_t)E * C * F);
        for (int e = 0; e < E; e++)
            for (int k = 0; k < 3; k++) { /* w1 gate, w3 up -> gate_up_proj[e]; w2 down -> down_proj[e] */
                static const char *const wn[3] = {"w1", "w3", "w2"};
                snprintf(key, sizeof key, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, e, wn[k]);
                const lmf_st_tensor *t = need(src, key);
                float *dst = k < 2 ? fused[l][0] + ((size_t)e * 2 + k) * F * C : fused[l][1] + (size_t)e * C * F;
                memcpy(dst, t->data, t->nbytes);
            }
        snprintf(names[3 * l], 96, "model.layers.%d.mlp.experts.gate_up_proj", l);
        snprintf(names[3 * l + 1], 96, "model.layers.%d.mlp.experts.down_proj", l);
        snprintf(names[3 * l + 2], 96, "model.layers.%d.mlp.gate.weight", l);
        snprintf(key, sizeof key, "model.layers.%d.block_sparse_moe.gate.weight", l);
        out[n++] = (lmf_st_out){names[3 * l], LMF_DT_F32, 3, {E, 2 * F, C}, fused[l][0], NULL, NULL};
        out[n++] = (lmf_st_out){names[3 * l + 1], LMF_DT_F32, 3, {E, C, F}, fused[l][1], NULL, NULL};
        out[n++] = (lmf_st_out){names[3 * l + 2], LMF_DT_F32, 2, {E, C}, need(src, key)->data, NULL, NULL};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(lmf_safetensors_write(path, out, n, NULL, 0), LMF_OK);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/", FIX "mixtral", dir);
    assert_int_equal(system(cmd), 0);
    hf_logits(dir, st, 1e-5);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    for (int l = 0; l < 2; l++) free(fused[l][0]), free(fused[l][1]);
    lmf_safetensors_close(src);
    lmf_safetensors_close(st);
}


/* w written by the GGUF exporter as `type` and read back: its logits against ref; returns the relative error. */
static double gguf_roundtrip(const lmf_weights *w, uint32_t type, const int32_t *tok, const float *ref) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/lmf_moe_%d.gguf", (int)getpid());
    if (lmf_export_gguf(w, path, type, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights *g;
    if (lmf_weights_load(path, &g) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(g->cfg.n_expert, w->cfg.n_expert);
    assert_int_equal(g->cfg.n_expert_used, w->cfg.n_expert_used);
    assert_int_equal(g->cfg.shared_ffn_dim, w->cfg.shared_ffn_dim);
    assert_int_equal(g->cfg.norm_topk_prob, w->cfg.norm_topk_prob);
    if (g->cfg.n_expert) {
        assert_int_equal(g->layers[0].experts[0].type, type);     /* the experts are quantized */
        assert_int_equal(g->layers[0].router.type, LMF_GGML_F32); /* the router is not (llama.cpp's choice) */
    }
    size_t n = (size_t)2 * 8 * w->cfg.vocab_size;
    float *lg = malloc(sizeof(float) * n);
    logits_of(g, tok, lg);
    double e = rel_err(lg, ref, (long)n);
    free(lg);
    lmf_weights_free(g);
    unlink(path);
    return e;
}

/* The Mixtral folder through our GGUF exporter (F32: transformers' logits; Q8_0: within twice the error Q8_0 gives
 * the dense model of the same shape and values) and our HF exporter; the twin's capacity model (shared expert, top-k
 * weights not renormalised) through GGUF, which keeps both, while the HF exporter refuses them (Mixtral cannot say
 * them). */
static void test_export_roundtrip(void **s) {
    lmf_safetensors *st;
    if (lmf_safetensors_open(FIX "dropless.safetensors", &st) != LMF_OK) fail_msg("%s", lmf_last_error());
    const int32_t *tok = need(st, "tokens")->data;
    const float *want = need(st, "mixtral_logits")->data;
    lmf_weights *w;
    if (lmf_weights_load(FIX "mixtral", &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    double ef = gguf_roundtrip(w, LMF_GGML_F32, tok, want), eq = gguf_roundtrip(w, LMF_GGML_Q8_0, tok, want);
    if (!(ef <= 1e-5)) fail_msg("GGUF F32 export: logits off by %.3g", ef);
    /* the dense model of the same shape and values (each layer's FFN = its expert 0), through the same Q8_0 export:
     * the error Q8_0 brings to these weights anyway */
    lmf_weights *d = lmf_weights_new();
    d->cfg = w->cfg, d->cfg.n_expert = d->cfg.n_expert_used = d->cfg.norm_topk_prob = 0;
    d->tok_emb = w->tok_emb, d->lm_head = w->lm_head, d->out_norm_w = w->out_norm_w;
    d->layers = calloc((size_t)w->cfg.n_layer, sizeof *d->layers);
    for (int l = 0; l < w->cfg.n_layer; l++) {
        d->layers[l] = w->layers[l];
        d->layers[l].w_gate = w->layers[l].experts[0], d->layers[l].w_up = w->layers[l].experts[1];
        d->layers[l].w_down = w->layers[l].experts[2], d->layers[l].experts = NULL;
    }
    size_t nv = (size_t)2 * 8 * w->cfg.vocab_size;
    float *dref = malloc(sizeof(float) * nv);
    logits_of(d, tok, dref);
    double edq = gguf_roundtrip(d, LMF_GGML_Q8_0, tok, dref);
    free(dref);
    lmf_weights_free(d);
    if (!(eq <= 2 * edq)) fail_msg("GGUF Q8_0 export: logits off by %.3g, the dense model's by %.3g", eq, edq);
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/lmf_moe_hf_%d", (int)getpid());
    if (lmf_export_safetensors(w, dir, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    hf_logits(dir, st, 1e-5);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    lmf_weights_free(w);
    lmf_safetensors_close(st);

    if (lmf_safetensors_open(FIX "capacity.safetensors", &st) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model *m = model_of(st, 0);
    m->cfg.capacity_factor = m->w->cfg.capacity_factor = 0.0f; /* inference never drops */
    size_t n = (size_t)2 * 8 * m->cfg.vocab_size;
    float *ref = malloc(sizeof(float) * n);
    logits_of(m->w, need(st, "tokens")->data, ref);
    double ec = gguf_roundtrip(m->w, LMF_GGML_F32, need(st, "tokens")->data, ref);
    if (!(ec <= 1e-5)) fail_msg("GGUF export of a shared expert: logits off by %.3g", ec);
    assert_int_equal(lmf_export_safetensors(m->w, dir, LMF_GGML_F32), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "shared expert"));
    printf("exports: GGUF F32 %.2g, Q8_0 %.2g of transformers' logits (the dense model's Q8_0: %.2g); shared expert "
           "through GGUF %.2g\n", ef, eq, edq, ec);
    free(ref);
    lmf_model_free(m);
    lmf_safetensors_close(st);
}

static void test_batch_decode(void **s) {
    lmf_safetensors *st;
    if (lmf_safetensors_open(FIX "capacity.safetensors", &st) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model *m = model_of(st, 0);
    m->cfg.capacity_factor = m->w->cfg.capacity_factor = 0.0f;
    const int32_t *tok = need(st, "tokens")->data;
    lmf_model_forward(m, tok, NULL, 2, 8);
    batch_decode(m->w, m, tok, 1e-5);
    char path[128];
    snprintf(path, sizeof path, "/tmp/lmf_moe_bd_%d.gguf", (int)getpid());
    if (lmf_export_gguf(m->w, path, LMF_GGML_Q8_0, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights *q;
    if (lmf_weights_load(path, &q) != LMF_OK) fail_msg("%s", lmf_last_error());
    batch_decode(q, m, tok, 5e-2);
    /* the experts' gate rows (16 x 32) were read in the R16 decode layout, repacked once as the dense matrices are */
    assert_true(lmf_r16_supported(q->layers[0].experts[0].type, 16, 32) && q->layers[0].experts[0].r16);
    lmf_weights_free(q);
    unlink(path);
    lmf_model_free(m);
    lmf_safetensors_close(st);
}

/* Writes FIX mixtral's config.json with `from` replaced by `to` into dir (holding the fixture's weights). */
static void edited_folder(const char *dir, const char *from, const char *to) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp %s/model.safetensors %s/ && sed 's/%s/%s/' "
             "%s/config.json > %s/config.json", dir, dir, FIX "mixtral", dir, from, to, FIX "mixtral", dir);
    assert_int_equal(system(cmd), 0);
}

/* Hostile MoE folders and files are refused by name, never a crash. */
static void test_bad_files(void **s) {
    static const struct {
        const char *from, *to, *want;
    } cases[] = {
        {"\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 5", "n_expert_used"},
        {"\"num_local_experts\": 4", "\"num_local_experts\": 300", "n_expert"},
        {"\"num_local_experts\": 4", "\"num_local_experts\": 5", "gate.weight has shape [4, 32], expected [5, 32]"},
        {"\"intermediate_size\": 16", "\"intermediate_size\": 32", "w1.weight has shape"},
        {"\"sliding_window\": null", "\"sliding_window\": 0.5", "\"sliding_window\" must be a positive whole number"},
        {"\"router_aux_loss_coef\": 0.001", "\"router_aux_loss_coef\": -1", "router_aux_loss_coef"},
    };
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/lmf_moe_bad_%d", (int)getpid());
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        edited_folder(dir, cases[i].from, cases[i].to);
        lmf_weights *w = NULL;
        assert_int_equal(lmf_weights_load(dir, &w), LMF_ERR_FORMAT);
        if (!strstr(lmf_last_error(), cases[i].want))
            fail_msg("case %zu: expected '%s' in: %s", i, cases[i].want, lmf_last_error());
        assert_null(w);
    }
    /* a GGUF whose expert_count (patched in the file: 4 -> 5) disagrees with its tensors */
    lmf_weights *w;
    if (lmf_weights_load(FIX "mixtral", &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    char path[160];
    snprintf(path, sizeof path, "%s.gguf", dir);
    assert_int_equal(lmf_export_gguf(w, path, LMF_GGML_F32, NULL), LMF_OK);
    lmf_weights_free(w);
    gguf_patch_u32(path, "llama.expert_count", 4, 5);
    lmf_weights *g = NULL;
    assert_int_equal(lmf_weights_load(path, &g), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "ffn_gate_inp"));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, path);
    assert_int_equal(system(cmd), 0);
}

/* lmf_model_bytes (what memory checks use before allocating) counts the MoE rows a model allocates. */
static void test_model_bytes(void **s) {
    lmf_safetensors *st;
    if (lmf_safetensors_open(FIX "capacity.safetensors", &st) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model_config c = config_of(st);
    for (int training = 0; training < 2; training++) {
        lmf_model *m = lmf_model_create(&c, 2, 8, training);
        assert_non_null(m);
        double have = (double)m->num_params * sizeof(float) * (training ? 2 : 1) + (double)m->work_bytes +
                      2.0 * 16 * sizeof(int32_t), want = lmf_model_bytes(&c, 2, 8, training);
        if (!(fabs(want - have) <= 0.05 * have))
            fail_msg("training %d: estimate %.0f, allocated %.0f", training, want, have);
        printf("training %d: lmf_model_bytes %.0f, allocated %.0f\n", training, want, have);
        lmf_model_free(m);
    }
    lmf_safetensors_close(st);
}

static void test_config_errors(void **s) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.n_expert = 8, c.n_expert_used = 9;
    assert_int_equal(lmf_model_config_validate(&c), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "n_expert_used"));
    c.n_expert_used = 2, c.capacity_factor = -1.0f;
    assert_int_equal(lmf_model_config_validate(&c), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "capacity_factor"));
    c.capacity_factor = 1.25f;
    assert_int_equal(lmf_model_config_validate(&c), LMF_OK);
    c.n_expert = LMF_MAX_EXPERT + 1;
    assert_int_equal(lmf_model_config_validate(&c), LMF_ERR_ARG);
    lmf_model_config g = lmf_model_config_default(LMF_ARCH_GPT2);
    g.n_expert = 4, g.n_expert_used = 2;
    assert_int_equal(lmf_model_config_validate(&g), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "llama"));
    g.n_expert = 0; /* a dense model with a top-k: a mistake, said so */
    assert_int_equal(lmf_model_config_validate(&g), LMF_ERR_ARG);
    /* a dense model's table is unchanged by the MoE tensors (old checkpoints keep loading) */
    lmf_model_config d = lmf_model_config_default(LMF_ARCH_LLAMA);
    size_t sizes[LMF_NUM_PARAM_TENSORS];
    lmf_param_sizes(&d, sizes);
    for (int i = LMF_P_ROUTER; i < LMF_NUM_PARAM_TENSORS; i++) assert_true(sizes[i] == 0);
    /* a MoE model counts every expert: E x 3 C F per layer + the router, no dense FFN */
    lmf_model_config mc = d;
    mc.n_expert = 8, mc.n_expert_used = 2;
    double dense = lmf_param_count(&d), moe = lmf_param_count(&mc);
    double L = d.n_layer, C = d.n_embd, F = d.ffn_dim;
    assert_true(fabs(moe - (dense + L * (7 * 3 * C * F + 8 * C))) < 0.5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropless), cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_prefill_matches_training), cmocka_unit_test(test_hf_mixtral),
        cmocka_unit_test(test_export_roundtrip), cmocka_unit_test(test_batch_decode),
        cmocka_unit_test(test_model_bytes), cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_config_errors)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
