/* openai.h — the OpenAI API's JSON, both ways: a /v1/chat/completions or /v1/completions body parsed and validated
 * into an engine request, and the engine's events turned into OpenAI's objects (chat.completion, text_completion)
 * or their stream chunks. Also the llama-server extras /tokenize and /detokenize, and the error object.
 *
 * Pure: no sockets, no threads, no engine. http.c calls it on the HTTP thread; tests/test_serve_openai.c drives it
 * directly with a tiny tokenizer.
 *
 * Validation is strict on purpose: a field lmforge does not know is a 400 naming it, never silently ignored (a
 * client that sends `logit_bias` must learn that it had no effect). JSON null counts as absent for every optional
 * field (clients serialise unset options as null). */
#ifndef LMF_SERVE_OPENAI_H
#define LMF_SERVE_OPENAI_H

#include "lmforge.h"
#include "serve/engine.h"
#include "serve/reply_parse.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { LMF_OPENAI_CHAT = 0, LMF_OPENAI_COMPLETION = 1 } lmf_openai_kind;

#define LMF_OPENAI_MAX_STOPS 4 /* OpenAI's limit on `stop` */

/* An error as OpenAI shapes it: {"error": {"message", "type", "param", "code"}} with an HTTP status. */
typedef struct {
    int status;       /* 400, 401, 404, 405, 413, 429, 500, 503 */
    const char *type; /* static: "invalid_request_error", "authentication_error", ... */
    char param[96];   /* the field at fault ("messages[1].content"), "" when none (null in JSON) */
    char code[48];    /* "" (null) or a code such as "context_length_exceeded", "model_not_found" */
    char message[512];
} lmf_openai_error;

/* Fills *e (the type follows from the status); returns status. param and code may be NULL. */
int lmf_openai_error_set(lmf_openai_error *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The error object as JSON (malloc'd, NUL-terminated). */
char *lmf_openai_error_json(const lmf_openai_error *e);

/* What parsing and replying need of the served model. */
typedef struct {
    const char *id;                /* the model's name in /v1/models and in replies */
    const lmf_tokenizer *tok;
    const lmf_chat_template *tmpl; /* chat prompts */
    int32_t bos;                   /* prepended to prompts, -1 for none (lmf_weights_bos without add_bos) */
    int n_ctx;                     /* tokens one sequence holds at most (the engine's): longer prompts are a 400 */
    int reasoning;                 /* split <think>...</think> into reasoning_content when the template thinks
                                    * (--reasoning-format deepseek, the default; 0: none) */
} lmf_openai_model;

/* A parsed request. req's pointers point into this struct; req.cb and req.ctx are the caller's to set. */
typedef struct {
    lmf_openai_kind kind;
    int stream, include_usage;
    lmf_ids prompt;                     /* the token ids, BOS or chat template applied */
    char *stops[LMF_OPENAI_MAX_STOPS]; /* owned */
    int32_t *bias_ids;                  /* logit_bias, owned (req points at them) */
    float *bias;
    lmf_engine_request req;
    int seeded;                         /* the request named a seed (otherwise the caller draws one) */
    /* chat replies: how reply_parse.h splits them */
    int parse_tools, parallel_tool_calls; /* tools given, tool_choice not "none", a Hermes-style template */
    int reasoning, think_open;            /* split <think>; the rendered prompt ends inside an open <think> */
} lmf_openai_request;

/* Parses body (len bytes, any bytes) as a request of kind. 0 on success; otherwise the HTTP status, with *err
 * filled (param names the field, e.g. "temperature", "messages[0].content[1].type", "stream_options.foo").
 * *out is always safe to pass to lmf_openai_request_free. */
int lmf_openai_parse(const lmf_openai_model *m, lmf_openai_kind kind, const char *body, size_t len,
                     lmf_openai_request *out, lmf_openai_error *err);
void lmf_openai_request_free(lmf_openai_request *r);

/* POST /tokenize {"content": str, "add_special"?: bool [false], "parse_special"?: bool [true]} -> {"tokens": [...]}
 * and POST /detokenize {"tokens": [ids]} -> {"content": str}, as llama-server has them. 0 and *json (malloc'd) on
 * success, else the status and *err. */
int lmf_openai_tokenize(const lmf_openai_model *m, const char *body, size_t len, char **json, lmf_openai_error *err);
int lmf_openai_detokenize(const lmf_openai_model *m, const char *body, size_t len, char **json,
                          lmf_openai_error *err);

/* GET /v1/models (one model) and GET /v1/models/{id}. */
char *lmf_openai_models_json(const lmf_openai_model *m, long created);
char *lmf_openai_model_json(const lmf_openai_model *m, long created);

/* The reply to one request, built from its engine events in order. Streaming: each call appends the SSE events
 * ("data: {chunk}\n\n") that are ready to *sse. Not streaming: the calls accumulate and lmf_openai_reply_json makes
 * the whole object at the end. */
typedef struct {
    lmf_openai_kind kind;
    int stream, include_usage, logprobs, top_logprobs;
    char id[48];       /* "chatcmpl-..." / "cmpl-..." */
    long created;
    const lmf_openai_model *m;
    int started;       /* streaming: the first chunk (chat: the assistant role) went out */
    int parse;         /* chat: the text goes through parser (tools or reasoning) */
    lmf_reply_parser parser;
    lmf_text reasoning;     /* the reasoning so far (not streaming) */
    void *tool_calls;       /* cJSON array of the calls so far (not streaming), or NULL */
    int n_calls;
    const lmf_engine_event *lp_event; /* streaming: the TOKEN event whose logprobs the next chunk carries */
    lmf_text text;     /* the reply so far (not streaming) */
    size_t text_bytes; /* bytes of text so far, for completions' text_offset */
    void *lp;          /* cJSON array of logprob entries (not streaming), or NULL */
    void *lp_tokens, *lp_values, *lp_top, *lp_offsets; /* completions' four logprob arrays (not streaming) */
    /* DONE */
    int done;
    lmf_stop_reason reason;
    int prompt_tokens, cached_tokens, gen_tokens;
} lmf_openai_reply;

/* id_suffix: a unique string (the caller's request counter and random bits) appended to "chatcmpl-" / "cmpl-". */
void lmf_openai_reply_init(lmf_openai_reply *r, const lmf_openai_model *m, const lmf_openai_request *q,
                           const char *id_suffix, long created);
void lmf_openai_reply_free(lmf_openai_reply *r);
/* A TOKEN or DONE event (ERROR is lmf_openai_reply_error's). sse: where stream chunks go (ignored otherwise). */
void lmf_openai_reply_event(lmf_openai_reply *r, const lmf_engine_event *ev, lmf_text *sse);
/* Streaming: the error as an SSE event (the stream ends after it; no [DONE]). */
void lmf_openai_reply_error(lmf_openai_reply *r, const lmf_openai_error *e, lmf_text *sse);
/* Not streaming, after DONE: the whole response object (malloc'd). */
char *lmf_openai_reply_json(const lmf_openai_reply *r);

/* The finish_reason OpenAI uses for a stop reason: "stop" (token, string) or "length" (max_tokens, context); a chat
 * reply that made tool calls and stopped by itself says "tool_calls". */
const char *lmf_openai_finish_reason(lmf_stop_reason reason);

/* Appends n bytes to *out with every byte sequence that is not valid UTF-8 replaced by U+FFFD, so what goes into
 * JSON is valid UTF-8 (a token decoded alone may be half a character; the exact bytes go in "bytes"). */
void lmf_openai_put_utf8(lmf_text *out, const char *s, size_t n);

#endif
