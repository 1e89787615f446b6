/* jinja.h — the subset of Jinja2 that chat templates use, run the way Hugging Face transformers runs them.
 *
 * transformers renders tokenizer.chat_template with jinja2's ImmutableSandboxedEnvironment(trim_blocks=True,
 * lstrip_blocks=True, loopcontrols), a tojson that is json.dumps(ensure_ascii=False), and the globals
 * raise_exception, strftime_now, namespace and dict. lmf_jinja_compile parses a template once (jinja_parse.c);
 * lmf_jinja_render runs it over variables given as JSON (jinja_eval.c). Both treat the template as hostile: parse
 * nesting, steps, memory and output are bounded and exceeding a bound is an error, never a hang or a crash.
 *
 * Errors: a template that does not parse is LMF_ERR_FORMAT ("chat template line N: ..."); one that fails while
 * rendering (raise_exception, a type error, a bound) is LMF_ERR_ARG, the message naming the line and the cause. */
#ifndef LMF_MODEL_JINJA_H
#define LMF_MODEL_JINJA_H

#include "lmforge.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <time.h>

typedef struct lmf_jinja lmf_jinja;

/* Bounds a render may not exceed (hostile templates). */
#define LMF_JINJA_MAX_DEPTH 128          /* nesting of blocks and expressions in the parser */
#define LMF_JINJA_MAX_CALL_DEPTH 64      /* macro calls within macro calls */
#define LMF_JINJA_MAX_STEPS 4000000L     /* nodes evaluated in one render */
#define LMF_JINJA_MAX_MEMORY (64u << 20) /* bytes of values made in one render */
#define LMF_JINJA_MAX_OUTPUT (16u << 20) /* bytes of rendered text */

lmf_status lmf_jinja_compile(const char *src, size_t len, lmf_jinja **out);
void lmf_jinja_free(lmf_jinja *j);
/* Renders j with the variables of vars (a JSON object: messages, add_generation_prompt, bos_token, ... ; JSON null
 * is Python's None) appended to *out, only on success. now is what strftime_now formats (local time). */
lmf_status lmf_jinja_render(const lmf_jinja *j, const cJSON *vars, time_t now, lmf_text *out);

/* Where a {% generation %} block's output landed: bytes [start, end) of the render (from the render's own first
 * byte, not *out's). transformers' return_assistant_tokens_mask reads the same spans (AssistantTracker). */
typedef struct {
    size_t start, end;
} lmf_jinja_span;
typedef struct {
    lmf_jinja_span *v; /* malloc'd; the caller frees */
    size_t n, cap;
} lmf_jinja_spans;
/* lmf_jinja_render that also appends to *spans the span of every {% generation %} block that wrote straight into
 * the output (one inside a {% set %} block or a macro's returned text is not in the output as such: not noted). */
lmf_status lmf_jinja_render_spans(const lmf_jinja *j, const cJSON *vars, time_t now, lmf_text *out,
                                  lmf_jinja_spans *spans);

/* ---- between jinja_parse.c and jinja_eval.c ---- */
typedef enum {
    /* statements */
    JN_TEXT, JN_OUT, JN_IF, JN_FOR, JN_SET, JN_SETBLOCK, JN_MACRO, JN_BREAK, JN_CONTINUE, JN_BODY, JN_GENERATION,
    /* expressions */
    JN_STR, JN_INT, JN_FLOAT, JN_BOOL, JN_NONE, JN_NAME, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL, JN_FILTER, JN_TEST,
    JN_BIN, JN_NEG, JN_POS, JN_NOT, JN_AND, JN_OR, JN_COND, JN_LIST, JN_TUPLE, JN_DICT
} lmf_jnode_kind;

typedef struct lmf_jnode lmf_jnode;
struct lmf_jnode {
    lmf_jnode_kind kind;
    int line;
    const char *s; /* text, string literal, name, attribute, filter/test/macro name, operator (JN_BIN) */
    size_t sn;
    long long i;   /* JN_INT, JN_BOOL; JN_TEST: negated */
    double f;
    lmf_jnode *a, *b, *c, *d; /* operands; JN_FOR: a target, b iterable, c filter; JN_SLICE: a obj, b..d bounds */
    lmf_jnode **list;         /* body, arguments, items, dict keys, macro parameters (JN_NAME) */
    int n;
    lmf_jnode **list2;        /* else body, keyword argument values, dict values, macro defaults (or NULL) */
    int n2;
    const char **kw;          /* keyword argument names, by list2 index */
};

/* A bump allocator that refuses to grow past its limit (NULL), freed all at once. */
typedef struct lmf_jchunk lmf_jchunk;
typedef struct {
    lmf_jchunk *head;
    size_t total, limit;
} lmf_jarena;
void *lmf_jarena_alloc(lmf_jarena *a, size_t n);
void lmf_jarena_free(lmf_jarena *a);

struct lmf_jinja {
    lmf_jnode *root; /* JN_BODY */
    int has_generation; /* the template marks assistant text with {% generation %} */
    lmf_jarena arena; /* every node and string of the compiled template */
};

#endif
