/* cmd_train.c — `lmforge train [CONFIG] [--option value ...] [--resume DIR]`. */
#include "cli/cli.h"
#include "train/train_config.h" /* lmf_train_opts_help, for --help */

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
    /* Options in the order of --help: defaults, the checkpoint's (resume), the config file, then the flags. */
    lmf_train_job *job;
    lmf_status s = lmf_train_job_create(&job);
    if (s == LMF_OK && resume) {
        const char *path;
        uint64_t step;
        if ((s = lmf_train_job_resume(job, resume, &path, &step)) == LMF_OK)
            fprintf(stderr, "lmforge train: resuming from %s (step %llu)\n", path, (unsigned long long)step);
    }
    if (s == LMF_OK && config) s = lmf_train_job_load_config(job, config);
    for (int i = 1; i < argc && s == LMF_OK; i++) {
        if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--resume")) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--", 2)) { /* the job would take a bare name as an option; a command line does not */
            fprintf(stderr, "lmforge train: %s: unknown flag '%s' (see `lmforge train --help`)\n",
                    lmf_status_name(LMF_ERR_ARG), argv[i]);
            lmf_train_job_free(job);
            return 2;
        }
        s = lmf_train_job_set(job, argv[i], i + 1 < argc ? argv[i + 1] : NULL);
        i++;
    }
    if (s == LMF_OK) {
        cli_term t = {0};
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        s = lmf_train_job_run(job, &stop_requested, cli_term_sink(&t));
    }
    lmf_train_job_free(job);
    return s == LMF_OK ? 0 : cli_fail("train", s);
}
