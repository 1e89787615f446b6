/* report.h — what a data pipeline run did, stage by stage: documents and bytes in, kept, removed and modified,
 * the reasons with examples, stage counters, timings; written as report.json and printed as a table. The stage ids
 * live here too, because the report is indexed by them. pipeline.h includes this header; report.c needs nothing
 * of the pipeline, so the arrows go one way (pipeline -> report). */
#ifndef LMF_DATA_REPORT_H
#define LMF_DATA_REPORT_H

#include "lmforge.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The pipeline's stages, in running order. */
typedef enum {
    LMF_STAGE_NORMALIZE = 0,
    LMF_STAGE_LENGTH,
    LMF_STAGE_GOPHER_QUALITY,
    LMF_STAGE_GOPHER_REPETITION,
    LMF_STAGE_C4,
    LMF_STAGE_FINEWEB,
    LMF_STAGE_TOXICITY,
    LMF_STAGE_PII,
    LMF_STAGE_EXACT_DEDUP,
    LMF_STAGE_MINHASH,
    LMF_STAGE_SHARD,
    LMF_N_STAGES
} lmf_stage_id;

const char *lmf_stage_name(lmf_stage_id s); /* the TOML table name: "normalize", "gopher_quality", ... */


typedef struct {
    char *id;       /* the document's id: id_field's value, else "file:line" */
    char *source;   /* file:line */
    char *snippet;  /* the first example_chars characters (as it reached the stage) */
    char *detail;   /* why: matched terms, the kept duplicate, ... (may be NULL) */
} lmf_report_example;

typedef struct {
    char *reason;
    uint64_t docs, bytes;
    lmf_report_example *ex;
    int n_ex;
} lmf_report_reason;

typedef struct {
    char *name; /* stage name or counter name */
    uint64_t value;
} lmf_report_counter;

typedef struct {
    const char *name;
    int enabled;
    uint64_t docs_in, bytes_in, docs_kept, bytes_kept, docs_removed, bytes_removed, docs_modified;
    double seconds; /* worker CPU time in the stage (all threads) */
    lmf_report_reason *reasons;
    size_t n_reasons;
    lmf_report_counter *counters; /* stage-specific: invalid bytes repaired, PII replaced, clusters, tokens ... */
    size_t n_counters;
} lmf_report_stage;

typedef struct {
    lmf_report_stage stages[LMF_N_STAGES];
    lmf_report_reason *malformed; /* input problems, by kind */
    size_t n_malformed;
    uint64_t files, docs_read, bytes_read, bytes_on_disk;
    uint64_t docs_out, bytes_out, tokens_train, tokens_val;
    uint64_t spill_bytes;
    int threads, examples, example_chars;
    double wall_seconds, phase1_seconds, phase2_seconds;
    double cpu_seconds; /* user + system CPU time of the whole run (every thread) */
    char *out_dir;
} lmf_report;

void lmf_report_init(lmf_report *r, int examples, int example_chars);
void lmf_report_free(lmf_report *r);
/* Adds one document to a reason (creating it); keeps the example if fewer than r->examples are kept. */
void lmf_report_reason_add(lmf_report *r, lmf_report_reason **list, size_t *n, const char *reason, uint64_t bytes,
                           const char *id, size_t id_len, const char *source, const char *text, size_t len,
                           const char *detail);
void lmf_report_counter_add(lmf_report_stage *st, const char *name, uint64_t v);
lmf_status lmf_report_write_json(const lmf_report *r, const char *path);
void lmf_report_print(const lmf_report *r, FILE *f);

#endif
