/* test_reply_parse.c — tool calls and reasoning out of a reply's text (src/serve/reply_parse.c).
 *
 * Each case's text gives the expected events, written as one string: content as it is, reasoning as R(...), a call
 * as C(name|arguments). The text is fed whole, cut at every byte into two pieces, and one byte at a time: every way
 * must give the same events once adjacent text events are joined. */
#include "serve/reply_parse.h"

#include "test_util.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    lmf_text out;
    int last; /* kind of the last text event, -1 after a call or at the start */
} events;

static void on_event(void *ctx, lmf_reply_kind kind, const char *text, size_t n, const char *name, const char *args) {
    events *e = ctx;
    if (kind == LMF_REPLY_TOOL_CALL) {
        if (e->last == LMF_REPLY_REASONING) lmf_text_push(&e->out, ")", 1);
        lmf_text_push(&e->out, "C(", 2);
        lmf_text_push(&e->out, name, strlen(name));
        lmf_text_push(&e->out, "|", 1);
        lmf_text_push(&e->out, args, strlen(args));
        lmf_text_push(&e->out, ")", 1);
        e->last = -1;
        return;
    }
    assert_true(n > 0); /* no empty text events */
    if ((int)kind != e->last) {
        if (e->last == LMF_REPLY_REASONING) lmf_text_push(&e->out, ")", 1);
        if (kind == LMF_REPLY_REASONING) lmf_text_push(&e->out, "R(", 2);
    }
    lmf_text_push(&e->out, text, n);
    e->last = (int)kind;
}

static void close_events(events *e) {
    if (e->last == LMF_REPLY_REASONING) lmf_text_push(&e->out, ")", 1);
    lmf_text_push(&e->out, "", 0);
}

/* Feeds text cut at the given offsets (cuts[0..n_cuts), ascending). */
static char *parse_cut(const char *text, const size_t *cuts, int n_cuts, int tools, int parallel, int reasoning,
                       int think_open) {
    lmf_reply_parser p;
    lmf_reply_parser_init(&p, tools, parallel, reasoning, think_open);
    events e = {.last = -1};
    size_t at = 0, n = strlen(text);
    for (int i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : n;
        lmf_reply_parser_feed(&p, text + at, to - at, on_event, &e);
        at = to;
    }
    lmf_reply_parser_finish(&p, on_event, &e);
    lmf_reply_parser_free(&p);
    close_events(&e);
    return e.out.data;
}

static void check(const char *text, int tools, int parallel, int reasoning, int think_open, const char *want) {
    char *got = parse_cut(text, NULL, 0, tools, parallel, reasoning, think_open);
    if (strcmp(got, want)) fail_msg("'%s' whole: want '%s', got '%s'", text, want, got);
    free(got);
    size_t n = strlen(text);
    for (size_t c = 0; c <= n; c++) {
        got = parse_cut(text, &c, 1, tools, parallel, reasoning, think_open);
        if (strcmp(got, want)) fail_msg("'%s' cut at %zu: want '%s', got '%s'", text, c, want, got);
        free(got);
    }
    size_t *all = malloc((n + 1) * sizeof *all);
    for (size_t c = 0; c < n; c++) all[c] = c + 1;
    got = parse_cut(text, all, (int)(n ? n - 1 : 0), tools, parallel, reasoning, think_open);
    if (strcmp(got, want)) fail_msg("'%s' byte by byte: want '%s', got '%s'", text, want, got);
    free(got);
    free(all);
}

static void test_tool_calls(void **state) {
    (void)state;
    /* Qwen2.5's shape */
    check("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"n\": [1, 2.5]}}\n"
          "</tool_call>", 1, 1, 0, 0, "C(get_weather|{\"city\":\"Paris\",\"n\":[1,2.5]})");
    /* text around and between calls; whitespace around calls dropped */
    check("Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>{\"name\": "
          "\"b\", \"arguments\": {\"x\": \"<tool_call>\"}}</tool_call>\n", 1, 1, 0, 0,
          "Let me check.C(a|{})C(b|{\"x\":\"<tool_call>\"})");
    check("x <tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call> and y", 1, 1, 0, 0, "xC(a|{})and y");
    /* arguments as a JSON string of an object */
    check("<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"k\\\": 1}\"}</tool_call>", 1, 1, 0, 0, "C(a|{\"k\":1})");
    /* malformed: stays content, tags and all */
    check("<tool_call>{\"name\": \"a\", \"arguments\": {}</tool_call>", 1, 1, 0, 0,
          "<tool_call>{\"name\": \"a\", \"arguments\": {}</tool_call>");
    check("<tool_call>{\"arguments\": {}}</tool_call>", 1, 1, 0, 0, "<tool_call>{\"arguments\": {}}</tool_call>");
    check("<tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>", 1, 1, 0, 0,
          "<tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>");
    check("<tool_call>{\"name\": \"a\", \"arguments\": {}} tail</tool_call>", 1, 1, 0, 0,
          "<tool_call>{\"name\": \"a\", \"arguments\": {}} tail</tool_call>");
    check("ok <tool_call>{\"name\": \"a\", \"arguments\": {}}", 1, 1, 0, 0,
          "ok <tool_call>{\"name\": \"a\", \"arguments\": {}}"); /* never closed */
    check("a <tool_ca", 1, 1, 0, 0, "a <tool_ca");
    check("<tool_call>", 1, 1, 0, 0, "<tool_call>");
    /* parallel off: the first call only */
    check("<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\", \"arguments\": {}}"
          "</tool_call>", 1, 0, 0, 0, "C(a|{})<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>");
    /* tools off: all content, whitespace kept */
    check("<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n", 0, 1, 0, 0,
          "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n");
    /* no call: whitespace kept */
    check("  hi \n", 1, 1, 0, 0, "  hi \n");
    check("Ünïcödé ✓ <b>", 1, 1, 0, 0, "Ünïcödé ✓ <b>");
    check("", 1, 1, 1, 0, "");
}

static void test_reasoning(void **state) {
    (void)state;
    check("<think>\nThe user asks.\n</think>\n\nParis.", 0, 1, 1, 0, "R(\nThe user asks.\n)Paris.");
    check("<think></think>Paris.", 0, 1, 1, 0, "Paris.");
    /* the prompt opened <think> (a template that starts the reply thinking) */
    check("hmm</think>\n\nParis.", 0, 1, 1, 1, "R(hmm)Paris.");
    /* never closed: all reasoning */
    check("<think>still thinking", 0, 1, 1, 0, "R(still thinking)");
    check("<think>a </thin", 0, 1, 1, 0, "R(a </thin)");
    /* not at the start: content */
    check("Paris. <think>x</think>", 0, 1, 1, 0, "Paris. <think>x</think>");
    check("<thin", 0, 1, 1, 0, "<thin");
    /* reasoning off: all content */
    check("<think>x</think>y", 0, 1, 0, 0, "<think>x</think>y");
    /* both, as Qwen3 writes them */
    check("<think>\nI need the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
          "{\"city\": \"Paris\"}}\n</tool_call>", 1, 1, 1, 0,
          "R(\nI need the weather.\n)C(get_weather|{\"city\":\"Paris\"})");
    check("<think>x <tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call></think>y", 1, 1, 1, 0,
          "R(x <tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>)y");
}

/* Random texts made of tag pieces, partial tags, JSON, whitespace and multi-byte characters, under random flags: every
 * cut gives the events the whole text gives. */
static void test_random_cuts(void **state) {
    (void)state;
    static const char *const pieces[] = {"<think>", "</think>", "<tool_call>", "</tool_call>", "<tool", "</thi", "<",
                                         "{\"name\": \"f\", \"arguments\": {\"a\": 1}}", "{\"name\": 1}", " ",
                                         "\n", "x", "é", "✓", "}", "{"};
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int it = 0; it < 3000; it++) {
        char text[512];
        size_t n = 0;
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)(r >> 59) + 1; /* 1..32 pieces */
        for (int i = 0; i < k; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            const char *p = pieces[(r >> 33) % (sizeof pieces / sizeof *pieces)];
            size_t l = strlen(p);
            if (n + l >= sizeof text) break;
            memcpy(text + n, p, l);
            n += l;
        }
        text[n] = 0;
        int tools = (int)(r >> 20) & 1, parallel = (int)(r >> 21) & 1, reasoning = (int)(r >> 22) & 1;
        int open = reasoning && ((r >> 23) & 1);
        char *want = parse_cut(text, NULL, 0, tools, parallel, reasoning, open);
        for (size_t c = 0; c <= n; c++) {
            char *got = parse_cut(text, &c, 1, tools, parallel, reasoning, open);
            if (strcmp(got, want)) fail_msg("'%s' (%d%d%d%d) cut at %zu: '%s' vs whole '%s'", text, tools, parallel,
                                            reasoning, open, c, got, want);
            free(got);
        }
        size_t all[512];
        for (size_t c = 0; c + 1 < n; c++) all[c] = c + 1;
        char *got = parse_cut(text, all, n ? (int)n - 1 : 0, tools, parallel, reasoning, open);
        if (strcmp(got, want)) fail_msg("'%s' byte by byte: '%s' vs whole '%s'", text, got, want);
        free(got);
        free(want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tool_calls), cmocka_unit_test(test_reasoning),
                                       cmocka_unit_test(test_random_cuts)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
