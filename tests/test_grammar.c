/* test_grammar.c — constrained decoding: the JSON automaton against hand-written accepted and refused texts, the
 * schema subset (and the refusals that name the keyword), tool calls, and the vocabulary mask against its reference
 * (every token fed alone, lmf_grammar_allows) on the real GPT-2 vocabulary, along random walks through the grammar
 * whose every finished text cJSON parses and the schema's rules hold for. */
#include "test_util.h"

#include "lmforge.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static lmf_grammar *json(const char *schema) {
    lmf_grammar *g = NULL;
    lmf_status st = lmf_grammar_json(schema, &g);
    if (st != LMF_OK) fail_msg("%s", lmf_last_error());
    return g;
}

/* 1 when the whole text is accepted and complete, 0 when refused somewhere, -1 when accepted but incomplete. */
static int run(const lmf_grammar *g, const char *text) {
    lmf_grammar_state *s = lmf_grammar_state_create(g);
    int ok = 1;
    for (const char *p = text; *p && ok; p++) ok = lmf_grammar_feed(s, p, 1);
    int r = ok ? (lmf_grammar_done(s) ? 1 : -1) : 0;
    lmf_grammar_state_free(s);
    return r;
}

static void test_json_mode(void **state) {
    (void)state;
    lmf_grammar *g = json(NULL);
    const char *good[] = {"{}", "{ }", "{\"a\": 1}", "{\"a\":[1, -2.5e+3, 0, true, false, null, \"x\\\"y\\u00e9\"]}",
                          "{\n  \"k\": {\"n\": {}},\n  \"s\": \"h\xc3\xa9\"\n}", "{\"a\":-0.0E-1}"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) assert_int_equal(run(g, good[i]), 1);
    const char *bad[] = {"[]", "1", "{\"a\" 1}", "{\"a\":01}", "{\"a\":1,}", "{'a':1}", "{\"a\":tru}", "{\"a\":.5}",
                         "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{} {}", "{\"a\":\"\xff\"}", "{\"a\":1e}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = run(g, bad[i]);
        if (r == 1) fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(run(g, " {}"), 0); /* no whitespace before the root value, nor after it */
    assert_int_equal(run(g, "{} "), 0);
    assert_int_equal(run(g, "{\"a\": [1, 2"), -1);
    assert_int_equal(run(g, "{\"a\":1e"), -1);
    /* whitespace runs are bounded */
    char pad[200] = "{";
    memset(pad + 1, ' ', 64);
    assert_int_equal(run(g, pad), -1);
    pad[65] = ' ';
    assert_int_equal(run(g, pad), 0);
    lmf_grammar_free(g);
}

static const char *PERSON =
    "{\"type\": \"object\", \"title\": \"Person\", \"properties\": {"
    "\"name\": {\"type\": \"string\"}, \"age\": {\"type\": \"integer\"},"
    "\"color\": {\"enum\": [\"red\", \"green\", 7]},"
    "\"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"minItems\": 1, \"maxItems\": 2},"
    "\"boss\": {\"anyOf\": [{\"$ref\": \"#/$defs/P\"}, {\"type\": \"null\"}]}},"
    "\"required\": [\"name\", \"age\"], \"additionalProperties\": false,"
    "\"$defs\": {\"P\": {\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"},"
    "\"boss\": {\"anyOf\": [{\"$ref\": \"#/$defs/P\"}, {\"type\": \"null\"}]}}, \"required\": [\"name\"]}}}";

static void test_schema(void **state) {
    (void)state;
    lmf_grammar *g = json(PERSON);
    const char *good[] = {"{\"name\": \"Ann\", \"age\": 41}", "{\"age\": -3, \"name\": \"\"}",
                          "{\"name\":\"a\",\"age\":1,\"color\":\"green\",\"tags\":[\"x\",\"y\"]}",
                          "{\"name\":\"a\",\"age\":1,\"color\":7}",
                          "{\"name\":\"a\",\"age\":1,\"boss\":{\"name\":\"b\",\"boss\":{\"name\":\"c\",\"boss\":null}}}"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (run(g, good[i]) != 1) fail_msg("refused %s", good[i]);
    const char *bad[] = {"{\"name\": \"Ann\"}", "{\"age\": 1.5, \"name\": \"a\"}", "{\"name\":\"a\",\"age\":1,\"x\":1}",
                         "{\"name\":\"a\",\"name\":\"b\",\"age\":1}", "{\"name\":\"a\",\"age\":1,\"color\":\"blue\"}",
                         "{\"name\":\"a\",\"age\":1,\"color\":77}", "{\"name\":\"a\",\"age\":1,\"tags\":[]}",
                         "{\"name\":\"a\",\"age\":1,\"tags\":[\"1\",\"2\",\"3\"]}", "{\"name\":1,\"age\":1}",
                         "{\"name\":\"a\",\"age\":1,\"boss\":{\"age\":1}}", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (run(g, bad[i]) == 1) fail_msg("accepted %s", bad[i]);
    lmf_grammar_free(g);

    /* refusals name what they cannot do */
    const struct { const char *schema, *msg; } no[] = {
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":3}}}",
         "schema.properties.a: keyword \"minimum\" is not supported"},
        {"{\"type\":\"string\"}", "the root must allow an object or an array"},
        {"{\"anyOf\":[{\"type\":\"object\"},{\"type\":\"object\",\"properties\":{}}]}", "must differ in JSON type"},
        {"{\"$ref\":\"#/$defs/nope\"}", "names no schema"},
        {"{\"type\":\"obj\"}", "schema.type: expected a JSON Schema type name"},
        {"{\"type\":\"object\",\"required\":[\"z\"],\"properties\":{\"a\":true}}", "\"z\" is not one of the properties"},
        {"{\"type\":\"object\",\"properties\":{\"a\":true},\"additionalProperties\":true}", "only false"},
        {"not json", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        lmf_grammar *x = NULL;
        assert_int_equal(lmf_grammar_json(no[i].schema, &x), LMF_ERR_ARG);
        if (!strstr(lmf_last_error(), no[i].msg)) fail_msg("%s: got \"%s\"", no[i].schema, lmf_last_error());
        assert_null(x);
    }
}

static void test_tool_calls(void **state) {
    (void)state;
    const char *names[] = {"get_weather", "get_time"};
    const char *params[] = {"{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}",
                            NULL};
    lmf_grammar *g;
    assert_int_equal(lmf_grammar_tool_calls(2, names, params, 0, &g), LMF_OK);
    assert_int_equal(run(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"), 1);
    assert_int_equal(run(g, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": [1]}}\n</tool_call>"), 1);
    assert_int_equal(run(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"), 0);
    assert_int_equal(run(g, "<tool_call>\n{\"name\": \"get_date\", \"arguments\": {}}\n</tool_call>"), 0);
    assert_int_equal(run(g, "Sure! <tool_call>"), 0);
    assert_int_equal(run(g, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"), 0);
    lmf_grammar_free(g);
    assert_int_equal(lmf_grammar_tool_calls(2, names, params, 1, &g), LMF_OK);
    assert_int_equal(run(g, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
                            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"X\"}}\n</tool_call>"), 1);
    lmf_grammar_free(g);
    const char *bad[] = {"{\"type\":\"string\"}"};
    assert_int_equal(lmf_grammar_tool_calls(1, names, bad, 0, &g), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "get_weather.parameters"));
}

/* The mask equals feeding each token alone, along random walks that pick allowed tokens until the grammar is
 * complete; the finished texts parse. */
static void walk(const lmf_grammar *g, const lmf_grammar_vocab *v, const lmf_tokenizer *tok, int V, uint64_t seed,
                 int check_every, char *text, size_t cap) {
    const int32_t stop = 50256;
    lmf_grammar_state *s = lmf_grammar_state_create(g);
    float *lg = malloc(sizeof(float) * (size_t)V);
    size_t n = 0;
    uint64_t r = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int step = 0; step < 400; step++) {
        for (int i = 0; i < V; i++) lg[i] = 0;
        int allowed = lmf_grammar_mask(s, v, &stop, 1, lg);
        assert_true(allowed > 0);
        if (step % check_every == 0)
            for (int32_t id = 0; id < V; id++)
                if ((lg[id] == 0) != lmf_grammar_allows(s, v, id, &stop, 1))
                    fail_msg("token %d: mask %g, alone %d (step %d, text %.*s)", id, lg[id],
                             lmf_grammar_allows(s, v, id, &stop, 1), step, (int)n, text);
        /* prefer short tokens and, after a while, closing: walks end */
        int pick = -1, k = 0;
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int target = (int)((r >> 33) % (uint64_t)allowed);
        if (step > 40 && lg[stop] == 0) pick = stop;
        for (int32_t id = 0; id < V && pick < 0; id++) {
            if (lg[id] != 0) continue;
            size_t l;
            lmf_tokenizer_token_bytes(tok, id, &l);
            if (step > 40 && l == 1) { /* close what is open */
                const char *b = lmf_tokenizer_token_bytes(tok, id, &l);
                if (strchr("}]\"", b[0])) pick = id;
            }
            if (k++ == target && step <= 40) pick = id;
        }
        if (pick < 0)
            for (int32_t id = 0; id < V && pick < 0; id++)
                if (lg[id] == 0) pick = id;
        if (pick == stop) break;
        size_t l;
        const char *b = lmf_tokenizer_token_bytes(tok, pick, &l);
        assert_true(n + l < cap);
        memcpy(text + n, b, l), n += l;
        assert_true(lmf_grammar_accept(s, v, pick));
    }
    text[n] = 0;
    if (!lmf_grammar_done(s)) fail_msg("not complete after 400 tokens: %s", text);
    free(lg);
    lmf_grammar_state_free(s);
}

static void test_mask_gpt2(void **state) {
    (void)state;
    lmf_tokenizer *tok;
    if (lmf_tokenizer_load(LMF_SOURCE_DIR "/tests/data/gpt2", &tok) != LMF_OK) fail_msg("%s", lmf_last_error());
    int V = lmf_tokenizer_vocab_size(tok);
    lmf_grammar_vocab *v;
    assert_int_equal(lmf_grammar_vocab_create(tok, &v), LMF_OK);
    static char text[1 << 16];
    lmf_grammar *any = json(NULL), *person = json(PERSON);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        walk(any, v, tok, V, seed, 7, text, sizeof text);
        cJSON *j = cJSON_Parse(text);
        if (!cJSON_IsObject(j)) fail_msg("not an object: %s", text);
        cJSON_Delete(j);
        walk(person, v, tok, V, seed, 11, text, sizeof text);
        j = cJSON_Parse(text);
        if (!cJSON_IsObject(j)) fail_msg("not an object: %s", text);
        assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "name")));
        const cJSON *age = cJSON_GetObjectItemCaseSensitive(j, "age");
        assert_true(cJSON_IsNumber(age) && age->valuedouble == floor(age->valuedouble));
        for (const cJSON *k = j->child; k; k = k->next)
            if (strcmp(k->string, "name") && strcmp(k->string, "age") && strcmp(k->string, "color") &&
                strcmp(k->string, "tags") && strcmp(k->string, "boss"))
                fail_msg("key %s in %s", k->string, text);
        cJSON_Delete(j);
    }
    /* control tokens never match bytes; the stop token only when complete */
    lmf_grammar_state *s = lmf_grammar_state_create(any);
    int32_t stop = 50256;
    assert_false(lmf_grammar_allows(s, v, stop, &stop, 1));
    assert_true(lmf_grammar_feed(s, "{}", 2));
    assert_true(lmf_grammar_allows(s, v, stop, &stop, 1));
    float *lg = calloc((size_t)V, sizeof(float));
    assert_int_equal(lmf_grammar_mask(s, v, &stop, 1, lg), 1);
    assert_true(lg[stop] == 0 && isinf(lg[0]));
    free(lg);
    lmf_grammar_state_free(s);
    lmf_grammar_free(any);
    lmf_grammar_free(person);
    lmf_grammar_vocab_free(v);
    lmf_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_tool_calls),
        cmocka_unit_test(test_mask_gpt2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
