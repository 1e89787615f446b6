/* shard.c — see shard.h. */
#include "io/shard.h"
#include "core/alloc.h"
#include "core/status.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER 64
static const char MAGIC[8] = {'L', 'M', 'F', 'S', 'H', 'A', 'R', 'D'};

lmf_status lmf_shard_open(const char *path, lmf_shard **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lmf_fail(LMF_ERR_IO, "%s: cannot open token shard: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < HEADER) {
        close(fd);
        return lmf_fail(LMF_ERR_FORMAT, "%s: %lld bytes, shorter than the 64-byte shard header", path,
                        (long long)sb.st_size);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return lmf_fail(LMF_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    const uint8_t *h = map;
    uint32_t version, token_size, vocab, kind;
    uint64_t n;
    int32_t eot;
    memcpy(&version, h + 8, 4), memcpy(&token_size, h + 12, 4), memcpy(&n, h + 16, 8);
    memcpy(&vocab, h + 24, 4), memcpy(&eot, h + 28, 4), memcpy(&kind, h + 32, 4);
    lmf_status s = LMF_OK;
    if (memcmp(h, MAGIC, 8) != 0)
        s = lmf_fail(LMF_ERR_FORMAT, "%s: bad magic (not an lmforge token shard; make one with `lmforge data shard`)",
                     path);
    else if (version != 1)
        s = lmf_fail(LMF_ERR_FORMAT, "%s: shard version %u, this build reads version 1", path, version);
    else if (token_size != 2 && token_size != 4)
        s = lmf_fail(LMF_ERR_FORMAT, "%s: offset 12: token_size %u (expected 2 or 4)", path, token_size);
    else if (vocab == 0 || (token_size == 2 && vocab > 65536))
        s = lmf_fail(LMF_ERR_FORMAT, "%s: offset 24: vocab_size %u does not fit token_size %u", path, vocab,
                     token_size);
    else if (n > ((uint64_t)sb.st_size - HEADER) / token_size || (uint64_t)sb.st_size != HEADER + n * token_size)
        s = lmf_fail(LMF_ERR_FORMAT, "%s: header says %llu tokens (%llu bytes) but the file has %lld bytes", path,
                     (unsigned long long)n, (unsigned long long)(HEADER + n * token_size), (long long)sb.st_size);
    if (s != LMF_OK) {
        munmap(map, (size_t)sb.st_size);
        return s;
    }
    lmf_shard *sh = lmf_xcalloc(1, sizeof *sh);
    sh->path = strdup(path), sh->map = map, sh->map_size = (size_t)sb.st_size, sh->tokens = h + HEADER;
    sh->token_size = (int)token_size, sh->n_tokens = n, sh->vocab_size = vocab, sh->eot = eot, sh->tokenizer = kind;
    /* A token id past the vocabulary would index outside the embedding table: check them all once, up front. */
    for (uint64_t i = 0; i < n; i++) {
        if (lmf_shard_token(sh, i) >= vocab) {
            s = lmf_fail(LMF_ERR_FORMAT, "%s: token %llu (byte offset %llu) is %u, not below vocab_size %u", path,
                         (unsigned long long)i, (unsigned long long)(HEADER + i * token_size),
                         lmf_shard_token(sh, i), vocab);
            lmf_shard_close(sh);
            return s;
        }
    }
    *out = sh;
    return LMF_OK;
}

void lmf_shard_close(lmf_shard *s) {
    if (!s) return;
    munmap(s->map, s->map_size);
    free(s->path);
    free(s);
}

static int fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

lmf_status lmf_write_file_atomic(const char *path, const void *const *parts, const size_t *sizes, int n_parts) {
    size_t len = strlen(path) + 16;
    char *tmp = lmf_xmalloc(len);
    snprintf(tmp, len, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        lmf_status s = lmf_fail(LMF_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    for (int i = 0; i < n_parts; i++) {
        const char *p = parts[i];
        size_t left = sizes[i];
        while (left) {
            ssize_t w = write(fd, p, left > (1u << 30) ? (1u << 30) : left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                lmf_status s = lmf_fail(LMF_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
                close(fd), unlink(tmp), free(tmp);
                return s;
            }
            p += w, left -= (size_t)w;
        }
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        lmf_status s = lmf_fail(LMF_ERR_IO, "%s: fsync/close failed: %s", tmp, strerror(errno));
        unlink(tmp), free(tmp);
        return s;
    }
    if (rename(tmp, path) != 0) {
        lmf_status s = lmf_fail(LMF_ERR_IO, "%s: rename to %s failed: %s", tmp, path, strerror(errno));
        unlink(tmp), free(tmp);
        return s;
    }
    free(tmp);
    fsync_dir_of(path);
    return LMF_OK;
}

lmf_status lmf_shard_writer_open(lmf_shard_writer *w, const char *path, uint32_t vocab_size, int32_t eot,
                                 uint32_t tokenizer) {
    memset(w, 0, sizeof *w);
    size_t len = strlen(path) + 16;
    w->path = strdup(path);
    w->tmp_path = lmf_xmalloc(len);
    snprintf(w->tmp_path, len, "%s.tmp", path);
    w->token_size = vocab_size <= 65536 ? 2 : 4;
    w->vocab_size = vocab_size, w->eot = eot, w->tokenizer = tokenizer;
    w->f = fopen(w->tmp_path, "wb");
    if (!w->f) {
        lmf_status s = lmf_fail(LMF_ERR_IO, "%s: cannot create: %s", w->tmp_path, strerror(errno));
        free(w->path), free(w->tmp_path);
        return s;
    }
    static const uint8_t zero[HEADER];
    fwrite(zero, 1, HEADER, w->f); /* header written last, once n_tokens is known */
    return LMF_OK;
}

lmf_status lmf_shard_writer_put(lmf_shard_writer *w, const uint32_t *tokens, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] >= w->vocab_size)
            return lmf_fail(LMF_ERR_ARG, "%s: token %u is not below vocab_size %u", w->path, tokens[i], w->vocab_size);
        if (w->token_size == 2) {
            uint16_t t = (uint16_t)tokens[i];
            fwrite(&t, 2, 1, w->f);
        } else {
            fwrite(&tokens[i], 4, 1, w->f);
        }
    }
    w->n_tokens += n;
    return ferror(w->f) ? lmf_fail(LMF_ERR_IO, "%s: write failed", w->tmp_path) : LMF_OK;
}

lmf_status lmf_shard_writer_close(lmf_shard_writer *w) {
    uint8_t h[HEADER] = {0};
    uint32_t version = 1, ts = (uint32_t)w->token_size;
    memcpy(h, MAGIC, 8), memcpy(h + 8, &version, 4), memcpy(h + 12, &ts, 4), memcpy(h + 16, &w->n_tokens, 8);
    memcpy(h + 24, &w->vocab_size, 4), memcpy(h + 28, &w->eot, 4), memcpy(h + 32, &w->tokenizer, 4);
    lmf_status s = LMF_OK;
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, HEADER, w->f) != HEADER || fflush(w->f) != 0 ||
        fsync(fileno(w->f)) != 0)
        s = lmf_fail(LMF_ERR_IO, "%s: writing the header failed: %s", w->tmp_path, strerror(errno));
    if (fclose(w->f) != 0 && s == LMF_OK) s = lmf_fail(LMF_ERR_IO, "%s: close failed", w->tmp_path);
    w->f = NULL;
    if (s == LMF_OK && rename(w->tmp_path, w->path) != 0)
        s = lmf_fail(LMF_ERR_IO, "%s: rename failed: %s", w->path, strerror(errno));
    if (s != LMF_OK) unlink(w->tmp_path);
    else fsync_dir_of(w->path);
    free(w->path), free(w->tmp_path);
    return s;
}

void lmf_shard_writer_abort(lmf_shard_writer *w) {
    if (w->f) fclose(w->f);
    unlink(w->tmp_path);
    free(w->path), free(w->tmp_path);
    w->f = NULL;
}
