/* vec_ref.c — scalar reference of the row kernels (see vec.h): the definition the SIMD variants are held to. */
#include "kernels/vec.h"
#include "kernels/dropout.h"

#include "kernels/quant.h"

#include <math.h>
#include <stddef.h>

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

static float sum(const float *x, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[i];
    return s;
}

static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double sumsq(const float *x, long n) {
    double s = 0.0;
    for (long i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static void layernorm(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int n,
                      float eps) {
    float m = sum(x, n) / n, v = 0.0f;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    float s = 1.0f / sqrtf(v / n + eps);
    for (int i = 0; i < n; i++) out[i] = (x[i] - m) * s * w[i] + b[i];
    *mean = m, *rstd = s;
}

static void layernorm_backward(float *dx, const float *dout, const float *x, const float *w, float mean, float rstd,
                               int n) {
    float sum_d = 0.0f, sum_dn = 0.0f;
    for (int i = 0; i < n; i++) {
        float dn = dout[i] * w[i];
        sum_d += dn;
        sum_dn += dn * (x[i] - mean) * rstd;
    }
    sum_d /= n, sum_dn /= n;
    for (int i = 0; i < n; i++) dx[i] += rstd * (dout[i] * w[i] - sum_d - (x[i] - mean) * rstd * sum_dn);
}

static void norm_param_grad(float *dw, float *db, const float *dout, const float *x, float mean, float rstd, int n) {
    for (int i = 0; i < n; i++) dw[i] += dout[i] * (x[i] - mean) * rstd;
    if (db)
        for (int i = 0; i < n; i++) db[i] += dout[i];
}

static void rmsnorm(float *out, float *rstd, const float *x, const float *w, int n, float eps) {
    float s = 1.0f / sqrtf(dot(x, x, n) / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * s * w[i];
    *rstd = s;
}

static void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w, float rstd, int n) {
    float d = 0.0f;
    for (int i = 0; i < n; i++) d += dout[i] * w[i] * x[i];
    float k = rstd * rstd * rstd * d / n;
    for (int i = 0; i < n; i++) dx[i] += rstd * dout[i] * w[i] - k * x[i];
}

static void softmax(float *x, int n, float scale) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] * scale > mx ? x[i] * scale : mx;
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[i] = expf(x[i] * scale - mx);
    float inv = 1.0f / s;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

static void softmax_backward(float *d, const float *p, int n, float scale) {
    float t = dot(p, d, n);
    for (int i = 0; i < n; i++) d[i] = p[i] * (d[i] - t) * scale;
}

static float logsumexp(const float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += expf(x[i] - mx);
    return mx + logf(s);
}

static void exp_shift_scale(float *x, int n, float shift, float scale) {
    for (int i = 0; i < n; i++) x[i] = expf(x[i] - shift) * scale;
}

static void gelu(float *out, const float *x, long n) {
    for (long i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + tanhf(GELU_K * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
}

static void gelu_backward(float *dx, const float *x, const float *dout, long n) {
    for (long i = 0; i < n; i++) {
        float u = GELU_K * (x[i] + 0.044715f * x[i] * x[i] * x[i]), th = tanhf(u);
        float g = 0.5f * (1.0f + th) + 0.5f * x[i] * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * 0.044715f * x[i] * x[i]);
        dx[i] = g * dout[i];
    }
}

static void swiglu(float *out, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void swiglu_backward(float *dg, float *du, const float *dout, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        dg[i] = dout[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
        du[i] = dout[i] * g[i] * sig;
    }
}

static void col_sum_add(float *acc, const float *x, long ldx, int m, int n) {
    for (int r = 0; r < m; r++)
        for (int c = 0; c < n; c++) acc[c] += x[r * ldx + c];
}

static void adamw(float *p, const float *g, float *m, float *v, long n, float beta1, float beta2, float eps,
                  float decay, float step, float bc2_sqrt, float grad_scale) {
    for (long i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
        v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        p[i] = p[i] * decay - step * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

/* element i of w: fp32, or a half widened to fp32 */
static float w_at(const void *w, int half, long i) {
    return half ? lmf_f16_to_f32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

static void rows_by_matrix(float *out, long ldo, const float *x, long ldx, int m, const void *w, int half, long ldw,
                           int k, int n) {
    for (int j = 0; j < m; j++)
        for (int p = 0; p < n; p++) {
            float s = 0.0f;
            for (int d = 0; d < k; d++) s += x[j * ldx + d] * w_at(w, half, d * ldw + p);
            out[j * ldo + p] = s;
        }
}

static void rows_by_pieces_t(float *out, long ldo, const float *x, long ldx, int m, const void *const *w, int half,
                             const int *len, int nb, long ldw, int k) {
    for (int j = 0; j < m; j++)
        for (int r = 0; r < k; r++) {
            float s = 0.0f;
            for (int b = 0, off = 0; b < nb; off += len[b++])
                for (int p = 0; p < len[b]; p++) s += x[j * ldx + off + p] * w_at(w[b], half, r * ldw + p);
            out[j * ldo + r] += s;
        }
}

static void softcap(float *x, int n, float scale, float cap) {
    float k = scale / cap;
    for (int i = 0; i < n; i++) x[i] = cap * tanhf(x[i] * k);
}

static void softcap_backward(float *d, const float *y, int n, float cap, float scale) {
    float k = 1.0f / cap;
    for (int i = 0; i < n; i++) {
        float r = y[i] * k;
        d[i] *= (1.0f - r * r) * scale;
    }
}

static void dropout(float *out, const float *x, int n, uint64_t key, uint64_t e0, uint64_t keep_from, float scale) {
    lmf_dropout_body(out, x, n, key, e0, keep_from, scale);
}

const lmf_vec_ops lmf_vec_ref = LMF_VEC_OPS_TABLE("ref");
