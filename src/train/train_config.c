/* train_config.c — see train_config.h. */
#include "train/train_config.h"
#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define O(name, type, field, group, help) {name, type, offsetof(lmf_train_config, field), sizeof(((lmf_train_config *)0)->field), group, help}

const lmf_opt lmf_train_opts[] = {
    O("train_data", LMF_OPT_STR, train_data, "data", "training token shard (from `lmforge data shard`)"),
    O("val_data", LMF_OPT_STR, val_data, "data", "validation token shard (optional)"),
    O("tokenizer", LMF_OPT_STR, tokenizer, "data",
      "tokenizer.json (or GPT-2 folder) of BPE shards, to encode the sample prompt and decode the sample"),
    O("out_dir", LMF_OPT_STR, out_dir, "data", "directory for checkpoints, metrics and samples"),
    O("metrics", LMF_OPT_STR, metrics, "data", "metrics JSONL file (default OUT_DIR/metrics.jsonl)"),
    O("arch", LMF_OPT_ARCH, model.arch, "model", "model family: gpt2 or llama (sets norm, activation, positions, biases)"),
    O("vocab_size", LMF_OPT_INT, model.vocab_size, "model", "vocabulary size (0: the training shard's)"),
    O("max_seq_len", LMF_OPT_INT, model.max_seq_len, "model", "longest sequence the model accepts (0: seq_len)"),
    O("n_layer", LMF_OPT_INT, model.n_layer, "model", "transformer blocks"),
    O("n_embd", LMF_OPT_INT, model.n_embd, "model", "model width C"),
    O("n_head", LMF_OPT_INT, model.n_head, "model", "attention heads"),
    O("n_kv_head", LMF_OPT_INT, model.n_kv_head, "model", "key/value heads (llama GQA; gpt2: = n_head)"),
    O("ffn_dim", LMF_OPT_INT, model.ffn_dim, "model", "MLP hidden size"),
    O("norm_eps", LMF_OPT_FLOAT, model.norm_eps, "model", "LayerNorm / RMSNorm epsilon"),
    O("rope_theta", LMF_OPT_FLOAT, model.rope_theta, "model", "RoPE base (llama)"),
    O("tied_embeddings", LMF_OPT_BOOL, model.tied_embeddings, "model", "share the output head with wte (llama)"),
    O("batch_size", LMF_OPT_INT, batch_size, "batch", "sequences per micro-batch B"),
    O("seq_len", LMF_OPT_INT, seq_len, "batch", "tokens per sequence T"),
    O("grad_accum", LMF_OPT_INT, grad_accum, "batch", "micro-batches per optimizer step"),
    O("lr", LMF_OPT_FLOAT, opt.lr, "optimizer", "peak learning rate (after warmup)"),
    O("min_lr", LMF_OPT_FLOAT, opt.min_lr, "optimizer", "learning rate at the end of the cosine decay"),
    O("warmup_steps", LMF_OPT_INT, opt.warmup_steps, "optimizer", "linear warmup steps"),
    O("max_steps", LMF_OPT_INT, opt.max_steps, "optimizer", "optimizer steps in the run"),
    O("beta1", LMF_OPT_FLOAT, opt.beta1, "optimizer", "AdamW beta1"),
    O("beta2", LMF_OPT_FLOAT, opt.beta2, "optimizer", "AdamW beta2"),
    O("eps", LMF_OPT_FLOAT, opt.eps, "optimizer", "AdamW epsilon"),
    O("weight_decay", LMF_OPT_FLOAT, opt.weight_decay, "optimizer",
      "decoupled weight decay (matrices only; not embeddings, norms, biases)"),
    O("grad_clip", LMF_OPT_FLOAT, opt.grad_clip, "optimizer", "clip the global gradient norm to this (0: off)"),
    O("eval_every", LMF_OPT_INT, eval_every, "schedule", "validate every N steps (0: only at the end)"),
    O("eval_batches", LMF_OPT_INT, eval_batches, "schedule", "validation batches per evaluation"),
    O("checkpoint_every", LMF_OPT_INT, checkpoint_every, "schedule", "checkpoint every N steps (0: only at the end)"),
    O("stop_at", LMF_OPT_INT, stop_at, "schedule",
      "stop after this many steps as if interrupted (checkpoint, resume later); 0: run to max_steps"),
    O("keep_checkpoints", LMF_OPT_INT, keep_checkpoints, "schedule", "how many recent checkpoints to keep"),
    O("sample_tokens", LMF_OPT_INT, sample_tokens, "schedule", "tokens of text to sample at the end (0: none)"),
    O("sample_prompt", LMF_OPT_STR, sample_prompt, "schedule", "prompt for the final sample"),
    O("sample_temperature", LMF_OPT_FLOAT, sample_temperature, "schedule", "sampling temperature"),
    O("seed", LMF_OPT_I64, seed, "schedule", "seed for initialisation and data order"),
    O("threads", LMF_OPT_INT, threads, "schedule", "OpenMP threads (0: all cores)"),
};
const int lmf_train_n_opts = (int)(sizeof lmf_train_opts / sizeof lmf_train_opts[0]);

void lmf_train_config_default(lmf_train_config *c) {
    memset(c, 0, sizeof *c);
    /* A small byte-level gpt2 that learns the King James Bible's spelling in a few minutes on 2 cores. */
    c->model = lmf_model_config_default(LMF_ARCH_GPT2);
    c->model.vocab_size = 0, c->model.max_seq_len = 0;
    c->model.n_layer = 4, c->model.n_embd = 256, c->model.n_head = 4, c->model.n_kv_head = 4;
    c->model.ffn_dim = 1024;
    strcpy(c->out_dir, "out");
    c->batch_size = 16, c->seq_len = 128, c->grad_accum = 1;
    c->opt = (lmf_adamw_hparams){.lr = 1e-3f, .min_lr = 1e-4f, .warmup_steps = 50, .max_steps = 500, .beta1 = 0.9f,
                                 .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f};
    c->eval_every = 100, c->eval_batches = 16, c->checkpoint_every = 100, c->keep_checkpoints = 2;
    c->sample_tokens = 256, c->sample_temperature = 0.8f;
    c->seed = 1337;
}

const lmf_opt *lmf_train_opt_find(const char *name) {
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof norm) return NULL;
    for (size_t i = 0; i <= n; i++) norm[i] = name[i] == '-' ? '_' : name[i];
    for (int i = 0; i < lmf_train_n_opts; i++)
        if (!strcmp(lmf_train_opts[i].name, norm)) return &lmf_train_opts[i];
    return NULL;
}

lmf_status lmf_train_opt_set(lmf_train_config *c, const lmf_opt *o, const char *v, const char *where) {
    void *p = (char *)c + o->offset;
    char *end;
    errno = 0;
    switch (o->type) {
    case LMF_OPT_INT: {
        long x = strtol(v, &end, 10);
        if (end == v || *end || errno || x < INT_MIN || x > INT_MAX)
            return lmf_fail(LMF_ERR_ARG, "%s: %s expects an integer, got '%s'", where, o->name, v);
        *(int *)p = (int)x;
        return LMF_OK;
    }
    case LMF_OPT_I64: {
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno)
            return lmf_fail(LMF_ERR_ARG, "%s: %s expects an integer, got '%s'", where, o->name, v);
        *(long long *)p = x;
        return LMF_OK;
    }
    case LMF_OPT_FLOAT: {
        float x = strtof(v, &end);
        if (end == v || *end || errno || !isfinite(x))
            return lmf_fail(LMF_ERR_ARG, "%s: %s expects a number, got '%s'", where, o->name, v);
        *(float *)p = x;
        return LMF_OK;
    }
    case LMF_OPT_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) *(int *)p = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) *(int *)p = 0;
        else return lmf_fail(LMF_ERR_ARG, "%s: %s expects true or false, got '%s'", where, o->name, v);
        return LMF_OK;
    case LMF_OPT_ARCH: {
        lmf_arch a;
        if (lmf_arch_parse(v, &a) != LMF_OK)
            return lmf_fail(LMF_ERR_ARG, "%s: arch: unknown model family '%s' (gpt2 or llama)", where, v);
        lmf_model_config_set_arch(&c->model, a); /* the family's knobs (norm, act, positions, biases) */
        return LMF_OK;
    }
    case LMF_OPT_STR:
        if (strlen(v) >= o->size)
            return lmf_fail(LMF_ERR_ARG, "%s: %s is longer than %zu characters", where, o->name, o->size - 1);
        strcpy((char *)p, v);
        return LMF_OK;
    }
    return lmf_fail(LMF_ERR_ARG, "%s: %s: unhandled option type", where, o->name);
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

lmf_status lmf_train_config_parse(lmf_train_config *c, const char *text, const char *source) {
    char *copy = strdup(text), *save = NULL, where[1200];
    int lineno = 0;
    lmf_status s = LMF_OK;
    /* strtok_r would skip empty lines and so miscount line numbers: split by hand. */
    for (char *line = copy; line && s == LMF_OK; line = save) {
        save = strchr(line, '\n');
        if (save) *save++ = 0;
        lineno++;
        snprintf(where, sizeof where, "%s:%d", source, lineno);
        char *l = trim(line);
        if (!*l || *l == '#') continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            s = lmf_fail(LMF_ERR_ARG, "%s: expected `name = value`, got '%s'", where, l);
            break;
        }
        *eq = 0;
        char *key = trim(l), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') val[vl - 1] = 0, val++;
        else {
            char *hash = strchr(val, '#'); /* trailing comment on an unquoted value */
            if (hash) *hash = 0, val = trim(val);
        }
        const lmf_opt *o = lmf_train_opt_find(key);
        if (!o) s = lmf_fail(LMF_ERR_ARG, "%s: unknown option '%s' (see `lmforge train --help`)", where, key);
        else s = lmf_train_opt_set(c, o, val, where);
    }
    free(copy);
    return s;
}

lmf_status lmf_train_config_load(lmf_train_config *c, const char *path) {
    char *buf;
    size_t n;
    LMF_TRY(lmf_read_file_max(path, 1 << 20, "config (a training config file, max 1 MiB)", &buf, &n));
    lmf_status s = lmf_train_config_parse(c, buf, path);
    free(buf);
    return s;
}

char *lmf_train_config_to_text(const lmf_train_config *c) {
    size_t cap = 8192, len = 0;
    char *out = lmf_xmalloc(cap);
    for (int i = 0; i < lmf_train_n_opts; i++) {
        const lmf_opt *o = &lmf_train_opts[i];
        const void *p = (const char *)c + o->offset;
        char val[1100];
        switch (o->type) {
        case LMF_OPT_INT: case LMF_OPT_BOOL: snprintf(val, sizeof val, "%d", *(const int *)p); break;
        case LMF_OPT_I64: snprintf(val, sizeof val, "%lld", *(const long long *)p); break;
        case LMF_OPT_FLOAT: snprintf(val, sizeof val, "%.9g", *(const float *)p); break;
        case LMF_OPT_ARCH: snprintf(val, sizeof val, "%s", lmf_arch_name(*(const lmf_arch *)p)); break;
        case LMF_OPT_STR: snprintf(val, sizeof val, "\"%s\"", (const char *)p); break;
        }
        size_t need = strlen(o->name) + strlen(val) + 8;
        while (len + need >= cap) out = lmf_xrealloc(out, cap *= 2);
        len += (size_t)sprintf(out + len, "%s = %s\n", o->name, val);
    }
    return out;
}

#define REQUIRE(cond, ...)                                                                                         \
    do {                                                                                                           \
        if (!(cond)) return lmf_fail(LMF_ERR_ARG, __VA_ARGS__);                                                    \
    } while (0)

lmf_status lmf_train_config_validate(const lmf_train_config *c) {
    REQUIRE(c->train_data[0], "train_data: no training shard given (--train-data FILE or `train_data =` in a config)");
    REQUIRE(c->out_dir[0], "out_dir: must not be empty");
    REQUIRE(c->batch_size > 0, "batch_size: must be positive, got %d", c->batch_size);
    REQUIRE(c->seq_len > 0, "seq_len: must be positive, got %d", c->seq_len);
    REQUIRE(c->grad_accum > 0, "grad_accum: must be positive, got %d", c->grad_accum);
    REQUIRE(c->opt.lr > 0, "lr: must be positive, got %g", c->opt.lr);
    REQUIRE(c->opt.min_lr >= 0 && c->opt.min_lr <= c->opt.lr, "min_lr: must be in [0, lr], got %g", c->opt.min_lr);
    REQUIRE(c->opt.max_steps > 0, "max_steps: must be positive, got %d", c->opt.max_steps);
    REQUIRE(c->opt.warmup_steps >= 0 && c->opt.warmup_steps <= c->opt.max_steps,
            "warmup_steps: must be in [0, max_steps], got %d", c->opt.warmup_steps);
    REQUIRE(c->opt.beta1 >= 0 && c->opt.beta1 < 1, "beta1: must be in [0, 1), got %g", c->opt.beta1);
    REQUIRE(c->opt.beta2 >= 0 && c->opt.beta2 < 1, "beta2: must be in [0, 1), got %g", c->opt.beta2);
    REQUIRE(c->opt.eps > 0, "eps: must be positive, got %g", c->opt.eps);
    REQUIRE(c->opt.weight_decay >= 0, "weight_decay: must be >= 0, got %g", c->opt.weight_decay);
    REQUIRE(c->opt.grad_clip >= 0, "grad_clip: must be >= 0, got %g", c->opt.grad_clip);
    REQUIRE(c->eval_every >= 0 && c->eval_batches >= 0, "eval_every and eval_batches must be >= 0");
    REQUIRE(c->checkpoint_every >= 0, "checkpoint_every: must be >= 0, got %d", c->checkpoint_every);
    REQUIRE(c->stop_at >= 0, "stop_at: must be >= 0, got %d", c->stop_at);
    REQUIRE(c->keep_checkpoints >= 1, "keep_checkpoints: must be at least 1, got %d", c->keep_checkpoints);
    REQUIRE(c->sample_tokens >= 0, "sample_tokens: must be >= 0, got %d", c->sample_tokens);
    REQUIRE(c->sample_temperature >= 0, "sample_temperature: must be >= 0, got %g", c->sample_temperature);
    REQUIRE(c->threads >= 0, "threads: must be >= 0, got %d", c->threads);
    return LMF_OK;
}

void lmf_train_opts_help(FILE *f) {
    lmf_train_config d;
    lmf_train_config_default(&d);
    char *text = lmf_train_config_to_text(&d), *line = text;
    const char *group = "";
    for (int i = 0; i < lmf_train_n_opts; i++) {
        const lmf_opt *o = &lmf_train_opts[i];
        char *nl = strchr(line, '\n');
        *nl = 0;
        const char *def = strchr(line, '=') + 2;
        if (strcmp(group, o->group)) fprintf(f, "\n%s:\n", group = o->group);
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", o->name);
        for (char *q = flag + 2; *q; q++)
            if (*q == '_') *q = '-';
        fprintf(f, "  %-22s %s [default: %s]\n", flag, o->help, def);
        line = nl + 1;
    }
    free(text);
}
