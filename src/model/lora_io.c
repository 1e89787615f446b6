/* lora_io.c — LoRA adapters as PEFT folders and GGUF files (see lora_io.h for both layouts). */
#include "model/lora_io.h"

#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/quant.h"
#include "model/export.h"

#include <cjson/cJSON.h>
#include <ctype.h>
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
    if (lmf_arch_is_llama_family(c->arch)) { /* a shared expert's: mlp.shared_expert.gate_proj, mlp.shared_expert_gate */
        pre = "model.layers", sub = m->kind == LMF_LORA_LINEAR && m->m0 < 4 ? "self_attn." : "mlp.";
    } else if (c->arch == LMF_ARCH_OPT) {
        pre = "model.decoder.layers", sub = m->m0 < 4 ? "self_attn." : "";
    } else { /* gpt2: the two c_proj already carry their parent */
        pre = "transformer.h";
        sub = !strcmp(m->name, "c_attn") ? "attn." : !strcmp(m->name, "c_fc") ? "mlp." : "";
    }
    snprintf(buf, PATH_LEN, "%s.%d.%s%s", pre, L, sub, m->name);
}

/* The module path of a MoE's parameter adapter k in layer L: PEFT's ParamWrapper wraps the module holding the
 * parameter, the router's ("mlp.gate") or the experts' ("mlp.experts"); with both expert parameters targeted it
 * nests the wrappers, gate_up_proj's inside, so its keys are under "mlp.experts.base_layer" and down_proj's under
 * "mlp.experts" (tests/reference/peft_moe_targets.py). */
static void param_path(const lmf_lora *l, int k, int L, char *buf) {
    const lmf_lora_module *m = &l->mod[k];
    int nested = m->kind == LMF_LORA_EXPERTS_GATE_UP && lmf_lora_find(l, LMF_LORA_EXPERTS_DOWN) >= 0;
    snprintf(buf, PATH_LEN, "model.layers.%d.mlp.%s", L,
             m->kind == LMF_LORA_ROUTER ? "gate" : nested ? "experts.base_layer" : "experts");
}

/* PEFT's key of module k's lora_A or lora_B (ab "A" / "B") in layer L. */
static void peft_key(const lmf_model_config *c, const lmf_lora *l, int k, int L, const char *ab, char *buf) {
    char path[PATH_LEN];
    if (lmf_lora_is_module(l->mod[k].kind)) module_path(c, &l->mod[k], L, path);
    else param_path(l, k, L, path);
    snprintf(buf, KEY_LEN, "base_model.model.%s.lora_%s.weight", path, ab);
}

/* llama.cpp's name of the base tensor module m adds to (llama and gpt2; gpt2's c_attn and phi3's qkv_proj are the
 * fused attn_qkv, phi3's gate_up_proj the fused ffn_up (gate rows, then up); a
 * MoE's router ffn_gate_inp, its experts' stacks ffn_{gate,up,down}_exps, a shared expert's ffn_{gate,up,down}_shexp
 * and Qwen2-MoE's gate ffn_gate_inp_shexp, which llama.cpp's qwen2moe multiplies through build_lora_mm as any
 * weight). part: gate_up_proj's two stacks, gate (0) and up (1), each with its own pair of tensors (the same A). */
static const char *gguf_base(const lmf_lora_module *m, int part) {
    static const char *const names[LMF_LAYER_MATRICES] = {"attn_q", "attn_k",  "attn_v",  "attn_output",
                                                          "ffn_gate", "ffn_up", "ffn_down"};
    static const char *const shexp[3] = {"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"};
    switch (m->kind) {
    case LMF_LORA_SHARED_GATE: return "ffn_gate_inp_shexp";
    case LMF_LORA_ROUTER: return "ffn_gate_inp";
    case LMF_LORA_EXPERTS_GATE_UP: return part ? "ffn_up_exps" : "ffn_gate_exps";
    case LMF_LORA_EXPERTS_DOWN: return "ffn_down_exps";
    default:
        if (!strncmp(m->name, "shared_expert.", 14)) return shexp[m->m0 - 4];
        if (m->m0 == 4 && m->m1 == 6) return "ffn_up"; /* phi3's gate_up_proj: llama.cpp's fused ffn_up */
        return m->m1 - m->m0 == 3 ? "attn_qkv" : names[m->m0];
    }
}

static void gguf_key(const lmf_lora_module *m, int part, int L, const char *ab, char *buf) {
    snprintf(buf, KEY_LEN, "blk.%d.%s.weight.lora_%s", L, gguf_base(m, part), ab);
}

/* Stacks (files) a module has in GGUF: gate_up_proj is llama.cpp's gate and up. */
static int gguf_parts(const lmf_lora_module *m) { return m->kind == LMF_LORA_EXPERTS_GATE_UP ? 2 : 1; }

/* B of an expert module between lmforge's E blocks (out, r) and PEFT's (out, r E), expert e's column j at j E + e
 * there (the experts interleaved: docs/moe.md). */
static void interleave(float *dst, const float *src, int E, int out, int r, int to_peft) {
    for (int e = 0; e < E; e++)
        for (int o = 0; o < out; o++)
            for (int j = 0; j < r; j++) {
                size_t ours = ((size_t)e * out + o) * r + j, peft = (size_t)o * r * E + (size_t)j * E + e;
                if (to_peft) dst[peft] = src[ours];
                else dst[ours] = src[peft];
            }
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

/* PEFT's rank_pattern / alpha_pattern key for module m: a regular expression matching its path's end. */
static void pattern_key(const lmf_lora_module *m, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, ".*\\.");
    for (const char *c = m->name; *c && o + 3 < n; c++) {
        if (*c == '.') buf[o++] = '\\';
        buf[o++] = *c;
    }
    buf[o] = 0;
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
    int params = 0, pattern = 0;
    for (int k = 0; k < l->n_mod; k++) {
        const char *n = l->mod[k].name;
        params += !lmf_lora_is_module(l->mod[k].kind), pattern |= l->mod[k].r != l->r || l->mod[k].alpha != l->alpha;
        if (!lmf_lora_is_module(l->mod[k].kind) || (both && !strcmp(n, "mlp.c_proj"))) continue;
        cJSON_AddItemToArray(t, cJSON_CreateString(both && !strcmp(n, "attn.c_proj") ? "c_proj" : n));
    }
    if (params) { /* a MoE's router and experts: PEFT's target_parameters, with per-parameter ranks */
        t = cJSON_AddArrayToObject(j, "target_parameters");
        for (int k = 0; k < l->n_mod; k++)
            if (!lmf_lora_is_module(l->mod[k].kind)) cJSON_AddItemToArray(t, cJSON_CreateString(l->mod[k].name));
    }
    if (pattern) {
        cJSON *rp = cJSON_AddObjectToObject(j, "rank_pattern"), *ap = cJSON_AddObjectToObject(j, "alpha_pattern");
        for (int k = 0; k < l->n_mod; k++) {
            char key[64];
            if (l->mod[k].r == l->r && l->mod[k].alpha == l->alpha) continue;
            pattern_key(&l->mod[k], key, sizeof key);
            cJSON_AddNumberToObject(rp, key, l->mod[k].r);
            cJSON_AddNumberToObject(ap, key, tidy(l->mod[k].alpha));
        }
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
            int E = m->n_exp, r = m->r;
            float *A = p + (lmf_lora_A(l, L, k) - l->params), *Bm = A + (size_t)E * r * m->in;
            if (E > 1) { /* PEFT's B: the experts' columns interleaved */
                float *tmp = lmf_xmalloc(sizeof(float) * (size_t)E * m->out * r);
                interleave(tmp, Bm, E, m->out, r, 1);
                memcpy(Bm, tmp, sizeof(float) * (size_t)E * m->out * r);
                free(tmp);
            }
            peft_key(cfg, l, k, L, "A", names + (size_t)i * KEY_LEN);
            peft_key(cfg, l, k, L, "B", names + (size_t)(i + 1) * KEY_LEN);
            t[i] = (lmf_st_out){names + (size_t)i * KEY_LEN, LMF_DT_F32, 2, {(int64_t)E * r, m->in}, A, NULL, NULL};
            t[i + 1] = (lmf_st_out){names + (size_t)(i + 1) * KEY_LEN, LMF_DT_F32, 2, {m->out, (int64_t)E * r}, Bm,
                                    NULL, NULL};
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
    char *targets;             /* target_modules as written, comma-separated (malloc'd); "" when none */
    char params[TARGETS_LEN];  /* target_parameters as lmforge's module names, comma-separated */
    int n_pat;                 /* rank_pattern / alpha_pattern, resolved to module names */
    char pat_name[LMF_LORA_MAX_MOD][24];
    int pat_r[LMF_LORA_MAX_MOD];
    float pat_alpha[LMF_LORA_MAX_MOD];
} peft_params;

/* A rank_pattern / alpha_pattern key as a module name: PEFT matches the key as a regular expression against the end
 * of a module's (or parameter's) path; lmforge takes the keys that name one module in every layer ("gate_up_proj",
 * ".*\\.gate_up_proj", ".*\\.experts\\.gate_up_proj$"), NULL for others. */
static const char *pattern_module(const char *key, char *buf, size_t n) {
    size_t o = 0;
    if (!strncmp(key, "^", 1)) key++;
    if (!strncmp(key, ".*", 2)) key += 2;
    if (!strncmp(key, "\\.", 2)) key += 2;
    for (const char *c = key; *c && o + 1 < n; c++) {
        if (*c == '$' && !c[1]) break;
        if (*c == '\\' && c[1] == '.') c++;
        else if (!(isalnum((unsigned char)*c) || *c == '_')) return NULL; /* another regular expression */
        buf[o++] = *c;
    }
    buf[o] = 0;
    const char *param = lmf_lora_param_name(buf);
    return param ? param : o && !strchr(buf, '.') ? buf : NULL; /* a module name, or a path this does not resolve */
}

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
    /* a mixture of experts' router and experts (PEFT's ParamWrapper; docs/moe.md) */
    v = FIELD("target_parameters");
    p->params[0] = 0;
    if (v && !cJSON_IsNull(v) && !cJSON_IsArray(v))
        BAD("%s: field target_parameters is %s, expected a list of parameter names", path,
            shown(v, show, sizeof show));
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        size_t n = 0;
        cJSON_ArrayForEach(e, v) {
            const char *name = cJSON_IsString(e) ? lmf_lora_param_name(e->valuestring) : NULL;
            if (!name)
                BAD("%s: field target_parameters: element %s is not a mixture of experts' router or expert "
                    "parameter lmforge adapts (gate.weight, gate_up_proj, down_proj, as PEFT spells them: "
                    "experts.gate_up_proj, mlp.experts.down_proj, ...)", path, shown(e, show, sizeof show));
            /* experts.down_proj: a bare down_proj in lmforge's target list would also name a shared expert's */
            const char *pre = strcmp(name, "gate.weight") ? "experts." : "";
            char full[40];
            snprintf(full, sizeof full, "%s%s", pre, name);
            if (!strstr(p->params, full))
                n += (size_t)snprintf(p->params + n, sizeof p->params - n, "%s%s", n ? "," : "", full);
        }
    }
    /* per-parameter ranks and alphas (PEFT's all-linear on a Mixtral: gate_up_proj at 2r) */
    static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
    p->n_pat = 0;
    for (int i = 0; i < 2; i++) {
        v = FIELD(patterns[i]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsObject(v))
            BAD("%s: field %s is %s, expected an object", path, patterns[i], shown(v, show, sizeof show));
        const cJSON *e;
        const cJSON *obj = cJSON_IsObject(v) ? v : NULL;
        cJSON_ArrayForEach(e, obj) {
            char buf[64];
            const char *name = pattern_module(e->string, buf, sizeof buf);
            int q = 0;
            if (!name)
                BAD("%s: field %s: key \"%s\" is not a module or parameter name lmforge can resolve (per-layer "
                    "patterns are not supported; a key such as \".*\\\\.gate_up_proj\" is)", path, patterns[i],
                    e->string);
            if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || e->valuedouble > 4096 ||
                (i == 0 && e->valuedouble != floor(e->valuedouble)))
                BAD("%s: field %s: \"%s\" is %s, expected a positive %s", path, patterns[i], e->string,
                    shown(e, show, sizeof show), i ? "number" : "integer");
            while (q < p->n_pat && strcmp(p->pat_name[q], name)) q++;
            if (q == p->n_pat) {
                if (q == LMF_LORA_MAX_MOD) BAD("%s: field %s: more keys than modules", path, patterns[i]);
                snprintf(p->pat_name[q], sizeof p->pat_name[q], "%s", name);
                p->pat_r[q] = p->r, p->pat_alpha[q] = p->alpha, p->n_pat++;
            }
            if (i == 0) p->pat_r[q] = (int)e->valuedouble;
            else p->pat_alpha[q] = (float)e->valuedouble;
        }
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
    } else if (p->params[0] && (!v || cJSON_IsNull(v) || (cJSON_IsArray(v) && !v->child))) {
        p->targets = lmf_xcalloc(1, 1); /* parameters only */
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
            for (int part = 0; part < (gguf ? gguf_parts(&l->mod[k]) : 1); part++)
                for (int b = 0; b < 2; b++) {
                    if (gguf) gguf_key(&l->mod[k], part, L, b ? "b" : "a", key);
                    else peft_key(c, l, k, L, b ? "B" : "A", key);
                    if (!strcmp(key, name)) return 1;
                }
    return 0;
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
    int64_t d[3];          /* safetensors shape, or ggml ne (1 past ndim) */
    const void *data;
} found_tensor;

static int find_st(const void *src, const char *key, found_tensor *f) {
    const lmf_st_tensor *t = lmf_safetensors_find(src, key);
    if (!t) return 0;
    *f = (found_tensor){st_kind(t->dtype), lmf_dtype_name(t->dtype), t->ndim,
                        {t->shape[0], t->ndim > 1 ? t->shape[1] : 1, t->ndim > 2 ? t->shape[2] : 1}, t->data};
    return 1;
}

static int find_gguf(const void *src, const char *key, found_tensor *f) {
    const lmf_gguf_tensor *t = lmf_gguf_find_tensor(src, key);
    if (!t) return 0;
    *f = (found_tensor){gguf_kind(t->type), lmf_ggml_type_name(t->type), t->n_dims, {t->ne[0], t->ne[1], t->ne[2]},
                        t->data};
    return 1;
}

/* One tensor of module m by key, checked against its expected dimensions e (n of them, in the file's order) and
 * converted into dst. */
static lmf_status read_one(int (*find)(const void *, const char *, found_tensor *), const void *src,
                           const char *path, const char *key, const char *hint, int gguf, const int *e, int n,
                           const lmf_lora_module *m, const lmf_model_config *c, float *dst) {
    found_tensor t;
    if (!find(src, key, &t)) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is missing (%s)", path, key, hint);
    if (t.kind < 0)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has %s %s; expected F32, F16 or BF16", path, key,
                        gguf ? "ggml type" : "dtype", t.type_name);
    int ok = t.ndim == n;
    for (int i = 0; i < n; i++) ok &= t.d[i] == e[i];
    if (!ok) {
        char got[64], want[64];
        snprintf(got, sizeof got, "[%lld, %lld%s", (long long)t.d[0], (long long)t.d[1], t.ndim > 2 ? ", " : "]");
        if (t.ndim > 2) snprintf(got + strlen(got), sizeof got - strlen(got), "%lld]", (long long)t.d[2]);
        snprintf(want, sizeof want, n > 2 ? "[%d, %d, %d]" : "[%d, %d]", e[0], e[1], n > 2 ? e[2] : 0);
        char experts[32] = "";
        if (m->n_exp > 1) snprintf(experts, sizeof experts, " in each of %d experts", m->n_exp);
        return lmf_fail(LMF_ERR_MISMATCH, "%s: tensor %s: %s %s, expected %s (r = %d, %s takes %d inputs to %d "
                        "outputs%s in this %s model)", path, key, gguf ? "ne" : "shape", got, want, m->r, m->name,
                        m->in, m->out, experts, lmf_arch_name(c->arch));
    }
    size_t count = 1;
    for (int i = 0; i < n; i++) count *= (size_t)e[i];
    to_f32(dst, t.data, count, t.kind);
    return LMF_OK;
}

/* Every A and B of l from a file (gguf: llama.cpp's names and ne order, else PEFT's), checked and converted to fp32;
 * errors name path, the tensor and, for a missing one, hint. */
static lmf_status read_tensors(lmf_lora *l, const lmf_model_config *cfg, int gguf,
                               int (*find)(const void *, const char *, found_tensor *), const void *src,
                               const char *path, const char *hint) {
    for (int L = 0; L < l->n_layer; L++)
        for (int k = 0; k < l->n_mod; k++) {
            const lmf_lora_module *m = &l->mod[k];
            int E = m->n_exp, r = m->r;
            float *A = lmf_lora_A(l, L, k), *Bm = lmf_lora_B(l, L, k);
            char key[KEY_LEN];
            if (!gguf) { /* PEFT: A (E r, in), B (out, E r), the experts' columns interleaved */
                int ea[2] = {E * r, m->in}, eb[2] = {m->out, E * r};
                peft_key(cfg, l, k, L, "A", key);
                LMF_TRY(read_one(find, src, path, key, hint, 0, ea, 2, m, cfg, A));
                peft_key(cfg, l, k, L, "B", key);
                float *tmp = E > 1 ? lmf_xmalloc(sizeof(float) * (size_t)E * m->out * r) : Bm;
                lmf_status s = read_one(find, src, path, key, hint, 0, eb, 2, m, cfg, tmp);
                if (E > 1 && s == LMF_OK) interleave(Bm, tmp, E, m->out, r, 0);
                if (E > 1) free(tmp);
                LMF_TRY(s);
                continue;
            }
            /* GGUF (ggml ne, innermost first): lora_a [in, r, E], lora_b [r, out, E] per stack; gate_up_proj is the
             * gate and up stacks, which must share A (llama.cpp keeps two adapters where PEFT keeps one) */
            int parts = gguf_parts(m), rows = m->out / parts;
            for (int part = 0; part < parts; part++) {
                int ea[3] = {m->in, r, E}, eb[3] = {r, rows, E};
                float *a = part ? lmf_xmalloc(sizeof(float) * (size_t)E * r * m->in) : A;
                gguf_key(m, part, L, "a", key);
                lmf_status s = read_one(find, src, path, key, hint, 1, ea, E > 1 ? 3 : 2, m, cfg, a);
                if (s == LMF_OK && part && memcmp(a, A, sizeof(float) * (size_t)E * r * m->in))
                    s = lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s differs from %s's lora_a: lmforge's expert adapter "
                                 "is PEFT's, one A for the fused gate_up_proj, so the gate and up stacks must share "
                                 "it", path, key, gguf_base(m, 0));
                if (part) free(a);
                LMF_TRY(s);
                float *b = lmf_xmalloc(sizeof(float) * (size_t)E * rows * r);
                gguf_key(m, part, L, "b", key);
                s = read_one(find, src, path, key, hint, 1, eb, E > 1 ? 3 : 2, m, cfg, b);
                for (int e = 0; s == LMF_OK && e < E; e++)
                    memcpy(Bm + ((size_t)e * m->out + (size_t)part * rows) * r, b + (size_t)e * rows * r,
                           sizeof(float) * (size_t)rows * r);
                free(b);
                LMF_TRY(s);
            }
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
    names[0] = 0;
    if (!list[0]) return LMF_OK;
    /* on a MoE PEFT's all-linear modules are q/k/v/o and a shared expert's Linears; target_parameters the rest */
    if (!strcmp(list, "all-linear"))
        return snprintf(names, TARGETS_LEN, "%s",
                        !cfg->n_expert         ? "all-linear"
                        : !cfg->shared_ffn_dim ? "q_proj,k_proj,v_proj,o_proj"
                        : cfg->shared_gate     ? "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,"
                                                 "shared_expert_gate"
                                               : "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"),
               LMF_OK;
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
            for (int L = 0; L < probe->n_layer && lmf_lora_is_module(probe->mod[k].kind); L++)
                module_path(cfg, &probe->mod[k], L, mp), hit |= peft_matches(mp, t);
        if (!hit)
            s = lmf_fail(LMF_ERR_MISMATCH, "%s: field target_modules: '%s' is not a module of this %s model (%d "
                         "layers; modules: %s, all-linear)", path, t, lmf_arch_name(cfg->arch), cfg->n_layer,
                         lmf_lora_module_names(cfg));
    }
    for (int k = 0; k < probe->n_mod && s == LMF_OK && lmf_lora_is_module(probe->mod[k].kind); k++) {
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
    if (pp.params[0]) {
        if (!cfg->n_expert)
            return lmf_fail(LMF_ERR_MISMATCH, "%s: field target_parameters (%s) adapts a mixture of experts, but the "
                            "model is dense", config_path, pp.params);
        size_t n = strlen(targets);
        snprintf(targets + n, TARGETS_LEN - n, "%s%s", n ? "," : "", pp.params);
    }
    lmf_lora *l;
    const char *pn[LMF_LORA_MAX_MOD];
    for (int i = 0; i < pp.n_pat; i++) pn[i] = pp.pat_name[i];
    LMF_TRY(lmf_lora_create_pattern(cfg, targets, pp.r, pp.alpha, pp.dropout, pp.rslora, pp.n_pat, pn, pp.pat_r,
                                    pp.pat_alpha, &l));
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
    lmf_gguf_writer_set_str(w, "general.architecture", lmf_gguf_arch(cfg));
    lmf_gguf_writer_set_str(w, "general.type", "adapter");
    lmf_gguf_writer_set_str(w, "adapter.type", "lora");
    /* llama.cpp scales by alpha / r: rsLoRA's alpha / sqrt r is that with alpha * sqrt r */
    float file_alpha = l->rslora ? l->alpha * sqrtf((float)l->r) : l->alpha;
    lmf_gguf_writer_set_f32(w, "adapter.lora.alpha", file_alpha);
    char key[KEY_LEN];
    /* the experts' B stacks are new arrays (gate and up split, B scaled): kept until the file is written */
    float **extra = lmf_xcalloc((size_t)l->n_layer * l->n_mod * 2 + 1, sizeof *extra);
    int n_extra = 0;
    for (int L = 0; L < l->n_layer; L++)
        for (int k = 0; k < l->n_mod; k++) {
            const lmf_lora_module *m = &l->mod[k];
            int E = m->n_exp, r = m->r, parts = gguf_parts(m), rows = m->out / parts;
            const float *A = p + (lmf_lora_A(l, L, k) - l->params), *Bm = A + (size_t)E * r * m->in;
            /* llama.cpp scales every tensor pair by the file's one alpha over its own rank: a module of another
             * rank or alpha (all-linear's gate_up_proj at 2r) has its B scaled to keep its scale */
            float f = m->sr * (float)r / (float)l->r;
            int nd = E > 1 ? 3 : 2;
            for (int part = 0; part < parts; part++) {
                int64_t ne_a[3] = {m->in, r, E}, ne_b[3] = {r, rows, E};
                const float *b = Bm;
                if (E > 1 || f != 1.0f) {
                    float *t = extra[n_extra++] = lmf_xmalloc(sizeof(float) * (size_t)E * rows * r);
                    for (int e = 0; e < E; e++)
                        for (size_t i = 0; i < (size_t)rows * r; i++)
                            t[(size_t)e * rows * r + i] = f * Bm[((size_t)e * m->out + (size_t)part * rows) * r + i];
                    b = t;
                }
                gguf_key(m, part, L, "a", key);
                lmf_gguf_writer_add_tensor(w, key, LMF_GGML_F32, nd, ne_a, A);
                gguf_key(m, part, L, "b", key);
                lmf_gguf_writer_add_tensor(w, key, LMF_GGML_F32, nd, ne_b, b);
            }
        }
    lmf_status s = lmf_gguf_writer_write(w, path);
    lmf_gguf_writer_free(w);
    for (int i = 0; i < n_extra; i++) free(extra[i]);
    free(extra);
    free(p);
    return s;
}

/* The modules of cfg's family whose layer-0 lora_a is in g, comma-separated into targets; r from the first; the
 * ranks of the others (a MoE's expert stacks may differ: all-linear's gate_up_proj) as patterns, each alpha
 * scaled with its rank (so the module's scale is r's, as PEFT's all-linear has it: 2r, 2 alpha); llama.cpp's
 * scale, alpha over the tensor's own rank, is then kept by scaling B (lmf_lora_load_gguf). */
static lmf_status gguf_targets(const lmf_gguf *g, const lmf_model_config *cfg, char *targets, int *r, float alpha,
                               int *n_pat, char (*pat_name)[24], int *pat_r, float *pat_alpha) {
    lmf_lora *probe;
    LMF_TRY(lmf_lora_create(cfg, lmf_lora_module_names(cfg), 1, 1.0f, 0.0f, 0, &probe)); /* every module */
    size_t n = 0;
    *r = 0, *n_pat = 0;
    targets[0] = 0;
    for (int k = 0; k < probe->n_mod; k++) {
        char key[KEY_LEN];
        gguf_key(&probe->mod[k], 0, 0, "a", key);
        const lmf_gguf_tensor *t = lmf_gguf_find_tensor(g, key);
        if (!t) continue;
        int rk = (int)(t->ne[1] > 512 ? 0 : t->ne[1]);
        if (!*r) *r = rk;
        if (rk != *r && rk > 0) {
            snprintf(pat_name[*n_pat], 24, "%s", probe->mod[k].name);
            pat_r[*n_pat] = rk, pat_alpha[(*n_pat)++] = (alpha > 0 ? alpha : (float)*r) * (float)rk / (float)*r;
        }
        n += (size_t)snprintf(targets + n, TARGETS_LEN - n, "%s%s%s", n ? "," : "",
                              probe->mod[k].n_exp > 1 ? "experts." : "", probe->mod[k].name);
    }
    lmf_lora_free(probe);
    if (!n)
        return lmf_fail(LMF_ERR_FORMAT, "%s: no LoRA tensors of a %s model (expected names such as "
                        "blk.0.%s.weight.lora_a)", g->path, lmf_arch_name(cfg->arch),
                        cfg->arch == LMF_ARCH_GPT2 ? "attn_qkv" : "attn_q");
    if (*r < 1)
        return lmf_fail(LMF_ERR_FORMAT, "%s: the first lora_a tensor's rank (ne[1]) is not in [1, 512]", g->path);
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
    if (strcmp(v, lmf_gguf_arch(cfg)))
        return lmf_fail(LMF_ERR_MISMATCH, "%s: general.architecture is \"%s\", but the model is %s", g->path, v,
                        lmf_gguf_arch(cfg));
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
    int n_pat = 0, pat_r[LMF_LORA_MAX_MOD];
    char pat_name[LMF_LORA_MAX_MOD][24];
    float pat_alpha[LMF_LORA_MAX_MOD];
    const char *pn[LMF_LORA_MAX_MOD];
    if (s == LMF_OK) s = gguf_targets(g, cfg, targets, &r, alpha, &n_pat, pat_name, pat_r, pat_alpha);
    for (int i = 0; i < n_pat; i++) pn[i] = pat_name[i];
    if (s == LMF_OK)
        s = lmf_lora_create_pattern(cfg, targets, r, alpha > 0 ? alpha : (float)r, 0.0f, 0, n_pat, pn, pat_r,
                                    pat_alpha, &l);
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
    for (int L = 0; s == LMF_OK && L < l->n_layer; L++) /* llama.cpp scales B by alpha / its rank: B r_k / r here */
        for (int k = 0; k < l->n_mod; k++) {
            const lmf_lora_module *m = &l->mod[k];
            float f = (float)l->r / (float)m->r, *Bm = lmf_lora_B(l, L, k);
            for (size_t i = 0; f != 1.0f && i < (size_t)m->n_exp * m->out * m->r; i++) Bm[i] *= f;
        }
done:
    lmf_gguf_close(g);
    return hand_over(l, s, out);
}
