/* train_config.h — everything `lmforge train` can be told, in one table.
 *
 * Each option has one name used four ways: as a key in a TOML config file (`name = 3e-4`, typed values, flat or
 * inside a table named after the option's group: [data] [model] [batch] [optimizer] [schedule]), as a line
 * `name = value` in a .conf file (the older format, still read), as a flag `--name value` (dashes and underscores
 * are interchangeable), and as a line in the text a checkpoint stores (the .conf format, unchanged, so every
 * checkpoint ever written resumes), so a resumed run knows exactly how it was configured. The table also generates
 * `lmforge train --help`. The model fields come from model/config_text.h (LMF_MODEL_OPTS), which also reads them
 * back from a checkpoint's text for readers below the training layer. */
#ifndef LMF_TRAIN_TRAIN_CONFIG_H
#define LMF_TRAIN_TRAIN_CONFIG_H

#include "lmforge.h"
#include "model/config_text.h"
#include "train/optim.h"

#include <stddef.h>
#include <stdio.h>

typedef struct {
    lmf_model_config model; /* vocab_size 0: from the training shard; max_seq_len 0: seq_len */
    char train_data[1024], val_data[1024], out_dir[1024], metrics[1100], sample_prompt[256], tokenizer[1024];
    int batch_size, seq_len, grad_accum;
    lmf_adamw_hparams opt;
    int eval_every, eval_batches, checkpoint_every, keep_checkpoints, sample_tokens, threads, stop_at;
    float sample_temperature;
    long long seed;
    /* "auto", "bf16" or "fp32": the linear products' arithmetic (bf16: mixed precision, model.h). auto is bf16 where
     * lmf_sgemm_bf16_pays(), else fp32; lmf_train_run resolves it, stores the choice in the run's saved config and
     * keeps a resumed run's (a checkpoint without the line is an fp32 run's) */
    char precision[16];
    /* "tree" or "inline": how a step adds its micro-batches' gradients (train/grad_sum.h; inline: each product adds
     * into what the previous micro-batches left, no extra memory, but data-parallel runs then differ from one
     * process in the last bits) */
    char grad_sum[8];
    /* "logits" or "fused": the head's cross-entropy over kept batch x seq x vocabulary logits, or over vocabulary
     * slabs (lmf_model_set_fused_loss: their memory gone, one more head product; not with tensor parallelism,
     * whose head splits the logits already). A checkpoint without the line: logits. */
    char loss[8];
} lmf_train_config;

extern const lmf_opt lmf_train_opts[];
extern const int lmf_train_n_opts;

void lmf_train_config_default(lmf_train_config *c);
const lmf_opt *lmf_train_opt_find(const char *name); /* accepts dashes for underscores */
/* Sets one option from text; `where` names the source for the error ("flag --lr", "config.conf:12"). */
lmf_status lmf_train_opt_set(lmf_train_config *c, const lmf_opt *o, const char *value, const char *where);
/* Reads `name = value` lines (# comments, blank lines; values may be "quoted"): the .conf format and the text a
 * checkpoint stores. */
lmf_status lmf_train_config_parse(lmf_train_config *c, const char *text, const char *source);
/* Reads a TOML document (io/toml.h): option keys at the top level or in the table of their group; values typed
 * (integers for integer options, numbers for float ones, booleans, strings for paths, prompt and arch). A key that
 * is unknown, set twice, of the wrong type or in the wrong table is LMF_ERR_ARG naming source:line:col. */
lmf_status lmf_train_config_parse_toml(lmf_train_config *c, const char *text, size_t len, const char *source);
/* Reads a config file: TOML when the name ends in ".toml", else the `name = value` format. */
lmf_status lmf_train_config_load(lmf_train_config *c, const char *path);
/* Writes every option as `name = value`; the result parses back to the same config. Caller frees. */
char *lmf_train_config_to_text(const lmf_train_config *c);
/* Paths as a run folder's saved config holds them (version 3 checkpoints, train.conf): train_data, val_data,
 * tokenizer and metrics relative to run_dir when inside it, absolute otherwise; out_dir absolute. resolve is the
 * reverse for a config read from a checkpoint of `version` in run_dir (version 2 kept paths as given; only its
 * spelled-out default metrics path is reset to the default). */
lmf_status lmf_train_config_anchor_paths(lmf_train_config *c, const char *run_dir);
lmf_status lmf_train_config_resolve_paths(lmf_train_config *c, const char *run_dir, int version);
lmf_status lmf_train_config_validate(const lmf_train_config *c);
void lmf_train_opts_help(FILE *f);

#endif
