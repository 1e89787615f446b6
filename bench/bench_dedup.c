/* bench_dedup.c — deduplication speed on the real corpus, per core, against datatrove in the same run.
 *
 *   bench_dedup [--chapters N] [--reps R] [--datatrove PYTHON] [--out DIR] [--no-fortunes]
 *   bench_dedup --words        (stdin lines -> simplified text and word hashes; see tests/reference/)
 *
 * The document set is tests/dedup_corpus.h's (King James Bible chapters + near-copies + copies, ~23 MB). One thread
 * (MB/s per core), best of R repetitions (timings drift on a shared host): MinHash signature computation
 * (simplify + words + shingles + 112 hashes), the whole MinHash dedup (add every document + finish: bands, sort,
 * clustering; datatrove's algorithm, and with verification), and the whole exact dedup. With --datatrove, the same
 * documents are written to DIR/docs.jsonl and bench/datatrove_minhash.py runs datatrove's MinhashDedupSignature,
 * MinhashDedupBuckets and MinhashDedupCluster on them with that Python (one process = one core); its times are read
 * back and the speed ratio printed, and its removed-document set and clusters are compared with ours
 * (DIR/lmforge_clusters.txt). */
#include "data/dedup.h"
#include "../tests/dedup_corpus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); /* CPU time: the host is shared, wall time is not ours */
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void check(lmf_status s, const char *what) {
    if (s != LMF_OK) {
        fprintf(stderr, "bench_dedup: %s failed: %s\n", what, lmf_last_error());
        exit(1);
    }
}

/* Writes a JSON string literal of t. */
static void json_str(FILE *f, const char *t, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '"' || c == '\\') fputc('\\', f), fputc(c, f);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static double run_minhash(const dd_corpus *c, double verify, lmf_minhash_stats *st, uint64_t **rep_out) {
    lmf_minhash_config cfg;
    lmf_minhash_config_default(&cfg);
    cfg.verify_threshold = verify;
    lmf_minhash *m;
    check(lmf_minhash_create(&cfg, &m), "minhash create");
    double t = now_s();
    for (size_t i = 0; i < c->n; i++) check(lmf_minhash_add(m, i, c->text[i], c->len[i]), "minhash add");
    check(lmf_minhash_finish(m), "minhash finish");
    t = now_s() - t;
    lmf_minhash_get_stats(m, st);
    if (rep_out) {
        uint64_t *rep = malloc(c->n * 8), d, k;
        for (size_t i = 0; i < c->n; i++) rep[i] = i;
        while (lmf_minhash_next_removed(m, &d, &k) == 1) rep[d] = k;
        *rep_out = rep;
    }
    lmf_minhash_free(m);
    return t;
}

/* --words: for each stdin line, the simplified text, a tab, and the xxh64 of each word (for
 * tests/reference/dedup_words_check.py, which compares them with datatrove + spaCy). */
static int words_mode(void) {
    lmf_minhash_config c;
    lmf_minhash_config_default(&c);
    c.n_grams = 1;
    lmf_minhash *m;
    check(lmf_minhash_create(&c, &m), "minhash create");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n') line[--n] = 0;
        size_t sl, k;
        char *s = lmf_minhash_simplify(line, (size_t)n, &sl);
        uint64_t *sh;
        k = lmf_minhash_shingles(m, line, (size_t)n, &sh);
        printf("%s\t", s);
        for (size_t i = 0; i < k; i++) printf("%llu ", (unsigned long long)sh[i]);
        printf("\n");
        free(s);
        free(sh);
    }
    free(line);
    lmf_minhash_free(m);
    return 0;
}

int main(int argc, char **argv) {
    int chapters = 100000, reps = 3, fortunes = 1;
    if (argc == 2 && !strcmp(argv[1], "--words")) return words_mode();
    const char *py = NULL, *out = "/tmp/lmf-bench-dedup";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--chapters") && i + 1 < argc) chapters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--datatrove") && i + 1 < argc) py = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--no-fortunes")) fortunes = 0;
        else {
            fprintf(stderr, "usage: bench_dedup [--chapters N] [--reps R] [--datatrove PYTHON] [--out DIR] "
                            "[--no-fortunes]\n");
            return 2;
        }
    }
    dd_corpus c;
    if (dd_build(&c, chapters, 42) != 0) {
        fprintf(stderr, "bench_dedup: the `bible` program (Debian package bible-kjv) is needed\n");
        return 1;
    }
    size_t nf = fortunes ? dd_add_fortunes(&c, "/usr/share/games/fortunes") : 0;
    double mb = c.bytes / 1e6;
    printf("corpus: %zu documents (%zu KJV chapters + near-copies + copies, %zu fortunes), %.1f MB; 1 thread, best "
           "of %d\n", c.n, c.n_orig, nf, mb, reps);

    lmf_minhash_config cfg;
    lmf_minhash_config_default(&cfg);
    lmf_minhash *m;
    check(lmf_minhash_create(&cfg, &m), "minhash create");
    double best_simp = 1e9, best_sh = 1e9, best_sig = 1e9, best_lsh = 1e9, best_ver = 1e9, best_exact = 1e9;
    uint64_t sig[LMF_MINHASH_MAX_HASHES];
    lmf_minhash_stats st_lsh, st_ver;
    uint64_t *rep = NULL;
    for (int r = 0; r < reps; r++) {
        double t = now_s();
        for (size_t i = 0; i < c.n; i++) free(lmf_minhash_simplify(c.text[i], c.len[i], NULL));
        t = now_s() - t;
        if (t < best_simp) best_simp = t;
        t = now_s();
        for (size_t i = 0; i < c.n; i++) {
            uint64_t *sh;
            lmf_minhash_shingles(m, c.text[i], c.len[i], &sh);
            free(sh);
        }
        t = now_s() - t;
        if (t < best_sh) best_sh = t;
        t = now_s();
        for (size_t i = 0; i < c.n; i++) lmf_minhash_signature(m, c.text[i], c.len[i], sig);
        t = now_s() - t;
        if (t < best_sig) best_sig = t;
        free(rep);
        t = run_minhash(&c, 0, &st_lsh, &rep);
        if (t < best_lsh) best_lsh = t;
        t = run_minhash(&c, 0.8, &st_ver, NULL);
        if (t < best_ver) best_ver = t;
        lmf_exact_dedup_config ec;
        lmf_exact_dedup_config_default(&ec);
        lmf_exact_dedup *ed;
        check(lmf_exact_dedup_create(&ec, &ed), "exact create");
        t = now_s();
        for (size_t i = 0; i < c.n; i++) check(lmf_exact_dedup_add(ed, i, c.text[i], c.len[i]), "exact add");
        check(lmf_exact_dedup_finish(ed), "exact finish");
        t = now_s() - t;
        if (t < best_exact) best_exact = t;
        lmf_exact_dedup_free(ed);
    }
    lmf_minhash_free(m);

    printf("\n%-52s %9s %10s\n", "lmforge stage (1 core)", "seconds", "MB/s");
    printf("%-52s %9.3f %10.1f\n", "simplify_text", best_simp, mb / best_simp);
    printf("%-52s %9.3f %10.1f\n", "simplify + words + shingle hashes", best_sh, mb / best_sh);
    printf("%-52s %9.3f %10.1f\n", "MinHash signature (shingles + 112 hashes)", best_sig, mb / best_sig);
    printf("%-52s %9.3f %10.1f\n", "MinHash dedup, whole (datatrove's algorithm)", best_lsh, mb / best_lsh);
    printf("%-52s %9.3f %10.1f\n", "MinHash dedup, whole (+ verification >= 0.8)", best_ver, mb / best_ver);
    printf("%-52s %9.3f %10.1f\n", "exact dedup, whole", best_exact, mb / best_exact);
    printf("MinHash (datatrove's algorithm): %llu candidate pairs, %llu clusters, %llu removed; with verification: "
           "%llu removed\n", (unsigned long long)st_lsh.n_candidates, (unsigned long long)st_lsh.n_clusters,
           (unsigned long long)st_lsh.n_removed, (unsigned long long)st_ver.n_removed);

    if (py) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", out);
        if (system(cmd) != 0) return 1;
        snprintf(cmd, sizeof cmd, "%s/docs.jsonl", out);
        FILE *f = fopen(cmd, "w");
        if (!f) {
            perror(cmd);
            return 1;
        }
        for (size_t i = 0; i < c.n; i++) {
            fprintf(f, "{\"id\": \"%zu\", \"text\": ", i);
            json_str(f, c.text[i], c.len[i]);
            fputs("}\n", f);
        }
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s/lmforge_clusters.txt", out);
        f = fopen(cmd, "w");
        for (size_t i = 0; i < c.n; i++) fprintf(f, "%zu %llu\n", i, (unsigned long long)rep[i]);
        fclose(f);
        /* signatures (112 little-endian uint64 per document; all-ones when the document has no shingle) */
        snprintf(cmd, sizeof cmd, "%s/lmforge_sigs.bin", out);
        f = fopen(cmd, "wb");
        check(lmf_minhash_create(&cfg, &m), "minhash create");
        for (size_t i = 0; i < c.n; i++) {
            if (!lmf_minhash_signature(m, c.text[i], c.len[i], sig)) memset(sig, 0xff, 112 * 8);
            fwrite(sig, 8, 112, f);
        }
        lmf_minhash_free(m);
        fclose(f);
        /* the script sits next to this file (CMake compiles it by absolute path) */
        char here[2048];
        snprintf(here, sizeof here, "%s", __FILE__);
        char *slash = strrchr(here, '/');
        if (slash) *slash = 0;
        else snprintf(here, sizeof here, "bench");
        snprintf(cmd, sizeof cmd, "%s '%s/datatrove_minhash.py' --docs '%s/docs.jsonl' --work '%s' "
                 "--lmforge '%s/lmforge_clusters.txt' --times '%s/datatrove_times.txt' "
                 "--lmforge-sigs '%s/lmforge_sigs.bin'",
                 py, here, out, out, out, out, out);
        printf("\nrunning datatrove: %s\n", cmd);
        fflush(stdout);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_dedup: datatrove run failed\n");
            return 1;
        }
        snprintf(cmd, sizeof cmd, "%s/datatrove_times.txt", out);
        f = fopen(cmd, "r");
        double dt_sig = 0, dt_buckets = 0, dt_cluster = 0;
        if (!f || fscanf(f, "%lf %lf %lf", &dt_sig, &dt_buckets, &dt_cluster) != 3) {
            fprintf(stderr, "bench_dedup: cannot read %s\n", cmd);
            return 1;
        }
        fclose(f);
        double dt_all = dt_sig + dt_buckets + dt_cluster;
        printf("\n%-44s %12s %12s %10s\n", "same documents, 1 core", "datatrove", "lmforge", "speed-up");
        printf("%-44s %9.2f MB/s %7.1f MB/s %9.1fx\n", "signatures (stage 1 vs signature)", mb / dt_sig,
               mb / best_sig, dt_sig / best_sig);
        printf("%-44s %9.2f MB/s %7.1f MB/s %9.1fx\n", "whole MinHash dedup (stages 1-3 vs all)", mb / dt_all,
               mb / best_lsh, dt_all / best_lsh);
        printf("%-44s %9.2f MB/s %7.1f MB/s %9.1fx\n", "whole, lmforge with verification", mb / dt_all,
               mb / best_ver, dt_all / best_ver);
    }
    free(rep);
    dd_free(&c);
    return 0;
}
