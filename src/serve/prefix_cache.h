/* prefix_cache.h — KV blocks of earlier prompts, found again by their tokens.
 *
 * Requests that share a prefix (the same system prompt, the earlier turns of a chat) need not compute its KV
 * twice. As a prompt is read, every full block of it is entered here under a key that hashes the block's
 * tokens together with the key of the block before it, so a key stands for the whole prefix up to the block's end;
 * the entry holds a reference on the block (model/infer.h). A new prompt walks its blocks from the start and adopts
 * those found. Entries nobody else holds are evicted least recently used first (deepest first on ties, so a chain is
 * cut from its end) when the pool needs blocks.
 *
 * A pool that splits (model/infer.h: lmf_kv_pool_window) keeps its sliding-window layers in blocks of their own, which
 * a session hands back once they fall out of its window: an entry holds its block's windowed one when the session
 * still had it when the block was entered, and a match ends where the windowed blocks of the window before it
 * are all there. The engine enters a prompt's blocks chunk by chunk while it is read, so they come with their windowed
 * blocks (those of a system prompt shared by later requests too), and whole at its end. When only windowed blocks
 * are short, eviction drops an entry's windowed block and keeps the entry: first those outside every whole prompt's
 * last window. */
#ifndef LMF_SERVE_PREFIX_CACHE_H
#define LMF_SERVE_PREFIX_CACHE_H

#include "model/infer.h"

typedef struct lmf_prefix_cache lmf_prefix_cache;

lmf_prefix_cache *lmf_prefix_cache_create(lmf_kv_pool *pool);
/* Drops every entry's reference. */
void lmf_prefix_cache_free(lmf_prefix_cache *c);
/* The blocks holding tokens[0, max_blocks x bs) as far as the cache has them, in order, into blocks (and their
 * windowed blocks into wblocks, -1 where the cache has none); returns how many. Found entries become the most
 * recently used. */
int lmf_prefix_cache_match(lmf_prefix_cache *c, const int32_t *tokens, int max_blocks, int *blocks, int *wblocks);
/* Enters the first n blocks of a sequence (blocks[i] holds tokens[i bs, (i + 1) bs); wblocks: their windowed blocks,
 * -1 where gone, or NULL); known prefixes are skipped, except that they take a windowed block they lacked. whole:
 * the blocks are a whole prompt's (not a part entered while it is read), so the windowed blocks of its last window,
 * where a prompt that repeats or extends it continues, are evicted after every other one. */
void lmf_prefix_cache_insert(lmf_prefix_cache *c, const int32_t *tokens, int n, const int *blocks,
                             const int *wblocks, int whole);
/* Blocks only the cache holds (what eviction can free): entries' blocks, and their windowed blocks. */
int lmf_prefix_cache_reclaimable(const lmf_prefix_cache *c);
int lmf_prefix_cache_window_reclaimable(const lmf_prefix_cache *c);
/* Evicts entries (or only their windowed blocks) until n blocks and nw windowed blocks went back to the pool, or
 * nothing else can; returns the entries dropped. */
int lmf_prefix_cache_evict(lmf_prefix_cache *c, int n, int nw);
int lmf_prefix_cache_size(const lmf_prefix_cache *c);

#endif
