/* train_config.c — see train_config.h. */
#include "train/train_config.h"
#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "io/toml.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define O(name, type, field, group, help)                                                                          \
    {name, type, offsetof(lmf_train_config, field), sizeof(((lmf_train_config *)0)->field), group, help}
#define MODEL_OPT(name, type, field, help) O(name, type, model.field, "model", help),

/* One row per option: the rows look alike because they are table data (name, type, field, group, help). */
const lmf_opt lmf_train_opts[] = {
    O("train_data", LMF_OPT_STR, train_data, "data", "training token shard (from `lmforge data shard`)"),
    O("val_data", LMF_OPT_STR, val_data, "data", "validation token shard (optional)"),
    O("tokenizer", LMF_OPT_STR, tokenizer, "data",
      "tokenizer.json (or GPT-2 folder) of BPE shards, to encode the sample prompt and decode the sample"),
    O("out_dir", LMF_OPT_STR, out_dir, "data", "directory for checkpoints, metrics and samples"),
    O("metrics", LMF_OPT_STR, metrics, "data", "metrics JSONL file (default OUT_DIR/metrics.jsonl)"),
    LMF_MODEL_OPTS(MODEL_OPT)
    O("batch_size", LMF_OPT_INT, batch_size, "batch", "sequences per micro-batch B"),
    O("seq_len", LMF_OPT_INT, seq_len, "batch", "tokens per sequence T"),
    O("grad_accum", LMF_OPT_INT, grad_accum, "batch", "micro-batches per optimizer step"),
    O("grad_sum", LMF_OPT_STR, grad_sum, "batch",
      "how a step adds its micro-batches' gradients: tree (each on its own, added in a fixed tree that data-parallel "
      "runs repeat bit for bit; up to ceil(log2 grad_accum) more gradient-sized buffers) or inline (each product adds "
      "into the gradients: no extra memory; data parallel then differs from one process in the last bits)"),
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
    O("precision", LMF_OPT_STR, precision, "schedule",
      "linear and attention products in bf16 (fp32 sums, fp32 master weights; their inputs kept in bf16) or fp32; "
      "auto: bf16 where this CPU runs them faster, as with AMX tiles (a resumed run keeps its own)"),
    O("loss", LMF_OPT_STR, loss, "schedule",
      "the head's cross-entropy: logits (kept whole) or fused (over vocabulary slabs: no batch x seq x vocabulary "
      "logits, one more head product; not with tensor parallelism)"),
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
    strcpy(c->precision, "auto");
    strcpy(c->grad_sum, "tree");
    strcpy(c->loss, "logits");
}

const lmf_opt *lmf_train_opt_find(const char *name) { return lmf_opt_find(lmf_train_opts, lmf_train_n_opts, name); }

lmf_status lmf_train_opt_set(lmf_train_config *c, const lmf_opt *o, const char *v, const char *where) {
    return lmf_opt_set(c, o, v, where);
}

static lmf_status set_train_option(void *ctx, const char *key, const char *val, const char *where) {
    const lmf_opt *o = lmf_train_opt_find(key);
    if (!o) return lmf_fail(LMF_ERR_ARG, "%s: unknown option '%s' (see `lmforge train --help`)", where, key);
    return lmf_opt_set(ctx, o, val, where);
}

lmf_status lmf_train_config_parse(lmf_train_config *c, const char *text, const char *source) {
    return lmf_kv_text_parse(text, source, set_train_option, c);
}

/* One TOML value into option o. Integers, booleans, strings and arch go through the text setter (after the type
 * check), so their range checks and messages are the .conf ones; floats are converted here from the double. */
static lmf_status set_toml(lmf_train_config *c, const lmf_opt *o, const lmf_toml_value *v, const char *where) {
    lmf_toml_type want = o->type == LMF_OPT_FLOAT  ? LMF_TOML_FLOAT
                         : o->type == LMF_OPT_BOOL ? LMF_TOML_BOOL
                         : o->type == LMF_OPT_STR || o->type == LMF_OPT_ARCH ? LMF_TOML_STRING
                                                                               : LMF_TOML_INT;
    int ok = v->type == want || (want == LMF_TOML_FLOAT && v->type == LMF_TOML_INT);
    if (!ok)
        return lmf_fail(LMF_ERR_ARG, "%s: %s expects %s, got %s", where, o->name,
                        want == LMF_TOML_FLOAT ? "a number" : want == LMF_TOML_BOOL ? "true or false"
                                                            : want == LMF_TOML_STRING ? "a \"string\"" : "an integer",
                        lmf_toml_type_name(v->type));
    char text[32];
    switch (v->type) {
    case LMF_TOML_INT:
        if (o->type == LMF_OPT_FLOAT) {
            *(float *)((char *)c + o->offset) = (float)v->u.i;
            return LMF_OK;
        }
        snprintf(text, sizeof text, "%lld", (long long)v->u.i);
        return lmf_opt_set(c, o, text, where);
    case LMF_TOML_FLOAT: {
        double x = v->u.f;
        if (!isfinite(x) || fabs(x) > 3.4028234663852886e38)
            return lmf_fail(LMF_ERR_ARG, "%s: %s expects a finite number, got %g", where, o->name, x);
        *(float *)((char *)c + o->offset) = (float)x;
        return LMF_OK;
    }
    case LMF_TOML_BOOL: return lmf_opt_set(c, o, v->u.b ? "true" : "false", where);
    case LMF_TOML_STRING:
        if (strlen(v->u.str.s) != v->u.str.len)
            return lmf_fail(LMF_ERR_ARG, "%s: %s must not contain NUL characters", where, o->name);
        return lmf_opt_set(c, o, v->u.str.s, where);
    default: return lmf_fail(LMF_ERR_ARG, "%s: %s: unexpected value type", where, o->name);
    }
}

lmf_status lmf_train_config_parse_toml(lmf_train_config *c, const char *text, size_t len, const char *source) {
    lmf_toml *doc;
    LMF_TRY(lmf_toml_parse(text, len, source, &doc));
    lmf_status s = LMF_OK;
    char set_at[sizeof lmf_train_opts / sizeof lmf_train_opts[0]][48] = {{0}}; /* where each option was set */
    char where[1200];
    for (size_t t = 0; t < doc->n && s == LMF_OK; t++) {
        const lmf_toml_table *tb = &doc->tables[t];
        int known = !tb->name[0];
        for (int i = 0; i < lmf_train_n_opts && !known; i++) known = !strcmp(tb->name, lmf_train_opts[i].group);
        if (!known) {
            s = lmf_fail(LMF_ERR_ARG, "%s:%d:%d: unknown table [%s] (options go at the top level or in [data], "
                         "[model], [batch], [optimizer] or [schedule])", doc->origin, tb->line, tb->col, tb->name);
            break;
        }
        for (size_t k = 0; k < tb->n && s == LMF_OK; k++) {
            const lmf_toml_kv *kv = &tb->kv[k];
            snprintf(where, sizeof where, "%s:%d:%d", doc->origin, kv->line, kv->col);
            const lmf_opt *o = lmf_train_opt_find(kv->key);
            if (!o) s = lmf_fail(LMF_ERR_ARG, "%s: unknown option '%s' (see `lmforge train --help`)", where, kv->key);
            else if (tb->name[0] && strcmp(tb->name, o->group))
                s = lmf_fail(LMF_ERR_ARG, "%s: %s belongs in [%s] (or at the top level), not in [%s]", where, o->name,
                             o->group, tb->name);
            else if (set_at[o - lmf_train_opts][0])
                s = lmf_fail(LMF_ERR_ARG, "%s: %s is already set at %s", where, o->name, set_at[o - lmf_train_opts]);
            else {
                snprintf(set_at[o - lmf_train_opts], sizeof set_at[0], "line %d", kv->line);
                s = set_toml(c, o, &kv->val, where);
            }
        }
    }
    lmf_toml_free(doc);
    return s;
}

lmf_status lmf_train_config_load(lmf_train_config *c, const char *path) {
    char *buf;
    size_t got;
    LMF_TRY(lmf_read_file_max(path, 1 << 20, "config (a training config file, max 1 MiB)", &buf, &got));
    size_t len = strlen(path);
    lmf_status s = len > 5 && !strcmp(path + len - 5, ".toml") ? lmf_train_config_parse_toml(c, buf, got, path)
                                                                : lmf_train_config_parse(c, buf, path);
    free(buf);
    return s;
}

char *lmf_train_config_to_text(const lmf_train_config *c) {
    size_t cap = 8192, len = 0;
    char *out = lmf_xmalloc(cap);
    for (int i = 0; i < lmf_train_n_opts; i++) {
        const lmf_opt *o = &lmf_train_opts[i];
        char val[1100];
        lmf_opt_format(c, o, val, sizeof val);
        size_t need = strlen(o->name) + strlen(val) + 8;
        while (len + need >= cap) out = lmf_xrealloc(out, cap *= 2);
        len += (size_t)sprintf(out + len, "%s = %s\n", o->name, val);
    }
    return out;
}

/* The path options, which the saved config writes relative to the run folder (lmf_path_anchor). */
#define PATH_FIELDS(X) X(train_data) X(val_data) X(tokenizer) X(metrics)

/* Rewrites every path option through fn (lmf_path_anchor or lmf_path_resolve) against run_dir. */
static lmf_status rewrite_paths(lmf_train_config *c, const char *run_dir,
                                void (*fn)(const char *, const char *, char *, size_t)) {
    char buf[2400];
#define REWRITE(f)                                                                                                 \
    fn(c->f, run_dir, buf, sizeof buf);                                                                            \
    if (strlen(buf) >= sizeof c->f) return lmf_fail(LMF_ERR_ARG, #f ": path %s is too long", buf);                 \
    strcpy(c->f, buf);
    PATH_FIELDS(REWRITE)
#undef REWRITE
    return LMF_OK;
}

lmf_status lmf_train_config_anchor_paths(lmf_train_config *c, const char *run_dir) {
    LMF_TRY(rewrite_paths(c, run_dir, lmf_path_anchor));
    char *real = realpath(run_dir, NULL);
    if (real && strlen(real) < sizeof c->out_dir) strcpy(c->out_dir, real);
    free(real);
    return LMF_OK;
}

lmf_status lmf_train_config_resolve_paths(lmf_train_config *c, const char *run_dir, int version) {
    if (version < 3) {
        /* Version 2 wrote paths as given (relative to the working directory of the run) and the default metrics
         * path spelled out: that one becomes the default again, so the resumed folder writes its own. */
        char buf[2400];
        snprintf(buf, sizeof buf, "%s/metrics.jsonl", c->out_dir);
        if (!strcmp(buf, c->metrics)) c->metrics[0] = 0;
        return LMF_OK;
    }
    return rewrite_paths(c, run_dir, lmf_path_resolve);
}

#define REQUIRE LMF_REQUIRE_ARG

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
    REQUIRE(!strcmp(c->precision, "auto") || !strcmp(c->precision, "bf16") || !strcmp(c->precision, "fp32"),
            "precision: expected auto, bf16 or fp32, got '%s'", c->precision);
    REQUIRE(!strcmp(c->grad_sum, "tree") || !strcmp(c->grad_sum, "inline"),
            "grad_sum: expected tree or inline, got '%s'", c->grad_sum);
    REQUIRE(!strcmp(c->loss, "logits") || !strcmp(c->loss, "fused"), "loss: expected logits or fused, got '%s'",
            c->loss);
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
