/* pipeline.h — the data pipeline driver: documents from the reader through the stages, to kept documents, a report
 * and token shards (`lmforge data run PIPELINE.toml`; docs/data-pipeline.md).
 *
 * Stages, in this order, each enabled and configured on its own (its TOML table):
 *   normalize -> length -> gopher_quality -> gopher_repetition -> c4 -> fineweb -> toxicity -> pii
 *   -> exact_dedup -> minhash -> shard
 * The per-document stages are the pure functions of filters.h; the deduplicators those of dedup.h.
 *
 * Threads: one reader thread fills batches of documents, `threads` workers run the per-document stages on them (and
 * the deduplicators' add(), and tokenization), and the calling thread consumes the batches in input order. Every
 * output (kept documents, shards, report, examples) is therefore identical whatever the number of threads.
 *
 * Memory: batches in flight are bounded (4 batches of about batch_bytes each, plus the workers' scratch). With a
 * deduplication stage on, the run has two phases: phase 1 streams the surviving documents into a temporary spill
 * file in the output folder while the deduplicators see them; after their finish(), phase 2 streams the spill back,
 * drops the duplicates and writes the outputs. RAM then holds the deduplicators' budget (mem_budget each) plus
 * their bitmaps and cluster tables (dedup.h), never the corpus; the disk holds the spill (the surviving text)
 * until the run ends. */
#ifndef LMF_DATA_PIPELINE_H
#define LMF_DATA_PIPELINE_H

#include "core/rng.h"
#include "data/dedup.h"
#include "data/filters.h"
#include "data/reader.h"
#include "data/report.h"
#include "io/shard.h"
#include "io/toml.h"
#include "lmforge.h"

#include <stdint.h>
#include <stdio.h>

/* ---------------------------------------------------------------- the shard splitter (shared with `data shard`) */

/* Cuts a token stream into blocks of block tokens; each block goes to val with probability val_fraction (PCG32
 * seeded by seed), else to train. The byte "tokenizer" (tok NULL) has ids 0..255 and end-of-text 256. */
typedef struct {
    lmf_shard_writer train, val;
    uint32_t *block;
    size_t n, cap;
    double val_fraction;
    lmf_rng rng;
    const lmf_tokenizer *tok; /* NULL: bytes */
    uint32_t eot, vocab, kind;
    int open;
    uint64_t n_train, n_val; /* tokens written (valid after close) */
} lmf_shard_splitter;

#define LMF_BYTE_EOT 256
/* tok: NULL for bytes; it must have <|endoftext|> (LMF_ERR_ARG otherwise). Opens DIR/train.bin and DIR/val.bin. */
lmf_status lmf_shard_splitter_open(lmf_shard_splitter *sp, const char *dir, const lmf_tokenizer *tok, double val_fraction,
                                   size_t block, uint64_t seed);
lmf_status lmf_shard_splitter_put(lmf_shard_splitter *sp, const uint32_t *ids, size_t n);
/* One document's ids followed by the end-of-text token. */
lmf_status lmf_shard_splitter_doc(lmf_shard_splitter *sp, const int32_t *ids, size_t n);
/* Flushes the last block and closes both shards (renamed into place). */
lmf_status lmf_shard_splitter_close(lmf_shard_splitter *sp);
void lmf_shard_splitter_abort(lmf_shard_splitter *sp);

/* ---------------------------------------------------------------- configuration */

/* Every string and array here is owned by the config (lmf_pipeline_config_free). */
typedef struct {
    /* [input] */
    char **inputs;
    size_t n_inputs;
    lmf_input_format format;
    char *text_field, *id_field;
    lmf_split_mode split;
    char *separator;
    char **include, **exclude;
    size_t n_include, n_exclude;
    size_t max_doc_bytes;
    /* [output] */
    char *out_dir;
    int write_kept;     /* kept.jsonl */
    int compress_kept;  /* kept.jsonl.zst instead */
    int zstd_level;
    int write_removed;  /* removed.jsonl: every removed document with its stage and reason */
    /* [run] */
    int threads;        /* 0: all cores */
    size_t batch_bytes;
    int progress;       /* report progress to sink (the CLI draws it as a bar on stderr) */
    int examples;       /* removed-document examples kept per reason */
    int example_chars;  /* characters of each example */
    char *tmp_dir;      /* spill + dedup temporary files; NULL: the output folder */
    /* stages */
    int enabled[LMF_N_STAGES];
    lmf_normalize_cfg normalize;
    lmf_length_cfg length;
    lmf_gopher_quality_cfg gopher_quality;
    char **stop_words;
    size_t n_stop_words;
    lmf_gopher_repetition_cfg gopher_repetition;
    lmf_c4_cfg c4;
    lmf_fineweb_cfg fineweb;
    lmf_toxicity_cfg toxicity;
    int toxicity_default_list;
    char **blocklists;
    size_t n_blocklists;
    lmf_pii_cfg pii;
    char *ipv6_replacement, *phone_replacement;
    char **email_replacements, **ip_replacements;
    size_t n_email_replacements, n_ip_replacements;
    lmf_exact_dedup_config exact;
    lmf_minhash_config minhash;
    char *tokenizer;    /* NULL: bytes */
    double val_fraction;
    size_t block;
    uint64_t seed;
    /* Not from the TOML and not owned: where the run reports (progress events, unit "kB" of input per phase,
     * when progress is on). The library never prints; NULL (the default) runs silently. */
    const lmf_sink *sink;
} lmf_pipeline_config;

/* Defaults: every stage on (shard with the byte tokenizer), datatrove's thresholds (each stage's _defaults()). */
void lmf_pipeline_config_default(lmf_pipeline_config *c);
/* Applies a TOML document (tables [input] [output] [run] and one per stage, each stage with `enabled`); unknown
 * tables or keys and values of the wrong type or range are LMF_ERR_ARG naming file:line:col. */
lmf_status lmf_pipeline_config_apply(lmf_pipeline_config *c, lmf_toml *t);
/* Applies one "table.key=value" override (the value in TOML syntax; a bare word is taken as a string). */
lmf_status lmf_pipeline_config_set(lmf_pipeline_config *c, const char *assignment);
/* Writes the whole config as TOML (into report.json's neighbour config.toml, and `data run --print-config`). */
void lmf_pipeline_config_write(const lmf_pipeline_config *c, FILE *f);
void lmf_pipeline_config_free(lmf_pipeline_config *c);
/* Small helpers for the config's owned arrays. */
void lmf_strlist_push(char ***list, size_t *n, const char *s);
void lmf_strlist_free(char ***list, size_t *n);

/* ---------------------------------------------------------------- running */

/* Runs the pipeline of c; *report (optional) receives the report (free with lmf_report_free + free). Writes
 * out_dir/{kept.jsonl[.zst], removed.jsonl, report.json, train.bin, val.bin} as enabled, committed as one set
 * (data/output_set.h: out_dir holds the previous run's set until this one is whole; an out_dir holding other files
 * is LMF_ERR_ARG). An error in the input data is never
 * fatal (see reader.h); LMF_ERR_IO for outputs that cannot be written, LMF_ERR_ARG for a bad config,
 * LMF_ERR_INTERRUPTED when *stop became non-zero (SIGINT). */
lmf_status lmf_pipeline_run(const lmf_pipeline_config *c, volatile int *stop, lmf_report **report);

#endif
