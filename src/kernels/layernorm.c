/* layernorm.c — LayerNorm forward/backward over rows (biased variance, as torch.nn.LayerNorm). */
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "core/parallel.h"

void lmf_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int N, int C, float eps) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) v->layernorm(out + (long)n * C, &mean[n], &rstd[n], inp + (long)n * C, w, b, C, eps);
}

void lmf_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            const float *mean, const float *rstd, int N, int C) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++)
            v->layernorm_backward(dinp + (long)n * C, dout + (long)n * C, inp + (long)n * C, w, mean[n], rstd[n], C);
        /* Parameter gradients sum over rows: split channels across threads so no two threads write one slot. */
        long c0, c1;
        lmf_omp_range(C, &c0, &c1);
        if (c1 > c0)
            for (int n = 0; n < N; n++)
                v->norm_param_grad(dw + c0, db + c0, dout + (long)n * C + c0, inp + (long)n * C + c0, mean[n], rstd[n],
                                   (int)(c1 - c0));
    }
}
