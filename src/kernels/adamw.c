/* adamw.c — AdamW with decoupled weight decay, written as torch.optim.AdamW computes it. */
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "core/parallel.h"
#include "core/status.h"

#include <math.h>

void lmf_adamw_update(float *p, const float *g, float *m, float *v, long n, float lr, float beta1, float beta2,
                      float eps, float weight_decay, float grad_scale, int t) {
    const lmf_vec_ops *ops = lmf_vec();
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    float step = lr / bc1, bc2_sqrt = sqrtf(bc2), decay = 1.0f - lr * weight_decay;
#pragma omp parallel
    {
        long lo, hi;
        lmf_omp_range(n, &lo, &hi);
        if (hi > lo)
            ops->adamw(p + lo, g + lo, m + lo, v + lo, hi - lo, beta1, beta2, eps, decay, step, bc2_sqrt, grad_scale);
    }
}

double lmf_sum_squares(const float *x, long n) {
    /* Fixed-order combination of per-thread partial sums (an OpenMP reduction combines in arrival order), so the
     * gradient norm, and hence clipping, is bit-for-bit repeatable for a given thread count. */
    double partial[256] = {0};
    int nt = 1;
#pragma omp parallel
    {
        long lo, hi;
        lmf_omp_range(n, &lo, &hi);
        double acc = hi > lo ? lmf_vec()->sumsq(x + lo, hi - lo) : 0.0;
        int t = omp_get_thread_num();
        if (t < 256) partial[t] = acc;
#pragma omp single
        nt = omp_get_num_threads();
    }
    LMF_CHECK(nt <= 256);
    double total = 0.0;
    for (int t = 0; t < nt; t++) total += partial[t];
    return total;
}
