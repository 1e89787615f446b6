/* gguf.c — see gguf.h. The file is hostile input: every read goes through a cursor that checks the bytes left
 * first, every size is computed with overflow checks, and every error names the file, the byte offset and what
 * was expected there. */
#include "io/gguf.h"
#include "core/alloc.h"
#include "core/sort.h"
#include "core/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- type tables ------------------------------------------------------------------------------------------------ */

static const char *const gguf_type_names[LMF_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
static const uint8_t gguf_scalar_size[LMF_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *lmf_gguf_type_name(uint32_t type) { return type < LMF_GGUF_TYPE_COUNT ? gguf_type_names[type] : NULL; }

/* ---- reading ---------------------------------------------------------------------------------------------------- */

typedef struct {
    lmf_gguf *g;
    uint64_t pos;
    char what[200]; /* the item being read, for messages: "metadata entry 3 ('llama.block_count')" */
} cursor;

typedef unsigned long long ull;

static uint64_t left(const cursor *c) { return c->g->size - c->pos; }

static lmf_status truncated(const cursor *c, uint64_t need, const char *field) {
    return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: %s needs %llu bytes but only %llu remain (file size %zu; "
                    "truncated?)", c->g->path, (ull)c->pos, c->what, field, (ull)need, (ull)left(c), c->g->size);
}

static lmf_status rd_u32(cursor *c, uint32_t *v, const char *field) {
    if (left(c) < 4) return truncated(c, 4, field);
    memcpy(v, c->g->map + c->pos, 4);
    c->pos += 4;
    return LMF_OK;
}

static lmf_status rd_u64(cursor *c, uint64_t *v, const char *field) {
    if (left(c) < 8) return truncated(c, 8, field);
    memcpy(v, c->g->map + c->pos, 8);
    c->pos += 8;
    return LMF_OK;
}

/* A string: u64 length + bytes. *p points into the mapping. max_len bounds the length (names and keys). */
static lmf_status rd_str(cursor *c, const char **p, uint64_t *len, const char *field, uint64_t max_len) {
    uint64_t at = c->pos;
    LMF_TRY(rd_u64(c, len, field));
    if (*len > left(c))
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: %s of length %llu runs past the end of the file "
                        "(%llu bytes remain after the length; truncated or corrupt?)", c->g->path, (ull)at, c->what,
                        field, (ull)*len, (ull)left(c));
    if (*len > max_len)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: %s is %llu bytes long (at most %llu allowed)",
                        c->g->path, (ull)at, c->what, field, (ull)*len, (ull)max_len);
    *p = (const char *)c->g->map + c->pos;
    c->pos += *len;
    return LMF_OK;
}

static char *copy_str(const char *p, uint64_t len) {
    char *s = lmf_xmalloc(len + 1);
    memcpy(s, p, len);
    s[len] = 0;
    return s;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* The name of item j of an array of structs: a char * at byte name_off of each stride-byte item. */
static const char *name_at(const void *items, size_t stride, size_t name_off, int64_t j) {
    const char *p;
    memcpy(&p, (const char *)items + (size_t)j * stride + name_off, sizeof p);
    return p;
}

/* Builds the open-addressing name index (*slots, *mask) of n items. Returns -1, or the first item whose name an
 * earlier one already has (*dup: that earlier one). */
static int64_t build_index(const void *items, size_t stride, size_t name_off, int64_t n, int64_t **slots,
                           uint64_t *mask, int64_t *dup) {
    *mask = pow2_at_least((uint64_t)n * 2) - 1;
    *slots = lmf_xmalloc((*mask + 1) * sizeof **slots);
    memset(*slots, 0xff, (*mask + 1) * sizeof **slots);
    for (int64_t i = 0; i < n; i++) {
        const char *name = name_at(items, stride, name_off, i);
        uint64_t h = hash_str(name) & *mask;
        for (; (*slots)[h] >= 0; h = (h + 1) & *mask)
            if (!strcmp(name_at(items, stride, name_off, (*slots)[h]), name)) {
                *dup = (*slots)[h];
                return i;
            }
        (*slots)[h] = i;
    }
    return -1;
}

static lmf_status parse_value(cursor *c, lmf_gguf_kv *kv) {
    lmf_gguf *g = c->g;
    kv->offset = c->pos;
    kv->count = 1;
    if (kv->type == LMF_GGUF_STRING) {
        const char *p;
        LMF_TRY(rd_str(c, &p, &kv->len, "string value", UINT64_MAX));
        kv->str = copy_str(p, kv->len);
        kv->data = (const uint8_t *)p;
        return LMF_OK;
    }
    if (kv->type != LMF_GGUF_ARRAY) {
        uint64_t n = gguf_scalar_size[kv->type];
        if (left(c) < n) return truncated(c, n, gguf_type_names[kv->type]);
        kv->data = g->map + c->pos;
        if (kv->type == LMF_GGUF_BOOL && kv->data[0] > 1)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: bool value is %u (expected 0 or 1)", g->path,
                            (ull)c->pos, c->what, kv->data[0]);
        c->pos += n;
        return LMF_OK;
    }
    uint64_t at = c->pos;
    uint32_t et = 0;
    LMF_TRY(rd_u32(c, &et, "array element type"));
    if (et >= LMF_GGUF_TYPE_COUNT)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: array element type %u is not a GGUF value type "
                        "(expected 0..12)", g->path, (ull)at, c->what, et);
    if (et == LMF_GGUF_ARRAY)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: arrays of arrays are not supported", g->path,
                        (ull)at, c->what);
    kv->elem_type = (lmf_gguf_type)et;
    at = c->pos;
    LMF_TRY(rd_u64(c, &kv->count, "array length"));
    uint64_t esize = et == LMF_GGUF_STRING ? 8 : gguf_scalar_size[et]; /* a string element needs >= 8 bytes */
    if (kv->count > left(c) / esize)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: array of %llu %s elements cannot fit in the %llu "
                        "bytes left (truncated, or a corrupt length?)", g->path, (ull)at, c->what, (ull)kv->count,
                        gguf_type_names[et], (ull)left(c));
    kv->data = g->map + c->pos;
    if (et != LMF_GGUF_STRING) {
        if (et == LMF_GGUF_BOOL)
            for (uint64_t i = 0; i < kv->count; i++)
                if (kv->data[i] > 1)
                    return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: bool element %llu is %u (expected 0 or 1)",
                                    g->path, (ull)(c->pos + i), c->what, (ull)i, kv->data[i]);
        c->pos += kv->count * esize;
        return LMF_OK;
    }
    kv->str_off = lmf_xmalloc((kv->count ? kv->count : 1) * sizeof *kv->str_off);
    for (uint64_t i = 0; i < kv->count; i++) {
        const char *p;
        uint64_t len;
        char field[64];
        snprintf(field, sizeof field, "string element %llu", (ull)i);
        kv->str_off[i] = c->pos;
        LMF_TRY(rd_str(c, &p, &len, field, UINT64_MAX));
    }
    return LMF_OK;
}

static lmf_status parse_kvs(cursor *c) {
    lmf_gguf *g = c->g;
    for (int64_t i = 0; i < g->n_kv; i++) {
        lmf_gguf_kv *kv = &g->kv[i];
        snprintf(c->what, sizeof c->what, "metadata entry %lld of %lld", (long long)i, (long long)g->n_kv);
        uint64_t at = c->pos;
        const char *p;
        uint64_t len;
        LMF_TRY(rd_str(c, &p, &len, "key", 65535));
        if (len == 0 || memchr(p, 0, len))
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: key is empty or holds a NUL byte", g->path,
                            (ull)at, c->what);
        kv->key = copy_str(p, len);
        snprintf(c->what, sizeof c->what, "metadata entry %lld ('%.120s')", (long long)i, kv->key);
        at = c->pos;
        uint32_t t = 0;
        LMF_TRY(rd_u32(c, &t, "value type"));
        if (t >= LMF_GGUF_TYPE_COUNT)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: value type %u is not a GGUF value type "
                            "(expected 0..12)", g->path, (ull)at, c->what, t);
        kv->type = (lmf_gguf_type)t;
        LMF_TRY(parse_value(c, kv));
    }
    int64_t dup, i = build_index(g->kv, sizeof *g->kv, offsetof(lmf_gguf_kv, key), g->n_kv, &g->kv_slots,
                                 &g->kv_mask, &dup);
    if (i >= 0)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: metadata key '%.120s' appears twice (entries %lld and "
                        "%lld)", g->path, (ull)g->kv[i].offset, g->kv[i].key, (long long)dup, (long long)i);
    return LMF_OK;
}

/* bytes of a tensor: (ne0 / blck) * blck_bytes * ne1 * ne2 * ne3, or UINT64_MAX on overflow */
static uint64_t tensor_bytes(const lmf_gguf_tensor *t) {
    uint32_t blck, bytes;
    lmf_ggml_type_block(t->type, &blck, &bytes); /* the type was checked when the info was read */
    uint64_t n = (uint64_t)t->ne[0] / blck;
    if (n && bytes > UINT64_MAX / n) return UINT64_MAX;
    n *= bytes;
    for (int d = 1; d < 4; d++) {
        if (t->ne[d] && n > UINT64_MAX / (uint64_t)t->ne[d]) return UINT64_MAX;
        n *= (uint64_t)t->ne[d];
    }
    return n;
}

static lmf_status parse_tensor_infos(cursor *c) {
    lmf_gguf *g = c->g;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        lmf_gguf_tensor *t = &g->tensors[i];
        t->info_offset = c->pos;
        snprintf(c->what, sizeof c->what, "tensor info %lld of %lld", (long long)i, (long long)g->n_tensors);
        const char *p;
        uint64_t len;
        LMF_TRY(rd_str(c, &p, &len, "name", 64)); /* the spec: names are at most 64 bytes */
        if (len == 0 || memchr(p, 0, len))
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: name is empty or holds a NUL byte", g->path,
                            (ull)t->info_offset, c->what);
        t->name = copy_str(p, len);
        snprintf(c->what, sizeof c->what, "tensor %lld ('%s')", (long long)i, t->name);
        uint64_t at = c->pos;
        uint32_t nd = 0;
        LMF_TRY(rd_u32(c, &nd, "n_dims"));
        if (nd < 1 || nd > 4)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: n_dims is %u (expected 1..4)", g->path, (ull)at,
                            c->what, nd);
        t->n_dims = (int)nd;
        t->n_elements = 1;
        for (int d = 0; d < 4; d++) {
            uint64_t v = 1;
            at = c->pos;
            if (d < t->n_dims) LMF_TRY(rd_u64(c, &v, "dimension"));
            if (v > (uint64_t)INT64_MAX || (v && t->n_elements > (uint64_t)INT64_MAX / v))
                return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: dimension %d = %llu makes the element count "
                                "overflow", g->path, (ull)at, c->what, d, (ull)v);
            t->ne[d] = (int64_t)v;
            t->n_elements *= v;
        }
        at = c->pos;
        LMF_TRY(rd_u32(c, &t->type, "type"));
        if (!lmf_ggml_type_name(t->type))
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: unknown ggml type %u (hint: a quantization newer "
                            "than this reader; known: F32 F16 BF16 F64 I8..I64 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q2_K..Q8_K "
                            "IQ* TQ1_0 TQ2_0 MXFP4)", g->path, (ull)at, c->what, t->type);
        uint32_t blck, bytes;
        lmf_ggml_type_block(t->type, &blck, &bytes);
        if ((uint64_t)t->ne[0] % blck)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: %s: row length %lld is not a multiple of %s's block of "
                            "%u elements", g->path, (ull)t->info_offset, c->what, (long long)t->ne[0],
                            lmf_ggml_type_name(t->type), blck);
        LMF_TRY(rd_u64(c, &t->offset, "data offset"));
    }
    int64_t dup, i = build_index(g->tensors, sizeof *g->tensors, offsetof(lmf_gguf_tensor, name), g->n_tensors,
                                 &g->tensor_slots, &g->tensor_mask, &dup);
    if (i >= 0)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tensor name '%s' appears twice (tensors %lld and %lld)",
                        g->path, (ull)g->tensors[i].info_offset, g->tensors[i].name, (long long)dup, (long long)i);
    return LMF_OK;
}

static lmf_status parse_alignment(lmf_gguf *g) {
    g->alignment = 32;
    const lmf_gguf_kv *kv = lmf_gguf_find(g, "general.alignment");
    if (!kv) return LMF_OK;
    if (kv->type != LMF_GGUF_U32)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: general.alignment is %s, expected u32", g->path,
                        (ull)kv->offset, gguf_type_names[kv->type]);
    uint32_t a;
    memcpy(&a, kv->data, 4);
    if (a == 0 || (a & (a - 1)))
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: general.alignment is %u (expected a power of two)", g->path,
                        (ull)kv->offset, a);
    g->alignment = a;
    return LMF_OK;
}

/* Places every tensor in the data section: aligned, inside the file, no two overlapping. */
static lmf_status place_tensors(lmf_gguf *g, uint64_t infos_end) {
    uint64_t a = g->alignment;
    uint64_t pad = (a - infos_end % a) % a;
    g->data_offset = infos_end + pad; /* infos_end <= size < 2^63: no overflow */
    uint64_t data_size = g->size > g->data_offset ? g->size - g->data_offset : 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        lmf_gguf_tensor *t = &g->tensors[i];
        if (t->offset % a)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tensor '%s': data offset %llu is not a multiple of the "
                            "alignment %llu", g->path, (ull)t->info_offset, t->name, (ull)t->offset, (ull)a);
        t->nbytes = tensor_bytes(t);
        if (t->nbytes == UINT64_MAX)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tensor '%s': byte size overflows", g->path,
                            (ull)t->info_offset, t->name);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tensor '%s' (%s, %llu bytes) at data offset %llu "
                            "(file offset %llu) runs past the end of the file (size %zu; the data section starts at "
                            "%llu; truncated?)", g->path, (ull)t->info_offset, t->name, lmf_ggml_type_name(t->type),
                            (ull)t->nbytes, (ull)t->offset, (ull)(g->data_offset + t->offset), g->size,
                            (ull)g->data_offset);
        t->data = g->map + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2) return LMF_OK;
    lmf_keyed *order = lmf_xmalloc((size_t)g->n_tensors * sizeof *order);
    for (int64_t i = 0; i < g->n_tensors; i++) order[i] = (lmf_keyed){g->tensors[i].offset, i};
    qsort(order, (size_t)g->n_tensors, sizeof *order, lmf_by_key);
    lmf_status s = LMF_OK;
    const lmf_gguf_tensor *prev = NULL;
    for (int64_t k = 0; k < g->n_tensors && s == LMF_OK; k++) {
        const lmf_gguf_tensor *t = &g->tensors[order[k].index];
        if (t->nbytes == 0) continue;
        if (prev && prev->offset + prev->nbytes > t->offset)
            s = lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: tensor '%s' (data %llu..%llu) overlaps tensor '%s' (data "
                         "%llu..%llu)", g->path, (ull)t->info_offset, t->name, (ull)t->offset,
                         (ull)(t->offset + t->nbytes), prev->name, (ull)prev->offset,
                         (ull)(prev->offset + prev->nbytes));
        prev = t;
    }
    free(order);
    return s;
}

static lmf_status parse(lmf_gguf *g) {
    cursor c = {.g = g, .pos = 0};
    snprintf(c.what, sizeof c.what, "header");
    if (g->size < 24 || memcmp(g->map, "GGUF", 4)) {
        if (g->size >= 4 && memcmp(g->map, "GGUF", 4))
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset 0: expected the magic \"GGUF\" (47 47 55 46), found %02x %02x "
                            "%02x %02x (not a GGUF file)", g->path, g->map[0], g->map[1], g->map[2], g->map[3]);
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset 0: file is %zu bytes, too small for a GGUF header (24 bytes)",
                        g->path, g->size);
    }
    c.pos = 4;
    LMF_TRY(rd_u32(&c, &g->version, "version"));
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset 4: GGUF version 1 (32-bit counts) is not supported; expected "
                            "2 or 3 (hint: reconvert the model with a current llama.cpp)", g->path);
        if ((g->version & 0xffff) == 0)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset 4: version field reads %u: this looks like a big-endian GGUF "
                            "(only little-endian files are supported)", g->path, g->version);
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset 4: unsupported GGUF version %u (expected 2 or 3)", g->path,
                        g->version);
    }
    uint64_t nt = 0, nkv = 0;
    LMF_TRY(rd_u64(&c, &nt, "tensor_count"));
    LMF_TRY(rd_u64(&c, &nkv, "metadata_kv_count"));
    /* Each key/value takes at least 14 bytes (8 + 1-byte key + 4 + 1-byte value), each tensor info 33 (8 + 1 + 4 +
     * 8 + 4 + 8): a count that cannot fit is refused before anything is allocated for it. */
    if (nkv > left(&c) / 14)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset 16: metadata_kv_count %llu cannot fit in the %llu bytes after the "
                        "header (corrupt header?)", g->path, (ull)nkv, (ull)left(&c));
    if (nt > left(&c) / 33)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset 8: tensor_count %llu cannot fit in the %llu bytes after the "
                        "header (corrupt header?)", g->path, (ull)nt, (ull)left(&c));
    g->n_kv = (int64_t)nkv, g->n_tensors = (int64_t)nt;
    g->kv = lmf_xcalloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = lmf_xcalloc(nt ? nt : 1, sizeof *g->tensors);
    LMF_TRY(parse_kvs(&c));
    LMF_TRY(parse_alignment(g));
    LMF_TRY(parse_tensor_infos(&c));
    return place_tensors(g, c.pos);
}

int lmf_gguf_sniff(const char *path) {
    char magic[4];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(f);
    return ok;
}

lmf_status lmf_gguf_open(const char *path, lmf_gguf **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lmf_fail(LMF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lmf_fail(LMF_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 24) {
        close(fd);
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset 0: file is %lld bytes, too small for a GGUF header (24 bytes)",
                        path, (long long)sb.st_size);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return lmf_fail(LMF_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    lmf_gguf *g = lmf_xcalloc(1, sizeof *g);
    g->path = strdup(path), g->map = map, g->size = (size_t)sb.st_size;
    lmf_status s = parse(g);
    if (s != LMF_OK) {
        lmf_gguf_close(g);
        return s;
    }
    *out = g;
    return LMF_OK;
}

void lmf_gguf_close(lmf_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].key), free(g->kv[i].str), free(g->kv[i].str_off);
    for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    free(g->kv_slots);
    free(g->tensor_slots);
    if (g->map) munmap((void *)g->map, g->size);
    free(g->path);
    free(g);
}

/* ---- lookup and typed access ------------------------------------------------------------------------------------ */

const lmf_gguf_kv *lmf_gguf_find(const lmf_gguf *g, const char *key) {
    if (!g->kv_slots) return NULL;
    for (uint64_t h = hash_str(key) & g->kv_mask; g->kv_slots[h] >= 0; h = (h + 1) & g->kv_mask)
        if (!strcmp(g->kv[g->kv_slots[h]].key, key)) return &g->kv[g->kv_slots[h]];
    return NULL;
}

const lmf_gguf_tensor *lmf_gguf_find_tensor(const lmf_gguf *g, const char *name) {
    if (!g->tensor_slots) return NULL;
    for (uint64_t h = hash_str(name) & g->tensor_mask; g->tensor_slots[h] >= 0; h = (h + 1) & g->tensor_mask)
        if (!strcmp(g->tensors[g->tensor_slots[h]].name, name)) return &g->tensors[g->tensor_slots[h]];
    return NULL;
}

static lmf_status wrong_type(const lmf_gguf *g, const lmf_gguf_kv *kv, const char *want) {
    if (kv->type == LMF_GGUF_ARRAY)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: metadata '%s' is an array of %s, expected %s", g->path,
                        (ull)kv->offset, kv->key, gguf_type_names[kv->elem_type], want);
    return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: metadata '%s' is %s, expected %s", g->path, (ull)kv->offset,
                    kv->key, gguf_type_names[kv->type], want);
}

static lmf_status must_find(const lmf_gguf *g, const char *key, const lmf_gguf_kv **kv) {
    *kv = lmf_gguf_find(g, key);
    if (!*kv) return lmf_fail(LMF_ERR_FORMAT, "%s: metadata key '%s' is missing", g->path, key);
    return LMF_OK;
}

static int is_int_type(lmf_gguf_type t) {
    return t == LMF_GGUF_U8 || t == LMF_GGUF_I8 || t == LMF_GGUF_U16 || t == LMF_GGUF_I16 || t == LMF_GGUF_U32 ||
           t == LMF_GGUF_I32 || t == LMF_GGUF_U64 || t == LMF_GGUF_I64;
}

/* An integer of type t at p as sign + magnitude (so u64 and i64 both fit). */
static void int_at(lmf_gguf_type t, const uint8_t *p, int *neg, uint64_t *mag) {
    int64_t s = 0;
    uint64_t u = 0;
    switch (t) {
    case LMF_GGUF_U8: case LMF_GGUF_BOOL: u = p[0]; break;
    case LMF_GGUF_I8: { int8_t v; memcpy(&v, p, 1); s = v; break; }
    case LMF_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); u = v; break; }
    case LMF_GGUF_I16: { int16_t v; memcpy(&v, p, 2); s = v; break; }
    case LMF_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); u = v; break; }
    case LMF_GGUF_I32: { int32_t v; memcpy(&v, p, 4); s = v; break; }
    case LMF_GGUF_U64: memcpy(&u, p, 8); break;
    case LMF_GGUF_I64: memcpy(&s, p, 8); break;
    default: LMF_CHECK(0);
    }
    if (s < 0) *neg = 1, *mag = (uint64_t)0 - (uint64_t)s;
    else *neg = 0, *mag = u | (uint64_t)s; /* one of the two is 0 */
}

/* An integer kv within [-neg_limit, hi]. */
static lmf_status get_int(const lmf_gguf *g, const char *key, const char *want, uint64_t neg_limit, uint64_t hi,
                          int *neg, uint64_t *mag) {
    const lmf_gguf_kv *kv;
    *neg = 0, *mag = 0;
    LMF_TRY(must_find(g, key, &kv));
    *neg = 0, *mag = 0;
    if (!is_int_type(kv->type)) return wrong_type(g, kv, want);
    int_at(kv->type, kv->data, neg, mag);
    if (*neg ? *mag > neg_limit : *mag > hi)
        return lmf_fail(LMF_ERR_FORMAT, "%s: offset %llu: metadata '%s' = %s%llu does not fit in %s", g->path,
                        (ull)kv->offset, key, *neg ? "-" : "", (ull)*mag, want);
    return LMF_OK;
}

static int64_t signed_of(int neg, uint64_t mag) {
    return neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
}

/* A signed integer value of at most max (and at least -max - 1), as int64. */
static lmf_status get_signed(const lmf_gguf *g, const char *key, const char *want, uint64_t max, int64_t *out) {
    int neg = 0;
    uint64_t mag = 0;
    LMF_TRY(get_int(g, key, want, max + 1, max, &neg, &mag));
    *out = signed_of(neg, mag);
    return LMF_OK;
}

lmf_status lmf_gguf_get_u32(const lmf_gguf *g, const char *key, uint32_t *out) {
    int neg = 0;
    uint64_t mag = 0;
    LMF_TRY(get_int(g, key, "u32", 0, UINT32_MAX, &neg, &mag));
    *out = (uint32_t)mag;
    return LMF_OK;
}

lmf_status lmf_gguf_get_i32(const lmf_gguf *g, const char *key, int32_t *out) {
    int64_t v;
    LMF_TRY(get_signed(g, key, "i32", INT32_MAX, &v));
    return *out = (int32_t)v, LMF_OK;
}

lmf_status lmf_gguf_get_u64(const lmf_gguf *g, const char *key, uint64_t *out) {
    int neg = 0;
    return get_int(g, key, "u64", 0, UINT64_MAX, &neg, out);
}

lmf_status lmf_gguf_get_i64(const lmf_gguf *g, const char *key, int64_t *out) {
    return get_signed(g, key, "i64", INT64_MAX, out);
}

lmf_status lmf_gguf_get_f64(const lmf_gguf *g, const char *key, double *out) {
    const lmf_gguf_kv *kv;
    LMF_TRY(must_find(g, key, &kv));
    if (kv->type == LMF_GGUF_F32) {
        float f;
        memcpy(&f, kv->data, 4);
        *out = f;
    } else if (kv->type == LMF_GGUF_F64) {
        memcpy(out, kv->data, 8);
    } else {
        return wrong_type(g, kv, "f32 or f64");
    }
    return LMF_OK;
}

lmf_status lmf_gguf_get_f32(const lmf_gguf *g, const char *key, float *out) {
    double d;
    LMF_TRY(lmf_gguf_get_f64(g, key, &d));
    *out = (float)d;
    return LMF_OK;
}

lmf_status lmf_gguf_get_bool(const lmf_gguf *g, const char *key, int *out) {
    const lmf_gguf_kv *kv;
    LMF_TRY(must_find(g, key, &kv));
    if (kv->type != LMF_GGUF_BOOL) return wrong_type(g, kv, "bool");
    *out = kv->data[0];
    return LMF_OK;
}

lmf_status lmf_gguf_get_str(const lmf_gguf *g, const char *key, const char **out) {
    const lmf_gguf_kv *kv;
    LMF_TRY(must_find(g, key, &kv));
    if (kv->type != LMF_GGUF_STRING) return wrong_type(g, kv, "string");
    *out = kv->str;
    return LMF_OK;
}

lmf_status lmf_gguf_get_arr(const lmf_gguf *g, const char *key, lmf_gguf_type elem_type, const lmf_gguf_kv **out) {
    const lmf_gguf_kv *kv;
    LMF_TRY(must_find(g, key, &kv));
    char want[48];
    snprintf(want, sizeof want, "an array of %s", elem_type == LMF_GGUF_TYPE_COUNT ? "any type"
                                                  : elem_type == LMF_GGUF_I64 ? "integers"
                                                                              : gguf_type_names[elem_type]);
    if (kv->type != LMF_GGUF_ARRAY) return wrong_type(g, kv, want);
    int ok = elem_type == LMF_GGUF_TYPE_COUNT || kv->elem_type == elem_type ||
             (elem_type == LMF_GGUF_I64 && is_int_type(kv->elem_type));
    if (!ok) return wrong_type(g, kv, want);
    *out = kv;
    return LMF_OK;
}

const char *lmf_gguf_arr_str(const lmf_gguf *g, const lmf_gguf_kv *kv, uint64_t i, size_t *len) {
    LMF_CHECK(kv->type == LMF_GGUF_ARRAY && kv->elem_type == LMF_GGUF_STRING && i < kv->count);
    uint64_t n;
    memcpy(&n, g->map + kv->str_off[i], 8);
    *len = (size_t)n;
    return (const char *)g->map + kv->str_off[i] + 8;
}

int64_t lmf_gguf_arr_int(const lmf_gguf_kv *kv, uint64_t i) {
    LMF_CHECK(kv->type == LMF_GGUF_ARRAY && i < kv->count);
    LMF_CHECK(is_int_type(kv->elem_type) || kv->elem_type == LMF_GGUF_BOOL);
    int neg = 0;
    uint64_t mag = 0;
    int_at(kv->elem_type, kv->data + i * gguf_scalar_size[kv->elem_type], &neg, &mag);
    if (!neg && mag > INT64_MAX) return INT64_MAX; /* saturates */
    return signed_of(neg, mag);
}

double lmf_gguf_arr_float(const lmf_gguf_kv *kv, uint64_t i) {
    LMF_CHECK(kv->type == LMF_GGUF_ARRAY && i < kv->count);
    const uint8_t *p = kv->data + i * gguf_scalar_size[kv->elem_type];
    if (kv->elem_type == LMF_GGUF_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    if (kv->elem_type == LMF_GGUF_F64) {
        double d;
        memcpy(&d, p, 8);
        return d;
    }
    return (double)lmf_gguf_arr_int(kv, i);
}
