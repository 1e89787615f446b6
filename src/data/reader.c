/* reader.c — documents from files, folders and JSONL, plain or zstd (see reader.h). */
#include "data/reader.h"

#include "core/alloc.h"
#include "core/status.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#define IN_CHUNK (1 << 17)
#define OUT_CHUNK (1 << 18)
#define MAX_WALK_DEPTH 32

struct lmf_reader {
    lmf_reader_config cfg;
    char **files;
    uint64_t *sizes;
    size_t n_files, cap_files;
    uint64_t total;
    uint64_t done, out; /* atomics (__atomic builtins) */
    uint64_t prefix_end; /* on-disk bytes of the files up to the current one */

    size_t next_file; /* index of the next file to open */
    int open;         /* a file is being read */
    size_t cur;       /* its index */
    FILE *f;
    int jsonl, zst, file_bad, file_eof;
    ZSTD_DCtx *z;
    size_t zret;                  /* last ZSTD_decompressStream result (0: a frame just ended) */
    unsigned char *in;            /* compressed input */
    size_t in_pos, in_len;
    char *ob;                     /* decompressed / raw bytes */
    size_t ob_pos, ob_len;
    char *line;                   /* the current line, with its '\n' when it had one */
    size_t line_len, line_cap;
    int line_long;                /* the line exceeded max_doc_bytes (its text was cut) */
    char *field;                  /* a text field with NUL bytes, decoded with its length */
    size_t field_cap;
    uint64_t lineno;
};

static void malformed(lmf_reader *r, const char *kind, const char *path, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void malformed(lmf_reader *r, const char *kind, const char *path, uint64_t line, const char *fmt, ...) {
    if (!r->cfg.on_malformed) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->cfg.on_malformed(r->cfg.ctx, kind, path, line, msg);
}

static void add_file(lmf_reader *r, const char *path, uint64_t size) {
    if (r->n_files == r->cap_files) {
        r->cap_files = r->cap_files ? 2 * r->cap_files : 16;
        r->files = lmf_xrealloc(r->files, r->cap_files * sizeof *r->files);
        r->sizes = lmf_xrealloc(r->sizes, r->cap_files * sizeof *r->sizes);
    }
    r->files[r->n_files] = strdup(path);
    r->sizes[r->n_files++] = size;
    r->total += size;
}

static int name_selected(const lmf_reader *r, const char *name) {
    for (size_t i = 0; i < r->cfg.n_exclude; i++)
        if (!fnmatch(r->cfg.exclude[i], name, 0)) return 0;
    if (!r->cfg.n_include) return 1;
    for (size_t i = 0; i < r->cfg.n_include; i++)
        if (!fnmatch(r->cfg.include[i], name, 0)) return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void walk(lmf_reader *r, const char *path, int depth, int top) {
    struct stat st;
    if (!strcmp(path, "-") && top) {
        add_file(r, "-", 0);
        return;
    }
    if (stat(path, &st) != 0) {
        malformed(r, "unreadable_file", path, 0, "cannot stat: %s", strerror(errno));
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (depth >= MAX_WALK_DEPTH) {
            malformed(r, "unreadable_file", path, 0, "folders nested deeper than %d (a symlink loop?): skipped",
                      MAX_WALK_DEPTH);
            return;
        }
        DIR *d = opendir(path);
        if (!d) {
            malformed(r, "unreadable_file", path, 0, "cannot open folder: %s", strerror(errno));
            return;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (n == cap) names = lmf_xrealloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            names[n++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_str);
        size_t pl = strlen(path);
        for (size_t i = 0; i < n; i++) {
            char *child = lmf_xrealloc(NULL, pl + strlen(names[i]) + 2);
            sprintf(child, "%s%s%s", path, pl && path[pl - 1] == '/' ? "" : "/", names[i]);
            struct stat cs;
            int is_dir = stat(child, &cs) == 0 && S_ISDIR(cs.st_mode);
            if (is_dir || name_selected(r, names[i])) walk(r, child, depth + 1, 0);
            free(child);
            free(names[i]);
        }
        free(names);
        return;
    }
    if (!S_ISREG(st.st_mode) && !top) return; /* sockets, fifos inside folders */
    add_file(r, path, S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0);
}

lmf_status lmf_reader_open(const lmf_reader_config *cfg, lmf_reader **out) {
    *out = NULL;
    if (cfg->split == LMF_SPLIT_SEPARATOR && (!cfg->separator || !*cfg->separator))
        return lmf_fail(LMF_ERR_ARG, "input: split = \"separator\" needs a non-empty separator");
    if (!cfg->text_field || !*cfg->text_field) return lmf_fail(LMF_ERR_ARG, "input: text_field must not be empty");
    lmf_reader *r = lmf_xrealloc(NULL, sizeof *r);
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    if (!r->cfg.max_doc_bytes) r->cfg.max_doc_bytes = (size_t)64 << 20;
    for (size_t i = 0; i < cfg->n_paths; i++) walk(r, cfg->paths[i], 0, 1);
    r->in = lmf_xrealloc(NULL, IN_CHUNK);
    r->ob = lmf_xrealloc(NULL, OUT_CHUNK);
    *out = r;
    return LMF_OK;
}

size_t lmf_reader_n_sources(const lmf_reader *r) { return r->n_files; }
const char *lmf_reader_source(const lmf_reader *r, uint32_t i) { return i < r->n_files ? r->files[i] : "?"; }
uint64_t lmf_reader_total_bytes(const lmf_reader *r) { return r->total; }
uint64_t lmf_reader_bytes_done(const lmf_reader *r) { return __atomic_load_n(&r->done, __ATOMIC_RELAXED); }
uint64_t lmf_reader_bytes_out(const lmf_reader *r) { return __atomic_load_n(&r->out, __ATOMIC_RELAXED); }

void lmf_reader_free(lmf_reader *r) {
    if (!r) return;
    if (r->f && r->f != stdin) fclose(r->f);
    ZSTD_freeDCtx(r->z);
    for (size_t i = 0; i < r->n_files; i++) free(r->files[i]);
    LMF_FREE_ALL(r->files, r->sizes, r->in, r->ob, r->line, r->field, r);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int is_jsonl_name(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t n = strlen(tmp);
    if (n >= 4 && !strcmp(tmp + n - 4, ".zst")) tmp[n - 4] = 0;
    else if (n >= 5 && !strcmp(tmp + n - 5, ".zstd")) tmp[n - 5] = 0;
    return ends_with(tmp, ".jsonl") || ends_with(tmp, ".ndjson") || ends_with(tmp, ".json");
}

static void close_file(lmf_reader *r) {
    if (r->f && r->f != stdin) fclose(r->f);
    r->f = NULL;
    r->open = 0;
    /* count the whole file as consumed (a file abandoned early still moves the progress bar to its end) */
    if (r->cur < r->n_files) {
        uint64_t d = __atomic_load_n(&r->done, __ATOMIC_RELAXED);
        uint64_t end = r->prefix_end;
        if (d < end) __atomic_store_n(&r->done, end, __ATOMIC_RELAXED);
    }
}

/* Opens the next file that can be opened; 0 when none is left. */
static int open_next(lmf_reader *r) {
    while (r->next_file < r->n_files) {
        r->cur = r->next_file++;
        r->prefix_end += r->sizes[r->cur];
        const char *path = r->files[r->cur];
        r->f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
        if (!r->f) {
            malformed(r, "unreadable_file", path, 0, "cannot open: %s", strerror(errno));
            close_file(r);
            continue;
        }
        r->open = 1;
        r->file_bad = r->file_eof = 0;
        r->in_pos = r->in_len = r->ob_pos = r->ob_len = 0;
        r->lineno = 0;
        r->zret = 0;
        r->jsonl = r->cfg.format == LMF_FORMAT_JSONL || (r->cfg.format == LMF_FORMAT_AUTO && is_jsonl_name(path));
        /* zstd by magic: peek the first 4 bytes into the input buffer */
        size_t n = fread(r->in, 1, 4, r->f);
        __atomic_add_fetch(&r->done, n, __ATOMIC_RELAXED);
        r->zst = n == 4 && r->in[0] == 0x28 && r->in[1] == 0xB5 && r->in[2] == 0x2F && r->in[3] == 0xFD;
        if (r->zst) {
            if (!r->z) r->z = ZSTD_createDCtx();
            ZSTD_DCtx_reset(r->z, ZSTD_reset_session_only);
            r->in_len = n;
        } else {
            memcpy(r->ob, r->in, n);
            r->ob_len = n;
            __atomic_add_fetch(&r->out, n, __ATOMIC_RELAXED);
        }
        return 1;
    }
    return 0;
}

/* Refills r->ob; 0 at the end of the file (or after an error, reported). */
static int fill(lmf_reader *r) {
    r->ob_pos = r->ob_len = 0;
    if (r->file_eof || r->file_bad) return 0;
    const char *path = r->files[r->cur];
    if (!r->zst) {
        size_t n = fread(r->ob, 1, OUT_CHUNK, r->f);
        __atomic_add_fetch(&r->done, n, __ATOMIC_RELAXED);
        __atomic_add_fetch(&r->out, n, __ATOMIC_RELAXED);
        if (n == 0) {
            if (ferror(r->f)) {
                malformed(r, "read_error", path, r->lineno, "read error: %s", strerror(errno));
                r->file_bad = 1;
            }
            r->file_eof = 1;
            return 0;
        }
        r->ob_len = n;
        return 1;
    }
    for (;;) {
        if (r->in_pos == r->in_len) {
            size_t n = fread(r->in, 1, IN_CHUNK, r->f);
            __atomic_add_fetch(&r->done, n, __ATOMIC_RELAXED);
            r->in_pos = 0, r->in_len = n;
            if (n == 0) {
                if (ferror(r->f)) {
                    malformed(r, "read_error", path, r->lineno, "read error: %s", strerror(errno));
                    r->file_bad = 1;
                } else if (r->zret != 0) {
                    malformed(r, "corrupt_zstd", path, r->lineno, "truncated zstd stream (the last frame is incomplete)");
                    r->file_bad = 1;
                }
                r->file_eof = 1;
                return 0;
            }
        }
        ZSTD_inBuffer ib = {r->in, r->in_len, r->in_pos};
        ZSTD_outBuffer obuf = {r->ob, OUT_CHUNK, 0};
        size_t ret = ZSTD_decompressStream(r->z, &obuf, &ib);
        r->in_pos = ib.pos;
        if (ZSTD_isError(ret)) {
            malformed(r, "corrupt_zstd", path, r->lineno, "zstd: %s (the rest of the file is skipped)",
                      ZSTD_getErrorName(ret));
            r->file_bad = 1;
            r->file_eof = 1;
            /* what decompressed before the error is still delivered */
            r->ob_len = obuf.pos;
            __atomic_add_fetch(&r->out, obuf.pos, __ATOMIC_RELAXED);
            return obuf.pos > 0;
        }
        r->zret = ret;
        if (obuf.pos) {
            r->ob_len = obuf.pos;
            __atomic_add_fetch(&r->out, obuf.pos, __ATOMIC_RELAXED);
            return 1;
        }
    }
}

/* The next line of the open file into r->line (with its '\n' if any); 0 at end of file. Lines longer than
 * max_doc_bytes are cut (line_long set) but consumed whole. */
static int read_line(lmf_reader *r) {
    r->line_len = 0;
    r->line_long = 0;
    int got = 0;
    for (;;) {
        if (r->ob_pos == r->ob_len && !fill(r)) break;
        got = 1;
        char *a = r->ob + r->ob_pos, *nl = memchr(a, '\n', r->ob_len - r->ob_pos);
        size_t n = nl ? (size_t)(nl - a) + 1 : r->ob_len - r->ob_pos;
        r->ob_pos += n;
        size_t room = r->cfg.max_doc_bytes + 1 > r->line_len ? r->cfg.max_doc_bytes + 1 - r->line_len : 0;
        size_t keep = n < room ? n : room;
        if (keep < n) r->line_long = 1;
        if (r->line_len + keep + 1 > r->line_cap) {
            r->line_cap = (r->line_len + keep + 1) * 2;
            r->line = lmf_xrealloc(r->line, r->line_cap);
        }
        memcpy(r->line + r->line_len, a, keep);
        r->line_len += keep;
        if (nl) break;
    }
    if (!got) return 0;
    if (r->line_len > r->cfg.max_doc_bytes) r->line_long = 1;
    r->line[r->line_len] = 0;
    r->lineno++;
    return 1;
}

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2 > 4096 ? (*len + n + 1) * 2 : 4096;
        *buf = lmf_xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v')) return 0;
    return 1;
}

/* Length of s without its line terminator (\n or \r\n). */
static size_t chomp(const char *s, size_t n) {
    if (n && s[n - 1] == '\n') n--;
    if (n && s[n - 1] == '\r') n--;
    return n;
}

/* ---- the text field with its length: cJSON ends a string at its first NUL byte ----
 * A document may hold "\u0000" or a raw NUL byte; cJSON decodes both but keeps no length, so strlen() on its value
 * would cut the document there without a word. When a line has either, the field is decoded again here, length-
 * aware, from the raw line (which cJSON has already accepted as a JSON object, so this scanner can stay small; it
 * still checks every bound). */

static size_t skip_ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

static int hex4(const char *s, size_t n, size_t i, uint32_t *v) {
    if (i + 4 > n) return 0;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[i + k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v << 4 | (uint32_t)d;
    }
    return 1;
}

/* Decodes the JSON string whose opening quote is at s[i] into out (when out is not NULL; room for the raw length is
 * enough: no escape decodes longer than it is written); returns the index after the closing quote, 0 if malformed. */
static size_t json_string(const char *s, size_t n, size_t i, char *out, size_t *out_len) {
    size_t o = 0;
    if (i >= n || s[i] != '"') return 0;
    for (i++; i < n && s[i] != '"'; i++) {
        if (s[i] != '\\') {
            if (out) out[o] = s[i];
            o++;
            continue;
        }
        if (++i >= n) return 0;
        char c = s[i];
        uint32_t cp;
        switch (c) {
        case '"': case '\\': case '/': cp = (uint32_t)c; break;
        case 'b': cp = 8; break;
        case 'f': cp = 12; break;
        case 'n': cp = 10; break;
        case 'r': cp = 13; break;
        case 't': cp = 9; break;
        case 'u': {
            if (!hex4(s, n, i + 1, &cp)) return 0;
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair, as cJSON requires */
                uint32_t lo;
                if (i + 2 >= n || s[i + 1] != '\\' || s[i + 2] != 'u' || !hex4(s, n, i + 3, &lo) || lo < 0xDC00 ||
                    lo > 0xDFFF)
                    return 0;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return 0;
            }
            break;
        }
        default: return 0;
        }
        unsigned char u[4];
        size_t k = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (k == 1) u[0] = (unsigned char)cp;
        else if (k == 2) u[0] = (unsigned char)(0xC0 | cp >> 6), u[1] = (unsigned char)(0x80 | (cp & 63));
        else if (k == 3)
            u[0] = (unsigned char)(0xE0 | cp >> 12), u[1] = (unsigned char)(0x80 | (cp >> 6 & 63)),
            u[2] = (unsigned char)(0x80 | (cp & 63));
        else
            u[0] = (unsigned char)(0xF0 | cp >> 18), u[1] = (unsigned char)(0x80 | (cp >> 12 & 63)),
            u[2] = (unsigned char)(0x80 | (cp >> 6 & 63)), u[3] = (unsigned char)(0x80 | (cp & 63));
        if (out) memcpy(out + o, u, k);
        o += k;
    }
    if (i >= n) return 0;
    if (out_len) *out_len = o;
    return i + 1;
}

/* Skips one JSON value at s[i]; returns the index after it, 0 if malformed. */
static size_t json_skip(const char *s, size_t n, size_t i) {
    if (i >= n) return 0;
    if (s[i] == '"') return json_string(s, n, i, NULL, NULL);
    if (s[i] == '{' || s[i] == '[') {
        int depth = 0;
        while (i < n) {
            if (s[i] == '"') {
                if (!(i = json_string(s, n, i, NULL, NULL))) return 0;
                continue;
            }
            if (s[i] == '{' || s[i] == '[') depth++;
            else if ((s[i] == '}' || s[i] == ']') && --depth == 0) return i + 1;
            i++;
        }
        return 0;
    }
    while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' && s[i] != '\r' &&
           s[i] != '\n')
        i++;
    return i;
}

/* The first member named key of the object in s[0..n), when it is a string: decoded into *buf (grown), its length
 * in *len. 1 = found, 0 = not found or not a string or malformed. */
static int json_field(const char *s, size_t n, const char *key, char **buf, size_t *cap, size_t *len) {
    size_t kl = strlen(key), i = n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3) ? 3 : 0; /* a BOM, as cJSON skips it */
    i = skip_ws(s, n, i);
    if (i >= n || s[i] != '{') return 0;
    i = skip_ws(s, n, i + 1);
    if (n + 1 > *cap) *buf = lmf_xrealloc(*buf, *cap = n + 1);
    while (i < n && s[i] == '"') {
        size_t klen, after = json_string(s, n, i, *buf, &klen);
        if (!after) return 0;
        int match = klen == kl && !memcmp(*buf, key, kl);
        i = skip_ws(s, n, after);
        if (i >= n || s[i] != ':') return 0;
        i = skip_ws(s, n, i + 1);
        if (match) return i < n && s[i] == '"' && json_string(s, n, i, *buf, len) != 0;
        if (!(i = json_skip(s, n, i))) return 0;
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != ',') return 0;
        i = skip_ws(s, n, i + 1);
    }
    return 0;
}

/* JSONL: one line -> 1 document, or 0 (skipped: blank or malformed, reported). */
static int json_doc(lmf_reader *r, char **buf, size_t *len, size_t *cap, lmf_reader_doc *d) {
    const char *path = r->files[r->cur];
    size_t n = chomp(r->line, r->line_len);
    if (blank(r->line, n)) return 0;
    if (r->line_long) {
        malformed(r, "too_large", path, r->lineno, "line longer than max_doc_bytes (%zu): skipped",
                  r->cfg.max_doc_bytes);
        return 0;
    }
    cJSON *j = cJSON_ParseWithLength(r->line, n);
    if (!j || !cJSON_IsObject(j)) {
        malformed(r, "bad_json", path, r->lineno, j ? "not a JSON object" : "not valid JSON");
        cJSON_Delete(j);
        return 0;
    }
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, r->cfg.text_field);
    if (!t) {
        malformed(r, "missing_text_field", path, r->lineno, "no field \"%s\"", r->cfg.text_field);
        cJSON_Delete(j);
        return 0;
    }
    if (!cJSON_IsString(t) || !t->valuestring) {
        malformed(r, "text_not_string", path, r->lineno, "field \"%s\" is not a string", r->cfg.text_field);
        cJSON_Delete(j);
        return 0;
    }
    d->text_off = *len;
    d->text_len = strlen(t->valuestring);
    if ((memchr(r->line, 0, n) || memmem(r->line, n, "\\u0000", 6)) &&
        json_field(r->line, n, r->cfg.text_field, &r->field, &r->field_cap, &d->text_len))
        append(buf, len, cap, r->field, d->text_len);
    else
        append(buf, len, cap, t->valuestring, d->text_len);
    d->id_off = *len, d->id_len = 0;
    if (r->cfg.id_field && *r->cfg.id_field) {
        cJSON *id = cJSON_GetObjectItemCaseSensitive(j, r->cfg.id_field);
        char num[64];
        const char *ids = NULL;
        if (cJSON_IsString(id) && id->valuestring) ids = id->valuestring;
        else if (cJSON_IsNumber(id)) snprintf(num, sizeof num, "%.17g", id->valuedouble), ids = num;
        if (ids) {
            d->id_len = strlen(ids) > 256 ? 256 : strlen(ids);
            append(buf, len, cap, ids, d->id_len);
        }
    }
    cJSON_Delete(j);
    d->source = (uint32_t)r->cur;
    d->line = r->lineno;
    return 1;
}

int lmf_reader_next(lmf_reader *r, char **buf, size_t *len, size_t *cap, lmf_reader_doc *d) {
    memset(d, 0, sizeof *d);
    for (;;) {
        if (!r->open && !open_next(r)) return 0;
        const char *path = r->files[r->cur];
        if (r->jsonl) {
            while (read_line(r))
                if (json_doc(r, buf, len, cap, d)) return 1;
            close_file(r);
            continue;
        }
        size_t start = *len;
        d->text_off = start, d->source = (uint32_t)r->cur;
        int too_large = 0;
        if (r->cfg.split == LMF_SPLIT_FILE) {
            /* whole file: raw chunks, no line splitting */
            d->line = 1;
            for (;;) {
                if (r->ob_pos == r->ob_len && !fill(r)) break;
                size_t n = r->ob_len - r->ob_pos;
                if (!too_large && *len - start + n > r->cfg.max_doc_bytes) too_large = 1;
                if (!too_large) append(buf, len, cap, r->ob + r->ob_pos, n);
                r->ob_pos = r->ob_len;
            }
            close_file(r);
            if (too_large) {
                *len = start;
                malformed(r, "too_large", path, 0, "file longer than max_doc_bytes (%zu): skipped", r->cfg.max_doc_bytes);
                continue;
            }
            if (blank(*buf + start, *len - start)) {
                *len = start;
                continue;
            }
            d->text_len = *len - start;
            d->id_off = *len;
            return 1;
        }
        /* line-based modes */
        uint64_t first = 0;
        int got = 0;
        while (read_line(r)) {
            size_t n = chomp(r->line, r->line_len);
            int is_blank = blank(r->line, n);
            if (r->cfg.split == LMF_SPLIT_LINE) {
                if (is_blank) continue;
                if (r->line_long) {
                    malformed(r, "too_large", path, r->lineno, "line longer than max_doc_bytes: skipped");
                    continue;
                }
                append(buf, len, cap, r->line, n);
                first = r->lineno;
                got = 1;
                break;
            }
            int ends = r->cfg.split == LMF_SPLIT_BLANK_LINE ? is_blank
                                                             : (n == strlen(r->cfg.separator) &&
                                                                !memcmp(r->line, r->cfg.separator, n));
            if (ends) {
                if (too_large) {
                    malformed(r, "too_large", path, first, "document longer than max_doc_bytes: skipped");
                    too_large = 0, *len = start, first = 0;
                    continue;
                }
                if (*len > start && !blank(*buf + start, *len - start)) {
                    got = 1;
                    break;
                }
                *len = start, first = 0;
                continue;
            }
            if (!first) first = r->lineno;
            if (too_large) continue;
            if (*len - start + r->line_len > r->cfg.max_doc_bytes || r->line_long) {
                too_large = 1;
                continue;
            }
            append(buf, len, cap, r->line, r->line_len);
        }
        if (!got) { /* end of file: the last block */
            close_file(r);
            if (too_large) {
                malformed(r, "too_large", path, first, "document longer than max_doc_bytes: skipped");
                *len = start;
                continue;
            }
            if (*len == start || blank(*buf + start, *len - start)) {
                *len = start;
                continue;
            }
        }
        /* a block's final line ending is not part of the document */
        if (r->cfg.split != LMF_SPLIT_LINE) *len = start + chomp(*buf + start, *len - start);
        (*buf)[*len] = 0;
        d->text_len = *len - start;
        d->line = first;
        d->id_off = *len;
        return 1;
    }
}
