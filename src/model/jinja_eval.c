/* jinja_eval.c — running a compiled chat template (see jinja.h): values, Python's semantics for them, the filters,
 * tests, methods and globals chat templates use.
 *
 * Values follow Python's, which is what jinja2 runs: str() of None is "None", of a list "['a', 'b']"; ints and
 * floats compare equal across types; an undefined name or a missing key is "undefined", which prints as "" and is
 * false, and fails when an attribute, item, arithmetic or JSON is asked of it (jinja2's default Undefined).
 * Strings index, slice and count by code point.
 *
 * Every value of a render lives in one arena with a limit (LMF_JINJA_MAX_MEMORY); an error anywhere longjmps back to
 * lmf_jinja_render, which frees the arena: no value needs freeing on its own and no error path leaks. */
#include "model/jinja.h"

#include "core/alloc.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_LOOP, V_MACRO, V_BUILTIN } vt;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;
typedef struct {
    vt t;
    union {
        long long i;     /* V_BOOL, V_INT, V_BUILTIN */
        double f;
        struct {
            const char *p; /* V_STR; V_UNDEF: the name that was not found (or NULL) */
            size_t n;
        } s;
        jlist *l;
        jdict *d; /* V_DICT, V_NS */
        jloop *lp;
        struct jmacro *m;
    };
} jv;
struct jlist {
    size_t n;
    int tuple; /* str() as (a, b) */
    const char *err; /* a generator that fails when consumed (items of a non-mapping), or NULL */
    int gen;   /* made by map / select / reject / selectattr / rejectattr / items / reverse, which jinja2 returns as
                * generators: always true, no len(), not printable; |list makes a list of it */
    jv *v;
};
struct jdict {
    size_t n, cap;
    jv *k, *v;
};
typedef struct frame frame;
struct jmacro {
    const lmf_jnode *node;
    frame *scope; /* where it was defined: a macro sees that scope's names (a loop's `loop`, say), as jinja2's do */
};
struct jloop {
    long long index0, length;
    jv prev, next;
};
enum { B_RANGE, B_NAMESPACE, B_DICT, B_RAISE, B_STRFTIME };

struct frame {
    frame *parent;
    size_t n, cap;
    const char **names;
    jv *vals;
};

typedef struct {
    char *p;
    size_t n, cap;
} sb;

typedef struct {
    lmf_jarena arena;
    jmp_buf jb;
    char err[512];
    long steps;
    int line; /* of the node being run: for errors found below it */
    int call_depth;
    int ctl; /* 1: break, 2: continue pending */
    time_t now;
    frame *root;
    sb *top;                /* the render's output: {% generation %} spans are offsets into it */
    lmf_jinja_spans *spans; /* or NULL */
} E;

static _Noreturn void die(E *e, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void die(E *e, int line, const char *fmt, ...) {
    int k = snprintf(e->err, sizeof e->err, "chat template line %d: ", line ? line : e->line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err + k, sizeof e->err - (size_t)k, fmt, ap);
    va_end(ap);
    longjmp(e->jb, 1);
}

static void *ealloc(E *e, size_t n, int line) {
    void *p = lmf_jarena_alloc(&e->arena, n);
    if (!p) die(e, line, "the template needs more than %u MiB to render", LMF_JINJA_MAX_MEMORY >> 20);
    return p;
}

static void step(E *e, int line) {
    e->line = line;
    if (++e->steps > LMF_JINJA_MAX_STEPS) die(e, line, "the template ran more than %ld steps", LMF_JINJA_MAX_STEPS);
}

/* Charges a scan over n items to the step budget: a lookup or membership test inside a loop costs what it scans,
 * so `{% for x in xs %}{% if x in xs %}` over a long list ends at the bound rather than running for minutes. */
static void charge(E *e, size_t n, int line) {
    e->steps += (long)(n / 4);
    if (e->steps > LMF_JINJA_MAX_STEPS) die(e, line, "the template ran more than %ld steps", LMF_JINJA_MAX_STEPS);
}

/* ---- strings -------------------------------------------------------------------------------------------------- */
static void sb_put(E *e, sb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        if (b->n + n > LMF_JINJA_MAX_OUTPUT) die(e, 0, "a string grew past %u MiB", LMF_JINJA_MAX_OUTPUT >> 20);
        size_t cap = b->cap ? 2 * b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = ealloc(e, cap, 0);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(E *e, sb *b, const char *s) { sb_put(e, b, s, strlen(s)); }

static jv vstr(const char *p, size_t n) { return (jv){.t = V_STR, .s = {p, n}}; }
static jv vsb(sb *b) { return b->p ? vstr(b->p, b->n) : vstr("", 0); }
static jv vint(long long i) { return (jv){.t = V_INT, .i = i}; }
static jv vbool(int b) { return (jv){.t = V_BOOL, .i = !!b}; }
static jv vfloat(double f) { return (jv){.t = V_FLOAT, .f = f}; }
static const jv UNDEF = {.t = V_UNDEF};
static const jv NONE = {.t = V_NONE};

static jlist *new_list(E *e, size_t n) {
    jlist *l = ealloc(e, sizeof *l, 0);
    l->n = n, l->tuple = 0, l->gen = 0, l->err = NULL;
    l->v = ealloc(e, (n ? n : 1) * sizeof *l->v, 0);
    return l;
}
static jv vlist(jlist *l) { return (jv){.t = V_LIST, .l = l}; }

static int veq(const jv *a, const jv *b);

static void dict_set(E *e, jdict *d, jv k, jv v) {
    for (size_t i = 0; i < d->n; i++)
        if (veq(&d->k[i], &k)) {
            d->v[i] = v;
            return;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        jv *nk = ealloc(e, cap * sizeof *nk, 0), *nv = ealloc(e, cap * sizeof *nv, 0);
        if (d->n) memcpy(nk, d->k, d->n * sizeof *nk), memcpy(nv, d->v, d->n * sizeof *nv);
        d->k = nk, d->v = nv, d->cap = cap;
    }
    d->k[d->n] = k, d->v[d->n++] = v;
}
static jdict *new_dict(E *e) {
    jdict *d = ealloc(e, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    return d;
}
static const jv *dict_get(const jdict *d, const jv *k) {
    for (size_t i = 0; i < d->n; i++)
        if (veq(&d->k[i], k)) return &d->v[i];
    return NULL;
}
static const jv *dict_gets(const jdict *d, const char *s, size_t n) {
    jv k = vstr(s, n);
    return dict_get(d, &k);
}

static const char *type_name(const jv *v) {
    static const char *const names[] = {"undefined", "NoneType", "bool", "int", "float", "str", "list", "dict",
                                        "Namespace", "LoopContext", "Macro", "builtin_function"};
    if (v->t == V_LIST && v->l->tuple) return "tuple";
    return names[v->t];
}

/* UTF-8 code points */
static size_t cp_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}
static size_t cp_off(const char *s, size_t n, size_t cp) { /* byte offset of code point cp (n when past the end) */
    size_t c = 0, i = 0;
    for (; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80 && c++ == cp) return i;
    return n;
}

/* Python's repr of a float: the shortest digits that read back as f, positional when the decimal exponent is in
 * [-4, 16), else d.ddde+XX. */
static void fmt_float(char *buf, size_t cap, double f) {
    if (isnan(f) || isinf(f)) {
        snprintf(buf, cap, "%s", isnan(f) ? "nan" : f < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e is [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *p = e + neg;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    size_t k = 0;
    if (neg) buf[k++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            buf[k++] = '0', buf[k++] = '.';
            for (int i = -1; i > exp; i--) buf[k++] = '0';
            for (int i = 0; i < nd; i++) buf[k++] = digits[i];
        } else {
            for (int i = 0; i <= exp; i++) buf[k++] = i < nd ? digits[i] : '0';
            buf[k++] = '.';
            if (nd > exp + 1)
                for (int i = exp + 1; i < nd; i++) buf[k++] = digits[i];
            else
                buf[k++] = '0';
        }
        buf[k] = 0;
    } else {
        buf[k++] = digits[0];
        if (nd > 1) {
            buf[k++] = '.';
            for (int i = 1; i < nd; i++) buf[k++] = digits[i];
        }
        snprintf(buf + k, cap - k, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void put_repr(E *e, sb *b, const jv *v);

/* Python's str() */
static void put_str(E *e, sb *b, const jv *v) {
    char buf[64];
    switch (v->t) {
    case V_UNDEF: return;
    case V_NONE: sb_puts(e, b, "None"); return;
    case V_BOOL: sb_puts(e, b, v->i ? "True" : "False"); return;
    case V_INT: snprintf(buf, sizeof buf, "%lld", v->i); sb_puts(e, b, buf); return;
    case V_FLOAT: fmt_float(buf, sizeof buf, v->f); sb_puts(e, b, buf); return;
    case V_STR: sb_put(e, b, v->s.p, v->s.n); return;
    case V_LIST:
        if (v->l->gen) die(e, 0, "a generator (the result of map, select, items, reverse, ...) cannot be printed: "
                                 "apply |list first");
        sb_puts(e, b, v->l->tuple ? "(" : "[");
        for (size_t i = 0; i < v->l->n; i++) {
            if (i) sb_puts(e, b, ", ");
            put_repr(e, b, &v->l->v[i]);
        }
        sb_puts(e, b, v->l->tuple ? (v->l->n == 1 ? ",)" : ")") : "]");
        return;
    case V_DICT:
        sb_puts(e, b, "{");
        for (size_t i = 0; i < v->d->n; i++) {
            if (i) sb_puts(e, b, ", ");
            put_repr(e, b, &v->d->k[i]);
            sb_puts(e, b, ": ");
            put_repr(e, b, &v->d->v[i]);
        }
        sb_puts(e, b, "}");
        return;
    case V_NS:
        sb_puts(e, b, "<Namespace ");
        for (size_t i = 0; i < v->d->n; i++) {
            if (i) sb_puts(e, b, ", ");
            put_str(e, b, &v->d->k[i]);
            sb_puts(e, b, "=");
            put_repr(e, b, &v->d->v[i]);
        }
        sb_puts(e, b, ">");
        return;
    default: sb_puts(e, b, "<"), sb_puts(e, b, type_name(v)), sb_puts(e, b, ">"); return;
    }
}

/* Python's repr() */
static void put_repr(E *e, sb *b, const jv *v) {
    if (v->t == V_UNDEF) { /* jinja2's Undefined inside a container */
        sb_puts(e, b, "Undefined");
        return;
    }
    if (v->t != V_STR) {
        put_str(e, b, v);
        return;
    }
    int dq = memchr(v->s.p, '\'', v->s.n) && !memchr(v->s.p, '"', v->s.n);
    char q = dq ? '"' : '\'';
    sb_put(e, b, &q, 1);
    for (size_t i = 0; i < v->s.n; i++) {
        unsigned char c = (unsigned char)v->s.p[i];
        char esc[8];
        if (c == '\\') sb_puts(e, b, "\\\\");
        else if (c == (unsigned char)q) sb_puts(e, b, dq ? "\\\"" : "\\'");
        else if (c == '\n') sb_puts(e, b, "\\n");
        else if (c == '\r') sb_puts(e, b, "\\r");
        else if (c == '\t') sb_puts(e, b, "\\t");
        else if (c < 0x20 || c == 0x7f) snprintf(esc, sizeof esc, "\\x%02x", c), sb_puts(e, b, esc);
        else sb_put(e, b, (const char *)&c, 1);
    }
    sb_put(e, b, &q, 1);
}

static jv to_str(E *e, const jv *v) {
    if (v->t == V_STR) return *v;
    sb b = {0};
    put_str(e, &b, v);
    return vsb(&b);
}

/* json.dumps(v, ensure_ascii=False, indent=indent, separators=(isep, ksep)) */
static void put_json(E *e, sb *b, const jv *v, int indent, const char *isep, const char *ksep, int level, int line) {
    if (level > 512) die(e, line, "tojson: nested too deeply");
    char buf[64];
    switch (v->t) {
    case V_NONE: sb_puts(e, b, "null"); return;
    case V_BOOL: sb_puts(e, b, v->i ? "true" : "false"); return;
    case V_INT: case V_FLOAT:
        if (v->t == V_FLOAT && (isnan(v->f) || isinf(v->f))) {
            sb_puts(e, b, isnan(v->f) ? "NaN" : v->f < 0 ? "-Infinity" : "Infinity");
            return;
        }
        put_str(e, b, v);
        return;
    case V_STR:
        sb_puts(e, b, "\"");
        for (size_t i = 0; i < v->s.n; i++) {
            unsigned char c = (unsigned char)v->s.p[i];
            if (c == '"') sb_puts(e, b, "\\\"");
            else if (c == '\\') sb_puts(e, b, "\\\\");
            else if (c == '\n') sb_puts(e, b, "\\n");
            else if (c == '\r') sb_puts(e, b, "\\r");
            else if (c == '\t') sb_puts(e, b, "\\t");
            else if (c == '\b') sb_puts(e, b, "\\b");
            else if (c == '\f') sb_puts(e, b, "\\f");
            else if (c < 0x20) snprintf(buf, sizeof buf, "\\u%04x", c), sb_puts(e, b, buf);
            else sb_put(e, b, (const char *)&c, 1);
        }
        sb_puts(e, b, "\"");
        return;
    case V_LIST: case V_DICT: {
        int is_list = v->t == V_LIST;
        if (is_list && v->l->gen) die(e, line, "tojson: Object of type generator is not JSON serializable");
        size_t n = is_list ? v->l->n : v->d->n;
        sb_puts(e, b, is_list ? "[" : "{");
        if (!n) {
            sb_puts(e, b, is_list ? "]" : "}");
            return;
        }
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(e, b, isep);
            if (indent >= 0) {
                sb_puts(e, b, "\n");
                for (int k = 0; k < indent * (level + 1); k++) sb_puts(e, b, " ");
            }
            if (is_list) {
                put_json(e, b, &v->l->v[i], indent, isep, ksep, level + 1, line);
                continue;
            }
            const jv *k = &v->d->k[i];
            if (k->t == V_STR) put_json(e, b, k, indent, isep, ksep, level + 1, line);
            else if (k->t == V_INT || k->t == V_FLOAT || k->t == V_BOOL || k->t == V_NONE) {
                sb_puts(e, b, "\"");
                put_json(e, b, k, indent, isep, ksep, level + 1, line);
                sb_puts(e, b, "\"");
            } else die(e, line, "tojson: keys must be str, int, float, bool or None, not %s", type_name(k));
            sb_puts(e, b, ksep);
            put_json(e, b, &v->d->v[i], indent, isep, ksep, level + 1, line);
        }
        if (indent >= 0) {
            sb_puts(e, b, "\n");
            for (int k = 0; k < indent * level; k++) sb_puts(e, b, " ");
        }
        sb_puts(e, b, is_list ? "]" : "}");
        return;
    }
    default: die(e, line, "tojson: Object of type %s is not JSON serializable", type_name(v));
    }
}

/* ---- semantics ------------------------------------------------------------------------------------------------ */
static int truthy(const jv *v) {
    switch (v->t) {
    case V_UNDEF: case V_NONE: return 0;
    case V_BOOL: case V_INT: return v->i != 0;
    case V_FLOAT: return v->f != 0;
    case V_STR: return v->s.n != 0;
    case V_LIST: return v->l->gen || v->l->n != 0;
    case V_DICT: return v->d->n != 0;
    default: return 1;
    }
}
static int is_num(const jv *v) { return v->t == V_INT || v->t == V_BOOL || v->t == V_FLOAT; }
static double num(const jv *v) { return v->t == V_FLOAT ? v->f : (double)v->i; }

static int veq(const jv *a, const jv *b) {
    if (is_num(a) && is_num(b)) {
        if (a->t != V_FLOAT && b->t != V_FLOAT) return a->i == b->i;
        return num(a) == num(b);
    }
    if (a->t != b->t) return 0;
    switch (a->t) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR: return a->s.n == b->s.n && !memcmp(a->s.p, b->s.p, a->s.n);
    case V_LIST:
        if (a->l->gen || b->l->gen) return a->l == b->l;
        if (a->l->tuple != b->l->tuple) return 0; /* [1] != (1,) */
        if (a->l->n != b->l->n) return 0;
        for (size_t i = 0; i < a->l->n; i++)
            if (!veq(&a->l->v[i], &b->l->v[i])) return 0;
        return 1;
    case V_DICT:
        if (a->d->n != b->d->n) return 0;
        for (size_t i = 0; i < a->d->n; i++) {
            const jv *o = dict_get(b->d, &a->d->k[i]);
            if (!o || !veq(&a->d->v[i], o)) return 0;
        }
        return 1;
    case V_NS: return a->d == b->d;
    case V_LOOP: return a->lp == b->lp;
    case V_MACRO: return a->m == b->m;
    default: return a->i == b->i;
    }
}

/* <0, 0, >0 as Python orders a and b; a TypeError otherwise */
static int vcmp(E *e, const jv *a, const jv *b, int line) {
    if (is_num(a) && is_num(b)) {
        if (a->t != V_FLOAT && b->t != V_FLOAT) return (a->i > b->i) - (a->i < b->i);
        return (num(a) > num(b)) - (num(a) < num(b));
    }
    if (a->t == V_STR && b->t == V_STR) {
        size_t n = a->s.n < b->s.n ? a->s.n : b->s.n;
        int c = memcmp(a->s.p, b->s.p, n); /* UTF-8 byte order is code point order */
        return c ? c : (a->s.n > b->s.n) - (a->s.n < b->s.n);
    }
    if (a->t == V_LIST && b->t == V_LIST && a->l->tuple == b->l->tuple && !a->l->gen && !b->l->gen) {
        for (size_t i = 0; i < a->l->n && i < b->l->n; i++) {
            if (veq(&a->l->v[i], &b->l->v[i])) continue;
            return vcmp(e, &a->l->v[i], &b->l->v[i], line);
        }
        return (a->l->n > b->l->n) - (a->l->n < b->l->n);
    }
    die(e, line, "'<' not supported between instances of '%s' and '%s'", type_name(a), type_name(b));
}

static int contains(E *e, const jv *hay, const jv *needle, int line) {
    charge(e, hay->t == V_STR ? hay->s.n / 4 : hay->t == V_LIST ? hay->l->n : hay->t == V_DICT ? hay->d->n : 0, line);
    switch (hay->t) {
    case V_STR:
        if (needle->t != V_STR)
            die(e, line, "'in <string>' requires string as left operand, not %s", type_name(needle));
        if (!needle->s.n) return 1;
        for (size_t i = 0; i + needle->s.n <= hay->s.n; i++)
            if (!memcmp(hay->s.p + i, needle->s.p, needle->s.n)) return 1;
        return 0;
    case V_LIST:
        for (size_t i = 0; i < hay->l->n; i++)
            if (veq(&hay->l->v[i], needle)) return 1;
        return 0;
    case V_DICT: case V_NS:
        if (needle->t == V_LIST || needle->t == V_DICT || needle->t == V_NS)
            die(e, line, "unhashable type: '%s'", type_name(needle));
        return dict_get(hay->d, needle) != NULL;
    case V_UNDEF: return 0; /* jinja2's Undefined iterates as empty */
    default: die(e, line, "argument of type '%s' is not iterable", type_name(hay));
    }
}

static _Noreturn void undefined(E *e, const jv *v, int line) {
    if (v->s.p) die(e, line, "'%.*s' is undefined", (int)(v->s.n > 80 ? 80 : v->s.n), v->s.p);
    die(e, line, "an undefined value was used");
}

/* A list of the items for-loops, join, length etc. see in v. */
static jlist *items_of(E *e, const jv *v, int line) {
    switch (v->t) {
    case V_LIST:
        if (v->l->err) die(e, line, "%s", v->l->err);
        return v->l;
    case V_UNDEF: return new_list(e, 0);
    case V_DICT: {
        jlist *l = new_list(e, v->d->n);
        memcpy(l->v, v->d->k, v->d->n * sizeof *l->v);
        return l;
    }
    case V_STR: {
        jlist *l = new_list(e, cp_len(v->s.p, v->s.n));
        size_t k = 0;
        for (size_t i = 0; i < v->s.n;) {
            size_t j = i + 1;
            while (j < v->s.n && ((unsigned char)v->s.p[j] & 0xC0) == 0x80) j++;
            l->v[k++] = vstr(v->s.p + i, j - i);
            i = j;
        }
        return l;
    }
    default: die(e, line, "'%s' object is not iterable", type_name(v));
    }
}

static long long vlen(E *e, const jv *v, int line) {
    switch (v->t) {
    case V_STR: charge(e, v->s.n / 4, line); return (long long)cp_len(v->s.p, v->s.n);
    case V_LIST:
        if (v->l->gen) die(e, line, "object of type 'generator' has no len()");
        return (long long)v->l->n;
    case V_DICT: case V_NS: return (long long)v->d->n;
    case V_UNDEF: return 0;
    default: die(e, line, "object of type '%s' has no len()", type_name(v));
    }
}

static jv getattr_(E *e, const jv *o, const char *name, size_t n, int line) {
    switch (o->t) {
    case V_DICT: case V_NS: {
        charge(e, o->d->n, line);
        const jv *v = dict_gets(o->d, name, n);
        if (v) return *v;
        break;
    }
    case V_LOOP: {
        const jloop *l = o->lp;
#define IS(s) (n == strlen(s) && !memcmp(name, s, n))
        if (IS("index0")) return vint(l->index0);
        if (IS("index")) return vint(l->index0 + 1);
        if (IS("revindex")) return vint(l->length - l->index0);
        if (IS("revindex0")) return vint(l->length - l->index0 - 1);
        if (IS("first")) return vbool(l->index0 == 0);
        if (IS("last")) return vbool(l->index0 == l->length - 1);
        if (IS("length")) return vint(l->length);
        if (IS("previtem")) return l->prev;
        if (IS("nextitem")) return l->next;
        if (IS("depth")) return vint(1);
        if (IS("depth0")) return vint(0);
        break;
    }
    case V_UNDEF: undefined(e, o, line);
    default: break;
    }
    jv u = UNDEF;
    u.s.p = name, u.s.n = n;
    return u;
}

static jv getitem(E *e, const jv *o, const jv *k, int line) {
    if (o->t == V_UNDEF) undefined(e, o, line);
    if (o->t == V_LIST && o->l->gen) return UNDEF; /* generators are not subscriptable */
    if ((o->t == V_LIST || o->t == V_STR) && (k->t == V_INT || k->t == V_BOOL)) {
        long long n = vlen(e, o, line), i = k->i < 0 ? k->i + n : k->i;
        if (i < 0 || i >= n) return UNDEF;
        if (o->t == V_LIST) return o->l->v[i];
        size_t a = cp_off(o->s.p, o->s.n, (size_t)i), b = cp_off(o->s.p, o->s.n, (size_t)i + 1);
        return vstr(o->s.p + a, b - a);
    }
    if (o->t == V_DICT) {
        charge(e, o->d->n, line);
        const jv *v = dict_get(o->d, k);
        return v ? *v : UNDEF;
    }
    if ((o->t == V_NS || o->t == V_LOOP) && k->t == V_STR) return getattr_(e, o, k->s.p, k->s.n, line);
    return UNDEF;
}

/* Python's slice of a list or a string */
static jv slice(E *e, const jv *o, const jv *start, const jv *stop, const jv *stp, int line) {
    if ((o->t != V_LIST && o->t != V_STR) || (o->t == V_LIST && o->l->gen))
        die(e, line, "'%s' object is not subscriptable", o->t == V_LIST ? "generator" : type_name(o));
    long long n = vlen(e, o, line), st = 1;
    for (int k = 0; k < 3; k++) {
        const jv *x = k == 0 ? start : k == 1 ? stop : stp;
        if (x->t != V_NONE && x->t != V_INT && x->t != V_BOOL)
            die(e, line, "slice indices must be integers or None, not %s", type_name(x));
    }
    if (stp->t != V_NONE) st = stp->i;
    if (st == 0) die(e, line, "slice step cannot be zero");
    if (st < -n - 1 || st > n + 1) st = st < 0 ? -n - 1 : n + 1; /* as far as one step can go: the same slice */
    long long lo, hi;
    if (st > 0) {
        lo = start->t == V_NONE ? 0 : start->i < 0 ? start->i + n : start->i;
        hi = stop->t == V_NONE ? n : stop->i < 0 ? stop->i + n : stop->i;
        lo = lo < 0 ? 0 : lo > n ? n : lo;
        hi = hi < 0 ? 0 : hi > n ? n : hi;
    } else {
        lo = start->t == V_NONE ? n - 1 : start->i < 0 ? start->i + n : start->i;
        hi = stop->t == V_NONE ? -1 : stop->i < 0 ? stop->i + n : stop->i;
        lo = lo < -1 ? -1 : lo > n - 1 ? n - 1 : lo;
        hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
    }
    long long count = st > 0 ? (hi > lo ? (hi - lo + st - 1) / st : 0) : (lo > hi ? (lo - hi - st - 1) / -st : 0);
    jlist *items = o->t == V_LIST ? o->l : items_of(e, o, line);
    if (o->t == V_STR) {
        sb b = {0};
        for (long long i = 0; i < count; i++) sb_put(e, &b, items->v[lo + i * st].s.p, items->v[lo + i * st].s.n);
        return vsb(&b);
    }
    jlist *l = new_list(e, (size_t)count);
    for (long long i = 0; i < count; i++) l->v[i] = items->v[lo + i * st];
    return vlist(l);
}

static jv arith(E *e, const char *op, const jv *a, const jv *b, int line) {
    if (a->t == V_UNDEF) undefined(e, a, line);
    if (b->t == V_UNDEF) undefined(e, b, line);
    char o = op[0];
    if (o == '+' && a->t == V_STR && b->t == V_STR) {
        sb s = {0};
        sb_put(e, &s, a->s.p, a->s.n), sb_put(e, &s, b->s.p, b->s.n);
        return vsb(&s);
    }
    if (o == '+' && a->t == V_LIST && b->t == V_LIST) {
        if (a->l->tuple != b->l->tuple || a->l->gen || b->l->gen)
            die(e, line, "can only concatenate %s (not \"%s\") to %s", type_name(a), type_name(b), type_name(a));
        jlist *l = new_list(e, a->l->n + b->l->n);
        l->tuple = a->l->tuple;
        if (a->l->n) memcpy(l->v, a->l->v, a->l->n * sizeof *l->v);
        if (b->l->n) memcpy(l->v + a->l->n, b->l->v, b->l->n * sizeof *l->v);
        return vlist(l);
    }
    if (o == '*' && !op[1] && (a->t == V_STR || a->t == V_LIST || b->t == V_STR || b->t == V_LIST)) {
        const jv *seq = a->t == V_STR || a->t == V_LIST ? a : b, *times = seq == a ? b : a;
        if (times->t != V_INT && times->t != V_BOOL)
            die(e, line, "can't multiply sequence by non-int of type '%s'", type_name(times));
        long long t = times->i < 0 ? 0 : times->i;
        size_t unit = seq->t == V_STR ? seq->s.n : seq->l->n * sizeof(jv);
        if (!unit || !t) { /* nothing to repeat: '' * 10**18 is '' at once */
            if (seq->t == V_STR) return vstr("", 0);
            jlist *l = new_list(e, 0);
            l->tuple = seq->l->tuple;
            return vlist(l);
        }
        if (unit && (unsigned long long)t > LMF_JINJA_MAX_OUTPUT / unit)
            die(e, line, "a repeated sequence would exceed %u MiB", LMF_JINJA_MAX_OUTPUT >> 20);
        if (seq->t == V_STR) {
            sb s = {0};
            for (long long i = 0; i < t; i++) sb_put(e, &s, seq->s.p, seq->s.n);
            return vsb(&s);
        }
        if (seq->l->gen) die(e, line, "unsupported operand type(s) for *: 'generator' and 'int'");
        jlist *l = new_list(e, seq->l->n * (size_t)t);
        l->tuple = seq->l->tuple;
        for (long long i = 0; i < t; i++) memcpy(l->v + i * (long long)seq->l->n, seq->l->v, seq->l->n * sizeof(jv));
        return vlist(l);
    }
    if (!is_num(a) || !is_num(b))
        die(e, line, "unsupported operand type(s) for %s: '%s' and '%s'", op, type_name(a), type_name(b));
    int ints = a->t != V_FLOAT && b->t != V_FLOAT;
    if (!strcmp(op, "/")) {
        if (num(b) == 0) die(e, line, "division by zero");
        return vfloat(num(a) / num(b));
    }
    if (!strcmp(op, "**")) {
        if (ints && b->i >= 0) { /* by squaring: 64 steps at most */
            long long r = 1, base = a->i, x = b->i;
            while (x) {
                if ((x & 1) && __builtin_mul_overflow(r, base, &r)) die(e, line, "integer overflow in **");
                x >>= 1;
                if (x && __builtin_mul_overflow(base, base, &base)) die(e, line, "integer overflow in **");
            }
            return vint(r);
        }
        return vfloat(pow(num(a), num(b)));
    }
    if (ints) {
        long long x = a->i, y = b->i, r;
        switch (o) {
        case '+': if (__builtin_add_overflow(x, y, &r)) goto ovf; return vint(r);
        case '-': if (__builtin_sub_overflow(x, y, &r)) goto ovf; return vint(r);
        case '*': if (__builtin_mul_overflow(x, y, &r)) goto ovf; return vint(r);
        case '/': /* "//" */
        case '%':
            if (!y) die(e, line, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) goto ovf;
            {
                long long q = x / y, m = x % y;
                if (m && ((m < 0) != (y < 0))) q--, m += y; /* Python floors */
                return vint(o == '%' ? m : q);
            }
        }
    ovf:
        die(e, line, "integer overflow in %s", op);
    }
    double x = num(a), y = num(b);
    switch (o) {
    case '+': return vfloat(x + y);
    case '-': return vfloat(x - y);
    case '*': return vfloat(x * y);
    default:
        if (y == 0) die(e, line, "float division by zero");
        if (o == '%') {
            double m = fmod(x, y);
            if (m && ((m < 0) != (y < 0))) m += y;
            return vfloat(m);
        }
        return vfloat(floor(x / y));
    }
}

/* ---- evaluation ----------------------------------------------------------------------------------------------- */
static jv eval(E *e, const lmf_jnode *n, frame *f);
static void exec(E *e, const lmf_jnode *const *list, int count, frame *f, sb *out);

static frame *new_frame(E *e, frame *parent) {
    frame *f = ealloc(e, sizeof *f, 0);
    memset(f, 0, sizeof *f);
    f->parent = parent;
    return f;
}
static void frame_set(E *e, frame *f, const char *name, jv v) {
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name)) {
            f->vals[i] = v;
            return;
        }
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 8;
        const char **nn = ealloc(e, cap * sizeof *nn, 0);
        jv *nv = ealloc(e, cap * sizeof *nv, 0);
        if (f->n) memcpy(nn, f->names, f->n * sizeof *nn), memcpy(nv, f->vals, f->n * sizeof *nv);
        f->names = nn, f->vals = nv, f->cap = cap;
    }
    f->names[f->n] = name, f->vals[f->n++] = v;
}
static jv lookup(const frame *f, const char *name, size_t n) {
    for (; f; f = f->parent)
        for (size_t i = f->n; i-- > 0;)
            if (!strcmp(f->names[i], name)) return f->vals[i];
    jv u = UNDEF;
    u.s.p = name, u.s.n = n;
    return u;
}

typedef struct {
    jv *pos;
    int n_pos;
    const char **kw;
    jv *kwv;
    int n_kw;
} args;

static args eval_args(E *e, const lmf_jnode *n, frame *f, int skip) {
    args a = {0};
    a.n_pos = n->n - skip;
    a.pos = ealloc(e, (size_t)(a.n_pos > 0 ? a.n_pos : 1) * sizeof *a.pos, n->line);
    for (int i = 0; i < a.n_pos; i++) a.pos[i] = eval(e, n->list[i + skip], f);
    a.n_kw = n->n2;
    a.kw = n->kw;
    a.kwv = ealloc(e, (size_t)(a.n_kw ? a.n_kw : 1) * sizeof *a.kwv, n->line);
    for (int i = 0; i < a.n_kw; i++) a.kwv[i] = eval(e, n->list2[i], f);
    return a;
}
/* The argument named name, or at position pos; def when absent. */
static jv arg(const args *a, int pos, const char *name, jv def) {
    for (int i = 0; i < a->n_kw; i++)
        if (name && !strcmp(a->kw[i], name)) return a->kwv[i];
    return pos >= 0 && pos < a->n_pos ? a->pos[pos] : def;
}
static void max_args(E *e, const args *a, int n, const char *what, int line) {
    if (a->n_pos > n) die(e, line, "%s takes at most %d argument%s (%d given)", what, n, n == 1 ? "" : "s", a->n_pos);
}
static jv want_str(E *e, jv v, const char *what, int line) {
    if (v.t != V_STR) die(e, line, "%s must be a string, not %s", what, type_name(&v));
    return v;
}

static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

/* str.strip / lstrip / rstrip: which 1 left, 2 right, 3 both; chars NONE: whitespace */
static jv strip(E *e, jv s, jv chars, int which, int line) {
    if (chars.t != V_NONE && chars.t != V_UNDEF) want_str(e, chars, "strip's argument", line);
    size_t a = 0, b = s.s.n;
#define STRIPS(c) (chars.t == V_STR ? memchr(chars.s.p, (c), chars.s.n) != NULL : is_space(c))
    if (which & 1)
        while (a < b && STRIPS(s.s.p[a])) a++;
    if (which & 2)
        while (b > a && STRIPS(s.s.p[b - 1])) b--;
    return vstr(s.s.p + a, b - a);
}

static const char *memmem_(const char *h, size_t hn, const char *n, size_t nn) {
    if (!nn) return h;
    for (size_t i = 0; i + nn <= hn; i++)
        if (!memcmp(h + i, n, nn)) return h + i;
    return NULL;
}

static jv replace(E *e, jv s, jv old, jv new_, long long count) {
    if (!old.s.n) { /* Python inserts new between every code point (and at both ends) */
        sb b = {0};
        jlist *cs = items_of(e, &s, 0);
        for (size_t i = 0; i <= cs->n; i++) {
            if (count >= 0 && (long long)i >= count) {
                for (; i < cs->n; i++) sb_put(e, &b, cs->v[i].s.p, cs->v[i].s.n);
                break;
            }
            sb_put(e, &b, new_.s.p, new_.s.n);
            if (i < cs->n) sb_put(e, &b, cs->v[i].s.p, cs->v[i].s.n);
        }
        return vsb(&b);
    }
    sb b = {0};
    size_t i = 0;
    long long done = 0;
    const char *hit;
    while ((count < 0 || done < count) && (hit = memmem_(s.s.p + i, s.s.n - i, old.s.p, old.s.n))) {
        sb_put(e, &b, s.s.p + i, (size_t)(hit - (s.s.p + i)));
        sb_put(e, &b, new_.s.p, new_.s.n);
        i = (size_t)(hit - s.s.p) + old.s.n;
        done++;
    }
    sb_put(e, &b, s.s.p + i, s.s.n - i);
    return vsb(&b);
}

static jv split(E *e, jv s, jv sep, long long maxsplit, int line) {
    jlist *l = new_list(e, s.s.n + 1);
    l->n = 0;
    if (sep.t == V_NONE || sep.t == V_UNDEF) { /* runs of whitespace, none at the ends */
        size_t i = 0;
        while (i < s.s.n) {
            while (i < s.s.n && is_space(s.s.p[i])) i++;
            if (i >= s.s.n) break;
            if (maxsplit >= 0 && (long long)l->n >= maxsplit) {
                size_t end = s.s.n;
                while (end > i && is_space(s.s.p[end - 1])) end--;
                l->v[l->n++] = vstr(s.s.p + i, end - i);
                break;
            }
            size_t j = i;
            while (j < s.s.n && !is_space(s.s.p[j])) j++;
            l->v[l->n++] = vstr(s.s.p + i, j - i);
            i = j;
        }
        return vlist(l);
    }
    want_str(e, sep, "split's separator", line);
    if (!sep.s.n) die(e, line, "empty separator");
    size_t i = 0;
    const char *hit;
    while ((maxsplit < 0 || (long long)l->n < maxsplit) && (hit = memmem_(s.s.p + i, s.s.n - i, sep.s.p, sep.s.n))) {
        l->v[l->n++] = vstr(s.s.p + i, (size_t)(hit - (s.s.p + i)));
        i = (size_t)(hit - s.s.p) + sep.s.n;
    }
    l->v[l->n++] = vstr(s.s.p + i, s.s.n - i);
    return vlist(l);
}

static int is_cased(utf8proc_int32_t c) {
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

/* 0 lower, 1 upper, 2 capitalize, 3 title: Python's, code point by code point (utf8proc's simple case mappings;
 * Python's few one-to-many ones, 'ß'.upper() == 'SS', are not made) */
static jv change_case(E *e, jv s, int mode) {
    sb b = {0};
    int prev_cased = 0;
    for (size_t i = 0; i < s.s.n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s.s.p + i, (utf8proc_ssize_t)(s.s.n - i), &c);
        if (k <= 0) { /* not UTF-8: the byte as it is */
            sb_put(e, &b, s.s.p + i, 1);
            i++;
            continue;
        }
        int up = mode == 1 || (mode == 2 && i == 0) || (mode == 3 && !prev_cased);
        prev_cased = is_cased(c);
        utf8proc_int32_t d = up ? utf8proc_toupper(c) : utf8proc_tolower(c);
        utf8proc_uint8_t enc[4];
        sb_put(e, &b, (const char *)enc, (size_t)utf8proc_encode_char(d, enc));
        i += (size_t)k;
    }
    return vsb(&b);
}

static int starts_or_ends(E *e, jv s, jv x, int ends, int line) {
    if (x.t == V_LIST) {
        for (size_t i = 0; i < x.l->n; i++)
            if (starts_or_ends(e, s, x.l->v[i], ends, line)) return 1;
        return 0;
    }
    want_str(e, x, ends ? "endswith's argument" : "startswith's argument", line);
    if (x.s.n > s.s.n) return 0;
    return !memcmp(s.s.p + (ends ? s.s.n - x.s.n : 0), x.s.p, x.s.n);
}

/* obj.name(args) for str, dict and list methods; found = 0 when name is not one. */
static jv method(E *e, jv o, const char *name, const args *a, int line, int *found) {
    *found = 1;
#define M(s) (!strcmp(name, s))
    if (o.t == V_STR) {
        if (M("strip") || M("lstrip") || M("rstrip")) {
            max_args(e, a, 1, name, line);
            return strip(e, o, arg(a, 0, NULL, NONE), M("strip") ? 3 : M("lstrip") ? 1 : 2, line);
        }
        if (M("startswith") || M("endswith")) {
            if (a->n_pos != 1) die(e, line, "%s takes one argument here", name);
            return vbool(starts_or_ends(e, o, a->pos[0], M("endswith"), line));
        }
        if (M("split")) {
            jv ms = arg(a, 1, "maxsplit", vint(-1));
            return split(e, o, arg(a, 0, "sep", NONE), ms.t == V_INT ? ms.i : -1, line);
        }
        if (M("replace")) {
            jv c = arg(a, 2, "count", vint(-1));
            return replace(e, o, want_str(e, arg(a, 0, NULL, UNDEF), "replace's old", line),
                           want_str(e, arg(a, 1, NULL, UNDEF), "replace's new", line), c.t == V_INT ? c.i : -1);
        }
        if (M("upper") || M("lower") || M("capitalize") || M("title"))
            return change_case(e, o, M("lower") ? 0 : M("upper") ? 1 : M("capitalize") ? 2 : 3);
        if (M("find") || M("count")) {
            jv x = want_str(e, arg(a, 0, NULL, UNDEF), name, line);
            if (M("find")) {
                const char *h = memmem_(o.s.p, o.s.n, x.s.p, x.s.n);
                return vint(h ? (long long)cp_len(o.s.p, (size_t)(h - o.s.p)) : -1);
            }
            long long c = 0;
            if (!x.s.n) return vint((long long)cp_len(o.s.p, o.s.n) + 1);
            for (size_t i = 0; i + x.s.n <= o.s.n;)
                if (!memcmp(o.s.p + i, x.s.p, x.s.n)) c++, i += x.s.n;
                else i++;
            return vint(c);
        }
        if (M("join")) {
            if (a->n_pos != 1) die(e, line, "join takes one argument (%d given)", a->n_pos);
            jlist *l = items_of(e, &a->pos[0], line);
            sb b = {0};
            for (size_t i = 0; i < l->n; i++) {
                if (i) sb_put(e, &b, o.s.p, o.s.n);
                sb_put(e, &b, want_str(e, l->v[i], "join's item", line).s.p, l->v[i].s.n);
            }
            return vsb(&b);
        }
    } else if (o.t == V_LIST && (M("count") || M("index"))) {
        if (a->n_pos != 1) die(e, line, "%s takes one argument", name);
        long long c = 0;
        for (size_t i = 0; i < o.l->n; i++)
            if (veq(&o.l->v[i], &a->pos[0])) {
                if (M("index")) return vint((long long)i);
                c++;
            }
        if (M("index")) die(e, line, "index: the value is not in the list");
        return vint(c);
    } else if (o.t == V_DICT) {
        if (M("items") || M("keys") || M("values")) {
            jlist *l = new_list(e, o.d->n);
            for (size_t i = 0; i < o.d->n; i++) {
                if (M("keys")) l->v[i] = o.d->k[i];
                else if (M("values")) l->v[i] = o.d->v[i];
                else {
                    jlist *t = new_list(e, 2);
                    t->tuple = 1, t->v[0] = o.d->k[i], t->v[1] = o.d->v[i];
                    l->v[i] = vlist(t);
                }
            }
            return vlist(l);
        }
        if (M("get")) {
            if (a->n_pos < 1 || a->n_pos > 2) die(e, line, "get takes 1 or 2 arguments (%d given)", a->n_pos);
            charge(e, o.d->n, line);
            const jv *v = dict_get(o.d, &a->pos[0]);
            return v ? *v : arg(a, 1, NULL, NONE);
        }
    }
    *found = 0;
    return UNDEF;
}

static jv call_macro(E *e, const lmf_jnode *m, frame *scope, const args *a, int line);

static jv builtin(E *e, int which, const args *a, int line) {
    switch (which) {
    case B_RANGE: {
        long long v[3] = {0, 0, 1};
        if (a->n_pos < 1 || a->n_pos > 3 || a->n_kw) die(e, line, "range takes 1 to 3 integer arguments");
        for (int i = 0; i < a->n_pos; i++) {
            if (a->pos[i].t != V_INT && a->pos[i].t != V_BOOL) die(e, line, "range's arguments must be integers");
            v[a->n_pos == 1 ? 1 : i] = a->pos[i].i;
        }
        if (!v[2]) die(e, line, "range() arg 3 must not be zero");
        if (((double)v[1] - (double)v[0]) / (double)v[2] > 100000)
            die(e, line, "range of more than 100000 items (the most in a chat template)");
        long long count = v[2] > 0 ? (v[1] > v[0] ? (v[1] - v[0] - 1) / v[2] + 1 : 0)
                                   : (v[0] > v[1] ? (v[0] - v[1] - 1) / -v[2] + 1 : 0);
        if (count > 100000) die(e, line, "range of %lld items (at most 100000 in a chat template)", count);
        jlist *l = new_list(e, (size_t)count);
        for (long long i = 0; i < count; i++) l->v[i] = vint(v[0] + i * v[2]);
        return vlist(l);
    }
    case B_NAMESPACE: case B_DICT: {
        jv r = {.t = which == B_NAMESPACE ? V_NS : V_DICT, .d = new_dict(e)};
        for (int i = 0; i < a->n_pos; i++) {
            if (a->pos[i].t != V_DICT)
                die(e, line, "%s() takes a mapping and keyword arguments", which == B_DICT ? "dict" : "namespace");
            for (size_t k = 0; k < a->pos[i].d->n; k++) dict_set(e, r.d, a->pos[i].d->k[k], a->pos[i].d->v[k]);
        }
        for (int i = 0; i < a->n_kw; i++) {
            if (which == B_NAMESPACE && a->kw[i][0] == '_')
                die(e, line, "namespace attributes may not start with '_' ('%s')", a->kw[i]);
            dict_set(e, r.d, vstr(a->kw[i], strlen(a->kw[i])), a->kwv[i]);
        }
        return r;
    }
    case B_RAISE: {
        jv m = a->n_pos ? to_str(e, &a->pos[0]) : vstr("", 0);
        snprintf(e->err, sizeof e->err, "chat template line %d: the template raised: %.*s", line,
                 (int)(m.s.n > 400 ? 400 : m.s.n), m.s.p);
        longjmp(e->jb, 1);
    }
    case B_STRFTIME: {
        jv fmt = want_str(e, arg(a, 0, "format", UNDEF), "strftime_now's format", line);
        struct tm tm;
        localtime_r(&e->now, &tm);
        char *out = ealloc(e, 32 * fmt.s.n + 256, line);
        char *cfmt = ealloc(e, fmt.s.n + 1, line);
        memcpy(cfmt, fmt.s.p, fmt.s.n + 1);
        size_t n = fmt.s.n ? strftime(out, 32 * fmt.s.n + 256, cfmt, &tm) : 0;
        return vstr(out, n);
    }
    }
    die(e, line, "unknown builtin");
}

static jv call_value(E *e, jv callee, const args *a, int line) {
    if (callee.t == V_MACRO) return call_macro(e, callee.m->node, callee.m->scope, a, line);
    if (callee.t == V_BUILTIN) return builtin(e, (int)callee.i, a, line);
    if (callee.t == V_UNDEF) undefined(e, &callee, line);
    die(e, line, "'%s' object is not callable", type_name(&callee));
}

static int test(E *e, const char *name, jv v, const args *a, int line);

static jv filter(E *e, const char *name, jv v, const args *a, frame *f, int line);

/* select / reject / selectattr / rejectattr */
static jv select_(E *e, jv v, const args *a, int attr, int keep, frame *f, int line) {
    jlist *in = items_of(e, &v, line), *out = new_list(e, in->n);
    out->n = 0;
    int skip = attr ? 1 : 0;
    jv key = attr ? want_str(e, arg(a, 0, NULL, UNDEF), "selectattr's attribute", line) : UNDEF;
    args rest = *a;
    rest.pos += skip + 1, rest.n_pos -= skip + 1;
    if (rest.n_pos < 0) rest.n_pos = 0;
    const char *tname = a->n_pos > skip ? want_str(e, a->pos[skip], "the test name", line).s.p : NULL;
    for (size_t i = 0; i < in->n; i++) {
        step(e, line);
        jv x = attr ? getattr_(e, &in->v[i], key.s.p, key.s.n, line) : in->v[i];
        int ok = tname ? test(e, tname, x, &rest, line) : truthy(&x);
        if (ok == keep) out->v[out->n++] = in->v[i];
    }
    (void)f;
    out->gen = 1;
    return vlist(out);
}

static int test(E *e, const char *name, jv v, const args *a, int line) {
    jv x = a->n_pos ? a->pos[0] : UNDEF;
#define T(s) (!strcmp(name, s))
    if (T("defined")) return v.t != V_UNDEF;
    if (T("undefined")) return v.t == V_UNDEF;
    if (T("none")) return v.t == V_NONE;
    if (T("boolean")) return v.t == V_BOOL;
    if (T("false")) return v.t == V_BOOL && !v.i;
    if (T("true")) return v.t == V_BOOL && v.i;
    if (T("integer")) return v.t == V_INT;
    if (T("float")) return v.t == V_FLOAT;
    if (T("number")) return is_num(&v);
    if (T("string")) return v.t == V_STR;
    if (T("mapping")) return v.t == V_DICT;
    if (T("iterable")) return v.t == V_STR || v.t == V_LIST || v.t == V_DICT || v.t == V_UNDEF;
    if (T("sequence")) return v.t == V_STR || v.t == V_LIST || v.t == V_DICT;
    if (T("callable")) return v.t == V_MACRO || v.t == V_BUILTIN;
    if (T("odd") || T("even")) {
        if (!is_num(&v)) die(e, line, "the %s test needs a number, not %s", name, type_name(&v));
        double m = v.t == V_FLOAT ? fmod(v.f, 2) : (double)((v.i % 2 + 2) % 2);
        if (m < 0) m += 2;
        return m == (T("odd") ? 1 : 0);
    }
    if (T("divisibleby")) {
        if (!is_num(&v) || !is_num(&x) || num(&x) == 0) die(e, line, "divisibleby needs numbers, the divisor not 0");
        return fmod(num(&v), num(&x)) == 0;
    }
    if (T("eq") || T("equalto") || T("==")) return veq(&v, &x);
    if (T("ne") || T("!=")) return !veq(&v, &x);
    if (T("lt") || T("lessthan") || T("<")) return vcmp(e, &v, &x, line) < 0;
    if (T("le") || T("<=")) return vcmp(e, &v, &x, line) <= 0;
    if (T("gt") || T("greaterthan") || T(">")) return vcmp(e, &v, &x, line) > 0;
    if (T("ge") || T(">=")) return vcmp(e, &v, &x, line) >= 0;
    if (T("in")) return contains(e, &x, &v, line);
    if (T("sameas")) /* Python's `is`: the same singleton, small int or object */
        return v.t == x.t &&
               (v.t == V_NONE || v.t == V_UNDEF || ((v.t == V_BOOL || v.t == V_INT) && v.i == x.i) || veq(&v, &x));
    if (T("lower") || T("upper")) {
        v = to_str(e, &v); /* jinja2: str(value).islower(): a cased character, none of the other case */
        int cased = 0;
        for (size_t i = 0; i < v.s.n;) {
            utf8proc_int32_t c;
            utf8proc_ssize_t k =
                utf8proc_iterate((const utf8proc_uint8_t *)v.s.p + i, (utf8proc_ssize_t)(v.s.n - i), &c);
            if (k <= 0) {
                i++;
                continue;
            }
            i += (size_t)k;
            utf8proc_category_t cat = utf8proc_category(c);
            if (cat == UTF8PROC_CATEGORY_LT || (T("lower") ? cat == UTF8PROC_CATEGORY_LU : cat == UTF8PROC_CATEGORY_LL))
                return 0;
            cased |= is_cased(c);
        }
        return cased;
    }
    die(e, line, "no test named '%s'", name);
}

static jv filter(E *e, const char *name, jv v, const args *a, frame *f, int line) {
#define F(s) (!strcmp(name, s))
    if (F("trim")) return strip(e, to_str(e, &v), arg(a, 0, "chars", NONE), 3, line);
    if (F("length") || F("count")) return vint(vlen(e, &v, line));
    if (F("string")) return to_str(e, &v);
    if (F("safe")) return v;
    if (F("upper") || F("lower") || F("capitalize") || F("title")) {
        jv s = to_str(e, &v);
        return change_case(e, s, F("lower") ? 0 : F("upper") ? 1 : F("capitalize") ? 2 : 3);
    }
    if (F("tojson")) {
        jv ind = arg(a, 1, "indent", NONE), seps = arg(a, 2, "separators", NONE);
        int indent = ind.t == V_INT ? (int)(ind.i < 0 ? 0 : ind.i > 64 ? 64 : ind.i) : -1;
        const char *isep = indent >= 0 ? "," : ", ", *ksep = ": ";
        if (seps.t == V_LIST && seps.l->n == 2 && seps.l->v[0].t == V_STR && seps.l->v[1].t == V_STR)
            isep = seps.l->v[0].s.p, ksep = seps.l->v[1].s.p;
        else if (seps.t != V_NONE) die(e, line, "tojson: separators must be a pair of strings");
        jv sk = arg(a, 3, "sort_keys", vbool(0));
        if (truthy(&sk)) die(e, line, "tojson: sort_keys is not supported");
        sb b = {0};
        put_json(e, &b, &v, indent, isep, ksep, 0, line);
        return vsb(&b);
    }
    if (F("default") || F("d")) {
        jv def = arg(a, 0, "default_value", vstr("", 0)), boolean = arg(a, 1, "boolean", vbool(0));
        return v.t == V_UNDEF || (truthy(&boolean) && !truthy(&v)) ? def : v;
    }
    if (F("first") || F("last")) {
        if (v.t == V_UNDEF) undefined(e, &v, line);
        jlist *l = items_of(e, &v, line);
        if (l->gen && F("last")) die(e, line, "last: a generator cannot be reversed (apply |list first)");
        if (!l->n) return UNDEF;
        return l->v[F("first") ? 0 : l->n - 1];
    }
    if (F("join")) {
        jv attr = arg(a, 1, "attribute", NONE), s0 = arg(a, 0, "d", vstr("", 0)), sep = to_str(e, &s0);
        jlist *l = items_of(e, &v, line);
        sb b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i) sb_put(e, &b, sep.s.p, sep.s.n);
            jv x = l->v[i];
            if (attr.t == V_STR) x = getattr_(e, &x, attr.s.p, attr.s.n, line);
            put_str(e, &b, &x);
        }
        return vsb(&b);
    }
    if (F("replace")) {
        jv s = to_str(e, &v), c = arg(a, 2, "count", NONE);
        jv old = arg(a, 0, "old", UNDEF), nw = arg(a, 1, "new", UNDEF);
        return replace(e, s, to_str(e, &old), to_str(e, &nw), c.t == V_INT ? c.i : -1);
    }
    if (F("list")) {
        jlist *l = items_of(e, &v, line), *c = new_list(e, l->n);
        if (l->n) memcpy(c->v, l->v, l->n * sizeof *c->v);
        return vlist(c);
    }
    if (F("reverse")) {
        if (v.t == V_STR) {
            jlist *l = items_of(e, &v, line);
            sb b = {0};
            for (size_t i = l->n; i-- > 0;) sb_put(e, &b, l->v[i].s.p, l->v[i].s.n);
            return vsb(&b);
        }
        jlist *l = items_of(e, &v, line), *c = new_list(e, l->n);
        for (size_t i = 0; i < l->n; i++) c->v[i] = l->v[l->n - 1 - i];
        c->gen = 1; /* reversed(): an iterator */
        return vlist(c);
    }
    if (F("items")) {
        if (v.t == V_UNDEF) return vlist(new_list(e, 0));
        if (v.t != V_DICT) { /* jinja2's items is a generator: it fails only when consumed */
            jlist *g = new_list(e, 0);
            g->gen = 1, g->err = "items: can only get item pairs from a mapping";
            return vlist(g);
        }
        int found;
        jv r = method(e, v, "items", a, line, &found);
        r.l->gen = 1;
        return r;
    }
    if ((F("int") || F("float") || F("abs")) && v.t == V_UNDEF) undefined(e, &v, line);
    if (F("int")) {
        if (v.t == V_INT || v.t == V_BOOL) return vint(v.i);
        if (v.t == V_FLOAT && fabs(v.f) < 9e18) return vint((long long)v.f);
        if (v.t == V_STR) {
            char buf[64];
            size_t n = v.s.n < 63 ? v.s.n : 63;
            memcpy(buf, v.s.p, n), buf[n] = 0;
            char *end;
            long long r = strtoll(buf, &end, 10);
            if (end != buf && !*end) return vint(r);
        }
        return arg(a, 0, "default", vint(0));
    }
    if (F("float")) {
        if (is_num(&v)) return vfloat(num(&v));
        return arg(a, 0, "default", vfloat(0));
    }
    if (F("abs")) {
        if (v.t == V_FLOAT) return vfloat(fabs(v.f));
        if (v.t == V_INT || v.t == V_BOOL) return vint(v.i < 0 ? -v.i : v.i);
        die(e, line, "bad operand type for abs(): '%s'", type_name(&v));
    }
    if (F("selectattr") || F("rejectattr")) return select_(e, v, a, 1, F("selectattr"), f, line);
    if (F("select") || F("reject")) return select_(e, v, a, 0, F("select"), f, line);
    if (F("map")) {
        jlist *in = items_of(e, &v, line), *out = new_list(e, in->n);
        jv attr = arg(a, -1, "attribute", UNDEF);
        for (size_t i = 0; i < in->n; i++) {
            step(e, line);
            if (attr.t == V_STR) {
                out->v[i] = getattr_(e, &in->v[i], attr.s.p, attr.s.n, line);
                if (out->v[i].t == V_UNDEF) out->v[i] = arg(a, -1, "default", UNDEF);
            } else {
                if (!a->n_pos) die(e, line, "map needs a filter name or attribute=");
                args rest = *a;
                rest.pos++, rest.n_pos--;
                out->v[i] = filter(e, want_str(e, a->pos[0], "map's filter", line).s.p, in->v[i], &rest, f, line);
            }
        }
        out->gen = 1;
        return vlist(out);
    }
    if (F("indent")) {
        if (v.t != V_STR) die(e, line, "indent: expected a string, not %s", type_name(&v));
        jv s = v, w = arg(a, 0, "width", vint(4)), first = arg(a, 1, "first", vbool(0)),
           blank = arg(a, 2, "blank", vbool(0));
        sb pad = {0};
        if (w.t == V_STR) sb_put(e, &pad, w.s.p, w.s.n);
        else
            for (long long i = 0; i < (w.t == V_INT ? w.i : 4) && i < 256; i++) sb_puts(e, &pad, " ");
        sb b = {0};
        size_t i = 0;
        int first_line = 1;
        while (i <= s.s.n) {
            const char *nl = memchr(s.s.p + i, '\n', s.s.n - i);
            size_t end = nl ? (size_t)(nl - s.s.p) : s.s.n;
            int empty = end == i;
            if ((first_line ? truthy(&first) : 1) && (!empty || truthy(&blank)))
                sb_put(e, &b, pad.p ? pad.p : "", pad.n);
            sb_put(e, &b, s.s.p + i, end - i);
            if (!nl) break;
            sb_puts(e, &b, "\n");
            i = end + 1;
            first_line = 0;
        }
        return vsb(&b);
    }
    die(e, line, "no filter named '%s'", name);
}

static jv call_macro(E *e, const lmf_jnode *m, frame *scope, const args *a, int line) {
    if (++e->call_depth > LMF_JINJA_MAX_CALL_DEPTH)
        die(e, line, "macro calls nested more than %d deep", LMF_JINJA_MAX_CALL_DEPTH);
    if (a->n_pos > m->n) die(e, line, "macro '%s' takes %d arguments (%d given)", m->s, m->n, a->n_pos);
    frame *f = new_frame(e, scope);
    for (int i = 0; i < a->n_kw; i++) {
        int k = 0;
        while (k < m->n && strcmp(m->list[k]->s, a->kw[i])) k++;
        if (k == m->n) die(e, line, "macro '%s' has no parameter '%s'", m->s, a->kw[i]);
    }
    for (int i = 0; i < m->n; i++) {
        jv v = arg(a, i, m->list[i]->s, UNDEF);
        if (v.t == V_UNDEF && m->list2[i]) v = eval(e, m->list2[i], f);
        if (v.t == V_UNDEF) v.s.p = m->list[i]->s, v.s.n = m->list[i]->sn;
        frame_set(e, f, m->list[i]->s, v);
    }
    sb out = {0};
    exec(e, (const lmf_jnode *const *)m->b->list, m->b->n, f, &out);
    e->ctl = 0;
    e->call_depth--;
    return vsb(&out);
}

static jv eval(E *e, const lmf_jnode *n, frame *f) {
    step(e, n->line);
    switch (n->kind) {
    case JN_STR: return vstr(n->s, n->sn);
    case JN_INT: return vint(n->i);
    case JN_FLOAT: return vfloat(n->f);
    case JN_BOOL: return vbool((int)n->i);
    case JN_NONE: return NONE;
    case JN_NAME: return lookup(f, n->s, n->sn);
    case JN_ATTR: {
        jv o = eval(e, n->a, f);
        return getattr_(e, &o, n->s, n->sn, n->line);
    }
    case JN_ITEM: {
        jv o = eval(e, n->a, f), k = eval(e, n->b, f);
        return getitem(e, &o, &k, n->line);
    }
    case JN_SLICE: {
        jv o = eval(e, n->a, f);
        if (o.t == V_UNDEF) undefined(e, &o, n->line);
        jv b = n->b ? eval(e, n->b, f) : NONE, c = n->c ? eval(e, n->c, f) : NONE, d = n->d ? eval(e, n->d, f) : NONE;
        return slice(e, &o, &b, &c, &d, n->line);
    }
    case JN_CALL: {
        if (n->a->kind == JN_ATTR) {
            jv o = eval(e, n->a->a, f);
            args a = eval_args(e, n, f, 0);
            int found;
            jv r = method(e, o, n->a->s, &a, n->line, &found);
            if (found) return r;
            return call_value(e, getattr_(e, &o, n->a->s, n->a->sn, n->line), &a, n->line);
        }
        jv callee = eval(e, n->a, f);
        args a = eval_args(e, n, f, 0);
        return call_value(e, callee, &a, n->line);
    }
    case JN_FILTER: {
        jv v = eval(e, n->a, f);
        args a = eval_args(e, n, f, 0);
        return filter(e, n->s, v, &a, f, n->line);
    }
    case JN_TEST: {
        jv v = eval(e, n->a, f);
        args a = eval_args(e, n, f, 0);
        return vbool(test(e, n->s, v, &a, n->line) != (int)n->i);
    }
    case JN_BIN: {
        jv a = eval(e, n->a, f), b = eval(e, n->b, f);
        const char *op = n->s;
        if (!strcmp(op, "~")) {
            sb s = {0};
            put_str(e, &s, &a), put_str(e, &s, &b);
            return vsb(&s);
        }
        if (!strcmp(op, "==")) return vbool(veq(&a, &b));
        if (!strcmp(op, "!=")) return vbool(!veq(&a, &b));
        if (!strcmp(op, "in")) return vbool(contains(e, &b, &a, n->line));
        if (!strcmp(op, "not in")) return vbool(!contains(e, &b, &a, n->line));
        if (op[0] == '<' || op[0] == '>') {
            int c = vcmp(e, &a, &b, n->line);
            return vbool(op[0] == '<' ? (op[1] ? c <= 0 : c < 0) : (op[1] ? c >= 0 : c > 0));
        }
        return arith(e, op, &a, &b, n->line);
    }
    case JN_NEG: case JN_POS: {
        jv a = eval(e, n->a, f);
        if (a.t == V_UNDEF) undefined(e, &a, n->line);
        if (!is_num(&a))
            die(e, n->line, "bad operand type for unary %c: '%s'", n->kind == JN_NEG ? '-' : '+', type_name(&a));
        if (n->kind == JN_POS) return a.t == V_BOOL ? vint(a.i) : a;
        if (a.t == V_FLOAT) return vfloat(-a.f);
        if (a.i == INT64_MIN) die(e, n->line, "integer overflow in unary -");
        return vint(-a.i);
    }
    case JN_NOT: {
        jv a = eval(e, n->a, f);
        return vbool(!truthy(&a));
    }
    case JN_AND: {
        jv a = eval(e, n->a, f);
        return truthy(&a) ? eval(e, n->b, f) : a;
    }
    case JN_OR: {
        jv a = eval(e, n->a, f);
        return truthy(&a) ? a : eval(e, n->b, f);
    }
    case JN_COND: {
        jv c = eval(e, n->b, f);
        if (truthy(&c)) return eval(e, n->a, f);
        return n->c ? eval(e, n->c, f) : UNDEF;
    }
    case JN_LIST: case JN_TUPLE: {
        jlist *l = new_list(e, (size_t)n->n);
        l->tuple = n->kind == JN_TUPLE;
        for (int i = 0; i < n->n; i++) l->v[i] = eval(e, n->list[i], f);
        return vlist(l);
    }
    case JN_DICT: {
        jv d = {.t = V_DICT, .d = new_dict(e)};
        for (int i = 0; i < n->n; i++) dict_set(e, d.d, eval(e, n->list[i], f), eval(e, n->list2[i], f));
        return d;
    }
    default: die(e, n->line, "statement used as an expression");
    }
}

/* Assigns v to a name or a tuple of names (unpacking v) in frame f. */
static void assign(E *e, const lmf_jnode *t, jv v, frame *f, int line) {
    if (t->kind == JN_NAME) {
        frame_set(e, f, t->s, v);
        return;
    }
    jlist *l = items_of(e, &v, line);
    if ((int)l->n != t->n) die(e, line, "cannot unpack %zu values into %d names", l->n, t->n);
    for (int i = 0; i < t->n; i++) frame_set(e, f, t->list[i]->s, l->v[i]);
}

static void exec(E *e, const lmf_jnode *const *list, int count, frame *f, sb *out) {
    for (int k = 0; k < count && !e->ctl; k++) {
        const lmf_jnode *n = list[k];
        step(e, n->line);
        switch (n->kind) {
        case JN_TEXT: sb_put(e, out, n->s, n->sn); break;
        case JN_OUT: {
            jv v = eval(e, n->a, f);
            put_str(e, out, &v);
            break;
        }
        case JN_BODY: exec(e, (const lmf_jnode *const *)n->list, n->n, f, out); break;
        case JN_GENERATION: {
            size_t start = out->n;
            exec(e, (const lmf_jnode *const *)n->a->list, n->a->n, f, out);
            if (e->spans && out == e->top) {
                lmf_jinja_spans *s = e->spans;
                if (s->n == s->cap) {
                    s->cap = s->cap ? 2 * s->cap : 8;
                    s->v = lmf_xrealloc(s->v, s->cap * sizeof *s->v);
                }
                s->v[s->n++] = (lmf_jinja_span){start, out->n};
            }
            break;
        }
        case JN_IF: {
            jv c = eval(e, n->a, f);
            const lmf_jnode *b = truthy(&c) ? n->b : n->c;
            if (b) exec(e, (const lmf_jnode *const *)b->list, b->n, f, out);
            break;
        }
        case JN_FOR: {
            jv it = eval(e, n->b, f);
            jlist *items = items_of(e, &it, n->line);
            frame *lf = new_frame(e, f);
            if (n->c) { /* {% for x in xs if cond %}: the loop sees only the items that pass */
                jlist *kept = new_list(e, items->n);
                kept->n = 0;
                for (size_t i = 0; i < items->n; i++) {
                    assign(e, n->a, items->v[i], lf, n->line);
                    jv c = eval(e, n->c, lf);
                    if (truthy(&c)) kept->v[kept->n++] = items->v[i];
                }
                items = kept;
            }
            jloop *lp = ealloc(e, sizeof *lp, n->line);
            lp->length = (long long)items->n;
            for (size_t i = 0; i < items->n; i++) {
                step(e, n->line);
                lp->index0 = (long long)i, lp->length = (long long)items->n;
                lp->prev = i ? items->v[i - 1] : UNDEF;
                lp->next = i + 1 < items->n ? items->v[i + 1] : UNDEF;
                assign(e, n->a, items->v[i], lf, n->line);
                frame_set(e, lf, "loop", (jv){.t = V_LOOP, .lp = lp});
                exec(e, (const lmf_jnode *const *)n->list, n->n, lf, out);
                if (e->ctl == 1) {
                    e->ctl = 0;
                    break;
                }
                e->ctl = 0;
            }
            if (!items->n && n->list2) exec(e, (const lmf_jnode *const *)n->list2, n->n2, lf, out);
            break;
        }
        case JN_SET: case JN_SETBLOCK: {
            jv v;
            if (n->kind == JN_SET) v = eval(e, n->b, f);
            else {
                sb s = {0};
                exec(e, (const lmf_jnode *const *)n->b->list, n->b->n, f, &s);
                v = vsb(&s);
            }
            if (n->a->kind == JN_ATTR) {
                jv ns = eval(e, n->a->a, f);
                if (ns.t != V_NS)
                    die(e, n->line, "cannot assign attribute on non-namespace object ('%s')", type_name(&ns));
                if (n->a->s[0] == '_') die(e, n->line, "namespace attributes may not start with '_'");
                dict_set(e, ns.d, vstr(n->a->s, n->a->sn), v);
            } else {
                assign(e, n->a, v, f, n->line);
            }
            break;
        }
        case JN_MACRO: {
            struct jmacro *m = ealloc(e, sizeof *m, n->line);
            m->node = n, m->scope = f;
            frame_set(e, f, n->s, (jv){.t = V_MACRO, .m = m});
            break;
        }
        case JN_BREAK: e->ctl = 1; break;
        case JN_CONTINUE: e->ctl = 2; break;
        default: die(e, n->line, "expression used as a statement");
        }
    }
}

static jv from_json(E *e, const cJSON *j, int depth) {
    if (depth > 256) die(e, 0, "the variables are nested too deeply");
    if (cJSON_IsNull(j)) return NONE;
    if (cJSON_IsBool(j)) return vbool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return vint((long long)d);
        return vfloat(d);
    }
    if (cJSON_IsString(j)) return vstr(j->valuestring, strlen(j->valuestring));
    if (cJSON_IsArray(j)) {
        jlist *l = new_list(e, (size_t)cJSON_GetArraySize(j));
        size_t i = 0;
        for (const cJSON *c = j->child; c; c = c->next) l->v[i++] = from_json(e, c, depth + 1);
        return vlist(l);
    }
    if (cJSON_IsObject(j)) {
        jv d = {.t = V_DICT, .d = new_dict(e)};
        for (const cJSON *c = j->child; c; c = c->next)
            dict_set(e, d.d, vstr(c->string, strlen(c->string)), from_json(e, c, depth + 1));
        return d;
    }
    return UNDEF;
}

lmf_status lmf_jinja_render(const lmf_jinja *j, const cJSON *vars, time_t now, lmf_text *out) {
    return lmf_jinja_render_spans(j, vars, now, out, NULL);
}

lmf_status lmf_jinja_render_spans(const lmf_jinja *j, const cJSON *vars, time_t now, lmf_text *out,
                                  lmf_jinja_spans *spans) {
    size_t n_spans = spans ? spans->n : 0;
    E *e = lmf_xcalloc(1, sizeof *e);
    e->spans = spans;
    e->arena.limit = LMF_JINJA_MAX_MEMORY;
    e->now = now;
    lmf_status st = LMF_OK;
    if (setjmp(e->jb)) {
        st = lmf_fail(LMF_ERR_ARG, "%s", e->err);
        goto done;
    }
    e->root = new_frame(e, NULL);
    static const struct {
        const char *name;
        int b;
    } globals[] = {{"range", B_RANGE}, {"namespace", B_NAMESPACE}, {"dict", B_DICT},
                   {"raise_exception", B_RAISE}, {"strftime_now", B_STRFTIME}};
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++)
        frame_set(e, e->root, globals[i].name, (jv){.t = V_BUILTIN, .i = globals[i].b});
    if (vars)
        for (const cJSON *c = vars->child; c; c = c->next) frame_set(e, e->root, c->string, from_json(e, c, 0));
    sb o = {0};
    e->top = &o;
    exec(e, (const lmf_jnode *const *)j->root->list, j->root->n, e->root, &o);
    lmf_text_push(out, o.p ? o.p : "", o.n);
done:
    if (st != LMF_OK && spans) spans->n = n_spans; /* only on success, as the text */
    lmf_jarena_free(&e->arena);
    free(e);
    return st;
}
