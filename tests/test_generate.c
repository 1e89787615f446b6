/* test_generate.c — lmf_generate on the tiny GGUF fixtures (tiny_llama.gguf, tiny_gpt2.gguf: V = 96, no tokenizer
 * of their own, so each gets one that decodes id i to the byte 0x20 + i, printable ASCII):
 *  - greedy generation equals a hand-rolled loop of lmf_session_eval + argmax, ids and text;
 *  - a stop string taken from the greedy text: the text is cut before its first occurrence, no streamed piece
 *    contains any of it, and the streamed pieces concatenated equal *reply (in every case below);
 *  - on_text returning non-zero stops after that piece; n_predict; a full context; n_new == 0 (chat's prefix
 *    reuse: the session already holds the whole history) and refusals of a history the session does not hold;
 *  - the stop-string holdback alone: a stop split across pieces, a prefix that turns out not to be one. */
#include "test_util.h"

#include <math.h>

#include "lmforge.h"
#include "model/generate.h"
#include "tokenizer/bytelevel.h"

#include "io/gguf.h"

#include <string.h>
#include <unistd.h>

#define FIX LMF_SOURCE_DIR "/tests/reference/fixtures/"

static const int32_t PROMPT[] = {94, 93, 94, 36, 16, 88, 10, 25};
#define NP ((int)(sizeof PROMPT / sizeof *PROMPT))

/* ids 0..95 are the bytes 0x20..0x7F, written in GPT-2's byte-level alphabet (space 'Ġ', DEL 'ġ'); the
 * tokenizer needs all 256 bytes, so ids 96..255 hold the others (the models never produce them) */
static lmf_tokenizer *ascii_tokenizer(void) {
    static char text[256][4];
    const char *tokens[256];
    for (int i = 0; i < 256; i++) {
        int b = i < 96 ? 0x20 + i : i < 128 ? i - 96 : i;
        uint32_t cp = lmf_bytelevel_cp((uint8_t)b);
        if (cp < 0x80) text[i][0] = (char)cp, text[i][1] = 0;
        else text[i][0] = (char)(0xC0 | cp >> 6), text[i][1] = (char)(0x80 | (cp & 0x3F)), text[i][2] = 0;
        tokens[i] = text[i];
    }
    lmf_tokenizer_def def = {.n_vocab = 256, .tokens = tokens};
    lmf_tokenizer *tok;
    if (lmf_tokenizer_build(&def, "test", &tok) != LMF_OK) fail_msg("%s", lmf_last_error());
    return tok;
}

typedef struct {
    lmf_text all;  /* the pieces, concatenated */
    int calls, stop_after;
} collector;

static int collect(void *ctx, const char *text, size_t len) {
    collector *c = ctx;
    assert_true(len > 0);
    char *p = realloc(c->all.data, c->all.len + len + 1);
    assert_non_null(p);
    memcpy(p + c->all.len, text, len);
    c->all.data = p, c->all.len += len, p[c->all.len] = 0;
    c->calls++;
    return c->stop_after && c->calls >= c->stop_after;
}

typedef struct {
    lmf_weights *w;
    lmf_tokenizer *tok;
    lmf_session *s;
    lmf_sampler *smp;
} fixture;

static void open_fixture(fixture *f, const char *path, int n_ctx) {
    if (lmf_weights_load(path, &f->w) != LMF_OK) fail_msg("%s", lmf_last_error());
    f->tok = ascii_tokenizer();
    assert_int_equal(lmf_session_create(f->w, n_ctx, &f->s), LMF_OK);
    lmf_sampler_params sp = lmf_sampler_defaults();
    sp.temperature = 0;
    assert_int_equal(lmf_sampler_create(&sp, 96, &f->smp), LMF_OK);
}

static void close_fixture(fixture *f) {
    lmf_sampler_free(f->smp);
    lmf_session_free(f->s);
    lmf_tokenizer_free(f->tok);
    lmf_weights_free(f->w);
}

static void prompt(lmf_ids *hist) {
    hist->len = 0;
    for (int i = 0; i < NP; i++) {
        if (hist->len == hist->cap) hist->cap = hist->cap ? 2 * hist->cap : 64,
                                    hist->data = realloc(hist->data, hist->cap * sizeof *hist->data);
        hist->data[hist->len++] = PROMPT[i];
    }
}

/* Greedy by hand: prefill the prompt, then argmax (ties to the lowest id) and evaluate, n tokens or a stop. */
static int greedy_by_hand(fixture *f, int n, int32_t *out) {
    int32_t stops[4];
    int n_stops = lmf_weights_stop_tokens(f->w, stops), k = 0;
    const float *lg;
    lmf_session_rewind(f->s, 0);
    assert_int_equal(lmf_session_eval(f->s, PROMPT, NP, 0, &lg), LMF_OK);
    for (; k < n; k++) {
        int32_t best = 0;
        for (int v = 1; v < 96; v++) best = lg[v] > lg[best] ? v : best;
        for (int j = 0; j < n_stops; j++)
            if (best == stops[j]) return k;
        out[k] = best;
        if (k + 1 < n) assert_int_equal(lmf_session_eval(f->s, &best, 1, 0, &lg), LMF_OK);
    }
    return k;
}

/* on_token's view: every token with its logprobs, stopping after stop_after tokens (0: never). */
typedef struct {
    int n, stop_after;
    int32_t ids[64];
    float lp[64];
    lmf_token_logprob top[64][3];
    int n_top;
} token_log;

static int log_token(void *ctx, const lmf_token_info *t) {
    token_log *l = ctx;
    l->ids[l->n] = t->id, l->lp[l->n] = t->logprob, l->n_top = t->n_top;
    memcpy(l->top[l->n], t->top, sizeof(lmf_token_logprob) * (size_t)t->n_top);
    l->n++;
    return l->stop_after && l->n == l->stop_after;
}

static void check_model(const char *path) {
    fixture f = {0};
    open_fixture(&f, path, 64);
    enum { N = 20 };
    int32_t ref[N];
    int nref = greedy_by_hand(&f, N, ref);
    assert_int_equal(nref, N); /* the fixtures name no stop token */
    char ref_text[N + 1];
    for (int i = 0; i < N; i++) ref_text[i] = (char)(0x20 + ref[i]);
    ref_text[N] = 0;
    printf("%s greedy: \"%s\"\n", path, ref_text);

    /* greedy equals the hand-rolled loop; the whole text is streamed */
    lmf_ids hist = {0};
    lmf_text reply = {0};
    collector c = {0};
    lmf_generate_params p = {.n_predict = N, .on_text = collect, .ctx = &c, .tok = f.tok};
    lmf_generate_result r;
    prompt(&hist);
    lmf_session_rewind(f.s, 0);
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, hist.len, &p, &reply, &r), LMF_OK);
    assert_int_equal(r.prompt_tokens, NP);
    assert_int_equal(r.gen_tokens, N);
    assert_int_equal(r.stop_reason, LMF_STOP_LENGTH);
    assert_int_equal(hist.len, NP + N);
    assert_memory_equal(hist.data + NP, ref, sizeof ref);
    assert_string_equal(reply.data, ref_text);
    assert_string_equal(c.all.data, ref_text);
    assert_int_equal(lmf_session_pos(f.s), NP + N - 1); /* the last sampled token is not evaluated */

    /* n_new == 0: the session holds the whole history (the last token is evaluated again): the continuation of
     * prompt + 10 generated ids is the rest of the greedy text */
    hist.len = NP + 10;
    lmf_session_rewind(f.s, NP + 10);
    reply.len = 0;
    p.on_text = NULL, p.n_predict = N - 10;
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, 0, &p, &reply, &r), LMF_OK);
    assert_int_equal(r.prompt_tokens, 1);
    assert_string_equal(reply.data, ref_text + 10);
    /* a history the session does not hold is refused */
    lmf_session_rewind(f.s, 3);
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, 2, &p, &reply, &r), LMF_ERR_ARG);
    lmf_session_rewind(f.s, 0);
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, 0, &p, &reply, &r), LMF_ERR_ARG);

    /* a stop string from the middle of the greedy text: cut before its first occurrence, never streamed */
    char stop[4];
    memcpy(stop, ref_text + 9, 3), stop[3] = 0;
    size_t at = (size_t)(strstr(ref_text, stop) - ref_text);
    const char *stops[] = {"\x01never", stop};
    free(c.all.data);
    c = (collector){0};
    reply.len = 0;
    p = (lmf_generate_params){.n_predict = N, .stops = stops, .n_stops = 2, .on_text = collect, .ctx = &c,
                              .tok = f.tok};
    prompt(&hist);
    lmf_session_rewind(f.s, 0);
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, hist.len, &p, &reply, &r), LMF_OK);
    assert_int_equal(r.stop_reason, LMF_STOP_STRING);
    assert_int_equal(r.gen_tokens, (int)at + 3); /* one token per character: the stop's last one included */
    assert_int_equal(reply.len, at);
    assert_memory_equal(reply.data, ref_text, at);
    assert_int_equal(c.all.len, at);
    if (at) assert_memory_equal(c.all.data, ref_text, at);
    assert_int_equal(hist.len, NP + at + 3);

    /* the callback stops it: one piece (one character per token, nothing held back), and that piece is the reply */
    free(c.all.data);
    c = (collector){.stop_after = 1};
    reply.len = 0;
    p = (lmf_generate_params){.n_predict = N, .on_text = collect, .ctx = &c, .tok = f.tok};
    prompt(&hist);
    lmf_session_rewind(f.s, 0);
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, hist.len, &p, &reply, &r), LMF_OK);
    assert_int_equal(r.stop_reason, LMF_STOP_CALLBACK);
    assert_int_equal(c.calls, 1);
    assert_int_equal(r.gen_tokens, 1);
    assert_int_equal(reply.len, 1);
    assert_int_equal(c.all.len, 1);
    assert_int_equal(reply.data[0], ref_text[0]);

    /* n_predict 0 evaluates the prompt only */
    reply.len = 0;
    p = (lmf_generate_params){.n_predict = 0, .tok = f.tok};
    prompt(&hist);
    lmf_session_rewind(f.s, 0);
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, hist.len, &p, &reply, &r), LMF_OK);
    assert_int_equal(r.gen_tokens, 0);
    assert_int_equal(r.stop_reason, LMF_STOP_LENGTH);
    assert_int_equal(reply.len, 0);
    assert_int_equal(lmf_session_pos(f.s), NP);

    /* a stop token given by the caller: the greedy text's 5th id ends it before it is appended */
    reply.len = 0;
    int32_t extra = ref[4];
    int first = 0;
    while (ref[first] != extra) first++;
    p = (lmf_generate_params){.n_predict = N, .stop_ids = &extra, .n_stop_ids = 1, .tok = f.tok};
    prompt(&hist);
    lmf_session_rewind(f.s, 0);
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, hist.len, &p, &reply, &r), LMF_OK);
    assert_int_equal(r.stop_reason, LMF_STOP_TOKEN);
    assert_int_equal(r.gen_tokens, first);
    assert_int_equal(reply.len, (size_t)first);

    /* no tokenizer anywhere: refused */
    p.tok = NULL;
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, hist.len, &p, &reply, &r), LMF_ERR_ARG);

    /* on_token sees each sampled token with its log-probability under the raw logits: greedy takes the most likely,
     * so its logprob is the top alternative's; the alternatives are sorted and are probabilities (sum <= 1) */
    token_log tl = {0};
    lmf_ids h2 = {0};
    prompt(&h2);
    lmf_session_rewind(f.s, 0);
    p = (lmf_generate_params){.n_predict = N, .tok = f.tok, .on_token = log_token, .ctx = &tl, .n_logprobs = 3};
    assert_int_equal(lmf_generate(f.s, f.smp, &h2, h2.len, &p, NULL, &r), LMF_OK);
    assert_int_equal(tl.n, N);
    assert_int_equal(tl.n_top, 3);
    for (int i = 0; i < N; i++) {
        assert_int_equal(tl.ids[i], ref[i]);
        assert_int_equal(tl.top[i][0].id, ref[i]);
        assert_float_equal(tl.lp[i], tl.top[i][0].logprob, 1e-6);
        assert_true(tl.lp[i] <= 0);
        assert_true(tl.top[i][0].logprob >= tl.top[i][1].logprob && tl.top[i][1].logprob >= tl.top[i][2].logprob);
        assert_true(expf(tl.top[i][0].logprob) + expf(tl.top[i][1].logprob) + expf(tl.top[i][2].logprob) <= 1.0001f);
    }
    /* the first token's logprob is the log-softmax of the prompt's last logits, computed here by hand */
    {
        const float *lg;
        lmf_session_rewind(f.s, 0);
        assert_int_equal(lmf_session_eval(f.s, h2.data, NP, 0, &lg), LMF_OK);
        int V = lmf_weights_config(f.w)->vocab_size;
        double mx = lg[0], sum = 0;
        for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
        for (int v = 0; v < V; v++) sum += exp(lg[v] - mx);
        assert_float_equal(tl.lp[0], lg[ref[0]] - mx - log(sum), 1e-4);
    }
    /* a non-zero return stops after that token, whose text is still released */
    tl = (token_log){.stop_after = 3};
    prompt(&h2);
    lmf_session_rewind(f.s, 0);
    lmf_text r3 = {0};
    assert_int_equal(lmf_generate(f.s, f.smp, &h2, h2.len, &p, &r3, &r), LMF_OK);
    assert_int_equal(r.stop_reason, LMF_STOP_CALLBACK);
    assert_int_equal(r.gen_tokens, 3);
    assert_int_equal(r3.len, 3);
    assert_memory_equal(r3.data, ref_text, 3);
    p.n_logprobs = LMF_LOGPROBS_MAX + 1;
    assert_int_equal(lmf_generate(f.s, f.smp, &h2, 0, &p, NULL, &r), LMF_ERR_ARG);
    free(r3.data);
    free(h2.data);
    assert_string_equal(lmf_stop_reason_name(LMF_STOP_CONTEXT), "context full");

    /* a full context ends the reply: a 12-token session, 8 prompt tokens, then 5 sampled (the fifth is sampled
     * from the logits of position 11 and cannot be evaluated) */
    lmf_session *small;
    assert_int_equal(lmf_session_create(f.w, 12, &small), LMF_OK);
    free(c.all.data);
    c = (collector){0};
    reply.len = 0;
    p = (lmf_generate_params){.n_predict = 100, .on_text = collect, .ctx = &c, .tok = f.tok};
    prompt(&hist);
    assert_int_equal(lmf_generate(small, f.smp, &hist, hist.len, &p, &reply, &r), LMF_OK);
    assert_int_equal(r.stop_reason, LMF_STOP_CONTEXT);
    assert_int_equal(r.gen_tokens, 5);
    assert_int_equal(lmf_session_pos(small), 12);
    assert_memory_equal(reply.data, ref_text, 5);
    assert_int_equal(c.all.len, 5);
    /* the prompt alone overflowing the context is an error */
    lmf_session_rewind(small, 0);
    assert_int_equal(hist.len, 13);
    assert_int_equal(lmf_generate(small, f.smp, &hist, hist.len, &p, &reply, &r), LMF_ERR_ARG);
    lmf_session_free(small);

    free(c.all.data);
    free(reply.data);
    free(hist.data);
    close_fixture(&f);
}

static void test_generate_llama(void **state) { check_model(FIX "tiny_llama.gguf"); }
static void test_generate_gpt2(void **state) { check_model(FIX "tiny_gpt2.gguf"); }

/* NaN weights (issue 18): generation stops with an error that says the logits are not finite, instead of sampling
 * from NaN and returning an empty reply with success. In a copy of the fixture, the scale of the output matrix's
 * first Q4_1 block becomes an f16 NaN: logit 0 is NaN. (A NaN in an f32 norm can vanish into the int16
 * activation quantization as finite garbage, which no check on the logits can see.) */
static void test_nonfinite_logits(void **state) {
    (void)state;
    char path[] = "/tmp/lmf_test_generate_nan_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n;
    char *bytes = slurp(FIX "tiny_llama.gguf", &n);
    lmf_gguf *g;
    assert_int_equal(lmf_gguf_open(FIX "tiny_llama.gguf", &g), LMF_OK);
    int found = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const lmf_gguf_tensor *t = &g->tensors[i];
        if (strcmp(t->name, "output.weight")) continue;
        assert_int_equal(t->type, LMF_GGML_Q4_1);
        uint16_t nan16 = 0x7E00;
        memcpy(bytes + g->data_offset + t->offset, &nan16, 2);
        found = 1;
    }
    lmf_gguf_close(g);
    assert_true(found);
    assert_int_equal(write(fd, bytes, n), (ssize_t)n);
    close(fd);
    free(bytes);
    fixture f = {0};
    open_fixture(&f, path, 64);
    lmf_ids hist = {0};
    prompt(&hist);
    lmf_text reply = {0};
    lmf_generate_params p = {.n_predict = 8, .tok = f.tok};
    lmf_generate_result r;
    assert_int_equal(lmf_generate(f.s, f.smp, &hist, hist.len, &p, &reply, &r), LMF_ERR_FORMAT);
    if (!strstr(lmf_last_error(), "logits are not finite")) fail_msg("%s", lmf_last_error());
    assert_int_equal(r.gen_tokens, 0);
    free(hist.data), free(reply.data);
    close_fixture(&f);
    unlink(path);
}

static void test_holdback(void **state) {
    const char *stops[] = {"abc", "", "cd"};
    lmf_holdback h = {.stops = stops, .n_stops = 3};
    size_t safe;
    assert_int_equal(lmf_holdback_push(&h, "xa", 2, &safe), 0);
    assert_int_equal(safe, 1); /* "a" may start "abc" */
    h.released = safe;
    assert_int_equal(lmf_holdback_push(&h, "b", 1, &safe), 0);
    assert_int_equal(safe, 1);
    assert_int_equal(lmf_holdback_push(&h, "x", 1, &safe), 0);
    assert_int_equal(safe, 4); /* "abx": not a stop after all */
    h.released = safe;
    assert_int_equal(lmf_holdback_push(&h, "yab", 3, &safe), 0);
    assert_int_equal(safe, 5);
    h.released = safe;
    /* "abcd": both stops complete in one piece; the earliest wins */
    assert_int_equal(lmf_holdback_push(&h, "cd", 2, &safe), 1);
    assert_int_equal(h.all.len, 5);
    assert_string_equal(h.all.data, "xabxy");
    assert_int_equal(safe, 5);
    /* later pushes are ignored */
    assert_int_equal(lmf_holdback_push(&h, "zz", 2, &safe), 1);
    assert_string_equal(h.all.data, "xabxy");
    lmf_holdback_free(&h);
    /* NUL bytes in the text do not hide a stop string */
    lmf_holdback z = {.stops = stops, .n_stops = 1};
    assert_int_equal(lmf_holdback_push(&z, "q\0abc", 5, &safe), 1);
    assert_int_equal(z.all.len, 2);
    lmf_holdback_free(&z);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_holdback),
        cmocka_unit_test(test_nonfinite_logits),
        cmocka_unit_test(test_generate_llama),
        cmocka_unit_test(test_generate_gpt2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
