/* fineweb.c — datatrove's FineWebQualityFilter (the FineWeb paper's three custom filters plus the newline/word
 * ratio), in datatrove's order. Lines here are text.split("\n") minus blank ones, not stripped. */
#include <string.h>

#include "data/filters.h"

void lmf_fineweb_defaults(lmf_fineweb_cfg *c) {
    *c = (lmf_fineweb_cfg){.line_punct_thr = 0.12, .line_punct_exclude_zero = 0, .short_line_thr = 0.67,
                           .short_line_length = 30, .char_duplicates_ratio = 0.01, .new_line_ratio = 0.3};
}

/* Last code point of s[0..n) (n > 0). */
static int32_t last_cp(const char *s, size_t n) {
    size_t k = n - 1;
    while (k > 0 && n - k < 4 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    size_t i = k;
    int32_t c = lmf_utf8_next(s, n, &i);
    return i == n ? c : -1;
}

/* NULL, or the reason the document is dropped (lmf_verdict). */
static const char *fineweb_reason(const lmf_fineweb_cfg *c, const char *text, size_t len, lmf_scratch *s) {
    size_t nlines_all = 1;
    for (size_t i = 0; i < len; i++) nlines_all += text[i] == '\n';
    lmf_span *ln = lmf_scratch_buf(s, 1, nlines_all * sizeof *ln);
    size_t n = 0, st = 0, newlines = nlines_all - 1;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == '\n') {
            size_t a = st, b = i;
            lmf_strip(text, &a, &b);
            if (b > a) ln[n++] = (lmf_span){(uint32_t)st, (uint32_t)(i - st), (uint32_t)lmf_utf8_nchars(text + st, i - st)};
            st = i + 1;
        }
    }
    if (n == 0) return "empty";

    size_t punct = 0, shorts = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t lc = last_cp(text + ln[i].off, ln[i].len);
        int stop = 0;
        if (c->stop_chars) {
            for (size_t k = 0; k < c->n_stop_chars && !stop; k++) stop = c->stop_chars[k] == lc;
        } else {
            stop = lmf_uc_is_dt_terminal(lc);
        }
        punct += (size_t)stop;
        shorts += ln[i].nchars <= (uint32_t)c->short_line_length;
    }
    double ratio = (double)punct / (double)n;
    if (ratio < c->line_punct_thr && !(ratio == 0 && c->line_punct_exclude_zero)) return "line_punct_ratio";
    if ((double)shorts / (double)n > c->short_line_thr) return "short_line_ratio";

    lmf_hset *h = lmf_scratch_hset(s, 0, n);
    size_t dup_chars = 0;
    for (size_t i = 0; i < n; i++) {
        int isnew;
        lmf_hset_add(h, lmf_hash_bytes(text + ln[i].off, ln[i].len) ^ ((uint64_t)ln[i].len << 1), &isnew);
        if (!isnew) dup_chars += ln[i].nchars;
    }
    size_t nonnl = lmf_utf8_nchars(text, len) - newlines;
    if ((double)dup_chars / (double)nonnl > c->char_duplicates_ratio) return "char_dup_ratio";

    size_t nw;
    lmf_text_words(s, text, len, &nw);
    if (nw && (double)newlines / (double)nw > c->new_line_ratio) return "list_ratio";
    return NULL;
}

void lmf_fineweb_quality(const lmf_fineweb_cfg *c, const char *text, size_t len, lmf_scratch *s, lmf_verdict *v) {
    lmf_verdict_set(v, fineweb_reason(c, text, len, s));
}
