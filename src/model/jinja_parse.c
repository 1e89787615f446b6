/* jinja_parse.c — lexing and parsing a chat template into a tree (see jinja.h).
 *
 * The lexer follows jinja2's, configured as transformers configures it: newlines normalised to "\n" and one
 * trailing newline dropped (keep_trailing_newline=False); "{%-" / "{{-" / "{#-" strip all whitespace before the tag,
 * "-%}" / "-}}" / "-#}" all whitespace after it; trim_blocks drops the one newline after a "%}" or "#}";
 * lstrip_blocks drops the spaces and tabs between a line's start and a "{%" or "{#" ("{%+" keeps them).
 * Operator precedence is jinja2's parser's: or < and < not < comparisons < + - < ~ < * / // % < ** < unary,
 * with filters, tests and calls binding to the unary operand. */
#include "model/jinja.h"

#include "core/alloc.h"
#include "core/status.h"

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---------------------------------------------------------------------------------------------------- */
struct lmf_jchunk {
    lmf_jchunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *lmf_jarena_alloc(lmf_jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->limit && a->total + cap > a->limit) return NULL;
        lmf_jchunk *c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head, c->used = 0, c->cap = cap;
        a->head = c;
        a->total += cap;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

void lmf_jarena_free(lmf_jarena *a) {
    for (lmf_jchunk *c = a->head, *next; c; c = next) next = c->next, free(c);
    a->head = NULL, a->total = 0;
}

/* ---- lexer ---------------------------------------------------------------------------------------------------- */
typedef enum { T_TEXT, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP, T_EOF } ttype;
typedef struct {
    ttype t;
    int line;
    const char *s; /* T_TEXT, T_STR: decoded text (arena); T_NAME, T_OP: points into the source */
    size_t n;
    long long i;
    double f;
} token;

typedef struct {
    lmf_jarena *arena;
    const char *src;
    size_t len;
    token *tok;
    size_t n_tok, cap_tok;
    size_t pos; /* parser's index in tok */
    int depth;
    int loops; /* for-loops around the statement being parsed (break / continue need one) */
    int has_generation; /* a {% generation %} block was seen */
    char err[256];
    int err_line;
    size_t line_pos; /* line_at's cache: the line of source offset line_pos */
    int line_no;
    char tok_buf[64]; /* tok_text's */
} P;

static int fail(P *p, int line, const char *msg, const char *detail) {
    if (!p->err[0]) {
        snprintf(p->err, sizeof p->err, "%s%s%.60s%s", msg, detail ? " '" : "", detail ? detail : "",
                 detail ? "'" : "");
        p->err_line = line;
    }
    return -1;
}

static void *alloc(P *p, size_t n) {
    void *m = lmf_jarena_alloc(p->arena, n);
    if (!m) { /* the compile arena has no limit: only malloc itself fails */
        fprintf(stderr, "lmforge: out of memory (%zu bytes)\n", n);
        abort();
    }
    return m;
}

static int push(P *p, token t) {
    if (p->n_tok == p->cap_tok) {
        size_t cap = p->cap_tok ? 2 * p->cap_tok : 256;
        p->tok = lmf_xrealloc(p->tok, cap * sizeof *p->tok), p->cap_tok = cap;
    }
    p->tok[p->n_tok++] = t;
    return 0;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The line of source offset pos: counted on from the last one asked (the lexer asks in increasing order), so lexing
 * stays linear in the template's size. */
static int line_at(P *p, size_t pos) {
    if (pos < p->line_pos) p->line_pos = 0, p->line_no = 1;
    for (size_t i = p->line_pos; i < pos && i < p->len; i++) p->line_no += p->src[i] == '\n';
    p->line_pos = pos < p->len ? pos : p->len;
    return p->line_no;
}

static void emit_text(P *p, size_t from, size_t to) {
    if (to <= from) return;
    char *s = alloc(p, to - from + 1);
    memcpy(s, p->src + from, to - from);
    s[to - from] = 0;
    push(p, (token){.t = T_TEXT, .line = line_at(p, from), .s = s, .n = to - from});
}

static void put_utf8(char *o, size_t *n, uint32_t c) {
    if (c < 0x80) o[(*n)++] = (char)c;
    else if (c < 0x800) o[(*n)++] = (char)(0xC0 | c >> 6), o[(*n)++] = (char)(0x80 | (c & 63));
    else if (c < 0x10000)
        o[(*n)++] = (char)(0xE0 | c >> 12), o[(*n)++] = (char)(0x80 | ((c >> 6) & 63)),
        o[(*n)++] = (char)(0x80 | (c & 63));
    else
        o[(*n)++] = (char)(0xF0 | c >> 18), o[(*n)++] = (char)(0x80 | ((c >> 12) & 63)),
        o[(*n)++] = (char)(0x80 | ((c >> 6) & 63)), o[(*n)++] = (char)(0x80 | (c & 63));
}

static int hexval(char c) {
    return is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}

/* A string literal at p->src[*i] (the quote): Python's escapes, as jinja2 decodes them ("unicode-escape"). */
static int lex_string(P *p, size_t *i) {
    char q = p->src[*i];
    size_t start = *i + 1, j = start;
    while (j < p->len && p->src[j] != q) j += p->src[j] == '\\' ? 2 : 1;
    if (j >= p->len) return fail(p, line_at(p, *i), "unterminated string", NULL);
    char *o = alloc(p, j - start + 1);
    size_t n = 0;
    for (size_t k = start; k < j; k++) {
        char c = p->src[k];
        if (c != '\\') {
            o[n++] = c;
            continue;
        }
        char e = p->src[++k];
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t v = 0;
            int d = 0;
            for (; d < digits && k + 1 + d < j && hexval(p->src[k + 1 + d]) >= 0; d++)
                v = v * 16 + (uint32_t)hexval(p->src[k + 1 + d]);
            if (d < digits || v > 0x10FFFF || (v >= 0xD800 && v < 0xE000))
                return fail(p, line_at(p, k), "bad escape in string literal", NULL);
            put_utf8(o, &n, v);
            k += (size_t)digits;
            continue;
        }
        if (e >= '0' && e <= '7') {
            uint32_t v = 0;
            int d = 0;
            for (; d < 3 && k + d < j && p->src[k + d] >= '0' && p->src[k + d] <= '7'; d++)
                v = v * 8 + (uint32_t)(p->src[k + d] - '0');
            put_utf8(o, &n, v);
            k += (size_t)d - 1;
            continue;
        }
        switch (e) {
        case 'n': o[n++] = '\n'; break;
        case 't': o[n++] = '\t'; break;
        case 'r': o[n++] = '\r'; break;
        case 'a': o[n++] = '\a'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'v': o[n++] = '\v'; break;
        case '\\': case '\'': case '"': o[n++] = e; break;
        case '\n': break; /* a backslash-newline continues the line */
        default: o[n++] = '\\', o[n++] = e; /* Python keeps unknown escapes as they are */
        }
    }
    o[n] = 0;
    push(p, (token){.t = T_STR, .line = line_at(p, *i), .s = o, .n = n});
    *i = j + 1;
    return 0;
}

static const char *const OPS2[] = {"//", "**", "==", "!=", "<=", ">="};

/* Tokens of one {{ }} or {% %} from *i to its end marker (outside brackets), which is consumed with its whitespace
 * control. Returns 0, or -1 with p->err. */
static int lex_tag(P *p, size_t *i, int block, int *line_starting) {
    int depth = 0;
    size_t j = *i;
    const char *endm = block ? "%}" : "}}";
    for (;;) {
        while (j < p->len && is_ws(p->src[j])) j++;
        if (j >= p->len) return fail(p, line_at(p, *i), block ? "missing '%}'" : "missing '}}'", NULL);
        const char *c = p->src + j;
        if (!depth) {
            int sign = (*c == '-' || (*c == '+' && block)) && !strncmp(c + 1, endm, 2); /* the source ends in a NUL */
            if (sign || !strncmp(c, endm, 2)) {
                push(p, (token){.t = block ? T_BEND : T_VEND, .line = line_at(p, j)});
                j += sign ? 3 : 2;
                if (sign && *c == '-') {
                    while (j < p->len && is_ws(p->src[j])) j++;
                } else if (!sign && block && j < p->len && p->src[j] == '\n') j++; /* trim_blocks */
                *line_starting = j > 0 && p->src[j - 1] == '\n';
                *i = j;
                return 0;
            }
        }
        if (*c == '\'' || *c == '"') {
            if (lex_string(p, &j)) return -1;
        } else if (is_alpha(*c)) {
            size_t k = j;
            while (k < p->len && (is_alpha(p->src[k]) || is_digit(p->src[k]))) k++;
            push(p, (token){.t = T_NAME, .line = line_at(p, j), .s = c, .n = k - j});
            j = k;
        } else if (is_digit(*c)) {
            char buf[64];
            size_t k = j, n = 0;
            int is_float = 0;
            while (k < p->len && (is_digit(p->src[k]) || p->src[k] == '_')) {
                if (p->src[k] != '_' && n < 60) buf[n++] = p->src[k];
                k++;
            }
            if (k + 1 < p->len && p->src[k] == '.' && is_digit(p->src[k + 1])) {
                is_float = 1;
                buf[n++] = p->src[k++];
                while (k < p->len && (is_digit(p->src[k]) || p->src[k] == '_')) {
                    if (p->src[k] != '_' && n < 60) buf[n++] = p->src[k];
                    k++;
                }
            }
            if (k < p->len && (p->src[k] == 'e' || p->src[k] == 'E')) {
                size_t e = k + 1;
                if (e < p->len && (p->src[e] == '+' || p->src[e] == '-')) e++;
                if (e < p->len && is_digit(p->src[e])) {
                    is_float = 1;
                    while (k < e) buf[n < 60 ? n++ : n] = p->src[k++];
                    while (k < p->len && is_digit(p->src[k])) {
                        if (n < 60) buf[n++] = p->src[k];
                        k++;
                    }
                }
            }
            buf[n] = 0;
            token t = {.t = is_float ? T_FLOAT : T_INT, .line = line_at(p, j)};
            if (is_float) t.f = strtod(buf, NULL);
            else {
                char *end;
                unsigned long long v = strtoull(buf, &end, 10);
                if (n > 19 || v > (unsigned long long)INT64_MAX)
                    return fail(p, t.line, "integer literal too large", NULL);
                t.i = (long long)v;
            }
            push(p, t);
            j = k;
        } else {
            size_t n = 1;
            for (size_t k = 0; k < sizeof OPS2 / sizeof *OPS2; k++)
                if (j + 1 < p->len && !strncmp(c, OPS2[k], 2)) n = 2;
            if (n == 1 && !strchr("+-/*%~[](){}<>=.:|,;", *c)) {
                char what[2] = {*c, 0};
                return fail(p, line_at(p, j), "unexpected character", what);
            }
            if (*c == '(' || *c == '[' || *c == '{') depth++;
            if ((*c == ')' || *c == ']' || *c == '}') && n == 1) {
                if (!depth) return fail(p, line_at(p, j), "unbalanced bracket", NULL);
                depth--;
            }
            push(p, (token){.t = T_OP, .line = line_at(p, j), .s = c, .n = n});
            j += n;
        }
    }
}

static int only_ws(const char *s, size_t from, size_t to) {
    if (from >= to) return 0; /* jinja2's \s+ needs one character */
    for (size_t k = from; k < to; k++)
        if (!is_ws(s[k])) return 0;
    return 1;
}

static int lex(P *p) {
    size_t i = 0;
    int line_starting = 1;
    while (i <= p->len) {
        /* the next tag start */
        const char *q = NULL;
        for (const char *s = p->src + i; (s = memchr(s, '{', p->len - (size_t)(s - p->src))); s++)
            if (s + 1 < p->src + p->len && (s[1] == '{' || s[1] == '%' || s[1] == '#')) {
                q = s;
                break;
            }
        if (!q) {
            emit_text(p, i, p->len);
            break;
        }
        size_t t = (size_t)(q - p->src), text_end = t;
        char kind = q[1], sign = t + 2 < p->len ? q[2] : 0;
        if (sign == '-') {
            while (text_end > i && is_ws(p->src[text_end - 1])) text_end--;
        } else if (sign != '+' && kind != '{') { /* lstrip_blocks */
            size_t l = text_end;
            while (l > i && p->src[l - 1] != '\n') l--;
            if ((l > i || line_starting) && only_ws(p->src, l, text_end)) text_end = l;
        }
        size_t body = t + 2 + (sign == '-' || sign == '+');
        /* {% raw %}...{% endraw %}: the text as it is */
        if (kind == '%') {
            size_t k = body;
            while (k < p->len && is_ws(p->src[k])) k++;
            if (p->len - k >= 3 && !strncmp(p->src + k, "raw", 3) && (k + 3 >= p->len || !is_alpha(p->src[k + 3]) )) {
                size_t e = k + 3;
                while (e < p->len && is_ws(p->src[e])) e++;
                if (e < p->len && p->src[e] == '-') e++;
                if (p->len - e >= 2 && !strncmp(p->src + e, "%}", 2)) {
                    emit_text(p, i, text_end);
                    const char *end = NULL;
                    for (const char *s = p->src + e + 2; (s = strstr(s, "{%")); s++) {
                        const char *r = s + 2;
                        if (*r == '-' || *r == '+') r++;
                        while (is_ws(*r)) r++;
                        if (!strncmp(r, "endraw", 6)) {
                            end = s;
                            break;
                        }
                    }
                    if (!end) return fail(p, line_at(p, t), "missing end of raw directive", NULL);
                    size_t rs = e + 2, re_ = (size_t)(end - p->src);
                    if (end[2] == '-')
                        while (re_ > rs && is_ws(p->src[re_ - 1])) re_--;
                    emit_text(p, rs, re_);
                    const char *close = strstr(end, "%}");
                    if (!close) return fail(p, line_at(p, t), "missing end of raw directive", NULL);
                    i = (size_t)(close - p->src) + 2;
                    if (close[-1] == '-')
                        while (i < p->len && is_ws(p->src[i])) i++;
                    else if (close[-1] != '+' && i < p->len && p->src[i] == '\n') i++;
                    line_starting = p->src[i - 1] == '\n';
                    continue;
                }
            }
        }
        emit_text(p, i, text_end);
        if (kind == '#') {
            const char *e = NULL;
            for (const char *s = p->src + body; s + 1 < p->src + p->len; s++)
                if (s[0] == '#' && s[1] == '}') {
                    e = s;
                    break;
                }
            if (!e) return fail(p, line_at(p, t), "missing end of comment tag", NULL);
            i = (size_t)(e - p->src) + 2;
            if (e > p->src + body && e[-1] == '-')
                while (i < p->len && is_ws(p->src[i])) i++;
            else if (!(e > p->src + body && e[-1] == '+') && i < p->len && p->src[i] == '\n') i++;
            line_starting = p->src[i - 1] == '\n';
            continue;
        }
        push(p, (token){.t = kind == '%' ? T_BBEGIN : T_VBEGIN, .line = line_at(p, t)});
        i = body;
        if (lex_tag(p, &i, kind == '%', &line_starting)) return -1;
    }
    push(p, (token){.t = T_EOF, .line = line_at(p, p->len)});
    return 0;
}

/* ---- parser --------------------------------------------------------------------------------------------------- */
static token *cur(P *p) { return &p->tok[p->pos]; }
static int is_op(P *p, const char *op) {
    token *t = cur(p);
    return t->t == T_OP && t->n == strlen(op) && !strncmp(t->s, op, t->n);
}
static int is_name(P *p, const char *name) {
    token *t = cur(p);
    return t->t == T_NAME && t->n == strlen(name) && !strncmp(t->s, name, t->n);
}
static int is_name_at(P *p, size_t k, const char *name) {
    token *t = &p->tok[p->pos + k < p->n_tok ? p->pos + k : p->n_tok - 1];
    return t->t == T_NAME && t->n == strlen(name) && !strncmp(t->s, name, t->n);
}
static void advance(P *p) {
    if (p->tok[p->pos].t != T_EOF) p->pos++;
}
static char *tok_text(P *p, const token *t) {
    char *buf = p->tok_buf;
    if (t->t == T_EOF) return "end of template";
    if (t->t == T_VEND) return "}}";
    if (t->t == T_BEND) return "%}";
    size_t n = t->n < 60 ? t->n : 60;
    memcpy(buf, t->s ? t->s : "", t->s ? n : 0);
    buf[t->s ? n : 0] = 0;
    return buf;
}
static int expect_op(P *p, const char *op) {
    if (!is_op(p, op)) {
        char msg[64];
        snprintf(msg, sizeof msg, "expected '%s', got", op);
        return fail(p, cur(p)->line, msg, tok_text(p, cur(p)));
    }
    advance(p);
    return 0;
}

static lmf_jnode *node(P *p, lmf_jnode_kind k, int line) {
    lmf_jnode *n = alloc(p, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = k, n->line = line;
    return n;
}

/* Growable node lists, copied into the arena when done. */
typedef struct {
    lmf_jnode **v;
    const char **names;
    int n, cap;
} nlist;
static void nl_push(nlist *l, lmf_jnode *x, const char *name) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = lmf_xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
        l->names = lmf_xrealloc(l->names, (size_t)l->cap * sizeof *l->names);
    }
    l->names[l->n] = name;
    l->v[l->n++] = x;
}
static lmf_jnode **nl_done(P *p, nlist *l, int *n, const char ***names) {
    lmf_jnode **v = alloc(p, (size_t)(l->n ? l->n : 1) * sizeof *v);
    if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof *v);
    if (names) {
        *names = alloc(p, (size_t)(l->n ? l->n : 1) * sizeof **names);
        if (l->n) memcpy(*names, l->names, (size_t)l->n * sizeof **names);
    }
    *n = l->n;
    free(l->v), free(l->names);
    memset(l, 0, sizeof *l);
    return v;
}

static const char *name_str(P *p, const token *t) {
    char *s = alloc(p, t->n + 1);
    memcpy(s, t->s, t->n);
    s[t->n] = 0;
    return s;
}

static lmf_jnode *expr(P *p);
static lmf_jnode *or_expr(P *p);
static lmf_jnode *unary(P *p, int with_filter);
static lmf_jnode *primary(P *p);

#define ENTER(p)                                                                                                  \
    do {                                                                                                          \
        if (++(p)->depth > LMF_JINJA_MAX_DEPTH) {                                                                 \
            fail(p, cur(p)->line, "template nested too deeply", NULL);                                            \
            (p)->depth--;                                                                                         \
            return NULL;                                                                                          \
        }                                                                                                         \
    } while (0)
#define LEAVE(p, v)                                                                                               \
    do {                                                                                                          \
        (p)->depth--;                                                                                             \
        return (v);                                                                                               \
    } while (0)

/* Arguments of a call, a filter or a test: positional into list, name=value into list2 / kw. */
static int call_args(P *p, lmf_jnode *n) {
    nlist args = {0}, kwargs = {0};
    advance(p); /* ( */
    while (!is_op(p, ")")) {
        if (args.n + kwargs.n && expect_op(p, ",")) goto bad;
        if (is_op(p, ")")) break; /* trailing comma */
        if (is_op(p, "*") || is_op(p, "**")) {
            fail(p, cur(p)->line, "*args and **kwargs in calls are not supported", NULL);
            goto bad;
        }
        if (cur(p)->t == T_NAME && p->tok[p->pos + 1].t == T_OP && p->tok[p->pos + 1].n == 1 &&
            p->tok[p->pos + 1].s[0] == '=') {
            const char *name = name_str(p, cur(p));
            advance(p), advance(p);
            lmf_jnode *v = expr(p);
            if (!v) goto bad;
            nl_push(&kwargs, v, name);
        } else {
            if (kwargs.n) {
                fail(p, cur(p)->line, "positional argument after a keyword argument", NULL);
                goto bad;
            }
            lmf_jnode *v = expr(p);
            if (!v) goto bad;
            nl_push(&args, v, NULL);
        }
    }
    advance(p);
    n->list = nl_done(p, &args, &n->n, NULL);
    n->list2 = nl_done(p, &kwargs, &n->n2, &n->kw);
    return 0;
bad:
    free(args.v), free(args.names), free(kwargs.v), free(kwargs.names);
    return -1;
}

/* a, b, c (a tuple when there is a comma); with_cond: each item may be `x if y else z`. */
static lmf_jnode *tuple(P *p, int with_cond, int allow_empty_end) {
    int line = cur(p)->line;
    lmf_jnode *first = with_cond ? expr(p) : or_expr(p);
    if (!first || !is_op(p, ",")) return first;
    nlist items = {0};
    nl_push(&items, first, NULL);
    while (is_op(p, ",")) {
        advance(p);
        if (allow_empty_end && (is_op(p, ")") || cur(p)->t == T_BEND || cur(p)->t == T_VEND)) break;
        lmf_jnode *x = with_cond ? expr(p) : or_expr(p);
        if (!x) {
            free(items.v), free(items.names);
            return NULL;
        }
        nl_push(&items, x, NULL);
    }
    lmf_jnode *t = node(p, JN_TUPLE, line);
    t->list = nl_done(p, &items, &t->n, NULL);
    return t;
}

static lmf_jnode *primary(P *p) {
    ENTER(p);
    token *t = cur(p);
    lmf_jnode *n = NULL;
    if (t->t == T_NAME) {
        advance(p);
        if ((t->n == 4 && (!strncmp(t->s, "true", 4) || !strncmp(t->s, "True", 4))) ||
            (t->n == 5 && (!strncmp(t->s, "false", 5) || !strncmp(t->s, "False", 5)))) {
            n = node(p, JN_BOOL, t->line);
            n->i = t->s[0] == 't' || t->s[0] == 'T';
        } else if (t->n == 4 && (!strncmp(t->s, "none", 4) || !strncmp(t->s, "None", 4))) {
            n = node(p, JN_NONE, t->line);
        } else {
            n = node(p, JN_NAME, t->line);
            n->s = name_str(p, t), n->sn = t->n;
        }
    } else if (t->t == T_STR) {
        /* adjacent literals concatenate, as in Python */
        size_t total = 0, k = p->pos;
        while (p->tok[k].t == T_STR) total += p->tok[k++].n;
        char *s = alloc(p, total + 1);
        size_t off = 0;
        while (cur(p)->t == T_STR) {
            memcpy(s + off, cur(p)->s, cur(p)->n);
            off += cur(p)->n;
            advance(p);
        }
        s[off] = 0;
        n = node(p, JN_STR, t->line);
        n->s = s, n->sn = total;
    } else if (t->t == T_INT || t->t == T_FLOAT) {
        n = node(p, t->t == T_INT ? JN_INT : JN_FLOAT, t->line);
        n->i = t->i, n->f = t->f;
        advance(p);
    } else if (is_op(p, "(")) {
        advance(p);
        if (is_op(p, ")")) {
            advance(p);
            n = node(p, JN_TUPLE, t->line);
            n->list = alloc(p, sizeof *n->list);
        } else {
            n = tuple(p, 1, 1);
            if (n && expect_op(p, ")")) n = NULL;
        }
    } else if (is_op(p, "[")) {
        advance(p);
        nlist items = {0};
        while (!is_op(p, "]")) {
            if (items.n && expect_op(p, ",")) break;
            if (is_op(p, "]")) break;
            lmf_jnode *x = expr(p);
            if (!x) break;
            nl_push(&items, x, NULL);
        }
        if (p->err[0] || expect_op(p, "]")) {
            free(items.v), free(items.names);
            LEAVE(p, NULL);
        }
        n = node(p, JN_LIST, t->line);
        n->list = nl_done(p, &items, &n->n, NULL);
    } else if (is_op(p, "{")) {
        advance(p);
        nlist keys = {0}, vals = {0};
        while (!is_op(p, "}")) {
            if (keys.n && expect_op(p, ",")) break;
            if (is_op(p, "}")) break;
            lmf_jnode *k = expr(p);
            if (!k || expect_op(p, ":")) break;
            lmf_jnode *v = expr(p);
            if (!v) break;
            nl_push(&keys, k, NULL), nl_push(&vals, v, NULL);
        }
        if (p->err[0] || expect_op(p, "}")) {
            free(keys.v), free(keys.names), free(vals.v), free(vals.names);
            LEAVE(p, NULL);
        }
        n = node(p, JN_DICT, t->line);
        n->list = nl_done(p, &keys, &n->n, NULL);
        n->list2 = nl_done(p, &vals, &n->n2, NULL);
    } else {
        fail(p, t->line, "unexpected", tok_text(p, t));
    }
    LEAVE(p, n);
}

/* x.name, x[...], x(...) */
/* n(arguments): a call on what came before */
static lmf_jnode *call_of(P *p, lmf_jnode *n, int line) {
    lmf_jnode *c = node(p, JN_CALL, line);
    c->a = n;
    return call_args(p, c) ? NULL : c;
}

static lmf_jnode *postfix(P *p, lmf_jnode *n) {
    while (n) {
        int line = cur(p)->line;
        if (is_op(p, ".")) {
            advance(p);
            token *t = cur(p);
            if (t->t == T_NAME) {
                lmf_jnode *a = node(p, JN_ATTR, line);
                a->a = n, a->s = name_str(p, t), a->sn = t->n;
                n = a;
            } else if (t->t == T_INT) { /* x.0 is x[0] */
                lmf_jnode *a = node(p, JN_ITEM, line), *k = node(p, JN_INT, line);
                k->i = t->i;
                a->a = n, a->b = k;
                n = a;
            } else {
                fail(p, line, "expected a name after '.', got", tok_text(p, t));
                return NULL;
            }
            advance(p);
        } else if (is_op(p, "[")) {
            advance(p);
            lmf_jnode *parts[3] = {0};
            int colons = 0;
            for (;;) {
                if (is_op(p, ":")) {
                    if (++colons > 2) {
                        fail(p, line, "too many ':' in a slice", NULL);
                        return NULL;
                    }
                    advance(p);
                } else if (is_op(p, "]")) {
                    break;
                } else {
                    if (parts[colons]) {
                        fail(p, line, "expected ']' or ':', got", tok_text(p, cur(p)));
                        return NULL;
                    }
                    if (!(parts[colons] = expr(p))) return NULL;
                }
            }
            advance(p);
            lmf_jnode *a;
            if (colons) {
                a = node(p, JN_SLICE, line);
                a->b = parts[0], a->c = parts[1], a->d = parts[2];
            } else {
                if (!parts[0]) {
                    fail(p, line, "empty subscript", NULL);
                    return NULL;
                }
                a = node(p, JN_ITEM, line);
                a->b = parts[0];
            }
            a->a = n;
            n = a;
        } else if (is_op(p, "(")) {
            if (!(n = call_of(p, n, line))) return NULL;
        } else {
            break;
        }
    }
    return n;
}

static const char *dotted_name(P *p) {
    if (cur(p)->t != T_NAME) {
        fail(p, cur(p)->line, "expected a name, got", tok_text(p, cur(p)));
        return NULL;
    }
    const char *s = name_str(p, cur(p));
    advance(p);
    return s;
}

/* x | filter(args), x is [not] test [arg], and calls on their results */
static lmf_jnode *filters(P *p, lmf_jnode *n) {
    while (n) {
        int line = cur(p)->line;
        if (is_op(p, "|")) {
            advance(p);
            lmf_jnode *f = node(p, JN_FILTER, line);
            f->a = n;
            if (!(f->s = dotted_name(p))) return NULL;
            f->sn = strlen(f->s);
            if (is_op(p, "(") && call_args(p, f)) return NULL;
            if (!f->list) f->list = alloc(p, sizeof *f->list), f->list2 = alloc(p, sizeof *f->list2);
            n = f;
        } else if (is_name(p, "is")) {
            advance(p);
            lmf_jnode *t = node(p, JN_TEST, line);
            t->a = n;
            if (is_name(p, "not")) advance(p), t->i = 1;
            if (!(t->s = dotted_name(p))) return NULL;
            t->sn = strlen(t->s);
            token *c = cur(p);
            if (is_op(p, "(")) {
                if (call_args(p, t)) return NULL;
            } else if ((c->t == T_NAME || c->t == T_STR || c->t == T_INT || c->t == T_FLOAT || is_op(p, "[") ||
                        is_op(p, "{")) &&
                       !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and") && !is_name(p, "is") &&
                       !is_name(p, "if") && !is_name(p, "in") && !is_name(p, "not")) {
                lmf_jnode *arg = postfix(p, primary(p));
                if (!arg) return NULL;
                t->list = alloc(p, sizeof *t->list);
                t->list[0] = arg, t->n = 1;
                t->list2 = alloc(p, sizeof *t->list2);
            }
            if (!t->list) t->list = alloc(p, sizeof *t->list), t->list2 = alloc(p, sizeof *t->list2);
            n = t;
        } else if (is_op(p, "(")) {
            if (!(n = call_of(p, n, line))) return NULL;
        } else {
            break;
        }
    }
    return n;
}

static lmf_jnode *unary(P *p, int with_filter) {
    ENTER(p);
    int line = cur(p)->line;
    lmf_jnode *n;
    if (is_op(p, "-") || is_op(p, "+")) {
        int neg = is_op(p, "-");
        advance(p);
        lmf_jnode *x = unary(p, 0);
        if (!x) LEAVE(p, NULL);
        n = node(p, neg ? JN_NEG : JN_POS, line);
        n->a = x;
    } else {
        n = primary(p);
    }
    n = postfix(p, n);
    if (with_filter) n = filters(p, n);
    LEAVE(p, n);
}

static lmf_jnode *bin(P *p, const char *op, lmf_jnode *a, lmf_jnode *b, int line) {
    if (!a || !b) return NULL;
    lmf_jnode *n = node(p, JN_BIN, line);
    n->s = op, n->sn = strlen(op), n->a = a, n->b = b;
    return n;
}

static lmf_jnode *power(P *p) {
    lmf_jnode *n = unary(p, 1);
    while (n && is_op(p, "**")) {
        int line = cur(p)->line;
        advance(p);
        n = bin(p, "**", n, unary(p, 1), line);
    }
    return n;
}
static lmf_jnode *math2(P *p) {
    lmf_jnode *n = power(p);
    for (;;) {
        const char *op = is_op(p, "*") ? "*" : is_op(p, "/") ? "/" : is_op(p, "//") ? "//" : is_op(p, "%") ? "%" : NULL;
        if (!n || !op) return n;
        int line = cur(p)->line;
        advance(p);
        n = bin(p, op, n, power(p), line);
    }
}
static lmf_jnode *concat(P *p) {
    lmf_jnode *n = math2(p);
    while (n && is_op(p, "~")) {
        int line = cur(p)->line;
        advance(p);
        n = bin(p, "~", n, math2(p), line);
    }
    return n;
}
static lmf_jnode *math1(P *p) {
    lmf_jnode *n = concat(p);
    for (;;) {
        const char *op = is_op(p, "+") ? "+" : is_op(p, "-") ? "-" : NULL;
        if (!n || !op) return n;
        int line = cur(p)->line;
        advance(p);
        n = bin(p, op, n, concat(p), line);
    }
}
static lmf_jnode *compare(P *p) {
    lmf_jnode *n = math1(p);
    for (;;) {
        static const char *const ops[] = {"==", "!=", "<=", ">=", "<", ">"};
        const char *op = NULL;
        for (int k = 0; k < 6 && !op; k++)
            if (is_op(p, ops[k])) op = ops[k];
        if (!op && is_name(p, "in")) op = "in";
        if (!op && is_name(p, "not") && is_name_at(p, 1, "in")) op = "not in";
        if (!n || !op) return n;
        int line = cur(p)->line;
        advance(p);
        if (!strcmp(op, "not in")) advance(p);
        n = bin(p, op, n, math1(p), line);
    }
}
static lmf_jnode *not_expr(P *p) {
    if (is_name(p, "not")) {
        ENTER(p);
        int line = cur(p)->line;
        advance(p);
        lmf_jnode *x = not_expr(p);
        if (!x) LEAVE(p, NULL);
        lmf_jnode *n = node(p, JN_NOT, line);
        n->a = x;
        LEAVE(p, n);
    }
    return compare(p);
}
/* a left-associative chain of one keyword operator over operands of the next tighter level: a and b and c */
static lmf_jnode *keyword_chain(P *p, const char *kw, lmf_jnode_kind kind, lmf_jnode *(*operand)(P *)) {
    lmf_jnode *n = operand(p);
    while (n && is_name(p, kw)) {
        int line = cur(p)->line;
        advance(p);
        lmf_jnode *b = operand(p);
        if (!b) return NULL;
        lmf_jnode *x = node(p, kind, line);
        x->a = n, x->b = b;
        n = x;
    }
    return n;
}
static lmf_jnode *and_expr(P *p) { return keyword_chain(p, "and", JN_AND, not_expr); }
static lmf_jnode *or_expr(P *p) { return keyword_chain(p, "or", JN_OR, and_expr); }
/* a if b else c (jinja2: without else, an undefined value) */
static lmf_jnode *expr(P *p) {
    ENTER(p);
    lmf_jnode *n = or_expr(p);
    while (n && is_name(p, "if")) {
        int line = cur(p)->line;
        advance(p);
        lmf_jnode *c = node(p, JN_COND, line);
        c->a = n;
        if (!(c->b = or_expr(p))) LEAVE(p, NULL);
        if (is_name(p, "else")) {
            advance(p);
            if (!(c->c = or_expr(p))) LEAVE(p, NULL);
        }
        n = c;
    }
    LEAVE(p, n);
}

/* ---- statements ----------------------------------------------------------------------------------------------- */
static int expect_bend(P *p) {
    if (cur(p)->t != T_BEND) return fail(p, cur(p)->line, "expected '%}', got", tok_text(p, cur(p)));
    advance(p);
    return 0;
}

/* Statements until a {% NAME %} with NAME among ends (not consumed; *which = its index) or the end (*which = -1). */
static lmf_jnode *body(P *p, const char *const *ends, int n_ends, int *which);

/* An assignment target: a name, ns.attr, or names separated by commas. */
static lmf_jnode *target(P *p, int allow_attr) {
    int line = cur(p)->line;
    nlist names = {0};
    do {
        if (names.n) advance(p);
        const char *s = dotted_name(p);
        if (!s) goto bad;
        lmf_jnode *n = node(p, JN_NAME, line);
        n->s = s, n->sn = strlen(s);
        if (allow_attr && is_op(p, ".") && !names.n) {
            advance(p);
            lmf_jnode *a = node(p, JN_ATTR, line);
            a->a = n;
            if (!(a->s = dotted_name(p))) goto bad;
            a->sn = strlen(a->s);
            free(names.v), free(names.names);
            return a;
        }
        nl_push(&names, n, NULL);
    } while (is_op(p, ","));
    if (names.n == 1) {
        lmf_jnode *n = names.v[0];
        free(names.v), free(names.names);
        return n;
    }
    lmf_jnode *t = node(p, JN_TUPLE, line);
    t->list = nl_done(p, &names, &t->n, NULL);
    return t;
bad:
    free(names.v), free(names.names);
    return NULL;
}

static lmf_jnode *stmt_if(P *p, int line) {
    lmf_jnode *n = node(p, JN_IF, line);
    if (!(n->a = expr(p)) || expect_bend(p)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif"};
    int which;
    if (!(n->b = body(p, ends, 3, &which))) return NULL;
    if (which < 0) return fail(p, line, "missing {% endif %}", NULL), NULL;
    advance(p);
    if (which == 0) {
        int l = cur(p)->line;
        lmf_jnode *e = stmt_if(p, l); /* consumes through the shared endif */
        if (!e) return NULL;
        lmf_jnode *b = node(p, JN_BODY, l);
        b->list = alloc(p, sizeof *b->list);
        b->list[0] = e, b->n = 1;
        n->c = b;
        return n;
    }
    if (which == 1) {
        if (expect_bend(p)) return NULL;
        if (!(n->c = body(p, ends + 2, 1, &which))) return NULL;
        if (which < 0) return fail(p, line, "missing {% endif %}", NULL), NULL;
        advance(p);
    }
    return expect_bend(p) ? NULL : n;
}

static lmf_jnode *statement(P *p) {
    int line = cur(p)->line;
    token *t = cur(p);
    if (t->t == T_TEXT) {
        advance(p);
        lmf_jnode *n = node(p, JN_TEXT, line);
        n->s = t->s, n->sn = t->n;
        return n;
    }
    if (t->t == T_VBEGIN) {
        advance(p);
        lmf_jnode *n = node(p, JN_OUT, line);
        if (!(n->a = tuple(p, 1, 0))) return NULL;
        if (cur(p)->t != T_VEND) return fail(p, cur(p)->line, "expected '}}', got", tok_text(p, cur(p))), NULL;
        advance(p);
        return n;
    }
    if (t->t != T_BBEGIN) return fail(p, line, "unexpected", tok_text(p, t)), NULL;
    advance(p);
    if (cur(p)->t != T_NAME) return fail(p, line, "expected a tag name, got", tok_text(p, cur(p))), NULL;
    if (is_name(p, "if")) {
        advance(p);
        return stmt_if(p, line);
    }
    if (is_name(p, "for")) {
        advance(p);
        lmf_jnode *n = node(p, JN_FOR, line);
        if (!(n->a = target(p, 0))) return NULL;
        if (!is_name(p, "in")) return fail(p, cur(p)->line, "expected 'in' in a for, got", tok_text(p, cur(p))), NULL;
        advance(p);
        if (!(n->b = tuple(p, 0, 0))) return NULL;
        if (is_name(p, "if")) {
            advance(p);
            if (!(n->c = expr(p))) return NULL;
        }
        if (is_name(p, "recursive")) return fail(p, line, "recursive loops are not supported", NULL), NULL;
        if (expect_bend(p)) return NULL;
        static const char *const ends[] = {"else", "endfor"};
        int which;
        p->loops++;
        lmf_jnode *b = body(p, ends, 2, &which);
        p->loops--;
        if (!b) return NULL;
        n->list = b->list, n->n = b->n;
        if (which < 0) return fail(p, line, "missing {% endfor %}", NULL), NULL;
        advance(p);
        if (which == 0) {
            if (expect_bend(p)) return NULL;
            lmf_jnode *e = body(p, ends + 1, 1, &which);
            if (!e) return NULL;
            if (which < 0) return fail(p, line, "missing {% endfor %}", NULL), NULL;
            n->list2 = e->list, n->n2 = e->n;
            advance(p);
        }
        return expect_bend(p) ? NULL : n;
    }
    if (is_name(p, "set")) {
        advance(p);
        lmf_jnode *tg = target(p, 1);
        if (!tg) return NULL;
        if (is_op(p, "=")) {
            advance(p);
            lmf_jnode *n = node(p, JN_SET, line);
            n->a = tg;
            if (!(n->b = tuple(p, 1, 0)) || expect_bend(p)) return NULL;
            return n;
        }
        if (tg->kind != JN_NAME && tg->kind != JN_ATTR)
            return fail(p, line, "a {% set %} block assigns one name", NULL), NULL;
        if (is_op(p, "|")) return fail(p, line, "filtered {% set %} blocks are not supported", NULL), NULL;
        if (expect_bend(p)) return NULL;
        static const char *const ends[] = {"endset"};
        int which;
        lmf_jnode *n = node(p, JN_SETBLOCK, line);
        n->a = tg;
        if (!(n->b = body(p, ends, 1, &which))) return NULL;
        if (which < 0) return fail(p, line, "missing {% endset %}", NULL), NULL;
        advance(p);
        return expect_bend(p) ? NULL : n;
    }
    if (is_name(p, "macro")) {
        advance(p);
        lmf_jnode *n = node(p, JN_MACRO, line);
        if (!(n->s = dotted_name(p))) return NULL;
        n->sn = strlen(n->s);
        if (expect_op(p, "(")) return NULL;
        nlist params = {0}, defaults = {0};
        while (!is_op(p, ")")) {
            if (params.n && expect_op(p, ",")) goto bad_macro;
            if (is_op(p, ")")) break;
            const char *s = dotted_name(p);
            if (!s) goto bad_macro;
            lmf_jnode *pn = node(p, JN_NAME, cur(p)->line);
            pn->s = s, pn->sn = strlen(s);
            lmf_jnode *dv = NULL;
            if (is_op(p, "=")) {
                advance(p);
                if (!(dv = expr(p))) goto bad_macro;
            }
            nl_push(&params, pn, NULL), nl_push(&defaults, dv, NULL);
        }
        advance(p);
        n->list = nl_done(p, &params, &n->n, NULL);
        n->list2 = nl_done(p, &defaults, &n->n2, NULL);
        if (expect_bend(p)) return NULL;
        static const char *const ends[] = {"endmacro"};
        int which, outer = p->loops;
        p->loops = 0; /* a macro's body is not inside the loop around its definition */
        n->b = body(p, ends, 1, &which);
        p->loops = outer;
        if (!n->b) return NULL;
        if (which < 0) return fail(p, line, "missing {% endmacro %}", NULL), NULL;
        advance(p);
        if (cur(p)->t == T_NAME) advance(p); /* {% endmacro name %} */
        return expect_bend(p) ? NULL : n;
    bad_macro:
        free(params.v), free(params.names), free(defaults.v), free(defaults.names);
        return NULL;
    }
    if (is_name(p, "break") || is_name(p, "continue")) {
        if (!p->loops) return fail(p, line, "outside a loop:", tok_text(p, cur(p))), NULL;
        lmf_jnode *n = node(p, is_name(p, "break") ? JN_BREAK : JN_CONTINUE, line);
        advance(p);
        return expect_bend(p) ? NULL : n;
    }
    if (is_name(p, "generation")) { /* transformers' assistant-mask marker: its body renders, its span is noted */
        advance(p);
        if (expect_bend(p)) return NULL;
        static const char *const ends[] = {"endgeneration"};
        int which;
        lmf_jnode *b = body(p, ends, 1, &which);
        if (!b) return NULL;
        if (which < 0) return fail(p, line, "missing {% endgeneration %}", NULL), NULL;
        advance(p);
        lmf_jnode *n = node(p, JN_GENERATION, line);
        n->a = b;
        p->has_generation = 1;
        return expect_bend(p) ? NULL : n;
    }
    return fail(p, line, "unsupported or unexpected tag", tok_text(p, cur(p))), NULL;
}

static lmf_jnode *body(P *p, const char *const *ends, int n_ends, int *which) {
    ENTER(p);
    nlist l = {0};
    *which = -1;
    int line = cur(p)->line;
    while (cur(p)->t != T_EOF) {
        if (cur(p)->t == T_BBEGIN) {
            int hit = -1;
            for (int k = 0; k < n_ends && hit < 0; k++)
                if (is_name_at(p, 1, ends[k])) hit = k;
            if (hit >= 0) {
                advance(p); /* leaves the parser on the end tag's name */
                *which = hit;
                break;
            }
        }
        lmf_jnode *s = statement(p);
        if (!s) {
            free(l.v), free(l.names);
            LEAVE(p, NULL);
        }
        nl_push(&l, s, NULL);
    }
    lmf_jnode *b = node(p, JN_BODY, line);
    b->list = nl_done(p, &l, &b->n, NULL);
    LEAVE(p, b);
}

lmf_status lmf_jinja_compile(const char *src, size_t len, lmf_jinja **out) {
    *out = NULL;
    lmf_jinja *j = lmf_xcalloc(1, sizeof *j);
    P p = {.arena = &j->arena, .line_no = 1};
    /* newlines normalised, one trailing newline dropped (jinja2's keep_trailing_newline=False) */
    char *s = alloc(&p, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    p.src = s, p.len = n;
    int which = -1;
    if (!lex(&p)) {
        j->root = body(&p, NULL, 0, &which);
        if (j->root && cur(&p)->t != T_EOF && !p.err[0]) fail(&p, cur(&p)->line, "unexpected", tok_text(&p, cur(&p)));
    }
    free(p.tok);
    if (p.err[0]) {
        lmf_jinja_free(j);
        return lmf_fail(LMF_ERR_FORMAT, "chat template line %d: %s", p.err_line, p.err);
    }
    j->has_generation = p.has_generation;
    *out = j;
    return LMF_OK;
}

void lmf_jinja_free(lmf_jinja *j) {
    if (!j) return;
    lmf_jarena_free(&j->arena);
    free(j);
}
