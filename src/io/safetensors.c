/* safetensors.c — see safetensors.h. Treats the file as hostile: every error names the file and the field. */
#include "io/safetensors.h"
#include "io/lazy_fill.h"
#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

size_t lmf_dtype_size(lmf_dtype dt) {
    switch (dt) {
    case LMF_DT_F32: case LMF_DT_I32: return 4;
    case LMF_DT_F16: case LMF_DT_BF16: return 2;
    case LMF_DT_I64: return 8;
    case LMF_DT_U8: return 1;
    default: return 0;
    }
}

static lmf_dtype parse_dtype(const char *s) {
    if (!strcmp(s, "F32")) return LMF_DT_F32;
    if (!strcmp(s, "F16")) return LMF_DT_F16;
    if (!strcmp(s, "BF16")) return LMF_DT_BF16;
    if (!strcmp(s, "I32")) return LMF_DT_I32;
    if (!strcmp(s, "I64")) return LMF_DT_I64;
    if (!strcmp(s, "U8")) return LMF_DT_U8;
    return LMF_DT_OTHER;
}

static lmf_status parse_tensor(lmf_safetensors *st, const cJSON *item, const uint8_t *data, size_t data_size,
                               lmf_st_tensor *t) {
    const char *path = st->path, *name = item->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor '%s': needs string dtype, array shape, data_offsets [begin,end]",
                        path, name);
    t->name = strdup(name);
    t->dtype = parse_dtype(dt->valuestring);
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > 8) return lmf_fail(LMF_ERR_FORMAT, "%s: tensor '%s': %d dims (max 8)", path, name, t->ndim);
    uint64_t count = 1;
    for (int i = 0; i < t->ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e15 || d->valuedouble != (int64_t)d->valuedouble)
            return lmf_fail(LMF_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a valid dimension", path, name, i);
        t->shape[i] = (int64_t)d->valuedouble;
        if (t->shape[i] && count > UINT64_MAX / (uint64_t)t->shape[i])
            return lmf_fail(LMF_ERR_FORMAT, "%s: tensor '%s': shape overflows", path, name);
        count *= (uint64_t)t->shape[i];
    }
    double b = cJSON_GetArrayItem(offs, 0)->valuedouble, e = cJSON_GetArrayItem(offs, 1)->valuedouble;
    if (!(b >= 0 && e >= b && e <= (double)data_size))
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor '%s': data_offsets [%.0f, %.0f] outside the %zu-byte data block",
                        path, name, b, e, data_size);
    t->nbytes = (size_t)e - (size_t)b;
    t->data = data + (size_t)b;
    size_t es = lmf_dtype_size(t->dtype);
    /* count x element size can wrap ([2^40, 2^23] F16 is 2^64 bytes, "0"): compare without multiplying first */
    if (es && count > (uint64_t)SIZE_MAX / es)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor '%s': shape of %llu elements x %zu bytes overflows (data_offsets "
                        "span %zu bytes)", path, name, (unsigned long long)count, es, t->nbytes);
    if (es && count * es != t->nbytes)
        return lmf_fail(LMF_ERR_FORMAT, "%s: tensor '%s': shape needs %llu bytes but data_offsets span %zu", path,
                        name, (unsigned long long)(count * es), t->nbytes);
    return LMF_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const lmf_st_tensor *const *)a)->name, (*(const lmf_st_tensor *const *)b)->name);
}

/* A JSON object may repeat a key and the parser keeps both; which tensor a name meant would then depend on who
 * reads the file (lmf_safetensors_find takes the first, a map the last), so a repeated name is refused. Sorted
 * rather than compared pairwise: a hostile header can hold millions of entries. */
static lmf_status unique_names(const lmf_safetensors *st, const char *path) {
    if (st->n_tensors < 2) return LMF_OK;
    const lmf_st_tensor **v = lmf_xmalloc((size_t)st->n_tensors * sizeof *v);
    for (int i = 0; i < st->n_tensors; i++) v[i] = &st->tensors[i];
    qsort(v, (size_t)st->n_tensors, sizeof *v, by_name);
    lmf_status s = LMF_OK;
    for (int i = 1; i < st->n_tensors && s == LMF_OK; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name))
            s = lmf_fail(LMF_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", path, v[i]->name);
    free(v);
    return s;
}

lmf_status lmf_safetensors_open(const char *path, lmf_safetensors **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lmf_fail(LMF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 8) {
        close(fd);
        return lmf_fail(LMF_ERR_FORMAT, "%s: too small to be safetensors (%lld bytes)", path, (long long)sb.st_size);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return lmf_fail(LMF_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    lmf_safetensors *st = lmf_xcalloc(1, sizeof *st);
    st->path = strdup(path), st->map = map, st->map_size = (size_t)sb.st_size;

    uint64_t hlen;
    memcpy(&hlen, map, 8);
    if (hlen > st->map_size - 8) {
        lmf_safetensors_close(st);
        return lmf_fail(LMF_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                        (unsigned long long)hlen, (size_t)sb.st_size);
    }
    cJSON *root = cJSON_ParseWithLength((const char *)map + 8, (size_t)hlen);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        lmf_safetensors_close(st);
        return lmf_fail(LMF_ERR_FORMAT, "%s: header (bytes 8..%llu) is not a JSON object", path,
                        (unsigned long long)(8 + hlen));
    }
    const uint8_t *data = (const uint8_t *)map + 8 + hlen;
    size_t data_size = st->map_size - 8 - hlen;
    int n = cJSON_GetArraySize(root);
    st->tensors = lmf_xcalloc((size_t)n, sizeof *st->tensors);
    lmf_status s = LMF_OK;
    for (const cJSON *item = root->child; item && s == LMF_OK; item = item->next) {
        if (!strcmp(item->string, "__metadata__")) {
            if (st->meta_keys) { /* a second one would replace the first's table while its count runs on */
                s = lmf_fail(LMF_ERR_FORMAT, "%s: __metadata__ appears twice in the header", path);
                break;
            }
            if (!cJSON_IsObject(item)) {
                s = lmf_fail(LMF_ERR_FORMAT, "%s: __metadata__ is not an object", path);
                break;
            }
            int nm = cJSON_GetArraySize(item);
            st->meta_keys = lmf_xcalloc((size_t)nm, sizeof(char *));
            st->meta_values = lmf_xcalloc((size_t)nm, sizeof(char *));
            for (const cJSON *kv = item->child; kv; kv = kv->next) {
                if (!cJSON_IsString(kv)) {
                    s = lmf_fail(LMF_ERR_FORMAT, "%s: __metadata__.%s is not a string", path, kv->string);
                    break;
                }
                st->meta_keys[st->n_meta] = strdup(kv->string);
                st->meta_values[st->n_meta++] = strdup(kv->valuestring);
            }
            continue;
        }
        if (!cJSON_IsObject(item)) {
            s = lmf_fail(LMF_ERR_FORMAT, "%s: entry '%s' is not an object", path, item->string);
            break;
        }
        s = parse_tensor(st, item, data, data_size, &st->tensors[st->n_tensors++]);
    }
    cJSON_Delete(root);
    if (s == LMF_OK) s = unique_names(st, path);
    if (s != LMF_OK) lmf_safetensors_close(st);
    else *out = st;
    return s;
}

void lmf_safetensors_close(lmf_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) free(st->meta_keys[i]), free(st->meta_values[i]);
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    if (st->map) munmap(st->map, st->map_size);
    free(st->path);
    free(st);
}

const lmf_st_tensor *lmf_safetensors_find(const lmf_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (st->tensors[i].name && !strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

const char *lmf_safetensors_meta(const lmf_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
    return NULL;
}

const char *lmf_dtype_name(lmf_dtype dt) {
    static const char *const names[] = {"F32", "F16", "BF16", "I32", "I64", "U8"};
    return dt >= LMF_DT_F32 && dt <= LMF_DT_U8 ? names[dt] : "?";
}

lmf_status lmf_safetensors_write(const char *path, const lmf_st_out *t, int n, const char *const *meta, int n_meta) {
    cJSON *root = cJSON_CreateObject();
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < n_meta; i++) cJSON_AddStringToObject(m, meta[2 * i], meta[2 * i + 1]);
    }
    size_t off = 0;
    size_t *sizes = lmf_xcalloc((size_t)n + 2, sizeof *sizes);
    for (int i = 0; i < n; i++) {
        LMF_CHECK(lmf_dtype_size(t[i].dtype) && t[i].ndim >= 0 && t[i].ndim <= 8);
        LMF_CHECK(!cJSON_GetObjectItemCaseSensitive(root, t[i].name));
        size_t bytes = lmf_dtype_size(t[i].dtype);
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name), *shape = cJSON_AddArrayToObject(e, "shape");
        cJSON_AddStringToObject(e, "dtype", lmf_dtype_name(t[i].dtype));
        for (int d = 0; d < t[i].ndim; d++) {
            bytes *= (size_t)t[i].shape[d];
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        }
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
        sizes[i + 2] = bytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    LMF_CHECK(json);
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    char *header = lmf_xmalloc(padded);
    memcpy(header, json, jl);
    memset(header + jl, ' ', padded - jl);
    free(json);
    uint64_t hlen = padded; /* little-endian hosts only, like the reader */
    lmf_atomic_file f;
    lmf_status s = lmf_atomic_open(&f, path);
    int ok = s == LMF_OK && fwrite(&hlen, 8, 1, f.f) == 1 && fwrite(header, 1, padded, f.f) == padded;
    for (int i = 0; ok && i < n; i++) {
        if (t[i].data) {
            ok = fwrite(t[i].data, 1, sizes[i + 2], f.f) == sizes[i + 2];
            continue;
        }
        uint64_t rows = t[i].ndim ? (uint64_t)t[i].shape[0] : 1; /* made now, a few rows at a time */
        ok = !lmf_fill_pieces(t[i].fill, t[i].ctx, rows, rows ? sizes[i + 2] / rows : 0, lmf_fill_fwrite, f.f);
    }
    if (s == LMF_OK && !ok) {
        s = lmf_fail(LMF_ERR_IO, "%s: write failed: %s", f.tmp, strerror(errno));
        lmf_atomic_abort(&f);
    } else if (s == LMF_OK) {
        s = lmf_atomic_commit(&f);
    }
    free(header);
    free(sizes);
    return s;
}
