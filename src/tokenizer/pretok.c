/* pretok.c — see pretok.h. */
#include "tokenizer/pretok.h"
#include "core/alloc.h"
#include "core/status.h"
#include "tokenizer/bytelevel.h"

#include <string.h>
#include <strings.h>

/* GPT-2 (encoder.py of the original release; also Hugging Face's ByteLevel pre-tokenizer with use_regex). */
const char *const lmf_pretok_gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* Llama-3 (the Split pattern of its tokenizer.json; the same as OpenAI's cl100k). */
const char *const lmf_pretok_llama3_pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* Qwen2 (the Split pattern of Qwen2's and Qwen3's tokenizer.json: Llama-3's with \p{N} one character at a time;
 * llama.cpp's "qwen2" pre-tokenizer spells the contractions out as '[sS]... for its own regex engine). */
const char *const lmf_pretok_qwen2_pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* Hugging Face's Digits pre-tokenizer with individual_digits (Rust char::is_numeric is \p{N}). */
static const char *const digits_pattern = "\\p{N}";

static const struct {
    const char *name;
    lmf_pretok kind;
} names[] = {
    {"gpt2", LMF_PRETOK_GPT2},     {"llama3", LMF_PRETOK_LLAMA3},   {"smollm", LMF_PRETOK_SMOLLM},
    {"custom", LMF_PRETOK_CUSTOM}, /* GGUF tokenizer.ggml.pre aliases (llama.cpp's names for the same splits) */
    {"default", LMF_PRETOK_GPT2},  {"llama-bpe", LMF_PRETOK_LLAMA3}, {"llama-v3", LMF_PRETOK_LLAMA3},
    {"starcoder", LMF_PRETOK_SMOLLM}, {"refact", LMF_PRETOK_SMOLLM}, {"gpt-2", LMF_PRETOK_GPT2},
    {"qwen2", LMF_PRETOK_QWEN2},   {"deepseek-r1-qwen", LMF_PRETOK_QWEN2},
};

lmf_status lmf_pretok_parse(const char *name, lmf_pretok *out) {
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(name, names[i].name)) {
            *out = names[i].kind;
            return LMF_OK;
        }
    return lmf_fail(LMF_ERR_ARG, "unknown pre-tokenizer '%s' (expected gpt2, llama3, smollm or qwen2)", name);
}

const char *lmf_pretok_name(lmf_pretok p) {
    switch (p) {
    case LMF_PRETOK_GPT2: return "gpt2";
    case LMF_PRETOK_LLAMA3: return "llama3";
    case LMF_PRETOK_SMOLLM: return "smollm";
    case LMF_PRETOK_QWEN2: return "qwen2";
    case LMF_PRETOK_CUSTOM: return "custom";
    }
    return "unknown";
}

static lmf_status compile_stage(lmf_pretokenizer *p, const char *pattern, const char *origin) {
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return lmf_fail(LMF_ERR_FORMAT, "%s: pre-tokenizer regex '%s': %s at offset %zu", origin, pattern,
                        (const char *)msg, (size_t)off);
    }
    int i = p->n_stages++;
    p->code[i] = code;
    p->jit[i] = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    p->pattern[i] = strdup(pattern);
    return LMF_OK;
}

lmf_status lmf_pretok_init(lmf_pretokenizer *p, lmf_pretok kind, const char *const *patterns, int n_patterns,
                           const char *origin) {
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->origin = strdup(origin ? origin : "tokenizer");
    lmf_status s = LMF_OK;
    switch (kind) {
    case LMF_PRETOK_GPT2: s = compile_stage(p, lmf_pretok_gpt2_pattern, origin); break;
    case LMF_PRETOK_LLAMA3: s = compile_stage(p, lmf_pretok_llama3_pattern, origin); break;
    case LMF_PRETOK_QWEN2: s = compile_stage(p, lmf_pretok_qwen2_pattern, origin); break;
    case LMF_PRETOK_SMOLLM:
        s = compile_stage(p, digits_pattern, origin);
        if (s == LMF_OK) s = compile_stage(p, lmf_pretok_gpt2_pattern, origin);
        break;
    case LMF_PRETOK_CUSTOM:
        if (n_patterns < 1 || n_patterns > LMF_PRETOK_MAX_STAGES || !patterns) {
            s = lmf_fail(LMF_ERR_FORMAT, "%s: a custom pre-tokenizer needs 1 to %d regexes, got %d", origin,
                         LMF_PRETOK_MAX_STAGES, n_patterns);
            break;
        }
        for (int i = 0; i < n_patterns && s == LMF_OK; i++) {
            if (!patterns[i]) s = lmf_fail(LMF_ERR_FORMAT, "%s: pre-tokenizer regex %d is missing", origin, i);
            else s = compile_stage(p, patterns[i], origin);
        }
        break;
    default: s = lmf_fail(LMF_ERR_ARG, "%s: unknown pre-tokenizer kind %d", origin, (int)kind);
    }
    if (s != LMF_OK) lmf_pretok_destroy(p);
    return s;
}

void lmf_pretok_destroy(lmf_pretokenizer *p) {
    for (int i = 0; i < p->n_stages; i++) {
        pcre2_code_free(p->code[i]);
        free(p->pattern[i]);
    }
    free(p->origin);
    memset(p, 0, sizeof *p);
}

void lmf_pretok_scratch_init(lmf_pretok_scratch *sc) {
    /* Room for the whole ovector of any pattern we accept; the JIT stack grows to 8 MiB for long runs. */
    sc->md = pcre2_match_data_create(32, NULL);
    sc->mc = pcre2_match_context_create(NULL);
    sc->js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!sc->md || !sc->mc || !sc->js) {
        fprintf(stderr, "lmforge: out of memory creating PCRE2 match data\n");
        abort();
    }
    pcre2_jit_stack_assign(sc->mc, NULL, sc->js);
    pcre2_set_match_limit(sc->mc, LMF_PRETOK_MATCH_LIMIT);
    pcre2_set_depth_limit(sc->mc, LMF_PRETOK_DEPTH_LIMIT);
    pcre2_set_heap_limit(sc->mc, LMF_PRETOK_HEAP_LIMIT);
}

void lmf_pretok_scratch_destroy(lmf_pretok_scratch *sc) {
    pcre2_match_data_free(sc->md);
    pcre2_match_context_free(sc->mc);
    pcre2_jit_stack_free(sc->js);
    memset(sc, 0, sizeof *sc);
}

/* Length of the character at s (1 for a byte that does not start valid UTF-8). */
static size_t char_len(const uint8_t *s, size_t n) {
    uint32_t cp;
    int l = lmf_utf8_next(s, n, &cp);
    return l ? (size_t)l : 1;
}

static lmf_status split_stage(const lmf_pretokenizer *p, lmf_pretok_scratch *sc, int stage, const uint8_t *text,
                              size_t s0, size_t e0, size_t top, lmf_piece_fn fn, void *ctx) {
    if (stage >= p->n_stages || stage >= LMF_PRETOK_MAX_STAGES) {
        fn(ctx, text, s0, e0, top);
        return LMF_OK;
    }
    const uint8_t *sub = text + s0;
    size_t n = e0 - s0, pos = 0, search = 0;
    pcre2_code *code = p->code[stage];
    int jit = p->jit[stage];
    while (pos < n) {
        int rc = search >= n ? PCRE2_ERROR_NOMATCH
                 : jit       ? pcre2_jit_match(code, sub, n, search, 0, sc->md, sc->mc)
                             : pcre2_match(code, sub, n, search, 0, sc->md, sc->mc);
        size_t ms, me;
        if (rc >= 0) { /* 0: more groups than the ovector holds; the overall match is still set */
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
            ms = ov[0], me = ov[1];
            if (ms < search || me < ms || me > n) ms = me = n; /* never trust a result outside the subject */
        } else if (rc == PCRE2_ERROR_NOMATCH) {
            ms = me = n;
        } else {
            /* A resource limit (catastrophic backtracking) or another matching error: splitting differently from
             * the reference would silently change the ids, and going on would cost the limit again per byte. */
            PCRE2_UCHAR msg[160];
            if (pcre2_get_error_message(rc, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", rc);
            return lmf_fail(LMF_ERR_FORMAT, "%s: pre-tokenizer regex '%.200s'%s: %s (at byte %zu of a %zu-byte piece); "
                            "the pattern backtracks without bound on this text: fix the pattern in the tokenizer",
                            p->origin ? p->origin : "tokenizer", p->pattern[stage],
                            strlen(p->pattern[stage]) > 200 ? "..." : "", (const char *)msg, search, n);
        }
        if (ms == me && ms < n) {
            /* an empty match: it joins the gap; search again one character later */
            search = ms + char_len(sub + ms, n - ms);
            continue;
        }
        if (ms > pos)
            LMF_TRY(split_stage(p, sc, stage + 1, text, s0 + pos, s0 + ms, stage == 0 ? s0 + pos : top, fn, ctx));
        if (me > ms)
            LMF_TRY(split_stage(p, sc, stage + 1, text, s0 + ms, s0 + me, stage == 0 ? s0 + ms : top, fn, ctx));
        pos = search = me;
    }
    return LMF_OK;
}

lmf_status lmf_pretok_split(const lmf_pretokenizer *p, lmf_pretok_scratch *sc, const uint8_t *text, size_t n,
                            lmf_piece_fn fn, void *ctx) {
    return n ? split_stage(p, sc, 0, text, 0, n, 0, fn, ctx) : LMF_OK;
}
