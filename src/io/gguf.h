/* gguf.h — reading (and writing) GGUF, the single-file model format of ggml / llama.cpp.
 *
 * Layout (versions 2 and 3, little-endian; v3 only added the possibility of big-endian files, which we refuse):
 *
 *   offset  size  field
 *        0     4  magic "GGUF" (47 47 55 46)
 *        4     4  version (u32: 2 or 3)
 *        8     8  tensor_count (u64)
 *       16     8  metadata_kv_count (u64)
 *       24        metadata_kv_count key/values:  key (string), value_type (u32), value
 *                 tensor_count tensor infos:     name (string), n_dims (u32), dims (u64 x n_dims),
 *                                                ggml type (u32), offset (u64, relative to the data section)
 *                 zero padding up to a multiple of ALIGNMENT
 *                 data section: each tensor at its offset (a multiple of ALIGNMENT)
 *
 *   string = u64 length + that many bytes of UTF-8, no terminator.
 *   value  = u8 i8 u16 i16 u32 i32 f32 bool(1 byte, 0 or 1) string array u64 i64 f64 (value types 0..12 in that
 *            order); array = element type (u32) + count (u64) + the elements back to back.
 *   ALIGNMENT = metadata general.alignment (u32, a power of two), else 32.
 *   dims are in ggml order: dims[0] is the innermost (contiguous) one; a 2-D weight of shape [ne0, ne1] has ne1
 *   rows of ne0 elements, and quantized types pack each row in blocks of blck_size elements (ne0 % blck_size == 0).
 *
 * The reader memory-maps the file read-only and checks everything before handing anything out: every length and
 * count against the bytes left (overflow-safe), value types, bools, duplicate keys and tensor names, n_dims <= 4,
 * known ggml types, row lengths a multiple of the type's block, each tensor's bytes inside the data section,
 * aligned and not overlapping another. Each error names the file, the byte offset and what was expected. Nested
 * arrays (arrays of arrays) are refused: nothing in the known keys uses them.
 *
 * Ownership: lmf_gguf_close frees everything. Keys, tensor names and string values are NUL-terminated copies owned
 * by the lmf_gguf; array elements and tensor data point into the mapping (valid until close). Numeric array
 * elements may be unaligned: read them with lmf_gguf_arr_int / lmf_gguf_arr_float (or memcpy), never through a
 * cast pointer. See docs/formats.md. */
#ifndef LMF_IO_GGUF_H
#define LMF_IO_GGUF_H

#include "lmforge.h"
#include "core/dtype.h" /* lmf_ggml_type and its block table */

#include <stddef.h>
#include <stdint.h>

/* Metadata value types (the numbers are the file's). */
typedef enum {
    LMF_GGUF_U8 = 0,
    LMF_GGUF_I8 = 1,
    LMF_GGUF_U16 = 2,
    LMF_GGUF_I16 = 3,
    LMF_GGUF_U32 = 4,
    LMF_GGUF_I32 = 5,
    LMF_GGUF_F32 = 6,
    LMF_GGUF_BOOL = 7,
    LMF_GGUF_STRING = 8,
    LMF_GGUF_ARRAY = 9,
    LMF_GGUF_U64 = 10,
    LMF_GGUF_I64 = 11,
    LMF_GGUF_F64 = 12,
    LMF_GGUF_TYPE_COUNT
} lmf_gguf_type;

const char *lmf_gguf_type_name(uint32_t type); /* "u32", "string", ...; NULL if unknown */

typedef struct {
    char *key;                 /* NUL-terminated copy */
    lmf_gguf_type type;
    lmf_gguf_type elem_type;   /* arrays: the element type */
    uint64_t count;            /* arrays: the element count; 1 for a scalar */
    uint64_t offset;           /* file offset of the value (after the type), for messages */
    const uint8_t *data;       /* into the mapping: the scalar's bytes, or an array's first element */
    char *str;                 /* strings: NUL-terminated copy (the value may itself hold NUL bytes: use len) */
    uint64_t len;              /* strings: length in bytes */
    uint64_t *str_off;         /* arrays of strings: file offset of each element's u64 length (count entries) */
} lmf_gguf_kv;

typedef struct {
    char *name;                /* NUL-terminated copy */
    uint32_t type;             /* lmf_ggml_type */
    int n_dims;                /* 1..4 */
    int64_t ne[4];             /* ggml order (ne[0] innermost); unused dims are 1 */
    uint64_t n_elements;
    uint64_t offset;           /* relative to the data section */
    uint64_t nbytes;
    const void *data;          /* into the mapping (aligned to the file's alignment relative to the file start) */
    uint64_t info_offset;      /* file offset of this tensor's info, for messages */
} lmf_gguf_tensor;

typedef struct lmf_gguf {
    char *path;
    const uint8_t *map;
    size_t size;               /* file size in bytes */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;      /* start of the data section (file offset) */
    int64_t n_kv;
    lmf_gguf_kv *kv;
    int64_t n_tensors;
    lmf_gguf_tensor *tensors;
    /* internal: open-addressing hash tables of kv and tensor indexes (-1 = empty) */
    int64_t *kv_slots, *tensor_slots;
    uint64_t kv_mask, tensor_mask;
} lmf_gguf;

/* 1 if the file at path starts with the GGUF magic (for loaders that accept several formats), else 0. */
int lmf_gguf_sniff(const char *path);
/* Opens and validates a GGUF file. Fails with LMF_ERR_IO (cannot open/map) or LMF_ERR_FORMAT naming the offset. */
lmf_status lmf_gguf_open(const char *path, lmf_gguf **out);
void lmf_gguf_close(lmf_gguf *g);

/* Metadata by key; NULL if absent. */
const lmf_gguf_kv *lmf_gguf_find(const lmf_gguf *g, const char *key);

/* Typed getters. A missing key or a value of another type fails with LMF_ERR_FORMAT naming the file, the key, the
 * offset and the type found. Integers are accepted from any integer type whose value fits the requested one (the
 * spec recommends readers accept u32 and u64 counts alike); f32 also accepts f64 and f64 also f32. */
lmf_status lmf_gguf_get_str(const lmf_gguf *g, const char *key, const char **out); /* NUL-terminated */
lmf_status lmf_gguf_get_u32(const lmf_gguf *g, const char *key, uint32_t *out);
lmf_status lmf_gguf_get_i32(const lmf_gguf *g, const char *key, int32_t *out);
lmf_status lmf_gguf_get_u64(const lmf_gguf *g, const char *key, uint64_t *out);
lmf_status lmf_gguf_get_i64(const lmf_gguf *g, const char *key, int64_t *out);
lmf_status lmf_gguf_get_f32(const lmf_gguf *g, const char *key, float *out);
lmf_status lmf_gguf_get_f64(const lmf_gguf *g, const char *key, double *out);
lmf_status lmf_gguf_get_bool(const lmf_gguf *g, const char *key, int *out);
/* An array; elem_type is checked unless it is LMF_GGUF_TYPE_COUNT (any). LMF_GGUF_I64 as elem_type accepts any
 * integer element type (read them with lmf_gguf_arr_int). */
lmf_status lmf_gguf_get_arr(const lmf_gguf *g, const char *key, lmf_gguf_type elem_type, const lmf_gguf_kv **out);

/* Elements of an array kv (i < kv->count; out of range is a bug and asserts). */
const char *lmf_gguf_arr_str(const lmf_gguf *g, const lmf_gguf_kv *kv, uint64_t i, size_t *len); /* not NUL-terminated */
int64_t lmf_gguf_arr_int(const lmf_gguf_kv *kv, uint64_t i);   /* integer or bool elements (u64 > INT64_MAX: -1) */
double lmf_gguf_arr_float(const lmf_gguf_kv *kv, uint64_t i);  /* f32 / f64 elements (integers converted) */

/* Tensor by name; NULL if absent. */
const lmf_gguf_tensor *lmf_gguf_find_tensor(const lmf_gguf *g, const char *name);

/* ---- writer ------------------------------------------------------------------------------------------------------
 * Builds a GGUF v3 file: metadata in call order, then tensor infos and data in add order, each tensor at the next
 * multiple of the alignment. Tensor data is referenced, not copied: it must stay valid until write/bytes returns.
 * Misuse (a key or tensor name given twice, a row length not a multiple of the block) is a bug and asserts. */
typedef struct lmf_gguf_writer lmf_gguf_writer;

lmf_gguf_writer *lmf_gguf_writer_create(uint32_t alignment); /* 0: the default 32 (general.alignment not written) */
void lmf_gguf_writer_free(lmf_gguf_writer *w);
void lmf_gguf_writer_set_str(lmf_gguf_writer *w, const char *key, const char *value);
void lmf_gguf_writer_set_u32(lmf_gguf_writer *w, const char *key, uint32_t value);
void lmf_gguf_writer_set_i32(lmf_gguf_writer *w, const char *key, int32_t value);
void lmf_gguf_writer_set_u64(lmf_gguf_writer *w, const char *key, uint64_t value);
void lmf_gguf_writer_set_f32(lmf_gguf_writer *w, const char *key, float value);
void lmf_gguf_writer_set_bool(lmf_gguf_writer *w, const char *key, int value);
/* A scalar of any non-string, non-array type from its little-endian bytes (size implied by the type). */
void lmf_gguf_writer_set_raw(lmf_gguf_writer *w, const char *key, lmf_gguf_type type, const void *value);
void lmf_gguf_writer_set_arr_str(lmf_gguf_writer *w, const char *key, const char *const *values, uint64_t n);
/* An array of n numeric/bool elements given as little-endian bytes, back to back. */
void lmf_gguf_writer_set_arr(lmf_gguf_writer *w, const char *key, lmf_gguf_type elem_type, const void *values,
                             uint64_t n);
void lmf_gguf_writer_add_tensor(lmf_gguf_writer *w, const char *name, lmf_ggml_type type, int n_dims,
                                const int64_t *ne, const void *data);
/* A tensor whose bytes are made as the file is written, rows [r0, r0 + n) at a time (a row: ne[0] elements; the
 * rows run over ne[1] x ne[2] x ne[3]): fill(ctx, dst, r0, n) writes their bytes into dst, a buffer of at most
 * 16 MiB (or one row) reused for the next rows. A model converted this way never sits whole in memory, nor does its
 * largest tensor (a 128k-token embedding is 2 GiB in F32): only a few MiB of it at a time. */
typedef void (*lmf_gguf_fill_fn)(void *ctx, void *dst, uint64_t r0, uint64_t n);
void lmf_gguf_writer_add_lazy(lmf_gguf_writer *w, const char *name, lmf_ggml_type type, int n_dims,
                              const int64_t *ne, lmf_gguf_fill_fn fill, void *ctx);
/* The whole file in memory (malloc'd; the caller frees). */
void lmf_gguf_writer_bytes(const lmf_gguf_writer *w, uint8_t **out, size_t *len);
/* Writes the file atomically (temporary file, fsync, rename). */
lmf_status lmf_gguf_writer_write(const lmf_gguf_writer *w, const char *path);

#endif
