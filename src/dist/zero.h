/* zero.h — ZeRO stage 1 over a data-parallel communicator: each rank owns one contiguous shard of the flat parameter
 * buffer, receives the gradient sum of that shard only (reduce-scatter), updates it with its own slice of the
 * optimizer state, and sends it to every rank (all-gather), so optimizer memory per rank is 1/N of the whole.
 *
 * Shards: with n parameters and N ranks, S = ceil(n / N); rank r owns [r S, min((r + 1) S, n)) (the last may be
 * shorter, even empty). Both collectives move the buffer in buckets of at most `bucket` floats per rank: bucket b
 * is the slice [b B, (b + 1) B) of every shard, packed into one staging buffer of N x B floats (zeros past n), so
 * the transient memory is N x B floats whatever the model's size. Nothing is allocated after lmf_zero_init.
 *
 * Reductions sum in comm.h's order (core/sumtree.h), so every rank's shard holds the same bits a run with the same
 * number of ranks always computes.
 *
 * Overlapped with the backward pass (lmf_zero_overlap_init, then per step lmf_zero_queue ... lmf_zero_finish):
 * instead of one reduce-scatter after the backward, the caller queues each span of the buffer as soon as its
 * gradients are final (a layer's slice of every stacked tensor, once the backward has passed that layer), and the
 * exchange runs while the backward goes on. A span is cut at the shard boundaries: rank q receives every rank's
 * piece of it inside q's shard (one nonblocking all-to-all per span of at most `bucket` floats) and adds them in
 * that order when it completes, so each element gets the same additions in the same order as in
 * lmf_zero_reduce_scatter: the same bits. Received operands wait in a ring of ring_floats; a span is posted only
 * when its operands fit, and lmf_zero_progress never blocks, so a rank inside its backward never waits for a peer
 * that may be waiting for it (a pipeline stage for the next stage's gradient). Every rank must queue the same
 * spans in the same order, each element once between two finishes.
 *
 * Partitioned (lmf_zero_partition: pipeline stages that hold only their own spans of the buffers, model.h's
 * lmf_model_partition): rank q holds its stage's spans of params and grads, plus its own shard [lo, hi). Nothing
 * here then reads or writes a float a rank does not hold: what it sends of other stages' spans is zeros (which is
 * what its gradient holds there), and lmf_zero_allgather becomes an exchange in which each shard's owner sends
 * every rank only the pieces inside that rank's stage spans (lmf_comm_alltoallv, in buckets of at most B floats
 * from each owner, packed and unpacked in the owner's order). Sums and values are the same bits as unpartitioned.
 *
 * The "stages" are groups of ranks that hold the same spans: pipeline stages, or a stage's tensor-parallel ranks,
 * each holding its shares of the sharded tensors (model.h's lmf_model_group_spans: many spans, one a matrix row for
 * the row-parallel ones, found by binary search). A rank may keep some of its spans outside the flat buffers
 * (own_p / own_g: a tensor-parallel rank's packed rows); its shard stays in them, so its shard's pieces of those
 * spans are copied there after the update, and the overlapped reduction sends a span that its spans cut (or keep
 * apart) from a copy in a send ring as large as the receive ring (mapped lazily). */
#ifndef LMF_DIST_ZERO_H
#define LMF_DIST_ZERO_H

#include "core/alloc.h"
#include "dist/comm.h"

#include <stddef.h>

typedef struct {
    size_t mine, mlen; /* this rank's piece of a posted span: grads[mine, mine + mlen) */
    size_t at, len;    /* the ring's floats it holds: ring[at, at + len) (its N x mlen received ones first) */
    lmf_comm_req *req;
} lmf_zero_piece;

#define LMF_ZERO_INFLIGHT 256 /* posted exchanges not yet added (more: posting waits for the oldest) */

typedef struct {
    lmf_comm *comm;
    size_t n, shard, bucket; /* parameters, S, B */
    size_t lo, hi;           /* this rank's shard */
    float *stage;            /* N x B */
    float *recv;             /* B */
    /* overlap: spans queued (posted up to span_next + span_done floats), pieces in flight (a FIFO) whose received
     * floats sit in a ring */
    size_t (*spans)[2];         /* start, len */
    size_t max_spans, n_spans, span_next, span_done;
    lmf_zero_piece fifo[LMF_ZERO_INFLIGHT];
    int head, count;            /* the oldest piece, pieces in flight */
    float *ring;
    size_t ring_cap, ring_head; /* floats; where the next piece's go */
    size_t posted;              /* floats posted since the last finish */
    size_t *counts;             /* 4 x N: a post's (or an exchange's) send counts and offsets, receive ones */
    /* partitioned: rank q holds the spans of stage stage_of[q] (sspans[s], n_sspans[s] of them, sorted) */
    int n_stages, *stage_of, *n_sspans;
    lmf_range **sspans;
    lmf_range *pieces; /* scratch: one stage's spans' worth */
    float *zeros; /* B zeros (never written: mapped to the zero page), sent for spans this rank does not hold */
    float *pack;  /* N x B: the exchange's outgoing pieces */
    int *piece_of;        /* scratch: the span each of pieces lies in */
    float **own_p, **own_g; /* where this rank keeps its spans (NULL entries, or NULL: in the flat buffers) */
    float *sring;         /* the overlapped reduction's copies of cut spans (ring_cap floats, lazily mapped) */
} lmf_zero;

/* Floats per rank in a bucket unless asked otherwise (train / finetune --ddp-bucket-size): 8 MiB, large enough that a
 * bucket's latency is small against its transfer, small enough that the staging buffer (N x this) stays modest. */
#define LMF_ZERO_BUCKET ((size_t)2 << 20)

/* The shard [lo, hi) of rank r among N for n parameters. */
void lmf_zero_range(size_t n, int N, int r, size_t *lo, size_t *hi);
/* bucket: floats a rank in each bucket, 0 for LMF_ZERO_BUCKET (at most the shard) */
void lmf_zero_init(lmf_zero *z, lmf_comm *comm, size_t n, size_t bucket);
void lmf_zero_free(lmf_zero *z);
/* grads[lo, hi) becomes the sum over ranks of grads[lo, hi) (the rest of grads is left as this rank computed it). */
lmf_status lmf_zero_reduce_scatter(lmf_zero *z, float *grads);
/* Overlap: a ring of ring_floats for received operands (at least N x bucket; the trainer gives two layers' worth)
 * and room for max_spans queued spans per step. */
void lmf_zero_overlap_init(lmf_zero *z, size_t ring_floats, size_t max_spans);
/* grads[start, start + len) is final for this step: reduce it (it must not change until lmf_zero_finish). */
void lmf_zero_queue(lmf_zero *z, size_t start, size_t len);
/* Without blocking: adds the exchanges that have completed (MPI moves data inside its calls) and posts the queued
 * spans whose operands fit in the ring. */
lmf_status lmf_zero_progress(lmf_zero *z, float *grads);
/* Posts what is queued and waits for every exchange: grads[lo, hi) is then what lmf_zero_reduce_scatter gives. */
lmf_status lmf_zero_finish(lmf_zero *z, float *grads);
/* Every rank's params[its lo, its hi) is copied into params on every rank (partitioned: into the ranks that hold
 * each piece). */
lmf_status lmf_zero_allgather(lmf_zero *z, float *params);
/* Partitioned from now on: rank q holds stage stage_of[q]'s spans (spans[s]: n_spans[s] sorted, disjoint ranges).
 * own_p / own_g (NULL: all in the flat buffers): for each span j of this rank's stage, where it keeps span j's
 * params and grads (its first float), NULL for in the flat buffers. Copies what it is given. */
void lmf_zero_partition(lmf_zero *z, int n_stages, const int *stage_of, const lmf_range *const *spans,
                        const int *n_spans, float *const *own_p, float *const *own_g);
/* Collective: root's out gets params[a, b) (b - a <= bucket) from the shards' owners, each sending its shard's
 * piece (a checkpoint of a partitioned job: no rank holds all the parameters). */
lmf_status lmf_zero_gather(lmf_zero *z, const float *params, size_t a, size_t b, float *out, int root);

#endif
