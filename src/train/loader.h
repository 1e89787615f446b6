/* loader.h — batches of (inputs, targets) from a token shard.
 *
 * The shard is cut into non-overlapping windows of T+1 tokens starting at multiples of T (targets are the inputs
 * shifted by one). Training visits the windows in a fresh random order each epoch; the order of epoch e is a
 * Fisher-Yates shuffle seeded by (seed, e), so the loader's whole state is (epoch, index) and a checkpoint that
 * stores those two numbers resumes the exact same batches. Validation reads windows in file order. */
#ifndef LMF_TRAIN_LOADER_H
#define LMF_TRAIN_LOADER_H

#include "io/shard.h"

typedef struct {
    const lmf_shard *shard;
    int B, T, shuffle;
    uint64_t seed, n_windows;
    uint64_t epoch, index; /* position: next window is order[index] of epoch `epoch` */
    uint32_t *order;       /* permutation of the current epoch (NULL when not shuffling) */
} lmf_loader;

lmf_status lmf_loader_init(lmf_loader *l, const lmf_shard *shard, int B, int T, uint64_t seed, int shuffle);
void lmf_loader_free(lmf_loader *l);
/* Moves to (epoch, index), e.g. from a checkpoint. */
lmf_status lmf_loader_seek(lmf_loader *l, uint64_t epoch, uint64_t index);
/* Fills inputs and targets (B x T each). */
void lmf_loader_next(lmf_loader *l, int32_t *inputs, int32_t *targets);
/* Moves past n windows as n / B calls of next() would (epochs turn over the same way), reading nothing: a
 * data-parallel rank passes over the other ranks' micro-batches of the global batch. */
void lmf_loader_skip(lmf_loader *l, uint64_t n);

#endif
