/* rmsnorm.c — RMSNorm forward/backward over rows (as Llama: x / sqrt(mean(x^2) + eps) * w). */
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "core/parallel.h"

#include <stddef.h>

void lmf_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) v->rmsnorm(out + (long)n * C, &rstd[n], inp + (long)n * C, w, C, eps);
}

void lmf_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                          const float *rstd, int N, int C) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++)
            v->rmsnorm_backward(dinp + (long)n * C, dout + (long)n * C, inp + (long)n * C, w, rstd[n], C);
        long c0, c1;
        lmf_omp_range(C, &c0, &c1);
        if (c1 > c0)
            for (int n = 0; n < N; n++)
                v->norm_param_grad(dw + c0, NULL, dout + (long)n * C + c0, inp + (long)n * C + c0, 0.0f, rstd[n],
                                   (int)(c1 - c0));
    }
}
