/* checkpoint.c — see checkpoint.h. */
#include "io/checkpoint.h"
#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define HEADER 80
static const char MAGIC[8] = {'L', 'M', 'F', 'C', 'K', 'P', 'T', '1'};

/* 3: the checksum covers the header too; 2: it covered the bytes after the header only (still read: its header
 * fields are range-checked like version 3's, but a flipped bit in them goes unnoticed); 1: an in-house hash. */
#define VERSION 3
#define SUM_AT 64
#define MAX_SHARDS 65536

/* The checksum guards against torn or corrupted files, not adversaries: XXH3 hashes at memory speed. The parts are
 * hashed as one stream, in file order; in version 3 the header's checksum field counts as zero. */
static uint64_t payload_hash(const void *const *parts, const size_t *sizes, int n) {
    XXH3_state_t *st = XXH3_createState();
    LMF_CHECK(st != NULL);
    XXH3_64bits_reset(st);
    for (int i = 0; i < n; i++) XXH3_64bits_update(st, parts[i], sizes[i]);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static int pread_all(int fd, void *buf, size_t n, off_t at) {
    char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, at);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        p += r, n -= (size_t)r, at += r;
    }
    return 1;
}

/* One checkpoint file: header (version, the u32 at offset 12, six fields, checksum), the config text padded with
 * newlines (ignored by the parser) so the float arrays stay 8-byte aligned, then the payload parts. */
static lmf_status save_file(const char *path, uint32_t version, uint32_t at12, const char *config_text,
                            const uint64_t fields_in[5], const void *const *payload, const size_t *payload_sizes,
                            int n_payload) {
    uint8_t h[HEADER] = {0};
    size_t tlen = strlen(config_text);
    uint64_t clen = (tlen + 7) & ~(uint64_t)7;
    char *text = lmf_xmalloc(clen + 1);
    memcpy(text, config_text, tlen);
    memset(text + tlen, '\n', clen - tlen);
    uint64_t fields[6] = {clen, fields_in[0], fields_in[1], fields_in[2], fields_in[3], fields_in[4]};
    memcpy(h, MAGIC, 8), memcpy(h + 8, &version, 4), memcpy(h + 12, &at12, 4), memcpy(h + 16, fields, sizeof fields);
    const void *parts[8] = {h, text};
    size_t sizes[8] = {HEADER, clen};
    for (int i = 0; i < n_payload; i++) parts[2 + i] = payload[i], sizes[2 + i] = payload_sizes[i];
    uint64_t sum = payload_hash(parts, sizes, 2 + n_payload); /* the checksum field is still zero here */
    memcpy(h + SUM_AT, &sum, 8);
    lmf_status s = lmf_write_file_atomic(path, parts, sizes, 2 + n_payload);
    free(text);
    return s;
}

lmf_status lmf_checkpoint_save(const char *path, const char *config_text, uint64_t step, uint64_t epoch,
                               uint64_t index, uint64_t adam_t, const float *params, const float *m, const float *v,
                               uint64_t num_params) {
    uint64_t fields[5] = {num_params, step, epoch, index, adam_t};
    size_t fb = num_params * sizeof(float);
    return save_file(path, VERSION, 0, config_text, fields, (const void *const[]){params, m, v},
                     (const size_t[]){fb, fb, fb}, 3);
}

char *lmf_checkpoint_shard_path(const char *manifest, int r, int n) {
    size_t len = strlen(manifest), cut = len > 5 && !strcmp(manifest + len - 5, ".lmfc") ? len - 5 : len;
    char *p = lmf_xmalloc(cut + 48);
    snprintf(p, cut + 48, "%.*s.opt-%d-of-%d", (int)cut, manifest, r, n);
    return p;
}

#define SHARD_HEADER 64
static const char SHARD_MAGIC[8] = {'L', 'M', 'F', 'O', 'P', 'T', 'S', '1'};

lmf_status lmf_checkpoint_save_shard(const char *manifest, int r, int n, uint64_t step, uint64_t lo, uint64_t hi,
                                     const float *m, const float *v, uint64_t *sum) {
    uint8_t h[SHARD_HEADER] = {0};
    uint32_t version = 1, rank = (uint32_t)r;
    uint64_t f[4] = {(uint64_t)n, step, lo, hi};
    memcpy(h, SHARD_MAGIC, 8), memcpy(h + 8, &version, 4), memcpy(h + 12, &rank, 4), memcpy(h + 16, f, sizeof f);
    size_t fb = (hi - lo) * sizeof(float);
    const void *parts[] = {h, m, v};
    size_t sizes[] = {SHARD_HEADER, fb, fb};
    *sum = payload_hash(parts, sizes, 3);
    char *path = lmf_checkpoint_shard_path(manifest, r, n);
    lmf_status s = lmf_write_file_atomic(path, parts, sizes, 3);
    free(path);
    return s;
}

lmf_status lmf_checkpoint_save_manifest(const char *path, const char *config_text, uint64_t step, uint64_t epoch,
                                        uint64_t index, uint64_t adam_t, const float *params, uint64_t num_params,
                                        int n, const uint64_t *lo, const uint64_t *hi, const uint64_t *sum) {
    uint64_t fields[5] = {num_params, step, epoch, index, adam_t};
    uint64_t *table = lmf_xmalloc((size_t)n * 3 * sizeof(uint64_t));
    for (int i = 0; i < n; i++) table[3 * i] = lo[i], table[3 * i + 1] = hi[i], table[3 * i + 2] = sum[i];
    lmf_status s = save_file(path, 4, (uint32_t)n, config_text, fields, (const void *const[]){params, table},
                             (const size_t[]){num_params * sizeof(float), (size_t)n * 3 * sizeof(uint64_t)}, 2);
    free(table);
    return s;
}

/* The streaming manifest: the same bytes as lmf_checkpoint_save_manifest, the parameters appended piece by piece
 * and hashed as they pass, the checksum written into the header last. */
struct lmf_manifest_writer {
    lmf_atomic_file af;
    XXH3_state_t *st;
    uint64_t left; /* parameters still to come */
    int n;         /* shards */
    lmf_status err;
};

static void mw_put(lmf_manifest_writer *w, const void *p, size_t n) {
    XXH3_64bits_update(w->st, p, n);
    if (w->err == LMF_OK && fwrite(p, 1, n, w->af.f) != n)
        w->err = lmf_fail(LMF_ERR_IO, "%s: write failed: %s", w->af.tmp, strerror(errno));
}

lmf_status lmf_checkpoint_manifest_begin(lmf_manifest_writer **out, const char *path, const char *config_text,
                                         uint64_t step, uint64_t epoch, uint64_t index, uint64_t adam_t,
                                         uint64_t num_params, int n) {
    *out = NULL;
    lmf_manifest_writer *w = lmf_xcalloc(1, sizeof *w);
    lmf_status s = lmf_atomic_open(&w->af, path);
    if (s != LMF_OK) {
        free(w);
        return s;
    }
    w->st = XXH3_createState();
    LMF_CHECK(w->st != NULL);
    XXH3_64bits_reset(w->st);
    w->left = num_params, w->n = n;
    uint8_t h[HEADER] = {0};
    size_t tlen = strlen(config_text);
    uint64_t clen = (tlen + 7) & ~(uint64_t)7;
    uint32_t version = 4, at12 = (uint32_t)n;
    uint64_t fields[6] = {clen, num_params, step, epoch, index, adam_t};
    memcpy(h, MAGIC, 8), memcpy(h + 8, &version, 4), memcpy(h + 12, &at12, 4), memcpy(h + 16, fields, sizeof fields);
    mw_put(w, h, HEADER); /* the checksum field zero, as hashed */
    mw_put(w, config_text, tlen);
    for (uint64_t k = tlen; k < clen; k++) mw_put(w, "\n", 1);
    *out = w;
    return LMF_OK;
}

lmf_status lmf_checkpoint_manifest_params(lmf_manifest_writer *w, const float *p, size_t n) {
    LMF_CHECK(n <= w->left);
    mw_put(w, p, n * sizeof(float));
    w->left -= n;
    return w->err;
}

lmf_status lmf_checkpoint_manifest_end(lmf_manifest_writer *w, const uint64_t *lo, const uint64_t *hi,
                                       const uint64_t *sum) {
    LMF_CHECK(w->left == 0);
    for (int i = 0; i < w->n; i++) {
        uint64_t e[3] = {lo[i], hi[i], sum[i]};
        mw_put(w, e, sizeof e);
    }
    uint64_t h = XXH3_64bits_digest(w->st);
    if (w->err == LMF_OK && (fseek(w->af.f, SUM_AT, SEEK_SET) != 0 || fwrite(&h, 8, 1, w->af.f) != 1))
        w->err = lmf_fail(LMF_ERR_IO, "%s: write failed: %s", w->af.tmp, strerror(errno));
    lmf_status s = w->err;
    if (s == LMF_OK) s = lmf_atomic_commit(&w->af);
    else lmf_atomic_abort(&w->af);
    XXH3_freeState(w->st);
    free(w);
    return s;
}

void lmf_checkpoint_manifest_abort(lmf_manifest_writer *w) {
    if (!w) return;
    lmf_atomic_abort(&w->af);
    XXH3_freeState(w->st);
    free(w);
}

/* Checks one shard of a loaded manifest: its header says what the manifest says, its size fits the range, and the
 * whole file hashes to the manifest's checksum (read in 1 MiB pieces). */
static lmf_status verify_shard(const lmf_checkpoint *ck, int r) {
    char *path = lmf_checkpoint_shard_path(ck->path, r, (int)ck->n_shards);
    uint64_t lo = ck->shard_lo[r], hi = ck->shard_hi[r], want = SHARD_HEADER + 8 * (hi - lo);
    lmf_status s = LMF_OK;
    int fd = open(path, O_RDONLY);
    struct stat sb;
    uint8_t *buf = NULL;
    if (fd < 0) {
        s = lmf_fail(LMF_ERR_FORMAT, "%s: optimizer shard %d of %d of %s is missing: %s", path, r, ck->n_shards,
                     ck->path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != want) {
        s = lmf_fail(LMF_ERR_FORMAT, "%s: %lld bytes, the manifest %s implies %llu (parameters %llu..%llu)", path,
                     (long long)sb.st_size, ck->path, (unsigned long long)want, (unsigned long long)lo,
                     (unsigned long long)hi);
        goto done;
    }
    size_t cap = 1 << 20;
    buf = lmf_xmalloc(cap);
    XXH3_state_t *st = XXH3_createState();
    LMF_CHECK(st != NULL);
    XXH3_64bits_reset(st);
    uint64_t got = 0;
    uint8_t head[SHARD_HEADER];
    while (got < want) {
        ssize_t n = read(fd, buf, want - got < cap ? want - got : cap);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (got < SHARD_HEADER)
            memcpy(head + got, buf, (size_t)n < SHARD_HEADER - got ? (size_t)n : SHARD_HEADER - got);
        XXH3_64bits_update(st, buf, (size_t)n);
        got += (uint64_t)n;
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (got != want) {
        s = lmf_fail(LMF_ERR_IO, "%s: short read (%llu of %llu bytes)", path, (unsigned long long)got,
                     (unsigned long long)want);
        goto done;
    }
    uint32_t rank;
    uint64_t f[4];
    memcpy(&rank, head + 12, 4), memcpy(f, head + 16, sizeof f);
    if (memcmp(head, SHARD_MAGIC, 8) || rank != (uint32_t)r || f[0] != ck->n_shards || f[1] != ck->step ||
        f[2] != lo || f[3] != hi)
        s = lmf_fail(LMF_ERR_FORMAT, "%s: shard header (rank, shards, step, range) does not match the manifest %s",
                     path, ck->path);
    else if (h != ck->shard_sum[r])
        s = lmf_fail(LMF_ERR_FORMAT, "%s: checksum mismatch with the manifest %s: the optimizer shard is corrupt or "
                     "from another save", path, ck->path);
done:
    if (fd >= 0) close(fd);
    free(buf);
    free(path);
    return s;
}

lmf_status lmf_checkpoint_read_moments(const lmf_checkpoint *ck, uint64_t lo, uint64_t n, float *m, float *v) {
    if (lo + n > ck->num_params)
        return lmf_fail(LMF_ERR_ARG, "%s: moments %llu..%llu asked, the checkpoint has %llu parameters", ck->path,
                        (unsigned long long)lo, (unsigned long long)(lo + n), (unsigned long long)ck->num_params);
    if (ck->m) {
        memcpy(m, ck->m + lo, n * sizeof(float));
        memcpy(v, ck->v + lo, n * sizeof(float));
        return LMF_OK;
    }
    for (uint32_t r = 0; r < ck->n_shards; r++) {
        uint64_t a = ck->shard_lo[r] > lo ? ck->shard_lo[r] : lo;
        uint64_t b = ck->shard_hi[r] < lo + n ? ck->shard_hi[r] : lo + n;
        if (a >= b) continue;
        char *path = lmf_checkpoint_shard_path(ck->path, (int)r, (int)ck->n_shards);
        int fd = open(path, O_RDONLY);
        uint64_t len = ck->shard_hi[r] - ck->shard_lo[r], cnt = (b - a) * sizeof(float);
        /* m of [a, b) sits at (a - shard lo) floats into the shard's m, v a whole m further */
        off_t at_m = (off_t)(SHARD_HEADER + (a - ck->shard_lo[r]) * sizeof(float)), at_v = at_m + (off_t)(len * 4);
        int ok = fd >= 0 && pread_all(fd, m + (a - lo), cnt, at_m) && pread_all(fd, v + (a - lo), cnt, at_v);
        if (fd >= 0) close(fd);
        if (!ok) {
            lmf_status s = lmf_fail(LMF_ERR_IO, "%s: cannot read the optimizer moments %llu..%llu: %s", path,
                                    (unsigned long long)a, (unsigned long long)b, strerror(errno));
            free(path);
            return s;
        }
        free(path);
    }
    return LMF_OK;
}

/* The first header field out of range, named as the header spells it; NULL when all are in range. */
static const char *bad_field(const uint64_t f[6], uint64_t *value, uint64_t *max) {
    static const char *const names[6] = {"config_len", "num_params", "step", "epoch", "data index", "adam_t"};
    /* steps and AdamW's t are ints in the trainers, the data index a window number below 2^32 (train/loader.h);
     * anything larger is not a run lmforge could have written */
    static const uint64_t maxima[6] = {0, 0, INT32_MAX, INT32_MAX, UINT32_MAX, INT32_MAX};
    for (int i = 2; i < 6; i++)
        if (f[i] > maxima[i]) {
            *value = f[i], *max = maxima[i];
            return names[i];
        }
    return NULL;
}

lmf_status lmf_checkpoint_load(const char *path, lmf_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lmf_fail(LMF_ERR_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lmf_fail(LMF_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < HEADER) {
        close(fd);
        return lmf_fail(LMF_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte checkpoint header", path, size, HEADER);
    }
    uint8_t *buf = lmf_alloc_big(size);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    lmf_status s = LMF_OK;
    uint32_t version, reserved;
    uint64_t f[6], sum, reserved2, value = 0, max = 0;
    memcpy(&version, buf + 8, 4), memcpy(&reserved, buf + 12, 4), memcpy(f, buf + 16, sizeof f);
    memcpy(&sum, buf + SUM_AT, 8), memcpy(&reserved2, buf + 72, 8);
    uint64_t clen = f[0], P = f[1];
    const char *field = NULL;
    if (got != size) s = lmf_fail(LMF_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, size);
    else if (memcmp(buf, MAGIC, 8))
        s = lmf_fail(LMF_ERR_FORMAT, "%s: bad magic: not an lmforge checkpoint", path);
    else if (version != VERSION && version != 2 && version != 4)
        s = lmf_fail(LMF_ERR_FORMAT,
                     "%s: checkpoint version %u, this build reads versions 2, %d and 4 (version 1 used an older "
                     "checksum: resume it with the lmforge that wrote it, or start the run again)", path, version,
                     VERSION);
    else if (version == 4 && (reserved < 2 || reserved > MAX_SHARDS))
        s = lmf_fail(LMF_ERR_FORMAT, "%s: header field shards (offset 12) = %u, a set has 2..%d", path, reserved,
                     MAX_SHARDS);
    else if (clen > size || clen % 8 || P > size / 4 ||
             HEADER + clen + (version == 4 ? P * sizeof(float) + 24 * (uint64_t)reserved : 3 * P * sizeof(float)) !=
                 size)
        s = lmf_fail(LMF_ERR_FORMAT,
                     "%s: header says %llu config bytes and %llu parameters, which does not match the file size %zu "
                     "(truncated or corrupt)", path, (unsigned long long)clen, (unsigned long long)P, size);
    else {
        /* version 3 hashes the header with its checksum field as zero; version 2 only what follows the header */
        memset(buf + SUM_AT, 0, 8);
        uint64_t h = version == 2 ? payload_hash((const void *const[]){buf + HEADER}, (const size_t[]){size - HEADER}, 1)
                                  : payload_hash((const void *const[]){buf}, (const size_t[]){size}, 1);
        if (h != sum) s = lmf_fail(LMF_ERR_FORMAT, "%s: checksum mismatch: the checkpoint is corrupt", path);
        else if ((reserved && version != 4) || reserved2)
            s = lmf_fail(LMF_ERR_FORMAT, "%s: header reserved field at offset %d is %llu, must be 0", path,
                         reserved2 ? 72 : 12, (unsigned long long)(reserved2 ? reserved2 : reserved));
        else if (P == 0) s = lmf_fail(LMF_ERR_FORMAT, "%s: header field num_params is 0", path);
        else if ((field = bad_field(f, &value, &max)))
            s = lmf_fail(LMF_ERR_FORMAT, "%s: header field %s = %llu is out of range (at most %llu): corrupt or not "
                         "written by lmforge", path, field, (unsigned long long)value, (unsigned long long)max);
        else if (memchr(buf + HEADER, 0, clen))
            s = lmf_fail(LMF_ERR_FORMAT, "%s: the config text (offset %d, %llu bytes) holds a NUL byte at offset %zu",
                         path, HEADER, (unsigned long long)clen,
                         (size_t)((uint8_t *)memchr(buf + HEADER, 0, clen) - buf));
    }
    if (s != LMF_OK) {
        lmf_free_big(buf);
        return s;
    }
    ck->buffer = buf, ck->buffer_size = size;
    ck->path = strdup(path);
    ck->version = version;
    ck->config_text = lmf_xmalloc(clen + 1);
    memcpy(ck->config_text, buf + HEADER, clen);
    ck->config_text[clen] = 0;
    ck->num_params = P, ck->step = f[2], ck->epoch = f[3], ck->index = f[4], ck->adam_t = f[5];
    ck->params = (float *)(buf + HEADER + clen); /* aligned: clen is a multiple of 8 */
    if (version != 4) {
        ck->m = ck->params + P, ck->v = ck->m + P;
        return LMF_OK;
    }
    /* a set: the table of shards (copied out: after P floats it may sit at a 4-byte boundary) */
    uint32_t n = reserved;
    const uint8_t *tab = buf + HEADER + clen + P * sizeof(float);
    ck->n_shards = n;
    ck->shard_lo = lmf_xmalloc(n * sizeof(uint64_t)), ck->shard_hi = lmf_xmalloc(n * sizeof(uint64_t));
    ck->shard_sum = lmf_xmalloc(n * sizeof(uint64_t));
    for (uint32_t r = 0; r < n; r++) {
        memcpy(&ck->shard_lo[r], tab + 24 * r, 8), memcpy(&ck->shard_hi[r], tab + 24 * r + 8, 8);
        memcpy(&ck->shard_sum[r], tab + 24 * r + 16, 8);
    }
    for (uint32_t r = 0; r < n && s == LMF_OK; r++)
        if (ck->shard_lo[r] != (r ? ck->shard_hi[r - 1] : 0) || ck->shard_hi[r] < ck->shard_lo[r] ||
            (r == n - 1 && ck->shard_hi[r] != P))
            s = lmf_fail(LMF_ERR_FORMAT, "%s: shard %u covers parameters %llu..%llu, which does not continue the "
                         "ranges before it to %llu parameters", path, r, (unsigned long long)ck->shard_lo[r],
                         (unsigned long long)ck->shard_hi[r], (unsigned long long)P);
    for (uint32_t r = 0; r < n && s == LMF_OK; r++) s = verify_shard(ck, (int)r);
    if (s != LMF_OK) lmf_checkpoint_free(ck);
    return s;
}

void lmf_checkpoint_free(lmf_checkpoint *ck) {
    free(ck->shard_lo), free(ck->shard_hi), free(ck->shard_sum);
    lmf_free_big(ck->buffer);
    free(ck->config_text);
    free(ck->path);
    memset(ck, 0, sizeof *ck);
}

/* Steps of the ckpt-<step>.lmfc files in dir, sorted ascending. */
static int list_steps(const char *dir, long long **steps) {
    DIR *d = opendir(dir);
    *steps = NULL;
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long st;
        char tail[8];
        if (sscanf(e->d_name, "ckpt-%lld.%7s", &st, tail) == 2 && !strcmp(tail, "lmfc")) {
            if (n == cap) *steps = lmf_xrealloc(*steps, sizeof(long long) * (cap = cap ? 2 * cap : 16));
            (*steps)[n++] = st;
        }
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (*steps)[j - 1] > (*steps)[j]; j--) {
            long long t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1], (*steps)[j - 1] = t;
        }
    return n;
}

lmf_status lmf_checkpoint_latest(const char *dir, char **path) {
    long long *steps;
    int n = list_steps(dir, &steps);
    if (!n) {
        free(steps);
        return lmf_fail(LMF_ERR_IO, "%s: no checkpoint (ckpt-*.lmfc) to resume from", dir);
    }
    size_t len = strlen(dir) + 32;
    *path = lmf_xmalloc(len);
    snprintf(*path, len, "%s/ckpt-%08lld.lmfc", dir, steps[n - 1]);
    free(steps);
    return LMF_OK;
}

lmf_status lmf_checkpoint_load_latest(const char *dir, int set_aside, lmf_checkpoint *ck, char *note,
                                      size_t note_size) {
    if (note_size) note[0] = 0;
    long long *steps;
    int n = list_steps(dir, &steps);
    if (!n) {
        free(steps);
        return lmf_fail(LMF_ERR_IO, "%s: no checkpoint (ckpt-*.lmfc) to resume from", dir);
    }
    size_t len = strlen(dir) + 32, used = 0;
    char *p = lmf_xmalloc(len), first_err[1024] = "";
    lmf_status s = LMF_ERR_IO;
    int good = -1;
    for (int i = n - 1; i >= 0 && good < 0; i--) {
        snprintf(p, len, "%s/ckpt-%08lld.lmfc", dir, steps[i]);
        if ((s = lmf_checkpoint_load(p, ck)) == LMF_OK) good = i;
        else if (!first_err[0]) snprintf(first_err, sizeof first_err, "%s", lmf_last_error());
        if (s != LMF_OK && s != LMF_ERR_FORMAT) break; /* unreadable (permissions, I/O): not damage to step over */
        if (s != LMF_OK && used < note_size)
            used += (size_t)snprintf(note + used, note_size - used, "%s%s", used ? "; " : "", lmf_last_error());
    }
    if (good < 0) {
        free(steps), free(p);
        if (note_size) note[0] = 0;
        return lmf_fail(s, "%s%s", first_err, s == LMF_ERR_FORMAT && n > 1 ? " (no older checkpoint in the folder "
                        "loads either: remove the damaged files and start the run again)" : s == LMF_ERR_FORMAT ?
                        " (remove it and start the run again)" : "");
    }
    /* Damaged newer files are set aside, not deleted: they are evidence, and left in place they would count as the
     * newest when the run prunes its checkpoints by step, so the good ones would be pruned first. */
    for (int i = good + 1; i < n && set_aside; i++) {
        char from[1100], to[1120];
        snprintf(from, sizeof from, "%s/ckpt-%08lld.lmfc", dir, steps[i]);
        snprintf(to, sizeof to, "%s.corrupt", from);
        if (rename(from, to) == 0 && used < note_size)
            used += (size_t)snprintf(note + used, note_size - used, " (set aside as %s)", to);
    }
    free(steps), free(p);
    return LMF_OK;
}

/* ckpt-<step>.opt-<r>-of-<n>[.tmp]: the step, and whether the name has the .tmp suffix; 0 when it is no shard. */
static int shard_name(const char *name, long long *step, int *tmp) {
    int r, n, end = 0;
    if (sscanf(name, "ckpt-%lld.opt-%d-of-%d%n", step, &r, &n, &end) != 3 || end <= 0) return 0;
    *tmp = !strcmp(name + end, ".tmp");
    return *tmp || name[end] == 0;
}

int lmf_checkpoint_remove_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        char p[1300];
        long long step;
        int tmp;
        if (shard_name(e->d_name, &step, &tmp)) {
            /* a shard's temporary, or a shard whose save never reached its manifest */
            struct stat sb;
            snprintf(p, sizeof p, "%s/ckpt-%08lld.lmfc", dir, step);
            if (!tmp && stat(p, &sb) == 0) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (unlink(p) == 0) removed++;
            continue;
        }
        /* lmf_write_file_atomic's temporary names: ckpt-<step>.lmfc.tmp */
        if (strncmp(e->d_name, "ckpt-", 5) || l < 9 || strcmp(e->d_name + l - 9, ".lmfc.tmp")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) == 0) removed++;
    }
    closedir(d);
    return removed;
}

/* Deletes the shard files of step `step` in dir. */
static void remove_shards(const char *dir, long long step) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long st;
        int tmp;
        if (!shard_name(e->d_name, &st, &tmp) || tmp || st != step) continue;
        char p[1300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

void lmf_checkpoint_prune(const char *dir, int keep) {
    long long *steps;
    int n = list_steps(dir, &steps);
    for (int i = 0; i < n - keep; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/ckpt-%08lld.lmfc", dir, steps[i]);
        /* the manifest first: a set without it is never read, shards without a manifest are never taken */
        unlink(p);
        remove_shards(dir, steps[i]);
    }
    free(steps);
}
