/* shard.h — token shards: the trainer's input format.
 *
 * A shard is a 64-byte header followed by n_tokens little-endian unsigned integers of token_size bytes (2 when the
 * vocabulary fits in 16 bits, else 4). Documents are separated by the end-of-text token (eot, -1 if none).
 *
 *   offset size field
 *        0    8 magic "LMFSHARD"
 *        8    4 version (1)
 *       12    4 token_size (2 or 4)
 *       16    8 n_tokens
 *       24    4 vocab_size (every token < vocab_size)
 *       28    4 eot (int32, -1 = none)
 *       32    4 tokenizer kind (0 = bytes: token b < 256 is byte b; 1 = a BPE vocabulary)
 *       36   28 reserved, zero
 *
 * Readers memory-map the file and check the header against the file size. Writers stream tokens to a temporary
 * file and rename it into place on close, so a crash never leaves a truncated shard under the final name. */
#ifndef LMF_IO_SHARD_H
#define LMF_IO_SHARD_H

#include "lmforge.h"
#include "core/fs.h" /* lmf_atomic_file; and lmf_write_file_atomic, which lived here before */

#include <stdint.h>
#include <stdio.h>

enum { LMF_TOKENIZER_BYTES = 0, LMF_TOKENIZER_BPE = 1 };

typedef struct {
    char *path;
    void *map;
    size_t map_size;
    const void *tokens;
    int token_size;
    uint64_t n_tokens;
    uint32_t vocab_size;
    int32_t eot;
    uint32_t tokenizer;
} lmf_shard;

lmf_status lmf_shard_open(const char *path, lmf_shard **out);
void lmf_shard_close(lmf_shard *s);
static inline uint32_t lmf_shard_token(const lmf_shard *s, uint64_t i) {
    return s->token_size == 2 ? ((const uint16_t *)s->tokens)[i] : ((const uint32_t *)s->tokens)[i];
}

typedef struct {
    lmf_atomic_file out; /* the temporary file beside the shard's path, renamed into place on close */
    int token_size;
    uint64_t n_tokens;
    uint32_t vocab_size, tokenizer;
    int32_t eot;
} lmf_shard_writer;

lmf_status lmf_shard_writer_open(lmf_shard_writer *w, const char *path, uint32_t vocab_size, int32_t eot,
                                 uint32_t tokenizer);
lmf_status lmf_shard_writer_put(lmf_shard_writer *w, const uint32_t *tokens, size_t n);
/* Writes the header, fsyncs and renames into place. */
lmf_status lmf_shard_writer_close(lmf_shard_writer *w);
void lmf_shard_writer_abort(lmf_shard_writer *w);

#endif
