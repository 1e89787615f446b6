/* rope.c — rotary position embedding, one kernel for both layouts of a head's rotated pairs:
 *  - rotate_half (Hugging Face): dimension d pairs with d + hs/2;
 *  - interleaved (llama.cpp's GGUF Q/K rows, Meta's original): dimensions 2i and 2i + 1 pair.
 * Pair i turns by position * theta^(-2i/hs) / factors[i] in both (factors: RoPE scaling, NULL for none).
 * Training (forward and backward), prefill and decode all rotate through lmf_rope_rotate. */
#include "kernels/kernels.h"

#include <math.h>

void lmf_rope_table(float *freqs, int T, int hs, float theta, const float *factors) {
    lmf_rope_table_scaled(freqs, T, hs, theta, factors, 1.0f);
}

void lmf_rope_table_scaled(float *freqs, int T, int hs, float theta, const float *factors, float mscale) {
    int half = hs / 2;
    for (int t = 0; t < T; t++) {
        for (int d = 0; d < half; d++) {
            /* double precision so long contexts and large theta keep accurate angles */
            double inv = pow((double)theta, -2.0 * d / hs) / (factors ? factors[d] : 1.0), a = t * inv;
            freqs[(long)t * hs + d] = (float)(cos(a) * mscale);
            freqs[(long)t * hs + half + d] = (float)(sin(a) * mscale);
        }
    }
}

void lmf_rope_rotate(float *x, int d0, int d1, const float *cs, int hs, int interleaved, float sign) {
    int half = hs / 2;
    const float *c = cs, *s = cs + half;
    for (int h0 = d0 - d0 % hs; h0 < d1; h0 += hs) {
        float *xh = x + h0;
        int lo = d0 > h0 ? d0 - h0 : 0, hi = d1 - h0 < hs ? d1 - h0 : hs; /* this head's dimensions in range */
        if (interleaved) {
            for (int j = lo; j < hi; j += 2) {
                int i = j / 2;
                float x1 = xh[j], x2 = xh[j + 1], si = sign * s[i];
                xh[j] = x1 * c[i] - x2 * si;
                xh[j + 1] = x2 * c[i] + x1 * si;
            }
        } else {
            for (int d = lo; d < (hi < half ? hi : half); d++) {
                float x1 = xh[d], x2 = xh[d + half], si = sign * s[d];
                xh[d] = x1 * c[d] - x2 * si;
                xh[d + half] = x2 * c[d] + x1 * si;
            }
        }
    }
}

void lmf_rope_rows(float *x, int ld, int N, int T, int p0, const int32_t *pos, const float *freqs, int nheads, int hs,
                   int interleaved, float sign) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        lmf_rope_rotate(x + (long)i * ld, 0, nheads * hs, freqs + (long)(pos ? pos[i] : p0 + i % T) * hs, hs,
                        interleaved, sign);
}
