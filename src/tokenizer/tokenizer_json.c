/* tokenizer_json.c — tokenizer files: Hugging Face tokenizer.json (load and save) and GPT-2's encoder.json +
 * vocab.bpe (load). Both are turned into an lmf_tokenizer_def and built by lmf_tokenizer_build.
 *
 * tokenizer.json, the parts read (everything else is ignored):
 *   model          {"type": "BPE", "vocab": {text: id}, "merges": ["a b", ...] or [["a", "b"], ...],
 *                   "ignore_merges": bool}; byte_fallback, continuing_subword_prefix and end_of_word_suffix must
 *                   be off (they belong to other kinds of BPE)
 *   added_tokens   [{"id", "content", "special"}]: special -> CONTROL (one id only where allowed), else USER
 *   pre_tokenizer  ByteLevel (use_regex: the GPT-2 regex), Split {"pattern": {"Regex"|"String"}, "behavior":
 *                   "Isolated"}, Digits, or a Sequence of them; must include ByteLevel with add_prefix_space off
 *   normalizer     null (or an empty Sequence), or NFC (alone or the one member of a Sequence: Qwen2's); decoder
 *                  null or ByteLevel
 * The post_processor (BOS/EOS templates) is not applied: encode returns the ids of the text alone.
 *
 * Every file is hostile input: size-capped, each field type-checked, errors name the file and the field. */
#include "core/alloc.h"
#include "core/fs.h"
#include "core/sort.h"
#include "core/status.h"
#include "io/gguf.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILE_BYTES (1ull << 31)
#define MAX_VOCAB (1 << 24)

static lmf_status read_file(const char *path, char **out, size_t *len) {
    return lmf_read_file_max(path, MAX_FILE_BYTES, "a tokenizer file (max 2 GiB)", out, len);
}

static lmf_status parse_json(const char *path, const char *buf, size_t len, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (*out) return LMF_OK;
    size_t off = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0, line = 1;
    for (size_t i = 0; i < off; i++) line += buf[i] == '\n';
    return lmf_fail(LMF_ERR_FORMAT, "%s: not valid JSON (line %zu, byte offset %zu)", path, line, off);
}

/* An integer id in [0, MAX_VOCAB), or -1. */
static long json_id(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < MAX_VOCAB) || d != floor(d)) return -1;
    return (long)d;
}

static int json_true(const cJSON *o, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key)); }

static const char *json_type(const cJSON *o) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* ---- pre_tokenizer --------------------------------------------------------------------------------------------- */

typedef struct {
    char *pattern[LMF_PRETOK_MAX_STAGES];
    int n, bytelevel;
} pretok_spec;

static lmf_status spec_push(pretok_spec *ps, const char *path, char *pattern) {
    if (ps->n == LMF_PRETOK_MAX_STAGES) {
        free(pattern);
        return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer: more than %d regex stages", path, LMF_PRETOK_MAX_STAGES);
    }
    ps->pattern[ps->n++] = pattern;
    return LMF_OK;
}

/* A literal string as a PCRE2 pattern: every non-alphanumeric ASCII character escaped. */
static char *escape_literal(const char *s) {
    size_t n = strlen(s);
    char *p = lmf_xmalloc(2 * n + 1), *q = p;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) *q++ = '\\';
        *q++ = (char)c;
    }
    *q = 0;
    return p;
}

static lmf_status parse_pretok(const cJSON *node, const char *path, pretok_spec *ps, int depth) {
    if (!cJSON_IsObject(node)) return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer: expected an object", path);
    const char *type = json_type(node);
    if (!type) return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer: missing \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(node, "pretokenizers");
        if (!cJSON_IsArray(list) || depth > 4)
            return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer Sequence: \"pretokenizers\" must be an array", path);
        const cJSON *it;
        cJSON_ArrayForEach(it, list) LMF_TRY(parse_pretok(it, path, ps, depth + 1));
        return LMF_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (json_true(node, "add_prefix_space"))
            return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer ByteLevel: add_prefix_space=true is not supported", path);
        ps->bytelevel = 1;
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(node, "use_regex");
        if (!ur || cJSON_IsTrue(ur)) return spec_push(ps, path, strdup(lmf_pretok_gpt2_pattern));
        return LMF_OK;
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(node, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex"), *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(node, "behavior");
        if (!(cJSON_IsString(re) || cJSON_IsString(str)))
            return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer Split: \"pattern\" must be {\"Regex\": ...} or {\"String\": ...}", path);
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated"))
            return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer Split: behavior \"%s\" is not supported (only Isolated)",
                            path, cJSON_IsString(beh) ? beh->valuestring : "?");
        if (json_true(node, "invert")) return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer Split: invert=true is not supported", path);
        return spec_push(ps, path, cJSON_IsString(re) ? strdup(re->valuestring) : escape_literal(str->valuestring));
    }
    if (!strcmp(type, "Digits"))
        return spec_push(ps, path, strdup(json_true(node, "individual_digits") ? "\\p{N}" : "\\p{N}+"));
    return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer type \"%s\" is not supported (byte-level BPE needs ByteLevel, Split, "
                    "Digits or a Sequence of them)", path, type);
}

/* ---- tokenizer.json -------------------------------------------------------------------------------------------- */

typedef struct {
    const char **tokens;
    uint8_t *types;
    const char **merges;
    char **owned; /* strings made here ("a b" from pair merges), freed after the build */
    int n_owned;
} def_store;

static void store_free(def_store *d) {
    for (int i = 0; i < d->n_owned; i++) free(d->owned[i]);
    free(d->owned);
    free(d->tokens);
    free(d->types);
    free(d->merges);
}

/* The ids of a {token: id} object: each an integer in [0, MAX_VOCAB); *n_vocab is raised to the largest + 1. `what`
 * names the object in messages ("model.vocab"; "" for a file that is the object). */
static lmf_status vocab_ids(const char *path, const char *what, const cJSON *obj, long *n_vocab) {
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        long id = json_id(it);
        if (id < 0)
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s%s\"%.60s\"%s: id must be an integer in [0, %d)", path, what,
                            *what ? "[" : "", it->string, *what ? "]" : "", MAX_VOCAB);
        if (id + 1 > *n_vocab) *n_vocab = id + 1;
    }
    return LMF_OK;
}

/* Puts the tokens of an object vocab_ids accepted into d->tokens; two tokens with one id are an error. */
static lmf_status vocab_fill(const char *path, const char *what, const cJSON *obj, def_store *d) {
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        long id = json_id(it);
        if (d->tokens[id])
            return lmf_fail(LMF_ERR_FORMAT, "%s: %s%sid %ld is used by both \"%.60s\" and \"%.60s\"", path, what,
                            *what ? ": " : "", id, d->tokens[id], it->string);
        d->tokens[id] = it->string;
    }
    return LMF_OK;
}

static lmf_status check_model(const cJSON *model, const char *path) {
    if (!cJSON_IsObject(model)) return lmf_fail(LMF_ERR_FORMAT, "%s: missing \"model\" object", path);
    const char *type = json_type(model);
    if (type && strcmp(type, "BPE"))
        return lmf_fail(LMF_ERR_FORMAT, "%s: model.type is \"%s\"; only BPE is supported", path, type);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (cJSON_IsString(a) && a->valuestring[0])
            return lmf_fail(LMF_ERR_FORMAT, "%s: model.%s=\"%s\" is not supported", path, affixes[i], a->valuestring);
    }
    return LMF_OK;
}

/* The normalizers byte-level BPE files use: none (null or an empty Sequence) or NFC (Qwen2, Qwen3), alone or as
 * the only member of a Sequence. */
static lmf_status check_normalizer_decoder(const cJSON *root, const char *path, int *nfc) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    *nfc = 0;
    if (norm && !cJSON_IsNull(norm)) {
        const char *t = json_type(norm);
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(norm, "normalizers");
        if (t && !strcmp(t, "Sequence") && cJSON_IsArray(list) && cJSON_GetArraySize(list) == 1)
            t = json_type(cJSON_GetArrayItem(list, 0)), norm = NULL;
        if (t && !strcmp(t, "NFC")) *nfc = 1;
        else if (!(norm && t && !strcmp(t, "Sequence") && cJSON_IsArray(list) && cJSON_GetArraySize(list) == 0))
            return lmf_fail(LMF_ERR_FORMAT, "%s: normalizer \"%s\" is not supported (byte-level BPE files use none "
                            "or NFC)", path, t ? t : "?");
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (dec && !cJSON_IsNull(dec)) {
        const char *t = json_type(dec);
        if (!t || strcmp(t, "ByteLevel"))
            return lmf_fail(LMF_ERR_FORMAT, "%s: decoder \"%s\" is not supported (expected ByteLevel)", path, t ? t : "?");
    }
    return LMF_OK;
}

/* ---- tokenizer.json of the SentencePiece kind --------------------------------------------------------------- */

static int is_str(const cJSON *o, const char *key, const char *want) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && !strcmp(v->valuestring, want);
}

/* How the file turns spaces into "▁" and where it puts one before the text: the legacy normalizer (Prepend "▁",
 * then Replace " " -> "▁"; Llama 2, Mistral, TinyLlama; Gemma without the Prepend, and a pre-tokenizer splitting on
 * the spaces that are no longer there) or the Metaspace pre-tokenizer (prepend_scheme always, first or never, split;
 * it puts no "▁" before a fragment that starts with one). */
static lmf_status spm_spaces(const cJSON *root, const char *path, int *prefix, int *split, int *metaspace) {
    *prefix = LMF_SPM_PREFIX_NEVER, *split = 0, *metaspace = 0;
    int replaced = 0;
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(norm, "normalizers"), *it;
        int seq = json_type(norm) && !strcmp(json_type(norm), "Sequence") && cJSON_IsArray(list);
        for (it = seq ? list->child : norm; it; it = seq ? it->next : NULL) {
            const char *t = json_type(it);
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(it, "pattern");
            if (t && !strcmp(t, "Prepend") && is_str(it, "prepend", "\xe2\x96\x81") && !replaced)
                *prefix = LMF_SPM_PREFIX_ALWAYS;
            else if (t && !strcmp(t, "Replace") && is_str(pat, "String", " ") && is_str(it, "content", "\xe2\x96\x81"))
                replaced = 1;
            else
                return lmf_fail(LMF_ERR_FORMAT, "%s: normalizer \"%s\" is not supported with byte_fallback (expected "
                                "Prepend \"\xe2\x96\x81\" then Replace \" \" -> \"\xe2\x96\x81\")", path, t ? t : "?");
        }
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    /* Gemma's (transformers' GemmaConverter): Split on " " after the normalizer replaced every space: a no-op */
    if (replaced && json_type(pt) && !strcmp(json_type(pt), "Split") &&
        is_str(cJSON_GetObjectItemCaseSensitive(pt, "pattern"), "String", " ") &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pt, "invert")))
        pt = NULL;
    if (pt && !cJSON_IsNull(pt)) {
        const char *t = json_type(pt);
        if (!t || strcmp(t, "Metaspace") || !is_str(pt, "replacement", "\xe2\x96\x81") || replaced)
            return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer \"%s\" is not supported with byte_fallback (expected "
                            "none, or Metaspace with replacement \"\xe2\x96\x81\" and no Replace normalizer)", path,
                            t ? t : "?");
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(pt, "prepend_scheme");
        if (cJSON_IsString(scheme)) {
            const char *v = scheme->valuestring;
            *prefix = !strcmp(v, "always") ? LMF_SPM_PREFIX_ALWAYS : !strcmp(v, "first") ? LMF_SPM_PREFIX_FIRST
                      : !strcmp(v, "never") ? LMF_SPM_PREFIX_NEVER : -1;
            if (*prefix < 0)
                return lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer Metaspace: prepend_scheme \"%.40s\" (expected "
                                "always, first or never)", path, v);
        } else { /* older files: add_prefix_space */
            *prefix = cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pt, "add_prefix_space")) ? LMF_SPM_PREFIX_NEVER
                                                                                               : LMF_SPM_PREFIX_ALWAYS;
        }
        *split = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pt, "split")); /* HF's default: true */
        *metaspace = replaced = 1;
    }
    if (!replaced)
        return lmf_fail(LMF_ERR_FORMAT, "%s: model.byte_fallback=true but spaces are not turned into \"\xe2\x96\x81\" "
                        "(no Replace normalizer or Metaspace pre-tokenizer): not a SentencePiece-style file", path);
    return LMF_OK;
}

/* tokenizer.json with byte_fallback: the SentencePiece model (spm.h) with the file's ranked merges. Pieces
 * "<0xAB>" are byte tokens; model.unk_token names the unknown token. */
static lmf_status build_spm_json(const cJSON *root, const cJSON *model, const char *path, const def_store *d, int n,
                                 int n_merges, lmf_tokenizer **out) {
    int prefix, split, metaspace;
    LMF_TRY(spm_spaces(root, path, &prefix, &split, &metaspace));
    if (json_true(model, "ignore_merges"))
        return lmf_fail(LMF_ERR_FORMAT, "%s: model.ignore_merges with byte_fallback is not supported", path);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    const char *unk_text = cJSON_IsString(u) ? u->valuestring : NULL;
    uint8_t *kind = lmf_xmalloc((size_t)n + 1);
    int32_t unk = -1;
    for (int i = 0; i < n; i++) {
        const char *t = d->tokens[i];
        kind[i] = !t ? LMF_SPM_UNUSED : d->types[i] == LMF_TOKEN_CONTROL ? LMF_SPM_CONTROL
                  : d->types[i] == LMF_TOKEN_USER ? LMF_SPM_USER : lmf_spm_byte_token(t, strlen(t)) >= 0 ? LMF_SPM_BYTE
                                                                                                      : LMF_SPM_NORMAL;
        if (t && unk_text && !strcmp(t, unk_text)) unk = i, kind[i] = LMF_SPM_UNKNOWN;
    }
    lmf_status s = lmf_tokenizer_build_spm(n, d->tokens, NULL, kind, prefix, unk, path, out);
    free(kind);
    if (s != LMF_OK) return s;
    lmf_tokenizer *tok = *out;
    if ((s = lmf_spm_set_merges(tok->spm, &tok->bpe, n_merges, d->merges, path)) != LMF_OK) {
        lmf_tokenizer_free(tok);
        *out = NULL;
        return s;
    }
    tok->spm->split_marks = split;
    tok->spm->metaspace = metaspace;
    tok->spm->fuse_unk = json_true(model, "fuse_unk");
    return LMF_OK;
}

/* Added tokens' lstrip / rstrip: the whitespace before / after them in the text goes with them (Unicode's
 * White_Space, as Hugging Face's char::is_whitespace: U+00A0 and U+3000 too, not only llama.cpp's isspace). */
static void strips_from(const cJSON *added, lmf_tokenizer *tok) {
    const cJSON *it;
    tok->strip_unicode = 1;
    if (cJSON_IsArray(added)) cJSON_ArrayForEach(it, added) {
        unsigned f = (json_true(it, "lstrip") ? LMF_STRIP_LEFT : 0) | (json_true(it, "rstrip") ? LMF_STRIP_RIGHT : 0);
        if (f) lmf_tokenizer_set_strip(tok, (int32_t)json_id(cJSON_GetObjectItemCaseSensitive(it, "id")), f);
    }
}

static lmf_status load_json(const char *path, lmf_tokenizer **out) {
    char *buf;
    size_t len;
    LMF_TRY(read_file(path, &buf, &len));
    cJSON *root;
    lmf_status s = parse_json(path, buf, len, &root);
    free(buf);
    if (s != LMF_OK) return s;
    def_store d = {0};
    pretok_spec ps = {0};
    lmf_tokenizer_def def = {0};
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(root)) {
        s = lmf_fail(LMF_ERR_FORMAT, "%s: top level is not a JSON object", path);
        goto done;
    }
    int fallback = json_true(model, "byte_fallback"); /* SentencePiece's kind: Llama 2, Mistral, TinyLlama */
    if ((s = check_model(model, path)) != LMF_OK) goto done;
    if (!fallback && (s = check_normalizer_decoder(root, path, &def.nfc)) != LMF_OK) goto done;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) {
        s = lmf_fail(LMF_ERR_FORMAT, "%s: model.vocab must be an object {token: id}", path);
        goto done;
    }
    if (!cJSON_IsArray(merges)) {
        s = lmf_fail(LMF_ERR_FORMAT, "%s: model.merges must be an array", path);
        goto done;
    }
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) {
        s = lmf_fail(LMF_ERR_FORMAT, "%s: added_tokens must be an array", path);
        goto done;
    }
    /* size the vocabulary: the largest id + 1 over vocab and added tokens */
    long n_vocab = 0;
    const cJSON *it;
    if ((s = vocab_ids(path, "model.vocab", vocab, &n_vocab)) != LMF_OK) goto done;
    int ai = 0;
    if (cJSON_IsArray(added)) cJSON_ArrayForEach(it, added) {
        long id = json_id(cJSON_GetObjectItemCaseSensitive(it, "id"));
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (id < 0 || !cJSON_IsString(content) || !content->valuestring[0]) {
            s = lmf_fail(LMF_ERR_FORMAT, "%s: added_tokens[%d]: needs an integer \"id\" in [0, %d) and a non-empty "
                         "string \"content\"", path, ai, MAX_VOCAB);
            goto done;
        }
        if (id + 1 > n_vocab) n_vocab = id + 1;
        ai++;
    }
    d.tokens = lmf_xcalloc((size_t)n_vocab + 1, sizeof *d.tokens);
    d.types = lmf_xcalloc((size_t)n_vocab + 1, 1);
    if ((s = vocab_fill(path, "model.vocab", vocab, &d)) != LMF_OK) goto done;
    ai = 0;
    if (cJSON_IsArray(added)) cJSON_ArrayForEach(it, added) {
        long id = json_id(cJSON_GetObjectItemCaseSensitive(it, "id"));
        const char *content = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        if (d.tokens[id] && strcmp(d.tokens[id], content)) {
            s = lmf_fail(LMF_ERR_FORMAT, "%s: added_tokens[%d]: id %ld is \"%.60s\" but model.vocab has \"%.60s\"",
                         path, ai, id, content, d.tokens[id]);
            goto done;
        }
        d.tokens[id] = content;
        d.types[id] = json_true(it, "special") ? LMF_TOKEN_CONTROL : LMF_TOKEN_USER;
        ai++;
    }
    int n_merges = cJSON_GetArraySize(merges), r = 0;
    d.merges = lmf_xcalloc((size_t)n_merges + 1, sizeof *d.merges);
    d.owned = lmf_xcalloc((size_t)n_merges + 1, sizeof *d.owned);
    cJSON_ArrayForEach(it, merges) {
        if (cJSON_IsString(it)) {
            d.merges[r++] = it->valuestring;
            continue;
        }
        const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsString(a) || !cJSON_IsString(b)) {
            s = lmf_fail(LMF_ERR_FORMAT, "%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", path, r);
            goto done;
        }
        size_t la = strlen(a->valuestring), lb = strlen(b->valuestring);
        char *m = lmf_xmalloc(la + lb + 2);
        memcpy(m, a->valuestring, la);
        m[la] = ' ';
        memcpy(m + la + 1, b->valuestring, lb + 1);
        d.owned[d.n_owned++] = m;
        d.merges[r++] = m;
    }
    if (fallback) {
        s = build_spm_json(root, model, path, &d, (int)n_vocab, r, out);
        goto done;
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!pt || cJSON_IsNull(pt)) {
        s = lmf_fail(LMF_ERR_FORMAT, "%s: no pre_tokenizer: not a byte-level BPE (expected ByteLevel)", path);
        goto done;
    }
    if ((s = parse_pretok(pt, path, &ps, 0)) != LMF_OK) goto done;
    if (!ps.bytelevel) {
        s = lmf_fail(LMF_ERR_FORMAT, "%s: pre_tokenizer has no ByteLevel step: not a byte-level BPE", path);
        goto done;
    }
    def.n_vocab = (int)n_vocab;
    def.tokens = d.tokens;
    def.types = d.types;
    def.n_merges = r;
    def.merges = d.merges;
    def.ignore_merges = json_true(model, "ignore_merges");
    /* a byte without a token (SmolLM2's vocabulary has none for 21 bytes) is dropped by Hugging Face's BPE when there
     * is no unk_token, as the GGUF path drops it for llama.cpp */
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    def.missing_bytes_ok = !unk || cJSON_IsNull(unk);
    /* recognise the named pre-tokenizers, so they keep their names (and their saved form) */
    if (ps.n == 0) {
        /* ByteLevel without regex: the whole text is one piece */
        ps.pattern[ps.n++] = strdup("(?s).+");
    }
    def.pretok = LMF_PRETOK_CUSTOM;
    if (ps.n == 1 && !strcmp(ps.pattern[0], lmf_pretok_gpt2_pattern)) def.pretok = LMF_PRETOK_GPT2;
    else if (ps.n == 1 && !strcmp(ps.pattern[0], lmf_pretok_llama3_pattern)) def.pretok = LMF_PRETOK_LLAMA3;
    else if (ps.n == 1 && !strcmp(ps.pattern[0], lmf_pretok_qwen2_pattern)) def.pretok = LMF_PRETOK_QWEN2;
    else if (ps.n == 2 && !strcmp(ps.pattern[0], "\\p{N}") && !strcmp(ps.pattern[1], lmf_pretok_gpt2_pattern))
        def.pretok = LMF_PRETOK_SMOLLM;
    def.n_patterns = ps.n;
    def.patterns = (const char *const *)ps.pattern;
    s = lmf_tokenizer_build(&def, path, out);
done:
    if (s == LMF_OK) strips_from(cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *out);
    for (int i = 0; i < ps.n; i++) free(ps.pattern[i]);
    store_free(&d);
    cJSON_Delete(root);
    return s;
}

/* ---- GPT-2: encoder.json + vocab.bpe --------------------------------------------------------------------------- */

static lmf_status load_gpt2_dir(const char *dir, lmf_tokenizer **out) {
    char enc_path[4096], bpe_path[4096];
    snprintf(enc_path, sizeof enc_path, "%s/encoder.json", dir);
    snprintf(bpe_path, sizeof bpe_path, "%s/vocab.bpe", dir);
    char *ebuf = NULL, *bbuf = NULL;
    size_t elen, blen;
    LMF_TRY(read_file(enc_path, &ebuf, &elen));
    lmf_status s = read_file(bpe_path, &bbuf, &blen);
    if (s != LMF_OK) {
        free(ebuf);
        return s;
    }
    cJSON *enc = NULL;
    def_store d = {0};
    if ((s = parse_json(enc_path, ebuf, elen, &enc)) != LMF_OK) goto done;
    if (!cJSON_IsObject(enc)) {
        s = lmf_fail(LMF_ERR_FORMAT, "%s: expected a JSON object {token: id}", enc_path);
        goto done;
    }
    long n_vocab = 0;
    if ((s = vocab_ids(enc_path, "", enc, &n_vocab)) != LMF_OK) goto done;
    d.tokens = lmf_xcalloc((size_t)n_vocab + 1, sizeof *d.tokens);
    d.types = lmf_xcalloc((size_t)n_vocab + 1, 1);
    if ((s = vocab_fill(enc_path, "", enc, &d)) != LMF_OK) goto done;
    /* GPT-2's files carry no token types: <|endoftext|> and its kin are the special ones */
    for (long id = 0; id < n_vocab; id++) {
        const char *t = d.tokens[id];
        size_t l = t ? strlen(t) : 0;
        if (l >= 5 && !strncmp(t, "<|", 2) && !strcmp(t + l - 2, "|>")) d.types[id] = LMF_TOKEN_CONTROL;
    }
    /* vocab.bpe: "#version: 0.2" then one "a b" merge per line */
    size_t n_lines = 1;
    for (size_t i = 0; i < blen; i++) n_lines += bbuf[i] == '\n';
    d.merges = lmf_xcalloc(n_lines + 1, sizeof *d.merges);
    int n_merges = 0;
    size_t line_no = 0;
    for (char *p = bbuf; p < bbuf + blen;) {
        char *nl = memchr(p, '\n', (size_t)(bbuf + blen - p)), *e = nl ? nl : bbuf + blen;
        line_no++;
        size_t ll = (size_t)(e - p);
        if (ll && p[ll - 1] == '\r') ll--;
        p[ll] = 0; /* within the buffer: a '\r', the '\n' or the terminating NUL read_file adds */
        if (strlen(p) != ll) {
            s = lmf_fail(LMF_ERR_FORMAT, "%s: line %zu: NUL byte", bpe_path, line_no);
            goto done;
        }
        if (*p && !(line_no == 1 && !strncmp(p, "#version", 8))) d.merges[n_merges++] = p;
        p = e + 1;
    }
    lmf_tokenizer_def def = {.n_vocab = (int)n_vocab, .tokens = d.tokens, .types = d.types, .n_merges = n_merges,
                             .merges = d.merges, .pretok = LMF_PRETOK_GPT2};
    char origin[8300];
    snprintf(origin, sizeof origin, "%s (with %s)", bpe_path, enc_path);
    s = lmf_tokenizer_build(&def, origin, out);
done:
    store_free(&d);
    cJSON_Delete(enc);
    free(ebuf);
    free(bbuf);
    return s;
}

lmf_status lmf_tokenizer_load(const char *path, lmf_tokenizer **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return lmf_fail(LMF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t n = strlen(path);
    if (!S_ISDIR(sb.st_mode))
        return lmf_gguf_sniff(path)                          ? lmf_tokenizer_load_gguf(path, out)
               : n >= 6 && !strcmp(path + n - 6, ".model") ? lmf_tokenizer_load_spm_model(path, out)
                                                             : load_json(path, out);
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", path);
    if (stat(p, &sb) == 0) return load_json(p, out);
    snprintf(p, sizeof p, "%s/encoder.json", path);
    if (stat(p, &sb) == 0) return load_gpt2_dir(path, out);
    snprintf(p, sizeof p, "%s/tokenizer.model", path);
    if (stat(p, &sb) == 0) return lmf_tokenizer_load_spm_model(p, out);
    return lmf_fail(LMF_ERR_IO, "%s: folder has no tokenizer.json, encoder.json + vocab.bpe or tokenizer.model", path);
}

/* ---- save ------------------------------------------------------------------------------------------------------ */

/* Text of token id as tokenizer.json spells it: byte-level for NORMAL tokens, literal for the others. */
static char *token_text(const lmf_tokenizer *tok, int32_t id) {
    const lmf_bpe *m = &tok->bpe;
    size_t n = m->off[id + 1] - m->off[id];
    char *t = lmf_xmalloc(2 * n + 1);
    if (m->type[id] == LMF_TOKEN_NORMAL) n = lmf_bytelevel_encode(m->bytes + m->off[id], n, t);
    else memcpy(t, m->bytes + m->off[id], n);
    t[n] = 0;
    return t;
}

static cJSON *bytelevel_node(int use_regex) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "ByteLevel");
    cJSON_AddBoolToObject(b, "add_prefix_space", 0);
    cJSON_AddBoolToObject(b, "trim_offsets", 1);
    cJSON_AddBoolToObject(b, "use_regex", use_regex);
    return b;
}

static cJSON *pretok_node(const lmf_tokenizer *tok) {
    const lmf_pretokenizer *p = &tok->pre;
    if (p->kind == LMF_PRETOK_GPT2) return bytelevel_node(1);
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddItemToObject(seq, "pretokenizers", list);
    if (p->kind == LMF_PRETOK_SMOLLM) {
        cJSON *dg = cJSON_CreateObject();
        cJSON_AddStringToObject(dg, "type", "Digits");
        cJSON_AddBoolToObject(dg, "individual_digits", 1);
        cJSON_AddItemToArray(list, dg);
        cJSON_AddItemToArray(list, bytelevel_node(1));
        return seq;
    }
    for (int i = 0; i < p->n_stages; i++) {
        cJSON *sp = cJSON_CreateObject(), *pat = cJSON_CreateObject();
        cJSON_AddStringToObject(sp, "type", "Split");
        cJSON_AddStringToObject(pat, "Regex", p->pattern[i]);
        cJSON_AddItemToObject(sp, "pattern", pat);
        cJSON_AddStringToObject(sp, "behavior", "Isolated");
        cJSON_AddBoolToObject(sp, "invert", 0);
        cJSON_AddItemToArray(list, sp);
    }
    cJSON_AddItemToArray(list, bytelevel_node(0));
    return seq;
}

/* Prints root (and frees it) into path, atomically. */
static lmf_status write_json(cJSON *root, const char *path) {
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    if (!json) return lmf_fail(LMF_ERR_IO, "%s: out of memory printing JSON", path);
    const void *parts[] = {json, "\n"};
    size_t sizes[] = {strlen(json), 1};
    lmf_status s = lmf_write_file_atomic(path, parts, sizes, 2);
    free(json);
    return s;
}

/* A tokenizer.json's first keys, with its empty added_tokens array in *added. */
static cJSON *json_root(cJSON **added) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    *added = cJSON_AddArrayToObject(root, "added_tokens");
    return root;
}

/* One entry of added_tokens. */
static void add_token(cJSON *added, const lmf_tokenizer *tok, int32_t id, const char *content, int special) {
    unsigned strip = tok->strip ? tok->strip[id] : 0;
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", id);
    cJSON_AddStringToObject(a, "content", content);
    cJSON_AddBoolToObject(a, "single_word", 0);
    cJSON_AddBoolToObject(a, "lstrip", (strip & LMF_STRIP_LEFT) != 0);
    cJSON_AddBoolToObject(a, "rstrip", (strip & LMF_STRIP_RIGHT) != 0);
    cJSON_AddBoolToObject(a, "normalized", 0);
    cJSON_AddBoolToObject(a, "special", special);
    cJSON_AddItemToArray(added, a);
}

static cJSON *typed(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

/* The merges that make Hugging Face's BPE tokenize as SentencePiece's scores do: every split of every piece into
 * two pieces, ranked by the piece's score (highest first; ties by id). Both then merge the same pair at every step:
 * SentencePiece the adjacent pair that spells the best piece, BPE the adjacent pair of lowest rank, which is a split
 * of the same piece (the leftmost on a tie in both). *n receives the count; pairs of ids, a then b. */
static int32_t *derive_merges(const lmf_spm *sp, int32_t *n) {
    lmf_keyed *order = lmf_xmalloc(((size_t)sp->n_vocab + 1) * sizeof *order);
    int32_t k = 0;
    for (int32_t i = 0; i < sp->n_vocab; i++) {
        if (sp->kind[i] != LMF_SPM_NORMAL && sp->kind[i] != LMF_SPM_USER) continue;
        uint32_t b;
        memcpy(&b, &sp->score[i], 4);
        uint32_t asc = b >> 31 ? ~b : b | 0x80000000u; /* the float's order as an unsigned one */
        order[k++] = (lmf_keyed){~(uint64_t)asc, i};
    }
    qsort(order, (size_t)k, sizeof *order, lmf_by_key);
    size_t cap = 1024, m = 0;
    int32_t *out = lmf_xmalloc(cap * sizeof *out);
    for (int32_t j = 0; j < k; j++) {
        int32_t p = (int32_t)order[j].index;
        const char *t = sp->text + sp->off[p];
        uint32_t len = sp->off[p + 1] - sp->off[p];
        for (uint32_t c = 1; c < len; c++) {
            if (((uint8_t)t[c] & 0xC0) == 0x80) continue; /* splits between characters only */
            int32_t a = lmf_spm_lookup(sp, t, c), b = lmf_spm_lookup(sp, t + c, len - c);
            if (a < 0 || b < 0) continue;
            if (m + 2 > cap) cap *= 2, out = lmf_xrealloc(out, cap * sizeof *out);
            out[m++] = a, out[m++] = b;
        }
    }
    free(order);
    *n = (int32_t)(m / 2);
    return out;
}

/* A SentencePiece tokenizer as Hugging Face's Llama form: byte_fallback BPE with its merges (those it was read
 * with, or derive_merges' for a GGUF vocabulary), the Prepend + Replace normalizer or the Metaspace pre-tokenizer
 * it was read with, transformers' decoder. */
static lmf_status save_spm_json(const lmf_tokenizer *tok, const char *path) {
    const lmf_spm *sp = tok->spm;
    int32_t n_merges, *derived = NULL;
    const int32_t *pairs;
    if (sp->merges) pairs = sp->merges->merges, n_merges = sp->merges->n_merges;
    else pairs = derived = derive_merges(sp, &n_merges);
    cJSON *added, *root = json_root(&added);
    for (int32_t i = 0; i < sp->n_vocab; i++) {
        int k = sp->kind[i];
        if (k != LMF_SPM_CONTROL && k != LMF_SPM_USER && k != LMF_SPM_UNKNOWN) continue;
        char *t = strndup(sp->text + sp->off[i], sp->off[i + 1] - sp->off[i]);
        add_token(added, tok, i, t, k != LMF_SPM_USER);
        free(t);
    }
    const char *mark = "\xe2\x96\x81", *scheme = sp->prefix == LMF_SPM_PREFIX_ALWAYS ? "always"
                                                : sp->prefix == LMF_SPM_PREFIX_FIRST ? "first" : "never";
    if (sp->metaspace) {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON *pt = typed("Metaspace");
        cJSON_AddStringToObject(pt, "replacement", mark);
        cJSON_AddStringToObject(pt, "prepend_scheme", scheme);
        cJSON_AddBoolToObject(pt, "split", sp->split_marks);
        cJSON_AddItemToObject(root, "pre_tokenizer", pt);
    } else {
        cJSON *norm = typed("Sequence"), *list = cJSON_AddArrayToObject(norm, "normalizers");
        if (sp->prefix != LMF_SPM_PREFIX_NEVER) {
            cJSON *pre = typed("Prepend");
            cJSON_AddStringToObject(pre, "prepend", mark);
            cJSON_AddItemToArray(list, pre);
        }
        cJSON *rep = typed("Replace");
        cJSON_AddItemToObject(cJSON_AddObjectToObject(rep, "pattern"), "String", cJSON_CreateString(" "));
        cJSON_AddStringToObject(rep, "content", mark);
        cJSON_AddItemToArray(list, rep);
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON_AddNullToObject(root, "pre_tokenizer");
    }
    /* transformers' Llama decoder in both forms (Metaspace's own decoder knows no byte tokens) */
    cJSON *decoder = typed("Sequence"), *dl = cJSON_AddArrayToObject(decoder, "decoders"), *r = typed("Replace");
    cJSON_AddItemToObject(cJSON_AddObjectToObject(r, "pattern"), "String", cJSON_CreateString(mark));
    cJSON_AddStringToObject(r, "content", " ");
    cJSON_AddItemToArray(dl, r);
    cJSON_AddItemToArray(dl, typed("ByteFallback"));
    cJSON_AddItemToArray(dl, typed("Fuse"));
    if (sp->prefix != LMF_SPM_PREFIX_NEVER) {
        cJSON *st = typed("Strip");
        cJSON_AddStringToObject(st, "content", " ");
        cJSON_AddNumberToObject(st, "start", 1);
        cJSON_AddNumberToObject(st, "stop", 0);
        cJSON_AddItemToArray(dl, st);
    }
    cJSON_AddNullToObject(root, "post_processor");
    cJSON_AddItemToObject(root, "decoder", decoder);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    if (sp->unk >= 0) {
        char *t = strndup(sp->text + sp->off[sp->unk], sp->off[sp->unk + 1] - sp->off[sp->unk]);
        cJSON_AddStringToObject(model, "unk_token", t);
        free(t);
    } else {
        cJSON_AddNullToObject(model, "unk_token");
    }
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", sp->fuse_unk);
    cJSON_AddBoolToObject(model, "byte_fallback", 1);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int32_t i = 0; i < sp->n_vocab; i++) {
        if (sp->kind[i] == LMF_SPM_UNUSED) continue;
        char *t = strndup(sp->text + sp->off[i], sp->off[i + 1] - sp->off[i]);
        cJSON_AddNumberToObject(vocab, t, i);
        free(t);
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (int32_t r = 0; r < n_merges; r++) {
        cJSON *pair = cJSON_CreateArray();
        for (int k = 0; k < 2; k++) {
            int32_t id = pairs[2 * r + k];
            char *t = strndup(sp->text + sp->off[id], sp->off[id + 1] - sp->off[id]);
            cJSON_AddItemToArray(pair, cJSON_CreateString(t));
            free(t);
        }
        cJSON_AddItemToArray(merges, pair);
    }
    free(derived);
    return write_json(root, path);
}

lmf_status lmf_tokenizer_save(const lmf_tokenizer *tok, const char *path) {
    if (tok->spm) return save_spm_json(tok, path);
    const lmf_bpe *m = &tok->bpe;
    cJSON *added, *root = json_root(&added);
    for (int32_t i = 0; i < m->n_vocab; i++) {
        if (m->type[i] != LMF_TOKEN_CONTROL && m->type[i] != LMF_TOKEN_USER) continue;
        char *t = token_text(tok, i);
        add_token(added, tok, i, t, m->type[i] == LMF_TOKEN_CONTROL);
        free(t);
    }
    if (tok->nfc) cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "normalizer"), "type", "NFC");
    else cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pretok_node(tok));
    cJSON *post = bytelevel_node(1);
    cJSON_ReplaceItemInObject(post, "trim_offsets", cJSON_CreateBool(0));
    cJSON_AddItemToObject(root, "post_processor", post);
    cJSON_AddItemToObject(root, "decoder", bytelevel_node(1));
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", m->ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int32_t i = 0; i < m->n_vocab; i++) {
        if (m->type[i] == LMF_TOKEN_UNUSED) continue;
        char *t = token_text(tok, i);
        cJSON_AddNumberToObject(vocab, t, i);
        free(t);
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (int32_t r = 0; r < m->n_merges; r++) {
        char *a = token_text(tok, m->merges[2 * r]), *b = token_text(tok, m->merges[2 * r + 1]);
        size_t la = strlen(a), lb = strlen(b);
        char *ab = lmf_xmalloc(la + lb + 2);
        memcpy(ab, a, la);
        ab[la] = ' ';
        memcpy(ab + la + 1, b, lb + 1);
        cJSON_AddItemToArray(merges, cJSON_CreateString(ab));
        free(a), free(b), free(ab);
    }
    return write_json(root, path);
}
