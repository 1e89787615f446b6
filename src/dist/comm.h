/* comm.h — the communication interface between the processes of one training job.
 *
 * A training step (train/step.h) exchanges gradients through an lmf_comm: every process ("rank") computes the
 * gradients of its own micro-batches, then the ranks reduce them so that every rank applies the same update. The
 * interface is the handful of collectives data parallelism with ZeRO-1 needs, plus point-to-point messages for
 * pipeline stages:
 *   allreduce-sum of a float or double buffer, in place, on every rank;
 *   reduce-scatter-sum of float blocks (rank r receives the sum of every rank's block r: its gradient shard);
 *   all-gather of equal-sized byte blocks (every rank's updated parameter shard to every rank);
 *   broadcast of bytes from one rank; barrier; send / recv of bytes to / from one peer, and both at once;
 *   split into sub-communicators (the dp x tp x pp grid of dist/grid.h); abort of the whole job;
 *   an all-to-all of float pieces of any sizes, both ways (a pipeline stage's parameters from their shards' owners);
 *   one nonblocking collective, an all-to-all of float pieces of any sizes (the operand exchange of a reduce-scatter
 *   over part of a buffer), with test and wait: what overlapping the gradient reduction with the backward pass needs
 *   (dist/zero.h, docs/distributed.md). The caller adds the operands, so the rank-order rule below still holds.
 *
 * Backends sit behind one table of function pointers, redis ae_epoll.c / ae_kqueue.c style: each backend is one
 * file (comm_self.c; comm_mpi.c when the build has MPI) exporting one opener that fills an lmf_comm with its
 * lmf_comm_ops, and the job picks one at run time by name (lmf_comm_open). Callers use the lmf_comm_* wrappers below,
 * never the backend directly.
 *
 * Contract for every backend: collectives are called by all ranks of the communicator in the same order with the
 * same sizes; errors are an lmf_status naming the backend, the call and the rank. Float reductions add the
 * ranks' operands in core/sumtree.h's order over ranks 0..N-1 (the order a single process adds its micro-batches'
 * gradients in, so data-parallel runs can equal it bit for bit), double ones in rank order (rank 0's value + rank
 * 1's + ...), whatever the backend's algorithm or the machines' topology, so every rank gets bit-identical results
 * and a run is bit-reproducible for a given number of ranks. With size 1 every collective
 * leaves the buffer as it is, so a single process computes bit for bit what it computed before this interface existed.
 *
 * Ownership: lmf_comm_open and lmf_comm_split allocate the handle and lmf_comm_close frees it (closing the world
 * communicator of a backend finalises it, so close sub-communicators first); lmf_comm_self() is a shared static
 * handle that needs no close (closing it does nothing). */
#ifndef LMF_DIST_COMM_H
#define LMF_DIST_COMM_H

#include "lmforge.h"

#include <stddef.h>

typedef struct lmf_comm lmf_comm;
typedef struct lmf_comm_req lmf_comm_req; /* a nonblocking call in flight (the backend's) */

typedef struct {
    const char *name;                                                     /* "self", "mpi" */
    lmf_status (*allreduce_sum_f32)(lmf_comm *c, float *buf, size_t n);  /* in place: buf = sum over ranks */
    lmf_status (*allreduce_sum_f64)(lmf_comm *c, double *buf, size_t n);
    lmf_status (*broadcast)(lmf_comm *c, void *buf, size_t bytes, int root);
    lmf_status (*barrier)(lmf_comm *c);
    /* send: size x n floats, block q (send + q n) for rank q; recv: n floats = sum over ranks of their block `rank`.
     * send and recv must not overlap. */
    lmf_status (*reduce_scatter_sum_f32)(lmf_comm *c, const float *send, float *recv, size_t n);
    /* recv: size x bytes, block q = rank q's send. send may not point into recv. */
    lmf_status (*allgather)(lmf_comm *c, const void *send, void *recv, size_t bytes);
    lmf_status (*send)(lmf_comm *c, const void *buf, size_t bytes, int peer, int tag);
    lmf_status (*recv)(lmf_comm *c, void *buf, size_t bytes, int peer, int tag);
    /* ranks with the same color form one new communicator, ordered by key (then by rank) */
    lmf_status (*split)(lmf_comm *c, int color, int key, lmf_comm **out);
    /* ends every rank of the job with exit status code (a rank that cannot go on and must not leave the others
     * waiting in a collective); a backend of one rank returns and lets the caller exit */
    void (*abort)(lmf_comm *c, int code);
    void (*close)(lmf_comm *c); /* frees backend state and the handle itself */
    /* sends sbytes of sbuf to speer while receiving rbytes from rpeer into rbuf, both with tag: the pair exchange
     * of pipeline stages (send an activation to the next stage while receiving its gradient), which blocking send
     * then recv on both sides could deadlock. sbuf and rbuf must not overlap. */
    lmf_status (*sendrecv)(lmf_comm *c, const void *sbuf, size_t sbytes, int speer, void *rbuf, size_t rbytes,
                           int rpeer, int tag);
    /* starts sending rank q scounts[q] floats at send + sdispls[q] while receiving rcount floats from every rank q
     * into recv + q rcount (rcount is what this rank's scounts[rank] is on every rank). Until *req completes, send
     * and recv must not be touched (the counts are copied). *req may be NULL when it completed at once. */
    lmf_status (*ialltoallv_f32)(lmf_comm *c, const float *send, const size_t *scounts, const size_t *sdispls,
                                 float *recv, size_t rcount, lmf_comm_req **req);
    /* whether req has completed (wait: blocks until it has); a completed req is freed. NULL is complete. */
    lmf_status (*req_test)(lmf_comm *c, lmf_comm_req *req, int wait, int *done);
    /* blocking: sends rank q scounts[q] floats at send + sdispls[q] and receives rcounts[q] floats from rank q at
     * recv + rdispls[q] (rcounts[q] is what rank q's scounts[rank] is). send and recv must not overlap. */
    lmf_status (*alltoallv_f32)(lmf_comm *c, const float *send, const size_t *scounts, const size_t *sdispls,
                                float *recv, const size_t *rcounts, const size_t *rdispls);
} lmf_comm_ops;

struct lmf_comm {
    const lmf_comm_ops *ops;
    int rank, size; /* 0 <= rank < size */
    void *state;    /* the backend's (e.g. an MPI communicator) */
};

/* Opens the world communicator of the backend named `backend` ("self", or "mpi" when the build has MPI). An unknown
 * or unavailable backend is LMF_ERR_ARG naming it and the ones this build has. */
lmf_status lmf_comm_open(const char *backend, lmf_comm **out);
void lmf_comm_close(lmf_comm *c); /* NULL is fine */
/* The single-process communicator (rank 0 of 1); static, shared, never needs closing. */
lmf_comm *lmf_comm_self(void);
/* Whether this build has the MPI backend. */
int lmf_comm_have_mpi(void);
/* The number of ranks an MPI launcher (mpirun, srun) started this process among, from its environment
 * (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_SIZE...); 0 when there is none. *rank gets this process's rank (rank may be
 * NULL). */
int lmf_comm_launched_size(int *rank);
/* The number of ranks the launcher started on this host (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS, ...); 1 when
 * it does not say. */
int lmf_comm_local_size(void);
/* Backend openers (one per backend file). */
lmf_status lmf_comm_self_open(lmf_comm **out);
lmf_status lmf_comm_mpi_open(lmf_comm **out);

static inline int lmf_comm_rank(const lmf_comm *c) { return c->rank; }
static inline int lmf_comm_size(const lmf_comm *c) { return c->size; }
static inline lmf_status lmf_comm_allreduce_sum(lmf_comm *c, float *buf, size_t n) {
    return c->ops->allreduce_sum_f32(c, buf, n);
}
static inline lmf_status lmf_comm_allreduce_sum_f64(lmf_comm *c, double *buf, size_t n) {
    return c->ops->allreduce_sum_f64(c, buf, n);
}
static inline lmf_status lmf_comm_broadcast(lmf_comm *c, void *buf, size_t bytes, int root) {
    return c->ops->broadcast(c, buf, bytes, root);
}
static inline lmf_status lmf_comm_barrier(lmf_comm *c) { return c->ops->barrier(c); }
static inline lmf_status lmf_comm_reduce_scatter_sum(lmf_comm *c, const float *send, float *recv, size_t n) {
    return c->ops->reduce_scatter_sum_f32(c, send, recv, n);
}
static inline lmf_status lmf_comm_allgather(lmf_comm *c, const void *send, void *recv, size_t bytes) {
    return c->ops->allgather(c, send, recv, bytes);
}
static inline lmf_status lmf_comm_send(lmf_comm *c, const void *buf, size_t bytes, int peer, int tag) {
    return c->ops->send(c, buf, bytes, peer, tag);
}
static inline lmf_status lmf_comm_recv(lmf_comm *c, void *buf, size_t bytes, int peer, int tag) {
    return c->ops->recv(c, buf, bytes, peer, tag);
}
static inline lmf_status lmf_comm_sendrecv(lmf_comm *c, const void *sbuf, size_t sbytes, int speer, void *rbuf,
                                           size_t rbytes, int rpeer, int tag) {
    return c->ops->sendrecv(c, sbuf, sbytes, speer, rbuf, rbytes, rpeer, tag);
}
static inline lmf_status lmf_comm_split(lmf_comm *c, int color, int key, lmf_comm **out) {
    return c->ops->split(c, color, key, out);
}
static inline void lmf_comm_abort(lmf_comm *c, int code) { c->ops->abort(c, code); }
static inline lmf_status lmf_comm_ialltoallv(lmf_comm *c, const float *send, const size_t *scounts,
                                             const size_t *sdispls, float *recv, size_t rcount, lmf_comm_req **req) {
    return c->ops->ialltoallv_f32(c, send, scounts, sdispls, recv, rcount, req);
}
static inline lmf_status lmf_comm_alltoallv(lmf_comm *c, const float *send, const size_t *scounts,
                                            const size_t *sdispls, float *recv, const size_t *rcounts,
                                            const size_t *rdispls) {
    return c->ops->alltoallv_f32(c, send, scounts, sdispls, recv, rcounts, rdispls);
}
static inline lmf_status lmf_comm_test(lmf_comm *c, lmf_comm_req *req, int *done) {
    return c->ops->req_test(c, req, 0, done);
}
static inline lmf_status lmf_comm_wait(lmf_comm *c, lmf_comm_req *req) {
    int done;
    return c->ops->req_test(c, req, 1, &done);
}

#endif
