/* export.c — a loaded model (lmf_weights) written as GGUF or as a Hugging Face folder; see export.h.
 *
 * RoPE layouts: llama.cpp's converter permutes each Q/K head's rows from Hugging Face's rotate_half order (dim d
 * pairs with d + hs/2) to interleaved pairs (2i, 2i+1): GGUF row 2i + j of a head is HF row j * hs/2 + i. Weights
 * whose RoPE is rotate_half (checkpoints, HF folders) are permuted that way for GGUF; weights read from a GGUF
 * (interleaved) are permuted back for HF; otherwise rows are copied as they are.
 *
 * Memory: each tensor is converted into a buffer of its own (kept until the file is written), so an export needs
 * about the exported file's size in memory on top of the model. */
#include "model/export.h"

#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/quant.h"
#include "model/block.h"
#include "model/dequant.h"
#include "model/weights.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <regex.h>
#include <strings.h>
#include <sys/stat.h>

lmf_status lmf_export_format_parse(const char *name, lmf_export_format *out) {
    if (!strcmp(name, "gguf")) *out = LMF_EXPORT_GGUF;
    else if (!strcmp(name, "safetensors") || !strcmp(name, "hf")) *out = LMF_EXPORT_SAFETENSORS;
    else return lmf_fail(LMF_ERR_ARG, "--to %s: expected gguf or safetensors", name);
    return LMF_OK;
}

static const struct {
    const char *name;
    uint32_t type;
} export_types[] = {
    {"f32", LMF_GGML_F32},         {"f16", LMF_GGML_F16},         {"bf16", LMF_GGML_BF16},
    {"q8_0", LMF_GGML_Q8_0},       {"q4_0", LMF_GGML_Q4_0},       {"q4_1", LMF_GGML_Q4_1},
    {"q5_0", LMF_GGML_Q5_0},       {"q5_1", LMF_GGML_Q5_1},       {"q4_k_s", LMF_MIX_Q4_K_S},
    {"q4_k_m", LMF_MIX_Q4_K_M},    {"q4_k", LMF_MIX_Q4_K_M},      {"q5_k_s", LMF_MIX_Q5_K_S},
    {"q5_k_m", LMF_MIX_Q5_K_M},    {"q5_k", LMF_MIX_Q5_K_M},      {"q6_k", LMF_MIX_Q6_K},
    {"q2_k", LMF_MIX_Q2_K},        {"q2_k_s", LMF_MIX_Q2_K_S},    {"q3_k_s", LMF_MIX_Q3_K_S},
    {"q3_k_m", LMF_MIX_Q3_K_M},    {"q3_k", LMF_MIX_Q3_K_M},      {"q3_k_l", LMF_MIX_Q3_K_L},
    {"iq4_nl", LMF_GGML_IQ4_NL},   {"iq4_xs", LMF_GGML_IQ4_XS},
};

lmf_status lmf_export_type_parse(const char *name, uint32_t *out) {
    for (size_t i = 0; i < sizeof export_types / sizeof export_types[0]; i++)
        if (!strcasecmp(name, export_types[i].name)) return *out = export_types[i].type, LMF_OK;
    return lmf_fail(LMF_ERR_ARG, "--type %s: expected f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q2_k_s, "
                    "q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl or iq4_xs", name);
}

const char *lmf_export_type_name(uint32_t type) {
    switch (type) {
    case LMF_MIX_Q4_K_S: return "Q4_K_S";
    case LMF_MIX_Q4_K_M: return "Q4_K_M";
    case LMF_MIX_Q5_K_S: return "Q5_K_S";
    case LMF_MIX_Q5_K_M: return "Q5_K_M";
    case LMF_MIX_Q6_K: return "Q6_K";
    case LMF_MIX_Q2_K: return "Q2_K";
    case LMF_MIX_Q2_K_S: return "Q2_K_S";
    case LMF_MIX_Q3_K_S: return "Q3_K_S";
    case LMF_MIX_Q3_K_M: return "Q3_K_M";
    case LMF_MIX_Q3_K_L: return "Q3_K_L";
    }
    return lmf_ggml_type_name(type);
}

/* ---- element conversion ------------------------------------------------------------------------------------- */

static size_t type_size(uint32_t type) { return type == LMF_GGML_F32 ? 4 : 2; }

static void store(void *dst, uint32_t type, size_t i, float v) {
    if (type == LMF_GGML_F32) ((float *)dst)[i] = v;
    else if (type == LMF_GGML_F16) ((uint16_t *)dst)[i] = lmf_f32_to_f16(v);
    else ((uint16_t *)dst)[i] = lmf_f32_to_bf16(v);
}

/* Buffers made during an export, freed at its end. */
typedef struct {
    void **p;
    int n;
} pool;

static void *pool_alloc(pool *P, size_t bytes) {
    P->p = lmf_xrealloc(P->p, (size_t)(P->n + 1) * sizeof *P->p);
    return P->p[P->n++] = lmf_xcalloc(1, bytes ? bytes : 1);
}

static void pool_free(pool *P) {
    for (int i = 0; i < P->n; i++) free(P->p[i]);
    free(P->p);
}

/* Converts weight t into dst as `type`: output row r is t's row perm[r] (perm NULL: r). Without transpose the
 * rows are written row-major (row r at r * cols); with transpose element (r, c) goes to dst[c * ld + r] (the
 * (in, out) layout of GPT-2's Conv1D, ld = total out-features, dst already offset to this tensor's columns). */
static void convert(void *dst, uint32_t type, const lmf_wtensor *t, const int *perm, int transpose, size_t ld,
                    size_t col0) {
    float *row = lmf_xmalloc((size_t)t->cols * sizeof(float));
    for (int r = 0; r < t->rows; r++) {
        int src = perm ? perm[r] : r;
        lmf_status s = lmf_dequant_row(t->type, (const char *)t->data + (size_t)src * t->row_bytes, row,
                                       (size_t)t->cols, "export");
        LMF_CHECK(s == LMF_OK); /* lmf_weights_validate admitted only types the executor (and dequant) runs */
        for (int c = 0; c < t->cols; c++) {
            if (transpose) store(dst, type, (size_t)c * ld + col0 + (size_t)r, row[c]);
            else store(dst, type, (size_t)r * t->cols + c, row[c]);
        }
    }
    free(row);
}

/* Bytes of one row of n elements of `type`. */
static size_t row_bytes(uint32_t type, int n) {
    uint32_t bs = 1, bb = 4;
    lmf_ggml_type_block(type, &bs, &bb);
    return (size_t)n / bs * bb;
}

/* t's rows [r0, r1) (output row r = t's row perm[r]) converted to `type` (any lmf_quantize_supported type, ggml's
 * rounding), written row after row at dst. */
static void rows_into(void *dst, uint32_t type, const lmf_wtensor *t, int r0, int r1, const int *perm,
                      const float *qw) {
    size_t rb = row_bytes(type, t->cols);
    if (t->type == type) { /* as llama-quantize: a tensor already of its type is copied (imatrix or not) */
        for (int r = r0; r < r1; r++)
            memcpy((char *)dst + (size_t)(r - r0) * rb,
                   (const char *)t->data + (size_t)(perm ? perm[r] : r) * t->row_bytes, rb);
        return;
    }
    /* rows are independent (and a K-quant row costs ~100x a copy): one buffer a thread */
#pragma omp parallel
    {
        float *row = lmf_xmalloc((size_t)t->cols * sizeof(float));
#pragma omp for schedule(static)
        for (int r = r0; r < r1; r++) {
            int src = perm ? perm[r] : r;
            lmf_dequant_fast(t->type, (const char *)t->data + (size_t)src * t->row_bytes, row, (size_t)t->cols);
            lmf_quantize_weighted_fast(type, row, (char *)dst + (size_t)(r - r0) * rb, (size_t)t->cols, qw);
        }
        free(row);
    }
}

/* ---- which type each tensor gets: llama-quantize's choices ----------------------------------------------------- */

/* What a tensor is, as llama.cpp's quantizer sorts them (by name: attn_qkv counts as attn_v). */
typedef enum {
    ROLE_TOKEN_EMBD, ROLE_POS_EMBD, ROLE_OUTPUT, ROLE_ATTN_Q, ROLE_ATTN_K, ROLE_ATTN_V, ROLE_ATTN_OUT, ROLE_FFN_GATE,
    ROLE_FFN_UP, ROLE_FFN_DOWN
} tensor_role;

typedef struct {
    uint32_t type;  /* the requested type: a ggml type or an LMF_MIX_* */
    int n_layer;
    int n_expert;
    int n_gqa;      /* query heads per KV head */
    int has_output; /* output.weight is written (else token_embd doubles as the head) */
    const lmf_imatrix *im; /* quantizing under an importance matrix (NULL: none) */
    lmf_status err;        /* the first entry of im that did not fit its matrix */
    const lmf_export_opts *o;
    regex_t *re;           /* o->rules' patterns, compiled */
    int layer;             /* the layer being added (-1: the embeddings and the head), for the progress */
} type_policy;

/* The ggml type a mix quantizes matrices to by default (a plain type is its own). */
static uint32_t base_type(uint32_t type) {
    switch (type) {
    case LMF_MIX_Q4_K_S: case LMF_MIX_Q4_K_M: return LMF_GGML_Q4_K;
    case LMF_MIX_Q5_K_S: case LMF_MIX_Q5_K_M: return LMF_GGML_Q5_K;
    case LMF_MIX_Q6_K: return LMF_GGML_Q6_K;
    case LMF_MIX_Q2_K: case LMF_MIX_Q2_K_S: return LMF_GGML_Q2_K;
    case LMF_MIX_Q3_K_S: case LMF_MIX_Q3_K_M: case LMF_MIX_Q3_K_L: return LMF_GGML_Q3_K;
    }
    return type;
}

static uint32_t block_size(uint32_t type) {
    uint32_t bs = 1, bb = 0;
    lmf_ggml_type_block(type, &bs, &bb);
    return bs;
}

/* llama.cpp's layers that get more bits under the _M mixes: the first and last eighth, and every third between */
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* The mix's type for a `cols`-wide matrix in `role` of layer `layer` (llama_tensor_get_type_impl): the output head
 * (or the tied embedding) at Q6_K (or --output-tensor-type's), attn_v and ffn_down at more bits in chosen layers of
 * the K mixes, the 8-expert rules, the imatrix guard. */
static uint32_t mix_type(type_policy *p, uint32_t t, tensor_role role, int layer, int cols) {
    uint32_t ft = p->type;
    int n = p->n_layer, moe8 = p->n_expert == 8, k_m = ft == LMF_MIX_Q4_K_M || ft == LMF_MIX_Q5_K_M;
    int iq4 = ft == LMF_GGML_IQ4_NL || ft == LMF_GGML_IQ4_XS;
    if (role == ROLE_OUTPUT || (role == ROLE_TOKEN_EMBD && !p->has_output)) {
        if (p->o->output_type_set) t = p->o->output_type;
        else if (cols % (int)block_size(t)) t = LMF_GGML_Q8_0;
        else if (t != LMF_GGML_Q8_0) t = LMF_GGML_Q6_K;
    } else if (role == ROLE_ATTN_V) {
        if (ft == LMF_MIX_Q2_K) t = p->n_gqa >= 4 ? LMF_GGML_Q4_K : LMF_GGML_Q3_K;
        else if (ft == LMF_MIX_Q2_K_S && p->n_gqa >= 4) t = LMF_GGML_Q4_K;
        else if (ft == LMF_MIX_Q3_K_M) t = layer < 2 ? LMF_GGML_Q5_K : LMF_GGML_Q4_K;
        else if (ft == LMF_MIX_Q3_K_L) t = LMF_GGML_Q5_K;
        else if (iq4 && p->n_gqa >= 4) t = LMF_GGML_Q5_K;
        else if (k_m && more_bits(layer, n)) t = LMF_GGML_Q6_K;
        else if (ft == LMF_MIX_Q4_K_S && layer < 4) t = LMF_GGML_Q5_K;
        if (moe8) t = LMF_GGML_Q8_0;
    } else if (role == ROLE_ATTN_K) {
        if (moe8) t = LMF_GGML_Q8_0;
    } else if (role == ROLE_FFN_DOWN) {
        if (ft == LMF_MIX_Q2_K) t = LMF_GGML_Q3_K;
        else if (ft == LMF_MIX_Q2_K_S) t = layer < n / 8 ? LMF_GGML_Q4_K : t;
        else if (ft == LMF_MIX_Q3_K_M) t = layer < n / 16 ? LMF_GGML_Q5_K : LMF_GGML_Q4_K;
        else if (ft == LMF_MIX_Q3_K_L) t = LMF_GGML_Q5_K;
        else if (iq4 && layer < n / 8 && !p->im) t = LMF_GGML_Q5_K;
        else if (k_m && more_bits(layer, n)) t = LMF_GGML_Q6_K;
        else if (ft == LMF_MIX_Q4_K_S && layer < n / 8) t = LMF_GGML_Q5_K;
        else if ((ft == LMF_GGML_Q4_0 || ft == LMF_GGML_Q5_0) && p->im && layer < n / 8)
            t = ft == LMF_GGML_Q4_0 ? LMF_GGML_Q4_1 : LMF_GGML_Q5_1; /* llama's guard for these under an imatrix */
    } else if (role == ROLE_ATTN_OUT) {
        if (moe8) {
            if (ft == LMF_MIX_Q2_K || ft == LMF_MIX_Q3_K_S || ft == LMF_MIX_Q3_K_M || ft == LMF_MIX_Q4_K_S ||
                ft == LMF_MIX_Q4_K_M || iq4)
                t = LMF_GGML_Q5_K;
        } else if (ft == LMF_MIX_Q2_K) {
            t = LMF_GGML_Q3_K;
        } else if (ft == LMF_MIX_Q3_K_M) {
            t = LMF_GGML_Q4_K;
        } else if (ft == LMF_MIX_Q3_K_L) {
            t = LMF_GGML_Q5_K;
        }
    }
    return t;
}

/* The type of the `cols`-wide matrix `name` ("blk.<layer>." + name for a layer's) in `role`, as llama-quantize
 * (llama_tensor_get_type) picks it for the same file type and options, so both tools write the same file:
 * --token-embedding-type and --output-tensor-type first; float file types keep their type everywhere; then the
 * first --tensor-type pattern found in the name, else the mix's rules (not with --pure); then a row that is not a
 * whole number of the type's blocks falls back (Q2_K, Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
 * IQ4_XS -> IQ4_NL, and to F16 when even 32 does not divide it). Position embeddings are not quantized. */
static uint32_t tensor_type(type_policy *p, const char *name, tensor_role role, int layer, int cols) {
    const lmf_export_opts *o = p->o;
    int given = o->token_embd_type_set && role == ROLE_TOKEN_EMBD ? 1 : o->output_type_set && role == ROLE_OUTPUT ? 2 : 0;
    if (given) { /* taken as it is, no fallback (llama-quantize then fails on the row size: so does this) */
        uint32_t t = given == 1 ? o->token_embd_type : o->output_type;
        if (!(cols % (int)block_size(t))) return t;
        if (p->err == LMF_OK)
            p->err = lmf_fail(LMF_ERR_ARG, "%s %s: %s has rows of %d, not a whole number of %s blocks of %u",
                              given == 1 ? "--token-embedding-type" : "--output-tensor-type", lmf_ggml_type_name(t),
                              name, cols, lmf_ggml_type_name(t), block_size(t));
        return LMF_GGML_F32;
    }
    uint32_t t = base_type(p->type);
    if (t == LMF_GGML_F32 || t == LMF_GGML_F16 || t == LMF_GGML_BF16) return t;
    if (role == ROLE_POS_EMBD) return LMF_GGML_F32;
    char full[128];
    if (layer >= 0) snprintf(full, sizeof full, "blk.%d.%s", layer, name), name = full;
    int manual = 0;
    for (int i = 0; i < o->n_rules && !manual; i++)
        if (!regexec(&p->re[i], name, 0, NULL, 0)) t = o->rules[i].type, manual = 1;
    if (!manual && !o->pure) t = mix_type(p, t, role, layer < 0 ? 0 : layer, cols);
    if (cols % (int)block_size(t)) {
        t = t == LMF_GGML_Q2_K || t == LMF_GGML_Q3_K ? LMF_GGML_Q4_0
            : t == LMF_GGML_Q4_K                     ? LMF_GGML_Q5_0
            : t == LMF_GGML_Q5_K                     ? LMF_GGML_Q5_1
            : t == LMF_GGML_Q6_K                     ? LMF_GGML_Q8_0
            : t == LMF_GGML_IQ4_XS                   ? LMF_GGML_IQ4_NL
                                                     : t;
        if (cols % (int)block_size(t)) t = LMF_GGML_F16;
    }
    return t;
}

/* The importance of tensor `name`'s columns (cols x n_mat values), NULL without a matrix, an entry or a need (float
 * types). An entry of another size fails the export (tp->err), but for the token embedding's, which llama-quantize
 * ignores (llama-imatrix never collects it: a foreign file's entry is another tensor's). */
static const float *importance(type_policy *tp, const char *name, uint32_t type, int cols, int n_mat) {
    size_t n;
    const float *v = tp->im && type != LMF_GGML_F32 && type != LMF_GGML_F16 && type != LMF_GGML_BF16
                         ? lmf_imatrix_find(tp->im, name, &n)
                         : NULL;
    if (v && n == (size_t)cols * n_mat) return v;
    /* llama-quantize's one K-quant that needs the matrix: Q2_K under Q2_K_S, but for the embedding and the head */
    if (!v && type == LMF_GGML_Q2_K && tp->type == LMF_MIX_Q2_K_S && strcmp(name, "token_embd.weight") &&
        strcmp(name, "output.weight") && tp->err == LMF_OK)
        tp->err = lmf_fail(LMF_ERR_ARG, "Q2_K_S quantizes %s to Q2_K, which needs an importance matrix entry for it "
                           "(--imatrix), as llama-quantize's does", name);
    if (!v) return NULL;
    if (strcmp(name, "token_embd.weight") && tp->err == LMF_OK)
        tp->err = lmf_fail(LMF_ERR_ARG, "the importance matrix's entry %s holds %zu values; the tensor has %d columns "
                           "x %d matrices (an imatrix of another model?)", name, n, cols, n_mat);
    return NULL;
}

/* llama.cpp's general.file_type (enum llama_ftype) for the requested type. */
static uint32_t file_type(uint32_t type) {
    switch (type) {
    case LMF_GGML_F32: return 0;
    case LMF_GGML_F16: return 1;
    case LMF_GGML_Q4_0: return 2;
    case LMF_GGML_Q4_1: return 3;
    case LMF_GGML_Q8_0: return 7;
    case LMF_GGML_Q5_0: return 8;
    case LMF_GGML_Q5_1: return 9;
    case LMF_MIX_Q4_K_S: return 14;
    case LMF_MIX_Q4_K_M: return 15;
    case LMF_MIX_Q5_K_S: return 16;
    case LMF_MIX_Q5_K_M: return 17;
    case LMF_MIX_Q6_K: return 18;
    case LMF_MIX_Q2_K: return 10;
    case LMF_MIX_Q3_K_S: return 11;
    case LMF_MIX_Q3_K_M: return 12;
    case LMF_MIX_Q3_K_L: return 13;
    case LMF_MIX_Q2_K_S: return 21;
    case LMF_GGML_IQ4_NL: return 25;
    case LMF_GGML_IQ4_XS: return 30;
    case LMF_GGML_BF16: return 32;
    }
    return 0;
}

static void *vector(pool *P, const float *const *parts, const int *lens, int n, uint32_t type) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)lens[i];
    void *d = pool_alloc(P, total * type_size(type));
    size_t k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < lens[i]; j++) store(d, type, k++, parts[i][j]);
    return d;
}

static void *vec1(pool *P, const float *x, int n, uint32_t type) { return vector(P, &x, &n, 1, type); }

/* Row order for Q/K of n_heads heads of size hs: to_gguf from rotate_half, else from interleaved to rotate_half. */
static int *rope_perm(pool *P, int n_heads, int hs, int to_gguf) {
    int *p = pool_alloc(P, (size_t)n_heads * hs * sizeof(int)), half = hs / 2;
    for (int h = 0; h < n_heads; h++)
        for (int k = 0; k < hs; k++)
            p[h * hs + k] = to_gguf ? h * hs + (k % 2) * half + k / 2 : h * hs + 2 * (k % half) + k / half;
    return p;
}

/* ---- GGUF ---------------------------------------------------------------------------------------------------- */

/* Matrices t[0..n) of one width, stacked row-wise (one, a fused q|k|v or gate|up, a mixture's experts), converted
 * to `type` when the file is written (lmf_gguf_writer_add_lazy): a quantized model is never whole in memory, only
 * the tensor being written. perm: t[0]'s row order or NULL; qw: each matrix's importance, qw_step apart, or NULL.
 * Everything it points to lives until the write (the weights, the pool). */
typedef struct {
    uint32_t type;
    int n, layer, n_layer;
    const lmf_wtensor **t;
    const int *perm;
    const float *qw;
    size_t qw_step;
    const lmf_sink *sink;
} lazy_rows;

static void fill_rows(void *ctx, void *dst, uint64_t r0, uint64_t n) {
    const lazy_rows *j = ctx;
    if (j->layer >= 0 && r0 == 0) /* the conversion is the write: the progress moves with it */
        lmf_sink_progress(j->sink, LMF_PROGRESS_UPDATE, j->layer + 1, j->n_layer + 1, "layers", NULL);
    uint8_t *at = dst;
    uint64_t base = 0, end = r0 + n; /* matrix i holds the stacked rows [base, base + its rows) */
    for (int i = 0; i < j->n && base < end; base += (uint64_t)j->t[i]->rows, i++) {
        uint64_t rows = (uint64_t)j->t[i]->rows, lo = r0 > base ? r0 - base : 0, hi = end - base < rows ? end - base : rows;
        if (lo >= hi) continue;
        rows_into(at, j->type, j->t[i], (int)lo, (int)hi, i ? NULL : j->perm,
                  j->qw ? j->qw + (size_t)i * j->qw_step : NULL);
        at += (size_t)(hi - lo) * row_bytes(j->type, j->t[i]->cols);
    }
}

/* n_dims 2: the n matrices' rows one after the other; 3: [cols, rows, n] (a mixture's expert stack) */
static void add_rows(pool *P, lmf_gguf_writer *g, type_policy *tp, const char *name, uint32_t type,
                     const lmf_wtensor *const *t, int n, const int *perm, const float *qw, size_t qw_step, int n_dims) {
    lazy_rows *j = pool_alloc(P, sizeof *j);
    j->t = pool_alloc(P, sizeof *j->t * (size_t)n);
    int rows = 0;
    for (int i = 0; i < n; i++) j->t[i] = t[i], rows += t[i]->rows;
    j->type = type, j->n = n, j->layer = tp->layer, j->n_layer = tp->n_layer, j->perm = perm, j->qw = qw;
    j->qw_step = qw_step, j->sink = tp->o->sink;
    int64_t ne[3] = {t[0]->cols, n_dims == 3 ? t[0]->rows : rows, n};
    lmf_gguf_writer_add_lazy(g, name, (lmf_ggml_type)type, n_dims, ne, fill_rows, j);
}

/* matrix t as tensor `name` of `type` (rows permuted by perm), under its importance if tp has one */
static void add_mat(pool *P, lmf_gguf_writer *g, type_policy *tp, const char *name, uint32_t type,
                    const lmf_wtensor *t, const int *perm) {
    add_rows(P, g, tp, name, type, &t, 1, perm, importance(tp, name, type, t->cols, 1), 0, 2);
}

/* matrices t[0..n) (of one width) stacked row-wise as one tensor `name` of `type`, under one importance */
static void add_fused(pool *P, lmf_gguf_writer *g, type_policy *tp, const char *name, uint32_t type,
                      const lmf_wtensor *const *t, int n, const float *qw) {
    add_rows(P, g, tp, name, type, t, n, NULL, qw, 0, 2);
}

static void add1(pool *P, lmf_gguf_writer *g, const char *name, const float *x, int n) {
    int64_t ne[1] = {n};
    lmf_gguf_writer_add_tensor(g, name, LMF_GGML_F32, 1, ne, vec1(P, x, n, LMF_GGML_F32));
}

/* The keys both vocabularies share: special ids and flags, the chat template. */
static void gguf_vocab_specials(lmf_gguf_writer *g, const lmf_weights *w) {
    if (w->bos_id >= 0) lmf_gguf_writer_set_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t)w->bos_id);
    if (w->eos_id >= 0) lmf_gguf_writer_set_u32(g, "tokenizer.ggml.eos_token_id", (uint32_t)w->eos_id);
    if (w->eot_id >= 0) lmf_gguf_writer_set_u32(g, "tokenizer.ggml.eot_token_id", (uint32_t)w->eot_id);
    lmf_gguf_writer_set_bool(g, "tokenizer.ggml.add_bos_token", w->add_bos && w->bos_id >= 0);
    if (w->chat_template) lmf_gguf_writer_set_str(g, "tokenizer.chat_template", w->chat_template);
}

/* A SentencePiece vocabulary as it was read (pieces, scores, llama.cpp's types), padded as gguf_vocab pads. */
static void gguf_vocab_spm(pool *P, lmf_gguf_writer *g, const lmf_weights *w) {
    const lmf_spm *s = w->tok->spm;
    int V = w->cfg.vocab_size;
    char **texts = pool_alloc(P, (size_t)V * sizeof *texts);
    int32_t *types = pool_alloc(P, (size_t)V * sizeof *types);
    float *scores = pool_alloc(P, (size_t)V * sizeof *scores);
    for (int i = 0; i < V; i++) {
        size_t n = i < s->n_vocab ? s->off[i + 1] - s->off[i] : 0;
        int hole = i >= s->n_vocab || (s->kind[i] == LMF_SPM_UNUSED && !n);
        texts[i] = pool_alloc(P, hole ? 24 : n + 1);
        if (hole) snprintf(texts[i], 24, "[PAD%d]", i);
        else memcpy(texts[i], s->text + s->off[i], n), texts[i][n] = 0;
        types[i] = hole ? LMF_SPM_UNUSED : s->kind[i];
        scores[i] = hole ? 0.0f : s->score[i];
    }
    lmf_gguf_writer_set_str(g, "tokenizer.ggml.model", "llama");
    lmf_gguf_writer_set_arr_str(g, "tokenizer.ggml.tokens", (const char *const *)texts, (uint64_t)V);
    lmf_gguf_writer_set_arr(g, "tokenizer.ggml.scores", LMF_GGUF_F32, scores, (uint64_t)V);
    lmf_gguf_writer_set_arr(g, "tokenizer.ggml.token_type", LMF_GGUF_I32, types, (uint64_t)V);
    lmf_gguf_writer_set_bool(g, "tokenizer.ggml.add_space_prefix", s->prefix != LMF_SPM_PREFIX_NEVER);
    if (s->unk >= 0) lmf_gguf_writer_set_u32(g, "tokenizer.ggml.unknown_token_id", (uint32_t)s->unk);
    gguf_vocab_specials(g, w);
}

/* The vocabulary as llama.cpp's tokenizer.ggml.* keys, padded to the model's vocab_size with [PAD<i>] tokens of
 * type UNUSED (llama.cpp requires one token per embedding row). */
static void gguf_vocab(pool *P, lmf_gguf_writer *g, const lmf_weights *w) {
    const lmf_tokenizer *tok = w->tok;
    if (tok->spm) {
        gguf_vocab_spm(P, g, w);
        return;
    }
    const lmf_bpe *m = &tok->bpe;
    int V = w->cfg.vocab_size;
    char **texts = pool_alloc(P, (size_t)V * sizeof *texts);
    int32_t *types = pool_alloc(P, (size_t)V * sizeof *types);
    for (int i = 0; i < V; i++) {
        int hole = i >= m->n_vocab || m->type[i] == LMF_TOKEN_UNUSED;
        if (hole) {
            texts[i] = pool_alloc(P, 24);
            snprintf(texts[i], 24, "[PAD%d]", i);
            types[i] = 5; /* UNUSED */
            continue;
        }
        size_t n = m->off[i + 1] - m->off[i];
        texts[i] = pool_alloc(P, 2 * n + 1);
        if (m->type[i] == LMF_TOKEN_NORMAL) lmf_bytelevel_encode(m->bytes + m->off[i], n, texts[i]);
        else memcpy(texts[i], m->bytes + m->off[i], n);
        types[i] = m->type[i] == LMF_TOKEN_NORMAL ? 1 : m->type[i] == LMF_TOKEN_CONTROL ? 3 : 4;
    }
    char **merges = pool_alloc(P, (size_t)(m->n_merges ? m->n_merges : 1) * sizeof *merges);
    for (int r = 0; r < m->n_merges; r++) {
        const char *a = texts[m->merges[2 * r]], *b = texts[m->merges[2 * r + 1]];
        size_t la = strlen(a), lb = strlen(b);
        merges[r] = pool_alloc(P, la + lb + 2);
        memcpy(merges[r], a, la);
        merges[r][la] = ' ';
        memcpy(merges[r] + la + 1, b, lb + 1);
    }
    /* llama.cpp's names for the pre-tokenizers (lmforge's reader knows them as aliases) */
    const char *pre = tok->pre.kind == LMF_PRETOK_LLAMA3   ? "llama-bpe"
                      : tok->pre.kind == LMF_PRETOK_SMOLLM ? "smollm"
                      : tok->pre.kind == LMF_PRETOK_QWEN2  ? "qwen2"
                                                           : "gpt-2";
    lmf_gguf_writer_set_str(g, "tokenizer.ggml.model", "gpt2");
    lmf_gguf_writer_set_str(g, "tokenizer.ggml.pre", pre);
    lmf_gguf_writer_set_arr_str(g, "tokenizer.ggml.tokens", (const char *const *)texts, (uint64_t)V);
    lmf_gguf_writer_set_arr(g, "tokenizer.ggml.token_type", LMF_GGUF_I32, types, (uint64_t)V);
    lmf_gguf_writer_set_arr_str(g, "tokenizer.ggml.merges", (const char *const *)merges, (uint64_t)m->n_merges);
    gguf_vocab_specials(g, w);
}

/* Layer l's mixture of experts in llama.cpp's names: the router ffn_gate_inp (F32, as llama.cpp's quantizer leaves
 * it), the experts stacked into 3-D ffn_{gate,up,down}_exps (ggml dims in, out, expert) and the shared expert's
 * ffn_{gate,up,down}_shexp. */
static void gguf_moe_layer(pool *P, lmf_gguf_writer *g, const lmf_model_config *c, const lmf_layer_weights *L, int l,
                           type_policy *tp) {
    int C = c->n_embd, F = c->ffn_dim, E = c->n_expert, Fs = c->shared_ffn_dim;
    char nm[96];
#define N(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), nm)
    add_mat(P, g, tp, N("ffn_gate_inp.weight"), LMF_GGML_F32, &L->router, NULL);
    static const char *const names[3] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"};
    static const tensor_role roles[3] = {ROLE_FFN_GATE, ROLE_FFN_UP, ROLE_FFN_DOWN};
    for (int k = 0; k < 3; k++) {
        int cols = k < 2 ? C : F;
        uint32_t t = tensor_type(tp, names[k], roles[k], l, cols);
        const lmf_wtensor *ex[LMF_MAX_EXPERT];
        for (int e = 0; e < E; e++) ex[e] = &L->experts[3 * e + k];
        N(names[k]); /* nm, then its importance */
        add_rows(P, g, tp, nm, t, ex, E, NULL, importance(tp, nm, t, cols, E), (size_t)cols, 3);
    }
    if (Fs) {
        uint32_t tg = tensor_type(tp, "ffn_gate_shexp.weight", ROLE_FFN_GATE, l, C);
        uint32_t tu = tensor_type(tp, "ffn_up_shexp.weight", ROLE_FFN_UP, l, C);
        uint32_t td = tensor_type(tp, "ffn_down_shexp.weight", ROLE_FFN_DOWN, l, Fs);
        add_mat(P, g, tp, N("ffn_gate_shexp.weight"), tg, &L->sh_gate, NULL);
        add_mat(P, g, tp, N("ffn_up_shexp.weight"), tu, &L->sh_up, NULL);
        add_mat(P, g, tp, N("ffn_down_shexp.weight"), td, &L->sh_down, NULL);
        if (c->shared_gate) add1(P, g, N("ffn_gate_inp_shexp.weight"), L->sh_gate_inp, C); /* F32, as the router */
    }
#undef N
}

lmf_status lmf_export_gguf(const lmf_weights *w, const char *path, uint32_t type, const char *name) {
    return lmf_export_gguf_sink(w, path, type, name, NULL);
}

lmf_status lmf_export_gguf_sink(const lmf_weights *w, const char *path, uint32_t type, const char *name,
                                const lmf_sink *sink) {
    lmf_export_opts o = {.name = name, .sink = sink};
    return lmf_export_gguf_opts(w, path, type, &o);
}

/* llama-quantize's record of the importance matrix (its strings cut at 127 bytes, as its overrides) */
static void imatrix_keys(lmf_gguf_writer *g, const lmf_export_opts *o) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", o->imatrix_file ? o->imatrix_file : "");
    lmf_gguf_writer_set_str(g, "quantize.imatrix.file", buf);
    if (lmf_imatrix_dataset(o->imatrix)) {
        snprintf(buf, sizeof buf, "%s", lmf_imatrix_dataset(o->imatrix));
        lmf_gguf_writer_set_str(g, "quantize.imatrix.dataset", buf);
    }
    lmf_gguf_writer_set_u32(g, "quantize.imatrix.entries_count", (uint32_t)lmf_imatrix_entries(o->imatrix));
    if (lmf_imatrix_chunks(o->imatrix) > 0)
        lmf_gguf_writer_set_u32(g, "quantize.imatrix.chunks_count", (uint32_t)lmf_imatrix_chunks(o->imatrix));
}

lmf_status lmf_export_gguf_opts(const lmf_weights *w, const char *path, uint32_t type, const lmf_export_opts *o) {
    const char *name = o->name;
    const lmf_sink *sink = o->sink;
    const lmf_model_config *c = &w->cfg;
    int gpt2 = c->arch == LMF_ARCH_GPT2, qwen = c->arch == LMF_ARCH_QWEN2, q3 = c->arch == LMF_ARCH_QWEN3;
    int olmoe = c->arch == LMF_ARCH_OLMOE, phi3 = c->arch == LMF_ARCH_PHI3, gemma = lmf_arch_is_gemma(c->arch);
    int v2 = c->arch == LMF_ARCH_GEMMA2;
    int llama = c->arch == LMF_ARCH_LLAMA || qwen || q3 || olmoe || phi3 || gemma;
    int neox = qwen || q3 || olmoe || phi3 || gemma; /* Q/K in HF's order */
    if (!gpt2 && !llama)
        return lmf_fail(LMF_ERR_ARG, "%s: a %s model cannot be written as GGUF (llama.cpp's llama, smollm3, qwen2, "
                        "qwen2moe, qwen3, qwen3moe, olmoe, phi3, gemma3, gemma2 and gpt2 architectures only); export "
                        "it with --to safetensors",
                        path, lmf_arch_name(c->arch));
    int hs0 = lmf_head_size(c);
    int big = c->n_layer == (v2 ? 46 : 62); /* llama.cpp's 27B rule */
    float scale = lmf_block_attn_scale(c), want = 1.0f / sqrtf((float)(big ? c->n_embd / c->n_head : hs0));
    if (gemma && (fabsf(scale - want) > 1e-6f * want || (!v2 && c->sliding_window && c->rope_theta_swa == 0.0f)))
        return lmf_fail(LMF_ERR_ARG, "%s: llama.cpp's %s scales q.k by 1/sqrt(%s) (%g; this model %g)%s; export it "
                        "with --to safetensors", path, lmf_arch_name(c->arch),
                        big ? "embedding_length / head_count" : "the head size", want, scale,
                        v2 ? "" : " and gives windowed layers their own RoPE base");
    if (v2 && (c->attn_softcap == 0.0f || c->final_softcap == 0.0f))
        return lmf_fail(LMF_ERR_ARG, "%s: llama.cpp's gemma2 soft-caps both the scores and the logits; this model's "
                        "caps are %g and %g (0: none); export it with --to safetensors", path, c->attn_softcap,
                        c->final_softcap);
    if (c->rope_scaling == LMF_ROPE_SCALING_LONGROPE && !phi3)
        return lmf_fail(LMF_ERR_ARG, "%s: LongRoPE is written as llama.cpp's phi3 only", path);
    if (c->nope_interval && (c->nope_interval != 4 || c->n_expert || c->rope_scaling))
        return lmf_fail(LMF_ERR_ARG, "%s: NoPE layers are written as llama.cpp's smollm3, whose every 4th layer is one "
                        "(this model: every %d), with no experts and plain RoPE", path, c->nope_interval);
    if (phi3 && (c->n_expert || c->qkv_bias || c->pos != LMF_POS_ROPE_HALF))
        return lmf_fail(LMF_ERR_ARG, "%s: llama.cpp's phi3 has no experts, no q/k/v biases and RoPE on halves (NEOX); "
                        "this model does not fit", path);
    if ((c->qk_norm == LMF_QK_NORM_HEAD && !q3 && c->arch != LMF_ARCH_GEMMA3) ||
        (c->qk_norm == LMF_QK_NORM_FULL && !olmoe) || (q3 && !c->qk_norm))
        return lmf_fail(LMF_ERR_ARG, "%s: a per-head q/k norm is written as llama.cpp's qwen3 / qwen3moe (arch = qwen3), "
                        "a full-width one as its olmoe (arch = olmoe); this model is arch %s with qk_norm %d", path,
                        lmf_arch_name(c->arch), (int)c->qk_norm);
    /* llama.cpp's olmoe: experts on every layer, top-k never renormalised, k's norm as wide as q's (no GQA) */
    if (olmoe && (!c->n_expert || c->shared_ffn_dim || c->norm_topk_prob || c->n_kv_head != c->n_head || c->qkv_bias))
        return lmf_fail(LMF_ERR_ARG, "%s: llama.cpp's olmoe is a mixture of experts without a shared expert, with top-k "
                        "weights that are not renormalised (norm_topk_prob false), n_kv_head = n_head (its k norm is "
                        "[n_embd]) and no q/k/v biases; this model does not fit", path);
    if (q3 && c->qkv_bias)
        return lmf_fail(LMF_ERR_ARG, "%s: llama.cpp's qwen3 has no q/k/v biases; this model has them", path);
    /* llama.cpp's qwen3moe: no shared expert, top-k weights always renormalised */
    if (q3 && c->n_expert && (c->shared_ffn_dim || !c->norm_topk_prob))
        return lmf_fail(LMF_ERR_ARG, "%s: llama.cpp's qwen3moe has no shared expert and always renormalises the top-k "
                        "weights (norm_topk_prob true); this model has %s", path,
                        c->shared_ffn_dim ? "a shared expert" : "norm_topk_prob false");
    if (c->arch == LMF_ARCH_LLAMA && c->qkv_bias)
        return lmf_fail(LMF_ERR_ARG, "%s: a llama model with q/k/v biases cannot be written as llama.cpp's llama "
                        "architecture; set arch = qwen2", path);
    /* llama.cpp's qwen2moe: a shared expert and its gate on every layer, top-k weights never renormalised */
    if (qwen && c->n_expert && (!c->shared_gate || c->norm_topk_prob))
        return lmf_fail(LMF_ERR_ARG, "%s: llama.cpp's qwen2moe needs a gated shared expert (shared_gate) and top-k "
                        "weights that are not renormalised (norm_topk_prob false); this model has %s", path,
                        c->norm_topk_prob ? "norm_topk_prob true" : "no shared expert gate");
    if (!qwen && c->shared_gate)
        return lmf_fail(LMF_ERR_ARG, "%s: a gated shared expert is written as qwen2moe, which needs arch qwen2", path);
    if (!lmf_quantize_supported(base_type(type)))
        return lmf_fail(LMF_ERR_ARG, "%s: GGUF export cannot write %s matrices", path, lmf_export_type_name(type));
    if ((o->output_type_set && !lmf_quantize_supported(o->output_type)) ||
        (o->token_embd_type_set && !lmf_quantize_supported(o->token_embd_type)))
        return lmf_fail(LMF_ERR_ARG, "%s: the output or token embedding type is not one GGUF export writes", path);
    regex_t *re = o->n_rules ? lmf_xcalloc((size_t)o->n_rules, sizeof *re) : NULL;
    for (int i = 0; i < o->n_rules; i++) {
        char pat[256], msg[128];
        int rc = -1;
        if (strlen(o->rules[i].pattern) < sizeof pat && lmf_quantize_supported(o->rules[i].type)) {
            for (size_t k = 0; (pat[k] = (char)tolower((unsigned char)o->rules[i].pattern[k])); k++) continue;
            rc = regcomp(&re[i], pat, REG_EXTENDED | REG_NOSUB); /* lowercased, as llama-quantize's */
        }
        if (rc) {
            if (rc > 0) regerror(rc, &re[i], msg, sizeof msg);
            else snprintf(msg, sizeof msg, "too long, or a type GGUF export does not write");
            for (int k = 0; k < i; k++) regfree(&re[k]);
            free(re);
            return lmf_fail(LMF_ERR_ARG, "%s: tensor type rule %d (%s=%s): %s", path, i + 1, o->rules[i].pattern,
                            lmf_ggml_type_name(o->rules[i].type), msg);
        }
    }
    /* llama.cpp keeps llama3 scaling as rope_freqs.weight, which only its llama graph reads */
    if (c->rope_scaling == LMF_ROPE_SCALING_LLAMA3 && c->arch != LMF_ARCH_LLAMA)
        return lmf_fail(LMF_ERR_ARG, "%s: llama3 RoPE scaling is written as rope_freqs.weight, which llama.cpp applies "
                        "to its llama architecture only, not to this %s model", path, lmf_arch_name(c->arch));
    int C = c->n_embd, hs = lmf_head_size(c), QD = lmf_q_width(c), KV = lmf_kv_width(c), F = c->ffn_dim;
    int V = c->vocab_size;
    pool P = {0};
    lmf_gguf_writer *g = lmf_gguf_writer_create(0);
    const char *arch = lmf_gguf_arch(c);
    char key[128], nm[96];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    lmf_gguf_writer_set_str(g, "general.architecture", arch);
    snprintf(nm, sizeof nm, "lmforge-%s", lmf_arch_name(w->cfg.arch));
    lmf_gguf_writer_set_str(g, "general.name", name ? name : nm);
    lmf_gguf_writer_set_u32(g, "general.file_type", file_type(type));
    if (o->imatrix) imatrix_keys(g, o);
    lmf_gguf_writer_set_u32(g, KEY("context_length"), (uint32_t)c->max_seq_len);
    lmf_gguf_writer_set_u32(g, KEY("embedding_length"), (uint32_t)C);
    lmf_gguf_writer_set_u32(g, KEY("block_count"), (uint32_t)c->n_layer);
    lmf_gguf_writer_set_u32(g, KEY("feed_forward_length"), (uint32_t)F);
    lmf_gguf_writer_set_u32(g, KEY("attention.head_count"), (uint32_t)c->n_head);
    if (llama) {
        lmf_gguf_writer_set_u32(g, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_head);
        lmf_gguf_writer_set_f32(g, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
        lmf_gguf_writer_set_f32(g, KEY("rope.freq_base"), c->rope_theta);
        lmf_gguf_writer_set_u32(g, KEY("rope.dimension_count"), (uint32_t)hs);
        if (c->rope_scaling == LMF_ROPE_SCALING_LINEAR) { /* as llama.cpp's converter */
            lmf_gguf_writer_set_str(g, KEY("rope.scaling.type"), "linear");
            lmf_gguf_writer_set_f32(g, KEY("rope.scaling.factor"), c->rope_factor);
        }
        if (c->rope_scaling == LMF_ROPE_SCALING_LONGROPE) { /* as llama.cpp's phi3 converter; factors below */
            lmf_gguf_writer_set_f32(g, KEY("rope.scaling.attn_factor"), c->rope_factor);
            lmf_gguf_writer_set_u32(g, KEY("rope.scaling.original_context_length"), (uint32_t)c->rope_orig_ctx);
        }
        if (phi3 && c->sliding_window) /* as llama.cpp's phi3 converter writes it (and its loader ignores it) */
            lmf_gguf_writer_set_u32(g, KEY("attention.sliding_window"), (uint32_t)c->sliding_window);
        if (gemma && c->sliding_window) { /* llama.cpp's gemma3 / 2: the window, every Nth layer global, their RoPE */
            lmf_gguf_writer_set_u32(g, KEY("attention.sliding_window"), (uint32_t)c->sliding_window);
            lmf_gguf_writer_set_u32(g, KEY("attention.sliding_window_pattern"), (uint32_t)c->swa_pattern);
            if (c->rope_theta_swa != 0.0f) lmf_gguf_writer_set_f32(g, KEY("rope.freq_base_swa"), c->rope_theta_swa);
        }
        if (v2) { /* llama.cpp's gemma2 always caps (validation above: both set) */
            lmf_gguf_writer_set_f32(g, KEY("attn_logit_softcapping"), c->attn_softcap);
            lmf_gguf_writer_set_f32(g, KEY("final_logit_softcapping"), c->final_softcap);
        }
        if (QD != C || gemma) { /* heads not C / n_head wide: llama.cpp reads their size here (its qwen3 converter
                                 * writes it; its gemma converters always do) */
            lmf_gguf_writer_set_u32(g, KEY("attention.key_length"), (uint32_t)hs);
            lmf_gguf_writer_set_u32(g, KEY("attention.value_length"), (uint32_t)hs);
        }
        lmf_gguf_writer_set_u32(g, KEY("vocab_size"), (uint32_t)V);
        if (c->n_expert) {
            lmf_gguf_writer_set_u32(g, KEY("expert_count"), (uint32_t)c->n_expert);
            lmf_gguf_writer_set_u32(g, KEY("expert_used_count"), (uint32_t)c->n_expert_used);
            lmf_gguf_writer_set_bool(g, KEY("expert_weights_norm"), c->norm_topk_prob != 0);
            if (qwen || q3) lmf_gguf_writer_set_u32(g, KEY("expert_feed_forward_length"), (uint32_t)F);
            if (c->shared_ffn_dim)
                lmf_gguf_writer_set_u32(g, KEY("expert_shared_feed_forward_length"), (uint32_t)c->shared_ffn_dim);
        }
    } else {
        lmf_gguf_writer_set_f32(g, KEY("attention.layer_norm_epsilon"), c->norm_eps);
    }
#undef KEY
    if (w->tok) gguf_vocab(&P, g, w);
    else lmf_gguf_writer_set_str(g, "tokenizer.ggml.model", "none"); /* llama.cpp then loads it without a vocabulary */

    /* Q/K rows: llama's rotate_half sources are permuted to llama.cpp's order, its GGUF sources already are in it;
     * qwen2 and qwen3 keep Hugging Face's order (llama.cpp runs them with NEOX RoPE), so interleaved sources go back
     * to it */
    int *pq = NULL, *pk = NULL;
    if (llama && (w->cfg.pos == LMF_POS_ROPE_HALF) != neox)
        pq = rope_perm(&P, c->n_head, hs, !neox), pk = rope_perm(&P, c->n_kv_head, hs, !neox);
    if (c->rope_scaling == LMF_ROPE_SCALING_LLAMA3) { /* llama.cpp's converter: the divisors, not the parameters */
        float *ff = pool_alloc(&P, sizeof(float) * (size_t)(hs / 2));
        lmf_rope_freq_factors(c, ff);
        add1(&P, g, "rope_freqs.weight", ff, hs / 2);
    }
    if (c->rope_scaling == LMF_ROPE_SCALING_LONGROPE) {
        add1(&P, g, "rope_factors_long.weight", w->rope_long, hs / 2);
        add1(&P, g, "rope_factors_short.weight", w->rope_short, hs / 2);
    }
    /* llama.cpp requires output.weight for gpt2 even though GPT-2 ties it (its converter writes a copy); so does its
     * qwen2moe */
    int has_output = !c->tied_embeddings || gpt2 || (qwen && c->n_expert) || olmoe;
    type_policy tp = {.type = type, .n_layer = c->n_layer, .n_expert = c->n_expert, .has_output = has_output,
                      .n_gqa = c->n_kv_head ? c->n_head / c->n_kv_head : 1,
                      .im = o->imatrix && lmf_imatrix_entries(o->imatrix) ? o->imatrix : NULL, .err = LMF_OK,
                      .o = o, .re = re, .layer = -1};
    /* progress in layers (the embeddings and head count as one), as the tensors are converted while the file is
     * written: a 7B model's K-quant search takes minutes */
    lmf_sink_progress(sink, LMF_PROGRESS_BEGIN, 0, c->n_layer + 1, "layers", NULL);
    uint32_t te = tensor_type(&tp, "token_embd.weight", ROLE_TOKEN_EMBD, -1, C);
    add_mat(&P, g, &tp, "token_embd.weight", te, &w->tok_emb, NULL);
    if (gpt2) {
        uint32_t tpe = tensor_type(&tp, "position_embd.weight", ROLE_POS_EMBD, -1, C);
        add_mat(&P, g, &tp, "position_embd.weight", tpe, &w->pos_emb, NULL);
    }
    add1(&P, g, "output_norm.weight", w->out_norm_w, C);
    if (gpt2) add1(&P, g, "output_norm.bias", w->out_norm_b, C);
    if (has_output) {
        /* --leave-output-tensor: as it is (llama-quantize copies it) */
        uint32_t to = o->leave_output ? w->lm_head.type : tensor_type(&tp, "output.weight", ROLE_OUTPUT, -1, C);
        add_mat(&P, g, &tp, "output.weight", to, &w->lm_head, NULL);
    }
    for (int l = 0; l < c->n_layer; l++) {
        tp.layer = l;
        const lmf_layer_weights *L = &w->layers[l];
#define N(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), nm)
        /* the row types of this layer's matrices (rows of C, of q's width QD, of F elements) */
        uint32_t tq = tensor_type(&tp, "attn_q.weight", ROLE_ATTN_Q, l, C);
        uint32_t tk = tensor_type(&tp, "attn_k.weight", ROLE_ATTN_K, l, C);
        uint32_t tv = tensor_type(&tp, gpt2 || phi3 ? "attn_qkv.weight" : "attn_v.weight", ROLE_ATTN_V, l, C);
        uint32_t to = tensor_type(&tp, "attn_output.weight", ROLE_ATTN_OUT, l, gpt2 ? C : QD);
        uint32_t tg = tensor_type(&tp, "ffn_gate.weight", ROLE_FFN_GATE, l, C);
        uint32_t tu = tensor_type(&tp, "ffn_up.weight", ROLE_FFN_UP, l, C);
        uint32_t td = tensor_type(&tp, "ffn_down.weight", ROLE_FFN_DOWN, l, F);
        add1(&P, g, N("attn_norm.weight"), L->attn_norm_w, C);
        add1(&P, g, N("ffn_norm.weight"), L->ffn_norm_w, C);
        if (c->post_norms) { /* already 1 + Gemma's, as llama.cpp's converter writes them */
            add1(&P, g, N("post_attention_norm.weight"), L->post_attn_norm_w, C);
            add1(&P, g, N("post_ffw_norm.weight"), L->post_ffn_norm_w, C);
        }
        if (gpt2) {
            const lmf_wtensor *qkv[3] = {&L->wq, &L->wk, &L->wv}; /* llama.cpp's quantizer treats it as attn_v */
            N("attn_qkv.weight");
            add_fused(&P, g, &tp, nm, tv, qkv, 3, importance(&tp, nm, tv, C, 1));
            const float *bp[3] = {L->bq, L->bk, L->bv};
            int bl[3] = {C, C, C};
            int64_t ne = 3 * C;
            lmf_gguf_writer_add_tensor(g, N("attn_qkv.bias"), LMF_GGML_F32, 1, &ne, vector(&P, bp, bl, 3, LMF_GGML_F32));
            add1(&P, g, N("attn_norm.bias"), L->attn_norm_b, C);
            add1(&P, g, N("ffn_norm.bias"), L->ffn_norm_b, C);
            add1(&P, g, N("attn_output.bias"), L->bo, C);
            add1(&P, g, N("ffn_up.bias"), L->b_up, F);
            add1(&P, g, N("ffn_down.bias"), L->b_down, C);
        } else if (phi3) { /* q|k|v and gate|up fused, as llama.cpp's phi3 reads them; attn_qkv quantized as attn_v */
            const lmf_wtensor *qkv[3] = {&L->wq, &L->wk, &L->wv}, *gu[2] = {&L->w_gate, &L->w_up};
            N("attn_qkv.weight"); /* nm, then its importance */
            add_fused(&P, g, &tp, nm, tv, qkv, 3, importance(&tp, nm, tv, C, 1));
            N("ffn_up.weight");
            add_fused(&P, g, &tp, nm, tu, gu, 2, importance(&tp, nm, tu, C, 1));
        } else {
            add_mat(&P, g, &tp, N("attn_q.weight"), tq, &L->wq, pq);
            add_mat(&P, g, &tp, N("attn_k.weight"), tk, &L->wk, pk);
            add_mat(&P, g, &tp, N("attn_v.weight"), tv, &L->wv, NULL);
            if (c->qk_norm) { /* [hs] (qwen3) or [C], [KV] (olmoe); never permuted (validation: rotate_half only) */
                add1(&P, g, N("attn_q_norm.weight"), L->q_norm_w, lmf_qk_norm_width(c, 0));
                add1(&P, g, N("attn_k_norm.weight"), L->k_norm_w, lmf_qk_norm_width(c, 1));
            }
            if (qwen && c->qkv_bias) { /* the biases follow the rows of their matrix: Q's and K's with them */
                const float *bq = L->bq, *bk = L->bk;
                if (pq) {
                    float *q = pool_alloc(&P, sizeof(float) * (size_t)QD), *k = pool_alloc(&P, sizeof(float) * KV);
                    for (int r = 0; r < QD; r++) q[r] = L->bq[pq[r]];
                    for (int r = 0; r < KV; r++) k[r] = L->bk[pk[r]];
                    bq = q, bk = k;
                }
                add1(&P, g, N("attn_q.bias"), bq, QD);
                add1(&P, g, N("attn_k.bias"), bk, KV);
                add1(&P, g, N("attn_v.bias"), L->bv, KV);
            }
            if (!c->n_expert) add_mat(&P, g, &tp, N("ffn_gate.weight"), tg, &L->w_gate, NULL);
        }
        add_mat(&P, g, &tp, N("attn_output.weight"), to, &L->wo, NULL);
        if (c->n_expert) {
            gguf_moe_layer(&P, g, c, L, l, &tp);
            continue;
        }
        if (!phi3) add_mat(&P, g, &tp, N("ffn_up.weight"), tu, &L->w_up, NULL);
        add_mat(&P, g, &tp, N("ffn_down.weight"), td, &L->w_down, NULL);
#undef N
    }
    lmf_status s = tp.err != LMF_OK ? tp.err : lmf_gguf_writer_write(g, path); /* converts as it writes */
    lmf_sink_progress(sink, LMF_PROGRESS_UPDATE, c->n_layer + 1, c->n_layer + 1, "layers",
                      s == LMF_OK ? "written" : "failed");
    lmf_sink_progress(sink, LMF_PROGRESS_END, c->n_layer + 1, c->n_layer + 1, "layers", NULL);
    lmf_gguf_writer_free(g);
    pool_free(&P);
    for (int i = 0; i < o->n_rules; i++) regfree(&re[i]);
    free(re);
    return s;
}

/* ---- Hugging Face folder ------------------------------------------------------------------------------------- */

typedef struct {
    pool P;
    lmf_st_out *t;
    int n, cap;
    uint32_t type;
} st_list;

static lmf_dtype dtype_of(uint32_t type) {
    return type == LMF_GGML_F32 ? LMF_DT_F32 : type == LMF_GGML_F16 ? LMF_DT_F16 : LMF_DT_BF16;
}

static void put(st_list *s, const char *name, int rows, int cols, const void *data) {
    if (s->n == s->cap) s->cap = s->cap ? 2 * s->cap : 64, s->t = lmf_xrealloc(s->t, (size_t)s->cap * sizeof *s->t);
    char *nm = pool_alloc(&s->P, strlen(name) + 1);
    strcpy(nm, name);
    lmf_st_out *o = &s->t[s->n++];
    memset(o, 0, sizeof *o);
    o->name = nm, o->dtype = dtype_of(s->type), o->data = data;
    o->ndim = cols ? 2 : 1;
    o->shape[0] = rows, o->shape[1] = cols;
}

/* Matrices t[0..n) of one width stacked row-wise (t[0]'s rows in perm's order, or as they are), converted to the
 * export's float type as the file is written (lmf_st_out.fill), as GGUF's lazy tensors are */
static void put_rows(st_list *s, const char *name, const lmf_wtensor *const *t, int n, const int *perm) {
    lazy_rows *j = pool_alloc(&s->P, sizeof *j);
    j->t = pool_alloc(&s->P, sizeof *j->t * (size_t)n);
    int rows = 0;
    for (int i = 0; i < n; i++) j->t[i] = t[i], rows += t[i]->rows;
    j->type = s->type, j->n = n, j->perm = perm, j->layer = -1;
    put(s, name, rows, t[0]->cols, NULL);
    s->t[s->n - 1].fill = fill_rows, s->t[s->n - 1].ctx = j;
}

static void put_m(st_list *s, const char *name, const lmf_wtensor *t, const int *perm) { put_rows(s, name, &t, 1, perm); }

static void put_v(st_list *s, const char *name, const float *x, int n) { put(s, name, n, 0, vec1(&s->P, x, n, s->type)); }

/* A Gemma norm weight: transformers' Gemma3RMSNorm scales by 1 + the stored value, lmforge by the value */
static void put_gemma_norm(st_list *s, const char *name, const float *x, int n) {
    float *v = pool_alloc(&s->P, sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) v[i] = x[i] - 1.0f;
    put_v(s, name, v, n);
}

/* matrices t[0..n) (of one width) stacked row-wise as one tensor (Phi-3's qkv_proj, gate_up_proj) */
static void put_fused(st_list *s, const char *name, const lmf_wtensor *const *t, int n) { put_rows(s, name, t, n, NULL); }

/* A Conv1D weight: (in, out) = transpose of t. */
static void put_t(st_list *s, const char *name, const lmf_wtensor *t) {
    void *d = pool_alloc(&s->P, (size_t)t->rows * t->cols * type_size(s->type));
    convert(d, s->type, t, NULL, 1, (size_t)t->rows, 0);
    put(s, name, t->cols, t->rows, d);
}

static lmf_status write_json(const char *dir, const char *file, cJSON *j) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    LMF_CHECK(text);
    const void *parts[] = {text, "\n"};
    size_t sizes[] = {strlen(text), 1};
    lmf_status s = lmf_write_file_atomic(p, parts, sizes, 2);
    free(text);
    return s;
}

static void num(cJSON *o, const char *k, double v) { cJSON_AddNumberToObject(o, k, v); }

/* A float field written with a decimal point: cJSON prints 10000.0 as 10000, and transformers' strict config
 * classes (Qwen2-MoE's) refuse an int where they declare a float. */
static void numf(cJSON *o, const char *k, double v) {
    char t[64];
    snprintf(t, sizeof t, "%.9g", v);
    if (!strpbrk(t, ".eEn")) strcat(t, ".0");
    cJSON_AddRawToObject(o, k, t);
}

static void special_ids(cJSON *o, const lmf_weights *w) {
    if (w->bos_id >= 0) num(o, "bos_token_id", w->bos_id);
    else cJSON_AddNullToObject(o, "bos_token_id");
    if (w->eos_id >= 0) num(o, "eos_token_id", w->eos_id);
    else cJSON_AddNullToObject(o, "eos_token_id");
}

typedef struct {
    const char *key;
    double v;
} num_field;

/* The head of one family's config.json: its class in "architectures", its model_type, then its numbers in order. */
static void hf_family(cJSON *j, cJSON *arch, const char *cls, const char *type, const num_field *f, size_t n) {
    cJSON_AddItemToArray(arch, cJSON_CreateString(cls));
    cJSON_AddStringToObject(j, "model_type", type);
    for (size_t i = 0; i < n; i++) num(j, f[i].key, f[i].v);
}

const char *lmf_gguf_arch(const lmf_model_config *c) {
    if (c->n_expert && c->arch == LMF_ARCH_QWEN2) return "qwen2moe";
    if (c->n_expert && c->arch == LMF_ARCH_QWEN3) return "qwen3moe";
    if (c->nope_interval && c->arch == LMF_ARCH_LLAMA) return "smollm3";
    return lmf_arch_name(c->arch);
}

/* RoPE's type and parameters as transformers names them (rope_parameters / rope_scaling, Meta's Llama 3.x
 * config.json for llama3); rope_theta inside it for rope_parameters, beside it for llama's rope_scaling. */
static void hf_rope(cJSON *rope, const lmf_model_config *c) {
    static const char *const type[] = {"default", "linear", "llama3"}; /* by lmf_rope_scaling_kind */
    int params = c->arch != LMF_ARCH_LLAMA;
    cJSON_AddStringToObject(rope, "rope_type", type[c->rope_scaling]);
    if (params) numf(rope, "rope_theta", c->rope_theta);
    if (c->rope_scaling) numf(rope, "factor", c->rope_factor);
    if (c->rope_scaling == LMF_ROPE_SCALING_LLAMA3) {
        numf(rope, "low_freq_factor", c->rope_low_freq_factor);
        numf(rope, "high_freq_factor", c->rope_high_freq_factor);
        num(rope, "original_max_position_embeddings", c->rope_orig_ctx);
    }
}

/* Phi-3's LongRoPE as its config.json has it: rope_scaling {type, short_factor, long_factor}; attention_factor only
 * where it is not what transformers derives (older transformers accept exactly those three keys) */
static void hf_longrope(cJSON *j, const lmf_weights *w) {
    const lmf_model_config *c = &w->cfg;
    int half = lmf_head_size(c) / 2;
    cJSON *r = cJSON_AddObjectToObject(j, "rope_scaling");
    cJSON_AddStringToObject(r, "type", "longrope");
    const float *f[2] = {w->rope_short, w->rope_long};
    static const char *const name[2] = {"short_factor", "long_factor"};
    for (int k = 0; k < 2; k++) {
        cJSON *a = cJSON_AddArrayToObject(r, name[k]);
        for (int i = 0; i < half; i++) {
            char t[32];
            snprintf(t, sizeof t, "%.9g", f[k][i]);
            cJSON_AddItemToArray(a, cJSON_CreateRaw(t));
        }
    }
    double s = (double)c->max_seq_len / c->rope_orig_ctx;
    float derived = (float)(s <= 1.0 ? 1.0 : sqrt(1.0 + log(s) / log((double)c->rope_orig_ctx)));
    if (derived != c->rope_factor) numf(r, "attention_factor", c->rope_factor);
}

static cJSON *hf_config(const lmf_weights *w, uint32_t type) {
    const lmf_model_config *c = &w->cfg;
    cJSON *j = cJSON_CreateObject(), *arch = cJSON_AddArrayToObject(j, "architectures");
    const char *dt = type == LMF_GGML_F32 ? "float32" : type == LMF_GGML_F16 ? "float16" : "bfloat16";
    if (w->cfg.arch == LMF_ARCH_QWEN2 || w->cfg.arch == LMF_ARCH_QWEN3) {
        int q3 = w->cfg.arch == LMF_ARCH_QWEN3;
        const num_field f[] = {
            {"hidden_size", c->n_embd}, {"intermediate_size", c->ffn_dim}, {"num_attention_heads", c->n_head},
            {"num_key_value_heads", c->n_kv_head}, {"num_hidden_layers", c->n_layer},
            {"max_position_embeddings", c->max_seq_len}};
        if (q3 && c->n_expert) hf_family(j, arch, "Qwen3MoeForCausalLM", "qwen3_moe", f, sizeof f / sizeof *f);
        else if (q3) hf_family(j, arch, "Qwen3ForCausalLM", "qwen3", f, sizeof f / sizeof *f);
        else if (c->n_expert) hf_family(j, arch, "Qwen2MoeForCausalLM", "qwen2_moe", f, sizeof f / sizeof *f);
        else hf_family(j, arch, "Qwen2ForCausalLM", "qwen2", f, sizeof f / sizeof *f);
        /* Qwen3Config's head_dim defaults to 128, not hidden_size / heads (written always); Qwen2's attention reads it
         * when present (written when it is not the quotient, so other exports stay as they were) */
        if (q3 || lmf_q_width(c) != c->n_embd) num(j, "head_dim", lmf_head_size(c));
        if (q3) { /* its biases include o_proj's */
            cJSON_AddBoolToObject(j, "attention_bias", 0);
        }
        numf(j, "rms_norm_eps", c->norm_eps);
        hf_rope(cJSON_AddObjectToObject(j, "rope_parameters"), c); /* transformers 5's form */
        if (c->n_expert) { /* every layer sparse (decoder_sparse_step 1, no mlp_only_layers) */
            num(j, "num_experts", c->n_expert);
            num(j, "num_experts_per_tok", c->n_expert_used);
            num(j, "moe_intermediate_size", c->ffn_dim);
            if (!q3) num(j, "shared_expert_intermediate_size", c->shared_ffn_dim);
            cJSON_AddBoolToObject(j, "norm_topk_prob", c->norm_topk_prob);
            num(j, "decoder_sparse_step", 1);
            cJSON_AddArrayToObject(j, "mlp_only_layers");
            numf(j, "router_aux_loss_coef", c->router_aux_coef);
            cJSON_AddBoolToObject(j, "output_router_logits", 0);
            if (!q3) cJSON_AddBoolToObject(j, "qkv_bias", c->qkv_bias);
        }
        cJSON_AddBoolToObject(j, "use_sliding_window", 0);
        cJSON_AddStringToObject(j, "hidden_act", "silu");
        cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings);
    } else if (w->cfg.arch == LMF_ARCH_OLMOE) {
        const num_field f[] = {
            {"hidden_size", c->n_embd}, {"intermediate_size", c->ffn_dim}, {"num_attention_heads", c->n_head},
            {"num_key_value_heads", c->n_kv_head}, {"num_hidden_layers", c->n_layer},
            {"max_position_embeddings", c->max_seq_len}, {"num_experts", c->n_expert},
            {"num_experts_per_tok", c->n_expert_used}};
        hf_family(j, arch, "OlmoeForCausalLM", "olmoe", f, sizeof f / sizeof *f);
        numf(j, "rms_norm_eps", c->norm_eps);
        hf_rope(cJSON_AddObjectToObject(j, "rope_parameters"), c);
        cJSON_AddBoolToObject(j, "norm_topk_prob", c->norm_topk_prob);
        numf(j, "router_aux_loss_coef", c->router_aux_coef);
        cJSON_AddBoolToObject(j, "output_router_logits", 0);
        cJSON_AddNullToObject(j, "clip_qkv");
        cJSON_AddBoolToObject(j, "attention_bias", 0);
        cJSON_AddStringToObject(j, "hidden_act", "silu");
        cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings);
    } else if (w->cfg.arch == LMF_ARCH_PHI3) {
        const num_field f[] = {
            {"hidden_size", c->n_embd}, {"intermediate_size", c->ffn_dim}, {"num_attention_heads", c->n_head},
            {"num_key_value_heads", c->n_kv_head}, {"num_hidden_layers", c->n_layer},
            {"max_position_embeddings", c->max_seq_len},
            {"original_max_position_embeddings", c->rope_orig_ctx ? c->rope_orig_ctx : c->max_seq_len}};
        hf_family(j, arch, "Phi3ForCausalLM", "phi3", f, sizeof f / sizeof *f);
        numf(j, "rms_norm_eps", c->norm_eps);
        numf(j, "rope_theta", c->rope_theta);
        if (c->rope_scaling == LMF_ROPE_SCALING_LONGROPE) hf_longrope(j, w);
        else cJSON_AddNullToObject(j, "rope_scaling");
        numf(j, "partial_rotary_factor", 1.0);
        if (c->sliding_window) num(j, "sliding_window", c->sliding_window);
        else cJSON_AddNullToObject(j, "sliding_window");
        /* Phi3Config's pad_token_id defaults to 32000, an embedding row a smaller vocabulary lacks */
        if (w->eos_id >= 0) num(j, "pad_token_id", w->eos_id);
        else cJSON_AddNullToObject(j, "pad_token_id");
        cJSON_AddStringToObject(j, "hidden_act", "silu");
        cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings);
    } else if (w->cfg.arch == LMF_ARCH_LLAMA) {
        const num_field f[] = {
            {"hidden_size", c->n_embd}, {"intermediate_size", c->ffn_dim}, {"num_attention_heads", c->n_head},
            {"num_key_value_heads", c->n_kv_head}, {"num_hidden_layers", c->n_layer},
            {"head_dim", lmf_head_size(c)}, {"max_position_embeddings", c->max_seq_len},
            {"rms_norm_eps", c->norm_eps}, {"rope_theta", c->rope_theta}};
        /* a sliding window is Mistral's (LlamaConfig has none) */
        if (c->n_expert) hf_family(j, arch, "MixtralForCausalLM", "mixtral", f, sizeof f / sizeof *f);
        else if (c->sliding_window) hf_family(j, arch, "MistralForCausalLM", "mistral", f, sizeof f / sizeof *f);
        else if (c->nope_interval) hf_family(j, arch, "SmolLM3ForCausalLM", "smollm3", f, sizeof f / sizeof *f);
        else hf_family(j, arch, "LlamaForCausalLM", "llama", f, sizeof f / sizeof *f);
        if (c->nope_interval) { /* SmolLM3Config's list (1: RoPE) and the interval it is built from */
            num(j, "no_rope_layer_interval", c->nope_interval);
            cJSON *nl = cJSON_AddArrayToObject(j, "no_rope_layers");
            for (int l = 0; l < c->n_layer; l++)
                cJSON_AddItemToArray(nl, cJSON_CreateNumber(lmf_block_layer_rope(c, l)));
            cJSON_AddBoolToObject(j, "use_sliding_window", 0);
        }
        if (c->n_expert) {
            num(j, "num_local_experts", c->n_expert);
            num(j, "num_experts_per_tok", c->n_expert_used);
            num(j, "router_aux_loss_coef", c->router_aux_coef);
            cJSON_AddBoolToObject(j, "output_router_logits", 0);
        }
        if (c->sliding_window) num(j, "sliding_window", c->sliding_window);
        else if (c->n_expert) cJSON_AddNullToObject(j, "sliding_window");
        if (c->rope_scaling) hf_rope(cJSON_AddObjectToObject(j, "rope_scaling"), c); /* transformers 4's form */
        else cJSON_AddNullToObject(j, "rope_scaling");
        cJSON_AddStringToObject(j, "hidden_act", "silu");
        cJSON_AddBoolToObject(j, "attention_bias", 0);
        cJSON_AddBoolToObject(j, "mlp_bias", 0);
        cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings);
    } else if (lmf_arch_is_gemma(w->cfg.arch)) {
        int v2 = w->cfg.arch == LMF_ARCH_GEMMA2;
        const num_field f[] = {
            {"hidden_size", c->n_embd}, {"intermediate_size", c->ffn_dim}, {"num_attention_heads", c->n_head},
            {"num_key_value_heads", c->n_kv_head}, {"num_hidden_layers", c->n_layer},
            {"head_dim", lmf_head_size(c)}, {"max_position_embeddings", c->max_seq_len},
            {"rms_norm_eps", c->norm_eps}};
        if (v2) hf_family(j, arch, "Gemma2ForCausalLM", "gemma2", f, sizeof f / sizeof *f);
        else hf_family(j, arch, "Gemma3ForCausalLM", "gemma3_text", f, sizeof f / sizeof *f);
        /* the scale as 1/sqrt(query_pre_attn_scalar): a whole number when it is one to fp32's precision */
        double s = lmf_block_attn_scale(c), q = 1.0 / (s * s);
        if (fabs(q - round(q)) < 1e-4 * q) num(j, "query_pre_attn_scalar", round(q)); /* an int in Gemma3TextConfig */
        else numf(j, "query_pre_attn_scalar", q);
        num(j, "sliding_window", c->sliding_window ? c->sliding_window : c->max_seq_len);
        cJSON *lt = cJSON_AddArrayToObject(j, "layer_types");
        for (int l = 0; l < c->n_layer; l++)
            cJSON_AddItemToArray(lt, cJSON_CreateString(lmf_block_layer_window(c, l) ? "sliding_attention"
                                                                                    : "full_attention"));
        if (v2) { /* one RoPE (validation in lmf_export_safetensors: no separate local base, no scaling) */
            numf(j, "rope_theta", c->rope_theta);
        } else {
            cJSON *rp = cJSON_AddObjectToObject(j, "rope_parameters");
            cJSON *full = cJSON_AddObjectToObject(rp, "full_attention");
            cJSON *slide = cJSON_AddObjectToObject(rp, "sliding_attention");
            cJSON_AddStringToObject(full, "rope_type", c->rope_scaling ? "linear" : "default");
            numf(full, "rope_theta", c->rope_theta);
            if (c->rope_scaling) numf(full, "factor", c->rope_factor);
            cJSON_AddStringToObject(slide, "rope_type", "default");
            numf(slide, "rope_theta", c->rope_theta_swa != 0.0f ? c->rope_theta_swa : c->rope_theta);
        }
        cJSON_AddStringToObject(j, "hidden_activation", "gelu_pytorch_tanh");
        const char *caps[2] = {"final_logit_softcapping", "attn_logit_softcapping"};
        float cv[2] = {c->final_softcap, c->attn_softcap};
        for (int i = 0; i < 2; i++)
            if (cv[i] != 0.0f) numf(j, caps[i], cv[i]);
            else cJSON_AddNullToObject(j, caps[i]);
        cJSON_AddBoolToObject(j, "attention_bias", 0);
        cJSON_AddBoolToObject(j, "use_bidirectional_attention", 0);
        cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_embeddings);
    } else if (w->cfg.arch == LMF_ARCH_GPT2) {
        const num_field f[] = {{"n_embd", c->n_embd},         {"n_layer", c->n_layer},   {"n_head", c->n_head},
                               {"n_positions", c->max_seq_len}, {"n_ctx", c->max_seq_len}, {"n_inner", c->ffn_dim},
                               {"layer_norm_epsilon", c->norm_eps}};
        hf_family(j, arch, "GPT2LMHeadModel", "gpt2", f, sizeof f / sizeof *f);
        cJSON_AddStringToObject(j, "activation_function", "gelu_new");
        cJSON_AddBoolToObject(j, "tie_word_embeddings", 1);
    } else {
        const num_field f[] = {
            {"hidden_size", c->n_embd}, {"word_embed_proj_dim", c->n_embd}, {"ffn_dim", c->ffn_dim},
            {"num_attention_heads", c->n_head}, {"num_hidden_layers", c->n_layer},
            {"max_position_embeddings", c->max_seq_len}};
        hf_family(j, arch, "OPTForCausalLM", "opt", f, sizeof f / sizeof *f);
        cJSON_AddBoolToObject(j, "do_layer_norm_before", 1);
        cJSON_AddStringToObject(j, "activation_function", "relu");
        cJSON_AddBoolToObject(j, "tie_word_embeddings", 1);
    }
    num(j, "vocab_size", c->vocab_size);
    special_ids(j, w);
    cJSON_AddStringToObject(j, "torch_dtype", dt);
    cJSON_AddStringToObject(j, "dtype", dt);
    return j;
}

static void hf_tensors(st_list *s, const lmf_weights *w) {
    const lmf_model_config *c = &w->cfg;
    int C = c->n_embd, hs = lmf_head_size(c), QD = lmf_q_width(c), F = c->ffn_dim;
    char nm[160];
#define N(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)
    if (lmf_arch_is_llama_family(w->cfg.arch)) {
        int *pq = NULL, *pk = NULL, qwen = w->cfg.arch != LMF_ARCH_LLAMA, KV = c->n_kv_head * hs;
        if (w->cfg.pos == LMF_POS_ROPE_INTERLEAVED)
            pq = rope_perm(&s->P, c->n_head, hs, 0), pk = rope_perm(&s->P, c->n_kv_head, hs, 0);
        int gemma = lmf_arch_is_gemma(c->arch);
        void (*norm)(st_list *, const char *, const float *, int) = gemma ? put_gemma_norm : put_v;
        put_m(s, "model.embed_tokens.weight", &w->tok_emb, NULL);
        norm(s, "model.norm.weight", w->out_norm_w, C);
        if (!c->tied_embeddings) put_m(s, "lm_head.weight", &w->lm_head, NULL);
        for (int l = 0; l < c->n_layer; l++) {
            const lmf_layer_weights *L = &w->layers[l];
            norm(s, N("model.layers.%d.input_layernorm.weight", l), L->attn_norm_w, C);
            if (gemma) { /* the sandwich: post_attention_layernorm is attention's output norm here, not the FFN's */
                norm(s, N("model.layers.%d.post_attention_layernorm.weight", l), L->post_attn_norm_w, C);
                norm(s, N("model.layers.%d.pre_feedforward_layernorm.weight", l), L->ffn_norm_w, C);
                norm(s, N("model.layers.%d.post_feedforward_layernorm.weight", l), L->post_ffn_norm_w, C);
            } else {
                put_v(s, N("model.layers.%d.post_attention_layernorm.weight", l), L->ffn_norm_w, C);
            }
            if (c->arch == LMF_ARCH_PHI3) { /* q | k | v and gate | up fused (validation: rotate_half order) */
                const lmf_wtensor *qkv[3] = {&L->wq, &L->wk, &L->wv}, *gu[2] = {&L->w_gate, &L->w_up};
                put_fused(s, N("model.layers.%d.self_attn.qkv_proj.weight", l), qkv, 3);
                put_m(s, N("model.layers.%d.self_attn.o_proj.weight", l), &L->wo, NULL);
                put_fused(s, N("model.layers.%d.mlp.gate_up_proj.weight", l), gu, 2);
                put_m(s, N("model.layers.%d.mlp.down_proj.weight", l), &L->w_down, NULL);
                continue;
            }
            put_m(s, N("model.layers.%d.self_attn.q_proj.weight", l), &L->wq, pq);
            put_m(s, N("model.layers.%d.self_attn.k_proj.weight", l), &L->wk, pk);
            put_m(s, N("model.layers.%d.self_attn.v_proj.weight", l), &L->wv, NULL);
            put_m(s, N("model.layers.%d.self_attn.o_proj.weight", l), &L->wo, NULL);
            if (c->qk_norm) { /* HF's order (validation keeps q/k-norm models in rotate_half order) */
                norm(s, N("model.layers.%d.self_attn.q_norm.weight", l), L->q_norm_w, lmf_qk_norm_width(c, 0));
                norm(s, N("model.layers.%d.self_attn.k_norm.weight", l), L->k_norm_w, lmf_qk_norm_width(c, 1));
            }
            if (c->qkv_bias) { /* qwen2's (the exporter refuses llama with them); Q's and K's follow their rows */
                const float *b[3] = {L->bq, L->bk, L->bv};
                const int *perm[3] = {pq, pk, NULL}, n[3] = {QD, KV, KV};
                static const char *const qkv[3] = {"q", "k", "v"};
                for (int i = 0; i < 3; i++) {
                    float *v = pool_alloc(&s->P, sizeof(float) * (size_t)n[i]);
                    for (int r = 0; r < n[i]; r++) v[r] = b[i][perm[i] ? perm[i][r] : r];
                    put_v(s, N("model.layers.%d.self_attn.%s_proj.bias", l, qkv[i]), v, n[i]);
                }
            }
            if (c->n_expert && qwen) { /* Qwen2/3-MoE's names, one tensor per expert (what its checkpoints hold) */
                put_m(s, N("model.layers.%d.mlp.gate.weight", l), &L->router, NULL);
                static const char *const wn[3] = {"gate_proj", "up_proj", "down_proj"};
                for (int e = 0; e < c->n_expert; e++)
                    for (int k = 0; k < 3; k++)
                        put_m(s, N("model.layers.%d.mlp.experts.%d.%s.weight", l, e, wn[k]), &L->experts[3 * e + k],
                              NULL);
                if (!c->shared_ffn_dim) continue; /* Qwen3-MoE */
                const lmf_wtensor *sh[3] = {&L->sh_gate, &L->sh_up, &L->sh_down};
                for (int k = 0; k < 3; k++)
                    put_m(s, N("model.layers.%d.mlp.shared_expert.%s.weight", l, wn[k]), sh[k], NULL);
                put(s, N("model.layers.%d.mlp.shared_expert_gate.weight", l), 1, C, vec1(&s->P, L->sh_gate_inp, C,
                                                                                         s->type));
                continue;
            }
            if (c->n_expert) { /* Mixtral's names, as transformers 5.24's save_pretrained writes them */
                put_m(s, N("model.layers.%d.block_sparse_moe.gate.weight", l), &L->router, NULL);
                static const char *const wn[3] = {"w1", "w3", "w2"}; /* gate, up, down */
                for (int e = 0; e < c->n_expert; e++)
                    for (int k = 0; k < 3; k++)
                        put_m(s, N("model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, e, wn[k]),
                              &L->experts[3 * e + k], NULL);
                continue;
            }
            put_m(s, N("model.layers.%d.mlp.gate_proj.weight", l), &L->w_gate, NULL);
            put_m(s, N("model.layers.%d.mlp.up_proj.weight", l), &L->w_up, NULL);
            put_m(s, N("model.layers.%d.mlp.down_proj.weight", l), &L->w_down, NULL);
        }
    } else if (w->cfg.arch == LMF_ARCH_GPT2) {
        put_m(s, "transformer.wte.weight", &w->tok_emb, NULL);
        put_m(s, "transformer.wpe.weight", &w->pos_emb, NULL);
        put_v(s, "transformer.ln_f.weight", w->out_norm_w, C);
        put_v(s, "transformer.ln_f.bias", w->out_norm_b, C);
        for (int l = 0; l < c->n_layer; l++) {
            const lmf_layer_weights *L = &w->layers[l];
            put_v(s, N("transformer.h.%d.ln_1.weight", l), L->attn_norm_w, C);
            put_v(s, N("transformer.h.%d.ln_1.bias", l), L->attn_norm_b, C);
            put_v(s, N("transformer.h.%d.ln_2.weight", l), L->ffn_norm_w, C);
            put_v(s, N("transformer.h.%d.ln_2.bias", l), L->ffn_norm_b, C);
            size_t es = type_size(s->type);
            uint8_t *qkv = pool_alloc(&s->P, (size_t)3 * C * C * es); /* (C, 3C): columns q | k | v */
            convert(qkv, s->type, &L->wq, NULL, 1, (size_t)3 * C, 0);
            convert(qkv, s->type, &L->wk, NULL, 1, (size_t)3 * C, (size_t)C);
            convert(qkv, s->type, &L->wv, NULL, 1, (size_t)3 * C, (size_t)2 * C);
            put(s, N("transformer.h.%d.attn.c_attn.weight", l), C, 3 * C, qkv);
            const float *bp[3] = {L->bq, L->bk, L->bv};
            int bl[3] = {C, C, C};
            put(s, N("transformer.h.%d.attn.c_attn.bias", l), 3 * C, 0, vector(&s->P, bp, bl, 3, s->type));
            put_t(s, N("transformer.h.%d.attn.c_proj.weight", l), &L->wo);
            put_v(s, N("transformer.h.%d.attn.c_proj.bias", l), L->bo, C);
            put_t(s, N("transformer.h.%d.mlp.c_fc.weight", l), &L->w_up);
            put_v(s, N("transformer.h.%d.mlp.c_fc.bias", l), L->b_up, F);
            put_t(s, N("transformer.h.%d.mlp.c_proj.weight", l), &L->w_down);
            put_v(s, N("transformer.h.%d.mlp.c_proj.bias", l), L->b_down, C);
        }
    } else { /* opt */
        put_m(s, "model.decoder.embed_tokens.weight", &w->tok_emb, NULL);
        put_m(s, "model.decoder.embed_positions.weight", &w->pos_emb, NULL);
        put_v(s, "model.decoder.final_layer_norm.weight", w->out_norm_w, C);
        put_v(s, "model.decoder.final_layer_norm.bias", w->out_norm_b, C);
        for (int l = 0; l < c->n_layer; l++) {
            const lmf_layer_weights *L = &w->layers[l];
            const char *p = "model.decoder.layers";
            put_v(s, N("%s.%d.self_attn_layer_norm.weight", p, l), L->attn_norm_w, C);
            put_v(s, N("%s.%d.self_attn_layer_norm.bias", p, l), L->attn_norm_b, C);
            put_v(s, N("%s.%d.final_layer_norm.weight", p, l), L->ffn_norm_w, C);
            put_v(s, N("%s.%d.final_layer_norm.bias", p, l), L->ffn_norm_b, C);
            static const char *const qkvo[4] = {"q", "k", "v", "out"};
            const lmf_wtensor *mw[4] = {&L->wq, &L->wk, &L->wv, &L->wo};
            const float *mb[4] = {L->bq, L->bk, L->bv, L->bo};
            for (int i = 0; i < 4; i++) {
                put_m(s, N("%s.%d.self_attn.%s_proj.weight", p, l, qkvo[i]), mw[i], NULL);
                put_v(s, N("%s.%d.self_attn.%s_proj.bias", p, l, qkvo[i]), mb[i], C);
            }
            put_m(s, N("%s.%d.fc1.weight", p, l), &L->w_up, NULL);
            put_v(s, N("%s.%d.fc1.bias", p, l), L->b_up, F);
            put_m(s, N("%s.%d.fc2.weight", p, l), &L->w_down, NULL);
            put_v(s, N("%s.%d.fc2.bias", p, l), L->b_down, C);
        }
    }
#undef N
}

/* Text of token id as tokenizer_config.json names it (literal for special tokens), or NULL. */
static char *token_text(const lmf_tokenizer *tok, int32_t id) {
    size_t n;
    const char *b = id >= 0 ? lmf_tokenizer_token_bytes(tok, id, &n) : NULL;
    if (!b) return NULL;
    char *t = lmf_xmalloc(2 * n + 1);
    if (lmf_tokenizer_token_type(tok, id) == LMF_TOKEN_NORMAL) n = lmf_bytelevel_encode((const uint8_t *)b, n, t);
    else memcpy(t, b, n);
    t[n] = 0;
    return t;
}

static lmf_status hf_tokenizer(const lmf_weights *w, const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    LMF_TRY(lmf_tokenizer_save(w->tok, p));
    cJSON *tc = cJSON_CreateObject();
    cJSON_AddStringToObject(tc, "tokenizer_class", "PreTrainedTokenizerFast");
    const char *keys[2] = {"bos_token", "eos_token"};
    int32_t ids[2] = {w->bos_id, w->eos_id};
    for (int i = 0; i < 2; i++) {
        char *t = token_text(w->tok, ids[i]);
        if (t) cJSON_AddStringToObject(tc, keys[i], t);
        else cJSON_AddNullToObject(tc, keys[i]);
        free(t);
    }
    cJSON_AddBoolToObject(tc, "add_bos_token", w->add_bos && w->bos_id >= 0);
    cJSON_AddBoolToObject(tc, "add_eos_token", 0);
    if (w->chat_template) cJSON_AddStringToObject(tc, "chat_template", w->chat_template);
    num(tc, "model_max_length", w->cfg.max_seq_len);
    LMF_TRY(write_json(dir, "tokenizer_config.json", tc));
    cJSON *gc = cJSON_CreateObject();
    special_ids(gc, w);
    return write_json(dir, "generation_config.json", gc);
}

lmf_status lmf_export_safetensors(const lmf_weights *w, const char *dir, uint32_t type) {
    const lmf_model_config *c = &w->cfg;
    if (c->arch != LMF_ARCH_LLAMA && c->arch != LMF_ARCH_GPT2 && c->arch != LMF_ARCH_OPT && c->arch != LMF_ARCH_QWEN2 &&
        c->arch != LMF_ARCH_QWEN3 && c->arch != LMF_ARCH_OLMOE && c->arch != LMF_ARCH_PHI3 &&
        !lmf_arch_is_gemma(c->arch))
        return lmf_fail(LMF_ERR_ARG, "%s: cannot export family '%s'", dir, lmf_arch_name(c->arch));
    int longrope = c->rope_scaling == LMF_ROPE_SCALING_LONGROPE;
    if (longrope && c->arch != LMF_ARCH_PHI3)
        return lmf_fail(LMF_ERR_ARG, "%s: LongRoPE is written as transformers' Phi-3 only", dir);
    if (c->arch == LMF_ARCH_PHI3 &&
        (c->n_expert || c->qkv_bias || (c->rope_scaling && !longrope) || c->head_dim || c->pos != LMF_POS_ROPE_HALF))
        return lmf_fail(LMF_ERR_ARG, "%s: transformers' Phi-3 has no experts, no q/k/v biases, no RoPE scaling but "
                        "LongRoPE, heads hidden_size / heads wide and RoPE on halves; this model does not fit", dir);
    if ((c->qk_norm == LMF_QK_NORM_HEAD && c->arch != LMF_ARCH_QWEN3 && c->arch != LMF_ARCH_GEMMA3) ||
        (c->qk_norm == LMF_QK_NORM_FULL && c->arch != LMF_ARCH_OLMOE) ||
        ((c->arch == LMF_ARCH_QWEN3 || c->arch == LMF_ARCH_OLMOE) && !c->qk_norm))
        return lmf_fail(LMF_ERR_ARG, "%s: a per-head q/k norm is written as transformers' Qwen3 / Qwen3-MoE (arch = "
                        "qwen3), a full-width one as its OLMoE (arch = olmoe); this model is arch %s with qk_norm %d", dir,
                        lmf_arch_name(c->arch), (int)c->qk_norm);
    if (c->arch == LMF_ARCH_OLMOE && (!c->n_expert || c->shared_ffn_dim || c->qkv_bias))
        return lmf_fail(LMF_ERR_ARG, "%s: transformers' OLMoE is a mixture of experts on every layer without a shared "
                        "expert or q/k/v biases; this model does not fit", dir);
    /* OlmoeAttention sizes q_norm by hidden_size and k_norm by hidden_size / heads x kv heads whatever head_dim says */
    if (c->arch == LMF_ARCH_OLMOE && lmf_q_width(c) != c->n_embd)
        return lmf_fail(LMF_ERR_ARG, "%s: transformers' OLMoE sizes its q/k norms by hidden_size / heads, so head_dim %d "
                        "x %d heads != hidden_size %d cannot be written as one; export it with --to gguf", dir,
                        lmf_head_size(c), c->n_head, c->n_embd);
    if (c->arch == LMF_ARCH_QWEN3 && (c->qkv_bias || c->shared_ffn_dim))
        return lmf_fail(LMF_ERR_ARG, "%s: transformers' Qwen3 / Qwen3-MoE have no q/k/v-only biases and no shared "
                        "expert; this model has %s", dir, c->qkv_bias ? "q/k/v biases" : "a shared expert");
    if (type != LMF_GGML_F32 && type != LMF_GGML_F16 && type != LMF_GGML_BF16)
        return lmf_fail(LMF_ERR_ARG, "%s: safetensors export writes f32, f16 or bf16", dir);
    if (c->arch == LMF_ARCH_LLAMA && (c->qkv_bias || c->shared_gate))
        return lmf_fail(LMF_ERR_ARG, "%s: a llama model with %s cannot be written as transformers' Llama or Mixtral; "
                        "set arch = qwen2", dir, c->qkv_bias ? "q/k/v biases" : "a gated shared expert");
    if (c->arch == LMF_ARCH_QWEN2 && c->n_expert && !c->shared_gate)
        return lmf_fail(LMF_ERR_ARG, "%s: transformers' Qwen2-MoE has a gated shared expert on every layer; this "
                        "model has %s", dir, c->shared_ffn_dim ? "an ungated shared expert" : "no shared expert");
    if (c->arch == LMF_ARCH_QWEN2 && !c->n_expert && !c->qkv_bias)
        return lmf_fail(LMF_ERR_ARG, "%s: transformers' Qwen2 always has q/k/v biases; this model has none (export "
                        "it as arch llama)", dir);
    if (c->arch == LMF_ARCH_GEMMA2 && (c->rope_scaling || c->rope_theta_swa != 0.0f))
        return lmf_fail(LMF_ERR_ARG, "%s: transformers' Gemma 2 has one RoPE, unscaled, for every layer; export it "
                        "with --to gguf", dir);
    if (c->nope_interval && (c->n_expert || c->sliding_window))
        return lmf_fail(LMF_ERR_ARG, "%s: transformers' SmolLM3 (NoPE layers) has no %s; export it with --to gguf", dir,
                        c->n_expert ? "mixture of experts" : "window on every layer");
    if (c->arch == LMF_ARCH_LLAMA && c->n_expert && (c->shared_ffn_dim || !c->norm_topk_prob))
        return lmf_fail(LMF_ERR_ARG, "%s: this mixture of experts has %s, which transformers' Mixtral cannot "
                        "express; export it with --to gguf", dir,
                        w->cfg.shared_ffn_dim ? "a shared expert" : "top-k weights that are not renormalised");
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (mkdir(dir, 0755) != 0) return lmf_fail(LMF_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        return lmf_fail(LMF_ERR_IO, "%s: exists and is not a folder (a Hugging Face export is a folder)", dir);
    }
    st_list s = {.type = type};
    hf_tensors(&s, w);
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    static const char *const meta[] = {"format", "pt"};
    lmf_status st = lmf_safetensors_write(p, s.t, s.n, meta, 1);
    free(s.t);
    pool_free(&s.P);
    if (st == LMF_OK && w->tok) st = hf_tokenizer(w, dir);
    if (st == LMF_OK) st = write_json(dir, "config.json", hf_config(w, type)); /* last: the folder is complete */
    return st;
}
