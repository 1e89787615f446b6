/* cmd_data.c — `lmforge data`: `run PIPELINE.toml` (the data pipeline: src/data/pipeline.h), its stage groups as
 * commands (`clean`, `dedup`), and `shard` (text files -> train/validation token shards). */
#include "cli/cli.h"
#include "core/fs.h"
#include "core/status.h"
#include "data/pipeline.h"
#include "io/shard.h"

#include <signal.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


static void help(FILE *f) {
    fprintf(f, "usage: lmforge data shard --out DIR [--val-fraction F] [--block N] [--seed S] FILE... (- = stdin)\n\n"
               "Tokenizes text files into DIR/train.bin and DIR/val.bin (lmforge token shards). Each file is one\n"
               "document, followed by the end-of-text token. The token stream is cut into blocks of N tokens and\n"
               "each block goes to validation with probability F (seeded, so reruns give the same split).\n"
               "Tokenizer: bytes (ids 0-255 are bytes, 256 is <|endoftext|>, vocabulary 257) unless --tokenizer\n"
               "names a BPE tokenizer (tokenizer.json or GPT-2 folder; it must have <|endoftext|>).\n\n"
               "  --out DIR             output directory (created if missing)\n"
               "  --val-fraction F      share of blocks for validation [default: 0.05]\n"
               "  --block N             block size in tokens for the split [default: 16384]\n"
               "  --seed S              seed of the split [default: 1337]\n"
               "  --tokenizer PATH      BPE tokenizer to encode with [default: bytes]\n");
}

static lmf_status put_ids(lmf_shard_splitter *sp, lmf_ids *ids) {
    lmf_status s = lmf_shard_splitter_put(sp, (const uint32_t *)ids->data, ids->len);
    ids->len = 0;
    return s;
}

static lmf_status shard_file(lmf_shard_splitter *sp, const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return lmf_fail(LMF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[65536];
    size_t n;
    lmf_status s = LMF_OK;
    /* BPE: a streaming encoder, so chunk boundaries never change the ids; special-token text in a document is
     * ordinary text (only the separator between documents is eot) */
    lmf_tokenizer_encoder *enc = sp->tok ? lmf_tokenizer_encoder_create(sp->tok, 0) : NULL;
    lmf_ids ids = {0};
    while (s == LMF_OK && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (enc) {
            s = lmf_tokenizer_encoder_feed(enc, (const char *)buf, n, &ids);
            if (s == LMF_OK) s = put_ids(sp, &ids);
        } else {
            uint32_t t[4096];
            for (size_t i = 0; i < n && s == LMF_OK;) {
                size_t k = 0;
                for (; k < 4096 && i < n; k++, i++) t[k] = buf[i];
                s = lmf_shard_splitter_put(sp, t, k);
            }
        }
    }
    if (s == LMF_OK && ferror(f)) s = lmf_fail(LMF_ERR_IO, "%s: read error", path);
    if (enc) {
        lmf_status fs = lmf_tokenizer_encoder_finish(enc, &ids);
        if (s == LMF_OK) s = fs;
        if (s == LMF_OK) s = put_ids(sp, &ids);
        lmf_tokenizer_encoder_free(enc);
        free(ids.data);
    }
    if (f != stdin) fclose(f);
    return s == LMF_OK ? lmf_shard_splitter_put(sp, &sp->eot, 1) : s;
}

static int shard(int argc, char **argv) {
    const char *out = NULL, *tok_path = NULL;
    double frac = 0.05;
    long block = 16384;
    long long seed = 1337;
    int first_file = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return 0;
        }
        int has = i + 1 < argc;
        char *end = NULL;
        if (!strcmp(argv[i], "--out") && has) out = argv[++i];
        else if (!strcmp(argv[i], "--val-fraction") && has) frac = strtod(argv[++i], &end);
        else if (!strcmp(argv[i], "--block") && has) block = strtol(argv[++i], &end, 10);
        else if (!strcmp(argv[i], "--seed") && has) seed = strtoll(argv[++i], &end, 10);
        else if (!strcmp(argv[i], "--tokenizer") && has) tok_path = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "lmforge data shard: unknown flag or missing value: %s\n", argv[i]);
            return 2;
        } else {
            first_file = i;
            break;
        }
        if (end && *end) {
            fprintf(stderr, "lmforge data shard: %s: not a number: '%s'\n", argv[i - 1], argv[i]);
            return 2;
        }
    }
    if (!out || first_file >= argc || !(frac >= 0 && frac < 1) || block <= 0) {
        fprintf(stderr, "lmforge data shard: need --out DIR and at least one FILE; 0 <= --val-fraction < 1; "
                        "--block > 0 (see --help)\n");
        return 2;
    }
    lmf_tokenizer *tok = NULL;
    lmf_status s;
    if ((s = lmf_mkdir_p(out)) != LMF_OK) return cli_fail("data shard", s);
    if (tok_path && (s = lmf_tokenizer_load(tok_path, &tok)) != LMF_OK) return cli_fail("data shard", s);
    lmf_shard_splitter sp;
    if ((s = lmf_shard_splitter_open(&sp, out, tok, frac, (size_t)block, (uint64_t)seed)) != LMF_OK) {
        lmf_tokenizer_free(tok);
        if (s == LMF_ERR_ARG && tok) {
            fprintf(stderr, "lmforge data shard: %s: %s\n", tok_path, lmf_last_error());
            return 1;
        }
        return cli_fail("data shard", s);
    }
    for (int i = first_file; i < argc && s == LMF_OK; i++) s = shard_file(&sp, argv[i]);
    uint64_t nt, nv;
    uint32_t vocab = sp.vocab;
    char tp[1100], vp[1100];
    snprintf(tp, sizeof tp, "%s/train.bin", out);
    snprintf(vp, sizeof vp, "%s/val.bin", out);
    if (s != LMF_OK) {
        lmf_shard_splitter_abort(&sp);
        lmf_tokenizer_free(tok);
        return cli_fail("data shard", s);
    }
    s = lmf_shard_splitter_close(&sp);
    nt = sp.n_train, nv = sp.n_val;
    lmf_tokenizer_free(tok);
    if (s != LMF_OK) return cli_fail("data shard", s);
    fprintf(stderr, "lmforge data shard: %s: %llu tokens, %s: %llu tokens (%s tokenizer, vocab %u)\n", tp,
            (unsigned long long)nt, vp, (unsigned long long)nv, tok_path ? tok_path : "bytes", vocab);
    return 0;
}

/* ---------------------------------------------------------------- run / clean / dedup */

static volatile int g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void pipeline_help(FILE *f, const char *cmd) {
    if (!strcmp(cmd, "run"))
        fprintf(f, "usage: lmforge data run PIPELINE.toml [flags] [INPUT...]\n\n"
                   "Streams documents through the stages configured in PIPELINE.toml (see configs/pipeline.toml for\n"
                   "every option with its default, docs/data-pipeline.md for the stages): normalize, length, gopher_quality,\n"
                   "gopher_repetition, c4, fineweb, toxicity, pii, exact_dedup, minhash, shard. Writes DIR/kept.jsonl[.zst],\n"
                   "DIR/report.json, DIR/train.bin + DIR/val.bin, and prints the report. INPUTs replace input.paths.\n\n");
    else if (!strcmp(cmd, "clean"))
        fprintf(f, "usage: lmforge data clean --out DIR [flags] INPUT...\n\n"
                   "The per-document stages only: normalize, length, gopher_quality, gopher_repetition, c4, fineweb,\n"
                   "toxicity, pii (each with its defaults; --no-STAGE drops one, --set changes a threshold). Writes\n"
                   "DIR/kept.jsonl and DIR/report.json.\n\n");
    else
        fprintf(f, "usage: lmforge data dedup --out DIR [flags] INPUT...\n\n"
                   "Deduplication only: exact_dedup then minhash (the text is not normalized: invalid UTF-8 documents\n"
                   "are reported as malformed). Writes DIR/kept.jsonl and DIR/report.json.\n\n");
    fprintf(f, "  --config FILE          TOML pipeline to start from (run: the positional PIPELINE.toml)\n"
               "  --out DIR              output folder (output.dir)\n"
               "  --threads N            worker threads, 0 = all cores (run.threads)\n"
               "  --set TABLE.KEY=VALUE  any option of the TOML file, e.g. --set gopher_quality.min_doc_words=20\n"
               "  --STAGE / --no-STAGE   enable / disable a stage (e.g. --no-c4, --minhash, --shard)\n"
               "  --format F             auto | text | jsonl (input.format)\n"
               "  --text-field NAME      JSONL field holding the text (input.text_field)\n"
               "  --id-field NAME        JSONL field naming the document (input.id_field)\n"
               "  --split MODE           file | blank_line | line | separator (input.split)\n"
               "  --separator S          line that ends a document with --split separator (input.separator)\n"
               "  --include GLOB         only files whose name matches (repeatable; input.include)\n"
               "  --exclude GLOB         skip files whose name matches (repeatable; input.exclude)\n"
               "  --tokenizer PATH       tokenize kept documents into train.bin / val.bin (enables shard)\n"
               "  --compress             write kept.jsonl.zst\n"
               "  --removed              also write removed.jsonl (every removed document and why)\n"
               "  --no-progress          no progress bar\n"
               "  --quiet                do not print the report table (report.json is still written)\n"
               "  --print-config         print the resulting configuration as TOML and exit\n");
}

static void replace_str(char **dst, const char *v) {
    free(*dst);
    *dst = *v ? strdup(v) : NULL;
}

static int is_stage(const char *name) {
    for (int i = 0; i < LMF_N_STAGES; i++)
        if (!strcmp(name, lmf_stage_name((lmf_stage_id)i))) return i;
    return -1;
}

static int pipeline_cmd(const char *cmd, int argc, char **argv) {
    char label[32];
    snprintf(label, sizeof label, "data %s", cmd);
    lmf_pipeline_config c;
    lmf_pipeline_config_default(&c);
    int is_run = !strcmp(cmd, "run");
    if (!is_run) { /* clean / dedup: a subset of the stages, no shard unless --tokenizer or --shard */
        int dedup = !strcmp(cmd, "dedup");
        for (int i = 0; i < LMF_N_STAGES; i++) {
            int is_dedup = i == LMF_STAGE_EXACT_DEDUP || i == LMF_STAGE_MINHASH;
            c.enabled[i] = i != LMF_STAGE_SHARD && (dedup ? is_dedup : !is_dedup);
        }
    }
    const char *config = NULL;
    int quiet = 0, print_config = 0, first_input = argc;
    lmf_status s = LMF_OK;
    int i = 1;
    if (is_run) {
        if (argc < 2 || argv[1][0] == '-') {
            if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                pipeline_help(stdout, cmd);
                lmf_pipeline_config_free(&c);
                return 0;
            }
            fprintf(stderr, "lmforge data run: the first argument must be the pipeline file (see --help)\n");
            lmf_pipeline_config_free(&c);
            return 2;
        }
        config = argv[1];
        i = 2;
    }
    /* the config file first, whatever the flag order, so flags override it */
    for (int k = i; k < argc - 1; k++)
        if (!strcmp(argv[k], "--config")) config = argv[k + 1];
    if (config) {
        lmf_toml *t;
        s = lmf_toml_load(config, &t);
        if (s == LMF_OK) {
            s = lmf_pipeline_config_apply(&c, t);
            lmf_toml_free(t);
        }
        if (s != LMF_OK) {
            lmf_pipeline_config_free(&c);
            return cli_fail(label, s == LMF_ERR_FORMAT ? LMF_ERR_ARG : s);
        }
    }
    char set[4200];
    for (; i < argc && s == LMF_OK; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            pipeline_help(stdout, cmd);
            lmf_pipeline_config_free(&c);
            return 0;
        }
        set[0] = 0;
        if (!strcmp(a, "--config") && has) i++;
        else if (!strcmp(a, "--set") && has) s = lmf_pipeline_config_set(&c, argv[++i]);
        else if (!strcmp(a, "--out") && has) replace_str(&c.out_dir, argv[++i]);
        else if (!strcmp(a, "--threads") && has) snprintf(set, sizeof set, "run.threads=%s", argv[++i]);
        else if (!strcmp(a, "--format") && has) snprintf(set, sizeof set, "input.format=%s", argv[++i]);
        else if (!strcmp(a, "--text-field") && has) replace_str(&c.text_field, argv[++i]);
        else if (!strcmp(a, "--id-field") && has) replace_str(&c.id_field, argv[++i]);
        else if (!strcmp(a, "--split") && has) snprintf(set, sizeof set, "input.split=%s", argv[++i]);
        else if (!strcmp(a, "--separator") && has) replace_str(&c.separator, argv[++i]);
        else if ((!strcmp(a, "--include") || !strcmp(a, "--exclude")) && has)
            lmf_strlist_push(a[2] == 'i' ? &c.include : &c.exclude, a[2] == 'i' ? &c.n_include : &c.n_exclude, argv[++i]);
        else if (!strcmp(a, "--tokenizer") && has) {
            free(c.tokenizer);
            c.tokenizer = strdup(argv[++i]);
            c.enabled[LMF_STAGE_SHARD] = 1;
        } else if (!strcmp(a, "--compress")) c.compress_kept = 1;
        else if (!strcmp(a, "--removed")) c.write_removed = 1;
        else if (!strcmp(a, "--no-progress")) c.progress = 0;
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--print-config")) print_config = 1;
        else if (a[0] == '-' && a[1] == '-' && a[2]) {
            int off = !strncmp(a, "--no-", 5);
            char name[64];
            snprintf(name, sizeof name, "%s", a + (off ? 5 : 2));
            for (char *p = name; *p; p++)
                if (*p == '-') *p = '_';
            int st = is_stage(name);
            if (st < 0) {
                fprintf(stderr, "lmforge %s: unknown flag or missing value: %s (see --help)\n", label, a);
                lmf_pipeline_config_free(&c);
                return 2;
            }
            c.enabled[st] = !off;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "lmforge %s: unknown flag or missing value: %s (see --help)\n", label, a);
            lmf_pipeline_config_free(&c);
            return 2;
        } else {
            first_input = i;
            break;
        }
        if (set[0]) s = lmf_pipeline_config_set(&c, set);
    }
    if (s != LMF_OK) {
        lmf_pipeline_config_free(&c);
        return cli_fail(label, s);
    }
    if (first_input < argc) {
        lmf_strlist_free(&c.inputs, &c.n_inputs);
        for (int k = first_input; k < argc; k++) {
            if (argv[k][0] == '-' && argv[k][1]) {
                fprintf(stderr, "lmforge %s: flags must come before the inputs: %s\n", label, argv[k]);
                lmf_pipeline_config_free(&c);
                return 2;
            }
            lmf_strlist_push(&c.inputs, &c.n_inputs, argv[k]);
        }
    }
    if (print_config) {
        lmf_pipeline_config_write(&c, stdout);
        lmf_pipeline_config_free(&c);
        return 0;
    }
    if (!c.out_dir || !c.n_inputs) {
        fprintf(stderr, "lmforge %s: need an output folder (--out DIR or output.dir) and at least one input (INPUT... "
                        "or input.paths); see --help\n", label);
        lmf_pipeline_config_free(&c);
        return 2;
    }
    g_stop = 0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    lmf_report *rep = NULL;
    cli_term term = {0};
    c.sink = cli_term_sink(&term);
    s = lmf_pipeline_run(&c, &g_stop, &rep);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    lmf_pipeline_config_free(&c);
    if (s != LMF_OK) return cli_fail(label, s);
    if (!quiet) lmf_report_print(rep, stdout);
    lmf_report_free(rep);
    free(rep);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "shard")) return shard(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "run") || !strcmp(argv[1], "clean") || !strcmp(argv[1], "dedup")))
        return pipeline_cmd(argv[1], argc - 1, argv + 1);
    FILE *f = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout : stderr;
    fprintf(f, "usage: lmforge data <run|clean|dedup|shard> ...\n\n"
               "  run PIPELINE.toml [INPUT...]   the whole pipeline as configured (configs/pipeline.toml)\n"
               "  clean --out DIR INPUT...       normalize, quality filters, toxicity, PII masking\n"
               "  dedup --out DIR INPUT...       exact and MinHash near-duplicate removal\n"
               "  shard --out DIR FILE...        text files -> train.bin / val.bin token shards\n\n"
               "`lmforge data <command> --help` documents each one.\n");
    return f == stdout ? 0 : 2;
}
