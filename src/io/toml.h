/* toml.h — a small TOML-subset parser for configuration files (data pipelines, ...).
 *
 * The subset:
 *   # comments, blank lines
 *   [table]  [dotted.table]            (each table at most once; keys before the first header go in table "")
 *   key = value                         bare keys (A-Z a-z 0-9 _ -) or "quoted" keys; no dotted keys
 *   values: basic strings "..." (escapes \b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX), literal strings '...',
 *           integers (decimal, optional sign, '_' between digits; 0x/0o/0b prefixes), floats (fraction and/or
 *           exponent, inf, nan), booleans true/false, arrays [v, v, ...] of any of these (nested, multi-line,
 *           trailing comma and comments allowed; at most LMF_TOML_MAX_DEPTH deep).
 *   Not supported (refused with a clear message): multi-line strings, inline tables, arrays of tables, dates.
 *
 * Input is hostile: every byte is bounds-checked, strings must be valid UTF-8, integers must fit in int64, and
 * every error names origin:line:column (1-based, columns in bytes) and what was expected. Duplicate keys and
 * tables are errors.
 *
 * Reading values: lookups mark what they touch, so after applying a document to a config, lmf_toml_check_used()
 * reports the first key or table nobody asked for (a typo) with its position. The document owns every string;
 * lmf_toml_free frees it all. */
#ifndef LMF_IO_TOML_H
#define LMF_IO_TOML_H

#include "lmforge.h"

#include <stddef.h>
#include <stdint.h>

#define LMF_TOML_MAX_DEPTH 16

typedef enum {
    LMF_TOML_STRING = 0,
    LMF_TOML_INT,
    LMF_TOML_FLOAT,
    LMF_TOML_BOOL,
    LMF_TOML_ARRAY,
} lmf_toml_type;

typedef struct lmf_toml_value {
    lmf_toml_type type;
    int line, col; /* where the value starts */
    union {
        struct {
            char *s;    /* NUL-terminated (may hold embedded NULs from \u0000: use len) */
            size_t len;
        } str;
        int64_t i;
        double f;
        int b;
        struct {
            struct lmf_toml_value *items;
            size_t n;
        } arr;
    } u;
} lmf_toml_value;

typedef struct {
    char *key;
    int line, col;
    int used;
    lmf_toml_value val;
} lmf_toml_kv;

typedef struct {
    char *name; /* "" for the keys before the first header */
    int line, col;
    int used;
    lmf_toml_kv *kv;
    size_t n, cap;
} lmf_toml_table;

typedef struct {
    char *origin; /* file name or label, for messages */
    lmf_toml_table *tables;
    size_t n, cap;
} lmf_toml;

/* Parses len bytes of text; origin names the source in messages. On error *out is NULL and the message (origin:
 * line:col: ...) is in lmf_last_error(). */
lmf_status lmf_toml_parse(const char *text, size_t len, const char *origin, lmf_toml **out);
lmf_status lmf_toml_load(const char *path, lmf_toml **out); /* at most 16 MiB */
void lmf_toml_free(lmf_toml *t);

/* Lookups (mark the table / key used). NULL when absent. */
lmf_toml_table *lmf_toml_table_get(lmf_toml *t, const char *name);
lmf_toml_kv *lmf_toml_kv_get(lmf_toml_table *tb, const char *key);

/* Typed getters: absent key (or absent table: tb NULL) leaves *out unchanged and returns LMF_OK; a value of the
 * wrong type or out of range is LMF_ERR_ARG naming origin:line:col, table.key, expected and actual. */
lmf_status lmf_toml_get_bool(lmf_toml *t, lmf_toml_table *tb, const char *key, int *out);
lmf_status lmf_toml_get_int(lmf_toml *t, lmf_toml_table *tb, const char *key, int64_t lo, int64_t hi, int64_t *out);
/* Accepts integers too. */
lmf_status lmf_toml_get_float(lmf_toml *t, lmf_toml_table *tb, const char *key, double lo, double hi, double *out);
/* *out is a pointer into the document (valid until lmf_toml_free). Embedded NULs are refused. */
lmf_status lmf_toml_get_string(lmf_toml *t, lmf_toml_table *tb, const char *key, const char **out);
/* An array whose items all have the given type (an empty array is fine). */
lmf_status lmf_toml_get_array(lmf_toml *t, lmf_toml_table *tb, const char *key, lmf_toml_type item_type,
                              const lmf_toml_value **out);

/* LMF_ERR_ARG naming the first table or key that no lookup touched ("unknown key 'x' in [y]"). */
lmf_status lmf_toml_check_used(const lmf_toml *t);

const char *lmf_toml_type_name(lmf_toml_type ty);

#endif
