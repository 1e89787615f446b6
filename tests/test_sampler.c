/* test_sampler.c — next-token sampling: greedy, seeded determinism, the sampled distribution against the softmax,
 * and each truncation (top-k, top-p, min-p) and the repetition penalty at their boundaries. */
#include "test_util.h"

#include "lmforge.h"

#include <string.h>

#define V 8

static lmf_sampler *make(float temp, int top_k, float top_p, float min_p, float rep, uint64_t seed) {
    lmf_sampler_params p = lmf_sampler_defaults();
    p.temperature = temp, p.top_k = top_k, p.top_p = top_p, p.min_p = min_p, p.repeat_penalty = rep, p.seed = seed;
    lmf_sampler *s;
    assert_int_equal(lmf_sampler_create(&p, V, &s), LMF_OK);
    return s;
}

/* logits whose softmax is 0.4 0.2 0.15 0.1 0.07 0.05 0.02 0.01 */
static void logits(float *x) {
    const double p[V] = {0.4, 0.2, 0.15, 0.1, 0.07, 0.05, 0.02, 0.01};
    for (int i = 0; i < V; i++) x[i] = (float)log(p[i]);
}

static void counts(lmf_sampler *s, int n, int *c, const int32_t *hist, int nh) {
    memset(c, 0, sizeof(int) * V);
    float x[V];
    for (int i = 0; i < n; i++) {
        logits(x);
        c[lmf_sampler_sample(s, x, hist, nh)]++;
    }
}

static void test_greedy(void **state) {
    lmf_sampler *s = make(0, 40, 0.95f, 0.05f, 1, 1);
    float x[V] = {1, 3, 3, 2, -1, 0, 0, 0};
    assert_int_equal(lmf_sampler_sample(s, x, NULL, 0), 1); /* ties go to the lowest id */
    lmf_sampler_free(s);
}

static void test_distribution(void **state) {
    /* no truncation, temperature 1: frequencies follow the softmax */
    lmf_sampler *s = make(1, 0, 1, 0, 1, 42);
    int c[V], n = 200000;
    counts(s, n, c, NULL, 0);
    const double p[V] = {0.4, 0.2, 0.15, 0.1, 0.07, 0.05, 0.02, 0.01};
    for (int i = 0; i < V; i++) {
        double f = (double)c[i] / n, sd = sqrt(p[i] * (1 - p[i]) / n);
        if (fabs(f - p[i]) > 5 * sd) fail_msg("token %d: frequency %.4f, probability %.4f", i, f, p[i]);
    }
    lmf_sampler_free(s);
    /* the same seed draws the same tokens */
    lmf_sampler *a = make(0.8f, 40, 0.95f, 0.05f, 1, 7), *b = make(0.8f, 40, 0.95f, 0.05f, 1, 7);
    float x[V], y[V];
    for (int i = 0; i < 1000; i++) {
        logits(x), logits(y);
        assert_int_equal(lmf_sampler_sample(a, x, NULL, 0), lmf_sampler_sample(b, y, NULL, 0));
    }
    lmf_sampler_free(a);
    lmf_sampler_free(b);
}

static void test_truncation(void **state) {
    int c[V];
    lmf_sampler *s = make(1, 3, 1, 0, 1, 3); /* top-k 3: only ids 0..2 */
    counts(s, 20000, c, NULL, 0);
    assert_true(c[0] > 0 && c[1] > 0 && c[2] > 0);
    for (int i = 3; i < V; i++) assert_int_equal(c[i], 0);
    lmf_sampler_free(s);
    s = make(1, 0, 0.75f, 0, 1, 3); /* top-p 0.75: 0.4 + 0.2 + 0.15 reaches it with id 2 */
    counts(s, 20000, c, NULL, 0);
    assert_true(c[2] > 0);
    for (int i = 3; i < V; i++) assert_int_equal(c[i], 0);
    lmf_sampler_free(s);
    s = make(1, 0, 1, 0.24f, 1, 3); /* min-p 0.24: p >= 0.096 keeps ids 0..3 (0.1) but not 4 (0.07) */
    counts(s, 20000, c, NULL, 0);
    assert_true(c[3] > 0);
    for (int i = 4; i < V; i++) assert_int_equal(c[i], 0);
    lmf_sampler_free(s);
    s = make(0.01f, 0, 1, 0, 1, 3); /* a tiny temperature is almost greedy */
    counts(s, 1000, c, NULL, 0);
    assert_int_equal(c[0], 1000);
    lmf_sampler_free(s);
}

static void test_repeat_penalty(void **state) {
    lmf_sampler *s = make(0, 0, 1, 0, 2.0f, 1);
    float x[V] = {2.0f, 1.5f, -1, -1, -1, -1, -1, -1};
    int32_t hist[3] = {0, 0, 5}; /* token 0 twice: penalised once; 2.0 / 2 = 1.0 < 1.5 */
    assert_int_equal(lmf_sampler_sample(s, x, hist, 3), 1);
    assert_true(x[0] == 1.0f && x[5] == -2.0f && x[1] == 1.5f);
    lmf_sampler_free(s);
}

static void test_bad_params(void **state) {
    lmf_sampler_params p = lmf_sampler_defaults();
    lmf_sampler *s;
    p.top_p = 0;
    assert_int_equal(lmf_sampler_create(&p, V, &s), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "top-p"));
    p = lmf_sampler_defaults(), p.temperature = -1;
    assert_int_equal(lmf_sampler_create(&p, V, &s), LMF_ERR_ARG);
    p = lmf_sampler_defaults(), p.repeat_penalty = 0;
    assert_int_equal(lmf_sampler_create(&p, V, &s), LMF_ERR_ARG);
}

static void test_chat_templates(void **state) {
    lmf_chat_template t;
    const char *smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                       "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                       "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                       "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                       "{% endif %}";
    assert_int_equal(lmf_chat_template_parse(smol, &t), LMF_OK);
    assert_int_equal(t.format, LMF_CHAT_CHATML);
    lmf_chat_message m[3] = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
    lmf_text out = {0};
    assert_int_equal(lmf_chat_render(&t, m, 3, 1, &out), LMF_OK);
    assert_string_equal(out.data, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                                  "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
                                  "<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    out.len = 0;
    lmf_chat_message ms[2] = {{"system", "Be brief."}, {"user", "Hi"}};
    assert_int_equal(lmf_chat_render(&t, ms, 2, 0, &out), LMF_OK);
    assert_string_equal(out.data, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    lmf_chat_template_free(&t);

    /* the family is recognised from the markers; the template itself renders, the built-in renderer on request */
    assert_int_equal(lmf_chat_template_parse("{{ '<|start_header_id|>' }}", &t), LMF_OK);
    assert_int_equal(t.format, LMF_CHAT_LLAMA3);
    out.len = 0;
    assert_int_equal(lmf_chat_render(&t, ms, 2, 1, &out), LMF_OK);
    assert_string_equal(out.data, "<|start_header_id|>");
    lmf_chat_template_use_builtin(&t);
    out.len = 0;
    assert_int_equal(lmf_chat_render(&t, ms, 2, 1, &out), LMF_OK);
    assert_string_equal(out.data, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant"
                                  "<|end_header_id|>\n\n");
    lmf_chat_template_free(&t);
    assert_int_equal(lmf_chat_template_parse("{{ '[INST] ' }}", &t), LMF_OK);
    assert_int_equal(t.format, LMF_CHAT_LLAMA2);
    lmf_chat_template_use_builtin(&t);
    out.len = 0;
    lmf_chat_message m2[4] = {{"system", "S"}, {"user", "A"}, {"assistant", "B"}, {"user", "C"}};
    assert_int_equal(lmf_chat_render(&t, m2, 4, 1, &out), LMF_OK);
    assert_string_equal(out.data, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nA [/INST] B </s><s>[INST] C [/INST]");
    /* refusals */
    lmf_chat_message bad[1] = {{"tool", "x"}};
    assert_int_equal(lmf_chat_render(&t, bad, 1, 1, &out), LMF_ERR_ARG);
    lmf_chat_template_free(&t);
    /* a template of no known family renders through the interpreter; one that does not compile is refused, unless
     * its family is known (then the built-in renderer stays) */
    assert_int_equal(lmf_chat_template_parse("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}", &t),
                     LMF_OK);
    assert_int_equal(t.format, LMF_CHAT_OTHER);
    out.len = 0;
    assert_int_equal(lmf_chat_render(&t, ms, 2, 1, &out), LMF_OK);
    assert_string_equal(out.data, "<system>Be brief.<user>Hi");
    lmf_chat_template_use_builtin(&t);
    assert_int_equal(lmf_chat_render(&t, ms, 2, 1, &out), LMF_ERR_ARG);
    lmf_chat_template_free(&t);
    assert_int_equal(lmf_chat_template_parse("{{ unknown", &t), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "line 1"));
    assert_int_equal(lmf_chat_template_parse("<|im_start|>{% if %}", &t), LMF_OK);
    assert_int_equal(t.format, LMF_CHAT_CHATML);
    assert_null(t.jinja);
    lmf_chat_template_free(&t);
    free(out.data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_truncation),    cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_bad_params),    cmocka_unit_test(test_chat_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
