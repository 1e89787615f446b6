/* test_serve_tools.c — tools, tool calls and reasoning in the OpenAI layer of `lmforge serve` (src/serve/openai.c
 * with reply_parse.c), driven without a server over the tiny ChatML tokenizer and real templates:
 *  - tools, tool_choice, parallel_tool_calls and tool-calling history: each malformed field is a 400 naming it;
 *    tools a template cannot show are refused;
 *  - tool_choice "required" / a named function and response_format constrain the reply: the request carries the
 *    grammar (its Hermes <tool_call> text accepted, other text refused), and what cannot be constrained is a 400;
 *  - the prompt of a tool round sent in OpenAI's shape is the token ids of transformers' render of it
 *    (fixtures/chat/chat_fixtures.json, Qwen2.5); tool_choice "none" renders no tools;
 *  - a reply holding Hermes-style calls becomes message.tool_calls (content null, finish_reason "tool_calls"), and
 *    streams as OpenAI streams calls; Qwen3's <think> becomes reasoning_content / delta.reasoning_content. */
#include "test_util.h"
#include "tiny_chat_tokenizer.h"
#include "sse_events.h"

#include "serve/openai.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>

#define FIXTURE LMF_SOURCE_DIR "/tests/reference/fixtures/chat/chat_fixtures.json"
#define TEMPLATES LMF_SOURCE_DIR "/tests/reference/chat_templates/"

static lmf_tokenizer *tok;
static lmf_chat_template chatml, qwen25, qwen3;
static lmf_openai_model m_chatml, m_qwen25, m_qwen3;

static void load_template(const char *file, lmf_chat_template *t) {
    char path[512];
    snprintf(path, sizeof path, TEMPLATES "%s", file);
    char *text = slurp(path, NULL);
    assert_non_null(text);
    assert_int_equal(lmf_chat_template_parse(text, t), LMF_OK);
    assert_non_null(t->jinja);
    free(text);
}

static int setup(void **state) {
    (void)state;
    tok = tiny_chat_tokenizer();
    if (!tok || lmf_chat_template_parse(NULL, &chatml) != LMF_OK) return -1;
    load_template("qwen2.5.jinja", &qwen25);
    load_template("qwen3.jinja", &qwen3);
    lmf_openai_model base = {.id = "tiny", .tok = tok, .bos = -1, .n_ctx = 100000, .reasoning = 1};
    m_chatml = m_qwen25 = m_qwen3 = base;
    m_chatml.tmpl = &chatml, m_qwen25.tmpl = &qwen25, m_qwen3.tmpl = &qwen3;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    lmf_chat_template_free(&chatml);
    lmf_chat_template_free(&qwen25);
    lmf_chat_template_free(&qwen3);
    lmf_tokenizer_free(tok);
    return 0;
}

static void expect_error(const lmf_openai_model *m, const char *body, const char *param, const char *words) {
    lmf_openai_request r;
    lmf_openai_error e;
    int rc = lmf_openai_parse(m, LMF_OPENAI_CHAT, body, strlen(body), &r, &e);
    if (rc != 400) fail_msg("%s: status %d, expected 400 (%s)", body, rc, rc ? e.message : "accepted");
    if (strcmp(e.param, param) || (words && !strstr(e.message, words)))
        fail_msg("%s: param '%s' (%s), expected '%s' (%s)", body, e.param, e.message, param, words ? words : "");
    lmf_openai_request_free(&r);
}

static lmf_openai_request request(const lmf_openai_model *m, const char *body) {
    lmf_openai_request r;
    lmf_openai_error e;
    if (lmf_openai_parse(m, LMF_OPENAI_CHAT, body, strlen(body), &r, &e)) fail_msg("%s: %s", body, e.message);
    return r;
}

#define MSG "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]"
#define TOOL "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}"

static void test_malformed(void **state) {
    (void)state;
    const lmf_openai_model *q = &m_qwen25;
    expect_error(q, "{" MSG ", \"tools\": {}}", "tools", "expected an array");
    expect_error(q, "{" MSG ", \"tools\": [1]}", "tools[0]", NULL);
    expect_error(q, "{" MSG ", \"tools\": [{\"type\": \"code\", \"function\": {\"name\": \"f\"}}]}", "tools[0].type",
                 "function");
    expect_error(q, "{" MSG ", \"tools\": [{\"type\": \"function\"}]}", "tools[0].function", NULL);
    expect_error(q, "{" MSG ", \"tools\": [{\"type\": \"function\", \"function\": {}}]}", "tools[0].function.name",
                 "required");
    expect_error(q, "{" MSG ", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": 3}}]}",
                 "tools[0].function.name", NULL);
    expect_error(q, "{" MSG ", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": "
                 "[]}}]}", "tools[0].function.parameters", "schema");
    expect_error(q, "{" MSG ", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"x\": 1}}]}",
                 "tools[0].function.x", "unknown");
    expect_error(q, "{" MSG ", \"tools\": [" TOOL "], \"tool_choice\": {\"type\": \"function\", \"function\": "
                 "{\"name\": \"g\"}}}", "tool_choice.function.name", "'g' is not one of the tools");
    expect_error(q, "{" MSG ", \"tools\": [" TOOL "], \"tool_choice\": {\"type\": \"function\"}}",
                 "tool_choice.function", NULL);
    expect_error(q, "{" MSG ", \"tools\": [" TOOL "], \"tool_choice\": {\"type\": \"function\", \"function\": "
                 "{\"name\": \"f\", \"x\": 1}}}", "tool_choice.function.x", "unknown");
    expect_error(q, "{" MSG ", \"tool_choice\": \"required\"}", "tool_choice", "needs \"tools\"");
    expect_error(q, "{" MSG ", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": "
                 "{\"type\": \"object\", \"patternProperties\": {}}}}], \"tool_choice\": \"required\"}", "tools",
                 "\"patternProperties\" is not supported");
    expect_error(q, "{" MSG ", \"tools\": [" TOOL "], \"tool_choice\": \"required\", \"response_format\": "
                 "{\"type\": \"json_object\"}}", "response_format", "tool call");
    expect_error(q, "{" MSG ", \"response_format\": {\"type\": \"json_schema\"}}", "response_format.json_schema",
                 "name");
    expect_error(q, "{" MSG ", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"x\", "
                 "\"schema\": {\"type\": \"object\", \"properties\": {\"a\": {\"minLength\": 1}}}}}}",
                 "response_format.json_schema.schema", "schema.properties.a: keyword \"minLength\"");
    expect_error(q, "{" MSG ", \"response_format\": {\"type\": \"xml\"}}", "response_format.type", "json_schema");
    expect_error(q, "{" MSG ", \"response_format\": {\"type\": \"json_object\", \"schema\": {}}}",
                 "response_format.schema", "unknown");
    expect_error(q, "{" MSG ", \"tools\": [" TOOL "], \"tool_choice\": \"sometimes\"}", "tool_choice", "'sometimes'");
    expect_error(q, "{" MSG ", \"tools\": [" TOOL "], \"tool_choice\": 1}", "tool_choice", NULL);
    expect_error(q, "{" MSG ", \"tool_choice\": \"auto\"}", "tool_choice", "needs \"tools\"");
    expect_error(q, "{" MSG ", \"tools\": [" TOOL "], \"parallel_tool_calls\": \"yes\"}", "parallel_tool_calls",
                 NULL);
    /* a template with no place for tools, or none run */
    expect_error(&m_chatml, "{" MSG ", \"tools\": [" TOOL "]}", "tools", "built-in");
    /* tool-calling history */
    expect_error(q, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"refusal\": \"no\"}]}",
                 "messages[0].refusal", "unknown");
    expect_error(q, "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", "
                 "\"arguments\": \"{bad\"}}]}]}", "messages[0].tool_calls[0].function.arguments", "{bad");
    expect_error(q, "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", "
                 "\"arguments\": {}}, \"extra\": 1}]}]}", "messages[0].tool_calls[0].extra", "unknown");
    expect_error(q, "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", "
                 "\"arguments\": {}, \"x\": 1}}]}]}", "messages[0].tool_calls[0].function.x", "unknown");
    expect_error(q, "{\"messages\": [{\"role\": \"assistant\", \"content\": null}]}", "messages[0].content",
                 "required");
    expect_error(q, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": "
                 "{\"url\": \"x\"}}]}]}", "messages[0].content[0].image_url", "unknown");
    expect_error(q, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}",
                 "messages[0].content[0].type", "text parts only");
    expect_error(&m_chatml, "{\"messages\": [{\"role\": \"tool\", \"content\": \"1\"}]}", "messages",
                 "no tool format");
}

/* The fixture's tool round in OpenAI's wire shape (arguments as JSON text) with its tools. */
static char *tool_round_body(const char *fixture_case, const char *extra) {
    char *text = slurp(FIXTURE, NULL);
    cJSON *root = cJSON_Parse(text), *c;
    free(text);
    cJSON *body = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        if (strcmp(cJSON_GetObjectItem(c, "name")->valuestring, fixture_case)) continue;
        cJSON *vars = cJSON_GetObjectItem(c, "vars"), *msg, *call;
        body = cJSON_CreateObject();
        cJSON *msgs = cJSON_Duplicate(cJSON_GetObjectItem(vars, "messages"), 1);
        cJSON_ArrayForEach(msg, msgs) cJSON_ArrayForEach(call, cJSON_GetObjectItem(msg, "tool_calls")) {
            cJSON *fn = cJSON_GetObjectItem(call, "function");
            char *args = cJSON_PrintUnformatted(cJSON_GetObjectItem(fn, "arguments"));
            cJSON_ReplaceItemInObject(fn, "arguments", cJSON_CreateString(args));
            free(args);
        }
        cJSON_AddItemToObject(body, "messages", msgs);
        cJSON_AddItemToObject(body, "tools", cJSON_Duplicate(cJSON_GetObjectItem(vars, "tools"), 1));
        cJSON_AddStringToObject(body, "expected", cJSON_GetObjectItem(c, "expected")->valuestring);
    }
    assert_non_null(body);
    cJSON_Delete(root);
    cJSON *x = extra ? cJSON_Parse(extra) : NULL;
    for (cJSON *k = x ? x->child : NULL; k; k = k->next) cJSON_AddItemToObject(body, k->string, cJSON_Duplicate(k, 1));
    cJSON_Delete(x);
    char *s = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    return s;
}

/* The grammar a request carries: tool_choice "required" (any tool, parallel calls), a named function (that one
 * only), response_format (JSON mode, a schema, "text": none). */
static void test_constrained(void **state) {
    (void)state;
    const char *tools = ", \"tools\": [" TOOL ", {\"type\": \"function\", \"function\": {\"name\": \"g\", "
                        "\"parameters\": {\"type\": \"object\", \"properties\": {\"n\": {\"type\": \"integer\"}}, "
                        "\"required\": [\"n\"]}}}]";
    char body[1024];
    const char *f = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1]}}\n</tool_call>";
    const char *g = "<tool_call>\n{\"name\": \"g\", \"arguments\": {\"n\": 3}}\n</tool_call>";
    struct { const char *choice; int f, g, both; } cases[] = {
        {"\"required\"", 1, 1, 1},
        {"{\"type\": \"function\", \"function\": {\"name\": \"g\"}}", 0, 1, 0},
    };
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body, "{" MSG "%s, \"tool_choice\": %s}", tools, cases[i].choice);
        lmf_openai_request r = request(&m_qwen25, body);
        assert_non_null(r.req.grammar);
        assert_true(r.parse_tools);
        char both[512];
        snprintf(both, sizeof both, "%s\n%s", f, g);
        const char *texts[] = {f, g, both, "Sure: <tool_call>", "<tool_call>\n{\"name\": \"g\", \"arguments\": {}}"};
        int want[] = {cases[i].f, cases[i].g, cases[i].both, 0, 0};
        for (int k = 0; k < 5; k++) {
            lmf_grammar_state *st = lmf_grammar_state_create(r.req.grammar);
            int ok = lmf_grammar_feed(st, texts[k], strlen(texts[k])) && lmf_grammar_done(st);
            if (ok != want[k]) fail_msg("tool_choice %s: %s: %d", cases[i].choice, texts[k], ok);
            lmf_grammar_state_free(st);
        }
        lmf_openai_request_free(&r);
    }
    /* parallel_tool_calls false: one call */
    snprintf(body, sizeof body, "{" MSG "%s, \"tool_choice\": \"required\", \"parallel_tool_calls\": false}", tools);
    lmf_openai_request r = request(&m_qwen25, body);
    lmf_grammar_state *st = lmf_grammar_state_create(r.req.grammar);
    assert_true(lmf_grammar_feed(st, f, strlen(f)) && lmf_grammar_done(st));
    assert_false(lmf_grammar_feed(st, "\n", 1));
    lmf_grammar_state_free(st);
    lmf_openai_request_free(&r);
    /* response_format */
    r = request(&m_qwen25, "{" MSG ", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": "
                           "\"p\", \"strict\": true, \"schema\": {\"type\": \"object\", \"properties\": {\"x\": "
                           "{\"type\": \"boolean\"}}, \"required\": [\"x\"], \"additionalProperties\": false}}}}");
    st = lmf_grammar_state_create(r.req.grammar);
    assert_true(lmf_grammar_feed(st, "{\"x\": true}", 11) && lmf_grammar_done(st));
    lmf_grammar_state_free(st);
    st = lmf_grammar_state_create(r.req.grammar);
    assert_false(lmf_grammar_feed(st, "{\"y\"", 4));
    lmf_grammar_state_free(st);
    lmf_openai_request_free(&r);
    r = request(&m_chatml, "{" MSG ", \"response_format\": {\"type\": \"json_object\"}}");
    assert_non_null(r.req.grammar);
    lmf_openai_request_free(&r);
    r = request(&m_chatml, "{" MSG ", \"response_format\": {\"type\": \"text\"}}");
    assert_null(r.req.grammar);
    lmf_openai_request_free(&r);
    /* a template that renders tools without Hermes blocks cannot be constrained to a call */
    snprintf(body, sizeof body, "{" MSG "%s, \"tool_choice\": \"required\"}", tools);
    lmf_chat_template plain = qwen25;
    plain.hermes_tool_calls = 0;
    lmf_openai_model m = m_qwen25;
    m.tmpl = &plain;
    expect_error(&m, body, "tool_choice", "Hermes");
}

static void test_prompt(void **state) {
    (void)state;
    char *body = tool_round_body("qwen2.5/tool_round/gen=1", NULL);
    /* the fixture's expected text rides along in the body for the test; take it out before parsing */
    cJSON *b = cJSON_Parse(body);
    lmf_ids want = {0};
    const char *expected = cJSON_GetObjectItem(b, "expected")->valuestring;
    assert_int_equal(lmf_chat_encode_text(tok, &qwen25, -1, expected, strlen(expected), &want), LMF_OK);
    cJSON_DeleteItemFromObject(b, "expected");
    char *clean = cJSON_PrintUnformatted(b);
    lmf_openai_request r = request(&m_qwen25, clean);
    assert_true(r.parse_tools && r.parallel_tool_calls);
    assert_false(r.reasoning); /* Qwen2.5 does not think */
    assert_int_equal(r.prompt.len, want.len);
    assert_memory_equal(r.prompt.data, want.data, want.len * sizeof(int32_t));
    lmf_openai_request_free(&r);
    /* tool_choice "none": no tools in the prompt, no parsing */
    cJSON_AddStringToObject(b, "tool_choice", "none");
    cJSON_AddFalseToObject(b, "parallel_tool_calls");
    free(clean);
    clean = cJSON_PrintUnformatted(b);
    r = request(&m_qwen25, clean);
    assert_false(r.parse_tools || r.parallel_tool_calls);
    lmf_text text = {0};
    lmf_tokenizer_decode(tok, r.prompt.data, r.prompt.len, 0, &text);
    assert_null(strstr(text.data, "<tools>"));
    assert_non_null(strstr(text.data, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\""));
    free(text.data);
    lmf_openai_request_free(&r);
    cJSON_Delete(b);
    free(clean);
    free(body);
    free(want.data);
}

static lmf_engine_event text_event(const char *text) {
    return (lmf_engine_event){.kind = LMF_ENGINE_TOKEN, .token = 104, .text = text, .len = strlen(text)};
}

static lmf_engine_event done(lmf_stop_reason reason) {
    return (lmf_engine_event){.kind = LMF_ENGINE_DONE, .text = "", .reason = reason, .prompt_tokens = 5,
                              .gen_tokens = 9};
}

static const char *const CALL_PIECES[] = {"Checking.\n<tool", "_call>\n{\"name\": \"get_", "weather\", \"arguments\": "
                                          "{\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"now\", "
                                          "\"arguments\": {}}</tool_", "call>"};

static void test_tool_call_reply(void **state) {
    (void)state;
    lmf_openai_request q = request(&m_qwen25, "{" MSG ", \"tools\": [" TOOL "]}");
    lmf_openai_reply r;
    lmf_openai_reply_init(&r, &m_qwen25, &q, "t1", 1);
    for (int i = 0; i < 4; i++) {
        lmf_engine_event ev = text_event(CALL_PIECES[i]);
        lmf_openai_reply_event(&r, &ev, NULL);
    }
    lmf_engine_event d = done(LMF_STOP_TOKEN);
    lmf_openai_reply_event(&r, &d, NULL);
    char *json = lmf_openai_reply_json(&r);
    cJSON *j = cJSON_Parse(json), *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c, "finish_reason")->valuestring, "tool_calls");
    cJSON *msg = cJSON_GetObjectItem(c, "message"), *calls = cJSON_GetObjectItem(msg, "tool_calls");
    assert_string_equal(cJSON_GetObjectItem(msg, "content")->valuestring, "Checking.");
    assert_null(cJSON_GetObjectItem(msg, "reasoning_content"));
    assert_int_equal(cJSON_GetArraySize(calls), 2);
    cJSON *c0 = cJSON_GetArrayItem(calls, 0), *f0 = cJSON_GetObjectItem(c0, "function");
    assert_string_equal(cJSON_GetObjectItem(c0, "id")->valuestring, "call_t1_0");
    assert_string_equal(cJSON_GetObjectItem(c0, "type")->valuestring, "function");
    assert_string_equal(cJSON_GetObjectItem(f0, "name")->valuestring, "get_weather");
    assert_string_equal(cJSON_GetObjectItem(f0, "arguments")->valuestring, "{\"city\":\"Paris\"}");
    cJSON *c1 = cJSON_GetArrayItem(calls, 1);
    assert_string_equal(cJSON_GetObjectItem(c1, "id")->valuestring, "call_t1_1");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c1, "function"), "name")->valuestring, "now");
    cJSON_Delete(j);
    free(json);
    lmf_openai_reply_free(&r);

    /* only calls: content is null; cut by max_tokens: finish_reason stays "length" */
    lmf_openai_reply_init(&r, &m_qwen25, &q, "t2", 1);
    lmf_engine_event ev = text_event("<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>");
    lmf_openai_reply_event(&r, &ev, NULL);
    d = done(LMF_STOP_LENGTH);
    lmf_openai_reply_event(&r, &d, NULL);
    json = lmf_openai_reply_json(&r);
    j = cJSON_Parse(json), c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c, "finish_reason")->valuestring, "length");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "message"), "content")));
    cJSON_Delete(j);
    free(json);
    lmf_openai_reply_free(&r);

    /* malformed call text stays content, finish_reason "stop" */
    lmf_openai_reply_init(&r, &m_qwen25, &q, "t3", 1);
    ev = text_event("<tool_call>{\"name\": oops}</tool_call>");
    lmf_openai_reply_event(&r, &ev, NULL);
    d = done(LMF_STOP_TOKEN);
    lmf_openai_reply_event(&r, &d, NULL);
    json = lmf_openai_reply_json(&r);
    j = cJSON_Parse(json), c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c, "finish_reason")->valuestring, "stop");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "message"), "content")->valuestring,
                        "<tool_call>{\"name\": oops}</tool_call>");
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "message"), "tool_calls"));
    cJSON_Delete(j);
    free(json);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);
}

static cJSON *delta_of(cJSON *ev) {
    return cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ev, "choices"), 0), "delta");
}

static void test_tool_call_stream(void **state) {
    (void)state;
    lmf_openai_request q = request(&m_qwen25, "{" MSG ", \"tools\": [" TOOL "], \"stream\": true, \"logprobs\": "
                                              "true}");
    lmf_openai_reply r;
    lmf_openai_reply_init(&r, &m_qwen25, &q, "s1", 1);
    lmf_text sse = {0};
    for (int i = 0; i < 4; i++) {
        lmf_engine_event ev = text_event(CALL_PIECES[i]);
        lmf_openai_reply_event(&r, &ev, &sse);
    }
    lmf_engine_event d = done(LMF_STOP_TOKEN);
    lmf_openai_reply_event(&r, &d, &sse);
    cJSON *ev[32];
    int n = sse_events(sse.data, ev, 32), n_logprobs = 0;
    /* role; "Checking." ; call 0 head, arguments; call 1 head, arguments; a logprobs-only chunk for each token whose
     * text was held back; finish; [DONE] */
    assert_null(ev[n - 1]);
    assert_string_equal(cJSON_GetObjectItem(delta_of(ev[0]), "role")->valuestring, "assistant");
    lmf_text content = {0};
    lmf_text_push(&content, "", 0);
    int heads = 0, args = 0;
    for (int i = 1; i < n - 1; i++) {
        cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(ev[i], "choices"), 0), *dl = delta_of(ev[i]);
        n_logprobs += cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(choice, "logprobs"), "content"));
        cJSON *ct = cJSON_GetObjectItem(dl, "content"), *tc = cJSON_GetObjectItem(dl, "tool_calls");
        if (ct) lmf_text_push(&content, ct->valuestring, strlen(ct->valuestring));
        if (!tc) continue;
        cJSON *call = cJSON_GetArrayItem(tc, 0), *fn = cJSON_GetObjectItem(call, "function");
        int index = (int)cJSON_GetObjectItem(call, "index")->valuedouble;
        if (cJSON_GetObjectItem(call, "id")) { /* the first delta of a call: index, id, type, name, "" */
            assert_int_equal(index, heads);
            char id[32];
            snprintf(id, sizeof id, "call_s1_%d", heads);
            assert_string_equal(cJSON_GetObjectItem(call, "id")->valuestring, id);
            assert_string_equal(cJSON_GetObjectItem(call, "type")->valuestring, "function");
            assert_string_equal(cJSON_GetObjectItem(fn, "name")->valuestring, heads ? "now" : "get_weather");
            assert_string_equal(cJSON_GetObjectItem(fn, "arguments")->valuestring, "");
            heads++;
        } else { /* then its arguments */
            assert_int_equal(index, args);
            assert_null(cJSON_GetObjectItem(fn, "name"));
            assert_string_equal(cJSON_GetObjectItem(fn, "arguments")->valuestring, args ? "{}" : "{\"city\":\"Paris\"}");
            args++;
        }
    }
    assert_int_equal(heads, 2);
    assert_int_equal(args, 2);
    assert_string_equal(content.data, "Checking.");
    assert_int_equal(n_logprobs, 4); /* each token's logprobs once */
    cJSON *last = cJSON_GetArrayItem(cJSON_GetObjectItem(ev[n - 2], "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(last, "finish_reason")->valuestring, "tool_calls");
    for (int i = 0; i < n; i++) cJSON_Delete(ev[i]);
    free(content.data);
    free(sse.data);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);
}

static void test_reasoning(void **state) {
    (void)state;
    /* Qwen3 thinks: <think> is split off, whole and streamed */
    lmf_openai_request q = request(&m_qwen3, "{" MSG "}");
    assert_true(q.reasoning);
    assert_false(q.think_open || q.parse_tools);
    static const char *const pieces[] = {"<th", "ink>\nThe user", " greets.\n</th", "ink>\n\nHello!"};
    lmf_openai_reply r;
    lmf_openai_reply_init(&r, &m_qwen3, &q, "r1", 1);
    for (int i = 0; i < 4; i++) {
        lmf_engine_event ev = text_event(pieces[i]);
        lmf_openai_reply_event(&r, &ev, NULL);
    }
    lmf_engine_event d = done(LMF_STOP_TOKEN);
    lmf_openai_reply_event(&r, &d, NULL);
    char *json = lmf_openai_reply_json(&r);
    cJSON *j = cJSON_Parse(json), *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *msg = cJSON_GetObjectItem(c, "message");
    assert_string_equal(cJSON_GetObjectItem(msg, "content")->valuestring, "Hello!");
    assert_string_equal(cJSON_GetObjectItem(msg, "reasoning_content")->valuestring, "\nThe user greets.\n");
    assert_string_equal(cJSON_GetObjectItem(c, "finish_reason")->valuestring, "stop");
    cJSON_Delete(j);
    free(json);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);

    q = request(&m_qwen3, "{" MSG ", \"stream\": true}");
    lmf_openai_reply_init(&r, &m_qwen3, &q, "r2", 1);
    lmf_text sse = {0};
    for (int i = 0; i < 4; i++) {
        lmf_engine_event ev = text_event(pieces[i]);
        lmf_openai_reply_event(&r, &ev, &sse);
    }
    lmf_openai_reply_event(&r, &d, &sse);
    cJSON *ev[32];
    int n = sse_events(sse.data, ev, 32);
    lmf_text reasoning = {0}, content = {0};
    for (int i = 1; i < n - 1; i++) {
        cJSON *x = cJSON_GetObjectItem(delta_of(ev[i]), "reasoning_content"), *y;
        if (x) lmf_text_push(&reasoning, x->valuestring, strlen(x->valuestring));
        if ((y = cJSON_GetObjectItem(delta_of(ev[i]), "content"))) lmf_text_push(&content, y->valuestring,
                                                                                strlen(y->valuestring));
        assert_false(x && y);
    }
    assert_string_equal(reasoning.data, "\nThe user greets.\n");
    assert_string_equal(content.data, "Hello!");
    for (int i = 0; i < n; i++) cJSON_Delete(ev[i]);
    free(reasoning.data), free(content.data), free(sse.data);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);

    /* enable_thinking false: Qwen3's template writes an empty think block into the prompt; the reply is content */
    q = request(&m_qwen3, "{" MSG ", \"chat_template_kwargs\": {\"enable_thinking\": false}}");
    assert_true(q.reasoning);
    assert_false(q.think_open);
    lmf_text text = {0};
    lmf_tokenizer_decode(tok, q.prompt.data, q.prompt.len, 0, &text);
    assert_non_null(strstr(text.data, "<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    free(text.data);
    lmf_openai_request_free(&q);

    /* --reasoning-format none: <think> stays in the content */
    lmf_openai_model plain = m_qwen3;
    plain.reasoning = 0;
    q = request(&plain, "{" MSG "}");
    assert_false(q.reasoning);
    lmf_openai_reply_init(&r, &plain, &q, "r3", 1);
    lmf_engine_event ev1 = text_event("<think>x</think>y");
    lmf_openai_reply_event(&r, &ev1, NULL);
    lmf_openai_reply_event(&r, &d, NULL);
    json = lmf_openai_reply_json(&r);
    assert_non_null(strstr(json, "\"content\":\"<think>x</think>y\""));
    assert_null(strstr(json, "reasoning_content"));
    free(json);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);
}

/* A template that opens <think> itself (as Qwen3-Thinking-2507's does): the reply starts as reasoning. */
static void test_think_open(void **state) {
    (void)state;
    lmf_chat_template t;
    assert_int_equal(lmf_chat_template_parse("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                                             "<|im_end|>\n{% endfor %}<|im_start|>assistant\n<think>\n", &t), LMF_OK);
    lmf_openai_model m = m_qwen3;
    m.tmpl = &t;
    lmf_openai_request q = request(&m, "{" MSG "}");
    assert_true(q.reasoning && q.think_open);
    lmf_openai_reply r;
    lmf_openai_reply_init(&r, &m, &q, "o1", 1);
    lmf_engine_event ev = text_event("hmm</think>\n\nYes.");
    lmf_openai_reply_event(&r, &ev, NULL);
    lmf_engine_event d = done(LMF_STOP_TOKEN);
    lmf_openai_reply_event(&r, &d, NULL);
    char *json = lmf_openai_reply_json(&r);
    assert_non_null(strstr(json, "\"content\":\"Yes.\",\"reasoning_content\":\"hmm\""));
    free(json);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);
    lmf_chat_template_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),       cmocka_unit_test(test_constrained), cmocka_unit_test(test_prompt),    cmocka_unit_test(test_tool_call_reply),
        cmocka_unit_test(test_tool_call_stream), cmocka_unit_test(test_reasoning), cmocka_unit_test(test_think_open),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
