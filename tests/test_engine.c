/* test_engine.c — the serving engine (src/serve/engine.h): continuous batching over the tiny HF gpt2 (always) and
 * SmolLM2-135M Q8_0 / Q4_1 (when fetched):
 *  - batch invariance: a greedy request alone and the same request among 31 others (greedy and sampled, prompts
 *    short enough for the decode path and long ones read in chunks, some sharing its prefix) give the same tokens
 *    and bit for bit the same logprobs;
 *  - the engine's greedy tokens equal lmf_generate's (the CLI's `generate`) for the same prompt;
 *  - the prefix cache: a repeated prompt reports cached tokens and the same tokens;
 *  - stop strings (text cut before them, never streamed), max_tokens, a full context, stop tokens;
 *  - cancel (no callback afterwards, blocks back), a full queue (LMF_ERR_BUSY), bad requests;
 *  - a pool too small for everyone: sequences are preempted and every request still completes;
 *  - constrained decoding: every reply under a grammar is accepted by it (and complete when it ended on a stop
 *    token), greedy constrained replies are batch invariant, and SmolLM2's reply follows a JSON Schema. */
#include "test_util.h"

#include "lmforge.h"
#include "serve/engine.h"
#include "tokenizer/tokenizer.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define HF_GPT2 LMF_SOURCE_DIR "/tests/reference/fixtures/hf/gpt2"

typedef struct {
    int32_t toks[4096];
    float lps[4096];
    int n, done, error, n_top_seen, cancel_after;
    int hold; /* the callback blocks the engine thread while set (a request kept running on purpose) */
    lmf_stop_reason reason;
    int prompt_tokens, cached_tokens, gen_tokens;
    lmf_text text;
    int pieces_with_stop; /* streamed pieces that contain the stop string (must stay 0) */
    const char *stop;
} result;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static int on_event(void *ctx, const lmf_engine_event *ev) {
    result *r = ctx;
    pthread_mutex_lock(&mu);
    if (ev->len) {
        lmf_text_push(&r->text, ev->text, ev->len);
        if (r->stop && memmem(ev->text, ev->len, r->stop, strlen(r->stop))) r->pieces_with_stop++;
    }
    if (ev->kind == LMF_ENGINE_TOKEN) {
        r->toks[r->n] = ev->token, r->lps[r->n] = ev->logprob;
        r->n++;
        r->n_top_seen = ev->n_top;
    } else {
        r->done = 1, r->error = ev->kind == LMF_ENGINE_ERROR;
        r->reason = ev->reason, r->prompt_tokens = ev->prompt_tokens, r->cached_tokens = ev->cached_tokens;
        r->gen_tokens = ev->gen_tokens;
        if (r->error) print_message("engine error: %s\n", ev->message);
        pthread_cond_broadcast(&cv);
    }
    int stop = r->cancel_after && r->n >= r->cancel_after;
    while (r->hold) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return stop;
}

static void wait_done(result *r, int n) {
    pthread_mutex_lock(&mu);
    for (int i = 0; i < n; i++)
        while (!r[i].done) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

/* The stats once the engine has dropped its ended requests (it does so right after their last event). */
static void settled_stats(lmf_engine *e, lmf_engine_stats *st) {
    for (int i = 0; i < 1000; i++) {
        lmf_engine_get_stats(e, st);
        if (!st->running && !st->waiting) return;
        usleep(1000);
    }
}

static lmf_engine_request greedy(const int32_t *prompt, int n, int max_tokens, result *r) {
    lmf_engine_request q = {.prompt = prompt, .n_prompt = n, .max_tokens = max_tokens, .logprobs = 1,
                            .top_logprobs = 3, .cb = on_event, .ctx = r};
    q.sampling = lmf_sampler_defaults();
    q.sampling.temperature = 0;
    return q;
}

static void submit(lmf_engine *e, const lmf_engine_request *q, uint64_t *id) {
    if (lmf_engine_submit(e, q, id) != LMF_OK) fail_msg("submit: %s", lmf_last_error());
}

/* Deterministic prompt tokens, distinct per seed. */
static void make_prompt(int32_t *p, int n, int seed, int V) {
    for (int i = 0; i < n; i++) p[i] = (int32_t)((i * 37 + seed * 101 + 11) % (V > 256 ? 256 : V) + (V > 512 ? 64 : 0));
}

static void check_invariance(const lmf_weights *w, int plen, int gen, int kv_tokens) {
    int V = lmf_weights_config(w)->vocab_size;
    lmf_engine_config cfg = lmf_engine_defaults();
    cfg.parallel = 32, cfg.kv_tokens = kv_tokens, cfg.chunk = 64;
    int32_t prompt[256], others[31][256];
    make_prompt(prompt, plen, 0, V);
    result alone = {0}, *many = calloc(32, sizeof *many);
    lmf_engine *e;
    assert_int_equal(lmf_engine_create(w, NULL, &cfg, &e), LMF_OK);
    uint64_t id;
    lmf_engine_request q = greedy(prompt, plen, gen, &alone);
    submit(e, &q, &id);
    wait_done(&alone, 1);
    assert_false(alone.error);
    assert_true(alone.n > 0);
    lmf_engine_free(e);

    /* a fresh engine (empty prefix cache); the request goes in 12th, among prompts of 3 to 3 + 2 plen tokens */
    assert_int_equal(lmf_engine_create(w, NULL, &cfg, &e), LMF_OK);
    for (int k = 0, o = 0; k < 32; k++) {
        if (k == 11) {
            q = greedy(prompt, plen, gen, &many[k]);
        } else {
            int n = 3 + (o * 7) % (2 * plen);
            make_prompt(others[o], n, o + 1, V);
            if (o % 4 == 1) memcpy(others[o], prompt, sizeof(int32_t) * (size_t)(n < plen ? n : plen)); /* shared prefix */
            q = greedy(others[o], n, gen / 2 + o % 5, &many[k]);
            if (o % 3 == 0) q.sampling = lmf_sampler_defaults(), q.sampling.seed = (uint64_t)o;
            o++;
        }
        submit(e, &q, &id);
    }
    wait_done(many, 32);
    lmf_engine_stats st;
    lmf_engine_get_stats(e, &st);
    lmf_engine_free(e);
    result *r = &many[11];
    assert_false(r->error);
    assert_int_equal(r->n, alone.n);
    for (int i = 0; i < alone.n; i++) {
        if (r->toks[i] != alone.toks[i] || memcmp(&r->lps[i], &alone.lps[i], sizeof(float)))
            fail_msg("token %d: alone %d (logprob %.9g), among 31 others %d (%.9g)", i, alone.toks[i], alone.lps[i],
                     r->toks[i], r->lps[i]);
    }
    for (int k = 0; k < 32; k++) {
        assert_false(many[k].error);
        free(many[k].text.data);
    }
    assert_true(st.steps > 0);
    free(alone.text.data);
    free(many);
}

/* The engine's greedy continuation is lmf_generate's. */
static void check_vs_generate(const lmf_weights *w, const int32_t *prompt, int n, int gen) {
    lmf_session *s;
    assert_int_equal(lmf_session_create(w, 512, &s), LMF_OK);
    lmf_sampler_params sp = lmf_sampler_defaults();
    sp.temperature = 0;
    lmf_sampler *smp;
    assert_int_equal(lmf_sampler_create(&sp, lmf_weights_config(w)->vocab_size, &smp), LMF_OK);
    lmf_ids hist = {0};
    lmf_ids_push(&hist, prompt, (size_t)n);
    lmf_generate_params gp = {.n_predict = gen};
    lmf_text reply = {0};
    assert_int_equal(lmf_generate(s, smp, &hist, (size_t)n, &gp, &reply, NULL), LMF_OK);

    lmf_engine *e;
    assert_int_equal(lmf_engine_create(w, NULL, NULL, &e), LMF_OK);
    result r = {0};
    lmf_engine_request q = greedy(prompt, n, gen, &r);
    uint64_t id;
    submit(e, &q, &id);
    wait_done(&r, 1);
    lmf_engine_free(e);
    assert_int_equal(r.n, (int)hist.len - n);
    for (int i = 0; i < r.n; i++) assert_int_equal(r.toks[i], hist.data[n + i]);
    assert_int_equal(r.text.len, reply.len);
    assert_memory_equal(r.text.data ? r.text.data : "", reply.data ? reply.data : "", reply.len);
    free(r.text.data);
    free(reply.data);
    free(hist.data);
    lmf_sampler_free(smp);
    lmf_session_free(s);
}

static lmf_weights *load(const char *path) {
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    return w;
}

static void test_invariance_tiny(void **state) {
    (void)state;
    lmf_weights *w = load(HF_GPT2);
    check_invariance(w, 20, 24, 32 * 64); /* 64 positions is the model's context */
    int32_t p[20];
    make_prompt(p, 20, 5, 260);
    check_vs_generate(w, p, 20, 30);
    check_vs_generate(w, p, 5, 30); /* a prompt for the decode path */
    lmf_weights_free(w);
}

static void test_smollm2(void **state) {
    (void)state;
    const char *dir = getenv("LMF_SMOLLM2_GGUF");
    char q8[1024], q4[1024];
    snprintf(q8, sizeof q8, "%s", LMF_BINARY_DIR "/models/SmolLM2-135M-Instruct.Q8_0.gguf");
    snprintf(q4, sizeof q4, "%s", dir ? dir : LMF_BINARY_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (access(q4, R_OK)) skip();
    const char *paths[2] = {q4, q8};
    for (int m = 0; m < 2; m++) {
        if (access(paths[m], R_OK)) continue;
        lmf_weights *w = load(paths[m]);
        check_invariance(w, 60, 16, 32 * 256);
        const lmf_tokenizer *tok = lmf_weights_tokenizer(w);
        lmf_ids ids = {0};
        const char *text = "The King James Bible begins: In the beginning God created";
        lmf_tokenizer_encode(tok, text, strlen(text), 0, &ids);
        check_vs_generate(w, ids.data, (int)ids.len, 24);
        free(ids.data);
        lmf_weights_free(w);
    }
}

static void test_prefix_cache_and_stops(void **state) {
    (void)state;
    lmf_weights *w = load(HF_GPT2);
    lmf_engine *e;
    lmf_engine_config cfg = lmf_engine_defaults();
    cfg.parallel = 4;
    assert_int_equal(lmf_engine_create(w, NULL, &cfg, &e), LMF_OK);
    int32_t p[40];
    make_prompt(p, 40, 9, 260);
    result a = {0}, b = {0};
    uint64_t id;
    lmf_engine_request q = greedy(p, 40, 20, &a);
    submit(e, &q, &id);
    wait_done(&a, 1);
    q = greedy(p, 40, 20, &b);
    submit(e, &q, &id);
    wait_done(&b, 1);
    assert_int_equal(a.cached_tokens, 0);
    assert_int_equal(b.cached_tokens, 32); /* two whole blocks of 16; the last token is always computed */
    assert_int_equal(b.prompt_tokens, 40);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.toks, b.toks, sizeof(int32_t) * (size_t)a.n);
    assert_memory_equal(a.lps, b.lps, sizeof(float) * (size_t)a.n);
    assert_int_equal(a.reason, LMF_STOP_LENGTH);
    assert_int_equal(a.gen_tokens, 20);
    assert_int_equal(a.n_top_seen, 3);

    /* a stop string from the middle of the reply: the text ends before it and no piece carried it */
    assert_true(a.text.len >= 6);
    char stop[4];
    memcpy(stop, a.text.data + a.text.len / 2, 3);
    stop[3] = 0;
    const char *first = strstr(a.text.data, stop);
    result c = {.stop = stop};
    const char *stops[1] = {stop};
    q = greedy(p, 40, 20, &c);
    q.stops = stops, q.n_stops = 1;
    submit(e, &q, &id);
    wait_done(&c, 1);
    assert_int_equal(c.reason, LMF_STOP_STRING);
    assert_int_equal(c.text.len, (size_t)(first - a.text.data));
    assert_memory_equal(c.text.data ? c.text.data : "", a.text.data, c.text.len);
    assert_int_equal(c.pieces_with_stop, 0);

    /* the context (64 positions) ends a reply with no max_tokens */
    result d = {0};
    q = greedy(p, 40, 0, &d);
    submit(e, &q, &id);
    wait_done(&d, 1);
    assert_int_equal(d.reason, LMF_STOP_CONTEXT);
    assert_int_equal(d.gen_tokens, 64 - 40);

    /* a stop token: the first greedy token, named as a stop id */
    result f = {0};
    q = greedy(p, 40, 20, &f);
    q.stop_ids = a.toks, q.n_stop_ids = 1;
    submit(e, &q, &id);
    wait_done(&f, 1);
    assert_int_equal(f.reason, LMF_STOP_TOKEN);
    assert_int_equal(f.gen_tokens, 0);

    lmf_engine_stats st;
    settled_stats(e, &st);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.kv_blocks_used, st.kv_blocks_cached); /* only the cache holds blocks now */
    assert_true(st.kv_blocks_cached >= 2);
    lmf_engine_free(e);
    free(a.text.data), free(b.text.data), free(c.text.data), free(d.text.data), free(f.text.data);
    lmf_weights_free(w);
}

static void test_cancel_busy_refusals(void **state) {
    (void)state;
    lmf_weights *w = load(HF_GPT2);
    lmf_engine *e;
    lmf_engine_config cfg = lmf_engine_defaults();
    cfg.parallel = 1, cfg.max_queue = 1;
    assert_int_equal(lmf_engine_create(w, NULL, &cfg, &e), LMF_OK);
    int32_t p[10];
    make_prompt(p, 10, 3, 260);
    result r[3];
    memset(r, 0, sizeof r);
    uint64_t id[3];
    lmf_engine_request q = greedy(p, 10, 0, &r[0]);
    r[0].hold = 1; /* it runs (its first token's callback waits), so the next one waits and a third finds no room */
    submit(e, &q, &id[0]);
    q.ctx = &r[1];
    submit(e, &q, &id[1]);
    q.ctx = &r[2];
    assert_int_equal(lmf_engine_submit(e, &q, &id[2]), LMF_ERR_BUSY);
    assert_non_null(strstr(lmf_last_error(), "waiting"));
    pthread_mutex_lock(&mu);
    r[0].hold = 0;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    lmf_engine_cancel(e, id[1]); /* waiting */
    lmf_engine_cancel(e, id[0]); /* running */
    pthread_mutex_lock(&mu);
    int n0 = r[0].n, d0 = r[0].done, n1 = r[1].n, d1 = r[1].done;
    pthread_mutex_unlock(&mu);
    usleep(20000);
    pthread_mutex_lock(&mu);
    assert_int_equal(r[0].n, n0); /* nothing after cancel returned */
    assert_int_equal(r[0].done, d0);
    assert_int_equal(r[1].n, n1);
    assert_int_equal(r[1].done, d1);
    pthread_mutex_unlock(&mu);
    lmf_engine_cancel(e, 12345); /* unknown: ignored */

    /* a callback that returns non-zero cancels too */
    result c = {.cancel_after = 3};
    q.ctx = &c;
    uint64_t cid;
    submit(e, &q, &cid);
    for (int i = 0; i < 200; i++) {
        lmf_engine_stats st;
        lmf_engine_get_stats(e, &st);
        if (!st.running && !st.waiting && c.n >= 3) break;
        usleep(5000);
    }
    assert_int_equal(c.n, 3);
    assert_false(c.done);

    /* refusals */
    q.n_prompt = 0;
    assert_int_equal(lmf_engine_submit(e, &q, &cid), LMF_ERR_ARG);
    int32_t bad[2] = {1, 260};
    q.prompt = bad, q.n_prompt = 2;
    assert_int_equal(lmf_engine_submit(e, &q, &cid), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "outside the vocabulary"));
    int32_t longp[64] = {0};
    q.prompt = longp, q.n_prompt = 64;
    assert_int_equal(lmf_engine_submit(e, &q, &cid), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "context"));
    q.prompt = p, q.n_prompt = 10, q.top_logprobs = 21;
    assert_int_equal(lmf_engine_submit(e, &q, &cid), LMF_ERR_ARG);
    lmf_engine_free(e);
    for (int i = 0; i < 3; i++) free(r[i].text.data);
    free(c.text.data);
    lmf_weights_free(w);
}

/* A pool of 12 blocks (192 positions) for 8 sequences of up to 60: some are preempted and re-read later. */
static void test_preemption(void **state) {
    (void)state;
    lmf_weights *w = load(HF_GPT2);
    lmf_engine *e;
    lmf_engine_config cfg = lmf_engine_defaults();
    cfg.parallel = 8, cfg.kv_tokens = 192, cfg.prefix_cache = 0;
    assert_int_equal(lmf_engine_create(w, NULL, &cfg, &e), LMF_OK);
    int32_t p[8][20];
    static result r[8];
    memset(r, 0, sizeof r);
    uint64_t id;
    for (int k = 0; k < 8; k++) {
        make_prompt(p[k], 20, k, 260);
        lmf_engine_request q = greedy(p[k], 20, 40, &r[k]);
        submit(e, &q, &id);
    }
    wait_done(r, 8);
    lmf_engine_stats st;
    settled_stats(e, &st);
    for (int k = 0; k < 8; k++) {
        assert_false(r[k].error);
        assert_int_equal(r[k].gen_tokens, r[k].n);
        assert_true(r[k].reason == LMF_STOP_LENGTH || r[k].reason == LMF_STOP_TOKEN);
        free(r[k].text.data);
    }
    assert_true(st.preempted > 0);
    assert_int_equal(st.kv_blocks_used, 0);
    lmf_engine_free(e);

    /* a prompt that fills the whole pool but one position: admitted, one token, then the context is full */
    cfg.parallel = 1, cfg.kv_tokens = 64;
    assert_int_equal(lmf_engine_create(w, NULL, &cfg, &e), LMF_OK);
    int32_t full[63];
    make_prompt(full, 63, 7, 260);
    result f = {0};
    lmf_engine_request q = greedy(full, 63, 0, &f);
    submit(e, &q, &id);
    wait_done(&f, 1);
    assert_false(f.error);
    assert_int_equal(f.reason, LMF_STOP_CONTEXT);
    assert_int_equal(f.gen_tokens, 1);
    free(f.text.data);
    lmf_engine_free(e);
    lmf_weights_free(w);
}

/* Submits a request under grammar g (a copy the engine takes) and checks its reply against g. */
static lmf_grammar *person_grammar(void) {
    lmf_grammar *g;
    const char *schema = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, \"age\": "
                         "{\"type\": \"integer\"}, \"pets\": {\"type\": \"array\", \"items\": {\"enum\": "
                         "[\"cat\", \"dog\"]}, \"maxItems\": 3}}, \"required\": [\"name\", \"age\"]}";
    if (lmf_grammar_json(schema, &g) != LMF_OK) fail_msg("%s", lmf_last_error());
    return g;
}

static void check_reply(const result *r, int complete) {
    lmf_grammar *g = person_grammar();
    lmf_grammar_state *s = lmf_grammar_state_create(g);
    if (!lmf_grammar_feed(s, r->text.data ? r->text.data : "", r->text.len))
        fail_msg("the reply leaves the grammar: %.*s", (int)r->text.len, r->text.data);
    if (complete && !lmf_grammar_done(s)) fail_msg("ended incomplete: %.*s", (int)r->text.len, r->text.data);
    lmf_grammar_state_free(s);
    lmf_grammar_free(g);
}

static void run_constrained(const lmf_weights *w, const int32_t *prompt, int n, int max_tokens, int complete) {
    lmf_engine *e;
    lmf_engine_config cfg = lmf_engine_defaults();
    cfg.parallel = 8;
    assert_int_equal(lmf_engine_create(w, NULL, &cfg, &e), LMF_OK);
    /* alone, then among others (greedy and sampled, constrained and not) */
    result alone = {0}, r[6];
    memset(r, 0, sizeof r);
    uint64_t id;
    lmf_engine_request q = greedy(prompt, n, max_tokens, &alone);
    q.grammar = person_grammar();
    submit(e, &q, &id);
    wait_done(&alone, 1);
    check_reply(&alone, complete);
    for (int i = 0; i < 6; i++) {
        q = greedy(prompt, n - (i % 3), max_tokens, &r[i]);
        if (i == 0) q.n_prompt = n;
        if (i % 2) q.sampling.temperature = 0.9f, q.sampling.seed = (uint64_t)i;
        if (i < 4) q.grammar = person_grammar();
        submit(e, &q, &id);
    }
    wait_done(r, 6);
    assert_int_equal(r[0].n, alone.n);
    assert_memory_equal(r[0].toks, alone.toks, sizeof(int32_t) * (size_t)alone.n);
    for (int i = 0; i < 4; i++) check_reply(&r[i], complete && r[i].reason == LMF_STOP_TOKEN);
    for (int i = 0; i < 6; i++) free(r[i].text.data);
    free(alone.text.data);
    lmf_engine_free(e);
}

static void test_constrained_tiny(void **state) {
    (void)state;
    lmf_weights *w = load(HF_GPT2); /* random weights: replies are cut by max_tokens, but never leave the grammar */
    int32_t p[12];
    make_prompt(p, 12, 3, 260);
    run_constrained(w, p, 12, 40, 0);
    lmf_weights_free(w);
}

static void test_constrained_smollm2(void **state) {
    (void)state;
    char q8[1024];
    snprintf(q8, sizeof q8, "%s", LMF_BINARY_DIR "/models/SmolLM2-135M-Instruct.Q8_0.gguf");
    if (access(q8, R_OK)) skip();
    lmf_weights *w = load(q8);
    const lmf_tokenizer *tok = lmf_weights_tokenizer(w);
    lmf_ids ids = {0};
    const char *text = "<|im_start|>user\nDescribe Ann, 41, who has a cat, as JSON.<|im_end|>\n<|im_start|>assistant\n";
    lmf_tokenizer_encode(tok, text, strlen(text), LMF_ENCODE_ALLOW_SPECIAL, &ids);
    run_constrained(w, ids.data, (int)ids.len, 120, 1);
    free(ids.data);
    lmf_weights_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invariance_tiny),
        cmocka_unit_test(test_prefix_cache_and_stops),
        cmocka_unit_test(test_cancel_busy_refusals),
        cmocka_unit_test(test_preemption),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_constrained_tiny),
        cmocka_unit_test(test_constrained_smollm2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
