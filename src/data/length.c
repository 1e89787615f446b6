/* length.c — document length bounds in characters (code points), the cheapest filter: run it first. */
#include "data/filters.h"

void lmf_length_defaults(lmf_length_cfg *c) {
    c->min_chars = 1;
    c->max_chars = 0;
}

void lmf_length_filter(const lmf_length_cfg *c, const char *text, size_t len, lmf_verdict *v) {
    v->keep = 1;
    v->reason = NULL;
    if (!c->min_chars && !c->max_chars) return;
    /* a character takes 1..4 bytes: decide from the byte length when it settles the question */
    size_t n = (c->min_chars && len < c->min_chars) || (c->max_chars && len > c->max_chars)
                   ? lmf_utf8_nchars(text, len)
                   : len;
    if (c->min_chars && n < c->min_chars) {
        v->keep = 0;
        v->reason = "length_too_short";
    } else if (c->max_chars && n > c->max_chars) {
        v->keep = 0;
        v->reason = "length_too_long";
    }
}
