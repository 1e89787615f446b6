/* rng.c — PCG32 (O'Neill, "PCG: A Family of Simple Fast Space-Efficient Statistically Good Algorithms"). */
#include "core/rng.h"

#include <math.h>

void lmf_rng_seed(lmf_rng *r, uint64_t seed, uint64_t stream) {
    r->state = 0;
    r->inc = (stream << 1) | 1u;
    lmf_rng_u32(r);
    r->state += seed;
    lmf_rng_u32(r);
}

uint32_t lmf_rng_u32(lmf_rng *r) {
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

uint64_t lmf_rng_below(lmf_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t x, limit = UINT64_MAX - UINT64_MAX % n;
    do {
        x = ((uint64_t)lmf_rng_u32(r) << 32) | lmf_rng_u32(r);
    } while (x >= limit);
    return x % n;
}

float lmf_rng_uniform(lmf_rng *r) { return (lmf_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float lmf_rng_normal(lmf_rng *r) {
    /* One value per call (the second Box-Muller value is dropped) keeps the state a plain PCG state. */
    float u1 = (lmf_rng_u32(r) + 1.0f) * (1.0f / 4294967296.0f);
    float u2 = lmf_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

void lmf_rng_advance(lmf_rng *r, uint64_t n) {
    /* state -> a state + c applied n times is state -> A state + C with A = a^n and C = c (a^n - 1) / (a - 1),
     * both built by squaring (all mod 2^64) */
    uint64_t a = 6364136223846793005ULL, c = r->inc, A = 1, C = 0;
    for (; n; n >>= 1) {
        if (n & 1) A *= a, C = C * a + c;
        c = (a + 1) * c, a *= a;
    }
    r->state = A * r->state + C;
}
