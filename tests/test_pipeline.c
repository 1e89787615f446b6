/* test_pipeline.c — the data pipeline driver (src/data/pipeline.h, reader.h): readers on crafted corpora in a temp
 * folder (files, blank-line blocks, lines, separators, JSONL with bad lines and missing fields, zstd, corrupt zstd),
 * exact duplicates removed with the kept twin named, filtered documents reported with their reasons, the same
 * output with 1 and 2 threads, the spill path (two-phase dedup with tiny batches and budgets), shards readable by
 * the trainer's reader, and config errors that name file:line:column. */
#include "test_util.h"

#include "data/pipeline.h"
#include "io/shard.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static char g_dir[64];

static void write_file(const char *name, const void *data, size_t n) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    char *slash = strrchr(p, '/');
    *slash = 0;
    mkdir(p, 0755);
    *slash = '/';
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_text(const char *name, const char *text) { write_file(name, text, strlen(text)); }

static void write_zst(const char *name, const char *text) {
    size_t cap = ZSTD_compressBound(strlen(text));
    char *buf = malloc(cap);
    size_t n = ZSTD_compress(buf, cap, text, strlen(text), 3);
    assert_false(ZSTD_isError(n));
    write_file(name, buf, n);
    free(buf);
}

static char *path_of(const char *name) {
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static int setup(void **st) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lmf_pipeline_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **st) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd);
}

/* ---------------------------------------------------------------- reader */

typedef struct {
    char kinds[32][32];
    char where[32][300];
    int n;
} mal_log;

static void log_mal(void *ctx, const char *kind, const char *path, uint64_t line, const char *msg) {
    mal_log *m = ctx;
    if (m->n >= 32) return;
    snprintf(m->kinds[m->n], 32, "%s", kind);
    const char *base = strrchr(path, '/');
    snprintf(m->where[m->n], 300, "%s:%llu", base ? base + 1 : path, (unsigned long long)line);
    m->n++;
}

static size_t g_read_len; /* length of read_all's last result (documents may hold NUL bytes) */

/* Reads every document of paths; returns them joined as "[source-base:line]text|" for easy comparison. */
static char *read_all(lmf_reader_config *rc, mal_log *m) {
    rc->on_malformed = log_mal, rc->ctx = m;
    if (!rc->text_field) rc->text_field = "text";
    lmf_reader *r;
    assert_int_equal(lmf_reader_open(rc, &r), LMF_OK);
    char *buf = NULL, *out = calloc(1, 1);
    size_t len = 0, cap = 0, olen = 0;
    lmf_reader_doc d;
    while (lmf_reader_next(r, &buf, &len, &cap, &d)) {
        const char *src = lmf_reader_source(r, d.source), *base = strrchr(src, '/');
        char head[300];
        int hn = snprintf(head, sizeof head, "[%s:%llu%s%.*s]", base ? base + 1 : src, (unsigned long long)d.line,
                          d.id_len ? " id=" : "", (int)d.id_len, buf + d.id_off);
        out = realloc(out, olen + (size_t)hn + d.text_len + 2);
        memcpy(out + olen, head, (size_t)hn);
        olen += (size_t)hn;
        memcpy(out + olen, buf + d.text_off, d.text_len);
        olen += d.text_len;
        out[olen++] = '|';
        out[olen] = 0;
        len = 0;
    }
    lmf_reader_free(r);
    free(buf);
    g_read_len = olen;
    return out;
}

static void test_reader_text_modes(void **st) {
    write_text("modes/a.txt", "first para\nline two\n\n\n  \nsecond para\n");
    write_text("modes/b.txt", "only\n");
    write_text("modes/empty.txt", "  \n\n");
    write_text("modes/skip.dat", "binary");
    const char *paths[] = {path_of("modes")};
    const char *excl[] = {"*.dat"};
    mal_log m = {0};
    lmf_reader_config rc = {.paths = paths, .n_paths = 1, .exclude = excl, .n_exclude = 1};
    rc.split = LMF_SPLIT_FILE;
    char *s = read_all(&rc, &m);
    assert_string_equal(s, "[a.txt:1]first para\nline two\n\n\n  \nsecond para\n|[b.txt:1]only\n|");
    free(s);
    rc.split = LMF_SPLIT_BLANK_LINE;
    s = read_all(&rc, &m);
    assert_string_equal(s, "[a.txt:1]first para\nline two|[a.txt:6]second para|[b.txt:1]only|");
    free(s);
    rc.split = LMF_SPLIT_LINE;
    s = read_all(&rc, &m);
    assert_string_equal(s, "[a.txt:1]first para|[a.txt:2]line two|[a.txt:6]second para|[b.txt:1]only|");
    free(s);
    write_text("fortune/f", "A fortune.\n%\nAnother\none.\r\n%\n%\nlast");
    const char *fp[] = {path_of("fortune/f")};
    lmf_reader_config fc = {.paths = fp, .n_paths = 1, .split = LMF_SPLIT_SEPARATOR, .separator = "%"};
    s = read_all(&fc, &m);
    assert_string_equal(s, "[f:1]A fortune.|[f:3]Another\none.|[f:7]last|");
    free(s);
    assert_int_equal(m.n, 0);
    /* include patterns select names; a missing path is reported, not fatal */
    const char *incl[] = {"b.*"};
    const char *p2[] = {path_of("modes"), path_of("nope.txt")};
    lmf_reader_config ic = {.paths = p2, .n_paths = 2, .include = incl, .n_include = 1};
    s = read_all(&ic, &m);
    assert_string_equal(s, "[b.txt:1]only\n|");
    free(s);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.kinds[0], "unreadable_file");
    assert_string_equal(m.where[0], "nope.txt:0");
}

static void test_reader_jsonl_zstd(void **st) {
    const char *jl = "{\"text\": \"doc one\", \"id\": \"d1\"}\n"
                     "{\"text\": broken\n"
                     "\n"
                     "{\"body\": \"no text field\"}\n"
                     "{\"text\": 42}\n"
                     "[1, 2]\n"
                     "{\"text\": \"doc \\u00e9 two\\nline\", \"id\": 7}\n";
    write_text("j/a.jsonl", jl);
    write_zst("j/b.jsonl.zst", "{\"text\": \"compressed doc\"}\n{\"text\": \"second\"}\n");
    write_zst("j/c.txt.zst", "zstd text\n\nblock two\n");
    /* a corrupt zstd file: a valid frame cut in half */
    size_t cap = 1000;
    char *z = malloc(cap);
    const char *big = "{\"text\": \"this will be cut\"}\n{\"text\": \"and this too, it is long enough\"}\n";
    size_t zn = ZSTD_compress(z, cap, big, strlen(big), 1);
    write_file("j/d.jsonl.zst", z, zn / 2);
    free(z);
    const char *paths[] = {path_of("j")};
    mal_log m = {0};
    lmf_reader_config rc = {.paths = paths, .n_paths = 1, .id_field = "id", .split = LMF_SPLIT_BLANK_LINE};
    char *s = read_all(&rc, &m);
    assert_string_equal(s, "[a.jsonl:1 id=d1]doc one|[a.jsonl:7 id=7]doc \xC3\xA9 two\nline|"
                           "[b.jsonl.zst:1]compressed doc|[b.jsonl.zst:2]second|"
                           "[c.txt.zst:1]zstd text|[c.txt.zst:3]block two|");
    free(s);
    assert_int_equal(m.n, 5);
    assert_string_equal(m.kinds[0], "bad_json");
    assert_string_equal(m.where[0], "a.jsonl:2");
    assert_string_equal(m.kinds[1], "missing_text_field");
    assert_string_equal(m.where[1], "a.jsonl:4");
    assert_string_equal(m.kinds[2], "text_not_string");
    assert_string_equal(m.where[2], "a.jsonl:5");
    assert_string_equal(m.kinds[3], "bad_json"); /* [1, 2] is JSON but not an object */
    assert_string_equal(m.where[3], "a.jsonl:6");
    assert_string_equal(m.kinds[4], "corrupt_zstd");
    assert_true(!strncmp(m.where[4], "d.jsonl.zst", 11));
}

/* ---------------------------------------------------------------- the whole pipeline */

static void base_config(lmf_pipeline_config *c, const char *out, const char *input) {
    lmf_pipeline_config_default(c);
    lmf_strlist_push(&c->inputs, &c->n_inputs, path_of(input));
    c->out_dir = strdup(path_of(out));
    c->progress = 0;
}

static char *slurp_out(const char *out, const char *name) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s", path_of(out), name);
    return slurp(p, NULL);
}

static const lmf_report_reason *find_reason(const lmf_report_stage *st, const char *r) {
    for (size_t i = 0; i < st->n_reasons; i++)
        if (!strcmp(st->reasons[i].reason, r)) return &st->reasons[i];
    return NULL;
}

static void test_exact_dedup_and_reasons(void **st) {
    write_text("dd/1.txt", "The same text, word for word.");
    write_text("dd/2.txt", "A different document that stays.");
    write_text("dd/3.txt", "the  SAME text, word for word.\n"); /* equal after lowercase + whitespace collapse */
    write_text("dd/4.txt", "This one is far too long for the length bound set below, so it goes.");
    write_text("dd/5.txt", "bad \xff byte");
    lmf_pipeline_config c;
    base_config(&c, "dd_out", "dd");
    for (int s = LMF_STAGE_GOPHER_QUALITY; s <= LMF_STAGE_PII; s++) c.enabled[s] = 0;
    c.enabled[LMF_STAGE_MINHASH] = 0;
    c.length.max_chars = 50;
    c.write_removed = 1;
    lmf_report *r;
    assert_int_equal(lmf_pipeline_run(&c, NULL, &r), LMF_OK);
    assert_int_equal(r->docs_read, 5);
    assert_int_equal(r->docs_out, 3);
    const lmf_report_stage *len = &r->stages[LMF_STAGE_LENGTH];
    assert_int_equal(len->docs_removed, 1);
    const lmf_report_reason *rs = find_reason(len, "length_too_long");
    assert_non_null(rs);
    assert_int_equal(rs->n_ex, 1);
    assert_non_null(strstr(rs->ex[0].source, "dd/4.txt:1"));
    assert_true(!strncmp(rs->ex[0].snippet, "This one is far too long", 24));
    const lmf_report_stage *ex = &r->stages[LMF_STAGE_EXACT_DEDUP];
    assert_int_equal(ex->docs_in, 4);
    assert_int_equal(ex->docs_removed, 1);
    rs = find_reason(ex, "exact_duplicate");
    assert_non_null(rs);
    assert_non_null(strstr(rs->ex[0].source, "dd/3.txt:1"));
    assert_non_null(strstr(rs->ex[0].detail, "dd/1.txt:1")); /* the kept twin, named */
    /* normalization repaired the invalid byte (counted) */
    const lmf_report_stage *nz = &r->stages[LMF_STAGE_NORMALIZE];
    int found = 0;
    for (size_t i = 0; i < nz->n_counters; i++)
        if (!strcmp(nz->counters[i].name, "invalid_bytes_replaced")) found = (int)nz->counters[i].value;
    assert_int_equal(found, 1);
    assert_true(r->spill_bytes > 0);
    lmf_report_free(r);
    free(r);
    /* kept.jsonl: the three survivors in input order; removed.jsonl: the other two with stage and reason */
    char *kept = slurp_out("dd_out", "kept.jsonl");
    assert_non_null(kept);
    const char *want[] = {"The same text, word for word.", "A different document that stays.", "bad \xEF\xBF\xBD byte"};
    char *line = kept;
    for (int i = 0; i < 3; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        assert_string_equal(cJSON_GetObjectItem(j, "text")->valuestring, want[i]);
        cJSON_Delete(j);
        line = nl + 1;
    }
    assert_int_equal(*line, 0);
    free(kept);
    char *removed = slurp_out("dd_out", "removed.jsonl");
    assert_non_null(strstr(removed, "\"stage\":\"length\",\"reason\":\"length_too_long\""));
    assert_non_null(strstr(removed, "\"stage\":\"exact_dedup\",\"reason\":\"exact_duplicate\""));
    free(removed);
    char *json = slurp_out("dd_out", "report.json");
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    cJSON_Delete(j);
    free(json);
    /* byte shards: every kept byte plus one end-of-text per document */
    lmf_shard *sh;
    char p[300];
    snprintf(p, sizeof p, "%s/train.bin", path_of("dd_out"));
    assert_int_equal(lmf_shard_open(p, &sh), LMF_OK);
    uint64_t nt = sh->n_tokens, eots = 0;
    for (uint64_t i = 0; i < sh->n_tokens; i++) eots += lmf_shard_token(sh, i) == 256;
    assert_int_equal(sh->vocab_size, 257);
    lmf_shard_close(sh);
    snprintf(p, sizeof p, "%s/val.bin", path_of("dd_out"));
    assert_int_equal(lmf_shard_open(p, &sh), LMF_OK);
    nt += sh->n_tokens;
    for (uint64_t i = 0; i < sh->n_tokens; i++) eots += lmf_shard_token(sh, i) == 256;
    lmf_shard_close(sh);
    assert_int_equal(eots, 3);
    assert_int_equal(nt, strlen(want[0]) + strlen(want[1]) + strlen(want[2]) + 3);
    lmf_pipeline_config_free(&c);
}

static uint64_t counter(const lmf_report_stage *st, const char *name) {
    for (size_t i = 0; i < st->n_counters; i++)
        if (!strcmp(st->counters[i].name, name)) return st->counters[i].value;
    return UINT64_MAX;
}

/* A text of n words of letters only (digits would all simplify to "0" for MinHash), different for each seed. */
static char *words_text(unsigned seed, int n) {
    char *t = malloc((size_t)n * 8 + 1);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        unsigned x = (unsigned)i * 2654435761u ^ seed * 40503u;
        if (i) t[o++] = ' ';
        for (int k = 0; k < 5; k++, x /= 26) t[o++] = (char)('a' + x % 26);
    }
    t[o] = 0;
    return t;
}

/* Duplicates name their kept twin by place (and id), never by the run's internal number (issue 17 item 11), and
 * MinHash counts only what exact dedup let through (item 12): a text, its exact copy, a near copy and another
 * text give exact_dedup 4 in / 1 removed, minhash 3 in / 3 signed / 1 cluster / 1 removed. */
static void test_dedup_twins_named_and_counted(void **st) {
    char *t = words_text(1, 150), *u = words_text(2, 150), *near = strdup(t);
    memcpy(near + strlen(near) - 5, "zzzzz", 5);
    write_text("dn/a.txt", t);
    write_text("dn/b.txt", t);
    write_text("dn/c.txt", near);
    write_text("dn/d.txt", u);
    char *jl = malloc(4 * strlen(t) + 400);
    sprintf(jl, "{\"id\": \"first\", \"text\": \"%s\"}\n{\"id\": \"copy\", \"text\": \"%s\"}\n"
                "{\"id\": \"near\", \"text\": \"%s\"}\n{\"id\": \"other\", \"text\": \"%s\"}\n", t, t, near, u);
    write_text("dnj/x.jsonl", jl);
    for (int v = 0; v < 2; v++) {
        lmf_pipeline_config c;
        base_config(&c, v ? "dnj_out" : "dn_out", v ? "dnj" : "dn");
        for (int s = LMF_STAGE_LENGTH; s <= LMF_STAGE_PII; s++) c.enabled[s] = 0;
        c.write_removed = 1;
        if (v) c.id_field = strdup("id");
        lmf_report *r;
        assert_int_equal(lmf_pipeline_run(&c, NULL, &r), LMF_OK);
        const lmf_report_stage *ex = &r->stages[LMF_STAGE_EXACT_DEDUP], *mh = &r->stages[LMF_STAGE_MINHASH];
        assert_int_equal(ex->docs_in, 4);
        assert_int_equal(ex->docs_removed, 1);
        assert_int_equal(mh->docs_in, 3);
        assert_int_equal(mh->docs_removed, 1);
        assert_int_equal(counter(mh, "signed_docs"), 3); /* not 4: the exact copy is not MinHash's to sign */
        assert_int_equal(counter(mh, "clusters"), 1);
        assert_int_equal(counter(mh, "candidate_pairs"), 1);
        assert_int_equal(r->docs_out, 2);
        const char *twin = v ? "dnj/x.jsonl:1 (id first)" : "dn/a.txt:1";
        for (int k = 0; k < 2; k++) {
            const lmf_report_reason *rs = find_reason(k ? mh : ex, k ? "near_duplicate" : "exact_duplicate");
            assert_non_null(rs);
            if (!strstr(rs->ex[0].detail, twin) || strchr(rs->ex[0].detail, '#'))
                fail_msg("report example detail '%s' should name %s", rs->ex[0].detail, twin);
        }
        char *removed = slurp_out(v ? "dnj_out" : "dn_out", "removed.jsonl");
        assert_non_null(removed);
        int n = 0;
        for (char *line = strtok(removed, "\n"); line; line = strtok(NULL, "\n"), n++) {
            cJSON *j = cJSON_Parse(line);
            assert_non_null(j);
            const char *why = cJSON_GetObjectItem(j, "why")->valuestring;
            char want[300];
            snprintf(want, sizeof want, "duplicate of %s/%s", g_dir, twin);
            if (strcmp(why, want)) fail_msg("removed.jsonl why '%s', expected '%s'", why, want);
            cJSON_Delete(j);
        }
        assert_int_equal(n, 2);
        free(removed);
        lmf_report_free(r);
        free(r);
        lmf_pipeline_config_free(&c);
    }
    free(t), free(u), free(near), free(jl);
}

/* A NUL byte is text like any other (issue 18, defect 2): "\u0000" and a raw NUL byte in a JSONL text field, and a
 * raw NUL in text files, keep the whole document (cJSON's value ends at the first NUL; the reader decodes such a
 * field itself, length-aware: escapes, surrogate pairs, the top-level key only, the first of duplicate keys). */
static void test_reader_nul_bytes(void **st) {
    static const char jl[] = "{\"text\": \"before \\u0000 after\"}\n"
                             "{\"text\": \"raw \0 byte\", \"id\": \"r\"}\n"
                             "{\"meta\": {\"text\": \"nested \\u0000 no\", \"n\": [1, {\"a\": \"}\"}]}, \"x\": null, "
                             "\"text\": \"a\\u0000\\ud83d\\ude00\\\"q\\\\\\/\\t\", \"text\": \"second\\u0000 no\"}\n"
                             "{\"text\": \"no nul here\"}\n"
                             "\xEF\xBB\xBF {\"text\": \"bom\\u0000\"}\n";
    write_file("nul/a.jsonl", jl, sizeof jl - 1);
    static const char tx[] = "line one \0 with nul\n\nblock \0 two\n";
    write_file("nul/b.txt", tx, sizeof tx - 1);
    const char *paths[] = {path_of("nul")};
    mal_log m = {0};
    lmf_reader_config rc = {.paths = paths, .n_paths = 1, .id_field = "id", .split = LMF_SPLIT_BLANK_LINE};
    char *s = read_all(&rc, &m);
    static const char want[] = "[a.jsonl:1]before \0 after|[a.jsonl:2 id=r]raw \0 byte|"
                               "[a.jsonl:3]a\0\xF0\x9F\x98\x80\"q\\/\t|[a.jsonl:4]no nul here|[a.jsonl:5]bom\0|"
                               "[b.txt:1]line one \0 with nul|[b.txt:3]block \0 two|";
    assert_int_equal(m.n, 0);
    assert_int_equal(g_read_len, sizeof want - 1);
    assert_memory_equal(s, want, sizeof want - 1);
    free(s);
    rc.split = LMF_SPLIT_LINE;
    const char *bp[] = {path_of("nul/b.txt")};
    rc.paths = bp;
    s = read_all(&rc, &m);
    static const char want2[] = "[b.txt:1]line one \0 with nul|[b.txt:3]block \0 two|";
    assert_int_equal(g_read_len, sizeof want2 - 1);
    assert_memory_equal(s, want2, sizeof want2 - 1);
    free(s);
}

/* Downstream of the reader NUL bytes are counted, not cut: without normalize the stages see the whole text (two
 * documents equal up to their NUL are not duplicates, the length filter counts every character, kept.jsonl writes
 * \u0000); with normalize the NUL is removed as a control character, counted and the document marked modified. */
static void test_pipeline_nul_bytes(void **st) {
    char *p = words_text(7, 150), *a = words_text(8, 150), *b = words_text(9, 150);
    size_t n = strlen(p) + strlen(a) + 64;
    char *d1 = malloc(n), *d2 = malloc(n);
    int n1 = snprintf(d1, n, "%s \\u0000 %s", p, a), n2 = snprintf(d2, n, "%s \\u0000 %s", p, b);
    char *jl = malloc(3 * n + 64);
    int nj = sprintf(jl, "{\"text\": \"%s\"}\n{\"text\": \"%s\"}\n{\"text\": \"%s\"}\n", d1, d2, d1);
    write_file("pn/in.jsonl", jl, (size_t)nj);
    for (int norm = 0; norm < 2; norm++) {
        lmf_pipeline_config c;
        base_config(&c, norm ? "pn_out1" : "pn_out0", "pn");
        for (int s = LMF_STAGE_NORMALIZE; s <= LMF_STAGE_PII; s++) c.enabled[s] = 0;
        c.enabled[LMF_STAGE_NORMALIZE] = norm;
        c.enabled[LMF_STAGE_LENGTH] = 1;
        c.length.min_chars = strlen(p) + 10; /* more than the text before the NUL */
        lmf_report *r;
        assert_int_equal(lmf_pipeline_run(&c, NULL, &r), LMF_OK);
        assert_int_equal(r->stages[LMF_STAGE_LENGTH].docs_removed, 0);
        assert_int_equal(r->stages[LMF_STAGE_EXACT_DEDUP].docs_removed, 1); /* the third is the first again */
        assert_int_equal(r->stages[LMF_STAGE_MINHASH].docs_removed, 0);
        assert_int_equal(r->docs_out, 2);
        if (norm) {
            assert_int_equal(counter(&r->stages[LMF_STAGE_NORMALIZE], "controls_removed"), 3);
            assert_int_equal(r->stages[LMF_STAGE_NORMALIZE].docs_modified, 3);
        }
        char *kept = slurp_out(norm ? "pn_out1" : "pn_out0", "kept.jsonl");
        assert_non_null(kept);
        char *nl = strchr(kept, '\n');
        assert_non_null(nl);
        *nl = 0;
        cJSON *j = cJSON_Parse(kept);
        assert_non_null(j);
        const char *t = cJSON_GetObjectItem(j, "text")->valuestring;
        assert_non_null(strstr(kept, norm ? "\"text\":\"" : "\\u0000")); /* written as an escape */
        if (norm) assert_null(strstr(kept, "\\u0000"));
        /* cJSON's value stops at a NUL; the prefix before it is the whole line's first part either way */
        assert_true(!strncmp(t, p, strlen(p)));
        assert_true(strlen(kept) > strlen(p) + strlen(a)); /* the text after the NUL is in the output */
        cJSON_Delete(j);
        free(kept);
        lmf_report_free(r);
        free(r);
        lmf_pipeline_config_free(&c);
    }
    (void)n1, (void)n2;
    free(p), free(a), free(b), free(d1), free(d2), free(jl);
}

static void test_invalid_utf8_without_normalize(void **st) {
    write_text("u8/a.jsonl", "{\"text\": \"fine text\"}\n{\"text\": \"bad \xC3\x28 text\"}\n");
    lmf_pipeline_config c;
    base_config(&c, "u8_out", "u8");
    for (int s = 0; s < LMF_N_STAGES; s++) c.enabled[s] = 0;
    lmf_report *r;
    assert_int_equal(lmf_pipeline_run(&c, NULL, &r), LMF_OK);
    assert_int_equal(r->docs_out, 1);
    assert_int_equal(r->n_malformed, 1);
    assert_string_equal(r->malformed[0].reason, "invalid_utf8");
    assert_non_null(strstr(r->malformed[0].ex[0].source, "a.jsonl:2"));
    lmf_report_free(r);
    free(r);
    lmf_pipeline_config_free(&c);
}

/* A corpus with good paragraphs, short junk, near and exact copies: every stage has work. */
static void make_corpus(const char *dir, int n_docs) {
    static const char *nouns[] = {"king", "river", "city", "people", "house", "field", "voice", "night", "mountain",
                                  "servant", "garden", "word", "land", "brother", "gate", "sea"};
    static const char *verbs[] = {"came", "went", "spoke", "rose", "fell", "stood", "heard", "saw", "built", "kept"};
    unsigned rng = 7;
#define R(n) ((rng = rng * 1103515245u + 12345u) >> 16) % (n)
    char *buf = malloc(1 << 16);
    for (int d = 0; d < n_docs; d++) {
        size_t o = 0;
        int kind = R(10);
        if (kind == 0) {
            o += (size_t)sprintf(buf + o, "buy now!!! click here");
        } else {
            int sentences = 6 + R(12);
            for (int s = 0; s < sentences; s++) {
                int a = R(16), b = R(16), v = R(10), e = R(16), w = R(10), f = R(16);
                o += (size_t)sprintf(buf + o, "And the %s of the %s %s to the %s, and they %s with the %d of that %s.%s",
                                     nouns[a], nouns[b], verbs[v], nouns[e], verbs[w], d * 31 + s, nouns[f],
                                     s % 4 == 3 ? "\n\n" : "\n");
            }
        }
        char name[64];
        snprintf(name, sizeof name, "%s/doc%04d.txt", dir, d);
        write_file(name, buf, o);
        if (d % 7 == 3) { /* an exact copy and a near copy (one word changed) */
            snprintf(name, sizeof name, "%s/doc%04d_copy.txt", dir, d);
            write_file(name, buf, o);
            char *w = strstr(buf, "king");
            if (w) memcpy(w, "KONG", 4);
            snprintf(name, sizeof name, "%s/doc%04d_near.txt", dir, d);
            write_file(name, buf, o);
        }
    }
    free(buf);
#undef R
}

static void run_threads(const char *corpus, const char *out, int threads, size_t batch, size_t budget, lmf_report **r) {
    lmf_pipeline_config c;
    base_config(&c, out, corpus);
    c.threads = threads;
    c.batch_bytes = batch;
    c.exact.mem_budget = budget < 32768 ? 32768 : budget; /* the external sort needs 24 KiB */
    c.minhash.mem_budget = budget < 32768 ? 32768 : budget; /* its minimum is 24 KiB */
    c.gopher_quality.min_doc_words = 20;
    c.write_removed = 1;
    c.compress_kept = 1;
    lmf_status s = lmf_pipeline_run(&c, NULL, r);
    if (s != LMF_OK) fail_msg("run: %s", lmf_last_error());
    lmf_pipeline_config_free(&c);
}

static void test_threads_and_spill(void **st) {
    make_corpus("corp", 300);
    lmf_report *r1, *r2, *r3;
    run_threads("corp", "t1", 1, 1 << 20, 256 << 20, &r1);
    run_threads("corp", "t2", 2, 4096, 32768, &r2); /* tiny batches and dedup budgets: many batches, spilled runs */
    run_threads("corp", "t3", 3, 10000, 1 << 20, &r3);
    assert_true(r1->docs_read > 300);
    assert_true(r1->docs_out > 0 && r1->docs_out < r1->docs_read);
    assert_true(r1->stages[LMF_STAGE_EXACT_DEDUP].docs_removed > 0);
    assert_true(r1->stages[LMF_STAGE_MINHASH].docs_removed > 0);
    assert_true(r1->stages[LMF_STAGE_GOPHER_QUALITY].docs_removed > 0);
    assert_true(r2->spill_bytes > 0);
    uint64_t spills = 0;
    for (size_t i = 0; i < r2->stages[LMF_STAGE_MINHASH].n_counters; i++)
        if (!strcmp(r2->stages[LMF_STAGE_MINHASH].counters[i].name, "spilled_runs"))
            spills = r2->stages[LMF_STAGE_MINHASH].counters[i].value;
    assert_true(spills > 0); /* the deduplicator's own external sort spilled too */
    for (int s = 0; s < LMF_N_STAGES; s++) {
        assert_int_equal(r1->stages[s].docs_in, r2->stages[s].docs_in);
        assert_int_equal(r1->stages[s].docs_removed, r2->stages[s].docs_removed);
        assert_int_equal(r1->stages[s].docs_removed, r3->stages[s].docs_removed);
        assert_int_equal(r1->stages[s].bytes_kept, r3->stages[s].bytes_kept);
    }
    const char *files[] = {"kept.jsonl.zst", "removed.jsonl", "train.bin", "val.bin"};
    for (int f = 0; f < 4; f++) {
        size_t n1, n2, n3;
        char p[300];
        snprintf(p, sizeof p, "%s/%s", path_of("t1"), files[f]);
        char *a = slurp(p, &n1);
        snprintf(p, sizeof p, "%s/%s", path_of("t2"), files[f]);
        char *b = slurp(p, &n2);
        snprintf(p, sizeof p, "%s/%s", path_of("t3"), files[f]);
        char *c = slurp(p, &n3);
        assert_non_null(a);
        if (n1 != n2 || memcmp(a, b, n1) || n1 != n3 || memcmp(a, c, n1)) fail_msg("%s differs across thread counts", files[f]);
        free(a), free(b), free(c);
    }
    /* no temporary file is left in the output folder */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s | grep -v -e kept.jsonl.zst -e removed.jsonl -e report.json -e train.bin -e val.bin)\"",
             path_of("t2"));
    assert_int_equal(system(cmd), 0);
    lmf_report_free(r1), lmf_report_free(r2), lmf_report_free(r3);
    free(r1), free(r2), free(r3);
}

static void test_config(void **st) {
    const char *text = "[input]\npaths = [\"x\"]\nsplit = \"blank_line\"\n[gopher_quality]\nmin_doc_words = 20\n"
                       "stop_words = [\"the\", \"and\"]\n[gopher_repetition]\ntop_n_grams = [[2, 0.5]]\n[c4]\nenabled = false\n"
                       "[minhash]\nverify_threshold = 0.8\nmem_budget_mb = 16\n";
    lmf_toml *t;
    assert_int_equal(lmf_toml_parse(text, strlen(text), "p.toml", &t), LMF_OK);
    lmf_pipeline_config c;
    lmf_pipeline_config_default(&c);
    assert_int_equal(lmf_pipeline_config_apply(&c, t), LMF_OK);
    lmf_toml_free(t);
    assert_int_equal(c.split, LMF_SPLIT_BLANK_LINE);
    assert_int_equal(c.gopher_quality.min_doc_words, 20);
    assert_int_equal(c.gopher_quality.n_stop_words, 2);
    assert_string_equal(c.gopher_quality.stop_words[1], "and");
    assert_int_equal(c.gopher_repetition.n_top, 1);
    assert_true(c.gopher_repetition.top[0].frac == 0.5);
    assert_int_equal(c.enabled[LMF_STAGE_C4], 0);
    assert_true(c.minhash.verify_threshold == 0.8);
    assert_int_equal(c.minhash.mem_budget, (size_t)16 << 20);
    assert_int_equal(lmf_pipeline_config_set(&c, "fineweb.short_line_thr=0.5"), LMF_OK);
    assert_true(c.fineweb.short_line_thr == 0.5);
    assert_int_equal(lmf_pipeline_config_set(&c, "input.format=jsonl"), LMF_OK);
    assert_int_equal(c.format, LMF_FORMAT_JSONL);
    assert_int_equal(lmf_pipeline_config_set(&c, "input.format=xml"), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "expected one of"));
    assert_int_equal(lmf_pipeline_config_set(&c, "fineweb.short_line_thr=2"), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "out of range"));
    /* the config written back reads back to the same config */
    char *w = NULL;
    size_t wn = 0;
    FILE *f = open_memstream(&w, &wn);
    lmf_pipeline_config_write(&c, f);
    fclose(f);
    assert_int_equal(lmf_toml_parse(w, wn, "written", &t), LMF_OK);
    lmf_pipeline_config c2;
    lmf_pipeline_config_default(&c2);
    assert_int_equal(lmf_pipeline_config_apply(&c2, t), LMF_OK);
    lmf_toml_free(t);
    char *w2 = NULL;
    size_t wn2 = 0;
    f = open_memstream(&w2, &wn2);
    lmf_pipeline_config_write(&c2, f);
    fclose(f);
    assert_string_equal(w, w2);
    free(w), free(w2);
    lmf_pipeline_config_free(&c2);
    lmf_pipeline_config_free(&c);
    /* errors name the place */
    const char *bad[][2] = {
        {"[gopher_qualty]\nmin_doc_words = 3\n", "p.toml:1:1: unknown table [gopher_qualty]"},
        {"[c4]\nmin_num_sentence = 3\n", "p.toml:2:1: unknown key 'min_num_sentence' in [c4]"},
        {"[length]\nmin_chars = -1\n", "p.toml:2:13: length.min_chars = -1 is out of range"},
        {"[shard]\nval_fraction = \"x\"\n", "p.toml:2:16: shard.val_fraction: expected a number, got a string"},
        {"[input]\nsplit = \"para\"\n", "p.toml:2:9: input.split = \"para\": expected one of"},
        {"[gopher_repetition]\ndup_n_grams = [[5, 2.0]]\n", "p.toml:2:16: gopher_repetition.dup_n_grams[0]: fraction"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(lmf_toml_parse(bad[i][0], strlen(bad[i][0]), "p.toml", &t), LMF_OK);
        lmf_pipeline_config_default(&c);
        assert_int_equal(lmf_pipeline_config_apply(&c, t), LMF_ERR_ARG);
        if (!strstr(lmf_last_error(), bad[i][1])) fail_msg("'%s' lacks '%s'", lmf_last_error(), bad[i][1]);
        lmf_toml_free(t);
        lmf_pipeline_config_free(&c);
    }
}

/* configs/pipeline.toml says it lists every option with its default: its tables, from [input] on, are exactly what
 * the built-in defaults write (the example's input paths and output folder aside), so no value can drift from the
 * default it documents (issue 17: it once set minhash.verify_threshold = 0.0 against the default 0.8). */
static void test_example_config_is_the_defaults(void **st) {
    size_t n = 0;
    char *file = slurp(LMF_SOURCE_DIR "/configs/pipeline.toml", &n);
    assert_non_null(file);
    lmf_toml *t;
    assert_int_equal(lmf_toml_parse(file, n, "configs/pipeline.toml", &t), LMF_OK);
    lmf_pipeline_config ex, def;
    lmf_pipeline_config_default(&ex);
    assert_int_equal(lmf_pipeline_config_apply(&ex, t), LMF_OK);
    lmf_toml_free(t);
    lmf_pipeline_config_default(&def);
    assert_true(ex.n_inputs > 0 && ex.out_dir); /* the example's own values, carried over */
    for (size_t i = 0; i < ex.n_inputs; i++) lmf_strlist_push(&def.inputs, &def.n_inputs, ex.inputs[i]);
    def.out_dir = strdup(ex.out_dir);
    char *w = NULL;
    size_t wn = 0;
    FILE *f = open_memstream(&w, &wn);
    lmf_pipeline_config_write(&def, f);
    fclose(f);
    const char *body = strstr(file, "\n[input]\n");
    assert_non_null(body);
    body++;
    if (strcmp(body, w)) { /* name the first line that differs */
        const char *a = body, *b = w;
        while (*a && *a == *b) a++, b++;
        while (a > body && a[-1] != '\n') a--, b--;
        fail_msg("configs/pipeline.toml differs from the defaults at\n  file:    %.*s\n  default: %.*s",
                 (int)strcspn(a, "\n"), a, (int)strcspn(b, "\n"), b);
    }
    free(w);
    free(file);
    lmf_pipeline_config_free(&ex);
    lmf_pipeline_config_free(&def);
}

static void test_shard_splitter_matches_data_shard(void **st) {
    /* the splitter cuts blocks and sends each to val with probability val_fraction, seeded: reproducible */
    lmf_shard_splitter a, b;
    mkdir(path_of("sp1"), 0755);
    mkdir(path_of("sp2"), 0755);
    assert_int_equal(lmf_shard_splitter_open(&a, path_of("sp1"), NULL, 0.3, 10, 42), LMF_OK);
    assert_int_equal(lmf_shard_splitter_open(&b, path_of("sp2"), NULL, 0.3, 10, 42), LMF_OK);
    int32_t ids[1000];
    for (int i = 0; i < 1000; i++) ids[i] = i % 256;
    assert_int_equal(lmf_shard_splitter_doc(&a, ids, 1000), LMF_OK);
    for (int i = 0; i < 1000; i += 7) /* fed in odd pieces: the same blocks */
        assert_int_equal(lmf_shard_splitter_put(&b, (const uint32_t *)ids + i, i + 7 <= 1000 ? 7 : 1000 - (size_t)i), LMF_OK);
    assert_int_equal(lmf_shard_splitter_put(&b, &b.eot, 1), LMF_OK);
    assert_int_equal(lmf_shard_splitter_close(&a), LMF_OK);
    assert_int_equal(lmf_shard_splitter_close(&b), LMF_OK);
    assert_int_equal(a.n_train + a.n_val, 1001);
    assert_true(a.n_val > 0 && a.n_train > a.n_val);
    assert_int_equal(a.n_train, b.n_train);
    assert_int_equal(lmf_shard_splitter_open(&a, path_of("sp1"), NULL, 1.5, 10, 42), LMF_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_text_modes),
        cmocka_unit_test(test_reader_jsonl_zstd),
        cmocka_unit_test(test_reader_nul_bytes),
        cmocka_unit_test(test_exact_dedup_and_reasons),
        cmocka_unit_test(test_dedup_twins_named_and_counted),
        cmocka_unit_test(test_pipeline_nul_bytes),
        cmocka_unit_test(test_invalid_utf8_without_normalize),
        cmocka_unit_test(test_threads_and_spill),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_example_config_is_the_defaults),
        cmocka_unit_test(test_shard_splitter_matches_data_shard),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
