/* dropout.h — the body of lmf_vec()->dropout, included by vec_ref.c, vec_avx2.c and vec_avx512.c so that each
 * compiles it for its own instruction set (the compiler vectorizes the 64-bit hash: vpmullq under AVX-512DQ). The
 * mask is a pure function of (key, element), so every variant gives the same bits. */
#ifndef LMF_KERNELS_DROPOUT_H
#define LMF_KERNELS_DROPOUT_H

#include <stdint.h>

/* element e's bit: splitmix64's finalizer of key ^ e, its top 53 bits against keep_from (kept when not below) */
static inline int lmf_dropout_kept(uint64_t key, uint64_t e, uint64_t keep_from) {
    uint64_t z = key ^ e;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (z >> 11) >= keep_from;
}

/* out may be x: each element reads its own */
static inline void lmf_dropout_body(float *out, const float *x, int n, uint64_t key, uint64_t e0, uint64_t keep_from,
                                    float scale) {
    for (int j = 0; j < n; j++) out[j] = lmf_dropout_kept(key, e0 + (uint64_t)j, keep_from) ? x[j] * scale : 0.0f;
}

#endif
