/* opts.c — see opts.h. */
#include "cli/opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int takes_value(cli_kind k) { return k != CLI_BOOL && k != CLI_OFF && k != CLI_FN0 && k != CLI_SECTION; }

/* Whether arg names o: the short form exactly, or the long form with '_' read as '-' up to an '=' (whose position,
 * or NULL, goes to *eq). */
static int matches(const cli_opt *o, const char *arg, const char **eq) {
    *eq = NULL;
    if (o->kind == CLI_SECTION) return 0;
    if (o->shrt && !strcmp(arg, o->shrt)) return 1;
    if (!o->lng || strncmp(arg, "--", 2)) return 0;
    const char *a = arg + 2, *n = o->lng + 2;
    for (; *a && *a != '=' && *n; a++, n++)
        if (*a != *n && !(*a == '_' && *n == '-')) return 0;
    if (*n || (*a && *a != '=')) return 0;
    if (*a == '=') *eq = a + 1;
    return 1;
}

static const cli_opt *find(const cli_cmd *c, const char *arg, const char **eq) {
    for (int i = 0; i < c->n_opts; i++)
        if (matches(&c->opts[i], arg, eq)) return &c->opts[i];
    return NULL;
}

static void print_default(const cli_opt *o, char *buf, size_t n) {
    buf[0] = 0;
    if (o->def) {
        if (*o->def) snprintf(buf, n, " [%s]", o->def);
        return;
    }
    switch (o->kind) {
    case CLI_STR: {
        const char *v = *(const char **)o->dst;
        if (v) snprintf(buf, n, " [%s]", v);
        break;
    }
    case CLI_INT: snprintf(buf, n, " [%d]", *(int *)o->dst); break;
    case CLI_FLOAT: snprintf(buf, n, " [%g]", (double)*(float *)o->dst); break;
    case CLI_DOUBLE: snprintf(buf, n, " [%g]", *(double *)o->dst); break;
    case CLI_U64: snprintf(buf, n, " [%llu]", (unsigned long long)*(uint64_t *)o->dst); break;
    default: break;
    }
}

/* Writes text from column `indent` on, wrapped at word boundaries before column 118. */
static void wrap(FILE *f, const char *text, int indent) {
    int col = indent, first = 1;
    const char *p = text;
    while (*p) {
        const char *w = p;
        while (*w == ' ') w++;
        const char *e = w;
        while (*e && *e != ' ') e++;
        int len = (int)(e - w);
        if (!first && col + 1 + len > 118) {
            fprintf(f, "\n%*s", indent - 1, "");
            col = indent;
            first = 1;
        }
        fprintf(f, " %.*s", len, w);
        col += 1 + len, first = 0;
        p = e;
    }
    fputc('\n', f);
}

void cli_help(const cli_cmd *c, FILE *f) {
    fputs(c->usage, f);
    int width = 0;
    char left[128];
    for (int i = 0; i < c->n_opts; i++) {
        const cli_opt *o = &c->opts[i];
        if (o->kind == CLI_SECTION) continue;
        int w = snprintf(left, sizeof left, "%s%s%s%s%s", o->shrt ? o->shrt : "", o->shrt ? ", " : "    ", o->lng,
                         o->meta ? " " : "", o->meta ? o->meta : "");
        if (w > width && w <= 28) width = w;
    }
    fputc('\n', f);
    for (int i = 0; i < c->n_opts; i++) {
        const cli_opt *o = &c->opts[i];
        if (o->kind == CLI_SECTION) {
            fprintf(f, "%s\n", o->help);
            continue;
        }
        char def[160];
        print_default(o, def, sizeof def);
        snprintf(left, sizeof left, "%s%s%s%s%s", o->shrt ? o->shrt : "", o->shrt ? ", " : "    ", o->lng,
                 o->meta ? " " : "", o->meta ? o->meta : "");
        char text[1024];
        snprintf(text, sizeof text, "%s%s", o->help ? o->help : "", def);
        fprintf(f, "  %-*s", width, left);
        wrap(f, text, 3 + width);
    }
    fprintf(f, "  %-*s", width, "-h, --help");
    wrap(f, "this text", 3 + width);
    if (c->footer) fprintf(f, "\n%s", c->footer);
}

/* The machine-readable table for tests/cli_flags.sh: "LONG SHORT|- VALUE|-" per flag. */
static void list_options(const cli_cmd *c) {
    for (int i = 0; i < c->n_opts; i++) {
        const cli_opt *o = &c->opts[i];
        if (o->kind == CLI_SECTION) continue;
        printf("%s %s %s\n", o->lng, o->shrt ? o->shrt : "-", takes_value(o->kind) ? (o->meta ? o->meta : "V") : "-");
    }
}

static int refuse(const cli_cmd *c, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "lmforge %s: ", c->cmd);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 0;
}

static int set_value(const cli_cmd *c, const cli_opt *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case CLI_STR: *(const char **)o->dst = v; return 1;
    case CLI_INT: {
        long x = strtol(v, &end, 10);
        if (errno || *end || end == v || x < o->lo || x > 1L << 30) {
            fprintf(stderr, "lmforge %s: %s expects an integer >= %d, got '%s'\n", c->cmd, o->lng, o->lo, v);
            return 0;
        }
        *(int *)o->dst = (int)x;
        return 1;
    }
    case CLI_FLOAT:
    case CLI_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || *end || end == v || !isfinite(x) || (o->kind == CLI_FLOAT && fabs(x) > 3.4e38))
            return refuse(c, "%s expects a number, got '%s'", o->lng, v);
        if (o->kind == CLI_FLOAT) *(float *)o->dst = (float)x;
        else *(double *)o->dst = x;
        return 1;
    }
    case CLI_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || *end || end == v || v[0] == '-')
            return refuse(c, "%s expects a non-negative integer, got '%s'", o->lng, v);
        *(uint64_t *)o->dst = (uint64_t)x;
        return 1;
    }
    case CLI_LIST: {
        cli_list *l = o->dst;
        if (l->n >= l->max || !*v) {
            fprintf(stderr, "lmforge %s: %s takes a non-empty value, at most %d times\n", c->cmd, o->lng, l->max);
            return 0;
        }
        l->v[l->n++] = v;
        return 1;
    }
    case CLI_FN:
        if (o->fn(o->dst, o->lng, v) != LMF_OK) return refuse(c, "%s%s", lmf_last_error(), "");
        return 1;
    default: return 0;
    }
}

int cli_parse(const cli_cmd *c, int argc, char **argv) {
    const char *list = getenv("LMF_CLI_LIST_OPTIONS");
    if (list && *list && strcmp(list, "0")) {
        list_options(c);
        return -1;
    }
    /* --help first, wherever it stands, so the defaults it shows are the command's, not this command line's */
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        const char *eq;
        const cli_opt *o = find(c, argv[i], &eq);
        if (o && takes_value(o->kind) && !eq) i++;
        else if (!o && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
            cli_help(c, stdout);
            return -1;
        }
    }
    if (c->n_pos) *c->n_pos = 0;
    int flags_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = NULL;
        const cli_opt *o = NULL;
        if (!flags_done && !strcmp(a, "--")) {
            flags_done = 1;
            continue;
        }
        if (flags_done || a[0] != '-' || !a[1]) {
            if (!c->n_pos || *c->n_pos >= c->max_pos) {
                fprintf(stderr, "lmforge %s: unexpected argument '%s'", c->cmd, a);
                if (c->max_pos) fprintf(stderr, " (at most %d; see --help)", c->max_pos);
                fputc('\n', stderr);
                return 0;
            }
            c->pos[(*c->n_pos)++] = a;
            continue;
        }
        if (!(o = find(c, a, &eq))) return refuse(c, "unknown option %s%s", a, "");
        if (!takes_value(o->kind)) {
            if (eq) return refuse(c, "%s takes no value%s", o->lng, "");
            if (o->kind == CLI_FN0) {
                if (o->fn(o->dst, o->lng, NULL) != LMF_OK) return refuse(c, "%s%s", lmf_last_error(), "");
            } else {
                *(int *)o->dst = o->kind == CLI_BOOL;
            }
            continue;
        }
        const char *v = eq;
        if (!v) {
            const char *next = i + 1 < argc ? argv[i + 1] : NULL, *eq2;
            /* "--model --ctx 5": the value is missing, not "--ctx" */
            if (!next || (!strncmp(next, "--", 2) && next[2] && find(c, next, &eq2)))
                return refuse(c, "%s needs a value (%s)", o->lng, o->meta ? o->meta : "a value");
            v = argv[++i];
        }
        if (!set_value(c, o, v)) return 0;
    }
    return 1;
}

cli_pending cli_pending_new(int argc) {
    return (cli_pending){calloc((size_t)argc + 1, sizeof(char *)), calloc((size_t)argc + 1, sizeof(char *)), 0};
}

void cli_pending_free(cli_pending *p) {
    free(p->flag), free(p->value);
    p->flag = p->value = NULL, p->n = 0;
}

lmf_status cli_record(void *dst, const char *flag, const char *value) {
    cli_pending *p = dst;
    p->flag[p->n] = flag, p->value[p->n] = value, p->n++;
    return LMF_OK;
}
