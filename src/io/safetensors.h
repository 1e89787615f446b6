/* safetensors.h — reading the safetensors format (Hugging Face's weight files; also our test fixtures).
 *
 * Layout: u64 little-endian N, then N bytes of JSON header, then the data block. The header maps each tensor name
 * to {"dtype": "F32"|"F16"|"BF16"|"I32"|..., "shape": [...], "data_offsets": [begin, end]} (relative to the data
 * block) and may hold "__metadata__": {string: string}. The file is memory-mapped read-only; every offset, shape
 * and dtype is checked against the file size before a tensor is handed out. */
#ifndef LMF_IO_SAFETENSORS_H
#define LMF_IO_SAFETENSORS_H

#include "lmforge.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { LMF_DT_F32, LMF_DT_F16, LMF_DT_BF16, LMF_DT_I32, LMF_DT_I64, LMF_DT_U8, LMF_DT_OTHER } lmf_dtype;

typedef struct {
    char *name;
    lmf_dtype dtype;
    int ndim;
    int64_t shape[8];
    const void *data; /* into the mapping */
    size_t nbytes;
} lmf_st_tensor;

typedef struct {
    char *path;
    void *map;
    size_t map_size;
    int n_tensors;
    lmf_st_tensor *tensors;
    int n_meta;
    char **meta_keys, **meta_values;
} lmf_safetensors;

lmf_status lmf_safetensors_open(const char *path, lmf_safetensors **out);
void lmf_safetensors_close(lmf_safetensors *st);
const lmf_st_tensor *lmf_safetensors_find(const lmf_safetensors *st, const char *name);
const char *lmf_safetensors_meta(const lmf_safetensors *st, const char *key);
size_t lmf_dtype_size(lmf_dtype dt);
const char *lmf_dtype_name(lmf_dtype dt); /* "F32", "BF16", ...; "?" for LMF_DT_OTHER */

/* ---- writer ------------------------------------------------------------------------------------------------------
 * One tensor to write: data (nbytes = product of shape x dtype size) is referenced, not copied; or, data NULL,
 * fill(ctx, dst, r0, n) makes the bytes of rows [r0, r0 + n) (a row: the dimensions after the first) as the file is
 * written, into a buffer of at most 16 MiB (or one row) reused for the next rows (a converted model, or its largest
 * tensor, is then never whole in memory). */
typedef struct {
    const char *name;
    lmf_dtype dtype;
    int ndim;
    int64_t shape[8];
    const void *data;
    void (*fill)(void *ctx, void *dst, uint64_t r0, uint64_t n);
    void *ctx;
} lmf_st_out;

/* Writes a safetensors file atomically (temporary file, fsync, rename): the header lists the tensors in the given
 * order with consecutive data_offsets, "__metadata__" holds the n_meta pairs meta[2i] -> meta[2i+1] (e.g.
 * "format" -> "pt", which transformers expects), and is padded with spaces to a multiple of 8 bytes so every
 * tensor stays 8-byte aligned when the data sizes are. Names given twice or an unknown dtype are bugs (assert). */
lmf_status lmf_safetensors_write(const char *path, const lmf_st_out *t, int n, const char *const *meta, int n_meta);

#endif
