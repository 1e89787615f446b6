/* rope.c — rotary position embedding in the HF "rotate_half" layout: dimension d pairs with d + hs/2. */
#include "kernels/kernels.h"

#include <math.h>

void lmf_rope_table(float *freqs, int T, int hs, float theta) {
    int half = hs / 2;
    for (int t = 0; t < T; t++) {
        for (int d = 0; d < half; d++) {
            /* double precision so long contexts and large theta keep accurate angles */
            double inv = pow((double)theta, -2.0 * d / hs), a = t * inv;
            freqs[(long)t * hs + d] = (float)cos(a);
            freqs[(long)t * hs + half + d] = (float)sin(a);
        }
    }
}

/* sign = +1 rotates by +angle (forward), -1 by -angle (backward: the transpose of a rotation is its inverse). */
static void rotate(float *qkv, const float *freqs, int B, int T, int NH, int NKV, int hs, float sign) {
    int half = hs / 2, C = NH * hs, S = C + 2 * NKV * hs, nheads = NH + NKV;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *row = qkv + ((long)b * T + t) * S;
            const float *c = freqs + (long)t * hs, *s = c + half;
            /* q heads then k heads are contiguous at the start of the row */
            for (int h = 0; h < nheads; h++) {
                float *x = row + (long)h * hs;
                for (int d = 0; d < half; d++) {
                    float x1 = x[d], x2 = x[d + half], si = sign * s[d];
                    x[d] = x1 * c[d] - x2 * si;
                    x[d + half] = x2 * c[d] + x1 * si;
                }
            }
        }
    }
}

void lmf_rope_forward(float *qkv, const float *freqs, int B, int T, int NH, int NKV, int hs) {
    rotate(qkv, freqs, B, T, NH, NKV, hs, 1.0f);
}

void lmf_rope_backward(float *dqkv, const float *freqs, int B, int T, int NH, int NKV, int hs) {
    rotate(dqkv, freqs, B, T, NH, NKV, hs, -1.0f);
}
