/* zero.c — see zero.h. */
#include "dist/zero.h"
#include "core/alloc.h"
#include "core/status.h"
#include "core/sumtree.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void lmf_zero_range(size_t n, int N, int r, size_t *lo, size_t *hi) {
    size_t S = (n + (size_t)N - 1) / (size_t)N;
    *lo = (size_t)r * S < n ? (size_t)r * S : n;
    *hi = (size_t)(r + 1) * S < n ? (size_t)(r + 1) * S : n;
}

void lmf_zero_init(lmf_zero *z, lmf_comm *comm, size_t n, size_t bucket) {
    int N = lmf_comm_size(comm);
    memset(z, 0, sizeof *z);
    z->comm = comm, z->n = n;
    z->shard = (n + (size_t)N - 1) / (size_t)N;
    if (!bucket) bucket = LMF_ZERO_BUCKET;
    z->bucket = bucket < z->shard ? bucket : z->shard;
    if (!z->bucket) z->bucket = 1;
    lmf_zero_range(n, N, lmf_comm_rank(comm), &z->lo, &z->hi);
    z->stage = lmf_alloc_big((size_t)N * z->bucket * sizeof(float));
    z->recv = lmf_alloc_big(z->bucket * sizeof(float));
    z->counts = lmf_xmalloc(4 * (size_t)N * sizeof(size_t));
}

void lmf_zero_partition(lmf_zero *z, int n_stages, const int *stage_of, const lmf_range *const *spans,
                        const int *n_spans, float *const *own_p, float *const *own_g) {
    int N = lmf_comm_size(z->comm);
    LMF_CHECK(!z->stage_of && n_stages >= 1);
    z->n_stages = n_stages;
    z->stage_of = lmf_xmalloc((size_t)N * sizeof(int));
    memcpy(z->stage_of, stage_of, (size_t)N * sizeof(int));
    z->n_sspans = lmf_xmalloc((size_t)n_stages * sizeof(int));
    z->sspans = lmf_xmalloc((size_t)n_stages * sizeof *z->sspans);
    for (int s = 0; s < n_stages; s++) {
        z->n_sspans[s] = n_spans[s];
        z->sspans[s] = lmf_xmalloc(((size_t)n_spans[s] + 1) * sizeof(lmf_range));
        memcpy(z->sspans[s], spans[s], (size_t)n_spans[s] * sizeof(lmf_range));
        for (int j = 0; j < n_spans[s]; j++) /* sorted, disjoint, inside the buffer */
            LMF_CHECK(spans[s][j].hi <= z->n && (!j || spans[s][j - 1].hi <= spans[s][j].lo));
    }
    int most = 0;
    for (int s = 0; s < n_stages; s++) most = n_spans[s] > most ? n_spans[s] : most;
    z->pieces = lmf_xmalloc(((size_t)most + 1) * sizeof(lmf_range));
    z->piece_of = lmf_xmalloc(((size_t)most + 1) * sizeof(int));
    int mine = n_spans[stage_of[lmf_comm_rank(z->comm)]];
    if (own_p) { /* where this rank keeps each of its spans (NULL: in the flat buffers) */
        z->own_p = lmf_xmalloc(((size_t)mine + 1) * sizeof(float *));
        z->own_g = lmf_xmalloc(((size_t)mine + 1) * sizeof(float *));
        memcpy(z->own_p, own_p, (size_t)mine * sizeof(float *));
        memcpy(z->own_g, own_g, (size_t)mine * sizeof(float *));
    }
    if (z->ring && !z->sring) z->sring = lmf_alloc_big_lazy(z->ring_cap * sizeof(float));
    z->zeros = lmf_alloc_big_lazy(z->bucket * sizeof(float));
    /* room for every rank's piece of a bucket, but each float goes only to its stage's dp x tp ranks (a tied wte to
     * two stages'), so a round packs about dp x tp buckets: those pages are committed by the first step and reused,
     * the rest cost nothing */
    z->pack = lmf_alloc_big_lazy((size_t)N * z->bucket * sizeof(float));
}

void lmf_zero_free(lmf_zero *z) {
    lmf_free_big(z->stage);
    lmf_free_big(z->recv);
    lmf_free_big(z->ring);
    free(z->counts), free(z->spans);
    for (int s = 0; s < z->n_stages; s++) free(z->sspans[s]);
    free(z->sspans), free(z->n_sspans), free(z->stage_of), free(z->pieces), free(z->piece_of);
    free(z->own_p), free(z->own_g), lmf_free_big(z->sring);
    lmf_free_big(z->zeros), lmf_free_big(z->pack);
    memset(z, 0, sizeof *z);
}

/* Rank q's stage's spans. */
static const lmf_range *stage_spans(const lmf_zero *z, int q, int *n) {
    int s = z->stage_of[q];
    *n = z->n_sspans[s];
    return z->sspans[s];
}

/* The pieces of [a, b) inside rank q's stage spans, in order, into out (room for its stage's span count), the span
 * each lies in into z->piece_of; returns how many. */
static int held_pieces(const lmf_zero *z, int q, size_t a, size_t b, lmf_range *out) {
    int n, k = 0, j = 0;
    const lmf_range *sp = stage_spans(z, q, &n);
    for (int e = n; j < e;) { /* the first span ending after a (a tensor-parallel rank has one a matrix row) */
        int mid = (j + e) / 2;
        if (sp[mid].hi <= a) j = mid + 1;
        else e = mid;
    }
    for (; j < n && sp[j].lo < b; j++) {
        size_t lo = sp[j].lo > a ? sp[j].lo : a, hi = sp[j].hi < b ? sp[j].hi : b;
        if (lo < hi) z->piece_of[k] = j, out[k++] = (lmf_range){lo, hi};
    }
    return k;
}

/* Where this rank keeps its span j's floats from lo on: the flat buffer buf, or (packed) its own place. */
static float *own_at(const lmf_zero *z, float *buf, int grads, int j, size_t lo) {
    float *const *own = grads ? z->own_g : z->own_p;
    if (!own || !own[j]) return buf + lo;
    return own[j] + (lo - z->sspans[z->stage_of[lmf_comm_rank(z->comm)]][j].lo);
}

/* Floats of [a, b) inside rank q's stage spans. */
static size_t held_count(lmf_zero *z, int q, size_t a, size_t b) {
    size_t k = 0;
    int n = held_pieces(z, q, a, b, z->pieces);
    for (int j = 0; j < n; j++) k += z->pieces[j].hi - z->pieces[j].lo;
    return k;
}

/* dst = grads[start, start + len) as this rank computed it: its stage's spans copied, zeros elsewhere (what its
 * gradient holds there, read without touching memory it does not hold). */
static void copy_own(lmf_zero *z, float *dst, const float *grads, size_t start, size_t len) {
    if (!z->stage_of) {
        memcpy(dst, grads + start, len * sizeof(float));
        return;
    }
    memset(dst, 0, len * sizeof(float));
    int n = held_pieces(z, lmf_comm_rank(z->comm), start, start + len, z->pieces);
    for (int j = 0; j < n; j++) {
        const lmf_range *p = &z->pieces[j];
        memcpy(dst + (p->lo - start), own_at(z, (float *)grads, 1, z->piece_of[j], p->lo),
               (p->hi - p->lo) * sizeof(float));
    }
}

/* Elements of bucket b of rank q's shard that exist: [start, start + len) of the flat buffer. */
static size_t bucket_span(const lmf_zero *z, int q, size_t b, size_t *start) {
    size_t lo, hi;
    lmf_zero_range(z->n, lmf_comm_size(z->comm), q, &lo, &hi);
    *start = lo + b * z->bucket;
    if (*start >= hi) return 0;
    return hi - *start < z->bucket ? hi - *start : z->bucket;
}

lmf_status lmf_zero_reduce_scatter(lmf_zero *z, float *grads) {
    int N = lmf_comm_size(z->comm), me = lmf_comm_rank(z->comm);
    size_t B = z->bucket;
    for (size_t b = 0; b * B < z->shard; b++) {
        for (int q = 0; q < N; q++) {
            size_t start, len = bucket_span(z, q, b, &start);
            float *dst = z->stage + (size_t)q * B;
            if (len) copy_own(z, dst, grads, start, len);
            if (len < B) memset(dst + len, 0, (B - len) * sizeof(float));
        }
        LMF_TRY(lmf_comm_reduce_scatter_sum(z->comm, z->stage, z->recv, B));
        size_t start, len = bucket_span(z, me, b, &start);
        if (len) memcpy(grads + start, z->recv, len * sizeof(float));
    }
    return LMF_OK;
}

/* The partitioned all-gather: bucket b of each owner's shard goes, piece by piece, to the ranks whose stage spans
 * hold it; the pieces travel packed in span order and are unpacked in the same order. */
static lmf_status exchange_params(lmf_zero *z, float *params) {
    int N = lmf_comm_size(z->comm), me = lmf_comm_rank(z->comm);
    size_t B = z->bucket, *sc = z->counts, *sd = sc + N, *rc = sd + N, *rd = rc + N;
    for (size_t b = 0; b * B < z->shard; b++) {
        size_t start, len = bucket_span(z, me, b, &start), k = 0;
        for (int r = 0; r < N; r++) { /* what of my bucket rank r holds (my own pieces stay where they are) */
            sd[r] = k;
            int n = r != me && len ? held_pieces(z, r, start, start + len, z->pieces) : 0;
            for (int j = 0; j < n; j++) {
                const lmf_range *p = &z->pieces[j];
                memcpy(z->pack + k, params + p->lo, (p->hi - p->lo) * sizeof(float));
                k += p->hi - p->lo;
            }
            sc[r] = k - sd[r];
        }
        k = 0;
        for (int q = 0; q < N; q++) {
            size_t qs, ql = bucket_span(z, q, b, &qs);
            rd[q] = k, rc[q] = q != me && ql ? held_count(z, me, qs, qs + ql) : 0;
            k += rc[q];
        }
        LMF_TRY(lmf_comm_alltoallv(z->comm, z->pack, sc, sd, z->stage, rc, rd));
        for (int q = 0; q < N; q++) {
            size_t qs, ql = bucket_span(z, q, b, &qs), at = rd[q];
            int n = !ql || (q == me && !z->own_p) ? 0 : held_pieces(z, me, qs, qs + ql, z->pieces);
            for (int j = 0; j < n; j++) {
                const lmf_range *p = &z->pieces[j];
                float *dst = own_at(z, params, 0, z->piece_of[j], p->lo);
                if (q == me) { /* my shard's own pieces: to where I keep them, when that is not the flat buffer */
                    if (dst != params + p->lo) memcpy(dst, params + p->lo, (p->hi - p->lo) * sizeof(float));
                    continue;
                }
                memcpy(dst, z->stage + at, (p->hi - p->lo) * sizeof(float));
                at += p->hi - p->lo;
            }
        }
    }
    return LMF_OK;
}

lmf_status lmf_zero_gather(lmf_zero *z, const float *params, size_t a, size_t b, float *out, int root) {
    int N = lmf_comm_size(z->comm), me = lmf_comm_rank(z->comm);
    size_t *sc = z->counts, *sd = sc + N, *rc = sd + N, *rd = rc + N;
    LMF_CHECK(a <= b && b - a <= z->bucket && b <= z->n);
    memset(sc, 0, 2 * (size_t)N * sizeof(size_t));
    for (int q = 0; q < N; q++) { /* rank q's shard's piece of [a, b), to root only */
        size_t lo, hi;
        lmf_zero_range(z->n, N, q, &lo, &hi);
        lo = lo > a ? lo : a, hi = hi < b ? hi : b;
        size_t k = hi > lo ? hi - lo : 0;
        rc[q] = me == root ? k : 0, rd[q] = me == root && k ? lo - a : 0;
        if (q == me) sc[root] = k, sd[root] = k ? lo : 0;
    }
    return lmf_comm_alltoallv(z->comm, params, sc, sd, out, rc, rd);
}

lmf_status lmf_zero_allgather(lmf_zero *z, float *params) {
    if (z->stage_of) return exchange_params(z, params);
    int N = lmf_comm_size(z->comm), me = lmf_comm_rank(z->comm);
    size_t B = z->bucket;
    for (size_t b = 0; b * B < z->shard; b++) {
        size_t start, len = bucket_span(z, me, b, &start);
        if (len) memcpy(z->recv, params + start, len * sizeof(float));
        if (len < B) memset(z->recv + len, 0, (B - len) * sizeof(float));
        LMF_TRY(lmf_comm_allgather(z->comm, z->recv, z->stage, B * sizeof(float)));
        for (int q = 0; q < N; q++)
            if (q != me && (len = bucket_span(z, q, b, &start)))
                memcpy(params + start, z->stage + (size_t)q * B, len * sizeof(float));
    }
    return LMF_OK;
}

void lmf_zero_overlap_init(lmf_zero *z, size_t ring_floats, size_t max_spans) {
    size_t least = (size_t)lmf_comm_size(z->comm) * z->bucket;
    z->ring_cap = ring_floats > least ? ring_floats : least;
    z->ring = lmf_alloc_big(z->ring_cap * sizeof(float));
    if (z->own_p) z->sring = lmf_alloc_big_lazy(z->ring_cap * sizeof(float));
    z->spans = lmf_xmalloc(max_spans * sizeof *z->spans);
    z->max_spans = max_spans;
}

void lmf_zero_queue(lmf_zero *z, size_t start, size_t len) {
    LMF_CHECK(z->n_spans < z->max_spans && start + len <= z->n);
    if (len) z->spans[z->n_spans][0] = start, z->spans[z->n_spans++][1] = len;
}

/* Adds the oldest piece's received operands (in comm.h's order, as the reduce-scatter) into grads and frees its floats. */
static lmf_status complete_oldest(lmf_zero *z, float *grads, int wait, int *done) {
    lmf_zero_piece *p = &z->fifo[z->head];
    *done = 1;
    if (wait) LMF_TRY(lmf_comm_wait(z->comm, p->req));
    else LMF_TRY(lmf_comm_test(z->comm, p->req, done));
    if (!*done) return LMF_OK;
    int q = lmf_sumtree_blocks(z->ring + p->at, p->mlen, lmf_comm_size(z->comm)); /* as the reduce-scatter */
    memcpy(grads + p->mine, z->ring + p->at + (size_t)q * p->mlen, p->mlen * sizeof(float));
    z->head = (z->head + 1) % LMF_ZERO_INFLIGHT;
    z->count--;
    return LMF_OK;
}

/* Where k floats fit in the ring after the pieces in flight, or SIZE_MAX when they do not until the oldest goes. The
 * floats held run from the oldest piece that holds any (tail) to ring_head, wrapped past the end when ring_head <=
 * tail; pieces of no floats (this rank's part of a span inside another's shard) hold nothing and say nothing of
 * where the held floats are. */
static size_t ring_fit(const lmf_zero *z, size_t k) {
    if (z->count == LMF_ZERO_INFLIGHT) return SIZE_MAX;
    size_t tail = SIZE_MAX;
    for (int i = 0; i < z->count && tail == SIZE_MAX; i++) {
        const lmf_zero_piece *p = &z->fifo[(z->head + i) % LMF_ZERO_INFLIGHT];
        if (p->len) tail = p->at;
    }
    if (tail == SIZE_MAX) return 0;
    if (z->ring_head <= tail) return z->ring_head + k <= tail ? z->ring_head : SIZE_MAX; /* wrapped: [head, tail) */
    if (z->ring_head + k <= z->ring_cap) return z->ring_head;
    return k <= tail ? 0 : SIZE_MAX;
}

/* Posts the next piece of the queued spans (at most bucket floats, cut at the shard boundaries) if its operands fit
 * in the ring; *posted says whether it did. */
static lmf_status post_next(lmf_zero *z, float *grads, int *posted) {
    int N = lmf_comm_size(z->comm), me = lmf_comm_rank(z->comm);
    size_t *sc = z->counts, *sd = z->counts + N;
    size_t a = z->spans[z->span_next][0] + z->span_done, left = z->spans[z->span_next][1] - z->span_done;
    size_t b = a + (left < z->bucket ? left : z->bucket), mine = a, mlen = 0;
    for (int q = 0; q < N; q++) { /* the piece inside rank q's shard */
        size_t lo, hi;
        lmf_zero_range(z->n, N, q, &lo, &hi);
        lo = lo > a ? lo : a, hi = hi < b ? hi : b;
        sc[q] = hi > lo ? hi - lo : 0, sd[q] = hi > lo ? lo - a : 0;
        if (q == me) mine = lo, mlen = sc[q];
    }
    /* partitioned: a span of another stage is zero here, sent from zeros this rank does not hold memory for; one
     * cut by this rank's spans (a tensor-parallel share of a layer's slice) or kept packed goes from a copy in the
     * send ring, beside its operands' place in the receive ring */
    const float *src = grads + a;
    int copy = 0;
    if (z->stage_of) {
        int n = held_pieces(z, me, a, b, z->pieces);
        size_t held = 0;
        for (int j = 0; j < n; j++) held += z->pieces[j].hi - z->pieces[j].lo;
        if (!held) src = z->zeros;
        else copy = held != b - a || n != 1 || own_at(z, grads, 1, z->piece_of[0], a) != grads + a;
    }
    size_t k = (size_t)N * mlen, at = ring_fit(z, copy && b - a > k ? b - a : k);
    *posted = at != SIZE_MAX;
    if (!*posted) return LMF_OK;
    if (copy) {
        LMF_CHECK(z->sring);
        copy_own(z, z->sring + at, grads, a, b - a);
        src = z->sring + at;
        if (b - a > k) k = b - a;
    }
    lmf_zero_piece *p = &z->fifo[(z->head + z->count) % LMF_ZERO_INFLIGHT];
    *p = (lmf_zero_piece){.mine = mine, .mlen = mlen, .at = at, .len = k};
    LMF_TRY(lmf_comm_ialltoallv(z->comm, src, sc, sd, z->ring + at, mlen, &p->req));
    z->count++;
    z->ring_head = at + k;
    z->posted += b - a;
    z->span_done += b - a;
    if (z->span_done == z->spans[z->span_next][1]) z->span_next++, z->span_done = 0;
    return LMF_OK;
}

lmf_status lmf_zero_progress(lmf_zero *z, float *grads) {
    for (int done = 1; z->count && done;) LMF_TRY(complete_oldest(z, grads, 0, &done));
    for (int posted = 1; z->span_next < z->n_spans && posted;) LMF_TRY(post_next(z, grads, &posted));
    return LMF_OK;
}

lmf_status lmf_zero_finish(lmf_zero *z, float *grads) {
    int done, posted;
    while (z->span_next < z->n_spans) {
        LMF_TRY(post_next(z, grads, &posted));
        if (!posted) LMF_TRY(complete_oldest(z, grads, 1, &done));
    }
    while (z->count) LMF_TRY(complete_oldest(z, grads, 1, &done));
    LMF_CHECK(z->posted == z->n); /* a span never queued would leave its owner with its own gradient alone */
    z->posted = z->n_spans = z->span_next = z->span_done = z->ring_head = 0;
    return LMF_OK;
}
