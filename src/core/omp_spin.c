/* omp_spin.c — bound how long idle OpenMP threads spin when the machine is busy (lmf_bound_omp_spin, lmforge.h).
 *
 * libgomp's idle threads spin up to 300,000 pause iterations (milliseconds) waiting for the next parallel region
 * before they sleep. On an idle machine that is what training wants: its serial stretches between regions are long
 * enough that threads which slept pay the wake-up, and any shorter spin measured 10-25% slower steps here
 * (bench/busy_bench.sh). On a machine where another process keeps a core busy, the same spins take the time the
 * working threads need: prefill ran 1.7x and a training step 1.4x faster with the spin bounded, a 12-token prompt
 * 4.1 s instead of 0.17 s in the report. So the spin is bounded only when other work is running when the
 * program starts: /proc/stat's procs_running, sampled five times over ~1 ms, counts runnable tasks besides this
 * one (no OpenMP thread exists yet). libgomp reads its spin limit once, when it loads, before main runs, so bounding
 * it means setting GOMP_SPINCOUNT and starting the program again. LMF_OMP_SPIN iterations is about the 50 us the
 * decode barriers (core/barrier.c) spin before they sleep. LMF_OMP_BUSY=1 / 0 overrides the detection. */
#include "lmforge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LMF_OMP_SPIN "1000"

/* Runnable tasks on the machine besides this one, at one instant; -1 if /proc/stat cannot say. */
static int others_running(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "procs_running ", 14)) n = atoi(line + 14) - 1;
    fclose(f);
    return n;
}

static int machine_busy(void) {
    const char *force = getenv("LMF_OMP_BUSY");
    if (force && *force) return atoi(force) != 0;
    int busy = 0;
    for (int i = 0; i < 5; i++) { /* most samples must see another runnable task: a daemon's blip is not load */
        busy += others_running() > 0;
        nanosleep(&(struct timespec){0, 250000}, NULL);
    }
    return busy >= 3;
}

void lmf_bound_omp_spin(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("LMF_OMP_RESTARTED")) return;
    if (!machine_busy()) return;
    if (setenv("GOMP_SPINCOUNT", LMF_OMP_SPIN, 1) || setenv("LMF_OMP_RESTARTED", "1", 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* still here: the exec failed; run as we are */
}
