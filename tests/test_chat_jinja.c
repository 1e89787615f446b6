/* test_chat_jinja.c — the chat-template interpreter (src/model/jinja*.c) against jinja2 as transformers runs it.
 *
 *  - every case of tests/reference/fixtures/chat/chat_fixtures.json (make_chat_fixtures.py: SmolLM2, Qwen2.5, Qwen3
 *    with and without enable_thinking, Llama-3.1/3.2, Mistral-7B-Instruct-v0.3, Phi-3, Gemma-2, Gemma-3, Zephyr over
 *    several conversations, and one small template per feature) renders byte for byte as transformers renders it, or fails
 *    where it raised (with the template's message, for raise_exception);
 *  - SmolLM2's token ids through lmf_chat_encode (its GGUF's template, tokenizer and BOS rule) equal transformers'
 *    apply_chat_template(tokenize=True) (fixtures/chat/smollm2_chat_ids.json; skipped without the model);
 *  - hostile templates (deep nesting, huge loops, exponential strings, runaway macros, broken syntax) fail with a
 *    clear error, quickly. */
#include "model/jinja.h"

#include "core/status.h"
#include "chat_fixture.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <time.h>

#define FIXTURE LMF_SOURCE_DIR "/tests/reference/fixtures/chat/chat_fixtures.json"

static void test_fixtures(void **state) {
    (void)state;
    char *text = slurp(FIXTURE, NULL);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    time_t t = chat_fixture_now(root);
    int n = 0, failed = 0, raised = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *tmpl = cJSON_GetObjectItem(c, "template")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "expected"), *err = cJSON_GetObjectItem(c, "error");
        lmf_jinja *j;
        lmf_status st = lmf_jinja_compile(tmpl, strlen(tmpl), &j);
        lmf_text out = {0};
        if (st == LMF_OK) st = lmf_jinja_render(j, cJSON_GetObjectItem(c, "vars"), t, &out);
        n++;
        if (want) {
            if (st != LMF_OK) {
                printf("FAIL %s: %s\n", name, lmf_last_error());
                failed++;
            } else if (strlen(want->valuestring) != out.len || memcmp(want->valuestring, out.data, out.len)) {
                printf("FAIL %s:\n--- want\n%s\n--- got\n%s\n---\n", name, want->valuestring, out.data);
                failed++;
            }
        } else {
            raised++;
            /* raise_exception's message is the template's; other errors are Python's words, not ours */
            int check_msg = cJSON_IsTrue(cJSON_GetObjectItem(c, "raised"));
            if (st != LMF_ERR_ARG || (check_msg && !strstr(lmf_last_error(), err->valuestring))) {
                printf("FAIL %s: want an error with '%s', got status %d '%s'\n", name, err->valuestring, st,
                       st ? lmf_last_error() : out.data);
                failed++;
            }
        }
        free(out.data);
        lmf_jinja_free(j);
    }
    printf("%d cases (%d raise), %d failed\n", n, raised, failed);
    assert_true(n > 150 && raised >= 8);
    assert_int_equal(failed, 0);
    cJSON_Delete(root);
    free(text);
}

static void test_smollm2_ids(void **state) {
    (void)state;
    const char *path = smollm2_path();
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("[  SKIP    ] %s not found (scripts/fetch-smollm2.sh)\n", path);
        skip();
    }
    lmf_weights *w;
    if (lmf_weights_load(path, &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_chat_template t;
    assert_int_equal(lmf_chat_template_from_weights(w, &t), LMF_OK);
    assert_non_null(t.jinja); /* SmolLM2's own template runs */
    int add_bos;
    int32_t bos = lmf_weights_bos(w, &add_bos);
    char *text = slurp(LMF_SOURCE_DIR "/tests/reference/fixtures/chat/smollm2_chat_ids.json", NULL);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, root) {
        const cJSON *msgs = cJSON_GetObjectItem(c, "messages"), *ids = cJSON_GetObjectItem(c, "ids");
        lmf_chat_message m[8];
        int k = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, msgs) {
            m[k++] = (lmf_chat_message){cJSON_GetObjectItem(x, "role")->valuestring,
                                        cJSON_GetObjectItem(x, "content")->valuestring};
        }
        lmf_ids got = {0};
        assert_int_equal(lmf_chat_encode(lmf_weights_tokenizer(w), &t, add_bos ? bos : -1, m, k,
                                         cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")), &got),
                         LMF_OK);
        if ((int)got.len != cJSON_GetArraySize(ids))
            fail_msg("%s: %zu ids, want %d", cJSON_GetObjectItem(c, "name")->valuestring, got.len,
                     cJSON_GetArraySize(ids));
        for (size_t i = 0; i < got.len; i++) assert_int_equal(got.data[i], cJSON_GetArrayItem(ids, (int)i)->valueint);
        free(got.data);
        n++;
    }
    assert_true(n >= 8);
    cJSON_Delete(root);
    free(text);
    lmf_chat_template_free(&t);
    lmf_weights_free(w);
}

/* Renders src with no variables: the status, and the error text in err (or the output). */
static lmf_status run(const char *src, char *msg, size_t cap) {
    lmf_jinja *j;
    lmf_status st = lmf_jinja_compile(src, strlen(src), &j);
    lmf_text out = {0};
    if (st == LMF_OK) {
        cJSON *vars = cJSON_CreateObject();
        st = lmf_jinja_render(j, vars, 0, &out);
        cJSON_Delete(vars);
        lmf_jinja_free(j);
    }
    snprintf(msg, cap, "%s", st == LMF_OK ? (out.data ? out.data : "") : lmf_last_error());
    free(out.data);
    return st;
}

static void expect(const char *src, lmf_status want, const char *needle) {
    char msg[1024];
    clock_t t0 = clock();
    lmf_status st = run(src, msg, sizeof msg);
    double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
    if (st != want || !strstr(msg, needle)) fail_msg("%.80s: status %d '%s' (want %d with '%s')", src, st, msg, want, needle);
    if (s > 5) fail_msg("%.80s took %.1f s", src, s);
}

static void test_hostile(void **state) {
    (void)state;
    /* syntax: named by line */
    expect("{% if x %}", LMF_ERR_FORMAT, "missing {% endif %}");
    expect("a\n{{ x + }}", LMF_ERR_FORMAT, "line 2");
    expect("{{ 'unterminated }}", LMF_ERR_FORMAT, "unterminated string");
    expect("{% for x in y %}{% endif %}", LMF_ERR_FORMAT, "endif");
    expect("{{ x ]", LMF_ERR_FORMAT, "unbalanced");
    expect("{# open comment", LMF_ERR_FORMAT, "comment");
    expect("{% include 'x' %}", LMF_ERR_FORMAT, "unsupported");
    expect("{{ 99999999999999999999 }}", LMF_ERR_FORMAT, "too large");
    /* nesting */
    char *deep = malloc(100000);
    size_t k = 0;
    for (int i = 0; i < 5000; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 5000; i++) deep[k++] = ')';
    deep[k] = 0;
    char *src = malloc(k + 16);
    sprintf(src, "{{ %s }}", deep);
    expect(src, LMF_ERR_FORMAT, "nested too deeply");
    k = 0;
    for (int i = 0; i < 3000; i++) k += (size_t)sprintf(deep + k, "{%% if 1 %%}");
    expect(deep, LMF_ERR_FORMAT, "nested too deeply");
    free(deep), free(src);
    /* running: bounded time, memory and output */
    expect("{% set xs = range(5000) %}{% for i in xs %}{% for j in xs %}{% endfor %}{% endfor %}", LMF_ERR_ARG, "steps");
    expect("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", LMF_ERR_ARG, "MiB");
    expect("{{ 1 ** 1000000000000000000 }}{{ '' * 1000000000000000000 }}{{ [] * 1000000000000000000 }}", LMF_OK, "1");
    expect("{{ [1, 2, 3][::-9223372036854775807] }}{{ 'abc'[::9223372036854775807] }}", LMF_OK, "[3]a");
    expect("{{ range(-9223372036854775807, 9223372036854775807)|length }}", LMF_ERR_ARG, "range");
    expect("{% break %}", LMF_ERR_FORMAT, "outside a loop");
    expect("{% for x in [1] %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}", LMF_ERR_FORMAT, "outside a loop");
    expect("{{ {}.get() }}", LMF_ERR_ARG, "get takes");
    expect("{{ ','.join() }}", LMF_ERR_ARG, "join takes");
    /* scans inside loops cost what they scan */
    expect("{% set xs = range(100000) %}{% for x in xs %}{% if x in xs %}{% endif %}{% endfor %}", LMF_ERR_ARG, "steps");
    expect("{% set s = 'ab' * 1000000 %}{% for i in range(100000) %}{{ s|length }}{% endfor %}", LMF_ERR_ARG, "steps");
    expect("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
           LMF_ERR_ARG, "MiB");
    expect("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", LMF_ERR_ARG, "MiB");
    expect("{{ 'x' * 100000000000 }}", LMF_ERR_ARG, "MiB");
    expect("{{ range(1000000000)|length }}", LMF_ERR_ARG, "range");
    expect("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", LMF_ERR_ARG, "nested more than");
    expect("{{ raise_exception('bad conversation') }}", LMF_ERR_ARG, "the template raised: bad conversation");
    expect("{{ x.y }}", LMF_ERR_ARG, "'x' is undefined");
    expect("{{ 1 // 0 }}", LMF_ERR_ARG, "division");
    expect("{{ 9223372036854775807 + 1 }}", LMF_ERR_ARG, "overflow");
    expect("{{ [1]|bogus }}", LMF_ERR_ARG, "no filter named 'bogus'");
    expect("{% set x = 1 %}{% set x.y = 2 %}", LMF_ERR_ARG, "non-namespace");
    /* what still works */
    expect("{{ 'a' if true else 'b' }}{{ [1, 2][5] is defined }}", LMF_OK, "aFalse");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fixtures), cmocka_unit_test(test_smollm2_ids),
                                       cmocka_unit_test(test_hostile)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
