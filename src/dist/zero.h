/* zero.h — ZeRO stage 1 over a data-parallel communicator: each rank owns one contiguous shard of the flat parameter
 * buffer, receives the gradient sum of that shard only (reduce-scatter), updates it with its own slice of the
 * optimizer state, and sends it to every rank (all-gather), so optimizer memory per rank is 1/N of the whole.
 *
 * Shards: with n parameters and N ranks, S = ceil(n / N); rank r owns [r S, min((r + 1) S, n)) (the last may be
 * shorter, even empty). Both collectives move the buffer in buckets of at most `bucket` floats per rank: bucket b
 * is the slice [b B, (b + 1) B) of every shard, packed into one staging buffer of N x B floats (zeros past n), so
 * the transient memory is N x B floats whatever the model's size. Nothing is allocated after lmf_zero_init.
 *
 * Reductions sum in rank order (comm.h's contract), so every rank's shard holds the same bits a run with the same
 * number of ranks always computes. */
#ifndef LMF_DIST_ZERO_H
#define LMF_DIST_ZERO_H

#include "dist/comm.h"

#include <stddef.h>

typedef struct {
    lmf_comm *comm;
    size_t n, shard, bucket; /* parameters, S, B */
    size_t lo, hi;           /* this rank's shard */
    float *stage;            /* N x B */
    float *recv;             /* B */
} lmf_zero;

/* The shard [lo, hi) of rank r among N for n parameters. */
void lmf_zero_range(size_t n, int N, int r, size_t *lo, size_t *hi);
void lmf_zero_init(lmf_zero *z, lmf_comm *comm, size_t n, size_t bucket);
void lmf_zero_free(lmf_zero *z);
/* grads[lo, hi) becomes the sum over ranks of grads[lo, hi) (the rest of grads is left as this rank computed it). */
lmf_status lmf_zero_reduce_scatter(lmf_zero *z, float *grads);
/* Every rank's params[its lo, its hi) is copied into params on every rank. */
lmf_status lmf_zero_allgather(lmf_zero *z, float *params);

#endif
