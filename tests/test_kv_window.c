/* test_kv_window.c — a KV pool that keeps sliding-window layers apart (lmf_kv_pool_create_windows): their blocks go
 * back to the pool once they fall out of the window, and nothing a sequence computes changes.
 *
 * Model: a random Gemma 3 (window 20 on 3 of its 4 layers, the global one second from last, so every layer kind's
 * slots are exercised), the same with every layer windowed (Mistral's and Phi-3's way: no full-attention blocks at
 * all), and, for generation and the engine, the first with the Hugging Face gpt2 fixture's tokenizer lent to it.
 * Every check compares with a pool that keeps every position (n_windows 0) and asks for equality to the bit: the
 * split only moves where K and V live, not what is computed. */
#include "test_util.h"

#include "lmforge.h"
#include "model/infer.h"
#include "model/model.h"
#include "model/weights.h"
#include "serve/engine.h"
#include "serve/prefix_cache.h"
#include "tokenizer/tokenizer.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define W 20
#define BS 8
#define STEP 16
#define CTX 1024

/* pattern 3: layers 0, 1 and 3 windowed; 0: every layer (Mistral's, Phi-3's way) */
static lmf_model *make_model(int vocab, int ctx, int pattern) {
    lmf_model_config c = lmf_model_config_default(LMF_ARCH_GEMMA3);
    c.vocab_size = vocab, c.max_seq_len = ctx, c.n_layer = 4, c.n_embd = 32, c.n_head = 4, c.n_kv_head = 2;
    c.ffn_dim = 48, c.sliding_window = W, c.swa_pattern = pattern, c.rope_theta_swa = 100.0f;
    lmf_model *m = lmf_model_create(&c, 1, 16, 0);
    assert_non_null(m);
    lmf_model_init_weights(m, 11);
    return m;
}

static int32_t token(int k, int p, int V) { return (int32_t)((p * 37 + k * 101 + 7) % V); }

static void fill(int32_t *t, int n, int k, int p0, int V) {
    for (int i = 0; i < n; i++) t[i] = token(k, p0 + i, V);
}

/* Windowed blocks the session holds. */
static int held(const lmf_session *s) {
    const int *wb = lmf_session_window_table(s), *b;
    int n = lmf_session_block_table(s, &b), k = 0;
    for (int i = 0; i < n; i++) k += wb[i] >= 0;
    return k;
}

static void same(const float *a, const float *b, int V, const char *what, int pos) {
    if (memcmp(a, b, sizeof(float) * (size_t)V)) fail_msg("%s at position %d: the logits differ", what, pos);
}

/* Evaluates n tokens in both sessions and compares the last logits. */
static void both(lmf_session *s, lmf_session *ref, const int32_t *t, int n, int V, const char *what) {
    const float *a, *b;
    if (lmf_session_eval(s, t, n, 0, &a) != LMF_OK) fail_msg("%s: %s", what, lmf_last_error());
    assert_int_equal(lmf_session_eval(ref, t, n, 0, &b), LMF_OK);
    same(a, b, V, what, lmf_session_pos(s));
}

static void check_same_logits(int pattern) {
    lmf_model *m = make_model(61, CTX, pattern);
    const lmf_weights *w = lmf_model_weights(m);
    int V = 61, nfull = pattern ? 1 : 0;
    for (int f16 = 0; f16 < 2; f16++) {
        lmf_kv_type kvt = f16 ? LMF_KV_F16 : LMF_KV_F32;
        lmf_kv_pool *pool, *full;
        assert_int_equal(lmf_kv_pool_create_windows(w, 2 * CTX, BS, CTX, kvt, 2, STEP, &pool), LMF_OK);
        assert_int_equal(lmf_kv_pool_create_windows(w, 2 * CTX, BS, CTX, kvt, 0, STEP, &full), LMF_OK);
        assert_int_equal(lmf_kv_pool_window(pool), W);
        assert_int_equal(lmf_kv_pool_window(full), 0);
        int peak = lmf_kv_pool_window_peak(pool);
        assert_int_equal(peak, (W - 1 + STEP + BS - 1) / BS + 2);
        assert_int_equal(lmf_kv_pool_window_blocks(pool), 2 * peak);
        /* 1 of 4 layers (or none) at every position, the others in 2 windows' blocks */
        size_t per_block = 2 * (size_t)lmf_kv_width(&w->cfg) * BS * lmf_kv_type_bytes(kvt);
        assert_int_equal(lmf_kv_pool_bytes(pool),
                         per_block * (nfull * (2 * CTX / BS) + (4 - nfull) * 2 * (size_t)peak));
        assert_int_equal(lmf_kv_pool_bytes(full), per_block * 4 * (2 * CTX / BS));

        lmf_session *s[2], *r[2];
        for (int k = 0; k < 2; k++) {
            assert_int_equal(lmf_session_create_pooled(pool, CTX, &s[k]), LMF_OK);
            assert_int_equal(lmf_session_create_pooled(full, CTX, &r[k]), LMF_OK);
        }
        /* prefill longer than a step (cut into steps of 16), decode, prefill pieces that straddle blocks */
        static const int PIECES[] = {45, 1, 1, 1, 1, 3, 7, 1, 130, 5, 1, 1, 16, 9, 1, 60, 1};
        int32_t t[256];
        int pos = 0;
        for (size_t i = 0; i < sizeof PIECES / sizeof *PIECES; i++) {
            fill(t, PIECES[i], 0, pos, V);
            both(s[0], r[0], t, PIECES[i], V, f16 ? "f16 cache" : "f32 cache");
            pos += PIECES[i];
            assert_true(held(s[0]) <= peak);
        }
        assert_true(pos > 10 * W);
        assert_true(held(s[0]) <= (W - 1 + BS - 1) / BS + 2); /* only the last window (and one block) after a step */

        /* two sessions in one step (the server's batches), one decoding and one reading a prompt */
        float *got = malloc(sizeof(float) * 4 * (size_t)V), *ref = got + 2 * V;
        for (int st = 0; st < 12; st++) {
            int n[2] = {1, st % 3 ? 5 : 16};
            int32_t t0[1], t1[16];
            fill(t0, 1, 0, lmf_session_pos(s[0]), V), fill(t1, n[1], 1, lmf_session_pos(s[1]), V);
            const int32_t *tp[2] = {t0, t1};
            if (lmf_session_eval_batch(s, tp, n, 2, got) != LMF_OK) fail_msg("%s", lmf_last_error());
            assert_int_equal(lmf_session_eval_batch(r, tp, n, 2, ref), LMF_OK); /* the same rows: the same path */
            for (int k = 0; k < 2; k++) same(got + (size_t)k * V, ref + (size_t)k * V, V, "a batch of two", st);
        }
        free(got);

        /* a rewind within a block keeps the cache; further back the session starts over */
        int p = lmf_session_pos(s[0]);
        lmf_session_rewind(s[0], p - 3);
        lmf_session_rewind(r[0], p - 3);
        assert_int_equal(lmf_session_pos(s[0]), p - 3);
        fill(t, 4, 2, p - 3, V);
        both(s[0], r[0], t, 4, V, "after a short rewind");
        lmf_session_rewind(s[0], p - 2 * W);
        assert_int_equal(lmf_session_pos(s[0]), 0);
        lmf_session_rewind(r[0], 0);
        fill(t, 50, 3, 0, V);
        both(s[0], r[0], t, 50, V, "after a rewind past the window");

        /* a step longer than the pool's step is refused before anything changes */
        int32_t many[STEP + 1];
        fill(many, STEP + 1, 4, 0, V);
        const int32_t *tp[1] = {many};
        int n1[1] = {STEP + 1}, before = lmf_kv_pool_window_blocks_free(pool);
        assert_int_equal(lmf_session_eval_batch(s, tp, n1, 1, NULL), LMF_ERR_ARG);
        assert_non_null(strstr(lmf_last_error(), "more than the pool's 16"));
        assert_int_equal(lmf_kv_pool_window_blocks_free(pool), before);

        for (int k = 0; k < 2; k++) lmf_session_free(s[k]), lmf_session_free(r[k]);
        assert_int_equal(lmf_kv_pool_window_blocks_free(pool), lmf_kv_pool_window_blocks(pool));
        assert_int_equal(lmf_kv_pool_blocks_free(pool), lmf_kv_pool_blocks(pool));
        lmf_kv_pool_free(pool);
        lmf_kv_pool_free(full);
    }
    lmf_model_free(m);
}

static void test_same_logits(void **state) {
    (void)state;
    check_same_logits(3);
}

static void test_every_layer_windowed(void **state) {
    (void)state;
    check_same_logits(0);
}

/* A session that adopts another's blocks (the prefix cache's way) continues as the other does; the windowed blocks
 * of its window must be there. With room for one window, a second sequence that needs more fails cleanly. */
static void test_adopt_and_exhaust(void **state) {
    (void)state;
    lmf_model *m = make_model(61, CTX, 3);
    const lmf_weights *w = lmf_model_weights(m);
    int V = 61;
    lmf_kv_pool *pool;
    assert_int_equal(lmf_kv_pool_create_windows(w, 2 * CTX, BS, CTX, LMF_KV_F32, 1, STEP, &pool), LMF_OK);
    lmf_session *a, *b, *c;
    assert_int_equal(lmf_session_create_pooled(pool, CTX, &a), LMF_OK);
    int32_t t[96];
    fill(t, 96, 0, 0, V);
    assert_int_equal(lmf_session_eval(a, t, 96, 0, NULL), LMF_OK);
    const int *blocks, *wblocks = lmf_session_window_table(a);
    assert_int_equal(lmf_session_block_table(a, &blocks), 12);
    assert_int_equal(wblocks[0], -1); /* long out of the window */

    /* the pool holds one window: a second sequence's 40 tokens would need more than are free */
    assert_int_equal(lmf_session_create_pooled(pool, CTX, &c), LMF_OK);
    int free_w = lmf_kv_pool_window_blocks_free(pool);
    assert_int_equal(lmf_session_eval(c, t, 40, 0, NULL), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "windowed blocks are exhausted"));
    assert_int_equal(lmf_session_pos(c), 0);
    assert_int_equal(lmf_kv_pool_window_blocks_free(pool), free_w);

    /* adopting all 12 blocks: the window before position 96 is there */
    assert_int_equal(lmf_session_create_pooled(pool, CTX, &b), LMF_OK);
    int missing[12];
    memcpy(missing, wblocks, sizeof missing);
    missing[11] = -1;
    assert_int_equal(lmf_session_adopt(b, blocks, missing, 12), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "block 11 is missing"));
    assert_int_equal(lmf_session_adopt(b, blocks, wblocks, 12), LMF_OK);
    assert_int_equal(lmf_session_pos(b), 96);
    assert_true(held(b) == (96 - W + 1 > 0 ? 12 - (96 - W + 1) / BS : 12));
    /* a continues first (into blocks of its own), then b over the blocks it shares */
    int32_t next[5];
    fill(next, 5, 1, 96, V);
    const float *la, *lb;
    assert_int_equal(lmf_session_eval(a, next, 5, 0, &la), LMF_OK);
    float *keep = malloc(sizeof(float) * (size_t)V);
    memcpy(keep, la, sizeof(float) * (size_t)V);
    lmf_session_free(a); /* b's blocks stay its own */
    assert_int_equal(lmf_session_eval(b, next, 5, 0, &lb), LMF_OK);
    same(keep, lb, V, "the adopting session", 101);
    free(keep);
    lmf_session_free(b);
    lmf_session_free(c);
    assert_int_equal(lmf_kv_pool_window_blocks_free(pool), lmf_kv_pool_window_blocks(pool));
    lmf_kv_pool_free(pool);
    lmf_model_free(m);
}

/* The prefix cache keeps the windowed blocks of a prompt's last window: the same prompt matches to its end, a prompt
 * that shares only an early part (whose windowed blocks are gone) matches nothing; evicting windowed blocks alone
 * keeps the entries. */
static void test_prefix_cache(void **state) {
    (void)state;
    lmf_model *m = make_model(61, CTX, 3);
    const lmf_weights *w = lmf_model_weights(m);
    int V = 61;
    lmf_kv_pool *pool;
    assert_int_equal(lmf_kv_pool_create_windows(w, 2 * CTX, BS, CTX, LMF_KV_F32, 4, STEP, &pool), LMF_OK);
    lmf_prefix_cache *pc = lmf_prefix_cache_create(pool);
    lmf_session *a;
    assert_int_equal(lmf_session_create_pooled(pool, CTX, &a), LMF_OK);
    int32_t t[97], u[97];
    fill(t, 97, 0, 0, V);
    assert_int_equal(lmf_session_eval(a, t, 96, 0, NULL), LMF_OK);
    const int *blocks;
    assert_int_equal(lmf_session_block_table(a, &blocks), 12);
    lmf_prefix_cache_insert(pc, t, 12, blocks, lmf_session_window_table(a), 1);
    lmf_session_free(a);
    int got[12], wgot[12];
    assert_int_equal(lmf_prefix_cache_match(pc, t, 12, got, wgot), 12);
    memcpy(u, t, sizeof u);
    u[50] = (u[50] + 1) % V; /* shares 6 blocks, whose window went back to the pool */
    assert_int_equal(lmf_prefix_cache_match(pc, u, 12, got, wgot), 0);
    int wcached = lmf_prefix_cache_window_reclaimable(pc);
    assert_true(wcached >= (W - 1) / BS + 1);
    assert_int_equal(lmf_prefix_cache_reclaimable(pc), 12);
    assert_int_equal(lmf_prefix_cache_evict(pc, 0, 1), 0); /* a windowed block only: no entry dropped */
    assert_int_equal(lmf_prefix_cache_size(pc), 12);
    assert_int_equal(lmf_prefix_cache_window_reclaimable(pc), wcached - 1);
    assert_true(lmf_prefix_cache_match(pc, t, 12, got, wgot) < 12);
    lmf_prefix_cache_free(pc);

    /* entered chunk by chunk as the engine does (16 tokens a step), every block comes with its windowed one: the
     * prompt that shares 6 blocks matches them; evicting windowed blocks takes those outside the whole prompt's last
     * window first (deepest first), so the match of the prompt itself holds longest */
    pc = lmf_prefix_cache_create(pool);
    assert_int_equal(lmf_session_create_pooled(pool, CTX, &a), LMF_OK);
    for (int p = 0; p < 96; p += 16) {
        assert_int_equal(lmf_session_eval(a, t + p, 16, 0, NULL), LMF_OK);
        assert_int_equal(lmf_session_block_table(a, &blocks), (p + 16) / BS);
        lmf_prefix_cache_insert(pc, t, (p + 16) / BS, blocks, lmf_session_window_table(a), p + 16 == 96);
    }
    lmf_session_free(a);
    assert_int_equal(lmf_prefix_cache_window_reclaimable(pc), 12);
    assert_int_equal(lmf_prefix_cache_match(pc, u, 12, got, wgot), 6);
    assert_int_equal(lmf_prefix_cache_evict(pc, 0, 1), 0); /* block 7's: outside [8, 12) */
    assert_int_equal(lmf_prefix_cache_match(pc, u, 12, got, wgot), 6);
    lmf_prefix_cache_evict(pc, 0, 4); /* 6, 5, 4, 3 */
    assert_int_equal(lmf_prefix_cache_match(pc, u, 12, got, wgot), 3); /* [0, 3) still there */
    assert_int_equal(lmf_prefix_cache_match(pc, t, 12, got, wgot), 12);
    lmf_prefix_cache_free(pc);
    assert_int_equal(lmf_kv_pool_window_blocks_free(pool), lmf_kv_pool_window_blocks(pool));
    assert_int_equal(lmf_kv_pool_blocks_free(pool), lmf_kv_pool_blocks(pool));
    lmf_kv_pool_free(pool);
    lmf_model_free(m);
}

/* A session of its own (blocks of 256) splits once its context outgrows a window's blocks. lmf_generate's "the last
 * token again" rewinds by one and keeps the cache; a chat's rewind past the window starts over, and lmf_generate
 * and the CLI read where the session stands. Greedy tokens against a pool that keeps every position, the same
 * block size and the same steps. */
static void greedy_reply(lmf_session *s, const lmf_weights *w, lmf_ids *hist, size_t n_new, int n) {
    lmf_sampler_params sp = lmf_sampler_defaults();
    sp.temperature = 0;
    lmf_sampler *smp;
    assert_int_equal(lmf_sampler_create(&sp, lmf_weights_config(w)->vocab_size, &smp), LMF_OK);
    lmf_generate_params gp = {.n_predict = n};
    lmf_text reply = {0};
    if (lmf_generate(s, smp, hist, n_new, &gp, &reply, NULL) != LMF_OK) fail_msg("%s", lmf_last_error());
    free(reply.data);
    lmf_sampler_free(smp);
}

/* make_model's windowed model with the Hugging Face gpt2 fixture's tokenizer lent to it (lmf_generate and the engine
 * detokenize with it); *tw holds the fixture, freed by unlend. */
static lmf_model *lend_tokenizer(int ctx, lmf_weights **tw) {
    if (lmf_weights_load(LMF_SOURCE_DIR "/tests/reference/fixtures/hf/gpt2", tw) != LMF_OK)
        fail_msg("%s", lmf_last_error());
    lmf_model *m = make_model(lmf_weights_config(*tw)->vocab_size, ctx, 3);
    ((lmf_weights *)lmf_model_weights(m))->tok = (*tw)->tok;
    return m;
}

static void unlend(lmf_model *m, lmf_weights *tw) {
    ((lmf_weights *)lmf_model_weights(m))->tok = NULL;
    lmf_model_free(m);
    lmf_weights_free(tw);
}

static void test_generate(void **state) {
    (void)state;
    lmf_weights *tw;
    lmf_model *m = lend_tokenizer(2048, &tw);
    const lmf_weights *w = lmf_model_weights(m);
    lmf_session *s, *r;
    lmf_kv_pool *full;
    assert_int_equal(lmf_session_create(w, 2048, &s), LMF_OK);
    assert_int_equal(lmf_kv_pool_window(lmf_session_pool(s)), W);
    assert_int_equal(lmf_kv_pool_create_windows(w, 2048, 256, 2048, LMF_KV_F32, 0, 0, &full), LMF_OK);
    assert_int_equal(lmf_session_create_pooled(full, 2048, &r), LMF_OK);
    lmf_ids hs = {0}, hr = {0};
    for (int i = 0; i < 1500; i++) {
        int32_t t = token(0, i, 256);
        lmf_ids_push(&hs, &t, 1), lmf_ids_push(&hr, &t, 1);
    }
    greedy_reply(s, w, &hs, hs.len, 20);
    greedy_reply(r, w, &hr, hr.len, 20);
    /* the session holds all but the last token: hold it too, so the next call rewinds by one */
    assert_int_equal(lmf_session_eval(s, hs.data + hs.len - 1, 1, 0, NULL), LMF_OK);
    assert_int_equal(lmf_session_eval(r, hr.data + hr.len - 1, 1, 0, NULL), LMF_OK);
    greedy_reply(s, w, &hs, 0, 10);
    greedy_reply(r, w, &hr, 0, 10);
    assert_int_equal(hs.len, hr.len);
    assert_memory_equal(hs.data, hr.data, sizeof(int32_t) * hs.len);
    assert_true(lmf_session_pos(s) > 1500);
    /* a turn that departs 100 tokens in: the windowed session starts over */
    hs.len = hr.len = 100;
    for (int i = 0; i < 30; i++) {
        int32_t t = token(1, i, 256);
        lmf_ids_push(&hs, &t, 1), lmf_ids_push(&hr, &t, 1);
    }
    lmf_session_rewind(s, 100);
    assert_int_equal(lmf_session_pos(s), 0);
    lmf_session_rewind(r, 0);
    greedy_reply(s, w, &hs, hs.len, 10);
    greedy_reply(r, w, &hr, hr.len, 10);
    assert_int_equal(hs.len, 140);
    assert_memory_equal(hs.data, hr.data, sizeof(int32_t) * hs.len);
    free(hs.data), free(hr.data);
    lmf_session_free(s), lmf_session_free(r);
    lmf_kv_pool_free(full);
    unlend(m, tw);
}

/* The cache's index under churn: 64 chains of 4 blocks (each block in one entry only, so an entry is there exactly
 * when its block's reference count is 1), evicted a few at a time; every chain must match as far as its entries are
 * there, with its own blocks, and every block must come back. */
static void test_prefix_cache_index(void **state) {
    (void)state;
    lmf_model *m = make_model(61, CTX, 3);
    lmf_kv_pool *pool;
    assert_int_equal(lmf_kv_pool_create_windows(lmf_model_weights(m), CTX, 4, CTX, LMF_KV_F32, 0, 0, &pool), LMF_OK);
    lmf_session *s;
    assert_int_equal(lmf_session_create_pooled(pool, CTX, &s), LMF_OK);
    int32_t t[CTX];
    fill(t, CTX, 5, 0, 61);
    assert_int_equal(lmf_session_eval(s, t, CTX, 0, NULL), LMF_OK);
    const int *held;
    assert_int_equal(lmf_session_block_table(s, &held), 256);
    int blocks[64][4], got[4], wgot[4];
    int32_t toks[64][16];
    lmf_prefix_cache *pc = lmf_prefix_cache_create(pool);
    uint64_t r = 12345;
    for (int c = 0; c < 64; c++) {
        for (int i = 0; i < 16; i++) r = r * 6364136223846793005ull + 1442695040888963407ull, toks[c][i] = (int32_t)(r >> 40);
        memcpy(blocks[c], held + 4 * c, sizeof blocks[c]);
        lmf_prefix_cache_insert(pc, toks[c], 4, blocks[c], NULL, 1);
    }
    lmf_session_free(s);
    assert_int_equal(lmf_prefix_cache_size(pc), 256);
    for (int round = 0; lmf_prefix_cache_size(pc) > 0; round++) {
        for (int c = 0; c < 64; c++) {
            int expect = 0;
            while (expect < 4 && lmf_kv_pool_block_refs(pool, blocks[c][expect]) == 1) expect++;
            assert_int_equal(lmf_prefix_cache_match(pc, toks[c], 4, got, wgot), expect);
            assert_memory_equal(got, blocks[c], sizeof(int) * (size_t)expect);
        }
        lmf_prefix_cache_evict(pc, 1 + round % 7, 0);
    }
    assert_int_equal(lmf_kv_pool_blocks_free(pool), lmf_kv_pool_blocks(pool));
    lmf_prefix_cache_free(pc);
    lmf_kv_pool_free(pool);
    lmf_model_free(m);
}

/* ---- the engine ------------------------------------------------------------------------------------------------ */

typedef struct {
    int32_t toks[512];
    float lps[512];
    int n, done, error, cached;
} result;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static int on_event(void *ctx, const lmf_engine_event *ev) {
    result *r = ctx;
    pthread_mutex_lock(&mu);
    if (ev->kind == LMF_ENGINE_TOKEN) {
        r->toks[r->n] = ev->token, r->lps[r->n] = ev->logprob;
        r->n++;
    } else {
        r->done = 1, r->error = ev->kind == LMF_ENGINE_ERROR, r->cached = ev->cached_tokens;
        if (r->error) print_message("engine error: %s\n", ev->message);
        pthread_cond_broadcast(&cv);
    }
    pthread_mutex_unlock(&mu);
    return 0;
}

#define NREQ 5
/* Prompts: a long one, itself again (the prefix cache to its last block), one sharing its first 60 tokens, and two
 * more; replies long enough to leave the window many times over. */
static void run_engine(const lmf_weights *w, int window_full, result *r, lmf_engine_stats *st) {
    lmf_engine_config cfg = lmf_engine_defaults();
    cfg.parallel = 2, cfg.chunk = 16, cfg.block_size = 4, cfg.kv_tokens = 2 * 256, cfg.kv_window_full = window_full;
    lmf_engine *e;
    if (lmf_engine_create(w, NULL, &cfg, &e) != LMF_OK) fail_msg("%s", lmf_last_error());
    int V = lmf_weights_config(w)->vocab_size;
    int32_t p[NREQ][120];
    int len[NREQ] = {100, 100, 90, 37, 120};
    for (int k = 0; k < NREQ; k++) fill(p[k], len[k], k == 1 ? 0 : k, 0, V > 256 ? 256 : V);
    memcpy(p[2], p[0], 60 * sizeof(int32_t));
    for (int k = 0; k < NREQ; k++) {
        lmf_engine_request q = {.prompt = p[k], .n_prompt = len[k], .max_tokens = 70 + 10 * k, .logprobs = 1,
                                .cb = on_event, .ctx = &r[k]};
        q.sampling = lmf_sampler_defaults();
        q.sampling.temperature = 0;
        uint64_t id;
        if (lmf_engine_submit(e, &q, &id) != LMF_OK) fail_msg("%s", lmf_last_error());
        if (k < 2) { /* the second request finds the first's prompt cached */
            pthread_mutex_lock(&mu);
            while (!r[k].done) pthread_cond_wait(&cv, &mu);
            pthread_mutex_unlock(&mu);
        }
    }
    pthread_mutex_lock(&mu);
    for (int k = 0; k < NREQ; k++)
        while (!r[k].done) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 1000; i++) {
        lmf_engine_get_stats(e, st);
        if (!st->running && !st->waiting) break;
        usleep(1000);
    }
    lmf_engine_free(e);
}

static void test_engine(void **state) {
    (void)state;
    lmf_weights *tw;
    lmf_model *m = lend_tokenizer(256, &tw);
    const lmf_weights *w = lmf_model_weights(m);
    result a[NREQ] = {0}, b[NREQ] = {0};
    lmf_engine_stats sa, sb;
    run_engine(w, 0, a, &sa);
    run_engine(w, 1, b, &sb);
    assert_int_equal(sa.kv_window, W);
    assert_int_equal(sb.kv_window, 0);
    int peak = (W - 1 + 16 + 4 - 1) / 4 + 2;
    assert_int_equal(sa.kv_window_blocks, 2 * peak);
    /* 128 blocks of 4 positions: 1 layer of 4 at every position, 3 in the windows' blocks */
    assert_true(sa.kv_bytes == sb.kv_bytes / (4 * 128) * (128 + 3 * sa.kv_window_blocks));
    for (int k = 0; k < NREQ; k++) {
        assert_false(a[k].error || b[k].error);
        assert_int_equal(a[k].n, 70 + 10 * k);
        assert_int_equal(a[k].n, b[k].n);
        for (int i = 0; i < a[k].n; i++)
            if (a[k].toks[i] != b[k].toks[i] || memcmp(&a[k].lps[i], &b[k].lps[i], sizeof(float)))
                fail_msg("request %d, token %d: %d (%.9g) with windowed blocks, %d (%.9g) without", k, i,
                         a[k].toks[i], a[k].lps[i], b[k].toks[i], b[k].lps[i]);
    }
    assert_int_equal(a[1].cached, 96); /* the whole prompt but its last block */
    assert_int_equal(b[1].cached, 96);
    /* the shared part entered the cache chunk by chunk with its windowed blocks, but the pool's room for windows
     * (2 sequences') left only some of them there: a part of it is reused */
    assert_true(a[2].cached > 0 && a[2].cached < 60);
    assert_int_equal(b[2].cached, 60);
    assert_int_equal(sa.kv_window_blocks_used >= 1, 1); /* the cached prompts' last windows */
    unlend(m, tw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_logits),
        cmocka_unit_test(test_every_layer_windowed),
        cmocka_unit_test(test_adopt_and_exhaust),
        cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_prefix_cache_index),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
