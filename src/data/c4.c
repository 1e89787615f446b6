/* c4.c — datatrove's C4QualityFilter in its default line mode (split_paragraph=True), following the TensorFlow
 * Datasets C4 cleaner: lines are kept or dropped one by one, a few findings drop the whole document, and the
 * document keeps only its surviving lines. Case-insensitive tests are ASCII lower-casing (Python's str.lower()
 * differs only for a handful of non-ASCII letters that lower to ASCII, e.g. KELVIN SIGN). */
#include <string.h>
#include <utf8proc.h>

#include "data/filters.h"

void lmf_c4_defaults(lmf_c4_cfg *c) {
    *c = (lmf_c4_cfg){.remove_citations = 1, .filter_no_terminal_punct = 1, .min_num_sentences = 5,
                      .min_words_per_line = 3, .max_word_length = 1000, .filter_lorem_ipsum = 1,
                      .filter_javascript = 1, .filter_curly_bracket = 1, .filter_policy = 1};
}

static const char *const policy[] = {"terms of use", "privacy policy", "cookie policy", "uses cookies",
                                     "use of cookies", "use cookies"};

static int ci_contains(const char *s, size_t n, const char *pat) {
    size_t m = strlen(pat);
    if (m > n) return 0;
    for (size_t i = 0; i + m <= n; i++) {
        size_t k = 0;
        while (k < m) {
            unsigned char ch = (unsigned char)s[i + k];
            if (ch >= 'A' && ch <= 'Z') ch |= 32;
            if (ch != (unsigned char)pat[k]) break;
            k++;
        }
        if (k == m) return 1;
    }
    return 0;
}

/* CITATION_REGEX = r"\[\d*]|\[edit]|\[citation needed]" removed; writes into out, returns its length. */
static size_t remove_citations(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '[') {
            size_t j = i + 1;
            while (j < n) { /* \d: Unicode decimal digits */
                size_t k = j;
                int32_t c = lmf_utf8_next(s, n, &k);
                if (c < 0 || utf8proc_category(c) != UTF8PROC_CATEGORY_ND) break;
                j = k;
            }
            if (j < n && s[j] == ']') {
                i = j + 1;
                continue;
            }
            if (n - i >= 6 && memcmp(s + i, "[edit]", 6) == 0) {
                i += 6;
                continue;
            }
            if (n - i >= 17 && memcmp(s + i, "[citation needed]", 17) == 0) {
                i += 17;
                continue;
            }
        }
        out[o++] = s[i++];
    }
    return o;
}

static int ends_with(const char *s, size_t n, const char *pat) {
    size_t m = strlen(pat);
    return n >= m && memcmp(s + n - m, pat, m) == 0;
}

void lmf_c4_quality(const lmf_c4_cfg *c, const char *text, size_t len, lmf_scratch *s, lmf_textbuf *out,
                    lmf_c4_stats *st, lmf_verdict *v) {
    lmf_c4_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    v->keep = 1;
    v->reason = NULL;
    out->len = 0;
    lmf_textbuf_reserve(out, len + 1);
    out->data[0] = 0;
    char *tmp = lmf_scratch_buf(s, 4, len + 1);
    long nsent = 0;
    size_t pos = 0;
    lmf_span ln;
    while (lmf_next_line(text, len, &pos, &ln)) {
        st->lines++;
        size_t a = ln.off, b = ln.off + ln.len;
        lmf_strip(text, &a, &b);
        /* words = line.split(): count them and find the longest (characters) */
        size_t nwords = 0, longest = 0;
        for (size_t i = a; i < b;) {
            size_t k = i;
            int32_t ch = lmf_utf8_next(text, b, &k);
            if (lmf_uc_isspace(ch)) {
                i = k;
                continue;
            }
            size_t wl = 0;
            while (i < b) {
                k = i;
                ch = lmf_utf8_next(text, b, &k);
                if (lmf_uc_isspace(ch)) break;
                wl++;
                i = k;
            }
            nwords++;
            if (wl > longest) longest = wl;
        }
        if (c->max_word_length != -1 && longest > (size_t)c->max_word_length) {
            st->too_long_word++;
            continue;
        }
        const char *line = text + a;
        size_t n = b - a;
        if (c->remove_citations && memchr(line, '[', n)) {
            n = remove_citations(line, n, tmp);
            line = tmp;
        }
        if (c->filter_no_terminal_punct) {
            int term = n > 0 && (line[n - 1] == '.' || line[n - 1] == '?' || line[n - 1] == '!' ||
                                 line[n - 1] == '"' || line[n - 1] == '\'');
            if (!term || ends_with(line, n, "...")) {
                st->no_terminal_punct++;
                continue;
            }
        }
        if ((long)nwords < (long)c->min_words_per_line) {
            st->too_few_words++;
            continue;
        }
        if (c->filter_lorem_ipsum && ci_contains(line, n, "lorem ipsum")) {
            v->keep = 0;
            v->reason = "lorem_ipsum";
            break;
        }
        if (c->filter_javascript && ci_contains(line, n, "javascript")) {
            st->javascript++;
            continue;
        }
        if (c->filter_curly_bracket && memchr(line, '{', n)) {
            v->keep = 0;
            v->reason = "curly_bracket";
            break;
        }
        if (c->filter_policy) {
            int hit = 0;
            for (size_t k = 0; k < sizeof policy / sizeof *policy && !hit; k++) hit = ci_contains(line, n, policy[k]);
            if (hit) {
                st->policy++;
                continue;
            }
        }
        if (c->min_num_sentences != -1) nsent += (long)lmf_text_sentences(s, line, n);
        if (out->len) lmf_textbuf_append(out, "\n", 1);
        lmf_textbuf_append(out, line, n);
        st->kept++;
    }
    if (v->keep && nsent < c->min_num_sentences) {
        v->keep = 0;
        v->reason = "too_few_sentences";
    }
    if (!v->keep) {
        out->len = 0;
        out->data[0] = 0;
        return;
    }
    size_t x = 0, y = out->len; /* "\n".join(kept).strip() */
    lmf_strip(out->data, &x, &y);
    if (x) memmove(out->data, out->data + x, y - x);
    out->len = y - x;
    out->data[out->len] = 0;
}
