/* gguf_write.c — the GGUF writer of gguf.h: metadata is serialized as it is set, tensor infos and padding when the
 * file is produced; tensor data is referenced and streamed out, never copied. */
#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "io/gguf.h"
#include "io/lazy_fill.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "lmforge: out of memory (%zu bytes)\n", cap);
            abort();
        }
        b->p = p, b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s, uint64_t n) {
    put_u64(b, n);
    put(b, s, n);
}

typedef struct {
    char *name;
    lmf_ggml_type type;
    int n_dims;
    int64_t ne[4];
    const void *data;
    uint64_t nbytes;
    lmf_gguf_fill_fn fill; /* data NULL: made at write time */
    void *ctx;
} wtensor;

struct lmf_gguf_writer {
    uint32_t alignment;
    buf kv;
    uint64_t n_kv;
    char **keys;
    wtensor *t;
    uint64_t n_t, cap_t;
};

static const uint8_t scalar_size[LMF_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

lmf_gguf_writer *lmf_gguf_writer_create(uint32_t alignment) {
    LMF_CHECK(alignment == 0 || (alignment & (alignment - 1)) == 0);
    lmf_gguf_writer *w = lmf_xcalloc(1, sizeof *w);
    w->alignment = alignment ? alignment : 32;
    if (alignment) lmf_gguf_writer_set_u32(w, "general.alignment", alignment);
    return w;
}

void lmf_gguf_writer_free(lmf_gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv.p);
    free(w);
}

/* Writes key + value type; keys are few, so a linear duplicate check is fine. */
static void put_key(lmf_gguf_writer *w, const char *key, lmf_gguf_type type) {
    LMF_CHECK(key && key[0]);
    for (uint64_t i = 0; i < w->n_kv; i++) LMF_CHECK(strcmp(w->keys[i], key) != 0);
    char **keys = realloc(w->keys, (w->n_kv + 1) * sizeof *keys);
    LMF_CHECK(keys != NULL);
    w->keys = keys;
    w->keys[w->n_kv++] = strdup(key);
    put_str(&w->kv, key, strlen(key));
    put_u32(&w->kv, (uint32_t)type);
}

void lmf_gguf_writer_set_raw(lmf_gguf_writer *w, const char *key, lmf_gguf_type type, const void *value) {
    LMF_CHECK(type < LMF_GGUF_TYPE_COUNT && scalar_size[type] > 0);
    put_key(w, key, type);
    put(&w->kv, value, scalar_size[type]);
}

void lmf_gguf_writer_set_str(lmf_gguf_writer *w, const char *key, const char *value) {
    put_key(w, key, LMF_GGUF_STRING);
    put_str(&w->kv, value, strlen(value));
}

void lmf_gguf_writer_set_u32(lmf_gguf_writer *w, const char *key, uint32_t v) { lmf_gguf_writer_set_raw(w, key, LMF_GGUF_U32, &v); }
void lmf_gguf_writer_set_i32(lmf_gguf_writer *w, const char *key, int32_t v) { lmf_gguf_writer_set_raw(w, key, LMF_GGUF_I32, &v); }
void lmf_gguf_writer_set_u64(lmf_gguf_writer *w, const char *key, uint64_t v) { lmf_gguf_writer_set_raw(w, key, LMF_GGUF_U64, &v); }
void lmf_gguf_writer_set_f32(lmf_gguf_writer *w, const char *key, float v) { lmf_gguf_writer_set_raw(w, key, LMF_GGUF_F32, &v); }

void lmf_gguf_writer_set_bool(lmf_gguf_writer *w, const char *key, int value) {
    uint8_t v = value != 0;
    lmf_gguf_writer_set_raw(w, key, LMF_GGUF_BOOL, &v);
}

void lmf_gguf_writer_set_arr_str(lmf_gguf_writer *w, const char *key, const char *const *values, uint64_t n) {
    put_key(w, key, LMF_GGUF_ARRAY);
    put_u32(&w->kv, LMF_GGUF_STRING);
    put_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) put_str(&w->kv, values[i], strlen(values[i]));
}

void lmf_gguf_writer_set_arr(lmf_gguf_writer *w, const char *key, lmf_gguf_type elem_type, const void *values,
                             uint64_t n) {
    LMF_CHECK(elem_type < LMF_GGUF_TYPE_COUNT && scalar_size[elem_type] > 0);
    put_key(w, key, LMF_GGUF_ARRAY);
    put_u32(&w->kv, (uint32_t)elem_type);
    put_u64(&w->kv, n);
    put(&w->kv, values, n * scalar_size[elem_type]);
}

static wtensor *add(lmf_gguf_writer *w, const char *name, lmf_ggml_type type, int n_dims, const int64_t *ne,
                    const void *data) {
    uint32_t blck, bytes;
    LMF_CHECK(name && name[0] && strlen(name) <= 64);
    LMF_CHECK(lmf_ggml_type_block((uint32_t)type, &blck, &bytes));
    LMF_CHECK(n_dims >= 1 && n_dims <= 4 && ne[0] >= 0 && ne[0] % blck == 0);
    for (uint64_t i = 0; i < w->n_t; i++) LMF_CHECK(strcmp(w->t[i].name, name) != 0);
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? 2 * w->cap_t : 16;
        wtensor *t = realloc(w->t, w->cap_t * sizeof *t);
        LMF_CHECK(t != NULL);
        w->t = t;
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name), t->type = type, t->n_dims = n_dims, t->data = data;
    t->nbytes = (uint64_t)ne[0] / blck * bytes;
    for (int d = 0; d < 4; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        LMF_CHECK(t->ne[d] >= 0);
        if (d) t->nbytes *= (uint64_t)t->ne[d];
    }
    return t;
}

void lmf_gguf_writer_add_tensor(lmf_gguf_writer *w, const char *name, lmf_ggml_type type, int n_dims,
                                const int64_t *ne, const void *data) {
    add(w, name, type, n_dims, ne, data);
}

void lmf_gguf_writer_add_lazy(lmf_gguf_writer *w, const char *name, lmf_ggml_type type, int n_dims,
                              const int64_t *ne, lmf_gguf_fill_fn fill, void *ctx) {
    wtensor *t = add(w, name, type, n_dims, ne, NULL);
    t->fill = fill, t->ctx = ctx;
}

/* Hands tensor t's bytes to out(octx, bytes, n): its data at once, or a lazy tensor's rows a piece at a time */
static int each_piece(const wtensor *t, int (*out)(void *octx, const void *p, size_t n), void *octx) {
    if (!t->fill) return out(octx, t->data, (size_t)t->nbytes);
    uint64_t rows = (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
    return lmf_fill_pieces(t->fill, t->ctx, rows, rows ? (size_t)(t->nbytes / rows) : 0, out, octx);
}

static int put_piece(void *b, const void *p, size_t n) {
    put(b, p, n);
    return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Header + metadata + tensor infos + padding up to the data section. */
static void head(const lmf_gguf_writer *w, buf *b) {
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, w->n_t);
    put_u64(b, w->n_kv);
    put(b, w->kv.p, w->kv.len);
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(b, t->name, strlen(t->name));
        put_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(b, (uint64_t)t->ne[d]);
        put_u32(b, (uint32_t)t->type);
        put_u64(b, off);
        off = align_up(off + t->nbytes, w->alignment);
    }
    static const uint8_t zeros[64];
    while (b->len % w->alignment) {
        size_t n = w->alignment - b->len % w->alignment;
        put(b, zeros, n < sizeof zeros ? n : sizeof zeros);
    }
}

void lmf_gguf_writer_bytes(const lmf_gguf_writer *w, uint8_t **out, size_t *len) {
    buf b = {0};
    head(w, &b);
    static const uint8_t zeros[64];
    for (uint64_t i = 0; i < w->n_t; i++) {
        each_piece(&w->t[i], put_piece, &b);
        while (b.len % w->alignment) {
            size_t n = w->alignment - b.len % w->alignment;
            put(&b, zeros, n < sizeof zeros ? n : sizeof zeros);
        }
    }
    *out = b.p, *len = b.len;
}

lmf_status lmf_gguf_writer_write(const lmf_gguf_writer *w, const char *path) {
    buf b = {0};
    head(w, &b);
    lmf_atomic_file f;
    lmf_status s = lmf_atomic_open(&f, path);
    if (s != LMF_OK) {
        free(b.p);
        return s;
    }
    /* each tensor's data and its padding (the last one's too: ggml reads the data section as the sum of padded
     * sizes when it loads the tensors into memory, as llama-quantize does with an imatrix file) */
    static const uint8_t zeros[64];
    int ok = fwrite(b.p, 1, b.len, f.f) == b.len;
    uint64_t off = 0;
    for (uint64_t i = 0; ok && i < w->n_t; i++) {
        ok = !each_piece(&w->t[i], lmf_fill_fwrite, f.f);
        for (off += w->t[i].nbytes; ok && off % w->alignment;) {
            size_t n = w->alignment - off % w->alignment;
            n = n < sizeof zeros ? n : sizeof zeros;
            ok = fwrite(zeros, 1, n, f.f) == n;
            off += n;
        }
    }
    free(b.p);
    if (!ok) {
        s = lmf_fail(LMF_ERR_IO, "%s: write failed: %s", f.tmp, strerror(errno));
        lmf_atomic_abort(&f);
        return s;
    }
    return lmf_atomic_commit(&f);
}
