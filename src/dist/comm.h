/* comm.h — the communication interface between the processes of one training job.
 *
 * A training step (train/step.h) exchanges gradients through an lmf_comm: every process ("rank") computes the
 * gradients of its own micro-batches, then all-reduces them so that every rank applies the same update. The
 * interface is the handful of collectives data parallelism needs (llm.c's multi-GPU path uses the same set):
 *   allreduce-sum of a float (gradients) or double (loss sums) buffer, in place, on every rank;
 *   broadcast of bytes from one rank (initial weights, a resumed checkpoint, the config);
 *   barrier (e.g. before rank 0 renames a checkpoint the others wait for).
 *
 * Backends sit behind one table of function pointers, redis ae_epoll.c / ae_kqueue.c style: each backend is one
 * file (comm_self.c now, comm_mpi.c later) exporting one opener that fills an lmf_comm with its lmf_comm_ops, and
 * the job picks one at run time by name (lmf_comm_open). Callers use the lmf_comm_* wrappers below, never the
 * backend directly, so the step and the trainer do not change when a backend is added.
 *
 * Contract for every backend: collectives are called by all ranks in the same order with the same sizes; results
 * are identical on every rank (the reduction order is the backend's, fixed for a given size); errors are an
 * lmf_status naming the backend and the call. With size 1 every collective leaves the buffer as it is, so a single
 * process computes bit for bit what it computed before this interface existed.
 *
 * Ownership: lmf_comm_open allocates the handle and lmf_comm_close frees it (and finalises the backend);
 * lmf_comm_self() is a shared static handle that needs no close (closing it does nothing). */
#ifndef LMF_DIST_COMM_H
#define LMF_DIST_COMM_H

#include "lmforge.h"

#include <stddef.h>

typedef struct lmf_comm lmf_comm;

typedef struct {
    const char *name;                                                     /* "self", "mpi", ... */
    lmf_status (*allreduce_sum_f32)(lmf_comm *c, float *buf, size_t n);  /* in place: buf = sum over ranks */
    lmf_status (*allreduce_sum_f64)(lmf_comm *c, double *buf, size_t n);
    lmf_status (*broadcast)(lmf_comm *c, void *buf, size_t bytes, int root);
    lmf_status (*barrier)(lmf_comm *c);
    void (*close)(lmf_comm *c); /* frees backend state and the handle itself */
} lmf_comm_ops;

struct lmf_comm {
    const lmf_comm_ops *ops;
    int rank, size; /* 0 <= rank < size */
    void *state;    /* the backend's (e.g. an MPI communicator) */
};

/* Opens the backend named `backend` ("self"; "mpi" once comm_mpi.c exists and the build has MPI). An unknown or
 * unavailable backend is LMF_ERR_ARG naming it and the ones available. */
lmf_status lmf_comm_open(const char *backend, lmf_comm **out);
void lmf_comm_close(lmf_comm *c); /* NULL is fine */
/* The single-process communicator (rank 0 of 1); static, shared, never needs closing. */
lmf_comm *lmf_comm_self(void);
/* Backend openers (one per backend file). */
lmf_status lmf_comm_self_open(lmf_comm **out);

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

#endif
