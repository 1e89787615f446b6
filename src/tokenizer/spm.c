/* spm.c — see spm.h. */
#include "tokenizer/spm.h"
#include "core/alloc.h"
#include "core/status.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/heap.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char SPACE_MARK[3] = {'\xe2', '\x96', '\x81'}; /* U+2581, SentencePiece's space */

int32_t lmf_spm_lookup(const lmf_spm *s, const char *text, size_t n) {
    size_t i = (size_t)lmf_hash_bytes(text, n) & s->mask;
    for (;;) {
        int32_t id = s->slots[i];
        if (id < 0) return -1;
        if (s->off[id + 1] - s->off[id] == n && !memcmp(s->text + s->off[id], text, n)) return id;
        i = (i + 1) & s->mask;
    }
}

/* "<0xAB>" -> 0xAB, or -1. */
static int byte_token(const char *t, size_t n) {
    if (n != 6 || memcmp(t, "<0x", 3) || t[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        int c = t[k], d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int token_type_of(int kind) {
    switch (kind) {
    case LMF_SPM_NORMAL: case LMF_SPM_BYTE: return LMF_TOKEN_NORMAL;
    case LMF_SPM_UNKNOWN: case LMF_SPM_CONTROL: return LMF_TOKEN_CONTROL;
    case LMF_SPM_USER: return LMF_TOKEN_USER;
    default: return LMF_TOKEN_UNUSED;
    }
}

lmf_status lmf_spm_build(lmf_spm *s, lmf_bpe *m, int n, const char *const *tokens, const float *scores,
                         const uint8_t *kinds, int add_space_prefix, int32_t unk, const char *origin) {
    memset(s, 0, sizeof *s);
    memset(m, 0, sizeof *m);
    if (n < 1 || n > (1 << 30) || !tokens)
        return lmf_fail(LMF_ERR_FORMAT, "%s: vocabulary of %d tokens (a SentencePiece model needs 1 to 2^30)", origin, n);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += tokens[i] ? strlen(tokens[i]) : 0;
    if (total > UINT32_MAX - 1) return lmf_fail(LMF_ERR_FORMAT, "%s: token texts total %zu bytes (max 4 GiB)", origin, total);
    s->n_vocab = m->n_vocab = n;
    s->add_space_prefix = add_space_prefix;
    s->unk = unk;
    s->off = lmf_xmalloc(((size_t)n + 1) * sizeof *s->off);
    s->text = lmf_xmalloc(total + 1);
    s->score = lmf_xmalloc((size_t)n * sizeof *s->score);
    s->kind = lmf_xmalloc((size_t)n);
    m->off = lmf_xmalloc(((size_t)n + 1) * sizeof *m->off);
    m->bytes = lmf_xmalloc(total + 1); /* decoded bytes are never longer than the text */
    m->type = lmf_xmalloc((size_t)n);
    for (int b = 0; b < 256; b++) s->byte_id[b] = m->byte_id[b] = -1;
    s->mask = 15;
    while (s->mask + 1 < 2 * (size_t)n) s->mask = 2 * s->mask + 1;
    s->slots = lmf_xmalloc((s->mask + 1) * sizeof *s->slots);
    memset(s->slots, 0xff, (s->mask + 1) * sizeof *s->slots);
    lmf_status st = LMF_OK;
    uint32_t at = 0, dat = 0;
    for (int i = 0; i < n && st == LMF_OK; i++) {
        const char *t = tokens[i] ? tokens[i] : "";
        size_t len = strlen(t);
        int kind = kinds ? kinds[i] : LMF_SPM_NORMAL;
        if (kind == 0) kind = LMF_SPM_NORMAL; /* llama.cpp's "undefined" */
        if (!tokens[i] && kind != LMF_SPM_UNUSED) kind = LMF_SPM_UNUSED;
        if (kind < LMF_SPM_NORMAL || kind > LMF_SPM_BYTE) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: token %d \"%.40s\" has type %d (expected 0..6)", origin, i, t, kind);
            break;
        }
        s->off[i] = at, m->off[i] = dat;
        memcpy(s->text + at, t, len);
        at += (uint32_t)len;
        s->score[i] = scores ? scores[i] : 0.0f;
        s->kind[i] = (uint8_t)kind;
        m->type[i] = (uint8_t)token_type_of(kind);
        if (kind == LMF_SPM_BYTE) {
            int v = byte_token(t, len);
            if (v < 0) st = lmf_fail(LMF_ERR_FORMAT, "%s: token %d \"%.40s\" has the byte type but is not <0xAB>",
                                     origin, i, t);
            else if (s->byte_id[v] >= 0)
                st = lmf_fail(LMF_ERR_FORMAT, "%s: tokens %d and %d are both the byte 0x%02X", origin, s->byte_id[v],
                              i, v);
            else s->byte_id[v] = m->byte_id[v] = i, m->bytes[dat++] = (uint8_t)v, s->has_bytes = 1;
        } else if (kind == LMF_SPM_NORMAL) {
            for (size_t k = 0; k < len;) /* "▁" -> ' ' */
                if (len - k >= 3 && !memcmp(t + k, SPACE_MARK, 3)) m->bytes[dat++] = ' ', k += 3;
                else m->bytes[dat++] = (uint8_t)t[k++];
        } else if (kind != LMF_SPM_UNUSED) {
            memcpy(m->bytes + dat, t, len); /* control, unknown and user pieces read and write as spelled */
            dat += (uint32_t)len;
        }
        if ((kind == LMF_SPM_NORMAL || kind == LMF_SPM_USER) && len) {
            /* the first of two pieces with one text wins (SentencePiece refuses such a model; llama.cpp keeps the
             * last) */
            if (lmf_spm_lookup(s, t, len) < 0) {
                s->off[i + 1] = at; /* the lookup below reads it */
                size_t h = (size_t)lmf_hash_bytes(t, len) & s->mask;
                while (s->slots[h] >= 0) h = (h + 1) & s->mask;
                s->slots[h] = i;
            }
        }
    }
    if (st != LMF_OK) {
        lmf_spm_destroy(s);
        lmf_bpe_destroy(m);
        return st;
    }
    s->off[n] = at, m->off[n] = dat;
    /* words may be encoded apart when no piece holds a space mark after another character (all-mark pieces aside,
     * the runs of spaces Llama's vocabulary has): then no merge ever crosses the start of a word */
    s->split_words = 1;
    for (int i = 0; i < n && s->split_words; i++) {
        if (s->kind[i] != LMF_SPM_NORMAL && s->kind[i] != LMF_SPM_USER) continue;
        const uint8_t *t = (const uint8_t *)s->text + s->off[i];
        size_t len = s->off[i + 1] - s->off[i], marks = 0, inner = 0;
        for (size_t k = 0; k + 3 <= len; k++)
            if (!memcmp(t + k, SPACE_MARK, 3)) marks++, inner |= k > 0;
        if (inner && marks * 3 != len) s->split_words = 0;
    }
    return LMF_OK;
}

void lmf_spm_destroy(lmf_spm *s) {
    LMF_FREE_ALL(s->off, s->text, s->score, s->kind, s->slots);
    memset(s, 0, sizeof *s);
}

void lmf_spm_scratch_destroy(lmf_spm_scratch *sc) {
    LMF_FREE_ALL(sc->buf, sc->sym, sc->heap);
    memset(sc, 0, sizeof *sc);
}

typedef struct {
    uint32_t start, len;
    int32_t prev, next;
} sym;

typedef struct {
    float score;
    int32_t left, right;
    uint32_t len;
} bigram;

/* the highest score first, the leftmost on a tie */
static int bigram_before(const void *a, const void *b) {
    const bigram *x = a, *y = b;
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static void try_pair(const lmf_spm *s, const uint8_t *buf, const sym *sy, int32_t l, int32_t r, bigram *heap,
                     size_t *nh) {
    if (l < 0 || r < 0) return;
    uint32_t len = sy[l].len + sy[r].len;
    int32_t id = lmf_spm_lookup(s, (const char *)buf + sy[l].start, len);
    if (id < 0) return;
    bigram b = {s->score[id], l, r, len};
    lmf_heap_push(heap, nh, sizeof b, &b, bigram_before);
}

/* The characters of one symbol that is no piece: byte tokens, else the unknown token (once per character in a
 * vocabulary without byte tokens, as SentencePiece without byte fallback). */
/* The characters of one symbol that is no piece: byte tokens, else the unknown token (once per character in a
 * vocabulary without byte tokens, as SentencePiece without byte fallback). Writes at most n ids. */
static size_t fallback(const lmf_spm *s, const uint8_t *p, size_t n, int32_t *out) {
    size_t k = 0;
    if (!s->has_bytes) {
        if (s->unk >= 0) out[k++] = s->unk;
        return k;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t id = s->byte_id[p[i]] >= 0 ? s->byte_id[p[i]] : s->unk;
        if (id >= 0) out[k++] = id;
    }
    return k;
}

const uint8_t *lmf_spm_escape(const lmf_spm *s, lmf_spm_scratch *sc, const uint8_t *text, size_t n, size_t *len) {
    size_t cap = 3 * n + 3;
    if (cap > sc->buf_cap) sc->buf = lmf_xrealloc(sc->buf, cap), sc->buf_cap = cap;
    uint8_t *buf = sc->buf;
    size_t l = 0;
    if (s->add_space_prefix) memcpy(buf, SPACE_MARK, 3), l = 3;
    for (size_t i = 0; i < n; i++)
        if (text[i] == ' ') memcpy(buf + l, SPACE_MARK, 3), l += 3;
        else buf[l++] = text[i];
    *len = l;
    return buf;
}

/* characters by their lead byte, as llama.cpp counts them (a stray continuation byte is one) */
static inline size_t char_len(const uint8_t *p, size_t left) {
    static const uint8_t by_high_bits[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t l = by_high_bits[p[0] >> 4];
    return l < left ? l : left;
}

static inline int is_mark(const uint8_t *p, size_t l) { return l == 3 && !memcmp(p, SPACE_MARK, 3); }

size_t lmf_spm_chunk_end(const lmf_spm *s, const uint8_t *buf, size_t from, size_t len) {
    if (!s->split_words) return len;
    size_t l = char_len(buf + from, len - from);
    int prev_mark = is_mark(buf + from, l);
    for (size_t i = from + l; i < len; i += l) {
        l = char_len(buf + i, len - i);
        int mark = is_mark(buf + i, l);
        if (mark && !prev_mark) return i;
        prev_mark = mark;
    }
    return len;
}

size_t lmf_spm_encode_chunk(const lmf_spm *s, lmf_spm_scratch *sc, const uint8_t *buf, size_t len, int32_t *out) {
    if (len + 1 > sc->sym_cap) {
        sc->sym_cap = 2 * len + 16;
        sc->sym = lmf_xrealloc(sc->sym, sc->sym_cap * sizeof(sym));
        free(sc->heap);
        sc->heap_cap = 3 * sc->sym_cap;
        sc->heap = lmf_xmalloc(sc->heap_cap * sizeof(bigram));
    }
    sym *sy = sc->sym;
    bigram *heap = sc->heap;
    int32_t ns = 0;
    for (size_t i = 0, l; i < len; i += l, ns++) {
        l = char_len(buf + i, len - i);
        sy[ns] = (sym){(uint32_t)i, (uint32_t)l, ns - 1, -1};
        if (ns) sy[ns - 1].next = ns;
    }
    size_t nh = 0;
    for (int32_t i = 1; i < ns; i++) try_pair(s, buf, sy, i - 1, i, heap, &nh);
    while (nh) {
        bigram b;
        lmf_heap_pop(heap, &nh, sizeof b, &b, bigram_before);
        sym *L = &sy[b.left], *R = &sy[b.right];
        if (!L->len || !R->len || L->len + R->len != b.len) continue; /* a side has changed since it was queued */
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) sy[R->next].prev = b.left;
        try_pair(s, buf, sy, L->prev, b.left, heap, &nh);
        try_pair(s, buf, sy, b.left, L->next, heap, &nh);
    }
    size_t k = 0;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sy[i].next) {
        int32_t id = lmf_spm_lookup(s, (const char *)buf + sy[i].start, sy[i].len);
        if (id >= 0) out[k++] = id;
        else k += fallback(s, buf + sy[i].start, sy[i].len, out + k);
    }
    return k;
}
