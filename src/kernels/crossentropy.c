/* crossentropy.c — fused softmax + cross-entropy with ignore index -1.
 * The backward writes d(logits) over the logits themselves, so the (B,T,V) buffer exists once. */
#include "kernels/kernels.h"

#include <math.h>

static float row_logsumexp(const float *l, int V) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    float sum = 0.0f;
    for (int i = 0; i < V; i++) sum += expf(l[i] - mx);
    return mx + logf(sum);
}

int crossentropy_forward(float *losses, const float *logits, const int32_t *targets, int N, int V) {
    int count = 0;
#pragma omp parallel for schedule(static) reduction(+ : count)
    for (int n = 0; n < N; n++) {
        int t = targets[n];
        if (t < 0) {
            losses[n] = 0.0f;
            continue;
        }
        const float *l = logits + (long)n * V;
        losses[n] = row_logsumexp(l, V) - l[t];
        count++;
    }
    return count;
}

void crossentropy_backward_inplace(float *logits, const int32_t *targets, int N, int V, float scale) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *l = logits + (long)n * V;
        int t = targets[n];
        if (t < 0) {
            for (int i = 0; i < V; i++) l[i] = 0.0f;
            continue;
        }
        float lse = row_logsumexp(l, V);
        for (int i = 0; i < V; i++) l[i] = expf(l[i] - lse) * scale;
        l[t] -= scale;
    }
}
