/* crossentropy.c — fused softmax + cross-entropy with ignore index -1.
 * The backward writes d(logits) over the logits themselves, so the (B,T,V) buffer exists once. */
#include "kernels/kernels.h"
#include "kernels/vec.h"

#include <math.h>
#include <string.h>

int lmf_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V) {
    const lmf_vec_ops *v = lmf_vec();
    int count = 0;
#pragma omp parallel for schedule(static) reduction(+ : count)
    for (int n = 0; n < N; n++) {
        int t = targets[n];
        if (t < 0) {
            losses[n] = 0.0f;
            continue;
        }
        const float *l = logits + (long)n * V;
        float s = v->logsumexp(l, V);
        if (lse) lse[n] = s;
        losses[n] = s - l[t];
        count++;
    }
    return count;
}

void lmf_crossentropy_backward_row(float *l, int n, float lse, int t, float scale, float cap) {
    const lmf_vec_ops *v = lmf_vec();
    if (!cap) {
        v->exp_shift_scale(l, n, lse, scale);
        if (t >= 0) l[t] -= scale;
        return;
    }
    float y[1024]; /* the capped logits of a chunk, for the cap's derivative 1 - (y / cap)^2 */
    for (int j0 = 0; j0 < n; j0 += 1024) {
        int k = n - j0 < 1024 ? n - j0 : 1024;
        memcpy(y, l + j0, sizeof(float) * (size_t)k);
        v->exp_shift_scale(l + j0, k, lse, scale);
        if (t >= j0 && t < j0 + k) l[t] -= scale;
        v->softcap_backward(l + j0, y, k, cap, 1.0f);
    }
}

void lmf_crossentropy_backward_inplace(float *logits, const float *lse, const int32_t *targets, int N, int V,
                                       float scale, float cap) {
    const lmf_vec_ops *v = lmf_vec();
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *l = logits + (long)n * V;
        int t = targets[n];
        if (t < 0) {
            memset(l, 0, sizeof(float) * V);
            continue;
        }
        lmf_crossentropy_backward_row(l, V, lse ? lse[n] : v->logsumexp(l, V), t, scale, cap);
    }
}

void lmf_crossentropy_slab_row(float *z, int n, float *lse, float *d, int C, float cap) {
    double s = lmf_vec()->logsumexp(z, n), l = *lse; /* log(e^l + e^s), l = -inf at the first slab */
    double next = isinf(l) ? s : l > s ? l + log1p(exp(s - l)) : s + log1p(exp(l - s));
    *lse = (float)next;
    if (!d) return;
    if (!isinf(l)) {
        float r = (float)exp(l - (double)*lse);
        for (int c = 0; c < C; c++) d[c] *= r;
    }
    lmf_crossentropy_backward_row(z, n, *lse, -1, 1.0f, cap); /* exp(z - lse) c' */
}
