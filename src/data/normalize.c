/* normalize.c — the first text stage: make a document valid, canonical UTF-8 with tidy lines.
 *   1. UTF-8 repair: every byte that does not start a well-formed sequence becomes U+FFFD (counted);
 *   2. line endings: \r\n and lone \r become \n;
 *   3. control characters (C0 but \t and \n, DEL, C1) removed;
 *   4. Unicode NFC (utf8proc), skipped for pure-ASCII text, which is already NFC;
 *   5. trailing whitespace of each line removed, runs of blank lines cut to max_blank_lines, the document trimmed.
 * Each step counts what it changed, for the pipeline report. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/filters.h"

void lmf_normalize_defaults(lmf_normalize_cfg *c) {
    *c = (lmf_normalize_cfg){.repair_utf8 = 1, .nfc = 1, .remove_controls = 1, .fix_line_endings = 1,
                             .strip_trailing = 1, .max_blank_lines = 2, .trim = 1};
}

static int is_control(int32_t c) { return (c < 0x20 && c != '\n' && c != '\t') || (c >= 0x7F && c <= 0x9F); }

void lmf_normalize(const lmf_normalize_cfg *c, const char *text, size_t len, lmf_textbuf *out,
                   lmf_normalize_stats *st) {
    lmf_normalize_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    /* steps 1-3 into a temporary (at most 3 bytes out per byte in: U+FFFD for one bad byte) */
    lmf_textbuf tmp = {0};
    lmf_textbuf_reserve(&tmp, 3 * len + 1);
    char *o = tmp.data;
    int ascii = 1;
    for (size_t i = 0; i < len;) {
        unsigned char b = (unsigned char)text[i];
        int32_t cp;
        size_t k = i;
        if (b < 0x80) {
            cp = b;
            k++;
        } else {
            cp = lmf_utf8_next(text, len, &k);
            if (cp < 0) {
                st->invalid_bytes++;
                cp = 0xFFFD;
            }
            ascii = 0;
        }
        if (cp == '\r' && c->fix_line_endings) {
            if (k < len && text[k] == '\n') k++;
            st->crlf_fixed++;
            cp = '\n';
        }
        i = k;
        if (c->remove_controls && is_control(cp)) {
            st->controls_removed++;
            continue;
        }
        o += lmf_utf8_put(o, cp);
    }
    tmp.len = (size_t)(o - tmp.data);

    const char *src = tmp.data;
    size_t n = tmp.len;
    utf8proc_uint8_t *nfc = NULL;
    if (c->nfc && !ascii) {
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)src, (utf8proc_ssize_t)n, &nfc,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (r >= 0) {
            if ((size_t)r != n || memcmp(nfc, src, n) != 0) st->nfc_changed = 1;
            src = (const char *)nfc;
            n = (size_t)r;
        } else {
            nfc = NULL; /* cannot happen on repaired input; keep the text as it is */
        }
    }

    /* step 5: line by line (lines end at \n only; the other Python line breaks stay inside lines) */
    out->len = 0;
    lmf_textbuf_reserve(out, n + 1);
    size_t blank_run = 0, pending_blank = 0;
    int started = 0;
    for (size_t a = 0; a <= n;) {
        const char *nl = memchr(src + a, '\n', n - a);
        if (!nl && a == n && a > 0) break; /* the empty piece after a final \n is not a line */
        size_t b = nl ? (size_t)(nl - src) : n;
        size_t e = b;
        if (c->strip_trailing) {
            size_t e0 = e;
            lmf_rstrip(src, a, &e);
            st->trailing_removed += lmf_utf8_nchars(src + e, e0 - e);
        }
        int blank = e == a;
        if (blank) {
            blank_run++;
        } else {
            blank_run = 0;
        }
        if (c->trim && !started) {
            /* leading blank lines and leading whitespace of the first line go */
            if (blank) {
                st->trimmed += lmf_utf8_nchars(src + a, b - a) + (nl ? 1 : 0);
            } else {
                size_t a2 = a;
                lmf_lstrip(src, &a2, e);
                st->trimmed += lmf_utf8_nchars(src + a, a2 - a);
                lmf_textbuf_append(out, src + a2, e - a2);
                started = 1;
            }
        } else if (blank) {
            if (c->max_blank_lines < 0 || blank_run <= (size_t)c->max_blank_lines) {
                pending_blank++;
            } else {
                st->blank_lines_removed++;
            }
        } else {
            /* blank lines are written only when a non-blank line follows (trailing ones go with trim) */
            if (out->len || started || !c->trim) {
                if (started || out->len) lmf_textbuf_append(out, "\n", 1);
                for (size_t q = 0; q < pending_blank; q++) lmf_textbuf_append(out, "\n", 1);
            }
            pending_blank = 0;
            lmf_textbuf_append(out, src + a, e - a);
            started = 1;
        }
        if (!nl) break;
        a = b + 1;
    }
    if (!c->trim) {
        /* keep trailing blank lines (within the cap) and the final newline */
        for (size_t q = 0; q < pending_blank; q++) lmf_textbuf_append(out, "\n", 1);
        if (n && src[n - 1] == '\n') lmf_textbuf_append(out, "\n", 1);
    } else {
        st->trimmed += pending_blank;
    }
    if (!out->data) lmf_textbuf_reserve(out, 1);
    out->data[out->len] = 0;
    free(nfc);
    lmf_textbuf_free(&tmp);
}
