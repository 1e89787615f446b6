/* reply_parse.c — tool calls and reasoning out of a chat reply's text (see reply_parse.h). */
#include "serve/reply_parse.h"

#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

enum { CONTENT = 0, REASONING = 1, CALL = 2 };

static const char THINK[] = "<think>", END_THINK[] = "</think>", CALL_OPEN[] = "<tool_call>",
                  CALL_CLOSE[] = "</tool_call>";
#define LEN(s) (sizeof(s) - 1)

void lmf_reply_parser_init(lmf_reply_parser *p, int tools, int parallel, int reasoning, int think_open) {
    memset(p, 0, sizeof *p);
    p->tools = tools, p->parallel = parallel, p->reasoning = reasoning;
    p->state = reasoning && think_open ? REASONING : CONTENT;
    p->at_start = reasoning && !think_open;
}

void lmf_reply_parser_free(lmf_reply_parser *p) {
    free(p->buf.data);
    free(p->ws.data);
    memset(p, 0, sizeof *p);
}

static size_t find(const char *s, size_t n, const char *tag, size_t tn) {
    for (size_t i = 0; i + tn <= n; i++)
        if (s[i] == tag[0] && !memcmp(s + i, tag, tn)) return i;
    return (size_t)-1;
}

/* The longest proper prefix of tag that s ends with: bytes that may yet become the tag. */
static size_t partial(const char *s, size_t n, const char *tag, size_t tn) {
    for (size_t k = tn - 1 < n ? tn - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, tag, k)) return k;
    return 0;
}

static void consume(lmf_text *t, size_t k) {
    if (!k) return;
    memmove(t->data, t->data + k, t->len - k);
    t->len -= k;
}

static int is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* Content out. While tools are parsed, trailing whitespace waits in p->ws: it goes out before more content, and is
 * dropped before a call or at the end of a reply that made calls. */
static void content(lmf_reply_parser *p, const char *s, size_t n, lmf_reply_emit emit, void *ctx) {
    if (!n) return;
    if (!p->tools) {
        emit(ctx, LMF_REPLY_CONTENT, s, n, NULL, NULL);
        return;
    }
    size_t end = n;
    while (end > 0 && is_ws(s[end - 1])) end--;
    if (end > 0) {
        if (p->ws.len) emit(ctx, LMF_REPLY_CONTENT, p->ws.data, p->ws.len, NULL, NULL);
        p->ws.len = 0;
        emit(ctx, LMF_REPLY_CONTENT, s, end, NULL, NULL);
    }
    lmf_text_push(&p->ws, s + end, n - end);
}

/* A call's body: {"name": string, "arguments": object or the JSON text of one}. 1 and the event when it is one. */
static int call(lmf_reply_parser *p, const char *body, size_t n, lmf_reply_emit emit, void *ctx) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, n, &end, 0);
    int ok = cJSON_IsObject(j);
    for (const char *q = end; ok && q < body + n; q++) ok = is_ws(*q);
    const cJSON *name = ok ? cJSON_GetObjectItemCaseSensitive(j, "name") : NULL;
    const cJSON *args = ok ? cJSON_GetObjectItemCaseSensitive(j, "arguments") : NULL;
    cJSON *parsed = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
    if (parsed) args = parsed;
    ok = ok && cJSON_IsString(name) && name->valuestring[0] && cJSON_IsObject(args);
    if (ok) {
        char *a = cJSON_PrintUnformatted(args);
        emit(ctx, LMF_REPLY_TOOL_CALL, NULL, 0, name->valuestring, a);
        free(a);
        p->n_calls++;
    }
    cJSON_Delete(parsed);
    cJSON_Delete(j);
    return ok;
}

static void run(lmf_reply_parser *p, int final, lmf_reply_emit emit, void *ctx) {
    lmf_text *b = &p->buf;
    while (b->len || (final && p->state == CALL)) { /* an unclosed call ends as content */
        if (p->state == REASONING) {
            size_t at = find(b->data, b->len, END_THINK, LEN(END_THINK));
            if (at != (size_t)-1) {
                if (at) emit(ctx, LMF_REPLY_REASONING, b->data, at, NULL, NULL);
                consume(b, at + LEN(END_THINK));
                p->state = CONTENT, p->strip_ws = 1;
                continue;
            }
            size_t keep = final ? 0 : partial(b->data, b->len, END_THINK, LEN(END_THINK));
            if (b->len > keep) emit(ctx, LMF_REPLY_REASONING, b->data, b->len - keep, NULL, NULL);
            consume(b, b->len - keep);
            return;
        }
        if (p->state == CALL) {
            size_t at = find(b->data, b->len, CALL_CLOSE, LEN(CALL_CLOSE));
            if (at == (size_t)-1 && !final) return; /* the call is still being written */
            size_t body = at == (size_t)-1 ? b->len : at, used = at == (size_t)-1 ? b->len : at + LEN(CALL_CLOSE);
            if (at != (size_t)-1 && call(p, b->data, body, emit, ctx)) {
                p->ws.len = 0; /* whitespace before a call is dropped */
                p->strip_ws = 1;
            } else { /* not a call: the text as it was written */
                lmf_text t = {0};
                lmf_text_push(&t, CALL_OPEN, LEN(CALL_OPEN));
                if (used) lmf_text_push(&t, b->data, used);
                content(p, t.data, t.len, emit, ctx);
                free(t.data);
            }
            consume(b, used);
            p->state = CONTENT;
            continue;
        }
        if (p->strip_ws) {
            size_t k = 0;
            while (k < b->len && is_ws(b->data[k])) k++;
            consume(b, k);
            if (!b->len) return;
            p->strip_ws = 0;
        }
        if (p->at_start) {
            size_t k = b->len < LEN(THINK) ? b->len : LEN(THINK);
            if (!memcmp(b->data, THINK, k)) {
                if (k < LEN(THINK) && !final) return; /* "<thi": wait */
                if (k == LEN(THINK)) {
                    consume(b, k);
                    p->at_start = 0, p->state = REASONING;
                    continue;
                }
            }
            p->at_start = 0;
        }
        if (!p->tools || (!p->parallel && p->n_calls)) {
            content(p, b->data, b->len, emit, ctx);
            b->len = 0;
            return;
        }
        size_t at = find(b->data, b->len, CALL_OPEN, LEN(CALL_OPEN));
        if (at != (size_t)-1) {
            content(p, b->data, at, emit, ctx);
            consume(b, at + LEN(CALL_OPEN));
            p->state = CALL;
            continue;
        }
        size_t keep = final ? 0 : partial(b->data, b->len, CALL_OPEN, LEN(CALL_OPEN));
        content(p, b->data, b->len - keep, emit, ctx);
        consume(b, b->len - keep);
        return;
    }
}

void lmf_reply_parser_feed(lmf_reply_parser *p, const char *s, size_t n, lmf_reply_emit emit, void *ctx) {
    if (!n) return;
    lmf_text_push(&p->buf, s, n);
    run(p, 0, emit, ctx);
}

void lmf_reply_parser_finish(lmf_reply_parser *p, lmf_reply_emit emit, void *ctx) {
    run(p, 1, emit, ctx);
    if (p->ws.len && !p->n_calls) emit(ctx, LMF_REPLY_CONTENT, p->ws.data, p->ws.len, NULL, NULL);
    p->ws.len = 0;
}
