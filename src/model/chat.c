/* chat.c — chat templates: turning a conversation into the prompt text a chat model was trained on.
 *
 * Models ship their template as Jinja (tokenizer.chat_template), which jinja.h's interpreter runs as transformers
 * does: messages (each message dict as given: tool calls, tool results, reasoning; chat.h), add_generation_prompt,
 * bos_token, eos_token, tools (or none), documents = none and the extra keyword variables (kwargs_json) are what it
 * sees. The family is still recognised from the markers: it names the
 * end-of-turn text and the built-in renderer that `--chat-format` asks for and that models without a template use:
 *   ChatML  (SmolLM2, Qwen, ...):  <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
 *   Llama-3:  <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> ...
 *             <|start_header_id|>assistant<|end_header_id|>\n\n
 *   Llama-2:  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
 * A ChatML template that inserts a default system message when the conversation has none (SmolLM2's "You are a
 * helpful AI assistant named SmolLM, ...") has that message extracted from the template text and applied. */
#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "model/chat.h"
#include "model/jinja.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Copies the text between `start` and `end` found after `from` in t (NULL if absent). Caller frees. */
static char *between(const char *t, const char *from, const char *start, const char *end) {
    const char *p = strstr(t, from);
    if (!p) return NULL;
    p = strstr(p, start);
    if (!p) return NULL;
    p += strlen(start);
    const char *q = strstr(p, end);
    if (!q) return NULL;
    char *s = lmf_xmalloc((size_t)(q - p) + 1);
    memcpy(s, p, (size_t)(q - p));
    s[q - p] = 0;
    return s;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(lmf_xmalloc(n), s, n);
}

lmf_status lmf_chat_template_parse(const char *jinja, lmf_chat_template *out) {
    memset(out, 0, sizeof *out);
    if (!jinja || !*jinja) {
        out->format = LMF_CHAT_CHATML; /* the common default, as llama.cpp falls back to */
        return LMF_OK;
    }
    if (strstr(jinja, "<|im_start|>")) {
        out->format = LMF_CHAT_CHATML;
        /* "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n...<|im_end|>\n' }}" */
        if (strstr(jinja, "!= 'system'") || strstr(jinja, "!= \"system\""))
            out->default_system = between(jinja, "system", "<|im_start|>system\n", "<|im_end|>");
    } else if (strstr(jinja, "<|start_header_id|>")) {
        out->format = LMF_CHAT_LLAMA3;
    } else if (strstr(jinja, "[INST]")) {
        out->format = LMF_CHAT_LLAMA2;
    } else {
        out->format = LMF_CHAT_OTHER;
        /* the end of a turn, for fine-tuning's loss masks: Gemma's and Phi-3's markers, else eos_token (set later) */
        static const char *const ends[] = {"<end_of_turn>", "<|end|>"};
        for (int i = 0; i < 2 && !out->end_of_turn; i++)
            if (strstr(jinja, ends[i])) out->end_of_turn = xstrdup(ends[i]);
    }
    /* what the server's reply parsing keys on: the template's own words for tools, tool calls and reasoning */
    out->renders_tools = strstr(jinja, "tools") != NULL;
    out->hermes_tool_calls = strstr(jinja, "<tool_call>") != NULL;
    out->thinks = strstr(jinja, "<think>") != NULL || strstr(jinja, "</think>") != NULL;
    lmf_status st = lmf_jinja_compile(jinja, strlen(jinja), &out->jinja);
    if (st != LMF_OK && out->format != LMF_CHAT_OTHER) {
        out->jinja = NULL; /* a recognised family: its built-in renderer, as before templates were run */
        return LMF_OK;
    }
    if (st != LMF_OK) lmf_chat_template_free(out);
    return st;
}

static char *token_text(const lmf_tokenizer *tok, int32_t id) {
    size_t n;
    const char *b = id >= 0 ? lmf_tokenizer_token_bytes(tok, id, &n) : NULL;
    if (!b) return NULL;
    char *s = lmf_xmalloc(n + 1);
    memcpy(s, b, n);
    s[n] = 0;
    return s;
}

/* The model's BOS / EOS texts and end of turn on a parsed template. */
static void model_tokens(const lmf_weights *w, lmf_chat_template *out);

lmf_status lmf_chat_template_from_weights(const lmf_weights *w, lmf_chat_template *out) {
    LMF_TRY(lmf_chat_template_parse(w->chat_template, out));
    model_tokens(w, out);
    return LMF_OK;
}

lmf_status lmf_chat_template_from_file(const lmf_weights *w, const char *path, lmf_chat_template *out) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len;
    LMF_TRY(lmf_read_file_max(path, 4u << 20, "a chat template", &text, &len));
    /* a file asked for by name must run as written: no quiet fallback to a built-in renderer */
    lmf_jinja *j = NULL;
    lmf_status st = len ? lmf_jinja_compile(text, len, &j) : lmf_fail(LMF_ERR_FORMAT, "the file is empty");
    lmf_jinja_free(j);
    if (st == LMF_OK) st = lmf_chat_template_parse(text, out);
    free(text);
    if (st != LMF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        return lmf_fail(st, "%s: %s", path, msg);
    }
    model_tokens(w, out);
    return LMF_OK;
}

static void model_tokens(const lmf_weights *w, lmf_chat_template *out) {
    if (w->tok) {
        out->bos_token = token_text(w->tok, w->bos_id);
        out->eos_token = token_text(w->tok, w->eos_id);
    }
    if (out->format == LMF_CHAT_OTHER && !out->end_of_turn && out->eos_token)
        out->end_of_turn = xstrdup(out->eos_token);
}

lmf_status lmf_chat_template_set_kwargs(lmf_chat_template *t, const char *json) {
    cJSON *j = cJSON_Parse(json);
    int ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok) return lmf_fail(LMF_ERR_ARG, "chat template kwargs: expected a JSON object, got '%.80s'", json);
    free(t->kwargs_json);
    t->kwargs_json = xstrdup(json);
    return LMF_OK;
}

void lmf_chat_template_use_builtin(lmf_chat_template *t) {
    lmf_jinja_free(t->jinja);
    t->jinja = NULL;
}

void lmf_chat_template_free(lmf_chat_template *t) {
    lmf_jinja_free(t->jinja);
    LMF_FREE_ALL(t->default_system, t->bos_token, t->eos_token, t->end_of_turn, t->kwargs_json);
    memset(t, 0, sizeof *t);
}

static const char *const chat_format_names[] = {"chatml", "llama2", "llama3", "template"}; /* by lmf_chat_format */

const char *lmf_chat_format_name(lmf_chat_format f) {
    return (unsigned)f < sizeof chat_format_names / sizeof *chat_format_names ? chat_format_names[f] : "?";
}

lmf_status lmf_chat_format_parse(const char *name, lmf_chat_format *out) {
    int i = lmf_name_index(name, chat_format_names, 3); /* the built-in renderers */
    if (i < 0) return lmf_fail(LMF_ERR_ARG, "unknown chat format '%s' (chatml, llama2, llama3)", name);
    *out = (lmf_chat_format)i;
    return LMF_OK;
}

static void put(lmf_text *o, const char *s) { lmf_text_push(o, s, strlen(s)); }

/* Each message as open + role + mid + content + close (ChatML and Llama-3 differ only in these markers). */
static void put_turns(lmf_text *o, const lmf_chat_message *msgs, int n, const char *open, const char *mid,
                      const char *close) {
    for (int i = 0; i < n; i++) {
        put(o, open);
        put(o, msgs[i].role);
        put(o, mid);
        put(o, msgs[i].content);
        put(o, close);
    }
}

/* ---- messages as JSON ----------------------------------------------------------------------------------------- */

static lmf_status bad_field(char *param, size_t cap, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static lmf_status bad_field(char *param, size_t cap, const char *field, const char *fmt, ...) {
    if (param && cap) snprintf(param, cap, "%s", field);
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lmf_fail(LMF_ERR_ARG, "%s: %s", field, msg);
}

static const char *json_type(const cJSON *j) {
    if (!j) return "missing";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    return cJSON_IsObject(j) ? "an object" : "an invalid value";
}

/* content as a list of text parts becomes one string, the parts joined with "\n" (vLLM's and llama-server's
 * string form, which templates that concatenate content need). */
static lmf_status flatten_content(cJSON *msg, cJSON *content, int i, char *param, size_t cap) {
    char f[96];
    lmf_text joined = {0};
    lmf_text_push(&joined, "", 0);
    int j = 0;
    for (const cJSON *part = content->child; part; part = part->next, j++) {
        snprintf(f, sizeof f, "messages[%d].content[%d]", i, j);
        if (!cJSON_IsObject(part)) {
            free(joined.data);
            return bad_field(param, cap, f, "expected a text part {\"type\": \"text\", \"text\": ...}, got %s",
                             json_type(part));
        }
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        snprintf(f, sizeof f, "messages[%d].content[%d].type", i, j);
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text")) {
            free(joined.data);
            return bad_field(param, cap, f, "lmforge takes text parts only (\"type\": \"text\"), got %s%.32s%s",
                             cJSON_IsString(type) ? "'" : json_type(type), cJSON_IsString(type) ? type->valuestring : "",
                             cJSON_IsString(type) ? "'" : "");
        }
        snprintf(f, sizeof f, "messages[%d].content[%d].text", i, j);
        if (!cJSON_IsString(text)) {
            free(joined.data);
            return bad_field(param, cap, f, "expected a string, got %s", json_type(text));
        }
        if (j > 0) lmf_text_push(&joined, "\n", 1);
        lmf_text_push(&joined, text->valuestring, strlen(text->valuestring));
    }
    cJSON_ReplaceItemInObjectCaseSensitive(msg, "content", cJSON_CreateString(joined.data));
    free(joined.data);
    return LMF_OK;
}

/* One tool call of an assistant message: {"id"?, "type": "function", "function": {"name", "arguments"}}. */
static lmf_status prepare_tool_call(cJSON *call, int i, int k, char *param, size_t cap) {
    char f[96];
    snprintf(f, sizeof f, "messages[%d].tool_calls[%d]", i, k);
    if (!cJSON_IsObject(call)) return bad_field(param, cap, f, "expected an object, got %s", json_type(call));
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(call, "id");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(call, "type");
    cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
    snprintf(f, sizeof f, "messages[%d].tool_calls[%d].id", i, k);
    if (id && !cJSON_IsString(id) && !cJSON_IsNull(id))
        return bad_field(param, cap, f, "expected a string, got %s", json_type(id));
    snprintf(f, sizeof f, "messages[%d].tool_calls[%d].type", i, k);
    if (type && !cJSON_IsNull(type) && (!cJSON_IsString(type) || strcmp(type->valuestring, "function")))
        return bad_field(param, cap, f, "expected \"function\" (the only tool type)");
    snprintf(f, sizeof f, "messages[%d].tool_calls[%d].function", i, k);
    if (!cJSON_IsObject(fn))
        return bad_field(param, cap, f, "expected an object {\"name\", \"arguments\"}, got %s", json_type(fn));
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    snprintf(f, sizeof f, "messages[%d].tool_calls[%d].function.name", i, k);
    if (!cJSON_IsString(name)) return bad_field(param, cap, f, "expected a string, got %s", json_type(name));
    snprintf(f, sizeof f, "messages[%d].tool_calls[%d].function.arguments", i, k);
    if (cJSON_IsString(args)) { /* OpenAI sends the arguments as JSON text; templates write them with tojson */
        cJSON *parsed = cJSON_Parse(args->valuestring);
        if (!cJSON_IsObject(parsed)) {
            cJSON_Delete(parsed);
            return bad_field(param, cap, f, "expected a JSON object (or its text), got the text '%.60s'",
                             args->valuestring);
        }
        cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", parsed);
    } else if (!cJSON_IsObject(args)) {
        return bad_field(param, cap, f, "expected a JSON object (or its text), got %s", json_type(args));
    }
    return LMF_OK;
}

static const char *const ROLES[] = {"system", "user", "assistant", "tool"};

lmf_status lmf_chat_messages_prepare(cJSON *messages, char *param, size_t cap) {
    if (!cJSON_IsArray(messages))
        return bad_field(param, cap, "messages", "expected an array, got %s", json_type(messages));
    if (!messages->child) return bad_field(param, cap, "messages", "the array is empty");
    char f[96];
    int i = 0;
    for (cJSON *m = messages->child; m; m = m->next, i++) {
        snprintf(f, sizeof f, "messages[%d]", i);
        if (!cJSON_IsObject(m)) return bad_field(param, cap, f, "expected an object, got %s", json_type(m));
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        snprintf(f, sizeof f, "messages[%d].role", i);
        if (!cJSON_IsString(role)) return bad_field(param, cap, f, "expected a string, got %s", json_type(role));
        int r = lmf_name_index(role->valuestring, ROLES, 4);
        if (r < 0)
            return bad_field(param, cap, f, "unknown role '%.32s' (system, user, assistant or tool)",
                             role->valuestring);
        snprintf(f, sizeof f, "messages[%d].tool_calls", i);
        int has_calls = 0;
        if (calls && !cJSON_IsNull(calls)) {
            if (r != 2) return bad_field(param, cap, f, "only an assistant message makes tool calls");
            if (!cJSON_IsArray(calls)) return bad_field(param, cap, f, "expected an array, got %s", json_type(calls));
            int k = 0;
            for (cJSON *c = calls->child; c; c = c->next, k++) LMF_TRY(prepare_tool_call(c, i, k, param, cap));
            has_calls = k > 0;
        }
        snprintf(f, sizeof f, "messages[%d].content", i);
        if (cJSON_IsArray(content)) {
            LMF_TRY(flatten_content(m, content, i, param, cap));
        } else if (!content || cJSON_IsNull(content)) {
            if (!has_calls) return bad_field(param, cap, f, "is required (it may be null only beside tool_calls)");
        } else if (!cJSON_IsString(content)) {
            return bad_field(param, cap, f, "expected a string or an array of text parts, got %s",
                             json_type(content));
        }
        static const char *const strings[] = {"tool_call_id", "name", "reasoning_content"};
        for (int k = 0; k < 3; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, strings[k]);
            snprintf(f, sizeof f, "messages[%d].%s", i, strings[k]);
            if (v && !cJSON_IsNull(v) && !cJSON_IsString(v))
                return bad_field(param, cap, f, "expected a string, got %s", json_type(v));
        }
    }
    return LMF_OK;
}

int lmf_chat_template_has_generation(const lmf_chat_template *t) { return t->jinja && t->jinja->has_generation; }

/* The template's variables, as transformers' apply_chat_template passes them. */
static lmf_status render_jinja(const lmf_chat_template *t, const cJSON *messages, const cJSON *tools,
                               int add_generation_prompt, lmf_text *out, lmf_jinja_spans *spans) {
    cJSON *vars = t->kwargs_json ? cJSON_Parse(t->kwargs_json) : cJSON_CreateObject();
    if (!cJSON_IsObject(vars)) {
        cJSON_Delete(vars);
        return lmf_fail(LMF_ERR_ARG, "chat template kwargs: not a JSON object");
    }
    /* the keyword extras first: they win over bos_token / eos_token (transformers: {**special_tokens, **kwargs}),
     * while messages, add_generation_prompt, tools and documents are the render's own */
    static const char *const fixed[] = {"messages", "add_generation_prompt", "tools", "documents"};
    for (int i = 0; i < 4; i++) cJSON_DeleteItemFromObjectCaseSensitive(vars, fixed[i]);
    cJSON_AddItemReferenceToObject(vars, "messages", (cJSON *)messages); /* read, never freed through vars */
    cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt);
    if (tools) cJSON_AddItemReferenceToObject(vars, "tools", (cJSON *)tools);
    else cJSON_AddNullToObject(vars, "tools");
    cJSON_AddNullToObject(vars, "documents");
    if (t->bos_token && !cJSON_HasObjectItem(vars, "bos_token"))
        cJSON_AddStringToObject(vars, "bos_token", t->bos_token);
    if (t->eos_token && !cJSON_HasObjectItem(vars, "eos_token"))
        cJSON_AddStringToObject(vars, "eos_token", t->eos_token);
    lmf_status st = lmf_jinja_render_spans(t->jinja, vars, t->now ? (time_t)t->now : time(NULL), out, spans);
    cJSON_Delete(vars);
    if (st == LMF_OK && !out->data) lmf_text_push(out, "", 0);
    return st;
}

static lmf_status render_builtin(const lmf_chat_template *t, const lmf_chat_message *msgs, int n,
                                 int add_generation_prompt, lmf_text *out);

/* A tool message, tool calls or tools have no built-in layout: only a model's template says how it was taught. */
static lmf_status no_builtin_tools(const lmf_chat_template *t, const char *what) {
    return lmf_fail(LMF_ERR_ARG, "%s: the built-in %s renderer has no tool format; tools need the model's own chat "
                    "template", what, lmf_chat_format_name(t->format));
}

lmf_status lmf_chat_render_json(const lmf_chat_template *t, const cJSON *messages, const cJSON *tools,
                                int add_generation_prompt, lmf_text *out, lmf_jinja_spans *spans) {
    if (t->jinja) return render_jinja(t, messages, tools, add_generation_prompt, out, spans);
    if (tools && !cJSON_IsNull(tools)) return no_builtin_tools(t, "tools");
    int n = cJSON_GetArraySize(messages), i = 0;
    lmf_chat_message *msgs = lmf_xcalloc((size_t)(n ? n : 1), sizeof *msgs);
    lmf_status st = LMF_OK;
    for (const cJSON *m = messages->child; m && st == LMF_OK; m = m->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        char what[64];
        snprintf(what, sizeof what, "message %d", i);
        if (cJSON_GetArraySize(calls) > 0) st = no_builtin_tools(t, what);
        else if (cJSON_IsString(role) && !strcmp(role->valuestring, "tool")) st = no_builtin_tools(t, what);
        else if (!cJSON_IsString(role) || !cJSON_IsString(content))
            st = lmf_fail(LMF_ERR_ARG, "message %d: role and content must be strings", i);
        else msgs[i] = (lmf_chat_message){role->valuestring, content->valuestring};
    }
    if (st == LMF_OK) st = render_builtin(t, msgs, n, add_generation_prompt, out);
    free(msgs);
    return st;
}

lmf_status lmf_chat_render_messages_json(const lmf_chat_template *t, const char *messages_json, const char *tools_json,
                                         int add_generation_prompt, lmf_text *out) {
    cJSON *msgs = cJSON_Parse(messages_json ? messages_json : ""), *tools = NULL;
    lmf_status st = LMF_OK;
    if (!msgs) st = lmf_fail(LMF_ERR_ARG, "messages: not valid JSON: '%.60s'", messages_json ? messages_json : "");
    if (st == LMF_OK && tools_json && !cJSON_IsArray(tools = cJSON_Parse(tools_json)))
        st = lmf_fail(LMF_ERR_ARG, "tools: expected a JSON array of tool objects, got '%.60s'", tools_json);
    if (st == LMF_OK) st = lmf_chat_messages_prepare(msgs, NULL, 0);
    if (st == LMF_OK) st = lmf_chat_render_json(t, msgs, tools, add_generation_prompt, out, NULL);
    cJSON_Delete(msgs);
    cJSON_Delete(tools);
    return st;
}

lmf_status lmf_chat_render(const lmf_chat_template *t, const lmf_chat_message *msgs, int n, int add_generation_prompt,
                           lmf_text *out) {
    if (!t->jinja) return render_builtin(t, msgs, n, add_generation_prompt, out);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", msgs[i].role);
        cJSON_AddStringToObject(m, "content", msgs[i].content);
        cJSON_AddItemToArray(arr, m);
    }
    lmf_status st = render_jinja(t, arr, NULL, add_generation_prompt, out, NULL);
    cJSON_Delete(arr);
    return st;
}

static lmf_status render_builtin(const lmf_chat_template *t, const lmf_chat_message *msgs, int n,
                                 int add_generation_prompt, lmf_text *out) {
    if (t->format == LMF_CHAT_OTHER)
        return lmf_fail(LMF_ERR_ARG, "this chat format has no built-in renderer: only the model's template renders it");
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!strcmp(r, "tool")) {
            char what[32];
            snprintf(what, sizeof what, "message %d", i);
            return no_builtin_tools(t, what);
        }
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return lmf_fail(LMF_ERR_ARG, "message %d: role '%s' (expected system, user or assistant)", i, r);
        if (!strcmp(r, "system") && i > 0)
            return lmf_fail(LMF_ERR_ARG, "message %d: a system message may only come first", i);
    }
    int has_system = n > 0 && !strcmp(msgs[0].role, "system");
    switch (t->format) {
    case LMF_CHAT_CHATML:
        if (!has_system && t->default_system && n > 0) {
            put(out, "<|im_start|>system\n");
            put(out, t->default_system);
            put(out, "<|im_end|>\n");
        }
        put_turns(out, msgs, n, "<|im_start|>", "\n", "<|im_end|>\n");
        if (add_generation_prompt) put(out, "<|im_start|>assistant\n");
        break;
    case LMF_CHAT_LLAMA3:
        put(out, "<|begin_of_text|>");
        put_turns(out, msgs, n, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>");
        if (add_generation_prompt) put(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case LMF_CHAT_LLAMA2: {
        /* Meta's format: the system prompt folds into the first user turn; each exchange is one <s>...</s> */
        int i = has_system ? 1 : 0;
        for (int turn = 0; i < n; turn++) {
            if (strcmp(msgs[i].role, "user"))
                return lmf_fail(LMF_ERR_ARG, "message %d: llama2 chats alternate user and assistant, starting with "
                                "user", i);
            put(out, "<s>[INST] ");
            if (turn == 0 && has_system) {
                put(out, "<<SYS>>\n");
                put(out, msgs[0].content);
                put(out, "\n<</SYS>>\n\n");
            }
            put(out, msgs[i].content);
            put(out, " [/INST]");
            i++;
            if (i < n) {
                if (strcmp(msgs[i].role, "assistant"))
                    return lmf_fail(LMF_ERR_ARG, "message %d: expected an assistant reply", i);
                put(out, " ");
                put(out, msgs[i].content);
                put(out, " </s>");
                i++;
            }
        }
        break;
    }
    case LMF_CHAT_OTHER: break; /* refused above */
    }
    if (!out->data) lmf_text_push(out, "", 0);
    return LMF_OK;
}

lmf_status lmf_chat_encode_text(const lmf_tokenizer *tok, const lmf_chat_template *t, int32_t bos, const char *text,
                                size_t len, lmf_ids *out) {
    /* a template writes bos_token itself where the model wants it; built-in Llama-3's text carries its BOS */
    if (bos >= 0 && !t->jinja && t->format != LMF_CHAT_LLAMA3) lmf_ids_push(out, &bos, 1);
    return lmf_tokenizer_encode(tok, text, len, LMF_ENCODE_ALLOW_SPECIAL, out);
}

lmf_status lmf_chat_encode(const lmf_tokenizer *tok, const lmf_chat_template *t, int32_t bos,
                           const lmf_chat_message *msgs, int n, int add_generation_prompt, lmf_ids *out) {
    lmf_text text = {0};
    lmf_status st = lmf_chat_render(t, msgs, n, add_generation_prompt, &text);
    if (st == LMF_OK) st = lmf_chat_encode_text(tok, t, bos, text.data, text.len, out);
    free(text.data);
    return st;
}

const char *lmf_chat_end_of_turn(lmf_chat_format f) {
    static const char *const eot[] = {"<|im_end|>", "</s>", "<|eot_id|>", ""}; /* by lmf_chat_format */
    return (unsigned)f < sizeof eot / sizeof *eot ? eot[f] : "";
}

const char *lmf_chat_template_end_of_turn(const lmf_chat_template *t) {
    return t->end_of_turn ? t->end_of_turn : lmf_chat_end_of_turn(t->format);
}
