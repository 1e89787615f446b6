/* test_fuzz.c — deterministic mutation fuzzing of every parser of untrusted input (shards, checkpoints,
 * safetensors, GGUF, configs, LoRA adapters):
 * valid seeds are bit-flipped, truncated, extended and overwritten with boundary values;
 * nothing may crash (the ASan build checks memory too). Deeper, coverage-guided runs: `make fuzz`. */
#include "test_util.h"

#include "fuzz_targets.h"
#include "model/model.h"

#include <sys/stat.h>

static uint32_t rng_state = 12345;
static uint32_t rnd32(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 17, rng_state ^= rng_state << 5;
    return rng_state;
}

static uint8_t *read_all(const char *path, size_t *n) {
    uint8_t *b = (uint8_t *)slurp(path, n);
    if (!b) fail_msg("cannot read seed %s", path);
    return b;
}

/* Mutates a copy of seed `iters` times; checks that the unmodified seed is accepted. */
static void mutate_loop(int (*target)(const uint8_t *, size_t), const uint8_t *seed, size_t n, int iters) {
    assert_true(target(seed, n));
    uint8_t *buf = malloc(n + 64);
    static const uint8_t boundary[] = {0x00, 0xff, 0x7f, 0x80, 0x01, '"', '{', '[', ']', '}', ',', '\n', '='};
    int accepted = 0;
    for (int it = 0; it < iters; it++) {
        memcpy(buf, seed, n);
        size_t len = n;
        int kind = rnd32() % 5, count = 1 + rnd32() % 4;
        for (int c = 0; c < count && len; c++) {
            /* bias positions towards the start: that is where headers are */
            size_t pos = (rnd32() % 2) ? rnd32() % (len < 128 ? len : 128) : rnd32() % len;
            switch (kind) {
            case 0: buf[pos] ^= (uint8_t)(1u << (rnd32() % 8)); break;
            case 1: buf[pos] = boundary[rnd32() % sizeof boundary]; break;
            case 2: len = pos; break;
            case 3: if (len + 8 <= n + 64) { memset(buf + len, (int)(rnd32() & 0xff), 8); len += 8; } break;
            case 4: { uint32_t v = rnd32() % 3 == 0 ? 0xffffffffu : rnd32(); if (pos + 4 <= len) memcpy(buf + pos, &v, 4); } break;
            }
        }
        accepted += target(buf, len);
    }
    free(buf);
    (void)accepted; /* most mutations must be rejected, some survive: both are fine, crashing is not */
}

/* mutate_loop on the bytes of the file at path */
static void mutate_file(int (*target)(const uint8_t *, size_t), const char *path, int iters) {
    size_t n;
    uint8_t *seed = read_all(path, &n);
    mutate_loop(target, seed, n, iters);
    free(seed);
}

static char tmp[128];

static void test_fuzz_shard(void **s) {
    char p[256];
    snprintf(p, sizeof p, "%s/seed.bin", tmp);
    lmf_shard_writer w;
    assert_int_equal(lmf_shard_writer_open(&w, p, 300, 299, LMF_TOKENIZER_BPE), LMF_OK);
    for (uint32_t i = 0; i < 200; i++) {
        uint32_t t = (i * 37) % 300;
        lmf_shard_writer_put(&w, &t, 1);
    }
    assert_int_equal(lmf_shard_writer_close(&w), LMF_OK);
    mutate_file(fuzz_shard, p, 3000);
}

static void test_fuzz_checkpoint(void **s) {
    char p[256];
    snprintf(p, sizeof p, "%s/seed.lmfc", tmp);
    /* a whole tiny model (its config matches its parameters), so mutations that keep the checksum right (the target
     * tries each input that way too) reach the config text and the inference loader */
    lmf_train_config c;
    lmf_train_config_default(&c);
    c.model.vocab_size = 12, c.model.max_seq_len = 4, c.model.n_layer = 1, c.model.n_embd = 4, c.model.n_head = 1;
    c.model.n_kv_head = 1, c.model.ffn_dim = 4;
    size_t P = (size_t)lmf_param_count(&c.model);
    float *params = calloc(3 * P, sizeof(float)), *m = params + P, *v = m + P;
    for (size_t i = 0; i < P; i++) params[i] = (float)i * 0.01f, m[i] = -(float)i, v[i] = (float)(i * i);
    char *text = lmf_train_config_to_text(&c);
    assert_int_equal(lmf_checkpoint_save(p, text, 7, 1, 3, 7, params, m, v, P), LMF_OK);
    free(text), free(params);
    lmf_weights *w;
    if (lmf_weights_load_checkpoint(p, &w) != LMF_OK) fail_msg("seed: %s", lmf_last_error());
    lmf_weights_free(w);
    mutate_file(fuzz_checkpoint, p, 3000);
}

static void test_fuzz_safetensors(void **s) {
    char p[512];
    snprintf(p, sizeof p, "%s/tests/reference/fixtures/llama_tied.safetensors", LMF_SOURCE_DIR);
    size_t n;
    uint8_t *seed = read_all(p, &n);
    mutate_loop(fuzz_safetensors, seed, n, 1500);
    /* and a small hand-made file with every dtype */
    const char *hdr = "{\"__metadata__\":{\"a\":\"b\"},\"x\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                      "\"y\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}";
    uint64_t hl = strlen(hdr);
    uint8_t small[512];
    memcpy(small, &hl, 8), memcpy(small + 8, hdr, hl), memset(small + 8 + hl, 0x3c, 16);
    mutate_loop(fuzz_safetensors, small, 8 + hl + 16, 3000);
    free(seed);
}

static void test_fuzz_gguf(void **s) {
    char p[512];
    snprintf(p, sizeof p, "%s/tests/reference/fixtures/tiny_vocab.gguf", LMF_SOURCE_DIR);
    mutate_file(fuzz_gguf, p, 3000);
    /* a small SentencePiece vocabulary (model "llama": scores, byte tokens, add_space_prefix) */
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "t", "h", "e", "\xe2\x96\x81t",
                                       "he", "\xe2\x96\x81the", "<0x04>", "<0xFF>", "<0x20>", "<tool>"};
    static const float scores[] = {0, 0, 0, -1, -2, -2, -2, -3, -4, -5, 0, 0, 0, 0};
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 6, 6, 6, 4};
    lmf_gguf_writer *w = lmf_gguf_writer_create(0);
    lmf_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    lmf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 14);
    lmf_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LMF_GGUF_F32, scores, 14);
    lmf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LMF_GGUF_I32, types, 14);
    lmf_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", 1);
    lmf_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    uint8_t *seed;
    size_t n;
    lmf_gguf_writer_bytes(w, &seed, &n);
    lmf_gguf_writer_free(w);
    mutate_loop(fuzz_gguf, seed, n, 3000);
    free(seed);
}

static void test_fuzz_spm_model(void **s) {
    (void)s;
    char p[512];
    snprintf(p, sizeof p, "%s/tests/reference/fixtures/tiny_spm.model", LMF_SOURCE_DIR);
    mutate_file(fuzz_spm_model, p, 3000);
}

/* both formats: the legacy .dat (no magic: every mutation reaches its parser) and the GGUF one */
static void test_fuzz_imatrix(void **s) {
    (void)s;
    static const char *const seeds[2] = {"smollm2_imatrix.dat", "smollm2_imatrix.gguf"};
    for (int i = 0; i < 2; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/tests/reference/fixtures/%s", LMF_SOURCE_DIR, seeds[i]);
        mutate_file(fuzz_imatrix, p, i ? 300 : 1500);
    }
}

static void test_fuzz_tokenizer_json(void **s) {
    char p[256];
    snprintf(p, sizeof p, "%s/seed.json", tmp);
    /* seed: a small trained tokenizer with a special token, saved by our own writer */
    lmf_bpe_train_config tc = {0};
    tc.vocab_size = 300;
    const char *special[] = {"<|endoftext|>"};
    tc.special_tokens = special, tc.n_special = 1;
    lmf_bpe_trainer *tr;
    assert_int_equal(lmf_bpe_trainer_create(&tc, &tr), LMF_OK);
    const char *text = "the theory of the thing: there they thought then, 12345 times\n";
    for (int i = 0; i < 20; i++) lmf_bpe_trainer_feed(tr, text, strlen(text));
    lmf_tokenizer *tok;
    assert_int_equal(lmf_bpe_trainer_finish(tr, &tok), LMF_OK);
    lmf_bpe_trainer_free(tr);
    assert_int_equal(lmf_tokenizer_save(tok, p), LMF_OK);
    lmf_tokenizer_free(tok);
    mutate_file(fuzz_tokenizer_json, p, 1500);
    /* and the SentencePiece form (byte_fallback BPE, Prepend + Replace normalizer), written by our own writer */
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "t", "h", "e", "\xe2\x96\x81t", "he",
                                       "\xe2\x96\x81the", "<0x04>", "<0xFF>", "<0x20>", "<tool>"};
    static const float scores[] = {0, 0, 0, -1, -2, -2, -2, -3, -4, -5, 0, 0, 0, 0};
    static const uint8_t kinds[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 6, 6, 6, 4};
    assert_int_equal(lmf_tokenizer_build_spm(14, toks, scores, kinds, 1, 0, "fuzz seed", &tok), LMF_OK);
    assert_int_equal(lmf_tokenizer_save(tok, p), LMF_OK);
    lmf_tokenizer_free(tok);
    mutate_file(fuzz_tokenizer_json, p, 1500);
}

static void test_fuzz_encode(void **s) {
    /* arbitrary bytes, invalid UTF-8, special-token fragments and combining marks / Hangul jamo (NFC) included */
    static const char pool[] = " <|endoftext|>\xe2\x82" "e\xcc\x81\xcc\xa3\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8\xe2\x84\xab";
    uint8_t buf[300];
    for (int it = 0; it < 2000; it++) {
        size_t n = rnd32() % sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = rnd32() % 3 ? (uint8_t)rnd32() : (uint8_t)pool[rnd32() % (sizeof pool - 1)];
        assert_true(fuzz_encode(buf, n));
    }
}

static void test_fuzz_config(void **s) {
    lmf_train_config c;
    lmf_train_config_default(&c);
    strcpy(c.train_data, "data/train.bin");
    char *text = lmf_train_config_to_text(&c);
    mutate_loop(fuzz_config, (const uint8_t *)text, strlen(text), 3000);
    free(text);
}

static void test_fuzz_toml(void **s) {
    const char *seed = "[input]\npaths = [\"corpus/\", 'x.jsonl.zst']\nsplit = \"separator\"\n[run]\nthreads = 2\n"
                       "[gopher_quality]\nmin_avg_word_length = 3.5e0\nstop_words = [\"the\"]\n[gopher_repetition]\n"
                       "top_n_grams = [[2, 0.2], [3, 0.18]]\n[minhash]\nenabled = false # off\nseed = 0x10\n";
    mutate_loop(fuzz_toml, (const uint8_t *)seed, strlen(seed), 5000);
}

static void test_fuzz_sft(void **s) {
    const char *seed =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"hi\"}, "
        "{\"role\": \"assistant\", \"content\": \"abc\"}]}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"q\\u00e9<|im_end|>\"}, {\"role\": \"assistant\", "
        "\"content\": \" bc\"}, {\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", "
        "\"content\": \"\"}]}\n"
        "\n{\"prompt\": \"ab\", \"completion\": \"c\"}\r\n"
        "{\"text\": \"a long text that will not fit in 48 tokens, not by a long way, so it is truncated\"}\n";
    mutate_loop(fuzz_sft, (const uint8_t *)seed, strlen(seed), 4000);
}

/* Chat templates: mutations of real ones (Qwen3's, with tool calls, namespaces and reasoning; Llama-3.1's) */
static void test_fuzz_jinja(void **s) {
    static const char *const seeds[] = {LMF_SOURCE_DIR "/tests/reference/chat_templates/qwen3.jinja",
                                        LMF_SOURCE_DIR "/tests/reference/chat_templates/llama3.1.jinja",
                                        LMF_SOURCE_DIR "/tests/reference/chat_templates/mistral-7b-instruct-v0.3.jinja"};
    for (int i = 0; i < 3; i++) {
        size_t n;
        uint8_t *seed = read_all(seeds[i], &n);
        mutate_loop(fuzz_jinja, seed, n, 1500);
        free(seed);
    }
}

/* Constrained decoding: a schema with every supported keyword, then text along it; a tool's parameters */
static void test_fuzz_grammar(void **s) {
    static const char seed1[] =
        "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": [\"integer\", \"null\"]}, \"b\": {\"enum\": "
        "[\"x\", 1.5, true]}, \"c\": {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/D\"}, \"minItems\": 1, "
        "\"maxItems\": 3}, \"e\": {\"anyOf\": [{\"type\": \"string\"}, {\"const\": null}]}}, \"required\": [\"a\"], "
        "\"additionalProperties\": false, \"$defs\": {\"D\": {\"type\": \"object\", \"additionalProperties\": "
        "{\"type\": \"number\"}}}}\0{\"a\": -12, \"c\": [{\"k\": 1e5}, {}], \"e\": \"h\u00e9\\n\", \"b\": true}";
    static const char seed2[] = "T{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}\0"
                                "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"city\": \"P\"}}\n</tool_call>\n<tool_call>";
    mutate_loop(fuzz_grammar, (const uint8_t *)seed1, sizeof seed1 - 1, 1500);
    mutate_loop(fuzz_grammar, (const uint8_t *)seed2, sizeof seed2 - 1, 1500);
}

/* Server request bodies: a chat body with every field (tools, tool_choice required, response_format, logit_bias) and
 * a completion body (odd length: the target reads it as one) */
static void test_fuzz_openai(void **s) {
    static const char chat[] =
        "{\"model\": \"tiny\", \"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", "
        "\"content\": [{\"type\": \"text\", \"text\": \"hi\"}]}, {\"role\": \"assistant\", \"content\": null, "
        "\"tool_calls\": [{\"id\": \"c\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": "
        "\"{\\\"a\\\": 1}\"}}]}, {\"role\": \"tool\", \"tool_call_id\": \"c\", \"content\": \"2\"}], \"tools\": "
        "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\", "
        "\"properties\": {\"a\": {\"type\": \"integer\"}}}}}], \"tool_choice\": \"required\", \"max_tokens\": 9, "
        "\"temperature\": 0.5, \"top_p\": 0.9, \"stop\": [\"x\"], \"logprobs\": true, \"top_logprobs\": 2, "
        "\"logit_bias\": {\"3\": -100}, \"stream\": true, \"stream_options\": {\"include_usage\": true}}";
    static const char completion[] =
        "{\"prompt\": \"Once<|im_end|>\", \"max_tokens\": 4, \"seed\": -3, \"logprobs\": 2, \"response_format\": "
        "{\"type\": \"json_schema\", \"json_schema\": {\"name\": \"n\", \"schema\": {\"type\": \"array\", "
        "\"items\": {\"enum\": [1, \"a\"]}, \"maxItems\": 2}}}}";
    assert_int_equal(sizeof chat % 2, 1);       /* an even length: chat */
    assert_int_equal(sizeof completion % 2, 0); /* odd: a completion */
    assert_int_equal(fuzz_openai((const uint8_t *)chat, sizeof chat - 1), 1);
    assert_int_equal(fuzz_openai((const uint8_t *)completion, sizeof completion - 1), 1);
    mutate_loop(fuzz_openai, (const uint8_t *)chat, sizeof chat - 1, 1500);
    mutate_loop(fuzz_openai, (const uint8_t *)completion, sizeof completion - 1, 1500);
}

static int setup(void **s) {
    snprintf(tmp, sizeof tmp, "/tmp/lmf_fuzz_XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

/* Whole models: mutations of the tiny llama (every weight type) and gpt2 GGUFs. Fewer iterations: each accepted
 * mutant also runs a short inference. */
static void test_fuzz_model(void **s) {
    const char *files[] = {"tiny_llama.gguf", "tiny_gpt2.gguf"};
    for (int i = 0; i < 2; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/tests/reference/fixtures/%s", LMF_SOURCE_DIR, files[i]);
        mutate_file(fuzz_model, p, 300);
    }
}

/* HF folders: config.json + model.safetensors of the llama (tied and GQA), gpt2, Qwen2, Qwen2-MoE, Qwen3-MoE and
 * OLMoE fixtures, as fuzz_hf's input */
static void test_fuzz_hf(void **s) {
    const char *dirs[] = {"hf/llama", "hf/gpt2", "qwen2/qwen2", "qwen2/qwen2_moe", "qwen3/qwen3_moe", "qwen3/olmoe"};
    for (int i = 0; i < (int)(sizeof dirs / sizeof *dirs); i++) {
        char p[512];
        size_t nc, nt;
        snprintf(p, sizeof p, "%s/tests/reference/fixtures/%s/config.json", LMF_SOURCE_DIR, dirs[i]);
        uint8_t *config = read_all(p, &nc);
        snprintf(p, sizeof p, "%s/tests/reference/fixtures/%s/model.safetensors", LMF_SOURCE_DIR, dirs[i]);
        uint8_t *tensors = read_all(p, &nt);
        uint8_t *seed = malloc(4 + nc + nt);
        uint32_t c32 = (uint32_t)nc;
        memcpy(seed, &c32, 4);
        memcpy(seed + 4, config, nc);
        memcpy(seed + 4 + nc, tensors, nt);
        if (!fuzz_hf(seed, 4 + nc + nt)) fail_msg("the unmutated %s folder does not load: %s", dirs[i], lmf_last_error());
        mutate_loop(fuzz_hf, seed, 4 + nc + nt, 300);
        free(seed), free(config), free(tensors);
    }
}

/* LoRA adapters: a PEFT folder of the llama model fuzz_lora loads into, and a GGUF adapter of its gpt2 */
static void test_fuzz_lora(void **s) {
    char dir[256], p[320];
    size_t nc, nt;
    lmf_model_config c = fuzz_lora_model(0), g = fuzz_lora_model(1);
    lmf_lora *l;
    assert_int_equal(lmf_lora_create(&c, "q_proj,k_proj,down_proj", 2, 4.0f, 0.0f, 0, &l), LMF_OK);
    lmf_lora_init(l, 3);
    snprintf(dir, sizeof dir, "%s/lora_peft", tmp);
    assert_int_equal(lmf_lora_save_peft(l, &c, "fuzz", dir), LMF_OK);
    lmf_lora_free(l);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    uint8_t *config = read_all(p, &nc);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    uint8_t *tensors = read_all(p, &nt);
    uint8_t *seed = malloc(4 + nc + nt);
    uint32_t c32 = (uint32_t)nc;
    memcpy(seed, &c32, 4);
    memcpy(seed + 4, config, nc);
    memcpy(seed + 4 + nc, tensors, nt);
    mutate_loop(fuzz_lora, seed, 4 + nc + nt, 300);
    free(seed), free(config), free(tensors);
    assert_int_equal(lmf_lora_create(&g, "c_attn,mlp.c_proj", 2, 4.0f, 0.0f, 0, &l), LMF_OK);
    lmf_lora_init(l, 4);
    snprintf(p, sizeof p, "%s/lora.gguf", tmp);
    assert_int_equal(lmf_lora_save_gguf(l, &g, p), LMF_OK);
    lmf_lora_free(l);
    tensors = read_all(p, &nt);
    seed = malloc(4 + nt);
    c32 = 0;
    memcpy(seed, &c32, 4);
    memcpy(seed + 4, tensors, nt);
    mutate_loop(fuzz_lora, seed, 4 + nt, 300);
    free(seed), free(tensors);
}

static int teardown(void **s) {
    char cmd[256];
    int pid = (int)getpid();
    snprintf(cmd, sizeof cmd, "rm -rf %s /tmp/lmf_fuzz_%d.bin /tmp/lmf_fuzz_hf_%d /tmp/lmf_fuzz_lora_%d", tmp, pid, pid,
             pid);
    return system(cmd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fuzz_shard),
        cmocka_unit_test(test_fuzz_checkpoint),
        cmocka_unit_test(test_fuzz_safetensors),
        cmocka_unit_test(test_fuzz_gguf),
        cmocka_unit_test(test_fuzz_imatrix),
        cmocka_unit_test(test_fuzz_spm_model),
        cmocka_unit_test(test_fuzz_model),
        cmocka_unit_test(test_fuzz_hf),
        cmocka_unit_test(test_fuzz_lora),
        cmocka_unit_test(test_fuzz_config),
        cmocka_unit_test(test_fuzz_tokenizer_json),
        cmocka_unit_test(test_fuzz_encode),
        cmocka_unit_test(test_fuzz_toml),
        cmocka_unit_test(test_fuzz_sft),
        cmocka_unit_test(test_fuzz_jinja),
        cmocka_unit_test(test_fuzz_grammar),
        cmocka_unit_test(test_fuzz_openai),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
