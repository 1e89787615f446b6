/* bpe.c — see bpe.h. */
#include "tokenizer/bpe.h"
#include "core/alloc.h"
#include "core/status.h"
#include "tokenizer/bytelevel.h"
#include "tokenizer/heap.h"

#include <stdlib.h>
#include <string.h>

/* Pieces up to this many bytes merge in a flat array; longer ones use the heap. */
#define FLAT_MAX 96

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int32_t lmf_bpe_lookup(const lmf_bpe *m, const uint8_t *bytes, size_t n) {
    size_t i = (size_t)lmf_hash_bytes(bytes, n) & m->vmask;
    for (;;) {
        int32_t id = m->vslots[i];
        if (id < 0) return -1;
        uint32_t len = m->off[id + 1] - m->off[id];
        if (len == n && !memcmp(m->bytes + m->off[id], bytes, n)) return id;
        i = (i + 1) & m->vmask;
    }
}

/* Inserts a NORMAL token; returns the id already holding the same bytes, or -1 if it was new. */
static int32_t vocab_insert(lmf_bpe *m, int32_t id) {
    const uint8_t *b = m->bytes + m->off[id];
    size_t n = m->off[id + 1] - m->off[id];
    size_t i = (size_t)lmf_hash_bytes(b, n) & m->vmask;
    for (;;) {
        int32_t o = m->vslots[i];
        if (o < 0) {
            m->vslots[i] = id;
            return -1;
        }
        if (m->off[o + 1] - m->off[o] == n && !memcmp(m->bytes + m->off[o], b, n)) return o;
        i = (i + 1) & m->vmask;
    }
}

/* Raw bytes of a token given as text: byte-level decoded for NORMAL, literal otherwise. Writes to out (room for
 * strlen(text) bytes); returns the length or -1 (bad character at *bad). */
static long token_raw(const char *text, size_t len, int type, uint8_t *out, size_t *bad) {
    if (type != LMF_TOKEN_NORMAL) {
        memcpy(out, text, len);
        return (long)len;
    }
    return lmf_bytelevel_decode(text, len, out, bad);
}

/* Resolves one side of a merge (byte-level text) to a NORMAL token id, or -1. */
static int32_t merge_part(const lmf_bpe *m, const char *text, size_t len, uint8_t *buf) {
    size_t bad;
    long n = lmf_bytelevel_decode(text, len, buf, &bad);
    if (n <= 0) return -1;
    return lmf_bpe_lookup(m, buf, (size_t)n);
}

void lmf_bpe_merges_init(lmf_bpe *m, int32_t n) {
    m->n_merges = 0;
    m->merges = lmf_xmalloc(sizeof(int32_t) * 2 * ((size_t)n + 1));
    m->mmask = pow2_at_least((size_t)n * 2 + 2) - 1;
    m->mslots = lmf_xmalloc((m->mmask + 1) * sizeof *m->mslots);
    for (size_t i = 0; i <= m->mmask; i++) m->mslots[i].key = UINT64_MAX;
}

int lmf_bpe_merge_add(lmf_bpe *m, int32_t a, int32_t b, int32_t res) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9e3779b97f4a7c15ull) >> 40) & m->mmask;
    while (m->mslots[i].key != UINT64_MAX && m->mslots[i].key != key) i = (i + 1) & m->mmask;
    if (m->mslots[i].key == key) return 0; /* a repeated merge keeps its first (lowest) rank */
    int32_t r = m->n_merges++;
    m->mslots[i] = (lmf_bpe_merge_slot){key, (uint32_t)r, res};
    m->merges[2 * r] = a, m->merges[2 * r + 1] = b;
    return 1;
}

lmf_status lmf_bpe_build(lmf_bpe *m, const lmf_tokenizer_def *def, const char *origin) {
    memset(m, 0, sizeof *m);
    if (def->n_vocab < 256 || def->n_vocab > (1 << 30) || !def->tokens)
        return lmf_fail(LMF_ERR_FORMAT, "%s: vocabulary of %d tokens (a byte-level BPE needs 256 to 2^30)", origin,
                        def->n_vocab);
    if (def->n_merges < 0 || def->n_merges > (1 << 30) || (def->n_merges && !def->merges))
        return lmf_fail(LMF_ERR_FORMAT, "%s: %d merges is out of range", origin, def->n_merges);
    int32_t nv = def->n_vocab;
    m->n_vocab = nv;
    m->ignore_merges = def->ignore_merges;
    m->off = lmf_xcalloc((size_t)nv + 1, sizeof *m->off);
    m->type = lmf_xcalloc((size_t)nv, 1);
    size_t total = 0, longest = 0;
    for (int32_t i = 0; i < nv; i++) {
        size_t l = def->tokens[i] ? strlen(def->tokens[i]) : 0;
        total += l;
        if (l > longest) longest = l;
    }
    if (total > UINT32_MAX - 1) return lmf_fail(LMF_ERR_FORMAT, "%s: token texts total %zu bytes (max 4 GiB)", origin, total);
    m->bytes = lmf_xmalloc(total + 1);
    lmf_status st = LMF_OK;
    uint32_t pos = 0;
    for (int32_t i = 0; i < nv; i++) {
        m->off[i] = pos;
        const char *t = def->tokens[i];
        int type = t ? (def->types ? def->types[i] : LMF_TOKEN_NORMAL) : LMF_TOKEN_UNUSED;
        if (type < LMF_TOKEN_NORMAL || type > LMF_TOKEN_UNUSED) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: token %d: unknown token type %d", origin, i, type);
            goto fail;
        }
        if (t && type == LMF_TOKEN_UNUSED) t = NULL;
        m->type[i] = (uint8_t)type;
        if (!t) continue;
        size_t bad = 0, len = strlen(t);
        if (len == 0) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: token %d has empty text", origin, i);
            goto fail;
        }
        long n = token_raw(t, len, type, m->bytes + pos, &bad);
        if (n < 0) {
            st = lmf_fail(LMF_ERR_FORMAT,
                          "%s: token %d \"%.60s\": character at byte %zu is not in the byte-level alphabet "
                          "(hint: is this a byte-level BPE vocabulary?)", origin, i, t, bad);
            goto fail;
        }
        pos += (uint32_t)n;
    }
    m->off[nv] = pos;

    m->vmask = pow2_at_least((size_t)nv * 2) - 1;
    m->vslots = lmf_xmalloc((m->vmask + 1) * sizeof *m->vslots);
    memset(m->vslots, 0xff, (m->vmask + 1) * sizeof *m->vslots);
    for (int i = 0; i < 256; i++) m->byte_id[i] = -1;
    for (int32_t i = 0; i < nv; i++) {
        if (m->type[i] != LMF_TOKEN_NORMAL) continue;
        int32_t o = vocab_insert(m, i);
        if (o >= 0) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: tokens %d and %d have the same bytes \"%.60s\"", origin, o, i,
                          def->tokens[i]);
            goto fail;
        }
        if (m->off[i + 1] - m->off[i] == 1) m->byte_id[m->bytes[m->off[i]]] = i;
    }
    for (int b = 0; b < 256; b++)
        if (m->byte_id[b] < 0 && def->missing_bytes_ok) {
            m->n_missing_bytes++;
        } else if (m->byte_id[b] < 0) {
            char t[4];
            int l = lmf_utf8_put(lmf_bytelevel_cp((uint8_t)b), t);
            st = lmf_fail(LMF_ERR_FORMAT,
                          "%s: no token for byte 0x%02X (\"%.*s\"): a byte-level BPE needs all 256 byte tokens",
                          origin, b, l, t);
            goto fail;
        }

    lmf_bpe_merges_init(m, def->n_merges);
    uint8_t *buf = lmf_xmalloc(2 * longest + 8), *cat = NULL;
    for (int32_t r = 0; r < def->n_merges && st == LMF_OK; r++) {
        const char *mg = def->merges[r];
        const char *sp = mg ? strchr(mg, ' ') : NULL;
        if (!sp || sp == mg || !sp[1] || strchr(sp + 1, ' ')) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: merge %d \"%.60s\": expected two tokens separated by one space", origin,
                          r, mg ? mg : "(null)");
            break;
        }
        size_t la = (size_t)(sp - mg), lb = strlen(sp + 1);
        if (la > 2 * longest || lb > 2 * longest) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: merge %d \"%.60s\": part longer than any token", origin, r, mg);
            break;
        }
        int32_t a = merge_part(m, mg, la, buf), b = merge_part(m, sp + 1, lb, buf);
        if (a < 0 || b < 0) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: merge %d \"%.60s\": \"%.*s\" is not a token of the vocabulary", origin,
                          r, mg, a < 0 ? (int)la : (int)lb, a < 0 ? mg : sp + 1);
            break;
        }
        size_t na = m->off[a + 1] - m->off[a], nb = m->off[b + 1] - m->off[b];
        cat = lmf_xrealloc(cat, na + nb);
        memcpy(cat, m->bytes + m->off[a], na);
        memcpy(cat + na, m->bytes + m->off[b], nb);
        int32_t res = lmf_bpe_lookup(m, cat, na + nb);
        if (res < 0) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: merge %d \"%.60s\": the merged token is not in the vocabulary", origin,
                          r, mg);
            break;
        }
        lmf_bpe_merge_add(m, a, b, res);
    }
    free(buf);
    free(cat);
    if (st != LMF_OK) goto fail;
    return LMF_OK;
fail:
    lmf_bpe_destroy(m);
    return st;
}

void lmf_bpe_destroy(lmf_bpe *m) {
    LMF_FREE_ALL(m->off, m->bytes, m->type, m->mslots, m->merges, m->vslots);
    memset(m, 0, sizeof *m);
}

void lmf_bpe_scratch_destroy(lmf_bpe_scratch *sc) {
    LMF_FREE_ALL(sc->sym, sc->next, sc->prev, sc->rank, sc->heap, sc->kept);
    memset(sc, 0, sizeof *sc);
}

static void scratch_reserve(lmf_bpe_scratch *sc, size_t n) {
    if (n <= sc->cap) return;
    size_t c = pow2_at_least(n);
    free(sc->sym), free(sc->next), free(sc->prev), free(sc->rank);
    sc->sym = lmf_xmalloc(c * sizeof(int32_t));
    sc->next = lmf_xmalloc(c * sizeof(int32_t));
    sc->prev = lmf_xmalloc(c * sizeof(int32_t));
    sc->rank = lmf_xmalloc(c * sizeof(uint32_t));
    sc->cap = c;
}

static inline uint32_t pair_rank(const lmf_bpe *m, int32_t a, int32_t b) {
    const lmf_bpe_merge_slot *s = lmf_bpe_merge_find(m, a, b);
    return s ? s->rank : LMF_BPE_NO_RANK;
}

/* Flat array: sym[0..k) with rank[i] the rank of (sym[i], sym[i+1]); each merge scans for the minimum. */
static size_t merge_flat(const lmf_bpe *m, lmf_bpe_scratch *sc, const uint8_t *s, size_t n, int32_t *out) {
    int32_t *sym = out; /* merge in place in the output: it has room for n ids */
    uint32_t *rank = sc->rank;
    for (size_t i = 0; i < n; i++) sym[i] = m->byte_id[s[i]];
    size_t k = n;
    for (size_t i = 0; i + 1 < k; i++) rank[i] = pair_rank(m, sym[i], sym[i + 1]);
    while (k > 1) {
        uint32_t best = LMF_BPE_NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < k; i++)
            if (rank[i] < best) best = rank[i], bi = i;
        if (best == LMF_BPE_NO_RANK) break;
        sym[bi] = lmf_bpe_merge_find(m, sym[bi], sym[bi + 1])->result;
        memmove(sym + bi + 1, sym + bi + 2, (k - bi - 2) * sizeof *sym);
        memmove(rank + bi + 1, rank + bi + 2, (k >= bi + 3 ? k - bi - 3 : 0) * sizeof *rank);
        k--;
        if (bi > 0) rank[bi - 1] = pair_rank(m, sym[bi - 1], sym[bi]);
        if (bi + 1 < k) rank[bi] = pair_rank(m, sym[bi], sym[bi + 1]);
    }
    return k;
}

/* Heap of candidate merges ordered by (rank, position); an entry is stale once either side changed. */
typedef struct {
    uint32_t rank, pos;
    int32_t left, right;
} cand;

static inline int cand_less(const cand *a, const cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int cand_before(const void *a, const void *b) { return cand_less(a, b); }

static void heap_push(cand *h, size_t *n, cand c) { lmf_heap_push(h, n, sizeof c, &c, cand_before); }

static cand heap_pop(cand *h, size_t *n) {
    cand top;
    lmf_heap_pop(h, n, sizeof top, &top, cand_before);
    return top;
}

static void push_pair(const lmf_bpe *m, const int32_t *sym, cand *h, size_t *hn, int32_t i, int32_t j) {
    const lmf_bpe_merge_slot *s = lmf_bpe_merge_find(m, sym[i], sym[j]);
    if (s) heap_push(h, hn, (cand){s->rank, (uint32_t)i, sym[i], sym[j]});
}

static size_t merge_heap(const lmf_bpe *m, lmf_bpe_scratch *sc, const uint8_t *s, size_t n, int32_t *out) {
    int32_t *sym = sc->sym, *next = sc->next, *prev = sc->prev;
    /* every merge pushes at most two candidates: n - 1 initial + 2 (n - 1) */
    size_t hcap = 3 * n + 4;
    if (hcap > sc->heap_cap) {
        free(sc->heap);
        sc->heap = lmf_xmalloc(hcap * sizeof(cand));
        sc->heap_cap = hcap;
    }
    cand *h = sc->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = m->byte_id[s[i]];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(m, sym, h, &hn, (int32_t)i, (int32_t)(i + 1));
    while (hn) {
        cand c = heap_pop(h, &hn);
        int32_t i = (int32_t)c.pos, j = next[i];
        if (sym[i] != c.left || j < 0 || sym[j] != c.right) continue; /* stale */
        sym[i] = lmf_bpe_merge_find(m, c.left, c.right)->result;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        sym[j] = -1;
        if (prev[i] >= 0) push_pair(m, sym, h, &hn, prev[i], i);
        if (next[i] >= 0) push_pair(m, sym, h, &hn, i, next[i]);
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) out[k++] = sym[i];
    return k;
}

size_t lmf_bpe_encode_piece(const lmf_bpe *m, lmf_bpe_scratch *sc, const uint8_t *s, size_t n, int32_t *out) {
    if (n == 1 && m->byte_id[s[0]] >= 0) {
        out[0] = m->byte_id[s[0]];
        return 1;
    }
    if (m->ignore_merges) {
        int32_t id = lmf_bpe_lookup(m, s, n);
        if (id >= 0) {
            out[0] = id;
            return 1;
        }
    }
    if (m->n_missing_bytes) {
        /* Bytes without a token are dropped and their neighbours become adjacent, as in Hugging Face's BPE
         * (a character missing from the vocabulary with no unk_token is skipped before merging). */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += m->byte_id[s[i]] >= 0;
        if (k < n) {
            if (k == 0) return 0;
            if (k > sc->kept_cap) {
                free(sc->kept);
                sc->kept_cap = pow2_at_least(k);
                sc->kept = lmf_xmalloc(sc->kept_cap);
            }
            k = 0;
            for (size_t i = 0; i < n; i++)
                if (m->byte_id[s[i]] >= 0) sc->kept[k++] = s[i];
            s = sc->kept, n = k;
            if (n == 1) {
                out[0] = m->byte_id[s[0]];
                return 1;
            }
        }
    }
    scratch_reserve(sc, n);
    return n <= FLAT_MAX ? merge_flat(m, sc, s, n, out) : merge_heap(m, sc, s, n, out);
}
