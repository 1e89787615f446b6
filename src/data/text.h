/* text.h — text primitives shared by the data stages (src/data/): UTF-8 decoding, Python's str predicates
 * (isspace, isalpha, splitlines), datatrove's punctuation sets, and datatrove's English word and sentence
 * splitters, which are spaCy's blank-English tokenizer and Sentencizer reimplemented in C (text.c, with the rule
 * data generated from spaCy into wordtok_en_tables.h).
 *
 * Lengths: datatrove counts Python characters (code points); every `nchars` here is a code-point count, every
 * offset/length a byte count. Input is expected to be valid UTF-8 (run lmf_normalize first); invalid bytes never
 * crash anything, each counts as one character and never matches a regex.
 *
 * Threads: everything here is reentrant. Immutable tables (compiled regexes, special cases) are built once on
 * first use (pthread_once); all mutable state lives in an lmf_scratch, which one thread owns at a time. */
#ifndef LMF_DATA_TEXT_H
#define LMF_DATA_TEXT_H

#include <stddef.h>
#include <stdint.h>

typedef struct lmf_scratch lmf_scratch; /* per-thread working memory of the data stages (filters.h) */

/* One token/line/word: bytes [off, off+len) of the document, nchars code points. */
typedef struct {
    uint32_t off, len, nchars;
} lmf_span;

/* Decodes the code point at s[*i] (i < n) and advances *i; an invalid byte gives -1 and advances by one. */
static inline int32_t lmf_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k = *i;
    unsigned c = u[k];
    if (c < 0x80) {
        *i = k + 1;
        return (int32_t)c;
    }
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (len == 0 || c > 0xF4 || k + (size_t)len > n) goto bad;
    uint32_t cp = c & (0x3Fu >> (len - 1));
    for (int j = 1; j < len; j++) {
        unsigned d = u[k + j];
        if ((d & 0xC0) != 0x80) goto bad;
        cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        goto bad;
    *i = k + (size_t)len;
    return (int32_t)cp;
bad:
    *i = k + 1;
    return -1;
}

size_t lmf_utf8_nchars(const char *s, size_t n);  /* code points (an invalid byte counts as one) */
size_t lmf_utf8_put(char *out, int32_t cp);       /* encodes cp (<= 0x10FFFF) into out[0..3]; returns bytes */
int lmf_utf8_valid(const char *s, size_t n);      /* 1 when s is well-formed UTF-8 */

/* Python's str predicates for one code point. */
int lmf_uc_isspace(int32_t cp);  /* str.isspace: category Zs or bidi class WS/B/S */
int lmf_uc_isalpha(int32_t cp);  /* str.isalpha: categories Lu Ll Lt Lm Lo */
int lmf_uc_ispunct_cat(int32_t cp); /* unicodedata.category(c) starts with "P" (spaCy's is_punct) */
/* datatrove.utils.text: PUNCTUATION_SET (ASCII and CJK punctuation, C0/C1 controls but \t \n \r, and
 * TERMINAL_PUNCTUATION) and TERMINAL_PUNCTUATION (sentence-ending marks of many scripts). */
int lmf_uc_is_dt_punct(int32_t cp);
int lmf_uc_is_dt_terminal(int32_t cp);

/* Python's str.splitlines() (no keepends): call with *pos = 0 until it returns 0; each call gives the next line
 * (without its terminator: \n \r \r\n \v \f \x1c \x1d \x1e U+0085 U+2028 U+2029). */
int lmf_next_line(const char *s, size_t n, size_t *pos, lmf_span *line);
/* str.strip() / lstrip() / rstrip() bounds, Python whitespace. */
void lmf_strip(const char *s, size_t *a, size_t *b);
void lmf_lstrip(const char *s, size_t *a, size_t b);
void lmf_rstrip(const char *s, size_t a, size_t *b);

/* datatrove's split_into_words(text, "en"): spaCy's English tokens with whitespace tokens dropped. The array lives
 * in the scratch and stays valid until the next lmf_text_words / lmf_text_tokens call on it; asking again for the
 * same text (same bytes) reuses the last result, so several filters on one document tokenize it once. */
const lmf_span *lmf_text_words(lmf_scratch *s, const char *text, size_t len, size_t *n_words);
/* len(split_into_sentences(text, "en")): spaCy's Sentencizer sentences (1 for a text without tokens). */
size_t lmf_text_sentences(lmf_scratch *s, const char *text, size_t len);

/* Small growable arrays kept in the scratch, for the stages' own bookkeeping. */
/* slot 0..7; contents not preserved when it grows. A stage may use any slot during one call, but must not hold one
 * across a call to another stage. In use: 0 Gopher stop words; 1 lines/paragraphs (Gopher repetition, FineWeb);
 * 2, 3 Gopher n-grams; 4 C4's line copy; 5 toxicity words. */
void *lmf_scratch_buf(lmf_scratch *s, int slot, size_t bytes);
/* An open-addressing set of 64-bit keys (hashes) with a count per key, in the scratch; cleared by reset. */
typedef struct {
    uint64_t *keys; /* 0 = empty slot (keys are forced non-zero) */
    uint32_t *vals;
    uint32_t *first;  /* insertion index of the key */
    size_t cap, n;
    unsigned shift; /* 64 - log2(cap): the slot is the top bits of key * golden ratio */
} lmf_hset;
lmf_hset *lmf_scratch_hset(lmf_scratch *s, int slot, size_t expected); /* slot 0..1; cleared, sized for expected */
/* Finds or inserts key; returns its slot index; *isnew says whether it was inserted. */
size_t lmf_hset_add(lmf_hset *h, uint64_t key, int *isnew);

uint64_t lmf_hash_bytes(const char *s, size_t n); /* xxh3 64 */
/* Compiles one of the stages' built-in regexes (a pcre2_code *: UTF, UCP, JIT-compiled). The patterns are constants
 * of this code, so one that does not compile is a bug: it aborts with file:line and PCRE2's message. */
void *lmf_regex_builtin(const char *pat);
/* The scratch's pcre2_match_data (16 pairs), for stages with their own regexes. */
void *lmf_scratch_match_data(lmf_scratch *s);

#endif
