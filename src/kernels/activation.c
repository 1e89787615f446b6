/* activation.c — GELU (tanh approximation), SwiGLU, GeGLU and the residual add, spread over threads in chunks. */
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "core/parallel.h"

void lmf_gelu_forward(float *out, const float *inp, long n) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel
    {
        long lo, hi;
        lmf_omp_range(n, &lo, &hi);
        if (hi > lo) v->gelu(out + lo, inp + lo, hi - lo);
    }
}

void lmf_gelu_backward(float *dinp, const float *inp, const float *dout, long n) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel
    {
        long lo, hi;
        lmf_omp_range(n, &lo, &hi);
        if (hi > lo) v->gelu_backward(dinp + lo, inp + lo, dout + lo, hi - lo);
    }
}

void lmf_swiglu_forward(float *out, const float *gu, int N, int F) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) v->swiglu(out + (long)n * F, gu + (long)n * 2 * F, gu + (long)n * 2 * F + F, F);
}

void lmf_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int F) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gu + (long)n * 2 * F;
        float *dg = dgu + (long)n * 2 * F;
        v->swiglu_backward(dg, dg + F, dout + (long)n * F, g, g + F, F);
    }
}

void lmf_geglu_forward(float *out, const float *gu, int N, int F) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *o = out + (long)n * F;
        const float *up = gu + (long)n * 2 * F + F;
        v->gelu(o, gu + (long)n * 2 * F, F);
        for (int j = 0; j < F; j++) o[j] *= up[j];
    }
}

/* d up = dout gelu(gate); d gate = gelu'(gate) (dout up), the second through the GELU's own backward */
void lmf_geglu_backward(float *dgu, const float *dout, const float *gu, int N, int F) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gu + (long)n * 2 * F, *up = g + F, *d = dout + (long)n * F;
        float *dg = dgu + (long)n * 2 * F, *du = dg + F;
        for (int j = 0; j < F; j++) du[j] = d[j] * up[j]; /* d(gelu(gate)) for a moment */
        v->gelu_backward(dg, g, du, F);
        v->gelu(du, g, F);
        for (int j = 0; j < F; j++) du[j] *= d[j];
    }
}

void lmf_relu_forward(float *out, const float *inp, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : 0;
}

void lmf_relu_backward(float *dinp, const float *inp, const float *dout, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) dinp[i] = inp[i] > 0 ? dout[i] : 0.0f;
}

void lmf_residual_forward(float *out, const float *a, const float *b, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}
