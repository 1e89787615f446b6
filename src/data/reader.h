/* reader.h — the data pipeline's input: documents from text files, folders and JSONL, optionally zstd-compressed.
 *
 * Inputs are paths: a file, or a folder walked recursively (entries in byte order of their names, so the document
 * order is the same on every machine; symbolic links followed, at most 32 folders deep; names filtered by include /
 * exclude glob patterns matched against the file's base name). Each file is
 *   - zstd-compressed when it starts with the zstd frame magic (28 B5 2F FD), whatever its name; decompressed
 *     while streaming, never whole in memory;
 *   - JSONL when format is "jsonl", or "auto" and its name (less .zst/.zstd) ends in .jsonl, .ndjson or .json:
 *     one JSON object per line, the document is the string field text_field (id_field, when set, gives its id);
 *   - text otherwise, cut into documents by split: the whole file, blank-line-separated blocks, single lines, or
 *     blocks ended by a line equal to a separator (fortune files use "%"). Blocks and lines that are empty or
 *     whitespace only are not documents. Line endings are kept inside documents (normalize fixes them).
 *
 * Malformed input is never fatal and never silent: a file that cannot be opened or read, corrupt zstd data, a line
 * that is not a JSON object, a missing or non-string text field, or a document over max_doc_bytes are counted by
 * kind with the place (file:line) through the on_malformed callback, and reading goes on with the next line or
 * file. The reader is single-threaded: one thread calls next(). */
#ifndef LMF_DATA_READER_H
#define LMF_DATA_READER_H

#include "lmforge.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { LMF_FORMAT_AUTO = 0, LMF_FORMAT_TEXT, LMF_FORMAT_JSONL } lmf_input_format;
typedef enum { LMF_SPLIT_FILE = 0, LMF_SPLIT_BLANK_LINE, LMF_SPLIT_LINE, LMF_SPLIT_SEPARATOR } lmf_split_mode;

typedef struct {
    const char *const *paths; /* files or folders; "-" is stdin (text or JSONL by format, never auto-JSONL) */
    size_t n_paths;
    lmf_input_format format;  /* auto */
    const char *text_field;   /* "text" */
    const char *id_field;     /* NULL: ids are "file:line" */
    lmf_split_mode split;     /* file */
    const char *separator;    /* "%" (split = separator) */
    const char *const *include; /* NULL/0: every file */
    size_t n_include;
    const char *const *exclude; /* NULL/0: none */
    size_t n_exclude;
    size_t max_doc_bytes;     /* 64 MiB: longer documents are malformed ("too_large") */
    /* Malformed input: kind ("unreadable_file", "read_error", "corrupt_zstd", "bad_json", "missing_text_field",
     * "text_not_string", "too_large"), the file and 1-based line (0: whole file) and a message. */
    void (*on_malformed)(void *ctx, const char *kind, const char *path, uint64_t line, const char *msg);
    void *ctx;
} lmf_reader_config;

/* One document handed out by next(): the text is appended to the caller's buffer. */
typedef struct {
    size_t text_off, text_len; /* bytes of the caller's buffer */
    uint32_t source;           /* index of the file (lmf_reader_source) */
    uint64_t line;             /* 1-based line where the document starts (1 for split = file) */
    size_t id_off, id_len;     /* id_field's value (appended after the text) when set and present; id_len 0 else */
} lmf_reader_doc;

typedef struct lmf_reader lmf_reader;

/* Expands the paths (walks folders) and sizes the input. A path that does not exist is reported through
 * on_malformed as "unreadable_file" (not an error); LMF_ERR_ARG only for a bad config. */
lmf_status lmf_reader_open(const lmf_reader_config *cfg, lmf_reader **out);
/* Appends the next document's text to *buf (growable: data/len/cap as lmf_text) and fills *d. 1 = a document,
 * 0 = end of input. Never fails: problems are reported and skipped. */
int lmf_reader_next(lmf_reader *r, char **buf, size_t *len, size_t *cap, lmf_reader_doc *d);
size_t lmf_reader_n_sources(const lmf_reader *r);
const char *lmf_reader_source(const lmf_reader *r, uint32_t i);
uint64_t lmf_reader_total_bytes(const lmf_reader *r); /* on-disk size of every input file */
uint64_t lmf_reader_bytes_done(const lmf_reader *r);  /* on-disk bytes consumed so far (any thread may read it) */
uint64_t lmf_reader_bytes_out(const lmf_reader *r);   /* decompressed bytes read so far */
void lmf_reader_free(lmf_reader *r);

#endif
