/* test_dedup.c — exact and MinHash deduplication (src/data/dedup.h).
 *
 * Unit level: exact dedup keeps the first of equal normalized texts and nothing else (one byte or one word apart is
 * not a duplicate); the external sorter and the spill paths (tiny memory budget) give the same answers as in RAM;
 * MinHash reproduces datatrove's simplification, tokenization, parameters and signature values bit for bit (values
 * from datatrove 0.10.1 + spaCy 3.8 on the same text); identical texts have identical signatures; the signature
 * estimates Jaccard similarity within its statistical error; union-find clustering is transitive.
 *
 * Acceptance (issue 5): the King James Bible's chapters plus near-copies with 1/5/10/20% word edits and exact copies
 * (tests/dedup_corpus.h): exact-duplicate removal equals a brute-force comparison of normalized texts; MinHash
 * recall of true pairs (exact 5-gram-shingle Jaccard >= 0.8) >= 0.95 and precision of predicted pairs (every pair
 * inside an output cluster) >= 0.99, printed per edit rate, for datatrove's 14x8 banding alone and with the
 * signature verification step. Skipped when the `bible` program (Debian bible-kjv) is absent. */
#include "test_util.h"

#include "core/cpu.h"
#include "core/status.h"
#include "data/dedup.h"
#include "dedup_corpus.h"

#include <omp.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------------------------------------------------
 * exact dedup */

static void exact_run(const lmf_exact_dedup_config *cfg, const char **docs, int n, const int *order,
                      uint64_t *kept_of /* [n]: kept id for removed docs, UINT64_MAX for kept */, size_t *spills) {
    lmf_exact_dedup *d;
    assert_int_equal(lmf_exact_dedup_create(cfg, &d), LMF_OK);
    for (int i = 0; i < n; i++) {
        int k = order ? order[i] : i;
        assert_int_equal(lmf_exact_dedup_add(d, (uint64_t)k, docs[k], strlen(docs[k])), LMF_OK);
    }
    assert_int_equal(lmf_exact_dedup_finish(d), LMF_OK);
    for (int i = 0; i < n; i++) kept_of[i] = UINT64_MAX;
    uint64_t doc, kept, last = 0;
    int g, first = 1;
    size_t nrem = 0;
    while ((g = lmf_exact_dedup_next_removed(d, &doc, &kept)) == 1) {
        if (!first) assert_true(doc > last); /* increasing id order */
        first = 0, last = doc;
        assert_true(doc < (uint64_t)n && kept < doc);
        kept_of[doc] = kept;
        nrem++;
    }
    assert_int_equal(g, 0);
    assert_int_equal(nrem, lmf_exact_dedup_n_removed(d));
    for (int i = 0; i < n; i++) {
        assert_int_equal(lmf_exact_dedup_is_duplicate(d, (uint64_t)i), kept_of[i] != UINT64_MAX);
        int twin = 0; /* has_duplicates: exactly the ids some removed document names as kept */
        for (int k = 0; k < n; k++) twin |= kept_of[k] == (uint64_t)i;
        assert_int_equal(lmf_exact_dedup_has_duplicates(d, (uint64_t)i), twin);
    }
    assert_int_equal(lmf_exact_dedup_is_duplicate(d, 1u << 30), 0);
    if (spills) *spills = lmf_exact_dedup_n_spills(d);
    lmf_exact_dedup_free(d);
}

static void test_exact_basic(void **state) {
    (void)state;
    const char *docs[] = {
        "The quick brown fox jumps over the lazy dog.",        /* 0 */
        "the quick brown fox jumps over the lazy dog.",        /* 1: case -> dup of 0 */
        "  The quick\tbrown fox\n\njumps over the lazy dog.\n", /* 2: whitespace -> dup of 0 */
        "The quick brown fox jumps over the lazy dog!",        /* 3: one byte differs: kept */
        "The quick brown fox jumps over the lazy  cat.",       /* 4: kept */
        "The quickbrown fox jumps over the lazy dog.",         /* 5: a space removed: kept */
        "ÉCOLE  Straße",                                       /* 6 */
        "école straße",                                        /* 7: Unicode lowercase -> dup of 6 */
        "école\u00a0straße",                                   /* 8: NBSP is whitespace -> dup of 6 */
        "",                                                    /* 9 */
        " \n\t ",                                              /* 10: empty after normalization -> dup of 9 */
        "The quick brown fox jumps over the lazy dog.",        /* 11: identical -> dup of 0 */
        "bad \xff\xfe utf8",                                   /* 12 */
        "BAD \xff\xfe UTF8",                                   /* 13: invalid bytes kept as they are -> dup */
        "bad \xff\xfd utf8",                                   /* 14: different invalid byte: kept */
    };
    const int n = (int)(sizeof docs / sizeof *docs);
    const uint64_t want[] = {UINT64_MAX, 0, 0, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, 6, 6,
                             UINT64_MAX, 9, 0, UINT64_MAX, 12, UINT64_MAX};
    lmf_exact_dedup_config cfg;
    lmf_exact_dedup_config_default(&cfg);
    uint64_t got[16];
    exact_run(&cfg, docs, n, NULL, got, NULL);
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("doc %d: kept_of %lld, want %lld", i, (long long)got[i], (long long)want[i]);
    /* Arrival order does not matter: the lowest id is kept. */
    int rev[16];
    for (int i = 0; i < n; i++) rev[i] = n - 1 - i;
    exact_run(&cfg, docs, n, rev, got, NULL);
    for (int i = 0; i < n; i++) assert_true(got[i] == want[i]);
    /* Normalization off: only byte-identical texts are duplicates. */
    cfg.lowercase = 0, cfg.collapse_whitespace = 0;
    exact_run(&cfg, docs, n, NULL, got, NULL);
    for (int i = 0; i < n; i++) assert_true(got[i] == (i == 11 ? 0 : UINT64_MAX));
    /* Lowercase only: the whitespace variant is no longer a duplicate. */
    cfg.lowercase = 1;
    exact_run(&cfg, docs, n, NULL, got, NULL);
    assert_true(got[1] == 0 && got[2] == UINT64_MAX && got[11] == 0);
    /* The key: normalized forms hash alike. */
    lmf_exact_dedup_config_default(&cfg);
    uint64_t h1[2], h2[2], h3[2];
    lmf_exact_dedup_hash(&cfg, "A  b", 4, h1);
    lmf_exact_dedup_hash(&cfg, "a b", 3, h2);
    lmf_exact_dedup_hash(&cfg, "a c", 3, h3);
    assert_true(h1[0] == h2[0] && h1[1] == h2[1]);
    assert_false(h1[0] == h3[0] && h1[1] == h3[1]);
}

/* Many documents with many duplicates: a tiny memory budget (spills, multi-pass merges) == a large one. */
static void test_exact_spill(void **state) {
    (void)state;
    enum { N = 20000 };
    char **docs = malloc(N * sizeof *docs);
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        docs[i] = malloc(48);
        snprintf(docs[i], 48, "document number %llu of the set", (unsigned long long)(dd_rand(&s) % 5000));
    }
    lmf_exact_dedup_config cfg;
    lmf_exact_dedup_config_default(&cfg);
    uint64_t *a = malloc(N * 8), *b = malloc(N * 8);
    size_t spills_a, spills_b;
    exact_run(&cfg, (const char **)docs, N, NULL, a, &spills_a);
    cfg.mem_budget = 4 * 256 * 24; /* the minimum: 1024 records of 24 bytes */
    exact_run(&cfg, (const char **)docs, N, NULL, b, &spills_b);
    assert_int_equal(spills_a, 0);
    assert_true(spills_b >= 19);
    assert_memory_equal(a, b, N * 8);
    /* and against brute force: the kept id of each doc is the first doc with the same text */
    for (int i = 0; i < N; i++) {
        uint64_t want = UINT64_MAX;
        for (int j = 0; j < i; j++)
            if (!strcmp(docs[j], docs[i])) {
                want = (uint64_t)j;
                break;
            }
        if (a[i] != want) fail_msg("doc %d: %lld vs %lld", i, (long long)a[i], (long long)want);
    }
    cfg.mem_budget = 100;
    lmf_exact_dedup *d;
    assert_int_equal(lmf_exact_dedup_create(&cfg, &d), LMF_ERR_ARG); /* below the minimum: refused */
    for (int i = 0; i < N; i++) free(docs[i]);
    free(docs), free(a), free(b);
}

/* The external sorter alone: random records, every budget from tiny (many passes) to roomy. */
static void test_extsort(void **state) {
    (void)state;
    enum { N = 30000 };
    for (int nw = 1; nw <= 3; nw++) {
        size_t budgets[] = {4 * 256 * 8 * (size_t)nw, 64 * 1024, 1 << 24};
        for (int bi = 0; bi < 3; bi++) {
            lmf_extsort *s;
            assert_int_equal(lmf_extsort_create(nw, budgets[bi], NULL, &s), LMF_OK);
            uint64_t *ref = malloc(N * 8 * (size_t)nw), st = (uint64_t)(nw * 10 + bi);
            for (int i = 0; i < N; i++) {
                for (int w = 0; w < nw; w++) ref[i * nw + w] = dd_rand(&st) % 1000; /* many ties */
                assert_int_equal(lmf_extsort_push(s, ref + i * nw), LMF_OK);
            }
            assert_int_equal(lmf_extsort_finish(s), LMF_OK);
            uint64_t rec[4], prev[4] = {0};
            size_t cnt = 0;
            uint64_t sum_ref = 0, sum = 0;
            for (int i = 0; i < N * nw; i++) sum_ref += ref[i] * (uint64_t)(i % nw + 1);
            int g;
            while ((g = lmf_extsort_next(s, rec)) == 1) {
                if (cnt) assert_true(memcmp(prev, rec, 0) == 0); /* placate */
                if (cnt) {
                    int c = 0;
                    for (int w = 0; w < nw && !c; w++) c = prev[w] < rec[w] ? -1 : prev[w] > rec[w];
                    assert_true(c <= 0);
                }
                for (int w = 0; w < nw; w++) sum += rec[w] * (uint64_t)(w + 1), prev[w] = rec[w];
                cnt++;
            }
            assert_int_equal(g, 0);
            assert_int_equal(cnt, N);
            assert_true(sum == sum_ref);
            if (bi == 0) assert_true(lmf_extsort_spills(s) > 10);
            if (bi == 2) assert_int_equal(lmf_extsort_spills(s), 0);
            lmf_extsort_free(s);
            free(ref);
        }
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * union-find */

static void test_unionfind(void **state) {
    (void)state;
    lmf_unionfind *u = lmf_unionfind_create();
    assert_int_equal(lmf_unionfind_union(u, 10, 20), 1);
    assert_int_equal(lmf_unionfind_union(u, 30, 40), 1);
    assert_false(lmf_unionfind_same(u, 10, 40));
    assert_int_equal(lmf_unionfind_union(u, 40, 20), 1); /* transitive: 10-20, 20-40, 40-30 */
    assert_true(lmf_unionfind_same(u, 10, 30));
    assert_int_equal(lmf_unionfind_union(u, 30, 10), 0);
    assert_true(lmf_unionfind_min(u, 40) == 10);
    assert_true(lmf_unionfind_min(u, 99) == 99);
    lmf_unionfind_free(u);
    /* random unions against a naive relabelling */
    enum { N = 3000 };
    int *lab = malloc(N * sizeof *lab);
    for (int i = 0; i < N; i++) lab[i] = i;
    u = lmf_unionfind_create();
    uint64_t s = 3;
    for (int k = 0; k < 2000; k++) {
        int a = (int)(dd_rand(&s) % N), b = (int)(dd_rand(&s) % N);
        int joined = lmf_unionfind_union(u, (uint64_t)a * 1000003u, (uint64_t)b * 1000003u);
        assert_int_equal(joined, lab[a] != lab[b]);
        int la = lab[a], lb = lab[b];
        for (int i = 0; i < N; i++)
            if (lab[i] == lb) lab[i] = la;
    }
    for (int i = 0; i < N; i += 7) {
        int mn = i;
        for (int j = 0; j < N; j++)
            if (lab[j] == lab[i] && j < mn) mn = j;
        if (mn == i && lmf_unionfind_min(u, (uint64_t)i * 1000003u) != (uint64_t)i * 1000003u) {
            /* i is alone or the smallest */
        }
        assert_true(lmf_unionfind_min(u, (uint64_t)i * 1000003u) == (uint64_t)mn * 1000003u);
        for (int j = 0; j < N; j += 97)
            assert_int_equal(lmf_unionfind_same(u, (uint64_t)i * 1000003u, (uint64_t)j * 1000003u), lab[i] == lab[j]);
    }
    lmf_unionfind_free(u);
    free(lab);
}

/* ---------------------------------------------------------------------------------------------------------------
 * MinHash */

static lmf_minhash *mh_default(double verify) { /* verify: 0 = datatrove's algorithm */
    lmf_minhash_config c;
    lmf_minhash_config_default(&c);
    c.verify_threshold = verify;
    lmf_minhash *m;
    assert_int_equal(lmf_minhash_create(&c, &m), LMF_OK);
    return m;
}

/* Expected values produced by datatrove 0.10.1 (spaCy 3.8.18, numpy 2, xxhash 3.8) on the same strings:
 *   simplify_text(t), MinhashDedupSignature().word_tokenize, .parameters, .get_signature(.get_shingles(t)). */
static void test_minhash_datatrove_values(void **state) {
    (void)state;
    lmf_minhash *m = mh_default(0);
    const uint64_t *a, *b;
    lmf_minhash_params(m, &a, &b);
    assert_true(a[0] == 775169054918279404ULL && a[1] == 1758426461858698313ULL && a[2] == 2109959069025162ULL);
    assert_true(b[0] == 1062448801025099917ULL && a[111] == 223865076026037746ULL && b[111] == 1097409548522419201ULL);
    const char *t = "In the Beginning, God created 3,000.5 heavens; I don't think we'll: caf\u00e9 \u00c9COLE "
                    "na\u00efve 10km and 5 dogs.";
    size_t n;
    char *s = lmf_minhash_simplify(t, strlen(t), &n);
    assert_string_equal(s, "in the beginning god created 0 0 heavens i don t think we ll cafe ecole naive 0km and 0 "
                           "dogs");
    free(s);
    /* 22 words after spaCy ("0km" -> "0" "km"), so 18 shingles */
    uint64_t *sh;
    assert_int_equal(lmf_minhash_shingles(m, t, strlen(t), &sh), 18);
    free(sh);
    uint64_t sig[112];
    assert_int_equal(lmf_minhash_signature(m, t, strlen(t), sig), 1);
    assert_true(sig[0] == 189677521688643453ULL && sig[111] == 290889544967343860ULL);
    /* spaCy's special cases and affixes on simplified text */
    const struct {
        const char *in;
        int words;
    } cases[] = {
        {"dont cant gonna", 6}, {"I can't; we'd", 5}, {"he's 5kg 3mph", 6}, {"0am 10am x0km", 4},
        {"a\u263ab \u00a3x", 5}, {"hello world", 2}, {"   ", 0}, {"one two three four", 4},
    };
    lmf_minhash_config c;
    lmf_minhash_config_default(&c);
    c.n_grams = 1; /* one shingle per word: counts words */
    lmf_minhash *m1;
    assert_int_equal(lmf_minhash_create(&c, &m1), LMF_OK);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t k = lmf_minhash_shingles(m1, cases[i].in, strlen(cases[i].in), &sh);
        free(sh);
        if ((int)k != cases[i].words) fail_msg("'%s': %zu words, want %d", cases[i].in, k, cases[i].words);
    }
    /* fewer than 5 words: no signature */
    assert_int_equal(lmf_minhash_signature(m, "one two three four", 18, sig), 0);
    lmf_minhash_free(m1);
    lmf_minhash_free(m);
}

/* The AVX-512 signature kernel equals the scalar reference bit for bit (odd H for the masked tail). */
static void test_minhash_kernel_variants(void **state) {
    (void)state;
    if (!lmf_cpu_has(LMF_CPU_AVX512F) || !lmf_cpu_has(LMF_CPU_AVX512DQ)) skip();
    uint64_t s = 99, a[1024], b[1024], sh[777], r1[1025], r2[1025];
    for (int j = 0; j < 1024; j++) a[j] = dd_rand(&s) % ((1ULL << 61) - 2) + 1, b[j] = dd_rand(&s) % ((1ULL << 61) - 1);
    for (int i = 0; i < 777; i++) sh[i] = dd_rand(&s);
    int Hs[] = {112, 1, 7, 8, 9, 31, 32, 33, 200, 1024};
    size_t ns[] = {777, 1, 5, 0};
    for (size_t h = 0; h < sizeof Hs / sizeof *Hs; h++)
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
            memset(r2, 0x5a, sizeof r2);
            lmf_minhash_sig_ref(sh, ns[k], a, b, Hs[h], r1);
            lmf_minhash_sig_avx512(sh, ns[k], a, b, Hs[h], r2);
            assert_memory_equal(r1, r2, (size_t)Hs[h] * 8);
            assert_true(r2[Hs[h]] == 0x5a5a5a5a5a5a5a5aULL); /* nothing written past H */
        }
}

/* Random text over a small vocabulary. */
static char *rand_text(uint64_t *s, int words) {
    static const char *vocab[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
                                  "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
                                  "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"};
    char *t = malloc((size_t)words * 9 + 1);
    size_t o = 0;
    for (int i = 0; i < words; i++) {
        const char *w = vocab[dd_rand(s) % 26];
        if (i) t[o++] = ' ';
        memcpy(t + o, w, strlen(w));
        o += strlen(w);
    }
    t[o] = 0;
    return t;
}

static double exact_jaccard(lmf_minhash *m, const char *x, const char *y) {
    uint64_t *a, *b;
    size_t na = lmf_minhash_shingles(m, x, strlen(x), &a), nb = lmf_minhash_shingles(m, y, strlen(y), &b);
    qsort(a, na, 8, dd_cmp_u64), qsort(b, nb, 8, dd_cmp_u64);
    size_t ua = 0, ub = 0;
    for (size_t i = 0; i < na; i++)
        if (!ua || a[i] != a[ua - 1]) a[ua++] = a[i];
    for (size_t i = 0; i < nb; i++)
        if (!ub || b[i] != b[ub - 1]) b[ub++] = b[i];
    size_t i = 0, j = 0, inter = 0;
    while (i < ua && j < ub) {
        if (a[i] == b[j]) inter++, i++, j++;
        else if (a[i] < b[j]) i++;
        else j++;
    }
    free(a), free(b);
    return (double)inter / (double)(ua + ub - inter);
}

static void test_minhash_signature_properties(void **state) {
    (void)state;
    lmf_minhash *m = mh_default(0);
    uint64_t s = 11, sa[112], sb[112];
    /* identical text (up to case, punctuation and whitespace, which simplify_text removes): identical signature */
    char *t = rand_text(&s, 300);
    assert_int_equal(lmf_minhash_signature(m, t, strlen(t), sa), 1);
    size_t L = strlen(t);
    char *u = malloc(2 * L + 8);
    size_t o = 0;
    for (size_t i = 0; i < L; i++) {
        if (t[i] == ' ') u[o++] = ',', u[o++] = '\n';
        else u[o++] = (char)(t[i] - 32);
    }
    u[o] = 0;
    assert_int_equal(lmf_minhash_signature(m, u, o, sb), 1);
    assert_memory_equal(sa, sb, sizeof sa);
    free(u);
    /* crafted pairs: a prefix of text kept and the rest replaced; estimate vs exact Jaccard */
    double sum_err = 0;
    int pairs = 0;
    for (int keep = 50; keep <= 300; keep += 25) {
        char *x = rand_text(&s, 300), *tail = rand_text(&s, 300 - keep);
        size_t cut = 0;
        for (int w = 0, i = 0; x[i]; i++)
            if (x[i] == ' ' && ++w == keep) {
                cut = (size_t)i;
                break;
            }
        char *y = malloc(strlen(x) + strlen(tail) + 2);
        if (keep == 300) strcpy(y, x);
        else {
            memcpy(y, x, cut);
            y[cut] = ' ';
            strcpy(y + cut + 1, tail);
        }
        double j = exact_jaccard(m, x, y);
        assert_int_equal(lmf_minhash_signature(m, x, strlen(x), sa), 1);
        assert_int_equal(lmf_minhash_signature(m, y, strlen(y), sb), 1);
        int eq = 0;
        for (int k = 0; k < 112; k++) eq += sa[k] == sb[k];
        double est = eq / 112.0, sd = sqrt(j * (1 - j) / 112) + 1e-3;
        if (fabs(est - j) > 4 * sd) fail_msg("keep %d: estimate %.3f, exact %.3f (sd %.3f)", keep, est, j, sd);
        sum_err += fabs(est - j);
        pairs++;
        free(x), free(tail), free(y);
    }
    assert_true(sum_err / pairs < 0.05);
    free(t);
    lmf_minhash_free(m);
}

/* Runs MinHash over docs (threads > 1: added concurrently) and returns rep[] (kept id per doc). */
static uint64_t *mh_run(const lmf_minhash_config *cfg, char **docs, const size_t *lens, size_t n, int threads,
                        lmf_minhash_stats *st) {
    lmf_minhash *m;
    assert_int_equal(lmf_minhash_create(cfg, &m), LMF_OK);
    int bad = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16) reduction(+ : bad)
    for (long i = 0; i < (long)n; i++) bad += lmf_minhash_add(m, (uint64_t)i, docs[i], lens[i]) != LMF_OK;
    assert_int_equal(bad, 0);
    assert_int_equal(lmf_minhash_finish(m), LMF_OK);
    uint64_t *rep = malloc(n * 8);
    for (size_t i = 0; i < n; i++) rep[i] = i;
    uint64_t d, k;
    while (lmf_minhash_next_removed(m, &d, &k) == 1) {
        assert_true(d < n && k < d);
        rep[d] = k;
        assert_true(lmf_minhash_is_duplicate(m, d));
    }
    for (size_t i = 0; i < n; i++) assert_int_equal(lmf_minhash_is_duplicate(m, i), rep[i] != i);
    if (st) lmf_minhash_get_stats(m, st);
    lmf_minhash_free(m);
    return rep;
}

/* Chains: A ~ A1 ~ A2 (each a small edit of the previous) end in one cluster kept as A; unrelated texts stay. The
 * tiny-budget run (band records spilled, signatures in a file) equals the in-RAM run. */
static void test_minhash_clusters_and_spill(void **state) {
    (void)state;
    enum { NB = 300, WORDS = 200 };
    size_t n = 0;
    char *docs[NB * 3];
    size_t lens[NB * 3];
    uint64_t s = 5;
    for (int i = 0; i < NB; i++) {
        char *a = rand_text(&s, WORDS);
        docs[n] = a, lens[n] = strlen(a), n++;
        if (i % 3 == 0) { /* a chain of two near copies: last word changed, then first word */
            char *b = strdup(a);
            char *sp = strrchr(b, ' ');
            memset(sp + 1, 'q', strlen(sp + 1));
            char *c = strdup(b);
            memset(c, 'z', strchr(c, ' ') - c);
            docs[n] = b, lens[n] = strlen(b), n++;
            docs[n] = c, lens[n] = strlen(c), n++;
        }
    }
    lmf_minhash_config cfg;
    lmf_minhash_config_default(&cfg);
    for (int v = 0; v < 2; v++) {
        cfg.verify_threshold = v ? 0.8 : 0;
        cfg.mem_budget = (size_t)64 << 20;
        lmf_minhash_stats st1, st2, st3;
        uint64_t *r1 = mh_run(&cfg, docs, lens, n, 1, &st1);
        uint64_t *r2 = mh_run(&cfg, docs, lens, n, 2, &st2);
        cfg.mem_budget = 4 * 256 * 16 * 2; /* minimum: forces spills and the signature file */
        uint64_t *r3 = mh_run(&cfg, docs, lens, n, 2, &st3);
        assert_memory_equal(r1, r2, n * 8);
        assert_memory_equal(r1, r3, n * 8);
        assert_int_equal(st1.n_spills, 0);
        assert_true(st3.n_spills >= 2);
        if (v) assert_int_equal(st3.sigs_on_disk, 1);
        /* every chain is one cluster kept as its first document; nothing else is removed */
        size_t removed = 0;
        for (size_t i = 0; i < n; i++) removed += r1[i] != i;
        assert_int_equal(removed, 2 * ((NB + 2) / 3));
        for (size_t i = 0; i < n; i++)
            if (r1[i] != i) assert_true(r1[i] == i - 1 || r1[i] == i - 2);
        free(r1), free(r2), free(r3);
    }
    for (size_t i = 0; i < n; i++) free(docs[i]);
}

/* finish_skipping (issue 17 item 12): documents an earlier stage removed count as never added. The corpus with an
 * exact copy inserted after every third document, the copies skipped, gives the clusters (mapped back to the
 * original ids) and every counter of the corpus without the copies; has_duplicates marks each cluster's kept id. */
static int skip_marked(const void *ctx, uint64_t id) { return ((const char *)ctx)[id]; }

static void test_minhash_skipping(void **state) {
    (void)state;
    enum { NB = 120, WORDS = 120 };
    char *base[NB * 3], *with[NB * 5];
    size_t nb = 0, nw = 0, orig_of[NB * 5];
    char copy[NB * 5] = {0};
    uint64_t s = 11;
    for (int i = 0; i < NB; i++) {
        char *a = rand_text(&s, WORDS);
        base[nb++] = a;
        if (i % 4 == 0) { /* a near copy: the last word changed */
            char *b = strdup(a);
            char *sp = strrchr(b, ' ');
            memset(sp + 1, 'q', strlen(sp + 1));
            base[nb++] = b;
        }
    }
    base[nb++] = strdup("too short"); /* no shingle: unsigned */
    for (size_t i = 0; i < nb; i++) {
        orig_of[nw] = i, with[nw++] = base[i];
        if (i % 3 == 0) orig_of[nw] = i, copy[nw] = 1, with[nw++] = base[i];
    }
    lmf_minhash_config cfg;
    lmf_minhash_config_default(&cfg);
    for (int v = 0; v < 2; v++) {
        cfg.verify_threshold = v ? 0.8 : 0;
        lmf_minhash *a, *b;
        assert_int_equal(lmf_minhash_create(&cfg, &a), LMF_OK);
        assert_int_equal(lmf_minhash_create(&cfg, &b), LMF_OK);
        for (size_t i = 0; i < nb; i++) assert_int_equal(lmf_minhash_add(a, i, base[i], strlen(base[i])), LMF_OK);
        for (size_t i = 0; i < nw; i++) assert_int_equal(lmf_minhash_add(b, i, with[i], strlen(with[i])), LMF_OK);
        assert_int_equal(lmf_minhash_finish(a), LMF_OK);
        assert_int_equal(lmf_minhash_finish_skipping(b, skip_marked, copy), LMF_OK);
        lmf_minhash_stats sa, sb;
        lmf_minhash_get_stats(a, &sa);
        lmf_minhash_get_stats(b, &sb);
        assert_int_equal(sb.n_docs, nb);
        assert_int_equal(sb.n_signed, nb - 1);
        assert_int_equal(sb.n_signed, sa.n_signed);
        assert_int_equal(sb.n_candidates, sa.n_candidates);
        assert_int_equal(sb.n_verify_failed, sa.n_verify_failed);
        assert_int_equal(sb.n_clusters, sa.n_clusters);
        assert_int_equal(sb.n_removed, sa.n_removed);
        assert_true(sa.n_removed >= NB / 4 - 2); /* the near copies were found */
        size_t twins = 0;
        for (size_t i = 0; i < nw; i++) {
            if (copy[i]) { /* a skipped document is neither removed nor anyone's twin */
                assert_false(lmf_minhash_is_duplicate(b, i));
                assert_false(lmf_minhash_has_duplicates(b, i));
                continue;
            }
            assert_int_equal(lmf_minhash_is_duplicate(b, i), lmf_minhash_is_duplicate(a, orig_of[i]));
            assert_int_equal(lmf_minhash_has_duplicates(b, i), lmf_minhash_has_duplicates(a, orig_of[i]));
            twins += (size_t)lmf_minhash_has_duplicates(a, orig_of[i]);
        }
        assert_int_equal(twins, sa.n_clusters);
        uint64_t d, k;
        while (lmf_minhash_next_removed(b, &d, &k) == 1) {
            assert_false(copy[d] || copy[k]);
            assert_true(lmf_minhash_has_duplicates(b, k));
        }
        lmf_minhash_free(a);
        lmf_minhash_free(b);
    }
    for (size_t i = 0; i < nb; i++) free(base[i]);
}

/* Arbitrary bytes (invalid UTF-8, control characters, symbols, combining marks, digits next to units) go through
 * both deduplicators without a crash (run under ASan/UBSan by `make test-asan`), and identical inputs still agree. */
static void test_hostile_bytes(void **state) {
    (void)state;
    static const char *pieces[] = {"\xff", "\xc3", "\xe2\x82", "\xcc\x81", "\u263a", "\u00a3", "0km", "dont", " ",
                                   "\n", "\t", "\u0130", "\u1f82", "\uac00", "a", "Z", "9", ".", ",", "\u00bf",
                                   "\u2329", "\U0001F600", "", "\x01", "\u00b5m", "\u3000", "\u0660"};
    const int np = (int)(sizeof pieces / sizeof *pieces);
    lmf_minhash *m = mh_default(0.8);
    lmf_exact_dedup_config ec;
    lmf_exact_dedup_config_default(&ec);
    lmf_exact_dedup *d;
    assert_int_equal(lmf_exact_dedup_create(&ec, &d), LMF_OK);
    uint64_t s = 1234;
    enum { N = 400 };
    char *docs[N];
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        int k = (int)(dd_rand(&s) % 300);
        char *t = malloc((size_t)k * 4 + 1);
        size_t o = 0;
        for (int j = 0; j < k; j++) {
            const char *p = pieces[dd_rand(&s) % np];
            size_t l = strlen(p);
            if (!l) l = 1; /* the NUL piece: one zero byte */
            memcpy(t + o, p, l);
            o += l;
        }
        docs[i] = t, lens[i] = o;
        if (i % 50 == 49) memcpy(docs[i] = malloc(lens[i - 1] + 1), docs[i - 1], lens[i] = lens[i - 1]), free(t);
        size_t sl;
        free(lmf_minhash_simplify(docs[i], lens[i], &sl));
        assert_int_equal(lmf_minhash_add(m, (uint64_t)i, docs[i], lens[i]), LMF_OK);
        assert_int_equal(lmf_exact_dedup_add(d, (uint64_t)i, docs[i], lens[i]), LMF_OK);
    }
    assert_int_equal(lmf_minhash_finish(m), LMF_OK);
    assert_int_equal(lmf_exact_dedup_finish(d), LMF_OK);
    for (int i = 49; i < N; i += 50) assert_true(lmf_exact_dedup_is_duplicate(d, (uint64_t)i));
    lmf_minhash_free(m);
    lmf_exact_dedup_free(d);
    for (int i = 0; i < N; i++) free(docs[i]);
}

/* ---------------------------------------------------------------------------------------------------------------
 * acceptance on the King James Bible */

/* Brute-force normalized text for exact dedup (ASCII corpus): lowercase, whitespace runs -> one space, trimmed. */
static char *norm_ascii(const char *t, size_t n) {
    char *o = malloc(n + 1);
    size_t k = 0;
    int sp = 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (c == ' ' || (c >= 9 && c <= 13)) {
            sp = 1;
            continue;
        }
        if (sp && k) o[k++] = ' ';
        sp = 0;
        o[k++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    o[k] = 0;
    return o;
}

static char **g_norm;
static int cmp_norm(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b, c = strcmp(g_norm[x], g_norm[y]);
    return c ? c : (x > y) - (x < y);
}

static void print_score(const char *name, const dd_score *s) {
    static const char *cls[6] = {"chapter-chapter", "1% edits", "5% edits", "10% edits", "20% edits", "copies"};
    printf("  %s\n  %-16s %10s %8s %8s %10s %8s %9s\n", name, "pair class", "true", "found", "recall", "predicted",
           "correct", "precision");
    for (int k = 0; k < 6; k++)
        printf("  %-16s %10zu %8zu %8.4f %10zu %8zu %9.4f\n", cls[k], s->true_pairs[k], s->found[k],
               s->true_pairs[k] ? (double)s->found[k] / s->true_pairs[k] : 1.0, s->pred_pairs[k], s->pred_correct[k],
               s->pred_pairs[k] ? (double)s->pred_correct[k] / s->pred_pairs[k] : 1.0);
    printf("  %-16s %10zu %8zu %8.4f %10zu %8zu %9.4f   (lowest J of a wrong pair: %.3f)\n", "all", s->all_true,
           s->all_found, s->all_true ? (double)s->all_found / s->all_true : 1.0, s->all_pred, s->all_correct,
           s->all_pred ? (double)s->all_correct / s->all_pred : 1.0,
           s->all_pred > s->all_correct ? s->worst_false_j : 1.0);
}

static void test_acceptance_bible(void **state) {
    (void)state;
    double t0 = now_s(), c0 = (double)clock() / CLOCKS_PER_SEC;
    dd_corpus c;
    if (dd_build(&c, 100000, 42) != 0) {
        printf("  `bible` (Debian bible-kjv) not found: skipping\n");
        skip();
    }
    printf("  corpus: %zu documents (%zu chapters), %.1f MB, built in %.2f s\n", c.n, c.n_orig, c.bytes / 1e6,
           now_s() - t0);

    /* exact dedup against brute force */
    double t1 = now_s();
    lmf_exact_dedup_config ec;
    lmf_exact_dedup_config_default(&ec);
    lmf_exact_dedup *ed;
    assert_int_equal(lmf_exact_dedup_create(&ec, &ed), LMF_OK);
#pragma omp parallel for num_threads(2) schedule(dynamic, 16)
    for (long i = 0; i < (long)c.n; i++) LMF_CHECK(lmf_exact_dedup_add(ed, (uint64_t)i, c.text[i], c.len[i]) == LMF_OK);
    assert_int_equal(lmf_exact_dedup_finish(ed), LMF_OK);
    g_norm = malloc(c.n * sizeof *g_norm);
    int *ord = malloc(c.n * sizeof *ord);
    for (size_t i = 0; i < c.n; i++) g_norm[i] = norm_ascii(c.text[i], c.len[i]), ord[i] = (int)i;
    qsort(ord, c.n, sizeof *ord, cmp_norm);
    size_t want_removed = 0, copies_removed = 0;
    for (size_t i = 0; i < c.n;) {
        size_t j = i + 1;
        while (j < c.n && !strcmp(g_norm[ord[j]], g_norm[ord[i]])) j++;
        for (size_t k = i; k < j; k++) /* ord is sorted by (text, id): ord[i] is the lowest id */
            assert_int_equal(lmf_exact_dedup_is_duplicate(ed, (uint64_t)ord[k]), k != i);
        want_removed += j - i - 1;
        i = j;
    }
    for (size_t i = 0; i < c.n; i++) {
        if (c.kind[i] == 5) assert_true(lmf_exact_dedup_is_duplicate(ed, i)), copies_removed++;
        if (c.kind[i] == 6) assert_false(lmf_exact_dedup_is_duplicate(ed, i));
    }
    assert_int_equal(lmf_exact_dedup_n_removed(ed), want_removed);
    printf("  exact dedup: %zu removed (= brute force; %zu planted copies all removed, every one-byte variant kept; "
           "the rest are near-copies whose edits all missed), %.2f s\n",
           (size_t)lmf_exact_dedup_n_removed(ed), copies_removed, now_s() - t1);
    lmf_exact_dedup_free(ed);
    for (size_t i = 0; i < c.n; i++) free(g_norm[i]);
    free(g_norm), free(ord);

    /* ground truth */
    double t2 = now_s(), ct2 = (double)clock() / CLOCKS_PER_SEC;
    lmf_minhash *m = mh_default(0);
    dd_truth tr;
    dd_truth_build(&tr, &c, m, 0.8);
    lmf_minhash_free(m);
    printf("  ground truth: %zu pairs with exact Jaccard >= 0.8 (%.2f s wall, %.2f s CPU)\n", tr.npairs, now_s() - t2,
           (double)clock() / CLOCKS_PER_SEC - ct2);
    /* typical Jaccard of a chapter and its near-copy, per edit rate */
    printf("  chapter vs its near-copy, exact Jaccard:");
    for (int r = 1; r <= 4; r++) {
        double sum = 0;
        size_t cnt = 0, ge = 0;
        for (size_t i = 0; i < c.n; i++)
            if (c.kind[i] == r) {
                size_t o = (size_t)c.source[i];
                double j = dd_jaccard(tr.set[i], tr.n[i], tr.set[o], tr.n[o]);
                sum += j, cnt++, ge += j >= 0.8;
            }
        printf(" %.0f%%: mean %.3f (%zu/%zu >= 0.8);", DD_RATES[r] * 100, sum / cnt, ge, cnt);
    }
    printf("\n");

    lmf_minhash_config cfg;
    lmf_minhash_config_default(&cfg);
    dd_score sc_lsh, sc_sig, sc_ver;
    lmf_minhash_stats st;
    cfg.verify_threshold = 0;
    double t3 = now_s();
    uint64_t *rep = mh_run(&cfg, c.text, c.len, c.n, 2, &st);
    double t_lsh = now_s() - t3;
    dd_score_run(&sc_lsh, &c, &tr, rep, 0.8);
    print_score("14x8 LSH alone (verify_threshold = 0: datatrove's algorithm):", &sc_lsh);
    printf("  (%llu candidates, %llu clusters, %llu removed, %.2f s)\n", (unsigned long long)st.n_candidates,
           (unsigned long long)st.n_clusters, (unsigned long long)st.n_removed, t_lsh);
    free(rep);
    cfg.verify_threshold = 0.8, cfg.verify_sketch = 0;
    rep = mh_run(&cfg, c.text, c.len, c.n, 2, &st);
    dd_score_run(&sc_sig, &c, &tr, rep, 0.8);
    print_score("14x8 LSH + verification on the 112-value signature >= 0.8 (verify_sketch = 0):", &sc_sig);
    printf("  (%llu candidates, %llu rejected, %llu clusters, %llu removed)\n", (unsigned long long)st.n_candidates,
           (unsigned long long)st.n_verify_failed, (unsigned long long)st.n_clusters,
           (unsigned long long)st.n_removed);
    free(rep);
    lmf_minhash_config_default(&cfg); /* the default: bottom-256 sketch verification at 0.8 */
    t3 = now_s();
    rep = mh_run(&cfg, c.text, c.len, c.n, 2, &st);
    double t_ver = now_s() - t3;
    dd_score_run(&sc_ver, &c, &tr, rep, 0.8);
    print_score("14x8 LSH + verification on a bottom-256 sketch >= 0.8 (the default):", &sc_ver);
    printf("  (%llu candidates, %llu rejected, %llu clusters, %llu removed, %.2f s)\n",
           (unsigned long long)st.n_candidates, (unsigned long long)st.n_verify_failed,
           (unsigned long long)st.n_clusters, (unsigned long long)st.n_removed, t_ver);
    /* a few removed documents and what they duplicate */
    for (size_t i = 0, shown = 0; i < c.n && shown < 3; i++)
        if (rep[i] != i && c.kind[i] >= 1 && c.kind[i] <= 4) {
            printf("  e.g. document %zu (chapter %d with %.0f%% word edits) removed as a duplicate of document %llu "
                   "(exact Jaccard %.3f): \"%.60s...\"\n", i, c.source[i], DD_RATES[c.kind[i]] * 100,
                   (unsigned long long)rep[i], dd_jaccard(tr.set[i], tr.n[i], tr.set[rep[i]], tr.n[rep[i]]),
                   c.text[i]);
            shown++;
        }
    free(rep);

    double rec = (double)sc_ver.all_found / sc_ver.all_true, prec = (double)sc_ver.all_correct / sc_ver.all_pred;
    if (rec < 0.95 || prec < 0.99)
        fail_msg("verified MinHash: recall %.4f (>= 0.95), precision %.4f (>= 0.99)", rec, prec);
    printf("  total %.2f s wall, %.2f s CPU (all threads)\n", now_s() - t0, (double)clock() / CLOCKS_PER_SEC - c0);
    dd_truth_free(&tr);
    dd_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_basic),
        cmocka_unit_test(test_exact_spill),
        cmocka_unit_test(test_extsort),
        cmocka_unit_test(test_unionfind),
        cmocka_unit_test(test_minhash_datatrove_values),
        cmocka_unit_test(test_minhash_kernel_variants),
        cmocka_unit_test(test_minhash_signature_properties),
        cmocka_unit_test(test_minhash_clusters_and_spill),
        cmocka_unit_test(test_minhash_skipping),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_acceptance_bible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
