/* test_data_filters.c — the text stages of the data pipeline (src/data/filters.h) on small crafted documents:
 * each filter at and just around each threshold (kept at the threshold, dropped just past it), with datatrove's
 * reason strings; normalize on invalid UTF-8, NFC, CRLF, controls and blank lines; the word/sentence splitter on
 * spaCy's tricky cases; toxicity word boundaries, case folding, phrases and user lists; PII positives and
 * near-misses (datatrove's replacements); and the stages from several threads at once. Expected values for the
 * datatrove rules were checked against datatrove 0.10 (see docs/data.md). */
#include "test_util.h"

#include <omp.h>
#include <unistd.h>

#include "data/filters.h"

static lmf_scratch *S;

static int setup(void **st) {
    S = lmf_scratch_new();
    return 0;
}
static int teardown(void **st) {
    lmf_scratch_free(S);
    return 0;
}

/* "w w w ..." n times, space-separated */
static char *repeat_words(const char *prefix, const char *w, int n) {
    size_t cap = strlen(prefix) + (strlen(w) + 1) * (size_t)n + 1;
    char *s = malloc(cap);
    strcpy(s, prefix);
    for (int i = 0; i < n; i++) {
        strcat(s, w);
        strcat(s, " ");
    }
    return s;
}

#define EXPECT(v, want)                                                                                            \
    do {                                                                                                           \
        const char *w_ = (want);                                                                                   \
        if (w_ == NULL) {                                                                                          \
            if (!(v).keep) fail_msg("expected keep, got %s on \"%.60s\"", (v).reason, t);                        \
        } else {                                                                                                   \
            if ((v).keep) fail_msg("expected %s, got keep on \"%.60s\"", w_, t);                                 \
            if (strcmp((v).reason, w_)) fail_msg("expected %s, got %s on \"%.60s\"", w_, (v).reason, t);         \
        }                                                                                                          \
    } while (0)

/* ---------------------------------------------------------------- words and sentences */

static void words_are(const char *text, const char *const *want, size_t nwant) {
    size_t n;
    const lmf_span *w = lmf_text_words(S, text, strlen(text), &n);
    for (size_t i = 0; i < n && i < nwant; i++)
        if (w[i].len != strlen(want[i]) || memcmp(text + w[i].off, want[i], w[i].len))
            fail_msg("word %zu of \"%s\": got \"%.*s\", want \"%s\"", i, text, (int)w[i].len, text + w[i].off, want[i]);
    assert_int_equal(n, nwant);
}

static void test_words(void **st) {
    /* each list is what datatrove's split_into_words (spaCy 3.8 English) returns */
    static const char *const a[] = {"Do", "n't", "stop", ".", "U.S.", "e.g.", "Hello", ",", "world", "!", "(",
                                    "c", ")", ":)", "it", "'s", "10", "km", "$", "5.00", "http://x.com/a?b=1",
                                    "state", "-", "of", "-", "the", "-", "art"};
    words_are("Don't stop. U.S. e.g. Hello, world! (c) :) it's 10km $5.00 http://x.com/a?b=1 state-of-the-art", a,
              sizeof a / sizeof *a);
    static const char *const b[] = {"Zoar", ";)", "and", "(", "THE", "-", "CDR", "):", "x"};
    words_are("Zoar;) and (THE-CDR): x", b, sizeof b / sizeof *b);
    static const char *const c[] = {"a", "b"}; /* whitespace tokens are dropped */
    words_are("  a \n\n\t b  ", c, 2);
    size_t n;
    lmf_text_words(S, "", 0, &n);
    assert_int_equal(n, 0);
    assert_int_equal(lmf_text_sentences(S, "Hi there. How are you? Fine! Ok", 31), 4);
    assert_int_equal(lmf_text_sentences(S, "", 0), 1);
    assert_int_equal(lmf_text_sentences(S, "No end mark", 11), 1);
    /* Python's splitlines boundaries */
    const char *t = "a\r\nb\rc\x0b" "d\xe2\x80\xa8" "e";
    size_t pos = 0, k = 0;
    lmf_span ln;
    const char *want[] = {"a", "b", "c", "d", "e"};
    while (lmf_next_line(t, strlen(t), &pos, &ln)) {
        assert_true(k < 5);
        assert_int_equal(ln.len, 1);
        assert_memory_equal(t + ln.off, want[k], 1);
        k++;
    }
    assert_int_equal(k, 5);
    assert_true(lmf_uc_isspace(0x3000) && lmf_uc_isspace(0x1c) && !lmf_uc_isspace(0x200B));
    assert_true(lmf_uc_isalpha(0x00E9) && !lmf_uc_isalpha('1') && !lmf_uc_isalpha(0x0301));
}

/* ---------------------------------------------------------------- normalize */

static void norm(const lmf_normalize_cfg *c, const char *in, size_t n, const char *want, lmf_normalize_stats *st) {
    lmf_textbuf out = {0};
    lmf_normalize(c, in, n, &out, st);
    if (out.len != strlen(want) || memcmp(out.data, want, out.len)) fail_msg("normalize: got \"%s\", want \"%s\"", out.data, want);
    assert_true(lmf_utf8_valid(out.data, out.len));
    lmf_textbuf_free(&out);
}

static void test_normalize(void **st) {
    lmf_normalize_cfg c;
    lmf_normalize_defaults(&c);
    lmf_normalize_stats s;
    /* invalid bytes: a lone continuation, a truncated sequence, an overlong, a surrogate */
    norm(&c, "a\x80" "b\xe2\x82" "c\xc0\xaf" "d\xed\xa0\x80" "e", 14,
         "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd" "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "e", &s);
    assert_int_equal(s.invalid_bytes, 8);
    /* NFC: e + COMBINING ACUTE -> é; already-NFC text unchanged */
    norm(&c, "cafe\xcc\x81", 6, "caf\xc3\xa9", &s);
    assert_int_equal(s.nfc_changed, 1);
    norm(&c, "caf\xc3\xa9", 5, "caf\xc3\xa9", &s);
    assert_int_equal(s.nfc_changed, 0);
    /* line endings, controls (\t kept), trailing spaces, blank-line runs, trim */
    const char *in = "\n\n  one\r\ntwo \t\r\rthree\x01\x7f\tx\n\n\n\n\nfour  \n\n";
    norm(&c, in, strlen(in), "one\ntwo\n\nthree\tx\n\n\nfour", &s);
    assert_int_equal(s.crlf_fixed, 3);
    assert_int_equal(s.controls_removed, 2);
    assert_int_equal(s.blank_lines_removed, 2);
    assert_int_equal(s.trailing_removed, 4);
    /* everything off but the repair */
    lmf_normalize_cfg off = {.repair_utf8 = 1, .max_blank_lines = -1};
    norm(&off, "a\r\n\n\n\nb  \n", 10, "a\r\n\n\n\nb  \n", &s);
    norm(&c, "", 0, "", &s);
    norm(&c, " \n \n", 4, "", &s);
}

/* ---------------------------------------------------------------- Gopher quality */

static void gq(const lmf_gopher_quality_cfg *c, const char *t, const char *want) {
    lmf_verdict v;
    lmf_gopher_quality(c, t, strlen(t), S, &v);
    EXPECT(v, want);
}

static void test_gopher_quality(void **st) {
    lmf_gopher_quality_cfg c, only;
    lmf_gopher_quality_defaults(&c);
    char *t = repeat_words("the cat and ", "dogs", 47); /* 50 words: at the threshold */
    gq(&c, t, NULL);
    free(t);
    t = repeat_words("the cat and ", "dogs", 46);
    gq(&c, t, "gopher_short_doc");
    free(t);
    /* punctuation-only words don't count as words */
    t = repeat_words("the cat and , , , ", "dogs", 46);
    gq(&c, t, "gopher_short_doc");
    free(t);
    memset(&only, 0, sizeof only);
    only.max_doc_words = 4;
    gq(&only, "one two three four", NULL);
    gq(&only, "one two three four five", "gopher_long_doc");
    memset(&only, 0, sizeof only);
    only.min_avg_word_length = 3;
    only.max_avg_word_length = 10;
    gq(&only, "abc abc abc", NULL);                     /* 3.0: kept */
    gq(&only, "abc abc ab", "gopher_below_avg_threshold"); /* 2.67 */
    gq(&only, "abcdefghij abcdefghij", NULL);           /* 10.0 */
    gq(&only, "abcdefghij abcdefghijk", "gopher_above_avg_threshold");
    memset(&only, 0, sizeof only);
    only.max_symbol_word_ratio = 0.1;
    /* "#" is a word of its own: 1 '#' in 10 words = 0.1 kept, 2 in 11 words > 0.1 dropped */
    gq(&only, "# a b c d e f g h i", NULL);
    gq(&only, "# # a b c d e f g h i", "gopher_too_many_hashes");
    gq(&only, "a b c d e f g h i j k l m n o p q r s t ...", NULL);   /* 1 / 21 words */
    gq(&only, "a b c d e f g h ... i ...", "gopher_too_many_ellipsis"); /* 2 / 11 */
    memset(&only, 0, sizeof only);
    only.max_bullet_lines_ratio = 0.9;
    gq(&only, "- a\n- b\n- c\n- d\n- e\n- f\n- g\n- h\n  \xe2\x80\xa2 i\nj", NULL); /* 9/10 */
    gq(&only, "- a\n- b\n- c\n- d\n- e\n- f\n- g\n- h\n- i\n- j", "gopher_too_many_bullets");
    memset(&only, 0, sizeof only);
    only.max_ellipsis_lines_ratio = 0.3;
    gq(&only, "a...\nb\xe2\x80\xa6  \nc d\nd e\ne f\nf g\ng h\nh i\ni j\nj k.", NULL); /* 2/10 */
    gq(&only, "a...\nb...\nc...\nd\ne\nf\ng\nh\ni\nj", NULL);                          /* 3/10: at 0.3 */
    gq(&only, "a...\nb...\nc...\nd...\ne\nf\ng\nh\ni\nj", "gopher_too_many_end_ellipsis");
    memset(&only, 0, sizeof only);
    only.max_non_alpha_words_ratio = 0.8;
    gq(&only, "a b c d e f g h 1 2", NULL); /* 8/10 */
    gq(&only, "a b c d e f g 1 2 3", "gopher_below_alpha_threshold");
    gq(&only, "\xc3\xa9t\xc3\xa9 b c d e f g h 1 2", NULL); /* non-ASCII letters count */
    memset(&only, 0, sizeof only);
    only.min_stop_words = 2;
    gq(&only, "the cat and the dog", NULL);
    gq(&only, "the cat the dog", "gopher_enough_stop_words");
    gq(&only, "The cat And dog", "gopher_enough_stop_words"); /* case-sensitive, as datatrove */
    const char *mine[] = {"cat", "dog", "cat"};
    only.stop_words = mine;
    only.n_stop_words = 3;
    gq(&only, "the cat and the dog", NULL);
    gq(&only, "the cat and the cat", "gopher_enough_stop_words");
}

/* ---------------------------------------------------------------- Gopher repetition */

static void gr(const lmf_gopher_repetition_cfg *c, const char *t, const char *want) {
    lmf_verdict v;
    lmf_gopher_repetition(c, t, strlen(t), S, &v);
    EXPECT(v, want);
}

static void test_gopher_repetition(void **st) {
    lmf_gopher_repetition_cfg c, only;
    lmf_gopher_repetition_defaults(&c);
    gr(&c, "", "empty");
    memset(&only, 0, sizeof only);
    only.dup_para_frac = 0.3;
    /* 10 paragraphs, 3 duplicates: 0.3 kept; 4: dropped */
    gr(&only, "a\n\nb\n\nc\n\nd\n\ne\n\nf\n\ng\n\na\n\na\n\na", NULL);
    gr(&only, "a\n\nb\n\nc\n\nd\n\ne\n\nf\n\na\n\na\n\na\n\na", "dup_para_frac");
    memset(&only, 0, sizeof only);
    only.dup_para_char_frac = 0.2;
    /* text of 20 chars with a duplicated 4-char paragraph: 0.2 kept; 5-char: 5/22 dropped */
    gr(&only, "abcd\n\nxxxxxxxx\n\nabcd", NULL);
    gr(&only, "abcde\n\nxxxxxxxx\n\nabcde", "dup_para_char_frac");
    memset(&only, 0, sizeof only);
    only.dup_line_frac = 0.3;
    gr(&only, "a\nb\nc\nd\ne\nf\ng\na\na\na", NULL);
    gr(&only, "a\nb\nc\nd\ne\nf\na\na\na\na", "dup_line_frac");
    memset(&only, 0, sizeof only);
    only.dup_line_char_frac = 0.2;
    gr(&only, "abcd\nxxxxxxxxxx\nabcd", NULL);       /* 4/20 */
    gr(&only, "abcd\nxxxxxxxxx\nabcd", "dup_line_char_frac"); /* 4/19 */
    memset(&only, 0, sizeof only);
    only.n_top = 1;
    only.top[0] = (lmf_ngram_frac){2, 0.2};
    /* "ab cd" (5 chars) twice in 50 chars = 0.2 kept; in 49 chars dropped */
    gr(&only, "ab cd ab cd eeeee fffff ggggg hhhhh iiiii jjjjjjjj", NULL);
    gr(&only, "ab cd ab cd eeeee fffff ggggg hhhhh iiiii jjjjjjj", "top_2_gram");
    memset(&only, 0, sizeof only);
    only.n_dup = 1;
    only.dup[0] = (lmf_ngram_frac){5, 0.15};
    /* the second "a b c d e" (5 chars counted, no spaces) in 34 chars = 0.147 kept; in 33 = 0.152 dropped */
    gr(&only, "a b c d e a b c d e xxxxxxxxxxxxxx", NULL);
    gr(&only, "a b c d e a b c d e xxxxxxxxxxxxx", "duplicated_5_n_grams");
    /* defaults on a plain paragraph */
    /* short texts fail the top n-gram rules: here "The quick brown fox" is 19 of 96 chars (datatrove agrees) */
    gr(&c, "The quick brown fox jumps over the lazy dog. A second sentence follows here, with other words.", "top_4_gram");
}

/* ---------------------------------------------------------------- C4 */

static void c4(const lmf_c4_cfg *c, const char *t, const char *want, const char *kept) {
    lmf_verdict v;
    lmf_textbuf out = {0};
    lmf_c4_quality(c, t, strlen(t), S, &out, NULL, &v);
    EXPECT(v, want);
    if (kept && strcmp(out.data, kept)) fail_msg("c4 kept \"%s\", want \"%s\"", out.data, kept);
    lmf_textbuf_free(&out);
}

static void test_c4(void **st) {
    lmf_c4_cfg c;
    lmf_c4_defaults(&c);
    c4(&c, "One two three. Four five six. Seven eight nine. Ten eleven twelve. Thirteen fourteen fifteen.", NULL,
       "One two three. Four five six. Seven eight nine. Ten eleven twelve. Thirteen fourteen fifteen.");
    c4(&c, "One two three. Four five six. Seven eight nine. Ten eleven twelve.", "too_few_sentences", "");
    lmf_c4_cfg nos = c;
    nos.min_num_sentences = -1;
    lmf_c4_stats s;
    lmf_textbuf out = {0};
    lmf_verdict v;
    const char *t = "Hello there my friend.\nno punct here\nJavascript is required here.\nThis is [1] cited text.\n"
                    "I read the privacy policy today.\nTwo words.\nIt ends here...\n  Strip me please!  ";
    lmf_c4_quality(&nos, t, strlen(t), S, &out, &s, &v);
    EXPECT(v, NULL);
    assert_string_equal(out.data, "Hello there my friend.\nThis is  cited text.\nStrip me please!");
    assert_int_equal(s.lines, 8);
    assert_int_equal(s.no_terminal_punct, 2);
    assert_int_equal(s.javascript, 1);
    assert_int_equal(s.policy, 1);
    assert_int_equal(s.too_few_words, 1);
    lmf_textbuf_free(&out);
    c4(&nos, "Some lorem ipsum dolor sit amet.", "lorem_ipsum", "");
    c4(&nos, "A line with a { brace.", "curly_bracket", "");
    c4(&nos, "A { brace without an end", NULL, ""); /* dropped line first: the brace is never seen */
    nos.max_word_length = 5;
    c4(&nos, "short words only here.\nthis line has a longword.", NULL, "short words only here.");
}

/* ---------------------------------------------------------------- FineWeb */

static void fw(const lmf_fineweb_cfg *c, const char *t, const char *want) {
    lmf_verdict v;
    lmf_fineweb_quality(c, t, strlen(t), S, &v);
    EXPECT(v, want);
}

static void test_fineweb(void **st) {
    lmf_fineweb_cfg c, only;
    lmf_fineweb_defaults(&c);
    fw(&c, "\n  \n", "empty");
    fw(&c, "This is a long enough line that ends with a full stop.\nAnd another long line, also ending properly.", NULL);
    only = c;
    only.short_line_thr = 1;
    only.char_duplicates_ratio = 1;
    only.new_line_ratio = 100;
    /* 12 of 100 lines end with a stop char: 0.12 kept; 11: dropped; a trailing space hides the stop */
    char big[4096];
    big[0] = 0;
    for (int i = 0; i < 100; i++) strcat(big, i < 12 ? "x.\n" : "x\n");
    fw(&only, big, NULL);
    big[0] = 0;
    for (int i = 0; i < 100; i++) strcat(big, i < 11 ? "x!\n" : i < 12 ? "x. \n" : "x\n");
    fw(&only, big, "line_punct_ratio");
    only.line_punct_exclude_zero = 1;
    fw(&only, "a\nb\nc", NULL);
    only = c;
    only.line_punct_thr = 0;
    only.char_duplicates_ratio = 1;
    only.new_line_ratio = 100;
    /* short lines (<= 30 chars): 2 of 3 = 0.667 kept (not > 0.67); 3 of 4 dropped */
    const char *L = "This line is certainly longer than thirty characters.";
    char t[512];
    snprintf(t, sizeof t, "short one\nshort two\n%s", L);
    fw(&only, t, NULL);
    snprintf(t, sizeof t, "short one\nshort two\nshort three\n%s", L);
    fw(&only, t, "short_line_ratio");
    only = c;
    only.line_punct_thr = 0;
    only.short_line_thr = 1;
    only.new_line_ratio = 100;
    /* duplicated line chars / non-newline chars: 1/100 kept, 2/101 dropped */
    char d[512];
    memset(d, 'y', 98);
    d[98] = 0;
    strcat(d, "\na\na");
    fw(&only, d, NULL);
    memset(d, 'y', 98);
    d[98] = 0;
    strcat(d, "\nab\nab");
    fw(&only, d, "char_dup_ratio");
    only = c;
    only.line_punct_thr = 0;
    only.short_line_thr = 1;
    only.char_duplicates_ratio = 1;
    /* 3 newlines / 10 words = 0.3 kept; 4 / 10 dropped */
    fw(&only, "a b c\nd e f\ng h\ni j", NULL);
    fw(&only, "a b c\nd e f\ng h\ni\nj", "list_ratio");
    int32_t stops[] = {'x'};
    only = c;
    only.stop_chars = stops;
    only.n_stop_chars = 1;
    only.short_line_thr = 1;
    only.char_duplicates_ratio = 1;
    fw(&only, "ends with x\nends with x", NULL);
}

static void test_length(void **st) {
    const char *t = "(length)";
    lmf_length_cfg c;
    lmf_length_defaults(&c);
    lmf_verdict v;
    lmf_length_filter(&c, "", 0, &v);
    EXPECT(v, "length_too_short");
    lmf_length_filter(&c, "a", 1, &v);
    EXPECT(v, NULL);
    c.min_chars = 3;
    c.max_chars = 4;
    lmf_length_filter(&c, "\xc3\xa9\xc3\xa9\xc3\xa9", 6, &v); /* 3 characters, 6 bytes */
    EXPECT(v, NULL);
    lmf_length_filter(&c, "ab", 2, &v);
    EXPECT(v, "length_too_short");
    lmf_length_filter(&c, "abcde", 5, &v);
    EXPECT(v, "length_too_long");
}

/* ---------------------------------------------------------------- toxicity */

static void test_toxicity(void **st) {
    const lmf_blocklist *b = lmf_blocklist_default();
    assert_true(lmf_blocklist_size(b) > 250);
    /* the embedded list is data/blocklists/en.txt (rerun tests/reference/gen_blocklist.py after editing it) */
    extern const char lmf_blocklist_en_txt[];
    char path[1024];
    snprintf(path, sizeof path, "%s/data/blocklists/en.txt", LMF_SOURCE_DIR);
    char *file = slurp(path, NULL);
    if (file) assert_string_equal(file, lmf_blocklist_en_txt);
    else print_message("note: %s missing: embedded list not compared\n", path);
    free(file);

    lmf_toxicity_cfg c;
    lmf_toxicity_defaults(&c);
    lmf_toxicity_result r;
    lmf_verdict v;
    const char *t = "What the FUCK, said the Shit-head; Scunthorpe and shitake are fine. Son of a Bitch!";
    lmf_toxicity(&c, b, t, strlen(t), S, &r, &v);
    EXPECT(v, "toxic_words");
    assert_int_equal(r.matches, 3); /* FUCK, Shit (of Shit-head: hyphens separate words), son of a bitch */
    assert_int_equal(r.n_terms, 3);
    assert_string_equal(r.terms[0], "fuck");
    assert_string_equal(r.terms[1], "shit");
    assert_string_equal(r.terms[2], "son of a bitch");
    t = "A perfectly clean sentence about Scunthorpe, cockpits and assassins.";
    lmf_toxicity(&c, b, t, strlen(t), S, &r, &v);
    EXPECT(v, NULL);
    assert_int_equal(r.matches, 0);
    /* threshold in matches per word: 1 match in 10 words = 0.1 */
    c.max_matches_per_word = 0.1;
    t = "fuck a b c d e f g h i";
    lmf_toxicity(&c, b, t, strlen(t), S, &r, &v);
    EXPECT(v, NULL);
    t = "fuck a b c d e f g h";
    lmf_toxicity(&c, b, t, strlen(t), S, &r, &v);
    EXPECT(v, "toxic_words");
    c.min_matches = 2;
    lmf_toxicity(&c, b, t, strlen(t), S, &r, &v);
    EXPECT(v, NULL);
    /* a user list: case-folded (ß -> ss, Σ -> σ), multi-word, comments */
    const char *list = "# mine\nStra\xc3\x9f" "e\n  big bad wolf \n\n\xce\xa3\xce\x9f\xce\xa6\xce\x9f\xce\xa3\n";
    lmf_blocklist *u = lmf_blocklist_from_text(list, strlen(list));
    assert_int_equal(lmf_blocklist_size(u), 3);
    lmf_toxicity_defaults(&c);
    t = "the STRASSE and the Big  Bad\nWolf and \xcf\x83\xce\xbf\xcf\x86\xce\xbf\xcf\x82 but not big bad wolves";
    lmf_toxicity(&c, u, t, strlen(t), S, &r, &v);
    assert_int_equal(r.matches, 3);
    lmf_blocklist_free(u);
    /* from a file; a missing file and an empty list are refused */
    lmf_blocklist *fb = NULL;
    char lpath[] = "/tmp/lmf_listXXXXXX";
    int lfd = mkstemp(lpath);
    assert_true(lfd >= 0);
    assert_int_equal(write(lfd, lmf_blocklist_en_txt, strlen(lmf_blocklist_en_txt)), (ssize_t)strlen(lmf_blocklist_en_txt));
    close(lfd);
    assert_int_equal(lmf_blocklist_load(lpath, &fb), LMF_OK);
    assert_int_equal(lmf_blocklist_size(fb), lmf_blocklist_size(b));
    lmf_blocklist_free(fb);
    unlink(lpath);
    assert_int_equal(lmf_blocklist_load("/nonexistent/list.txt", &fb), LMF_ERR_IO);
    assert_null(fb);
    char tmp[] = "/tmp/lmf_blockXXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "# only a comment\n", 17), 17);
    close(fd);
    assert_int_equal(lmf_blocklist_load(tmp, &fb), LMF_ERR_FORMAT);
    unlink(tmp);
}

/* ---------------------------------------------------------------- PII */

static void pii(const lmf_pii_cfg *c, const char *t, const char *want, size_t emails, size_t v4, size_t v6,
                size_t phones) {
    lmf_textbuf out = {0};
    lmf_pii_counts k;
    lmf_pii_mask(c, t, strlen(t), S, &out, &k);
    if (strcmp(out.data, want)) fail_msg("pii:\n  got  \"%s\"\n  want \"%s\"", out.data, want);
    assert_int_equal(k.emails, emails);
    assert_int_equal(k.ipv4, v4);
    assert_int_equal(k.ipv6, v6);
    assert_int_equal(k.phones, phones);
    lmf_textbuf_free(&out);
}

static void test_pii(void **st) {
    lmf_pii_cfg c;
    lmf_pii_defaults(&c);
    /* datatrove's PIIFormatter gives exactly this (its replacements rotate; private and malformed IPs stay) */
    pii(&c,
        "mail me at john.doe@gmail.com or jane@ex.co.uk, not foo@bar; ip 8.8.8.8 and 192.168.1.1 and 01.2.3.4 and "
        "100.64.1.1 and 1.2.3.4567",
        "mail me at email@example.com or firstname.lastname@example.org, not foo@bar; ip 22.214.171.124 and "
        "192.168.1.1 and 01.2.3.4 and 100.64.1.1 and 126.96.36.19967",
        2, 2, 0, 0);
    pii(&c, "dns 2606:4700:4700::1111 and fe80::1 and ::1 at 10:30:45, ratio 3:16", 
        "dns 2001:db8::1 and fe80::1 and ::1 at 10:30:45, ratio 3:16", 0, 0, 1, 0);
    pii(&c, "call +1 415 555 2671 or (415) 555-2671 or 020 7946 0958; not 1999-2000, 555-1234 or 3.14159",
        "call 555-0100 or 555-0100 or 555-0100; not 1999-2000, 555-1234 or 3.14159", 0, 0, 0, 3);
    lmf_pii_cfg all = c;
    all.only_public_ips = 0;
    pii(&all, "lan 192.168.1.1 and ::1", "lan 22.214.171.124 and 2001:db8::1", 0, 1, 1, 0);
    lmf_pii_cfg none = {0};
    pii(&none, "a@b.com 8.8.8.8", "a@b.com 8.8.8.8", 0, 0, 0, 0);
    const char *mine[] = {"<EMAIL>"};
    lmf_pii_cfg custom = c;
    custom.email_replacements = mine;
    custom.n_email_replacements = 1;
    pii(&custom, "x@y.org and z@w.net", "<EMAIL> and <EMAIL>", 2, 0, 0, 0);
}

/* ---------------------------------------------------------------- hostile input */

static void test_hostile(void **st) {
    /* random bytes (mostly invalid UTF-8), random ASCII punctuation soup and long runs: every stage must finish,
     * normalize must give valid UTF-8, and the filters must give a verdict (a reason when dropping) */
    lmf_textbuf out = {0};
    lmf_gopher_quality_cfg a;
    lmf_gopher_repetition_cfg b;
    lmf_c4_cfg c;
    lmf_fineweb_cfg d;
    lmf_toxicity_cfg e;
    lmf_pii_cfg f;
    lmf_normalize_cfg g;
    lmf_gopher_quality_defaults(&a);
    lmf_gopher_repetition_defaults(&b);
    lmf_c4_defaults(&c);
    lmf_fineweb_defaults(&d);
    lmf_toxicity_defaults(&e);
    lmf_pii_defaults(&f);
    lmf_normalize_defaults(&g);
    srand(7);
    static const char soup[] = " \n\t.,;:!?'\"()[]{}-_@#$%&*/\\0123456789aeiouxyz";
    for (int it = 0; it < 300; it++) {
        size_t n = (size_t)(rand() % 3000);
        char *t = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            t[i] = it % 3 == 0 ? (char)(rand() & 0xFF) : it % 3 == 1 ? soup[rand() % (sizeof soup - 1)] : (i % 97 ? 'a' : '\n');
        t[n] = 0;
        lmf_verdict v;
        lmf_toxicity_result r;
        lmf_normalize(&g, t, n, &out, NULL);
        assert_true(lmf_utf8_valid(out.data, out.len));
        lmf_gopher_quality(&a, t, n, S, &v);
        assert_true(v.keep || v.reason);
        lmf_gopher_repetition(&b, t, n, S, &v);
        assert_true(v.keep || v.reason);
        lmf_c4_quality(&c, t, n, S, &out, NULL, &v);
        assert_true(v.keep || v.reason);
        lmf_fineweb_quality(&d, t, n, S, &v);
        assert_true(v.keep || v.reason);
        lmf_toxicity(&e, lmf_blocklist_default(), t, n, S, &r, &v);
        lmf_pii_mask(&f, t, n, S, &out, NULL);
        free(t);
    }
    lmf_textbuf_free(&out);
}

/* ---------------------------------------------------------------- threads */

static void test_threads(void **st) {
    /* the same documents through every stage from 2 threads (each with its own scratch) and from one */
    enum { N = 64 };
    char *docs[N];
    for (int i = 0; i < N; i++) {
        char b[512];
        snprintf(b, sizeof b,
                 "Document %d says: the cat and the dog (c) don't stop.\nMail doc%d@example.com, ip 8.8.%d.%d.\n"
                 "Fuck this line %d? It is the same line.\nIt is the same line.\n",
                 i, i, i % 7, i % 5, i % 3);
        docs[i] = strdup(b);
    }
    uint64_t serial[N], par[N];
    for (int pass = 0; pass < 2; pass++) {
        uint64_t *res = pass ? par : serial;
#pragma omp parallel num_threads(pass ? 2 : 1)
        {
            lmf_scratch *s = lmf_scratch_new();
            lmf_textbuf out = {0};
            lmf_gopher_quality_cfg a;
            lmf_gopher_repetition_cfg b;
            lmf_c4_cfg c;
            lmf_fineweb_cfg d;
            lmf_toxicity_cfg e;
            lmf_pii_cfg f;
            lmf_normalize_cfg g;
            lmf_gopher_quality_defaults(&a);
            lmf_gopher_repetition_defaults(&b);
            lmf_c4_defaults(&c);
            lmf_fineweb_defaults(&d);
            lmf_toxicity_defaults(&e);
            lmf_pii_defaults(&f);
            lmf_normalize_defaults(&g);
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < N; i++) {
                const char *t = docs[i];
                size_t n = strlen(t);
                lmf_verdict v[5];
                lmf_toxicity_result r;
                size_t nw;
                lmf_gopher_quality(&a, t, n, s, &v[0]);
                lmf_gopher_repetition(&b, t, n, s, &v[1]);
                lmf_c4_quality(&c, t, n, s, &out, NULL, &v[2]);
                uint64_t h = lmf_hash_bytes(out.data, out.len);
                lmf_fineweb_quality(&d, t, n, s, &v[3]);
                lmf_toxicity(&e, lmf_blocklist_default(), t, n, s, &r, &v[4]);
                lmf_pii_mask(&f, t, n, s, &out, NULL);
                h ^= lmf_hash_bytes(out.data, out.len) * 3;
                lmf_normalize(&g, t, n, &out, NULL);
                h ^= lmf_hash_bytes(out.data, out.len) * 5;
                lmf_text_words(s, t, n, &nw);
                for (int k = 0; k < 5; k++) h = h * 31 + (uint64_t)v[k].keep;
                res[i] = h * 31 + nw + r.matches;
            }
            lmf_textbuf_free(&out);
            lmf_scratch_free(s);
        }
    }
    for (int i = 0; i < N; i++) {
        assert_true(serial[i] == par[i]);
        free(docs[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),       cmocka_unit_test(test_normalize), cmocka_unit_test(test_gopher_quality),
        cmocka_unit_test(test_gopher_repetition), cmocka_unit_test(test_c4), cmocka_unit_test(test_fineweb),
        cmocka_unit_test(test_length),      cmocka_unit_test(test_toxicity),  cmocka_unit_test(test_pii),
        cmocka_unit_test(test_hostile),     cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
