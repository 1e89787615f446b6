/* filters.h — the text-level stages of the data pipeline: normalize, quality filters (Gopher quality, Gopher
 * repetition, C4, FineWeb, length), toxicity (blocklist) and PII masking. Internal API (not in lmforge.h).
 *
 * Every stage is a pure function of one document (UTF-8 bytes + length) and its config; the pipeline driver calls
 * them per document from many threads. Rules for callers:
 *   - one lmf_scratch per thread (lmf_scratch_new / lmf_scratch_free): the stages' working memory, reused across
 *     documents; never shared by two threads at once. Configs, blocklists and the embedded tables are read-only
 *     and shared freely.
 *   - stages that rewrite text (normalize, C4, PII) write into a caller-owned lmf_textbuf, grown as needed and
 *     reused across calls; free it with lmf_textbuf_free. Output is NUL-terminated (not counted in len).
 *   - filters expect valid UTF-8 (run lmf_normalize first); invalid bytes never crash, they count as characters.
 *
 * Decisions and reasons are datatrove's (v0.10, English): the same thresholds by default (each config's
 * _defaults()), the same word splitter (spaCy's English tokenizer, text.h), the same reason strings. A threshold
 * set to 0 is disabled, as datatrove treats None/0. Agreement and speed: docs/data.md. */
#ifndef LMF_DATA_FILTERS_H
#define LMF_DATA_FILTERS_H

#include <stddef.h>
#include <stdint.h>

#include "data/text.h"
#include "lmforge.h"

/* ---------------------------------------------------------------- common */

/* keep = 1: the document passes (reason NULL); keep = 0: dropped, reason is a static string such as
 * "gopher_short_doc" (datatrove's reason for the same rule). */
typedef struct {
    int keep;
    const char *reason;
} lmf_verdict;

/* Sets v from a filter's finding: reason NULL keeps the document, else it is dropped for that reason. */
static inline void lmf_verdict_set(lmf_verdict *v, const char *reason) {
    v->keep = !reason;
    v->reason = reason;
}

/* Marks v dropped for reason (a static string); the filter returns right after. */
static inline void lmf_verdict_drop(lmf_verdict *v, const char *reason) {
    v->keep = 0;
    v->reason = reason;
}

lmf_scratch *lmf_scratch_new(void);
void lmf_scratch_free(lmf_scratch *s);

typedef struct {
    char *data; /* NUL-terminated */
    size_t len, cap;
} lmf_textbuf;
void lmf_textbuf_free(lmf_textbuf *b);
void lmf_textbuf_reserve(lmf_textbuf *b, size_t cap);                  /* internal helper, also for callers */
void lmf_textbuf_append(lmf_textbuf *b, const char *s, size_t n);

/* ---------------------------------------------------------------- normalize */

typedef struct {
    int repair_utf8;        /* 1: invalid bytes -> U+FFFD (always on: the other stages need valid UTF-8) */
    int nfc;                /* 1: Unicode NFC (utf8proc) */
    int remove_controls;    /* 1: drop C0/C1 controls and DEL except \n and \t (after line endings are fixed) */
    int fix_line_endings;   /* 1: \r\n and lone \r -> \n */
    int strip_trailing;     /* 1: spaces/tabs (and other Python whitespace but \n) at line ends removed */
    int max_blank_lines;    /* runs of more blank lines are cut to this many; -1: keep all */
    int trim;               /* 1: leading and trailing blank lines / whitespace of the document removed */
} lmf_normalize_cfg;

typedef struct {
    size_t invalid_bytes;     /* replaced by U+FFFD */
    size_t nfc_changed;       /* 1 if NFC changed the text (0 otherwise) */
    size_t controls_removed;  /* characters */
    size_t crlf_fixed;        /* \r\n or \r turned into \n */
    size_t trailing_removed;  /* whitespace characters removed at line ends */
    size_t blank_lines_removed;
    size_t trimmed;           /* characters removed at the document's start/end */
} lmf_normalize_stats;

void lmf_normalize_defaults(lmf_normalize_cfg *c); /* all on, max_blank_lines 2, trim 1 */
/* out gets the normalized text; st (optional) the counts. Never fails. */
void lmf_normalize(const lmf_normalize_cfg *c, const char *text, size_t len, lmf_textbuf *out,
                   lmf_normalize_stats *st);

/* ---------------------------------------------------------------- Gopher quality (datatrove GopherQualityFilter) */

typedef struct {
    int min_doc_words;               /* 50: fewer non-symbol words -> "gopher_short_doc" */
    int max_doc_words;               /* 100000: more -> "gopher_long_doc" */
    double min_avg_word_length;      /* 3: "gopher_below_avg_threshold" */
    double max_avg_word_length;      /* 10: "gopher_above_avg_threshold" */
    double max_symbol_word_ratio;    /* 0.1: '#' per word "gopher_too_many_hashes", '...'/'…' "gopher_too_many_ellipsis" */
    double max_bullet_lines_ratio;   /* 0.9: lines starting with '•' or '-' "gopher_too_many_bullets" */
    double max_ellipsis_lines_ratio; /* 0.3: lines ending with '...'/'…' "gopher_too_many_end_ellipsis" */
    double max_non_alpha_words_ratio;/* 0.8: share of words with a letter below this -> "gopher_below_alpha_threshold" */
    int min_stop_words;              /* 2: distinct stop words present below this -> "gopher_enough_stop_words" */
    const char *const *stop_words;   /* NULL: the, be, to, of, and, that, have, with (case-sensitive, as datatrove) */
    size_t n_stop_words;
} lmf_gopher_quality_cfg;

void lmf_gopher_quality_defaults(lmf_gopher_quality_cfg *c);
void lmf_gopher_quality(const lmf_gopher_quality_cfg *c, const char *text, size_t len, lmf_scratch *s,
                        lmf_verdict *v);

/* ---------------------------------------------------------------- Gopher repetition (GopherRepetitionFilter) */

typedef struct {
    int n;       /* n-gram size, 1..16 */
    double frac; /* threshold on the character fraction */
} lmf_ngram_frac;

typedef struct {
    double dup_para_frac;      /* 0.3: duplicated paragraphs / paragraphs -> "dup_para_frac" */
    double dup_para_char_frac; /* 0.2: chars in duplicated paragraphs / chars -> "dup_para_char_frac" */
    double dup_line_frac;      /* 0.3: "dup_line_frac" */
    double dup_line_char_frac; /* 0.2: "dup_line_char_frac" */
    int n_top;                 /* 3: (2, 0.20) (3, 0.18) (4, 0.16): chars of the most frequent n-gram -> "top_N_gram" */
    lmf_ngram_frac top[8];
    int n_dup;                 /* 6: (5, 0.15) ... (10, 0.10): chars in repeated n-grams -> "duplicated_N_n_grams" */
    lmf_ngram_frac dup[16];
} lmf_gopher_repetition_cfg;

void lmf_gopher_repetition_defaults(lmf_gopher_repetition_cfg *c);
/* An empty text is dropped with "empty". */
void lmf_gopher_repetition(const lmf_gopher_repetition_cfg *c, const char *text, size_t len, lmf_scratch *s,
                           lmf_verdict *v);

/* ---------------------------------------------------------------- C4 (C4QualityFilter, line mode) */

typedef struct {
    int remove_citations;         /* 1: "[1]", "[edit]", "[citation needed]" removed from lines */
    int filter_no_terminal_punct; /* 1: lines not ending in . ? ! " ' (or ending in "...") dropped */
    int min_num_sentences;        /* 5: fewer sentences in the kept lines -> "too_few_sentences"; -1 off */
    int min_words_per_line;       /* 3: lines with fewer whitespace-separated words dropped; -1 off */
    int max_word_length;          /* 1000: lines with a longer word dropped; -1 off */
    int filter_lorem_ipsum;       /* 1: "lorem ipsum" in a kept line -> "lorem_ipsum" */
    int filter_javascript;        /* 1: lines mentioning "javascript" dropped */
    int filter_curly_bracket;     /* 1: '{' in a kept line -> "curly_bracket" */
    int filter_policy;            /* 1: lines with "terms of use", "privacy policy", cookie phrases dropped */
} lmf_c4_cfg;

typedef struct {
    size_t lines, kept, too_long_word, no_terminal_punct, too_few_words, javascript, policy;
} lmf_c4_stats;

void lmf_c4_defaults(lmf_c4_cfg *c);
/* C4 rewrites the document: on keep, out holds the kept lines (stripped, joined by \n); on drop out is empty.
 * st (optional) counts the line decisions. */
void lmf_c4_quality(const lmf_c4_cfg *c, const char *text, size_t len, lmf_scratch *s, lmf_textbuf *out,
                    lmf_c4_stats *st, lmf_verdict *v);

/* ---------------------------------------------------------------- FineWeb (FineWebQualityFilter) */

typedef struct {
    double line_punct_thr;       /* 0.12: share of lines ending in terminal punctuation below -> "line_punct_ratio" */
    int line_punct_exclude_zero; /* 0: 1 keeps documents where that share is exactly 0 */
    double short_line_thr;       /* 0.67: share of lines of <= short_line_length chars above -> "short_line_ratio" */
    int short_line_length;       /* 30 */
    double char_duplicates_ratio;/* 0.01: chars in duplicated lines / non-newline chars above -> "char_dup_ratio" */
    double new_line_ratio;       /* 0.3: newlines per word above -> "list_ratio" */
    const int32_t *stop_chars;   /* NULL: datatrove's TERMINAL_PUNCTUATION */
    size_t n_stop_chars;
} lmf_fineweb_cfg;

void lmf_fineweb_defaults(lmf_fineweb_cfg *c);
/* A text without a non-blank line is dropped with "empty". */
void lmf_fineweb_quality(const lmf_fineweb_cfg *c, const char *text, size_t len, lmf_scratch *s, lmf_verdict *v);

/* ---------------------------------------------------------------- length bounds */

typedef struct {
    size_t min_chars; /* 0: off; fewer characters (code points) -> "length_too_short" */
    size_t max_chars; /* 0: off; more -> "length_too_long" */
} lmf_length_cfg;

void lmf_length_defaults(lmf_length_cfg *c); /* min 1 (drops empty documents), max 0 */
void lmf_length_filter(const lmf_length_cfg *c, const char *text, size_t len, lmf_verdict *v);

/* ---------------------------------------------------------------- toxicity (blocklist) */

/* A blocklist: terms of one or more words, matched case-folded (utf8proc casefold) on word boundaries (a word is
 * a maximal run of letters, digits, marks and inner apostrophes). Immutable once built: share it across threads. */
typedef struct lmf_blocklist lmf_blocklist;

/* The embedded English list (data/blocklists/en.txt), built on first use and never freed. */
const lmf_blocklist *lmf_blocklist_default(void);
/* From text: one term per line; blank lines and lines starting with '#' ignored. */
lmf_blocklist *lmf_blocklist_from_text(const char *text, size_t len);
/* From a file; LMF_ERR_IO (named) when it cannot be read, LMF_ERR_FORMAT when it holds no term. */
lmf_status lmf_blocklist_load(const char *path, lmf_blocklist **out);
void lmf_blocklist_free(lmf_blocklist *b);
size_t lmf_blocklist_size(const lmf_blocklist *b);

typedef struct {
    double max_matches_per_word; /* 0.002: drop when matches / words exceeds it (-> "toxic_words") */
    int min_matches;             /* 1: and at least this many matches */
} lmf_toxicity_cfg;

#define LMF_TOXICITY_MAX_TERMS 16
typedef struct {
    size_t matches, words;
    size_t n_terms;                              /* distinct matched terms, at most LMF_TOXICITY_MAX_TERMS */
    const char *terms[LMF_TOXICITY_MAX_TERMS];   /* the blocklist's own strings, valid while it lives */
    uint32_t term_count[LMF_TOXICITY_MAX_TERMS];
} lmf_toxicity_result;

void lmf_toxicity_defaults(lmf_toxicity_cfg *c);
void lmf_toxicity(const lmf_toxicity_cfg *c, const lmf_blocklist *b, const char *text, size_t len, lmf_scratch *s,
                  lmf_toxicity_result *r, lmf_verdict *v);

/* ---------------------------------------------------------------- PII masking */

typedef struct {
    int emails;          /* 1: datatrove's e-mail regex; replaced in turn by email_replacements */
    int ipv4;            /* 1: datatrove's IPv4 regex */
    int ipv6;            /* 1: IPv6 addresses (validated with inet_pton) */
    int phones;          /* 1: phone numbers (+CC, (area), groups of digits with separators; 9..15 digits) */
    int only_public_ips; /* 1: private, loopback, link-local, documentation, reserved addresses left alone
                            (Python 3.11 ipaddress is_global, as datatrove) */
    const char *const *email_replacements; /* NULL: "email@example.com", "firstname.lastname@example.org" */
    size_t n_email_replacements;
    const char *const *ip_replacements;    /* NULL: datatrove's six IPv4 addresses */
    size_t n_ip_replacements;
    const char *ipv6_replacement;          /* NULL: "2001:db8::1" (documentation prefix) */
    const char *phone_replacement;         /* NULL: "555-0100" (reserved fictional number) */
} lmf_pii_cfg;

typedef struct {
    size_t emails, ipv4, ipv6, phones;
} lmf_pii_counts;

void lmf_pii_defaults(lmf_pii_cfg *c);
/* out gets the masked text. Replacements rotate per document, starting at the first for every document (datatrove
 * rotates across a worker's documents, which depends on sharding). */
void lmf_pii_mask(const lmf_pii_cfg *c, const char *text, size_t len, lmf_scratch *s, lmf_textbuf *out,
                  lmf_pii_counts *counts);

#endif
