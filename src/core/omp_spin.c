/* omp_spin.c — bound how long idle OpenMP threads spin (lmf_bound_omp_spin, lmforge.h).
 *
 * libgomp's idle threads spin up to 300,000 pause iterations (milliseconds) waiting for the next parallel region
 * before they sleep. On a machine where another process keeps a core busy, those spins take the time the working
 * threads need: a 12-token prompt ran 4.1 s instead of 0.17 s on 2 cores (bench/busy_bench.sh measures it). The
 * spin limit is read once, when libgomp loads, before main runs, so the only way to set it from the program is to
 * set GOMP_SPINCOUNT and start the program again. LMF_OMP_SPIN iterations is about the 50 us the decode barriers
 * (core/barrier.c) spin before they sleep: long enough to cover the gaps between a step's parallel regions. */
#include "lmforge.h"

#include <stdlib.h>
#include <unistd.h>

#define LMF_OMP_SPIN "1000"

void lmf_bound_omp_spin(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("LMF_OMP_RESTARTED")) return;
    if (setenv("GOMP_SPINCOUNT", LMF_OMP_SPIN, 1) || setenv("LMF_OMP_RESTARTED", "1", 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* still here: the exec failed; run as we are */
}
