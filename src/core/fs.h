/* fs.h — the file-system helpers every layer needs: read a whole file, create a folder with its parents, and
 * replace a file atomically (temporary file, fsync, rename, fsync of the folder), so a crash never leaves a
 * truncated checkpoint, tokenizer, shard or report under its final name.
 *
 * Errors are lmf_status values with a message naming the file (lmf_last_error()); nothing here prints or exits. */
#ifndef LMF_CORE_FS_H
#define LMF_CORE_FS_H

#include "lmforge.h"

#include <stddef.h>
#include <stdio.h>

/* Reads the whole file into a new NUL-terminated buffer (*out, freed by the caller; the NUL is not counted in
 * *len). Works on pipes and character devices too (it reads until end of file). Fails with LMF_ERR_IO naming the
 * file when it cannot be opened or read, or is a folder. */
lmf_status lmf_read_file(const char *path, char **out, size_t *len);
/* As lmf_read_file, and fails with LMF_ERR_FORMAT ("PATH: larger than N bytes: not WHAT?") once the file is
 * found to exceed max_bytes, before reading more: for files whose size an attacker controls. */
lmf_status lmf_read_file_max(const char *path, size_t max_bytes, const char *what, char **out, size_t *len);
/* The same on an open stream (stdin for "-"); name is used in the messages. The stream is not closed. */
lmf_status lmf_read_stream(FILE *f, const char *name, size_t max_bytes, const char *what, char **out, size_t *len);

/* mkdir -p: creates dir and any missing parents (mode 0755). Succeeds when dir already is a folder; fails naming
 * the first component that cannot be created, or dir itself when it exists and is not a folder. */
lmf_status lmf_mkdir_p(const char *dir);

/* How a path is written into a run folder's own files (checkpoints, train.conf), so that the folder can be copied
 * or moved and resumed from any working directory: relative to dir when it lies inside dir, else absolute. Its
 * folder is resolved (realpath); the last component is kept as given (a symlink in the run folder stays one).
 * When the folder cannot be resolved the path is written as given. */
void lmf_path_anchor(const char *path, const char *dir, char *out, size_t n);
/* The reverse: a relative stored path joined to dir; absolute and empty ones unchanged. */
void lmf_path_resolve(const char *stored, const char *dir, char *out, size_t n);

/* Writes the concatenation of n_parts buffers to "<path>.tmp", fsyncs it and renames it over path (atomic
 * replace). On failure the temporary file is removed and path is untouched. */
lmf_status lmf_write_file_atomic(const char *path, const void *const *parts, const size_t *sizes, int n_parts);

/* The streaming form, for files written piece by piece (token shards, pipeline outputs): open creates
 * "<path>.tmp" and gives a stdio stream in a->f; commit flushes, fsyncs, closes and renames it into place; abort
 * closes and removes the temporary file. After commit or abort (whatever the result) a holds nothing. */
typedef struct {
    FILE *f;
    char *path, *tmp;
} lmf_atomic_file;
lmf_status lmf_atomic_open(lmf_atomic_file *a, const char *path);
lmf_status lmf_atomic_commit(lmf_atomic_file *a);
void lmf_atomic_abort(lmf_atomic_file *a);

/* A log of lines (metrics JSONL) that fails loudly: every line is written, flushed and checked, so a full disk or a
 * failing device stops the job with an error naming the file (LMF_ERR_IO) instead of the record going silently
 * missing. close reports a failure of the last flush; a log whose f is NULL is closed (or never opened). */
typedef struct {
    FILE *f;
    char path[1200];
} lmf_line_log;
lmf_status lmf_line_log_open(lmf_line_log *l, const char *path, int append);
lmf_status lmf_line_log_printf(lmf_line_log *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
lmf_status lmf_line_log_close(lmf_line_log *l);

#endif
