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

int lmf_spm_byte_token(const char *t, size_t n) {
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
                         const uint8_t *kinds, int prefix, int32_t unk, const char *origin) {
    memset(s, 0, sizeof *s);
    memset(m, 0, sizeof *m);
    if (n < 1 || n > (1 << 30) || !tokens)
        return lmf_fail(LMF_ERR_FORMAT, "%s: vocabulary of %d tokens (a SentencePiece model needs 1 to 2^30)", origin, n);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += tokens[i] ? strlen(tokens[i]) : 0;
    if (total > UINT32_MAX - 1) return lmf_fail(LMF_ERR_FORMAT, "%s: token texts total %zu bytes (max 4 GiB)", origin, total);
    s->n_vocab = m->n_vocab = n;
    s->prefix = prefix;
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
            int v = lmf_spm_byte_token(t, len);
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

/* A merge's side: a piece, or a byte token. */
static int32_t merge_side(const lmf_spm *s, const char *t, size_t n) {
    int32_t id = lmf_spm_lookup(s, t, n);
    int b = id < 0 ? lmf_spm_byte_token(t, n) : -1;
    return b >= 0 ? s->byte_id[b] : id;
}

lmf_status lmf_spm_set_merges(lmf_spm *s, lmf_bpe *m, int n, const char *const *merges, const char *origin) {
    if (n < 0 || n >= (1 << 24)) return lmf_fail(LMF_ERR_FORMAT, "%s: %d merges (at most 2^24)", origin, n);
    lmf_bpe_merges_init(m, n);
    char *cat = NULL;
    size_t cap = 0;
    for (int32_t i = 0; i < s->n_vocab; i++) { /* pieces of several characters no merge makes: below every merge */
        size_t chars = 0;
        for (uint32_t k = s->off[i]; k < s->off[i + 1]; k++) chars += ((uint8_t)s->text[k] & 0xC0) != 0x80;
        if (chars > 1 && (s->kind[i] == LMF_SPM_NORMAL || s->kind[i] == LMF_SPM_USER)) s->score[i] = -(float)(1 << 25);
    }
    for (int r = 0; r < n; r++) {
        const char *mg = merges[r], *sp = mg ? strchr(mg, ' ') : NULL;
        if (!sp || sp == mg || !sp[1] || strchr(sp + 1, ' ')) {
            free(cat);
            return lmf_fail(LMF_ERR_FORMAT, "%s: merge %d \"%.60s\": expected two tokens separated by one space",
                            origin, r, mg ? mg : "(null)");
        }
        size_t la = (size_t)(sp - mg), lb = strlen(sp + 1);
        int32_t a = merge_side(s, mg, la), b = merge_side(s, sp + 1, lb), res = -1;
        if (a >= 0 && b >= 0) {
            if (la + lb > cap) cap = 2 * (la + lb), cat = lmf_xrealloc(cat, cap);
            memcpy(cat, mg, la), memcpy(cat + la, sp + 1, lb);
            res = lmf_spm_lookup(s, cat, la + lb);
        }
        if (res < 0) {
            free(cat);
            return lmf_fail(LMF_ERR_FORMAT, "%s: merge %d \"%.60s\": %s", origin, r, mg,
                            a < 0 || b < 0 ? "a side is not a token of the vocabulary"
                                           : "the merged token is not in the vocabulary");
        }
        if (lmf_bpe_merge_add(m, a, b, res) && s->score[res] < -(float)r) s->score[res] = -(float)r;
    }
    free(cat);
    s->merges = m;
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
    uint32_t start, len; /* bytes of the escaped text */
    int32_t prev, next;
    int32_t id;          /* the piece, or -1: a character no piece holds (SentencePiece mode) */
} sym;

typedef struct {
    float score; /* the piece's score, or minus the merge's rank */
    int32_t left, right;
    uint32_t len;
    int32_t res; /* the piece the pair becomes */
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
    bigram b = {0, l, r, len, -1};
    if (s->merges) { /* tokenizer.json: the ranked merge of these two pieces */
        if (sy[l].id < 0 || sy[r].id < 0) return;
        const lmf_bpe_merge_slot *m = lmf_bpe_merge_find(s->merges, sy[l].id, sy[r].id);
        if (!m) return;
        b.score = -(float)m->rank, b.res = m->result;
    } else { /* SentencePiece: the piece spelled by both, whatever their split */
        b.res = lmf_spm_lookup(s, (const char *)buf + sy[l].start, len);
        if (b.res < 0) return;
        b.score = s->score[b.res];
    }
    lmf_heap_push(heap, nh, sizeof b, &b, bigram_before);
}

/* A character no piece holds, as SentencePiece treats it once merging is done: its bytes' tokens, else the
 * unknown token (once per character in a vocabulary without byte tokens). Writes at most n ids. */
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

const uint8_t *lmf_spm_escape(const lmf_spm *s, lmf_spm_scratch *sc, const uint8_t *text, size_t n, int first,
                              size_t *len) {
    size_t cap = 3 * n + 3;
    if (cap > sc->buf_cap) sc->buf = lmf_xrealloc(sc->buf, cap), sc->buf_cap = cap;
    uint8_t *buf = sc->buf;
    size_t l = 0;
    int marked = n && (text[0] == ' ' || (n >= 3 && !memcmp(text, SPACE_MARK, 3)));
    if ((s->prefix == LMF_SPM_PREFIX_ALWAYS || (s->prefix == LMF_SPM_PREFIX_FIRST && first)) && !(s->metaspace && marked))
        memcpy(buf, SPACE_MARK, 3), l = 3;
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
    if (!s->split_words && !s->split_marks) return len;
    size_t l = char_len(buf + from, len - from);
    int prev_mark = is_mark(buf + from, l);
    for (size_t i = from + l; i < len; i += l) {
        l = char_len(buf + i, len - i);
        int mark = is_mark(buf + i, l);
        if (mark && (!prev_mark || s->split_marks)) return i;
        prev_mark = mark;
    }
    return len;
}

/* Appends a symbol; returns the new count. */
static inline int32_t add_sym(sym *sy, int32_t ns, size_t start, size_t len, int32_t id) {
    sy[ns] = (sym){(uint32_t)start, (uint32_t)len, ns - 1, -1, id};
    if (ns) sy[ns - 1].next = ns;
    return ns + 1;
}

/* tokenizer.json's first symbols (Hugging Face's BPE): each character's piece, else its bytes' tokens if all
 * exist, else the unknown token (runs of them fused into one with fuse_unk), else nothing. */
static int32_t hf_symbols(const lmf_spm *s, const uint8_t *buf, size_t len, sym *sy) {
    int32_t ns = 0;
    int prev_unk = 0;
    for (size_t i = 0, l; i < len; i += l) {
        l = char_len(buf + i, len - i);
        int32_t id = lmf_spm_lookup(s, (const char *)buf + i, l);
        int bytes = id < 0 && s->has_bytes;
        for (size_t k = 0; bytes && k < l; k++) bytes = s->byte_id[buf[i + k]] >= 0;
        if (id >= 0 || bytes) {
            if (id >= 0) ns = add_sym(sy, ns, i, l, id);
            else
                for (size_t k = 0; k < l; k++) ns = add_sym(sy, ns, i + k, 1, s->byte_id[buf[i + k]]);
            prev_unk = 0;
        } else if (s->unk >= 0) {
            if (prev_unk && s->fuse_unk) sy[ns - 1].len += (uint32_t)l;
            else ns = add_sym(sy, ns, i, l, s->unk);
            prev_unk = 1;
        }
    }
    return ns;
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
    if (s->merges) ns = hf_symbols(s, buf, len, sy);
    else
        for (size_t i = 0, l; i < len; i += l) {
            l = char_len(buf + i, len - i);
            ns = add_sym(sy, ns, i, l, lmf_spm_lookup(s, (const char *)buf + i, l));
        }
    size_t nh = 0;
    for (int32_t i = 1; i < ns; i++) try_pair(s, buf, sy, i - 1, i, heap, &nh);
    while (nh) {
        bigram b;
        lmf_heap_pop(heap, &nh, sizeof b, &b, bigram_before);
        sym *L = &sy[b.left], *R = &sy[b.right];
        /* stale when a side has changed since it was queued (merging only grows a symbol) */
        if (!L->len || !R->len || L->next != b.right || L->len + R->len != b.len) continue;
        L->len += R->len;
        L->id = b.res;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) sy[R->next].prev = b.left;
        try_pair(s, buf, sy, L->prev, b.left, heap, &nh);
        try_pair(s, buf, sy, b.left, L->next, heap, &nh);
    }
    size_t k = 0;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sy[i].next)
        if (sy[i].id >= 0) out[k++] = sy[i].id;
        else k += fallback(s, buf + sy[i].start, sy[i].len, out + k);
    return k;
}
