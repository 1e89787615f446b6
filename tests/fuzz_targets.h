/* fuzz_targets.h — one function per parser of untrusted input, each taking arbitrary bytes.
 *
 * Shared by the deterministic mutation test (tests/test_fuzz.c, run by ctest and under ASan) and the libFuzzer
 * harnesses (fuzz/, `make fuzz`). A target must never crash, hang or leak, whatever the bytes; it returns whether
 * the parser accepted them. Parsers that read files get the bytes through a temporary file. */
#ifndef LMF_TESTS_FUZZ_TARGETS_H
#define LMF_TESTS_FUZZ_TARGETS_H

#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/shard.h"
#include "model/weights.h"
#include "io/checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "spm_util.h"
#include "train/train_config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Inputs go through files in memory where the system has a tmpfs: a disk-backed /tmp costs each execution a write
 * of up to a few hundred KB, which the slow model targets pay millions of times. */
static const char *fuzz_tmpdir(void) { return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; }

/* The files and folders the targets write, removed at exit, the newest first (a folder after its files). */
static char fuzz_made[8][96];
static int fuzz_n_made;
static void fuzz_remove_made(void) {
    while (fuzz_n_made > 0) remove(fuzz_made[--fuzz_n_made]);
}
static const char *fuzz_made_path(const char *fmt, const char *a, const char *b) {
    if (fuzz_n_made == 0) atexit(fuzz_remove_made);
    if (fuzz_n_made == 8) abort();
    char *p = fuzz_made[fuzz_n_made++];
    snprintf(p, sizeof fuzz_made[0], fmt, a, b);
    return p;
}

static void fuzz_write(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static const char *fuzz_file(const uint8_t *data, size_t n) {
    static const char *path;
    if (!path) {
        char pid[16];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        path = fuzz_made_path("%s/lmf_fuzz_%s.bin", fuzz_tmpdir(), pid);
    }
    fuzz_write(path, data, n);
    return path;
}

/* The bytes as a folder of two files: a little-endian u32 at the start gives the first file's length (clamped to
 * what is there), the rest is the second file. The folder (named by tag) is made on the first call. */
#include <sys/stat.h>
typedef struct {
    const char *dir, *path[2];
} fuzz_folder;
static void fuzz_folder_write(fuzz_folder *f, const char *tag, const char *const name[2], const uint8_t *data,
                              size_t n) {
    if (!f->dir) {
        char t[48];
        snprintf(t, sizeof t, "%s_%d", tag, (int)getpid());
        f->dir = fuzz_made_path("%s/lmf_fuzz_%s", fuzz_tmpdir(), t);
        mkdir(f->dir, 0700);
        for (int i = 0; i < 2; i++) f->path[i] = fuzz_made_path("%s/%s", f->dir, name[i]);
    }
    uint32_t clen = 0;
    if (n >= 4) memcpy(&clen, data, 4), data += 4, n -= 4;
    if (clen > n) clen = (uint32_t)n;
    fuzz_write(f->path[0], data, clen);
    fuzz_write(f->path[1], data + clen, n - clen);
}

/* Reads every byte of [p, p + n): a wrong size check faults here or is reported by ASan's check of the copy. Whole
 * ranges go through libc's copy, which the coverage instrumentation does not trace byte by byte as it would a loop. */
static void fuzz_touch(const void *p, size_t n) {
    static unsigned char sink[4096];
    for (size_t i = 0; i < n; i += sizeof sink) {
        memcpy(sink, (const unsigned char *)p + i, n - i < sizeof sink ? n - i : sizeof sink);
        __asm__ volatile("" : : "r"(sink) : "memory"); /* the copy is not dead */
    }
}

static int fuzz_shard(const uint8_t *data, size_t n) {
    lmf_shard *s;
    if (lmf_shard_open(fuzz_file(data, n), &s) != LMF_OK) return 0;
    volatile uint32_t sum = 0; /* touch every token: a wrong size check would read out of bounds */
    for (uint64_t i = 0; i < s->n_tokens; i++) sum += lmf_shard_token(s, i);
    lmf_shard_close(s);
    return 1;
}

/* The checksum covers the whole file (version 3), so almost no mutation would get past it: each input is also tried
 * with its checksum made right, as a hostile file would be, so the field checks, the config text and the model it
 * implies are what gets fuzzed. */
#include <xxhash.h>
static int fuzz_checkpoint_once(const uint8_t *data, size_t n);
static int fuzz_checkpoint(const uint8_t *data, size_t n) {
    int ok = fuzz_checkpoint_once(data, n);
    if (n < 80) return ok;
    uint8_t *fixed = malloc(n);
    memcpy(fixed, data, n);
    memset(fixed + 64, 0, 8);
    uint64_t sum = XXH3_64bits(fixed, n);
    memcpy(fixed + 64, &sum, 8);
    ok |= fuzz_checkpoint_once(fixed, n);
    free(fixed);
    return ok;
}

static int fuzz_checkpoint_once(const uint8_t *data, size_t n) {
    lmf_checkpoint ck;
    if (lmf_checkpoint_load(fuzz_file(data, n), &ck) != LMF_OK) return 0;
    const float *arr[3] = {ck.params, ck.m, ck.v};
    for (int i = 0; i < 3; i++) fuzz_touch(arr[i], ck.num_params * sizeof(float));
    lmf_train_config c;
    lmf_train_config_default(&c);
    lmf_train_config_parse(&c, ck.config_text, "fuzz");
    lmf_checkpoint_free(&ck);
    /* the same bytes as an inference model: config text -> model shape -> views into the parameters */
    lmf_weights *w;
    if (lmf_weights_load_checkpoint(fuzz_file(data, n), &w) == LMF_OK) lmf_weights_free(w);
    return 1;
}

static int fuzz_safetensors(const uint8_t *data, size_t n) {
    lmf_safetensors *st;
    if (lmf_safetensors_open(fuzz_file(data, n), &st) != LMF_OK) return 0;
    for (int i = 0; i < st->n_tensors; i++) fuzz_touch(st->tensors[i].data, st->tensors[i].nbytes);
    lmf_safetensors_close(st);
    return 1;
}

/* Importance matrices (llama.cpp's GGUF imatrix or legacy .dat): load; read every entry's values. */
static int fuzz_imatrix(const uint8_t *data, size_t n) {
    lmf_imatrix *m;
    if (lmf_imatrix_load(fuzz_file(data, n), &m) != LMF_OK) return 0;
    volatile float x = 0;
    for (int i = 0; i < lmf_imatrix_entries(m); i++) {
        size_t k;
        const float *v = lmf_imatrix_find(m, lmf_imatrix_entry(m, i, NULL, NULL, NULL), &k);
        for (size_t j = 0; j < k; j++) x += v[j];
    }
    (void)lmf_imatrix_dataset(m);
    lmf_imatrix_free(m);
    return 1;
}

/* GGUF: open; read every key through the typed getters and every array element; touch every tensor byte; build
 * the tokenizer from the tokenizer.ggml.* keys and encode/decode a little text with it. */
static int fuzz_gguf(const uint8_t *data, size_t n) {
    lmf_gguf *g;
    if (lmf_gguf_open(fuzz_file(data, n), &g) != LMF_OK) return 0;
    volatile uint64_t x = 0;
    for (int64_t i = 0; i < g->n_kv; i++) {
        const lmf_gguf_kv *kv = &g->kv[i];
        const char *s;
        uint32_t u32;
        int64_t i64;
        double d;
        int b;
        if (lmf_gguf_get_str(g, kv->key, &s) == LMF_OK) x += strlen(s);
        if (lmf_gguf_get_u32(g, kv->key, &u32) == LMF_OK) x += u32;
        if (lmf_gguf_get_i64(g, kv->key, &i64) == LMF_OK) x += (uint64_t)i64;
        if (lmf_gguf_get_f64(g, kv->key, &d) == LMF_OK) x += d == d;
        if (lmf_gguf_get_bool(g, kv->key, &b) == LMF_OK) x += (uint64_t)b;
        if (kv->type != LMF_GGUF_ARRAY) continue;
        for (uint64_t e = 0; e < kv->count; e++) {
            size_t len;
            if (kv->elem_type == LMF_GGUF_STRING) {
                const char *p = lmf_gguf_arr_str(g, kv, e, &len);
                fuzz_touch(p, len);
            } else if (kv->elem_type == LMF_GGUF_F32 || kv->elem_type == LMF_GGUF_F64) {
                x += lmf_gguf_arr_float(kv, e) > 0;
            } else {
                x += (uint64_t)lmf_gguf_arr_int(kv, e);
            }
        }
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const lmf_gguf_tensor *t = &g->tensors[i];
        if (lmf_gguf_find_tensor(g, t->name) != t) abort();
        fuzz_touch(t->data, t->nbytes);
    }
    lmf_tokenizer *tok;
    if (lmf_tokenizer_from_gguf(g, &tok) == LMF_OK) {
        static const char text[] = " the thin<|endoftext|> \x04\xff<tool>x 123";
        lmf_ids ids = {0};
        lmf_tokenizer_encode(tok, text, sizeof text - 1, LMF_ENCODE_ALLOW_SPECIAL, &ids);
        lmf_text out = {0};
        if (lmf_tokenizer_decode(tok, ids.data, ids.len, 0, &out) != LMF_OK) abort();
        free(ids.data);
        free(out.data);
        lmf_tokenizer_free(tok);
    }
    lmf_gguf_close(g);
    return 1;
}

/* encode + decode of a tokenizer built from the file must round-trip any text (here, the file's own bytes) */
static void round_trip(const lmf_tokenizer *tok, const uint8_t *data, size_t n, unsigned flags) {
    lmf_ids ids = {0};
    lmf_tokenizer_encode(tok, (const char *)data, n, flags, &ids);
    lmf_text out = {0};
    if (lmf_tokenizer_decode(tok, ids.data, ids.len, 0, &out) != LMF_OK) abort();
    free(ids.data);
    free(out.data);
}

static int fuzz_tokenizer_json(const uint8_t *data, size_t n) {
    lmf_tokenizer *tok;
    if (lmf_tokenizer_load(fuzz_file(data, n), &tok) != LMF_OK) return 0;
    round_trip(tok, data, n < 512 ? n : 512, LMF_ENCODE_ALLOW_SPECIAL);
    lmf_tokenizer_free(tok);
    return 1;
}

/* SentencePiece model files (tokenizer.model): parse, build, encode and decode a little text. */
static int fuzz_spm_model(const uint8_t *data, size_t n) {
    lmf_tokenizer *tok;
    if (lmf_tokenizer_load_spm_model(fuzz_file(data, n), &tok) != LMF_OK) return 0;
    static const char text[] = " the th\xc3\xa9<tool>\n<s>x";
    round_trip(tok, (const uint8_t *)text, sizeof text - 1, LMF_ENCODE_ALLOW_SPECIAL);
    lmf_tokenizer_free(tok);
    return 1;
}

static int same_ids(const lmf_ids *a, const lmf_ids *b) {
    return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len * sizeof(int32_t)));
}

/* The streaming encoder fed data in pieces cut by data's own bytes (1 + byte % mod long), into *out. */
static void stream_encode(const lmf_tokenizer *tok, const uint8_t *data, size_t n, unsigned flags, int mod,
                          lmf_ids *out) {
    lmf_tokenizer_encoder *enc = lmf_tokenizer_encoder_create(tok, flags);
    for (size_t i = 0; i < n;) {
        size_t k = 1 + data[i] % (unsigned)mod;
        if (k > n - i) k = n - i;
        lmf_tokenizer_encoder_feed(enc, (const char *)data + i, k, out);
        i += k;
    }
    lmf_tokenizer_encoder_finish(enc, out);
    lmf_tokenizer_encoder_free(enc);
}

/* The same vocabulary with an NFC normalizer (Qwen2's): decode(encode(x)) is NFC(x), NFC is idempotent, and the
 * streaming encoder fed x in pieces (cut by x's own bytes, so inside characters and between a letter and its
 * marks) gives one encode's ids. */
static void nfc_properties(lmf_tokenizer *tok, const uint8_t *data, size_t n) {
    lmf_text want = {0}, again = {0}, out = {0};
    lmf_nfc_append(data, n, &want);
    lmf_nfc_append((const uint8_t *)want.data, want.len, &again);
    if (again.len != want.len || (want.len && memcmp(again.data, want.data, want.len))) abort();
    lmf_ids ids = {0}, streamed = {0};
    lmf_tokenizer_encode(tok, (const char *)data, n, LMF_ENCODE_ALLOW_SPECIAL, &ids);
    if (lmf_tokenizer_decode(tok, ids.data, ids.len, 0, &out) != LMF_OK) abort();
    if (out.len != want.len || (want.len && memcmp(out.data, want.data, want.len))) abort();
    stream_encode(tok, data, n, LMF_ENCODE_ALLOW_SPECIAL, 5, &streamed);
    if (!same_ids(&streamed, &ids)) abort();
    free(want.data), free(again.data), free(out.data), free(ids.data), free(streamed.data);
}

/* SentencePiece (the Phi-3 vocabulary): decode(encode(x)) is x where spm_round_trips; merging a word at a time
 * equals merging each fragment whole; the streaming encoder fed x in pieces cut by x's own bytes gives one
 * encode's ids. */
static void spm_properties(const uint8_t *data, size_t n) {
    static lmf_tokenizer *spm, *whole;
    if (!spm) {
        if (lmf_tokenizer_load(LMF_SOURCE_DIR "/tests/data/phi3/vocab.gguf", &spm) != LMF_OK) abort();
        if (lmf_tokenizer_load(LMF_SOURCE_DIR "/tests/data/phi3/vocab.gguf", &whole) != LMF_OK) abort();
        whole->spm->split_words = 0;
    }
    for (unsigned flags = 0; flags <= LMF_ENCODE_ALLOW_SPECIAL; flags++) {
        lmf_ids ids = {0}, ref = {0}, streamed = {0};
        lmf_tokenizer_encode(spm, (const char *)data, n, flags, &ids);
        lmf_tokenizer_encode(whole, (const char *)data, n, flags, &ref);
        if (!same_ids(&ids, &ref)) abort();
        stream_encode(spm, data, n, flags, 9, &streamed);
        if (!same_ids(&streamed, &ids)) abort();
        if (!flags && spm_round_trips(data, n)) {
            lmf_text out = {0};
            if (lmf_tokenizer_decode(spm, ids.data, ids.len, LMF_DECODE_TEXT_START, &out) != LMF_OK) abort();
            if (out.len != n || (n && memcmp(out.data, data, n))) abort();
            free(out.data);
        }
        free(ids.data), free(ref.data), free(streamed.data);
    }
}

/* Encoding arbitrary bytes with the real GPT-2 vocabulary: decode(encode(x)) must give x back exactly; and the
 * NFC and SentencePiece properties above. */
static int fuzz_encode(const uint8_t *data, size_t n) {
    static lmf_tokenizer *gpt2, *nfc;
    spm_properties(data, n);
    if (!gpt2 && lmf_tokenizer_load(LMF_SOURCE_DIR "/tests/data/gpt2", &gpt2) != LMF_OK) abort();
    if (!nfc) {
        if (lmf_tokenizer_load(LMF_SOURCE_DIR "/tests/data/gpt2", &nfc) != LMF_OK) abort();
        nfc->nfc = 1; /* the vocabulary as an NFC tokenizer (tokenizer.json's normalizer sets the same flag) */
    }
    nfc_properties(nfc, data, n);
    for (unsigned flags = 0; flags <= LMF_ENCODE_ALLOW_SPECIAL; flags++) {
        lmf_ids ids = {0};
        lmf_tokenizer_encode(gpt2, (const char *)data, n, flags, &ids);
        lmf_text out = {0};
        if (lmf_tokenizer_decode(gpt2, ids.data, ids.len, 0, &out) != LMF_OK) abort();
        if (out.len != n || (n && memcmp(out.data, data, n))) abort();
        free(ids.data);
        free(out.data);
    }
    return 1;
}

static int fuzz_config(const uint8_t *data, size_t n) {
    char *text = malloc(n + 1);
    memcpy(text, data, n);
    text[n] = 0;
    lmf_train_config c;
    lmf_train_config_default(&c);
    int ok = lmf_train_config_parse(&c, text, "fuzz") == LMF_OK;
    if (ok) {
        char *back = lmf_train_config_to_text(&c);
        free(back);
        lmf_train_config_validate(&c);
    }
    /* the same bytes as a TOML config, and as a checkpoint's text read for its model fields */
    lmf_train_config_default(&c);
    lmf_train_config_parse_toml(&c, (const char *)data, n, "fuzz.toml");
    lmf_model_config mc = c.model;
    lmf_model_config_from_text(text, "fuzz", &mc);
    char tok[64];
    lmf_kv_text_get(text, "tokenizer", tok, sizeof tok);
    free(text);
    return ok;
}

/* A whole model: load it for inference (every tensor's shape and type checked), then run two tokens through a
 * session, prefill and decode, touching every weight byte the executor reads. */
static void fuzz_run_and_free(lmf_weights *w) {
    lmf_session *s;
    if (lmf_session_create(w, 4, &s) == LMF_OK) {
        const float *lg;
        int32_t tok[2] = {0, lmf_weights_config(w)->vocab_size - 1};
        lmf_session_eval(s, tok, 2, 0, &lg);
        lmf_session_eval(s, tok, 1, 0, &lg);
        lmf_session_free(s);
    }
    lmf_weights_free(w);
}

static int fuzz_model(const uint8_t *data, size_t n) {
    lmf_weights *w;
    if (lmf_weights_load(fuzz_file(data, n), &w) != LMF_OK) return 0;
    fuzz_run_and_free(w);
    return 1;
}

/* A Hugging Face folder: the bytes are split into config.json and model.safetensors (a little-endian u32 at the
 * start gives the config's length, clamped to what is there), written into a fresh folder and loaded like
 * fuzz_model: so config fields and tensors disagree in every way the mutations find (shapes, dtypes, missing or
 * extra tensors, tied heads, families). */
static int fuzz_hf(const uint8_t *data, size_t n) {
    static const char *const name[2] = {"config.json", "model.safetensors"};
    static fuzz_folder f;
    fuzz_folder_write(&f, "hf", name, data, n);
    lmf_weights *w;
    if (lmf_weights_load_hf(f.dir, &w) != LMF_OK) return 0;
    fuzz_run_and_free(w);
    return 1;
}

/* A LoRA adapter (model/lora_io.h): the bytes split as fuzz_hf's into adapter_config.json and
 * adapter_model.safetensors, loaded as a PEFT folder into a small llama (GQA, interleaved RoPE: the q/k row
 * permutation runs), a small gpt2 (fused c_attn) and a small mixture of experts (target_parameters, patterns,
 * interleaved expert columns); the second part also as a GGUF adapter into each. */
#include "model/lora_io.h"
static lmf_model_config fuzz_lora_model(int kind) { /* 0 llama, 1 gpt2, 2 a MoE llama */
    int gpt2 = kind == 1;
    lmf_model_config c = lmf_model_config_default(gpt2 ? LMF_ARCH_GPT2 : LMF_ARCH_LLAMA);
    c.vocab_size = 61, c.max_seq_len = 16, c.n_layer = 2, c.n_embd = 24, c.n_head = 4, c.ffn_dim = 40;
    c.n_kv_head = gpt2 ? 4 : 2;
    if (!gpt2) c.pos = LMF_POS_ROPE_INTERLEAVED;
    if (kind == 2) c.n_expert = 4, c.n_expert_used = 2, c.ffn_dim = 12;
    return c;
}
static int fuzz_lora(const uint8_t *data, size_t n) {
    static const char *const name[2] = {"adapter_config.json", "adapter_model.safetensors"};
    static fuzz_folder f;
    fuzz_folder_write(&f, "lora", name, data, n);
    int ok = 0;
    for (int kind = 0; kind < 3; kind++) {
        lmf_model_config c = fuzz_lora_model(kind);
        lmf_lora *l;
        for (int gguf = 0; gguf < 2; gguf++) {
            if ((gguf ? lmf_lora_load_gguf(f.path[1], &c, &l) : lmf_lora_load_peft(f.dir, &c, &l)) != LMF_OK) continue;
            fuzz_touch(l->params, l->n_params * sizeof(float));
            lmf_lora_free(l);
            ok = 1;
        }
    }
    return ok;
}

/* A data-pipeline config (TOML subset, src/io/toml.h): parse, then apply onto the pipeline's option table, then
 * write it back. Bytes go straight to the parser (no file). */
#include "data/pipeline.h"
static int fuzz_toml(const uint8_t *data, size_t n) {
    lmf_toml *t;
    if (lmf_toml_parse((const char *)data, n, "fuzz.toml", &t) != LMF_OK) return 0;
    lmf_pipeline_config c;
    lmf_pipeline_config_default(&c);
    lmf_pipeline_config_apply(&c, t); /* may refuse the values: the parser accepted the bytes */
    FILE *f = fopen("/dev/null", "w");
    if (f) {
        lmf_pipeline_config_write(&c, f);
        fclose(f);
    }
    lmf_pipeline_config_free(&c);
    lmf_toml_free(t);
    return 1;
}

/* Fine-tuning JSONL (src/train/sft.h), tokenized with the tiny ChatML tokenizer (tests/tiny_chat_tokenizer.h)
 * under a template with a default system message; every accepted example is batched (a wrong offset would read out
 * of bounds). Bytes go straight to the parser (no file). */
#include "tiny_chat_tokenizer.h"
#include "train/sft.h"
static int fuzz_sft(const uint8_t *data, size_t n) {
    static lmf_tokenizer *tok; /* built once; still reachable at exit */
    if (!tok && !(tok = tiny_chat_tokenizer())) abort();
    lmf_sft_vocab v = {.tok = tok, .bos = n % 3 ? -1 : TINY_IM_START, .eos = TINY_EOT, .pad = TINY_EOT};
    /* SmolLM2's template with a shorter default system message: run by the Jinja interpreter */
    if (lmf_chat_template_parse("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                                "{{ '<|im_start|>system\nBe kind.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
                                "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                                "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
                                &v.tmpl) != LMF_OK || !v.tmpl.jinja)
        abort();
    lmf_sft_options o = {.max_tokens = 48, .train_on_prompt = n % 2, .refuse_long = n % 5 == 0};
    lmf_sft_data d = {0};
    int ok = lmf_sft_parse(&d, (const char *)data, n, "fuzz.jsonl", &v, &o) == LMF_OK;
    if (ok) {
        int32_t tokens[2 * 48], targets[2 * 48];
        for (size_t i = 0; i < d.n; i++) {
            size_t rows[2] = {i, SIZE_MAX};
            lmf_sft_batch(&d, rows, 2, 48, tokens, targets);
        }
    }
    lmf_sft_free(&d);
    lmf_sft_vocab_free(&v);
    return ok;
}

/* Chat templates (src/model/jinja*.c): the bytes are a template, compiled and, when it compiles, rendered over a
 * small conversation. Runaway templates end at the interpreter's bounds (steps, memory, output, depth). */
#include "model/jinja.h"
#include <cjson/cJSON.h>
static int fuzz_jinja(const uint8_t *data, size_t n) {
    lmf_jinja *j;
    if (lmf_jinja_compile((const char *)data, n, &j) != LMF_OK) return 0;
    cJSON *vars = cJSON_Parse("{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": "
                              "\"user\", \"content\": \"Hi <think>x</think>\"}, {\"role\": \"assistant\", \"content\": "
                              "\" Hello \", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1.5}}}]}],"
                              "\"add_generation_prompt\": true, \"tools\": null, \"bos_token\": \"<s>\", "
                              "\"eos_token\": \"</s>\", \"enable_thinking\": false}");
    if (!vars) abort();
    lmf_text out = {0};
    lmf_jinja_render(j, vars, 0, &out); /* may fail: the template compiled, which is what the parser decides */
    free(out.data);
    cJSON_Delete(vars);
    lmf_jinja_free(j);
    return 1;
}

/* Constrained decoding (src/model/grammar.c): the bytes up to the first NUL are a JSON Schema (none: JSON mode; a
 * first byte 'T': the rest of the schema is one tool's parameters, in Hermes tool calls), the bytes after it text fed
 * to the automaton one byte at a time; along the way the vocabulary mask (the tiny GPT-2 fixture's tokens) must
 * equal each token fed alone. A disagreement aborts: the fuzzer reports it as a crash. */
static int fuzz_grammar(const uint8_t *data, size_t n) {
    static lmf_tokenizer *tok;
    static lmf_grammar_vocab *gv;
    if (!tok) {
        if (lmf_tokenizer_load(LMF_SOURCE_DIR "/tests/reference/fixtures/hf/gpt2/tokenizer.json", &tok) != LMF_OK)
            abort();
        lmf_grammar_vocab_create(tok, &gv);
    }
    const uint8_t *nul = memchr(data, 0, n);
    size_t sl = nul ? (size_t)(nul - data) : n;
    char *schema = malloc(sl + 1);
    memcpy(schema, data, sl);
    schema[sl] = 0;
    lmf_grammar *g = NULL;
    lmf_status st;
    if (sl && schema[0] == 'T') {
        const char *name = "f", *params = schema + 1;
        st = lmf_grammar_tool_calls(1, &name, &params, 1, &g);
    } else {
        st = lmf_grammar_json(sl ? schema : NULL, &g);
    }
    free(schema);
    if (st != LMF_OK) return 0;
    lmf_grammar_state *gs = lmf_grammar_state_create(g);
    int V = lmf_tokenizer_vocab_size(tok);
    float *lg = malloc(sizeof(float) * (size_t)V);
    const int32_t stop = 0;
    for (size_t i = nul ? sl + 1 : n, k = 0; i <= n; i++, k++) {
        if (k % 16 == 0 || i == n) {
            for (int t = 0; t < V; t++) lg[t] = 0;
            int allowed = lmf_grammar_mask(gs, gv, &stop, 1, lg), count = 0;
            for (int t = 0; t < V; t++) {
                int alone = lmf_grammar_allows(gs, gv, t, &stop, 1);
                if (alone != (lg[t] == 0)) abort();
                count += alone;
            }
            if (count != allowed) abort();
        }
        if (i == n || !lmf_grammar_feed(gs, (const char *)data + i, 1)) break;
    }
    free(lg);
    lmf_grammar_state_free(gs);
    lmf_grammar_free(g);
    return 1;
}

/* The server's request bodies (src/serve/openai.c): the bytes are a /v1/chat/completions body (even lengths) or a
 * /v1/completions body, parsed against the tiny ChatML tokenizer and Qwen2.5's template (tools, tool calls,
 * reasoning-free Hermes blocks); a request that parses with a grammar (response_format, tool_choice) is also fed a
 * short text. A 400 is an answer, not a failure: the target must only never crash, hang or leak. */
#include "serve/openai.h"
static int fuzz_openai(const uint8_t *data, size_t n) {
    static lmf_tokenizer *tok;
    static lmf_chat_template tmpl;
    static lmf_openai_model m;
    if (!tok) {
        char *text = NULL;
        size_t len;
        if (!(tok = tiny_chat_tokenizer()) ||
            lmf_read_file(LMF_SOURCE_DIR "/tests/reference/chat_templates/qwen2.5.jinja", &text, &len) != LMF_OK ||
            lmf_chat_template_parse(text, &tmpl) != LMF_OK)
            abort();
        free(text);
        m = (lmf_openai_model){.id = "tiny", .tok = tok, .tmpl = &tmpl, .bos = -1, .n_ctx = 4096, .reasoning = 1};
    }
    lmf_openai_request r;
    lmf_openai_error e;
    int rc = lmf_openai_parse(&m, n % 2 ? LMF_OPENAI_COMPLETION : LMF_OPENAI_CHAT, (const char *)data, n, &r, &e);
    if (!rc && r.req.grammar) {
        lmf_grammar_state *st = lmf_grammar_state_create(r.req.grammar);
        lmf_grammar_feed(st, "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>", 49);
        lmf_grammar_feed(st, "{\"a\": [1, \"x\", null]}", 20);
        lmf_grammar_state_free(st);
    }
    lmf_openai_request_free(&r);
    return rc == 0;
}

#endif
