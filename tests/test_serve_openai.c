/* test_serve_openai.c — the OpenAI layer of `lmforge serve` without a server: every malformed field of a chat or
 * completion request gives the right status and names the right param; valid requests become the engine request
 * they describe; engine events become OpenAI's objects and stream chunks (roles, finish reasons, usage, logprobs,
 * [DONE]); /tokenize and /detokenize; what goes into JSON is valid UTF-8 whatever the tokens decode to. */
#include "test_util.h"
#include "tiny_chat_tokenizer.h"
#include "sse_events.h"

#include "serve/openai.h"

#include <cjson/cJSON.h>

static lmf_tokenizer *tok;
static lmf_chat_template tmpl;
static lmf_openai_model model;

static int setup(void **state) {
    tok = tiny_chat_tokenizer();
    if (!tok || lmf_chat_template_parse(NULL, &tmpl) != LMF_OK) return -1; /* NULL: ChatML */
    model = (lmf_openai_model){.id = "tiny", .tok = tok, .tmpl = &tmpl, .bos = -1, .n_ctx = 200};
    return 0;
}

static int teardown(void **state) {
    lmf_chat_template_free(&tmpl);
    lmf_tokenizer_free(tok);
    return 0;
}

/* Parses body as kind and checks the status and the param named (NULL: no param). */
static void expect_error(lmf_openai_kind kind, const char *body, int status, const char *param) {
    lmf_openai_request r;
    lmf_openai_error e;
    int rc = lmf_openai_parse(&model, kind, body, strlen(body), &r, &e);
    if (rc != status) fail_msg("%s: status %d, expected %d (%s)", body, rc, status, rc ? e.message : "accepted");
    if (strcmp(e.param, param ? param : ""))
        fail_msg("%s: param '%s', expected '%s' (%s)", body, e.param, param ? param : "", e.message);
    assert_int_equal(e.status, status);
    assert_non_null(e.type);
    assert_true(strlen(e.message) > 0);
    lmf_openai_request_free(&r);
}

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_chat_malformed(void **state) {
    const lmf_openai_kind C = LMF_OPENAI_CHAT;
    /* the body itself */
    expect_error(C, "", 400, NULL);
    expect_error(C, "{\"messages\": [", 400, NULL);
    expect_error(C, "[1, 2]", 400, NULL);
    expect_error(C, "{" MSG "} trailing", 400, NULL);
    expect_error(C, "{" MSG ", \"temperature\": 0.5, \"temperature\": 0.7}", 400, "temperature");
    /* unknown fields are named, never ignored */
    expect_error(C, "{" MSG ", \"logit_bias\": []}", 400, "logit_bias");
    expect_error(C, "{" MSG ", \"logit_bias\": {\"x\": 1}}", 400, "logit_bias.x");
    expect_error(C, "{" MSG ", \"logit_bias\": {\"-1\": 1}}", 400, "logit_bias.-1");
    expect_error(C, "{" MSG ", \"logit_bias\": {\"99999\": 1}}", 400, "logit_bias.99999");
    expect_error(C, "{" MSG ", \"logit_bias\": {\"3\": 101}}", 400, "logit_bias.3");
    expect_error(C, "{" MSG ", \"logit_bias\": {\"3\": \"1\"}}", 400, "logit_bias.3");
    expect_error(C, "{" MSG ", \"tools\": []}", 400, "tools");
    expect_error(C, "{" MSG ", \"prompt\": \"x\"}", 400, "prompt");
    /* messages */
    expect_error(C, "{}", 400, "messages");
    expect_error(C, "{\"messages\": \"hi\"}", 400, "messages");
    expect_error(C, "{\"messages\": []}", 400, "messages");
    expect_error(C, "{\"messages\": [1]}", 400, "messages[0]");
    expect_error(C, "{\"messages\": [{\"content\": \"x\"}]}", 400, "messages[0].role");
    expect_error(C, "{\"messages\": [{\"role\": 1, \"content\": \"x\"}]}", 400, "messages[0].role");
    expect_error(C, "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", 400, "messages[0].role");
    expect_error(C, "{\"messages\": [{\"role\": \"user\"}]}", 400, "messages[0].content");
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": null}]}", 400, "messages[0].content");
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400, "messages[0].content");
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"audio\": \"bob\"}]}", 400,
                 "messages[0].audio");
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"name\": 3}]}", 400,
                 "messages[0].name");
    /* the built-in ChatML renderer's rule (a template decides its own) */
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"system\", \"content\": "
                    "\"y\"}]}", 400, "messages");
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": [\"x\"]}]}", 400, "messages[0].content[0]");
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}]}]}", 400,
                 "messages[0].content[0].type");
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}", 400,
                 "messages[0].content[0].text");
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": 3}]}]}", 400,
                 "messages[0].content[0].text");
    expect_error(C, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\", "
                    "\"image_url\": {}}]}]}", 400, "messages[0].content[0].image_url");
    /* model */
    expect_error(C, "{" MSG ", \"model\": \"gpt-4\"}", 404, "model");
    expect_error(C, "{" MSG ", \"model\": 4}", 400, "model");
    /* sampling */
    expect_error(C, "{" MSG ", \"temperature\": \"hot\"}", 400, "temperature");
    expect_error(C, "{" MSG ", \"temperature\": 2.5}", 400, "temperature");
    expect_error(C, "{" MSG ", \"temperature\": -0.1}", 400, "temperature");
    expect_error(C, "{" MSG ", \"top_p\": 0}", 400, "top_p");
    expect_error(C, "{" MSG ", \"top_p\": 1.01}", 400, "top_p");
    expect_error(C, "{" MSG ", \"top_k\": -1}", 400, "top_k");
    expect_error(C, "{" MSG ", \"top_k\": 2.5}", 400, "top_k");
    expect_error(C, "{" MSG ", \"min_p\": 1.5}", 400, "min_p");
    expect_error(C, "{" MSG ", \"seed\": \"42\"}", 400, "seed");
    expect_error(C, "{" MSG ", \"seed\": 0.5}", 400, "seed");
    expect_error(C, "{" MSG ", \"presence_penalty\": 2.5}", 400, "presence_penalty");
    expect_error(C, "{" MSG ", \"frequency_penalty\": -3}", 400, "frequency_penalty");
    expect_error(C, "{" MSG ", \"repetition_penalty\": 0}", 400, "repetition_penalty");
    expect_error(C, "{" MSG ", \"repetition_penalty\": true}", 400, "repetition_penalty");
    /* lengths and stops */
    expect_error(C, "{" MSG ", \"max_tokens\": 0}", 400, "max_tokens");
    expect_error(C, "{" MSG ", \"max_tokens\": \"10\"}", 400, "max_tokens");
    expect_error(C, "{" MSG ", \"max_completion_tokens\": -5}", 400, "max_completion_tokens");
    expect_error(C, "{" MSG ", \"max_tokens\": 5, \"max_completion_tokens\": 6}", 400, "max_completion_tokens");
    expect_error(C, "{" MSG ", \"stop\": 5}", 400, "stop");
    expect_error(C, "{" MSG ", \"stop\": \"\"}", 400, "stop");
    expect_error(C, "{" MSG ", \"stop\": [\"a\", 1]}", 400, "stop[1]");
    expect_error(C, "{" MSG ", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 400, "stop");
    /* logprobs, n, stream, user */
    expect_error(C, "{" MSG ", \"logprobs\": 1}", 400, "logprobs");
    expect_error(C, "{" MSG ", \"top_logprobs\": 2}", 400, "top_logprobs");
    expect_error(C, "{" MSG ", \"logprobs\": true, \"top_logprobs\": 21}", 400, "top_logprobs");
    expect_error(C, "{" MSG ", \"n\": 2}", 400, "n");
    expect_error(C, "{" MSG ", \"n\": \"1\"}", 400, "n");
    expect_error(C, "{" MSG ", \"stream\": \"yes\"}", 400, "stream");
    expect_error(C, "{" MSG ", \"stream_options\": {\"include_usage\": true}}", 400, "stream_options");
    expect_error(C, "{" MSG ", \"stream\": true, \"stream_options\": 1}", 400, "stream_options");
    expect_error(C, "{" MSG ", \"stream\": true, \"stream_options\": {\"x\": 1}}", 400, "stream_options.x");
    expect_error(C, "{" MSG ", \"stream\": true, \"stream_options\": {\"include_usage\": 1}}", 400,
                 "stream_options.include_usage");
    expect_error(C, "{" MSG ", \"user\": 7}", 400, "user");
    /* the context: 200 tokens, a byte each here */
    char big[512];
    snprintf(big, sizeof big, "{\"messages\": [{\"role\": \"user\", \"content\": \"%0250d\"}]}", 0);
    expect_error(C, big, 400, "messages");
    expect_error(C, "{" MSG ", \"max_tokens\": 190}", 400, "max_tokens");
}

/* A model whose template runs (not the built-in ChatML): chat_template_kwargs reach it over the server's own, a bad
 * one is a 400 naming it, and the template's raise_exception is a 400 with its message. */
static void test_chat_template_kwargs(void **state) {
    lmf_chat_template t;
    assert_int_equal(lmf_chat_template_parse("{% if flag is defined and flag == 'stop' %}{{ raise_exception('no ' ~ "
                                             "messages[0].content) }}{% endif %}{% for m in messages %}{{ m.content }}"
                                             "{% endfor %}[{{ flag }}|{{ other }}]", &t), LMF_OK);
    assert_non_null(t.jinja);
    assert_int_equal(lmf_chat_template_set_kwargs(&t, "{\"flag\": \"server\", \"other\": 1}"), LMF_OK);
    lmf_openai_model mk = model;
    mk.tmpl = &t;
    static const struct {
        const char *body, *text;
    } ok[] = {{"{" MSG "}", "hi[server|1]"},
              {"{" MSG ", \"chat_template_kwargs\": {\"flag\": \"req\"}}", "hi[req|1]"},
              {"{" MSG ", \"chat_template_kwargs\": {}}", "hi[server|1]"}};
    for (int i = 0; i < 3; i++) {
        lmf_openai_request r;
        lmf_openai_error e;
        int rc = lmf_openai_parse(&mk, LMF_OPENAI_CHAT, ok[i].body, strlen(ok[i].body), &r, &e);
        if (rc) fail_msg("%s: %s", ok[i].body, e.message);
        lmf_ids want = {0};
        assert_int_equal(lmf_tokenizer_encode(tok, ok[i].text, strlen(ok[i].text), LMF_ENCODE_ALLOW_SPECIAL, &want),
                         LMF_OK);
        assert_int_equal(r.prompt.len, want.len);
        assert_memory_equal(r.prompt.data, want.data, want.len * sizeof *want.data);
        free(want.data);
        lmf_openai_request_free(&r);
    }
    lmf_openai_model saved = model;
    model = mk; /* expect_error parses with `model` */
    expect_error(LMF_OPENAI_CHAT, "{" MSG ", \"chat_template_kwargs\": [1]}", 400, "chat_template_kwargs");
    expect_error(LMF_OPENAI_COMPLETION, "{\"prompt\": \"x\", \"chat_template_kwargs\": {}}", 400,
                 "chat_template_kwargs");
    const char *raise = "{" MSG ", \"chat_template_kwargs\": {\"flag\": \"stop\"}}";
    lmf_openai_request r;
    lmf_openai_error e;
    assert_int_equal(lmf_openai_parse(&model, LMF_OPENAI_CHAT, raise, strlen(raise), &r, &e), 400);
    assert_string_equal(e.param, "messages");
    assert_non_null(strstr(e.message, "the template raised: no hi"));
    lmf_openai_request_free(&r);
    model = saved;
    lmf_chat_template_free(&t);
}

static void test_completion_malformed(void **state) {
    const lmf_openai_kind P = LMF_OPENAI_COMPLETION;
    expect_error(P, "{}", 400, "prompt");
    expect_error(P, "{\"prompt\": 5}", 400, "prompt");
    expect_error(P, "{\"prompt\": \"\"}", 400, "prompt"); /* no BOS here: nothing to condition on */
    expect_error(P, "{\"prompt\": []}", 400, "prompt");
    expect_error(P, "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt[0]");
    expect_error(P, "{\"prompt\": [1, 2.5]}", 400, "prompt[1]");
    expect_error(P, "{\"prompt\": [1, -1]}", 400, "prompt[1]");
    expect_error(P, "{\"prompt\": [1, 260]}", 400, "prompt[1]");
    expect_error(P, "{\"prompt\": \"x\", \"messages\": []}", 400, "messages");
    expect_error(P, "{\"prompt\": \"x\", \"max_completion_tokens\": 5}", 400, "max_completion_tokens");
    expect_error(P, "{\"prompt\": \"x\", \"logprobs\": true}", 400, "logprobs");
    expect_error(P, "{\"prompt\": \"x\", \"logprobs\": 21}", 400, "logprobs");
    expect_error(P, "{\"prompt\": \"x\", \"top_logprobs\": 2}", 400, "top_logprobs");
    expect_error(P, "{\"prompt\": \"x\", \"echo\": true}", 400, "echo");
    expect_error(P, "{\"prompt\": \"x\", \"suffix\": \"y\"}", 400, "suffix");
    expect_error(P, "{\"prompt\": \"x\", \"best_of\": 2}", 400, "best_of");
    expect_error(P, "{\"prompt\": \"x\", \"model\": \"other\"}", 404, "model");
}

static void test_chat_valid(void **state) {
    const char *body = "{\"model\": \"tiny\", \"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, "
                       "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", "
                       "\"text\": \"b\"}]}], \"temperature\": 0.25, \"top_p\": 0.5, \"top_k\": 7, \"min_p\": 0.1, "
                       "\"seed\": -1, \"stop\": [\"x\", \"yz\"], \"presence_penalty\": 0.5, \"frequency_penalty\": "
                       "-0.5, \"repetition_penalty\": 1.1, \"logprobs\": true, \"top_logprobs\": 3, "
                       "\"max_completion_tokens\": 9, \"n\": 1, \"stream\": true, \"stream_options\": "
                       "{\"include_usage\": true}, \"user\": \"u1\", \"max_tokens\": null, \"logit_bias\": "
                       "{\"5\": -100, \"7\": 2.5}}";
    lmf_openai_request r;
    lmf_openai_error e;
    int rc = lmf_openai_parse(&model, LMF_OPENAI_CHAT, body, strlen(body), &r, &e);
    if (rc) fail_msg("%s", e.message);
    assert_true(r.stream && r.include_usage && r.seeded);
    const lmf_engine_request *q = &r.req;
    assert_float_equal(q->sampling.temperature, 0.25f, 0);
    assert_float_equal(q->sampling.top_p, 0.5f, 0);
    assert_int_equal(q->sampling.top_k, 7);
    assert_float_equal(q->sampling.min_p, 0.1f, 1e-7);
    assert_true(q->sampling.seed == UINT64_MAX); /* -1 as two's complement */
    assert_float_equal(q->sampling.repeat_penalty, 1.1f, 1e-7);
    assert_float_equal(q->presence_penalty, 0.5f, 0);
    assert_float_equal(q->frequency_penalty, -0.5f, 0);
    assert_int_equal(q->max_tokens, 9);
    assert_int_equal(q->logprobs, 1);
    assert_int_equal(q->top_logprobs, 3);
    assert_int_equal(q->n_bias, 2);
    assert_true(q->bias_ids[0] == 5 && q->bias[0] == -100 && q->bias_ids[1] == 7 && q->bias[1] == 2.5f);
    assert_int_equal(q->n_stops, 2);
    assert_string_equal(q->stops[0], "x");
    assert_string_equal(q->stops[1], "yz");
    /* the prompt is the template's rendering, exactly as `lmforge chat` encodes it; parts joined by "\n" */
    lmf_chat_message msgs[2] = {{"system", "be brief"}, {"user", "a\nb"}};
    lmf_ids want = {0};
    assert_int_equal(lmf_chat_encode(tok, &tmpl, -1, msgs, 2, 1, &want), LMF_OK);
    assert_int_equal(q->n_prompt, (int)want.len);
    assert_memory_equal(q->prompt, want.data, want.len * sizeof(int32_t));
    assert_int_equal(q->prompt[0], TINY_IM_START);
    free(want.data);
    lmf_openai_request_free(&r);

    /* defaults: chat generates until the context is full; no seed named */
    const char *plain = "{" MSG "}";
    assert_int_equal(lmf_openai_parse(&model, LMF_OPENAI_CHAT, plain, strlen(plain), &r, &e), 0);
    assert_int_equal(r.req.max_tokens, 0);
    assert_false(r.seeded || r.stream || r.req.logprobs);
    lmf_sampler_params d = lmf_sampler_defaults();
    assert_float_equal(r.req.sampling.temperature, d.temperature, 0);
    lmf_openai_request_free(&r);
}

static void test_completion_valid(void **state) {
    lmf_openai_request r;
    lmf_openai_error e;
    const char *ids = "{\"prompt\": [258, 5, 6], \"logprobs\": 2, \"stop\": \"\\n\"}";
    assert_int_equal(lmf_openai_parse(&model, LMF_OPENAI_COMPLETION, ids, strlen(ids), &r, &e), 0);
    assert_int_equal(r.req.n_prompt, 3);
    assert_int_equal(r.req.prompt[0], 258);
    assert_int_equal(r.req.max_tokens, 16); /* OpenAI's default for completions */
    assert_int_equal(r.req.logprobs, 1);
    assert_int_equal(r.req.top_logprobs, 2);
    assert_int_equal(r.req.n_stops, 1);
    lmf_openai_request_free(&r);
    /* a string prompt: special-token text is that token (as `lmforge generate -p`, llama-server and vLLM read it),
     * BOS first when the model has one */
    model.bos = TINY_EOT;
    const char *text = "{\"prompt\": \"<|im_end|>bc\"}";
    assert_int_equal(lmf_openai_parse(&model, LMF_OPENAI_COMPLETION, text, strlen(text), &r, &e), 0);
    model.bos = -1;
    assert_int_equal(r.req.n_prompt, 3); /* BOS, <|im_end|> as one token, "bc" merged */
    assert_int_equal(r.req.prompt[0], TINY_EOT);
    assert_int_equal(r.req.prompt[1], 259);
    assert_int_equal(r.req.prompt[2], TINY_BC);
    lmf_openai_request_free(&r);
}

static void test_tokenize(void **state) {
    char *json = NULL;
    lmf_openai_error e;
    const char *b = "{\"content\": \"<|im_end|>bc\"}";
    assert_int_equal(lmf_openai_tokenize(&model, b, strlen(b), &json, &e), 0);
    assert_string_equal(json, "{\"tokens\":[259,256]}");
    free(json);
    b = "{\"content\": \"<|im_end|>\", \"parse_special\": false}";
    assert_int_equal(lmf_openai_tokenize(&model, b, strlen(b), &json, &e), 0);
    cJSON *j = cJSON_Parse(json);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tokens")), 10);
    cJSON_Delete(j);
    free(json);
    b = "{\"tokens\": [104, 105, 259]}";
    assert_int_equal(lmf_openai_detokenize(&model, b, strlen(b), &json, &e), 0);
    assert_string_equal(json, "{\"content\":\"hi<|im_end|>\"}");
    free(json);
    /* errors name the field */
    struct {
        int detok;
        const char *body, *param;
    } bad[] = {{0, "{}", "content"},
               {0, "{\"content\": 1}", "content"},
               {0, "{\"content\": \"x\", \"add_special\": 1}", "add_special"},
               {0, "{\"content\": \"x\", \"with_pieces\": true}", "with_pieces"},
               {1, "{\"tokens\": \"1 2\"}", "tokens"},
               {1, "{\"tokens\": [1, 260]}", "tokens[1]"},
               {1, "{\"tokens\": [1, \"a\"]}", "tokens[1]"},
               {1, "{\"content\": \"x\"}", "content"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json = NULL;
        int rc = bad[i].detok ? lmf_openai_detokenize(&model, bad[i].body, strlen(bad[i].body), &json, &e)
                              : lmf_openai_tokenize(&model, bad[i].body, strlen(bad[i].body), &json, &e);
        assert_int_equal(rc, 400);
        assert_null(json);
        if (strcmp(e.param, bad[i].param)) fail_msg("%s: param %s, expected %s", bad[i].body, e.param, bad[i].param);
    }
}

static lmf_engine_event token_event(int32_t id, const char *text, float lp, const lmf_engine_logprob *top, int n) {
    return (lmf_engine_event){.kind = LMF_ENGINE_TOKEN, .token = id, .text = text, .len = strlen(text),
                              .logprob = lp, .top = top, .n_top = n};
}

static lmf_engine_event done_event(lmf_stop_reason reason, const char *text, int prompt, int gen) {
    return (lmf_engine_event){.kind = LMF_ENGINE_DONE, .text = text, .len = strlen(text), .reason = reason,
                              .prompt_tokens = prompt, .cached_tokens = 2, .gen_tokens = gen};
}

static lmf_openai_request request(lmf_openai_kind kind, const char *body) {
    lmf_openai_request r;
    lmf_openai_error e;
    if (lmf_openai_parse(&model, kind, body, strlen(body), &r, &e)) fail_msg("%s", e.message);
    return r;
}

static void test_chat_reply(void **state) {
    lmf_openai_request q = request(LMF_OPENAI_CHAT, "{" MSG ", \"logprobs\": true, \"top_logprobs\": 2}");
    lmf_openai_reply r;
    lmf_openai_reply_init(&r, &model, &q, "abc", 1700000000);
    lmf_engine_logprob top[2] = {{104, -0.1f}, {0xC3, -2.5f}};
    lmf_engine_event evs[3] = {token_event(104, "h", -0.1f, top, 2), token_event(105, "", -0.2f, top, 2),
                               done_event(LMF_STOP_TOKEN, "i", 9, 2)};
    for (int i = 0; i < 3; i++) lmf_openai_reply_event(&r, &evs[i], NULL);
    char *json = lmf_openai_reply_json(&r);
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "chatcmpl-abc");
    assert_string_equal(cJSON_GetObjectItem(j, "object")->valuestring, "chat.completion");
    assert_string_equal(cJSON_GetObjectItem(j, "model")->valuestring, "tiny");
    assert_int_equal(cJSON_GetObjectItem(j, "created")->valuedouble, 1700000000);
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c, "finish_reason")->valuestring, "stop");
    cJSON *msg = cJSON_GetObjectItem(c, "message");
    assert_string_equal(cJSON_GetObjectItem(msg, "role")->valuestring, "assistant");
    assert_string_equal(cJSON_GetObjectItem(msg, "content")->valuestring, "hi");
    cJSON *lp = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "logprobs"), "content");
    assert_int_equal(cJSON_GetArraySize(lp), 2);
    cJSON *e0 = cJSON_GetArrayItem(lp, 0);
    assert_string_equal(cJSON_GetObjectItem(e0, "token")->valuestring, "h");
    assert_float_equal(cJSON_GetObjectItem(e0, "logprob")->valuedouble, -0.1, 1e-6);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(e0, "bytes"), 0)->valuedouble, 104);
    cJSON *alt = cJSON_GetArrayItem(cJSON_GetObjectItem(e0, "top_logprobs"), 1);
    /* byte 0xC3 alone is half a character: the string says U+FFFD, the bytes say what it is */
    assert_string_equal(cJSON_GetObjectItem(alt, "token")->valuestring, "\xEF\xBF\xBD");
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(alt, "bytes"), 0)->valuedouble, 0xC3);
    cJSON *u = cJSON_GetObjectItem(j, "usage");
    assert_int_equal(cJSON_GetObjectItem(u, "prompt_tokens")->valuedouble, 9);
    assert_int_equal(cJSON_GetObjectItem(u, "completion_tokens")->valuedouble, 2);
    assert_int_equal(cJSON_GetObjectItem(u, "total_tokens")->valuedouble, 11);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(u, "prompt_tokens_details"), "cached_tokens")->valuedouble,
                     2);
    cJSON_Delete(j);
    free(json);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);
}

static void test_chat_stream(void **state) {
    lmf_openai_request q = request(LMF_OPENAI_CHAT, "{" MSG ", \"stream\": true, \"stream_options\": "
                                                    "{\"include_usage\": true}}");
    lmf_openai_reply r;
    lmf_openai_reply_init(&r, &model, &q, "s1", 1);
    lmf_text sse = {0};
    lmf_engine_event evs[4] = {token_event(104, "h", 0, NULL, 0), token_event(0xC3, "", 0, NULL, 0),
                               token_event(0xA9, "\xC3\xA9", 0, NULL, 0), done_event(LMF_STOP_LENGTH, "", 3, 3)};
    for (int i = 0; i < 4; i++) lmf_openai_reply_event(&r, &evs[i], &sse);
    cJSON *ev[16];
    int n = sse_events(sse.data, ev, 16);
    /* role chunk, "h", "é" (the empty piece is not sent), the finish chunk, the usage chunk, [DONE] */
    assert_int_equal(n, 6);
    assert_null(ev[5]);
    for (int i = 0; i < 5; i++) {
        assert_non_null(ev[i]);
        assert_string_equal(cJSON_GetObjectItem(ev[i], "object")->valuestring, "chat.completion.chunk");
        assert_string_equal(cJSON_GetObjectItem(ev[i], "id")->valuestring, "chatcmpl-s1");
    }
    cJSON *d0 = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ev[0], "choices"), 0), "delta");
    assert_string_equal(cJSON_GetObjectItem(d0, "role")->valuestring, "assistant");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(ev[0], "usage")));
    cJSON *c2 = cJSON_GetArrayItem(cJSON_GetObjectItem(ev[2], "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c2, "delta"), "content")->valuestring, "\xC3\xA9");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(c2, "finish_reason")));
    cJSON *c3 = cJSON_GetArrayItem(cJSON_GetObjectItem(ev[3], "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c3, "finish_reason")->valuestring, "length");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(ev[4], "choices")), 0);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(ev[4], "usage"), "total_tokens")->valuedouble, 6);
    for (int i = 0; i < 5; i++) cJSON_Delete(ev[i]);
    free(sse.data);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);

    /* an error mid-stream: one error event, no [DONE] */
    q = request(LMF_OPENAI_COMPLETION, "{\"prompt\": \"x\", \"stream\": true}");
    lmf_openai_reply_init(&r, &model, &q, "s2", 1);
    sse = (lmf_text){0};
    lmf_engine_event t = token_event(104, "h", 0, NULL, 0);
    lmf_openai_reply_event(&r, &t, &sse);
    lmf_openai_error err;
    lmf_openai_error_set(&err, 503, NULL, NULL, "the server is shutting down");
    lmf_openai_reply_error(&r, &err, &sse);
    n = sse_events(sse.data, ev, 16);
    assert_int_equal(n, 2);
    assert_string_equal(cJSON_GetObjectItem(ev[0], "object")->valuestring, "text_completion");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ev[0], "choices"), 0), "text")
                            ->valuestring, "h");
    assert_non_null(cJSON_GetObjectItem(ev[1], "error"));
    cJSON_Delete(ev[0]), cJSON_Delete(ev[1]);
    free(sse.data);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);
}

static void test_completion_reply(void **state) {
    lmf_openai_request q = request(LMF_OPENAI_COMPLETION, "{\"prompt\": \"x\", \"logprobs\": 1}");
    lmf_openai_reply r;
    lmf_openai_reply_init(&r, &model, &q, "c", 1);
    lmf_engine_logprob top[1] = {{TINY_BC, -0.5f}};
    lmf_engine_event evs[3] = {token_event(TINY_BC, "bc", -0.5f, top, 1), token_event(104, "h", -1.5f, top, 1),
                               done_event(LMF_STOP_STRING, "", 1, 2)};
    for (int i = 0; i < 3; i++) lmf_openai_reply_event(&r, &evs[i], NULL);
    char *json = lmf_openai_reply_json(&r);
    cJSON *j = cJSON_Parse(json);
    assert_string_equal(cJSON_GetObjectItem(j, "object")->valuestring, "text_completion");
    assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "cmpl-c");
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c, "text")->valuestring, "bch");
    assert_string_equal(cJSON_GetObjectItem(c, "finish_reason")->valuestring, "stop");
    cJSON *lp = cJSON_GetObjectItem(c, "logprobs");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(lp, "tokens"), 1)->valuestring, "h");
    assert_float_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(lp, "token_logprobs"), 1)->valuedouble, -1.5, 1e-6);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(lp, "text_offset"), 1)->valuedouble, 2);
    cJSON *top0 = cJSON_GetArrayItem(cJSON_GetObjectItem(lp, "top_logprobs"), 0);
    assert_float_equal(cJSON_GetObjectItem(top0, "bc")->valuedouble, -0.5, 1e-6);
    cJSON_Delete(j);
    free(json);
    lmf_openai_reply_free(&r);
    lmf_openai_request_free(&q);
}

static void test_error_json_and_utf8(void **state) {
    lmf_openai_error e;
    assert_int_equal(lmf_openai_error_set(&e, 401, NULL, "invalid_api_key", "no key"), 401);
    char *json = lmf_openai_error_json(&e);
    assert_string_equal(json, "{\"error\":{\"message\":\"no key\",\"type\":\"authentication_error\",\"param\":null,"
                              "\"code\":\"invalid_api_key\"}}");
    free(json);
    /* one U+FFFD per maximal subpart, as Python's bytes.decode("utf-8", "replace") */
    struct {
        const char *in, *out;
    } cases[] = {{"a\xC3\xA9\xFF" "b\xE2\x82", "a\xC3\xA9\xEF\xBF\xBD" "b\xEF\xBF\xBD"},
                 {"\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD"},
                 {"\xE0\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* overlong: E0 takes A0..BF only */
                 {"\xF0\x9F\x99x", "\xEF\xBF\xBDx"},
                 {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a surrogate */
                 {"\xF0\x9F\x99\x82", "\xF0\x9F\x99\x82"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lmf_text t = {0};
        lmf_openai_put_utf8(&t, cases[i].in, strlen(cases[i].in));
        assert_string_equal(t.data, cases[i].out);
        free(t.data);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_malformed),   cmocka_unit_test(test_completion_malformed),
        cmocka_unit_test(test_chat_template_kwargs),
        cmocka_unit_test(test_chat_valid),       cmocka_unit_test(test_completion_valid),
        cmocka_unit_test(test_tokenize),         cmocka_unit_test(test_chat_reply),
        cmocka_unit_test(test_chat_stream),      cmocka_unit_test(test_completion_reply),
        cmocka_unit_test(test_error_json_and_utf8),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
