/* prefix_cache.c — see prefix_cache.h. A flat table of entries (at most one per pool block), found by key through an
 * open-addressing index (linear probing, deletion by backward shift): prompts enter chunk by chunk, so a long
 * prompt's blocks are looked up once per chunk, and a pool of 100k+ positions has thousands of entries. Eviction and
 * the reclaimable counts scan the table (once per engine iteration, and per evicted entry). */
#include "serve/prefix_cache.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct {
    uint64_t key, parent; /* this prefix's key and the one before (0 for the first block) */
    int block, wblock, depth; /* wblock: the windowed layers' block, or -1 */
    int end;              /* within the last window of a prompt entered whole: its windowed block goes last */
    uint64_t used;        /* the clock at the last match or insert */
    int32_t *tokens;      /* the block's bs tokens, compared on a hit: a key collision must not reuse a block */
} entry;

struct lmf_prefix_cache {
    lmf_kv_pool *pool;
    int bs, window, n, cap;
    entry *e;
    int *slots;           /* the index: entry numbers by key, -1 empty; mask + 1 (a power of two >= 2 cap) of them */
    size_t mask;
    uint64_t clock;
};

static size_t home(const lmf_prefix_cache *c, uint64_t key) { return (size_t)(key * 0x9E3779B97F4A7C15ull) & c->mask; }

/* The index slot holding entry i. */
static size_t slot_of(const lmf_prefix_cache *c, int i) {
    size_t s = home(c, c->e[i].key);
    while (c->slots[s] != i) s = (s + 1) & c->mask;
    return s;
}

/* Empties slot s, moving later entries of the probe run back so that none is cut off from its home. */
static void unslot(lmf_prefix_cache *c, size_t s) {
    for (size_t j = (s + 1) & c->mask; c->slots[j] >= 0; j = (j + 1) & c->mask) {
        size_t h = home(c, c->e[c->slots[j]].key);
        if (((j - h) & c->mask) >= ((j - s) & c->mask)) c->slots[s] = c->slots[j], s = j; /* h not in (s, j] */
    }
    c->slots[s] = -1;
}

lmf_prefix_cache *lmf_prefix_cache_create(lmf_kv_pool *pool) {
    lmf_prefix_cache *c = lmf_xcalloc(1, sizeof *c);
    c->pool = pool;
    c->bs = lmf_kv_pool_block_size(pool);
    c->window = lmf_kv_pool_window(pool);
    c->cap = lmf_kv_pool_blocks(pool);
    c->e = lmf_xcalloc((size_t)c->cap, sizeof *c->e);
    size_t n = 16;
    while (n < 2 * (size_t)c->cap) n *= 2;
    c->mask = n - 1;
    c->slots = lmf_xmalloc(n * sizeof *c->slots);
    memset(c->slots, 0xff, n * sizeof *c->slots);
    return c;
}

static void drop_window(lmf_prefix_cache *c, int i) {
    if (c->e[i].wblock >= 0) lmf_kv_pool_unref(c->pool, c->e[i].wblock);
    c->e[i].wblock = -1;
}

static void drop(lmf_prefix_cache *c, int i) {
    lmf_kv_pool_unref(c->pool, c->e[i].block);
    drop_window(c, i);
    free(c->e[i].tokens);
    unslot(c, slot_of(c, i));
    if (i != --c->n) { /* the last entry moves into i */
        c->slots[slot_of(c, c->n)] = i;
        c->e[i] = c->e[c->n];
    }
}

void lmf_prefix_cache_free(lmf_prefix_cache *c) {
    if (!c) return;
    while (c->n) drop(c, c->n - 1);
    free(c->e);
    free(c->slots);
    free(c);
}

static uint64_t block_key(uint64_t parent, const int32_t *tokens, int bs) {
    uint64_t k = XXH3_64bits_withSeed(tokens, (size_t)bs * sizeof *tokens, parent);
    return k ? k : 1; /* 0 marks "no parent" */
}

static int find(const lmf_prefix_cache *c, uint64_t key, uint64_t parent, const int32_t *tokens) {
    for (size_t s = home(c, key); c->slots[s] >= 0; s = (s + 1) & c->mask) {
        const entry *e = &c->e[c->slots[s]];
        if (e->key == key && e->parent == parent && !memcmp(e->tokens, tokens, (size_t)c->bs * sizeof *tokens))
            return c->slots[s];
    }
    return -1;
}

/* Whether the windowed blocks a session continuing at m blocks reads are all in wblocks. */
static int window_held(const lmf_prefix_cache *c, const int *wblocks, int m) {
    for (int i = lmf_kv_pool_window_first(c->pool, m * c->bs); i < m; i++)
        if (wblocks[i] < 0) return 0;
    return 1;
}

int lmf_prefix_cache_match(lmf_prefix_cache *c, const int32_t *tokens, int max_blocks, int *blocks, int *wblocks) {
    uint64_t parent = 0;
    c->clock++;
    int m = 0;
    for (; m < max_blocks; m++) {
        const int32_t *t = tokens + (size_t)m * c->bs;
        uint64_t key = block_key(parent, t, c->bs);
        int i = find(c, key, parent, t);
        if (i < 0) break;
        c->e[i].used = c->clock;
        blocks[m] = c->e[i].block;
        wblocks[m] = c->e[i].wblock;
        parent = key;
    }
    while (c->window && m > 0 && !window_held(c, wblocks, m)) m--;
    return m;
}

void lmf_prefix_cache_insert(lmf_prefix_cache *c, const int32_t *tokens, int n, const int *blocks,
                             const int *wblocks, int whole) {
    /* the windowed blocks a match at n, or at n - 1 (the prompt again: its last token is computed), reads */
    int end = whole && c->window && n > 0 ? lmf_kv_pool_window_first(c->pool, (n - 1) * c->bs) : n;
    uint64_t parent = 0;
    c->clock++;
    for (int m = 0; m < n; m++) {
        const int32_t *t = tokens + (size_t)m * c->bs;
        uint64_t key = block_key(parent, t, c->bs);
        int i = find(c, key, parent, t);
        int wb = wblocks ? wblocks[m] : -1;
        if (i >= 0) {
            c->e[i].used = c->clock;
        } else if (c->n < c->cap) {
            i = c->n++;
            c->e[i] = (entry){key, parent, blocks[m], -1, m, 0, c->clock, lmf_xmalloc((size_t)c->bs * sizeof *tokens)};
            memcpy(c->e[i].tokens, t, (size_t)c->bs * sizeof *tokens);
            lmf_kv_pool_ref(c->pool, blocks[m]);
            size_t s = home(c, key);
            while (c->slots[s] >= 0) s = (s + 1) & c->mask;
            c->slots[s] = i;
        }
        if (i >= 0 && m >= end) c->e[i].end = 1;
        if (i >= 0 && wb >= 0 && c->e[i].wblock < 0 && c->e[i].block == blocks[m]) {
            c->e[i].wblock = wb; /* the same block's windowed one (a block computed again elsewhere has its own) */
            lmf_kv_pool_ref(c->pool, wb);
        }
        parent = key;
    }
}

/* Whether only the cache holds block b (-1: none). */
static int alone(const lmf_prefix_cache *c, int b) { return b >= 0 && lmf_kv_pool_block_refs(c->pool, b) == 1; }

int lmf_prefix_cache_reclaimable(const lmf_prefix_cache *c) {
    int k = 0;
    for (int i = 0; i < c->n; i++) k += alone(c, c->e[i].block);
    return k;
}

int lmf_prefix_cache_window_reclaimable(const lmf_prefix_cache *c) {
    int k = 0;
    for (int i = 0; i < c->n; i++) k += alone(c, c->e[i].wblock);
    return k;
}

/* Whether entry a goes before entry b: least recently used first, then the deepest (a chain is cut from its end);
 * for windowed blocks alone (wonly), those outside every entered prompt's last window before all of those. */
static int sooner(const entry *a, const entry *b, int wonly) {
    if (wonly && a->end != b->end) return a->end < b->end;
    return a->used < b->used || (a->used == b->used && a->depth > b->depth);
}

int lmf_prefix_cache_evict(lmf_prefix_cache *c, int n, int nw) {
    int freed = 0, wfreed = 0, dropped = 0;
    while (freed < n || wfreed < nw) {
        int best = -1, wonly = freed >= n;
        for (int i = 0; i < c->n; i++) {
            if (!(freed < n && alone(c, c->e[i].block)) && !(wfreed < nw && alone(c, c->e[i].wblock))) continue;
            if (best < 0 || sooner(&c->e[i], &c->e[best], wonly)) best = i;
        }
        if (best < 0) break;
        wfreed += alone(c, c->e[best].wblock);
        if (freed < n && alone(c, c->e[best].block)) {
            freed++, dropped++;
            drop(c, best);
        } else {
            drop_window(c, best); /* only windowed blocks are short: the entry stays */
        }
    }
    return dropped;
}

int lmf_prefix_cache_size(const lmf_prefix_cache *c) { return c->n; }
