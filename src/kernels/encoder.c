/* encoder.c — token (+ learned position) embeddings, forward and backward. */
#include "kernels/kernels.h"
#include "core/parallel.h"

#include <string.h>

void lmf_encoder_forward(float *out, const int32_t *tok, const float *wte, const float *wpe, int B, int T, int C) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((long)b * T + t) * C;
            const float *e = wte + (long)tok[b * T + t] * C;
            if (wpe) {
                const float *p = wpe + (long)t * C;
                for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
            } else {
                memcpy(o, e, sizeof(float) * C);
            }
        }
    }
}

void lmf_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tok, const int32_t *pos, int B,
                          int T, int C) {
    /* Tokens repeat, so rows of dwte collide: split the channel dimension across threads instead of the rows. */
#pragma omp parallel
    {
        long c0, c1;
        lmf_omp_range(C, &c0, &c1);
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                const float *d = dout + ((long)b * T + t) * C;
                float *e = dwte + (long)tok[b * T + t] * C;
                for (long c = c0; c < c1; c++) e[c] += d[c];
                if (dwpe) {
                    float *p = dwpe + (long)(pos ? pos[b * T + t] : t) * C;
                    for (long c = c0; c < c1; c++) p[c] += d[c];
                }
            }
        }
    }
}
