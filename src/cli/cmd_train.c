/* cmd_train.c — `lmforge train [CONFIG] [--option value ...] [--resume DIR]`. */
#include "cli/cli.h"
#include "core/status.h"
#include "train/trainer.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f, "usage: lmforge train [--config FILE] [--resume DIR] [--OPTION VALUE ...]\n\n"
               "Pretrains a transformer on token shards. Options come from the built-in defaults, then the config\n"
               "file, then flags, later ones winning. A config FILE.toml is TOML (`option = value` with typed values,\n"
               "flat or under [data] [model] [batch] [optimizer] [schedule]); any other name is read as lines\n"
               "`option = value` (# comments), the older .conf format. With --resume DIR the run\n"
               "continues from the newest checkpoint in DIR, bit for bit; its saved options are the base and flags\n"
               "may change schedule options (e.g. --max-steps), not the model's shape. Ctrl-C writes a checkpoint\n"
               "and exits (status 130). Metrics go to OUT_DIR/metrics.jsonl.\n\n"
               "  --config FILE          read options from FILE\n"
               "  --resume DIR           continue from the newest DIR/ckpt-*.lmfc (out_dir defaults to DIR)\n"
               "  --help                 this text\n");
    lmf_train_opts_help(f);
}

/* This command's one job; the handler only raises its flag, which the trainer polls between steps. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

int cmd_train(int argc, char **argv) {
    const char *config = NULL, *resume = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return 0;
        }
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "--resume")) && i + 1 >= argc) {
            fprintf(stderr, "lmforge train: %s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--config")) config = argv[++i];
        else if (!strcmp(argv[i], "--resume")) resume = argv[++i];
    }
    lmf_train_config cfg;
    lmf_train_config_default(&cfg);
    lmf_checkpoint ck, *ckp = NULL;
    lmf_status s;
    if (resume) {
        char *path;
        if ((s = lmf_checkpoint_latest(resume, &path)) != LMF_OK) return cli_fail("train", s);
        s = lmf_checkpoint_load(path, &ck);
        if (s != LMF_OK) {
            free(path);
            return cli_fail("train", s);
        }
        fprintf(stderr, "lmforge train: resuming from %s (step %llu)\n", path, (unsigned long long)ck.step);
        free(path);
        ckp = &ck;
        if ((s = lmf_train_config_parse(&cfg, ck.config_text, "checkpoint config")) != LMF_OK) goto out;
        snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", resume);
        cfg.stop_at = 0; /* a deliberate stop applies to the run that asked for it, not to its continuation */
    }
    if (config && (s = lmf_train_config_load(&cfg, config)) != LMF_OK) goto out;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--resume")) {
            i++;
            continue;
        }
        const lmf_opt *o = strncmp(argv[i], "--", 2) ? NULL : lmf_train_opt_find(argv[i] + 2);
        if (!o) {
            s = lmf_fail(LMF_ERR_ARG, "unknown flag '%s' (see `lmforge train --help`)", argv[i]);
            goto out;
        }
        if (i + 1 >= argc) {
            s = lmf_fail(LMF_ERR_ARG, "flag %s needs a value", argv[i]);
            goto out;
        }
        char where[96];
        snprintf(where, sizeof where, "flag %s", argv[i]);
        if ((s = lmf_train_opt_set(&cfg, o, argv[i + 1], where)) != LMF_OK) goto out;
        i++;
    }
    cli_term t = {0};
    lmf_train_options opts = {.stop = &stop_requested, .sink = cli_term_sink(&t)};
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    s = lmf_train_run(&cfg, ckp, &opts);
out:
    if (ckp) lmf_checkpoint_free(ckp);
    return s == LMF_OK ? 0 : cli_fail("train", s);
}
