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
#include <string.h>
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

/* Whole file, NUL-terminated; NULL if it cannot be opened; *n (if given) gets its length. Caller frees. */
static inline char *slurp(const char *path, size_t *n) {
    if (n) *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) fail_msg("short read %s", path);
    fclose(f);
    b[len] = 0;
    if (n) *n = (size_t)len;
    return b;
}

/* The real SmolLM2-135M-Instruct GGUF: $LMF_SMOLLM2_GGUF, else <this build>/models/, else <source>/build/models/
 * (where scripts/fetch-smollm2.sh puts it, so the sanitizer build finds it too). */
static inline const char *smollm2_path(void) {
    static char p[1024];
    const char *e = getenv("LMF_SMOLLM2_GGUF");
    if (e && *e) return e;
    FILE *f;
    snprintf(p, sizeof p, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", LMF_BINARY_DIR);
    if ((f = fopen(p, "rb"))) {
        fclose(f);
        return p;
    }
    snprintf(p, sizeof p, "%s/build/models/SmolLM2-135M-Instruct.Q4_1.gguf", LMF_SOURCE_DIR);
    return p;
}

#define assert_close(a, b, n, tol, what)                                                                           \
    do {                                                                                                           \
        double e_ = rel_err((a), (b), (n));                                                                        \
        if (!(e_ <= (tol))) fail_msg("%s: relative error %.3g > %.3g", (what), e_, (double)(tol));                \
    } while (0)

/* Decodes base64 text into out (at most cap bytes); returns the byte count. */
static inline size_t b64_decode(const char *s, uint8_t *out, size_t cap) {
    static const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *s && *s != '='; s++) {
        const char *p = strchr(tab, *s);
        if (!p) fail_msg("bad base64 character");
        acc = (acc << 6) | (uint32_t)(p - tab), bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap) fail_msg("base64 longer than %zu bytes", cap);
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

/* Index of the largest element (the first of equals). */
static inline int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}


#endif
