/* unionfind.c — disjoint sets over arbitrary 64-bit document ids, for clustering MinHash duplicate pairs.
 *
 * Only ids that take part in a union get a node, so memory follows the number of documents with a duplicate edge
 * (not the corpus size): an open-addressing hash map id -> node (12 bytes per slot at <= 50% load) plus per node
 * the id, the parent, the set size and the set's smallest id (28 bytes). Union by size with path halving: near
 * constant time per operation. The set's smallest id is kept at the root so the kept document of a cluster (the
 * lowest id) is known without a second pass. */
#include "data/dedup.h"

#include "core/alloc.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

struct lmf_unionfind {
    uint64_t *ids, *minid;  /* per node */
    uint32_t *parent, *size;
    size_t n, cap;
    uint32_t *slots;        /* node index + 1, 0 = empty */
    size_t nslots;          /* power of two */
};

static inline uint64_t mix(uint64_t x) { /* splitmix64 finalizer */
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27, x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

lmf_unionfind *lmf_unionfind_create(void) {
    lmf_unionfind *u = lmf_xcalloc(1, sizeof *u);
    u->nslots = 1024;
    u->slots = lmf_xcalloc(u->nslots, sizeof *u->slots);
    return u;
}

static void rehash(lmf_unionfind *u) {
    size_t ns = u->nslots * 2;
    uint32_t *sl = lmf_xcalloc(ns, sizeof *sl);
    for (size_t i = 0; i < u->n; i++) {
        size_t h = mix(u->ids[i]) & (ns - 1);
        while (sl[h]) h = (h + 1) & (ns - 1);
        sl[h] = (uint32_t)(i + 1);
    }
    free(u->slots);
    u->slots = sl;
    u->nslots = ns;
}

/* Node of id, or (when create) a new singleton node; SIZE_MAX when absent and !create. */
static size_t node(lmf_unionfind *u, uint64_t id, int create) {
    size_t h = mix(id) & (u->nslots - 1);
    while (u->slots[h]) {
        size_t i = u->slots[h] - 1;
        if (u->ids[i] == id) return i;
        h = (h + 1) & (u->nslots - 1);
    }
    if (!create) return SIZE_MAX;
    LMF_CHECK(u->n < UINT32_MAX - 1);
    if (u->n == u->cap) {
        u->cap = u->cap ? 2 * u->cap : 1024;
        u->ids = lmf_xrealloc(u->ids, u->cap * sizeof *u->ids);
        u->minid = lmf_xrealloc(u->minid, u->cap * sizeof *u->minid);
        u->parent = lmf_xrealloc(u->parent, u->cap * sizeof *u->parent);
        u->size = lmf_xrealloc(u->size, u->cap * sizeof *u->size);
    }
    size_t i = u->n++;
    u->ids[i] = u->minid[i] = id;
    u->parent[i] = (uint32_t)i;
    u->size[i] = 1;
    u->slots[h] = (uint32_t)(i + 1);
    if (2 * u->n > u->nslots) rehash(u);
    return i;
}

static size_t root(lmf_unionfind *u, size_t i) {
    while (u->parent[i] != i) {
        u->parent[i] = u->parent[u->parent[i]]; /* path halving */
        i = u->parent[i];
    }
    return i;
}

int lmf_unionfind_union(lmf_unionfind *u, uint64_t a, uint64_t b) {
    size_t ra = root(u, node(u, a, 1)), rb = root(u, node(u, b, 1));
    if (ra == rb) return 0;
    if (u->size[ra] < u->size[rb]) {
        size_t t = ra;
        ra = rb, rb = t;
    }
    u->parent[rb] = (uint32_t)ra;
    u->size[ra] += u->size[rb];
    if (u->minid[rb] < u->minid[ra]) u->minid[ra] = u->minid[rb];
    return 1;
}

int lmf_unionfind_same(lmf_unionfind *u, uint64_t a, uint64_t b) {
    if (a == b) return 1;
    size_t na = node(u, a, 0), nb = node(u, b, 0);
    if (na == SIZE_MAX || nb == SIZE_MAX) return 0;
    return root(u, na) == root(u, nb);
}

uint64_t lmf_unionfind_min(lmf_unionfind *u, uint64_t x) {
    size_t i = node(u, x, 0);
    return i == SIZE_MAX ? x : u->minid[root(u, i)];
}

size_t lmf_unionfind_size(const lmf_unionfind *u) { return u->n; }

uint64_t lmf_unionfind_id(const lmf_unionfind *u, size_t i) {
    LMF_CHECK(i < u->n);
    return u->ids[i];
}

void lmf_unionfind_free(lmf_unionfind *u) {
    if (!u) return;
    LMF_FREE_ALL(u->ids, u->minid, u->parent, u->size, u->slots, u);
}
