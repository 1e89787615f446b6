/* comm_self.c — the single-process backend of comm.h: one rank, every collective a no-op.
 *
 * A sum over one rank is the buffer itself and a broadcast from rank 0 to rank 0 moves nothing, so these functions
 * touch no data: a single-process run computes exactly what it did before the communication interface existed. */
#include "dist/comm.h"
#include "core/alloc.h"
#include "core/status.h"

#include <stdlib.h>

static lmf_status self_allreduce_f32(lmf_comm *c, float *buf, size_t n) { return LMF_OK; }
static lmf_status self_allreduce_f64(lmf_comm *c, double *buf, size_t n) { return LMF_OK; }

static lmf_status self_broadcast(lmf_comm *c, void *buf, size_t bytes, int root) {
    if (root != 0) return lmf_fail(LMF_ERR_ARG, "comm self: broadcast from rank %d, but the only rank is 0", root);
    return LMF_OK;
}

static lmf_status self_barrier(lmf_comm *c) { return LMF_OK; }

static void self_close(lmf_comm *c) { free(c); }
static void self_close_static(lmf_comm *c) {}

static const lmf_comm_ops self_ops = {"self", self_allreduce_f32, self_allreduce_f64, self_broadcast, self_barrier,
                                      self_close};
static const lmf_comm_ops self_static_ops = {"self", self_allreduce_f32, self_allreduce_f64, self_broadcast,
                                             self_barrier, self_close_static};

lmf_status lmf_comm_self_open(lmf_comm **out) {
    lmf_comm *c = lmf_xmalloc(sizeof *c);
    *c = (lmf_comm){.ops = &self_ops, .rank = 0, .size = 1};
    *out = c;
    return LMF_OK;
}

lmf_comm *lmf_comm_self(void) {
    /* stateless, so one static handle serves every job and thread */
    static lmf_comm self = {.ops = &self_static_ops, .rank = 0, .size = 1};
    return &self;
}
