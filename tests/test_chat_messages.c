/* test_chat_messages.c — messages as the template sees them (src/model/chat.c: lmf_chat_messages_prepare,
 * lmf_chat_render_json, lmf_chat_render_messages_json).
 *
 *  - OpenAI-shaped messages (tool call arguments as JSON text, content as a list of text parts, role "tool", tools)
 *    render byte for byte as transformers renders the same conversation with the arguments as an object and the
 *    content as a string (fixtures/chat/chat_fixtures.json, tool_round of Qwen2.5, Qwen3, Llama-3.1 and 3.2), which is
 *    what vLLM and llama-server hand the template;
 *  - every malformed field is refused naming it; built-in renderers refuse tools, tool calls and role "tool";
 *  - {% generation %} spans: where each block's text landed in the render. */
#include "model/chat.h"

#include "core/status.h"
#include "chat_fixture.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>

#define FIXTURE LMF_SOURCE_DIR "/tests/reference/fixtures/chat/chat_fixtures.json"

static const cJSON *fixture_case(const cJSON *root, const char *name) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases"))
        if (!strcmp(cJSON_GetObjectItem(c, "name")->valuestring, name)) return c;
    fail_msg("no fixture case %s", name);
    return NULL;
}

/* The fixture's messages in OpenAI's wire shape: arguments as JSON text, string contents as one text part. */
static char *openai_shape(const cJSON *messages) {
    cJSON *m = cJSON_Duplicate(messages, 1), *msg;
    cJSON_ArrayForEach(msg, m) {
        cJSON *content = cJSON_GetObjectItem(msg, "content"), *call;
        if (cJSON_IsString(content) && content->valuestring[0]) {
            cJSON *parts = cJSON_CreateArray(), *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "type", "text");
            cJSON_AddStringToObject(p, "text", content->valuestring);
            cJSON_AddItemToArray(parts, p);
            cJSON_ReplaceItemInObject(msg, "content", parts);
        }
        cJSON_ArrayForEach(call, cJSON_GetObjectItem(msg, "tool_calls")) {
            cJSON *fn = cJSON_GetObjectItem(call, "function");
            char *args = cJSON_PrintUnformatted(cJSON_GetObjectItem(fn, "arguments"));
            cJSON_ReplaceItemInObject(fn, "arguments", cJSON_CreateString(args));
            free(args);
        }
    }
    char *s = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    return s;
}

static void test_tool_round_as_transformers(void **state) {
    (void)state;
    char *text = slurp(FIXTURE, NULL);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    static const char *const cases[] = {"qwen2.5/tool_round/gen=1", "qwen2.5/tool_round/gen=0",
                                        "qwen3/tool_round/gen=1",   "qwen3/tool_round/gen=0",
                                        "llama3.1/tool_round/gen=1", "llama3.2/tool_round/gen=1"};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const cJSON *c = fixture_case(root, cases[k]), *vars = cJSON_GetObjectItem(c, "vars");
        lmf_chat_template t;
        assert_int_equal(lmf_chat_template_parse(cJSON_GetObjectItem(c, "template")->valuestring, &t), LMF_OK);
        assert_non_null(t.jinja);
        assert_true(t.renders_tools);
        t.now = (long long)chat_fixture_now(root); /* llama 3.2's template dates its system turn with strftime_now */
        /* the other variables (bos_token) as kwargs */
        cJSON *kw = cJSON_Duplicate(vars, 1);
        static const char *const own[] = {"messages", "tools", "add_generation_prompt", "documents"};
        for (int i = 0; i < 4; i++) cJSON_DeleteItemFromObject(kw, own[i]);
        char *kws = cJSON_PrintUnformatted(kw);
        assert_int_equal(lmf_chat_template_set_kwargs(&t, kws), LMF_OK);
        char *msgs = openai_shape(cJSON_GetObjectItem(vars, "messages"));
        char *tools = cJSON_PrintUnformatted(cJSON_GetObjectItem(vars, "tools"));
        lmf_text out = {0};
        lmf_status st = lmf_chat_render_messages_json(&t, msgs, tools, cJSON_IsTrue(cJSON_GetObjectItem(vars,
                                                      "add_generation_prompt")), &out);
        if (st != LMF_OK) fail_msg("%s: %s", cases[k], lmf_last_error());
        const char *want = cJSON_GetObjectItem(c, "expected")->valuestring;
        if (strcmp(out.data, want)) fail_msg("%s:\n--- want\n%s\n--- got\n%s", cases[k], want, out.data);
        assert_int_equal(t.hermes_tool_calls, !strncmp(cases[k], "qwen", 4));
        free(out.data), free(msgs), free(tools), free(kws);
        cJSON_Delete(kw);
        lmf_chat_template_free(&t);
    }
    cJSON_Delete(root);
    free(text);
}

/* messages_json must fail with LMF_ERR_ARG, the message and param naming field. */
static void refused(const char *messages_json, const char *field, const char *why) {
    cJSON *m = cJSON_Parse(messages_json);
    assert_non_null(m);
    char param[96] = "";
    assert_int_equal(lmf_chat_messages_prepare(m, param, sizeof param), LMF_ERR_ARG);
    if (strcmp(param, field) || !strstr(lmf_last_error(), field) || !strstr(lmf_last_error(), why))
        fail_msg("%s: want %s (%s), got param %s: %s", messages_json, field, why, param, lmf_last_error());
    cJSON_Delete(m);
}

static void test_prepare(void **state) {
    (void)state;
    /* accepted and normalised */
    cJSON *m = cJSON_Parse("[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": "
                           "\"text\", \"text\": \"b\"}]}, {\"role\": \"assistant\", \"content\": null, \"tool_calls\": "
                           "[{\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": "
                           "\"{\\\"x\\\": 1}\"}}], \"reasoning_content\": \"hm\"}, {\"role\": \"tool\", "
                           "\"tool_call_id\": \"c1\", \"name\": \"f\", \"content\": \"2\", \"extra\": [1]}]");
    assert_int_equal(lmf_chat_messages_prepare(m, NULL, 0), LMF_OK);
    char *s = cJSON_PrintUnformatted(m);
    assert_string_equal(s, "[{\"role\":\"user\",\"content\":\"a\\nb\"},{\"role\":\"assistant\",\"content\":null,"
                           "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                           "\"arguments\":{\"x\":1}}}],\"reasoning_content\":\"hm\"},{\"role\":\"tool\","
                           "\"tool_call_id\":\"c1\",\"name\":\"f\",\"content\":\"2\",\"extra\":[1]}]");
    free(s);
    cJSON_Delete(m);
    /* refused, by field */
    refused("{}", "messages", "expected an array");
    refused("[]", "messages", "empty");
    refused("[3]", "messages[0]", "expected an object");
    refused("[{\"content\": \"x\"}]", "messages[0].role", "expected a string");
    refused("[{\"role\": \"robot\", \"content\": \"x\"}]", "messages[0].role", "unknown role 'robot'");
    refused("[{\"role\": \"user\"}]", "messages[0].content", "required");
    refused("[{\"role\": \"assistant\", \"content\": null}]", "messages[0].content", "required");
    refused("[{\"role\": \"user\", \"content\": 5}]", "messages[0].content", "expected a string or an array");
    refused("[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"image_url\", "
            "\"image_url\": {\"url\": \"x\"}}]}]", "messages[0].content[1].type", "text parts only");
    refused("[{\"role\": \"user\", \"content\": [\"a\"]}]", "messages[0].content[0]", "text part");
    refused("[{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]", "messages[0].content[0].text",
            "expected a string");
    refused("[{\"role\": \"user\", \"content\": \"x\", \"tool_calls\": []}]", "messages[0].tool_calls",
            "only an assistant");
    refused("[{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": {}}]", "messages[0].tool_calls",
            "expected an array");
    refused("[{\"role\": \"assistant\", \"tool_calls\": [{\"type\": \"code\", \"function\": {\"name\": \"f\", "
            "\"arguments\": {}}}]}]", "messages[0].tool_calls[0].type", "function");
    refused("[{\"role\": \"assistant\", \"tool_calls\": [{\"type\": \"function\"}]}]",
            "messages[0].tool_calls[0].function", "expected an object");
    refused("[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"arguments\": {}}}]}]",
            "messages[0].tool_calls[0].function.name", "expected a string");
    refused("[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": \"{oops\"}}]}]",
            "messages[0].tool_calls[0].function.arguments", "{oops");
    refused("[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": \"[1]\"}}]}]",
            "messages[0].tool_calls[0].function.arguments", "JSON object");
    refused("[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": 3}}]}]",
            "messages[0].tool_calls[0].function.arguments", "JSON object");
    refused("[{\"role\": \"tool\", \"content\": \"x\", \"tool_call_id\": 7}]", "messages[0].tool_call_id",
            "expected a string");
    refused("[{\"role\": \"assistant\", \"content\": \"x\", \"reasoning_content\": []}]",
            "messages[0].reasoning_content", "expected a string");
}

static void test_builtin_refuses_tools(void **state) {
    (void)state;
    lmf_chat_template t;
    assert_int_equal(lmf_chat_template_parse(NULL, &t), LMF_OK); /* built-in ChatML */
    lmf_text out = {0};
    assert_int_equal(lmf_chat_render_messages_json(&t, "[{\"role\": \"user\", \"content\": [{\"type\": \"text\", "
                                                   "\"text\": \"hi\"}]}]", NULL, 1, &out), LMF_OK);
    assert_string_equal(out.data, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    out.len = 0;
    assert_int_equal(lmf_chat_render_messages_json(&t, "[{\"role\": \"user\", \"content\": \"hi\"}]",
                                                   "[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]", 1,
                                                   &out), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "no tool format"));
    assert_int_equal(lmf_chat_render_messages_json(&t, "[{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
                                                   "\"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", "
                                                   "\"arguments\": {}}}]}]", NULL, 0, &out), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "message 1: the built-in chatml renderer has no tool format"));
    assert_int_equal(lmf_chat_render_messages_json(&t, "[{\"role\": \"tool\", \"content\": \"2\"}]", NULL, 0, &out),
                     LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "message 0"));
    lmf_chat_message tool = {"tool", "2"};
    assert_int_equal(lmf_chat_render(&t, &tool, 1, 0, &out), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "no tool format"));
    assert_int_equal(lmf_chat_render_messages_json(&t, "[{\"role\": \"user\"", NULL, 0, &out), LMF_ERR_ARG);
    assert_int_equal(lmf_chat_render_messages_json(&t, "[{\"role\": \"user\", \"content\": \"x\"}]", "{}", 0, &out),
                     LMF_ERR_ARG);
    free(out.data);
    lmf_chat_template_free(&t);
}

/* {% generation %}: the spans of the text each block wrote, as transformers' AssistantTracker notes them; a block
 * inside {% set %} or a macro writes into another buffer and is not noted; a failed render leaves spans as they were. */
static void test_generation_spans(void **state) {
    (void)state;
    const char *src = "{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' %}{% generation %}"
                      "{{ m.content }}!{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}"
                      "{% set x %}{% generation %}hidden{% endgeneration %}{% endset %}"
                      "{% macro f() %}{% generation %}m{% endgeneration %}{% endmacro %}{{ f() }}";
    lmf_chat_template t;
    assert_int_equal(lmf_chat_template_parse(src, &t), LMF_OK);
    assert_true(lmf_chat_template_has_generation(&t));
    cJSON *msgs = cJSON_Parse("[{\"role\": \"user\", \"content\": \"hé\"}, {\"role\": \"assistant\", \"content\": "
                              "\"yo\"}, {\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "
                              "\"content\": \"\"}]");
    lmf_text out = {0};
    lmf_text_push(&out, "PRE", 3); /* spans count from the render's own first byte */
    lmf_jinja_spans sp = {0};
    assert_int_equal(lmf_chat_render_json(&t, msgs, NULL, 0, &out, &sp), LMF_OK);
    assert_string_equal(out.data, "PRE<user>hé<assistant>yo!<user>q<assistant>!m");
    assert_int_equal(sp.n, 2);
    assert_int_equal(sp.v[0].start, 20), assert_int_equal(sp.v[0].end, 23); /* "yo!" */
    assert_int_equal(sp.v[1].start, 41), assert_int_equal(sp.v[1].end, 42); /* "!" */
    cJSON_Delete(msgs);
    lmf_chat_template_free(&t);
    /* a failed render adds no span */
    assert_int_equal(lmf_chat_template_parse("{% generation %}a{% endgeneration %}{{ raise_exception('no') }}", &t),
                     LMF_OK);
    msgs = cJSON_Parse("[{\"role\": \"user\", \"content\": \"x\"}]");
    assert_int_equal(lmf_chat_render_json(&t, msgs, NULL, 0, &out, &sp), LMF_ERR_ARG);
    assert_int_equal(sp.n, 2);
    lmf_chat_template_free(&t);
    assert_int_equal(lmf_chat_template_parse("{{ messages[0].content }}", &t), LMF_OK);
    assert_false(lmf_chat_template_has_generation(&t));
    lmf_chat_template_free(&t);
    cJSON_Delete(msgs);
    free(sp.v);
    free(out.data);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tool_round_as_transformers), cmocka_unit_test(test_prepare),
                                       cmocka_unit_test(test_builtin_refuses_tools),
                                       cmocka_unit_test(test_generation_spans)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
