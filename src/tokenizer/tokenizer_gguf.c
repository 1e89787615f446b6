/* tokenizer_gguf.c — a tokenizer from the vocabulary embedded in a GGUF model file (llama.cpp's tokenizer.ggml.*
 * keys), built through the same lmf_tokenizer_def path as tokenizer.json.
 *
 * Keys read:
 *   tokenizer.ggml.model       string: "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE, spm.h); WordPiece
 *                              ("bert"), Unigram ("t5"), RWKV, ... are refused with a clear message
 *   tokenizer.ggml.tokens      string[n_vocab]: byte-level text for normal tokens, literal text for the others
 *   tokenizer.ggml.token_type  int[n_vocab] (optional, all normal if absent), llama.cpp's llama_token_type:
 *                              0 undefined, 1 normal -> NORMAL; 2 unknown, 3 control -> CONTROL;
 *                              4 user-defined -> USER; 5 unused -> UNUSED (a hole); 6 byte (SentencePiece's <0xAB>
 *                              tokens) is refused: it has no meaning in a byte-level vocabulary
 *   tokenizer.ggml.merges      string[] "a b" in rank order (optional: without it every token is atomic)
 *   tokenizer.ggml.pre         string (optional, "default" = gpt2): through lmf_pretok_parse
 * and for "llama":
 *   tokenizer.ggml.scores      float[n_vocab] (optional, all 0 if absent): each piece's merge priority
 *   tokenizer.ggml.token_type  as above, 6 (byte) allowed: the <0xAB> tokens of byte fallback
 *   tokenizer.ggml.add_space_prefix  bool (optional, true if absent, as llama.cpp): "▁" before every text
 *   tokenizer.ggml.unknown_token_id  (optional): what a character without a piece or byte token becomes
 *   tokenizer.ggml.{bos,eos,unknown,separator,padding,eot,eom}_token_id, add_bos_token, add_eos_token: read by
 *                              lmf_tokenizer_gguf_specials (each id checked to be inside the vocabulary); the
 *                              tokenizer itself does not use them (encode returns the ids of the text alone). */
#include "core/alloc.h"
#include "core/status.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

#include <ctype.h>
#include <string.h>

typedef unsigned long long ull;

static lmf_status special_id(const lmf_gguf *g, const char *key, int64_t n_vocab, int32_t *out) {
    *out = -1;
    if (!lmf_gguf_find(g, key)) return LMF_OK;
    int64_t id;
    LMF_TRY(lmf_gguf_get_i64(g, key, &id));
    if (id < 0 || id >= n_vocab)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s = %lld is outside the vocabulary of %lld tokens", g->path,
                        (ull)lmf_gguf_find(g, key)->offset, key, (long long)id, (long long)n_vocab);
    *out = (int32_t)id;
    return LMF_OK;
}

lmf_status lmf_tokenizer_gguf_specials(const lmf_gguf *g, lmf_gguf_specials *sp) {
    const lmf_gguf_kv *tokens;
    LMF_TRY(lmf_gguf_get_arr(g, "tokenizer.ggml.tokens", LMF_GGUF_STRING, &tokens));
    int64_t n = (int64_t)tokens->count;
    LMF_TRY(special_id(g, "tokenizer.ggml.bos_token_id", n, &sp->bos));
    LMF_TRY(special_id(g, "tokenizer.ggml.eos_token_id", n, &sp->eos));
    LMF_TRY(special_id(g, "tokenizer.ggml.unknown_token_id", n, &sp->unk));
    LMF_TRY(special_id(g, "tokenizer.ggml.separator_token_id", n, &sp->sep));
    LMF_TRY(special_id(g, "tokenizer.ggml.padding_token_id", n, &sp->pad));
    LMF_TRY(special_id(g, "tokenizer.ggml.eot_token_id", n, &sp->eot));
    LMF_TRY(special_id(g, "tokenizer.ggml.eom_token_id", n, &sp->eom));
    sp->add_bos = sp->add_eos = -1;
    if (lmf_gguf_find(g, "tokenizer.ggml.add_bos_token"))
        LMF_TRY(lmf_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &sp->add_bos));
    if (lmf_gguf_find(g, "tokenizer.ggml.add_eos_token"))
        LMF_TRY(lmf_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &sp->add_eos));
    return LMF_OK;
}

/* llama.cpp's token types onto ours; -1 for the ones a byte-level BPE cannot have. */
static int map_type(int64_t t) {
    switch (t) {
    case 0: case 1: return LMF_TOKEN_NORMAL;
    case 2: case 3: return LMF_TOKEN_CONTROL;
    case 4: return LMF_TOKEN_USER;
    case 5: return LMF_TOKEN_UNUSED;
    default: return -1;
    }
}

/* NUL-terminated copies of a string array, in one block: (*ptrs)[i] points into *block. */
static lmf_status copy_strings(const lmf_gguf *g, const lmf_gguf_kv *kv, const char *what, char ***ptrs,
                               char **block) {
    size_t total = 0;
    for (uint64_t i = 0; i < kv->count; i++) {
        size_t len;
        const char *s = lmf_gguf_arr_str(g, kv, i, &len);
        if (memchr(s, 0, len)) {
            *ptrs = NULL, *block = NULL;
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s[%llu] holds a NUL byte", g->path,
                            (ull)kv->str_off[i], what, (ull)i);
        }
        total += len + 1; /* <= file size: no overflow */
    }
    char **p = lmf_xmalloc((kv->count ? kv->count : 1) * sizeof *p);
    char *b = lmf_xmalloc(total ? total : 1);
    size_t at = 0;
    for (uint64_t i = 0; i < kv->count; i++) {
        size_t len;
        const char *s = lmf_gguf_arr_str(g, kv, i, &len);
        memcpy(b + at, s, len);
        b[at + len] = 0;
        p[i] = b + at;
        at += len + 1;
    }
    *ptrs = p, *block = b;
    return LMF_OK;
}

/* tokenizer.ggml.model "llama": the SentencePiece vocabulary. */
static lmf_status from_gguf_spm(const lmf_gguf *g, lmf_tokenizer **out) {
    const lmf_gguf_kv *tokens, *types = NULL, *scores = NULL;
    LMF_TRY(lmf_gguf_get_arr(g, "tokenizer.ggml.tokens", LMF_GGUF_STRING, &tokens));
    if (tokens->count < 1 || tokens->count > (1u << 30))
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tokenizer.ggml.tokens has %llu tokens (1 to 2^30)", g->path,
                        (ull)tokens->offset, (ull)tokens->count);
    int n = (int)tokens->count;
    if (lmf_gguf_find(g, "tokenizer.ggml.token_type")) {
        LMF_TRY(lmf_gguf_get_arr(g, "tokenizer.ggml.token_type", LMF_GGUF_I64, &types));
        if (types->count != tokens->count)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tokenizer.ggml.token_type has %llu entries but "
                            "tokenizer.ggml.tokens has %d", g->path, (ull)types->offset, (ull)types->count, n);
    }
    if (lmf_gguf_find(g, "tokenizer.ggml.scores")) {
        LMF_TRY(lmf_gguf_get_arr(g, "tokenizer.ggml.scores", LMF_GGUF_F32, &scores));
        if (scores->count != tokens->count)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tokenizer.ggml.scores has %llu entries but "
                            "tokenizer.ggml.tokens has %d", g->path, (ull)scores->offset, (ull)scores->count, n);
    }
    int prefix = 1;
    if (lmf_gguf_find(g, "tokenizer.ggml.add_space_prefix"))
        LMF_TRY(lmf_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &prefix));
    lmf_gguf_specials sp;
    LMF_TRY(lmf_tokenizer_gguf_specials(g, &sp));
    char **text = NULL, *block = NULL;
    LMF_TRY(copy_strings(g, tokens, "tokenizer.ggml.tokens", &text, &block));
    float *sc = lmf_xmalloc((size_t)n * sizeof *sc);
    uint8_t *kind = lmf_xmalloc((size_t)n);
    lmf_status s = LMF_OK;
    for (int i = 0; i < n && s == LMF_OK; i++) {
        sc[i] = scores ? (float)lmf_gguf_arr_float(scores, (uint64_t)i) : 0.0f;
        int64_t t = types ? lmf_gguf_arr_int(types, (uint64_t)i) : 1;
        if (t < 0 || t > 6)
            s = lmf_fail(LMF_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%d] (token \"%.40s\") is %lld: not a "
                         "llama.cpp token type (expected 0..6)", g->path, i, text[i], (long long)t);
        kind[i] = (uint8_t)t;
    }
    if (s == LMF_OK) {
        char origin[4200];
        snprintf(origin, sizeof origin, "%s (GGUF tokenizer.ggml.*)", g->path);
        s = lmf_tokenizer_build_spm(n, (const char *const *)text, sc, kind, prefix, sp.unk, origin, out);
    }
    free(text), free(block), free(sc), free(kind);
    return s;
}

/* llama.cpp's rule for Phi-3 vocabularies, keyed to the model's name (general.name holding "phi-3" or "phi3", any
 * case): its special tokens swallow the whitespace after them ("<|user|>\nHi" is "<|user|>" then "Hi"), but for
 * "<unk>", "<s>" and "<|endoftext|>". Hugging Face's Phi-3 tokenizer.json says the same with rstrip on its added
 * tokens. */
static void phi3_strip(const lmf_gguf *g, lmf_tokenizer *tok) {
    const lmf_gguf_kv *kv = lmf_gguf_find(g, "general.name");
    if (!kv || kv->type != LMF_GGUF_STRING) return;
    char name[512];
    size_t n = 0;
    for (; kv->str[n] && n + 1 < sizeof name; n++) name[n] = (char)tolower((unsigned char)kv->str[n]);
    name[n] = 0;
    if (!strstr(name, "phi-3") && !strstr(name, "phi3")) return;
    for (int k = 0; k < tok->n_special; k++) lmf_tokenizer_set_strip(tok, tok->special[k], LMF_STRIP_RIGHT);
    lmf_tokenizer_set_strip(tok, lmf_tokenizer_token_id(tok, "</s>"), LMF_STRIP_RIGHT);
    static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
    for (int i = 0; i < 3; i++) lmf_tokenizer_set_strip(tok, lmf_tokenizer_token_id(tok, keep[i]), 0);
}

static lmf_status from_gguf(const lmf_gguf *g, lmf_tokenizer **out);

lmf_status lmf_tokenizer_from_gguf(const lmf_gguf *g, lmf_tokenizer **out) {
    LMF_TRY(from_gguf(g, out));
    phi3_strip(g, *out);
    return LMF_OK;
}

static lmf_status from_gguf(const lmf_gguf *g, lmf_tokenizer **out) {
    *out = NULL;
    const char *model;
    LMF_TRY(lmf_gguf_get_str(g, "tokenizer.ggml.model", &model));
    if (!strcmp(model, "llama")) return from_gguf_spm(g, out);
    if (strcmp(model, "gpt2"))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tokenizer.ggml.model is '%.40s': only 'gpt2' (byte-level BPE: GPT-2, "
                        "Llama-3, SmolLM, Qwen, ...) and 'llama' (SentencePiece BPE: Llama 2, Mistral, ...) are "
                        "supported", g->path, model);
    const lmf_gguf_kv *tokens, *types = NULL, *merges = NULL;
    LMF_TRY(lmf_gguf_get_arr(g, "tokenizer.ggml.tokens", LMF_GGUF_STRING, &tokens));
    if (tokens->count < 256 || tokens->count > (1u << 30))
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tokenizer.ggml.tokens has %llu tokens (a byte-level BPE "
                        "needs 256 to 2^30)", g->path, (ull)tokens->offset, (ull)tokens->count);
    int n_vocab = (int)tokens->count;
    if (lmf_gguf_find(g, "tokenizer.ggml.token_type")) {
        LMF_TRY(lmf_gguf_get_arr(g, "tokenizer.ggml.token_type", LMF_GGUF_I64, &types));
        if (types->count != tokens->count)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tokenizer.ggml.token_type has %llu entries but "
                            "tokenizer.ggml.tokens has %d", g->path, (ull)types->offset, (ull)types->count, n_vocab);
    }
    if (lmf_gguf_find(g, "tokenizer.ggml.merges")) {
        LMF_TRY(lmf_gguf_get_arr(g, "tokenizer.ggml.merges", LMF_GGUF_STRING, &merges));
        if (merges->count > (1u << 30))
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %llu merges (at most 2^30)", g->path,
                            (ull)merges->offset, (ull)merges->count);
    }
    /* missing_bytes_ok: real GGUF vocabularies may lack byte tokens (SmolLM2 has none for 21 bytes never seen in
     * training); Hugging Face drops such bytes, and so does llama.cpp. */
    lmf_tokenizer_def def = {.n_vocab = n_vocab, .pretok = LMF_PRETOK_GPT2, .missing_bytes_ok = 1};
    const char *pre = "default";
    if (lmf_gguf_find(g, "tokenizer.ggml.pre")) LMF_TRY(lmf_gguf_get_str(g, "tokenizer.ggml.pre", &pre));
    if (lmf_pretok_parse(pre, &def.pretok) != LMF_OK || def.pretok == LMF_PRETOK_CUSTOM)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tokenizer.ggml.pre '%.60s' is not a supported pre-tokenizer (known: "
                        "default/gpt2, llama-bpe/llama-v3/llama3, smollm, starcoder, refact, qwen2, deepseek-r1-qwen)", g->path, pre);
    lmf_gguf_specials sp;
    LMF_TRY(lmf_tokenizer_gguf_specials(g, &sp));

    char **tok_text = NULL, *tok_block = NULL, **merge_text = NULL, *merge_block = NULL;
    uint8_t *type_of = NULL;
    lmf_status s = copy_strings(g, tokens, "tokenizer.ggml.tokens", &tok_text, &tok_block);
    if (s == LMF_OK && merges) s = copy_strings(g, merges, "tokenizer.ggml.merges", &merge_text, &merge_block);
    if (s == LMF_OK && types) {
        type_of = lmf_xmalloc((size_t)n_vocab);
        for (int i = 0; i < n_vocab && s == LMF_OK; i++) {
            int64_t t = lmf_gguf_arr_int(types, (uint64_t)i);
            int m = map_type(t);
            if (m < 0)
                s = lmf_fail(LMF_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%d] (token \"%.40s\") is %lld: %s", g->path,
                             i, tok_text[i], (long long)t,
                             t == 6 ? "a SentencePiece byte token, which a byte-level BPE vocabulary cannot hold"
                                    : "not a llama.cpp token type (expected 0..5)");
            else type_of[i] = (uint8_t)m;
        }
    }
    if (s == LMF_OK) {
        def.tokens = (const char *const *)tok_text;
        def.types = type_of;
        def.n_merges = merges ? (int)merges->count : 0;
        def.merges = (const char *const *)merge_text;
        char origin[4200];
        snprintf(origin, sizeof origin, "%s (GGUF tokenizer.ggml.*)", g->path);
        s = lmf_tokenizer_build(&def, origin, out);
    }
    free(tok_text), free(tok_block), free(merge_text), free(merge_block), free(type_of);
    return s;
}

lmf_status lmf_tokenizer_load_gguf(const char *path, lmf_tokenizer **out) {
    *out = NULL;
    lmf_gguf *g;
    LMF_TRY(lmf_gguf_open(path, &g));
    lmf_status s = lmf_tokenizer_from_gguf(g, out);
    lmf_gguf_close(g);
    return s;
}
