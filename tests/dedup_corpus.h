/* dedup_corpus.h — the deduplication evaluation set shared by tests/test_dedup.c and bench/bench_dedup.c, and the
 * ground truth it is judged against.
 *
 * The set (deterministic for a seed): the 1,189 chapters of the King James Bible (`bible gen1:1-rev22:21`, Debian
 * bible-kjv) as documents 0..n_orig-1, then for every chapter near-copies with 1%, 5%, 10% and 20% word edits (each
 * word independently, with that probability, is substituted by a random word of the corpus, or a random word is
 * inserted before it, or it is deleted: one third each), then for every 10th chapter an exact copy, a copy with its
 * whitespace changed and a copy in upper case (exact duplicates under the default normalization) and a copy with
 * one byte changed (not an exact duplicate).
 *
 * Ground truth: pairs whose shingle sets (the sets of 5-gram shingle hashes that datatrove's tokenization gives,
 * lmf_minhash_shingles) have exact Jaccard similarity >= t, found with the prefix filter of set-similarity joins
 * (shingles ordered rarest first; two sets with J >= t share a shingle among the first |A| - ceil(t|A|) + 1 of
 * each) and a size filter, then verified by exact intersection: no pair is missed, none is estimated. Shingles are
 * 64-bit hashes, so "exact" is up to hash collisions (~n^2 / 2^64: none expected here). */
#ifndef LMF_TESTS_DEDUP_CORPUS_H
#define LMF_TESTS_DEDUP_CORPUS_H

#include "data/dedup.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char **text;
    size_t *len;
    int *kind;    /* 0 original, 1..4 edit rate index (1%, 5%, 10%, 20%), 5 exact-normalized copy, 6 one-byte copy,
                   * 7 a fortune (dd_add_fortunes) */
    int *source;  /* the chapter a document was made from */
    size_t n, n_orig, bytes;
} dd_corpus;

static const double DD_RATES[5] = {0, 0.01, 0.05, 0.10, 0.20};

static inline uint64_t dd_rand(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline double dd_unif(uint64_t *s) { return (dd_rand(s) >> 11) * (1.0 / 9007199254740992.0); }

static inline void dd_push(dd_corpus *c, char *t, size_t len, int kind, int source) {
    if ((c->n & (c->n + 1)) == 0 || c->n == 0) { /* grow at powers of two */
        size_t cap = 2 * (c->n + 1);
        c->text = realloc(c->text, cap * sizeof *c->text);
        c->len = realloc(c->len, cap * sizeof *c->len);
        c->kind = realloc(c->kind, cap * sizeof *c->kind);
        c->source = realloc(c->source, cap * sizeof *c->source);
    }
    c->text[c->n] = t, c->len[c->n] = len, c->kind[c->n] = kind, c->source[c->n] = source;
    c->n++;
    c->bytes += len;
}

/* Chapters of `bible gen1:1-rev22:21`: a header line ("Genesis 1") between two blank lines starts a chapter. */
static inline int dd_read_bible(dd_corpus *c, int max_chapters) {
    FILE *p = popen("bible gen1:1-rev22:21 2>/dev/null", "r");
    if (!p) return -1;
    size_t cap = 1 << 23, n = 0, r;
    char *all = malloc(cap + 1);
    while ((r = fread(all + n, 1, cap - n, p)) > 0) {
        n += r;
        if (n == cap) all = realloc(all, (cap *= 2) + 1);
    }
    all[n] = 0;
    if (pclose(p) != 0 || n < 1000) {
        free(all);
        return -1;
    }
    /* lines */
    char *cur = NULL;
    size_t cur_len = 0, cur_cap = 0;
    char *line = all, *prev_line_end = NULL;
    int prev_blank = 1;
    while (line < all + n) {
        char *e = strchr(line, '\n');
        if (!e) e = all + n;
        size_t ll = (size_t)(e - line);
        int next_blank = (e + 1 < all + n && e[1] == '\n');
        int header = prev_blank && next_blank && ll > 0 && line[0] != ' ';
        if (header) {
            if (cur && cur_len) {
                if ((int)c->n_orig == max_chapters) break;
                dd_push(c, cur, cur_len, 0, (int)c->n_orig);
                c->n_orig++;
            }
            cur = NULL, cur_len = 0, cur_cap = 0;
        } else if (ll) {
            if (cur_len + ll + 2 > cur_cap) cur = realloc(cur, cur_cap = 2 * (cur_len + ll + 2));
            memcpy(cur + cur_len, line, ll);
            cur_len += ll;
            cur[cur_len++] = '\n';
            cur[cur_len] = 0;
        }
        prev_blank = ll == 0;
        (void)prev_line_end;
        line = e + 1;
    }
    if (cur && cur_len && (int)c->n_orig < max_chapters) {
        dd_push(c, cur, cur_len, 0, (int)c->n_orig);
        c->n_orig++;
    } else {
        free(cur);
    }
    free(all);
    return (int)c->n_orig;
}

/* Words of s (split on ASCII whitespace) as (start, len) pairs; returns the count. */
static inline size_t dd_words(const char *s, size_t n, size_t **start, size_t **len) {
    size_t cap = 64, k = 0, i = 0;
    *start = malloc(cap * sizeof **start), *len = malloc(cap * sizeof **len);
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) i++;
        size_t j = i;
        while (j < n && !(s[j] == ' ' || s[j] == '\n' || s[j] == '\t' || s[j] == '\r')) j++;
        if (j > i) {
            if (k == cap) {
                cap *= 2;
                *start = realloc(*start, cap * sizeof **start);
                *len = realloc(*len, cap * sizeof **len);
            }
            (*start)[k] = i, (*len)[k] = j - i, k++;
        }
        i = j;
    }
    return k;
}

/* Builds the whole evaluation set. Returns 0, or -1 when the bible program is missing. */
static inline int dd_build(dd_corpus *c, int max_chapters, uint64_t seed) {
    memset(c, 0, sizeof *c);
    if (dd_read_bible(c, max_chapters) <= 0) return -1;
    /* a vocabulary to draw substituted / inserted words from: every word of the originals */
    size_t nv = 0, vcap = 1 << 20;
    const char **vw = malloc(vcap * sizeof *vw);
    size_t *vl = malloc(vcap * sizeof *vl);
    for (size_t d = 0; d < c->n_orig; d++) {
        size_t *st, *ln, k = dd_words(c->text[d], c->len[d], &st, &ln);
        for (size_t i = 0; i < k; i++) {
            if (nv == vcap) vcap *= 2, vw = realloc(vw, vcap * sizeof *vw), vl = realloc(vl, vcap * sizeof *vl);
            vw[nv] = c->text[d] + st[i], vl[nv++] = ln[i];
        }
        free(st), free(ln);
    }
    uint64_t rs = seed;
    size_t n_orig = c->n_orig;
    for (int r = 1; r <= 4; r++) {
        for (size_t d = 0; d < n_orig; d++) {
            size_t *st, *ln, k = dd_words(c->text[d], c->len[d], &st, &ln);
            size_t cap = 2 * c->len[d] + 64, o = 0;
            char *t = malloc(cap);
#define DD_PUT(p, l)                                                                                                \
    do {                                                                                                           \
        if (o + (l) + 2 > cap) t = realloc(t, cap = 2 * (o + (l) + 2));                                            \
        if (o) t[o++] = ' ';                                                                                       \
        memcpy(t + o, (p), (l));                                                                                   \
        o += (l);                                                                                                  \
    } while (0)
            for (size_t i = 0; i < k; i++) {
                if (dd_unif(&rs) < DD_RATES[r]) {
                    int op = (int)(dd_rand(&rs) % 3);
                    size_t v = dd_rand(&rs) % nv;
                    if (op == 0) { /* substitute */
                        DD_PUT(vw[v], vl[v]);
                        continue;
                    }
                    if (op == 1) DD_PUT(vw[v], vl[v]); /* insert, then keep the word */
                    else continue;                    /* delete */
                }
                DD_PUT(c->text[d] + st[i], ln[i]);
            }
#undef DD_PUT
            t[o] = 0;
            dd_push(c, t, o, r, (int)d);
            free(st), free(ln);
        }
    }
    for (size_t d = 0; d < n_orig; d += 10) {
        size_t L = c->len[d];
        char *a = malloc(L + 1), *b = malloc(2 * L + 2), *u = malloc(L + 1), *x = malloc(L + 1);
        memcpy(a, c->text[d], L + 1);
        size_t bo = 0;
        for (size_t i = 0; i < L; i++) { /* whitespace changed: newlines -> "  \t", spaces doubled */
            char ch = c->text[d][i];
            if (ch == '\n') b[bo++] = ' ', b[bo++] = '\t';
            else if (ch == ' ') b[bo++] = ' ', b[bo++] = ' ';
            else b[bo++] = ch;
        }
        b[bo] = 0;
        for (size_t i = 0; i <= L; i++) {
            char ch = c->text[d][i];
            u[i] = (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
        }
        memcpy(x, c->text[d], L + 1);
        size_t pos = L / 2;
        while (pos < L && !(x[pos] >= 'a' && x[pos] <= 'z')) pos++;
        if (pos < L) x[pos] = x[pos] == 'z' ? 'y' : (char)(x[pos] + 1);
        dd_push(c, a, L, 5, (int)d);
        dd_push(c, b, bo, 5, (int)d);
        dd_push(c, u, L, 5, (int)d);
        dd_push(c, x, L, 6, (int)d);
    }
    free(vw), free(vl);
    return 0;
}

/* Appends every fortune of /usr/share/games/fortunes (Debian fortunes-min / fortunes: entries separated by "%"
 * lines; some files are UTF-8) as documents of kind 7. Returns how many. */
static inline size_t dd_add_fortunes(dd_corpus *c, const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls '%s' 2>/dev/null", dir);
    FILE *ls = popen(cmd, "r");
    if (!ls) return 0;
    char name[256];
    size_t added = 0;
    while (fgets(name, sizeof name, ls)) {
        name[strcspn(name, "\n")] = 0;
        size_t nl = strlen(name);
        if (nl > 4 && (!strcmp(name + nl - 4, ".dat") || !strcmp(name + nl - 3, ".u8"))) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        char line[4096], *cur = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
            char *got = fgets(line, sizeof line, f);
            if (!got || !strcmp(line, "%\n") || !strcmp(line, "%")) {
                if (len) {
                    dd_push(c, cur, len, 7, -1);
                    added++;
                } else {
                    free(cur);
                }
                cur = NULL, len = 0, cap = 0;
                if (!got) break;
                continue;
            }
            size_t ll = strlen(line);
            if (len + ll + 1 > cap) cur = realloc(cur, cap = 2 * (len + ll + 1));
            memcpy(cur + len, line, ll + 1);
            len += ll;
        }
        fclose(f);
    }
    pclose(ls);
    return added;
}

static inline void dd_free(dd_corpus *c) {
    for (size_t i = 0; i < c->n; i++) free(c->text[i]);
    free(c->text), free(c->len), free(c->kind), free(c->source);
    memset(c, 0, sizeof *c);
}

/* ---- ground truth ---- */

typedef struct {
    uint64_t **set;  /* per doc: its distinct shingle hashes, ascending */
    size_t *n;
    size_t ndocs;
    uint32_t (*pairs)[2];
    float *jac;
    size_t npairs;
} dd_truth;

static int dd_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}
static int dd_cmp_u64x2(const void *a, const void *b) { /* (freq, hash, slot) triples by freq then hash */
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0]) return (x[0] > y[0]) - (x[0] < y[0]);
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* Exact Jaccard of two sorted hash arrays. */
static inline double dd_jaccard(const uint64_t *a, size_t na, const uint64_t *b, size_t nb) {
    if (!na && !nb) return 1;
    size_t i = 0, j = 0, inter = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j]) inter++, i++, j++;
        else if (a[i] < b[j]) i++;
        else j++;
    }
    return (double)inter / (double)(na + nb - inter);
}

static inline size_t dd_prefix_len(size_t n, double thr) {
    if (!n) return 0;
    size_t p = n - (size_t)ceil(thr * (double)n - 1e-9) + 1;
    return p > n ? n : p;
}

static inline void dd_truth_build(dd_truth *t, const dd_corpus *c, const lmf_minhash *m, double thr) {
    memset(t, 0, sizeof *t);
    t->ndocs = c->n;
    t->set = calloc(c->n, sizeof *t->set);
    t->n = calloc(c->n, sizeof *t->n);
    size_t total = 0;
#pragma omp parallel for schedule(dynamic, 16) reduction(+ : total)
    for (long d = 0; d < (long)c->n; d++) {
        uint64_t *raw;
        size_t k = lmf_minhash_shingles(m, c->text[d], c->len[d], &raw), u = 0;
        if (k) qsort(raw, k, 8, dd_cmp_u64);
        for (size_t i = 0; i < k; i++)
            if (!u || raw[i] != raw[u - 1]) raw[u++] = raw[i];
        t->set[d] = raw, t->n[d] = u, total += u;
    }
    /* document frequency per distinct shingle: open addressing, the slot is the shingle's dense id */
    size_t nslots = 1024;
    while (nslots < 2 * total + 2) nslots *= 2;
    uint64_t *key = calloc(nslots, 8);
    uint32_t *freq = calloc(nslots, 4); /* 0 = empty slot */
    uint32_t **slot = calloc(c->n, sizeof *slot);
    for (size_t d = 0; d < c->n; d++) {
        slot[d] = malloc((t->n[d] ? t->n[d] : 1) * 4);
        for (size_t i = 0; i < t->n[d]; i++) {
            uint64_t h = t->set[d][i];
            size_t q = (size_t)((h * 0x9e3779b97f4a7c15ULL) >> 20) & (nslots - 1);
            while (freq[q] && key[q] != h) q = (q + 1) & (nslots - 1);
            key[q] = h, freq[q]++;
            slot[d][i] = (uint32_t)q;
        }
    }
    /* prefixes: each doc's p rarest shingles (ties by hash: a global total order, as the filter needs) */
    uint32_t **pre = calloc(c->n, sizeof *pre);
    size_t *np = calloc(c->n, sizeof *np);
    uint32_t *cnt = calloc(nslots + 1, sizeof *cnt);
#pragma omp parallel for schedule(dynamic, 16)
    for (long d = 0; d < (long)c->n; d++) {
        size_t n = t->n[d], p = dd_prefix_len(n, thr);
        uint64_t *tr = malloc((n ? n : 1) * 24);
        for (size_t i = 0; i < n; i++)
            tr[3 * i] = freq[slot[d][i]], tr[3 * i + 1] = t->set[d][i], tr[3 * i + 2] = slot[d][i];
        qsort(tr, n, 24, dd_cmp_u64x2);
        pre[d] = malloc((p ? p : 1) * 4), np[d] = p;
        for (size_t i = 0; i < p; i++) pre[d][i] = (uint32_t)tr[3 * i + 2];
        free(tr);
    }
    for (size_t d = 0; d < c->n; d++)
        for (size_t i = 0; i < np[d]; i++) cnt[pre[d][i] + 1]++;
    for (size_t i = 0; i < nslots; i++) cnt[i + 1] += cnt[i];
    uint32_t *lists = malloc((cnt[nslots] ? cnt[nslots] : 1) * 4);
    uint32_t *fill = malloc(nslots * sizeof *fill);
    memcpy(fill, cnt, nslots * sizeof *fill);
    for (size_t d = 0; d < c->n; d++)
        for (size_t i = 0; i < np[d]; i++) lists[fill[pre[d][i]]++] = (uint32_t)d;
    /* candidates of d: later docs sharing a prefix shingle; size filter, then exact Jaccard */
    uint32_t *seen = calloc(c->n, 4);
    size_t pcap = 1024;
    t->pairs = malloc(pcap * sizeof *t->pairs);
    t->jac = malloc(pcap * sizeof *t->jac);
    for (size_t d = 0; d < c->n; d++) {
        for (size_t i = 0; i < np[d]; i++) {
            uint32_t r = pre[d][i];
            for (size_t q = cnt[r]; q < cnt[r + 1]; q++) {
                uint32_t e = lists[q];
                if (e <= d || seen[e] == d + 1) continue;
                seen[e] = (uint32_t)d + 1;
                double lo = (double)(t->n[d] < t->n[e] ? t->n[d] : t->n[e]);
                double hi = (double)(t->n[d] < t->n[e] ? t->n[e] : t->n[d]);
                if (lo < thr * hi) continue;
                double j = dd_jaccard(t->set[d], t->n[d], t->set[e], t->n[e]);
                if (j >= thr) {
                    if (t->npairs == pcap) pcap *= 2, t->pairs = realloc(t->pairs, pcap * sizeof *t->pairs),
                                                      t->jac = realloc(t->jac, pcap * sizeof *t->jac);
                    t->pairs[t->npairs][0] = (uint32_t)d, t->pairs[t->npairs][1] = e;
                    t->jac[t->npairs++] = (float)j;
                }
            }
        }
    }
    for (size_t d = 0; d < c->n; d++) free(slot[d]), free(pre[d]);
    free(slot), free(pre), free(np), free(key), free(freq), free(seen), free(lists), free(fill), free(cnt);
}

static inline void dd_truth_free(dd_truth *t) {
    for (size_t d = 0; d < t->ndocs; d++) free(t->set[d]);
    free(t->set), free(t->n), free(t->pairs), free(t->jac);
    memset(t, 0, sizeof *t);
}

/* ---- scoring a clustering: rep[d] = the kept id of d's cluster (d itself when kept or unclustered) ---- */

typedef struct {
    size_t true_pairs[6], found[6];       /* per pair class: 1..4 the larger edit rate of the two documents,
                                            * 5 copies (exact, normalized, one byte) with their original or
                                            * each other, 0 two distinct chapters */
    size_t pred_pairs[6], pred_correct[6];
    size_t all_true, all_found, all_pred, all_correct;
    double worst_false_j;                  /* lowest exact Jaccard among wrongly predicted pairs */
} dd_score;

static inline int dd_pair_class(const dd_corpus *c, size_t a, size_t b) {
    int ka = c->kind[a] >= 5 ? 0 : c->kind[a], kb = c->kind[b] >= 5 ? 0 : c->kind[b];
    int k = ka > kb ? ka : kb;
    if (k == 0 && (c->kind[a] >= 5 || c->kind[b] >= 5)) k = 5; /* an original and its copies */
    return k;
}

static inline void dd_score_run(dd_score *s, const dd_corpus *c, const dd_truth *t, const uint64_t *rep,
                                double thr) {
    memset(s, 0, sizeof *s);
    s->worst_false_j = 1;
    for (size_t i = 0; i < t->npairs; i++) {
        size_t a = t->pairs[i][0], b = t->pairs[i][1];
        int k = dd_pair_class(c, a, b);
        s->true_pairs[k]++, s->all_true++;
        if (rep[a] == rep[b]) s->found[k]++, s->all_found++;
    }
    /* predicted pairs: all pairs inside each cluster (clusters are small; group by rep via sorting) */
    size_t n = c->n;
    uint64_t *ord = malloc(n * 16);
    for (size_t d = 0; d < n; d++) ord[2 * d] = rep[d], ord[2 * d + 1] = d;
    qsort(ord, n, 16, dd_cmp_u64);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && ord[2 * j] == ord[2 * i]) j++;
        for (size_t x = i; x < j; x++)
            for (size_t y = x + 1; y < j; y++) {
                size_t a = ord[2 * x + 1], b = ord[2 * y + 1];
                int k = dd_pair_class(c, a, b);
                double jj = dd_jaccard(t->set[a], t->n[a], t->set[b], t->n[b]);
                s->pred_pairs[k]++, s->all_pred++;
                if (jj >= thr) s->pred_correct[k]++, s->all_correct++;
                else if (jj < s->worst_false_j) s->worst_false_j = jj;
            }
        i = j;
    }
    free(ord);
}

#endif
