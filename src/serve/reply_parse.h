/* reply_parse.h — a chat reply's text split the way its template taught the model to write it: Hermes-style tool
 * calls (<tool_call>{"name": ..., "arguments": {...}}</tool_call>: Qwen2.5, Qwen3, Hermes, SmolLM3) and
 * <think>...</think> reasoning (Qwen3, DeepSeek-R1), as vLLM's hermes tool parser and reasoning parsers and
 * llama-server's --jinja with --reasoning-format deepseek split them.
 *
 * The text arrives in pieces (a streamed reply's tokens) and leaves as events in order: content, reasoning, and
 * whole tool calls. Cutting the same text anywhere gives the same events once adjacent text events are joined
 * (test_reply_parse cuts at every byte). A piece is cut only before an ASCII byte, so valid UTF-8 in gives valid
 * UTF-8 out.
 *
 * Rules:
 *  - reasoning: when the prompt ended inside an open <think> (a template that starts the reply with it), or the
 *    reply's first bytes are <think>, everything up to </think> is reasoning; whitespace right after </think> is
 *    dropped. A reply that never closes its <think> is all reasoning (llama-server's deepseek format; a reply cut
 *    by max_tokens mid-thought). <think> later in the reply is ordinary content.
 *  - tool calls: <tool_call> BODY </tool_call> where BODY is a JSON object {"name": string, "arguments": object
 *    (or a JSON string of one)} is a call; anything else (bad JSON, no name, an unclosed tag) stays content, tags
 *    and all. Whitespace around calls is dropped (content that is only whitespace becomes no content). With
 *    parallel off, only the first call is parsed; later tags are content.
 * Bytes that might begin a tag are held back until they do or do not; a call is emitted when its closing tag
 * arrives, whole (OpenAI's stream then gives its name and arguments in consecutive deltas). */
#ifndef LMF_SERVE_REPLY_PARSE_H
#define LMF_SERVE_REPLY_PARSE_H

#include "lmforge.h"

#include <stddef.h>

typedef enum { LMF_REPLY_CONTENT = 0, LMF_REPLY_REASONING = 1, LMF_REPLY_TOOL_CALL = 2 } lmf_reply_kind;

/* One event: text (content, reasoning) of n bytes, or a tool call's name and arguments (a JSON object's text, NUL-
 * terminated). Valid only during the call. */
typedef void (*lmf_reply_emit)(void *ctx, lmf_reply_kind kind, const char *text, size_t n, const char *name,
                               const char *arguments);

typedef struct {
    int tools, parallel, reasoning; /* what to parse */
    int state;                      /* 0 content, 1 reasoning, 2 inside a tool call */
    int at_start;                   /* nothing seen yet: a leading <think> opens reasoning */
    int strip_ws;                   /* after </think> or a call: leading whitespace dropped */
    int n_calls;
    lmf_text buf;                   /* held back: a possible tag's start, a call's body */
    lmf_text ws;                    /* content whitespace held while tools are parsed */
} lmf_reply_parser;

/* think_open: the prompt ended inside <think> (the reply starts as reasoning). */
void lmf_reply_parser_init(lmf_reply_parser *p, int tools, int parallel, int reasoning, int think_open);
void lmf_reply_parser_feed(lmf_reply_parser *p, const char *s, size_t n, lmf_reply_emit emit, void *ctx);
/* The end of the reply: whatever was held back, as the rules say. */
void lmf_reply_parser_finish(lmf_reply_parser *p, lmf_reply_emit emit, void *ctx);
void lmf_reply_parser_free(lmf_reply_parser *p);

#endif
