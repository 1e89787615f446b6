/* test_load_gguf.c — GGUF -> fp32 model without the real model file (tests/test_smollm2_logits.c has that):
 *  - dequantization of hand-made F32/F16/BF16/Q8_0/Q4_0/Q4_1 blocks, and the errors for an unsupported type or a
 *    partial block;
 *  - a random small llama (GQA, tied and untied) written as a llama.cpp-style F32 GGUF, Q/K rows permuted into
 *    interleaved pairs as llama.cpp's converter does, loads back bit-identical (so the un-permute inverts it);
 *  - errors: another architecture, a tensor of the wrong shape, a missing tensor. */
#include "test_util.h"
#include "gguf_model.h"

#include "core/status.h"

#include "io/gguf.h"
#include "model/dequant.h"
#include "model/model.h"

#include <string.h>
#include <unistd.h>

static uint16_t f2h_exact(float f) { /* only for values exactly representable as normal halves (tests) */
    uint32_t u;
    memcpy(&u, &f, 4);
    if (f == 0.0f) return (uint16_t)(u >> 16);
    uint32_t sign = u >> 31, exp = ((u >> 23) & 0xff) - 127 + 15, man = (u >> 13) & 0x3ff;
    return (uint16_t)((sign << 15) | (exp << 10) | man);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

static void test_dequant_blocks(void **state) {
    float out[64];
    /* f16: 1, -2, 0.5, 65504 (max), smallest subnormal 2^-24, -0 */
    uint8_t h[12];
    uint16_t hv[6] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000};
    for (int i = 0; i < 6; i++) put16(h + 2 * i, hv[i]);
    assert_int_equal(lmf_dequant_row(LMF_GGML_F16, h, out, 6, "f16"), LMF_OK);
    float hwant[6] = {1.0f, -2.0f, 0.5f, 65504.0f, 5.9604644775390625e-8f, -0.0f};
    for (int i = 0; i < 6; i++) assert_true(out[i] == hwant[i]);
    assert_true(signbit(out[5]));
    /* bf16: the top half of a float */
    put16(h, 0x3f80), put16(h + 2, 0xc0a0);
    assert_int_equal(lmf_dequant_row(LMF_GGML_BF16, h, out, 2, "bf16"), LMF_OK);
    assert_true(out[0] == 1.0f && out[1] == -5.0f);
    /* Q8_0: two blocks, d = 0.5 and -0.25 */
    uint8_t q8[68];
    for (int b = 0; b < 2; b++) {
        put16(q8 + 34 * b, f2h_exact(b ? -0.25f : 0.5f));
        for (int j = 0; j < 32; j++) q8[34 * b + 2 + j] = (uint8_t)(int8_t)(j * 8 - 128 + b);
    }
    assert_int_equal(lmf_dequant_row(LMF_GGML_Q8_0, q8, out, 64, "q8_0"), LMF_OK);
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 32; j++) assert_true(out[32 * b + j] == (b ? -0.25f : 0.5f) * (float)(j * 8 - 128 + b));
    /* Q4_0 / Q4_1: byte j holds element j (low nibble) and j + 16 (high nibble) */
    uint8_t q4[20];
    put16(q4, f2h_exact(0.125f));
    for (int j = 0; j < 16; j++) q4[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    assert_int_equal(lmf_dequant_row(LMF_GGML_Q4_0, q4, out, 32, "q4_0"), LMF_OK);
    for (int j = 0; j < 16; j++) {
        assert_true(out[j] == 0.125f * (float)(j - 8));
        assert_true(out[j + 16] == 0.125f * (float)(15 - j - 8));
    }
    put16(q4, f2h_exact(0.25f)), put16(q4 + 2, f2h_exact(-1.5f));
    for (int j = 0; j < 16; j++) q4[4 + j] = (uint8_t)(((j * 3) & 15) | (j << 4));
    assert_int_equal(lmf_dequant_row(LMF_GGML_Q4_1, q4, out, 32, "q4_1"), LMF_OK);
    for (int j = 0; j < 16; j++) {
        assert_true(out[j] == 0.25f * (float)((j * 3) & 15) - 1.5f);
        assert_true(out[j + 16] == 0.25f * (float)j - 1.5f);
    }
    float f[3] = {1.5f, -0.0f, 3e38f};
    assert_int_equal(lmf_dequant_row(LMF_GGML_F32, f, out, 3, "f32"), LMF_OK);
    assert_memory_equal(out, f, sizeof f);
    /* unsupported type, and a row that is not whole blocks */
    assert_int_equal(lmf_dequant_row(LMF_GGML_IQ2_XXS, q4, out, 256, "blk.0.attn_q.weight"), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "blk.0.attn_q.weight"));
    assert_non_null(strstr(lmf_last_error(), "IQ2_XXS"));
    assert_int_equal(lmf_dequant_row(LMF_GGML_Q8_0, q8, out, 33, "t"), LMF_ERR_FORMAT);
    assert_int_equal(lmf_dequant_supported(LMF_GGML_IQ2_XXS), 0);
    assert_int_equal(lmf_dequant_supported(LMF_GGML_Q5_0), 1);
}

static void test_load_refuses_other_arch(void **state) {
    char path[] = "/tmp/lmf_test_arch_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    lmf_gguf_writer *w = lmf_gguf_writer_create(0);
    lmf_gguf_writer_set_str(w, "general.architecture", "mamba");
    assert_int_equal(lmf_gguf_writer_write(w, path), LMF_OK);
    lmf_gguf_writer_free(w);
    lmf_model *m = (lmf_model *)1;
    assert_int_equal(load_model(path, 1, 8, &m), LMF_ERR_FORMAT);
    assert_null(m);
    assert_non_null(strstr(lmf_last_error(), "mamba"));
    assert_non_null(strstr(lmf_last_error(), "llama"));
    close(fd);
    unlink(path);
}


enum { WRONG_NONE, WRONG_SHAPE, WRONG_MISSING };

static void add(lmf_gguf_writer *w, const char *name, const float *data, int64_t in, int64_t out) {
    int64_t ne[2] = {in, out};
    lmf_gguf_writer_add_tensor(w, name, LMF_GGML_F32, out ? 2 : 1, ne, data);
}

/* Writes m as a llama.cpp-style GGUF at path (F32 tensors, ggml dims [in, out], q/k rows permuted). */
static void write_llama_gguf(const lmf_model *m, const char *path, int wrong) {
    const lmf_model_config *c = &m->cfg;
    int C = c->n_embd, F = c->ffn_dim, hs = C / c->n_head, KV = c->n_kv_head * hs, S = C + 2 * KV;
    lmf_gguf_writer *w = lmf_gguf_writer_create(0);
    lmf_gguf_writer_set_str(w, "general.architecture", "llama");
    lmf_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->n_layer);
    lmf_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)c->max_seq_len);
    lmf_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)C);
    lmf_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)F);
    lmf_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_head);
    lmf_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_head);
    lmf_gguf_writer_set_f32(w, "llama.rope.freq_base", c->rope_theta);
    lmf_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    lmf_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)hs);
    float *perm = malloc(sizeof(float) * (size_t)c->n_layer * (C + KV) * C); /* permuted q|k of every layer */
    char name[64];
    add(w, "token_embd.weight", m->ptr[LMF_P_WTE], C, c->vocab_size);
    if (!c->tied_embeddings) add(w, "output.weight", m->ptr[LMF_P_LMHEAD], C, c->vocab_size);
    add(w, "output_norm.weight", m->ptr[LMF_P_LNFW], C, 0);
    for (int l = 0; l < c->n_layer; l++) {
        const float *qkv = m->ptr[LMF_P_QKVW] + (size_t)l * S * C, *fc = m->ptr[LMF_P_FCW] + (size_t)l * 2 * F * C;
        float *pq = perm + (size_t)l * (C + KV) * C;
        for (int r = 0; r < C + KV; r++) { /* GGUF row h*hs + 2i + j <- our row h*hs + j*hs/2 + i */
            int h = r / hs, k = r % hs, i = k / 2, j = k % 2;
            memcpy(pq + (size_t)r * C, qkv + (size_t)(h * hs + j * (hs / 2) + i) * C, sizeof(float) * C);
        }
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l), add(w, name, m->ptr[LMF_P_LN1W] + (size_t)l * C, C, 0);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l), add(w, name, pq, C, C);
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", l);
        if (!(wrong == WRONG_MISSING && l == 1)) add(w, name, pq + (size_t)C * C, C, wrong == WRONG_SHAPE ? KV - 1 : KV);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l), add(w, name, qkv + (size_t)(C + KV) * C, C, KV);
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", l);
        add(w, name, m->ptr[LMF_P_ATTPROJW] + (size_t)l * C * C, C, C);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l), add(w, name, m->ptr[LMF_P_LN2W] + (size_t)l * C, C, 0);
        snprintf(name, sizeof name, "blk.%d.ffn_gate.weight", l), add(w, name, fc, C, F);
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l), add(w, name, fc + (size_t)F * C, C, F);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        add(w, name, m->ptr[LMF_P_FCPROJW] + (size_t)l * C * F, F, C);
    }
    assert_int_equal(lmf_gguf_writer_write(w, path), LMF_OK);
    lmf_gguf_writer_free(w);
    free(perm);
}

static lmf_model *small_llama(int tied) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_LLAMA);
    c.vocab_size = 96, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 48, c.n_head = 6, c.n_kv_head = 2;
    c.ffn_dim = 80, c.tied_embeddings = tied;
    lmf_model *m = lmf_model_create(&c, 2, 16, 0);
    assert_non_null(m);
    lmf_model_init_weights(m, 1234 + (uint64_t)tied);
    /* norms away from 1 so a swapped norm tensor shows */
    float *ln = m->ptr[LMF_P_LN1W];
    for (int i = 0; i < c.n_layer * c.n_embd; i++) ln[i] = 1.0f + 0.01f * (float)(i % 7);
    return m;
}

static void test_llama_roundtrip(void **state) {
    for (int tied = 1; tied >= 0; tied--) {
        lmf_model *m = small_llama(tied);
        char path[] = "/tmp/lmf_test_llama_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        write_llama_gguf(m, path, WRONG_NONE);
        lmf_model *g = NULL;
        if (load_model(path, 2, 64, &g) != LMF_OK) fail_msg("%s", lmf_last_error());
        assert_int_equal(g->max_seq, 16); /* capped at llama.context_length */
        assert_memory_equal(&g->cfg, &m->cfg, sizeof m->cfg);
        assert_int_equal(lmf_model_num_params(g), lmf_model_num_params(m));
        assert_memory_equal(g->params, m->params, sizeof(float) * lmf_model_num_params(m));
        int32_t tok[2 * 16];
        for (int i = 0; i < 32; i++) tok[i] = (i * 37 + 5) % m->cfg.vocab_size;
        lmf_model_forward(m, tok, NULL, 2, 16);
        lmf_model_forward(g, tok, NULL, 2, 16);
        assert_memory_equal(lmf_model_logits(g), lmf_model_logits(m), sizeof(float) * 32 * m->cfg.vocab_size);
        lmf_model_free(g);

        if (tied) { /* errors name the tensor and the dims */
            write_llama_gguf(m, path, WRONG_SHAPE);
            assert_int_equal(load_model(path, 1, 8, &g), LMF_ERR_FORMAT);
            assert_null(g);
            assert_non_null(strstr(lmf_last_error(), "blk.0.attn_k.weight"));
            assert_non_null(strstr(lmf_last_error(), "[48, 15]"));
            write_llama_gguf(m, path, WRONG_MISSING);
            assert_int_equal(load_model(path, 1, 8, &g), LMF_ERR_FORMAT);
            assert_non_null(strstr(lmf_last_error(), "blk.1.attn_k.weight is missing"));
        }
        close(fd);
        unlink(path);
        lmf_model_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_blocks),
        cmocka_unit_test(test_load_refuses_other_arch),
        cmocka_unit_test(test_llama_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
