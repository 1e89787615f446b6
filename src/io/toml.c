/* toml.c — the TOML-subset parser of toml.h: a recursive-descent reader over a bounds-checked cursor. */
#include "io/toml.h"

#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s, *end, *line_start;
    int line;
    const char *origin;
    lmf_toml *doc;
} cursor;

static int col_of(const cursor *c, const char *p) { return (int)(p - c->line_start) + 1; }

#define PERR(c, p, ...) perr_at(c, p, __VA_ARGS__)
static lmf_status perr_at(const cursor *c, const char *p, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static lmf_status perr_at(const cursor *c, const char *p, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lmf_fail(LMF_ERR_FORMAT, "%s:%d:%d: %s", c->origin, c->line, col_of(c, p), msg);
}

static char *xstrndup(const char *s, size_t n) {
    char *d = lmf_xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* A printable rendering of the byte at p for messages. */
static const char *show(const cursor *c, const char *p, char buf[16]) {
    if (p >= c->end) return "end of file";
    unsigned char ch = (unsigned char)*p;
    if (ch == '\n') return "end of line";
    if (ch >= 0x21 && ch < 0x7f) snprintf(buf, 16, "'%c'", ch);
    else snprintf(buf, 16, "byte 0x%02x", ch);
    return buf;
}

static void skip_ws(cursor *c) {
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\t')) c->s++;
}

static void skip_comment(cursor *c) {
    if (c->s < c->end && *c->s == '#')
        while (c->s < c->end && *c->s != '\n') c->s++;
}

/* Consumes a newline ("\n" or "\r\n"); returns 0 if the cursor is not at one. */
static int eat_newline(cursor *c) {
    if (c->s < c->end && *c->s == '\n') {
        c->s++;
    } else if (c->s + 1 < c->end && c->s[0] == '\r' && c->s[1] == '\n') {
        c->s += 2;
    } else {
        return 0;
    }
    c->line++;
    c->line_start = c->s;
    return 1;
}

/* Whitespace, comments and newlines (inside arrays). */
static void skip_ws_nl(cursor *c) {
    for (;;) {
        skip_ws(c);
        skip_comment(c);
        if (!eat_newline(c)) return;
    }
}

static int is_bare(char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}

/* Length of the valid UTF-8 sequence at p (1..4), 0 if invalid. */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned ch = p[0];
    if (ch < 0x80) return 1;
    int n = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC2 ? 2 : 0;
    if (!n || ch > 0xF4 || end - p < n) return 0;
    uint32_t cp = ch & (0x3Fu >> (n - 1));
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return n;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F)),
               3;
    o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A basic ("...") or literal ('...') string at c->s; the output is at most as long as the input. */
static lmf_status parse_string(cursor *c, char **out, size_t *out_len) {
    const char *start = c->s;
    char q = *c->s;
    if (c->s + 2 < c->end && c->s[1] == q && c->s[2] == q)
        return PERR(c, start, "multi-line strings (%c%c%c) are not supported", q, q, q);
    c->s++;
    char *buf = lmf_xrealloc(NULL, (size_t)(c->end - c->s) + 1);
    size_t n = 0;
    for (;;) {
        if (c->s >= c->end || *c->s == '\n' || *c->s == '\r') {
            free(buf);
            return PERR(c, start, "unterminated string (a string must close on the line it starts)");
        }
        unsigned char ch = (unsigned char)*c->s;
        if (ch == (unsigned char)q) {
            c->s++;
            break;
        }
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            free(buf);
            return PERR(c, c->s, "control character 0x%02x in a string (write it as an escape)", ch);
        }
        if (ch == '\\' && q == '"') {
            const char *esc = c->s;
            if (c->s + 1 >= c->end) {
                free(buf);
                return PERR(c, esc, "unterminated escape");
            }
            char e = c->s[1];
            c->s += 2;
            switch (e) {
            case 'b': buf[n++] = '\b'; break;
            case 't': buf[n++] = '\t'; break;
            case 'n': buf[n++] = '\n'; break;
            case 'f': buf[n++] = '\f'; break;
            case 'r': buf[n++] = '\r'; break;
            case '"': buf[n++] = '"'; break;
            case '\\': buf[n++] = '\\'; break;
            case 'u':
            case 'U': {
                int nd = e == 'u' ? 4 : 8;
                uint32_t cp = 0;
                for (int i = 0; i < nd; i++) {
                    char h = c->s < c->end ? *c->s : 0;
                    int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                                       : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (v < 0) {
                        free(buf);
                        return PERR(c, esc, "\\%c needs %d hex digits", e, nd);
                    }
                    cp = cp * 16 + (uint32_t)v;
                    c->s++;
                }
                if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                    free(buf);
                    return PERR(c, esc, "\\%c%0*X is not a Unicode scalar value", e, nd, cp);
                }
                /* \uXXXX (6 bytes) encodes to at most 3 bytes, \UXXXXXXXX (10) to at most 4: output never outgrows
                 * the input, so buf (sized from the input) is enough. */
                n += put_utf8(buf + n, cp);
                break;
            }
            default: {
                char tmp[16];
                free(buf);
                return PERR(c, esc, "unknown escape \\%s in a string",
                            (e >= 0x21 && e < 0x7f) ? (snprintf(tmp, sizeof tmp, "%c", e), tmp) : "?");
            }
            }
            continue;
        }
        int l = utf8_len((const unsigned char *)c->s, (const unsigned char *)c->end);
        if (!l) {
            free(buf);
            return PERR(c, c->s, "invalid UTF-8 byte 0x%02x in a string", ch);
        }
        memcpy(buf + n, c->s, (size_t)l);
        n += (size_t)l;
        c->s += l;
    }
    buf[n] = 0;
    *out = buf;
    *out_len = n;
    return LMF_OK;
}

static lmf_status parse_key(cursor *c, char **out) {
    if (c->s < c->end && (*c->s == '"' || *c->s == '\'')) {
        size_t n;
        const char *at = c->s;
        LMF_TRY(parse_string(c, out, &n));
        if (strlen(*out) != n) {
            free(*out);
            return PERR(c, at, "a key may not contain NUL");
        }
        return LMF_OK;
    }
    const char *a = c->s;
    while (c->s < c->end && is_bare(*c->s)) c->s++;
    if (c->s == a) {
        char b[16];
        return PERR(c, a, "expected a key, found %s", show(c, a, b));
    }
    *out = xstrndup(a, (size_t)(c->s - a));
    return LMF_OK;
}

static int word_at(const cursor *c, const char *w) {
    size_t n = strlen(w);
    return (size_t)(c->end - c->s) >= n && !memcmp(c->s, w, n) && (c->s + n == c->end || !is_bare(c->s[n]));
}

/* Integer or float. TOML: no leading zeros, '_' only between digits. */
static lmf_status parse_number(cursor *c, lmf_toml_value *v) {
    const char *start = c->s, *p = c->s;
    char buf[128];
    size_t n = 0;
    int sign = 0;
    if (p < c->end && (*p == '+' || *p == '-')) sign = *p == '-' ? -1 : 1, buf[n++] = *p++;
    /* inf / nan */
    if ((size_t)(c->end - p) >= 3 && (!memcmp(p, "inf", 3) || !memcmp(p, "nan", 3)) &&
        (p + 3 == c->end || !is_bare(p[3]))) {
        v->type = LMF_TOML_FLOAT;
        v->u.f = p[0] == 'i' ? (sign < 0 ? -INFINITY : INFINITY) : NAN;
        c->s = p + 3;
        return LMF_OK;
    }
    if (!sign && p + 1 < c->end && p[0] == '0' && (p[1] == 'x' || p[1] == 'o' || p[1] == 'b')) {
        int base = p[1] == 'x' ? 16 : p[1] == 'o' ? 8 : 2;
        p += 2;
        uint64_t x = 0;
        int nd = 0, prev_digit = 0;
        for (; p < c->end; p++) {
            char h = *p;
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (h == '_' && prev_digit && p + 1 < c->end && is_bare(p[1]) && p[1] != '_') {
                prev_digit = 0;
                continue;
            }
            if (d < 0 && !is_bare(h)) break;
            if (d < 0 || d >= base) return PERR(c, p, "invalid digit in a base-%d integer", base);
            if (x > (UINT64_C(0x7fffffffffffffff) - (uint64_t)d) / (uint64_t)base)
                return PERR(c, start, "integer does not fit in 64 bits");
            x = x * (uint64_t)base + (uint64_t)d, nd++, prev_digit = 1;
        }
        if (!nd) return PERR(c, start, "expected digits after the base prefix");
        v->type = LMF_TOML_INT;
        v->u.i = (int64_t)x;
        c->s = p;
        return LMF_OK;
    }
    int is_float = 0, digits = 0, prev_digit = 0;
    const char *int_start = p;
    for (; p < c->end; p++) {
        char ch = *p;
        if (ch >= '0' && ch <= '9') {
            digits++, prev_digit = 1;
        } else if (ch == '_') {
            if (!prev_digit || p + 1 >= c->end || !(p[1] >= '0' && p[1] <= '9'))
                return PERR(c, p, "'_' in a number must sit between two digits");
            prev_digit = 0;
            continue;
        } else if (ch == '.') {
            if (!prev_digit || p + 1 >= c->end || !(p[1] >= '0' && p[1] <= '9'))
                return PERR(c, p, "a decimal point needs digits on both sides");
            is_float = 1, prev_digit = 0;
        } else if (ch == 'e' || ch == 'E') {
            if (!prev_digit) return PERR(c, p, "an exponent needs digits before it");
            is_float = 1, prev_digit = 0;
            if (n >= sizeof buf - 3) return PERR(c, start, "number too long");
            buf[n++] = ch;
            if (p + 1 < c->end && (p[1] == '+' || p[1] == '-')) buf[n++] = *++p;
            if (p + 1 >= c->end || !(p[1] >= '0' && p[1] <= '9')) return PERR(c, p, "an exponent needs digits");
            continue;
        } else if (is_bare(ch) || ch == '+') {
            return PERR(c, p, "invalid character '%c' in a number", ch);
        } else {
            break;
        }
        if (n >= sizeof buf - 2) return PERR(c, start, "number too long");
        buf[n++] = ch;
    }
    buf[n] = 0;
    if (!digits) {
        char b[16];
        return PERR(c, start, "expected a value (string, number, true/false or array), found %s", show(c, start, b));
    }
    if (int_start + 1 < p && int_start[0] == '0' && int_start[1] >= '0' && int_start[1] <= '9')
        return PERR(c, start, "leading zeros are not allowed in numbers");
    errno = 0;
    if (is_float) {
        v->type = LMF_TOML_FLOAT;
        v->u.f = strtod(buf, NULL);
        if (errno == ERANGE && isinf(v->u.f)) return PERR(c, start, "float out of range");
    } else {
        v->type = LMF_TOML_INT;
        v->u.i = strtoll(buf, NULL, 10);
        if (errno == ERANGE) return PERR(c, start, "integer does not fit in 64 bits");
    }
    c->s = p;
    return LMF_OK;
}

static void value_free(lmf_toml_value *v) {
    if (v->type == LMF_TOML_STRING) free(v->u.str.s);
    else if (v->type == LMF_TOML_ARRAY) {
        for (size_t i = 0; i < v->u.arr.n; i++) value_free(&v->u.arr.items[i]);
        free(v->u.arr.items);
    }
    v->type = LMF_TOML_INT;
}

static lmf_status parse_value(cursor *c, lmf_toml_value *v, int depth) {
    memset(v, 0, sizeof *v);
    v->type = LMF_TOML_INT;
    v->line = c->line, v->col = col_of(c, c->s);
    if (c->s >= c->end || *c->s == '\n' || *c->s == '#' || *c->s == '\r')
        return PERR(c, c->s, "expected a value after '='");
    char ch = *c->s;
    if (ch == '"' || ch == '\'') {
        lmf_status s = parse_string(c, &v->u.str.s, &v->u.str.len);
        if (s == LMF_OK) v->type = LMF_TOML_STRING;
        return s;
    }
    if (word_at(c, "true") || word_at(c, "false")) {
        v->type = LMF_TOML_BOOL;
        v->u.b = *c->s == 't';
        c->s += v->u.b ? 4 : 5;
        return LMF_OK;
    }
    if (ch == '{') return PERR(c, c->s, "inline tables are not supported: use a [table]");
    if (ch == '[') {
        if (depth >= LMF_TOML_MAX_DEPTH) return PERR(c, c->s, "arrays nested deeper than %d", LMF_TOML_MAX_DEPTH);
        c->s++;
        size_t cap = 0;
        for (;;) {
            skip_ws_nl(c);
            if (c->s < c->end && *c->s == ']') {
                c->s++;
                break;
            }
            if (v->u.arr.n == cap) {
                cap = cap ? 2 * cap : 4;
                v->u.arr.items = lmf_xrealloc(v->u.arr.items, cap * sizeof *v->u.arr.items);
            }
            lmf_toml_value *it = &v->u.arr.items[v->u.arr.n];
            lmf_status s = parse_value(c, it, depth + 1);
            if (s != LMF_OK) {
                value_free(it);
                v->type = LMF_TOML_ARRAY;
                return s;
            }
            v->u.arr.n++;
            skip_ws_nl(c);
            if (c->s < c->end && *c->s == ',') {
                c->s++;
                continue;
            }
            if (c->s < c->end && *c->s == ']') {
                c->s++;
                break;
            }
            char b[16];
            v->type = LMF_TOML_ARRAY;
            return PERR(c, c->s, "expected ',' or ']' in an array, found %s", show(c, c->s, b));
        }
        v->type = LMF_TOML_ARRAY;
        return LMF_OK;
    }
    if (!(ch >= '0' && ch <= '9') && ch != '+' && ch != '-' && !word_at(c, "inf") && !word_at(c, "nan")) {
        char b[16];
        return PERR(c, c->s, "expected a value (\"string\", number, true/false or [array]), found %s%s",
                    show(c, c->s, b), is_bare(ch) ? " (strings need quotes)" : "");
    }
    /* dates would start like numbers (1979-05-27): refused as a bad number */
    return parse_number(c, v);
}

static lmf_toml_table *add_table(lmf_toml *d, char *name, int line, int col) {
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 8;
        d->tables = lmf_xrealloc(d->tables, d->cap * sizeof *d->tables);
    }
    lmf_toml_table *t = &d->tables[d->n++];
    memset(t, 0, sizeof *t);
    t->name = name, t->line = line, t->col = col;
    return t;
}

static lmf_status parse_doc(cursor *c) {
    lmf_toml *d = c->doc;
    lmf_toml_table *cur = add_table(d, xstrndup("", 0), 1, 1);
    /* a UTF-8 byte-order mark is allowed at the start */
    if (c->end - c->s >= 3 && !memcmp(c->s, "\xEF\xBB\xBF", 3)) c->s += 3, c->line_start = c->s;
    while (c->s < c->end) {
        skip_ws(c);
        skip_comment(c);
        if (eat_newline(c)) continue;
        if (c->s >= c->end) break;
        const char *at = c->s;
        if (*c->s == '[') {
            if (c->s + 1 < c->end && c->s[1] == '[') return PERR(c, at, "arrays of tables ([[...]]) are not supported");
            c->s++;
            /* name: key(.key)* with optional spaces around dots */
            char *name = xstrndup("", 0);
            size_t nl = 0;
            for (;;) {
                skip_ws(c);
                char *part;
                lmf_status s = parse_key(c, &part);
                if (s != LMF_OK) {
                    free(name);
                    return s;
                }
                size_t pl = strlen(part);
                name = lmf_xrealloc(name, nl + pl + 2);
                if (nl) name[nl++] = '.';
                memcpy(name + nl, part, pl + 1);
                nl += pl;
                free(part);
                skip_ws(c);
                if (c->s < c->end && *c->s == '.') {
                    c->s++;
                    continue;
                }
                break;
            }
            if (c->s >= c->end || *c->s != ']') {
                char b[16];
                free(name);
                return PERR(c, c->s, "expected ']' to close the table header, found %s", show(c, c->s, b));
            }
            c->s++;
            for (size_t i = 0; i < d->n; i++)
                if (!strcmp(d->tables[i].name, name)) {
                    lmf_status s = PERR(c, at, "table [%s] defined twice (first at line %d)", name, d->tables[i].line);
                    free(name);
                    return s;
                }
            cur = add_table(d, name, c->line, col_of(c, at));
        } else {
            char *key;
            LMF_TRY(parse_key(c, &key));
            skip_ws(c);
            if (c->s < c->end && *c->s == '.') {
                free(key);
                return PERR(c, c->s, "dotted keys are not supported: use a [table] header");
            }
            if (c->s >= c->end || *c->s != '=') {
                char b[16];
                lmf_status s = PERR(c, c->s, "expected '=' after key '%s', found %s", key, show(c, c->s, b));
                free(key);
                return s;
            }
            for (size_t i = 0; i < cur->n; i++)
                if (!strcmp(cur->kv[i].key, key)) {
                    lmf_status s = PERR(c, at, "key '%s' defined twice in [%s] (first at line %d)", key, cur->name,
                                        cur->kv[i].line);
                    free(key);
                    return s;
                }
            c->s++;
            skip_ws(c);
            if (cur->n == cur->cap) {
                cur->cap = cur->cap ? 2 * cur->cap : 8;
                cur->kv = lmf_xrealloc(cur->kv, cur->cap * sizeof *cur->kv);
            }
            lmf_toml_kv *kv = &cur->kv[cur->n];
            memset(kv, 0, sizeof *kv);
            kv->key = key, kv->line = c->line, kv->col = col_of(c, at);
            lmf_status s = parse_value(c, &kv->val, 0);
            cur->n++; /* counted even on failure so lmf_toml_free releases what was parsed */
            if (s != LMF_OK) return s;
        }
        skip_ws(c);
        skip_comment(c);
        if (c->s < c->end && !eat_newline(c)) {
            char b[16];
            return PERR(c, c->s, "expected the end of the line, found %s", show(c, c->s, b));
        }
    }
    return LMF_OK;
}

lmf_status lmf_toml_parse(const char *text, size_t len, const char *origin, lmf_toml **out) {
    *out = NULL;
    lmf_toml *d = lmf_xrealloc(NULL, sizeof *d);
    memset(d, 0, sizeof *d);
    d->origin = xstrndup(origin ? origin : "<toml>", strlen(origin ? origin : "<toml>"));
    cursor c = {.s = text, .end = text + len, .line_start = text, .line = 1, .origin = d->origin, .doc = d};
    lmf_status s = parse_doc(&c);
    if (s != LMF_OK) {
        lmf_toml_free(d);
        return s;
    }
    *out = d;
    return LMF_OK;
}

lmf_status lmf_toml_load(const char *path, lmf_toml **out) {
    *out = NULL;
    char *buf;
    size_t n;
    LMF_TRY(lmf_read_file_max(path, 16u << 20, "a config file (max 16 MiB)", &buf, &n));
    lmf_status s = lmf_toml_parse(buf, n, path, out);
    free(buf);
    return s;
}

void lmf_toml_free(lmf_toml *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) {
        lmf_toml_table *t = &d->tables[i];
        for (size_t k = 0; k < t->n; k++) {
            free(t->kv[k].key);
            value_free(&t->kv[k].val);
        }
        free(t->kv);
        free(t->name);
    }
    free(d->tables);
    free(d->origin);
    free(d);
}

/* The first of n items (stride bytes each) whose char * at name_off is `name`, its int at used_off set to 1; or NULL. */
static void *find_named(void *items, size_t n, size_t stride, size_t name_off, size_t used_off, const char *name) {
    for (size_t i = 0; i < n; i++) {
        char *item = (char *)items + i * stride;
        const char *nm;
        memcpy(&nm, item + name_off, sizeof nm);
        if (!strcmp(nm, name)) {
            *(int *)(void *)(item + used_off) = 1;
            return item;
        }
    }
    return NULL;
}

lmf_toml_table *lmf_toml_table_get(lmf_toml *t, const char *name) {
    if (!t) return NULL;
    return find_named(t->tables, t->n, sizeof *t->tables, offsetof(lmf_toml_table, name),
                      offsetof(lmf_toml_table, used), name);
}

lmf_toml_kv *lmf_toml_kv_get(lmf_toml_table *tb, const char *key) {
    if (!tb) return NULL;
    return find_named(tb->kv, tb->n, sizeof *tb->kv, offsetof(lmf_toml_kv, key), offsetof(lmf_toml_kv, used), key);
}

const char *lmf_toml_type_name(lmf_toml_type ty) {
    switch (ty) {
    case LMF_TOML_STRING: return "a string";
    case LMF_TOML_INT: return "an integer";
    case LMF_TOML_FLOAT: return "a float";
    case LMF_TOML_BOOL: return "a boolean";
    case LMF_TOML_ARRAY: return "an array";
    }
    return "?";
}

static lmf_status type_err(lmf_toml *t, lmf_toml_table *tb, lmf_toml_kv *kv, const char *want) {
    return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: %s%s%s: expected %s, got %s", t->origin, kv->val.line, kv->val.col,
                    tb->name, *tb->name ? "." : "", kv->key, want, lmf_toml_type_name(kv->val.type));
}

lmf_status lmf_toml_get_bool(lmf_toml *t, lmf_toml_table *tb, const char *key, int *out) {
    lmf_toml_kv *kv = lmf_toml_kv_get(tb, key);
    if (!kv) return LMF_OK;
    if (kv->val.type != LMF_TOML_BOOL) return type_err(t, tb, kv, "true or false");
    *out = kv->val.u.b;
    return LMF_OK;
}

lmf_status lmf_toml_get_int(lmf_toml *t, lmf_toml_table *tb, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    lmf_toml_kv *kv = lmf_toml_kv_get(tb, key);
    if (!kv) return LMF_OK;
    if (kv->val.type != LMF_TOML_INT) return type_err(t, tb, kv, "an integer");
    int64_t v = kv->val.u.i;
    if (v < lo || v > hi)
        return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: %s.%s = %lld is out of range [%lld, %lld]", t->origin, kv->val.line,
                        kv->val.col, tb->name, key, (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return LMF_OK;
}

lmf_status lmf_toml_get_float(lmf_toml *t, lmf_toml_table *tb, const char *key, double lo, double hi, double *out) {
    lmf_toml_kv *kv = lmf_toml_kv_get(tb, key);
    if (!kv) return LMF_OK;
    double v;
    if (kv->val.type == LMF_TOML_FLOAT) v = kv->val.u.f;
    else if (kv->val.type == LMF_TOML_INT) v = (double)kv->val.u.i;
    else return type_err(t, tb, kv, "a number");
    if (!(v >= lo && v <= hi))
        return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: %s.%s = %g is out of range [%g, %g]", t->origin, kv->val.line,
                        kv->val.col, tb->name, key, v, lo, hi);
    *out = v;
    return LMF_OK;
}

lmf_status lmf_toml_get_string(lmf_toml *t, lmf_toml_table *tb, const char *key, const char **out) {
    lmf_toml_kv *kv = lmf_toml_kv_get(tb, key);
    if (!kv) return LMF_OK;
    if (kv->val.type != LMF_TOML_STRING) return type_err(t, tb, kv, "a string");
    if (strlen(kv->val.u.str.s) != kv->val.u.str.len)
        return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: %s.%s: the string contains NUL (\\u0000)", t->origin, kv->val.line,
                        kv->val.col, tb->name, key);
    *out = kv->val.u.str.s;
    return LMF_OK;
}

lmf_status lmf_toml_get_array(lmf_toml *t, lmf_toml_table *tb, const char *key, lmf_toml_type item_type,
                              const lmf_toml_value **out) {
    lmf_toml_kv *kv = lmf_toml_kv_get(tb, key);
    if (!kv) return LMF_OK;
    if (kv->val.type != LMF_TOML_ARRAY) return type_err(t, tb, kv, "an array");
    for (size_t i = 0; i < kv->val.u.arr.n; i++) {
        const lmf_toml_value *it = &kv->val.u.arr.items[i];
        int ok = it->type == item_type || (item_type == LMF_TOML_FLOAT && it->type == LMF_TOML_INT);
        if (ok && it->type == LMF_TOML_STRING && strlen(it->u.str.s) != it->u.str.len) ok = 0;
        if (!ok)
            return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: %s.%s[%zu]: expected %s, got %s", t->origin, it->line, it->col,
                            tb->name, key, i, lmf_toml_type_name(item_type), lmf_toml_type_name(it->type));
    }
    *out = &kv->val;
    return LMF_OK;
}

lmf_status lmf_toml_check_used(const lmf_toml *t) {
    for (size_t i = 0; i < t->n; i++) {
        const lmf_toml_table *tb = &t->tables[i];
        if (!tb->used && tb->n == 0 && !*tb->name) continue; /* the implicit root table, empty */
        if (!tb->used && *tb->name)
            return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: unknown table [%s]", t->origin, tb->line, tb->col, tb->name);
        for (size_t k = 0; k < tb->n; k++)
            if (!tb->kv[k].used)
                return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: unknown key '%s' in %s%s%s", t->origin, tb->kv[k].line,
                                tb->kv[k].col, tb->kv[k].key, *tb->name ? "[" : "the top level", tb->name,
                                *tb->name ? "]" : "");
    }
    return LMF_OK;
}
