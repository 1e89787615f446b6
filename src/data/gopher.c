/* gopher.c — datatrove's GopherQualityFilter and GopherRepetitionFilter (Rae et al. 2021, "Scaling Language
 * Models", Table A1), rule for rule and in the same order, so the first failing rule gives the same reason.
 * Counts are Python characters (code points) and spaCy words (text.h). */
#include <math.h>
#include <string.h>
#include <xxhash.h>

#include "data/filters.h"

/* ---------------------------------------------------------------- Gopher quality */

static const char *const default_stop_words[] = {"the", "be", "to", "of", "and", "that", "have", "with"};

void lmf_gopher_quality_defaults(lmf_gopher_quality_cfg *c) {
    *c = (lmf_gopher_quality_cfg){.min_doc_words = 50, .max_doc_words = 100000, .min_avg_word_length = 3,
                                  .max_avg_word_length = 10, .max_symbol_word_ratio = 0.1,
                                  .max_bullet_lines_ratio = 0.9, .max_ellipsis_lines_ratio = 0.3,
                                  .max_non_alpha_words_ratio = 0.8, .min_stop_words = 2};
}

/* Non-overlapping occurrences of pat (str.count). */
static size_t count_sub(const char *s, size_t n, const char *pat, size_t m) {
    size_t c = 0;
    const char *p = s, *e = s + n;
    while ((size_t)(e - p) >= m) {
        const char *q = memmem(p, (size_t)(e - p), pat, m);
        if (!q) break;
        c++;
        p = q + m;
    }
    return c;
}

static int starts_with(const char *s, size_t n, const char *pat) {
    size_t m = strlen(pat);
    return n >= m && memcmp(s, pat, m) == 0;
}
static int ends_with(const char *s, size_t n, const char *pat) {
    size_t m = strlen(pat);
    return n >= m && memcmp(s + n - m, pat, m) == 0;
}

/* NULL, or the reason the document is dropped (lmf_verdict). */
static const char *gopher_quality_reason(const lmf_gopher_quality_cfg *c, const char *text, size_t len,
                                         lmf_scratch *s) {
    size_t nw;
    const lmf_span *w = lmf_text_words(s, text, len, &nw);

    size_t n_ns = 0, ns_chars = 0, n_alpha = 0;
    for (size_t i = 0; i < nw; i++) {
        const char *p = text + w[i].off;
        int nonsym = 0, alpha = 0;
        for (size_t k = 0; k < w[i].len;) {
            int32_t ch = lmf_utf8_next(p, w[i].len, &k);
            if (!nonsym && !lmf_uc_is_dt_punct(ch)) nonsym = 1;
            if (!alpha && lmf_uc_isalpha(ch)) alpha = 1;
            if (nonsym && alpha) break;
        }
        if (nonsym) {
            n_ns++;
            ns_chars += w[i].nchars;
        }
        n_alpha += (size_t)alpha;
    }
    if (c->min_doc_words && n_ns < (size_t)c->min_doc_words) return "gopher_short_doc";
    if (c->max_doc_words && n_ns > (size_t)c->max_doc_words) return "gopher_long_doc";

    double avg = n_ns ? (double)ns_chars / (double)n_ns : NAN; /* np.mean of [] is nan: no comparison holds */
    if (c->min_avg_word_length && avg < c->min_avg_word_length) return "gopher_below_avg_threshold";
    if (c->max_avg_word_length && avg > c->max_avg_word_length) return "gopher_above_avg_threshold";

    /* datatrove divides by the word count; a document without words would raise there: we skip the ratio */
    if (c->max_symbol_word_ratio && nw) {
        if ((double)count_sub(text, len, "#", 1) / (double)nw > c->max_symbol_word_ratio)
            return "gopher_too_many_hashes";
        size_t ell = count_sub(text, len, "...", 3) + count_sub(text, len, "\xE2\x80\xA6", 3);
        if ((double)ell / (double)nw > c->max_symbol_word_ratio) return "gopher_too_many_ellipsis";
    }

    if (c->max_bullet_lines_ratio || c->max_ellipsis_lines_ratio) {
        size_t pos = 0, nl = 0, bullets = 0, ell = 0;
        lmf_span ln;
        while (lmf_next_line(text, len, &pos, &ln)) {
            size_t a = ln.off, b = ln.off + ln.len;
            nl++;
            size_t la = a;
            lmf_lstrip(text, &la, b);
            if (starts_with(text + la, b - la, "\xE2\x80\xA2") || starts_with(text + la, b - la, "-")) bullets++;
            size_t rb = b;
            lmf_rstrip(text, a, &rb);
            if (ends_with(text + a, rb - a, "...") || ends_with(text + a, rb - a, "\xE2\x80\xA6")) ell++;
        }
        if (nl) {
            if (c->max_bullet_lines_ratio && (double)bullets / (double)nl > c->max_bullet_lines_ratio)
                return "gopher_too_many_bullets";
            if (c->max_ellipsis_lines_ratio && (double)ell / (double)nl > c->max_ellipsis_lines_ratio)
                return "gopher_too_many_end_ellipsis";
        }
    }

    if (c->max_non_alpha_words_ratio && nw && (double)n_alpha / (double)nw < c->max_non_alpha_words_ratio)
        return "gopher_below_alpha_threshold";

    if (c->min_stop_words) {
        const char *const *sw = c->stop_words ? c->stop_words : default_stop_words;
        size_t nsw = c->stop_words ? c->n_stop_words : sizeof default_stop_words / sizeof *default_stop_words;
        /* distinct stop words present; duplicates in the list count once, as in the Python set */
        size_t found = 0;
        uint8_t *seen = lmf_scratch_buf(s, 0, nsw + 1);
        memset(seen, 0, nsw + 1);
        for (size_t i = 0; i < nw && found < nsw; i++) {
            for (size_t k = 0; k < nsw; k++) {
                if (seen[k]) continue;
                size_t m = strlen(sw[k]);
                if (m == w[i].len && memcmp(sw[k], text + w[i].off, m) == 0) {
                    /* mark every identical entry of the list */
                    for (size_t q = k; q < nsw; q++)
                        if (!seen[q] && strcmp(sw[q], sw[k]) == 0) seen[q] = 1;
                    found++;
                    break;
                }
            }
        }
        if (found < (size_t)c->min_stop_words) return "gopher_enough_stop_words";
    }
    return NULL;
}

void lmf_gopher_quality(const lmf_gopher_quality_cfg *c, const char *text, size_t len, lmf_scratch *s, lmf_verdict *v) {
    lmf_verdict_set(v, gopher_quality_reason(c, text, len, s));
}

/* ---------------------------------------------------------------- Gopher repetition */

void lmf_gopher_repetition_defaults(lmf_gopher_repetition_cfg *c) {
    memset(c, 0, sizeof *c);
    c->dup_line_frac = 0.3;
    c->dup_para_frac = 0.3;
    c->dup_line_char_frac = 0.2;
    c->dup_para_char_frac = 0.2;
    c->n_top = 3;
    c->top[0] = (lmf_ngram_frac){2, 0.20};
    c->top[1] = (lmf_ngram_frac){3, 0.18};
    c->top[2] = (lmf_ngram_frac){4, 0.16};
    c->n_dup = 6;
    static const double fr[6] = {0.15, 0.14, 0.13, 0.12, 0.11, 0.10};
    for (int i = 0; i < 6; i++) c->dup[i] = (lmf_ngram_frac){5 + i, fr[i]};
}

static const char *const top_reason[17] = {
    "top_0_gram", "top_1_gram", "top_2_gram", "top_3_gram", "top_4_gram", "top_5_gram", "top_6_gram", "top_7_gram",
    "top_8_gram", "top_9_gram", "top_10_gram", "top_11_gram", "top_12_gram", "top_13_gram", "top_14_gram",
    "top_15_gram", "top_16_gram"};
static const char *const dup_reason[17] = {
    "duplicated_0_n_grams", "duplicated_1_n_grams", "duplicated_2_n_grams", "duplicated_3_n_grams",
    "duplicated_4_n_grams", "duplicated_5_n_grams", "duplicated_6_n_grams", "duplicated_7_n_grams",
    "duplicated_8_n_grams", "duplicated_9_n_grams", "duplicated_10_n_grams", "duplicated_11_n_grams",
    "duplicated_12_n_grams", "duplicated_13_n_grams", "duplicated_14_n_grams", "duplicated_15_n_grams",
    "duplicated_16_n_grams"};

/* find_duplicates over pieces given as spans: (duplicate elements, their characters). */
static void find_duplicates(lmf_scratch *s, const char *text, const lmf_span *el, size_t n, size_t *dup_el,
                            size_t *dup_chars) {
    lmf_hset *h = lmf_scratch_hset(s, 0, n);
    size_t de = 0, dc = 0;
    for (size_t i = 0; i < n; i++) {
        int isnew;
        lmf_hset_add(h, XXH3_64bits(text + el[i].off, el[i].len) ^ ((uint64_t)el[i].len << 1), &isnew);
        if (!isnew) {
            de++;
            dc += el[i].nchars;
        }
    }
    *dup_el = de;
    *dup_chars = dc;
}

#define HB 0x100000001B3ull /* odd multiplier of the byte-polynomial hash of "".join(n-gram) */

/* text[a..b) split at every run of min_run (1 or 2) or more newlines, as re.split("\n+") or re.split(r"\n{2,}"):
 * the pieces (in scratch buffer 1) and their count *n_out. */
static lmf_span *split_on_newlines(lmf_scratch *s, const char *text, size_t a, size_t b, int min_run,
                                   size_t *n_out) {
    size_t cap = 16;
    for (size_t i = a; i < b; i++) cap += text[i] == '\n';
    lmf_span *el = lmf_scratch_buf(s, 1, (cap + 1) * sizeof *el);
    size_t n = 0, st = a;
    for (size_t i = a; i < b;) {
        if (text[i] == '\n' && (min_run == 1 || (i + 1 < b && text[i + 1] == '\n'))) {
            size_t j = i;
            while (j < b && text[j] == '\n') j++;
            el[n++] = (lmf_span){(uint32_t)st, (uint32_t)(i - st), (uint32_t)lmf_utf8_nchars(text + st, i - st)};
            st = i = j;
        } else {
            i++;
        }
    }
    el[n++] = (lmf_span){(uint32_t)st, (uint32_t)(b - st), (uint32_t)lmf_utf8_nchars(text + st, b - st)};
    *n_out = n;
    return el;
}

/* NULL, or the reason the document is dropped (lmf_verdict). */
static const char *gopher_repetition_reason(const lmf_gopher_repetition_cfg *c, const char *text, size_t len,
                                            lmf_scratch *s) {
    if (len == 0) return "empty";
    double nchars = (double)lmf_utf8_nchars(text, len);

    /* paragraphs: re.split(r"\n{2,}", text.strip()) */
    size_t a = 0, b = len;
    lmf_strip(text, &a, &b);
    size_t de, dc, n;
    lmf_span *el = split_on_newlines(s, text, a, b, 2, &n);
    find_duplicates(s, text, el, n, &de, &dc);
    if (c->dup_para_frac && (double)de / (double)n > c->dup_para_frac) return "dup_para_frac";
    if (c->dup_para_char_frac && (double)dc / nchars > c->dup_para_char_frac) return "dup_para_char_frac";

    /* lines: re.split("\n+", text) (empty first/last pieces when the text starts/ends with newlines) */
    el = split_on_newlines(s, text, 0, len, 1, &n);
    find_duplicates(s, text, el, n, &de, &dc);
    if (c->dup_line_frac && (double)de / (double)n > c->dup_line_frac) return "dup_line_frac";
    if (c->dup_line_char_frac && (double)dc / nchars > c->dup_line_char_frac) return "dup_line_char_frac";

    size_t nw;
    const lmf_span *w = lmf_text_words(s, text, len, &nw);
    if (nw == 0) return NULL;
    /* per word: xxh3 (sequence keys), byte-polynomial hash and HB^bytes (concatenation keys) */
    uint64_t *wh = lmf_scratch_buf(s, 2, nw * 3 * sizeof *wh);
    uint64_t *ph = wh + nw, *pp = wh + 2 * nw;
    for (size_t i = 0; i < nw; i++) {
        const unsigned char *p = (const unsigned char *)text + w[i].off;
        uint64_t h = 0, pw = 1;
        for (uint32_t k = 0; k < w[i].len; k++) {
            h = h * HB + p[k] + 1;
            pw *= HB;
        }
        wh[i] = XXH3_64bits(p, w[i].len);
        ph[i] = h;
        pp[i] = pw;
    }

    for (int t = 0; t < c->n_top; t++) {
        int ng = c->top[t].n;
        if (ng < 1 || (size_t)ng > nw) continue; /* no n-grams */
        size_t cnt = nw - (size_t)ng + 1;
        lmf_hset *h = lmf_scratch_hset(s, 0, cnt);
        uint32_t *first_pos = lmf_scratch_buf(s, 3, cnt * sizeof *first_pos);
        size_t best_slot = 0;
        uint32_t best_count = 0, best_first = UINT32_MAX;
        for (size_t i = 0; i < cnt; i++) {
            uint64_t key = 0; /* the n words' hashes, mixed in order */
            for (int k = 0; k < ng; k++) {
                key = (key ^ wh[i + (size_t)k]) * 0xBF58476D1CE4E5B9ull;
                key ^= key >> 31;
            }
            int isnew;
            size_t slot = lmf_hset_add(h, key, &isnew);
            if (isnew) first_pos[h->first[slot]] = (uint32_t)i;
            uint32_t cn = ++h->vals[slot];
            uint32_t fi = h->first[slot];
            /* Counter.most_common(1): the highest count, the first inserted among equals */
            if (cn > best_count || (cn == best_count && fi < best_first)) {
                best_count = cn;
                best_first = fi;
                best_slot = slot;
            }
        }
        (void)best_slot;
        size_t i0 = first_pos[best_first], chars = (size_t)ng - 1;
        for (int k = 0; k < ng; k++) chars += w[i0 + (size_t)k].nchars;
        if ((double)(chars * best_count) / nchars > c->top[t].frac) return top_reason[ng <= 16 ? ng : 0];
    }

    for (int t = 0; t < c->n_dup; t++) {
        int ng = c->dup[t].n;
        if (ng < 1) continue;
        size_t repeated = 0;
        lmf_hset *h = lmf_scratch_hset(s, 0, nw);
        size_t idx = 0;
        while (nw >= (size_t)ng && idx < nw - (size_t)ng + 1) {
            uint64_t key = 0;
            size_t chars = 0;
            for (int k = 0; k < ng; k++) {
                key = key * pp[idx + (size_t)k] + ph[idx + (size_t)k];
                chars += w[idx + (size_t)k].nchars;
            }
            int isnew;
            lmf_hset_add(h, key, &isnew);
            if (!isnew) {
                repeated += chars;
                idx += (size_t)ng;
            } else {
                idx++;
            }
        }
        if ((double)repeated / nchars > c->dup[t].frac) return dup_reason[ng <= 16 ? ng : 0];
    }
    return NULL;
}

void lmf_gopher_repetition(const lmf_gopher_repetition_cfg *c, const char *text, size_t len, lmf_scratch *s,
                           lmf_verdict *v) {
    lmf_verdict_set(v, gopher_repetition_reason(c, text, len, s));
}
