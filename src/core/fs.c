/* fs.c — see fs.h. */
#include "core/fs.h"
#include "core/alloc.h"
#include "core/status.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

lmf_status lmf_read_stream(FILE *f, const char *name, size_t max_bytes, const char *what, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    /* A regular file's size is known: one allocation of the right size. Pipes grow the buffer as they go. */
    struct stat sb;
    size_t cap = 1 << 16;
    if (fstat(fileno(f), &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return lmf_fail(LMF_ERR_IO, "%s: not a regular file (a folder)", name);
        if (S_ISREG(sb.st_mode) && (unsigned long long)sb.st_size < max_bytes) cap = (size_t)sb.st_size + 2;
    }
    char *buf = lmf_xmalloc(cap);
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap) buf = lmf_xrealloc(buf, cap *= 2);
        size_t want = cap - n - 1;
        if (max_bytes != (size_t)-1 && want > max_bytes + 1 - n) want = max_bytes + 1 - n;
        size_t r = fread(buf + n, 1, want, f);
        n += r;
        if (n > max_bytes) {
            free(buf);
            return lmf_fail(LMF_ERR_FORMAT, "%s: larger than %zu bytes: not %s?", name, max_bytes,
                            what ? what : "the expected kind of file");
        }
        if (r == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return lmf_fail(LMF_ERR_IO, "%s: read error: %s", name, strerror(errno));
    }
    buf[n] = 0;
    *out = buf, *len = n;
    return LMF_OK;
}

lmf_status lmf_read_file_max(const char *path, size_t max_bytes, const char *what, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lmf_fail(LMF_ERR_IO, "%s: cannot open%s%s: %s", path, what ? " " : "", what ? what : "",
                        strerror(errno));
    lmf_status s = lmf_read_stream(f, path, max_bytes, what, out, len);
    fclose(f);
    return s;
}

lmf_status lmf_read_file(const char *path, char **out, size_t *len) {
    return lmf_read_file_max(path, (size_t)-1, NULL, out, len);
}

static lmf_status mkdir_one(const char *dir) {
    if (mkdir(dir, 0755) == 0) return LMF_OK;
    int e = errno;
    struct stat sb;
    /* EEXIST is also what a plain file of that name gives: only a folder counts as done. */
    if (e == EEXIST && stat(dir, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return LMF_OK;
        return lmf_fail(LMF_ERR_IO, "%s: exists and is not a folder", dir);
    }
    return lmf_fail(LMF_ERR_IO, "%s: cannot create folder: %s", dir, strerror(e));
}

lmf_status lmf_mkdir_p(const char *dir) {
    char *tmp = strdup(dir);
    if (!tmp) abort();
    lmf_status s = LMF_OK;
    for (char *p = tmp + 1; *p && s == LMF_OK; p++) {
        if (*p != '/' || p[-1] == '/') continue;
        *p = 0;
        s = mkdir_one(tmp);
        *p = '/';
    }
    if (s == LMF_OK) s = mkdir_one(tmp);
    free(tmp);
    return s;
}

void lmf_path_anchor(const char *path, const char *dir, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    if (!path[0]) return;
    char *copy = strdup(path), *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    if (slash) *slash = 0;
    char *parent = realpath(slash ? (copy[0] ? copy : "/") : ".", NULL), *root = realpath(dir, NULL);
    if (parent && root && base[0]) {
        size_t rl = strlen(root);
        int inside = !strncmp(parent, root, rl) && (parent[rl] == 0 || parent[rl] == '/');
        if (inside && parent[rl]) snprintf(out, n, "%s/%s", parent + rl + 1, base);
        else if (inside) snprintf(out, n, "%s", base);
        else snprintf(out, n, "%s%s%s", parent, strcmp(parent, "/") ? "/" : "", base);
    }
    free(parent), free(root), free(copy);
}

void lmf_path_resolve(const char *stored, const char *dir, char *out, size_t n) {
    if (!stored[0] || stored[0] == '/') snprintf(out, n, "%s", stored);
    else snprintf(out, n, "%s/%s", dir, stored);
}

/* The rename is only durable once the folder's entry is on disk too. Best effort: some file systems refuse it. */
static void fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0) return;
    fsync(fd);
    close(fd);
}

static char *tmp_name(const char *path) {
    size_t len = strlen(path) + 8;
    char *tmp = lmf_xmalloc(len);
    snprintf(tmp, len, "%s.tmp", path);
    return tmp;
}

lmf_status lmf_write_file_atomic(const char *path, const void *const *parts, const size_t *sizes, int n_parts) {
    char *tmp = tmp_name(path);
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

lmf_status lmf_atomic_open(lmf_atomic_file *a, const char *path) {
    a->path = strdup(path);
    if (!a->path) abort();
    a->tmp = tmp_name(path);
    a->f = fopen(a->tmp, "wb");
    if (a->f) return LMF_OK;
    lmf_status s = lmf_fail(LMF_ERR_IO, "%s: cannot create: %s", a->tmp, strerror(errno));
    free(a->path), free(a->tmp);
    a->path = a->tmp = NULL;
    return s;
}

lmf_status lmf_atomic_commit(lmf_atomic_file *a) {
    lmf_status s = LMF_OK;
    if (fflush(a->f) != 0 || ferror(a->f) || fsync(fileno(a->f)) != 0)
        s = lmf_fail(LMF_ERR_IO, "%s: write failed: %s", a->tmp, strerror(errno));
    if (fclose(a->f) != 0 && s == LMF_OK) s = lmf_fail(LMF_ERR_IO, "%s: close failed: %s", a->tmp, strerror(errno));
    a->f = NULL;
    if (s == LMF_OK && rename(a->tmp, a->path) != 0)
        s = lmf_fail(LMF_ERR_IO, "%s: cannot rename to %s: %s", a->tmp, a->path, strerror(errno));
    if (s != LMF_OK) unlink(a->tmp);
    else fsync_dir_of(a->path);
    free(a->path), free(a->tmp);
    a->path = a->tmp = NULL;
    return s;
}

void lmf_atomic_abort(lmf_atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    free(a->path), free(a->tmp);
    a->f = NULL, a->path = a->tmp = NULL;
}

lmf_status lmf_line_log_open(lmf_line_log *l, const char *path, int append) {
    if (path != l->path) snprintf(l->path, sizeof l->path, "%s", path);
    l->f = fopen(l->path, append ? "a" : "w");
    if (!l->f) return lmf_fail(LMF_ERR_IO, "%s: cannot open for writing: %s", l->path, strerror(errno));
    return LMF_OK;
}

lmf_status lmf_line_log_printf(lmf_line_log *l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf(l->f, fmt, ap);
    va_end(ap);
    if (r < 0 || fflush(l->f) != 0 || ferror(l->f))
        return lmf_fail(LMF_ERR_IO, "%s: write failed: %s", l->path, strerror(errno));
    return LMF_OK;
}

lmf_status lmf_line_log_close(lmf_line_log *l) {
    if (!l->f) return LMF_OK;
    errno = 0;
    int bad = fflush(l->f) != 0 || ferror(l->f), e = errno;
    if (fclose(l->f) != 0 && !bad) bad = 1, e = errno;
    l->f = NULL;
    return bad ? lmf_fail(LMF_ERR_IO, "%s: write failed: %s", l->path, strerror(e ? e : EIO)) : LMF_OK;
}
