/* adamw.c — AdamW with decoupled weight decay, written as torch.optim.AdamW computes it. */
#include "kernels/kernels.h"

#include <math.h>

void adamw_update(float *p, const float *g, float *m, float *v, long n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    float step = lr / bc1, bc2_sqrt = sqrtf(bc2), decay = 1.0f - lr * weight_decay;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

double sum_squares(const float *x, long n) {
    double acc = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : acc)
    for (long i = 0; i < n; i++) acc += (double)x[i] * x[i];
    return acc;
}
