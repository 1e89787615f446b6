/* bpe_train.c — learning byte-level BPE merges from text.
 *
 * 1. feed: each document is pre-tokenized exactly as encode() will split it, and every distinct piece ("word") is
 *    counted once in a hash table, so the merge loop works on the unique words (tens of thousands), not the text.
 * 2. finish: ids are assigned as Hugging Face's BpeTrainer does — special tokens first, then the 256 byte tokens
 *    in the code-point order of their byte-level characters, then one new id per merge — and every adjacent pair
 *    of every word is counted (weighted by the word's frequency, overlapping pairs included), each pair keeping
 *    the list of words it occurs in.
 * 3. Each step takes the pair with the highest count, ties to the smallest (left id, right id), from a binary heap
 *    with lazy invalidation (an entry whose count is out of date is re-pushed with the current count; counts of
 *    existing pairs only ever fall, so the top, once current, is the true maximum). It is merged in the words that
 *    contain it, left to right without overlap, and only the pairs next to each merged occurrence change count:
 *    (prev, A) and (B, next) lose the word's frequency, (prev, N) and (N, next) gain it. New pairs are pushed.
 * With the same words, this is the same sequence of merges as HF's trainer (same counts, same tie rule); a merge
 * whose text already exists as a token reuses that id and does not grow the vocabulary, as in HF. */
#include "core/alloc.h"
#include "core/status.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/heap.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t hash;
    uint32_t off, len; /* bytes in the arena */
    int64_t count;
} word;

struct lmf_bpe_trainer {
    int vocab_size;
    int n_special;
    char **special;
    lmf_pretok pretok;
    int64_t min_frequency;
    lmf_pretokenizer pre;
    lmf_pretok_scratch sc;
    uint32_t *slots; /* word index + 1, 0 = free */
    size_t mask;
    word *words;
    size_t n_words, words_cap;
    uint8_t *arena;
    size_t arena_len, arena_cap;
};

lmf_status lmf_bpe_trainer_create(const lmf_bpe_train_config *cfg, lmf_bpe_trainer **out) {
    *out = NULL;
    if (cfg->n_special < 0 || cfg->n_special > 4096 || (cfg->n_special && !cfg->special_tokens))
        return lmf_fail(LMF_ERR_ARG, "BPE training: %d special tokens (0 to 4096)", cfg->n_special);
    if (cfg->vocab_size < 256 + cfg->n_special || cfg->vocab_size > (1 << 24))
        return lmf_fail(LMF_ERR_ARG, "BPE training: vocab size %d must be in [256 + %d special tokens, 2^24]",
                        cfg->vocab_size, cfg->n_special);
    if (cfg->pretok == LMF_PRETOK_CUSTOM)
        return lmf_fail(LMF_ERR_ARG, "BPE training: pick a named pre-tokenizer (gpt2, llama3, smollm, qwen2)");
    if (cfg->min_frequency < 0) return lmf_fail(LMF_ERR_ARG, "BPE training: min frequency must be >= 0");
    for (int i = 0; i < cfg->n_special; i++) {
        if (!cfg->special_tokens[i] || !cfg->special_tokens[i][0])
            return lmf_fail(LMF_ERR_ARG, "BPE training: special token %d is empty", i);
        for (int j = 0; j < i; j++)
            if (!strcmp(cfg->special_tokens[i], cfg->special_tokens[j]))
                return lmf_fail(LMF_ERR_ARG, "BPE training: special token \"%s\" given twice", cfg->special_tokens[i]);
    }
    lmf_bpe_trainer *tr = lmf_xcalloc(1, sizeof *tr);
    LMF_CHECK(lmf_pretok_init(&tr->pre, cfg->pretok, NULL, 0, "BPE training") == LMF_OK);
    lmf_pretok_scratch_init(&tr->sc);
    tr->vocab_size = cfg->vocab_size;
    tr->n_special = cfg->n_special;
    tr->special = lmf_xcalloc((size_t)cfg->n_special + 1, sizeof(char *));
    for (int i = 0; i < cfg->n_special; i++) tr->special[i] = strdup(cfg->special_tokens[i]);
    tr->pretok = cfg->pretok;
    tr->min_frequency = cfg->min_frequency;
    tr->mask = (1u << 16) - 1;
    tr->slots = lmf_xcalloc(tr->mask + 1, sizeof *tr->slots);
    *out = tr;
    return LMF_OK;
}

void lmf_bpe_trainer_free(lmf_bpe_trainer *tr) {
    if (!tr) return;
    for (int i = 0; i < tr->n_special; i++) free(tr->special[i]);
    free(tr->special);
    lmf_pretok_destroy(&tr->pre);
    lmf_pretok_scratch_destroy(&tr->sc);
    free(tr->slots);
    free(tr->words);
    free(tr->arena);
    free(tr);
}

static void grow_words(lmf_bpe_trainer *tr) {
    size_t cap = (tr->mask + 1) * 2;
    uint32_t *s = lmf_xcalloc(cap, sizeof *s);
    for (size_t w = 0; w < tr->n_words; w++) {
        size_t i = (size_t)tr->words[w].hash & (cap - 1);
        while (s[i]) i = (i + 1) & (cap - 1);
        s[i] = (uint32_t)w + 1;
    }
    free(tr->slots);
    tr->slots = s, tr->mask = cap - 1;
}

static void count_piece(void *ctx, const uint8_t *text, size_t s, size_t e, size_t top) {
    (void)top;
    lmf_bpe_trainer *tr = ctx;
    const uint8_t *p = text + s;
    size_t n = e - s;
    uint64_t h = lmf_hash_bytes(p, n);
    size_t i = (size_t)h & tr->mask;
    for (;;) {
        uint32_t w = tr->slots[i];
        if (!w) break;
        word *wd = &tr->words[w - 1];
        if (wd->hash == h && wd->len == n && !memcmp(tr->arena + wd->off, p, n)) {
            wd->count++;
            return;
        }
        i = (i + 1) & tr->mask;
    }
    if (n > UINT32_MAX || tr->arena_len + n > UINT32_MAX || tr->n_words >= UINT32_MAX - 1) {
        fprintf(stderr, "lmforge: BPE training: more than 4 GiB of distinct words\n");
        abort();
    }
    if (tr->arena_len + n > tr->arena_cap) {
        size_t c = tr->arena_cap ? tr->arena_cap : 1 << 20;
        while (c < tr->arena_len + n) c *= 2;
        tr->arena = lmf_xrealloc(tr->arena, c);
        tr->arena_cap = c;
    }
    if (tr->n_words == tr->words_cap) {
        tr->words_cap = tr->words_cap ? 2 * tr->words_cap : 4096;
        tr->words = lmf_xrealloc(tr->words, tr->words_cap * sizeof *tr->words);
    }
    memcpy(tr->arena + tr->arena_len, p, n);
    tr->words[tr->n_words] = (word){h, (uint32_t)tr->arena_len, (uint32_t)n, 1};
    tr->arena_len += n;
    tr->slots[i] = (uint32_t)++tr->n_words;
    if (tr->n_words * 2 > tr->mask + 1) grow_words(tr);
}

void lmf_bpe_trainer_feed(lmf_bpe_trainer *tr, const char *text, size_t len) {
    /* training uses the built-in patterns only (linear per match): a limit here is a bug, not bad input */
    LMF_CHECK(lmf_pretok_split(&tr->pre, &tr->sc, (const uint8_t *)text, len, count_piece, tr) == LMF_OK);
}

/* ---- the merge loop -------------------------------------------------------------------------------------------- */

typedef struct {
    int32_t a, b;
    int64_t count;
    uint32_t *where; /* words that contain (or once contained) the pair */
    uint32_t n_where, cap_where;
    uint32_t touched; /* step at which it was last queued for a push */
} pair;

typedef struct {
    int64_t count;
    int32_t a, b;
    uint32_t idx;
} entry;

typedef struct {
    pair *pairs;
    size_t n_pairs, cap_pairs;
    uint32_t *slots; /* pair index + 1 */
    size_t mask;
    entry *heap;
    size_t n_heap, cap_heap;
    uint32_t *touched;
    size_t n_touched, cap_touched;
} pair_table;

static inline uint64_t pair_hash(int32_t a, int32_t b) {
    return lmf_hash_mix(((uint64_t)(uint32_t)a << 32) | (uint32_t)b);
}

static void pairs_grow(pair_table *pt) {
    size_t cap = (pt->mask + 1) * 2;
    uint32_t *s = lmf_xcalloc(cap, sizeof *s);
    for (size_t k = 0; k < pt->n_pairs; k++) {
        size_t i = (size_t)pair_hash(pt->pairs[k].a, pt->pairs[k].b) & (cap - 1);
        while (s[i]) i = (i + 1) & (cap - 1);
        s[i] = (uint32_t)k + 1;
    }
    free(pt->slots);
    pt->slots = s, pt->mask = cap - 1;
}

static uint32_t pair_get(pair_table *pt, int32_t a, int32_t b) {
    size_t i = (size_t)pair_hash(a, b) & pt->mask;
    for (;;) {
        uint32_t k = pt->slots[i];
        if (!k) break;
        if (pt->pairs[k - 1].a == a && pt->pairs[k - 1].b == b) return k - 1;
        i = (i + 1) & pt->mask;
    }
    if (pt->n_pairs == pt->cap_pairs) {
        pt->cap_pairs = pt->cap_pairs ? 2 * pt->cap_pairs : 1 << 16;
        pt->pairs = lmf_xrealloc(pt->pairs, pt->cap_pairs * sizeof *pt->pairs);
    }
    uint32_t k = (uint32_t)pt->n_pairs++;
    pt->pairs[k] = (pair){a, b, 0, NULL, 0, 0, UINT32_MAX};
    pt->slots[i] = k + 1;
    if (pt->n_pairs * 2 > pt->mask + 1) pairs_grow(pt);
    return k;
}

static void where_add(pair *p, uint32_t w) {
    if (p->n_where && p->where[p->n_where - 1] == w) return;
    if (p->n_where == p->cap_where) {
        p->cap_where = p->cap_where ? 2 * p->cap_where : 4;
        p->where = lmf_xrealloc(p->where, p->cap_where * sizeof *p->where);
    }
    p->where[p->n_where++] = w;
}

static inline int entry_before(const entry *x, const entry *y) {
    if (x->count != y->count) return x->count > y->count;
    return x->a != y->a ? x->a < y->a : x->b < y->b;
}

static int entry_before_v(const void *a, const void *b) { return entry_before(a, b); }

static void heap_push(pair_table *pt, entry e) {
    if (pt->n_heap == pt->cap_heap) {
        pt->cap_heap = pt->cap_heap ? 2 * pt->cap_heap : 1 << 16;
        pt->heap = lmf_xrealloc(pt->heap, pt->cap_heap * sizeof *pt->heap);
    }
    lmf_heap_push(pt->heap, &pt->n_heap, sizeof e, &e, entry_before_v);
}

static entry heap_pop(pair_table *pt) {
    entry top;
    lmf_heap_pop(pt->heap, &pt->n_heap, sizeof top, &top, entry_before_v);
    return top;
}

static void delta(pair_table *pt, int32_t a, int32_t b, int64_t d, uint32_t w, uint32_t step) {
    uint32_t k = pair_get(pt, a, b);
    pair *p = &pt->pairs[k];
    p->count += d;
    if (d > 0) {
        where_add(p, w);
        if (p->touched != step) {
            p->touched = step;
            if (pt->n_touched == pt->cap_touched) {
                pt->cap_touched = pt->cap_touched ? 2 * pt->cap_touched : 1024;
                pt->touched = lmf_xrealloc(pt->touched, pt->cap_touched * sizeof *pt->touched);
            }
            pt->touched[pt->n_touched++] = k;
        }
    }
}

/* Token bytes of the growing vocabulary, with a lookup to spot a merge that recreates an existing token. */
typedef struct {
    uint8_t *bytes;
    size_t len, cap;
    uint32_t *off; /* [n + 1] */
    int32_t n, cap_tok;
    int32_t *slots; /* id, -1 = free */
    size_t mask;
} vocab;

static void vocab_index(vocab *v, int32_t id) {
    const uint8_t *b = v->bytes + v->off[id];
    size_t n = v->off[id + 1] - v->off[id], i = (size_t)lmf_hash_bytes(b, n) & v->mask;
    while (v->slots[i] >= 0) i = (i + 1) & v->mask;
    v->slots[i] = id;
}

static int32_t vocab_find(const vocab *v, const uint8_t *b, size_t n) {
    size_t i = (size_t)lmf_hash_bytes(b, n) & v->mask;
    for (;;) {
        int32_t id = v->slots[i];
        if (id < 0) return -1;
        if (v->off[id + 1] - v->off[id] == n && !memcmp(v->bytes + v->off[id], b, n)) return id;
        i = (i + 1) & v->mask;
    }
}

static int32_t vocab_add(vocab *v, const uint8_t *b, size_t n, int index) {
    if (v->len + n > v->cap) {
        v->cap = v->cap ? v->cap : 1 << 16;
        while (v->cap < v->len + n) v->cap *= 2;
        v->bytes = lmf_xrealloc(v->bytes, v->cap);
    }
    memcpy(v->bytes + v->len, b, n);
    v->len += n;
    int32_t id = v->n++;
    v->off[id + 1] = (uint32_t)v->len;
    if (index) vocab_index(v, id);
    return id;
}

lmf_status lmf_bpe_trainer_finish(lmf_bpe_trainer *tr, lmf_tokenizer **out) {
    *out = NULL;
    int32_t V = tr->vocab_size, S = tr->n_special;
    vocab v = {0};
    v.cap_tok = V;
    v.off = lmf_xcalloc((size_t)V + 1, sizeof *v.off);
    v.mask = 1;
    while (v.mask + 1 < (size_t)V * 2) v.mask = v.mask * 2 + 1;
    v.slots = lmf_xmalloc((v.mask + 1) * sizeof *v.slots);
    memset(v.slots, 0xff, (v.mask + 1) * sizeof *v.slots);
    for (int i = 0; i < S; i++) vocab_add(&v, (const uint8_t *)tr->special[i], strlen(tr->special[i]), 0);
    /* the 256 bytes, ordered by the code point of their byte-level character */
    int order[256], byte_tok[256];
    for (int b = 0; b < 256; b++) order[b] = b;
    for (int i = 1; i < 256; i++)
        for (int j = i; j > 0 && lmf_bytelevel_cp((uint8_t)order[j]) < lmf_bytelevel_cp((uint8_t)order[j - 1]); j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    for (int i = 0; i < 256; i++) {
        uint8_t b = (uint8_t)order[i];
        byte_tok[b] = vocab_add(&v, &b, 1, 1);
    }

    /* words as symbol sequences */
    size_t nw = tr->n_words;
    uint32_t *wstart = lmf_xmalloc((nw + 1) * sizeof *wstart), *wlen = lmf_xmalloc((nw + 1) * sizeof *wlen);
    int32_t *sym = lmf_xmalloc((tr->arena_len + 1) * sizeof *sym);
    for (size_t w = 0; w < nw; w++) {
        wstart[w] = tr->words[w].off, wlen[w] = tr->words[w].len;
        for (uint32_t i = 0; i < wlen[w]; i++) sym[wstart[w] + i] = byte_tok[tr->arena[wstart[w] + i]];
    }
    pair_table pt = {0};
    pt.mask = (1u << 16) - 1;
    pt.slots = lmf_xcalloc(pt.mask + 1, sizeof *pt.slots);
    for (size_t w = 0; w < nw; w++) {
        const int32_t *s = sym + wstart[w];
        for (uint32_t i = 0; i + 1 < wlen[w]; i++) {
            uint32_t k = pair_get(&pt, s[i], s[i + 1]); /* may move pt.pairs */
            pair *p = &pt.pairs[k];
            p->count += tr->words[w].count;
            where_add(p, (uint32_t)w);
        }
    }
    for (size_t k = 0; k < pt.n_pairs; k++)
        heap_push(&pt, (entry){pt.pairs[k].count, pt.pairs[k].a, pt.pairs[k].b, (uint32_t)k});

    int32_t *merges = lmf_xmalloc(sizeof(int32_t) * 2 * ((size_t)V + 1));
    int32_t n_merges = 0;
    uint8_t *cat = NULL;
    size_t cat_cap = 0;
    for (uint32_t step = 0; v.n < V && pt.n_heap; step++) {
        entry top = heap_pop(&pt);
        pair *tp = &pt.pairs[top.idx];
        if (top.count != tp->count) {
            if (tp->count > 0) heap_push(&pt, (entry){tp->count, tp->a, tp->b, top.idx});
            continue;
        }
        if (top.count < 1 || top.count < tr->min_frequency) break;
        int32_t A = top.a, B = top.b;
        size_t la = v.off[A + 1] - v.off[A], lb = v.off[B + 1] - v.off[B];
        if (la + lb > cat_cap) {
            cat_cap = 2 * (la + lb);
            cat = lmf_xrealloc(cat, cat_cap);
        }
        memcpy(cat, v.bytes + v.off[A], la);
        memcpy(cat + la, v.bytes + v.off[B], lb);
        int32_t N = vocab_find(&v, cat, la + lb);
        if (N < 0) N = vocab_add(&v, cat, la + lb, 1);
        merges[2 * n_merges] = A, merges[2 * n_merges + 1] = B;
        n_merges++;
        /* take the word list: the pair is gone after this step */
        uint32_t *where = tp->where, n_where = tp->n_where;
        tp->where = NULL, tp->n_where = tp->cap_where = 0, tp->count = 0;
        pt.n_touched = 0;
        for (uint32_t k = 0; k < n_where; k++) {
            uint32_t w = where[k];
            int32_t *s = sym + wstart[w];
            uint32_t n = wlen[w], i = 0, j = 0;
            int64_t f = tr->words[w].count;
            while (i < n) {
                if (i + 1 < n && s[i] == A && s[i + 1] == B) {
                    if (j > 0) {
                        delta(&pt, s[j - 1], A, -f, w, step);
                        delta(&pt, s[j - 1], N, f, w, step);
                    }
                    if (i + 2 < n) {
                        delta(&pt, B, s[i + 2], -f, w, step);
                        delta(&pt, N, s[i + 2], f, w, step);
                    }
                    s[j++] = N;
                    i += 2;
                } else {
                    s[j++] = s[i++];
                }
            }
            wlen[w] = j;
        }
        free(where);
        pt.pairs[top.idx].count = 0;
        for (size_t k = 0; k < pt.n_touched; k++) {
            pair *p = &pt.pairs[pt.touched[k]];
            if (p->count > 0) heap_push(&pt, (entry){p->count, p->a, p->b, pt.touched[k]});
        }
    }
    free(cat);
    for (size_t k = 0; k < pt.n_pairs; k++) free(pt.pairs[k].where);
    free(pt.pairs), free(pt.slots), free(pt.heap), free(pt.touched);
    free(wstart), free(wlen), free(sym);

    /* the tokenizer, through the same definition a file would give */
    char **texts = lmf_xcalloc((size_t)v.n + 1, sizeof *texts), **mtexts = lmf_xcalloc((size_t)n_merges + 1, sizeof *mtexts);
    uint8_t *types = lmf_xcalloc((size_t)v.n + 1, 1);
    for (int32_t id = 0; id < v.n; id++) {
        size_t n = v.off[id + 1] - v.off[id];
        texts[id] = lmf_xmalloc(2 * n + 1);
        if (id < S) {
            memcpy(texts[id], v.bytes + v.off[id], n);
            texts[id][n] = 0;
            types[id] = LMF_TOKEN_CONTROL;
        } else {
            texts[id][lmf_bytelevel_encode(v.bytes + v.off[id], n, texts[id])] = 0;
        }
    }
    for (int32_t r = 0; r < n_merges; r++) {
        const char *a = texts[merges[2 * r]], *b = texts[merges[2 * r + 1]];
        size_t la = strlen(a), lb = strlen(b);
        mtexts[r] = lmf_xmalloc(la + lb + 2);
        memcpy(mtexts[r], a, la);
        mtexts[r][la] = ' ';
        memcpy(mtexts[r] + la + 1, b, lb + 1);
    }
    lmf_tokenizer_def def = {.n_vocab = v.n, .tokens = (const char *const *)texts, .types = types,
                             .n_merges = n_merges, .merges = (const char *const *)mtexts, .pretok = tr->pretok};
    lmf_status s = lmf_tokenizer_build(&def, "trained tokenizer", out);
    for (int32_t id = 0; id < v.n; id++) free(texts[id]);
    for (int32_t r = 0; r < n_merges; r++) free(mtexts[r]);
    free(texts), free(mtexts), free(types), free(merges);
    free(v.bytes), free(v.off), free(v.slots);
    return s;
}
