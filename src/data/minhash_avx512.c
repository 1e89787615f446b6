/* minhash_avx512.c — the MinHash signature kernel with AVX-512 (F + DQ for vpmullq): 8 hash functions per
 * instruction. Same arithmetic as lmf_minhash_sig_ref in minhash.c, bit for bit (tested in tests/test_dedup.c):
 *   sig[j] = min over shingles s of r(a_j * s + b_j),  r(x) = x mod (2^61 - 1) on the wrapped 64-bit product.
 * The reduction without a branch: r = (x & p) + (x >> 61) is < 2p, and min_unsigned(r, r - p) picks r - p exactly
 * when r >= p (otherwise r - p wraps around to a huge value). */
#include "data/dedup.h"

#include <immintrin.h>

void lmf_minhash_sig_avx512(const uint64_t *sh, size_t ns, const uint64_t *a, const uint64_t *b, int H,
                            uint64_t *sig) {
    const __m512i p = _mm512_set1_epi64((long long)((1ULL << 61) - 1));
    for (int j0 = 0; j0 < H; j0 += 32) { /* four vectors of eight hash functions at a time */
        __mmask8 mk[4];
        __m512i va[4], vb[4], acc[4];
        for (int v = 0; v < 4; v++) {
            int left = H - j0 - 8 * v;
            mk[v] = left >= 8 ? 0xff : left > 0 ? (__mmask8)((1u << left) - 1) : 0;
            va[v] = _mm512_maskz_loadu_epi64(mk[v], a + j0 + 8 * v);
            vb[v] = _mm512_maskz_loadu_epi64(mk[v], b + j0 + 8 * v);
            acc[v] = _mm512_set1_epi64(-1);
        }
        for (size_t i = 0; i < ns; i++) {
            __m512i s = _mm512_set1_epi64((long long)sh[i]);
            for (int v = 0; v < 4; v++) {
                __m512i x = _mm512_add_epi64(_mm512_mullo_epi64(s, va[v]), vb[v]);
                __m512i r = _mm512_add_epi64(_mm512_and_si512(x, p), _mm512_srli_epi64(x, 61));
                r = _mm512_min_epu64(r, _mm512_sub_epi64(r, p));
                acc[v] = _mm512_min_epu64(acc[v], r);
            }
        }
        for (int v = 0; v < 4; v++) _mm512_mask_storeu_epi64(sig + j0 + 8 * v, mk[v], acc[v]);
    }
}
