/* tokenizer_spm_model.c — a tokenizer from a SentencePiece model file (tokenizer.model: the protobuf ModelProto of
 * sentencepiece_model.proto, which Llama 1/2, Mistral and TinyLlama folders ship), built as a GGUF "llama"
 * vocabulary is (spm.h).
 *
 * Read (everything else is skipped by its wire type):
 *   pieces = 1           repeated { piece = 1 (string), score = 2 (float), type = 3 (enum: 1 normal, 2 unknown,
 *                        3 control, 4 user-defined, 5 unused, 6 byte; default normal) }
 *   trainer_spec = 2     { model_type = 3 (1 unigram, the default; 2 BPE; 3 word; 4 char) }: BPE only
 *   normalizer_spec = 3  { name = 1, precompiled_charsmap = 2, add_dummy_prefix = 3 (default true),
 *                        remove_extra_whitespaces = 4 (default true), escape_whitespaces = 5 (default true) }:
 *                        the identity normalizer only (no charsmap, no whitespace folding), as Llama's
 * Every length is checked against what is left of its message; errors name the file and the byte offset. */
#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *base, *p, *end; /* base: the file, for offsets */
    const char *path;
} pb;

typedef unsigned long long ull;

static lmf_status pb_fail(const pb *b, const char *what) {
    return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s (not a SentencePiece model file?)", b->path,
                    (ull)(b->p - b->base), what);
}

static lmf_status varint(pb *b, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return pb_fail(b, "truncated varint");
        uint8_t c = *b->p++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return LMF_OK;
    }
    return pb_fail(b, "varint longer than 10 bytes");
}

/* One field: its number and wire type; for length-delimited ones *sub spans the bytes, for varints *v holds the
 * value, for 32-bit ones *v holds the raw bits. */
static lmf_status field(pb *b, uint32_t *num, int *wt, uint64_t *v, pb *sub) {
    uint64_t key;
    LMF_TRY(varint(b, &key));
    *num = (uint32_t)(key >> 3), *wt = (int)(key & 7);
    switch (*wt) {
    case 0: return varint(b, v);
    case 1:
        if (b->end - b->p < 8) return pb_fail(b, "truncated 64-bit field");
        b->p += 8;
        return LMF_OK;
    case 2:
        LMF_TRY(varint(b, v));
        if (*v > (uint64_t)(b->end - b->p)) return pb_fail(b, "length past the end of its message");
        *sub = (pb){b->base, b->p, b->p + *v, b->path};
        b->p += *v;
        return LMF_OK;
    case 5:
        if (b->end - b->p < 4) return pb_fail(b, "truncated 32-bit field");
        uint32_t u;
        memcpy(&u, b->p, 4);
        *v = u;
        b->p += 4;
        return LMF_OK;
    default: return pb_fail(b, "unknown wire type");
    }
}

/* Calls fn on every field of message b, in order, stopping at the first failure. */
typedef lmf_status (*field_fn)(void *ctx, pb *b, uint32_t num, int wt, uint64_t v, pb *sub);
static lmf_status each_field(pb *b, field_fn fn, void *ctx) {
    while (b->p < b->end) {
        uint32_t num;
        int wt;
        uint64_t v = 0;
        pb sub = {0};
        LMF_TRY(field(b, &num, &wt, &v, &sub));
        LMF_TRY(fn(ctx, b, num, wt, v, &sub));
    }
    return LMF_OK;
}

typedef struct {
    char **text;
    float *score;
    uint8_t *kind;
    int n, cap;
    int model_type, dummy_prefix, fold_spaces, charsmap;
    char normalizer[64];
} spm_file;

typedef struct {
    char *text;
    float score;
    uint64_t kind;
} piece_fields;

static lmf_status on_piece_field(void *ctx, pb *b, uint32_t num, int wt, uint64_t v, pb *sub) {
    piece_fields *pf = ctx;
    if (num == 1 && wt == 2) {
        if (memchr(sub->p, 0, v)) return pb_fail(b, "a piece holds a NUL byte");
        free(pf->text);
        pf->text = strndup((const char *)sub->p, v);
    } else if (num == 2 && wt == 5) {
        uint32_t u = (uint32_t)v;
        memcpy(&pf->score, &u, 4);
    } else if (num == 3 && wt == 0) {
        pf->kind = v;
    }
    return LMF_OK;
}

static lmf_status piece(pb *b, spm_file *f) {
    piece_fields pf = {NULL, 0, LMF_SPM_NORMAL};
    const uint8_t *at = b->p;
    lmf_status s = each_field(b, on_piece_field, &pf);
    if (s == LMF_OK && (pf.kind < LMF_SPM_NORMAL || pf.kind > LMF_SPM_BYTE)) {
        b->p = at;
        s = pb_fail(b, "a piece's type is not 1..6");
    }
    if (s != LMF_OK) {
        free(pf.text);
        return s;
    }
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 1024;
        f->text = lmf_xrealloc(f->text, (size_t)f->cap * sizeof *f->text);
        f->score = lmf_xrealloc(f->score, (size_t)f->cap * sizeof *f->score);
        f->kind = lmf_xrealloc(f->kind, (size_t)f->cap);
    }
    f->text[f->n] = pf.text, f->score[f->n] = pf.score, f->kind[f->n] = (uint8_t)pf.kind;
    f->n++;
    return LMF_OK;
}

static lmf_status on_trainer_field(void *ctx, pb *b, uint32_t num, int wt, uint64_t v, pb *sub) {
    (void)b, (void)sub;
    if (num == 3 && wt == 0) ((spm_file *)ctx)->model_type = (int)v;
    return LMF_OK;
}

static lmf_status on_normalizer_field(void *ctx, pb *b, uint32_t num, int wt, uint64_t v, pb *sub) {
    spm_file *f = ctx;
    (void)b;
    if (num == 1 && wt == 2) snprintf(f->normalizer, sizeof f->normalizer, "%.*s", (int)(v < 60 ? v : 60), sub->p);
    else if (num == 2 && wt == 2) f->charsmap = v > 0;
    else if (num == 3 && wt == 0) f->dummy_prefix = v != 0;
    else if (num == 4 && wt == 0) f->fold_spaces = v != 0;
    return LMF_OK;
}

static lmf_status on_model_field(void *ctx, pb *b, uint32_t num, int wt, uint64_t v, pb *sub) {
    spm_file *f = ctx;
    (void)v;
    if (num == 1 && wt == 2) {
        if (f->n >= (1 << 24)) return pb_fail(b, "more than 2^24 pieces");
        return piece(sub, f);
    }
    if (num == 2 && wt == 2) return each_field(sub, on_trainer_field, f);
    if (num == 3 && wt == 2) return each_field(sub, on_normalizer_field, f);
    return LMF_OK;
}

lmf_status lmf_tokenizer_load_spm_model(const char *path, lmf_tokenizer **out) {
    *out = NULL;
    char *buf;
    size_t len;
    LMF_TRY(lmf_read_file_max(path, 1u << 28, "a SentencePiece model (max 256 MiB)", &buf, &len));
    pb b = {(const uint8_t *)buf, (const uint8_t *)buf, (const uint8_t *)buf + len, path};
    spm_file f = {.model_type = 1, .dummy_prefix = 1, .fold_spaces = 1};
    lmf_status s = each_field(&b, on_model_field, &f);
    free(buf);
    if (s == LMF_OK && !f.n) s = lmf_fail(LMF_ERR_FORMAT, "%s: no pieces (not a SentencePiece model file?)", path);
    else if (s == LMF_OK && f.model_type != 2)
        s = lmf_fail(LMF_ERR_FORMAT, "%s: trainer_spec.model_type is %d: only BPE (2) models are supported (%s)", path,
                     f.model_type, f.model_type == 1 ? "Unigram: T5, ALBERT, XLNet, ..." : "word / char");
    else if (s == LMF_OK && (f.charsmap || (f.normalizer[0] && strcmp(f.normalizer, "identity"))))
        s = lmf_fail(LMF_ERR_FORMAT, "%s: normalizer_spec \"%s\": only the identity normalizer is supported (Llama's)",
                     path, f.normalizer[0] ? f.normalizer : "(precompiled)");
    else if (s == LMF_OK && f.fold_spaces)
        s = lmf_fail(LMF_ERR_FORMAT, "%s: normalizer_spec.remove_extra_whitespaces is true: folding whitespace is not "
                     "supported (Llama's models keep it false)", path);
    int32_t unk = -1;
    for (int i = 0; i < f.n && unk < 0; i++)
        if (f.kind[i] == LMF_SPM_UNKNOWN) unk = i;
    if (s == LMF_OK)
        s = lmf_tokenizer_build_spm(f.n, (const char *const *)f.text, f.score, f.kind,
                                    f.dummy_prefix ? LMF_SPM_PREFIX_ALWAYS : LMF_SPM_PREFIX_NEVER, unk, path, out);
    for (int i = 0; i < f.n; i++) free(f.text[i]);
    free(f.text), free(f.score), free(f.kind);
    return s;
}
