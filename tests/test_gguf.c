/* test_gguf.c — the GGUF reader and writer (src/io/gguf.{c,h}) and the tokenizer loaded from a GGUF file:
 *  - the writer's output reads back exactly: every metadata type, arrays (of strings too), tensors of several ggml
 *    types with their shapes, byte sizes, alignment and data; typed getters convert integers only when they fit;
 *  - the writer's bytes for a fixed input are pinned (tests/reference/fixtures/tiny_vocab.gguf, also the fuzz seed);
 *  - every malformed variant (bad magic/version, truncated at every offset, lengths and counts past the end,
 *    bad value types, nested arrays, bad bools, duplicates, bad n_dims/dims/type/row length, misaligned,
 *    out-of-range and overlapping tensors, bad alignment) is refused with a message naming the file and offset;
 *  - a tokenizer from GGUF keys (tokens, token_type, merges, pre, special ids) encodes as the same definition built
 *    from memory, and bad tokenizer keys are refused clearly.
 * The real model's GGUF (SmolLM2) is tested in test_smollm2.c. */
#include "test_util.h"

#include "io/gguf.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/tokenizer.h"

#include <string.h>
#include <unistd.h>

#define TINY_FIXTURE LMF_SOURCE_DIR "/tests/reference/fixtures/tiny_vocab.gguf"

static char tmpdir[256];

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static const char *tmp_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

/* ---- the tiny model: a little of everything ------------------------------------------------------------------- */

enum { N_BYTE = 256, N_VOCAB = 264 };
static const char *const extra_tokens[] = {"Ġt", "he", "Ġthe", "in", "<|endoftext|>", "<|im_start|>", "[PAD0]", "<tool>"};
static const int32_t extra_types[] = {1, 1, 1, 1, 3, 3, 5, 4}; /* llama.cpp token types */
static const char *const tiny_merges[] = {"Ġ t", "h e", "Ġt he", "i n"};
enum { ID_GT = 256, ID_HE, ID_GTHE, ID_IN, ID_EOT, ID_IMS, ID_PAD, ID_TOOL };

static uint8_t tensor_data[2048];

typedef struct {
    const char *model, *pre;
    int32_t bad_type;      /* token_type value put on token 300 - 44 (0 = none) */
    int types_short;       /* token_type one entry short */
    int64_t bos;           /* bos id (-1: the default) */
    int tokens_as_ints;    /* tokenizer.ggml.tokens as an array of i32 */
    int no_tokens;
    const char *bad_merge; /* an extra merge */
    int hole_byte4;        /* byte 0x04's token becomes unused: the vocabulary lacks a byte (as SmolLM2's does) */
} tiny_opts;

static char *token_text[N_VOCAB];
static int32_t token_types[N_VOCAB];

static void make_vocab(void) {
    for (int b = 0; b < N_BYTE; b++) {
        char *t = malloc(5);
        t[lmf_utf8_put(lmf_bytelevel_cp((uint8_t)b), t)] = 0;
        token_text[b] = t, token_types[b] = 1;
    }
    for (int i = 0; i < N_VOCAB - N_BYTE; i++) token_text[N_BYTE + i] = strdup(extra_tokens[i]), token_types[N_BYTE + i] = extra_types[i];
}

static lmf_gguf_writer *tiny_writer(const tiny_opts *o) {
    lmf_gguf_writer *w = lmf_gguf_writer_create(0);
    lmf_gguf_writer_set_str(w, "general.architecture", "llama");
    lmf_gguf_writer_set_str(w, "general.name", "tiny");
    lmf_gguf_writer_set_u32(w, "llama.block_count", 2);
    lmf_gguf_writer_set_u64(w, "llama.context_length", 64);
    lmf_gguf_writer_set_i32(w, "llama.attention.head_count", 2);
    lmf_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    double eps = 1e-5;
    lmf_gguf_writer_set_raw(w, "llama.attention.layer_norm_rms_epsilon", LMF_GGUF_F64, &eps);
    lmf_gguf_writer_set_bool(w, "general.flag", 1);
    uint8_t u8 = 200;
    int8_t i8 = -5;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = -((int64_t)1 << 40);
    lmf_gguf_writer_set_raw(w, "test.u8", LMF_GGUF_U8, &u8);
    lmf_gguf_writer_set_raw(w, "test.i8", LMF_GGUF_I8, &i8);
    lmf_gguf_writer_set_raw(w, "test.u16", LMF_GGUF_U16, &u16);
    lmf_gguf_writer_set_raw(w, "test.i16", LMF_GGUF_I16, &i16);
    lmf_gguf_writer_set_raw(w, "test.i64", LMF_GGUF_I64, &i64);
    lmf_gguf_writer_set_arr(w, "test.empty", LMF_GGUF_U32, NULL, 0);
    float f32s[2] = {0.5f, -1.25f};
    lmf_gguf_writer_set_arr(w, "test.f32s", LMF_GGUF_F32, f32s, 2);
    uint8_t bools[3] = {1, 0, 1};
    lmf_gguf_writer_set_arr(w, "test.bools", LMF_GGUF_BOOL, bools, 3);
    const char *langs[] = {"en", "", "fr"};
    lmf_gguf_writer_set_arr_str(w, "general.languages", langs, 3);

    lmf_gguf_writer_set_str(w, "tokenizer.ggml.model", o && o->model ? o->model : "gpt2");
    lmf_gguf_writer_set_str(w, "tokenizer.ggml.pre", o && o->pre ? o->pre : "gpt2");
    if (!(o && o->no_tokens)) {
        if (o && o->tokens_as_ints) lmf_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", LMF_GGUF_I32, token_types, N_VOCAB);
        else lmf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)token_text, N_VOCAB);
    }
    int32_t types[N_VOCAB];
    memcpy(types, token_types, sizeof types);
    if (o && o->bad_type) types[N_BYTE + 1] = o->bad_type;
    if (o && o->hole_byte4) types[4] = 5;
    lmf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LMF_GGUF_I32, types, N_VOCAB - (o && o->types_short));
    const char *merges[5];
    memcpy(merges, tiny_merges, sizeof tiny_merges);
    int nm = 4;
    if (o && o->bad_merge) merges[nm++] = o->bad_merge;
    lmf_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, (uint64_t)nm);
    lmf_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", o && o->bos >= 0 ? (uint32_t)o->bos : ID_IMS);
    lmf_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", ID_EOT);
    lmf_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 0);

    for (size_t i = 0; i < sizeof tensor_data; i++) tensor_data[i] = (uint8_t)(i * 7 + 3);
    int64_t a[2] = {3, 2}, b[2] = {32, 2}, c[1] = {64}, d[1] = {5}, e[1] = {256}, f[4] = {1, 1, 1, 2};
    lmf_gguf_writer_add_tensor(w, "a.f32", LMF_GGML_F32, 2, a, tensor_data);          /* 24 bytes */
    lmf_gguf_writer_add_tensor(w, "b.q8_0", LMF_GGML_Q8_0, 2, b, tensor_data + 100);  /* 68 */
    lmf_gguf_writer_add_tensor(w, "c.q4_1", LMF_GGML_Q4_1, 1, c, tensor_data + 200);  /* 40 */
    lmf_gguf_writer_add_tensor(w, "d.f16", LMF_GGML_F16, 1, d, tensor_data + 300);    /* 10 */
    lmf_gguf_writer_add_tensor(w, "e.q4_k", LMF_GGML_Q4_K, 1, e, tensor_data + 400);  /* 144 */
    lmf_gguf_writer_add_tensor(w, "f.i32", LMF_GGML_I32, 4, f, tensor_data + 600);    /* 8 */
    return w;
}

static const char *write_tiny(const char *name, const tiny_opts *o) {
    lmf_gguf_writer *w = tiny_writer(o);
    const char *p = tmp_path(name);
    assert_int_equal(lmf_gguf_writer_write(w, p), LMF_OK);
    lmf_gguf_writer_free(w);
    return p;
}

/* ---- round trip ----------------------------------------------------------------------------------------------- */

static void test_roundtrip(void **state) {
    const char *p = write_tiny("tiny.gguf", NULL);
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(p, &g), LMF_OK);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->alignment, 32);
    assert_int_equal(g->n_tensors, 6);
    assert_int_equal(g->n_kv, 25);
    assert_int_equal(g->data_offset % 32, 0);

    const char *s;
    assert_int_equal(lmf_gguf_get_str(g, "general.architecture", &s), LMF_OK);
    assert_string_equal(s, "llama");
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f;
    double d;
    int b;
    assert_int_equal(lmf_gguf_get_u32(g, "llama.block_count", &u32), LMF_OK);
    assert_int_equal(u32, 2);
    assert_int_equal(lmf_gguf_get_u32(g, "llama.context_length", &u32), LMF_OK); /* stored as u64 */
    assert_int_equal(u32, 64);
    assert_int_equal(lmf_gguf_get_u64(g, "llama.block_count", &u64), LMF_OK);
    assert_int_equal(u64, 2);
    assert_int_equal(lmf_gguf_get_i32(g, "llama.attention.head_count", &i32), LMF_OK);
    assert_int_equal(i32, 2);
    assert_int_equal(lmf_gguf_get_f32(g, "llama.rope.freq_base", &f), LMF_OK);
    assert_true(f == 10000.0f);
    assert_int_equal(lmf_gguf_get_f64(g, "llama.attention.layer_norm_rms_epsilon", &d), LMF_OK);
    assert_true(d == 1e-5);
    assert_int_equal(lmf_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f), LMF_OK);
    assert_true(f == 1e-5f);
    assert_int_equal(lmf_gguf_get_bool(g, "general.flag", &b), LMF_OK);
    assert_int_equal(b, 1);
    assert_int_equal(lmf_gguf_get_u32(g, "test.u8", &u32), LMF_OK);
    assert_int_equal(u32, 200);
    assert_int_equal(lmf_gguf_get_i32(g, "test.i8", &i32), LMF_OK);
    assert_int_equal(i32, -5);
    assert_int_equal(lmf_gguf_get_u32(g, "test.u16", &u32), LMF_OK);
    assert_int_equal(u32, 60000);
    assert_int_equal(lmf_gguf_get_i32(g, "test.i16", &i32), LMF_OK);
    assert_int_equal(i32, -30000);
    assert_int_equal(lmf_gguf_get_i64(g, "test.i64", &i64), LMF_OK);
    assert_true(i64 == -((int64_t)1 << 40));

    /* conversions that do not fit, wrong types and missing keys: refused with the key, offset and types */
    assert_int_equal(lmf_gguf_get_u32(g, "test.i8", &u32), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "'test.i8' = -5 does not fit in u32"));
    assert_int_equal(lmf_gguf_get_i32(g, "test.i64", &i32), LMF_ERR_FORMAT);
    assert_int_equal(lmf_gguf_get_u32(g, "general.name", &u32), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), p));
    assert_non_null(strstr(lmf_last_error(), "offset "));
    assert_non_null(strstr(lmf_last_error(), "metadata 'general.name' is string, expected u32"));
    assert_int_equal(lmf_gguf_get_str(g, "llama.block_count", &s), LMF_ERR_FORMAT);
    assert_int_equal(lmf_gguf_get_bool(g, "test.u8", &b), LMF_ERR_FORMAT);
    assert_int_equal(lmf_gguf_get_f32(g, "general.flag", &f), LMF_ERR_FORMAT);
    assert_int_equal(lmf_gguf_get_u32(g, "no.such.key", &u32), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "metadata key 'no.such.key' is missing"));
    assert_null(lmf_gguf_find(g, "no.such.key"));

    /* arrays */
    const lmf_gguf_kv *kv;
    assert_int_equal(lmf_gguf_get_arr(g, "test.empty", LMF_GGUF_U32, &kv), LMF_OK);
    assert_int_equal(kv->count, 0);
    assert_int_equal(lmf_gguf_get_arr(g, "test.f32s", LMF_GGUF_F32, &kv), LMF_OK);
    assert_int_equal(kv->count, 2);
    assert_true(lmf_gguf_arr_float(kv, 0) == 0.5 && lmf_gguf_arr_float(kv, 1) == -1.25);
    assert_int_equal(lmf_gguf_get_arr(g, "test.bools", LMF_GGUF_BOOL, &kv), LMF_OK);
    assert_int_equal(lmf_gguf_arr_int(kv, 0) * 4 + lmf_gguf_arr_int(kv, 1) * 2 + lmf_gguf_arr_int(kv, 2), 5);
    assert_int_equal(lmf_gguf_get_arr(g, "general.languages", LMF_GGUF_STRING, &kv), LMF_OK);
    size_t len;
    const char *e = lmf_gguf_arr_str(g, kv, 2, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(e, "fr", 2);
    lmf_gguf_arr_str(g, kv, 1, &len);
    assert_int_equal(len, 0);
    assert_int_equal(lmf_gguf_get_arr(g, "tokenizer.ggml.token_type", LMF_GGUF_I64, &kv), LMF_OK); /* any int */
    assert_int_equal(kv->count, N_VOCAB);
    assert_int_equal(lmf_gguf_arr_int(kv, ID_EOT), 3);
    assert_int_equal(lmf_gguf_get_arr(g, "test.f32s", LMF_GGUF_STRING, &kv), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "is an array of f32, expected an array of string"));
    assert_int_equal(lmf_gguf_get_arr(g, "general.name", LMF_GGUF_TYPE_COUNT, &kv), LMF_ERR_FORMAT);

    /* tensors */
    static const struct {
        const char *name;
        uint32_t type;
        int n_dims;
        int64_t ne[4];
        uint64_t nbytes;
        size_t src;
    } want[] = {{"a.f32", LMF_GGML_F32, 2, {3, 2, 1, 1}, 24, 0},    {"b.q8_0", LMF_GGML_Q8_0, 2, {32, 2, 1, 1}, 68, 100},
                {"c.q4_1", LMF_GGML_Q4_1, 1, {64, 1, 1, 1}, 40, 200}, {"d.f16", LMF_GGML_F16, 1, {5, 1, 1, 1}, 10, 300},
                {"e.q4_k", LMF_GGML_Q4_K, 1, {256, 1, 1, 1}, 144, 400}, {"f.i32", LMF_GGML_I32, 4, {1, 1, 1, 2}, 8, 600}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const lmf_gguf_tensor *t = lmf_gguf_find_tensor(g, want[i].name);
        assert_non_null(t);
        assert_int_equal(t->type, want[i].type);
        assert_int_equal(t->n_dims, want[i].n_dims);
        for (int k = 0; k < 4; k++) assert_int_equal(t->ne[k], want[i].ne[k]);
        assert_int_equal(t->nbytes, want[i].nbytes);
        assert_int_equal(t->offset % 32, 0);
        assert_int_equal(((uintptr_t)t->data) % 32, 0);
        assert_memory_equal(t->data, tensor_data + want[i].src, want[i].nbytes);
    }
    assert_null(lmf_gguf_find_tensor(g, "nope"));
    assert_string_equal(lmf_ggml_type_name(LMF_GGML_Q4_1), "Q4_1");
    assert_null(lmf_ggml_type_name(4));
    lmf_gguf_close(g);

    /* another alignment: general.alignment is written and honoured */
    lmf_gguf_writer *w = lmf_gguf_writer_create(64);
    int64_t ne[1] = {3};
    lmf_gguf_writer_add_tensor(w, "x", LMF_GGML_F32, 1, ne, tensor_data);
    lmf_gguf_writer_add_tensor(w, "y", LMF_GGML_BF16, 1, ne, tensor_data + 12);
    p = tmp_path("align64.gguf");
    assert_int_equal(lmf_gguf_writer_write(w, p), LMF_OK);
    lmf_gguf_writer_free(w);
    assert_int_equal(lmf_gguf_open(p, &g), LMF_OK);
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->data_offset % 64, 0);
    assert_int_equal(lmf_gguf_find_tensor(g, "y")->offset, 64);
    assert_memory_equal(lmf_gguf_find_tensor(g, "y")->data, tensor_data + 12, 6);
    lmf_gguf_close(g);

    /* no tensors, no metadata: valid */
    w = lmf_gguf_writer_create(0);
    p = tmp_path("empty.gguf");
    assert_int_equal(lmf_gguf_writer_write(w, p), LMF_OK);
    lmf_gguf_writer_free(w);
    assert_int_equal(lmf_gguf_open(p, &g), LMF_OK);
    assert_int_equal(g->n_kv + g->n_tensors, 0);
    lmf_gguf_close(g);
}

/* The writer's bytes are pinned; the file doubles as the fuzz seed. LMF_WRITE_FIXTURES=1 rewrites it. */
static void test_writer_bytes_pinned(void **state) {
    lmf_gguf_writer *w = tiny_writer(NULL);
    uint8_t *bytes;
    size_t n;
    lmf_gguf_writer_bytes(w, &bytes, &n);
    if (getenv("LMF_WRITE_FIXTURES")) assert_int_equal(lmf_gguf_writer_write(w, TINY_FIXTURE), LMF_OK);
    lmf_gguf_writer_free(w);
    size_t fn = 0;
    char *fixture = slurp(TINY_FIXTURE, &fn);
    if (!fixture) fail_msg("%s missing (rerun with LMF_WRITE_FIXTURES=1)", TINY_FIXTURE);
    if (fn != n || memcmp(fixture, bytes, n))
        fail_msg("the writer's output (%zu bytes) differs from %s (%zu bytes); if the change is intended, rerun "
                 "with LMF_WRITE_FIXTURES=1", n, TINY_FIXTURE, fn);
    free(fixture);
    free(bytes);
}

/* Lazy tensors (filled as the file is written) give the bytes the same tensors given whole give, through
 * lmf_gguf_writer_bytes and through the file; the fill runs once per 16 MiB of rows per write (a tensor of one
 * row past 16 MiB: twice), never handed more. */
static int fills;
typedef struct {
    int cols, rows;
} ramp;
static float ramp_at(size_t i, int n) { return 0.25f * (float)(i % 1000) - (float)n; }
static void fill_ramp(void *ctx, void *dst, uint64_t r0, uint64_t n) {
    const ramp *r = ctx;
    assert_true(n * (uint64_t)r->cols * sizeof(float) <= ((size_t)16 << 20) && r0 + n <= (uint64_t)r->rows);
    for (size_t i = 0; i < n * (size_t)r->cols; i++)
        ((float *)dst)[i] = ramp_at((size_t)r0 * r->cols + i, r->rows * r->cols);
    fills++;
}
static void test_writer_lazy(void **state) {
    static ramp shape[3] = {{37, 1}, {64, 3}, {1024, 4097}};
    float *whole[3];
    for (int k = 0; k < 3; k++) {
        size_t n = (size_t)shape[k].cols * shape[k].rows;
        whole[k] = malloc(sizeof(float) * n);
        for (size_t i = 0; i < n; i++) whole[k][i] = ramp_at(i, (int)n);
    }
    uint8_t *b[2][2];
    size_t len[2][2];
    for (int lazy = 0; lazy < 2; lazy++) {
        lmf_gguf_writer *g = lmf_gguf_writer_create(64);
        for (int k = 0; k < 3; k++) {
            char name[16];
            snprintf(name, sizeof name, "t%d", k);
            int64_t ne[2] = {shape[k].cols, shape[k].rows};
            if (lazy) lmf_gguf_writer_add_lazy(g, name, LMF_GGML_F32, 2, ne, fill_ramp, &shape[k]);
            else lmf_gguf_writer_add_tensor(g, name, LMF_GGML_F32, 2, ne, whole[k]);
        }
        fills = 0;
        lmf_gguf_writer_bytes(g, &b[lazy][0], &len[lazy][0]);
        const char *p = tmp_path(lazy ? "lazy.gguf" : "whole.gguf");
        assert_int_equal(lmf_gguf_writer_write(g, p), LMF_OK);
        b[lazy][1] = (uint8_t *)slurp(p, &len[lazy][1]);
        assert_int_equal(fills, lazy ? 2 * 4 : 0);
        lmf_gguf_writer_free(g);
    }
    for (int v = 0; v < 2; v++) {
        assert_int_equal(len[1][v], len[0][v]);
        assert_memory_equal(b[1][v], b[0][v], len[0][v]);
        free(b[0][v]), free(b[1][v]);
    }
    for (int k = 0; k < 3; k++) free(whole[k]);
}

/* ---- malformed files ------------------------------------------------------------------------------------------ */

typedef struct {
    uint8_t p[4096];
    size_t n;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    assert_true(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(bytes *b, uint32_t version, uint64_t nt, uint64_t nkv) {
    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, nt);
    put_u64(b, nkv);
}
static void kv_u32(bytes *b, const char *key, uint32_t v) {
    put_str(b, key);
    put_u32(b, LMF_GGUF_U32);
    put_u32(b, v);
}
/* tensor info: name, dims, type, offset */
static void tinfo(bytes *b, const char *name, int nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    put_str(b, name);
    put_u32(b, (uint32_t)nd);
    for (int i = 0; i < nd; i++) put_u64(b, ne[i]);
    put_u32(b, type);
    put_u64(b, off);
}
/* header with nt tensors and one 48-byte string value first, so that tensor_count passes the "can it fit" check
 * and the error comes from the tensor info itself; tensor infos start at offset 97 */
static void theader(bytes *b, uint64_t nt) {
    header(b, 3, nt, 1);
    put_str(b, "x.pad");
    put_u32(b, LMF_GGUF_STRING);
    put_str(b, "0123456789012345678901234567890123456789abcdefgh");
}
static void pad_to(bytes *b, size_t a) {
    static const uint8_t z[64];
    put(b, z, (a - b->n % a) % a);
}

static void expect_error(const void *data, size_t n, lmf_status want, const char *frag1, const char *frag2) {
    const char *p = tmp_path("bad.gguf");
    write_file(p, data, n);
    lmf_gguf *g = (lmf_gguf *)1;
    lmf_status s = lmf_gguf_open(p, &g);
    if (s == LMF_OK) fail_msg("accepted a malformed file (%zu bytes; expected \"%s\")", n, frag1);
    assert_null(g);
    assert_int_equal(s, want);
    const char *e = lmf_last_error();
    if (!strstr(e, p)) fail_msg("error does not name the file: %s", e);
    if (want == LMF_ERR_FORMAT && !strstr(e, "offset ")) fail_msg("error gives no offset: %s", e);
    if (frag1 && !strstr(e, frag1)) fail_msg("error \"%s\" lacks \"%s\"", e, frag1);
    if (frag2 && !strstr(e, frag2)) fail_msg("error \"%s\" lacks \"%s\"", e, frag2);
}

static void test_malformed_header_and_metadata(void **state) {
    bytes b;
    expect_error("", 0, LMF_ERR_FORMAT, "too small", "offset 0");
    header(&b, 3, 0, 0);
    memcpy(b.p, "GGUX", 4);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 0", "magic \"GGUF\"");
    header(&b, 1, 0, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 4", "version 1");
    header(&b, 7, 0, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 4", "unsupported GGUF version 7 (expected 2 or 3)");
    header(&b, 0x03000000, 0, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 4", "big-endian");
    header(&b, 3, 0, (uint64_t)1 << 60);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 16", "metadata_kv_count 1152921504606846976 cannot fit");
    header(&b, 3, UINT64_MAX, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 8", "tensor_count");
    header(&b, 2, 0, 1); /* v2 is read too: fails only on the truncated key */
    put_u64(&b, 1000);
    put(&b, "abcdefghijklmnopqrstuvwxyz", 26);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 24", "key of length 1000 runs past the end");
    header(&b, 3, 0, 1);
    put_u64(&b, UINT64_MAX); /* a length that would overflow pos + len */
    put(&b, "abcdefghijklmnopqrstuvwxyz", 26);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 24", "runs past the end");
    header(&b, 3, 0, 1);
    put_str(&b, "a.key");
    put_u32(&b, 13);
    put_u32(&b, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "'a.key'", "value type 13 is not a GGUF value type");
    header(&b, 3, 0, 1);
    put_str(&b, "a.bool");
    put_u32(&b, LMF_GGUF_BOOL);
    put(&b, "\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 14);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 42", "bool value is 2 (expected 0 or 1)"); /* 24 + 8 + 6 + 4 */
    header(&b, 3, 0, 1);
    put_str(&b, "a.nest");
    put_u32(&b, LMF_GGUF_ARRAY);
    put_u32(&b, LMF_GGUF_ARRAY);
    put_u64(&b, 1);
    put(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "'a.nest'", "arrays of arrays are not supported");
    header(&b, 3, 0, 1);
    put_str(&b, "a.arr");
    put_u32(&b, LMF_GGUF_ARRAY);
    put_u32(&b, LMF_GGUF_U64);
    put_u64(&b, (uint64_t)1 << 61); /* * 8 bytes would overflow */
    put(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "array of 2305843009213693952 u64 elements cannot fit", "'a.arr'");
    header(&b, 3, 0, 1);
    put_str(&b, "a.strs");
    put_u32(&b, LMF_GGUF_ARRAY);
    put_u32(&b, LMF_GGUF_STRING);
    put_u64(&b, 2);
    put_str(&b, "ok");
    put_u64(&b, 50);
    put(&b, "short", 5);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "string element 1 of length 50 runs past the end", "'a.strs'");
    header(&b, 3, 0, 1);
    put_str(&b, "a.bools");
    put_u32(&b, LMF_GGUF_ARRAY);
    put_u32(&b, LMF_GGUF_BOOL);
    put_u64(&b, 3);
    put(&b, "\x01\x00\x07", 3);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "bool element 2 is 7", "'a.bools'");
    header(&b, 3, 0, 1);
    put_str(&b, "a.arr");
    put_u32(&b, LMF_GGUF_ARRAY);
    put_u32(&b, 99);
    put_u64(&b, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "array element type 99", "'a.arr'");
    header(&b, 3, 0, 2);
    kv_u32(&b, "dup.key", 1);
    kv_u32(&b, "dup.key", 2);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "'dup.key' appears twice", NULL);
    header(&b, 3, 0, 1);
    kv_u32(&b, "", 1);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "offset 24", "key is empty");
    header(&b, 3, 0, 1);
    put_u64(&b, 3);
    put(&b, "a\0b", 3);
    put_u32(&b, LMF_GGUF_U8);
    put(&b, "\x01", 1);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "NUL byte", NULL);
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "general.alignment is 0 (expected a power of two)", NULL);
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 48);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "general.alignment is 48", NULL);
    header(&b, 3, 0, 1);
    put_str(&b, "general.alignment");
    put_u32(&b, LMF_GGUF_U64);
    put_u64(&b, 32);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "general.alignment is u64, expected u32", NULL);
    header(&b, 3, 0, 1);
    put_str(&b, "a.s");
    put_u32(&b, LMF_GGUF_STRING);
    put_u64(&b, 9);
    put(&b, "abc", 3);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "string value of length 9 runs past the end", "'a.s'");

    /* not a file / absent */
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(tmpdir, &g), LMF_ERR_IO);
    assert_non_null(strstr(lmf_last_error(), "not a regular file"));
    assert_int_equal(lmf_gguf_open(tmp_path("absent.gguf"), &g), LMF_ERR_IO);
    assert_non_null(strstr(lmf_last_error(), "absent.gguf: cannot open"));
}

static void test_malformed_tensors(void **state) {
    bytes b;
    uint64_t ne8[1] = {8}, ne2[2] = {4, 2};
    theader(&b, 1);
    put_str(&b, "t");
    put_u32(&b, 5);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "tensor 0 ('t'): n_dims is 5 (expected 1..4)", "offset 106");
    theader(&b, 1);
    tinfo(&b, "t", 0, NULL, LMF_GGML_F32, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "n_dims is 0", NULL);
    char longname[80];
    memset(longname, 'n', 65);
    longname[65] = 0;
    theader(&b, 1);
    tinfo(&b, longname, 1, ne8, LMF_GGML_F32, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "name is 65 bytes long (at most 64 allowed)", "offset 97");
    theader(&b, 1);
    tinfo(&b, "big", 2, (uint64_t[]){(uint64_t)1 << 40, (uint64_t)1 << 40}, LMF_GGML_F32, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "tensor 0 ('big'): dimension 1", "overflow");
    theader(&b, 1);
    tinfo(&b, "neg", 1, (uint64_t[]){UINT64_MAX}, LMF_GGML_F32, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "('neg'): dimension 0", NULL);
    theader(&b, 1);
    tinfo(&b, "q", 1, ne8, 4, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "tensor 0 ('q'): unknown ggml type 4", NULL);
    theader(&b, 1);
    tinfo(&b, "q", 1, ne8, 200, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "unknown ggml type 200", NULL);
    theader(&b, 1);
    tinfo(&b, "q4", 1, (uint64_t[]){33}, LMF_GGML_Q4_0, 0);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "('q4'): row length 33 is not a multiple of Q4_0's block of 32", NULL);
    theader(&b, 2);
    tinfo(&b, "t", 1, ne8, LMF_GGML_F32, 0);
    tinfo(&b, "t", 1, ne8, LMF_GGML_F32, 32);
    pad_to(&b, 32);
    put(&b, tensor_data, 64);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "tensor name 't' appears twice", NULL);
    theader(&b, 1);
    tinfo(&b, "t", 1, ne8, LMF_GGML_F32, 16);
    pad_to(&b, 32);
    put(&b, tensor_data, 64);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "tensor 't': data offset 16 is not a multiple of the alignment 32", NULL);
    theader(&b, 1);
    tinfo(&b, "t", 2, ne2, LMF_GGML_F32, 0);
    pad_to(&b, 32);
    put(&b, tensor_data, 31); /* needs 32 */
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "tensor 't' (F32, 32 bytes) at data offset 0", "runs past the end");
    theader(&b, 1);
    tinfo(&b, "far", 1, ne8, LMF_GGML_F32, (uint64_t)1 << 63); /* offset + size would overflow */
    pad_to(&b, 32);
    put(&b, tensor_data, 64);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "tensor 'far'", "runs past the end");
    theader(&b, 1);
    tinfo(&b, "t", 1, ne8, LMF_GGML_F32, 0); /* no data section at all */
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "tensor 't'", "runs past the end");
    theader(&b, 2);
    tinfo(&b, "a", 1, ne8, LMF_GGML_F32, 0);
    tinfo(&b, "b", 1, ne8, LMF_GGML_F32, 0);
    pad_to(&b, 32);
    put(&b, tensor_data, 64);
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "overlaps tensor", NULL);
    theader(&b, 1);
    put_str(&b, "t");
    put_u32(&b, 1);
    put_u32(&b, 8); /* dims cut short */
    expect_error(b.p, b.n, LMF_ERR_FORMAT, "tensor 0 ('t'): dimension needs 8 bytes but only 4 remain", "truncated");

    /* a well-formed hand-made file is accepted (the builders above are right) */
    header(&b, 2, 2, 1);
    kv_u32(&b, "general.alignment", 16);
    tinfo(&b, "a", 1, ne8, LMF_GGML_F32, 0);
    tinfo(&b, "b", 2, ne2, LMF_GGML_F16, 32);
    pad_to(&b, 16);
    put(&b, tensor_data, 48);
    const char *p = tmp_path("ok.gguf");
    write_file(p, b.p, b.n);
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(p, &g), LMF_OK);
    assert_int_equal(g->version, 2);
    assert_int_equal(lmf_gguf_find_tensor(g, "b")->nbytes, 16);
    lmf_gguf_close(g);
}

/* Every proper prefix of a valid file is refused (none crashes), each message naming the file and an offset. */
static void test_truncated_everywhere(void **state) {
    lmf_gguf_writer *w = tiny_writer(NULL);
    uint8_t *full;
    size_t n;
    lmf_gguf_writer_bytes(w, &full, &n);
    lmf_gguf_writer_free(w);
    /* the writer pads the last tensor as ggml's does; a file without that padding (older lmforge exports) is
     * still whole: every cut before the last tensor's end is refused, none after */
    const char *p = tmp_path("bad.gguf");
    write_file(p, full, n);
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(p, &g), LMF_OK);
    const lmf_gguf_tensor *last = &g->tensors[g->n_tensors - 1];
    size_t end = (size_t)(g->data_offset + last->offset + last->nbytes);
    lmf_gguf_close(g);
    assert_true(end < n && n % 32 == 0);
    for (size_t len = 0; len < end; len++) expect_error(full, len, LMF_ERR_FORMAT, NULL, NULL);
    for (size_t len = end; len <= n; len++) {
        write_file(p, full, len);
        assert_int_equal(lmf_gguf_open(p, &g), LMF_OK);
        lmf_gguf_close(g);
    }
    free(full);
}

/* ---- tokenizer from GGUF ---------------------------------------------------------------------------------------- */

static void test_tokenizer_from_gguf(void **state) {
    const char *p = write_tiny("tok.gguf", NULL);
    lmf_tokenizer *tok, *ref;
    assert_int_equal(lmf_tokenizer_load(p, &tok), LMF_OK); /* the dispatch recognises the GGUF magic */
    assert_int_equal(lmf_tokenizer_vocab_size(tok), N_VOCAB);
    assert_int_equal(lmf_tokenizer_pretok(tok), LMF_PRETOK_GPT2);
    assert_int_equal(lmf_tokenizer_token_type(tok, ID_EOT), LMF_TOKEN_CONTROL);
    assert_int_equal(lmf_tokenizer_token_type(tok, ID_PAD), LMF_TOKEN_UNUSED);
    assert_int_equal(lmf_tokenizer_token_type(tok, ID_TOOL), LMF_TOKEN_USER);
    assert_int_equal(lmf_tokenizer_token_id(tok, "Ġthe"), ID_GTHE);

    /* the same definition built from memory */
    uint8_t types[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++)
        types[i] = token_types[i] == 3 ? LMF_TOKEN_CONTROL : token_types[i] == 4 ? LMF_TOKEN_USER
                 : token_types[i] == 5 ? LMF_TOKEN_UNUSED : LMF_TOKEN_NORMAL;
    lmf_tokenizer_def def = {.n_vocab = N_VOCAB, .tokens = (const char *const *)token_text, .types = types,
                             .n_merges = 4, .merges = tiny_merges, .pretok = LMF_PRETOK_GPT2};
    assert_int_equal(lmf_tokenizer_build(&def, "memory", &ref), LMF_OK);

    const char *text = " the thin<|endoftext|> <tool>x";
    lmf_ids a = {0}, r = {0};
    lmf_tokenizer_encode(tok, text, strlen(text), LMF_ENCODE_ALLOW_SPECIAL, &a);
    lmf_tokenizer_encode(ref, text, strlen(text), LMF_ENCODE_ALLOW_SPECIAL, &r);
    const int32_t want[] = {ID_GTHE, ID_GT, 'h', ID_IN, ID_EOT, ' ', ID_TOOL, 'x'}; /* byte b's token is id b */
    assert_int_equal(a.len, 8);
    assert_memory_equal(a.data, want, sizeof want);
    assert_int_equal(r.len, 8);
    assert_memory_equal(r.data, want, sizeof want);
    a.len = 0;
    lmf_tokenizer_encode(tok, text, strlen(text), 0, &a); /* control text as plain text; USER still matches */
    for (size_t i = 0; i < a.len; i++) assert_int_not_equal(a.data[i], ID_EOT);
    lmf_text out = {0};
    assert_int_equal(lmf_tokenizer_decode(tok, a.data, a.len, 0, &out), LMF_OK);
    assert_string_equal(out.data, text);
    free(a.data), free(r.data), free(out.data);
    lmf_tokenizer_free(ref);
    lmf_tokenizer_free(tok);

    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(p, &g), LMF_OK);
    lmf_gguf_specials sp;
    assert_int_equal(lmf_tokenizer_gguf_specials(g, &sp), LMF_OK);
    assert_int_equal(sp.bos, ID_IMS);
    assert_int_equal(sp.eos, ID_EOT);
    assert_int_equal(sp.unk, -1);
    assert_int_equal(sp.add_bos, 0);
    assert_int_equal(sp.add_eos, -1);
    lmf_gguf_close(g);
}

static void expect_tok_error(const tiny_opts *o, const char *frag) {
    const char *p = write_tiny("badtok.gguf", o);
    lmf_tokenizer *tok = (lmf_tokenizer *)1;
    lmf_status s = lmf_tokenizer_load(p, &tok);
    if (s == LMF_OK) fail_msg("accepted a bad tokenizer (expected \"%s\")", frag);
    assert_int_equal(s, LMF_ERR_FORMAT);
    assert_null(tok);
    if (!strstr(lmf_last_error(), p)) fail_msg("error does not name the file: %s", lmf_last_error());
    if (!strstr(lmf_last_error(), frag)) fail_msg("error \"%s\" lacks \"%s\"", lmf_last_error(), frag);
}

static void test_tokenizer_gguf_errors(void **state) {
    expect_tok_error(&(tiny_opts){.model = "rwkv", .bos = -1}, "only 'gpt2'");
    expect_tok_error(&(tiny_opts){.model = "rwkv", .bos = -1}, "'llama' (SentencePiece BPE");
    expect_tok_error(&(tiny_opts){.model = "bert", .bos = -1}, "tokenizer.ggml.model is 'bert'");
    expect_tok_error(&(tiny_opts){.pre = "chameleon", .bos = -1}, "tokenizer.ggml.pre 'chameleon' is not a supported");
    /* Qwen2's split is known; a GGUF tokenizer never normalizes (llama.cpp does not: NFC lives in tokenizer.json) */
    lmf_tokenizer *tok;
    assert_int_equal(lmf_tokenizer_load(write_tiny("qwen2tok.gguf", &(tiny_opts){.pre = "qwen2", .bos = -1}), &tok), LMF_OK);
    assert_int_equal(lmf_tokenizer_pretok(tok), LMF_PRETOK_QWEN2);
    assert_int_equal(lmf_tokenizer_nfc(tok), 0);
    lmf_tokenizer_free(tok);
    expect_tok_error(&(tiny_opts){.bad_type = 6, .bos = -1}, "token_type[257] (token \"he\") is 6: a SentencePiece byte");
    expect_tok_error(&(tiny_opts){.bad_type = 9, .bos = -1}, "is 9: not a llama.cpp token type");
    expect_tok_error(&(tiny_opts){.types_short = 1, .bos = -1}, "token_type has 263 entries but");
    expect_tok_error(&(tiny_opts){.bos = 9999}, "tokenizer.ggml.bos_token_id = 9999 is outside the vocabulary of 264");
    expect_tok_error(&(tiny_opts){.tokens_as_ints = 1, .bos = -1}, "is an array of i32, expected an array of string");
    expect_tok_error(&(tiny_opts){.no_tokens = 1, .bos = -1}, "metadata key 'tokenizer.ggml.tokens' is missing");
    expect_tok_error(&(tiny_opts){.bad_merge = "Ġthe zz", .bos = -1}, "\"zz\" is not a token of the vocabulary");
}

/* A vocabulary without some byte tokens (SmolLM2 lacks 21): with missing_bytes_ok (the GGUF loader's setting) those
 * bytes are dropped before merging, as Hugging Face's BPE without unk_token does, so their neighbours in a piece can
 * merge; without it the build fails naming the byte. */
static void test_missing_byte_tokens(void **state) {
    const char *tokens[N_VOCAB + 1];
    uint8_t types[N_VOCAB + 1];
    for (int i = 0; i < N_VOCAB; i++) tokens[i] = token_text[i], types[i] = LMF_TOKEN_NORMAL;
    tokens[N_VOCAB] = "!!";
    types[N_VOCAB] = LMF_TOKEN_NORMAL;
    types[4] = LMF_TOKEN_UNUSED; /* no token for byte 0x04 */
    const char *merges[] = {"Ġ t", "h e", "Ġt he", "i n", "! !"};
    lmf_tokenizer_def def = {.n_vocab = N_VOCAB + 1, .tokens = tokens, .types = types, .n_merges = 5,
                             .merges = merges, .pretok = LMF_PRETOK_GPT2};
    lmf_tokenizer *tok;
    assert_int_equal(lmf_tokenizer_build(&def, "memory", &tok), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "no token for byte 0x04"));
    def.missing_bytes_ok = 1;
    assert_int_equal(lmf_tokenizer_build(&def, "memory", &tok), LMF_OK);
    static const struct {
        const char *text;
        int n;
        int32_t ids[4];
    } cases[] = {{"!\x04!", 1, {N_VOCAB}},           /* one piece: "!" "!" become adjacent and merge */
                 {"\x04", 0, {0}},                   /* nothing left */
                 {"\x04\x04\x04", 0, {0}},
                 {"a\x04" "b", 2, {'a', 'b'}},       /* three pieces: "a", "\x04", "b" */
                 {" the\x04!\x04!", 2, {ID_GTHE, N_VOCAB}},
                 {"!\x04", 1, {'!'}}};
    lmf_ids ids = {0};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ids.len = 0;
        lmf_tokenizer_encode(tok, cases[c].text, strlen(cases[c].text), 0, &ids);
        assert_int_equal(ids.len, cases[c].n);
        if (cases[c].n) assert_memory_equal(ids.data, cases[c].ids, (size_t)cases[c].n * sizeof(int32_t));
    }
    /* long pieces (the heap merge) drop the byte the same way */
    char longp[400];
    for (int i = 0; i < 399; i++) longp[i] = i % 3 == 1 ? '\x04' : '!';
    longp[399] = 0;
    ids.len = 0;
    lmf_tokenizer_encode(tok, longp, 399, 0, &ids);
    assert_int_equal(ids.len, 133); /* 266 '!' -> 133 "!!" */
    for (size_t i = 0; i < ids.len; i++) assert_int_equal(ids.data[i], N_VOCAB);
    free(ids.data);
    lmf_tokenizer_free(tok);

    /* through a GGUF file: the loader allows missing bytes */
    const char *p = write_tiny("hole.gguf", &(tiny_opts){.hole_byte4 = 1, .bos = -1});
    assert_int_equal(lmf_tokenizer_load(p, &tok), LMF_OK);
    lmf_ids a = {0};
    lmf_tokenizer_encode(tok, "x\x04y", 3, 0, &a);
    assert_int_equal(a.len, 2);
    assert_int_equal(a.data[0], 'x');
    assert_int_equal(a.data[1], 'y');
    free(a.data);
    lmf_tokenizer_free(tok);
}

static int setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lmf_gguf_XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    make_vocab();
    return 0;
}

static int teardown(void **state) {
    for (int i = 0; i < N_VOCAB; i++) free(token_text[i]);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_writer_bytes_pinned),
        cmocka_unit_test(test_writer_lazy),
        cmocka_unit_test(test_malformed_header_and_metadata),
        cmocka_unit_test(test_malformed_tensors),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_tokenizer_from_gguf),
        cmocka_unit_test(test_tokenizer_gguf_errors),
        cmocka_unit_test(test_missing_byte_tokens),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
