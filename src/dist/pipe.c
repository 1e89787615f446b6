/* pipe.c — see pipe.h. */
#include "dist/pipe.h"
#include "core/status.h"

void lmf_pipe_layers(int L, int p, int s, int *l0, int *l1) {
    LMF_CHECK(1 <= p && p <= L && 0 <= s && s < p);
    *l0 = (int)((long long)s * L / p);
    *l1 = (int)((long long)(s + 1) * L / p);
}

int lmf_pipe_max_ops(int M) { return 6 * M + 2; }

double lmf_pipe_bubble(int p, int M) { return (double)(p - 1) / M; }

int lmf_pipe_in_flight(int p, int s, int M) { return p - s < M ? p - s : M; }

static int put(lmf_pipe_op *ops, int n, int kind, int mb, int send, int recv) {
    ops[n] = (lmf_pipe_op){kind, mb, send, recv};
    return n + 1;
}

int lmf_pipe_schedule(int p, int s, int M, lmf_pipe_op *ops) {
    LMF_CHECK(p >= 1 && 0 <= s && s < p && M >= 1);
    int first = s == 0, last = s == p - 1, w = p - 1 - s < M ? p - 1 - s : M, r = M - w, n = 0;
    for (int i = 0; i < w; i++) {
        if (!first) n = put(ops, n, LMF_PIPE_RECV_ACT, -1, -1, i);
        n = put(ops, n, LMF_PIPE_FWD, i, -1, -1);
        if (!last) n = put(ops, n, LMF_PIPE_SEND_ACT, -1, i, -1);
    }
    if (r > 0 && !first) n = put(ops, n, LMF_PIPE_RECV_ACT, -1, -1, w);
    for (int j = 0; j < r; j++) {
        n = put(ops, n, LMF_PIPE_FWD, w + j, -1, -1);
        if (!last) n = put(ops, n, LMF_PIPE_SEND_ACT_RECV_GRAD, -1, w + j, j);
        n = put(ops, n, LMF_PIPE_BWD, j, -1, -1);
        if (first) continue;
        if (j == r - 1) n = put(ops, n, LMF_PIPE_SEND_GRAD, -1, j, -1);
        else n = put(ops, n, LMF_PIPE_SEND_GRAD_RECV_ACT, -1, j, w + j + 1);
    }
    for (int i = r; i < M; i++) {
        if (!last) n = put(ops, n, LMF_PIPE_RECV_GRAD, -1, -1, i);
        n = put(ops, n, LMF_PIPE_BWD, i, -1, -1);
        if (!first) n = put(ops, n, LMF_PIPE_SEND_GRAD, -1, i, -1);
    }
    LMF_CHECK(n <= lmf_pipe_max_ops(M));
    return n;
}
