/* output_set.h — a pipeline run's outputs committed as one set (kept.jsonl[.zst], removed.jsonl, train.bin,
 * val.bin, report.json): the output folder holds one whole run or the previous one, never a mix.
 *
 * Each file being atomic on its own is not enough: a run killed between two renames would leave the new kept.jsonl
 * beside the previous run's shards and report. So a run writes every file into a staging folder beside the output
 * folder, "<parent>/.<name>.lmf-new-<pid>-XXXXXX" (same file system, so renames stay renames), fsyncs it, and
 * commits by exchanging the two folders in one renameat2(RENAME_EXCHANGE); the previous set, now under the
 * staging name, is then deleted. Without an output folder yet, the commit is a plain rename. On a file system
 * without RENAME_EXCHANGE the commit is two renames (the previous folder to ".<name>.lmf-old-<pid>-XXXXXX", then
 * the staging folder into place): a crash between them leaves no output folder and both sets complete under the
 * hidden names, which begin() then leaves alone for the user.
 *
 * Because the folder is replaced as a whole, an existing output folder may hold only what a run writes (those five
 * names, and "NAME.tmp" leftovers of older versions): begin() refuses a folder with anything else in it rather
 * than lose the user's files. Staging folders of runs that died (their pid no longer exists) are removed by the
 * next begin() for the same output folder; a live run's are left alone.
 *
 * Test hook: LMF_DATA_FAULT=commit_before | commit_after kills the process (SIGKILL) just before or just after the
 * exchange, so tests can check what a crash at the worst moments leaves behind. */
#ifndef LMF_DATA_OUTPUT_SET_H
#define LMF_DATA_OUTPUT_SET_H

#include "lmforge.h"

typedef struct {
    char *dir;     /* the output folder as given */
    char *staging; /* where this run writes; NULL after commit or abort */
} lmf_output_set;

/* Checks dir (absent, or a folder of outputs only), removes dead runs' staging folders, creates the staging
 * folder. LMF_ERR_ARG for a folder holding other files (named), LMF_ERR_IO when the staging folder cannot be made. */
lmf_status lmf_output_set_begin(lmf_output_set *o, const char *dir);
/* Fsyncs every file of the staging folder and the folder, then puts it in dir's place and deletes the previous
 * set. On failure dir is as it was and the staging folder is removed. */
lmf_status lmf_output_set_commit(lmf_output_set *o);
/* Removes the staging folder and its files (a failed or interrupted run); dir is untouched. */
void lmf_output_set_abort(lmf_output_set *o);

#endif
