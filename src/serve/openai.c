/* openai.c — OpenAI's request and response JSON (see openai.h). */
#include "serve/openai.h"

#include "model/chat.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---------------------------------------------------------------------------------------------------- */

static const char *error_type(int status) {
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 405: return "invalid_request_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "unavailable_error";
    default: return "server_error";
    }
}

int lmf_openai_error_set(lmf_openai_error *e, int status, const char *param, const char *code, const char *fmt, ...) {
    e->status = status;
    e->type = error_type(status);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

/* Bytes at s (not a valid character) that one U+FFFD replaces: the maximal subpart of a character, as Unicode
 * recommends and Python's and browsers' decoders do (a lead byte and the continuation bytes it may take, so "\xE2\x82"
 * cut short is one replacement, a stray continuation byte one each). */
static size_t invalid_run(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
    uint8_t lo = 0x80, hi = 0xBF; /* the second byte's range after this lead */
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
    else if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
    size_t k = 1;
    if (need > 1 && k < n && s[k] >= lo && s[k] <= hi)
        for (k = 2; k < need && k < n && (s[k] & 0xC0) == 0x80; k++) continue;
    return k;
}

void lmf_openai_put_utf8(lmf_text *out, const char *s, size_t n) {
    size_t i = 0, run = 0; /* run: start of the valid bytes not yet copied */
    while (i < n) {
        uint32_t cp;
        int l = lmf_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (l > 0) {
            i += (size_t)l;
            continue;
        }
        lmf_text_push(out, s + run, i - run);
        lmf_text_push(out, "\xEF\xBF\xBD", 3);
        i += invalid_run((const uint8_t *)s + i, n - i);
        run = i;
    }
    lmf_text_push(out, s + run, n - run);
}

/* A cJSON string of n bytes made valid UTF-8. */
static cJSON *utf8_string(const char *s, size_t n) {
    lmf_text t = {0};
    lmf_openai_put_utf8(&t, s, n);
    cJSON *j = cJSON_CreateString(t.data ? t.data : "");
    free(t.data);
    return j;
}

static char *print(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) {
        fprintf(stderr, "lmforge: out of memory printing JSON\n");
        abort();
    }
    return s;
}

char *lmf_openai_error_json(const lmf_openai_error *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(root, "error");
    cJSON_AddItemToObject(o, "message", utf8_string(e->message, strlen(e->message)));
    cJSON_AddStringToObject(o, "type", e->type ? e->type : error_type(e->status));
    if (e->param[0]) cJSON_AddItemToObject(o, "param", utf8_string(e->param, strlen(e->param)));
    else cJSON_AddNullToObject(o, "param");
    if (e->code[0]) cJSON_AddStringToObject(o, "code", e->code);
    else cJSON_AddNullToObject(o, "code");
    return print(root);
}

/* ---- parsing helpers ------------------------------------------------------------------------------------------- */

static const char *type_name(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "an invalid value";
}

/* The body as a JSON object: whole (nothing but whitespace after it), else a 400. */
static cJSON *parse_object(const char *body, size_t len, lmf_openai_error *err) {
    const char *end = NULL;
    cJSON *j = len ? cJSON_ParseWithLengthOpts(body, len, &end, 0) : NULL;
    if (!j) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        lmf_openai_error_set(err, 400, NULL, "invalid_json", "the body is not valid JSON (error near byte %zu of %zu)",
                             at, len);
        return NULL;
    }
    for (const char *p = end; p < body + len; p++)
        if (!strchr(" \t\r\n", *p)) {
            cJSON_Delete(j);
            lmf_openai_error_set(err, 400, NULL, "invalid_json",
                                 "the body has bytes after its JSON value (at byte %zu)", (size_t)(p - body));
            return NULL;
        }
    if (!cJSON_IsObject(j)) {
        lmf_openai_error_set(err, 400, NULL, "invalid_json", "the body must be a JSON object, got %s", type_name(j));
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* Checks obj's keys against names[0..n): an unknown or repeated key is a 400 naming it (prefix + key). Returns 0 when
 * all are fine. Stops at the first unknown key, so a hostile object with many keys costs at most n compares each. */
static int check_keys(const cJSON *obj, const char *const *names, int n, const char *prefix, lmf_openai_error *err) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = !strcmp(k, names[i]);
        char param[96];
        snprintf(param, sizeof param, "%s%s", prefix, k);
        if (!known)
            return lmf_openai_error_set(err, 400, param, "unknown_field",
                                        "unknown field '%s%.64s': lmforge does not support it", prefix, k);
        for (const cJSON *p = obj->child; p != it; p = p->next)
            if (!strcmp(p->string, k))
                return lmf_openai_error_set(err, 400, param, NULL, "field '%s%.64s' appears twice", prefix, k);
    }
    return 0;
}

/* The field's value, NULL when absent or null (null means "unset" for every optional field). */
static const cJSON *field(const cJSON *obj, const char *name) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
    return j && !cJSON_IsNull(j) ? j : NULL;
}

static int want_number(const cJSON *j, const char *name, double lo, double hi, int lo_open, double *out,
                       lmf_openai_error *err) {
    if (!cJSON_IsNumber(j))
        return lmf_openai_error_set(err, 400, name, "invalid_type", "%s: expected a number, got %s", name,
                                    type_name(j));
    double x = j->valuedouble;
    if (!(lo_open ? x > lo : x >= lo) || !(x <= hi))
        return lmf_openai_error_set(err, 400, name, "invalid_value", "%s: expected a number in %c%g, %g], got %g",
                                    name, lo_open ? '(' : '[', lo, hi, x);
    *out = x;
    return 0;
}

static int want_int(const cJSON *j, const char *name, double lo, double hi, double *out, lmf_openai_error *err) {
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble))
        return lmf_openai_error_set(err, 400, name, "invalid_type", "%s: expected an integer, got %s", name,
                                    cJSON_IsNumber(j) ? "a fraction" : type_name(j));
    double x = j->valuedouble;
    if (x < lo || x > hi)
        return lmf_openai_error_set(err, 400, name, "invalid_value",
                                    "%s: expected an integer in [%.0f, %.0f], got %.0f", name, lo, hi, x);
    *out = x;
    return 0;
}

static int want_bool(const cJSON *j, const char *name, int *out, lmf_openai_error *err) {
    if (!cJSON_IsBool(j))
        return lmf_openai_error_set(err, 400, name, "invalid_type", "%s: expected true or false, got %s", name,
                                    type_name(j));
    *out = cJSON_IsTrue(j);
    return 0;
}

static int want_string(const cJSON *j, const char *name, lmf_openai_error *err) {
    if (!cJSON_IsString(j))
        return lmf_openai_error_set(err, 400, name, "invalid_type", "%s: expected a string, got %s", name,
                                    type_name(j));
    return 0;
}

/* ---- requests -------------------------------------------------------------------------------------------------- */

static const char *const CHAT_FIELDS[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
    "stop", "presence_penalty", "frequency_penalty", "repetition_penalty", "logprobs", "top_logprobs", "n", "stream",
    "stream_options", "user", "chat_template_kwargs", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "logit_bias"};
static const char *const COMPLETION_FIELDS[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "presence_penalty",
    "frequency_penalty", "repetition_penalty", "logprobs", "n", "stream", "stream_options", "user", "response_format",
    "logit_bias"};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The server's template with the request's chat_template_kwargs (vLLM's field: an object of extra template
 * variables, over the server's --chat-template-kwargs) in *t, a shallow copy whose kwargs_json the caller frees. */
static int template_with_kwargs(const lmf_chat_template *base, const cJSON *kw, lmf_chat_template *t,
                                lmf_openai_error *err) {
    *t = *base;
    t->kwargs_json = NULL;
    if (!kw) return 0;
    if (!cJSON_IsObject(kw))
        return lmf_openai_error_set(err, 400, "chat_template_kwargs", "invalid_type",
                                    "chat_template_kwargs: expected an object, got %s", type_name(kw));
    cJSON *merged = base->kwargs_json ? cJSON_Parse(base->kwargs_json) : cJSON_CreateObject();
    if (!merged) merged = cJSON_CreateObject();
    for (const cJSON *c = kw->child; c; c = c->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(merged, c->string);
        cJSON_AddItemToObject(merged, c->string, cJSON_Duplicate(c, 1));
    }
    t->kwargs_json = cJSON_PrintUnformatted(merged);
    cJSON_Delete(merged);
    return 0;
}

/* tools: [{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}], passed to the
 * template as its `tools` variable (transformers' and vLLM's shape). */
static int parse_tools(const cJSON *tools, lmf_openai_error *err) {
    static const char *const TOOL_FIELDS[] = {"type", "function"};
    static const char *const FN_FIELDS[] = {"name", "description", "parameters", "strict"};
    if (!cJSON_IsArray(tools))
        return lmf_openai_error_set(err, 400, "tools", "invalid_type", "tools: expected an array, got %s",
                                    type_name(tools));
    int i = 0;
    char param[96], prefix[96];
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        snprintf(param, sizeof param, "tools[%d]", i);
        if (!cJSON_IsObject(t))
            return lmf_openai_error_set(err, 400, param, "invalid_type", "%s: expected an object, got %s", param,
                                        type_name(t));
        snprintf(prefix, sizeof prefix, "tools[%d].", i);
        if (check_keys(t, TOOL_FIELDS, COUNT(TOOL_FIELDS), prefix, err)) return 400;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        snprintf(param, sizeof param, "tools[%d].type", i);
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))
            return lmf_openai_error_set(err, 400, param, "invalid_value", "%s: expected \"function\"", param);
        snprintf(param, sizeof param, "tools[%d].function", i);
        if (!cJSON_IsObject(fn))
            return lmf_openai_error_set(err, 400, param, "invalid_type", "%s: expected an object, got %s", param,
                                        type_name(fn));
        snprintf(prefix, sizeof prefix, "tools[%d].function.", i);
        if (check_keys(fn, FN_FIELDS, COUNT(FN_FIELDS), prefix, err)) return 400;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name"), *params;
        snprintf(param, sizeof param, "tools[%d].function.name", i);
        if (!name) return lmf_openai_error_set(err, 400, param, "missing_field", "%s is required", param);
        if (want_string(name, param, err)) return 400;
        snprintf(param, sizeof param, "tools[%d].function.parameters", i);
        if ((params = field(fn, "parameters")) && !cJSON_IsObject(params))
            return lmf_openai_error_set(err, 400, param, "invalid_type", "%s: expected a JSON schema object, got %s",
                                        param, type_name(params));
    }
    return 0;
}

/* tool_choice: "none" (the template sees no tools, the reply is not parsed for calls), "auto" (the default with
 * tools), "required" (the reply is one call or more, constrained to the tools' names and parameter schemas) or
 * {"type": "function", "function": {"name": N}} (a call of N). Sets *mode (0 none, 1 auto, 2 required, 3 named) and
 * *name for a named function. */
static int parse_tool_choice(const cJSON *tc, int have_tools, int *mode, const char **name, lmf_openai_error *err) {
    static const char *const TC_FIELDS[] = {"type", "function"};
    static const char *const FN_FIELDS[] = {"name"};
    *mode = have_tools ? 1 : 0, *name = NULL;
    if (!tc) return 0;
    static const char *const MODES[] = {"none", "auto", "required"};
    for (int k = 0; k < 3; k++)
        if (cJSON_IsString(tc) && !strcmp(tc->valuestring, MODES[k])) {
            if (k && !have_tools)
                return lmf_openai_error_set(err, 400, "tool_choice", "invalid_value", "tool_choice: \"%s\" needs "
                                            "\"tools\"", MODES[k]);
            *mode = k;
            return 0;
        }
    if (!cJSON_IsObject(tc))
        return lmf_openai_error_set(err, 400, "tool_choice", "invalid_value",
                                    "tool_choice: expected \"none\", \"auto\", \"required\" or a function, got "
                                    "%s%.32s%s",
                                    cJSON_IsString(tc) ? "'" : type_name(tc), cJSON_IsString(tc) ? tc->valuestring : "",
                                    cJSON_IsString(tc) ? "'" : "");
    if (check_keys(tc, TC_FIELDS, COUNT(TC_FIELDS), "tool_choice.", err)) return 400;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))
        return lmf_openai_error_set(err, 400, "tool_choice.type", "invalid_value", "tool_choice.type: expected "
                                    "\"function\"");
    if (!cJSON_IsObject(fn))
        return lmf_openai_error_set(err, 400, "tool_choice.function", "invalid_type",
                                    "tool_choice.function: expected an object with the function's name");
    if (check_keys(fn, FN_FIELDS, COUNT(FN_FIELDS), "tool_choice.function.", err)) return 400;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!cJSON_IsString(n))
        return lmf_openai_error_set(err, 400, "tool_choice.function.name", "invalid_type",
                                    "tool_choice.function.name: expected a string");
    if (!have_tools)
        return lmf_openai_error_set(err, 400, "tool_choice", "invalid_value",
                                    "tool_choice: a function needs \"tools\"");
    *mode = 3, *name = n->valuestring;
    return 0;
}

/* The grammar of tool_choice "required" (every tool) or a named function: Hermes <tool_call> blocks whose name is a
 * tool's and whose arguments follow its parameters schema. */
static int tool_grammar(const cJSON *tools, const char *only, int parallel, lmf_grammar **g, lmf_openai_error *err) {
    int n = 0, cap = cJSON_GetArraySize(tools);
    const char **names = calloc((size_t)cap + 1, sizeof *names);
    char **params = calloc((size_t)cap + 1, sizeof *params);
    for (const cJSON *t = tools->child; t; t = t->next) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const char *name = cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring;
        if (only && strcmp(only, name)) continue;
        const cJSON *p = field(fn, "parameters");
        names[n] = name;
        params[n++] = p ? cJSON_PrintUnformatted(p) : NULL;
    }
    int rc = 0;
    if (!n)
        rc = lmf_openai_error_set(err, 400, "tool_choice.function.name", "invalid_value",
                                  "tool_choice.function.name: '%.64s' is not one of the tools", only);
    else if (lmf_grammar_tool_calls(n, names, (const char *const *)params, only ? 0 : parallel, g) != LMF_OK)
        rc = lmf_openai_error_set(err, 400, "tools", "invalid_value", "tools: %s", lmf_last_error());
    for (int i = 0; i < n; i++) cJSON_free(params[i]);
    free(names);
    free(params);
    return rc;
}

/* response_format: {"type": "text"}, {"type": "json_object"} (any JSON object) or {"type": "json_schema",
 * "json_schema": {"name", "schema", "strict"?, "description"?}}: the reply constrained to it. */
static int parse_response_format(const cJSON *rf, lmf_grammar **g, lmf_openai_error *err) {
    static const char *const RF_FIELDS[] = {"type", "json_schema"};
    static const char *const JS_FIELDS[] = {"name", "schema", "strict", "description"};
    if (!cJSON_IsObject(rf))
        return lmf_openai_error_set(err, 400, "response_format", "invalid_type",
                                    "response_format: expected an object, got %s", type_name(rf));
    if (check_keys(rf, RF_FIELDS, COUNT(RF_FIELDS), "response_format.", err)) return 400;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
    if (strcmp(t, "json_schema") && js)
        return lmf_openai_error_set(err, 400, "response_format.json_schema", "invalid_value",
                                    "response_format.json_schema: only with \"type\": \"json_schema\"");
    if (!strcmp(t, "text")) return 0;
    if (!strcmp(t, "json_object")) {
        lmf_grammar_json(NULL, g);
        return 0;
    }
    if (strcmp(t, "json_schema"))
        return lmf_openai_error_set(err, 400, "response_format.type", "invalid_value",
                                    "response_format.type: expected \"text\", \"json_object\" or \"json_schema\"");
    if (!cJSON_IsObject(js))
        return lmf_openai_error_set(err, 400, "response_format.json_schema", "missing_field",
                                    "response_format.json_schema: expected an object with \"name\" and \"schema\"");
    if (check_keys(js, JS_FIELDS, COUNT(JS_FIELDS), "response_format.json_schema.", err)) return 400;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name"), *schema = field(js, "schema"), *x;
    if (!cJSON_IsString(name))
        return lmf_openai_error_set(err, 400, "response_format.json_schema.name", "missing_field",
                                    "response_format.json_schema.name: expected a string");
    if ((x = field(js, "strict")) && !cJSON_IsBool(x))
        return lmf_openai_error_set(err, 400, "response_format.json_schema.strict", "invalid_type",
                                    "response_format.json_schema.strict: expected true or false");
    if (schema && !cJSON_IsObject(schema))
        return lmf_openai_error_set(err, 400, "response_format.json_schema.schema", "invalid_type",
                                    "response_format.json_schema.schema: expected a JSON Schema object");
    char *text = schema ? cJSON_PrintUnformatted(schema) : NULL;
    lmf_status st = lmf_grammar_json(text, g);
    cJSON_free(text);
    if (st != LMF_OK)
        return lmf_openai_error_set(err, 400, "response_format.json_schema.schema", "invalid_value",
                                    "response_format.json_schema.%s", lmf_last_error());
    return 0;
}

/* Whether the rendered prompt ends inside an open <think> (a template that starts the reply thinking). */
static int ends_in_think(const lmf_text *t) {
    size_t n = t->len;
    while (n > 0 && strchr(" \t\r\n", t->data[n - 1])) n--;
    return n >= 7 && !memcmp(t->data + n - 7, "<think>", 7);
}

/* messages: OpenAI's message objects (role system, user, assistant or tool; content a string, text parts, or null
 * beside tool_calls; tool_calls, tool_call_id, name, reasoning_content), checked by lmf_chat_messages_prepare and
 * handed to the model's chat template as they are (with kwargs, the request's chat_template_kwargs, and tools, or
 * NULL), then encoded as `lmforge chat` does. The root is the request's own parse: prepare rewrites it in place. */
static int parse_messages(const lmf_openai_model *m, cJSON *msgs, const cJSON *kwargs, const cJSON *tools,
                          lmf_openai_request *r, lmf_openai_error *err) {
    static const char *const MSG_FIELDS[] = {"role", "content", "name", "tool_calls", "tool_call_id",
                                             "reasoning_content"};
    static const char *const CALL_FIELDS[] = {"id", "type", "function"};
    static const char *const FN_FIELDS[] = {"name", "arguments"};
    static const char *const PART_FIELDS[] = {"type", "text"};
    char prefix[96];
    int i = 0;
    for (const cJSON *msg = cJSON_IsArray(msgs) ? msgs->child : NULL; msg; msg = msg->next, i++) {
        if (!cJSON_IsObject(msg)) break; /* prepare names it */
        snprintf(prefix, sizeof prefix, "messages[%d].", i);
        if (check_keys(msg, MSG_FIELDS, COUNT(MSG_FIELDS), prefix, err)) return 400;
        const cJSON *x, *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
        int k = 0;
        for (x = cJSON_IsArray(c) ? c->child : NULL; x; x = x->next, k++) {
            snprintf(prefix, sizeof prefix, "messages[%d].content[%d].", i, k);
            if (cJSON_IsObject(x) && check_keys(x, PART_FIELDS, COUNT(PART_FIELDS), prefix, err)) return 400;
        }
        c = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
        k = 0;
        for (x = cJSON_IsArray(c) ? c->child : NULL; x; x = x->next, k++) {
            snprintf(prefix, sizeof prefix, "messages[%d].tool_calls[%d].", i, k);
            if (cJSON_IsObject(x) && check_keys(x, CALL_FIELDS, COUNT(CALL_FIELDS), prefix, err)) return 400;
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(x, "function");
            snprintf(prefix, sizeof prefix, "messages[%d].tool_calls[%d].function.", i, k);
            if (cJSON_IsObject(fn) && check_keys(fn, FN_FIELDS, COUNT(FN_FIELDS), prefix, err)) return 400;
        }
    }
    char param[96] = "messages";
    if (lmf_chat_messages_prepare(msgs, param, sizeof param) != LMF_OK)
        return lmf_openai_error_set(err, 400, param, "invalid_value", "%s", lmf_last_error());
    lmf_chat_template t = {0};
    int rc = template_with_kwargs(m->tmpl, kwargs, &t, err);
    if (!rc) {
        const lmf_chat_template *tm = kwargs ? &t : m->tmpl;
        lmf_text text = {0};
        lmf_status st = lmf_chat_render_json(tm, msgs, tools, 1, &text, NULL);
        if (st == LMF_OK) st = lmf_chat_encode_text(m->tok, tm, m->bos, text.data, text.len, &r->prompt);
        if (st != LMF_OK)
            rc = lmf_openai_error_set(err, 400, "messages", "invalid_value", "messages: %s", lmf_last_error());
        /* a constrained reply starts with what the grammar says, never inside a <think> */
        r->think_open = r->reasoning && !r->req.grammar && ends_in_think(&text);
        free(text.data);
    }
    cJSON_free(t.kwargs_json);
    return rc;
}

/* The chat fields beside messages: tools, tool_choice, parallel_tool_calls; then the messages rendered with them. */
static int parse_chat(const lmf_openai_model *m, cJSON *root, lmf_openai_request *r, lmf_openai_error *err) {
    const cJSON *tools = field(root, "tools"), *j;
    int mode;
    const char *only;
    r->parallel_tool_calls = 1;
    if (tools && parse_tools(tools, err)) return 400;
    if (parse_tool_choice(field(root, "tool_choice"), tools != NULL, &mode, &only, err)) return 400;
    if ((j = field(root, "parallel_tool_calls")) && want_bool(j, "parallel_tool_calls", &r->parallel_tool_calls, err))
        return 400;
    if (tools && mode && (!m->tmpl->jinja || !m->tmpl->renders_tools))
        return lmf_openai_error_set(err, 400, "tools", "invalid_value",
                                    "tools: this model's chat template %s, so the model would never see them",
                                    m->tmpl->jinja ? "does not render tools" : "is not run (built-in renderer)");
    /* "none": the model is not told about tools (vLLM's --exclude-tools-when-tool-choice-none) */
    if (!mode) tools = NULL;
    r->parse_tools = tools && m->tmpl->hermes_tool_calls;
    if (mode >= 2) {
        if (!r->parse_tools)
            return lmf_openai_error_set(err, 400, "tool_choice", "invalid_value",
                                        "tool_choice: %s needs a chat template with Hermes-style <tool_call> blocks "
                                        "(Qwen2.5, Qwen3, Hermes: serve --chat-template), the only calls lmforge "
                                        "parses", mode == 2 ? "\"required\"" : "a named function");
        if (r->req.grammar)
            return lmf_openai_error_set(err, 400, "response_format", "invalid_value",
                                        "response_format: not with tool_choice %s (the reply is a tool call)",
                                        mode == 2 ? "\"required\"" : "naming a function");
        if (tool_grammar(tools, only, r->parallel_tool_calls, &r->req.grammar, err)) return 400;
    }
    r->reasoning = m->reasoning && m->tmpl->jinja && m->tmpl->thinks;
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs || cJSON_IsNull(msgs))
        return lmf_openai_error_set(err, 400, "messages", "missing_field", "messages is required");
    return parse_messages(m, msgs, field(root, "chat_template_kwargs"), tools, r, err);
}

/* prompt: a string (BOS first when the model adds one, then the text with special-token text such as <|im_end|> read
 * as that token, as `lmforge generate -p`, llama-server and vLLM read a completion prompt) or an array of token ids
 * (used as they are). Chat prompts are read the same way after the template renders them (lmf_chat_encode), message
 * contents included, as transformers' apply_chat_template(tokenize=True), vLLM and llama-server do. */
static int parse_prompt(const lmf_openai_model *m, const cJSON *p, lmf_ids *out, lmf_openai_error *err) {
    if (cJSON_IsString(p)) {
        if (m->bos >= 0) lmf_ids_push(out, &m->bos, 1);
        if (lmf_tokenizer_encode(m->tok, p->valuestring, strlen(p->valuestring), LMF_ENCODE_ALLOW_SPECIAL, out) !=
            LMF_OK)
            return lmf_openai_error_set(err, 400, "prompt", "invalid_value", "prompt: %s", lmf_last_error());
        if (out->len == 0) return lmf_openai_error_set(err, 400, "prompt", "invalid_value", "prompt: it is empty");
        return 0;
    }
    if (!cJSON_IsArray(p))
        return lmf_openai_error_set(err, 400, "prompt", "invalid_type",
                                    "prompt: expected a string or an array of token ids, got %s", type_name(p));
    int vocab = lmf_tokenizer_vocab_size(m->tok), i = 0;
    for (const cJSON *t = p->child; t; t = t->next, i++) {
        char param[32];
        snprintf(param, sizeof param, "prompt[%d]", i);
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble))
            return lmf_openai_error_set(err, 400, param, "invalid_type",
                                        "%s: expected a token id (an integer), got %s (one prompt per request: a "
                                        "string or a list of ids)", param, type_name(t));
        if (t->valuedouble < 0 || t->valuedouble >= vocab)
            return lmf_openai_error_set(err, 400, param, "invalid_value",
                                        "%s: token id %.0f is outside the vocabulary [0, %d)", param, t->valuedouble,
                                        vocab);
        int32_t id = (int32_t)t->valuedouble;
        lmf_ids_push(out, &id, 1);
    }
    if (out->len == 0) return lmf_openai_error_set(err, 400, "prompt", "invalid_value", "prompt: it is empty");
    return 0;
}

static int parse_stop(const cJSON *s, lmf_openai_request *r, lmf_openai_error *err) {
    const cJSON *one = cJSON_IsString(s) ? s : NULL;
    if (!one && !cJSON_IsArray(s))
        return lmf_openai_error_set(err, 400, "stop", "invalid_type",
                                    "stop: expected a string or an array of up to %d strings, got %s",
                                    LMF_OPENAI_MAX_STOPS, type_name(s));
    int n = one ? 1 : cJSON_GetArraySize(s);
    if (n > LMF_OPENAI_MAX_STOPS)
        return lmf_openai_error_set(err, 400, "stop", "invalid_value", "stop: at most %d strings, got %d",
                                    LMF_OPENAI_MAX_STOPS, n);
    const cJSON *it = one ? one : s->child;
    for (int i = 0; i < n; i++, it = it->next) {
        char param[16];
        snprintf(param, sizeof param, one ? "stop" : "stop[%d]", i);
        if (want_string(it, param, err)) return 400;
        if (!it->valuestring[0])
            return lmf_openai_error_set(err, 400, param, "invalid_value", "%s: a stop string must not be empty", param);
        r->stops[r->req.n_stops++] = strdup(it->valuestring);
    }
    r->req.stops = (const char *const *)r->stops;
    return 0;
}

/* logit_bias: {"token id": bias in [-100, 100]} (OpenAI's: -100 bans a token, 100 all but forces it), added to the
 * logits before penalties' truncation and sampling; logprobs still report the model's own. */
static int parse_logit_bias(const lmf_openai_model *m, const cJSON *lb, lmf_openai_request *r,
                            lmf_openai_error *err) {
    if (!cJSON_IsObject(lb))
        return lmf_openai_error_set(err, 400, "logit_bias", "invalid_type",
                                    "logit_bias: expected an object of token ids and biases, got %s", type_name(lb));
    int n = cJSON_GetArraySize(lb), vocab = lmf_tokenizer_vocab_size(m->tok), k = 0;
    if (n > 1024)
        return lmf_openai_error_set(err, 400, "logit_bias", "invalid_value", "logit_bias: at most 1024 tokens, got %d",
                                    n);
    r->bias_ids = malloc(sizeof(int32_t) * (size_t)(n + 1));
    r->bias = malloc(sizeof(float) * (size_t)(n + 1));
    for (const cJSON *b = lb->child; b; b = b->next, k++) {
        char param[64], *end;
        snprintf(param, sizeof param, "logit_bias.%.40s", b->string);
        errno = 0;
        long id = strtol(b->string, &end, 10);
        if (!b->string[0] || *end || errno || id < 0 || id >= vocab)
            return lmf_openai_error_set(err, 400, param, "invalid_value",
                                        "%s: a token id (an integer in [0, %d) written as a string) is expected", param,
                                        vocab);
        double x;
        if (want_number(b, param, -100, 100, 0, &x, err)) return 400;
        r->bias_ids[k] = (int32_t)id, r->bias[k] = (float)x;
    }
    r->req.bias_ids = r->bias_ids, r->req.bias = r->bias, r->req.n_bias = k;
    return 0;
}

static int parse_stream_options(const cJSON *so, lmf_openai_request *r, lmf_openai_error *err) {
    static const char *const SO_FIELDS[] = {"include_usage"};
    if (!cJSON_IsObject(so))
        return lmf_openai_error_set(err, 400, "stream_options", "invalid_type",
                                    "stream_options: expected an object, got %s", type_name(so));
    if (check_keys(so, SO_FIELDS, COUNT(SO_FIELDS), "stream_options.", err)) return 400;
    const cJSON *u = field(so, "include_usage");
    return u ? want_bool(u, "stream_options.include_usage", &r->include_usage, err) : 0;
}

/* The sampling and length fields both kinds share. */
static int parse_common(const cJSON *root, lmf_openai_kind kind, lmf_openai_request *r, lmf_openai_error *err) {
    lmf_engine_request *q = &r->req;
    const cJSON *j;
    double x;
    if ((j = field(root, "max_tokens"))) {
        if (want_int(j, "max_tokens", 1, 1 << 30, &x, err)) return 400;
        q->max_tokens = (int)x;
    }
    if (kind == LMF_OPENAI_CHAT && (j = field(root, "max_completion_tokens"))) {
        if (want_int(j, "max_completion_tokens", 1, 1 << 30, &x, err)) return 400;
        if (field(root, "max_tokens") && q->max_tokens != (int)x)
            return lmf_openai_error_set(err, 400, "max_completion_tokens", "invalid_value",
                                        "max_completion_tokens (%d) and max_tokens (%d) disagree: give one", (int)x,
                                        q->max_tokens);
        q->max_tokens = (int)x;
    }
    if ((j = field(root, "temperature"))) {
        if (want_number(j, "temperature", 0, 2, 0, &x, err)) return 400;
        q->sampling.temperature = (float)x;
    }
    if ((j = field(root, "top_p"))) {
        if (want_number(j, "top_p", 0, 1, 1, &x, err)) return 400;
        q->sampling.top_p = (float)x;
    }
    if ((j = field(root, "top_k"))) {
        if (want_int(j, "top_k", 0, 1 << 30, &x, err)) return 400;
        q->sampling.top_k = (int)x;
    }
    if ((j = field(root, "min_p"))) {
        if (want_number(j, "min_p", 0, 1, 0, &x, err)) return 400;
        q->sampling.min_p = (float)x;
    }
    if ((j = field(root, "seed"))) {
        /* any integer a double holds exactly; negative seeds wrap as two's complement, as OpenAI's int64 does */
        if (want_int(j, "seed", -9007199254740992.0, 9007199254740992.0, &x, err)) return 400;
        q->sampling.seed = (uint64_t)(int64_t)x;
        r->seeded = 1;
    }
    if ((j = field(root, "presence_penalty"))) {
        if (want_number(j, "presence_penalty", -2, 2, 0, &x, err)) return 400;
        q->presence_penalty = (float)x;
    }
    if ((j = field(root, "frequency_penalty"))) {
        if (want_number(j, "frequency_penalty", -2, 2, 0, &x, err)) return 400;
        q->frequency_penalty = (float)x;
    }
    if ((j = field(root, "repetition_penalty"))) {
        if (want_number(j, "repetition_penalty", 0, 10, 1, &x, err)) return 400;
        q->sampling.repeat_penalty = (float)x;
    }
    if ((j = field(root, "stop")) && parse_stop(j, r, err)) return 400;
    if ((j = field(root, "n"))) {
        if (want_int(j, "n", 1, 1 << 30, &x, err)) return 400;
        if (x != 1)
            return lmf_openai_error_set(err, 400, "n", "invalid_value",
                                        "n: lmforge returns one choice (n = 1), got %.0f", x);
    }
    if ((j = field(root, "stream")) && want_bool(j, "stream", &r->stream, err)) return 400;
    if ((j = field(root, "stream_options"))) {
        if (!r->stream)
            return lmf_openai_error_set(err, 400, "stream_options", "invalid_value",
                                        "stream_options: only allowed with \"stream\": true");
        if (parse_stream_options(j, r, err)) return 400;
    }
    if ((j = field(root, "user")) && want_string(j, "user", err)) return 400;
    if (kind == LMF_OPENAI_CHAT) {
        int lp = 0;
        if ((j = field(root, "logprobs")) && want_bool(j, "logprobs", &lp, err)) return 400;
        q->logprobs = lp;
        if ((j = field(root, "top_logprobs"))) {
            if (want_int(j, "top_logprobs", 0, LMF_ENGINE_TOP_MAX, &x, err)) return 400;
            if (!lp)
                return lmf_openai_error_set(err, 400, "top_logprobs", "invalid_value",
                                            "top_logprobs: needs \"logprobs\": true");
            q->top_logprobs = (int)x;
        }
    } else if ((j = field(root, "logprobs"))) {
        /* completions: logprobs is the number of alternatives per token (0: the sampled token's only) */
        if (want_int(j, "logprobs", 0, LMF_ENGINE_TOP_MAX, &x, err)) return 400;
        q->logprobs = 1;
        q->top_logprobs = (int)x;
    }
    return 0;
}

int lmf_openai_parse(const lmf_openai_model *m, lmf_openai_kind kind, const char *body, size_t len,
                     lmf_openai_request *out, lmf_openai_error *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->req.sampling = lmf_sampler_defaults();
    out->req.max_tokens = kind == LMF_OPENAI_CHAT ? 0 : 16; /* OpenAI's defaults: until the context / 16 */
    cJSON *root = parse_object(body, len, err);
    if (!root) return 400;
    int rc = kind == LMF_OPENAI_CHAT ? check_keys(root, CHAT_FIELDS, COUNT(CHAT_FIELDS), "", err)
                                     : check_keys(root, COMPLETION_FIELDS, COUNT(COMPLETION_FIELDS), "", err);
    const cJSON *j;
    if (!rc && (j = field(root, "model"))) {
        if (!(rc = want_string(j, "model", err)) && strcmp(j->valuestring, m->id))
            rc = lmf_openai_error_set(err, 404, "model", "model_not_found",
                                      "the model '%.128s' does not exist: this server serves '%s'", j->valuestring,
                                      m->id);
    }
    if (!rc) rc = parse_common(root, kind, out, err);
    if (!rc && (j = field(root, "response_format"))) rc = parse_response_format(j, &out->req.grammar, err);
    if (!rc && (j = field(root, "logit_bias"))) rc = parse_logit_bias(m, j, out, err);
    if (!rc && kind == LMF_OPENAI_CHAT) {
        rc = parse_chat(m, root, out, err);
    } else if (!rc) {
        if (!(j = field(root, "prompt")))
            rc = lmf_openai_error_set(err, 400, "prompt", "missing_field", "prompt is required");
        else
            rc = parse_prompt(m, j, &out->prompt, err);
    }
    cJSON_Delete(root);
    if (rc) return rc;
    const char *pname = kind == LMF_OPENAI_CHAT ? "messages" : "prompt";
    if (m->n_ctx > 0 && out->prompt.len >= (size_t)m->n_ctx)
        return lmf_openai_error_set(err, 400, pname, "context_length_exceeded",
                                    "the prompt has %zu tokens, and the context holds %d (prompt and reply together): "
                                    "shorten the %s", out->prompt.len, m->n_ctx, pname);
    if (m->n_ctx > 0 && out->req.max_tokens > 0 && out->prompt.len + (size_t)out->req.max_tokens > (size_t)m->n_ctx)
        return lmf_openai_error_set(err, 400, "max_tokens", "context_length_exceeded",
                                    "the context holds %d tokens, and %zu (prompt) + %d (max_tokens) were asked for: "
                                    "lower max_tokens or shorten the %s", m->n_ctx, out->prompt.len,
                                    out->req.max_tokens, pname);
    out->req.prompt = out->prompt.data;
    out->req.n_prompt = (int)out->prompt.len;
    return 0;
}

void lmf_openai_request_free(lmf_openai_request *r) {
    if (!r) return;
    free(r->prompt.data);
    for (int i = 0; i < LMF_OPENAI_MAX_STOPS; i++) free(r->stops[i]);
    lmf_grammar_free(r->req.grammar);
    free(r->bias_ids);
    free(r->bias);
    memset(r, 0, sizeof *r);
}

/* ---- tokenize / detokenize / models ----------------------------------------------------------------------------- */

int lmf_openai_tokenize(const lmf_openai_model *m, const char *body, size_t len, char **json, lmf_openai_error *err) {
    static const char *const FIELDS[] = {"content", "add_special", "parse_special"};
    cJSON *root = parse_object(body, len, err);
    if (!root) return 400;
    int rc = check_keys(root, FIELDS, COUNT(FIELDS), "", err), add_special = 0, parse_special = 1;
    const cJSON *content = field(root, "content"), *j;
    if (!rc && !content) rc = lmf_openai_error_set(err, 400, "content", "missing_field", "content is required");
    if (!rc) rc = want_string(content, "content", err);
    if (!rc && (j = field(root, "add_special"))) rc = want_bool(j, "add_special", &add_special, err);
    if (!rc && (j = field(root, "parse_special"))) rc = want_bool(j, "parse_special", &parse_special, err);
    if (!rc) {
        lmf_ids ids = {0};
        if (add_special && m->bos >= 0) lmf_ids_push(&ids, &m->bos, 1);
        if (lmf_tokenizer_encode(m->tok, content->valuestring, strlen(content->valuestring),
                                 parse_special ? LMF_ENCODE_ALLOW_SPECIAL : 0, &ids) != LMF_OK) {
            rc = lmf_openai_error_set(err, 400, "content", "invalid_value", "content: %s", lmf_last_error());
        } else {
            cJSON *out = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(out, "tokens");
            for (size_t i = 0; i < ids.len; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids.data[i]));
            *json = print(out);
        }
        free(ids.data);
    }
    cJSON_Delete(root);
    return rc;
}

int lmf_openai_detokenize(const lmf_openai_model *m, const char *body, size_t len, char **json,
                          lmf_openai_error *err) {
    static const char *const FIELDS[] = {"tokens"};
    cJSON *root = parse_object(body, len, err);
    if (!root) return 400;
    int rc = check_keys(root, FIELDS, COUNT(FIELDS), "", err), vocab = lmf_tokenizer_vocab_size(m->tok), i = 0;
    const cJSON *toks = field(root, "tokens");
    if (!rc && !toks) rc = lmf_openai_error_set(err, 400, "tokens", "missing_field", "tokens is required");
    if (!rc && !cJSON_IsArray(toks))
        rc = lmf_openai_error_set(err, 400, "tokens", "invalid_type", "tokens: expected an array of token ids, got %s",
                                  type_name(toks));
    lmf_ids ids = {0};
    for (const cJSON *t = rc ? NULL : toks->child; t && !rc; t = t->next, i++) {
        char param[32];
        snprintf(param, sizeof param, "tokens[%d]", i);
        double x = 0;
        if (!(rc = want_int(t, param, 0, vocab - 1, &x, err))) {
            int32_t id = (int32_t)x;
            lmf_ids_push(&ids, &id, 1);
        }
    }
    if (!rc) {
        lmf_text text = {0};
        lmf_tokenizer_decode(m->tok, ids.data, ids.len, 0, &text); /* ids checked above: cannot fail */
        cJSON *out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "content", utf8_string(text.data ? text.data : "", text.len));
        free(text.data);
        *json = print(out);
    }
    free(ids.data);
    cJSON_Delete(root);
    return rc;
}

static cJSON *model_object(const lmf_openai_model *m, long created) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "owned_by", "lmforge");
    return o;
}

char *lmf_openai_models_json(const lmf_openai_model *m, long created) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "data"), model_object(m, created));
    return print(root);
}

char *lmf_openai_model_json(const lmf_openai_model *m, long created) { return print(model_object(m, created)); }

/* ---- replies --------------------------------------------------------------------------------------------------- */

#define FINGERPRINT "lmforge-" LMF_VERSION

const char *lmf_openai_finish_reason(lmf_stop_reason reason) {
    return reason == LMF_STOP_LENGTH || reason == LMF_STOP_CONTEXT ? "length" : "stop";
}

static const char *reply_finish_reason(const lmf_openai_reply *r) {
    const char *f = lmf_openai_finish_reason(r->reason);
    return r->n_calls && !strcmp(f, "stop") ? "tool_calls" : f; /* vLLM's and OpenAI's */
}

void lmf_openai_reply_init(lmf_openai_reply *r, const lmf_openai_model *m, const lmf_openai_request *q,
                           const char *id_suffix, long created) {
    memset(r, 0, sizeof *r);
    r->kind = q->kind;
    r->stream = q->stream, r->include_usage = q->include_usage;
    r->logprobs = q->req.logprobs, r->top_logprobs = q->req.top_logprobs;
    snprintf(r->id, sizeof r->id, "%s%s", q->kind == LMF_OPENAI_CHAT ? "chatcmpl-" : "cmpl-", id_suffix);
    r->created = created;
    r->m = m;
    if (q->kind == LMF_OPENAI_CHAT && (q->parse_tools || q->reasoning)) {
        r->parse = 1;
        lmf_reply_parser_init(&r->parser, q->parse_tools, q->parallel_tool_calls, q->reasoning, q->think_open);
        if (!r->stream) r->tool_calls = cJSON_CreateArray();
    }
    if (r->logprobs && !r->stream) {
        if (r->kind == LMF_OPENAI_CHAT) r->lp = cJSON_CreateArray();
        else r->lp_tokens = cJSON_CreateArray(), r->lp_values = cJSON_CreateArray(), r->lp_top = cJSON_CreateArray(),
             r->lp_offsets = cJSON_CreateArray();
    }
}

void lmf_openai_reply_free(lmf_openai_reply *r) {
    if (!r) return;
    free(r->text.data);
    free(r->reasoning.data);
    lmf_reply_parser_free(&r->parser);
    cJSON_Delete(r->tool_calls);
    cJSON_Delete(r->lp), cJSON_Delete(r->lp_tokens), cJSON_Delete(r->lp_values), cJSON_Delete(r->lp_top);
    cJSON_Delete(r->lp_offsets);
    memset(r, 0, sizeof *r);
}

/* The token's text decoded alone (special tokens as their text), raw bytes in *t. */
static void token_bytes(const lmf_openai_model *m, int32_t id, lmf_text *t) {
    t->len = 0;
    if (lmf_tokenizer_decode(m->tok, &id, 1, 0, t) != LMF_OK) t->len = 0;
}

static cJSON *bytes_array(const lmf_text *t) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < t->len; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)t->data[i]));
    return a;
}

/* Chat: {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]} for a TOKEN event. */
static cJSON *chat_logprob(const lmf_openai_reply *r, const lmf_engine_event *ev) {
    lmf_text t = {0};
    cJSON *o = cJSON_CreateObject(), *top = cJSON_CreateArray();
    token_bytes(r->m, ev->token, &t);
    cJSON_AddItemToObject(o, "token", utf8_string(t.data ? t.data : "", t.len));
    cJSON_AddNumberToObject(o, "logprob", ev->logprob);
    cJSON_AddItemToObject(o, "bytes", bytes_array(&t));
    for (int i = 0; i < ev->n_top && i < r->top_logprobs; i++) {
        cJSON *a = cJSON_CreateObject();
        token_bytes(r->m, ev->top[i].id, &t);
        cJSON_AddItemToObject(a, "token", utf8_string(t.data ? t.data : "", t.len));
        cJSON_AddNumberToObject(a, "logprob", ev->top[i].logprob);
        cJSON_AddItemToObject(a, "bytes", bytes_array(&t));
        cJSON_AddItemToArray(top, a);
    }
    cJSON_AddItemToObject(o, "top_logprobs", top);
    free(t.data);
    return o;
}

/* Completions: the token's four entries appended to the four arrays. */
static void completion_logprob(lmf_openai_reply *r, const lmf_engine_event *ev, cJSON *tokens, cJSON *values,
                               cJSON *tops, cJSON *offsets) {
    lmf_text t = {0};
    token_bytes(r->m, ev->token, &t);
    cJSON_AddItemToArray(tokens, utf8_string(t.data ? t.data : "", t.len));
    cJSON_AddItemToArray(values, cJSON_CreateNumber(ev->logprob));
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)r->text_bytes));
    r->text_bytes += t.len; /* offsets count the tokens' own bytes: the text as the tokens spell it */
    cJSON *top = cJSON_CreateObject();
    for (int i = 0; i < ev->n_top && i < r->top_logprobs; i++) {
        token_bytes(r->m, ev->top[i].id, &t);
        lmf_text key = {0};
        lmf_openai_put_utf8(&key, t.data ? t.data : "", t.len);
        /* two ids can read alike once invalid bytes are replaced: keep the likelier one */
        if (!cJSON_GetObjectItemCaseSensitive(top, key.data ? key.data : ""))
            cJSON_AddNumberToObject(top, key.data ? key.data : "", ev->top[i].logprob);
        free(key.data);
    }
    cJSON_AddItemToArray(tops, top);
    free(t.data);
}

static cJSON *usage_object(const lmf_openai_reply *r) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", r->gen_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", r->prompt_tokens + r->gen_tokens);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "prompt_tokens_details"), "cached_tokens", r->cached_tokens);
    return u;
}

/* The fields every reply and chunk begins with. */
static cJSON *envelope(const lmf_openai_reply *r, const char *object) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", r->id);
    cJSON_AddStringToObject(c, "object", object);
    cJSON_AddNumberToObject(c, "created", (double)r->created);
    cJSON_AddStringToObject(c, "model", r->m->id);
    cJSON_AddStringToObject(c, "system_fingerprint", FINGERPRINT);
    return c;
}

/* A chunk's envelope; *choice receives its one choice (NULL: a usage chunk with "choices": []). */
static cJSON *chunk(const lmf_openai_reply *r, cJSON **choice) {
    cJSON *c = envelope(r, r->kind == LMF_OPENAI_CHAT ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(c, "choices");
    if (choice) {
        *choice = cJSON_CreateObject();
        cJSON_AddNumberToObject(*choice, "index", 0);
        cJSON_AddItemToArray(choices, *choice);
    }
    /* with include_usage every chunk carries "usage": null but the last, which carries the numbers */
    if (r->include_usage && choice) cJSON_AddNullToObject(c, "usage");
    return c;
}

static void sse(lmf_text *out, cJSON *j) {
    char *s = print(j);
    lmf_text_push(out, "data: ", 6);
    lmf_text_push(out, s, strlen(s));
    lmf_text_push(out, "\n\n", 2);
    free(s);
}

/* A content chunk: text (may be empty) and, for a TOKEN event with logprobs, the token's entry. */
static void stream_piece(lmf_openai_reply *r, const char *text, size_t len, const lmf_engine_event *tok,
                         lmf_text *out) {
    cJSON *choice, *c = chunk(r, &choice);
    int lp = tok && r->logprobs;
    if (r->kind == LMF_OPENAI_CHAT) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        cJSON_AddItemToObject(delta, "content", utf8_string(text, len));
        if (lp) cJSON_AddItemToArray(cJSON_AddArrayToObject(cJSON_AddObjectToObject(choice, "logprobs"), "content"),
                                     chat_logprob(r, tok));
        else cJSON_AddNullToObject(choice, "logprobs");
    } else {
        cJSON_AddItemToObject(choice, "text", utf8_string(text, len));
        if (lp) {
            cJSON *l = cJSON_AddObjectToObject(choice, "logprobs"), *tokens = cJSON_AddArrayToObject(l, "tokens");
            cJSON *values = cJSON_AddArrayToObject(l, "token_logprobs");
            cJSON *tops = cJSON_AddArrayToObject(l, "top_logprobs");
            completion_logprob(r, tok, tokens, values, tops, cJSON_AddArrayToObject(l, "text_offset"));
        } else {
            cJSON_AddNullToObject(choice, "logprobs");
        }
    }
    cJSON_AddNullToObject(choice, "finish_reason");
    sse(out, c);
}

/* Streaming chat opens with the assistant's role and empty content, as OpenAI's first chunk does. */
static void stream_start(lmf_openai_reply *r, lmf_text *out) {
    if (r->started) return;
    r->started = 1;
    if (r->kind != LMF_OPENAI_CHAT) return;
    cJSON *choice, *c = chunk(r, &choice), *delta = cJSON_AddObjectToObject(choice, "delta");
    cJSON_AddStringToObject(delta, "role", "assistant");
    cJSON_AddStringToObject(delta, "content", "");
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddNullToObject(choice, "finish_reason");
    sse(out, c);
}

static void stream_done(lmf_openai_reply *r, lmf_text *out) {
    cJSON *choice, *c = chunk(r, &choice);
    if (r->kind == LMF_OPENAI_CHAT) cJSON_AddObjectToObject(choice, "delta");
    else cJSON_AddStringToObject(choice, "text", "");
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", reply_finish_reason(r));
    sse(out, c);
    if (r->include_usage) {
        c = chunk(r, NULL);
        cJSON_AddItemToObject(c, "usage", usage_object(r));
        sse(out, c);
    }
    lmf_text_push(out, "data: [DONE]\n\n", 14);
}

/* A tool call's id: unique within the reply and across replies (the reply's own id is). */
static void call_id(const lmf_openai_reply *r, int k, char *buf, size_t cap) {
    const char *suffix = strchr(r->id, '-');
    snprintf(buf, cap, "call_%s_%d", suffix ? suffix + 1 : r->id, k);
}

/* A streamed chat chunk whose delta the caller fills; it carries the pending token's logprobs, once. */
static cJSON *delta_chunk(lmf_openai_reply *r, cJSON **c) {
    cJSON *choice;
    *c = chunk(r, &choice);
    cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
    if (r->lp_event) {
        cJSON_AddItemToArray(cJSON_AddArrayToObject(cJSON_AddObjectToObject(choice, "logprobs"), "content"),
                             chat_logprob(r, r->lp_event));
        r->lp_event = NULL;
    } else {
        cJSON_AddNullToObject(choice, "logprobs");
    }
    cJSON_AddNullToObject(choice, "finish_reason");
    return delta;
}

typedef struct {
    lmf_openai_reply *r;
    lmf_text *sse;
} parsed_ctx;

/* reply_parse's events: into the reply (not streaming) or as chunks, OpenAI's way: a call's first delta carries
 * index, id, type and name with empty arguments, the next one the arguments (vLLM and llama-server stream them so). */
static void on_parsed(void *ctx, lmf_reply_kind kind, const char *text, size_t n, const char *name, const char *args) {
    parsed_ctx *p = ctx;
    lmf_openai_reply *r = p->r;
    char id[80];
    if (kind == LMF_REPLY_TOOL_CALL) call_id(r, r->n_calls, id, sizeof id);
    if (!r->stream) {
        if (kind == LMF_REPLY_CONTENT) lmf_text_push(&r->text, text, n);
        else if (kind == LMF_REPLY_REASONING) lmf_text_push(&r->reasoning, text, n);
        else {
            cJSON *call = cJSON_CreateObject(), *fn;
            cJSON_AddStringToObject(call, "id", id);
            cJSON_AddStringToObject(call, "type", "function");
            fn = cJSON_AddObjectToObject(call, "function");
            cJSON_AddItemToObject(fn, "name", utf8_string(name, strlen(name)));
            cJSON_AddItemToObject(fn, "arguments", utf8_string(args, strlen(args)));
            cJSON_AddItemToArray(r->tool_calls, call);
        }
        if (kind == LMF_REPLY_TOOL_CALL) r->n_calls++;
        return;
    }
    cJSON *c, *delta = delta_chunk(r, &c);
    if (kind != LMF_REPLY_TOOL_CALL) {
        cJSON_AddItemToObject(delta, kind == LMF_REPLY_CONTENT ? "content" : "reasoning_content", utf8_string(text, n));
        sse(p->sse, c);
        return;
    }
    cJSON *calls = cJSON_AddArrayToObject(delta, "tool_calls"), *call = cJSON_CreateObject(), *fn;
    cJSON_AddItemToArray(calls, call);
    cJSON_AddNumberToObject(call, "index", r->n_calls);
    cJSON_AddStringToObject(call, "id", id);
    cJSON_AddStringToObject(call, "type", "function");
    fn = cJSON_AddObjectToObject(call, "function");
    cJSON_AddItemToObject(fn, "name", utf8_string(name, strlen(name)));
    cJSON_AddStringToObject(fn, "arguments", "");
    sse(p->sse, c);
    delta = delta_chunk(r, &c);
    call = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(delta, "tool_calls"), call);
    cJSON_AddNumberToObject(call, "index", r->n_calls);
    cJSON_AddItemToObject(cJSON_AddObjectToObject(call, "function"), "arguments", utf8_string(args, strlen(args)));
    sse(p->sse, c);
    r->n_calls++;
}

/* A chat event through the parser: its text split into content, reasoning and calls. */
static void parsed_event(lmf_openai_reply *r, const lmf_engine_event *ev, lmf_text *out) {
    parsed_ctx p = {r, out};
    int tok = ev->kind == LMF_ENGINE_TOKEN;
    if (r->stream) {
        stream_start(r, out);
        r->lp_event = tok && r->logprobs ? ev : NULL;
    } else if (tok && r->logprobs) {
        cJSON_AddItemToArray(r->lp, chat_logprob(r, ev));
    }
    if (ev->len) lmf_reply_parser_feed(&r->parser, ev->text, ev->len, on_parsed, &p);
    if (r->done) lmf_reply_parser_finish(&r->parser, on_parsed, &p);
    if (r->stream && r->lp_event) { /* the token's text is held back (a tag may begin): its logprobs go alone */
        cJSON *c, *delta = delta_chunk(r, &c);
        cJSON_AddStringToObject(delta, "content", "");
        sse(out, c);
    }
    r->lp_event = NULL;
    if (r->stream && r->done) stream_done(r, out);
}

void lmf_openai_reply_event(lmf_openai_reply *r, const lmf_engine_event *ev, lmf_text *out) {
    if (r->done) return;
    if (ev->kind == LMF_ENGINE_DONE) {
        r->done = 1;
        r->reason = ev->reason;
        r->prompt_tokens = ev->prompt_tokens, r->cached_tokens = ev->cached_tokens, r->gen_tokens = ev->gen_tokens;
    }
    if (r->parse) {
        parsed_event(r, ev, out);
        return;
    }
    if (r->stream) {
        stream_start(r, out);
        int tok = ev->kind == LMF_ENGINE_TOKEN;
        if (ev->len > 0 || (tok && r->logprobs)) stream_piece(r, ev->text ? ev->text : "", ev->len, tok ? ev : NULL,
                                                              out);
        if (r->done) stream_done(r, out);
        return;
    }
    if (ev->len) lmf_text_push(&r->text, ev->text, ev->len);
    if (ev->kind == LMF_ENGINE_TOKEN && r->logprobs) {
        if (r->kind == LMF_OPENAI_CHAT) cJSON_AddItemToArray(r->lp, chat_logprob(r, ev));
        else completion_logprob(r, ev, r->lp_tokens, r->lp_values, r->lp_top, r->lp_offsets);
    }
}

void lmf_openai_reply_error(lmf_openai_reply *r, const lmf_openai_error *e, lmf_text *out) {
    char *s = lmf_openai_error_json(e);
    lmf_text_push(out, "data: ", 6);
    lmf_text_push(out, s, strlen(s));
    lmf_text_push(out, "\n\n", 2);
    free(s);
    r->done = 1;
}

char *lmf_openai_reply_json(const lmf_openai_reply *r) {
    cJSON *c = envelope(r, r->kind == LMF_OPENAI_CHAT ? "chat.completion" : "text_completion");
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON *text = utf8_string(r->text.data ? r->text.data : "", r->text.len);
    if (r->kind == LMF_OPENAI_CHAT) {
        cJSON *msg = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        if (r->n_calls && !r->text.len) { /* OpenAI's shape: a reply that only calls tools has null content */
            cJSON_Delete(text);
            cJSON_AddNullToObject(msg, "content");
        } else {
            cJSON_AddItemToObject(msg, "content", text);
        }
        if (r->reasoning.len)
            cJSON_AddItemToObject(msg, "reasoning_content", utf8_string(r->reasoning.data, r->reasoning.len));
        if (r->n_calls) cJSON_AddItemToObject(msg, "tool_calls", cJSON_Duplicate(r->tool_calls, 1));
        if (r->lp) cJSON_AddItemToObject(cJSON_AddObjectToObject(choice, "logprobs"), "content",
                                         cJSON_Duplicate(r->lp, 1));
        else cJSON_AddNullToObject(choice, "logprobs");
    } else {
        cJSON_AddItemToObject(choice, "text", text);
        if (r->lp_tokens) {
            cJSON *l = cJSON_AddObjectToObject(choice, "logprobs");
            cJSON_AddItemToObject(l, "tokens", cJSON_Duplicate(r->lp_tokens, 1));
            cJSON_AddItemToObject(l, "token_logprobs", cJSON_Duplicate(r->lp_values, 1));
            cJSON_AddItemToObject(l, "top_logprobs", cJSON_Duplicate(r->lp_top, 1));
            cJSON_AddItemToObject(l, "text_offset", cJSON_Duplicate(r->lp_offsets, 1));
        } else {
            cJSON_AddNullToObject(choice, "logprobs");
        }
    }
    cJSON_AddStringToObject(choice, "finish_reason", reply_finish_reason(r));
    cJSON_AddItemToObject(c, "usage", usage_object(r));
    return print(c);
}
