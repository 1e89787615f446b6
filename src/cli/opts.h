/* opts.h — the one flag parser of every `lmforge` command.
 *
 * A command describes its flags as a table of cli_opt (name, kind, where the value goes, help) and calls
 * cli_parse. The table is the single source: parsing, `--help` (every flag with its default, the default read from
 * the destination before parsing, so it is the value the command really starts from) and the listing the CLI tests
 * check (LMF_CLI_LIST_OPTIONS=1 prints the table instead of running) all come from it, so they cannot drift.
 *
 * Rules, the same everywhere: flags and positional inputs mix in any order ("data shard --out D f.txt --block
 * 256"); "--" ends the flags; "--name=value" equals "--name value"; '_' and '-' are interchangeable in long names; a
 * value option followed by nothing, or by another known long option, "needs a value"; any other word that starts
 * with '-' (but "-" alone, stdin) is "unknown option --bogus". Messages go to stderr as "lmforge <cmd>: ...". */
#ifndef LMF_CLI_OPTS_H
#define LMF_CLI_OPTS_H

#include "lmforge.h"

#include <stdint.h>
#include <stdio.h>

typedef enum {
    CLI_BOOL,    /* no value: *(int *)dst = 1 */
    CLI_OFF,     /* no value: *(int *)dst = 0 (a --no-X beside its --X) */
    CLI_STR,     /* *(const char **)dst = the argument */
    CLI_INT,     /* *(int *)dst, an integer in [lo, 2^30] */
    CLI_FLOAT,   /* *(float *)dst, a finite number */
    CLI_DOUBLE,  /* *(double *)dst, a finite number */
    CLI_U64,     /* *(uint64_t *)dst, a non-negative integer */
    CLI_LIST,    /* repeatable: appended to the cli_list at dst (at most its max) */
    CLI_FN,      /* fn(dst, flag, value); a failure's lmf_last_error() is printed */
    CLI_FN0,     /* fn(dst, flag, NULL): a flag without value handled by the command */
    CLI_SECTION, /* not a flag: a heading in --help (help is its text) */
} cli_kind;

typedef struct {
    const char **v;
    int n, max;
} cli_list;

typedef struct {
    const char *shrt;  /* "-m" or NULL */
    const char *lng;   /* "--model" (NULL only for a CLI_SECTION) */
    cli_kind kind;
    void *dst;
    const char *meta;  /* the value's name in --help ("PATH"); NULL for flags without a value */
    const char *help;
    const char *def;   /* the default as --help shows it; NULL: formatted from *dst; "": none shown */
    int lo;            /* CLI_INT: the smallest value accepted */
    lmf_status (*fn)(void *dst, const char *flag, const char *value);
} cli_opt;

/* A table entry: short name (or NULL), long name, kind, destination, value name, help, then any of .def, .lo, .fn. */
#define CLI_OPT(s, l, k, d, m, h, ...) {.shrt = s, .lng = l, .kind = k, .dst = d, .meta = m, .help = h, __VA_ARGS__}
#define CLI_HEADING(text) {.kind = CLI_SECTION, .help = text}

typedef struct {
    const char *cmd;     /* "generate", "data shard": messages read "lmforge <cmd>: ..." */
    const char *usage;   /* the head of --help: usage line(s) and what the command does, ending with a newline */
    const cli_opt *opts;
    int n_opts;
    const char **pos;    /* positional arguments, in order (NULL with max_pos 0: none accepted) */
    int max_pos;
    int *n_pos;
    const char *footer;  /* printed after the flags in --help, or NULL */
} cli_cmd;

/* Flags whose effect must wait (until a configuration file or checkpoint is read): a CLI_FN / CLI_FN0 entry with
 * dst = a cli_pending and fn = cli_record collects them in command-line order; the command applies them later.
 * cli_pending_new sizes it for argc flags; cli_pending_free releases it. */
typedef struct {
    const char **flag, **value;
    int n;
} cli_pending;
cli_pending cli_pending_new(int argc);
void cli_pending_free(cli_pending *p);
lmf_status cli_record(void *dst, const char *flag, const char *value);

/* Parses argv[1..argc). Returns 1 when the command should run, 0 when a flag or argument was refused (the message
 * is printed; exit 2), -1 when --help (or the option listing) was printed to stdout (exit 0). */
int cli_parse(const cli_cmd *c, int argc, char **argv);
/* The --help text: usage, then one line per flag with its value name, help and default. */
void cli_help(const cli_cmd *c, FILE *f);

#endif
