/* text.c — UTF-8 and Python-string primitives, and datatrove's English word/sentence splitter in C.
 *
 * The splitter follows spaCy's Tokenizer.__call__ (tokenizer.pyx, v3.8) step by step, because datatrove's English
 * filters count spaCy tokens and their decisions sit on thresholds over those counts:
 *   1. split on Python whitespace; a single ' ' after a token is dropped, other whitespace runs become tokens;
 *   2. each chunk: a special case (exceptions such as "don't" -> "do" "n't", "Mr.", emoticons) is taken whole;
 *   3. otherwise _split_affixes: peel prefixes and suffixes (regexes) until a special case or nothing is left;
 *   4. _attach_tokens: the middle is a special case, a URL, or split on the infix regex.
 * Not reproduced: spaCy's second pass (_apply_special_cases, a PhraseMatcher merging special cases that span
 * several affix tokens, e.g. emoticons glued to brackets); on the real corpora it changes no decision.
 * Chunks repeat a lot, so results are cached per scratch (like spaCy's own cache).
 * The Sentencizer: a sentence starts at the first token that is neither punctuation nor a sentence-final mark
 * after a token that is a sentence-final mark (spacy/pipeline/sentencizer.pyx, predict). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/text.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

#include "core/alloc.h"
#include "data/filters.h"
#include "data/wordtok_en_tables.h"

/* ---------------------------------------------------------------- UTF-8 and Python predicates */

size_t lmf_utf8_nchars(const char *s, size_t n) {
    size_t c = 0;
    const unsigned char *u = (const unsigned char *)s;
    size_t i0 = 0;
    while (i0 + 8 <= n) { /* ASCII: one character per byte */
        uint64_t w;
        memcpy(&w, u + i0, 8);
        if (w & 0x8080808080808080ull) break;
        i0 += 8;
    }
    while (i0 < n && u[i0] < 0x80) i0++;
    if (i0 == n) return n;
    /* valid UTF-8: count the bytes that are not continuation bytes; an invalid byte then counts as one, except a
     * stray continuation byte, so fall back to the decoder when one is seen where it should not be. */
    for (size_t i = 0; i < n; i++) c += (u[i] & 0xC0) != 0x80;
    if (lmf_utf8_valid(s, n)) return c;
    c = 0;
    for (size_t i = 0; i < n;) {
        lmf_utf8_next(s, n, &i);
        c++;
    }
    return c;
}

size_t lmf_utf8_put(char *out, int32_t cp) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int lmf_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, u + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        if (lmf_utf8_next(s, n, &i) < 0) return 0;
    }
    return 1;
}

int lmf_uc_isspace(int32_t c) {
    if (c < 0x80) return (c >= 9 && c <= 13) || (c >= 28 && c <= 32);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

int lmf_uc_isalpha(int32_t c) {
    if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
    if (c < 0) return 0;
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

int lmf_uc_ispunct_cat(int32_t c) {
    if (c < 0) return 0;
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* ---------------------------------------------------------------- init-once tables */

#define SPECIAL_CAP 4096 /* power of two > 2 x the 1,347 special cases */

static struct {
    pcre2_code *prefix, *suffix, *infix, *url;
    struct {
        const char *key;
        uint32_t keylen;
        const char *pieces;
    } special[SPECIAL_CAP];
    uint8_t dt_punct[0x110000 / 8], dt_term[0x110000 / 8], sent_punct[0x110000 / 8];
    /* second pass: specials with a pattern, chained by the hash of the pattern's first token */
    int pat_head[SPECIAL_CAP];
    int pat_next[sizeof EN_SPECIALS / sizeof EN_SPECIALS[0]];
    uint64_t pat_first[sizeof EN_SPECIALS / sizeof EN_SPECIALS[0]];
} T;
static pthread_once_t T_once = PTHREAD_ONCE_INIT;

void *lmf_regex_builtin(const char *pat) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!c) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        fprintf(stderr, "%s:%d: BUG: built-in regex does not compile at %zu: %s\n  %s\n", __FILE__, __LINE__,
                (size_t)off, (char *)msg, pat);
        abort();
    }
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
    return c;
}

static void set_bit(uint8_t *bm, int32_t c) { bm[c >> 3] |= (uint8_t)(1u << (c & 7)); }
static int get_bit(const uint8_t *bm, int32_t c) { return c >= 0 && c < 0x110000 && (bm[c >> 3] >> (c & 7)) & 1; }

static void tables_init(void) {
    T.prefix = lmf_regex_builtin(EN_PREFIX_RE);
    T.suffix = lmf_regex_builtin(EN_SUFFIX_RE);
    T.infix = lmf_regex_builtin(EN_INFIX_RE);
    T.url = lmf_regex_builtin(EN_URL_RE);
    for (size_t i = 0; i < sizeof EN_SPECIALS / sizeof EN_SPECIALS[0]; i++) {
        const char *k = EN_SPECIALS[i][0];
        size_t kl = strlen(k);
        size_t h = (size_t)XXH3_64bits(k, kl) & (SPECIAL_CAP - 1);
        while (T.special[h].key) h = (h + 1) & (SPECIAL_CAP - 1);
        T.special[h].key = k;
        T.special[h].keylen = (uint32_t)kl;
        T.special[h].pieces = EN_SPECIALS[i][1];
    }
    for (size_t i = 0; i < SPECIAL_CAP; i++) T.pat_head[i] = -1;
    for (size_t i = sizeof EN_SPECIALS / sizeof EN_SPECIALS[0]; i-- > 0;) {
        const char *pat = EN_SPECIALS[i][2];
        /* one-token patterns (" ", "'", em dash, right quote) replace a token by itself: nothing to do */
        if (!strchr(pat, '\001')) continue;
        const char *e = strchr(pat, '\001');
        size_t fl = e ? (size_t)(e - pat) : strlen(pat);
        uint64_t fh = XXH3_64bits(pat, fl);
        T.pat_first[i] = fh;
        T.pat_next[i] = T.pat_head[fh & (SPECIAL_CAP - 1)];
        T.pat_head[fh & (SPECIAL_CAP - 1)] = (int)i;
    }
    for (size_t i = 0; i < sizeof DT_PUNCT / sizeof DT_PUNCT[0]; i++) set_bit(T.dt_punct, DT_PUNCT[i]);
    for (size_t i = 0; i < sizeof DT_TERMINAL / sizeof DT_TERMINAL[0]; i++) {
        set_bit(T.dt_term, DT_TERMINAL[i]);
        set_bit(T.dt_punct, DT_TERMINAL[i]);
    }
    const char *p = EN_SENT_PUNCT;
    size_t n = strlen(p), i = 0;
    while (i < n) {
        size_t j = i;
        int32_t c = lmf_utf8_next(p, n, &j); /* every mark in spaCy's list is one code point */
        set_bit(T.sent_punct, c);
        while (j < n && p[j] != '\001') j++;
        i = j + 1;
    }
}

static inline void tables(void) { pthread_once(&T_once, tables_init); }

int lmf_uc_is_dt_punct(int32_t c) {
    tables();
    return get_bit(T.dt_punct, c);
}
int lmf_uc_is_dt_terminal(int32_t c) {
    tables();
    return get_bit(T.dt_term, c);
}

/* ---------------------------------------------------------------- lines and strip */

int lmf_next_line(const char *s, size_t n, size_t *pos, lmf_span *line) {
    size_t i = *pos;
    if (i >= n) return 0;
    size_t start = i, nch = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k = i;
        int32_t cp;
        if (c < 0x80) {
            cp = c;
            k = i + 1;
        } else {
            cp = lmf_utf8_next(s, n, &k);
        }
        int brk = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D || cp == 0x1E ||
                  cp == 0x85 || cp == 0x2028 || cp == 0x2029;
        if (brk) {
            line->off = (uint32_t)start;
            line->len = (uint32_t)(i - start);
            line->nchars = (uint32_t)nch;
            if (cp == '\r' && k < n && s[k] == '\n') k++;
            *pos = k;
            return 1;
        }
        nch++;
        i = k;
    }
    line->off = (uint32_t)start;
    line->len = (uint32_t)(n - start);
    line->nchars = (uint32_t)nch;
    *pos = n;
    return 1;
}

void lmf_lstrip(const char *s, size_t *a, size_t b) {
    size_t i = *a;
    while (i < b) {
        size_t k = i;
        int32_t c = lmf_utf8_next(s, b, &k);
        if (!lmf_uc_isspace(c)) break;
        i = k;
    }
    *a = i;
}

void lmf_rstrip(const char *s, size_t a, size_t *b) {
    size_t j = *b;
    while (j > a) {
        size_t k = j - 1;
        while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        size_t t = k;
        int32_t c = lmf_utf8_next(s, j, &t);
        if (t != j) { /* an invalid tail byte: a character of its own, not whitespace */
            break;
        }
        if (!lmf_uc_isspace(c)) break;
        j = k;
    }
    *b = j;
}

void lmf_strip(const char *s, size_t *a, size_t *b) {
    lmf_lstrip(s, a, *b);
    lmf_rstrip(s, *a, b);
}

/* ---------------------------------------------------------------- scratch */

#define CACHE_CAP (1u << 16)
#define CACHE_POOL (8u << 20)

typedef struct {
    uint64_t h;
    uint32_t off; /* in pool: key bytes, then npieces (uint32), then piece lengths (uint32 each) */
    uint32_t keylen;
} cache_ent;

typedef struct {
    lmf_span *tok;
    uint8_t *tok_space;
    size_t ntok, tokcap;
    lmf_span *words;
    size_t nwords, wordcap;
    size_t last_len;
    uint64_t last_hash;
    int have_last;
} tokset;

struct lmf_scratch {
    pcre2_match_data *md;
    /* tokens of the last text (all, with whitespace tokens, and words); alt holds the last document's while
     * lmf_text_sentences tokenizes a line (C4), so the next filter on that document finds its words again */
    tokset ts, alt;
    /* chunk cache */
    cache_ent *cache;
    size_t ncache;
    char *pool;
    size_t npool;
    /* affix stacks for one chunk */
    uint32_t *pre, *suf, *pieces;
    size_t precap, sufcap, piececap;
    void *buf[8];
    size_t bufcap[8];
    lmf_hset hs[2];
    size_t hs_alloc[2];
};

lmf_scratch *lmf_scratch_new(void) {
    tables();
    lmf_scratch *s = lmf_xcalloc(1, sizeof *s);
    s->md = pcre2_match_data_create(16, NULL);
    s->cache = lmf_xcalloc(CACHE_CAP, sizeof *s->cache);
    s->pool = lmf_xmalloc(CACHE_POOL);
    return s;
}

void lmf_scratch_free(lmf_scratch *s) {
    if (!s) return;
    pcre2_match_data_free(s->md);
    for (int k = 0; k < 2; k++) {
        tokset *t = k ? &s->alt : &s->ts;
        LMF_FREE_ALL(t->tok, t->tok_space, t->words);
    }
    for (int i = 0; i < 8; i++) free(s->buf[i]);
    for (int i = 0; i < 2; i++) LMF_FREE_ALL(s->hs[i].keys, s->hs[i].vals, s->hs[i].first);
    LMF_FREE_ALL(s->cache, s->pool, s->pre, s->suf, s->pieces, s);
}

void *lmf_scratch_buf(lmf_scratch *s, int slot, size_t bytes) {
    if (bytes > s->bufcap[slot]) {
        size_t cap = s->bufcap[slot] ? s->bufcap[slot] : 4096;
        while (cap < bytes) cap *= 2;
        free(s->buf[slot]);
        s->buf[slot] = lmf_xmalloc(cap);
        s->bufcap[slot] = cap;
    }
    return s->buf[slot];
}

lmf_hset *lmf_scratch_hset(lmf_scratch *s, int slot, size_t expected) {
    lmf_hset *h = &s->hs[slot];
    size_t cap = 64;
    while (cap < expected * 2 + 16) cap *= 2;
    if (cap > s->hs_alloc[slot]) {
        free(h->keys);
        free(h->vals);
        free(h->first);
        h->keys = lmf_xmalloc(cap * sizeof *h->keys);
        h->vals = lmf_xmalloc(cap * sizeof *h->vals);
        h->first = lmf_xmalloc(cap * sizeof *h->first);
        s->hs_alloc[slot] = cap;
    }
    h->cap = cap; /* only the part this document needs is cleared and used */
    h->shift = 64 - (unsigned)__builtin_ctzll(cap);
    memset(h->keys, 0, h->cap * sizeof *h->keys);
    h->n = 0;
    return h;
}

size_t lmf_hset_add(lmf_hset *h, uint64_t key, int *isnew) {
    if (key == 0) key = 1;
    if ((h->n + 1) * 2 > h->cap) { /* grow (rare: callers size for the expected count) */
        size_t oc = h->cap;
        uint64_t *ok = h->keys;
        uint32_t *ov = h->vals, *of = h->first;
        h->cap = oc * 2;
        h->shift--;
        h->keys = lmf_xcalloc(h->cap, sizeof *h->keys);
        h->vals = lmf_xmalloc(h->cap * sizeof *h->vals);
        h->first = lmf_xmalloc(h->cap * sizeof *h->first);
        for (size_t i = 0; i < oc; i++)
            if (ok[i]) {
                size_t j = (size_t)(ok[i] * 0x9E3779B97F4A7C15ull >> h->shift);
                while (h->keys[j]) j = (j + 1) & (h->cap - 1);
                h->keys[j] = ok[i];
                h->vals[j] = ov[i];
                h->first[j] = of[i];
            }
        free(ok);
        free(ov);
        free(of);
    }
    size_t j = (size_t)(key * 0x9E3779B97F4A7C15ull >> h->shift);
    while (h->keys[j]) {
        if (h->keys[j] == key) {
            *isnew = 0;
            return j;
        }
        j = (j + 1) & (h->cap - 1);
    }
    h->keys[j] = key;
    h->vals[j] = 0;
    h->first[j] = (uint32_t)h->n;
    h->n++;
    *isnew = 1;
    return j;
}

uint64_t lmf_hash_bytes(const char *s, size_t n) { return XXH3_64bits(s, n); }

/* ---------------------------------------------------------------- the tokenizer */

static const char *special(const char *p, size_t n) {
    if (n == 0) return NULL;
    size_t h = (size_t)XXH3_64bits(p, n) & (SPECIAL_CAP - 1);
    while (T.special[h].key) {
        if (T.special[h].keylen == n && memcmp(T.special[h].key, p, n) == 0) return T.special[h].pieces;
        h = (h + 1) & (SPECIAL_CAP - 1);
    }
    return NULL;
}

static void push_u32(uint32_t **a, size_t *n, size_t *cap, uint32_t v) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *a = lmf_xrealloc(*a, *cap * sizeof **a);
    }
    (*a)[(*n)++] = v;
}

static size_t find_prefix(lmf_scratch *s, const char *p, size_t n) {
    if (n == 0) return 0;
    int rc = pcre2_match(T.prefix, (PCRE2_SPTR)p, n, 0, PCRE2_ANCHORED, s->md, NULL);
    if (rc < 0) return 0;
    return (size_t)pcre2_get_ovector_pointer(s->md)[1];
}

static size_t find_suffix(lmf_scratch *s, const char *p, size_t n) {
    if (n == 0) return 0;
    int rc = pcre2_match(T.suffix, (PCRE2_SPTR)p, n, 0, 0, s->md, NULL);
    if (rc < 0) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
    return (size_t)(ov[1] - ov[0]);
}

static int url_match(lmf_scratch *s, const char *p, size_t n) {
    return pcre2_match(T.url, (PCRE2_SPTR)p, n, 0, PCRE2_ANCHORED, s->md, NULL) >= 0;
}

static void add_special_pieces(lmf_scratch *s, const char *pieces, size_t *np) {
    const char *q = pieces;
    for (;;) {
        const char *e = strchr(q, '\001');
        size_t l = e ? (size_t)(e - q) : strlen(q);
        push_u32(&s->pieces, np, &s->piececap, (uint32_t)l);
        if (!e) break;
        q = e + 1;
    }
}

/* A chunk with only ASCII letters can't hold an affix (every prefix/suffix/infix needs a non-letter or a digit),
 * so unless it is a special case it is one token. */
static int ascii_letters(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)p[i] | 32;
        if (c < 'a' || c > 'z') return 0;
    }
    return 1;
}

static void split_chunk(lmf_scratch *s, const char *p, size_t n, size_t *np) {
    const char *sp = special(p, n);
    if (sp) {
        add_special_pieces(s, sp, np);
        return;
    }
    if (ascii_letters(p, n)) {
        push_u32(&s->pieces, np, &s->piececap, (uint32_t)n);
        return;
    }
    size_t npre = 0, nsuf = 0;
    size_t a = 0, b = n, last = 0;
    while (b > a && b - a != last) {
        if (special(p + a, b - a)) break;
        last = b - a;
        size_t pre = find_prefix(s, p + a, b - a);
        if (pre && b - a - pre > 0 && special(p + a + pre, b - a - pre)) {
            push_u32(&s->pre, &npre, &s->precap, (uint32_t)pre);
            a += pre;
            break;
        }
        size_t suf = find_suffix(s, p + a + pre, b - a - pre);
        if (suf && b - a - suf > 0 && special(p + a, b - a - suf)) {
            push_u32(&s->suf, &nsuf, &s->sufcap, (uint32_t)suf);
            b -= suf;
            break;
        }
        if (pre && suf && pre + suf <= b - a) {
            push_u32(&s->pre, &npre, &s->precap, (uint32_t)pre);
            push_u32(&s->suf, &nsuf, &s->sufcap, (uint32_t)suf);
            a += pre;
            b -= suf;
        } else if (pre) {
            push_u32(&s->pre, &npre, &s->precap, (uint32_t)pre);
            a += pre;
        } else if (suf) {
            push_u32(&s->suf, &nsuf, &s->sufcap, (uint32_t)suf);
            b -= suf;
        }
    }
    for (size_t i = 0; i < npre; i++) push_u32(&s->pieces, np, &s->piececap, s->pre[i]);
    if (b > a) {
        const char *q = p + a;
        size_t m = b - a;
        if ((sp = special(q, m))) {
            add_special_pieces(s, sp, np);
        } else if (url_match(s, q, m)) {
            push_u32(&s->pieces, np, &s->piececap, (uint32_t)m);
        } else {
            size_t start = 0, off = 0;
            int any = 0;
            while (off <= m) {
                int rc = pcre2_match(T.infix, (PCRE2_SPTR)q, m, off, 0, s->md, NULL);
                if (rc < 0) break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
                size_t is = ov[0], ie = ov[1];
                any = 1;
                if (is != 0) { /* spaCy: an infix at the very start is skipped */
                    if (is != start) push_u32(&s->pieces, np, &s->piececap, (uint32_t)(is - start));
                    if (ie != is) push_u32(&s->pieces, np, &s->piececap, (uint32_t)(ie - is));
                    start = ie;
                }
                if (ie == is) { /* empty match: step one character */
                    if (ie >= m) break;
                    off = ie + 1;
                    while (off < m && ((unsigned char)q[off] & 0xC0) == 0x80) off++;
                } else {
                    off = ie;
                }
            }
            if (!any) {
                push_u32(&s->pieces, np, &s->piececap, (uint32_t)m);
            } else if (start < m) {
                push_u32(&s->pieces, np, &s->piececap, (uint32_t)(m - start));
            }
        }
    }
    for (size_t i = nsuf; i-- > 0;) push_u32(&s->pieces, np, &s->piececap, s->suf[i]);
}

static void emit_token(lmf_scratch *s, const char *text, size_t off, size_t len, int space) {
    if (s->ts.ntok == s->ts.tokcap) {
        s->ts.tokcap = s->ts.tokcap ? s->ts.tokcap * 2 : 1024;
        s->ts.tok = lmf_xrealloc(s->ts.tok, s->ts.tokcap * sizeof *s->ts.tok);
        s->ts.tok_space = lmf_xrealloc(s->ts.tok_space, s->ts.tokcap);
    }
    lmf_span *t = &s->ts.tok[s->ts.ntok];
    t->off = (uint32_t)off;
    t->len = (uint32_t)len;
    t->nchars = (uint32_t)lmf_utf8_nchars(text + off, len);
    s->ts.tok_space[s->ts.ntok] = (uint8_t)space;
    s->ts.ntok++;
}

/* One chunk (a run of non-space, or the kept part of a whitespace run) into tokens, through the cache. */
static void tokenize_span(lmf_scratch *s, const char *text, size_t off, size_t len, int space) {
    const char *p = text + off;
    if (space) { /* whitespace: a special case ("\n", "\t", " ") or one token; no affix matches whitespace */
        emit_token(s, text, off, len, 1);
        return;
    }
    /* Fast paths for the commonest chunks, which the rules leave alone or split in an obvious way (the parity test
     * holds them to spaCy on 17,409 documents): ASCII letters; ASCII letters then one of , ; : ! ? (suffixes in
     * every context); lowercase ASCII letters then '.' (a suffix after a lowercase letter). Special cases, of the
     * chunk or of the chunk without its mark, go the long way. */
    {
        size_t k = 0;
        while (k < len && (((unsigned char)p[k] | 32) >= 'a' && ((unsigned char)p[k] | 32) <= 'z')) k++;
        if (k == len && !special(p, len)) {
            emit_token(s, text, off, len, 0);
            return;
        }
        if (k + 1 == len && k > 0) {
            char m = p[k];
            int plain = m == ',' || m == ';' || m == ':' || m == '!' || m == '?' || (m == '.' && p[k - 1] >= 'a' && p[k - 1] <= 'z');
            if (plain && !special(p, len) && !special(p, k)) {
                emit_token(s, text, off, k, 0);
                emit_token(s, text, off + k, 1, 0);
                return;
            }
        }
    }
    uint64_t h = XXH3_64bits(p, len);
    size_t j = (size_t)h & (CACHE_CAP - 1);
    while (s->cache[j].keylen) {
        cache_ent *e = &s->cache[j];
        if (e->h == h && e->keylen == len && memcmp(s->pool + e->off, p, len) == 0) {
            uint32_t np;
            memcpy(&np, s->pool + e->off + len, 4);
            size_t o = off;
            for (uint32_t k = 0; k < np; k++) {
                uint32_t l;
                memcpy(&l, s->pool + e->off + len + 4 + 4 * k, 4);
                emit_token(s, text, o, l, 0);
                o += l;
            }
            return;
        }
        j = (j + 1) & (CACHE_CAP - 1);
    }
    size_t np = 0;
    split_chunk(s, p, len, &np);
    size_t o = off;
    for (size_t k = 0; k < np; k++) {
        emit_token(s, text, o, s->pieces[k], 0);
        o += s->pieces[k];
    }
    size_t need = len + 4 + 4 * np;
    if (len > 4096) return; /* long chunks are rare: not worth caching */
    if (s->ncache * 2 >= CACHE_CAP || s->npool + need > CACHE_POOL) { /* full: start over */
        memset(s->cache, 0, CACHE_CAP * sizeof *s->cache);
        s->ncache = 0;
        s->npool = 0;
        j = (size_t)h & (CACHE_CAP - 1);
    }
    cache_ent *e = &s->cache[j];
    e->h = h;
    e->keylen = (uint32_t)len;
    e->off = (uint32_t)s->npool;
    memcpy(s->pool + s->npool, p, len);
    uint32_t np32 = (uint32_t)np;
    memcpy(s->pool + s->npool + len, &np32, 4);
    for (size_t k = 0; k < np; k++) memcpy(s->pool + s->npool + len + 4 + 4 * k, &s->pieces[k], 4);
    s->npool += need;
    s->ncache++;
}

/* spaCy's _apply_special_cases: runs of first-pass tokens that are exactly the affix-rule tokens of a special case
 * (and whose text is that special case) are replaced by the special case's pieces; overlapping matches resolved
 * longest first, then leftmost (_filter_special_spans). */
typedef struct {
    uint32_t start, end, idx;
} sp_match;

static int cmp_len_start(const void *a, const void *b) { /* spaCy's len_start_cmp as a total order */
    const sp_match *x = a, *y = b;
    uint32_t lx = x->end - x->start, ly = y->end - y->start;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x->start > y->start ? -1 : x->start < y->start ? 1 : 0;
}
static int cmp_start(const void *a, const void *b) {
    const sp_match *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}

static void special_pass(lmf_scratch *s, const char *text) {
    size_t nm = 0, capm = 0;
    sp_match *m = NULL;
    for (size_t i = 0; i + 1 < s->ts.ntok; i++) {
        const char *tp = text + s->ts.tok[i].off;
        size_t tl = s->ts.tok[i].len;
        /* every pattern has several tokens with nothing between them */
        if (s->ts.tok[i].off + tl != s->ts.tok[i + 1].off) continue;
        uint64_t fh = XXH3_64bits(tp, tl);
        for (int c = T.pat_head[fh & (SPECIAL_CAP - 1)]; c >= 0; c = T.pat_next[c]) {
            if (T.pat_first[c] != fh) continue;
            /* compare the pattern's tokens with tokens i, i+1, ... */
            const char *pat = EN_SPECIALS[c][2];
            size_t k = i;
            int ok = 1;
            for (;;) {
                const char *e = strchr(pat, '\001');
                size_t pl = e ? (size_t)(e - pat) : strlen(pat);
                if (k >= s->ts.ntok || s->ts.tok[k].len != pl || memcmp(text + s->ts.tok[k].off, pat, pl) != 0) {
                    ok = 0;
                    break;
                }
                k++;
                if (!e) break;
                pat = e + 1;
            }
            if (!ok) continue;
            const char *key = EN_SPECIALS[c][0];
            size_t a = s->ts.tok[i].off, b = s->ts.tok[k - 1].off + s->ts.tok[k - 1].len;
            if (strlen(key) != b - a || memcmp(text + a, key, b - a) != 0) continue;
            if (nm == capm) {
                capm = capm ? capm * 2 : 64;
                m = lmf_xrealloc(m, capm * sizeof *m);
            }
            m[nm++] = (sp_match){(uint32_t)i, (uint32_t)k, (uint32_t)c};
        }
    }
    if (!nm) return;
    qsort(m, nm, sizeof *m, cmp_len_start);
    uint8_t *seen = calloc(s->ts.ntok, 1);
    size_t nf = 0;
    sp_match *f = lmf_xmalloc(nm * sizeof *f);
    for (size_t q = nm; q-- > 0;) {
        if (!seen[m[q].start] && !seen[m[q].end - 1]) f[nf++] = m[q];
        for (uint32_t t = m[q].start; t < m[q].end; t++) seen[t] = 1;
    }
    free(seen);
    qsort(f, nf, sizeof *f, cmp_start);
    /* rebuild the token list */
    size_t ntok = s->ts.ntok;
    lmf_span *old = lmf_xmalloc(ntok * sizeof *old);
    uint8_t *olds = lmf_xmalloc(ntok);
    memcpy(old, s->ts.tok, ntok * sizeof *old);
    memcpy(olds, s->ts.tok_space, ntok);
    s->ts.ntok = 0;
    size_t q = 0;
    for (size_t i = 0; i < ntok;) {
        if (q < nf && f[q].start == i) {
            size_t np = 0;
            add_special_pieces(s, EN_SPECIALS[f[q].idx][1], &np);
            size_t o = old[i].off;
            for (size_t k = 0; k < np; k++) {
                emit_token(s, text, o, s->pieces[k], 0);
                o += s->pieces[k];
            }
            i = f[q].end;
            q++;
        } else {
            emit_token(s, text, old[i].off, old[i].len, olds[i]);
            i++;
        }
    }
    free(old);
    free(olds);
    free(f);
    free(m);
}

static void tokenize(lmf_scratch *s, const char *text, size_t len) {
    uint64_t h = XXH3_64bits(text, len);
    if (s->ts.have_last && s->ts.last_len == len && s->ts.last_hash == h) return;
    s->ts.ntok = 0;
    s->ts.nwords = 0;
    s->ts.have_last = 1;
    s->ts.last_len = len;
    s->ts.last_hash = h;
    if (len == 0) return;
    size_t i = 0, start = 0;
    size_t k = 0;
    int32_t c0 = lmf_utf8_next(text, len, &k);
    int in_ws = lmf_uc_isspace(c0);
    while (i < len) {
        size_t nx = i;
        unsigned char b0 = (unsigned char)text[i];
        int32_t c;
        int ws;
        if (b0 < 0x80) {
            /* ASCII: runs of non-space bytes in one go */
            if (!in_ws && b0 > 32) {
                do nx++;
                while (nx < len && (unsigned char)text[nx] > 32 && (unsigned char)text[nx] < 0x80);
                i = nx;
                continue;
            }
            nx++;
            c = b0;
            ws = (c >= 9 && c <= 13) || (c >= 28 && c <= 32);
        } else {
            c = lmf_utf8_next(text, len, &nx);
            ws = lmf_uc_isspace(c);
        }
        if (ws != in_ws) {
            if (start < i) tokenize_span(s, text, start, i - start, in_ws);
            start = c == ' ' ? nx : i;
            in_ws = !in_ws;
        }
        i = nx;
    }
    if (start < len) tokenize_span(s, text, start, len - start, in_ws);
    special_pass(s, text);
    if (s->ts.wordcap < s->ts.ntok) {
        s->ts.wordcap = s->ts.ntok;
        s->ts.words = lmf_xrealloc(s->ts.words, s->ts.wordcap * sizeof *s->ts.words);
    }
    for (size_t t = 0; t < s->ts.ntok; t++)
        if (!s->ts.tok_space[t]) s->ts.words[s->ts.nwords++] = s->ts.tok[t];
}

const lmf_span *lmf_text_words(lmf_scratch *s, const char *text, size_t len, size_t *n_words) {
    tokenize(s, text, len);
    *n_words = s->ts.nwords;
    return s->ts.words;
}

static int tok_is_punct(const char *p, size_t n) {
    for (size_t i = 0; i < n;) {
        if (!lmf_uc_ispunct_cat(lmf_utf8_next(p, n, &i))) return 0;
    }
    return 1;
}

static int tok_in_sent_punct(const char *p, size_t n) {
    size_t i = 0;
    int32_t c = lmf_utf8_next(p, n, &i);
    return i == n && get_bit(T.sent_punct, c);
}

size_t lmf_text_sentences(lmf_scratch *s, const char *text, size_t len) {
    tokset keep = s->ts; /* the document's tokens stay cached (in alt) while the line is split */
    s->ts = s->alt;
    tokenize(s, text, len);
    size_t nsent = 1;
    if (s->ts.ntok) {
        int seen_period = 0;
        for (size_t t = 0; t < s->ts.ntok; t++) {
            const char *p = text + s->ts.tok[t].off;
            size_t n = s->ts.tok[t].len;
            int in_punct = tok_in_sent_punct(p, n);
            if (seen_period && !in_punct && !tok_is_punct(p, n)) {
                if (t > 0) nsent++;
                seen_period = 0;
            } else if (in_punct) {
                seen_period = 1;
            }
        }
    }
    s->alt = s->ts;
    s->ts = keep;
    return nsent;
}

/* ---------------------------------------------------------------- output buffers */

void lmf_textbuf_reserve(lmf_textbuf *b, size_t cap) {
    if (cap + 1 <= b->cap) return;
    size_t c = b->cap ? b->cap : 256;
    while (c < cap + 1) c *= 2;
    b->data = lmf_xrealloc(b->data, c);
    b->cap = c;
}

void lmf_textbuf_append(lmf_textbuf *b, const char *s, size_t n) {
    lmf_textbuf_reserve(b, b->len + n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void lmf_textbuf_free(lmf_textbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void *lmf_scratch_match_data(lmf_scratch *s) { return s->md; }
