/* checkpoint.h — the complete state of a training run in one file, written atomically.
 *
 * File OUT_DIR/ckpt-<step>.lmfc (step zero-padded to 8 digits):
 *   offset size field
 *        0    8 magic "LMFCKPT1"
 *        8    4 version (2; version 1 files, with an older in-house checksum, are refused naming both versions)
 *       12    4 reserved (0)
 *       16    8 config_len: bytes of config text that follow the header
 *       24    8 num_params P
 *       32    8 step (optimizer steps done)
 *       40    8 data epoch
 *       48    8 data index
 *       56    8 adam t
 *       64    8 checksum: XXH3-64 (libxxhash, seed 0) of everything after the 80-byte header
 *       72    8 reserved (0)
 *       80      config text (`name = value` lines, lmf_train_config_to_text), then params, m, v (P floats each)
 * The data order is a pure function of (seed, epoch, index), so with these fields a resumed run continues bit for
 * bit. Files are written to a .tmp name, fsynced, then renamed: a crash leaves the previous checkpoint intact. */
#ifndef LMF_IO_CHECKPOINT_H
#define LMF_IO_CHECKPOINT_H

#include "lmforge.h"

#include <stdint.h>

typedef struct {
    char *config_text;
    uint64_t num_params, step, epoch, index, adam_t;
    float *params, *m, *v; /* point into the loaded buffer */
    void *buffer;
    size_t buffer_size;
} lmf_checkpoint;

lmf_status lmf_checkpoint_save(const char *path, const char *config_text, uint64_t step, uint64_t epoch,
                               uint64_t index, uint64_t adam_t, const float *params, const float *m, const float *v,
                               uint64_t num_params);
/* Reads and fully verifies (magic, version, sizes, checksum) a checkpoint. */
lmf_status lmf_checkpoint_load(const char *path, lmf_checkpoint *ck);
void lmf_checkpoint_free(lmf_checkpoint *ck);
/* Path of the newest ckpt-*.lmfc in dir (by step), or LMF_ERR_IO if there is none. Caller frees *path. */
lmf_status lmf_checkpoint_latest(const char *dir, char **path);
/* Deletes all but the newest `keep` checkpoints in dir. */
void lmf_checkpoint_prune(const char *dir, int keep);

#endif
