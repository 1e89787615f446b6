/* bench_comm.c — the communicator's collectives alone (no training): per buffer size, the median time of
 * ZeRO-1's pair (reduce-scatter of n floats into shards, all-gather of the shards) and the bandwidth each rank sees:
 * it sends and receives 2 (N-1)/N x n x 4 bytes per pair. Run under mpirun (bench/dist_bench.sh does, on one host
 * and across two network namespaces):  mpirun -np 2 build/bench_comm [MAX_FLOATS] [REPS] */
#include "core/alloc.h"
#include "core/progress.h"
#include "core/status.h"
#include "dist/comm.h"
#include "dist/zero.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t max = argc > 1 ? strtoull(argv[1], NULL, 10) : (size_t)16 << 20;
    int reps = argc > 2 ? atoi(argv[2]) : 9;
    lmf_comm *c;
    if (lmf_comm_open("mpi", &c) != LMF_OK) {
        fprintf(stderr, "bench_comm: %s\n", lmf_last_error());
        return 1;
    }
    int N = lmf_comm_size(c), r = lmf_comm_rank(c);
    float *buf = lmf_alloc_big(max * sizeof(float));
    for (size_t i = 0; i < max; i++) buf[i] = (float)(i % 1000) * 1e-3f;
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (r == 0) printf("| floats | MB | ms (reduce-scatter + all-gather) | GB/s per rank |\n|---|---|---|---|\n");
    for (size_t n = 1 << 16; n <= max; n *= 4) {
        lmf_zero z;
        lmf_zero_init(&z, c, n, 0); /* the trainer's bucket */
        for (int k = -1; k < reps; k++) {
            lmf_comm_barrier(c);
            double t0 = lmf_now();
            if (lmf_zero_reduce_scatter(&z, buf) != LMF_OK || lmf_zero_allgather(&z, buf) != LMF_OK) {
                fprintf(stderr, "bench_comm: %s\n", lmf_last_error());
                return 1;
            }
            if (k >= 0) t[k] = lmf_now() - t0; /* the first pass warms the buffers up */
        }
        qsort(t, (size_t)reps, sizeof *t, cmp);
        double med = t[reps / 2], bytes = 2.0 * (N - 1) / N * (double)n * 4;
        if (r == 0) printf("| %zu | %.1f | %.2f | %.2f |\n", n, n * 4 / 1e6, med * 1e3, bytes / med / 1e9);
        lmf_zero_free(&z);
    }
    lmf_free_big(buf);
    free(t);
    lmf_comm_close(c);
    return 0;
}
