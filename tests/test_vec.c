/* test_vec.c — every SIMD variant of the row kernels (kernels/vec.h) against the scalar reference lmf_vec_ref.
 *
 * For each variant the CPU can run (AVX2, AVX-512; the others are skipped) and each function, rows of many lengths
 * (odd ones, so every tail size is hit) are filled with normal values plus a few large magnitudes (+-30, -inf where
 * the function allows it), run through the reference and the variant, and compared array by array with
 * rel_err = max|a - b| / max|ref| <= 1e-5. Outputs documented as "+=" start from nonzero contents; every output
 * array is followed by sentinels that must survive (tails write nothing past n). Scalar results use a scale
 * suited to each: sum and dot are compared relative to sum|x_i| (resp. sum|a_i b_i|), the only scale that float
 * summation in any order is accurate to; a layernorm mean relative to the row's standard deviation; logsumexp
 * relative to max(|lse|, 1) (an absolute error in nats near 0). Then exp itself: special values (-inf, subnormal
 * range, overflow, NaN) and a dense sweep against double-precision exp. The largest error of each function is
 * printed at the end.
 *
 * The dispatch check (lmf_vec() picks the best ISA) needs LMF_ISA unset; main() unsets it before anything runs. */
#include "test_util.h"

#include "core/cpu.h"
#include "kernels/quant.h"
#include "kernels/vec.h"

#include <string.h>

#define TOL 1e-5
#define SENT 19 /* sentinel floats after each output array */
#define SENTINEL -1234.5f

static const int lengths[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 255, 768, 1000, 50257};
#define N_LENGTHS (int)(sizeof lengths / sizeof lengths[0])

enum { F_SUM, F_DOT, F_LAYERNORM, F_LAYERNORM_BWD, F_NORM_PARAM_GRAD, F_RMSNORM, F_RMSNORM_BWD, F_SOFTMAX,
       F_SOFTMAX_BWD, F_LOGSUMEXP, F_EXP_SHIFT_SCALE, F_GELU, F_GELU_BWD, F_SWIGLU, F_SWIGLU_BWD, F_ADAMW, F_EXP,
       F_ROWS_BY_MATRIX, F_ROWS_BY_PIECES_T, F_SOFTCAP, F_SOFTCAP_BWD, N_FUNCS };
static const char *func_names[N_FUNCS] = {
    "sum", "dot", "layernorm", "layernorm_backward", "norm_param_grad", "rmsnorm", "rmsnorm_backward", "softmax",
    "softmax_backward", "logsumexp", "exp_shift_scale", "gelu", "gelu_backward", "swiglu", "swiglu_backward",
    "adamw", "exp (vs double)", "rows_by_matrix", "rows_by_pieces_t", "softcap", "softcap_backward"};

static const lmf_vec_ops *variants[2];
static int n_variants;
static double worst[2][N_FUNCS];

/* ---- helpers ---------------------------------------------------------------------------------------------- */

static float *row(long n) {
    float *p = malloc(sizeof(float) * (size_t)(n + SENT));
    assert_non_null(p);
    for (long i = n; i < n + SENT; i++) p[i] = SENTINEL;
    return p;
}

static void check_sentinels(const float *p, long n, const char *what, const char *variant) {
    for (long i = n; i < n + SENT; i++)
        if (p[i] != SENTINEL) fail_msg("%s/%s n=%ld: wrote past the end (index %ld)", variant, what, n, i);
}

/* normal values of the given scale; with outliers, every 29th element (from a seed-dependent start) is +-30 */
static void fill(float *x, long n, unsigned seed, float scale, int outliers) {
    fill_normal(x, n, seed, scale);
    if (outliers)
        for (long i = seed % 29; i < n; i += 29) x[i] = (i / 29) % 2 ? 30.0f : -30.0f;
}

static float *copy(const float *x, long n) {
    float *p = row(n);
    memcpy(p, x, sizeof(float) * (size_t)n);
    return p;
}

/* checks one comparison against tol */
static void expect_tol(int v, int f, double err, double tol, long n, const char *what) {
    if (!(err <= tol))
        fail_msg("%s/%s n=%ld: %s relative error %.3g > %.0e", variants[v]->name, func_names[f], n, what, err, tol);
}

/* checks one comparison against TOL and records it for the report */
static void expect(int v, int f, double err, long n, const char *what) {
    if (!(err <= worst[v][f])) worst[v][f] = err; /* NaN sticks */
    expect_tol(v, f, err, TOL, n, what);
}

static void expect_array(int v, int f, const float *a, const float *ref, long n, const char *what) {
    expect(v, f, rel_err(a, ref, n), n, what);
    check_sentinels(a, n, what, variants[v]->name);
}

/* rel_err with the denominator at least floor: for outputs that cancel (see softmax_backward) */
static double rel_err_floor(const float *a, const float *b, long n, double floor) {
    double e = rel_err(a, b, n), m = 0.0;
    for (long i = 0; i < n; i++) m = fmax(m, fabs(b[i]));
    return m >= floor ? e : e * m / floor;
}

static double max_abs(const float *x, long n) {
    double m = 0.0;
    for (long i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double sum_abs(const float *a, const float *b, long n) {
    double s = 0.0;
    for (long i = 0; i < n; i++) s += fabs(b ? (double)a[i] * b[i] : a[i]);
    return s;
}

#define FOR_VARIANTS(v)                                                                                            \
    if (!n_variants) skip();                                                                                       \
    for (int v = 0; v < n_variants; v++)

/* ---- reductions ------------------------------------------------------------------------------------------- */

static void test_sum_dot(void **state) {
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            float *a = row(n), *b = row(n);
            fill(a, n, 1 + li, 2.0f, 1), fill(b, n, 100 + li, 1.0f, 0);
            /* mixed signs: relative to sum|x| (1e-6: a dropped element of a long row is still caught) */
            double e = fabs((double)V->sum(a, n) - lmf_vec_ref.sum(a, n)) / sum_abs(a, NULL, n);
            expect_tol(v, F_SUM, e, 1e-6, n, "sum (vs sum|x|, mixed signs)");
            e = fabs((double)V->dot(a, b, n) - lmf_vec_ref.dot(a, b, n)) / sum_abs(a, b, n);
            expect_tol(v, F_DOT, e, 1e-6, n, "dot (vs sum|ab|, mixed signs)");
            /* sum of squares in double: all terms positive, so plain relative error, at double-ish precision */
            double q = lmf_vec_ref.sumsq(a, n);
            expect_tol(v, F_DOT, fabs(V->sumsq(a, n) - q) / q, 1e-12, n, "sumsq (double accumulation)");
            /* well-conditioned rows (positive terms): plain relative error */
            for (int i = 0; i < n; i++) a[i] = 1.0f + fabsf(a[i]);
            float r = lmf_vec_ref.sum(a, n);
            expect(v, F_SUM, fabs((double)V->sum(a, n) - r) / fabs(r), n, "sum (positive)");
            r = lmf_vec_ref.dot(a, a, n);
            expect(v, F_DOT, fabs((double)V->dot(a, a, n) - r) / fabs(r), n, "dot (positive)");
            free(a), free(b);
        }
    }
}

/* ---- norms ------------------------------------------------------------------------------------------------ */

static void test_layernorm(void **state) {
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            float *x = row(n), *w = row(n), *b = row(n), *o1 = row(n), *o2 = row(n);
            fill(x, n, 3 + li, 3.0f, 1), fill(w, n, 4 + li, 1.0f, 0), fill(b, n, 5 + li, 1.0f, 0);
            for (int i = 0; i < n; i++) x[i] += 0.7f; /* a nonzero mean */
            float m1, r1, m2, r2;
            lmf_vec_ref.layernorm(o1, &m1, &r1, x, w, b, n, 1e-5f);
            V->layernorm(o2, &m2, &r2, x, w, b, n, 1e-5f);
            expect_array(v, F_LAYERNORM, o2, o1, n, "out");
            expect(v, F_LAYERNORM, fabs((double)m2 - m1) * r1, n, "mean (vs std)");
            expect(v, F_LAYERNORM, fabs((double)r2 - r1) / r1, n, "rstd");

            /* backward: dx accumulates */
            float *dout = row(n), *dx1 = row(n), *dx2;
            fill(dout, n, 6 + li, 1.0f, 0), fill(dx1, n, 7 + li, 1.0f, 0);
            dx2 = copy(dx1, n);
            lmf_vec_ref.layernorm_backward(dx1, dout, x, w, m1, r1, n);
            V->layernorm_backward(dx2, dout, x, w, m1, r1, n);
            expect_array(v, F_LAYERNORM_BWD, dx2, dx1, n, "dx");
            free(x), free(w), free(b), free(o1), free(o2), free(dout), free(dx1), free(dx2);
        }
    }
}

static void test_norm_param_grad(void **state) {
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            float *x = row(n), *dout = row(n), *dw1 = row(n), *db1 = row(n), *dw2, *db2;
            fill(x, n, 8 + li, 2.0f, 1), fill(dout, n, 9 + li, 1.0f, 0);
            fill(dw1, n, 10 + li, 1.0f, 0), fill(db1, n, 11 + li, 1.0f, 0);
            dw2 = copy(dw1, n), db2 = copy(db1, n);
            lmf_vec_ref.norm_param_grad(dw1, db1, dout, x, 0.3f, 1.7f, n);
            V->norm_param_grad(dw2, db2, dout, x, 0.3f, 1.7f, n);
            expect_array(v, F_NORM_PARAM_GRAD, dw2, dw1, n, "dw");
            expect_array(v, F_NORM_PARAM_GRAD, db2, db1, n, "db");
            /* db == NULL (RMSNorm): only dw changes */
            lmf_vec_ref.norm_param_grad(dw1, NULL, dout, x, 0.0f, 0.9f, n);
            V->norm_param_grad(dw2, NULL, dout, x, 0.0f, 0.9f, n);
            expect_array(v, F_NORM_PARAM_GRAD, dw2, dw1, n, "dw (db NULL)");
            free(x), free(dout), free(dw1), free(db1), free(dw2), free(db2);
        }
    }
}

static void test_rmsnorm(void **state) {
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            float *x = row(n), *w = row(n), *o1 = row(n), *o2 = row(n);
            fill(x, n, 12 + li, 2.0f, 1), fill(w, n, 13 + li, 1.0f, 0);
            float r1, r2;
            lmf_vec_ref.rmsnorm(o1, &r1, x, w, n, 1e-6f);
            V->rmsnorm(o2, &r2, x, w, n, 1e-6f);
            expect_array(v, F_RMSNORM, o2, o1, n, "out");
            expect(v, F_RMSNORM, fabs((double)r2 - r1) / r1, n, "rstd");

            float *dout = row(n), *dx1 = row(n), *dx2;
            fill(dout, n, 14 + li, 1.0f, 0), fill(dx1, n, 15 + li, 1.0f, 0);
            dx2 = copy(dx1, n);
            lmf_vec_ref.rmsnorm_backward(dx1, dout, x, w, r1, n);
            V->rmsnorm_backward(dx2, dout, x, w, r1, n);
            expect_array(v, F_RMSNORM_BWD, dx2, dx1, n, "dx");
            free(x), free(w), free(o1), free(o2), free(dout), free(dx1), free(dx2);
        }
    }
}

/* ---- softmax family --------------------------------------------------------------------------------------- */

/* -inf at every 11th element after the first (element 0 stays finite, so no row is all -inf) */
static void add_neg_inf(float *x, long n) {
    for (long i = 5; i < n; i += 11) x[i] = -INFINITY;
}

static void test_softmax(void **state) {
    static const float scales[] = {1.0f, 0.125f, 2.5f};
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            for (int si = 0; si < 3; si++) {
                float *x1 = row(n), *x2;
                fill(x1, n, 16 + li + 50 * si, 3.0f, 1);
                if (si == 1) add_neg_inf(x1, n);
                x2 = copy(x1, n);
                lmf_vec_ref.softmax(x1, n, scales[si]);
                V->softmax(x2, n, scales[si]);
                /* note: at n = 50257 the reference's sequential float sum is itself ~9e-6 off the exact
                 * softmax (scale 0.125); the variants are within 2e-7 of it. The same holds for the sums of
                 * squares in layernorm / rmsnorm rows of that length. */
                expect_array(v, F_SOFTMAX, x2, x1, n, "p");

                /* backward on that output. p (d - dot(p, d)) cancels where one p ~ 1: both implementations round
                 * dot(p, d) to ~1 ulp of |d|, so the error is measured against scale * max|p| * max|d|, the size
                 * of the terms, when that exceeds the result. */
                float *d1 = row(n), *d2;
                fill(d1, n, 17 + li, 1.0f, 0);
                d2 = copy(d1, n);
                double terms = scales[si] * max_abs(x1, n) * max_abs(d1, n);
                lmf_vec_ref.softmax_backward(d1, x1, n, scales[si]);
                V->softmax_backward(d2, x1, n, scales[si]);
                expect(v, F_SOFTMAX_BWD, rel_err_floor(d2, d1, n, terms), n, "d (vs max(|ref|, terms))");
                check_sentinels(d2, n, "d", V->name);
                free(x1), free(x2), free(d1), free(d2);
            }
        }
    }
}

static void test_logsumexp_exp_shift_scale(void **state) {
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            for (int k = 0; k < 2; k++) {
                float *x1 = row(n), *x2;
                fill(x1, n, 18 + li + 50 * k, 3.0f, k); /* k = 1: with +-30 and -inf entries */
                if (k) add_neg_inf(x1, n);
                float l1 = lmf_vec_ref.logsumexp(x1, n), l2 = V->logsumexp(x1, n);
                expect(v, F_LOGSUMEXP, fabs((double)l2 - l1) / fmax(fabs(l1), 1.0), n, "lse");
                /* the cross-entropy backward: softmax probabilities / N */
                x2 = copy(x1, n);
                lmf_vec_ref.exp_shift_scale(x1, n, l1, 0.25f);
                V->exp_shift_scale(x2, n, l1, 0.25f);
                expect_array(v, F_EXP_SHIFT_SCALE, x2, x1, n, "x");
                free(x1), free(x2);
            }
        }
    }
}

/* With half: w rounded to halves in place (so the error bounds below use the values the kernels read) and their
 * IEEE half copy, which the caller frees; else NULL. */
static uint16_t *halves(float *w, long n, int half) {
    if (!half) return NULL;
    uint16_t *h = malloc((size_t)n * sizeof *h);
    for (long i = 0; i < n; i++) h[i] = lmf_f32_to_f16(w[i]), w[i] = lmf_f16_to_f32(h[i]);
    return h;
}

/* m rows times a k x n matrix with row stride ldw > n: every variant against the reference, relative to
 * sum |x w|; the gaps of out (ldo > n) untouched */
static void test_rows_by_matrix(void **state) {
    static const int ns[] = {1, 7, 8, 15, 16, 17, 63, 64, 65, 100, 1000};
    static const int ks[] = {1, 5, 64};
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int ni = 0; ni < (int)(sizeof ns / sizeof *ns); ni++)
            for (int ki = 0; ki < 3; ki++)
                for (int m = 1; m <= 4; m++)
                for (int half = 0; half < 2; half++) { /* fp32, and halves (an f16 KV cache) */
                    int n = ns[ni], k = ks[ki];
                    long ldw = n + 5, ldx = k + 3, ldo = n + 2;
                    float *w = row((long)k * ldw), *x = row((long)m * ldx), *o1 = row(m * ldo), *o2 = row(m * ldo);
                    fill(w, (long)k * ldw, 700 + n + k, 1.0f, 0);
                    fill(x, (long)m * ldx, 800 + m, 1.0f, 0);
                    uint16_t *wh = halves(w, (long)k * ldw, half);
                    const void *wa = half ? (const void *)wh : w;
                    for (long i = 0; i < m * ldo; i++) o1[i] = o2[i] = SENTINEL;
                    lmf_vec_ref.rows_by_matrix(o1, ldo, x, ldx, m, wa, half, ldw, k, n);
                    V->rows_by_matrix(o2, ldo, x, ldx, m, wa, half, ldw, k, n);
                    for (int j = 0; j < m; j++)
                        for (long p = 0; p < ldo; p++) {
                            if (p >= n) {
                                if (o2[j * ldo + p] != SENTINEL) fail_msg("%s rows_by_matrix: wrote a gap", V->name);
                                continue;
                            }
                            double a = 1e-30;
                            for (int d = 0; d < k; d++) a += fabs((double)x[j * ldx + d] * w[d * ldw + p]);
                            expect(v, F_ROWS_BY_MATRIX, fabs((double)o2[j * ldo + p] - o1[j * ldo + p]) / a, n, "out");
                        }
                    check_sentinels(o2, m * ldo, "rows_by_matrix", V->name);
                    free(w), free(wh), free(x), free(o1), free(o2);
                }
    }
}

/* m rows times k x len[b] pieces (row stride ldw) accumulated into out: every variant against the reference,
 * relative to sum |x w|, pieces of block sizes 16 and 5 (ragged: lanes start anywhere), first and last piece short
 * as a stretch cut by threads leaves them; the gaps of out (ldo > k) untouched, the += kept */
static void test_rows_by_pieces_t(void **state) {
    static const int totals[] = {1, 7, 16, 17, 40, 100, 300};
    static const int bss[] = {16, 5, 64};
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int ti = 0; ti < 7; ti++)
            for (int bi = 0; bi < 3; bi++)
                for (int m = 1; m <= 4; m++)
                for (int half = 0; half < 2; half++) { /* fp32, and halves (an f16 KV cache) */
                    int n = totals[ti], bs = bss[bi], k = 64 + (m == 3), ldo = k + 2;
                    long ldw = bs, ldx = n + 3;
                    int nb = 0, len[64], start = bs / 3; /* the stretch begins inside its first block */
                    const float *wp[64];
                    const void *wa[64];
                    float *w = row((long)k * ldw * 64), *x = row((long)m * ldx), *o1 = row(m * ldo), *o2 = row(m * ldo);
                    fill(w, (long)k * ldw * 64, 900 + n + bs, 1.0f, 0);
                    fill(x, (long)m * ldx, 950 + m, 1.0f, 0);
                    uint16_t *wh = halves(w, (long)k * ldw * 64, half);
                    for (int p = 0; p < n; nb++) {
                        int off = nb ? 0 : start, l = bs - off < n - p ? bs - off : n - p;
                        long at = (long)nb * k * ldw + off;
                        wp[nb] = w + at, wa[nb] = half ? (const void *)(wh + at) : (const void *)(w + at), len[nb] = l;
                        p += l;
                    }
                    for (long i = 0; i < m * ldo; i++) o1[i] = o2[i] = (i % ldo) < k ? 0.5f : SENTINEL;
                    lmf_vec_ref.rows_by_pieces_t(o1, ldo, x, ldx, m, wa, half, len, nb, ldw, k);
                    V->rows_by_pieces_t(o2, ldo, x, ldx, m, wa, half, len, nb, ldw, k);
                    for (int j = 0; j < m; j++)
                        for (int r = 0; r < ldo; r++) {
                            if (r >= k) {
                                if (o2[j * ldo + r] != SENTINEL) fail_msg("%s rows_by_pieces_t: wrote a gap", V->name);
                                continue;
                            }
                            double a = 1.0; /* the 0.5 already there */
                            for (int b = 0, off = 0; b < nb; off += len[b++])
                                for (int p = 0; p < len[b]; p++) a += fabs((double)x[j * ldx + off + p] * wp[b][r * ldw + p]);
                            expect(v, F_ROWS_BY_PIECES_T, fabs((double)o2[j * ldo + r] - o1[j * ldo + r]) / a, n, "out");
                        }
                    check_sentinels(o2, m * ldo, "rows_by_pieces_t", V->name);
                    free(w), free(wh), free(x), free(o1), free(o2);
                }
    }
}

/* a row with -inf entries: exactly 0 there, finite rest equal to the reference, sum 1 */
static void test_softmax_special(void **state) {
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int n = 1; n <= 40; n++) {
            float *x1 = row(n), *x2;
            fill(x1, n, 300 + n, 2.0f, 0);
            for (int i = 1; i < n; i += 3) x1[i] = -INFINITY;
            if (n > 2) x1[2] = -1e30f; /* finite but far below the max */
            x2 = copy(x1, n);
            lmf_vec_ref.softmax(x1, n, 0.5f);
            V->softmax(x2, n, 0.5f);
            double s = 0.0;
            for (int i = 0; i < n; i++) {
                if (i % 3 == 1 || i == 2) {
                    if (x2[i] != 0.0f) fail_msg("%s softmax n=%d: p[%d] = %g, want 0", V->name, n, i, x2[i]);
                } else if (!isfinite(x2[i])) {
                    fail_msg("%s softmax n=%d: p[%d] = %g", V->name, n, i, x2[i]);
                }
                s += x2[i];
            }
            if (fabs(s - 1.0) > 1e-5) fail_msg("%s softmax n=%d: sum %.8f", V->name, n, s);
            expect_array(v, F_SOFTMAX, x2, x1, n, "p (-inf row)");
            free(x1), free(x2);
        }
        /* rows of equal values: lse = x + log(n), for small, large and very negative x */
        static const float vals[] = {0.0f, 80.0f, 88.5f, 1e4f, -100.0f, -1e4f};
        for (int k = 0; k < 6; k++) {
            for (int li = 0; li < N_LENGTHS; li++) {
                int n = lengths[li];
                float *x = row(n);
                for (int i = 0; i < n; i++) x[i] = vals[k];
                double want = vals[k] + log((double)n);
                float l = V->logsumexp(x, n), r = lmf_vec_ref.logsumexp(x, n);
                if (!(fabs(l - want) <= 1e-6 * fmax(fabs(want), 1.0) + 4e-7 * fabs(vals[k])))
                    fail_msg("%s logsumexp(%d x %g) = %.9g, want %.9g", V->name, n, vals[k], l, want);
                expect(v, F_LOGSUMEXP, fabs((double)l - r) / fmax(fabs(r), 1.0), n, "lse (equal values)");
                free(x);
            }
        }
    }
}

/* exp through exp_shift_scale(x, n, 0, 1): special values, then a dense sweep against double-precision exp */
static void test_exp(void **state) {
    static const float special[] = {-INFINITY, -1e30f, -1000.0f, -150.0f, -104.0f, -103.9f, -100.0f, -95.0f, -90.0f,
                                    -87.5f, -87.33f, -87.0f, -50.0f, -1.0f, -1e-8f, -0.0f, 0.0f, 1e-8f, 0.34657f,
                                    -0.34657f, 0.5f, 1.0f, 10.0f, 50.0f, 88.0f, 88.72283f, 88.7229f, 89.0f, 100.0f,
                                    1e30f, INFINITY, NAN};
    int ns = (int)(sizeof special / sizeof special[0]);
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        float *x = row(ns);
        memcpy(x, special, sizeof special);
        V->exp_shift_scale(x, ns, 0.0f, 1.0f);
        check_sentinels(x, ns, "exp specials", V->name);
        for (int i = 0; i < ns; i++) {
            float want = expf(special[i]), got = x[i];
            int ok;
            if (isnan(want)) ok = isnan(got);
            else if (isinf(want) || want == 0.0f) ok = got == want;
            else if (want < 1.17549435e-38f) ok = fabsf(got - want) <= 2 * 1.4013e-45f; /* subnormal: ~1 ulp */
            else ok = fabs((double)got - want) <= 3e-7 * want;
            if (!ok) fail_msg("%s exp(%g) = %.9g, want %.9g", V->name, special[i], got, want);
        }
        free(x);

        /* sweep [-87.3, 88.7] (normal results) in 2^20 steps, worst relative error against exp in double */
        long n = 1L << 20;
        float *y = row(n);
        for (long i = 0; i < n; i++) y[i] = -87.3f + (float)((88.7 + 87.3) * i / (n - 1));
        float *e = copy(y, n);
        V->exp_shift_scale(e, (int)n, 0.0f, 1.0f);
        double maxerr = 0.0;
        for (long i = 0; i < n; i++) {
            double want = exp((double)y[i]), err = fabs(e[i] - want) / want;
            if (!(err <= maxerr)) maxerr = err;
        }
        if (maxerr > worst[v][F_EXP]) worst[v][F_EXP] = maxerr;
        if (!(maxerr <= 3e-7)) fail_msg("%s exp: max relative error %.3g over [-87.3, 88.7]", V->name, maxerr);
        free(y), free(e);
    }
}

/* ---- activations ------------------------------------------------------------------------------------------ */

static void test_gelu(void **state) {
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            float *x = row(n), *o1 = row(n), *o2 = row(n), *dout = row(n), *dx1 = row(n), *dx2;
            fill(x, n, 19 + li, 3.0f, 1), fill(dout, n, 20 + li, 1.0f, 0), fill(dx1, n, 21 + li, 1.0f, 0);
            dx2 = copy(dx1, n);
            lmf_vec_ref.gelu(o1, x, n);
            V->gelu(o2, x, n);
            expect_array(v, F_GELU, o2, o1, n, "out");
            lmf_vec_ref.gelu_backward(dx1, x, dout, n);
            V->gelu_backward(dx2, x, dout, n);
            expect_array(v, F_GELU_BWD, dx2, dx1, n, "dx");
            free(x), free(o1), free(o2), free(dout), free(dx1), free(dx2);
        }
    }
}

/* Gemma 2's soft-cap cap tanh(scale x / cap), scores from ~0 (tanh's linear part) to far past the cap (saturated;
 * the +-30 outliers with cap 5), and its backward from the output */
static void test_softcap(void **state) {
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            float *x = row(n), *o1, *o2, *d1 = row(n), *d2;
            fill(x, n, 41 + li, 8.0f, 1), fill(d1, n, 42 + li, 1.0f, 0);
            o1 = copy(x, n), o2 = copy(x, n), d2 = copy(d1, n);
            lmf_vec_ref.softcap(o1, n, 0.7f, 5.0f);
            V->softcap(o2, n, 0.7f, 5.0f);
            expect_array(v, F_SOFTCAP, o2, o1, n, "out");
            lmf_vec_ref.softcap_backward(d1, o1, n, 5.0f, 0.7f);
            V->softcap_backward(d2, o1, n, 5.0f, 0.7f);
            expect_array(v, F_SOFTCAP_BWD, d2, d1, n, "d");
            free(x), free(o1), free(o2), free(d1), free(d2);
        }
    }
}

/* dropout (LoRA's masks): the reference keeps exactly the elements the rule it replaced kept ((double)(z >> 11)
 * 2^-53 >= rate: the same masks as every earlier run), and every variant writes the reference's bits, in place too,
 * at any offset e0 and odd lengths; the kept share is 1 - rate. */
static void test_dropout(void **state) {
    static const float rates[] = {0.0f, 1e-7f, 0.1f, 0.5f, 0.9990234f};
    for (int ri = 0; ri < 5; ri++) {
        float p = rates[ri], scale = 1.0f / (1.0f - p);
        uint64_t from = (uint64_t)ceil((double)p * 0x1.0p53), key = 0x9E3779B97F4A7C15ull * (uint64_t)(ri + 1);
        long kept = 0, total = 0;
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            uint64_t e0 = (uint64_t)li * 1000003u;
            float *x = row(n), *o1 = row(n), *o2 = row(n);
            fill(x, n, 61 + li, 1.0f, 0);
            lmf_vec_ref.dropout(o1, x, n, key, e0, from, scale);
            for (int j = 0; j < n; j++) {
                uint64_t z = key ^ (e0 + (uint64_t)j);
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
                z ^= z >> 31;
                int k = (double)(z >> 11) * 0x1.0p-53 >= (double)p;
                float want = k ? x[j] * scale : 0.0f;
                if (memcmp(&o1[j], &want, sizeof want)) fail_msg("ref rate %g n=%d element %d", p, n, j);
                kept += k, total++;
            }
            check_sentinels(o1, n, "dropout", "ref");
            for (int v = 0; v < n_variants; v++)
                for (int inplace = 0; inplace < 2; inplace++) {
                    if (inplace) memcpy(o2, x, sizeof(float) * (size_t)n);
                    variants[v]->dropout(o2, inplace ? o2 : x, n, key, e0, from, scale);
                    if (memcmp(o2, o1, sizeof(float) * (size_t)n))
                        fail_msg("%s/dropout rate %g n=%d%s: other bits than the reference", variants[v]->name, p, n,
                                 inplace ? " in place" : "");
                    check_sentinels(o2, n, "dropout", variants[v]->name);
                }
            free(x), free(o1), free(o2);
        }
        double share = (double)kept / (double)total, sd = sqrt(p * (1.0 - p) / (double)total);
        printf("dropout %g: kept %.4f of %ld elements\n", p, share, total);
        assert_true(fabs(share - (1.0 - p)) <= 5 * sd + 1e-12);
    }
}

static void test_swiglu(void **state) {
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            float *g = row(n), *u = row(n), *o1 = row(n), *o2 = row(n), *dout = row(n), *dg1 = row(n), *du1 = row(n);
            fill(g, n, 22 + li, 3.0f, 1), fill(u, n, 23 + li, 1.0f, 0), fill(dout, n, 24 + li, 1.0f, 0);
            fill(dg1, n, 25 + li, 1.0f, 0), fill(du1, n, 26 + li, 1.0f, 0);
            for (int i = 13; i < n; i += 41) g[i] = i % 2 ? -100.0f : 100.0f; /* exp(-g) overflows / underflows */
            float *dg2 = copy(dg1, n), *du2 = copy(du1, n);
            lmf_vec_ref.swiglu(o1, g, u, n);
            V->swiglu(o2, g, u, n);
            expect_array(v, F_SWIGLU, o2, o1, n, "out");
            lmf_vec_ref.swiglu_backward(dg1, du1, dout, g, u, n);
            V->swiglu_backward(dg2, du2, dout, g, u, n);
            expect_array(v, F_SWIGLU_BWD, dg2, dg1, n, "dg");
            expect_array(v, F_SWIGLU_BWD, du2, du1, n, "du");
            free(g), free(u), free(o1), free(o2), free(dout), free(dg1), free(du1), free(dg2), free(du2);
        }
    }
}

/* ---- optimizer -------------------------------------------------------------------------------------------- */

static void test_adamw(void **state) {
    /* lr, weight decay, step t, grad_scale */
    static const float cfg[][4] = {{1e-3f, 0.1f, 1, 1.0f}, {6e-4f, 0.0f, 10, 0.5f}, {3e-2f, 0.01f, 1000, 1e-3f}};
    const float b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int li = 0; li < N_LENGTHS; li++) {
            int n = lengths[li];
            for (int c = 0; c < 3; c++) {
                float lr = cfg[c][0], wd = cfg[c][1], t = cfg[c][2], gs = cfg[c][3];
                float decay = 1.0f - lr * wd, step = lr / (1.0f - powf(b1, t)), bc2 = sqrtf(1.0f - powf(b2, t));
                float *p1 = row(n), *g = row(n), *m1 = row(n), *v1 = row(n);
                fill(p1, n, 27 + li + 9 * c, 0.5f, 0), fill(g, n, 28 + li, 1.0f, 1), fill(m1, n, 29 + li, 0.1f, 0);
                fill(v1, n, 30 + li, 0.1f, 0);
                for (int i = 0; i < n; i++) v1[i] *= v1[i];
                if (c == 0) memset(m1, 0, sizeof(float) * n), memset(v1, 0, sizeof(float) * n); /* first step */
                float *p2 = copy(p1, n), *m2 = copy(m1, n), *v2 = copy(v1, n);
                for (int s = 0; s < 2; s++) { /* two steps on the same state */
                    lmf_vec_ref.adamw(p1, g, m1, v1, n, b1, b2, eps, decay, step, bc2, gs);
                    V->adamw(p2, g, m2, v2, n, b1, b2, eps, decay, step, bc2, gs);
                }
                expect_array(v, F_ADAMW, p2, p1, n, "p");
                expect_array(v, F_ADAMW, m2, m1, n, "m");
                expect_array(v, F_ADAMW, v2, v1, n, "v");
                /* the update alone (p is dominated by its old value) */
                double maxd = 0.0, maxu = 0.0;
                float *p0 = row(n);
                fill(p0, n, 27 + li + 9 * c, 0.5f, 0);
                for (int i = 0; i < n; i++) {
                    maxd = fmax(maxd, fabs((double)p2[i] - p1[i]));
                    maxu = fmax(maxu, fabs((double)p1[i] - p0[i]));
                }
                expect_tol(v, F_ADAMW, maxd / maxu, 1e-3, n, "p update (vs max update)");
                free(p1), free(g), free(m1), free(v1), free(p2), free(m2), free(v2), free(p0);
            }
        }
    }
}

/* ---- column sums ------------------------------------------------------------------------------------------ */

/* A bias gradient: every variant's column sums bit for bit the reference's (adds in row order), on widths around
 * the 64- and 256-column chunks, rows strided wider than they are, with sentinels past the last column. */
static void test_col_sum_add(void **state) {
    static const int widths[] = {1, 7, 16, 63, 64, 65, 255, 256, 257, 576, 1000};
    static const int heights[] = {1, 3, 17, 300};
    FOR_VARIANTS(v) {
        const lmf_vec_ops *V = variants[v];
        for (int wi = 0; wi < (int)(sizeof widths / sizeof *widths); wi++)
            for (int hi = 0; hi < (int)(sizeof heights / sizeof *heights); hi++) {
                int n = widths[wi], m = heights[hi];
                long ldx = n + 37;
                float *x = row(ldx * m), *a1 = row(n);
                fill(x, ldx * m, 40 + wi + hi, 2.0f, 1), fill(a1, n, 41 + wi, 1.0f, 0);
                float *a2 = copy(a1, n);
                lmf_vec_ref.col_sum_add(a1, x, ldx, m, n);
                V->col_sum_add(a2, x, ldx, m, n);
                for (int c = 0; c < n; c++)
                    if (memcmp(&a1[c], &a2[c], sizeof(float)))
                        fail_msg("%s col_sum_add m=%d n=%d: column %d is %.9g, the reference's %.9g", V->name, m, n,
                                 c, a2[c], a1[c]);
                check_sentinels(a2, n, "col_sum_add", V->name);
                free(x), free(a1), free(a2);
            }
    }
}

/* ---- dispatch and report ---------------------------------------------------------------------------------- */

static void test_dispatch(void **state) {
    const lmf_vec_ops *ops = lmf_vec();
    assert_non_null(ops->name);
    assert_string_equal(ops->name, lmf_isa_name(lmf_cpu_best_isa()));
    const lmf_vec_ops *all[] = {&lmf_vec_ref, &lmf_vec_avx2, &lmf_vec_avx512};
    for (int i = 0; i < 3; i++) { /* every table is complete */
        const lmf_vec_ops *t = all[i];
        const void *f[] = {(const void *)t->sum, (const void *)t->dot, (const void *)t->layernorm,
                           (const void *)t->layernorm_backward, (const void *)t->norm_param_grad,
                           (const void *)t->rmsnorm, (const void *)t->rmsnorm_backward, (const void *)t->softmax,
                           (const void *)t->softmax_backward, (const void *)t->logsumexp,
                           (const void *)t->exp_shift_scale, (const void *)t->gelu, (const void *)t->gelu_backward,
                           (const void *)t->swiglu, (const void *)t->swiglu_backward, (const void *)t->adamw};
        if (!t->softcap || !t->softcap_backward) fail_msg("%s: softcap is NULL", t->name);
        assert_non_null(t->name);
        for (int k = 0; k < (int)(sizeof f / sizeof f[0]); k++)
            if (!f[k]) fail_msg("%s: %s is NULL", t->name, func_names[k]);
        if (!t->rows_by_matrix || !t->rows_by_pieces_t || !t->col_sum_add)
            fail_msg("%s: a row kernel is NULL", t->name);
    }
}

static void test_report(void **state) {
    if (!n_variants) skip();
    print_message("%-34s", "largest error vs reference");
    for (int v = 0; v < n_variants; v++) print_message("%12s", variants[v]->name);
    print_message("\n");
    for (int f = 0; f < N_FUNCS; f++) {
        print_message("%-34s", func_names[f]);
        for (int v = 0; v < n_variants; v++) print_message("%12.2e", worst[v][f]);
        print_message("\n");
    }
}

int main(void) {
    unsetenv("LMF_ISA"); /* before the first lmf_vec(): the dispatch test wants the CPU's own choice */
    lmf_isa best = lmf_cpu_best_isa();
    if (best >= LMF_ISA_AVX2) variants[n_variants++] = &lmf_vec_avx2;
    if (best >= LMF_ISA_AVX512) variants[n_variants++] = &lmf_vec_avx512;
    if (!n_variants) print_message("no SIMD variant runs on this CPU: comparisons skipped\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),       cmocka_unit_test(test_sum_dot),
        cmocka_unit_test(test_layernorm),      cmocka_unit_test(test_norm_param_grad),
        cmocka_unit_test(test_rmsnorm),        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_logsumexp_exp_shift_scale), cmocka_unit_test(test_softmax_special),
        cmocka_unit_test(test_exp),            cmocka_unit_test(test_gelu), cmocka_unit_test(test_softcap), cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_swiglu),         cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_rows_by_matrix),
        cmocka_unit_test(test_rows_by_pieces_t),
        cmocka_unit_test(test_col_sum_add),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
