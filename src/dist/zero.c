/* zero.c — see zero.h. */
#include "dist/zero.h"
#include "core/alloc.h"
#include "core/status.h"

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
    z->bucket = bucket < z->shard ? bucket : z->shard;
    if (!z->bucket) z->bucket = 1;
    lmf_zero_range(n, N, lmf_comm_rank(comm), &z->lo, &z->hi);
    z->stage = lmf_alloc_big((size_t)N * z->bucket * sizeof(float));
    z->recv = lmf_alloc_big(z->bucket * sizeof(float));
}

void lmf_zero_free(lmf_zero *z) {
    lmf_free_big(z->stage);
    lmf_free_big(z->recv);
    z->stage = z->recv = NULL;
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
            if (len) memcpy(dst, grads + start, len * sizeof(float));
            if (len < B) memset(dst + len, 0, (B - len) * sizeof(float));
        }
        LMF_TRY(lmf_comm_reduce_scatter_sum(z->comm, z->stage, z->recv, B));
        size_t start, len = bucket_span(z, me, b, &start);
        if (len) memcpy(grads + start, z->recv, len * sizeof(float));
    }
    return LMF_OK;
}

lmf_status lmf_zero_allgather(lmf_zero *z, float *params) {
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
