/* rmsnorm.c — RMSNorm forward/backward (as Llama: x / sqrt(mean(x^2) + eps) * w). */
#include "kernels/kernels.h"
#include "core/parallel.h"

#include <math.h>

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        float *o = out + (long)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float s = 1.0f / sqrtf(ss / C + eps);
        for (int c = 0; c < C; c++) o[c] = x[c] * s * w[c];
        rstd[n] = s;
    }
}

void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, const float *rstd,
                      int N, int C) {
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (long)n * C, *d = dout + (long)n * C;
            float *dx = dinp + (long)n * C;
            float s = rstd[n];
            /* dx = s * dn - x * s^3 * mean(dn * x), dn = dout * w */
            float dot = 0.0f;
            for (int c = 0; c < C; c++) dot += d[c] * w[c] * x[c];
            float k = s * s * s * dot / C;
            for (int c = 0; c < C; c++) dx[c] += s * d[c] * w[c] - k * x[c];
        }
        long c0, c1;
        lmf_omp_range(C, &c0, &c1);
        for (int n = 0; n < N; n++) {
            const float *x = inp + (long)n * C, *d = dout + (long)n * C;
            float s = rstd[n];
            for (long c = c0; c < c1; c++) dw[c] += d[c] * x[c] * s;
        }
    }
}
