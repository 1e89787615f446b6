/* pipeline.c — the data pipeline driver (pipeline.h): the configuration (an option table mapping TOML keys onto the
 * stages' config structs), the shard splitter shared with `data shard`, the threaded batch engine and the run. */
#include "data/pipeline.h"

#include "data/output_set.h"

#include "core/alloc.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/status.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void lmf_strlist_push(char ***list, size_t *n, const char *s) {
    char **l = realloc(*list, (*n + 1) * sizeof *l);
    if (!l) abort();
    l[*n] = strdup(s);
    *list = l;
    (*n)++;
}

void lmf_strlist_free(char ***list, size_t *n) {
    for (size_t i = 0; i < *n; i++) free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

void lmf_pipeline_config_default(lmf_pipeline_config *c) {
    memset(c, 0, sizeof *c);
    c->format = LMF_FORMAT_AUTO;
    c->text_field = strdup("text");
    c->split = LMF_SPLIT_FILE;
    c->separator = strdup("%");
    c->max_doc_bytes = (size_t)64 << 20;
    c->out_dir = NULL;
    c->write_kept = 1;
    c->zstd_level = 3;
    c->threads = 0;
    c->batch_bytes = (size_t)4 << 20;
    c->progress = 1;
    c->examples = 3;
    c->example_chars = 200;
    for (int i = 0; i < LMF_N_STAGES; i++) c->enabled[i] = 1;
    lmf_normalize_defaults(&c->normalize);
    lmf_length_defaults(&c->length);
    lmf_gopher_quality_defaults(&c->gopher_quality);
    lmf_gopher_repetition_defaults(&c->gopher_repetition);
    lmf_c4_defaults(&c->c4);
    lmf_fineweb_defaults(&c->fineweb);
    lmf_toxicity_defaults(&c->toxicity);
    c->toxicity_default_list = 1;
    lmf_pii_defaults(&c->pii);
    lmf_exact_dedup_config_default(&c->exact);
    lmf_minhash_config_default(&c->minhash);
    c->val_fraction = 0.05;
    c->block = 16384;
    c->seed = 1337;
}

void lmf_pipeline_config_free(lmf_pipeline_config *c) {
    lmf_strlist_free(&c->inputs, &c->n_inputs);
    lmf_strlist_free(&c->include, &c->n_include);
    lmf_strlist_free(&c->exclude, &c->n_exclude);
    lmf_strlist_free(&c->stop_words, &c->n_stop_words);
    lmf_strlist_free(&c->blocklists, &c->n_blocklists);
    lmf_strlist_free(&c->email_replacements, &c->n_email_replacements);
    lmf_strlist_free(&c->ip_replacements, &c->n_ip_replacements);
    LMF_FREE_ALL(c->text_field, c->id_field, c->separator, c->out_dir, c->tmp_dir, c->ipv6_replacement,
                 c->phone_replacement, c->tokenizer);
    memset(c, 0, sizeof *c);
}

/* ---------------------------------------------------------------- the option table */

typedef enum { O_BOOL, O_INT, O_SIZE, O_U32, O_U64, O_F64, O_STR, O_LIST, O_ENUM, O_MIB, O_NGRAMS } otype;

typedef struct {
    const char *table, *key;
    otype type;
    size_t off, off2; /* off2: count of an O_LIST / O_NGRAMS */
    double lo, hi;
    const char *const *names; /* O_ENUM */
    const char *doc;
} opt;

static const char *const format_names[] = {"auto", "text", "jsonl", NULL};
static const char *const split_names[] = {"file", "blank_line", "line", "separator", NULL};

#define OFF(f) offsetof(lmf_pipeline_config, f)
/* the section name spelled out (an element of stage_names is not a constant expression in ISO C, clang refuses it) */
#define EN(s, name) {name, "enabled", O_BOOL, OFF(enabled[s]), 0, 0, 1, NULL, "run this stage"}
#define IMAX 2147483647.0
static const opt opts[] = {
    {"input", "paths", O_LIST, OFF(inputs), OFF(n_inputs), 0, 0, NULL,
     "files and folders (walked recursively, in name order); \"-\" is stdin"},
    {"input", "format", O_ENUM, OFF(format), 0, 0, 0, format_names,
     "auto: .jsonl/.ndjson/.json (optionally .zst) are JSONL, the rest text; or \"text\", \"jsonl\""},
    {"input", "text_field", O_STR, OFF(text_field), 0, 0, 0, NULL, "JSONL: the field holding the document"},
    {"input", "id_field", O_STR, OFF(id_field), 0, 0, 0, NULL, "JSONL: a field naming the document (\"\": file:line)"},
    {"input", "split", O_ENUM, OFF(split), 0, 0, 0, split_names,
     "text: one document per file, per blank_line-separated block, per line, or per separator-ended block"},
    {"input", "separator", O_STR, OFF(separator), 0, 0, 0, NULL,
     "split = \"separator\": a line equal to this ends a document (fortune files: \"%\")"},
    {"input", "include", O_LIST, OFF(include), OFF(n_include), 0, 0, NULL,
     "glob patterns on file names inside folders ([]: every file)"},
    {"input", "exclude", O_LIST, OFF(exclude), OFF(n_exclude), 0, 0, NULL, "glob patterns of file names to skip"},
    {"input", "max_doc_mb", O_MIB, OFF(max_doc_bytes), 0, 1, 4096, NULL,
     "longer documents are reported as malformed (too_large) and skipped"},

    {"output", "dir", O_STR, OFF(out_dir), 0, 0, 0, NULL, "output folder (created if missing)"},
    {"output", "kept", O_BOOL, OFF(write_kept), 0, 0, 1, NULL, "write the kept documents to kept.jsonl"},
    {"output", "compress", O_BOOL, OFF(compress_kept), 0, 0, 1, NULL, "zstd-compress it (kept.jsonl.zst)"},
    {"output", "zstd_level", O_INT, OFF(zstd_level), 0, 1, 19, NULL, "zstd level of kept.jsonl.zst"},
    {"output", "removed", O_BOOL, OFF(write_removed), 0, 0, 1, NULL,
     "also write removed.jsonl: every removed document with its stage and reason"},

    {"run", "threads", O_INT, OFF(threads), 0, 0, 1024, NULL, "worker threads; 0: all cores (OMP_NUM_THREADS)"},
    {"run", "batch_kb", O_SIZE, OFF(batch_bytes), 0, 4, 1 << 20, NULL,
     "documents are handed to the workers in batches of about this many kB"},
    {"run", "progress", O_BOOL, OFF(progress), 0, 0, 1, NULL, "progress bar on stderr"},
    {"run", "examples", O_INT, OFF(examples), 0, 0, 1000, NULL, "removed-document examples kept per reason"},
    {"run", "example_chars", O_INT, OFF(example_chars), 0, 1, 100000, NULL, "characters shown of each example"},
    {"run", "tmp_dir", O_STR, OFF(tmp_dir), 0, 0, 0, NULL,
     "spill and deduplication temporary files (\"\": the output folder)"},

    EN(LMF_STAGE_NORMALIZE, "normalize"),
    {"normalize", "nfc", O_BOOL, OFF(normalize.nfc), 0, 0, 1, NULL, "Unicode NFC (invalid UTF-8 is always repaired)"},
    {"normalize", "remove_controls", O_BOOL, OFF(normalize.remove_controls), 0, 0, 1, NULL,
     "drop C0/C1 controls and DEL except \\n and \\t"},
    {"normalize", "fix_line_endings", O_BOOL, OFF(normalize.fix_line_endings), 0, 0, 1, NULL, "\\r\\n and \\r -> \\n"},
    {"normalize", "strip_trailing", O_BOOL, OFF(normalize.strip_trailing), 0, 0, 1, NULL,
     "remove whitespace at line ends"},
    {"normalize", "max_blank_lines", O_INT, OFF(normalize.max_blank_lines), 0, -1, IMAX, NULL,
     "cut runs of blank lines to this many (-1: keep)"},
    {"normalize", "trim", O_BOOL, OFF(normalize.trim), 0, 0, 1, NULL,
     "remove blank lines and whitespace at the document's start and end"},

    EN(LMF_STAGE_LENGTH, "length"),
    {"length", "min_chars", O_SIZE, OFF(length.min_chars), 0, 0, 1e15, NULL,
     "fewer characters (code points): length_too_short (0: off)"},
    {"length", "max_chars", O_SIZE, OFF(length.max_chars), 0, 0, 1e15, NULL, "more: length_too_long (0: off)"},

    EN(LMF_STAGE_GOPHER_QUALITY, "gopher_quality"),
    {"gopher_quality", "min_doc_words", O_INT, OFF(gopher_quality.min_doc_words), 0, 0, IMAX, NULL,
     "fewer non-symbol words: gopher_short_doc (0: off, as every threshold here)"},
    {"gopher_quality", "max_doc_words", O_INT, OFF(gopher_quality.max_doc_words), 0, 0, IMAX, NULL, "gopher_long_doc"},
    {"gopher_quality", "min_avg_word_length", O_F64, OFF(gopher_quality.min_avg_word_length), 0, 0, 1e9, NULL,
     "gopher_below_avg_threshold"},
    {"gopher_quality", "max_avg_word_length", O_F64, OFF(gopher_quality.max_avg_word_length), 0, 0, 1e9, NULL,
     "gopher_above_avg_threshold"},
    {"gopher_quality", "max_symbol_word_ratio", O_F64, OFF(gopher_quality.max_symbol_word_ratio), 0, 0, 1e9, NULL,
     "'#' or '...' per word: gopher_too_many_hashes / gopher_too_many_ellipsis"},
    {"gopher_quality", "max_bullet_lines_ratio", O_F64, OFF(gopher_quality.max_bullet_lines_ratio), 0, 0, 1, NULL,
     "gopher_too_many_bullets"},
    {"gopher_quality", "max_ellipsis_lines_ratio", O_F64, OFF(gopher_quality.max_ellipsis_lines_ratio), 0, 0, 1, NULL,
     "gopher_too_many_end_ellipsis"},
    {"gopher_quality", "max_non_alpha_words_ratio", O_F64, OFF(gopher_quality.max_non_alpha_words_ratio), 0, 0, 1,
     NULL, "share of words with a letter below this: gopher_below_alpha_threshold"},
    {"gopher_quality", "min_stop_words", O_INT, OFF(gopher_quality.min_stop_words), 0, 0, IMAX, NULL,
     "gopher_enough_stop_words"},
    {"gopher_quality", "stop_words", O_LIST, OFF(stop_words), OFF(n_stop_words), 0, 0, NULL,
     "[]: the, be, to, of, and, that, have, with"},

    EN(LMF_STAGE_GOPHER_REPETITION, "gopher_repetition"),
    {"gopher_repetition", "dup_para_frac", O_F64, OFF(gopher_repetition.dup_para_frac), 0, 0, 1, NULL,
     "duplicated paragraphs / paragraphs"},
    {"gopher_repetition", "dup_para_char_frac", O_F64, OFF(gopher_repetition.dup_para_char_frac), 0, 0, 1, NULL,
     "characters in duplicated paragraphs / characters"},
    {"gopher_repetition", "dup_line_frac", O_F64, OFF(gopher_repetition.dup_line_frac), 0, 0, 1, NULL,
     "duplicated lines / lines"},
    {"gopher_repetition", "dup_line_char_frac", O_F64, OFF(gopher_repetition.dup_line_char_frac), 0, 0, 1, NULL,
     "characters in duplicated lines / characters"},
    {"gopher_repetition", "top_n_grams", O_NGRAMS, OFF(gopher_repetition.top), OFF(gopher_repetition.n_top), 0, 8,
     NULL, "[n, fraction] pairs: characters of the most frequent n-gram (top_N_gram)"},
    {"gopher_repetition", "dup_n_grams", O_NGRAMS, OFF(gopher_repetition.dup), OFF(gopher_repetition.n_dup), 0, 16,
     NULL, "[n, fraction] pairs: characters in repeated n-grams (duplicated_N_n_grams)"},

    EN(LMF_STAGE_C4, "c4"),
    {"c4", "remove_citations", O_BOOL, OFF(c4.remove_citations), 0, 0, 1, NULL, "remove [1], [edit], [citation needed]"},
    {"c4", "filter_no_terminal_punct", O_BOOL, OFF(c4.filter_no_terminal_punct), 0, 0, 1, NULL,
     "drop lines not ending in terminal punctuation"},
    {"c4", "min_num_sentences", O_INT, OFF(c4.min_num_sentences), 0, -1, IMAX, NULL,
     "fewer sentences: too_few_sentences (-1: off)"},
    {"c4", "min_words_per_line", O_INT, OFF(c4.min_words_per_line), 0, -1, IMAX, NULL,
     "drop lines with fewer words (-1: off)"},
    {"c4", "max_word_length", O_INT, OFF(c4.max_word_length), 0, -1, IMAX, NULL,
     "drop lines with a longer word (-1: off)"},
    {"c4", "filter_lorem_ipsum", O_BOOL, OFF(c4.filter_lorem_ipsum), 0, 0, 1, NULL, "lorem_ipsum"},
    {"c4", "filter_javascript", O_BOOL, OFF(c4.filter_javascript), 0, 0, 1, NULL, "drop lines mentioning javascript"},
    {"c4", "filter_curly_bracket", O_BOOL, OFF(c4.filter_curly_bracket), 0, 0, 1, NULL, "curly_bracket"},
    {"c4", "filter_policy", O_BOOL, OFF(c4.filter_policy), 0, 0, 1, NULL,
     "drop lines with terms-of-use / privacy / cookie phrases"},

    EN(LMF_STAGE_FINEWEB, "fineweb"),
    {"fineweb", "line_punct_thr", O_F64, OFF(fineweb.line_punct_thr), 0, 0, 1, NULL,
     "share of lines ending in terminal punctuation below this: line_punct_ratio"},
    {"fineweb", "line_punct_exclude_zero", O_BOOL, OFF(fineweb.line_punct_exclude_zero), 0, 0, 1, NULL,
     "keep documents where that share is exactly 0"},
    {"fineweb", "short_line_thr", O_F64, OFF(fineweb.short_line_thr), 0, 0, 1, NULL,
     "share of short lines above this: short_line_ratio"},
    {"fineweb", "short_line_length", O_INT, OFF(fineweb.short_line_length), 0, 0, IMAX, NULL,
     "a short line has at most this many characters"},
    {"fineweb", "char_duplicates_ratio", O_F64, OFF(fineweb.char_duplicates_ratio), 0, 0, 1, NULL,
     "characters in duplicated lines above this: char_dup_ratio"},
    {"fineweb", "new_line_ratio", O_F64, OFF(fineweb.new_line_ratio), 0, 0, 1e9, NULL,
     "newlines per word above this: list_ratio"},

    EN(LMF_STAGE_TOXICITY, "toxicity"),
    {"toxicity", "default_list", O_BOOL, OFF(toxicity_default_list), 0, 0, 1, NULL, "use the embedded English blocklist"},
    {"toxicity", "lists", O_LIST, OFF(blocklists), OFF(n_blocklists), 0, 0, NULL,
     "more blocklist files: one term per line, '#' comments"},
    {"toxicity", "max_matches_per_word", O_F64, OFF(toxicity.max_matches_per_word), 0, 0, 1e9, NULL,
     "drop (toxic_words) when matches / words exceeds this"},
    {"toxicity", "min_matches", O_INT, OFF(toxicity.min_matches), 0, 0, IMAX, NULL, "... and there are at least this many"},

    EN(LMF_STAGE_PII, "pii"),
    {"pii", "emails", O_BOOL, OFF(pii.emails), 0, 0, 1, NULL, "mask e-mail addresses"},
    {"pii", "ipv4", O_BOOL, OFF(pii.ipv4), 0, 0, 1, NULL, "mask IPv4 addresses"},
    {"pii", "ipv6", O_BOOL, OFF(pii.ipv6), 0, 0, 1, NULL, "mask IPv6 addresses"},
    {"pii", "phones", O_BOOL, OFF(pii.phones), 0, 0, 1, NULL, "mask phone numbers"},
    {"pii", "only_public_ips", O_BOOL, OFF(pii.only_public_ips), 0, 0, 1, NULL,
     "leave private, loopback, link-local and documentation addresses alone"},
    {"pii", "email_replacements", O_LIST, OFF(email_replacements), OFF(n_email_replacements), 0, 0, NULL,
     "[]: email@example.com, firstname.lastname@example.org"},
    {"pii", "ip_replacements", O_LIST, OFF(ip_replacements), OFF(n_ip_replacements), 0, 0, NULL,
     "[]: datatrove's six IPv4 addresses"},
    {"pii", "ipv6_replacement", O_STR, OFF(ipv6_replacement), 0, 0, 0, NULL, "\"\": 2001:db8::1"},
    {"pii", "phone_replacement", O_STR, OFF(phone_replacement), 0, 0, 0, NULL, "\"\": 555-0100"},

    EN(LMF_STAGE_EXACT_DEDUP, "exact_dedup"),
    {"exact_dedup", "lowercase", O_BOOL, OFF(exact.lowercase), 0, 0, 1, NULL, "hash the lowercased text"},
    {"exact_dedup", "collapse_whitespace", O_BOOL, OFF(exact.collapse_whitespace), 0, 0, 1, NULL,
     "hash with whitespace runs collapsed and trimmed"},
    {"exact_dedup", "mem_budget_mb", O_MIB, OFF(exact.mem_budget), 0, 1, 1 << 20, NULL,
     "hash records kept in RAM before spilling sorted runs to disk"},

    EN(LMF_STAGE_MINHASH, "minhash"),
    {"minhash", "n_grams", O_INT, OFF(minhash.n_grams), 0, 1, 64, NULL, "word n-gram shingles"},
    {"minhash", "num_buckets", O_INT, OFF(minhash.num_buckets), 0, 1, LMF_MINHASH_MAX_HASHES, NULL, "LSH bands"},
    {"minhash", "hashes_per_bucket", O_INT, OFF(minhash.hashes_per_bucket), 0, 1, LMF_MINHASH_MAX_HASHES, NULL,
     "rows per band (num_buckets * hashes_per_bucket hashes)"},
    {"minhash", "seed", O_U32, OFF(minhash.seed), 0, 0, 4294967295.0, NULL, "seed of the hash functions"},
    {"minhash", "verify_threshold", O_F64, OFF(minhash.verify_threshold), 0, 0, 1, NULL,
     "0: every band collision links (datatrove); > 0: only pairs with estimated Jaccard >= this"},
    {"minhash", "verify_window", O_INT, OFF(minhash.verify_window), 0, 1, 1 << 20, NULL,
     "groups per band bucket a document is verified against"},
    {"minhash", "verify_sketch", O_INT, OFF(minhash.verify_sketch), 0, 0, LMF_MINHASH_MAX_SKETCH, NULL,
     "bottom-k sketch size for verification (0: the signature)"},
    {"minhash", "mem_budget_mb", O_MIB, OFF(minhash.mem_budget), 0, 1, 1 << 20, NULL,
     "band records kept in RAM before spilling sorted runs to disk"},

    EN(LMF_STAGE_SHARD, "shard"),
    {"shard", "tokenizer", O_STR, OFF(tokenizer), 0, 0, 0, NULL,
     "tokenizer.json / GPT-2 folder / GGUF with <|endoftext|> (\"\": bytes, vocabulary 257)"},
    {"shard", "val_fraction", O_F64, OFF(val_fraction), 0, 0, 0.999999, NULL, "share of blocks for val.bin"},
    {"shard", "block", O_SIZE, OFF(block), 0, 1, 1e12, NULL, "block size in tokens for the train/val split"},
    {"shard", "seed", O_U64, OFF(seed), 0, 0, 1.8e19, NULL, "seed of the split"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

static int known_table(const char *t) {
    for (size_t i = 0; i < N_OPTS; i++)
        if (!strcmp(opts[i].table, t)) return 1;
    return 0;
}

static lmf_status apply_opt(lmf_pipeline_config *c, lmf_toml *t, lmf_toml_table *tb, const opt *o) {
    char *base = (char *)c;
    void *p = base + o->off;
    lmf_toml_kv *kv = NULL;
    for (size_t i = 0; tb && i < tb->n; i++)
        if (!strcmp(tb->kv[i].key, o->key)) kv = &tb->kv[i];
    if (!kv) return LMF_OK;
    switch (o->type) {
    case O_BOOL: return lmf_toml_get_bool(t, tb, o->key, (int *)p);
    case O_INT: {
        int64_t v = *(int *)p;
        LMF_TRY(lmf_toml_get_int(t, tb, o->key, (int64_t)o->lo, (int64_t)o->hi, &v));
        *(int *)p = (int)v;
        return LMF_OK;
    }
    case O_U32: {
        int64_t v = *(uint32_t *)p;
        LMF_TRY(lmf_toml_get_int(t, tb, o->key, (int64_t)o->lo, (int64_t)o->hi, &v));
        *(uint32_t *)p = (uint32_t)v;
        return LMF_OK;
    }
    case O_U64: {
        int64_t v = (int64_t)*(uint64_t *)p;
        LMF_TRY(lmf_toml_get_int(t, tb, o->key, 0, INT64_MAX, &v));
        *(uint64_t *)p = (uint64_t)v;
        return LMF_OK;
    }
    case O_SIZE:
    case O_MIB: {
        size_t *sp = p;
        int is_kb = o->type == O_SIZE && !strcmp(o->key, "batch_kb");
        int shift = o->type == O_MIB ? 20 : is_kb ? 10 : 0;
        int64_t v = (int64_t)(*sp >> shift);
        LMF_TRY(lmf_toml_get_int(t, tb, o->key, (int64_t)o->lo, (int64_t)o->hi, &v));
        *sp = (size_t)v << shift;
        return LMF_OK;
    }
    case O_F64: return lmf_toml_get_float(t, tb, o->key, o->lo, o->hi, (double *)p);
    case O_STR: {
        const char *s = NULL;
        LMF_TRY(lmf_toml_get_string(t, tb, o->key, &s));
        char **sp = p;
        free(*sp);
        *sp = s && *s ? strdup(s) : NULL;
        return LMF_OK;
    }
    case O_ENUM: {
        const char *s = NULL;
        LMF_TRY(lmf_toml_get_string(t, tb, o->key, &s));
        for (int i = 0; o->names[i]; i++)
            if (!strcmp(o->names[i], s)) {
                *(int *)p = i;
                return LMF_OK;
            }
        char allowed[256] = "";
        for (int i = 0; o->names[i]; i++)
            snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s\"%s\"", i ? ", " : "",
                     o->names[i]);
        return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: %s.%s = \"%s\": expected one of %s", t->origin, kv->val.line,
                        kv->val.col, o->table, o->key, s, allowed);
    }
    case O_LIST: {
        const lmf_toml_value *a = NULL;
        LMF_TRY(lmf_toml_get_array(t, tb, o->key, LMF_TOML_STRING, &a));
        char ***lp = p;
        size_t *np = (size_t *)(base + o->off2);
        lmf_strlist_free(lp, np);
        for (size_t i = 0; i < a->u.arr.n; i++) lmf_strlist_push(lp, np, a->u.arr.items[i].u.str.s);
        return LMF_OK;
    }
    case O_NGRAMS: {
        const lmf_toml_value *a = NULL;
        LMF_TRY(lmf_toml_get_array(t, tb, o->key, LMF_TOML_ARRAY, &a));
        if (a->u.arr.n > (size_t)o->hi)
            return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: %s.%s: at most %d pairs", t->origin, kv->val.line, kv->val.col,
                            o->table, o->key, (int)o->hi);
        lmf_ngram_frac *arr = p;
        for (size_t i = 0; i < a->u.arr.n; i++) {
            const lmf_toml_value *it = &a->u.arr.items[i];
            const lmf_toml_value *x = it->u.arr.items;
            if (it->u.arr.n != 2 || x[0].type != LMF_TOML_INT || x[0].u.i < 1 || x[0].u.i > 16 ||
                !(x[1].type == LMF_TOML_FLOAT || x[1].type == LMF_TOML_INT))
                return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: %s.%s[%zu]: expected [n, fraction] with n in 1..16", t->origin,
                                it->line, it->col, o->table, o->key, i);
            double f = x[1].type == LMF_TOML_FLOAT ? x[1].u.f : (double)x[1].u.i;
            if (!(f >= 0 && f <= 1))
                return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: %s.%s[%zu]: fraction %g is outside [0, 1]", t->origin,
                                it->line, it->col, o->table, o->key, i, f);
            arr[i].n = (int)x[0].u.i;
            arr[i].frac = f;
        }
        *(int *)(base + o->off2) = (int)a->u.arr.n;
        return LMF_OK;
    }
    }
    return LMF_OK;
}

/* Wires the owned string lists into the stage structs' pointers (after every change). */
static void wire(lmf_pipeline_config *c) {
    c->gopher_quality.stop_words = c->n_stop_words ? (const char *const *)c->stop_words : NULL;
    c->gopher_quality.n_stop_words = c->n_stop_words;
    c->pii.email_replacements = c->n_email_replacements ? (const char *const *)c->email_replacements : NULL;
    c->pii.n_email_replacements = c->n_email_replacements;
    c->pii.ip_replacements = c->n_ip_replacements ? (const char *const *)c->ip_replacements : NULL;
    c->pii.n_ip_replacements = c->n_ip_replacements;
    c->pii.ipv6_replacement = c->ipv6_replacement;
    c->pii.phone_replacement = c->phone_replacement;
}

lmf_status lmf_pipeline_config_apply(lmf_pipeline_config *c, lmf_toml *t) {
    for (size_t i = 0; i < t->n; i++) {
        lmf_toml_table *tb = &t->tables[i];
        if (!*tb->name && !tb->n) continue;
        if (!known_table(tb->name))
            return lmf_fail(LMF_ERR_ARG, "%s:%d:%d: unknown table [%s] (tables: input, output, run and the stages: "
                                         "normalize, length, gopher_quality, gopher_repetition, c4, fineweb, toxicity, "
                                         "pii, exact_dedup, minhash, shard)",
                            t->origin, tb->line, tb->col, *tb->name ? tb->name : "top level");
        lmf_toml_table_get(t, tb->name);
    }
    for (size_t i = 0; i < N_OPTS; i++) {
        lmf_toml_table *tb = NULL;
        for (size_t k = 0; k < t->n; k++)
            if (!strcmp(t->tables[k].name, opts[i].table)) tb = &t->tables[k];
        if (tb) LMF_TRY(apply_opt(c, t, tb, &opts[i]));
    }
    wire(c);
    return lmf_toml_check_used(t);
}

lmf_status lmf_pipeline_config_set(lmf_pipeline_config *c, const char *a) {
    const char *dot = strchr(a, '.'), *eq = strchr(a, '=');
    if (!dot || !eq || dot > eq)
        return lmf_fail(LMF_ERR_ARG, "--set '%s': expected table.key=value (e.g. gopher_quality.min_doc_words=20)", a);
    /* a bare word (not a TOML value) is taken as a string */
    const char *v = eq + 1;
    while (*v == ' ') v++;
    int bare = *v && *v != '"' && *v != '\'' && *v != '[' && !(*v >= '0' && *v <= '9') && *v != '-' && *v != '+' &&
               strcmp(v, "true") && strcmp(v, "false") && strcmp(v, "inf") && strcmp(v, "nan");
    size_t n = strlen(a) + 64;
    char *doc = malloc(n);
    if (!doc) abort();
    snprintf(doc, n, "[%.*s]\n%.*s = %s%s%s\n", (int)(dot - a), a, (int)(eq - dot - 1), dot + 1, bare ? "'" : "", v,
             bare ? "'" : "");
    lmf_toml *t;
    lmf_status s = lmf_toml_parse(doc, strlen(doc), "--set", &t);
    free(doc);
    if (s != LMF_OK) return lmf_fail(s, "--set '%s': %s", a, lmf_last_error());
    s = lmf_pipeline_config_apply(c, t);
    lmf_toml_free(t);
    if (s != LMF_OK) return lmf_fail(s, "--set '%s': %s", a, lmf_last_error());
    return LMF_OK;
}


void lmf_pipeline_config_write(const lmf_pipeline_config *c, FILE *f) {
    const char *table = "";
    const char *base = (const char *)c;
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt *o = &opts[i];
        if (strcmp(table, o->table)) {
            fprintf(f, "%s[%s]\n", *table ? "\n" : "", o->table);
            table = o->table;
        }
        const void *p = base + o->off;
        char val[1024];
        FILE *m = fmemopen(val, sizeof val, "w");
        switch (o->type) {
        case O_BOOL: fputs(*(const int *)p ? "true" : "false", m); break;
        case O_INT: fprintf(m, "%d", *(const int *)p); break;
        case O_U32: fprintf(m, "%u", *(const uint32_t *)p); break;
        case O_U64: fprintf(m, "%llu", (unsigned long long)*(const uint64_t *)p); break;
        case O_SIZE:
            fprintf(m, "%zu", !strcmp(o->key, "batch_kb") ? *(const size_t *)p >> 10 : *(const size_t *)p);
            break;
        case O_MIB: fprintf(m, "%zu", *(const size_t *)p >> 20); break;
        case O_F64: {
            double d = *(const double *)p;
            if (d == (double)(long long)d && d < 1e15 && d > -1e15) {
                fprintf(m, "%.1f", d);
                break;
            }
            /* the shortest form that reads back to the same double: 0.8, not 0.80000000000000004 */
            char g[40];
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(g, sizeof g, "%.*g", prec, d);
                if (strtod(g, NULL) == d) break;
            }
            fputs(g, m);
            break;
        }
        case O_STR: lmf_json_write_string(m, *(char *const *)p); break; /* TOML basic strings take JSON's escapes */
        case O_ENUM: fprintf(m, "\"%s\"", o->names[*(const int *)p]); break;
        case O_LIST: {
            char *const *l = *(char *const *const *)p;
            size_t n = *(const size_t *)(base + o->off2);
            fputc('[', m);
            for (size_t k = 0; k < n; k++) {
                if (k) fputs(", ", m);
                lmf_json_write_string(m, l[k]);
            }
            fputc(']', m);
            break;
        }
        case O_NGRAMS: {
            const lmf_ngram_frac *a = p;
            int n = *(const int *)(base + o->off2);
            fputc('[', m);
            for (int k = 0; k < n; k++) fprintf(m, "%s[%d, %g]", k ? ", " : "", a[k].n, a[k].frac);
            fputc(']', m);
            break;
        }
        }
        fclose(m);
        val[sizeof val - 1] = 0;
        fprintf(f, "%s = %s", o->key, val);
        int pad = 34 - (int)(strlen(o->key) + 3 + strlen(val));
        fprintf(f, "%*s # %s\n", pad > 0 ? pad : 0, "", o->doc);
    }
}

/* ================================================================ the shard splitter */

#include "core/log.h"
#include "core/progress.h" /* lmf_now */
#include "core/rng.h"

#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

static double process_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread: stage timings stay meaningful on a loaded machine (wall time would count the
 * time a worker waited for a core). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

lmf_status lmf_shard_splitter_open(lmf_shard_splitter *sp, const char *dir, const lmf_tokenizer *tok,
                                   double val_fraction, size_t block, uint64_t seed) {
    memset(sp, 0, sizeof *sp);
    if (!(val_fraction >= 0 && val_fraction < 1) || block == 0 || block > ((size_t)1 << 30))
        return lmf_fail(LMF_ERR_ARG, "shard: need 0 <= val_fraction < 1 and 0 < block <= 2^30 (got %g, %zu)",
                        val_fraction, block);
    sp->val_fraction = val_fraction;
    sp->cap = block;
    sp->tok = tok;
    sp->vocab = 257, sp->eot = LMF_BYTE_EOT, sp->kind = LMF_TOKENIZER_BYTES;
    if (tok) {
        int32_t e = lmf_tokenizer_token_id(tok, "<|endoftext|>");
        if (e < 0) return lmf_fail(LMF_ERR_ARG, "the tokenizer has no <|endoftext|> token to separate documents");
        sp->vocab = (uint32_t)lmf_tokenizer_vocab_size(tok), sp->eot = (uint32_t)e, sp->kind = LMF_TOKENIZER_BPE;
    }
    lmf_rng_seed(&sp->rng, seed, 0xda7a);
    size_t n = strlen(dir) + 16;
    char *tp = lmf_xrealloc(NULL, n), *vp = lmf_xrealloc(NULL, n);
    snprintf(tp, n, "%s/train.bin", dir);
    snprintf(vp, n, "%s/val.bin", dir);
    lmf_status s = lmf_shard_writer_open(&sp->train, tp, sp->vocab, (int32_t)sp->eot, sp->kind);
    if (s == LMF_OK && (s = lmf_shard_writer_open(&sp->val, vp, sp->vocab, (int32_t)sp->eot, sp->kind)) != LMF_OK)
        lmf_shard_writer_abort(&sp->train);
    free(tp);
    free(vp);
    if (s != LMF_OK) return s;
    sp->block = lmf_xrealloc(NULL, sizeof(uint32_t) * sp->cap);
    sp->open = 1;
    return LMF_OK;
}

static lmf_status flush_block(lmf_shard_splitter *sp) {
    if (!sp->n) return LMF_OK;
    lmf_shard_writer *w = lmf_rng_uniform(&sp->rng) < sp->val_fraction ? &sp->val : &sp->train;
    lmf_status s = lmf_shard_writer_put(w, sp->block, sp->n);
    sp->n = 0;
    return s;
}

lmf_status lmf_shard_splitter_put(lmf_shard_splitter *sp, const uint32_t *ids, size_t n) {
    while (n) {
        size_t k = sp->cap - sp->n < n ? sp->cap - sp->n : n;
        memcpy(sp->block + sp->n, ids, k * sizeof *ids);
        sp->n += k, ids += k, n -= k;
        if (sp->n == sp->cap) LMF_TRY(flush_block(sp));
    }
    return LMF_OK;
}

lmf_status lmf_shard_splitter_doc(lmf_shard_splitter *sp, const int32_t *ids, size_t n) {
    LMF_TRY(lmf_shard_splitter_put(sp, (const uint32_t *)ids, n));
    return lmf_shard_splitter_put(sp, &sp->eot, 1);
}

lmf_status lmf_shard_splitter_close(lmf_shard_splitter *sp) {
    lmf_status s = flush_block(sp);
    sp->n_train = sp->train.n_tokens, sp->n_val = sp->val.n_tokens;
    free(sp->block);
    sp->block = NULL;
    sp->open = 0;
    if (s != LMF_OK) {
        lmf_shard_writer_abort(&sp->train);
        lmf_shard_writer_abort(&sp->val);
        return s;
    }
    if ((s = lmf_shard_writer_close(&sp->train)) != LMF_OK) {
        lmf_shard_writer_abort(&sp->val);
        return s;
    }
    return lmf_shard_writer_close(&sp->val);
}

void lmf_shard_splitter_abort(lmf_shard_splitter *sp) {
    if (!sp->open) return;
    lmf_shard_writer_abort(&sp->train);
    lmf_shard_writer_abort(&sp->val);
    free(sp->block);
    sp->block = NULL;
    sp->open = 0;
}

/* ================================================================ output files (kept.jsonl[.zst], removed.jsonl) */

typedef struct {
    lmf_atomic_file a; /* a.f is NULL when the file is not written */
    ZSTD_CCtx *z;
    char *zbuf;
    size_t zcap;
    uint64_t bytes;
} out_file;

static lmf_status out_open(out_file *o, const char *dir, const char *name, int compress, int level) {
    memset(o, 0, sizeof *o);
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = lmf_xmalloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    lmf_status s = lmf_atomic_open(&o->a, path);
    free(path);
    if (s != LMF_OK) return s;
    if (compress) {
        o->z = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(o->z, ZSTD_c_compressionLevel, level);
        o->zcap = ZSTD_CStreamOutSize();
        o->zbuf = lmf_xmalloc(o->zcap);
    }
    return LMF_OK;
}

static lmf_status out_write(out_file *o, const char *data, size_t n, int end) {
    if (!o->a.f) return LMF_OK;
    o->bytes += n;
    if (!o->z) {
        if (n && fwrite(data, 1, n, o->a.f) != n)
            return lmf_fail(LMF_ERR_IO, "%s: write failed: %s", o->a.tmp, strerror(errno));
        return LMF_OK;
    }
    ZSTD_inBuffer in = {data, n, 0};
    for (;;) {
        ZSTD_outBuffer ob = {o->zbuf, o->zcap, 0};
        size_t r = ZSTD_compressStream2(o->z, &ob, &in, end ? ZSTD_e_end : ZSTD_e_continue);
        if (ZSTD_isError(r)) return lmf_fail(LMF_ERR_IO, "%s: zstd: %s", o->a.tmp, ZSTD_getErrorName(r));
        if (ob.pos && fwrite(o->zbuf, 1, ob.pos, o->a.f) != ob.pos)
            return lmf_fail(LMF_ERR_IO, "%s: write failed: %s", o->a.tmp, strerror(errno));
        if (end ? r == 0 : in.pos == in.size) break;
    }
    return LMF_OK;
}

static void out_free(out_file *o) {
    ZSTD_freeCCtx(o->z);
    free(o->zbuf);
    memset(o, 0, sizeof *o);
}

static void out_abort(out_file *o) {
    lmf_atomic_abort(&o->a);
    out_free(o);
}

static lmf_status out_close(out_file *o) {
    if (!o->a.f) return LMF_OK;
    lmf_status s = out_write(o, "", 0, 1);
    if (s != LMF_OK) {
        out_abort(o);
        return s;
    }
    s = lmf_atomic_commit(&o->a);
    out_free(o);
    return s;
}

/* JSON string body of n bytes (valid UTF-8 is passed through; controls escaped), appended to b. */
static void json_escape(lmf_textbuf *b, const char *s, size_t n) {
    lmf_textbuf_reserve(b, b->len + lmf_json_escape(NULL, s, n));
    b->len += lmf_json_escape(b->data + b->len, s, n);
    b->data[b->len] = 0;
}

/* ================================================================ documents, batches, the engine */

#define N_SLOTS 4
#define CLAIM_BYTES (64 << 10)
#define N_DOC_STAGES (LMF_STAGE_PII + 1)

typedef struct {
    const char *kind;
    char *path, *msg;
    uint64_t line;
} mal_event;

typedef struct {
    /* from the reader (phase 1) or the spill (phase 2) */
    size_t text_off, text_len, id_off, id_len;
    uint32_t source;
    uint64_t line, seq;
    /* results */
    const char *malformed; /* "invalid_utf8" */
    int dropped;           /* stage that removed it; -1 kept */
    int tok_failed;        /* the tokenizer refused it (detail holds why): removed by the shard stage */
    const char *reason;
    char detail[192];
    uint32_t modified;     /* bit per stage */
    uint64_t len_in[LMF_N_STAGES], len_out[LMF_N_STAGES];
    const char *final;     /* the text after the stages (into the arena or out) */
    size_t final_len;
    lmf_textbuf out;       /* rewritten text / the text as it reached the stage that removed it */
    lmf_ids ids;
    lmf_normalize_stats ns;
    lmf_pii_counts pc;
    lmf_c4_stats c4s;
} doc;

typedef struct {
    char *arena;
    size_t alen, acap;
    doc *docs;
    size_t n, cap;
    mal_event *mal;
    size_t n_mal, cap_mal;
    size_t next, done;
    int state; /* 0 free, 1 filled, 2 processed */
    long seq;
} batch;

typedef struct {
    lmf_scratch *scratch;
    lmf_textbuf buf[2];
    double sec[LMF_N_STAGES];
    pthread_t th;
    struct engine *E;
} worker;

typedef struct run run;
typedef struct engine {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch slot[N_SLOTS];
    long fill_seq, work_seq, cons_seq, total;
    int stop;
    run *R;
    int (*fill)(run *R, batch *b);
    void (*work)(run *R, worker *W, doc *d, batch *b);
    lmf_status (*consume)(run *R, batch *b);
} engine;

/* The places ("file:line", with " (id X)" when the input names documents) of kept documents that have removed
 * duplicates, so removed.jsonl and the report can name a duplicate's kept twin. Phase 2 consumes documents in
 * input order and a twin is always the lowest id of its group, so entries arrive in increasing seq and a lookup
 * is a binary search. One entry per such kept document, for the run (as the deduplicators' own bitmaps). */
typedef struct {
    uint64_t *seq;
    size_t *off;
    size_t n, cap;
    char *text;
    size_t len, tcap;
} twin_places;

static void twins_put(twin_places *t, uint64_t seq, const char *place) {
    LMF_CHECK(!t->n || seq > t->seq[t->n - 1]);
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->seq = lmf_xrealloc(t->seq, t->cap * sizeof *t->seq);
        t->off = lmf_xrealloc(t->off, t->cap * sizeof *t->off);
    }
    size_t n = strlen(place) + 1;
    if (t->len + n > t->tcap) t->text = lmf_xrealloc(t->text, t->tcap = (t->len + n) * 2 + 4096);
    memcpy(t->text + t->len, place, n);
    t->seq[t->n] = seq, t->off[t->n++] = t->len;
    t->len += n;
}

static const char *twins_get(const twin_places *t, uint64_t seq) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->seq[mid] < seq) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->n && t->seq[lo] == seq ? t->text + t->off[lo] : NULL;
}

struct run {
    const lmf_pipeline_config *c;
    lmf_report *rep;
    lmf_reader *reader;
    batch *filling; /* the batch the reader thread fills (malformed events go there) */
    uint64_t next_seq;
    const lmf_blocklist **bl;
    lmf_blocklist **bl_owned;
    size_t n_bl, n_bl_owned;
    lmf_tokenizer *tok;
    lmf_exact_dedup *exact;
    lmf_minhash *mh;
    int dedup, shard;
    FILE *spill;
    uint64_t spill_bytes, spill_read;
    out_file kept, removed;
    lmf_shard_splitter sp;
    lmf_textbuf line;
    pthread_mutex_t err_mu;
    lmf_status err;
    char errmsg[1024];
    volatile int *stop;
    long prog_total; /* kB of the current phase's input, for the sink's progress events */
    int phase;
    uint64_t ex_doc, ex_kept, mh_doc, mh_kept; /* the dedup iterators' next removed (UINT64_MAX: none) */
    twin_places twins;
    lmf_output_set set; /* the outputs are written into set.staging and committed together */
    double stage_sec[LMF_N_STAGES];
    engine *E;
};

/* Progress goes to the caller's sink (kB of input read, per phase) when the config's [run] progress is on. */
static void progress(run *R, lmf_progress_event ev, long done, const char *status) {
    if (R->c->progress) lmf_sink_progress(R->c->sink, ev, done, R->prog_total, "kB", status);
}

static void set_error(run *R, lmf_status s) {
    pthread_mutex_lock(&R->err_mu);
    if (R->err == LMF_OK) {
        R->err = s;
        snprintf(R->errmsg, sizeof R->errmsg, "%s", lmf_last_error());
    }
    pthread_mutex_unlock(&R->err_mu);
    if (R->E) {
        pthread_mutex_lock(&R->E->mu);
        R->E->stop = 1;
        pthread_cond_broadcast(&R->E->cv);
        pthread_mutex_unlock(&R->E->mu);
    }
}

static void *reader_main(void *arg) {
    engine *E = arg;
    for (;;) {
        pthread_mutex_lock(&E->mu);
        batch *b = &E->slot[E->fill_seq % N_SLOTS];
        while (!E->stop && b->state != 0) pthread_cond_wait(&E->cv, &E->mu);
        if (E->stop) {
            pthread_mutex_unlock(&E->mu);
            break;
        }
        pthread_mutex_unlock(&E->mu);
        b->n = b->alen = b->next = b->done = 0;
        for (size_t i = 0; i < b->n_mal; i++) free(b->mal[i].path), free(b->mal[i].msg);
        b->n_mal = 0;
        int more = E->fill(E->R, b);
        pthread_mutex_lock(&E->mu);
        b->seq = E->fill_seq++;
        b->state = 1;
        if (!more) E->total = E->fill_seq;
        pthread_cond_broadcast(&E->cv);
        pthread_mutex_unlock(&E->mu);
        if (!more) break;
    }
    return NULL;
}

static void *worker_main(void *arg) {
    worker *W = arg;
    engine *E = W->E;
    pthread_mutex_lock(&E->mu);
    for (;;) {
        if (E->stop || (E->total >= 0 && E->work_seq >= E->total)) break;
        batch *b = &E->slot[E->work_seq % N_SLOTS];
        if (b->state != 1 || b->seq != E->work_seq) {
            pthread_cond_wait(&E->cv, &E->mu);
            continue;
        }
        if (b->n == 0) {
            b->state = 2;
            E->work_seq++;
            pthread_cond_broadcast(&E->cv);
            continue;
        }
        size_t i = b->next, j = i, bytes = 0;
        while (j < b->n && (j == i || bytes < CLAIM_BYTES)) bytes += b->docs[j++].text_len;
        b->next = j;
        if (j == b->n) E->work_seq++; /* every document of b is claimed: the next worker looks at the next batch */
        pthread_mutex_unlock(&E->mu);
        for (size_t k = i; k < j; k++) E->work(E->R, W, &b->docs[k], b);
        pthread_mutex_lock(&E->mu);
        b->done += j - i;
        if (b->done == b->n) {
            b->state = 2;
            pthread_cond_broadcast(&E->cv);
        }
    }
    pthread_mutex_unlock(&E->mu);
    return NULL;
}

/* Runs one phase: a reader thread (fill), n workers (work), and the caller consuming batches in order. */
static lmf_status engine_run(run *R, int n_workers, worker *ws, int (*fill)(run *, batch *),
                             void (*work)(run *, worker *, doc *, batch *), lmf_status (*consume)(run *, batch *)) {
    engine *E = calloc(1, sizeof *E);
    if (!E) abort();
    pthread_mutex_init(&E->mu, NULL);
    pthread_cond_init(&E->cv, NULL);
    E->total = -1;
    E->R = R, E->fill = fill, E->work = work, E->consume = consume;
    R->E = E;
    pthread_t rt;
    pthread_create(&rt, NULL, reader_main, E);
    for (int i = 0; i < n_workers; i++) {
        ws[i].E = E;
        pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
    }
    lmf_status s = LMF_OK;
    for (;;) {
        pthread_mutex_lock(&E->mu);
        batch *b = &E->slot[E->cons_seq % N_SLOTS];
        while (!E->stop && !(E->total >= 0 && E->cons_seq >= E->total) && !(b->state == 2 && b->seq == E->cons_seq))
            pthread_cond_wait(&E->cv, &E->mu);
        int done = E->stop || (E->total >= 0 && E->cons_seq >= E->total);
        pthread_mutex_unlock(&E->mu);
        if (done) break;
        s = consume(R, b);
        /* per-document buffers that grew large are released, so one huge document does not pin memory */
        for (size_t i = 0; i < b->n; i++) {
            doc *d = &b->docs[i];
            if (d->out.cap > (1u << 20)) lmf_textbuf_free(&d->out);
            if (d->ids.cap > (1u << 18)) free(d->ids.data), memset(&d->ids, 0, sizeof d->ids);
        }
        if (b->acap > 4 * R->c->batch_bytes + (1u << 20)) free(b->arena), b->arena = NULL, b->acap = 0;
        pthread_mutex_lock(&E->mu);
        b->state = 0;
        E->cons_seq++;
        if (s == LMF_OK && R->stop && *R->stop) s = lmf_fail(LMF_ERR_INTERRUPTED, "interrupted");
        if (s != LMF_OK) E->stop = 1;
        pthread_cond_broadcast(&E->cv);
        pthread_mutex_unlock(&E->mu);
        if (s != LMF_OK) break;
    }
    pthread_mutex_lock(&E->mu);
    E->stop = 1;
    pthread_cond_broadcast(&E->cv);
    pthread_mutex_unlock(&E->mu);
    pthread_join(rt, NULL);
    for (int i = 0; i < n_workers; i++) pthread_join(ws[i].th, NULL);
    for (int k = 0; k < N_SLOTS; k++) {
        batch *b = &E->slot[k];
        for (size_t i = 0; i < b->cap; i++) {
            lmf_textbuf_free(&b->docs[i].out);
            free(b->docs[i].ids.data);
        }
        for (size_t i = 0; i < b->n_mal; i++) free(b->mal[i].path), free(b->mal[i].msg);
        free(b->mal);
        free(b->docs);
        free(b->arena);
    }
    pthread_mutex_destroy(&E->mu);
    pthread_cond_destroy(&E->cv);
    free(E);
    R->E = NULL;
    if (s == LMF_OK && R->err != LMF_OK) s = lmf_fail(R->err, "%s", R->errmsg);
    return s;
}

static doc *batch_push(batch *b) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 256;
        b->docs = lmf_xrealloc(b->docs, nc * sizeof *b->docs);
        memset(b->docs + b->cap, 0, (nc - b->cap) * sizeof *b->docs);
        b->cap = nc;
    }
    doc *d = &b->docs[b->n++];
    lmf_textbuf out = d->out;
    lmf_ids ids = d->ids;
    memset(d, 0, sizeof *d);
    d->out = out, d->ids = ids;
    d->out.len = 0, d->ids.len = 0;
    d->dropped = -1;
    return d;
}

/* ================================================================ phase 1: read, per-document stages */

static void on_malformed(void *ctx, const char *kind, const char *path, uint64_t line, const char *msg) {
    run *R = ctx;
    batch *b = R->filling;
    if (!b) { /* before the threads start (paths that do not exist) */
        char src[4200];
        snprintf(src, sizeof src, "%s%s", path, "");
        lmf_report_reason_add(R->rep, &R->rep->malformed, &R->rep->n_malformed, kind, 0, NULL, 0, src, NULL, 0, msg);
        return;
    }
    if (b->n_mal == b->cap_mal)
        b->mal = lmf_xrealloc(b->mal, (b->cap_mal = b->cap_mal ? 2 * b->cap_mal : 8) * sizeof *b->mal);
    b->mal[b->n_mal++] = (mal_event){kind, strdup(path), strdup(msg), line};
}

static int fill_read(run *R, batch *b) {
    R->filling = b;
    while (b->alen < R->c->batch_bytes) {
        lmf_reader_doc rd;
        size_t before = b->alen;
        if (!lmf_reader_next(R->reader, &b->arena, &b->alen, &b->acap, &rd)) {
            b->alen = before;
            return 0;
        }
        doc *d = batch_push(b);
        d->text_off = rd.text_off, d->text_len = rd.text_len, d->id_off = rd.id_off, d->id_len = rd.id_len;
        d->source = rd.source, d->line = rd.line;
        d->seq = R->next_seq++;
    }
    return 1;
}

static void toxicity(run *R, worker *W, const char *text, size_t n, doc *d, lmf_verdict *v) {
    const lmf_pipeline_config *c = R->c;
    lmf_toxicity_result r, sum;
    memset(&sum, 0, sizeof sum);
    v->keep = 1, v->reason = NULL;
    for (size_t k = 0; k < R->n_bl; k++) {
        lmf_verdict vk;
        lmf_toxicity(&c->toxicity, R->bl[k], text, n, W->scratch, &r, &vk);
        if (R->n_bl == 1) *v = vk;
        sum.matches += r.matches;
        sum.words = r.words;
        for (size_t i = 0; i < r.n_terms && sum.n_terms < LMF_TOXICITY_MAX_TERMS; i++) {
            sum.terms[sum.n_terms] = r.terms[i];
            sum.term_count[sum.n_terms++] = r.term_count[i];
        }
    }
    if (R->n_bl > 1 && sum.words && sum.matches >= (size_t)(c->toxicity.min_matches > 0 ? c->toxicity.min_matches : 0) &&
        sum.matches > 0 && (double)sum.matches / (double)sum.words > c->toxicity.max_matches_per_word)
        v->keep = 0, v->reason = "toxic_words";
    if (!v->keep) {
        int o = snprintf(d->detail, sizeof d->detail, "%zu matches in %zu words:", sum.matches, sum.words);
        for (size_t i = 0; i < sum.n_terms && o > 0 && (size_t)o < sizeof d->detail; i++)
            o += snprintf(d->detail + o, sizeof d->detail - (size_t)o, "%s %s (%u)", i ? "," : "", sum.terms[i],
                          sum.term_count[i]);
    }
}

/* A document the tokenizer refuses (a pre-tokenizer regex over its match limit) is removed by the shard stage with
 * the tokenizer's message, never written as a kept document with no tokens. */
static void tokenize(run *R, doc *d) {
    d->ids.len = 0;
    d->tok_failed = 0;
    if (R->shard && R->tok && lmf_tokenizer_encode(R->tok, d->final, d->final_len, 0, &d->ids) != LMF_OK) {
        d->tok_failed = 1;
        snprintf(d->detail, sizeof d->detail, "%s", lmf_last_error());
    }
}

static void work_filter(run *R, worker *W, doc *d, batch *b) {
    const lmf_pipeline_config *c = R->c;
    const char *text = b->arena + d->text_off, *cur = text;
    size_t n = d->text_len;
    int cb = -1; /* which worker buffer holds cur (-1: the arena) */
    if (!c->enabled[LMF_STAGE_NORMALIZE] && !lmf_utf8_valid(text, n)) {
        d->malformed = "invalid_utf8";
        return;
    }
    for (int s = 0; s < N_DOC_STAGES; s++) {
        if (!c->enabled[s]) continue;
        d->len_in[s] = n;
        double t0 = cpu_now();
        lmf_verdict v = {1, NULL};
        lmf_textbuf *ob = &W->buf[cb == 0 ? 1 : 0];
        int rewritten = 0;
        switch ((lmf_stage_id)s) {
        case LMF_STAGE_NORMALIZE:
            lmf_normalize(&c->normalize, cur, n, ob, &d->ns);
            rewritten = 1;
            break;
        case LMF_STAGE_LENGTH: lmf_length_filter(&c->length, cur, n, &v); break;
        case LMF_STAGE_GOPHER_QUALITY: lmf_gopher_quality(&c->gopher_quality, cur, n, W->scratch, &v); break;
        case LMF_STAGE_GOPHER_REPETITION: lmf_gopher_repetition(&c->gopher_repetition, cur, n, W->scratch, &v); break;
        case LMF_STAGE_C4:
            lmf_c4_quality(&c->c4, cur, n, W->scratch, ob, &d->c4s, &v);
            rewritten = v.keep;
            break;
        case LMF_STAGE_FINEWEB: lmf_fineweb_quality(&c->fineweb, cur, n, W->scratch, &v); break;
        case LMF_STAGE_TOXICITY: toxicity(R, W, cur, n, d, &v); break;
        case LMF_STAGE_PII:
            lmf_pii_mask(&c->pii, cur, n, W->scratch, ob, &d->pc);
            rewritten = 1;
            break;
        default: break;
        }
        if (rewritten && (ob->len != n || memcmp(ob->data, cur, n))) {
            d->modified |= 1u << s;
            cur = ob->data, n = ob->len, cb = ob == &W->buf[0] ? 0 : 1;
        }
        d->len_out[s] = n;
        W->sec[s] += cpu_now() - t0;
        if (!v.keep) {
            d->dropped = s;
            d->reason = v.reason ? v.reason : "removed";
            d->len_out[s] = 0;
            /* keep the text as it reached the stage, for the report's example and removed.jsonl */
            size_t keep = c->write_removed ? n : (n < (size_t)c->example_chars * 4 + 8 ? n : (size_t)c->example_chars * 4 + 8);
            d->out.len = 0;
            lmf_textbuf_append(&d->out, cur, keep);
            d->final = d->out.data, d->final_len = keep;
            return;
        }
    }
    if (cb >= 0) {
        d->out.len = 0;
        lmf_textbuf_append(&d->out, cur, n);
        cur = d->out.data;
    }
    d->final = cur, d->final_len = n;
    lmf_status s = LMF_OK;
    if (R->exact) {
        double t0 = cpu_now();
        s = lmf_exact_dedup_add(R->exact, d->seq, cur, n);
        W->sec[LMF_STAGE_EXACT_DEDUP] += cpu_now() - t0;
    }
    if (s == LMF_OK && R->mh) {
        double t0 = cpu_now();
        s = lmf_minhash_add(R->mh, d->seq, cur, n);
        W->sec[LMF_STAGE_MINHASH] += cpu_now() - t0;
    }
    if (s != LMF_OK) set_error(R, s);
    if (!R->dedup && R->shard) {
        double t0 = cpu_now();
        tokenize(R, d);
        W->sec[LMF_STAGE_SHARD] += cpu_now() - t0;
    }
}

static const char *doc_source(run *R, const doc *d, char *buf, size_t n) {
    snprintf(buf, n, "%s:%llu", lmf_reader_source(R->reader, d->source), (unsigned long long)d->line);
    return buf;
}

static lmf_status write_removed(run *R, const doc *d, const char *arena, const char *src, const char *stage,
                                const char *reason, const char *detail) {
    if (!R->removed.a.f) return LMF_OK;
    lmf_textbuf *l = &R->line;
    l->len = 0;
    lmf_textbuf_append(l, "{\"source\":\"", 11);
    json_escape(l, src, strlen(src));
    if (d->id_len) {
        lmf_textbuf_append(l, "\",\"id\":\"", 8);
        json_escape(l, arena + d->id_off, d->id_len);
    }
    lmf_textbuf_append(l, "\",\"stage\":\"", 11);
    lmf_textbuf_append(l, stage, strlen(stage));
    lmf_textbuf_append(l, "\",\"reason\":\"", 12);
    json_escape(l, reason, strlen(reason));
    if (detail && *detail) {
        lmf_textbuf_append(l, "\",\"why\":\"", 9);
        json_escape(l, detail, strlen(detail));
    }
    lmf_textbuf_append(l, "\",\"text\":\"", 10);
    json_escape(l, d->final, d->final_len);
    lmf_textbuf_append(l, "\"}\n", 3);
    return out_write(&R->removed, l->data, l->len, 0);
}

/* A kept document: kept.jsonl and the shards. */
static lmf_status emit(run *R, const doc *d, const char *arena, const char *src) {
    lmf_report *rep = R->rep;
    if (d->tok_failed) {
        lmf_report_stage *st = &rep->stages[LMF_STAGE_SHARD];
        st->docs_in++, st->bytes_in += d->final_len, st->docs_removed++, st->bytes_removed += d->final_len;
        lmf_report_reason_add(rep, &st->reasons, &st->n_reasons, "tokenize_failed", d->final_len,
                              d->id_len ? arena + d->id_off : NULL, d->id_len, src, d->final, d->final_len, d->detail);
        return write_removed(R, d, arena, src, st->name, "tokenize_failed", d->detail);
    }
    rep->docs_out++;
    rep->bytes_out += d->final_len;
    if (R->kept.a.f) {
        lmf_textbuf *l = &R->line;
        l->len = 0;
        lmf_textbuf_append(l, "{\"source\":\"", 11);
        json_escape(l, src, strlen(src));
        if (d->id_len) {
            lmf_textbuf_append(l, "\",\"id\":\"", 8);
            json_escape(l, arena + d->id_off, d->id_len);
        }
        lmf_textbuf_append(l, "\",\"text\":\"", 10);
        json_escape(l, d->final, d->final_len);
        lmf_textbuf_append(l, "\"}\n", 3);
        LMF_TRY(out_write(&R->kept, l->data, l->len, 0));
    }
    if (R->shard) {
        lmf_report_stage *st = &rep->stages[LMF_STAGE_SHARD];
        st->docs_in++, st->bytes_in += d->final_len, st->docs_kept++, st->bytes_kept += d->final_len;
        if (R->tok) {
            LMF_TRY(lmf_shard_splitter_doc(&R->sp, d->ids.data, d->ids.len));
            lmf_report_counter_add(st, "tokens", d->ids.len + 1);
        } else {
            uint32_t tmp[4096];
            for (size_t i = 0; i < d->final_len;) {
                size_t k = 0;
                for (; k < 4096 && i < d->final_len; k++, i++) tmp[k] = (unsigned char)d->final[i];
                LMF_TRY(lmf_shard_splitter_put(&R->sp, tmp, k));
            }
            LMF_TRY(lmf_shard_splitter_put(&R->sp, &R->sp.eot, 1));
            lmf_report_counter_add(st, "tokens", d->final_len + 1);
        }
    }
    return LMF_OK;
}

typedef struct {
    uint64_t seq, line, text_len;
    uint32_t source, id_len;
} spill_hdr;

static lmf_status consume_filter(run *R, batch *b) {
    const lmf_pipeline_config *c = R->c;
    lmf_report *rep = R->rep;
    char src[4200];
    for (size_t i = 0; i < b->n_mal; i++) {
        mal_event *m = &b->mal[i];
        snprintf(src, sizeof src, "%s:%llu", m->path, (unsigned long long)m->line);
        lmf_report_reason_add(rep, &rep->malformed, &rep->n_malformed, m->kind, 0, NULL, 0, src, NULL, 0, m->msg);
    }
    for (size_t i = 0; i < b->n; i++) {
        doc *d = &b->docs[i];
        const char *text = b->arena + d->text_off;
        rep->docs_read++;
        rep->bytes_read += d->text_len;
        doc_source(R, d, src, sizeof src);
        if (d->malformed) {
            lmf_report_reason_add(rep, &rep->malformed, &rep->n_malformed, d->malformed, d->text_len,
                                  d->id_len ? b->arena + d->id_off : NULL, d->id_len, src, text, d->text_len,
                                  "invalid UTF-8 (normalization is off, so it cannot be repaired)");
            continue;
        }
        for (int s = 0; s < N_DOC_STAGES; s++) {
            if (!c->enabled[s]) continue;
            lmf_report_stage *st = &rep->stages[s];
            st->docs_in++;
            st->bytes_in += d->len_in[s];
            if (d->dropped == s) {
                st->docs_removed++;
                st->bytes_removed += d->len_in[s];
                lmf_report_reason_add(rep, &st->reasons, &st->n_reasons, d->reason, d->len_in[s],
                                      d->id_len ? b->arena + d->id_off : NULL, d->id_len, src, d->final, d->final_len,
                                      d->detail[0] ? d->detail : NULL);
                LMF_TRY(write_removed(R, d, b->arena, src, st->name, d->reason, d->detail));
                break;
            }
            st->docs_kept++;
            st->bytes_kept += d->len_out[s];
            if (d->modified & (1u << s)) st->docs_modified++;
        }
        if (c->enabled[LMF_STAGE_NORMALIZE]) {
            lmf_report_stage *st = &rep->stages[LMF_STAGE_NORMALIZE];
            const lmf_normalize_stats *ns = &d->ns;
            if (ns->invalid_bytes) lmf_report_counter_add(st, "invalid_bytes_replaced", ns->invalid_bytes);
            if (ns->nfc_changed) lmf_report_counter_add(st, "nfc_changed_docs", ns->nfc_changed);
            if (ns->controls_removed) lmf_report_counter_add(st, "controls_removed", ns->controls_removed);
            if (ns->crlf_fixed) lmf_report_counter_add(st, "line_endings_fixed", ns->crlf_fixed);
            if (ns->blank_lines_removed) lmf_report_counter_add(st, "blank_lines_removed", ns->blank_lines_removed);
        }
        if (c->enabled[LMF_STAGE_PII] && d->dropped < 0) {
            lmf_report_stage *st = &rep->stages[LMF_STAGE_PII];
            if (d->pc.emails) lmf_report_counter_add(st, "emails", d->pc.emails);
            if (d->pc.ipv4) lmf_report_counter_add(st, "ipv4", d->pc.ipv4);
            if (d->pc.ipv6) lmf_report_counter_add(st, "ipv6", d->pc.ipv6);
            if (d->pc.phones) lmf_report_counter_add(st, "phones", d->pc.phones);
        }
        if (c->enabled[LMF_STAGE_C4] && (d->dropped < 0 || d->dropped >= LMF_STAGE_C4) && d->c4s.lines > d->c4s.kept)
            lmf_report_counter_add(&rep->stages[LMF_STAGE_C4], "lines_removed", d->c4s.lines - d->c4s.kept);
        if (d->dropped >= 0) continue;
        if (R->dedup) {
            spill_hdr h = {d->seq, d->line, d->final_len, d->source, (uint32_t)d->id_len};
            if (fwrite(&h, sizeof h, 1, R->spill) != 1 || (d->final_len && fwrite(d->final, 1, d->final_len, R->spill) != d->final_len) ||
                (d->id_len && fwrite(b->arena + d->id_off, 1, d->id_len, R->spill) != d->id_len))
                return lmf_fail(LMF_ERR_IO, "%s: cannot write the spill file: %s", c->out_dir, strerror(errno));
            R->spill_bytes += sizeof h + d->final_len + d->id_len;
        } else {
            LMF_TRY(emit(R, d, b->arena, src));
        }
    }
    if (c->progress && c->sink && c->sink->progress) {
        char st[128];
        snprintf(st, sizeof st, "%llu docs, %llu kept", (unsigned long long)rep->docs_read,
                 (unsigned long long)(R->dedup ? rep->stages[LMF_STAGE_PII].docs_kept : rep->docs_out));
        progress(R, LMF_PROGRESS_UPDATE, (long)(lmf_reader_bytes_done(R->reader) / 1000), st);
    }
    return LMF_OK;
}

/* ================================================================ phase 2: the spill back, dedup decisions, outputs */

static int fill_spill(run *R, batch *b) {
    while (b->alen < R->c->batch_bytes) {
        spill_hdr h;
        size_t got = fread(&h, 1, sizeof h, R->spill);
        if (got == 0) return 0;
        if (got != sizeof h || h.text_len > ((uint64_t)1 << 40)) {
            errno = EIO;
            set_error(R, lmf_fail(LMF_ERR_IO, "%s: the spill file is truncated", R->c->out_dir));
            return 0;
        }
        size_t need = b->alen + h.text_len + h.id_len + 1;
        if (need > b->acap) b->arena = lmf_xrealloc(b->arena, b->acap = need * 2);
        if (fread(b->arena + b->alen, 1, h.text_len + h.id_len, R->spill) != h.text_len + h.id_len) {
            set_error(R, lmf_fail(LMF_ERR_IO, "%s: the spill file is truncated", R->c->out_dir));
            return 0;
        }
        doc *d = batch_push(b);
        d->text_off = b->alen, d->text_len = h.text_len;
        d->id_off = b->alen + h.text_len, d->id_len = h.id_len;
        d->source = h.source, d->line = h.line, d->seq = h.seq;
        b->alen += h.text_len + h.id_len;
        b->arena[b->alen] = 0;
        R->spill_read += sizeof h + h.text_len + h.id_len;
    }
    return 1;
}

static void work_dedup(run *R, worker *W, doc *d, batch *b) {
    d->final = b->arena + d->text_off, d->final_len = d->text_len;
    if (R->exact && lmf_exact_dedup_is_duplicate(R->exact, d->seq)) d->dropped = LMF_STAGE_EXACT_DEDUP;
    else if (R->mh && lmf_minhash_is_duplicate(R->mh, d->seq)) d->dropped = LMF_STAGE_MINHASH;
    else if (R->shard) {
        double t0 = cpu_now();
        tokenize(R, d);
        W->sec[LMF_STAGE_SHARD] += cpu_now() - t0;
    }
}

/* Advances a dedup iterator to the first removed document >= seq; returns the kept id when seq is removed. */
static int next_removed(run *R, int exact, uint64_t seq, uint64_t *kept) {
    uint64_t *dn = exact ? &R->ex_doc : &R->mh_doc, *kn = exact ? &R->ex_kept : &R->mh_kept;
    while (*dn != UINT64_MAX && *dn < seq) {
        int r = exact ? lmf_exact_dedup_next_removed(R->exact, dn, kn) : lmf_minhash_next_removed(R->mh, dn, kn);
        if (r <= 0) *dn = UINT64_MAX;
        if (r < 0) set_error(R, LMF_ERR_IO);
    }
    if (*dn == seq) {
        *kept = *kn;
        return 1;
    }
    return 0;
}

static lmf_status consume_dedup(run *R, batch *b) {
    lmf_report *rep = R->rep;
    char src[4200];
    for (size_t i = 0; i < b->n; i++) {
        doc *d = &b->docs[i];
        doc_source(R, d, src, sizeof src);
        if ((R->exact && lmf_exact_dedup_has_duplicates(R->exact, d->seq)) ||
            (R->mh && lmf_minhash_has_duplicates(R->mh, d->seq))) {
            char place[4600];
            snprintf(place, sizeof place, "%s%s%.*s%s", src, d->id_len ? " (id " : "", (int)d->id_len,
                     b->arena + d->id_off, d->id_len ? ")" : "");
            twins_put(&R->twins, d->seq, place);
        }
        int removed = 0;
        for (int s = LMF_STAGE_EXACT_DEDUP; s <= LMF_STAGE_MINHASH && !removed; s++) {
            if (!R->c->enabled[s]) continue;
            lmf_report_stage *st = &rep->stages[s];
            st->docs_in++;
            st->bytes_in += d->final_len;
            if (d->dropped != s) {
                st->docs_kept++;
                st->bytes_kept += d->final_len;
                continue;
            }
            uint64_t kept = UINT64_MAX;
            next_removed(R, s == LMF_STAGE_EXACT_DEDUP, d->seq, &kept);
            /* the kept twin came earlier in input order, so its place is already known */
            const char *twin = kept != UINT64_MAX ? twins_get(&R->twins, kept) : NULL;
            char detail[4700];
            snprintf(detail, sizeof detail, "duplicate of %s", twin ? twin : "an earlier document");
            const char *reason = s == LMF_STAGE_EXACT_DEDUP ? "exact_duplicate" : "near_duplicate";
            st->docs_removed++;
            st->bytes_removed += d->final_len;
            lmf_report_reason_add(rep, &st->reasons, &st->n_reasons, reason, d->final_len,
                                  d->id_len ? b->arena + d->id_off : NULL, d->id_len, src, d->final, d->final_len,
                                  detail);
            LMF_TRY(write_removed(R, d, b->arena, src, st->name, reason, detail));
            removed = 1;
        }
        if (!removed) LMF_TRY(emit(R, d, b->arena, src));
    }
    if (R->c->progress && R->c->sink && R->c->sink->progress) {
        char st[128];
        snprintf(st, sizeof st, "dedup + write: %llu docs out", (unsigned long long)rep->docs_out);
        progress(R, LMF_PROGRESS_UPDATE, (long)(R->spill_read / 1000), st);
    }
    return LMF_OK;
}

/* ================================================================ the run */

static int exact_removed(const void *exact, uint64_t seq) { return lmf_exact_dedup_is_duplicate(exact, seq); }

static void run_cleanup(run *R, int ok) {
    if (!ok) {
        out_abort(&R->kept);
        out_abort(&R->removed);
        lmf_shard_splitter_abort(&R->sp);
    }
    if (R->spill) fclose(R->spill);
    for (size_t i = 0; i < R->n_bl_owned; i++) lmf_blocklist_free(R->bl_owned[i]);
    lmf_tokenizer_free(R->tok);
    lmf_exact_dedup_free(R->exact);
    lmf_minhash_free(R->mh);
    lmf_reader_free(R->reader);
    lmf_textbuf_free(&R->line);
    LMF_FREE_ALL(R->bl_owned, R->bl, R->twins.seq, R->twins.off, R->twins.text);
    pthread_mutex_destroy(&R->err_mu);
}

lmf_status lmf_pipeline_run(const lmf_pipeline_config *cin, volatile int *stop, lmf_report **report) {
    if (report) *report = NULL;
    lmf_pipeline_config cc = *cin, *c = &cc; /* a shallow copy whose stage pointers we may re-wire */
    if (!c->out_dir || !*c->out_dir) return lmf_fail(LMF_ERR_ARG, "output.dir: no output folder given");
    if (!c->n_inputs) return lmf_fail(LMF_ERR_ARG, "input.paths: no input given");
    if (c->batch_bytes < 4096) c->batch_bytes = 4096;
    double t_start = lmf_now(), cpu_start = process_cpu();
    lmf_report *rep = calloc(1, sizeof *rep);
    if (!rep) abort();
    lmf_report_init(rep, c->examples, c->example_chars);
    rep->out_dir = strdup(c->out_dir);
    for (int s = 0; s < LMF_N_STAGES; s++) rep->stages[s].enabled = c->enabled[s];
    run R_, *R = &R_;
    memset(R, 0, sizeof *R);
    pthread_mutex_init(&R->err_mu, NULL);
    R->c = c, R->rep = rep, R->stop = stop;
    lmf_status s = lmf_output_set_begin(&R->set, c->out_dir);
    const char *od = R->set.staging ? R->set.staging : c->out_dir; /* where this run's files go */
    const char *tmp_dir = c->tmp_dir && *c->tmp_dir ? c->tmp_dir : od;
    int threads = c->threads > 0 ? c->threads : omp_get_max_threads();
    if (threads < 1) threads = 1;
    rep->threads = threads;
    /* the stage resources */
    if (s == LMF_OK && c->enabled[LMF_STAGE_TOXICITY]) {
        R->bl = lmf_xrealloc(NULL, (c->n_blocklists + 1) * sizeof *R->bl);
        R->bl_owned = lmf_xrealloc(NULL, (c->n_blocklists + 1) * sizeof *R->bl_owned);
        if (c->toxicity_default_list) R->bl[R->n_bl++] = lmf_blocklist_default();
        for (size_t i = 0; i < c->n_blocklists && s == LMF_OK; i++) {
            lmf_blocklist *b;
            if ((s = lmf_blocklist_load(c->blocklists[i], &b)) == LMF_OK)
                R->bl[R->n_bl++] = R->bl_owned[R->n_bl_owned++] = b;
        }
        if (s == LMF_OK && !R->n_bl)
            s = lmf_fail(LMF_ERR_ARG, "toxicity: no blocklist (default_list = false and lists = []); disable the stage "
                                      "instead");
    }
    R->shard = c->enabled[LMF_STAGE_SHARD];
    if (s == LMF_OK && R->shard && c->tokenizer) s = lmf_tokenizer_load(c->tokenizer, &R->tok);
    if (s == LMF_OK && R->shard) s = lmf_shard_splitter_open(&R->sp, od, R->tok, c->val_fraction, c->block, c->seed);
    if (s == LMF_OK && c->enabled[LMF_STAGE_EXACT_DEDUP]) {
        lmf_exact_dedup_config e = c->exact;
        e.tmp_dir = tmp_dir;
        s = lmf_exact_dedup_create(&e, &R->exact);
    }
    if (s == LMF_OK && c->enabled[LMF_STAGE_MINHASH]) {
        lmf_minhash_config m = c->minhash;
        m.tmp_dir = tmp_dir;
        s = lmf_minhash_create(&m, &R->mh);
    }
    R->dedup = R->exact || R->mh;
    if (s == LMF_OK && c->write_kept)
        s = out_open(&R->kept, od, c->compress_kept ? "kept.jsonl.zst" : "kept.jsonl", c->compress_kept,
                     c->zstd_level);
    if (s == LMF_OK && c->write_removed) s = out_open(&R->removed, od, "removed.jsonl", 0, 0);
    if (s == LMF_OK && R->dedup) {
        /* the spill: an unlinked temporary file, so nothing is left behind whatever happens */
        char *p = lmf_xrealloc(NULL, strlen(tmp_dir) + 32);
        sprintf(p, "%s/.lmf-spill-XXXXXX", tmp_dir);
        int fd = mkstemp(p);
        if (fd < 0) s = lmf_fail(LMF_ERR_IO, "%s: cannot create the spill file: %s", p, strerror(errno));
        else {
            unlink(p);
            R->spill = fdopen(fd, "w+b");
            setvbuf(R->spill, NULL, _IOFBF, 1 << 20);
        }
        free(p);
    }
    lmf_reader_config rc = {.paths = (const char *const *)c->inputs, .n_paths = c->n_inputs, .format = c->format,
                            .text_field = c->text_field, .id_field = c->id_field, .split = c->split,
                            .separator = c->separator, .include = (const char *const *)c->include,
                            .n_include = c->n_include, .exclude = (const char *const *)c->exclude,
                            .n_exclude = c->n_exclude, .max_doc_bytes = c->max_doc_bytes, .on_malformed = on_malformed,
                            .ctx = R};
    if (s == LMF_OK) s = lmf_reader_open(&rc, &R->reader);
    worker *ws = calloc((size_t)threads, sizeof *ws);
    if (!ws) abort();
    for (int i = 0; i < threads; i++) ws[i].scratch = lmf_scratch_new();
    if (s == LMF_OK) {
        rep->files = lmf_reader_n_sources(R->reader);
        rep->bytes_on_disk = lmf_reader_total_bytes(R->reader);
        R->prog_total = (long)(rep->bytes_on_disk / 1000);
        progress(R, LMF_PROGRESS_BEGIN, 0, NULL);
        s = engine_run(R, threads, ws, fill_read, work_filter, consume_filter);
        R->filling = NULL;
        progress(R, LMF_PROGRESS_END, R->prog_total, NULL);
    }
    rep->phase1_seconds = lmf_now() - t_start;
    if (s == LMF_OK && R->dedup) {
        double t0 = lmf_now();
        if (R->exact) s = lmf_exact_dedup_finish(R->exact);
        /* MinHash judges what exact dedup kept: its clusters and counters leave the exact duplicates out */
        if (s == LMF_OK && R->mh) s = R->exact ? lmf_minhash_finish_skipping(R->mh, exact_removed, R->exact)
                                               : lmf_minhash_finish(R->mh);
        /* the iterators over removed documents, positioned on their first */
        R->ex_doc = R->mh_doc = UINT64_MAX;
        if (s == LMF_OK && R->exact && lmf_exact_dedup_next_removed(R->exact, &R->ex_doc, &R->ex_kept) != 1)
            R->ex_doc = UINT64_MAX;
        if (s == LMF_OK && R->mh && lmf_minhash_next_removed(R->mh, &R->mh_doc, &R->mh_kept) != 1)
            R->mh_doc = UINT64_MAX;
        if (s == LMF_OK && (fflush(R->spill) != 0 || fseeko(R->spill, 0, SEEK_SET) != 0))
            s = lmf_fail(LMF_ERR_IO, "the spill file: %s", strerror(errno));
        if (s == LMF_OK) {
            rep->spill_bytes = R->spill_bytes;
            R->prog_total = (long)(R->spill_bytes / 1000);
            progress(R, LMF_PROGRESS_BEGIN, 0, NULL);
            s = engine_run(R, threads, ws, fill_spill, work_dedup, consume_dedup);
            progress(R, LMF_PROGRESS_END, R->prog_total, NULL);
        }
        if (R->exact) lmf_report_counter_add(&rep->stages[LMF_STAGE_EXACT_DEDUP], "spilled_runs", lmf_exact_dedup_n_spills(R->exact));
        if (R->mh) {
            lmf_minhash_stats ms;
            lmf_minhash_get_stats(R->mh, &ms);
            lmf_report_stage *st = &rep->stages[LMF_STAGE_MINHASH];
            lmf_report_counter_add(st, "signed_docs", ms.n_signed);
            lmf_report_counter_add(st, "candidate_pairs", ms.n_candidates);
            if (c->minhash.verify_threshold > 0) lmf_report_counter_add(st, "verify_rejected", ms.n_verify_failed);
            lmf_report_counter_add(st, "clusters", ms.n_clusters);
            lmf_report_counter_add(st, "spilled_runs", ms.n_spills);
        }
        rep->phase2_seconds = lmf_now() - t0;
    }
    for (int i = 0; i < threads; i++) {
        for (int k = 0; k < LMF_N_STAGES; k++) rep->stages[k].seconds += ws[i].sec[k];
        lmf_scratch_free(ws[i].scratch);
        lmf_textbuf_free(&ws[i].buf[0]);
        lmf_textbuf_free(&ws[i].buf[1]);
    }
    free(ws);
    if (s == LMF_OK) s = out_close(&R->kept);
    if (s == LMF_OK) s = out_close(&R->removed);
    if (s == LMF_OK && R->shard) {
        s = lmf_shard_splitter_close(&R->sp);
        rep->tokens_train = R->sp.n_train;
        rep->tokens_val = R->sp.n_val;
    }
    rep->wall_seconds = lmf_now() - t_start;
    rep->cpu_seconds = process_cpu() - cpu_start;
    if (s == LMF_OK) {
        char *p = lmf_xrealloc(NULL, strlen(od) + 16);
        sprintf(p, "%s/report.json", od);
        s = lmf_report_write_json(rep, p);
        free(p);
    }
    run_cleanup(R, s == LMF_OK);
    /* the whole set replaces the previous run's at once; a failed or interrupted run leaves the folder as it was */
    if (s == LMF_OK) s = lmf_output_set_commit(&R->set);
    else lmf_output_set_abort(&R->set);
    if (s != LMF_OK || !report) {
        lmf_report_free(rep);
        free(rep);
    } else {
        *report = rep;
    }
    return s;
}
