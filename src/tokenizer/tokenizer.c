/* tokenizer.c — building a tokenizer, encoding (special tokens, pre-tokenization, a pre-token cache, BPE),
 * decoding, and the streaming encoder and decoder. See tokenizer.h and docs/tokenizer.md. */
#include "tokenizer/tokenizer.h"
#include "core/alloc.h"
#include "core/sort.h"
#include "core/status.h"
#include "tokenizer/bytelevel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable outputs ---------------------------------------------------------------------------------------- */

static void ids_reserve(lmf_ids *out, size_t extra) {
    if (out->len + extra <= out->cap) return;
    size_t c = out->cap ? out->cap : 64;
    while (c < out->len + extra) c *= 2;
    int32_t *p = realloc(out->data, c * sizeof *p);
    if (!p) {
        fprintf(stderr, "lmforge: out of memory (%zu bytes for token ids)\n", c * sizeof *p);
        abort();
    }
    out->data = p, out->cap = c;
}

void lmf_ids_push(lmf_ids *out, const int32_t *ids, size_t n) {
    ids_reserve(out, n);
    memcpy(out->data + out->len, ids, n * sizeof *ids);
    out->len += n;
}

static void text_reserve(lmf_text *out, size_t extra) {
    if (out->len + extra + 1 <= out->cap) return;
    size_t c = out->cap ? out->cap : 256;
    while (c < out->len + extra + 1) c *= 2;
    char *p = realloc(out->data, c);
    if (!p) {
        fprintf(stderr, "lmforge: out of memory (%zu bytes for text)\n", c);
        abort();
    }
    out->data = p, out->cap = c;
}

void lmf_text_push(lmf_text *out, const void *bytes, size_t n) {
    text_reserve(out, n);
    if (n) memcpy(out->data + out->len, bytes, n);
    out->len += n;
    out->data[out->len] = 0;
}

/* ---- the pre-token cache --------------------------------------------------------------------------------------- */

/* Most pieces of real text are common words: remembering their ids skips the merge loop. Pieces up to
 * CACHE_KEY_MAX bytes are cached; when the table is 1/2 full or the arenas are full everything is dropped (simple,
 * and the common words come straight back). */
#define CACHE_SLOTS (1u << 17)
#define CACHE_KEY_MAX 48
#define CACHE_KEY_ARENA (4u << 20)
#define CACHE_ID_ARENA (1u << 20)
/* Streaming: bytes before the end of the text held within which a pre-token piece may still change when more text
 * comes. A regex alternative can fail only for want of the text after the end: GPT-2's and Llama-3's contractions
 * ('ll, 're: 3 bytes, "we'l" + "l"), a lookahead (\s+(?!\S): 1 character). 16 bytes cover the built-in patterns
 * with room; a tokenizer.json pattern that looks further ahead than that could split a stream differently. */
#define STREAM_LOOKBACK 16

typedef struct {
    uint64_t hash; /* 0 = free */
    uint32_t koff, ioff;
    uint16_t klen, nid;
} cache_slot;

struct lmf_enc_state {
    lmf_pretok_scratch pre;
    lmf_bpe_scratch bpe;
    lmf_spm_scratch spm;
    cache_slot *slots;
    uint32_t used;
    uint8_t *keys;
    uint32_t keys_len;
    int32_t *ids;
    uint32_t ids_len;
    /* while encoding */
    const lmf_tokenizer *tok;
    lmf_ids *out;
    /* streaming: pieces of the last segment, collected before any is encoded */
    size_t (*pieces)[3];
    size_t n_pieces, pieces_cap;
    lmf_status err; /* the first failed split (a pattern over its match limit): the rest of the text is skipped */
    int at_start;   /* nothing of the text encoded yet (a SentencePiece "first" prefix goes only there) */
    lmf_text norm;  /* an NFC tokenizer's normalized input */
};

static lmf_enc_state *state_new(const lmf_tokenizer *tok) {
    lmf_enc_state *st = lmf_xcalloc(1, sizeof *st);
    lmf_pretok_scratch_init(&st->pre);
    st->slots = lmf_xcalloc(CACHE_SLOTS, sizeof *st->slots);
    st->keys = lmf_xmalloc(CACHE_KEY_ARENA);
    st->ids = lmf_xmalloc(CACHE_ID_ARENA * sizeof(int32_t));
    st->tok = tok;
    return st;
}

static void state_free(lmf_enc_state *st) {
    if (!st) return;
    lmf_pretok_scratch_destroy(&st->pre);
    lmf_bpe_scratch_destroy(&st->bpe);
    lmf_spm_scratch_destroy(&st->spm);
    free(st->slots);
    free(st->keys);
    free(st->ids);
    free(st->pieces);
    free(st->norm.data);
    free(st);
}

static lmf_enc_state *state_acquire(const lmf_tokenizer *tok) {
    /* The spare slot is internal mutable state of a logically const tokenizer, guarded by atomics. */
    lmf_enc_state *st = atomic_exchange(&((lmf_tokenizer *)tok)->spare, NULL);
    return st ? st : state_new(tok);
}

static void state_release(const lmf_tokenizer *tok, lmf_enc_state *st) {
    lmf_enc_state *expected = NULL;
    if (!atomic_compare_exchange_strong(&((lmf_tokenizer *)tok)->spare, &expected, st)) state_free(st);
}

static void cache_clear(lmf_enc_state *st) {
    memset(st->slots, 0, CACHE_SLOTS * sizeof *st->slots);
    st->used = st->keys_len = st->ids_len = 0;
}

/* The ids of one piece (a pre-token, or a SentencePiece word chunk), at most n. */
static size_t merge_piece(lmf_enc_state *st, const uint8_t *s, size_t n, int32_t *out) {
    const lmf_tokenizer *tok = st->tok;
    if (tok->spm) return lmf_spm_encode_chunk(tok->spm, &st->spm, s, n, out);
    return lmf_bpe_encode_piece(&tok->bpe, &st->bpe, s, n, out);
}

/* Encodes one piece through the cache, appending to st->out. */
static void encode_piece(lmf_enc_state *st, const uint8_t *s, size_t n) {
    lmf_ids *out = st->out;
    ids_reserve(out, n);
    if (n > CACHE_KEY_MAX) {
        out->len += merge_piece(st, s, n, out->data + out->len);
        return;
    }
    uint64_t h = lmf_hash_bytes(s, n) | 1;
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    for (;;) {
        cache_slot *c = &st->slots[i];
        if (!c->hash) break;
        if (c->hash == h && c->klen == n && !memcmp(st->keys + c->koff, s, n)) {
            memcpy(out->data + out->len, st->ids + c->ioff, c->nid * sizeof(int32_t));
            out->len += c->nid;
            return;
        }
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
    size_t k = merge_piece(st, s, n, out->data + out->len);
    if (st->used >= CACHE_SLOTS / 2 || st->keys_len + n > CACHE_KEY_ARENA || st->ids_len + k > CACHE_ID_ARENA) {
        cache_clear(st);
        i = (uint32_t)h & (CACHE_SLOTS - 1);
    }
    cache_slot *c = &st->slots[i];
    c->hash = h, c->koff = st->keys_len, c->klen = (uint16_t)n, c->ioff = st->ids_len, c->nid = (uint16_t)k;
    memcpy(st->keys + st->keys_len, s, n);
    memcpy(st->ids + st->ids_len, out->data + out->len, k * sizeof(int32_t));
    st->keys_len += (uint32_t)n, st->ids_len += (uint32_t)k, st->used++;
    out->len += k;
}

static void on_piece(void *ctx, const uint8_t *text, size_t s, size_t e, size_t top) {
    (void)top;
    encode_piece(ctx, text + s, e - s);
}

static void on_piece_collect(void *ctx, const uint8_t *text, size_t s, size_t e, size_t top) {
    lmf_enc_state *st = ctx;
    if (st->n_pieces == st->pieces_cap) {
        st->pieces_cap = st->pieces_cap ? 2 * st->pieces_cap : 256;
        st->pieces = lmf_xrealloc(st->pieces, st->pieces_cap * sizeof *st->pieces);
    }
    st->pieces[st->n_pieces][0] = s, st->pieces[st->n_pieces][1] = e, st->pieces[st->n_pieces][2] = top;
    st->n_pieces++;
}

/* ---- special tokens -------------------------------------------------------------------------------------------- */

static inline int bit(const uint8_t *set, uint8_t b) { return set[b >> 3] >> (b & 7) & 1; }

/* Leftmost (then longest) special token in text[from, start_end) that fits in text[.., n): returns its position
 * or n, with *id and *len. */
static size_t find_special(const lmf_tokenizer *tok, const uint8_t *text, size_t from, size_t start_end, size_t n,
                           int allow_control, int32_t *id, size_t *len) {
    const uint8_t *set = allow_control ? tok->first_all : tok->first_user;
    const lmf_bpe *m = &tok->bpe;
    for (size_t p = from; p < start_end; p++) {
        if (!bit(set, text[p])) continue;
        for (int k = 0; k < tok->n_special; k++) { /* longest first: the first hit is the longest */
            int32_t t = tok->special[k];
            if (!allow_control && m->type[t] != LMF_TOKEN_USER) continue;
            size_t l = m->off[t + 1] - m->off[t];
            if (l <= n - p && !memcmp(text + p, m->bytes + m->off[t], l)) {
                *id = t, *len = l;
                return p;
            }
        }
    }
    return n;
}

/* Length of the longest suffix of text[0, n) that is a proper prefix of an active special token. */
static size_t special_prefix_tail(const lmf_tokenizer *tok, const uint8_t *text, size_t n, int allow_control) {
    size_t best = 0;
    const lmf_bpe *m = &tok->bpe;
    for (int k = 0; k < tok->n_special; k++) {
        int32_t t = tok->special[k];
        if (!allow_control && m->type[t] != LMF_TOKEN_USER) continue;
        size_t l = m->off[t + 1] - m->off[t];
        for (size_t j = (l - 1 < n ? l - 1 : n); j > best; j--)
            if (!memcmp(text + n - j, m->bytes + m->off[t], j)) {
                best = j;
                break;
            }
    }
    return best;
}

static int specials_active(const lmf_tokenizer *tok, unsigned flags) {
    return (flags & LMF_ENCODE_ALLOW_SPECIAL) ? tok->n_special > 0 : tok->has_user;
}

static unsigned strip_of(const lmf_tokenizer *tok, int32_t id) { return tok->strip ? tok->strip[id] : 0; }
static int is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); } /* C's isspace */

/* Unicode's White_Space characters beyond ASCII, in UTF-8: U+0085, U+00A0, U+1680, U+2000-200A, U+2028, U+2029,
 * U+202F, U+205F, U+3000 */
static int wide_space(const uint8_t *s, size_t n) {
    if (n == 2) return s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0);
    if (n != 3) return 0;
    if (s[0] == 0xe1) return s[1] == 0x9a && s[2] == 0x80;
    if (s[0] == 0xe3) return s[1] == 0x80 && s[2] == 0x80;
    if (s[0] != 0xe2) return 0;
    if (s[1] == 0x81) return s[2] == 0x9f;
    return s[1] == 0x80 && (s[2] <= 0x8a || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf) && s[2] >= 0x80;
}

/* The bytes of the whitespace character that starts s[0, n) (0: none): C's isspace, with unicode White_Space */
static size_t space_at(const uint8_t *s, size_t n, int unicode) {
    if (n && is_space(s[0])) return 1;
    for (size_t k = 2; unicode && k <= 3 && k <= n; k++)
        if (wide_space(s, k)) return k;
    return 0;
}

/* Whether s[0, n) (n < 3) could begin a wide whitespace character: a streamed text's end, to wait for */
static int space_prefix(const uint8_t *s, size_t n) {
    if (n == 0 || n > 2) return 0;
    if (n == 1) return s[0] == 0xc2 || (s[0] >= 0xe1 && s[0] <= 0xe3);
    return (s[0] == 0xe1 && s[1] == 0x9a) || (s[0] == 0xe3 && s[1] == 0x80) || (s[0] == 0xe2 && (s[1] == 0x80 || s[1] == 0x81));
}

/* text[0, n) without the whitespace at its end (a left-stripping special token follows) */
static size_t trim_end(const lmf_tokenizer *tok, const uint8_t *text, size_t n) {
    for (;;) {
        if (n && is_space(text[n - 1])) n--;
        else if (tok->strip_unicode && n >= 2 && wide_space(text + n - 2, 2)) n -= 2;
        else if (tok->strip_unicode && n >= 3 && wide_space(text + n - 3, 3)) n -= 3;
        else return n;
    }
}

/* The whitespace text[pos, n) starts with, skipped (a right-stripping special token came before it) */
static size_t skip_space(const lmf_tokenizer *tok, const uint8_t *text, size_t pos, size_t n) {
    for (size_t k; pos < n && (k = space_at(text + pos, n - pos, tok->strip_unicode)) > 0;) pos += k;
    return pos;
}

/* Where the plain text text[pos, p) before a special token (strip: its LMF_STRIP_*) ends */
static size_t plain_end(const lmf_tokenizer *tok, const uint8_t *text, size_t pos, size_t p, unsigned strip) {
    return strip & LMF_STRIP_LEFT ? pos + trim_end(tok, text + pos, p - pos) : p;
}

void lmf_tokenizer_set_strip(lmf_tokenizer *tok, int32_t id, unsigned flags) {
    if (id < 0 || id >= tok->bpe.n_vocab) return;
    if (!tok->strip) tok->strip = lmf_xcalloc((size_t)tok->bpe.n_vocab, 1);
    tok->strip[id] = (uint8_t)flags;
    if (flags & LMF_STRIP_LEFT) tok->lstrip = 1;
}

/* ---- build / free / queries ------------------------------------------------------------------------------------ */

/* The special-token list of a tokenizer whose token table is built; frees tok on failure. */
static lmf_status specials_init(lmf_tokenizer *tok, const char *origin, lmf_tokenizer **out) {
    const lmf_bpe *m = &tok->bpe;
    lmf_status s = LMF_OK;
    tok->special = lmf_xmalloc(sizeof(int32_t) * ((size_t)m->n_vocab + 1));
    for (int32_t i = 0; i < m->n_vocab; i++) {
        if (m->type[i] != LMF_TOKEN_CONTROL && m->type[i] != LMF_TOKEN_USER) continue;
        if (m->off[i + 1] == m->off[i]) continue; /* an empty text cannot be matched */
        tok->special[tok->n_special++] = i;
        uint8_t b = m->bytes[m->off[i]];
        tok->first_all[b >> 3] |= (uint8_t)(1u << (b & 7));
        if (m->type[i] == LMF_TOKEN_USER) {
            tok->first_user[b >> 3] |= (uint8_t)(1u << (b & 7));
            tok->has_user = 1;
        }
    }
    /* special tokens are kept longest text first (so the first hit at a position is the longest), ties by id */
    lmf_keyed *keys = lmf_xmalloc(sizeof *keys * ((size_t)tok->n_special + 1));
    for (int k = 0; k < tok->n_special; k++) {
        int32_t t = tok->special[k];
        keys[k] = (lmf_keyed){~(uint64_t)(m->off[t + 1] - m->off[t]), t};
    }
    qsort(keys, (size_t)tok->n_special, sizeof *keys, lmf_by_key);
    for (int k = 0; k < tok->n_special; k++) tok->special[k] = (int32_t)keys[k].index;
    free(keys);
    for (int k = 1; k < tok->n_special; k++) {
        int32_t a = tok->special[k - 1], b = tok->special[k];
        uint32_t l = m->off[b + 1] - m->off[b];
        if (m->off[a + 1] - m->off[a] == l && !memcmp(m->bytes + m->off[a], m->bytes + m->off[b], l)) {
            s = lmf_fail(LMF_ERR_FORMAT, "%s: special tokens %d and %d have the same text \"%.*s\"", origin,
                         a < b ? a : b, a < b ? b : a, (int)(l > 60 ? 60 : l), (const char *)m->bytes + m->off[b]);
            lmf_tokenizer_free(tok);
            return s;
        }
    }
    *out = tok;
    return LMF_OK;
}

lmf_status lmf_tokenizer_build(const lmf_tokenizer_def *def, const char *origin, lmf_tokenizer **out) {
    *out = NULL;
    if (!origin) origin = "tokenizer";
    lmf_tokenizer *tok = lmf_xcalloc(1, sizeof *tok);
    atomic_init(&tok->spare, NULL);
    lmf_status s = lmf_bpe_build(&tok->bpe, def, origin);
    if (s != LMF_OK) {
        free(tok);
        return s;
    }
    s = lmf_pretok_init(&tok->pre, def->pretok, def->patterns, def->n_patterns, origin);
    if (s != LMF_OK) {
        lmf_bpe_destroy(&tok->bpe);
        free(tok);
        return s;
    }
    tok->nfc = def->nfc != 0;
    return specials_init(tok, origin, out);
}

lmf_status lmf_tokenizer_build_spm(int n, const char *const *tokens, const float *scores, const uint8_t *kinds,
                                   int prefix, int32_t unk, const char *origin, lmf_tokenizer **out) {
    *out = NULL;
    if (!origin) origin = "tokenizer";
    lmf_tokenizer *tok = lmf_xcalloc(1, sizeof *tok);
    atomic_init(&tok->spare, NULL);
    tok->spm = lmf_xcalloc(1, sizeof *tok->spm);
    lmf_status s = lmf_spm_build(tok->spm, &tok->bpe, n, tokens, scores, kinds, prefix, unk, origin);
    if (s != LMF_OK) {
        free(tok->spm);
        free(tok);
        return s;
    }
    return specials_init(tok, origin, out);
}

void lmf_tokenizer_free(lmf_tokenizer *tok) {
    if (!tok) return;
    state_free(atomic_load(&tok->spare));
    lmf_bpe_destroy(&tok->bpe);
    lmf_pretok_destroy(&tok->pre);
    if (tok->spm) lmf_spm_destroy(tok->spm);
    free(tok->spm);
    free(tok->special);
    free(tok->strip);
    free(tok);
}

int lmf_tokenizer_vocab_size(const lmf_tokenizer *tok) { return tok->bpe.n_vocab; }
lmf_pretok lmf_tokenizer_pretok(const lmf_tokenizer *tok) { return tok->pre.kind; }
int lmf_tokenizer_nfc(const lmf_tokenizer *tok) { return tok->nfc; }
int lmf_tokenizer_sentencepiece(const lmf_tokenizer *tok) { return tok->spm != NULL; }

const char *lmf_tokenizer_token_bytes(const lmf_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->bpe.n_vocab) return NULL;
    *len = tok->bpe.off[id + 1] - tok->bpe.off[id];
    return (const char *)tok->bpe.bytes + tok->bpe.off[id];
}

lmf_token_type lmf_tokenizer_token_type(const lmf_tokenizer *tok, int32_t id) {
    if (id < 0 || id >= tok->bpe.n_vocab) return LMF_TOKEN_UNUSED;
    return (lmf_token_type)tok->bpe.type[id];
}

int32_t lmf_tokenizer_token_id(const lmf_tokenizer *tok, const char *text) {
    size_t n = strlen(text);
    const lmf_bpe *m = &tok->bpe;
    for (int k = 0; k < tok->n_special; k++) {
        int32_t t = tok->special[k];
        if (m->off[t + 1] - m->off[t] == n && !memcmp(m->bytes + m->off[t], text, n)) return t;
    }
    if (tok->spm) {
        int32_t id = lmf_spm_lookup(tok->spm, text, n);
        int b = id < 0 ? lmf_spm_byte_token(text, n) : -1;
        return b >= 0 ? tok->spm->byte_id[b] : id;
    }
    uint8_t *raw = lmf_xmalloc(n + 1);
    size_t bad;
    long l = lmf_bytelevel_decode(text, n, raw, &bad);
    int32_t id = l > 0 ? lmf_bpe_lookup(m, raw, (size_t)l) : -1;
    free(raw);
    return id;
}

/* ---- encode ---------------------------------------------------------------------------------------------------- */

static void encode_plain(lmf_enc_state *st, const uint8_t *text, size_t n) {
    const lmf_spm *spm = st->tok->spm;
    if (spm) { /* no pre-tokenizer: the escaped fragment, a word at a time where that is exact */
        if (!n) return;
        size_t len;
        const uint8_t *buf = lmf_spm_escape(spm, &st->spm, text, n, st->at_start, &len);
        st->at_start = 0;
        for (size_t at = 0, end; at < len; at = end) {
            end = lmf_spm_chunk_end(spm, buf, at, len);
            encode_piece(st, buf + at, end - at);
        }
        return;
    }
    if (st->err == LMF_OK) st->err = lmf_pretok_split(&st->tok->pre, &st->pre, text, n, on_piece, st);
}

/* Encodes text[0, n); specials per flags. */
static void encode_with_specials(lmf_enc_state *st, const uint8_t *text, size_t n, unsigned flags) {
    const lmf_tokenizer *tok = st->tok;
    if (!specials_active(tok, flags)) {
        encode_plain(st, text, n);
        return;
    }
    int allow = (flags & LMF_ENCODE_ALLOW_SPECIAL) != 0;
    size_t pos = 0;
    while (pos < n) {
        int32_t id = -1;
        size_t len = 0, p = find_special(tok, text, pos, n, n, allow, &id, &len);
        unsigned strip = p < n ? strip_of(tok, id) : 0;
        encode_plain(st, text + pos, plain_end(tok, text, pos, p, strip) - pos);
        if (p == n || st->err != LMF_OK) break;
        lmf_ids_push(st->out, &id, 1);
        st->at_start = 0;
        pos = p + len;
        if (strip & LMF_STRIP_RIGHT) pos = skip_space(tok, text, pos, n);
    }
}

lmf_status lmf_tokenizer_encode(const lmf_tokenizer *tok, const char *text, size_t len, unsigned flags,
                                lmf_ids *out) {
    lmf_enc_state *st = state_acquire(tok);
    st->out = out, st->err = LMF_OK, st->at_start = 1;
    const uint8_t *t = (const uint8_t *)text;
    /* the whole input is normalized before special tokens are matched (their texts are NFC themselves) */
    if (tok->nfc && !lmf_nfc_identity(t, len)) {
        st->norm.len = 0;
        lmf_nfc_append(t, len, &st->norm);
        t = (const uint8_t *)st->norm.data, len = st->norm.len;
    }
    encode_with_specials(st, t, len, flags);
    lmf_status s = st->err;
    st->out = NULL, st->err = LMF_OK;
    state_release(tok, st);
    return s;
}

/* ---- decode ---------------------------------------------------------------------------------------------------- */

static lmf_status check_ids(const lmf_tokenizer *tok, const int32_t *ids, size_t n, size_t *bytes) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->bpe.n_vocab)
            return lmf_fail(LMF_ERR_ARG, "token id %ld at position %zu is outside the vocabulary [0, %d)",
                            (long)ids[i], i, tok->bpe.n_vocab);
        total += tok->bpe.off[ids[i] + 1] - tok->bpe.off[ids[i]];
    }
    *bytes = total;
    return LMF_OK;
}

static void append_tokens(const lmf_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags, lmf_text *out,
                          size_t total) {
    const lmf_bpe *m = &tok->bpe;
    text_reserve(out, total);
    char *p = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        int32_t t = ids[i];
        if ((flags & LMF_DECODE_SKIP_SPECIAL) && m->type[t] == LMF_TOKEN_CONTROL) continue;
        uint32_t l = m->off[t + 1] - m->off[t];
        memcpy(p, m->bytes + m->off[t], l);
        p += l;
    }
    out->len = (size_t)(p - out->data);
    out->data[out->len] = 0;
}

/* LMF_DECODE_TEXT_START: the space a SentencePiece encoder put before the text, at out->data[start], goes. */
static void strip_prefix_space(const lmf_tokenizer *tok, unsigned flags, lmf_text *out, size_t start) {
    if (!(flags & LMF_DECODE_TEXT_START) || !tok->spm || tok->spm->prefix == LMF_SPM_PREFIX_NEVER) return;
    if (out->len == start || out->data[start] != ' ') return;
    memmove(out->data + start, out->data + start + 1, out->len - start); /* with the NUL */
    out->len--;
}

lmf_status lmf_tokenizer_decode(const lmf_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags, lmf_text *out) {
    size_t total = 0, start = out->len;
    LMF_TRY(check_ids(tok, ids, n, &total));
    append_tokens(tok, ids, n, flags, out, total);
    strip_prefix_space(tok, flags, out, start);
    return LMF_OK;
}

/* ---- streaming encoder ----------------------------------------------------------------------------------------- */

struct lmf_tokenizer_encoder {
    const lmf_tokenizer *tok;
    unsigned flags;
    lmf_enc_state *st; /* owned */
    uint8_t *buf;      /* text not yet final */
    size_t n, cap;
    lmf_text raw;      /* NFC tokenizers: input not yet normalized (its NFC may depend on what follows) */
    int skip_space;    /* a right-stripping special token ended the text so far: whitespace that comes next goes */
};

lmf_tokenizer_encoder *lmf_tokenizer_encoder_create(const lmf_tokenizer *tok, unsigned flags) {
    lmf_tokenizer_encoder *e = lmf_xcalloc(1, sizeof *e);
    e->tok = tok, e->flags = flags;
    e->st = state_new(tok);
    e->st->at_start = 1;
    return e;
}

void lmf_tokenizer_encoder_free(lmf_tokenizer_encoder *e) {
    if (!e) return;
    state_free(e->st);
    free(e->buf);
    free(e->raw.data);
    free(e);
}

/* Encodes what is final in buf and drops it. Not final: an unfinished UTF-8 character or special token at the
 * end, and the last first-stage piece of the trailing text (more text may extend it: "hel" + "lo"). */
static lmf_status encoder_run(lmf_tokenizer_encoder *e, lmf_ids *out, int final) {
    lmf_enc_state *st = e->st;
    const lmf_tokenizer *tok = e->tok;
    st->out = out, st->err = LMF_OK;
    int active = specials_active(tok, e->flags), allow = (e->flags & LMF_ENCODE_ALLOW_SPECIAL) != 0;
    size_t n = e->n, limit = n;
    if (!final) {
        limit -= lmf_utf8_incomplete_tail(e->buf, limit);
        if (active) {
            size_t t = special_prefix_tail(tok, e->buf, n, allow);
            if (n - t < limit) limit = n - t;
            if (tok->lstrip) limit = trim_end(tok, e->buf, limit); /* a left-stripping special token may yet follow */
        }
    }
    size_t pos = 0, consumed = 0;
    for (;;) {
        if (e->skip_space) {
            pos = skip_space(tok, e->buf, pos, n);
            consumed = pos;
            /* all whitespace so far (or the start of a wide one): the next text may bring more */
            if (pos == n || (!final && tok->strip_unicode && space_prefix(e->buf + pos, n - pos))) break;
            e->skip_space = 0;
            if (limit < pos) limit = pos; /* what was held back as a possible special token's start went too */
        }
        int32_t id = -1;
        size_t len = 0, p = active ? find_special(tok, e->buf, pos, limit, n, allow, &id, &len) : n;
        if (p < n) {
            unsigned strip = strip_of(tok, id);
            encode_plain(st, e->buf + pos, plain_end(tok, e->buf, pos, p, strip) - pos);
            lmf_ids_push(out, &id, 1);
            st->at_start = 0;
            pos = consumed = p + len;
            e->skip_space = (strip & LMF_STRIP_RIGHT) != 0;
            continue;
        }
        if (final) {
            encode_plain(st, e->buf + pos, limit - pos);
            consumed = limit;
            break;
        }
        if (tok->spm) { /* a SentencePiece fragment is final only at a special token or the end */
            consumed = pos;
            break;
        }
        st->n_pieces = 0;
        if (st->err == LMF_OK)
            st->err = lmf_pretok_split(&tok->pre, &st->pre, e->buf + pos, limit - pos, on_piece_collect, st);
        if (st->err != LMF_OK) {
            consumed = n;
        } else if (st->n_pieces) {
            /* final: the first-stage pieces before the last one (it may grow: "hel" + "lo") and before any that ends
             * within STREAM_LOOKBACK of the end (an alternative may yet match across it) */
            size_t avail = limit - pos, safe = avail > STREAM_LOOKBACK ? avail - STREAM_LOOKBACK : 0;
            size_t last_top = st->pieces[st->n_pieces - 1][2];
            for (size_t i = st->n_pieces; i-- > 0 && st->pieces[i][1] > safe;)
                if (st->pieces[i][2] < last_top) last_top = st->pieces[i][2];
            for (size_t i = 0; i < st->n_pieces && st->pieces[i][2] < last_top; i++)
                encode_piece(st, e->buf + pos + st->pieces[i][0], st->pieces[i][1] - st->pieces[i][0]);
            consumed = pos + last_top;
        } else {
            consumed = pos;
        }
        break;
    }
    lmf_status s = st->err;
    if (s != LMF_OK) consumed = n; /* the text that failed is dropped with the error: the next feed starts afresh */
    if (consumed < n) memmove(e->buf, e->buf + consumed, n - consumed); /* (buf is NULL until text comes) */
    e->n = n - consumed;
    st->out = NULL, st->err = LMF_OK;
    return s;
}

static void buf_push(lmf_tokenizer_encoder *e, const void *text, size_t len) {
    if (!len) return;
    if (e->n + len > e->cap) {
        size_t c = e->cap ? e->cap : 256;
        while (c < e->n + len) c *= 2;
        e->buf = lmf_xrealloc(e->buf, c);
        e->cap = c;
    }
    memcpy(e->buf + e->n, text, len);
    e->n += len;
}

/* NFC tokenizers: the raw text up to `upto` goes to buf normalized. */
static void raw_to_buf(lmf_tokenizer_encoder *e, size_t upto) {
    const uint8_t *r = (const uint8_t *)e->raw.data;
    if (!upto) return;
    if (lmf_nfc_identity(r, upto)) {
        buf_push(e, r, upto);
    } else {
        lmf_text *nt = &e->st->norm;
        nt->len = 0;
        lmf_nfc_append(r, upto, nt);
        buf_push(e, nt->data, nt->len);
    }
    memmove(e->raw.data, e->raw.data + upto, e->raw.len - upto);
    e->raw.len -= upto;
}

lmf_status lmf_tokenizer_encoder_feed(lmf_tokenizer_encoder *e, const char *text, size_t len, lmf_ids *out) {
    if (e->tok->nfc) {
        lmf_text_push(&e->raw, text, len);
        raw_to_buf(e, lmf_nfc_safe_prefix((const uint8_t *)e->raw.data, e->raw.len));
    } else {
        buf_push(e, text, len);
    }
    lmf_status s = encoder_run(e, out, 0);
    if (s != LMF_OK) e->raw.len = 0; /* dropped with the failed text, as the buffer is */
    return s;
}

lmf_status lmf_tokenizer_encoder_finish(lmf_tokenizer_encoder *e, lmf_ids *out) {
    raw_to_buf(e, e->raw.len);
    lmf_status s = encoder_run(e, out, 1);
    e->n = 0;
    e->st->at_start = 1; /* the next text starts afresh */
    e->skip_space = 0;
    return s;
}

/* ---- streaming decoder ----------------------------------------------------------------------------------------- */

struct lmf_tokenizer_decoder {
    const lmf_tokenizer *tok;
    unsigned flags;
    uint8_t held[4];
    size_t n_held;
    int begun; /* some text has come out (LMF_DECODE_TEXT_START looks at the first byte only) */
};

lmf_tokenizer_decoder *lmf_tokenizer_decoder_create(const lmf_tokenizer *tok, unsigned flags) {
    lmf_tokenizer_decoder *d = lmf_xcalloc(1, sizeof *d);
    d->tok = tok, d->flags = flags;
    return d;
}

void lmf_tokenizer_decoder_free(lmf_tokenizer_decoder *d) { free(d); }

lmf_status lmf_tokenizer_decoder_feed(lmf_tokenizer_decoder *d, const int32_t *ids, size_t n, lmf_text *out) {
    size_t total = 0;
    LMF_TRY(check_ids(d->tok, ids, n, &total));
    size_t start = out->len;
    lmf_text_push(out, d->held, d->n_held);
    append_tokens(d->tok, ids, n, d->flags, out, total);
    if (!d->begun && out->len > start) {
        strip_prefix_space(d->tok, d->flags, out, start);
        d->begun = 1;
    }
    size_t tail = lmf_utf8_incomplete_tail((const uint8_t *)out->data + start, out->len - start);
    memcpy(d->held, out->data + out->len - tail, tail);
    d->n_held = tail;
    out->len -= tail;
    out->data[out->len] = 0;
    return LMF_OK;
}

void lmf_tokenizer_decoder_finish(lmf_tokenizer_decoder *d, lmf_text *out) {
    lmf_text_push(out, d->held, d->n_held);
    d->n_held = 0;
    d->begun = 0;
}
