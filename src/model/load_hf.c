/* load_hf.c — a Hugging Face model folder as inference weights (weights.h).
 *
 * A folder holds config.json and either model.safetensors or shards model-0000i-of-0000n.safetensors listed in
 * model.safetensors.index.json ({"weight_map": {tensor name: shard file}}); model.safetensors wins when both
 * exist, as in transformers. F32, F16 and BF16 tensors are used in place from the mapping; only GPT-2's Conv1D
 * weights, stored (in, out), are transposed into owned buffers (and 1-D tensors become owned fp32 copies).
 *
 * Families (config.json "model_type") and their tensor names (weights (out, in) unless noted):
 *   llama: model.embed_tokens, model.norm, lm_head (absent when tie_word_embeddings), model.layers.N.
 *          {input_layernorm, post_attention_layernorm, self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}.weight.
 *          Q/K rows are in rotate_half order, so RoPE runs as LMF_POS_ROPE_HALF. head_dim (absent: hidden_size /
 *          num_attention_heads) is the head size of every llama-family type below: q_proj (heads x head_dim,
 *          hidden_size), k/v_proj (kv heads x head_dim, hidden_size), o_proj (hidden_size, heads x head_dim).
 *          Refused: rope_scaling, attention or MLP biases, hidden_act other than silu.
 *   mixtral: llama's names, the FFN a mixture of experts (moe.h): num_local_experts, num_experts_per_tok,
 *          router_aux_loss_coef; model.layers.N.block_sparse_moe.{gate, experts.E.{w1 gate, w3 up, w2 down}}.weight
 *          (what transformers 5.24 saves) or mlp.gate.weight + mlp.experts.{gate_up_proj (E, 2F, C), down_proj
 *          (E, C, F)} (transformers 5's fused layout). sliding_window as mistral's (absent: none).
 *   smollm3: llama's names and fields; no_rope_layers / no_rope_layer_interval: cfg.nope_interval (every Nth layer
 *          without RoPE). Refused: another pattern of NoPE layers, use_sliding_window true.
 *   mistral: llama's names and fields; sliding_window (absent: 4096, as MistralConfig; null: none) becomes
 *          cfg.sliding_window when it is shorter than max_position_embeddings.
 *   qwen2: llama's names plus model.layers.N.self_attn.{q,k,v}_proj.bias (o_proj has none). Refused: sliding-window
 *          attention (use_sliding_window true, or a layer_types entry other than "full_attention").
 *   qwen2_moe: qwen2's, every layer's FFN a mixture of experts (num_experts, num_experts_per_tok,
 *          moe_intermediate_size: each expert's F, norm_topk_prob, router_aux_loss_coef, qkv_bias) with a gated shared
 *          expert (shared_expert_intermediate_size): model.layers.N.mlp.{gate, experts.E.{gate,up,down}_proj,
 *          shared_expert.{gate,up,down}_proj, shared_expert_gate (1, C)}.weight, or the fused mlp.experts.gate_up_proj
 *          / down_proj. Refused: dense layers among the sparse ones (decoder_sparse_step != 1, mlp_only_layers).
 *   qwen3: llama's names plus model.layers.N.self_attn.{q,k}_norm.weight (head_dim each: a per-head RMSNorm on q
 *          and k before RoPE; head_dim 128 when absent, as transformers' Qwen3Config). Refused: attention_bias
 *          true (it biases o_proj too), sliding windows as for qwen2.
 *   qwen3_moe: qwen3's attention, qwen2_moe's experts without a shared expert (norm_topk_prob false by default).
 *   olmoe: llama's names plus self_attn.q_norm.weight (heads x head_dim) and k_norm.weight (num_key_value_heads x
 *          head_dim): an RMSNorm over the whole q and k rows before RoPE; every layer a mixture of experts as
 *          qwen3_moe's (num_experts, num_experts_per_tok, intermediate_size each expert's F, norm_topk_prob false by
 *          default). Refused: clip_qkv, attention_bias.
 *   phi3:  llama's names but self_attn.qkv_proj (q | k | v rows) and mlp.gate_up_proj (gate | up rows) for q/k/v and
 *          gate/up, cut into views; LongRoPE (the 128k models: rope_scaling "longrope", longrope() below). Refused:
 *          partial_rotary_factor other than 1 (Phi-4-mini). sliding_window as mistral's (absent: none), as transformers
 *          applies it (Phi-3-mini-4k: 2047; llama.cpp's phi3 does not, so its GGUFs agree up to that many tokens).
 *   gemma3_text: llama's names, but post_attention_layernorm is attention's output norm, and
 *          pre_feedforward_layernorm / post_feedforward_layernorm the FFN's input and output norms;
 *          self_attn.{q,k}_norm per head; every norm weight w stored as Gemma's (the model scales by 1 + w).
 *          layer_types (or sliding_window_pattern), sliding_window, query_pre_attn_scalar, rope_parameters per layer
 *          type. Refused: soft-capping, bidirectional attention.
 *   gemma2: gemma3_text's names without the q/k norms; attn_logit_softcapping, final_logit_softcapping (Gemma2Config's
 *          50 and 30 when absent, none when null), one RoPE (rope_theta / rope_parameters).
 *   gemma3: Gemma3ForConditionalGeneration's language model: gemma3_text's fields in text_config, its tensors under
 *          language_model.; the vision tower is not read.
 *   gpt2:  [transformer.]{wte, wpe, ln_f, h.N.{ln_1, attn.c_attn (fused q|k|v along out), attn.c_proj, ln_2,
 *          mlp.c_fc, mlp.c_proj}}.{weight,bias}; Conv1D weights stored (in, out); head tied to wte.
 *   opt:   [model.]decoder.{embed_tokens, embed_positions (max_position_embeddings + 2 rows: positions start at
 *          row 2), final_layer_norm, layers.N.{self_attn.{q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2,
 *          final_layer_norm}}.{weight,bias}; ReLU; head tied to embed_tokens. Refused: word_embed_proj_dim !=
 *          hidden_size (opt-350m's projections) and do_layer_norm_before false (post-norm).
 * Tokenizer: tokenizer.json (or GPT-2's encoder.json + vocab.bpe, or SentencePiece's tokenizer.model) in the
 * folder; special ids from config.json, then generation_config.json, then tokenizer_config.json's token texts;
 * chat_template from tokenizer_config.json.
 * Every failure names the file and the field or tensor. */
#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/weights.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *dir;
    char cfg_path[4096];
    lmf_weights *w;
    cJSON *cfg;
    cJSON *index;             /* model.safetensors.index.json, or NULL */
    const cJSON *weight_map;  /* its weight_map */
    char index_path[4096];
    char prefix[24];          /* "transformer." / "model." / "" */
} hf;

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Parses a JSON file; *out NULL (and LMF_OK) when it does not exist and !required. */
static lmf_status read_json(const char *path, int required, cJSON **out) {
    *out = NULL;
    if (!required && access(path, F_OK) != 0) return LMF_OK;
    char *buf;
    size_t n;
    LMF_TRY(lmf_read_file_max(path, 64u << 20, "a JSON file of a Hugging Face model folder", &buf, &n));
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(buf, &end, 0);
    if (!j) {
        long at = end ? (long)(end - buf) : cJSON_GetErrorPtr() ? (long)(cJSON_GetErrorPtr() - buf) : -1;
        free(buf);
        return lmf_fail(LMF_ERR_FORMAT, "%s: not valid JSON (error near byte %ld)", path, at);
    }
    free(buf);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return lmf_fail(LMF_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
    }
    *out = j;
    return LMF_OK;
}

/* ---- config.json fields ------------------------------------------------------------------------------------- */

static const cJSON *field(const hf *h, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(h->cfg, key);
    return cJSON_IsNull(v) ? NULL : v;
}

typedef enum { FIELD_INT, FIELD_FLOAT, FIELD_BOOL } field_kind;

/* One config.json field: missing, def (NAN: required); present, checked against its kind (a positive integer up to
 * 2^30, a positive number, or true/false). */
static lmf_status get_field(const hf *h, const char *key, field_kind kind, double def, double *out) {
    static const char *const want[] = {"a positive integer", "a positive number", "true or false"};
    const cJSON *v = field(h, key);
    if (!v) {
        if (isnan(def)) return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s\" is missing", h->cfg_path, key);
        *out = def;
        return LMF_OK;
    }
    double d = v->valuedouble;
    int ok = kind == FIELD_BOOL ? cJSON_IsBool(v)
             : kind == FIELD_FLOAT ? cJSON_IsNumber(v) && d > 0
                                   : cJSON_IsNumber(v) && d > 0 && d <= (double)(1 << 30) && d == (double)(int)d;
    if (!ok) return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s\" must be %s", h->cfg_path, key, want[kind]);
    *out = kind == FIELD_BOOL ? cJSON_IsTrue(v) : d;
    return LMF_OK;
}

/* A positive integer field; def < 0: required. */
static lmf_status get_int(const hf *h, const char *key, int def, int *out) {
    double d = 0;
    LMF_TRY(get_field(h, key, FIELD_INT, def < 0 ? NAN : def, &d));
    *out = (int)d;
    return LMF_OK;
}

static lmf_status get_float(const hf *h, const char *key, float def, float *out) {
    double d = 0;
    LMF_TRY(get_field(h, key, FIELD_FLOAT, def, &d));
    *out = (float)d;
    return LMF_OK;
}

static lmf_status get_bool(const hf *h, const char *key, int def, int *out) {
    double d = 0;
    LMF_TRY(get_field(h, key, FIELD_BOOL, def, &d));
    *out = (int)d;
    return LMF_OK;
}

/* A string field that, when present, must be one of the accepted values (NULL-terminated list). */
static lmf_status want_str(const hf *h, const char *key, const char *const *ok, const char *why) {
    const cJSON *v = field(h, key);
    if (!v) return LMF_OK;
    if (cJSON_IsString(v))
        for (int i = 0; ok[i]; i++)
            if (!strcmp(v->valuestring, ok[i])) return LMF_OK;
    return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s\" is %s%s%s; lmforge supports \"%s\" (%s)", h->cfg_path, key,
                    cJSON_IsString(v) ? "\"" : "", cJSON_IsString(v) ? v->valuestring : "not a string",
                    cJSON_IsString(v) ? "\"" : "", ok[0], why);
}

/* ---- tensors ------------------------------------------------------------------------------------------------ */

/* Opens one safetensors file and hands it to w (freed with it). */
static lmf_status open_shard(hf *h, const char *file, lmf_safetensors **out) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", h->dir, file);
    for (int i = 0; i < h->w->n_mapped; i++) {
        lmf_safetensors *st = h->w->mapped[i];
        if (!strcmp(st->path, p)) {
            *out = st;
            return LMF_OK;
        }
    }
    lmf_safetensors *st;
    lmf_status s = lmf_safetensors_open(p, &st);
    if (s != LMF_OK) {
        if (h->index && s == LMF_ERR_IO) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", lmf_last_error());
            return lmf_fail(s, "%s: weight_map names shard \"%s\", which cannot be read: %s", h->index_path, file,
                            msg);
        }
        return s;
    }
    lmf_weights *w = h->w;
    w->mapped = lmf_xrealloc(w->mapped, (size_t)(w->n_mapped + 1) * sizeof *w->mapped);
    w->mapped[w->n_mapped++] = st;
    w->file_bytes += st->map_size;
    *out = st;
    return LMF_OK;
}

/* Tensor `name` (prefix applied) or NULL; *where gets the file it lives in (for messages). */
static lmf_status find(hf *h, const char *name, const lmf_st_tensor **out, const char **where) {
    *out = NULL;
    *where = h->index ? h->index_path : h->w->n_mapped ? ((lmf_safetensors *)h->w->mapped[0])->path : h->dir;
    if (h->index) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(h->weight_map, name);
        if (!f) return LMF_OK;
        if (!cJSON_IsString(f) || !*f->valuestring || strchr(f->valuestring, '/') || !strcmp(f->valuestring, "..") ||
            !strcmp(f->valuestring, "."))
            return lmf_fail(LMF_ERR_FORMAT, "%s: weight_map[\"%s\"] must be a file name in the folder", h->index_path,
                            name);
        lmf_safetensors *st;
        LMF_TRY(open_shard(h, f->valuestring, &st));
        *where = st->path;
        *out = lmf_safetensors_find(st, name);
        if (!*out)
            return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is missing (%s says it is in this shard)", st->path, name,
                            h->index_path);
        return LMF_OK;
    }
    *out = lmf_safetensors_find(h->w->mapped[0], name);
    return LMF_OK;
}

static uint32_t ggml_type_of(lmf_dtype dt) {
    return dt == LMF_DT_F32 ? LMF_GGML_F32 : dt == LMF_DT_F16 ? LMF_GGML_F16 : dt == LMF_DT_BF16 ? LMF_GGML_BF16
                                                                                                  : UINT32_MAX;
}

/* Tensor prefix+name with shape (d0) when d1 == 0, else (d0, d1), of a float dtype. */
static lmf_status tensor(hf *h, const char *name, int64_t d0, int64_t d1, const lmf_st_tensor **out,
                         uint32_t *type) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", h->prefix, name);
    const char *where;
    LMF_TRY(find(h, full, out, &where));
    const lmf_st_tensor *t = *out;
    if (!t) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is missing", where, full);
    int ok = d1 ? (t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1) : (t->ndim == 1 && t->shape[0] == d0);
    if (!ok) {
        char got[128] = "";
        int k = 0;
        for (int d = 0; d < t->ndim && k < 100; d++)
            k += snprintf(got + k, sizeof got - (size_t)k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (d1)
            return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%lld, %lld]", where, full, got,
                            (long long)d0, (long long)d1);
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%lld]", where, full, got,
                        (long long)d0);
    }
    *type = ggml_type_of(t->dtype);
    if (*type == UINT32_MAX)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has an integer or unknown dtype; lmforge reads F32, F16 and "
                        "BF16 weights", where, full);
    return LMF_OK;
}

/* An (out, in) weight used in place (copied only if an F32 tensor is not 4-byte aligned in the file). */
static lmf_status matrix(hf *h, const char *name, int rows, int cols, lmf_wtensor *out) {
    const lmf_st_tensor *t;
    uint32_t type;
    LMF_TRY(tensor(h, name, rows, cols, &t, &type));
    const void *data = t->data;
    if ((uintptr_t)data % lmf_dtype_size(t->dtype)) {
        void *copy = lmf_weights_alloc(h->w, t->nbytes);
        memcpy(copy, data, t->nbytes);
        data = copy;
    }
    lmf_wtensor_set(out, type, rows, cols, data);
    return LMF_OK;
}

/* A Conv1D weight stored (in, out): transposed into an owned (out, in) buffer of the same dtype. */
static lmf_status matrix_t(hf *h, const char *name, int rows, int cols, lmf_wtensor *out) {
    const lmf_st_tensor *t;
    uint32_t type;
    LMF_TRY(tensor(h, name, cols, rows, &t, &type));
    size_t es = lmf_dtype_size(t->dtype);
    uint8_t *dst = lmf_weights_alloc(h->w, t->nbytes);
    const uint8_t *src = t->data;
    for (int i = 0; i < cols; i++)     /* source row i: in-feature i, rows (out) elements */
        for (int o = 0; o < rows; o++) memcpy(dst + ((size_t)o * cols + i) * es, src + ((size_t)i * rows + o) * es, es);
    lmf_wtensor_set(out, type, rows, cols, dst);
    return LMF_OK;
}

static lmf_status vec(hf *h, const char *name, int n, const float **out) {
    const lmf_st_tensor *t;
    uint32_t type;
    LMF_TRY(tensor(h, name, n, 0, &t, &type));
    const void *src = t->data;
    void *tmp = NULL;
    if ((uintptr_t)src % lmf_dtype_size(t->dtype)) src = tmp = memcpy(lmf_xmalloc(t->nbytes), src, t->nbytes);
    char what[320];
    snprintf(what, sizeof what, "%s: tensor %s%s", h->dir, h->prefix, name);
    lmf_status s = lmf_weights_f32_copy(h->w, type, src, (size_t)n, what, out);
    free(tmp);
    return s;
}

/* A Gemma norm weight: Gemma3RMSNorm scales by 1 + w, which lmforge keeps as the weight itself (as llama.cpp's
 * converter writes it). */
static lmf_status vec_plus1(hf *h, const char *name, int n, const float **out) {
    LMF_TRY(vec(h, name, n, out));
    float *f = (float *)*out; /* an owned copy (lmf_weights_f32_copy) */
    for (int i = 0; i < n; i++) f[i] += 1.0f;
    return LMF_OK;
}

static int has_tensor(hf *h, const char *full) {
    if (h->index) return cJSON_GetObjectItemCaseSensitive(h->weight_map, full) != NULL;
    return lmf_safetensors_find(h->w->mapped[0], full) != NULL;
}

/* ---- families ----------------------------------------------------------------------------------------------- */

static lmf_status check_config(hf *h, const char *family) {
    if (lmf_model_config_validate(&h->w->cfg) != LMF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        return lmf_fail(LMF_ERR_FORMAT, "%s: the hyperparameters do not make a valid %s model: %s", h->cfg_path,
                        family, msg);
    }
    return LMF_OK;
}

#define NAME(...) (snprintf(name, sizeof name, __VA_ARGS__), name)

/* The layer table, once the number of layers from config.json (field key) is known to fit the tensors the folder
 * holds (every layer of every family has at least its two norms and four matrices): a hostile count is an error
 * naming the field, not an abort on a table of 2^30 entries. */
static lmf_status alloc_layers(hf *h, const char *key) {
    int n = h->w->cfg.n_layer;
    long have = h->index ? (long)cJSON_GetArraySize(h->weight_map) : (long)((lmf_safetensors *)h->w->mapped[0])->n_tensors;
    if ((long)n > have / 6)
        return lmf_fail(LMF_ERR_FORMAT, "%s: \"%s\" = %d layers need at least %ld tensors; %s has %ld", h->cfg_path,
                        key, n, 6L * n, h->index ? h->index_path : ((lmf_safetensors *)h->w->mapped[0])->path, have);
    h->w->layers = lmf_xcalloc((size_t)n, sizeof *h->w->layers);
    return LMF_OK;
}

/* ---- mixture of experts (Mixtral) ------------------------------------------------------------------------------ */

/* Mixtral's config.json: num_local_experts, num_experts_per_tok, router_aux_loss_coef; its router always
 * renormalises the top-k. A llama config without num_local_experts stays dense. */
static lmf_status moe_config(hf *h) {
    lmf_model_config *c = &h->w->cfg;
    if (!field(h, "num_local_experts")) return LMF_OK;
    LMF_TRY(get_int(h, "num_local_experts", -1, &c->n_expert));
    LMF_TRY(get_int(h, "num_experts_per_tok", 2, &c->n_expert_used));
    c->norm_topk_prob = 1;
    const cJSON *coef = field(h, "router_aux_loss_coef");
    if (coef && !(cJSON_IsNumber(coef) && coef->valuedouble >= 0))
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"router_aux_loss_coef\" must be a number >= 0", h->cfg_path);
    c->router_aux_coef = coef ? (float)coef->valuedouble : 0.001f;
    return LMF_OK;
}

/* SmolLM3's NoPE layers: no_rope_layers (1: the layer rotates, 0: it does not), else every no_rope_layer_interval-th
 * layer (default 4) without RoPE, as SmolLM3Config builds the list; a list that is not such a pattern, and the
 * sliding windows it would put on the NoPE layers, are refused. */
static lmf_status smollm3_config(hf *h) {
    lmf_model_config *c = &h->w->cfg;
    int sw = 0, n = 4, L = c->n_layer;
    LMF_TRY(get_bool(h, "use_sliding_window", 0, &sw));
    if (sw)
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"use_sliding_window\" is true (windows on SmolLM3's NoPE layers "
                        "only) is not supported", h->cfg_path);
    LMF_TRY(get_int(h, "no_rope_layer_interval", 4, &n));
    const cJSON *list = field(h, "no_rope_layers");
    if (list && !cJSON_IsNull(list)) {
        if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != L)
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"no_rope_layers\" must be a list of %d entries (one per layer)",
                            h->cfg_path, L);
        n = 0; /* the first layer without RoPE gives the interval; every other entry must follow it */
        for (int l = 0; l < L && !n; l++)
            if (cJSON_IsNumber(cJSON_GetArrayItem(list, l)) && cJSON_GetArrayItem(list, l)->valueint == 0) n = l + 1;
        for (int l = 0; l < L; l++) {
            const cJSON *e = cJSON_GetArrayItem(list, l);
            int want = !(n && (l + 1) % n == 0);
            if (!cJSON_IsNumber(e) || e->valuedouble != want)
                return lmf_fail(LMF_ERR_FORMAT, "%s: field \"no_rope_layers\": entry %d is not %d; lmforge runs a NoPE "
                                "layer every Nth layer (SmolLM3's no_rope_layer_interval), not another pattern",
                                h->cfg_path, l, want);
        }
    } else if (n < 1) {
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"no_rope_layer_interval\" must be >= 1", h->cfg_path);
    }
    c->nope_interval = n && n <= L ? n : 0; /* an interval past the last layer leaves RoPE on all of them */
    return LMF_OK;
}

/* Mistral's, Mixtral's and Phi-3's sliding_window (absent: 4096 for mistral, as MistralConfig, none for the others;
 * null: none):
 * cfg.sliding_window when it is shorter than the context, where it changes what the model computes. */
static lmf_status sliding_window(hf *h, int dflt) {
    lmf_model_config *c = &h->w->cfg;
    const cJSON *sw = field(h, "sliding_window");
    int n = sw ? 0 : dflt;
    if (sw && !cJSON_IsNull(sw)) {
        if (!cJSON_IsNumber(sw) || sw->valuedouble < 1 || sw->valuedouble != (double)(int)sw->valuedouble)
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"sliding_window\" must be a positive whole number or null",
                            h->cfg_path);
        n = (int)sw->valuedouble;
    }
    c->sliding_window = n < c->max_seq_len ? n : 0;
    return LMF_OK;
}

/* A 3-D tensor prefix+name of shape (E, rows, cols) of a float dtype (an F32 one 4-byte aligned, copied if not):
 * transformers 5's fused experts. */
static lmf_status stack3(hf *h, const char *name, int E, int rows, int cols, const char **data, uint32_t *type,
                         size_t *expert_bytes) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", h->prefix, name);
    const char *where;
    const lmf_st_tensor *t;
    LMF_TRY(find(h, full, &t, &where));
    if (!t) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is missing", where, full);
    if (t->ndim != 3 || t->shape[0] != E || t->shape[1] != rows || t->shape[2] != cols)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s is not of shape [%d, %d, %d] (experts, out, in)", where, full,
                        E, rows, cols);
    *type = ggml_type_of(t->dtype);
    if (*type == UINT32_MAX)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor %s has an integer or unknown dtype; lmforge reads F32, F16 and "
                        "BF16 weights", where, full);
    *data = t->data;
    if ((uintptr_t)*data % lmf_dtype_size(t->dtype))
        *data = memcpy(lmf_weights_alloc(h->w, t->nbytes), t->data, t->nbytes);
    *expert_bytes = t->nbytes / (size_t)E;
    return LMF_OK;
}

/* Layer l's router and experts, as transformers 5.24's save_pretrained writes them (block_sparse_moe.gate and
 * block_sparse_moe.experts.N.{w1 gate, w3 up, w2 down}) or as its model holds them in memory (mlp.gate,
 * mlp.experts.gate_up_proj (E, 2F, C): each expert's gate rows then its up rows, mlp.experts.down_proj (E, C, F)). */
static lmf_status moe_layer(hf *h, int l, lmf_layer_weights *L) {
    const lmf_model_config *c = &h->w->cfg;
    int E = c->n_expert, C = c->n_embd, F = c->ffn_dim;
    char name[160], full[200];
    L->experts = lmf_weights_alloc(h->w, sizeof(lmf_wtensor) * 3 * (size_t)E);
    snprintf(full, sizeof full, "%smodel.layers.%d.mlp.experts.gate_up_proj", h->prefix, l);
    if (has_tensor(h, full)) {
        LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.gate.weight", l), E, C, &L->router));
        const char *gu, *dn;
        uint32_t tg, td;
        size_t bg, bd;
        LMF_TRY(stack3(h, NAME("model.layers.%d.mlp.experts.gate_up_proj", l), E, 2 * F, C, &gu, &tg, &bg));
        LMF_TRY(stack3(h, NAME("model.layers.%d.mlp.experts.down_proj", l), E, C, F, &dn, &td, &bd));
        for (int e = 0; e < E; e++) {
            lmf_wtensor_set(&L->experts[3 * e], tg, F, C, gu + (size_t)e * bg);
            lmf_wtensor_set(&L->experts[3 * e + 1], tg, F, C, gu + (size_t)e * bg + bg / 2);
            lmf_wtensor_set(&L->experts[3 * e + 2], td, C, F, dn + (size_t)e * bd);
        }
        return LMF_OK;
    }
    if (c->arch == LMF_ARCH_QWEN2 || c->arch == LMF_ARCH_QWEN3 || c->arch == LMF_ARCH_OLMOE) { /* per expert, mlp */
        static const char *const wn[3] = {"gate_proj", "up_proj", "down_proj"};
        LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.gate.weight", l), E, C, &L->router));
        for (int e = 0; e < E; e++)
            for (int k = 0; k < 3; k++)
                LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.experts.%d.%s.weight", l, e, wn[k]), k < 2 ? F : C,
                               k < 2 ? C : F, &L->experts[3 * e + k]));
        return LMF_OK;
    }
    LMF_TRY(matrix(h, NAME("model.layers.%d.block_sparse_moe.gate.weight", l), E, C, &L->router));
    for (int e = 0; e < E; e++) {
        LMF_TRY(matrix(h, NAME("model.layers.%d.block_sparse_moe.experts.%d.w1.weight", l, e), F, C,
                       &L->experts[3 * e]));
        LMF_TRY(matrix(h, NAME("model.layers.%d.block_sparse_moe.experts.%d.w3.weight", l, e), F, C,
                       &L->experts[3 * e + 1]));
        LMF_TRY(matrix(h, NAME("model.layers.%d.block_sparse_moe.experts.%d.w2.weight", l, e), C, F,
                       &L->experts[3 * e + 2]));
    }
    return LMF_OK;
}

/* Qwen2-MoE's and Qwen3-MoE's config.json: every layer sparse (refusing the layouts with dense layers among them, by
 * field), the top-k renormalised or not (norm_topk_prob; false by default in both configs); Qwen2-MoE's have a
 * gated shared expert and q/k/v biases unless qkv_bias is false, Qwen3-MoE's neither. */
static lmf_status qwen_moe_config(hf *h, int qwen2) {
    lmf_model_config *c = &h->w->cfg;
    /* the hub's Qwen3-MoE configs say num_experts; transformers 5.24's save_pretrained writes num_local_experts */
    LMF_TRY(get_int(h, !qwen2 && !field(h, "num_experts") ? "num_local_experts" : "num_experts", -1, &c->n_expert));
    LMF_TRY(get_int(h, "num_experts_per_tok", -1, &c->n_expert_used));
    LMF_TRY(get_int(h, "moe_intermediate_size", -1, &c->ffn_dim));
    LMF_TRY(get_bool(h, "norm_topk_prob", 0, &c->norm_topk_prob));
    if (qwen2) {
        LMF_TRY(get_int(h, "shared_expert_intermediate_size", -1, &c->shared_ffn_dim));
        LMF_TRY(get_bool(h, "qkv_bias", 1, &c->qkv_bias));
        c->shared_gate = 1;
    }
    int step;
    LMF_TRY(get_int(h, "decoder_sparse_step", 1, &step));
    if (step != 1)
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"decoder_sparse_step\" is %d: lmforge runs Qwen MoE models whose "
                        "every layer is sparse (decoder_sparse_step 1)", h->cfg_path, step);
    const cJSON *only = field(h, "mlp_only_layers");
    if (only && !(cJSON_IsArray(only) && cJSON_GetArraySize(only) == 0))
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"mlp_only_layers\" lists dense layers: lmforge runs Qwen MoE "
                        "models whose every layer is sparse (mlp_only_layers [])", h->cfg_path);
    const cJSON *coef = field(h, "router_aux_loss_coef");
    if (coef && !(cJSON_IsNumber(coef) && coef->valuedouble >= 0))
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"router_aux_loss_coef\" must be a number >= 0", h->cfg_path);
    c->router_aux_coef = coef ? (float)coef->valuedouble : 0.001f;
    return LMF_OK;
}

/* OLMoE's config.json: every layer sparse, intermediate_size each expert's F, the top-k not renormalised unless
 * norm_topk_prob says so; clip_qkv (clamping q, k and v) refused. */
static lmf_status olmoe_config(hf *h) {
    lmf_model_config *c = &h->w->cfg;
    LMF_TRY(get_int(h, "num_experts", 64, &c->n_expert));
    LMF_TRY(get_int(h, "num_experts_per_tok", 8, &c->n_expert_used));
    LMF_TRY(get_bool(h, "norm_topk_prob", 0, &c->norm_topk_prob));
    const cJSON *clip = field(h, "clip_qkv");
    if (clip && !cJSON_IsNull(clip))
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"clip_qkv\" is set: lmforge does not clamp q, k and v (null only)",
                        h->cfg_path);
    const cJSON *coef = field(h, "router_aux_loss_coef");
    if (coef && !(cJSON_IsNumber(coef) && coef->valuedouble >= 0))
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"router_aux_loss_coef\" must be a number >= 0", h->cfg_path);
    c->router_aux_coef = coef ? (float)coef->valuedouble : 0.01f;
    return LMF_OK;
}

/* Qwen2's sliding-window attention (on some layers): refused, as lmforge attends to the whole context. */
static lmf_status qwen2_full_attention(hf *h) {
    int sw = 0;
    LMF_TRY(get_bool(h, "use_sliding_window", 0, &sw));
    if (sw)
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"use_sliding_window\" is true; lmforge attends to the whole "
                        "context", h->cfg_path);
    const cJSON *lt = field(h, "layer_types"), *it;
    if (lt && !cJSON_IsArray(lt))
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"layer_types\" must be a list", h->cfg_path);
    cJSON_ArrayForEach(it, lt) {
        if (!cJSON_IsString(it) || strcmp(it->valuestring, "full_attention"))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"layer_types\" has an entry other than \"full_attention\" "
                            "(sliding-window layers); lmforge attends to the whole context", h->cfg_path);
    }
    return LMF_OK;
}

/* A number of the RoPE object `obj` (config field `key`, scaling `type`): required, > 0, and a whole number when `integer`. */
static lmf_status rope_num(const hf *h, const char *key, const cJSON *obj, const char *type, const char *name,
                           int integer, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s.%s\" is missing (RoPE scaling of type %s needs it)",
                        h->cfg_path, key, name, type);
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > (1 << 30) ||
        (integer && v->valuedouble != floor(v->valuedouble)))
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s.%s\" must be a positive %s", h->cfg_path, key, name,
                        integer ? "integer" : "number");
    *out = v->valuedouble;
    return LMF_OK;
}

/* Phi-3's LongRoPE (rope_type "longrope", or the older "su") from the RoPE object r (config field `key`): its
 * short_factor and long_factor lists (hs/2 numbers each) into the weights, original_max_position_embeddings (beside
 * the object or in it), and the attention factor: the object's attention_factor, else transformers' default
 * sqrt(1 + ln(s) / ln(original)) for s = max_position_embeddings / original > 1, else 1 (llama.cpp's converter
 * writes the same number). */
static lmf_status longrope(hf *h, const char *key, const cJSON *r, lmf_model_config *c) {
    if (c->arch != LMF_ARCH_PHI3)
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s\": LongRoPE is read for phi3 models only", h->cfg_path, key);
    int half = c->n_embd / (c->n_head ? c->n_head : 1) / 2;
    static const char *const lists[2] = {"short_factor", "long_factor"};
    const float **dst[2] = {&h->w->rope_short, &h->w->rope_long};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, lists[k]), *v;
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != half)
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s.%s\" must be a list of %d numbers (half a head)",
                            h->cfg_path, key, lists[k], half);
        float *f = lmf_weights_alloc(h->w, sizeof(float) * (size_t)half);
        int i = 0;
        cJSON_ArrayForEach(v, a) {
            if (!cJSON_IsNumber(v))
                return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s.%s\"[%d] is not a number", h->cfg_path, key,
                                lists[k], i);
            f[i++] = (float)v->valuedouble;
        }
        *dst[k] = f;
    }
    double orig = 0;
    if (field(h, "original_max_position_embeddings")) {
        int o = 0;
        LMF_TRY(get_int(h, "original_max_position_embeddings", -1, &o));
        orig = o;
    } else {
        LMF_TRY(rope_num(h, key, r, "longrope", "original_max_position_embeddings", 1, &orig));
    }
    double attn = 0, s = c->max_seq_len / orig;
    if (cJSON_GetObjectItemCaseSensitive(r, "attention_factor"))
        LMF_TRY(rope_num(h, key, r, "longrope", "attention_factor", 0, &attn));
    else
        attn = s <= 1.0 ? 1.0 : sqrt(1.0 + log(s) / log(orig));
    c->rope_scaling = LMF_ROPE_SCALING_LONGROPE, c->rope_factor = (float)attn, c->rope_orig_ctx = (int)orig;
    c->rope_low_freq_factor = c->rope_high_freq_factor = 0.0f;
    return LMF_OK;
}

/* RoPE and its scaling. transformers 4 writes rope_theta and rope_scaling (null for plain RoPE, else {"rope_type" or
 * the older "type", "factor", ...}); transformers 5 writes rope_parameters {"rope_type", "rope_theta", ...}. Types
 * default, linear (factor) and llama3 (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings:
 * a top-level original_max_position_embeddings first, then the object's, then max_position_embeddings, as
 * transformers' standardize_rope_params) run; the others (yarn, dynamic, longrope, ...) are refused by name. */
static lmf_status rope_config(hf *h, lmf_model_config *c) {
    /* both present: rope_scaling wins, as in transformers 5 (convert_rope_params_to_dict) */
    static const char *const keys[] = {"rope_parameters", "rope_scaling"};
    for (int i = 0; i < 2; i++) {
        const char *key = keys[i];
        const cJSON *r = field(h, key);
        if (!r) continue;
        if (!cJSON_IsObject(r))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s\" must be an object or null", h->cfg_path, key);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(r, "rope_type");
        if (!type) type = cJSON_GetObjectItemCaseSensitive(r, "type");
        if (type && !cJSON_IsString(type))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s.rope_type\" must be a string", h->cfg_path, key);
        if (!type && i == 1)
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s\" has no rope_type (or type)", h->cfg_path, key);
        const cJSON *theta = cJSON_GetObjectItemCaseSensitive(r, "rope_theta");
        if (theta && !(cJSON_IsNumber(theta) && theta->valuedouble > 0))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s.rope_theta\" must be a positive number", h->cfg_path, key);
        if (theta) c->rope_theta = (float)theta->valuedouble;
        const char *t = type ? type->valuestring : "default";
        double factor = 0, lo = 0, hi = 0, orig = 0;
        if (!strcmp(t, "default")) {
            c->rope_scaling = LMF_ROPE_SCALING_NONE;
            c->rope_factor = c->rope_low_freq_factor = c->rope_high_freq_factor = 0.0f, c->rope_orig_ctx = 0;
            continue;
        }
        if (!strcmp(t, "longrope") || !strcmp(t, "su")) {
            LMF_TRY(longrope(h, key, r, c));
            continue;
        }
        if (strcmp(t, "linear") && strcmp(t, "llama3"))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s\" asks for RoPE scaling of type \"%s\"; lmforge runs "
                            "\"default\", \"linear\", \"llama3\" and (phi3) \"longrope\" only", h->cfg_path, key,
                            t);
        LMF_TRY(rope_num(h, key, r, t, "factor", 0, &factor));
        c->rope_factor = (float)factor;
        c->rope_low_freq_factor = c->rope_high_freq_factor = 0.0f, c->rope_orig_ctx = 0;
        if (!strcmp(t, "linear")) {
            c->rope_scaling = LMF_ROPE_SCALING_LINEAR;
            continue;
        }
        LMF_TRY(rope_num(h, key, r, t, "low_freq_factor", 0, &lo));
        LMF_TRY(rope_num(h, key, r, t, "high_freq_factor", 0, &hi));
        if (!(hi > lo))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s.high_freq_factor\" (%g) must be greater than "
                            "low_freq_factor (%g)", h->cfg_path, key, hi, lo);
        if (field(h, "original_max_position_embeddings")) {
            int o = 0;
            LMF_TRY(get_int(h, "original_max_position_embeddings", -1, &o));
            orig = o;
        } else if (cJSON_GetObjectItemCaseSensitive(r, "original_max_position_embeddings")) {
            LMF_TRY(rope_num(h, key, r, t, "original_max_position_embeddings", 1, &orig));
        } else {
            orig = c->max_seq_len;
        }
        c->rope_scaling = LMF_ROPE_SCALING_LLAMA3;
        c->rope_low_freq_factor = (float)lo, c->rope_high_freq_factor = (float)hi, c->rope_orig_ctx = (int)orig;
    }
    return LMF_OK;
}

/* Gemma 3's RoPE: rope_parameters per layer type (transformers 5: {"full_attention": {rope_type, rope_theta,
 * factor}, "sliding_attention": {...}}), or transformers 4's rope_theta, rope_local_base_freq and rope_scaling (the
 * global layers'). The global layers take linear scaling (Gemma 3 4B+: factor 8), the local ones none. */
static lmf_status gemma3_rope(hf *h, lmf_model_config *c) {
    double global = 1e6, local = 1e4, factor = 0;
    const cJSON *rp = field(h, "rope_parameters"), *scaling = field(h, "rope_scaling");
    const cJSON *full = rp ? cJSON_GetObjectItemCaseSensitive(rp, "full_attention") : NULL;
    const cJSON *slide = rp ? cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention") : NULL;
    const cJSON *v;
    if (field(h, "rope_theta")) LMF_TRY(get_field(h, "rope_theta", FIELD_FLOAT, 0, &global));
    if (field(h, "rope_local_base_freq")) LMF_TRY(get_field(h, "rope_local_base_freq", FIELD_FLOAT, 0, &local));
    const cJSON *objs[2] = {full, slide};
    static const char *const keys[2] = {"rope_parameters.full_attention", "rope_parameters.sliding_attention"};
    for (int k = 0; k < 2; k++) {
        if (!objs[k] || cJSON_IsNull(objs[k])) continue;
        if (!cJSON_IsObject(objs[k]))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s\" must be an object", h->cfg_path, keys[k]);
        if ((v = cJSON_GetObjectItemCaseSensitive(objs[k], "rope_theta")))
            LMF_TRY(rope_num(h, keys[k], objs[k], "default", "rope_theta", 0, k ? &local : &global));
        v = cJSON_GetObjectItemCaseSensitive(objs[k], "rope_type");
        const char *t = cJSON_IsString(v) ? v->valuestring : "default";
        if (!strcmp(t, "linear") && !k) LMF_TRY(rope_num(h, keys[k], objs[k], t, "factor", 0, &factor));
        else if (strcmp(t, "default"))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s.rope_type\" is \"%s\"; lmforge runs Gemma 3's default "
                            "RoPE, and linear scaling on the global layers", h->cfg_path, keys[k], t);
    }
    if (scaling && !full) { /* transformers 4: the global layers' scaling */
        v = cJSON_GetObjectItemCaseSensitive(scaling, "rope_type");
        if (!v) v = cJSON_GetObjectItemCaseSensitive(scaling, "type");
        if (!cJSON_IsString(v) || strcmp(v->valuestring, "linear"))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"rope_scaling\": lmforge runs Gemma 3's linear scaling only",
                            h->cfg_path);
        LMF_TRY(rope_num(h, "rope_scaling", scaling, "linear", "factor", 0, &factor));
    }
    c->rope_theta = (float)global, c->rope_theta_swa = (float)local;
    if (factor != 0 && factor != 1) c->rope_scaling = LMF_ROPE_SCALING_LINEAR, c->rope_factor = (float)factor;
    return LMF_OK;
}

/* Gemma's local / global layers: layer_types (a list of "sliding_attention" / "full_attention") when present,
 * else every sliding_window_pattern-th layer global (dflt: Gemma 3's 6, Gemma 2's 2); the list must be such a
 * pattern. */
static lmf_status gemma3_layers(hf *h, lmf_model_config *c, int dflt) {
    int n = dflt, L = c->n_layer;
    LMF_TRY(get_int(h, "sliding_window_pattern", dflt, &n));
    const cJSON *lt = field(h, "layer_types");
    if (lt) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != L)
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"layer_types\" must be a list of %d entries", h->cfg_path, L);
        n = 0; /* the first global layer gives the pattern */
        for (int l = 0; l < L && !n; l++) {
            const cJSON *e = cJSON_GetArrayItem(lt, l);
            if (cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")) n = l + 1;
        }
        for (int l = 0; l < L; l++) {
            const cJSON *e = cJSON_GetArrayItem(lt, l);
            const char *want = n && (l + 1) % n == 0 ? "full_attention" : "sliding_attention";
            if (!cJSON_IsString(e) || strcmp(e->valuestring, want))
                return lmf_fail(LMF_ERR_FORMAT, "%s: field \"layer_types\": entry %d is not \"%s\"; lmforge runs a "
                                "global layer every Nth layer (sliding_window_pattern), not another pattern",
                                h->cfg_path, l, want);
        }
    }
    c->swa_pattern = n;
    return LMF_OK;
}

/* Gemma 3's text model (model_type gemma3_text: Gemma3ForCausalLM, the 270M and 1B checkpoints), or with v2 Gemma 2
 * (gemma2: no q/k norms, soft-capped scores and logits, one RoPE). Sizes absent from the config take
 * Gemma3TextConfig's (Gemma2Config's) defaults: the larger checkpoints' text_config lists only what differs. */
static lmf_status load_gemma3(hf *h, int v2) {
    lmf_weights *w = h->w;
    lmf_model_config *c = &w->cfg;
    *c = lmf_model_config_default(v2 ? LMF_ARCH_GEMMA2 : LMF_ARCH_GEMMA3);
    LMF_TRY(get_int(h, "hidden_size", 2304, &c->n_embd));
    LMF_TRY(get_int(h, "intermediate_size", 9216, &c->ffn_dim));
    LMF_TRY(get_int(h, "num_attention_heads", 8, &c->n_head));
    LMF_TRY(get_int(h, "num_hidden_layers", 26, &c->n_layer));
    LMF_TRY(get_int(h, "num_key_value_heads", 4, &c->n_kv_head));
    LMF_TRY(get_int(h, "vocab_size", v2 ? 256000 : 262208, &c->vocab_size));
    LMF_TRY(get_int(h, "max_position_embeddings", v2 ? 8192 : 131072, &c->max_seq_len));
    LMF_TRY(get_float(h, "rms_norm_eps", 1e-6f, &c->norm_eps));
    LMF_TRY(get_bool(h, "tie_word_embeddings", 1, &c->tied_embeddings));
    int head_dim, bias, bidir;
    LMF_TRY(get_int(h, "head_dim", 256, &head_dim));
    if ((long long)head_dim * c->n_head != c->n_embd) c->head_dim = head_dim;
    double qpas = 256;
    LMF_TRY(get_field(h, "query_pre_attn_scalar", FIELD_FLOAT, 256, &qpas));
    c->attn_scale = (float)(1.0 / sqrt(qpas));
    LMF_TRY(get_int(h, "sliding_window", 4096, &c->sliding_window));
    LMF_TRY(gemma3_layers(h, c, v2 ? 2 : 6));
    if (v2) { /* one RoPE for both kinds of layer (10000 by default), as llama's fields give it */
        c->rope_theta = 10000.0f;
        LMF_TRY(get_float(h, "rope_theta", 10000.0f, &c->rope_theta));
        LMF_TRY(rope_config(h, c));
    } else {
        LMF_TRY(gemma3_rope(h, c));
    }
    LMF_TRY(get_bool(h, "attention_bias", 0, &bias));
    LMF_TRY(get_bool(h, "use_bidirectional_attention", 0, &bidir));
    if (bias || bidir)
        return lmf_fail(LMF_ERR_FORMAT, "%s: \"%s\": true is not supported", h->cfg_path,
                        bias ? "attention_bias" : "use_bidirectional_attention");
    static const char *const caps[] = {"final_logit_softcapping", "attn_logit_softcapping"};
    float *cap[2] = {&c->final_softcap, &c->attn_softcap};
    for (int i = 0; i < 2; i++) {
        if (!v2 && field(h, caps[i]))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"%s\" (Gemma 2's soft-capping) in a gemma3 config is not "
                            "supported", h->cfg_path, caps[i]);
        if (v2 && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(h->cfg, caps[i]))) *cap[i] = 0.0f; /* none */
        else if (v2) LMF_TRY(get_float(h, caps[i], i ? 50.0f : 30.0f, cap[i])); /* absent: Gemma2Config's */
    }
    static const char *const gelu[] = {"gelu_pytorch_tanh", NULL};
    LMF_TRY(want_str(h, "hidden_activation", gelu, "GeGLU (gelu_tanh)"));
    LMF_TRY(check_config(h, v2 ? "gemma2" : "gemma3"));

    int C = c->n_embd, QD = lmf_q_width(c), KV = lmf_kv_width(c), F = c->ffn_dim, V = c->vocab_size;
    int hs = lmf_head_size(c);
    char name[160];
    LMF_TRY(matrix(h, "model.embed_tokens.weight", V, C, &w->tok_emb));
    if (c->tied_embeddings) w->lm_head = w->tok_emb;
    else LMF_TRY(matrix(h, "lm_head.weight", V, C, &w->lm_head));
    LMF_TRY(vec_plus1(h, "model.norm.weight", C, &w->out_norm_w));
    LMF_TRY(alloc_layers(h, "num_hidden_layers"));
    for (int l = 0; l < c->n_layer; l++) {
        lmf_layer_weights *L = &w->layers[l];
        LMF_TRY(vec_plus1(h, NAME("model.layers.%d.input_layernorm.weight", l), C, &L->attn_norm_w));
        LMF_TRY(vec_plus1(h, NAME("model.layers.%d.post_attention_layernorm.weight", l), C, &L->post_attn_norm_w));
        LMF_TRY(vec_plus1(h, NAME("model.layers.%d.pre_feedforward_layernorm.weight", l), C, &L->ffn_norm_w));
        LMF_TRY(vec_plus1(h, NAME("model.layers.%d.post_feedforward_layernorm.weight", l), C, &L->post_ffn_norm_w));
        if (!v2) {
            LMF_TRY(vec_plus1(h, NAME("model.layers.%d.self_attn.q_norm.weight", l), hs, &L->q_norm_w));
            LMF_TRY(vec_plus1(h, NAME("model.layers.%d.self_attn.k_norm.weight", l), hs, &L->k_norm_w));
        }
        LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.q_proj.weight", l), QD, C, &L->wq));
        LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.k_proj.weight", l), KV, C, &L->wk));
        LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.v_proj.weight", l), KV, C, &L->wv));
        LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.o_proj.weight", l), C, QD, &L->wo));
        LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.gate_proj.weight", l), F, C, &L->w_gate));
        LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.up_proj.weight", l), F, C, &L->w_up));
        LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.down_proj.weight", l), C, F, &L->w_down));
    }
    return LMF_OK;
}

/* Gemma 3's vision-language folders (model_type gemma3: Gemma3ForConditionalGeneration, the 4B, 12B and 27B
 * checkpoints): the language model alone, its config in text_config and its tensors under language_model.; the
 * vision tower and projector are not read. */
static lmf_status load_gemma3_language(hf *h) {
    cJSON *root = h->cfg, *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (!cJSON_IsObject(tc))
        return lmf_fail(LMF_ERR_FORMAT, "%s: field \"text_config\" is missing or not an object (a gemma3 folder "
                        "keeps its language model's config there)", h->cfg_path);
    h->cfg = tc; /* every field below is the language model's */
    snprintf(h->prefix, sizeof h->prefix, "language_model.");
    lmf_status s = load_gemma3(h, 0);
    h->cfg = root; /* the special ids and the tokenizer's fields are the folder's */
    return s;
}

/* llama, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe, olmoe and phi3 (model_type): one layout of names, a few fields
 * apart. */
static lmf_status load_llama(hf *h, const char *type) {
    lmf_weights *w = h->w;
    lmf_model_config *c = &w->cfg;
    int qwen3 = !strncmp(type, "qwen3", 5), qwen = !strncmp(type, "qwen2", 5) || qwen3, olmoe = !strcmp(type, "olmoe");
    int qmoe = !strcmp(type, "qwen2_moe") || !strcmp(type, "qwen3_moe"), phi3 = !strcmp(type, "phi3");
    int mistral = !strcmp(type, "mistral"), smollm3 = !strcmp(type, "smollm3");
    *c = lmf_model_config_default(olmoe   ? LMF_ARCH_OLMOE
                                  : qwen3 ? LMF_ARCH_QWEN3
                                  : qwen  ? LMF_ARCH_QWEN2
                                  : phi3  ? LMF_ARCH_PHI3
                                          : LMF_ARCH_LLAMA);
    LMF_TRY(get_int(h, "hidden_size", -1, &c->n_embd));
    LMF_TRY(get_int(h, "intermediate_size", -1, &c->ffn_dim));
    LMF_TRY(get_int(h, "num_attention_heads", -1, &c->n_head));
    LMF_TRY(get_int(h, "num_hidden_layers", -1, &c->n_layer));
    LMF_TRY(get_int(h, "num_key_value_heads", c->n_head, &c->n_kv_head));
    LMF_TRY(get_int(h, "vocab_size", -1, &c->vocab_size));
    LMF_TRY(get_int(h, "max_position_embeddings", 2048, &c->max_seq_len));
    LMF_TRY(get_float(h, "rms_norm_eps", 1e-6f, &c->norm_eps));
    LMF_TRY(get_float(h, "rope_theta", 10000.0f, &c->rope_theta));
    LMF_TRY(get_bool(h, "tie_word_embeddings", 0, &c->tied_embeddings));
    LMF_TRY(rope_config(h, c));
    int bias;
    LMF_TRY(get_bool(h, "attention_bias", 0, &bias));
    /* Qwen3's attention_bias puts a bias on o_proj too, which lmforge's SwiGLU families have no place for */
    if (bias && (qwen3 || olmoe))
        return lmf_fail(LMF_ERR_FORMAT, "%s: \"attention_bias\": true is not supported for %s (its o_proj bias has no "
                        "place in lmforge's %s)", h->cfg_path, type, lmf_arch_name(c->arch));
    if (bias && !qwen) return lmf_fail(LMF_ERR_FORMAT, "%s: \"attention_bias\": true is not supported (llama has no attention "
                              "biases in lmforge)", h->cfg_path);
    LMF_TRY(get_bool(h, "mlp_bias", 0, &bias));
    if (bias) return lmf_fail(LMF_ERR_FORMAT, "%s: \"mlp_bias\": true is not supported", h->cfg_path);
    static const char *const silu[] = {"silu", NULL};
    LMF_TRY(want_str(h, "hidden_act", silu, "SwiGLU"));
    int head_dim;
    /* Qwen3's configs default head_dim to 128 (transformers' Qwen3Config), the others to hidden_size / heads (as
     * transformers' llama, mistral, mixtral, qwen2 and olmoe attention read it). A head_dim x heads other than
     * hidden_size (Qwen3-0.6B: 16 x 128 on 1024) is cfg.head_dim; the quotient stays 0, as every config before it */
    LMF_TRY(get_int(h, "head_dim", qwen3 ? 128 : c->n_embd / (c->n_head ? c->n_head : 1), &head_dim));
    if ((long long)head_dim * c->n_head != c->n_embd) c->head_dim = head_dim;
    if (qwen) LMF_TRY(qwen2_full_attention(h));
    if (phi3) { /* beside the RoPE fields (transformers 4) or among them (transformers 5's rope_parameters) */
        float partial;
        LMF_TRY(get_float(h, "partial_rotary_factor", 1.0f, &partial));
        const cJSON *rp = field(h, "rope_parameters");
        const cJSON *in = rp ? cJSON_GetObjectItemCaseSensitive(rp, "partial_rotary_factor") : NULL;
        if (in && !cJSON_IsNull(in)) partial = cJSON_IsNumber(in) ? (float)in->valuedouble : -1.0f;
        if (partial != 1.0f)
            return lmf_fail(LMF_ERR_FORMAT, "%s: partial_rotary_factor %g (RoPE on part of each head) is not "
                            "supported", h->cfg_path, partial);
    }
    if (qmoe) LMF_TRY(qwen_moe_config(h, !qwen3));
    else if (olmoe) LMF_TRY(olmoe_config(h));
    else if (!qwen && !phi3) LMF_TRY(moe_config(h));
    if (mistral || phi3 || !strcmp(type, "mixtral")) LMF_TRY(sliding_window(h, mistral ? 4096 : 0));
    if (smollm3) LMF_TRY(smollm3_config(h));
    LMF_TRY(check_config(h, type));

    int C = c->n_embd, QD = lmf_q_width(c), KV = lmf_kv_width(c), F = c->ffn_dim, V = c->vocab_size;
    char name[160];
    LMF_TRY(matrix(h, "model.embed_tokens.weight", V, C, &w->tok_emb));
    if (c->tied_embeddings) w->lm_head = w->tok_emb;
    else LMF_TRY(matrix(h, "lm_head.weight", V, C, &w->lm_head));
    LMF_TRY(vec(h, "model.norm.weight", C, &w->out_norm_w));
    LMF_TRY(alloc_layers(h, "num_hidden_layers"));
    for (int l = 0; l < c->n_layer; l++) {
        lmf_layer_weights *L = &w->layers[l];
        LMF_TRY(vec(h, NAME("model.layers.%d.input_layernorm.weight", l), C, &L->attn_norm_w));
        LMF_TRY(vec(h, NAME("model.layers.%d.post_attention_layernorm.weight", l), C, &L->ffn_norm_w));
        if (phi3) { /* q | k | v and gate | up as one matrix each */
            lmf_wtensor qkv, gu;
            LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.qkv_proj.weight", l), QD + 2 * KV, C, &qkv));
            LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.gate_up_proj.weight", l), 2 * F, C, &gu));
            L->wq = lmf_wtensor_rows(&qkv, 0, QD), L->wk = lmf_wtensor_rows(&qkv, QD, KV);
            L->wv = lmf_wtensor_rows(&qkv, QD + KV, KV);
            L->w_gate = lmf_wtensor_rows(&gu, 0, F), L->w_up = lmf_wtensor_rows(&gu, F, F);
            LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.o_proj.weight", l), C, QD, &L->wo));
            LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.down_proj.weight", l), C, F, &L->w_down));
            continue;
        }
        LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.q_proj.weight", l), QD, C, &L->wq));
        LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.k_proj.weight", l), KV, C, &L->wk));
        LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.v_proj.weight", l), KV, C, &L->wv));
        LMF_TRY(matrix(h, NAME("model.layers.%d.self_attn.o_proj.weight", l), C, QD, &L->wo));
        if (c->qk_norm) { /* qwen3: head_dim each; olmoe: the whole q and k rows */
            LMF_TRY(vec(h, NAME("model.layers.%d.self_attn.q_norm.weight", l), lmf_qk_norm_width(c, 0), &L->q_norm_w));
            LMF_TRY(vec(h, NAME("model.layers.%d.self_attn.k_norm.weight", l), lmf_qk_norm_width(c, 1), &L->k_norm_w));
        }
        if (c->qkv_bias) {
            LMF_TRY(vec(h, NAME("model.layers.%d.self_attn.q_proj.bias", l), QD, &L->bq));
            LMF_TRY(vec(h, NAME("model.layers.%d.self_attn.k_proj.bias", l), KV, &L->bk));
            LMF_TRY(vec(h, NAME("model.layers.%d.self_attn.v_proj.bias", l), KV, &L->bv));
        }
        if (c->n_expert) {
            LMF_TRY(moe_layer(h, l, L));
            if (!qmoe || qwen3) continue;
            int Fs = c->shared_ffn_dim;
            LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.shared_expert.gate_proj.weight", l), Fs, C, &L->sh_gate));
            LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.shared_expert.up_proj.weight", l), Fs, C, &L->sh_up));
            LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.shared_expert.down_proj.weight", l), C, Fs, &L->sh_down));
            const lmf_st_tensor *t;
            uint32_t type;
            LMF_TRY(tensor(h, NAME("model.layers.%d.mlp.shared_expert_gate.weight", l), 1, C, &t, &type));
            const void *src = t->data;
            void *tmp = NULL; /* a (1, C) Linear: its C weights as an owned fp32 vector */
            if ((uintptr_t)src % lmf_dtype_size(t->dtype)) src = tmp = memcpy(lmf_xmalloc(t->nbytes), src, t->nbytes);
            lmf_status s = lmf_weights_f32_copy(w, type, src, (size_t)C, name, &L->sh_gate_inp);
            free(tmp);
            LMF_TRY(s);
            continue;
        }
        LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.gate_proj.weight", l), F, C, &L->w_gate));
        LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.up_proj.weight", l), F, C, &L->w_up));
        LMF_TRY(matrix(h, NAME("model.layers.%d.mlp.down_proj.weight", l), C, F, &L->w_down));
    }
    return LMF_OK;
}

static lmf_status load_gpt2(hf *h) {
    lmf_weights *w = h->w;
    lmf_model_config *c = &w->cfg;
    *c = lmf_model_config_default(LMF_ARCH_GPT2);
    LMF_TRY(get_int(h, "n_embd", -1, &c->n_embd));
    LMF_TRY(get_int(h, "n_layer", -1, &c->n_layer));
    LMF_TRY(get_int(h, "n_head", -1, &c->n_head));
    LMF_TRY(get_int(h, "n_positions", 1024, &c->max_seq_len));
    LMF_TRY(get_int(h, "vocab_size", -1, &c->vocab_size));
    LMF_TRY(get_int(h, "n_inner", 4 * c->n_embd, &c->ffn_dim));
    LMF_TRY(get_float(h, "layer_norm_epsilon", 1e-5f, &c->norm_eps));
    c->n_kv_head = c->n_head;
    c->tied_embeddings = 1;
    static const char *const gelu[] = {"gelu_new", "gelu_pytorch_tanh", NULL};
    LMF_TRY(want_str(h, "activation_function", gelu, "GELU, tanh approximation"));
    int flag = 1;
    LMF_TRY(get_bool(h, "scale_attn_weights", 1, &flag));
    if (!flag) return lmf_fail(LMF_ERR_FORMAT, "%s: \"scale_attn_weights\": false is not supported", h->cfg_path);
    LMF_TRY(get_bool(h, "scale_attn_by_inverse_layer_idx", 0, &flag));
    if (flag) return lmf_fail(LMF_ERR_FORMAT, "%s: \"scale_attn_by_inverse_layer_idx\": true is not supported",
                              h->cfg_path);
    LMF_TRY(check_config(h, "gpt2"));
    snprintf(h->prefix, sizeof h->prefix, "%s", has_tensor(h, "transformer.wte.weight") ? "transformer." : "");

    int C = c->n_embd, F = c->ffn_dim, V = c->vocab_size;
    char name[160];
    LMF_TRY(matrix(h, "wte.weight", V, C, &w->tok_emb));
    w->lm_head = w->tok_emb;
    LMF_TRY(matrix(h, "wpe.weight", c->max_seq_len, C, &w->pos_emb));
    LMF_TRY(vec(h, "ln_f.weight", C, &w->out_norm_w));
    LMF_TRY(vec(h, "ln_f.bias", C, &w->out_norm_b));
    LMF_TRY(alloc_layers(h, "n_layer"));
    for (int l = 0; l < c->n_layer; l++) {
        lmf_layer_weights *L = &w->layers[l];
        LMF_TRY(vec(h, NAME("h.%d.ln_1.weight", l), C, &L->attn_norm_w));
        LMF_TRY(vec(h, NAME("h.%d.ln_1.bias", l), C, &L->attn_norm_b));
        LMF_TRY(vec(h, NAME("h.%d.ln_2.weight", l), C, &L->ffn_norm_w));
        LMF_TRY(vec(h, NAME("h.%d.ln_2.bias", l), C, &L->ffn_norm_b));
        lmf_wtensor qkv;
        const float *b;
        LMF_TRY(matrix_t(h, NAME("h.%d.attn.c_attn.weight", l), 3 * C, C, &qkv));
        L->wq = L->wk = L->wv = qkv;
        L->wq.rows = L->wk.rows = L->wv.rows = C;
        L->wk.data = (const char *)qkv.data + (size_t)C * qkv.row_bytes;
        L->wv.data = (const char *)qkv.data + (size_t)2 * C * qkv.row_bytes;
        LMF_TRY(vec(h, NAME("h.%d.attn.c_attn.bias", l), 3 * C, &b));
        L->bq = b, L->bk = b + C, L->bv = b + 2 * C;
        LMF_TRY(matrix_t(h, NAME("h.%d.attn.c_proj.weight", l), C, C, &L->wo));
        LMF_TRY(vec(h, NAME("h.%d.attn.c_proj.bias", l), C, &L->bo));
        LMF_TRY(matrix_t(h, NAME("h.%d.mlp.c_fc.weight", l), F, C, &L->w_up));
        LMF_TRY(vec(h, NAME("h.%d.mlp.c_fc.bias", l), F, &L->b_up));
        LMF_TRY(matrix_t(h, NAME("h.%d.mlp.c_proj.weight", l), C, F, &L->w_down));
        LMF_TRY(vec(h, NAME("h.%d.mlp.c_proj.bias", l), C, &L->b_down));
    }
    return LMF_OK;
}

static lmf_status load_opt(hf *h) {
    lmf_weights *w = h->w;
    lmf_model_config *c = &w->cfg;
    *c = lmf_model_config_default(LMF_ARCH_OPT);
    LMF_TRY(get_int(h, "hidden_size", -1, &c->n_embd));
    LMF_TRY(get_int(h, "ffn_dim", -1, &c->ffn_dim));
    LMF_TRY(get_int(h, "num_attention_heads", -1, &c->n_head));
    LMF_TRY(get_int(h, "num_hidden_layers", -1, &c->n_layer));
    LMF_TRY(get_int(h, "max_position_embeddings", -1, &c->max_seq_len));
    LMF_TRY(get_int(h, "vocab_size", -1, &c->vocab_size));
    c->n_kv_head = c->n_head;
    c->norm_eps = 1e-5f; /* OPT's nn.LayerNorm default */
    int proj, flag = 1;
    LMF_TRY(get_int(h, "word_embed_proj_dim", c->n_embd, &proj));
    if (proj != c->n_embd)
        return lmf_fail(LMF_ERR_FORMAT, "%s: \"word_embed_proj_dim\" %d != hidden_size %d (opt-350m's project_in/"
                        "project_out) is not supported", h->cfg_path, proj, c->n_embd);
    LMF_TRY(get_bool(h, "do_layer_norm_before", 1, &flag));
    if (!flag) return lmf_fail(LMF_ERR_FORMAT, "%s: \"do_layer_norm_before\": false (post-norm OPT, e.g. opt-350m) is "
                               "not supported", h->cfg_path);
    LMF_TRY(get_bool(h, "enable_bias", 1, &flag));
    if (!flag) return lmf_fail(LMF_ERR_FORMAT, "%s: \"enable_bias\": false is not supported", h->cfg_path);
    LMF_TRY(get_bool(h, "layer_norm_elementwise_affine", 1, &flag));
    if (!flag) return lmf_fail(LMF_ERR_FORMAT, "%s: \"layer_norm_elementwise_affine\": false is not supported",
                               h->cfg_path);
    LMF_TRY(get_bool(h, "tie_word_embeddings", 1, &flag));
    if (!flag) return lmf_fail(LMF_ERR_FORMAT, "%s: \"tie_word_embeddings\": false is not supported for opt",
                               h->cfg_path);
    c->tied_embeddings = 1;
    static const char *const relu[] = {"relu", NULL};
    LMF_TRY(want_str(h, "activation_function", relu, "ReLU"));
    LMF_TRY(check_config(h, "opt"));
    snprintf(h->prefix, sizeof h->prefix, "%s",
             has_tensor(h, "model.decoder.embed_tokens.weight") ? "model.decoder." : "decoder.");

    int C = c->n_embd, F = c->ffn_dim, V = c->vocab_size;
    char name[160];
    LMF_TRY(matrix(h, "embed_tokens.weight", V, C, &w->tok_emb));
    w->lm_head = w->tok_emb;
    LMF_TRY(matrix(h, "embed_positions.weight", c->max_seq_len + 2, C, &w->pos_emb));
    LMF_TRY(vec(h, "final_layer_norm.weight", C, &w->out_norm_w));
    LMF_TRY(vec(h, "final_layer_norm.bias", C, &w->out_norm_b));
    LMF_TRY(alloc_layers(h, "num_hidden_layers"));
    for (int l = 0; l < c->n_layer; l++) {
        lmf_layer_weights *L = &w->layers[l];
        LMF_TRY(vec(h, NAME("layers.%d.self_attn_layer_norm.weight", l), C, &L->attn_norm_w));
        LMF_TRY(vec(h, NAME("layers.%d.self_attn_layer_norm.bias", l), C, &L->attn_norm_b));
        LMF_TRY(vec(h, NAME("layers.%d.final_layer_norm.weight", l), C, &L->ffn_norm_w));
        LMF_TRY(vec(h, NAME("layers.%d.final_layer_norm.bias", l), C, &L->ffn_norm_b));
        static const char *const qkvo[4] = {"q", "k", "v", "out"};
        lmf_wtensor *mw[4] = {&L->wq, &L->wk, &L->wv, &L->wo};
        const float **mb[4] = {&L->bq, &L->bk, &L->bv, &L->bo};
        for (int i = 0; i < 4; i++) {
            LMF_TRY(matrix(h, NAME("layers.%d.self_attn.%s_proj.weight", l, qkvo[i]), C, C, mw[i]));
            LMF_TRY(vec(h, NAME("layers.%d.self_attn.%s_proj.bias", l, qkvo[i]), C, mb[i]));
        }
        LMF_TRY(matrix(h, NAME("layers.%d.fc1.weight", l), F, C, &L->w_up));
        LMF_TRY(vec(h, NAME("layers.%d.fc1.bias", l), F, &L->b_up));
        LMF_TRY(matrix(h, NAME("layers.%d.fc2.weight", l), C, F, &L->w_down));
        LMF_TRY(vec(h, NAME("layers.%d.fc2.bias", l), C, &L->b_down));
    }
    return LMF_OK;
}

#undef NAME

/* ---- tokenizer and special tokens --------------------------------------------------------------------------- */

/* An id field: an integer, or a list of them (first taken; the second, if any, becomes *second). */
static void special_id(const cJSON *obj, const char *key, int32_t *id, int32_t *second) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsArray(v)) {
        const cJSON *a = cJSON_GetArrayItem(v, 0), *b = cJSON_GetArrayItem(v, 1);
        if (cJSON_IsNumber(b) && second && b->valuedouble >= 0) *second = (int32_t)b->valuedouble;
        v = a;
    }
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 2147483647.0) *id = (int32_t)v->valuedouble;
}

/* A token named in tokenizer_config.json: "text" or {"content": "text", ...}. */
static int32_t token_by_text(const lmf_tokenizer *tok, const cJSON *tc, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tc, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!tok || !cJSON_IsString(v)) return -1;
    return lmf_tokenizer_token_id(tok, v->valuestring);
}

static lmf_status load_tokenizer(hf *h) {
    lmf_weights *w = h->w;
    char p[4096], q[4096], r[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", h->dir);
    snprintf(q, sizeof q, "%s/encoder.json", h->dir);
    snprintf(r, sizeof r, "%s/tokenizer.model", h->dir); /* SentencePiece's own file, when there is no tokenizer.json */
    if (file_exists(p) || file_exists(q) || file_exists(r)) {
        LMF_TRY(lmf_tokenizer_load(h->dir, &w->tok));
        if (lmf_tokenizer_vocab_size(w->tok) > w->cfg.vocab_size)
            return lmf_fail(LMF_ERR_MISMATCH, "%s: the tokenizer has %d tokens but the model's vocab_size is %d",
                            h->dir, lmf_tokenizer_vocab_size(w->tok), w->cfg.vocab_size);
    }
    int32_t eot = -1;
    special_id(h->cfg, "bos_token_id", &w->bos_id, NULL);
    special_id(h->cfg, "eos_token_id", &w->eos_id, &eot);
    cJSON *gen = NULL, *tc = NULL;
    snprintf(p, sizeof p, "%s/generation_config.json", h->dir);
    LMF_TRY(read_json(p, 0, &gen));
    if (gen) {
        special_id(gen, "bos_token_id", &w->bos_id, NULL);
        special_id(gen, "eos_token_id", &w->eos_id, &eot);
        cJSON_Delete(gen);
    }
    snprintf(p, sizeof p, "%s/tokenizer_config.json", h->dir);
    LMF_TRY(read_json(p, 0, &tc));
    w->add_bos = !strcmp(lmf_arch_name(w->cfg.arch), "opt"); /* OPT's tokenizer starts every text with </s> */
    if (tc) {
        int32_t id;
        if (w->bos_id < 0 && (id = token_by_text(w->tok, tc, "bos_token")) >= 0) w->bos_id = id;
        if ((id = token_by_text(w->tok, tc, "eos_token")) >= 0) {
            if (w->eos_id < 0) w->eos_id = id;
            else if (id != w->eos_id && eot < 0) eot = id; /* a chat model's end-of-turn (<|im_end|>) */
        }
        const cJSON *ab = cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token");
        if (cJSON_IsBool(ab)) w->add_bos = cJSON_IsTrue(ab);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
        if (cJSON_IsArray(t)) { /* [{"name": "default", "template": ...}, ...] */
            const cJSON *it, *pick = NULL;
            cJSON_ArrayForEach(it, t) {
                const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
                if (!pick || (cJSON_IsString(n) && !strcmp(n->valuestring, "default"))) pick = it;
            }
            t = pick ? cJSON_GetObjectItemCaseSensitive(pick, "template") : NULL;
        }
        if (cJSON_IsString(t)) w->chat_template = strdup(t->valuestring);
        cJSON_Delete(tc);
    }
    w->eot_id = eot;
    int32_t *ids[3] = {&w->bos_id, &w->eos_id, &w->eot_id};
    for (int i = 0; i < 3; i++)
        if (*ids[i] >= w->cfg.vocab_size) *ids[i] = -1; /* an id outside the vocabulary names no token */
    return LMF_OK;
}

/* ---- entry point -------------------------------------------------------------------------------------------- */

static lmf_status load(hf *h) {
    snprintf(h->cfg_path, sizeof h->cfg_path, "%s/config.json", h->dir);
    LMF_TRY(read_json(h->cfg_path, 1, &h->cfg));
    char single[4096];
    snprintf(single, sizeof single, "%s/model.safetensors", h->dir);
    snprintf(h->index_path, sizeof h->index_path, "%s/model.safetensors.index.json", h->dir);
    if (file_exists(single)) {
        lmf_safetensors *st;
        LMF_TRY(open_shard(h, "model.safetensors", &st));
    } else if (file_exists(h->index_path)) {
        LMF_TRY(read_json(h->index_path, 1, &h->index));
        h->weight_map = cJSON_GetObjectItemCaseSensitive(h->index, "weight_map");
        if (!cJSON_IsObject(h->weight_map))
            return lmf_fail(LMF_ERR_FORMAT, "%s: field \"weight_map\" is missing or not an object", h->index_path);
    } else {
        return lmf_fail(LMF_ERR_IO, "%s: no model.safetensors and no model.safetensors.index.json (lmforge reads "
                        "safetensors weights, not pytorch_model.bin)", h->dir);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(h->cfg, "model_type");
    if (!cJSON_IsString(mt)) return lmf_fail(LMF_ERR_FORMAT, "%s: field \"model_type\" is missing", h->cfg_path);
    if (!strcmp(mt->valuestring, "llama") || !strcmp(mt->valuestring, "mistral") ||
        !strcmp(mt->valuestring, "smollm3") || !strcmp(mt->valuestring, "mixtral") ||
        !strcmp(mt->valuestring, "qwen2") ||
        !strcmp(mt->valuestring, "qwen2_moe") || !strcmp(mt->valuestring, "qwen3") ||
        !strcmp(mt->valuestring, "qwen3_moe") || !strcmp(mt->valuestring, "olmoe") || !strcmp(mt->valuestring, "phi3"))
        LMF_TRY(load_llama(h, mt->valuestring));
    else if (!strcmp(mt->valuestring, "gemma3_text")) LMF_TRY(load_gemma3(h, 0));
    else if (!strcmp(mt->valuestring, "gemma2")) LMF_TRY(load_gemma3(h, 1));
    else if (!strcmp(mt->valuestring, "gemma3")) LMF_TRY(load_gemma3_language(h));
    else if (!strcmp(mt->valuestring, "gpt2")) LMF_TRY(load_gpt2(h));
    else if (!strcmp(mt->valuestring, "opt")) LMF_TRY(load_opt(h));
    else
        return lmf_fail(LMF_ERR_FORMAT,
                        "%s: model_type \"%s\" is not supported (lmforge loads llama, mistral, smollm3, mixtral, qwen2, "
                        "qwen2_moe, qwen3, qwen3_moe, olmoe, phi3, gemma3_text, gemma3, gemma2, gpt2 and opt)",
                        h->cfg_path, mt->valuestring);
    LMF_TRY(load_tokenizer(h));
    return lmf_weights_validate(h->w, h->dir);
}

lmf_status lmf_weights_load_hf(const char *dir, lmf_weights **out) {
    *out = NULL;
    hf h = {.dir = dir, .w = lmf_weights_new()};
    snprintf(h.w->source, sizeof h.w->source, "safetensors");
    lmf_status s = load(&h);
    cJSON_Delete(h.cfg);
    cJSON_Delete(h.index);
    if (s != LMF_OK) {
        lmf_weights_free(h.w);
        return s;
    }
    *out = h.w;
    return LMF_OK;
}
