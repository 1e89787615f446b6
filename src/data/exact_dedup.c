/* exact_dedup.c — exact deduplication: documents whose normalized text hashes to the same XXH3-128 value are
 * duplicates; the lowest id of each group is kept.
 *
 * add() hashes the text as it normalizes it (streaming through a small stack buffer: no copy of the document) and
 * appends the record (hash_hi, hash_lo, doc_id) to an external sorter under a mutex. finish() reads the records in
 * hash order: within a run of equal hashes the first record has the lowest id (the id is the last sort word), and
 * every other record of the run is a duplicate of it. The (removed id, kept id) pairs go through a second sorter so
 * next_removed() returns them in id order, and a bitmap answers is_duplicate(). */
#include "data/dedup.h"

#include "core/alloc.h"
#include "core/status.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

struct lmf_exact_dedup {
    lmf_exact_dedup_config cfg;
    char *tmp_dir;
    pthread_mutex_t mu;
    lmf_extsort *recs, *removed;
    uint64_t n_docs, n_removed, max_id;
    size_t spills_seen; /* spills of the record sorter, freed after finish */
    uint64_t *bitmap;   /* removed documents */
    uint64_t *twins;    /* kept documents that have a removed duplicate (same size as bitmap) */
    size_t bitmap_words;
    int finished;
};

void lmf_exact_dedup_config_default(lmf_exact_dedup_config *cfg) {
    *cfg = (lmf_exact_dedup_config){.lowercase = 1, .collapse_whitespace = 1, .mem_budget = (size_t)256 << 20,
                                    .tmp_dir = NULL};
}

/* Python's str.isspace(): the characters `\s` matches in a str regex (Unicode White_Space plus U+001C..U+001F). */
static inline int is_space_cp(int32_t c) {
    if (c < 0x80) return (c >= 9 && c <= 13) || (c >= 28 && c <= 32);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

typedef struct {
    XXH3_state_t *st;
    char buf[4096];
    size_t n;
} hash_sink;

static inline void sink_put(hash_sink *h, const char *p, size_t n) {
    if (h->n + n > sizeof h->buf) {
        XXH3_128bits_update(h->st, h->buf, h->n);
        h->n = 0;
    }
    memcpy(h->buf + h->n, p, n);
    h->n += n;
}

void lmf_exact_dedup_hash(const lmf_exact_dedup_config *cfg, const char *text, size_t len, uint64_t out[2]) {
    XXH128_hash_t r;
    if (!cfg->lowercase && !cfg->collapse_whitespace) {
        r = XXH3_128bits(text, len);
    } else {
        hash_sink h;
        XXH3_state_t st;
        XXH3_INITSTATE(&st);
        XXH3_128bits_reset(&st);
        h.st = &st;
        h.n = 0;
        const uint8_t *s = (const uint8_t *)text;
        size_t i = 0;
        int pending_space = 0, started = 0;
        while (i < len) {
            int32_t c;
            size_t clen;
            if (s[i] < 0x80) {
                c = s[i], clen = 1;
            } else {
                utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &c);
                if (k <= 0) { /* invalid byte: hashed as it is */
                    if (pending_space && started) sink_put(&h, " ", 1);
                    pending_space = 0, started = 1;
                    sink_put(&h, (const char *)s + i, 1);
                    i++;
                    continue;
                }
                clen = (size_t)k;
            }
            if (cfg->collapse_whitespace && is_space_cp(c)) {
                pending_space = 1;
                i += clen;
                continue;
            }
            if (pending_space && started) sink_put(&h, " ", 1);
            pending_space = 0, started = 1;
            if (cfg->lowercase) {
                if (c < 0x80) {
                    char b = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                    sink_put(&h, &b, 1);
                } else {
                    uint8_t enc[4];
                    utf8proc_ssize_t k = utf8proc_encode_char(utf8proc_tolower(c), enc);
                    sink_put(&h, (const char *)enc, (size_t)k);
                }
            } else {
                sink_put(&h, (const char *)s + i, clen);
            }
            i += clen;
        }
        XXH3_128bits_update(&st, h.buf, h.n);
        r = XXH3_128bits_digest(&st);
    }
    out[0] = r.high64;
    out[1] = r.low64;
}

lmf_status lmf_exact_dedup_create(const lmf_exact_dedup_config *cfg, lmf_exact_dedup **out) {
    *out = NULL;
    lmf_exact_dedup *d = lmf_xcalloc(1, sizeof *d);
    d->cfg = *cfg;
    if (cfg->tmp_dir) d->tmp_dir = strdup(cfg->tmp_dir);
    d->cfg.tmp_dir = d->tmp_dir;
    lmf_status s = lmf_extsort_create(3, cfg->mem_budget, d->tmp_dir, &d->recs);
    if (s != LMF_OK) {
        free(d->tmp_dir);
        free(d);
        return s;
    }
    pthread_mutex_init(&d->mu, NULL);
    *out = d;
    return LMF_OK;
}

lmf_status lmf_exact_dedup_add(lmf_exact_dedup *d, uint64_t doc_id, const char *text, size_t len) {
    uint64_t rec[3];
    lmf_exact_dedup_hash(&d->cfg, text, len, rec);
    rec[2] = doc_id;
    pthread_mutex_lock(&d->mu);
    LMF_CHECK(!d->finished);
    lmf_status s = lmf_extsort_push(d->recs, rec);
    d->n_docs++;
    if (doc_id > d->max_id) d->max_id = doc_id;
    pthread_mutex_unlock(&d->mu);
    return s;
}

lmf_status lmf_exact_dedup_finish(lmf_exact_dedup *d) {
    LMF_CHECK(!d->finished);
    d->finished = 1;
    LMF_TRY(lmf_extsort_finish(d->recs));
    LMF_TRY(lmf_extsort_create(2, d->cfg.mem_budget, d->tmp_dir, &d->removed));
    d->bitmap_words = d->n_docs ? (size_t)(d->max_id / 64 + 1) : 0;
    d->bitmap = lmf_xcalloc(d->bitmap_words ? d->bitmap_words : 1, sizeof *d->bitmap);
    d->twins = lmf_xcalloc(d->bitmap_words ? d->bitmap_words : 1, sizeof *d->twins);
    uint64_t rec[3], head[3];
    int have = 0, g;
    while ((g = lmf_extsort_next(d->recs, rec)) == 1) {
        if (have && rec[0] == head[0] && rec[1] == head[1]) {
            uint64_t pair[2] = {rec[2], head[2]};
            LMF_CHECK(rec[2] != head[2]); /* the same id added twice: a caller bug */
            LMF_TRY(lmf_extsort_push(d->removed, pair));
            d->bitmap[rec[2] / 64] |= 1ULL << (rec[2] % 64);
            d->twins[head[2] / 64] |= 1ULL << (head[2] % 64);
            d->n_removed++;
        } else {
            memcpy(head, rec, sizeof head);
            have = 1;
        }
    }
    if (g < 0) return LMF_ERR_IO;
    /* The records are no longer needed: give their memory and disk back before the caller's second pass. */
    d->spills_seen = lmf_extsort_spills(d->recs);
    lmf_extsort_free(d->recs);
    d->recs = NULL;
    return lmf_extsort_finish(d->removed);
}

int lmf_exact_dedup_is_duplicate(const lmf_exact_dedup *d, uint64_t doc_id) {
    LMF_CHECK(d->finished);
    if (doc_id / 64 >= d->bitmap_words) return 0;
    return (int)((d->bitmap[doc_id / 64] >> (doc_id % 64)) & 1);
}

int lmf_exact_dedup_has_duplicates(const lmf_exact_dedup *d, uint64_t doc_id) {
    LMF_CHECK(d->finished);
    if (doc_id / 64 >= d->bitmap_words) return 0;
    return (int)((d->twins[doc_id / 64] >> (doc_id % 64)) & 1);
}

int lmf_exact_dedup_next_removed(lmf_exact_dedup *d, uint64_t *doc_id, uint64_t *kept_id) {
    LMF_CHECK(d->finished && d->removed);
    uint64_t pair[2];
    int g = lmf_extsort_next(d->removed, pair);
    if (g == 1) *doc_id = pair[0], *kept_id = pair[1];
    return g;
}

uint64_t lmf_exact_dedup_n_docs(const lmf_exact_dedup *d) { return d->n_docs; }
uint64_t lmf_exact_dedup_n_removed(const lmf_exact_dedup *d) { return d->n_removed; }
size_t lmf_exact_dedup_n_spills(const lmf_exact_dedup *d) {
    return (d->recs ? lmf_extsort_spills(d->recs) : 0) + (d->removed ? lmf_extsort_spills(d->removed) : 0) +
           d->spills_seen;
}

void lmf_exact_dedup_free(lmf_exact_dedup *d) {
    if (!d) return;
    lmf_extsort_free(d->recs);
    lmf_extsort_free(d->removed);
    pthread_mutex_destroy(&d->mu);
    LMF_FREE_ALL(d->bitmap, d->twins, d->tmp_dir, d);
}
