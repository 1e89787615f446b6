/* checkpoint.h — the complete state of a training run in one file, written atomically.
 *
 * File OUT_DIR/ckpt-<step>.lmfc (step zero-padded to 8 digits):
 *   offset size field
 *        0    8 magic "LMFCKPT1"
 *        8    4 version (3; version 2 is still read, version 1 refused naming both versions)
 *       12    4 reserved (0)
 *       16    8 config_len: bytes of config text that follow the header
 *       24    8 num_params P
 *       32    8 step (optimizer steps done, <= 2^31 - 1)
 *       40    8 data epoch (<= 2^31 - 1)
 *       48    8 data index (a window number, <= 2^32 - 1)
 *       56    8 adam t (<= 2^31 - 1)
 *       64    8 checksum: XXH3-64 (libxxhash, seed 0) of the whole file with these 8 bytes read as zero
 *             (version 2: of everything after the 80-byte header, so its header fields were not covered)
 *       72    8 reserved (0)
 *       80      config text (`name = value` lines, lmf_train_config_to_text), then params, m, v (P floats each)
 * The data order is a pure function of (seed, epoch, index), so with these fields a resumed run continues bit for
 * bit. Files are written to a .tmp name, fsynced, then renamed: a crash leaves the previous checkpoint intact (and
 * at worst a stale ckpt-*.lmfc.tmp, which lmf_checkpoint_remove_stale clears at the next start). Every field is
 * range-checked on load, and the sizes against the file's size, before anything is allocated from them. */
#ifndef LMF_IO_CHECKPOINT_H
#define LMF_IO_CHECKPOINT_H

#include "lmforge.h"

#include <stdint.h>

typedef struct {
    char *path;        /* the file it was loaded from (owned), for messages */
    uint32_t version;  /* 2 or 3 */
    char *config_text;
    uint64_t num_params, step, epoch, index, adam_t;
    float *params, *m, *v; /* point into the loaded buffer */
    void *buffer;
    size_t buffer_size;
} lmf_checkpoint;

lmf_status lmf_checkpoint_save(const char *path, const char *config_text, uint64_t step, uint64_t epoch,
                               uint64_t index, uint64_t adam_t, const float *params, const float *m, const float *v,
                               uint64_t num_params);
/* Reads and fully verifies (magic, version, sizes, checksum, field ranges) a checkpoint; errors name the file and
 * the field. */
lmf_status lmf_checkpoint_load(const char *path, lmf_checkpoint *ck);
void lmf_checkpoint_free(lmf_checkpoint *ck);
/* Path of the newest ckpt-*.lmfc in dir (by step), or LMF_ERR_IO if there is none. Caller frees *path. */
lmf_status lmf_checkpoint_latest(const char *dir, char **path);
/* Loads the newest checkpoint of dir that verifies. When newer ones are damaged (LMF_ERR_FORMAT: torn, bit-flipped),
 * it steps back to the previous one and writes to note (when note_size > 0) what it skipped and why; set_aside
 * renames each damaged file to <name>.corrupt (for a run that will write into dir again). Fails with the newest
 * file's error when none loads, or LMF_ERR_IO when dir has no checkpoint. */
lmf_status lmf_checkpoint_load_latest(const char *dir, int set_aside, lmf_checkpoint *ck, char *note,
                                      size_t note_size);
/* Removes the temporary files (ckpt-*.lmfc.tmp) a killed save leaves in dir; returns how many. */
int lmf_checkpoint_remove_stale(const char *dir);
/* Deletes all but the newest `keep` checkpoints in dir. */
void lmf_checkpoint_prune(const char *dir, int keep);

#endif
