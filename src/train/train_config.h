/* train_config.h — everything `lmforge train` can be told, in one table.
 *
 * Each option has one name used three ways: as a line `name = value` in a config file, as a flag `--name value`
 * (dashes and underscores are interchangeable), and as a line in the text a checkpoint stores, so a resumed run
 * knows exactly how it was configured. The table also generates `lmforge train --help`. */
#ifndef LMF_TRAIN_TRAIN_CONFIG_H
#define LMF_TRAIN_TRAIN_CONFIG_H

#include "lmforge.h"
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
} lmf_train_config;

typedef enum { LMF_OPT_INT, LMF_OPT_I64, LMF_OPT_FLOAT, LMF_OPT_STR, LMF_OPT_BOOL, LMF_OPT_ARCH } lmf_opt_type;

typedef struct {
    const char *name;
    lmf_opt_type type;
    size_t offset, size; /* size: buffer size for strings */
    const char *group, *help;
} lmf_opt;

extern const lmf_opt lmf_train_opts[];
extern const int lmf_train_n_opts;

void lmf_train_config_default(lmf_train_config *c);
const lmf_opt *lmf_train_opt_find(const char *name); /* accepts dashes for underscores */
/* Sets one option from text; `where` names the source for the error ("flag --lr", "config.conf:12"). */
lmf_status lmf_train_opt_set(lmf_train_config *c, const lmf_opt *o, const char *value, const char *where);
/* Reads `name = value` lines (# comments, blank lines; values may be "quoted"). */
lmf_status lmf_train_config_parse(lmf_train_config *c, const char *text, const char *source);
lmf_status lmf_train_config_load(lmf_train_config *c, const char *path);
/* Writes every option as `name = value`; the result parses back to the same config. Caller frees. */
char *lmf_train_config_to_text(const lmf_train_config *c);
lmf_status lmf_train_config_validate(const lmf_train_config *c);
void lmf_train_opts_help(FILE *f);

#endif
