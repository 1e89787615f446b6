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

lmf_status lmf_checkpoint_save(const char *path, const char *config_text, uint64_t step, uint64_t epoch,
                               uint64_t index, uint64_t adam_t, const float *params, const float *m, const float *v,
                               uint64_t num_params) {
    uint8_t h[HEADER] = {0};
    /* pad the config text with newlines (ignored by the parser) so the float arrays stay 8-byte aligned */
    size_t tlen = strlen(config_text);
    uint64_t clen = (tlen + 7) & ~(uint64_t)7;
    char *text = lmf_xmalloc(clen + 1);
    memcpy(text, config_text, tlen);
    memset(text + tlen, '\n', clen - tlen);
    uint64_t fields[6] = {clen, num_params, step, epoch, index, adam_t};
    uint32_t version = VERSION;
    memcpy(h, MAGIC, 8), memcpy(h + 8, &version, 4), memcpy(h + 16, fields, sizeof fields);
    size_t fb = num_params * sizeof(float);
    const void *parts[] = {h, text, params, m, v};
    size_t sizes[] = {HEADER, clen, fb, fb, fb};
    uint64_t sum = payload_hash(parts, sizes, 5); /* the checksum field is still zero here */
    memcpy(h + SUM_AT, &sum, 8);
    lmf_status s = lmf_write_file_atomic(path, parts, sizes, 5);
    free(text);
    return s;
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
    else if (version != VERSION && version != 2)
        s = lmf_fail(LMF_ERR_FORMAT,
                     "%s: checkpoint version %u, this build reads versions 2 and %d (version 1 used an older "
                     "checksum: resume it with the lmforge that wrote it, or start the run again)", path, version,
                     VERSION);
    else if (clen > size || clen % 8 || P > size / 12 || HEADER + clen + 3 * P * sizeof(float) != size)
        s = lmf_fail(LMF_ERR_FORMAT,
                     "%s: header says %llu config bytes and %llu parameters, which does not match the file size %zu "
                     "(truncated or corrupt)", path, (unsigned long long)clen, (unsigned long long)P, size);
    else {
        /* version 3 hashes the header with its checksum field as zero; version 2 only what follows the header */
        memset(buf + SUM_AT, 0, 8);
        uint64_t h = version == 2 ? payload_hash((const void *const[]){buf + HEADER}, (const size_t[]){size - HEADER}, 1)
                                  : payload_hash((const void *const[]){buf}, (const size_t[]){size}, 1);
        if (h != sum) s = lmf_fail(LMF_ERR_FORMAT, "%s: checksum mismatch: the checkpoint is corrupt", path);
        else if (reserved || reserved2)
            s = lmf_fail(LMF_ERR_FORMAT, "%s: header reserved field at offset %d is %llu, must be 0", path,
                         reserved ? 12 : 72, (unsigned long long)(reserved ? reserved : reserved2));
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
    ck->m = ck->params + P, ck->v = ck->m + P;
    return LMF_OK;
}

void lmf_checkpoint_free(lmf_checkpoint *ck) {
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

int lmf_checkpoint_remove_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        /* lmf_write_file_atomic's temporary names: ckpt-<step>.lmfc.tmp */
        if (strncmp(e->d_name, "ckpt-", 5) || l < 9 || strcmp(e->d_name + l - 9, ".lmfc.tmp")) continue;
        char p[1300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) == 0) removed++;
    }
    closedir(d);
    return removed;
}

void lmf_checkpoint_prune(const char *dir, int keep) {
    long long *steps;
    int n = list_steps(dir, &steps);
    for (int i = 0; i < n - keep; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/ckpt-%08lld.lmfc", dir, steps[i]);
        unlink(p);
    }
    free(steps);
}
