/* test_util.h — shared helpers for the C tests (cmocka). */
#ifndef LMF_TEST_UTIL_H
#define LMF_TEST_UTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

/* max |a - b| / max |b|: the error relative to the tensor's scale, robust to entries that are ~0 in theory. */
static inline double rel_err(const float *a, const float *b, long n) {
    double maxdiff = 0.0, maxref = 0.0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= maxdiff)) maxdiff = d; /* catches NaN */
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    return maxref > 0 ? maxdiff / maxref : maxdiff;
}

static inline void fill_normal(float *x, long n, unsigned seed, float scale) {
    srand(seed);
    for (long i = 0; i < n; i++) {
        double u1 = (rand() + 1.0) / (RAND_MAX + 2.0), u2 = rand() / (RAND_MAX + 1.0);
        x[i] = (float)(scale * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

#define assert_close(a, b, n, tol, what)                                                                           \
    do {                                                                                                           \
        double e_ = rel_err((a), (b), (n));                                                                        \
        if (!(e_ <= (tol))) fail_msg("%s: relative error %.3g > %.3g", (what), e_, (double)(tol));                \
    } while (0)

#endif
