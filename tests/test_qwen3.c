/* test_qwen3.c — the qwen3 family (a per-head RMSNorm on q and k before RoPE; Qwen3-MoE's Mixtral-style experts)
 * against transformers and a float64 PyTorch twin (fixtures from tests/reference/make_qwen3_fixtures.py; see
 * tests/reference/README.md).
 *
 * Training: a tiny Qwen3-MoE (4 experts, top-2 renormalised, q/k norms): logits, cross-entropy, router losses, the
 * gradient of every parameter tensor (q_norm_w and k_norm_w included) and 10 AdamW steps, fp32 here against float64
 * there within 1e-4 of each tensor's largest value; the twin's logits equal transformers' Qwen3MoeForCausalLM's
 * (checked by the script). Inference: prefill, decode and the batched decode (F32, and Q8_0 weights in the R16
 * layout) give the training forward's logits. Formats: transformers' Qwen3 and Qwen3-MoE folders give its logits
 * (also as training models); our GGUF (qwen3 / qwen3moe) and HF exports of them read back with the same logits.
 * LoRA (llama's names) on both as frozen bases: gradients through the norms equal finite differences. The same again
 * for a head size apart from hidden_size / heads (hd.safetensors, qwen3_hd, qwen3_moe_hd: 4 heads of 16 on C = 32,
 * q 64 wide, as Qwen3-0.6B's 16 x 128 on 1024). Refused by name: attention_bias, the full-width (OLMoE) norm, a file
 * missing a norm, key_length != value_length. */
#include "test_util.h"

#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/config_text.h"
#include "model/export.h"
#include "model/infer.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/moe.h"
#include "kernels/quant.h"
#include "train/optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/qwen3/"
#define TOL 1e-4
#include "twin_fixture.h"

/* Which twin the test at hand uses: the Qwen3-MoE (moe.safetensors), the OLMoE (olmoe.safetensors) or the Qwen3-MoE
 * with heads of 16 on C = 32 (hd.safetensors); set by each test before anything else (tests run one at a time). */
static int olmoe, hd;

static lmf_safetensors *open_fixture(void) {
    lmf_safetensors *st;
    if (lmf_safetensors_open(hd ? FIX "hd.safetensors" : olmoe ? FIX "olmoe.safetensors" : FIX "moe.safetensors", &st) !=
        LMF_OK)
        fail_msg("%s", lmf_last_error());
    return st;
}

/* The twin's model: arch qwen3 (a per-head q/k norm by default) or olmoe (the full-width norm), Mixtral-style
 * experts, no shared expert. */
static lmf_model_config config_of(const lmf_safetensors *st) {
    lmf_model_config c = lmf_model_config_default(olmoe ? LMF_ARCH_OLMOE : LMF_ARCH_QWEN3);
    assert_true(c.qk_norm == (olmoe ? LMF_QK_NORM_FULL : LMF_QK_NORM_HEAD) && !c.qkv_bias && !c.bias &&
                c.act == LMF_ACT_SWIGLU && c.pos == LMF_POS_ROPE_HALF);
    c.vocab_size = (int)meta(st, "V"), c.n_embd = (int)meta(st, "C"), c.n_layer = (int)meta(st, "L");
    c.n_head = (int)meta(st, "n_head"), c.n_kv_head = (int)meta(st, "n_kv_head"), c.ffn_dim = (int)meta(st, "ffn_dim");
    c.max_seq_len = 16, c.norm_eps = (float)meta(st, "norm_eps"), c.rope_theta = (float)meta(st, "rope_theta");
    c.tied_embeddings = 0;
    c.head_dim = hd ? (int)meta(st, "head_dim") : 0;
    c.n_expert = (int)meta(st, "n_expert"), c.n_expert_used = (int)meta(st, "n_expert_used");
    c.norm_topk_prob = (int)meta(st, "norm_topk_prob");
    c.router_aux_coef = (float)meta(st, "router_aux_coef"), c.router_z_coef = (float)meta(st, "router_z_coef");
    return c;
}

static lmf_model *model_of(const lmf_safetensors *st, int training) {
    lmf_model_config c = config_of(st);
    lmf_model *m = lmf_model_create(&c, 2, 8, training);
    if (!m) fail_msg("%s", lmf_last_error());
    int n = 0;
    for (int i = 0; i < LMF_NUM_PARAM_TENSORS; i++) {
        if (!m->param_sizes[i]) continue;
        char key[64];
        snprintf(key, sizeof key, "params.%s", lmf_param_names[i]);
        const lmf_st_tensor *t = need(st, key);
        assert_int_equal(t->nbytes, m->param_sizes[i] * sizeof(float));
        memcpy(m->ptr[i], t->data, t->nbytes);
        n++;
    }
    assert_int_equal(n, 12); /* the twin's tensors, q_norm_w and k_norm_w among them */
    size_t qn = olmoe ? 32 : hd ? 16 : 8, kn = qn; /* hs; or C and KV (4 KV heads of 8) */
    assert_true(m->param_sizes[LMF_P_QNORM] == 2 * qn && m->param_sizes[LMF_P_KNORM] == 2 * kn);
    if (hd) /* q 4 x 16, k and v 2 x 16 rows of C = 32; o (C, 64) */
        assert_true(m->param_sizes[LMF_P_QKVW] == 2 * (64 + 2 * 32) * 32 && m->param_sizes[LMF_P_ATTPROJW] == 2 * 32 * 64);
    return m;
}

/* Training: the twin's loss, every gradient (the q/k norms' too), 10 AdamW steps. */
static void train_twin(void) {
    lmf_safetensors *st = open_fixture();
    lmf_model *m = model_of(st, 1);
    const lmf_model_config *c = &m->cfg;
    int B = 2, T = 8;
    const int32_t *tok = need(st, "tokens")->data, *tg = need(st, "targets")->data;
    lmf_model_zero_grad(m);
    float ce = lmf_model_forward(m, tok, tg, B, T);
    double e = rel_err(lmf_model_logits(m), need(st, "logits")->data, (long)B * T * c->vocab_size);
    if (!(e <= TOL)) fail_msg("logits: relative error %.3g", e);
    const lmf_moe_stats *ms = lmf_model_moe_stats(m);
    near(ce, ((const float *)need(st, "ce")->data)[0], "cross-entropy");
    near(ms->aux, ((const float *)need(st, "aux")->data)[0], "load-balancing loss");
    near(ms->z, ((const float *)need(st, "z")->data)[0], "z-loss");
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
        snprintf(what, sizeof what, "step %d loss", step);
        near(ls, losses[step], what);
        lmf_model_backward(m, 1.0f);
        lmf_adamw_apply(&opt, m, &hp, 1e-2f, lmf_grad_norm(m));
    }
    double ef = compare_table(m, m->params, st, "final");
    printf("%s twin: logits %.2g, ce / aux / z, every gradient %.2g, 10 AdamW steps %.2g of PyTorch's\n",
           olmoe ? "olmoe" : hd ? "qwen3-moe head_dim 16" : "qwen3-moe", e, eg,
           ef);
    lmf_adamw_free(&opt);
    lmf_model_free(m);
    lmf_safetensors_close(st);
}

/* The inference executor on the twin's weights: prefill, then decode-sized steps, then the batched decode, on F32
 * and (through our GGUF export) on Q8_0 weights read in the R16 layout: the q/k norms on every path. */
static void inference_paths(void) {
    lmf_safetensors *st = open_fixture();
    lmf_model *m = model_of(st, 0);
    const int32_t *tok = need(st, "tokens")->data;
    int T = 8, V = m->cfg.vocab_size;
    lmf_model_forward(m, tok, NULL, 2, T);
    assert_close(lmf_model_logits(m), need(st, "logits")->data, 2 * T * V, 1e-5, "inference forward");
    lmf_session *ss;
    assert_int_equal(lmf_session_create(lmf_model_weights(m), 16, &ss), LMF_OK);
    const float *out;
    assert_int_equal(lmf_session_eval(ss, tok, 5, 1, &out), LMF_OK);
    assert_close(out, lmf_model_logits(m), 5 * V, 1e-5, "prefill logits");
    for (int t = 5; t < T; t++) {
        assert_int_equal(lmf_session_eval(ss, tok + t, 1, 0, &out), LMF_OK);
        assert_close(out, lmf_model_logits(m) + (size_t)t * V, V, 1e-5, "decode logits");
    }
    lmf_session_free(ss);
    batch_decode(m->w, m, tok, 1e-5);
    char path[128];
    snprintf(path, sizeof path, "/tmp/lmf_qwen3_bd_%d.gguf", (int)getpid());
    if (lmf_export_gguf(m->w, path, LMF_GGML_Q8_0, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights *q;
    if (lmf_weights_load(path, &q) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_true(q->layers[0].wq.r16 && q->layers[0].experts[0].r16); /* the decode kernels' layout */
    batch_decode(q, m, tok, 5e-2);
    lmf_weights_free(q);
    unlink(path);
    lmf_model_free(m);
    lmf_safetensors_close(st);
}

/* Folder dir (or a GGUF) against transformers' fp32 logits `want` of the fixture's tokens, by prefill and as a
 * training model (lmf_model_from_weights: what full fine-tuning starts from). */
static void check_logits(const char *path, const lmf_safetensors *st, const char *want_name, double tol) {
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(w->cfg.arch, olmoe ? LMF_ARCH_OLMOE : LMF_ARCH_QWEN3);
    assert_true(w->cfg.qk_norm == (olmoe ? LMF_QK_NORM_FULL : LMF_QK_NORM_HEAD) && !w->cfg.qkv_bias &&
                w->layers[1].q_norm_w && w->layers[1].k_norm_w && !w->layers[1].bq);
    assert_int_equal(w->cfg.head_dim, hd ? 16 : 0); /* 0: hidden_size / heads, as before head_dim existed */
    assert_true(w->layers[1].wq.rows == (hd ? 64 : 32) && w->layers[1].wo.cols == (hd ? 64 : 32));
    const int32_t *tok = need(st, "tokens")->data;
    const float *want = need(st, want_name)->data;
    int T = 8, V = w->cfg.vocab_size;
    float *out = malloc(sizeof(float) * 2 * (size_t)T * V);
    logits_of(w, tok, out);
    for (int b = 0; b < 2; b++)
        assert_close(out + (size_t)b * T * V, want + (size_t)b * T * V, T * V, tol, path);
    lmf_model *m;
    if (lmf_model_from_weights(w, 2, 8, 0, &m) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_model_forward(m, tok, NULL, 2, T);
    for (int b = 0; b < 2; b++)
        assert_close(lmf_model_logits(m) + (size_t)b * T * V, want + (size_t)b * T * V, T * V, tol, "training model");
    lmf_model_free(m);
    free(out);
    lmf_weights_free(w);
}

static void test_hf_qwen3(void **s) {
    lmf_safetensors *st = open_fixture();
    check_logits(FIX "qwen3", st, "qwen3_logits", 1e-5);
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "qwen3", &w), LMF_OK);
    assert_true(w->cfg.tied_embeddings && !w->cfg.n_expert && !w->layers[0].bo);
    /* the norm weights are the folder's (random here), not ones */
    assert_true(fabsf(w->layers[1].k_norm_w[3] - 1.0f) > 1e-3f);
    lmf_weights_free(w);
    lmf_safetensors_close(st);
}

static void test_hf_qwen3_moe(void **s) {
    lmf_safetensors *st = open_fixture();
    check_logits(FIX "qwen3_moe", st, "qwen3_moe_logits", 1e-5);
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "qwen3_moe", &w), LMF_OK);
    const lmf_model_config *c = &w->cfg;
    assert_true(c->n_expert == 4 && c->n_expert_used == 2 && c->shared_ffn_dim == 0 && !c->shared_gate &&
                c->norm_topk_prob && c->ffn_dim == 16);
    lmf_weights_free(w);
    lmf_safetensors_close(st);
}

/* Folder `name` through our GGUF exporter (architecture qwen3 / qwen3moe; F32: transformers' logits, Q8_0: near
 * them) and our HF exporter (read back: the same logits). */
static void export_roundtrip(const char *name, const char *want_name, const char *gguf_arch) {
    lmf_safetensors *st = open_fixture();
    char dir[256], path[256], cmd[600];
    snprintf(dir, sizeof dir, FIX "%s", name);
    lmf_weights *w;
    if (lmf_weights_load(dir, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    snprintf(path, sizeof path, "/tmp/lmf_qwen3_%s_%d.gguf", name, (int)getpid());
    if (lmf_export_gguf(w, path, LMF_GGML_F32, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(path, &g), LMF_OK);
    const char *arch;
    assert_int_equal(lmf_gguf_get_str(g, "general.architecture", &arch), LMF_OK);
    assert_string_equal(arch, gguf_arch);
    const lmf_gguf_tensor *kn = lmf_gguf_find_tensor(g, "blk.1.attn_k_norm.weight"); /* [hs], olmoe [KV] */
    assert_true(kn && kn->n_dims == 1 && kn->ne[0] == (olmoe ? 32 : hd ? 16 : 8));
    assert_null(lmf_gguf_find_tensor(g, "blk.1.attn_k.bias"));
    char key[96];
    snprintf(key, sizeof key, "%s.attention.key_length", gguf_arch); /* written when heads are not C / n_head */
    uint32_t kl = 0, vl = 0;
    if (hd) {
        assert_int_equal(lmf_gguf_get_u32(g, key, &kl), LMF_OK);
        snprintf(key, sizeof key, "%s.attention.value_length", gguf_arch);
        assert_int_equal(lmf_gguf_get_u32(g, key, &vl), LMF_OK);
        assert_true(kl == 16 && vl == 16);
        const lmf_gguf_tensor *q = lmf_gguf_find_tensor(g, "blk.1.attn_q.weight"),
                              *o = lmf_gguf_find_tensor(g, "blk.1.attn_output.weight"); /* ggml order: [in, out] */
        assert_true(q && q->ne[0] == 32 && q->ne[1] == 64 && o && o->ne[0] == 64 && o->ne[1] == 32);
    } else {
        assert_null(lmf_gguf_find(g, key));
    }
    lmf_gguf_close(g);
    check_logits(path, st, want_name, 1e-5);
    if (lmf_export_gguf(w, path, LMF_GGML_Q8_0, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_weights *q;
    if (lmf_weights_load(path, &q) != LMF_OK) fail_msg("%s", lmf_last_error());
    size_t n = (size_t)2 * 8 * w->cfg.vocab_size;
    float *lg = malloc(sizeof(float) * n);
    logits_of(q, need(st, "tokens")->data, lg);
    double eq = rel_err(lg, need(st, want_name)->data, (long)n);
    if (!(eq <= 3e-2)) /* Q8_0's error on these weights (C = 32 a row: 0.01 - 0.02) */ fail_msg("%s: Q8_0 GGUF logits off by %.3g", name, eq);
    free(lg);
    lmf_weights_free(q);
    unlink(path);
    snprintf(path, sizeof path, "/tmp/lmf_qwen3_%s_hf_%d", name, (int)getpid());
    if (lmf_export_safetensors(w, path, LMF_GGML_F32) != LMF_OK) fail_msg("%s", lmf_last_error());
    check_logits(path, st, want_name, 1e-5);
    printf("%s: GGUF (%s) F32 and Q8_0 (%.2g) and HF exports read back\n", name, gguf_arch, eq);
    snprintf(cmd, sizeof cmd, "rm -rf %s", path);
    assert_int_equal(system(cmd), 0);
    lmf_weights_free(w);
    lmf_safetensors_close(st);
}

static void test_export_qwen3(void **s) { export_roundtrip("qwen3", "qwen3_logits", "qwen3"); }
static void test_export_qwen3_moe(void **s) { export_roundtrip("qwen3_moe", "qwen3_moe_logits", "qwen3moe"); }


/* OLMoE (the full-width q/k norm): its twin's training, every inference path (decode's extra barriers included),
 * transformers' own folder, our GGUF (olmoe: [C] and [KV] norms) and HF exports, LoRA through the norm. */
static void test_olmoe(void **s) {
    olmoe = 1;
    train_twin();
    inference_paths();
    lmf_safetensors *st = open_fixture();
    check_logits(FIX "olmoe", st, "olmoe_logits", 1e-5);
    lmf_safetensors_close(st);
    export_roundtrip("olmoe", "olmoe_logits", "olmoe");
    lora_fd("olmoe", "q_proj,k_proj,v_proj,o_proj", 4);
    /* llama.cpp's olmoe never renormalises the top-k; tensor parallelism is refused for the full width (trainer) */
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "olmoe", &w), LMF_OK);
    assert_true(w->cfg.n_expert == 4 && !w->cfg.norm_topk_prob && w->cfg.qk_norm == LMF_QK_NORM_FULL);
    w->cfg.norm_topk_prob = 1;
    char path[128];
    snprintf(path, sizeof path, "/tmp/lmf_olmoe_bad_%d.gguf", (int)getpid());
    assert_int_equal(lmf_export_gguf(w, path, LMF_GGML_F32, NULL), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "norm_topk_prob"));
    lmf_weights_free(w);
    olmoe = 0;
}

/* Layouts lmforge does not run are refused by the field that asks for them; hostile or incomplete files by name. */
static void test_refused(void **s) {
    static const struct {
        const char *folder, *from, *to, *want;
    } cases[] = {
        /* head_dim is the head size (q 4 x 16 wide, as Qwen3-0.6B's): this folder's q_proj is not */
        {"qwen3", "\"head_dim\": 8", "\"head_dim\": 16", "q_proj.weight has shape [32, 32], expected [64, 32]"},
        {"qwen3", "\"attention_bias\": false", "\"attention_bias\": true", "o_proj bias"},
        {"qwen3", "\"full_attention\"", "\"sliding_attention\"", "layer_types"},
        {"qwen3_moe", "\"decoder_sparse_step\": 1", "\"decoder_sparse_step\": 2", "decoder_sparse_step"},
        {"qwen3_moe", "\"num_local_experts\": 4", "\"num_local_experts\": 5",
         "gate.weight has shape [4, 32], expected [5, 32]"},
        {"qwen3_moe", "\"num_local_experts\": 4", "\"num_experts\": 5", /* the hub's name */
         "gate.weight has shape [4, 32], expected [5, 32]"},
    };
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/lmf_qwen3_bad_%d", (int)getpid());
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        edited_folder(cases[i].folder, dir, cases[i].from, cases[i].to);
        lmf_weights *w = NULL;
        assert_int_equal(lmf_weights_load(dir, &w), LMF_ERR_FORMAT);
        if (!strstr(lmf_last_error(), cases[i].want))
            fail_msg("case %zu: expected '%s' in: %s", i, cases[i].want, lmf_last_error());
        assert_null(w);
    }
    /* a config without head_dim takes Qwen3Config's default, 128 (not C / heads): this folder's q_proj does not fit */
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "sed -i '/\"head_dim\"/d' %s/config.json", dir);
    edited_folder("qwen3", dir, "x", "x");
    assert_int_equal(system(cmd), 0);
    lmf_weights *w = NULL;
    assert_int_equal(lmf_weights_load(dir, &w), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "q_proj.weight has shape [32, 32], expected [512, 32]"));
    /* a qwen3 GGUF without a layer's k norm (the name patched in the file): named, not a crash */
    assert_int_equal(lmf_weights_load(FIX "qwen3_moe", &w), LMF_OK);
    char path[160];
    snprintf(path, sizeof path, "%s.gguf", dir);
    static const char *const names[2] = {"blk.1.attn_k_norm.weight", "blk.1.attn_k_norm.weighX"};
    assert_int_equal(lmf_export_gguf(w, path, LMF_GGML_F32, NULL), LMF_OK);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    char *at = memmem(buf, n, names[0], strlen(names[0]));
    assert_non_null(at);
    assert_int_equal(fseek(f, (long)(at - buf), SEEK_SET), 0);
    assert_int_equal(fwrite(names[1], strlen(names[1]), 1, f), 1);
    fclose(f);
    lmf_weights *g = NULL;
    assert_int_equal(lmf_weights_load(path, &g), LMF_ERR_FORMAT);
    if (!strstr(lmf_last_error(), names[0])) fail_msg("expected %s in: %s", names[0], lmf_last_error());
    assert_null(g);
    /* llama.cpp's qwen3moe always renormalises the top-k: a model that does not is not written as one */
    w->cfg.norm_topk_prob = 0;
    assert_int_equal(lmf_export_gguf(w, path, LMF_GGML_F32, NULL), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "norm_topk_prob"));
    /* a q/k norm has no place in llama.cpp's llama or transformers' Llama / Mixtral */
    w->cfg.norm_topk_prob = 1, w->cfg.arch = LMF_ARCH_LLAMA;
    assert_int_equal(lmf_export_gguf(w, path, LMF_GGML_F32, NULL), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "arch = qwen3"));
    assert_int_equal(lmf_export_safetensors(w, dir, LMF_GGML_F32), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "arch = qwen3"));
    lmf_weights_free(w);
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, path);
    assert_int_equal(system(cmd), 0);
}

/* A GGUF whose K and V heads differ in size (value_length patched in the file) is refused by both keys' names. */
static void refused_value_length(void) {
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "qwen3_hd", &w), LMF_OK);
    char path[128];
    snprintf(path, sizeof path, "/tmp/lmf_qwen3_vl_%d.gguf", (int)getpid());
    assert_int_equal(lmf_export_gguf(w, path, LMF_GGML_F32, NULL), LMF_OK);
    lmf_weights_free(w);
    gguf_patch_u32(path, "qwen3.attention.value_length", 16, 8);
    lmf_weights *g = NULL;
    assert_int_equal(lmf_weights_load(path, &g), LMF_ERR_FORMAT);
    if (!strstr(lmf_last_error(), "key_length 16 != qwen3.attention.value_length 8"))
        fail_msg("expected the two keys in: %s", lmf_last_error());
    assert_null(g);
    unlink(path);
}

/* Heads of 16 on C = 32 (q 64 wide; hd.safetensors, qwen3_hd, qwen3_moe_hd): the twin's training, every inference
 * path, transformers' folders, our GGUF (key_length / value_length) and HF exports, LoRA on q/k/v/o (o's input 64
 * wide) and the FFN. */
static void test_head_dim(void **s) {
    hd = 1;
    train_twin();
    inference_paths();
    lmf_safetensors *st = open_fixture();
    check_logits(FIX "qwen3_hd", st, "qwen3_hd_logits", 1e-5);
    check_logits(FIX "qwen3_moe_hd", st, "qwen3_moe_hd_logits", 1e-5);
    lmf_safetensors_close(st);
    export_roundtrip("qwen3_hd", "qwen3_hd_logits", "qwen3");
    export_roundtrip("qwen3_moe_hd", "qwen3_moe_hd_logits", "qwen3moe");
    lora_fd("qwen3_hd", "all-linear", 7);
    lora_fd("qwen3_moe_hd", "q_proj,k_proj,v_proj,o_proj", 4);
    refused_value_length();
    hd = 0;
}

static void test_train_twin(void **s) { train_twin(); }
static void test_inference_paths(void **s) { inference_paths(); }

static void test_lora(void **s) {
    lora_fd("qwen3", "all-linear", 7); /* q k v o gate up down */
    /* a mixture of experts offers its attention only (lora.c: as for Mixtral) */
    lora_fd("qwen3_moe", "q_proj,k_proj,v_proj,o_proj", 4);
}

static void test_config(void **s) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_QWEN3);
    assert_int_equal(lmf_model_config_validate(&c), LMF_OK);
    assert_string_equal(lmf_arch_name(LMF_ARCH_QWEN3), "qwen3");
    lmf_arch a;
    assert_int_equal(lmf_arch_parse("qwen3", &a), LMF_OK);
    assert_int_equal(a, LMF_ARCH_QWEN3);
    /* the knob is text too (train.conf, checkpoints): qk_norm = 1 on a llama is a qwen3 minus its name */
    lmf_model_config t = lmf_model_config_default(LMF_ARCH_LLAMA);
    assert_int_equal(lmf_model_config_from_text("arch = qwen3\n", "test", &t), LMF_OK);
    assert_int_equal(t.qk_norm, LMF_QK_NORM_HEAD);
    assert_int_equal(lmf_model_config_from_text("arch = qwen3\nqk_norm = 0\n", "test", &t), LMF_OK);
    assert_int_equal(t.qk_norm, LMF_QK_NORM_NONE);
    /* olmoe: the full-width norm; a value past it is refused, and a LayerNorm family cannot take one */
    lmf_model_config o = lmf_model_config_default(LMF_ARCH_OLMOE);
    assert_int_equal(o.qk_norm, LMF_QK_NORM_FULL);
    assert_int_equal(lmf_model_config_validate(&o), LMF_OK);
    assert_string_equal(lmf_arch_name(LMF_ARCH_OLMOE), "olmoe");
    c.qk_norm = 3;
    assert_int_equal(lmf_model_config_validate(&c), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "qk_norm"));
    lmf_model_config g = lmf_model_config_default(LMF_ARCH_GPT2);
    g.qk_norm = LMF_QK_NORM_HEAD;
    assert_int_equal(lmf_model_config_validate(&g), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "RMSNorm"));
    /* the norms add 2 (L, hs) parameters */
    lmf_model_config d = lmf_model_config_default(LMF_ARCH_LLAMA), q = lmf_model_config_default(LMF_ARCH_QWEN3);
    assert_true(fabs(lmf_param_count(&q) - lmf_param_count(&d) - 2.0 * d.n_layer * (d.n_embd / d.n_head)) < 0.5);
    /* LoRA targets llama's module names */
    assert_string_equal(lmf_lora_module_names(&q), lmf_lora_module_names(&d));
    /* head_dim: text and flags name it; 0 is n_embd / n_head; gpt2 keeps C / n_head; RoPE needs it even */
    assert_int_equal(lmf_model_config_from_text("head_dim = 128\n", "test", &q), LMF_OK);
    assert_true(q.head_dim == 128 && lmf_head_size(&q) == 128 && lmf_q_width(&q) == 9 * 128 &&
                lmf_kv_width(&q) == 3 * 128);
    assert_int_equal(lmf_model_config_validate(&q), LMF_OK);
    assert_int_equal(lmf_head_size(&d), 64); /* SmolLM2's 576 / 9 */
    q.head_dim = 63;
    assert_int_equal(lmf_model_config_validate(&q), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "even for RoPE"));
    q.head_dim = 64, q.n_embd = 577; /* C need not be a multiple of the heads when head_dim says their size */
    assert_int_equal(lmf_model_config_validate(&q), LMF_OK);
    g = lmf_model_config_default(LMF_ARCH_GPT2);
    g.head_dim = 128;
    assert_int_equal(lmf_model_config_validate(&g), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "head_dim: gpt2 heads are n_embd / n_head (64) wide, got 128"));
    g.head_dim = 64;
    assert_int_equal(lmf_model_config_validate(&g), LMF_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),          cmocka_unit_test(test_train_twin),
        cmocka_unit_test(test_inference_paths), cmocka_unit_test(test_hf_qwen3),
        cmocka_unit_test(test_hf_qwen3_moe),    cmocka_unit_test(test_export_qwen3),
        cmocka_unit_test(test_export_qwen3_moe), cmocka_unit_test(test_refused), cmocka_unit_test(test_lora),
        cmocka_unit_test(test_olmoe), cmocka_unit_test(test_head_dim)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
