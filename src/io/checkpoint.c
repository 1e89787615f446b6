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

#define VERSION 2 /* 2: XXH3-64 checksum (version 1 had an in-house 64-bit hash) */

/* The checksum guards against torn or corrupted files, not adversaries: XXH3 hashes at memory speed. The parts are
 * hashed as one stream, in file order, so the sum equals XXH3-64 of the bytes after the header. */
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
    uint64_t sum = payload_hash(parts + 1, sizes + 1, 4);
    memcpy(h + 64, &sum, 8);
    lmf_status s = lmf_write_file_atomic(path, parts, sizes, 5);
    free(text);
    return s;
}

lmf_status lmf_checkpoint_load(const char *path, lmf_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lmf_fail(LMF_ERR_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));
    struct stat sb;
    fstat(fd, &sb);
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
    uint32_t version;
    uint64_t f[6], sum;
    memcpy(&version, buf + 8, 4), memcpy(f, buf + 16, sizeof f), memcpy(&sum, buf + 64, 8);
    uint64_t clen = f[0], P = f[1];
    if (got != size) s = lmf_fail(LMF_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, size);
    else if (memcmp(buf, MAGIC, 8))
        s = lmf_fail(LMF_ERR_FORMAT, "%s: bad magic: not an lmforge checkpoint", path);
    else if (version != VERSION)
        s = lmf_fail(LMF_ERR_FORMAT,
                     "%s: checkpoint version %u, this build reads version %d only (version 1 used an older checksum: "
                     "resume it with the lmforge that wrote it, or start the run again)", path, version, VERSION);
    else if (clen > size || clen % 8 || P > size / 12 || HEADER + clen + 3 * P * sizeof(float) != size)
        s = lmf_fail(LMF_ERR_FORMAT,
                     "%s: header says %llu config bytes and %llu parameters, which does not match the file size %zu "
                     "(truncated or corrupt)", path, (unsigned long long)clen, (unsigned long long)P, size);
    else if (payload_hash((const void *const[]){buf + HEADER}, (const size_t[]){size - HEADER}, 1) != sum)
        s = lmf_fail(LMF_ERR_FORMAT, "%s: checksum mismatch: the checkpoint is corrupt", path);
    if (s != LMF_OK) {
        lmf_free_big(buf);
        return s;
    }
    ck->buffer = buf, ck->buffer_size = size;
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
