/* cmd_train.c — `lmforge train [CONFIG] [--option value ...] [--resume DIR]`. */
#include "cli/cli.h"
#include "cli/opts.h"
#include "train/train_config.h" /* lmf_train_opts_help, for --help */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: lmforge train [--config FILE] [--resume DIR] [--OPTION VALUE ...]\n\n"
    "Pretrains a transformer on token shards. Options come from the built-in defaults, then the config\n"
    "file, then flags, later ones winning. A config FILE.toml is TOML (`option = value` with typed values,\n"
    "flat or under [data] [model] [batch] [optimizer] [schedule]); any other name is read as lines\n"
    "`option = value` (# comments), the older .conf format. With --resume DIR the run\n"
    "continues from the newest checkpoint in DIR, bit for bit; its saved options are the base and flags\n"
    "may change schedule options (e.g. --max-steps), not the model's shape. Ctrl-C writes a checkpoint\n"
    "and exits (status 130). Metrics go to OUT_DIR/metrics.jsonl.\n\n"
    "Distributed: `mpirun -np N lmforge train --dp N ...` trains data parallel with ZeRO-1 (docs/distributed.md);\n"
    "grad_accum stays the step's total, so N ranks compute the single-process run's steps.\n";

/* This command's one job; the handler only raises its flag, which the trainer polls between steps. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

int cmd_train(int argc, char **argv) {
    const char *config = NULL, *resume = NULL, *comm = "auto";
    int dp = 0, tp = 1, pp = 1, overlap = 0, pp_full = 0, bucket = 0;
    /* the table: --config, --resume, then every option of train_config's table under its group's heading, with
     * the default the table's own text gives it */
    int n_max = 2 * lmf_train_n_opts + 10, n = 0;
    cli_opt *opts = calloc((size_t)n_max, sizeof *opts);
    char **names = calloc((size_t)lmf_train_n_opts * 3, sizeof *names);
    cli_pending pend = cli_pending_new(argc); /* configuration flags, applied after the file is read */
    lmf_train_config d;
    lmf_train_config_default(&d);
    char *defaults = lmf_train_config_to_text(&d), *line = defaults;
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--config", CLI_STR, &config, "FILE", "read options from FILE (.toml or .conf)");
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--resume", CLI_STR, &resume, "DIR",
                                 "continue from the newest DIR/ckpt-*.lmfc (out_dir defaults to DIR)");
    opts[n++] = (cli_opt)CLI_HEADING("\ndistributed (a launch option: not saved in checkpoints):");
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--comm", CLI_STR, &comm, "NAME",
                                 "self, mpi, or auto: mpi when mpirun started this process among several", .def = "auto");
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--dp", CLI_INT, &dp, "N", "data-parallel ranks (0: all ranks / (tp x pp))",
                                 .def = "0", .lo = 0);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--tp", CLI_INT, &tp, "N", "tensor-parallel ranks (Megatron: heads and FFN columns split)",
                                 .def = "1", .lo = 1);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--pp", CLI_INT, &pp, "N", "pipeline stages (1F1B; layers split evenly)",
                                 .def = "1", .lo = 1);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--overlap-grad-reduce", CLI_BOOL, &overlap, NULL,
                                 "reduce each layer's gradients while the backward goes on (same results)");
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--ddp-bucket-size", CLI_INT, &bucket, "N",
                                 "floats a rank in each bucket of ZeRO's exchanges (same results)", .def = "2097152",
                                 .lo = 1);
    opts[n++] = (cli_opt)CLI_OPT(NULL, "--pp-full-params", CLI_BOOL, &pp_full, NULL,
                                 "every pipeline rank keeps the whole model's parameters (default: its stage's only)");
    const char *group = "";
    for (int k = 0; k < lmf_train_n_opts; k++) {
        const lmf_opt *o = &lmf_train_opts[k];
        char *nl = strchr(line, '\n');
        *nl = 0;
        if (strcmp(group, o->group)) {
            names[3 * k] = malloc(strlen(o->group) + 3);
            sprintf(names[3 * k], "\n%s:", o->group);
            opts[n++] = (cli_opt)CLI_HEADING(names[3 * k]);
            group = o->group;
        }
        char *flag = names[3 * k + 1] = malloc(strlen(o->name) + 3);
        sprintf(flag, "--%s", o->name);
        for (char *q = flag + 2; *q; q++)
            if (*q == '_') *q = '-';
        const char *def = strchr(line, '=') + 2;
        names[3 * k + 2] = strdup(strcmp(def, "\"\"") ? def : ""); /* an empty string: no default shown */
        opts[n++] = (cli_opt)CLI_OPT(NULL, flag, CLI_FN, &pend, "VALUE", o->help, .def = names[3 * k + 2],
                                     .fn = cli_record);
        line = nl + 1;
    }
    free(defaults);
    cli_cmd c = {.cmd = "train", .usage = USAGE, .opts = opts, .n_opts = n};
    int r = cli_parse(&c, argc, argv);
    lmf_status s = LMF_OK;
    lmf_train_job *job = NULL;
    if (r > 0) {
        /* options in the order of --help: defaults, the checkpoint's (resume), the config file, then the flags */
        s = lmf_train_job_create(&job);
        if (s == LMF_OK) s = lmf_train_job_set_parallel(job, comm, dp, tp, pp);
        if (s == LMF_OK) lmf_train_job_set_overlap(job, overlap);
        if (s == LMF_OK) lmf_train_job_set_ddp_bucket(job, bucket);
        if (s == LMF_OK) lmf_train_job_set_pp_full_params(job, pp_full);
        if (s == LMF_OK && resume) {
            const char *path;
            uint64_t step;
            if ((s = lmf_train_job_resume(job, resume, &path, &step)) == LMF_OK && lmf_train_job_rank(job, NULL) == 0)
                fprintf(stderr, "lmforge train: resuming from %s (step %llu)\n", path, (unsigned long long)step);
        }
        if (s == LMF_OK && config) s = lmf_train_job_load_config(job, config);
        for (int k = 0; k < pend.n && s == LMF_OK; k++) s = lmf_train_job_set(job, pend.flag[k], pend.value[k]);
    }
    for (int k = 0; k < 3 * lmf_train_n_opts; k++) free(names[k]);
    free(names), free(opts), cli_pending_free(&pend);
    if (r <= 0) return r < 0 ? 0 : 2;
    int size = 1, rank = job ? lmf_train_job_rank(job, &size) : 0;
    if (s == LMF_OK) {
        cli_term t = {0};
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        /* rank 0 reports for the job; the others speak only of their own errors */
        s = lmf_train_job_run(job, &stop_requested, rank == 0 ? cli_term_sink(&t) : NULL);
    }
    int rc = 0;
    if (s == LMF_ERR_INTERRUPTED && rank != 0) {
        rc = 130; /* every rank stopped at the same step; rank 0 says so for the job */
    } else if (s != LMF_OK) {
        char cmd[64] = "train";
        if (size > 1) snprintf(cmd, sizeof cmd, "train (rank %d of %d)", rank, size);
        rc = cli_fail(cmd, s);
    }
    lmf_train_job_free(job); /* a failed rank of several ends the job here (MPI_Abort) */
    return rc;
}
