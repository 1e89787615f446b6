/* test_imatrix.c — importance matrices (lmf_imatrix_*, model/imatrix.c):
 *  - SmolLM2 (skipped without the model): `lmf_imatrix_compute` over tests/reference/fixtures/kjv_genesis_1-4.txt (6
 *    windows of 256) collects the 210 entries llama-imatrix collects, with its row counts, and the values of the
 *    three layers kept in fixtures/smollm2_imatrix.gguf (llama-imatrix's own on the same text, imatrix_fixtures.sh)
 *    within 5e-3 (the two forwards' rounding: 1.1e-3 measured on Zen 1; AMX machines run prefill on integer products); saved and loaded back, the same values;
 *  - files: llama.cpp's GGUF and legacy .dat fixtures read as llama-quantize reads them (sum / count, sum / calls);
 *    truncated, foreign and malformed files refused with the file named;
 *  - a run stopped after 3 windows (its file written as it goes) and resumed to 6 gives the one run's matrix;
 *    resuming other windows is refused;
 *  - other layouts: gpt2's fused q|k|v is one entry (attn_qkv); a mixture's router, experts (per expert counts that
 *    add up to k rows a token), shared expert and output head are observed at every prefill step. */
#include "test_util.h"

#include "lmforge.h"
#include "model/infer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/"
#define TEXT FIX "kjv_genesis_1-4.txt"

static const float *values_of(const lmf_imatrix *m, const char *name, size_t *n) {
    const float *v = lmf_imatrix_find(m, name, n);
    if (!v) fail_msg("no entry %s", name);
    return v;
}

static void test_smollm2(void **state) {
    (void)state;
    struct stat sb;
    if (stat(smollm2_path(), &sb) != 0) {
        printf("[  SKIP    ] %s not found; run scripts/fetch-smollm2.sh\n", smollm2_path());
        skip();
    }
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(smollm2_path(), &w), LMF_OK);
    size_t len;
    char *text = slurp(TEXT, &len);
    assert_non_null(text);
    lmf_imatrix *m, *want, *back;
    lmf_ppl_result ppl;
    lmf_imatrix_params ip = {.ctx = 256, .max_chunks = 6, .dataset = "kjv"};
    assert_int_equal(lmf_imatrix_compute(w, text, len, &ip, NULL, &m, &ppl), LMF_OK);
    assert_int_equal(lmf_imatrix_chunks(m), 6);
    /* every entry llama-imatrix collected, with its row count, and nothing else */
    char *names = slurp(FIX "smollm2_imatrix.txt", NULL);
    assert_non_null(names);
    int n_want = 0;
    for (char *line = strtok(names, "\n"); line; line = strtok(NULL, "\n"), n_want++) {
        char nm[128];
        long count;
        assert_int_equal(sscanf(line, "%127s %ld", nm, &count), 2);
        int found = 0;
        for (int i = 0; i < lmf_imatrix_entries(m); i++) {
            int cols, n_mat;
            const int64_t *counts;
            if (strcmp(lmf_imatrix_entry(m, i, &cols, &n_mat, &counts), nm)) continue;
            found = 1;
            assert_int_equal(n_mat, 1);
            if (counts[0] != count) fail_msg("%s: %lld rows, llama-imatrix %ld", nm, (long long)counts[0], count);
        }
        if (!found) fail_msg("entry %s (llama-imatrix's) not collected", nm);
    }
    assert_int_equal(lmf_imatrix_entries(m), n_want);
    free(names);
    /* values against llama-imatrix's on the same text */
    assert_int_equal(lmf_imatrix_load(FIX "smollm2_imatrix.gguf", &want), LMF_OK);
    double worst = 0;
    for (int i = 0; i < lmf_imatrix_entries(want); i++) {
        const char *nm = lmf_imatrix_entry(want, i, NULL, NULL, NULL);
        size_t n, nw;
        const float *got = values_of(m, nm, &n), *ref = values_of(want, nm, &nw);
        assert_int_equal(n, nw);
        for (size_t j = 0; j < n; j++) {
            double rel = fabs((double)got[j] - ref[j]) / fmax(fabs((double)ref[j]), 1e-12);
            if (rel > worst) worst = rel;
            if (rel > 5e-3) fail_msg("%s[%zu] = %.7g, llama-imatrix's %.7g", nm, j, (double)got[j], (double)ref[j]);
        }
    }
    printf("  %d entries as llama-imatrix's; values of %d within %.2g relative; perplexity %.4f\n",
           lmf_imatrix_entries(m), lmf_imatrix_entries(want), worst, ppl.ppl);
    /* written and read back: the same values */
    char path[] = "/tmp/lmf_test_imatrix_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(lmf_imatrix_save(m, path), LMF_OK);
    assert_int_equal(lmf_imatrix_load(path, &back), LMF_OK);
    assert_int_equal(lmf_imatrix_entries(back), lmf_imatrix_entries(m));
    assert_string_equal(lmf_imatrix_dataset(back), "kjv");
    for (int i = 0; i < lmf_imatrix_entries(m); i++) {
        const char *nm = lmf_imatrix_entry(m, i, NULL, NULL, NULL);
        size_t n, nb;
        const float *a = values_of(m, nm, &n), *b = values_of(back, nm, &nb);
        assert_int_equal(n, nb);
        assert_memory_equal(a, b, n * sizeof(float));
    }
    /* stopped after 3 windows (written after each), then resumed from the file to 6: the same matrix as one run
     * (the first three windows' sums went through float once: 1e-6) */
    lmf_imatrix *part, *saved, *rest;
    lmf_imatrix_params ia = {.ctx = 256, .max_chunks = 3, .dataset = "kjv", .save_path = path, .save_every = 1};
    assert_int_equal(lmf_imatrix_compute(w, text, len, &ia, NULL, &part, NULL), LMF_OK);
    assert_int_equal(lmf_imatrix_load(path, &saved), LMF_OK);
    assert_int_equal(lmf_imatrix_chunks(saved), 3);
    lmf_imatrix_params ib = {.ctx = 256, .max_chunks = 6, .dataset = "kjv", .resume = saved};
    assert_int_equal(lmf_imatrix_compute(w, text, len, &ib, NULL, &rest, &ppl), LMF_OK);
    assert_int_equal(ppl.windows, 3);
    assert_int_equal(lmf_imatrix_chunks(rest), 6);
    assert_int_equal(lmf_imatrix_entries(rest), lmf_imatrix_entries(m));
    for (int i = 0; i < lmf_imatrix_entries(m); i++) {
        int cols, n_mat, cr, nr;
        const int64_t *ca, *cb;
        const char *nm = lmf_imatrix_entry(m, i, &cols, &n_mat, &ca);
        for (int k = 0; k < lmf_imatrix_entries(rest); k++)
            if (!strcmp(lmf_imatrix_entry(rest, k, &cr, &nr, &cb), nm)) {
                assert_int_equal(cb[0], ca[0]);
                break;
            }
        size_t n, nb;
        const float *a = values_of(m, nm, &n), *b = values_of(rest, nm, &nb);
        assert_int_equal(n, nb);
        for (size_t j = 0; j < n; j++) assert_float_equal(a[j], b[j], 1e-6 * fabsf(a[j]) + 1e-30);
    }
    /* resuming with other windows, or past the text, is refused */
    lmf_imatrix *x;
    lmf_imatrix_params ic = {.ctx = 128, .resume = saved};
    assert_int_equal(lmf_imatrix_compute(w, text, len, &ic, NULL, &x, NULL), LMF_ERR_ARG);
    lmf_imatrix_params id = {.ctx = 256, .max_chunks = 3, .resume = saved};
    assert_int_equal(lmf_imatrix_compute(w, text, len, &id, NULL, &x, NULL), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "already done"));
    lmf_imatrix_free(part), lmf_imatrix_free(saved), lmf_imatrix_free(rest);
    unlink(path);
    lmf_imatrix_free(back), lmf_imatrix_free(want), lmf_imatrix_free(m);
    free(text);
    lmf_weights_free(w);
}

/* llama.cpp's two formats, read as llama-quantize reads them; bad files refused with the file named */
static void test_files(void **state) {
    (void)state;
    lmf_imatrix *g, *d, *x;
    assert_int_equal(lmf_imatrix_load(FIX "smollm2_imatrix.gguf", &g), LMF_OK);
    assert_int_equal(lmf_imatrix_load(FIX "smollm2_imatrix.dat", &d), LMF_OK);
    assert_int_equal(lmf_imatrix_entries(g), 21);
    assert_int_equal(lmf_imatrix_entries(d), 21);
    assert_int_equal(lmf_imatrix_chunks(d), 6);
    assert_string_equal(lmf_imatrix_dataset(d), "kjv_genesis_1-4.txt");
    size_t n, nd;
    const float *a = values_of(g, "blk.14.ffn_down.weight", &n), *b = values_of(d, "blk.14.ffn_down.weight", &nd);
    assert_int_equal(n, 1536);
    assert_int_equal(nd, 1536);
    for (size_t j = 0; j < n; j++) assert_float_equal(a[j], b[j], 1e-6 * fabsf(a[j]) + 1e-30);
    assert_null(lmf_imatrix_find(g, "blk.1.attn_q.weight", &n));
    assert_int_equal(n, 0);

    /* the .dat cut at every length: refused, never read past its end (the optional trailer aside) */
    size_t len;
    char *dat = slurp(FIX "smollm2_imatrix.dat", &len);
    char path[] = "/tmp/lmf_test_imatrix_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    size_t cuts[] = {0, 3, 4, 10, 27, 40, 1000, 4000};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        FILE *f = fopen(path, "wb");
        fwrite(dat, 1, cuts[i], f);
        fclose(f);
        assert_int_equal(lmf_imatrix_load(path, &x), LMF_ERR_FORMAT);
        assert_null(x);
        assert_non_null(strstr(lmf_last_error(), path));
    }
    /* a non-finite value */
    memcpy(dat + 4 + 4 + strlen("blk.0.attn_k.weight") + 8, "\x00\x00\xc0\x7f", 4);
    FILE *f = fopen(path, "wb");
    fwrite(dat, 1, len, f);
    fclose(f);
    assert_int_equal(lmf_imatrix_load(path, &x), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "must be finite"));
    unlink(path);
    free(dat);
    /* a model is not an importance matrix; a missing file is an I/O error */
    assert_int_equal(lmf_imatrix_load(FIX "tiny_llama.gguf", &x), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "not an imatrix file"));
    assert_int_equal(lmf_imatrix_load(FIX "no_such.imatrix", &x), LMF_ERR_IO);
    lmf_imatrix_free(g), lmf_imatrix_free(d);
}

/* gpt2: the fused q|k|v is one entry, the FFN's up and down two */
static void test_gpt2_names(void **state) {
    (void)state;
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "hf/gpt2", &w), LMF_OK);
    const char *text = "the quick brown fox jumps over the lazy dog, again and again, until the dog wakes up.";
    lmf_imatrix *m;
    lmf_imatrix_params ip = {.ctx = 16};
    assert_int_equal(lmf_imatrix_compute(w, text, strlen(text), &ip, NULL, &m, NULL), LMF_OK);
    int L = lmf_weights_config(w)->n_layer;
    assert_int_equal(lmf_imatrix_entries(m), 4 * L);
    size_t n;
    assert_non_null(lmf_imatrix_find(m, "blk.0.attn_qkv.weight", &n));
    assert_non_null(lmf_imatrix_find(m, "blk.0.attn_output.weight", &n));
    assert_non_null(lmf_imatrix_find(m, "blk.0.ffn_up.weight", &n));
    assert_non_null(lmf_imatrix_find(m, "blk.0.ffn_down.weight", &n));
    assert_int_equal(n, (size_t)lmf_weights_config(w)->ffn_dim);
    assert_null(lmf_imatrix_find(m, "blk.0.attn_q.weight", &n));
    lmf_imatrix_free(m);
    /* --process-output on a tied head collects nothing more (llama-imatrix sees token_embd there, not output) */
    ip.process_output = 1;
    assert_int_equal(lmf_imatrix_compute(w, text, strlen(text), &ip, NULL, &m, NULL), LMF_OK);
    assert_int_equal(lmf_imatrix_entries(m), 4 * L);
    lmf_imatrix_free(m);
    lmf_weights_free(w);
}

typedef struct {
    long rows[10];
    int experts_seen;
} tally;

static void count_rows(void *user, int layer, lmf_obs_site site, int expert, const float *in, int ldi, int N,
                       int cols) {
    (void)in, (void)ldi, (void)cols;
    tally *t = user;
    if (layer > 0) return;
    t->rows[site] += N;
    if (site == LMF_OBS_EXPERT_IN) t->experts_seen |= 1 << expert;
}

/* a mixture with a shared expert: the router and the shared expert see every row, the experts k of them a token */
static void test_moe_sites(void **state) {
    (void)state;
    lmf_weights *w;
    assert_int_equal(lmf_weights_load(FIX "qwen2/qwen2_moe", &w), LMF_OK);
    const lmf_model_config *c = lmf_weights_config(w);
    lmf_session *s;
    assert_int_equal(lmf_session_create(w, 32, &s), LMF_OK);
    tally t = {0};
    lmf_session_set_observer(s, count_rows, &t);
    int32_t tok[20];
    for (int i = 0; i < 20; i++) tok[i] = (i * 7) % c->vocab_size;
    assert_int_equal(lmf_session_eval(s, tok, 20, 0, NULL), LMF_OK);
    assert_int_equal(t.rows[LMF_OBS_ATTN_IN], 20);
    assert_int_equal(t.rows[LMF_OBS_ATTN_OUT], 20);
    assert_int_equal(t.rows[LMF_OBS_ROUTER], 20);
    assert_int_equal(t.rows[LMF_OBS_EXPERT_IN], 20 * c->n_expert_used);
    assert_int_equal(t.rows[LMF_OBS_EXPERT_DOWN], 20 * c->n_expert_used);
    assert_int_equal(t.rows[LMF_OBS_SHARED_IN], 20);
    assert_int_equal(t.rows[LMF_OBS_SHARED_DOWN], 20);
    assert_int_equal(t.rows[LMF_OBS_FFN_IN], 0);
    assert_true(t.experts_seen != 0);
    assert_int_equal(t.rows[LMF_OBS_OUTPUT], 1); /* the last position's logits only */
    /* every position's logits: the head sees every row */
    lmf_session_rewind(s, 0);
    memset(&t, 0, sizeof t);
    assert_int_equal(lmf_session_eval(s, tok, 20, 1, NULL), LMF_OK);
    assert_int_equal(t.rows[LMF_OBS_OUTPUT], 20);
    /* decode steps (a few rows) are not observed */
    memset(&t, 0, sizeof t);
    assert_int_equal(lmf_session_eval(s, tok, 1, 0, NULL), LMF_OK);
    assert_int_equal(t.rows[LMF_OBS_ATTN_IN], 0);
    lmf_session_free(s);
    lmf_weights_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_gpt2_names),
        cmocka_unit_test(test_moe_sites),
        cmocka_unit_test(test_smollm2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
