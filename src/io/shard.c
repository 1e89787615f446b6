/* shard.c — see shard.h. */
#include "io/shard.h"
#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"

#include <errno.h>
#include <fcntl.h>
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

lmf_status lmf_shard_writer_open(lmf_shard_writer *w, const char *path, uint32_t vocab_size, int32_t eot,
                                 uint32_t tokenizer) {
    memset(w, 0, sizeof *w);
    w->token_size = vocab_size <= 65536 ? 2 : 4;
    w->vocab_size = vocab_size, w->eot = eot, w->tokenizer = tokenizer;
    LMF_TRY(lmf_atomic_open(&w->out, path));
    static const uint8_t zero[HEADER];
    fwrite(zero, 1, HEADER, w->out.f); /* header written last, once n_tokens is known */
    return LMF_OK;
}

lmf_status lmf_shard_writer_put(lmf_shard_writer *w, const uint32_t *tokens, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] >= w->vocab_size)
            return lmf_fail(LMF_ERR_ARG, "%s: token %u is not below vocab_size %u", w->out.path, tokens[i],
                            w->vocab_size);
        if (w->token_size == 2) {
            uint16_t t = (uint16_t)tokens[i];
            fwrite(&t, 2, 1, w->out.f);
        } else {
            fwrite(&tokens[i], 4, 1, w->out.f);
        }
    }
    w->n_tokens += n;
    return ferror(w->out.f) ? lmf_fail(LMF_ERR_IO, "%s: write failed", w->out.tmp) : LMF_OK;
}

lmf_status lmf_shard_writer_close(lmf_shard_writer *w) {
    uint8_t h[HEADER] = {0};
    uint32_t version = 1, ts = (uint32_t)w->token_size;
    memcpy(h, MAGIC, 8), memcpy(h + 8, &version, 4), memcpy(h + 12, &ts, 4), memcpy(h + 16, &w->n_tokens, 8);
    memcpy(h + 24, &w->vocab_size, 4), memcpy(h + 28, &w->eot, 4), memcpy(h + 32, &w->tokenizer, 4);
    if (fseek(w->out.f, 0, SEEK_SET) != 0 || fwrite(h, 1, HEADER, w->out.f) != HEADER) {
        lmf_status s = lmf_fail(LMF_ERR_IO, "%s: writing the header failed: %s", w->out.tmp, strerror(errno));
        lmf_atomic_abort(&w->out);
        return s;
    }
    return lmf_atomic_commit(&w->out);
}

void lmf_shard_writer_abort(lmf_shard_writer *w) { lmf_atomic_abort(&w->out); }
