/* parallel.h — small OpenMP helpers shared by the kernels. */
#ifndef LMF_CORE_PARALLEL_H
#define LMF_CORE_PARALLEL_H

#include <omp.h>

/* The calling thread's contiguous share [*lo, *hi) of n items, inside a parallel region. */
static inline void lmf_omp_range(long n, long *lo, long *hi) {
    long nt = omp_get_num_threads(), t = omp_get_thread_num();
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

#endif
