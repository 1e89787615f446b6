/* layernorm.c — LayerNorm forward/backward (biased variance, as torch.nn.LayerNorm). */
#include "kernels/kernels.h"
#include "core/parallel.h"

#include <math.h>

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int N,
                       int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        float *o = out + (long)n * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += d * d;
        }
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const float *mean, const float *rstd, int N, int C) {
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (long)n * C, *d = dout + (long)n * C;
            float *dx = dinp + (long)n * C;
            float m = mean[n], s = rstd[n];
            /* dx = s * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * w */
            float sum_d = 0.0f, sum_dn = 0.0f;
            for (int c = 0; c < C; c++) {
                float dn = d[c] * w[c];
                sum_d += dn;
                sum_dn += dn * (x[c] - m) * s;
            }
            sum_d /= C;
            sum_dn /= C;
            for (int c = 0; c < C; c++) {
                float norm = (x[c] - m) * s;
                dx[c] += s * (d[c] * w[c] - sum_d - norm * sum_dn);
            }
        }
        /* Parameter gradients sum over rows: split channels across threads so no two threads write one slot. */
        long c0, c1;
        lmf_omp_range(C, &c0, &c1);
        for (int n = 0; n < N; n++) {
            const float *x = inp + (long)n * C, *d = dout + (long)n * C;
            float m = mean[n], s = rstd[n];
            for (long c = c0; c < c1; c++) {
                dw[c] += d[c] * (x[c] - m) * s;
                db[c] += d[c];
            }
        }
    }
}
