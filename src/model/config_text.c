/* config_text.c — see config_text.h. */
#include "model/config_text.h"
#include "core/alloc.h"
#include "core/status.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#define MODEL_OPT(name, type, field, help)                                                                         \
    {name, type, offsetof(lmf_model_config, field), sizeof(((lmf_model_config *)0)->field), "model", help},
const lmf_opt lmf_model_opts[] = {LMF_MODEL_OPTS(MODEL_OPT)};
#undef MODEL_OPT
const int lmf_model_n_opts = (int)(sizeof lmf_model_opts / sizeof lmf_model_opts[0]);

const lmf_opt *lmf_opt_find(const lmf_opt *table, int n_opts, const char *name) {
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof norm) return NULL;
    for (size_t i = 0; i <= n; i++) norm[i] = name[i] == '-' ? '_' : name[i];
    for (int i = 0; i < n_opts; i++)
        if (!strcmp(table[i].name, norm)) return &table[i];
    return NULL;
}

lmf_status lmf_opt_set(void *base, const lmf_opt *o, const char *v, const char *where) {
    void *p = (char *)base + o->offset;
    char *end;
    errno = 0;
    switch (o->type) {
    case LMF_OPT_INT: {
        long x = strtol(v, &end, 10);
        if (end == v || *end || errno || x < INT_MIN || x > INT_MAX)
            return lmf_fail(LMF_ERR_ARG, "%s: %s expects an integer, got '%s'", where, o->name, v);
        *(int *)p = (int)x;
        return LMF_OK;
    }
    case LMF_OPT_I64: {
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno)
            return lmf_fail(LMF_ERR_ARG, "%s: %s expects an integer, got '%s'", where, o->name, v);
        *(long long *)p = x;
        return LMF_OK;
    }
    case LMF_OPT_FLOAT: {
        float x = strtof(v, &end);
        if (end == v || *end || errno || !isfinite(x))
            return lmf_fail(LMF_ERR_ARG, "%s: %s expects a number, got '%s'", where, o->name, v);
        *(float *)p = x;
        return LMF_OK;
    }
    case LMF_OPT_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) *(int *)p = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) *(int *)p = 0;
        else return lmf_fail(LMF_ERR_ARG, "%s: %s expects true or false, got '%s'", where, o->name, v);
        return LMF_OK;
    case LMF_OPT_ARCH: {
        lmf_arch a;
        if (lmf_arch_parse(v, &a) != LMF_OK)
            return lmf_fail(LMF_ERR_ARG, "%s: arch: unknown model family '%s' (gpt2, llama, opt, qwen2, qwen3, olmoe "
                            "or phi3)", where, v);
        /* the family brings its knobs (norm, act, positions, biases): arch is the config's first field */
        _Static_assert(offsetof(lmf_model_config, arch) == 0, "arch opens lmf_model_config");
        lmf_model_config_set_arch((lmf_model_config *)p, a);
        return LMF_OK;
    }
    case LMF_OPT_STR:
        if (strlen(v) >= o->size)
            return lmf_fail(LMF_ERR_ARG, "%s: %s is longer than %zu characters", where, o->name, o->size - 1);
        strcpy((char *)p, v);
        return LMF_OK;
    }
    return lmf_fail(LMF_ERR_ARG, "%s: %s: unhandled option type", where, o->name);
}

void lmf_opt_format(const void *base, const lmf_opt *o, char *val, size_t n) {
    const void *p = (const char *)base + o->offset;
    switch (o->type) {
    case LMF_OPT_INT: case LMF_OPT_BOOL: snprintf(val, n, "%d", *(const int *)p); break;
    case LMF_OPT_I64: snprintf(val, n, "%lld", *(const long long *)p); break;
    case LMF_OPT_FLOAT: snprintf(val, n, "%.9g", *(const float *)p); break;
    case LMF_OPT_ARCH: snprintf(val, n, "%s", lmf_arch_name(*(const lmf_arch *)p)); break;
    case LMF_OPT_STR: snprintf(val, n, "\"%s\"", (const char *)p); break;
    }
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

lmf_status lmf_kv_text_parse(const char *text, const char *source, lmf_kv_fn fn, void *ctx) {
    size_t len = strlen(text);
    char *copy = lmf_xmalloc(len + 1), *save = NULL, where[1200];
    memcpy(copy, text, len + 1);
    int lineno = 0;
    lmf_status s = LMF_OK;
    /* strtok_r would skip empty lines and so miscount line numbers: split by hand. */
    for (char *line = copy; line && s == LMF_OK; line = save) {
        save = strchr(line, '\n');
        if (save) *save++ = 0;
        lineno++;
        snprintf(where, sizeof where, "%s:%d", source, lineno);
        char *l = trim(line);
        if (!*l || *l == '#') continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            s = lmf_fail(LMF_ERR_ARG, "%s: expected `name = value`, got '%s'", where, l);
            break;
        }
        *eq = 0;
        char *key = trim(l), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') val[vl - 1] = 0, val++;
        else {
            char *hash = strchr(val, '#'); /* trailing comment on an unquoted value */
            if (hash) *hash = 0, val = trim(val);
        }
        s = fn(ctx, key, val, where);
    }
    free(copy);
    return s;
}

static lmf_status set_model_field(void *ctx, const char *key, const char *value, const char *where) {
    const lmf_opt *o = lmf_opt_find(lmf_model_opts, lmf_model_n_opts, key);
    return o ? lmf_opt_set(ctx, o, value, where) : LMF_OK;
}

lmf_status lmf_model_config_from_text(const char *text, const char *source, lmf_model_config *cfg) {
    return lmf_kv_text_parse(text, source, set_model_field, cfg);
}

typedef struct {
    const char *key;
    char *out;
    size_t n;
    int found;
} kv_get;

static lmf_status get_one(void *ctx, const char *key, const char *value, const char *where) {
    kv_get *g = ctx;
    if (strcmp(key, g->key)) return LMF_OK;
    g->found = strlen(value) < g->n;
    if (g->found) strcpy(g->out, value);
    return LMF_OK;
}

int lmf_kv_text_get(const char *text, const char *key, char *out, size_t n) {
    kv_get g = {key, out, n, 0};
    if (lmf_kv_text_parse(text, "config text", get_one, &g) != LMF_OK) lmf_clear_error();
    return g.found;
}
