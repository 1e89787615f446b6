/* test_tokenizer.c — the byte-level BPE tokenizer's promises:
 *  - GPT-2: the ids of the original encoder (tests/data/gpt2/reference_cases.json) and of tiktoken on a
 *    committed sample of the real corpus (tests/reference/tokenizer/gpt2_corpus_sample.json, made by
 *    check_tiktoken.py, which checks the whole corpus);
 *  - the Llama-3 and SmolLM pre-tokenizers and the trainer equal Hugging Face `tokenizers` (hf_fixture.json, made
 *    by check_hf.py), with the vocabulary built from memory as the GGUF loader will;
 *  - special tokens only where allowed; streaming encode/decode equal one-shot; decode(encode(x)) == x for any bytes;
 *  - the heap merge of long pieces equals the naive algorithm; tokenizer.json save -> load is lossless;
 *  - malformed files are refused with a message naming the file and the fault; mutated files never crash. */
#include "test_util.h"
#include "core/progress.h"

#include "tokenizer/bpe.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GPT2_DIR LMF_SOURCE_DIR "/tests/data/gpt2"
#define REF_DIR LMF_SOURCE_DIR "/tests/reference/tokenizer"

static char tmpdir[256];
static lmf_tokenizer *gpt2;

static cJSON *load_json(const char *path) {
    char *s = slurp(path, NULL);
    if (!s) fail_msg("cannot read %s", path);
    cJSON *j = cJSON_Parse(s);
    free(s);
    if (!j) fail_msg("bad JSON in %s", path);
    return j;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static uint32_t rng_state = 2024;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 17, rng_state ^= rng_state << 5;
    return rng_state;
}

static int setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lmf_test_tok_XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    if (lmf_tokenizer_load(GPT2_DIR, &gpt2) != LMF_OK) {
        fprintf(stderr, "cannot load %s: %s\n", GPT2_DIR, lmf_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    lmf_tokenizer_free(gpt2);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

/* Checks encode(text) == the JSON array `ids`, and decode back to text. */
static void check_ids(const lmf_tokenizer *tok, const char *text, const cJSON *ids, unsigned flags, const char *what) {
    lmf_ids got = {0};
    size_t n = strlen(text);
    lmf_tokenizer_encode(tok, text, n, flags, &got);
    int m = cJSON_GetArraySize(ids);
    size_t bad = (size_t)-1;
    for (int i = 0; i < m && i < (int)got.len; i++)
        if (got.data[i] != (int32_t)cJSON_GetArrayItem(ids, i)->valuedouble) {
            bad = (size_t)i;
            break;
        }
    if (got.len != (size_t)m || bad != (size_t)-1)
        fail_msg("%s: \"%.60s\": %zu ids (want %d), first difference at %zd", what, text, got.len, m, (ssize_t)bad);
    lmf_text back = {0}, want = {0};
    assert_int_equal(lmf_tokenizer_decode(tok, got.data, got.len, 0, &back), LMF_OK);
    if (lmf_tokenizer_nfc(tok)) lmf_nfc_append((const uint8_t *)text, n, &want); /* decoding gives the NFC form */
    else lmf_text_push(&want, text, n);
    assert_int_equal(back.len, want.len);
    assert_memory_equal(back.data, want.data, want.len);
    free(got.data);
    free(back.data), free(want.data);
}

static void test_gpt2_reference_cases(void **state) {
    cJSON *cases = load_json(GPT2_DIR "/reference_cases.json");
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        check_ids(gpt2, cJSON_GetObjectItem(c, "text")->valuestring, cJSON_GetObjectItem(c, "ids"), 0, "reference case");
        n++;
    }
    assert_true(n >= 14);
    cJSON_Delete(cases);
}

static void test_gpt2_corpus_sample_equals_tiktoken(void **state) {
    cJSON *cases = load_json(REF_DIR "/gpt2_corpus_sample.json");
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cases) {
        unsigned flags = cJSON_IsTrue(cJSON_GetObjectItem(c, "allow_special")) ? LMF_ENCODE_ALLOW_SPECIAL : 0;
        check_ids(gpt2, cJSON_GetObjectItem(c, "text")->valuestring, cJSON_GetObjectItem(c, "ids"), flags, "corpus");
        n++;
    }
    assert_true(n >= 20);
    cJSON_Delete(cases);
}

static void test_special_tokens(void **state) {
    const char *t = "a<|endoftext|>b";
    lmf_ids ids = {0};
    lmf_tokenizer_encode(gpt2, t, strlen(t), 0, &ids);
    for (size_t i = 0; i < ids.len; i++) assert_int_not_equal(ids.data[i], 50256); /* ordinary text */
    assert_true(ids.len > 3);
    ids.len = 0;
    lmf_tokenizer_encode(gpt2, t, strlen(t), LMF_ENCODE_ALLOW_SPECIAL, &ids);
    assert_int_equal(ids.len, 3);
    assert_int_equal(ids.data[1], 50256);
    lmf_text out = {0};
    assert_int_equal(lmf_tokenizer_decode(gpt2, ids.data, ids.len, LMF_DECODE_SKIP_SPECIAL, &out), LMF_OK);
    assert_string_equal(out.data, "ab");
    out.len = 0;
    int32_t bad[] = {1, 50257};
    assert_int_equal(lmf_tokenizer_decode(gpt2, bad, 2, 0, &out), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "50257"));
    assert_int_equal(out.len, 0);
    assert_int_equal(lmf_tokenizer_token_id(gpt2, "<|endoftext|>"), 50256);
    assert_int_equal(lmf_tokenizer_token_id(gpt2, "\xc4\xa0the"), 262); /* "Ġthe" */
    assert_int_equal(lmf_tokenizer_token_id(gpt2, "no such token at all"), -1);
    assert_int_equal(lmf_tokenizer_token_type(gpt2, 50256), LMF_TOKEN_CONTROL);
    assert_int_equal(lmf_tokenizer_vocab_size(gpt2), 50257);
    free(ids.data);
    free(out.data);
}

/* Random text made of pieces that stress boundaries: words, spaces, newlines, digits, multi-byte characters, the
 * special token (whole and cut), invalid bytes. */
static size_t random_text(char *buf, size_t cap, int with_invalid) {
    static const char *const parts[] = {"hello", " world", "  ", "\n", "\n\n ", "'s", "'LL", "123", "4567", " ",
                                        "é", "数据", "🙂", "<|endoftext|>", "<|endof", "|>", "\t", "x", "--", "Ünï"};
    size_t n = 0;
    while (n + 16 < cap) {
        if (with_invalid && rnd() % 9 == 0) {
            buf[n++] = (char)(0x80 + rnd() % 128);
            continue;
        }
        const char *p = parts[rnd() % (sizeof parts / sizeof parts[0])];
        size_t l = strlen(p);
        memcpy(buf + n, p, l);
        n += l;
        if (rnd() % 50 == 0) break;
    }
    return n;
}

static void test_streaming_equals_one_shot(void **state) {
    char text[600];
    for (int it = 0; it < 400; it++) {
        size_t n = random_text(text, sizeof text, it % 3 == 0);
        unsigned flags = it % 2 ? LMF_ENCODE_ALLOW_SPECIAL : 0;
        lmf_ids one = {0}, streamed = {0};
        lmf_tokenizer_encode(gpt2, text, n, flags, &one);
        lmf_tokenizer_encoder *enc = lmf_tokenizer_encoder_create(gpt2, flags);
        for (size_t i = 0; i < n;) {
            size_t k = 1 + rnd() % 7;
            if (k > n - i) k = n - i;
            lmf_tokenizer_encoder_feed(enc, text + i, k, &streamed);
            i += k;
        }
        lmf_tokenizer_encoder_finish(enc, &streamed);
        lmf_tokenizer_encoder_free(enc);
        if (one.len != streamed.len || memcmp(one.data, streamed.data, one.len * sizeof(int32_t)))
            fail_msg("streamed encode differs (iteration %d, %zu vs %zu ids): \"%.*s\"", it, streamed.len, one.len,
                     (int)n, text);
        /* streaming decode, one id at a time: only complete characters, same bytes in the end */
        lmf_tokenizer_decoder *dec = lmf_tokenizer_decoder_create(gpt2, 0);
        lmf_text out = {0};
        for (size_t i = 0; i < one.len; i++) {
            size_t before = out.len;
            assert_int_equal(lmf_tokenizer_decoder_feed(dec, &one.data[i], 1, &out), LMF_OK);
            if (it % 3) { /* valid UTF-8 input: every emitted chunk is complete characters */
                size_t p = before;
                while (p < out.len) {
                    uint32_t cp;
                    int l = lmf_utf8_next((const uint8_t *)out.data + p, out.len - p, &cp);
                    if (!l) fail_msg("decoder emitted a partial character at byte %zu", p);
                    p += (size_t)l;
                }
            }
        }
        lmf_tokenizer_decoder_finish(dec, &out);
        lmf_tokenizer_decoder_free(dec);
        assert_int_equal(out.len, n);
        assert_memory_equal(out.data, text, n);
        free(one.data);
        free(streamed.data);
        free(out.data);
    }
}

static lmf_tokenizer *gpt2_with(lmf_pretok pretok, int nfc);

/* Streaming cut at every pair of places inside contractions and whitespace runs: a piece finalised too early ("we'l"
 * then "l": the apostrophe alone, where the whole text has 'll) gave other ids than one encode (found by fuzz_encode).
 * GPT-2's, Llama-3's (case-insensitive contractions) and Qwen2's with NFC splits. */
static void test_streaming_cut_inside_contractions(void **state) {
    static const char *const texts[] = {"abc'llll", "we'll see, I'LL DON'T we'Re x'd", "it 's  \n  x 've'm",
                                        "cafe\xcc\x81's e\xcc\x81'll"};
    lmf_tokenizer *toks[] = {gpt2, gpt2_with(LMF_PRETOK_LLAMA3, 0), gpt2_with(LMF_PRETOK_QWEN2, 1)};
    for (int k = 0; k < 3; k++)
        for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
            const char *s = texts[t];
            size_t n = strlen(s);
            lmf_ids one = {0};
            lmf_tokenizer_encode(toks[k], s, n, 0, &one);
            for (size_t a = 1; a < n; a++)
                for (size_t b = a; b < n; b++) {
                    lmf_ids st = {0};
                    lmf_tokenizer_encoder *e = lmf_tokenizer_encoder_create(toks[k], 0);
                    lmf_tokenizer_encoder_feed(e, s, a, &st);
                    lmf_tokenizer_encoder_feed(e, s + a, b - a, &st);
                    lmf_tokenizer_encoder_feed(e, s + b, n - b, &st);
                    lmf_tokenizer_encoder_finish(e, &st);
                    lmf_tokenizer_encoder_free(e);
                    if (st.len != one.len || memcmp(st.data, one.data, one.len * sizeof(int32_t)))
                        fail_msg("tokenizer %d, \"%s\" cut at %zu and %zu: streamed ids differ", k, s, a, b);
                    free(st.data);
                }
            free(one.data);
        }
    lmf_tokenizer_free(toks[1]), lmf_tokenizer_free(toks[2]);
}

static void roundtrip(const lmf_tokenizer *tok, const char *text, size_t n, unsigned flags) {
    lmf_ids ids = {0};
    lmf_text out = {0};
    lmf_tokenizer_encode(tok, text, n, flags, &ids);
    assert_int_equal(lmf_tokenizer_decode(tok, ids.data, ids.len, 0, &out), LMF_OK);
    if (out.len != n || (n && memcmp(out.data, text, n))) fail_msg("decode(encode(x)) != x for %zu bytes", n);
    free(ids.data);
    free(out.data);
}

static void test_roundtrip_any_bytes(void **state) {
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    for (int it = 0; it < 300; it++) {
        size_t n = rnd() % 3000;
        int mode = it % 4;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = rnd();
            buf[i] = mode == 0 ? (char)r                                   /* uniform bytes */
                     : mode == 1 ? (char)(r % 7 ? 'a' + r % 26 : 0x80 + r % 64) /* letters + stray continuations */
                     : mode == 2 ? " \n\t\r\x0b\xc2\xa0"[r % 7]            /* whitespace, NBSP cut or whole */
                                 : (char)(r % 3 ? 0xe0 + r % 16 : 0x80 + r % 64); /* broken 3-byte sequences */
        }
        roundtrip(gpt2, buf, n, it % 2 ? LMF_ENCODE_ALLOW_SPECIAL : 0);
    }
    /* pathological runs: long pieces (heap merge) and one long whitespace run */
    memset(buf, 'a', cap);
    roundtrip(gpt2, buf, cap, 0);
    memset(buf, ' ', cap);
    roundtrip(gpt2, buf, cap, 0);
    for (size_t i = 0; i < cap; i++) buf[i] = "0123456789"[i % 10];
    roundtrip(gpt2, buf, cap, 0);
    roundtrip(gpt2, "", 0, 0);
    free(buf);
}

/* The naive GPT-2 loop: repeatedly merge the lowest-ranked adjacent pair, leftmost first. */
static size_t naive_merge(const lmf_bpe *m, const uint8_t *s, size_t n, int32_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = m->byte_id[s[i]];
    size_t k = n;
    for (;;) {
        uint32_t best = LMF_BPE_NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < k; i++) {
            const lmf_bpe_merge_slot *sl = lmf_bpe_merge_find(m, out[i], out[i + 1]);
            if (sl && sl->rank < best) best = sl->rank, bi = i;
        }
        if (best == LMF_BPE_NO_RANK) return k;
        out[bi] = lmf_bpe_merge_find(m, out[bi], out[bi + 1])->result;
        memmove(out + bi + 1, out + bi + 2, (k - bi - 2) * sizeof *out);
        k--;
    }
}

static void test_long_pieces_heap_equals_naive(void **state) {
    const lmf_bpe *m = &gpt2->bpe;
    lmf_bpe_scratch sc = {0};
    static const char *const words[] = {"super", "cal", "ifrag", "ilistic", "expi", "ali", "docious", "the", "an",
                                        "a", "aa", "ing", "tion", "ab", "ba"};
    uint8_t s[700];
    int32_t a[700], b[700];
    for (int it = 0; it < 200; it++) {
        size_t n = 0, want = 97 + rnd() % 600; /* above the flat-array limit */
        while (n < want) {
            const char *w = words[rnd() % (sizeof words / sizeof words[0])];
            size_t l = strlen(w);
            if (n + l > want) break;
            memcpy(s + n, w, l);
            n += l;
        }
        size_t ka = lmf_bpe_encode_piece(m, &sc, s, n, a), kb = naive_merge(m, s, n, b);
        assert_int_equal(ka, kb);
        assert_memory_equal(a, b, ka * sizeof *a);
    }
    lmf_bpe_scratch_destroy(&sc);
}

static void test_save_load_roundtrip(void **state) {
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/gpt2.json", tmpdir);
    snprintf(p2, sizeof p2, "%s/gpt2-again.json", tmpdir);
    assert_int_equal(lmf_tokenizer_save(gpt2, p1), LMF_OK);
    lmf_tokenizer *t;
    if (lmf_tokenizer_load(p1, &t) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(lmf_tokenizer_save(t, p2), LMF_OK);
    size_t n1, n2;
    char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a), free(b);
    cJSON *cases = load_json(GPT2_DIR "/reference_cases.json");
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
        check_ids(t, cJSON_GetObjectItem(c, "text")->valuestring, cJSON_GetObjectItem(c, "ids"), 0, "reloaded");
    cJSON_Delete(cases);
    assert_int_equal(lmf_tokenizer_token_type(t, 50256), LMF_TOKEN_CONTROL);
    lmf_tokenizer_free(t);
}

/* A minimal valid tokenizer.json around a body of model fields, for the malformed-file table. */
static void expect_load_error(const char *json, lmf_status want, const char *fragment) {
    char p[512];
    snprintf(p, sizeof p, "%s/bad.json", tmpdir);
    write_file(p, json, strlen(json));
    lmf_tokenizer *t = NULL;
    lmf_status s = lmf_tokenizer_load(p, &t);
    if (s == LMF_OK) fail_msg("accepted: %s", json);
    assert_null(t);
    assert_int_equal(s, want);
    if (!strstr(lmf_last_error(), p)) fail_msg("error does not name the file: %s", lmf_last_error());
    if (!strstr(lmf_last_error(), fragment)) fail_msg("error \"%s\" lacks \"%s\"", lmf_last_error(), fragment);
}

/* The 256 byte tokens as the body of a JSON object (ids 0..255, '"' and '\\' escaped); byte `skip` left out. */
static char *byte_vocab(int skip) {
    char *v = malloc(256 * 16), *p = v;
    *p = 0;
    for (int b = 0; b < 256; b++) {
        if (b == skip) continue;
        char t[4];
        int l = lmf_utf8_put(lmf_bytelevel_cp((uint8_t)b), t);
        p += sprintf(p, "%s\"%s%.*s\":%d", p == v ? "" : ",", b == '"' || b == '\\' ? "\\" : "", l, t, b);
    }
    return v;
}

/* Issue 18, defect 6: a tokenizer.json whose Split regex backtracks catastrophically, `(a+)+$` on 'a' x 5000 + 'b'
 * (minutes at ~17 ms per byte before), fails fast with an error naming the file and the pattern, for the one-shot
 * and the streaming encoder; the tokenizer still encodes ordinary text afterwards. */
static void test_catastrophic_regex_fails_fast(void **state) {
    (void)state;
    char *esc = byte_vocab(-1);
    char *json = malloc(strlen(esc) + 4096);
    sprintf(json, "{\"model\":{\"type\":\"BPE\",\"vocab\":{%s},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\","
                  "\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a+)+$\"},\"behavior\":\"Isolated\"},"
                  "{\"type\":\"ByteLevel\",\"use_regex\":false}]}}", esc);
    char p[512];
    snprintf(p, sizeof p, "%s/redos.json", tmpdir);
    write_file(p, json, strlen(json));
    free(json), free(esc);
    lmf_tokenizer *t;
    if (lmf_tokenizer_load(p, &t) != LMF_OK) fail_msg("%s", lmf_last_error());
    enum { N = 5001 };
    char *text = malloc(N);
    memset(text, 'a', N - 1);
    text[N - 1] = 'b';
    lmf_ids ids = {0};
    double t0 = lmf_now();
    assert_int_equal(lmf_tokenizer_encode(t, text, N, 0, &ids), LMF_ERR_FORMAT);
    double dt = lmf_now() - t0;
    if (!strstr(lmf_last_error(), p) || !strstr(lmf_last_error(), "'(a+)+$'") ||
        !strstr(lmf_last_error(), "match limit"))
        fail_msg("the error should name the file, the pattern and the limit: %s", lmf_last_error());
    if (dt > 2.0) fail_msg("took %.2f s to fail", dt);
    lmf_tokenizer_encoder *enc = lmf_tokenizer_encoder_create(t, 0);
    ids.len = 0;
    lmf_status s = lmf_tokenizer_encoder_feed(enc, text, N, &ids);
    if (s == LMF_OK) s = lmf_tokenizer_encoder_finish(enc, &ids);
    assert_int_equal(s, LMF_ERR_FORMAT);
    ids.len = 0; /* after the error the encoder starts afresh */
    assert_int_equal(lmf_tokenizer_encoder_feed(enc, "aab", 3, &ids), LMF_OK);
    assert_int_equal(lmf_tokenizer_encoder_finish(enc, &ids), LMF_OK);
    assert_int_equal(ids.len, 3);
    lmf_tokenizer_encoder_free(enc);
    ids.len = 0;
    assert_int_equal(lmf_tokenizer_encode(t, "aaab", 4, 0, &ids), LMF_OK);
    assert_int_equal(ids.len, 4);
    free(ids.data), free(text);
    lmf_tokenizer_free(t);
}

static void test_malformed_files_are_refused(void **state) {
    char *esc = byte_vocab(-1);
    char *json = malloc(strlen(esc) + 4096);
#define PRE "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"
    sprintf(json, "{\"model\":{\"type\":\"BPE\",\"vocab\":{%s,\"ab\":256},\"merges\":[\"a b\"]}," PRE "}", esc);
    char p[512];
    snprintf(p, sizeof p, "%s/ok.json", tmpdir);
    write_file(p, json, strlen(json));
    lmf_tokenizer *t;
    if (lmf_tokenizer_load(p, &t) != LMF_OK) fail_msg("minimal tokenizer refused: %s", lmf_last_error());
    lmf_ids ids = {0};
    lmf_tokenizer_encode(t, "abab", 4, 0, &ids);
    assert_int_equal(ids.len, 2); /* "abab" is one \p{L}+ piece: ab ab */
    assert_int_equal(ids.data[0], 256);
    assert_int_equal(ids.data[1], 256);
    free(ids.data);
    lmf_tokenizer_free(t);

    expect_load_error("{\"model\": {", LMF_ERR_FORMAT, "not valid JSON");
    expect_load_error("[1,2]", LMF_ERR_FORMAT, "not a JSON object");
    expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", LMF_ERR_FORMAT, "only BPE");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":[],\"merges\":[]}}", LMF_ERR_FORMAT, "model.vocab");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", LMF_ERR_FORMAT, "model.vocab[\"a\"]");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}}", LMF_ERR_FORMAT, "integer");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", LMF_ERR_FORMAT, "used by both");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{},\"merges\":[]}}", LMF_ERR_FORMAT, "byte_fallback");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"NFKC\"}}",
                      LMF_ERR_FORMAT, "normalizer \"NFKC\"");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", LMF_ERR_FORMAT, "no pre_tokenizer");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Metaspace\"}}",
                      LMF_ERR_FORMAT, "Metaspace");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}," PRE "}", LMF_ERR_FORMAT,
                      "vocabulary of 1 tokens");
    char *j2 = malloc(strlen(json) + 100);
    /* a vocabulary missing one byte */
    char *miss = byte_vocab('!');
    sprintf(j2, "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"zz\",\"vocab\":{%s,\"zz\":33},\"merges\":[]}," PRE "}",
            miss);
    expect_load_error(j2, LMF_ERR_FORMAT, "no token for byte 0x21");
    /* without unk_token Hugging Face's BPE drops the byte (SmolLM2's tokenizer.json lacks 21 of them), as lmforge does */
    sprintf(j2, "{\"model\":{\"type\":\"BPE\",\"vocab\":{%s,\"zz\":33},\"merges\":[]}," PRE "}", miss);
    free(miss);
    write_file(p, j2, strlen(j2));
    if (lmf_tokenizer_load(p, &t) != LMF_OK) fail_msg("a vocabulary without '!' refused: %s", lmf_last_error());
    ids = (lmf_ids){0};
    lmf_tokenizer_encode(t, "a!b !", 5, 0, &ids);
    lmf_ids ab = {0};
    lmf_tokenizer_encode(t, "ab ", 3, 0, &ab);
    assert_int_equal(ids.len, 3); /* "a", "b", " ": the pieces "!" and " !" lose their '!' */
    assert_int_equal(ab.len, 3);
    assert_memory_equal(ids.data, ab.data, 3 * sizeof(int32_t));
    free(ids.data), free(ab.data);
    lmf_tokenizer_free(t);
    sprintf(j2, "{\"model\":{\"type\":\"BPE\",\"vocab\":{%s},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\","
                "\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"},"
                "{\"type\":\"ByteLevel\",\"use_regex\":false}]}}", esc);
    expect_load_error(j2, LMF_ERR_FORMAT, "pre-tokenizer regex '('");
    /* merges that do not fit the vocabulary */
    sprintf(j2, "{\"model\":{\"type\":\"BPE\",\"vocab\":{%s,\"ab\":256},\"merges\":[\"a c d\"]}," PRE "}", esc);
    expect_load_error(j2, LMF_ERR_FORMAT, "merge 0");
    sprintf(j2, "{\"model\":{\"type\":\"BPE\",\"vocab\":{%s,\"ab\":256},\"merges\":[\"a xyz\"]}," PRE "}", esc);
    expect_load_error(j2, LMF_ERR_FORMAT, "\"xyz\" is not a token");
    sprintf(j2, "{\"model\":{\"type\":\"BPE\",\"vocab\":{%s,\"ab\":256},\"merges\":[\"b a\"]}," PRE "}", esc);
    expect_load_error(j2, LMF_ERR_FORMAT, "merged token is not in the vocabulary");
    sprintf(j2, "{\"model\":{\"type\":\"BPE\",\"vocab\":{%s,\"a\xe2\x82\xac\":256},\"merges\":[]}," PRE "}", esc);
    expect_load_error(j2, LMF_ERR_FORMAT, "not in the byte-level alphabet");
    sprintf(j2, "{\"model\":{\"type\":\"BPE\",\"vocab\":{%s},\"merges\":[]},\"added_tokens\":[{\"id\":0,\"content\":\"<s>\"}],"
                PRE "}", esc);
    expect_load_error(j2, LMF_ERR_FORMAT, "added_tokens[0]");
    free(j2);

    lmf_tokenizer *none;
    assert_int_equal(lmf_tokenizer_load("/nonexistent/tokenizer.json", &none), LMF_ERR_IO);
    assert_non_null(strstr(lmf_last_error(), "/nonexistent/tokenizer.json"));
    assert_int_equal(lmf_tokenizer_load(tmpdir, &none), LMF_ERR_IO); /* a folder with neither file */
    /* GPT-2 folder with a broken vocab.bpe */
    char d[512], f[600];
    snprintf(d, sizeof d, "%s/gpt2bad", tmpdir);
    mkdir(d, 0755);
    size_t n;
    char *enc = slurp(GPT2_DIR "/encoder.json", &n);
    snprintf(f, sizeof f, "%s/encoder.json", d);
    write_file(f, enc, n);
    free(enc);
    snprintf(f, sizeof f, "%s/vocab.bpe", d);
    const char *bad_bpe = "#version: 0.2\n\xc4\xa0 t\nnot-a-token zzz\n";
    write_file(f, bad_bpe, strlen(bad_bpe));
    assert_int_equal(lmf_tokenizer_load(d, &none), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "vocab.bpe"));
    assert_non_null(strstr(lmf_last_error(), "merge 1"));
    free(json), free(esc);
#undef PRE
}

/* Random mutations of a real tokenizer.json (trained here, small): load may fail, but never crash; whatever loads
 * must still round-trip any bytes. */
static void test_mutated_tokenizer_json_never_crashes(void **state) {
    cJSON *fx = load_json(REF_DIR "/hf_fixture.json");
    const char *text = cJSON_GetObjectItem(cJSON_GetObjectItem(fx, "train"), "text")->valuestring;
    lmf_bpe_train_config cfg = {.vocab_size = 300, .pretok = LMF_PRETOK_LLAMA3, .n_special = 1,
                                .special_tokens = (const char *const[]){"<|endoftext|>"}};
    lmf_bpe_trainer *tr;
    assert_int_equal(lmf_bpe_trainer_create(&cfg, &tr), LMF_OK);
    lmf_bpe_trainer_feed(tr, text, 4000);
    lmf_tokenizer *tok;
    assert_int_equal(lmf_bpe_trainer_finish(tr, &tok), LMF_OK);
    lmf_bpe_trainer_free(tr);
    char p[512], m[512];
    snprintf(p, sizeof p, "%s/small.json", tmpdir);
    snprintf(m, sizeof m, "%s/mutated.json", tmpdir);
    assert_int_equal(lmf_tokenizer_save(tok, p), LMF_OK);
    lmf_tokenizer_free(tok);
    size_t n;
    char *seed = slurp(p, &n), *buf = malloc(n + 64);
    static const char boundary[] = {'"', '{', '}', '[', ']', ',', ':', '0', '9', '-', ' ', '\\', 'e', 0, (char)0xff};
    int loaded = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(buf, seed, n);
        size_t len = n;
        for (int k = 1 + rnd() % 4; k > 0; k--) {
            size_t pos = rnd() % len;
            switch (rnd() % 4) {
            case 0: buf[pos] ^= (char)(1u << (rnd() % 8)); break;
            case 1: buf[pos] = boundary[rnd() % sizeof boundary]; break;
            case 2: len = pos + 1; break;
            default: memmove(buf + pos, buf + pos + 1, len - pos - 1), len--; break;
            }
        }
        write_file(m, buf, len);
        lmf_tokenizer *t = NULL;
        if (lmf_tokenizer_load(m, &t) == LMF_OK) {
            loaded++;
            char txt[300];
            size_t tn = random_text(txt, sizeof txt, 1);
            roundtrip(t, txt, tn, LMF_ENCODE_ALLOW_SPECIAL);
            lmf_tokenizer_free(t);
        } else {
            assert_null(t);
            assert_true(strlen(lmf_last_error()) > 0);
        }
    }
    assert_true(loaded > 0); /* some mutations (inside strings) stay loadable */
    free(seed), free(buf);
    cJSON_Delete(fx);
}

/* The GPT-2 vocabulary built from memory (as the GGUF loader will) with another pre-tokenizer, against HF. */
static lmf_tokenizer *gpt2_with(lmf_pretok pretok, int nfc) {
    cJSON *enc = load_json(GPT2_DIR "/encoder.json");
    int nv = cJSON_GetArraySize(enc);
    const char **tokens = calloc((size_t)nv, sizeof *tokens);
    uint8_t *types = calloc((size_t)nv, 1);
    const cJSON *it;
    cJSON_ArrayForEach(it, enc) {
        tokens[(int)it->valuedouble] = it->string;
        if (!strcmp(it->string, "<|endoftext|>")) types[(int)it->valuedouble] = LMF_TOKEN_CONTROL;
    }
    size_t n;
    char *bpe = slurp(GPT2_DIR "/vocab.bpe", &n);
    const char **merges = calloc(60000, sizeof *merges);
    int nm = 0;
    for (char *line = strtok(bpe, "\n"); line; line = strtok(NULL, "\n"))
        if (line[0] != '#') merges[nm++] = line;
    lmf_tokenizer_def def = {.n_vocab = nv, .tokens = tokens, .types = types, .n_merges = nm, .merges = merges,
                             .pretok = pretok, .nfc = nfc};
    lmf_tokenizer *t;
    if (lmf_tokenizer_build(&def, "memory", &t) != LMF_OK) fail_msg("%s", lmf_last_error());
    free(tokens), free(types), free(merges), free(bpe);
    cJSON_Delete(enc);
    return t;
}

/* Llama-3, SmolLM and Qwen2 (its NFC normalizer too: the fixture's texts include decomposed accents, Hangul jamo,
 * marks out of canonical order and composition exclusions) against HF `tokenizers` (check_hf.py). */
static void test_llama3_smollm_qwen2_pretokenizers_equal_hf(void **state) {
    cJSON *fx = load_json(REF_DIR "/hf_fixture.json");
    const struct {
        const char *name;
        lmf_pretok kind;
        int nfc;
    } kinds[] = {{"llama3", LMF_PRETOK_LLAMA3, 0}, {"smollm", LMF_PRETOK_SMOLLM, 0}, {"qwen2", LMF_PRETOK_QWEN2, 1}};
    for (int k = 0; k < 3; k++) {
        lmf_tokenizer *t = gpt2_with(kinds[k].kind, kinds[k].nfc);
        const cJSON *cases = cJSON_GetObjectItem(cJSON_GetObjectItem(fx, "pretok"), kinds[k].name), *c;
        assert_true(cJSON_GetArraySize(cases) > 10);
        cJSON_ArrayForEach(c, cases)
            check_ids(t, cJSON_GetObjectItem(c, "text")->valuestring, cJSON_GetObjectItem(c, "ids"),
                      LMF_ENCODE_ALLOW_SPECIAL, kinds[k].name);
        lmf_tokenizer_free(t);
    }
    cJSON_Delete(fx);
}

/* The NFC normalizer on its own: known compositions; bytes that are not UTF-8 pass through; streaming in chunks cut
 * anywhere (inside characters, between a letter and its accent) gives one encode's ids; tokenizer.json keeps it;
 * the GGUF export names the Qwen2 pre-tokenizer as llama.cpp does. */
static void test_nfc(void **state) {
    static const struct {
        const char *in, *out;
    } known[] = {
        {"cafe\xcc\x81", "caf\xc3\xa9"},                            /* e + U+0301 -> U+00E9 */
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"}, /* Hangul L V T -> U+AC01 */
        {"\xe2\x84\xab", "\xc3\x85"},                              /* Angstrom sign -> U+00C5 */
        {"a\xcc\x87\xcc\xa3", "\xe1\xba\xa1\xcc\x87"},             /* a + dot above + dot below: reordered, composed */
        {"x\xff\xcc\x81" "e\xcc\x81", "x\xff\xcc\x81\xc3\xa9"},          /* a stray byte stays; no base before the mark */
        {"\xef\xac\x81", "\xef\xac\x81"},                          /* the fi ligature: compatibility, not NFC */
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        lmf_text t = {0};
        lmf_nfc_append((const uint8_t *)known[i].in, strlen(known[i].in), &t);
        if (t.len != strlen(known[i].out) || memcmp(t.data, known[i].out, t.len)) fail_msg("NFC case %zu", i);
        free(t.data);
    }
    assert_true(lmf_nfc_identity((const uint8_t *)"plain ASCII \xc3\xa9", 14));
    assert_false(lmf_nfc_identity((const uint8_t *)"e\xcc\x81", 3));

    lmf_tokenizer *t = gpt2_with(LMF_PRETOK_QWEN2, 1);
    assert_int_equal(lmf_tokenizer_pretok(t), LMF_PRETOK_QWEN2);
    /* streaming: chunks of 1-7 bytes, so accents and jamo arrive apart from their bases */
    static const char *texts[] = {"Cafe\xcc\x81 re\xcc\x81sume\xcc\x81, 12345 don'T \xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8\xe1\x84\x80\xe1\x85\xa1",
                                  "e\xcc\x81<|endoftext|>\xcc\x81x \xff\xcc\x81 a\xcc\x87\xcc\xa3\n\n",
                                  "\xe6\x9d\xb1\xe4\xba\xac\xe3\x81\xa7 \xe3\x81\x8b\xe3\x82\x99"}; /* no ASCII for a while; ka + dakuten */
    for (int it = 0; it < 300; it++) {
        const char *s = texts[it % 3];
        size_t n = strlen(s);
        unsigned flags = it % 2 ? LMF_ENCODE_ALLOW_SPECIAL : 0;
        lmf_ids one = {0}, streamed = {0};
        assert_int_equal(lmf_tokenizer_encode(t, s, n, flags, &one), LMF_OK);
        lmf_tokenizer_encoder *enc = lmf_tokenizer_encoder_create(t, flags);
        for (size_t i = 0; i < n;) {
            size_t k = 1 + rnd() % 7;
            if (k > n - i) k = n - i;
            assert_int_equal(lmf_tokenizer_encoder_feed(enc, s + i, k, &streamed), LMF_OK);
            i += k;
        }
        assert_int_equal(lmf_tokenizer_encoder_finish(enc, &streamed), LMF_OK);
        lmf_tokenizer_encoder_free(enc);
        if (one.len != streamed.len || memcmp(one.data, streamed.data, one.len * sizeof(int32_t)))
            fail_msg("NFC streaming differs from one encode (text %d, %zu vs %zu ids)", it % 3, streamed.len, one.len);
        free(one.data), free(streamed.data);
    }
    /* without the normalizer the same vocabulary gives other ids for decomposed text */
    lmf_tokenizer *raw = gpt2_with(LMF_PRETOK_QWEN2, 0);
    lmf_ids a = {0}, b = {0};
    lmf_tokenizer_encode(t, "cafe\xcc\x81", 6, 0, &a);
    lmf_tokenizer_encode(raw, "cafe\xcc\x81", 6, 0, &b);
    assert_true(a.len != b.len || memcmp(a.data, b.data, a.len * sizeof(int32_t)));
    free(a.data), free(b.data);
    lmf_tokenizer_free(raw);
    /* tokenizer.json: the normalizer and the Qwen2 pattern survive a save and a load */
    char p[512];
    snprintf(p, sizeof p, "%s/qwen2.json", tmpdir);
    assert_int_equal(lmf_tokenizer_save(t, p), LMF_OK);
    size_t len;
    char *json = slurp(p, &len);
    assert_non_null(strstr(json, "\"NFC\"")); /* {"normalizer": {"type": "NFC"}} */
    free(json);
    lmf_tokenizer *back;
    assert_int_equal(lmf_tokenizer_load(p, &back), LMF_OK);
    assert_int_equal(lmf_tokenizer_nfc(back), 1);
    assert_int_equal(lmf_tokenizer_pretok(back), LMF_PRETOK_QWEN2);
    lmf_tokenizer_free(back);
    lmf_tokenizer_free(t);
    /* names: llama.cpp's GGUF pre-tokenizer names for Qwen2's split */
    lmf_pretok k;
    assert_int_equal(lmf_pretok_parse("qwen2", &k), LMF_OK);
    assert_int_equal(k, LMF_PRETOK_QWEN2);
    assert_int_equal(lmf_pretok_parse("deepseek-r1-qwen", &k), LMF_OK);
    assert_int_equal(k, LMF_PRETOK_QWEN2);
    assert_string_equal(lmf_pretok_name(LMF_PRETOK_QWEN2), "qwen2");
}

static void test_training_equals_hf(void **state) {
    cJSON *fx = load_json(REF_DIR "/hf_fixture.json");
    const cJSON *tr_fx = cJSON_GetObjectItem(fx, "train");
    const char *text = cJSON_GetObjectItem(tr_fx, "text")->valuestring;
    const cJSON *want = cJSON_GetObjectItem(tr_fx, "merges");
    lmf_bpe_train_config cfg = {.vocab_size = (int)cJSON_GetObjectItem(tr_fx, "vocab_size")->valuedouble,
                                .pretok = LMF_PRETOK_GPT2, .n_special = 1,
                                .special_tokens = (const char *const[]){"<|endoftext|>"}};
    lmf_bpe_trainer *tr;
    assert_int_equal(lmf_bpe_trainer_create(&cfg, &tr), LMF_OK);
    lmf_bpe_trainer_feed(tr, text, strlen(text));
    lmf_tokenizer *tok;
    assert_int_equal(lmf_bpe_trainer_finish(tr, &tok), LMF_OK);
    lmf_bpe_trainer_free(tr);
    assert_int_equal(lmf_tokenizer_vocab_size(tok), cfg.vocab_size);
    assert_int_equal(lmf_tokenizer_token_id(tok, "<|endoftext|>"), 0);
    assert_int_equal(lmf_tokenizer_token_id(tok, "!"), 1); /* bytes in code-point order after the specials */
    const lmf_bpe *m = &tok->bpe;
    assert_int_equal(m->n_merges, cJSON_GetArraySize(want));
    for (int r = 0; r < m->n_merges; r++) {
        size_t la, lb;
        const char *a = lmf_tokenizer_token_bytes(tok, m->merges[2 * r], &la);
        const char *b = lmf_tokenizer_token_bytes(tok, m->merges[2 * r + 1], &lb);
        char got[256];
        size_t k = lmf_bytelevel_encode((const uint8_t *)a, la, got);
        got[k++] = ' ';
        k += lmf_bytelevel_encode((const uint8_t *)b, lb, got + k);
        got[k] = 0;
        const char *w = cJSON_GetArrayItem(want, r)->valuestring;
        if (strcmp(got, w)) fail_msg("merge %d: \"%s\", HF has \"%s\"", r, got, w);
    }
    roundtrip(tok, text, strlen(text), 0);
    /* bad configurations are refused */
    lmf_bpe_train_config bad = cfg;
    bad.vocab_size = 100;
    assert_int_equal(lmf_bpe_trainer_create(&bad, &tr), LMF_ERR_ARG);
    bad = cfg;
    bad.special_tokens = (const char *const[]){""};
    assert_int_equal(lmf_bpe_trainer_create(&bad, &tr), LMF_ERR_ARG);
    lmf_tokenizer_free(tok);
    cJSON_Delete(fx);
}

typedef struct {
    const char *text;
    size_t n;
    lmf_ids out;
} job;

static void *encode_job(void *arg) {
    job *j = arg;
    for (int r = 0; r < 20; r++) {
        j->out.len = 0;
        lmf_tokenizer_encode(gpt2, j->text, j->n, 0, &j->out);
    }
    return NULL;
}

static void test_concurrent_encode(void **state) {
    cJSON *cases = load_json(REF_DIR "/gpt2_corpus_sample.json");
    const char *text = cJSON_GetObjectItem(cJSON_GetArrayItem(cases, 0), "text")->valuestring;
    job j[3] = {{text, strlen(text), {0}}, {text, strlen(text), {0}}, {text, strlen(text), {0}}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, encode_job, &j[i]);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(j[i].out.len, j[0].out.len);
        assert_memory_equal(j[i].out.data, j[0].out.data, j[0].out.len * sizeof(int32_t));
    }
    for (int i = 0; i < 3; i++) free(j[i].out.data);
    cJSON_Delete(cases);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_reference_cases),
        cmocka_unit_test(test_gpt2_corpus_sample_equals_tiktoken),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_streaming_equals_one_shot),
        cmocka_unit_test(test_streaming_cut_inside_contractions),
        cmocka_unit_test(test_roundtrip_any_bytes),
        cmocka_unit_test(test_long_pieces_heap_equals_naive),
        cmocka_unit_test(test_save_load_roundtrip),
        cmocka_unit_test(test_malformed_files_are_refused),
        cmocka_unit_test(test_catastrophic_regex_fails_fast),
        cmocka_unit_test(test_mutated_tokenizer_json_never_crashes),
        cmocka_unit_test(test_llama3_smollm_qwen2_pretokenizers_equal_hf),
        cmocka_unit_test(test_nfc),
        cmocka_unit_test(test_training_equals_hf),
        cmocka_unit_test(test_concurrent_encode),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
