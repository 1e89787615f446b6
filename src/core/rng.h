/* rng.h — a small, seedable, serialisable random generator (PCG32), so a checkpoint can save and restore the exact
 * random state and a resumed run draws the same numbers as an uninterrupted one. */
#ifndef LMF_CORE_RNG_H
#define LMF_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state, inc;
} lmf_rng;

void lmf_rng_seed(lmf_rng *r, uint64_t seed, uint64_t stream);
uint32_t lmf_rng_u32(lmf_rng *r);
uint64_t lmf_rng_below(lmf_rng *r, uint64_t n); /* uniform in [0, n) without modulo bias */
float lmf_rng_uniform(lmf_rng *r);              /* [0, 1) */
float lmf_rng_normal(lmf_rng *r);               /* standard normal (Box-Muller), 2 u32 draws a value */
/* Moves r on by n u32 draws in O(log n) (the LCG's jump-ahead, Brown 1994): the state n calls of lmf_rng_u32 would
 * leave. A pipeline stage starts its layers' slice of a tensor's stream where one process would reach it. */
void lmf_rng_advance(lmf_rng *r, uint64_t n);

#endif
