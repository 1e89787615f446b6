/* cmd_data.c — `lmforge data`: `run PIPELINE.toml` (the data pipeline: src/data/pipeline.h), its stage groups as
 * commands (`clean`, `dedup`), and `shard` (text files -> train/validation token shards). */
#include "cli/cli.h"
#include "cli/opts.h"
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

/* Writes DIR/train.bin and DIR/val.bin from the files (each one document, then eot). */
static int shard_files(const char *out, const char *tok_path, double frac, int block, uint64_t seed,
                       const char **files, int n_files) {
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
    for (int i = 0; i < n_files && s == LMF_OK; i++) s = shard_file(&sp, files[i]);
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

static int shard(int argc, char **argv) {
    const char *out = NULL, *tok_path = NULL;
    double frac = 0.05;
    int block = 16384, n_files = 0;
    uint64_t seed = 1337;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    const cli_opt opts[] = {
        CLI_OPT(NULL, "--out", CLI_STR, &out, "DIR", "output directory, created if missing (required)"),
        CLI_OPT(NULL, "--val-fraction", CLI_DOUBLE, &frac, "F", "share of blocks for validation, in [0, 1)"),
        CLI_OPT(NULL, "--block", CLI_INT, &block, "N", "block size in tokens for the split", .lo = 1),
        CLI_OPT(NULL, "--seed", CLI_U64, &seed, "S", "seed of the split"),
        CLI_OPT(NULL, "--tokenizer", CLI_STR, &tok_path, "PATH",
                "BPE tokenizer to encode with (tokenizer.json or GPT-2 folder; it must have <|endoftext|>)",
                .def = "bytes"),
    };
    cli_cmd c = {.cmd = "data shard", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]), .pos = files,
                 .max_pos = argc, .n_pos = &n_files,
                 .usage = "usage: lmforge data shard --out DIR [flags] FILE... (- = stdin)\n\n"
                          "Tokenizes text files into DIR/train.bin and DIR/val.bin (lmforge token shards). Each file "
                          "is one\ndocument, followed by the end-of-text token. The token stream is cut into blocks "
                          "of N tokens and\neach block goes to validation with probability F (seeded, so reruns give "
                          "the same split).\nTokenizer: bytes (ids 0-255 are bytes, 256 is <|endoftext|>, vocabulary "
                          "257) unless --tokenizer\nnames a BPE tokenizer.\n"};
    int r = cli_parse(&c, argc, argv);
    if (r > 0 && (!out || !n_files || !(frac >= 0 && frac < 1))) {
        fprintf(stderr, "lmforge data shard: need --out DIR and at least one FILE; 0 <= --val-fraction < 1 (see "
                        "--help)\n");
        r = 0;
    }
    if (r <= 0) {
        free(files);
        return r < 0 ? 0 : 2;
    }
    int rc = shard_files(out, tok_path, frac, block, seed, files, n_files);
    free(files);
    return rc;
}

/* ---------------------------------------------------------------- run / clean / dedup */

static volatile int g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static const char *pipeline_usage(const char *cmd) {
    if (!strcmp(cmd, "run"))
        return "usage: lmforge data run PIPELINE.toml [flags] [INPUT...]\n\n"
               "Streams documents through the stages configured in PIPELINE.toml (see configs/pipeline.toml for\n"
               "every option with its default, docs/data-pipeline.md for the stages): normalize, length, "
               "gopher_quality,\ngopher_repetition, c4, fineweb, toxicity, pii, exact_dedup, minhash, shard. Writes "
               "DIR/kept.jsonl[.zst],\nDIR/report.json, DIR/train.bin + DIR/val.bin, and prints the report. INPUTs "
               "replace input.paths.\n";
    if (!strcmp(cmd, "clean"))
        return "usage: lmforge data clean --out DIR [flags] INPUT...\n\n"
               "The per-document stages only: normalize, length, gopher_quality, gopher_repetition, c4, fineweb,\n"
               "toxicity, pii (each with its defaults; --no-STAGE drops one, --set changes a threshold). A --config\n"
               "file gives options and may switch these stages off, never others on. Writes DIR/kept.jsonl and\n"
               "DIR/report.json (and the shards with --tokenizer or --shard).\n";
    return "usage: lmforge data dedup --out DIR [flags] INPUT...\n\n"
           "Deduplication only: exact_dedup then minhash (the text is not normalized: invalid UTF-8 documents\n"
           "are reported as malformed). A --config file gives options and may switch one of the two off,\n"
           "never another stage on. Writes DIR/kept.jsonl and DIR/report.json (and the shards with --tokenizer\n"
           "or --shard).\n";
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

/* The stages a subcommand runs (group) and those its flags switched on (cli_on): clean / dedup run their group only,
 * whatever a --config file enables; the file gives thresholds, inputs and outputs, and may switch one of the group
 * off; shard only with --tokenizer or --shard. */
typedef struct {
    int group[LMF_N_STAGES], cli_on[LMF_N_STAGES];
} stage_set;

static lmf_status apply(lmf_pipeline_config *c, stage_set *g, const char *a, const char *v) {
    char set[4200];
    set[0] = 0;
    if (!strcmp(a, "--set")) return lmf_pipeline_config_set(c, v);
    if (!strcmp(a, "--out")) replace_str(&c->out_dir, v);
    else if (!strcmp(a, "--threads")) snprintf(set, sizeof set, "run.threads=%s", v);
    else if (!strcmp(a, "--format")) snprintf(set, sizeof set, "input.format=%s", v);
    else if (!strcmp(a, "--text-field")) replace_str(&c->text_field, v);
    else if (!strcmp(a, "--id-field")) replace_str(&c->id_field, v);
    else if (!strcmp(a, "--split")) snprintf(set, sizeof set, "input.split=%s", v);
    else if (!strcmp(a, "--separator")) replace_str(&c->separator, v);
    else if (!strcmp(a, "--include")) lmf_strlist_push(&c->include, &c->n_include, v);
    else if (!strcmp(a, "--exclude")) lmf_strlist_push(&c->exclude, &c->n_exclude, v);
    else if (!strcmp(a, "--tokenizer")) {
        free(c->tokenizer);
        c->tokenizer = strdup(v);
        c->enabled[LMF_STAGE_SHARD] = 1;
        g->cli_on[LMF_STAGE_SHARD] = 1;
    } else { /* --STAGE / --no-STAGE */
        int off = !strncmp(a, "--no-", 5);
        char name[64];
        snprintf(name, sizeof name, "%s", a + (off ? 5 : 2));
        for (char *p = name; *p; p++)
            if (*p == '-') *p = '_';
        int st = is_stage(name);
        LMF_CHECK(st >= 0); /* the table lists stages only */
        if (!off && !g->group[st] && st != LMF_STAGE_SHARD)
            return lmf_fail(LMF_ERR_ARG, "%s is not one of this command's stages (see --help; `lmforge data run` runs "
                            "any)", a);
        c->enabled[st] = !off;
        g->cli_on[st] = !off;
    }
    return set[0] ? lmf_pipeline_config_set(c, set) : LMF_OK;
}

static int pipeline_cmd(const char *cmd, int argc, char **argv) {
    char label[32];
    snprintf(label, sizeof label, "data %s", cmd);
    int is_run = !strcmp(cmd, "run");
    const char *config = NULL;
    int quiet = 0, print_config = 0, compress = 0, removed = 0, no_progress = 0, n_pos = 0;
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    cli_pending pend = cli_pending_new(argc); /* configuration flags, applied after the file is read */
    char stage_names[2 * LMF_N_STAGES][48];
    cli_opt opts[32 + 2 * LMF_N_STAGES];
    int n = 0;
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--config", CLI_STR, &config, "FILE",
                                 "TOML pipeline to start from (run: the positional PIPELINE.toml)");
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--out", CLI_FN, &pend, "DIR", "output folder (output.dir)", .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--threads", CLI_FN, &pend, "N", "worker threads, 0 = all cores (run.threads)",
                                 .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--set", CLI_FN, &pend, "TABLE.KEY=VALUE",
                                 "any option of the TOML file, e.g. --set gopher_quality.min_doc_words=20",
                                 .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--format", CLI_FN, &pend, "F", "auto | text | jsonl (input.format)",
                                 .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--text-field", CLI_FN, &pend, "NAME",
                                 "JSONL field holding the text (input.text_field)", .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--id-field", CLI_FN, &pend, "NAME",
                                 "JSONL field naming the document (input.id_field)", .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--split", CLI_FN, &pend, "MODE",
                                 "file | blank_line | line | separator (input.split)", .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--separator", CLI_FN, &pend, "S",
                                 "line that ends a document with --split separator (input.separator)",
                                 .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--include", CLI_FN, &pend, "GLOB",
                                 "only files whose name matches (repeatable; input.include)", .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--exclude", CLI_FN, &pend, "GLOB",
                                 "skip files whose name matches (repeatable; input.exclude)", .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--tokenizer", CLI_FN, &pend, "PATH",
                                 "tokenize kept documents into train.bin / val.bin (enables shard)", .fn = cli_record);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--compress", CLI_BOOL, &compress, NULL, "write kept.jsonl.zst");
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--removed", CLI_BOOL, &removed, NULL,
                                 "also write removed.jsonl (every removed document and why)");
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--no-progress", CLI_BOOL, &no_progress, NULL, "no progress bar");
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--quiet", CLI_BOOL, &quiet, NULL,
                                 "do not print the report table (report.json is still written)");
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--print-config", CLI_BOOL, &print_config, NULL,
                                 "print the resulting configuration as TOML and exit");
    opts[n++] = (cli_opt)CLI_HEADING("\nstages (each enables or disables one):");
    for (int i = 0; i < LMF_N_STAGES; i++) {
        char *on = stage_names[2 * i], *off = stage_names[2 * i + 1];
        snprintf(on, 48, "--%s", lmf_stage_name((lmf_stage_id)i));
        for (char *p = on; *p; p++)
            if (*p == '_') *p = '-';
        snprintf(off, 48, "--no-%s", on + 2);
        opts[n++] = (cli_opt)CLI_OPT(NULL, on, CLI_FN0, &pend, NULL, "enable the stage", .fn = cli_record);
        opts[n++] = (cli_opt)CLI_OPT(NULL, off, CLI_FN0, &pend, NULL, "disable it", .fn = cli_record);
    }
    cli_cmd cc = {.cmd = label, .usage = pipeline_usage(cmd), .opts = opts, .n_opts = n, .pos = pos,
                  .max_pos = argc, .n_pos = &n_pos};
    int r = cli_parse(&cc, argc, argv);
    int first_input = 0;
    if (r > 0 && is_run) {
        if (!n_pos) {
            fprintf(stderr, "lmforge data run: the pipeline file PIPELINE.toml is required (see --help)\n");
            r = 0;
        } else if (!config) {
            config = pos[0];
        }
        first_input = 1;
    }
    lmf_pipeline_config c;
    lmf_pipeline_config_default(&c);
    if (r <= 0) {
        free(pos), cli_pending_free(&pend);
        lmf_pipeline_config_free(&c);
        return r < 0 ? 0 : 2;
    }
    stage_set g = {{0}, {0}};
    for (int i = 0; i < LMF_N_STAGES; i++) {
        int is_dedup = i == LMF_STAGE_EXACT_DEDUP || i == LMF_STAGE_MINHASH;
        g.group[i] = is_run || (i != LMF_STAGE_SHARD && (!strcmp(cmd, "dedup") ? is_dedup : !is_dedup));
    }
    lmf_status s = LMF_OK;
    if (config) {
        lmf_toml *t;
        s = lmf_toml_load(config, &t);
        if (s == LMF_OK) {
            s = lmf_pipeline_config_apply(&c, t);
            lmf_toml_free(t);
        }
        if (s == LMF_ERR_FORMAT) s = LMF_ERR_ARG;
    }
    for (int k = 0; k < pend.n && s == LMF_OK; k++) s = apply(&c, &g, pend.flag[k], pend.value[k]);
    for (int k = 0; k < LMF_N_STAGES; k++)
        if (!g.group[k] && !g.cli_on[k]) c.enabled[k] = 0;
    if (compress) c.compress_kept = 1;
    if (removed) c.write_removed = 1;
    if (no_progress) c.progress = 0;
    if (s == LMF_OK && first_input < n_pos) {
        lmf_strlist_free(&c.inputs, &c.n_inputs);
        for (int k = first_input; k < n_pos; k++) lmf_strlist_push(&c.inputs, &c.n_inputs, pos[k]);
    }
    free(pos), cli_pending_free(&pend);
    if (s != LMF_OK) {
        lmf_pipeline_config_free(&c);
        return cli_fail(label, s);
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
    /* the handlers stay until exit: a signal after the commit must not kill a run whose set is already in place
     * (it would exit 130 with the new folder, which reads as an interrupted run that changed it) */
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
    if (argc >= 2 && f == stderr)
        fprintf(f, "lmforge data: unknown %s%s%s\n\n", argv[1][0] == '-' ? "option " : "command '", argv[1],
                argv[1][0] == '-' ? "" : "'");
    fprintf(f, "usage: lmforge data <run|clean|dedup|shard> ...\n\n"
               "  run PIPELINE.toml [INPUT...]   the whole pipeline as configured (configs/pipeline.toml)\n"
               "  clean --out DIR INPUT...       normalize, quality filters, toxicity, PII masking\n"
               "  dedup --out DIR INPUT...       exact and MinHash near-duplicate removal\n"
               "  shard --out DIR FILE...        text files -> train.bin / val.bin token shards\n\n"
               "`lmforge data <command> --help` documents each one.\n");
    return f == stdout ? 0 : 2;
}
