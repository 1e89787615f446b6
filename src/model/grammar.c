/* grammar.c — constrained decoding: generation restricted to JSON (any object, or a JSON Schema) or to Hermes-style
 * tool calls, the way vLLM's guided decoding and llama.cpp's grammars restrict it (docs/serving.md).
 *
 * A grammar is a pushdown automaton over bytes. The schema compiles to nodes (what a value may be: its types, an
 * object's properties and required keys, an array's items and bounds, an enum's literal texts, a union's
 * alternatives); the state is a stack of small frames (the value being read, where in it the reader is). A token is
 * allowed when every byte of it is accepted in turn; the stop tokens only where the grammar is complete.
 *
 * Masks walk the vocabulary in byte order: consecutive tokens share prefixes, so the state after a shared prefix is
 * kept (one state per byte depth) and a prefix that was refused refuses every token that starts with it, without
 * feeding a byte. A state is copied frame by frame up to its depth only (frames are 16 bytes), so one mask over a
 * 49k vocabulary costs about a millisecond. */
#include "core/alloc.h"
#include "core/status.h"
#include "lmforge.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T_OBJ = 1, T_ARR = 2, T_STR = 4, T_NUM = 8, T_INT = 16, T_BOOL = 32, T_NULL = 64, T_ALL = 127 };

#define MAX_DEPTH 32   /* nesting deeper than this is not generated */
#define MAX_PROPS 64   /* properties of one object (the seen and candidate sets are 64-bit masks) */
#define MAX_LITS 64    /* enum values of one node */
#define WS_MAX 64      /* whitespace bytes in a row between structural bytes (a model cannot pad forever) */

typedef struct {
    unsigned types;         /* T_* the value may take (without lits: decided by its first byte) */
    int n_props;            /* an object's properties (keys JSON-escaped, as they appear between the quotes) */
    char **keys;
    size_t *key_len;
    int *props;             /* node of each property's value */
    uint64_t required;
    int extra;              /* node of other keys' values, -1: no other keys */
    int items;              /* node of an array's items */
    int min_items, max_items;
    int n_lits;             /* enum / const: the value is one of these texts (compact JSON) */
    char **lits;
    size_t *lit_len;
    int n_alts;             /* anyOf / oneOf: alternatives, told apart by their first byte */
    int *alts;
    int alias;              /* a $ref: the node it names (-1: none); gone once the grammar is finished */
} gnode;

struct lmf_grammar {
    gnode *n;
    int count, cap;
    int root;
    /* tool calls: open CHOICE mid VALUE close [sep open ...]; choice is a node whose keys are the function names
     * and whose property nodes are their arguments' schemas */
    int tools, parallel, choice;
    const char *open, *mid, *close;
};

enum { F_VALUE, F_OBJ, F_KEY, F_ARR, F_STR, F_NUM, F_WORD, F_LIT, F_SEQ };
/* F_OBJ subs: after '{', after a key, after ':' (value pushed), after a value, after ',' */
enum { O_OPEN, O_KEY, O_COLON, O_VALUE, O_COMMA };
/* F_ARR subs */
enum { A_OPEN, A_VALUE, A_COMMA };
/* F_NUM subs; the accepting ones are N_ZERO, N_INT, N_FRAC, N_EXP */
enum { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

typedef struct {
    int32_t node;  /* F_SEQ: the chosen function; F_WORD: the word */
    uint8_t kind, sub;
    uint16_t aux;  /* F_OBJ: the key being read; F_ARR: items so far; F_KEY / F_LIT / F_WORD / F_SEQ: bytes matched;
                      F_STR: UTF-8 continuation bytes still due (low byte), key flag (0x100) */
    uint64_t mask; /* F_OBJ: keys seen; F_KEY / F_LIT: candidates left */
} frame;

struct lmf_grammar_state {
    const lmf_grammar *g;
    int depth, ws;
    frame f[MAX_DEPTH];
};

/* ---- compiling a schema ----------------------------------------------------------------------------------------- */

static int node_new(lmf_grammar *g, unsigned types) {
    if (g->count == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 16;
        g->n = lmf_xrealloc(g->n, (size_t)g->cap * sizeof *g->n);
    }
    gnode *n = &g->n[g->count];
    memset(n, 0, sizeof *n);
    n->types = types;
    n->extra = -1;
    n->items = 0; /* node 0 is "any value" */
    n->max_items = 65535;
    n->alias = -1;
    return g->count++;
}

static void node_free(gnode *n) {
    for (int i = 0; i < n->n_props; i++) free(n->keys[i]);
    for (int i = 0; i < n->n_lits; i++) free(n->lits[i]);
    LMF_FREE_ALL(n->keys, n->key_len, n->props, n->lits, n->lit_len, n->alts);
}

void lmf_grammar_free(lmf_grammar *g) {
    if (!g) return;
    for (int i = 0; i < g->count; i++) node_free(&g->n[i]);
    free(g->n);
    free(g);
}

static lmf_grammar *grammar_new(void) {
    lmf_grammar *g = lmf_xcalloc(1, sizeof *g);
    int any = node_new(g, T_ALL); /* node 0: any value (objects with any keys, arrays of anything) */
    g->n[any].extra = any;
    return g;
}

/* The JSON text between the quotes of a string as cJSON writes it. */
static char *escaped(const char *s, size_t *len) {
    cJSON *j = cJSON_CreateString(s);
    char *q = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    size_t n = strlen(q);
    memmove(q, q + 1, n - 2);
    q[n - 2] = 0;
    *len = n - 2;
    char *r = lmf_xmalloc(n - 1);
    memcpy(r, q, n - 1);
    cJSON_free(q);
    return r;
}

static unsigned lit_type(const char *t) {
    switch (t[0]) {
    case '{': return T_OBJ;
    case '[': return T_ARR;
    case '"': return T_STR;
    case 't': case 'f': return T_BOOL;
    case 'n': return T_NULL;
    default: return T_NUM | T_INT;
    }
}

typedef struct {
    lmf_grammar *g;
    const cJSON *root;
    char *refs[64];  /* "$ref" strings compiled so far, and their nodes (recursive schemas refer to themselves) */
    int ref_node[64], n_refs;
} compiler;

static lmf_status compile(compiler *c, const cJSON *s, const char *path, int depth, int *out);

static lmf_status add_lit(gnode *n, const cJSON *v, const char *path) {
    if (n->n_lits == MAX_LITS) return lmf_fail(LMF_ERR_ARG, "%s: more than %d enum values", path, MAX_LITS);
    char *t = cJSON_PrintUnformatted(v);
    n->lits = lmf_xrealloc(n->lits, (size_t)(n->n_lits + 1) * sizeof *n->lits);
    n->lit_len = lmf_xrealloc(n->lit_len, (size_t)(n->n_lits + 1) * sizeof *n->lit_len);
    n->lit_len[n->n_lits] = strlen(t);
    n->lits[n->n_lits] = lmf_xmalloc(n->lit_len[n->n_lits] + 1);
    memcpy(n->lits[n->n_lits++], t, strlen(t) + 1);
    cJSON_free(t);
    return LMF_OK;
}

static lmf_status type_bits(const cJSON *t, const char *path, unsigned *out) {
    static const char *const NAMES[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
    static const unsigned BITS[] = {T_OBJ, T_ARR, T_STR, T_NUM | T_INT, T_INT, T_BOOL, T_NULL};
    *out = 0;
    const cJSON *one = cJSON_IsArray(t) ? t->child : t;
    for (; one; one = cJSON_IsArray(t) ? one->next : NULL) {
        int k = 0;
        while (k < 7 && !(cJSON_IsString(one) && !strcmp(one->valuestring, NAMES[k]))) k++;
        if (k == 7) return lmf_fail(LMF_ERR_ARG, "%s.type: expected a JSON Schema type name or a list of them", path);
        *out |= BITS[k];
    }
    return LMF_OK;
}

static lmf_status resolve_ref(compiler *c, const char *ref, const char *path, int depth, int *out) {
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i], ref)) {
            *out = c->ref_node[i];
            return LMF_OK;
        }
    const char *name = NULL, *sec = NULL;
    if (!strncmp(ref, "#/$defs/", 8)) sec = "$defs", name = ref + 8;
    else if (!strncmp(ref, "#/definitions/", 14)) sec = "definitions", name = ref + 14;
    else if (!strcmp(ref, "#")) name = "";
    if (!name) return lmf_fail(LMF_ERR_ARG, "%s.$ref: \"%s\": only \"#\", \"#/$defs/NAME\" and \"#/definitions/NAME\" "
                               "are supported", path, ref);
    const cJSON *target = sec ? cJSON_GetObjectItemCaseSensitive(
                                    cJSON_GetObjectItemCaseSensitive(c->root, sec), name) : c->root;
    if (!cJSON_IsObject(target) && !cJSON_IsTrue(target))
        return lmf_fail(LMF_ERR_ARG, "%s.$ref: \"%s\" names no schema", path, ref);
    if (c->n_refs == 64) return lmf_fail(LMF_ERR_ARG, "%s.$ref: more than 64 distinct references", path);
    /* an alias node exists before its target is compiled, so a reference inside the target to itself finds it;
     * aliases are replaced by their targets when the grammar is complete (finish) */
    int n = node_new(c->g, 0);
    c->refs[c->n_refs] = strdup(ref);
    c->ref_node[c->n_refs++] = n;
    int body;
    lmf_status st = compile(c, target, ref, depth + 1, &body);
    if (st != LMF_OK) return st;
    c->g->n[n].alias = body;
    *out = n;
    return LMF_OK;
}

static const char *const ANNOTATIONS[] = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                                           "format", "$defs", "definitions", "strict", "readOnly", "writeOnly",
                                           "deprecated"};

static int is_annotation(const char *k) {
    for (size_t i = 0; i < sizeof ANNOTATIONS / sizeof *ANNOTATIONS; i++)
        if (!strcmp(k, ANNOTATIONS[i])) return 1;
    return 0;
}

static lmf_status compile(compiler *c, const cJSON *s, const char *path, int depth, int *out) {
    static const char *const HANDLED[] = {"type", "properties", "required", "additionalProperties", "items",
                                          "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "$ref"};
    lmf_grammar *g = c->g;
    if (depth > 64) return lmf_fail(LMF_ERR_ARG, "%s: schema nested deeper than 64", path);
    if (cJSON_IsTrue(s)) {
        *out = 0;
        return LMF_OK;
    }
    if (!cJSON_IsObject(s)) return lmf_fail(LMF_ERR_ARG, "%s: expected a schema (an object or true)", path);
    for (const cJSON *k = s->child; k; k = k->next) {
        int known = is_annotation(k->string);
        for (size_t i = 0; i < sizeof HANDLED / sizeof *HANDLED && !known; i++) known = !strcmp(k->string, HANDLED[i]);
        if (!known)
            return lmf_fail(LMF_ERR_ARG, "%s: keyword \"%s\" is not supported (docs/serving.md lists the supported "
                            "subset)", path, k->string);
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (ref) {
        if (!cJSON_IsString(ref)) return lmf_fail(LMF_ERR_ARG, "%s.$ref: expected a string", path);
        for (const cJSON *k = s->child; k; k = k->next)
            if (k != ref && !is_annotation(k->string))
                return lmf_fail(LMF_ERR_ARG, "%s: \"$ref\" beside \"%s\" is not supported", path, k->string);
        return resolve_ref(c, ref->valuestring, path, depth, out);
    }
    char sub[256];
    const cJSON *alts = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
    if (!alts) alts = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
    if (alts) {
        if (!cJSON_IsArray(alts) || !alts->child)
            return lmf_fail(LMF_ERR_ARG, "%s.anyOf: expected a list of schemas", path);
        for (const cJSON *k = s->child; k; k = k->next)
            if (k != alts && !is_annotation(k->string))
                return lmf_fail(LMF_ERR_ARG, "%s: \"%s\" beside anyOf/oneOf is not supported", path, k->string);
        int n = node_new(g, 0), i = 0;
        for (const cJSON *a = alts->child; a; a = a->next, i++) {
            snprintf(sub, sizeof sub, "%s.anyOf[%d]", path, i);
            int an;
            lmf_status st = compile(c, a, sub, depth + 1, &an);
            if (st != LMF_OK) return st;
            gnode *nn = &g->n[n];
            nn->alts = lmf_xrealloc(nn->alts, (size_t)(nn->n_alts + 1) * sizeof *nn->alts);
            nn->alts[nn->n_alts++] = an;
        }
        *out = n;
        return LMF_OK; /* types and the alternatives' distinctness: finish */
    }
    int n = node_new(g, T_ALL);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type"), *e;
    if (t) {
        unsigned bits;
        lmf_status st = type_bits(t, path, &bits);
        if (st != LMF_OK) return st;
        g->n[n].types = bits;
    }
    if ((e = cJSON_GetObjectItemCaseSensitive(s, "enum")) || (e = cJSON_GetObjectItemCaseSensitive(s, "const"))) {
        int is_enum = !strcmp(e->string, "enum");
        if (is_enum && (!cJSON_IsArray(e) || !e->child))
            return lmf_fail(LMF_ERR_ARG, "%s.enum: expected a non-empty list", path);
        unsigned types = 0;
        for (const cJSON *v = is_enum ? e->child : e; v; v = is_enum ? v->next : NULL) {
            lmf_status st = add_lit(&g->n[n], v, path);
            if (st != LMF_OK) return st;
            types |= lit_type(g->n[n].lits[g->n[n].n_lits - 1]);
        }
        g->n[n].types &= types;
        if (!g->n[n].types) return lmf_fail(LMF_ERR_ARG, "%s: no enum value has the schema's type", path);
        *out = n;
        return LMF_OK;
    }
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props) {
        if (!cJSON_IsObject(props)) return lmf_fail(LMF_ERR_ARG, "%s.properties: expected an object", path);
        if (addl && !cJSON_IsFalse(addl))
            return lmf_fail(LMF_ERR_ARG, "%s.additionalProperties: only false is supported beside properties (keys "
                            "outside properties are never generated)", path);
        for (const cJSON *p = props->child; p; p = p->next) {
            if (g->n[n].n_props == MAX_PROPS)
                return lmf_fail(LMF_ERR_ARG, "%s.properties: more than %d", path, MAX_PROPS);
            snprintf(sub, sizeof sub, "%s.properties.%s", path, p->string);
            int pn;
            lmf_status st = compile(c, p, sub, depth + 1, &pn);
            if (st != LMF_OK) return st;
            gnode *nn = &g->n[n];
            int k = nn->n_props++;
            nn->keys = lmf_xrealloc(nn->keys, (size_t)nn->n_props * sizeof *nn->keys);
            nn->key_len = lmf_xrealloc(nn->key_len, (size_t)nn->n_props * sizeof *nn->key_len);
            nn->props = lmf_xrealloc(nn->props, (size_t)nn->n_props * sizeof *nn->props);
            nn->keys[k] = escaped(p->string, &nn->key_len[k]);
            nn->props[k] = pn;
        }
    } else if (cJSON_IsFalse(addl)) {
        g->n[n].extra = -1;
    } else if (addl && !cJSON_IsTrue(addl)) {
        snprintf(sub, sizeof sub, "%s.additionalProperties", path);
        int an;
        lmf_status st = compile(c, addl, sub, depth + 1, &an);
        if (st != LMF_OK) return st;
        g->n[n].extra = an;
    } else {
        g->n[n].extra = 0;
    }
    if (req) {
        if (!cJSON_IsArray(req)) return lmf_fail(LMF_ERR_ARG, "%s.required: expected a list of names", path);
        for (const cJSON *r = req->child; r; r = r->next) {
            int k = -1;
            for (int i = 0; cJSON_IsString(r) && i < g->n[n].n_props && k < 0; i++) {
                size_t len;
                char *esc = escaped(r->valuestring, &len);
                if (len == g->n[n].key_len[i] && !memcmp(esc, g->n[n].keys[i], len)) k = i;
                free(esc);
            }
            if (k < 0)
                return lmf_fail(LMF_ERR_ARG, "%s.required: %s%s%s is not one of the properties", path,
                                cJSON_IsString(r) ? "\"" : "", cJSON_IsString(r) ? r->valuestring : "an entry",
                                cJSON_IsString(r) ? "\"" : "");
            g->n[n].required |= 1ull << k;
        }
    }
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    if (items) {
        snprintf(sub, sizeof sub, "%s.items", path);
        int in;
        lmf_status st = compile(c, items, sub, depth + 1, &in);
        if (st != LMF_OK) return st;
        g->n[n].items = in;
    }
    const char *bounds[2] = {"minItems", "maxItems"};
    for (int b = 0; b < 2; b++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, bounds[b]);
        if (!v) continue;
        double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (x < 0 || x > 65535 || x != floor(x))
            return lmf_fail(LMF_ERR_ARG, "%s.%s: expected an integer in 0..65535", path, bounds[b]);
        *(b ? &g->n[n].max_items : &g->n[n].min_items) = (int)v->valuedouble;
    }
    if (g->n[n].min_items > g->n[n].max_items)
        return lmf_fail(LMF_ERR_ARG, "%s: minItems > maxItems", path);
    *out = n;
    return LMF_OK;
}

/* The node a reference leads to: aliases followed. -1 for a cycle of aliases. */
static int target(const lmf_grammar *g, int i) {
    for (int steps = 0; steps <= g->count; steps++) {
        if (g->n[i].alias < 0) return i;
        i = g->n[i].alias;
    }
    return -1;
}

/* Replaces every reference to an alias by its target, then gives unions their types and checks that their
 * alternatives can be told apart by a value's first byte. */
static lmf_status finish(lmf_grammar *g) {
    for (int i = 0; i < g->count; i++) {
        gnode *n = &g->n[i];
        int *refs[3] = {&n->items, &n->extra, NULL};
        for (int r = 0; refs[r]; r++)
            if (*refs[r] >= 0 && (*refs[r] = target(g, *refs[r])) < 0)
                return lmf_fail(LMF_ERR_ARG, "schema: a $ref cycle that never reaches a schema");
        for (int k = 0; k < n->n_props; k++)
            if ((n->props[k] = target(g, n->props[k])) < 0)
                return lmf_fail(LMF_ERR_ARG, "schema: a $ref cycle that never reaches a schema");
        for (int k = 0; k < n->n_alts; k++)
            if ((n->alts[k] = target(g, n->alts[k])) < 0)
                return lmf_fail(LMF_ERR_ARG, "schema: a $ref cycle that never reaches a schema");
    }
    if ((g->root = target(g, g->root)) < 0) return lmf_fail(LMF_ERR_ARG, "schema: a $ref cycle");
    for (int i = 0; i < g->count; i++) {
        gnode *n = &g->n[i];
        if (!n->n_alts) continue;
        unsigned seen = 0;
        n->types = 0;
        for (int k = 0; k < n->n_alts; k++) {
            const gnode *a = &g->n[n->alts[k]];
            if (a->n_alts) return lmf_fail(LMF_ERR_ARG, "schema: an anyOf / oneOf inside another is not supported");
            /* integer and number start alike: one of them at most */
            unsigned first = (a->types & (T_NUM | T_INT)) ? (a->types & ~(unsigned)(T_NUM | T_INT)) | T_NUM : a->types;
            if (first & seen)
                return lmf_fail(LMF_ERR_ARG, "schema: anyOf / oneOf alternatives must differ in JSON type (object, "
                                "array, string, number, boolean, null): constrained decoding tells them apart by the "
                                "first byte of the value");
            seen |= first;
            n->types |= a->types;
        }
    }
    return LMF_OK;
}

static lmf_status compile_text(lmf_grammar *g, const char *schema, const char *what, int *out) {
    cJSON *root = cJSON_Parse(schema);
    if (!root) return lmf_fail(LMF_ERR_ARG, "%s: not valid JSON", what);
    compiler c = {.g = g, .root = root};
    lmf_status st = compile(&c, root, what, 0, out);
    for (int i = 0; i < c.n_refs; i++) free(c.refs[i]);
    cJSON_Delete(root);
    return st;
}

lmf_status lmf_grammar_json(const char *schema, lmf_grammar **out) {
    *out = NULL;
    lmf_grammar *g = grammar_new();
    lmf_status st = LMF_OK;
    if (schema) {
        st = compile_text(g, schema, "schema", &g->root);
        if (st == LMF_OK) st = finish(g);
        if (st == LMF_OK && !(g->n[g->root].types & (T_OBJ | T_ARR)))
            st = lmf_fail(LMF_ERR_ARG, "schema: the root must allow an object or an array");
    } else {
        g->root = node_new(g, T_OBJ); /* JSON mode: any object */
        g->n[g->root].extra = 0;
    }
    if (st != LMF_OK) {
        lmf_grammar_free(g);
        return st;
    }
    *out = g;
    return LMF_OK;
}

lmf_status lmf_grammar_tool_calls(int n, const char *const *names, const char *const *params, int parallel,
                                  lmf_grammar **out) {
    *out = NULL;
    if (n < 1 || n > MAX_PROPS) return lmf_fail(LMF_ERR_ARG, "tool calls: %d functions (1..%d)", n, MAX_PROPS);
    lmf_grammar *g = grammar_new();
    g->tools = 1, g->parallel = parallel;
    g->open = "<tool_call>\n{\"name\": \"";
    g->mid = ", \"arguments\": ";
    g->close = "}\n</tool_call>";
    g->choice = node_new(g, T_OBJ);
    lmf_status st = LMF_OK;
    for (int i = 0; i < n && st == LMF_OK; i++) {
        size_t len;
        char *key = escaped(names[i], &len), what[160];
        int an = -1, dup = 0;
        for (int j = 0; j < g->n[g->choice].n_props && !dup; j++)
            dup = g->n[g->choice].key_len[j] == len && !memcmp(g->n[g->choice].keys[j], key, len);
        snprintf(what, sizeof what, "%.100s.parameters", names[i]);
        if (dup) { /* a name twice: the first one's schema (the model can only name one) */
            free(key);
            continue;
        }
        if (params && params[i]) {
            st = compile_text(g, params[i], what, &an);
        } else {
            an = node_new(g, T_OBJ);
            g->n[an].extra = 0;
        }
        gnode *c = &g->n[g->choice];
        c->keys = lmf_xrealloc(c->keys, (size_t)(c->n_props + 1) * sizeof *c->keys);
        c->key_len = lmf_xrealloc(c->key_len, (size_t)(c->n_props + 1) * sizeof *c->key_len);
        c->props = lmf_xrealloc(c->props, (size_t)(c->n_props + 1) * sizeof *c->props);
        c->keys[c->n_props] = key, c->key_len[c->n_props] = len;
        c->props[c->n_props++] = an < 0 ? 0 : an;
    }
    if (st == LMF_OK) st = finish(g);
    for (int i = 0; st == LMF_OK && i < g->n[g->choice].n_props; i++)
        if (!(g->n[g->n[g->choice].props[i]].types & T_OBJ))
            st = lmf_fail(LMF_ERR_ARG, "%.*s.parameters: the arguments must allow an object",
                          (int)g->n[g->choice].key_len[i], g->n[g->choice].keys[i]);
    if (st != LMF_OK) {
        lmf_grammar_free(g);
        return st;
    }
    *out = g;
    return LMF_OK;
}

/* ---- the automaton ---------------------------------------------------------------------------------------------- */

lmf_grammar_state *lmf_grammar_state_create(const lmf_grammar *g) {
    lmf_grammar_state *s = lmf_xcalloc(1, sizeof *s);
    s->g = g;
    s->depth = 1;
    s->f[0] = g->tools ? (frame){.kind = F_SEQ} : (frame){.kind = F_VALUE, .node = g->root};
    return s;
}

void lmf_grammar_state_free(lmf_grammar_state *s) { free(s); }

static int is_ws(int c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

static int push(lmf_grammar_state *s, frame f) {
    if (s->depth == MAX_DEPTH) return 0;
    s->f[s->depth++] = f;
    return 1;
}

static uint64_t all_bits(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

/* The frame on top finished its value (or key): pop it and move its parent on. */
static int child_done(lmf_grammar_state *s) {
    s->depth--;
    if (s->depth == 0) return 1;
    frame *p = &s->f[s->depth - 1];
    switch (p->kind) {
    case F_OBJ:
        if (p->sub == O_OPEN || p->sub == O_COMMA) p->sub = O_KEY;
        else p->sub = O_VALUE, p->mask |= p->aux < MAX_PROPS ? 1ull << p->aux : 0;
        return 1;
    case F_ARR: p->sub = A_VALUE, p->aux++; return 1;
    case F_SEQ: p->sub++, p->aux = 0; return 1;
    default: return 0;
    }
}

static int num_accepting(int sub) { return sub == N_ZERO || sub == N_INT || sub == N_FRAC || sub == N_EXP; }

/* Starts the value of node `node` with byte c: the F_VALUE frame on top becomes the value's frame. Returns 1 when c
 * was consumed, 2 when the new frame must read c itself, 0 when c cannot start such a value. */
static int start_value(lmf_grammar_state *s, frame *f, int c) {
    const lmf_grammar *g = s->g;
    const gnode *n = &g->n[f->node];
    unsigned want = c == '{' ? T_OBJ : c == '[' ? T_ARR : c == '"' ? T_STR : (c == '-' || (c >= '0' && c <= '9'))
                    ? (T_NUM | T_INT) : (c == 't' || c == 'f') ? T_BOOL : c == 'n' ? T_NULL : 0;
    if (!(n->types & want)) return 0;
    for (int i = 0; i < n->n_alts; i++)
        if (g->n[n->alts[i]].types & want) {
            f->node = n->alts[i];
            n = &g->n[f->node];
            break;
        }
    if (n->n_lits) {
        *f = (frame){.kind = F_LIT, .node = f->node, .mask = all_bits(n->n_lits)};
        return 2;
    }
    switch (want) {
    case T_OBJ: *f = (frame){.kind = F_OBJ, .node = f->node, .sub = O_OPEN}; return 1;
    case T_ARR: *f = (frame){.kind = F_ARR, .node = f->node, .sub = A_OPEN}; return 1;
    case T_STR: *f = (frame){.kind = F_STR, .node = f->node}; return 1;
    case T_BOOL: *f = (frame){.kind = F_WORD, .node = c == 't' ? 0 : 1}; return 2;
    case T_NULL: *f = (frame){.kind = F_WORD, .node = 2}; return 2;
    default: *f = (frame){.kind = F_NUM, .node = f->node, .sub = N_START}; return 2;
    }
}

static int lit_step(lmf_grammar_state *s, const char *lit, size_t len, int c) {
    frame *f = &s->f[s->depth - 1];
    if (f->aux >= len || lit[f->aux] != c) return 0;
    f->aux++;
    return 1;
}

/* Feeds one byte: 1 accepted, 0 refused (the state is then unusable: callers feed copies). */
static int feed(lmf_grammar_state *s, int c) {
    static const char *const WORDS[] = {"true", "false", "null"};
    const lmf_grammar *g = s->g;
    for (;;) {
        if (s->depth == 0) return 0;
        frame *f = &s->f[s->depth - 1];
        /* F_WORD's and F_SEQ's node field holds a word / function index, not a node */
        const gnode *n = f->kind == F_WORD || f->kind == F_SEQ ? NULL : &g->n[f->node];
        int ws = is_ws(c);
        switch (f->kind) {
        case F_VALUE: {
            if (ws) return s->depth > 1 && ++s->ws <= WS_MAX; /* the reply starts with its JSON at once */
            int r = start_value(s, f, c);
            if (r == 2) continue;
            s->ws = 0;
            return r;
        }
        case F_OBJ:
            if (ws) return ++s->ws <= WS_MAX;
            s->ws = 0;
            switch (f->sub) {
            case O_OPEN:
            case O_COMMA:
                if (c == '}' && f->sub == O_OPEN && !n->required) return child_done(s);
                if (c != '"' || (!n->n_props && n->extra < 0)) return 0;
                if (n->n_props) {
                    uint64_t cand = all_bits(n->n_props) & ~f->mask;
                    return cand && push(s, (frame){.kind = F_KEY, .node = f->node, .mask = cand});
                }
                return push(s, (frame){.kind = F_STR, .node = 0, .aux = 0x100});
            case O_KEY:
                if (c != ':') return 0;
                f->sub = O_COLON;
                return push(s, (frame){.kind = F_VALUE, .node = n->n_props ? n->props[f->aux] : n->extra});
            case O_VALUE:
                if (c == '}') return (n->required & ~f->mask) ? 0 : child_done(s);
                if (c != ',') return 0;
                if (n->n_props && !(all_bits(n->n_props) & ~f->mask)) return 0;
                f->sub = O_COMMA;
                return 1;
            default: return 0;
            }
        case F_KEY: {
            /* a property name: the candidates are the keys not yet seen that match so far */
            if (c == '"') {
                for (int k = 0; k < n->n_props; k++)
                    if ((f->mask >> k & 1) && n->key_len[k] == f->aux) {
                        frame *p = &s->f[s->depth - 2];
                        if (p->kind == F_SEQ) p->node = k;
                        else p->aux = (uint16_t)k;
                        return child_done(s);
                    }
                return 0;
            }
            uint64_t keep = 0;
            for (int k = 0; k < n->n_props; k++)
                if ((f->mask >> k & 1) && f->aux < n->key_len[k] && n->keys[k][f->aux] == c) keep |= 1ull << k;
            if (!keep) return 0;
            f->mask = keep, f->aux++;
            return 1;
        }
        case F_ARR:
            if (ws) return ++s->ws <= WS_MAX;
            if (f->sub == A_VALUE) {
                s->ws = 0;
                if (c == ']') return f->aux >= n->min_items ? child_done(s) : 0;
                if (c != ',' || f->aux >= n->max_items) return 0;
                f->sub = A_COMMA;
                return 1;
            }
            if (c == ']' && f->sub == A_OPEN) {
                s->ws = 0;
                return n->min_items == 0 ? child_done(s) : 0;
            }
            if (f->aux >= n->max_items) return 0;
            if (!push(s, (frame){.kind = F_VALUE, .node = n->items})) return 0;
            continue;
        case F_STR: {
            int cont = f->aux & 0xff;
            if (cont) {
                if ((c & 0xc0) != 0x80) return 0;
                f->aux--;
                return 1;
            }
            if (f->sub == 1) { /* after a backslash */
                if (c == 'u') f->sub = 2;
                else if (strchr("\"\\/bfnrt", c) && c) f->sub = 0;
                else return 0;
                return 1;
            }
            if (f->sub >= 2) { /* \u and its four hex digits */
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return 0;
                f->sub = f->sub == 5 ? 0 : f->sub + 1;
                return 1;
            }
            if (c == '"') return child_done(s);
            if (c == '\\') f->sub = 1;
            else if (c < 0x20) return 0;
            else if (c >= 0x80) {
                if (c >= 0xc2 && c <= 0xdf) f->aux |= 1;
                else if (c >= 0xe0 && c <= 0xef) f->aux |= 2;
                else if (c >= 0xf0 && c <= 0xf4) f->aux |= 3;
                else return 0;
            }
            return 1;
        }
        case F_NUM: {
            int digit = c >= '0' && c <= '9', integer = !(n->types & T_NUM), next = -1;
            switch (f->sub) {
            case N_START: next = c == '-' ? N_MINUS : c == '0' ? N_ZERO : digit ? N_INT : -1; break;
            case N_MINUS: next = c == '0' ? N_ZERO : digit ? N_INT : -1; break;
            case N_ZERO:
            case N_INT:
                next = digit && f->sub == N_INT ? N_INT : c == '.' && !integer ? N_DOT
                       : (c == 'e' || c == 'E') && !integer ? N_E : -1;
                break;
            case N_DOT: next = digit ? N_FRAC : -1; break;
            case N_FRAC: next = digit ? N_FRAC : (c == 'e' || c == 'E') ? N_E : -1; break;
            case N_E: next = (c == '+' || c == '-') ? N_ESIGN : digit ? N_EXP : -1; break;
            case N_ESIGN: next = digit ? N_EXP : -1; break;
            case N_EXP: next = digit ? N_EXP : -1; break;
            }
            if (next >= 0) {
                f->sub = (uint8_t)next;
                s->ws = 0;
                return 1;
            }
            /* a byte that cannot continue the number ends it, if it is complete, and goes to the parent */
            if (!num_accepting(f->sub) || !child_done(s)) return 0;
            continue;
        }
        case F_WORD:
            if (!lit_step(s, WORDS[f->node], strlen(WORDS[f->node]), c)) return 0;
            s->ws = 0;
            return f->aux == strlen(WORDS[f->node]) ? child_done(s) : 1;
        case F_LIT: {
            uint64_t keep = 0, done = 0;
            for (int k = 0; k < n->n_lits; k++) {
                if (!(f->mask >> k & 1)) continue;
                if (f->aux < n->lit_len[k] && n->lits[k][f->aux] == c) keep |= 1ull << k;
                if (f->aux == n->lit_len[k]) done = 1;
            }
            if (keep) {
                f->mask = keep, f->aux++;
                s->ws = 0;
                /* complete, and nothing longer could follow: done now */
                int longer = 0, complete = 0;
                for (int k = 0; k < n->n_lits; k++)
                    if (keep >> k & 1) longer |= n->lit_len[k] > f->aux, complete |= n->lit_len[k] == f->aux;
                return complete && !longer ? child_done(s) : 1;
            }
            if (!done || !child_done(s)) return 0;
            continue;
        }
        case F_SEQ: {
            /* <tool_call>\n{"name": "NAME", "arguments": ARGS}\n</tool_call>, then \n and another, or the end */
            const char *lit = f->sub == 0 ? g->open : f->sub == 2 ? g->mid : f->sub == 4 ? g->close : NULL;
            if (lit) {
                if (!lit_step(s, lit, strlen(lit), c)) return 0;
                if (f->aux < strlen(lit)) return 1;
                f->sub++, f->aux = 0;
                if (f->sub == 1)
                    return push(s, (frame){.kind = F_KEY, .node = g->choice,
                                           .mask = all_bits(g->n[g->choice].n_props)});
                if (f->sub == 3) return push(s, (frame){.kind = F_VALUE, .node = g->n[g->choice].props[f->node]});
                return 1;
            }
            if (f->sub == 5 && g->parallel && c == '\n') {
                f->sub = 0, f->aux = 0;
                return 1;
            }
            return 0;
        }
        }
        return 0;
    }
}

int lmf_grammar_done(const lmf_grammar_state *s) {
    if (s->depth == 0) return 1;
    const frame *f = &s->f[s->depth - 1];
    if (f->kind == F_SEQ) return f->sub == 5;
    if (s->depth != 1) return 0;
    if (f->kind == F_NUM) return num_accepting(f->sub);
    if (f->kind == F_LIT)
        for (int k = 0; k < s->g->n[f->node].n_lits; k++)
            if ((f->mask >> k & 1) && s->g->n[f->node].lit_len[k] == f->aux) return 1;
    return 0;
}

static void copy_state(lmf_grammar_state *dst, const lmf_grammar_state *src) {
    dst->g = src->g, dst->depth = src->depth, dst->ws = src->ws;
    memcpy(dst->f, src->f, (size_t)src->depth * sizeof *src->f);
}

int lmf_grammar_feed(lmf_grammar_state *s, const char *bytes, size_t n) {
    lmf_grammar_state t;
    copy_state(&t, s);
    for (size_t i = 0; i < n; i++)
        if (!feed(&t, (unsigned char)bytes[i])) return 0;
    copy_state(s, &t);
    return 1;
}

/* ---- the vocabulary --------------------------------------------------------------------------------------------- */

struct lmf_grammar_vocab {
    int V, n;          /* vocabulary size; tokens with bytes (normal and user-defined ones) */
    int32_t *ids;      /* [n] in byte order */
    uint32_t *off;     /* [n] into bytes */
    uint16_t *len, *lcp; /* [n] lengths; common prefix with the token before in that order */
    char *bytes;
    int max_len;
    uint8_t *plain;    /* [n] printable, no quote or backslash, whole UTF-8 characters: inside a JSON string such a
                          token is always allowed and leaves the state as it was */
    int32_t *index;    /* [V] position in ids, -1 for tokens without bytes (control, unused) */
};

static const char *sort_base;
static const uint32_t *sort_off;
static const uint16_t *sort_len;

static int by_bytes(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx = sort_len[x], ly = sort_len[y];
    int c = memcmp(sort_base + sort_off[x], sort_base + sort_off[y], lx < ly ? lx : ly);
    if (c) return c;
    return lx != ly ? (lx < ly ? -1 : 1) : (x < y ? -1 : x > y);
}

lmf_status lmf_grammar_vocab_create(const lmf_tokenizer *tok, lmf_grammar_vocab **out) {
    int V = lmf_tokenizer_vocab_size(tok);
    lmf_grammar_vocab *v = lmf_xcalloc(1, sizeof *v);
    v->V = V;
    uint32_t *off = lmf_xmalloc((size_t)V * sizeof *off);
    uint16_t *len = lmf_xcalloc((size_t)V, sizeof *len);
    int32_t *order = lmf_xmalloc((size_t)V * sizeof *order);
    size_t total = 0, cap = 1 << 16;
    char *bytes = lmf_xmalloc(cap);
    for (int32_t id = 0; id < V; id++) {
        lmf_token_type t = lmf_tokenizer_token_type(tok, id);
        size_t l = 0;
        const char *b = lmf_tokenizer_token_bytes(tok, id, &l);
        if ((t != LMF_TOKEN_NORMAL && t != LMF_TOKEN_USER) || !b || l == 0 || l > 1024) continue;
        while (total + l > cap) bytes = lmf_xrealloc(bytes, cap *= 2);
        memcpy(bytes + total, b, l);
        off[id] = (uint32_t)total, len[id] = (uint16_t)l;
        total += l;
        order[v->n++] = id;
        if ((int)l > v->max_len) v->max_len = (int)l;
    }
    sort_base = bytes, sort_off = off, sort_len = len;
    qsort(order, (size_t)v->n, sizeof *order, by_bytes);
    v->ids = order;
    v->off = lmf_xmalloc((size_t)v->n * sizeof *v->off);
    v->len = lmf_xmalloc((size_t)v->n * sizeof *v->len);
    v->lcp = lmf_xmalloc((size_t)v->n * sizeof *v->lcp);
    v->index = lmf_xmalloc((size_t)V * sizeof *v->index);
    for (int i = 0; i < V; i++) v->index[i] = -1;
    for (int i = 0; i < v->n; i++) {
        int32_t id = order[i];
        v->off[i] = off[id], v->len[i] = len[id], v->index[id] = i;
        int l = 0;
        if (i > 0) {
            int32_t p = order[i - 1];
            while (l < len[p] && l < len[id] && bytes[off[p] + l] == bytes[off[id] + l]) l++;
        }
        v->lcp[i] = (uint16_t)l;
    }
    v->plain = lmf_xmalloc((size_t)v->n);
    for (int i = 0; i < v->n; i++) {
        const unsigned char *b = (const unsigned char *)bytes + v->off[i];
        int ok = 1, cont = 0;
        for (int k = 0; k < v->len[i] && ok; k++) {
            int c = b[k];
            if (cont) ok = (c & 0xc0) == 0x80, cont--;
            else if (c < 0x20 || c == '"' || c == '\\') ok = 0;
            else if (c >= 0x80) {
                cont = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
                ok = cont > 0;
            }
        }
        v->plain[i] = (uint8_t)(ok && !cont);
    }
    v->bytes = bytes;
    LMF_FREE_ALL(off, len);
    *out = v;
    return LMF_OK;
}

void lmf_grammar_vocab_free(lmf_grammar_vocab *v) {
    if (!v) return;
    LMF_FREE_ALL(v->ids, v->off, v->len, v->lcp, v->bytes, v->plain, v->index, v);
}

static int is_stop(int32_t id, const int32_t *stops, int n_stops) {
    for (int i = 0; i < n_stops; i++)
        if (stops[i] == id) return 1;
    return 0;
}

int lmf_grammar_allows(const lmf_grammar_state *s, const lmf_grammar_vocab *v, int32_t id, const int32_t *stops,
                       int n_stops) {
    if (is_stop(id, stops, n_stops)) return lmf_grammar_done(s);
    if (id < 0 || id >= v->V || v->index[id] < 0) return 0;
    int i = v->index[id];
    lmf_grammar_state t;
    copy_state(&t, s);
    for (int k = 0; k < v->len[i]; k++)
        if (!feed(&t, (unsigned char)v->bytes[v->off[i] + k])) return 0;
    return 1;
}

int lmf_grammar_accept(lmf_grammar_state *s, const lmf_grammar_vocab *v, int32_t id) {
    if (id < 0 || id >= v->V || v->index[id] < 0) return 0;
    int i = v->index[id];
    return lmf_grammar_feed(s, v->bytes + v->off[i], v->len[i]);
}

int lmf_grammar_mask(const lmf_grammar_state *s, const lmf_grammar_vocab *v, const int32_t *stops, int n_stops,
                     float *logits) {
    /* st[d]: the state after the first d bytes of the current token; valid for d <= have */
    lmf_grammar_state *st = lmf_xmalloc((size_t)(v->max_len + 1) * sizeof *st);
    copy_state(&st[0], s);
    char *ok = lmf_xcalloc((size_t)v->V, 1);
    int have = 0, refused = -1, allowed = 0; /* refused: the byte position where the last token was refused */
    const frame *top = s->depth ? &s->f[s->depth - 1] : NULL;
    int in_string = top && top->kind == F_STR && top->sub == 0 && !(top->aux & 0xff);
    for (int i = 0; i < v->n; i++) {
        const unsigned char *b = (const unsigned char *)v->bytes + v->off[i];
        int l = v->len[i], lcp = v->lcp[i];
        if (have > lcp) have = lcp;
        if (refused >= 0 && lcp > refused) continue; /* shares the refused prefix */
        refused = -1;
        if (in_string && v->plain[i]) {
            ok[v->ids[i]] = 1, allowed++;
            continue;
        }
        int d = have;
        for (; d < l; d++) {
            copy_state(&st[d + 1], &st[d]);
            if (!feed(&st[d + 1], b[d])) break;
        }
        if (d == l) {
            ok[v->ids[i]] = 1, allowed++;
            have = l;
        } else {
            have = d, refused = d;
        }
    }
    int done = lmf_grammar_done(s);
    for (int id = 0; id < v->V; id++)
        if (!ok[id]) {
            if (done && is_stop(id, stops, n_stops)) allowed++;
            else logits[id] = -INFINITY;
        }
    LMF_FREE_ALL(st, ok);
    return allowed;
}
