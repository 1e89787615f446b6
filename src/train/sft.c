/* sft.c — supervised fine-tuning data: JSONL parsing, tokenizing with the loss mask, split, batches (see sft.h). */
#include "train/sft.h"

#include "core/alloc.h"
#include "core/fs.h"
#include "core/rng.h"
#include "core/sort.h"
#include "core/status.h"
#include "model/chat.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

lmf_status lmf_sft_vocab_from_weights(const lmf_weights *w, lmf_sft_vocab *out) {
    memset(out, 0, sizeof *out);
    if (!w->tok) return lmf_fail(LMF_ERR_ARG, "the model carries no tokenizer: fine-tuning data needs one");
    LMF_TRY(lmf_chat_template_from_weights(w, &out->tmpl));
    out->tmpl.now = (long long)time(NULL); /* every prefix of a conversation sees the same strftime_now */
    int add_bos;
    int32_t bos = lmf_weights_bos(w, &add_bos);
    out->tok = w->tok;
    out->bos = add_bos ? bos : -1;
    out->eos = w->eos_id;
    out->pad = w->eos_id >= 0 ? w->eos_id : 0;
    return LMF_OK;
}

lmf_status lmf_sft_vocab_set_template(lmf_sft_vocab *v, const lmf_weights *w, const char *path) {
    lmf_chat_template t;
    LMF_TRY(lmf_chat_template_from_file(w, path, &t));
    t.now = v->tmpl.now;
    lmf_chat_template_free(&v->tmpl);
    v->tmpl = t;
    return LMF_OK;
}

void lmf_sft_vocab_free(lmf_sft_vocab *v) { lmf_chat_template_free(&v->tmpl); }

/* One example being built: its ids and loss flags, and where it came from (for messages). */
typedef struct {
    const char *origin;
    size_t line;
    const lmf_sft_vocab *v;
    const lmf_sft_options *o;
    lmf_sft_stats *stats;
    lmf_ids ids;
    uint8_t *mask; /* [ids.len] once the ids are final */
} example;

/* Fails with "ORIGIN:LINE: <message>". */
static lmf_status bad(const example *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static lmf_status bad(const example *e, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lmf_fail(LMF_ERR_FORMAT, "%s:%zu: %s", e->origin, e->line, msg);
}

static size_t common_prefix(const lmf_ids *a, const lmf_ids *b) {
    size_t i = 0;
    while (i < a->len && i < b->len && a->data[i] == b->data[i]) i++;
    return i;
}

/* Where the prefix whose ids are p ends in the example's ids: p's length when p is a prefix of them, else the
 * longest common prefix (a token merged across the boundary), counted. */
static size_t boundary(example *e, const lmf_ids *p) {
    size_t c = common_prefix(p, &e->ids);
    if (c != p->len) e->stats->n_boundary_shifts++;
    return c;
}

static void mark(example *e, size_t from, size_t to) {
    if (to > from) memset(e->mask + from, 1, to - from);
}

static void alloc_mask(example *e) {
    e->mask = lmf_xcalloc(e->ids.len ? e->ids.len : 1, 1);
    if (e->o->train_on_prompt) mark(e, 0, e->ids.len);
}

/* Renders the first n messages of msgs (with tools) into *out, the chat template's error prefixed with ORIGIN:LINE;
 * spans (or NULL) receives the template's {% generation %} spans. */
static lmf_status render(const example *e, const cJSON *msgs, int n, const cJSON *tools, int gen, lmf_text *out,
                         lmf_jinja_spans *spans) {
    out->len = 0;
    cJSON *part = cJSON_CreateArray(); /* references: the first n messages, not copied */
    int i = 0;
    for (const cJSON *m = msgs->child; m && i < n; m = m->next, i++) cJSON_AddItemReferenceToArray(part, (cJSON *)m);
    lmf_status st = lmf_chat_render_json(&e->v->tmpl, part, tools, gen, out, spans);
    cJSON_Delete(part);
    if (st == LMF_OK) return LMF_OK;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lmf_last_error());
    return bad(e, "%s", msg);
}

/* The loss from the template's {% generation %} spans, as transformers' return_assistant_tokens_mask reads them:
 * every token from the one holding a span's first byte to the one holding its last. Token offsets are the tokens'
 * bytes laid end to end, which must spell the rendered text. */
static lmf_status mark_spans(example *e, const lmf_text *full, const lmf_jinja_spans *sp) {
    size_t n = e->ids.len, at = 0;
    size_t *start = lmf_xmalloc((n + 1) * sizeof *start);
    for (size_t k = 0; k < n; k++) {
        size_t len = 0;
        start[k] = at;
        if (lmf_tokenizer_token_bytes(e->v->tok, e->ids.data[k], &len)) at += len;
    }
    start[n] = at;
    if (at != full->len) {
        free(start);
        return bad(e, "the tokens of the rendered conversation spell %zu bytes, not its %zu (a normalising "
                   "tokenizer?): {%% generation %%} spans cannot be mapped to tokens", at, full->len);
    }
    size_t k = 0;
    for (size_t s = 0; s < sp->n; s++) {
        if (sp->v[s].end <= sp->v[s].start) continue;
        while (k > 0 && start[k] > sp->v[s].start) k--; /* spans come in order; a nested one may start earlier */
        while (k + 1 < n && start[k + 1] <= sp->v[s].start) k++;
        size_t last = k;
        while (last + 1 < n && start[last + 1] <= sp->v[s].end - 1) last++;
        mark(e, k, last + 1);
    }
    free(start);
    return LMF_OK;
}

/* {"messages": [...], "tools"?: [...]}: the conversation's ids as `lmforge chat` (and the server) make them, messages
 * as the template sees them (tool calls, tool results, reasoning_content: chat.h). In the loss: with a template that
 * marks assistant text with {% generation %}, what those blocks wrote (transformers' assistant mask); otherwise each
 * assistant turn from the end of its header to its end-of-turn token, found by rendering the conversation up to
 * there, which needs every such prefix to render as a prefix of the whole. */
static lmf_status from_messages(example *e, cJSON *arr, const cJSON *tools) {
    if (!cJSON_IsArray(arr)) return bad(e, "\"messages\" is not an array");
    if (!arr->child) return bad(e, "\"messages\" is empty: a conversation needs an assistant turn");
    if (cJSON_IsNull(tools)) tools = NULL;
    if (tools && !cJSON_IsArray(tools)) return bad(e, "\"tools\" is not an array of tool objects (TRL's shape)");
    if (lmf_chat_messages_prepare(arr, NULL, 0) != LMF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        return bad(e, "%s", msg);
    }
    int n = cJSON_GetArraySize(arr), n_assistant = 0, i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) n_assistant += !strcmp(cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring,
                                                      "assistant");
    if (!n_assistant) return bad(e, "the conversation has no assistant turn (nothing to learn)");
    int by_spans = lmf_chat_template_has_generation(&e->v->tmpl) && !e->o->train_on_prompt;
    lmf_text full = {0}, part = {0};
    lmf_ids p = {0};
    lmf_jinja_spans spans = {0};
    lmf_status st;
    if ((st = render(e, arr, n, tools, 0, &full, by_spans ? &spans : NULL)) != LMF_OK) goto done;
    if ((st = lmf_chat_encode_text(e->v->tok, &e->v->tmpl, e->v->bos, full.data, full.len, &e->ids)) != LMF_OK)
        goto done;
    alloc_mask(e);
    if (e->o->train_on_prompt) goto done;
    if (by_spans) {
        if (!spans.n) {
            st = bad(e, "the chat template has {%% generation %%} blocks but marked nothing in this conversation");
            goto done;
        }
        st = mark_spans(e, &full, &spans);
        goto done;
    }
    const char *eot = lmf_chat_template_end_of_turn(&e->v->tmpl);
    static const char hint[] = "give a chat template whose {% generation %} blocks mark the assistant's text "
                               "(--chat-template FILE), or train on the whole text (--train-on-prompt)";
    i = 0;
    cJSON_ArrayForEach(m, arr) {
        if (strcmp(cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring, "assistant")) {
            i++;
            continue;
        }
        /* start: the conversation before this turn plus the assistant header */
        if ((st = render(e, arr, i, tools, 1, &part, NULL)) != LMF_OK) goto done;
        if (part.len > full.len || memcmp(part.data, full.data, part.len)) {
            st = bad(e, "message %d: the chat template does not render the conversation before this assistant turn "
                     "as a prefix of the whole (it renders earlier turns differently once later ones exist, or an "
                     "assistant turn comes first), so its loss cannot be masked: %s", i, hint);
            goto done;
        }
        p.len = 0;
        if ((st = lmf_chat_encode_text(e->v->tok, &e->v->tmpl, e->v->bos, part.data, part.len, &p)) != LMF_OK)
            goto done;
        size_t from = boundary(e, &p), header = part.len;
        /* end: through this turn's end-of-turn token (the template's text after it, ChatML's "\n", stays out) */
        if ((st = render(e, arr, i + 1, tools, 0, &part, NULL)) != LMF_OK) goto done;
        size_t cut = part.len;
        for (size_t k = part.len; *eot && k-- > header;)
            if (!strncmp(part.data + k, eot, strlen(eot))) {
                cut = k + strlen(eot);
                break;
            }
        if (part.len > full.len || memcmp(part.data, full.data, part.len)) {
            st = bad(e, "message %d: the chat template does not render the conversation through this assistant turn "
                     "as a prefix of the whole (it renders earlier turns differently once later ones exist), so its "
                     "loss cannot be masked: %s", i, hint);
            goto done;
        }
        p.len = 0;
        if ((st = lmf_chat_encode_text(e->v->tok, &e->v->tmpl, e->v->bos, part.data, cut, &p)) != LMF_OK) goto done;
        mark(e, from, boundary(e, &p));
        i++;
    }
done:
    free(full.data);
    free(part.data);
    free(p.data);
    free(spans.v);
    return st;
}

/* BOS (when the model wants it) + text encoded as `lmforge generate` encodes a prompt. */
static lmf_status encode_plain(const lmf_sft_vocab *v, const char *text, size_t len, lmf_ids *out) {
    if (v->bos >= 0) lmf_ids_push(out, &v->bos, 1);
    return lmf_tokenizer_encode(v->tok, text, len, 0, out);
}

/* {"prompt", "completion"}: the ids of prompt + completion (one text, as TRL tokenizes it) and EOS; in the loss,
 * from where the prompt's own ids end. */
static lmf_status from_prompt(example *e, const cJSON *prompt, const cJSON *completion) {
    if (!prompt) return bad(e, "\"completion\" without \"prompt\"");
    if (!completion) return bad(e, "\"prompt\" without \"completion\"");
    if (!cJSON_IsString(prompt) || !cJSON_IsString(completion))
        return bad(e, "\"%s\" is not a string (conversational prompt/completion is not supported: use \"messages\")",
                   cJSON_IsString(prompt) ? "completion" : "prompt");
    size_t np = strlen(prompt->valuestring), nc = strlen(completion->valuestring);
    char *both = lmf_xmalloc(np + nc + 1);
    memcpy(both, prompt->valuestring, np);
    memcpy(both + np, completion->valuestring, nc + 1);
    lmf_status st = encode_plain(e->v, both, np + nc, &e->ids);
    free(both);
    if (e->v->eos >= 0) lmf_ids_push(&e->ids, &e->v->eos, 1);
    lmf_ids p = {0};
    if (st == LMF_OK) st = encode_plain(e->v, prompt->valuestring, np, &p);
    if (st != LMF_OK) {
        free(p.data);
        return st;
    }
    alloc_mask(e);
    mark(e, boundary(e, &p), e->ids.len);
    free(p.data);
    return LMF_OK;
}

/* {"text"}: BOS + text + EOS, all in the loss. */
static lmf_status from_text(example *e, const cJSON *text) {
    if (!cJSON_IsString(text)) return bad(e, "\"text\" is not a string");
    LMF_TRY(encode_plain(e->v, text->valuestring, strlen(text->valuestring), &e->ids));
    if (e->v->eos >= 0) lmf_ids_push(&e->ids, &e->v->eos, 1);
    alloc_mask(e);
    mark(e, 0, e->ids.len);
    return LMF_OK;
}

/* Appends one example of len tokens to d, counting its tokens and learned tokens. */
static void append(lmf_sft_data *d, const int32_t *ids, const uint8_t *loss, size_t len) {
    if (d->n + 2 > d->cap_n) {
        d->cap_n = d->cap_n ? 2 * d->cap_n : 64;
        d->start = lmf_xrealloc(d->start, d->cap_n * sizeof *d->start);
    }
    if (d->n == 0) d->start[0] = 0;
    size_t at = d->start[d->n];
    if (at + len > d->cap_tokens) {
        d->cap_tokens = (at + len) * 2;
        d->ids = lmf_xrealloc(d->ids, d->cap_tokens * sizeof *d->ids);
        d->loss = lmf_xrealloc(d->loss, d->cap_tokens);
    }
    memcpy(d->ids + at, ids, len * sizeof *d->ids);
    memcpy(d->loss + at, loss, len);
    d->start[++d->n] = at + len;
    d->stats.n_tokens += len;
    for (size_t k = 1; k < len; k++) d->stats.n_loss_tokens += loss[k];
}

/* Appends the finished example to d: truncated to max_tokens (or refused), dropped when nothing is left to learn. */
static lmf_status keep(lmf_sft_data *d, example *e) {
    size_t len = e->ids.len, T = (size_t)e->o->max_tokens;
    if (len > T) {
        if (e->o->refuse_long)
            return bad(e, "the example has %zu tokens, more than max_tokens %zu (truncation is off)", len, T);
        len = T;
        d->stats.n_truncated++;
    }
    size_t learned = 0;
    for (size_t i = 1; i < len; i++) learned += e->mask[i];
    if (!learned) {
        d->stats.n_dropped++;
        return LMF_OK;
    }
    append(d, e->ids.data, e->mask, len);
    return LMF_OK;
}

/* One non-blank line: JSON, the shape, the example. */
static lmf_status parse_line(lmf_sft_data *d, example *e, const char *line, size_t len) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (!j) {
        size_t col = end && end >= line && end <= line + len ? (size_t)(end - line) + 1 : 1;
        return bad(e, "not valid JSON (at column %zu)", col);
    }
    lmf_status st = LMF_OK;
    while (end < line + len && strchr(" \t\r", *end) && *end) end++;
    if (end < line + len) {
        st = bad(e, "more after the JSON value (at column %zu): one example per line", (size_t)(end - line) + 1);
        goto done;
    }
    if (!cJSON_IsObject(j)) {
        st = bad(e, "not a JSON object");
        goto done;
    }
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    const cJSON *completion = cJSON_GetObjectItemCaseSensitive(j, "completion");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    int shape = messages               ? LMF_SFT_MESSAGES
                : prompt || completion ? LMF_SFT_PROMPT_COMPLETION
                : text                 ? LMF_SFT_TEXT
                                       : -1;
    if (shape == LMF_SFT_MESSAGES)
        st = from_messages(e, (cJSON *)messages, cJSON_GetObjectItemCaseSensitive(j, "tools")); /* j is ours */
    else if (shape == LMF_SFT_PROMPT_COMPLETION) st = from_prompt(e, prompt, completion);
    else if (shape == LMF_SFT_TEXT) st = from_text(e, text);
    else st = bad(e, "none of the fine-tuning shapes: expected a \"messages\" list, \"prompt\" and \"completion\", "
                  "or \"text\"");
    if (st == LMF_OK) {
        d->stats.n_shape[shape]++;
        st = keep(d, e);
    }
done:
    cJSON_Delete(j);
    return st;
}

lmf_status lmf_sft_parse(lmf_sft_data *d, const char *text, size_t len, const char *origin, const lmf_sft_vocab *v,
                         const lmf_sft_options *o) {
    LMF_REQUIRE_ARG(v && v->tok, "fine-tuning data: no tokenizer");
    LMF_REQUIRE_ARG(o->max_tokens >= 2, "fine-tuning data: max_tokens must be >= 2, got %d", o->max_tokens);
    size_t n0 = d->n;
    lmf_sft_stats saved = d->stats;
    d->pad = v->pad;
    example e = {.origin = origin, .v = v, .o = o, .stats = &d->stats};
    lmf_status st = LMF_OK;
    size_t lines = 0, kept0 = d->n;
    for (const char *p = text, *stop = text + len; p < stop && st == LMF_OK;) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p)), *le = nl ? nl : stop;
        e.line++;
        const char *q = p;
        while (q < le && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < le) {
            lines++;
            e.ids.len = 0;
            st = parse_line(d, &e, p, (size_t)(le - p));
            free(e.mask);
            e.mask = NULL;
        }
        p = nl ? nl + 1 : stop;
    }
    free(e.ids.data);
    if (st == LMF_OK && lines == 0) st = lmf_fail(LMF_ERR_FORMAT, "%s: no examples (the file is empty)", origin);
    else if (st == LMF_OK && d->n == kept0)
        st = lmf_fail(LMF_ERR_FORMAT, "%s: none of its %zu examples has a token to learn within max_tokens %d",
                      origin, lines, o->max_tokens);
    if (st != LMF_OK) {
        d->n = n0;
        d->stats = saved;
        return st;
    }
    d->stats.n_lines += lines;
    return LMF_OK;
}

lmf_status lmf_sft_load(lmf_sft_data *d, const char *path, const lmf_sft_vocab *v, const lmf_sft_options *o) {
    char *text;
    size_t len;
    LMF_TRY(lmf_read_file(path, &text, &len));
    lmf_status st = lmf_sft_parse(d, text, len, path, v, o);
    free(text);
    return st;
}

void lmf_sft_free(lmf_sft_data *d) {
    free(d->ids);
    free(d->loss);
    free(d->start);
    memset(d, 0, sizeof *d);
}

/* Fisher-Yates over 0..n-1 from (seed, stream). */
static void permutation(size_t *order, size_t n, uint64_t seed, uint64_t stream, int shuffle) {
    for (size_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    lmf_rng r;
    lmf_rng_seed(&r, seed, stream);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)lmf_rng_below(&r, i), t = order[i - 1];
        order[i - 1] = order[j], order[j] = t;
    }
}

/* Appends example i of src to dst (no truncation: it was done on load). */
static void copy_example(lmf_sft_data *dst, const lmf_sft_data *src, size_t i) {
    append(dst, src->ids + src->start[i], src->loss + src->start[i], src->start[i + 1] - src->start[i]);
}

lmf_status lmf_sft_split(lmf_sft_data *d, double val_fraction, uint64_t seed, lmf_sft_data *val) {
    LMF_REQUIRE_ARG(val_fraction > 0 && val_fraction < 1, "validation fraction must be in (0, 1), got %g",
                    val_fraction);
    size_t n_val = (size_t)(val_fraction * (double)d->n + 0.5);
    LMF_REQUIRE_ARG(n_val >= 1 && n_val < d->n, "validation fraction %g of %zu examples leaves %zu for validation "
                    "and %zu for training: both need at least one", val_fraction, d->n, n_val, d->n - n_val);
    size_t *order = lmf_xmalloc(d->n * sizeof *order);
    uint8_t *is_val = lmf_xcalloc(d->n, 1);
    permutation(order, d->n, seed, 0x5f11u, 1);
    for (size_t i = 0; i < n_val; i++) is_val[order[i]] = 1;
    lmf_sft_data train = {.pad = d->pad, .stats = d->stats};
    train.stats.n_tokens = train.stats.n_loss_tokens = 0;
    memset(val, 0, sizeof *val);
    val->pad = d->pad;
    for (size_t i = 0; i < d->n; i++) copy_example(is_val[i] ? val : &train, d, i);
    free(order);
    free(is_val);
    lmf_sft_free(d);
    *d = train;
    return LMF_OK;
}

static size_t example_len(const lmf_sft_data *d, size_t e, int T) {
    size_t len = d->start[e + 1] - d->start[e];
    return len < (size_t)T ? len : (size_t)T;
}

/* Example e (SIZE_MAX: none) into the n slots of tk / tg, padded after it; returns its targets. */
static size_t place(const lmf_sft_data *d, size_t e, int32_t *tk, int32_t *tg, size_t n) {
    const int32_t *ids = NULL;
    const uint8_t *loss = NULL;
    size_t len = 0, n_targets = 0;
    if (e != SIZE_MAX) {
        LMF_CHECK(e < d->n);
        ids = d->ids + d->start[e], loss = d->loss + d->start[e], len = example_len(d, e, (int)n);
    }
    for (size_t t = 0; t < n; t++) {
        tk[t] = t < len ? ids[t] : d->pad;
        tg[t] = t + 1 < len && loss[t + 1] ? ids[t + 1] : -1;
        n_targets += tg[t] >= 0;
    }
    return n_targets;
}

size_t lmf_sft_batch(const lmf_sft_data *d, const size_t *rows, int B, int T, int32_t *tokens, int32_t *targets) {
    size_t n_targets = 0;
    for (int b = 0; b < B; b++)
        n_targets += place(d, rows[b], tokens + (size_t)b * T, targets + (size_t)b * T, (size_t)T);
    return n_targets;
}

int lmf_sft_batch_len(const lmf_sft_data *d, const size_t *rows, int B, int T) {
    size_t most = 2;
    for (int b = 0; b < B; b++) {
        size_t len = rows[b] == SIZE_MAX ? 0 : example_len(d, rows[b], T);
        if (len > most) most = len;
    }
    most = (most + 15) / 16 * 16;
    return most < (size_t)T ? (int)most : T;
}

lmf_status lmf_sft_loader_init(lmf_sft_loader *l, const lmf_sft_data *d, int B, int T, uint64_t seed, int shuffle) {
    memset(l, 0, sizeof *l);
    LMF_REQUIRE_ARG(B >= 1 && T >= 2, "fine-tuning batches: need batch_size >= 1 and seq_len >= 2, got %d and %d",
                    B, T);
    LMF_REQUIRE_ARG(d->n > 0, "fine-tuning batches: no examples");
    *l = (lmf_sft_loader){.d = d, .B = B, .T = T, .last_T = T, .shuffle = shuffle, .seed = seed};
    l->order = lmf_xmalloc(d->n * sizeof *l->order);
    l->rows = lmf_xmalloc((size_t)B * sizeof *l->rows);
    permutation(l->order, d->n, seed, 0, shuffle);
    return LMF_OK;
}

void lmf_sft_loader_pack(lmf_sft_loader *l) {
    l->pack = 1;
    if (!l->positions) l->positions = lmf_xmalloc(sizeof(int32_t) * (size_t)l->B * l->T);
}

size_t lmf_sft_loader_epoch_rows(const lmf_sft_loader *l) {
    if (!l->pack) return l->d->n;
    size_t rows = 1, t = 0;
    for (size_t i = 0; i < l->d->n; i++) {
        size_t len = example_len(l->d, l->order[i], l->T);
        if (t > 0 && t + len > (size_t)l->T) rows++, t = 0;
        t += len;
    }
    return rows;
}

/* Epoch `epoch`'s order: the permutation, then grouped by length when asked. */
static void epoch_order(lmf_sft_loader *l, long epoch) {
    size_t n = l->d->n, B = (size_t)l->B;
    permutation(l->order, n, l->seed, (uint64_t)epoch, l->shuffle);
    if (!l->group) return;
    size_t mult = n / (4 * B) < 50 ? n / (4 * B) : 50, mega = (mult ? mult : 1) * B, longest = 0;
    lmf_keyed *k = lmf_xmalloc(mega * sizeof *k);
    for (size_t m0 = 0; m0 < n; m0 += mega) {
        size_t m = n - m0 < mega ? n - m0 : mega;
        for (size_t i = 0; i < m; i++) /* longest first: a descending key sorts as ~key */
            k[i] = (lmf_keyed){~(uint64_t)example_len(l->d, l->order[m0 + i], l->T), (int64_t)i};
        qsort(k, m, sizeof *k, lmf_by_key);
        for (size_t i = 0; i < m; i++) k[i].index = (int64_t)l->order[m0 + k[i].index];
        for (size_t i = 0; i < m; i++) l->order[m0 + i] = (size_t)k[i].index;
        if (example_len(l->d, l->order[m0], l->T) > example_len(l->d, l->order[longest], l->T)) longest = m0;
    }
    size_t t = l->order[0]; /* megabatch heads: the longest of all to the front */
    l->order[0] = l->order[longest], l->order[longest] = t;
    free(k);
}

void lmf_sft_loader_group(lmf_sft_loader *l) {
    l->group = 1;
    epoch_order(l, l->epoch);
}

/* The example at the loader's place in its order, starting the next epoch when this one is done. */
static size_t peek(lmf_sft_loader *l) {
    if (l->pos == l->d->n) {
        l->epoch++;
        l->pos = 0;
        epoch_order(l, l->epoch);
    }
    return l->order[l->pos];
}

lmf_status lmf_sft_loader_next(void *loader, int32_t *tokens, int32_t *targets) {
    lmf_sft_loader *l = loader;
    if (!l->pack) {
        for (int b = 0; b < l->B; b++) l->rows[b] = peek(l), l->pos++;
        l->last_T = l->trim ? lmf_sft_batch_len(l->d, l->rows, l->B, l->T) : l->T;
        lmf_sft_batch(l->d, l->rows, l->B, l->last_T, tokens, targets);
        return LMF_OK;
    }
    for (int b = 0; b < l->B; b++) {
        size_t T = (size_t)l->T, t = 0, row = (size_t)b * T;
        while (t < T) {
            size_t e = peek(l), len = example_len(l->d, e, l->T);
            if (t > 0 && t + len > T) break;
            place(l->d, e, tokens + row + t, targets + row + t, len);
            for (size_t i = 0; i < len; i++) l->positions[row + t + i] = (int32_t)i;
            l->pos++, t += len;
        }
        if (t < T) place(l->d, SIZE_MAX, tokens + row + t, targets + row + t, T - t);
        for (size_t i = t; i < T; i++) l->positions[row + i] = (int32_t)(i - t);
    }
    return LMF_OK;
}

void lmf_sft_loader_free(lmf_sft_loader *l) {
    free(l->order);
    free(l->rows);
    free(l->positions);
    memset(l, 0, sizeof *l);
}
