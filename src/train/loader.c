/* loader.c — see loader.h. */
#include "train/loader.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "core/status.h"

#include <stdlib.h>

static void shuffle_epoch(lmf_loader *l) {
    lmf_rng r;
    lmf_rng_seed(&r, l->seed, 0x5eed0000ULL + l->epoch);
    for (uint64_t i = 0; i < l->n_windows; i++) l->order[i] = (uint32_t)i;
    for (uint64_t i = l->n_windows - 1; i > 0; i--) {
        uint64_t j = lmf_rng_below(&r, i + 1);
        uint32_t t = l->order[i];
        l->order[i] = l->order[j], l->order[j] = t;
    }
}

lmf_status lmf_loader_init(lmf_loader *l, const lmf_shard *shard, int B, int T, uint64_t seed, int shuffle) {
    *l = (lmf_loader){.shard = shard, .B = B, .T = T, .shuffle = shuffle, .seed = seed};
    if (shard->n_tokens < (uint64_t)T + 1)
        return lmf_fail(LMF_ERR_MISMATCH, "%s: %llu tokens, fewer than one sequence of seq_len+1 = %d", shard->path,
                        (unsigned long long)shard->n_tokens, T + 1);
    l->n_windows = (shard->n_tokens - 1) / (uint64_t)T;
    if (l->n_windows > UINT32_MAX) l->n_windows = UINT32_MAX;
    if (shuffle) {
        l->order = lmf_xmalloc(sizeof(uint32_t) * l->n_windows);
        shuffle_epoch(l);
    }
    return LMF_OK;
}

void lmf_loader_free(lmf_loader *l) {
    free(l->order);
    l->order = NULL;
}

lmf_status lmf_loader_seek(lmf_loader *l, uint64_t epoch, uint64_t index) {
    if (index > l->n_windows)
        return lmf_fail(LMF_ERR_MISMATCH, "%s: data position %llu is past the shard's %llu windows", l->shard->path,
                        (unsigned long long)index, (unsigned long long)l->n_windows);
    l->epoch = epoch, l->index = index;
    if (l->shuffle) shuffle_epoch(l);
    return LMF_OK;
}

void lmf_loader_next(lmf_loader *l, int32_t *inputs, int32_t *targets) {
    for (int b = 0; b < l->B; b++) {
        if (l->index >= l->n_windows) {
            l->epoch++, l->index = 0;
            if (l->shuffle) shuffle_epoch(l);
        }
        uint64_t w = l->shuffle ? l->order[l->index] : l->index;
        l->index++;
        uint64_t start = w * (uint64_t)l->T;
        for (int t = 0; t < l->T; t++) {
            inputs[b * l->T + t] = (int32_t)lmf_shard_token(l->shard, start + t);
            targets[b * l->T + t] = (int32_t)lmf_shard_token(l->shard, start + t + 1);
        }
    }
}

void lmf_loader_skip(lmf_loader *l, uint64_t n) {
    while (n) {
        /* the same lazy turn-over as next(): a new epoch starts when a window is wanted, not when one runs out */
        if (l->index >= l->n_windows) {
            l->epoch++, l->index = 0;
            if (l->shuffle) shuffle_epoch(l);
        }
        uint64_t take = l->n_windows - l->index < n ? l->n_windows - l->index : n;
        l->index += take, n -= take;
    }
}
