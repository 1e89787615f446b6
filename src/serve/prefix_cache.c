/* prefix_cache.c — see prefix_cache.h. A flat table with linear scans: it has at most one entry per pool block
 * (a few thousand), and a lookup per prompt block costs far less than computing one row of it. */
#include "serve/prefix_cache.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct {
    uint64_t key, parent; /* this prefix's key and the one before (0 for the first block) */
    int block, depth;
    uint64_t used;        /* the clock at the last match or insert */
    int32_t *tokens;      /* the block's bs tokens, compared on a hit: a key collision must not reuse a block */
} entry;

struct lmf_prefix_cache {
    lmf_kv_pool *pool;
    int bs, n, cap;
    entry *e;
    uint64_t clock;
};

lmf_prefix_cache *lmf_prefix_cache_create(lmf_kv_pool *pool) {
    lmf_prefix_cache *c = lmf_xcalloc(1, sizeof *c);
    c->pool = pool;
    c->bs = lmf_kv_pool_block_size(pool);
    c->cap = lmf_kv_pool_blocks(pool);
    c->e = lmf_xcalloc((size_t)c->cap, sizeof *c->e);
    return c;
}

static void drop(lmf_prefix_cache *c, int i) {
    lmf_kv_pool_unref(c->pool, c->e[i].block);
    free(c->e[i].tokens);
    c->e[i] = c->e[--c->n];
}

void lmf_prefix_cache_free(lmf_prefix_cache *c) {
    if (!c) return;
    while (c->n) drop(c, c->n - 1);
    free(c->e);
    free(c);
}

static uint64_t block_key(uint64_t parent, const int32_t *tokens, int bs) {
    uint64_t k = XXH3_64bits_withSeed(tokens, (size_t)bs * sizeof *tokens, parent);
    return k ? k : 1; /* 0 marks "no parent" */
}

static int find(const lmf_prefix_cache *c, uint64_t key, uint64_t parent, const int32_t *tokens) {
    for (int i = 0; i < c->n; i++)
        if (c->e[i].key == key && c->e[i].parent == parent &&
            !memcmp(c->e[i].tokens, tokens, (size_t)c->bs * sizeof *tokens))
            return i;
    return -1;
}

int lmf_prefix_cache_match(lmf_prefix_cache *c, const int32_t *tokens, int max_blocks, int *blocks) {
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
        parent = key;
    }
    return m;
}

void lmf_prefix_cache_insert(lmf_prefix_cache *c, const int32_t *tokens, int n, const int *blocks) {
    uint64_t parent = 0;
    c->clock++;
    for (int m = 0; m < n; m++) {
        const int32_t *t = tokens + (size_t)m * c->bs;
        uint64_t key = block_key(parent, t, c->bs);
        int i = find(c, key, parent, t);
        if (i >= 0) {
            c->e[i].used = c->clock;
        } else if (c->n < c->cap) {
            entry *e = &c->e[c->n++];
            *e = (entry){key, parent, blocks[m], m, c->clock, lmf_xmalloc((size_t)c->bs * sizeof *tokens)};
            memcpy(e->tokens, t, (size_t)c->bs * sizeof *tokens);
            lmf_kv_pool_ref(c->pool, blocks[m]);
        }
        parent = key;
    }
}

int lmf_prefix_cache_reclaimable(const lmf_prefix_cache *c) {
    int k = 0;
    for (int i = 0; i < c->n; i++) k += lmf_kv_pool_block_refs(c->pool, c->e[i].block) == 1;
    return k;
}

int lmf_prefix_cache_evict(lmf_prefix_cache *c, int n) {
    int freed = 0;
    while (freed < n) {
        int best = -1;
        for (int i = 0; i < c->n; i++) {
            if (lmf_kv_pool_block_refs(c->pool, c->e[i].block) != 1) continue;
            if (best < 0 || c->e[i].used < c->e[best].used ||
                (c->e[i].used == c->e[best].used && c->e[i].depth > c->e[best].depth))
                best = i;
        }
        if (best < 0) break;
        drop(c, best);
        freed++;
    }
    return freed;
}

int lmf_prefix_cache_size(const lmf_prefix_cache *c) { return c->n; }
