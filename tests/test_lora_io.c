/* test_lora_io.c — LoRA adapters through PEFT folders and GGUF files (model/lora_io.h): random adapters of llama
 * (GQA), gpt2 and opt round-trip bit for bit; the files carry PEFT's and llama.cpp's names and shapes; q/k B rows
 * are permuted between rotate_half (PEFT, a Hugging Face model) and interleaved (GGUF, a GGUF-loaded model) orders;
 * every refusal names the file and the tensor or field. */
#include "test_util.h"

#include "core/rng.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/quant.h"
#include "model/lora_io.h"
#include "model/weights.h"

#include <cjson/cJSON.h>
#include <unistd.h>

static char tmp_root[64];

static const char *tmp_path(const char *name) {
    static char p[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof p[i], "%s/%s", tmp_root, name);
    return p[i];
}

static lmf_model_config small(lmf_arch arch, int n_layer, lmf_pos_kind pos) {
    lmf_model_config c = lmf_model_config_default(arch);
    c.vocab_size = 61, c.max_seq_len = 16, c.n_layer = n_layer, c.n_embd = 24, c.n_head = 4, c.ffn_dim = 40;
    c.n_kv_head = arch == LMF_ARCH_LLAMA ? 2 : 4;
    if (arch == LMF_ARCH_LLAMA) c.pos = pos;
    return c;
}

/* An adapter with every A and B random (seeded). */
static lmf_lora *random_lora(const lmf_model_config *c, const char *targets, int r, float alpha, float dropout,
                             int rslora, uint64_t seed) {
    lmf_lora *l;
    if (lmf_lora_create(c, targets, r, alpha, dropout, rslora, &l) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_rng g;
    lmf_rng_seed(&g, seed, 3);
    for (size_t i = 0; i < l->n_params; i++) l->params[i] = 2.0f * lmf_rng_uniform(&g) - 1.0f;
    return l;
}

static void same_lora(const lmf_lora *a, const lmf_lora *b, int same_alpha) {
    assert_int_equal(a->r, b->r);
    assert_int_equal(a->n_layer, b->n_layer);
    assert_int_equal(a->n_mod, b->n_mod);
    for (int k = 0; k < a->n_mod; k++) {
        assert_string_equal(a->mod[k].name, b->mod[k].name);
        assert_int_equal(a->mod[k].in, b->mod[k].in);
        assert_int_equal(a->mod[k].out, b->mod[k].out);
    }
    if (same_alpha) assert_true(a->alpha == b->alpha && a->rslora == b->rslora && a->dropout == b->dropout);
    assert_true(fabsf(a->scale - b->scale) <= 1e-6f * a->scale);
    assert_int_equal(a->n_params, b->n_params);
    assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
}

static void expect_fail(lmf_status got, const char *s1, const char *s2, const char *s3) {
    if (got == LMF_OK) fail_msg("expected a refusal mentioning %s", s1 ? s1 : "?");
    const char *e = lmf_last_error();
    printf("  refused: %s\n", e);
    if (s1 && !strstr(e, s1)) fail_msg("'%s' does not name %s", e, s1);
    if (s2 && !strstr(e, s2)) fail_msg("'%s' does not name %s", e, s2);
    if (s3 && !strstr(e, s3)) fail_msg("'%s' does not name %s", e, s3);
}

static void round_trip_peft(const lmf_model_config *c, const char *targets, float dropout, int rslora) {
    lmf_lora *l = random_lora(c, targets, 3, 6.0f, dropout, rslora, 11), *back;
    const char *dir = tmp_path("peft");
    if (lmf_lora_save_peft(l, c, "tiny-base", dir) != LMF_OK) fail_msg("%s", lmf_last_error());
    if (lmf_lora_load_peft(dir, c, &back) != LMF_OK) fail_msg("%s", lmf_last_error());
    same_lora(l, back, 1);
    lmf_lora_free(back);
    lmf_lora_free(l);
}

static void test_peft_round_trip(void **s) {
    (void)s;
    lmf_model_config ll = small(LMF_ARCH_LLAMA, 2, LMF_POS_ROPE_HALF), li = small(LMF_ARCH_LLAMA, 2,
                                                                                  LMF_POS_ROPE_INTERLEAVED);
    lmf_model_config g = small(LMF_ARCH_GPT2, 2, 0), o = small(LMF_ARCH_OPT, 2, 0);
    round_trip_peft(&ll, "all-linear", 0.05f, 1);
    round_trip_peft(&li, "all-linear", 0.0f, 0);
    round_trip_peft(&ll, "q_proj,v_proj", 0.1f, 0);
    round_trip_peft(&g, "all-linear", 0.0f, 0);
    round_trip_peft(&g, "c_attn,attn.c_proj", 0.0f, 0);
    round_trip_peft(&o, "q_proj,out_proj,fc2", 0.0f, 0);

    /* the files: PEFT's config keys and tensor names, shapes (lora_A (r, in), lora_B (out, r) for Conv1D too) */
    lmf_lora *l = random_lora(&g, "c_proj,c_attn", 3, 8.0f, 0.05f, 0, 2);
    const char *dir = tmp_path("peft_gpt2");
    assert_int_equal(lmf_lora_save_peft(l, &g, NULL, dir), LMF_OK);
    size_t n;
    char *text = slurp(tmp_path("peft_gpt2/adapter_config.json"), &n);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "peft_type")->valuestring, "LORA");
    assert_string_equal(cJSON_GetObjectItem(j, "task_type")->valuestring, "CAUSAL_LM");
    assert_string_equal(cJSON_GetObjectItem(j, "bias")->valuestring, "none");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "fan_in_fan_out")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "base_model_name_or_path")));
    assert_true(cJSON_GetObjectItem(j, "r")->valuedouble == 3);
    assert_true(cJSON_GetObjectItem(j, "lora_alpha")->valuedouble == 8);
    assert_non_null(strstr(text, "\"lora_dropout\":\t0.05"));
    cJSON *t = cJSON_GetObjectItem(j, "target_modules");
    assert_int_equal(cJSON_GetArraySize(t), 2); /* c_attn, and one c_proj for both */
    assert_string_equal(cJSON_GetArrayItem(t, 0)->valuestring, "c_attn");
    assert_string_equal(cJSON_GetArrayItem(t, 1)->valuestring, "c_proj");
    cJSON_Delete(j);
    free(text);
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(tmp_path("peft_gpt2/adapter_model.safetensors"), &st), LMF_OK);
    assert_int_equal(st->n_tensors, 2 * 2 * 3);
    const lmf_st_tensor *a = lmf_safetensors_find(st, "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight");
    const lmf_st_tensor *b = lmf_safetensors_find(st, "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a->dtype == LMF_DT_F32 && a->shape[0] == 3 && a->shape[1] == 24);
    assert_true(b->shape[0] == 72 && b->shape[1] == 3);
    assert_non_null(lmf_safetensors_find(st, "base_model.model.transformer.h.0.attn.c_proj.lora_B.weight"));
    assert_non_null(lmf_safetensors_find(st, "base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight"));
    assert_string_equal(lmf_safetensors_meta(st, "format"), "pt");
    lmf_safetensors_close(st);
    lmf_lora_free(l);

    lmf_model_config big = small(LMF_ARCH_LLAMA, 1, LMF_POS_ROPE_HALF);
    l = random_lora(&big, "all-linear", 2, 4.0f, 0, 0, 3);
    assert_int_equal(lmf_lora_save_peft(l, &big, "x", tmp_path("peft_llama")), LMF_OK);
    assert_int_equal(lmf_safetensors_open(tmp_path("peft_llama/adapter_model.safetensors"), &st), LMF_OK);
    a = lmf_safetensors_find(st, "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
    assert_true(a && a->shape[0] == 2 && a->shape[1] == 40);
    b = lmf_safetensors_find(st, "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight");
    assert_true(b && b->shape[0] == 12 && b->shape[1] == 2); /* GQA: 2 kv heads of 6 */
    lmf_safetensors_close(st);
    lmf_lora_free(l);
    lmf_model_config oo = small(LMF_ARCH_OPT, 1, 0);
    l = random_lora(&oo, "out_proj,fc1", 2, 4.0f, 0, 0, 3);
    assert_int_equal(lmf_lora_save_peft(l, &oo, "x", tmp_path("peft_opt")), LMF_OK);
    assert_int_equal(lmf_safetensors_open(tmp_path("peft_opt/adapter_model.safetensors"), &st), LMF_OK);
    assert_non_null(
        lmf_safetensors_find(st, "base_model.model.model.decoder.layers.0.self_attn.out_proj.lora_A.weight"));
    assert_non_null(lmf_safetensors_find(st, "base_model.model.model.decoder.layers.0.fc1.lora_B.weight"));
    lmf_safetensors_close(st);
    lmf_lora_free(l);
}

static void round_trip_gguf(const lmf_model_config *c, const char *targets, int rslora) {
    lmf_lora *l = random_lora(c, targets, 4, 12.0f, 0.0f, rslora, 5), *back;
    const char *path = tmp_path("a.gguf");
    if (lmf_lora_save_gguf(l, c, path) != LMF_OK) fail_msg("%s", lmf_last_error());
    if (lmf_lora_load_gguf(path, c, &back) != LMF_OK) fail_msg("%s", lmf_last_error());
    same_lora(l, back, !rslora);
    lmf_lora_free(back);
    lmf_lora_free(l);
}

static void test_gguf_round_trip(void **s) {
    (void)s;
    lmf_model_config ll = small(LMF_ARCH_LLAMA, 2, LMF_POS_ROPE_HALF), li = small(LMF_ARCH_LLAMA, 2,
                                                                                  LMF_POS_ROPE_INTERLEAVED);
    lmf_model_config g = small(LMF_ARCH_GPT2, 2, 0), o = small(LMF_ARCH_OPT, 1, 0);
    round_trip_gguf(&ll, "all-linear", 0);
    round_trip_gguf(&li, "all-linear", 0);
    round_trip_gguf(&ll, "k_proj,down_proj", 1); /* rsLoRA: alpha * sqrt r in the file, the same scale back */
    round_trip_gguf(&g, "all-linear", 0);
    round_trip_gguf(&g, "mlp.c_proj", 0);

    /* llama.cpp's keys, names and ne */
    lmf_lora *l = random_lora(&g, "all-linear", 4, 12.0f, 0, 0, 5);
    assert_int_equal(lmf_lora_save_gguf(l, &g, tmp_path("g.gguf")), LMF_OK);
    lmf_gguf *f;
    assert_int_equal(lmf_gguf_open(tmp_path("g.gguf"), &f), LMF_OK);
    const char *v;
    float alpha;
    assert_int_equal(lmf_gguf_get_str(f, "general.type", &v), LMF_OK);
    assert_string_equal(v, "adapter");
    assert_int_equal(lmf_gguf_get_str(f, "adapter.type", &v), LMF_OK);
    assert_string_equal(v, "lora");
    assert_int_equal(lmf_gguf_get_str(f, "general.architecture", &v), LMF_OK);
    assert_string_equal(v, "gpt2");
    assert_int_equal(lmf_gguf_get_f32(f, "adapter.lora.alpha", &alpha), LMF_OK);
    assert_true(alpha == 12.0f);
    assert_int_equal(f->n_tensors, 2 * 2 * 4);
    const lmf_gguf_tensor *a = lmf_gguf_find_tensor(f, "blk.1.attn_qkv.weight.lora_a");
    const lmf_gguf_tensor *b = lmf_gguf_find_tensor(f, "blk.1.attn_qkv.weight.lora_b");
    assert_true(a && a->type == LMF_GGML_F32 && a->ne[0] == 24 && a->ne[1] == 4);
    assert_true(b && b->ne[0] == 4 && b->ne[1] == 72);
    b = lmf_gguf_find_tensor(f, "blk.0.ffn_down.weight.lora_a");
    assert_true(b && b->ne[0] == 40 && b->ne[1] == 4);
    assert_non_null(lmf_gguf_find_tensor(f, "blk.0.attn_output.weight.lora_b"));
    assert_non_null(lmf_gguf_find_tensor(f, "blk.0.ffn_up.weight.lora_b"));
    lmf_gguf_close(f);
    lmf_lora_free(l);
    expect_fail(lmf_lora_save_gguf(l = random_lora(&o, "fc1", 2, 4, 0, 0, 1), &o, tmp_path("o.gguf")), "o.gguf",
                "OPT", NULL);
    lmf_lora_free(l);
}

/* Row k of head h in rotate_half order is row g(k) of the same head in interleaved order. */
static int interleaved_row(int k, int hs) { return k < hs / 2 ? 2 * k : 2 * (k - hs / 2) + 1; }

/* B of a module of `half` (rotate_half order) against the same module of `inter`: q/k rows permuted per head,
 * everything else equal. */
static void check_permuted(const lmf_lora *half, const lmf_lora *inter, const lmf_model_config *c) {
    int hs = c->n_embd / c->n_head, r = half->r;
    for (int L = 0; L < half->n_layer; L++)
        for (int k = 0; k < half->n_mod; k++) {
            const lmf_lora_module *m = &half->mod[k];
            assert_memory_equal(lmf_lora_A(half, L, k), lmf_lora_A(inter, L, k), sizeof(float) * r * m->in);
            const float *bh = lmf_lora_B(half, L, k), *bi = lmf_lora_B(inter, L, k);
            if (m->m0 > 1) {
                assert_memory_equal(bh, bi, sizeof(float) * r * m->out);
                continue;
            }
            int heads = m->m0 == 0 ? c->n_head : c->n_kv_head;
            assert_int_equal(heads * hs, m->out);
            for (int h = 0; h < heads; h++)
                for (int row = 0; row < hs; row++)
                    assert_memory_equal(bh + (size_t)(h * hs + row) * r,
                                        bi + (size_t)(h * hs + interleaved_row(row, hs)) * r, sizeof(float) * r);
        }
}

static void test_rope_order(void **s) {
    (void)s;
    lmf_model_config ch = small(LMF_ARCH_LLAMA, 2, LMF_POS_ROPE_HALF), ci = small(LMF_ARCH_LLAMA, 2,
                                                                                  LMF_POS_ROPE_INTERLEAVED);
    lmf_lora *inter = random_lora(&ci, "q_proj,k_proj,v_proj,o_proj", 3, 6, 0, 0, 8), *half, *back;
    /* trained on a GGUF-loaded model -> PEFT (rotate_half) -> a Hugging Face model: rows permuted */
    assert_int_equal(lmf_lora_save_peft(inter, &ci, NULL, tmp_path("perm")), LMF_OK);
    assert_int_equal(lmf_lora_load_peft(tmp_path("perm"), &ch, &half), LMF_OK);
    check_permuted(half, inter, &ci);
    /* the PEFT file itself holds the rotate_half rows */
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(tmp_path("perm/adapter_model.safetensors"), &st), LMF_OK);
    const lmf_st_tensor *t = lmf_safetensors_find(st, "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight");
    assert_memory_equal(t->data, lmf_lora_B(half, 1, 1), t->nbytes);
    lmf_safetensors_close(st);
    /* and back into an interleaved model: the identity */
    assert_int_equal(lmf_lora_load_peft(tmp_path("perm"), &ci, &back), LMF_OK);
    same_lora(inter, back, 1);
    lmf_lora_free(back);
    /* GGUF is interleaved: a rotate_half adapter's rows go there permuted, and load into either order */
    assert_int_equal(lmf_lora_save_gguf(half, &ch, tmp_path("perm.gguf")), LMF_OK);
    assert_int_equal(lmf_lora_load_gguf(tmp_path("perm.gguf"), &ci, &back), LMF_OK);
    same_lora(inter, back, 1);
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(tmp_path("perm.gguf"), &g), LMF_OK);
    const lmf_gguf_tensor *gt = lmf_gguf_find_tensor(g, "blk.0.attn_q.weight.lora_b");
    assert_memory_equal(gt->data, lmf_lora_B(inter, 0, 0), gt->nbytes);
    lmf_gguf_close(g);
    lmf_lora_free(back);
    assert_int_equal(lmf_lora_load_gguf(tmp_path("perm.gguf"), &ch, &back), LMF_OK);
    same_lora(half, back, 1);
    lmf_lora_free(back);
    lmf_lora_free(half);
    lmf_lora_free(inter);
}

/* Rewrites one field of dir's adapter_config.json (value NULL: remove it). */
static void edit_config(const char *dir, const char *key, cJSON *value) {
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    size_t n;
    char *text = slurp(path, &n);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cJSON_DeleteItemFromObject(j, key);
    if (value) cJSON_AddItemToObject(j, key, value);
    text = cJSON_Print(j);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(j);
}

static void test_peft_refusals(void **s) {
    (void)s;
    lmf_model_config c = small(LMF_ARCH_LLAMA, 2, LMF_POS_ROPE_HALF), c3 = small(LMF_ARCH_LLAMA, 3, LMF_POS_ROPE_HALF);
    lmf_model_config wide = c;
    wide.ffn_dim = 48;
    lmf_lora *l = random_lora(&c, "all-linear", 3, 6, 0, 0, 1), *out;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tmp_path("bad"));
    static const char *const ST = "bad/adapter_model.safetensors";
    assert_int_equal(lmf_lora_save_peft(l, &c, NULL, dir), LMF_OK);
    /* wrong shape: a model with another ffn_dim */
    expect_fail(lmf_lora_load_peft(dir, &wide, &out), ST, "base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight",
                "[40, 3], expected [48, 3]");
    assert_null(out);
    /* a layer the model does not have */
    lmf_lora *l3 = random_lora(&c3, "all-linear", 3, 6, 0, 0, 1);
    assert_int_equal(lmf_lora_save_peft(l3, &c3, NULL, tmp_path("bad3")), LMF_OK);
    expect_fail(lmf_lora_load_peft(tmp_path("bad3"), &c, &out), "bad3/adapter_model.safetensors",
                "unexpected tensor base_model.model.model.layers.2.", NULL);
    lmf_lora_free(l3);
    /* a missing tensor: the file again without one */
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(tmp_path(ST), &st), LMF_OK);
    lmf_st_out t[64];
    int n = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const lmf_st_tensor *x = &st->tensors[i];
        if (strstr(x->name, "layers.1.self_attn.v_proj.lora_A")) continue;
        t[n] = (lmf_st_out){x->name, x->dtype, x->ndim, {x->shape[0], x->shape[1]}, x->data, NULL, NULL};
        n++;
    }
    assert_int_equal(n, st->n_tensors - 1);
    assert_int_equal(lmf_safetensors_write(tmp_path("bad2.safetensors"), t, n, NULL, 0), LMF_OK);
    lmf_safetensors_close(st);
    expect_fail(lmf_lora_load_peft_files(tmp_path("bad/adapter_config.json"), tmp_path("bad2.safetensors"), &c, &out),
                "bad2.safetensors", "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight", "missing");
    /* F16 / BF16 tensors are read */
    assert_int_equal(lmf_safetensors_open(tmp_path(ST), &st), LMF_OK);
    uint16_t *h = malloc(l->n_params * 2);
    size_t off = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const lmf_st_tensor *x = &st->tensors[i];
        size_t cnt = x->nbytes / 4;
        for (size_t e = 0; e < cnt; e++) {
            float f;
            memcpy(&f, (const char *)x->data + 4 * e, 4);
            h[off + e] = i % 2 ? lmf_f32_to_bf16(f) : lmf_f32_to_f16(f);
        }
        t[i] = (lmf_st_out){x->name, i % 2 ? LMF_DT_BF16 : LMF_DT_F16, 2, {x->shape[0], x->shape[1]}, h + off, NULL,
                            NULL};
        off += cnt;
    }
    assert_int_equal(lmf_safetensors_write(tmp_path("half.safetensors"), t, st->n_tensors, NULL, 0), LMF_OK);
    lmf_safetensors_close(st);
    if (lmf_lora_load_peft_files(tmp_path("bad/adapter_config.json"), tmp_path("half.safetensors"), &c, &out) != LMF_OK)
        fail_msg("%s", lmf_last_error());
    float worst = 0;
    for (size_t i = 0; i < l->n_params; i++) worst = fmaxf(worst, fabsf(out->params[i] - l->params[i]));
    assert_true(worst < 1e-2f && worst > 0);
    lmf_lora_free(out);
    free(h);

    /* adapter_config.json fields */
    static const char *const CF = "bad/adapter_config.json";
    edit_config(dir, "peft_type", cJSON_CreateString("IA3"));
    expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "peft_type", "\"IA3\"");
    edit_config(dir, "peft_type", NULL);
    expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "peft_type", "missing");
    edit_config(dir, "peft_type", cJSON_CreateString("LORA"));
    const char *names[] = {"q_proj", "c_attn"};
    edit_config(dir, "target_modules", cJSON_CreateStringArray(names, 2));
    expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "target_modules", "'c_attn'");
    edit_config(dir, "target_modules", cJSON_CreateString(".*q_proj"));
    expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "target_modules", "regular expression");
    edit_config(dir, "target_modules", cJSON_CreateString("all-linear"));
    assert_int_equal(lmf_lora_load_peft(dir, &c, &out), LMF_OK);
    lmf_lora_free(out);
    /* PEFT's matching: full paths (how PEFT 0.21 saves "all-linear") and dotted suffixes; every layer or none */
    {
        static const char *const mods[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                           "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj", "mlp.down_proj"};
        char full[14][64];
        const char *fp[14];
        for (int i = 0; i < 14; i++)
            snprintf(full[i], sizeof full[i], "model.layers.%d.%s", i / 7, mods[i % 7]), fp[i] = full[i];
        edit_config(dir, "target_modules", cJSON_CreateStringArray(fp, 14));
        if (lmf_lora_load_peft(dir, &c, &out) != LMF_OK) fail_msg("%s", lmf_last_error());
        assert_int_equal(out->n_mod, 7);
        lmf_lora_free(out);
        fp[7] = "layers.1.self_attn.q_proj"; /* layer 1's path as a suffix: layer 1's q_proj twice, still whole */
        edit_config(dir, "target_modules", cJSON_CreateStringArray(fp, 14));
        assert_int_equal(lmf_lora_load_peft(dir, &c, &out), LMF_OK);
        lmf_lora_free(out);
        edit_config(dir, "target_modules", cJSON_CreateStringArray(fp, 13)); /* layer 1's down_proj left out */
        expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "target_modules", "down_proj in 1 of the 2 layers");
        fp[0] = "model.layers.2.self_attn.q_proj";
        edit_config(dir, "target_modules", cJSON_CreateStringArray(fp, 1));
        expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "target_modules", "'model.layers.2.self_attn.q_proj'");
        fp[0] = "elf_attn.q_proj"; /* a suffix only after a dot */
        edit_config(dir, "target_modules", cJSON_CreateStringArray(fp, 1));
        expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "target_modules", "'elf_attn.q_proj'");
    }
    edit_config(dir, "target_modules", cJSON_CreateStringArray(names, 1)); /* q_proj only: the rest unexpected */
    expect_fail(lmf_lora_load_peft(dir, &c, &out), ST, "unexpected tensor", "k_proj");
    edit_config(dir, "target_modules", cJSON_CreateString("all-linear"));
    edit_config(dir, "use_dora", cJSON_CreateTrue());
    expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "use_dora", NULL);
    edit_config(dir, "use_dora", cJSON_CreateFalse());
    edit_config(dir, "bias", cJSON_CreateString("lora_only"));
    expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "bias", "lora_only");
    edit_config(dir, "bias", cJSON_CreateString("none"));
    edit_config(dir, "layers_to_transform", cJSON_CreateNumber(0));
    expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "layers_to_transform", NULL);
    edit_config(dir, "layers_to_transform", cJSON_CreateNull());
    edit_config(dir, "modules_to_save", cJSON_CreateStringArray(names, 1));
    expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "modules_to_save", NULL);
    edit_config(dir, "modules_to_save", cJSON_CreateNull());
    edit_config(dir, "r", cJSON_CreateNumber(2.5));
    expect_fail(lmf_lora_load_peft(dir, &c, &out), CF, "field r", "2.5");
    edit_config(dir, "r", cJSON_CreateNumber(4)); /* r disagrees with the tensors */
    expect_fail(lmf_lora_load_peft(dir, &c, &out), ST, "layers.0.self_attn.q_proj.lora_A.weight", "expected [4, 24]");
    expect_fail(lmf_lora_load_peft(tmp_path("nowhere"), &c, &out), "nowhere/adapter_config.json", NULL, NULL);
    lmf_lora_free(l);
}

static void test_gguf_refusals(void **s) {
    (void)s;
    lmf_model_config c = small(LMF_ARCH_LLAMA, 2, LMF_POS_ROPE_HALF), g2 = small(LMF_ARCH_GPT2, 2, 0);
    lmf_model_config wide = c;
    wide.ffn_dim = 48;
    lmf_lora *l = random_lora(&c, "all-linear", 3, 6, 0, 0, 1), *out;
    const char *p = tmp_path("l.gguf");
    assert_int_equal(lmf_lora_save_gguf(l, &c, p), LMF_OK);
    expect_fail(lmf_lora_load_gguf(p, &wide, &out), "l.gguf", "blk.0.ffn_gate.weight.lora_b",
                "[3, 40], expected [3, 48]");
    expect_fail(lmf_lora_load_gguf(p, &g2, &out), "l.gguf", "general.architecture", "\"llama\"");
    assert_null(out);
    /* a model file, not an adapter */
    int64_t ne[2] = {24, 3};
    float zero[72] = {0};
    lmf_gguf_writer *w = lmf_gguf_writer_create(0);
    lmf_gguf_writer_set_str(w, "general.architecture", "llama");
    lmf_gguf_writer_set_str(w, "general.type", "model");
    lmf_gguf_writer_add_tensor(w, "blk.0.attn_q.weight.lora_a", LMF_GGML_F32, 2, ne, zero);
    assert_int_equal(lmf_gguf_writer_write(w, tmp_path("m.gguf")), LMF_OK);
    lmf_gguf_writer_free(w);
    expect_fail(lmf_lora_load_gguf(tmp_path("m.gguf"), &c, &out), "m.gguf", "general.type", "\"model\"");
    /* layer 1 lacks a tensor layer 0 has */
    w = lmf_gguf_writer_create(0);
    lmf_gguf_writer_set_str(w, "general.architecture", "llama");
    lmf_gguf_writer_set_str(w, "general.type", "adapter");
    lmf_gguf_writer_set_str(w, "adapter.type", "lora");
    int64_t nb[2] = {3, 24};
    lmf_gguf_writer_add_tensor(w, "blk.0.attn_q.weight.lora_a", LMF_GGML_F32, 2, ne, zero);
    lmf_gguf_writer_add_tensor(w, "blk.0.attn_q.weight.lora_b", LMF_GGML_F32, 2, nb, zero);
    lmf_gguf_writer_add_tensor(w, "blk.1.attn_q.weight.lora_a", LMF_GGML_F32, 2, ne, zero);
    assert_int_equal(lmf_gguf_writer_write(w, tmp_path("miss.gguf")), LMF_OK);
    expect_fail(lmf_lora_load_gguf(tmp_path("miss.gguf"), &c, &out), "miss.gguf", "blk.1.attn_q.weight.lora_b",
                "missing");
    /* with it, and alpha absent: alpha = r (llama.cpp's scale 1) */
    lmf_gguf_writer_add_tensor(w, "blk.1.attn_q.weight.lora_b", LMF_GGML_F32, 2, nb, zero);
    assert_int_equal(lmf_gguf_writer_write(w, tmp_path("ok.gguf")), LMF_OK);
    if (lmf_lora_load_gguf(tmp_path("ok.gguf"), &c, &out) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_true(out->n_mod == 1 && out->r == 3 && out->scale == 1.0f);
    lmf_lora_free(out);
    /* a tensor of a layer the model lacks */
    lmf_gguf_writer_add_tensor(w, "blk.2.attn_q.weight.lora_a", LMF_GGML_F32, 2, ne, zero);
    assert_int_equal(lmf_gguf_writer_write(w, tmp_path("extra.gguf")), LMF_OK);
    lmf_gguf_writer_free(w);
    expect_fail(lmf_lora_load_gguf(tmp_path("extra.gguf"), &c, &out), "extra.gguf",
                "unexpected tensor blk.2.attn_q.weight.lora_a", NULL);
    lmf_lora_free(l);
}

/* Adapters saved by PEFT itself (tests/reference/fixtures/lora/, make_lora_fixtures.py, when present): each loads
 * into its base model (the hf/ fixture's config) with PEFT's values; saved again, it has exactly PEFT's keys and
 * shapes. PEFT 0.21 writes "all-linear" as every module's full path ("model.layers.0.mlp.down_proj"). */
static void test_peft_fixture(void **s) {
    (void)s;
    const char *root = LMF_SOURCE_DIR "/tests/reference/fixtures/lora";
    if (access(root, F_OK) != 0) {
        printf("  %s absent: PEFT-saved fixtures not checked\n", root);
        skip();
    }
    static const struct {
        const char *name;
        int n_mod, rslora;
    } fx[] = {{"llama_attn", 2, 0}, {"llama_attn_rslora", 2, 1}, {"llama_all_linear", 7, 0},
              {"gpt2_attn", 1, 0},  {"gpt2_attn_rslora", 1, 1},  {"gpt2_all_linear", 4, 0}};
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
        char dir[512], p[600];
        snprintf(dir, sizeof dir, "%s/%s", root, fx[i].name);
        snprintf(p, sizeof p, LMF_SOURCE_DIR "/tests/reference/fixtures/hf/%s",
                 fx[i].name[0] == 'l' ? "llama" : "gpt2");
        lmf_weights *w;
        if (lmf_weights_load_hf(p, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
        lmf_model_config c = *lmf_weights_config(w);
        lmf_weights_free(w);
        lmf_lora *l, *back;
        if (lmf_lora_load_peft(dir, &c, &l) != LMF_OK) fail_msg("%s: %s", fx[i].name, lmf_last_error());
        assert_int_equal(l->n_mod, fx[i].n_mod);
        assert_int_equal(l->rslora, fx[i].rslora);
        assert_true(l->scale == (fx[i].rslora ? l->alpha / sqrtf((float)l->r) : l->alpha / (float)l->r));
        /* values as in PEFT's file, and PEFT's keys and shapes when saved again */
        lmf_safetensors *ref, *ours;
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
        assert_int_equal(lmf_safetensors_open(p, &ref), LMF_OK);
        assert_int_equal(lmf_lora_save_peft(l, &c, "x", tmp_path("fx")), LMF_OK);
        assert_int_equal(lmf_safetensors_open(tmp_path("fx/adapter_model.safetensors"), &ours), LMF_OK);
        assert_int_equal(ref->n_tensors, ours->n_tensors);
        for (int t = 0; t < ref->n_tensors; t++) {
            const lmf_st_tensor *a = &ref->tensors[t], *b = lmf_safetensors_find(ours, a->name);
            if (!b) fail_msg("%s: PEFT's tensor %s is not among ours", fx[i].name, a->name);
            assert_true(a->dtype == LMF_DT_F32 && a->ndim == 2 && b->ndim == 2);
            assert_true(a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1]);
            assert_memory_equal(a->data, b->data, a->nbytes);
        }
        lmf_safetensors_close(ours);
        lmf_safetensors_close(ref);
        assert_int_equal(lmf_lora_load_peft(tmp_path("fx"), &c, &back), LMF_OK);
        same_lora(l, back, 1);
        printf("  %s: %d modules x %d layers, r = %d, alpha = %g%s: PEFT's keys, shapes and values\n", fx[i].name,
               l->n_mod, l->n_layer, l->r, l->alpha, l->rslora ? ", rsLoRA" : "");
        lmf_lora_free(back);
        lmf_lora_free(l);
    }
}

static int setup(void **s) {
    (void)s;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/lmf_lora_io_XXXXXX");
    return mkdtemp(tmp_root) ? 0 : -1;
}

static int teardown(void **s) {
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

/* A mixture of experts' adapters (PEFT's target_parameters): bit-for-bit round trips through PEFT folders and GGUF
 * files, ranks per parameter included; PEFT's keys (the nested experts' base_layer), shapes and B's interleaved
 * columns; llama.cpp's expert stacks (gate_up_proj as gate and up sharing A, B scaled for the 2r rank). */
static void same_moe(const lmf_lora *a, const lmf_lora *b) {
    assert_int_equal(a->n_mod, b->n_mod);
    for (int k = 0; k < a->n_mod; k++) {
        assert_string_equal(a->mod[k].name, b->mod[k].name);
        assert_int_equal(a->mod[k].r, b->mod[k].r);
        assert_int_equal(a->mod[k].n_exp, b->mod[k].n_exp);
        float sa = lmf_lora_scale_of(a, k), sb = lmf_lora_scale_of(b, k);
        if (fabsf(sa - sb) > 1e-6f * sa) fail_msg("%s: scale %g, read back %g", a->mod[k].name, sa, sb);
    }
    assert_int_equal(a->n_params, b->n_params);
}

static lmf_model_config moe_cfg(void) {
    lmf_model_config c = small(LMF_ARCH_LLAMA, 2, LMF_POS_ROPE_HALF);
    c.n_expert = 4, c.n_expert_used = 2, c.ffn_dim = 12;
    return c;
}

static void test_moe_round_trip(void **s) {
    (void)s;
    lmf_model_config c = moe_cfg();
    static const char *const targets[] = {"all-linear", "q_proj,experts.down_proj", "gate_up_proj,v_proj",
                                          "gate.weight"};
    for (int i = 0; i < 4; i++)
        for (int rs = 0; rs < 2; rs++) {
            lmf_lora *l = random_lora(&c, targets[i], 3, 6.0f, 0.0f, rs, 5 + i), *back;
            if (lmf_lora_save_peft(l, &c, "tiny-moe", tmp_path("moe_peft")) != LMF_OK)
                fail_msg("%s", lmf_last_error());
            if (lmf_lora_load_peft(tmp_path("moe_peft"), &c, &back) != LMF_OK) fail_msg("%s", lmf_last_error());
            same_moe(l, back);
            assert_memory_equal(l->params, back->params, l->n_params * sizeof(float));
            lmf_lora_free(back);
            if (lmf_lora_save_gguf(l, &c, tmp_path("moe.gguf")) != LMF_OK) fail_msg("%s", lmf_last_error());
            if (lmf_lora_load_gguf(tmp_path("moe.gguf"), &c, &back) != LMF_OK) fail_msg("%s", lmf_last_error());
            /* GGUF: the same deltas (rsLoRA's 2r gate_up_proj comes back with alpha / r's scale, B times sqrt 2) */
            assert_int_equal(l->n_params, back->n_params);
            for (int L = 0; L < 2; L++)
                for (int k = 0; k < l->n_mod; k++) {
                    const lmf_lora_module *m = &l->mod[k];
                    size_t na = (size_t)m->n_exp * m->r * m->in, nb = (size_t)m->n_exp * m->r * m->out;
                    assert_int_equal(m->r, back->mod[k].r);
                    assert_memory_equal(lmf_lora_A(l, L, k), lmf_lora_A(back, L, k), na * sizeof(float));
                    const float *b0 = lmf_lora_B(l, L, k), *b1 = lmf_lora_B(back, L, k);
                    float s0 = lmf_lora_scale_of(l, k), s1 = lmf_lora_scale_of(back, k);
                    for (size_t q = 0; q < nb && m->kind != LMF_LORA_LINEAR; q++)
                        if (fabsf(s0 * b0[q] - s1 * b1[q]) > 1e-5f * s0)
                            fail_msg("%s %s: GGUF round trip: %g vs %g", targets[i], m->name, s0 * b0[q], s1 * b1[q]);
                }
            lmf_lora_free(back);
            lmf_lora_free(l);
        }

    /* the PEFT files: keys, shapes and the interleaved B */
    lmf_lora *l = random_lora(&c, "all-linear", 3, 6.0f, 0.0f, 0, 9);
    assert_int_equal(lmf_lora_save_peft(l, &c, NULL, tmp_path("moe_files")), LMF_OK);
    size_t n;
    char *text = slurp(tmp_path("moe_files/adapter_config.json"), &n);
    cJSON *j = cJSON_Parse(text);
    cJSON *tp = cJSON_GetObjectItem(j, "target_parameters"), *tm = cJSON_GetObjectItem(j, "target_modules");
    assert_int_equal(cJSON_GetArraySize(tp), 3);
    assert_int_equal(cJSON_GetArraySize(tm), 4);
    assert_string_equal(cJSON_GetArrayItem(tp, 1)->valuestring, "gate_up_proj");
    cJSON *rp = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "rank_pattern"), ".*\\.gate_up_proj");
    cJSON *ap = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "alpha_pattern"), ".*\\.gate_up_proj");
    assert_true(rp && rp->valuedouble == 6 && ap && ap->valuedouble == 12);
    cJSON_Delete(j);
    free(text);
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(tmp_path("moe_files/adapter_model.safetensors"), &st), LMF_OK);
    assert_int_equal(st->n_tensors, 2 * 2 * 7);
    const char *pre = "base_model.model.model.layers.1.mlp.";
    char key[160];
    snprintf(key, sizeof key, "%sexperts.base_layer.lora_A.weight", pre); /* gate_up_proj: the inner wrapper */
    const lmf_st_tensor *a = lmf_safetensors_find(st, key);
    assert_true(a && a->shape[0] == 4 * 6 && a->shape[1] == 24);
    assert_memory_equal(a->data, lmf_lora_A(l, 1, 5), sizeof(float) * 4 * 6 * 24);
    snprintf(key, sizeof key, "%sexperts.base_layer.lora_B.weight", pre);
    const lmf_st_tensor *b = lmf_safetensors_find(st, key);
    assert_true(b && b->shape[0] == 24 && b->shape[1] == 6 * 4);
    for (int e = 0; e < 4; e++) /* B_e[o][j] is PEFT's B[o][j E + e] */
        for (int o = 0; o < 24; o++)
            for (int q = 0; q < 6; q++) {
                float v;
                memcpy(&v, (const char *)b->data + 4 * ((size_t)o * 24 + (size_t)q * 4 + e), 4);
                assert_true(v == lmf_lora_B(l, 1, 5)[((size_t)e * 24 + o) * 6 + q]);
            }
    snprintf(key, sizeof key, "%sexperts.lora_A.weight", pre); /* down_proj: the outer wrapper */
    a = lmf_safetensors_find(st, key);
    assert_true(a && a->shape[0] == 4 * 3 && a->shape[1] == 12);
    snprintf(key, sizeof key, "%sgate.lora_B.weight", pre); /* the router: an (E, r) B */
    b = lmf_safetensors_find(st, key);
    assert_true(b && b->shape[0] == 4 && b->shape[1] == 3);
    lmf_safetensors_close(st);

    /* GGUF: llama.cpp's stacks, gate and up sharing A, B's ranks 2r scaled by 2 (alpha / rank per tensor) */
    assert_int_equal(lmf_lora_save_gguf(l, &c, tmp_path("moe_files.gguf")), LMF_OK);
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(tmp_path("moe_files.gguf"), &g), LMF_OK);
    const lmf_gguf_tensor *ga = lmf_gguf_find_tensor(g, "blk.0.ffn_up_exps.weight.lora_a");
    const lmf_gguf_tensor *gb = lmf_gguf_find_tensor(g, "blk.0.ffn_up_exps.weight.lora_b");
    assert_true(ga && ga->n_dims == 3 && ga->ne[0] == 24 && ga->ne[1] == 6 && ga->ne[2] == 4);
    assert_true(gb && gb->n_dims == 3 && gb->ne[0] == 6 && gb->ne[1] == 12 && gb->ne[2] == 4);
    float v;
    memcpy(&v, (const char *)gb->data + 4 * ((size_t)2 * 12 * 6 + 5 * 6 + 1), 4); /* expert 2, up row 5, j 1 */
    assert_true(v == 2.0f * lmf_lora_B(l, 0, 5)[((size_t)2 * 24 + 12 + 5) * 6 + 1]);
    assert_non_null(lmf_gguf_find_tensor(g, "blk.1.ffn_gate_exps.weight.lora_b"));
    gb = lmf_gguf_find_tensor(g, "blk.1.ffn_down_exps.weight.lora_b");
    assert_true(gb && gb->ne[0] == 3 && gb->ne[1] == 24 && gb->ne[2] == 4);
    ga = lmf_gguf_find_tensor(g, "blk.1.ffn_gate_inp.weight.lora_a");
    assert_true(ga && ga->n_dims == 2 && ga->ne[0] == 24 && ga->ne[1] == 3);
    lmf_gguf_close(g);
    lmf_lora_free(l);
}

/* Qwen2-MoE's shared expert (gate_proj, up_proj, down_proj, shared_expert_gate: nn.Linear modules in PEFT, dropout
 * kept): bit-for-bit round trips through PEFT folders (keys under mlp.shared_expert. and mlp.shared_expert_gate,
 * target_modules by name) and GGUF adapters (llama.cpp's qwen2moe names ffn_{gate,up,down}_shexp and
 * ffn_gate_inp_shexp, whose lora_b is [r, 1]), alone and beside the router and experts; PEFT's own full-path
 * target_modules ("model.layers.0.mlp.shared_expert.down_proj") resolve to the same modules. */
static void test_shared_expert_round_trip(void **s) {
    (void)s;
    lmf_model_config c = small(LMF_ARCH_QWEN2, 2, LMF_POS_ROPE_HALF);
    c.n_expert = 4, c.n_expert_used = 2, c.ffn_dim = 12, c.shared_ffn_dim = 20, c.shared_gate = 1;
    c.norm_topk_prob = 0;
    static const char *const targets[] = {"all-linear", "down_proj,shared_expert_gate",
                                          "gate_proj,up_proj,experts.down_proj,gate.weight,gate_up_proj"};
    for (int i = 0; i < 3; i++) {
        float dropout = i == 2 ? 0.0f : 0.1f;
        lmf_lora *l = random_lora(&c, targets[i], 3, 6.0f, dropout, 0, 21 + i), *back;
        if (lmf_lora_save_peft(l, &c, "tiny-qwen2-moe", tmp_path("shexp_peft")) != LMF_OK)
            fail_msg("%s", lmf_last_error());
        if (lmf_lora_load_peft(tmp_path("shexp_peft"), &c, &back) != LMF_OK) fail_msg("%s", lmf_last_error());
        same_moe(l, back);
        assert_true(back->dropout == dropout);
        assert_memory_equal(l->params, back->params, l->n_params * sizeof(float));
        lmf_lora_free(back);
        if (lmf_lora_save_gguf(l, &c, tmp_path("shexp.gguf")) != LMF_OK) fail_msg("%s", lmf_last_error());
        if (lmf_lora_load_gguf(tmp_path("shexp.gguf"), &c, &back) != LMF_OK) fail_msg("%s", lmf_last_error());
        same_moe(l, back);
        assert_memory_equal(l->params, back->params, l->n_params * sizeof(float));
        lmf_lora_free(back);
        lmf_lora_free(l);
    }
    lmf_lora *l = random_lora(&c, "all-linear", 3, 6.0f, 0.1f, 0, 31);
    assert_int_equal(lmf_lora_save_peft(l, &c, NULL, tmp_path("shexp_files")), LMF_OK);
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(tmp_path("shexp_files/adapter_model.safetensors"), &st), LMF_OK);
    assert_int_equal(st->n_tensors, 2 * 2 * 8);
    const lmf_st_tensor *t = lmf_safetensors_find(st, "base_model.model.model.layers.1.mlp.shared_expert.down_proj"
                                                      ".lora_A.weight");
    assert_true(t && t->shape[0] == 3 && t->shape[1] == 20);
    t = lmf_safetensors_find(st, "base_model.model.model.layers.0.mlp.shared_expert.up_proj.lora_B.weight");
    assert_true(t && t->shape[0] == 20 && t->shape[1] == 3);
    t = lmf_safetensors_find(st, "base_model.model.model.layers.1.mlp.shared_expert_gate.lora_B.weight");
    assert_true(t && t->shape[0] == 1 && t->shape[1] == 3);
    assert_memory_equal(t->data, lmf_lora_B(l, 1, 7), 3 * sizeof(float));
    lmf_safetensors_close(st);
    size_t n;
    char *text = slurp(tmp_path("shexp_files/adapter_config.json"), &n);
    assert_non_null(strstr(text, "\"shared_expert.gate_proj\""));
    assert_non_null(strstr(text, "\"shared_expert_gate\""));
    assert_null(strstr(text, "target_parameters"));
    /* PEFT's own spelling of the same targets: full paths per layer */
    char *alt = malloc(n + 1024), *at = strstr(text, "\"target_modules\"");
    assert_non_null(at);
    char *end = strchr(at, ']');
    size_t head = (size_t)(at - text);
    memcpy(alt, text, head);
    int w = sprintf(alt + head, "\"target_modules\": [\"k_proj\", \"o_proj\", \"q_proj\", \"v_proj\"");
    for (int L = 0; L < 2; L++)
        for (int q = 0; q < 4; q++)
            w += sprintf(alt + head + w, ", \"model.layers.%d.mlp.%s\"", L,
                         (const char *const[]){"shared_expert.down_proj", "shared_expert.gate_proj",
                                               "shared_expert.up_proj", "shared_expert_gate"}[q]);
    strcpy(alt + head + w, end);
    FILE *f = fopen(tmp_path("shexp_files/adapter_config.json"), "w");
    fputs(alt, f);
    fclose(f);
    lmf_lora *back;
    if (lmf_lora_load_peft(tmp_path("shexp_files"), &c, &back) != LMF_OK) fail_msg("%s", lmf_last_error());
    same_moe(l, back);
    assert_memory_equal(l->params, back->params, l->n_params * sizeof(float));
    lmf_lora_free(back);
    free(alt);
    free(text);
    /* GGUF: llama.cpp's qwen2moe names and shapes */
    assert_int_equal(lmf_lora_save_gguf(l, &c, tmp_path("shexp_files.gguf")), LMF_OK);
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(tmp_path("shexp_files.gguf"), &g), LMF_OK);
    const char *arch;
    assert_int_equal(lmf_gguf_get_str(g, "general.architecture", &arch), LMF_OK);
    assert_string_equal(arch, "qwen2moe");
    const lmf_gguf_tensor *ga = lmf_gguf_find_tensor(g, "blk.1.ffn_gate_inp_shexp.weight.lora_a");
    const lmf_gguf_tensor *gb = lmf_gguf_find_tensor(g, "blk.1.ffn_gate_inp_shexp.weight.lora_b");
    assert_true(ga && ga->n_dims == 2 && ga->ne[0] == 24 && ga->ne[1] == 3);
    assert_true(gb && gb->n_dims == 2 && gb->ne[0] == 3 && gb->ne[1] == 1);
    gb = lmf_gguf_find_tensor(g, "blk.0.ffn_down_shexp.weight.lora_b");
    assert_true(gb && gb->ne[0] == 3 && gb->ne[1] == 24);
    ga = lmf_gguf_find_tensor(g, "blk.0.ffn_down_shexp.weight.lora_a");
    assert_true(ga && ga->ne[0] == 20 && ga->ne[1] == 3);
    assert_non_null(lmf_gguf_find_tensor(g, "blk.0.ffn_gate_shexp.weight.lora_a"));
    assert_non_null(lmf_gguf_find_tensor(g, "blk.1.ffn_up_shexp.weight.lora_b"));
    assert_int_equal(g->n_tensors, 2 * 2 * 8);
    lmf_gguf_close(g);
    lmf_lora_free(l);
}

/* PEFT's own all-linear adapter over the tiny Mixtral (tests/reference/peft_moe_targets.py, PEFT's default init: B
 * zero) reads as PEFT defines it: q/k/v/o, the router, gate_up_proj at rank 2r with alpha 2 alpha, down_proj; its A
 * as PEFT wrote it; saved again, the same keys. Hand-edited configs are refused by field. */
static void test_peft_moe_target_parameters(void **s) {
    (void)s;
    const char *dir = LMF_SOURCE_DIR "/tests/reference/fixtures/lora/mixtral_all_linear_peft";
    lmf_weights *w;
    if (lmf_weights_load_hf(LMF_SOURCE_DIR "/tests/reference/fixtures/moe/mixtral", &w) != LMF_OK)
        fail_msg("%s", lmf_last_error());
    lmf_model_config c = *lmf_weights_config(w);
    lmf_weights_free(w);
    lmf_lora *out;
    if (lmf_lora_load_peft(dir, &c, &out) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(out->n_mod, 7);
    assert_int_equal(out->r, 2);
    int gu = lmf_lora_find(out, LMF_LORA_EXPERTS_GATE_UP);
    assert_true(gu >= 0 && out->mod[gu].r == 4 && out->mod[gu].alpha == 8.0f && lmf_lora_scale_of(out, gu) == 2.0f);
    lmf_safetensors *st;
    assert_int_equal(lmf_safetensors_open(LMF_SOURCE_DIR "/tests/reference/fixtures/lora/mixtral_all_linear_peft/"
                                          "adapter_model.safetensors", &st), LMF_OK);
    const lmf_st_tensor *a = lmf_safetensors_find(st, "base_model.model.model.layers.1.mlp.experts.base_layer."
                                                      "lora_A.weight");
    assert_non_null(a);
    assert_memory_equal(a->data, lmf_lora_A(out, 1, gu), sizeof(float) * (size_t)a->shape[0] * a->shape[1]);
    int n_fixture = st->n_tensors;
    lmf_safetensors_close(st);
    assert_int_equal(lmf_lora_save_peft(out, &c, NULL, tmp_path("moe_again")), LMF_OK);
    assert_int_equal(lmf_safetensors_open(tmp_path("moe_again/adapter_model.safetensors"), &st), LMF_OK);
    assert_int_equal(st->n_tensors, n_fixture);
    lmf_safetensors_close(st);
    lmf_lora_free(out);

    /* hand-edited configs */
    char d2[256];
    snprintf(d2, sizeof d2, "%s", tmp_path("moe_again"));
    const char *tp[] = {"experts.w2"};
    edit_config(d2, "target_parameters", cJSON_CreateStringArray(tp, 1));
    expect_fail(lmf_lora_load_peft(d2, &c, &out), "target_parameters", "experts.w2", "gate_up_proj");
    const char *tp2[] = {"experts.down_proj"}; /* fewer targets than tensors */
    edit_config(d2, "target_parameters", cJSON_CreateStringArray(tp2, 1));
    expect_fail(lmf_lora_load_peft(d2, &c, &out), "unexpected tensor", "mlp.gate.lora_A", NULL);
    const char *tp3[] = {"gate_up_proj", "down_proj", "gate.weight"};
    edit_config(d2, "target_parameters", cJSON_CreateStringArray(tp3, 3));
    cJSON *rp = cJSON_CreateObject();
    cJSON_AddNumberToObject(rp, "model\\.layers\\.0\\.mlp\\.experts\\.gate_up_proj", 4);
    edit_config(d2, "rank_pattern", rp);
    expect_fail(lmf_lora_load_peft(d2, &c, &out), "rank_pattern", "per-layer patterns are not supported", NULL);
    rp = cJSON_CreateObject();
    cJSON_AddNumberToObject(rp, "gate_up_proj", 4);
    edit_config(d2, "rank_pattern", rp);
    cJSON *ap = cJSON_CreateObject();
    cJSON_AddNumberToObject(ap, "gate_up_proj", 8);
    edit_config(d2, "alpha_pattern", ap);
    if (lmf_lora_load_peft(d2, &c, &out) != LMF_OK) fail_msg("%s", lmf_last_error()); /* a plain name is a key */
    lmf_lora_free(out);
    rp = cJSON_CreateObject();
    cJSON_AddNumberToObject(rp, ".*\\.gate_up_proj", 3); /* a rank the tensors do not have */
    edit_config(d2, "rank_pattern", rp);
    expect_fail(lmf_lora_load_peft(d2, &c, &out), "experts.base_layer.lora_A.weight", "expected [12, 32]", NULL);
    lmf_model_config dense = small(LMF_ARCH_LLAMA, 2, LMF_POS_ROPE_HALF);
    expect_fail(lmf_lora_load_peft(d2, &dense, &out), "target_parameters", "the model is dense", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peft_round_trip), cmocka_unit_test(test_gguf_round_trip),
        cmocka_unit_test(test_rope_order),      cmocka_unit_test(test_peft_refusals),
        cmocka_unit_test(test_gguf_refusals),   cmocka_unit_test(test_peft_fixture),
        cmocka_unit_test(test_peft_moe_target_parameters), cmocka_unit_test(test_moe_round_trip),
        cmocka_unit_test(test_shared_expert_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
