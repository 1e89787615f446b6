/* comm_self.c — the single-process backend of comm.h: one rank, every collective a no-op or a copy.
 *
 * A sum over one rank is the buffer itself and a broadcast from rank 0 to rank 0 moves nothing, so these functions
 * touch no data in place: a single-process run computes exactly what it did before the communication interface
 * existed. There is no peer to send to or receive from. */
#include "dist/comm.h"
#include "core/alloc.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

static lmf_status self_allreduce_f32(lmf_comm *c, float *buf, size_t n) { return LMF_OK; }
static lmf_status self_allreduce_f64(lmf_comm *c, double *buf, size_t n) { return LMF_OK; }

static lmf_status self_broadcast(lmf_comm *c, void *buf, size_t bytes, int root) {
    if (root != 0) return lmf_fail(LMF_ERR_ARG, "comm self: broadcast from rank %d, but the only rank is 0", root);
    return LMF_OK;
}

static lmf_status self_barrier(lmf_comm *c) { return LMF_OK; }

static lmf_status self_reduce_scatter(lmf_comm *c, const float *send, float *recv, size_t n) {
    memcpy(recv, send, n * sizeof(float));
    return LMF_OK;
}

static lmf_status self_allgather(lmf_comm *c, const void *send, void *recv, size_t bytes) {
    memcpy(recv, send, bytes);
    return LMF_OK;
}

static lmf_status self_send(lmf_comm *c, const void *buf, size_t bytes, int peer, int tag) {
    return lmf_fail(LMF_ERR_ARG, "comm self: send to rank %d, but the only rank is 0", peer);
}

static lmf_status self_recv(lmf_comm *c, void *buf, size_t bytes, int peer, int tag) {
    return lmf_fail(LMF_ERR_ARG, "comm self: receive from rank %d, but the only rank is 0", peer);
}

static lmf_status self_sendrecv(lmf_comm *c, const void *sbuf, size_t sbytes, int speer, void *rbuf, size_t rbytes,
                                int rpeer, int tag) {
    return lmf_fail(LMF_ERR_ARG, "comm self: send to rank %d and receive from rank %d, but the only rank is 0", speer,
                    rpeer);
}

static lmf_status self_ialltoallv(lmf_comm *c, const float *send, const size_t *scounts, const size_t *sdispls,
                                  float *recv, size_t rcount, lmf_comm_req **req) {
    memcpy(recv, send + sdispls[0], rcount * sizeof(float));
    *req = NULL;
    return LMF_OK;
}

static lmf_status self_req_test(lmf_comm *c, lmf_comm_req *req, int wait, int *done) {
    *done = 1;
    return LMF_OK;
}

static lmf_status self_alltoallv(lmf_comm *c, const float *send, const size_t *scounts, const size_t *sdispls,
                                 float *recv, const size_t *rcounts, const size_t *rdispls) {
    memcpy(recv + rdispls[0], send + sdispls[0], rcounts[0] * sizeof(float));
    return LMF_OK;
}

static lmf_status self_split(lmf_comm *c, int color, int key, lmf_comm **out) { return lmf_comm_self_open(out); }
static void self_abort(lmf_comm *c, int code) {}

static void self_close(lmf_comm *c) { free(c); }
static void self_close_static(lmf_comm *c) {}

#define SELF_OPS(close)                                                                                            \
    {"self", self_allreduce_f32, self_allreduce_f64, self_broadcast, self_barrier, self_reduce_scatter,            \
     self_allgather, self_send, self_recv, self_split, self_abort, close, self_sendrecv, self_ialltoallv,           \
     self_req_test, self_alltoallv}
static const lmf_comm_ops self_ops = SELF_OPS(self_close);
static const lmf_comm_ops self_static_ops = SELF_OPS(self_close_static);

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
