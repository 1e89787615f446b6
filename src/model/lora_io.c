/* lora_io.c — LoRA adapters as PEFT folders and GGUF files (see lora_io.h for both layouts). */
#include "model/lora_io.h"

#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/quant.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PATH_LEN = 128, KEY_LEN = 192, TARGETS_LEN = 256 };

/* ---- names and row orders ------------------------------------------------------------------------------------ */

/* The path of module m of layer L in the Hugging Face model ("model.layers.0.self_attn.q_proj"): what PEFT's
 * target_modules match and, after "base_model.model.", its tensor keys begin with. */
static void module_path(const lmf_model_config *c, const lmf_lora_module *m, int L, char *buf) {
    const char *pre, *sub;
    if (lmf_arch_is_llama_family(c->arch)) {
        pre = "model.layers", sub = m->m0 < 4 ? "self_attn." : "mlp.";
    } else if (c->arch == LMF_ARCH_OPT) {
        pre = "model.decoder.layers", sub = m->m0 < 4 ? "self_attn." : "";
    } else { /* gpt2: the two c_proj already carry their parent */
        pre = "transformer.h";
        sub = !strcmp(m->name, "c_attn") ? "attn." : !strcmp(m->name, "c_fc") ? "mlp." : "";
    }
    snprintf(buf, PATH_LEN, "%s.%d.%s%s", pre, L, sub, m->name);
}

/* PEFT's key of module m's lora_A or lora_B (ab "A" / "B") in layer L. */
static void peft_key(const lmf_model_config *c, const lmf_lora_module *m, int L, const char *ab, char *buf) {
    char path[PATH_LEN];
    module_path(c, m, L, path);
    snprintf(buf, KEY_LEN, "base_model.model.%s.lora_%s.weight", path, ab);
}

/* llama.cpp's name of the base tensor module m adds to (llama and gpt2; gpt2's c_attn is the fused attn_qkv). */
static const char *gguf_base(const lmf_lora_module *m) {
    static const char *const names[LMF_LAYER_MATRICES] = {"attn_q", "attn_k",  "attn_v",  "attn_output",
                                                          "ffn_gate", "ffn_up", "ffn_down"};
    return m->m1 - m->m0 == 3 ? "attn_qkv" : names[m->m0];
}

static void gguf_key(const lmf_lora_module *m, int L, const char *ab, char *buf) {
    snprintf(buf, KEY_LEN, "blk.%d.%s.weight.lora_%s", L, gguf_base(m), ab);
}

/* Rows of one head's q or k, dst row i = src row p(i): to_gguf takes Hugging Face's rotate_half order (dimension d
 * pairs with d + hs/2) to llama.cpp's interleaved one (2i with 2i + 1), else back (export.c's rope_perm). */
static void permute_heads(float *dst, const float *src, int n_heads, int hs, int cols, int to_gguf) {
    int half = hs / 2;
    for (int h = 0; h < n_heads; h++)
        for (int k = 0; k < hs; k++) {
            int s = to_gguf ? (k % 2) * half + k / 2 : 2 * (k % half) + k / half;
            memcpy(dst + ((size_t)h * hs + k) * cols, src + ((size_t)h * hs + s) * cols, sizeof(float) * cols);
        }
}

/* A copy of l's parameters with the q and k rows of every B permuted (to_gguf as above) when permute is set. */
static float *ordered(const lmf_lora *l, const lmf_model_config *c, int permute, int to_gguf) {
    float *p = lmf_xmalloc(l->n_params * sizeof(float) + 1);
    memcpy(p, l->params, l->n_params * sizeof(float));
    if (!permute) return p;
    int hs = lmf_head_size(c), r = l->r;
    for (int L = 0; L < l->n_layer; L++)
        for (int k = 0; k < l->n_mod; k++) {
            const lmf_lora_module *m = &l->mod[k];
            const float *src = lmf_lora_B(l, L, k);
            float *dst = p + (src - l->params);
            size_t row = 0;
            for (int q = m->m0; q < m->m1; row += (size_t)l->rows[q], q++)
                if (q < 2) permute_heads(dst + row * r, src + row * r, q ? c->n_kv_head : c->n_head, hs, r, to_gguf);
        }
    return p;
}

/* B rows in PEFT files are in rotate_half order, in llama GGUF files interleaved (qwen2's stay in rotate_half order:
 * llama.cpp's converter does not permute them); the adapter is in its model's. */
static int peft_permutes(const lmf_model_config *c) { return c->pos == LMF_POS_ROPE_INTERLEAVED; }
static int gguf_permutes(const lmf_model_config *c) { return c->pos == LMF_POS_ROPE_HALF && c->arch == LMF_ARCH_LLAMA; }

/* general.architecture of cfg's model in llama.cpp, which an adapter for it carries: a qwen2 (qwen3) mixture of experts is
 * qwen2moe (qwen3moe) there. */
static const char *gguf_arch(const lmf_model_config *c) {
    if (c->n_expert && c->arch == LMF_ARCH_QWEN2) return "qwen2moe";
    if (c->n_expert && c->arch == LMF_ARCH_QWEN3) return "qwen3moe";
    return lmf_arch_name(c->arch);
}

/* After loading in the file's order: into the model's. */
static void reorder_in_place(lmf_lora *l, const lmf_model_config *c, int permute, int to_gguf) {
    if (!permute) return;
    float *p = ordered(l, c, 1, to_gguf);
    memcpy(l->params, p, l->n_params * sizeof(float));
    free(p);
}

/* n values of dtype (0 F32, 1 F16, 2 BF16) from possibly unaligned bytes. */
static void to_f32(float *dst, const void *data, size_t n, int kind) {
    const uint8_t *b = data;
    for (size_t i = 0; i < n; i++) {
        if (kind == 0) {
            memcpy(dst + i, b + 4 * i, 4);
            continue;
        }
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        dst[i] = kind == 1 ? lmf_f16_to_f32(h) : lmf_bf16_to_f32(h);
    }
}

/* ---- PEFT ------------------------------------------------------------------------------------------------------ */

/* A float as the shortest decimal that reads back as it (0.05f prints as 0.05, not 0.0500000007). */
static double tidy(float v) {
    char b[32];
    snprintf(b, sizeof b, "%g", v);
    if ((float)strtod(b, NULL) != v) snprintf(b, sizeof b, "%.9g", v);
    return strtod(b, NULL);
}

static int has_module(const lmf_lora *l, const char *name) {
    for (int k = 0; k < l->n_mod; k++)
        if (!strcmp(l->mod[k].name, name)) return 1;
    return 0;
}

static char *peft_config(const lmf_lora *l, const lmf_model_config *c, const char *base_name) {
    cJSON *j = cJSON_CreateObject(), *t;
    if (base_name) cJSON_AddStringToObject(j, "base_model_name_or_path", base_name);
    else cJSON_AddNullToObject(j, "base_model_name_or_path");
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", c->arch == LMF_ARCH_GPT2); /* GPT-2's Conv1D stores (in, out) */
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON_AddNullToObject(j, "layers_pattern");
    cJSON_AddNullToObject(j, "layers_to_transform");
    cJSON_AddNumberToObject(j, "lora_alpha", tidy(l->alpha));
    cJSON_AddBoolToObject(j, "lora_bias", 0);
    cJSON_AddNumberToObject(j, "lora_dropout", tidy(l->dropout));
    cJSON_AddNullToObject(j, "modules_to_save");
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", l->r);
    cJSON_AddNullToObject(j, "revision");
    t = cJSON_AddArrayToObject(j, "target_modules");
    /* PEFT matches a target as a suffix of the module's path: "c_proj" means both of gpt2's, so one alone keeps its
     * parent ("attn.c_proj") */
    int both = has_module(l, "attn.c_proj") && has_module(l, "mlp.c_proj");
    for (int k = 0; k < l->n_mod; k++) {
        const char *n = l->mod[k].name;
        if (both && !strcmp(n, "mlp.c_proj")) continue;
        cJSON_AddItemToArray(t, cJSON_CreateString(both && !strcmp(n, "attn.c_proj") ? "c_proj" : n));
    }
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(j, "use_dora", 0);
    cJSON_AddBoolToObject(j, "use_rslora", l->rslora);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    LMF_CHECK(s != NULL);
    return s;
}

lmf_status lmf_lora_save_peft(const lmf_lora *l, const lmf_model_config *cfg, const char *base_name, const char *dir) {
    char path[4096];
    LMF_TRY(lmf_mkdir_p(dir));
    int n = 2 * l->n_layer * l->n_mod;
    float *p = ordered(l, cfg, peft_permutes(cfg), 0);
    lmf_st_out *t = lmf_xcalloc((size_t)n + 1, sizeof *t);
    char *names = lmf_xmalloc((size_t)n * KEY_LEN + 1);
    for (int L = 0, i = 0; L < l->n_layer; L++)
        for (int k = 0; k < l->n_mod; k++, i += 2) {
            const lmf_lora_module *m = &l->mod[k];
            const float *A = p + (lmf_lora_A(l, L, k) - l->params);
            peft_key(cfg, m, L, "A", names + (size_t)i * KEY_LEN);
            peft_key(cfg, m, L, "B", names + (size_t)(i + 1) * KEY_LEN);
            t[i] = (lmf_st_out){names + (size_t)i * KEY_LEN, LMF_DT_F32, 2, {l->r, m->in}, A};
            t[i + 1] = (lmf_st_out){names + (size_t)(i + 1) * KEY_LEN, LMF_DT_F32, 2, {m->out, l->r},
                                    A + (size_t)l->r * m->in};
        }
    static const char *const meta[] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    lmf_status s = lmf_safetensors_write(path, t, n, meta, 1);
    if (s == LMF_OK) {
        char *json = peft_config(l, cfg, base_name);
        const void *parts[1] = {json};
        size_t sizes[1] = {strlen(json)};
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        s = lmf_write_file_atomic(path, parts, sizes, 1);
        free(json);
    }
    free(names);
    free(t);
    free(p);
    return s;
}

/* The JSON of v for a message (missing when NULL), cut to fit buf. */
static const char *shown(const cJSON *v, char *buf, size_t n) {
    if (!v) return "missing";
    char *s = cJSON_PrintUnformatted(v);
    snprintf(buf, n, "%s", s ? s : "?");
    free(s);
    return buf;
}

typedef struct {
    int r, rslora;
    float alpha, dropout;
    char *targets; /* target_modules as written, comma-separated (malloc'd) */
} peft_params;

/* adapter_config.json's fields lmforge uses, and refusals of those it cannot represent. */
static lmf_status parse_peft_config(const char *path, peft_params *p) {
    char *buf, show[96];
    size_t len;
    p->targets = NULL;
    LMF_TRY(lmf_read_file_max(path, 1u << 20, "a PEFT adapter_config.json", &buf, &len));
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    lmf_status s = LMF_OK;
#define BAD(...)                                                                                                   \
    do {                                                                                                           \
        s = lmf_fail(LMF_ERR_FORMAT, __VA_ARGS__);                                                                 \
        goto done;                                                                                                 \
    } while (0)
#define FIELD(k) cJSON_GetObjectItemCaseSensitive(j, k)
    if (!cJSON_IsObject(j)) BAD("%s: not a JSON object", path);
    const cJSON *v = FIELD("peft_type");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "LORA"))
        BAD("%s: field peft_type is %s, expected \"LORA\" (lmforge reads LoRA adapters only)", path,
            shown(v, show, sizeof show));
    v = FIELD("r");
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 || v->valuedouble > 4096)
        BAD("%s: field r is %s, expected an integer in [1, 4096]", path, shown(v, show, sizeof show));
    p->r = (int)v->valuedouble;
    v = FIELD("lora_alpha");
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 1e30)
        BAD("%s: field lora_alpha is %s, expected a positive number", path, shown(v, show, sizeof show));
    p->alpha = (float)v->valuedouble;
    v = FIELD("lora_dropout");
    if (v && !cJSON_IsNull(v) && (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 1)))
        BAD("%s: field lora_dropout is %s, expected a number in [0, 1)", path, shown(v, show, sizeof show));
    p->dropout = cJSON_IsNumber(v) ? (float)v->valuedouble : 0.0f;
    v = FIELD("use_rslora");
    if (v && !cJSON_IsBool(v) && !cJSON_IsNull(v))
        BAD("%s: field use_rslora is %s, expected true or false", path, shown(v, show, sizeof show));
    p->rslora = cJSON_IsTrue(v);
    if (cJSON_IsTrue(FIELD("use_dora")))
        BAD("%s: field use_dora is true: DoRA adapters are not supported (LoRA only)", path);
    if (cJSON_IsTrue(FIELD("lora_bias"))) BAD("%s: field lora_bias is true: lora_B biases are not supported", path);
    v = FIELD("bias");
    if (v && !cJSON_IsNull(v) && (!cJSON_IsString(v) || strcmp(v->valuestring, "none")))
        BAD("%s: field bias is %s: only \"none\" is supported (lmforge trains no biases in an adapter)", path,
            shown(v, show, sizeof show));
    v = FIELD("layers_to_transform");
    if (v && !cJSON_IsNull(v))
        BAD("%s: field layers_to_transform is %s: only adapters on every layer (null) are supported", path,
            shown(v, show, sizeof show));
    v = FIELD("modules_to_save");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        BAD("%s: field modules_to_save is %s: fully trained modules are not supported (null expected)", path,
            shown(v, show, sizeof show));
    /* Before the patterns: PEFT's all-linear on a Mixtral writes both (the fused gate_up_proj at 2r), and this is
     * the field that says why such an adapter cannot be read. */
    v = FIELD("target_parameters");
    if (v && !cJSON_IsNull(v) && !((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child))
        BAD("%s: field target_parameters is %s: LoRA on parameters (PEFT's ParamWrapper: a mixture's "
            "experts.gate_up_proj / experts.down_proj, the router's gate.weight) is not supported yet, only on "
            "modules (docs/moe.md)", path, shown(v, show, sizeof show));
    static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
    for (int i = 0; i < 2; i++) {
        v = FIELD(patterns[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsObject(v) && !v->child))
            BAD("%s: field %s is %s: per-module ranks and alphas are not supported", path, patterns[i],
                shown(v, show, sizeof show));
    }
    static const char *const unsupported[] = {"exclude_modules", "trainable_token_indices", "layer_replication"};
    for (int i = 0; i < 3; i++) {
        v = FIELD(unsupported[i]);
        if (v && !cJSON_IsNull(v) && !((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child))
            BAD("%s: field %s is %s: not supported (null expected)", path, unsupported[i], shown(v, show, sizeof show));
    }
    v = FIELD("target_modules");
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "all-linear"))
            BAD("%s: field target_modules is %s: a regular expression is not supported (list the module names or "
                "use \"all-linear\")", path, shown(v, show, sizeof show));
        p->targets = lmf_xmalloc(sizeof "all-linear");
        memcpy(p->targets, "all-linear", sizeof "all-linear");
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) {
        const cJSON *e;
        size_t n = 0;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, ','))
                BAD("%s: field target_modules: element %s is not a module name", path, shown(e, show, sizeof show));
            n += strlen(e->valuestring) + 1;
        }
        p->targets = lmf_xmalloc(n + 1);
        n = 0;
        cJSON_ArrayForEach(e, v) n += (size_t)sprintf(p->targets + n, "%s%s", n ? "," : "", e->valuestring);
    } else {
        BAD("%s: field target_modules is %s, expected a list of module names or \"all-linear\"", path,
            shown(v, show, sizeof show));
    }
#undef FIELD
#undef BAD
done:
    cJSON_Delete(j);
    if (s != LMF_OK) free(p->targets), p->targets = NULL;
    return s;
}

/* 0 F32, 1 F16, 2 BF16, -1 otherwise. */
static int st_kind(lmf_dtype dt) { return dt == LMF_DT_F32 ? 0 : dt == LMF_DT_F16 ? 1 : dt == LMF_DT_BF16 ? 2 : -1; }
static int gguf_kind(uint32_t t) {
    return t == LMF_GGML_F32 ? 0 : t == LMF_GGML_F16 ? 1 : t == LMF_GGML_BF16 ? 2 : -1;
}

/* Whether name is one of the adapter's tensor names (key: PEFT's or GGUF's). */
static int expected_name(const lmf_lora *l, const lmf_model_config *c, int gguf, const char *name) {
    char key[KEY_LEN];
    for (int L = 0; L < l->n_layer; L++)
        for (int k = 0; k < l->n_mod; k++)
            for (int b = 0; b < 2; b++) {
                if (gguf) gguf_key(&l->mod[k], L, b ? "b" : "a", key);
                else peft_key(c, &l->mod[k], L, b ? "B" : "A", key);
                if (!strcmp(key, name)) return 1;
            }
    return 0;
}

/* The message for a tensor of the wrong shape. */
static lmf_status bad_shape(const char *path, const char *key, const char *order, int64_t d0, int64_t d1, int e0,
                            int e1, const lmf_lora *l, const lmf_lora_module *m, const lmf_model_config *c) {
    return lmf_fail(LMF_ERR_MISMATCH, "%s: tensor %s: %s [%lld, %lld], expected [%d, %d] (r = %d, %s takes %d inputs "
                    "to %d outputs in this %s model)", path, key, order, (long long)d0, (long long)d1, e0, e1, l->r,
                    m->name, m->in, m->out, lmf_arch_name(c->arch));
}

/* The end of a load: the adapter to *out, or freed when it failed. */
static lmf_status hand_over(lmf_lora *l, lmf_status s, lmf_lora **out) {
    if (s != LMF_OK) lmf_lora_free(l);
    else *out = l;
    return s;
}

/* An adapter tensor as either file format describes it. */
typedef struct {
    int kind;              /* to_f32's kind; < 0: not F32 / F16 / BF16 */
    const char *type_name; /* the file's name for its element type */
    int ndim;
    int64_t d0, d1;        /* safetensors shape, or ggml ne */
    const void *data;
} found_tensor;

static int find_st(const void *src, const char *key, found_tensor *f) {
    const lmf_st_tensor *t = lmf_safetensors_find(src, key);
    if (!t) return 0;
    *f = (found_tensor){st_kind(t->dtype), lmf_dtype_name(t->dtype), t->ndim, t->shape[0],
                        t->ndim > 1 ? t->shape[1] : 1, t->data};
    return 1;
}

static int find_gguf(const void *src, const char *key, found_tensor *f) {
    const lmf_gguf_tensor *t = lmf_gguf_find_tensor(src, key);
    if (!t) return 0;
    *f = (found_tensor){gguf_kind(t->type), lmf_ggml_type_name(t->type), t->n_dims, t->ne[0], t->ne[1], t->data};
    return 1;
}

/* Every A and B of l from a file (gguf: llama.cpp's names and ne order, else PEFT's), checked and converted to fp32;
 * errors name path, the tensor and, for a missing one, hint. */
static lmf_status read_tensors(lmf_lora *l, const lmf_model_config *cfg, int gguf,
                               int (*find)(const void *, const char *, found_tensor *), const void *src,
                               const char *path, const char *hint) {
    for (int L = 0; L < l->n_layer; L++)
        for (int k = 0; k < l->n_mod; k++)
            for (int b = 0; b < 2; b++) {
                const lmf_lora_module *m = &l->mod[k];
                char key[KEY_LEN];
                if (gguf) gguf_key(m, L, b ? "b" : "a", key);
                else peft_key(cfg, m, L, b ? "B" : "A", key);
                found_tensor t;
                if (!find(src, key, &t))
                    return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is missing (%s)", path, key, hint);
                int rows = b ? m->out : l->r, cols = b ? l->r : m->in; /* ggml lists cols first */
                int e0 = gguf ? cols : rows, e1 = gguf ? rows : cols;
                if (t.kind < 0)
                    return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has %s %s; expected F32, F16 or BF16", path, key,
                                    gguf ? "ggml type" : "dtype", t.type_name);
                if (t.ndim != 2 || t.d0 != e0 || t.d1 != e1)
                    return bad_shape(path, key, gguf ? "ne" : "shape", t.d0, t.d1, e0, e1, l, m, cfg);
                to_f32(b ? lmf_lora_B(l, L, k) : lmf_lora_A(l, L, k), t.data, (size_t)e0 * e1, t.kind);
            }
    /* q / k rows from the file's order into the model's */
    reorder_in_place(l, cfg, gguf ? gguf_permutes(cfg) : peft_permutes(cfg), !gguf);
    return LMF_OK;
}

/* PEFT's rule: a target names a module when it is the module's path or a suffix of it after a dot ("q_proj",
 * "self_attn.q_proj", "model.layers.0.self_attn.q_proj"; PEFT >= 0.20 saves "all-linear" as the full paths). */
static int peft_matches(const char *path, const char *t) {
    size_t np = strlen(path), nt = strlen(t);
    return !strcmp(path, t) || (np > nt && path[np - nt - 1] == '.' && !strcmp(path + np - nt, t));
}

/* target_modules (comma-separated, as written) to the names of the family's modules they cover in every layer
 * (names, for lmf_lora_create); refuses a target that names no module of the model and a module adapted in some
 * layers only. */
static lmf_status resolve_targets(const char *path, const char *list, const lmf_model_config *cfg, char *names) {
    if (!strcmp(list, "all-linear")) return snprintf(names, TARGETS_LEN, "all-linear"), LMF_OK;
    lmf_lora *probe;
    LMF_TRY(lmf_lora_create(cfg, lmf_lora_module_names(cfg), 1, 1.0f, 0.0f, 0, &probe)); /* every module */
    lmf_status s = LMF_OK;
    char mp[PATH_LEN], *copy = lmf_xmalloc(strlen(list) + 1), *save = NULL;
    size_t n = 0;
    names[0] = 0;
    strcpy(copy, list);
    for (char *t = strtok_r(copy, ",", &save); t && s == LMF_OK; t = strtok_r(NULL, ",", &save)) {
        int hit = 0;
        for (int k = 0; k < probe->n_mod; k++)
            for (int L = 0; L < probe->n_layer; L++)
                module_path(cfg, &probe->mod[k], L, mp), hit |= peft_matches(mp, t);
        if (!hit)
            s = lmf_fail(LMF_ERR_MISMATCH, "%s: field target_modules: '%s' is not a module of this %s model (%d "
                         "layers; modules: %s, all-linear)", path, t, lmf_arch_name(cfg->arch), cfg->n_layer,
                         lmf_lora_module_names(cfg));
    }
    for (int k = 0; k < probe->n_mod && s == LMF_OK; k++) {
        int layers = 0;
        for (int L = 0; L < probe->n_layer; L++) {
            module_path(cfg, &probe->mod[k], L, mp);
            strcpy(copy, list);
            int any = 0;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) any |= peft_matches(mp, t);
            layers += any;
        }
        if (layers && layers < probe->n_layer)
            s = lmf_fail(LMF_ERR_MISMATCH, "%s: field target_modules adapts %s in %d of the %d layers: lmforge's "
                         "adapters cover every layer", path, probe->mod[k].name, layers, probe->n_layer);
        else if (layers)
            n += (size_t)snprintf(names + n, TARGETS_LEN - n, "%s%s", n ? "," : "", probe->mod[k].name);
    }
    free(copy);
    lmf_lora_free(probe);
    return s;
}

lmf_status lmf_lora_load_peft_files(const char *config_path, const char *tensors_path, const lmf_model_config *cfg,
                                    lmf_lora **out) {
    *out = NULL;
    peft_params pp = {0};
    char targets[TARGETS_LEN];
    LMF_TRY(parse_peft_config(config_path, &pp));
    lmf_status s = resolve_targets(config_path, pp.targets, cfg, targets);
    free(pp.targets);
    LMF_TRY(s);
    lmf_lora *l;
    LMF_TRY(lmf_lora_create(cfg, targets, pp.r, pp.alpha, pp.dropout, pp.rslora, &l));
    lmf_safetensors *st;
    s = lmf_safetensors_open(tensors_path, &st);
    if (s != LMF_OK) return lmf_lora_free(l), s;
    for (int i = 0; i < st->n_tensors; i++)
        if (!expected_name(l, cfg, 0, st->tensors[i].name)) {
            s = lmf_fail(LMF_ERR_MISMATCH, "%s: unexpected tensor %s: not a lora_A / lora_B of the %d layers and the "
                         "target modules (%s) of this %s model", tensors_path, st->tensors[i].name, l->n_layer,
                         targets, lmf_arch_name(cfg->arch));
            goto done;
        }
    char hint[4400];
    snprintf(hint, sizeof hint, "%s targets %s", config_path, targets);
    s = read_tensors(l, cfg, 0, find_st, st, tensors_path, hint);
done:
    lmf_safetensors_close(st);
    return hand_over(l, s, out);
}

lmf_status lmf_lora_load_peft(const char *dir, const lmf_model_config *cfg, lmf_lora **out) {
    char cp[4096], tp[4096];
    snprintf(cp, sizeof cp, "%s/adapter_config.json", dir);
    snprintf(tp, sizeof tp, "%s/adapter_model.safetensors", dir);
    return lmf_lora_load_peft_files(cp, tp, cfg, out);
}

/* ---- GGUF ------------------------------------------------------------------------------------------------------ */

static lmf_status gguf_family(const lmf_model_config *cfg, const char *what) {
    if (cfg->arch == LMF_ARCH_OPT)
        return lmf_fail(LMF_ERR_ARG, "%s: llama.cpp has no OPT architecture; GGUF adapters are for llama and gpt2 "
                        "models (save a PEFT folder instead)", what);
    return LMF_OK;
}

lmf_status lmf_lora_save_gguf(const lmf_lora *l, const lmf_model_config *cfg, const char *path) {
    LMF_TRY(gguf_family(cfg, path));
    float *p = ordered(l, cfg, gguf_permutes(cfg), 1);
    lmf_gguf_writer *w = lmf_gguf_writer_create(0);
    lmf_gguf_writer_set_str(w, "general.architecture", gguf_arch(cfg));
    lmf_gguf_writer_set_str(w, "general.type", "adapter");
    lmf_gguf_writer_set_str(w, "adapter.type", "lora");
    /* llama.cpp scales by alpha / r: rsLoRA's alpha / sqrt r is that with alpha * sqrt r */
    lmf_gguf_writer_set_f32(w, "adapter.lora.alpha", l->rslora ? l->alpha * sqrtf((float)l->r) : l->alpha);
    char key[KEY_LEN];
    for (int L = 0; L < l->n_layer; L++)
        for (int k = 0; k < l->n_mod; k++) {
            const lmf_lora_module *m = &l->mod[k];
            const float *A = p + (lmf_lora_A(l, L, k) - l->params);
            int64_t ne_a[2] = {m->in, l->r}, ne_b[2] = {l->r, m->out};
            gguf_key(m, L, "a", key);
            lmf_gguf_writer_add_tensor(w, key, LMF_GGML_F32, 2, ne_a, A);
            gguf_key(m, L, "b", key);
            lmf_gguf_writer_add_tensor(w, key, LMF_GGML_F32, 2, ne_b, A + (size_t)l->r * m->in);
        }
    lmf_status s = lmf_gguf_writer_write(w, path);
    lmf_gguf_writer_free(w);
    free(p);
    return s;
}

/* The modules of cfg's family whose layer-0 lora_a is in g, comma-separated into targets; r from the first. */
static lmf_status gguf_targets(const lmf_gguf *g, const lmf_model_config *cfg, char *targets, int *r) {
    lmf_lora *probe;
    LMF_TRY(lmf_lora_create(cfg, lmf_lora_module_names(cfg), 1, 1.0f, 0.0f, 0, &probe)); /* every module */
    size_t n = 0;
    *r = 0;
    targets[0] = 0;
    for (int k = 0; k < probe->n_mod; k++) {
        char key[KEY_LEN];
        gguf_key(&probe->mod[k], 0, "a", key);
        const lmf_gguf_tensor *t = lmf_gguf_find_tensor(g, key);
        if (!t) continue;
        if (!*r) *r = (int)(t->ne[1] > 4096 ? 0 : t->ne[1]);
        n += (size_t)snprintf(targets + n, TARGETS_LEN - n, "%s%s", n ? "," : "", probe->mod[k].name);
    }
    lmf_lora_free(probe);
    if (!n)
        return lmf_fail(LMF_ERR_FORMAT, "%s: no LoRA tensors of a %s model (expected names such as "
                        "blk.0.%s.weight.lora_a)", g->path, lmf_arch_name(cfg->arch),
                        cfg->arch == LMF_ARCH_GPT2 ? "attn_qkv" : "attn_q");
    if (*r < 1)
        return lmf_fail(LMF_ERR_FORMAT, "%s: the first lora_a tensor's rank (ne[1]) is not in [1, 4096]", g->path);
    return LMF_OK;
}

/* general.type, adapter.type and general.architecture as a LoRA adapter for cfg's family has them. */
static lmf_status gguf_check_kind(const lmf_gguf *g, const lmf_model_config *cfg) {
    const char *v;
    LMF_TRY(lmf_gguf_get_str(g, "general.type", &v));
    if (strcmp(v, "adapter"))
        return lmf_fail(LMF_ERR_MISMATCH, "%s: general.type is \"%s\", expected \"adapter\" (a model, not a LoRA "
                        "adapter?)", g->path, v);
    LMF_TRY(lmf_gguf_get_str(g, "adapter.type", &v));
    if (strcmp(v, "lora"))
        return lmf_fail(LMF_ERR_MISMATCH, "%s: adapter.type is \"%s\", expected \"lora\"", g->path, v);
    LMF_TRY(lmf_gguf_get_str(g, "general.architecture", &v));
    if (strcmp(v, gguf_arch(cfg)))
        return lmf_fail(LMF_ERR_MISMATCH, "%s: general.architecture is \"%s\", but the model is %s", g->path, v,
                        gguf_arch(cfg));
    return LMF_OK;
}

lmf_status lmf_lora_load_gguf(const char *path, const lmf_model_config *cfg, lmf_lora **out) {
    *out = NULL;
    LMF_TRY(gguf_family(cfg, path));
    lmf_gguf *g;
    LMF_TRY(lmf_gguf_open(path, &g));
    lmf_lora *l = NULL;
    char targets[TARGETS_LEN];
    int r;
    float alpha = 0;
    lmf_status s = gguf_check_kind(g, cfg);
    if (s == LMF_OK && lmf_gguf_find(g, "adapter.lora.alpha")) s = lmf_gguf_get_f32(g, "adapter.lora.alpha", &alpha);
    if (s == LMF_OK && lmf_gguf_find(g, "adapter.lora.alpha") && !(alpha > 0 && alpha < 1e30f))
        s = lmf_fail(LMF_ERR_FORMAT, "%s: adapter.lora.alpha = %g, expected a positive number", path, alpha);
    if (s == LMF_OK) s = gguf_targets(g, cfg, targets, &r);
    if (s == LMF_OK) s = lmf_lora_create(cfg, targets, r, alpha > 0 ? alpha : (float)r, 0.0f, 0, &l);
    if (s != LMF_OK) goto done;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!expected_name(l, cfg, 1, g->tensors[i].name)) {
            s = lmf_fail(LMF_ERR_MISMATCH, "%s: unexpected tensor %s: not a lora_a / lora_b of the %d layers and the "
                         "modules (%s) of this %s model", path, g->tensors[i].name, l->n_layer, targets,
                         lmf_arch_name(cfg->arch));
            goto done;
        }
    char hint[320];
    snprintf(hint, sizeof hint, "layer 0 adapts %s", targets);
    s = read_tensors(l, cfg, 1, find_gguf, g, path, hint);
done:
    lmf_gguf_close(g);
    return hand_over(l, s, out);
}
