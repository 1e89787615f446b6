/* matmul.c — the linear layer y = x W^T + b and its backward, on top of lmf_sgemm (or lmf_sgemm_bf16: mixed
 * precision, the same products with bf16 inputs and fp32 sums). */
#include "kernels/kernels.h"
#include "kernels/gemm.h"
#include "kernels/vec.h"
#include "core/parallel.h"

void lmf_matmul_forward(float *out, const float *inp, const float *W, const float *bias, int N, int IC, int OC) {
    lmf_sgemm(0, 1, N, OC, IC, inp, IC, W, IC, 0.0f, out, OC);
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float *o = out + (long)n * OC;
            for (int c = 0; c < OC; c++) o[c] += bias[c];
        }
    }
}

typedef void (*gemm_fn)(int, int, int, int, int, const float *, int, const float *, int, float, float *, int);

/* inp16: the input in bf16 (gemm is lmf_sgemm_bf16), for the weight gradient instead of inp */
static void backward(gemm_fn gemm, float *dinp, float dinp_beta, float *dW, float dw_beta, float *dbias,
                     const float *dout, int ldo, const float *inp, const uint16_t *inp16, int ldi, const float *W,
                     int ldw, int N, int IC, int OC) {
    gemm(0, 0, N, IC, OC, dout, ldo, W, ldw, dinp_beta, dinp, ldi);
    if (inp16) lmf_sgemm_bf16_x(1, 0, OC, IC, N, dout, 0, ldo, inp16, 1, ldi, dw_beta, NULL, dW, ldw);
    else gemm(1, 0, OC, IC, N, dout, ldo, inp, ldi, dw_beta, dW, ldw);
    if (dbias) {
#pragma omp parallel
        {
            long c0, c1;
            lmf_omp_range(OC, &c0, &c1);
            if (c1 > c0) lmf_vec()->col_sum_add(dbias + c0, dout + c0, ldo, N, (int)(c1 - c0));
        }
    }
}

void lmf_matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp,
                         const float *W, int N, int IC, int OC) {
    backward(lmf_sgemm, dinp, 1.0f, dW, 1.0f, dbias, dout, OC, inp, NULL, IC, W, IC, N, IC, OC);
}

void lmf_matmul_backward_ld(int bf16, float *dinp, float dinp_beta, float *dW, float dw_beta, float *dbias,
                            const float *dout, int ldo, const float *inp, int ldi, const float *W, int ldw, int N,
                            int IC, int OC) {
    backward(bf16 ? lmf_sgemm_bf16 : lmf_sgemm, dinp, dinp_beta, dW, dw_beta, dbias, dout, ldo, inp, NULL, ldi, W,
             ldw, N, IC, OC);
}

void lmf_matmul_backward_b16(float *dinp, float dinp_beta, float *dW, float dw_beta, float *dbias, const float *dout,
                             int ldo, const uint16_t *inp, int ldi, const float *W, int ldw, int N, int IC, int OC) {
    backward(lmf_sgemm_bf16, dinp, dinp_beta, dW, dw_beta, dbias, dout, ldo, NULL, inp, ldi, W, ldw, N, IC, OC);
}
