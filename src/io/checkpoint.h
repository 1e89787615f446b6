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
 * range-checked on load, and the sizes against the file's size, before anything is allocated from them.
 *
 * A data-parallel job with ZeRO-1 (N >= 2 ranks, each holding the AdamW moments of its own parameter range) writes
 * one checkpoint as a set: a manifest plus one optimizer shard per rank.
 *   manifest OUT_DIR/ckpt-<step>.lmfc, version 4: the header above with offset 12 = N (the shard count); after
 *     the config text the params (P floats), then N entries of three u64: lo, hi (the shard's parameter range;
 *     the ranges tile [0, P) in order) and the XXH3-64 of the whole shard file. The checksum covers all of it.
 *   shard OUT_DIR/ckpt-<step>.opt-<r>-of-<N>: 64-byte header (magic "LMFOPTS1", u32 version 1, u32 rank r, u64 N,
 *     u64 step, u64 lo, u64 hi, 16 reserved bytes), then m and v of [lo, hi) (hi - lo floats each).
 * Every rank writes its shard (tmp name, fsync, rename) and sends its checksum to rank 0, which writes the manifest
 * (tmp, fsync, rename) last: a crash before that leaves shards without a manifest, which no resume reads and the
 * next start removes; a manifest is only ever on disk with all its shards, and loading it verifies each shard's
 * size, header and checksum, so a set is taken whole or not at all (a damaged one is stepped over like a damaged
 * single file). Version 3 files stay what single-process runs write, and either kind resumes with any number of
 * ranks: lmf_checkpoint_read_moments reads any range of the moments from either. The shard files must be visible
 * to every rank that resumes (one host, or a shared file system). */
#ifndef LMF_IO_CHECKPOINT_H
#define LMF_IO_CHECKPOINT_H

#include "lmforge.h"

#include <stdint.h>

typedef struct {
    char *path;        /* the file it was loaded from (owned), for messages */
    uint32_t version;  /* 2, 3 or 4 (a sharded set's manifest) */
    char *config_text;
    uint64_t num_params, step, epoch, index, adam_t;
    float *params, *m, *v; /* point into the loaded buffer; m and v NULL for version 4 (lmf_checkpoint_read_moments) */
    void *buffer;
    size_t buffer_size;
    uint32_t n_shards;               /* version 4: the optimizer shards of the set; else 0 */
    uint64_t *shard_lo, *shard_hi, *shard_sum; /* n_shards each (owned) */
} lmf_checkpoint;

/* The shard file of rank r of n next to manifest `path` (ckpt-<step>.lmfc -> ckpt-<step>.opt-<r>-of-<n>). Caller
 * frees. */
char *lmf_checkpoint_shard_path(const char *manifest, int r, int n);
/* Writes rank r's optimizer shard (the moments of parameters [lo, hi)) for manifest path `manifest`, atomically;
 * *sum gets the file's XXH3-64 for the manifest. */
lmf_status lmf_checkpoint_save_shard(const char *manifest, int r, int n, uint64_t step, uint64_t lo, uint64_t hi,
                                     const float *m, const float *v, uint64_t *sum);
/* Writes the manifest of a set of n shards (lo, hi, sum: n entries each) atomically. */
lmf_status lmf_checkpoint_save_manifest(const char *path, const char *config_text, uint64_t step, uint64_t epoch,
                                        uint64_t index, uint64_t adam_t, const float *params, uint64_t num_params,
                                        int n, const uint64_t *lo, const uint64_t *hi, const uint64_t *sum);
/* The same manifest written piece by piece, for a job in which no rank holds all the parameters (pipeline stages):
 * begin, then params in order (num_params floats in all, any piece sizes), then end with the shard table, which
 * commits it atomically (its error, or a write's, is returned; the file is then not there). abort drops it. */
typedef struct lmf_manifest_writer lmf_manifest_writer;
lmf_status lmf_checkpoint_manifest_begin(lmf_manifest_writer **w, const char *path, const char *config_text,
                                         uint64_t step, uint64_t epoch, uint64_t index, uint64_t adam_t,
                                         uint64_t num_params, int n);
lmf_status lmf_checkpoint_manifest_params(lmf_manifest_writer *w, const float *p, size_t n);
lmf_status lmf_checkpoint_manifest_end(lmf_manifest_writer *w, const uint64_t *lo, const uint64_t *hi,
                                       const uint64_t *sum);
void lmf_checkpoint_manifest_abort(lmf_manifest_writer *w); /* NULL is fine */
/* The AdamW moments of parameters [lo, lo + n) from a loaded checkpoint of any version (a set: read from the shards
 * that hold the range). Errors name the shard file. */
lmf_status lmf_checkpoint_read_moments(const lmf_checkpoint *ck, uint64_t lo, uint64_t n, float *m, float *v);

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
/* Removes the temporary files (ckpt-*.lmfc.tmp, ckpt-*.opt-*.tmp) a killed save leaves in dir, and optimizer shards
 * whose manifest is missing (a save killed before its manifest); returns how many. */
int lmf_checkpoint_remove_stale(const char *dir);
/* Deletes all but the newest `keep` checkpoints in dir (a set's shards with its manifest). */
void lmf_checkpoint_prune(const char *dir, int keep);

#endif
