/* comm_mpi.c — the MPI backend of comm.h (Open MPI from Debian; any MPI-3 library should do).
 *
 * Launch: `mpirun -np N lmforge train ...` (docs/distributed.md). The world communicator initialises MPI (threads:
 * FUNNELED, since only the thread that runs the step calls MPI while OpenMP threads compute) and its close finalises
 * it; split() makes the grid's sub-communicators. Errors come back as an lmf_status (MPI_ERRORS_RETURN) naming the
 * call, the rank and MPI's own message; a rank that dies is the launcher's to report (mpirun names it and ends
 * the job).
 *
 * Determinism: MPI's reductions pick their algorithm (and so the order of the additions) by message size, rank
 * count and topology, and some give different ranks results that differ in the last bit. Here a reduction moves
 * the operands (all-to-all for a reduce-scatter, all-gather for a small all-reduce) and each rank adds them in
 * comm.h's order itself: the same bits on every rank, on one host or several, for the same bandwidth as a ring
 * (each rank sends and receives (N-1)/N of the buffer in a reduce-scatter). A large all-reduce is reduce-scatter +
 * all-gather, as in a ring all-reduce.
 *
 * MPI counts are ints: buffers are moved in chunks of at most 2^30 bytes per rank. Scratch space grows to the
 * largest chunk seen and is reused, so a steady training step allocates nothing here. */
#include "dist/comm.h"
#include "core/alloc.h"
#include "core/status.h"
#include "core/sumtree.h"

#include <mpi.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    MPI_Comm comm;
    int world; /* owns MPI itself: close finalises */
    void *scratch;
    size_t scratch_bytes;
} mpi_state;

#define CHUNK_BYTES ((size_t)1 << 30)

static MPI_Comm comm_of(lmf_comm *c) { return ((mpi_state *)c->state)->comm; }

static lmf_status mpi_err(lmf_comm *c, const char *call, int rc) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return lmf_fail(LMF_ERR_IO, "comm mpi: %s failed on rank %d of %d: %s", call, c->rank, c->size, msg);
}
#define MPI_TRY(c, call, expr)                                                                                     \
    do {                                                                                                           \
        int rc_ = (expr);                                                                                          \
        if (rc_ != MPI_SUCCESS) return mpi_err(c, call, rc_);                                                      \
    } while (0)

static void *scratch(lmf_comm *c, size_t bytes) {
    mpi_state *s = c->state;
    if (bytes > s->scratch_bytes) {
        free(s->scratch);
        s->scratch = lmf_xmalloc(bytes);
        s->scratch_bytes = bytes;
    }
    return s->scratch;
}

/* Elements per chunk so that size x chunk x elem stays below 2^30 bytes (and an int). */
static size_t chunk_elems(lmf_comm *c, size_t elem) {
    size_t n = CHUNK_BYTES / elem / (size_t)c->size;
    return n ? n : 1;
}

static lmf_status mpi_reduce_scatter(lmf_comm *c, const float *send, float *recv, size_t n) {
    int P = c->size;
    size_t ch = chunk_elems(c, 2 * sizeof(float)); /* scratch holds the received blocks and a packed send */
    float *got = scratch(c, 2 * (size_t)P * (n < ch ? n : ch) * sizeof(float));
    for (size_t off = 0; off < n; off += ch) {
        size_t len = n - off < ch ? n - off : ch;
        const float *s = send;
        if (len != n) { /* a chunk of every block, packed: block q's elements [off, off + len) */
            float *packed = got + (size_t)P * len;
            for (int q = 0; q < P; q++)
                memcpy(packed + (size_t)q * len, send + (size_t)q * n + off, len * sizeof(float));
            s = packed;
        }
        MPI_TRY(c, "MPI_Alltoall (reduce-scatter)",
                MPI_Alltoall(s, (int)len, MPI_FLOAT, got, (int)len, MPI_FLOAT, comm_of(c)));
        int q = lmf_sumtree_blocks(got, len, P); /* comm.h's order (core/sumtree.h) */
        memcpy(recv + off, got + (size_t)q * len, len * sizeof(float));
    }
    return LMF_OK;
}

static lmf_status mpi_allgather(lmf_comm *c, const void *send, void *recv, size_t bytes) {
    int P = c->size;
    size_t ch = chunk_elems(c, 1);
    if (bytes <= ch) {
        MPI_TRY(c, "MPI_Allgather", MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, comm_of(c)));
        return LMF_OK;
    }
    char *got = scratch(c, (size_t)P * ch);
    for (size_t off = 0; off < bytes; off += ch) {
        size_t len = bytes - off < ch ? bytes - off : ch;
        MPI_TRY(c, "MPI_Allgather",
                MPI_Allgather((const char *)send + off, (int)len, MPI_BYTE, got, (int)len, MPI_BYTE, comm_of(c)));
        for (int q = 0; q < P; q++) memcpy((char *)recv + (size_t)q * bytes + off, got + (size_t)q * len, len);
    }
    return LMF_OK;
}

/* reduce-scatter of the buffer cut into size blocks (the last padded with zeros), then all-gather: each element is
 * summed once, in comm.h's order, by the rank that owns its block, and every rank receives those same bits */
static lmf_status mpi_allreduce_f32(lmf_comm *c, float *buf, size_t n) {
    if (c->size == 1 || n == 0) return LMF_OK;
    int P = c->size;
    size_t ch = chunk_elems(c, 4 * sizeof(float)) * (size_t)P;
    for (size_t off = 0; off < n; off += ch) {
        size_t len = n - off < ch ? n - off : ch, k = (len + (size_t)P - 1) / (size_t)P;
        float *padded = lmf_xmalloc((size_t)P * k * sizeof(float)), *mine = lmf_xmalloc(k * sizeof(float));
        memcpy(padded, buf + off, len * sizeof(float));
        memset(padded + len, 0, ((size_t)P * k - len) * sizeof(float));
        lmf_status s = mpi_reduce_scatter(c, padded, mine, k);
        if (s == LMF_OK) s = mpi_allgather(c, mine, padded, k * sizeof(float));
        if (s == LMF_OK) memcpy(buf + off, padded, len * sizeof(float));
        free(padded), free(mine);
        if (s != LMF_OK) return s;
    }
    return LMF_OK;
}

/* small buffers (a loss, a norm, a flag): every rank gathers every operand and adds them in rank order */
static lmf_status mpi_allreduce_f64(lmf_comm *c, double *buf, size_t n) {
    if (c->size == 1 || n == 0) return LMF_OK;
    int P = c->size;
    double *all = lmf_xmalloc((size_t)P * n * sizeof(double));
    lmf_status s = mpi_allgather(c, buf, all, n * sizeof(double));
    if (s == LMF_OK)
        for (size_t i = 0; i < n; i++) {
            double sum = all[i];
            for (int q = 1; q < P; q++) sum += all[(size_t)q * n + i];
            buf[i] = sum;
        }
    free(all);
    return s;
}

static lmf_status mpi_broadcast(lmf_comm *c, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= c->size)
        return lmf_fail(LMF_ERR_ARG, "comm mpi: broadcast from rank %d, but ranks are 0..%d", root, c->size - 1);
    for (size_t off = 0; off < bytes; off += CHUNK_BYTES) {
        size_t len = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        MPI_TRY(c, "MPI_Bcast", MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, root, comm_of(c)));
    }
    return LMF_OK;
}

static lmf_status mpi_barrier(lmf_comm *c) {
    MPI_TRY(c, "MPI_Barrier", MPI_Barrier(comm_of(c)));
    return LMF_OK;
}

static lmf_status check_peer(lmf_comm *c, const char *what, int peer) {
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return lmf_fail(LMF_ERR_ARG, "comm mpi: %s rank %d from rank %d of %d", what, peer, c->rank, c->size);
    return LMF_OK;
}

static lmf_status mpi_send(lmf_comm *c, const void *buf, size_t bytes, int peer, int tag) {
    LMF_TRY(check_peer(c, "send to", peer));
    for (size_t off = 0; off < bytes || off == 0; off += CHUNK_BYTES) {
        size_t len = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        MPI_TRY(c, "MPI_Send", MPI_Send((const char *)buf + off, (int)len, MPI_BYTE, peer, tag, comm_of(c)));
        if (!bytes) break;
    }
    return LMF_OK;
}

static lmf_status mpi_recv(lmf_comm *c, void *buf, size_t bytes, int peer, int tag) {
    LMF_TRY(check_peer(c, "receive from", peer));
    for (size_t off = 0; off < bytes || off == 0; off += CHUNK_BYTES) {
        size_t len = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        MPI_TRY(c, "MPI_Recv",
                MPI_Recv((char *)buf + off, (int)len, MPI_BYTE, peer, tag, comm_of(c), MPI_STATUS_IGNORE));
        if (!bytes) break;
    }
    return LMF_OK;
}

static lmf_status mpi_sendrecv(lmf_comm *c, const void *sbuf, size_t sbytes, int speer, void *rbuf, size_t rbytes,
                               int rpeer, int tag) {
    LMF_TRY(check_peer(c, "send to", speer));
    LMF_TRY(check_peer(c, "receive from", rpeer));
    /* chunk by chunk on both sides: the peer's matching call walks the same offsets (its sizes are ours swapped) */
    size_t most = sbytes > rbytes ? sbytes : rbytes;
    for (size_t off = 0; off < most || off == 0; off += CHUNK_BYTES) {
        size_t sl = off < sbytes ? (sbytes - off < CHUNK_BYTES ? sbytes - off : CHUNK_BYTES) : 0;
        size_t rl = off < rbytes ? (rbytes - off < CHUNK_BYTES ? rbytes - off : CHUNK_BYTES) : 0;
        MPI_TRY(c, "MPI_Sendrecv",
                MPI_Sendrecv((const char *)sbuf + (sl ? off : 0), (int)sl, MPI_BYTE, speer, tag,
                             (char *)rbuf + (rl ? off : 0), (int)rl, MPI_BYTE, rpeer, tag, comm_of(c),
                             MPI_STATUS_IGNORE));
        if (!most) break;
    }
    return LMF_OK;
}

/* MPI reads the count and displacement arrays of a nonblocking call until it completes, so they live with it. */
struct lmf_comm_req {
    MPI_Request r;
    int *counts; /* scounts, sdispls, rcounts, rdispls: 4 x size */
};

static lmf_status mpi_ialltoallv(lmf_comm *c, const float *send, const size_t *scounts, const size_t *sdispls,
                                 float *recv, size_t rcount, lmf_comm_req **out) {
    int P = c->size;
    *out = NULL;
    size_t total = (size_t)P * rcount;
    for (int q = 0; q < P; q++) total = sdispls[q] + scounts[q] > total ? sdispls[q] + scounts[q] : total;
    if (total > INT_MAX)
        return lmf_fail(LMF_ERR_ARG, "comm mpi: MPI_Ialltoallv of %zu floats on rank %d: over MPI's int counts (the "
                        "caller cuts its buffers into pieces below 2^31 elements)", total, c->rank);
    lmf_comm_req *req = lmf_xmalloc(sizeof *req);
    req->counts = lmf_xmalloc(4 * (size_t)P * sizeof(int));
    int *sc = req->counts, *sd = sc + P, *rc = sd + P, *rd = rc + P;
    for (int q = 0; q < P; q++)
        sc[q] = (int)scounts[q], sd[q] = (int)sdispls[q], rc[q] = (int)rcount, rd[q] = (int)((size_t)q * rcount);
    int err = MPI_Ialltoallv(send, sc, sd, MPI_FLOAT, recv, rc, rd, MPI_FLOAT, comm_of(c), &req->r);
    if (err != MPI_SUCCESS) {
        free(req->counts), free(req);
        return mpi_err(c, "MPI_Ialltoallv", err);
    }
    *out = req;
    return LMF_OK;
}

static lmf_status mpi_req_test(lmf_comm *c, lmf_comm_req *req, int wait, int *done) {
    *done = 1;
    if (!req) return LMF_OK;
    int err = wait ? MPI_Wait(&req->r, MPI_STATUS_IGNORE) : MPI_Test(&req->r, done, MPI_STATUS_IGNORE);
    if (err != MPI_SUCCESS) *done = 1; /* a failed request is finished too: freed below, the error returned */
    if (*done) free(req->counts), free(req);
    if (err != MPI_SUCCESS) return mpi_err(c, wait ? "MPI_Wait (all-to-all)" : "MPI_Test (all-to-all)", err);
    return LMF_OK;
}

static lmf_status mpi_alltoallv(lmf_comm *c, const float *send, const size_t *scounts, const size_t *sdispls,
                                float *recv, const size_t *rcounts, const size_t *rdispls) {
    int P = c->size;
    for (int q = 0; q < P; q++)
        if (sdispls[q] + scounts[q] > INT_MAX || rdispls[q] + rcounts[q] > INT_MAX)
            return lmf_fail(LMF_ERR_ARG, "comm mpi: MPI_Alltoallv with a piece ending past 2^31 floats on rank %d: "
                            "over MPI's int counts (the caller cuts its buffers into smaller pieces)", c->rank);
    int *sc = scratch(c, 4 * (size_t)P * sizeof(int)), *sd = sc + P, *rc = sd + P, *rd = rc + P;
    for (int q = 0; q < P; q++)
        sc[q] = (int)scounts[q], sd[q] = (int)sdispls[q], rc[q] = (int)rcounts[q], rd[q] = (int)rdispls[q];
    MPI_TRY(c, "MPI_Alltoallv", MPI_Alltoallv(send, sc, sd, MPI_FLOAT, recv, rc, rd, MPI_FLOAT, comm_of(c)));
    return LMF_OK;
}

static void mpi_abort(lmf_comm *c, int code) { MPI_Abort(comm_of(c), code); }

static void mpi_close(lmf_comm *c) {
    mpi_state *s = c->state;
    if (s->world) {
        int done = 0;
        MPI_Finalized(&done);
        if (!done) MPI_Finalize();
    } else {
        MPI_Comm_free(&s->comm);
    }
    free(s->scratch);
    free(s);
    free(c);
}

static lmf_status mpi_split(lmf_comm *c, int color, int key, lmf_comm **out);

static const lmf_comm_ops mpi_ops = {"mpi", mpi_allreduce_f32, mpi_allreduce_f64, mpi_broadcast, mpi_barrier,
                                     mpi_reduce_scatter, mpi_allgather, mpi_send, mpi_recv, mpi_split, mpi_abort,
                                     mpi_close, mpi_sendrecv, mpi_ialltoallv, mpi_req_test, mpi_alltoallv};

static lmf_comm *wrap(MPI_Comm comm, int world) {
    lmf_comm *c = lmf_xmalloc(sizeof *c);
    mpi_state *s = lmf_xcalloc(1, sizeof *s);
    s->comm = comm, s->world = world;
    *c = (lmf_comm){.ops = &mpi_ops, .state = s};
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->size);
    return c;
}

static lmf_status mpi_split(lmf_comm *c, int color, int key, lmf_comm **out) {
    MPI_Comm sub;
    *out = NULL;
    MPI_TRY(c, "MPI_Comm_split", MPI_Comm_split(comm_of(c), color, key, &sub));
    *out = wrap(sub, 0);
    return LMF_OK;
}

lmf_status lmf_comm_mpi_open(lmf_comm **out) {
    *out = NULL;
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (inited)
        return lmf_fail(LMF_ERR_ARG, "comm mpi: MPI is initialised already (one world communicator per process)");
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return lmf_fail(LMF_ERR_IO, "comm mpi: MPI_Init_thread failed (launch with mpirun; see docs/distributed.md)");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    *out = wrap(MPI_COMM_WORLD, 1);
    return LMF_OK;
}
