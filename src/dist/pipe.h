/* pipe.h — pipeline parallelism's arithmetic: which layers a stage holds, and the 1F1B schedule a stage runs over
 * the M micro-batches of one step (PipeDream-Flush / Megatron-LM's non-interleaved schedule). Pure functions: the
 * training step (train/pipeline.h) executes the operations, tests/test_dist.c checks them without a second process.
 *
 * Layers: L over p stages, stage s holds [floor(s L / p), floor((s + 1) L / p)): contiguous, in order, sizes
 * differing by at most one. Every stage needs at least one layer (p <= L).
 *
 * Schedule of stage s of p over M micro-batches, w = min(p - 1 - s, M) warm-up forwards, r = M - w:
 *   warm-up   w times:  recv act(i) from s-1, F(i), send act(i) to s+1
 *             then (r > 0): recv act(w) from s-1
 *   steady    r times (j = 0..r-1):  F(w+j), send act(w+j) to s+1 while receiving grad(j) from it, B(j),
 *             then send grad(j) to s-1 while receiving act(w+j+1) from it (the last time: only send grad(j))
 *   cool-down w times (i = r..M-1): recv grad(i) from s+1, B(i), send grad(i) to s-1
 * where the first stage has no s-1 and the last no s+1 (those halves are dropped). Backwards run in micro-batch
 * order, as single-process gradient accumulation does, and a stage holds at most min(p - s, M) micro-batches'
 * activations (forward done, backward not yet). The paired send/receive (comm.h's sendrecv) is what keeps
 * neighbouring stages from both blocking in a send to each other; test_dist.c runs the schedules of every stage
 * against each other with sends that wait for their receive and finds no deadlock.
 *
 * The idle share of a stage's time (the bubble) is (p - 1) / (M + p - 1) of a step; the usual figure quoted against
 * the compute, (p - 1) / M (Megatron-LM's paper), is what lmf_pipe_bubble returns. */
#ifndef LMF_DIST_PIPE_H
#define LMF_DIST_PIPE_H

enum {
    LMF_PIPE_FWD,           /* forward of micro-batch `mb` */
    LMF_PIPE_BWD,           /* backward of micro-batch `mb` */
    LMF_PIPE_RECV_ACT,      /* from s - 1: act(recv) */
    LMF_PIPE_SEND_ACT,      /* to s + 1: act(send) */
    LMF_PIPE_RECV_GRAD,     /* from s + 1: grad(recv) */
    LMF_PIPE_SEND_GRAD,     /* to s - 1: grad(send) */
    LMF_PIPE_SEND_ACT_RECV_GRAD, /* with s + 1: act(send) out, grad(recv) in */
    LMF_PIPE_SEND_GRAD_RECV_ACT, /* with s - 1: grad(send) out, act(recv) in */
};

typedef struct {
    int kind;
    int mb;         /* FWD / BWD: the micro-batch */
    int send, recv; /* the micro-batches of what is sent and received (-1: none) */
} lmf_pipe_op;

/* Stage s's layers [*l0, *l1) of L over p stages (1 <= p <= L, 0 <= s < p). */
void lmf_pipe_layers(int L, int p, int s, int *l0, int *l1);
/* The most operations lmf_pipe_schedule writes for M micro-batches. */
int lmf_pipe_max_ops(int M);
/* Writes stage s's operations for one step into ops (lmf_pipe_max_ops(M) of room); returns how many. */
int lmf_pipe_schedule(int p, int s, int M, lmf_pipe_op *ops);
/* The bubble fraction (p - 1) / M. */
double lmf_pipe_bubble(int p, int M);
/* Micro-batches stage s keeps in flight at most: min(p - s, M). */
int lmf_pipe_in_flight(int p, int s, int M);

#endif
