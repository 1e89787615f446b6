/* bench_data_filters.c — MB/s per core of each text stage of the data pipeline on the real corpora (bible-kjv
 * chapters, fortunes, dict-devil entries: tests/corpus_util.h), against datatrove running the same stage on the
 * same documents in the same run (bench/datatrove_filters_bench.py, when a Python with datatrove is given).
 *
 *   bench_data_filters [--python /work/venv-dt/bin/python] [--repeat N] [--stride K] [--corpus-dir DIR]
 *
 * --corpus-dir: one document per file under DIR instead of the real corpora (bench/mixed_corpus.py builds a mixed
 * held-out-like one: man pages in five languages, Python docs, changelogs, info pages).
 *
 * One thread; each stage loops over every document (every K-th with --stride; median of N runs, default 5, datatrove
 * best of min(N, 3)); the scratch is reused across documents as a pipeline worker does. Times are process CPU
 * time on both sides, so other jobs on a shared machine distort them less than wall time would. normalize and
 * toxicity have no datatrove counterpart; our pii does two more passes (IPv6, phones) than datatrove's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tests/corpus_util.h"
#include "data/filters.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); /* CPU time: the machine is shared; MB/s per core */
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum { S_NORMALIZE, S_WORDS, S_GQ, S_GR, S_C4, S_FW, S_TOX, S_PII, S_ALL, NS };
static const char *sname[NS] = {"normalize", "words", "gopher_quality", "gopher_repetition", "c4",
                                "fineweb", "toxicity", "pii", "all_filters"};

/* --corpus-dir: every file under dir (recursively) is one document; files in byte order of their paths, as
 * datatrove_filters_bench.py --corpus-dir reads them. */
static void list_files(const char *dir, char ***paths, size_t *n) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = malloc(strlen(dir) + strlen(e->d_name) + 2);
        sprintf(p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            list_files(p, paths, n);
            free(p);
        } else {
            *paths = realloc(*paths, (*n + 1) * sizeof **paths);
            (*paths)[(*n)++] = p;
        }
    }
    closedir(d);
}

static int load_dir(const char *dir, corpus_docs *c) {
    char **paths = NULL;
    size_t n = 0;
    list_files(dir, &paths, &n);
    qsort(paths, n, sizeof *paths, corpus_cmp);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *t = corpus_read_file(paths[i], &len);
        if (t) corpus_add(c, 'm', paths[i] + strlen(dir), t, len);
        free(t);
        free(paths[i]);
    }
    free(paths);
    return c->n > 0;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *py = NULL, *corpus_dir = NULL;
    int repeat = 5, stride = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--python") && i + 1 < argc) py = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--stride") && i + 1 < argc) stride = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--corpus-dir") && i + 1 < argc) corpus_dir = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--python PY] [--repeat N] [--stride K] [--corpus-dir DIR]\n", argv[0]);
            return 2;
        }
    }
    if (repeat < 1) repeat = 1;
    if (stride < 1) stride = 1;
    corpus_docs all = {0}, c = {0};
    if (corpus_dir ? !load_dir(corpus_dir, &all) : !corpus_load_all(&all)) {
        fprintf(stderr, corpus_dir ? "no documents under --corpus-dir\n"
                                   : "corpora missing: install bible-kjv, fortunes, dict-devil (scripts/install-deps.sh)\n");
        return 1;
    }
    for (size_t i = 0; i < all.n; i += (size_t)stride)
        corpus_add(&c, all.d[i].corpus, all.d[i].id, all.d[i].text, all.d[i].len);
    corpus_free(&all);
    double mb = 0;
    for (size_t i = 0; i < c.n; i++) mb += (double)c.d[i].len / 1e6;

    double dt_secs[NS];
    for (int k = 0; k < NS; k++) dt_secs[k] = -1;
    if (py) {
        /* the script sits next to this file (__FILE__ is absolute in CMake builds) */
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", __FILE__);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, "bench");
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%s %s/datatrove_filters_bench.py --repeat %d --stride %d%s%s", py, dir,
                 repeat > 3 ? 3 : repeat, stride, corpus_dir ? " --corpus-dir " : "", corpus_dir ? corpus_dir : "");
        FILE *f = popen(cmd, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f)) {
            char name[64];
            double secs, m;
            if (sscanf(line, "%63s %lf %lf", name, &secs, &m) == 3)
                for (int k = 0; k < NS; k++)
                    if (!strcmp(name, sname[k])) dt_secs[k] = secs;
        }
        if (f) pclose(f);
    }

    lmf_scratch *s = lmf_scratch_new();
    lmf_textbuf out = {0};
    lmf_normalize_cfg nc;
    lmf_gopher_quality_cfg gq;
    lmf_gopher_repetition_cfg gr;
    lmf_c4_cfg c4;
    lmf_fineweb_cfg fw;
    lmf_toxicity_cfg tc;
    lmf_pii_cfg pc;
    lmf_normalize_defaults(&nc);
    lmf_gopher_quality_defaults(&gq);
    lmf_gopher_repetition_defaults(&gr);
    lmf_c4_defaults(&c4);
    lmf_fineweb_defaults(&fw);
    lmf_toxicity_defaults(&tc);
    lmf_pii_defaults(&pc);
    const lmf_blocklist *bl = lmf_blocklist_default();
    double ours[NS];
    size_t kept[NS] = {0};
    double *runs = malloc((size_t)repeat * sizeof *runs);
    for (int k = 0; k < NS; k++) {
        for (int r = 0; r < repeat; r++) {
            size_t kk = 0;
            double t0 = now();
            for (size_t i = 0; i < c.n; i++) {
                const char *t = c.d[i].text;
                size_t n = c.d[i].len;
                lmf_verdict v = {1, NULL};
                switch (k) {
                case S_NORMALIZE: lmf_normalize(&nc, t, n, &out, NULL); break;
                case S_WORDS: {
                    size_t nw;
                    /* a one-byte-different text each time would defeat the per-text reuse; the words of each
                     * document are computed once here, as each filter does */
                    lmf_text_words(s, t, n, &nw);
                    kk += nw;
                    break;
                }
                case S_GQ: lmf_gopher_quality(&gq, t, n, s, &v); break;
                case S_GR: lmf_gopher_repetition(&gr, t, n, s, &v); break;
                case S_C4: lmf_c4_quality(&c4, t, n, s, &out, NULL, &v); break;
                case S_FW: lmf_fineweb_quality(&fw, t, n, s, &v); break;
                case S_TOX: {
                    lmf_toxicity_result tr;
                    lmf_toxicity(&tc, bl, t, n, s, &tr, &v);
                    break;
                }
                case S_PII: lmf_pii_mask(&pc, t, n, s, &out, NULL); break;
                case S_ALL: {
                    lmf_verdict v2;
                    lmf_gopher_quality(&gq, t, n, s, &v2);
                    lmf_gopher_repetition(&gr, t, n, s, &v2);
                    lmf_c4_quality(&c4, t, n, s, &out, NULL, &v2);
                    lmf_fineweb_quality(&fw, t, n, s, &v);
                    break;
                }
                }
                if (k != S_WORDS) kk += (size_t)v.keep;
            }
            runs[r] = now() - t0;
            kept[k] = kk;
        }
        qsort(runs, (size_t)repeat, sizeof *runs, cmpd);
        ours[k] = runs[repeat / 2];
    }
    printf("corpus: %zu documents (every %d-th), %.2f MB (%s); 1 thread; CPU time, median of %d\n\n", c.n, stride, mb,
           corpus_dir ? corpus_dir : "bible-kjv chapters, fortunes, dict-devil entries", repeat);
    printf("| stage | lmforge MB/s per core | datatrove MB/s per core | speed-up |\n|---|---:|---:|---:|\n");
    for (int k = 0; k < NS; k++) {
        double o = mb / ours[k];
        if (dt_secs[k] > 0)
            printf("| %s | %.1f | %.2f | %.0fx |\n", sname[k], o, mb / dt_secs[k], dt_secs[k] / ours[k]);
        else
            printf("| %s | %.1f | n/a | |\n", sname[k], o);
    }
    (void)kept;
    free(runs);
    lmf_textbuf_free(&out);
    lmf_scratch_free(s);
    corpus_free(&c);
    return 0;
}
