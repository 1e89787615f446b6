/* toxicity.c — blocklist matching: the document and every term are split into words the same way (maximal runs of
 * letters, digits and combining marks; everything else separates), case-folded with utf8proc, and each term
 * matches a run of whole words. At each word the longest term starting there counts once, and matching goes on
 * after it. The verdict is a threshold on matches per word. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "data/filters.h"

extern const char lmf_blocklist_en_txt[];
extern const size_t lmf_blocklist_en_len;

#define SEQ_MUL 0x9E3779B97F4A7C15ull
#define MAX_TERM_WORDS 8

struct lmf_blocklist {
    char **terms;       /* as written in the list (trimmed) */
    size_t n;
    uint64_t *keys;     /* open addressing: sequence hash of the term's folded words (0 = empty) */
    uint32_t *idx;
    size_t cap;
    uint64_t *first;    /* set of the first words of multi-word terms */
    size_t fcap;
    int max_words;
};

static int is_word_cp(int32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
    if (c < 0) return 0;
    utf8proc_category_t k = utf8proc_category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_NO);
}

/* Calls fn(ctx, folded_hash) for each word of s; returns the word count. */
typedef void (*word_fn)(void *ctx, uint64_t h, size_t off, size_t len);
static size_t each_word(const char *s, size_t n, word_fn fn, void *ctx) {
    size_t nw = 0;
    char small[256];
    for (size_t i = 0; i < n;) {
        size_t k = i;
        int32_t c = lmf_utf8_next(s, n, &k);
        if (!is_word_cp(c)) {
            i = k;
            continue;
        }
        size_t a = i;
        int ascii = 1;
        while (i < n) {
            k = i;
            c = lmf_utf8_next(s, n, &k);
            if (!is_word_cp(c)) break;
            if (c >= 0x80) ascii = 0;
            i = k;
        }
        size_t len = i - a;
        uint64_t h;
        if (ascii && len <= sizeof small) {
            for (size_t q = 0; q < len; q++) {
                unsigned char ch = (unsigned char)s[a + q];
                small[q] = (char)(ch >= 'A' && ch <= 'Z' ? ch | 32 : ch);
            }
            h = XXH3_64bits(small, len);
        } else {
            utf8proc_uint8_t *f = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s + a, (utf8proc_ssize_t)len, &f,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD);
            h = r >= 0 ? XXH3_64bits(f, (size_t)r) : XXH3_64bits(s + a, len);
            free(f);
        }
        fn(ctx, h, a, len);
        nw++;
    }
    return nw;
}

typedef struct {
    uint64_t h[MAX_TERM_WORDS];
    int n;
} term_words;

static void collect_term(void *ctx, uint64_t h, size_t off, size_t len) {
    term_words *t = ctx;
    if (t->n < MAX_TERM_WORDS) t->h[t->n] = h;
    t->n++;
}

static uint64_t seq_hash(const uint64_t *h, int n) {
    uint64_t k = 0;
    for (int i = 0; i < n; i++) k = (k + h[i]) * SEQ_MUL;
    return k ? k : 1;
}

static int set_has(const uint64_t *keys, size_t cap, uint64_t k, size_t *slot) {
    size_t j = (size_t)(k >> 7) & (cap - 1);
    while (keys[j]) {
        if (keys[j] == k) {
            if (slot) *slot = j;
            return 1;
        }
        j = (j + 1) & (cap - 1);
    }
    if (slot) *slot = j;
    return 0;
}

lmf_blocklist *lmf_blocklist_from_text(const char *text, size_t len) {
    lmf_blocklist *b = lmf_xcalloc(1, sizeof *b);
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    b->cap = 16;
    while (b->cap < 2 * lines + 16) b->cap *= 2;
    b->fcap = b->cap;
    b->keys = lmf_xcalloc(b->cap, sizeof *b->keys);
    b->idx = lmf_xcalloc(b->cap, sizeof *b->idx);
    b->first = lmf_xcalloc(b->fcap, sizeof *b->first);
    b->terms = lmf_xcalloc(lines, sizeof *b->terms);
    b->max_words = 1;
    size_t pos = 0;
    lmf_span ln;
    while (lmf_next_line(text, len, &pos, &ln)) {
        size_t a = ln.off, e = ln.off + ln.len;
        lmf_strip(text, &a, &e);
        if (a == e || text[a] == '#') continue;
        term_words t = {.n = 0};
        each_word(text + a, e - a, collect_term, &t);
        if (t.n == 0 || t.n > MAX_TERM_WORDS) continue; /* nothing to match on, or too long to be a term */
        uint64_t k = seq_hash(t.h, t.n);
        size_t slot;
        if (set_has(b->keys, b->cap, k, &slot)) continue; /* duplicate term */
        b->keys[slot] = k;
        b->idx[slot] = (uint32_t)b->n;
        b->terms[b->n] = lmf_xmalloc(e - a + 1);
        memcpy(b->terms[b->n], text + a, e - a);
        b->terms[b->n][e - a] = 0;
        b->n++;
        if (t.n > 1) {
            uint64_t f = t.h[0] ? t.h[0] : 1;
            if (!set_has(b->first, b->fcap, f, &slot)) b->first[slot] = f;
            if (t.n > b->max_words) b->max_words = t.n;
        }
    }
    return b;
}

lmf_status lmf_blocklist_load(const char *path, lmf_blocklist **out) {
    *out = NULL;
    char *buf;
    size_t n;
    LMF_TRY(lmf_read_file_max(path, (size_t)-1, "blocklist (hint: one term per line, '#' comments)", &buf, &n));
    lmf_blocklist *b = lmf_blocklist_from_text(buf, n);
    free(buf);
    if (b->n == 0) {
        lmf_blocklist_free(b);
        return lmf_fail(LMF_ERR_FORMAT, "%s: no term in the blocklist (expected one term per line)", path);
    }
    *out = b;
    return LMF_OK;
}

void lmf_blocklist_free(lmf_blocklist *b) {
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) free(b->terms[i]);
    LMF_FREE_ALL(b->terms, b->keys, b->idx, b->first, b);
}

size_t lmf_blocklist_size(const lmf_blocklist *b) { return b->n; }

static lmf_blocklist *default_list;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static void default_init(void) { default_list = lmf_blocklist_from_text(lmf_blocklist_en_txt, lmf_blocklist_en_len); }

const lmf_blocklist *lmf_blocklist_default(void) {
    pthread_once(&default_once, default_init);
    return default_list;
}

void lmf_toxicity_defaults(lmf_toxicity_cfg *c) {
    c->max_matches_per_word = 0.002;
    c->min_matches = 1;
}

typedef struct {
    uint64_t *h;
    size_t n, cap;
    lmf_scratch *s;
} doc_words;

static void collect_doc(void *ctx, uint64_t h, size_t off, size_t len) {
    doc_words *d = ctx;
    d->h[d->n++] = h ? h : 1; /* capacity: a word takes a byte and a separator, so len / 2 + 1 words at most */
}

void lmf_toxicity(const lmf_toxicity_cfg *c, const lmf_blocklist *b, const char *text, size_t len, lmf_scratch *s,
                  lmf_toxicity_result *r, lmf_verdict *v) {
    memset(r, 0, sizeof *r);
    v->keep = 1;
    v->reason = NULL;
    doc_words d = {.cap = len / 2 + 2, .s = s};
    d.h = lmf_scratch_buf(s, 5, d.cap * sizeof *d.h);
    each_word(text, len, collect_doc, &d);
    r->words = d.n;
    for (size_t i = 0; i < d.n;) {
        int maxl = b->max_words;
        if ((size_t)maxl > d.n - i) maxl = (int)(d.n - i);
        if (maxl > 1 && !set_has(b->first, b->fcap, d.h[i], NULL)) maxl = 1;
        int hit = 0;
        for (int L = maxl; L >= 1 && !hit; L--) {
            size_t slot;
            if (set_has(b->keys, b->cap, seq_hash(d.h + i, L), &slot)) {
                const char *term = b->terms[b->idx[slot]];
                r->matches++;
                size_t t = 0;
                while (t < r->n_terms && r->terms[t] != term) t++;
                if (t < r->n_terms) {
                    r->term_count[t]++;
                } else if (r->n_terms < LMF_TOXICITY_MAX_TERMS) {
                    r->terms[r->n_terms] = term;
                    r->term_count[r->n_terms++] = 1;
                }
                i += (size_t)L;
                hit = 1;
            }
        }
        if (!hit) i++;
    }
    if (r->matches >= (size_t)c->min_matches && r->matches > 0 && r->words > 0 &&
        (double)r->matches / (double)r->words > c->max_matches_per_word) {
        v->keep = 0;
        v->reason = "toxic_words";
    }
}
